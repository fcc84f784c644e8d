//! The DICOM JSON Model (PS3.18 F.2): data sets as QIDO-RS and WADO-RS metadata return them and
//! as `dimsum findscu --json` prints them. The native DICOM XML model ([`crate::xml`], PS3.19
//! A.1) is read and written through the same code, so that both models treat values alike.
//!
//! - **Writing** ([`to_json`], [`to_json_with`]). Text values are written by the dicom-json
//!   crate and put in the form F.2 asks around it: padding is removed (F.2.3: the JSON value is
//!   the value, not its encoding); IS and DS are JSON numbers (F.2.3), and strings only when
//!   they are not numbers; SV and UV are numbers up to 2^53 (the integers a JSON number holds
//!   exactly) and strings beyond; PN values are objects of Alphabetic, Ideographic and Phonetic
//!   component groups (F.2.4); an empty value of a multi-valued attribute is `null`, and an
//!   attribute whose value is empty, an empty sequence included, has no `"Value"` (F.2.5); group
//!   lengths (gggg,0000) are left out (F.2.2). Binary values (OB, OD, OF, OL, OV, OW, UN) are
//!   written here, not by dicom-json (which writes memory order): InlineBinary holds their
//!   bytes little endian whatever the machine (F.2.7). A caller's [`BulkData`] policy
//!   ([`WriteOptions::with_bulk_data`]) may instead send any element, by its tag path, to a
//!   BulkDataURI (F.2.6); encapsulated Pixel Data has no inline form and is written with its VR
//!   only unless the policy gives it a URI. Value and VR combinations that no decoder produces
//!   (a date given for a number, a primitive value on an SQ element) are written as well as they
//!   can be instead of failing.
//! - **Reading** ([`read_json`], [`from_json`], [`parse_json`]). Values are converted here, VR by
//!   VR, and whatever does not fit is a [`JsonError`] naming the attribute's tag path: a number
//!   where text is expected, text that is not a number where one is, a number out of its VR's
//!   range, an AT that is not eight hex digits, an unknown member or VR. IS and DS are accepted
//!   as numbers and as strings (dcm4che and DCMTK write both); `null` values are empty values,
//!   a `null` item an empty item. A BulkDataURI becomes a [`BulkDataReference`] of the
//!   [`PendingDataSet`] read, with an empty value in its place, for the caller to
//!   [resolve](PendingDataSet::resolve). [`JsonLimits`] bound the size of the text, the number of
//!   attributes and the nesting of sequences.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dicom_core::header::Header;
use dicom_core::ops::{AttributeSelector, AttributeSelectorStep};
use dicom_core::value::{C, DataSetSequence, PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Number, Value};

/// Deepest nesting of sequences that [`from_json`] accepts by default (the scanner's default
/// nesting limit).
pub const MAX_JSON_DEPTH: usize = 16;

/// The largest integer a JSON number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The longest DS value (PS3.5 §6.2, Table 6.2-1: 16 bytes).
const MAX_DS_LENGTH: usize = 16;

/// Why a JSON value is not a DICOM JSON Model data set (PS3.18 F.2). `path` names where the
/// problem is, as `0040A730[2].0040A160` (an attribute, an item of it, an attribute in that
/// item).
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("{}: a DICOM JSON data set must be a JSON object, not {found}", describe_path(.path))]
    NotAnObject { path: String, found: &'static str },
    #[error(
        "{}: {key:?} is not a tag; DICOM JSON names each attribute by eight hex digits (ggggeeee)",
        describe_path(.path)
    )]
    BadTag { path: String, key: String },
    #[error("{path}: {reason}")]
    BadAttribute { path: String, reason: String },
    #[error("{path}: {vr:?} is not a DICOM VR")]
    UnknownVr { path: String, vr: String },
    #[error("{path}: a {vr} value must be {expected}, not {found}")]
    WrongValue {
        path: String,
        vr: VR,
        expected: &'static str,
        found: String,
    },
    #[error(
        "{path}: the value is at a BulkDataURI ({uri}); read the data set with its bulk data references and resolve them"
    )]
    BulkDataUri { path: String, uri: String },
    #[error("{path}: an empty (null) value cannot be encoded in a multi-valued {vr} attribute")]
    EmptyNumber { path: String, vr: VR },
    #[error("{path}: sequences nest deeper than {max} levels")]
    TooDeep { path: String, max: usize },
    #[error("the data set has more than {max} attributes (items included)")]
    TooManyElements { max: usize },
    #[error("the DICOM JSON text is {size} bytes, more than the {max} accepted")]
    TooLarge { size: usize, max: usize },
    #[error("invalid DICOM JSON: {0}")]
    Invalid(#[source] serde_json::Error),
}

fn describe_path(path: &str) -> &str {
    if path.is_empty() {
        "the data set"
    } else {
        path
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Where the value of one element goes when a data set is written (PS3.18 F.2.6 and F.2.7,
/// PS3.19 A.1.5): inline, or at a URI the recipient fetches it from (WADO-RS bulk data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkData {
    /// The value itself: `"Value"`, or `"InlineBinary"` for binary VRs.
    Inline,
    /// `"BulkDataURI"` (JSON) or `<BulkData uri=…>` (XML) with this URI instead of the value.
    Uri(String),
}

type BulkDataPolicy<'a> = dyn Fn(&AttributeSelector, &InMemElement) -> BulkData + 'a;

/// How a data set is written in the DICOM JSON (PS3.18 F.2) and XML (PS3.19 A.1) models.
#[derive(Default)]
pub struct WriteOptions<'a> {
    bulk_data: Option<Box<BulkDataPolicy<'a>>>,
}

impl std::fmt::Debug for WriteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("bulk_data", &self.bulk_data.as_ref().map(|_| "policy"))
            .finish()
    }
}

impl<'a> WriteOptions<'a> {
    /// Every value inline, which is the default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks `policy`, for every element with a non-empty value (sequences excepted), whether to
    /// write it inline or as a bulk data URI; it is given the element's tag path from the top of
    /// the data set (items numbered from 0) and the element.
    pub fn with_bulk_data(
        mut self,
        policy: impl Fn(&AttributeSelector, &InMemElement) -> BulkData + 'a,
    ) -> Self {
        self.bulk_data = Some(Box::new(policy));
        self
    }
}

/// `object` in the DICOM JSON Model (PS3.18 F.2): a JSON object with one member per attribute,
/// named by its tag in eight uppercase hex digits, in ascending order, every value inline.
pub fn to_json(object: &InMemDicomObject) -> Value {
    to_json_with(object, &WriteOptions::default())
}

/// `object` in the DICOM JSON Model (PS3.18 F.2), with bulk data where `options` says.
pub fn to_json_with(object: &InMemDicomObject, options: &WriteOptions<'_>) -> Value {
    Value::Object(ModelWriter::new(options, NumberForm::Json).object(object))
}

