//! Shared support for the interop tests (DESIGN.md principle 6: interoperate for real).
//!
//! - finds the real peers: DCMTK binaries on `PATH` and the pynetdicom virtual environment that
//!   `scripts/setup-peers` creates at `$REPO/.venv` (override with `DIMSUM_PEER_PYTHON`);
//!   a missing peer panics when `DIMSUM_REQUIRE_PEERS` is set (CI) and otherwise prints
//!   `SKIP: ...` and yields `None`;
//! - free ports on 127.0.0.1;
//! - [`ProcessGuard`]: a child process whose stdout/stderr go to files (readable after it
//!   ends) and which is killed when the guard drops;
//! - bounded waits: for a text in a process's output, for a port to listen, for a command.
//!
//! Every DCMTK process gets `TCP_NODELAY=1` (DCMTK otherwise leaves Nagle on and a
//! request/response protocol then waits ~40 ms per round trip).
#![allow(dead_code)]

pub mod postgres;
pub mod qr;
pub mod serve;
pub mod tls;

use std::env;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client command may run before it is killed and the test fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a log line that follows an action that already completed.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(20);
/// Grace period for a server stopped with SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The loopback address every test server binds and every client calls.
pub const LOCALHOST: &str = "127.0.0.1";
/// Verification SOP Class (PS3.4 Annex A).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

const POLL_INTERVAL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// Paths and peers
// ---------------------------------------------------------------------------------------------

/// The `dimsum` binary under test.
pub fn dimsum_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dimsum"))
}

/// A command running the `dimsum` binary under test.
pub fn dimsum() -> Command {
    Command::new(dimsum_bin())
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// True when a missing peer must fail the test instead of skipping it (set by CI).
pub fn peers_required() -> bool {
    env::var("DIMSUM_REQUIRE_PEERS").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// Reports a missing peer: panics under `DIMSUM_REQUIRE_PEERS`, else prints `SKIP:` and
/// returns `None` so the caller can `return` early.
pub fn peer_missing<T>(what: &str) -> Option<T> {
    let message = format!("{what} (run scripts/setup-peers to install the interop peers)");
    if peers_required() {
        panic!("DIMSUM_REQUIRE_PEERS is set but a peer is missing: {message}");
    }
    eprintln!("SKIP: {message}");
    None
}

/// Finds an executable on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A DCMTK tool (`echoscu`, `storescp`, ...) as a command with `TCP_NODELAY=1`, or `None`
/// (after `SKIP:`) when DCMTK is not installed.
pub fn dcmtk(tool: &str) -> Option<Command> {
    match find_on_path(tool) {
        Some(path) => {
            let mut command = Command::new(path);
            command.env("TCP_NODELAY", "1");
            Some(command)
        }
        None => peer_missing(&format!("DCMTK tool `{tool}` not found on PATH")),
    }
}

/// The Python interpreter of the peer virtual environment, checked once to import pynetdicom.
fn peer_python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let python = env::var_os("DIMSUM_PEER_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
            if !python.is_file() {
                return Err(format!("python venv not found at {}", python.display()));
            }
            let probe = Command::new(&python)
                .args(["-c", "import pynetdicom, pydicom"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
            if probe.status.success() {
                Ok(python)
            } else {
                Err(format!(
                    "{} cannot import pynetdicom: {}",
                    python.display(),
                    String::from_utf8_lossy(&probe.stderr).trim()
                ))
            }
        })
        .clone()
}

/// A command running one of the Python peers in `tests/peers/` (e.g.
/// `pynetdicom_echoscu.py`), or `None` (after `SKIP:`) when pynetdicom is not installed.
pub fn pynetdicom(script: &str) -> Option<Command> {
    let python = match peer_python() {
        Ok(python) => python,
        Err(why) => return peer_missing(&format!("pynetdicom peer unavailable: {why}")),
    };
    let script_path = repo_root().join("tests/peers").join(script);
    assert!(
        script_path.is_file(),
        "peer script {} is missing",
        script_path.display()
    );
    let mut command = Command::new(python);
    command.arg("-u").arg(script_path);
    Some(command)
}

// ---------------------------------------------------------------------------------------------
// Scratch space and ports
// ---------------------------------------------------------------------------------------------

/// A fresh directory for one test's logs and files, under cargo's target tmp dir so that the
/// logs of the last run stay available for inspection.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("interop")
        .join(label);
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot clear {}: {error}", dir.display()));
    }
    fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    dir
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it).
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different TCP ports on 127.0.0.1 that were free a moment ago: each is held until all
/// are picked, so that the kernel cannot hand the same one out twice (two ports picked one
/// after the other may be the same).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0")
    });
    listeners.map(|listener| {
        listener
            .local_addr()
            .expect("local address of a bound listener")
            .port()
    })
}

