//! Storage Commitment Push Model (PS3.4 Annex J) interoperability with pynetdicom, both ways,
//! asserting on the instances committed and failed and on where the report went:
//!
//! - pynetdicom's SCU (`tests/peers/pynetdicom_commitscu.py`) against our
//!   `StorageCommitmentScp` (served in-process over a set of stored instances): stored instances
//!   committed, unknown ones failed with 0x0112 and one held under another class with 0x0119,
//!   reported on the same association; and, when the SCU releases right after the N-ACTION-RSP,
//!   on a new association to the port it listens on (pynetdicom accepting our SCP role);
//! - `dimsum storescu --commit` against pynetdicom's Storage and Storage Commitment SCP
//!   (`tests/peers/pynetdicom_commitscp.py`): the files sent are committed but one the SCP
//!   "forgot" (exit 1, its UID and reason printed), with the report on the same association, and
//!   with `--commit-port` on a new association.
//!
//! DCMTK has no Storage Commitment tool, so pynetdicom is the outside peer. A missing peer skips
//! the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS` is set.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use dimsum_net::scp::{
    CommitmentHandler, CommitmentRequest, Dispatcher, FailureReason, KnownInstances, SopReference,
    StorageCommitmentScp,
};
use dimsum_net::storage::BoxFuture;
use dimsum_net::{Server, ServerConfig, ServerHandle, ServerStatistics};
use support::{
    LOCALHOST, ProcessGuard, RUN_TIMEOUT, STARTUP_TIMEOUT, STOP_TIMEOUT, TestFile, assert_contains,
    dimsum, free_port, generate_test_data, pynetdicom, records_of, run, scratch_dir,
    wait_for_record,
};

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Our SCP's AE title.
const SCP_AE: &str = "DIMSUMCOMMIT";
/// The AE title the pynetdicom SCU calls with.
const PY_SCU_AE: &str = "PYCOMMITSCU";
/// The AE title of the pynetdicom SCP.
const PY_SCP_AE: &str = "PYCOMMITSCP";

fn instance(index: u32) -> SopReference {
    SopReference::new(CT_IMAGE, format!("1.2.826.0.1.3680043.8.498.88.{index}"))
}

/// Our Storage Commitment SCP served in-process on a free loopback port.
struct OurScp {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<ServerStatistics>,
}

impl OurScp {
    fn start<H: CommitmentHandler>(scp: StorageCommitmentScp<H>) -> OurScp {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let mut config = ServerConfig::new(SCP_AE);
        config.shutdown_grace = Duration::from_secs(5);
        let server = runtime
            .block_on(Server::bind(
                "127.0.0.1:0",
                config,
                Dispatcher::new().with(scp),
            ))
            .expect("our SCP binds");
        let address = server.local_addr().expect("address");
        let handle = server.handle();
        let task = runtime.spawn(server.run());
        OurScp {
            runtime,
            address,
            handle,
            task,
        }
    }

    fn stop(self) -> ServerStatistics {
        self.handle.shutdown();
        self.runtime
            .block_on(async { tokio::time::timeout(STOP_TIMEOUT, self.task).await })
            .expect("our SCP stops")
            .expect("server task")
    }
}

/// The pynetdicom SCU asking our SCP at `address` to commit `references`, with `args`.
fn pynetdicom_commitscu(
    dir: &Path,
    address: SocketAddr,
    references: &[SopReference],
    args: &[&str],
) -> Option<Value> {
    let mut command = pynetdicom("pynetdicom_commitscu.py")?;
    command
        .args([LOCALHOST, &address.port().to_string()])
        .args([
            "--called",
            SCP_AE,
            "--calling",
            PY_SCU_AE,
            "--timeout",
            "20",
        ])
        .args(args);
    for reference in references {
        command.arg("--ref").arg(format!(
            "{}:{}",
            reference.sop_class_uid, reference.sop_instance_uid
        ));
    }
    let finished = run("pynetdicom-commitscu", dir, command, RUN_TIMEOUT);
    let outcome = finished.json();
    assert_eq!(
        outcome["action_status"],
        json!(0),
        "N-ACTION status\n{}",
        finished.describe()
    );
    assert!(
        outcome["report"].is_object(),
        "no report\n{}",
        finished.describe()
    );
    finished.assert_code(0);
    assert!(
        !finished.stderr.contains("Traceback"),
        "pynetdicom failed\n{}",
        finished.describe()
    );
    Some(outcome)
}

fn pair(reference: &SopReference) -> Value {
    json!([reference.sop_class_uid, reference.sop_instance_uid])
}