/// `objects` as a JSON array of DICOM JSON Model objects, as a QIDO-RS response carries them
/// (PS3.18 F.2.1).
pub fn to_json_array(objects: &[InMemDicomObject]) -> Value {
    Value::Array(objects.iter().map(to_json).collect())
}

/// How IS and DS values are written: as JSON numbers (F.2.3) or as the text the XML model
/// carries (PS3.19 A.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberForm {
    Json,
    Text,
}

/// Writes data sets in the JSON model; the XML writer walks what it gives.
pub(crate) struct ModelWriter<'o, 'a> {
    options: &'o WriteOptions<'a>,
    numbers: NumberForm,
    /// The items entered, from the top.
    path: Vec<AttributeSelectorStep>,
}

impl<'o, 'a> ModelWriter<'o, 'a> {
    pub(crate) fn new(options: &'o WriteOptions<'a>, numbers: NumberForm) -> Self {
        Self {
            options,
            numbers,
            path: Vec::new(),
        }
    }

    pub(crate) fn object(&mut self, object: &InMemDicomObject) -> Map<String, Value> {
        let mut map = Map::new();
        for element in object {
            let tag = element.tag();
            if tag.element() == 0x0000 {
                continue;
            }
            map.insert(tag_key(tag), self.attribute(element));
        }
        map
    }

    fn bulk_data(&self, element: &InMemElement) -> BulkData {
        let Some(policy) = &self.options.bulk_data else {
            return BulkData::Inline;
        };
        let steps = self
            .path
            .iter()
            .copied()
            .chain([AttributeSelectorStep::Tag(element.tag())]);
        match AttributeSelector::new(steps) {
            Some(selector) => policy(&selector, element),
            None => BulkData::Inline,
        }
    }

    fn attribute(&mut self, element: &InMemElement) -> Value {
        let vr = element.vr();
        let mut attribute = Map::new();
        attribute.insert("vr".to_owned(), Value::String(vr.to_string().to_owned()));
        match element.value() {
            DicomValue::Sequence(sequence) => {
                if !sequence.items().is_empty() {
                    let mut items = Vec::with_capacity(sequence.items().len());
                    for (index, item) in sequence.items().iter().enumerate() {
                        self.path.push(AttributeSelectorStep::Nested {
                            tag: element.tag(),
                            item: u32::try_from(index).unwrap_or(u32::MAX),
                        });
                        items.push(Value::Object(self.object(item)));
                        self.path.pop();
                    }
                    attribute.insert("Value".to_owned(), Value::Array(items));
                }
            }
            DicomValue::PixelSequence(_) => {
                if let BulkData::Uri(uri) = self.bulk_data(element) {
                    attribute.insert("BulkDataURI".to_owned(), Value::String(uri));
                }
            }
            DicomValue::Primitive(PrimitiveValue::Empty) => {}
            DicomValue::Primitive(value) if vr == VR::SQ => {
                // Not a sequence after all: its bytes, as a value of unknown VR.
                let unknown = InMemElement::new(element.tag(), VR::UN, value.clone());
                return self.attribute(&unknown);
            }
            DicomValue::Primitive(value) => {
                if let BulkData::Uri(uri) = self.bulk_data(element) {
                    attribute.insert("BulkDataURI".to_owned(), Value::String(uri));
                } else if is_binary(vr) {
                    let bytes = little_endian_bytes(value);
                    attribute.insert(
                        "InlineBinary".to_owned(),
                        Value::String(BASE64.encode(bytes)),
                    );
                } else {
                    let values = self.values(element, vr, value);
                    insert_values(&mut attribute, vr, values, self.numbers);
                }
            }
        }
        Value::Object(attribute)
    }

    fn values(&self, element: &InMemElement, vr: VR, value: &PrimitiveValue) -> Vec<Value> {
        if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR) {
            // Single-valued: a backslash is part of the text (PS3.5 §6.2).
            return vec![Value::String(value.to_str().into_owned())];
        }
        let as_text = self.numbers == NumberForm::Text && matches!(vr, VR::DS | VR::IS);
        let written = if !as_text && dicom_json_writes(vr, value) {
            dicom_json::to_value(element).ok()
        } else {
            None
        };
        match written {
            Some(Value::Object(mut written)) => match written.remove("Value") {
                Some(Value::Array(values)) => values,
                _ => Vec::new(),
            },
            _ => value
                .to_multi_str()
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        }
    }
}

/// A tag as F.2.2 names attributes: eight uppercase hex digits.
pub(crate) fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The VRs whose values F.2.7 carries as InlineBinary.
pub(crate) fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// The bytes of a value as Explicit VR Little Endian encodes them, whatever the machine.
fn little_endian_bytes(value: &PrimitiveValue) -> Vec<u8> {
    fn le<T: Copy, const N: usize>(values: &[T], to_le: fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|v| to_le(*v)).collect()
    }
    match value {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::I16(v) => le(v, i16::to_le_bytes),
        PrimitiveValue::U16(v) => le(v, u16::to_le_bytes),
        PrimitiveValue::I32(v) => le(v, i32::to_le_bytes),
        PrimitiveValue::U32(v) => le(v, u32::to_le_bytes),
        PrimitiveValue::I64(v) => le(v, i64::to_le_bytes),
        PrimitiveValue::U64(v) => le(v, u64::to_le_bytes),
        PrimitiveValue::F32(v) => le(v, f32::to_le_bytes),
        PrimitiveValue::F64(v) => le(v, f64::to_le_bytes),
        PrimitiveValue::Tags(v) => v
            .iter()
            .flat_map(|t| {
                let [a, b] = t.group().to_le_bytes();
                let [c, d] = t.element().to_le_bytes();
                [a, b, c, d]
            })
            .collect(),
        other => other.to_bytes().into_owned(),
    }
}

/// Whether dicom-json writes this value with this VR (rather than panicking on a date given for
/// a number, or failing on a primitive value for SQ).
fn dicom_json_writes(vr: VR, value: &PrimitiveValue) -> bool {
    use VR::*;
    let not_a_number = matches!(
        value,
        PrimitiveValue::Date(_)
            | PrimitiveValue::DateTime(_)
            | PrimitiveValue::Time(_)
            | PrimitiveValue::Tags(_)
    );
    match vr {
        FD | IS | FL | DS | SL | SS | SV | UL | US | UV => !not_a_number,
        AT => matches!(value, PrimitiveValue::Tags(_)),
        SQ => false,
        _ => true,
    }
}

/// Inserts `"Value"` after putting each value in the form F.2.3 and F.2.5 ask for; leaves it out
/// when the value is empty.
fn insert_values(attribute: &mut Map<String, Value>, vr: VR, values: Vec<Value>, form: NumberForm) {
    let values: Vec<Value> = values.into_iter().map(|v| normalize(vr, v, form)).collect();
    // One empty value is a value of zero length (F.2.5).
    if values.iter().all(Value::is_null) && values.len() <= 1 {
        return;
    }
    attribute.insert("Value".to_owned(), Value::Array(values));
}

