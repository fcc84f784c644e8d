//! Storage Service Class user (PS3.4 Annex B): C-STORE of data sets, Part 10 files and the
//! instances of a retrieval.
//!
//! One sending engine, [`send_instances`], carries every batch: the Store SCU's files
//! ([`store_files`]) and the C-STORE sub-operations of the C-GET and C-MOVE SCPs. It takes the
//! instances as a stream and reports each outcome as its response arrives. For each instance it
//! chooses a presentation context — its own transfer syntax when accepted, else an accepted
//! uncompressed one to convert an uncompressed data set to (compressed data cannot be) — reads
//! the data sets a few instances ahead on the blocking pool (small ones whole, large ones as a
//! stream of pieces while they are sent, so memory stays bounded whatever the object size), and
//! pipelines the requests up to the asynchronous operations window the peer granted; with no
//! window, the next data set is read while the response to the previous one is awaited.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::future::{FusedFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use dimsum_dataset::part10::{self, FileMeta};
use dimsum_dataset::{convert, scan::ScanLimits, transfer_syntax};
use dimsum_dimse::message::{CStoreRq, CStoreRsp, Message, Priority};
use dimsum_ul::negotiation::ProposedContext;
use dimsum_ul::uids::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use crate::{Association, DataSetWriter, Error, Responses};

/// The size of the pieces a file is read in.
const READ_PIECE: usize = 1024 * 1024;
/// Pieces read ahead of the network, per file being sent.
const PIECES_AHEAD: usize = 4;
/// Data sets up to this size are read whole (and sent with their command in one step); larger
/// ones are streamed in pieces. At most the piece size [`Association::request`] sends with a
/// command at once, so that starting such a request is all or nothing.
const READ_WHOLE_BELOW: u64 = READ_PIECE as u64;
/// Data sets read ahead of the one being sent.
const FILES_AHEAD: usize = 4;
/// Instances taken from the stream at once when they are ready (one hop to the reader).
const TAKEN_AT_ONCE: usize = 8;
/// Outcomes [`store_files`] lets wait for its caller: also the most requests it has in flight.
const OUTCOMES_QUEUED: usize = 64;

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
    let started = start_store(
        association,
        presentation_context_id,
        request.to_message(message_id),
        source,
    )
    .await?;
    let responses = match started {
        Started::Sent(responses) => responses,
        Started::Writing(responses, writer, source) => {
            finish_store(writer, source).await?;
            responses
        }
    };
    store_response(responses.last().await?, message_id)
}

/// A C-STORE-RQ whose command went out.
enum Started {
    /// With its whole data set.
    Sent(Responses),
    /// The data set is still to be written.
    Writing(Responses, DataSetWriter, Source),
}

/// Sends a C-STORE-RQ's command once the asynchronous operations window has room, with its
/// data set when that is in memory and small. All or nothing: dropped before it completes, it
/// has sent nothing.
async fn start_store(
    association: &Association,
    presentation_context_id: u8,
    message: Message,
    source: Source,
) -> Result<Started, Error> {
    match source {
        Source::Memory(data) if (data.len() as u64) <= READ_WHOLE_BELOW => {
            let responses = association
                .request(presentation_context_id, message, Some(data))
                .await?;
            Ok(Started::Sent(responses))
        }
        source => {
            let (writer, responses) = association
                .start_request(presentation_context_id, message)
                .await?;
            let Some(writer) = writer else {
                return Err(Error::UnexpectedMessage(
                    "a C-STORE-RQ without a data set".into(),
                ));
            };
            Ok(Started::Writing(responses, writer, source))
        }
    }
}

