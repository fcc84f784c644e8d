//! transcode between the four uncompressed transfer syntaxes, checked by reading both sides
//! back with dicom-rs.

mod common;

use common::*;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dimsum_dataset::{ConvertError, ScanError, ScanLimits, scan_bytes, transcode};

/// A comparable form of a data set: tags with their values, sequences as nested lists.
#[derive(Debug, PartialEq)]
enum Canonical {
    Bytes(Vec<u8>),
    Sequence(Vec<Vec<(Tag, Canonical)>>),
}

fn read(data: &[u8], ts: &str) -> InMemDicomObject {
    let syntax = TransferSyntaxRegistry.get(ts).unwrap();
    InMemDicomObject::read_dataset_with_ts(data, syntax).unwrap()
}

fn canonical(object: &InMemDicomObject) -> Vec<(Tag, Canonical)> {
    object
        .iter()
        .map(|element| {
            let value = match element.value() {
                Value::Sequence(sequence) => {
                    Canonical::Sequence(sequence.items().iter().map(canonical).collect())
                }
                Value::Primitive(primitive) => {
                    let bytes = primitive.to_bytes();
                    let bytes = match primitive {
                        // Text values: padding is not content.
                        PrimitiveValue::Str(_) | PrimitiveValue::Strs(_) => {
                            let text = bytes.as_ref();
                            let end = text
                                .iter()
                                .rposition(|b| *b != b' ' && *b != 0)
                                .map_or(0, |i| i + 1);
                            text[..end].to_vec()
                        }
                        _ => bytes.into_owned(),
                    };
                    Canonical::Bytes(bytes)
                }
                Value::PixelSequence(_) => panic!("no encapsulated pixel data expected"),
            };
            (element.tag(), value)
        })
        .collect()
}

/// Compares two canonical data sets, allowing a private sequence to be UN bytes on one side.
fn assert_same(left: &[(Tag, Canonical)], right: &[(Tag, Canonical)], context: &str) {
    let tags = |set: &[(Tag, Canonical)]| set.iter().map(|(tag, _)| *tag).collect::<Vec<_>>();
    assert_eq!(tags(left), tags(right), "{context}: tags differ");
    for ((tag, a), (_, b)) in left.iter().zip(right) {
        match (a, b) {
            (Canonical::Sequence(_), Canonical::Bytes(_))
            | (Canonical::Bytes(_), Canonical::Sequence(_))
                if tag.group() % 2 == 1 =>
            {
                continue;
            }
            (Canonical::Sequence(x), Canonical::Sequence(y)) => {
                assert_eq!(x.len(), y.len(), "{context}: {tag} item count");
                for (item_x, item_y) in x.iter().zip(y) {
                    assert_same(item_x, item_y, &format!("{context} in {tag}"));
                }
            }
            _ => assert_eq!(a, b, "{context}: {tag} differs"),
        }
    }
}

/// The data set of a fixture in plain form: deflated ones inflated by dicom-rs itself.
fn source(name: &str) -> (Vec<u8>, &'static str) {
    let (_, _, data) = data_set(name);
    let ts = CT_FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1;
    (data, ts)
}

#[test]
fn every_pair_of_uncompressed_syntaxes() {
    let limits = ScanLimits::default();
    for (from_name, from_ts) in CT_FIXTURES {
        let (data, _) = source(from_name);
        let original = canonical(&read(&data, from_ts));
        assert!(original.len() > 30);
        for (_, to_ts) in CT_FIXTURES {
            let converted = transcode(&data, from_ts, to_ts, &limits).unwrap();
            let context = format!("{from_ts} -> {to_ts}");
            // The output is well-formed in its own syntax...
            let summary = scan_bytes(&converted, to_ts, &limits).unwrap();
            assert_eq!(
                summary.sop_instance_uid.as_deref(),
                Some(INSTANCE_UID),
                "{context}"
            );
            // ...and decodes to the same elements and values.
            let back = canonical(&read(&converted, to_ts));
            assert_same(&original, &back, &context);
        }
    }
}

fn pixel_values(object: &InMemDicomObject) -> Vec<u16> {
    let element = object.element(Tag(0x7FE0, 0x0010)).unwrap();
    assert_eq!(element.vr(), VR::OW);
    element.value().to_multi_int::<u16>().unwrap()
}

#[test]
fn big_endian_pixel_data_is_byte_swapped() {
    let limits = ScanLimits::default();
    let pixel_bytes = 64 * 64 * 2;
    let (be_data, _) = source("ct_explicit_be.dcm");
    let pydicom_be_pixels = &be_data[be_data.len() - pixel_bytes..];
    for from in ["ct_implicit_le.dcm", "ct_explicit_le.dcm"] {
        let (data, from_ts) = source(from);
        let converted = transcode(&data, from_ts, EXPLICIT_BE, &limits).unwrap();
        // Pixel data is the last element: its bytes are what pydicom writes in big endian.
        assert_eq!(
            &converted[converted.len() - pixel_bytes..],
            pydicom_be_pixels,
            "{from}"
        );
        assert_eq!(
            pixel_values(&read(&converted, EXPLICIT_BE)),
            expected_pixels()
        );
    }
    let converted = transcode(&be_data, EXPLICIT_BE, IMPLICIT_LE, &limits).unwrap();
    let (le_data, _) = source("ct_implicit_le.dcm");
    assert_eq!(
        &converted[converted.len() - pixel_bytes..],
        &le_data[le_data.len() - pixel_bytes..]
    );
    assert_eq!(
        pixel_values(&read(&converted, IMPLICIT_LE)),
        expected_pixels()
    );
}

#[test]
fn compressed_data_is_refused_with_a_clear_error() {
    let bytes = fixture("jpeg_baseline.dcm");
    let (_, offset) = dimsum_dataset::read_meta(&mut bytes.as_slice()).unwrap();
    let error = transcode(
        &bytes[offset as usize..],
        JPEG_BASELINE,
        IMPLICIT_LE,
        &ScanLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(error, ConvertError::Compressed { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot convert compressed data from JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50) \
         to Implicit VR Little Endian (1.2.840.10008.1.2)"
    );
    let (data, _) = source("ct_explicit_le.dcm");
    let error = transcode(&data, EXPLICIT_LE, JPEG_BASELINE, &ScanLimits::default()).unwrap_err();
    assert!(matches!(error, ConvertError::Compressed { .. }), "{error}");
}

#[test]
fn unknown_syntax_is_refused() {
    let (data, _) = source("ct_explicit_le.dcm");
    let error = transcode(&data, EXPLICIT_LE, "1.2.3.4", &ScanLimits::default()).unwrap_err();
    assert!(matches!(error, ConvertError::Unsupported { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("unknown transfer syntax 1.2.3.4"),
        "{error}"
    );
}

#[test]
fn hostile_data_is_refused_before_decoding() {
    let (mut data, _) = source("ct_implicit_le.dcm");
    let at = data
        .windows(4)
        .position(|w| w == [0x10, 0x00, 0x10, 0x00])
        .unwrap();
    data[at + 4..at + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let error = transcode(&data, IMPLICIT_LE, EXPLICIT_LE, &ScanLimits::default()).unwrap_err();
    assert!(
        matches!(error, ConvertError::Scan(ScanError::LengthPastEnd { .. })),
        "{error}"
    );
}
