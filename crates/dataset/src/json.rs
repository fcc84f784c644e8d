//! The DICOM JSON Model (PS3.18 F.2): data sets as QIDO-RS returns them and as
//! `dimsum findscu --json` prints them.
//!
//! Values are written and read by the dicom-json crate; what it does not do as F.2 asks is done
//! here, around it:
//!
//! - **Writing.** Padding is removed from text values (F.2.3: the JSON value is the value, not
//!   its encoding); IS and DS are written as JSON numbers (F.2.3), and as strings only when they
//!   are not numbers; SV and UV as numbers up to 2^53 (the integers a JSON number holds exactly)
//!   and as strings beyond; an empty value of a multi-valued attribute is `null`, and an
//!   attribute whose value is empty, an empty sequence included, has no `"Value"` (F.2.5); group
//!   lengths (gggg,0000) are left out (F.2.2). Value and VR combinations that dicom-json cannot
//!   write, which no decoder produces, are written as well as they can be instead of failing: a
//!   number given as a date or tag as text, a primitive value on an SQ element as UN bytes. Encapsulated Pixel Data is written with its VR only: its fragments are
//!   bulk data (F.2.6), for WADO-RS to serve. InlineBinary holds the values' bytes in memory
//!   order, which F.2.7's little endian is on every platform dimsum is built for.
//! - **Reading.** Bytes that came from outside are checked before dicom-json sees them: every
//!   tag is eight hex digits, every VR known, sequences nest at most [`MAX_JSON_DEPTH`] deep,
//!   and each attribute has only the members F.2.2 defines. `null` values are taken as empty;
//!   an empty sequence item as an empty item. BulkDataURI (F.2.6) is refused: the bulk data must
//!   be fetched first and given inline.

use std::str::FromStr;

use dicom_core::VR;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Number, Value};

/// Deepest nesting of sequences that [`from_json`] accepts (the scanner's default nesting limit).
pub const MAX_JSON_DEPTH: usize = 16;

/// The largest integer a JSON number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

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
    #[error(
        "{path}: BulkDataURI is not supported here; fetch the bulk data and give it as InlineBinary"
    )]
    BulkDataUri { path: String },
    #[error("{path}: an empty (null) value cannot be encoded in a multi-valued {vr} attribute")]
    EmptyNumber { path: String, vr: VR },
    #[error("{path}: sequences nest deeper than {max} levels")]
    TooDeep { path: String, max: usize },
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

/// `object` in the DICOM JSON Model (PS3.18 F.2): a JSON object with one member per attribute,
/// named by its tag in eight uppercase hex digits, in ascending order.
pub fn to_json(object: &InMemDicomObject) -> Value {
    let mut map = Map::new();
    for element in object {
        let tag = element.tag();
        if tag.element() == 0x0000 {
            continue;
        }
        map.insert(
            format!("{:04X}{:04X}", tag.group(), tag.element()),
            attribute_to_json(element),
        );
    }
    Value::Object(map)
}

/// `objects` as a JSON array of DICOM JSON Model objects, as a QIDO-RS response carries them
/// (PS3.18 F.2.1).
pub fn to_json_array(objects: &[InMemDicomObject]) -> Value {
    Value::Array(objects.iter().map(to_json).collect())
}

