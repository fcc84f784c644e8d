//! WADO-RS metadata and bulk data over loopback: metadata at each level equals the stored data
//! sets without their bulk data (DICOM JSON of the file's data set, bulk elements as
//! BulkDataURIs), in JSON and XML; every BulkDataURI resolves to the exact bytes of the file's
//! element (top level, in a sequence item, pixel data); 404, 406 and 400; and a timing print
//! for a 600-instance series.

#[allow(unused_imports)]
mod common;

use std::time::Instant;

use common::*;
use dimsum_dataset::dicom_core::Tag;
use dimsum_dataset::dicom_core::ops::{AttributeSelector, AttributeSelectorStep};
use dimsum_dataset::dicom_core::value::DataSetSequence;
use dimsum_dataset::dicom_object::mem::InMemElement;
use dimsum_dataset::json::{self, BulkData, WriteOptions};
use dimsum_dataset::scan::ScanLimits;
use dimsum_dataset::xml::{self, XmlLimits};

const SERIES_2: &str = "1.2.826.0.1.3680043.2.1125.7.1.2";
const JAPANESE_SERIES: &str = "1.2.826.0.1.3680043.2.1125.7.1.3";

/// A test instance: its UIDs, its data set (Explicit VR Little Endian) and its file.
struct Stored {
    study: String,
    series: String,
    sop: String,
    data_set: Vec<u8>,
}

impl Stored {
    fn file(&self) -> Vec<u8> {
        let mut bytes =
            encode_header(&FileMeta::new(CT, &self.sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
        bytes.extend_from_slice(&self.data_set);
        bytes
    }

    fn instance_path(&self) -> String {
        format!(
            "/studies/{}/series/{}/instances/{}",
            self.study, self.series, self.sop
        )
    }
}

fn text(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn bytes(tag: Tag, vr: VR, length: usize, seed: usize) -> InMemElement {
    DataElement::new(
        tag,
        vr,
        PrimitiveValue::U8((0..length).map(|i| ((i * 7 + seed) % 251) as u8).collect()),
    )
}

/// The attributes before Patient Name and those after it, of an instance of `series` numbered
/// `number`: bulk data at the top level (Encapsulated Document), in a sequence item (the icon's
/// Pixel Data) and the Pixel Data; a small binary value (ICC Profile) stays inline.
fn halves(
    series: &str,
    series_number: &str,
    number: u32,
    description: &str,
) -> (InMemDicomObject, InMemDicomObject) {
    let sop = format!("{series}.{number}");
    let icon = InMemDicomObject::from_element_iter([
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(40_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(32_u16)),
        bytes(tags::PIXEL_DATA, VR::OB, 40 * 32, number as usize),
    ]);
    let before = InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::STUDY_DATE, VR::DA, "20240105"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::STUDY_DESCRIPTION, VR::LO, description),
    ]);
    let after = InMemDicomObject::from_element_iter([
        text(tags::PATIENT_ID, VR::LO, "P-META"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series),
        text(tags::SERIES_NUMBER, VR::IS, series_number),
        text(tags::INSTANCE_NUMBER, VR::IS, &number.to_string()),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(64_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(64_u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)),
        bytes(tags::ICC_PROFILE, VR::OB, 16, 1),
        text(
            tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
            VR::LO,
            "text/plain",
        ),
        bytes(tags::ENCAPSULATED_DOCUMENT, VR::OB, 3000, number as usize),
        DataElement::new(
            tags::ICON_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![icon]),
        ),
        bytes(tags::PIXEL_DATA, VR::OW, 64 * 64 * 2, 3 * number as usize),
    ]);
    (before, after)
}

/// An instance whose names are Latin-1 (ISO_IR 100).
fn latin1_instance(series: &str, series_number: &str, number: u32) -> Stored {
    let (mut object, after) = halves(series, series_number, number, "Thorax ß Übersicht");
    object.put(text(tags::PATIENT_NAME, VR::PN, "MÜLLER^JÜRGEN"));
    for element in after {
        object.put(element);
    }
    Stored {
        study: STUDY.to_owned(),
        series: series.to_owned(),
        sop: format!("{series}.{number}"),
        data_set: identifier::encode(&object, EXPLICIT).expect("data set"),
    }
}