fn normalize(vr: VR, value: Value, form: NumberForm) -> Value {
    use VR::*;
    match (vr, value) {
        (PN, Value::String(text)) => person_name_groups(&text),
        (PN, Value::Object(groups)) => {
            let groups: Map<String, Value> = groups
                .into_iter()
                .filter_map(|(name, group)| match group {
                    Value::String(text) => {
                        let text = unpad(&text);
                        (!is_empty_group(text)).then(|| (name, Value::String(text.to_owned())))
                    }
                    _ => None,
                })
                .collect();
            if groups.is_empty() {
                Value::Null
            } else {
                Value::Object(groups)
            }
        }
        (DS | IS, Value::String(text)) if form == NumberForm::Text => match text.trim() {
            "" => Value::Null,
            number => Value::String(number.to_owned()),
        },
        (DS | FL | FD, Value::String(text)) => match text.trim() {
            "" => Value::Null,
            // An integer stays one (DS "120" is 120, not 120.0).
            number if vr == DS && integer(number).is_some() => {
                integer(number).unwrap_or(Value::Null)
            }
            number => number
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or_else(|| Value::String(number.to_owned()), Value::Number),
        },
        (IS | SS | US | SL | UL | SV | UV, Value::String(text)) => match text.trim() {
            "" => Value::Null,
            number => integer(number).unwrap_or_else(|| Value::String(number.to_owned())),
        },
        (_, Value::String(text)) => {
            let text = unpad(&text);
            if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.to_owned())
            }
        }
        (_, other) => other,
    }
}

/// A PN value's text (`Alphabetic=Ideographic=Phonetic`, PS3.5 §6.2.1) as the object of component
/// groups F.2.4 writes; `null` when every group is empty.
fn person_name_groups(text: &str) -> Value {
    let groups: Map<String, Value> = PN_GROUPS
        .iter()
        .zip(text.split('='))
        .filter_map(|(name, group)| {
            let group = unpad(group);
            (!is_empty_group(group)).then(|| ((*name).to_owned(), Value::String(group.to_owned())))
        })
        .collect();
    if groups.is_empty() {
        Value::Null
    } else {
        Value::Object(groups)
    }
}

/// Whether a person name component group has no component (`""`, `"^^^^"`): F.2.4 leaves it out.
fn is_empty_group(group: &str) -> bool {
    group.bytes().all(|b| b == b'^' || b == b' ')
}

/// The component groups of a person name, in their order (PS3.5 §6.2.1, PS3.18 F.2.4).
pub(crate) const PN_GROUPS: [&str; 3] = ["Alphabetic", "Ideographic", "Phonetic"];

/// An integer (an optional sign and digits, PS3.5 §6.2 IS) as a JSON number when a JSON number
/// holds it exactly.
fn integer(text: &str) -> Option<Value> {
    let n = text.parse::<i64>().ok()?;
    (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER)
        .contains(&n)
        .then(|| Value::Number(Number::from(n)))
}

/// A text value without the padding PS3.5 §6.2 adds (trailing spaces, and NUL for UI).
fn unpad(text: &str) -> &str {
    text.trim_end_matches([' ', '\0'])
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Limits on what [`parse_json`] and [`read_json`] accept from outside the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// The largest JSON text [`parse_json`] parses, in bytes.
    pub max_bytes: usize,
    /// The deepest nesting of sequences.
    pub max_depth: usize,
    /// The most attributes in a data set, those of every item included.
    pub max_elements: usize,
}

impl Default for JsonLimits {
    /// 64 MiB of text, [`MAX_JSON_DEPTH`] levels of sequences, a million attributes.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_depth: MAX_JSON_DEPTH,
            max_elements: 1_000_000,
        }
    }
}

/// An element whose value was given as a bulk data URI (PS3.18 F.2.6, PS3.19 A.1.5): its place
/// in the data set read, which holds an empty value of `vr` there until it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkDataReference {
    /// The element's tag path from the top of the data set (items numbered from 0).
    pub path: AttributeSelector,
    pub vr: VR,
    /// The URI given (a `uuid` of the XML model as `urn:uuid:…`).
    pub uri: String,
}

/// A data set read from the DICOM JSON (PS3.18 F.2) or XML (PS3.19 A.1) model, with the
/// elements whose values are still at bulk data URIs.
#[derive(Debug, Clone)]
pub struct PendingDataSet {
    object: InMemDicomObject,
    bulk_data: Vec<BulkDataReference>,
}

/// Why [`PendingDataSet::resolve`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E: std::error::Error + 'static> {
    #[error("fetching the bulk data of {path} at {uri}: {source}")]
    Fetch {
        path: String,
        uri: String,
        #[source]
        source: E,
    },
    #[error(transparent)]
    Value(JsonError),
}

impl PendingDataSet {
    /// The data set, with empty values where bulk data is still to come.
    pub fn object(&self) -> &InMemDicomObject {
        &self.object
    }

    /// The elements whose values are at bulk data URIs, in the order they were read.
    pub fn bulk_data(&self) -> &[BulkDataReference] {
        &self.bulk_data
    }

    /// The data set and its references, apart.
    pub fn into_parts(self) -> (InMemDicomObject, Vec<BulkDataReference>) {
        (self.object, self.bulk_data)
    }

    /// The data set, when it has no bulk data reference; [`JsonError::BulkDataUri`] naming the
    /// first one otherwise.
    pub fn into_complete(self) -> Result<InMemDicomObject, JsonError> {
        match self.bulk_data.into_iter().next() {
            None => Ok(self.object),
            Some(reference) => Err(JsonError::BulkDataUri {
                path: selector_path(&reference.path),
                uri: reference.uri,
            }),
        }
    }

    /// The data set with every reference's value fetched by `fetch`, which returns the value's
    /// bytes as Explicit VR Little Endian encodes them (what WADO-RS bulk data carries as
    /// application/octet-stream).
    pub fn resolve<E: std::error::Error + 'static>(
        self,
        mut fetch: impl FnMut(&BulkDataReference) -> Result<Vec<u8>, E>,
    ) -> Result<InMemDicomObject, ResolveError<E>> {
        let mut object = self.object;
        for reference in &self.bulk_data {
            let path = selector_path(&reference.path);
            let bytes = fetch(reference).map_err(|source| ResolveError::Fetch {
                path: path.clone(),
                uri: reference.uri.clone(),
                source,
            })?;
            let value = binary_value(reference.vr, bytes, &path).map_err(ResolveError::Value)?;
            let mut value = Some(value);
            object
                .update_value_at(reference.path.clone(), |slot| {
                    if let Some(value) = value.take() {
                        *slot = value.into();
                    }
                })
                .map_err(|e| {
                    ResolveError::Value(JsonError::BadAttribute {
                        path: path.clone(),
                        reason: format!("the element of this reference is gone: {e}"),
                    })
                })?;
        }
        Ok(object)
    }
}

