//! A DICOM server: accepts associations on a TCP listener (optionally TLS) and serves each with
//! a dispatcher; counts what it does ([`ServerStatistics`]); stops on request, from its
//! [`ServerHandle`] or, when configured, from DCMTK's private shutdown request.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, info, info_span, warn};

use dimsum_dimse::message::Message;
use dimsum_ul::negotiation::{
    AcceptorPolicy, Decision, SupportedContext, reject_local_limit_exceeded,
};
use dimsum_ul::pdu::{
    AssociateRj, AsyncOpsWindow, PresentationContextResult, RejectResult, RejectSource,
    ServiceUserReason,
};
use dimsum_ul::uids::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use crate::scp::{Dispatcher, Outcome, RequestObserver};
use crate::tls::ServerTls;
use crate::{Association, Error, Limits, Timeouts};

/// Associations served at once by default: an association costs a task and a few buffers, so a
/// busy hospital's peers (hundreds of modalities and workstations at once) all fit.
pub const DEFAULT_MAX_ASSOCIATIONS: usize = 512;
/// Operations a peer may have outstanding on one association by default (the asynchronous
/// operations window we grant, PS3.7 §D.3.3.3), when it asks for a window.
pub const DEFAULT_OPERATIONS_PERFORMED: u16 = 16;
/// DCMTK's private Shutdown SOP Class (UID_PrivateShutdownSOPClass of DCMTK's dcuid.h, in the
/// OFFIS root 1.2.276.0.7230010.3): an association request proposing it asks the server to
/// stop. DCMTK's `termscu` sends it; its servers that honour it (`dcmqrscp --allow-shutdown`)
/// accept the context internally, refuse the association ([`shutdown_rejection`]) and stop.
pub const PRIVATE_SHUTDOWN_SOP_CLASS: &str = "1.2.276.0.7230010.3.4.1915765545.18030.917282194.0";

/// The answer to an honoured shutdown request, as DCMTK's servers give it: A-ASSOCIATE-RJ
/// rejected-permanent, service-user, no-reason-given (PS3.8 Table 9-21).
pub fn shutdown_rejection() -> AssociateRj {
    AssociateRj {
        result: RejectResult::Permanent,
        source: RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven),
    }
}

/// Bounds for the automatic pending-connection cap.
const MIN_PENDING: usize = 64;
const MAX_PENDING: usize = 16_384;
/// File descriptors kept for each association slot (its socket and a file being stored) and
/// for everything else, when the pending cap is sized from the open-file limit.
const DESCRIPTORS_PER_ASSOCIATION: u64 = 2;
const DESCRIPTORS_SPARE: u64 = 64;

/// How a [`Server`] accepts and serves associations.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our AE title.
    pub ae_title: String,
    /// Associations served at once; one more is rejected with A-ASSOCIATE-RJ (transient,
    /// service-provider presentation, local limit exceeded — PS3.8 Table 9-21).
    pub max_associations: usize,
    /// Associations served at once for one peer IP address (`None`: no per-peer limit); one
    /// more is rejected the same way.
    pub max_associations_per_peer: Option<usize>,
    /// Connections whose association request (or TLS handshake) is still awaited. They do not
    /// take association slots (a peer that connects and says nothing cannot keep others out of
    /// an association for ARTIM), but they are bounded too: beyond this, new connections are
    /// closed at once. `None` sizes the bound from the process's open-file limit (raised to its
    /// hard limit when the server binds), so that thousands of silent connections fit.
    pub max_pending_associations: Option<usize>,
    /// TLS on every association (PS3.15 Annex B), when given.
    pub tls: Option<ServerTls>,
    /// How many operations a peer may have outstanding when it proposes an asynchronous
    /// operations window.
    pub max_operations_performed: u16,
    /// How many of our own requests (the C-STORE sub-operations of a C-GET) we may have
    /// outstanding at once, when the peer proposes a window that allows it.
    pub max_operations_invoked: u16,
    /// The maximum PDU length we announce (PS3.8 §D.1); 0 = unlimited.
    pub max_pdu_length: u32,
    /// Reject requests whose called AE title is not ours.
    pub require_called_ae_title: bool,
    /// Accept only these calling AE titles (`None`: any).
    pub allowed_calling_ae_titles: Option<Vec<String>>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// On shutdown, how long running associations may go on before they are cut.
    pub shutdown_grace: Duration,
    /// Honour DCMTK's private shutdown request ([`PRIVATE_SHUTDOWN_SOP_CLASS`], sent by
    /// `termscu`): an association request proposing it that passes the AE title checks is
    /// refused as DCMTK's servers refuse it ([`shutdown_rejection`]) and the server stops as on
    /// [`ServerHandle::shutdown`]. Off by default: the context is then refused (abstract syntax
    /// not supported, even in promiscuous mode) and the server goes on.
    pub allow_shutdown_request: bool,
}