/// An instance whose Patient Name is in ISO 2022 IR 87 (PS3.5 H.3.1), written byte by byte.
fn japanese_instance(number: u32) -> Stored {
    let (mut before, after) = halves(JAPANESE_SERIES, "3", number, "Thorax");
    before.put(text(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        "\\ISO 2022 IR 87",
    ));
    let name: &[u8] =
        b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
    let mut data_set = identifier::encode(&before, EXPLICIT).expect("before");
    data_set.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'P', b'N']);
    data_set.extend_from_slice(&(name.len() as u16).to_le_bytes());
    data_set.extend_from_slice(name);
    data_set.extend_from_slice(&identifier::encode(&after, EXPLICIT).expect("after"));
    Stored {
        study: STUDY.to_owned(),
        series: JAPANESE_SERIES.to_owned(),
        sop: format!("{JAPANESE_SERIES}.{number}"),
        data_set,
    }
}

/// The path of a selector as this test expects the server to write it.
fn path_text(selector: &AttributeSelector) -> String {
    selector
        .iter()
        .map(|step| match *step {
            AttributeSelectorStep::Nested { tag, item } => {
                format!("{:04X}{:04X}/{item}", tag.group(), tag.element())
            }
            AttributeSelectorStep::Tag(tag) => format!("{:04X}{:04X}", tag.group(), tag.element()),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Bulk data as the issue defines it: binary values over 1 KiB at any depth, and the top-level
/// pixel data.
fn is_bulk(selector: &AttributeSelector, element: &InMemElement) -> bool {
    let binary = matches!(
        element.vr(),
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    );
    let top_pixel_data = selector.num_steps() == 1 && selector.last_tag() == tags::PIXEL_DATA;
    top_pixel_data || (binary && element.to_bytes().map_or(0, |b| b.len()) > 1024)
}

/// The DICOM JSON of the stored data set, its bulk data as the BulkDataURIs the server should
/// give.
fn expected_json(served: &Served, stored: &Stored) -> serde_json::Value {
    let object =
        identifier::decode(&stored.data_set, EXPLICIT, &ScanLimits::default()).expect("data set");
    let prefix = served.url(&format!("{}/bulkdata/", stored.instance_path()));
    let options = WriteOptions::new().with_bulk_data(|selector, element| {
        if is_bulk(selector, element) {
            BulkData::Uri(format!("{prefix}{}", path_text(selector)))
        } else {
            BulkData::Inline
        }
    });
    json::to_json_with(&object, &options)
}

async fn serve_with(instances: &[&Stored]) -> Served {
    let served = Served::start(WebConfig::default()).await;
    let files: Vec<Vec<u8>> = instances.iter().map(|i| i.file()).collect();
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(&files))
        .await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    served
}

async fn get(served: &Served, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = served.client.get(served.url(path));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.expect("request")
}

async fn metadata_json(
    served: &Served,
    path: &str,
    accept: Option<&str>,
) -> Vec<serde_json::Value> {
    let response = get(served, path, accept).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "application/dicom+json");
    match json(&response.text().await.expect("body")) {
        serde_json::Value::Array(items) => items,
        other => panic!("not an array: {other}"),
    }
}

fn fixture() -> Vec<Stored> {
    // Series 2 (number 1) sorts before the first series (number 2); instances by number.
    vec![
        latin1_instance(SERIES, "2", 2),
        latin1_instance(SERIES, "2", 1),
        latin1_instance(SERIES_2, "1", 1),
        japanese_instance(1),
    ]
}

#[tokio::test]
async fn metadata_at_each_level_is_the_stored_data_set_without_bulk_data() {
    let stored = fixture();
    let served = serve_with(&stored.iter().collect::<Vec<_>>()).await;
    let expected = |indexes: &[usize]| -> Vec<serde_json::Value> {
        indexes
            .iter()
            .map(|&i| expected_json(&served, &stored[i]))
            .collect()
    };
    // Study: series by Series Number, instances by Instance Number.
    let study = metadata_json(&served, &format!("/studies/{STUDY}/metadata"), None).await;
    assert_eq!(study, expected(&[2, 1, 0, 3]));
    let series = metadata_json(
        &served,
        &format!("/studies/{STUDY}/series/{SERIES}/metadata"),
        Some("application/dicom+json"),
    )
    .await;
    assert_eq!(series, expected(&[1, 0]));
    for (index, instance) in stored.iter().enumerate() {
        let found = metadata_json(
            &served,
            &format!("{}/metadata", instance.instance_path()),
            Some("application/json"),
        )
        .await;
        assert_eq!(found, expected(&[index]), "{}", instance.sop);
    }
    // What the comparison holds, spelt out on one instance.
    let one = &series[0];
    assert_eq!(one["00100010"]["Value"][0]["Alphabetic"], "MÜLLER^JÜRGEN");
    assert_eq!(one["00081030"]["Value"][0], "Thorax ß Übersicht");
    assert_eq!(one["00282000"]["vr"], "OB");
    assert!(
        one["00282000"]["InlineBinary"].is_string(),
        "small binary inline"
    );
    let instance_url = served.url(&stored[1].instance_path());
    assert_eq!(
        one["00420011"],
        serde_json::json!({"vr": "OB", "BulkDataURI": format!("{instance_url}/bulkdata/00420011")})
    );
    assert_eq!(
        one["00880200"]["Value"][0]["7FE00010"]["BulkDataURI"],
        format!("{instance_url}/bulkdata/00880200/0/7FE00010")
    );
    assert_eq!(
        one["7FE00010"],
        serde_json::json!({"vr": "OW", "BulkDataURI": format!("{instance_url}/bulkdata/7FE00010")})
    );
    // ISO 2022 text arrives as UTF-8.
    let japanese = &study[3];
    assert_eq!(
        japanese["00100010"]["Value"][0],
        serde_json::json!({
            "Alphabetic": "Yamada^Tarou",
            "Ideographic": "山田^太郎",
            "Phonetic": "やまだ^たろう"
        })
    );
}

#[tokio::test]
async fn metadata_in_xml_is_one_native_model_document_per_instance() {
    let stored = fixture();
    let served = serve_with(&stored.iter().collect::<Vec<_>>()).await;
    let response = get(
        &served,
        &format!("/studies/{STUDY}/series/{SERIES}/metadata"),
        Some("multipart/related; type=\"application/dicom+xml\""),
    )
    .await;
    assert_eq!(response.status(), 200);
    let parts = parts_of(response).await;
    assert_eq!(parts.len(), 2);
    for ((content_type, body), index) in parts.iter().zip([1, 0]) {
        assert!(
            content_type.is("application", "dicom+xml"),
            "{content_type}"
        );
        let text = std::str::from_utf8(body).expect("UTF-8");
        let read = xml::read_xml(text, &XmlLimits::default()).expect("native model");
        let (object, references) = read.into_parts();
        // The same data set as the file's, bulk data aside, read back through the XML model.
        let mut uris: Vec<String> = references.iter().map(|r| r.uri.clone()).collect();
        uris.sort();
        let instance_url = served.url(&stored[index].instance_path());
        assert_eq!(
            uris,
            [
                format!("{instance_url}/bulkdata/00420011"),
                format!("{instance_url}/bulkdata/00880200/0/7FE00010"),
                format!("{instance_url}/bulkdata/7FE00010"),
            ]
        );
        let mut expected = expected_json(&served, &stored[index]);
        let mut got = json::to_json(&object);
        // The XML model has no BulkDataURI in the JSON sense: compare without them.
        strip_bulk(&mut expected);
        strip_bulk(&mut got);
        assert_eq!(got, expected);
        assert!(text.contains("MÜLLER"), "{text}");
    }
}

/// Removes bulk data attributes (those with a BulkDataURI, or the empty values references
/// leave behind) from a DICOM JSON object, at every depth.
fn strip_bulk(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = value {
        map.retain(|_, attribute| {
            let bulk = attribute.get("BulkDataURI").is_some()
                || (matches!(attribute["vr"].as_str(), Some("OB" | "OW"))
                    && attribute.get("InlineBinary").is_none()
                    && attribute.get("Value").is_none());
            !bulk
        });
        for attribute in map.values_mut() {
            if let Some(serde_json::Value::Array(items)) = attribute.get_mut("Value") {
                items.iter_mut().for_each(strip_bulk);
            }
        }
    }
}

#[tokio::test]
async fn unknown_entities_are_404_and_other_media_types_406() {
    let stored = fixture();
    let served = serve_with(&[&stored[0]]).await;
    for path in [
        format!("/studies/{STUDY}.9/metadata"),
        format!("/studies/{STUDY}/series/{SERIES}.9/metadata"),
        format!("/studies/{STUDY}/series/{SERIES_2}/metadata"),
        format!(
            "/studies/{STUDY}/series/{SERIES_2}/instances/{}/metadata",
            stored[0].sop
        ),
        format!("/studies/{STUDY}/series/{SERIES}/instances/{SERIES}.9/metadata"),
    ] {
        let response = get(&served, &path, None).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let path = format!("/studies/{STUDY}/metadata");
    for accept in [
        "multipart/related; type=\"application/dicom\"",
        "image/jpeg",
        "application/dicom",
        "multipart/related; type=\"application/octet-stream\"",
    ] {
        let response = get(&served, &path, Some(accept)).await;
        assert_eq!(response.status(), 406, "{accept}");
    }
    for accept in [
        "*/*",
        "application/*",
        "image/png;q=0.9, application/dicom+json;q=0.5",
    ] {
        let response = get(&served, &path, Some(accept)).await;
        assert_eq!(response.status(), 200, "{accept}");
        assert_eq!(response.headers()["content-type"], "application/dicom+json");
    }
    let response = get(&served, &path, Some("text/html;;;q=x")).await;
    assert_eq!(response.status(), 400);
}

/// Prints how long the metadata of a 600-instance series takes (not an assertion: benchmarks
/// are benchmarks; see the performance notes for release-build figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_of_the_metadata_of_a_600_instance_series() {
    let instances: Vec<Stored> = (1..=600).map(|n| latin1_instance(SERIES, "1", n)).collect();
    let served = Served::start(WebConfig::default()).await;
    for chunk in instances.chunks(100) {
        let files: Vec<Vec<u8>> = chunk.iter().map(Stored::file).collect();
        let response = served
            .stow("/studies", DICOM_MULTIPART, multipart(&files))
            .await;
        assert_eq!(response.status(), 200);
    }
    let path = format!("/studies/{STUDY}/series/{SERIES}/metadata");
    for attempt in 1..=3 {
        let started = Instant::now();
        let response = get(&served, &path, None).await;
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.expect("body");
        let received = started.elapsed();
        let found: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON array");
        assert_eq!(found.len(), 600);
        println!(
            "metadata of 600 instances, attempt {attempt}: {received:?} until the whole body \
             ({} KiB) was received, {:?} with the client's JSON parsing",
            body.len() / 1024,
            started.elapsed()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Bulk data
// ------------------------------------------------------------------------------------------

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const EXPLICIT_BIG: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Every BulkDataURI of a DICOM JSON object, at any depth.
fn bulk_data_uris(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(uri)) = map.get("BulkDataURI") {
                found.push(uri.clone());
            }
            map.values().for_each(|v| bulk_data_uris(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| bulk_data_uris(v, found)),
        _ => {}
    }
}

/// The value of the element at `path` (`ggggeeee/item/ggggeeee`) of a data set, as the bytes
/// of its little endian encoding.
fn element_bytes(object: &InMemDicomObject, path: &str) -> Vec<u8> {
    let segments: Vec<&str> = path.split('/').collect();
    let tag_of = |s: &str| {
        Tag(
            u16::from_str_radix(&s[..4], 16).expect("group"),
            u16::from_str_radix(&s[4..], 16).expect("element"),
        )
    };
    let mut current = object.clone();
    for pair in segments.chunks(2) {
        let element = current.get(tag_of(pair[0])).expect("element").clone();
        match pair.get(1) {
            Some(item) => {
                let items = element.value().items().expect("sequence");
                current = items[item.parse::<usize>().expect("item")].clone();
            }
            None => return element.to_bytes().expect("bytes").into_owned(),
        }
    }
    unreachable!("a path ends with a tag")
}

/// A client that does not follow redirections.
fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// An instance with bulk data in the second item of a sequence too.
fn with_second_item(mut stored: Stored, syntax: &str) -> Stored {
    let mut object =
        identifier::decode(&stored.data_set, EXPLICIT, &ScanLimits::default()).expect("data set");
    let items = vec![
        InMemDicomObject::from_element_iter([text(tags::CODE_VALUE, VR::SH, "T-D3000")]),
        InMemDicomObject::from_element_iter([
            text(tags::CODE_VALUE, VR::SH, "T-D4000"),
            bytes(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA, VR::OW, 2048, 5),
        ]),
    ];
    object.put(DataElement::new(
        tags::ANATOMIC_REGION_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(items),
    ));
    stored.data_set = identifier::encode(&object, syntax).expect("encoded");
    stored
}

impl Stored {
    fn file_in(&self, syntax: &str) -> Vec<u8> {
        let mut bytes =
            encode_header(&FileMeta::new(CT, &self.sop, syntax, "1.2.3", "TEST")).expect("meta");
        bytes.extend_from_slice(&self.data_set);
        bytes
    }
}

#[tokio::test]
async fn every_bulk_data_uri_resolves_to_the_bytes_of_the_element() {
    let little = with_second_item(latin1_instance(SERIES, "1", 1), EXPLICIT);
    let big = with_second_item(latin1_instance(SERIES, "1", 2), EXPLICIT_BIG);
    let deflated = with_second_item(latin1_instance(SERIES, "1", 3), DEFLATED);
    let served = Served::start(WebConfig::default()).await;
    let files = vec![
        little.file_in(EXPLICIT),
        big.file_in(EXPLICIT_BIG),
        deflated.file_in(DEFLATED),
    ];
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(&files))
        .await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    for (stored, syntax) in [
        (&little, EXPLICIT),
        (&big, EXPLICIT_BIG),
        (&deflated, DEFLATED),
    ] {
        let object =
            identifier::decode(&stored.data_set, syntax, &ScanLimits::default()).expect("data set");
        let found = metadata_json(
            &served,
            &format!("{}/metadata", stored.instance_path()),
            None,
        )
        .await;
        let mut uris = Vec::new();
        bulk_data_uris(&found[0], &mut uris);
        let prefix = served.url(&format!("{}/bulkdata/", stored.instance_path()));
        let mut paths: Vec<&str> = uris
            .iter()
            .map(|uri| {
                uri.strip_prefix(&prefix)
                    .expect("a bulk data URI of the instance")
            })
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "00082218/1/00281201",
                "00420011",
                "00880200/0/7FE00010",
                "7FE00010"
            ],
            "{syntax}"
        );
        for uri in &uris {
            let path = uri.strip_prefix(&prefix).expect("prefix");
            for accept in [
                None,
                Some("multipart/related; type=\"application/octet-stream\""),
                Some("multipart/related; type=\"application/octet-stream\"; transfer-syntax=*"),
                Some("*/*"),
            ] {
                let mut request = served.client.get(uri);
                if let Some(accept) = accept {
                    request = request.header("Accept", accept);
                }
                let response = request.send().await.expect("bulk data");
                assert_eq!(response.status(), 200, "{uri} {accept:?}");
                let parts = parts_of(response).await;
                assert_eq!(parts.len(), 1);
                let (content_type, body) = &parts[0];
                assert!(
                    content_type.is("application", "octet-stream"),
                    "{content_type}"
                );
                // Little endian whatever the file's byte order (PS3.18 8.7.3.3.1).
                assert_eq!(
                    body.as_ref(),
                    element_bytes(&object, path),
                    "{syntax} {path}"
                );
            }
        }
    }
    // The part says where it came from.
    let uri = served.url(&format!("{}/bulkdata/00420011", little.instance_path()));
    let response = served.client.get(&uri).send().await.expect("bulk data");
    let body = response.bytes().await.expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("content-location: {}", uri.to_ascii_lowercase())),
        "{}",
        &text[..200.min(text.len())]
    );
}

