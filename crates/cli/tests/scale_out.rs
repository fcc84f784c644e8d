//! Several `dimsum serve` nodes on one PostgreSQL index and one storage folder (issue 10), with
//! DCMTK's tools as the peers, asserting on what was stored and found:
//!
//! 1. DCMTK `storescu` sends one study to node A and another to node B at the same time; each
//!    node's C-FIND (DCMTK `findscu`) and QIDO-RS (curl) see both studies completely, with their
//!    computed counts; a C-MOVE from node B of the study node A received delivers it whole to
//!    DCMTK `storescp`;
//! 2. four DCMTK `storescu` at once, two per node, 4 × 500 instances of four shared studies,
//!    each also sending 50 of another sender's instances (10% sent twice, to the other node):
//!    every instance is stored exactly once (one index row, one file), and the counts of every
//!    study and patient are right;
//! 3. node A killed with SIGKILL during an ingest while node B ingests too: B goes on serving
//!    and stores its study whole; A restarted finds index and storage in agreement, every
//!    acknowledged instance found, no file twice, none without its row;
//! 4. the PostgreSQL server restarted during an ingest: the node reconnects and every instance
//!    is acknowledged, indexed and stored once.
//!
//! The database is a fresh one on the test server of `scripts/test` (`DIMSUM_TEST_POSTGRES`),
//! or a server of the test's own for the restart. A missing peer skips (prints `SKIP:`), or
//! fails when `DIMSUM_REQUIRE_PEERS` is set.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dimsum_net::dataset::dicom_dictionary_std::tags;
use support::postgres::{OwnServer, create_database, fresh_database, psql};
use support::qr::{
    AeAddress, QrClient, QrIdentifier, QrInstance, QrModel, StorescpDestination,
    assert_received_instances, dcmtk_find, retrieve_scratch_dir,
};
use support::serve::{
    DimsumServe, InstanceSpec, SERVE_UID_ROOT, acknowledged_files, hidden_files,
    stored_sop_instance_uids, storescu_folder_command, wait_closely, write_instance,
};
use support::{ProcessGuard, RUN_TIMEOUT, dcmtk, files_under, run};

/// How long an ingest of a test may take.
const INGEST_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Data and nodes
// ---------------------------------------------------------------------------------------------

/// A study of `count` small instances over two series, written into `folder` (created): its
/// Study Instance UID and `SOP Instance UID → (spec, file)`. `tag` keeps the UIDs of the tests
/// apart.
fn write_study(
    folder: &Path,
    tag: &str,
    study: usize,
    count: usize,
) -> (String, BTreeMap<String, (InstanceSpec, PathBuf)>) {
    fs::create_dir_all(folder).expect("create the study folder");
    let study_instance_uid = format!("{SERVE_UID_ROOT}.10.{tag}.{study}");
    let instances = (0..count)
        .map(|index| {
            let series = index % 2 + 1;
            let spec = InstanceSpec {
                patient_name: format!("Scale^Study{study}"),
                patient_id: format!("SCALE-{tag}-{study}"),
                study_instance_uid: study_instance_uid.clone(),
                study_date: "20260101".to_owned(),
                accession_number: format!("S{tag}{study}"),
                series_instance_uid: format!("{SERVE_UID_ROOT}.11.{tag}.{study}.{series}"),
                series_number: series as u32,
                sop_instance_uid: format!("{SERVE_UID_ROOT}.12.{tag}.{study}.{}", index + 1),
                instance_number: (index + 1) as u32,
                rows: 16,
                columns: 16,
                pixel_seed: (study * 100_000 + index) as u64 + 1,
            };
            let path = folder.join(format!("s{study}_{:05}.dcm", index + 1));
            write_instance(&spec, &path);
            (spec.sop_instance_uid.clone(), (spec, path))
        })
        .collect();
    (study_instance_uid, instances)
}

/// Starts a node named `node` on the shared `data` folder and index `index`, its logs in
/// `<dir>/<node>`.
fn start_node(dir: &Path, data: &Path, index: &str, node: &str, extra: &[&str]) -> DimsumServe {
    let logs = dir.join(node);
    fs::create_dir_all(&logs).expect("create the node's log folder");
    let mut args = vec!["--index", index, "--node", node];
    args.extend_from_slice(extra);
    DimsumServe::start(&logs, data, &args)
}