/// Whether some socket listens on `port` (any local address), from /proc/net/tcp{,6} so that
/// no connection is opened (a probe connection would show up as a bogus association in the
/// peer's log). Falls back to a connect probe where /proc is unavailable.
pub fn is_listening(port: u16) -> bool {
    const TCP_LISTEN: &str = "0A";
    let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .collect();
    if tables.is_empty() {
        return TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), POLL_INTERVAL)
            .is_ok();
    }
    let port_hex = format!(":{port:04X}");
    tables
        .iter()
        .flat_map(|table| table.lines().skip(1))
        .any(|line| {
            let mut fields = line.split_whitespace();
            let local_address = fields.nth(1).unwrap_or_default();
            let state = fields.nth(1).unwrap_or_default();
            state == TCP_LISTEN && local_address.ends_with(&port_hex)
        })
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process with stdout/stderr captured to files; killed (and reaped) on drop.
pub struct ProcessGuard {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl ProcessGuard {
    /// Spawns `command` with stdin closed and its output in `<dir>/<name>.{stdout,stderr}`.
    pub fn spawn(name: &str, dir: &Path, mut command: Command) -> ProcessGuard {
        static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
        let stem = format!("{name}-{}", SEQUENCE.fetch_add(1, Ordering::Relaxed));
        let stdout_path = dir.join(format!("{stem}.stdout"));
        let stderr_path = dir.join(format!("{stem}.stderr"));
        let create = |path: &Path| {
            File::create(path)
                .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path));
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name} ({command:?}): {error}"));
        ProcessGuard {
            name: name.to_owned(),
            child,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    /// The process's name as given to [`ProcessGuard::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// stdout followed by stderr: what to search when a tool's stream choice does not matter.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Both streams, labelled, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- {name} stdout ({stdout_path}) ---\n{stdout}\n--- {name} stderr ({stderr_path}) ---\n{stderr}",
            name = self.name,
            stdout_path = self.stdout_path.display(),
            stdout = self.stdout(),
            stderr_path = self.stderr_path.display(),
            stderr = self.stderr(),
        )
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|error| panic!("cannot poll {}: {error}", self.name));
        }
        self.status
    }

    /// Waits until `text` appears in stdout or stderr; panics (with the logs) on timeout or
    /// when the process ends without printing it.
    pub fn wait_for_text(&mut self, text: &str, timeout: Duration) {
        let found = wait_until(timeout, || {
            if self.output().contains(text) {
                return true;
            }
            if let Some(status) = self.try_status() {
                // one last look: the text may have been written just before exiting
                if self.output().contains(text) {
                    return true;
                }
                panic!(
                    "{} exited ({status}) before printing {text:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            false
        });
        assert!(
            found,
            "{} did not print {text:?} within {timeout:?}\n{}",
            self.name,
            self.describe()
        );
    }

    /// Waits until something listens on `port`; panics (with the logs) on timeout or exit.
    pub fn wait_for_listening(&mut self, port: u16, timeout: Duration) {
        let listening = wait_until(timeout, || {
            if let Some(status) = self.try_status() {
                panic!(
                    "{} exited ({status}) before listening on port {port}\n{}",
                    self.name,
                    self.describe()
                );
            }
            is_listening(port)
        });
        assert!(
            listening,
            "{} did not listen on port {port} within {timeout:?}\n{}",
            self.name,
            self.describe()
        );
    }

    /// Waits for the process to end by itself; kills it and panics on timeout.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if wait_until(timeout, || self.try_status().is_some())
            && let Some(status) = self.status
        {
            return status;
        }
        self.kill();
        panic!(
            "{} did not finish within {timeout:?}; killed\n{}",
            self.name,
            self.describe()
        );
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to end, then kills it.
    /// Returns the exit status if it ended by itself.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_status() {
            return Some(status);
        }
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if signalled && wait_until(timeout, || self.try_status().is_some()) {
            return self.status;
        }
        self.kill();
        None
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            // the process may exit between the check and the kill: both results are fine
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The outcome of a command run to completion by [`run`].
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code (None when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout followed by stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Both streams, labelled, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- {name} exit: {status} ---\n--- {name} stdout ---\n{stdout}\n--- {name} stderr ---\n{stderr}",
            name = self.name,
            status = self.status,
            stdout = self.stdout,
            stderr = self.stderr,
        )
    }

    /// Asserts the exit code, showing the output on failure.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(expected),
            "{} exit code\n{}",
            self.name,
            self.describe()
        );
        self
    }

    /// stdout parsed as one JSON document (what the Python peers print).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "{} did not print one JSON object: {error}\n{}",
                self.name,
                self.describe()
            )
        })
    }
}

