//! Relational C-FIND and combined date-time matching (PS3.4 C.4.1.3.2, C.2.2.2.5.2) negotiated
//! with C-FIND extended negotiation (PS3.4 C.5.1.1) against a running `dimsum serve`, from peers
//! we did not write and from our own `findscu`.
//!
//! The archive holds one patient with two studies: a CT study on 2024-01-01 at 23:00 and an MR
//! study on 2024-01-03 at 10:00, two instances each, loaded with DCMTK `storescu`.
//!
//! - pynetdicom (tests/peers/pynetdicom_relational_findscu.py) proposes relational queries: a
//!   STUDY query with `Modality=CT` finds the CT study alone, an IMAGE query with only the
//!   patient's name finds the four instances; without the proposal the same STUDY query is
//!   hierarchical (0xFF01, both studies).
//! - Combined date-time: `StudyDate=20240101-20240103` with `StudyTime=080000-120000` is, when
//!   negotiated, 2024-01-01 08:00 to 2024-01-03 12:00 (both studies), otherwise three days
//!   between 08:00 and 12:00 (the MR study alone); with `StudyTime=000000-090000` the combined
//!   range ends before the MR study although its date is inside the date range (the CT study
//!   alone), while the separate ranges match nothing.
//! - `dimsum findscu --relational` / `--combined-datetime` get the same answers and report the
//!   option accepted; against `dimsum serve --no-relational --no-combined-datetime --no-fuzzy-names` they report
//!   it not accepted and get hierarchical answers.
//! - Fuzzy semantic person name matching (byte 3), proposed by pynetdicom: `patient rel` finds
//!   `Relational^Patient` (each word begins a word of the name, any order, any case); without
//!   the proposal, or against `dimsum serve --no-fuzzy-names`, it finds nothing.
//! - DCMTK `findscu`, which proposes no extended negotiation, gets hierarchical answers.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dimsum_net::dataset::dicom_core::{Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use support::qr::{
    AeAddress, DimsumFindRun, FindOutput, FindRun, QrClient, QrModel, SecondaryCaptureIdentity,
    dimsum_findscu, text_element,
};
use support::serve::{DimsumServe, SERVE_UID_ROOT, store_folder};
use support::{EXPLICIT_VR_LE, Finished, RUN_TIMEOUT, pynetdicom, run, scratch_dir};

const PATIENT_NAME: &str = "Relational^Patient";
const PATIENT_ID: &str = "REL-1";

/// One study of the test patient.
struct Study {
    uid: String,
    modality: &'static str,
    date: &'static str,
    time: &'static str,
    instances: Vec<String>,
}

/// The two studies: CT on 2024-01-01 at 23:00, MR on 2024-01-03 at 10:00.
fn studies() -> [Study; 2] {
    let study = |number: u32, modality, date, time| Study {
        uid: format!("{SERVE_UID_ROOT}.9.{number}"),
        modality,
        date,
        time,
        instances: (1..=2)
            .map(|instance| format!("{SERVE_UID_ROOT}.9.{number}.1.{instance}"))
            .collect(),
    };
    [
        study(1, "CT", "20240101", "230000"),
        study(2, "MR", "20240103", "100000"),
    ]
}

fn ct() -> Study {
    let [ct, _] = studies();
    ct
}

fn mr() -> Study {
    let [_, mr] = studies();
    mr
}

/// Writes the instances of both studies into `folder` (Secondary Capture objects whose
/// Modality, Study Date and Study Time are the study's).
fn write_studies(folder: &Path) {
    std::fs::create_dir_all(folder).expect("create the instance folder");
    for study in studies() {
        let series_uid = format!("{}.1", study.uid);
        let identity = SecondaryCaptureIdentity {
            patient_name: PATIENT_NAME,
            patient_id: PATIENT_ID,
            patient_birth_date: "19700101",
            study_instance_uid: &study.uid,
            study_date: study.date,
            study_id: study.modality,
            accession_number: study.modality,
            series_instance_uid: &series_uid,
            series_number: 1,
        };
        for (index, sop_instance_uid) in study.instances.iter().enumerate() {
            let mut object = InMemDicomObject::new_empty();
            for element in identity.elements(2, 2, vec![0, 64, 128, 255]) {
                object.put(element);
            }
            object.put(text_element(tags::MODALITY, VR::CS, study.modality));
            object.put(text_element(tags::STUDY_TIME, VR::TM, study.time));
            object.put(text_element(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                sop_instance_uid,
            ));
            object.put(text_element(
                tags::INSTANCE_NUMBER,
                VR::IS,
                &(index + 1).to_string(),
            ));
            let path = folder.join(format!("{}_{}.dcm", study.modality, index + 1));
            object
                .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_VR_LE))
                .unwrap_or_else(|error| panic!("file meta of {sop_instance_uid}: {error}"))
                .write_to_file(&path)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        }
    }
}