fn failure(reference: &SopReference, reason: FailureReason) -> Value {
    json!([
        reference.sop_class_uid,
        reference.sop_instance_uid,
        reason.0
    ])
}

#[test]
fn pynetdicom_scu_gets_stored_and_unknown_instances_answered_on_the_same_association() {
    let dir = scratch_dir("commitment-pynetdicom-scu-same");
    let stored: KnownInstances = [instance(1), instance(3)].into_iter().collect();
    stored.insert(SopReference::new(MR_IMAGE, instance(4).sop_instance_uid));
    let scp = OurScp::start(StorageCommitmentScp::new(stored));
    let asked = [instance(1), instance(2), instance(3), instance(4)];

    let Some(outcome) = pynetdicom_commitscu(&dir, scp.address, &asked, &[]) else {
        return;
    };

    let report = &outcome["report"];
    assert_eq!(report["transaction_uid"], outcome["transaction_uid"]);
    assert_eq!(report["event_type"], json!(2), "{outcome:#}");
    assert_eq!(
        report["committed"],
        json!([pair(&instance(1)), pair(&instance(3))])
    );
    assert_eq!(
        report["failed"],
        json!([
            failure(&instance(2), FailureReason::NO_SUCH_OBJECT_INSTANCE),
            failure(&instance(4), FailureReason::CLASS_INSTANCE_CONFLICT),
        ])
    );
    assert_eq!(report["on_new_association"], json!(false));
    assert_eq!(report["calling_ae"], json!(PY_SCU_AE));
    let statistics = scp.stop();
    assert_eq!((statistics.accepted, statistics.released), (1, 1));
}

/// The set of stored instances, answered after a pause: the requestor has released by then.
struct AfterAPause(KnownInstances);

impl CommitmentHandler for AfterAPause {
    fn commit<'a>(
        &'a self,
        request: &'a CommitmentRequest,
    ) -> BoxFuture<'a, Vec<Result<(), FailureReason>>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.0.commit(request).await
        })
    }
}

#[test]
fn pynetdicom_scu_that_released_gets_the_report_on_a_new_association() {
    let dir = scratch_dir("commitment-pynetdicom-scu-new");
    let listen_port = free_port();
    let stored: KnownInstances = [instance(1), instance(2)].into_iter().collect();
    let scp = OurScp::start(
        StorageCommitmentScp::new(AfterAPause(stored))
            .with_peer(PY_SCU_AE, format!("{LOCALHOST}:{listen_port}")),
    );
    let asked = [instance(1), instance(2)];

    let Some(outcome) = pynetdicom_commitscu(
        &dir,
        scp.address,
        &asked,
        &[
            "--release-after-action",
            "--listen-port",
            &listen_port.to_string(),
        ],
    ) else {
        return;
    };

    let report = &outcome["report"];
    assert_eq!(report["on_new_association"], json!(true), "{outcome:#}");
    assert_eq!(report["event_type"], json!(1));
    assert_eq!(report["transaction_uid"], outcome["transaction_uid"]);
    assert_eq!(
        report["committed"],
        json!([pair(&instance(1)), pair(&instance(2))])
    );
    assert_eq!(report["failed"], json!([]));
    // We call with the AE title the SCU called us by.
    assert_eq!(report["calling_ae"], json!(SCP_AE));
    scp.stop();
}

/// Starts the pynetdicom Storage and Storage Commitment SCP with `args`; returns it with its
/// record file.
fn start_pynetdicom_commitscp(
    dir: &Path,
    port: u16,
    args: &[&str],
) -> Option<(ProcessGuard, std::path::PathBuf)> {
    let mut command = pynetdicom("pynetdicom_commitscp.py")?;
    let record = dir.join("pynetdicom-commitscp.jsonl");
    command
        .args(["--port", &port.to_string(), "--bind", LOCALHOST, "--record"])
        .arg(&record)
        .args(["--ae-title", PY_SCP_AE])
        .args(args);
    let mut server = ProcessGuard::spawn("pynetdicom-commitscp", dir, command);
    server.wait_for_text("READY", STARTUP_TIMEOUT);
    Some((server, record))
}

/// Three small Secondary Capture files, generated once.
fn files() -> Option<Vec<TestFile>> {
    generate_test_data(
        "commitment",
        &["--batch", "3", "--kind", "small", "--seed", "88"],
    )
}

/// `dimsum storescu --commit --commit-timeout <commit_timeout>` sending `files` to `port`,
/// with `args`.
fn storescu_commit(
    dir: &Path,
    port: u16,
    files: &[TestFile],
    commit_timeout: &str,
    args: &[&str],
) -> support::Finished {
    let mut command = dimsum();
    command
        .args([
            "storescu",
            "--call",
            PY_SCP_AE,
            "--commit",
            "--commit-timeout",
            commit_timeout,
        ])
        .args(args)
        .args([LOCALHOST, &port.to_string()])
        .args(files.iter().map(|file| &file.path));
    run("dimsum-storescu", dir, command, RUN_TIMEOUT)
}