impl ServerConfig {
    pub fn new(ae_title: impl Into<String>) -> Self {
        Self {
            ae_title: ae_title.into(),
            max_associations: DEFAULT_MAX_ASSOCIATIONS,
            max_associations_per_peer: None,
            max_pending_associations: None,
            tls: None,
            max_operations_performed: DEFAULT_OPERATIONS_PERFORMED,
            max_operations_invoked: DEFAULT_OPERATIONS_PERFORMED,
            max_pdu_length: 16_384,
            require_called_ae_title: false,
            allowed_calling_ae_titles: None,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(10),
            allow_shutdown_request: false,
        }
    }
}

/// What a [`Server`] has done since it was bound, for its operators (the figures
/// `dimsum serve` prints when it stops).
///
/// Associations are counted as they end or are refused; messages as their final response
/// goes out. Bytes are those of the DICOM Upper Layer on the associations the server accepted
/// (PDUs, after TLS decryption); the C-STORE sub-operations of a C-MOVE travel on associations
/// of their own and count in `instances_sent` only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStatistics {
    /// Associations accepted.
    pub accepted: u64,
    /// Association requests rejected (policy or limit), honoured shutdown requests excepted.
    pub rejected: u64,
    /// Accepted associations that ended with a release.
    pub released: u64,
    /// Accepted associations that ended otherwise (abort, timeout, protocol error).
    pub failed: u64,
    /// Connections that ended before an association was established (no or invalid request).
    pub failed_requests: u64,
    /// Associations being served now.
    pub active: u64,
    /// Shutdown requests honoured ([`ServerConfig::allow_shutdown_request`]).
    pub shutdown_requests: u64,
    /// DIMSE requests answered (every service).
    pub messages: u64,
    /// C-FIND requests answered (queries and worklist queries).
    pub queries: u64,
    /// C-GET and C-MOVE requests answered.
    pub retrieves: u64,
    /// Instances received: C-STORE requests answered with success or a warning.
    pub instances_received: u64,
    /// Instances sent: the completed (and warning) C-STORE sub-operations of the C-GET and
    /// C-MOVE requests answered.
    pub instances_sent: u64,
    /// Bytes read from peers.
    pub bytes_received: u64,
    /// Bytes written to peers.
    pub bytes_sent: u64,
    /// Time since the server was bound.
    pub uptime: Duration,
}

/// One line by default (for logs); `{:#}` gives one line per subject, for a person reading the
/// report at shutdown.
impl std::fmt::Display for ServerStatistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uptime = HumanDuration(self.uptime);
        let associations = format!(
            "{} accepted ({} released, {} aborted or failed, {} active), {} rejected, {} failed requests",
            self.accepted,
            self.released,
            self.failed,
            self.active,
            self.rejected,
            self.failed_requests,
        );
        let shutdown = match self.shutdown_requests {
            0 => String::new(),
            1 => ", 1 shutdown request".to_owned(),
            n => format!(", {n} shutdown requests"),
        };
        let messages = format!(
            "{} ({} queries, {} retrieves)",
            self.messages, self.queries, self.retrieves
        );
        let instances = format!(
            "{} received, {} sent",
            self.instances_received, self.instances_sent
        );
        let bytes = format!(
            "{} received, {} sent",
            HumanBytes(self.bytes_received),
            HumanBytes(self.bytes_sent)
        );
        if f.alternate() {
            write!(
                f,
                "Uptime:       {uptime}\n\
                 Associations: {associations}{shutdown}\n\
                 Messages:     {messages}\n\
                 Instances:    {instances}\n\
                 Bytes:        {bytes}"
            )
        } else {
            write!(
                f,
                "up {uptime}; associations: {associations}{shutdown}; messages: {messages}; \
                 instances: {instances}; bytes: {bytes}"
            )
        }
    }
}

/// A duration for a person: `2 h 03 min 04 s`, `5 min 00 s`, `12.3 s`.
struct HumanDuration(Duration);

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.as_secs();
        let (days, hours, minutes, rest) = (
            seconds / 86_400,
            seconds / 3600 % 24,
            seconds / 60 % 60,
            seconds % 60,
        );
        if days > 0 {
            write!(f, "{days} d {hours:02} h {minutes:02} min")
        } else if hours > 0 {
            write!(f, "{hours} h {minutes:02} min {rest:02} s")
        } else if minutes > 0 {
            write!(f, "{minutes} min {rest:02} s")
        } else {
            write!(f, "{:.1} s", self.0.as_secs_f64())
        }
    }
}

/// A byte count for a person, in powers of 1000 as disks and networks are sold: `1.5 MB`.
struct HumanBytes(u64);

