//! TLS (PS3.15 Annex B) interoperability of the dimsum tools against DCMTK and pynetdicom, both
//! directions, with certificates from one test CA: echoes and stores go through (the stored
//! data set is compared with the one sent), and a certificate the other side does not trust is
//! refused on either side, with a clear error, never a hang, and nothing stored.
//!
//! A missing peer skips the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS` is
//! set. Install the peers with `scripts/setup-peers`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::tls::{TlsFiles, generate_tls_files};
use support::{
    LOCALHOST, LOG_TIMEOUT, RUN_TIMEOUT, STOP_TIMEOUT, assert_contains, assert_datasets_equal,
    dcmtk, dimsum, files_under, free_port, lines_starting_with, pynetdicom, records_of, run,
    scratch_dir, standard_file, standard_test_data, start_dcmtk_storescp_into,
    start_dimsum_echoscp, start_dimsum_storescp, wait_for_record,
};

/// The exit status of the dimsum tools for a connection that could not be made (docs/tools.md).
const EXIT_CONNECTION: i32 = 4;

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `+tls KEY CERT +cf CA`: our identity and the CA we trust.
fn tls_args<'a>(key: &'a Path, cert: &'a Path, ca: &'a Path) -> Vec<&'a str> {
    vec!["+tls", path(key), path(cert), "+cf", path(ca)]
}

/// `dimsum echoscu -v` to 127.0.0.1:`port` with bounded timeouts and `args`.
fn dimsum_echoscu(port: u16, args: &[&str]) -> Command {
    let mut command = dimsum();
    command
        .args(["echoscu", "-v", "-to", "10", "-ta", "10", "-td", "10"])
        .args(args)
        .args([LOCALHOST, &port.to_string()]);
    command
}

fn tls_material(dir: &Path) -> TlsFiles {
    let folder = dir.join("tls");
    std::fs::create_dir_all(&folder).expect("create the TLS folder");
    generate_tls_files(&folder)
}

/// The standard small test file (a Secondary Capture in Explicit VR LE).
fn small_file() -> Option<PathBuf> {
    let files = standard_test_data()?;
    Some(standard_file(files, "small.dcm").path)
}

// -------------------------------------------------------------------------------------------
// dimsum client → DCMTK server
// -------------------------------------------------------------------------------------------

