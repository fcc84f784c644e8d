//! `dimsum serve`: the archive (issue 8): C-STORE into a data directory indexed in SQLite,
//! C-FIND at every level, C-GET and C-MOVE to the configured peers, Storage Commitment, and
//! C-ECHO — with no configuration at all (AE title DIMSUM, port 11112, data under
//! ./dimsum-data), or a TOML file and flags over it.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{error, info};

use dimsum_net::scp::{Dispatcher, StorageCommitmentScp};
use dimsum_pacs::archive::{Archive, ArchiveConfig, ScanProgress};
use dimsum_pacs::commitment::ArchiveCommitment;
use dimsum_pacs::matching::MatchOptions;

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::qr_services;
use crate::serve::{run_server, shutdown_signal};
use crate::serve_config::{ServeConfig, ServeOptions};

/// Options of `dimsum serve`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub serve: ServeOptions,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let config = match ServeConfig::resolve(&options.serve) {
        Ok(config) => config,
        Err(error) => {
            error!("{error}");
            return Code::Usage;
        }
    };
    let server_config = match config.server_config() {
        Ok(server_config) => server_config,
        Err(error) => {
            error!("{error}");
            return Code::Usage;
        }
    };
    let archive = match open_archive(&config).await {
        Ok(archive) => archive,
        Err(code) => return code,
    };
    for folder in &options.serve.scan {
        if let Err(code) = scan(&archive, folder, options.verbosity.quiet).await {
            close(&archive).await;
            return code;
        }
    }
    if options.serve.scan_only {
        report_counts(&archive).await;
        close(&archive).await;
        return Code::Success;
    }
    let web = match start_web(&archive, &config).await {
        Ok(web) => web,
        Err(code) => {
            close(&archive).await;
            return code;
        }
    };
    let grace = server_config.shutdown_grace;
    let dispatcher = dispatcher(&archive, &config);
    let address = config.listen_address();
    let code = run_server(
        &address,
        server_config,
        dispatcher,
        |listening: SocketAddr| {
            eprintln!("{}", config.how_to_reach(listening));
            if let Some(web) = &web {
                eprintln!("{}", config.how_to_reach_web(web.listening));
            }
        },
    )
    .await;
    if let Some(web) = web {
        web.stop(grace).await;
    }
    report_counts(&archive).await;
    close(&archive).await;
    code
}

/// DICOMweb served beside the DICOM port, until [`WebServer::stop`] or SIGINT/SIGTERM.
struct WebServer {
    listening: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl WebServer {
    /// Stops accepting requests and gives those in progress `grace` to finish.
    async fn stop(self, grace: Duration) {
        let _ = self.stop.send(());
        match tokio::time::timeout(grace, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => error!("DICOMweb server failed: {error}"),
            Ok(Err(error)) => error!("DICOMweb server task failed: {error}"),
            Err(_) => info!("DICOMweb requests still running after {grace:?} were cut"),
        }
    }
}

/// Binds and starts DICOMweb over `archive`, when the configuration serves it.
async fn start_web(archive: &Archive, config: &ServeConfig) -> Result<Option<WebServer>, Code> {
    let web_config = match config.dicomweb() {
        Ok(Some(web_config)) => web_config,
        Ok(None) => return Ok(None),
        Err(error) => {
            error!("{error}");
            return Err(Code::Usage);
        }
    };
    let address = config.web_listen_address();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|error| {
            error!("cannot listen on {address} for DICOMweb: {error}");
            Code::Internal
        })?;
    let listening = listener.local_addr().map_err(|error| {
        error!("cannot read the DICOMweb address: {error}");
        Code::Internal
    })?;
    let app = dimsum_web::server::router(archive.clone(), web_config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stopped => {}
        }
    };
    let task = tokio::spawn(dimsum_web::server::serve(listener, app, shutdown));
    Ok(Some(WebServer {
        listening,
        stop,
        task,
    }))
}

/// Written into a data folder by `dimsum migrate` once its index is copied to PostgreSQL: from
/// then on the nodes store into the folder through that database, and the SQLite index left
/// beside it lacks what they store. Until it is removed, nothing opens the folder on its
/// SQLite index again.
pub(crate) const MIGRATED_MARKER: &str = "index.sqlite.migrated";

/// Marks `data` as migrated to `target` (a URL without its password, on the marker's first
/// line, which [`refuse_migrated_folder`] names).
pub(crate) fn mark_migrated(data: &std::path::Path, target: &str) -> std::io::Result<()> {
    let marker = data.join(MIGRATED_MARKER);
    let note = format!(
        "{target}\nThe index of this folder was copied to the database above by `dimsum \
         migrate`. While this file exists, nothing opens the folder without --index: its SQLite \
         index lacks what the nodes store. Remove this file to serve from it anyway.\n"
    );
    std::fs::write(marker, note)
}

