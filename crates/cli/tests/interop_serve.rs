//! `dimsum serve` (the archive, issue 8) end to end with peers we did not write, asserting on
//! content:
//!
//! 1. DCMTK `storescu +sd` loads the Q/R data set; DCMTK `findscu` finds it at PATIENT, STUDY,
//!    SERIES and IMAGE level (Patient Root, Study Root, Patient/Study Only) with wildcards,
//!    closed and open date and time ranges, UID lists and universal keys, the identifiers
//!    compared with what was stored, the keys the archive computes included (Number of
//!    Patient/Study/Series Related ..., Modalities and SOP Classes in Study); a SERIES query in
//!    Patient/Study Only is refused (0xA900);
//! 2. DCMTK `getscu` and `movescu` (to DCMTK `storescp`, a `--peer`) retrieve a study, a series
//!    and an instance: exactly those instances arrive, data sets equal to the files sent; a move
//!    to an AE title the archive does not know is refused (0xA801);
//! 3. the same finds and retrieves with pynetdicom's `findscu`, `getscu` and `movescu` apps;
//! 4. Storage Commitment from pynetdicom: stored instances committed, unknown ones failed with
//!    0x0112, a stored one named under another SOP class failed with 0x0119; the report on the
//!    request's association, and (the requestor having released) on a new one to its `--peer`;
//! 5. a stop with SIGTERM (exit 0, statistics printed) and a restart on the same data
//!    directory find and retrieve everything; `--scan DIR --scan-only` indexes a folder and
//!    exits, and a server on that data directory serves its files;
//! 6. SIGKILL during a batch of 200 instances from DCMTK `storescu`: after a restart every
//!    instance acknowledged is found, every instance found is retrieved by C-GET with a complete,
//!    equal data set, index and files agree, and no temporary file is left;
//! 7. hostile C-FIND values (literal `%` and `_`, quotes, brackets, a 10 MB value, a
//!    pathological wildcard, 1,000 keys) from DCMTK `findscu` and pynetdicom's: only correct
//!    matches come back (every one of the 1,000 keys with them), a query in UTF-8 finds a name
//!    stored in Latin-1, and the server goes on answering C-ECHO; the 10 MB value sent in
//!    Explicit VR too (as UN, how DCMTK and pydicom send a text value over 64 KiB), answered
//!    in bounded time and memory.
//!
//! Tests 1–4 and 7 run twice: on the embedded SQLite index, and (`…_on_postgres`) on a fresh
//! PostgreSQL database of the test server `scripts/test` starts (`DIMSUM_TEST_POSTGRES`,
//! `dimsum serve --index URL`): one suite, two backends.
//!
//! Each test runs its own server on a free port of 127.0.0.1 over a data directory of its own
//! under cargo's target tmp dir. A missing peer skips the test (prints `SKIP:`), or fails it
//! when `DIMSUM_REQUIRE_PEERS` is set. Install the peers with `scripts/setup-peers`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use dimsum_net::dataset::dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dimsum_net::dataset::dicom_core::header::Header;
use dimsum_net::dataset::dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::{StandardDataDictionary, tags};
use dimsum_net::dataset::dicom_object::{self, FileMetaTableBuilder, InMemDicomObject};
use support::postgres::Backend;
use support::qr::{
    AeAddress, CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, QrClient, QrDataSet, QrIdentifier, QrInstance,
    QrModel, STUDY_KEYS, StorescpDestination, assert_received_instances, retrieve_scratch_dir,
    text_element,
};
use support::serve::{
    DimsumServe, IngestBatch, InstanceSpec, SERVE_AE, SERVE_UID_ROOT, acknowledged_files,
    assert_echo, copy_into, hidden_files, statistic, store_folder, stored_sop_instance_uids,
    storescu_folder_command, wait_closely, write_instance,
};
use support::{
    Finished, LOCALHOST, ProcessGuard, RUN_TIMEOUT, dcmtk, dimsum, free_port, pynetdicom, run,
    scratch_dir,
};

/// Study Root Query/Retrieve Information Model – FIND (PS3.4 C.6.2.1.1), the SOP class named in
/// the meta of the query files the tests write.
const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
/// The calling AE title of the pynetdicom Storage Commitment SCU.
const COMMIT_SCU_AE: &str = "PYCOMMITSCU";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The scratch folder `label` and `dimsum serve` on `<dir>/data` with `args`, loaded with the
/// Q/R data set by DCMTK `storescu +sd` (a copy of its files in `<dir>/to-store`). `None` (after
/// `SKIP:`) when DCMTK or the Python environment that compares data sets is missing.
fn loaded_archive(label: &str, backend: Backend, args: &[&str]) -> Option<(PathBuf, DimsumServe)> {
    let label = format!("{label}-{}", backend.name());
    let dir = retrieve_scratch_dir(&label)?;
    let server = serve_on(backend, &label, &dir, args)?;
    load_data_set(&dir, &server)?;
    Some((dir, server))
}

/// `dimsum serve` on `<dir>/data` with `args`, its index on `backend`. `None` (after `SKIP:`)
/// when PostgreSQL is missing.
fn serve_on(backend: Backend, label: &str, dir: &Path, args: &[&str]) -> Option<DimsumServe> {
    let mut all = backend.serve_args(label)?;
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    Some(DimsumServe::start(dir, &dir.join("data"), &all))
}

/// Sends the Q/R data set to `server` with DCMTK `storescu +sd` (every file answered Success).
fn load_data_set(dir: &Path, server: &DimsumServe) -> Option<Finished> {
    let data = QrDataSet::get();
    let folder = dir.join("to-store");
    copy_into(&data.files(), &folder);
    store_folder(
        dir,
        "storescu-load",
        server.address(),
        &folder,
        data.files().len(),
        || server.describe(),
    )
}

/// Tags whose values are sets (their order carries no meaning): compared sorted.
const SET_VALUED: [Tag; 2] = [tags::MODALITIES_IN_STUDY, tags::SOP_CLASSES_IN_STUDY];

/// A value as compared: the components of a set-valued attribute sorted.
fn normalised(tag: Tag, value: &str) -> String {
    if SET_VALUED.contains(&tag) {
        let mut parts: Vec<&str> = value.split('\\').collect();
        parts.sort_unstable();
        parts.join("\\")
    } else {
        value.to_owned()
    }
}

/// What one entity (a patient, study, series or instance) should answer: `(tag, value)` pairs.
type Expected = Vec<(Tag, String)>;

/// Asserts that `responses` are exactly one per entry of `expected`, told apart by the value of
/// `key`, each holding the values of its entry (and `key` itself).
#[track_caller]
fn assert_entities(
    responses: &[QrIdentifier],
    key: Tag,
    expected: &BTreeMap<String, Expected>,
    log: &str,
) {
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for response in responses {
        let value = response
            .get(key)
            .unwrap_or_else(|| panic!("a response has no {key}: {:#?}\n{log}", response.elements));
        *found.entry(value.to_owned()).or_default() += 1;
        let Some(values) = expected.get(value) else {
            panic!(
                "a response names {value}, which the query must not match: {:#?}\n{log}",
                response.elements
            );
        };
        for (tag, wanted) in values {
            let got = response.get(*tag).map(|got| normalised(*tag, got));
            assert_eq!(
                got.as_deref(),
                Some(normalised(*tag, wanted).as_str()),
                "{tag} of {value}: {:#?}\n{log}",
                response.elements
            );
        }
    }
    let found_keys: BTreeSet<&String> = found.keys().collect();
    let expected_keys: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(found_keys, expected_keys, "entities found ({key})\n{log}");
    assert!(
        found.values().all(|count| *count == 1),
        "an entity came more than once: {found:?}\n{log}"
    );
}