fn attribute_to_json(element: &InMemElement) -> Value {
    let vr = element.vr();
    let mut attribute = Map::new();
    attribute.insert("vr".to_owned(), Value::String(vr.to_string().to_owned()));
    match element.value() {
        DicomValue::Sequence(sequence) => {
            if !sequence.items().is_empty() {
                let items = sequence.items().iter().map(to_json).collect();
                attribute.insert("Value".to_owned(), Value::Array(items));
            }
        }
        DicomValue::PixelSequence(_) => {}
        DicomValue::Primitive(PrimitiveValue::Empty) => {}
        DicomValue::Primitive(value) if vr == VR::SQ => {
            // Not a sequence after all: its bytes, as a value of unknown VR.
            let unknown = InMemElement::new(element.tag(), VR::UN, value.clone());
            return attribute_to_json(&unknown);
        }
        DicomValue::Primitive(value) => {
            let written = if dicom_json_writes(vr, value) {
                dicom_json::to_value(element).ok()
            } else {
                None
            };
            match written {
                Some(Value::Object(mut written)) => {
                    if let Some(binary) = written.remove("InlineBinary") {
                        attribute.insert("InlineBinary".to_owned(), binary);
                    }
                    if let Some(Value::Array(values)) = written.remove("Value") {
                        insert_values(&mut attribute, vr, values);
                    }
                }
                _ => {
                    let strings = value.to_multi_str();
                    let strings = strings.iter().cloned().map(Value::String).collect();
                    insert_values(&mut attribute, vr, strings);
                }
            }
        }
    }
    Value::Object(attribute)
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
fn insert_values(attribute: &mut Map<String, Value>, vr: VR, values: Vec<Value>) {
    let values: Vec<Value> = values.into_iter().map(|v| normalize(vr, v)).collect();
    // One empty value is a value of zero length (F.2.5).
    if values.iter().all(Value::is_null) && values.len() <= 1 {
        return;
    }
    attribute.insert("Value".to_owned(), Value::Array(values));
}

fn normalize(vr: VR, value: Value) -> Value {
    use VR::*;
    match (vr, value) {
        (PN, Value::Object(groups)) => {
            let groups: Map<String, Value> = groups
                .into_iter()
                .filter_map(|(name, group)| match group {
                    Value::String(text) => {
                        let text = unpad(&text);
                        (!text.is_empty()).then(|| (name, Value::String(text.to_owned())))
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
        (DS | FL | FD, Value::String(text)) => match text.trim() {
            "" => Value::Null,
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

/// Reads a DICOM JSON Model object (PS3.18 F.2) into a data set; see the
/// [module documentation](self) for what is checked.
pub fn from_json(value: &Value) -> Result<InMemDicomObject, JsonError> {
    let checked = check_object(value, "", 0)?;
    dicom_json::from_value::<InMemDicomObject>(Value::Object(checked)).map_err(JsonError::Invalid)
}

/// Checks one data set (or sequence item) and returns it in the form dicom-json reads.
fn check_object(value: &Value, path: &str, depth: usize) -> Result<Map<String, Value>, JsonError> {
    let Value::Object(members) = value else {
        return Err(JsonError::NotAnObject {
            path: path.to_owned(),
            found: json_type(value),
        });
    };
    let mut checked = Map::new();
    for (key, attribute) in members {
        if !is_tag(key) {
            return Err(JsonError::BadTag {
                path: path.to_owned(),
                key: key.clone(),
            });
        }
        let tag_path = if path.is_empty() {
            key.to_ascii_uppercase()
        } else {
            format!("{path}.{}", key.to_ascii_uppercase())
        };
        checked.insert(
            key.to_ascii_uppercase(),
            check_attribute(attribute, &tag_path, depth)?,
        );
    }
    Ok(checked)
}

fn check_attribute(attribute: &Value, path: &str, depth: usize) -> Result<Value, JsonError> {
    let bad = |reason: String| JsonError::BadAttribute {
        path: path.to_owned(),
        reason,
    };
    let Value::Object(members) = attribute else {
        return Err(bad(format!(
            "an attribute must be a JSON object with a \"vr\", not {}",
            json_type(attribute)
        )));
    };
    let mut vr = None;
    let mut checked = Map::new();
    for (name, member) in members {
        match (name.as_str(), member) {
            ("vr", Value::String(text)) => {
                vr = Some(VR::from_str(text).map_err(|_| JsonError::UnknownVr {
                    path: path.to_owned(),
                    vr: text.clone(),
                })?);
            }
            ("BulkDataURI", _) => {
                return Err(JsonError::BulkDataUri {
                    path: path.to_owned(),
                });
            }
            ("vr" | "InlineBinary", other) if !other.is_string() => {
                return Err(bad(format!(
                    "\"{name}\" must be a string, not {}",
                    json_type(other)
                )));
            }
            ("InlineBinary", other) => {
                checked.insert(name.clone(), other.clone());
            }
            ("Value", Value::Array(_)) => {}
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
    checked.insert("vr".to_owned(), Value::String(vr.to_string().to_owned()));
    if let Some(Value::Array(values)) = members.get("Value")
        && !values.is_empty()
    {
        let values = check_values(vr, values, path, depth)?;
        checked.insert("Value".to_owned(), Value::Array(values));
    }
    Ok(Value::Object(checked))
}

/// Checks the values of one attribute and puts `null`s in the form dicom-json reads.
fn check_values(
    vr: VR,
    values: &[Value],
    path: &str,
    depth: usize,
) -> Result<Vec<Value>, JsonError> {
    use VR::*;
    let bad = |reason: String| JsonError::BadAttribute {
        path: path.to_owned(),
        reason,
    };
    match vr {
        SQ => {
            if depth >= MAX_JSON_DEPTH {
                return Err(JsonError::TooDeep {
                    path: path.to_owned(),
                    max: MAX_JSON_DEPTH,
                });
            }
            values
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::Null => Ok(Value::Object(Map::new())),
                    item => check_object(item, &format!("{path}[{index}]"), depth + 1)
                        .map(Value::Object),
                })
                .collect()
        }
        PN => values
            .iter()
            .map(|value| match value {
                Value::Null => Ok(Value::Object(Map::new())),
                Value::String(text) => Ok(serde_json::json!({ "Alphabetic": text })),
                Value::Object(groups) => {
                    for (name, group) in groups {
                        if !matches!(name.as_str(), "Alphabetic" | "Ideographic" | "Phonetic")
                            || !group.is_string()
                        {
                            return Err(bad(format!(
                                "a person name has only Alphabetic, Ideographic and Phonetic strings, not {name:?}"
                            )));
                        }
                    }
                    Ok(value.clone())
                }
                other => Err(bad(format!(
                    "a person name must be an object, not {}",
                    json_type(other)
                ))),
            })
            .collect(),
        AT => values
            .iter()
            .map(|value| match value {
                Value::String(text) if is_tag(text) => Ok(Value::String(text.to_ascii_uppercase())),
                other => Err(bad(format!(
                    "an AT value must be a tag of eight hex digits, not {other}"
                ))),
            })
            .collect(),
        DS | IS => Ok(values
            .iter()
            .map(|value| match value {
                Value::Null => Value::String(String::new()),
                other => other.clone(),
            })
            .collect()),
        US | SS | UL | SL | SV | UV | FL | FD | OB | OW | OL | OV | OF | OD => {
            if values.iter().any(Value::is_null) {
                return Err(JsonError::EmptyNumber {
                    path: path.to_owned(),
                    vr,
                });
            }
            Ok(values.to_vec())
        }
        _ => Ok(values.to_vec()),
    }
}

/// Eight hex digits, as F.2.2 names attributes (uppercase there; lowercase accepted).
fn is_tag(text: &str) -> bool {
    text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit())
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
                "00200032": { "vr": "DS", "Value": [1.0, -25.0, null] },
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
                |e| matches!(e, JsonError::BulkDataUri { path } if path == "7FE00010"),
            ),
            (
                json!({ "00280010": { "vr": "US", "Value": [1, null] } }),
                |e| matches!(e, JsonError::EmptyNumber { vr: VR::US, .. }),
            ),
            (json!({ "00280010": { "vr": "US", "Value": ["x"] } }), |e| {
                matches!(e, JsonError::Invalid(_))
            }),
            (
                json!({ "00720026": { "vr": "AT", "Value": ["aaaé€"] } }),
                |e| matches!(e, JsonError::BadAttribute { .. }),
            ),
            (
                json!({ "00100010": { "vr": "PN", "Value": [{ "Given": "X" }] } }),
                |e| matches!(e, JsonError::BadAttribute { .. }),
            ),
            (
                json!({ "00400100": { "vr": "SQ", "Value": [{ "00080060": { "vr": "CS", "Value": [1] } }, 5] } }),
                |e| matches!(e, JsonError::NotAnObject { path, .. } if path == "00400100[1]"),
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