/// Parses JSON text from outside, refusing text longer than `limits.max_bytes` (serde_json bounds
/// the nesting of what it parses).
pub fn parse_json(bytes: &[u8], limits: &JsonLimits) -> Result<Value, JsonError> {
    if bytes.len() > limits.max_bytes {
        return Err(JsonError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    serde_json::from_slice(bytes).map_err(JsonError::Invalid)
}

/// Reads a DICOM JSON Model object (PS3.18 F.2) into a data set, keeping bulk data references;
/// see the [module documentation](self) for what is checked.
pub fn read_json(value: &Value, limits: &JsonLimits) -> Result<PendingDataSet, JsonError> {
    let mut reader = ModelReader {
        limits: *limits,
        elements: 0,
        path: Vec::new(),
        bulk_data: Vec::new(),
    };
    let object = reader.object(value, 0)?;
    Ok(PendingDataSet {
        object,
        bulk_data: reader.bulk_data,
    })
}

/// Reads a DICOM JSON Model object (PS3.18 F.2) whose values are all inline into a data set,
/// within the default [`JsonLimits`]; a BulkDataURI is an error here ([`read_json`] keeps it).
pub fn from_json(value: &Value) -> Result<InMemDicomObject, JsonError> {
    read_json(value, &JsonLimits::default())?.into_complete()
}

struct ModelReader {
    limits: JsonLimits,
    elements: usize,
    /// The items entered, from the top.
    path: Vec<AttributeSelectorStep>,
    bulk_data: Vec<BulkDataReference>,
}

impl ModelReader {
    fn here(&self) -> String {
        steps_path(&self.path)
    }

    fn at(&self, tag: Tag) -> String {
        let mut path = self.here();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&tag_key(tag));
        path
    }

    fn object(&mut self, value: &Value, depth: usize) -> Result<InMemDicomObject, JsonError> {
        let Value::Object(members) = value else {
            return Err(JsonError::NotAnObject {
                path: self.here(),
                found: json_type(value),
            });
        };
        let mut object = InMemDicomObject::new_empty();
        for (key, attribute) in members {
            let Some(tag) = parse_tag(key) else {
                return Err(JsonError::BadTag {
                    path: self.here(),
                    key: key.clone(),
                });
            };
            self.elements += 1;
            if self.elements > self.limits.max_elements {
                return Err(JsonError::TooManyElements {
                    max: self.limits.max_elements,
                });
            }
            let element = self.attribute(tag, attribute, depth)?;
            object.put(element);
        }
        Ok(object)
    }

    fn attribute(
        &mut self,
        tag: Tag,
        attribute: &Value,
        depth: usize,
    ) -> Result<InMemElement, JsonError> {
        let bad = |reason: String| JsonError::BadAttribute {
            path: self.at(tag),
            reason,
        };
        let Value::Object(members) = attribute else {
            return Err(bad(format!(
                "an attribute must be a JSON object with a \"vr\", not {}",
                json_type(attribute)
            )));
        };
        let mut vr = None;
        let mut values = None;
        let mut inline = None;
        let mut uri = None;
        for (name, member) in members {
            match (name.as_str(), member) {
                ("vr", Value::String(text)) => {
                    vr = Some(VR::from_str(text).map_err(|_| JsonError::UnknownVr {
                        path: self.at(tag),
                        vr: text.clone(),
                    })?);
                }
                ("InlineBinary", Value::String(text)) => inline = Some(text),
                ("BulkDataURI", Value::String(text)) => uri = Some(text),
                ("Value", Value::Array(array)) => values = Some(array),
                ("vr" | "InlineBinary" | "BulkDataURI", other) => {
                    return Err(bad(format!(
                        "\"{name}\" must be a string, not {}",
                        json_type(other)
                    )));
                }
                ("Value", other) => {
                    return Err(bad(format!(
                        "\"Value\" must be an array, not {}",
                        json_type(other)
                    )));
                }
                (other, _) => {
                    return Err(bad(format!(
                        "{other:?} is not a member of a DICOM JSON attribute (vr, Value, InlineBinary, BulkDataURI)"
                    )));
                }
            }
        }
        let Some(vr) = vr else {
            return Err(bad("the attribute has no \"vr\"".to_owned()));
        };
        let given = [values.is_some(), inline.is_some(), uri.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(bad(
                "an attribute has only one of \"Value\", \"InlineBinary\" and \"BulkDataURI\""
                    .to_owned(),
            ));
        }
        if vr == VR::SQ && (inline.is_some() || uri.is_some()) {
            return Err(bad("a sequence has its items in \"Value\"".to_owned()));
        }
        if let Some(uri) = uri {
            let steps = self
                .path
                .iter()
                .copied()
                .chain([AttributeSelectorStep::Tag(tag)]);
            if let Some(path) = AttributeSelector::new(steps) {
                self.bulk_data.push(BulkDataReference {
                    path,
                    vr,
                    uri: uri.clone(),
                });
            }
            return Ok(InMemElement::new(tag, vr, PrimitiveValue::Empty));
        }
        if let Some(text) = inline {
            if !is_binary(vr) {
                return Err(bad(format!(
                    "InlineBinary is for OB, OD, OF, OL, OV, OW and UN values, not {vr}"
                )));
            }
            let bytes = BASE64
                .decode(text.trim_end())
                .map_err(|e| bad(format!("InlineBinary is not base64: {e}")))?;
            let value = binary_value(vr, bytes, &self.at(tag))?;
            return Ok(InMemElement::new(tag, vr, value));
        }
        match values {
            None if vr == VR::SQ => Ok(InMemElement::new(
                tag,
                vr,
                DataSetSequence::<InMemDicomObject>::empty(),
            )),
            None => Ok(InMemElement::new(tag, vr, PrimitiveValue::Empty)),
            Some(values) if vr == VR::SQ => {
                if depth >= self.limits.max_depth {
                    return Err(JsonError::TooDeep {
                        path: self.at(tag),
                        max: self.limits.max_depth,
                    });
                }
                let mut items = Vec::with_capacity(values.len());
                for (index, item) in values.iter().enumerate() {
                    self.path.push(AttributeSelectorStep::Nested {
                        tag,
                        item: u32::try_from(index).unwrap_or(u32::MAX),
                    });
                    let read = match item {
                        Value::Null => Ok(InMemDicomObject::new_empty()),
                        item => self.object(item, depth + 1),
                    };
                    self.path.pop();
                    items.push(read?);
                }
                Ok(InMemElement::new(tag, vr, DataSetSequence::from(items)))
            }
            Some(values) => {
                let value = primitive_value(vr, values, &self.at(tag))?;
                Ok(InMemElement::new(tag, vr, value))
            }
        }
    }
}

/// The values of a non-sequence attribute, VR by VR (PS3.18 F.2.3 to F.2.5).
fn primitive_value(vr: VR, values: &[Value], path: &str) -> Result<PrimitiveValue, JsonError> {
    use VR::*;
    if values.is_empty() {
        return Ok(PrimitiveValue::Empty);
    }
    let wrong = |expected: &'static str, found: &Value| JsonError::WrongValue {
        path: path.to_owned(),
        vr,
        expected,
        found: describe_value(found),
    };
    let empty_number = || JsonError::EmptyNumber {
        path: path.to_owned(),
        vr,
    };
    let value = match vr {
        AE | AS | CS | DA | DT | LO | LT | SH | ST | UT | UR | TM | UC | UI => {
            let texts = values
                .iter()
                .map(|value| match value {
                    Value::String(text) => Ok(text.clone()),
                    Value::Null => Ok(String::new()),
                    other => Err(wrong("a string", other)),
                })
                .collect::<Result<C<String>, _>>()?;
            PrimitiveValue::Strs(texts)
        }
        PN => {
            let names = values
                .iter()
                .map(|value| person_name_text(value, path))
                .collect::<Result<C<String>, _>>()?;
            PrimitiveValue::Strs(names)
        }
        AT => {
            let tags = values
                .iter()
                .map(|value| match value {
                    Value::String(text) => {
                        parse_tag(text).ok_or_else(|| wrong("eight hex digits (a tag)", value))
                    }
                    other => Err(wrong("eight hex digits (a tag)", other)),
                })
                .collect::<Result<C<Tag>, _>>()?;
            PrimitiveValue::Tags(tags)
        }
        DS => {
            let texts = values
                .iter()
                .map(|value| match value {
                    Value::Null => Ok(String::new()),
                    Value::String(text) => Ok(text.trim().to_owned()),
                    Value::Number(number) => match number.as_i64() {
                        Some(n) => Ok(n.to_string()),
                        None => number.as_f64().and_then(ds_text).ok_or_else(|| {
                            wrong("a decimal number of at most 16 characters", value)
                        }),
                    },
                    other => Err(wrong("a number", other)),
                })
                .collect::<Result<C<String>, _>>()?;
            PrimitiveValue::Strs(texts)
        }
        IS => {
            let texts = values
                .iter()
                .map(|value| match value {
                    Value::Null => Ok(String::new()),
                    Value::String(text) => Ok(text.trim().to_owned()),
                    Value::Number(_) => whole_number(value)
                        .map(|n| n.to_string())
                        .ok_or_else(|| wrong("an integer", value)),
                    other => Err(wrong("an integer", other)),
                })
                .collect::<Result<C<String>, _>>()?;
            PrimitiveValue::Strs(texts)
        }
        US => PrimitiveValue::U16(integers(values, vr, path)?),
        SS => PrimitiveValue::I16(integers(values, vr, path)?),
        UL => PrimitiveValue::U32(integers(values, vr, path)?),
        SL => PrimitiveValue::I32(integers(values, vr, path)?),
        UV => PrimitiveValue::U64(integers(values, vr, path)?),
        SV => PrimitiveValue::I64(integers(values, vr, path)?),
        FL | FD => {
            let numbers = values
                .iter()
                .map(|value| match value {
                    Value::Null => Err(empty_number()),
                    Value::Number(number) => {
                        number.as_f64().ok_or_else(|| wrong("a number", value))
                    }
                    Value::String(text) => text
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| wrong("a number", value)),
                    other => Err(wrong("a number", other)),
                })
                .collect::<Result<C<f64>, _>>()?;
            if vr == FL {
                PrimitiveValue::F32(numbers.into_iter().map(|n| n as f32).collect())
            } else {
                PrimitiveValue::F64(numbers)
            }
        }
        OB | OD | OF | OL | OV | OW | UN => {
            return Err(JsonError::BadAttribute {
                path: path.to_owned(),
                reason: format!(
                    "a {vr} value is given as InlineBinary or BulkDataURI, not \"Value\""
                ),
            });
        }
        SQ => {
            return Err(JsonError::BadAttribute {
                path: path.to_owned(),
                reason: "a sequence's items are read as data sets".to_owned(),
            });
        }
    };
    Ok(value)
}

