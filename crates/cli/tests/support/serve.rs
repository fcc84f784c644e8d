//! `dimsum serve` (the archive, issue 8) as the interop tests run it: a process on a free port of
//! 127.0.0.1 over a data directory of the test's own, loaded with DCMTK `storescu`, stopped
//! with SIGTERM (it prints its statistics and exits 0) or killed with SIGKILL, and restarted on
//! the same data directory.
//!
//! - [`DimsumServe`]: the server process, its address and data directory; what its storage
//!   holds (the SOP Instance UIDs of its files, temporary files left behind);
//! - [`store_folder`]: DCMTK `storescu +sd` of a folder, every file answered with Success;
//!   [`copy_into`]: files copied into a folder of the test (a scan indexes files where they are,
//!   so no test scans or sends the shared data set folder itself);
//! - [`InstanceSpec`] / [`write_instance`]: small Secondary Capture instances written with
//!   dicom-object, for the data that the Q/R data set does not have (many instances of one
//!   study for the crash test, names with `%`, `_` and quotes for the hostile queries);
//! - [`IngestBatch`]: a study of many small instances with distinct pixel data, written once per
//!   test binary.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;

use dimsum_net::dataset::dicom_core::VR;
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::qr::{
    AeAddress, QrInstance, SECONDARY_CAPTURE_IMAGE_STORAGE, SecondaryCaptureIdentity,
    sop_instance_uids_in, text_element,
};
use super::{
    EXPLICIT_VR_LE, Finished, LOCALHOST, ProcessGuard, RUN_TIMEOUT, STARTUP_TIMEOUT, STOP_TIMEOUT,
    dcmtk, dimsum, files_under, free_ports, run, wait_until,
};

/// The AE title the tests give the archive.
pub const SERVE_AE: &str = "DIMSUMARCHIVE";
/// The calling AE title of the DCMTK `storescu` that loads the archive.
pub const STORE_AE: &str = "DCMTKSTORE";
/// What `dimsum serve` prints once it listens (before the address).
const LISTENING: &str = "listening on";
/// What it prints when it stops after SIGTERM/SIGINT, before its statistics.
pub const STOPPED: &str = "Server stopped. Statistics:";
/// How often a port taken between [`free_ports`] and the bind is retried with another.
const BIND_ATTEMPTS: usize = 3;

/// A running `dimsum serve`; killed on drop.
pub struct DimsumServe {
    process: ProcessGuard,
    address: AeAddress,
    http_port: u16,
    data: PathBuf,
}

impl DimsumServe {
    /// Starts `dimsum serve -v --aet DIMSUMARCHIVE --bind 127.0.0.1 --port <free> --http-port
    /// <free> --data <data> <args>` in `dir` (its logs there) and waits until it says it
    /// listens.
    pub fn start(dir: &Path, data: &Path, args: &[&str]) -> DimsumServe {
        let mut last_failure = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let [port, http_port] = free_ports();
            let mut command = dimsum();
            command
                .args(["serve", "-v", "--aet", SERVE_AE, "--bind", LOCALHOST])
                .args(["--port", &port.to_string()])
                .args(["--http-port", &http_port.to_string(), "--data"])
                .arg(data)
                .args(args);
            let mut process = ProcessGuard::spawn("dimsum-serve", dir, command);
            let expected = format!("{LISTENING} {LOCALHOST}:{port}");
            let listening = wait_until(STARTUP_TIMEOUT, || {
                process.output().contains(&expected) || process.try_status().is_some()
            });
            if listening && process.output().contains(&expected) {
                return DimsumServe {
                    process,
                    address: AeAddress::local(SERVE_AE, port),
                    http_port,
                    data: data.to_path_buf(),
                };
            }
            process.kill();
            last_failure = process.describe();
            // a port taken in between: try another; anything else fails below
            if !last_failure.contains("cannot listen") {
                break;
            }
        }
        panic!("dimsum serve did not start listening\n{last_failure}");
    }

    /// Where to call it.
    pub fn address(&self) -> &AeAddress {
        &self.address
    }

    /// The URL of its DICOMweb services (`http://127.0.0.1:<port>/dicom-web`).
    pub fn dicomweb_url(&self) -> String {
        format!("http://{LOCALHOST}:{}/dicom-web", self.http_port)
    }

    /// The origin of its HTTP server (`http://127.0.0.1:<port>`).
    pub fn http_origin(&self) -> String {
        format!("http://{LOCALHOST}:{}", self.http_port)
    }

    /// Its data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The process, to wait for its log lines.
    pub fn process(&mut self) -> &mut ProcessGuard {
        &mut self.process
    }

    /// Its logs, for failure messages.
    pub fn describe(&self) -> String {
        self.process.describe()
    }

    /// Stops it with SIGTERM and asserts that it exits 0 after printing its statistics; returns
    /// what it wrote to stderr.
    #[track_caller]
    pub fn stop(mut self) -> String {
        let status: Option<ExitStatus> = self.process.terminate(STOP_TIMEOUT);
        assert!(
            status.is_some_and(|status| status.success()),
            "dimsum serve did not exit 0 after SIGTERM within {STOP_TIMEOUT:?} ({status:?})\n{}",
            self.describe()
        );
        let stderr = self.process.stderr();
        assert!(
            stderr.contains(STOPPED),
            "dimsum serve printed no statistics after SIGTERM\n{}",
            self.describe()
        );
        stderr
    }

    /// Kills it with SIGKILL (no chance to close anything) and returns its logs.
    pub fn kill(mut self) -> String {
        self.process.kill();
        self.describe()
    }
}

