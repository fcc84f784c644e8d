//! DCMTK's private shutdown request, both ways: `dimsum termscu` against dimsum's servers (with
//! and without `--allow-shutdown`), DCMTK `storescp` and DCMTK `dcmqrscp --allow-shutdown`; DCMTK
//! `termscu` against dimsum's servers. Asserted on what each side did: whether the server
//! stopped, what it printed (its statistics), whether it still serves a C-ECHO, what the client
//! reported and its exit status.
//!
//! A missing peer skips the test (prints `SKIP:`), or fails it when `DIMSUM_REQUIRE_PEERS`
//! is set. Install the peers with `scripts/setup-peers`.

mod support;

use std::fs;
use std::path::Path;

use support::qr::dcmqrscp_config;
use support::{
    Finished, LOCALHOST, LOG_TIMEOUT, ProcessGuard, RUN_TIMEOUT, STARTUP_TIMEOUT, STOP_TIMEOUT,
    assert_contains, dcmtk, dimsum, free_port, run, scratch_dir, start_dimsum_storescp,
    start_storescp,
};

/// The AE title our test servers answer to.
const ARCHIVE: &str = "ARCHIVE";

/// `dimsum termscu -v -aec ARCHIVE 127.0.0.1 <port>`.
fn dimsum_termscu(dir: &Path, port: u16, called: &str) -> Finished {
    let mut command = dimsum();
    command
        .args(["termscu", "-v", "-to", "10", "-ta", "10", "-aec", called])
        .args([LOCALHOST, &port.to_string()]);
    run("dimsum-termscu", dir, command, RUN_TIMEOUT)
}

/// DCMTK `termscu -v -aec ARCHIVE 127.0.0.1 <port>`, or `None` without DCMTK.
fn dcmtk_termscu(dir: &Path, port: u16) -> Option<Finished> {
    let mut command = dcmtk("termscu")?;
    command
        .args(["-v", "-aec", ARCHIVE])
        .args([LOCALHOST, &port.to_string()]);
    Some(run("dcmtk-termscu", dir, command, RUN_TIMEOUT))
}

/// `dimsum echoscu` to `port` calling `called`: whether the server answered the C-ECHO.
fn echo_succeeds(dir: &Path, port: u16, called: &str) -> bool {
    let mut command = dimsum();
    command
        .args([
            "echoscu", "-to", "10", "-ta", "10", "-td", "10", "-aec", called,
        ])
        .args([LOCALHOST, &port.to_string()]);
    run("dimsum-echoscu", dir, command, RUN_TIMEOUT).code() == Some(0)
}

/// Our storescp answering to ARCHIVE on a free port, with `args`.
fn start_our_storescp(dir: &Path, args: &[&str]) -> (ProcessGuard, u16) {
    let port = free_port();
    let output = dir.join("received");
    fs::create_dir_all(&output).expect("create the output folder");
    let mut all = vec!["-aet", ARCHIVE];
    all.extend_from_slice(args);
    (start_dimsum_storescp(dir, &output, port, &all), port)
}

/// Waits for our server to stop by itself and checks that it stopped cleanly, saying why and
/// with its statistics: `accepted` associations (all released), `messages` answered and one
/// shutdown request.
#[track_caller]
fn assert_stopped_on_request(server: &mut ProcessGuard, accepted: u64, messages: u64) {
    let status = server.wait(STOP_TIMEOUT);
    let log = server.stderr();
    assert_eq!(status.code(), Some(0), "exit status\n{}", server.describe());
    assert_contains(
        &log,
        "W: Shutdown requested by TERMSCU@127.0.0.1",
        &server.describe(),
    );
    assert_statistics(server, (accepted, accepted), 0, messages, 1);
}

/// Checks that a server of ours refused the shutdown request and still serves (a C-ECHO
/// succeeds), then stops it and checks its statistics: `(accepted, released)` associations, one
/// C-ECHO answered, no shutdown honoured.
#[track_caller]
fn assert_kept_running(server: &mut ProcessGuard, dir: &Path, port: u16, associations: (u64, u64)) {
    assert!(
        server.try_status().is_none(),
        "the server stopped\n{}",
        server.describe()
    );
    assert!(echo_succeeds(dir, port, ARCHIVE), "{}", server.describe());
    terminate(server);
    assert_statistics(server, associations, 0, 1, 0);
}

