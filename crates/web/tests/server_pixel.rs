//! WADO-RS frames, rendered and thumbnail resources (PS3.18 10.4.1.1.6, 10.4.1.2, 10.4.1.3)
//! over a real archive on a loopback port: instances are stored by STOW-RS, then their frames
//! are compared byte for byte with the pixel data of the files (pydicom's test files in
//! tests/data, and instances made here), compressed frames decoded to the same pixels as their
//! uncompressed twins, rendered images decoded with the image crate and checked for their size
//! and pixel values; bad requests and inconsistent objects get their status and the server goes
//! on serving.

#[allow(unused_imports)]
mod common;

use std::path::Path;

use common::*;
use dimsum_dataset::dicom_object::OpenFileOptions;
use image::GenericImageView;

const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
const PIXEL_STUDY: &str = "1.2.826.0.1.3680043.2.1125.9.1";
const PIXEL_SERIES: &str = "1.2.826.0.1.3680043.2.1125.9.1.1";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const RLE: &str = "1.2.840.10008.1.2.5";
const OHIF_UNQUOTED: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";
const OHIF_QUOTED: &str = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";
const NATIVE: &str = "multipart/related; type=\"application/octet-stream\"";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .expect("test file")
}

/// The Pixel Data value of a test file as dicom-rs reads it (native: the bytes in little
/// endian; encapsulated: the fragments).
fn pixel_data_of(name: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let object = OpenFileOptions::new().open_file(path).expect("open");
    let element = object.element(tags::PIXEL_DATA).expect("pixel data");
    match element.value().fragments() {
        Some(fragments) => (Vec::new(), fragments.to_vec()),
        None => (element.to_bytes().expect("bytes").into_owned(), Vec::new()),
    }
}

/// Stores Part 10 files by STOW-RS; the Retrieve URL of each instance.
async fn store(served: &Served, files: &[Vec<u8>]) -> Vec<String> {
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(files))
        .await;
    let status = response.status();
    let body = json(&response.text().await.expect("body"));
    assert_eq!(status, 200, "{body}");
    body["00081199"]["Value"]
        .as_array()
        .expect("referenced instances")
        .iter()
        .map(|item| {
            item["00081190"]["Value"][0]
                .as_str()
                .expect("retrieve URL")
                .to_owned()
        })
        .collect()
}

async fn get(served: &Served, url: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = served.client.get(url);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.expect("request")
}

/// The frames of a frames response, each with its Content-Type.
async fn frames(served: &Served, url: &str, accept: Option<&str>) -> Vec<(ContentType, Bytes)> {
    let response = get(served, url, accept).await;
    assert_eq!(response.status(), 200, "{url}");
    parts_of(response).await
}

/// A rendered image decoded, with its media type.
async fn image_of(
    served: &Served,
    url: &str,
    accept: Option<&str>,
) -> (String, image::DynamicImage) {
    let response = get(served, url, accept).await;
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    let image = image::load_from_memory(&body).expect("an image");
    (content_type, image)
}