#[test]
fn dimsum_echoscu_over_tls_to_dcmtk_storescp() {
    let dir = scratch_dir("tls-dimsum-echoscu-to-dcmtk");
    let tls = tls_material(&dir);
    let port = free_port();
    let server_args = tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert);
    let Some(mut server) = start_dcmtk_storescp_into(&dir, &dir.join("in"), port, &server_args)
    else {
        return;
    };
    let client_args = tls_args(&tls.client_key, &tls.client_cert, &tls.ca_cert);
    let echo = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(port, &client_args),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", echo.describe(), server.describe());
    echo.assert_code(0);
    assert_contains(
        &echo.stderr,
        "I: Received Echo Response (MsgID 1): 0x0000 (success)",
        &context,
    );
    assert_contains(&echo.stderr, ", TLS", &context);
    server.wait_for_text("Received Echo Request", LOG_TIMEOUT);
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_storescu_over_tls_to_dcmtk_storescp() {
    let Some(file) = small_file() else {
        return;
    };
    let dir = scratch_dir("tls-dimsum-storescu-to-dcmtk");
    let tls = tls_material(&dir);
    let port = free_port();
    let output = dir.join("in");
    let mut server_args = tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert);
    server_args.push("+xa");
    let Some(mut server) = start_dcmtk_storescp_into(&dir, &output, port, &server_args) else {
        return;
    };
    let mut command = dimsum();
    command
        .args(["storescu", "-v", "--no-progress", "-to", "10", "-ta", "10"])
        .args(tls_args(&tls.client_key, &tls.client_cert, &tls.ca_cert))
        .args([LOCALHOST, &port.to_string()])
        .arg(&file);
    let sent = run("dimsum-storescu", &dir, command, RUN_TIMEOUT);
    let context = format!("{}\n{}", sent.describe(), server.describe());
    sent.assert_code(0);
    assert_contains(
        &sent.stderr,
        "Summary: 1 instances: 1 stored, 0 with warnings, 0 failed, 0 skipped",
        &context,
    );
    let received = files_under(&output);
    assert_eq!(received.len(), 1, "files received\n{context}");
    assert_datasets_equal(&dir, &file, &received[0], &[], &context);
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_refuses_a_dcmtk_server_showing_a_certificate_it_does_not_trust() {
    let dir = scratch_dir("tls-dimsum-refuses-wrong-server");
    let tls = tls_material(&dir);
    let port = free_port();
    let server_args = tls_args(&tls.wrong_key, &tls.wrong_cert, &tls.ca_cert);
    let Some(mut server) = start_dcmtk_storescp_into(&dir, &dir.join("in"), port, &server_args)
    else {
        return;
    };
    let client_args = tls_args(&tls.client_key, &tls.client_cert, &tls.ca_cert);
    let echo = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(port, &client_args),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", echo.describe(), server.describe());
    echo.assert_code(EXIT_CONNECTION);
    assert_contains(&echo.stderr, "TLS handshake", &context);
    assert_contains(&echo.stderr, "certificate", &context);
    assert!(
        lines_starting_with(&echo.stderr, "I: Received Echo Response").is_empty(),
        "an echo went through\n{context}"
    );
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dcmtk_storescp_refuses_dimsum_showing_a_certificate_it_does_not_trust() {
    let dir = scratch_dir("tls-dcmtk-refuses-wrong-client");
    let tls = tls_material(&dir);
    let port = free_port();
    // DCMTK's storescp requires a client certificate that leads to +cf by default (-rc).
    let server_args = tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert);
    let output = dir.join("in");
    let Some(mut server) = start_dcmtk_storescp_into(&dir, &output, port, &server_args) else {
        return;
    };
    let client_args = tls_args(&tls.wrong_key, &tls.wrong_cert, &tls.ca_cert);
    let echo = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(port, &client_args),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", echo.describe(), server.describe());
    echo.assert_code(EXIT_CONNECTION);
    assert!(
        lines_starting_with(&echo.stderr, "I: Received Echo Response").is_empty(),
        "an echo went through\n{context}"
    );
    server.terminate(STOP_TIMEOUT);
    assert_contains(&server.output(), "certificate", &context);
    assert!(files_under(&output).is_empty(), "something was stored");
}

#[test]
fn dimsum_says_why_a_server_refused_its_certificate() {
    let dir = scratch_dir("tls-dimsum-told-why-refused");
    let tls = tls_material(&dir);
    let port = free_port();
    let server_args = tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert);
    let Some(mut server) = start_dcmtk_storescp_into(&dir, &dir.join("in"), port, &server_args)
    else {
        return;
    };
    let client_args = tls_args(&tls.wrong_key, &tls.wrong_cert, &tls.ca_cert);
    let echo = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(port, &client_args),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", echo.describe(), server.describe());
    echo.assert_code(EXIT_CONNECTION);
    // The server's alert says why (unknown CA / bad certificate): so must we
    // (`dimsum_net::tls::explain` has the words: "the peer refused our certificate").
    assert_contains(&echo.stderr, "the peer refused our certificate", &context);
    server.terminate(STOP_TIMEOUT);
}

// -------------------------------------------------------------------------------------------
// DCMTK client → dimsum server
// -------------------------------------------------------------------------------------------

