//! A DICOM server: accepts associations on a TCP listener and serves each with a dispatcher.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use dimsum_ul::negotiation::{AcceptorPolicy, Decision, reject_local_limit_exceeded};

use crate::scp::{Dispatcher, Outcome};
use crate::{Association, Error, Limits, Timeouts};

/// How a [`Server`] accepts and serves associations.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our AE title.
    pub ae_title: String,
    /// Associations served at once; one more is rejected with A-ASSOCIATE-RJ (transient,
    /// service-provider presentation, local limit exceeded — PS3.8 Table 9-21).
    pub max_associations: usize,
    /// Connections whose association request is still awaited or being answered. They do not
    /// take association slots (a peer that connects and says nothing cannot keep others out of
    /// an association for ARTIM), but they are bounded too: beyond this, new connections are
    /// closed at once.
    pub max_pending_associations: usize,
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
            max_associations: 64,
            max_pending_associations: 256,
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
    dispatcher: Arc<Dispatcher>,
    handle: ServerHandle,
}

impl Server {
    /// Binds the listener. Use port 0 for a free port and [`Server::local_addr`] to learn it.
    pub async fn bind(
        address: impl ToSocketAddrs,
        config: ServerConfig,
        dispatcher: Dispatcher,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(address).await?;
        let mut policy = dispatcher.policy(&config.ae_title);
        policy.max_pdu_length = config.max_pdu_length;
        policy.require_called_ae_title = config.require_called_ae_title;
        policy.allowed_calling_ae_titles = config.allowed_calling_ae_titles.clone();
        let (shutdown, _) = watch::channel(false);
        Ok(Server {
            listener,
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
        if !try_claim(&counters.pending, self.config.max_pending_associations) {
            counters.failed_requests.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "too many association requests in progress: connection closed");
            return;
        }
        let config = Arc::clone(&self.config);
        let policy = Arc::clone(&self.policy);
        let dispatcher = Arc::clone(&self.dispatcher);
        tasks.spawn(
            async move {
                // The unit claimed above, given back however the connection ends.
                let pending = Slot(&counters.pending);
                serve_connection(
                    stream,
                    peer,
                    pending,
                    &config,
                    &policy,
                    &dispatcher,
                    &counters,
                )
                .await;
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

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    pending: Slot<'_>,
    config: &ServerConfig,
    policy: &AcceptorPolicy,
    dispatcher: &Dispatcher,
    counters: &Counters,
) {
    let mut calling = None;
    let mut slot = None;
    let accepted = Association::accept_with(stream, config.timeouts, config.limits, |rq| {
        calling = Some(rq.calling_ae_title.clone());
        // An association slot is taken only now, when a request has come.
        let Some(claimed) = Slot::claim(&counters.active, config.max_associations) else {
            return Decision::Reject(reject_local_limit_exceeded());
        };
        let decision = policy.evaluate(rq);
        if matches!(decision, Decision::Accept { .. }) {
            slot = Some(claimed);
        }
        decision
    })
    .await;
    drop(pending);
    let mut association = match accepted {
        Ok(association) => association,
        Err(error) => return log_refusal(counters, peer, calling, Some(error)),
    };
    let _slot = slot;
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
    match dispatcher.serve(&mut association).await {
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
