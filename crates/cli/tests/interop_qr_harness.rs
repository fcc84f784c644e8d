//! Proves the Query/Retrieve interop harness (`support::qr`) that the Q/R interop tests stand
//! on: the generated test archive is what its description says, and the real Q/R peers — DCMTK
//! `dcmqrscp` and pynetdicom's `qrscp` — once loaded with it, answer DCMTK's own `findscu`,
//! `getscu` and `movescu` (the tools ours are compared with) with exactly what was loaded:
//! the studies, their attributes, the instances of a study with their pixel data and whole
//! data sets, delivered on the C-GET association or to a DCMTK `storescp` move destination.
//!
//! A missing peer skips the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS` is
//! set. Install the peers with `scripts/setup-peers`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use dimsum_net::dataset::dicom_dictionary_std::tags;
use support::qr::{
    QrClient, QrDataSet, QrIdentifier, QrInstance, QrModel, QrPeer, QrPeerKind, STUDY_KEYS,
    StorescpDestination, assert_received_instances, pixel_data_bytes, retrieve_scratch_dir,
};
use support::scratch_dir;

/// Asserts that a STUDY-level response carries the attributes of the study it names.
#[track_caller]
fn assert_study_response(data: &QrDataSet, response: &QrIdentifier, context: &str) {
    let uid = response.require(tags::STUDY_INSTANCE_UID);
    assert!(
        data.study_uids().contains(uid),
        "a response names study {uid}, which was not loaded\n{context}"
    );
    let item = data.study(uid);
    let expected = [
        (tags::QUERY_RETRIEVE_LEVEL, "STUDY"),
        (tags::PATIENT_NAME, item.patient.patient_name.as_str()),
        (tags::PATIENT_ID, item.patient.patient_id.as_str()),
        (tags::STUDY_DATE, item.study.study_date.as_str()),
        (tags::STUDY_TIME, item.study.study_time.as_str()),
        (tags::ACCESSION_NUMBER, item.study.accession_number.as_str()),
        (tags::STUDY_ID, item.study.study_id.as_str()),
    ];
    for (tag, value) in expected {
        assert_eq!(
            response.get(tag),
            Some(value),
            "{tag} of study {uid} in {}: {:#?}\n{context}",
            response.path.display(),
            response.elements
        );
    }
}

/// The study-level find of both peers: every loaded study comes back with its attributes; a
/// find by Patient ID returns that patient's studies only. Returns the responses per study.
fn find_studies(peer: QrPeerKind, label: &str) -> Option<BTreeMap<String, usize>> {
    let dir = scratch_dir(label);
    let data = QrDataSet::get();
    let server = QrPeer::start_loaded(peer, &dir, &[])?;
    let address = server.address();

    let all = QrClient::Dcmtk.find(
        &dir,
        "all-studies",
        address,
        QrModel::StudyRoot,
        STUDY_KEYS,
        &[],
    )?;
    let context = format!("{}\n{}", all.finished.describe(), server.describe());
    all.finished.assert_code(0);
    assert!(
        all.finished
            .output()
            .contains("Received Final Find Response (Success)"),
        "findscu did not end with Success\n{context}"
    );
    let mut per_study = BTreeMap::new();
    for response in &all.identifiers {
        assert_study_response(data, response, &context);
        *per_study
            .entry(response.require(tags::STUDY_INSTANCE_UID).to_owned())
            .or_insert(0) += 1;
    }
    let found: BTreeSet<String> = per_study.keys().cloned().collect();
    assert_eq!(found, data.study_uids(), "studies found\n{context}");

    // a matching key reaches the peer: one patient's studies, nothing else
    let patient = &data.patients[0];
    let patient_key = format!("PatientID={}", patient.patient_id);
    let mut keys = STUDY_KEYS.to_vec();
    keys.retain(|key| *key != "PatientID");
    keys.push(&patient_key);
    let one = QrClient::Dcmtk.find(&dir, "one-patient", address, QrModel::StudyRoot, &keys, &[])?;
    let context = format!("{}\n{}", one.finished.describe(), server.describe());
    one.finished.assert_code(0);
    let found: BTreeSet<&str> = one
        .identifiers
        .iter()
        .map(|response| response.require(tags::STUDY_INSTANCE_UID))
        .collect();
    let expected: BTreeSet<&str> = patient
        .studies
        .iter()
        .map(|study| study.study_instance_uid.as_str())
        .collect();
    assert_eq!(found, expected, "studies of {patient_key}\n{context}");
    Some(per_study)
}