/// DCMTK `storescu +sd` of `folder` to `address`, started (not waited for).
fn start_sending(dir: &Path, label: &str, address: &AeAddress, folder: &Path) -> ProcessGuard {
    let command = storescu_folder_command(address, folder).expect("DCMTK storescu");
    ProcessGuard::spawn(label, dir, command)
}

/// Waits for a sender and returns the SOP Instance UIDs of the files it saw acknowledged
/// (found in `uids`: file → UID), after asserting that it exited 0 with every one of its
/// `expected` files acknowledged.
#[track_caller]
fn finished_sending(
    sender: &mut ProcessGuard,
    expected: usize,
    uid_of: &BTreeMap<PathBuf, String>,
    context: &dyn Fn() -> String,
) -> BTreeSet<String> {
    let status = sender.wait(INGEST_TIMEOUT);
    let acknowledged = acknowledged_files(&sender.output());
    assert!(
        status.success() && acknowledged.len() == expected,
        "{}: exit {status}, {} of {expected} files acknowledged\n{}\n{}",
        sender.name(),
        acknowledged.len(),
        sender.describe(),
        context()
    );
    acknowledged
        .iter()
        .map(|path| {
            uid_of
                .get(path)
                .unwrap_or_else(|| panic!("storescu sent {} ", path.display()))
                .clone()
        })
        .collect()
}

/// DCMTK `findscu` (Study Root) with `keys` against `address`: the identifiers, after checking
/// that it ended with Success.
#[track_caller]
fn find(dir: &Path, label: &str, address: &AeAddress, keys: &[&str]) -> Vec<QrIdentifier> {
    dcmtk_find(dir, label, address, QrModel::StudyRoot, keys)
}

/// The SOP Instance UIDs of a study that a node's C-FIND at IMAGE level finds (each must come
/// once).
#[track_caller]
fn instances_found(dir: &Path, label: &str, address: &AeAddress, study: &str) -> BTreeSet<String> {
    let study_key = format!("StudyInstanceUID={study}");
    let images = find(
        dir,
        label,
        address,
        &[
            "QueryRetrieveLevel=IMAGE",
            &study_key,
            "SeriesInstanceUID",
            "SOPInstanceUID",
        ],
    );
    let found: BTreeSet<String> = images
        .iter()
        .map(|image| image.require(tags::SOP_INSTANCE_UID).to_owned())
        .collect();
    assert_eq!(found.len(), images.len(), "{label}: an instance came twice");
    found
}

