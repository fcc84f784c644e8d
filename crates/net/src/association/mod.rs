//! One DICOM association over a transport (TCP or TLS), for either side, full duplex.
//!
//! The protocol — PS3.8 state machine, negotiation, DIMSE assembly and routing, timers — is the
//! sans-IO [`dimsum_dimse::association::Association`]; a driver task pumps bytes between it and
//! the transport with separate read and write halves, so that receiving never waits for a send
//! (an A-ABORT or a C-CANCEL is seen while a 500 MB data set goes out). [`Association`] is a
//! cheap, cloneable handle to it: several tasks may send requests (up to the asynchronous
//! operations window), answer requests, and receive, at once.

mod driver;

pub use driver::Transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpStream, lookup_host};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use dimsum_dimse::association::{self as proto, Ending, SendError};
use dimsum_dimse::command::CommandSet;
use dimsum_dimse::message::Message;
use dimsum_ul::fsm::State;
use dimsum_ul::negotiation::{
    AcceptorPolicy, AssociationRequest, Decision, Negotiated, NegotiatedContext,
};
use dimsum_ul::pdu::AssociateRq;

use crate::config::association_config;
use crate::tls::ClientTls;
use crate::{Error, Limits, Timeouts};

/// Bytes queued for the transport beyond which a sender waits before adding more: what one
/// association holds of an outgoing data set.
const SEND_HIGH_WATER: usize = 1024 * 1024;
/// The largest piece of a data set handed to the association at once.
const SEND_PIECE: usize = 1024 * 1024;

/// The instant now, from tokio's clock (which tests may pause).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// What both sides agreed on, and who the peer is.
#[derive(Debug, Clone)]
pub struct AssociationInfo {
    pub peer_address: SocketAddr,
    /// Whether we requested the association (we are the SCU side of the A-ASSOCIATE).
    pub is_requestor: bool,
    pub negotiated: Negotiated,
    /// Whether the association runs over TLS.
    pub tls: bool,
}

impl AssociationInfo {
    /// The peer's AE title.
    pub fn peer_ae_title(&self) -> &str {
        if self.is_requestor {
            &self.negotiated.called_ae_title
        } else {
            &self.negotiated.calling_ae_title
        }
    }

    /// Our AE title.
    pub fn local_ae_title(&self) -> &str {
        if self.is_requestor {
            &self.negotiated.calling_ae_title
        } else {
            &self.negotiated.called_ae_title
        }
    }

    /// "peer max PDU 16384, peer implementation 1.2.276.0.7230010.3.0.3.6.7 OFFIS_DCMTK_367"
    pub fn peer_summary(&self) -> String {
        let negotiated = &self.negotiated;
        format!(
            "peer max PDU {}, peer implementation {} {}{}",
            negotiated.peer_max_pdu_length,
            negotiated
                .peer_implementation_class_uid
                .as_deref()
                .unwrap_or("(none)"),
            negotiated
                .peer_implementation_version_name
                .as_deref()
                .unwrap_or(""),
            if self.tls { ", TLS" } else { "" }
        )
    }
}

/// The role we play for a SOP class on a presentation context (PS3.7 §D.3.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We send its requests (C-STORE, C-FIND, … as a user of the service).
    Scu,
    /// We perform its requests.
    Scp,
}

/// A response to one of our requests (PS3.7 §9.3), with its data set when it has one.
#[derive(Debug)]
pub struct Response {
    pub presentation_context_id: u8,
    pub message: Message,
    /// The command set as received, for fields the typed message does not carry.
    pub command_set: CommandSet,
    pub data_set: Option<DataSetStream>,
    /// False for a pending response (more follow).
    pub is_final: bool,
}

/// A request from the peer for us to perform, with its data set as a stream when it has one.
/// It must get exactly one final response ([`Association::respond`]); a C-CANCEL-RQ naming it
/// fires `cancelled`.
#[derive(Debug)]
pub struct IncomingRequest {
    pub presentation_context_id: u8,
    pub message: Message,
    pub command_set: CommandSet,
    pub data_set: Option<DataSetStream>,
    pub cancelled: CancellationToken,
}

