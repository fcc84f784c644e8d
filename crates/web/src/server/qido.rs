//! QIDO-RS, the Search transaction (PS3.18 10.6): `GET {root}/studies`, `/series`,
//! `/instances`, `/studies/{study}/series`, `/studies/{study}/instances` and
//! `/studies/{study}/series/{series}/instances`, answered from the archive's index through the
//! same query plan and matching engine as C-FIND.
//!
//! * **Query** ([`crate::qido`]): the query string is read within [`WebConfig::qido_limits`]
//!   into the Study Root C-FIND identifier (matching keys by keyword or tag, `includefield`,
//!   the return keys of Tables 10.6.3-3 to -5); DA, TM and DT keys must be values or ranges the
//!   matching rules read (400 otherwise, where C-FIND would match nothing). Keys of levels below
//!   the searched one match as in a relational query (PS3.4 C.4.1.2.2.2): an entity matches when
//!   one of its descendants does. `fuzzymatching=true` turns on fuzzy matching of person names
//!   ([`dimsum_pacs::matching::FuzzyName`]). `includefield=all` answers with every attribute the
//!   index keeps for the entity and its parents.
//! * **Paging** (PS3.18 8.3.4.4): `offset` matches are skipped, then at most `limit` are sent,
//!   never more than [`WebConfig::max_search_results`]. When that maximum cut the results
//!   short (no `limit`, or a larger one) and more matches remain, the response carries
//!   `Warning: 299 {service}: The number of results exceeded the maximum supported by the
//!   server. Additional results can be requested.`; to know that before the body starts, a
//!   first pass counts up to one match past the maximum, holding nothing (as dcm4chee counts
//!   first). Matches come in the index's order, the same for the same query on the same data.
//! * **Responses**: 204 No Content when nothing matches (8.3.4.4.1), else 200 with, per match,
//!   the keys asked, Retrieve URL (0008,1190) of the study, series or instance, and Instance
//!   Availability `ONLINE`. `application/dicom+json` (the default, also for `application/json`
//!   and `*/*`) is one JSON array written as the matches come from the index cursor;
//!   `multipart/related; type="application/dicom+xml"` is one PS3.19 document per match. Other
//!   media types are 406. The `accept` query parameter (8.3.3.1), when given, replaces the
//!   `Accept` header. A failure of the index after the body started ends it without its closing
//!   `]` or delimiter, so a client never takes a cut list for a whole one.

use std::io;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::future::ready;
use futures_util::stream::{self, BoxStream, StreamExt};

use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::json::to_json;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::xml::{XmlOptions, to_xml};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::IndexError;
use dimsum_pacs::matching::{self, MatchOptions};

use super::{SharedState, WebError, accept_of, resource_of};
use crate::multipart::{ContentType, Encoder, Part, PartHeaders};
use crate::qido::{QidoError, QidoLevel, QidoQuery};
use crate::resource::Resource;

/// The text of the Warning header when the server's maximum cut the results (PS3.18 8.3.4.4).
const MORE_RESULTS: &str = "The number of results exceeded the maximum supported by the server. Additional results can be requested.";

/// The search routes.
pub(super) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/studies", get(search))
        .route("/series", get(search))
        .route("/instances", get(search))
        .route("/studies/{study}/series", get(search))
        .route("/studies/{study}/instances", get(search))
        .route("/studies/{study}/series/{series}/instances", get(search))
}

/// How search results are sent (PS3.18 10.6.3, 8.7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchMedia {
    /// `application/dicom+json`: one JSON array (F.2.1).
    Json,
    /// `multipart/related; type="application/dicom+xml"`: one part per result (PS3.19 A.1).
    Xml,
}

/// The GET of a search resource.
async fn search(
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let resource = resource_of(&uri)?;
    let raw_query = uri.query().unwrap_or("");
    let query = QidoQuery::parse_with(&resource, raw_query, &state.config.qido_limits)
        .map_err(qido_error)?;
    check_date_time_keys(&query)?;
    let media = negotiate(&headers, raw_query, &state)?;
    let plan = plan(&state, &query)?;

    let maximum = usize::try_from(state.config.max_search_results.max(1)).unwrap_or(usize::MAX);
    let asked = query.limit.map(|limit| limit as usize);
    let results = asked.map_or(maximum, |limit| limit.min(maximum));
    let cut_by_maximum = asked.is_none_or(|limit| limit > maximum);
    let offset = query.offset.unwrap_or(0) as usize;
    let through = offset.saturating_add(results);

    let base = super::stow::base_url(&headers, &state);
    let more = cut_by_maximum && more_than(&state, plan.clone(), through).await?;

    let index = state.archive.index();
    let matches = index
        .query(plan, Some(through))
        .await
        .map_err(index_error)?;
    // Skip `offset` matches; the index ends the stream with TooManyMatches after `through`.
    let mut skipped = 0usize;
    let mut matches = matches.filter_map(move |item| {
        ready(match item {
            Ok(_) if skipped < offset => {
                skipped += 1;
                None
            }
            Ok(found) => Some(Ok(found)),
            Err(IndexError::TooManyMatches { .. }) => None,
            Err(error) => Some(Err(error)),
        })
    });
    let first = match matches.next().await {
        None => return Ok(StatusCode::NO_CONTENT.into_response()),
        Some(Err(error)) => return Err(index_error(error)),
        Some(Ok(first)) => first,
    };
    let level = query.level;
    let url_base = base.clone();
    let results = stream::once(ready(Ok(first)))
        .chain(matches)
        .map(move |item| item.map(|found| result(found, level, &url_base)))
        .boxed();
    let mut response = match media {
        SearchMedia::Json => json_response(results),
        SearchMedia::Xml => xml_response(results)?,
    };
    if more {
        let warning = HeaderValue::from_str(&format!("299 {base}: {MORE_RESULTS}"))
            .or_else(|_| HeaderValue::from_str(&format!("299 -: {MORE_RESULTS}")))
            .map_err(|error| WebError::Internal(error.to_string()))?;
        response.headers_mut().insert(header::WARNING, warning);
    }
    Ok(response)
}

