//! QIDO-RS, the Search transaction (PS3.18 §10.6; query parameters §8.3.4): the query of a
//! search resource, read from a query string within [`QidoLimits`] and written back, and the
//! C-FIND identifier built from it, so that QIDO-RS and C-FIND share one matching engine.
//!
//! Attributes are named as PS3.18 8.3.4.1 says: a keyword (`PatientName`) or a tag of eight hex
//! digits (`00100010`), and through sequences with dots (`00400275.00400009`). The matching and
//! return keys are `dimsum_dataset::query_keys::QueryKey`s, the keys a person gives `findscu`:
//! their values are read VR by VR, and `\` separates values. A UID list may also use commas
//! (8.3.4.1 UID List Matching), which are read as `\`.
//!
//! `includefield=all` asks for every attribute the origin server has; a C-FIND identifier cannot
//! say that, so [`QidoQuery::includes_all`] tells the server to answer with whole records.
//! Retrieve URL (0008,1190), which Tables 10.6.3-3 to -5 require, is the server's to add: the
//! archive holds no such attribute.

use std::fmt;

use dimsum_dataset::dicom_core::Tag;
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::query_keys::{KeyError, QueryKey, apply_keys};
use percent_encoding::percent_decode_str;

use crate::resource::Resource;

/// Bounds on a QIDO-RS query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QidoLimits {
    /// Longest query string, in bytes, before decoding.
    pub max_query_length: usize,
    /// Most parameters (`name=value` pairs).
    pub max_parameters: usize,
    /// Longest value of one parameter, decoded.
    pub max_value_length: usize,
    /// Most attributes named by `includefield`, all parameters together.
    pub max_include_fields: usize,
}

impl Default for QidoLimits {
    fn default() -> Self {
        Self {
            max_query_length: 64 * 1024,
            max_parameters: 256,
            max_value_length: 16 * 1024,
            max_include_fields: 256,
        }
    }
}

/// Why a QIDO-RS request cannot be answered. Every one is a bad request (400, PS3.18 10.6.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QidoError {
    #[error(
        "{resource:?} is not a search resource: search /studies, /series, /instances or their study- and series-scoped forms"
    )]
    NotASearchResource { resource: String },
    #[error("the query string is {length} bytes long, more than the {limit} accepted")]
    QueryTooLong { length: usize, limit: usize },
    #[error("the query string has more than {limit} parameters")]
    TooManyParameters { limit: usize },
    #[error("the value of {name:?} is longer than the {limit} bytes accepted")]
    ValueTooLong { name: String, limit: usize },
    #[error("parameter {index} of the query string is not valid percent-encoded UTF-8")]
    NotUtf8 { index: usize },
    #[error("a query parameter has no name")]
    EmptyName,
    #[error(
        "{name:?} is neither a query parameter of PS3.18 8.3.4 nor a keyword of the DICOM dictionary"
    )]
    UnknownAttribute { name: String },
    #[error("{text:?} is not a valid tag: write eight hex digits, as 00100010")]
    BadTag { text: String },
    #[error("{name:?} cannot be matched: {source}")]
    InvalidKey {
        name: String,
        #[source]
        source: KeyError,
    },
    #[error("attribute {name:?} is given more than once")]
    DuplicateAttribute { name: String },
    #[error("parameter {name} is given more than once")]
    DuplicateParameter { name: &'static str },
    #[error("{name}={value:?} is not a valid value: {expected}")]
    InvalidValue {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("includefield names more than {limit} attributes")]
    TooManyIncludeFields { limit: usize },
    #[error("{name:?} is set by the resource path and cannot be a query key too")]
    ConflictsWithPath { name: String },
}

impl QidoError {
    /// The HTTP status: 400 Bad Request (PS3.18 10.6.2 and 8.5), 404 for a resource that is
    /// not searched.
    pub fn status(&self) -> u16 {
        match self {
            QidoError::NotASearchResource { .. } => 404,
            _ => 400,
        }
    }
}

/// The level a QIDO-RS search resource queries (PS3.18 10.6.1), with its Query/Retrieve Level
/// value (PS3.4 C.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QidoLevel {
    Study,
    Series,
    Instance,
}