/// Sends the data set of a C-STORE-RQ whose command went out; a failing source aborts the
/// association (dropping the writer) and gives [`Error::DataSource`].
async fn finish_store(mut writer: DataSetWriter, source: Source) -> Result<(), Error> {
    let (mut pieces, length) = match source {
        Source::Memory(data) => return writer.finish(data).await,
        Source::Pieces { pieces, length } => (pieces, length),
    };
    let mut remaining = length;
    loop {
        match pieces.recv().await {
            Some(Ok(piece)) => {
                remaining = remaining.saturating_sub(piece.len() as u64);
                if remaining == 0 {
                    return writer.finish(piece).await;
                }
                writer.write(piece).await?;
            }
            Some(Err(source)) => return Err(Error::DataSource(source)),
            None if remaining == 0 => return writer.finish(Bytes::new()).await,
            None => {
                return Err(Error::DataSource(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the data set ended early",
                )));
            }
        }
    }
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
    tokio::task::spawn_blocking(move || match open_range(&path, offset, length) {
        Ok(file) => feed_pieces(file, &path, length, &sender),
        Err(error) => {
            let _ = sender.blocking_send(Err(error));
        }
    });
    receiver
}

/// Opens `path` at `offset`, making sure that `length` bytes follow (blocking).
fn open_range(path: &Path, offset: u64, length: u64) -> std::io::Result<File> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{size} bytes, fewer than the {length} of the data set from byte {offset}"),
        ));
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Reads `length` bytes of `file` into `sender`, piece by piece (blocking); an error is sent as
/// the last item.
fn feed_pieces(
    file: File,
    path: &Path,
    length: u64,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut file = file.take(length);
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

/// Where the data set of an instance to send is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceData {
    /// In memory.
    Memory(Bytes),
    /// `length` bytes of a file from `offset` (the data set of a Part 10 file, after its meta).
    File {
        path: PathBuf,
        offset: u64,
        length: u64,
    },
}

/// An instance to send with a C-STORE (PS3.4 B.2, PS3.7 §9.1.1): its identity, the transfer
/// syntax its data set is encoded in, and where that data set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The transfer syntax `data` is encoded in; it is sent on a context that accepted it, or
    /// converted to another uncompressed one when it is uncompressed and only that was accepted.
    pub transfer_syntax_uid: String,
    pub data: InstanceData,
}

/// Why one instance could not be stored; the association goes on (unlike [`Error`]).
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
    /// Reported by [`send_instances`] (never by [`store_files`], which reports the error
    /// itself): the association ended as the request was to go out, and nothing of it was
    /// sent.
    #[error("not sent: {0}")]
    NotStarted(Error),
}

impl StoreFileError {
    /// Whether the association is gone (the rest of a batch cannot go on it).
    pub fn ends_association(&self) -> bool {
        match self {
            StoreFileError::Network(error) | StoreFileError::NotStarted(error) => {
                error.ends_association()
            }
            StoreFileError::NotSent => true,
            _ => false,
        }
    }
}

/// What happened to one stored instance.
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

    /// The instance this file holds, as the sending engine takes it.
    pub fn instance(&self) -> StoreInstance {
        StoreInstance {
            sop_class_uid: self.meta.media_storage_sop_class_uid.clone(),
            sop_instance_uid: self.meta.media_storage_sop_instance_uid.clone(),
            transfer_syntax_uid: self.meta.transfer_syntax_uid.clone(),
            data: InstanceData::File {
                path: self.path.clone(),
                offset: self.data_offset,
                length: self.data_length,
            },
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
    propose_contexts_for(
        files.iter().map(|file| {
            (
                file.meta.media_storage_sop_class_uid.as_str(),
                file.meta.transfer_syntax_uid.as_str(),
            )
        }),
        proposal,
    )
}

/// The presentation contexts to propose for sending instances of these (SOP class UID,
/// transfer syntax UID) pairs.
pub fn propose_contexts_for<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    proposal: &TransferSyntaxProposal,
) -> Vec<ProposedContext> {
    let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (sop_class, ts) in pairs {
        let syntaxes = by_class.entry(sop_class).or_default();
        if !syntaxes.contains(&ts) {
            syntaxes.push(ts);
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

/// How one instance goes out: on which context, with which command, and how its data set is
/// read.
struct Plan {
    presentation_context_id: u8,
    request: StoreRequest,
    /// The transfer syntax to convert to, when the instance's own was not accepted.
    converted_to: Option<String>,
}

/// Chooses the context for `instance` — its own transfer syntax if accepted, else an accepted
/// uncompressed one to convert to (PS3.4 §B.4.1). Reads nothing.
fn plan(
    association: &Association,
    instance: &StoreInstance,
    move_originator: Option<&(String, u16)>,
) -> Result<Plan, StoreFileError> {
    let sop_class = &instance.sop_class_uid;
    let own_ts = &instance.transfer_syntax_uid;
    let storage_contexts = || {
        association
            .accepted_contexts(sop_class, crate::Role::Scu)
            .filter_map(|c| c.transfer_syntax.clone().map(|ts| (c.id, ts)))
    };
    let request = StoreRequest {
        sop_class_uid: sop_class.clone(),
        sop_instance_uid: instance.sop_instance_uid.clone(),
        priority: Priority::Medium,
        move_originator: move_originator.cloned(),
    };
    if let Some((id, _)) = storage_contexts().find(|(_, ts)| ts == own_ts) {
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
                transfer_syntax_uid: own_ts.clone(),
            });
        }
        return Err(StoreFileError::NoContext {
            sop_class_uid: sop_class.clone(),
        });
    };
    if !transfer_syntax::is_uncompressed(own_ts) {
        return Err(StoreFileError::CannotConvert {
            transfer_syntax_uid: own_ts.clone(),
        });
    }
    Ok(Plan {
        presentation_context_id: id,
        request,
        converted_to: Some(target),
    })
}

