//! Fills an index with a synthetic archive, for the C-FIND benchmark of `scripts/bench archive`
//! (issues 8 and 10): no files are written, only index rows, so the index answers C-FIND at
//! every level but cannot serve C-GET or C-MOVE (the files the rows name do not exist).
//!
//! ```text
//! cargo run --release -p dimsum-pacs --example synthetic_index -- [--writer PRODUCERS] TARGET STUDIES [INSTANCES_PER_STUDY]
//! ```
//!
//! `TARGET` is either
//! - the data directory of a `dimsum serve` (the SQLite index): the rows go through the public
//!   [`Index::insert`] of its archive, the path a C-STORE takes once its file is complete. Run
//!   it on a data directory that no server holds (the archive's lock says so otherwise);
//!   `dimsum serve --data DATA_DIR` then serves it; or
//! - a `postgres://…` URL of an empty database (`createdb`): the same rows are made the same
//!   way into a temporary SQLite index, then copied in with `COPY`
//!   ([`dimsum_pacs::index::postgres::copy_from_sqlite`], what `dimsum migrate` does), so the
//!   database holds exactly the index a server would have built, derived keys included;
//!   `dimsum serve --index URL` then serves it. As with a data directory, the index is left
//!   marked checked (not as `dimsum migrate` leaves a copy), so that the server's first start
//!   does not check it against a storage that has none of its files.
//!
//! With `--writer PRODUCERS` nothing is bulk loaded: `PRODUCERS` tasks hand the instances
//! over to the index's writer ([`Index::hand_over`]) one at a time each, each waiting for its
//! commit as a store answered after its commit does, and the insert rate is printed — the
//! benchmark of the index writers (SQLite at `TARGET/index.sqlite`, or PostgreSQL).
//!
//! `STUDIES` studies (default 10 instances each, in 2 series), two studies per patient. The
//! values are chosen so that benchmark queries have known answers:
//! - Patient `k` (0-based) is named `SURNAMEsss^GIVENggg` with `sss = k % 1000` and
//!   `ggg = k / 1000`, ID `PIDkkkkkkkk`: `SURNAME042^*` matches `STUDIES / 1000` studies.
//! - Study `j` has accession number `ACCjjjjjjjj` (exact match: one study) and study date
//!   2015-01-01 + `j % 3650` days: one day holds `STUDIES / 3650` studies.
//!
//! It prints the load rate every 10,000 studies and at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_pacs::index::postgres::{CopyOptions, CopyProgress, copy_from_sqlite_with};
use dimsum_pacs::index::{
    FileLocation, Index, NewInstance, OnDuplicate, PostgresConfig, PostgresIndex, PreparedInstance,
    SqliteConfig, SqliteIndex,
};
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

/// What to load, where.
struct Load {
    target: String,
    studies: u64,
    per_study: u64,
    /// `--writer`: through the writer, by this many producers.
    producers: Option<u64>,
}

impl Load {
    fn total(&self) -> u64 {
        self.studies * self.per_study
    }

    fn is_postgres(&self) -> bool {
        self.target.starts_with("postgres://") || self.target.starts_with("postgresql://")
    }
}

