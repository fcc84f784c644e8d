//! WADO-RS metadata (PS3.18 10.4.1.1.2 Metadata Resources, payload 10.4.3.3.2), answered from
//! the index's records without opening a file.
//!
//! `GET {root}/studies/{study}/metadata`, `…/series/{series}/metadata` and
//! `…/instances/{instance}/metadata` give every instance of the entity, series in Series Number
//! order and instances in Instance Number order ([`Index::instance_records`]), as
//! `application/dicom+json` (8.7.3.3.1, the default: one JSON array written instance by
//! instance as the body is sent, never built whole) or as `multipart/related;
//! type="application/dicom+xml"` (8.7.3.3.2, one PS3.19 document per instance). Anything else
//! is 406; an entity the index does not hold is 404.
//!
//! Each bulk data element the record left out (see [`dimsum_pacs::index::record`]) is written
//! with its VR and a BulkDataURI (F.2.6, PS3.19 A.1.5) that the bulk data route of this module
//! resolves: `{instance}/bulkdata/{path}`, the element's [`TagPath`]. The top-level Pixel Data
//! of an instance stored in an encapsulated transfer syntax is the exception: its value is
//! retrieved frame by frame (8.7.3.3.2: compressed pixel data is sent as individual frames,
//! 10.4.3.3.6), so its URI is the instance's Frames resource listing every frame
//! (`{instance}/frames/1,2,…`), or none beyond [`ResourceLimits::max_frames`] frames.
//! Records written before the index kept bulk data paths give no BulkDataURI.
//!
//! `GET …/instances/{instance}/bulkdata/{path}` (10.4.1.1.5, payload 10.4.3.3.5) resolves
//! those URIs: `multipart/related; type="application/octet-stream"` with one part, the value of
//! the element at `path` (a [`TagPath`], parsed strictly: 400 otherwise), found in the
//! instance's file by the hardened scan and streamed from it, with the URI as its
//! Content-Location. Only binary elements (OB, OD, OF, OL, OV, OW, UN) are bulk data; another
//! element, or none at the path, is 404. Uncompressed values are sent in little endian
//! (8.7.3.3.1; words of an Explicit VR Big Endian file are swapped, a deflated data set is
//! inflated in memory within [`PixelLimits::max_inflated_bytes`]); encapsulated ones (an icon's
//! pixel data in a compressed transfer syntax) as their fragments' bytes without the item
//! headers or the offset table (8.7.3.3.2), only when the client accepts the stored transfer
//! syntax (`transfer-syntax=*` or its UID: decompression is not implemented), named by the
//! part's `transfer-syntax` parameter. The top-level encapsulated Pixel Data is answered with a
//! redirection (303) to the instance's Frames resource.
//!
//! [`Index::instance_records`]: dimsum_pacs::index::Index::instance_records
//! [`PixelLimits::max_inflated_bytes`]: crate::pixel::PixelLimits::max_inflated_bytes

use std::io;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};

use dimsum_dataset::dicom_core::ops::AttributeSelector;
use dimsum_dataset::dicom_core::value::{C, PixelFragmentSequence, Value};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::dicom_object::mem::InMemElement;
use dimsum_dataset::json::{self, BulkData, WriteOptions};
use dimsum_dataset::scan::{self, PixelDataValue};
use dimsum_dataset::transfer_syntax;
use dimsum_dataset::xml::{self, XmlOptions};
use dimsum_pacs::index::record::{BulkElement, TagPath};
use dimsum_pacs::index::{EntityUids, IndexedInstance, InstanceRecord, RecordStream};

use super::pixel::pixel_error;
use super::stow::base_url;
use super::wado::index_error;
use super::{SharedState, WebError, accept_of, resource_of};
use crate::multipart::{ContentType, Encoder, Part, PartHeaders};
use crate::pixel::source::inflate;
use crate::resource::{Entity, Resource, ResourceLimits};
use crate::wado::{Representation, TransferSyntax};

/// The routes of this module.
pub(super) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/studies/{study}/metadata", get(metadata))
        .route("/studies/{study}/series/{series}/metadata", get(metadata))
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{*path}",
            get(bulkdata),
        )
}

