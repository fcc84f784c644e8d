//! C-ECHO interoperability: `dimsum echoscu` / `dimsum echoscp` against DCMTK and pynetdicom,
//! both directions, asserting on what was negotiated and transferred (AE titles, max PDU,
//! implementation class UID / version name, message ids, rejection reasons).
//!
//! A missing peer skips the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS`
//! is set. Install the peers with `scripts/setup-peers`.

mod support;

use dimsum_ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLEMENTATION_CLASS_UID};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use support::{
    Finished, LOCALHOST, LOG_TIMEOUT, RUN_TIMEOUT, STOP_TIMEOUT, VERIFICATION, assert_contains,
    dcmtk, dcmtk_field_values, dimsum, free_port, lines_starting_with, pynetdicom, records_of, run,
    scratch_dir, start_dimsum_echoscp, start_pynetdicom_echoscp, start_storescp, wait_for_record,
};

/// DCMTK's implementation class UID root (OFFIS).
const DCMTK_IMPLEMENTATION_UID_ROOT: &str = "1.2.276.0.7230010.3";
/// pynetdicom's implementation class UID root.
const PYNETDICOM_IMPLEMENTATION_UID_ROOT: &str = "1.2.826.0.1.3680043.9.3811";
/// CT Image Storage: a SOP class an echo SCP does not support.
const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// PS3.8 Table 9-18: presentation context result "abstract-syntax-not-supported".
const ABSTRACT_SYNTAX_NOT_SUPPORTED: i64 = 3;
/// Prefix of the implementation version name dimsum announces.
const DIMSUM_VERSION_PREFIX: &str = "DIMSUM_";

const ECHO_COUNT: u32 = 3;

/// `dimsum echoscu` calling 127.0.0.1:`port` with -v, bounded timeouts and `args`.
fn dimsum_echoscu(port: u16, args: &[&str]) -> Command {
    let mut command = dimsum();
    command
        .args(["echoscu", "-v", "-to", "10", "-ta", "10", "-td", "10"])
        .args(args)
        .args([LOCALHOST, &port.to_string()]);
    command
}

/// Asserts `dimsum echoscu -v` logged a success response for message ids 1..=count.
#[track_caller]
fn assert_echo_responses(echo: &Finished, count: u32) {
    for message_id in 1..=count {
        assert_contains(
            &echo.stderr,
            &format!("I: Received Echo Response (MsgID {message_id}): 0x0000 (success)"),
            &echo.describe(),
        );
    }
    let responses = lines_starting_with(&echo.stderr, "I: Received Echo Response");
    assert_eq!(
        responses.len(),
        count as usize,
        "echo responses\n{}",
        echo.describe()
    );
}

