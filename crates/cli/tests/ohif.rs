//! OHIF Viewer end to end (issue 9): `dimsum serve --viewer` serves the pinned OHIF build at
//! `/viewer` over its own DICOMweb, and Debian's Chromium, driven by playwright-core
//! (`tests/viewer/ohif-e2e.mjs`), uses it as a person would:
//!
//! 1. a small CT study (three 64×64 16-bit slices, each a gradient) is stored with DCMTK
//!    `storescu`;
//! 2. the study list at `/viewer/` shows it: its patient name as OHIF writes it
//!    (`VIEWER, TEST`) and its study description;
//! 3. the study opens from the list (its row, then "Basic Viewer") and the viewport draws it: a
//!    screenshot's viewport region is not blank (the standard deviation of its luminance and
//!    its number of distinct levels, over the middle of the viewport) and rises from left to
//!    right as the stored gradient does;
//! 4. no request of the page failed (a status of 400 or more, or a network failure). Requests
//!    to another origin than the server's (the outside world, unreachable here) are aborted by
//!    the driver, listed, and not counted; OHIF 3.13 makes none.
//!
//! The screenshots, the driver's report and the server's log stay in
//! `target/tmp/interop/ohif/`. A missing piece (node, Chromium, the OHIF build, playwright-core,
//! DCMTK) skips the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS` is set.
//! Install them with `scripts/setup-viewer` (which `scripts/setup-peers` runs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use support::serve::{DimsumServe, store_folder};
use support::{EXPLICIT_VR_LE, find_on_path, peer_missing, repo_root, run, scratch_dir};

/// The UIDs of the study (pydicom's test root, a branch of ours beside the others' 7007-7009).
const ROOT: &str = "1.2.826.0.1.3680043.8.498.7010";
const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const SLICES: u16 = 3;
const SIZE: u16 = 64;
const PATIENT_NAME: &str = "VIEWER^TEST";
/// How OHIF's study list writes [`PATIENT_NAME`].
const PATIENT_NAME_SHOWN: &str = "VIEWER, TEST";
const STUDY_DESCRIPTION: &str = "DIMSUM VIEWER E2E";
/// The time each step of the driver may take, and the time the whole driver may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

fn study_uid() -> String {
    format!("{ROOT}.1")
}

/// What the test needs besides `dimsum`: node, Chromium, the OHIF build and the driver's
/// playwright-core. `None` (after `SKIP:`) when one is missing.
struct Viewer {
    node: PathBuf,
    chromium: PathBuf,
    /// The OHIF build relocated to /viewer/ (`DIMSUM_OHIF_DIR`, else `.viewer/ohif`).
    build: PathBuf,
    /// `tests/viewer`, with `node_modules/playwright-core`.
    driver: PathBuf,
}

impl Viewer {
    fn find() -> Option<Viewer> {
        let missing = |what: &str| peer_missing(&format!("{what} (scripts/setup-viewer)"));
        let Some(node) = find_on_path("node") else {
            return missing("node not found on PATH");
        };
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        if !chromium.is_file() {
            return missing(&format!("Chromium not found at {}", chromium.display()));
        }
        let build = std::env::var_os("DIMSUM_OHIF_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".viewer/ohif"));
        if !build.join("index.html").is_file() {
            return missing(&format!("no OHIF Viewer build at {}", build.display()));
        }
        let driver = repo_root().join("tests/viewer");
        if !driver
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            return missing(&format!(
                "playwright-core is not installed in {}",
                driver.display()
            ));
        }
        Some(Viewer {
            node,
            chromium,
            build,
            driver,
        })
    }
}

