//! Instance records with their bulk data elements (what WADO-RS metadata is answered from):
//! what the index keeps of bulk data (its paths and VRs, the pixel data marker), the order and
//! scope of `Index::instance_records`, C-FIND answered as before from the same records, and
//! records written before bulk elements were kept.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;

use dimsum_net::dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::query_model::QueryModel;
use dimsum_net::dataset::scan::ScanLimits;
use dimsum_pacs::index::record::{self, BulkElement, TagPath};
use dimsum_pacs::index::{EntityUids, Index, InstanceRecord, OnDuplicate};

mod common;
use common::{Backend, CT, TestIndex, element, find_plan, new_instance, query_all, text};

const STUDY: &str = "1.2.3";
const SERIES_A: &str = "1.2.3.1";
const SERIES_B: &str = "1.2.3.2";

fn bytes(tag: Tag, vr: VR, length: usize) -> InMemElement {
    DataElement::new(
        tag,
        vr,
        PrimitiveValue::U8((0..length).map(|i| (i % 253) as u8).collect()),
    )
}

/// An instance of `series` numbered `number` ("" for none), with bulk data at the top level,
/// in an item of a sequence, a small binary value (kept), and a Pixel Data marker (the element
/// with an empty value, as the archive gives it).
fn attributes(series: &str, series_number: &str, sop: &str, number: &str) -> InMemDicomObject {
    let item = InMemDicomObject::from_element_iter([
        element(tags::CODE_VALUE, VR::SH, "T-D3000"),
        bytes(Tag(0x0009, 0x1002), VR::OB, 4096),
    ]);
    let second = InMemDicomObject::from_element_iter([bytes(
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        VR::OW,
        2048,
    )]);
    InMemDicomObject::from_element_iter([
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        element(tags::SOP_CLASS_UID, VR::UI, CT),
        element(tags::SOP_INSTANCE_UID, VR::UI, sop),
        element(tags::PATIENT_NAME, VR::PN, "MÜLLER^JÜRGEN"),
        element(tags::PATIENT_ID, VR::LO, "P1"),
        element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        element(tags::SERIES_INSTANCE_UID, VR::UI, series),
        element(tags::SERIES_NUMBER, VR::IS, series_number),
        element(tags::MODALITY, VR::CS, "CT"),
        element(tags::INSTANCE_NUMBER, VR::IS, number),
        DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item, second]),
        ),
        bytes(tags::ICC_PROFILE, VR::OB, 16),
        bytes(tags::ENCAPSULATED_DOCUMENT, VR::OB, 3000),
        DataElement::empty(tags::PIXEL_DATA, VR::OW),
    ])
}

fn expected_bulk_data() -> Vec<BulkElement> {
    let path = |text: &str| TagPath::parse(text).expect("path");
    vec![
        BulkElement {
            path: path("00082218/0/00091002"),
            vr: VR::OB,
        },
        BulkElement {
            path: path("00082218/1/00281201"),
            vr: VR::OW,
        },
        BulkElement {
            path: path("00420011"),
            vr: VR::OB,
        },
        BulkElement {
            path: path("7FE00010"),
            vr: VR::OW,
        },
    ]
}

async fn insert(index: &dyn Index, attributes: InMemDicomObject) {
    let sop = text(&attributes, tags::SOP_INSTANCE_UID);
    let path = PathBuf::from(format!("/archive/{sop}.dcm"));
    index
        .insert(new_instance(attributes, path), OnDuplicate::Fail)
        .await
        .expect("inserted");
}

async fn records(index: &dyn Index, entity: EntityUids) -> Vec<InstanceRecord> {
    let stream = index.instance_records(entity).await.expect("records");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
        .into_iter()
        .map(|record| record.expect("record"))
        .collect()
}

fn entity(series: Option<&str>, instance: Option<&str>) -> EntityUids {
    EntityUids {
        study: STUDY.to_owned(),
        series: series.map(str::to_owned),
        instance: instance.map(str::to_owned),
    }
}