/// The scratch folder `label` and `dimsum serve <args>` on `<dir>/data`, loaded with both
/// studies by DCMTK `storescu`. `None` (after `SKIP:`) when DCMTK is missing.
fn loaded_archive(label: &str, args: &[&str]) -> Option<(PathBuf, DimsumServe)> {
    let dir = scratch_dir(label);
    let instances = dir.join("instances");
    write_studies(&instances);
    let server = DimsumServe::start(&dir, &dir.join("data"), args);
    store_folder(&dir, "load", server.address(), &instances, 4, || {
        server.describe()
    })?;
    Some((dir, server))
}

/// What the pynetdicom SCU reported: the extended negotiation it proposed and the answer it
/// read (hex, as pynetdicom holds the bytes), every status, and the matches by keyword.
struct PyFind {
    finished: Finished,
    accepted: Option<String>,
    statuses: Vec<u64>,
    matches: Vec<BTreeMap<String, String>>,
}

impl PyFind {
    /// The values of `keyword` in the matches.
    fn values(&self, keyword: &str) -> BTreeSet<String> {
        self.matches
            .iter()
            .map(|found| {
                found.get(keyword).cloned().unwrap_or_else(|| {
                    panic!(
                        "a match without {keyword}: {found:?}\n{}",
                        self.finished.describe()
                    )
                })
            })
            .collect()
    }

    /// Asserts that every response before the last was `pending` and the last Success.
    #[track_caller]
    fn assert_statuses(&self, pending: u64) {
        let (last, before) = self
            .statuses
            .split_last()
            .unwrap_or_else(|| panic!("no response\n{}", self.finished.describe()));
        assert!(
            *last == 0 && before.iter().all(|status| *status == pending),
            "statuses {:x?}, expected {pending:#06x}... then 0\n{}",
            self.statuses,
            self.finished.describe()
        );
        assert_eq!(before.len(), self.matches.len());
    }
}

