//! `dimsum findscu`: Query/Retrieve and Modality Worklist C-FIND SCU (PS3.4 C.4.1, K.4), like
//! DCMTK's findscu: the identifier from query files and `-k` keys, each match printed as text
//! (or DICOM JSON, or written to files) as it arrives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use dimsum_net::Association;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::part10::{self, FileMeta};
use dimsum_net::dataset::{QueryModel, QueryService, dump, identifier, json};
use dimsum_net::dimse::status::Status;
use dimsum_net::scu::find::{accepted_find_options, find_options_proposal};
use dimsum_net::scu::{FindStream, QueryError, QueryRequest, query_context};
use dimsum_net::ul::negotiation::FindOptions;
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME,
};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::options::PeerOptions;
use crate::qr_options::{self, KeyOptions, ModelOptions};

/// Options of `dimsum findscu`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub peer: PeerOptions,
    /// Query files (DICOM data sets); one query each, with the `-k` keys applied over it.
    #[arg(value_name = "QUERYFILE")]
    pub query_files: Vec<PathBuf>,
    /// The information model [default: Modality Worklist, as DCMTK's findscu].
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub keys: KeyOptions,
    /// Print the matches as one DICOM JSON array (PS3.18 F.2) on standard output.
    #[arg(long, conflicts_with = "extract")]
    pub json: bool,
    /// Write each match to a DICOM file rsp0001.dcm, rsp0002.dcm, ... in the output folder.
    #[arg(short = 'X', long)]
    pub extract: bool,
    /// Folder for --extract.
    #[arg(long = "output-directory", value_name = "DIR", default_value = ".")]
    pub output_directory: PathBuf,
    /// Send a C-CANCEL-RQ after this many matches.
    #[arg(long, value_name = "N")]
    pub cancel: Option<usize>,
    /// Send each query this many times on the association.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Print the round-trip time of the queries (median, 99th percentile) and matches per
    /// second on standard error.
    #[arg(long)]
    pub timing: bool,
    /// Abort the association instead of releasing it.
    #[arg(long)]
    pub abort: bool,
    /// Propose relational queries (C-FIND extended negotiation, PS3.4 C.5.1.1 byte 1): keys of
    /// levels below the Query/Retrieve Level are then matched, and upper unique keys may be
    /// left out.
    #[arg(long)]
    pub relational: bool,
    /// Propose combined date and time range matching (PS3.4 C.5.1.1 byte 2).
    #[arg(long = "combined-datetime")]
    pub combined_datetime: bool,
    /// Propose fuzzy semantic matching of person names (PS3.4 C.5.1.1 byte 3): the SCP then
    /// matches names by its own looser rule (dimsum: each word of the key begins a word of the
    /// name, without regard to case or accents).
    #[arg(long = "fuzzy-names")]
    pub fuzzy_names: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl Options {
    fn model(&self) -> QueryModel {
        self.model.model(QueryModel::ModalityWorklist)
    }

    /// The C-FIND options to propose.
    fn find_options(&self) -> FindOptions {
        FindOptions {
            relational_queries: self.relational,
            combined_date_time: self.combined_datetime,
            fuzzy_person_names: self.fuzzy_names,
            ..FindOptions::NONE
        }
    }
}

/// Where the matches go.
enum Output {
    Text {
        count: usize,
    },
    Json {
        count: usize,
    },
    Files {
        folder: PathBuf,
        sop_class: &'static str,
        count: usize,
    },
}

impl Output {
    fn new(options: &Options) -> Output {
        if options.extract {
            Output::Files {
                folder: options.output_directory.clone(),
                sop_class: options
                    .model()
                    .sop_class(QueryService::Find)
                    .unwrap_or_default(),
                count: 0,
            }
        } else if options.json {
            print!("[");
            Output::Json { count: 0 }
        } else {
            Output::Text { count: 0 }
        }
    }

    /// Hands one match over as it arrives (nothing is kept).
    fn write(&mut self, found: &InMemDicomObject, status: Status) -> Result<(), String> {
        match self {
            Output::Text { count } => {
                *count += 1;
                let mut out = std::io::stdout().lock();
                let note = if status == Status::PENDING_WARNING {
                    " (some optional keys were not supported)"
                } else {
                    ""
                };
                writeln!(out, "# Match {count}{note}\n{}", dump::dump(found))
                    .map_err(|e| e.to_string())
            }
            Output::Json { count } => {
                let separator = if *count == 0 { "" } else { "," };
                *count += 1;
                let mut out = std::io::stdout().lock();
                write!(out, "{separator}\n{}", json::to_json(found)).map_err(|e| e.to_string())
            }
            Output::Files {
                folder,
                sop_class,
                count,
            } => {
                *count += 1;
                let path = folder.join(format!("rsp{:04}.dcm", count));
                write_response_file(&path, sop_class, found)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                info!("Wrote {}", path.display());
                Ok(())
            }
        }
    }

    fn close(&self) {
        if let Output::Json { .. } = self {
            println!("\n]");
        }
    }
}

