//! How the index keeps attributes: each instance's complete attribute set without bulk data,
//! and each patient, study and series record (the attributes of its level, PS3.4 C.6.1.1), as
//! compact blobs — the data set encoded in Explicit VR Little Endian (PS3.5 §A.2) and compressed
//! — so that any return key, and DICOMweb metadata, is answered without opening a file. Blobs
//! are read back through the hardened scanner like any data set.
//!
//! A blob is [`LZ4_RECORD`], the length of the encoded data set (u32, little endian), then one
//! LZ4 block: a few microseconds each way for a record of a few KiB. Indexes written before
//! hold raw deflate streams (RFC 1951), which can never begin with that byte (its block type
//! bits say "reserved"), so both are read.
//!
//! **Bulk data.** An instance's record also says where the bulk data it leaves out was, so that
//! WADO-RS metadata (PS3.18 10.4.1.1.4, F.2.6) can give a BulkDataURI for each: the
//! [`BulkElement`]s, each a [`TagPath`] and the element's VR, in data set order, the top-level
//! Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008) or Double Float Pixel Data (7FE0,0009)
//! among them whenever the instance has one. The data set part of the record is the same as
//! without them (C-FIND reads and matches exactly what it did); an instance record with bulk
//! elements is the blob [`LZ4_RECORD_WITH_BULK_DATA`]: the total length and the data set's
//! length (u32 each, little endian), then one LZ4 block of the encoded data set followed by the
//! list (one `path VR` line per element, as [`TagPath`] writes paths). Records written before
//! have no list: their metadata simply has no BulkDataURI.

use std::fmt;
use std::io::Read;

use flate2::read::DeflateDecoder;

use dimsum_dataset::dicom_core::header::{HasLength, Header};
use dimsum_dataset::dicom_core::ops::{AttributeSelector, AttributeSelectorStep};
use dimsum_dataset::dicom_core::value::{DataSetSequence, Value};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::{InMemDicomObject, mem::InMemElement};
use dimsum_dataset::identifier;
use dimsum_dataset::scan::ScanLimits;

/// The transfer syntax of stored attribute sets: Explicit VR Little Endian.
pub const RECORD_TRANSFER_SYNTAX: &str = "1.2.840.10008.1.2.1";

/// Binary values (OB, OD, OF, OL, OV, OW, UN) longer than this many bytes are bulk data, at
/// any depth: not kept in the index (DICOMweb sends them as BulkDataURI; C-FIND never matches
/// on them). Everything before the Pixel Data group that is not bulk data is kept.
pub const BULK_DATA_THRESHOLD: u32 = 1024;

/// The most bytes a stored attribute set inflates to; a blob that claims more is corrupt.
pub const MAX_RECORD_SIZE: u64 = 64 * 1024 * 1024;

/// The most sequence items a [`TagPath`] enters (the hardened scanner's default nesting limit):
/// a bulk element nested deeper is left out of the record without a path.
pub const MAX_TAG_PATH_DEPTH: usize = 16;

/// Whether an element is bulk data ([`BULK_DATA_THRESHOLD`]); encapsulated values always are.
pub fn is_bulk(element: &InMemElement) -> bool {
    match element.value() {
        Value::PixelSequence(_) => true,
        Value::Sequence(_) => false,
        Value::Primitive(_) => {
            matches!(
                element.vr(),
                VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
            ) && element
                .header()
                .length()
                .get()
                .is_none_or(|length| length > BULK_DATA_THRESHOLD)
        }
    }
}

/// Whether `tag` is one of the pixel data elements of a top-level data set (PS3.3 C.7.6.3,
/// PS3.18 10.4.3.3.6): Pixel Data, Float Pixel Data, Double Float Pixel Data.
pub fn is_pixel_data(tag: Tag) -> bool {
    matches!(
        tag,
        tags::PIXEL_DATA | tags::FLOAT_PIXEL_DATA | tags::DOUBLE_FLOAT_PIXEL_DATA
    )
}