/// A study's counts as a node's C-FIND at STUDY level gives them: `(Number of Study Related
/// Series, Number of Study Related Instances)`, for each Study Instance UID in `studies`.
#[track_caller]
fn study_counts(
    dir: &Path,
    label: &str,
    address: &AeAddress,
    studies: &[&str],
) -> BTreeMap<String, (String, String)> {
    let list = format!("StudyInstanceUID={}", studies.join("\\"));
    let found = find(
        dir,
        label,
        address,
        &[
            "QueryRetrieveLevel=STUDY",
            &list,
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "ModalitiesInStudy",
        ],
    );
    let counts: BTreeMap<String, (String, String)> = found
        .iter()
        .map(|study| {
            (
                study.require(tags::STUDY_INSTANCE_UID).to_owned(),
                (
                    study
                        .require(tags::NUMBER_OF_STUDY_RELATED_SERIES)
                        .trim()
                        .to_owned(),
                    study
                        .require(tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
                        .trim()
                        .to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(counts.len(), found.len(), "{label}: a study came twice");
    counts
}

/// GETs `url` with curl: the body, after checking the HTTP status is `status`.
#[track_caller]
fn http_get(dir: &Path, label: &str, url: &str, status: u16) -> String {
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "-o", "-", "-w", "\n%{http_code}", url]);
    let finished = run(label, dir, curl, RUN_TIMEOUT);
    let output = finished.output();
    let (body, code) = output
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", output.trim()));
    assert_eq!(
        code.trim(),
        status.to_string(),
        "GET {url}\n{}",
        finished.describe()
    );
    body.to_owned()
}

/// The Study Instance UIDs and Number of Study Related Instances of a QIDO-RS `/studies`
/// answer.
fn qido_studies(body: &str) -> BTreeMap<String, u64> {
    let studies: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"));
    studies
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"))
        .iter()
        .map(|study| {
            let uid = study["0020000D"]["Value"][0].as_str().unwrap_or_default();
            let count = &study["00201208"]["Value"][0];
            let count = count
                .as_u64()
                .or_else(|| count.as_str().and_then(|text| text.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no NumberOfStudyRelatedInstances: {study}"));
            (uid.to_owned(), count)
        })
        .collect()
}

/// Asserts that the storage of `data` holds exactly one file per instance of `expected` and
/// nothing else (no second file of an instance, no temporary file).
#[track_caller]
fn assert_storage_holds_exactly(data: &Path, expected: &BTreeSet<String>, context: &str) {
    let on_disk = stored_sop_instance_uids(data);
    assert_eq!(
        &on_disk, expected,
        "the files of the storage and the index disagree\n{context}"
    );
    let files = files_under(&data.join("storage"));
    assert_eq!(
        files.len(),
        expected.len(),
        "files in the storage besides one per instance: {}\n{context}",
        files.len()
    );
    assert_eq!(
        hidden_files(data),
        Vec::<PathBuf>::new(),
        "temporary files left in the data directory\n{context}"
    );
}

/// `file → SOP Instance UID` of a study written by [`write_study`].
fn files_to_uids(
    instances: &BTreeMap<String, (InstanceSpec, PathBuf)>,
) -> BTreeMap<PathBuf, String> {
    instances
        .iter()
        .map(|(uid, (_, path))| (path.clone(), uid.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. One study to each node; both nodes see both; C-MOVE from the other node
// ---------------------------------------------------------------------------------------------

#[test]
fn two_nodes_each_receive_a_study_and_both_find_and_move_both() {
    let Some(dir) = retrieve_scratch_dir("scale-two-nodes") else {
        return;
    };
    if dcmtk("storescu").is_none() {
        return;
    }
    let Some(index) = fresh_database("two_nodes") else {
        return;
    };
    let Some(storescp) = StorescpDestination::start(&dir, StorescpDestination::AE_TITLE, &[])
    else {
        return;
    };
    let destination = storescp.address();
    let peer = format!(
        "{}:{}:{}",
        destination.ae_title, destination.host, destination.port
    );
    const COUNT: usize = 60;
    let (first_uid, first) = write_study(&dir.join("study1"), "1", 1, COUNT);
    let (second_uid, second) = write_study(&dir.join("study2"), "1", 2, COUNT);
    let data = dir.join("data");
    let node_a = start_node(&dir, &data, &index, "a", &["--peer", &peer]);
    let node_b = start_node(&dir, &data, &index, "b", &["--peer", &peer]);
    let logs = || format!("{}\n{}", node_a.describe(), node_b.describe());

    let mut to_a = start_sending(&dir, "storescu-a", node_a.address(), &dir.join("study1"));
    let mut to_b = start_sending(&dir, "storescu-b", node_b.address(), &dir.join("study2"));
    let sent_a = finished_sending(&mut to_a, COUNT, &files_to_uids(&first), &logs);
    let sent_b = finished_sending(&mut to_b, COUNT, &files_to_uids(&second), &logs);

    for (name, node) in [("a", &node_a), ("b", &node_b)] {
        let label = format!("images-{name}");
        assert_eq!(
            instances_found(&dir, &format!("{label}-1"), node.address(), &first_uid),
            sent_a,
            "node {name}: the study node A received\n{}",
            logs()
        );
        assert_eq!(
            instances_found(&dir, &format!("{label}-2"), node.address(), &second_uid),
            sent_b,
            "node {name}: the study node B received\n{}",
            logs()
        );
        let counts = study_counts(
            &dir,
            &format!("studies-{name}"),
            node.address(),
            &[&first_uid, &second_uid],
        );
        let expected = BTreeMap::from([
            (first_uid.clone(), ("2".to_owned(), COUNT.to_string())),
            (second_uid.clone(), ("2".to_owned(), COUNT.to_string())),
        ]);
        assert_eq!(counts, expected, "node {name}: the studies' counts");
        // QIDO-RS on the same node
        let body = http_get(
            &dir,
            &format!("qido-{name}"),
            &format!(
                "{}/studies?PatientID=SCALE-1-*&includefield=00201208",
                node.dicomweb_url()
            ),
            200,
        );
        let studies = qido_studies(&body);
        assert_eq!(
            studies,
            BTreeMap::from([
                (first_uid.clone(), COUNT as u64),
                (second_uid.clone(), COUNT as u64),
            ]),
            "node {name}: QIDO-RS /studies\n{body}"
        );
        let body = http_get(
            &dir,
            &format!("qido-instances-{name}"),
            &format!("{}/studies/{first_uid}/instances", node.dicomweb_url()),
            200,
        );
        let instances: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            instances.as_array().map(Vec::len),
            Some(COUNT),
            "node {name}: QIDO-RS instances of the first study"
        );
    }

    // C-MOVE from node B of the study node A received
    let study_key = format!("StudyInstanceUID={first_uid}");
    let moved = QrClient::Dcmtk
        .move_to(
            &dir,
            "move-from-b",
            node_b.address(),
            QrModel::StudyRoot,
            &destination.ae_title,
            &["QueryRetrieveLevel=STUDY", &study_key],
            &[],
        )
        .expect("DCMTK movescu");
    let log = format!("{}\n{}\n{}", moved.describe(), logs(), storescp.describe());
    moved.assert_code(0);
    let expected: Vec<QrInstance> = first
        .values()
        .map(|(spec, path)| spec.as_qr_instance(path))
        .collect();
    let expected: Vec<&QrInstance> = expected.iter().collect();
    assert_received_instances(&dir, &expected, storescp.output_dir(), &log);

    let all: BTreeSet<String> = sent_a.union(&sent_b).cloned().collect();
    assert_storage_holds_exactly(&data, &all, &logs());
    node_a.stop();
    node_b.stop();
}

// ---------------------------------------------------------------------------------------------
// 2. Four senders over two nodes, 10% sent twice
// ---------------------------------------------------------------------------------------------

#[test]
fn four_senders_over_two_nodes_store_every_instance_exactly_once() {
    let Some(dir) = retrieve_scratch_dir("scale-concurrency") else {
        return;
    };
    if dcmtk("storescu").is_none() {
        return;
    }
    let Some(index) = fresh_database("concurrency") else {
        return;
    };
    const SENDERS: usize = 4;
    const EACH: usize = 500;
    const TWICE: usize = EACH / 10;
    // four studies of 500; sender k sends the instances whose number is k modulo 4, of every
    // study: both nodes write into every study at once
    let mut studies = Vec::new();
    let mut uid_of: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut shares: Vec<Vec<PathBuf>> = vec![Vec::new(); SENDERS];
    for study in 1..=SENDERS {
        let (study_uid, instances) =
            write_study(&dir.join(format!("written{study}")), "2", study, EACH);
        for (n, (_, path)) in instances.values().enumerate() {
            shares[n % SENDERS].push(path.clone());
        }
        uid_of.extend(files_to_uids(&instances));
        studies.push(study_uid);
    }
    // each sender's folder: its share, and the first 10% of the next sender's (which goes to
    // the other node)
    let mut folders = Vec::new();
    let mut sent_uid_of: BTreeMap<PathBuf, String> = BTreeMap::new();
    for sender in 0..SENDERS {
        let folder = dir.join(format!("sender{sender}"));
        fs::create_dir_all(&folder).expect("create the sender's folder");
        let next = &shares[(sender + 1) % SENDERS];
        let files = shares[sender].iter().chain(next.iter().take(TWICE));
        for (n, file) in files.enumerate() {
            let copy = folder.join(format!("{n:05}.dcm"));
            fs::hard_link(file, &copy)
                .or_else(|_| fs::copy(file, &copy).map(|_| ()))
                .expect("link a file into the sender's folder");
            sent_uid_of.insert(copy, uid_of[file].clone());
        }
        folders.push(folder);
    }

    let data = dir.join("data");
    let node_a = start_node(&dir, &data, &index, "a", &[]);
    let node_b = start_node(&dir, &data, &index, "b", &[]);
    let logs = || format!("{}\n{}", node_a.describe(), node_b.describe());
    let mut senders: Vec<ProcessGuard> = folders
        .iter()
        .enumerate()
        .map(|(sender, folder)| {
            let node = if sender % 2 == 0 { &node_a } else { &node_b };
            start_sending(&dir, &format!("storescu-{sender}"), node.address(), folder)
        })
        .collect();
    let mut acknowledged = BTreeSet::new();
    for sender in &mut senders {
        acknowledged.extend(finished_sending(sender, EACH + TWICE, &sent_uid_of, &logs));
    }
    let all: BTreeSet<String> = uid_of.values().cloned().collect();
    assert_eq!(acknowledged, all, "every instance acknowledged");

    // exactly once in the index (the database itself, and both nodes' C-FIND) and the storage
    let rows = psql(
        &index,
        "SELECT COUNT(*), COUNT(DISTINCT sop_instance_uid) FROM instance",
    );
    assert_eq!(rows, format!("{0}|{0}", all.len()), "index rows");
    let mut found = BTreeSet::new();
    for (n, study) in studies.iter().enumerate() {
        let node = if n % 2 == 0 { &node_b } else { &node_a };
        found.extend(instances_found(
            &dir,
            &format!("images-{n}"),
            node.address(),
            study,
        ));
    }
    assert_eq!(found, all, "the instances C-FIND finds\n{}", logs());
    let study_list: Vec<&str> = studies.iter().map(String::as_str).collect();
    for (name, node) in [("a", &node_a), ("b", &node_b)] {
        let counts = study_counts(&dir, &format!("counts-{name}"), node.address(), &study_list);
        let expected: BTreeMap<String, (String, String)> = studies
            .iter()
            .map(|study| (study.clone(), ("2".to_owned(), EACH.to_string())))
            .collect();
        assert_eq!(counts, expected, "node {name}: the studies' counts");
    }
    let patients = psql(
        &index,
        "SELECT string_agg(number_of_studies || '/' || number_of_series || '/' || number_of_instances, ',' ORDER BY patient_id) FROM patient",
    );
    assert_eq!(
        patients,
        vec![format!("1/2/{EACH}"); SENDERS].join(","),
        "each patient's counts"
    );
    assert_storage_holds_exactly(&data, &all, &logs());
    node_a.stop();
    node_b.stop();
}

// ---------------------------------------------------------------------------------------------
// 3. A node killed during an ingest
// ---------------------------------------------------------------------------------------------

#[test]
fn a_node_killed_during_an_ingest_leaves_the_other_serving_and_all_in_agreement() {
    let Some(dir) = retrieve_scratch_dir("scale-kill") else {
        return;
    };
    if dcmtk("storescu").is_none() {
        return;
    }
    let Some(index) = fresh_database("kill") else {
        return;
    };
    const COUNT: usize = 300;
    const KILL_AFTER: usize = 80;
    let (first_uid, first) = write_study(&dir.join("study1"), "3", 1, COUNT);
    let (second_uid, second) = write_study(&dir.join("study2"), "3", 2, COUNT);
    let data = dir.join("data");
    let node_a = start_node(&dir, &data, &index, "a", &[]);
    let node_b = start_node(&dir, &data, &index, "b", &[]);
    let mut to_a = start_sending(&dir, "storescu-a", node_a.address(), &dir.join("study1"));
    let mut to_b = start_sending(&dir, "storescu-b", node_b.address(), &dir.join("study2"));
    let reached = wait_closely(INGEST_TIMEOUT, || {
        acknowledged_files(&to_a.output()).len() >= KILL_AFTER || to_a.try_status().is_some()
    });
    let logs_a = node_a.kill();
    assert!(reached, "no {KILL_AFTER} files stored in time\n{logs_a}");
    let status = to_a.wait(INGEST_TIMEOUT);
    let first_files = files_to_uids(&first);
    let acknowledged_a: BTreeSet<String> = acknowledged_files(&to_a.output())
        .iter()
        .map(|path| first_files[path].clone())
        .collect();
    assert!(
        !status.success() && acknowledged_a.len() < COUNT,
        "node A was killed after its ingest had gone through: nothing was cut off\n{logs_a}"
    );

    // node B goes on: its sender finishes whole and B finds what A acknowledged
    let sent_b = finished_sending(&mut to_b, COUNT, &files_to_uids(&second), &|| {
        node_b.describe()
    });
    let found_on_b = instances_found(&dir, "b-first", node_b.address(), &first_uid);
    assert!(
        acknowledged_a.is_subset(&found_on_b),
        "node B does not find instances node A acknowledged before it was killed: {:?}",
        acknowledged_a.difference(&found_on_b).collect::<Vec<_>>()
    );
    assert_eq!(
        instances_found(&dir, "b-second", node_b.address(), &second_uid),
        sent_b
    );

    // node A restarted: its check runs; then both agree with the storage
    let mut node_a = start_node(&dir, &data, &index, "a", &[]);
    node_a
        .process()
        .wait_for_text("not closed cleanly", support::LOG_TIMEOUT);
    let logs = || format!("{}\n{}", node_a.describe(), node_b.describe());
    let found_a = instances_found(&dir, "a-first", node_a.address(), &first_uid);
    assert!(
        acknowledged_a.is_subset(&found_a),
        "acknowledged instances are missing after the restart: {:?}\n{}",
        acknowledged_a.difference(&found_a).collect::<Vec<_>>(),
        logs()
    );
    assert_eq!(
        instances_found(&dir, "b-first-again", node_b.address(), &first_uid),
        found_a,
        "the nodes disagree"
    );
    let counts = study_counts(&dir, "counts", node_b.address(), &[&first_uid, &second_uid]);
    assert_eq!(
        counts
            .get(&first_uid)
            .map(|(_, instances)| instances.clone()),
        Some(found_a.len().to_string()),
        "the first study's count"
    );
    let all: BTreeSet<String> = found_a.union(&sent_b).cloned().collect();
    assert_storage_holds_exactly(&data, &all, &logs());
    node_a.stop();
    node_b.stop();
}

// ---------------------------------------------------------------------------------------------
// 4. PostgreSQL restarted during an ingest
// ---------------------------------------------------------------------------------------------

#[test]
fn postgresql_restarted_during_an_ingest_loses_no_acknowledged_instance() {
    let Some(dir) = retrieve_scratch_dir("scale-postgres-restart") else {
        return;
    };
    if dcmtk("storescu").is_none() {
        return;
    }
    let Some(server) = OwnServer::start(&dir.join("postgres")) else {
        return;
    };
    let index = create_database(server.url(), "restart");
    const COUNT: usize = 400;
    const RESTART_AFTER: usize = 100;
    let (study_uid, instances) = write_study(&dir.join("study"), "4", 1, COUNT);
    let data = dir.join("data");
    let node = start_node(&dir, &data, &index, "a", &[]);
    let mut sender = start_sending(&dir, "storescu", node.address(), &dir.join("study"));
    let reached = wait_closely(INGEST_TIMEOUT, || {
        acknowledged_files(&sender.output()).len() >= RESTART_AFTER || sender.try_status().is_some()
    });
    assert!(
        reached && sender.try_status().is_none(),
        "the ingest was over before {RESTART_AFTER} files were stored\n{}",
        sender.describe()
    );
    server.restart();
    let acknowledged = finished_sending(&mut sender, COUNT, &files_to_uids(&instances), &|| {
        node.describe()
    });
    let found = instances_found(&dir, "after-restart", node.address(), &study_uid);
    assert_eq!(found, acknowledged, "the instances found after the restart");
    assert_storage_holds_exactly(&data, &found, &node.describe());
    node.stop();
}
