//! The top-level data elements of an explicit VR little endian data set held in memory, as the
//! byte ranges they occupy (PS3.5 §7.1.2 data element structure, §7.5 nesting of data sets):
//! what lets a caller copy elements as they were received instead of decoding and encoding
//! them again. Sequences and items of undefined length are walked to their delimiters;
//! anything unexpected (a truncated element, an unknown VR, an item outside a sequence, a UN
//! of undefined length, whose content is implicit VR, nesting deeper than [`MAX_DEPTH`]) makes
//! the walk give up with `None`, and the caller decodes instead.

use std::io::{BufReader, Cursor, Read, Seek};
use std::ops::Range;

use dicom_core::value::{C, PrimitiveValue};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_encoding::text::{DefaultCharacterSetCodec, SpecificCharacterSet, TextCodec};
use dicom_object::file::ReadPreamble;
use dicom_object::{DicomCollectorOptions, InMemDicomObject};

use crate::part10::has_long_length;

/// Sequences entered at most.
pub const MAX_DEPTH: usize = 64;

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const UNDEFINED: u32 = u32::MAX;

/// Each top-level element of `data_set` (explicit VR little endian) in order: its tag and the
/// bytes of its header and value. `None` when the data set is not well formed.
pub fn top_level_elements(data_set: &[u8]) -> Option<Vec<(Tag, Range<usize>)>> {
    let mut elements = Vec::new();
    let mut position = 0;
    while position < data_set.len() {
        let (tag, end) = element(data_set, position, 0)?;
        elements.push((tag, position..end));
        position = end;
    }
    Some(elements)
}

/// Explicit VR Little Endian, the transfer syntax [`decode_flat`] reads.
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// The top-level elements of the data set `data` (in transfer syntax `ts`, not deflated) before
/// the tag `before`, read by dicom-rs's collector.
pub fn collect_up_to(
    data: impl Read + Seek,
    ts: &str,
    before: Tag,
) -> Result<InMemDicomObject, String> {
    let mut collector = DicomCollectorOptions::new()
        .expected_ts(ts.to_owned())
        .read_preamble(ReadPreamble::Never)
        .from_reader(BufReader::new(data));
    let mut object = InMemDicomObject::new_empty();
    collector
        .read_dataset_up_to(before, &mut object)
        .map_err(|error| error.to_string())?;
    Ok(object)
}

/// [`collect_up_to`] for a data set held in memory: a flat explicit VR little endian one is
/// decoded by [`decode_flat`], with the same result, in a fraction of the time.
pub fn decode_up_to(data: &[u8], ts: &str, before: Tag) -> Result<InMemDicomObject, String> {
    let flat = (ts == EXPLICIT_VR_LITTLE_ENDIAN)
        .then(|| decode_flat(data, before))
        .flatten();
    flat.map_or_else(|| collect_up_to(Cursor::new(data), ts, before), Ok)
}

/// The top-level elements of a flat explicit VR little endian data set (no sequence), those
/// before the tag `before`, decoded as dicom-rs's reader decodes them (values kept as read,
/// text in the character set the data set declares, as dicom-rs decodes it): a short path for
/// the flat data sets most instances are, without the reader's machinery. `None` for anything
/// else — a sequence, an item, an undefined or odd length, a number value whose length is not a
/// whole count of its numbers, an unknown VR, a truncated element, text its character set does
/// not decode — which the caller hands to dicom-rs.
pub fn decode_flat(data_set: &[u8], before: Tag) -> Option<InMemDicomObject> {
    let mut charset = SpecificCharacterSet::default();
    // Filled as dicom-rs's collector fills its object (Extend: no character set change noted).
    let mut object = InMemDicomObject::new_empty();
    let mut position = 0;
    while position < data_set.len() {
        // dicom-rs reads the header of the element it stops at: it must be whole.
        let (tag, vr, length, value_start) = element_header(data_set, position)?;
        if tag >= before {
            break;
        }
        if vr == VR::SQ || length == UNDEFINED || length % 2 == 1 {
            return None;
        }
        let end = value_start.checked_add(usize::try_from(length).ok()?)?;
        let value = primitive_value(tag, vr, data_set.get(value_start..end)?, &mut charset)?;
        object.extend([DataElement::new_with_len(tag, vr, Length(length), value)]);
        position = end;
    }
    Some(object)
}