/// The integers of a US, SS, UL, SL, UV or SV attribute, given as JSON numbers or as strings
/// (beyond 2^53, F.2.3), each in the range of `T`.
fn integers<T: TryFrom<i128>>(values: &[Value], vr: VR, path: &str) -> Result<C<T>, JsonError> {
    values
        .iter()
        .map(|value| {
            let number = match value {
                Value::Null => {
                    return Err(JsonError::EmptyNumber {
                        path: path.to_owned(),
                        vr,
                    });
                }
                Value::String(text) => text.trim().parse::<i128>().ok(),
                Value::Number(_) => whole_number(value),
                _ => None,
            };
            number
                .and_then(|n| T::try_from(n).ok())
                .ok_or_else(|| JsonError::WrongValue {
                    path: path.to_owned(),
                    vr,
                    expected: "an integer in the VR's range",
                    found: describe_value(value),
                })
        })
        .collect()
}

/// A JSON number that is a whole number (1 and 1.0 alike).
fn whole_number(value: &Value) -> Option<i128> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(n) = number.as_i64() {
        return Some(i128::from(n));
    }
    if let Some(n) = number.as_u64() {
        return Some(i128::from(n));
    }
    let n = number.as_f64()?;
    // Whole and within i64, where an f64 converts exactly.
    (n.fract() == 0.0 && n.abs() < 9.2e18).then_some(n as i128)
}

/// A number as DS text (PS3.5 §6.2: at most 16 characters), in plain or exponent form,
/// with as many digits as fit.
fn ds_text(number: f64) -> Option<String> {
    if !number.is_finite() {
        return None;
    }
    let plain = number.to_string();
    if plain.len() <= MAX_DS_LENGTH {
        return Some(plain);
    }
    let exponent = format!("{number:e}");
    if exponent.len() <= MAX_DS_LENGTH {
        return Some(exponent);
    }
    (0..=15)
        .rev()
        .map(|precision| format!("{number:.precision$e}"))
        .find(|text| text.len() <= MAX_DS_LENGTH)
}

