//! Our DICOMweb client against a server we did not write: Orthanc with its DICOMweb plugin
//! (Debian packages `orthanc` and `orthanc-dicomweb`), started by each test on free loopback
//! ports with a generated configuration, no authentication and its storage in the test's
//! scratch folder, and stopped at the end.
//!
//! `dimsum stow` stores generated instances (two studies, three series); `dimsum qido` finds
//! them at each level with the identifiers sent; `dimsum wado` brings back a study, a series and
//! an instance whose data sets are those sent, and prints metadata that names them; the library
//! client reads frames, a rendered image and metadata whose BulkDataURIs resolve to the pixel
//! data sent. Refusals (an instance of another study, an unknown study) exit non-zero.
//!
//! A missing Orthanc skips the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS`
//! is set. Install it with `scripts/setup-peers`.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::part10::{self, FileMeta};
use dimsum_net::dataset::{identifier, json};
use dimsum_web::client::Client;
use dimsum_web::resource::{Entity, Resource};
use dimsum_web::wado::{ImageType, TransferSyntax};
use support::{
    Finished, LOCALHOST, ProcessGuard, RUN_TIMEOUT, STARTUP_TIMEOUT, STOP_TIMEOUT, dimsum,
    find_on_path, free_port, free_ports, peer_missing, run, scratch_dir, wait_until,
};

const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
const ROOT: &str = "1.2.826.0.1.3680043.2.1125.9";
const ROWS: u16 = 8;
const COLUMNS: u16 = 8;

/// Orthanc on loopback, killed when dropped.
struct Orthanc {
    process: ProcessGuard,
    http_port: u16,
}

impl Orthanc {
    /// Starts Orthanc with its DICOMweb plugin in `dir`, or `None` (after `SKIP:`) when it is
    /// not installed.
    fn start(dir: &Path) -> Option<Orthanc> {
        let binary = find_on_path("Orthanc").or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/Orthanc");
            sbin.is_file().then_some(sbin)
        });
        let Some(binary) = binary else {
            return peer_missing("Orthanc (Debian package orthanc) is not installed");
        };
        if !Path::new(DICOMWEB_PLUGIN).is_file() {
            return peer_missing(&format!(
                "the Orthanc DICOMweb plugin ({DICOMWEB_PLUGIN}, Debian package orthanc-dicomweb) is not installed"
            ));
        }
        fs::create_dir_all(dir).expect("create the Orthanc folder");
        let [http_port, dicom_port] = free_ports();
        let config = serde_json::json!({
            "Name": "dimsum-interop",
            "StorageDirectory": dir.join("storage"),
            "IndexDirectory": dir.join("index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "SslEnabled": false,
            "StorageCompression": false,
            "SaveJobs": false,
            "HttpThreadsCount": 8,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {
                "Enable": true,
                "Root": "/dicom-web/",
                "EnableWado": false,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full"
            }
        });
        let config_path = dir.join("orthanc.json");
        fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("config"),
        )
        .expect("write the Orthanc configuration");
        let mut command = Command::new(binary);
        command.arg(&config_path);
        let mut process = ProcessGuard::spawn("orthanc", dir, command);
        process.wait_for_listening(http_port, STARTUP_TIMEOUT);
        let orthanc = Orthanc { process, http_port };
        // The HTTP server listens once the plugins are loaded; wait until DICOMweb answers.
        let ready = wait_until(STARTUP_TIMEOUT, || {
            std::net::TcpStream::connect((LOCALHOST, http_port)).is_ok_and(|mut stream| {
                use std::io::{Read, Write};
                let request = format!(
                    "GET /dicom-web/studies HTTP/1.0\r\nHost: {LOCALHOST}\r\nAccept: application/dicom+json\r\n\r\n"
                );
                let mut answer = String::new();
                stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut answer).is_ok()
                    && answer.split_whitespace().nth(1) == Some("200")
            })
        });
        assert!(
            ready,
            "Orthanc's DICOMweb plugin did not answer\n{}",
            orthanc.process.describe()
        );
        Some(orthanc)
    }

    /// The DICOMweb service root.
    fn url(&self) -> String {
        format!("http://{LOCALHOST}:{}/dicom-web", self.http_port)
    }

    fn stop(mut self) {
        self.process.terminate(STOP_TIMEOUT);
    }
}