#[test]
fn dcmtk_echoscu_and_storescu_over_tls_to_dimsum_storescp() {
    let Some(file) = small_file() else {
        return;
    };
    let dir = scratch_dir("tls-dcmtk-to-dimsum-storescp");
    let tls = tls_material(&dir);
    let port = free_port();
    let output = dir.join("in");
    let mut server = start_dimsum_storescp(
        &dir,
        &output,
        port,
        &tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert),
    );
    let Some(mut echoscu) = dcmtk("echoscu") else {
        return;
    };
    echoscu
        .args(tls_args(&tls.client_key, &tls.client_cert, &tls.ca_cert))
        .args(["-aec", "STORESCP", LOCALHOST, &port.to_string()]);
    let echo = run("dcmtk-echoscu", &dir, echoscu, RUN_TIMEOUT);
    echo.assert_code(0);
    let Some(mut storescu) = dcmtk("storescu") else {
        return;
    };
    storescu
        .args(tls_args(&tls.client_key, &tls.client_cert, &tls.ca_cert))
        .args(["-aec", "STORESCP", LOCALHOST, &port.to_string()])
        .arg(&file);
    let sent = run("dcmtk-storescu", &dir, storescu, RUN_TIMEOUT);
    let context = format!(
        "{}\n{}\n{}",
        echo.describe(),
        sent.describe(),
        server.describe()
    );
    sent.assert_code(0);
    server.wait_for_text("I: Stored ", LOG_TIMEOUT);
    let log = server.stderr();
    assert_contains(&log, "Received Echo Request", &context);
    let accepted = lines_starting_with(&log, "I: Association accepted from");
    assert_eq!(accepted.len(), 2, "associations\n{context}");
    assert!(
        accepted.iter().all(|line| line.ends_with(", TLS")),
        "{context}"
    );
    let received = files_under(&output);
    assert_eq!(received.len(), 1, "files received\n{context}");
    assert_datasets_equal(&dir, &file, &received[0], &[], &context);
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_storescp_requiring_a_client_certificate_refuses_anonymous_and_untrusted_clients() {
    let Some(file) = small_file() else {
        return;
    };
    let dir = scratch_dir("tls-dimsum-refuses-clients");
    let tls = tls_material(&dir);
    let port = free_port();
    let output = dir.join("in");
    let mut server_args = tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert);
    server_args.push("-rc");
    let mut server = start_dimsum_storescp(&dir, &output, port, &server_args);
    let client_sets = [
        ("anonymous", vec!["+tla", "+cf", path(&tls.ca_cert)]),
        (
            "untrusted",
            tls_args(&tls.wrong_key, &tls.wrong_cert, &tls.ca_cert),
        ),
    ];
    for (label, client_args) in client_sets {
        let Some(mut storescu) = dcmtk("storescu") else {
            return;
        };
        storescu
            .args(&client_args)
            .args(["-aec", "STORESCP", LOCALHOST, &port.to_string()])
            .arg(&file);
        let sent = run(
            &format!("dcmtk-storescu-{label}"),
            &dir,
            storescu,
            RUN_TIMEOUT,
        );
        let context = format!("{label}\n{}\n{}", sent.describe(), server.describe());
        assert_ne!(sent.code(), Some(0), "the store succeeded\n{context}");
        // The same refusal from our own client.
        let mut ours = dimsum();
        ours.args(["echoscu", "-to", "10", "-ta", "10"])
            .args(&client_args)
            .args([LOCALHOST, &port.to_string()]);
        let echo = run(&format!("dimsum-echoscu-{label}"), &dir, ours, RUN_TIMEOUT);
        let context = format!("{context}\n{}", echo.describe());
        echo.assert_code(EXIT_CONNECTION);
        assert!(
            lines_starting_with(&echo.stderr, "I: Received Echo Response").is_empty(),
            "an echo went through\n{context}"
        );
    }
    server.wait_for_text("TLS handshake", LOG_TIMEOUT);
    let log = server.stderr();
    assert!(
        lines_starting_with(&log, "I: Association accepted from").is_empty(),
        "an association was accepted\n{}",
        server.describe()
    );
    assert_contains(&log, "certificate", &server.describe());
    assert!(files_under(&output).is_empty(), "something was stored");
    server.terminate(STOP_TIMEOUT);
}

// -------------------------------------------------------------------------------------------
// pynetdicom
// -------------------------------------------------------------------------------------------

