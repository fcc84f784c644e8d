//! `dimsum stow`, `dimsum qido` and `dimsum wado` against our own `dimsum serve` (its DICOMweb
//! on a free loopback port, over a data folder of the test's own).
//!
//! `dimsum stow` sends a folder (sub-folders included, a file that is not DICOM skipped) and
//! its summary counts what the server stored; `dimsum qido` finds it again at the study, series
//! and instance levels, with matching keys, return keys, fuzzy names and paging, in its text
//! dump (the identifiers read back line by line) and as a DICOM JSON array; `dimsum wado`
//! writes a study, a series and an instance into folders as `<SOP Instance UID>.dcm` whose data
//! sets are those of the files sent, and `--metadata` prints the stored data sets with a
//! BulkDataURI in place of the Pixel Data. Failures end with the exit codes of docs/tools.md:
//! 1 for the server's 404 and 400 and for instances refused, 2 for a command line that cannot
//! make a request, 4 when nothing listens.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::OpenFileOptions;
use dimsum_net::dataset::{json, part10};
use serde_json::Value;

use support::serve::{DimsumServe, InstanceSpec, write_instance};
use support::{Finished, LOCALHOST, RUN_TIMEOUT, dimsum, free_port, run, scratch_dir};

const ROOT: &str = "1.2.826.0.1.3680043.8.498.7011";

/// One instance written for the test: its spec and file.
struct Sent {
    spec: InstanceSpec,
    path: PathBuf,
}

impl Sent {
    fn study(&self) -> &str {
        &self.spec.study_instance_uid
    }

    fn series(&self) -> &str {
        &self.spec.series_instance_uid
    }

    fn sop(&self) -> &str {
        &self.spec.sop_instance_uid
    }

    /// The data set of the file, after its meta.
    fn data_set(&self) -> Vec<u8> {
        let bytes = fs::read(&self.path).expect("read a sent file");
        let (_, offset) = part10::read_meta(&mut &bytes[..]).expect("a Part 10 file");
        bytes[offset as usize..].to_vec()
    }
}

/// Writes four instances into `folder`: study 1 (patient P-A, ALPHA^ANNA) with series 1 (two
/// instances) and series 2 (one); study 2 (patient P-B, BRAVO^BEN) with one instance, in a
/// sub-folder; and a text file that is not DICOM.
fn write_instances(folder: &Path) -> Vec<Sent> {
    fs::create_dir_all(folder.join("sub")).expect("create the folders");
    let layout = [
        (1, 1, 1, "P-A", "ALPHA^ANNA", "20240105"),
        (1, 1, 2, "P-A", "ALPHA^ANNA", "20240105"),
        (1, 2, 1, "P-A", "ALPHA^ANNA", "20240105"),
        (2, 1, 1, "P-B", "BRAVO^BEN", "20230301"),
    ];
    let sent: Vec<Sent> = layout
        .iter()
        .map(|&(study, series, number, id, name, date)| {
            let spec = InstanceSpec {
                patient_name: name.to_owned(),
                patient_id: id.to_owned(),
                study_instance_uid: format!("{ROOT}.{study}"),
                study_date: date.to_owned(),
                accession_number: format!("ACC{study}"),
                series_instance_uid: format!("{ROOT}.{study}.{series}"),
                series_number: series,
                sop_instance_uid: format!("{ROOT}.{study}.{series}.{number}"),
                instance_number: number,
                rows: 8,
                columns: 8,
                pixel_seed: u64::from(study * 100 + series * 10 + number),
            };
            let sub = if study == 2 { "sub" } else { "" };
            let path = folder
                .join(sub)
                .join(format!("{}.dcm", spec.sop_instance_uid));
            write_instance(&spec, &path);
            Sent { spec, path }
        })
        .collect();
    fs::write(folder.join("notes.txt"), "not a DICOM file\n").expect("write the text file");
    sent
}

/// Runs `dimsum <args>` to completion.
fn dimsum_run(dir: &Path, name: &str, args: &[&str]) -> Finished {
    let mut command = dimsum();
    command.args(args);
    run(name, dir, command, RUN_TIMEOUT)
}