fn uids(records: &[InstanceRecord]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.instance.sop_instance_uid.as_str())
        .collect()
}

/// Series B (number 1) before series A (number 2); in A, instances by number, the one without
/// a number last.
async fn fixture(backend: Backend) -> Option<TestIndex> {
    let test = TestIndex::new(backend).await?;
    let index = test.index.as_ref();
    for (series, series_number, sop, number) in [
        (SERIES_A, "2", "1.2.3.1.3", "3"),
        (SERIES_A, "2", "1.2.3.1.9", ""),
        (SERIES_A, "2", "1.2.3.1.1", "1"),
        (SERIES_B, "1", "1.2.3.2.1", "1"),
        (SERIES_A, "2", "1.2.3.1.2", "2"),
        (SERIES_A, "2", "1.2.3.1.10", "10"),
    ] {
        insert(index, attributes(series, series_number, sop, number)).await;
    }
    Some(test)
}

async fn records_keep_where_bulk_data_was_and_everything_else(backend: Backend) {
    let Some(test) = fixture(backend).await else {
        return;
    };
    let index = test.index.as_ref();
    let found = records(index, entity(Some(SERIES_A), Some("1.2.3.1.1"))).await;
    assert_eq!(uids(&found), ["1.2.3.1.1"]);
    let record = &found[0];
    assert_eq!(record.bulk_data, expected_bulk_data());
    assert_eq!(record.instance.study_instance_uid, STUDY);
    assert_eq!(record.instance.series_instance_uid, SERIES_A);
    assert_eq!(
        record.instance.location.path,
        PathBuf::from("/archive/1.2.3.1.1.dcm")
    );
    // The record is the data set without its bulk data: compare with the same split of the
    // attributes that were indexed.
    let (expected, _) = record::split_bulk_data(attributes(SERIES_A, "2", "1.2.3.1.1", "1"));
    let attributes = &record.attributes;
    assert_eq!(text(attributes, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");
    assert!(attributes.get(tags::ENCAPSULATED_DOCUMENT).is_none());
    assert!(attributes.get(tags::PIXEL_DATA).is_none());
    assert_eq!(
        attributes
            .get(tags::ICC_PROFILE)
            .expect("small binary kept")
            .to_bytes()
            .expect("bytes")
            .len(),
        16
    );
    let items = attributes
        .get(tags::ANATOMIC_REGION_SEQUENCE)
        .and_then(|e| e.value().items())
        .expect("sequence");
    assert_eq!(items.len(), 2, "both items kept");
    assert!(items[0].get(Tag(0x0009, 0x1002)).is_none());
    assert!(
        items[1]
            .get(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)
            .is_none()
    );
    let encoded = |object: &InMemDicomObject| {
        dimsum_net::dataset::identifier::encode(object, record::RECORD_TRANSFER_SYNTAX)
            .expect("encoded")
    };
    assert_eq!(encoded(attributes), encoded(&expected));
}

async fn records_come_in_series_and_instance_number_order_and_stay_in_their_entity(
    backend: Backend,
) {
    let Some(test) = fixture(backend).await else {
        return;
    };
    let index = test.index.as_ref();
    let study = records(index, entity(None, None)).await;
    assert_eq!(
        uids(&study),
        [
            "1.2.3.2.1",
            "1.2.3.1.1",
            "1.2.3.1.2",
            "1.2.3.1.3",
            "1.2.3.1.10",
            "1.2.3.1.9"
        ]
    );
    let series = records(index, entity(Some(SERIES_A), None)).await;
    assert_eq!(series.len(), 5);
    assert!(series.iter().all(|r| r.bulk_data == expected_bulk_data()));
    // An instance or series under another parent is not found, nor an unknown study.
    assert!(
        records(index, entity(Some(SERIES_B), Some("1.2.3.1.1")))
            .await
            .is_empty()
    );
    assert!(records(index, entity(Some("9.9"), None)).await.is_empty());
    let unknown = EntityUids {
        study: "9.9".to_owned(),
        series: None,
        instance: None,
    };
    assert!(records(index, unknown).await.is_empty());
    // A stream dropped early stops the reading and frees its reader.
    for _ in 0..20 {
        let mut stream = index
            .instance_records(entity(None, None))
            .await
            .expect("records");
        assert!(stream.next().await.is_some());
    }
}

async fn c_find_answers_as_it_did_from_records_with_bulk_elements(backend: Backend) {
    let Some(test) = fixture(backend).await else {
        return;
    };
    let index = test.index.as_ref();
    let plan = find_plan(
        QueryModel::StudyRoot,
        "IMAGE",
        vec![
            element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
            element(tags::SERIES_INSTANCE_UID, VR::UI, SERIES_A),
            element(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.1.2"),
            element(tags::PATIENT_NAME, VR::PN, ""),
            DataElement::empty(tags::ANATOMIC_REGION_SEQUENCE, VR::SQ),
            DataElement::empty(tags::ENCAPSULATED_DOCUMENT, VR::OB),
            DataElement::empty(tags::PIXEL_DATA, VR::OW),
        ],
    );
    let found = query_all(index, plan, None).await;
    assert_eq!(found.len(), 1);
    let response = found[0].as_ref().expect("match");
    assert_eq!(text(response, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");
    // Bulk data is answered as it always was: not there (an empty value), in items too.
    for tag in [tags::ENCAPSULATED_DOCUMENT, tags::PIXEL_DATA] {
        let value = response
            .get(tag)
            .map(|e| e.to_bytes().map(|b| b.len()).unwrap_or(0));
        assert!(value.is_none_or(|length| length == 0), "{tag}");
    }
    let items = response
        .get(tags::ANATOMIC_REGION_SEQUENCE)
        .and_then(|e| e.value().items())
        .expect("sequence");
    assert_eq!(text(&items[0], tags::CODE_VALUE), "T-D3000");
    assert!(items[0].get(Tag(0x0009, 0x1002)).is_none());
    // Matching on an attribute beside the bulk data still works.
    let plan = find_plan(
        QueryModel::StudyRoot,
        "IMAGE",
        vec![
            element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
            element(tags::SERIES_INSTANCE_UID, VR::UI, SERIES_A),
            element(tags::INSTANCE_NUMBER, VR::IS, "10"),
            element(tags::SOP_INSTANCE_UID, VR::UI, ""),
        ],
    );
    let found = query_all(index, plan, None).await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        text(found[0].as_ref().expect("match"), tags::SOP_INSTANCE_UID),
        "1.2.3.1.10"
    );
}

async fn records_written_before_bulk_elements_were_kept_are_read_without_them(backend: Backend) {
    let Some(test) = fixture(backend).await else {
        return;
    };
    // The record of 1.2.3.1.3 as an earlier version wrote it: the data set alone.
    let (old, _) = record::split_bulk_data(attributes(SERIES_A, "2", "1.2.3.1.3", "3"));
    let blob = record::encode(&old).expect("encoded");
    test.index.close().await.expect("closed");
    let changed = if let Some(path) = &test.sqlite {
        let connection = rusqlite::Connection::open(path).expect("open");
        connection
            .execute(
                "UPDATE instance SET attributes = ? WHERE sop_instance_uid = ?",
                rusqlite::params![blob, "1.2.3.1.3"],
            )
            .expect("updated") as u64
    } else {
        let database = test.postgres.as_ref().expect("a database");
        database
            .client()
            .await
            .execute(
                "UPDATE instance SET attributes = $1 WHERE sop_instance_uid = $2",
                &[&blob, &"1.2.3.1.3"],
            )
            .await
            .expect("updated")
    };
    assert_eq!(changed, 1);
    let index = test.reopen().await.expect("reopened");
    let found = records(index.as_ref(), entity(Some(SERIES_A), None)).await;
    let old_one = found
        .iter()
        .find(|r| r.instance.sop_instance_uid == "1.2.3.1.3")
        .expect("found");
    assert!(old_one.bulk_data.is_empty());
    assert_eq!(
        text(&old_one.attributes, tags::PATIENT_NAME),
        "MÜLLER^JÜRGEN"
    );
    let new_one = found
        .iter()
        .find(|r| r.instance.sop_instance_uid == "1.2.3.1.2")
        .expect("found");
    assert_eq!(new_one.bulk_data, expected_bulk_data());
    // Both are the same data set.
    assert_eq!(
        old_one.attributes.iter().count(),
        new_one.attributes.iter().count()
    );
}

#[test]
fn both_record_forms_decode_to_the_same_data_set() {
    let (object, bulk) = record::split_bulk_data(attributes(SERIES_A, "2", "1.2.3.1.1", "1"));
    let limits = ScanLimits::default();
    let plain = record::encode(&object).expect("encoded");
    let with_bulk = record::encode_with_bulk_data(&object, &bulk).expect("encoded");
    assert_eq!(plain[0], record::LZ4_RECORD);
    assert_eq!(with_bulk[0], record::LZ4_RECORD_WITH_BULK_DATA);
    // Without bulk elements, the blob is the one it always was.
    assert_eq!(
        record::encode_with_bulk_data(&object, &[]).expect("encoded"),
        plain
    );
    let a = record::decode(&plain, &limits).expect("plain");
    let b = record::decode(&with_bulk, &limits).expect("with bulk data");
    assert_eq!(
        dimsum_net::dataset::identifier::encode(&a, record::RECORD_TRANSFER_SYNTAX).expect("a"),
        dimsum_net::dataset::identifier::encode(&b, record::RECORD_TRANSFER_SYNTAX).expect("b"),
    );
    let (c, read_bulk) = record::decode_with_bulk_data(&with_bulk, &limits).expect("read");
    assert_eq!(read_bulk, bulk);
    assert_eq!(c.iter().count(), a.iter().count());
    let (_, none) = record::decode_with_bulk_data(&plain, &limits).expect("read");
    assert!(none.is_empty());
}

/// A data set's attributes decoded in memory (a flat explicit VR little endian one without
/// dicom-rs's reader) are those read from it as from a file: for each of pydicom's
/// character-set files, and a flat data set in each character set they use.
#[test]
fn attributes_decoded_in_memory_are_those_read_from_a_file() {
    let limits = ScanLimits::default();
    let same = |data_set: &[u8], ts: &str, what: &str| {
        let in_memory = dimsum_pacs::file::decode_attributes_in_memory(data_set, ts, &limits)
            .map(|decoded| format!("{decoded:?}"))
            .map_err(|error| error.to_string());
        let read = dimsum_pacs::file::decode_attributes_as_read(
            std::io::Cursor::new(data_set),
            data_set.len() as u64,
            ts,
            &limits,
        )
        .map(|decoded| format!("{decoded:?}"))
        .map_err(|error| error.to_string());
        assert_eq!(in_memory, read, "{what}");
    };
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/charset");
    let mut files = 0;
    let mut charsets = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("the character-set files") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|extension| extension != "dcm") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        let (meta, offset) =
            dimsum_net::dataset::part10::read_meta(&mut &bytes[..]).expect("a Part 10 file");
        let data_set = &bytes[usize::try_from(offset).expect("offset")..];
        same(
            data_set,
            &meta.transfer_syntax_uid,
            &path.display().to_string(),
        );
        let (object, _) = dimsum_pacs::file::decode_attributes_as_read(
            std::io::Cursor::new(data_set),
            data_set.len() as u64,
            &meta.transfer_syntax_uid,
            &limits,
        )
        .expect("decoded");
        if let (Some(charset), Some(name)) = (
            object.get(tags::SPECIFIC_CHARACTER_SET),
            object.get(tags::PATIENT_NAME),
        ) {
            charsets.push((
                charset.to_str().expect("text").into_owned(),
                name.to_str().expect("text").into_owned(),
            ));
        }
        files += 1;
    }
    assert!(
        files >= 10,
        "{files} character-set files in {}",
        folder.display()
    );
    // The same names in flat data sets, encoded in their character sets by dicom-rs.
    let mut flat = 0;
    for (charset, name) in charsets {
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, charset.as_str()),
            DataElement::new(tags::PATIENT_NAME, VR::PN, name.as_str()),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
        ]);
        let Ok(data_set) =
            dimsum_net::dataset::identifier::encode(&object, record::RECORD_TRANSFER_SYNTAX)
        else {
            continue; // a character set dicom-rs cannot encode (ISO 2022 code extensions)
        };
        same(&data_set, record::RECORD_TRANSFER_SYNTAX, &charset);
        flat += usize::from(
            dimsum_net::dataset::elements::decode_flat(&data_set, Tag(0x7FE0, 0)).is_some(),
        );
    }
    assert!(flat >= 5, "{flat} flat data sets took the short path");
}

