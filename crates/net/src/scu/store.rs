//! Storage Service Class user (PS3.4 Annex B): C-STORE of data sets and Part 10 files.
//!
//! Files are streamed from disk: only the file meta is parsed, the data set goes from the file
//! into P-DATA-TF PDUs in chunks. When the peer did not accept a file's transfer syntax, an
//! uncompressed data set is converted (in memory) to one it accepted; compressed data cannot be.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;

use dimsum_dataset::part10::{self, FileMeta};
use dimsum_dataset::{convert, scan::ScanLimits, transfer_syntax};
use dimsum_dimse::message::{CStoreRq, CStoreRsp, Message, Priority};
use dimsum_ul::negotiation::ProposedContext;
use dimsum_ul::uids::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use crate::{Association, Error};

/// The size of the pieces a file is read in.
const READ_PIECE: usize = 1024 * 1024;
/// Pieces read ahead of the network, per file being sent.
const PIECES_AHEAD: usize = 4;

/// The C-STORE-RQ fields that describe what is stored (PS3.7 §9.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub priority: Priority,
    /// Move Originator AE Title and Message ID, when storing as a C-MOVE sub-operation.
    pub move_originator: Option<(String, u16)>,
}

impl StoreRequest {
    fn to_message(&self, message_id: u16) -> Message {
        Message::CStoreRq(CStoreRq {
            message_id,
            affected_sop_class_uid: self.sop_class_uid.clone(),
            affected_sop_instance_uid: self.sop_instance_uid.clone(),
            priority: self.priority,
            move_originator_ae_title: self.move_originator.as_ref().map(|(ae, _)| ae.clone()),
            move_originator_message_id: self.move_originator.as_ref().map(|(_, id)| *id),
            data_set_present: true,
        })
    }
}

/// Sends a data set held in memory (encoded in the transfer syntax of `presentation_context_id`)
/// and returns the peer's C-STORE-RSP.
pub async fn store_data_set(
    association: &Association,
    presentation_context_id: u8,
    request: &StoreRequest,
    data_set: &[u8],
) -> Result<CStoreRsp, Error> {
    store_bytes(
        association,
        presentation_context_id,
        request,
        Bytes::copy_from_slice(data_set),
    )
    .await
}

/// Like [`store_data_set`], without a copy of the data set.
pub async fn store_bytes(
    association: &Association,
    presentation_context_id: u8,
    request: &StoreRequest,
    data_set: Bytes,
) -> Result<CStoreRsp, Error> {
    store_source(
        association,
        presentation_context_id,
        request,
        Source::Memory(data_set),
    )
    .await
}

/// Streams a data set of `length` bytes, read in pieces by `pieces` (as [`read_file_pieces`]
/// gives them), and returns the peer's C-STORE-RSP. A failing source aborts the association
/// (a data set cannot be cut short) and gives [`Error::DataSource`].
pub async fn store_pieces(
    association: &Association,
    presentation_context_id: u8,
    request: &StoreRequest,
    pieces: mpsc::Receiver<std::io::Result<Bytes>>,
    length: u64,
) -> Result<CStoreRsp, Error> {
    store_source(
        association,
        presentation_context_id,
        request,
        Source::Pieces { pieces, length },
    )
    .await
}

/// Where the data set of a C-STORE comes from.
enum Source {
    Memory(Bytes),
    Pieces {
        pieces: mpsc::Receiver<std::io::Result<Bytes>>,
        length: u64,
    },
}

async fn store_source(
    association: &Association,
    presentation_context_id: u8,
    request: &StoreRequest,
    source: Source,
) -> Result<CStoreRsp, Error> {
    let message_id = association.next_message_id();
    let responses = send_store(
        association,
        presentation_context_id,
        request.to_message(message_id),
        source,
    )
    .await?;
    store_response(responses.last().await?, message_id)
}