/// The responses to one request, in order; ends after the final one.
#[derive(Debug)]
pub struct Responses {
    receiver: mpsc::UnboundedReceiver<Result<Response, Error>>,
    shared: Arc<Shared>,
    finished: bool,
}

impl Responses {
    /// The next response; `None` after the final one.
    pub async fn next(&mut self) -> Option<Result<Response, Error>> {
        if self.finished {
            return None;
        }
        let item = self.receiver.recv().await;
        match &item {
            Some(Ok(response)) => {
                self.shared.taken(driver::MESSAGE_WEIGHT);
                self.finished = response.is_final;
            }
            Some(Err(_)) | None => self.finished = true,
        }
        item
    }

    /// The final response, skipping (and dropping) pending ones.
    pub async fn last(mut self) -> Result<Response, Error> {
        loop {
            match self.next().await {
                Some(Ok(response)) if response.is_final => return Ok(response),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(Error::ConnectionClosed),
            }
        }
    }
}

impl Drop for Responses {
    /// Responses still queued count against the read backlog until they are taken: give them
    /// back, so that dropping an operation's responses early never holds the driver's reading.
    fn drop(&mut self) {
        self.receiver.close();
        while let Ok(item) = self.receiver.try_recv() {
            if item.is_ok() {
                self.shared.taken(driver::MESSAGE_WEIGHT);
            }
        }
    }
}

/// A data set arriving, fragment by fragment, as the peer sends it (each a slice of a received
/// PDU). Dropping it discards the rest.
#[derive(Debug)]
pub struct DataSetStream {
    receiver: mpsc::UnboundedReceiver<Result<Bytes, Error>>,
    shared: Arc<Shared>,
}

impl DataSetStream {
    /// The next fragment; `None` after the last one.
    pub async fn next(&mut self) -> Option<Result<Bytes, Error>> {
        let item = self.receiver.recv().await;
        if let Some(Ok(bytes)) = &item {
            self.shared.taken(bytes.len());
        }
        item
    }

    /// The whole data set in memory, refused beyond `limit` bytes (the rest is then dropped).
    pub async fn collect(mut self, limit: usize) -> Result<Bytes, Error> {
        let mut data = BytesMut::new();
        while let Some(fragment) = self.next().await {
            let fragment = fragment?;
            if data.len() + fragment.len() > limit {
                return Err(Error::DataSetTooLarge {
                    size: data.len() + fragment.len(),
                    limit,
                });
            }
            if data.is_empty() {
                data = BytesMut::from(fragment.as_ref());
            } else {
                data.extend_from_slice(&fragment);
            }
        }
        Ok(data.freeze())
    }
}

impl Drop for DataSetStream {
    fn drop(&mut self) {
        self.receiver.close();
        while let Ok(item) = self.receiver.try_recv() {
            if let Ok(bytes) = item {
                self.shared.taken(bytes.len());
            }
        }
    }
}

/// Sends the data set of a message that was just sent, piece by piece; [`DataSetWriter::finish`]
/// sends the last one. Dropping it unfinished aborts the association (a data set cannot be cut
/// short).
pub struct DataSetWriter {
    association: Association,
    _send_lock: tokio::sync::OwnedMutexGuard<()>,
    finished: bool,
}

impl DataSetWriter {
    /// Sends `data` (not the last piece).
    pub async fn write(&mut self, data: Bytes) -> Result<(), Error> {
        self.association.send_data(data, false).await
    }

    /// Sends `data` as the last piece (it may be empty).
    pub async fn finish(mut self, data: Bytes) -> Result<(), Error> {
        self.finished = true;
        self.association.send_data(data, true).await
    }
}

impl Drop for DataSetWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.association.abort_now();
        }
    }
}