/// The one N-EVENT-REPORT the pynetdicom SCP recorded, once it is there (and the SCP has not
/// failed).
fn recorded_report(server: &ProcessGuard, record: &Path) -> Value {
    let records = wait_for_record(record, "n-event-report", Duration::from_secs(20));
    let reports = records_of(&records, "n-event-report");
    assert_eq!(reports.len(), 1, "{records:#?}");
    assert!(
        !server.stderr().contains("Traceback"),
        "pynetdicom failed\n{}",
        server.describe()
    );
    reports[0].clone()
}

#[test]
fn storescu_commit_reports_what_pynetdicom_did_not_keep() {
    let dir = scratch_dir("commitment-storescu-same");
    let Some(files) = files() else { return };
    let port = free_port();
    let forgotten = &files[1];
    let Some((server, record)) =
        start_pynetdicom_commitscp(&dir, port, &["--forget", &forgotten.sop_instance_uid])
    else {
        return;
    };

    let finished = storescu_commit(&dir, port, &files, "20", &[]);

    finished.assert_code(1);
    let output = finished.output();
    let context = finished.describe();
    assert_contains(&output, "3 stored", &context);
    assert_contains(
        &output,
        "Storage commitment: 2 committed, 1 not committed",
        &context,
    );
    assert_contains(
        &output,
        "event type 2, reported on the same association",
        &context,
    );
    assert_contains(
        &output,
        &format!(
            "not committed: {} ({}): 0x0112 (no such object instance)",
            forgotten.sop_instance_uid, forgotten.sop_class_uid
        ),
        &context,
    );
    let report = recorded_report(&server, &record);
    // Our SCU answered the report with success.
    assert_eq!(report["status"], json!(0), "{report:#}");
    assert_eq!(report["mode"], json!("same"));
    let records = support::read_json_lines(&record);
    let actions = records_of(&records, "n-action");
    assert_eq!(actions.len(), 1, "{records:#?}");
    assert_eq!(report["transaction_uid"], actions[0]["transaction_uid"]);
    let mut requested = actions[0]["references"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut expected: Vec<Value> = files
        .iter()
        .map(|file| json!([file.sop_class_uid, file.sop_instance_uid]))
        .collect();
    requested.sort_by_key(Value::to_string);
    expected.sort_by_key(Value::to_string);
    assert_eq!(requested, expected, "every stored instance is asked for");
}

#[test]
fn storescu_commit_port_receives_the_report_on_a_new_association() {
    let dir = scratch_dir("commitment-storescu-new");
    let Some(files) = files() else { return };
    let port = free_port();
    let commit_port = free_port();
    let peer = format!("STORESCU={LOCALHOST}:{commit_port}");
    let Some((server, record)) =
        start_pynetdicom_commitscp(&dir, port, &["--report", "new", "--peer", &peer])
    else {
        return;
    };

    let finished = storescu_commit(
        &dir,
        port,
        &files,
        "20",
        &[
            "--commit-port",
            &commit_port.to_string(),
            "--commit-bind",
            LOCALHOST,
        ],
    );

    finished.assert_code(0);
    let context = finished.describe();
    assert_contains(
        &finished.output(),
        "Storage commitment: 3 committed, 0 not committed",
        &context,
    );
    assert_contains(
        &finished.output(),
        "event type 1, reported on a new association",
        &context,
    );
    let report = recorded_report(&server, &record);
    assert_eq!(report["mode"], json!("new"), "{report:#}");
    assert_eq!(report["status"], json!(0));
    assert_eq!(report["committed"].as_array().map(Vec::len), Some(3));
}

#[test]
fn storescu_commit_without_a_port_says_the_report_did_not_come() {
    let dir = scratch_dir("commitment-storescu-no-port");
    let Some(files) = files() else { return };
    let port = free_port();
    // The SCP reports only on new associations, to a port nobody listens on.
    let peer = format!("STORESCU={LOCALHOST}:{}", free_port());
    let Some((_server, _record)) =
        start_pynetdicom_commitscp(&dir, port, &["--report", "new", "--peer", &peer])
    else {
        return;
    };

    let finished = storescu_commit(&dir, port, &files, "2", &[]);

    finished.assert_code(4);
    assert_contains(
        &finished.output(),
        "no Storage Commitment report for transaction 2.25.",
        &finished.describe(),
    );
}
