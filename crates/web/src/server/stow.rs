//! STOW-RS Store Instances (PS3.18 10.5): a multipart/related body of `application/dicom`
//! parts, each stored through the archive's [`Storage`] as it arrives, exactly as a C-STORE is.
//!
//! Each part is a Part 10 file: its File Meta Information is read with
//! [`dimsum_dataset::part10::read_meta`] from the first bytes of the part (gathered up to the
//! size of the largest meta group accepted), and gives the SOP Class and Instance UIDs and the
//! transfer syntax of the [`InstanceDescription`]; the data set that follows goes to the
//! [`InstanceWriter`] piece by piece as the body arrives. Under `POST /studies/{study}`, the
//! data set is also scanned as it passes ([`dimsum_dataset::scan::scan_stream`], on the
//! blocking pool) and an instance of another study is dropped before it is finished (Failure
//! Reason 0xA900): nothing of it is kept.
//!
//! An instance is kept once its part has ended with a valid delimiter. A body that turns out
//! malformed (or over a limit) after some instances were kept is answered 202 with those in
//! the Referenced SOP Sequence and the failure in a `Warning` header (PS3.18 8.4.3); one that
//! fails before any was kept is answered 400 (413 for a limit) and nothing is stored.
//!
//! The response (PS3.18 10.5.3) is the Store Instances Response Module as
//! `application/dicom+json`: Retrieve URL, Referenced SOP Sequence (with each instance's
//! Retrieve URL, and a Warning Reason for a warning) and Failed SOP Sequence (with the Failure
//! Reason, the status a C-STORE would have had), with 200 when every instance was stored, 202
//! when some were not (or came with warnings), 409 when none was.

use std::io::{self, Read};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

use dimsum_dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::part10::{self, DICM_PREFIX, MAX_META_GROUP_LENGTH, PREAMBLE_LENGTH};
use dimsum_dataset::scan::{self, ScanError, Summary};
use dimsum_net::dimse::status::Status;
use dimsum_net::storage::{InstanceDescription, Origin, Storage, StoreFailure, StoreSuccess};

use super::{SharedState, WebError, resource_of};
use crate::multipart::{
    ContentType, DecodeError, DecodeLimits, Decoder, MultipartError, MultipartReader,
};
use crate::resource::Resource;

/// The most bytes gathered at the start of a part to read its File Meta Information: the
/// preamble, the prefix, the group length element and the largest group accepted.
const MAX_HEAD: usize = PREAMBLE_LENGTH + DICM_PREFIX.len() + 12 + MAX_META_GROUP_LENGTH as usize;
/// The first attempt to read the meta is made with this many bytes; then with twice as many.
const FIRST_HEAD_ATTEMPT: usize = 512;
/// Pieces of a data set queued for its study check.
const SCAN_QUEUE: usize = 8;

/// `POST {root}/studies` and `POST {root}/studies/{study}`.
pub(super) async fn store(State(state): State<SharedState>, request: Request) -> Response {
    let result = match resource_of(request.uri()) {
        Ok(Resource::Studies) => stow(&state, None, request).await,
        Ok(Resource::Study(study)) => stow(&state, Some(study), request).await,
        Ok(other) => Err(WebError::NotFound(format!(
            "{other} is not a STOW-RS resource"
        ))),
        Err(error) => Err(error),
    };
    match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// What became of one part.
enum Outcome {
    /// Kept; its store is finishing (the file written and the instance handed to the index)
    /// while the next part arrives.
    Finishing {
        sop_class_uid: String,
        sop_instance_uid: String,
        task: tokio::task::JoinHandle<Result<StoreSuccess, StoreFailure>>,
    },
    Stored {
        sop_class_uid: String,
        sop_instance_uid: String,
        warning: Option<Status>,
    },
    Failed {
        sop_class_uid: String,
        sop_instance_uid: String,
        reason: Status,
    },
}

/// How many parts' stores may still be finishing while the next parts arrive.
const FINISHING_AHEAD: usize = 8;

/// Waits for a finishing store and puts its outcome in its place.
async fn settle(outcome: &mut Outcome) {
    let Outcome::Finishing {
        sop_class_uid,
        sop_instance_uid,
        task,
    } = outcome
    else {
        return;
    };
    let finished = match task.await {
        Ok(finished) => finished,
        Err(error) => Err(StoreFailure::new(
            Status::PROCESSING_FAILURE,
            format!("the store task failed: {error}"),
        )),
    };
    let (sop_class_uid, sop_instance_uid) = (
        std::mem::take(sop_class_uid),
        std::mem::take(sop_instance_uid),
    );
    *outcome = match finished {
        Ok(success) => Outcome::Stored {
            sop_class_uid,
            sop_instance_uid,
            warning: (!success.status.is_success()).then_some(success.status),
        },
        Err(failure) => failed_part(
            sop_class_uid,
            sop_instance_uid,
            failure.status,
            failure.comment,
        ),
    };
}

/// The body's failure, as a response when nothing was stored.
fn body_error(error: MultipartError<axum::Error>) -> WebError {
    match error {
        MultipartError::Decode(
            error @ (DecodeError::BodyTooLarge { .. } | DecodeError::PartTooLarge { .. }),
        ) => WebError::PayloadTooLarge(error.to_string()),
        MultipartError::Decode(error @ DecodeError::TooManyParts { .. }) => {
            WebError::PayloadTooLarge(error.to_string())
        }
        MultipartError::Decode(error) => {
            WebError::BadRequest(format!("malformed multipart body: {error}"))
        }
        MultipartError::Input(error) => {
            let over_limit = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<http_body_util::LengthLimitError>())
                .is_some();
            if over_limit {
                WebError::PayloadTooLarge(format!("the request body is over the limit: {error}"))
            } else {
                WebError::BadRequest(format!("reading the request body: {error}"))
            }
        }
    }
}

