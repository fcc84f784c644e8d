//! `dimsum migrate` (issue 10): an archive of `dimsum serve` on its SQLite index, loaded with
//! DCMTK `storescu`, moves its index into PostgreSQL and then serves from there exactly what
//! it served before:
//!
//! * while the server runs, the migration is refused by the data folder's lock and the
//!   database is left untouched;
//! * once it is stopped, `dimsum migrate` copies the index (its summary counts every level)
//!   and marks the folder: neither `dimsum serve` without `--index` nor a second migration
//!   opens it on its old SQLite index; without the mark, a second migration into the same
//!   database is refused;
//! * `dimsum serve --index URL --data DIR` then checks the copy at its first start and answers
//!   DCMTK `findscu` at every level (computed keys included) with the same identifiers as the
//!   SQLite archive did, and DCMTK `getscu` retrieves every study whole, data sets equal to
//!   the files sent.
//!
//! The database is a fresh one on the test server (`DIMSUM_TEST_POSTGRES`); a missing peer
//! skips (prints `SKIP:`), or fails when `DIMSUM_REQUIRE_PEERS` is set.

mod support;

use std::path::Path;

use dimsum_net::dataset::dicom_core::Tag;
use dimsum_net::dataset::dicom_dictionary_std::tags;
use support::postgres::{fresh_database, psql};
use support::qr::{
    AeAddress, QrClient, QrDataSet, QrInstance, QrModel, STUDY_KEYS, assert_received_instances,
    dcmtk_find, retrieve_scratch_dir,
};
use support::serve::{DimsumServe, copy_into, store_folder};
use support::{Finished, RUN_TIMEOUT, dcmtk, dimsum, free_port, run};

/// A response as compared: its elements, as text.
type Identifier = Vec<(Tag, String)>;

/// `dimsum migrate --data <data> --to <url>`, run to its end.
fn migrate(dir: &Path, label: &str, data: &Path, url: &str) -> Finished {
    let mut command = dimsum();
    command
        .args(["migrate", "--data"])
        .arg(data)
        .args(["--to", url]);
    run(label, dir, command, RUN_TIMEOUT)
}

/// DCMTK `findscu` with `keys`: the identifiers (sorted), after checking that it ended with
/// Success.
#[track_caller]
fn find(
    dir: &Path,
    label: &str,
    address: &AeAddress,
    model: QrModel,
    keys: &[&str],
) -> Vec<Identifier> {
    let mut identifiers: Vec<Identifier> = dcmtk_find(dir, label, address, model, keys)
        .into_iter()
        .map(|identifier| identifier.elements.into_iter().collect())
        .collect();
    identifiers.sort();
    identifiers
}

/// What an archive answers: every patient (Patient Root), every study with its computed keys,
/// every series of each study, every instance of each series (Study Root); `label` names the
/// runs.
fn everything(dir: &Path, label: &str, address: &AeAddress) -> Vec<Vec<Identifier>> {
    let mut answers = vec![find(
        dir,
        &format!("{label}-patients"),
        address,
        QrModel::PatientRoot,
        &[
            "QueryRetrieveLevel=PATIENT",
            "PatientID",
            "PatientName",
            "PatientBirthDate",
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedSeries",
            "NumberOfPatientRelatedInstances",
        ],
    )];
    let mut study_keys = STUDY_KEYS.to_vec();
    study_keys.extend([
        "StudyDescription",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ]);
    let studies = find(
        dir,
        &format!("{label}-studies"),
        address,
        QrModel::StudyRoot,
        &study_keys,
    );
    let uid = |identifier: &Identifier, tag: Tag| -> String {
        identifier
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no {tag} in {identifier:?}"))
    };
    for (n, study) in studies.iter().enumerate() {
        let study_key = format!("StudyInstanceUID={}", uid(study, tags::STUDY_INSTANCE_UID));
        let series = find(
            dir,
            &format!("{label}-series-{n}"),
            address,
            QrModel::StudyRoot,
            &[
                "QueryRetrieveLevel=SERIES",
                &study_key,
                "SeriesInstanceUID",
                "Modality",
                "SeriesNumber",
                "NumberOfSeriesRelatedInstances",
            ],
        );
        for (m, one) in series.iter().enumerate() {
            let series_key = format!("SeriesInstanceUID={}", uid(one, tags::SERIES_INSTANCE_UID));
            answers.push(find(
                dir,
                &format!("{label}-images-{n}-{m}"),
                address,
                QrModel::StudyRoot,
                &[
                    "QueryRetrieveLevel=IMAGE",
                    &study_key,
                    &series_key,
                    "SOPInstanceUID",
                    "SOPClassUID",
                    "InstanceNumber",
                ],
            ));
        }
        answers.push(series);
    }
    answers.push(studies);
    answers
}