async fn status_and_text(served: &Served, url: &str, accept: Option<&str>) -> (u16, String) {
    let response = get(served, url, accept).await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

/// An instance made here: an image with the given pixel attributes and Pixel Data (native, or
/// encapsulated as the given items, the Basic Offset Table first), as a Part 10 file.
struct Made {
    sop: String,
    attributes: Vec<DataElement<InMemDicomObject>>,
}

impl Made {
    fn new(number: u32, rows: u16, columns: u16, bits: u16, photometric: &str) -> Made {
        let sop = format!("{PIXEL_SERIES}.{number}");
        let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
        let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
        Made {
            attributes: vec![
                text(tags::SOP_CLASS_UID, VR::UI, SC),
                text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
                text(tags::MODALITY, VR::CS, "OT"),
                text(tags::PATIENT_ID, VR::LO, "P-PIXEL"),
                text(tags::STUDY_INSTANCE_UID, VR::UI, PIXEL_STUDY),
                text(tags::SERIES_INSTANCE_UID, VR::UI, PIXEL_SERIES),
                us(tags::SAMPLES_PER_PIXEL, 1),
                text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
                us(tags::ROWS, rows),
                us(tags::COLUMNS, columns),
                us(tags::BITS_ALLOCATED, bits),
                us(tags::BITS_STORED, bits),
                us(tags::HIGH_BIT, bits - 1),
                us(tags::PIXEL_REPRESENTATION, 0),
            ],
            sop,
        }
    }

    fn with(mut self, element: DataElement<InMemDicomObject>) -> Made {
        self.attributes.push(element);
        self
    }

    fn frames(self, frames: u32) -> Made {
        self.with(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(frames.to_string()),
        ))
    }

    fn native(self, pixels: Vec<u8>) -> Vec<u8> {
        let mut object = InMemDicomObject::from_element_iter(self.attributes);
        object.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(pixels.into()),
        ));
        let mut file =
            encode_header(&FileMeta::new(SC, &self.sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
        file.extend_from_slice(&identifier::encode(&object, EXPLICIT).expect("data set"));
        file
    }

    fn without_pixels(self) -> Vec<u8> {
        let object = InMemDicomObject::from_element_iter(self.attributes);
        let mut file =
            encode_header(&FileMeta::new(SC, &self.sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
        file.extend_from_slice(&identifier::encode(&object, EXPLICIT).expect("data set"));
        file
    }

    fn encapsulated(
        self,
        transfer_syntax: &str,
        offsets: &[u32],
        fragments: &[Vec<u8>],
    ) -> Vec<u8> {
        let object = InMemDicomObject::from_element_iter(self.attributes);
        let mut file = encode_header(&FileMeta::new(
            SC,
            &self.sop,
            transfer_syntax,
            "1.2.3",
            "TEST",
        ))
        .expect("meta");
        file.extend_from_slice(&identifier::encode(&object, EXPLICIT).expect("data set"));
        file.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        let item = |file: &mut Vec<u8>, value: &[u8]| {
            file.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            file.extend_from_slice(&(value.len() as u32).to_le_bytes());
            file.extend_from_slice(value);
        };
        let table: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        item(&mut file, &table);
        for fragment in fragments {
            item(&mut file, fragment);
        }
        file.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        file
    }
}

/// A grey gradient frame, different for each frame number.
fn gradient(rows: usize, columns: usize, frame: usize) -> Vec<u8> {
    (0..rows * columns)
        .map(|i| ((i % columns) * 255 / (columns - 1) / (frame + 1) + frame * 40) as u8)
        .collect()
}

/// A frame JPEG baseline encoded (jpeg-encoder), padded to an even length.
fn jpeg(pixels: &[u8], rows: u16, columns: u16) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 95)
        .encode(pixels, columns, rows, jpeg_encoder::ColorType::Luma)
        .expect("jpeg");
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn assert_close(actual: &[u8], expected: &[u8], tolerance: u8, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: sizes");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| a.abs_diff(*e))
        .max()
        .unwrap_or(0);
    assert!(worst <= tolerance, "{what}: a pixel is {worst} away");
}

/// A native multi-frame instance of 16-bit frames (4 × 5), each frame's values its own.
fn multi_frame(number: u32, frames: u32) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..frames as usize * 4 * 5)
        .flat_map(|i| (i as u16 * 7 + 3).to_le_bytes())
        .collect();
    let file = Made::new(number, 4, 5, 16, "MONOCHROME2")
        .frames(frames)
        .native(pixels.clone());
    (file, pixels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_frames_are_the_bytes_of_the_file() {
    let served = Served::start(WebConfig::default()).await;
    let (multi, pixels) = multi_frame(1, 6);
    let urls = store(&served, &[data("MR_small.dcm"), multi]).await;
    let (mr, _) = pixel_data_of("MR_small.dcm");
    assert_eq!(mr.len(), 64 * 64 * 2);

    // A single frame: OHIF's Accept quoted and not, the default, and native named.
    for accept in [Some(OHIF_UNQUOTED), Some(OHIF_QUOTED), None, Some(NATIVE)] {
        let parts = frames(&served, &format!("{}/frames/1", urls[0]), accept).await;
        assert_eq!(parts.len(), 1, "{accept:?}");
        let (content_type, body) = &parts[0];
        assert!(content_type.is("application", "octet-stream"));
        assert_eq!(content_type.parameter("transfer-syntax"), Some(EXPLICIT));
        assert!(body[..] == mr[..], "{accept:?}: the frame differs");
    }

    // Several frames of a multi-frame instance, in the order asked.
    let frame_size = 4 * 5 * 2;
    let parts = frames(
        &served,
        &format!("{}/frames/3,1,6", urls[1]),
        Some(OHIF_UNQUOTED),
    )
    .await;
    assert_eq!(parts.len(), 3);
    for ((_, body), frame) in parts.iter().zip([3, 1, 6]) {
        let start = (frame - 1) * frame_size;
        assert!(
            body[..] == pixels[start..start + frame_size],
            "frame {frame}"
        );
    }

    // Explicit VR Big Endian (the same SOP Instance as MR_small, so in an archive of its own):
    // the same pixels, sent in little endian.
    let served = Served::start(WebConfig::default()).await;
    let urls = store(&served, &[data("MR_small_bigendian.dcm")]).await;
    let parts = frames(&served, &format!("{}/frames/1", urls[0]), Some(OHIF_QUOTED)).await;
    assert_eq!(parts[0].0.parameter("transfer-syntax"), Some(EXPLICIT));
    assert!(parts[0].1[..] == mr[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_numbers_out_of_range_and_unknown_instances() {
    let served = Served::start(WebConfig::default()).await;
    let urls = store(&served, &[multi_frame(2, 15).0]).await;
    let (status, text) = status_and_text(&served, &format!("{}/frames/0", urls[0]), None).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = status_and_text(&served, &format!("{}/frames/1,16", urls[0]), None).await;
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("frame 16") && text.contains("15 frame"),
        "{text}"
    );
    let (status, _) = status_and_text(&served, &format!("{}/frames/x", urls[0]), None).await;
    assert_eq!(status, 400);
    let other = served.url(&format!(
        "/studies/{PIXEL_STUDY}/series/{PIXEL_SERIES}/instances/1.2.3.4/frames/1"
    ));
    let (status, _) = status_and_text(&served, &other, None).await;
    assert_eq!(status, 404);
    // The instance under another study's URL is not found either.
    let sop = urls[0].rsplit('/').next().expect("sop");
    let wrong = served.url(&format!(
        "/studies/1.2.3/series/1.2.4/instances/{sop}/frames/1"
    ));
    let (status, _) = status_and_text(&served, &wrong, None).await;
    assert_eq!(status, 404);
    // Nothing the frames resource can be sent as.
    let (status, text) = status_and_text(
        &served,
        &format!("{}/frames/1", urls[0]),
        Some("application/dicom"),
    )
    .await;
    assert_eq!(status, 406, "{text}");
    let (status, _) = status_and_text(
        &served,
        &format!("{}/frames/1", urls[0]),
        Some("multipart/related; type=\"image/jpeg\""),
    )
    .await;
    assert_eq!(status, 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encapsulated_frames_as_stored_and_decoded() {
    let (mr, _) = pixel_data_of("MR_small.dcm");
    let (_, rle_fragments) = pixel_data_of("MR_small_RLE.dcm");

    // MR_small in RLE and lossless JPEG 2000 (one archive each: they share a SOP Instance UID).
    for name in ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"] {
        let served = Served::start(WebConfig::default()).await;
        let url = &store(&served, &[data(name)]).await[0];
        // Decoded: MR_small's own pixels.
        for accept in [None, Some(NATIVE)] {
            let parts = frames(&served, &format!("{url}/frames/1"), accept).await;
            assert_eq!(parts[0].0.parameter("transfer-syntax"), Some(EXPLICIT));
            assert!(parts[0].1[..] == mr[..], "{name}: decoded pixels differ");
        }
        if name != "MR_small_RLE.dcm" {
            continue;
        }
        // As stored: the frame's fragment, with its transfer syntax.
        for accept in [OHIF_UNQUOTED, OHIF_QUOTED] {
            let parts = frames(&served, &format!("{url}/frames/1"), Some(accept)).await;
            assert_eq!(parts.len(), 1);
            assert!(parts[0].0.is("application", "octet-stream"));
            assert_eq!(parts[0].0.parameter("transfer-syntax"), Some(RLE));
            assert!(parts[0].1[..] == rle_fragments[0][..]);
        }
        let parts = frames(
            &served,
            &format!("{url}/frames/1"),
            Some("multipart/related; type=\"image/dicom-rle\""),
        )
        .await;
        assert!(parts[0].0.is("image", "dicom-rle"));
        assert!(parts[0].1[..] == rle_fragments[0][..]);
    }

    let served = Served::start(WebConfig::default()).await;
    let urls = store(
        &served,
        &[data("SC_rgb_rle_2frame.dcm"), data("image_dfl.dcm")],
    )
    .await;
    // A multi-frame RLE instance: each frame as stored, and decoded to interleaved RGB (the
    // first frame starts with a red band, the second with cyan).
    let (_, rgb_fragments) = pixel_data_of("SC_rgb_rle_2frame.dcm");
    let parts = frames(
        &served,
        &format!("{}/frames/2,1", urls[0]),
        Some(OHIF_QUOTED),
    )
    .await;
    assert!(parts[0].1[..] == rgb_fragments[1][..]);
    assert!(parts[1].1[..] == rgb_fragments[0][..]);
    let parts = frames(&served, &format!("{}/frames/1,2", urls[0]), None).await;
    assert_eq!(parts[0].1.len(), 100 * 100 * 3);
    assert_eq!(parts[0].1[..3], [255, 0, 0]);
    assert_eq!(parts[1].1[..3], [0, 255, 255]);
    let last = 100 * 100 * 3 - 3;
    assert_eq!(parts[0].1[last..], [255, 255, 255]);

    // Deflated: the frame is found in the inflated data set.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/image_dfl.dcm");
    let object = OpenFileOptions::new().open_file(path).expect("deflated");
    let expected = object
        .element(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("bytes")
        .into_owned();
    let parts = frames(&served, &format!("{}/frames/1", urls[1]), Some(OHIF_QUOTED)).await;
    assert_eq!(parts[0].0.parameter("transfer-syntax"), Some(EXPLICIT));
    assert_eq!(parts[0].1.len(), 512 * 512);
    assert!(parts[0].1[..] == expected[..512 * 512]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_frames_by_offset_table_and_fragments() {
    let served = Served::start(WebConfig::default()).await;
    let (rows, columns) = (24u16, 32u16);
    let originals: Vec<Vec<u8>> = (0..3)
        .map(|frame| gradient(rows.into(), columns.into(), frame))
        .collect();
    let encoded: Vec<Vec<u8>> = originals.iter().map(|p| jpeg(p, rows, columns)).collect();
    // Frame 2 is split in two fragments: 3 frames in 4 fragments, placed by the Basic Offset
    // Table.
    let split = (encoded[1].len() / 2) & !1;
    let fragments = vec![
        encoded[0].clone(),
        encoded[1][..split].to_vec(),
        encoded[1][split..].to_vec(),
        encoded[2].clone(),
    ];
    let second = encoded[0].len() as u32 + 8;
    let third = second + (encoded[1].len() as u32) + 16;
    let with_table = Made::new(1, rows, columns, 8, "MONOCHROME2")
        .frames(3)
        .encapsulated(JPEG_BASELINE, &[0, second, third], &fragments);
    // The same without an offset table: the frames cannot be told apart.
    let without_table = Made::new(2, rows, columns, 8, "MONOCHROME2")
        .frames(3)
        .encapsulated(JPEG_BASELINE, &[], &fragments);
    // One fragment per frame, no table.
    let one_each = Made::new(3, rows, columns, 8, "MONOCHROME2")
        .frames(3)
        .encapsulated(JPEG_BASELINE, &[], &encoded);
    // A frame whose JPEG header says 64 × 48, under attributes that say 32 × 24.
    let larger = jpeg(&gradient(48, 64, 0), 48, 64);
    let lying = Made::new(4, rows, columns, 8, "MONOCHROME2").encapsulated(
        JPEG_BASELINE,
        &[],
        std::slice::from_ref(&larger),
    );
    let urls = store(&served, &[with_table, without_table, one_each, lying]).await;

    for url in [&urls[0], &urls[2]] {
        let parts = frames(&served, &format!("{url}/frames/1,2,3"), Some(OHIF_UNQUOTED)).await;
        assert_eq!(parts.len(), 3);
        for ((content_type, body), expected) in parts.iter().zip(&encoded) {
            assert!(content_type.is("application", "octet-stream"));
            assert_eq!(
                content_type.parameter("transfer-syntax"),
                Some(JPEG_BASELINE)
            );
            assert!(body[..] == expected[..], "{url}: a frame differs");
        }
        // Asked as image/jpeg: the same bytes, typed.
        let parts = frames(
            &served,
            &format!("{url}/frames/2"),
            Some("multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50"),
        )
        .await;
        assert!(parts[0].0.is("image", "jpeg"));
        assert!(parts[0].1[..] == encoded[1][..]);
        // Decoded to native pixels, close to what was encoded.
        let parts = frames(&served, &format!("{url}/frames/3,2"), None).await;
        assert_close(&parts[0].1, &originals[2], 8, "frame 3 decoded");
        assert_close(&parts[1].1, &originals[1], 8, "frame 2 decoded");
    }

    let (status, text) =
        status_and_text(&served, &format!("{}/frames/2", urls[1]), Some(OHIF_QUOTED)).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("Offset Table"), "{text}");

    // The lying frame goes as stored, but is not decoded.
    let parts = frames(&served, &format!("{}/frames/1", urls[3]), Some(OHIF_QUOTED)).await;
    assert!(parts[0].1[..] == larger[..]);
    for resource in ["frames/1", "rendered"] {
        let (status, text) =
            status_and_text(&served, &format!("{}/{resource}", urls[3]), None).await;
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("64 × 48"), "{text}");
    }

    // Rendered: the second frame as JPEG and PNG, at its size, close to the original.
    let (content_type, image) =
        image_of(&served, &format!("{}/frames/2/rendered", urls[0]), None).await;
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(image.dimensions(), (u32::from(columns), u32::from(rows)));
    // Min-max: the gradient already spans its range closely enough to compare after scaling.
    let (content_type, image) = image_of(
        &served,
        &format!("{}/frames/1/rendered?window=127.5,256,linear", urls[0]),
        Some("image/png"),
    )
    .await;
    assert_eq!(content_type, "image/png");
    assert_close(
        image.to_luma8().as_raw(),
        &originals[0],
        10,
        "rendered frame 1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_with_window_viewport_and_quality() {
    let served = Served::start(WebConfig::default()).await;
    let urls = store(&served, &[data("MR_small.dcm")]).await;
    let url = &urls[0];
    let (mr, _) = pixel_data_of("MR_small.dcm");
    let values: Vec<i16> = mr
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // PS3.3 C.11.2.1.2.1, LINEAR, onto 0-255.
    let windowed = |center: f64, width: f64| -> Vec<u8> {
        values
            .iter()
            .map(|&x| {
                let x = f64::from(x);
                if x <= center - 0.5 - (width - 1.0) / 2.0 {
                    0
                } else if x > center - 0.5 + (width - 1.0) / 2.0 {
                    255
                } else {
                    (((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0).round() as u8
                }
            })
            .collect()
    };

    // A window asked for.
    let (content_type, image) = image_of(
        &served,
        &format!("{url}/rendered?window=1000,1200,linear"),
        Some("image/png"),
    )
    .await;
    assert_eq!(content_type, "image/png");
    assert_eq!(image.dimensions(), (64, 64));
    assert_close(
        image.to_luma8().as_raw(),
        &windowed(1000.0, 1200.0),
        2,
        "window 1000/1200",
    );
    // The file's own window (600/1600) when none is asked.
    let (_, image) = image_of(&served, &format!("{url}/rendered"), Some("image/png")).await;
    assert_close(
        image.to_luma8().as_raw(),
        &windowed(600.0, 1600.0),
        2,
        "the file's window",
    );
    // The same through the frames/1/rendered resource and the accept query parameter.
    let (content_type, image) = image_of(
        &served,
        &format!("{url}/frames/1/rendered?accept=image%2Fpng"),
        None,
    )
    .await;
    assert_eq!(content_type, "image/png");
    assert_close(
        image.to_luma8().as_raw(),
        &windowed(600.0, 1600.0),
        2,
        "accept parameter",
    );

    // JPEG by default; quality changes the size of the image, not its dimensions.
    let low = get(&served, &format!("{url}/rendered?quality=5"), None).await;
    assert_eq!(low.headers()["content-type"], "image/jpeg");
    let low = low.bytes().await.expect("low");
    let high = get(&served, &format!("{url}/rendered?quality=100"), None)
        .await
        .bytes()
        .await
        .expect("high");
    assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
    assert_eq!(
        image::load_from_memory(&low).expect("jpeg").dimensions(),
        (64, 64)
    );

    // Viewports: fit, keep the aspect ratio, one side given, a source region.
    for (viewport, size) in [
        ("32,32", (32, 32)),
        ("128,32", (32, 32)),
        (",16", (16, 16)),
        ("200,", (200, 200)),
        ("32,32,0,0,32,64", (16, 32)),
    ] {
        let (_, image) = image_of(
            &served,
            &format!("{url}/rendered?viewport={viewport}"),
            None,
        )
        .await;
        assert_eq!(image.dimensions(), size, "viewport {viewport}");
    }
    // A source region flipped left to right: the first column is the last of the image.
    let (_, flipped) = image_of(
        &served,
        &format!("{url}/rendered?viewport=64,64,0,0,-64,64"),
        Some("image/png"),
    )
    .await;
    let (_, plain) = image_of(&served, &format!("{url}/rendered"), Some("image/png")).await;
    assert_eq!(flipped.get_pixel(0, 10), plain.get_pixel(63, 10));

    // Bad parameters.
    for query in [
        "quality=0",
        "viewport=0,0",
        "window=1,2",
        "window=40,400,cubic",
        "viewport=10,10,64,64,5,5",
        "nonsense=1",
    ] {
        let (status, text) =
            status_and_text(&served, &format!("{url}/rendered?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {text}");
    }
    let (status, _) = status_and_text(
        &served,
        &format!("{url}/rendered"),
        Some("application/dicom"),
    )
    .await;
    assert_eq!(status, 406);
    let (status, _) = status_and_text(
        &served,
        &format!("{url}/rendered?viewport=100000,100000"),
        None,
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monochrome1_colour_and_bitmaps() {
    let served = Served::start(WebConfig::default()).await;
    // MONOCHROME1, no window: min-max, then inverted.
    let values: Vec<u8> = vec![0, 50, 100, 150, 200, 250, 255, 10];
    let inverted = Made::new(10, 2, 4, 8, "MONOCHROME1").native(values.clone());
    // 1 bit, 3 × 3 pixels, 3 frames: 9 bits a frame, not aligned to bytes.
    let bits: Vec<bool> = (0..27).map(|i| i % 3 == 0 || i == 13).collect();
    let mut packed = vec![0u8; 4];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            packed[i / 8] |= 1 << (i % 8);
        }
    }
    let bitmap = Made::new(11, 3, 3, 1, "MONOCHROME2")
        .frames(3)
        .native(packed);
    let urls = store(
        &served,
        &[
            inverted,
            bitmap,
            data("SC_rgb_jpeg_dcmtk.dcm"),
            data("SC_rgb_rle_2frame.dcm"),
            data("liver_1frame.dcm"),
        ],
    )
    .await;

    let (_, image) = image_of(&served, &format!("{}/rendered", urls[0]), Some("image/png")).await;
    let expected: Vec<u8> = values.iter().map(|v| 255 - v).collect();
    assert_close(image.to_luma8().as_raw(), &expected, 1, "MONOCHROME1");

    // 1-bit frames: each starts at its own first bit.
    for frame in 1..=3usize {
        let parts = frames(&served, &format!("{}/frames/{frame}", urls[1]), None).await;
        let mut expected = [0u8; 2];
        for (i, bit) in bits[(frame - 1) * 9..frame * 9].iter().enumerate() {
            if *bit {
                expected[i / 8] |= 1 << (i % 8);
            }
        }
        assert_eq!(parts[0].1[..], expected[..], "frame {frame}");
        let (_, image) = image_of(
            &served,
            &format!("{}/frames/{frame}/rendered", urls[1]),
            Some("image/png"),
        )
        .await;
        let pixels: Vec<u8> = bits[(frame - 1) * 9..frame * 9]
            .iter()
            .map(|&b| if b { 255 } else { 0 })
            .collect();
        assert_eq!(image.to_luma8().as_raw(), &pixels, "frame {frame} rendered");
    }
    // pydicom's 1-bit segmentation frame, byte for byte.
    let (liver, _) = pixel_data_of("liver_1frame.dcm");
    let parts = frames(&served, &format!("{}/frames/1", urls[4]), Some(OHIF_QUOTED)).await;
    assert!(parts[0].1[..] == liver[..512 * 512 / 8]);

    // Colour: the bands of pydicom's SC_rgb images (red, pink, green, …, white).
    let bands: [[u8; 3]; 10] = [
        [255, 0, 0],
        [255, 128, 128],
        [0, 255, 0],
        [128, 255, 128],
        [0, 0, 255],
        [128, 128, 255],
        [0, 0, 0],
        [64, 64, 64],
        [192, 192, 192],
        [255, 255, 255],
    ];
    for (url, tolerance) in [(&urls[2], 8), (&urls[3], 0)] {
        let (_, image) = image_of(&served, &format!("{url}/rendered"), Some("image/png")).await;
        let rgb = image.to_rgb8();
        assert_eq!(rgb.dimensions(), (100, 100));
        for (band, expected) in bands.iter().enumerate() {
            let pixel = rgb.get_pixel(0, band as u32 * 10 + 5).0;
            assert_close(&pixel, expected, tolerance, &format!("{url} band {band}"));
        }
    }
    // The second frame of the RLE image is the first inverted.
    let (_, image) = image_of(
        &served,
        &format!("{}/frames/2/rendered", urls[3]),
        Some("image/png"),
    )
    .await;
    assert_eq!(image.to_rgb8().get_pixel(0, 5).0, [0, 255, 255]);
    // Both frames in one animated GIF, or as multipart/related.
    let response = get(
        &served,
        &format!("{}/frames/1,2/rendered", urls[3]),
        Some("image/gif"),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "image/gif");
    let gif = response.bytes().await.expect("gif");
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(gif)).expect("gif");
    use image::AnimationDecoder;
    assert_eq!(decoder.into_frames().count(), 2);
    let response = get(
        &served,
        &format!("{}/frames/1,2/rendered", urls[3]),
        Some("multipart/related; type=\"image/png\""),
    )
    .await;
    let parts = parts_of(response).await;
    assert_eq!(parts.len(), 2);
    assert!(
        parts
            .iter()
            .all(|(content_type, _)| content_type.is("image", "png"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_and_rendered_series() {
    let served = Served::start(WebConfig::default()).await;
    let big: Vec<u8> = (0..300 * 200).map(|i| (i % 300) as u8).collect();
    let urls = store(
        &served,
        &[
            Made::new(20, 200, 300, 8, "MONOCHROME2").native(big.clone()),
            Made::new(21, 200, 300, 8, "MONOCHROME2").native(big),
            Made::new(22, 2, 4, 8, "MONOCHROME2").native(vec![9; 8]),
        ],
    )
    .await;
    // An instance thumbnail fits in 128 × 128; a small image is not enlarged.
    let (content_type, image) = image_of(&served, &format!("{}/thumbnail", urls[0]), None).await;
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(image.dimensions(), (128, 85));
    let (_, image) = image_of(&served, &format!("{}/thumbnail", urls[2]), None).await;
    assert_eq!(image.dimensions(), (4, 2));
    let (_, image) = image_of(
        &served,
        &format!("{}/thumbnail?viewport=60,60", urls[0]),
        Some("image/png"),
    )
    .await;
    assert_eq!(image.dimensions(), (60, 40));
    let (status, _) =
        status_and_text(&served, &format!("{}/thumbnail?quality=50", urls[0]), None).await;
    assert_eq!(status, 400);

    // Series and study thumbnails: one image of a representative instance.
    let series = served.url(&format!("/studies/{PIXEL_STUDY}/series/{PIXEL_SERIES}"));
    let (_, image) = image_of(&served, &format!("{series}/thumbnail"), None).await;
    assert!(image.width() <= 128 && image.height() <= 128);
    let study = served.url(&format!("/studies/{PIXEL_STUDY}"));
    let (content_type, _) =
        image_of(&served, &format!("{study}/thumbnail"), Some("image/png")).await;
    assert_eq!(content_type, "image/png");

    // The rendered series: one image per instance.
    let response = get(&served, &format!("{series}/rendered?viewport=50,50"), None).await;
    assert_eq!(response.status(), 200);
    let parts = parts_of(response).await;
    assert_eq!(parts.len(), 3);
    for (content_type, body) in &parts {
        assert!(content_type.is("image", "jpeg"));
        let image = image::load_from_memory(body).expect("jpeg");
        assert!(image.width() == 50 || image.height() == 50);
    }
    let (status, _) = status_and_text(
        &served,
        &served.url("/studies/1.2.3.4.5/series/1.2.3.4.5.6/rendered"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixel_data_that_disagrees_with_its_attributes_is_refused_and_the_server_goes_on() {
    let served = Served::start(WebConfig::default()).await;
    // 4 × 4 × 16 bits × 2 frames is 64 bytes; 40 are there.
    let short = Made::new(30, 4, 4, 16, "MONOCHROME2")
        .frames(2)
        .native(vec![1; 40]);
    // A billion frames of 4 × 4 claimed, 32 bytes there: nothing may be allocated for them.
    let huge = Made::new(31, 4, 4, 16, "MONOCHROME2")
        .frames(1_000_000_000)
        .native(vec![1; 32]);
    // The largest image Rows and Columns can say, 16 bytes there.
    let wide = Made::new(32, u16::MAX, u16::MAX, 16, "MONOCHROME2").native(vec![1; 16]);
    // Too long as well.
    let long = Made::new(33, 2, 2, 8, "MONOCHROME2").native(vec![1; 40]);
    let urls = store(&served, &[short, huge, wide, long, data("MR_small.dcm")]).await;
    for url in &urls[..4] {
        for resource in ["frames/1", "rendered", "frames/1/rendered", "thumbnail"] {
            let (status, text) = status_and_text(&served, &format!("{url}/{resource}"), None).await;
            assert_eq!(status, 422, "{url}/{resource}: {text}");
            assert!(text.contains("Pixel Data is"), "{text}");
        }
    }
    // The server is unharmed.
    let (mr, _) = pixel_data_of("MR_small.dcm");
    let parts = frames(&served, &format!("{}/frames/1", urls[4]), Some(OHIF_QUOTED)).await;
    assert!(parts[0].1[..] == mr[..]);
    // An instance without pixel data has no frames.
    let urls = store(
        &served,
        &[Made::new(34, 2, 2, 8, "MONOCHROME2").without_pixels()],
    )
    .await;
    let (status, text) = status_and_text(&served, &format!("{}/frames/1", urls[0]), None).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no Pixel Data"), "{text}");
}