/// The value of a line of the statistics `dimsum serve` prints when it stops, e.g.
/// `Instances:` → `11 received, 0 sent`.
#[track_caller]
pub fn statistic<'a>(stderr: &'a str, label: &str) -> &'a str {
    let after = stderr
        .split_once(STOPPED)
        .map(|(_, after)| after)
        .unwrap_or_else(|| panic!("no statistics in\n{stderr}"));
    after
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in the statistics\n{stderr}"))
}

/// The SOP Instance UIDs of the files in the archive's storage (`<data>/storage`).
pub fn stored_sop_instance_uids(data: &Path) -> BTreeSet<String> {
    sop_instance_uids_in(&data.join("storage"))
        .into_keys()
        .collect()
}

/// The hidden files anywhere under `data`: what a store cut off may leave behind (the temporary
/// `.<uid>.<pid>-<n>.part` of an instance being received). Nothing the archive keeps is hidden
/// (`index.sqlite` with its `-wal` and `-shm`, `lock`, the files under `storage/`).
pub fn hidden_files(data: &Path) -> Vec<PathBuf> {
    files_under(data)
        .into_iter()
        .filter(|path| {
            path.strip_prefix(data).is_ok_and(|relative| {
                relative
                    .components()
                    .any(|part| part.as_os_str().to_string_lossy().starts_with('.'))
            })
        })
        .collect()
}

/// Copies `files` into `folder` (created), keeping their names; returns the copies.
pub fn copy_into(files: &[&Path], folder: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(folder)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", folder.display()));
    files
        .iter()
        .map(|file| {
            let copy = folder.join(file.file_name().expect("a file name"));
            fs::copy(file, &copy).unwrap_or_else(|error| {
                panic!(
                    "cannot copy {} to {}: {error}",
                    file.display(),
                    copy.display()
                )
            });
            copy
        })
        .collect()
}

/// The DCMTK `storescu -v -aet DCMTKSTORE -aec <ae> +sd <host> <port> <folder>` command
/// (`+sd`: every file of the folder and its sub-folders). `None` (after `SKIP:`) without DCMTK.
pub fn storescu_folder_command(
    address: &AeAddress,
    folder: &Path,
) -> Option<std::process::Command> {
    let mut command = dcmtk("storescu")?;
    command
        .args(["-v", "-aet", STORE_AE, "-aec", &address.ae_title, "+sd"])
        .arg(&address.host)
        .arg(address.port.to_string())
        .arg(folder);
    Some(command)
}

