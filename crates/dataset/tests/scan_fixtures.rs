//! scan on well-formed data: the fixtures and synthetic large objects.

mod common;

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

use common::build::*;
use common::*;
use dimsum_dataset::{ScanLimits, Summary, scan, scan_bytes, scan_deflated};

fn expected_summary(elements: usize) -> Summary {
    Summary {
        sop_class_uid: Some(CT_IMAGE_STORAGE.into()),
        sop_instance_uid: Some(INSTANCE_UID.into()),
        study_instance_uid: Some(STUDY_UID.into()),
        series_instance_uid: Some(SERIES_UID.into()),
        patient_id: Some("PID-0001".into()),
        modality: Some("CT".into()),
        elements,
        has_pixel_data: true,
        pixel_data_header: Some((
            dimsum_dataset::dicom_core::Tag(0x7FE0, 0x0010),
            dimsum_dataset::dicom_core::VR::OW,
        )),
    }
}

/// Data elements in the CT fixture, counted with dcmdump: 36 at the top level, 3 + 3 in the
/// Referenced Image Sequence (the nested sequence element included), 1 in the private sequence.
/// In implicit VR the private sequence is not known to be one, so its content is skipped as a
/// value.
const CT_ELEMENTS: usize = 36 + 6 + 1;

#[test]
fn summary_of_every_fixture() {
    let limits = ScanLimits::default();
    for (name, ts) in CT_FIXTURES {
        let (_, _, data) = data_set(name);
        let summary = scan_bytes(&data, ts, &limits).unwrap();
        let elements = if ts == IMPLICIT_LE {
            CT_ELEMENTS - 1
        } else {
            CT_ELEMENTS
        };
        assert_eq!(summary, expected_summary(elements), "{name}");
    }
}

#[test]
fn scan_a_file_from_its_data_set_offset() {
    let limits = ScanLimits::default();
    for (name, ts) in CT_FIXTURES {
        let (_, offset, data) = data_set(name);
        let mut file = File::open(fixture_path(name)).unwrap();
        file.seek(SeekFrom::Start(offset)).unwrap();
        let summary = scan(file, data.len() as u64, ts, &limits).unwrap();
        assert_eq!(
            summary.sop_instance_uid.as_deref(),
            Some(INSTANCE_UID),
            "{name}"
        );
    }
}

#[test]
fn scan_deflated_stream() {
    let (_, _, data) = data_set("ct_deflated.dcm");
    let summary = scan_deflated(data.as_slice(), &ScanLimits::default()).unwrap();
    assert_eq!(summary, expected_summary(CT_ELEMENTS));
}

#[test]
fn scan_encapsulated_jpeg() {
    let bytes = fixture("jpeg_baseline.dcm");
    let (_, offset) = dimsum_dataset::read_meta(&mut bytes.as_slice()).unwrap();
    let summary = scan_bytes(
        &bytes[offset as usize..],
        JPEG_BASELINE,
        &ScanLimits::default(),
    )
    .unwrap();
    assert!(summary.has_pixel_data);
    assert_eq!(
        summary.sop_class_uid.as_deref(),
        Some("1.2.840.10008.5.1.4.1.1.7")
    );
}