/// Runs `command` to completion within `timeout` (killed and failing the test past it), with
/// its output kept in `dir`.
pub fn run(name: &str, dir: &Path, command: Command, timeout: Duration) -> Finished {
    let mut process = ProcessGuard::spawn(name, dir, command);
    let status = process.wait(timeout);
    Finished {
        name: name.to_owned(),
        status,
        stdout: process.stdout(),
        stderr: process.stderr(),
    }
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// Starts `dimsum echoscp` on 127.0.0.1:`port` with `-v` and `args`, waiting for its
/// "I: Listening on" line.
pub fn start_dimsum_echoscp(dir: &Path, port: u16, args: &[&str]) -> ProcessGuard {
    let mut command = dimsum();
    command
        .args(["echoscp", "-v", "--bind", LOCALHOST])
        .args(args)
        .arg(port.to_string());
    let mut server = ProcessGuard::spawn("dimsum-echoscp", dir, command);
    server.wait_for_text("I: Listening on", STARTUP_TIMEOUT);
    server
}

/// Starts DCMTK `storescp -d` on `port` with `args` (DCMTK 3.6.7's storescp has no bind-address
/// option, so it listens on all interfaces; clients call it on 127.0.0.1), storing into `dir`.
pub fn start_storescp(dir: &Path, port: u16, args: &[&str]) -> Option<ProcessGuard> {
    let mut command = dcmtk("storescp")?;
    let output_dir = dir.join("storescp-received");
    fs::create_dir_all(&output_dir).expect("create storescp output directory");
    command
        .arg("-d")
        .arg("-od")
        .arg(&output_dir)
        .args(args)
        .arg(port.to_string());
    let mut server = ProcessGuard::spawn("dcmtk-storescp", dir, command);
    server.wait_for_listening(port, STARTUP_TIMEOUT);
    Some(server)
}

/// Starts `tests/peers/pynetdicom_echoscp.py` on 127.0.0.1:`port`, recording events as JSON
/// lines in the returned file, and waits for its "READY" line.
pub fn start_pynetdicom_echoscp(
    dir: &Path,
    port: u16,
    args: &[&str],
) -> Option<(ProcessGuard, PathBuf)> {
    let mut command = pynetdicom("pynetdicom_echoscp.py")?;
    let record = dir.join("pynetdicom-echoscp.jsonl");
    command
        .args(["--port", &port.to_string(), "--bind", LOCALHOST, "--record"])
        .arg(&record)
        .args(args);
    let mut server = ProcessGuard::spawn("pynetdicom-echoscp", dir, command);
    server.wait_for_text("READY", STARTUP_TIMEOUT);
    Some((server, record))
}

// ---------------------------------------------------------------------------------------------
// Reading what peers logged
// ---------------------------------------------------------------------------------------------

/// The JSON lines recorded so far in `path` (missing file = none).
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    read_lossy(path)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("bad JSON line in {}: {error}: {line}", path.display())
            })
        })
        .collect()
}

