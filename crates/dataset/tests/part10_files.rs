//! read_meta and encode_header against files written by pydicom.

mod common;

use common::*;
use dimsum_dataset::{FileMeta, encode_header, is_part10_file, read_meta};

#[test]
fn read_meta_of_every_fixture() {
    for (name, ts) in CT_FIXTURES {
        let bytes = fixture(name);
        let (meta, offset) = read_meta(&mut bytes.as_slice()).unwrap();
        assert_eq!(
            meta,
            FileMeta {
                media_storage_sop_class_uid: CT_IMAGE_STORAGE.into(),
                media_storage_sop_instance_uid: INSTANCE_UID.into(),
                transfer_syntax_uid: ts.into(),
                implementation_class_uid: IMPLEMENTATION_UID.into(),
                implementation_version_name: Some("DIMSUM_FIXTURE".into()),
                source_application_entity_title: Some("FIXTURES".into()),
            },
            "{name}"
        );
        // The data set starts with Specific Character Set (0008,0005), in the file's byte order.
        let first_tag = &bytes[offset as usize..offset as usize + 4];
        match ts {
            EXPLICIT_BE => assert_eq!(first_tag, [0x00, 0x08, 0x00, 0x05], "{name}"),
            DEFLATED => {} // compressed
            _ => assert_eq!(first_tag, [0x08, 0x00, 0x05, 0x00], "{name}"),
        }
    }
}

#[test]
fn read_meta_of_a_jpeg_file() {
    let bytes = fixture("jpeg_baseline.dcm");
    let (meta, _) = read_meta(&mut bytes.as_slice()).unwrap();
    assert_eq!(meta.transfer_syntax_uid, JPEG_BASELINE);
    assert_eq!(
        meta.media_storage_sop_class_uid,
        "1.2.840.10008.5.1.4.1.1.7"
    );
}

#[test]
fn encode_header_matches_pydicom_byte_for_byte() {
    for (name, _) in CT_FIXTURES {
        let bytes = fixture(name);
        let (meta, offset) = read_meta(&mut bytes.as_slice()).unwrap();
        let encoded = encode_header(&meta).unwrap();
        assert_eq!(encoded, &bytes[..offset as usize], "{name}");
    }
    // An odd-length AE title, padded with a space.
    let pydicom = fixture("meta_only.bin");
    let meta = FileMeta {
        media_storage_sop_class_uid: CT_IMAGE_STORAGE.into(),
        media_storage_sop_instance_uid: INSTANCE_UID.into(),
        transfer_syntax_uid: EXPLICIT_LE.into(),
        implementation_class_uid: IMPLEMENTATION_UID.into(),
        implementation_version_name: Some("DIMSUM_FIXTURE".into()),
        source_application_entity_title: Some("STORESCU1".into()),
    };
    assert_eq!(encode_header(&meta).unwrap(), pydicom);
    let (read, offset) = read_meta(&mut pydicom.as_slice()).unwrap();
    assert_eq!(read, meta);
    assert_eq!(offset, pydicom.len() as u64);
}

#[test]
fn encode_header_round_trips_without_optional_elements() {
    let meta = FileMeta {
        media_storage_sop_class_uid: CT_IMAGE_STORAGE.into(),
        media_storage_sop_instance_uid: "1.2.3".into(),
        transfer_syntax_uid: IMPLICIT_LE.into(),
        implementation_class_uid: IMPLEMENTATION_UID.into(),
        implementation_version_name: None,
        source_application_entity_title: None,
    };
    let encoded = encode_header(&meta).unwrap();
    let (read, offset) = read_meta(&mut encoded.as_slice()).unwrap();
    assert_eq!(read, meta);
    assert_eq!(offset, encoded.len() as u64);
}

#[test]
fn part10_detection() {
    for (name, _) in CT_FIXTURES {
        assert!(is_part10_file(fixture_path(name)).unwrap(), "{name}");
    }
    assert!(!is_part10_file(fixture_path("generate.py")).unwrap());
}