impl std::fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
        if self.0 < 1000 {
            return write!(f, "{} bytes", self.0);
        }
        let mut value = self.0 as f64 / 1000.0;
        let mut unit = 0;
        while value >= 1000.0 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

struct Counters {
    started: Instant,
    accepted: AtomicU64,
    rejected: AtomicU64,
    released: AtomicU64,
    failed: AtomicU64,
    failed_requests: AtomicU64,
    shutdown_requests: AtomicU64,
    messages: AtomicU64,
    queries: AtomicU64,
    retrieves: AtomicU64,
    instances_received: AtomicU64,
    instances_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    active: AtomicUsize,
    /// Connections whose association is not established yet.
    pending: AtomicUsize,
    /// Associations per peer address.
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

impl Counters {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            released: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
            shutdown_requests: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            retrieves: AtomicU64::new(0),
            instances_received: AtomicU64::new(0),
            instances_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            per_peer: Mutex::default(),
        }
    }

    fn snapshot(&self) -> ServerStatistics {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStatistics {
            accepted: load(&self.accepted),
            rejected: load(&self.rejected),
            released: load(&self.released),
            failed: load(&self.failed),
            failed_requests: load(&self.failed_requests),
            active: self.active.load(Ordering::Relaxed) as u64,
            shutdown_requests: load(&self.shutdown_requests),
            messages: load(&self.messages),
            queries: load(&self.queries),
            retrieves: load(&self.retrieves),
            instances_received: load(&self.instances_received),
            instances_sent: load(&self.instances_sent),
            bytes_received: load(&self.bytes_received),
            bytes_sent: load(&self.bytes_sent),
            uptime: self.started.elapsed(),
        }
    }
}

/// The Dispatcher tells the counters of every request it answers.
impl RequestObserver for Counters {
    fn answered(&self, request: &Message, response: &Message) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        add(&self.messages, 1);
        match request {
            Message::CFindRq(_) => add(&self.queries, 1),
            Message::CGetRq(_) | Message::CMoveRq(_) => add(&self.retrieves, 1),
            Message::CStoreRq(_)
                if response
                    .status()
                    .is_some_and(|status| status.is_success() || status.is_warning()) =>
            {
                add(&self.instances_received, 1)
            }
            _ => {}
        }
        let sent = match response {
            Message::CGetRsp(rsp) => (
                rsp.number_of_completed_suboperations,
                rsp.number_of_warning_suboperations,
            ),
            Message::CMoveRsp(rsp) => (
                rsp.number_of_completed_suboperations,
                rsp.number_of_warning_suboperations,
            ),
            _ => (None, None),
        };
        add(
            &self.instances_sent,
            u64::from(sent.0.unwrap_or(0)) + u64::from(sent.1.unwrap_or(0)),
        );
    }
}

/// A transport that counts the bytes read and written into the server's counters, and tells
/// when it is dropped (the association's driver has closed it).
struct Counted<T> {
    inner: T,
    counters: Arc<Counters>,
    _closed: oneshot::Sender<()>,
}

