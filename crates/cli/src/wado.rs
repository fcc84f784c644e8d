//! `dimsum wado`: WADO-RS Retrieve (PS3.18 10.4) from the command line: a study, series or
//! instance written into a folder as Part 10 files named by their SOP Instance UIDs, each
//! streamed to disk as it arrives; or, with `--metadata`, the DICOM JSON metadata printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tracing::{error, info, warn};

use dimsum_net::dataset::part10;
use dimsum_web::client::{Client, ClientError};
use dimsum_web::resource::Entity;
use dimsum_web::wado::TransferSyntax;

use crate::dicomweb::{self, WebOptions, megabytes};
use crate::exit::Code;
use crate::logging::{self, Verbosity};

/// Options of `dimsum wado`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub web: WebOptions,
    /// The study to retrieve.
    #[arg(long, value_name = "UID")]
    pub study: String,
    /// Only this series of the study.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// Only this instance of the series.
    #[arg(long, value_name = "UID", requires = "series")]
    pub instance: Option<String>,
    /// Folder the files are written to (created if needed).
    #[arg(
        long,
        alias = "output-directory",
        value_name = "DIR",
        default_value = "."
    )]
    pub out: PathBuf,
    /// The transfer syntax to ask for, or `*` for the one the server stores [default: the
    /// server's default, Explicit VR Little Endian].
    #[arg(long, value_name = "UID|*")]
    pub transfer_syntax: Option<String>,
    /// Print the metadata (DICOM JSON, PS3.18 F.2) on standard output instead of retrieving
    /// the instances.
    #[arg(long, conflicts_with_all = ["out", "transfer_syntax"])]
    pub metadata: bool,
    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl Options {
    fn entity(&self) -> Entity {
        let study = self.study.clone();
        match (&self.series, &self.instance) {
            (Some(series), Some(instance)) => Entity::Instance {
                study,
                series: series.clone(),
                instance: instance.clone(),
            },
            (Some(series), None) => Entity::Series {
                study,
                series: series.clone(),
            },
            _ => Entity::Study { study },
        }
    }

    fn transfer_syntax(&self) -> Result<Option<TransferSyntax>, String> {
        match self.transfer_syntax.as_deref() {
            None => Ok(None),
            Some("*") => Ok(Some(TransferSyntax::Any)),
            Some(uid) => match dimsum_net::ul::uid::validate(uid) {
                Ok(()) => Ok(Some(TransferSyntax::Uid(uid.to_owned()))),
                Err(e) => Err(format!(
                    "--transfer-syntax {uid:?} is not a UID ({}) nor *",
                    e.reason()
                )),
            },
        }
    }
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let syntax = match options.transfer_syntax() {
        Ok(syntax) => syntax,
        Err(message) => {
            error!("{message}");
            return Code::Usage;
        }
    };
    let client = match options.web.client() {
        Ok(client) => client,
        Err(code) => return code,
    };
    let entity = options.entity();
    if options.metadata {
        return match client.metadata_json(&entity).await {
            Ok(metadata) => {
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{metadata}").and_then(|()| out.flush()) {
                    Ok(()) => Code::Success,
                    Err(e) => {
                        error!("cannot write the metadata: {e}");
                        Code::Internal
                    }
                }
            }
            Err(error) => dicomweb::report(&error),
        };
    }
    if let Err(e) = tokio::fs::create_dir_all(&options.out).await {
        error!("cannot create {}: {e}", options.out.display());
        return Code::Internal;
    }
    let started = Instant::now();
    let progress = dicomweb::progress_bar(None, options.verbosity, options.no_progress);
    let outcome = retrieve_into(&client, &entity, syntax, &options.out, &progress).await;
    progress.finish_and_clear();
    let (files, bytes, code) = match outcome {
        Ok((files, bytes)) => (files, bytes, Code::Success),
        Err(Failure {
            files,
            bytes,
            error,
        }) => {
            let code = match &error {
                Error::Client(error) => dicomweb::report(error),
                Error::Local(message) => {
                    error!("{message}");
                    Code::Internal
                }
            };
            (files, bytes, code)
        }
    };
    if files == 0 && code == Code::Success {
        warn!("the server sent no instance");
    }
    if !options.verbosity.quiet {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "Summary: {files} instances written to {}; {} in {seconds:.2} s ({}/s)",
            options.out.display(),
            megabytes(bytes),
            megabytes((bytes as f64 / seconds.max(1e-9)) as u64)
        );
    }
    code
}

