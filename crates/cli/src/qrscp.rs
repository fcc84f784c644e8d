//! `dimsum qrscp`: a Query/Retrieve SCP over a folder, like DCMTK's dcmqrscp and pynetdicom's
//! qrscp: C-STORE into the folder, C-FIND at every level of Patient Root, Study Root and
//! Patient/Study Only, C-GET and C-MOVE to configured destinations, C-ECHO; and, with
//! `--worklist`, Modality Worklist C-FIND from a folder of worklist files (like wlmscpfs).
//! The folder is indexed in memory at start; the archive with a database is `dimsum serve`.

use std::path::PathBuf;

use tracing::{error, info};

use dimsum_net::MoveRetry;
use dimsum_net::dataset::{QueryModel, QueryService};
use dimsum_net::scp::FindScp;
use dimsum_net::storage::FileStorage;
use dimsum_pacs::{FolderArchive, FolderArchiveConfig, WorklistFolder};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::options::ServerOptions;
use crate::qr_options::{FindOptionFlags, MoveRetryOptions};
use crate::qr_services;

/// Options of `dimsum qrscp`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// TCP port to listen on.
    pub port: u16,
    #[command(flatten)]
    pub server: ServerOptions,
    /// The folder served (read recursively at start) and stored into (created if missing).
    #[arg(long = "output-directory", value_name = "DIR", default_value = ".")]
    pub storage: PathBuf,
    /// A folder of worklist files: serve Modality Worklist C-FIND from it.
    #[arg(long, value_name = "DIR")]
    pub worklist: Option<PathBuf>,
    /// A C-MOVE destination, `AE=HOST:PORT` (repeatable).
    #[arg(long = "move-destination", value_name = "AE=HOST:PORT", value_parser = parse_destination)]
    pub move_destinations: Vec<(String, String)>,
    /// Associations a C-MOVE opens to its destination at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub move_associations: u32,
    #[command(flatten)]
    pub move_retry: MoveRetryOptions,
    #[command(flatten)]
    pub find_options: FindOptionFlags,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

fn parse_destination(value: &str) -> Result<(String, String), String> {
    let (ae, address) = value
        .split_once('=')
        .ok_or_else(|| format!("`{value}`: expected AE=HOST:PORT"))?;
    let ae = ae.trim();
    if ae.is_empty() || ae.len() > 16 {
        return Err(format!("`{ae}` is not an AE title (1 to 16 characters)"));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}`: expected HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("`{address}`: expected HOST:PORT"));
    }
    Ok((ae.to_owned(), address.to_owned()))
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    if let Err(e) = std::fs::create_dir_all(&options.storage) {
        error!("cannot create {}: {e}", options.storage.display());
        return Code::Internal;
    }
    let mut config = FolderArchiveConfig::new(&options.storage)
        .with_move_associations(options.move_associations as usize);
    for (ae, address) in &options.move_destinations {
        config = config.with_destination(ae, address);
    }
    let archive = match FolderArchive::open(config).await {
        Ok(archive) => archive,
        Err(e) => {
            error!("{e}");
            return Code::Internal;
        }
    };
    info!(
        "Serving {}: {:?}",
        options.storage.display(),
        archive.counts()
    );
    let storage = match FileStorage::new(&options.storage) {
        Ok(storage) => storage.on_stored(archive.on_stored()),
        Err(e) => {
            error!("cannot store into {}: {e}", options.storage.display());
            return Code::Internal;
        }
    };
    let mut dispatcher = qr_services::archive_dispatcher_with(
        storage,
        archive,
        options.move_retry.over(MoveRetry::default()),
        options.find_options.over(qr_services::ARCHIVE_FIND_OPTIONS),
    );
    if let Some(folder) = &options.worklist {
        let worklist_class = QueryModel::ModalityWorklist
            .sop_class(QueryService::Find)
            .map(String::from)
            .into_iter()
            .collect();
        dispatcher = dispatcher.with(FindScp::new(
            WorklistFolder::new(folder),
            worklist_class,
            qr_services::query_syntaxes(),
        ));
    }
    crate::serve::serve(&options.server, options.port, "QRSCP", dispatcher).await
}
