//! A data set as text for a person to read: what `dimsum findscu` prints for each match
//! (PS3.5 §7: one line per data element, sequence items nested below their sequence).
//!
//! ```text
//! (0008,0052) CS [STUDY]                                  QueryRetrieveLevel
//! (0010,0010) PN [DOE^JOHN]                               PatientName
//! (0020,1208) IS 12                                       NumberOfStudyRelatedInstances
//! (0028,0010) US 512                                      Rows
//! (0040,0100) SQ 1 item                                   ScheduledProcedureStepSequence
//!   + item 1 of 1
//!     (0008,0060) CS [CT]                                 Modality
//! (7FE0,0010) OW binary, 524288 bytes                     PixelData
//! ```
//!
//! Each line holds the tag, the VR, the value and the keyword of the standard dictionary
//! (`(private)` or `(unknown)` when it has none), the keyword aligned in a column. Text values
//! are shown in brackets without their padding, with `\` between multiple values; numbers are
//! shown plain; binary values (OB, OW, OF, OD, OL, OV, UN) by their length; an empty value as
//! `(no value)`. Long text and long lists are shortened, with their full size given, so that
//! each element stays on one line. The output is the same for the same data set.

use std::fmt::Write;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::{HasLength, Header};
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

/// Text values longer than this many characters are cut, with their length given.
pub const MAX_TEXT_CHARS: usize = 64;
/// Lists of more values than this are cut, with their count given.
pub const MAX_LISTED_VALUES: usize = 12;
/// The column at which the keyword starts (when the line before it is shorter).
const KEYWORD_COLUMN: usize = 56;
/// Spaces per level of nesting.
const INDENT: usize = 2;

/// Writes `object` as text, one element per line; see the [module documentation](self).
pub fn dump(object: &InMemDicomObject) -> String {
    let mut out = String::new();
    dump_into(&mut out, object, 0);
    out
}

fn dump_into(out: &mut String, object: &InMemDicomObject, depth: usize) {
    for element in object {
        dump_element(out, element, depth);
    }
}

fn dump_element(out: &mut String, element: &InMemElement, depth: usize) {
    let tag = element.tag();
    let vr = element.vr();
    let start = out.len();
    let _ = write!(
        out,
        "{:indent$}({:04X},{:04X}) {} ",
        "",
        tag.group(),
        tag.element(),
        vr,
        indent = depth * INDENT
    );
    match element.value() {
        Value::Primitive(value) => out.push_str(&format_value(vr, value)),
        Value::Sequence(sequence) => out.push_str(&count(sequence.items().len(), "item")),
        Value::PixelSequence(pixels) => {
            let bytes: usize = pixels.fragments().iter().map(Vec::len).sum();
            let _ = write!(
                out,
                "encapsulated, {}, {bytes} bytes",
                count(pixels.fragments().len(), "fragment")
            );
        }
    }
    let width = out.get(start..).map_or(0, |line| line.chars().count());
    let padding = KEYWORD_COLUMN.saturating_sub(width).max(2);
    let _ = writeln!(out, "{:padding$}{}", "", keyword(tag));

    if let Some(items) = element.items() {
        for (index, item) in items.iter().enumerate() {
            let _ = write!(
                out,
                "{:indent$}+ item {} of {}",
                "",
                index + 1,
                items.len(),
                indent = (depth + 1) * INDENT
            );
            if item.iter().next().is_none() {
                out.push_str(" (empty)");
            }
            out.push('\n');
            dump_into(out, item, depth + 2);
        }
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The keyword of `tag` in the standard dictionary, or what kind of tag it is.
fn keyword(tag: Tag) -> &'static str {
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => entry.alias(),
        None if tag.group() % 2 == 1 => "(private)",
        None => "(unknown)",
    }
}

fn format_value(vr: VR, value: &PrimitiveValue) -> String {
    use VR::*;
    if value.is_empty() {
        return "(no value)".to_owned();
    }
    match vr {
        OB | OD | OF | OL | OV | OW | UN => {
            format!("binary, {}", count(value.to_bytes().len(), "byte"))
        }
        AT => match value {
            PrimitiveValue::Tags(tags) => list(
                tags.iter()
                    .map(|t| format!("({:04X},{:04X})", t.group(), t.element())),
            ),
            other => text(other),
        },
        US | SS | UL | SL | SV | UV | FL | FD => match value {
            PrimitiveValue::Str(_) | PrimitiveValue::Strs(_) => plain_text(value),
            _ => list(value.to_multi_str().iter().cloned()),
        },
        IS | DS => plain_text(value),
        _ => text(value),
    }
}

/// Text values, without their padding, in brackets.
fn text(value: &PrimitiveValue) -> String {
    let values = value.to_multi_str();
    let joined = values
        .iter()
        .map(|v| v.trim_end_matches([' ', '\0']))
        .collect::<Vec<_>>()
        .join("\\");
    format!("[{}]", shorten(&joined))
}

