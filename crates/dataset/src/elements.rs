//! The top-level data elements of an explicit VR little endian data set held in memory, as the
//! byte ranges they occupy (PS3.5 §7.1.2 data element structure, §7.5 nesting of data sets):
//! what lets a caller copy elements as they were received instead of decoding and encoding
//! them again. Sequences and items of undefined length are walked to their delimiters;
//! anything unexpected (a truncated element, an unknown VR, an item outside a sequence, a UN
//! of undefined length, whose content is implicit VR, nesting deeper than [`MAX_DEPTH`]) makes
//! the walk give up with `None`, and the caller decodes instead.

use std::ops::Range;

use dicom_core::{Tag, VR};

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

/// The element starting at `position` (`depth` sequences in): its tag and where it ends.
fn element(data: &[u8], position: usize, depth: usize) -> Option<(Tag, usize)> {
    let header = data.get(position..position.checked_add(8)?)?;
    let tag = tag_at(header);
    if tag.group() == 0xFFFE {
        return None;
    }
    let vr = VR::from_binary([header[4], header[5]])?;
    let (length, value_start) = if has_long_length(vr) {
        let long = data.get(position + 8..position.checked_add(12)?)?;
        (
            u32::from_le_bytes([long[0], long[1], long[2], long[3]]),
            position + 12,
        )
    } else {
        (
            u32::from(u16::from_le_bytes([header[6], header[7]])),
            position + 8,
        )
    };
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
}
