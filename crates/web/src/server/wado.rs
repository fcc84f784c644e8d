//! WADO-RS Retrieve Instances (PS3.18 10.4: the Study, Series and Instance resources as
//! `multipart/related; type="application/dicom"`), streamed from the archive's files.
//!
//! The instances are those the index holds below the UIDs of the URL (the Study Root C-MOVE
//! query a C-GET or C-MOVE would make). An instance sent in its stored transfer syntax is its
//! Part 10 file, read in 64 KiB pieces as the body is sent, up to the end of the data set the
//! index recorded; one sent in another is a new File Meta Information (Transfer Syntax UID
//! changed, Media Storage SOP Class and Instance UIDs kept, dimsum's implementation UID) and the
//! data set converted by [`crate::transcode`] chunk by chunk on the blocking pool. A file that
//! ends sooner than recorded, or a conversion that fails on the way, ends the body with an
//! error (no closing delimiter), so a client never takes a truncated instance for a complete
//! one.
//!
//! Transfer syntaxes (PS3.18 8.7.3.5.2, 8.7.5, Table 8.7.2-1): each `Accept` range that
//! multipart/related `application/dicom` falls in names one (`*`: as stored; none: Explicit VR
//! Little Endian, as is no `Accept` at all). Of the ranges of the highest weight, the one every
//! instance can be sent in wins, the one converting the fewest instances first (as stored beats
//! converted); if none can, the next weight is tried. Uncompressed instances are re-encoded to
//! any uncompressed syntax, compressed ones decoded to one; compressing is not done, so a
//! compressed syntax other than the stored one is 406, as is a syntax this server cannot
//! decode. The response's `transfer-syntax` parameter names the syntax when every part has the
//! same, and each part's Content-Type names its own. The first instance to convert is opened
//! before the response starts, so a refusal (422 for a limit or an object that cannot be
//! decoded) is a status.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::part10::{self, FileMeta};
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_net::ul::uids::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::{IndexError, IndexedInstance};

use super::{SharedState, WebError, accept_of, resource_of};
use crate::multipart::{ContentType, Encoder, Part, PartHeaders};
use crate::pixel::PixelLimits;
use crate::resource::Resource;
use crate::transcode::{self, Conversion, StoredDataSet, TranscodeError, Transcoder};

/// Explicit VR Little Endian, the default transfer syntax of `application/dicom` (PS3.18
/// 8.7.3.5.2).
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// The size of the pieces a file is read in.
const READ_CHUNK: usize = 1024 * 1024;

/// `GET {root}/studies/{study}`, `…/series/{series}`, `…/instances/{instance}`.
pub(super) async fn retrieve_resource(
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (level, uids) = match resource_of(&uri)? {
        Resource::Study(study) => ("STUDY", [Some(study), None, None]),
        Resource::Series(study, series) => ("SERIES", [Some(study), Some(series), None]),
        Resource::Instance(study, series, instance) => {
            ("IMAGE", [Some(study), Some(series), Some(instance)])
        }
        other => {
            return Err(WebError::NotFound(format!(
                "{other} is not a study, series or instance"
            )));
        }
    };
    retrieve(&state, &headers, level, uids).await
}

/// What the client accepts of `application/dicom` (PS3.18 8.7.5): a transfer syntax, or
/// `*` (as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Stored,
    Syntax(String),
}

impl Wanted {
    /// How `instance` is sent for this choice.
    fn plan(&self, instance: &IndexedInstance) -> Result<Conversion, TranscodeError> {
        match self {
            Wanted::Stored => Ok(Conversion::AsStored),
            Wanted::Syntax(uid) => transcode::plan(&instance.transfer_syntax_uid, uid),
        }
    }
}