/// Writes a match as a Part 10 file: the identifier in Explicit VR Little Endian behind a file
/// meta naming the C-FIND SOP class and a fresh instance UID.
fn write_response_file(
    path: &Path,
    sop_class: &str,
    found: &InMemDicomObject,
) -> Result<(), String> {
    let meta = FileMeta::new(
        sop_class,
        dimsum_net::ul::uid::generate(),
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLEMENTATION_CLASS_UID,
        IMPLEMENTATION_VERSION_NAME,
    );
    let mut bytes = part10::encode_header(&meta).map_err(|e| e.to_string())?;
    bytes.extend(identifier::encode(found, EXPLICIT_VR_LITTLE_ENDIAN).map_err(|e| e.to_string())?);
    std::fs::write(path, bytes).map_err(|e| e.to_string())
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let model = options.model();
    let queries: Vec<InMemDicomObject> = {
        let files: Vec<Option<&PathBuf>> = if options.query_files.is_empty() {
            vec![None]
        } else {
            options.query_files.iter().map(Some).collect()
        };
        let mut queries = Vec::new();
        for file in files {
            match options.keys.identifier(file) {
                Ok(query) => queries.push(query),
                Err(message) => {
                    error!("{message}");
                    return Code::Usage;
                }
            }
        }
        queries
    };
    if options.extract && !options.output_directory.is_dir() {
        error!(
            "the output folder {} does not exist",
            options.output_directory.display()
        );
        return Code::Usage;
    }
    let proposed = options.find_options();
    let association = match options
        .peer
        .open("FINDSCU", |request| {
            let request = request.with_context(query_context(model, QueryService::Find)?);
            if proposed.is_empty() {
                return Ok::<_, QueryError>(request);
            }
            Ok(request.with_sop_class_extended(find_options_proposal(model, proposed)?))
        })
        .await
    {
        Ok(association) => association,
        Err(code) => return code,
    };
    if !proposed.is_empty() {
        report_find_options(
            proposed,
            accepted_find_options(&association, model, proposed),
        );
    }
    let mut output = Output::new(&options);
    let mut timings = Vec::new();
    let mut total_matches = 0usize;
    let started = Instant::now();
    let mut code = Code::Success;
    'queries: for query in &queries {
        let request = QueryRequest::new(model, query.clone());
        for _ in 0..options.repeat {
            let began = Instant::now();
            match one_query(&association, &request, &options, &mut output).await {
                Ok((status, matches)) => {
                    timings.push(began.elapsed());
                    total_matches += matches;
                    if !(status.is_success() || status.is_cancel() && options.cancel.is_some()) {
                        code = Code::DimseFailure;
                    }
                }
                Err(failure) => {
                    code = failure;
                    if association.ending().is_some() {
                        break 'queries;
                    }
                }
            }
        }
    }
    output.close();
    if options.timing {
        report_timing(&mut timings, total_matches, started.elapsed());
    }
    if association.ending().is_some() {
        return code;
    }
    qr_options::finish(association, options.abort, code).await
}

/// Sends one C-FIND and hands its matches to `output`; the final status and the number of
/// matches.
async fn one_query(
    association: &Association,
    request: &QueryRequest,
    options: &Options,
    output: &mut Output,
) -> Result<(Status, usize), Code> {
    let mut stream = FindStream::start(association, request)
        .await
        .map_err(|e| qr_options::query_failed(&e))?;
    let mut matches = 0usize;
    let mut write_failed = None;
    loop {
        match stream.next().await {
            Ok(Some(found)) => {
                matches += 1;
                if write_failed.is_none()
                    && let Err(message) = output.write(&found.identifier, found.status)
                {
                    error!("{message}");
                    write_failed = Some(Code::Internal);
                    stream
                        .cancel()
                        .await
                        .map_err(|e| qr_options::query_failed(&e))?;
                }
                if options.cancel == Some(matches) {
                    stream
                        .cancel()
                        .await
                        .map_err(|e| qr_options::query_failed(&e))?;
                }
            }
            Ok(None) => break,
            Err(error) => {
                let code = qr_options::query_failed(&error);
                if error.ends_association() {
                    return Err(code);
                }
                let _ = stream.cancel().await;
                return Err(match stream.finish().await {
                    Err(error) => qr_options::query_failed(&error),
                    Ok(_) => code,
                });
            }
        }
    }
    let end = stream
        .finish()
        .await
        .map_err(|e| qr_options::query_failed(&e))?;
    match &end.error_comment {
        Some(comment) => warn!("Find finished: {} ({comment})", end.status),
        None => info!("Find finished: {} after {matches} matches", end.status),
    }
    if let Some(code) = write_failed {
        return Err(code);
    }
    Ok((end.status, matches))
}

/// Tells which proposed C-FIND options the SCP accepted (PS3.4 C.5.1.1).
fn report_find_options(proposed: FindOptions, accepted: FindOptions) {
    let answer = |asked: bool, granted: bool| match (asked, granted) {
        (false, _) => None,
        (true, true) => Some("accepted"),
        (true, false) => Some("not accepted"),
    };
    for (name, asked, granted) in [
        (
            "relational queries",
            proposed.relational_queries,
            accepted.relational_queries,
        ),
        (
            "combined date-time matching",
            proposed.combined_date_time,
            accepted.combined_date_time,
        ),
        (
            "fuzzy semantic person name matching",
            proposed.fuzzy_person_names,
            accepted.fuzzy_person_names,
        ),
    ] {
        if let Some(outcome) = answer(asked, granted) {
            if granted {
                info!("Extended negotiation: {name} {outcome}");
            } else {
                warn!("Extended negotiation: {name} {outcome} by the SCP");
            }
        }
    }
}

fn report_timing(timings: &mut [Duration], matches: usize, elapsed: Duration) {
    if timings.is_empty() {
        return;
    }
    timings.sort();
    let percentile = |p: f64| {
        let index = ((timings.len() as f64 - 1.0) * p).round() as usize;
        timings[index.min(timings.len() - 1)].as_secs_f64() * 1000.0
    };
    eprintln!(
        "timing: {} queries, p50 {:.3} ms, p99 {:.3} ms, {} matches, {:.0} matches/s",
        timings.len(),
        percentile(0.5),
        percentile(0.99),
        matches,
        matches as f64 / elapsed.as_secs_f64().max(1e-9)
    );
}