/// Waits until a record with `"event": event` appears in the JSON lines file; returns all
/// records then.
pub fn wait_for_record(path: &Path, event: &str, timeout: Duration) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    let found = wait_until(timeout, || {
        records = read_json_lines(path);
        records.iter().any(|record| record["event"] == event)
    });
    assert!(
        found,
        "no {event:?} record in {} within {timeout:?}; records: {records:#?}",
        path.display()
    );
    records
}

/// The records with `"event": event`.
pub fn records_of<'a>(records: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|record| record["event"] == event)
        .collect()
}

/// The values of a DCMTK debug dump field, e.g. `"Their Max PDU Receive Size"` in lines such
/// as `D: Their Max PDU Receive Size:  4096` or `D: Message ID                    : 1`, in log
/// order.
pub fn dcmtk_field_values(log: &str, field: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let body = line.get(3..)?.trim_start();
            let value = body.strip_prefix(field)?.trim_start().strip_prefix(':')?;
            Some(value.trim().to_owned())
        })
        .collect()
}

/// Asserts that `haystack` contains `needle`, showing `context` (usually logs) on failure.
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str, context: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in the output\n{context}"
    );
}

/// The lines of `log` that start with `prefix`.
pub fn lines_starting_with<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|line| line.starts_with(prefix))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Store tests: test data, Python helper scripts, servers, comparison, memory
// ---------------------------------------------------------------------------------------------

/// Peak resident set size that the streaming store tools must stay under (DESIGN.md
/// principle 2: memory is bounded by the PDU size, not by the object size).
pub const STREAMING_RSS_LIMIT_KIB: u64 = 64 * 1024;
/// How long one store client may run with a large object (debug builds are slow).
pub const LARGE_RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Transfer syntax UIDs (PS3.5 §10 and Annex A).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// A command running a Python script of the repository (`tests/data/...`, `tests/peers/...`)
/// with the peer virtual environment's interpreter (which has pydicom and numpy), or `None`
/// (after `SKIP:`) when that environment is missing.
pub fn python_script(relative_path: &str) -> Option<Command> {
    let python = match peer_python() {
        Ok(python) => python,
        Err(why) => return peer_missing(&format!("python peer environment unavailable: {why}")),
    };
    let script = repo_root().join(relative_path);
    assert!(script.is_file(), "script {} is missing", script.display());
    let mut command = Command::new(python);
    command.arg("-u").arg(script);
    Some(command)
}

/// One file written by `tests/data/make_datasets.py`.
#[derive(Clone, Debug)]
pub struct TestFile {
    pub path: PathBuf,
    pub kind: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub transfer_syntax: String,
    pub bytes: u64,
    /// For `--pydicom-corpus` files: the round (sub-folder) they were put in.
    pub round: Option<u64>,
}