/// The transfer syntaxes asked for by `Accept` (PS3.18 8.7.3.5.2, 8.7.5), grouped by weight,
/// most preferred first: each range that multipart/related `application/dicom` falls in, with
/// its `transfer-syntax` (none: Explicit VR Little Endian). No `Accept` is Explicit VR Little
/// Endian.
fn negotiate(headers: &HeaderMap, state: &SharedState) -> Result<Vec<Vec<Wanted>>, WebError> {
    let Some(accept) = accept_of(headers, state, None)? else {
        return Ok(vec![vec![Wanted::Syntax(
            EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
        )]]);
    };
    let mut groups: Vec<(u16, Vec<Wanted>)> = Vec::new();
    for range in accept.preferred() {
        let media = &range.media_type;
        let multipart = media.is("multipart", "related") || media.is("multipart", "*");
        let any = media.is("*", "*");
        if !(multipart || any) {
            continue;
        }
        if multipart
            && let Some(related) = media.parameter("type")
            && !related.eq_ignore_ascii_case("application/dicom")
        {
            continue;
        }
        let wanted = match media.parameter("transfer-syntax") {
            Some("*") => Wanted::Stored,
            Some(uid) => Wanted::Syntax(uid.to_owned()),
            None => Wanted::Syntax(EXPLICIT_VR_LITTLE_ENDIAN.to_owned()),
        };
        match groups.last_mut() {
            Some((quality, group)) if *quality == range.quality => {
                if !group.contains(&wanted) {
                    group.push(wanted);
                }
            }
            _ => groups.push((range.quality, vec![wanted])),
        }
    }
    if groups.is_empty() {
        return Err(WebError::NotAcceptable(format!(
            "this resource is sent as multipart/related; type=\"application/dicom\" only, which \
             \"{accept}\" does not accept"
        )));
    }
    Ok(groups.into_iter().map(|(_, group)| group).collect())
}