impl QidoLevel {
    /// The value of Query/Retrieve Level (0008,0052).
    pub fn query_retrieve_level(self) -> &'static str {
        match self {
            QidoLevel::Study => "STUDY",
            QidoLevel::Series => "SERIES",
            QidoLevel::Instance => "IMAGE",
        }
    }
}

/// An attribute named in a query (PS3.18 8.3.4.1: `{attributeID}`), as written and as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    text: String,
    key: QueryKey,
}

impl Attribute {
    /// Reads a keyword, a tag of eight hex digits, or a dotted path of them.
    pub fn parse(text: &str) -> Result<Attribute, QidoError> {
        Ok(Attribute {
            text: text.to_owned(),
            key: query_key(text, None)?,
        })
    }

    /// The attribute as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The attribute set (the last of its path).
    pub fn tag(&self) -> Tag {
        self.key.tag()
    }

    /// The attributes from the top level down.
    pub fn path(&self) -> Vec<Tag> {
        self.key.path().iter().map(|step| step.tag).collect()
    }
}

/// A matching key of a query (`{attributeID}={value}`, PS3.18 8.3.4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchKey {
    attribute: String,
    value: String,
    key: QueryKey,
}

impl MatchKey {
    /// The attribute as written.
    pub fn attribute(&self) -> &str {
        &self.attribute
    }

    /// The value as written (decoded from the query string).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The key as it goes into the C-FIND identifier.
    pub fn key(&self) -> &QueryKey {
        &self.key
    }
}

/// A QIDO-RS query (PS3.18 10.6.1 and 8.3.4): the search resource's level and the UIDs its path
/// fixes, the matching keys, `includefield`, `fuzzymatching`, `limit` and `offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct QidoQuery {
    /// The level searched.
    pub level: QidoLevel,
    /// The Study Instance UID the path fixes (`studies/{study}/…`).
    pub study: Option<String>,
    /// The Series Instance UID the path fixes (`…/series/{series}/instances`).
    pub series: Option<String>,
    /// The matching keys, in the order given.
    pub keys: Vec<MatchKey>,
    /// The attributes `includefield` names, in the order given.
    pub include: Vec<Attribute>,
    /// `includefield=all`.
    pub include_all: bool,
    /// `fuzzymatching` (8.3.4.5), when given.
    pub fuzzy_matching: Option<bool>,
    /// `limit` (8.3.4.4), when given: at least 1.
    pub limit: Option<u32>,
    /// `offset` (8.3.4.4), when given.
    pub offset: Option<u32>,
}

impl QidoQuery {
    /// An empty query of a search resource: `studies`, `series`, `instances`,
    /// `studies/{s}/series`, `studies/{s}/instances`, `studies/{s}/series/{se}/instances`.
    pub fn new(resource: &Resource) -> Result<QidoQuery, QidoError> {
        let (level, study, series) = match resource {
            Resource::Studies => (QidoLevel::Study, None, None),
            Resource::AllSeries => (QidoLevel::Series, None, None),
            Resource::AllInstances => (QidoLevel::Instance, None, None),
            Resource::StudySeries(study) => (QidoLevel::Series, Some(study.clone()), None),
            Resource::StudyInstances(study) => (QidoLevel::Instance, Some(study.clone()), None),
            Resource::SeriesInstances(study, series) => (
                QidoLevel::Instance,
                Some(study.clone()),
                Some(series.clone()),
            ),
            other => {
                return Err(QidoError::NotASearchResource {
                    resource: other.to_path(),
                });
            }
        };
        Ok(QidoQuery {
            level,
            study,
            series,
            keys: Vec::new(),
            include: Vec::new(),
            include_all: false,
            fuzzy_matching: None,
            limit: None,
            offset: None,
        })
    }

    /// Reads the query string (without `?`) of a search of `resource`, within the default
    /// [`QidoLimits`].
    pub fn parse(resource: &Resource, query: &str) -> Result<QidoQuery, QidoError> {
        Self::parse_with(resource, query, &QidoLimits::default())
    }