/// Sends every file of `folder` to `address` with DCMTK `storescu +sd` (one association) and
/// asserts that it exits 0 with each of the `expected` files answered with Success. `None`
/// (after `SKIP:`) without DCMTK.
#[track_caller]
pub fn store_folder(
    dir: &Path,
    label: &str,
    address: &AeAddress,
    folder: &Path,
    expected: usize,
    context: impl Fn() -> String,
) -> Option<Finished> {
    let command = storescu_folder_command(address, folder)?;
    let finished = run(label, dir, command, RUN_TIMEOUT);
    let successes = acknowledged_files(&finished.output()).len();
    assert!(
        finished.code() == Some(0) && successes == expected,
        "storescu +sd {}: exit {:?}, {successes} of {expected} files answered with Success\n{}\n{}",
        folder.display(),
        finished.code(),
        finished.describe(),
        context()
    );
    Some(finished)
}

/// The files a `storescu -v` log shows answered with Success: each `I: Sending file: <path>`
/// followed by `I: Received Store Response (Success)` before the next file.
pub fn acknowledged_files(log: &str) -> Vec<PathBuf> {
    let mut acknowledged = Vec::new();
    let mut current: Option<PathBuf> = None;
    for line in log.lines() {
        if let Some(path) = line.strip_prefix("I: Sending file: ") {
            current = Some(PathBuf::from(path.trim()));
        } else if line.starts_with("I: Received Store Response (Success)")
            && let Some(path) = current.take()
        {
            acknowledged.push(path);
        }
    }
    acknowledged
}

/// Asserts that DCMTK `echoscu` gets a C-ECHO answered by `address`: the server still serves.
/// `None` (after `SKIP:`) without DCMTK.
#[track_caller]
pub fn assert_echo(dir: &Path, address: &AeAddress, context: impl Fn() -> String) -> Option<()> {
    let mut command = dcmtk("echoscu")?;
    command
        .args(["-v", "-aet", STORE_AE, "-aec", &address.ae_title])
        .arg(&address.host)
        .arg(address.port.to_string());
    let finished = run("echoscu", dir, command, RUN_TIMEOUT);
    assert!(
        finished.code() == Some(0)
            && finished
                .output()
                .contains("Received Echo Response (Success)"),
        "the archive does not answer a C-ECHO\n{}\n{}",
        finished.describe(),
        context()
    );
    Some(())
}

// ---------------------------------------------------------------------------------------------
// Instances written by the tests
// ---------------------------------------------------------------------------------------------

/// A small Secondary Capture instance (PS3.3 A.8.1): its identifying attributes and a pixel
/// data of `rows` x `columns` 8-bit values derived from `pixel_seed`.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    pub patient_name: String,
    pub patient_id: String,
    pub study_instance_uid: String,
    pub study_date: String,
    pub accession_number: String,
    pub series_instance_uid: String,
    pub series_number: u32,
    pub sop_instance_uid: String,
    pub instance_number: u32,
    pub rows: u16,
    pub columns: u16,
    pub pixel_seed: u64,
}

impl InstanceSpec {
    /// The instance as the Q/R harness describes its instances (to compare what a retrieve
    /// delivered with [`super::qr::assert_received_instances`]).
    pub fn as_qr_instance(&self, path: &Path) -> QrInstance {
        QrInstance {
            sop_class_uid: SECONDARY_CAPTURE_IMAGE_STORAGE.to_owned(),
            sop_instance_uid: self.sop_instance_uid.clone(),
            instance_number: self.instance_number,
            transfer_syntax: EXPLICIT_VR_LE.to_owned(),
            rows: self.rows,
            columns: self.columns,
            bits_allocated: 8,
            path: path.to_path_buf(),
        }
    }
}

/// Deterministic pixel values: an xorshift sequence seeded by `seed`.
fn pixels(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes `spec` as a Part 10 file (Explicit VR Little Endian) at `path`, atomically (a hidden
/// partial file renamed into place).
pub fn write_instance(spec: &InstanceSpec, path: &Path) {
    let identity = SecondaryCaptureIdentity {
        patient_name: &spec.patient_name,
        patient_id: &spec.patient_id,
        patient_birth_date: "",
        study_instance_uid: &spec.study_instance_uid,
        study_date: &spec.study_date,
        study_id: "1",
        accession_number: &spec.accession_number,
        series_instance_uid: &spec.series_instance_uid,
        series_number: spec.series_number,
    };
    let pixels = pixels(
        spec.pixel_seed,
        usize::from(spec.rows) * usize::from(spec.columns),
    );
    let mut object = InMemDicomObject::new_empty();
    for element in identity.elements(spec.rows, spec.columns, pixels) {
        object.put(element);
    }
    object.put(text_element(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        "ISO_IR 100",
    ));
    object.put(text_element(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        &spec.sop_instance_uid,
    ));
    object.put(text_element(
        tags::INSTANCE_NUMBER,
        VR::IS,
        &spec.instance_number.to_string(),
    ));
    let file = object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_VR_LE))
        .unwrap_or_else(|error| panic!("file meta of {}: {error}", spec.sop_instance_uid));
    let name = path.file_name().expect("a file name").to_string_lossy();
    let partial = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    file.write_to_file(&partial)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", partial.display()));
    fs::rename(&partial, path)
        .unwrap_or_else(|error| panic!("cannot rename to {}: {error}", path.display()));
}