/// A reader that counts the bytes it hands out.
struct CountingReader<R> {
    inner: R,
    bytes_read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes_read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

const FIFTY_MB: usize = 50 * 1024 * 1024;

fn counted_scan(data: &[u8], ts: &str) -> (Summary, u64) {
    let mut reader = CountingReader {
        inner: Cursor::new(data),
        bytes_read: 0,
    };
    let summary = scan(&mut reader, data.len() as u64, ts, &ScanLimits::default()).unwrap();
    (summary, reader.bytes_read)
}

#[test]
fn large_native_pixel_data_is_skipped_not_read() {
    let (_, _, mut data) = data_set("ct_explicit_le.dcm");
    data.extend(header_explicit_le(
        0x7FE1,
        0x0010,
        b"OW",
        FIFTY_MB as u32,
        true,
    ));
    data.resize(data.len() + FIFTY_MB, 0);
    let (summary, bytes_read) = counted_scan(&data, EXPLICIT_LE);
    assert_eq!(summary.patient_id.as_deref(), Some("PID-0001"));
    assert!(bytes_read < 4096, "read {bytes_read} bytes");

    let (_, _, mut data) = data_set("ct_implicit_le.dcm");
    data.extend(header_le(0x7FE1, 0x0010, FIFTY_MB as u32));
    data.resize(data.len() + FIFTY_MB, 0);
    let (_, bytes_read) = counted_scan(&data, IMPLICIT_LE);
    assert!(bytes_read < 4096, "read {bytes_read} bytes");
}

#[test]
fn large_encapsulated_pixel_data_is_skipped_not_read() {
    let mut data = explicit_le(0x0008, 0x0060, b"CS", b"CT");
    data.extend(header_explicit_le(0x7FE0, 0x0010, b"OB", UNDEFINED, true));
    data.extend(item_start(0)); // empty basic offset table
    for _ in 0..5 {
        data.extend(item_start(10 * 1024 * 1024));
        data.resize(data.len() + 10 * 1024 * 1024, 0xAB);
    }
    data.extend(sequence_end());
    let (summary, bytes_read) = counted_scan(&data, JPEG_BASELINE);
    assert!(summary.has_pixel_data);
    assert_eq!(summary.modality.as_deref(), Some("CT"));
    assert_eq!(summary.elements, 2);
    assert!(bytes_read < 4096, "read {bytes_read} bytes");
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let limits = ScanLimits::default();
    let data = nested_sequences(limits.max_depth);
    let summary = scan_bytes(&data, EXPLICIT_LE, &limits).unwrap();
    assert_eq!(summary.elements, limits.max_depth + 1);
    // Nested values are not summary values.
    assert_eq!(summary.patient_id, None);
}

#[test]
fn undefined_length_un_is_walked_as_dicom_rs_reads_it() {
    // dicom-rs 0.10 reads an explicit VR UN of undefined length in the enclosing encoding, so
    // the scan does too: explicit content is accepted...
    let mut data = header_explicit_le(0x0009, 0x1010, b"UN", UNDEFINED, true);
    data.extend(item_start(UNDEFINED));
    data.extend(explicit_le(0x0010, 0x0020, b"LO", b"INNER-ID"));
    data.extend(item_end());
    data.extend(sequence_end());
    data.extend(explicit_le(0x0010, 0x0020, b"LO", b"OUTER-ID"));
    let summary = scan_bytes(&data, EXPLICIT_LE, &ScanLimits::default()).unwrap();
    assert_eq!(summary.patient_id.as_deref(), Some("OUTER-ID"));
    assert_eq!(summary.elements, 3);

    // ...and implicit content (PS3.5 §6.2.2), which dicom-rs would misread, is refused.
    let mut data = header_explicit_le(0x0009, 0x1010, b"UN", UNDEFINED, true);
    data.extend(item_start(UNDEFINED));
    data.extend(implicit_le(0x0010, 0x0020, b"INNER-ID"));
    data.extend(item_end());
    data.extend(sequence_end());
    let error = scan_bytes(&data, EXPLICIT_LE, &ScanLimits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            dimsum_dataset::ScanError::UnknownVr { offset: 20, .. }
        ),
        "{error}"
    );
}

#[test]
fn implicit_private_undefined_length_is_a_sequence() {
    let mut data = header_le(0x0009, 0x1010, UNDEFINED);
    data.extend(item_start(UNDEFINED));
    data.extend(implicit_le(0x0008, 0x0060, b"MR"));
    data.extend(item_end());
    data.extend(sequence_end());
    let summary = scan_bytes(&data, IMPLICIT_LE, &ScanLimits::default()).unwrap();
    assert_eq!(summary.elements, 2);
    assert_eq!(summary.modality, None);
}

#[test]
fn empty_data_set() {
    let summary = scan_bytes(&[], EXPLICIT_LE, &ScanLimits::default()).unwrap();
    assert_eq!(summary, Summary::default());
}