/// Where the association's events go.
#[derive(Default)]
struct Routes {
    establishment: Option<mpsc::UnboundedSender<Establishment>>,
    responses: HashMap<u16, mpsc::UnboundedSender<Result<Response, Error>>>,
    cancellation: HashMap<u16, CancellationToken>,
    /// The data set arriving now.
    inbound: Option<mpsc::UnboundedSender<Result<Bytes, Error>>>,
    requests: Option<mpsc::UnboundedSender<IncomingRequest>>,
}

impl Routes {
    fn establish(&mut self, step: Establishment) {
        if let Some(sender) = &self.establishment {
            let _ = sender.send(step);
        }
    }

    /// A stream for a data set that follows, and its sending end.
    fn data_set_channel(
        &self,
        has_data_set: bool,
        shared: &Arc<Shared>,
    ) -> (
        Option<DataSetStream>,
        Option<mpsc::UnboundedSender<Result<Bytes, Error>>>,
    ) {
        if !has_data_set {
            return (None, None);
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let stream = DataSetStream {
            receiver,
            shared: Arc::clone(shared),
        };
        (Some(stream), Some(sender))
    }
}

/// What establishment reports to `connect` / `accept`.
enum Establishment {
    Requested(Box<AssociateRq>),
    Established,
    Ended(Ending),
}

struct Inner {
    core: proto::Association,
    routes: Routes,
    ending: Option<Ending>,
    /// Why the transport failed, when it did not just close (a TLS alert, a reset).
    transport_error: Option<String>,
}

impl Inner {
    /// The error reporting `ending` (see [`ending_error`]).
    fn error(&self, ending: &Ending, timeouts: &Timeouts) -> Error {
        ending_error(ending, self.transport_error.as_deref(), timeouts)
    }
}

/// The error reporting `ending`: the transport's own failure when that is what ended it.
fn ending_error(ending: &Ending, transport_error: Option<&str>, timeouts: &Timeouts) -> Error {
    match (ending, transport_error) {
        (Ending::ConnectionClosed, Some(reason)) => Error::Transport(reason.to_owned()),
        _ => Error::from_ending(ending, timeouts),
    }
}

/// What the driver and every handle share.
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver: something was queued, or a consumer made room.
    wake: Notify,
    /// Wakes senders: bytes were written, the window opened, the association ended.
    progress: Notify,
    /// Bytes handed to consumers and not yet taken by them.
    backlog: AtomicUsize,
    /// One message goes out at a time (PS3.8 Annex E: a message's fragments are not
    /// interleaved with another's).
    send_lock: Arc<tokio::sync::Mutex<()>>,
    requests: tokio::sync::Mutex<mpsc::UnboundedReceiver<IncomingRequest>>,
    timeouts: Timeouts,
    limits: Limits,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A consumer took `n` bytes: reading may resume.
    fn taken(&self, n: usize) {
        let before = self.backlog.fetch_sub(n, Ordering::AcqRel);
        if before >= driver::READ_PAUSE_BACKLOG && before - n < driver::READ_PAUSE_BACKLOG {
            self.wake.notify_one();
        }
    }
}

/// Aborts the association when the last user handle goes away without releasing it.
struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        if inner.ending.is_none() {
            inner.core.abort(now());
            drop(inner);
            self.0.wake.notify_one();
        }
    }
}

