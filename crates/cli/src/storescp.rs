//! `dimsum storescp` (and `dcmrecv`): Storage SCP (PS3.4 Annex B) writing Part 10 files, like
//! DCMTK's storescp.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tracing::{error, info};

use dimsum_net::dataset::{sop_class, transfer_syntax};
use dimsum_net::scp::{Dispatcher, EchoScp, StoreScp};
use dimsum_net::storage::{FileStorage, Layout, Origin, StoredInstance};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::options::ServerOptions;

/// Options of `dimsum storescp` and `dimsum dcmrecv`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// TCP port to listen on.
    pub port: u16,
    #[command(flatten)]
    pub server: ServerOptions,
    /// Folder to store into (created if missing).
    #[arg(long = "output-directory", value_name = "DIR", default_value = ".")]
    pub output_directory: PathBuf,
    /// Store into <DIR>/<StudyInstanceUID>/.
    #[arg(long, conflicts_with = "sort_on_series")]
    pub sort_on_study_uid: bool,
    /// Store into <DIR>/<StudyInstanceUID>/<SeriesInstanceUID>/.
    #[arg(long)]
    pub sort_on_series: bool,
    /// Run this shell command after each stored file; placeholders: #p folder, #f file name,
    /// #a calling AE, #c called AE, #r peer IP (passed as environment variables, never pasted
    /// into the command text).
    #[arg(long, value_name = "COMMAND")]
    pub exec_on_reception: Option<String>,
    /// fsync each file and its folder before it becomes visible.
    #[arg(long)]
    pub fsync: bool,
    /// Accept any SOP class, not only the standard storage SOP classes.
    #[arg(long)]
    pub promiscuous: bool,
    /// Accept only these transfer syntaxes, in this order of preference (repeatable) [default:
    /// every transfer syntax dimsum knows, uncompressed first].
    #[arg(long = "accept-ts", value_name = "UID")]
    pub accept_ts: Vec<String>,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options, default_ae_title: &str) -> Code {
    logging::init(options.verbosity);
    let layout = if options.sort_on_series {
        Layout::ByStudyAndSeries
    } else if options.sort_on_study_uid {
        Layout::ByStudy
    } else {
        Layout::Flat
    };
    let mut storage = match FileStorage::new(&options.output_directory) {
        Ok(storage) => storage.with_layout(layout).with_fsync(options.fsync),
        Err(e) => {
            error!(
                "cannot use {} as output folder: {e}",
                options.output_directory.display()
            );
            return Code::Internal;
        }
    };
    let hook = options.exec_on_reception.clone();
    storage = storage.on_stored(move |stored| {
        info!(
            "Stored {} from {} ({}, {} bytes)",
            stored.path.display(),
            stored.instance.source_ae_title().unwrap_or("?"),
            stored.instance.sop_class_uid,
            stored.data_set_length
        );
        if let Some(command) = &hook {
            run_reception_hook(command, stored);
        }
    });
    let transfer_syntaxes: Vec<String> = if options.accept_ts.is_empty() {
        transfer_syntax::known_transfer_syntaxes()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        options.accept_ts.clone()
    };
    let sop_classes = sop_class::storage_sop_classes()
        .into_iter()
        .map(String::from)
        .collect();
    let store = StoreScp::new(storage, sop_classes, transfer_syntaxes.clone());
    let mut dispatcher = Dispatcher::new().with(EchoScp::new()).with(store.clone());
    if options.promiscuous {
        dispatcher = dispatcher.with_fallback(store, transfer_syntaxes);
    }
    crate::serve::serve(&options.server, options.port, default_ae_title, dispatcher).await
}

/// Runs the `--exec-on-reception` command for a stored file, in the background. The values
/// reach the shell as environment variables, so a hostile AE title cannot inject commands.
fn run_reception_hook(template: &str, stored: &StoredInstance) {
    let command = template
        .replace("#p", "${DIMSUM_FOLDER}")
        .replace("#f", "${DIMSUM_FILE}")
        .replace("#a", "${DIMSUM_CALLING_AE}")
        .replace("#c", "${DIMSUM_CALLED_AE}")
        .replace("#r", "${DIMSUM_PEER}");
    let folder = stored
        .path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let file = stored
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (calling, called, peer) = match &stored.instance.origin {
        Origin::Dimse(origin) => (
            origin.calling_ae_title.clone(),
            origin.called_ae_title.clone(),
            origin.peer_address.ip().to_string(),
        ),
        Origin::Web { peer_address } => (
            String::new(),
            String::new(),
            peer_address.map(|a| a.ip().to_string()).unwrap_or_default(),
        ),
    };
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("DIMSUM_FOLDER", folder)
        .env("DIMSUM_FILE", file)
        .env("DIMSUM_CALLING_AE", calling)
        .env("DIMSUM_CALLED_AE", called)
        .env("DIMSUM_PEER", peer)
        .stdin(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            std::thread::spawn(move || {
                if let Ok(status) = child.wait()
                    && !status.success()
                {
                    error!("--exec-on-reception command failed: {status}");
                }
            });
        }
        Err(e) => error!("cannot run the --exec-on-reception command: {e}"),
    }
}
