//! Query/Retrieve interoperability (issue 7): our `dimsum findscu`, `getscu` and `movescu`
//! against DCMTK `dcmqrscp` and pynetdicom's `qrscp`, and DCMTK's and pynetdicom's clients
//! against `dimsum qrscp` (our SCP library serving a folder), asserting on what was found and
//! transferred: the studies, series and instances with their key values as loaded, retrieved
//! data sets equal to the loaded files element by element. Also: C-CANCEL both ways, a find of
//! 10,000 matches streamed with bounded memory on both sides (measured), a C-MOVE whose
//! destination refuses one instance (the failure counted and named), and a Modality Worklist
//! read by DCMTK `findscu -W` and by ours.
//!
//! The data set and the peers come from `support/qr.rs` (see its notes on peer quirks:
//! dcmqrscp matches hierarchically and returns only the keys it indexes; pynetdicom's qrscp
//! answers once per matching instance at every level, so its answers are compared as distinct
//! entities). A missing peer skips the test (prints `SKIP:`), or fails it when
//! `DIMSUM_REQUIRE_PEERS` is set. Install the peers with `scripts/setup-peers`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use dimsum_net::dataset::dicom_core::value::DataSetSequence;
use dimsum_net::dataset::dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::{self, FileMetaTableBuilder, InMemDicomObject};
use support::qr::{
    AeAddress, DIMSUM_CLIENT_AE, DimsumQrscp, FindOutput, LargeSeries, Match, QrClient, QrDataSet,
    QrIdentifier, QrInstance, QrModel, QrPeer, QrPeerKind, QrStudy, RefusingStorescp, STUDY_KEYS,
    StorescpDestination, StudyRef, assert_received_instances, dimsum_findscu,
    dimsum_findscu_command, dimsum_movescu_to_self, json_match, move_destination_arg,
    parse_find_text, retrieve_scratch_dir,
};
use support::{
    EXPLICIT_VR_LE, Finished, RUN_TIMEOUT, assert_contains, dcmtk_field_values, free_port,
    proc_status_kib, run, scratch_dir, time_report_peak_rss_kib, under_gnu_time,
};

/// Instances of the series the C-CANCEL tests query. An SCP streams its matches ahead of the
/// client reading them (TCP buffers), so the cancel stops it some way after the client's N-th
/// match (dcmqrscp and ours both get 40 to 200 out, so far): enough that neither has sent them
/// all by then.
const CANCEL_SERIES: usize = 1000;
/// After how many matches the C-CANCEL tests cancel.
const CANCEL_AFTER: usize = 5;

/// Matches of the streaming test.
const STREAM_MATCHES: usize = 10_000;
/// Characters of Image Comments per instance in the streaming test: each response carries
/// them, so that holding every response would take tens of MB.
const STREAM_COMMENT_LEN: usize = 4000;
/// How much more `dimsum findscu` may peak at receiving the 10,000 matches than receiving one
/// (the driver reads ahead up to 4 MiB; holding the responses would take over 40 MB).
const STREAM_CLIENT_GROWTH_LIMIT_KIB: u64 = 12 * 1024;
/// How much the peak RSS of `dimsum qrscp` may exceed its resident size before the find
/// while it answers the 10,000 matches (its index of the folder is built before).
const STREAM_SERVER_GROWTH_LIMIT_KIB: u64 = 12 * 1024;

/// Modality Worklist Information Model – FIND (PS3.4 K.6.1), the media storage SOP class of the
/// worklist files.
const MODALITY_WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The logs of a run and the servers it talked to, for failure messages.
fn context(parts: &[String]) -> String {
    parts.join("\n")
}

/// The logs of `finished` and of the servers it talked to, after checking that it exited 0.
#[track_caller]
fn exited_ok(finished: &Finished, servers: &[String]) -> String {
    finished.assert_code(0);
    let mut parts = vec![finished.describe()];
    parts.extend_from_slice(servers);
    context(&parts)
}

/// The value of `tag` in a match; panics (showing the match) when it is missing.
#[track_caller]
fn value<'a>(found: &'a Match, tag: Tag, context: &str) -> &'a str {
    found
        .get(&tag)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {tag} in the match {found:#?}\n{context}"))
}

/// The distinct values of `tag` over the matches.
#[track_caller]
fn distinct(matches: &[Match], tag: Tag, context: &str) -> BTreeSet<String> {
    matches
        .iter()
        .map(|found| value(found, tag, context).to_owned())
        .collect()
}

/// Asserts that `found` holds each `(tag, value)` of `expected`.
#[track_caller]
fn assert_values(found: &Match, expected: &[(Tag, String)], what: &str, context: &str) {
    for (tag, wanted) in expected {
        assert_eq!(
            found.get(tag),
            Some(wanted),
            "{tag} of {what}: {found:#?}\n{context}"
        );
    }
}

/// The STUDY-level values both peers return for a study (the keys of [`STUDY_KEYS`]).
fn study_values(item: StudyRef<'_>) -> Vec<(Tag, String)> {
    vec![
        (tags::QUERY_RETRIEVE_LEVEL, "STUDY".to_owned()),
        (tags::PATIENT_NAME, item.patient.patient_name.clone()),
        (tags::PATIENT_ID, item.patient.patient_id.clone()),
        (tags::STUDY_DATE, item.study.study_date.clone()),
        (tags::STUDY_TIME, item.study.study_time.clone()),
        (tags::ACCESSION_NUMBER, item.study.accession_number.clone()),
        (tags::STUDY_ID, item.study.study_id.clone()),
    ]
}

/// Asserts that every match of a STUDY-level find names a loaded study with its values, and
/// that the distinct studies are `expected`; returns the matches per study.
#[track_caller]
fn assert_studies(
    data: &QrDataSet,
    matches: &[Match],
    expected: &BTreeSet<String>,
    context: &str,
) -> BTreeMap<String, usize> {
    let mut per_study = BTreeMap::new();
    for found in matches {
        let uid = value(found, tags::STUDY_INSTANCE_UID, context);
        assert!(
            data.study_uids().contains(uid),
            "a match names study {uid}, which was not loaded\n{context}"
        );
        assert_values(found, &study_values(data.study(uid)), uid, context);
        *per_study.entry(uid.to_owned()).or_insert(0) += 1;
    }
    let found: BTreeSet<String> = per_study.keys().cloned().collect();
    assert_eq!(&found, expected, "studies found\n{context}");
    per_study
}

/// A DCMTK/pynetdicom find's extracted responses as matches.
fn identifiers_as_matches(identifiers: &[QrIdentifier]) -> Vec<Match> {
    identifiers
        .iter()
        .map(|identifier| identifier.elements.clone())
        .collect()
}

