//! `dimsum delete` over the data folder of `dimsum serve`: instances stored with `dimsum
//! storescu`, refused while the server runs (the archive's lock), listed with `--dry-run`,
//! deleted by series and by patient once it stopped; after a restart `dimsum findscu` finds
//! what is left with its derived counts, and the files of what was deleted are gone.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use support::serve::{DimsumServe, InstanceSpec, stored_sop_instance_uids, write_instance};
use support::{Finished, RUN_TIMEOUT, dimsum, run, scratch_dir};

const ROOT: &str = "1.2.826.0.1.3680043.8.498.7009";
/// Patient P1's study: series 1 (2 instances, the one deleted) and series 2 (3 instances).
const STUDY: &str = "1.2.826.0.1.3680043.8.498.7009.1";
const SERIES_DELETED: &str = "1.2.826.0.1.3680043.8.498.7009.1.1";
const SERIES_KEPT: &str = "1.2.826.0.1.3680043.8.498.7009.1.2";
/// Patient P2's study: one series of one instance.
const OTHER_STUDY: &str = "1.2.826.0.1.3680043.8.498.7009.2";

fn spec(patient: &str, study: &str, series: &str, number: u32) -> InstanceSpec {
    InstanceSpec {
        patient_name: format!("DELETE^{patient}"),
        patient_id: patient.to_owned(),
        study_instance_uid: study.to_owned(),
        study_date: "20240102".to_owned(),
        accession_number: "ACC1".to_owned(),
        series_instance_uid: series.to_owned(),
        series_number: series
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        sop_instance_uid: format!("{series}.{number}"),
        instance_number: number,
        rows: 4,
        columns: 4,
        pixel_seed: u64::from(number),
    }
}

/// Writes the five instances into `folder`; their SOP Instance UIDs by series.
fn write_instances(folder: &Path) -> [BTreeSet<String>; 3] {
    std::fs::create_dir_all(folder).expect("create the folder");
    let specs = [
        spec("P1", STUDY, SERIES_DELETED, 1),
        spec("P1", STUDY, SERIES_DELETED, 2),
        spec("P1", STUDY, SERIES_KEPT, 1),
        spec("P1", STUDY, SERIES_KEPT, 2),
        spec("P1", STUDY, SERIES_KEPT, 3),
        spec("P2", OTHER_STUDY, &format!("{OTHER_STUDY}.1"), 1),
    ];
    let mut by_series: [BTreeSet<String>; 3] = Default::default();
    for spec in &specs {
        write_instance(spec, &folder.join(format!("{}.dcm", spec.sop_instance_uid)));
        let index = match spec.series_instance_uid.as_str() {
            SERIES_DELETED => 0,
            SERIES_KEPT => 1,
            _ => 2,
        };
        by_series[index].insert(spec.sop_instance_uid.clone());
    }
    assert!(by_series[0].iter().all(|uid| uid.starts_with(ROOT)));
    by_series
}

/// Runs `dimsum delete --data <data> <args>`.
fn delete(dir: &Path, data: &Path, args: &[&str]) -> Finished {
    let mut command = dimsum();
    command.args(["delete", "--data"]).arg(data).args(args);
    run("dimsum-delete", dir, command, RUN_TIMEOUT)
}

/// Sends `folder` to `server` with `dimsum storescu`.
fn store(dir: &Path, server: &DimsumServe, folder: &Path) {
    let address = server.address();
    let mut command = dimsum();
    command
        .args(["storescu", "--no-progress", "-aec", &address.ae_title])
        .args([address.host.as_str(), &address.port.to_string()])
        .arg(folder);
    run("dimsum-storescu", dir, command, RUN_TIMEOUT).assert_code(0);
}

/// `dimsum findscu --json -S` at `level` with `keys`: the matches, as DICOM JSON objects.
fn find(dir: &Path, server: &DimsumServe, level: &str, keys: &[&str]) -> Vec<Value> {
    find_in(dir, server, "-S", level, keys)
}

/// [`find`] on the information model of `model` (`-P` Patient Root, `-S` Study Root).
fn find_in(
    dir: &Path,
    server: &DimsumServe,
    model: &str,
    level: &str,
    keys: &[&str],
) -> Vec<Value> {
    let address = server.address();
    let mut command = dimsum();
    command
        .args(["findscu", "--json", model, "-aec", &address.ae_title])
        .args(["-k", &format!("QueryRetrieveLevel={level}")]);
    for key in keys {
        command.args(["-k", key]);
    }
    command.args([address.host.as_str(), &address.port.to_string()]);
    let finished = run("dimsum-findscu", dir, command, RUN_TIMEOUT);
    finished.assert_code(0);
    match finished.json() {
        Value::Array(matches) => matches,
        other => panic!("findscu --json printed {other}"),
    }
}

/// The first value of `tag` (e.g. "0020000D") in a DICOM JSON object, as text.
fn value(object: &Value, tag: &str) -> String {
    match &object[tag]["Value"][0] {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => panic!("no value for {tag} in {object}: {other}"),
    }
}