/// The matches of `dimsum qido`'s text dump: for each `# Match N` block, the value of each
/// element by tag (`(0020,000D)` → the text between the brackets, or the number).
fn dumped_matches(finished: &Finished) -> Vec<BTreeMap<String, String>> {
    let mut matches: Vec<BTreeMap<String, String>> = Vec::new();
    for line in finished.stdout.lines() {
        if let Some(number) = line.strip_prefix("# Match ") {
            assert_eq!(
                number.trim().parse::<usize>().ok(),
                Some(matches.len() + 1),
                "matches are numbered from 1\n{}",
                finished.describe()
            );
            matches.push(BTreeMap::new());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let current = matches
            .last_mut()
            .unwrap_or_else(|| panic!("an element before # Match 1\n{}", finished.describe()));
        // (gggg,eeee) VR value    Keyword
        let (tag, rest) = line.split_at(11);
        let rest = rest[4..].trim_end();
        let value = match rest.strip_prefix('[') {
            Some(text) => text
                .split_once(']')
                .map(|(value, _)| value)
                .unwrap_or_else(|| panic!("an unclosed value in {line:?}")),
            None => rest.rsplit_once(' ').map_or("", |(value, _)| value).trim(),
        };
        current.insert(tag.to_owned(), value.to_owned());
    }
    matches
}

/// The JSON array `dimsum qido --json` printed.
fn qido_json(dir: &Path, name: &str, url: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["qido", url, "--json"];
    all.extend_from_slice(args);
    let finished = dimsum_run(dir, name, &all);
    finished.assert_code(0);
    match finished.json() {
        Value::Array(items) => items,
        other => panic!("qido --json printed {other}\n{}", finished.describe()),
    }
}

/// The first value of `tag` in a DICOM JSON object, as text (a person name's alphabetic form).
fn json_text(item: &Value, tag: &str) -> String {
    match &item[tag]["Value"][0] {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Object(name) => name["Alphabetic"].as_str().unwrap_or_default().to_owned(),
        other => panic!("no value for {tag} in {item}: {other}"),
    }
}

fn json_texts(items: &[Value], tag: &str) -> BTreeSet<String> {
    items.iter().map(|item| json_text(item, tag)).collect()
}

fn uids<'a>(sent: impl IntoIterator<Item = &'a Sent>, uid: fn(&Sent) -> &str) -> BTreeSet<String> {
    sent.into_iter().map(|s| uid(s).to_owned()).collect()
}

/// Asserts that `folder` holds exactly a `<SOP Instance UID>.dcm` of each of `expected`, whose
/// meta names it and whose data set is the one sent (no temporary file left).
#[track_caller]
fn assert_retrieved(folder: &Path, expected: &[&Sent], finished: &Finished) {
    let mut names: Vec<String> = fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", folder.display(), finished.describe()))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut wanted: Vec<String> = expected
        .iter()
        .map(|s| format!("{}.dcm", s.sop()))
        .collect();
    wanted.sort();
    assert_eq!(names, wanted, "{}", finished.describe());
    for sent in expected {
        let bytes = fs::read(folder.join(format!("{}.dcm", sent.sop()))).expect("read");
        let (meta, offset) = part10::read_meta(&mut &bytes[..]).expect("a Part 10 file");
        assert_eq!(meta.media_storage_sop_instance_uid, sent.sop());
        assert!(
            bytes[offset as usize..] == sent.data_set()[..],
            "the data set of {} differs from the one sent",
            sent.sop()
        );
    }
    assert!(
        finished.stderr.contains(&format!(
            "Summary: {} instances written to {}",
            expected.len(),
            folder.display()
        )),
        "{}",
        finished.describe()
    );
}