/// One PN value of the JSON model as DICOM text, its groups joined by `=` (PS3.5 §6.2.1).
fn person_name_text(value: &Value, path: &str) -> Result<String, JsonError> {
    let bad = |reason: String| JsonError::BadAttribute {
        path: path.to_owned(),
        reason,
    };
    match value {
        Value::Null => Ok(String::new()),
        // Not F.2.4, but what some writers give: the alphabetic group alone.
        Value::String(text) => Ok(text.clone()),
        Value::Object(groups) => {
            let mut texts = [""; 3];
            for (name, group) in groups {
                let Some(index) = PN_GROUPS.iter().position(|g| g == name) else {
                    return Err(bad(format!(
                        "a person name has only Alphabetic, Ideographic and Phonetic groups, not {name:?}"
                    )));
                };
                match group {
                    Value::String(text) => texts[index] = text,
                    Value::Null => {}
                    other => {
                        return Err(JsonError::WrongValue {
                            path: path.to_owned(),
                            vr: VR::PN,
                            expected: "a string in each component group",
                            found: describe_value(other),
                        });
                    }
                }
            }
            let used = texts
                .iter()
                .rposition(|t| !t.is_empty())
                .map_or(0, |i| i + 1);
            Ok(texts[..used].join("="))
        }
        other => Err(JsonError::WrongValue {
            path: path.to_owned(),
            vr: VR::PN,
            expected: "an object of component groups",
            found: describe_value(other),
        }),
    }
}

/// Bytes given inline (InlineBinary) or fetched from a bulk data URI as the value of `vr`: the
/// bytes themselves for binary VRs, little-endian numbers for numeric VRs, text otherwise.
pub(crate) fn binary_value(
    vr: VR,
    bytes: Vec<u8>,
    path: &str,
) -> Result<PrimitiveValue, JsonError> {
    use VR::*;
    fn numbers<T, const N: usize>(
        bytes: &[u8],
        vr: VR,
        path: &str,
        from_le: fn([u8; N]) -> T,
    ) -> Result<C<T>, JsonError> {
        if !bytes.len().is_multiple_of(N) {
            return Err(JsonError::BadAttribute {
                path: path.to_owned(),
                reason: format!(
                    "{} bytes are not a whole number of {vr} values of {N} bytes",
                    bytes.len()
                ),
            });
        }
        Ok(bytes
            .chunks_exact(N)
            .map(|chunk| {
                let mut array = [0; N];
                array.copy_from_slice(chunk);
                from_le(array)
            })
            .collect())
    }
    if bytes.is_empty() {
        return Ok(PrimitiveValue::Empty);
    }
    Ok(match vr {
        OB | OD | OF | OL | OV | OW | UN => PrimitiveValue::U8(bytes.into()),
        US => PrimitiveValue::U16(numbers(&bytes, vr, path, u16::from_le_bytes)?),
        SS => PrimitiveValue::I16(numbers(&bytes, vr, path, i16::from_le_bytes)?),
        UL => PrimitiveValue::U32(numbers(&bytes, vr, path, u32::from_le_bytes)?),
        SL => PrimitiveValue::I32(numbers(&bytes, vr, path, i32::from_le_bytes)?),
        UV => PrimitiveValue::U64(numbers(&bytes, vr, path, u64::from_le_bytes)?),
        SV => PrimitiveValue::I64(numbers(&bytes, vr, path, i64::from_le_bytes)?),
        FL => PrimitiveValue::F32(numbers(&bytes, vr, path, f32::from_le_bytes)?),
        FD => PrimitiveValue::F64(numbers(&bytes, vr, path, f64::from_le_bytes)?),
        AT => {
            // Group then element, each little endian: the group in the low half.
            let tags = numbers(&bytes, vr, path, u32::from_le_bytes)?;
            PrimitiveValue::Tags(
                tags.into_iter()
                    .map(|t| Tag((t & 0xFFFF) as u16, (t >> 16) as u16))
                    .collect(),
            )
        }
        SQ => {
            return Err(JsonError::BadAttribute {
                path: path.to_owned(),
                reason: "a sequence has no bulk data".to_owned(),
            });
        }
        _ => {
            let text = String::from_utf8_lossy(&bytes);
            let text = unpad(&text);
            if matches!(vr, LT | ST | UT | UR) {
                PrimitiveValue::from(text.to_owned())
            } else {
                PrimitiveValue::Strs(text.split('\\').map(str::to_owned).collect())
            }
        }
    })
}

/// Eight hex digits, as F.2.2 names attributes (uppercase there; lowercase accepted).
pub(crate) fn parse_tag(text: &str) -> Option<Tag> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u32::from_str_radix(text, 16).ok()?;
    Some(Tag((value >> 16) as u16, (value & 0xFFFF) as u16))
}

