//! WADO-RS Retrieve Instances (PS3.18 10.4: the Study, Series and Instance resources as
//! `multipart/related; type="application/dicom"`), streamed from the archive's files.
//!
//! The instances are those the index holds below the UIDs of the URL (the Study Root C-MOVE
//! query a C-GET or C-MOVE would make); each part is the instance's Part 10 file, read in
//! 64 KiB pieces as the body is sent, up to the end of the data set the index recorded. A file
//! that ends sooner than that ends the body with an error (no closing delimiter), so a client
//! never takes a truncated instance for a complete one.
//!
//! Transfer syntaxes (PS3.18 8.7.3.5.2): `transfer-syntax=*` sends what is stored; a named one
//! is sent when every instance is stored in it; none named means Explicit VR Little Endian.
//! Anything else is 406: conversion between transfer syntaxes is not implemented yet.

use std::io;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;

use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::{IndexError, IndexedInstance};

use super::{SharedState, WebError, resource_of};
use crate::multipart::{Accept, ContentType, Encoder, Part, PartHeaders};
use crate::resource::Resource;

/// Explicit VR Little Endian, the default transfer syntax of `application/dicom` (PS3.18
/// 8.7.3.5.2).
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// The size of the pieces a file is read in.
const READ_CHUNK: usize = 64 * 1024;

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
/// `None` for `*` (as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Stored,
    Syntax(String),
}

/// The transfer syntax asked for by `Accept` (PS3.18 8.7.3.5.2, 8.7.5): the first acceptable
/// range, most preferred first, that multipart/related `application/dicom` falls in.
fn negotiate(headers: &HeaderMap, state: &SharedState) -> Result<Wanted, WebError> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .map(|value| {
            value
                .to_str()
                .map_err(|_| WebError::BadRequest("the Accept header is not ASCII".to_owned()))
        })
        .collect::<Result<_, _>>()?;
    let joined = values.join(", ");
    if joined.trim().is_empty() {
        return Ok(Wanted::Syntax(EXPLICIT_VR_LITTLE_ENDIAN.to_owned()));
    }
    let accept = Accept::parse_with(&joined, &state.config.header_limits)
        .map_err(|error| WebError::BadRequest(format!("Accept: {error}")))?;
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
        return Ok(match media.parameter("transfer-syntax") {
            Some("*") => Wanted::Stored,
            Some(uid) => Wanted::Syntax(uid.to_owned()),
            None => Wanted::Syntax(EXPLICIT_VR_LITTLE_ENDIAN.to_owned()),
        });
    }
    Err(WebError::NotAcceptable(format!(
        "this resource is sent as multipart/related; type=\"application/dicom\" only, which \
         {joined:?} does not accept"
    )))
}

async fn retrieve(
    state: &SharedState,
    headers: &HeaderMap,
    level: &str,
    [study, series, instance]: [Option<String>; 3],
) -> Result<Response, WebError> {
    let wanted = negotiate(headers, state)?;
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
    let syntax = match &wanted {
        Wanted::Stored => None,
        Wanted::Syntax(uid) => {
            if let Some(other) = instances.iter().find(|i| i.transfer_syntax_uid != *uid) {
                return Err(WebError::NotAcceptable(format!(
                    "instance {} is stored in transfer syntax {}, not {uid}; conversion between \
                     transfer syntaxes is not implemented yet: ask for transfer-syntax=* to \
                     receive it as stored",
                    other.sop_instance_uid, other.transfer_syntax_uid
                )));
            }
            Some(uid.clone())
        }
    };
    let dicom = ContentType::new("application", "dicom")
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let encoder = Encoder::new(dicom.clone());
    let mut content_type = encoder.content_type();
    if let Some(uid) = &syntax {
        content_type = content_type
            .with_parameter("transfer-syntax", uid)
            .map_err(|error| WebError::Internal(error.to_string()))?;
    }
    let parts = instances
        .into_iter()
        .map(|instance| part(&dicom, instance))
        .collect::<Result<Vec<_>, _>>()?;
    let body = encoder.encode(stream::iter(parts));
    let content_type = HeaderValue::from_str(&content_type.to_string())
        .map_err(|error| WebError::Internal(error.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// One instance as a part: `application/dicom; transfer-syntax=…`, its file streamed.
fn part(dicom: &ContentType, instance: IndexedInstance) -> Result<Part<io::Error>, WebError> {
    let content_type = dicom
        .clone()
        .with_parameter("transfer-syntax", &instance.transfer_syntax_uid)
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let location = &instance.location;
    let length = location
        .data_set_offset
        .saturating_add(location.data_set_length);
    Ok(Part::stream(
        PartHeaders::new(content_type),
        file_stream(location.path.clone(), length),
    ))
}

/// The first `length` bytes of the file at `path` (a path from the index), read as the stream
/// is polled; fewer is an error.
fn file_stream(
    path: PathBuf,
    length: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let open = async move {
        let file = tokio::fs::File::open(&path).await?;
        Ok::<_, io::Error>((file, path, length))
    };
    stream::once(open)
        .map(|opened| match opened {
            Ok(state) => stream::try_unfold(state, read_piece).left_stream(),
            Err(error) => stream::once(async move { Err(error) }).right_stream(),
        })
        .flatten()
}

async fn read_piece(
    (mut file, path, remaining): (tokio::fs::File, PathBuf, u64),
) -> Result<Option<(Bytes, (tokio::fs::File, PathBuf, u64))>, io::Error> {
    if remaining == 0 {
        return Ok(None);
    }
    let size = usize::try_from(remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
    let mut buffer = BytesMut::zeroed(size);
    let mut filled = 0;
    while filled < size {
        let read = file.read(&mut buffer[filled..]).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ends {remaining} bytes before the end the index recorded",
                    path.display()
                ),
            ));
        }
        filled += read;
    }
    Ok(Some((
        buffer.freeze(),
        (file, path, remaining - size as u64),
    )))
}

pub(super) fn index_error(error: IndexError) -> WebError {
    match error {
        IndexError::WriterGone => WebError::Unavailable(error.to_string()),
        other => WebError::Internal(other.to_string()),
    }
}