/// One DICOM association (PS3.8 §7.1), requestor or acceptor side; a handle that can be cloned
/// and used from several tasks at once. When the last handle is dropped without a release, the
/// association is aborted.
#[derive(Clone)]
pub struct Association {
    shared: Arc<Shared>,
    info: Arc<AssociationInfo>,
    _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for Association {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Association")
            .field("info", &self.info)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Association {
    /// Requests an association (PS3.8 §7.1.1) with the peer at `address` ("host:port") over TCP.
    pub async fn connect(
        address: &str,
        request: &AssociationRequest,
        timeouts: Timeouts,
        limits: Limits,
    ) -> Result<Association, Error> {
        Self::connect_with(address, request, timeouts, limits, None).await
    }

    /// Like [`Association::connect`], over TLS when `tls` is given (PS3.15 Annex B).
    pub async fn connect_with(
        address: &str,
        request: &AssociationRequest,
        timeouts: Timeouts,
        limits: Limits,
        tls: Option<&ClientTls>,
    ) -> Result<Association, Error> {
        // The request is checked before anything goes on the wire.
        request.to_pdu()?;
        let stream = tcp_connect(address, &timeouts).await?;
        let peer_address = stream.peer_addr()?;
        match tls {
            None => {
                Self::request_over(stream, peer_address, request, timeouts, limits, false).await
            }
            Some(tls) => {
                let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
                let handshake = timeouts.connect.unwrap_or(timeouts.artim);
                let stream = crate::tls::connect(
                    stream,
                    &tls.connector()?,
                    crate::tls::server_name(host)?,
                    handshake,
                )
                .await?;
                Self::request_over(stream, peer_address, request, timeouts, limits, true).await
            }
        }
    }

    /// Requests an association over an open transport.
    pub async fn request_over<T: Transport>(
        transport: T,
        peer_address: SocketAddr,
        request: &AssociationRequest,
        timeouts: Timeouts,
        limits: Limits,
        tls: bool,
    ) -> Result<Association, Error> {
        let config = association_config(&timeouts, &limits);
        let mut core = proto::Association::request(request.clone(), config, now())?;
        core.handle_connected(now());
        let (shared, mut establishment) = Shared::start(core, transport, timeouts, limits);
        loop {
            match establishment.recv().await {
                Some(Establishment::Established) => {
                    return Ok(Association::established(shared, peer_address, tls));
                }
                Some(Establishment::Requested(_)) => {}
                Some(Establishment::Ended(ending)) => {
                    return Err(shared.lock().error(&ending, &timeouts));
                }
                None => return Err(Error::ConnectionClosed),
            }
        }
    }

    /// Answers an association request on a freshly accepted connection with `policy`.
    pub async fn accept(
        stream: TcpStream,
        policy: &AcceptorPolicy,
        timeouts: Timeouts,
        limits: Limits,
    ) -> Result<Association, Error> {
        let peer_address = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        Self::accept_over(stream, peer_address, timeouts, limits, false, |rq| {
            policy.evaluate(rq)
        })
        .await
    }

    /// Answers an association request on an open transport, with the decision left to `decide`
    /// (a server uses this to reject when it is full).
    pub async fn accept_over<T: Transport>(
        transport: T,
        peer_address: SocketAddr,
        timeouts: Timeouts,
        limits: Limits,
        tls: bool,
        decide: impl FnOnce(&AssociateRq) -> Decision,
    ) -> Result<Association, Error> {
        let config = association_config(&timeouts, &limits);
        let core = proto::Association::accept(config, now());
        let (shared, mut establishment) = Shared::start(core, transport, timeouts, limits);
        let mut decide = Some(decide);
        loop {
            match establishment.recv().await {
                Some(Establishment::Requested(rq)) => {
                    let Some(decide) = decide.take() else {
                        continue;
                    };
                    let decision = decide(&rq);
                    let responded = shared.lock().core.respond(decision, now());
                    shared.wake.notify_one();
                    responded?;
                }
                Some(Establishment::Established) => {
                    return Ok(Association::established(shared, peer_address, tls));
                }
                Some(Establishment::Ended(ending)) => {
                    return Err(shared.lock().error(&ending, &timeouts));
                }
                None => return Err(Error::ConnectionClosed),
            }
        }
    }

    fn established(shared: Arc<Shared>, peer_address: SocketAddr, tls: bool) -> Association {
        let (negotiated, is_requestor) = {
            let mut inner = shared.lock();
            inner.routes.establishment = None;
            (
                inner.core.negotiated().cloned().unwrap_or_default(),
                inner.core.is_requestor(),
            )
        };
        Association {
            info: Arc::new(AssociationInfo {
                peer_address,
                is_requestor,
                negotiated,
                tls,
            }),
            _guard: Arc::new(HandleGuard(Arc::clone(&shared))),
            shared,
        }
    }

    /// What was negotiated and who the peer is.
    pub fn info(&self) -> &AssociationInfo {
        &self.info
    }

    /// What was negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.info.negotiated
    }

    /// The timers in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.shared.timeouts
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The state machine's current state.
    pub fn state(&self) -> State {
        self.shared.lock().core.state()
    }

    /// Whether DIMSE messages can still be exchanged.
    pub fn is_established(&self) -> bool {
        self.shared.lock().core.can_send()
    }

    /// How the association ended, once it has.
    pub fn ending(&self) -> Option<Ending> {
        self.shared.lock().ending.clone()
    }

    /// A fresh Message ID for a request (PS3.7 §9.1.1.1), never one in use by an outstanding
    /// request of ours.
    pub fn next_message_id(&self) -> u16 {
        self.shared.lock().core.next_message_id()
    }

    /// The transfer syntax negotiated on presentation context `presentation_context_id` (the
    /// encoding of every data set sent on it); empty when the context was not accepted.
    pub fn transfer_syntax(&self, presentation_context_id: u8) -> &str {
        self.info
            .negotiated
            .context(presentation_context_id)
            .and_then(|context| context.transfer_syntax.as_deref())
            .unwrap_or_default()
    }

    /// The first accepted presentation context for `abstract_syntax` on which we hold `role`.
    pub fn context_for_role(&self, abstract_syntax: &str, role: Role) -> Result<u8, Error> {
        self.accepted_contexts(abstract_syntax, role)
            .next()
            .map(|context| context.id)
            .ok_or_else(|| Error::NoPresentationContext(abstract_syntax.to_string()))
    }

    /// The accepted presentation context for `abstract_syntax` on which we can send its
    /// requests (the SCU role).
    pub fn context_for(&self, abstract_syntax: &str) -> Result<u8, Error> {
        self.context_for_role(abstract_syntax, Role::Scu)
    }

    /// The accepted contexts for `abstract_syntax` on which we hold `role`, in the order
    /// proposed.
    pub fn accepted_contexts<'a>(
        &'a self,
        abstract_syntax: &'a str,
        role: Role,
    ) -> impl Iterator<Item = &'a NegotiatedContext> + 'a {
        let is_requestor = self.info.is_requestor;
        self.info.negotiated.accepted().filter(move |context| {
            context.abstract_syntax.trim_end_matches(['\0', ' '])
                == abstract_syntax.trim_end_matches(['\0', ' '])
                && match (role, is_requestor) {
                    (Role::Scu, true) => context.scu_role,
                    (Role::Scp, true) => context.scp_role,
                    (Role::Scu, false) => context.acceptor_scu_role(),
                    (Role::Scp, false) => context.acceptor_scp_role(),
                }
        })
    }

