//! `dimsum migrate`: moves the index of a `dimsum serve` data folder from its embedded SQLite
//! database into a PostgreSQL database, so that several `dimsum serve --index postgres://…
//! --node NAME` nodes can share it (issue 10, scale out; docs/scale-out.md).
//!
//! The archive is opened as `dimsum serve` opens it, lock included, so a server running on the
//! folder stops the migration before anything is read, and none can start while it runs; an
//! archive that was not closed cleanly is checked first, as a server would. The index is then
//! copied row for row ([`copy_from_sqlite`]: one transaction, so a failure leaves the database
//! as it was) into a database that must hold no index yet. The SQLite index stays as it was,
//! and a marker file ([`serve_archive::MIGRATED_MARKER`]) keeps the folder from being opened
//! on it again without `--index`.
//! The copy is marked unchecked: the first node started on it makes index and storage agree
//! before it serves.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::ProgressStyle;
use tracing::{error, info};

use dimsum_pacs::archive::INDEX_FILE;
use dimsum_pacs::index::postgres::{CopyProgress, copy_from_sqlite, without_password};

use crate::dicomweb;
use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::serve_archive;
use crate::serve_config::ServeConfig;

/// Options of `dimsum migrate`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Stop the server first: the data folder's lock is taken as `dimsum serve` takes it, and a \
server running on the folder makes the migration fail before anything is copied. Then start \
each node with `dimsum serve --index URL --data DIR --node NAME`; the first one to start \
checks the index against the storage. Once copied, the folder is marked \
(DIR/index.sqlite.migrated, naming the database): nothing opens it without --index again \
while the mark is there.

Exit status: 0 when the index was copied, 2 for a bad command line, a folder that is no \
archive or one migrated already, 6 when the copy failed (the folder in use, the database \
unreachable or holding an index already, a value PostgreSQL cannot hold); nothing is left in \
the database then.")]
pub struct Options {
    /// The archive's data folder (what `dimsum serve --data` was given); its index is
    /// DIR/index.sqlite, which is read and left as it is.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The PostgreSQL database to copy the index into,
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE: it must exist (createdb) and hold no
    /// index yet; its tables are created.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Draw no progress bar (there is one on a terminal otherwise).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    if !(options.to.starts_with("postgres://") || options.to.starts_with("postgresql://")) {
        error!(
            "--to {}: give a postgres://USER@HOST:PORT/DATABASE URL",
            without_password(&options.to)
        );
        return Code::Usage;
    }
    // Opening would create an archive where there is none: a mistyped folder must not.
    let index = options.data.join(INDEX_FILE);
    if !index.is_file() {
        error!(
            "{} is not the data folder of a dimsum archive (it has no {INDEX_FILE})",
            options.data.display()
        );
        return Code::Usage;
    }
    let config = ServeConfig {
        data: options.data.clone(),
        ..ServeConfig::default()
    };
    // Held until the copy is over: no server starts on the folder meanwhile.
    let archive = match serve_archive::open_archive(&config).await {
        Ok(archive) => archive,
        Err(code) => return code,
    };
    let target = without_password(&options.to);
    let started = Instant::now();
    let bar = dicomweb::progress_bar(Some(0), options.verbosity, options.no_progress);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>15} {wide_bar} {pos}/{len} rows ({per_sec}, {eta})")
    {
        bar.set_style(style);
    }
    let progress = |progress: CopyProgress| {
        if progress.copied == 0 {
            bar.reset();
            bar.set_length(progress.total);
            bar.set_message(progress.table);
        }
        bar.set_position(progress.copied);
    };
    let copied = copy_from_sqlite(&index, &options.to, progress).await;
    bar.finish_and_clear();
    serve_archive::close(&archive).await;
    let report = match copied {
        Ok(report) => report,
        Err(error) => {
            error!(
                "cannot migrate the index of {} to {target}: {error}; nothing was copied",
                options.data.display()
            );
            return Code::Internal;
        }
    };
    info!(
        "copied {:?} in {:.1} s",
        report.tables,
        started.elapsed().as_secs_f64()
    );
    if let Err(error) = serve_archive::mark_migrated(&options.data, &target) {
        error!(
            "the index was copied to {target}, but {} could not be written ({error}): do not \
             start `dimsum serve` on {} without --index",
            options.data.join(serve_archive::MIGRATED_MARKER).display(),
            options.data.display()
        );
        return Code::Internal;
    }
    if !options.verbosity.quiet {
        eprintln!(
            "Summary: {} patients, {} studies, {} series, {} instances ({} rows) copied from {} \
             to {target} in {:.1} s; start the nodes with --index {target} --data {}",
            report.rows("patient"),
            report.rows("study"),
            report.rows("series"),
            report.rows("instance"),
            report.total_rows(),
            index.display(),
            report.elapsed.as_secs_f64(),
            options.data.display()
        );
    }
    Code::Success
}