/// The transfer syntax the instances are sent in, and how each gets there: the first group of
/// equally preferred choices with one that every instance can be sent in wins, and within it
/// the choice that converts the fewest instances (as stored beats converted), then the first
/// named. 406 when no choice can be produced for every instance, saying why for the most
/// preferred.
fn choose(
    groups: Vec<Vec<Wanted>>,
    instances: &[IndexedInstance],
) -> Result<(Wanted, Vec<Conversion>), WebError> {
    let mut first_refusal: Option<(String, TranscodeError)> = None;
    for group in groups {
        let mut best: Option<(usize, Wanted, Vec<Conversion>)> = None;
        for wanted in group {
            let plans = instances
                .iter()
                .map(|instance| {
                    wanted
                        .plan(instance)
                        .map_err(|error| (instance.sop_instance_uid.clone(), error))
                })
                .collect::<Result<Vec<_>, _>>();
            match plans {
                Ok(plans) => {
                    let converted = plans
                        .iter()
                        .filter(|plan| **plan != Conversion::AsStored)
                        .count();
                    if best.as_ref().is_none_or(|(fewest, ..)| converted < *fewest) {
                        best = Some((converted, wanted, plans));
                    }
                }
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if let Some((_, wanted, plans)) = best {
            return Ok((wanted, plans));
        }
    }
    Err(match first_refusal {
        Some((instance, error)) => WebError::NotAcceptable(format!(
            "instance {instance} cannot be sent in any transfer syntax accepted: {error}"
        )),
        None => WebError::NotAcceptable("no transfer syntax accepted".to_owned()),
    })
}

async fn retrieve(
    state: &SharedState,
    headers: &HeaderMap,
    level: &str,
    [study, series, instance]: [Option<String>; 3],
) -> Result<Response, WebError> {
    let groups = negotiate(headers, state)?;
    let mut keys = InMemDicomObject::new_empty();
    keys.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for (tag, value) in [
        (tags::STUDY_INSTANCE_UID, study),
        (tags::SERIES_INSTANCE_UID, series),
        (tags::SOP_INSTANCE_UID, instance),
    ] {
        if let Some(value) = value {
            keys.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(value)));
        }
    }
    let plan = QueryPlan::new(QueryModel::StudyRoot, QueryService::Move, keys)
        .map_err(|failure| WebError::BadRequest(failure.comment))?
        .with_options(state.archive.config().matching);
    let instances = state
        .archive
        .index()
        .instances(plan)
        .await
        .map_err(index_error)?;
    if instances.is_empty() {
        return Err(WebError::NotFound(format!(
            "no instances at this {} level",
            level.to_ascii_lowercase()
        )));
    }
    let (wanted, plans) = choose(groups, &instances)?;
    let limits = Arc::new(Limits {
        scan: state.config.scan_limits,
        pixel: state.config.pixel_limits,
    });

    // The syntax of each part; the response names it when all are the same.
    let syntaxes: Vec<String> = instances
        .iter()
        .map(|instance| match &wanted {
            Wanted::Stored => trim_uid(&instance.transfer_syntax_uid).to_owned(),
            Wanted::Syntax(uid) => uid.clone(),
        })
        .collect();
    let common = syntaxes
        .first()
        .filter(|first| syntaxes.iter().all(|syntax| syntax == *first))
        .cloned();

    // The first instance to convert is opened before the response starts, so that a refusal
    // (a limit, an object that cannot be decoded) is a status rather than a cut body.
    let mut opened = None;
    if let Some(index) = plans.iter().position(|plan| *plan != Conversion::AsStored) {
        let stored = stored_data_set(&instances[index]);
        let target = syntaxes[index].clone();
        let work_limits = limits.clone();
        let transcoder = tokio::task::spawn_blocking(move || {
            Transcoder::open(&stored, &target, &work_limits.scan, &work_limits.pixel)
        })
        .await
        .map_err(|error| WebError::Internal(format!("the conversion task failed: {error}")))?
        .map_err(|error| {
            transcode_error(
                &format!("instance {}", instances[index].sop_instance_uid),
                error,
            )
        })?;
        opened = Some((index, transcoder));
    }

    let dicom = ContentType::new("application", "dicom")
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let encoder = Encoder::new(dicom.clone());
    let mut content_type = encoder.content_type();
    if let Some(uid) = &common {
        content_type = content_type
            .with_parameter("transfer-syntax", uid)
            .map_err(|error| WebError::Internal(error.to_string()))?;
    }
    let mut parts = Vec::with_capacity(instances.len());
    for (index, ((instance, plan), syntax)) in
        instances.into_iter().zip(plans).zip(syntaxes).enumerate()
    {
        let part_type = dicom
            .clone()
            .with_parameter("transfer-syntax", &syntax)
            .map_err(|error| WebError::Internal(error.to_string()))?;
        let headers = PartHeaders::new(part_type);
        let part = if plan == Conversion::AsStored {
            let location = &instance.location;
            let length = location
                .data_set_offset
                .saturating_add(location.data_set_length);
            Part::stream(headers, file_stream(location.path.clone(), length))
        } else {
            let meta = part10::encode_header(&FileMeta {
                media_storage_sop_class_uid: instance.sop_class_uid.clone(),
                media_storage_sop_instance_uid: instance.sop_instance_uid.clone(),
                transfer_syntax_uid: syntax.clone(),
                implementation_class_uid: IMPLEMENTATION_CLASS_UID.to_owned(),
                implementation_version_name: Some(IMPLEMENTATION_VERSION_NAME.to_owned()),
                source_application_entity_title: None,
            })
            .map_err(|error| {
                WebError::Internal(format!(
                    "the file meta of instance {}: {error}",
                    instance.sop_instance_uid
                ))
            })?;
            let start = match opened.take() {
                Some((opened_index, transcoder)) if opened_index == index => {
                    Converted::Open(Box::new(transcoder))
                }
                other => {
                    opened = other;
                    Converted::Pending {
                        stored: stored_data_set(&instance),
                        target: syntax,
                        limits: limits.clone(),
                    }
                }
            };
            Part::stream(headers, converted_stream(Bytes::from(meta), start))
        };
        parts.push(part);
    }
    let body = read_ahead(encoder.encode(stream::iter(parts)));
    let content_type = HeaderValue::from_str(&content_type.to_string())
        .map_err(|error| WebError::Internal(error.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// How many pieces of a retrieval's body are made ahead of the connection's writes.
const READ_AHEAD_PIECES: usize = 4;

/// `body` made by a task of its own, up to [`READ_AHEAD_PIECES`] pieces ahead of the writes,
/// so that the next piece of a file is read while the current one is sent. The task stops at
/// the first error (passed on) or when the response is dropped.
fn read_ahead<S, E>(body: S) -> impl futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD_PIECES);
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(piece) = body.next().await {
            let failed = piece.is_err();
            if sender.send(piece).await.is_err() || failed {
                break;
            }
        }
    });
    stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|piece| (piece, receiver))
    })
}

/// The limits conversions work within.
struct Limits {
    scan: ScanLimits,
    pixel: PixelLimits,
}

/// Where an instance's data set is, as the index says.
fn stored_data_set(instance: &IndexedInstance) -> StoredDataSet {
    StoredDataSet {
        path: instance.location.path.clone(),
        offset: instance.location.data_set_offset,
        length: instance.location.data_set_length,
        transfer_syntax: trim_uid(&instance.transfer_syntax_uid).to_owned(),
    }
}

fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

/// The answer to a [`TranscodeError`], by [`TranscodeError::status`].
fn transcode_error(what: &str, error: TranscodeError) -> WebError {
    let text = format!("{what}: {error}");
    match error.status() {
        400 => WebError::BadRequest(text),
        404 => WebError::NotFound(text),
        406 => WebError::NotAcceptable(text),
        422 => WebError::Unprocessable(text),
        _ => WebError::Internal(text),
    }
}

/// A converted part's state: opened before the response, or to be opened when its turn comes.
enum Converted {
    Open(Box<Transcoder>),
    Pending {
        stored: StoredDataSet,
        target: String,
        limits: Arc<Limits>,
    },
}

/// A converted instance: its new File Meta Information, then the chunks of its
/// [`Transcoder`], each made on the blocking pool as the body is read (one at a time: at most
/// a [`transcode::CHUNK`] of pixel data or one decoded frame in memory). A failure ends the
/// part with an error, so the body ends without its closing delimiter.
fn converted_stream(
    meta: Bytes,
    start: Converted,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let chunks = stream::try_unfold(Some(start), |state| async move {
        let Some(state) = state else {
            return Ok(None);
        };
        let made = tokio::task::spawn_blocking(move || {
            let mut transcoder = match state {
                Converted::Open(transcoder) => transcoder,
                Converted::Pending {
                    stored,
                    target,
                    limits,
                } => Box::new(Transcoder::open(
                    &stored,
                    &target,
                    &limits.scan,
                    &limits.pixel,
                )?),
            };
            let chunk = transcoder.read_chunk()?;
            Ok::<_, TranscodeError>(chunk.map(|chunk| (chunk, transcoder)))
        })
        .await
        .map_err(|error| io::Error::other(format!("the conversion task failed: {error}")))?;
        match made {
            Ok(Some((chunk, transcoder))) => Ok(Some((chunk, Some(Converted::Open(transcoder))))),
            Ok(None) => Ok(None),
            Err(error) => Err(io::Error::other(error.to_string())),
        }
    });
    stream::once(async move { Ok(meta) }).chain(chunks)
}

/// The first `length` bytes of the file at `path` (a path from the index), as pieces of at
/// most [`READ_CHUNK`] bytes; a file shorter than that is an error.
///
/// The file is mapped into memory (on the blocking pool, its pages faulted in at once) and the
/// pieces are slices of the mapping: the socket is written from the page cache with no copy
/// into a buffer of ours and no thread hand-off per piece (reading into buffers spent a third
/// of the server's time copying and a quarter switching threads). The archive writes its files
/// once (a temporary file renamed into place) and never changes one in place: a replaced or
/// deleted file's mapping stays valid. A file truncated in place by another program while it
/// is being sent would end the process (SIGBUS), as it would any program that maps files.
fn file_stream(
    path: PathBuf,
    length: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let map = async move {
        tokio::task::spawn_blocking(move || map_file(&path, length))
            .await
            .map_err(|error| io::Error::other(format!("the file task failed: {error}")))?
    };
    stream::once(map)
        .map(|mapped| match mapped {
            Ok(bytes) => {
                let pieces = (0..bytes.len())
                    .step_by(READ_CHUNK)
                    .map(move |start| Ok(bytes.slice(start..bytes.len().min(start + READ_CHUNK))));
                stream::iter(pieces.collect::<Vec<_>>()).left_stream()
            }
            Err(error) => stream::once(async move { Err(error) }).right_stream(),
        })
        .flatten()
}

/// The first `length` bytes of the file at `path`, mapped (see [`file_stream`]).
fn map_file(path: &std::path::Path, length: u64) -> Result<Bytes, io::Error> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} ends {} bytes before the end the index recorded",
                path.display(),
                length - size
            ),
        ));
    }
    let length = usize::try_from(length)
        .map_err(|_| io::Error::other(format!("{} is too large to map", path.display())))?;
    if length == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the mapping is read-only and the archive never modifies a stored file in place
    // (see `file_stream`); its length was checked against the file's size just above.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .len(length)
            .populate()
            .map(&file)?
    };
    Ok(Bytes::from_owner(map))
}

pub(super) fn index_error(error: IndexError) -> WebError {
    match error {
        IndexError::WriterGone => WebError::Unavailable(error.to_string()),
        other => WebError::Internal(other.to_string()),
    }
}