    /// Sends a request (PS3.7 §9.3) with its data set if given, once the asynchronous operations
    /// window has room; returns its responses.
    pub async fn request(
        &self,
        presentation_context_id: u8,
        message: Message,
        data_set: Option<Bytes>,
    ) -> Result<Responses, Error> {
        let data_set = data_set.filter(|_| message.has_data_set());
        match data_set {
            // A data set that fits one piece goes with its command, in one step.
            Some(data) if data.len() <= SEND_PIECE => {
                let (_, responses) = self
                    .send_request(presentation_context_id, message, Some(data))
                    .await?;
                Ok(responses)
            }
            data_set => {
                let (writer, responses) = self
                    .send_request(presentation_context_id, message, None)
                    .await?;
                if let Some(writer) = writer {
                    writer.finish(data_set.unwrap_or_default()).await?;
                }
                Ok(responses)
            }
        }
    }

    /// Sends a request's command; when the message has a data set, the returned writer must
    /// send all of it. Waits for room in the asynchronous operations window first.
    pub async fn start_request(
        &self,
        presentation_context_id: u8,
        message: Message,
    ) -> Result<(Option<DataSetWriter>, Responses), Error> {
        self.send_request(presentation_context_id, message, None)
            .await
    }

    /// Sends a request's command, and `whole` as its entire data set when given (then no
    /// writer is returned).
    async fn send_request(
        &self,
        presentation_context_id: u8,
        message: Message,
        whole: Option<Bytes>,
    ) -> Result<(Option<DataSetWriter>, Responses), Error> {
        let message_id = message.message_id().unwrap_or_default();
        loop {
            // Wait for the window without holding the send lock: a response we owe the peer
            // (say, to the C-STORE sub-operations of our C-GET) may be what opens it.
            self.wait_for(|inner| inner.core.can_invoke().then_some(Ok(())))
                .await?;
            let guard = Arc::clone(&self.shared.send_lock).lock_owned().await;
            let sent = self
                .wait_for(|inner| {
                    if !inner.core.can_invoke() {
                        return Some(Ok(None));
                    }
                    if inner.core.transmit_backlog() >= SEND_HIGH_WATER {
                        return None;
                    }
                    let now = now();
                    let sent = inner
                        .core
                        .send_message(presentation_context_id, &message, now)
                        .and_then(|()| match &whole {
                            Some(data) => inner.core.send_data(data.clone(), true, now),
                            None => Ok(()),
                        });
                    Some(match sent {
                        Ok(()) => {
                            let (sender, receiver) = mpsc::unbounded_channel();
                            inner.routes.responses.insert(message_id, sender);
                            Ok(Some(receiver))
                        }
                        Err(SendError::WindowFull { .. }) => Ok(None),
                        Err(error) => Err(Error::Send(error)),
                    })
                })
                .await?;
            self.shared.wake.notify_one();
            let Some(receiver) = sent else {
                continue;
            };
            let responses = Responses {
                receiver,
                shared: Arc::clone(&self.shared),
                finished: false,
            };
            let writer = (message.has_data_set() && whole.is_none()).then(|| DataSetWriter {
                association: self.clone(),
                _send_lock: guard,
                finished: false,
            });
            return Ok((writer, responses));
        }
    }