/// How metadata is sent (PS3.18 8.7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetadataForm {
    /// `application/dicom+json`.
    Json,
    /// `multipart/related; type="application/dicom+xml"`.
    Xml,
}

/// The first instance record of `entity` and the stream of the others; 404 when the index holds
/// no instance there.
async fn first_record(
    state: &SharedState,
    entity: &Entity,
    resource: &Resource,
) -> Result<(InstanceRecord, RecordStream), WebError> {
    let mut records = state
        .archive
        .index()
        .instance_records(entity_uids(entity))
        .await
        .map_err(index_error)?;
    match records.next().await {
        None => Err(WebError::NotFound(format!(
            "no instance at {}",
            resource.to_path()
        ))),
        Some(Err(error)) => Err(index_error(error)),
        Some(Ok(record)) => Ok((record, records)),
    }
}

/// `GET {root}/studies/{study}[/series/{series}[/instances/{instance}]]/metadata`.
async fn metadata(
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let resource = resource_of(&uri)?;
    let Resource::Metadata(entity) = &resource else {
        return Err(WebError::NotFound(format!(
            "{resource} is not a metadata resource"
        )));
    };
    let form = negotiate(&headers, &state, &resource)?;
    // The first record says whether the entity exists, before the response starts.
    let (first, records) = first_record(&state, entity, &resource).await?;
    let records: RecordStream = Box::pin(stream::once(async move { Ok(first) }).chain(records));
    let uris = BulkDataUris {
        base: base_url(&headers, &state),
    };
    match form {
        MetadataForm::Json => Ok(json_response(records, uris)),
        MetadataForm::Xml => xml_response(records, uris),
    }
}

/// The UIDs of a study, series or instance entity.
fn entity_uids(entity: &Entity) -> EntityUids {
    EntityUids {
        study: entity.study().to_owned(),
        series: entity.series().map(str::to_owned),
        instance: entity.instance().map(str::to_owned),
    }
}

/// The form the client accepts (PS3.18 8.7.5): the first acceptable range, most preferred
/// first; `*/*` and `application/*` mean the default, DICOM JSON; no `Accept` too.
fn negotiate(
    headers: &HeaderMap,
    state: &SharedState,
    resource: &Resource,
) -> Result<MetadataForm, WebError> {
    let Some(accept) = accept_of(headers, state, None)? else {
        return Ok(MetadataForm::Json);
    };
    for range in accept.preferred() {
        let media = &range.media_type;
        if media.is("*", "*") || media.is("application", "*") {
            return Ok(MetadataForm::Json);
        }
        match Representation::from_content_type(media) {
            Ok(Representation::DicomJson) => return Ok(MetadataForm::Json),
            Ok(Representation::DicomXml) => return Ok(MetadataForm::Xml),
            _ => {}
        }
    }
    Err(WebError::NotAcceptable(format!(
        "{resource} is sent as application/dicom+json or multipart/related; \
         type=\"application/dicom+xml\", which \"{accept}\" does not accept"
    )))
}

/// `application/dicom+json`: a JSON array whose elements are written as the records arrive.
/// A record that fails ends the body with its error (no closing bracket: the client sees a
/// truncated array, never a complete one).
fn json_response(records: RecordStream, uris: BulkDataUris) -> Response {
    let body = records
        .enumerate()
        .map(move |(index, record)| {
            let record = record.map_err(io::Error::other)?;
            let mut bytes = Vec::with_capacity(8 * 1024);
            bytes.push(if index == 0 { b'[' } else { b',' });
            serde_json::to_writer(&mut bytes, &instance_json(record, &uris))
                .map_err(io::Error::other)?;
            Ok::<_, io::Error>(Bytes::from(bytes))
        })
        .chain(stream::once(async { Ok(Bytes::from_static(b"]")) }));
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        Body::from_stream(until_error(body)),
    )
        .into_response()
}