fn arguments() -> Result<Load, String> {
    let mut arguments = std::env::args().skip(1).peekable();
    let mut producers = None;
    if arguments.peek().map(String::as_str) == Some("--writer") {
        arguments.next();
        producers = Some(parse(arguments.next(), "PRODUCERS", None)?.max(1));
    }
    let target = arguments.next().ok_or("missing TARGET")?;
    let studies = parse(arguments.next(), "STUDIES", None)?;
    let per_study = parse(arguments.next(), "INSTANCES_PER_STUDY", Some(10))?;
    if per_study == 0 {
        return Err("INSTANCES_PER_STUDY must be at least 1".into());
    }
    Ok(Load {
        target,
        studies,
        per_study,
        producers,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let usage = "usage: synthetic_index [--writer PRODUCERS] DATA_DIR|postgres://… STUDIES \
                 [INSTANCES_PER_STUDY (10)]";
    let load = match arguments() {
        Ok(load) => load,
        Err(error) => {
            eprintln!("synthetic_index: {error}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let loaded = match (load.producers, load.is_postgres()) {
        (Some(producers), _) => through_writer(&load, producers).await,
        (None, true) => into_postgres(&load).await,
        (None, false) => into_archive(&load).await,
    };
    match loaded {
        Ok(()) => {
            let (total, seconds) = (load.total(), started.elapsed().as_secs_f64());
            println!(
                "synthetic_index: {} studies, {total} instances in {seconds:.1} s ({:.0} instances/s)",
                load.studies,
                total as f64 / seconds
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("synthetic_index: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Every instance of the load, in order.
fn instances(load: &Load) -> impl Iterator<Item = NewInstance> + use<> {
    let per_study = load.per_study;
    (0..load.studies).flat_map(move |study| (0..per_study).map(move |n| instance(study, n)))
}

/// Prints the rate every 10,000 studies.
fn report_every(load: &Load, done: u64, started: Instant) {
    if done.is_multiple_of(10_000 * load.per_study) {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "synthetic_index: {} studies, {done} instances in {seconds:.1} s ({:.0} instances/s)",
            done / load.per_study,
            done as f64 / seconds
        );
    }
}

/// Inserts every instance of the load into `index`, many in flight.
async fn insert_all(index: Arc<dyn Index>, load: &Load) -> Result<(), String> {
    let started = Instant::now();
    let mut inserts = stream::iter(instances(load))
        .map(|new| {
            let index = index.clone();
            async move { index.insert(new, OnDuplicate::Keep).await }
        })
        .buffered(IN_FLIGHT);
    let mut done = 0u64;
    while let Some(inserted) = inserts.next().await {
        inserted.map_err(|error| format!("inserting instance {done}: {error}"))?;
        done += 1;
        report_every(load, done, started);
    }
    Ok(())
}

/// Into the SQLite index of a data directory, through its archive.
async fn into_archive(load: &Load) -> Result<(), String> {
    let archive = Archive::open(ArchiveConfig::new(&load.target))
        .await
        .map_err(|error| format!("opening {}: {error}", load.target))?;
    insert_all(archive.index().clone(), load).await?;
    archive
        .close()
        .await
        .map_err(|error| format!("closing the index: {error}"))
}

/// Into a temporary SQLite index, then copied into the PostgreSQL database.
async fn into_postgres(load: &Load) -> Result<(), String> {
    let folder = tempfile::tempdir().map_err(|error| format!("a temporary folder: {error}"))?;
    let path = folder.path().join("index.sqlite");
    let index = SqliteIndex::open(SqliteConfig::new(&path))
        .await
        .map_err(|error| format!("opening {}: {error}", path.display()))?;
    insert_all(Arc::new(index.clone()), load).await?;
    index
        .close()
        .await
        .map_err(|error| format!("closing the index: {error}"))?;
    let started = Instant::now();
    let mut last = Instant::now();
    // Checked: its rows name no files, on purpose (see the module documentation).
    let options = CopyOptions {
        check_on_first_start: false,
    };
    let report = copy_from_sqlite_with(&path, &load.target, options, |progress: CopyProgress| {
        if last.elapsed().as_secs() >= 5 {
            last = Instant::now();
            eprintln!(
                "synthetic_index: copying {}: {}/{} rows",
                progress.table, progress.copied, progress.total
            );
        }
    })
    .await
    .map_err(|error| format!("copying into {}: {error}", load.target))?;
    eprintln!(
        "synthetic_index: copied {} rows ({} instances) in {:.1} s",
        report.total_rows(),
        report.rows("instance"),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Through the index's writer, `producers` tasks each handing over one instance at a time
/// and waiting for its commit.
async fn through_writer(load: &Load, producers: u64) -> Result<(), String> {
    let index: Arc<dyn Index> = if load.is_postgres() {
        let config = PostgresConfig::new(&load.target, "synthetic");
        Arc::new(
            PostgresIndex::open(config)
                .await
                .map_err(|error| format!("opening {}: {error}", load.target))?,
        )
    } else {
        let config = SqliteConfig::new(std::path::Path::new(&load.target).join("index.sqlite"));
        Arc::new(
            SqliteIndex::open(config)
                .await
                .map_err(|error| format!("opening {}: {error}", load.target))?,
        )
    };
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..producers)
        .map(|producer| {
            let (index, done) = (index.clone(), done.clone());
            let mine: Vec<NewInstance> = instances(load)
                .skip(producer as usize)
                .step_by(producers as usize)
                .collect();
            let load = Load {
                target: String::new(),
                producers: None,
                ..*load
            };
            tokio::spawn(async move {
                for new in mine {
                    let prepared = tokio::task::spawn_blocking(move || PreparedInstance::new(new))
                        .await
                        .map_err(|error| error.to_string())?
                        .map_err(|error| error.to_string())?;
                    index
                        .hand_over(prepared, OnDuplicate::Keep)
                        .await
                        .map_err(|error| format!("inserting: {error}"))?;
                    report_every(&load, done.fetch_add(1, Ordering::Relaxed) + 1, started);
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|error| error.to_string())??;
    }
    index
        .close()
        .await
        .map_err(|error| format!("closing the index: {error}"))
}