/// The query plan of a search: the Study Root C-FIND identifier of the query, with the
/// archive's matching options, fuzzy person names when asked, relational matching of lower
/// level keys, and every attribute for `includefield=all`.
fn plan(state: &SharedState, query: &QidoQuery) -> Result<QueryPlan, WebError> {
    let identifier = query.identifier().map_err(qido_error)?;
    let options = MatchOptions {
        fuzzy_person_names: query.fuzzy_matching == Some(true),
        ..state.archive.config().matching
    };
    Ok(
        QueryPlan::new(QueryModel::StudyRoot, QueryService::Find, identifier)
            .map_err(|failure| WebError::BadRequest(failure.comment))?
            .with_options(options)
            .with_relational(true)
            .with_all_attributes(query.includes_all()),
    )
}

/// Whether more than `through` entities match (a pass over the matches holding none of them).
async fn more_than(state: &SharedState, plan: QueryPlan, through: usize) -> Result<bool, WebError> {
    let mut matches = state
        .archive
        .index()
        .query(plan, Some(through))
        .await
        .map_err(index_error)?;
    while let Some(item) = matches.next().await {
        match item {
            Ok(_) => {}
            Err(IndexError::TooManyMatches { .. }) => return Ok(true),
            Err(error) => return Err(index_error(error)),
        }
    }
    Ok(false)
}

/// A match as a search result: Query/Retrieve Level left out, text declared UTF-8 (as DICOM
/// JSON and XML are written), Instance Availability `ONLINE` (everything the archive holds is
/// on its disk), and the Retrieve URL of the study, series or instance (PS3.18 Tables 10.6.3-3
/// to -5).
fn result(mut found: InMemDicomObject, level: QidoLevel, base: &str) -> InMemDicomObject {
    found.remove_element(tags::QUERY_RETRIEVE_LEVEL);
    if found.get(tags::SPECIFIC_CHARACTER_SET).is_some() {
        found.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
    }
    if found.get(tags::INSTANCE_AVAILABILITY).is_some() {
        found.put(DataElement::new(
            tags::INSTANCE_AVAILABILITY,
            VR::CS,
            PrimitiveValue::from("ONLINE"),
        ));
    }
    let uid = |tag| {
        found
            .get(tag)
            .and_then(|element| element.to_str().ok())
            .map(|text| text.trim_end_matches(['\0', ' ']).to_owned())
            .filter(|text| !text.is_empty())
    };
    let study = uid(tags::STUDY_INSTANCE_UID);
    let series = uid(tags::SERIES_INSTANCE_UID);
    let instance = uid(tags::SOP_INSTANCE_UID);
    let resource = match (level, study, series, instance) {
        (QidoLevel::Study, Some(study), _, _) => Some(Resource::Study(study)),
        (QidoLevel::Series, Some(study), Some(series), _) => Some(Resource::Series(study, series)),
        (QidoLevel::Instance, Some(study), Some(series), Some(instance)) => {
            Some(Resource::Instance(study, series, instance))
        }
        _ => None,
    };
    if let Some(resource) = resource {
        found.put(DataElement::new(
            tags::RETRIEVE_URL,
            VR::UR,
            PrimitiveValue::from(format!("{base}/{}", resource.to_path())),
        ));
    }
    found
}

/// The results as one JSON array, each written as it comes; an error ends the body before `]`.
fn json_response(results: BoxStream<'static, Result<InMemDicomObject, IndexError>>) -> Response {
    let mut first = true;
    let body = results
        .map(move |item| {
            let found = item.map_err(|error| io::Error::other(error.to_string()))?;
            let mut bytes = Vec::with_capacity(2048);
            bytes.push(if first { b'[' } else { b',' });
            first = false;
            serde_json::to_writer(&mut bytes, &to_json(&found)).map_err(io::Error::other)?;
            Ok(Bytes::from(bytes))
        })
        .chain(stream::once(ready(Ok(Bytes::from_static(b"]")))));
    let body = stop_after_error(body);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        Body::from_stream(body),
    )
        .into_response()
}