/// Runs the pynetdicom Study Root C-FIND SCU at `level` with `keys` (`Keyword=Value`) and
/// `options` (`--relational`, `--combined-datetime`) against `address`; asserts that it
/// associated and the query ended with Success. `None` (after `SKIP:`) without pynetdicom.
fn pynetdicom_find(
    dir: &Path,
    label: &str,
    address: &AeAddress,
    level: &str,
    keys: &[&str],
    options: &[&str],
) -> Option<PyFind> {
    let mut command = pynetdicom("pynetdicom_relational_findscu.py")?;
    command
        .arg(&address.host)
        .arg(address.port.to_string())
        .args(["--called", &address.ae_title, "--level", level])
        .args(options);
    for key in keys {
        command.arg("-k").arg(key);
    }
    let finished = run(&format!("pynetdicom-{label}"), dir, command, RUN_TIMEOUT);
    let report: serde_json::Value = serde_json::from_str(finished.stdout.trim())
        .unwrap_or_else(|error| panic!("no JSON report ({error})\n{}", finished.describe()));
    assert!(
        finished.code() == Some(0) && report["established"] == true,
        "the query did not end with Success\n{}",
        finished.describe()
    );
    let accepted = report["accepted"].as_str().map(str::to_owned);
    let statuses = report["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|status| status.as_u64().expect("a status number"))
        .collect();
    let matches = report["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|found| {
            found
                .as_object()
                .expect("a match object")
                .iter()
                .map(|(keyword, value)| {
                    (
                        keyword.clone(),
                        value.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .collect();
    Some(PyFind {
        finished,
        accepted,
        statuses,
        matches,
    })
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn all_instances() -> BTreeSet<String> {
    studies()
        .into_iter()
        .flat_map(|study| study.instances)
        .collect()
}

/// The Study Instance UIDs of both studies.
fn both_studies() -> BTreeSet<String> {
    set(&[&ct().uid, &mr().uid])
}

/// The `findscu` query for the studies having a CT series (relational) or whose own Modality
/// is CT (hierarchical: not matched at STUDY level).
const STUDIES_BY_MODALITY: [&str; 3] = [
    "QueryRetrieveLevel=STUDY",
    "Modality=CT",
    "StudyInstanceUID",
];
/// The same STUDY query in pynetdicom's keys (`Keyword=Value`), asking for the study's date
/// and patient's name too.
const PYNETDICOM_STUDIES_BY_MODALITY: [&str; 4] = [
    "Modality=CT",
    "StudyInstanceUID=",
    "StudyDate=",
    "PatientName=",
];

/// The date-time query whose combined range holds both studies and whose separate ranges hold
/// the MR study alone.
const WIDE_RANGE: [&str; 2] = ["StudyDate=20240101-20240103", "StudyTime=080000-120000"];
/// The date-time query whose combined range holds the CT study alone (it ends at 09:00 on the MR
/// study's day) and whose separate ranges hold nothing.
const EARLY_END: [&str; 2] = ["StudyDate=20240101-20240103", "StudyTime=000000-090000"];

/// The `findscu` STUDY query for the Study Instance UIDs in [`WIDE_RANGE`].
fn wide_range_study_keys() -> Vec<&'static str> {
    let mut keys = vec!["QueryRetrieveLevel=STUDY", "StudyInstanceUID"];
    keys.extend(WIDE_RANGE);
    keys
}

#[test]
fn pynetdicom_relational_queries() {
    let Some((dir, server)) = loaded_archive("relational-pynetdicom", &[]) else {
        return;
    };
    let address = server.address();

    let Some(relational) = pynetdicom_find(
        &dir,
        "study-modality-relational",
        address,
        "STUDY",
        &PYNETDICOM_STUDIES_BY_MODALITY,
        &["--relational"],
    ) else {
        return;
    };
    assert_eq!(
        relational.accepted.as_deref(),
        Some("01"),
        "relational queries proposed as one byte 01 are accepted with one byte 01\n{}",
        relational.finished.describe()
    );
    relational.assert_statuses(0xFF00);
    assert_eq!(relational.values("StudyInstanceUID"), set(&[&ct().uid]));
    assert_eq!(relational.values("StudyDate"), set(&["20240101"]));
    assert_eq!(relational.values("PatientName"), set(&[PATIENT_NAME]));
    assert_eq!(
        relational.values("Modality"),
        set(&[""]),
        "a key below the level comes back zero-length"
    );

    let hierarchical = pynetdicom_find(
        &dir,
        "study-modality-hierarchical",
        address,
        "STUDY",
        &PYNETDICOM_STUDIES_BY_MODALITY,
        &[],
    )
    .expect("pynetdicom ran above");
    assert_eq!(
        hierarchical.accepted, None,
        "nothing proposed, nothing answered"
    );
    hierarchical.assert_statuses(0xFF01);
    assert_eq!(
        hierarchical.values("StudyInstanceUID"),
        both_studies(),
        "without the negotiation Modality is not matched at STUDY level"
    );

    let images = pynetdicom_find(
        &dir,
        "image-by-patient-name",
        address,
        "IMAGE",
        &[
            &format!("PatientName={PATIENT_NAME}"),
            "SOPInstanceUID=",
            "InstanceNumber=",
        ],
        &["--relational"],
    )
    .expect("pynetdicom ran above");
    assert_eq!(images.accepted.as_deref(), Some("01"));
    images.assert_statuses(0xFF00);
    assert_eq!(images.matches.len(), 4, "{}", images.finished.describe());
    assert_eq!(images.values("SOPInstanceUID"), all_instances());
    assert_eq!(images.values("PatientName"), set(&[PATIENT_NAME]));
    server.stop();
}

#[test]
fn pynetdicom_combined_date_time() {
    let Some((dir, server)) = loaded_archive("relational-combined", &[]) else {
        return;
    };
    let address = server.address();
    let find = |label: &str, range: [&str; 2], options: &[&str]| {
        let keys = [range[0], range[1], "StudyInstanceUID="];
        pynetdicom_find(&dir, label, address, "STUDY", &keys, options)
    };

    let Some(combined) = find("wide-combined", WIDE_RANGE, &["--combined-datetime"]) else {
        return;
    };
    assert_eq!(
        combined.accepted.as_deref(),
        Some("0001"),
        "byte 2 alone proposed as 00 01 is answered 00 01\n{}",
        combined.finished.describe()
    );
    combined.assert_statuses(0xFF00);
    assert_eq!(
        combined.values("StudyInstanceUID"),
        both_studies(),
        "2024-01-01 08:00 to 2024-01-03 12:00 holds the CT study at 23:00 on the first day"
    );

    let separate = find("wide-separate", WIDE_RANGE, &[]).expect("pynetdicom ran above");
    assert_eq!(separate.accepted, None);
    assert_eq!(
        separate.values("StudyInstanceUID"),
        set(&[&mr().uid]),
        "08:00 to 12:00 on each day leaves out the CT study at 23:00"
    );

    let combined =
        find("early-combined", EARLY_END, &["--combined-datetime"]).expect("pynetdicom ran above");
    assert_eq!(
        combined.values("StudyInstanceUID"),
        set(&[&ct().uid]),
        "the range ends at 09:00 on the MR study's day, before it, though its date is inside"
    );
    let separate = find("early-separate", EARLY_END, &[]).expect("pynetdicom ran above");
    assert!(
        separate.matches.is_empty(),
        "neither study is between 00:00 and 09:00\n{}",
        separate.finished.describe()
    );

    let both = find(
        "wide-both-options",
        WIDE_RANGE,
        &["--relational", "--combined-datetime"],
    )
    .expect("pynetdicom ran above");
    assert_eq!(both.accepted.as_deref(), Some("0101"));
    assert_eq!(both.values("StudyInstanceUID"), both_studies());
    server.stop();
}

#[test]
fn pynetdicom_fuzzy_person_names() {
    let Some((dir, server)) = loaded_archive("relational-fuzzy", &[]) else {
        return;
    };
    let address = server.address();
    // The words of the name, in another order, shortened, without case.
    let keys = ["PatientName=patient rel", "StudyInstanceUID="];
    let Some(fuzzy) = pynetdicom_find(&dir, "fuzzy", address, "STUDY", &keys, &["--fuzzy-names"])
    else {
        return;
    };
    assert_eq!(
        fuzzy.accepted.as_deref(),
        Some("000001"),
        "byte 3 alone proposed as 00 00 01 is answered 00 00 01\n{}",
        fuzzy.finished.describe()
    );
    fuzzy.assert_statuses(0xFF00);
    assert_eq!(fuzzy.values("StudyInstanceUID"), both_studies());
    assert_eq!(fuzzy.values("PatientName"), set(&[PATIENT_NAME]));

    let exact = pynetdicom_find(&dir, "not-fuzzy", address, "STUDY", &keys, &[])
        .expect("pynetdicom ran above");
    assert!(
        exact.matches.is_empty(),
        "without the option the key is matched as written\n{}",
        exact.finished.describe()
    );
    server.stop();

    let Some((dir, server)) = loaded_archive("relational-fuzzy-off", &["--no-fuzzy-names"]) else {
        return;
    };
    let refused = pynetdicom_find(
        &dir,
        "fuzzy-refused",
        server.address(),
        "STUDY",
        &keys,
        &["--fuzzy-names"],
    )
    .expect("pynetdicom ran above");
    assert_eq!(refused.accepted.as_deref(), Some("000000"));
    assert!(
        refused.matches.is_empty(),
        "{}",
        refused.finished.describe()
    );
    server.stop();
}

/// The values of `tag` in `dimsum findscu`'s matches.
fn values_of(matches: &[BTreeMap<Tag, String>], tag: Tag) -> BTreeSet<String> {
    matches
        .iter()
        .filter_map(|found| found.get(&tag).cloned())
        .collect()
}

/// The Study Instance UIDs of `dimsum findscu`'s matches.
fn study_uids(matches: &[BTreeMap<Tag, String>]) -> BTreeSet<String> {
    values_of(matches, tags::STUDY_INSTANCE_UID)
}

/// The Study Instance UIDs of the identifiers DCMTK `findscu` received.
fn dcmtk_study_uids(found: &FindRun) -> BTreeSet<String> {
    found
        .identifiers
        .iter()
        .map(|identifier| identifier.require(tags::STUDY_INSTANCE_UID).to_owned())
        .collect()
}

/// Runs `dimsum findscu -S <option> <keys>` against `address` (as `label`, its matches printed
/// as `output` says), asserts that it exited 0 and logged `reported` (how it read the SCP's
/// answer to the extended negotiation), and returns the run.
#[track_caller]
fn study_root_find(
    dir: &Path,
    label: &str,
    address: &AeAddress,
    keys: &[&str],
    output: FindOutput,
    option: &str,
    reported: &str,
) -> DimsumFindRun {
    let found = dimsum_findscu(
        dir,
        label,
        address,
        QrModel::StudyRoot,
        keys,
        output,
        &[option],
    );
    found.finished.assert_code(0);
    assert!(
        found
            .finished
            .stderr
            .contains(&format!("Extended negotiation: {reported}")),
        "no {reported:?} in the log\n{}",
        found.finished.describe()
    );
    found
}

#[test]
fn dimsum_findscu_relational_with_and_without_the_setting() {
    let Some((dir, server)) = loaded_archive("relational-findscu", &[]) else {
        return;
    };
    let address = server.address();
    let found = study_root_find(
        &dir,
        "study-modality",
        address,
        &STUDIES_BY_MODALITY,
        FindOutput::Text,
        "--relational",
        "relational queries accepted",
    );
    let log = found.finished.describe();
    assert_eq!(study_uids(&found.matches), set(&[&ct().uid]), "{log}");
    assert_eq!(found.matches.len(), 1, "{log}");
    assert!(!found.finished.stdout.contains("not supported"), "{log}");

    let images = study_root_find(
        &dir,
        "image-by-patient-name",
        address,
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("PatientName={PATIENT_NAME}"),
            "SOPInstanceUID",
        ],
        FindOutput::Json,
        "--relational",
        "relational queries accepted",
    );
    assert_eq!(images.matches.len(), 4, "{}", images.finished.describe());
    assert_eq!(
        values_of(&images.matches, tags::SOP_INSTANCE_UID),
        all_instances()
    );

    let range_keys = wide_range_study_keys();
    let combined = study_root_find(
        &dir,
        "wide-combined",
        address,
        &range_keys,
        FindOutput::Json,
        "--combined-datetime",
        "combined date-time matching accepted",
    );
    assert_eq!(study_uids(&combined.matches), both_studies());
    server.stop();

    // the same archive, the options switched off
    let server = DimsumServe::start(
        &dir,
        &dir.join("data"),
        &[
            "--no-relational",
            "--no-combined-datetime",
            "--no-fuzzy-names",
        ],
    );
    let address = server.address();
    let found = study_root_find(
        &dir,
        "study-modality-off",
        address,
        &STUDIES_BY_MODALITY,
        FindOutput::Text,
        "--relational",
        "relational queries not accepted by the SCP",
    );
    let log = found.finished.describe();
    assert_eq!(study_uids(&found.matches), both_studies(), "{log}");
    assert_eq!(
        found
            .finished
            .stdout
            .matches("(some optional keys were not supported)")
            .count(),
        2,
        "both matches carry 0xFF01\n{log}"
    );

    let separate = study_root_find(
        &dir,
        "wide-combined-off",
        address,
        &range_keys,
        FindOutput::Json,
        "--combined-datetime",
        "combined date-time matching not accepted by the SCP",
    );
    assert_eq!(study_uids(&separate.matches), set(&[&mr().uid]));

    if let Some(refused) = pynetdicom_find(
        &dir,
        "pynetdicom-off",
        address,
        "STUDY",
        &["Modality=CT", "StudyInstanceUID="],
        &["--relational", "--combined-datetime"],
    ) {
        assert_eq!(
            refused.accepted.as_deref(),
            None,
            "an SCP that supports no option leaves the item unanswered (PS3.7 D.3.3.5)\n{}",
            refused.finished.describe()
        );
        refused.assert_statuses(0xFF01);
        assert_eq!(refused.values("StudyInstanceUID"), both_studies());
    }
    server.stop();
}

#[test]
fn dcmtk_findscu_gets_hierarchical_answers() {
    let Some((dir, server)) = loaded_archive("relational-dcmtk", &[]) else {
        return;
    };
    let address = server.address();
    let Some(found) = QrClient::Dcmtk.find(
        &dir,
        "study-modality",
        address,
        QrModel::StudyRoot,
        &STUDIES_BY_MODALITY,
        &[],
    ) else {
        return;
    };
    let log = found.finished.describe();
    found.finished.assert_code(0);
    assert_eq!(dcmtk_study_uids(&found), both_studies(), "{log}");
    assert_eq!(found.identifiers.len(), 2, "{log}");

    let found = QrClient::Dcmtk
        .find(
            &dir,
            "wide-range",
            address,
            QrModel::StudyRoot,
            &wide_range_study_keys(),
            &[],
        )
        .expect("DCMTK ran above");
    found.finished.assert_code(0);
    assert_eq!(
        dcmtk_study_uids(&found),
        set(&[&mr().uid]),
        "separate date and time ranges\n{}",
        found.finished.describe()
    );
    server.stop();
}
