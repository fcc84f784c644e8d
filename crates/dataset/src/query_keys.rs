//! Query keys as DCMTK's findscu, getscu and movescu take them (`-k KEY[=VALUE]`), and query
//! files: how a person writes the matching and return keys of an identifier (PS3.4 C.4.1.1.3).
//!
//! A key names an attribute by keyword (`PatientName`) or tag (`0010,0020`, `(0010,0020)`, hex
//! digits in either case), optionally through sequence items: `(0040,0100)[0].Modality`,
//! `ScheduledProcedureStepSequence[0].ScheduledStationAETitle`. A step without an index means
//! item 0. After `=` comes the value; with no `=`, or nothing after it, the key is a return key
//! (zero length, universal matching). `\` separates the values of a multi-valued attribute,
//! except for the single-valued LT, ST, UT and UR, where it is an ordinary character.
//!
//! Each element gets the VR of the standard dictionary; where it allows two, the usual one (US
//! for US or SS, OW for OB or OW). Tags the dictionary does not know are private creators (LO)
//! when they are (gggg,0010-00FF) of an odd group, UN otherwise. Numeric values (US, SS, UL, SL,
//! SV, UV, FL, FD and OL, OV, OF, OD) are parsed when the key is; OB, OW and UN take hex numbers
//! (`00\FF`), AT takes tags or keywords.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::{HasLength, Header};
use dicom_core::value::{C, DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_dictionary_std::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use dicom_object::InMemDicomObject;

use crate::convert::ConvertError;
use crate::identifier;
use crate::part10::{self, DICM_PREFIX, PREAMBLE_LENGTH, Part10Error};
use crate::scan::ScanLimits;

/// Deepest path a key may have: this many attributes, sequences included (the scanner's default
/// nesting limit).
pub const MAX_PATH_DEPTH: usize = 16;
/// Highest item index a key may name; `[n]` creates the items up to n.
pub const MAX_ITEM_INDEX: u32 = 999;
/// Largest query file read. Identifiers are a few hundred bytes.
pub const MAX_QUERY_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// One step of a key's path: an attribute and, for a sequence that the path goes through, the
/// index of the item (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStep {
    /// The attribute.
    pub tag: Tag,
    /// The item of the sequence `tag` that the path enters, if an index was given.
    pub item: Option<u32>,
}

/// A matching or return key of a C-FIND, C-GET or C-MOVE identifier (PS3.4 C.4.1.1.3), as
/// written on a command line: `PatientName=DOE*`, `(0040,0100)[0].Modality=CT`, `StudyDate`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryKey {
    text: String,
    steps: Vec<KeyStep>,
    value_text: Option<String>,
    vr: VR,
    value: PrimitiveValue,
}

/// Why a query key could not be read or applied (PS3.4 C.4.1.1.3). Every message names the
/// key as it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "empty query key {key:?}: name an attribute by keyword or tag, as PatientName=DOE* or (0010,0020)=123"
    )]
    Empty { key: String },
    #[error(
        "query key {key:?}: {name:?} is neither a tag (gggg,eeee) nor a keyword of the DICOM dictionary"
    )]
    UnknownKeyword { key: String, name: String },
    #[error(
        "query key {key:?}: {text:?} is not a valid tag; write gggg,eeee or (gggg,eeee) with four hex digits each"
    )]
    BadTag { key: String, text: String },
    #[error("query key {key:?}: item index {text:?} is not a number from 0 to {max}")]
    BadIndex { key: String, text: String, max: u32 },
    #[error("query key {key:?}: {reason}")]
    Malformed { key: String, reason: String },
    #[error("query key {key:?} goes through more than {max} attributes")]
    TooDeep { key: String, max: usize },
    #[error(
        "query key {key:?}: {attribute} is not a sequence, so it cannot take an item index or nested keys"
    )]
    NotASequence { key: String, attribute: String },
    #[error(
        "query key {key:?}: {attribute} is a sequence and takes no value; give keys inside its items instead, as Sequence[0].Keyword=VALUE"
    )]
    SequenceValue { key: String, attribute: String },
    #[error("query key {key:?}: {value:?} is not a valid {vr} value: {reason}")]
    BadValue {
        key: String,
        vr: VR,
        value: String,
        reason: String,
    },
}

/// Why a query file could not be read (a DICOM file, PS3.10, or a bare data set).
#[derive(Debug, thiserror::Error)]
pub enum QueryFileError {
    #[error("could not read the query file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the query file {} is {size} bytes, more than the {max} accepted", path.display())]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("the query file {} has a bad file meta information: {source}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: Part10Error,
    },
    #[error("the query file {} is not a valid data set: {source}", path.display())]
    DataSet {
        path: PathBuf,
        #[source]
        source: ConvertError,
    },
}

