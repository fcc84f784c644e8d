//! One DICOM association over TCP, driven through the PS3.8 §9.2 state machine.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, lookup_host};
use tracing::debug;

use dimsum_dimse::assemble::{Assembled, Assembler};
use dimsum_dimse::command::{CommandLimits, CommandSet};
use dimsum_dimse::fragment;
use dimsum_dimse::message::Message;
use dimsum_ul::fsm::{Effect, Event, Machine, State, Transition};
use dimsum_ul::negotiation::{AcceptorPolicy, AssociationRequest, Decision, Negotiated};
use dimsum_ul::pdu::{
    self, Abort, AbortReason, AbortSource, AssociateAc, AssociateRj, AssociateRq, DecodeError,
    PData, Pdu, Pdv,
};

use crate::config::{Limits, Timeouts};
use crate::error::{AbortOrigin, Error};

/// How much of a streamed data set is gathered before it is written to the socket.
pub const STREAM_FLUSH_LEN: usize = 1024 * 1024;

/// Bytes read from the socket per call at most while a PDU body is awaited.
const READ_CHUNK: usize = 256 * 1024;

/// What both sides agreed on, and who the peer is.
#[derive(Debug, Clone)]
pub struct AssociationInfo {
    pub peer_address: SocketAddr,
    /// Whether we requested the association (we are the SCU side of the A-ASSOCIATE).
    pub is_requestor: bool,
    pub negotiated: Negotiated,
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

    /// "peer max PDU 16384, peer implementation 1.2.276.0.7230010.3.0.3.6.7 OFFIS_DCMTK_367"
    pub fn peer_summary(&self) -> String {
        let negotiated = &self.negotiated;
        format!(
            "peer max PDU {}, peer implementation {} {}",
            negotiated.peer_max_pdu_length,
            negotiated
                .peer_implementation_class_uid
                .as_deref()
                .unwrap_or("(none)"),
            negotiated
                .peer_implementation_version_name
                .as_deref()
                .unwrap_or("")
        )
    }
}

/// A received DIMSE command (PS3.7 §6.3.1), with the presentation context it came on.
#[derive(Debug, Clone)]
pub struct Command {
    pub presentation_context_id: u8,
    pub message: Message,
    /// The command set as received, for fields the typed message does not carry.
    pub command_set: CommandSet,
}

/// What a service provider gets from [`Association::receive_incoming`].
#[derive(Debug)]
pub enum Incoming {
    /// A DIMSE command; its data set (if any) follows through [`Association::read_data_fragment`].
    Command(Command),
    /// The peer released the association and we confirmed; the association is over.
    Released,
}

/// An A-ASSOCIATE indication or confirmation, a P-DATA or a release primitive, out of the state
/// machine (PS3.8 §9.2, the indications of Tables 9-6 to 9-9).
enum Indication {
    AssociateRq(AssociateRq),
    AssociateAc(AssociateAc),
    AssociateRj(AssociateRj),
    PData(PData),
    ReleaseRequest,
    ReleaseConfirm,
    ReleaseCollision,
}

// Short-lived, on the stack only: boxing the PDU would cost an allocation per P-DATA.
#[allow(clippy::large_enum_variant)]
enum ReadOutcome {
    Pdu(Pdu),
    Closed,
    TimedOut,
    Invalid(DecodeError),
}

/// One DICOM association (PS3.8 §7.1), requestor or acceptor side.
///
/// Every PDU sent or received goes through the PS3.8 §9.2 [`Machine`]: a PDU the standard does not
/// allow in the current state leads to the abort that Table 9-10 prescribes, never to a hang.
pub struct Association {
    stream: TcpStream,
    info: AssociationInfo,
    machine: Machine,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Scratch space for data read from a streamed data set.
    stream_buf: Vec<u8>,
    limits: Limits,
    timeouts: Timeouts,
    assembler: Assembler,
    pending_pdvs: VecDeque<Pdv>,
    artim_running: bool,
    next_message_id: u16,
    /// The PDU received last, kept until the state machine says what to do with it.
    last_pdu: Option<Pdu>,
}

impl std::fmt::Debug for Association {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Association")
            .field("info", &self.info)
            .field("state", &self.machine.state())
            .finish_non_exhaustive()
    }
}