/// `multipart/related; type="application/dicom+xml"`: one part per instance.
fn xml_response(records: RecordStream, uris: BulkDataUris) -> Result<Response, WebError> {
    let dicom_xml = ContentType::new("application", "dicom+xml")
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let encoder = Encoder::new(dicom_xml.clone());
    let content_type = HeaderValue::from_str(&encoder.content_type().to_string())
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let parts = records.map(move |record| {
        let headers = PartHeaders::new(dicom_xml.clone());
        match record {
            Ok(record) => Part::bytes(headers, instance_xml(record, &uris)),
            Err(error) => Part::stream(
                headers,
                stream::once(async move { Err(io::Error::other(error)) }),
            ),
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(encoder.encode(parts)),
    )
        .into_response())
}

/// The items of `body` up to and including its first error.
fn until_error<S, E>(body: S) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    body.scan(false, |failed, chunk| {
        if *failed {
            return futures_util::future::ready(None);
        }
        *failed = chunk.is_err();
        futures_util::future::ready(Some(chunk))
    })
}

/// One instance in the DICOM JSON Model (PS3.18 F.2), its bulk data as BulkDataURIs.
fn instance_json(record: InstanceRecord, uris: &BulkDataUris) -> serde_json::Value {
    let object = with_bulk_placeholders(record.attributes, &record.bulk_data);
    let instance = &record.instance;
    let options = WriteOptions::new()
        .with_bulk_data(|path, element| uris.policy(instance, &object, path, element));
    json::to_json_with(&object, &options)
}

/// One instance in the Native DICOM Model (PS3.19 A.1), its bulk data as `BulkData uri=`.
fn instance_xml(record: InstanceRecord, uris: &BulkDataUris) -> String {
    let object = with_bulk_placeholders(record.attributes, &record.bulk_data);
    let instance = &record.instance;
    let options = XmlOptions::new()
        .with_bulk_data(|path, element| uris.policy(instance, &object, path, element));
    xml::to_xml(&object, &options)
}

/// The record's attributes with each bulk element put back where it was, with its VR and, in
/// place of its value, an empty pixel sequence: a value not held here, which the writers never
/// write inline and for which they always ask the bulk data policy (they ask it for no empty
/// value, and a record holds no other pixel sequence).
fn with_bulk_placeholders(
    mut object: InMemDicomObject,
    bulk_data: &[BulkElement],
) -> InMemDicomObject {
    for element in bulk_data {
        put_placeholder(
            &mut object,
            &element.path.items(),
            element.path.tag(),
            element.vr,
        );
    }
    object
}

fn put_placeholder(object: &mut InMemDicomObject, items: &[(Tag, u32)], tag: Tag, vr: VR) {
    match items.split_first() {
        None => {
            let placeholder: Value<InMemDicomObject> =
                Value::from(PixelFragmentSequence::new(C::new(), Vec::<Vec<u8>>::new()));
            object.put(DataElement::new(tag, vr, placeholder));
        }
        Some((&(sequence, index), rest)) => {
            object.update_value(sequence, |value| {
                let item = value
                    .items_mut()
                    .and_then(|items| items.get_mut(usize::try_from(index).unwrap_or(usize::MAX)));
                if let Some(item) = item {
                    put_placeholder(item, rest, tag, vr);
                }
            });
        }
    }
}

/// The BulkDataURIs of this server: `{base}/studies/…/instances/{instance}/bulkdata/{path}`,
/// or the Frames resource for encapsulated Pixel Data.
struct BulkDataUris {
    /// The origin and DICOMweb root.
    base: String,
}

impl BulkDataUris {
    /// The bulk data policy of the writers for `instance` with `attributes`: a URI for each
    /// placeholder of [`with_bulk_placeholders`], every other value inline.
    fn policy(
        &self,
        instance: &IndexedInstance,
        attributes: &InMemDicomObject,
        path: &AttributeSelector,
        element: &InMemElement,
    ) -> BulkData {
        if !matches!(element.value(), Value::PixelSequence(_)) {
            return BulkData::Inline;
        }
        match self.uri(instance, attributes, &TagPath::from_selector(path)) {
            Some(uri) => BulkData::Uri(uri),
            None => BulkData::Inline,
        }
    }