impl<T> Counted<T> {
    fn new(inner: T, counters: &Arc<Counters>, closed: oneshot::Sender<()>) -> Self {
        Self {
            inner,
            counters: Arc::clone(counters),
            _closed: closed,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled().len().saturating_sub(before);
            this.counters
                .bytes_received
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> Counted<T> {
    fn count_written(&self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(written)) = polled {
            self.counters
                .bytes_sent
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count_written(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count_written(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Controls a running [`Server`] from elsewhere: statistics and shutdown.
#[derive(Clone)]
pub struct ServerHandle {
    counters: Arc<Counters>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl ServerHandle {
    /// Asks the server to stop accepting and to finish (see [`ServerConfig::shutdown_grace`]).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn statistics(&self) -> ServerStatistics {
        self.counters.snapshot()
    }
}

/// A DICOM application entity listening for associations (the acceptor side of PS3.8 §7.1),
/// serving each one in its own task with a [`Dispatcher`].
pub struct Server {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    policy: Arc<AcceptorPolicy>,
    tls: Option<TlsAcceptor>,
    max_pending: usize,
    dispatcher: Arc<Dispatcher>,
    handle: ServerHandle,
}

impl Server {
    /// Binds the listener. Use port 0 for a free port and [`Server::local_addr`] to learn it.
    pub async fn bind(
        address: impl ToSocketAddrs,
        config: ServerConfig,
        dispatcher: Dispatcher,
    ) -> Result<Server, Error> {
        let listener = TcpListener::bind(address).await?;
        let mut policy = dispatcher.policy(&config.ae_title);
        if config.allow_shutdown_request {
            // Accepted, as DCMTK's servers accept it, with the transfer syntaxes termscu
            // proposes; the request is then refused by the server (see `Connection::accept`).
            policy = policy.support(SupportedContext::new(
                PRIVATE_SHUTDOWN_SOP_CLASS,
                [
                    EXPLICIT_VR_LITTLE_ENDIAN,
                    EXPLICIT_VR_BIG_ENDIAN,
                    IMPLICIT_VR_LITTLE_ENDIAN,
                ],
            ));
        }
        policy.max_pdu_length = config.max_pdu_length;
        policy.require_called_ae_title = config.require_called_ae_title;
        policy.allowed_calling_ae_titles = config.allowed_calling_ae_titles.clone();
        policy.async_ops_window = Some(AsyncOpsWindow {
            max_operations_invoked: config.max_operations_invoked,
            max_operations_performed: config.max_operations_performed,
        });
        let tls = config.tls.as_ref().map(ServerTls::acceptor).transpose()?;
        let max_pending = config
            .max_pending_associations
            .unwrap_or_else(|| pending_cap(config.max_associations));
        let (shutdown, _) = watch::channel(false);
        Ok(Server {
            listener,
            tls,
            max_pending,
            config: Arc::new(config),
            policy: Arc::new(policy),
            dispatcher: Arc::new(dispatcher),
            handle: ServerHandle {
                counters: Arc::new(Counters::new()),
                shutdown: Arc::new(shutdown),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The acceptor policy in force (built from the dispatcher's providers and the config).
    pub fn policy(&self) -> &AcceptorPolicy {
        &self.policy
    }

    /// Accepts and serves associations until [`ServerHandle::shutdown`], then waits for the
    /// running ones up to the grace period and returns the final statistics.
    pub async fn run(self) -> ServerStatistics {
        let mut shutdown = self.handle.shutdown.subscribe();
        let mut tasks = JoinSet::new();
        info!(
            "Listening on {} as {}",
            self.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            self.config.ae_title
        );
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.start(stream, peer, &mut tasks),
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop_requested(&mut shutdown) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(self.listener);
        let grace = self.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(
                "{} associations still running after {:.1} s: cutting them",
                tasks.len(),
                grace.as_secs_f64()
            );
            tasks.shutdown().await;
        }
        let statistics = self.handle.statistics();
        info!("Server stopped: {statistics}");
        statistics
    }

    fn start(&self, stream: TcpStream, peer: SocketAddr, tasks: &mut JoinSet<()>) {
        let counters = Arc::clone(&self.handle.counters);
        if !try_claim(&counters.pending, self.max_pending) {
            counters.failed_requests.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "too many association requests in progress: connection closed");
            return;
        }
        let config = Arc::clone(&self.config);
        let policy = Arc::clone(&self.policy);
        let dispatcher = Arc::clone(&self.dispatcher);
        let tls = self.tls.clone();
        let shutdown = Arc::clone(&self.handle.shutdown);
        tasks.spawn(
            async move {
                // The unit claimed above, given back however the connection ends.
                let pending = Slot(&counters.pending);
                let connection = Connection {
                    config: &config,
                    policy: &policy,
                    dispatcher: &dispatcher,
                    counters: &counters,
                    shutdown: &shutdown,
                };
                connection.serve(stream, peer, pending, tls).await;
            }
            .instrument(info_span!("association", %peer)),
        );
    }
}

/// One unit of a bounded counter (pending handshakes, established associations), given back
/// when dropped — whatever way the connection ends.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    /// Takes a unit if fewer than `max` are taken.
    fn claim(counter: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        try_claim(counter, max).then(|| Slot(counter))
    }
}

/// Takes a unit of `counter` if fewer than `max` are taken; the caller gives it back (a [`Slot`]).
fn try_claim(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once shutdown has been asked for (or the handle is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What serving one connection needs.
struct Connection<'a> {
    config: &'a ServerConfig,
    policy: &'a AcceptorPolicy,
    dispatcher: &'a Dispatcher,
    counters: &'a Arc<Counters>,
    /// Set when an honoured shutdown request comes.
    shutdown: &'a watch::Sender<bool>,
}

impl Connection<'_> {
    async fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        pending: Slot<'_>,
        tls: Option<TlsAcceptor>,
    ) {
        let _ = stream.set_nodelay(true);
        let (counters, config) = (self.counters, self.config);
        let (closed, transport_closed) = oneshot::channel();
        let accepted = match tls {
            None => {
                let transport = Counted::new(stream, counters, closed);
                self.accept(transport, peer, false).await
            }
            Some(acceptor) => {
                match crate::tls::accept(stream, &acceptor, config.timeouts.artim).await {
                    Ok(stream) => {
                        let transport = Counted::new(stream, counters, closed);
                        self.accept(transport, peer, true).await
                    }
                    Err(error) => Err(Refusal::failed(None, Error::Tls(error))),
                }
            }
        };
        drop(pending);
        let (association, _slot, _peer_slot) = match accepted {
            Ok(accepted) => accepted,
            Err(Refusal::Shutdown) => {
                // The server stops once this task ends: the rejection goes out first, and the
                // peer gets ARTIM (bounded by the grace period) to read it and close.
                let _ = tokio::time::timeout(config.timeouts.artim, transport_closed).await;
                return;
            }
            Err(Refusal::Failed { calling, error }) => {
                return log_refusal(counters, peer, calling, Some(error));
            }
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let negotiated = association.negotiated();
        info!(
            "Association accepted from {}@{} to {}: {}",
            negotiated.calling_ae_title,
            peer,
            negotiated.called_ae_title,
            association.info().peer_summary()
        );
        let calling = negotiated.calling_ae_title.clone();
        let observer: Arc<dyn RequestObserver> = Arc::clone(counters) as _;
        match self
            .dispatcher
            .serve_observed(&association, Some(observer))
            .await
        {
            Outcome::Released => {
                counters.released.fetch_add(1, Ordering::Relaxed);
                info!("Association released by {calling}");
            }
            Outcome::Failed(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                info!("Association with {calling} ended: {error}");
            }
        }
    }

    /// Answers the association request; on success, the association and the slots it holds.
    #[allow(clippy::type_complexity)]
    async fn accept<T: crate::Transport>(
        &self,
        transport: T,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<(Association, Option<Slot<'_>>, Option<PeerSlot<'_>>), Refusal> {
        let (counters, config) = (self.counters, self.config);
        let mut calling = None;
        let mut slots = None;
        let mut shutdown_honoured = false;
        let accepted =
            Association::accept_over(transport, peer, config.timeouts, config.limits, tls, |rq| {
                calling = Some(rq.calling_ae_title.trim().to_string());
                // An association slot is taken only now, when a request has come.
                let Some(slot) = Slot::claim(&counters.active, config.max_associations) else {
                    return Decision::Reject(reject_local_limit_exceeded());
                };
                let Some(peer_slot) = PeerSlot::claim(
                    &counters.per_peer,
                    peer.ip(),
                    config.max_associations_per_peer,
                ) else {
                    return Decision::Reject(reject_local_limit_exceeded());
                };
                let decision = match self.policy.evaluate(rq) {
                    Decision::Accept { ac, negotiated }
                        if negotiated
                            .find_accepted(PRIVATE_SHUTDOWN_SOP_CLASS)
                            .is_some() =>
                    {
                        if config.allow_shutdown_request {
                            self.honour_shutdown(&negotiated.calling_ae_title, peer);
                            shutdown_honoured = true;
                            return Decision::Reject(shutdown_rejection());
                        }
                        // Accepted by promiscuous mode: refused like any unsupported class.
                        refuse_shutdown_context(ac, negotiated)
                    }
                    decision => decision,
                };
                if matches!(decision, Decision::Accept { .. }) {
                    slots = Some((slot, peer_slot));
                }
                decision
            })
            .await;
        match accepted {
            Ok(association) => {
                let (slot, peer_slot) = slots.map_or((None, None), |(a, b)| (Some(a), Some(b)));
                Ok((association, slot, peer_slot))
            }
            // Counted as a shutdown request, not as a rejection.
            Err(_) if shutdown_honoured => Err(Refusal::Shutdown),
            Err(error) => Err(Refusal::failed(calling, error)),
        }
    }
}

impl Connection<'_> {
    /// Stops the server for a shutdown request from `calling`@`peer` (the association request
    /// itself is refused by the caller).
    fn honour_shutdown(&self, calling: &str, peer: SocketAddr) {
        self.counters
            .shutdown_requests
            .fetch_add(1, Ordering::Relaxed);
        warn!(
            "Shutdown requested by {calling}@{peer} (DCMTK's private shutdown SOP class): stopping"
        );
        self.shutdown.send_replace(true);
    }
}

/// The acceptance `ac` / `negotiated` with the shutdown context refused (abstract syntax not
/// supported), as it is when the shutdown request is not honoured.
fn refuse_shutdown_context(
    mut ac: dimsum_ul::pdu::AssociateAc,
    mut negotiated: dimsum_ul::negotiation::Negotiated,
) -> Decision {
    // Every context proposing it (a requestor may propose a class on several).
    while let Some(id) = negotiated
        .find_accepted(PRIVATE_SHUTDOWN_SOP_CLASS)
        .map(|context| context.id)
    {
        for context in negotiated.contexts.iter_mut().filter(|c| c.id == id) {
            context.result = PresentationContextResult::AbstractSyntaxNotSupported;
            context.transfer_syntax = None;
            context.scu_role = false;
            context.scp_role = false;
        }
        for answer in ac.presentation_contexts.iter_mut().filter(|a| a.id == id) {
            answer.result = PresentationContextResult::AbstractSyntaxNotSupported;
        }
    }
    Decision::Accept { ac, negotiated }
}

/// Why a connection did not become an association.
enum Refusal {
    /// An honoured shutdown request, refused as DCMTK's servers refuse it.
    Shutdown,
    /// Rejected, or failed; with the calling AE title if a request came.
    Failed {
        calling: Option<String>,
        error: Error,
    },
}

impl Refusal {
    fn failed(calling: Option<String>, error: Error) -> Self {
        Refusal::Failed { calling, error }
    }
}

/// One association of a peer address, given back when dropped.
struct PeerSlot<'a> {
    counts: &'a Mutex<HashMap<IpAddr, usize>>,
    address: IpAddr,
}

impl<'a> PeerSlot<'a> {
    /// Takes a unit for `address` if it has fewer than `max` (always, without a limit).
    fn claim(
        counts: &'a Mutex<HashMap<IpAddr, usize>>,
        address: IpAddr,
        max: Option<usize>,
    ) -> Option<PeerSlot<'a>> {
        let mut map = counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = map.entry(address).or_insert(0);
        if max.is_some_and(|max| *count >= max) {
            return None;
        }
        *count += 1;
        Some(PeerSlot { counts, address })
    }
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = map.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// The pending-connection cap when none is configured: what the open-file limit leaves after
/// the association slots, after raising the soft limit to the hard one.
fn pending_cap(max_associations: usize) -> usize {
    let limit = raise_open_file_limit();
    let reserved = (max_associations as u64)
        .saturating_mul(DESCRIPTORS_PER_ASSOCIATION)
        .saturating_add(DESCRIPTORS_SPARE);
    usize::try_from(limit.saturating_sub(reserved))
        .unwrap_or(MAX_PENDING)
        .clamp(MIN_PENDING, MAX_PENDING)
}

/// Raises the process's soft open-file limit (RLIMIT_NOFILE) to its hard limit and returns the
/// limit now in force (1024, a common default, when it cannot be read).
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            warn!(%error, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

fn log_refusal(
    counters: &Counters,
    peer: SocketAddr,
    calling: Option<String>,
    error: Option<Error>,
) {
    match error {
        Some(Error::Rejected(rj)) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            info!(
                "Association rejected from {}@{}: {}",
                calling.as_deref().unwrap_or("?"),
                peer,
                rj
            );
        }
        Some(error) => {
            counters.failed_requests.fetch_add(1, Ordering::Relaxed);
            info!("Association request from {peer} failed: {error}");
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use dimsum_dimse::message::{CFindRq, CGetRq, CMoveRq, CStoreRq, Priority};
    use dimsum_dimse::status::Status;
    use dimsum_ul::negotiation::{AssociationRequest, ProposedContext};
    use dimsum_ul::uids::VERIFICATION_SOP_CLASS;
    use tokio::task::JoinHandle;

    use crate::scp::EchoScp;
    use crate::{Limits, Timeouts, scu};

    const PATIENCE: Duration = Duration::from_secs(10);

    struct Running {
        address: SocketAddr,
        handle: ServerHandle,
        task: JoinHandle<ServerStatistics>,
    }

    fn config(allow_shutdown_request: bool) -> ServerConfig {
        let mut config = ServerConfig::new("ARCHIVE");
        config.allow_shutdown_request = allow_shutdown_request;
        config.timeouts.artim = Duration::from_secs(2);
        config.shutdown_grace = Duration::from_secs(2);
        config
    }

    async fn start(config: ServerConfig, dispatcher: Dispatcher) -> Running {
        let server = Server::bind("127.0.0.1:0", config, dispatcher)
            .await
            .expect("bind");
        let address = server.local_addr().expect("address");
        let handle = server.handle();
        Running {
            address,
            handle,
            task: tokio::spawn(server.run()),
        }
    }

    fn echo_dispatcher() -> Dispatcher {
        Dispatcher::new().with(EchoScp::new())
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Some(PATIENCE),
            acse: Some(PATIENCE),
            dimse: Some(PATIENCE),
            ..Timeouts::default()
        }
    }

    /// What DCMTK's termscu proposes: the shutdown class with three transfer syntaxes.
    fn shutdown_request(calling: &str) -> AssociationRequest {
        AssociationRequest::new(calling, "ARCHIVE").with_context(ProposedContext::new(
            PRIVATE_SHUTDOWN_SOP_CLASS,
            [
                IMPLICIT_VR_LITTLE_ENDIAN,
                EXPLICIT_VR_LITTLE_ENDIAN,
                EXPLICIT_VR_BIG_ENDIAN,
            ],
        ))
    }

    async fn connect(
        address: SocketAddr,
        request: &AssociationRequest,
    ) -> Result<Association, Error> {
        tokio::time::timeout(
            PATIENCE,
            Association::connect(&address.to_string(), request, timeouts(), Limits::default()),
        )
        .await
        .expect("an answer within PATIENCE")
    }

    /// One C-ECHO on a fresh association, released.
    async fn echo(address: SocketAddr) {
        let request = AssociationRequest::new("ECHOSCU", "ARCHIVE").with_context(
            ProposedContext::new(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]),
        );
        let association = connect(address, &request).await.expect("accepted");
        assert_eq!(
            scu::echo(&association).await.expect("echo"),
            Status::SUCCESS
        );
        association.release().await.expect("released");
    }

    async fn finished(task: JoinHandle<ServerStatistics>) -> ServerStatistics {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the server stops by itself")
            .expect("server task")
    }

    /// Whether the server task is still running after a short while.
    async fn still_running(task: &JoinHandle<ServerStatistics>) -> bool {
        tokio::time::sleep(Duration::from_millis(200)).await;
        !task.is_finished()
    }

    fn the_shutdown_context(association: &Association) -> PresentationContextResult {
        association
            .negotiated()
            .contexts
            .iter()
            .find(|context| context.abstract_syntax == PRIVATE_SHUTDOWN_SOP_CLASS)
            .expect("the shutdown context is answered")
            .result
    }

    #[tokio::test]
    async fn an_honoured_shutdown_request_is_refused_as_dcmtk_does_and_stops_the_server() {
        let server = start(config(true), echo_dispatcher()).await;
        echo(server.address).await;
        match connect(server.address, &shutdown_request("TERMSCU")).await {
            Err(Error::Rejected(rejection)) => assert_eq!(rejection, shutdown_rejection()),
            Err(other) => panic!("expected the DCMTK rejection, got {other}"),
            Ok(_) => panic!("the shutdown request was accepted instead of refused"),
        }
        let statistics = finished(server.task).await;
        assert_eq!(
            (
                statistics.accepted,
                statistics.released,
                statistics.rejected,
                statistics.shutdown_requests,
                statistics.messages,
            ),
            (1, 1, 0, 1, 1),
            "{statistics}"
        );
        assert!(
            statistics.bytes_received > 0 && statistics.bytes_sent > 0,
            "{statistics}"
        );
        assert!(
            Server::bind(server.address, config(true), echo_dispatcher())
                .await
                .is_ok(),
            "the listener is closed once the server has stopped"
        );
    }

    #[tokio::test]
    async fn a_shutdown_request_is_refused_like_any_unsupported_class_when_not_configured() {
        let server = start(config(false), echo_dispatcher()).await;
        let association = connect(server.address, &shutdown_request("TERMSCU"))
            .await
            .expect("the association is accepted, without the shutdown context");
        assert_eq!(
            the_shutdown_context(&association),
            PresentationContextResult::AbstractSyntaxNotSupported
        );
        association.release().await.expect("released");
        assert!(still_running(&server.task).await);
        echo(server.address).await;
        let statistics = server.handle.statistics();
        assert_eq!(
            (statistics.accepted, statistics.shutdown_requests),
            (2, 0),
            "{statistics}"
        );
        server.handle.shutdown();
        finished(server.task).await;
    }

    #[tokio::test]
    async fn promiscuous_mode_does_not_accept_the_shutdown_class_unless_configured() {
        for allowed in [false, true] {
            let dispatcher = echo_dispatcher()
                .with_fallback(EchoScp::new(), vec![IMPLICIT_VR_LITTLE_ENDIAN.to_owned()]);
            let server = start(config(allowed), dispatcher).await;
            let answer = connect(server.address, &shutdown_request("TERMSCU")).await;
            if allowed {
                assert!(matches!(answer, Err(Error::Rejected(rj)) if rj == shutdown_rejection()));
                finished(server.task).await;
            } else {
                let association = answer.expect("accepted");
                assert_eq!(
                    the_shutdown_context(&association),
                    PresentationContextResult::AbstractSyntaxNotSupported
                );
                association.release().await.expect("released");
                assert!(still_running(&server.task).await);
                server.handle.shutdown();
                finished(server.task).await;
            }
        }
    }

    #[tokio::test]
    async fn a_shutdown_request_from_a_calling_ae_title_not_allowed_is_rejected_for_that() {
        let mut config = config(true);
        config.allowed_calling_ae_titles = Some(vec!["OPERATOR".to_owned()]);
        let server = start(config, echo_dispatcher()).await;
        match connect(server.address, &shutdown_request("INTRUDER")).await {
            Err(Error::Rejected(rejection)) => assert_eq!(
                rejection.source,
                RejectSource::ServiceUser(ServiceUserReason::CallingAeTitleNotRecognized)
            ),
            Err(other) => panic!("expected a rejection, got {other}"),
            Ok(_) => panic!("accepted a calling AE title that is not allowed"),
        }
        assert!(still_running(&server.task).await);
        assert!(matches!(
            connect(server.address, &shutdown_request("OPERATOR")).await,
            Err(Error::Rejected(rj)) if rj == shutdown_rejection()
        ));
        let statistics = finished(server.task).await;
        assert_eq!(
            (statistics.rejected, statistics.shutdown_requests),
            (1, 1),
            "{statistics}"
        );
    }

    #[test]
    fn answered_requests_are_counted_by_service() {
        let counters = Counters::new();
        let store = Message::CStoreRq(CStoreRq {
            message_id: 1,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            affected_sop_instance_uid: "1.2.3".into(),
            priority: Priority::Medium,
            move_originator_ae_title: None,
            move_originator_message_id: None,
            data_set_present: true,
        });
        let find = Message::CFindRq(CFindRq {
            message_id: 2,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.1".into(),
            priority: Priority::Medium,
            data_set_present: true,
        });
        let get = Message::CGetRq(CGetRq {
            message_id: 3,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.3".into(),
            priority: Priority::Medium,
            data_set_present: true,
        });
        let move_ = Message::CMoveRq(CMoveRq {
            message_id: 4,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.2".into(),
            priority: Priority::Medium,
            move_destination: "STORESCP".into(),
            data_set_present: true,
        });
        let respond = |request: &Message, status: Status| {
            counters.answered(
                request,
                &request.response_with_status(status).expect("response"),
            )
        };
        respond(&store, Status::SUCCESS);
        respond(&store, Status::COERCION_OF_DATA_ELEMENTS);
        respond(&store, Status::OUT_OF_RESOURCES);
        respond(&find, Status::SUCCESS);
        let mut get_rsp = get.response_with_status(Status::SUCCESS).expect("response");
        if let Message::CGetRsp(rsp) = &mut get_rsp {
            rsp.number_of_completed_suboperations = Some(5);
            rsp.number_of_warning_suboperations = Some(1);
            rsp.number_of_failed_suboperations = Some(2);
        }
        counters.answered(&get, &get_rsp);
        let mut move_rsp = move_
            .response_with_status(Status::SUCCESS)
            .expect("response");
        if let Message::CMoveRsp(rsp) = &mut move_rsp {
            rsp.number_of_completed_suboperations = Some(3);
        }
        counters.answered(&move_, &move_rsp);
        let statistics = counters.snapshot();
        assert_eq!(
            (
                statistics.messages,
                statistics.queries,
                statistics.retrieves,
                statistics.instances_received,
                statistics.instances_sent,
            ),
            (6, 1, 2, 2, 9)
        );
    }

    #[test]
    fn statistics_read_well_on_one_line_and_as_a_report() {
        let statistics = ServerStatistics {
            accepted: 12,
            rejected: 2,
            released: 11,
            failed: 1,
            failed_requests: 3,
            active: 0,
            shutdown_requests: 1,
            messages: 150,
            queries: 20,
            retrieves: 3,
            instances_received: 100,
            instances_sent: 40,
            bytes_received: 52_400_000,
            bytes_sent: 999,
            uptime: Duration::from_secs(3723),
        };
        assert_eq!(
            statistics.to_string(),
            "up 1 h 02 min 03 s; associations: 12 accepted (11 released, 1 aborted or failed, \
             0 active), 2 rejected, 3 failed requests, 1 shutdown request; messages: 150 \
             (20 queries, 3 retrieves); instances: 100 received, 40 sent; bytes: 52.4 MB \
             received, 999 bytes sent"
        );
        assert_eq!(
            format!("{statistics:#}"),
            "Uptime:       1 h 02 min 03 s\n\
             Associations: 12 accepted (11 released, 1 aborted or failed, 0 active), 2 rejected, \
             3 failed requests, 1 shutdown request\n\
             Messages:     150 (20 queries, 3 retrieves)\n\
             Instances:    100 received, 40 sent\n\
             Bytes:        52.4 MB received, 999 bytes sent"
        );
        assert_eq!(
            HumanDuration(Duration::from_millis(12_340)).to_string(),
            "12.3 s"
        );
        assert_eq!(
            HumanDuration(Duration::from_secs(300)).to_string(),
            "5 min 00 s"
        );
        assert_eq!(
            HumanDuration(Duration::from_secs(2 * 86_400 + 3 * 3600 + 60)).to_string(),
            "2 d 03 h 01 min"
        );
        assert_eq!(HumanBytes(1_500_000_000).to_string(), "1.5 GB");
    }
}