#[tokio::test]
async fn bad_bulk_data_paths_are_400_and_missing_elements_404() {
    let stored = fixture();
    let served = serve_with(&[&stored[0]]).await;
    let instance = stored[0].instance_path();
    for path in [
        "0042001",
        "004200111",
        "0042001G",
        "00420011/0",
        "00880200/01/7FE00010",
        "00880200/-1/7FE00010",
        "00880200/x/7FE00010",
        "FFFEE000",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/00880200/0/7FE00010",
    ] {
        let response = get(&served, &format!("{instance}/bulkdata/{path}"), None).await;
        assert_eq!(
            response.status(),
            400,
            "{path}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    for path in [
        "00420012",
        "00431234",
        "00880200/1/7FE00010",
        "00880200/0/7FE00011",
        "00100010",
        "00880200",
    ] {
        let response = get(&served, &format!("{instance}/bulkdata/{path}"), None).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let elsewhere = format!(
        "/studies/{STUDY}/series/{SERIES_2}/instances/{}/bulkdata/00420011",
        stored[0].sop
    );
    assert_eq!(get(&served, &elsewhere, None).await.status(), 404);
    for accept in [
        "image/jpeg",
        "application/dicom+json",
        "multipart/related; type=\"application/dicom\"",
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.50",
    ] {
        let response = get(
            &served,
            &format!("{instance}/bulkdata/00420011"),
            Some(accept),
        )
        .await;
        assert_eq!(response.status(), 406, "{accept}");
    }
}

/// An instance in JPEG Baseline: its Pixel Data and its icon's are encapsulated (one fragment
/// and two, after an empty offset table).
fn encapsulated_instance() -> (Stored, Vec<u8>, Vec<u8>) {
    let sop = format!("{SERIES_2}.7");
    let frame: Vec<u8> = (0..3000).map(|i| (i % 241) as u8).collect();
    let icon_fragments = [vec![0xAA_u8; 700], vec![0xBB_u8; 500]];
    let encapsulated = |fragments: &[Vec<u8>]| {
        let mut bytes = vec![
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        for fragment in fragments {
            bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            bytes.extend_from_slice(&(fragment.len() as u32).to_le_bytes());
            bytes.extend_from_slice(fragment);
        }
        bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        bytes
    };
    let head = InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::PATIENT_NAME, VR::PN, "DOE^JANE"),
        text(tags::PATIENT_ID, VR::LO, "P-META"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, SERIES_2),
        text(tags::INSTANCE_NUMBER, VR::IS, "7"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(64_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(64_u16)),
    ]);
    let mut data_set = identifier::encode(&head, EXPLICIT).expect("head");
    // Icon Image Sequence (0088,0200), one item of undefined length with the icon's pixel data.
    let icon = encapsulated(&icon_fragments);
    data_set.extend_from_slice(&[
        0x88, 0x00, 0x00, 0x02, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    data_set.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    data_set.extend_from_slice(&icon);
    data_set.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
    data_set.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    data_set.extend_from_slice(&encapsulated(std::slice::from_ref(&frame)));
    let stored = Stored {
        study: STUDY.to_owned(),
        series: SERIES_2.to_owned(),
        sop,
        data_set,
    };
    (stored, frame, icon_fragments.concat())
}

#[tokio::test]
async fn encapsulated_pixel_data_points_to_frames_and_nested_fragments_are_sent_as_stored() {
    let (stored, _frame, icon) = encapsulated_instance();
    let served = Served::start(WebConfig::default()).await;
    let response = served
        .stow(
            "/studies",
            DICOM_MULTIPART,
            multipart(&[stored.file_in(JPEG_BASELINE)]),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let found = metadata_json(
        &served,
        &format!("{}/metadata", stored.instance_path()),
        None,
    )
    .await;
    let instance_url = served.url(&stored.instance_path());
    // The frames, one at a time (PS3.18 8.7.3.3.2), at the Frames resource.
    assert_eq!(
        found[0]["7FE00010"],
        serde_json::json!({"vr": "OB", "BulkDataURI": format!("{instance_url}/frames/1")})
    );
    let icon_uri = format!("{instance_url}/bulkdata/00880200/0/7FE00010");
    assert_eq!(
        found[0]["00880200"]["Value"][0]["7FE00010"]["BulkDataURI"],
        icon_uri
    );
    // The bulk data path of the top-level Pixel Data leads there too.
    let response = no_redirect_client()
        .get(format!("{instance_url}/bulkdata/7FE00010"))
        .send()
        .await
        .expect("redirection");
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("{instance_url}/frames/1").as_str()
    );
    // The icon is compressed: sent as stored only, not as the uncompressed default.
    let response = served
        .client
        .get(&icon_uri)
        .header(
            "Accept",
            "multipart/related; type=\"application/octet-stream\"",
        )
        .send()
        .await
        .expect("icon");
    assert_eq!(response.status(), 406);
    for accept in [
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.50",
        "*/*",
    ] {
        let response = served
            .client
            .get(&icon_uri)
            .header("Accept", accept)
            .send()
            .await
            .expect("icon");
        assert_eq!(response.status(), 200, "{accept}");
        let parts = parts_of(response).await;
        assert_eq!(parts.len(), 1);
        let (content_type, body) = &parts[0];
        assert!(content_type.is("application", "octet-stream"));
        assert_eq!(
            content_type.parameter("transfer-syntax"),
            Some(JPEG_BASELINE)
        );
        assert_eq!(
            body.as_ref(),
            icon.as_slice(),
            "the fragments without their items"
        );
    }
}