impl QueryKey {
    /// Reads a key as DCMTK's `-k` option takes it; see the [module documentation](self).
    pub fn parse(text: &str) -> Result<QueryKey, KeyError> {
        let key = || text.to_owned();
        let (path_text, value_text) = match text.split_once('=') {
            Some((path, value)) => (path.trim(), Some(value)),
            None => (text.trim(), None),
        };
        if path_text.is_empty() {
            return Err(KeyError::Empty { key: key() });
        }
        let parts: Vec<&str> = path_text.split('.').collect();
        if parts.len() > MAX_PATH_DEPTH {
            return Err(KeyError::TooDeep {
                key: key(),
                max: MAX_PATH_DEPTH,
            });
        }
        let mut steps = Vec::with_capacity(parts.len());
        for part in parts {
            steps.push(parse_step(text, part.trim())?);
        }
        let Some((&leaf, through)) = steps.split_last() else {
            return Err(KeyError::Empty { key: key() });
        };
        for step in through {
            if !can_be_sequence(step.tag) {
                return Err(KeyError::NotASequence {
                    key: key(),
                    attribute: describe(step.tag),
                });
            }
        }
        let vr = vr_of(leaf.tag);
        if leaf.item.is_some() && !can_be_sequence(leaf.tag) {
            return Err(KeyError::NotASequence {
                key: key(),
                attribute: describe(leaf.tag),
            });
        }
        let value_given = value_text.unwrap_or("");
        let value = if vr == VR::SQ || leaf.item.is_some() {
            if !value_given.is_empty() {
                return Err(KeyError::SequenceValue {
                    key: key(),
                    attribute: describe(leaf.tag),
                });
            }
            PrimitiveValue::Empty
        } else {
            parse_value(vr, value_given).map_err(|reason| KeyError::BadValue {
                key: key(),
                vr,
                value: value_given.to_owned(),
                reason,
            })?
        };
        Ok(QueryKey {
            text: text.to_owned(),
            steps,
            value_text: value_text.map(str::to_owned),
            vr: if leaf.item.is_some() { VR::SQ } else { vr },
            value,
        })
    }

    /// The attribute the key sets (the last step of its path).
    pub fn tag(&self) -> Tag {
        self.steps.last().map_or(Tag(0, 0), |step| step.tag)
    }

    /// The attributes from the top-level data set down to the one the key sets.
    pub fn path(&self) -> &[KeyStep] {
        &self.steps
    }

    /// The VR the element is given.
    pub fn vr(&self) -> VR {
        self.vr
    }

    /// The value as written after `=`; `None` when the key had no `=`.
    pub fn value(&self) -> Option<&str> {
        self.value_text.as_deref()
    }

    /// True for a return key: one with an empty value, asking for the attribute to be returned
    /// (or, for a sequence, universal sequence matching).
    pub fn is_return_key(&self) -> bool {
        self.value.is_empty()
    }

    /// The key as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for QueryKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        QueryKey::parse(text)
    }
}

