//! `dimsum stow`: STOW-RS Store Instances (PS3.18 10.5) from the command line: DICOM files and
//! folders sent in requests of `--batch` instances, each file streamed from disk as the request
//! goes out, with a progress bar and a summary of what the server stored and refused.

use std::path::PathBuf;
use std::time::Instant;

use tracing::{error, info, warn};

use dimsum_net::scu::store::StoreFile;
use dimsum_web::client::{StowInstance, StowOutcome};
use dimsum_web::stow::InstanceOutcome;

use crate::dicomweb::{self, WebOptions, megabytes};
use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::storescu::files_to_send;

/// Options of `dimsum stow`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub web: WebOptions,
    /// DICOM files, or folders to scan recursively.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Store into this study (POST studies/UID): instances of other studies are refused.
    #[arg(long, value_name = "UID")]
    pub study: Option<String>,
    /// Instances per request.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Counts of the whole run.
#[derive(Debug, Default)]
struct Tally {
    stored: usize,
    warnings: usize,
    failed: usize,
    bytes: u64,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let started = Instant::now();
    let (files, skipped) = match files_to_send(options.paths.clone()).await {
        Ok(listed) => listed,
        Err(code) => return code,
    };
    let client = match options.web.client() {
        Ok(client) => client,
        Err(code) => return code,
    };
    let total_files = files.len();
    let total_bytes: u64 = files.iter().map(file_size).sum();
    let progress =
        dicomweb::progress_bar(Some(total_bytes), options.verbosity, options.no_progress);
    let mut tally = Tally::default();
    let mut code = Code::Success;
    let mut batches = files.chunks(options.batch as usize);
    for batch in batches.by_ref() {
        progress.set_message(format!(
            "{} of {total_files} instances stored",
            tally.stored + tally.warnings
        ));
        let instances = batch
            .iter()
            .map(|file| StowInstance::File(file.path.clone()))
            .collect();
        let bar = progress.clone();
        let sent = client
            .store_instances_with_progress(options.study.as_deref(), instances, move |bytes| {
                bar.inc(bytes)
            })
            .await;
        match sent {
            Ok(outcome) => count(&outcome, batch, &mut tally),
            Err(error) => {
                tally.failed += batch.len();
                code = dicomweb::report(&error);
                if error.is_transport() {
                    break;
                }
            }
        }
    }
    // After a transport failure the files not yet sent count as failed.
    let not_sent: usize = batches.map(<[StoreFile]>::len).sum();
    tally.failed += not_sent;
    progress.finish_and_clear();
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
    match code {
        Code::Success if tally.failed > 0 => Code::DimseFailure,
        code => code,
    }
}

/// Counts the outcome of one request: each file's instance as the response names it; one the
/// response does not name counts as failed.
fn count(outcome: &StowOutcome, batch: &[StoreFile], tally: &mut Tally) {
    if let Some(warning) = &outcome.warning {
        warn!("the server warns: {warning}");
    }
    // The files not yet named by the response (the same instance may be sent twice).
    let mut unanswered: Vec<Option<&StoreFile>> = batch.iter().map(Some).collect();
    let mut take = |uid: &str| {
        unanswered
            .iter_mut()
            .find(|file| file.is_some_and(|f| f.meta.media_storage_sop_instance_uid == uid))
            .and_then(Option::take)
    };
    let mut failed_unnamed = 0;
    // Instances stored under a SOP Instance UID that no file's meta names (a data set whose
    // SOP Instance UID differs from its Media Storage SOP Instance UID).
    let mut stored_elsewhere = Vec::new();
    for instance in &outcome.response.outcomes {
        match instance {
            InstanceOutcome::Stored {
                sop_instance_uid,
                warning,
                ..
            } => {
                let Some(file) = take(sop_instance_uid) else {
                    stored_elsewhere.push((sop_instance_uid.as_str(), *warning));
                    continue;
                };
                tally.bytes += file_size(file);
                match warning {
                    None => {
                        tally.stored += 1;
                        info!("Stored {} ({sop_instance_uid})", file.path.display());
                    }
                    Some(reason) => {
                        tally.warnings += 1;
                        warn!(
                            "{} ({sop_instance_uid}) stored with warning {reason:#06X}",
                            file.path.display()
                        );
                    }
                }
            }
            InstanceOutcome::Failed {
                sop_instance_uid,
                reason,
                ..
            } => match take(sop_instance_uid) {
                Some(file) => {
                    tally.failed += 1;
                    error!(
                        "{} ({sop_instance_uid}): not stored, failure reason {reason:#06X}",
                        file.path.display()
                    );
                }
                None => {
                    // A part the server could not read far enough to name.
                    failed_unnamed += 1;
                    error!(
                        "an instance ({sop_instance_uid:?}) was not stored: failure reason {reason:#06X}"
                    );
                }
            },
        }
    }
    // Each is one of the files not named: paired in order, as many as there are.
    let mut unanswered: Vec<&StoreFile> = unanswered.into_iter().flatten().collect();
    for (uid, warning) in stored_elsewhere {
        if unanswered.is_empty() {
            warn!("the server reports {uid} stored, which was not sent");
            continue;
        }
        let file = unanswered.remove(0);
        warn!(
            "{} was stored as {uid}, although its file meta names {}",
            file.path.display(),
            file.meta.media_storage_sop_instance_uid
        );
        tally.bytes += file_size(file);
        match warning {
            None => tally.stored += 1,
            Some(_) => tally.warnings += 1,
        }
    }
    // Instances the response names as failed without their UID are among the unanswered ones.
    for file in unanswered {
        tally.failed += 1;
        if failed_unnamed == 0 {
            error!(
                "{} ({}): not named in the response (HTTP {})",
                file.path.display(),
                file.meta.media_storage_sop_instance_uid,
                outcome.status
            );
        }
    }
}

