//! WADO-RS retrieval in another transfer syntax (PS3.18 8.7.3.5.2, 8.7.5; Table 8.7.2-1: the
//! default of `application/dicom` is Explicit VR Little Endian) over a real archive on a
//! loopback port: every part returned is parsed back by dicom-rs and compared element by element
//! with the stored data set; uncompressed conversions are compared byte for byte with the
//! shared converter (`dimsum_dataset::convert::transcode`, what a C-STORE sub-operation sends),
//! decoded Pixel Data with the frames resource's decoded frames and with the uncompressed twin
//! of pydicom's test files (tests/data).

#[allow(unused_imports)]
mod common;

use std::io::{Cursor, Read};
use std::path::Path;

use common::*;
use dimsum_dataset::convert;
use dimsum_dataset::dicom_core::Tag;
use dimsum_dataset::dicom_core::header::Header;
use dimsum_dataset::dicom_object::mem::InMemElement;
use dimsum_dataset::dicom_object::{DefaultDicomObject, OpenFileOptions};
use dimsum_dataset::scan::ScanLimits;
use dimsum_web::pixel::PixelLimits;
use dimsum_web::transcode::{self, StoredDataSet};

const BIG: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
const NATIVE_FRAMES: &str = "multipart/related; type=\"application/octet-stream\"";
const MIXED_STUDY: &str = "1.2.826.0.1.3680043.2.1125.11.1";
const MIXED_SERIES: &str = "1.2.826.0.1.3680043.2.1125.11.1.1";

fn dicom(syntax: &str) -> String {
    format!("multipart/related; type=\"application/dicom\"; transfer-syntax={syntax}")
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .expect("test file")
}

/// A Part 10 file parsed by dicom-rs.
fn open(file: &[u8]) -> DefaultDicomObject {
    OpenFileOptions::new()
        .from_reader(Cursor::new(file))
        .expect("a Part 10 file dicom-rs reads")
}

/// An instance of `MIXED_SERIES` (or `series`) stored in `syntax`: text, numbers, a sequence,
/// and 16-bit pixels (OW) of 4 × 5 × `frames`.
fn made(series: &str, number: u32, syntax: &str, frames: u32) -> (String, Vec<u8>) {
    let sop = format!("{series}.{number}");
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let item = InMemDicomObject::from_element_iter([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, CT),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
    ]);
    let pixels: Vec<u16> = (0..(20 * frames) as u16)
        .map(|i| i.wrapping_mul(977).wrapping_add(number as u16))
        .collect();
    let object = InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::STUDY_DATE, VR::DA, "20240105"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::PATIENT_NAME, VR::PN, "M\u{fc}LLER^J\u{f6}RG"),
        text(tags::PATIENT_ID, VR::LO, "P-TRANSCODE"),
        DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            dimsum_dataset::dicom_core::value::DataSetSequence::from(vec![item]),
        ),
        DataElement::new(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::from("2.5")),
        text(tags::STUDY_INSTANCE_UID, VR::UI, MIXED_STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series),
        DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("7")),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        us(tags::ROWS, 4),
        us(tags::COLUMNS, 5),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 12),
        us(tags::HIGH_BIT, 11),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(tags::WINDOW_CENTER, VR::DS, PrimitiveValue::from("600")),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
        // An element after the Pixel Data (PS3.5 §7.1: ascending order).
        DataElement::new(
            Tag(0xFFFC, 0xFFFC),
            VR::OB,
            PrimitiveValue::U8(vec![0u8; 6].into()),
        ),
    ]);
    let mut file = encode_header(&FileMeta::new(CT, &sop, syntax, "1.2.3", "TEST")).expect("meta");
    file.extend_from_slice(&identifier::encode(&object, syntax).expect("data set"));
    (sop, file)
}

/// A pydicom test file with the study, series and SOP Instance UIDs replaced (so that the files
/// that share UIDs can be stored together), written back in its own transfer syntax.
fn renamed(name: &str, series: &str, number: u32) -> (String, Vec<u8>) {
    let mut object = open(&data(name));
    let sop = format!("{series}.{number}");
    for (tag, value) in [
        (tags::STUDY_INSTANCE_UID, MIXED_STUDY),
        (tags::SERIES_INSTANCE_UID, series),
        (tags::SOP_INSTANCE_UID, sop.as_str()),
    ] {
        object.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(value)));
    }
    let mut padded = sop.clone();
    if padded.len() % 2 == 1 {
        padded.push('\0');
    }
    object.update_meta(|meta| meta.media_storage_sop_instance_uid = padded);
    let mut file = Vec::new();
    object.write_all(&mut file).expect("written back");
    (sop, file)
}