#[test]
fn generated_data_set_is_what_its_description_says() {
    let data = QrDataSet::get();
    // the shape the Q/R tests rely on
    assert_eq!(data.patients.len(), 3);
    assert_eq!(data.studies().len(), 4);
    assert_eq!(data.instances().len(), 11);
    assert_eq!(data.files().len(), 11);
    assert_eq!(
        data.sop_instance_uids().len(),
        11,
        "SOP Instance UIDs are unique"
    );
    let two = data.two_modality_study();
    assert_eq!(two.study.modalities(), BTreeSet::from(["CT", "OT"]));
    let sop_classes: BTreeSet<&str> = data
        .instances()
        .iter()
        .map(|item| item.instance.sop_class_uid.as_str())
        .collect();
    assert_eq!(
        sop_classes,
        BTreeSet::from([
            support::qr::CT_IMAGE_STORAGE,
            support::qr::MR_IMAGE_STORAGE,
            support::qr::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ])
    );
    let dates: BTreeSet<&str> = data
        .studies()
        .iter()
        .map(|item| item.study.study_date.as_str())
        .collect();
    assert_eq!(dates.len(), 4, "every study has its own date");
    assert!(
        data.patients
            .iter()
            .all(|patient| patient.patient_name.contains('^'))
    );
    assert!(
        data.instances()
            .iter()
            .any(|item| item.instance.transfer_syntax == support::IMPLICIT_VR_LE),
        "one file is in Implicit VR Little Endian"
    );

    // every file holds what the description says, read back with dicom-object
    for item in data.instances() {
        let file = QrIdentifier::read(&item.instance.path);
        let expected = [
            (tags::SOP_CLASS_UID, item.instance.sop_class_uid.clone()),
            (
                tags::SOP_INSTANCE_UID,
                item.instance.sop_instance_uid.clone(),
            ),
            (tags::PATIENT_ID, item.patient.patient_id.clone()),
            (tags::PATIENT_NAME, item.patient.patient_name.clone()),
            (tags::PATIENT_BIRTH_DATE, item.patient.birth_date.clone()),
            (
                tags::STUDY_INSTANCE_UID,
                item.study.study_instance_uid.clone(),
            ),
            (tags::STUDY_DATE, item.study.study_date.clone()),
            (tags::ACCESSION_NUMBER, item.study.accession_number.clone()),
            (
                tags::SERIES_INSTANCE_UID,
                item.series.series_instance_uid.clone(),
            ),
            (tags::MODALITY, item.series.modality.clone()),
            (tags::SERIES_NUMBER, item.series.series_number.to_string()),
            (
                tags::INSTANCE_NUMBER,
                item.instance.instance_number.to_string(),
            ),
            (tags::ROWS, item.instance.rows.to_string()),
        ];
        for (tag, value) in expected {
            assert_eq!(
                file.get(tag),
                Some(value.as_str()),
                "{tag} in {}",
                item.instance.path.display()
            );
        }
        let (meta, _) = dimsum_net::dataset::read_meta(
            &mut std::fs::File::open(&item.instance.path).expect("open a generated file"),
        )
        .expect("a generated file has a valid file meta");
        assert_eq!(meta.transfer_syntax_uid, item.instance.transfer_syntax);
        assert_eq!(
            meta.media_storage_sop_instance_uid,
            item.instance.sop_instance_uid
        );
        let expected_len = usize::from(item.instance.rows)
            * usize::from(item.instance.columns)
            * usize::from(item.instance.bits_allocated / 8);
        assert_eq!(pixel_data_bytes(&item.instance.path).len(), expected_len);
    }
    // pixel data differs between instances (a mixed-up retrieve cannot compare equal)
    let ct: Vec<&QrInstance> = two.study.series[0].instances.iter().collect();
    assert_ne!(pixel_data_bytes(&ct[0].path), pixel_data_bytes(&ct[1].path));
}

#[test]
fn dcmqrscp_finds_exactly_the_loaded_studies() {
    let Some(per_study) = find_studies(QrPeerKind::Dcmqrscp, "qr-harness-dcmqrscp-find") else {
        return;
    };
    // dcmqrscp answers one response per study
    assert!(per_study.values().all(|count| *count == 1), "{per_study:?}");
}

