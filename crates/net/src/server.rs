//! A DICOM server: accepts associations on a TCP listener (optionally TLS) and serves each with
//! a dispatcher.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, info, info_span, warn};

use dimsum_ul::negotiation::{AcceptorPolicy, Decision, reject_local_limit_exceeded};
use dimsum_ul::pdu::AsyncOpsWindow;

use crate::scp::{Dispatcher, Outcome};
use crate::tls::ServerTls;
use crate::{Association, Error, Limits, Timeouts};

/// Associations served at once by default: an association costs a task and a few buffers, so a
/// busy hospital's peers (hundreds of modalities and workstations at once) all fit.
pub const DEFAULT_MAX_ASSOCIATIONS: usize = 512;
/// Operations a peer may have outstanding on one association by default (the asynchronous
/// operations window we grant, PS3.7 §D.3.3.3), when it asks for a window.
pub const DEFAULT_OPERATIONS_PERFORMED: u16 = 16;
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
        }
    }
}

/// Counters a server keeps while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStatistics {
    /// Associations accepted.
    pub accepted: u64,
    /// Association requests rejected (policy or limit).
    pub rejected: u64,
    /// Accepted associations that ended with a release.
    pub released: u64,
    /// Accepted associations that ended otherwise (abort, timeout, protocol error).
    pub failed: u64,
    /// Connections that ended before an association was established (no or invalid request).
    pub failed_requests: u64,
    /// Associations being served now.
    pub active: u64,
}

impl std::fmt::Display for ServerStatistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} associations accepted ({} released, {} aborted or failed), {} rejected, {} failed requests, {} active",
            self.accepted,
            self.released,
            self.failed,
            self.rejected,
            self.failed_requests,
            self.active
        )
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    released: AtomicU64,
    failed: AtomicU64,
    failed_requests: AtomicU64,
    active: AtomicUsize,
    /// Connections whose association is not established yet.
    pending: AtomicUsize,
    /// Associations per peer address.
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

impl Counters {
    fn snapshot(&self) -> ServerStatistics {
        ServerStatistics {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed) as u64,
        }
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
                counters: Arc::default(),
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
        tasks.spawn(
            async move {
                // The unit claimed above, given back however the connection ends.
                let pending = Slot(&counters.pending);
                let connection = Connection {
                    config: &config,
                    policy: &policy,
                    dispatcher: &dispatcher,
                    counters: &counters,
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
    counters: &'a Counters,
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
        let accepted = match tls {
            None => self.accept(stream, peer, false).await,
            Some(acceptor) => {
                match crate::tls::accept(stream, &acceptor, config.timeouts.artim).await {
                    Ok(stream) => self.accept(stream, peer, true).await,
                    Err(error) => Err((None, Error::Tls(error))),
                }
            }
        };
        drop(pending);
        let (association, _slot, _peer_slot) = match accepted {
            Ok(accepted) => accepted,
            Err((calling, error)) => return log_refusal(counters, peer, calling, Some(error)),
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
        match self.dispatcher.serve(&association).await {
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
    ) -> Result<(Association, Option<Slot<'_>>, Option<PeerSlot<'_>>), (Option<String>, Error)>
    {
        let (counters, config) = (self.counters, self.config);
        let mut calling = None;
        let mut slots = None;
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
                let decision = self.policy.evaluate(rq);
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
            Err(error) => Err((calling, error)),
        }
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