/// Stores Part 10 files by STOW-RS.
async fn store(served: &Served, files: &[Vec<u8>]) {
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(files))
        .await;
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, 200, "{body}");
}

/// Where the archive keeps each instance of a series: the SOP Instance UID, transfer syntax
/// and stored file (meta and data set) and data set alone.
async fn stored(
    served: &Served,
    study: &str,
    series: &str,
) -> Vec<(String, String, Vec<u8>, Vec<u8>)> {
    let keys = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("SERIES"),
        ),
        DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(study),
        ),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(series),
        ),
    ]);
    let plan = QueryPlan::new(QueryModel::StudyRoot, QueryService::Move, keys).expect("plan");
    let instances = served
        .archive
        .index()
        .instances(plan)
        .await
        .expect("instances");
    instances
        .into_iter()
        .map(|instance| {
            let location = &instance.location;
            let file = std::fs::read(&location.path).expect("stored file");
            let end = (location.data_set_offset + location.data_set_length) as usize;
            let data_set = file[location.data_set_offset as usize..end].to_vec();
            (
                instance.sop_instance_uid,
                instance.transfer_syntax_uid,
                file[..end].to_vec(),
                data_set,
            )
        })
        .collect()
}

async fn get(served: &Served, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = served.client.get(served.url(path));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.expect("request")
}