async fn stow(
    state: &SharedState,
    study: Option<String>,
    request: Request,
) -> Result<Response, WebError> {
    let (parts, body) = request.into_parts();
    let config = &state.config;
    let content_type = request_content_type(&parts.headers, config)?;
    let limits = DecodeLimits {
        max_body_bytes: config.max_body_bytes,
        max_part_bytes: config.max_part_bytes,
        max_parts: config.max_parts,
        content_type: config.header_limits,
        ..DecodeLimits::default()
    };
    let decoder = Decoder::for_content_type(&content_type, limits)
        .map_err(|error| WebError::BadRequest(format!("Content-Type: {error}")))?;
    let peer_address = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let input = body.into_data_stream();
    let mut reader = MultipartReader::new(input, decoder);
    let mut outcomes = Vec::new();
    let mut failure = None;
    loop {
        let headers = match reader.next_part().await {
            Ok(Some(headers)) => headers,
            Ok(None) => break,
            Err(error) => {
                failure = Some(body_error(error));
                break;
            }
        };
        if !headers.content_type().is("application", "dicom") {
            outcomes.push(failed_part(
                String::new(),
                String::new(),
                Status::CANNOT_UNDERSTAND,
                format!(
                    "part {} is {}, not application/dicom",
                    outcomes.len() + 1,
                    headers.content_type().essence()
                ),
            ));
            continue;
        }
        match store_part(state, study.as_deref(), peer_address, &mut reader).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                failure = Some(body_error(error));
                break;
            }
        }
        // At most FINISHING_AHEAD stores finish behind the arrival of the next parts.
        let finishing = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Outcome::Finishing { .. }))
            .count();
        if finishing > FINISHING_AHEAD
            && let Some(oldest) = outcomes
                .iter_mut()
                .find(|outcome| matches!(outcome, Outcome::Finishing { .. }))
        {
            settle(oldest).await;
        }
    }
    for outcome in &mut outcomes {
        settle(outcome).await;
    }
    let stored = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Outcome::Stored { .. }))
        .count();
    // A body that failed after some instances were kept: they are reported (202), and the
    // failure is told in a Warning header (PS3.18 8.4.3).
    let body_failure = match failure {
        Some(error) if stored == 0 => return Err(error),
        Some(error) => Some(error),
        None => None,
    };
    if outcomes.is_empty() {
        return Err(WebError::BadRequest(
            "the multipart body holds no part".to_owned(),
        ));
    }
    let failed = outcomes.len() - stored;
    let warnings = outcomes.iter().any(|outcome| {
        matches!(
            outcome,
            Outcome::Stored {
                warning: Some(_),
                ..
            }
        )
    });
    let status = if stored == 0 {
        StatusCode::CONFLICT
    } else if failed > 0 || warnings || body_failure.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let base = base_url(&parts.headers, state);
    let response = response_data_set(state, &base, study.as_deref(), &outcomes).await;
    let json = serde_json::to_string(&dimsum_dataset::json::to_json(&response))
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        json,
    )
        .into_response();
    if let Some(error) = body_failure {
        // Only visible ASCII, and no quote, goes in the quoted text of the header value.
        let reason: String = error
            .to_string()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                c if c.is_ascii_graphic() || c == ' ' => c,
                _ => '?',
            })
            .collect();
        let text = format!("299 dimsum \"the rest of the body was not read: {reason}\"");
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().insert(header::WARNING, value);
        }
    }
    Ok(response)
}