/// A value as dicom-rs's reader keeps it (its "preserved" reading: numbers and dates as text);
/// a Specific Character Set (0008,0005) changes `charset` for the text after it, as there.
fn primitive_value(
    tag: Tag,
    vr: VR,
    bytes: &[u8],
    charset: &mut SpecificCharacterSet,
) -> Option<PrimitiveValue> {
    if bytes.is_empty() {
        return Some(PrimitiveValue::Empty);
    }
    Some(match vr {
        VR::SQ => return None,
        VR::AE
        | VR::AS
        | VR::PN
        | VR::SH
        | VR::LO
        | VR::UC
        | VR::UI
        | VR::IS
        | VR::DS
        | VR::DA
        | VR::TM
        | VR::DT => PrimitiveValue::Strs(texts(vr, bytes, charset)?),
        VR::CS => {
            let values = texts(vr, bytes, charset)?;
            if tag == Tag(0x0008, 0x0005) {
                // Only the first value, and only a character set dicom-rs knows, counts.
                if let Some(declared) = values
                    .first()
                    .and_then(|code| SpecificCharacterSet::from_code(code))
                {
                    *charset = declared;
                }
            }
            PrimitiveValue::Strs(values)
        }
        VR::UT | VR::ST | VR::UR | VR::LT => PrimitiveValue::Str(charset.decode(bytes).ok()?),
        VR::UN | VR::OB => PrimitiveValue::U8(bytes.into()),
        VR::US | VR::OW => PrimitiveValue::U16(numbers(bytes, u16::from_le_bytes)?),
        VR::SS => PrimitiveValue::I16(numbers(bytes, i16::from_le_bytes)?),
        VR::FD | VR::OD => PrimitiveValue::F64(numbers(bytes, f64::from_le_bytes)?),
        VR::FL | VR::OF => PrimitiveValue::F32(numbers(bytes, f32::from_le_bytes)?),
        VR::SL => PrimitiveValue::I32(numbers(bytes, i32::from_le_bytes)?),
        VR::OL | VR::UL => PrimitiveValue::U32(numbers(bytes, u32::from_le_bytes)?),
        VR::SV => PrimitiveValue::I64(numbers(bytes, i64::from_le_bytes)?),
        VR::OV | VR::UV => PrimitiveValue::U64(numbers(bytes, u64::from_le_bytes)?),
        VR::AT => PrimitiveValue::Tags(numbers(bytes, |tag: [u8; 4]| tag_at(&tag))?),
    })
}

/// A multi-valued text value split at backslashes, each value decoded: AE, AS and CS in the
/// default repertoire, the others in `charset`.
fn texts(vr: VR, bytes: &[u8], charset: &SpecificCharacterSet) -> Option<C<String>> {
    bytes
        .split(|byte| *byte == b'\\')
        .map(|value| match vr {
            VR::AE | VR::AS | VR::CS => DefaultCharacterSetCodec.decode(value).ok(),
            _ => charset.decode(value).ok(),
        })
        .collect()
}

/// The little endian numbers of `N` bytes each in `bytes`; `None` if a part of one is left.
fn numbers<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Option<C<T>> {
    let chunks = bytes.chunks_exact(N);
    if !chunks.remainder().is_empty() {
        return None;
    }
    chunks
        .map(|chunk| chunk.try_into().ok().map(from))
        .collect()
}

/// The header of the element starting at `position`: its tag, VR, value length (32 bits for
/// the VRs that have them, 16 otherwise) and where its value starts. `None` for an item or
/// delimiter, an unknown VR or a header cut short.
fn element_header(data: &[u8], position: usize) -> Option<(Tag, VR, u32, usize)> {
    let header = data.get(position..position.checked_add(8)?)?;
    let tag = tag_at(header);
    if tag.group() == 0xFFFE {
        return None;
    }
    let vr = VR::from_binary([header[4], header[5]])?;
    if has_long_length(vr) {
        let long = data.get(position + 8..position.checked_add(12)?)?;
        let length = u32::from_le_bytes([long[0], long[1], long[2], long[3]]);
        Some((tag, vr, length, position + 12))
    } else {
        let length = u32::from(u16::from_le_bytes([header[6], header[7]]));
        Some((tag, vr, length, position + 8))
    }
}

