//! Helpers shared by the integration tests: the fixtures written by tests/fixtures/generate.py.
#![allow(dead_code)]

use std::path::PathBuf;

use dimsum_dataset::{FileMeta, read_meta};

pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
pub const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const STUDY_UID: &str = "1.2.826.0.1.3680043.10.1394.9.1";
pub const SERIES_UID: &str = "1.2.826.0.1.3680043.10.1394.9.1.1";
pub const INSTANCE_UID: &str = "1.2.826.0.1.3680043.10.1394.9.1.1.1";
pub const IMPLEMENTATION_UID: &str = "1.2.826.0.1.3680043.10.1394.9.99";

/// The CT fixture of each uncompressed transfer syntax: (file name, transfer syntax UID).
pub const CT_FIXTURES: [(&str, &str); 4] = [
    ("ct_implicit_le.dcm", IMPLICIT_LE),
    ("ct_explicit_le.dcm", EXPLICIT_LE),
    ("ct_explicit_be.dcm", EXPLICIT_BE),
    ("ct_deflated.dcm", DEFLATED),
];

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// The meta information of a fixture, the offset of its data set and the data set bytes.
pub fn data_set(name: &str) -> (FileMeta, u64, Vec<u8>) {
    let bytes = fixture(name);
    let (meta, offset) = read_meta(&mut bytes.as_slice()).unwrap();
    let data = bytes[offset as usize..].to_vec();
    (meta, offset, data)
}

/// The 64x64 pixel values the generator writes: (i * 7) mod 4096.
pub fn expected_pixels() -> Vec<u16> {
    (0..64u32 * 64).map(|i| (i * 7 % 4096) as u16).collect()
}

/// Builders of little data sets by hand, for the cases no writer would produce.
pub mod build {
    /// An explicit VR little endian element with a 2- or 4-byte length field as the VR requires.
    pub fn explicit_le(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let long = matches!(
            vr,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        );
        let mut out = header_explicit_le(group, element, vr, value.len() as u32, long);
        out.extend_from_slice(value);
        out
    }

    pub fn header_explicit_le(
        group: u16,
        element: u16,
        vr: &[u8; 2],
        length: u32,
        long: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        if long {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&length.to_le_bytes());
        } else {
            out.extend_from_slice(&(length as u16).to_le_bytes());
        }
        out
    }

    /// An implicit VR little endian header (also the form of item and delimiter tags).
    pub fn header_le(group: u16, element: u16, length: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out
    }

    pub fn implicit_le(group: u16, element: u16, value: &[u8]) -> Vec<u8> {
        let mut out = header_le(group, element, value.len() as u32);
        out.extend_from_slice(value);
        out
    }

    pub const UNDEFINED: u32 = 0xFFFF_FFFF;

    pub fn item_start(length: u32) -> Vec<u8> {
        header_le(0xFFFE, 0xE000, length)
    }

    pub fn item_end() -> Vec<u8> {
        header_le(0xFFFE, 0xE00D, 0)
    }

    pub fn sequence_end() -> Vec<u8> {
        header_le(0xFFFE, 0xE0DD, 0)
    }

    /// `depth` sequences nested in one another, each of undefined length with one undefined
    /// length item, in explicit VR little endian, around a Patient ID.
    pub fn nested_sequences(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            out.extend(header_explicit_le(0x0008, 0x1140, b"SQ", UNDEFINED, true));
            out.extend(item_start(UNDEFINED));
        }
        out.extend(explicit_le(0x0010, 0x0020, b"LO", b"DEEP"));
        for _ in 0..depth {
            out.extend(item_end());
            out.extend(sequence_end());
        }
        out
    }
}