/// The size of a file: meta and data set.
fn file_size(file: &StoreFile) -> u64 {
    file.data_offset + file.data_length
}

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_net::dataset::part10::FileMeta;
    use dimsum_web::stow::StowResponse;

    fn file(uid: &str) -> StoreFile {
        StoreFile {
            path: PathBuf::from(format!("{uid}.dcm")),
            meta: FileMeta::new(
                "1.2.840.10008.5.1.4.1.1.7",
                uid,
                "1.2.840.10008.1.2.1",
                "1.2",
                "T",
            ),
            data_offset: 132,
            data_length: 868,
        }
    }

    fn stored(uid: &str, warning: Option<u16>) -> InstanceOutcome {
        InstanceOutcome::Stored {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".to_owned(),
            sop_instance_uid: uid.to_owned(),
            retrieve_url: None,
            warning,
        }
    }

    fn failed(uid: &str) -> InstanceOutcome {
        InstanceOutcome::Failed {
            sop_class_uid: String::new(),
            sop_instance_uid: uid.to_owned(),
            reason: 0xC000,
        }
    }

    fn tally(outcomes: Vec<InstanceOutcome>, batch: &[StoreFile]) -> Tally {
        let outcome = StowOutcome {
            status: 202,
            response: StowResponse {
                retrieve_url: None,
                outcomes,
            },
            warning: None,
        };
        let mut tally = Tally::default();
        count(&outcome, batch, &mut tally);
        tally
    }

    #[test]
    fn each_file_is_counted_once_by_what_the_response_says_of_it() {
        let batch = [file("1.1"), file("1.2"), file("1.3"), file("1.4")];
        let counted = tally(
            vec![
                stored("1.1", None),
                stored("1.2", Some(0xB000)),
                failed("1.3"),
            ],
            &batch,
        );
        // 1.4 is not named: failed.
        assert_eq!(
            (
                counted.stored,
                counted.warnings,
                counted.failed,
                counted.bytes
            ),
            (1, 1, 2, 2000)
        );
    }

    #[test]
    fn an_instance_stored_under_another_uid_is_paired_with_the_file_left() {
        // A data set whose SOP Instance UID is not its meta's: stored, not failed.
        let batch = [file("1.1"), file("1.2")];
        let counted = tally(vec![stored("1.1", None), stored("9.9", None)], &batch);
        assert_eq!((counted.stored, counted.failed), (2, 0));
        // A failure the server could not name is one of the files left.
        let counted = tally(vec![stored("1.1", None), failed("")], &batch);
        assert_eq!((counted.stored, counted.failed), (1, 1));
        // The same instance sent twice and stored twice counts twice.
        let twice = [file("1.1"), file("1.1")];
        let counted = tally(vec![stored("1.1", None), stored("1.1", None)], &twice);
        assert_eq!((counted.stored, counted.failed), (2, 0));
    }
}