/// One generated instance.
struct Sent {
    study: String,
    series: String,
    sop: String,
    patient_id: String,
    patient_name: String,
    modality: String,
    pixels: Vec<u8>,
    path: PathBuf,
    data_set: Vec<u8>,
}

/// Writes four instances into `dir`: study 1 (patient P-A) with series 1.1 (two instances,
/// CT) and 1.2 (one, MR), study 2 (patient P-B) with one OT instance.
fn generate(dir: &Path) -> Vec<Sent> {
    fs::create_dir_all(dir).expect("create the data folder");
    let layout = [
        ("1", "1.1", "1.1.1", "P-A", "ALPHA^ANNA", "CT"),
        ("1", "1.1", "1.1.2", "P-A", "ALPHA^ANNA", "CT"),
        ("1", "1.2", "1.2.1", "P-A", "ALPHA^ANNA", "MR"),
        ("2", "2.1", "2.1.1", "P-B", "BRAVO^BEN", "OT"),
    ];
    layout
        .iter()
        .enumerate()
        .map(|(index, (study, series, sop, id, name, modality))| {
            let study = format!("{ROOT}.{study}");
            let series = format!("{ROOT}.{series}");
            let sop = format!("{ROOT}.{sop}");
            let pixels: Vec<u8> = (0..usize::from(ROWS * COLUMNS))
                .map(|i| ((i * 7 + index * 31) % 256) as u8)
                .collect();
            let text =
                |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
            let number =
                |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
            let object = InMemDicomObject::from_element_iter([
                text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
                text(tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE),
                text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
                text(tags::STUDY_DATE, VR::DA, "20240105"),
                text(tags::STUDY_TIME, VR::TM, "101500"),
                text(tags::ACCESSION_NUMBER, VR::SH, &format!("ACC{index}")),
                text(tags::MODALITY, VR::CS, modality),
                text(tags::PATIENT_NAME, VR::PN, name),
                text(tags::PATIENT_ID, VR::LO, id),
                text(tags::STUDY_INSTANCE_UID, VR::UI, &study),
                text(tags::SERIES_INSTANCE_UID, VR::UI, &series),
                text(tags::STUDY_ID, VR::SH, "1"),
                text(tags::SERIES_NUMBER, VR::IS, "1"),
                text(tags::INSTANCE_NUMBER, VR::IS, &(index + 1).to_string()),
                number(tags::SAMPLES_PER_PIXEL, 1),
                text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
                number(tags::ROWS, ROWS),
                number(tags::COLUMNS, COLUMNS),
                number(tags::BITS_ALLOCATED, 8),
                number(tags::BITS_STORED, 8),
                number(tags::HIGH_BIT, 7),
                number(tags::PIXEL_REPRESENTATION, 0),
                DataElement::new(
                    tags::PIXEL_DATA,
                    VR::OB,
                    PrimitiveValue::from(pixels.clone()),
                ),
            ]);
            let data_set = identifier::encode(&object, EXPLICIT_VR_LE).expect("encode");
            let meta = FileMeta::new(
                SECONDARY_CAPTURE,
                sop.clone(),
                EXPLICIT_VR_LE,
                "1.2.826.0.1.3680043.2.1125.1",
                "DIMSUM_TEST",
            );
            let mut file = part10::encode_header(&meta).expect("meta");
            file.extend_from_slice(&data_set);
            let path = dir.join(format!("instance-{index}.dcm"));
            fs::write(&path, &file).expect("write an instance");
            Sent {
                study,
                series,
                sop,
                patient_id: (*id).to_owned(),
                patient_name: (*name).to_owned(),
                modality: (*modality).to_owned(),
                pixels,
                path,
                data_set,
            }
        })
        .collect()
}

/// Runs `dimsum <args>` to completion.
fn dimsum_run(dir: &Path, name: &str, args: &[&str]) -> Finished {
    let mut command = dimsum();
    command.args(args);
    run(name, dir, command, RUN_TIMEOUT)
}