/// A tag path as errors name it: `0040A730[2].0040A160`.
fn steps_path(steps: &[AttributeSelectorStep]) -> String {
    steps
        .iter()
        .map(|step| match step {
            AttributeSelectorStep::Tag(tag) => tag_key(*tag),
            AttributeSelectorStep::Nested { tag, item } => format!("{}[{item}]", tag_key(*tag)),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn selector_path(selector: &AttributeSelector) -> String {
    steps_path(&selector.iter().copied().collect::<Vec<_>>())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as an error shows it: its type, and the value itself when short.
fn describe_value(value: &Value) -> String {
    match value {
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        other => json_type(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an error is the one a case expects.
    type Check = fn(&JsonError) -> bool;
    use dicom_core::value::{C, DataSetSequence, DicomDate};
    use dicom_core::{DataElement, Tag};
    use dicom_dictionary_std::tags;
    use serde_json::json;

    fn strs(values: &[&str]) -> PrimitiveValue {
        PrimitiveValue::Strs(values.iter().map(|v| (*v).to_owned()).collect())
    }

    fn sample() -> InMemDicomObject {
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(
                tags::SCHEDULED_STATION_AE_TITLE,
                VR::AE,
                PrimitiveValue::Empty,
            ),
        ]);
        InMemDicomObject::from_element_iter([
            DataElement::new(Tag(0x0008, 0x0000), VR::UL, PrimitiveValue::from(100_u32)),
            DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
            DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY "),
            DataElement::new(tags::MODALITIES_IN_STUDY, VR::CS, strs(&["CT", "", "MR"])),
            DataElement::new(
                tags::REFERENCED_STUDY_SEQUENCE,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "Wang^XiaoDong=王^小東 "),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::Empty),
            DataElement::new(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
            DataElement::new(tags::PATIENT_WEIGHT, VR::DS, strs(&[" 72.5"])),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4\0"),
            DataElement::new(
                tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                VR::IS,
                strs(&["12 "]),
            ),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512_u16)),
            DataElement::new(
                tags::SELECTOR_ATTRIBUTE,
                VR::AT,
                PrimitiveValue::Tags(C::from_elem(tags::PATIENT_NAME, 1)),
            ),
            DataElement::new(
                tags::REAL_WORLD_VALUE_LUT_DATA,
                VR::FD,
                PrimitiveValue::F64([1.5, -2.0].into_iter().collect()),
            ),
            DataElement::new(
                tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item, InMemDicomObject::new_empty()]),
            ),
            DataElement::new(
                Tag(0x0009, 0x1001),
                VR::UN,
                PrimitiveValue::from(vec![0xCF_u8, 0x4C, 0x7D]),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16([1_u16, 0x0302].into_iter().collect()),
            ),
        ])
    }

    #[test]
    fn a_data_set_is_written_as_ps3_18_f2_asks() {
        let written = to_json(&sample());
        let expected = json!({
            "00080005": { "vr": "CS", "Value": ["ISO_IR 192"] },
            "00080052": { "vr": "CS", "Value": ["STUDY"] },
            "00080061": { "vr": "CS", "Value": ["CT", null, "MR"] },
            "00081110": { "vr": "SQ" },
            "00091001": { "vr": "UN", "InlineBinary": "z0x9" },
            "00100010": { "vr": "PN", "Value": [{ "Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東" }] },
            "00100020": { "vr": "LO" },
            "00100030": { "vr": "DA" },
            "00101030": { "vr": "DS", "Value": [72.5] },
            "0020000D": { "vr": "UI", "Value": ["1.2.3.4"] },
            "00201208": { "vr": "IS", "Value": [12] },
            "00280010": { "vr": "US", "Value": [512] },
            "00409212": { "vr": "FD", "Value": [1.5, -2.0] },
            "00400100": {
                "vr": "SQ",
                "Value": [
                    { "00080060": { "vr": "CS", "Value": ["CT"] }, "00400001": { "vr": "AE" } },
                    {}
                ]
            },
            "00720026": { "vr": "AT", "Value": ["00100010"] },
            "7FE00010": { "vr": "OW", "InlineBinary": "AQACAw==" },
        });
        assert_eq!(written, expected);
        // Members in ascending tag order (F.2.2), group length (0008,0000) left out.
        let keys: Vec<&String> = written.as_object().expect("object").keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn large_integers_and_odd_numbers_keep_their_value() {
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(
                Tag(0x0018, 0x9999),
                VR::UV,
                PrimitiveValue::U64([5, u64::MAX].into_iter().collect()),
            ),
            DataElement::new(
                Tag(0x0018, 0x9998),
                VR::SV,
                PrimitiveValue::I64([-(1 << 40)].into_iter().collect()),
            ),
            DataElement::new(tags::PATIENT_WEIGHT, VR::DS, strs(&["abc"])),
            DataElement::new(
                tags::SLICE_THICKNESS,
                VR::DS,
                PrimitiveValue::F64(C::from_elem(2.5, 1)),
            ),
            DataElement::new(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                strs(&["1", "-2.5e1", ""]),
            ),
            // A date given for a number: written as text, not a panic.
            DataElement::new(
                tags::ROWS,
                VR::US,
                PrimitiveValue::Date(C::from_elem(DicomDate::from_y(2024).expect("date"), 1)),
            ),
            // A primitive value on a sequence: written as bytes of unknown VR.
            DataElement::new(tags::REFERENCED_STUDY_SEQUENCE, VR::SQ, strs(&["x"])),
        ]);
        assert_eq!(
            to_json(&object),
            json!({
                "00081110": { "vr": "UN", "InlineBinary": "eA==" },
                "00180050": { "vr": "DS", "Value": [2.5] },
                "00189998": { "vr": "SV", "Value": [-(1_i64 << 40)] },
                "00189999": { "vr": "UV", "Value": [5, "18446744073709551615"] },
                "00200032": { "vr": "DS", "Value": [1, -25.0, null] },
                "00101030": { "vr": "DS", "Value": ["abc"] },
                "00280010": { "vr": "US", "Value": [2024] },
            })
        );
    }

    #[test]
    fn an_array_holds_one_object_per_data_set() {
        let one =
            InMemDicomObject::from_element_iter([DataElement::new(tags::PATIENT_ID, VR::LO, "1")]);
        let two =
            InMemDicomObject::from_element_iter([DataElement::new(tags::PATIENT_ID, VR::LO, "2")]);
        assert_eq!(
            to_json_array(&[one, two]),
            json!([
                { "00100020": { "vr": "LO", "Value": ["1"] } },
                { "00100020": { "vr": "LO", "Value": ["2"] } },
            ])
        );
        assert_eq!(to_json_array(&[]), json!([]));
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let written = to_json(&sample());
        let read = from_json(&written).expect("read");
        assert_eq!(to_json(&read), written);
        let name = read.element(tags::PATIENT_NAME).expect("name");
        assert_eq!(name.to_str().expect("text"), "Wang^XiaoDong=王^小東");
        let rows = read.element(tags::ROWS).expect("rows");
        assert_eq!(
            rows.value().primitive(),
            Some(&PrimitiveValue::from(512_u16))
        );
        let pixels = read.element(tags::PIXEL_DATA).expect("pixels");
        assert_eq!(
            pixels.value().to_bytes().expect("bytes").as_ref(),
            [1, 0, 2, 3]
        );
        let steps = read
            .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
            .expect("sequence");
        assert_eq!(steps.items().expect("items").len(), 2);
        let empty = read
            .element(tags::REFERENCED_STUDY_SEQUENCE)
            .expect("empty sequence");
        assert_eq!(empty.vr(), VR::SQ);
        let id = read.element(tags::PATIENT_ID).expect("id");
        assert!(
            id.value()
                .primitive()
                .is_some_and(|v| matches!(v, PrimitiveValue::Empty))
        );
    }

    #[test]
    fn nulls_and_lenient_forms_are_read_as_empty_values() {
        let read = from_json(&json!({
            "00080061": { "vr": "CS", "Value": ["CT", null, "MR"] },
            "00081110": { "vr": "SQ", "Value": [null] },
            "00100010": { "vr": "PN", "Value": ["DOE^JOHN", null] },
            "00100020": { "vr": "LO", "Value": [] },
            "00200032": { "vr": "DS", "Value": [1, null, "2.50"] },
            "0020000d": { "vr": "UI", "Value": ["1.2.3"] },
        }))
        .expect("read");
        let modalities = read.element(tags::MODALITIES_IN_STUDY).expect("modalities");
        assert_eq!(
            modalities.value().to_multi_str().expect("text").as_ref(),
            ["CT", "", "MR"]
        );
        let items = read
            .element(tags::REFERENCED_STUDY_SEQUENCE)
            .expect("seq")
            .items()
            .expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].iter().count(), 0);
        let names = read.element(tags::PATIENT_NAME).expect("name");
        assert_eq!(
            names.value().to_multi_str().expect("text").as_ref(),
            ["DOE^JOHN", ""]
        );
        assert!(
            read.element(tags::PATIENT_ID)
                .expect("id")
                .value()
                .primitive()
                .is_some_and(|v| matches!(v, PrimitiveValue::Empty))
        );
        let position = read
            .element(tags::IMAGE_POSITION_PATIENT)
            .expect("position");
        assert_eq!(
            position.value().to_multi_str().expect("text").as_ref(),
            ["1", "", "2.50"]
        );
        // A tag in lowercase hex is read as the same tag.
        assert_eq!(
            read.element(tags::STUDY_INSTANCE_UID)
                .expect("uid")
                .to_str()
                .expect("text"),
            "1.2.3"
        );
    }

    #[test]
    fn what_is_not_dicom_json_is_refused_with_where_and_why() {
        let deep = (0..=MAX_JSON_DEPTH).fold(
            json!({}),
            |inner, _| json!({ "0040A730": { "vr": "SQ", "Value": [inner] } }),
        );
        let cases: Vec<(Value, Check)> = vec![
            (json!([]), |e| {
                matches!(
                    e,
                    JsonError::NotAnObject {
                        found: "an array",
                        ..
                    }
                )
            }),
            (
                json!({ "PatientID": { "vr": "LO" } }),
                |e| matches!(e, JsonError::BadTag { key, .. } if key == "PatientID"),
            ),
            (json!({ "aaaé€": { "vr": "LO" } }), |e| {
                matches!(e, JsonError::BadTag { .. })
            }),
            (json!({ "00100020": "123" }), |e| {
                matches!(e, JsonError::BadAttribute { .. })
            }),
            (
                json!({ "00100020": { "Value": ["1"] } }),
                |e| matches!(e, JsonError::BadAttribute { reason, .. } if reason.contains("\"vr\"")),
            ),
            (
                json!({ "00100020": { "vr": "XX" } }),
                |e| matches!(e, JsonError::UnknownVr { vr, .. } if vr == "XX"),
            ),
            (json!({ "00100020": { "vr": "LO", "Value": "1" } }), |e| {
                matches!(e, JsonError::BadAttribute { .. })
            }),
            (json!({ "00100020": { "vr": "LO", "value": ["1"] } }), |e| {
                matches!(e, JsonError::BadAttribute { .. })
            }),
            (
                json!({ "7FE00010": { "vr": "OW", "BulkDataURI": "http://x/1" } }),
                |e| matches!(e, JsonError::BulkDataUri { path, .. } if path == "7FE00010"),
            ),
            (
                json!({ "00280010": { "vr": "US", "Value": [1, null] } }),
                |e| matches!(e, JsonError::EmptyNumber { vr: VR::US, .. }),
            ),
            (
                json!({ "00280010": { "vr": "US", "Value": ["x"] } }),
                |e| matches!(e, JsonError::WrongValue { path, vr: VR::US, .. } if path == "00280010"),
            ),
            (
                json!({ "00720026": { "vr": "AT", "Value": ["aaaé€"] } }),
                |e| matches!(e, JsonError::WrongValue { vr: VR::AT, .. }),
            ),
            (
                json!({ "00100010": { "vr": "PN", "Value": [{ "Given": "X" }] } }),
                |e| matches!(e, JsonError::BadAttribute { .. }),
            ),
            (
                json!({ "00400100": { "vr": "SQ", "Value": [{ "00080060": { "vr": "CS", "Value": ["CT"] } }, 5] } }),
                |e| matches!(e, JsonError::NotAnObject { path, .. } if path == "00400100[1]"),
            ),
            (
                json!({ "00400100": { "vr": "SQ", "Value": [{ "00080060": { "vr": "CS", "Value": [1] } }] } }),
                |e| matches!(e, JsonError::WrongValue { path, vr: VR::CS, .. } if path == "00400100[0].00080060"),
            ),
            (deep, |e| matches!(e, JsonError::TooDeep { .. })),
        ];
        for (value, expected) in cases {
            let error = from_json(&value).expect_err(&value.to_string());
            assert!(expected(&error), "{value}: {error:?}");
            assert!(!error.to_string().is_empty());
        }
        let nested = from_json(
            &json!({ "00400100": { "vr": "SQ", "Value": [{ "00080060": { "vr": "XX" } }] } }),
        )
        .expect_err("unknown VR");
        assert!(
            nested.to_string().contains("00400100[0].00080060"),
            "{nested}"
        );
    }

    #[test]
    fn the_qido_rs_example_of_ps3_18_reads() {
        // The shape of the study-level response example of PS3.18 F.2.1.1.
        let response = json!([{
            "00080005": { "vr": "CS", "Value": ["ISO_IR 192"] },
            "00080020": { "vr": "DA", "Value": ["20130409"] },
            "00080030": { "vr": "TM", "Value": ["131600.0000"] },
            "00080050": { "vr": "SH", "Value": ["11235813"] },
            "00080056": { "vr": "CS", "Value": ["ONLINE"] },
            "00080061": { "vr": "CS", "Value": ["CT", "PET"] },
            "00080090": { "vr": "PN", "Value": [{ "Alphabetic": "^Bob^^Dr." }] },
            "00081190": { "vr": "UR", "Value": ["http://wado.nema.org/studies/1.2.392.200036.9116.2.2.2.1762893313.1029997326.945873"] },
            "00090010": { "vr": "LO", "Value": ["Vendor A"] },
            "00091002": { "vr": "UN", "InlineBinary": "z0x9c8v7" },
            "00100010": { "vr": "PN", "Value": [{ "Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東" }] },
            "00100020": { "vr": "LO", "Value": ["12345"] },
            "00100021": { "vr": "LO", "Value": ["Hospital A"] },
            "00100030": { "vr": "DA", "Value": ["19670701"] },
            "00100040": { "vr": "CS", "Value": ["M"] },
            "00101002": {
                "vr": "SQ",
                "Value": [{
                    "00100020": { "vr": "LO", "Value": ["54321"] },
                    "00100021": { "vr": "LO", "Value": ["Hospital B"] }
                }]
            },
            "0020000D": { "vr": "UI", "Value": ["1.2.392.200036.9116.2.2.2.1762893313.1029997326.945873"] },
            "00200010": { "vr": "SH", "Value": ["11235813"] },
            "00201206": { "vr": "IS", "Value": [4] },
            "00201208": { "vr": "IS", "Value": [942] }
        }]);
        let studies: Vec<InMemDicomObject> = response
            .as_array()
            .expect("array")
            .iter()
            .map(|study| from_json(study).expect("read"))
            .collect();
        assert_eq!(studies.len(), 1);
        let study = &studies[0];
        assert_eq!(
            study
                .element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
                .expect("count")
                .to_str()
                .expect("text"),
            "942"
        );
        assert_eq!(
            study
                .element(Tag(0x0009, 0x1002))
                .expect("private")
                .value()
                .to_bytes()
                .expect("bytes")
                .len(),
            6
        );
        assert_eq!(to_json_array(&studies), response);
    }
}