    /// Reads the query string (without `?`) of a search of `resource` within `limits`.
    /// `application/x-www-form-urlencoded` rules: `+` is a space, `%XX` a byte; the decoded
    /// names and values must be UTF-8. `accept` and `charset` (8.3.3) are left to the caller.
    pub fn parse_with(
        resource: &Resource,
        query: &str,
        limits: &QidoLimits,
    ) -> Result<QidoQuery, QidoError> {
        if query.len() > limits.max_query_length {
            return Err(QidoError::QueryTooLong {
                length: query.len(),
                limit: limits.max_query_length,
            });
        }
        let pairs = || query.split('&').filter(|p| !p.is_empty());
        if pairs().nth(limits.max_parameters).is_some() {
            return Err(QidoError::TooManyParameters {
                limit: limits.max_parameters,
            });
        }
        let mut result = QidoQuery::new(resource)?;
        let (mut seen_limit, mut seen_offset, mut seen_fuzzy) = (false, false, false);
        for (index, pair) in pairs().enumerate() {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(raw_name, index)?;
            let value = decode(raw_value, index)?;
            if value.len() > limits.max_value_length {
                return Err(QidoError::ValueTooLong {
                    name: name.chars().take(64).collect(),
                    limit: limits.max_value_length,
                });
            }
            match name.as_str() {
                "" => return Err(QidoError::EmptyName),
                "limit" => {
                    once(&mut seen_limit, "limit")?;
                    result.limit = Some(positive("limit", &value, 1)?);
                }
                "offset" => {
                    once(&mut seen_offset, "offset")?;
                    result.offset = Some(positive("offset", &value, 0)?);
                }
                "fuzzymatching" => {
                    once(&mut seen_fuzzy, "fuzzymatching")?;
                    result.fuzzy_matching = Some(match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(QidoError::InvalidValue {
                                name: "fuzzymatching",
                                value,
                                expected: "true or false",
                            });
                        }
                    });
                }
                "includefield" => {
                    for field in value.split(',').map(str::trim) {
                        if field == "all" {
                            result.include_all = true;
                            continue;
                        }
                        if result.include.len() == limits.max_include_fields {
                            return Err(QidoError::TooManyIncludeFields {
                                limit: limits.max_include_fields,
                            });
                        }
                        result.include.push(Attribute::parse(field)?);
                    }
                }
                // Query parameters of every DICOMweb request (8.3.3.1, 8.3.3.2), negotiated by
                // the server from the request, not matched.
                "accept" | "charset" => {}
                _ => {
                    result.add_key(&name, &value)?;
                }
            }
        }
        Ok(result)
    }

    /// Adds a matching key `attribute=value` (a client building a query); the errors of
    /// [`QidoQuery::parse`].
    pub fn with_key(mut self, attribute: &str, value: &str) -> Result<QidoQuery, QidoError> {
        self.add_key(attribute, value)?;
        Ok(self)
    }

    /// Adds an attribute to `includefield`.
    pub fn with_include(mut self, attribute: &str) -> Result<QidoQuery, QidoError> {
        self.include.push(Attribute::parse(attribute)?);
        Ok(self)
    }

    fn add_key(&mut self, attribute: &str, value: &str) -> Result<(), QidoError> {
        let key = query_key(attribute, Some(value))?;
        let path: Vec<Tag> = key.path().iter().map(|step| step.tag).collect();
        if path == [tags::STUDY_INSTANCE_UID] && self.study.is_some()
            || path == [tags::SERIES_INSTANCE_UID] && self.series.is_some()
            || path == [tags::QUERY_RETRIEVE_LEVEL]
        {
            return Err(QidoError::ConflictsWithPath {
                name: attribute.to_owned(),
            });
        }
        let duplicate = self.keys.iter().any(|existing| {
            existing
                .key
                .path()
                .iter()
                .map(|s| s.tag)
                .eq(path.iter().copied())
        });
        if duplicate {
            return Err(QidoError::DuplicateAttribute {
                name: attribute.to_owned(),
            });
        }
        self.keys.push(MatchKey {
            attribute: attribute.to_owned(),
            value: value.to_owned(),
            key,
        });
        Ok(())
    }

    /// The search resource the query is made on.
    pub fn resource(&self) -> Resource {
        match (self.level, &self.study, &self.series) {
            (QidoLevel::Study, _, _) => Resource::Studies,
            (QidoLevel::Series, None, _) => Resource::AllSeries,
            (QidoLevel::Series, Some(study), _) => Resource::StudySeries(study.clone()),
            (QidoLevel::Instance, None, _) => Resource::AllInstances,
            (QidoLevel::Instance, Some(study), None) => Resource::StudyInstances(study.clone()),
            (QidoLevel::Instance, Some(study), Some(series)) => {
                Resource::SeriesInstances(study.clone(), series.clone())
            }
        }
    }

    /// Whether `includefield=all` asked for every attribute.
    pub fn includes_all(&self) -> bool {
        self.include_all
    }

    /// The query string (without `?`): the matching keys in order, then `includefield` (one
    /// comma-separated list), `fuzzymatching`, `limit` and `offset`, form-urlencoded.
    pub fn to_query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for key in &self.keys {
            out.append_pair(&key.attribute, &key.value);
        }
        let mut fields: Vec<&str> = self.include.iter().map(Attribute::as_str).collect();
        if self.include_all {
            fields.push("all");
        }
        if !fields.is_empty() {
            out.append_pair("includefield", &fields.join(","));
        }
        if let Some(fuzzy) = self.fuzzy_matching {
            out.append_pair("fuzzymatching", if fuzzy { "true" } else { "false" });
        }
        if let Some(limit) = self.limit {
            out.append_pair("limit", &limit.to_string());
        }
        if let Some(offset) = self.offset {
            out.append_pair("offset", &offset.to_string());
        }
        out.finish()
    }

    /// The return keys PS3.18 requires of this search (Tables 10.6.3-3 to 10.6.3-5, with
    /// those of the levels above for `series` and `instances` searches not scoped by the
    /// path, 10.6.3.3), Retrieve URL aside.
    pub fn required_return_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        match self.level {
            QidoLevel::Study => keys.extend_from_slice(STUDY_RETURN_KEYS),
            QidoLevel::Series => {
                if self.study.is_none() {
                    keys.extend_from_slice(STUDY_RETURN_KEYS);
                }
                keys.extend_from_slice(SERIES_RETURN_KEYS);
            }
            QidoLevel::Instance => {
                if self.study.is_none() {
                    keys.extend_from_slice(STUDY_RETURN_KEYS);
                }
                if self.series.is_none() {
                    keys.extend_from_slice(SERIES_RETURN_KEYS);
                }
                keys.extend_from_slice(INSTANCE_RETURN_KEYS);
            }
        }
        keys
    }

    /// The C-FIND identifier of the query (PS3.4 C.4.1.1.3, Study Root): Query/Retrieve Level,
    /// the return keys PS3.18 requires ([`QidoQuery::required_return_keys`]), the
    /// `includefield` attributes, the UIDs the path fixes and the matching keys, a matching key
    /// overriding a return key of the same attribute. The archive's `QueryPlan` takes it as a
    /// C-FIND's.
    pub fn identifier(&self) -> Result<InMemDicomObject, QidoError> {
        let mut keys = Vec::new();
        let level = format!("00080052={}", self.level.query_retrieve_level());
        keys.push(builtin_key(&level)?);
        for text in self.required_return_keys() {
            keys.push(builtin_key(text)?);
        }
        keys.extend(self.include.iter().map(|field| field.key.clone()));
        if let Some(study) = &self.study {
            keys.push(builtin_key(&format!("0020000D={study}"))?);
        }
        if let Some(series) = &self.series {
            keys.push(builtin_key(&format!("0020000E={series}"))?);
        }
        keys.extend(self.keys.iter().map(|key| key.key.clone()));
        let mut identifier = InMemDicomObject::new_empty();
        apply_keys(&mut identifier, &keys).map_err(|source| QidoError::InvalidKey {
            name: "identifier".to_owned(),
            source,
        })?;
        Ok(identifier)
    }
}