/// `uid → instance number` of the instances a find returned.
#[track_caller]
fn instance_numbers(matches: &[Match], context: &str) -> BTreeMap<String, String> {
    matches
        .iter()
        .map(|found| {
            (
                value(found, tags::SOP_INSTANCE_UID, context).to_owned(),
                value(found, tags::INSTANCE_NUMBER, context).to_owned(),
            )
        })
        .collect()
}

/// The summary line of our getscu/movescu, e.g. `Get finished: 0x0000 (success); completed 4,
/// failed 0, warning 0`: its status code and counts.
#[track_caller]
fn assert_summary(stderr: &str, what: &str, status: &str, counts: [usize; 3], context: &str) {
    let [completed, failed, warning] = counts;
    let prefix = format!("{what} finished: {status} ");
    let line = stderr
        .lines()
        .find(|line| line.starts_with(&format!("{what} finished: ")))
        .unwrap_or_else(|| panic!("no `{what} finished:` line\n{context}"));
    assert!(
        line.starts_with(&prefix)
            && line.ends_with(&format!(
                "; completed {completed}, failed {failed}, warning {warning}"
            )),
        "expected status {status} with completed {completed}, failed {failed}, warning \
         {warning}: {line:?}\n{context}"
    );
}

/// Asserts that our getscu or movescu (`what`: `Get`, `Move`) succeeded with every one of
/// `expected` completed, and that `received` holds exactly those instances, data sets equal.
#[track_caller]
fn assert_retrieved(
    dir: &Path,
    finished: &Finished,
    what: &str,
    expected: &[&QrInstance],
    received: &Path,
    log: &str,
) {
    finished.assert_code(0);
    assert_summary(
        &finished.stderr,
        what,
        "0x0000",
        [expected.len(), 0, 0],
        log,
    );
    assert_received_instances(dir, expected, received, log);
}

/// The STUDY-level keys with matching values on the name (a wildcard) and the date (a range):
/// they select [`doe_in_range`].
fn matching_study_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = STUDY_KEYS
        .iter()
        .copied()
        .filter(|key| !["PatientName", "StudyDate"].contains(key))
        .collect();
    keys.extend(["PatientName=Doe*", "StudyDate=20220101-20231231"]);
    keys
}

/// The studies [`matching_study_keys`] select: Doe^Jane's studies are of 2024 and 2023, and
/// Smith^John's 2022 study is not hers.
fn doe_in_range(data: &QrDataSet) -> BTreeSet<String> {
    BTreeSet::from([data.patients[0].studies[1].study_instance_uid.clone()])
}

/// How one column of a find's responses is checked: its tag, and the value an item of the data
/// set should give it.
type Column<T> = (Tag, fn(&T) -> String);

/// Asserts that `responses` are exactly one per item of `items`, told apart by `key`, each
/// with the values of `columns` that item gives.
#[track_caller]
fn assert_responses<T>(
    responses: &[QrIdentifier],
    items: &[T],
    key: Column<T>,
    columns: &[Column<T>],
    log: &str,
) {
    let found: BTreeMap<String, Vec<String>> = responses
        .iter()
        .map(|response| {
            let values = columns
                .iter()
                .map(|(tag, _)| response.require(*tag).to_owned())
                .collect();
            (response.require(key.0).to_owned(), values)
        })
        .collect();
    let expected: BTreeMap<String, Vec<String>> = items
        .iter()
        .map(|item| {
            let values = columns.iter().map(|(_, value)| value(item)).collect();
            (key.1(item), values)
        })
        .collect();
    assert_eq!(found, expected, "{log}");
    assert_eq!(responses.len(), items.len(), "one response each\n{log}");
}

/// The scratch folder `label`, a DCMTK storescp as move destination and `dimsum qrscp`
/// serving the data set, knowing it. `None` (after `SKIP:`) when storescp or the Python
/// environment that compares data sets is missing.
fn storescp_and_dimsum_qrscp(label: &str) -> Option<(PathBuf, StorescpDestination, DimsumQrscp)> {
    let dir = retrieve_scratch_dir(label)?;
    let storescp = StorescpDestination::start(&dir, StorescpDestination::AE_TITLE, &[])?;
    let destination = move_destination_arg(storescp.address());
    let server = DimsumQrscp::serving_data_set(
        &dir,
        QrDataSet::get(),
        &["--move-destination", &destination],
    );
    Some((dir, storescp, server))
}