/// The root of the UIDs of the instances written here (pydicom's test root, a branch of ours
/// beside the Q/R data set's 7007).
pub const SERVE_UID_ROOT: &str = "1.2.826.0.1.3680043.8.498.7008";

/// One study of many small instances over a few series, each with its own pixel data, written
/// once per test binary into `<target tmp>/serve-batch-<count>` (a folder of nothing else).
#[derive(Clone, Debug)]
pub struct IngestBatch {
    pub dir: PathBuf,
    pub study_instance_uid: String,
    /// `SOP Instance UID → (its spec, its file)`.
    pub instances: BTreeMap<String, (InstanceSpec, PathBuf)>,
}

impl IngestBatch {
    /// Series the instances are spread over.
    pub const SERIES: usize = 4;

    /// The batch of `count` instances of `rows` x `columns` pixels (at most one size per test
    /// binary: the first call writes it).
    pub fn get(count: usize, rows: u16, columns: u16) -> &'static IngestBatch {
        static BATCH: OnceLock<IngestBatch> = OnceLock::new();
        let batch = BATCH.get_or_init(|| IngestBatch::write(count, rows, columns));
        assert_eq!(
            batch.instances.len(),
            count,
            "one batch size per test binary"
        );
        batch
    }

    fn write(count: usize, rows: u16, columns: u16) -> IngestBatch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-batch-{count}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("clear the batch folder");
        }
        fs::create_dir_all(&dir).expect("create the batch folder");
        let study_instance_uid = format!("{SERVE_UID_ROOT}.1.{count}");
        let instances = (0..count)
            .map(|index| {
                let series = index % Self::SERIES + 1;
                let spec = InstanceSpec {
                    patient_name: "Batch^Ingest".to_owned(),
                    patient_id: format!("BATCH-{count}"),
                    study_instance_uid: study_instance_uid.clone(),
                    study_date: "20250101".to_owned(),
                    accession_number: format!("BATCH{count}"),
                    series_instance_uid: format!("{SERVE_UID_ROOT}.2.{count}.{series}"),
                    series_number: series as u32,
                    sop_instance_uid: format!("{SERVE_UID_ROOT}.3.{count}.{}", index + 1),
                    instance_number: (index + 1) as u32,
                    rows,
                    columns,
                    pixel_seed: index as u64 + 1,
                };
                let path = dir.join(format!("batch_{:05}.dcm", index + 1));
                write_instance(&spec, &path);
                (spec.sop_instance_uid.clone(), (spec, path))
            })
            .collect();
        IngestBatch {
            dir,
            study_instance_uid,
            instances,
        }
    }

    /// The batch's instances among `uids`, as the Q/R harness describes instances.
    pub fn qr_instances(&self, uids: &BTreeSet<String>) -> Vec<QrInstance> {
        uids.iter()
            .map(|uid| {
                let (spec, path) = self
                    .instances
                    .get(uid)
                    .unwrap_or_else(|| panic!("{uid} is not an instance of the batch"));
                spec.as_qr_instance(path)
            })
            .collect()
    }

    /// The SOP Instance UID of the batch file at `path`.
    pub fn uid_of(&self, path: &Path) -> Option<&str> {
        self.instances
            .iter()
            .find(|(_, (_, file))| file == path)
            .map(|(uid, _)| uid.as_str())
    }
}

/// Waits until `condition` holds, polling every millisecond (for a moment a 25 ms poll would
/// miss), up to `timeout`; whether it held.
pub fn wait_closely(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    condition()
}
