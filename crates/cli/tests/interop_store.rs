//! C-STORE interoperability: `dimsum storescu` / `dimsum storescp` against DCMTK and pynetdicom,
//! both directions, asserting on what arrived: every received data set is compared element by
//! element with the sent one (`tests/peers/compare_datasets.py`: decoded values, so a transfer
//! syntax conversion still compares equal), and the received file meta (SOP class/instance,
//! transfer syntax) is checked. Also: a 500-file batch, a 300 MB multi-frame object with a peak
//! RSS bound on both dimsum tools (the streaming design), transfer syntax conversion and its
//! failure for compressed data, storescp's sorting and exec-on-reception, and pydicom's own
//! test files corpus.
//!
//! Test data comes from `tests/data/make_datasets.py` (deterministic), generated once into
//! cargo's target tmp dir. A missing peer skips the test (prints `SKIP:`), or fails it when
//! `DIMSUM_REQUIRE_PEERS` is set. Install the peers with `scripts/setup-peers`.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::{
    DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, JPEG_BASELINE,
    LARGE_RUN_TIMEOUT, LOCALHOST, LOG_TIMEOUT, RUN_TIMEOUT, STOP_TIMEOUT, STREAMING_RSS_LIMIT_KIB,
    TestFile, assert_contains, assert_datasets_equal, compare_datasets, dcmtk, dimsum, files_under,
    free_port, generate_test_data, line_starting_with, pynetdicom, read_json_lines, records_of,
    run, scratch_dir, standard_file, standard_test_data, start_dcmtk_storescp_into,
    start_dimsum_storescp, start_pynetdicom_storescp, time_report_peak_rss_kib, under_gnu_time,
    wait_until,
};

/// Size of the large multi-frame object, MiB of pixel data.
const MULTIFRAME_MB: &str = "300";
/// Number of files of the batch test.
const BATCH_SIZE: usize = 500;

/// A standard test file and the transfer syntax it is stored in, with the DCMTK storescu
/// option that proposes exactly that syntax.
struct SyntaxCase {
    file: &'static str,
    transfer_syntax: &'static str,
    dcmtk_propose: &'static str,
}

/// The same instance in each uncompressed syntax, a JPEG Baseline file, and the file with
/// nested sequences and private tags.
const SYNTAX_CASES: &[SyntaxCase] = &[
    SyntaxCase {
        file: "syntax_implicit.dcm",
        transfer_syntax: IMPLICIT_VR_LE,
        dcmtk_propose: "-xi",
    },
    SyntaxCase {
        file: "syntax_explicit_le.dcm",
        transfer_syntax: EXPLICIT_VR_LE,
        dcmtk_propose: "-xe",
    },
    SyntaxCase {
        file: "syntax_explicit_be.dcm",
        transfer_syntax: EXPLICIT_VR_BE,
        dcmtk_propose: "-xb",
    },
    SyntaxCase {
        file: "syntax_deflated.dcm",
        transfer_syntax: DEFLATED_EXPLICIT_VR_LE,
        dcmtk_propose: "-xd",
    },
    SyntaxCase {
        file: "jpeg.dcm",
        transfer_syntax: JPEG_BASELINE,
        dcmtk_propose: "-xy",
    },
    SyntaxCase {
        file: "nested_private.dcm",
        transfer_syntax: EXPLICIT_VR_LE,
        dcmtk_propose: "-xe",
    },
];

/// `dimsum storescu -v --no-progress` calling 127.0.0.1:`port` with bounded timeouts.
fn dimsum_storescu(port: u16, args: &[&str], paths: &[&Path]) -> Command {
    let mut command = dimsum();
    command
        .args(["storescu", "-v", "--no-progress", "-to", "10", "-ta", "30"])
        .args(["-td", "120"])
        .args(args)
        .args([LOCALHOST, &port.to_string()])
        .args(paths);
    command
}

/// DCMTK `storescu -R <propose>` calling 127.0.0.1:`port` (only the needed presentation
/// contexts, proposing the transfer syntax chosen by `propose`).
fn dcmtk_storescu(port: u16, propose: &str, args: &[&str], paths: &[&Path]) -> Option<Command> {
    let mut command = dcmtk("storescu")?;
    command
        .args(["-R", propose, "-to", "10", "-ta", "30", "-td", "120"])
        .args(args)
        .args([LOCALHOST, &port.to_string()])
        .args(paths);
    Some(command)
}