/// Runs `tests/data/make_datasets.py <dir> <args>` and returns the files it reports. The data
/// lives under cargo's target tmp dir and is reused across runs (the generator keeps files
/// that are already there and writes new ones atomically).
pub fn generate_test_data(label: &str, args: &[&str]) -> Option<Vec<TestFile>> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("store-data")
        .join(label);
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-data");
    fs::create_dir_all(&logs).expect("create the test data folder");
    let mut command = python_script("tests/data/make_datasets.py")?;
    command.arg(&out).args(args);
    let generated = run(
        &format!("make-datasets-{label}"),
        &logs,
        command,
        LARGE_RUN_TIMEOUT,
    );
    generated.assert_code(0);
    let report = generated.json();
    let files = report["files"].as_array().unwrap_or_else(|| {
        panic!(
            "make_datasets.py printed no files\n{}",
            generated.describe()
        )
    });
    let text =
        |file: &serde_json::Value, key: &str| file[key].as_str().unwrap_or_default().to_owned();
    Some(
        files
            .iter()
            .map(|file| TestFile {
                path: PathBuf::from(text(file, "path")),
                kind: text(file, "kind"),
                sop_class_uid: text(file, "sop_class_uid"),
                sop_instance_uid: text(file, "sop_instance_uid"),
                study_instance_uid: text(file, "study_instance_uid"),
                series_instance_uid: text(file, "series_instance_uid"),
                transfer_syntax: text(file, "transfer_syntax"),
                bytes: file["bytes"].as_u64().unwrap_or_default(),
                round: file["round"].as_u64(),
            })
            .collect(),
    )
}

/// The fixed set of files (`make_datasets.py --standard`), generated once per test binary.
pub fn standard_test_data() -> Option<&'static [TestFile]> {
    static STANDARD: OnceLock<Option<Vec<TestFile>>> = OnceLock::new();
    STANDARD
        .get_or_init(|| generate_test_data("standard", &["--standard"]))
        .as_deref()
}

/// The standard file whose name is `name` (e.g. `"syntax_explicit_be.dcm"`).
pub fn standard_file(files: &[TestFile], name: &str) -> TestFile {
    files
        .iter()
        .find(|file| {
            file.path
                .file_name()
                .is_some_and(|file_name| file_name == name)
        })
        .cloned()
        .unwrap_or_else(|| panic!("make_datasets.py --standard wrote no {name}"))
}

/// The outcome of `tests/peers/compare_datasets.py`.
pub struct Comparison {
    pub finished: Finished,
    pub report: serde_json::Value,
}

impl Comparison {
    /// Whether the script found both sides equal (exit 0 and `"equal": true`).
    pub fn equal(&self) -> bool {
        self.finished.code() == Some(0) && self.report["equal"] == true
    }
}

/// Runs `compare_datasets.py sent received args` (files or folders).
pub fn compare_datasets(dir: &Path, sent: &Path, received: &Path, args: &[&str]) -> Comparison {
    let mut command =
        python_script("tests/peers/compare_datasets.py").expect("the python environment exists");
    command.arg(sent).arg(received).args(args);
    let finished = run("compare-datasets", dir, command, LARGE_RUN_TIMEOUT);
    let report = finished.json();
    Comparison { finished, report }
}

/// Asserts that what was received equals what was sent, element by element (see
/// `compare_datasets.py` for what "equal" means), showing the report and `context` otherwise.
#[track_caller]
pub fn assert_datasets_equal(
    dir: &Path,
    sent: &Path,
    received: &Path,
    args: &[&str],
    context: &str,
) -> Comparison {
    let comparison = compare_datasets(dir, sent, received, args);
    assert!(
        comparison.equal(),
        "received data sets differ from the sent ones ({} vs {}, {args:?}):\n{}\n{context}",
        sent.display(),
        received.display(),
        serde_json::to_string_pretty(&comparison.report).unwrap_or_default(),
    );
    comparison
}

/// Every regular file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(_) => found.push(path),
                Err(_) => {}
            }
        }
    }
    found.sort();
    found
}