/// Checks the statistics a stopped server of ours printed: associations accepted and released
/// (the others failed), rejected, messages answered and shutdown requests honoured.
#[track_caller]
fn assert_statistics(
    server: &ProcessGuard,
    (accepted, released): (u64, u64),
    rejected: u64,
    messages: u64,
    shutdown_requests: u64,
) {
    let log = server.stderr();
    assert_contains(&log, "Server stopped. Statistics:\n", &server.describe());
    let shutdown = match shutdown_requests {
        0 => String::new(),
        1 => ", 1 shutdown request".to_owned(),
        n => format!(", {n} shutdown requests"),
    };
    assert_contains(
        &log,
        &format!(
            "  Associations: {accepted} accepted ({released} released, {} aborted or failed, 0 \
             active), {rejected} rejected, 0 failed requests{shutdown}\n",
            accepted - released
        ),
        &server.describe(),
    );
    assert_contains(
        &log,
        &format!("  Messages:     {messages} (0 queries, 0 retrieves)\n"),
        &server.describe(),
    );
    assert_contains(&log, "  Uptime:       ", &server.describe());
    let bytes = log
        .lines()
        .find_map(|line| line.strip_prefix("  Bytes:        "))
        .unwrap_or_else(|| panic!("no Bytes line\n{}", server.describe()));
    assert!(
        !bytes.starts_with("0 bytes received") && !bytes.ends_with(" 0 bytes sent"),
        "bytes were exchanged: {bytes}\n{}",
        server.describe()
    );
}

/// Stops our server with SIGTERM and checks that it ended by itself with status 0.
#[track_caller]
fn terminate(server: &mut ProcessGuard) {
    let status = server.terminate(STOP_TIMEOUT);
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "SIGTERM: graceful stop\n{}",
        server.describe()
    );
}

#[test]
fn dimsum_termscu_stops_a_dimsum_server_that_allows_it() {
    let dir = scratch_dir("termscu-dimsum-allowed");
    let (mut server, port) = start_our_storescp(&dir, &["--allow-shutdown"]);
    assert!(echo_succeeds(&dir, port, ARCHIVE), "{}", server.describe());

    let termscu = dimsum_termscu(&dir, port, ARCHIVE);
    termscu.assert_code(0);
    assert_contains(
        &termscu.stderr,
        &format!(
            "I: Shutdown request accepted: {LOCALHOST}:{port} refused the association \
             (rejected-permanent by service-user: no reason given), as DCMTK's servers do"
        ),
        &termscu.describe(),
    );
    assert_stopped_on_request(&mut server, 1, 1);
}

#[test]
fn dimsum_termscu_leaves_a_dimsum_server_running_unless_it_allows_it() {
    let dir = scratch_dir("termscu-dimsum-not-allowed");
    let (mut server, port) = start_our_storescp(&dir, &[]);

    let termscu = dimsum_termscu(&dir, port, ARCHIVE);
    termscu.assert_code(3);
    assert_contains(
        &termscu.stderr,
        &format!("E: {LOCALHOST}:{port} does not honour the shutdown request"),
        &termscu.describe(),
    );
    assert_contains(&termscu.stderr, "abstract syntax", &termscu.describe());
    assert_contains(
        &termscu.stderr,
        "I: Releasing association",
        &termscu.describe(),
    );

    // termscu's association (accepted, the context refused) and the echo's.
    assert_kept_running(&mut server, &dir, port, (2, 2));
}

