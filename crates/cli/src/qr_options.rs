//! Options shared by the Query/Retrieve tools (findscu, getscu, movescu): the information
//! model and the identifier, built from query files and `-k` keys as DCMTK's tools do.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{error, info};

use dimsum_net::dataset::QueryModel;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::query_keys::{self, QueryKey};
use dimsum_net::scu::{QueryError, QueryRequest};
use dimsum_net::ul::negotiation::FindOptions;
use dimsum_net::{Association, MoveRetry};

use crate::exit::{self, Code};
use crate::options::PeerOptions;

/// The information model flags (DCMTK's): findscu defaults to the worklist, getscu and movescu
/// to Patient Root.
#[derive(clap::Args, Debug)]
pub struct ModelOptions {
    /// Use the Modality Worklist information model (C-FIND only).
    #[arg(short = 'W', long = "worklist", group = "model")]
    pub worklist: bool,
    /// Use the Patient Root information model.
    #[arg(short = 'P', long = "patient", group = "model")]
    pub patient: bool,
    /// Use the Study Root information model.
    #[arg(short = 'S', long = "study", group = "model")]
    pub study: bool,
    /// Use the Patient/Study Only information model (retired).
    #[arg(short = 'O', long = "psonly", group = "model")]
    pub psonly: bool,
}

impl ModelOptions {
    /// The model chosen, or `default` when none was.
    pub fn model(&self, default: QueryModel) -> QueryModel {
        if self.worklist {
            QueryModel::ModalityWorklist
        } else if self.patient {
            QueryModel::PatientRoot
        } else if self.study {
            QueryModel::StudyRoot
        } else if self.psonly {
            QueryModel::PatientStudyOnly
        } else {
            default
        }
    }
}

/// What getscu and movescu are asked: the peer, the information model (Patient Root unless
/// told) and the identifier, from a query file and `-k` keys.
#[derive(clap::Args, Debug)]
pub struct RetrieveQueryOptions {
    #[command(flatten)]
    pub peer: PeerOptions,
    /// A query file (a DICOM data set), with the `-k` keys applied over it.
    #[arg(value_name = "QUERYFILE")]
    pub query_file: Option<PathBuf>,
    /// The information model [default: Patient Root].
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub keys: KeyOptions,
    /// Abort the association instead of releasing it.
    #[arg(long)]
    pub abort: bool,
}

impl RetrieveQueryOptions {
    /// The request to send, or the exit status of a usage error (reported).
    pub fn query(&self) -> Result<QueryRequest, Code> {
        let identifier = self
            .keys
            .identifier(self.query_file.as_ref())
            .map_err(|message| {
                error!("{message}");
                Code::Usage
            })?;
        Ok(QueryRequest::new(
            self.model.model(QueryModel::PatientRoot),
            identifier,
        ))
    }
}

/// The identifier: query files, then `-k` keys over them.
#[derive(clap::Args, Debug)]
pub struct KeyOptions {
    /// A matching or return key: `PatientName=DOE*`, `0010,0020=123`, `(0008,0052)=STUDY`,
    /// `(0040,0100)[0].Modality=CT`; without `=` a return key (repeatable; later keys win).
    #[arg(short = 'k', long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
}

impl KeyOptions {
    /// The identifier: `query_file` (a DICOM file, as DCMTK's dump2dcm writes) if given, with
    /// the `-k` keys applied over it.
    pub fn identifier(&self, query_file: Option<&PathBuf>) -> Result<InMemDicomObject, String> {
        let mut identifier = match query_file {
            Some(path) => query_keys::read_query_file(path)
                .map_err(|e| format!("cannot read the query file {}: {e}", path.display()))?,
            None => InMemDicomObject::new_empty(),
        };
        let keys = self
            .keys
            .iter()
            .map(|key| QueryKey::parse(key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        query_keys::apply_keys(&mut identifier, &keys).map_err(|e| e.to_string())?;
        Ok(identifier)
    }
}

/// How a C-MOVE SCP (`qrscp`, `serve`) retries its destination: each flag given replaces that
/// part of the policy (see [`MoveRetry`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MoveRetryOptions {
    /// Times a C-MOVE tries its destination again after a refused connection, a transient
    /// rejection or an abort; 0 = never [default: 2].
    #[arg(long, value_name = "N")]
    pub move_retries: Option<u32>,
    /// Seconds to wait before each of those attempts [default: 1].
    #[arg(long, value_name = "SECONDS")]
    pub move_retry_delay: Option<u64>,
}

impl MoveRetryOptions {
    /// `retry` with the flags given applied over it.
    pub fn over(&self, retry: MoveRetry) -> MoveRetry {
        MoveRetry {
            retries: self.move_retries.unwrap_or(retry.retries),
            delay: self
                .move_retry_delay
                .map_or(retry.delay, Duration::from_secs),
        }
    }
}

/// Which C-FIND extended negotiation options (PS3.4 C.5.1.1) a Query/Retrieve SCP (`qrscp`,
/// `serve`) accepts when a peer proposes them: each flag given switches one off.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct FindOptionFlags {
    /// Answer "not supported" to relational queries (PS3.4 C.5.1.1 byte 1): C-FIND is then
    /// hierarchical for every peer [default: supported].
    #[arg(long)]
    pub no_relational: bool,
    /// Answer "not supported" to combined date and time range matching (PS3.4 C.5.1.1 byte 2):
    /// date and time ranges are then matched each on its own [default: supported].
    #[arg(long = "no-combined-datetime")]
    pub no_combined_datetime: bool,
    /// Answer "not supported" to fuzzy semantic matching of person names (PS3.4 C.5.1.1 byte
    /// 3) [default: supported].
    #[arg(long = "no-fuzzy-names")]
    pub no_fuzzy_names: bool,
}

impl FindOptionFlags {
    /// `options` with the options these flags switch off removed.
    pub fn over(self, options: FindOptions) -> FindOptions {
        FindOptions {
            relational_queries: options.relational_queries && !self.no_relational,
            combined_date_time: options.combined_date_time && !self.no_combined_datetime,
            fuzzy_person_names: options.fuzzy_person_names && !self.no_fuzzy_names,
            ..options
        }
    }
}

/// Releases `association` (or aborts it when `abort`), returning `code` unless that fails.
pub async fn finish(association: Association, abort: bool, code: Code) -> Code {
    if abort {
        info!("Aborting association");
        association.abort().await;
        return code;
    }
    info!("Releasing association");
    match association.release().await {
        Ok(()) => code,
        Err(error) => {
            error!("releasing the association: {error}");
            if code == Code::Success {
                exit::for_error(&error)
            } else {
                code
            }
        }
    }
}

/// The exit status and a report for a Q/R operation that could not be carried out.
pub fn query_failed(error: &QueryError) -> Code {
    error!("{error}");
    match error {
        QueryError::Network(error) => exit::for_error(error),
        _ if error.ends_association() => Code::Aborted,
        _ => Code::DimseFailure,
    }
}
