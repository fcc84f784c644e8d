//! `dimsum storescu` (and `dcmsend`): Storage SCU (PS3.4 Annex B), like DCMTK's storescu; with
//! `--commit`, Storage Commitment (PS3.4 Annex J) for what was stored.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use dimsum_net::scp::SopReference;
use dimsum_net::scu::store::{self, StoreFile, StoreFileError, TransferSyntaxProposal};
use dimsum_net::scu::{self, CommitError, CommitmentReceiver, CommitmentReport};
use dimsum_net::tls::ClientTls;
use dimsum_net::ul::negotiation::{AssociationRequest, MAX_PRESENTATION_CONTEXTS};
use dimsum_net::ul::pdu::AsyncOpsWindow;
use dimsum_net::ul::uids::{
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
};
use dimsum_net::{Association, Error, Limits, ServerConfig};

use crate::exit::{self, Code};
use crate::logging::{self, Verbosity};
use crate::options::{AssociationOptions, NetworkOptions};

/// Options of `dimsum storescu` and `dimsum dcmsend`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Host name or IP address of the peer.
    pub host: String,
    /// TCP port of the peer.
    pub port: u16,
    /// DICOM files, or folders to scan recursively.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub association: AssociationOptions,
    #[command(flatten)]
    pub network: NetworkOptions,
    /// Propose only Implicit VR Little Endian (files are converted as needed).
    #[arg(long, group = "proposal")]
    pub propose_implicit: bool,
    /// Propose only Explicit VR Little Endian.
    #[arg(long, group = "proposal")]
    pub propose_explicit: bool,
    /// Propose only Explicit VR Big Endian.
    #[arg(long, group = "proposal")]
    pub propose_big_endian: bool,
    /// Propose only Deflated Explicit VR Little Endian.
    #[arg(long, group = "proposal")]
    pub propose_deflated: bool,
    /// Move Originator AE Title to put in each C-STORE-RQ.
    #[arg(long, value_name = "AE")]
    pub move_originator_aet: Option<String>,
    /// Move Originator Message ID to put in each C-STORE-RQ (with --move-originator-aet).
    #[arg(long, value_name = "ID", requires = "move_originator_aet")]
    pub move_originator_id: Option<u16>,
    /// Associations used at once for the batch.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub parallel: u32,
    /// C-STORE requests outstanding at once on an association: the asynchronous operations
    /// window proposed (PS3.7 D.3.3.3); a peer that does not grant one gets one at a time.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub window: u16,
    /// Once the batch is sent, request storage commitment (PS3.4 Annex J) for the instances
    /// stored, on an association of its own, and wait for the report: exit 1 if any instance
    /// is not committed.
    #[arg(long)]
    pub commit: bool,
    /// With --commit: also listen on this port for the report on a new association (the peer
    /// must know our AE title and this port).
    #[arg(long, value_name = "PORT", requires = "commit")]
    pub commit_port: Option<u16>,
    /// Address to listen on with --commit-port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0",
        requires = "commit_port"
    )]
    pub commit_bind: String,
    /// With --commit: how many seconds to wait for the report.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_timeout: u64,
    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl Options {
    fn proposal(&self) -> TransferSyntaxProposal {
        let only = |ts: &str| TransferSyntaxProposal::Only(ts.to_string());
        if self.propose_implicit {
            only(IMPLICIT_VR_LITTLE_ENDIAN)
        } else if self.propose_explicit {
            only(EXPLICIT_VR_LITTLE_ENDIAN)
        } else if self.propose_big_endian {
            only(EXPLICIT_VR_BIG_ENDIAN)
        } else if self.propose_deflated {
            only(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        } else {
            TransferSyntaxProposal::AsFiles
        }
    }
}

/// Counts of a batch, shared by the associations that send it.
#[derive(Debug, Default)]
struct Tally {
    stored: usize,
    warnings: usize,
    failed: usize,
    bytes: u64,
    /// Whether to keep `stored_instances` (for --commit).
    keep_stored: bool,
    /// The instances stored (with success or a warning), for storage commitment.
    stored_instances: Vec<SopReference>,
    /// The most serious association-level failure, for the exit status.
    association_error: Option<Code>,
}

pub async fn run(options: Options, default_ae_title: &str) -> Code {
    logging::init(options.verbosity);
    let started = Instant::now();
    let (files, skipped) = match files_to_send(options.paths.clone()).await {
        Ok(listed) => listed,
        Err(code) => return code,
    };
    let contexts = store::propose_contexts(&files, &options.proposal());
    if contexts.len() > MAX_PRESENTATION_CONTEXTS {
        error!(
            "the files need {} presentation contexts (SOP class and transfer syntax combinations), more than the {} an association can carry: send them in smaller batches",
            contexts.len(),
            MAX_PRESENTATION_CONTEXTS
        );
        return Code::Usage;
    }
    let mut request = AssociationRequest::new(
        options.association.calling(default_ae_title),
        &options.association.call,
    )
    .with_contexts(contexts);
    request.max_pdu_length = options.network.max_pdu;
    if options.window > 1 {
        request.async_ops_window = Some(AsyncOpsWindow {
            max_operations_invoked: options.window,
            max_operations_performed: 1,
        });
    }
    let tls = match options.network.tls() {
        Ok(tls) => tls,
        Err(error) => {
            error!("{error}");
            return Code::Usage;
        }
    };
    if let Err(e) = request.to_pdu() {
        error!("{e}");
        return Code::Usage;
    }
    let total_files = files.len();
    let total_bytes: u64 = files.iter().map(|f| f.data_length).sum();
    let tally = Arc::new(Mutex::new(Tally {
        keep_stored: options.commit,
        ..Tally::default()
    }));
    let progress = Progress::new(
        !options.no_progress
            && !options.verbosity.verbose
            && !options.verbosity.quiet
            && std::io::stderr().is_terminal(),
        total_files,
        total_bytes,
    );
    let address = format!("{}:{}", options.host, options.port);
    let move_originator = options
        .move_originator_aet
        .clone()
        .map(|ae| (ae, options.move_originator_id.unwrap_or(0)));
    let workers = (options.parallel as usize).min(total_files);
    let mut batches: Vec<Vec<StoreFile>> = (0..workers).map(|_| Vec::new()).collect();
    for (index, file) in files.into_iter().enumerate() {
        batches[index % workers].push(file);
    }
    let mut tasks = Vec::new();
    for batch in batches {
        let (request, address, tally, progress, move_originator, tls) = (
            request.clone(),
            address.clone(),
            Arc::clone(&tally),
            progress.clone(),
            move_originator.clone(),
            tls.clone(),
        );
        let timeouts = options.network.timeouts();
        tasks.push(tokio::spawn(async move {
            let peer = Peer {
                address: &address,
                request: &request,
                timeouts,
                tls: tls.as_ref(),
            };
            send_batch(peer, batch, move_originator, &tally, &progress).await
        }));
    }
    for task in tasks {
        if let Err(e) = task.await {
            error!("a sending task failed: {e}");
        }
    }
    progress.finish();
    // The counts are final: taken out, so that no lock is held while commitment is awaited.
    let tally = std::mem::take(&mut *match tally.lock() {
        Ok(tally) => tally,
        Err(poisoned) => poisoned.into_inner(),
    });
    if !options.verbosity.quiet {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "Summary: {} instances: {} stored, {} with warnings, {} failed, {} skipped; {} in {:.2} s ({}/s)",
            total_files + skipped,
            tally.stored,
            tally.warnings,
            tally.failed,
            skipped,
            megabytes(tally.bytes),
            seconds,
            megabytes((tally.bytes as f64 / seconds.max(1e-9)) as u64)
        );
    }
    let commitment = if options.commit {
        let peer = Peer {
            address: &address,
            request: &request,
            timeouts: options.network.timeouts(),
            tls: tls.as_ref(),
        };
        request_commitment(&options, peer, &tally.stored_instances).await
    } else {
        Code::Success
    };
    match tally.association_error {
        Some(code) => code,
        None if tally.failed > 0 => Code::DimseFailure,
        None => commitment,
    }
}