#[test]
fn stow_a_folder_then_find_it_with_qido_and_bring_it_back_with_wado() {
    let dir = scratch_dir("dicomweb-tools");
    let sent = write_instances(&dir.join("in"));
    let server = DimsumServe::start(&dir, &dir.join("data"), &[]);
    let url = server.dicomweb_url();
    let folder = dir.join("in");

    // The folder, in requests of 3: four stored, the text file skipped.
    let stored = dimsum_run(
        &dir,
        "stow",
        &["stow", &url, folder.to_str().unwrap(), "--batch", "3"],
    );
    stored.assert_code(0);
    assert!(
        stored
            .stderr
            .contains("Summary: 5 instances: 4 stored, 0 with warnings, 0 failed, 1 skipped"),
        "{}\n{}",
        stored.describe(),
        server.describe()
    );

    // Studies, as the text dump: both, each with its patient and counts.
    let dump = dimsum_run(&dir, "qido-studies", &["qido", &url]);
    dump.assert_code(0);
    let studies = dumped_matches(&dump);
    assert_eq!(studies.len(), 2, "{}", dump.describe());
    let found: BTreeMap<&str, &BTreeMap<String, String>> = studies
        .iter()
        .map(|study| (study["(0020,000D)"].as_str(), study))
        .collect();
    let first = found[sent[0].study()];
    assert_eq!(first["(0010,0020)"], "P-A");
    assert_eq!(first["(0010,0010)"], "ALPHA^ANNA");
    assert_eq!(first["(0008,0020)"], "20240105");
    assert_eq!(first["(0020,1206)"], "2", "series in study 1");
    assert_eq!(first["(0020,1208)"], "3", "instances in study 1");
    let second = found[sent[3].study()];
    assert_eq!(second["(0010,0020)"], "P-B");
    assert_eq!(second["(0020,1208)"], "1");

    // Matching keys (keyword, tag, wildcard, date range), a return key, a fuzzy name.
    for (keys, expected) in [
        (vec!["-k", "PatientID=P-B"], vec![&sent[3]]),
        (vec!["-k", "00100010=ALPHA*"], vec![&sent[0]]),
        (vec!["-k", "StudyDate=20240101-20241231"], vec![&sent[0]]),
        (vec!["-k", "PatientName=anna", "--fuzzy"], vec![&sent[0]]),
        (vec!["--study", sent[3].study()], vec![&sent[3]]),
        (vec!["-k", "PatientID=NOBODY"], vec![]),
    ] {
        let items = qido_json(&dir, "qido-keys", &url, &keys);
        assert_eq!(
            json_texts(&items, "0020000D"),
            uids(expected, Sent::study),
            "{keys:?}"
        );
    }
    let items = qido_json(
        &dir,
        "qido-return-key",
        &url,
        &[
            "-k",
            "PatientID=P-A",
            "-k",
            "PatientSex",
            "--includefield",
            "StudyID",
        ],
    );
    assert_eq!(items.len(), 1);
    assert_eq!(json_text(&items[0], "00100040"), "O");
    assert_eq!(json_text(&items[0], "00200010"), "1");
    assert_eq!(json_text(&items[0], "00080050"), "ACC1");

    // Series of study 1, with their numbers and modality; of every study, by a key.
    let series = qido_json(
        &dir,
        "qido-series",
        &url,
        &["--level", "series", "--study", sent[0].study()],
    );
    let mut found: Vec<(String, String, String, String)> = series
        .iter()
        .map(|s| {
            (
                json_text(s, "0020000E"),
                json_text(s, "00200011"),
                json_text(s, "00080060"),
                json_text(s, "00201209"),
            )
        })
        .collect();
    found.sort();
    let row = |sent: &Sent, count: &str| {
        (
            sent.series().to_owned(),
            sent.spec.series_number.to_string(),
            "OT".to_owned(),
            count.to_owned(),
        )
    };
    assert_eq!(found, vec![row(&sent[0], "2"), row(&sent[2], "1")]);
    let all = qido_json(
        &dir,
        "qido-all-series",
        &url,
        &["--level", "series", "-k", "Modality=OT"],
    );
    assert_eq!(json_texts(&all, "0020000E"), uids(&sent, Sent::series));

    // Instances: of a series (the dump), of a study, of a series named only by a key, paged.
    let dump = dimsum_run(
        &dir,
        "qido-instances",
        &[
            "qido",
            &url,
            "--level",
            "instances",
            "--study",
            sent[0].study(),
            "--series",
            sent[0].series(),
        ],
    );
    dump.assert_code(0);
    let instances = dumped_matches(&dump);
    let found: BTreeSet<(String, String, String)> = instances
        .iter()
        .map(|i| {
            (
                i["(0008,0018)"].clone(),
                i["(0020,0013)"].clone(),
                i["(0008,0016)"].clone(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = sent[..2]
        .iter()
        .map(|s| {
            (
                s.sop().to_owned(),
                s.spec.instance_number.to_string(),
                "1.2.840.10008.5.1.4.1.1.7".to_owned(),
            )
        })
        .collect();
    assert_eq!(found, expected, "{}", dump.describe());
    let of_study = qido_json(
        &dir,
        "qido-study-instances",
        &url,
        &["--level", "instances", "--study", sent[0].study()],
    );
    assert_eq!(
        json_texts(&of_study, "00080018"),
        uids(&sent[..3], Sent::sop)
    );
    let by_key = qido_json(
        &dir,
        "qido-series-key",
        &url,
        &["--level", "instances", "--series", sent[2].series()],
    );
    assert_eq!(json_texts(&by_key, "00080018"), uids([&sent[2]], Sent::sop));
    let mut pages = BTreeSet::new();
    for offset in ["0", "1", "2", "3"] {
        let page = qido_json(
            &dir,
            "qido-page",
            &url,
            &["--level", "instances", "--limit", "1", "--offset", offset],
        );
        assert_eq!(page.len(), 1, "offset {offset}");
        pages.insert(json_text(&page[0], "00080018"));
    }
    assert_eq!(pages, uids(&sent, Sent::sop), "four pages, four instances");

    // WADO-RS: study 1 in the default transfer syntax, a series as stored, one instance.
    let out = dir.join("study");
    let finished = dimsum_run(
        &dir,
        "wado-study",
        &[
            "wado",
            &url,
            "--study",
            sent[0].study(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    finished.assert_code(0);
    assert_retrieved(&out, &[&sent[0], &sent[1], &sent[2]], &finished);
    let out = dir.join("series");
    let finished = dimsum_run(
        &dir,
        "wado-series",
        &[
            "wado",
            &url,
            "--study",
            sent[0].study(),
            "--series",
            sent[0].series(),
            "--transfer-syntax",
            "*",
            "-od",
            out.to_str().unwrap(),
        ],
    );
    finished.assert_code(0);
    assert_retrieved(&out, &[&sent[0], &sent[1]], &finished);
    let out = dir.join("instance");
    let finished = dimsum_run(
        &dir,
        "wado-instance",
        &[
            "wado",
            &url,
            "--study",
            sent[3].study(),
            "--series",
            sent[3].series(),
            "--instance",
            sent[3].sop(),
            "--transfer-syntax",
            "1.2.840.10008.1.2.1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    finished.assert_code(0);
    assert_retrieved(&out, &[&sent[3]], &finished);

    // Metadata of series 1: each instance's data set as stored, its Pixel Data a BulkDataURI.
    let finished = dimsum_run(
        &dir,
        "wado-metadata",
        &[
            "wado",
            &url,
            "--study",
            sent[0].study(),
            "--series",
            sent[0].series(),
            "--metadata",
        ],
    );
    finished.assert_code(0);
    let metadata = finished.json();
    let items = metadata.as_array().expect("an array");
    assert_eq!(items.len(), 2, "{}", finished.describe());
    for item in items {
        let sop = json_text(item, "00080018");
        let instance = sent
            .iter()
            .find(|s| s.sop() == sop)
            .unwrap_or_else(|| panic!("{sop} was not sent"));
        json::read_json(item, &json::JsonLimits::default()).expect("DICOM JSON");
        let mut item = item.clone();
        let pixel_data = item
            .as_object_mut()
            .expect("an object")
            .remove("7FE00010")
            .expect("the Pixel Data");
        assert_eq!(
            pixel_data,
            serde_json::json!({
                "vr": "OB",
                "BulkDataURI": format!(
                    "{url}/studies/{}/series/{}/instances/{sop}/bulkdata/7FE00010",
                    instance.study(),
                    instance.series()
                )
            })
        );
        let mut file = OpenFileOptions::new()
            .open_file(&instance.path)
            .expect("the sent file")
            .into_inner();
        file.remove_element(tags::PIXEL_DATA);
        assert_eq!(item, json::to_json(&file), "{sop}: the stored data set");
    }

    drop(server);
}

#[test]
fn failures_exit_with_their_codes_and_say_why() {
    let dir = scratch_dir("dicomweb-tools-failures");
    let sent = write_instances(&dir.join("in"));
    let server = DimsumServe::start(&dir, &dir.join("data"), &[]);
    let url = server.dicomweb_url();
    dimsum_run(
        &dir,
        "stow",
        &["stow", &url, sent[3].path.to_str().unwrap()],
    )
    .assert_code(0);

    // An instance of study 1 stored into study 2: refused (exit 1), nothing stored.
    let refused = dimsum_run(
        &dir,
        "stow-other-study",
        &[
            "stow",
            &url,
            "--study",
            sent[3].study(),
            sent[0].path.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.code(), Some(1), "{}", refused.describe());
    assert!(
        refused
            .stderr
            .contains("Summary: 1 instances: 0 stored, 0 with warnings, 1 failed, 0 skipped"),
        "{}",
        refused.describe()
    );
    assert!(
        refused.stderr.contains(sent[0].sop()),
        "{}",
        refused.describe()
    );
    let instances = qido_json(&dir, "qido-after", &url, &["--level", "instances"]);
    assert_eq!(
        json_texts(&instances, "00080018"),
        uids([&sent[3]], Sent::sop)
    );

    // Nothing DICOM to send: exit 1 before any request.
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).expect("create");
    fs::write(empty.join("notes.txt"), "text").expect("write");
    let nothing = dimsum_run(
        &dir,
        "stow-nothing",
        &["stow", &url, empty.to_str().unwrap()],
    );
    assert_eq!(nothing.code(), Some(1), "{}", nothing.describe());
    assert!(
        nothing.stderr.contains("no DICOM files to send"),
        "{}",
        nothing.describe()
    );

    // The server's 404: an unknown study retrieved, the metadata of an unknown series.
    let unknown = format!("{ROOT}.404");
    let missing = dimsum_run(
        &dir,
        "wado-unknown",
        &[
            "wado",
            &url,
            "--study",
            &unknown,
            "--out",
            dir.join("none").to_str().unwrap(),
        ],
    );
    assert_eq!(missing.code(), Some(1), "{}", missing.describe());
    assert!(
        missing.stderr.contains("HTTP 404")
            && missing.stderr.contains(&format!("/studies/{unknown}"))
            && missing
                .stderr
                .contains("check the service root URL and the UIDs"),
        "{}",
        missing.describe()
    );
    assert!(
        missing.stderr.contains("Summary: 0 instances written"),
        "{}",
        missing.describe()
    );
    let missing = dimsum_run(
        &dir,
        "wado-metadata-unknown",
        &[
            "wado",
            &url,
            "--study",
            sent[3].study(),
            "--series",
            &unknown,
            "--metadata",
        ],
    );
    assert_eq!(missing.code(), Some(1), "{}", missing.describe());
    assert!(
        missing.stderr.contains("HTTP 404"),
        "{}",
        missing.describe()
    );
    assert!(missing.stdout.trim().is_empty(), "{}", missing.describe());

    // The server's 400, with its reason: a date it cannot read.
    let bad_date = dimsum_run(
        &dir,
        "qido-bad-date",
        &["qido", &url, "-k", "StudyDate=last-week"],
    );
    assert_eq!(bad_date.code(), Some(1), "{}", bad_date.describe());
    assert!(
        bad_date.stderr.contains("HTTP 400") && bad_date.stderr.contains("StudyDate"),
        "{}",
        bad_date.describe()
    );

    // A command line that cannot make a request: exit 2, nothing sent.
    for (name, args) in [
        ("qido-bad-key", vec!["qido", &url, "-k", "NotAKeyword=1"]),
        (
            "wado-bad-syntax",
            vec![
                "wado",
                &url,
                "--study",
                sent[3].study(),
                "--transfer-syntax",
                "JPEG",
            ],
        ),
        ("qido-bad-header", vec!["qido", &url, "-H", "no colon"]),
        ("qido-bad-url", vec!["qido", "ftp://127.0.0.1/dicom-web"]),
    ] {
        let finished = dimsum_run(&dir, name, &args);
        assert_eq!(finished.code(), Some(2), "{}", finished.describe());
        assert!(finished.stderr.contains("E:"), "{}", finished.describe());
    }

    // Nothing listens: exit 4 from each tool, with a hint.
    let closed = format!("http://{LOCALHOST}:{}/dicom-web", free_port());
    for (name, args) in [
        ("qido-closed", vec!["qido", closed.as_str()]),
        (
            "wado-closed",
            vec![
                "wado",
                closed.as_str(),
                "--study",
                sent[3].study(),
                "--out",
                dir.join("closed").to_str().unwrap(),
            ],
        ),
        (
            "stow-closed",
            vec!["stow", closed.as_str(), sent[3].path.to_str().unwrap()],
        ),
    ] {
        let finished = dimsum_run(&dir, name, &args);
        assert_eq!(finished.code(), Some(4), "{}", finished.describe());
        assert!(
            finished.stderr.contains("is the server running"),
            "{}",
            finished.describe()
        );
    }

    drop(server);
}