/// The first value of `tag` in a DICOM JSON data set, as text.
fn json_text(item: &serde_json::Value, tag: &str) -> String {
    let value = &item[tag]["Value"][0];
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Object(name) => {
            name["Alphabetic"].as_str().unwrap_or_default().to_owned()
        }
        other => other.to_string(),
    }
}

/// The JSON array `dimsum qido --json` printed.
fn qido(dir: &Path, name: &str, url: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["qido", url, "--json"];
    all.extend_from_slice(args);
    let finished = dimsum_run(dir, name, &all);
    finished.assert_code(0);
    match finished.json() {
        serde_json::Value::Array(items) => items,
        other => panic!("qido printed {other}\n{}", finished.describe()),
    }
}

/// The SOP Instance UID and data set of each Part 10 file in `folder`, by file name.
fn retrieved(folder: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(folder)
        .expect("the output folder")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).expect("read a retrieved file");
            let (meta, offset) = part10::read_meta(&mut &bytes[..]).expect("a Part 10 file");
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .to_owned();
            (
                name,
                meta.media_storage_sop_instance_uid,
                bytes[offset as usize..].to_vec(),
            )
        })
        .collect()
}

/// Asserts that `folder` holds exactly `expected`, each named `<SOP Instance UID>.dcm` with
/// the data set sent.
#[track_caller]
fn assert_retrieved(folder: &Path, expected: &[&Sent], context: &str) {
    let files = retrieved(folder);
    assert_eq!(
        files.len(),
        expected.len(),
        "files in {}\n{context}",
        folder.display()
    );
    for sent in expected {
        let (name, _, data_set) = files
            .iter()
            .find(|(_, uid, _)| *uid == sent.sop)
            .unwrap_or_else(|| panic!("{} was not retrieved\n{context}", sent.sop));
        assert_eq!(name, &format!("{}.dcm", sent.sop));
        assert!(
            *data_set == sent.data_set,
            "the data set of {} differs from the one sent\n{context}",
            sent.sop
        );
    }
}