/// Requests storage commitment for `stored` on a new association to the peer of `peer` (with
/// the Storage Commitment context only) and reports the outcome: every instance committed, or
/// each one that was not and why.
async fn request_commitment(options: &Options, peer: Peer<'_>, stored: &[SopReference]) -> Code {
    if stored.is_empty() {
        warn!("no instance was stored: no storage commitment requested");
        return Code::Success;
    }
    let calling = peer.request.calling_ae_title.clone();
    let receiver = match options.commit_port {
        Some(port) => match bind_commitment_receiver(options, &calling, port).await {
            Ok(receiver) => Some(receiver),
            Err(code) => return code,
        },
        None => None,
    };
    let mut request = AssociationRequest::new(&calling, &peer.request.called_ae_title)
        .with_context(scu::commitment_context());
    request.max_pdu_length = peer.request.max_pdu_length;
    request.user_identity = peer.request.user_identity.clone();
    info!(
        "Requesting association with {}@{} for storage commitment",
        request.called_ae_title, peer.address
    );
    let association = match Association::connect_with(
        peer.address,
        &request,
        peer.timeouts,
        Limits::default(),
        peer.tls,
    )
    .await
    {
        Ok(association) => association,
        Err(error) => return exit::report(&error, peer.address),
    };
    let wait = Duration::from_secs(options.commit_timeout);
    let outcome = match receiver {
        Some(receiver) => scu::commit_via(&association, receiver, stored, wait)
            .await
            .map(|(report, _)| report),
        None => scu::commit(&association, stored, wait).await,
    };
    if association.is_established() {
        match association.release().await {
            Ok(()) | Err(Error::ConnectionClosed) => {}
            Err(error) => {
                exit::report(&error, peer.address);
            }
        }
    }
    match outcome {
        Ok(report) => summarize_commitment(&report, options.verbosity.quiet),
        Err(error) => {
            error!("storage commitment: {error}");
            match &error {
                CommitError::Network(error) => exit::for_error(error),
                CommitError::NoReport { .. } => Code::Connection,
                CommitError::Ended { source, .. } => exit::for_error(source),
                CommitError::Refused { .. } | CommitError::Empty | CommitError::Encode(_) => {
                    Code::DimseFailure
                }
            }
        }
    }
}