/// The one file in `folder` (recursively); panics with the listing otherwise.
#[track_caller]
fn single_file_in(folder: &Path, context: &str) -> PathBuf {
    let files = files_under(folder);
    assert_eq!(
        files.len(),
        1,
        "expected exactly one file in {}: {files:#?}\n{context}",
        folder.display()
    );
    files.into_iter().next().unwrap_or_default()
}

/// The file name dimsum storescp gives an instance (the spec's sanitising rule).
fn stored_name(sop_instance_uid: &str) -> String {
    format!("{sop_instance_uid}.dcm")
}

/// Asserts the "I: Stored <path> (<uid>): 0x0000 (success)" line of `dimsum storescu -v`.
#[track_caller]
fn assert_stored_line(log: &str, file: &TestFile, context: &str) {
    assert_contains(
        log,
        &format!(
            "I: Stored {} ({}): 0x0000 (success)",
            file.path.display(),
            file.sop_instance_uid
        ),
        context,
    );
}

/// The summary line of `dimsum storescu`, e.g. "Summary: 3 instances: 2 stored, ...".
#[track_caller]
fn assert_summary(log: &str, expected_prefix: &str, context: &str) {
    let summary = line_starting_with(log, "Summary:", context);
    assert!(
        summary.starts_with(expected_prefix),
        "summary line {summary:?} does not start with {expected_prefix:?}\n{context}"
    );
}

fn empty_folder(folder: &Path) {
    if folder.exists() {
        fs::remove_dir_all(folder).expect("clear the output folder");
    }
    fs::create_dir_all(folder).expect("create the output folder");
}

// -------------------------------------------------------------------------------------------
// Each transfer syntax, each direction
// -------------------------------------------------------------------------------------------

#[test]
fn dcmtk_storescu_to_dimsum_storescp_each_transfer_syntax() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-dcmtk-to-dimsum");
    for case in SYNTAX_CASES {
        let file = standard_file(files, case.file);
        let output = dir.join(format!("received-{}", case.file));
        let port = free_port();
        // the SCP accepts only the case's syntax, so the data set must travel in it
        let mut scp =
            start_dimsum_storescp(&dir, &output, port, &["--accept-ts", case.transfer_syntax]);
        let Some(command) = dcmtk_storescu(port, case.dcmtk_propose, &[], &[&file.path]) else {
            return;
        };
        let sent = run("dcmtk-storescu", &dir, command, RUN_TIMEOUT);
        let context = format!("{}\n{}", sent.describe(), scp.describe());
        sent.assert_code(0);
        let received = output.join(stored_name(&file.sop_instance_uid));
        assert!(
            wait_until(LOG_TIMEOUT, || received.is_file()),
            "{} did not arrive as {}\n{context}",
            case.file,
            received.display()
        );
        assert_eq!(files_under(&output), vec![received.clone()], "{context}");
        // file meta: the negotiated transfer syntax, the calling AE as source AE title
        assert_datasets_equal(
            &dir,
            &file.path,
            &received,
            &[
                "--expect-ts",
                case.transfer_syntax,
                "--expect-source-ae",
                "STORESCU",
            ],
            &context,
        );
        scp.wait_for_text(
            &format!("from STORESCU ({}", file.sop_class_uid),
            LOG_TIMEOUT,
        );
        scp.terminate(STOP_TIMEOUT);
    }
}

#[test]
fn dcmtk_storescu_converting_to_implicit_for_dimsum_storescp() {
    // DCMTK converts the explicit VR file with private tags and a private SQ to implicit VR:
    // our SCP must store it so that the private elements still decode to the same values.
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-dcmtk-to-dimsum-implicit");
    let file = standard_file(files, "nested_private.dcm");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &["--accept-ts", IMPLICIT_VR_LE]);
    let Some(command) = dcmtk_storescu(port, "-xi", &[], &[&file.path]) else {
        return;
    };
    let sent = run("dcmtk-storescu", &dir, command, RUN_TIMEOUT);
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    let received = output.join(stored_name(&file.sop_instance_uid));
    assert!(wait_until(LOG_TIMEOUT, || received.is_file()), "{context}");
    assert_datasets_equal(
        &dir,
        &file.path,
        &received,
        &["--expect-ts", IMPLICIT_VR_LE],
        &context,
    );
}