/// Where an element is in a data set (the bulk data paths of PS3.18 10.4.1.1.5, in dimsum's
/// form): the sequence items entered from the top, each as the sequence's tag and the item's
/// index from 0, then the element's tag, separated by `/`; tags are eight hex digits (written
/// uppercase). `00420011` is a top-level element, `00540016/0/00181072` an element of the first
/// item of (0054,0016). It names an element, never a file: [`TagPath::parse`] takes nothing
/// else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagPath(AttributeSelector);

/// Why text is not a [`TagPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagPathError {
    #[error("a tag path cannot be empty")]
    Empty,
    #[error("a tag path enters at most {max} sequence items")]
    TooDeep { max: usize },
    #[error("{segment:?} is not a tag (eight hex digits, ggggeeee, not an item tag FFFExxxx)")]
    NotATag { segment: String },
    #[error("{segment:?} is not an item index (a decimal number from 0, without leading zeros)")]
    NotAnItem { segment: String },
    #[error("a tag path ends with a tag, not with an item index")]
    EndsWithItem,
}

impl TagPath {
    /// The path of a top-level element.
    pub fn top(tag: Tag) -> TagPath {
        TagPath(AttributeSelector::from(tag))
    }

    /// The path of the element `tag` in the items `items` (sequence tag, item index from 0)
    /// entered from the top.
    pub fn new(items: &[(Tag, u32)], tag: Tag) -> Result<TagPath, TagPathError> {
        if items.len() > MAX_TAG_PATH_DEPTH {
            return Err(TagPathError::TooDeep {
                max: MAX_TAG_PATH_DEPTH,
            });
        }
        let steps = items
            .iter()
            .map(|&(tag, item)| AttributeSelectorStep::Nested { tag, item })
            .chain([AttributeSelectorStep::Tag(tag)]);
        AttributeSelector::new(steps)
            .map(TagPath)
            .ok_or(TagPathError::Empty)
    }

    /// Reads a path written as [`TagPath`]'s `Display` writes it (`00540016/0/00181072`).
    pub fn parse(text: &str) -> Result<TagPath, TagPathError> {
        if text.is_empty() {
            return Err(TagPathError::Empty);
        }
        let segments: Vec<&str> = text.split('/').take(2 * MAX_TAG_PATH_DEPTH + 2).collect();
        TagPath::from_segments(&segments)
    }

    /// Reads a path from its segments (those of a URL after `bulkdata`).
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<TagPath, TagPathError> {
        if segments.is_empty() {
            return Err(TagPathError::Empty);
        }
        if segments.len() > 2 * MAX_TAG_PATH_DEPTH + 1 {
            return Err(TagPathError::TooDeep {
                max: MAX_TAG_PATH_DEPTH,
            });
        }
        if segments.len().is_multiple_of(2) {
            return Err(TagPathError::EndsWithItem);
        }
        let mut items = Vec::with_capacity(segments.len() / 2);
        let mut pairs = segments.chunks_exact(2);
        for pair in pairs.by_ref() {
            items.push((parse_tag(pair[0].as_ref())?, parse_item(pair[1].as_ref())?));
        }
        let last = pairs.remainder().first().map_or("", |s| s.as_ref());
        TagPath::new(&items, parse_tag(last)?)
    }

    /// The path of the element a selector names (dicom-rs's form of the same thing).
    pub fn from_selector(selector: &AttributeSelector) -> TagPath {
        TagPath(selector.clone())
    }

    /// The path as dicom-rs's attribute selector.
    pub fn selector(&self) -> &AttributeSelector {
        &self.0
    }

    /// The element's own tag.
    pub fn tag(&self) -> Tag {
        self.0.last_tag()
    }

    /// The sequence items entered, from the top: each sequence's tag and the item's index.
    pub fn items(&self) -> Vec<(Tag, u32)> {
        self.0
            .iter()
            .filter_map(|step| match *step {
                AttributeSelectorStep::Nested { tag, item } => Some((tag, item)),
                AttributeSelectorStep::Tag(_) => None,
            })
            .collect()
    }

