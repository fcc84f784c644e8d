//! A Modality Worklist served from a folder of worklist files (PS3.4 Annex K), as DCMTK's
//! wlmscpfs keeps its `.wl` files: each Part 10 file under the folder is one worklist item (a
//! Scheduled Procedure Step with its patient, visit, study and request attributes, PS3.4 K.6.1).
//! Items change during the day, so the folder is read again for every query, on tokio's
//! blocking pool; the matches go to the framework through a small bounded channel as they are
//! found, and dropping the stream (C-CANCEL) stops the reading.

use std::path::{Path, PathBuf};

use futures_util::stream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{FindHandler, FindMatch, MatchStream, Query, ScpFailure};
use dimsum_net::storage::BoxFuture;

use crate::file;
use crate::folder::encode_identifier;
use crate::matching;

/// Matches found ahead of the framework sending them.
const MATCHES_AHEAD: usize = 8;

/// A Modality Worklist information model C-FIND SCP's action (PS3.4 K.4, information model
/// K.6.1) over a folder of worklist files, matched with [`crate::matching`] (the Scheduled
/// Procedure Step Sequence by sequence matching, C.2.2.2.6).
#[derive(Debug, Clone)]
pub struct WorklistFolder {
    root: PathBuf,
    limits: ScanLimits,
}

impl WorklistFolder {
    /// The worklist in `root` (read recursively; hidden files are left out, files that are not
    /// DICOM are skipped with a warning).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            limits: ScanLimits::default(),
        }
    }

    /// Limits for the hardened scan of each file.
    pub fn with_limits(mut self, limits: ScanLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FindHandler for WorklistFolder {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        Box::pin(async move {
            if QueryModel::of_sop_class(&query.sop_class_uid)
                != Some((QueryModel::ModalityWorklist, QueryService::Find))
            {
                return Err(ScpFailure::new(
                    Status::SOP_CLASS_NOT_SUPPORTED,
                    format!(
                        "the worklist serves the Modality Worklist information model, not {}",
                        query.sop_class_uid
                    ),
                ));
            }
            let files = {
                let root = self.root.clone();
                tokio::task::spawn_blocking(move || file::list_files(&root))
                    .await
                    .map_err(|error| ScpFailure::processing(error.to_string()))?
                    .map_err(|error| {
                        ScpFailure::processing(format!(
                            "cannot read the worklist folder {}: {error}",
                            self.root.display()
                        ))
                    })?
            };
            let (sender, receiver) = mpsc::channel(MATCHES_AHEAD);
            let limits = self.limits;
            tokio::task::spawn_blocking(move || search(files, &query, &limits, &sender));
            let matches = stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|found| (found, receiver))
            });
            Ok(Box::pin(matches) as MatchStream)
        })
    }
}

/// Reads each file, and sends each matching item's response identifier; stops when the stream
/// is gone.
fn search(
    files: Vec<PathBuf>,
    query: &Query,
    limits: &ScanLimits,
    sender: &mpsc::Sender<Result<FindMatch, ScpFailure>>,
) {
    for path in files {
        if sender.is_closed() {
            debug!("worklist query cancelled");
            return;
        }
        let item = match file::read_part10(&path, limits) {
            Ok(item) => item.attributes,
            Err(error) if error.is_not_dicom() => {
                warn!("{}: not a DICOM file, skipped", path.display());
                continue;
            }
            Err(error) => {
                warn!("worklist item skipped: {error}");
                continue;
            }
        };
        let Some(found) = answer(&query.keys, &item, &query.transfer_syntax_uid) else {
            continue;
        };
        if sender.blocking_send(found).is_err() {
            return;
        }
    }
}

/// The response to `keys` for one worklist item, if it matches.
fn answer(
    keys: &InMemDicomObject,
    item: &InMemDicomObject,
    transfer_syntax_uid: &str,
) -> Option<Result<FindMatch, ScpFailure>> {
    if !matching::matches(keys, item) {
        return None;
    }
    let response = matching::response_identifier(keys, item);
    Some(encode_identifier(&response, transfer_syntax_uid).map(FindMatch::new))
}