/// Asserts what a find cancelled after [`CANCEL_AFTER`] matches of `series` returned: instances
/// of the series, none twice, at least that many and not all; prints how many.
#[track_caller]
fn assert_cancelled_find(matches: &[Match], series: &LargeSeries, who: &str, log: &str) {
    let uids = distinct(matches, tags::SOP_INSTANCE_UID, log);
    assert!(
        uids.is_subset(&series.sop_instance_uids()),
        "matches outside the series\n{log}"
    );
    assert_eq!(uids.len(), matches.len(), "a match came twice\n{log}");
    assert!(
        matches.len() >= CANCEL_AFTER && matches.len() < CANCEL_SERIES,
        "{} matches arrived with a cancel after {CANCEL_AFTER} of {CANCEL_SERIES}\n{log}",
        matches.len()
    );
    eprintln!(
        "{who} --cancel {CANCEL_AFTER}: {} of {CANCEL_SERIES} matches",
        matches.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Our findscu against dcmqrscp and pynetdicom's qrscp
// ---------------------------------------------------------------------------------------------

/// Our findscu at STUDY, PATIENT, SERIES and IMAGE level, with text, JSON and file output,
/// against a peer loaded with the Q/R data set.
fn dimsum_findscu_against(kind: QrPeerKind, label: &str) {
    let dir = scratch_dir(label);
    let data = QrDataSet::get();
    let Some(peer) = QrPeer::start_loaded(kind, &dir, &[]) else {
        return;
    };
    // our findscu against the peer, which must exit 0: what it found, with the logs
    let find = |label: &str, model: QrModel, keys: &[&str], output: FindOutput| {
        let run = dimsum_findscu(&dir, label, peer.address(), model, keys, output, &[]);
        let log = exited_ok(&run.finished, &[peer.describe()]);
        (run, log)
    };
    // pynetdicom's qrscp answers once per instance at every level
    let per_instance = kind == QrPeerKind::Pynetdicom;

    // Study Root, STUDY level, text output: every study, with its values
    let (studies, log) = find(
        "studies-text",
        QrModel::StudyRoot,
        STUDY_KEYS,
        FindOutput::Text,
    );
    assert_contains(
        &studies.finished.stderr,
        "Find finished: 0x0000 (success)",
        &log,
    );
    let per_study = assert_studies(data, &studies.matches, &data.study_uids(), &log);
    for (uid, count) in &per_study {
        let expected = if per_instance {
            data.study(uid).study.instances().count()
        } else {
            1
        };
        assert_eq!(*count, expected, "matches for study {uid}\n{log}");
    }

    // matching keys reach the peer: a wildcard on the name and a range on the date
    let (matched, log) = find(
        "studies-matched",
        QrModel::StudyRoot,
        &matching_study_keys(),
        FindOutput::Text,
    );
    assert_studies(data, &matched.matches, &doe_in_range(data), &log);

    // Patient Root, PATIENT level, DICOM JSON: every patient with name (and what dcmqrscp also
    // indexes: birth date and sex)
    let mut keys = vec!["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName"];
    if !per_instance {
        keys.extend(["PatientBirthDate", "PatientSex"]);
    }
    let (patients, log) = find(
        "patients-json",
        QrModel::PatientRoot,
        &keys,
        FindOutput::Json,
    );
    let mut found_patients = BTreeSet::new();
    for found in &patients.matches {
        let id = value(found, tags::PATIENT_ID, &log);
        let patient = data
            .patients
            .iter()
            .find(|patient| patient.patient_id == id)
            .unwrap_or_else(|| panic!("a match names patient {id}, who was not loaded\n{log}"));
        let mut expected = vec![
            (tags::QUERY_RETRIEVE_LEVEL, "PATIENT".to_owned()),
            (tags::PATIENT_NAME, patient.patient_name.clone()),
        ];
        if !per_instance {
            expected.push((tags::PATIENT_BIRTH_DATE, patient.birth_date.clone()));
            expected.push((tags::PATIENT_SEX, patient.sex.clone()));
        }
        assert_values(found, &expected, id, &log);
        found_patients.insert(id.to_owned());
    }
    let loaded: BTreeSet<String> = data
        .patients
        .iter()
        .map(|patient| patient.patient_id.clone())
        .collect();
    assert_eq!(found_patients, loaded, "patients found\n{log}");
    if !per_instance {
        assert_eq!(patients.matches.len(), data.patients.len(), "{log}");
    }

    // Patient Root, SERIES level of the two-modality study, written to files (-X)
    let study = data.two_modality_study();
    let patient_key = format!("PatientID={}", study.patient.patient_id);
    let study_key = format!("StudyInstanceUID={}", study.study.study_instance_uid);
    let (series, log) = find(
        "series-files",
        QrModel::PatientRoot,
        &[
            "QueryRetrieveLevel=SERIES",
            &patient_key,
            &study_key,
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
        ],
        FindOutput::Extract,
    );
    let found: BTreeMap<String, (String, String)> = series
        .matches
        .iter()
        .map(|found| {
            assert_eq!(
                found.get(&tags::QUERY_RETRIEVE_LEVEL).map(String::as_str),
                Some("SERIES"),
                "{log}"
            );
            (
                value(found, tags::SERIES_INSTANCE_UID, &log).to_owned(),
                (
                    value(found, tags::MODALITY, &log).to_owned(),
                    value(found, tags::SERIES_NUMBER, &log).to_owned(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, String)> = study
        .study
        .series
        .iter()
        .map(|series| {
            (
                series.series_instance_uid.clone(),
                (series.modality.clone(), series.series_number.to_string()),
            )
        })
        .collect();
    assert_eq!(found, expected, "series of the study\n{log}");
    let expected_matches = if per_instance {
        study.study.instances().count()
    } else {
        study.study.series.len()
    };
    assert_eq!(series.matches.len(), expected_matches, "{log}");

    // Study Root, IMAGE level of the CT series, DICOM JSON
    let ct = &study.study.series[0];
    let series_key = format!("SeriesInstanceUID={}", ct.series_instance_uid);
    let (images, log) = find(
        "images-json",
        QrModel::StudyRoot,
        &[
            "QueryRetrieveLevel=IMAGE",
            &study_key,
            &series_key,
            "SOPInstanceUID",
            "InstanceNumber",
        ],
        FindOutput::Json,
    );
    assert_eq!(
        instance_numbers(&images.matches, &log),
        ct.instance_numbers(),
        "instances of the series\n{log}"
    );
    assert_eq!(images.matches.len(), ct.instances.len(), "{log}");
}

test_against_both_peers!(dimsum_findscu_against: dimsum_findscu_against_dcmqrscp, dimsum_findscu_against_pynetdicom_qrscp);

// ---------------------------------------------------------------------------------------------
// 2. Our getscu against both
// ---------------------------------------------------------------------------------------------

/// Our getscu: a study (Study Root) and a series holding an Implicit VR file (Patient Root);
/// exactly their instances arrive, data sets equal.
fn dimsum_getscu_against(kind: QrPeerKind, label: &str) {
    let Some(dir) = retrieve_scratch_dir(label) else {
        return;
    };
    let data = QrDataSet::get();
    let Some(peer) = QrPeer::start_loaded(kind, &dir, &[]) else {
        return;
    };
    let study = data.two_modality_study();
    // the MR series with one file stored in Implicit VR Little Endian
    let patient = &data.patients[0];
    let mr_study = &patient.studies[1];
    let mr_series = &mr_study.series[0];
    let patient_key = format!("PatientID={}", patient.patient_id);
    let mr_study_key = format!("StudyInstanceUID={}", mr_study.study_instance_uid);
    let series_key = format!("SeriesInstanceUID={}", mr_series.series_instance_uid);
    let study_key = format!("StudyInstanceUID={}", study.study.study_instance_uid);
    let gets: [(&str, QrModel, Vec<&str>, Vec<&QrInstance>); 2] = [
        (
            "study",
            QrModel::StudyRoot,
            vec!["QueryRetrieveLevel=STUDY", &study_key],
            study.study.instances().collect(),
        ),
        (
            "series",
            QrModel::PatientRoot,
            vec![
                "QueryRetrieveLevel=SERIES",
                &patient_key,
                &mr_study_key,
                &series_key,
            ],
            mr_series.instances.iter().collect(),
        ),
    ];
    for (label, model, keys, expected) in gets {
        let (finished, received) = QrClient::Dimsum
            .get(&dir, label, peer.address(), model, &keys, &[])
            .expect("our getscu needs no peer");
        let log = context(&[finished.describe(), peer.describe()]);
        assert_retrieved(&dir, &finished, "Get", &expected, &received, &log);
    }
}

test_against_both_peers!(dimsum_getscu_against: dimsum_getscu_against_dcmqrscp, dimsum_getscu_against_pynetdicom_qrscp);

// ---------------------------------------------------------------------------------------------
// 3. Our movescu against both: to DCMTK storescp, and to ourselves
// ---------------------------------------------------------------------------------------------

/// Our movescu: a study to DCMTK storescp, and one to ourselves (`--port`); exactly their
/// instances arrive, data sets equal.
fn dimsum_movescu_against(kind: QrPeerKind, label: &str) {
    let Some(dir) = retrieve_scratch_dir(label) else {
        return;
    };
    let data = QrDataSet::get();
    let own_port = free_port();
    let ourselves = AeAddress::local(DIMSUM_CLIENT_AE, own_port);
    let Some((storescp, peer)) = QrPeer::start_loaded_with_storescp(kind, &dir, &[ourselves])
    else {
        return;
    };

    // the second patient's study (MR, two series) to storescp
    let study = &data.patients[1].studies[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let finished = QrClient::Dimsum
        .move_to(
            &dir,
            "to-storescp",
            peer.address(),
            QrModel::StudyRoot,
            StorescpDestination::AE_TITLE,
            &["QueryRetrieveLevel=STUDY", &study_key],
            &[],
        )
        .expect("our movescu needs no peer");
    let log = context(&[finished.describe(), peer.describe(), storescp.describe()]);
    let expected: Vec<&QrInstance> = study.instances().collect();
    assert_retrieved(
        &dir,
        &finished,
        "Move",
        &expected,
        storescp.output_dir(),
        &log,
    );
    storescp.assert_received_study(&dir, study, &log);

    // the two-modality study to ourselves (--port), Patient Root
    let two = data.two_modality_study();
    let patient_key = format!("PatientID={}", two.patient.patient_id);
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let (finished, received) = dimsum_movescu_to_self(
        &dir,
        "to-self",
        peer.address(),
        QrModel::PatientRoot,
        own_port,
        &["QueryRetrieveLevel=STUDY", &patient_key, &study_key],
    );
    let log = context(&[finished.describe(), peer.describe()]);
    let expected: Vec<&QrInstance> = two.study.instances().collect();
    assert_retrieved(&dir, &finished, "Move", &expected, &received, &log);
}

test_against_both_peers!(dimsum_movescu_against: dimsum_movescu_against_dcmqrscp, dimsum_movescu_against_pynetdicom_qrscp);

// ---------------------------------------------------------------------------------------------
// 4. DCMTK's and pynetdicom's clients against dimsum qrscp
// ---------------------------------------------------------------------------------------------

#[test]
fn dcmtk_findscu_against_dimsum_qrscp() {
    let dir = scratch_dir("qr-dcmtk-findscu-dimsum");
    let data = QrDataSet::get();
    let server = DimsumQrscp::serving_data_set(&dir, data, &[]);
    // DCMTK findscu against our qrscp, which must exit 0: what it found, with the logs
    let find = |label: &str, model: QrModel, keys: &[&str]| {
        let run = QrClient::Dcmtk.find(&dir, label, server.address(), model, keys, &[])?;
        let log = exited_ok(&run.finished, &[server.describe()]);
        Some((run, log))
    };

    // Study Root, STUDY level, with the keys our SCP computes
    let mut keys = STUDY_KEYS.to_vec();
    keys.extend([
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ]);
    let Some((studies, log)) = find("studies", QrModel::StudyRoot, &keys) else {
        return;
    };
    assert_contains(
        &studies.finished.output(),
        "Received Final Find Response (Success)",
        &log,
    );
    let matches = identifiers_as_matches(&studies.identifiers);
    assert_eq!(
        matches.len(),
        data.studies().len(),
        "one match per study\n{log}"
    );
    assert_studies(data, &matches, &data.study_uids(), &log);
    for found in &matches {
        let item = data.study(value(found, tags::STUDY_INSTANCE_UID, &log));
        let modalities: BTreeSet<&str> = value(found, tags::MODALITIES_IN_STUDY, &log)
            .split('\\')
            .collect();
        assert_eq!(modalities, item.study.modalities(), "{log}");
        let expected = [
            (tags::STUDY_DESCRIPTION, item.study.description.clone()),
            (
                tags::NUMBER_OF_STUDY_RELATED_SERIES,
                item.study.series.len().to_string(),
            ),
            (
                tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                item.study.instances().count().to_string(),
            ),
        ];
        assert_values(found, &expected, &item.study.study_instance_uid, &log);
    }

    // matching: a wildcard on the name and a date range
    let keys = matching_study_keys();
    let Some((matched, log)) = find("matched", QrModel::StudyRoot, &keys) else {
        return;
    };
    assert_studies(
        data,
        &identifiers_as_matches(&matched.identifiers),
        &doe_in_range(data),
        &log,
    );

    // Patient Root, PATIENT level
    let keys = [
        "QueryRetrieveLevel=PATIENT",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ];
    let Some((patients, log)) = find("patients", QrModel::PatientRoot, &keys) else {
        return;
    };
    assert_responses(
        &patients.identifiers,
        &data.patients,
        (tags::PATIENT_ID, |patient| patient.patient_id.clone()),
        &[
            (tags::PATIENT_NAME, |patient| patient.patient_name.clone()),
            (tags::PATIENT_BIRTH_DATE, |patient| {
                patient.birth_date.clone()
            }),
            (tags::PATIENT_SEX, |patient| patient.sex.clone()),
            (tags::NUMBER_OF_PATIENT_RELATED_STUDIES, |patient| {
                patient.studies.len().to_string()
            }),
        ],
        &log,
    );

    // Patient Root, SERIES level of the second patient's study
    let patient = &data.patients[1];
    let study = &patient.studies[0];
    let patient_key = format!("PatientID={}", patient.patient_id);
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let keys = [
        "QueryRetrieveLevel=SERIES",
        &patient_key,
        &study_key,
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ];
    let Some((series, log)) = find("series", QrModel::PatientRoot, &keys) else {
        return;
    };
    assert_responses(
        &series.identifiers,
        &study.series,
        (tags::SERIES_INSTANCE_UID, |series| {
            series.series_instance_uid.clone()
        }),
        &[
            (tags::MODALITY, |series| series.modality.clone()),
            (tags::SERIES_NUMBER, |series| {
                series.series_number.to_string()
            }),
            (tags::SERIES_DESCRIPTION, |series| {
                series.description.clone()
            }),
            (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, |series| {
                series.instances.len().to_string()
            }),
        ],
        &log,
    );

    // Study Root, IMAGE level of the CT series, with the SOP class
    let two = data.two_modality_study();
    let ct = &two.study.series[0];
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let series_key = format!("SeriesInstanceUID={}", ct.series_instance_uid);
    let keys = [
        "QueryRetrieveLevel=IMAGE",
        &study_key,
        &series_key,
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ];
    let Some((images, log)) = find("images", QrModel::StudyRoot, &keys) else {
        return;
    };
    let matches = identifiers_as_matches(&images.identifiers);
    assert_eq!(
        instance_numbers(&matches, &log),
        ct.instance_numbers(),
        "instances\n{log}"
    );
    for response in &images.identifiers {
        assert_eq!(
            response.get(tags::SOP_CLASS_UID),
            Some(ct.instances[0].sop_class_uid.as_str()),
            "{log}"
        );
    }
}

/// `client` retrieves from `server`, which knows `storescp`: a C-GET of the two-modality study
/// (Study Root), then a C-MOVE of `moved` to storescp with `move_keys` in `move_model`. Exactly
/// their instances arrive, data sets equal. Returns both runs with their logs, for what only
/// that client shows; `None` (after `SKIP:`) when the client is missing.
fn assert_client_retrieves(
    client: QrClient,
    dir: &Path,
    (storescp, server): (&StorescpDestination, &DimsumQrscp),
    move_model: QrModel,
    move_keys: &[&str],
    moved: &QrStudy,
) -> Option<[(Finished, String); 2]> {
    let two = QrDataSet::get().two_modality_study();
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let get_keys = ["QueryRetrieveLevel=STUDY", study_key.as_str()];
    let (got, received) = client.get(
        dir,
        "get",
        server.address(),
        QrModel::StudyRoot,
        &get_keys,
        &[],
    )?;
    let get_log = exited_ok(&got, &[server.describe()]);
    let expected: Vec<&QrInstance> = two.study.instances().collect();
    assert_received_instances(dir, &expected, &received, &get_log);

    let destination = StorescpDestination::AE_TITLE;
    let sent = client.move_to(
        dir,
        "move",
        server.address(),
        move_model,
        destination,
        move_keys,
        &[],
    )?;
    let move_log = exited_ok(&sent, &[server.describe(), storescp.describe()]);
    storescp.assert_received_study(dir, moved, &move_log);
    Some([(got, get_log), (sent, move_log)])
}

#[test]
fn dcmtk_getscu_and_movescu_against_dimsum_qrscp() {
    let Some((dir, storescp, server)) = storescp_and_dimsum_qrscp("qr-dcmtk-retrieve-dimsum")
    else {
        return;
    };
    let data = QrDataSet::get();
    // the C-MOVE: the second patient's study, Patient Root
    let patient = &data.patients[1];
    let study = &patient.studies[0];
    let patient_key = format!("PatientID={}", patient.patient_id);
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let move_keys = ["QueryRetrieveLevel=STUDY", &patient_key, &study_key];
    let Some([(got, get_log), (moved, move_log)]) = assert_client_retrieves(
        QrClient::Dcmtk,
        &dir,
        (&storescp, &server),
        QrModel::PatientRoot,
        &move_keys,
        study,
    ) else {
        return;
    };
    let completed = data.two_modality_study().study.instances().count();
    assert_contains(
        &got.output(),
        &format!("Number of Completed Suboperations : {completed}"),
        &get_log,
    );
    assert_contains(
        &moved.output(),
        "Received Final Move Response (Success)",
        &move_log,
    );
}

#[test]
fn pynetdicom_clients_against_dimsum_qrscp() {
    let Some((dir, storescp, server)) = storescp_and_dimsum_qrscp("qr-pynetdicom-clients-dimsum")
    else {
        return;
    };
    let data = QrDataSet::get();
    let address = server.address();

    // findscu, Study Root, STUDY level
    let Some(studies) = QrClient::Pynetdicom.find(
        &dir,
        "studies",
        address,
        QrModel::StudyRoot,
        STUDY_KEYS,
        &[],
    ) else {
        return;
    };
    let log = exited_ok(&studies.finished, &[server.describe()]);
    let matches = identifiers_as_matches(&studies.identifiers);
    assert_eq!(matches.len(), data.studies().len(), "{log}");
    assert_studies(data, &matches, &data.study_uids(), &log);

    // findscu, Patient Root, IMAGE level of a series
    let two = data.two_modality_study();
    let ct = &two.study.series[0];
    let patient_key = format!("PatientID={}", two.patient.patient_id);
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let series_key = format!("SeriesInstanceUID={}", ct.series_instance_uid);
    let Some(images) = QrClient::Pynetdicom.find(
        &dir,
        "images",
        address,
        QrModel::PatientRoot,
        &[
            "QueryRetrieveLevel=IMAGE",
            &patient_key,
            &study_key,
            &series_key,
            "SOPInstanceUID",
            "InstanceNumber",
        ],
        &[],
    ) else {
        return;
    };
    let log = exited_ok(&images.finished, &[server.describe()]);
    let matches = identifiers_as_matches(&images.identifiers);
    assert_eq!(
        instance_numbers(&matches, &log),
        ct.instance_numbers(),
        "{log}"
    );
    assert_eq!(matches.len(), ct.instances.len(), "{log}");

    // getscu of the two-modality study, movescu of the third patient's study to storescp
    let study = &data.patients[2].studies[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    assert_client_retrieves(
        QrClient::Pynetdicom,
        &dir,
        (&storescp, &server),
        QrModel::StudyRoot,
        &["QueryRetrieveLevel=STUDY", &study_key],
        study,
    );
}

// ---------------------------------------------------------------------------------------------
// 5. C-CANCEL both ways
// ---------------------------------------------------------------------------------------------

/// The IMAGE-level keys of every instance of `series` (Study Root, hierarchical).
fn series_image_keys(series: &LargeSeries, extra: &[&str]) -> Vec<String> {
    let mut keys = vec![
        "QueryRetrieveLevel=IMAGE".to_owned(),
        format!("StudyInstanceUID={}", series.study_instance_uid),
        format!("SeriesInstanceUID={}", series.series_instance_uid),
        "SOPInstanceUID".to_owned(),
        "InstanceNumber".to_owned(),
    ];
    keys.extend(extra.iter().map(|key| (*key).to_owned()));
    keys
}

#[test]
fn dimsum_findscu_cancels_a_dcmqrscp_find() {
    let dir = scratch_dir("qr-cancel-dcmqrscp");
    let series = LargeSeries::get(CANCEL_SERIES, 0);
    let Some(server) = QrPeer::start(QrPeerKind::Dcmqrscp, &dir, &[]) else {
        return;
    };
    let files = series.files();
    server.load(&files.iter().map(|path| path.as_path()).collect::<Vec<_>>());
    let keys = series_image_keys(&series, &[]);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let cancel = CANCEL_AFTER.to_string();
    let found = dimsum_findscu(
        &dir,
        "cancelled",
        server.address(),
        QrModel::StudyRoot,
        &keys,
        FindOutput::Text,
        &["--cancel", &cancel],
    );
    let log = exited_ok(&found.finished, &[server.describe()]);
    assert_contains(&found.finished.stderr, "Find finished: 0xFE00", &log);
    assert_cancelled_find(
        &found.matches,
        &series,
        "dimsum findscu against dcmqrscp",
        &log,
    );
}

#[test]
fn dcmtk_findscu_cancels_a_dimsum_qrscp_find() {
    let dir = scratch_dir("qr-cancel-dimsum");
    let series = LargeSeries::get(CANCEL_SERIES, 0);
    let server = DimsumQrscp::start(&dir, DimsumQrscp::AE_TITLE, &series.dir, &[]);
    let keys = series_image_keys(&series, &[]);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let cancel = CANCEL_AFTER.to_string();
    let Some(found) = QrClient::Dcmtk.find(
        &dir,
        "cancelled",
        server.address(),
        QrModel::StudyRoot,
        &keys,
        &["--cancel", &cancel],
    ) else {
        return;
    };
    let log = exited_ok(&found.finished, &[server.describe()]);
    assert_contains(
        &found.finished.output(),
        "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)",
        &log,
    );
    assert_cancelled_find(
        &identifiers_as_matches(&found.identifiers),
        &series,
        "DCMTK findscu against dimsum qrscp",
        &log,
    );
}

// ---------------------------------------------------------------------------------------------
// 6. 10,000 matches with bounded memory on both sides
// ---------------------------------------------------------------------------------------------

/// Runs our findscu with `keys` against `server` under GNU time; its output and peak RSS.
/// `None` (after `SKIP:`) when GNU time is missing.
fn timed_findscu(
    dir: &Path,
    label: &str,
    server: &AeAddress,
    keys: &[&str],
) -> Option<(Finished, u64)> {
    let command = dimsum_findscu_command(server, QrModel::StudyRoot, keys, &[]);
    let report = dir.join(format!("{label}.time"));
    let timed = under_gnu_time(&command, &report)?;
    let finished = run(label, dir, timed, RUN_TIMEOUT);
    let peak = time_report_peak_rss_kib(&report).unwrap_or_else(|| {
        panic!(
            "no peak RSS in {}\n{}",
            report.display(),
            finished.describe()
        )
    });
    Some((finished, peak))
}

#[test]
fn ten_thousand_matches_stream_with_bounded_memory() {
    let dir = scratch_dir("qr-stream-10000");
    let series = LargeSeries::get(STREAM_MATCHES, STREAM_COMMENT_LEN);
    let mut server = DimsumQrscp::start(&dir, DimsumQrscp::AE_TITLE, &series.dir, &[]);
    let pid = server.process().id();

    // the client's figure for one match, to compare with
    let one_key = format!("SOPInstanceUID={}", series.sop_instance_uid(0));
    let keys = series_image_keys(&series, &["ImageComments"]);
    let mut one_keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    one_keys.retain(|key| *key != "SOPInstanceUID");
    one_keys.push(&one_key);
    let Some((one, client_one)) = timed_findscu(&dir, "findscu-one", server.address(), &one_keys)
    else {
        return;
    };
    one.assert_code(0);
    assert_eq!(parse_find_text(&one.stdout).len(), 1, "{}", one.describe());

    let server_before = proc_status_kib(pid, "VmRSS");
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let Some((found, client_peak)) = timed_findscu(&dir, "findscu-10000", server.address(), &keys)
    else {
        return;
    };
    let server_peak = proc_status_kib(pid, "VmHWM");
    let log = context(&[
        format!(
            "--- findscu: {} bytes of stdout ---\nstderr:\n{}",
            found.stdout.len(),
            found.stderr
        ),
        server.describe(),
    ]);
    found.assert_code(0);
    assert_contains(
        &found.stderr,
        &format!("Find finished: 0x0000 (success) after {STREAM_MATCHES} matches"),
        &log,
    );
    let matches = parse_find_text(&found.stdout);
    assert_eq!(matches.len(), STREAM_MATCHES, "{log}");
    assert_eq!(
        distinct(&matches, tags::SOP_INSTANCE_UID, &log),
        series.sop_instance_uids(),
        "every instance once\n{log}"
    );
    // the comments travelled whole: the text output shows their start and full length
    for found in [&matches[0], &matches[STREAM_MATCHES - 1]] {
        let number: usize = value(found, tags::INSTANCE_NUMBER, &log)
            .parse()
            .expect("an instance number");
        let expected = series.image_comments(number - 1);
        assert_eq!(
            value(found, tags::IMAGE_COMMENTS, &log),
            format!(
                "{}... ({} characters)",
                &expected[..64],
                expected.chars().count()
            ),
            "Image Comments of instance {number}\n{log}"
        );
    }

    let response_kib = (STREAM_MATCHES * STREAM_COMMENT_LEN / 1024) as u64;
    let client_growth = client_peak.saturating_sub(client_one);
    let server_growth = server_peak.saturating_sub(server_before);
    eprintln!(
        "{STREAM_MATCHES} matches (over {response_kib} KiB of Image Comments): dimsum findscu peak \
         RSS {client_peak} KiB ({client_one} KiB for one match, +{client_growth} KiB); dimsum \
         qrscp RSS {server_before} KiB before the find, peak {server_peak} KiB \
         (+{server_growth} KiB)"
    );
    assert!(
        client_growth < STREAM_CLIENT_GROWTH_LIMIT_KIB,
        "dimsum findscu peaked at {client_peak} KiB receiving {STREAM_MATCHES} matches, \
         {client_one} KiB receiving one (bound +{STREAM_CLIENT_GROWTH_LIMIT_KIB} KiB; the \
         responses hold over {response_kib} KiB)\n{log}"
    );
    assert!(
        server_growth < STREAM_SERVER_GROWTH_LIMIT_KIB,
        "dimsum qrscp went from {server_before} KiB to a peak of {server_peak} KiB answering \
         {STREAM_MATCHES} matches (bound +{STREAM_SERVER_GROWTH_LIMIT_KIB} KiB; the responses \
         hold over {response_kib} KiB)\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A refused sub-operation is counted and named
// ---------------------------------------------------------------------------------------------

#[test]
fn move_to_a_destination_refusing_one_instance_counts_the_failure() {
    let Some(dir) = retrieve_scratch_dir("qr-move-refused") else {
        return;
    };
    let data = QrDataSet::get();
    let two = data.two_modality_study();
    let instances: Vec<&QrInstance> = two.study.instances().collect();
    let refused = &instances[1].sop_instance_uid;
    let Some(destination) = RefusingStorescp::start(&dir, "REFUSER", &[refused]) else {
        return;
    };
    let server = DimsumQrscp::serving_data_set(
        &dir,
        data,
        &[
            "--move-destination",
            &move_destination_arg(destination.address()),
        ],
    );
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let keys = ["QueryRetrieveLevel=STUDY", study_key.as_str()];

    // our movescu: the final status, the counts and the failed instance
    let finished = QrClient::Dimsum
        .move_to(
            &dir,
            "ours",
            server.address(),
            QrModel::StudyRoot,
            "REFUSER",
            &keys,
            &[],
        )
        .expect("our movescu needs no peer");
    let log = context(&[
        finished.describe(),
        server.describe(),
        destination.describe(),
    ]);
    assert_eq!(
        finished.code(),
        Some(1),
        "a move with a failed sub-operation is not a success\n{log}"
    );
    assert_summary(
        &finished.stderr,
        "Move",
        "0xB000",
        [instances.len() - 1, 1, 0],
        &log,
    );
    let failed_lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| line.contains("failed: "))
        .collect();
    assert_eq!(failed_lines.len(), 1, "one `failed: <uid>` line\n{log}");
    assert!(
        failed_lines[0]
            .trim_end()
            .ends_with(&format!("failed: {refused}")),
        "the failed instance is named: {failed_lines:?}\n{log}"
    );
    let answered = destination.answered();
    assert_eq!(answered.get(refused.as_str()), Some(&0xA700), "{log}");
    let others: Vec<&QrInstance> = instances
        .iter()
        .copied()
        .filter(|instance| &instance.sop_instance_uid != refused)
        .collect();
    assert_received_instances(&dir, &others, destination.output_dir(), &log);

    // DCMTK's movescu reads the same from our final response: its dump (-d) of each C-MOVE-RSP
    let Some(finished) = QrClient::Dcmtk.move_to(
        &dir,
        "dcmtk",
        server.address(),
        QrModel::StudyRoot,
        "REFUSER",
        &keys,
        &["-d"],
    ) else {
        return;
    };
    let log = context(&[
        finished.describe(),
        server.describe(),
        destination.describe(),
    ]);
    let output = finished.output();
    assert_contains(&output, "Received Final Move Response", &log);
    let last = |field: &str| {
        dcmtk_field_values(&output, field)
            .pop()
            .unwrap_or_else(|| panic!("no {field:?} in DCMTK's dump\n{log}"))
    };
    assert_eq!(
        last("DIMSE Status"),
        "0xb000: Warning: Sub-operations complete - One or more failures or warnings",
        "{log}"
    );
    assert_eq!(
        last("Completed Suboperations"),
        (instances.len() - 1).to_string(),
        "{log}"
    );
    assert_eq!(last("Failed Suboperations"), "1", "{log}");
    assert_eq!(last("Warning Suboperations"), "0", "{log}");
    assert_contains(&output, &format!("(0008,0058) UI [{refused}]"), &log);
}

// ---------------------------------------------------------------------------------------------
// 8. Modality Worklist
// ---------------------------------------------------------------------------------------------

/// One worklist item (a Scheduled Procedure Step with its patient and request, PS3.4 K.6.1).
struct WorklistItem {
    accession: String,
    patient_name: &'static str,
    patient_id: String,
    modality: &'static str,
    station: &'static str,
    start_date: &'static str,
    start_time: &'static str,
    step_id: String,
    step_description: &'static str,
}

/// The worklist items: patient name, modality, station, start date and time, step description.
/// Item n (from 1) has Accession Number WLACC00n, Patient ID WL-00n and step ID SPS00n.
const WORKLIST_ITEMS: [(&str, &str, &str, &str, &str, &str); 5] = [
    ("Brown^Alice", "CT", "CT01", "20250310", "080000", "CT HEAD"),
    ("Chen^Bo", "CT", "CT02", "20250312", "093000", "CT ABDOMEN"),
    ("Diaz^Carla", "MR", "MR01", "20250311", "100000", "MR KNEE"),
    ("Evans^Dan", "CT", "CT01", "20250320", "110000", "CT CHEST"),
    ("Fox^Eve", "CT", "CT02", "20250309", "235959", "CT SPINE"),
];

/// The worklist, item by item.
fn worklist() -> Vec<WorklistItem> {
    WORKLIST_ITEMS
        .iter()
        .zip(1..)
        .map(
            |(&(patient_name, modality, station, start_date, start_time, step_description), n)| {
                WorklistItem {
                    accession: format!("WLACC{n:03}"),
                    patient_name,
                    patient_id: format!("WL-{n:03}"),
                    modality,
                    station,
                    start_date,
                    start_time,
                    step_id: format!("SPS{n:03}"),
                    step_description,
                }
            },
        )
        .collect()
}

/// Writes each worklist item as a Part 10 file into `folder`.
fn write_worklist(folder: &Path) {
    fs::create_dir_all(folder).expect("create the worklist folder");
    let text =
        |tag: Tag, vr: VR, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    for (index, item) in worklist().iter().enumerate() {
        let mut step = InMemDicomObject::new_empty();
        for element in [
            text(tags::MODALITY, VR::CS, item.modality),
            text(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, item.station),
            text(
                tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
                VR::DA,
                item.start_date,
            ),
            text(
                tags::SCHEDULED_PROCEDURE_STEP_START_TIME,
                VR::TM,
                item.start_time,
            ),
            text(
                tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME,
                VR::PN,
                "Grey^Meredith",
            ),
            text(
                tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
                VR::LO,
                item.step_description,
            ),
            text(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, &item.step_id),
        ] {
            step.put(element);
        }
        let mut object = InMemDicomObject::new_empty();
        for element in [
            text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            text(tags::ACCESSION_NUMBER, VR::SH, &item.accession),
            text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "House^Gregory"),
            text(tags::PATIENT_NAME, VR::PN, item.patient_name),
            text(tags::PATIENT_ID, VR::LO, &item.patient_id),
            text(tags::PATIENT_BIRTH_DATE, VR::DA, "19800101"),
            text(tags::PATIENT_SEX, VR::CS, "O"),
            text(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                &format!("{}.8.{}", support::qr::QR_UID_ROOT, index + 1),
            ),
            text(
                tags::REQUESTED_PROCEDURE_DESCRIPTION,
                VR::LO,
                item.step_description,
            ),
            text(tags::REQUESTED_PROCEDURE_ID, VR::SH, &item.step_id),
        ] {
            object.put(element);
        }
        object.put(DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::SQ,
            DataSetSequence::new(vec![step], Length::UNDEFINED),
        ));
        let instance = format!("{}.9.{}", support::qr::QR_UID_ROOT, index + 1);
        let file = object
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(EXPLICIT_VR_LE)
                    .media_storage_sop_class_uid(MODALITY_WORKLIST_FIND)
                    .media_storage_sop_instance_uid(instance),
            )
            .expect("file meta of a worklist item");
        let path = folder.join(format!("{}.wl", item.accession));
        file.write_to_file(&path)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
}

/// What a worklist response says of one item: the accession number with the patient's and the
/// scheduled step's values.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct WorklistAnswer {
    accession: String,
    patient_name: String,
    patient_id: String,
    modality: String,
    station: String,
    start_date: String,
    start_time: String,
}

impl WorklistAnswer {
    fn of(item: &WorklistItem) -> WorklistAnswer {
        WorklistAnswer {
            accession: item.accession.clone(),
            patient_name: item.patient_name.to_owned(),
            patient_id: item.patient_id.clone(),
            modality: item.modality.to_owned(),
            station: item.station.to_owned(),
            start_date: item.start_date.to_owned(),
            start_time: item.start_time.to_owned(),
        }
    }

    /// From a response file (DCMTK findscu -X), read with dicom-object.
    fn read(path: &Path) -> WorklistAnswer {
        let object = dicom_object::open_file(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let text = |object: &InMemDicomObject, tag: Tag| -> String {
            object
                .element(tag)
                .unwrap_or_else(|error| panic!("{tag} in {}: {error}", path.display()))
                .to_str()
                .unwrap_or_else(|error| panic!("{tag} in {}: {error}", path.display()))
                .into_owned()
        };
        let items = object
            .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
            .unwrap_or_else(|error| panic!("no SPS sequence in {}: {error}", path.display()))
            .items()
            .unwrap_or_else(|| panic!("the SPS sequence of {} is not one", path.display()));
        assert_eq!(items.len(), 1, "one scheduled step in {}", path.display());
        let step = &items[0];
        WorklistAnswer {
            accession: text(&object, tags::ACCESSION_NUMBER),
            patient_name: text(&object, tags::PATIENT_NAME),
            patient_id: text(&object, tags::PATIENT_ID),
            modality: text(step, tags::MODALITY),
            station: text(step, tags::SCHEDULED_STATION_AE_TITLE),
            start_date: text(step, tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
            start_time: text(step, tags::SCHEDULED_PROCEDURE_STEP_START_TIME),
        }
    }

    /// From one object of `dimsum findscu --json`.
    fn from_json(object: &serde_json::Value) -> WorklistAnswer {
        let top = json_match(object);
        let sequence = &object[format!(
            "{:04X}{:04X}",
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE.group(),
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE.element()
        )];
        let items = sequence["Value"]
            .as_array()
            .unwrap_or_else(|| panic!("no SPS sequence items in {object}"));
        assert_eq!(items.len(), 1, "one scheduled step in {object}");
        let step = json_match(&items[0]);
        let get = |found: &Match, tag: Tag| {
            found
                .get(&tag)
                .cloned()
                .unwrap_or_else(|| panic!("no {tag} in {object}"))
        };
        WorklistAnswer {
            accession: get(&top, tags::ACCESSION_NUMBER),
            patient_name: get(&top, tags::PATIENT_NAME),
            patient_id: get(&top, tags::PATIENT_ID),
            modality: get(&step, tags::MODALITY),
            station: get(&step, tags::SCHEDULED_STATION_AE_TITLE),
            start_date: get(&step, tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
            start_time: get(&step, tags::SCHEDULED_PROCEDURE_STEP_START_TIME),
        }
    }
}

/// The worklist keys: a modality, a start date (range), the station and what to return.
fn worklist_keys(modality: &str, dates: &str, station: &str) -> Vec<String> {
    let sps = "ScheduledProcedureStepSequence[0]";
    vec![
        "PatientName".to_owned(),
        "PatientID".to_owned(),
        "AccessionNumber".to_owned(),
        format!("{sps}.Modality={modality}"),
        format!("{sps}.ScheduledStationAETitle={station}"),
        format!("{sps}.ScheduledProcedureStepStartDate={dates}"),
        format!("{sps}.ScheduledProcedureStepStartTime"),
    ]
}

/// The answers `expected` predicts: the items that `keep` selects.
fn expected_answers(keep: impl Fn(&WorklistItem) -> bool) -> BTreeSet<WorklistAnswer> {
    worklist()
        .iter()
        .filter(|item| keep(item))
        .map(WorklistAnswer::of)
        .collect()
}

#[test]
fn modality_worklist_read_by_dcmtk_findscu_and_ours() {
    let dir = scratch_dir("qr-worklist");
    let worklist = dir.join("worklist");
    write_worklist(&worklist);
    let server = DimsumQrscp::start(
        &dir,
        DimsumQrscp::AE_TITLE,
        &dir.join("archive"),
        &["--worklist", &worklist.to_string_lossy()],
    );

    // DCMTK findscu -W: CT steps from the 10th to the 15th of March
    let keys = worklist_keys("CT", "20250310-20250315", "");
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let Some(found) = QrClient::Dcmtk.find(
        &dir,
        "dcmtk",
        server.address(),
        QrModel::ModalityWorklist,
        &keys,
        &[],
    ) else {
        return;
    };
    let log = exited_ok(&found.finished, &[server.describe()]);
    assert_contains(
        &found.finished.output(),
        "Received Final Find Response (Success)",
        &log,
    );
    let answers: Vec<WorklistAnswer> = found
        .identifiers
        .iter()
        .map(|response| WorklistAnswer::read(&response.path))
        .collect();
    let expected = expected_answers(|item| {
        item.modality == "CT" && ("20250310"..="20250315").contains(&item.start_date)
    });
    assert_eq!(expected.len(), 2, "the query selects two of the items");
    assert_eq!(answers.len(), expected.len(), "{answers:#?}\n{log}");
    assert_eq!(
        answers.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "{log}"
    );

    // ours, -W with JSON output: the same query, then one by station from the 1st of March on
    for (label, station, dates, expected) in [
        (
            "ours-ct",
            "",
            "20250310-20250315",
            expected_answers(|item| {
                item.modality == "CT" && ("20250310"..="20250315").contains(&item.start_date)
            }),
        ),
        (
            "ours-station",
            "CT02",
            "20250301-",
            expected_answers(|item| item.station == "CT02"),
        ),
    ] {
        let keys = worklist_keys("CT", dates, station);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let found = dimsum_findscu(
            &dir,
            label,
            server.address(),
            QrModel::ModalityWorklist,
            &keys,
            FindOutput::Json,
            &[],
        );
        let log = exited_ok(&found.finished, &[server.describe()]);
        let answers: Vec<WorklistAnswer> =
            found.json.iter().map(WorklistAnswer::from_json).collect();
        assert_eq!(answers.len(), expected.len(), "{answers:#?}\n{log}");
        assert_eq!(
            answers.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{log}"
        );
    }
}