    /// The URI of the bulk element at `path` of `instance`, whose attributes are `attributes`.
    fn uri(
        &self,
        instance: &IndexedInstance,
        attributes: &InMemDicomObject,
        path: &TagPath,
    ) -> Option<String> {
        let entity = Entity::Instance {
            study: instance.study_instance_uid.clone(),
            series: instance.series_instance_uid.clone(),
            instance: instance.sop_instance_uid.clone(),
        };
        let resource = if path.is_top_level()
            && path.tag() == tags::PIXEL_DATA
            && transfer_syntax::is_encapsulated(&instance.transfer_syntax_uid)
        {
            let frames = number_of_frames(attributes)?;
            Resource::Frames(entity, (1..=frames).collect())
        } else {
            let segments = path.to_string().split('/').map(str::to_owned).collect();
            Resource::Bulkdata(entity, segments)
        };
        Some(format!("{}/{}", self.base, resource.to_path()))
    }
}

/// Number of Frames (0028,0008), 1 when absent (PS3.3 C.7.6.6); `None` when it is not a
/// number from 1 to [`ResourceLimits::max_frames`] (no Frames URI can list them).
fn number_of_frames(attributes: &InMemDicomObject) -> Option<u32> {
    let frames = match attributes.get(tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(element) => element
            .to_str()
            .ok()?
            .trim_matches([' ', '\0'])
            .parse::<u32>()
            .ok()?,
    };
    let max = u32::try_from(ResourceLimits::default().max_frames).unwrap_or(u32::MAX);
    (1..=max).contains(&frames).then_some(frames)
}

// ------------------------------------------------------------------------------------------
// Bulk data
// ------------------------------------------------------------------------------------------

/// Explicit VR Little Endian: the encoding of uncompressed bulk data (PS3.18 8.7.3.3.1).
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Explicit VR Big Endian (retired): its words are swapped on the way out.
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
/// The size of the pieces a value is read in (a multiple of every word size).
const READ_CHUNK: u64 = 64 * 1024;

/// A representation of bulk data the client accepts (PS3.18 8.7.3.3, 8.7.3.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum BulkWanted {
    /// Uncompressed, little endian (the default).
    Uncompressed,
    /// As stored (`transfer-syntax=*`, or any media type).
    Stored,
    /// In this transfer syntax.
    Syntax(String),
}