#[test]
fn dcmtk_termscu_stops_a_dimsum_server_that_allows_it() {
    let dir = scratch_dir("termscu-dcmtk-to-dimsum-allowed");
    let (mut server, port) = start_our_storescp(&dir, &["--allow-shutdown"]);
    let Some(termscu) = dcmtk_termscu(&dir, port) else {
        return;
    };
    // DCMTK's termscu reports the refusal its own servers give as a failure (exit 1), and
    // prints its parameters: those of dcmqrscp.
    termscu.assert_code(1);
    assert_contains(
        &termscu.output(),
        "Association Rejected",
        &termscu.describe(),
    );
    assert_contains(
        &termscu.output(),
        "Result: Rejected Permanent, Source: Service User",
        &termscu.describe(),
    );
    assert_contains(&termscu.output(), "Reason: No Reason", &termscu.describe());
    assert_stopped_on_request(&mut server, 0, 0);
}

#[test]
fn dcmtk_termscu_leaves_a_dimsum_server_running_unless_it_allows_it() {
    let dir = scratch_dir("termscu-dcmtk-to-dimsum-not-allowed");
    let (mut server, port) = start_our_storescp(&dir, &[]);
    let Some(termscu) = dcmtk_termscu(&dir, port) else {
        return;
    };
    termscu.assert_code(1);
    assert_contains(
        &termscu.output(),
        "No Acceptable Presentation Contexts",
        &termscu.describe(),
    );
    // DCMTK's termscu exits without releasing an association with no context accepted.
    assert_kept_running(&mut server, &dir, port, (2, 1));
}

/// DCMTK's storescp does not know the shutdown SOP class: it accepts the association without it
/// ("but no valid presentation contexts") and goes on.
#[test]
fn dimsum_termscu_does_not_stop_dcmtk_storescp() {
    let dir = scratch_dir("termscu-dimsum-to-dcmtk-storescp");
    let port = free_port();
    let Some(mut storescp) = start_storescp(&dir, port, &["-aet", ARCHIVE]) else {
        return;
    };
    let termscu = dimsum_termscu(&dir, port, ARCHIVE);
    termscu.assert_code(3);
    assert_contains(
        &termscu.stderr,
        &format!("E: {LOCALHOST}:{port} does not honour the shutdown request"),
        &termscu.describe(),
    );
    storescp.wait_for_text("but no valid presentation contexts", LOG_TIMEOUT);
    assert!(
        storescp.try_status().is_none(),
        "storescp stopped\n{}",
        storescp.describe()
    );
    assert!(
        echo_succeeds(&dir, port, ARCHIVE),
        "{}",
        storescp.describe()
    );
    storescp.terminate(STOP_TIMEOUT);
}

/// DCMTK's dcmqrscp with --allow-shutdown: our termscu takes its refusal for the shutdown and
/// dcmqrscp stops (DCMTK 3.6.7's dcmqrscp crashes on its way out, so only its stopping and its
/// log are checked, not its exit status).
#[test]
fn dimsum_termscu_stops_dcmtk_dcmqrscp_that_allows_it() {
    let dir = scratch_dir("termscu-dimsum-to-dcmqrscp");
    let port = free_port();
    let storage = dir.join("dcmqrscp-storage");
    fs::create_dir_all(&storage).expect("create the storage area");
    let config = dir.join("dcmqrscp.cfg");
    fs::write(&config, dcmqrscp_config(ARCHIVE, &storage, port, &[])).expect("write the config");
    let Some(mut command) = dcmtk("dcmqrscp") else {
        return;
    };
    command
        .args(["-d", "--allow-shutdown", "-c"])
        .arg(&config)
        .arg(port.to_string());
    let mut dcmqrscp = ProcessGuard::spawn("dcmqrscp", &dir, command);
    dcmqrscp.wait_for_listening(port, STARTUP_TIMEOUT);

    let termscu = dimsum_termscu(&dir, port, ARCHIVE);
    termscu.assert_code(0);
    assert_contains(
        &termscu.stderr,
        "I: Shutdown request accepted",
        &termscu.describe(),
    );
    dcmqrscp.wait(STOP_TIMEOUT);
    assert_contains(
        &dcmqrscp.output(),
        "Shutting down server ... (negotiated private \"shut down\" SOP class)",
        &dcmqrscp.describe(),
    );
}