enum Error {
    Client(ClientError),
    Local(String),
}

/// What was written before a failure, and the failure.
struct Failure {
    files: usize,
    bytes: u64,
    error: Error,
}

/// Retrieves `entity` into `folder`, one file per part, each written under a hidden temporary
/// name and renamed to its SOP Instance UID once complete; returns the files and bytes written.
async fn retrieve_into(
    client: &Client,
    entity: &Entity,
    syntax: Option<TransferSyntax>,
    folder: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<(usize, u64), Failure> {
    let (mut files, mut bytes) = (0usize, 0u64);
    let fail = |files, bytes, error| Failure {
        files,
        bytes,
        error,
    };
    let mut response = client
        .retrieve_entity(entity, syntax)
        .await
        .map_err(|e| fail(0, 0, Error::Client(e)))?;
    info!(
        "Retrieving {} ({})",
        response.url(),
        response.content_type()
    );
    let temporary = folder.join(format!(".dimsum-wado-{}.part", std::process::id()));
    loop {
        let headers = match response.next_instance_part().await {
            Ok(Some(headers)) => headers,
            Ok(None) => break,
            Err(e) => return Err(fail(files, bytes, Error::Client(e))),
        };
        let written = write_part(&mut response, &temporary, progress).await;
        let size = match written {
            Ok(size) => size,
            Err(error) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(fail(files, bytes, error));
            }
        };
        let named = name_file(&temporary, folder, response.parts()).await;
        match named {
            Ok(path) => {
                files += 1;
                bytes += size;
                progress.set_message(format!("{files} instances"));
                info!(
                    "Wrote {} ({}, {})",
                    path.display(),
                    headers.content_type(),
                    megabytes(size)
                );
            }
            Err(message) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(fail(files, bytes, Error::Local(message)));
            }
        }
    }
    Ok((files, bytes))
}

/// Writes the current part's body to `path`, returning its size.
async fn write_part(
    response: &mut dimsum_web::client::MultipartResponse,
    path: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<u64, Error> {
    let local = |e: std::io::Error| Error::Local(format!("cannot write {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(local)?;
    let mut size = 0u64;
    loop {
        match response.next_chunk().await {
            Ok(Some(chunk)) => {
                file.write_all(&chunk).await.map_err(local)?;
                size += chunk.len() as u64;
                progress.inc(chunk.len() as u64);
            }
            Ok(None) => break,
            Err(e) => return Err(Error::Client(e)),
        }
    }
    file.flush().await.map_err(local)?;
    Ok(size)
}

/// Reads the file meta of the part written at `temporary` and renames it to
/// `<SOP Instance UID>.dcm` in `folder`.
async fn name_file(temporary: &Path, folder: &Path, part: usize) -> Result<PathBuf, String> {
    let source = temporary.to_path_buf();
    let meta = tokio::task::spawn_blocking(move || {
        let mut file = std::io::BufReader::new(std::fs::File::open(&source)?);
        part10::read_meta(&mut file)
            .map(|(meta, _)| meta)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("part {part} is not a DICOM Part 10 file: {e}"))?;
    let name = file_name(&meta.media_storage_sop_instance_uid, part);
    let path = folder.join(name);
    tokio::fs::rename(temporary, &path)
        .await
        .map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    Ok(path)
}

/// `<uid>.dcm` with every character but letters, digits, `.`, `-` and `_` replaced by `_`, at
/// most 128 characters, without leading dots; a name that would be empty is
/// `instance-<part>.dcm`. A UID
/// from the server never names anything outside the folder.
fn file_name(uid: &str, part: usize) -> String {
    let clean: String = uid
        .trim_end_matches(['\0', ' '])
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No hidden file, no `.` or `..`.
    let clean = clean.trim_start_matches('.');
    if clean.is_empty() {
        format!("instance-{part}.dcm")
    } else {
        format!("{clean}.dcm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_in_the_folder() {
        assert_eq!(file_name("1.2.840.1", 1), "1.2.840.1.dcm");
        assert_eq!(file_name("1.2.3\0", 1), "1.2.3.dcm");
        assert_eq!(file_name("../../etc/passwd", 2), "_.._etc_passwd.dcm");
        assert_eq!(file_name("..", 3), "instance-3.dcm");
        assert_eq!(file_name("", 4), "instance-4.dcm");
        assert_eq!(file_name("a/b\\c d", 5), "a_b_c_d.dcm");
        assert_eq!(file_name(&"9".repeat(500), 6).len(), 128 + 4);
    }
}