/// Sends a C-STORE-RQ and its data set; returns its responses.
async fn send_store(
    association: &Association,
    presentation_context_id: u8,
    message: Message,
    source: Source,
) -> Result<crate::Responses, Error> {
    let (mut pieces, length) = match source {
        Source::Memory(data) => {
            return association
                .request(presentation_context_id, message, Some(data))
                .await;
        }
        Source::Pieces { pieces, length } => (pieces, length),
    };
    let (writer, responses) = association
        .start_request(presentation_context_id, message)
        .await?;
    let Some(mut writer) = writer else {
        return Err(Error::UnexpectedMessage(
            "a C-STORE-RQ without a data set".into(),
        ));
    };
    let mut remaining = length;
    loop {
        match pieces.recv().await {
            Some(Ok(piece)) => {
                remaining = remaining.saturating_sub(piece.len() as u64);
                if remaining == 0 {
                    writer.finish(piece).await?;
                    break;
                }
                writer.write(piece).await?;
            }
            Some(Err(source)) => {
                drop(writer);
                return Err(Error::DataSource(source));
            }
            None if remaining == 0 => {
                writer.finish(Bytes::new()).await?;
                break;
            }
            None => {
                drop(writer);
                return Err(Error::DataSource(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the data set ended early",
                )));
            }
        }
    }
    Ok(responses)
}

/// The C-STORE-RSP in a final response (the association already matched it to its request).
fn store_response(response: crate::Response, message_id: u16) -> Result<CStoreRsp, Error> {
    match response.message {
        Message::CStoreRsp(rsp) => Ok(rsp),
        other => Err(Error::UnexpectedMessage(format!(
            "expected the C-STORE-RSP to message {message_id}, got {}",
            other.command_field()
        ))),
    }
}

/// Reads `length` bytes of `path` from `offset` on the blocking pool, in pieces of at most
/// 1 MiB, a few pieces ahead of the consumer: the runtime never waits for the disk.
pub fn read_file_pieces(
    path: PathBuf,
    offset: u64,
    length: u64,
) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (sender, receiver) = mpsc::channel(PIECES_AHEAD);
    tokio::task::spawn_blocking(move || feed_pieces(&path, offset, length, &sender));
    receiver
}

/// Reads `length` bytes of `path` from `offset` into `sender`, piece by piece (blocking); an
/// error is sent as the last item.
fn feed_pieces(
    path: &Path,
    offset: u64,
    length: u64,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) {
    let opened = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        Ok(file)
    });
    let mut file = match opened {
        Ok(file) => file.take(length),
        Err(error) => {
            let _ = sender.blocking_send(Err(error));
            return;
        }
    };
    let mut remaining = length;
    while remaining > 0 {
        let size = remaining.min(READ_PIECE as u64) as usize;
        // `read_to_end` fills spare capacity: nothing is zeroed first.
        let mut piece = Vec::with_capacity(size);
        let read = std::io::Read::by_ref(&mut file)
            .take(size as u64)
            .read_to_end(&mut piece);
        let result = match read {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ended early", path.display()),
            )),
            Ok(n) => {
                remaining -= n as u64;
                Ok(Bytes::from(piece))
            }
            Err(error) => Err(error),
        };
        let failed = result.is_err();
        if sender.blocking_send(result).is_err() || failed {
            return;
        }
    }
}

/// A Part 10 file ready to be sent: its meta and where its data set lies.
#[derive(Debug, Clone)]
pub struct StoreFile {
    pub path: PathBuf,
    pub meta: FileMeta,
    /// Offset of the data set in the file (after the file meta).
    pub data_offset: u64,
    /// Length of the data set in bytes.
    pub data_length: u64,
}

/// Why one file could not be stored; the association goes on (unlike [`Error`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreFileError {
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    NotDicom { path: PathBuf, reason: String },
    #[error("no presentation context was accepted for SOP class {sop_class_uid}")]
    NoContext { sop_class_uid: String },
    #[error(
        "transfer syntax {transfer_syntax_uid} not accepted by the peer and compressed data cannot be converted"
    )]
    CannotConvert { transfer_syntax_uid: String },
    #[error("cannot convert from {from} to {to}: {reason}")]
    Conversion {
        from: String,
        to: String,
        reason: String,
    },
    #[error(transparent)]
    Network(#[from] Error),
    #[error("not sent: the association ended before")]
    NotSent,
}