fn text(
    tag: dimsum_net::dataset::dicom_core::Tag,
    vr: VR,
    value: &str,
) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// Writes slice `number` (1-based) of the study into `folder`: a CT image of SIZE×SIZE
/// unsigned 16-bit pixels rising left to right and top to bottom (a gradient over the whole
/// window), at z = `number` mm.
fn write_slice(folder: &Path, number: u16) -> PathBuf {
    let sop_instance_uid = format!("{ROOT}.3.{number}");
    let pixels: Vec<u16> = (0..SIZE)
        .flat_map(|row| (0..SIZE).map(move |column| column * 64 + row * 16 + number * 100))
        .collect();
    let mut object = InMemDicomObject::new_empty();
    for element in [
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance_uid),
        text(tags::STUDY_DATE, VR::DA, "20240301"),
        text(tags::STUDY_TIME, VR::TM, "101500"),
        text(tags::ACCESSION_NUMBER, VR::SH, "ACC7010"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::STUDY_DESCRIPTION, VR::LO, STUDY_DESCRIPTION),
        text(tags::SERIES_DESCRIPTION, VR::LO, "GRADIENT"),
        text(tags::PATIENT_NAME, VR::PN, PATIENT_NAME),
        text(tags::PATIENT_ID, VR::LO, "OHIF-7010"),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        text(tags::PATIENT_SEX, VR::CS, "O"),
        text(tags::SLICE_THICKNESS, VR::DS, "1"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid()),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &format!("{ROOT}.2")),
        text(tags::STUDY_ID, VR::SH, "1"),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, &number.to_string()),
        text(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            &format!("0\\0\\{number}"),
        ),
        text(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
        text(tags::FRAME_OF_REFERENCE_UID, VR::UI, &format!("{ROOT}.4")),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16)),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(SIZE)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(SIZE)),
        text(tags::PIXEL_SPACING, VR::DS, "1\\1"),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(16_u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15_u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        text(tags::WINDOW_CENTER, VR::DS, "1000"),
        text(tags::WINDOW_WIDTH, VR::DS, "5000"),
        text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
        text(tags::RESCALE_SLOPE, VR::DS, "1"),
        text(tags::RESCALE_TYPE, VR::LO, "HU"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ] {
        object.put(element);
    }
    let file = object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_VR_LE))
        .unwrap_or_else(|error| panic!("file meta of {sop_instance_uid}: {error}"));
    let path = folder.join(format!("ct{number}.dcm"));
    file.write_to_file(&path)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    path
}

#[test]
fn ohif_viewer_lists_opens_and_draws_a_stored_study() {
    let Some(viewer) = Viewer::find() else {
        return;
    };
    let dir = scratch_dir("ohif");
    let folder = dir.join("study");
    std::fs::create_dir_all(&folder).expect("create the study folder");
    for number in 1..=SLICES {
        write_slice(&folder, number);
    }

    let build = viewer.build.to_string_lossy().into_owned();
    let server = DimsumServe::start(&dir, &dir.join("data"), &["--viewer", &build]);
    let Some(_) = store_folder(
        &dir,
        "storescu",
        server.address(),
        &folder,
        usize::from(SLICES),
        || server.describe(),
    ) else {
        return;
    };

    let out = dir.join("browser");
    let mut driver = Command::new(&viewer.node);
    driver
        .arg(viewer.driver.join("ohif-e2e.mjs"))
        .current_dir(&viewer.driver)
        .env("OHIF_ORIGIN", server.http_origin())
        .env("OHIF_STUDY_UID", study_uid())
        .env(
            "OHIF_EXPECT_TEXT",
            format!("{PATIENT_NAME_SHOWN}|{STUDY_DESCRIPTION}"),
        )
        .env("OHIF_OUT_DIR", &out)
        .env("OHIF_TIMEOUT_MS", STEP_TIMEOUT.as_millis().to_string())
        .env("CHROMIUM", &viewer.chromium);
    let finished = run("ohif-e2e", &dir, driver, DRIVER_TIMEOUT);
    let report: Value = serde_json::from_str(finished.stdout.trim()).unwrap_or_else(|error| {
        panic!(
            "the driver printed no JSON report ({error})\n{}\n{}",
            finished.describe(),
            server.describe()
        )
    });
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    let context = || {
        format!(
            "driver report (screenshots in {}):\n{pretty}\n{}\n{}",
            out.display(),
            finished.stderr,
            server.describe()
        )
    };

    if let Some(external) = report["externalRequests"].as_array()
        && !external.is_empty()
    {
        eprintln!(
            "requests to the outside world, aborted and not counted: {}",
            serde_json::to_string_pretty(external).unwrap_or_default()
        );
    }
    let failed = report["failedRequests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        failed.is_empty(),
        "{} requests of the viewer failed: {}\n{}",
        failed.len(),
        serde_json::to_string_pretty(&failed).unwrap_or_default(),
        context()
    );
    assert_eq!(
        report["failure"],
        Value::Null,
        "the viewer test failed\n{}",
        context()
    );
    assert_eq!(report["ok"], Value::Bool(true), "{}", context());
    assert_eq!(finished.code(), Some(0), "{}", context());
    // The driver's own checks, once more with its figures: the viewport is not blank and shows
    // the gradient, rising from left to right.
    let viewport = &report["viewport"];
    let figure = |name: &str| viewport[name].as_f64().unwrap_or_default();
    assert!(
        figure("stddev") > 10.0 && figure("levels") > 16.0,
        "the viewport is blank (stddev {}, {} levels)\n{}",
        figure("stddev"),
        figure("levels"),
        context()
    );
    assert!(
        figure("rightMean") - figure("leftMean") > 40.0 && figure("risingFraction") > 0.9,
        "the viewport does not show the gradient rising left to right\n{}",
        context()
    );
    assert!(
        report["requests"].as_u64().unwrap_or_default() > 0,
        "the driver saw no request\n{}",
        context()
    );
    server.stop();
}
