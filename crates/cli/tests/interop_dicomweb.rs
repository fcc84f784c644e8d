//! DICOMweb (PS3.18, issue 9) of `dimsum serve` against a client we did not write: the Python
//! `dicomweb-client` package (driven by `tests/peers/dicomweb_client_peer.py`), with DCMTK on
//! the DIMSE side, asserting on content:
//!
//! 1. dicomweb-client `store_instances` (STOW-RS) of a study of five instances over two series:
//!    the response references each instance (and fails none); DCMTK `findscu` finds them at
//!    STUDY, SERIES and IMAGE level with the identifiers stored, and DCMTK `getscu` retrieves
//!    the study and a series, data sets equal to the files sent. The other way round: DCMTK
//!    `storescu` loads the Q/R data set and dicomweb-client `retrieve_study`,
//!    `retrieve_series` and `retrieve_instance` (WADO-RS) return data sets equal to the files
//!    sent, in the transfer syntax asked for (`*`: as stored, Implicit VR Little Endian
//!    included).
//! 2. dicomweb-client `search_for_studies`, `search_for_series` and `search_for_instances`
//!    (QIDO-RS), global and study- or series-scoped, over the Q/R data set: every entity with
//!    the values stored, filters on Patient's Name (wildcard, exact), Study Date (closed and open
//!    ranges), Modality and Modalities in Study, UIDs (one and a list), SOP Class, an attribute
//!    named by its tag; `includefield` by keyword, by tag and `all`; limit and offset (pages
//!    that add up, and the client's `get_remaining`); fuzzy matching of names (given name, a
//!    word of the family name, any case) that plain matching does not do; an unknown attribute
//!    is a 400.
//! 3. dicomweb-client `retrieve_study_metadata`, `retrieve_series_metadata` and
//!    `retrieve_instance_metadata` (WADO-RS): Pixel Data given as a BulkDataURI whose
//!    `retrieve_bulkdata` bytes are the stored pixel data, and every instance rebuilt from its
//!    metadata and bulk data equal to the file stored, element by element (an Implicit VR
//!    Little Endian instance included).
//! 4. dicomweb-client `retrieve_instance_frames`: native frames of a multi-frame instance (the
//!    client's default Accept and application/octet-stream), frames as stored (`*`: 16-bit
//!    native frames of an Implicit VR instance, RLE fragments) and JPEG Baseline by its
//!    transfer syntax, each frame's bytes those stored; frame 0 is a 400 and one past the last a
//!    404. `retrieve_instance_rendered` (PNG, JPEG, the default) of native, JPEG and RLE
//!    instances and `retrieve_series_rendered` (a multipart of one image per instance) decode
//!    with Pillow at the instance's size, an RGB instance in colour.
//!
//! The driver gives dicomweb-client's Host header the URL's port (the client leaves it out, and
//! the server builds Retrieve URLs and BulkDataURIs from that header).
//!
//! Each test runs its own server on free ports of 127.0.0.1 over a data directory of its own;
//! every process has a time limit. A missing peer skips the test (prints `SKIP:`), or fails it
//! when `DIMSUM_REQUIRE_PEERS` is set. Install the peers with `scripts/setup-peers`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use dimsum_net::dataset::dicom_core::Tag;
use dimsum_net::dataset::dicom_dictionary_std::tags;
use support::qr::{
    QrClient, QrDataSet, QrIdentifier, QrInstance, QrModel, SECONDARY_CAPTURE_IMAGE_STORAGE,
    assert_received_instances, retrieve_scratch_dir,
};
use support::serve::{
    DimsumServe, InstanceSpec, copy_into, store_folder, stored_sop_instance_uids, write_instance,
};
use support::{
    EXPLICIT_VR_LE, Finished, IMPLICIT_VR_LE, RUN_TIMEOUT, peer_missing, python_script, run,
};

/// The driver of dicomweb-client.
const PEER_SCRIPT: &str = "tests/peers/dicomweb_client_peer.py";
/// The root of the UIDs of the instances written here (pydicom's test root, a branch of ours
/// beside those of the other interop tests).
const DICOMWEB_UID_ROOT: &str = "1.2.826.0.1.3680043.8.498.7010";

// ---------------------------------------------------------------------------------------------
// The dicomweb-client peer
// ---------------------------------------------------------------------------------------------