fn values(matches: &[Value], tag: &str) -> BTreeSet<String> {
    matches.iter().map(|object| value(object, tag)).collect()
}

#[test]
fn a_deleted_series_and_patient_are_gone_from_storage_index_and_counts() {
    let dir = scratch_dir("delete");
    let data = dir.join("data");
    let [deleted, kept, other] = write_instances(&dir.join("in"));
    let everything: BTreeSet<String> = deleted.iter().chain(&kept).chain(&other).cloned().collect();

    let server = DimsumServe::start(&dir, &data, &[]);
    store(&dir, &server, &dir.join("in"));
    assert_eq!(stored_sop_instance_uids(&data), everything);

    // While the server holds the folder, nothing is touched.
    let refused = delete(&dir, &data, &["--series", SERIES_DELETED]);
    refused.assert_code(6);
    assert!(
        refused.stderr.contains("in use") && refused.stderr.contains("lock"),
        "{}",
        refused.describe()
    );
    assert_eq!(stored_sop_instance_uids(&data), everything);
    server.stop();

    // A dry run lists the instances and their files, and deletes nothing.
    let dry = delete(&dir, &data, &["--series", SERIES_DELETED, "--dry-run"]);
    dry.assert_code(0);
    assert!(
        dry.stdout.contains(&format!(
            "would delete series {SERIES_DELETED}: 2 instances"
        )),
        "{}",
        dry.describe()
    );
    for uid in &deleted {
        assert!(dry.stdout.contains(uid.as_str()), "{}", dry.describe());
    }
    assert!(!dry.stdout.contains(SERIES_KEPT), "{}", dry.describe());
    assert_eq!(stored_sop_instance_uids(&data), everything);

    // A target that is not there: nothing at all is deleted.
    let missing = delete(
        &dir,
        &data,
        &["--series", SERIES_DELETED, "--study", "1.2.3.404"],
    );
    missing.assert_code(1);
    assert!(
        missing.stderr.contains("study 1.2.3.404")
            && missing.stderr.contains("nothing was deleted"),
        "{}",
        missing.describe()
    );
    assert_eq!(stored_sop_instance_uids(&data), everything);

    let done = delete(
        &dir,
        &data,
        &["--series", SERIES_DELETED, "--patient", "P2"],
    );
    done.assert_code(0);
    assert!(
        done.stdout.contains(&format!(
            "deleted series {SERIES_DELETED}: 2 instances, 2 files"
        )) && done
            .stdout
            .contains("deleted patient P2: 1 instances, 1 files"),
        "{}",
        done.describe()
    );
    assert_eq!(stored_sop_instance_uids(&data), kept);

    // After a restart the index agrees with the files, derived counts included.
    let server = DimsumServe::start(&dir, &data, &[]);
    let studies = find(
        &dir,
        &server,
        "STUDY",
        &[
            "StudyInstanceUID=",
            "PatientID=",
            "NumberOfStudyRelatedSeries=",
            "NumberOfStudyRelatedInstances=",
        ],
    );
    assert_eq!(studies.len(), 1, "{studies:?}");
    assert_eq!(value(&studies[0], "0020000D"), STUDY);
    assert_eq!(value(&studies[0], "00201206"), "1", "{studies:?}");
    assert_eq!(value(&studies[0], "00201208"), "3", "{studies:?}");
    let series = find(
        &dir,
        &server,
        "SERIES",
        &[
            &format!("StudyInstanceUID={STUDY}"),
            "SeriesInstanceUID=",
            "NumberOfSeriesRelatedInstances=",
        ],
    );
    assert_eq!(
        values(&series, "0020000E"),
        BTreeSet::from([SERIES_KEPT.to_owned()])
    );
    assert_eq!(value(&series[0], "00201209"), "3", "{series:?}");
    let images = find(
        &dir,
        &server,
        "IMAGE",
        &[&format!("StudyInstanceUID={STUDY}"), "SOPInstanceUID="],
    );
    assert_eq!(values(&images, "00080018"), kept);
    let studies_of_p2 = find(
        &dir,
        &server,
        "STUDY",
        &["PatientID=P2", "StudyInstanceUID="],
    );
    assert!(studies_of_p2.is_empty(), "{studies_of_p2:?}");
    // The patient left without a study went too; P1's counts are what is left.
    let patients = find_in(
        &dir,
        &server,
        "-P",
        "PATIENT",
        &[
            "PatientID=",
            "NumberOfPatientRelatedStudies=",
            "NumberOfPatientRelatedInstances=",
        ],
    );
    assert_eq!(
        values(&patients, "00100020"),
        BTreeSet::from(["P1".to_owned()])
    );
    assert_eq!(value(&patients[0], "00201200"), "1", "{patients:?}");
    assert_eq!(value(&patients[0], "00201204"), "3", "{patients:?}");
    server.stop();
}