impl fmt::Display for QidoQuery {
    /// The resource and its query string, as a request target relative to the service root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = self.to_query_string();
        if query.is_empty() {
            write!(f, "{}", self.resource())
        } else {
            write!(f, "{}?{query}", self.resource())
        }
    }
}

/// Study return keys, PS3.18 Table 10.6.3-3 (Retrieve URL aside).
const STUDY_RETURN_KEYS: &[&str] = &[
    "00080005", // Specific Character Set
    "00080020", // Study Date
    "00080030", // Study Time
    "00080050", // Accession Number
    "00080056", // Instance Availability
    "00080061", // Modalities in Study
    "00080090", // Referring Physician's Name
    "00080201", // Timezone Offset From UTC
    "00100010", // Patient's Name
    "00100020", // Patient ID
    "00100030", // Patient's Birth Date
    "00100040", // Patient's Sex
    "0020000D", // Study Instance UID
    "00200010", // Study ID
    "00201206", // Number of Study Related Series
    "00201208", // Number of Study Related Instances
];

/// Series return keys, PS3.18 Table 10.6.3-4 (Retrieve URL aside).
const SERIES_RETURN_KEYS: &[&str] = &[
    "00080005",          // Specific Character Set
    "00080060",          // Modality
    "00080201",          // Timezone Offset From UTC
    "0008103E",          // Series Description
    "0020000E",          // Series Instance UID
    "00200011",          // Series Number
    "00201209",          // Number of Series Related Instances
    "00400244",          // Performed Procedure Step Start Date
    "00400245",          // Performed Procedure Step Start Time
    "00400275.00400009", // Request Attribute Sequence > Scheduled Procedure Step ID
    "00400275.00401001", // Request Attribute Sequence > Requested Procedure ID
];