/// A retrieval that must succeed: the response's `transfer-syntax` parameter and its parts.
async fn retrieve(
    served: &Served,
    path: &str,
    accept: Option<&str>,
) -> (Option<String>, Vec<(ContentType, Bytes)>) {
    let response = get(served, path, accept).await;
    let status = response.status();
    if status != 200 {
        panic!(
            "{path} {accept:?}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    let content_type = ContentType::parse(
        response.headers()["content-type"]
            .to_str()
            .expect("content type"),
    )
    .expect("content type");
    assert_eq!(
        content_type
            .related_type()
            .expect("type")
            .map(|t| t.essence()),
        Some("application/dicom".to_owned())
    );
    let syntax = content_type.parameter("transfer-syntax").map(str::to_owned);
    (syntax, parts_of(response).await)
}

async fn refused(served: &Served, path: &str, accept: &str) -> (u16, String) {
    let response = get(served, path, Some(accept)).await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

/// The data set of a Part 10 file decoded in its transfer syntax by dicom-rs, after checking the
/// file meta: `syntax` named there and in the part's Content-Type, the SOP UIDs kept.
fn check_part(part: &(ContentType, Bytes), syntax: &str, sop: &str) -> DefaultDicomObject {
    let (content_type, body) = part;
    assert!(content_type.is("application", "dicom"), "{content_type}");
    assert_eq!(content_type.parameter("transfer-syntax"), Some(syntax));
    let (meta, _) = split(body);
    assert_eq!(meta.transfer_syntax_uid, syntax);
    assert_eq!(meta.media_storage_sop_instance_uid, sop);
    let object = open(body);
    assert_eq!(object.meta().transfer_syntax(), syntax);
    assert_eq!(
        object.meta().media_storage_sop_class_uid(),
        object
            .element(tags::SOP_CLASS_UID)
            .expect("SOP Class UID")
            .to_str()
            .expect("text")
            .trim_end_matches('\0')
    );
    object
}

/// The elements of a data set as dicom-rs decodes them, with `skip` left out.
fn elements(object: &InMemDicomObject, skip: &[Tag]) -> Vec<InMemElement> {
    object
        .iter()
        .filter(|element| !skip.contains(&element.tag()) && element.tag().element() != 0)
        .cloned()
        .collect()
}

/// Compares two data sets element by element: the same tags in the same order, the same
/// values (sequences item by item); VRs compared where both are explicit.
fn assert_same(actual: &InMemDicomObject, expected: &InMemDicomObject, skip: &[Tag], what: &str) {
    let (actual, expected) = (elements(actual, skip), elements(expected, skip));
    let tags = |list: &[InMemElement]| list.iter().map(|e| e.tag()).collect::<Vec<_>>();
    assert_eq!(tags(&actual), tags(&expected), "{what}: tags");
    for (a, e) in actual.iter().zip(&expected) {
        match (a.items(), e.items()) {
            (Some(a_items), Some(e_items)) => {
                assert_eq!(a_items.len(), e_items.len(), "{what}: items of {}", a.tag());
                for (a_item, e_item) in a_items.iter().zip(e_items) {
                    assert_same(a_item, e_item, &[], what);
                }
            }
            _ => {
                let (a_bytes, e_bytes) = (a.to_bytes(), e.to_bytes());
                match (a_bytes, e_bytes) {
                    (Ok(a_bytes), Ok(e_bytes)) => assert!(
                        a_bytes == e_bytes,
                        "{what}: the value of {} differs: {:?} / {:?}",
                        a.tag(),
                        a.value(),
                        e.value()
                    ),
                    _ => assert_eq!(a.value(), e.value(), "{what}: the value of {}", a.tag()),
                }
            }
        }
    }
}

fn value(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    object.get(tag).map(|element| {
        element
            .to_str()
            .expect("text")
            .trim_matches([' ', '\0'])
            .to_owned()
    })
}

/// The data set of a Part 10 file decoded by dicom-rs.
fn data_set_of(file: &[u8]) -> InMemDicomObject {
    open(file).into_inner()
}

/// The shared converter's output for a whole data set (deflated: inflated).
fn converted(data_set: &[u8], from: &str, to: &str) -> Vec<u8> {
    inflate_if(
        convert::transcode(data_set, from, to, &ScanLimits::default()).expect("converted"),
        to,
    )
}

fn inflate_if(bytes: Vec<u8>, syntax: &str) -> Vec<u8> {
    if syntax != DEFLATED {
        return bytes;
    }
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .expect("inflated");
    out
}

/// The Pixel Data of a Part 10 file (native: its bytes in little endian).
fn pixels_of(file: &[u8]) -> Vec<u8> {
    open(file)
        .element(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("native")
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_little_endian_as_stored_explicit_by_default_and_back() {
    let served = Served::start(WebConfig::default()).await;
    let series = format!("{MIXED_SERIES}.1");
    let (sop, original) = made(&series, 1, IMPLICIT, 3);
    store(&served, std::slice::from_ref(&original)).await;
    let kept = stored(&served, MIXED_STUDY, &series).await;
    let (_, syntax, stored_file, stored_data_set) = &kept[0];
    assert_eq!(syntax, IMPLICIT);
    let path = format!("/studies/{MIXED_STUDY}/series/{series}/instances/{sop}");

    // `*`: the stored file, byte for byte.
    let (top, parts) = retrieve(&served, &path, Some(ANY_SYNTAX)).await;
    assert_eq!(top.as_deref(), Some(IMPLICIT));
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0.parameter("transfer-syntax"), Some(IMPLICIT));
    assert!(
        parts[0].1[..] == stored_file[..],
        "as stored: not the stored file"
    );

    // No Accept, any media type, and Explicit VR Little Endian named: converted (Table
    // 8.7.2-1), every element as stored, the data set byte for byte what the shared converter
    // gives.
    let expected = data_set_of(&original);
    for accept in [
        None,
        Some("*/*"),
        Some(dicom(EXPLICIT).as_str()),
        Some("multipart/related; type=\"application/dicom\""),
    ] {
        let (top, parts) = retrieve(&served, &path, accept).await;
        assert_eq!(top.as_deref(), Some(EXPLICIT), "{accept:?}");
        let object = check_part(&parts[0], EXPLICIT, &sop);
        assert_same(&object, &expected, &[], "implicit to explicit");
        assert_eq!(
            object.element(tags::PIXEL_DATA).expect("pixel data").vr(),
            VR::OW
        );
        let (_, data_set) = split(&parts[0].1);
        assert!(
            data_set == converted(stored_data_set, IMPLICIT, EXPLICIT),
            "{accept:?}: not the shared converter's bytes"
        );
    }

    // And to the other uncompressed syntaxes: big endian, deflated, parsed back the same.
    for to in [BIG, DEFLATED] {
        let (top, parts) = retrieve(&served, &path, Some(&dicom(to))).await;
        assert_eq!(top.as_deref(), Some(to));
        let object = check_part(&parts[0], to, &sop);
        assert_same(&object, &expected, &[], to);
        let (_, data_set) = split(&parts[0].1);
        assert!(
            inflate_if(data_set, to) == converted(stored_data_set, IMPLICIT, to),
            "{to}: not the shared converter's bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_little_endian_to_implicit_and_big_endian_files_to_little() {
    let served = Served::start(WebConfig::default()).await;
    let series = format!("{MIXED_SERIES}.2");
    let (sop, original) = made(&series, 1, EXPLICIT, 2);
    // A larger instance: its Pixel Data goes in several pieces.
    let big = Instance::new(MIXED_STUDY, &series, 2, 3 * 1024 * 1024 + 10);
    store(&served, &[original.clone(), big.file()]).await;
    let kept = stored(&served, MIXED_STUDY, &series).await;

    let path = format!("/studies/{MIXED_STUDY}/series/{series}");
    let (top, parts) = retrieve(&served, &path, Some(&dicom(IMPLICIT))).await;
    assert_eq!(top.as_deref(), Some(IMPLICIT));
    assert_eq!(parts.len(), 2);
    for part in &parts {
        let (meta, data_set) = split(&part.1);
        let sop = meta.media_storage_sop_instance_uid.clone();
        let (_, _, stored_file, stored_data_set) =
            kept.iter().find(|(uid, ..)| *uid == sop).expect("stored");
        let object = check_part(part, IMPLICIT, &sop);
        assert_same(
            &object,
            &data_set_of(stored_file),
            &[],
            "explicit to implicit",
        );
        assert!(
            data_set == converted(stored_data_set, EXPLICIT, IMPLICIT),
            "{sop}: not the shared converter's bytes"
        );
        assert!(pixels_of(&part.1) == pixels_of(stored_file));
    }
    assert!(
        parts
            .iter()
            .any(|(_, body)| split(body).0.media_storage_sop_instance_uid == sop)
    );

    // pydicom's MR_small in Explicit VR Big Endian, to Explicit VR Little Endian: the pixels of
    // its little endian twin, every other element as dicom-rs reads the big endian file.
    let served = Served::start(WebConfig::default()).await;
    let big_endian = data("MR_small_bigendian.dcm");
    store(&served, std::slice::from_ref(&big_endian)).await;
    let object = data_set_of(&big_endian);
    let study = value(&object, tags::STUDY_INSTANCE_UID).expect("study");
    let series = value(&object, tags::SERIES_INSTANCE_UID).expect("series");
    let sop = value(&object, tags::SOP_INSTANCE_UID).expect("sop");
    let (top, parts) = retrieve(&served, &format!("/studies/{study}"), None).await;
    assert_eq!(top.as_deref(), Some(EXPLICIT));
    let little = check_part(&parts[0], EXPLICIT, &sop);
    assert_same(&little, &object, &[], "big to little endian");
    assert!(pixels_of(&parts[0].1) == pixels_of(&data("MR_small.dcm")));
    let kept = stored(&served, &study, &series).await;
    let (_, data_set) = split(&parts[0].1);
    assert!(data_set == converted(&kept[0].3, BIG, EXPLICIT));
}

/// The frames of an instance decoded by the frames resource (Explicit VR Little Endian
/// octet streams), in order.
async fn decoded_frames(served: &Served, instance_path: &str, frames: u32) -> Vec<u8> {
    let list: Vec<String> = (1..=frames).map(|f| f.to_string()).collect();
    let path = format!("{instance_path}/frames/{}", list.join(","));
    let response = get(served, &path, Some(NATIVE_FRAMES)).await;
    assert_eq!(response.status(), 200, "{path}");
    parts_of(response)
        .await
        .into_iter()
        .flat_map(|(_, body)| body.to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_instances_are_decoded_to_explicit_little_endian() {
    let uncompressed = pixels_of(&data("MR_small.dcm"));
    let cases = [
        ("MR_small_RLE.dcm", RLE, "MONOCHROME2", 1, true),
        (
            "MR_small_jp2klossless.dcm",
            J2K_LOSSLESS,
            "MONOCHROME2",
            1,
            true,
        ),
        ("SC_rgb_rle_2frame.dcm", RLE, "RGB", 2, false),
        ("SC_rgb_jpeg_dcmtk.dcm", JPEG_BASELINE, "RGB", 1, false),
    ];
    for (name, syntax, photometric, frames, is_mr_small) in cases {
        // One archive each: the MR_small files share a SOP Instance UID.
        let served = Served::start(WebConfig::default()).await;
        let file = data(name);
        store(&served, std::slice::from_ref(&file)).await;
        let original = open(&file);
        assert_eq!(original.meta().transfer_syntax(), syntax, "{name}");
        let object = original.into_inner();
        let uid = |tag| value(&object, tag).expect("uid");
        let (study, series, sop) = (
            uid(tags::STUDY_INSTANCE_UID),
            uid(tags::SERIES_INSTANCE_UID),
            uid(tags::SOP_INSTANCE_UID),
        );
        let path = format!("/studies/{study}/series/{series}/instances/{sop}");

        // As stored when asked for it by name or by `*`.
        for accept in [dicom(syntax), ANY_SYNTAX.to_owned()] {
            let (top, parts) = retrieve(&served, &path, Some(&accept)).await;
            assert_eq!(top.as_deref(), Some(syntax), "{name}");
            let (_, data_set) = split(&parts[0].1);
            assert!(data_set == split(&file).1, "{name}: as stored");
        }

        let (top, parts) = retrieve(&served, &path, None).await;
        assert_eq!(top.as_deref(), Some(EXPLICIT), "{name}");
        let decoded = check_part(&parts[0], EXPLICIT, &sop);
        let pixels = pixels_of(&parts[0].1);
        assert!(
            pixels == decoded_frames(&served, &path, frames).await,
            "{name}: not the frames resource's decoded frames"
        );
        if is_mr_small {
            assert!(pixels == uncompressed, "{name}: not MR_small's pixels");
        }
        let pixel_data = decoded.element(tags::PIXEL_DATA).expect("pixel data");
        assert!(pixel_data.value().fragments().is_none(), "{name}: native");
        let bits = value(&decoded, tags::BITS_ALLOCATED).expect("bits");
        assert_eq!(
            pixel_data.vr(),
            if bits == "8" { VR::OB } else { VR::OW },
            "{name}"
        );
        assert_eq!(
            value(&decoded, tags::PHOTOMETRIC_INTERPRETATION).as_deref(),
            Some(photometric),
            "{name}"
        );
        let samples = value(&decoded, tags::SAMPLES_PER_PIXEL).unwrap_or_else(|| "1".to_owned());
        if samples == "3" {
            assert_eq!(
                value(&decoded, tags::PLANAR_CONFIGURATION).as_deref(),
                Some("0")
            );
        }
        if syntax == JPEG_BASELINE {
            assert_eq!(
                value(&decoded, tags::LOSSY_IMAGE_COMPRESSION).as_deref(),
                Some("01")
            );
            assert!(
                decoded
                    .element(tags::LOSSY_IMAGE_COMPRESSION_METHOD)
                    .is_ok()
            );
        }
        // Every other element as stored.
        let changed = [
            tags::PIXEL_DATA,
            tags::PHOTOMETRIC_INTERPRETATION,
            tags::PLANAR_CONFIGURATION,
            tags::LOSSY_IMAGE_COMPRESSION,
            tags::LOSSY_IMAGE_COMPRESSION_METHOD,
        ];
        assert_same(&decoded, &object, &changed, name);

        // Decoded to the other uncompressed syntaxes too, the same pixels.
        for to in [IMPLICIT, BIG, DEFLATED] {
            let (_, parts) = retrieve(&served, &path, Some(&dicom(to))).await;
            let object = check_part(&parts[0], to, &sop);
            assert_same(&object, &decoded, &[], &format!("{name} to {to}"));
            assert!(pixels_of(&parts[0].1) == pixels, "{name} to {to}");
        }

        // Compressing to another compressed syntax is not done.
        let other = if syntax == RLE { JPEG_BASELINE } else { RLE };
        let (status, text) = refused(&served, &path, &dicom(other)).await;
        assert_eq!(status, 406, "{name}: {text}");
        assert!(text.contains("compressing"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_syntaxes_for_uncompressed_data_are_406_unless_another_range_fits() {
    let served = Served::start(WebConfig::default()).await;
    let series = format!("{MIXED_SERIES}.3");
    let (sop, original) = made(&series, 1, EXPLICIT, 1);
    let (implicit_sop, implicit) = made(&series, 2, IMPLICIT, 1);
    store(&served, &[original.clone(), implicit]).await;
    let path = format!("/studies/{MIXED_STUDY}/series/{series}/instances/{sop}");

    for syntax in [JPEG_BASELINE, RLE, J2K_LOSSLESS] {
        let (status, text) = refused(&served, &path, &dicom(syntax)).await;
        assert_eq!(status, 406, "{syntax}");
        assert!(text.contains("compressing"), "{syntax}: {text}");
        assert!(text.contains(&sop), "{text}");
    }
    // A syntax nobody knows, and a range of another related type only: 406.
    let (status, _) = refused(&served, &path, &dicom("1.2.3.4.5.6")).await;
    assert_eq!(status, 406);
    let (status, _) = refused(
        &served,
        &path,
        "multipart/related; type=\"application/dicom+xml\"",
    )
    .await;
    assert_eq!(status, 406);

    // q-values: JPEG preferred but impossible, then `*`: as stored.
    let accept = format!("{}; q=0.9, {}; q=0.5", dicom(JPEG_BASELINE), ANY_SYNTAX);
    let (top, parts) = retrieve(&served, &path, Some(&accept)).await;
    assert_eq!(top.as_deref(), Some(EXPLICIT));
    assert!(split(&parts[0].1).1 == split(&original).1);

    // The higher weight wins, even when it means converting.
    let implicit_path = format!("/studies/{MIXED_STUDY}/series/{series}/instances/{implicit_sop}");
    let accept = format!("{}; q=0.4, {}; q=0.8", dicom(IMPLICIT), dicom(BIG));
    let (top, parts) = retrieve(&served, &implicit_path, Some(&accept)).await;
    assert_eq!(top.as_deref(), Some(BIG));
    check_part(&parts[0], BIG, &implicit_sop);

    // Equal weights: as stored beats converted, whatever the order.
    for accept in [
        format!("{}, {}", dicom(EXPLICIT), ANY_SYNTAX),
        format!("{}, {}", dicom(EXPLICIT), dicom(IMPLICIT)),
    ] {
        let (top, parts) = retrieve(&served, &implicit_path, Some(&accept)).await;
        assert_eq!(top.as_deref(), Some(IMPLICIT), "{accept}");
        assert_eq!(parts[0].0.parameter("transfer-syntax"), Some(IMPLICIT));
    }
    // A weight of 0 is not acceptable (RFC 9110 12.4.2): the other range is used.
    let accept = format!("{}; q=0, {}; q=0.1", ANY_SYNTAX, dicom(EXPLICIT));
    let (top, _) = retrieve(&served, &implicit_path, Some(&accept)).await;
    assert_eq!(top.as_deref(), Some(EXPLICIT));
    // The series: the explicit instance as stored and the implicit one converted, for the
    // one syntax both can be sent in.
    let accept = format!(
        "{}; q=0.9, {}; q=0.5",
        dicom(JPEG_BASELINE),
        dicom(EXPLICIT)
    );
    let (top, parts) = retrieve(
        &served,
        &format!("/studies/{MIXED_STUDY}/series/{series}"),
        Some(&accept),
    )
    .await;
    assert_eq!(top.as_deref(), Some(EXPLICIT));
    assert_eq!(parts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_mixing_transfer_syntaxes() {
    let served = Served::start(WebConfig::default()).await;
    let series = format!("{MIXED_SERIES}.4");
    let (explicit_sop, explicit) = made(&series, 1, EXPLICIT, 2);
    let (implicit_sop, implicit) = made(&series, 2, IMPLICIT, 2);
    let (rle_sop, rle) = renamed("SC_rgb_rle_2frame.dcm", &series, 3);
    let (deflated_sop, deflated) = made(&series, 4, DEFLATED, 1);
    store(
        &served,
        &[
            explicit.clone(),
            implicit.clone(),
            rle.clone(),
            deflated.clone(),
        ],
    )
    .await;
    let originals = [
        (explicit_sop.as_str(), EXPLICIT, &explicit),
        (implicit_sop.as_str(), IMPLICIT, &implicit),
        (rle_sop.as_str(), RLE, &rle),
        (deflated_sop.as_str(), DEFLATED, &deflated),
    ];
    let path = format!("/studies/{MIXED_STUDY}/series/{series}");
    let rle_path = format!("{path}/instances/{rle_sop}");
    let rle_pixels = decoded_frames(&served, &rle_path, 2).await;

    // `*`: each as stored, each part naming its syntax, the response none.
    let (top, parts) = retrieve(&served, &path, Some(ANY_SYNTAX)).await;
    assert_eq!(top, None);
    assert_eq!(parts.len(), 4);
    for part in &parts {
        let sop = split(&part.1).0.media_storage_sop_instance_uid;
        let (_, syntax, file) = originals
            .iter()
            .find(|(uid, ..)| *uid == sop)
            .expect("known");
        assert_eq!(part.0.parameter("transfer-syntax"), Some(*syntax));
        assert!(split(&part.1).1 == split(file).1, "{sop} as stored");
    }

    // Explicit VR Little Endian (the default) and Implicit: all converted but the one stored
    // so, every part parsed back to the stored elements and pixels.
    for to in [EXPLICIT, IMPLICIT] {
        let accept = dicom(to);
        let (top, parts) = retrieve(&served, &path, Some(&accept)).await;
        assert_eq!(top.as_deref(), Some(to));
        assert_eq!(parts.len(), 4);
        for part in &parts {
            let sop = split(&part.1).0.media_storage_sop_instance_uid;
            let (_, syntax, file) = originals
                .iter()
                .find(|(uid, ..)| *uid == sop)
                .expect("known");
            let object = check_part(part, to, &sop);
            let original = data_set_of(file);
            if *syntax == RLE {
                assert_same(
                    &object,
                    &original,
                    &[tags::PIXEL_DATA, tags::PLANAR_CONFIGURATION],
                    &sop,
                );
                assert!(pixels_of(&part.1) == rle_pixels, "{sop}: decoded pixels");
            } else {
                assert_same(&object, &original, &[], &sop);
            }
        }
    }

    // Compressed: not for the uncompressed ones; RLE and then `*` at a lower weight: as stored.
    let (status, text) = refused(&served, &path, &dicom(RLE)).await;
    assert_eq!(status, 406, "{text}");
    assert!(text.contains("compressing"), "{text}");
    let (top, parts) = retrieve(
        &served,
        &path,
        Some(&format!("{}, {}; q=0.2", dicom(RLE), ANY_SYNTAX)),
    )
    .await;
    assert_eq!(top, None);
    assert_eq!(parts.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_before_the_response_and_failures_later_cut_the_body() {
    // A decoded frame over max_frame_bytes: 422 before anything is sent, `*` still served.
    let mut config = WebConfig::default();
    config.pixel_limits.max_frame_bytes = 1000;
    let served = Served::start(config).await;
    let file = data("MR_small_RLE.dcm");
    store(&served, std::slice::from_ref(&file)).await;
    let object = data_set_of(&file);
    let uid = |tag| value(&object, tag).expect("uid");
    let path = format!("/studies/{}", uid(tags::STUDY_INSTANCE_UID));
    let (status, text) = refused(&served, &path, &dicom(EXPLICIT)).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("max_frame_bytes"), "{text}");
    let (top, _) = retrieve(&served, &path, Some(ANY_SYNTAX)).await;
    assert_eq!(top.as_deref(), Some(RLE));

    // Elements before the Pixel Data over max_header_bytes: 422.
    let mut config = WebConfig::default();
    config.pixel_limits.max_header_bytes = 100;
    let served = Served::start(config).await;
    let series = format!("{MIXED_SERIES}.5");
    let (_, implicit) = made(&series, 1, IMPLICIT, 1);
    store(&served, &[implicit]).await;
    let (status, text) = refused(
        &served,
        &format!("/studies/{MIXED_STUDY}/series/{series}"),
        &dicom(EXPLICIT),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("max_header_bytes"), "{text}");

    // An RLE frame that cannot be decoded: 422 when it is the first (decoded before the
    // response starts); when it is a later one, the response has started and the body ends
    // without its closing delimiter, never as a complete instance.
    let served = Served::start(WebConfig::default()).await;
    let series = format!("{MIXED_SERIES}.6");
    let (first_sop, broken_first) = renamed_broken("MR_small_RLE.dcm", &series, 1, 0);
    let (second_sop, broken_second) = renamed_broken("SC_rgb_rle_2frame.dcm", &series, 2, 1);
    store(&served, &[broken_first, broken_second]).await;
    let instance = |sop: &str| format!("/studies/{MIXED_STUDY}/series/{series}/instances/{sop}");
    let (status, text) = refused(&served, &instance(&first_sop), &dicom(EXPLICIT)).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("frame 1"), "{text}");

    let response = served
        .client
        .get(served.url(&instance(&second_sop)))
        .header("Accept", dicom(EXPLICIT))
        .send()
        .await;
    // The connection may be cut before the status line was flushed, or after.
    if let Ok(response) = response {
        assert_eq!(response.status(), 200);
        let content_type =
            ContentType::parse(response.headers()["content-type"].to_str().expect("type"))
                .expect("content type");
        let decoder =
            Decoder::for_content_type(&content_type, DecodeLimits::default()).expect("decoder");
        let mut reader = MultipartReader::new(response.bytes_stream(), decoder);
        let mut complete = 0;
        let outcome = loop {
            match reader.next_part().await {
                Ok(Some(_)) => match reader.read_body().await {
                    Ok(_) => complete += 1,
                    Err(error) => break Err(error.to_string()),
                },
                Ok(None) => break Ok(()),
                Err(error) => break Err(error.to_string()),
            }
        };
        assert!(outcome.is_err(), "the body ended as if complete");
        assert_eq!(complete, 0);
    }
    // The server goes on serving: the same instance as stored.
    let (top, parts) = retrieve(&served, &instance(&second_sop), Some(ANY_SYNTAX)).await;
    assert_eq!(top.as_deref(), Some(RLE));
    assert_eq!(parts.len(), 1);
}

/// [`renamed`], with the RLE header of fragment `fragment` made nonsense (a segment count of
/// 99), so that its frame cannot be decoded.
fn renamed_broken(name: &str, series: &str, number: u32, fragment: usize) -> (String, Vec<u8>) {
    let (sop, mut file) = renamed(name, series, number);
    let object = open(&file);
    let bytes = object
        .element(tags::PIXEL_DATA)
        .expect("pixel data")
        .value()
        .fragments()
        .expect("fragments")[fragment]
        .clone();
    // The whole fragment: the RLE headers of two frames may be alike.
    let at = file
        .windows(bytes.len())
        .position(|window| window == &bytes[..])
        .expect("fragment in the file");
    file[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    (sop, file)
}

#[test]
fn the_stream_of_chunks_is_the_whole_conversion_with_pixel_data_in_pieces() {
    // Straight through the module: a multi-frame instance whose Pixel Data is larger than a
    // chunk comes out in several chunks, equal to the shared converter's whole output.
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = Instance::new(STUDY, SERIES, 9, 2 * transcode::CHUNK + 6);
    let file = instance.file();
    let path = dir.path().join("instance.dcm");
    std::fs::write(&path, &file).expect("written");
    let (_, offset) = part10::read_meta(&mut &file[..]).expect("meta");
    for to in [IMPLICIT, BIG, DEFLATED] {
        let stored = StoredDataSet {
            path: path.clone(),
            offset,
            length: file.len() as u64 - offset,
            transfer_syntax: EXPLICIT.to_owned(),
        };
        let transcoder = transcode::Transcoder::open(
            &stored,
            to,
            &ScanLimits::default(),
            &PixelLimits::default(),
        )
        .expect("opened");
        let chunks: Vec<Bytes> = transcoder.map(|chunk| chunk.expect("chunk")).collect();
        if to != DEFLATED {
            assert!(chunks.len() >= 4, "{to}: {} chunks", chunks.len());
            assert!(chunks.iter().all(|chunk| chunk.len() <= transcode::CHUNK));
        }
        let whole: Vec<u8> = chunks.concat();
        assert!(
            inflate_if(whole, to) == converted(&file[offset as usize..], EXPLICIT, to),
            "{to}"
        );
    }
}