impl Association {
    /// Requests an association (PS3.8 §7.1.1) with the peer at `address` ("host:port").
    pub async fn connect(
        address: &str,
        request: &AssociationRequest,
        timeouts: Timeouts,
        limits: Limits,
    ) -> Result<Association, Error> {
        let rq = request.to_pdu()?;
        let mut machine = Machine::new_requestor();
        machine.handle(Event::AssociateRequest)?;
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
        let peer_address = stream.peer_addr()?;
        let mut association =
            Association::new(stream, peer_address, machine, true, limits, timeouts);
        association.limits.decode.max_pdata_length = request.max_pdu_length;
        association.step(Event::TransportConnectConfirm)?;
        association.write_pdu(&Pdu::AssociateRq(rq.clone())).await?;
        match association
            .next_indication(timeouts.acse, "A-ASSOCIATE-AC")
            .await?
        {
            Indication::AssociateAc(ac) => match request.interpret_ac(&rq, &ac) {
                Ok(negotiated) => {
                    association.info.negotiated = negotiated;
                    Ok(association)
                }
                Err(e) => {
                    association
                        .abort_locally(AbortSource::ServiceUser, AbortReason::NotSpecified)
                        .await;
                    Err(e.into())
                }
            },
            Indication::AssociateRj(rj) => Err(Error::Rejected(rj)),
            _ => Err(association.unexpected("an A-ASSOCIATE-AC or -RJ").await),
        }
    }

    /// Answers an association request on a freshly accepted connection with `policy`.
    pub async fn accept(
        stream: TcpStream,
        policy: &AcceptorPolicy,
        timeouts: Timeouts,
        limits: Limits,
    ) -> Result<Association, Error> {
        Self::accept_with(stream, timeouts, limits, |rq| policy.evaluate(rq)).await
    }

    /// Like [`Association::accept`], with the decision left to `decide` (a server uses this to
    /// reject when it is full).
    pub async fn accept_with(
        stream: TcpStream,
        timeouts: Timeouts,
        limits: Limits,
        decide: impl FnOnce(&AssociateRq) -> Decision,
    ) -> Result<Association, Error> {
        stream.set_nodelay(true)?;
        let peer_address = stream.peer_addr()?;
        let machine = Machine::new_acceptor();
        let mut association =
            Association::new(stream, peer_address, machine, false, limits, timeouts);
        association.step(Event::TransportConnectIndication)?;
        let rq = match association.next_indication(None, "A-ASSOCIATE-RQ").await? {
            Indication::AssociateRq(rq) => rq,
            _ => return Err(association.unexpected("an A-ASSOCIATE-RQ").await),
        };
        match decide(&rq) {
            Decision::Accept { ac, negotiated } => {
                association.step(Event::AssociateResponseAccept)?;
                association.limits.decode.max_pdata_length = negotiated.local_max_pdu_length;
                association.info.negotiated = negotiated;
                association.write_pdu(&Pdu::AssociateAc(ac)).await?;
                Ok(association)
            }
            Decision::Reject(rj) => {
                association.info.negotiated.calling_ae_title = rq.calling_ae_title.clone();
                association.info.negotiated.called_ae_title = rq.called_ae_title.clone();
                association.step(Event::AssociateResponseReject)?;
                association.write_pdu(&Pdu::AssociateRj(rj)).await?;
                association.await_transport_close().await;
                Err(Error::Rejected(rj))
            }
        }
    }

    fn new(
        stream: TcpStream,
        peer_address: SocketAddr,
        machine: Machine,
        is_requestor: bool,
        limits: Limits,
        timeouts: Timeouts,
    ) -> Self {
        Association {
            stream,
            info: AssociationInfo {
                peer_address,
                is_requestor,
                negotiated: Negotiated::default(),
            },
            machine,
            read_buf: BytesMut::with_capacity(64 * 1024),
            write_buf: BytesMut::with_capacity(64 * 1024),
            stream_buf: Vec::new(),
            assembler: Assembler::new(CommandLimits {
                max_command_len: limits.max_command_length,
                ..CommandLimits::default()
            }),
            limits,
            timeouts,
            pending_pdvs: VecDeque::new(),
            artim_running: false,
            next_message_id: 1,
            last_pdu: None,
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
        &self.timeouts
    }

    /// The state machine's current state.
    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// Whether DIMSE messages can still be exchanged (PS3.8 Sta6).
    pub fn is_established(&self) -> bool {
        self.machine.state() == State::Sta6
    }

    /// A fresh message ID for a request (PS3.7 §9.1.1.1): 1, 2, … wrapping past 65535 to 1.
    pub fn next_message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
        id
    }