impl std::fmt::Display for QueryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Sets each key in `identifier`, in order, so that a later key overrides an earlier one (as
/// DCMTK does when a query file and `-k` options are combined): an element is inserted or
/// replaced; sequences and items along a path are created as needed (`[n]` creates the items up
/// to n). A sequence key with no nested key and no value leaves a sequence that is already there
/// as it is, and otherwise inserts an empty one (universal sequence matching, PS3.4
/// C.2.2.2.6). A path through an element of the identifier that is not a sequence is an error;
/// the keys before it have then been applied.
pub fn apply_keys(identifier: &mut InMemDicomObject, keys: &[QueryKey]) -> Result<(), KeyError> {
    for key in keys {
        apply_steps(identifier, &key.steps, key)?;
    }
    Ok(())
}

fn apply_steps(
    object: &mut InMemDicomObject,
    steps: &[KeyStep],
    key: &QueryKey,
) -> Result<(), KeyError> {
    let Some((step, rest)) = steps.split_first() else {
        return Ok(());
    };
    if rest.is_empty() && step.item.is_none() {
        if key.vr != VR::SQ {
            object.put(DataElement::new(step.tag, key.vr, key.value.clone()));
        } else if object.get(step.tag).and_then(|e| e.items()).is_none() {
            object.put(DataElement::new(
                step.tag,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ));
        }
        return Ok(());
    }

    // The path goes into (or, as the last step, creates) item `index` of a sequence.
    let index = step.item.unwrap_or(0) as usize;
    if let Some(existing) = object.get(step.tag)
        && existing.items().is_none()
        && !existing
            .value()
            .primitive()
            .is_some_and(|value| value.is_empty())
    {
        return Err(KeyError::NotASequence {
            key: key.text.clone(),
            attribute: describe(step.tag),
        });
    }
    let mut items: C<InMemDicomObject> = object
        .take(step.tag)
        .and_then(|element| element.into_value().into_items())
        .unwrap_or_default();
    while items.len() <= index {
        items.push(InMemDicomObject::new_empty());
    }
    let result = match items.get_mut(index) {
        Some(item) => apply_steps(item, rest, key),
        None => Ok(()),
    };
    object.put(DataElement::new(
        step.tag,
        VR::SQ,
        DataSetSequence::from(items.into_vec()),
    ));
    result
}

/// Reads a query file as DCMTK's findscu takes one: a DICOM file (PS3.10, as dump2dcm writes
/// it) or a bare data set without preamble and meta information (explicit VR little endian, or
/// implicit VR when the first element has no VR). The data set passes the hardened scanner
/// before dicom-rs decodes it; the file meta group (0002,xxxx) is not part of the identifier.
pub fn read_query_file(path: impl AsRef<Path>) -> Result<InMemDicomObject, QueryFileError> {
    let path = path.as_ref();
    let io_error = |source| QueryFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_QUERY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_QUERY_FILE_SIZE {
        return Err(QueryFileError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            max: MAX_QUERY_FILE_SIZE,
        });
    }
    let mut identifier = parse_query_bytes(&bytes).map_err(|error| match error {
        BytesError::Meta(source) => QueryFileError::Meta {
            path: path.to_owned(),
            source,
        },
        BytesError::DataSet(source) => QueryFileError::DataSet {
            path: path.to_owned(),
            source,
        },
    })?;
    identifier.retain(|element| element.tag().group() != 0x0002);
    Ok(identifier)
}

enum BytesError {
    Meta(Part10Error),
    DataSet(ConvertError),
}

fn parse_query_bytes(bytes: &[u8]) -> Result<InMemDicomObject, BytesError> {
    let prefix = bytes.get(PREAMBLE_LENGTH..PREAMBLE_LENGTH + DICM_PREFIX.len());
    let (data, transfer_syntax) = if prefix == Some(DICM_PREFIX.as_slice()) {
        let (meta, offset) =
            part10::read_meta(&mut io::Cursor::new(bytes)).map_err(BytesError::Meta)?;
        let data = usize::try_from(offset)
            .ok()
            .and_then(|offset| bytes.get(offset..))
            .unwrap_or_default();
        (data, meta.transfer_syntax_uid)
    } else {
        (bytes, bare_data_set_syntax(bytes).to_owned())
    };
    identifier::decode(data, &transfer_syntax, &ScanLimits::default()).map_err(BytesError::DataSet)
}

/// The transfer syntax of a data set written without meta information: explicit VR little
/// endian when the bytes after the first tag are a VR, implicit VR little endian otherwise.
fn bare_data_set_syntax(bytes: &[u8]) -> &'static str {
    match bytes.get(4..6) {
        Some(&[a, b]) if VR::from_binary([a, b]).is_some() => EXPLICIT_VR_LITTLE_ENDIAN,
        Some(_) => IMPLICIT_VR_LITTLE_ENDIAN,
        None => EXPLICIT_VR_LITTLE_ENDIAN,
    }
}

fn parse_step(key: &str, part: &str) -> Result<KeyStep, KeyError> {
    if part.is_empty() {
        return Err(KeyError::Malformed {
            key: key.to_owned(),
            reason: "an attribute is missing between two dots".to_owned(),
        });
    }
    let (name, item) = match part.split_once('[') {
        None => (part, None),
        Some((name, index)) => {
            let Some(index) = index.strip_suffix(']') else {
                return Err(KeyError::Malformed {
                    key: key.to_owned(),
                    reason: format!(
                        "{part:?} opens an item index with '[' but does not end with ']'"
                    ),
                });
            };
            let bad_index = || KeyError::BadIndex {
                key: key.to_owned(),
                text: index.to_owned(),
                max: MAX_ITEM_INDEX,
            };
            let item: u32 = index.trim().parse().map_err(|_| bad_index())?;
            if item > MAX_ITEM_INDEX {
                return Err(bad_index());
            }
            (name.trim(), Some(item))
        }
    };
    Ok(KeyStep {
        tag: resolve(key, name)?,
        item,
    })
}