/// The temporary SCP for `--commit-port`, answering as our calling AE title.
async fn bind_commitment_receiver(
    options: &Options,
    ae_title: &str,
    port: u16,
) -> Result<CommitmentReceiver, Code> {
    let mut config = ServerConfig::new(ae_title);
    config.max_pdu_length = options.network.max_pdu;
    config.timeouts = options.network.timeouts();
    config.tls = options.network.tls.server_tls().map_err(|error| {
        error!("{error}");
        Code::Usage
    })?;
    let address = format!("{}:{port}", options.commit_bind);
    CommitmentReceiver::bind(address.as_str(), config)
        .await
        .map_err(|error| {
            error!("cannot listen on {address}: {error}");
            Code::Internal
        })
}

/// Prints the outcome of storage commitment and returns the exit status: 0 when every instance
/// was committed, 1 otherwise.
fn summarize_commitment(report: &CommitmentReport, quiet: bool) -> Code {
    let result = &report.result;
    let not_committed = result.failed.len() + report.unreported.len();
    for failed in &result.failed {
        error!(
            "not committed: {} ({}): {}",
            failed.reference.sop_instance_uid, failed.reference.sop_class_uid, failed.reason
        );
    }
    for reference in &report.unreported {
        error!(
            "not committed: {} ({}): not named in the report",
            reference.sop_instance_uid, reference.sop_class_uid
        );
    }
    if !quiet {
        eprintln!(
            "Storage commitment: {} committed, {} not committed (transaction {}, event type {}, reported on {} association)",
            result.committed.len(),
            not_committed,
            result.transaction_uid,
            report.event_type_id,
            if report.on_new_association {
                "a new"
            } else {
                "the same"
            }
        );
    }
    if not_committed == 0 {
        Code::Success
    } else {
        Code::DimseFailure
    }
}

/// The DICOM files under `paths` with their file meta, and how many other files were skipped
/// (each reported once); none at all, or a folder that cannot be listed, is an error with its
/// exit code. Shared by storescu and stow.
pub(crate) async fn files_to_send(paths: Vec<PathBuf>) -> Result<(Vec<StoreFile>, usize), Code> {
    let listed = tokio::task::spawn_blocking(move || open_files(&paths)).await;
    let (files, skipped) = match listed {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => {
            error!("cannot list the files to send: {e}");
            return Err(Code::Usage);
        }
        Err(e) => {
            error!("cannot list the files to send: {e}");
            return Err(Code::Internal);
        }
    };
    if files.is_empty() {
        error!("no DICOM files to send");
        return Err(Code::DimseFailure);
    }
    Ok((files, skipped))
}

/// Lists the files under `paths` and reads their file meta (blocking); the files that are not
/// DICOM are counted and reported once each.
fn open_files(paths: &[PathBuf]) -> std::io::Result<(Vec<StoreFile>, usize)> {
    let mut files = Vec::new();
    let mut skipped = 0;
    for path in store::collect_files(paths)? {
        match StoreFile::open(&path) {
            Ok(file) => files.push(file),
            Err(e) => {
                skipped += 1;
                warn!("skipping {e}");
            }
        }
    }
    Ok((files, skipped))
}

/// Where and how a batch is sent.
struct Peer<'a> {
    address: &'a str,
    request: &'a AssociationRequest,
    timeouts: dimsum_net::Timeouts,
    tls: Option<&'a ClientTls>,
}