/// The element starting at `position` (`depth` sequences in): its tag and where it ends.
fn element(data: &[u8], position: usize, depth: usize) -> Option<(Tag, usize)> {
    let (tag, vr, length, value_start) = element_header(data, position)?;
    let end = if length == UNDEFINED {
        // Only a sequence, or encapsulated pixel data (items of fragments), may be undefined.
        if !matches!(vr, VR::SQ | VR::OB | VR::OW) {
            return None;
        }
        items(data, value_start, depth + 1)?
    } else {
        value_start.checked_add(usize::try_from(length).ok()?)?
    };
    (end <= data.len()).then_some((tag, end))
}

/// The items of a sequence of undefined length starting at `position`, up to and including
/// its delimiter: where they end.
fn items(data: &[u8], mut position: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    loop {
        let (tag, length) = item_header(data, position)?;
        position += 8;
        match tag {
            SEQUENCE_DELIMITER => return Some(position),
            ITEM if length == UNDEFINED => {
                // Elements up to the item's delimiter.
                loop {
                    if let Some((ITEM_DELIMITER, _)) = item_header(data, position) {
                        position += 8;
                        break;
                    }
                    position = element(data, position, depth)?.1;
                }
            }
            ITEM => {
                position = position.checked_add(usize::try_from(length).ok()?)?;
                if position > data.len() {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// An item or delimiter header at `position`: tag and 32-bit length, no VR (PS3.5 §7.5).
fn item_header(data: &[u8], position: usize) -> Option<(Tag, u32)> {
    let header = data.get(position..position.checked_add(8)?)?;
    let tag = tag_at(header);
    (tag.group() == 0xFFFE).then(|| {
        (
            tag,
            u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
        )
    })
}

/// The little endian tag at the start of a header of (at least) 8 bytes.
fn tag_at(header: &[u8]) -> Tag {
    Tag(
        u16::from_le_bytes([header[0], header[1]]),
        u16::from_le_bytes([header[2], header[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&tag.group().to_le_bytes());
        bytes.extend_from_slice(&tag.element().to_le_bytes());
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    fn long(tag: Tag, vr: &[u8; 2], length: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&tag.group().to_le_bytes());
        bytes.extend_from_slice(&tag.element().to_le_bytes());
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes
    }

    fn marker(tag: Tag, length: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&tag.group().to_le_bytes());
        bytes.extend_from_slice(&tag.element().to_le_bytes());
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes
    }

    /// A data set with a short element, an undefined-length sequence of two items (one of
    /// undefined length holding an undefined-length sequence, one of defined length), a
    /// long element and encapsulated pixel data.
    fn data_set() -> (Vec<u8>, Vec<(Tag, Range<usize>)>) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut push = |tag: Tag, part: Vec<u8>, bytes: &mut Vec<u8>| {
            expected.push((tag, bytes.len()..bytes.len() + part.len()));
            bytes.extend_from_slice(&part);
        };
        push(
            Tag(0x0008, 0x0018),
            short(Tag(0x0008, 0x0018), b"UI", b"1.2\0"),
            &mut bytes,
        );
        let mut sequence = long(Tag(0x0008, 0x1115), b"SQ", UNDEFINED);
        sequence.extend(marker(ITEM, UNDEFINED));
        sequence.extend(short(Tag(0x0008, 0x1150), b"UI", b"1.3\0"));
        sequence.extend(long(Tag(0x0008, 0x114A), b"SQ", UNDEFINED));
        sequence.extend(marker(ITEM, UNDEFINED));
        sequence.extend(short(Tag(0x0010, 0x0010), b"PN", b"A^B "));
        sequence.extend(marker(ITEM_DELIMITER, 0));
        sequence.extend(marker(SEQUENCE_DELIMITER, 0));
        sequence.extend(marker(ITEM_DELIMITER, 0));
        let defined = short(Tag(0x0008, 0x1155), b"UI", b"1.4\0");
        sequence.extend(marker(ITEM, defined.len() as u32));
        sequence.extend(defined);
        sequence.extend(marker(SEQUENCE_DELIMITER, 0));
        push(Tag(0x0008, 0x1115), sequence, &mut bytes);
        let mut text = long(Tag(0x0018, 0x0015), b"UT", 4);
        text.extend_from_slice(b"HEAD");
        push(Tag(0x0018, 0x0015), text, &mut bytes);
        let mut pixels = long(Tag(0x7FE0, 0x0010), b"OB", UNDEFINED);
        pixels.extend(marker(ITEM, 0));
        pixels.extend(marker(ITEM, 4));
        pixels.extend_from_slice(&[1, 2, 3, 4]);
        pixels.extend(marker(SEQUENCE_DELIMITER, 0));
        push(Tag(0x7FE0, 0x0010), pixels, &mut bytes);
        (bytes, expected)
    }

    #[test]
    fn every_top_level_element_is_found_with_its_bytes() {
        let (bytes, expected) = data_set();
        assert_eq!(top_level_elements(&bytes), Some(expected));
        assert_eq!(top_level_elements(&[]), Some(Vec::new()));
    }

    #[test]
    fn a_data_set_cut_anywhere_is_refused_or_ends_on_an_element() {
        let (bytes, expected) = data_set();
        let ends: Vec<usize> = expected.iter().map(|(_, range)| range.end).collect();
        for cut in 0..bytes.len() {
            match top_level_elements(&bytes[..cut]) {
                Some(elements) => {
                    assert!(ends.contains(&cut) || cut == 0, "cut at {cut} accepted");
                    assert_eq!(elements, expected[..elements.len()]);
                }
                None => assert!(!ends.contains(&cut), "cut at {cut} refused"),
            }
        }
    }

    #[test]
    fn what_is_not_explicit_vr_is_refused() {
        // An item at the top, an unknown VR, a UN of undefined length (implicit VR inside).
        assert_eq!(top_level_elements(&marker(ITEM, 0)), None);
        assert_eq!(
            top_level_elements(&short(Tag(0x0008, 0x0018), b"zz", b"1.2\0")),
            None
        );
        let mut unknown = long(Tag(0x0009, 0x1010), b"UN", UNDEFINED);
        unknown.extend(marker(SEQUENCE_DELIMITER, 0));
        assert_eq!(top_level_elements(&unknown), None);
        // Sequences nested as deep as the limit, and deeper.
        let nested = |depth: usize| {
            let mut bytes = Vec::new();
            for _ in 0..depth {
                bytes.extend(long(Tag(0x0008, 0x1115), b"SQ", UNDEFINED));
                bytes.extend(marker(ITEM, UNDEFINED));
            }
            for _ in 0..depth {
                bytes.extend(marker(ITEM_DELIMITER, 0));
                bytes.extend(marker(SEQUENCE_DELIMITER, 0));
            }
            bytes
        };
        let deepest = nested(MAX_DEPTH);
        assert_eq!(
            top_level_elements(&deepest),
            Some(vec![(Tag(0x0008, 0x1115), 0..deepest.len())])
        );
        assert_eq!(top_level_elements(&nested(MAX_DEPTH + 1)), None);
    }

    const PIXEL_DATA_GROUP: Tag = Tag(0x7FE0, 0x0000);

    fn long_element(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut bytes = long(tag, vr, value.len() as u32);
        bytes.extend_from_slice(value);
        bytes
    }

    /// A flat data set with an element of every VR but SQ (several values where a VR takes
    /// them, empty ones, text in the declared character set), then pixel data and an element
    /// after it.
    fn flat_data_set(charset: &[u8], name: &[u8]) -> Vec<u8> {
        // Values of odd length get their padding (a space), as a sender gives them.
        let padded = |value: &[u8]| {
            let mut value = value.to_vec();
            if value.len() % 2 == 1 {
                value.push(b' ');
            }
            value
        };
        let short = |tag: Tag, vr: &[u8; 2], value: &[u8]| short(tag, vr, &padded(value));
        let long_element =
            |tag: Tag, vr: &[u8; 2], value: &[u8]| long_element(tag, vr, &padded(value));
        let mut bytes = Vec::new();
        for part in [
            short(Tag(0x0008, 0x0005), b"CS", charset),
            short(Tag(0x0008, 0x0008), b"CS", b"ORIGINAL\\PRIMARY\\AXIAL "),
            short(Tag(0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
            short(Tag(0x0008, 0x0020), b"DA", b"20240102"),
            short(Tag(0x0008, 0x0030), b"TM", b"101500.123456"),
            short(Tag(0x0008, 0x002A), b"DT", b"20240102101500"),
            short(Tag(0x0008, 0x0050), b"SH", b""),
            short(Tag(0x0008, 0x0054), b"AE", b"STORE\\FIND"),
            short(Tag(0x0008, 0x0080), b"LO", name),
            short(Tag(0x0008, 0x0081), b"ST", name),
            short(Tag(0x0008, 0x0090), b"PN", name),
            short(Tag(0x0009, 0x0010), b"LO", b"PRIVATE "),
            short(Tag(0x0009, 0x1001), b"US", &[1, 0, 2, 0]),
            short(Tag(0x0009, 0x1002), b"SS", &[0xFF, 0xFF, 2, 0]),
            short(Tag(0x0009, 0x1003), b"UL", &[1, 0, 0, 0]),
            short(Tag(0x0009, 0x1004), b"SL", &[0xFE, 0xFF, 0xFF, 0xFF]),
            short(Tag(0x0009, 0x1005), b"FL", &1.5f32.to_le_bytes()),
            short(
                Tag(0x0009, 0x1006),
                b"FD",
                &[2.5f64.to_le_bytes(), (-1.0f64).to_le_bytes()].concat(),
            ),
            short(
                Tag(0x0009, 0x1007),
                b"AT",
                &[0x10, 0, 0x10, 0, 0x08, 0, 0x18, 0],
            ),
            short(Tag(0x0009, 0x1008), b"IS", b"7\\-3"),
            short(Tag(0x0009, 0x1009), b"DS", b"1.5\\2e3 "),
            short(Tag(0x0009, 0x100A), b"AS", b"042Y"),
            short(
                Tag(0x0009, 0x100B),
                b"LT",
                b"line one\r\nline two\\not split",
            ),
            long_element(Tag(0x0009, 0x100C), b"OB", &[1, 2, 3, 4]),
            long_element(Tag(0x0009, 0x100D), b"OW", &[1, 2, 3, 4]),
            long_element(Tag(0x0009, 0x100E), b"OF", &1.0f32.to_le_bytes()),
            long_element(Tag(0x0009, 0x100F), b"OD", &1.0f64.to_le_bytes()),
            long_element(Tag(0x0009, 0x1010), b"OL", &[1, 0, 0, 0]),
            long_element(Tag(0x0009, 0x1011), b"OV", &[1, 0, 0, 0, 0, 0, 0, 0]),
            long_element(Tag(0x0009, 0x1012), b"SV", &(-5i64).to_le_bytes()),
            long_element(Tag(0x0009, 0x1013), b"UV", &5u64.to_le_bytes()),
            long_element(Tag(0x0009, 0x1014), b"UN", &[9, 8]),
            long_element(Tag(0x0009, 0x1015), b"UC", b"A\\B "),
            long_element(Tag(0x0009, 0x1016), b"UR", b"http://example.com/a\\b"),
            long_element(Tag(0x0009, 0x1017), b"UT", name),
            long_element(Tag(0x7FE0, 0x0010), b"OW", &[0, 0, 0, 0]),
            short(Tag(0x7FE1, 0x0010), b"LO", b"AFTER "),
        ] {
            bytes.extend(part);
        }
        bytes
    }

    fn collected(bytes: &[u8]) -> Result<InMemDicomObject, String> {
        collect_up_to(
            Cursor::new(bytes),
            EXPLICIT_VR_LITTLE_ENDIAN,
            PIXEL_DATA_GROUP,
        )
    }

    #[test]
    fn a_flat_data_set_decodes_as_dicom_rs_decodes_it() {
        for (charset, name) in [
            (&b""[..], &b"DOE^JOHN"[..]),
            (b"ISO_IR 100", b"M\xdcLLER^J\xdcRGEN"),
            (b"ISO_IR 192", "MÜLLER^JÜRGEN ".as_bytes()),
            (b"ISO_IR 144", b"\xbb\xee\xdace\xdd\xd1\xd2"),
            // dicom-rs takes the first value only, and ignores a character set it does not know
            (b"\\ISO 2022 IR 87", b"YAMADA^TARO"),
            (b"ISO_IR 999", b"M\xdcLLER"),
        ] {
            let bytes = flat_data_set(charset, name);
            let flat = decode_flat(&bytes, PIXEL_DATA_GROUP).expect("a flat data set");
            assert_eq!(Ok(&flat), collected(&bytes).as_ref(), "charset {charset:?}");
            assert!(
                flat.get(Tag(0x7FE0, 0x0010)).is_none(),
                "stopped before the pixel data"
            );
            assert_eq!(
                decode_up_to(&bytes, EXPLICIT_VR_LITTLE_ENDIAN, PIXEL_DATA_GROUP).as_ref(),
                Ok(&flat)
            );
        }
        // Every element kept when nothing stops it, and an empty data set.
        let bytes = flat_data_set(b"", b"A");
        let all = decode_flat(&bytes, Tag(0xFFFF, 0xFFFF)).expect("decoded");
        assert!(all.get(Tag(0x7FE1, 0x0010)).is_some());
        assert_eq!(
            decode_flat(&[], PIXEL_DATA_GROUP),
            Some(InMemDicomObject::new_empty())
        );
    }

    #[test]
    fn what_is_not_a_flat_data_set_is_left_to_dicom_rs() {
        let name = short(Tag(0x0010, 0x0010), b"PN", b"DOE^J ");
        let refused: [(&str, Vec<u8>); 8] = [
            ("a sequence", data_set().0),
            (
                "an odd length",
                [short(Tag(0x0010, 0x0020), b"LO", b"ODD"), name.clone()].concat(),
            ),
            (
                "a part of a number",
                short(Tag(0x0028, 0x0030), b"FL", &[0, 0, 0x80, 0x3F, 0, 0]),
            ),
            (
                "a part of a tag",
                short(Tag(0x0020, 0x9165), b"AT", &[0x10, 0, 0x10, 0, 0, 0]),
            ),
            ("an unknown VR", short(Tag(0x0010, 0x0020), b"ZZ", b"AB")),
            (
                "a truncated value",
                short(Tag(0x0010, 0x0010), b"PN", b"DOE^J ")[..10].to_vec(),
            ),
            ("an item", marker(ITEM, 0)),
            (
                "an undefined length",
                long(Tag(0x0009, 0x1001), b"UN", UNDEFINED),
            ),
        ];
        for (what, bytes) in refused {
            assert_eq!(decode_flat(&bytes, PIXEL_DATA_GROUP), None, "{what}");
        }
        // Left to dicom-rs, which reads the sequence.
        let (bytes, _) = data_set();
        let decoded = decode_up_to(&bytes, EXPLICIT_VR_LITTLE_ENDIAN, PIXEL_DATA_GROUP);
        let sequence = decoded.expect("decoded").get(Tag(0x0008, 0x1115)).cloned();
        let items = sequence
            .as_ref()
            .and_then(|element| element.value().items());
        assert_eq!(items.map(|items| items.len()), Some(2));
        // Another transfer syntax is never read as explicit VR little endian.
        let implicit = [8, 0, 0x18, 0, 4, 0, 0, 0, b'1', b'.', b'2', 0];
        let object = decode_up_to(&implicit, "1.2.840.10008.1.2", PIXEL_DATA_GROUP).expect("read");
        assert_eq!(
            object.get(Tag(0x0008, 0x0018)).map(|e| e.vr()),
            Some(VR::UI)
        );
    }
}