    /// Sends a response to a request we perform (with its data set if given). A final response
    /// ends the operation.
    pub async fn respond(
        &self,
        presentation_context_id: u8,
        message: Message,
        data_set: Option<Bytes>,
    ) -> Result<(), Error> {
        let writer = self.send_command(presentation_context_id, &message).await?;
        if let Some(writer) = writer {
            writer.finish(data_set.unwrap_or_default()).await?;
        }
        Ok(())
    }

    /// Sends a C-CANCEL-RQ for our C-FIND, C-GET or C-MOVE with `message_id` (PS3.7 §9.3.2.3).
    pub async fn cancel(&self, presentation_context_id: u8, message_id: u16) -> Result<(), Error> {
        let cancel = dimsum_dimse::message::CCancelRq {
            message_id_being_responded_to: message_id,
            data_set_present: false,
        };
        self.send_command(presentation_context_id, &cancel.into())
            .await
            .map(drop)
    }

    /// Sends a command that is not a request (a response, a cancel); returns the data set
    /// writer when it has one.
    async fn send_command(
        &self,
        presentation_context_id: u8,
        message: &Message,
    ) -> Result<Option<DataSetWriter>, Error> {
        let guard = Arc::clone(&self.shared.send_lock).lock_owned().await;
        self.wait_for(|inner| {
            if inner.core.transmit_backlog() >= SEND_HIGH_WATER {
                return None;
            }
            Some(
                match inner
                    .core
                    .send_message(presentation_context_id, message, now())
                {
                    Ok(()) => {
                        if message.command_field().is_response()
                            && message.status().is_none_or(|status| status.is_final())
                            && let Some(id) = message.message_id_being_responded_to()
                        {
                            inner.routes.cancellation.remove(&id);
                        }
                        Ok(())
                    }
                    Err(error) => Err(Error::Send(error)),
                },
            )
        })
        .await?;
        self.shared.wake.notify_one();
        Ok(message.has_data_set().then(|| DataSetWriter {
            association: self.clone(),
            _send_lock: guard,
            finished: false,
        }))
    }

