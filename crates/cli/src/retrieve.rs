//! What getscu and movescu share: where received instances go, the progress line and the
//! summary of a C-GET or C-MOVE (PS3.4 C.4.2, C.4.3).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use dimsum_net::scu::{RetrieveOutcome, RetrieveProgress};
use dimsum_net::storage::FileStorage;

use crate::exit::Code;

/// Where received instances are written, and how progress is shown.
#[derive(clap::Args, Debug)]
pub struct ReceiveOptions {
    /// Folder to write received instances into (created if missing).
    #[arg(long = "output-directory", value_name = "DIR", default_value = ".")]
    pub output_directory: PathBuf,
    /// No progress line (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

impl ReceiveOptions {
    /// The storage that writes received instances atomically into the output folder, logging
    /// each.
    pub fn storage(&self) -> Result<FileStorage, Code> {
        FileStorage::new(&self.output_directory)
            .map(|storage| {
                storage.on_stored(|stored| {
                    info!(
                        "Stored {} ({}, {} bytes)",
                        stored.path.display(),
                        stored.instance.sop_class_uid,
                        stored.data_set_length
                    );
                })
            })
            .map_err(|e| {
                error!(
                    "cannot use {} as output folder: {e}",
                    self.output_directory.display()
                );
                Code::Internal
            })
    }

    /// The progress display for one retrieval.
    pub fn progress(&self) -> ProgressLine {
        ProgressLine {
            enabled: !self.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            started: Instant::now(),
            last_drawn: None,
        }
    }
}

/// One line on stderr, redrawn with each response (at most 10 times a second).
pub struct ProgressLine {
    enabled: bool,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl ProgressLine {
    pub fn update(&mut self, progress: &RetrieveProgress) {
        let counts = progress.sub_operations;
        info!(
            "{} response: remaining {}, completed {}, failed {}, warning {}",
            if progress.is_final {
                "Final"
            } else {
                "Pending"
            },
            show(counts.remaining),
            show(counts.completed),
            show(counts.failed),
            show(counts.warning)
        );
        if !self.enabled {
            return;
        }
        if !progress.is_final
            && self
                .last_drawn
                .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let done = counts.completed.unwrap_or(0) as u32
            + counts.failed.unwrap_or(0) as u32
            + counts.warning.unwrap_or(0) as u32;
        let total = done + counts.remaining.unwrap_or(0) as u32;
        eprint!(
            "\r{done}/{total} instances ({} failed, {} warning), {:.1} s   ",
            counts.failed.unwrap_or(0),
            counts.warning.unwrap_or(0),
            self.started.elapsed().as_secs_f64()
        );
        if progress.is_final {
            eprintln!();
        }
    }
}

fn show(count: Option<u16>) -> String {
    count.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// Prints the summary of a retrieval (unless `quiet`) and returns its exit status: success only
/// when every sub-operation completed.
pub fn summarize(what: &str, outcome: &RetrieveOutcome, quiet: bool) -> Code {
    let counts = outcome.sub_operations;
    let summary = format!(
        "{what} finished: {}; completed {}, failed {}, warning {}",
        outcome.status,
        counts.completed.unwrap_or(0),
        counts.failed.unwrap_or(0),
        counts.warning.unwrap_or(0)
    );
    if !quiet {
        eprintln!("{summary}");
    }
    if let Some(comment) = &outcome.error_comment {
        warn!("error comment: {comment}");
    }
    for uid in &outcome.failed_sop_instance_uids {
        warn!("failed: {uid}");
    }
    if outcome.status.is_success() {
        Code::Success
    } else {
        Code::DimseFailure
    }
}