/// `GET {root}/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path}`.
async fn bulkdata(
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let resource = resource_of(&uri)?;
    let Resource::Bulkdata(entity, segments) = &resource else {
        return Err(WebError::NotFound(format!(
            "{resource} is not a bulk data resource"
        )));
    };
    let path = TagPath::from_segments(segments)
        .map_err(|error| WebError::BadRequest(format!("bulk data path: {error}")))?;
    let wanted = negotiate_bulk(&headers, &state, &resource)?;
    let (record, _) = first_record(&state, entity, &resource).await?;
    // A record that lists its bulk elements says at once whether the path is one.
    let listed = record.bulk_data.iter().find(|element| element.path == path);
    let has_list = !record.bulk_data.is_empty();
    if has_list && listed.is_none() {
        return Err(WebError::NotFound(format!(
            "{path} is not a bulk data element of this instance"
        )));
    }
    let uris = BulkDataUris {
        base: base_url(&headers, &state),
    };
    let instance = record.instance.clone();
    let syntax = instance.transfer_syntax_uid.clone();
    if path.is_top_level()
        && path.tag() == tags::PIXEL_DATA
        && transfer_syntax::is_encapsulated(&syntax)
    {
        return match uris.uri(&record.instance, &record.attributes, &path) {
            Some(frames) => Ok((
                StatusCode::SEE_OTHER,
                [(header::LOCATION, header_value(&frames)?)],
            )
                .into_response()),
            None => Err(WebError::NotAcceptable(format!(
                "the encapsulated Pixel Data of this instance is retrieved by frames, but it \
                 has more than {} frames or no valid Number of Frames",
                ResourceLimits::default().max_frames
            ))),
        };
    }
    let limits = state.config.scan_limits;
    let max_inflated = state.config.pixel_limits.max_inflated_bytes;
    let selector = path.selector().clone();
    let location = instance.location.clone();
    let what = format!("the file of instance {}", instance.sop_instance_uid);
    let (located, inflated) = tokio::task::spawn_blocking(move || {
        let read_error = |error: &dyn std::fmt::Display| {
            WebError::Internal(format!("{what} cannot be read: {error}"))
        };
        let mut file = std::fs::File::open(&location.path).map_err(|e| read_error(&e))?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(location.data_set_offset))
            .map_err(|e| read_error(&e))?;
        if transfer_syntax::is_deflated(&syntax) {
            // Offsets are those of the inflated data set, held in memory within its limit.
            let inflated = inflate(
                &mut file,
                location.data_set_length,
                max_inflated,
                &location.path,
            )
            .map_err(pixel_error)?;
            let (_, located) = scan::locate_element(
                io::Cursor::new(&inflated),
                inflated.len() as u64,
                EXPLICIT_VR_LITTLE_ENDIAN,
                &selector,
                &limits,
            )
            .map_err(|e| read_error(&e))?;
            return Ok((located, Some(Bytes::from(inflated))));
        }
        let (_, located) = scan::locate_element(
            io::BufReader::new(file),
            location.data_set_length,
            &syntax,
            &selector,
            &limits,
        )
        .map_err(|e| read_error(&e))?;
        Ok::<_, WebError>((located, None))
    })
    .await
    .map_err(|error| WebError::Internal(error.to_string()))??;
    let Some(located) = located.filter(|located| is_binary(located.vr)) else {
        return Err(WebError::NotFound(format!(
            "{path} is not a bulk data element of this instance"
        )));
    };
    let syntax = &instance.transfer_syntax_uid;
    let base = if inflated.is_some() {
        0
    } else {
        instance.location.data_set_offset
    };
    let (ranges, swap, compressed) = match &located.value {
        PixelDataValue::Native { offset, length } => {
            let swap = if syntax == EXPLICIT_VR_BIG_ENDIAN {
                word_size(located.vr)
            } else {
                1
            };
            (vec![(base + offset, u64::from(*length))], swap, false)
        }
        PixelDataValue::Encapsulated { items } => {
            let fragments = items
                .iter()
                .skip(1)
                .map(|item| (base + item.offset, u64::from(item.length)))
                .collect();
            (fragments, 1, true)
        }
    };
    let acceptable = |want: &BulkWanted| match want {
        BulkWanted::Stored => true,
        BulkWanted::Uncompressed => !compressed,
        BulkWanted::Syntax(uid) => {
            if compressed {
                uid == syntax
            } else {
                uid == EXPLICIT_VR_LITTLE_ENDIAN
            }
        }
    };
    if !wanted.iter().any(acceptable) {
        return Err(WebError::NotAcceptable(if compressed {
            format!(
                "{path} is stored compressed in transfer syntax {syntax} and decompression is \
                 not implemented: ask for transfer-syntax=* or {syntax}"
            )
        } else {
            format!("{path} is sent uncompressed (transfer syntax {EXPLICIT_VR_LITTLE_ENDIAN})")
        }));
    }
    let octet_stream = ContentType::new("application", "octet-stream")
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let mut part_type = octet_stream.clone();
    if compressed {
        part_type = part_type
            .with_parameter("transfer-syntax", syntax)
            .map_err(|error| WebError::Internal(error.to_string()))?;
    }
    let content_location = format!("{}/{}", uris.base, resource.to_path());
    let headers = PartHeaders::new(part_type)
        .with_content_location(&content_location)
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let encoder = Encoder::new(octet_stream);
    let part = match inflated {
        Some(inflated) => {
            let mut value = Vec::new();
            for (offset, length) in ranges {
                let range = usize::try_from(offset)
                    .ok()
                    .and_then(|start| {
                        Some(start..start.checked_add(usize::try_from(length).ok()?)?)
                    })
                    .and_then(|range| inflated.get(range))
                    .ok_or_else(|| {
                        WebError::Internal(format!("{path} lies past the inflated data set"))
                    })?;
                value.extend_from_slice(range);
            }
            Part::bytes(headers, value)
        }
        None => Part::stream(headers, ranges_stream(instance.location.path, ranges, swap)),
    };
    let content_type = header_value(&encoder.content_type().to_string())?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(encoder.encode(stream::iter([part]))),
    )
        .into_response())
}

fn header_value(text: &str) -> Result<HeaderValue, WebError> {
    HeaderValue::from_str(text).map_err(|error| WebError::Internal(error.to_string()))
}