    /// Whether it names an element of the top-level data set.
    pub fn is_top_level(&self) -> bool {
        self.0.num_steps() == 1
    }
}

impl fmt::Display for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("/")?;
            }
            match *step {
                AttributeSelectorStep::Nested { tag, item } => {
                    write!(f, "{:04X}{:04X}/{item}", tag.group(), tag.element())?;
                }
                AttributeSelectorStep::Tag(tag) => {
                    write!(f, "{:04X}{:04X}", tag.group(), tag.element())?;
                }
            }
        }
        Ok(())
    }
}

fn parse_tag(segment: &str) -> Result<Tag, TagPathError> {
    let not_a_tag = || TagPathError::NotATag {
        segment: segment.chars().take(40).collect(),
    };
    if segment.len() != 8 || !segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_a_tag());
    }
    let group = u16::from_str_radix(&segment[..4], 16).map_err(|_| not_a_tag())?;
    let element = u16::from_str_radix(&segment[4..], 16).map_err(|_| not_a_tag())?;
    if group == 0xFFFE {
        return Err(not_a_tag());
    }
    Ok(Tag(group, element))
}

fn parse_item(segment: &str) -> Result<u32, TagPathError> {
    let canonical = !segment.is_empty()
        && segment.len() <= 10
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    canonical
        .then(|| segment.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| TagPathError::NotAnItem {
            segment: segment.chars().take(40).collect(),
        })
}

/// A bulk data element an instance's record leaves out: where it was and its VR (the BulkDataURI
/// of PS3.18 F.2.6 and PS3.19 A.1.5 is made from them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkElement {
    pub path: TagPath,
    pub vr: VR,
}

/// The data set without its bulk data, sequence items included.
pub fn without_bulk_data(object: InMemDicomObject) -> InMemDicomObject {
    split_bulk_data(object).0
}

/// The data set without its bulk data, sequence items included, and where each bulk element
/// was, in data set order. The top-level pixel data elements ([`is_pixel_data`]) are always
/// bulk data, whatever their value (a caller that does not decode the pixel data gives the
/// element with an empty value: its tag and VR are what the record keeps). Bulk elements nested
/// deeper than [`MAX_TAG_PATH_DEPTH`] items are left out without a path.
pub fn split_bulk_data(mut object: InMemDicomObject) -> (InMemDicomObject, Vec<BulkElement>) {
    let nested = object.iter().any(|element| {
        element
            .items()
            .is_some_and(|items| items.iter().any(holds_bulk_data))
    });
    if !nested {
        // The common case (bulk data at the top only, if any): those elements are taken out
        // and the rest is kept as it is, not rebuilt.
        let top: Vec<(Tag, VR)> = object
            .iter()
            .filter(|element| taken_as_bulk(element, true))
            .map(|element| (element.tag(), element.vr()))
            .collect();
        let mut bulk = Vec::with_capacity(top.len());
        for (tag, vr) in top {
            object.remove_element(tag);
            if let Ok(path) = TagPath::new(&[], tag) {
                bulk.push(BulkElement { path, vr });
            }
        }
        return (object, bulk);
    }
    let mut bulk = Vec::new();
    let mut items = Vec::new();
    let kept = split_item(object, &mut items, &mut bulk);
    (kept, bulk)
}

/// Whether an element is left out of the record as bulk data: a bulk value ([`is_bulk`]), or
/// pixel data at the top of the data set ([`is_pixel_data`]).
fn taken_as_bulk(element: &InMemElement, at_top: bool) -> bool {
    is_bulk(element) || (at_top && is_pixel_data(element.tag()))
}

/// Whether a sequence item holds a bulk element ([`is_bulk`]), at any depth.
fn holds_bulk_data(item: &InMemDicomObject) -> bool {
    item.iter().any(|element| {
        is_bulk(element)
            || element
                .items()
                .is_some_and(|items| items.iter().any(holds_bulk_data))
    })
}