/// The same as [`assert_entities`], with only the key of each entity expected.
#[track_caller]
fn assert_keys(responses: &[QrIdentifier], key: Tag, expected: &[&str], log: &str) {
    let expected: BTreeMap<String, Expected> = expected
        .iter()
        .map(|value| ((*value).to_owned(), Vec::new()))
        .collect();
    assert_entities(responses, key, &expected, log);
}

/// Whether a client's log shows that a C-FIND ended with Success (DCMTK's `-d` shows the
/// status on a line of its own).
fn find_succeeded(client: QrClient, log: &str) -> bool {
    match client {
        QrClient::Pynetdicom => log.contains("Find SCP Result: 0x0000 (Success)"),
        QrClient::Dcmtk | QrClient::Dimsum => {
            log.contains("Received Final Find Response (Success)")
                || log.contains("DIMSE Status                  : 0x0000: Success")
        }
    }
}

/// A Q/R client against the archive, checking each run's exit and final status.
struct Against<'a> {
    client: QrClient,
    dir: &'a Path,
    server: &'a DimsumServe,
}

impl<'a> Against<'a> {
    /// `client` against the archive `server`, its runs in `dir`.
    fn new(client: QrClient, dir: &'a Path, server: &'a DimsumServe) -> Self {
        Against {
            client,
            dir,
            server,
        }
    }

    /// The client's name, to label its runs.
    fn name(&self) -> &'static str {
        match self.client {
            QrClient::Dcmtk => "dcmtk",
            QrClient::Dimsum => "dimsum",
            QrClient::Pynetdicom => "pynetdicom",
        }
    }

    /// Runs its findscu with `keys` (and `args`): the responses and the logs, after checking
    /// that it exited 0 with a final Success. `None` (after `SKIP:`) when it is missing.
    fn find(
        &self,
        label: &str,
        model: QrModel,
        keys: &[&str],
        args: &[&str],
    ) -> Option<(Vec<QrIdentifier>, String)> {
        let label = format!("{}-find-{label}", self.name());
        let found = self
            .client
            .find(self.dir, &label, self.server.address(), model, keys, args)?;
        let log = format!("{}\n{}", found.finished.describe(), self.server.describe());
        found.finished.assert_code(0);
        assert!(
            find_succeeded(self.client, &found.finished.output()),
            "the find did not end with Success\n{log}"
        );
        Some((found.identifiers, log))
    }

    /// Runs its getscu with `keys` (the run named `label`): asserts that it exited 0 and that
    /// exactly `expected` arrived, data sets equal to the files sent. `None` (after `SKIP:`)
    /// when it is missing.
    fn get_exactly(
        &self,
        label: &str,
        model: QrModel,
        keys: &[&str],
        expected: &[&QrInstance],
    ) -> Option<()> {
        let (got, received) =
            self.client
                .get(self.dir, label, self.server.address(), model, keys, &[])?;
        let log = format!("{}\n{}", got.describe(), self.server.describe());
        got.assert_code(0);
        assert_received_instances(self.dir, expected, &received, &log);
        Some(())
    }
}

/// The PATIENT-level values of each patient of the data set, keyed by Patient ID.
fn patients_expected(data: &QrDataSet) -> BTreeMap<String, Expected> {
    data.patients
        .iter()
        .map(|patient| {
            let series: usize = patient.studies.iter().map(|study| study.series.len()).sum();
            let instances: usize = patient
                .studies
                .iter()
                .map(|study| study.instances().count())
                .sum();
            let values = vec![
                (tags::PATIENT_NAME, patient.patient_name.clone()),
                (tags::PATIENT_BIRTH_DATE, patient.birth_date.clone()),
                (tags::PATIENT_SEX, patient.sex.clone()),
                (
                    tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
                    patient.studies.len().to_string(),
                ),
                (tags::NUMBER_OF_PATIENT_RELATED_SERIES, series.to_string()),
                (
                    tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
                    instances.to_string(),
                ),
            ];
            (patient.patient_id.clone(), values)
        })
        .collect()
}

/// The STUDY-level keys of the universal study finds: [`STUDY_KEYS`] and the computed ones.
fn study_keys() -> Vec<&'static str> {
    let mut keys = STUDY_KEYS.to_vec();
    keys.extend([
        "StudyDescription",
        "ReferringPhysicianName",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ]);
    keys
}

/// The values [`study_keys`] return for each study of the data set, keyed by Study Instance UID.
fn studies_expected(data: &QrDataSet) -> BTreeMap<String, Expected> {
    data.studies()
        .into_iter()
        .map(|item| {
            let (patient, study) = (item.patient, item.study);
            let classes: BTreeSet<&str> = study
                .instances()
                .map(|instance| instance.sop_class_uid.as_str())
                .collect();
            let modalities: Vec<&str> = study.modalities().into_iter().collect();
            let values = vec![
                (tags::QUERY_RETRIEVE_LEVEL, "STUDY".to_owned()),
                (tags::PATIENT_NAME, patient.patient_name.clone()),
                (tags::PATIENT_ID, patient.patient_id.clone()),
                (tags::STUDY_DATE, study.study_date.clone()),
                (tags::STUDY_TIME, study.study_time.clone()),
                (tags::ACCESSION_NUMBER, study.accession_number.clone()),
                (tags::STUDY_ID, study.study_id.clone()),
                (tags::STUDY_DESCRIPTION, study.description.clone()),
                (
                    tags::REFERRING_PHYSICIAN_NAME,
                    study.referring_physician.clone(),
                ),
                (tags::MODALITIES_IN_STUDY, modalities.join("\\")),
                (
                    tags::SOP_CLASSES_IN_STUDY,
                    classes.into_iter().collect::<Vec<_>>().join("\\"),
                ),
                (
                    tags::NUMBER_OF_STUDY_RELATED_SERIES,
                    study.series.len().to_string(),
                ),
                (
                    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                    study.instances().count().to_string(),
                ),
            ];
            (study.study_instance_uid.clone(), values)
        })
        .collect()
}