    /// Hands a piece of the data set being sent to the association, in pieces of at most
    /// [`SEND_PIECE`], each once the transmit backlog has room.
    async fn send_data(&self, data: Bytes, is_last: bool) -> Result<(), Error> {
        let mut rest = data;
        loop {
            let piece = rest.split_to(rest.len().min(SEND_PIECE));
            let last_piece = rest.is_empty();
            self.wait_for(|inner| {
                (inner.core.transmit_backlog() < SEND_HIGH_WATER).then(|| {
                    inner
                        .core
                        .send_data(piece.clone(), is_last && last_piece, now())
                        .map_err(Error::Send)
                })
            })
            .await?;
            self.shared.wake.notify_one();
            if last_piece {
                return Ok(());
            }
        }
    }

    /// Waits until `ready` gives a value, checking again whenever the driver makes progress;
    /// fails with how the association ended if it ends first.
    async fn wait_for<T>(
        &self,
        mut ready: impl FnMut(&mut Inner) -> Option<Result<T, Error>>,
    ) -> Result<T, Error> {
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.shared.lock();
                if let Some(ending) = &inner.ending {
                    return Err(inner.error(ending, &self.shared.timeouts));
                }
                if let Some(result) = ready(&mut inner) {
                    return result;
                }
            }
            notified.await;
        }
    }

    /// The next request from the peer; `None` once the association has ended.
    pub async fn next_request(&self) -> Option<IncomingRequest> {
        self.shared.requests.lock().await.recv().await
    }

    /// Releases the association (PS3.8 §7.2), resolving a release collision (PS3.8 §9.2.1), and
    /// waits for the peer's answer.
    pub async fn release(&self) -> Result<(), Error> {
        let _guard = Arc::clone(&self.shared.send_lock).lock_owned().await;
        {
            let mut inner = self.shared.lock();
            if let Some(ending) = &inner.ending {
                return match ending {
                    Ending::Released => Ok(()),
                    other => Err(Error::from_ending(other, &self.shared.timeouts)),
                };
            }
            inner.core.release(now())?;
        }
        self.shared.wake.notify_one();
        match self.closed().await {
            Ending::Released => Ok(()),
            other => Err(Error::from_ending(&other, &self.shared.timeouts)),
        }
    }

    /// Aborts the association (PS3.8 §7.3, A-ABORT with source service-user).
    pub async fn abort(&self) {
        self.abort_now();
    }

    fn abort_now(&self) {
        self.shared.lock().core.abort(now());
        self.shared.wake.notify_one();
    }

    /// Waits until the association has ended, and says how.
    pub async fn closed(&self) -> Ending {
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(ending) = self.shared.lock().ending.clone() {
                return ending;
            }
            notified.await;
        }
    }
}

impl Shared {
    /// Starts the driver of `core` over `transport`.
    fn start<T: Transport>(
        core: proto::Association,
        transport: T,
        timeouts: Timeouts,
        limits: Limits,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Establishment>) {
        let (establishment, established) = mpsc::unbounded_channel();
        let (requests_sender, requests) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                core,
                routes: Routes {
                    establishment: Some(establishment),
                    requests: Some(requests_sender),
                    ..Routes::default()
                },
                ending: None,
                transport_error: None,
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            backlog: AtomicUsize::new(0),
            send_lock: Arc::default(),
            requests: tokio::sync::Mutex::new(requests),
            timeouts,
            limits,
        });
        tokio::spawn(driver::run(transport, Arc::clone(&shared)).in_current_span());
        (shared, established)
    }
}

/// Opens the TCP connection to `address`, bounded by the connect timeout.
async fn tcp_connect(address: &str, timeouts: &Timeouts) -> Result<TcpStream, Error> {
    let connect_error = |source| Error::Connect {
        address: address.to_string(),
        source,
    };
    let connecting = async {
        let mut last_error = None;
        for addr in lookup_host(address).await.map_err(connect_error)? {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = Some(e),
            }
        }
        Err(connect_error(last_error.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address found")
        })))
    };
    let stream = match timeouts.connect {
        Some(limit) => tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| {
                connect_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:.1} s", limit.as_secs_f64()),
                ))
            })??,
        None => connecting.await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}