/// Sends `files` over one association, carrying on past failures of single files.
async fn send_batch(
    peer: Peer<'_>,
    files: Vec<StoreFile>,
    move_originator: Option<(String, u16)>,
    tally: &Mutex<Tally>,
    progress: &Progress,
) {
    let record = |update: &dyn Fn(&mut Tally)| match tally.lock() {
        Ok(mut tally) => update(&mut tally),
        Err(poisoned) => update(&mut poisoned.into_inner()),
    };
    let address = peer.address;
    info!(
        "Requesting association with {}@{} as {}",
        peer.request.called_ae_title, address, peer.request.calling_ae_title
    );
    let association = match Association::connect_with(
        address,
        peer.request,
        peer.timeouts,
        Limits::default(),
        peer.tls,
    )
    .await
    {
        Ok(association) => association,
        Err(error) => {
            let code = exit::report(&error, address);
            record(&|t| {
                t.failed += files.len();
                t.association_error = Some(code);
            });
            return;
        }
    };
    info!(
        "Association accepted: {}",
        association.info().peer_summary()
    );
    store::store_files(&association, &files, move_originator, |file, outcome| {
        let uid = &file.meta.media_storage_sop_instance_uid;
        let path = file.path.display();
        match outcome {
            Ok(outcome) => {
                let status = outcome.response.status;
                let comment = outcome
                    .response
                    .error_comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                let stored = || {
                    SopReference::new(file.meta.media_storage_sop_class_uid.clone(), uid.clone())
                };
                if status.is_success() {
                    info!("Stored {path} ({uid}): {status}");
                    record(&|t| {
                        t.stored += 1;
                        t.bytes += file.data_length;
                        if t.keep_stored {
                            t.stored_instances.push(stored());
                        }
                    });
                } else if status.is_warning() {
                    warn!("{path} ({uid}): {status}{comment}");
                    record(&|t| {
                        t.warnings += 1;
                        t.bytes += file.data_length;
                        if t.keep_stored {
                            t.stored_instances.push(stored());
                        }
                    });
                } else {
                    error!("{path} ({uid}): {status}{comment}");
                    record(&|t| t.failed += 1);
                }
            }
            Err(StoreFileError::NotSent) => record(&|t| t.failed += 1),
            Err(e) if e.ends_association() => {
                error!("{path} ({uid}): {e}");
                let code = match &e {
                    StoreFileError::Network(error) => exit::for_error(error),
                    _ => Code::Aborted,
                };
                record(&|t| {
                    t.failed += 1;
                    t.association_error = Some(code);
                });
            }
            Err(e) => {
                error!("{path}: {e}");
                record(&|t| t.failed += 1);
            }
        }
        progress.advance(file.data_length);
    })
    .await;
    if !association.is_established() {
        return;
    }
    match association.release().await {
        Ok(()) => info!("Association released"),
        Err(Error::ConnectionClosed) => {}
        Err(error) => {
            exit::report(&error, address);
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// A one-line progress display on stderr: files, bytes and rate, redrawn at most 10 times a
/// second, only on a terminal.
#[derive(Clone)]
struct Progress {
    state: Option<Arc<Mutex<ProgressState>>>,
}

struct ProgressState {
    started: Instant,
    last_drawn: Instant,
    files_done: usize,
    bytes_done: u64,
    total_files: usize,
    total_bytes: u64,
}

impl Progress {
    fn new(enabled: bool, total_files: usize, total_bytes: u64) -> Self {
        let now = Instant::now();
        let state = ProgressState {
            started: now,
            last_drawn: now,
            files_done: 0,
            bytes_done: 0,
            total_files,
            total_bytes,
        };
        Progress {
            state: enabled.then(|| Arc::new(Mutex::new(state))),
        }
    }

    fn advance(&self, bytes: u64) {
        let Some(state) = &self.state else { return };
        let Ok(mut state) = state.lock() else { return };
        state.files_done += 1;
        state.bytes_done += bytes;
        if state.last_drawn.elapsed() >= Duration::from_millis(100)
            || state.files_done == state.total_files
        {
            state.last_drawn = Instant::now();
            let rate = state.bytes_done as f64 / state.started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\r{}/{} files, {} of {} ({}/s)   ",
                state.files_done,
                state.total_files,
                megabytes(state.bytes_done),
                megabytes(state.total_bytes),
                megabytes(rate as u64)
            );
        }
    }

    fn finish(&self) {
        if self.state.is_some() {
            eprintln!();
        }
    }
}