#[test]
fn dimsum_storescu_to_dcmtk_storescp_each_transfer_syntax() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-dimsum-to-dcmtk");
    let output = dir.join("received");
    let port = free_port();
    let Some(scp) = start_dcmtk_storescp_into(&dir, &output, port, &["+xa", "-aet", "DCMTK_SCP"])
    else {
        return;
    };
    for case in SYNTAX_CASES {
        let file = standard_file(files, case.file);
        empty_folder(&output);
        let sent = run(
            "dimsum-storescu",
            &dir,
            dimsum_storescu(port, &["-aec", "DCMTK_SCP"], &[&file.path]),
            RUN_TIMEOUT,
        );
        let context = format!("{}\n{}", sent.describe(), scp.describe());
        sent.assert_code(0);
        assert_stored_line(&sent.stderr, &file, &context);
        assert_summary(
            &sent.stderr,
            "Summary: 1 instances: 1 stored, 0 with warnings, 0 failed, 0 skipped",
            &context,
        );
        // DCMTK names the file <modality>.<uid> and keeps the network transfer syntax
        let received = single_file_in(&output, &context);
        assert!(
            received
                .to_string_lossy()
                .ends_with(&format!(".{}", file.sop_instance_uid)),
            "unexpected DCMTK file name {}\n{context}",
            received.display()
        );
        assert_datasets_equal(
            &dir,
            &file.path,
            &received,
            &["--expect-ts", case.transfer_syntax],
            &context,
        );
    }
}

#[test]
fn pynetdicom_storescu_to_dimsum_storescp_each_transfer_syntax() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-pynetdicom-to-dimsum");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    for case in SYNTAX_CASES {
        let file = standard_file(files, case.file);
        empty_folder(&output);
        let Some(mut command) = pynetdicom("pynetdicom_storescu.py") else {
            return;
        };
        command
            .args([LOCALHOST, &port.to_string()])
            .arg(&file.path)
            .args(["--calling", "PYSTORESCU", "--called", "STORESCP"]);
        let sent = run("pynetdicom-storescu", &dir, command, RUN_TIMEOUT);
        let context = format!("{}\n{}", sent.describe(), scp.describe());
        sent.assert_code(0);
        let report = sent.json();
        assert_eq!(report["results"][0]["status"], 0, "{context}");
        assert_eq!(
            report["accepted_contexts"][0]["transfer_syntax"], case.transfer_syntax,
            "dimsum storescp must accept the file's own transfer syntax\n{context}"
        );
        let received = output.join(stored_name(&file.sop_instance_uid));
        assert!(wait_until(LOG_TIMEOUT, || received.is_file()), "{context}");
        assert_datasets_equal(
            &dir,
            &file.path,
            &received,
            &[
                "--expect-ts",
                case.transfer_syntax,
                "--expect-source-ae",
                "PYSTORESCU",
            ],
            &context,
        );
    }
}

#[test]
fn dimsum_storescu_to_pynetdicom_storescp_each_transfer_syntax() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-dimsum-to-pynetdicom");
    let output = dir.join("received");
    let port = free_port();
    let Some((scp, record)) = start_pynetdicom_storescp(&dir, &output, port, &[]) else {
        return;
    };
    for (index, case) in SYNTAX_CASES.iter().enumerate() {
        let file = standard_file(files, case.file);
        empty_folder(&output);
        let sent = run(
            "dimsum-storescu",
            &dir,
            dimsum_storescu(
                port,
                &[
                    "-aet",
                    "DIMSUM_SCU",
                    "-aec",
                    "PYNETDICOM",
                    "--move-originator-aet",
                    "MOVER",
                    "--move-originator-id",
                    "77",
                ],
                &[&file.path],
            ),
            RUN_TIMEOUT,
        );
        let context = format!("{}\n{}", sent.describe(), scp.describe());
        sent.assert_code(0);
        assert_stored_line(&sent.stderr, &file, &context);
        let mut stores = Vec::new();
        assert!(
            wait_until(LOG_TIMEOUT, || {
                let records = read_json_lines(&record);
                stores = records_of(&records, "c-store")
                    .into_iter()
                    .cloned()
                    .collect::<Vec<Value>>();
                stores.len() > index
            }),
            "pynetdicom recorded no C-STORE for {}\n{context}",
            case.file
        );
        let store = &stores[index];
        assert_eq!(store["sop_instance_uid"], file.sop_instance_uid.as_str());
        assert_eq!(store["sop_class_uid"], file.sop_class_uid.as_str());
        assert_eq!(store["transfer_syntax"], case.transfer_syntax, "{context}");
        assert_eq!(store["calling_ae"], "DIMSUM_SCU");
        assert_eq!(store["move_originator_aet"], "MOVER");
        assert_eq!(store["move_originator_id"], 77);
        let received = PathBuf::from(store["path"].as_str().unwrap_or_default());
        assert_datasets_equal(
            &dir,
            &file.path,
            &received,
            &["--expect-ts", case.transfer_syntax],
            &context,
        );
    }
}