/// The request's Content-Type: multipart/related with `type="application/dicom"` (PS3.18
/// 10.5.1.1); anything else is 415 (the metadata and bulk data form of STOW-RS is not
/// implemented yet), an unreadable value 400.
fn request_content_type(
    headers: &HeaderMap,
    config: &super::WebConfig,
) -> Result<ContentType, WebError> {
    let value = headers.get(header::CONTENT_TYPE).ok_or_else(|| {
        WebError::UnsupportedMediaType(
            "no Content-Type: STOW-RS takes multipart/related; type=\"application/dicom\""
                .to_owned(),
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| WebError::BadRequest("the Content-Type header is not ASCII".to_owned()))?;
    let content_type = ContentType::parse_with(value, &config.header_limits)
        .map_err(|error| WebError::BadRequest(format!("Content-Type: {error}")))?;
    if !content_type.is("multipart", "related") {
        return Err(WebError::UnsupportedMediaType(format!(
            "{} is not taken: STOW-RS takes multipart/related; type=\"application/dicom\"",
            content_type.essence()
        )));
    }
    match content_type
        .related_type()
        .map_err(|error| WebError::BadRequest(format!("Content-Type type parameter: {error}")))?
    {
        Some(related) if related.is("application", "dicom") => Ok(content_type),
        Some(related) => Err(WebError::UnsupportedMediaType(format!(
            "multipart/related of {} is not implemented yet: send application/dicom parts",
            related.essence()
        ))),
        None => Err(WebError::UnsupportedMediaType(
            "multipart/related without a type parameter: send type=\"application/dicom\""
                .to_owned(),
        )),
    }
}

type Reader<S> = MultipartReader<S>;

/// Stores the current part; an `Err` is a failure of the body itself (the part's instance, if
/// begun, is dropped and nothing of it kept).
async fn store_part<S>(
    state: &SharedState,
    study: Option<&str>,
    peer_address: Option<std::net::SocketAddr>,
    reader: &mut Reader<S>,
) -> Result<Outcome, MultipartError<axum::Error>>
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    // The File Meta Information, from the first bytes of the part.
    let mut head = BytesMut::new();
    let mut attempt = FIRST_HEAD_ATTEMPT;
    let mut ended = false;
    let (meta, offset) = loop {
        if head.len() >= attempt || ended {
            match part10::read_meta(&mut &head[..]) {
                Ok(found) => break found,
                Err(part10::Part10Error::Truncated { .. }) if !ended && head.len() < MAX_HEAD => {
                    attempt = attempt.saturating_mul(2).min(MAX_HEAD);
                }
                Err(error) => {
                    return Ok(failed_part(
                        String::new(),
                        String::new(),
                        Status::CANNOT_UNDERSTAND,
                        format!("not a DICOM Part 10 instance: {error}"),
                    ));
                }
            }
        }
        match reader.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => ended = true,
        }
    };
    let sop_class_uid = meta.media_storage_sop_class_uid.clone();
    let sop_instance_uid = meta.media_storage_sop_instance_uid.clone();
    let failed = |reason: Status, comment: String| {
        failed_part(
            sop_class_uid.clone(),
            sop_instance_uid.clone(),
            reason,
            comment,
        )
    };
    let Some(data_start) = usize::try_from(offset).ok().filter(|&o| o <= head.len()) else {
        return Ok(failed(
            Status::CANNOT_UNDERSTAND,
            "the part ends inside its file meta information".to_owned(),
        ));
    };
    head.advance(data_start);
    let description = InstanceDescription {
        sop_class_uid: sop_class_uid.clone(),
        sop_instance_uid: sop_instance_uid.clone(),
        transfer_syntax_uid: meta.transfer_syntax_uid.clone(),
        origin: Origin::Web { peer_address },
    };
    let mut writer = match state.archive.begin(&description).await {
        Ok(writer) => writer,
        Err(failure) => return Ok(failed(failure.status, failure.comment)),
    };
    let mut check = study.map(|_| StudyCheck::start(&meta.transfer_syntax_uid, state));
    let mut failure: Option<StoreFailure> = None;
    let mut next = if head.is_empty() {
        None
    } else {
        Some(head.freeze())
    };
    if next.is_none() && !ended {
        next = reader.next_chunk().await?;
    }
    while let Some(chunk) = next {
        if failure.is_none() {
            if let Some(check) = check.as_mut() {
                check.feed(chunk.clone()).await;
            }
            if let Err(error) = writer.write(chunk).await {
                failure = Some(error);
            }
        }
        next = if ended {
            None
        } else {
            reader.next_chunk().await?
        };
    }
    if let Some(failure) = failure {
        return Ok(failed(failure.status, failure.comment));
    }
    if let (Some(check), Some(expected)) = (check, study) {
        match check.finish().await {
            Ok(summary) => {
                let found = summary.study_instance_uid.unwrap_or_default();
                if found != expected {
                    drop(writer);
                    return Ok(failed(
                        Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                        format!(
                            "the instance belongs to study {found:?}, not to {expected} of the URL"
                        ),
                    ));
                }
            }
            Err(error) => {
                drop(writer);
                return Ok(failed(
                    Status::CANNOT_UNDERSTAND,
                    format!("the data set cannot be read: {error}"),
                ));
            }
        }
    }
    // The part is whole: its store finishes on its own while the next part arrives.
    Ok(Outcome::Finishing {
        sop_class_uid,
        sop_instance_uid,
        task: tokio::spawn(writer.finish()),
    })
}