/// A tag written as `gggg,eeee`, `(gggg,eeee)` or `ggggeeee`, or a keyword of the standard
/// dictionary.
fn resolve(key: &str, name: &str) -> Result<Tag, KeyError> {
    if name.is_empty() {
        return Err(KeyError::Malformed {
            key: key.to_owned(),
            reason: "an item index has no attribute before it".to_owned(),
        });
    }
    let looks_like_tag = name.starts_with('(') || name.contains(',');
    if let Some(tag) = parse_tag(name) {
        return Ok(tag);
    }
    if looks_like_tag {
        return Err(KeyError::BadTag {
            key: key.to_owned(),
            text: name.to_owned(),
        });
    }
    StandardDataDictionary
        .by_name(name)
        .map(|entry| entry.tag())
        .ok_or_else(|| KeyError::UnknownKeyword {
            key: key.to_owned(),
            name: name.to_owned(),
        })
}

/// Parses `gggg,eeee`, `(gggg,eeee)` or `ggggeeee` (hex digits in either case).
pub(crate) fn parse_tag(text: &str) -> Option<Tag> {
    let inner = match text.strip_prefix('(') {
        Some(rest) => rest.strip_suffix(')')?,
        None => text,
    };
    let (group, element) = match inner.split_once(',') {
        Some(parts) => parts,
        None if inner.len() == 8 && inner.is_ascii() => inner.split_at(4),
        None => return None,
    };
    let hex = |part: &str| {
        (part.len() == 4 && part.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u16::from_str_radix(part, 16).ok())
            .flatten()
    };
    Some(Tag(hex(group)?, hex(element)?))
}

/// The VR a key's element is given: the dictionary's, resolved to the usual one where it allows
/// two; LO for a private creator; UN for any other tag the dictionary does not know.
fn vr_of(tag: Tag) -> VR {
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => entry.vr().relaxed(),
        None if is_private_creator(tag) => VR::LO,
        None => VR::UN,
    }
}

/// A path may go through an attribute the dictionary calls a sequence, or through one it does
/// not know (a private sequence).
fn can_be_sequence(tag: Tag) -> bool {
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => entry.vr().relaxed() == VR::SQ,
        None => !is_private_creator(tag),
    }
}

/// Private Creator Data Elements (gggg,0010-00FF) of an odd group (PS3.5 §7.8.1).
fn is_private_creator(tag: Tag) -> bool {
    tag.group() % 2 == 1 && (0x0010..=0x00FF).contains(&tag.element())
}

/// "PatientName (0010,0010)", or the tag alone when the dictionary does not know it.
fn describe(tag: Tag) -> String {
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => format!("{} {tag}", entry.alias()),
        None => tag.to_string(),
    }
}

/// Parses the text after `=` into a value of `vr`; the reason is returned on failure.
fn parse_value(vr: VR, text: &str) -> Result<PrimitiveValue, String> {
    use VR::*;
    if text.is_empty() {
        return Ok(PrimitiveValue::Empty);
    }
    let values = || text.split('\\').map(str::trim);
    Ok(match vr {
        LT | ST | UT | UR => PrimitiveValue::Str(text.to_owned()),
        AE | AS | CS | DA | DS | DT | IS | LO | PN | SH | TM | UC | UI => {
            PrimitiveValue::Strs(text.split('\\').map(str::to_owned).collect())
        }
        US => PrimitiveValue::U16(numbers(values())?),
        SS => PrimitiveValue::I16(numbers(values())?),
        UL | OL => PrimitiveValue::U32(numbers(values())?),
        SL => PrimitiveValue::I32(numbers(values())?),
        SV => PrimitiveValue::I64(numbers(values())?),
        UV | OV => PrimitiveValue::U64(numbers(values())?),
        FL | OF => PrimitiveValue::F32(numbers(values())?),
        FD | OD => PrimitiveValue::F64(numbers(values())?),
        OB | UN => PrimitiveValue::U8(
            values()
                .map(|v| {
                    u8::from_str_radix(v, 16).map_err(|e| format!("{v:?} is not a hex byte ({e})"))
                })
                .collect::<Result<_, _>>()?,
        ),
        OW => PrimitiveValue::U16(
            values()
                .map(|v| {
                    u16::from_str_radix(v, 16)
                        .map_err(|e| format!("{v:?} is not a hex 16-bit word ({e})"))
                })
                .collect::<Result<_, _>>()?,
        ),
        AT => PrimitiveValue::Tags(
            values()
                .map(|v| {
                    parse_tag(v)
                        .or_else(|| StandardDataDictionary.by_name(v).map(|e| e.tag()))
                        .ok_or_else(|| format!("{v:?} is neither a tag nor a keyword"))
                })
                .collect::<Result<_, _>>()?,
        ),
        SQ => return Err("a sequence takes no value".to_owned()),
    })
}