#[test]
fn pynetdicom_qrscp_finds_exactly_the_loaded_studies() {
    let Some(per_study) = find_studies(QrPeerKind::Pynetdicom, "qr-harness-pynetdicom-find") else {
        return;
    };
    // pynetdicom's qrscp answers one response per matching instance, at every level
    let data = QrDataSet::get();
    for (uid, count) in &per_study {
        assert_eq!(
            *count,
            data.study(uid).study.instances().count(),
            "responses for study {uid}"
        );
    }
}

#[test]
fn dcmqrscp_finds_the_instances_of_a_series_hierarchically() {
    let dir = scratch_dir("qr-harness-dcmqrscp-image-level");
    let data = QrDataSet::get();
    let Some(server) = QrPeer::start_loaded(QrPeerKind::Dcmqrscp, &dir, &[]) else {
        return;
    };
    let study = data.two_modality_study().study;
    let series = &study.series[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let series_key = format!("SeriesInstanceUID={}", series.series_instance_uid);
    let keys = [
        "QueryRetrieveLevel=IMAGE",
        &study_key,
        &series_key,
        "SOPInstanceUID",
        "InstanceNumber",
    ];
    let Some(found) = QrClient::Dcmtk.find(
        &dir,
        "image",
        server.address(),
        QrModel::StudyRoot,
        &keys,
        &[],
    ) else {
        return;
    };
    let context = format!("{}\n{}", found.finished.describe(), server.describe());
    found.finished.assert_code(0);
    let instances: BTreeMap<String, String> = found
        .identifiers
        .iter()
        .map(|response| {
            (
                response.require(tags::SOP_INSTANCE_UID).to_owned(),
                response.require(tags::INSTANCE_NUMBER).to_owned(),
            )
        })
        .collect();
    let expected = series.instance_numbers();
    assert_eq!(instances, expected, "instances of the series\n{context}");
    assert_eq!(found.identifiers.len(), series.instances.len(), "{context}");
}

/// C-GET of the two-modality study with DCMTK getscu: exactly its instances, whole data sets.
fn get_study(peer: QrPeerKind, label: &str) {
    let Some(dir) = retrieve_scratch_dir(label) else {
        return;
    };
    let Some(server) = QrPeer::start_loaded(peer, &dir, &[]) else {
        return;
    };
    let study = QrDataSet::get().two_modality_study().study;
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let keys = ["QueryRetrieveLevel=STUDY", study_key.as_str()];
    let address = server.address();
    let Some((finished, received)) =
        QrClient::Dcmtk.get(&dir, "retrieved", address, QrModel::StudyRoot, &keys, &[])
    else {
        return;
    };
    let context = format!("{}\n{}", finished.describe(), server.describe());
    finished.assert_code(0);
    let expected: Vec<&QrInstance> = study.instances().collect();
    assert_received_instances(&dir, &expected, &received, &context);
}

test_against_both_peers!(
    get_study: dcmqrscp_getscu_retrieves_a_study,
    pynetdicom_qrscp_getscu_retrieves_a_study
);

/// C-MOVE of a study to a DCMTK storescp with DCMTK movescu: it receives exactly the study's
/// instances, whole data sets.
fn move_study(peer: QrPeerKind, label: &str) {
    let Some(dir) = retrieve_scratch_dir(label) else {
        return;
    };
    let Some((destination, server)) = QrPeer::start_loaded_with_storescp(peer, &dir, &[]) else {
        return;
    };
    // the study of the second patient: MR in two series
    let study = &QrDataSet::get().patients[1].studies[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let keys = ["QueryRetrieveLevel=STUDY", study_key.as_str()];
    let Some(finished) = QrClient::Dcmtk.move_to(
        &dir,
        "to-storescp",
        server.address(),
        QrModel::StudyRoot,
        StorescpDestination::AE_TITLE,
        &keys,
        &[],
    ) else {
        return;
    };
    let context = format!(
        "{}\n{}\n{}",
        finished.describe(),
        server.describe(),
        destination.describe()
    );
    finished.assert_code(0);
    destination.assert_received_study(&dir, study, &context);
}

test_against_both_peers!(
    move_study: dcmqrscp_movescu_delivers_a_study_to_storescp,
    pynetdicom_qrscp_movescu_delivers_a_study_to_storescp
);