fn failed_part(
    sop_class_uid: String,
    sop_instance_uid: String,
    reason: Status,
    comment: String,
) -> Outcome {
    tracing::debug!("STOW-RS instance {sop_instance_uid:?} not stored: {comment}");
    Outcome::Failed {
        sop_class_uid,
        sop_instance_uid,
        reason,
    }
}

/// The hardened scan of a data set as it passes, on the blocking pool, for its Study Instance
/// UID.
struct StudyCheck {
    sender: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<Result<Summary, ScanError>>,
}

impl StudyCheck {
    fn start(transfer_syntax_uid: &str, state: &SharedState) -> Self {
        let (sender, receiver) = mpsc::channel(SCAN_QUEUE);
        let syntax = transfer_syntax_uid.to_owned();
        let limits = state.config.scan_limits;
        let task = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                receiver,
                current: Bytes::new(),
            };
            scan::scan_stream(reader, &syntax, &limits)
        });
        Self {
            sender: Some(sender),
            task,
        }
    }

    /// Gives the scan the next piece (ignored once the scan has ended with an error).
    async fn feed(&mut self, chunk: Bytes) {
        if let Some(sender) = &self.sender
            && sender.send(chunk).await.is_err()
        {
            self.sender = None;
        }
    }

    async fn finish(mut self) -> Result<Summary, ScanError> {
        self.sender = None;
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(ScanError::Io {
                offset: 0,
                source: io::Error::other(error.to_string()),
            }),
        }
    }
}

/// A blocking `Read` over the pieces sent through a channel; the end of the channel is the end
/// of the data.
struct ChannelReader {
    receiver: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        self.current.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

/// The origin and root of the Retrieve URLs: the configured base URL, or the request's Host
/// over http.
pub(super) fn base_url(headers: &HeaderMap, state: &SharedState) -> String {
    let origin = match &state.config.base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .filter(|host| {
                    host.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    format!("{origin}{}", state.config.root())
}

/// The Store Instances Response Module (PS3.18 10.5.3, Table 10.5.3-1).
async fn response_data_set(
    state: &SharedState,
    base: &str,
    study: Option<&str>,
    outcomes: &[Outcome],
) -> InMemDicomObject {
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut studies = std::collections::BTreeSet::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Stored {
                sop_class_uid,
                sop_instance_uid,
                warning,
            } => {
                let mut item = InMemDicomObject::from_element_iter([
                    text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class_uid),
                    text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance_uid),
                ]);
                if let Ok(Some(indexed)) = state.archive.lookup(sop_instance_uid).await {
                    studies.insert(indexed.study_instance_uid.clone());
                    item.put(text(
                        tags::RETRIEVE_URL,
                        VR::UR,
                        &format!(
                            "{base}/studies/{}/series/{}/instances/{}",
                            indexed.study_instance_uid,
                            indexed.series_instance_uid,
                            indexed.sop_instance_uid
                        ),
                    ));
                }
                if let Some(warning) = warning {
                    item.put(DataElement::new(
                        tags::WARNING_REASON,
                        VR::US,
                        PrimitiveValue::from(warning.0),
                    ));
                }
                referenced.push(item);
            }
            Outcome::Failed {
                sop_class_uid,
                sop_instance_uid,
                reason,
            } => failed.push(InMemDicomObject::from_element_iter([
                text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class_uid),
                text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance_uid),
                DataElement::new(tags::FAILURE_REASON, VR::US, PrimitiveValue::from(reason.0)),
            ])),
            // Every store is settled before the response is made.
            Outcome::Finishing { .. } => {}
        }
    }
    let mut response = InMemDicomObject::new_empty();
    let study_url = study.map(str::to_owned).or_else(|| {
        (studies.len() == 1)
            .then(|| studies.into_iter().next())
            .flatten()
    });
    if let Some(study) = study_url {
        response.put(text(
            tags::RETRIEVE_URL,
            VR::UR,
            &format!("{base}/studies/{study}"),
        ));
    }
    if !referenced.is_empty() {
        response.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(referenced),
        ));
    }
    if !failed.is_empty() {
        response.put(DataElement::new(
            tags::FAILED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(failed),
        ));
    }
    response
}
