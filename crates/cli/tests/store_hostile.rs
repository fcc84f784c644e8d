//! `dimsum storescp` against peers that misbehave (DESIGN.md principle 4: bad input gets a
//! clear error and loses nothing): a peer aborting or vanishing in the middle of a data set,
//! SOP Instance UIDs built to escape the output folder, data sets whose lengths lie, and a
//! full disk. The misbehaving peer is `tests/peers/raw_storescu.py`, which speaks the Upper
//! Layer protocol by hand. After each attack a normal store must still work.

mod support;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{
    LOCALHOST, LOG_TIMEOUT, ProcessGuard, RUN_TIMEOUT, STREAMING_RSS_LIMIT_KIB, TestFile,
    assert_contains, files_under, free_port, peers_required, python_script, run, scratch_dir,
    standard_file, standard_test_data, start_dimsum_storescp, wait_until,
};

/// PS3.4 Annex B status codes of a C-STORE response.
const SUCCESS: u64 = 0x0000;
const OUT_OF_RESOURCES: u64 = 0xA700;
const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u64 = 0xA900;

/// Runs `raw_storescu.py 127.0.0.1 <port> <file> <args>` and returns its JSON report.
fn raw_store(dir: &Path, port: u16, file: &Path, args: &[&str]) -> Option<Value> {
    let mut command: Command = python_script("tests/peers/raw_storescu.py")?;
    command
        .args([LOCALHOST, &port.to_string()])
        .arg(file)
        .args(args);
    let finished = run("raw-storescu", dir, command, RUN_TIMEOUT);
    finished.assert_code(0);
    Some(finished.json())
}

/// A normal store of `file` must succeed and leave the file in `output`: the SCP still serves.
#[track_caller]
fn assert_still_serving(dir: &Path, port: u16, output: &Path, file: &TestFile, scp: &ProcessGuard) {
    let Some(report) = raw_store(dir, port, &file.path, &[]) else {
        return;
    };
    assert_eq!(
        report["status"],
        SUCCESS,
        "a normal store after the attack failed: {report}\n{}",
        scp.describe()
    );
    let stored = output.join(format!("{}.dcm", file.sop_instance_uid));
    assert!(
        stored.is_file(),
        "{} missing after a successful store: {:#?}\n{}",
        stored.display(),
        files_under(output),
        scp.describe()
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

// -------------------------------------------------------------------------------------------
// Peer gone in the middle of a data set
// -------------------------------------------------------------------------------------------

#[test]
fn peer_aborting_mid_data_set_leaves_no_file_and_scp_keeps_serving() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let ct = standard_file(files, "ct.dcm");
    let small = standard_file(files, "small.dcm");
    let dir = scratch_dir("hostile-abort");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    for (how, outcome) in [
        ("--abort-after", "aborted-by-us"),
        ("--vanish-after", "vanished"),
    ] {
        let Some(report) = raw_store(&dir, port, &ct.path, &[how, "200000"]) else {
            return;
        };
        assert_eq!(report["outcome"], outcome, "{report}");
        assert_eq!(report["sent_bytes"], 200_000, "{report}");
        // the partial object must vanish, temporary file included
        let leftovers_gone = wait_until(LOG_TIMEOUT, || files_under(&output).is_empty());
        assert!(
            leftovers_gone,
            "after {how}, files are left in the output folder: {:#?}\n{}",
            files_under(&output),
            scp.describe()
        );
    }
    assert_still_serving(&dir, port, &output, &small, &scp);
    assert_eq!(files_under(&output).len(), 1, "{}", scp.describe());
}

// -------------------------------------------------------------------------------------------
// SOP Instance UIDs that try to leave the output folder
// -------------------------------------------------------------------------------------------

#[test]
fn hostile_sop_instance_uids_never_write_outside_the_output_folder() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let small = standard_file(files, "small.dcm");
    let dir = scratch_dir("hostile-uids");
    // the output folder sits deep inside the scratch folder so that escapes are visible
    let output = dir.join("deep").join("er").join("received");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("create the log folder");
    let port = free_port();
    let scp = start_dimsum_storescp(&logs, &output, port, &[]);
    let escape_name = format!("dimsum-escape-{}", std::process::id());
    let long_uid = format!("1.{}", "2".repeat(198));
    let hostile: Vec<(String, Vec<u8>)> = vec![
        ("parent folders".into(), b"../../escape".to_vec()),
        (
            "absolute escape".into(),
            format!("../../../../../../../../../../tmp/{escape_name}").into_bytes(),
        ),
        ("slashes".into(), b"1.2/3/4".to_vec()),
        ("a NUL inside".into(), b"1.2.3\0evil".to_vec()),
        ("dot".into(), b".".to_vec()),
        ("dot dot".into(), b"..".to_vec()),
        ("200 characters".into(), long_uid.clone().into_bytes()),
    ];
    for (what, uid) in &hostile {
        let Some(report) = raw_store(
            &logs,
            port,
            &small.path,
            &["--sop-instance-uid-hex", &hex(uid)],
        ) else {
            return;
        };
        let status = report["status"].as_u64();
        assert!(
            report["outcome"] == "response" && status.is_some(),
            "{what}: no C-STORE-RSP: {report}\n{}",
            scp.describe()
        );
        // success (the file lands inside, sanitised) or a failure status (refused)
        let status = status.unwrap_or_default();
        assert!(
            status == SUCCESS || status >= 0xA000,
            "{what}: unexpected status {status:#06x}: {report}"
        );
        let outside: Vec<PathBuf> = files_under(&dir)
            .into_iter()
            .filter(|path| !path.starts_with(&output) && !path.starts_with(&logs))
            .collect();
        assert!(
            outside.is_empty(),
            "{what}: files written outside the output folder: {outside:#?}"
        );
        if status == SUCCESS {
            for path in files_under(&output) {
                assert_eq!(
                    path.parent(),
                    Some(output.as_path()),
                    "{what}: stored in a sub-folder: {}",
                    path.display()
                );
                let name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'),
                    "{what}: unsanitised file name {name:?}"
                );
                assert!(name != "." && name != "..", "{what}: file name {name:?}");
            }
        }
    }
    assert!(
        !Path::new("/tmp").join(&escape_name).exists()
            && !Path::new("/tmp")
                .join(format!("{escape_name}.dcm"))
                .exists(),
        "a file escaped to /tmp"
    );
    // the sanitised names the spec gives ([0-9A-Za-z.-] kept, at most 128 characters)
    let names: Vec<String> = files_under(&output)
        .iter()
        .filter_map(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for name in &names {
        assert!(
            name.len() <= 128 + ".dcm".len(),
            "file name of {} characters: {name}",
            name.len()
        );
    }
    assert!(names.iter().all(|name| !name.contains('/')), "{names:#?}");
    assert_still_serving(&logs, port, &output, &small, &scp);
}