fn split_item(
    object: InMemDicomObject,
    items: &mut Vec<(Tag, u32)>,
    bulk: &mut Vec<BulkElement>,
) -> InMemDicomObject {
    let mut kept = Vec::new();
    for element in object {
        let tag = element.tag();
        if taken_as_bulk(&element, items.is_empty()) {
            if let Ok(path) = TagPath::new(items, tag) {
                bulk.push(BulkElement {
                    path,
                    vr: element.vr(),
                });
            }
            continue;
        }
        if element.vr() != VR::SQ {
            kept.push(element);
            continue;
        }
        match element.into_value() {
            Value::Sequence(sequence) => {
                let nested: Vec<InMemDicomObject> = sequence
                    .into_items()
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        items.push((tag, u32::try_from(index).unwrap_or(u32::MAX)));
                        let item = split_item(item, items, bulk);
                        items.pop();
                        item
                    })
                    .collect();
                kept.push(DataElement::new(tag, VR::SQ, DataSetSequence::from(nested)));
            }
            other => kept.push(DataElement::new(tag, VR::SQ, other)),
        }
    }
    InMemDicomObject::from_element_iter(kept)
}

/// Encodes a record as a blob. A record whose text its own character set cannot encode again
/// is stored in UTF-8 (ISO_IR 192) instead.
pub fn encode(record: &InMemDicomObject) -> Result<Vec<u8>, String> {
    encode_with_bulk_data(record, &[])
}

/// Encodes an instance's record and its bulk elements as a blob: [`LZ4_RECORD`] when there are
/// none (as [`encode`]), [`LZ4_RECORD_WITH_BULK_DATA`] otherwise.
pub fn encode_with_bulk_data(
    record: &InMemDicomObject,
    bulk_data: &[BulkElement],
) -> Result<Vec<u8>, String> {
    compress(encoded(record)?, bulk_data)
}

/// [`encode_with_bulk_data`] for an instance whose data set is at hand as received, in the
/// records' transfer syntax (explicit VR little endian), with `record` holding its text as
/// read (no character set decoded again, [`dimsum_dataset::charset::to_unicode`]): the
/// record's elements are copied from the data set rather than encoded again, when it has
/// every one of them as a top-level element and no bulk element is inside a sequence (its
/// sequence in the record then differs from the data set's). Otherwise it is encoded.
pub fn encode_received(
    record: &InMemDicomObject,
    bulk_data: &[BulkElement],
    data_set: &[u8],
) -> Result<Vec<u8>, String> {
    match copied(record, bulk_data, data_set) {
        Some(bytes) => compress(bytes, bulk_data),
        None => encode_with_bulk_data(record, bulk_data),
    }
}

/// The top-level elements of `data_set` that `record` holds, in order, if those are all of
/// the record's.
fn copied(
    record: &InMemDicomObject,
    bulk_data: &[BulkElement],
    data_set: &[u8],
) -> Option<Vec<u8>> {
    if !bulk_data.iter().all(|element| element.path.is_top_level()) {
        return None;
    }
    let elements = dimsum_dataset::elements::top_level_elements(data_set)?;
    let mut bytes = Vec::with_capacity(data_set.len());
    let mut copied = 0;
    for (tag, range) in elements {
        if record.get(tag).is_some() {
            bytes.extend_from_slice(data_set.get(range)?);
            copied += 1;
        }
    }
    (copied == record.iter().count()).then_some(bytes)
}

/// A record's data set in [`RECORD_TRANSFER_SYNTAX`]; one whose text its own character set
/// cannot encode again in UTF-8 (ISO_IR 192) instead.
fn encoded(record: &InMemDicomObject) -> Result<Vec<u8>, String> {
    Ok(match identifier::encode(record, RECORD_TRANSFER_SYNTAX) {
        Ok(bytes) => bytes,
        Err(first) if record.get(tags::SPECIFIC_CHARACTER_SET).is_some() => {
            let mut utf8 = record.clone();
            utf8.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                "ISO_IR 192",
            ));
            identifier::encode(&utf8, RECORD_TRANSFER_SYNTAX)
                .map_err(|error| format!("{first}; in UTF-8: {error}"))?
        }
        Err(error) => return Err(error.to_string()),
    })
}