// -------------------------------------------------------------------------------------------
// A batch of 500 files over one association
// -------------------------------------------------------------------------------------------

fn batch_folder() -> Option<PathBuf> {
    static BATCH: OnceLock<Option<PathBuf>> = OnceLock::new();
    BATCH
        .get_or_init(|| {
            let count = BATCH_SIZE.to_string();
            let files = generate_test_data("batch-small", &["--batch", &count, "--kind", "small"])?;
            assert_eq!(files.len(), BATCH_SIZE);
            files[0].path.parent().map(Path::to_path_buf)
        })
        .clone()
}

#[test]
fn batch_of_500_small_files_dimsum_to_dimsum() {
    let Some(batch) = batch_folder() else {
        return;
    };
    let dir = scratch_dir("store-batch-dimsum");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    let sent = run(
        "dimsum-storescu",
        &dir,
        dimsum_storescu(port, &[], &[&batch]),
        LARGE_RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    assert_summary(
        &sent.stderr,
        &format!(
            "Summary: {BATCH_SIZE} instances: {BATCH_SIZE} stored, 0 with warnings, 0 failed, 0 skipped;"
        ),
        &context,
    );
    assert!(
        wait_until(LOG_TIMEOUT, || files_under(&output).len() == BATCH_SIZE),
        "{} files received, {BATCH_SIZE} expected\n{context}",
        files_under(&output).len()
    );
    assert_datasets_equal(
        &dir,
        &batch,
        &output,
        &["--expect-ts", EXPLICIT_VR_LE],
        &context,
    );
}

#[test]
fn batch_of_500_small_files_dimsum_to_pynetdicom_uses_one_association() {
    let Some(batch) = batch_folder() else {
        return;
    };
    let dir = scratch_dir("store-batch-pynetdicom");
    let output = dir.join("received");
    let port = free_port();
    let Some((scp, record)) = start_pynetdicom_storescp(&dir, &output, port, &[]) else {
        return;
    };
    let sent = run(
        "dimsum-storescu",
        &dir,
        dimsum_storescu(port, &["-aec", "PYNETDICOM"], &[&batch]),
        LARGE_RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    assert_summary(
        &sent.stderr,
        &format!("Summary: {BATCH_SIZE} instances: {BATCH_SIZE} stored,"),
        &context,
    );
    let records = support::wait_for_record(&record, "released", LOG_TIMEOUT);
    assert_eq!(
        records_of(&records, "accepted").len(),
        1,
        "the batch must use one association\n{context}"
    );
    let stores = records_of(&records, "c-store");
    assert_eq!(stores.len(), BATCH_SIZE, "{context}");
    assert!(stores.iter().all(|store| store["status"] == 0), "{context}");
    assert_datasets_equal(&dir, &batch, &output, &[], &context);
}

// -------------------------------------------------------------------------------------------
// A 300 MB multi-frame object: streamed, with a bounded peak RSS
// -------------------------------------------------------------------------------------------

fn multiframe() -> Option<TestFile> {
    static MULTIFRAME: OnceLock<Option<TestFile>> = OnceLock::new();
    MULTIFRAME
        .get_or_init(|| {
            let files = generate_test_data("multiframe", &["--multiframe-mb", MULTIFRAME_MB])?;
            files.into_iter().next()
        })
        .clone()
}

#[track_caller]
fn assert_rss_bounded(what: &str, peak_kib: Option<u64>, context: &str) {
    let peak = peak_kib.unwrap_or_else(|| panic!("no peak RSS measured for {what}\n{context}"));
    assert!(
        peak < STREAMING_RSS_LIMIT_KIB,
        "{what} peaked at {peak} KiB of RSS for a {MULTIFRAME_MB} MB object; the streaming \
         design bounds it under {STREAMING_RSS_LIMIT_KIB} KiB\n{context}"
    );
}

#[test]
fn multiframe_300mb_dimsum_to_dimsum_streams() {
    let Some(file) = multiframe() else {
        return;
    };
    let dir = scratch_dir("store-multiframe-dimsum");
    let output = dir.join("received");
    let port = free_port();
    let mut scp = start_dimsum_storescp(&dir, &output, port, &[]);
    let time_report = dir.join("storescu.time");
    let Some(command) = under_gnu_time(
        &dimsum_storescu(port, &["-pdu", "131072"], &[&file.path]),
        &time_report,
    ) else {
        return;
    };
    let sent = run("dimsum-storescu", &dir, command, LARGE_RUN_TIMEOUT);
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    let received = output.join(stored_name(&file.sop_instance_uid));
    assert!(wait_until(LOG_TIMEOUT, || received.is_file()), "{context}");
    assert_rss_bounded("dimsum storescp", scp.peak_rss_kib(), &context);
    assert_rss_bounded(
        "dimsum storescu",
        time_report_peak_rss_kib(&time_report),
        &context,
    );
    scp.terminate(STOP_TIMEOUT);
    assert_datasets_equal(
        &dir,
        &file.path,
        &received,
        &["--expect-ts", EXPLICIT_VR_LE],
        &context,
    );
    fs::remove_file(&received).ok();
}

#[test]
fn multiframe_300mb_dcmtk_to_dimsum_streams() {
    let Some(file) = multiframe() else {
        return;
    };
    let dir = scratch_dir("store-multiframe-dcmtk-to-dimsum");
    let output = dir.join("received");
    let port = free_port();
    let mut scp = start_dimsum_storescp(&dir, &output, port, &["-pdu", "131072"]);
    let Some(command) = dcmtk_storescu(port, "-xe", &["-pdu", "131072"], &[&file.path]) else {
        return;
    };
    let sent = run("dcmtk-storescu", &dir, command, LARGE_RUN_TIMEOUT);
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    let received = output.join(stored_name(&file.sop_instance_uid));
    assert!(wait_until(LOG_TIMEOUT, || received.is_file()), "{context}");
    assert_rss_bounded("dimsum storescp", scp.peak_rss_kib(), &context);
    scp.terminate(STOP_TIMEOUT);
    assert_datasets_equal(
        &dir,
        &file.path,
        &received,
        &["--expect-ts", EXPLICIT_VR_LE],
        &context,
    );
    fs::remove_file(&received).ok();
}

#[test]
fn multiframe_300mb_dimsum_to_dcmtk_streams() {
    let Some(file) = multiframe() else {
        return;
    };
    let dir = scratch_dir("store-multiframe-dimsum-to-dcmtk");
    let output = dir.join("received");
    let port = free_port();
    let Some(scp) = start_dcmtk_storescp_into(&dir, &output, port, &["+xa", "-pdu", "131072"])
    else {
        return;
    };
    let time_report = dir.join("storescu.time");
    let Some(command) = under_gnu_time(&dimsum_storescu(port, &[], &[&file.path]), &time_report)
    else {
        return;
    };
    let sent = run("dimsum-storescu", &dir, command, LARGE_RUN_TIMEOUT);
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    assert_rss_bounded(
        "dimsum storescu",
        time_report_peak_rss_kib(&time_report),
        &context,
    );
    let received = single_file_in(&output, &context);
    assert_datasets_equal(
        &dir,
        &file.path,
        &received,
        &["--expect-ts", EXPLICIT_VR_LE],
        &context,
    );
    fs::remove_file(&received).ok();
}

// -------------------------------------------------------------------------------------------
// Transfer syntax conversion by storescu
// -------------------------------------------------------------------------------------------

#[test]
fn storescu_converts_uncompressed_files_for_an_implicit_only_peer() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-convert-to-implicit");
    let output = dir.join("received");
    let port = free_port();
    let Some((scp, record)) =
        start_pynetdicom_storescp(&dir, &output, port, &["--accept-ts", IMPLICIT_VR_LE])
    else {
        return;
    };
    let explicit = standard_file(files, "syntax_explicit_le.dcm");
    let big_endian = standard_file(files, "syntax_explicit_be.dcm");
    let nested = standard_file(files, "nested_private.dcm");
    for file in [&explicit, &big_endian, &nested] {
        empty_folder(&output);
        let sent = run(
            "dimsum-storescu",
            &dir,
            dimsum_storescu(port, &[], &[&file.path]),
            RUN_TIMEOUT,
        );
        let context = format!("{}\n{}", sent.describe(), scp.describe());
        sent.assert_code(0);
        assert_stored_line(&sent.stderr, file, &context);
        let records = read_json_lines(&record);
        let store = records_of(&records, "c-store")
            .into_iter()
            .rev()
            .find(|store| store["sop_instance_uid"] == file.sop_instance_uid.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no C-STORE recorded for {}\n{context}", file.kind));
        assert_eq!(store["transfer_syntax"], IMPLICIT_VR_LE, "{context}");
        let received = PathBuf::from(store["path"].as_str().unwrap_or_default());
        assert_datasets_equal(
            &dir,
            &file.path,
            &received,
            &["--expect-ts", IMPLICIT_VR_LE],
            &context,
        );
    }
}

#[test]
fn storescu_fails_a_compressed_file_for_an_implicit_only_peer_and_carries_on() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-compressed-not-accepted");
    let output = dir.join("received");
    let port = free_port();
    let Some((scp, record)) =
        start_pynetdicom_storescp(&dir, &output, port, &["--accept-ts", IMPLICIT_VR_LE])
    else {
        return;
    };
    let small = standard_file(files, "small.dcm");
    let jpeg = standard_file(files, "jpeg.dcm");
    let ct = standard_file(files, "ct.dcm");
    let sent = run(
        "dimsum-storescu",
        &dir,
        dimsum_storescu(port, &[], &[&small.path, &jpeg.path, &ct.path]),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(1);
    assert_contains(
        &sent.stderr,
        &format!(
            "E: {}: transfer syntax {JPEG_BASELINE} not accepted by the peer and compressed data \
             cannot be converted",
            jpeg.path.display()
        ),
        &context,
    );
    assert_summary(
        &sent.stderr,
        "Summary: 3 instances: 2 stored, 0 with warnings, 1 failed, 0 skipped",
        &context,
    );
    assert_stored_line(&sent.stderr, &small, &context);
    assert_stored_line(&sent.stderr, &ct, &context);
    let records = read_json_lines(&record);
    let stored: Vec<&str> = records_of(&records, "c-store")
        .iter()
        .filter_map(|store| store["sop_instance_uid"].as_str())
        .collect();
    assert_eq!(
        stored,
        vec![
            small.sop_instance_uid.as_str(),
            ct.sop_instance_uid.as_str()
        ],
        "{context}"
    );
    for file in [&small, &ct] {
        let received = output.join(stored_name(&file.sop_instance_uid));
        assert_datasets_equal(
            &dir,
            &file.path,
            &received,
            &["--expect-ts", IMPLICIT_VR_LE],
            &context,
        );
    }
}

// -------------------------------------------------------------------------------------------
// storescp: sorting into folders, exec on reception
// -------------------------------------------------------------------------------------------

#[test]
fn storescp_sorts_on_study_uid_and_runs_the_reception_command() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-sort-exec");
    let output = dir.join("received");
    let exec_log = dir.join("exec.log");
    let exec = format!("echo \"#a #c #f #p #r\" >> '{}'", exec_log.display());
    let port = free_port();
    let scp = start_dimsum_storescp(
        &dir,
        &output,
        port,
        &["-aet", "SORTING_SCP", "--sort-on-study-uid", "-xcr", &exec],
    );
    let sent_files = [
        standard_file(files, "ct.dcm"),
        standard_file(files, "small.dcm"),
        standard_file(files, "nested_private.dcm"),
    ];
    let paths: Vec<&Path> = sent_files.iter().map(|file| file.path.as_path()).collect();
    let sent = run(
        "dimsum-storescu",
        &dir,
        dimsum_storescu(
            port,
            &["-aet", "SORTING_SCU", "-aec", "SORTING_SCP"],
            &paths,
        ),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    assert!(
        wait_until(LOG_TIMEOUT, || fs::read_to_string(&exec_log)
            .is_ok_and(|log| log.lines().count() == sent_files.len())),
        "the reception command did not run once per file; log: {:?}\n{context}",
        fs::read_to_string(&exec_log).unwrap_or_default()
    );
    let exec_lines = fs::read_to_string(&exec_log).unwrap_or_default();
    for file in &sent_files {
        let folder = output.join(&file.study_instance_uid);
        let expected = folder.join(stored_name(&file.sop_instance_uid));
        assert!(
            expected.is_file(),
            "{} is not under its study folder: {:#?}\n{context}",
            file.kind,
            files_under(&output)
        );
        assert_datasets_equal(&dir, &file.path, &expected, &[], &context);
        let canonical_folder = folder.canonicalize().expect("study folder exists");
        let line = exec_lines
            .lines()
            .find(|line| line.contains(&stored_name(&file.sop_instance_uid)))
            .unwrap_or_else(|| panic!("no exec line for {}: {exec_lines}\n{context}", file.kind));
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 5, "exec line {line:?}");
        assert_eq!(fields[0], "SORTING_SCU", "#a in {line:?}");
        assert_eq!(fields[1], "SORTING_SCP", "#c in {line:?}");
        assert_eq!(
            fields[2],
            stored_name(&file.sop_instance_uid),
            "#f in {line:?}"
        );
        assert_eq!(
            Path::new(fields[3]).canonicalize().ok(),
            Some(canonical_folder),
            "#p in {line:?}"
        );
        assert_eq!(fields[4], LOCALHOST, "#r in {line:?}");
    }
    assert_eq!(files_under(&output).len(), sent_files.len(), "{context}");
}

#[test]
fn storescp_sorts_on_series() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-sort-series");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &["--sort-on-series"]);
    let file = standard_file(files, "ct.dcm");
    let sent = run(
        "dimsum-storescu",
        &dir,
        dimsum_storescu(port, &[], &[&file.path]),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    let expected = output
        .join(&file.study_instance_uid)
        .join(&file.series_instance_uid)
        .join(stored_name(&file.sop_instance_uid));
    assert!(
        wait_until(LOG_TIMEOUT, || expected.is_file()),
        "{:#?}\n{context}",
        files_under(&output)
    );
    assert_datasets_equal(&dir, &file.path, &expected, &[], &context);
}

// -------------------------------------------------------------------------------------------
// pydicom's own test files
// -------------------------------------------------------------------------------------------

/// pydicom test files that may legitimately not come back equal, with the reason. Every
/// other storable file of the corpus must go through dimsum storescu -> dimsum storescp.
const CORPUS_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "MR_truncated.dcm",
        "truncated on purpose: Pixel Data claims 8192 bytes and the file holds 8130; refusing \
         it (0xA900) is right",
    ),
    (
        "rtplan_truncated.dcm",
        "truncated on purpose inside a sequence; refusing it (0xA900) is right",
    ),
    (
        "SC_rgb_jpeg.dcm",
        "its data set is encoded in implicit VR although its transfer syntax (JPEG Baseline) \
         is explicit VR: pydicom reads it only by guessing; refusing it (0xA900) is right",
    ),
];