#[test]
fn a_migrated_archive_serves_dcmtk_the_same_from_postgresql() {
    let Some(url) = fresh_database("migrate") else {
        return;
    };
    let Some(dir) = retrieve_scratch_dir("migrate") else {
        return;
    };
    if dcmtk("storescu").is_none() {
        return;
    }
    let data_set = QrDataSet::get();
    let files = data_set.files();
    let data = dir.join("data");

    // The archive on SQLite, loaded by DCMTK storescu.
    let folder = dir.join("to-store");
    copy_into(&files, &folder);
    let server = DimsumServe::start(&dir, &data, &[]);
    if store_folder(
        &dir,
        "storescu",
        server.address(),
        &folder,
        files.len(),
        || server.describe(),
    )
    .is_none()
    {
        return;
    }
    let before = everything(&dir, "sqlite", server.address());
    let images: usize = before
        .iter()
        .filter(|answers| {
            answers
                .first()
                .is_some_and(|first| first.iter().any(|(tag, _)| *tag == tags::SOP_INSTANCE_UID))
        })
        .map(Vec::len)
        .sum();
    assert_eq!(images, files.len(), "every instance found at IMAGE level");

    // While it runs, the data folder is locked: nothing is copied.
    let refused = migrate(&dir, "migrate-while-serving", &data, &url);
    refused.assert_code(6);
    assert!(
        refused.stderr.contains("in use by another dimsum"),
        "{}",
        refused.describe()
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'instance'"
        ),
        "0",
        "the database was touched"
    );
    server.stop();

    // Stopped: the index goes over, and a second copy into the same database is refused.
    let migrated = migrate(&dir, "migrate", &data, &url);
    migrated.assert_code(0);
    let studies = data_set.studies().len();
    let series: usize = data_set
        .studies()
        .iter()
        .map(|item| item.study.series.len())
        .sum();
    let summary = format!(
        "Summary: {} patients, {studies} studies, {series} series, {} instances",
        data_set.patients.len(),
        files.len()
    );
    assert!(
        migrated.stderr.contains(&summary),
        "expected {summary:?}\n{}",
        migrated.describe()
    );
    assert_eq!(
        psql(&url, "SELECT count(*) FROM instance"),
        files.len().to_string()
    );
    // Migrated: the folder is no longer served from its old SQLite index.
    let mut stale = dimsum();
    stale
        .args(["serve", "--no-http", "--bind", "127.0.0.1", "--port"])
        .arg(free_port().to_string())
        .arg("--data")
        .arg(&data);
    let stale = run("serve-sqlite-after-migrate", &dir, stale, RUN_TIMEOUT);
    stale.assert_code(2);
    assert!(
        stale.stderr.contains("was migrated to") && stale.stderr.contains("give --index"),
        "{}",
        stale.describe()
    );
    // Nor migrated again from that index...
    let again = migrate(&dir, "migrate-again", &data, &url);
    again.assert_code(2);
    assert!(
        again.stderr.contains("was migrated to"),
        "{}",
        again.describe()
    );
    // ...and, the marker removed, the database holding an index refuses a second copy.
    std::fs::remove_file(data.join("index.sqlite.migrated")).expect("the migration's marker");
    let again = migrate(&dir, "migrate-again-unmarked", &data, &url);
    again.assert_code(6);
    assert!(
        again.stderr.contains("holds an index already"),
        "{}",
        again.describe()
    );
    assert_eq!(
        psql(&url, "SELECT count(*) FROM instance"),
        files.len().to_string()
    );

    // The node on PostgreSQL checks the copy once, then answers as the SQLite archive did.
    let mut node = DimsumServe::start(&dir, &data, &["--index", &url, "--node", "first"]);
    node.process()
        .wait_for_text("checking index and storage", RUN_TIMEOUT);
    let after = everything(&dir, "postgres", node.address());
    assert_eq!(after, before, "{}", node.describe());
    for (n, item) in data_set.studies().into_iter().enumerate() {
        let study_key = format!("StudyInstanceUID={}", item.study.study_instance_uid);
        let (got, received) = QrClient::Dcmtk
            .get(
                &dir,
                &format!("get-{n}"),
                node.address(),
                QrModel::StudyRoot,
                &["QueryRetrieveLevel=STUDY", &study_key],
                &[],
            )
            .expect("DCMTK getscu");
        let log = format!("{}\n{}", got.describe(), node.describe());
        got.assert_code(0);
        let expected: Vec<&QrInstance> = item.study.instances().collect();
        assert_received_instances(&dir, &expected, &received, &log);
    }
    node.stop();
}