/// The driver as a command (the peer environment's Python), checked once to import
/// dicomweb-client; `None` (after `SKIP:`) when it is missing.
fn dicomweb_client() -> Option<Command> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let command = python_script(PEER_SCRIPT)?;
    let probe = PROBE.get_or_init(|| {
        let output = Command::new(command.get_program())
            .args(["-c", "import dicomweb_client, PIL"])
            .output()
            .map_err(|error| format!("cannot run {:?}: {error}", command.get_program()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    });
    match probe {
        Ok(()) => Some(command),
        Err(why) => peer_missing(&format!("dicomweb-client cannot be imported: {why}")),
    }
}

/// One run of the driver: its process and the JSON report it printed.
struct PeerRun {
    finished: Finished,
    report: Value,
}

impl PeerRun {
    /// The report, after checking that every call succeeded (exit 0, no error); otherwise fails
    /// the test naming the request that failed (method, URL, status, body) with `context`.
    #[track_caller]
    fn ok(&self, context: &str) -> &Value {
        if let Some(error) = self.report.get("error") {
            panic!(
                "dicomweb-client failed: {}\n{}\n{context}",
                describe_error(error),
                self.finished.describe()
            );
        }
        assert_eq!(
            self.finished.code(),
            Some(0),
            "the dicomweb-client driver did not exit 0\n{}\n{context}",
            self.finished.describe()
        );
        &self.report
    }
}

/// An error the driver reported, for people: `GET <url> -> 404: <body>`.
fn describe_error(error: &Value) -> String {
    match error["status"].as_u64() {
        Some(status) => format!(
            "{} {} -> HTTP {status}: {}",
            error["method"].as_str().unwrap_or("?"),
            error["url"].as_str().unwrap_or("?"),
            error["body"].as_str().unwrap_or_default().trim()
        ),
        None => format!(
            "{}\n{}",
            error["exception"].as_str().unwrap_or("?"),
            error["traceback"].as_str().unwrap_or_default()
        ),
    }
}

/// Runs the driver against `server`'s DICOMweb root with `args` (run named
/// `dicomweb-client-<label>`, in `dir`, within [`RUN_TIMEOUT`]). `None` (after `SKIP:`) without
/// dicomweb-client.
fn dicomweb(dir: &Path, label: &str, server: &DimsumServe, args: &[String]) -> Option<PeerRun> {
    let mut command = dicomweb_client()?;
    command.arg(server.dicomweb_url()).args(args);
    let finished = run(
        &format!("dicomweb-client-{label}"),
        dir,
        command,
        RUN_TIMEOUT,
    );
    let report = finished.json();
    Some(PeerRun { finished, report })
}

/// `path` as a command-line argument.
fn arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// DICOM JSON (PS3.18 F.2) as the tests read it
// ---------------------------------------------------------------------------------------------

/// A DICOM JSON attribute key (`"0020000D"`) of `tag`.
fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The values of `tag` in a DICOM JSON data set as text (person names by their alphabetic
/// group, numbers in decimal), or `None` when the data set does not have it.
fn json_values(dataset: &Value, tag: Tag) -> Option<Vec<String>> {
    let attribute = dataset.get(key(tag))?;
    Some(
        attribute
            .get("Value")
            .and_then(Value::as_array)
            .map(|values| values.iter().map(support::qr::json_text).collect())
            .unwrap_or_default(),
    )
}

/// The items of the sequence `tag` of a DICOM JSON data set (none when it is absent).
fn json_items(dataset: &Value, tag: Tag) -> Vec<Value> {
    dataset
        .get(key(tag))
        .and_then(|attribute| attribute.get("Value"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The one value of `tag` (panics, showing the data set, when it has none or several).
#[track_caller]
fn json_value(dataset: &Value, tag: Tag) -> String {
    match json_values(dataset, tag).as_deref() {
        Some([value]) => value.clone(),
        other => panic!("{tag} of {dataset}: expected one value, found {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Data and DIMSE helpers
// ---------------------------------------------------------------------------------------------

/// A study of five Secondary Capture instances over two series (three and two), written into
/// `folder`: each instance's spec and file.
fn write_stow_study(folder: &Path) -> Vec<(InstanceSpec, PathBuf)> {
    fs::create_dir_all(folder).expect("create the folder of the study to store");
    let study = format!("{DICOMWEB_UID_ROOT}.1.1");
    (1..=5u32)
        .map(|number| {
            let series = if number <= 3 { 1 } else { 2 };
            let spec = InstanceSpec {
                patient_name: "Stow^Dicomweb".to_owned(),
                patient_id: "DW-0001".to_owned(),
                study_instance_uid: study.clone(),
                study_date: "20250311".to_owned(),
                accession_number: "DWACC0001".to_owned(),
                series_instance_uid: format!("{DICOMWEB_UID_ROOT}.2.1.{series}"),
                series_number: series,
                sop_instance_uid: format!("{DICOMWEB_UID_ROOT}.3.1.{series}.{number}"),
                instance_number: number,
                rows: 16,
                columns: 20,
                pixel_seed: 7010 + u64::from(number),
            };
            let path = folder.join(format!("stow_{number}.dcm"));
            write_instance(&spec, &path);
            (spec, path)
        })
        .collect()
}

/// Runs DCMTK `findscu -S` with `keys` against `server`: the identifiers of its responses,
/// after checking that it exited 0 with a final Success. `None` (after `SKIP:`) without DCMTK.
fn dcmtk_find(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    keys: &[&str],
) -> Option<Vec<QrIdentifier>> {
    let found =
        QrClient::Dcmtk.find(dir, label, server.address(), QrModel::StudyRoot, keys, &[])?;
    let log = format!("{}\n{}", found.finished.describe(), server.describe());
    found.finished.assert_code(0);
    assert!(
        found
            .finished
            .output()
            .contains("Received Final Find Response (Success)"),
        "findscu {label} did not end with Success\n{log}"
    );
    Some(found.identifiers)
}

/// Asserts that `responses` are one per entry of `expected`, told apart by `key`, each holding
/// the values of its entry.
#[track_caller]
fn assert_identifiers(
    responses: &[QrIdentifier],
    key: Tag,
    expected: &BTreeMap<String, Vec<(Tag, String)>>,
    context: &str,
) {
    let mut seen = BTreeSet::new();
    for response in responses {
        let value = response.require(key).to_owned();
        let Some(values) = expected.get(&value) else {
            panic!("a response names {value}, which must not match\n{context}");
        };
        assert!(seen.insert(value.clone()), "{value} came twice\n{context}");
        for (tag, wanted) in values {
            assert_eq!(
                response.get(*tag),
                Some(wanted.as_str()),
                "{tag} of {value}: {:#?}\n{context}",
                response.elements
            );
        }
    }
    let expected_keys: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(seen, expected_keys, "what was found ({key})\n{context}");
}

/// Runs DCMTK `getscu -S` with `keys` against `server` into `<dir>/<label>` and asserts that
/// exactly `expected` arrived, data sets equal to the files sent. `None` (after `SKIP:`)
/// without DCMTK.
fn dcmtk_get_exactly(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    keys: &[&str],
    expected: &[&QrInstance],
) -> Option<()> {
    let (got, received) =
        QrClient::Dcmtk.get(dir, label, server.address(), QrModel::StudyRoot, keys, &[])?;
    let log = format!("{}\n{}", got.describe(), server.describe());
    got.assert_code(0);
    assert_received_instances(dir, expected, &received, &log);
    Some(())
}

// ---------------------------------------------------------------------------------------------
// 1. STOW-RS to C-FIND and C-GET, C-STORE to WADO-RS
// ---------------------------------------------------------------------------------------------

#[test]
fn dicomweb_client_stores_a_study_that_dcmtk_finds_and_retrieves() {
    let Some(dir) = retrieve_scratch_dir("dicomweb-stow-then-dimse") else {
        return;
    };
    if dicomweb_client().is_none() {
        return;
    }
    let study = write_stow_study(&dir.join("to-stow"));
    let server = DimsumServe::start(&dir, &dir.join("data"), &[]);
    let mut args = vec!["store".to_owned()];
    args.extend(study.iter().map(|(_, path)| arg(path)));
    let Some(stored) = dicomweb(&dir, "store", &server, &args) else {
        return;
    };
    let context = server.describe();
    let report = stored.ok(&context);

    // the STOW-RS response (PS3.18 10.5.3): every instance referenced, none failed
    let response = &report["response"];
    assert!(
        json_items(response, tags::FAILED_SOP_SEQUENCE).is_empty(),
        "the store failed some instances: {response}\n{context}"
    );
    let referenced = json_items(response, tags::REFERENCED_SOP_SEQUENCE);
    let by_uid: BTreeMap<String, &Value> = referenced
        .iter()
        .map(|item| (json_value(item, tags::REFERENCED_SOP_INSTANCE_UID), item))
        .collect();
    let sent: BTreeSet<String> = study
        .iter()
        .map(|(spec, _)| spec.sop_instance_uid.clone())
        .collect();
    assert_eq!(
        by_uid.keys().cloned().collect::<BTreeSet<_>>(),
        sent,
        "instances referenced by the response: {response}\n{context}"
    );
    assert_eq!(referenced.len(), sent.len(), "{response}");
    for (spec, _) in &study {
        let item = by_uid[&spec.sop_instance_uid];
        assert_eq!(
            json_value(item, tags::REFERENCED_SOP_CLASS_UID),
            SECONDARY_CAPTURE_IMAGE_STORAGE,
            "{item}"
        );
        // the Retrieve URL is the instance's resource under the root the client called
        let url = json_value(item, tags::RETRIEVE_URL);
        let resource = format!(
            "{}/studies/{}/series/{}/instances/{}",
            server.dicomweb_url(),
            spec.study_instance_uid,
            spec.series_instance_uid,
            spec.sop_instance_uid
        );
        assert_eq!(
            url, resource,
            "the Retrieve URL of {}",
            spec.sop_instance_uid
        );
    }
    assert_eq!(stored_sop_instance_uids(server.data()), sent, "{context}");

    // DCMTK findscu at every level finds what was stored
    let study_uid = &study[0].0.study_instance_uid;
    let Some(studies) = dcmtk_find(
        &dir,
        "find-study",
        &server,
        &[
            "QueryRetrieveLevel=STUDY",
            "StudyInstanceUID",
            "PatientName",
            "PatientID",
            "StudyDate",
            "AccessionNumber",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ],
    ) else {
        return;
    };
    let first = &study[0].0;
    let expected_study = BTreeMap::from([(
        study_uid.clone(),
        vec![
            (tags::PATIENT_NAME, first.patient_name.clone()),
            (tags::PATIENT_ID, first.patient_id.clone()),
            (tags::STUDY_DATE, first.study_date.clone()),
            (tags::ACCESSION_NUMBER, first.accession_number.clone()),
            (tags::NUMBER_OF_STUDY_RELATED_SERIES, "2".to_owned()),
            (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, "5".to_owned()),
        ],
    )]);
    assert_identifiers(
        &studies,
        tags::STUDY_INSTANCE_UID,
        &expected_study,
        &context,
    );

    let study_key = format!("StudyInstanceUID={study_uid}");
    let Some(series) = dcmtk_find(
        &dir,
        "find-series",
        &server,
        &[
            "QueryRetrieveLevel=SERIES",
            &study_key,
            "SeriesInstanceUID",
            "SeriesNumber",
            "Modality",
            "NumberOfSeriesRelatedInstances",
        ],
    ) else {
        return;
    };
    let mut expected_series: BTreeMap<String, Vec<(Tag, String)>> = BTreeMap::new();
    for (spec, _) in &study {
        let count = study
            .iter()
            .filter(|(other, _)| other.series_instance_uid == spec.series_instance_uid)
            .count();
        expected_series.insert(
            spec.series_instance_uid.clone(),
            vec![
                (tags::SERIES_NUMBER, spec.series_number.to_string()),
                (tags::MODALITY, "OT".to_owned()),
                (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, count.to_string()),
            ],
        );
    }
    assert_identifiers(
        &series,
        tags::SERIES_INSTANCE_UID,
        &expected_series,
        &context,
    );

    for series_uid in expected_series.keys() {
        let series_key = format!("SeriesInstanceUID={series_uid}");
        let Some(images) = dcmtk_find(
            &dir,
            &format!("find-image-{}", series_uid.rsplit('.').next().unwrap_or("")),
            &server,
            &[
                "QueryRetrieveLevel=IMAGE",
                &study_key,
                &series_key,
                "SOPInstanceUID",
                "SOPClassUID",
                "InstanceNumber",
            ],
        ) else {
            return;
        };
        let expected_images: BTreeMap<String, Vec<(Tag, String)>> = study
            .iter()
            .filter(|(spec, _)| &spec.series_instance_uid == series_uid)
            .map(|(spec, _)| {
                (
                    spec.sop_instance_uid.clone(),
                    vec![
                        (
                            tags::SOP_CLASS_UID,
                            SECONDARY_CAPTURE_IMAGE_STORAGE.to_owned(),
                        ),
                        (tags::INSTANCE_NUMBER, spec.instance_number.to_string()),
                    ],
                )
            })
            .collect();
        assert_identifiers(&images, tags::SOP_INSTANCE_UID, &expected_images, &context);
    }

    // DCMTK getscu retrieves the study and a series: the data sets sent by dicomweb-client
    let all: Vec<QrInstance> = study
        .iter()
        .map(|(spec, path)| spec.as_qr_instance(path))
        .collect();
    let all_refs: Vec<&QrInstance> = all.iter().collect();
    if dcmtk_get_exactly(
        &dir,
        "get-study",
        &server,
        &["QueryRetrieveLevel=STUDY", &study_key],
        &all_refs,
    )
    .is_none()
    {
        return;
    }
    let second_series = &study[4].0.series_instance_uid;
    let series_key = format!("SeriesInstanceUID={second_series}");
    let in_series: Vec<&QrInstance> = study
        .iter()
        .zip(&all)
        .filter(|((spec, _), _)| &spec.series_instance_uid == second_series)
        .map(|(_, instance)| instance)
        .collect();
    dcmtk_get_exactly(
        &dir,
        "get-series",
        &server,
        &["QueryRetrieveLevel=SERIES", &study_key, &series_key],
        &in_series,
    );
}

/// Runs the driver's `retrieve` of `uids` (study, then optionally series and instance) into
/// `<dir>/<label>` with `transfer_syntax` asked for (`None`: the client's default) and asserts
/// that exactly `expected` came back, data sets equal to the files sent, each in
/// `expected_syntax(instance)`. `None` (after `SKIP:`) without the peers.
fn retrieve_exactly(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    uids: &[&str],
    transfer_syntax: Option<&str>,
    expected: &[&QrInstance],
    expected_syntax: impl Fn(&QrInstance) -> String,
) -> Option<()> {
    let out = dir.join(label);
    let mut args = vec!["retrieve".to_owned(), "--out".to_owned(), arg(&out)];
    for (option, uid) in ["--study", "--series", "--instance"].iter().zip(uids) {
        args.push((*option).to_owned());
        args.push((*uid).to_owned());
    }
    if let Some(syntax) = transfer_syntax {
        args.push("--transfer-syntax".to_owned());
        args.push(syntax.to_owned());
    }
    let retrieved = dicomweb(dir, label, server, &args)?;
    let context = format!("{}\n{}", retrieved.finished.describe(), server.describe());
    let report = retrieved.ok(&context);
    let syntaxes: BTreeMap<String, String> = report["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no instances in the report\n{context}"))
        .iter()
        .map(|instance| {
            (
                instance["sop_instance_uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                instance["transfer_syntax"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let wanted: BTreeMap<String, String> = expected
        .iter()
        .map(|instance| (instance.sop_instance_uid.clone(), expected_syntax(instance)))
        .collect();
    assert_eq!(
        syntaxes, wanted,
        "instances and transfer syntaxes retrieved ({label})\n{context}"
    );
    assert_received_instances(dir, expected, &out, &context);
    Some(())
}

#[test]
fn dcmtk_stores_the_data_set_that_dicomweb_client_retrieves() {
    let Some(dir) = retrieve_scratch_dir("dicomweb-dimse-then-wado") else {
        return;
    };
    if dicomweb_client().is_none() {
        return;
    }
    let server = DimsumServe::start(&dir, &dir.join("data"), &[]);
    let data = QrDataSet::get();
    let folder = dir.join("to-store");
    copy_into(&data.files(), &folder);
    if store_folder(
        &dir,
        "storescu-load",
        server.address(),
        &folder,
        data.files().len(),
        || server.describe(),
    )
    .is_none()
    {
        return;
    }
    let as_stored = |instance: &QrInstance| instance.transfer_syntax.clone();
    let explicit = |_: &QrInstance| EXPLICIT_VR_LE.to_owned();

    // a study of two series, all Explicit VR Little Endian: the client's default (explicit)
    let chest = &data.patients[0].studies[0];
    assert!(
        chest
            .instances()
            .all(|i| i.transfer_syntax == EXPLICIT_VR_LE),
        "the CT chest study is stored in Explicit VR Little Endian"
    );
    let expected: Vec<&QrInstance> = chest.instances().collect();
    if retrieve_exactly(
        &dir,
        "retrieve-study",
        &server,
        &[&chest.study_instance_uid],
        None,
        &expected,
        explicit,
    )
    .is_none()
    {
        return;
    }

    // a series with an instance in Implicit VR Little Endian: transfer-syntax=* (as stored)
    let brain = &data.patients[0].studies[1];
    let t1 = &brain.series[0];
    assert!(
        t1.instances
            .iter()
            .any(|i| i.transfer_syntax == IMPLICIT_VR_LE),
        "the MR brain series has an instance in Implicit VR Little Endian"
    );
    let expected: Vec<&QrInstance> = t1.instances.iter().collect();
    retrieve_exactly(
        &dir,
        "retrieve-series",
        &server,
        &[&brain.study_instance_uid, &t1.series_instance_uid],
        Some("*"),
        &expected,
        as_stored,
    );

    // one instance of a two-series study, in the client's default for instances (`*`), and the
    // Implicit VR one alone
    let knee = &data.patients[1].studies[0];
    let series = &knee.series[0];
    let instance = &series.instances[1];
    retrieve_exactly(
        &dir,
        "retrieve-instance",
        &server,
        &[
            &knee.study_instance_uid,
            &series.series_instance_uid,
            &instance.sop_instance_uid,
        ],
        None,
        &[instance],
        as_stored,
    );
    let implicit = t1
        .instances
        .iter()
        .find(|i| i.transfer_syntax == IMPLICIT_VR_LE)
        .expect("checked above");
    retrieve_exactly(
        &dir,
        "retrieve-implicit-instance",
        &server,
        &[
            &brain.study_instance_uid,
            &t1.series_instance_uid,
            &implicit.sop_instance_uid,
        ],
        Some("*"),
        &[implicit],
        as_stored,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. QIDO-RS
// ---------------------------------------------------------------------------------------------

/// MR Image Storage (PS3.4 Annex B).
const MR_IMAGE_STORAGE: &str = support::qr::MR_IMAGE_STORAGE;

/// `dimsum serve` in `<dir>/data` loaded with the Q/R data set by DCMTK `storescu +sd`.
/// `None` (after `SKIP:`) without DCMTK or dicomweb-client.
fn archive_with_data_set(dir: &Path) -> Option<DimsumServe> {
    dicomweb_client()?;
    let server = DimsumServe::start(dir, &dir.join("data"), &[]);
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
    )?;
    Some(server)
}

/// What a search should answer: for each entity, told apart by its key, `(tag, value)` pairs.
type Entities = BTreeMap<String, Vec<(Tag, String)>>;

/// Tags whose values are sets (their order carries no meaning): compared sorted.
const SET_VALUED: [Tag; 2] = [tags::MODALITIES_IN_STUDY, tags::SOP_CLASSES_IN_STUDY];

/// The searches of one driver run and what they answered.
struct Searches {
    results: Value,
    context: String,
}

impl Searches {
    /// Runs every request of `requests` (`[{"name", "level", ...}]`, see the driver) in one
    /// driver run. `None` (after `SKIP:`) without dicomweb-client.
    fn run(dir: &Path, label: &str, server: &DimsumServe, requests: &[Value]) -> Option<Searches> {
        let file = dir.join(format!("{label}.json"));
        fs::write(&file, Value::Array(requests.to_vec()).to_string())
            .expect("write the search requests");
        let searched = dicomweb(dir, label, server, &["search".to_owned(), arg(&file)])?;
        let context = format!("{}\n{}", searched.finished.describe(), server.describe());
        let results = searched.report["results"].clone();
        assert!(
            results.is_object(),
            "the driver reported no results\n{context}"
        );
        Some(Searches { results, context })
    }

    /// The data sets that the search `name` answered (panics with the request's method, URL
    /// and status when it failed).
    #[track_caller]
    fn datasets(&self, name: &str) -> &[Value] {
        let result = &self.results[name];
        if let Some(error) = result.get("error") {
            panic!(
                "search {name:?} failed: {}\n{}",
                describe_error(error),
                self.context
            );
        }
        result["datasets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("search {name:?} has no result\n{}", self.context))
    }

    /// The HTTP status that the search `name` failed with (panics when it succeeded).
    #[track_caller]
    fn error_status(&self, name: &str) -> u64 {
        self.results[name]
            .get("error")
            .and_then(|error| error["status"].as_u64())
            .unwrap_or_else(|| {
                panic!(
                    "search {name:?} succeeded, an HTTP error was expected: {}\n{}",
                    self.results[name], self.context
                )
            })
    }

    /// The values of `key` in the results of `name`, asserting that none comes twice.
    #[track_caller]
    fn keys(&self, name: &str, key: Tag) -> BTreeSet<String> {
        let datasets = self.datasets(name);
        let keys: BTreeSet<String> = datasets.iter().map(|d| json_value(d, key)).collect();
        assert_eq!(
            keys.len(),
            datasets.len(),
            "search {name:?} answered an entity twice: {datasets:#?}"
        );
        keys
    }

    /// Asserts that `name` answered exactly the entities `expected` (told apart by `key`).
    #[track_caller]
    fn assert_keys(&self, name: &str, key: Tag, expected: &[&str]) {
        let expected: BTreeSet<String> = expected.iter().map(|v| (*v).to_owned()).collect();
        assert_eq!(
            self.keys(name, key),
            expected,
            "what search {name:?} found ({key})\n{}",
            self.context
        );
    }

    /// Asserts that `name` answered exactly the entities of `expected`, each with its values.
    #[track_caller]
    fn assert_entities(&self, name: &str, key: Tag, expected: &Entities) {
        let wanted: Vec<&str> = expected.keys().map(String::as_str).collect();
        self.assert_keys(name, key, &wanted);
        for dataset in self.datasets(name) {
            let entity = json_value(dataset, key);
            for (tag, value) in &expected[&entity] {
                let mut got = json_values(dataset, *tag)
                    .unwrap_or_else(|| panic!("search {name:?}: {entity} has no {tag}: {dataset}"));
                let mut value: Vec<String> = value.split('\\').map(str::to_owned).collect();
                if SET_VALUED.contains(tag) {
                    got.sort();
                    value.sort();
                }
                assert_eq!(got, value, "search {name:?}: {tag} of {entity}: {dataset}");
            }
        }
    }
}

/// A search request for the driver.
fn request(name: &str, level: &str, options: Value) -> Value {
    let mut request = serde_json::json!({"name": name, "level": level});
    if let (Some(request), Some(options)) = (request.as_object_mut(), options.as_object()) {
        request.extend(options.clone());
    }
    request
}

/// The study-level values of each study of the data set (PS3.18 Table 10.6.3-3), by Study
/// Instance UID.
fn studies_expected(data: &QrDataSet) -> Entities {
    data.studies()
        .into_iter()
        .map(|item| {
            let study = item.study;
            let instances = study.instances().count();
            let mut modalities: Vec<&str> = study.modalities().into_iter().collect();
            modalities.sort_unstable();
            let mut values = vec![
                (tags::PATIENT_NAME, item.patient.patient_name.clone()),
                (tags::PATIENT_ID, item.patient.patient_id.clone()),
                (tags::PATIENT_BIRTH_DATE, item.patient.birth_date.clone()),
                (tags::PATIENT_SEX, item.patient.sex.clone()),
                (tags::STUDY_DATE, study.study_date.clone()),
                (tags::STUDY_TIME, study.study_time.clone()),
                (tags::ACCESSION_NUMBER, study.accession_number.clone()),
                (tags::STUDY_ID, study.study_id.clone()),
                (tags::MODALITIES_IN_STUDY, modalities.join("\\")),
                (
                    tags::NUMBER_OF_STUDY_RELATED_SERIES,
                    study.series.len().to_string(),
                ),
                (
                    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                    instances.to_string(),
                ),
            ];
            if !study.referring_physician.is_empty() {
                values.push((
                    tags::REFERRING_PHYSICIAN_NAME,
                    study.referring_physician.clone(),
                ));
            }
            (study.study_instance_uid.clone(), values)
        })
        .collect()
}

/// The series-level values of each series of the data set (Table 10.6.3-4), by Series Instance
/// UID; with `with_study`, the Study Instance UID and Patient ID too (a search not scoped by a
/// study returns the study's attributes).
fn series_expected(data: &QrDataSet, with_study: bool) -> Entities {
    data.studies()
        .into_iter()
        .flat_map(|item| {
            item.study.series.iter().map(move |series| {
                let mut values = vec![
                    (tags::MODALITY, series.modality.clone()),
                    (tags::SERIES_NUMBER, series.series_number.to_string()),
                    (tags::SERIES_DESCRIPTION, series.description.clone()),
                    (
                        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
                        series.instances.len().to_string(),
                    ),
                ];
                if with_study {
                    values.push((
                        tags::STUDY_INSTANCE_UID,
                        item.study.study_instance_uid.clone(),
                    ));
                    values.push((tags::PATIENT_ID, item.patient.patient_id.clone()));
                }
                (series.series_instance_uid.clone(), values)
            })
        })
        .collect()
}

/// The instance-level values of each instance of the data set (Table 10.6.3-5), by SOP
/// Instance UID; with `with_series`, the series' and study's UIDs and the Modality too.
fn instances_expected(data: &QrDataSet, with_series: bool) -> Entities {
    data.instances()
        .into_iter()
        .map(|item| {
            let instance = item.instance;
            let mut values = vec![
                (tags::SOP_CLASS_UID, instance.sop_class_uid.clone()),
                (tags::INSTANCE_NUMBER, instance.instance_number.to_string()),
                (tags::ROWS, instance.rows.to_string()),
                (tags::COLUMNS, instance.columns.to_string()),
                (tags::BITS_ALLOCATED, instance.bits_allocated.to_string()),
            ];
            if with_series {
                values.push((
                    tags::STUDY_INSTANCE_UID,
                    item.study.study_instance_uid.clone(),
                ));
                values.push((
                    tags::SERIES_INSTANCE_UID,
                    item.series.series_instance_uid.clone(),
                ));
                values.push((tags::MODALITY, item.series.modality.clone()));
            }
            (instance.sop_instance_uid.clone(), values)
        })
        .collect()
}

/// The entries of `all` whose key is in `keys`.
fn only(all: &Entities, keys: &[&str]) -> Entities {
    let entities: Entities = all
        .iter()
        .filter(|(key, _)| keys.contains(&key.as_str()))
        .map(|(key, values)| (key.clone(), values.clone()))
        .collect();
    assert_eq!(
        entities.len(),
        keys.len(),
        "keys not in the data set: {keys:?}"
    );
    entities
}

#[test]
fn dicomweb_client_searches_studies_series_and_instances() {
    let Some(dir) = retrieve_scratch_dir("dicomweb-qido") else {
        return;
    };
    let Some(server) = archive_with_data_set(&dir) else {
        return;
    };
    let data = QrDataSet::get();
    let jane = &data.patients[0];
    let (chest, brain) = (&jane.studies[0], &jane.studies[1]);
    let knee = &data.patients[1].studies[0];
    let outside = &data.patients[2].studies[0];
    let study_uid = |study: &support::qr::QrStudy| study.study_instance_uid.clone();
    let (chest_uid, brain_uid, knee_uid, outside_uid) = (
        study_uid(chest),
        study_uid(brain),
        study_uid(knee),
        study_uid(outside),
    );
    let axial = &chest.series[0];
    let knee_pd = &knee.series[0];
    let one_instance = &knee.series[1].instances[0];
    let none = serde_json::json!({});
    use serde_json::json;

    let requests = vec![
        // studies: everything, then each kind of filter
        request("studies", "studies", none.clone()),
        request(
            "studies-name-wildcard",
            "studies",
            json!({"filters": {"PatientName": "Doe*"}}),
        ),
        request(
            "studies-name-exact",
            "studies",
            json!({"filters": {"PatientName": "Smith^John^Quincy^Dr^Jr"}}),
        ),
        request(
            "studies-date-range",
            "studies",
            json!({"filters": {"StudyDate": "20220101-20231231"}}),
        ),
        request(
            "studies-date-from",
            "studies",
            json!({"filters": {"StudyDate": "20240101-"}}),
        ),
        request(
            "studies-date-until",
            "studies",
            json!({"filters": {"StudyDate": "-20211231"}}),
        ),
        request(
            "studies-modality-ct",
            "studies",
            json!({"filters": {"ModalitiesInStudy": "CT"}}),
        ),
        request(
            "studies-modality-mr",
            "studies",
            json!({"filters": {"ModalitiesInStudy": "MR"}}),
        ),
        request(
            "studies-uid-list",
            "studies",
            json!({"filters": {"StudyInstanceUID": format!("{chest_uid},{outside_uid}")}}),
        ),
        request(
            "studies-by-tag",
            "studies",
            json!({"filters": {"00100020": "QR-0002"}}),
        ),
        request(
            "studies-no-match",
            "studies",
            json!({"filters": {"PatientID": "NOBODY"}}),
        ),
        // includefield by keyword, by tag, and all
        request(
            "studies-fields",
            "studies",
            json!({"filters": {"PatientID": "QR-0001"}, "fields": ["StudyDescription"]}),
        ),
        request(
            "studies-fields-by-tag",
            "studies",
            json!({"filters": {"PatientID": "QR-0002"}, "fields": ["00081030"]}),
        ),
        request(
            "studies-fields-all",
            "studies",
            json!({"filters": {"PatientID": "QR-0003"}, "fields": ["all"]}),
        ),
        // limit and offset
        request(
            "studies-page-1",
            "studies",
            json!({"limit": 2, "offset": 0}),
        ),
        request(
            "studies-page-2",
            "studies",
            json!({"limit": 2, "offset": 2}),
        ),
        request(
            "studies-page-3",
            "studies",
            json!({"limit": 2, "offset": 4}),
        ),
        request(
            "studies-one-by-one",
            "studies",
            json!({"limit": 1, "get_remaining": true}),
        ),
        // fuzzy matching of person names: word prefixes, any case
        request(
            "studies-given-name-not-fuzzy",
            "studies",
            json!({"filters": {"PatientName": "jane"}, "fuzzymatching": false}),
        ),
        request(
            "studies-given-name-fuzzy",
            "studies",
            json!({"filters": {"PatientName": "jane"}, "fuzzymatching": true}),
        ),
        request(
            "studies-family-word-fuzzy",
            "studies",
            json!({"filters": {"PatientName": "LOP"}, "fuzzymatching": true}),
        ),
        request(
            "studies-referring-fuzzy",
            "studies",
            json!({"filters": {"ReferringPhysicianName": "greg"}, "fuzzymatching": true}),
        ),
        // a bad parameter
        request(
            "studies-unknown-attribute",
            "studies",
            json!({"filters": {"NoSuchAttribute": "1"}}),
        ),
        // series: global and study-scoped
        request("series", "series", none.clone()),
        request(
            "series-modality",
            "series",
            json!({"filters": {"Modality": "MR"}}),
        ),
        request("series-of-study", "series", json!({"study": knee_uid})),
        request(
            "series-of-study-modality",
            "series",
            json!({"study": chest_uid, "filters": {"Modality": "OT"}}),
        ),
        request(
            "series-of-study-number",
            "series",
            json!({"study": knee_uid, "filters": {"SeriesNumber": "2"}}),
        ),
        request(
            "series-name-wildcard",
            "series",
            json!({"filters": {"PatientName": "Garcia*"}}),
        ),
        // instances: global, study- and series-scoped
        request("instances", "instances", none.clone()),
        request(
            "instances-of-study",
            "instances",
            json!({"study": chest_uid}),
        ),
        request(
            "instances-of-series",
            "instances",
            json!({"study": knee_uid, "series": knee_pd.series_instance_uid}),
        ),
        request(
            "instances-sop-class",
            "instances",
            json!({"filters": {"SOPClassUID": MR_IMAGE_STORAGE}}),
        ),
        request(
            "instances-name-wildcard",
            "instances",
            json!({"filters": {"PatientName": "Smith*"}}),
        ),
        request(
            "instances-by-uid",
            "instances",
            json!({"filters": {"SOPInstanceUID": one_instance.sop_instance_uid}}),
        ),
        request(
            "instances-of-series-page-1",
            "instances",
            json!({"study": chest_uid, "series": axial.series_instance_uid, "limit": 2}),
        ),
        request(
            "instances-of-series-page-2",
            "instances",
            json!({"study": chest_uid, "series": axial.series_instance_uid,
                   "limit": 2, "offset": 2}),
        ),
    ];
    let Some(searches) = Searches::run(&dir, "search", &server, &requests) else {
        return;
    };
    let study = tags::STUDY_INSTANCE_UID;
    let all_studies = studies_expected(data);

    searches.assert_entities("studies", study, &all_studies);
    searches.assert_entities(
        "studies-name-wildcard",
        study,
        &only(&all_studies, &[&chest_uid, &brain_uid]),
    );
    searches.assert_keys("studies-name-exact", study, &[&knee_uid]);
    searches.assert_keys("studies-date-range", study, &[&brain_uid, &knee_uid]);
    searches.assert_keys("studies-date-from", study, &[&chest_uid]);
    searches.assert_keys("studies-date-until", study, &[&outside_uid]);
    searches.assert_keys("studies-modality-ct", study, &[&chest_uid]);
    searches.assert_keys("studies-modality-mr", study, &[&brain_uid, &knee_uid]);
    searches.assert_keys("studies-uid-list", study, &[&chest_uid, &outside_uid]);
    searches.assert_keys("studies-by-tag", study, &[&knee_uid]);
    searches.assert_keys("studies-no-match", study, &[]);

    let descriptions = |uids: &[&support::qr::QrStudy]| -> Entities {
        uids.iter()
            .map(|s| {
                (
                    s.study_instance_uid.clone(),
                    vec![(tags::STUDY_DESCRIPTION, s.description.clone())],
                )
            })
            .collect()
    };
    searches.assert_entities("studies-fields", study, &descriptions(&[chest, brain]));
    searches.assert_entities("studies-fields-by-tag", study, &descriptions(&[knee]));
    searches.assert_entities("studies-fields-all", study, &descriptions(&[outside]));
    // without includefield, no Study Description
    for dataset in searches.datasets("studies") {
        assert!(
            json_values(dataset, tags::STUDY_DESCRIPTION).is_none(),
            "Study Description returned without includefield: {dataset}"
        );
    }

    let page_1 = searches.keys("studies-page-1", study);
    let page_2 = searches.keys("studies-page-2", study);
    assert_eq!((page_1.len(), page_2.len()), (2, 2), "pages of 2 studies");
    assert!(
        page_1.is_disjoint(&page_2),
        "pages overlap: {page_1:?} {page_2:?}"
    );
    let paged: BTreeSet<String> = page_1.union(&page_2).cloned().collect();
    assert_eq!(
        paged,
        all_studies.keys().cloned().collect::<BTreeSet<_>>(),
        "two pages of two give every study"
    );
    searches.assert_keys("studies-page-3", study, &[]);
    searches.assert_entities("studies-one-by-one", study, &all_studies);

    searches.assert_keys("studies-given-name-not-fuzzy", study, &[]);
    searches.assert_keys("studies-given-name-fuzzy", study, &[&chest_uid, &brain_uid]);
    searches.assert_keys("studies-family-word-fuzzy", study, &[&outside_uid]);
    searches.assert_keys("studies-referring-fuzzy", study, &[&chest_uid]);

    assert_eq!(
        searches.error_status("studies-unknown-attribute"),
        400,
        "an unknown attribute is a bad request"
    );

    let series = tags::SERIES_INSTANCE_UID;
    let all_series = series_expected(data, true);
    searches.assert_entities("series", series, &all_series);
    let mr_series: Vec<&str> = all_series
        .iter()
        .filter(|(_, values)| values.contains(&(tags::MODALITY, "MR".to_owned())))
        .map(|(uid, _)| uid.as_str())
        .collect();
    assert_eq!(mr_series.len(), 3, "the data set has three MR series");
    searches.assert_keys("series-modality", series, &mr_series);
    let knee_series: Vec<&str> = knee
        .series
        .iter()
        .map(|s| s.series_instance_uid.as_str())
        .collect();
    searches.assert_entities(
        "series-of-study",
        series,
        &only(&series_expected(data, false), &knee_series),
    );
    searches.assert_keys(
        "series-of-study-modality",
        series,
        &[&chest.series[1].series_instance_uid],
    );
    searches.assert_keys(
        "series-of-study-number",
        series,
        &[&knee.series[1].series_instance_uid],
    );
    searches.assert_keys(
        "series-name-wildcard",
        series,
        &[&outside.series[0].series_instance_uid],
    );

    let instance = tags::SOP_INSTANCE_UID;
    let all_instances = instances_expected(data, true);
    searches.assert_entities("instances", instance, &all_instances);
    let uids_of = |instances: Vec<&QrInstance>| -> Vec<String> {
        instances
            .into_iter()
            .map(|i| i.sop_instance_uid.clone())
            .collect()
    };
    let chest_instances = uids_of(chest.instances().collect());
    let chest_refs: Vec<&str> = chest_instances.iter().map(String::as_str).collect();
    searches.assert_keys("instances-of-study", instance, &chest_refs);
    let pd_instances = uids_of(knee_pd.instances.iter().collect());
    let pd_refs: Vec<&str> = pd_instances.iter().map(String::as_str).collect();
    searches.assert_entities(
        "instances-of-series",
        instance,
        &only(&instances_expected(data, false), &pd_refs),
    );
    let mr_instances = uids_of(
        data.instances()
            .into_iter()
            .filter(|i| i.instance.sop_class_uid == MR_IMAGE_STORAGE)
            .map(|i| i.instance)
            .collect(),
    );
    assert_eq!(mr_instances.len(), 5, "the data set has five MR instances");
    let mr_refs: Vec<&str> = mr_instances.iter().map(String::as_str).collect();
    searches.assert_keys("instances-sop-class", instance, &mr_refs);
    let knee_instances = uids_of(knee.instances().collect());
    let knee_refs: Vec<&str> = knee_instances.iter().map(String::as_str).collect();
    searches.assert_keys("instances-name-wildcard", instance, &knee_refs);
    searches.assert_keys(
        "instances-by-uid",
        instance,
        &[&one_instance.sop_instance_uid],
    );
    let first_page = searches.keys("instances-of-series-page-1", instance);
    let second_page = searches.keys("instances-of-series-page-2", instance);
    assert_eq!(
        (first_page.len(), second_page.len()),
        (2, 1),
        "pages of 2 of 3"
    );
    let axial_all: BTreeSet<String> = axial.sop_instance_uids();
    assert_eq!(
        first_page
            .union(&second_page)
            .cloned()
            .collect::<BTreeSet<_>>(),
        axial_all,
        "the two pages give the series' instances"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. WADO-RS metadata and bulk data
// ---------------------------------------------------------------------------------------------

/// The driver's `--study/--series/--instance` arguments for `uids`.
fn uid_args(uids: &[&str]) -> Vec<String> {
    ["--study", "--series", "--instance"]
        .iter()
        .zip(uids)
        .flat_map(|(option, uid)| [(*option).to_owned(), (*uid).to_owned()])
        .collect()
}

/// Runs the driver's `metadata` of `uids` into `<dir>/<label>` and asserts that it describes
/// exactly `expected`: Pixel Data given as a BulkDataURI whose bytes (`retrieve_bulkdata`,
/// accepting `bulk_media_type` or by default anything) are the stored pixel data, and each
/// instance rebuilt from its metadata and bulk data equal to the file sent, element by element.
/// `None` (after `SKIP:`) without the peers.
fn metadata_exactly(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    uids: &[&str],
    bulk_media_type: Option<&str>,
    expected: &[&QrInstance],
) -> Option<()> {
    let out = dir.join(label);
    let mut args = vec!["metadata".to_owned(), "--out".to_owned(), arg(&out)];
    args.extend(uid_args(uids));
    if let Some(media_type) = bulk_media_type {
        args.extend(["--bulk-media-type".to_owned(), media_type.to_owned()]);
    }
    let fetched = dicomweb(dir, label, server, &args)?;
    let context = format!("{}\n{}", fetched.finished.describe(), server.describe());
    let report = fetched.ok(&context);
    let instances = report["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no instances in the report\n{context}"));
    assert_eq!(
        instances.len(),
        expected.len(),
        "instances described by the metadata ({label})\n{context}"
    );
    for instance in instances {
        let uid = instance["sop_instance_uid"].as_str().unwrap_or_default();
        let sent = expected
            .iter()
            .find(|e| e.sop_instance_uid == uid)
            .unwrap_or_else(|| panic!("metadata of {uid}, which is not expected\n{context}"));
        let pixel_data = &instance["json"][key(tags::PIXEL_DATA)];
        assert!(
            pixel_data.get("BulkDataURI").is_some()
                && pixel_data.get("InlineBinary").is_none()
                && pixel_data.get("Value").is_none(),
            "Pixel Data of {uid} is not given as a BulkDataURI: {pixel_data}\n{context}"
        );
        let bulk = instance["bulkdata"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|item| item["path"] == key(tags::PIXEL_DATA))
            })
            .unwrap_or_else(|| panic!("the Pixel Data of {uid} was not fetched\n{context}"));
        let file = bulk["file"].as_str().unwrap_or_default();
        let bytes = fs::read(file).unwrap_or_else(|error| panic!("{file}: {error}"));
        assert!(
            bytes == support::qr::pixel_data_bytes(&sent.path),
            "the bulk data at {} ({} bytes in {} parts) is not the Pixel Data of {}\n{context}",
            bulk["uri"],
            bytes.len(),
            bulk["parts"],
            sent.path.display()
        );
    }
    assert_received_instances(dir, expected, &out.join("instances"), &context);
    Some(())
}

/// The media type of bulk data and native frames (PS3.18 8.7.3.4).
const OCTET_STREAM: &str = "application/octet-stream";

#[test]
fn dicomweb_client_retrieves_metadata_and_bulk_data() {
    let Some(dir) = retrieve_scratch_dir("dicomweb-metadata") else {
        return;
    };
    let Some(server) = archive_with_data_set(&dir) else {
        return;
    };
    let data = QrDataSet::get();
    // a study of two series and modalities (16-bit CT and 8-bit secondary capture)
    let chest = &data.patients[0].studies[0];
    let expected: Vec<&QrInstance> = chest.instances().collect();
    if metadata_exactly(
        &dir,
        "study-metadata",
        &server,
        &[&chest.study_instance_uid],
        Some(OCTET_STREAM),
        &expected,
    )
    .is_none()
    {
        return;
    }
    // a series with an instance stored in Implicit VR Little Endian
    let brain = &data.patients[0].studies[1];
    let t1 = &brain.series[0];
    let expected: Vec<&QrInstance> = t1.instances.iter().collect();
    metadata_exactly(
        &dir,
        "series-metadata",
        &server,
        &[&brain.study_instance_uid, &t1.series_instance_uid],
        Some(OCTET_STREAM),
        &expected,
    );
    // one instance
    let knee = &data.patients[1].studies[0];
    let series = &knee.series[1];
    let instance = &series.instances[0];
    metadata_exactly(
        &dir,
        "instance-metadata",
        &server,
        &[
            &knee.study_instance_uid,
            &series.series_instance_uid,
            &instance.sop_instance_uid,
        ],
        Some(OCTET_STREAM),
        &[instance],
    );
}

/// dicomweb-client's own Accept for bulk data, `multipart/related; type="*/*"`.
#[test]
fn dicomweb_client_fetches_bulk_data_with_its_default_accept() {
    let Some(dir) = retrieve_scratch_dir("dicomweb-bulkdata-default-accept") else {
        return;
    };
    let Some(server) = archive_with_data_set(&dir) else {
        return;
    };
    let data = QrDataSet::get();
    let knee = &data.patients[1].studies[0];
    let series = &knee.series[0];
    let instance = &series.instances[0];
    metadata_exactly(
        &dir,
        "instance-metadata-default-accept",
        &server,
        &[
            &knee.study_instance_uid,
            &series.series_instance_uid,
            &instance.sop_instance_uid,
        ],
        None,
        &[instance],
    );
}

// ---------------------------------------------------------------------------------------------
// 4. WADO-RS frames and rendered images
// ---------------------------------------------------------------------------------------------

/// Multi-frame Grayscale Byte and Word Secondary Capture Image Storage (PS3.4 Annex B).
const MULTIFRAME_BYTE_SC: &str = "1.2.840.10008.5.1.4.1.1.7.2";
const MULTIFRAME_WORD_SC: &str = "1.2.840.10008.5.1.4.1.1.7.3";
/// The pydicom test files stored beside ours: RLE Lossless (2 RGB frames) and JPEG Baseline
/// (one YBR frame).
const PYDICOM_FILES: [&str; 2] = ["SC_rgb_rle_2frame.dcm", "SC_rgb_jpeg_dcmtk.dcm"];

/// A multi-frame instance written by [`write_multiframe`].
struct MultiFrame {
    number: u32,
    frames: u32,
    bits: u16,
    transfer_syntax: &'static str,
}

/// Writes a Multi-frame Grayscale Byte or Word Secondary Capture instance (PS3.3 A.8.3, A.8.4)
/// of `spec.frames` frames of 24 rows x 32 columns, each frame's values its own, at `path`, in
/// series 1 of a study of its own.
fn write_multiframe(spec: &MultiFrame, path: &Path) {
    use dimsum_net::dataset::dicom_core::{DataElement, PrimitiveValue, VR};
    use dimsum_net::dataset::dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    use support::qr::{text_element, us_element};

    let (rows, columns) = (24u16, 32u16);
    let samples = u32::from(rows) * u32::from(columns) * spec.frames;
    let value = move |index: u32| (index * 7 + (index / 768) * 85) % 251;
    let (sop_class, pixel_data) = if spec.bits == 8 {
        let bytes: Vec<u8> = (0..samples).map(|index| value(index) as u8).collect();
        (
            MULTIFRAME_BYTE_SC,
            DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(bytes)),
        )
    } else {
        let words: Vec<u16> = (0..samples)
            .map(|index| (value(index) * 13 + index % 5) as u16)
            .collect();
        (
            MULTIFRAME_WORD_SC,
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(words.into())),
        )
    };
    let number = spec.number.to_string();
    let mut object = InMemDicomObject::new_empty();
    for element in [
        text_element(tags::SOP_CLASS_UID, VR::UI, sop_class),
        text_element(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            &format!("{DICOMWEB_UID_ROOT}.3.4.1.{number}"),
        ),
        text_element(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &format!("{DICOMWEB_UID_ROOT}.1.4"),
        ),
        text_element(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &format!("{DICOMWEB_UID_ROOT}.2.4.1"),
        ),
        text_element(tags::PATIENT_NAME, VR::PN, "Frames^Multi"),
        text_element(tags::PATIENT_ID, VR::LO, "DW-0004"),
        text_element(tags::STUDY_DATE, VR::DA, "20250312"),
        text_element(tags::MODALITY, VR::CS, "OT"),
        text_element(tags::SERIES_NUMBER, VR::IS, "1"),
        text_element(tags::INSTANCE_NUMBER, VR::IS, &number),
        text_element(tags::NUMBER_OF_FRAMES, VR::IS, &spec.frames.to_string()),
        us_element(tags::SAMPLES_PER_PIXEL, 1),
        text_element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us_element(tags::ROWS, rows),
        us_element(tags::COLUMNS, columns),
        us_element(tags::BITS_ALLOCATED, spec.bits),
        us_element(tags::BITS_STORED, spec.bits),
        us_element(tags::HIGH_BIT, spec.bits - 1),
        us_element(tags::PIXEL_REPRESENTATION, 0),
        pixel_data,
    ] {
        object.put(element);
    }
    object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(spec.transfer_syntax))
        .expect("file meta of the multi-frame instance")
        .write_to_file(path)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

/// Copies pydicom's own test files `names` into `folder` (pydicom is in the peer environment).
/// `None` (after `SKIP:`) without it.
fn copy_pydicom_test_files(dir: &Path, folder: &Path, names: &[&str]) -> Option<Vec<PathBuf>> {
    let mut command = python_script(PEER_SCRIPT)?;
    let python = command.get_program().to_owned();
    command = Command::new(python);
    command.args([
        "-c",
        "import json, sys\nfrom pydicom.data import get_testdata_file\n\
         print(json.dumps([get_testdata_file(name) for name in sys.argv[1:]]))",
    ]);
    command.args(names);
    let found = run("pydicom-test-files", dir, command, RUN_TIMEOUT);
    found.assert_code(0);
    let paths: Vec<PathBuf> = found
        .json()
        .as_array()
        .expect("a list of paths")
        .iter()
        .map(|path| PathBuf::from(path.as_str().expect("pydicom has its test file")))
        .collect();
    let sources: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    Some(copy_into(&sources, folder))
}

/// What a stored instance is, as the frame and rendered tests need it.
struct PixelInstance {
    path: PathBuf,
    study: String,
    series: String,
    instance: String,
    rows: u16,
    columns: u16,
    /// The frames as stored: the native frames, or the encapsulated fragments (one per frame).
    frames: Vec<Vec<u8>>,
}

impl PixelInstance {
    /// Reads the instance at `path` with dicom-object.
    fn read(path: &Path) -> PixelInstance {
        use dimsum_net::dataset::dicom_object;
        let object = dicom_object::open_file(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let text = |tag: Tag| -> String {
            object
                .element(tag)
                .ok()
                .and_then(|element| element.to_str().ok())
                .map(|value| value.trim().to_owned())
                .unwrap_or_default()
        };
        let number = |tag: Tag| -> usize { text(tag).parse().unwrap_or(1) };
        let rows = number(tags::ROWS);
        let columns = number(tags::COLUMNS);
        let frame_count = number(tags::NUMBER_OF_FRAMES);
        let pixel_data = object
            .element(tags::PIXEL_DATA)
            .unwrap_or_else(|error| panic!("no pixel data in {}: {error}", path.display()));
        let frames = match pixel_data.value().fragments() {
            Some(fragments) => {
                assert_eq!(
                    fragments.len(),
                    frame_count,
                    "{} has one fragment per frame",
                    path.display()
                );
                fragments.to_vec()
            }
            None => {
                let bytes = support::qr::pixel_data_bytes(path);
                let frame_length =
                    rows * columns * number(tags::SAMPLES_PER_PIXEL) * number(tags::BITS_ALLOCATED)
                        / 8;
                assert_eq!(
                    bytes.len(),
                    frame_length * frame_count,
                    "{}",
                    path.display()
                );
                bytes.chunks(frame_length).map(<[u8]>::to_vec).collect()
            }
        };
        PixelInstance {
            path: path.to_path_buf(),
            study: text(tags::STUDY_INSTANCE_UID),
            series: text(tags::SERIES_INSTANCE_UID),
            instance: text(tags::SOP_INSTANCE_UID),
            rows: rows as u16,
            columns: columns as u16,
            frames,
        }
    }

    /// The driver's arguments naming it.
    fn uid_args(&self) -> Vec<String> {
        uid_args(&[&self.study, &self.series, &self.instance])
    }
}

/// Runs the driver's `frames` of `numbers` of `instance` with `media` (a media type, and a
/// transfer syntax) into `<dir>/<label>`.
fn frames(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    instance: &PixelInstance,
    numbers: &[usize],
    media: Option<(&str, Option<&str>)>,
) -> Option<PeerRun> {
    let list: Vec<String> = numbers.iter().map(usize::to_string).collect();
    let mut args = vec![
        "frames".to_owned(),
        "--out".to_owned(),
        arg(&dir.join(label)),
        "--frames".to_owned(),
        list.join(","),
    ];
    args.extend(instance.uid_args());
    if let Some((media_type, syntax)) = media {
        args.extend(["--media-type".to_owned(), media_type.to_owned()]);
        if let Some(syntax) = syntax {
            args.extend(["--transfer-syntax".to_owned(), syntax.to_owned()]);
        }
    }
    dicomweb(dir, label, server, &args)
}

/// [`frames`], asserting that each frame came back with the bytes stored.
fn frames_exactly(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    instance: &PixelInstance,
    numbers: &[usize],
    media: Option<(&str, Option<&str>)>,
) -> Option<()> {
    let fetched = frames(dir, label, server, instance, numbers, media)?;
    let context = format!("{}\n{}", fetched.finished.describe(), server.describe());
    let report = fetched.ok(&context);
    assert_eq!(
        report["received"].as_u64(),
        Some(numbers.len() as u64),
        "frames received for {numbers:?} ({label})\n{context}"
    );
    for (frame, number) in report["frames"]
        .as_array()
        .expect("frames in the report")
        .iter()
        .zip(numbers)
    {
        let file = frame["path"].as_str().unwrap_or_default();
        let bytes = fs::read(file).unwrap_or_else(|error| panic!("{file}: {error}"));
        let stored = &instance.frames[number - 1];
        assert!(
            &bytes == stored,
            "frame {number} of {} ({label}): {} bytes received, {} stored{}\n{context}",
            instance.path.display(),
            bytes.len(),
            stored.len(),
            if bytes.len() == stored.len() {
                ", not the same"
            } else {
                ""
            }
        );
    }
    Some(())
}

/// Asserts that a frames request failed with HTTP `status`.
#[track_caller]
fn assert_frames_refused(fetched: &PeerRun, status: u64, what: &str, context: &str) {
    let got = fetched.report["error"]["status"].as_u64();
    assert_eq!(
        got,
        Some(status),
        "{what}: expected HTTP {status}: {}\n{}\n{context}",
        fetched.report,
        fetched.finished.describe()
    );
}

/// Runs the driver's `rendered` of `uids` with `media_type` into `<dir>/<label>.<ext>` and
/// asserts that it holds `count` images (several: a multipart body) that Pillow decodes, each
/// `format` of `columns` x `rows`; returns the images' reports.
#[allow(clippy::too_many_arguments)]
fn rendered_exactly(
    dir: &Path,
    label: &str,
    server: &DimsumServe,
    uids: &[&str],
    media_type: Option<&str>,
    count: usize,
    format: &str,
    (columns, rows): (u16, u16),
) -> Option<Vec<Value>> {
    let mut args = vec![
        "rendered".to_owned(),
        "--out".to_owned(),
        arg(&dir.join(format!("{label}.{}", format.to_ascii_lowercase()))),
    ];
    args.extend(uid_args(uids));
    if let Some(media_type) = media_type {
        args.extend(["--media-type".to_owned(), media_type.to_owned()]);
    }
    let rendered = dicomweb(dir, label, server, &args)?;
    let context = format!("{}\n{}", rendered.finished.describe(), server.describe());
    let report = rendered.ok(&context);
    let images = report["images"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        images.len(),
        count,
        "images rendered ({label}): {report}\n{context}"
    );
    for image in &images {
        assert_eq!(
            (
                image["format"].as_str(),
                image["width"].as_u64(),
                image["height"].as_u64()
            ),
            (
                Some(format),
                Some(u64::from(columns)),
                Some(u64::from(rows))
            ),
            "the rendered image ({label}): {report}\n{context}"
        );
    }
    Some(images)
}

#[test]
fn dicomweb_client_retrieves_frames_and_rendered_images() {
    let Some(dir) = retrieve_scratch_dir("dicomweb-frames") else {
        return;
    };
    if dicomweb_client().is_none() {
        return;
    }
    let folder = dir.join("to-stow");
    fs::create_dir_all(&folder).expect("create the folder to store");
    let multiframe_path = folder.join("multiframe.dcm");
    write_multiframe(
        &MultiFrame {
            number: 1,
            frames: 3,
            bits: 8,
            transfer_syntax: EXPLICIT_VR_LE,
        },
        &multiframe_path,
    );
    let words_path = folder.join("multiframe_words_implicit.dcm");
    write_multiframe(
        &MultiFrame {
            number: 2,
            frames: 4,
            bits: 16,
            transfer_syntax: IMPLICIT_VR_LE,
        },
        &words_path,
    );
    let Some(copies) = copy_pydicom_test_files(&dir, &folder, &PYDICOM_FILES) else {
        return;
    };
    let multiframe = PixelInstance::read(&multiframe_path);
    let words = PixelInstance::read(&words_path);
    let [rle, jpeg] = [0, 1].map(|index| PixelInstance::read(&copies[index]));
    assert_eq!(
        (
            multiframe.frames.len(),
            words.frames.len(),
            rle.frames.len(),
            jpeg.frames.len()
        ),
        (3, 4, 2, 1),
        "frames of the instances stored"
    );

    let server = DimsumServe::start(&dir, &dir.join("data"), &[]);
    let mut args = vec!["store".to_owned(), arg(&multiframe_path), arg(&words_path)];
    args.extend(copies.iter().map(|path| arg(path)));
    let Some(stored) = dicomweb(&dir, "store", &server, &args) else {
        return;
    };
    let context = server.describe();
    let response = &stored.ok(&context)["response"];
    assert!(
        json_items(response, tags::FAILED_SOP_SEQUENCE).is_empty()
            && json_items(response, tags::REFERENCED_SOP_SEQUENCE).len() == 4,
        "the four instances were not all stored: {response}\n{context}"
    );

    // native frames: the client's default Accept (any type) and application/octet-stream
    if frames_exactly(&dir, "frames-default", &server, &multiframe, &[1, 3], None).is_none() {
        return;
    }
    let octet_stream = OCTET_STREAM;
    frames_exactly(
        &dir,
        "frames-octet-stream",
        &server,
        &multiframe,
        &[2],
        Some((octet_stream, None)),
    );
    // as stored: 16-bit native frames of an Implicit VR Little Endian instance, RLE and JPEG
    // fragments
    frames_exactly(
        &dir,
        "frames-words-as-stored",
        &server,
        &words,
        &[1, 4],
        Some((octet_stream, Some("*"))),
    );
    frames_exactly(
        &dir,
        "frames-rle-as-stored",
        &server,
        &rle,
        &[1, 2],
        Some((octet_stream, Some("*"))),
    );
    frames_exactly(
        &dir,
        "frames-jpeg",
        &server,
        &jpeg,
        &[1],
        Some(("image/jpeg", Some(support::JPEG_BASELINE))),
    );
    // frame numbers are 1-based: 0 is a bad request, one past the last is not found
    let Some(zero) = frames(&dir, "frame-zero", &server, &multiframe, &[0], None) else {
        return;
    };
    assert_frames_refused(&zero, 400, "frame 0", &context);
    let Some(past) = frames(&dir, "frame-past-last", &server, &multiframe, &[4], None) else {
        return;
    };
    assert_frames_refused(&past, 404, "frame 4 of 3", &context);

    // rendered: the image decodes and has the instance's size
    let size = |instance: &PixelInstance| (instance.columns, instance.rows);
    let instance_uids = |instance: &PixelInstance| {
        [
            instance.study.clone(),
            instance.series.clone(),
            instance.instance.clone(),
        ]
    };
    let [study, series, sop] = instance_uids(&multiframe);
    rendered_exactly(
        &dir,
        "rendered-multiframe-png",
        &server,
        &[&study, &series, &sop],
        Some("image/png"),
        1,
        "PNG",
        size(&multiframe),
    );
    rendered_exactly(
        &dir,
        "rendered-multiframe-default",
        &server,
        &[&study, &series, &sop],
        None,
        1,
        "JPEG",
        size(&multiframe),
    );
    rendered_exactly(
        &dir,
        "rendered-series-jpeg",
        &server,
        &[&study, &series],
        Some("image/jpeg"),
        2,
        "JPEG",
        size(&multiframe),
    );
    let [study, series, sop] = instance_uids(&jpeg);
    rendered_exactly(
        &dir,
        "rendered-jpeg",
        &server,
        &[&study, &series, &sop],
        Some("image/jpeg"),
        1,
        "JPEG",
        size(&jpeg),
    );
    let [study, series, sop] = instance_uids(&rle);
    let images = rendered_exactly(
        &dir,
        "rendered-rle-png",
        &server,
        &[&study, &series, &sop],
        Some("image/png"),
        1,
        "PNG",
        size(&rle),
    );
    if let Some(images) = images {
        assert_eq!(
            images[0]["mode"], "RGB",
            "an RGB instance renders in colour: {images:?}"
        );
    }
}