// -------------------------------------------------------------------------------------------
// Data sets whose lengths lie
// -------------------------------------------------------------------------------------------

#[test]
fn lying_lengths_get_status_a900_no_file_and_little_memory() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let small = standard_file(files, "small.dcm");
    let dir = scratch_dir("hostile-lengths");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    for lie in ["patient-name-length", "item-length", "nested-undefined"] {
        let Some(report) = raw_store(&dir, port, &small.path, &["--lie", lie]) else {
            return;
        };
        assert_eq!(
            report["status"],
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "{lie}: {report}\n{}",
            scp.describe()
        );
        assert!(
            files_under(&output).is_empty(),
            "{lie}: a file was kept: {:#?}",
            files_under(&output)
        );
    }
    let peak = scp.peak_rss_kib().expect("VmHWM of the running storescp");
    assert!(
        peak < STREAMING_RSS_LIMIT_KIB,
        "storescp peaked at {peak} KiB after lying lengths\n{}",
        scp.describe()
    );
    assert_still_serving(&dir, port, &output, &small, &scp);
}

// -------------------------------------------------------------------------------------------
// Disk full
// -------------------------------------------------------------------------------------------

/// A 256 KiB tmpfs mounted for one test, unmounted on drop.
struct TinyFilesystem {
    mount_point: PathBuf,
}

impl TinyFilesystem {
    fn mount(mount_point: &Path) -> Option<TinyFilesystem> {
        fs::create_dir_all(mount_point).expect("create the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(mount_point)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(TinyFilesystem {
                mount_point: mount_point.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => error.to_string(),
                };
                let message = format!("cannot mount a tiny tmpfs for the disk-full test: {why}");
                if peers_required() || std::env::var_os("CI").is_some() {
                    panic!("{message}");
                }
                eprintln!("SKIP: {message}");
                None
            }
        }
    }
}

impl Drop for TinyFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

#[test]
fn disk_full_gets_status_a700_and_scp_keeps_serving() {
    let Some(files) = standard_test_data() else {
        return;
    };
    let ct = standard_file(files, "ct.dcm"); // 512 KiB: more than the file system holds
    let small = standard_file(files, "small.dcm");
    let dir = scratch_dir("hostile-disk-full");
    let Some(tiny) = TinyFilesystem::mount(&dir.join("tiny")) else {
        return;
    };
    let output = tiny.mount_point.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    let Some(report) = raw_store(&dir, port, &ct.path, &[]) else {
        return;
    };
    assert_eq!(
        report["status"],
        OUT_OF_RESOURCES,
        "{report}\n{}",
        scp.describe()
    );
    assert!(
        wait_until(LOG_TIMEOUT, || scp
            .stderr()
            .lines()
            .any(|line| line.starts_with("E: "))),
        "no E: line for the full disk\n{}",
        scp.describe()
    );
    assert_contains(&scp.stderr(), &ct.sop_instance_uid, &scp.describe());
    assert!(
        wait_until(LOG_TIMEOUT, || files_under(&output).is_empty()),
        "the partial file was left on the full disk: {:#?}",
        files_under(&output)
    );
    assert_still_serving(&dir, port, &output, &small, &scp);
    drop(scp);
    drop(tiny);
}