/// A record's data set and its bulk elements, compressed with their header.
fn compress(mut bytes: Vec<u8>, bulk_data: &[BulkElement]) -> Result<Vec<u8>, String> {
    let too_large = |size: usize| format!("a record of {size} bytes is too large");
    let data_set_length = u32::try_from(bytes.len()).map_err(|_| too_large(bytes.len()))?;
    let header: Vec<u8> = if bulk_data.is_empty() {
        let mut header = vec![LZ4_RECORD];
        header.extend_from_slice(&data_set_length.to_le_bytes());
        header
    } else {
        for element in bulk_data {
            bytes.extend_from_slice(
                format!("{} {}\n", element.path, element.vr.to_string()).as_bytes(),
            );
        }
        let total = u32::try_from(bytes.len()).map_err(|_| too_large(bytes.len()))?;
        let mut header = vec![LZ4_RECORD_WITH_BULK_DATA];
        header.extend_from_slice(&total.to_le_bytes());
        header.extend_from_slice(&data_set_length.to_le_bytes());
        header
    };
    let mut blob = vec![0; header.len() + lz4_flex::block::get_maximum_output_size(bytes.len())];
    blob[..header.len()].copy_from_slice(&header);
    let compressed = lz4_flex::block::compress_into(&bytes, &mut blob[header.len()..])
        .map_err(|error| format!("cannot compress: {error}"))?;
    blob.truncate(header.len() + compressed);
    Ok(blob)
}

/// The first byte of a record compressed with LZ4: as the first byte of a deflate stream it
/// would announce a block of the reserved type 3 (RFC 1951 §3.2.3), so no deflated record
/// starts with it.
pub const LZ4_RECORD: u8 = 0x06;

/// The first byte of an instance's record with its bulk elements (see the module
/// documentation); like [`LZ4_RECORD`], its block type bits are the reserved 3 of deflate.
pub const LZ4_RECORD_WITH_BULK_DATA: u8 = 0x0E;

/// Decodes a blob made by [`encode`] or [`encode_with_bulk_data`] (its bulk elements are not
/// read), through the hardened scanner with `limits`.
pub fn decode(blob: &[u8], limits: &ScanLimits) -> Result<InMemDicomObject, String> {
    let (bytes, data_set_length) = decompress(blob)?;
    let data_set = bytes.get(..data_set_length).unwrap_or_default();
    identifier::decode(data_set, RECORD_TRANSFER_SYNTAX, limits).map_err(|error| error.to_string())
}