#[test]
fn dimsum_stow_qido_and_wado_against_orthanc() {
    let dir = scratch_dir("dicomweb-orthanc-cli");
    let Some(orthanc) = Orthanc::start(&dir.join("orthanc")) else {
        return;
    };
    let url = orthanc.url();
    let sent = generate(&dir.join("sent"));

    // Store the folder; every instance is stored.
    let stored = dimsum_run(
        &dir,
        "stow",
        &[
            "stow",
            &url,
            dir.join("sent").to_str().unwrap(),
            "--batch",
            "3",
        ],
    );
    stored.assert_code(0);
    let context = format!("{}\n{}", stored.describe(), orthanc.process.describe());
    assert!(
        stored
            .stderr
            .contains("Summary: 4 instances: 4 stored, 0 with warnings, 0 failed, 0 skipped"),
        "{context}"
    );

    // Studies: both, with the patient of each; narrowed by a matching key.
    let studies = qido(&dir, "qido-studies", &url, &[]);
    let found: BTreeSet<String> = studies.iter().map(|s| json_text(s, "0020000D")).collect();
    let expected: BTreeSet<String> = sent.iter().map(|s| s.study.clone()).collect();
    assert_eq!(found, expected, "{studies:#?}");
    for study in &studies {
        let uid = json_text(study, "0020000D");
        let first = sent.iter().find(|s| s.study == uid).expect("a sent study");
        assert_eq!(json_text(study, "00100020"), first.patient_id);
        assert_eq!(json_text(study, "00100010"), first.patient_name);
    }
    let one = qido(
        &dir,
        "qido-patient",
        &url,
        &["-k", "PatientID=P-B", "-k", "StudyDate"],
    );
    assert_eq!(one.len(), 1, "{one:#?}");
    assert_eq!(json_text(&one[0], "0020000D"), sent[3].study);
    assert_eq!(json_text(&one[0], "00080020"), "20240105");

    // Series of study 1, with their modalities.
    let series = qido(
        &dir,
        "qido-series",
        &url,
        &["--level", "series", "--study", &sent[0].study],
    );
    let mut found: Vec<(String, String)> = series
        .iter()
        .map(|s| (json_text(s, "0020000E"), json_text(s, "00080060")))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            (sent[0].series.clone(), "CT".to_owned()),
            (sent[2].series.clone(), "MR".to_owned())
        ]
    );

    // Instances of series 1.1.
    let instances = qido(
        &dir,
        "qido-instances",
        &url,
        &[
            "--level",
            "instances",
            "--study",
            &sent[0].study,
            "--series",
            &sent[0].series,
        ],
    );
    let found: BTreeSet<String> = instances.iter().map(|i| json_text(i, "00080018")).collect();
    assert_eq!(
        found,
        BTreeSet::from([sent[0].sop.clone(), sent[1].sop.clone()])
    );

    // The text dump names the matches too.
    let dump = dimsum_run(&dir, "qido-dump", &["qido", &url, "-k", "PatientID=P-A"]);
    dump.assert_code(0);
    assert!(dump.stdout.contains("# Match 1"), "{}", dump.describe());
    assert!(dump.stdout.contains(&sent[0].study), "{}", dump.describe());
    assert!(!dump.stdout.contains("# Match 2"), "{}", dump.describe());

    // Study 1 as stored, series 1.1 in the default transfer syntax, one instance.
    let out = dir.join("study");
    let finished = dimsum_run(
        &dir,
        "wado-study",
        &[
            "wado",
            &url,
            "--study",
            &sent[0].study,
            "--out",
            out.to_str().unwrap(),
            "--transfer-syntax",
            "*",
        ],
    );
    finished.assert_code(0);
    assert_retrieved(&out, &[&sent[0], &sent[1], &sent[2]], &finished.describe());

    let out = dir.join("series");
    let finished = dimsum_run(
        &dir,
        "wado-series",
        &[
            "wado",
            &url,
            "--study",
            &sent[0].study,
            "--series",
            &sent[0].series,
            "-od",
            out.to_str().unwrap(),
        ],
    );
    finished.assert_code(0);
    assert_retrieved(&out, &[&sent[0], &sent[1]], &finished.describe());

    let out = dir.join("instance");
    let finished = dimsum_run(
        &dir,
        "wado-instance",
        &[
            "wado",
            &url,
            "--study",
            &sent[3].study,
            "--series",
            &sent[3].series,
            "--instance",
            &sent[3].sop,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    finished.assert_code(0);
    assert_retrieved(&out, &[&sent[3]], &finished.describe());

    // Metadata of series 1.2: its instance, with its attributes.
    let finished = dimsum_run(
        &dir,
        "wado-metadata",
        &[
            "wado",
            &url,
            "--study",
            &sent[2].study,
            "--series",
            &sent[2].series,
            "--metadata",
        ],
    );
    finished.assert_code(0);
    let metadata = finished.json();
    let items = metadata.as_array().expect("an array");
    assert_eq!(items.len(), 1, "{}", finished.describe());
    assert_eq!(json_text(&items[0], "00080018"), sent[2].sop);
    assert_eq!(json_text(&items[0], "00080060"), sent[2].modality);
    assert_eq!(json_text(&items[0], "00100010"), sent[2].patient_name);
    json::read_json(&items[0], &json::JsonLimits::default())
        .expect("the metadata reads as DICOM JSON");

    // An instance of study 1 stored into study 2 is refused: non-zero exit, nothing stored.
    let refused = dimsum_run(
        &dir,
        "stow-wrong-study",
        &[
            "stow",
            &url,
            "--study",
            &sent[3].study,
            sent[0].path.to_str().unwrap(),
        ],
    );
    assert_ne!(refused.code(), Some(0), "{}", refused.describe());
    assert!(
        refused.stderr.contains("1 failed"),
        "{}",
        refused.describe()
    );
    let still = qido(
        &dir,
        "qido-after-refusal",
        &url,
        &["--level", "instances", "--study", &sent[3].study],
    );
    assert_eq!(still.len(), 1, "{still:#?}");

    // An unknown study: exit 1 with Orthanc's 404.
    let unknown = dimsum_run(
        &dir,
        "wado-unknown",
        &[
            "wado",
            &url,
            "--study",
            &format!("{ROOT}.99"),
            "--out",
            dir.join("none").to_str().unwrap(),
        ],
    );
    assert_eq!(unknown.code(), Some(1), "{}", unknown.describe());
    assert!(
        unknown.stderr.contains("HTTP 404"),
        "{}",
        unknown.describe()
    );

    // Nothing listens: exit 4.
    let closed = dimsum_run(
        &dir,
        "qido-closed",
        &[
            "qido",
            &format!("http://{LOCALHOST}:{}/dicom-web", free_port()),
        ],
    );
    assert_eq!(closed.code(), Some(4), "{}", closed.describe());

    orthanc.stop();
}

#[test]
fn the_client_reads_frames_rendered_images_and_bulk_data_from_orthanc() {
    let dir = scratch_dir("dicomweb-orthanc-library");
    let Some(orthanc) = Orthanc::start(&dir.join("orthanc")) else {
        return;
    };
    let sent = generate(&dir.join("sent"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = Client::new(&orthanc.url()).expect("client");
        let outcome = client
            .store_instances(
                None,
                sent.iter()
                    .map(|s| dimsum_web::client::StowInstance::File(s.path.clone()))
                    .collect(),
            )
            .await
            .expect("STOW-RS");
        assert_eq!(outcome.status, 200, "{outcome:?}");
        assert_eq!(outcome.response.outcomes.len(), sent.len(), "{outcome:?}");

        // Searching through the library, with the query types.
        let query =
            dimsum_web::qido::QidoQuery::new(&Resource::StudyInstances(sent[0].study.clone()))
                .expect("query")
                .with_key("Modality", "MR")
                .expect("key");
        let found = client.search_instances(&query).await.expect("QIDO-RS");
        assert_eq!(found.len(), 1);
        let uid = found[0]
            .get(tags::SOP_INSTANCE_UID)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches('\0').to_owned());
        assert_eq!(uid.as_deref(), Some(sent[2].sop.as_str()));

        // The instance, as stored.
        let mut response = client
            .retrieve_instance(
                &sent[1].study,
                &sent[1].series,
                &sent[1].sop,
                Some(TransferSyntax::Any),
            )
            .await
            .expect("WADO-RS");
        let instance = response
            .next_instance()
            .await
            .expect("read")
            .expect("an instance");
        assert_eq!(instance.data_set(), sent[1].data_set.as_slice());
        assert!(response.next_instance().await.expect("end").is_none());

        // Frame 1 is the pixel data sent.
        let frames = client
            .frames(&sent[1].study, &sent[1].series, &sent[1].sop, &[1], None)
            .await
            .expect("frames");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].1.as_ref(), sent[1].pixels.as_slice());

        // A rendered image.
        let rendered = client
            .rendered(
                &Resource::Rendered(
                    Entity::Instance {
                        study: sent[1].study.clone(),
                        series: sent[1].series.clone(),
                        instance: sent[1].sop.clone(),
                    },
                    None,
                ),
                ImageType::Jpeg,
                &[],
            )
            .await
            .expect("rendered");
        assert!(
            rendered.content_type.is("image", "jpeg"),
            "{}",
            rendered.content_type
        );
        assert!(rendered.image.starts_with(&[0xFF, 0xD8]), "a JPEG");

        // Metadata: the pixel data comes as a BulkDataURI that resolves to what was sent.
        let metadata = client
            .metadata(&Entity::Series {
                study: sent[2].study.clone(),
                series: sent[2].series.clone(),
            })
            .await
            .expect("metadata");
        assert_eq!(metadata.len(), 1);
        let pending = metadata.into_iter().next().expect("one");
        let object = client.resolve_bulk_data(pending).await.expect("bulk data");
        assert_eq!(
            object
                .get(tags::SOP_INSTANCE_UID)
                .and_then(|e| e.to_str().ok())
                .as_deref()
                .map(|s| s.trim_end_matches('\0')),
            Some(sent[2].sop.as_str())
        );
        let pixels = object
            .get(tags::PIXEL_DATA)
            .expect("pixel data")
            .to_bytes()
            .expect("bytes");
        assert_eq!(pixels.as_ref(), sent[2].pixels.as_slice());

        // Orthanc's refusal comes back typed.
        let error = client
            .retrieve_study(&format!("{ROOT}.99"), None)
            .await
            .expect_err("unknown study");
        assert_eq!(error.status(), Some(404), "{error}");
    });
    orthanc.stop();
}