fn numbers<'a, T>(values: impl Iterator<Item = &'a str>) -> Result<C<T>, String>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    values
        .map(|v| v.parse::<T>().map_err(|e| format!("{v:?}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an error is the one a case expects.
    type Check = fn(&KeyError) -> bool;
    use dicom_dictionary_std::tags;
    use std::io::Write;

    fn key(text: &str) -> QueryKey {
        QueryKey::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn apply(texts: &[&str]) -> InMemDicomObject {
        let keys: Vec<QueryKey> = texts.iter().map(|t| key(t)).collect();
        let mut object = InMemDicomObject::new_empty();
        apply_keys(&mut object, &keys).expect("applied");
        object
    }

    fn text_of(object: &InMemDicomObject, tag: Tag) -> String {
        object
            .element(tag)
            .expect("present")
            .to_str()
            .expect("text")
            .into_owned()
    }

    fn items_of(object: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
        object
            .element(tag)
            .expect("present")
            .items()
            .expect("a sequence")
    }

    #[test]
    fn keys_name_attributes_by_keyword_or_tag_in_every_spelling() {
        for (text, tag) in [
            ("PatientName=DOE*", tags::PATIENT_NAME),
            ("0010,0020=123", tags::PATIENT_ID),
            ("(0010,0020)=123", tags::PATIENT_ID),
            ("(0008,0052)=STUDY", tags::QUERY_RETRIEVE_LEVEL),
            ("0020,000d", tags::STUDY_INSTANCE_UID),
            ("(0020,000D)", tags::STUDY_INSTANCE_UID),
            ("0020000d", tags::STUDY_INSTANCE_UID),
            ("StudyInstanceUID", tags::STUDY_INSTANCE_UID),
        ] {
            let parsed = key(text);
            assert_eq!(parsed.tag(), tag, "{text}");
            assert_eq!(parsed.path().len(), 1, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        let name = key("PatientName=DOE*");
        assert_eq!((name.vr(), name.value()), (VR::PN, Some("DOE*")));
        assert!(!name.is_return_key());
        let uid = key("StudyInstanceUID");
        assert_eq!((uid.vr(), uid.value()), (VR::UI, None));
        assert!(uid.is_return_key());
        let empty = key("PatientID=");
        assert_eq!(empty.value(), Some(""));
        assert!(empty.is_return_key());
    }

    #[test]
    fn a_key_sets_the_element_with_the_dictionary_vr() {
        let object = apply(&[
            "QueryRetrieveLevel=STUDY",
            "PatientName=DOE*",
            "0010,0020",
            "ModalitiesInStudy=CT\\MR",
            "StudyDescription=a=b",
        ]);
        assert_eq!(text_of(&object, tags::QUERY_RETRIEVE_LEVEL), "STUDY");
        let name = object.element(tags::PATIENT_NAME).expect("name");
        assert_eq!(name.vr(), VR::PN);
        assert_eq!(name.to_str().expect("text"), "DOE*");
        let id = object.element(tags::PATIENT_ID).expect("id");
        assert_eq!(
            (id.vr(), id.value().primitive()),
            (VR::LO, Some(&PrimitiveValue::Empty))
        );
        let modalities = object
            .element(tags::MODALITIES_IN_STUDY)
            .expect("modalities");
        assert_eq!(
            modalities.value().to_multi_str().expect("text").as_ref(),
            ["CT", "MR"]
        );
        // Only the first '=' separates the key from its value.
        assert_eq!(text_of(&object, tags::STUDY_DESCRIPTION), "a=b");
    }

    #[test]
    fn backslash_is_a_plain_character_in_single_valued_text() {
        let object = apply(&["PatientComments=C:\\dir\\file"]);
        let comments = object.element(tags::PATIENT_COMMENTS).expect("comments");
        assert_eq!(comments.vr(), VR::LT);
        assert_eq!(
            comments.value().primitive(),
            Some(&PrimitiveValue::Str("C:\\dir\\file".to_owned()))
        );
    }

    #[test]
    fn numeric_values_are_parsed_and_bad_ones_refused() {
        let object = apply(&[
            "NumberOfStudyRelatedInstances=12",
            "Rows=512",
            "ReferencedFrameNumber=1\\2\\3",
            "(0018,9327)=1.5",
            "SelectorAttribute=PatientName",
            "(0028,0106)=7",
        ]);
        // IS is text in DICOM.
        assert_eq!(
            text_of(&object, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
            "12"
        );
        let rows = object.element(tags::ROWS).expect("rows");
        assert_eq!(
            (rows.vr(), rows.value().primitive()),
            (VR::US, Some(&PrimitiveValue::from(512_u16)))
        );
        // (0028,0106) is US or SS: the usual US is taken.
        assert_eq!(
            object.element(Tag(0x0028, 0x0106)).expect("xs").vr(),
            VR::US
        );
        let position = object.element(Tag(0x0018, 0x9327)).expect("table position");
        assert_eq!(position.vr(), VR::FD);
        assert_eq!(position.value().to_float64().expect("number"), 1.5);
        let selector = object.element(tags::SELECTOR_ATTRIBUTE).expect("selector");
        assert_eq!(
            selector.value().primitive(),
            Some(&PrimitiveValue::Tags(C::from_elem(tags::PATIENT_NAME, 1)))
        );

        for (text, vr) in [
            ("Rows=big", VR::US),
            ("Rows=70000", VR::US),
            ("(0018,9327)=x", VR::FD),
        ] {
            match QueryKey::parse(text) {
                Err(KeyError::BadValue { key, vr: got, .. }) => {
                    assert_eq!((key.as_str(), got), (text, vr));
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = QueryKey::parse("Rows=big")
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains("Rows=big") && message.contains("US"),
            "{message}"
        );
    }

    #[test]
    fn nested_keys_create_sequences_and_items() {
        let object = apply(&[
            "(0040,0100)[0].Modality=CT",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
            "ScheduledProcedureStepSequence[2].ScheduledStationAETitle=AE3",
        ]);
        let sequence = object
            .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
            .expect("sequence");
        assert_eq!(sequence.vr(), VR::SQ);
        let items = items_of(&object, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE);
        assert_eq!(items.len(), 3);
        assert_eq!(text_of(&items[0], tags::MODALITY), "CT");
        assert!(
            items[0]
                .element(tags::SCHEDULED_STATION_AE_TITLE)
                .expect("return key")
                .value()
                .primitive()
                .is_some_and(|value| value.is_empty())
        );
        assert_eq!(items[1].iter().count(), 0);
        assert_eq!(text_of(&items[2], tags::SCHEDULED_STATION_AE_TITLE), "AE3");

        // Without an index, a step goes into item 0; deeper nesting works the same.
        let nested =
            apply(&["RequestAttributesSequence.ScheduledProtocolCodeSequence[1].CodeValue=X"]);
        let outer = items_of(&nested, tags::REQUEST_ATTRIBUTES_SEQUENCE);
        assert_eq!(outer.len(), 1);
        let inner = items_of(&outer[0], tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE);
        assert_eq!(inner.len(), 2);
        assert_eq!(text_of(&inner[1], tags::CODE_VALUE), "X");
    }

    #[test]
    fn a_bare_sequence_key_asks_for_universal_sequence_matching() {
        let object = apply(&["ScheduledProcedureStepSequence", "ReferencedStudySequence="]);
        assert!(items_of(&object, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).is_empty());
        assert!(items_of(&object, tags::REFERENCED_STUDY_SEQUENCE).is_empty());
        // An index alone creates the items.
        let object = apply(&["ScheduledProcedureStepSequence[1]"]);
        assert_eq!(
            items_of(&object, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).len(),
            2
        );
        // A bare key after nested ones keeps them.
        let object = apply(&[
            "(0040,0100)[0].Modality=CT",
            "ScheduledProcedureStepSequence",
        ]);
        let kept = items_of(&object, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE);
        assert_eq!(text_of(&kept[0], tags::MODALITY), "CT");
    }

    #[test]
    fn later_keys_override_earlier_ones() {
        let mut object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_NAME, VR::PN, "SMITH"),
            DataElement::new(tags::PATIENT_ID, VR::LO, "1"),
        ]);
        let keys = [
            key("PatientName=DOE*"),
            key("(0040,0100)[0].Modality=CT"),
            key("(0040,0100)[0].Modality=MR"),
            key("PatientName"),
        ];
        apply_keys(&mut object, &keys).expect("applied");
        assert!(
            object
                .element(tags::PATIENT_NAME)
                .expect("name")
                .value()
                .primitive()
                .is_some_and(|value| value.is_empty())
        );
        assert_eq!(text_of(&object, tags::PATIENT_ID), "1");
        let items = items_of(&object, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE);
        assert_eq!(items.len(), 1);
        assert_eq!(text_of(&items[0], tags::MODALITY), "MR");
    }

    #[test]
    fn bad_keys_are_refused_with_a_message_that_names_them() {
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, KeyError::Empty { .. })),
            ("=DOE", |e| matches!(e, KeyError::Empty { .. })),
            (
                "PatientNam=DOE",
                |e| matches!(e, KeyError::UnknownKeyword { name, .. } if name == "PatientNam"),
            ),
            ("(0010,002G)=1", |e| matches!(e, KeyError::BadTag { .. })),
            ("0010,20=1", |e| matches!(e, KeyError::BadTag { .. })),
            ("(0010,0020=1", |e| matches!(e, KeyError::BadTag { .. })),
            ("aaaé€=1", |e| {
                matches!(e, KeyError::UnknownKeyword { .. })
            }),
            (
                "(0040,0100)[x].Modality=CT",
                |e| matches!(e, KeyError::BadIndex { text, .. } if text == "x"),
            ),
            ("(0040,0100)[-1].Modality=CT", |e| {
                matches!(e, KeyError::BadIndex { .. })
            }),
            ("(0040,0100)[1000].Modality=CT", |e| {
                matches!(e, KeyError::BadIndex { .. })
            }),
            ("(0040,0100)[0.Modality=CT", |e| {
                matches!(e, KeyError::Malformed { .. })
            }),
            ("(0040,0100)[0]..Modality=CT", |e| {
                matches!(e, KeyError::Malformed { .. })
            }),
            ("[0].Modality=CT", |e| {
                matches!(e, KeyError::Malformed { .. })
            }),
            (
                "PatientName[0].Modality=CT",
                |e| matches!(e, KeyError::NotASequence { attribute, .. } if attribute.contains("PatientName")),
            ),
            ("PatientName.Modality=CT", |e| {
                matches!(e, KeyError::NotASequence { .. })
            }),
            ("PatientName[0]", |e| {
                matches!(e, KeyError::NotASequence { .. })
            }),
            ("ScheduledProcedureStepSequence=CT", |e| {
                matches!(e, KeyError::SequenceValue { .. })
            }),
        ];
        for (text, expected) in cases {
            let error = QueryKey::parse(text).expect_err(text);
            assert!(expected(&error), "{text}: {error:?}");
            assert!(
                error.to_string().contains(&format!("{text:?}")),
                "{text}: {error}"
            );
        }
        let deep = vec!["ContentSequence"; MAX_PATH_DEPTH + 1].join(".");
        assert!(matches!(
            QueryKey::parse(&deep),
            Err(KeyError::TooDeep { .. })
        ));
    }

    #[test]
    fn a_path_through_an_element_that_is_not_a_sequence_is_refused() {
        let mut object = InMemDicomObject::from_element_iter([DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::UN,
            PrimitiveValue::from(vec![1_u8, 2]),
        )]);
        let error =
            apply_keys(&mut object, &[key("(0040,0100)[0].Modality=CT")]).expect_err("refused");
        assert!(matches!(error, KeyError::NotASequence { .. }), "{error:?}");
        assert!(
            error.to_string().contains("(0040,0100)[0].Modality=CT"),
            "{error}"
        );
        // The element is left as it was.
        assert_eq!(
            object
                .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
                .expect("kept")
                .vr(),
            VR::UN
        );
    }

    #[test]
    fn unknown_and_private_tags_get_un_or_lo() {
        let object = apply(&[
            "(0009,0010)=ACME",
            "(0009,1001)=0A\\ff",
            "(0011,1010)[0].(0011,1011)=01",
        ]);
        let creator = object.element(Tag(0x0009, 0x0010)).expect("creator");
        assert_eq!(
            (creator.vr(), creator.to_str().expect("text").as_ref()),
            (VR::LO, "ACME")
        );
        let private = object.element(Tag(0x0009, 0x1001)).expect("private");
        assert_eq!(
            (
                private.vr(),
                private.value().to_bytes().expect("bytes").as_ref()
            ),
            (VR::UN, &[0x0A, 0xFF][..])
        );
        let sequence = items_of(&object, Tag(0x0011, 0x1010));
        assert_eq!(
            sequence[0]
                .element(Tag(0x0011, 0x1011))
                .expect("nested")
                .vr(),
            VR::UN
        );
        assert!(matches!(
            QueryKey::parse("(0009,1001)=zz"),
            Err(KeyError::BadValue { vr: VR::UN, .. })
        ));
    }

    /// A query file written by DCMTK's dump2dcm (3.6.7) from
    /// `(0008,0052) CS [STUDY]`, `(0010,0010) PN [DOE*]`, `(0010,0020) LO []`,
    /// `(0020,000d) UI []` and `(0040,0100) SQ` with one item holding `(0008,0060) CS [CT]`.
    const DCMTK_QUERY_DATA_SET: &[u8] = &[
        0x08, 0x00, 0x52, 0x00, b'C', b'S', 0x06, 0x00, b'S', b'T', b'U', b'D', b'Y', b' ', 0x10,
        0x00, 0x10, 0x00, b'P', b'N', 0x04, 0x00, b'D', b'O', b'E', b'*', 0x10, 0x00, 0x20, 0x00,
        b'L', b'O', 0x00, 0x00, 0x20, 0x00, 0x0d, 0x00, b'U', b'I', 0x00, 0x00, 0x40, 0x00, 0x00,
        0x01, b'S', b'Q', 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0xfe, 0xff, 0x00, 0xe0, 0x0a, 0x00,
        0x00, 0x00, 0x08, 0x00, 0x60, 0x00, b'C', b'S', 0x02, 0x00, b'C', b'T',
    ];

    fn check_dcmtk_query(object: &InMemDicomObject) {
        assert_eq!(
            text_of(object, tags::QUERY_RETRIEVE_LEVEL).trim_end(),
            "STUDY"
        );
        assert_eq!(text_of(object, tags::PATIENT_NAME), "DOE*");
        assert!(object.element(tags::PATIENT_ID).is_ok());
        assert!(object.element(tags::STUDY_INSTANCE_UID).is_ok());
        let items = items_of(object, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE);
        assert_eq!(text_of(&items[0], tags::MODALITY), "CT");
        assert!(object.iter().all(|e| e.tag().group() != 0x0002));
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write_temp(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("dimsum-query-keys-{}-{name}", std::process::id()));
        File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("written");
        TempFile(path)
    }

    #[test]
    fn a_bare_explicit_vr_data_set_is_a_query_file() {
        let path = write_temp("bare.dcm", DCMTK_QUERY_DATA_SET);
        check_dcmtk_query(&read_query_file(&path.0).expect("read"));
    }

    #[test]
    fn a_part10_query_file_loses_its_meta_group() {
        let meta = crate::part10::FileMeta::new(
            "1.2.276.0.7230010.3.1.0.1",
            "1.2.3.4",
            EXPLICIT_VR_LITTLE_ENDIAN,
            "1.2.3.5",
            "TEST",
        );
        let mut bytes = crate::part10::encode_header(&meta).expect("header");
        bytes.extend_from_slice(DCMTK_QUERY_DATA_SET);
        let path = write_temp("part10.dcm", &bytes);
        check_dcmtk_query(&read_query_file(&path.0).expect("read"));
    }

    #[test]
    fn an_implicit_vr_query_file_is_recognised() {
        let object = apply(&["QueryRetrieveLevel=PATIENT", "PatientID=42"]);
        let bytes = identifier::encode(&object, IMPLICIT_VR_LITTLE_ENDIAN).expect("encoded");
        let path = write_temp("implicit.dcm", &bytes);
        let read = read_query_file(&path.0).expect("read");
        assert_eq!(text_of(&read, tags::PATIENT_ID), "42");
    }

    #[test]
    fn a_bad_query_file_is_refused_by_the_scanner() {
        // (0010,0010) PN claiming 0xFFF0 bytes where 4 remain.
        let lying = [
            0x10, 0x00, 0x10, 0x00, b'P', b'N', 0xF0, 0xFF, b'D', b'O', b'E', b' ',
        ];
        let path = write_temp("lying.dcm", &lying);
        let error = read_query_file(&path.0).expect_err("refused");
        assert!(
            matches!(
                &error,
                QueryFileError::DataSet {
                    source: ConvertError::Scan(_),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("lying.dcm"), "{error}");

        let mut broken_meta = vec![0u8; PREAMBLE_LENGTH];
        broken_meta.extend_from_slice(DICM_PREFIX);
        broken_meta.extend_from_slice(&[
            0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 0xFF, 0xFF, 0xFF, 0x7F,
        ]);
        let path = write_temp("meta.dcm", &broken_meta);
        assert!(matches!(
            read_query_file(&path.0),
            Err(QueryFileError::Meta { .. })
        ));

        let missing = std::env::temp_dir().join("dimsum-no-such-query-file.dcm");
        assert!(matches!(
            read_query_file(&missing),
            Err(QueryFileError::Io { .. })
        ));
    }
}