/// Decodes a blob with its bulk elements (none for a record without them, or written before
/// records held them).
pub fn decode_with_bulk_data(
    blob: &[u8],
    limits: &ScanLimits,
) -> Result<(InMemDicomObject, Vec<BulkElement>), String> {
    let (bytes, data_set_length) = decompress(blob)?;
    let (data_set, list) = bytes.split_at(data_set_length.min(bytes.len()));
    let object = identifier::decode(data_set, RECORD_TRANSFER_SYNTAX, limits)
        .map_err(|error| error.to_string())?;
    let list = std::str::from_utf8(list)
        .map_err(|_| "its list of bulk data elements is not UTF-8".to_owned())?;
    let bulk_data = list
        .lines()
        .map(|line| {
            let bad = |why: String| format!("bulk data element {line:?}: {why}");
            let (path, vr) = line
                .split_once(' ')
                .ok_or_else(|| bad("no VR".to_owned()))?;
            let path = TagPath::parse(path).map_err(|error| bad(error.to_string()))?;
            let vr = match vr.as_bytes() {
                [a, b] => VR::from_binary([*a, *b]),
                _ => None,
            }
            .ok_or_else(|| bad("not a VR".to_owned()))?;
            Ok(BulkElement { path, vr })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((object, bulk_data))
}

/// The bytes a blob holds, and how many of them are the data set.
fn decompress(blob: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let lz4 = |claimed: [u8; 4], compressed: &[u8]| -> Result<Vec<u8>, String> {
        let length = u64::from(u32::from_le_bytes(claimed));
        if length > MAX_RECORD_SIZE {
            return Err(format!(
                "it claims {length} bytes, more than {MAX_RECORD_SIZE}"
            ));
        }
        let mut bytes = vec![0; usize::try_from(length).unwrap_or(0)];
        let written = lz4_flex::block::decompress_into(compressed, &mut bytes)
            .map_err(|error| format!("cannot decompress: {error}"))?;
        if written != bytes.len() {
            return Err(format!("it holds {written} of its {length} bytes"));
        }
        Ok(bytes)
    };
    match blob {
        [LZ4_RECORD, a, b, c, d, compressed @ ..] => {
            let bytes = lz4([*a, *b, *c, *d], compressed)?;
            let length = bytes.len();
            Ok((bytes, length))
        }
        [
            LZ4_RECORD_WITH_BULK_DATA,
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            compressed @ ..,
        ] => {
            let bytes = lz4([*a, *b, *c, *d], compressed)?;
            let data_set_length = u32::from_le_bytes([*e, *f, *g, *h]);
            let data_set_length = usize::try_from(data_set_length)
                .ok()
                .filter(|length| *length <= bytes.len())
                .ok_or_else(|| {
                    format!(
                        "its data set of {data_set_length} bytes is longer than its {} bytes",
                        bytes.len()
                    )
                })?;
            Ok((bytes, data_set_length))
        }
        deflated => {
            let mut bytes = Vec::new();
            DeflateDecoder::new(deflated)
                .take(MAX_RECORD_SIZE + 1)
                .read_to_end(&mut bytes)
                .map_err(|error| format!("cannot inflate: {error}"))?;
            if bytes.len() as u64 > MAX_RECORD_SIZE {
                return Err(format!("it inflates to more than {MAX_RECORD_SIZE} bytes"));
            }
            let length = bytes.len();
            Ok((bytes, length))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::parent_records;
    use dimsum_dataset::dicom_core::Tag;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;

    fn text(object: &InMemDicomObject, tag: Tag) -> String {
        object
            .get(tag)
            .expect("present")
            .to_str()
            .expect("text")
            .into_owned()
    }

    #[test]
    fn records_split_by_level_without_bulk_data_and_round_trip() {
        let small = DataElement::new(
            Tag(0x0009, 0x1001),
            VR::OB,
            PrimitiveValue::U8(vec![1u8; 16].into()),
        );
        let large = DataElement::new(
            Tag(0x0009, 0x1002),
            VR::OB,
            PrimitiveValue::U8(vec![2u8; 4096].into()),
        );
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, "T-D3000"),
            large.clone(),
        ]);
        let attributes = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "MÜLLER^JÜRGEN"),
            DataElement::new(tags::STUDY_DATE, VR::DA, "20240105"),
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3"),
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            small,
            large,
        ]);
        let (instance, _) = split_bulk_data(attributes);
        let [patient, study, series] = parent_records(&instance);
        assert_eq!(text(&patient, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");
        assert!(patient.get(tags::STUDY_DATE).is_none());
        assert_eq!(text(&study, tags::STUDY_DATE), "20240105");
        assert_eq!(text(&series, tags::MODALITY), "CT");
        for record in [&patient, &study, &series] {
            assert_eq!(text(record, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
        }
        assert!(
            instance.get(Tag(0x0009, 0x1001)).is_some(),
            "small binary kept"
        );
        assert!(
            instance.get(Tag(0x0009, 0x1002)).is_none(),
            "bulk data left out"
        );
        let items = instance
            .get(tags::ANATOMIC_REGION_SEQUENCE)
            .and_then(|e| e.value().items())
            .expect("sequence");
        assert!(
            items[0].get(Tag(0x0009, 0x1002)).is_none(),
            "inside items too"
        );
        assert!(items[0].get(tags::CODE_VALUE).is_some());

        let blob = encode(&instance).expect("encoded");
        let back = decode(&blob, &ScanLimits::default()).expect("decoded");
        assert_eq!(text(&back, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");
        assert_eq!(text(&back, tags::SOP_INSTANCE_UID), "1.2.3");
        assert_eq!(back.iter().count(), instance.iter().count());
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_a_panic() {
        assert!(decode(b"not deflate at all", &ScanLimits::default()).is_err());
        let record =
            InMemDicomObject::from_element_iter([DataElement::new(tags::MODALITY, VR::CS, "CT")]);
        let mut blob = encode(&record).expect("encoded");
        assert_eq!(blob[0], LZ4_RECORD);
        blob.truncate(blob.len() / 2);
        assert!(decode(&blob, &ScanLimits::default()).is_err());
        // A length beyond the bound is refused before anything is allocated for it.
        let mut huge = vec![LZ4_RECORD];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 16]);
        let refused = decode(&huge, &ScanLimits::default()).expect_err("refused");
        assert!(refused.contains("claims"), "{refused}");
        // A length that the block does not fill.
        let mut short = encode(&record).expect("encoded");
        let claimed = u32::from_le_bytes(short[1..5].try_into().expect("4 bytes")) + 10;
        short[1..5].copy_from_slice(&claimed.to_le_bytes());
        assert!(decode(&short, &ScanLimits::default()).is_err());
    }

    #[test]
    fn records_deflated_by_earlier_versions_are_still_read() {
        use std::io::Write;
        let record = InMemDicomObject::from_element_iter([
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^John"),
        ]);
        let encoded =
            identifier::encode(&record, RECORD_TRANSFER_SYNTAX).expect("encoded data set");
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        deflater.write_all(&encoded).expect("deflated");
        let deflated = deflater.finish().expect("deflated");
        assert_ne!(deflated[0], LZ4_RECORD);
        let decoded = decode(&deflated, &ScanLimits::default()).expect("read");
        assert_eq!(text(&decoded, tags::PATIENT_NAME), "Doe^John");
        assert_eq!(text(&decoded, tags::MODALITY), "CT");
        // Every first byte a deflate stream can have differs from the LZ4 marker: its block
        // type bits (1 and 2) would be 3, which RFC 1951 reserves.
        assert_eq!(LZ4_RECORD & 0b110, 0b110);
    }

    #[test]
    fn tag_paths_are_read_strictly_and_written_back() {
        for text in [
            "00420011",
            "00540016/0/00181072",
            "00540016/12/00540016/0/7FE00010",
        ] {
            let path = TagPath::parse(text).expect(text);
            assert_eq!(path.to_string(), text);
            assert_eq!(
                TagPath::from_segments(&text.split('/').collect::<Vec<_>>()),
                Ok(path)
            );
        }
        let path = TagPath::parse("00540016/3/0018107a").expect("lowercase hex");
        assert_eq!(path.to_string(), "00540016/3/0018107A");
        assert_eq!(path.tag(), Tag(0x0018, 0x107A));
        assert_eq!(path.items(), vec![(Tag(0x0054, 0x0016), 3)]);
        assert!(!path.is_top_level());
        assert!(TagPath::parse("7FE00010").expect("top").is_top_level());
        let refused = |text: &str| TagPath::parse(text).expect_err(text);
        assert_eq!(refused(""), TagPathError::Empty);
        assert_eq!(refused("00540016/0"), TagPathError::EndsWithItem);
        for text in [
            "0054001",
            "005400166",
            "0054001G",
            "+0540016",
            "..",
            "FFFEE000",
            "0054 016",
        ] {
            assert!(
                matches!(refused(text), TagPathError::NotATag { .. }),
                "{text}"
            );
        }
        for text in [
            "00540016/-1/00181072",
            "00540016/01/00181072",
            "00540016/x/00181072",
            "00540016//00181072",
            "00540016/99999999999/00181072",
            "00540016/4294967296/00181072",
        ] {
            assert!(
                matches!(refused(text), TagPathError::NotAnItem { .. }),
                "{text}"
            );
        }
        let deep = |items: usize| {
            let mut text = "00540016/0/".repeat(items);
            text.push_str("00181072");
            text
        };
        assert!(TagPath::parse(&deep(MAX_TAG_PATH_DEPTH)).is_ok());
        assert_eq!(
            refused(&deep(MAX_TAG_PATH_DEPTH + 1)),
            TagPathError::TooDeep {
                max: MAX_TAG_PATH_DEPTH
            }
        );
        // A huge path is refused after a bounded number of segments.
        assert_eq!(
            refused(&deep(100_000)),
            TagPathError::TooDeep {
                max: MAX_TAG_PATH_DEPTH
            }
        );
    }

    #[test]
    fn pixel_data_markers_are_bulk_elements_at_the_top_level_only() {
        let icon =
            InMemDicomObject::from_element_iter([DataElement::empty(tags::PIXEL_DATA, VR::OB)]);
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(
                tags::ICON_IMAGE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![icon]),
            ),
            DataElement::empty(tags::FLOAT_PIXEL_DATA, VR::OF),
        ]);
        let (kept, bulk) = split_bulk_data(object);
        assert_eq!(
            bulk,
            vec![BulkElement {
                path: TagPath::top(tags::FLOAT_PIXEL_DATA),
                vr: VR::OF
            }]
        );
        let items = kept
            .get(tags::ICON_IMAGE_SEQUENCE)
            .and_then(|e| e.value().items())
            .expect("icon");
        assert!(
            items[0].get(tags::PIXEL_DATA).is_some(),
            "an empty nested value is no bulk"
        );
        assert!(kept.get(tags::FLOAT_PIXEL_DATA).is_none());
    }

    #[test]
    fn a_damaged_record_with_bulk_elements_is_an_error() {
        let record =
            InMemDicomObject::from_element_iter([DataElement::new(tags::MODALITY, VR::CS, "CT")]);
        let bulk = vec![BulkElement {
            path: TagPath::top(tags::PIXEL_DATA),
            vr: VR::OW,
        }];
        let blob = encode_with_bulk_data(&record, &bulk).expect("encoded");
        let limits = ScanLimits::default();
        assert_eq!(decode_with_bulk_data(&blob, &limits).expect("read").1, bulk);
        // A data set longer than the whole.
        let mut long = blob.clone();
        long[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        let refused = decode_with_bulk_data(&long, &limits).expect_err("refused");
        assert!(refused.contains("longer"), "{refused}");
        // A list whose lines are not elements.
        for list in [
            "7FE00010\n",
            "7FE00010 XX\n",
            "../etc/passwd OB\n",
            "7FE00010 OWW\n",
        ] {
            let mut bytes = identifier::encode(&record, RECORD_TRANSFER_SYNTAX).expect("encoded");
            let data_set = bytes.len() as u32;
            bytes.extend_from_slice(list.as_bytes());
            let mut blob = vec![LZ4_RECORD_WITH_BULK_DATA];
            blob.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            blob.extend_from_slice(&data_set.to_le_bytes());
            blob.extend_from_slice(&lz4_flex::block::compress(&bytes));
            assert!(decode_with_bulk_data(&blob, &limits).is_err(), "{list:?}");
            // C-FIND reads the data set alone.
            assert!(decode(&blob, &limits).is_ok());
        }
        blob_truncated(&blob, &limits);
    }

    fn blob_truncated(blob: &[u8], limits: &ScanLimits) {
        for length in 0..blob.len() {
            assert!(
                decode_with_bulk_data(&blob[..length], limits).is_err(),
                "{length}"
            );
        }
    }
}
