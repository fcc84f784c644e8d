//! PostgreSQL for the tests of the archive's server database (issue 10): the throw-away server
//! `scripts/test` starts (`DIMSUM_TEST_POSTGRES`, its URL), a fresh database in it for each
//! test, and servers of a test's own (`scripts/postgres start`) for the tests that restart
//! them.
//!
//! [`Backend`] is which index a `dimsum serve` of a test runs on, so that one test body runs on
//! both: the embedded SQLite index, or a fresh PostgreSQL database (`--index URL`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{peer_missing, repo_root};

/// The variable that holds the test server's URL.
pub const TEST_POSTGRES: &str = "DIMSUM_TEST_POSTGRES";

/// The index a test's archive runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite index in the data directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

impl Backend {
    /// A short name, to label runs and folders.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The `dimsum serve` flags that put its index on this backend (a fresh database for
    /// PostgreSQL, named after `label`). `None` (after `SKIP:`) when the test server is
    /// missing.
    pub fn serve_args(self, label: &str) -> Option<Vec<String>> {
        match self {
            Backend::Sqlite => Some(Vec::new()),
            Backend::Postgres => Some(vec!["--index".into(), fresh_database(label)?]),
        }
    }
}

/// The URL of the test PostgreSQL server. `None` (after `SKIP:`, or a panic under
/// `DIMSUM_REQUIRE_PEERS`) when it is not set.
pub fn server_url() -> Option<String> {
    match std::env::var(TEST_POSTGRES) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => peer_missing(&format!(
            "PostgreSQL: {TEST_POSTGRES} is not set (scripts/test starts a server and sets it)"
        )),
    }
}

/// Creates an empty database on `server` (a server URL) named after `label`, unique in this
/// run (the library's [`dimsum_pacs::index::postgres::create_database`]); its URL.
#[track_caller]
pub fn create_database(server: &str, label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "t_{safe}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to create the database");
    runtime
        .block_on(dimsum_pacs::index::postgres::create_database(server, &name))
        .unwrap_or_else(|error| panic!("cannot create the database {name}: {error}"))
}

/// A fresh database on the test server, named after `label`. `None` (after `SKIP:`) when the
/// server is missing.
#[track_caller]
pub fn fresh_database(label: &str) -> Option<String> {
    Some(create_database(&server_url()?, label))
}

/// Runs one SQL statement on `url` with psql and returns its output rows (unaligned, tuples
/// only).
#[track_caller]
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-X",
            "-A",
            "-t",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A PostgreSQL server of a test's own (`scripts/postgres start`), for a test that restarts it;
/// stopped and removed on drop.
pub struct OwnServer {
    dir: PathBuf,
    url: String,
}

impl OwnServer {
    /// Starts one in `dir` (a folder that must not exist yet). `None` (after `SKIP:`) when
    /// PostgreSQL cannot be started (not installed) and peers are not required.
    pub fn start(dir: &Path) -> Option<OwnServer> {
        let output = Command::new(repo_root().join("scripts/postgres"))
            .arg("start")
            .arg(dir)
            .output()
            .expect("run scripts/postgres");
        if !output.status.success() {
            return peer_missing(&format!(
                "PostgreSQL: scripts/postgres start failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let url = std::fs::read_to_string(dir.join("url"))
            .expect("scripts/postgres writes the URL")
            .trim()
            .to_owned();
        Some(OwnServer {
            dir: dir.to_path_buf(),
            url,
        })
    }

    /// The server's URL (its `postgres` database).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server and starts it again on the same port and data (`pg_ctl stop -m fast`:
    /// every connection is cut).
    #[track_caller]
    pub fn restart(&self) {
        let output = Command::new(repo_root().join("scripts/postgres"))
            .arg("restart")
            .arg(&self.dir)
            .output()
            .expect("run scripts/postgres restart");
        assert!(
            output.status.success(),
            "scripts/postgres restart failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/postgres"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}