/// An instance with its plan, on its way to the reader.
struct Prepared {
    plan: Plan,
    /// The transfer syntax `data` is encoded in.
    transfer_syntax_uid: String,
    data: InstanceData,
}

/// An instance taken from the stream: planned, or why it cannot be sent.
type Taken<K> = (K, Result<Prepared, StoreFileError>);
/// An instance whose data set is ready to go (or why it cannot be).
type Loaded<K> = (K, Result<(Plan, Source), StoreFileError>);
/// The outcome of one instance, as [`send_instances`] reports it.
pub type Outcome<K> = (K, Result<StoreOutcome, StoreFileError>);

/// How a batch sent by [`send_instances`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    /// The stream ended and every instance taken from it was answered or failed on its own.
    Finished,
    /// `stop` fired, or nobody takes the outcomes any more: no more instances were taken, the
    /// requests sent were answered, the instances taken but not sent were dropped unreported.
    Stopped,
    /// The association ended: every instance taken and not sent was reported with
    /// [`StoreFileError::NotStarted`] (the one about to go out) or [`StoreFileError::NotSent`];
    /// the rest of the stream was left alone.
    AssociationEnded,
}

/// Sends the instances of `instances` with C-STORE on `association` and reports the outcome of
/// each, with its key, to `outcomes` as its response arrives (in the order responses arrive).
///
/// Requests are pipelined up to the asynchronous operations window the peer granted (and to the
/// capacity of `outcomes`: each request in flight holds a place there); whatever the window,
/// the next data sets are read on the blocking pool, a few instances ahead, while earlier ones
/// go out and their responses are awaited. An instance that cannot be sent (no usable context,
/// unreadable data) is reported and the batch goes on. `move_originator` goes on every request
/// (C-MOVE sub-operations). When `stop` fires, no more instances are taken and the stream is
/// dropped; a data set being sent is finished (it cannot be cut short) and the responses to the
/// requests sent are awaited.
pub async fn send_instances<K, S>(
    association: &Association,
    instances: S,
    move_originator: Option<(String, u16)>,
    stop: &CancellationToken,
    outcomes: mpsc::Sender<Outcome<K>>,
) -> BatchEnd
where
    K: Send + 'static,
    S: Stream<Item = (K, StoreInstance)>,
{
    let abandoned = Arc::new(AtomicBool::new(false));
    let (taken_sender, taken) = mpsc::channel(1);
    let mut loaded = load_ahead(taken, Arc::clone(&abandoned));
    let mut feeder = Box::pin(feed(association, instances, move_originator, taken_sender).fuse());
    let mut in_flight = FuturesUnordered::new();
    let mut permit = None;
    let end = loop {
        // A place for the outcome first, then the next instance ready to go.
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => break BatchEnd::Stopped,
            Some(()) = in_flight.next() => continue,
            () = &mut feeder, if !feeder.is_terminated() => continue,
            reserved = outcomes.clone().reserve_owned(), if permit.is_none() => match reserved {
                Ok(reserved) => {
                    permit = Some(reserved);
                    continue;
                }
                Err(_) => break BatchEnd::Stopped,
            },
            next = loaded.recv(), if permit.is_some() => next,
        };
        let (Some((key, ready)), Some(permit)) = (next, permit.take()) else {
            break BatchEnd::Finished;
        };
        let (plan, source) = match ready {
            Ok(ready) => ready,
            Err(error) => {
                permit.send((key, Err(error)));
                continue;
            }
        };
        let message_id = association.next_message_id();
        let starting = start_store(
            association,
            plan.presentation_context_id,
            plan.request.to_message(message_id),
            source,
        );
        tokio::pin!(starting);
        let started = loop {
            tokio::select! {
                biased;
                // Nothing was sent for this one yet: it stays unsent.
                () = stop.cancelled() => break None,
                Some(()) = in_flight.next() => {}
                () = &mut feeder, if !feeder.is_terminated() => {}
                started = &mut starting => break Some(started),
            }
        };
        let Some(started) = started else {
            break BatchEnd::Stopped;
        };
        let sent = match started {
            Err(error) if error.ends_association() => {
                permit.send((key, Err(StoreFileError::NotStarted(error))));
                break BatchEnd::AssociationEnded;
            }
            Ok(Started::Sent(responses)) => Ok(responses),
            Ok(Started::Writing(responses, writer, source)) => {
                let finishing = finish_store(writer, source);
                tokio::pin!(finishing);
                let finished = loop {
                    tokio::select! {
                        biased;
                        Some(()) = in_flight.next() => {}
                        () = &mut feeder, if !feeder.is_terminated() => {}
                        finished = &mut finishing => break finished,
                    }
                };
                finished.map(|()| responses)
            }
            Err(error) => Err(error),
        };
        match sent {
            Ok(responses) => in_flight.push(answered(
                responses,
                message_id,
                plan.converted_to,
                key,
                permit,
            )),
            Err(error) => {
                let gone = error.ends_association();
                permit.send((key, Err(error.into())));
                if gone {
                    break BatchEnd::AssociationEnded;
                }
            }
        }
    };
    // The stream is dropped here: nothing more is taken.
    drop(feeder);
    if end == BatchEnd::AssociationEnded {
        abandoned.store(true, Ordering::Relaxed);
    }
    while in_flight.next().await.is_some() {}
    if end == BatchEnd::AssociationEnded {
        while let Some((key, _)) = loaded.recv().await {
            if outcomes
                .send((key, Err(StoreFileError::NotSent)))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    end
}

/// Awaits the response to a C-STORE-RQ and reports it in the place kept for it.
async fn answered<K>(
    responses: Responses,
    message_id: u16,
    converted_to: Option<String>,
    key: K,
    permit: mpsc::OwnedPermit<Outcome<K>>,
) {
    let outcome = match responses.last().await {
        Ok(response) => store_response(response, message_id)
            .map(|response| StoreOutcome {
                response,
                converted_to,
            })
            .map_err(StoreFileError::from),
        Err(error) => Err(error.into()),
    };
    permit.send((key, outcome));
}

/// Takes the instances from the stream as the reader has room, plans each, and hands them to
/// the reader, several at once when several are ready. Cancel-safe: an instance taken from the
/// stream is in the reader's hands before this yields again.
async fn feed<K, S>(
    association: &Association,
    instances: S,
    move_originator: Option<(String, u16)>,
    taken: mpsc::Sender<Vec<Taken<K>>>,
) where
    S: Stream<Item = (K, StoreInstance)>,
{
    let chunks = instances.ready_chunks(TAKEN_AT_ONCE);
    tokio::pin!(chunks);
    // Room first, then the instances: dropped at any await, it holds none of them.
    while let Ok(room) = taken.reserve().await {
        let Some(chunk) = chunks.next().await else {
            return;
        };
        let chunk = chunk
            .into_iter()
            .map(|(key, instance)| {
                let prepared =
                    plan(association, &instance, move_originator.as_ref()).map(|plan| Prepared {
                        plan,
                        transfer_syntax_uid: instance.transfer_syntax_uid,
                        data: instance.data,
                    });
                (key, prepared)
            })
            .collect();
        room.send(chunk);
    }
}

/// Reads the data sets of the instances taken, in order, on the blocking pool, a few ahead of
/// the sender: small ones whole, large ones as a stream of pieces read as they are sent,
/// converted when their plan says so. One blocking task per batch. Once `abandoned` is set, the
/// instances still coming are passed on as not sent, unread.
fn load_ahead<K: Send + 'static>(
    mut taken: mpsc::Receiver<Vec<Taken<K>>>,
    abandoned: Arc<AtomicBool>,
) -> mpsc::Receiver<Loaded<K>> {
    let (sender, receiver) = mpsc::channel(FILES_AHEAD);
    tokio::task::spawn_blocking(move || {
        while let Some(chunk) = taken.blocking_recv() {
            for (key, prepared) in chunk {
                let prepared = match prepared {
                    Ok(_) if abandoned.load(Ordering::Relaxed) => Err(StoreFileError::NotSent),
                    prepared => prepared,
                };
                let loaded = prepared.and_then(|prepared| {
                    let Prepared {
                        plan,
                        transfer_syntax_uid,
                        data,
                    } = prepared;
                    load(data, &transfer_syntax_uid, plan.converted_to.as_deref())
                        .map(|load| (plan, load))
                });
                let (plan, path, file, length) = match loaded {
                    Err(error) => {
                        if sender.blocking_send((key, Err(error))).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok((plan, Load::Ready(source))) => {
                        if sender.blocking_send((key, Ok((plan, source)))).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok((plan, Load::Streamed { path, file, length })) => (plan, path, file, length),
                };
                // Handed over first, then fed here as the sender takes the pieces.
                let (pieces, receiver) = mpsc::channel(PIECES_AHEAD);
                let source = Source::Pieces {
                    pieces: receiver,
                    length,
                };
                if sender.blocking_send((key, Ok((plan, source)))).is_err() {
                    return;
                }
                feed_pieces(file, &path, length, &pieces);
            }
        }
    });
    receiver
}

/// A data set read for sending.
enum Load {
    /// In memory, whole.
    Ready(Source),
    /// Large: to be read in pieces while it is sent.
    Streamed {
        path: PathBuf,
        file: File,
        length: u64,
    },
}

/// Reads (or takes) a data set for sending, converting it to `convert_to` when given
/// (blocking).
fn load(
    data: InstanceData,
    transfer_syntax_uid: &str,
    convert_to: Option<&str>,
) -> Result<Load, StoreFileError> {
    let (path, offset, length) = match data {
        InstanceData::Memory(data) => {
            return match convert_to {
                None => Ok(Load::Ready(Source::Memory(data))),
                Some(target) => convert_data(&data, transfer_syntax_uid, target)
                    .map(|data| Load::Ready(Source::Memory(data))),
            };
        }
        InstanceData::File {
            path,
            offset,
            length,
        } => (path, offset, length),
    };
    let read_error = |source| StoreFileError::Read {
        path: path.clone(),
        source,
    };
    let file = open_range(&path, offset, length).map_err(read_error)?;
    match convert_to {
        Some(target) => {
            let data = read_whole(file, length).map_err(read_error)?;
            convert_data(&data, transfer_syntax_uid, target)
                .map(|data| Load::Ready(Source::Memory(data)))
        }
        None if length < READ_WHOLE_BELOW => read_whole(file, length)
            .map(|data| Load::Ready(Source::Memory(data.into())))
            .map_err(read_error),
        None => Ok(Load::Streamed { path, file, length }),
    }
}

/// Reads `length` bytes of an open file (blocking).
fn read_whole(file: File, length: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(length.min(READ_WHOLE_BELOW) as usize);
    file.take(length).read_to_end(&mut data)?;
    if (data.len() as u64) < length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file ended early",
        ));
    }
    Ok(data)
}