/// Starts `dimsum storescp -v --bind 127.0.0.1 -od <output> <args> <port>`, waiting for its
/// "I: Listening on" line.
pub fn start_dimsum_storescp(dir: &Path, output: &Path, port: u16, args: &[&str]) -> ProcessGuard {
    let mut command = dimsum();
    command
        .args(["storescp", "-v", "--bind", LOCALHOST, "-od"])
        .arg(output)
        .args(args)
        .arg(port.to_string());
    let mut server = ProcessGuard::spawn("dimsum-storescp", dir, command);
    server.wait_for_text("I: Listening on", STARTUP_TIMEOUT);
    server
}

/// Starts `tests/peers/pynetdicom_storescp.py` on 127.0.0.1:`port` writing into `output` and
/// recording JSON lines into the returned file; waits for "READY".
pub fn start_pynetdicom_storescp(
    dir: &Path,
    output: &Path,
    port: u16,
    args: &[&str],
) -> Option<(ProcessGuard, PathBuf)> {
    let mut command = pynetdicom("pynetdicom_storescp.py")?;
    let record = dir.join(format!("pynetdicom-storescp-{port}.jsonl"));
    command
        .args(["--port", &port.to_string(), "--bind", LOCALHOST, "--output"])
        .arg(output)
        .arg("--record")
        .arg(&record)
        .args(args);
    let mut server = ProcessGuard::spawn("pynetdicom-storescp", dir, command);
    server.wait_for_text("READY", STARTUP_TIMEOUT);
    Some((server, record))
}

/// Starts DCMTK `storescp -d -od <output> <args> <port>` (all interfaces; see
/// [`start_storescp`]).
pub fn start_dcmtk_storescp_into(
    dir: &Path,
    output: &Path,
    port: u16,
    args: &[&str],
) -> Option<ProcessGuard> {
    let mut command = dcmtk("storescp")?;
    fs::create_dir_all(output).expect("create storescp output directory");
    command
        .arg("-d")
        .arg("-od")
        .arg(output)
        .args(args)
        .arg(port.to_string());
    let mut server = ProcessGuard::spawn("dcmtk-storescp", dir, command);
    server.wait_for_listening(port, STARTUP_TIMEOUT);
    Some(server)
}

/// `command` run under GNU `/usr/bin/time -v -o <report>`, so that its peak RSS can be read
/// with [`time_report_peak_rss_kib`] once it has ended. `None` (after `SKIP:`) when GNU time
/// is not installed.
pub fn under_gnu_time(command: &Command, report: &Path) -> Option<Command> {
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        return peer_missing("GNU time (/usr/bin/time, Debian package time) is not installed");
    }
    let mut timed = Command::new(time);
    timed
        .arg("-v")
        .arg("-o")
        .arg(report)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(cwd) = command.get_current_dir() {
        timed.current_dir(cwd);
    }
    Some(timed)
}

/// "Maximum resident set size (kbytes): N" from a GNU time -v report.
pub fn time_report_peak_rss_kib(report: &Path) -> Option<u64> {
    read_lossy(report).lines().find_map(|line| {
        line.trim()
            .strip_prefix("Maximum resident set size (kbytes):")
            .and_then(|value| value.trim().parse().ok())
    })
}

impl ProcessGuard {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The peak resident set size so far (VmHWM in /proc/<pid>/status: the figure GNU time
    /// reports as "Maximum resident set size" when the process ends), for a running server
    /// that is stopped by a signal and so cannot be measured by a `time` wrapper.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        read_proc_status_kib(self.child.id(), "VmHWM")
    }
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM); panics when it cannot be read.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    read_proc_status_kib(pid, field)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status (has the process ended?)"))
}

/// A field of /proc/<pid>/status in KiB, if the process and the field are there.
fn read_proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// The line of `log` that starts with `prefix` (e.g. "Summary:"), panicking with `context`.
#[track_caller]
pub fn line_starting_with<'a>(log: &'a str, prefix: &str, context: &str) -> &'a str {
    log.lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{context}"))
}
