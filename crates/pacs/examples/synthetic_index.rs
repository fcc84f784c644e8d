//! Fills the index of a `dimsum serve` data directory with a synthetic archive, for the C-FIND
//! benchmark of `scripts/bench archive` (issue 8): no files are written, only index rows
//! through the public [`Index::insert`] (the same path a C-STORE takes once its file is
//! complete), so the data directory answers C-FIND at every level but cannot serve C-GET or
//! C-MOVE (the files the rows name do not exist).
//!
//! ```text
//! cargo run --release -p dimsum-pacs --example synthetic_index -- DATA_DIR STUDIES [INSTANCES_PER_STUDY]
//! ```
//!
//! `STUDIES` studies (default 10 instances each, in 2 series), two studies per patient. The
//! values are chosen so that benchmark queries have known answers:
//! - Patient `k` (0-based) is named `SURNAMEsss^GIVENggg` with `sss = k % 1000` and
//!   `ggg = k / 1000`, ID `PIDkkkkkkkk`: `SURNAME042^*` matches `STUDIES / 1000` studies.
//! - Study `j` has accession number `ACCjjjjjjjj` (exact match: one study) and study date
//!   2015-01-01 + `j % 3650` days: one day holds `STUDIES / 3650` studies.
//!
//! It prints the load rate every 10,000 studies and at the end. Run it on a data directory
//! that no server holds (the archive's lock says so otherwise); `dimsum serve --data DATA_DIR`
//! then serves it.

use std::process::ExitCode;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_pacs::index::{FileLocation, NewInstance, OnDuplicate};
use dimsum_pacs::{Archive, ArchiveConfig};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT: &str = "1.2.840.10008.1.2.1";
/// The UID root of the synthetic instances (a private-looking root under 2.25 would be long).
const ROOT: &str = "1.2.826.0.1.3680043.10.1000";
/// Inserts in flight: enough for the index writer to fill its batches.
const IN_FLIGHT: usize = 2048;
const DAYS: u64 = 3650;
const SERIES_PER_STUDY: u64 = 2;

fn element(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// The proleptic Gregorian date `days` after 2015-01-01, as a DA value.
fn date(days: u64) -> String {
    let (mut year, mut left) = (2015u64, days);
    loop {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let length = if leap { 366 } else { 365 };
        if left < length {
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut month = 1;
            for days_in in months {
                if left < days_in {
                    break;
                }
                left -= days_in;
                month += 1;
            }
            return format!("{year:04}{month:02}{:02}", left + 1);
        }
        left -= length;
        year += 1;
    }
}

fn instance(study: u64, number: u64) -> NewInstance {
    let patient = study / 2;
    let series = number % SERIES_PER_STUDY;
    let study_uid = format!("{ROOT}.{study}");
    let series_uid = format!("{study_uid}.{series}");
    let sop_uid = format!("{series_uid}.{number}");
    let name = format!("SURNAME{:03}^GIVEN{:03}", patient % 1000, patient / 1000);
    let attributes = InMemDicomObject::from_element_iter([
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        element(tags::SOP_CLASS_UID, VR::UI, CT),
        element(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        element(tags::STUDY_DATE, VR::DA, &date(study % DAYS)),
        element(
            tags::STUDY_TIME,
            VR::TM,
            &format!("{:02}{:02}00", study % 24, study % 60),
        ),
        element(tags::ACCESSION_NUMBER, VR::SH, &format!("ACC{study:08}")),
        element(
            tags::MODALITY,
            VR::CS,
            if series == 0 { "CT" } else { "SR" },
        ),
        element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "REFERRER^SYNTHETIC"),
        element(tags::STUDY_DESCRIPTION, VR::LO, "SYNTHETIC CT CHEST"),
        element(tags::SERIES_DESCRIPTION, VR::LO, "SYNTHETIC SERIES"),
        element(tags::PATIENT_NAME, VR::PN, &name),
        element(tags::PATIENT_ID, VR::LO, &format!("PID{patient:08}")),
        element(tags::PATIENT_BIRTH_DATE, VR::DA, &date(patient % DAYS)),
        element(
            tags::PATIENT_SEX,
            VR::CS,
            if patient.is_multiple_of(2) { "F" } else { "M" },
        ),
        element(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid),
        element(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid),
        element(tags::STUDY_ID, VR::SH, &format!("{}", study % 100_000)),
        element(tags::SERIES_NUMBER, VR::IS, &format!("{}", series + 1)),
        element(tags::INSTANCE_NUMBER, VR::IS, &format!("{}", number + 1)),
        element(tags::ROWS, VR::US, "512"),
        element(tags::COLUMNS, VR::US, "512"),
    ]);
    NewInstance {
        sop_class_uid: CT.into(),
        sop_instance_uid: sop_uid.clone(),
        transfer_syntax_uid: EXPLICIT.into(),
        location: FileLocation {
            path: format!("synthetic/{study_uid}/{series_uid}/{sop_uid}.dcm").into(),
            data_set_offset: 132,
            data_set_length: 524_288,
            file_size: 524_420,
            modified_ns: 1,
        },
        attributes,
    }
}

fn parse(argument: Option<String>, name: &str, default: Option<u64>) -> Result<u64, String> {
    match argument {
        Some(text) => text
            .parse()
            .map_err(|_| format!("{name} must be a number, not {text:?}")),
        None => default.ok_or_else(|| format!("missing {name}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut arguments = std::env::args().skip(1);
    let usage = "usage: synthetic_index DATA_DIR STUDIES [INSTANCES_PER_STUDY (10)]";
    let Some(data_dir) = arguments.next() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let (studies, per_study) = match (
        parse(arguments.next(), "STUDIES", None),
        parse(arguments.next(), "INSTANCES_PER_STUDY", Some(10)),
    ) {
        (Ok(studies), Ok(per_study)) if per_study > 0 => (studies, per_study),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("synthetic_index: {error}\n{usage}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("synthetic_index: INSTANCES_PER_STUDY must be at least 1\n{usage}");
            return ExitCode::from(2);
        }
    };
    match load(&data_dir, studies, per_study).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("synthetic_index: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn load(data_dir: &str, studies: u64, per_study: u64) -> Result<(), String> {
    let archive = Archive::open(ArchiveConfig::new(data_dir))
        .await
        .map_err(|error| format!("opening {data_dir}: {error}"))?;
    let index = archive.index().clone();
    let started = Instant::now();
    let total = studies * per_study;
    let mut inserts = stream::iter(
        (0..studies).flat_map(|study| (0..per_study).map(move |number| instance(study, number))),
    )
    .map(|new| {
        let index = index.clone();
        async move { index.insert(new, OnDuplicate::Keep).await }
    })
    .buffered(IN_FLIGHT);
    let mut done = 0u64;
    while let Some(inserted) = inserts.next().await {
        inserted.map_err(|error| format!("inserting instance {done}: {error}"))?;
        done += 1;
        if done.is_multiple_of(10_000 * per_study) {
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "synthetic_index: {} studies, {done} instances in {seconds:.1} s ({:.0} instances/s)",
                done / per_study,
                done as f64 / seconds
            );
        }
    }
    drop(inserts);
    archive
        .close()
        .await
        .map_err(|error| format!("closing the index: {error}"))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "synthetic_index: {studies} studies, {total} instances in {seconds:.1} s ({:.0} instances/s)",
        total as f64 / seconds
    );
    Ok(())
}