/// Re-encodes a data set from `from` to `to` (blocking).
fn convert_data(data: &[u8], from: &str, to: &str) -> Result<Bytes, StoreFileError> {
    convert::transcode(data, from, to, &ScanLimits::default())
        .map(Bytes::from)
        .map_err(|e| StoreFileError::Conversion {
            from: from.to_owned(),
            to: to.to_owned(),
            reason: e.to_string(),
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

/// Sends `files` on one association through [`send_instances`], reporting each file's outcome
/// to `on_outcome` as its response comes. Stops early only when the association is gone; then
/// every file not sent is reported with [`StoreFileError::NotSent`].
pub async fn store_files(
    association: &Association,
    files: &[StoreFile],
    move_originator: Option<(String, u16)>,
    mut on_outcome: impl FnMut(&StoreFile, Result<StoreOutcome, StoreFileError>),
) {
    let (sender, mut outcomes) = mpsc::channel(OUTCOMES_QUEUED);
    let instances = futures_util::stream::iter(files.iter().map(StoreFile::instance).enumerate());
    let never = CancellationToken::new();
    let mut reported = vec![false; files.len()];
    let sending = send_instances(association, instances, move_originator, &never, sender);
    let reporting = async {
        while let Some((index, outcome)) = outcomes.recv().await {
            let outcome = match outcome {
                Err(StoreFileError::NotStarted(error)) => Err(StoreFileError::Network(error)),
                outcome => outcome,
            };
            if let (Some(file), Some(seen)) = (files.get(index), reported.get_mut(index)) {
                *seen = true;
                on_outcome(file, outcome);
            }
        }
    };
    tokio::join!(sending, reporting);
    for (file, _) in files.iter().zip(&reported).filter(|(_, seen)| !**seen) {
        on_outcome(file, Err(StoreFileError::NotSent));
    }
}

/// Lists the files `paths` name, for a batch (as DCMTK's `storescu +sd +r` scans folders): a
/// file as it is (hidden or not: it was named), a folder (or a link to one) through
/// [`list_files`]; each group in its order, sorted within. A path that does not exist or cannot
/// be read is an error.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if std::fs::metadata(path)?.is_dir() {
            files.extend(list_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The files under the folder `root`, recursively, sorted: the one folder walk of the project
/// (the Storage SCU's batches, the archive's scans and checks, a worklist folder). Hidden
/// entries (a name starting with `.`, such as the temporary files of a Storage SCP still
/// receiving) are left out. Symbolic links are followed, to files and to folders, but a folder
/// is listed once, however many links lead to it: a link back to a folder being listed (a loop)
/// or to one listed already is skipped. A subfolder that cannot be read is reported and
/// skipped; only an unreadable `root` is an error. Blocking.
pub fn list_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    list_files_and_hidden(root, |_| false)
}

/// [`list_files`], with the hidden files whose name `wanted` accepts listed too (a Storage
/// SCP's temporary files, for the check that removes those a crash left).
pub fn list_files_and_hidden(
    root: &Path,
    wanted: impl Fn(&str) -> bool,
) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut listed = std::collections::HashSet::new();
    let mut folders = vec![root.to_path_buf()];
    let mut first = true;
    while let Some(folder) = folders.pop() {
        let entries = std::fs::canonicalize(&folder)
            .and_then(|real| Ok((listed.insert(real), std::fs::read_dir(&folder)?)));
        let entries = match entries {
            Ok((true, entries)) => entries,
            Ok((false, _)) => {
                tracing::debug!("{} was listed already (a link)", folder.display());
                continue;
            }
            Err(error) if first => return Err(error),
            Err(error) => {
                tracing::warn!("skipping folder {}: {error}", folder.display());
                continue;
            }
        };
        first = false;
        let mut subfolders = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::warn!("skipping an entry of {}: {error}", folder.display());
                    continue;
                }
            };
            let hidden = {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with('.').then(|| wanted(&name))
            };
            if hidden == Some(false) {
                continue;
            }
            let path = entry.path();
            let Ok(mut file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(target) => file_type = target.file_type(),
                    Err(error) => {
                        tracing::warn!("skipping {}: {error}", path.display());
                        continue;
                    }
                }
            }
            if file_type.is_dir() {
                if hidden.is_none() {
                    subfolders.push(path);
                }
            } else if file_type.is_file() {
                files.push(path);
            }
        }
        // In name order, so that which of two paths to one folder is listed is not left to
        // the order of the directory.
        subfolders.sort();
        folders.extend(subfolders.into_iter().rev());
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn names(root: &Path, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|path| {
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn listing_skips_hidden_entries_and_lists_each_folder_once_through_links() {
        let folder = tempfile::tempdir().expect("tempdir");
        let root = folder.path().join("root");
        let outside = folder.path().join("outside");
        fs::create_dir_all(root.join("a/b")).expect("dirs");
        fs::create_dir_all(root.join(".hidden")).expect("dirs");
        fs::create_dir_all(&outside).expect("dirs");
        for file in [
            "one",
            "a/two",
            "a/b/three",
            ".partial",
            ".hidden/four",
            "a/b/.x.part",
        ] {
            fs::write(root.join(file), b"x").expect("write");
        }
        fs::write(outside.join("five"), b"x").expect("write");
        // A loop back to the root, a second way to a/b, a link to a file, a link to a folder
        // outside, a link to a file outside, and a dangling link.
        symlink(&root, root.join("a/loop")).expect("link");
        symlink(root.join("a/b"), root.join("c")).expect("link");
        symlink(root.join("one"), root.join("a/link")).expect("link");
        symlink(&outside, root.join("d")).expect("link");
        symlink(outside.join("five"), root.join("six")).expect("link");
        symlink(root.join("missing"), root.join("dangling")).expect("link");
        let files = list_files(&root).expect("listed");
        assert_eq!(
            names(&root, &files),
            ["a/b/three", "a/link", "a/two", "d/five", "one", "six"]
        );
        assert!(list_files(&root.join("missing")).is_err());
        // Hidden files asked for are listed, wherever they are; hidden folders never entered.
        let wanted = |name: &str| name.ends_with(".part") || name == ".hidden";
        let files = list_files_and_hidden(&root, wanted).expect("listed");
        assert_eq!(
            names(&root, &files),
            [
                "a/b/.x.part",
                "a/b/three",
                "a/link",
                "a/two",
                "d/five",
                "one",
                "six"
            ]
        );
    }

    #[test]
    fn a_loop_of_folder_links_ends() {
        let folder = tempfile::tempdir().expect("tempdir");
        let root = folder.path();
        fs::create_dir_all(root.join("x")).expect("dirs");
        fs::create_dir_all(root.join("y")).expect("dirs");
        symlink(root.join("y"), root.join("x/to_y")).expect("link");
        symlink(root.join("x"), root.join("y/to_x")).expect("link");
        fs::write(root.join("y/file"), b"x").expect("write");
        let files = list_files(root).expect("listed");
        assert_eq!(names(root, &files), ["x/to_y/file"]);
    }

    #[test]
    fn a_batch_takes_named_files_as_they_are_and_folders_through_the_listing() {
        let folder = tempfile::tempdir().expect("tempdir");
        let root = folder.path();
        fs::create_dir_all(root.join("study/series")).expect("dirs");
        for file in [
            ".named",
            "study/b",
            "study/a",
            "study/series/c",
            "study/.tmp",
        ] {
            fs::write(root.join(file), b"x").expect("write");
        }
        symlink(root.join("study"), root.join("study/series/up")).expect("link");
        symlink(root.join("study"), root.join("linked")).expect("link");
        let files = collect_files(&[root.join(".named"), root.join("linked")]).expect("listed");
        assert_eq!(
            names(root, &files),
            [".named", "linked/a", "linked/b", "linked/series/c"]
        );
        assert!(collect_files(&[root.join("nothing")]).is_err());
    }
}