    /// The accepted presentation context for `abstract_syntax`.
    pub fn context_for(&self, abstract_syntax: &str) -> Result<u8, Error> {
        self.info
            .negotiated
            .find_accepted(abstract_syntax)
            .map(|context| context.id)
            .ok_or_else(|| Error::NoPresentationContext(abstract_syntax.to_string()))
    }

    /// Sends a DIMSE message (command, then data set if given) on presentation context `pc_id`,
    /// fragmented to fit the peer's maximum PDU length (PS3.8 §9.3.5, PS3.7 §9.3.1).
    pub async fn send_message(
        &mut self,
        presentation_context_id: u8,
        message: &Message,
        data_set: Option<&[u8]>,
    ) -> Result<(), Error> {
        let peer_max = self.start_message(presentation_context_id, message)?;
        if let Some(data) = data_set {
            fragment::encode_pdata_pdus(
                presentation_context_id,
                false,
                data,
                peer_max,
                &mut self.write_buf,
            )?;
        }
        self.flush_write_buf().await
    }

    /// Sends a DIMSE message whose data set is read from `reader` (exactly `length` bytes), as
    /// P-DATA-TF PDUs sized for the peer. The data goes from the reader straight into the send
    /// buffer behind each PDU header; memory stays bounded by [`STREAM_FLUSH_LEN`] whatever the
    /// size of the data set. If the reader fails, the association is aborted (a data set cannot
    /// be cut short) and [`Error::DataSource`] is returned.
    pub async fn send_message_streaming<R: std::io::Read>(
        &mut self,
        presentation_context_id: u8,
        message: &Message,
        reader: &mut R,
        length: u64,
    ) -> Result<(), Error> {
        let peer_max = self.start_message(presentation_context_id, message)?;
        let max_data = fragment::max_pdv_data_len(peer_max) as u64;
        let mut remaining = length;
        loop {
            // An empty data set still takes one (empty, last) fragment.
            let piece = remaining.min(max_data);
            remaining -= piece;
            let is_last = remaining == 0;
            let mut header = [0u8; fragment::PDATA_HEADER_LEN];
            fragment::write_pdata_header(
                &mut header,
                presentation_context_id,
                false,
                is_last,
                piece as usize,
            )?;
            self.write_buf.extend_from_slice(&header);
            // Read straight behind the header; `read_to_end` into spare capacity needs no zeroing.
            let mut chunk = std::mem::take(&mut self.stream_buf);
            chunk.clear();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(&mut *reader, piece),
                &mut chunk,
            )
            .and_then(|n| match n as u64 == piece {
                true => Ok(()),
                false => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the data set ended early",
                )),
            });
            if let Err(source) = read {
                self.write_buf.clear();
                self.abort_locally(AbortSource::ServiceUser, AbortReason::NotSpecified)
                    .await;
                return Err(Error::DataSource(source));
            }
            self.write_buf.extend_from_slice(&chunk);
            self.stream_buf = chunk;
            if is_last || self.write_buf.len() >= STREAM_FLUSH_LEN {
                self.flush_write_buf().await?;
            }
            if is_last {
                return Ok(());
            }
        }
    }

    /// Checks the context, encodes `message`'s command set and puts its P-DATA-TF PDUs in the
    /// (cleared) send buffer; returns the peer's maximum PDU length for the data that follows.
    fn start_message(
        &mut self,
        presentation_context_id: u8,
        message: &Message,
    ) -> Result<u32, Error> {
        self.check_context(presentation_context_id)?;
        let command = fragment::encode_command(message)?;
        let peer_max = self.info.negotiated.peer_max_pdu_length;
        self.step(Event::PDataRequest)?;
        self.write_buf.clear();
        fragment::encode_pdata_pdus(
            presentation_context_id,
            true,
            &command,
            peer_max,
            &mut self.write_buf,
        )?;
        Ok(peer_max)
    }

    fn check_context(&self, presentation_context_id: u8) -> Result<(), Error> {
        match self.info.negotiated.context(presentation_context_id) {
            Some(context) if context.transfer_syntax.is_some() => Ok(()),
            _ => Err(Error::NoPresentationContext(format!(
                "presentation context {presentation_context_id} (not accepted)"
            ))),
        }
    }

    /// Waits for the next DIMSE command (a response, for a service user). A release or abort by
    /// the peer ends the association and is reported as [`Error::Released`] / [`Error::Aborted`].
    pub async fn receive_command(&mut self) -> Result<Command, Error> {
        match self
            .receive_incoming(self.timeouts.dimse, "a DIMSE response")
            .await?
        {
            Incoming::Command(command) => Ok(command),
            Incoming::Released => Err(Error::Released),
        }
    }

    /// Waits for the next command or a release request (for a service provider, with the idle
    /// timeout), confirming the release if that is what comes.
    pub async fn receive_incoming(
        &mut self,
        wait: Option<Duration>,
        waiting_for: &'static str,
    ) -> Result<Incoming, Error> {
        loop {
            match self.next_assembled(wait, waiting_for).await? {
                Some(Assembled::Command {
                    presentation_context_id,
                    message,
                    command,
                }) => {
                    return Ok(Incoming::Command(Command {
                        presentation_context_id,
                        message,
                        command_set: command,
                    }));
                }
                Some(Assembled::DataFragment { .. }) => {
                    // A data set fragment with no reader: the previous handler did not read its
                    // data set. Skip it; the assembler has already checked it belongs here.
                }
                None => return Ok(Incoming::Released),
            }
        }
    }

    /// Reads the next fragment of the data set that follows the last command: `(bytes, is_last)`.
    pub async fn read_data_fragment(&mut self) -> Result<(Bytes, bool), Error> {
        match self
            .next_assembled(self.timeouts.dimse, "a data set fragment")
            .await?
        {
            Some(Assembled::DataFragment { data, is_last, .. }) => Ok((data, is_last)),
            Some(Assembled::Command { .. }) => Err(self
                .protocol_abort("a new command arrived where a data set was expected")
                .await),
            None => Err(Error::Released),
        }
    }

    /// Reads the whole data set that follows the last command into memory, up to
    /// [`Limits::max_in_memory_data_set`] bytes (for identifiers and small objects; a storage
    /// provider streams with [`Association::read_data_fragment`] instead).
    pub async fn receive_data_set(&mut self) -> Result<Vec<u8>, Error> {
        let mut data = Vec::new();
        loop {
            let (fragment, is_last) = self.read_data_fragment().await?;
            if data.len() + fragment.len() > self.limits.max_in_memory_data_set {
                let size = data.len() + fragment.len();
                self.abort_locally(AbortSource::ServiceUser, AbortReason::NotSpecified)
                    .await;
                return Err(Error::DataSetTooLarge {
                    size,
                    limit: self.limits.max_in_memory_data_set,
                });
            }
            data.extend_from_slice(&fragment);
            if is_last {
                return Ok(data);
            }
        }
    }

    /// Whether a data set is still being received (its last fragment has not come yet).
    pub fn is_receiving_data_set(&self) -> bool {
        !self.assembler.is_idle()
    }

    /// Reads and discards the rest of the data set being received, if any.
    pub async fn discard_data_set(&mut self) -> Result<(), Error> {
        while self.is_receiving_data_set() {
            self.read_data_fragment().await?;
        }
        Ok(())
    }

    /// The next assembled command or data fragment; `None` when the peer released.
    async fn next_assembled(
        &mut self,
        wait: Option<Duration>,
        waiting_for: &'static str,
    ) -> Result<Option<Assembled>, Error> {
        loop {
            if let Some(pdv) = self.pending_pdvs.pop_front() {
                match self.assembler.push(pdv) {
                    Ok(Some(assembled)) => return Ok(Some(assembled)),
                    Ok(None) => continue,
                    Err(e) => return Err(self.protocol_abort(&e.to_string()).await),
                }
            }
            match self.next_indication(wait, waiting_for).await? {
                Indication::PData(pdata) => {
                    for pdv in &pdata.pdvs {
                        if self
                            .info
                            .negotiated
                            .context(pdv.presentation_context_id)
                            .is_none_or(|context| context.transfer_syntax.is_none())
                        {
                            let reason = format!(
                                "P-DATA on presentation context {} which was not accepted",
                                pdv.presentation_context_id
                            );
                            return Err(self.protocol_abort(&reason).await);
                        }
                    }
                    self.pending_pdvs.extend(pdata.pdvs);
                }
                Indication::ReleaseRequest => {
                    self.step(Event::ReleaseResponse)?;
                    self.write_pdu(&Pdu::ReleaseRp).await?;
                    self.await_transport_close().await;
                    return Ok(None);
                }
                _ => return Err(self.unexpected("a P-DATA-TF").await),
            }
        }
    }

    /// Releases the association (PS3.8 §7.2), handling a release collision (PS3.8 §9.2.1).
    pub async fn release(mut self) -> Result<(), Error> {
        self.step(Event::ReleaseRequest)?;
        self.write_pdu(&Pdu::ReleaseRq).await?;
        loop {
            match self
                .next_indication(self.timeouts.acse, "A-RELEASE-RP")
                .await?
            {
                // P-DATA may still arrive in Sta7 (PS3.8 AR-6); nothing is waiting for it now.
                Indication::PData(_) => continue,
                Indication::ReleaseConfirm => {
                    if self.machine.state() == State::Sta12 {
                        // Acceptor side of a collision: now confirm the peer's request.
                        self.step(Event::ReleaseResponse)?;
                        self.write_pdu(&Pdu::ReleaseRp).await?;
                        self.await_transport_close().await;
                    }
                    return Ok(());
                }
                Indication::ReleaseCollision => {
                    if self.machine.is_requestor() {
                        // Sta9: answer the peer's request first, then await its answer (Sta11).
                        self.step(Event::ReleaseResponse)?;
                        self.write_pdu(&Pdu::ReleaseRp).await?;
                    }
                    // The acceptor (Sta10) awaits the peer's A-RELEASE-RP first.
                }
                _ => return Err(self.unexpected("an A-RELEASE-RP").await),
            }
        }
    }

    /// Aborts the association (PS3.8 §7.3, A-ABORT with source service-user).
    pub async fn abort(mut self) {
        self.abort_locally(AbortSource::ServiceUser, AbortReason::NotSpecified)
            .await;
    }

    /// Aborts after a local decision (timeout, limit): sends A-ABORT and waits for the peer to
    /// close, bounded by ARTIM.
    async fn abort_locally(&mut self, source: AbortSource, reason: AbortReason) {
        if self.step(Event::AbortRequest).is_ok() {
            let reason = match source {
                AbortSource::ServiceProvider => reason,
                _ => AbortReason::NotSpecified,
            };
            let _ = self.write_pdu(&Pdu::Abort(Abort { source, reason })).await;
            self.await_transport_close().await;
        }
    }

    /// Aborts because the peer broke the DIMSE protocol (service-provider source, as an Upper
    /// Layer provider would for an unexpected PDU parameter) and returns the error to report.
    async fn protocol_abort(&mut self, reason: &str) -> Error {
        debug!(reason, "aborting: DIMSE protocol violation");
        self.abort_locally(
            AbortSource::ServiceProvider,
            AbortReason::UnexpectedPduParameter,
        )
        .await;
        Error::Protocol(reason.to_string())
    }

    /// Called when a well-formed indication came that the caller did not expect in this
    /// direction of the exchange (the state machine allowed it).
    async fn unexpected(&mut self, expected: &str) -> Error {
        let reason = format!("expected {expected}, got another primitive");
        self.abort_locally(AbortSource::ServiceProvider, AbortReason::UnexpectedPdu)
            .await;
        Error::Protocol(reason)
    }

    /// Feeds one event to the state machine and applies its timer effects.
    fn step(&mut self, event: Event) -> Result<Transition, Error> {
        let transition = self.machine.handle(event)?;
        for effect in &transition.effects {
            match effect {
                Effect::StartArtim => self.artim_running = true,
                Effect::StopArtim => self.artim_running = false,
                _ => {}
            }
        }
        Ok(transition)
    }

    /// Reads PDUs until the state machine issues an indication to the user, carrying out the
    /// machine's effects (aborts, closing, ARTIM) on the way.
    async fn next_indication(
        &mut self,
        wait: Option<Duration>,
        waiting_for: &'static str,
    ) -> Result<Indication, Error> {
        loop {
            let mut decode_error = None;
            let mut timed_out = false;
            let event = match self.read_pdu(wait).await? {
                ReadOutcome::Pdu(pdu) => {
                    let event = event_for(&pdu);
                    self.last_pdu = Some(pdu);
                    event
                }
                ReadOutcome::Closed => Event::TransportClosed,
                ReadOutcome::Invalid(e) => {
                    decode_error = Some(e);
                    Event::InvalidPdu
                }
                ReadOutcome::TimedOut if self.artim_running => Event::ArtimExpired,
                ReadOutcome::TimedOut => {
                    timed_out = true;
                    Event::AbortRequest
                }
            };
            let transition = self.step(event)?;
            let mut pdu = self.last_pdu.take();
            let mut outcome: Option<Result<Indication, Error>> = None;
            for effect in &transition.effects {
                match *effect {
                    Effect::SendAbort(source) => {
                        let reason = match (&decode_error, source) {
                            (_, AbortSource::ServiceUser) => AbortReason::NotSpecified,
                            (Some(e), _) => e.abort_reason(),
                            (None, _) => AbortReason::UnexpectedPdu,
                        };
                        let _ = self.write_pdu(&Pdu::Abort(Abort { source, reason })).await;
                        if outcome.is_none() {
                            outcome = Some(Err(match (&decode_error, &pdu) {
                                (Some(e), _) => Error::InvalidPdu(e.clone()),
                                _ => Error::Aborted {
                                    origin: AbortOrigin::Local,
                                    reason,
                                },
                            }));
                        }
                    }
                    Effect::CloseTransport => {
                        let _ = self.stream.shutdown().await;
                    }
                    Effect::IndicatePData => {
                        if let Some(Pdu::PData(pdata)) = pdu.take() {
                            outcome = Some(Ok(Indication::PData(pdata)));
                        }
                    }
                    Effect::IndicateReleaseRequest => {
                        outcome = Some(Ok(Indication::ReleaseRequest))
                    }
                    Effect::IndicateReleaseConfirm => {
                        outcome = Some(Ok(Indication::ReleaseConfirm))
                    }
                    Effect::IndicateReleaseCollision => {
                        outcome = Some(Ok(Indication::ReleaseCollision))
                    }
                    Effect::IndicateAssociateRequest => {
                        if let Some(Pdu::AssociateRq(rq)) = pdu.take() {
                            outcome = Some(Ok(Indication::AssociateRq(rq)));
                        }
                    }
                    Effect::IndicateAssociateAccepted => {
                        if let Some(Pdu::AssociateAc(ac)) = pdu.take() {
                            outcome = Some(Ok(Indication::AssociateAc(ac)));
                        }
                    }
                    Effect::IndicateAssociateRejected => {
                        if let Some(Pdu::AssociateRj(rj)) = &pdu {
                            outcome = Some(Ok(Indication::AssociateRj(*rj)));
                        }
                    }
                    Effect::IndicateAbort => {
                        if let Some(Pdu::Abort(abort)) = &pdu {
                            outcome = Some(Err(Error::Aborted {
                                origin: AbortOrigin::Peer(abort.source),
                                reason: abort.reason,
                            }));
                        }
                    }
                    Effect::IndicateProviderAbort if outcome.is_none() => {
                        outcome = Some(Err(match event {
                            Event::TransportClosed => Error::ConnectionClosed,
                            Event::ArtimExpired => Error::Timeout {
                                waiting_for,
                                seconds: self.timeouts.artim.as_secs_f64(),
                            },
                            _ => Error::Protocol(
                                "the peer sent a PDU not allowed in this state".into(),
                            ),
                        }));
                    }
                    _ => {}
                }
            }
            if timed_out {
                let seconds = wait.map(|d| d.as_secs_f64()).unwrap_or_default();
                self.await_transport_close().await;
                return Err(Error::Timeout {
                    waiting_for,
                    seconds,
                });
            }
            match (event, self.machine.state()) {
                (Event::TransportClosed, _) if outcome.is_none() => {
                    return Err(Error::ConnectionClosed);
                }
                (Event::ArtimExpired, _) if outcome.is_none() => {
                    let _ = self.stream.shutdown().await;
                    return Err(Error::Timeout {
                        waiting_for,
                        seconds: self.timeouts.artim.as_secs_f64(),
                    });
                }
                _ => {}
            }
            if self.machine.state() == State::Sta13 {
                self.await_transport_close().await;
            }
            if let Some(outcome) = outcome {
                return outcome;
            }
            // An ignored PDU (AA-6) or an event with no indication: keep reading.
        }
    }

    /// In Sta13, waits for the peer to close the connection, at most ARTIM (PS3.8 §9.1.5); the
    /// connection is closed on our side either way.
    async fn await_transport_close(&mut self) {
        let _ = self.stream.shutdown().await;
        let deadline = tokio::time::Instant::now() + self.timeouts.artim;
        let mut scratch = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    let _ = self.machine.handle(Event::TransportClosed);
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => {
                    let _ = self.machine.handle(Event::ArtimExpired);
                    break;
                }
            }
        }
        self.artim_running = false;
    }

    /// Reads one PDU, waiting at most `wait` (ARTIM instead while it runs).
    async fn read_pdu(&mut self, wait: Option<Duration>) -> Result<ReadOutcome, Error> {
        let wait = if self.artim_running {
            Some(self.timeouts.artim)
        } else {
            wait
        };
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            match pdu::decode_from(&mut self.read_buf, &self.limits.decode) {
                Ok(Some(pdu)) => {
                    debug!(pdu_type = ?pdu.pdu_type(), "received PDU");
                    return Ok(ReadOutcome::Pdu(pdu));
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(error = %e, "invalid PDU");
                    return Ok(ReadOutcome::Invalid(e));
                }
            }
            // The header (if present) has been validated against the limits: reserve towards the
            // PDU's end, a chunk at a time, so a lying length costs at most one chunk.
            let wanted = match pdu::read_header(&self.read_buf) {
                Some(header) => (pdu::PDU_HEADER_LEN + header.length as usize)
                    .saturating_sub(self.read_buf.len())
                    .clamp(1, READ_CHUNK),
                None => 64 * 1024,
            };
            self.read_buf.reserve(wanted);
            let read = self.stream.read_buf(&mut self.read_buf);
            let n = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(result) => result,
                    Err(_) => return Ok(ReadOutcome::TimedOut),
                },
                None => read.await,
            };
            match n {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(_) => {}
                Err(e) if is_disconnect(&e) => return Ok(ReadOutcome::Closed),
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    async fn write_pdu(&mut self, pdu: &Pdu) -> Result<(), Error> {
        self.write_buf.clear();
        pdu.encode(&mut self.write_buf)?;
        debug!(pdu_type = ?pdu.pdu_type(), "sending PDU");
        self.flush_write_buf().await
    }

    async fn flush_write_buf(&mut self) -> Result<(), Error> {
        let result = self.stream.write_all(&self.write_buf).await;
        self.write_buf.clear();
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_disconnect(&e) => {
                let _ = self.machine.handle(Event::TransportClosed);
                Err(Error::ConnectionClosed)
            }
            Err(e) => Err(Error::Io(e)),
        }
    }
}

fn is_disconnect(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// The state-machine event for a received PDU (PS3.8 §9.2.2, Evt3–Evt16).
fn event_for(pdu: &Pdu) -> Event {
    match pdu {
        Pdu::AssociateRq(_) => Event::AssociateRqReceived { acceptable: true },
        Pdu::AssociateAc(_) => Event::AssociateAcReceived,
        Pdu::AssociateRj(_) => Event::AssociateRjReceived,
        Pdu::PData(_) => Event::PDataReceived,
        Pdu::ReleaseRq => Event::ReleaseRqReceived,
        Pdu::ReleaseRp => Event::ReleaseRpReceived,
        Pdu::Abort(_) => Event::AbortReceived,
    }
}