impl StoreFileError {
    /// Whether the association is gone (the rest of a batch cannot go on it).
    pub fn ends_association(&self) -> bool {
        match self {
            StoreFileError::Network(error) => error.ends_association(),
            StoreFileError::NotSent => true,
            _ => false,
        }
    }
}

/// What happened to one stored file.
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    pub response: CStoreRsp,
    /// The transfer syntax the data set was converted to, when it was.
    pub converted_to: Option<String>,
}

impl StoreFile {
    /// Reads the file meta of a Part 10 file (PS3.10 §7.1); the data set itself is not read.
    pub fn open(path: impl Into<PathBuf>) -> Result<StoreFile, StoreFileError> {
        let path = path.into();
        let read_error = |source| StoreFileError::Read {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(read_error)?;
        let file_length = file.metadata().map_err(read_error)?.len();
        let (meta, data_offset) =
            part10::read_meta(&mut BufReader::new(file)).map_err(|e| StoreFileError::NotDicom {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if meta.media_storage_sop_class_uid.is_empty()
            || meta.media_storage_sop_instance_uid.is_empty()
        {
            return Err(StoreFileError::NotDicom {
                path,
                reason: "the file meta has no media storage SOP class or instance UID".into(),
            });
        }
        let data_length = file_length.saturating_sub(data_offset);
        Ok(StoreFile {
            path,
            meta,
            data_offset,
            data_length,
        })
    }

    fn request(&self, move_originator: Option<(String, u16)>) -> StoreRequest {
        StoreRequest {
            sop_class_uid: self.meta.media_storage_sop_class_uid.clone(),
            sop_instance_uid: self.meta.media_storage_sop_instance_uid.clone(),
            priority: Priority::Medium,
            move_originator,
        }
    }
}

/// Which transfer syntaxes a batch proposes (PS3.8 §9.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferSyntaxProposal {
    /// For each SOP class, a context per transfer syntax its files have, plus, when some are
    /// uncompressed, a fallback context with the uncompressed syntaxes for conversion (like
    /// DCMTK's `storescu -R` with fallback).
    AsFiles,
    /// One context per SOP class with only this transfer syntax; files are converted to it.
    Only(String),
}

/// The uncompressed syntaxes a sender can convert between, in order of preference.
const CONVERTIBLE: [&str; 3] = [
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
];

/// The presentation contexts to propose for sending `files`.
pub fn propose_contexts(
    files: &[StoreFile],
    proposal: &TransferSyntaxProposal,
) -> Vec<ProposedContext> {
    let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for file in files {
        let syntaxes = by_class
            .entry(&file.meta.media_storage_sop_class_uid)
            .or_default();
        if !syntaxes.contains(&file.meta.transfer_syntax_uid.as_str()) {
            syntaxes.push(&file.meta.transfer_syntax_uid);
        }
    }
    let mut contexts = Vec::new();
    for (sop_class, syntaxes) in by_class {
        match proposal {
            TransferSyntaxProposal::Only(ts) => {
                contexts.push(ProposedContext::new(sop_class, [ts.as_str()]))
            }
            TransferSyntaxProposal::AsFiles => {
                for ts in &syntaxes {
                    contexts.push(ProposedContext::new(sop_class, [*ts]));
                }
                if syntaxes
                    .iter()
                    .any(|ts| transfer_syntax::is_uncompressed(ts))
                {
                    contexts.push(ProposedContext::new(sop_class, CONVERTIBLE));
                }
            }
        }
    }
    contexts
}

/// Files up to this size are read whole; larger ones are streamed in pieces.
const READ_WHOLE_BELOW: u64 = READ_PIECE as u64;
/// Files read ahead of the one being sent.
const FILES_AHEAD: usize = 4;

/// How one file goes out: on which context, with which command, and how its data set is read.
struct Plan {
    presentation_context_id: u8,
    request: StoreRequest,
    /// The transfer syntax to convert to, when the file's own was not accepted.
    converted_to: Option<String>,
}

/// Chooses the context for `file` — its own transfer syntax if accepted, else an accepted
/// uncompressed one to convert to (PS3.4 §B.4.1). Reads nothing.
fn plan(
    association: &Association,
    file: &StoreFile,
    move_originator: Option<(String, u16)>,
) -> Result<Plan, StoreFileError> {
    let sop_class = &file.meta.media_storage_sop_class_uid;
    let file_ts = &file.meta.transfer_syntax_uid;
    let storage_contexts = || {
        association
            .accepted_contexts(sop_class, crate::Role::Scu)
            .filter_map(|c| c.transfer_syntax.clone().map(|ts| (c.id, ts)))
    };
    let request = file.request(move_originator);
    if let Some((id, _)) = storage_contexts().find(|(_, ts)| ts == file_ts) {
        return Ok(Plan {
            presentation_context_id: id,
            request,
            converted_to: None,
        });
    }
    let Some((id, target)) =
        storage_contexts().find(|(_, ts)| transfer_syntax::is_uncompressed(ts))
    else {
        if association
            .negotiated()
            .accepted()
            .any(|c| &c.abstract_syntax == sop_class)
        {
            return Err(StoreFileError::CannotConvert {
                transfer_syntax_uid: file_ts.clone(),
            });
        }
        return Err(StoreFileError::NoContext {
            sop_class_uid: sop_class.clone(),
        });
    };
    if !transfer_syntax::is_uncompressed(file_ts) {
        return Err(StoreFileError::CannotConvert {
            transfer_syntax_uid: file_ts.clone(),
        });
    }
    Ok(Plan {
        presentation_context_id: id,
        request,
        converted_to: Some(target),
    })
}

/// Reads the data sets of `files` (those with a plan, each as `Some(target)` to convert to, or
/// `None`) in order on the blocking pool, a few files ahead of the sender: small files whole,
/// large ones as a stream of pieces read as they are sent. One blocking task for the batch.
fn load_ahead(
    files: Vec<(usize, StoreFile, Option<String>)>,
) -> mpsc::Receiver<(usize, Result<Source, StoreFileError>)> {
    let (sender, receiver) = mpsc::channel(FILES_AHEAD);
    tokio::task::spawn_blocking(move || {
        for (index, file, convert_to) in files {
            let loaded = match convert_to {
                Some(target) => {
                    convert_file(&file, &target).map(|data| Source::Memory(data.into()))
                }
                None if file.data_length < READ_WHOLE_BELOW => {
                    read_whole(&file).map(|data| Source::Memory(data.into()))
                }
                None => {
                    // Handed over first, then fed here as the sender takes the pieces.
                    let (pieces, receiver) = mpsc::channel(PIECES_AHEAD);
                    let source = Source::Pieces {
                        pieces: receiver,
                        length: file.data_length,
                    };
                    if sender.blocking_send((index, Ok(source))).is_err() {
                        return;
                    }
                    feed_pieces(&file.path, file.data_offset, file.data_length, &pieces);
                    continue;
                }
            };
            if sender.blocking_send((index, loaded)).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Reads a file's data set into memory (blocking).
fn read_whole(file: &StoreFile) -> Result<Vec<u8>, StoreFileError> {
    let read_error = |source| StoreFileError::Read {
        path: file.path.clone(),
        source,
    };
    let mut reader = File::open(&file.path).map_err(read_error)?;
    reader
        .seek(SeekFrom::Start(file.data_offset))
        .map_err(read_error)?;
    let mut data = Vec::with_capacity(file.data_length as usize);
    reader
        .take(file.data_length)
        .read_to_end(&mut data)
        .map_err(read_error)?;
    if (data.len() as u64) < file.data_length {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file ended early",
        )));
    }
    Ok(data)
}

/// Reads a file's data set and re-encodes it in `target` (blocking).
fn convert_file(file: &StoreFile, target: &str) -> Result<Vec<u8>, StoreFileError> {
    let data = read_whole(file)?;
    let from = &file.meta.transfer_syntax_uid;
    convert::transcode(&data, from, target, &ScanLimits::default()).map_err(|e| {
        StoreFileError::Conversion {
            from: from.clone(),
            to: target.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Sends one Part 10 file on an established association: as it is when its transfer syntax was
/// accepted, converted when it is uncompressed and another uncompressed syntax was accepted.
pub async fn store_file(
    association: &Association,
    file: &StoreFile,
    move_originator: Option<(String, u16)>,
) -> Result<StoreOutcome, StoreFileError> {
    let mut outcome = Err(StoreFileError::NotSent);
    store_files(
        association,
        std::slice::from_ref(file),
        move_originator,
        |_, result| outcome = result,
    )
    .await;
    outcome
}

/// Sends `files` on one association, reporting each file's outcome to `on_outcome` as its
/// response comes. Requests are pipelined up to the asynchronous operations window the peer
/// granted; whatever the window, the next files are read (on the blocking pool) while earlier
/// ones go out and their responses are awaited. Stops early only when the association is gone;
/// then every file not sent is reported with [`StoreFileError::NotSent`].
pub async fn store_files(
    association: &Association,
    files: &[StoreFile],
    move_originator: Option<(String, u16)>,
    mut on_outcome: impl FnMut(&StoreFile, Result<StoreOutcome, StoreFileError>),
) {
    let plans: Vec<Result<Plan, StoreFileError>> = files
        .iter()
        .map(|file| plan(association, file, move_originator.clone()))
        .collect();
    let mut loaded = load_ahead(
        plans
            .iter()
            .zip(files)
            .enumerate()
            .filter_map(|(index, (plan, file))| {
                let plan = plan.as_ref().ok()?;
                Some((index, file.clone(), plan.converted_to.clone()))
            })
            .collect(),
    );
    let mut in_flight = FuturesOrdered::new();
    for (index, (file, plan)) in files.iter().zip(plans).enumerate() {
        let plan = match plan {
            Ok(plan) => plan,
            Err(error) => {
                on_outcome(file, Err(error));
                continue;
            }
        };
        let source = match loaded.recv().await {
            Some((loaded_index, source)) if loaded_index == index => source,
            _ => Err(StoreFileError::NotSent),
        };
        let source = match source {
            Ok(source) => source,
            Err(error) => {
                on_outcome(file, Err(error));
                continue;
            }
        };
        let converted_to = plan.converted_to;
        let message_id = association.next_message_id();
        let sending = send_store(
            association,
            plan.presentation_context_id,
            plan.request.to_message(message_id),
            source,
        );
        tokio::pin!(sending);
        let sent = loop {
            tokio::select! {
                biased;
                Some((done, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    on_outcome(&files[done], outcome);
                }
                sent = &mut sending => break sent,
            }
        };
        match sent {
            Ok(responses) => in_flight.push_back(async move {
                let outcome = match responses.last().await {
                    Ok(response) => store_response(response, message_id)
                        .map(|response| StoreOutcome {
                            response,
                            converted_to,
                        })
                        .map_err(StoreFileError::from),
                    Err(error) => Err(StoreFileError::from(error)),
                };
                (index, outcome)
            }),
            Err(error) => {
                let gone = error.ends_association();
                on_outcome(file, Err(error.into()));
                if gone {
                    while let Some((done, outcome)) = in_flight.next().await {
                        on_outcome(&files[done], outcome);
                    }
                    for rest in &files[index + 1..] {
                        on_outcome(rest, Err(StoreFileError::NotSent));
                    }
                    return;
                }
            }
        }
    }
    while let Some((done, outcome)) = in_flight.next().await {
        on_outcome(&files[done], outcome);
    }
}

/// Lists the files under `paths` (folders recursively), sorted, for a batch.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        collect_into(path, &mut files)?;
    }
    Ok(files)
}

fn collect_into(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            collect_into(&entry, files)?;
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}