/// `studies_expected` restricted to the studies `keep` selects.
fn studies_where(
    data: &QrDataSet,
    keep: impl Fn(&support::qr::StudyRef<'_>) -> bool,
) -> BTreeMap<String, Expected> {
    let all = studies_expected(data);
    data.studies()
        .iter()
        .filter(|item| keep(item))
        .map(|item| {
            let uid = &item.study.study_instance_uid;
            (uid.clone(), all[uid].clone())
        })
        .collect()
}

/// Finds of every kind the archive must answer, with `on`'s client, each compared with the data
/// set: PATIENT, STUDY, SERIES and IMAGE level; wildcards, ranges, UID lists, universal keys.
fn check_finds(on: &Against<'_>) -> Option<()> {
    let data = QrDataSet::get();
    let studies = data.studies();

    // PATIENT level, Patient Root, universal keys and the computed patient keys
    let patient_keys = [
        "QueryRetrieveLevel=PATIENT",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ];
    let (found, log) = on.find("patients", QrModel::PatientRoot, &patient_keys, &[])?;
    assert_entities(&found, tags::PATIENT_ID, &patients_expected(data), &log);

    // PATIENT level: wildcards `*` and `?`
    for (label, name, expected) in [
        ("patients-doe", "PatientName=Doe*", vec!["QR-0001"]),
        ("patients-smith", "PatientName=Sm?th^J*", vec!["QR-0002"]),
        ("patients-maria", "PatientName=*Maria*", vec!["QR-0003"]),
        ("patients-none", "PatientName=Doe", vec![]),
    ] {
        let keys = ["QueryRetrieveLevel=PATIENT", "PatientID", name];
        let (found, log) = on.find(label, QrModel::PatientRoot, &keys, &[])?;
        assert_keys(&found, tags::PATIENT_ID, &expected, &log);
    }

    // STUDY level, Study Root, universal keys with the computed study keys
    let keys = study_keys();
    let (found, log) = on.find("studies", QrModel::StudyRoot, &keys, &[])?;
    assert_entities(
        &found,
        tags::STUDY_INSTANCE_UID,
        &studies_expected(data),
        &log,
    );

    // STUDY level: a wildcard and a closed date range, open ranges, a time range
    let doe_2023 = studies_where(data, |item| {
        item.patient.patient_id == "QR-0001" && item.study.study_date.starts_with("2023")
    });
    let since_2023 = studies_where(data, |item| item.study.study_date.as_str() >= "20230101");
    let until_march_2022 = studies_where(data, |item| item.study.study_date.as_str() <= "20220301");
    let morning = studies_where(data, |item| {
        ("080000".."120001").contains(&item.study.study_time.as_str())
    });
    for (label, matching, expected) in [
        (
            "studies-doe-range",
            vec!["PatientName=Doe*", "StudyDate=20220101-20231231"],
            &doe_2023,
        ),
        ("studies-since", vec!["StudyDate=20230101-"], &since_2023),
        (
            "studies-until",
            vec!["StudyDate=-20220301"],
            &until_march_2022,
        ),
        ("studies-morning", vec!["StudyTime=080000-120000"], &morning),
    ] {
        let mut keys: Vec<&str> = study_keys()
            .into_iter()
            .filter(|key| !matching.iter().any(|m| m.starts_with(&format!("{key}="))))
            .collect();
        keys.extend(matching.iter().copied());
        let (found, log) = on.find(label, QrModel::StudyRoot, &keys, &[])?;
        assert_entities(&found, tags::STUDY_INSTANCE_UID, expected, &log);
    }

    // STUDY level: a list of UIDs, and matching on a computed key
    let (first, last) = (&studies[0].study, &studies[studies.len() - 1].study);
    let uid_list = format!(
        "StudyInstanceUID={}\\{}",
        first.study_instance_uid, last.study_instance_uid
    );
    let keys = ["QueryRetrieveLevel=STUDY", uid_list.as_str(), "PatientID"];
    let (found, log) = on.find("studies-uid-list", QrModel::StudyRoot, &keys, &[])?;
    assert_keys(
        &found,
        tags::STUDY_INSTANCE_UID,
        &[&first.study_instance_uid, &last.study_instance_uid],
        &log,
    );
    let with_ot = studies_where(data, |item| item.study.modalities().contains("OT"));
    let keys = [
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "ModalitiesInStudy=OT",
    ];
    let (found, log) = on.find("studies-with-ot", QrModel::StudyRoot, &keys, &[])?;
    let with_ot: Vec<&str> = with_ot.keys().map(String::as_str).collect();
    assert_keys(&found, tags::STUDY_INSTANCE_UID, &with_ot, &log);

    // SERIES level, Study Root, universal keys of the two-modality study's series
    let two = data.two_modality_study();
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let keys = [
        "QueryRetrieveLevel=SERIES",
        study_key.as_str(),
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ];
    let (found, log) = on.find("series", QrModel::StudyRoot, &keys, &[])?;
    let expected: BTreeMap<String, Expected> = two
        .study
        .series
        .iter()
        .map(|series| {
            let values = vec![
                (
                    tags::STUDY_INSTANCE_UID,
                    two.study.study_instance_uid.clone(),
                ),
                (tags::MODALITY, series.modality.clone()),
                (tags::SERIES_NUMBER, series.series_number.to_string()),
                (tags::SERIES_DESCRIPTION, series.description.clone()),
                (
                    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
                    series.instances.len().to_string(),
                ),
            ];
            (series.series_instance_uid.clone(), values)
        })
        .collect();
    assert_entities(&found, tags::SERIES_INSTANCE_UID, &expected, &log);

    // SERIES level, Patient Root, a single value and a wildcard below the patient and study
    let smith = &data.patients[1];
    let knee = &smith.studies[0];
    let patient_key = format!("PatientID={}", smith.patient_id);
    let study_key = format!("StudyInstanceUID={}", knee.study_instance_uid);
    let keys = [
        "QueryRetrieveLevel=SERIES",
        patient_key.as_str(),
        study_key.as_str(),
        "SeriesInstanceUID",
        "Modality=MR",
        "SeriesDescription=T2*",
    ];
    let (found, log) = on.find("series-t2", QrModel::PatientRoot, &keys, &[])?;
    let t2: Vec<&str> = knee
        .series
        .iter()
        .filter(|series| series.description.starts_with("T2"))
        .map(|series| series.series_instance_uid.as_str())
        .collect();
    assert_eq!(t2.len(), 1, "the data set has one T2 series");
    assert_keys(&found, tags::SERIES_INSTANCE_UID, &t2, &log);

    // IMAGE level, Study Root: the CT series with universal keys, then a list of two instances
    let ct = &two.study.series[0];
    let series_key = format!("SeriesInstanceUID={}", ct.series_instance_uid);
    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let keys = [
        "QueryRetrieveLevel=IMAGE",
        study_key.as_str(),
        series_key.as_str(),
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ];
    let (found, log) = on.find("images", QrModel::StudyRoot, &keys, &[])?;
    let expected: BTreeMap<String, Expected> = ct
        .instances
        .iter()
        .map(|instance| {
            let values = vec![
                (tags::SOP_CLASS_UID, instance.sop_class_uid.clone()),
                (tags::INSTANCE_NUMBER, instance.instance_number.to_string()),
                (tags::SERIES_INSTANCE_UID, ct.series_instance_uid.clone()),
            ];
            (instance.sop_instance_uid.clone(), values)
        })
        .collect();
    assert_entities(&found, tags::SOP_INSTANCE_UID, &expected, &log);
    let (one, three) = (&ct.instances[0], &ct.instances[2]);
    let sop_list = format!(
        "SOPInstanceUID={}\\{}",
        one.sop_instance_uid, three.sop_instance_uid
    );
    let keys = [
        "QueryRetrieveLevel=IMAGE",
        study_key.as_str(),
        series_key.as_str(),
        sop_list.as_str(),
    ];
    let (found, log) = on.find("images-uid-list", QrModel::StudyRoot, &keys, &[])?;
    assert_keys(
        &found,
        tags::SOP_INSTANCE_UID,
        &[&one.sop_instance_uid, &three.sop_instance_uid],
        &log,
    );
    Some(())
}

/// Retrieves with `on`'s client: C-GET of a study, a series and an instance (each into a
/// folder of its own), then C-MOVE of a study, a series and an instance to `storescp`; exactly
/// the instances asked for arrive, data sets equal to the files sent.
fn check_retrieves(on: &Against<'_>, storescp: &StorescpDestination) -> Option<()> {
    let data = QrDataSet::get();
    let address = on.server.address();
    // what is retrieved: the two-modality study; Doe's MR series (one of its files is in
    // Implicit VR LE); one instance of Garcia Lopez's study
    let two = data.two_modality_study();
    let doe = &data.patients[0];
    let mr_study = &doe.studies[1];
    let mr_series = &mr_study.series[0];
    let garcia_study = &data.patients[2].studies[0];
    let garcia_series = &garcia_study.series[0];
    let garcia_image = &garcia_series.instances[1];

    let study_key = format!("StudyInstanceUID={}", two.study.study_instance_uid);
    let get_study = ["QueryRetrieveLevel=STUDY", study_key.as_str()];
    let patient_key = format!("PatientID={}", doe.patient_id);
    let mr_study_key = format!("StudyInstanceUID={}", mr_study.study_instance_uid);
    let mr_series_key = format!("SeriesInstanceUID={}", mr_series.series_instance_uid);
    let get_series = [
        "QueryRetrieveLevel=SERIES",
        patient_key.as_str(),
        mr_study_key.as_str(),
        mr_series_key.as_str(),
    ];
    let garcia_study_key = format!("StudyInstanceUID={}", garcia_study.study_instance_uid);
    let garcia_series_key = format!("SeriesInstanceUID={}", garcia_series.series_instance_uid);
    let garcia_image_key = format!("SOPInstanceUID={}", garcia_image.sop_instance_uid);
    let get_image = [
        "QueryRetrieveLevel=IMAGE",
        garcia_study_key.as_str(),
        garcia_series_key.as_str(),
        garcia_image_key.as_str(),
    ];
    let two_instances: Vec<&QrInstance> = two.study.instances().collect();
    let series_instances: Vec<&QrInstance> = mr_series.instances.iter().collect();
    let retrievals: [(&str, QrModel, &[&str], Vec<&QrInstance>); 3] = [
        ("study", QrModel::StudyRoot, &get_study, two_instances),
        (
            "series",
            QrModel::PatientRoot,
            &get_series,
            series_instances,
        ),
        ("image", QrModel::StudyRoot, &get_image, vec![garcia_image]),
    ];
    for (what, model, keys, expected) in &retrievals {
        let label = format!("{}-get-{what}", on.name());
        on.get_exactly(&label, *model, keys, expected)?;
    }

    // C-MOVE of the same kinds to storescp: what arrived grows by exactly what was moved
    let smith = &data.patients[1];
    let knee = &smith.studies[0];
    let knee_key = format!("StudyInstanceUID={}", knee.study_instance_uid);
    let smith_key = format!("PatientID={}", smith.patient_id);
    let move_study = [
        "QueryRetrieveLevel=STUDY",
        smith_key.as_str(),
        knee_key.as_str(),
    ];
    let ct = &two.study.series[0];
    let ct_key = format!("SeriesInstanceUID={}", ct.series_instance_uid);
    let move_series = [
        "QueryRetrieveLevel=SERIES",
        study_key.as_str(),
        ct_key.as_str(),
    ];
    let moves: [(&str, QrModel, &[&str], Vec<&QrInstance>); 3] = [
        (
            "study",
            QrModel::PatientRoot,
            &move_study,
            knee.instances().collect(),
        ),
        (
            "series",
            QrModel::StudyRoot,
            &move_series,
            ct.instances.iter().collect(),
        ),
        ("image", QrModel::StudyRoot, &get_image, vec![garcia_image]),
    ];
    let mut arrived: Vec<&QrInstance> = Vec::new();
    for (what, model, keys, expected) in moves {
        let label = format!("{}-move-{what}", on.name());
        let moved = on.client.move_to(
            on.dir,
            &label,
            address,
            model,
            &storescp.address().ae_title,
            keys,
            &[],
        )?;
        let log = format!(
            "{}\n{}\n{}",
            moved.describe(),
            on.server.describe(),
            storescp.describe()
        );
        moved.assert_code(0);
        arrived.extend(expected);
        assert_received_instances(on.dir, &arrived, storescp.output_dir(), &log);
    }
    Some(())
}

/// The DCMTK storescp move destination and the archive loaded and knowing it as a `--peer`.
fn archive_with_destination(
    label: &str,
    backend: Backend,
) -> Option<(PathBuf, StorescpDestination, DimsumServe)> {
    let label = format!("{label}-{}", backend.name());
    let dir = retrieve_scratch_dir(&label)?;
    let storescp = StorescpDestination::start(&dir, StorescpDestination::AE_TITLE, &[])?;
    let peer = peer_arg(storescp.address());
    let server = serve_on(backend, &label, &dir, &["--peer", &peer])?;
    load_data_set(&dir, &server)?;
    Some((dir, storescp, server))
}

/// `--peer AE:HOST:PORT` for `address`.
fn peer_arg(address: &AeAddress) -> String {
    format!("{}:{}:{}", address.ae_title, address.host, address.port)
}

// ---------------------------------------------------------------------------------------------
// 1-3. Finds and retrieves by DCMTK's and pynetdicom's clients
// ---------------------------------------------------------------------------------------------

/// A test that runs on both index backends: `$name` on SQLite and `$name_on_postgres`, both
/// calling `$body(Backend)`.
macro_rules! on_both_backends {
    ($name:ident, $on_postgres:ident, $body:ident) => {
        #[test]
        fn $name() {
            $body(Backend::Sqlite);
        }

        #[test]
        fn $on_postgres() {
            $body(Backend::Postgres);
        }
    };
}

on_both_backends!(
    dcmtk_storescu_then_dcmtk_findscu_at_every_level,
    dcmtk_storescu_then_dcmtk_findscu_at_every_level_on_postgres,
    dcmtk_finds
);

fn dcmtk_finds(backend: Backend) {
    // no data set is compared here: no need of the Python environment
    let label = format!("serve-dcmtk-find-{}", backend.name());
    let dir = scratch_dir(&label);
    let Some(server) = serve_on(backend, &label, &dir, &[]) else {
        return;
    };
    if load_data_set(&dir, &server).is_none() {
        return;
    }
    let dcmtk = Against::new(QrClient::Dcmtk, &dir, &server);
    if check_finds(&dcmtk).is_none() {
        return;
    }

    // Patient/Study Only (DCMTK's -O after the harness's -P: the last model option wins)
    let data = QrDataSet::get();
    let doe = &data.patients[0];
    let patient_key = format!("PatientID={}", doe.patient_id);
    let keys = [
        "QueryRetrieveLevel=STUDY",
        patient_key.as_str(),
        "StudyInstanceUID",
        "NumberOfStudyRelatedInstances",
    ];
    let Some((found, log)) =
        dcmtk.find("psonly-studies", QrModel::PatientRoot, &keys, &["-O", "-d"])
    else {
        return;
    };
    assert!(
        log.contains("Abstract Syntax: =RETIRED_FINDPatientStudyOnlyQueryRetrieveInformationModel"),
        "findscu -O did not propose Patient/Study Only\n{log}"
    );
    let expected: BTreeMap<String, Expected> = doe
        .studies
        .iter()
        .map(|study| {
            let count = study.instances().count().to_string();
            (
                study.study_instance_uid.clone(),
                vec![(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, count)],
            )
        })
        .collect();
    assert_entities(&found, tags::STUDY_INSTANCE_UID, &expected, &log);

    // Patient/Study Only has no SERIES level: refused (0xA900), nothing found
    let keys = ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"];
    let Some(series) = QrClient::Dcmtk.find(
        &dir,
        "psonly-series",
        server.address(),
        QrModel::PatientRoot,
        &keys,
        &["-O"],
    ) else {
        return;
    };
    let log = format!("{}\n{}", series.finished.describe(), server.describe());
    assert!(
        series.identifiers.is_empty()
            && series
                .finished
                .output()
                .contains("Received Final Find Response (Error: DataSetDoesNotMatchSOPClass)"),
        "a SERIES query in Patient/Study Only was not refused with 0xA900\n{log}"
    );
}

on_both_backends!(
    dcmtk_getscu_and_movescu_retrieve_a_study_a_series_and_an_instance,
    dcmtk_getscu_and_movescu_retrieve_on_postgres,
    dcmtk_retrieves
);

fn dcmtk_retrieves(backend: Backend) {
    let Some((dir, storescp, server)) = archive_with_destination("serve-dcmtk-retrieve", backend)
    else {
        return;
    };
    let dcmtk = Against::new(QrClient::Dcmtk, &dir, &server);
    if check_retrieves(&dcmtk, &storescp).is_none() {
        return;
    }

    // a destination the archive does not know: refused (0xA801), nothing sent anywhere
    let before = storescp.received_sop_instance_uids();
    let study = &QrDataSet::get().patients[2].studies[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let Some(moved) = QrClient::Dcmtk.move_to(
        &dir,
        "move-unknown-destination",
        server.address(),
        QrModel::StudyRoot,
        "NOWHERE",
        &["QueryRetrieveLevel=STUDY", &study_key],
        &[],
    ) else {
        return;
    };
    let log = format!("{}\n{}", moved.describe(), server.describe());
    assert!(
        moved
            .output()
            .contains("Received Final Move Response (Refused: MoveDestinationUnknown)"),
        "a move to an unknown destination was not refused with 0xA801\n{log}"
    );
    assert_eq!(storescp.received_sop_instance_uids(), before, "{log}");
}

on_both_backends!(
    pynetdicom_findscu_at_every_level,
    pynetdicom_findscu_at_every_level_on_postgres,
    pynetdicom_finds
);

fn pynetdicom_finds(backend: Backend) {
    let Some((dir, server)) = loaded_archive("serve-pynetdicom-find", backend, &[]) else {
        return;
    };
    check_finds(&Against::new(QrClient::Pynetdicom, &dir, &server));
}

on_both_backends!(
    pynetdicom_getscu_and_movescu_retrieve_a_study_a_series_and_an_instance,
    pynetdicom_getscu_and_movescu_retrieve_on_postgres,
    pynetdicom_retrieves
);

fn pynetdicom_retrieves(backend: Backend) {
    let Some((dir, storescp, server)) =
        archive_with_destination("serve-pynetdicom-retrieve", backend)
    else {
        return;
    };
    check_retrieves(
        &Against::new(QrClient::Pynetdicom, &dir, &server),
        &storescp,
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Storage Commitment from pynetdicom
// ---------------------------------------------------------------------------------------------

/// `tests/peers/pynetdicom_commitscu.py` asking the archive to commit `references` (class,
/// instance) with `args`: its outcome, after checking that the N-ACTION succeeded and a report
/// for the transaction came. `None` (after `SKIP:`) when pynetdicom is missing.
fn commitscu(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    references: &[(&str, &str)],
    args: &[&str],
) -> Option<(Value, String)> {
    let mut command = pynetdicom("pynetdicom_commitscu.py")?;
    let address = server.address();
    command
        .args([address.host.as_str(), &address.port.to_string()])
        .args(["--called", SERVE_AE, "--calling", COMMIT_SCU_AE])
        .args(["--timeout", "20"])
        .args(args);
    for (class, instance) in references {
        command.arg("--ref").arg(format!("{class}:{instance}"));
    }
    let finished = run(label, dir, command, RUN_TIMEOUT);
    let log = format!("{}\n{}", finished.describe(), server.describe());
    assert!(
        !finished.stderr.contains("Traceback"),
        "pynetdicom failed\n{log}"
    );
    finished.assert_code(0);
    let outcome = finished.json();
    assert_eq!(outcome["action_status"], json!(0), "N-ACTION status\n{log}");
    assert_eq!(
        outcome["report"]["transaction_uid"], outcome["transaction_uid"],
        "{log}"
    );
    Some((outcome, log))
}

/// A JSON list of lists, sorted (the order of a report's items carries no meaning).
fn sorted(list: &Value) -> Vec<Value> {
    let mut items = list.as_array().cloned().unwrap_or_default();
    items.sort_by_key(|item| item.to_string());
    items
}

on_both_backends!(
    pynetdicom_storage_commitment_for_stored_and_unknown_instances,
    pynetdicom_storage_commitment_on_postgres,
    storage_commitment
);

fn storage_commitment(backend: Backend) {
    let listen_port = free_port();
    let peer = peer_arg(&AeAddress::local(COMMIT_SCU_AE, listen_port));
    let Some((dir, server)) = loaded_archive("serve-commitment", backend, &["--peer", &peer])
    else {
        return;
    };
    let data = QrDataSet::get();
    let stored: Vec<&QrInstance> = data
        .instances()
        .iter()
        .map(|item| item.instance)
        .filter(|instance| instance.instance_number == 1)
        .collect();
    assert!(stored.len() >= 3, "instances of several classes");
    let unknown = format!("{SERVE_UID_ROOT}.99.1");
    let unknown_too = format!("{SERVE_UID_ROOT}.99.2");
    let mr = stored
        .iter()
        .find(|instance| instance.sop_class_uid == MR_IMAGE_STORAGE)
        .expect("an MR instance");
    let mut references: Vec<(&str, &str)> = stored
        .iter()
        .map(|instance| {
            (
                instance.sop_class_uid.as_str(),
                instance.sop_instance_uid.as_str(),
            )
        })
        .collect();
    references.push((CT_IMAGE_STORAGE, &unknown));
    references.push((MR_IMAGE_STORAGE, &unknown_too));
    // a stored MR instance named as a CT image: not what the archive holds
    references.push((CT_IMAGE_STORAGE, &mr.sop_instance_uid));

    let committed: Vec<Value> = stored
        .iter()
        .map(|instance| json!([instance.sop_class_uid, instance.sop_instance_uid]))
        .collect();
    let failed = vec![
        json!([CT_IMAGE_STORAGE, unknown, 0x0112]),
        json!([MR_IMAGE_STORAGE, unknown_too, 0x0112]),
        json!([CT_IMAGE_STORAGE, mr.sop_instance_uid, 0x0119]),
    ];
    let sorted_values = |mut values: Vec<Value>| {
        values.sort_by_key(|item| item.to_string());
        values
    };

    // the report on the request's association
    let Some((outcome, log)) = commitscu(&dir, "commitscu-same", &server, &references, &[]) else {
        return;
    };
    let report = &outcome["report"];
    assert_eq!(report["event_type"], json!(2), "failures exist\n{log}");
    assert_eq!(report["on_new_association"], json!(false), "{log}");
    assert_eq!(
        sorted(&report["committed"]),
        sorted_values(committed.clone()),
        "committed\n{log}"
    );
    assert_eq!(
        sorted(&report["failed"]),
        sorted_values(failed),
        "failed\n{log}"
    );

    // every stored instance: event type 1; the requestor releases at once, so the report
    // comes on a new association to its --peer address unless the archive was quicker
    let references: Vec<(&str, &str)> = references[..stored.len()].to_vec();
    let Some((outcome, log)) = commitscu(
        &dir,
        "commitscu-released",
        &server,
        &references,
        &[
            "--release-after-action",
            "--listen-port",
            &listen_port.to_string(),
        ],
    ) else {
        return;
    };
    let report = &outcome["report"];
    assert_eq!(report["event_type"], json!(1), "all committed\n{log}");
    assert_eq!(
        sorted(&report["committed"]),
        sorted_values(committed),
        "{log}"
    );
    assert_eq!(report["failed"], json!([]), "{log}");
    if report["on_new_association"] == json!(true) {
        assert_eq!(report["calling_ae"], json!(SERVE_AE), "{log}");
    } else {
        eprintln!("the report came on the request's association before its release");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Restart, and an existing folder scanned
// ---------------------------------------------------------------------------------------------

/// Asserts that the archive at `server` holds the whole Q/R data set (DCMTK findscu at STUDY
/// level with the computed keys) and serves it (DCMTK getscu of a study, data sets equal).
fn assert_serves_data_set(dir: &Path, label: &str, server: &DimsumServe) -> Option<()> {
    let data = QrDataSet::get();
    let dcmtk = Against::new(QrClient::Dcmtk, dir, server);
    let (found, log) = dcmtk.find(label, QrModel::StudyRoot, &study_keys(), &[])?;
    assert_entities(
        &found,
        tags::STUDY_INSTANCE_UID,
        &studies_expected(data),
        &log,
    );
    let study = &data.patients[1].studies[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let expected: Vec<&QrInstance> = study.instances().collect();
    dcmtk.get_exactly(
        &format!("get-{label}"),
        QrModel::StudyRoot,
        &["QueryRetrieveLevel=STUDY", &study_key],
        &expected,
    )
}

#[test]
fn restart_on_the_same_data_and_scan_of_an_existing_folder() {
    let Some((dir, server)) = loaded_archive("serve-restart", Backend::Sqlite, &[]) else {
        return;
    };
    let data = QrDataSet::get();
    let count = data.files().len();
    let data_dir = server.data().to_path_buf();

    // SIGTERM: exit 0 and the statistics
    let stderr = server.stop();
    let instances = statistic(&stderr, "Instances:");
    assert!(
        instances.starts_with(&format!("{count} received,")),
        "Instances: {instances:?}\n{stderr}"
    );

    // started again on the same data directory: everything is there
    let server = DimsumServe::start(&dir, &data_dir, &[]);
    if assert_serves_data_set(&dir, "after-restart", &server).is_none() {
        return;
    }
    let stderr = server.stop();
    assert!(
        statistic(&stderr, "Instances:").starts_with("0 received,"),
        "{stderr}"
    );

    // --scan-only: a folder of the data set's files (and a file that is not DICOM) indexed
    // into a new data directory, then the process exits
    let folder = dir.join("old-images");
    copy_into(&data.files(), &folder.join("nested"));
    fs::write(folder.join("README.txt"), "not a DICOM file\n").expect("write a text file");
    let scanned = dir.join("scanned-data");
    let scan_only = |label: &str| {
        let mut command = dimsum();
        command
            .args(["serve", "--aet", SERVE_AE, "--bind", LOCALHOST])
            .args(["--port", &free_port().to_string(), "--data"])
            .arg(&scanned)
            .arg("--scan")
            .arg(&folder)
            .arg("--scan-only");
        let finished = run(label, &dir, command, RUN_TIMEOUT);
        finished.assert_code(0);
        assert!(
            !finished.stderr.contains("listening on"),
            "--scan-only served\n{}",
            finished.describe()
        );
        finished
    };
    // the first scan indexes every file, the second finds them all indexed already
    for (label, new, already) in [("scan-only", count, 0), ("scan-only-again", 0, count)] {
        let scan = scan_only(label);
        let report = format!(
            "{}: {new} new instances, {already} already indexed, 1 skipped",
            folder.display()
        );
        assert!(
            scan.stderr.contains(&report),
            "expected {report:?}\n{}",
            scan.describe()
        );
    }
    let server = DimsumServe::start(&dir, &scanned, &[]);
    assert_serves_data_set(&dir, "after-scan", &server);
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// 6. kill -9 during a batch
// ---------------------------------------------------------------------------------------------

/// Instances of the batch sent while the server is killed.
const CRASH_BATCH: usize = 200;
/// Files in the archive's storage when the server is killed (a fifth of the batch).
const KILL_AFTER: usize = CRASH_BATCH / 5;

#[test]
fn kill_9_during_a_batch_leaves_index_and_files_in_agreement() {
    let Some(dir) = retrieve_scratch_dir("serve-crash") else {
        return;
    };
    if dcmtk("storescu").is_none() {
        return;
    }
    // 200 instances of 96 x 128 pixels (12 KiB each, distinct), 4 series of one study
    let batch = IngestBatch::get(CRASH_BATCH, 96, 128);
    let data_dir = dir.join("data");
    let server = DimsumServe::start(&dir, &data_dir, &[]);
    let storescu = storescu_folder_command(server.address(), &batch.dir).expect("DCMTK");
    let mut sending = ProcessGuard::spawn("storescu-batch", &dir, storescu);
    let storage = data_dir.join("storage");
    let reached = wait_closely(RUN_TIMEOUT, || {
        support::files_under(&storage).len() >= KILL_AFTER || sending.try_status().is_some()
    });
    let logs = server.kill();
    assert!(reached, "no {KILL_AFTER} files stored in time\n{logs}");
    let status = sending.wait(RUN_TIMEOUT);
    let log = format!("{}\n{logs}", sending.describe());
    let acknowledged: BTreeSet<String> = acknowledged_files(&sending.output())
        .iter()
        .map(|path| {
            batch
                .uid_of(path)
                .unwrap_or_else(|| panic!("storescu sent {} ", path.display()))
                .to_owned()
        })
        .collect();
    assert!(
        !status.success() && acknowledged.len() < CRASH_BATCH,
        "the server was killed after the batch had gone through ({} acknowledged, {status}): \
         nothing was cut off\n{log}",
        acknowledged.len()
    );
    eprintln!(
        "killed with {} of {CRASH_BATCH} instances acknowledged",
        acknowledged.len()
    );

    // restarted: the check at open runs; then the index at IMAGE level
    let mut server = DimsumServe::start(&dir, &data_dir, &[]);
    server
        .process()
        .wait_for_text("not closed cleanly", support::LOG_TIMEOUT);
    let dcmtk = Against::new(QrClient::Dcmtk, &dir, &server);
    let study_key = format!("StudyInstanceUID={}", batch.study_instance_uid);
    let keys = [
        "QueryRetrieveLevel=IMAGE",
        study_key.as_str(),
        "SeriesInstanceUID",
        "SOPInstanceUID",
    ];
    let Some((images, log)) = dcmtk.find("images-after-crash", QrModel::StudyRoot, &keys, &[])
    else {
        return;
    };
    let found: BTreeSet<String> = images
        .iter()
        .map(|image| image.require(tags::SOP_INSTANCE_UID).to_owned())
        .collect();
    assert_eq!(found.len(), images.len(), "an instance came twice\n{log}");
    assert!(
        acknowledged.is_subset(&found),
        "acknowledged instances are missing after the restart: {:?}\n{log}",
        acknowledged.difference(&found).collect::<Vec<_>>()
    );
    let on_disk = stored_sop_instance_uids(&data_dir);
    assert_eq!(
        on_disk, found,
        "the files of the storage and the index disagree\n{log}"
    );
    let files = support::files_under(&data_dir.join("storage"));
    assert_eq!(
        files.len(),
        found.len(),
        "files in the storage besides one per indexed instance: {files:#?}\n{log}"
    );
    // the study's computed count agrees with its instances
    let keys = [
        "QueryRetrieveLevel=STUDY",
        study_key.as_str(),
        "NumberOfStudyRelatedInstances",
    ];
    let Some((study, log)) = dcmtk.find("study-after-crash", QrModel::StudyRoot, &keys, &[]) else {
        return;
    };
    let expected = BTreeMap::from([(
        batch.study_instance_uid.clone(),
        vec![(
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            found.len().to_string(),
        )],
    )]);
    assert_entities(&study, tags::STUDY_INSTANCE_UID, &expected, &log);

    // every instance found is retrieved whole, equal to the file sent
    let expected = batch.qr_instances(&found);
    let expected: Vec<&QrInstance> = expected.iter().collect();
    dcmtk
        .get_exactly(
            "get-after-crash",
            QrModel::StudyRoot,
            &["QueryRetrieveLevel=STUDY", &study_key],
            &expected,
        )
        .expect("DCMTK");
    assert_eq!(
        hidden_files(&data_dir),
        Vec::<PathBuf>::new(),
        "temporary files left in the data directory\n{}",
        server.describe()
    );
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// 7. Hostile C-FIND values
// ---------------------------------------------------------------------------------------------

/// Patients whose names and IDs hold what a query engine might take for its own syntax: SQL
/// LIKE's `%` and `_`, quotes, GLOB's brackets; and a name beyond ASCII, stored in Latin-1
/// (Specific Character Set ISO_IR 100). `(Patient Name, Patient ID)`.
const HOSTILE_PATIENTS: [(&str, &str); 6] = [
    ("100%^Sure", "PCT-100%"),
    ("Under_Score^Ann", "UND_1"),
    ("O'Brien^Dan", "QUOTE'1"),
    ("Say \"Hi\"^Bob", "DQ\"1"),
    ("[Bracket]^Eve", "GLOB[1]"),
    ("Müller^Hans", "UMLAUT-1"),
];

/// Writes one instance per hostile patient into `folder`.
fn write_hostile_patients(folder: &Path) {
    fs::create_dir_all(folder).expect("create the hostile patients folder");
    for (index, (name, id)) in HOSTILE_PATIENTS.iter().enumerate() {
        let n = index + 1;
        let spec = InstanceSpec {
            patient_name: (*name).to_owned(),
            patient_id: (*id).to_owned(),
            study_instance_uid: format!("{SERVE_UID_ROOT}.4.{n}"),
            study_date: "20200101".to_owned(),
            accession_number: format!("HOSTILE{n}"),
            series_instance_uid: format!("{SERVE_UID_ROOT}.5.{n}"),
            series_number: 1,
            sop_instance_uid: format!("{SERVE_UID_ROOT}.6.{n}"),
            instance_number: 1,
            rows: 4,
            columns: 4,
            pixel_seed: n as u64,
        };
        write_instance(&spec, &folder.join(format!("hostile_{n}.dcm")));
    }
}

/// Writes `identifier` as a query file DCMTK's and pynetdicom's findscu read (Part 10, Implicit
/// VR Little Endian: its 32-bit lengths hold a value of any size).
fn write_query(identifier: InMemDicomObject, path: &Path) {
    let file = identifier
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(support::IMPLICIT_VR_LE)
                .media_storage_sop_class_uid(STUDY_ROOT_FIND)
                .media_storage_sop_instance_uid(format!("{SERVE_UID_ROOT}.9.1")),
        )
        .expect("the meta of a query file");
    file.write_to_file(path)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

/// A STUDY-level identifier with `elements` besides the level and an empty Study Instance UID.
fn study_query(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    let mut identifier = InMemDicomObject::new_empty();
    identifier.put(text_element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"));
    identifier.put(text_element(tags::STUDY_INSTANCE_UID, VR::UI, ""));
    identifier.put(text_element(tags::PATIENT_ID, VR::LO, ""));
    for element in elements {
        identifier.put(element);
    }
    identifier
}

/// `count` standard attributes of text VRs (none of the identifier's own), for a query with
/// that many more return keys.
fn many_standard_keys(count: usize) -> Vec<(Tag, VR)> {
    const TEXT: [VR; 14] = [
        VR::AE,
        VR::AS,
        VR::CS,
        VR::DA,
        VR::DS,
        VR::DT,
        VR::IS,
        VR::LO,
        VR::LT,
        VR::PN,
        VR::SH,
        VR::ST,
        VR::TM,
        VR::UI,
    ];
    let own = [
        tags::SPECIFIC_CHARACTER_SET,
        tags::QUERY_RETRIEVE_LEVEL,
        tags::STUDY_INSTANCE_UID,
        tags::PATIENT_ID,
    ];
    let dictionary = StandardDataDictionary;
    [0x0008_u16, 0x0010, 0x0018, 0x0020, 0x0028, 0x0032, 0x0040]
        .into_iter()
        .flat_map(|group| (1..=0xffff_u16).map(move |element| Tag(group, element)))
        .filter(|tag| !own.contains(tag))
        .filter_map(|tag| {
            let entry = dictionary.by_tag(tag)?;
            let vr = match entry.vr() {
                dimsum_net::dataset::dicom_core::dictionary::VirtualVr::Exact(vr) => vr,
                _ => return None,
            };
            TEXT.contains(&vr).then_some((tag, vr))
        })
        .take(count)
        .collect()
}

/// DCMTK `findscu -v -S -aet DCMTKSCU -aec <archive> -X -od <dir>/<label> <args> HOST PORT
/// <query>`: its run, the responses, and the final status text DCMTK printed (what follows
/// `Received Final Find Response`).
fn dcmtk_find_file(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    query: &Path,
    args: &[&str],
) -> Option<(Finished, Vec<QrIdentifier>, String)> {
    let output = dir.join(label);
    fs::create_dir_all(&output).expect("create the findscu output folder");
    let mut command = dcmtk("findscu")?;
    let address = server.address();
    command
        .args([
            "-v",
            "-S",
            "-aet",
            "DCMTKSCU",
            "-aec",
            &address.ae_title,
            "-X",
            "-od",
        ])
        .arg(&output)
        .args(args)
        .arg(&address.host)
        .arg(address.port.to_string())
        .arg(query);
    let finished = run(label, dir, command, RUN_TIMEOUT);
    let status = finished
        .output()
        .lines()
        .find_map(|line| line.split_once("Received Final Find Response"))
        .map(|(_, status)| status.trim().to_owned())
        .unwrap_or_default();
    let responses = support::files_under(&output)
        .iter()
        .map(|path| QrIdentifier::read(path))
        .collect();
    Some((finished, responses, status))
}

/// Runs [`dcmtk_find_file`] and asserts that it exited 0 and ended with Success having matched
/// nothing (`what` names the query in the message): the log, its lines shortened (the clients
/// print the values they send). `None` (after `SKIP:`) when DCMTK is missing.
fn assert_file_query_matches_nothing(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    query: &Path,
    args: &[&str],
    what: &str,
) -> Option<String> {
    let (finished, responses, status) = dcmtk_find_file(dir, label, server, query, args)?;
    let log = shortened(&format!("{}\n{}", finished.describe(), server.describe()));
    finished.assert_code(0);
    assert!(
        responses.is_empty() && status == "(Success)",
        "{what} matched {} studies (final status {status:?})\n{log}",
        responses.len()
    );
    Some(log)
}

/// Writes `<dir>/query-10mb.dcm`: a STUDY-level query whose Patient Name is `Doe*` followed by
/// 10 MiB of `x` (a prefix that matches Doe's studies, then what no name holds).
fn long_value_query(dir: &Path) -> PathBuf {
    let long = format!("Doe*{}", "x".repeat(10 * 1024 * 1024));
    let query = dir.join("query-10mb.dcm");
    write_query(
        study_query(vec![DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from(long),
        )]),
        &query,
    );
    query
}

/// `log` with each line cut to 300 characters (the clients print the 10 MB value they send).
fn shortened(log: &str) -> String {
    log.lines()
        .map(|line| match line.char_indices().nth(300) {
            Some((end, _)) => format!("{}...", &line[..end]),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

on_both_backends!(
    hostile_find_values_return_only_correct_matches,
    hostile_find_values_return_only_correct_matches_on_postgres,
    hostile_finds
);

fn hostile_finds(backend: Backend) {
    let Some((dir, server)) = loaded_archive("serve-hostile", backend, &[]) else {
        return;
    };
    let hostile = dir.join("hostile");
    write_hostile_patients(&hostile);
    if store_folder(
        &dir,
        "storescu-hostile",
        server.address(),
        &hostile,
        HOSTILE_PATIENTS.len(),
        || server.describe(),
    )
    .is_none()
    {
        return;
    }
    let id = |index: usize| HOSTILE_PATIENTS[index].1;

    // literal `%`, `_`, quotes and brackets, from DCMTK findscu at PATIENT level
    let dcmtk = Against::new(QrClient::Dcmtk, &dir, &server);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("PatientName=%", vec![]),
        ("PatientName=%%", vec![]),
        ("PatientName=100%*", vec![id(0)]),
        ("PatientName=*%*", vec![id(0)]),
        ("PatientName=1_0*", vec![]),
        ("PatientName=D_e*", vec![]),
        ("PatientName=Under_Score*", vec![id(1)]),
        ("PatientName=Under?Score*", vec![id(1)]),
        ("PatientName=*_*", vec![id(1)]),
        ("PatientID=QR-000_", vec![]),
        ("PatientID=%", vec![]),
        ("PatientID=QR%", vec![]),
        ("PatientID=PCT-100%", vec![id(0)]),
        ("PatientName=O'Brien*", vec![id(2)]),
        ("PatientID=QUOTE'1", vec![id(2)]),
        ("PatientName=' OR '1'='1", vec![]),
        ("PatientName=x' OR 1=1 --", vec![]),
        ("PatientName=*'; DROP TABLE patients; --", vec![]),
        ("PatientID=\" OR \"\"=\"", vec![]),
        ("PatientName=Say \"Hi\"*", vec![id(3)]),
        ("PatientName=D[o]e*", vec![]),
        ("PatientName=[A-Z]*", vec![]),
        ("PatientName=[Bracket]*", vec![id(4)]),
        ("PatientID=GLOB[1]", vec![id(4)]),
        ("PatientName=*^Eve", vec![id(4)]),
    ];
    for (index, (matching, expected)) in cases.iter().enumerate() {
        let keys = [
            "QueryRetrieveLevel=PATIENT",
            "PatientID",
            "PatientName",
            matching,
        ];
        let label = format!("hostile-{index}");
        let Some((found, log)) = dcmtk.find(&label, QrModel::PatientRoot, &keys, &[]) else {
            return;
        };
        let log = format!("query {matching:?}\n{log}");
        assert_keys(&found, tags::PATIENT_ID, expected, &log);
    }

    // Specific Character Set: a query in UTF-8 (ISO_IR 192) finds the name stored in Latin-1,
    // `?` matching one character (two bytes in UTF-8), PN regardless of case (the default), LO
    // not; the name comes back as stored, decoded by its own character set
    let (umlaut_name, umlaut_id) = HOSTILE_PATIENTS[5];
    let umlaut = BTreeMap::from([(
        umlaut_id.to_owned(),
        vec![(tags::PATIENT_NAME, umlaut_name.to_owned())],
    )]);
    let nobody = BTreeMap::new();
    for (index, (matching, expected)) in [
        ("PatientName=Müller*", &umlaut),
        ("PatientName=M?ller^Hans", &umlaut),
        ("PatientName=M??ller*", &nobody),
        ("PatientName=MÜLLER^HANS", &umlaut),
        ("PatientID=umlaut-1", &nobody),
    ]
    .into_iter()
    .enumerate()
    {
        let keys = [
            "QueryRetrieveLevel=PATIENT",
            "SpecificCharacterSet=ISO_IR 192",
            "PatientID",
            "PatientName",
            matching,
        ];
        let label = format!("charset-{index}");
        let Some((found, log)) = dcmtk.find(&label, QrModel::PatientRoot, &keys, &[]) else {
            return;
        };
        let log = format!("query {matching:?}\n{log}");
        assert_entities(&found, tags::PATIENT_ID, expected, &log);
        for response in &found {
            assert_eq!(
                response.get(tags::SPECIFIC_CHARACTER_SET),
                Some("ISO_IR 100"),
                "{log}"
            );
        }
    }

    // the same kind from pynetdicom's findscu
    let pynetdicom = Against::new(QrClient::Pynetdicom, &dir, &server);
    for (label, matching, expected) in [
        ("underscore", "PatientName=D_e*", vec![]),
        ("percent", "PatientName=100%*", vec![id(0)]),
        ("quote", "PatientID=' OR 1=1 --", vec![]),
    ] {
        let keys = ["QueryRetrieveLevel=PATIENT", "PatientID", matching];
        let Some((found, log)) = pynetdicom.find(label, QrModel::PatientRoot, &keys, &[]) else {
            return;
        };
        assert_keys(&found, tags::PATIENT_ID, &expected, &log);
    }

    // a 10 MB value after a prefix that matches, in Implicit VR (whose 32-bit lengths carry a
    // PN of any size; see the test below for the same in Explicit VR): nothing, never
    // Doe's studies
    let query = long_value_query(&dir);
    let matched_nothing = assert_file_query_matches_nothing(
        &dir,
        "hostile-10mb",
        &server,
        &query,
        &["-xi"],
        "a 10 MB value",
    );
    if matched_nothing.is_none() {
        return;
    }

    // a pathological wildcard (10,000 `*a`): nothing, answered at once
    let query = dir.join("query-wildcards.dcm");
    write_query(
        study_query(vec![text_element(
            tags::PATIENT_NAME,
            VR::PN,
            &"*a".repeat(10_000),
        )]),
        &query,
    );
    let matched_nothing = assert_file_query_matches_nothing(
        &dir,
        "hostile-wildcards",
        &server,
        &query,
        &[],
        "10,000 wildcards",
    );
    if matched_nothing.is_none() {
        return;
    }

    // 1,000 more return keys, universal: Doe's studies, every key returned (empty when unknown)
    let data = QrDataSet::get();
    let doe = &data.patients[0];
    let keys = many_standard_keys(1000);
    assert_eq!(keys.len(), 1000, "the dictionary has 1,000 such attributes");
    let mut elements: Vec<DataElement<InMemDicomObject>> = keys
        .iter()
        .map(|(tag, vr)| DataElement::new(*tag, *vr, PrimitiveValue::Empty))
        .collect();
    elements.push(text_element(tags::PATIENT_ID, VR::LO, &doe.patient_id));
    let query = dir.join("query-1000-keys.dcm");
    write_query(study_query(elements), &query);
    let Some((finished, responses, status)) =
        dcmtk_find_file(&dir, "hostile-1000-keys", &server, &query, &[])
    else {
        return;
    };
    let log = format!(
        "final status {status:?}\n{}\n{}",
        finished.describe(),
        server.describe()
    );
    finished.assert_code(0);
    let doe_studies: Vec<&str> = doe
        .studies
        .iter()
        .map(|study| study.study_instance_uid.as_str())
        .collect();
    assert_keys(&responses, tags::STUDY_INSTANCE_UID, &doe_studies, &log);
    for response in &responses {
        // every element, whatever its VR (DCMTK 3.6.7 writes the keys its dictionary lacks as
        // UN, which QrIdentifier leaves out)
        let object = dicom_object::open_file(&response.path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", response.path.display()));
        let returned: BTreeSet<Tag> = object.iter().map(|element| element.tag()).collect();
        let missing: Vec<Tag> = keys
            .iter()
            .map(|(tag, _)| *tag)
            .filter(|tag| !returned.contains(tag))
            .collect();
        assert!(
            missing.is_empty(),
            "return keys missing from {}: {missing:?}\n{log}",
            response.path.display()
        );
    }

    // and the server goes on
    assert_echo(&dir, server.address(), || server.describe());
    server.stop();
}

/// How much the archive's peak resident size may grow while it answers the 10 MB query (about
/// 80 MB when the value arrives as PN in Implicit VR).
const LONG_VALUE_GROWTH_LIMIT_KIB: u64 = 256 * 1024;

on_both_backends!(
    ten_megabyte_value_in_explicit_vr_is_answered_in_bounded_time_and_memory,
    ten_megabyte_value_in_explicit_vr_on_postgres,
    ten_megabyte_value
);

fn ten_megabyte_value(backend: Backend) {
    let Some((dir, mut server)) = loaded_archive("serve-hostile-explicit", backend, &[]) else {
        return;
    };
    let query = long_value_query(&dir);
    let pid = server.process().id();
    let before = support::proc_status_kib(pid, "VmHWM");

    // DCMTK findscu in Explicit VR Little Endian: the value goes as UN
    let Some(log) = assert_file_query_matches_nothing(
        &dir,
        "explicit-10mb",
        &server,
        &query,
        &[],
        "a 10 MB value",
    ) else {
        return;
    };
    let growth = support::proc_status_kib(pid, "VmHWM").saturating_sub(before);
    assert!(
        growth < LONG_VALUE_GROWTH_LIMIT_KIB,
        "the archive's peak RSS grew by {growth} KiB answering a 10 MB value\n{log}"
    );

    // pynetdicom's findscu (Explicit VR, the value as UN), with a 10 s DIMSE timeout: an Implicit
    // VR query of the same value is answered in about a second
    let found = QrClient::Pynetdicom.find(
        &dir,
        "pynetdicom-10mb",
        server.address(),
        QrModel::StudyRoot,
        &[],
        &["-td", "10", "-f", &query.to_string_lossy()],
    );
    let Some(found) = found else {
        return;
    };
    let log = shortened(&format!(
        "{}\n{}",
        found.finished.describe(),
        server.describe()
    ));
    assert!(
        found.finished.code() == Some(0)
            && find_succeeded(QrClient::Pynetdicom, &found.finished.output())
            && found.identifiers.is_empty(),
        "pynetdicom's 10 MB query was not answered with Success and no match\n{log}"
    );
    server.stop();
}