/// Numbers written as text (IS, DS), without their padding, shown plain.
fn plain_text(value: &PrimitiveValue) -> String {
    list(value.to_multi_str().iter().map(|v| v.trim().to_owned()))
}

/// Values separated by `\`, at most [`MAX_LISTED_VALUES`] of them.
fn list(values: impl ExactSizeIterator<Item = String>) -> String {
    let total = values.len();
    let shown: Vec<String> = values.take(MAX_LISTED_VALUES).collect();
    let mut out = shorten(&shown.join("\\"));
    if total > MAX_LISTED_VALUES {
        let _ = write!(out, "\\... ({total} values)");
    }
    out
}

/// Cuts text after [`MAX_TEXT_CHARS`] characters, and shows control characters escaped so that
/// the element stays on one line.
fn shorten(text: &str) -> String {
    let total = text.chars().count();
    let mut out = String::new();
    for c in text.chars().take(MAX_TEXT_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if total > MAX_TEXT_CHARS {
        let _ = write!(out, "... ({total} characters)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::DataElement;
    use dicom_core::value::{C, DataSetSequence};
    use dicom_dictionary_std::tags;

    fn sample() -> InMemDicomObject {
        let step = InMemDicomObject::from_element_iter([
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(
                tags::SCHEDULED_STATION_AE_TITLE,
                VR::AE,
                PrimitiveValue::Empty,
            ),
        ]);
        InMemDicomObject::from_element_iter([
            DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY "),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "DOE^JOHN"),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::Empty),
            DataElement::new(
                tags::MODALITIES_IN_STUDY,
                VR::CS,
                PrimitiveValue::Strs(["CT".to_owned(), "MR".to_owned()].into_iter().collect()),
            ),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4\0"),
            DataElement::new(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, " 12 "),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512_u16)),
            DataElement::new(
                tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![step, InMemDicomObject::new_empty()]),
            ),
            DataElement::new(
                tags::REFERENCED_STUDY_SEQUENCE,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ),
            DataElement::new(
                Tag(0x0009, 0x1001),
                VR::UN,
                PrimitiveValue::from(vec![1_u8, 2, 3]),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(C::from_elem(0, 2048)),
            ),
        ])
    }

    #[test]
    fn each_element_is_one_line_with_tag_vr_value_and_keyword() {
        let expected = concat!(
            "(0008,0052) CS [STUDY]                                  QueryRetrieveLevel\n",
            "(0008,0061) CS [CT\\MR]                                  ModalitiesInStudy\n",
            "(0008,1110) SQ 0 items                                  ReferencedStudySequence\n",
            "(0009,1001) UN binary, 3 bytes                          (private)\n",
            "(0010,0010) PN [DOE^JOHN]                               PatientName\n",
            "(0010,0020) LO (no value)                               PatientID\n",
            "(0020,000D) UI [1.2.3.4]                                StudyInstanceUID\n",
            "(0020,1208) IS 12                                       NumberOfStudyRelatedInstances\n",
            "(0028,0010) US 512                                      Rows\n",
            "(0040,0100) SQ 2 items                                  ScheduledProcedureStepSequence\n",
            "  + item 1 of 2\n",
            "    (0008,0060) CS [CT]                                 Modality\n",
            "    (0040,0001) AE (no value)                           ScheduledStationAETitle\n",
            "  + item 2 of 2 (empty)\n",
            "(7FE0,0010) OW binary, 4096 bytes                       PixelData\n",
        );
        assert_eq!(dump(&sample()), expected);
        assert_eq!(dump(&sample()), dump(&sample()));
    }

    #[test]
    fn long_values_are_shortened_and_say_how_long_they_were() {
        let long = "A".repeat(200);
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::STUDY_DESCRIPTION, VR::LO, long.as_str()),
            DataElement::new(
                tags::REFERENCED_FRAME_NUMBER,
                VR::IS,
                PrimitiveValue::Strs((1..=40).map(|n| n.to_string()).collect()),
            ),
            DataElement::new(tags::PATIENT_COMMENTS, VR::LT, "line one\r\nline two"),
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
        ]);
        let text = dump(&object);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].contains(&format!(
                "[{}... (200 characters)]",
                "A".repeat(MAX_TEXT_CHARS)
            )),
            "{text}"
        );
        assert!(lines[0].ends_with("  StudyDescription"), "{text}");
        assert!(
            lines[1].contains("IS 1\\2\\3\\4\\5\\6\\7\\8\\9\\10\\11\\12\\... (40 values)"),
            "{text}"
        );
        assert!(lines[2].contains("LT [line one\\r\\nline two]"), "{text}");
        assert!(lines[3].contains("FD 1.5\\-2 "), "{text}");
        assert!(lines[4].contains("AT (0010,0010)"), "{text}");
    }
}