/// The results as multipart/related parts of `application/dicom+xml`; an error ends the body
/// without its closing delimiter.
fn xml_response(
    results: BoxStream<'static, Result<InMemDicomObject, IndexError>>,
) -> Result<Response, WebError> {
    let xml = ContentType::new("application", "dicom+xml")
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let encoder = Encoder::new(xml.clone());
    let content_type = HeaderValue::from_str(&encoder.content_type().to_string())
        .map_err(|error| WebError::Internal(error.to_string()))?;
    let parts = results.map(move |item| {
        let headers = PartHeaders::new(xml.clone());
        match item {
            Ok(found) => Part::bytes(headers, to_xml(&found, &XmlOptions::new())),
            Err(error) => Part::stream(
                headers,
                stream::once(ready(Err(io::Error::other(error.to_string())))),
            ),
        }
    });
    let body = stop_after_error(encoder.encode(parts));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// The stream up to and with its first error, nothing after it.
fn stop_after_error<S>(body: S) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send
where
    S: futures_util::Stream<Item = io::Result<Bytes>> + Send,
{
    body.scan(false, |failed, chunk| {
        if *failed {
            return ready(None);
        }
        *failed = chunk.is_err();
        ready(Some(chunk))
    })
}

/// The representation asked for (PS3.18 8.7.5, 10.6.3): the `accept` query parameter (8.3.3.1)
/// or the `Accept` header, most preferred range first; none means DICOM JSON.
fn negotiate(
    headers: &HeaderMap,
    raw_query: &str,
    state: &SharedState,
) -> Result<SearchMedia, WebError> {
    let from_query: Vec<String> = form_urlencoded::parse(raw_query.as_bytes())
        .filter(|(name, _)| name == "accept")
        .map(|(_, value)| value.into_owned())
        .collect();
    let from_query = (!from_query.is_empty()).then(|| from_query.join(", "));
    let Some(accept) = accept_of(headers, state, from_query.as_deref())? else {
        return Ok(SearchMedia::Json);
    };
    let offered = [
        (media("application", "dicom+json", None)?, SearchMedia::Json),
        (media("application", "json", None)?, SearchMedia::Json),
        (
            media("multipart", "related", Some("application/dicom+xml"))?,
            SearchMedia::Xml,
        ),
    ];
    for range in accept.preferred() {
        if let Some((_, chosen)) = offered.iter().find(|(offer, _)| range.matches(offer)) {
            return Ok(*chosen);
        }
    }
    Err(WebError::NotAcceptable(format!(
        "search results are sent as application/dicom+json or multipart/related; \
         type=\"application/dicom+xml\", which \"{accept}\" does not accept"
    )))
}

fn media(main: &str, sub: &str, related: Option<&str>) -> Result<ContentType, WebError> {
    let content_type =
        ContentType::new(main, sub).map_err(|error| WebError::Internal(error.to_string()))?;
    match related {
        None => Ok(content_type),
        Some(related) => content_type
            .with_parameter("type", related)
            .map_err(|error| WebError::Internal(error.to_string())),
    }
}

/// DA, TM and DT keys must be values or ranges the matching rules read (PS3.4 C.2.2.2.5): a
/// malformed one is a bad request rather than a search that finds nothing.
fn check_date_time_keys(query: &QidoQuery) -> Result<(), WebError> {
    for key in &query.keys {
        let vr = key.key().vr();
        if !matches!(vr, VR::DA | VR::TM | VR::DT) {
            continue;
        }
        let bad = key.value().split('\\').map(str::trim).find(|value| {
            !value.is_empty() && *value != "\"\"" && !matching::is_valid_range_key(vr, value)
        });
        if let Some(bad) = bad {
            let form = match vr {
                VR::DA => "YYYYMMDD",
                VR::TM => "HHMMSS.FFFFFF",
                _ => "YYYYMMDDHHMMSS.FFFFFF&ZZXX",
            };
            return Err(WebError::BadRequest(format!(
                "{}={bad:?} is not a {vr} value or range: write {form} (or a shorter precision), \
                 a range a-b, a- or -b of them",
                key.attribute()
            )));
        }
    }
    Ok(())
}

fn qido_error(error: QidoError) -> WebError {
    match error.status() {
        404 => WebError::NotFound(error.to_string()),
        _ => WebError::BadRequest(error.to_string()),
    }
}

fn index_error(error: IndexError) -> WebError {
    match error {
        IndexError::WriterGone => WebError::Unavailable(error.to_string()),
        other => WebError::Internal(other.to_string()),
    }
}