crate::on_both_backends!(
    records_keep_where_bulk_data_was_and_everything_else,
    records_come_in_series_and_instance_number_order_and_stay_in_their_entity,
    c_find_answers_as_it_did_from_records_with_bulk_elements,
    records_written_before_bulk_elements_were_kept_are_read_without_them,
);

/// A short explicit VR little endian element (PS3.5 §7.1.2).
fn short_element(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut bytes = [tag.group().to_le_bytes(), tag.element().to_le_bytes()].concat();
    bytes.extend_from_slice(vr);
    bytes.extend_from_slice(&u16::try_from(value.len()).expect("short").to_le_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// An explicit VR little endian element with a 32-bit length (OB, SQ…) and its value.
fn long_element(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut bytes = [tag.group().to_le_bytes(), tag.element().to_le_bytes()].concat();
    bytes.extend_from_slice(vr);
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&u32::try_from(value.len()).expect("long").to_le_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// An item of defined length (PS3.5 §7.5.1).
fn item(value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xFE, 0xFF, 0x00, 0xE0];
    bytes.extend_from_slice(&u32::try_from(value.len()).expect("item").to_le_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// The attributes of an explicit VR little endian data set as the archive decodes them, and
/// whether their text is as read.
fn decode_as_read(data_set: &[u8]) -> (InMemDicomObject, bool) {
    dimsum_pacs::file::decode_attributes_as_read(
        std::io::Cursor::new(data_set),
        data_set.len() as u64,
        record::RECORD_TRANSFER_SYNTAX,
        &ScanLimits::default(),
    )
    .expect("decoded")
}

/// The data set of an instance record blob ([`record::LZ4_RECORD_WITH_BULK_DATA`]).
fn record_data_set(blob: &[u8]) -> Vec<u8> {
    assert_eq!(blob[0], record::LZ4_RECORD_WITH_BULK_DATA);
    let word =
        |at: usize| u32::from_le_bytes(blob[at..at + 4].try_into().expect("4 bytes")) as usize;
    let (total, data_set_length) = (word(1), word(5));
    let mut all = lz4_flex::block::decompress(&blob[9..], total).expect("decompressed");
    all.truncate(data_set_length);
    all
}

/// A stored instance's record is copied from its data set as received when that is explicit
/// VR little endian with its text as read and no bulk data inside a sequence: its bytes are the
/// received elements' (here a sequence of defined length, which encoding writes with
/// delimiters), it decodes to what the encoded record decodes to, and the bulk elements are
/// the same. Otherwise the record is encoded.
#[test]
fn a_record_copied_from_the_data_set_received_decodes_as_the_encoded_one() {
    let limits = ScanLimits::default();
    let code = short_element(tags::CODE_VALUE, b"SH", b"T-D3000 ");
    let sequence = long_element(tags::ANATOMIC_REGION_SEQUENCE, b"SQ", &item(&code));
    let kept = [
        short_element(tags::SPECIFIC_CHARACTER_SET, b"CS", b"ISO_IR 100"),
        short_element(tags::SOP_CLASS_UID, b"UI", format!("{CT}\0").as_bytes()),
        short_element(tags::SOP_INSTANCE_UID, b"UI", b"1.2.3.1.1\0"),
        short_element(tags::PATIENT_NAME, b"PN", b"M\xdcLLER^J\xdcRGEN "),
        short_element(tags::STUDY_INSTANCE_UID, b"UI", b"1.2.3\0"),
        sequence,
        long_element(tags::ICC_PROFILE, b"OB", &[7; 16]),
    ];
    let bulk = long_element(tags::ENCAPSULATED_DOCUMENT, b"OB", &[9; 3000]);
    let pixels = long_element(tags::PIXEL_DATA, b"OW", &[1; 64]);
    let received = [&kept[..5], &kept[5..6], &kept[6..], &[bulk, pixels]]
        .concat()
        .concat();
    let (mut attributes, as_read) = decode_as_read(&received);
    assert!(as_read, "ISO_IR 100 text is kept as read");
    // As the archive gives it: the pixel data marker.
    attributes.put(DataElement::empty(tags::PIXEL_DATA, VR::OW));
    let (record, bulk_data) = record::split_bulk_data(attributes);
    assert_eq!(bulk_data.len(), 2, "{bulk_data:?}");

    let copied = record::encode_received(&record, &bulk_data, &received).expect("copied");
    let encoded = record::encode_with_bulk_data(&record, &bulk_data).expect("encoded");
    assert_eq!(record_data_set(&copied), kept.concat());
    assert_ne!(
        record_data_set(&encoded),
        kept.concat(),
        "the encoder writes the sequence otherwise"
    );
    let (from_copy, copy_bulk) = record::decode_with_bulk_data(&copied, &limits).expect("read");
    let (from_encoding, encoding_bulk) =
        record::decode_with_bulk_data(&encoded, &limits).expect("read");
    assert_eq!(copy_bulk, encoding_bulk);
    // The same data set (the lengths they were read with aside).
    let normal = |object: &InMemDicomObject| {
        dimsum_net::dataset::identifier::encode(object, record::RECORD_TRANSFER_SYNTAX)
            .expect("encoded")
    };
    assert_eq!(normal(&from_copy), normal(&from_encoding));
    assert_eq!(text(&from_copy, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");

    // Bulk data inside a sequence: the sequence in the record is not the one received.
    let nested = long_element(
        tags::ANATOMIC_REGION_SEQUENCE,
        b"SQ",
        &item(&long_element(Tag(0x0009, 0x1002), b"OB", &[5; 4096])),
    );
    let received = [&kept[..5], &[nested][..]].concat().concat();
    let (attributes, _) = decode_as_read(&received);
    let (record, bulk_data) = record::split_bulk_data(attributes);
    assert_eq!(
        record::encode_received(&record, &bulk_data, &received).expect("encoded"),
        record::encode_with_bulk_data(&record, &bulk_data).expect("encoded")
    );

    // Text in code extensions is decoded again (and declared ISO_IR 192): not as read, so the
    // archive encodes its record.
    let japanese = [
        short_element(tags::SPECIFIC_CHARACTER_SET, b"CS", b"\\ISO 2022 IR 87 "),
        short_element(
            tags::PATIENT_NAME,
            b"PN",
            b"\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B ",
        ),
    ]
    .concat();
    let (attributes, as_read) = decode_as_read(&japanese);
    assert!(!as_read);
    assert_eq!(text(&attributes, tags::PATIENT_NAME), "山田^太郎");
}