/// Refuses a data folder whose index was migrated ([`MIGRATED_MARKER`]) when no `--index` is
/// given: serving, deleting or migrating from the old SQLite index would drift from the
/// database the nodes write.
fn refuse_migrated_folder(config: &ServeConfig) -> Result<(), Code> {
    if config.index.is_some() {
        return Ok(());
    }
    let marker = config.data.join(MIGRATED_MARKER);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let target = text.lines().next().unwrap_or("").trim();
    error!(
        "the index of {} was migrated to {target}: give --index with that database; {} keeps \
         the folder from being opened on its old SQLite index, which lacks what was stored \
         since (remove it to serve from that index anyway)",
        config.data.display(),
        marker.display()
    );
    Err(Code::Usage)
}

pub(crate) async fn open_archive(config: &ServeConfig) -> Result<Archive, Code> {
    refuse_migrated_folder(config)?;
    let limit = (config.result_limit > 0).then_some(config.result_limit as usize);
    let mut archive_config = ArchiveConfig::new(&config.data)
        .with_duplicates(config.duplicates)
        .with_result_limit(limit)
        .with_matching(MatchOptions {
            case_insensitive_person_names: !config.case_sensitive_names,
            ..MatchOptions::default()
        });
    for (ae_title, address) in &config.peers {
        archive_config =
            archive_config.with_destination(ae_title, format!("{}:{}", address.host, address.port));
    }
    archive_config = archive_config
        .with_node(config.node_name())
        .with_fsync(config.fsync);
    if let Some(url) = &config.index {
        archive_config = archive_config.with_postgres(url);
    }
    Archive::open(archive_config).await.map_err(|error| {
        match config.index_for_display() {
            Some(index) => error!(
                "cannot open the archive in {} with the index {index}: {error}",
                config.data.display()
            ),
            None => error!(
                "cannot open the archive in {}: {error}",
                config.data.display()
            ),
        }
        Code::Internal
    })
}

/// Indexes an existing folder, with a progress line on a terminal.
async fn scan(archive: &Archive, folder: &std::path::Path, quiet: bool) -> Result<(), Code> {
    let started = Instant::now();
    let draw = !quiet && std::io::stderr().is_terminal();
    let last = std::sync::Mutex::new(Instant::now() - Duration::from_secs(1));
    let progress = |progress: &ScanProgress| {
        if !draw {
            return;
        }
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() >= Duration::from_millis(100) || progress.done == progress.total {
            *last = Instant::now();
            eprint!(
                "\rindexing {}: {}/{} files   ",
                folder.display(),
                progress.done,
                progress.total
            );
        }
    };
    match archive.scan(folder, progress).await {
        Ok(report) => {
            if draw {
                eprintln!();
            }
            info!(
                "Indexed {}: {} files, {} new instances, {} already indexed, {} skipped, in {:.1} s",
                folder.display(),
                report.files,
                report.indexed,
                report.already_indexed,
                report.skipped,
                started.elapsed().as_secs_f64()
            );
            if !quiet {
                eprintln!(
                    "{}: {} new instances, {} already indexed, {} skipped",
                    folder.display(),
                    report.indexed,
                    report.already_indexed,
                    report.skipped
                );
            }
            Ok(())
        }
        Err(error) => {
            error!("cannot index {}: {error}", folder.display());
            Err(Code::Internal)
        }
    }
}

/// Every service of the archive on one dispatcher: those of `qrscp` over the archive, and
/// Storage Commitment answered from its index.
fn dispatcher(archive: &Archive, config: &ServeConfig) -> Dispatcher {
    let mut commitment = StorageCommitmentScp::new(ArchiveCommitment::new(archive.clone()));
    for (ae_title, address) in &config.peers {
        commitment = commitment.with_peer(ae_title, format!("{}:{}", address.host, address.port));
    }
    qr_services::archive_dispatcher_with(
        archive.clone(),
        archive.clone(),
        config.move_retry(),
        config.find_options(),
    )
    .with(commitment)
}

async fn report_counts(archive: &Archive) {
    match archive.counts().await {
        Ok(counts) => info!("Archive: {counts:?}"),
        Err(error) => error!("cannot count the archive: {error}"),
    }
}

pub(crate) async fn close(archive: &Archive) {
    if let Err(error) = archive.close().await {
        error!("closing the archive: {error}");
    }
}