/// The binary VRs (PS3.5 §6.2) whose values are bulk data.
fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// The size of the words of a binary VR that a change of byte order swaps.
fn word_size(vr: VR) -> usize {
    match vr {
        VR::OW => 2,
        VR::OF | VR::OL => 4,
        VR::OD | VR::OV => 8,
        _ => 1,
    }
}

/// The representations of bulk data the client accepts, most preferred first (PS3.18 8.7.5):
/// `multipart/related; type="application/octet-stream"` with or without a transfer syntax,
/// `multipart/related` and wild cards; none of them is 406.
fn negotiate_bulk(
    headers: &HeaderMap,
    state: &SharedState,
    resource: &Resource,
) -> Result<Vec<BulkWanted>, WebError> {
    let Some(accept) = accept_of(headers, state, None)? else {
        return Ok(vec![BulkWanted::Uncompressed]);
    };
    let mut wanted = Vec::new();
    for range in accept.preferred() {
        let media = &range.media_type;
        // A wild card, or multipart/related of any part type (no `type`, or `type="*/*"` as
        // dicomweb-client sends): whatever the value is stored as, unless a transfer syntax is
        // named.
        let untyped_related = media.is("multipart", "related")
            && media
                .parameter("type")
                .is_none_or(|part_type| part_type.trim() == "*/*" || part_type.trim() == "*");
        if media.is("*", "*") || media.is("multipart", "*") || untyped_related {
            wanted.push(match media.parameter("transfer-syntax") {
                Some(uid) if uid != "*" => BulkWanted::Syntax(uid.to_owned()),
                _ => BulkWanted::Stored,
            });
            continue;
        }
        if let Ok(Representation::OctetStream(syntax)) = Representation::from_content_type(media) {
            wanted.push(match syntax {
                None => BulkWanted::Uncompressed,
                Some(TransferSyntax::Any) => BulkWanted::Stored,
                Some(TransferSyntax::Uid(uid)) => BulkWanted::Syntax(uid),
            });
        }
    }
    if wanted.is_empty() {
        return Err(WebError::NotAcceptable(format!(
            "{resource} is sent as multipart/related; type=\"application/octet-stream\", which \
             \"{accept}\" does not accept"
        )));
    }
    Ok(wanted)
}

/// The bytes of the file at `path` in `ranges` (offset, length), one after the other, read in
/// pieces as the stream is polled, each piece's words of `swap` bytes reversed (little endian
/// out of big endian); a file that ends sooner is an error.
fn ranges_stream(
    path: std::path::PathBuf,
    ranges: Vec<(u64, u64)>,
    swap: usize,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    struct Reading {
        path: std::path::PathBuf,
        file: Option<tokio::fs::File>,
        ranges: std::collections::VecDeque<(u64, u64)>,
        /// The range being read: its offset, what is left of it, and whether the file is
        /// positioned at it.
        current: Option<(u64, u64, bool)>,
        swap: usize,
    }
    let reading = Reading {
        path,
        file: None,
        ranges: ranges.into(),
        current: None,
        swap,
    };
    stream::try_unfold(reading, |mut reading| async move {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        loop {
            let (offset, left, positioned) = match reading.current {
                Some((_, 0, _)) | None => match reading.ranges.pop_front() {
                    Some((offset, length)) => (offset, length, false),
                    None => return Ok(None),
                },
                Some(current) => current,
            };
            if left == 0 {
                reading.current = None;
                continue;
            }
            let file = match &mut reading.file {
                Some(file) => file,
                None => reading
                    .file
                    .insert(tokio::fs::File::open(&reading.path).await?),
            };
            if !positioned {
                file.seek(io::SeekFrom::Start(offset)).await?;
            }
            let size = usize::try_from(left.min(READ_CHUNK)).unwrap_or(0);
            let mut buffer = vec![0u8; size];
            file.read_exact(&mut buffer).await.map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!(
                        "{} ends before the bulk data the scan found: {error}",
                        reading.path.display()
                    ),
                )
            })?;
            if reading.swap > 1 {
                for word in buffer.chunks_exact_mut(reading.swap) {
                    word.reverse();
                }
            }
            reading.current = Some((offset + size as u64, left - size as u64, true));
            return Ok(Some((Bytes::from(buffer), reading)));
        }
    })
}