fn as_str(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

// -------------------------------------------------------------------------------------------
// dimsum echoscu -> DCMTK storescp
// -------------------------------------------------------------------------------------------

fn dimsum_echoscu_to_dcmtk_storescp(label: &str, max_pdu: u32) {
    let dir = scratch_dir(label);
    let port = free_port();
    let pdu = max_pdu.to_string();
    let Some(mut storescp) = start_storescp(&dir, port, &["-aet", "DCMTK_SCP", "-pdu", &pdu])
    else {
        return;
    };

    let echo = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(
            port,
            &[
                "-aet",
                "DIMSUM_SCU",
                "-aec",
                "DCMTK_SCP",
                "-pdu",
                &pdu,
                "--repeat",
                "3",
            ],
        ),
        RUN_TIMEOUT,
    );
    echo.assert_code(0);
    let our_log = echo.stderr.clone();
    assert_echo_responses(&echo, ECHO_COUNT);
    assert_contains(
        &our_log,
        &format!("I: Requesting association with DCMTK_SCP@{LOCALHOST}:{port} as DIMSUM_SCU"),
        &echo.describe(),
    );
    assert_contains(
        &our_log,
        &format!(
            "I: Association accepted: peer max PDU {max_pdu}, peer implementation {DCMTK_IMPLEMENTATION_UID_ROOT}"
        ),
        &echo.describe(),
    );
    assert_contains(&our_log, "I: Association released", &echo.describe());

    storescp.wait_for_text("Association Release", LOG_TIMEOUT);
    let log = storescp.output();
    let context = storescp.describe();
    assert!(
        dcmtk_field_values(&log, "Calling Application Name").contains(&"DIMSUM_SCU".to_owned()),
        "storescp did not see our calling AE\n{context}"
    );
    assert!(
        dcmtk_field_values(&log, "Called Application Name").contains(&"DCMTK_SCP".to_owned()),
        "storescp did not see our called AE\n{context}"
    );
    assert!(
        dcmtk_field_values(&log, "Their Implementation Class UID")
            .contains(&IMPLEMENTATION_CLASS_UID.to_owned()),
        "storescp did not see our implementation class UID\n{context}"
    );
    assert!(
        dcmtk_field_values(&log, "Their Implementation Version Name")
            .iter()
            .any(|name| name.starts_with(DIMSUM_VERSION_PREFIX)),
        "storescp did not see our implementation version name\n{context}"
    );
    assert!(
        dcmtk_field_values(&log, "Their Max PDU Receive Size").contains(&pdu),
        "storescp did not see our max PDU {max_pdu}\n{context}"
    );
    let echo_requests: Vec<String> = dcmtk_field_values(&log, "Message Type")
        .into_iter()
        .filter(|message_type| message_type == "C-ECHO RQ")
        .collect();
    assert_eq!(
        echo_requests.len(),
        3,
        "C-ECHO RQs seen by storescp\n{context}"
    );
    assert_eq!(
        dcmtk_field_values(&log, "Message ID"),
        ["1", "2", "3"],
        "message ids seen by storescp\n{context}"
    );
    storescp.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_echoscu_to_dcmtk_storescp_max_pdu_4096() {
    dimsum_echoscu_to_dcmtk_storescp("echo-dimsum-scu-to-storescp-4096", 4096);
}

#[test]
fn dimsum_echoscu_to_dcmtk_storescp_max_pdu_131072() {
    dimsum_echoscu_to_dcmtk_storescp("echo-dimsum-scu-to-storescp-131072", 131_072);
}

// -------------------------------------------------------------------------------------------
// dimsum echoscu -> pynetdicom echoscp
// -------------------------------------------------------------------------------------------

fn dimsum_echoscu_to_pynetdicom_echoscp(label: &str, max_pdu: u32) {
    let dir = scratch_dir(label);
    let port = free_port();
    let pdu = max_pdu.to_string();
    let Some((mut server, record)) = start_pynetdicom_echoscp(
        &dir,
        port,
        &["--ae-title", "PYNETDICOM_SCP", "--max-pdu", &pdu],
    ) else {
        return;
    };

    let echo = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(
            port,
            &[
                "-aet",
                "DIMSUM_SCU",
                "-aec",
                "PYNETDICOM_SCP",
                "-pdu",
                &pdu,
                "-r",
                "3",
            ],
        ),
        RUN_TIMEOUT,
    );
    echo.assert_code(0);
    assert_echo_responses(&echo, ECHO_COUNT);
    assert_contains(
        &echo.stderr,
        &format!(
            "I: Association accepted: peer max PDU {max_pdu}, peer implementation {PYNETDICOM_IMPLEMENTATION_UID_ROOT}"
        ),
        &echo.describe(),
    );

    let records = wait_for_record(&record, "released", LOG_TIMEOUT);
    let accepted = records_of(&records, "accepted");
    assert_eq!(accepted.len(), 1, "associations: {records:#?}");
    let association = accepted[0];
    assert_eq!(association["calling_ae"], "DIMSUM_SCU", "{association:#}");
    assert_eq!(
        association["called_ae"], "PYNETDICOM_SCP",
        "{association:#}"
    );
    assert_eq!(
        association["requestor_max_pdu"],
        json!(max_pdu),
        "{association:#}"
    );
    assert_eq!(
        association["requestor_implementation_class_uid"], IMPLEMENTATION_CLASS_UID,
        "{association:#}"
    );
    assert!(
        as_str(&association["requestor_implementation_version_name"])
            .starts_with(DIMSUM_VERSION_PREFIX),
        "{association:#}"
    );
    let contexts = association["accepted_contexts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        contexts
            .iter()
            .any(|cx| cx["abstract_syntax"] == VERIFICATION),
        "Verification context accepted: {association:#}"
    );
    let echoes = records_of(&records, "c-echo");
    let message_ids: Vec<&Value> = echoes.iter().map(|echo| &echo["message_id"]).collect();
    assert_eq!(
        message_ids,
        [&json!(1), &json!(2), &json!(3)],
        "{records:#?}"
    );
    assert!(
        echoes.iter().all(|echo| echo["calling_ae"] == "DIMSUM_SCU"),
        "{records:#?}"
    );
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_echoscu_to_pynetdicom_echoscp_max_pdu_4096() {
    dimsum_echoscu_to_pynetdicom_echoscp("echo-dimsum-scu-to-pynetdicom-4096", 4096);
}

#[test]
fn dimsum_echoscu_to_pynetdicom_echoscp_max_pdu_1048576() {
    dimsum_echoscu_to_pynetdicom_echoscp("echo-dimsum-scu-to-pynetdicom-1048576", 1_048_576);
}

// -------------------------------------------------------------------------------------------
// DCMTK echoscu -> dimsum echoscp
// -------------------------------------------------------------------------------------------

fn dcmtk_echoscu_to_dimsum_echoscp(label: &str, max_pdu: u32) {
    let dir = scratch_dir(label);
    let port = free_port();
    let pdu = max_pdu.to_string();
    let Some(mut echoscu) = dcmtk("echoscu") else {
        return;
    };
    let mut server = start_dimsum_echoscp(&dir, port, &["-aet", "DIMSUM_SCP", "-pdu", &pdu]);

    echoscu
        .args([
            "-d",
            "-aet",
            "DCMTK_SCU",
            "-aec",
            "DIMSUM_SCP",
            "-pdu",
            &pdu,
        ])
        .args(["--repeat", "3", "-to", "10", "-ta", "10", "-td", "10"])
        .args([LOCALHOST, &port.to_string()]);
    let echo = run("dcmtk-echoscu", &dir, echoscu, RUN_TIMEOUT);
    echo.assert_code(0);
    let dcmtk_log = echo.output();
    let context = echo.describe();
    let successes = lines_starting_with(&dcmtk_log, "I: Received Echo Response (Success)");
    assert_eq!(successes.len(), 3, "successful echoes\n{context}");
    // The A-ASSOCIATE-AC dump shows what we announced.
    assert!(
        dcmtk_field_values(&dcmtk_log, "Their Max PDU Receive Size").contains(&pdu),
        "DCMTK did not see our max PDU {max_pdu}\n{context}"
    );
    assert!(
        dcmtk_field_values(&dcmtk_log, "Their Implementation Class UID")
            .contains(&IMPLEMENTATION_CLASS_UID.to_owned()),
        "DCMTK did not see our implementation class UID\n{context}"
    );

    server.wait_for_text("I: Association released by DCMTK_SCU", LOG_TIMEOUT);
    let our_log = server.stderr();
    let context = server.describe();
    let accepted = lines_starting_with(
        &our_log,
        &format!("I: Association accepted from DCMTK_SCU@{LOCALHOST}:"),
    );
    assert_eq!(accepted.len(), 1, "accepted associations\n{context}");
    assert_contains(
        accepted[0],
        &format!(
            " to DIMSUM_SCP: peer max PDU {max_pdu}, peer implementation {DCMTK_IMPLEMENTATION_UID_ROOT}"
        ),
        &context,
    );
    for message_id in 1..=ECHO_COUNT {
        assert_contains(
            &our_log,
            &format!("I: Received Echo Request (MsgID {message_id}) from DCMTK_SCU"),
            &context,
        );
    }
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dcmtk_echoscu_to_dimsum_echoscp_max_pdu_4096() {
    dcmtk_echoscu_to_dimsum_echoscp("echo-dcmtk-scu-to-dimsum-4096", 4096);
}

#[test]
fn dcmtk_echoscu_to_dimsum_echoscp_max_pdu_131072() {
    dcmtk_echoscu_to_dimsum_echoscp("echo-dcmtk-scu-to-dimsum-131072", 131_072);
}

// -------------------------------------------------------------------------------------------
// pynetdicom echoscu -> dimsum echoscp
// -------------------------------------------------------------------------------------------

/// Runs `tests/peers/pynetdicom_echoscu.py` against 127.0.0.1:`port`; `None` if pynetdicom is
/// missing.
fn pynetdicom_echoscu(dir: &Path, port: u16, args: &[&str]) -> Option<Finished> {
    let mut command = pynetdicom("pynetdicom_echoscu.py")?;
    command
        .args([LOCALHOST, &port.to_string()])
        .args(["--timeout", "10"])
        .args(args);
    Some(run("pynetdicom-echoscu", dir, command, RUN_TIMEOUT))
}

fn pynetdicom_echoscu_to_dimsum_echoscp(label: &str, max_pdu: u32) {
    let dir = scratch_dir(label);
    let port = free_port();
    let pdu = max_pdu.to_string();
    let mut server = start_dimsum_echoscp(&dir, port, &["-aet", "DIMSUM_SCP", "-pdu", &pdu]);
    let Some(echo) = pynetdicom_echoscu(
        &dir,
        port,
        &[
            "--calling",
            "PYNETDICOM_SCU",
            "--called",
            "DIMSUM_SCP",
            "--max-pdu",
            "65536",
            "--repeat",
            "3",
        ],
    ) else {
        return;
    };
    echo.assert_code(0);
    let result = echo.json();
    assert_eq!(result["established"], true, "{result:#}");
    assert_eq!(result["statuses"], json!([0, 0, 0]), "{result:#}");
    assert_eq!(result["acceptor_max_pdu"], json!(max_pdu), "{result:#}");
    assert_eq!(result["acceptor_ae_title"], "DIMSUM_SCP", "{result:#}");
    assert_eq!(
        result["acceptor_implementation_class_uid"], IMPLEMENTATION_CLASS_UID,
        "{result:#}"
    );
    assert!(
        as_str(&result["acceptor_implementation_version_name"]).starts_with(DIMSUM_VERSION_PREFIX),
        "{result:#}"
    );
    // pynetdicom proposes explicit LE, implicit LE, explicit BE; ours prefers explicit LE.
    assert_eq!(
        result["accepted_contexts"],
        json!([{
            "context_id": 1,
            "abstract_syntax": VERIFICATION,
            "transfer_syntax": EXPLICIT_VR_LITTLE_ENDIAN,
            "result": 0,
        }]),
        "{result:#}"
    );

    server.wait_for_text(
        "I: Received Echo Request (MsgID 3) from PYNETDICOM_SCU",
        LOG_TIMEOUT,
    );
    let our_log = server.stderr();
    let accepted = lines_starting_with(
        &our_log,
        &format!("I: Association accepted from PYNETDICOM_SCU@{LOCALHOST}:"),
    );
    assert_eq!(
        accepted.len(),
        1,
        "accepted associations\n{}",
        server.describe()
    );
    assert_contains(
        accepted[0],
        &format!(
            " to DIMSUM_SCP: peer max PDU 65536, peer implementation {PYNETDICOM_IMPLEMENTATION_UID_ROOT}"
        ),
        &server.describe(),
    );
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn pynetdicom_echoscu_to_dimsum_echoscp_max_pdu_4096() {
    pynetdicom_echoscu_to_dimsum_echoscp("echo-pynetdicom-scu-to-dimsum-4096", 4096);
}

#[test]
fn pynetdicom_echoscu_to_dimsum_echoscp_max_pdu_1048576() {
    pynetdicom_echoscu_to_dimsum_echoscp("echo-pynetdicom-scu-to-dimsum-1048576", 1_048_576);
}

// -------------------------------------------------------------------------------------------
// Rejections
// -------------------------------------------------------------------------------------------

#[test]
fn dimsum_echoscu_with_wrong_called_ae_is_rejected_by_pynetdicom() {
    let dir = scratch_dir("echo-reject-called-ae-by-pynetdicom");
    let port = free_port();
    let Some((mut server, record)) = start_pynetdicom_echoscp(
        &dir,
        port,
        &["--ae-title", "PYNETDICOM_SCP", "--require-called-aet"],
    ) else {
        return;
    };

    let rejected = run(
        "dimsum-echoscu-wrong-called",
        &dir,
        dimsum_echoscu(port, &["-aet", "DIMSUM_SCU", "-aec", "NOT_THE_SCP"]),
        RUN_TIMEOUT,
    );
    rejected.assert_code(3);
    assert_contains(
        &rejected.stderr,
        &format!(
            "E: association rejected by {LOCALHOST}:{port}: rejected-permanent by service-user: called AE title not recognized"
        ),
        &rejected.describe(),
    );
    let records = wait_for_record(&record, "rejected", LOG_TIMEOUT);
    let rejection = records_of(&records, "rejected")[0];
    assert_eq!(rejection["called_ae"], "NOT_THE_SCP", "{rejection:#}");
    assert_eq!(rejection["calling_ae"], "DIMSUM_SCU", "{rejection:#}");
    // PS3.8 Table 9-21: rejected-permanent (1), service-user (1), called AE not recognized (7)
    assert_eq!(
        (
            &rejection["result"],
            &rejection["source"],
            &rejection["reason"]
        ),
        (&json!(1), &json!(1), &json!(7)),
        "{rejection:#}"
    );

    // Control: the right called AE title is accepted by the same server.
    let accepted = run(
        "dimsum-echoscu-right-called",
        &dir,
        dimsum_echoscu(port, &["-aet", "DIMSUM_SCU", "-aec", "PYNETDICOM_SCP"]),
        RUN_TIMEOUT,
    );
    accepted.assert_code(0);
    assert_echo_responses(&accepted, 1);
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dcmtk_echoscu_with_wrong_called_ae_is_rejected_by_dimsum() {
    let dir = scratch_dir("echo-reject-called-ae-by-dimsum");
    let port = free_port();
    let Some(mut wrong_called) = dcmtk("echoscu") else {
        return;
    };
    let Some(mut right_called) = dcmtk("echoscu") else {
        return;
    };
    let mut server =
        start_dimsum_echoscp(&dir, port, &["-aet", "DIMSUM_SCP", "--require-called-aet"]);

    wrong_called
        .args([
            "-v",
            "-aet",
            "DCMTK_SCU",
            "-aec",
            "NOT_THE_SCP",
            "-to",
            "10",
            "-ta",
            "10",
        ])
        .args([LOCALHOST, &port.to_string()]);
    let rejected = run(
        "dcmtk-echoscu-wrong-called",
        &dir,
        wrong_called,
        RUN_TIMEOUT,
    );
    assert_ne!(rejected.code(), Some(0), "{}", rejected.describe());
    let dcmtk_log = rejected.output();
    assert_contains(&dcmtk_log, "Association Rejected", &rejected.describe());
    assert_contains(
        &dcmtk_log,
        "Result: Rejected Permanent, Source: Service User",
        &rejected.describe(),
    );
    assert_contains(
        &dcmtk_log,
        "Reason: Called AE Title Not Recognized",
        &rejected.describe(),
    );

    server.wait_for_text("I: Association rejected from DCMTK_SCU@", LOG_TIMEOUT);
    let our_log = server.stderr();
    let rejections = lines_starting_with(
        &our_log,
        &format!("I: Association rejected from DCMTK_SCU@{LOCALHOST}:"),
    );
    assert_eq!(rejections.len(), 1, "rejections\n{}", server.describe());
    assert!(
        rejections[0].to_lowercase().contains("called ae title"),
        "rejection reason names the called AE title\n{}",
        server.describe()
    );

    // Control: the right called AE title is accepted by the same server.
    right_called
        .args([
            "-v",
            "-aet",
            "DCMTK_SCU",
            "-aec",
            "DIMSUM_SCP",
            "-to",
            "10",
            "-ta",
            "10",
        ])
        .args([LOCALHOST, &port.to_string()]);
    let accepted = run(
        "dcmtk-echoscu-right-called",
        &dir,
        right_called,
        RUN_TIMEOUT,
    );
    accepted.assert_code(0);
    assert_contains(
        &accepted.output(),
        "I: Received Echo Response (Success)",
        &accepted.describe(),
    );
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn pynetdicom_proposing_ct_storage_to_dimsum_gets_abstract_syntax_not_supported() {
    let dir = scratch_dir("echo-reject-abstract-syntax-by-dimsum");
    let port = free_port();
    let mut server = start_dimsum_echoscp(&dir, port, &["-aet", "DIMSUM_SCP"]);

    // Only CT Image Storage: the association is accepted with no usable context.
    let Some(ct_only) = pynetdicom_echoscu(
        &dir,
        port,
        &[
            "--called",
            "DIMSUM_SCP",
            "--abstract-syntax",
            CT_IMAGE_STORAGE,
        ],
    ) else {
        return;
    };
    let result = ct_only.json();
    assert_eq!(result["established"], false, "{result:#}");
    assert_eq!(result["accepted_contexts"], json!([]), "{result:#}");
    assert_eq!(
        result["rejected_contexts"],
        json!([{
            "context_id": 1,
            "abstract_syntax": CT_IMAGE_STORAGE,
            "result": ABSTRACT_SYNTAX_NOT_SUPPORTED,
        }]),
        "{result:#}"
    );

    // Verification next to CT: CT is rejected, Verification works on the same association.
    let Some(mixed) = pynetdicom_echoscu(
        &dir,
        port,
        &[
            "--called",
            "DIMSUM_SCP",
            "--abstract-syntax",
            VERIFICATION,
            "--abstract-syntax",
            CT_IMAGE_STORAGE,
        ],
    ) else {
        return;
    };
    mixed.assert_code(0);
    let result = mixed.json();
    assert_eq!(result["statuses"], json!([0]), "{result:#}");
    assert_eq!(
        result["rejected_contexts"],
        json!([{
            "context_id": 3,
            "abstract_syntax": CT_IMAGE_STORAGE,
            "result": ABSTRACT_SYNTAX_NOT_SUPPORTED,
        }]),
        "{result:#}"
    );
    assert_eq!(
        result["accepted_contexts"][0]["context_id"], 1,
        "{result:#}"
    );
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_echoscu_with_calling_ae_not_allowed_is_rejected_by_dimsum_echoscp() {
    let dir = scratch_dir("echo-reject-calling-ae-by-dimsum");
    let port = free_port();
    let mut server = start_dimsum_echoscp(
        &dir,
        port,
        &["-aet", "DIMSUM_SCP", "--allow-calling", "ALLOWED_SCU"],
    );

    let rejected = run(
        "dimsum-echoscu-not-allowed",
        &dir,
        dimsum_echoscu(port, &["-aet", "STRANGER_SCU", "-aec", "DIMSUM_SCP"]),
        RUN_TIMEOUT,
    );
    rejected.assert_code(3);
    assert_contains(
        &rejected.stderr,
        &format!(
            "E: association rejected by {LOCALHOST}:{port}: rejected-permanent by service-user: "
        ),
        &rejected.describe(),
    );
    assert_contains(
        &rejected.stderr,
        "calling AE title not recognized",
        &rejected.describe(),
    );
    server.wait_for_text("I: Association rejected from STRANGER_SCU@", LOG_TIMEOUT);

    // Control: the allowed calling AE title gets through.
    let accepted = run(
        "dimsum-echoscu-allowed",
        &dir,
        dimsum_echoscu(port, &["-aet", "ALLOWED_SCU", "-aec", "DIMSUM_SCP"]),
        RUN_TIMEOUT,
    );
    accepted.assert_code(0);
    assert_echo_responses(&accepted, 1);
    server.wait_for_text(
        "I: Received Echo Request (MsgID 1) from ALLOWED_SCU",
        LOG_TIMEOUT,
    );
    server.terminate(STOP_TIMEOUT);
}

// -------------------------------------------------------------------------------------------
// User identity
// -------------------------------------------------------------------------------------------

#[test]
fn pynetdicom_echoscu_with_user_identity_is_accepted_by_dimsum_echoscp() {
    let dir = scratch_dir("echo-user-identity-to-dimsum");
    let port = free_port();
    let mut server = start_dimsum_echoscp(&dir, port, &["-aet", "DIMSUM_SCP"]);
    let Some(echo) = pynetdicom_echoscu(
        &dir,
        port,
        &[
            "--called",
            "DIMSUM_SCP",
            "--username",
            "alice",
            "--password",
            "secret",
            "--positive-response",
        ],
    ) else {
        return;
    };
    echo.assert_code(0);
    let result = echo.json();
    assert_eq!(result["established"], true, "{result:#}");
    assert_eq!(result["statuses"], json!([0]), "{result:#}");
    // Identity is ignored unless configured: no User Identity response item (PS3.7 §D.3.3.7).
    assert_eq!(result["user_identity_response"], Value::Null, "{result:#}");
    server.terminate(STOP_TIMEOUT);
}