#[test]
fn pydicom_test_files_round_trip_through_dimsum() {
    let Some(corpus) = generate_test_data("pydicom-corpus", &["--pydicom-corpus"]) else {
        return;
    };
    assert!(corpus.len() > 50, "only {} corpus files", corpus.len());
    let dir = scratch_dir("store-pydicom-corpus");
    let mut rounds: BTreeMap<u64, Vec<&TestFile>> = BTreeMap::new();
    for file in &corpus {
        rounds
            .entry(file.round.unwrap_or_default())
            .or_default()
            .push(file);
    }
    // file name -> why it failed
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut logs = String::new();
    for (round, files) in &rounds {
        let Some(folder) = files[0].path.parent() else {
            continue;
        };
        let output = dir.join(format!("received-{round}"));
        let port = free_port();
        let mut scp = start_dimsum_storescp(&dir, &output, port, &["--promiscuous"]);
        let sent = run(
            "dimsum-storescu",
            &dir,
            dimsum_storescu(port, &[], &[folder]),
            LARGE_RUN_TIMEOUT,
        );
        // failures only: a 0xB000 warning is legitimate for the corpus files whose meta names
        // another instance than their data set (the file is still stored and compared)
        for line in sent.stderr.lines() {
            if let Some(rest) = line.strip_prefix("E: ")
                && let Some(file) = files
                    .iter()
                    .find(|file| rest.starts_with(&*file.path.to_string_lossy()))
            {
                failures
                    .entry(file_name(&file.path))
                    .or_insert_with(|| format!("storescu: {line}"));
            }
        }
        scp.terminate(STOP_TIMEOUT);
        let comparison = compare_datasets(&dir, folder, &output, &["--expect-same-ts"]);
        for missing in comparison.report["missing"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let sent_path = missing["sent"].as_str().unwrap_or_default();
            failures
                .entry(file_name(Path::new(sent_path)))
                .or_insert_with(|| "not received".to_owned());
        }
        for difference in comparison.report["differences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let sent_path = difference["sent"].as_str().unwrap_or_default();
            failures
                .entry(file_name(Path::new(sent_path)))
                .or_insert_with(|| {
                    format!(
                        "differs at {}: {}",
                        difference["path"].as_str().unwrap_or_default(),
                        difference["what"].as_str().unwrap_or_default()
                    )
                });
        }
        for unreadable in comparison.report["unreadable"]
            .as_array()
            .into_iter()
            .flatten()
        {
            failures.insert(
                format!(
                    "(received) {}",
                    unreadable["file"].as_str().unwrap_or_default()
                ),
                unreadable["error"].as_str().unwrap_or_default().to_owned(),
            );
        }
        for extra in comparison.report["extra"].as_array().into_iter().flatten() {
            failures.insert(
                format!(
                    "(received) {}",
                    extra["received"].as_str().unwrap_or_default()
                ),
                "received but not sent".to_owned(),
            );
        }
        logs.push_str(&format!(
            "--- round {round} ---\n{}\n{}\n",
            sent.describe(),
            scp.describe()
        ));
    }
    for (name, reason) in CORPUS_EXCEPTIONS {
        assert!(
            corpus.iter().any(|file| file_name(&file.path) == *name),
            "the documented exception {name} ({reason}) is no longer in the corpus"
        );
        failures.remove(*name);
    }
    assert!(
        failures.is_empty(),
        "{} of {} pydicom test files did not round-trip:\n{}\n\nlogs in {}",
        failures.len(),
        corpus.len(),
        failures
            .iter()
            .map(|(name, why)| format!("  {name}: {why}"))
            .collect::<Vec<_>>()
            .join("\n"),
        dir.display()
    );
    fs::write(dir.join("logs.txt"), logs).ok();
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// -------------------------------------------------------------------------------------------
// dcmsend / dcmrecv
// -------------------------------------------------------------------------------------------

#[test]
fn dcmsend_to_dcmrecv_with_their_default_titles() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let dir = scratch_dir("store-dcmsend-dcmrecv");
    let to_send = dir.join("to-send");
    fs::create_dir_all(to_send.join("sub")).expect("create the folder to send");
    let sent_files = [
        standard_file(files, "ct.dcm"),
        standard_file(files, "small.dcm"),
        standard_file(files, "nested_private.dcm"),
    ];
    for (index, file) in sent_files.iter().enumerate() {
        // one file in a sub-folder: dcmsend always scans folders recursively
        let folder = if index == 0 {
            to_send.join("sub")
        } else {
            to_send.clone()
        };
        fs::copy(&file.path, folder.join(file_name(&file.path))).expect("copy a test file");
    }
    fs::write(to_send.join("notes.txt"), "not DICOM").expect("write a non-DICOM file");
    let output = dir.join("received");
    let port = free_port();
    let mut command = dimsum();
    command
        .args([
            "dcmrecv",
            "-v",
            "--bind",
            LOCALHOST,
            "--sort-on-study-uid",
            "-od",
        ])
        .arg(&output)
        .arg(port.to_string());
    let mut scp = support::ProcessGuard::spawn("dimsum-dcmrecv", &dir, command);
    scp.wait_for_text("I: Listening on", support::STARTUP_TIMEOUT);
    assert_contains(&scp.stderr(), "as DCMRECV", &scp.describe());
    let mut command = dimsum();
    command
        .args(["dcmsend", LOCALHOST, &port.to_string()])
        .arg(&to_send);
    let sent = run("dimsum-dcmsend", &dir, command, RUN_TIMEOUT);
    let context = format!("{}\n{}", sent.describe(), scp.describe());
    sent.assert_code(0);
    assert_contains(
        &sent.stderr,
        &format!(
            "W: skipping {}: not a DICOM Part 10 file (no DICM prefix at offset 128)",
            to_send.join("notes.txt").display()
        ),
        &context,
    );
    // the total counts the skipped file too (the spec leaves this open; dimsum counts every
    // file it considered)
    assert_summary(
        &sent.stderr,
        "Summary: 4 instances: 3 stored, 0 with warnings, 0 failed, 1 skipped",
        &context,
    );
    for file in &sent_files {
        let expected = output
            .join(&file.study_instance_uid)
            .join(stored_name(&file.sop_instance_uid));
        assert!(
            wait_until(LOG_TIMEOUT, || expected.is_file()),
            "{} not under its study folder: {:#?}\n{context}",
            file.kind,
            files_under(&output)
        );
    }
    scp.wait_for_text("from DCMSEND", LOG_TIMEOUT);
    assert_datasets_equal(
        &dir,
        &to_send,
        &output,
        &["--expect-source-ae", "DCMSEND"],
        &context,
    );
}