/// Instance return keys, PS3.18 Table 10.6.3-5 (Retrieve URL aside).
const INSTANCE_RETURN_KEYS: &[&str] = &[
    "00080005", // Specific Character Set
    "00080016", // SOP Class UID
    "00080018", // SOP Instance UID
    "00080056", // Instance Availability
    "00080201", // Timezone Offset From UTC
    "00200013", // Instance Number
    "00280010", // Rows
    "00280011", // Columns
    "00280100", // Bits Allocated
    "00280008", // Number of Frames
];

fn builtin_key(text: &str) -> Result<QueryKey, QidoError> {
    QueryKey::parse(text).map_err(|source| QidoError::InvalidKey {
        name: text.to_owned(),
        source,
    })
}

/// Percent-decodes a name or value of a query string (`+` is a space), strictly UTF-8.
fn decode(raw: &str, index: usize) -> Result<String, QidoError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| QidoError::NotUtf8 { index })
}

fn once(seen: &mut bool, name: &'static str) -> Result<(), QidoError> {
    if std::mem::replace(seen, true) {
        return Err(QidoError::DuplicateParameter { name });
    }
    Ok(())
}

/// An unsigned decimal of at most ten digits, at least `min`.
fn positive(name: &'static str, value: &str, min: u32) -> Result<u32, QidoError> {
    let invalid = || QidoError::InvalidValue {
        name,
        value: value.chars().take(32).collect(),
        expected: if min == 0 {
            "an unsigned integer"
        } else {
            "a positive integer"
        },
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number: u32 = value.parse().map_err(|_| invalid())?;
    if number < min {
        return Err(invalid());
    }
    Ok(number)
}

/// The `QueryKey` of `attribute` (with `value` for a matching key, none for a return key),
/// after checking the attribute is written as PS3.18 8.3.4.1 says.
fn query_key(attribute: &str, value: Option<&str>) -> Result<QueryKey, QidoError> {
    if attribute.is_empty() {
        return Err(QidoError::EmptyName);
    }
    let mut vr_is_uid = false;
    for component in attribute.split('.') {
        let alphanumeric =
            !component.is_empty() && component.bytes().all(|b| b.is_ascii_alphanumeric());
        let looks_like_tag = component.bytes().next().is_some_and(|b| b.is_ascii_digit());
        if !alphanumeric {
            return Err(QidoError::BadTag {
                text: attribute.chars().take(64).collect(),
            });
        }
        if looks_like_tag
            && !(component.len() == 8 && component.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(QidoError::BadTag {
                text: component.chars().take(64).collect(),
            });
        }
    }
    let map_error = |source: KeyError| match source {
        KeyError::UnknownKeyword { name, .. } => QidoError::UnknownAttribute { name },
        KeyError::BadTag { text, .. } => QidoError::BadTag { text },
        source => QidoError::InvalidKey {
            name: attribute.chars().take(64).collect(),
            source,
        },
    };
    // Resolve the attribute first, to learn its VR (a UID list may be comma-separated).
    let bare = QueryKey::parse(attribute).map_err(map_error)?;
    if bare.vr() == dimsum_dataset::dicom_core::VR::UI {
        vr_is_uid = true;
    }
    match value {
        None => Ok(bare),
        Some(value) => {
            let value = if vr_is_uid {
                value.replace(',', "\\")
            } else {
                value.to_owned()
            };
            QueryKey::parse(&format!("{attribute}={value}")).map_err(map_error)
        }
    }
}