#[test]
fn pynetdicom_echoscu_over_tls_to_dimsum_echoscp() {
    let dir = scratch_dir("tls-pynetdicom-to-dimsum");
    let tls = tls_material(&dir);
    let port = free_port();
    let mut server = start_dimsum_echoscp(
        &dir,
        port,
        &tls_args(&tls.server_key, &tls.server_cert, &tls.ca_cert),
    );
    let Some(mut echoscu) = pynetdicom("pynetdicom_tls.py") else {
        return;
    };
    let record = dir.join("pynetdicom-echoscu.jsonl");
    echoscu
        .args(["echoscu", LOCALHOST, &port.to_string(), "--aec", "ECHOSCP"])
        .args(["--ca", path(&tls.ca_cert)])
        .args(["--cert", path(&tls.client_cert)])
        .args(["--key", path(&tls.client_key)])
        .args(["--record", path(&record)]);
    let echo = run("pynetdicom-echoscu", &dir, echoscu, RUN_TIMEOUT);
    let context = format!("{}\n{}", echo.describe(), server.describe());
    echo.assert_code(0);
    let records = wait_for_record(&record, "released", LOG_TIMEOUT);
    let tls_records = records_of(&records, "tls");
    assert_eq!(tls_records.len(), 1, "{context}");
    let echoes = records_of(&records, "c-echo");
    assert_eq!(echoes.len(), 1, "{context}");
    assert_eq!(echoes[0]["status"], 0, "{context}");
    server.wait_for_text("Received Echo Request", LOG_TIMEOUT);
    server.terminate(STOP_TIMEOUT);
}

#[test]
fn dimsum_echoscu_over_tls_to_pynetdicom_echoscp_and_refused_with_a_wrong_certificate() {
    let dir = scratch_dir("tls-dimsum-to-pynetdicom");
    let tls = tls_material(&dir);
    let port = free_port();
    let Some(mut command) = pynetdicom("pynetdicom_tls.py") else {
        return;
    };
    let record = dir.join("pynetdicom-echoscp.jsonl");
    command
        .args(["echoscp", &port.to_string()])
        .args(["--ca", path(&tls.ca_cert)])
        .args(["--cert", path(&tls.server_cert)])
        .args(["--key", path(&tls.server_key)])
        .arg("--require-client-cert")
        .args(["--record", path(&record)]);
    let mut server = support::ProcessGuard::spawn("pynetdicom-tls-echoscp", &dir, command);
    wait_for_record(&record, "ready", support::STARTUP_TIMEOUT);

    let good = run(
        "dimsum-echoscu",
        &dir,
        dimsum_echoscu(
            port,
            &tls_args(&tls.client_key, &tls.client_cert, &tls.ca_cert),
        ),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", good.describe(), server.describe());
    good.assert_code(0);
    assert_contains(
        &good.stderr,
        "I: Received Echo Response (MsgID 1): 0x0000 (success)",
        &context,
    );
    let records = wait_for_record(&record, "released", LOG_TIMEOUT);
    let accepted = records_of(&records, "accepted");
    assert_eq!(accepted.len(), 1, "{context}");
    assert!(
        !accepted[0]["peer_subject"].is_null(),
        "our client certificate was not verified\n{context}"
    );

    let wrong = run(
        "dimsum-echoscu-wrong",
        &dir,
        dimsum_echoscu(
            port,
            &tls_args(&tls.wrong_key, &tls.wrong_cert, &tls.ca_cert),
        ),
        RUN_TIMEOUT,
    );
    let context = format!("{}\n{}", wrong.describe(), server.describe());
    wrong.assert_code(EXIT_CONNECTION);
    assert!(
        lines_starting_with(&wrong.stderr, "I: Received Echo Response").is_empty(),
        "{context}"
    );
    let records = wait_for_record(&record, "tls-failed", LOG_TIMEOUT);
    assert_eq!(
        records_of(&records, "accepted").len(),
        1,
        "a second association was accepted\n{context}"
    );
    server.terminate(STOP_TIMEOUT);
}
