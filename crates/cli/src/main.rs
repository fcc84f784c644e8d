//! `dimsum`: DICOM network tools in the style of DCMTK, thin over the dimsum libraries.

mod args;
mod delete;
mod dicomweb;
mod echoscp;
mod echoscu;
mod exit;
mod findscu;
mod getscu;
mod logging;
mod migrate;
mod movescu;
mod options;
mod qido;
mod qr_options;
mod qr_services;
mod qrscp;
mod retrieve;
mod serve;
mod serve_archive;
mod serve_config;
mod storescp;
mod storescu;
mod stow;
mod termscu;
mod tls_options;
mod wado;

use clap::{Parser, Subcommand};

/// DICOM network tools.
#[derive(Parser)]
#[command(name = "dimsum", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Tool,
}

#[derive(Subcommand)]
enum Tool {
    /// Verification SCU: send C-ECHO requests to a peer (like DCMTK's echoscu).
    Echoscu(echoscu::Options),
    /// Verification SCP: answer C-ECHO requests (the echo part of DCMTK's storescp).
    Echoscp(echoscp::Options),
    /// Storage SCU: send DICOM files and folders to a peer (like DCMTK's storescu).
    Storescu(storescu::Options),
    /// Storage SCP: receive instances into Part 10 files (like DCMTK's storescp).
    Storescp(storescp::Options),
    /// Send everything in files and folders, with a summary (like DCMTK's dcmsend).
    Dcmsend(storescu::Options),
    /// Receive instances into a folder (like DCMTK's dcmrecv).
    Dcmrecv(storescp::Options),
    /// Query SCU: C-FIND on a Q/R or worklist information model (like DCMTK's findscu).
    Findscu(findscu::Options),
    /// Retrieve SCU: C-GET instances into a folder (like DCMTK's getscu).
    Getscu(getscu::Options),
    /// Retrieve SCU: C-MOVE instances to a destination, or to ourselves (like DCMTK's movescu).
    Movescu(movescu::Options),
    /// The archive: Storage, Query/Retrieve and Storage Commitment over a data directory with
    /// a SQLite index (AE title DIMSUM, port 11112, data in ./dimsum-data by default).
    Serve(serve_archive::Options),
    /// Delete patients, studies, series or instances from the data folder of `dimsum serve`.
    Delete(delete::Options),
    /// Copy the SQLite index of a `dimsum serve` data folder into a PostgreSQL database, for
    /// `dimsum serve --index postgres://…` nodes to share.
    Migrate(migrate::Options),
    /// Query/Retrieve SCP over a folder, with optional worklist (like DCMTK's dcmqrscp).
    Qrscp(qrscp::Options),
    /// Ask a server to shut down with DCMTK's private shutdown request (like DCMTK's termscu).
    Termscu(termscu::Options),
    /// QIDO-RS: search a DICOMweb server for studies, series or instances (PS3.18 10.6).
    Qido(qido::Options),
    /// WADO-RS: retrieve a study, series or instance from a DICOMweb server into a folder, or
    /// print its metadata (PS3.18 10.4).
    Wado(wado::Options),
    /// STOW-RS: store DICOM files and folders on a DICOMweb server (PS3.18 10.5).
    Stow(stow::Options),
}

/// Keeps glibc from handing every data-set buffer (a 512 KB file, a 128 KB PDU) back to the
/// kernel when it is freed and faulting fresh zeroed pages in for the next one: buffers up to
/// 8 MiB come from the heap and freed memory is kept up to 64 MiB. On one association this
/// cuts the sender's system time by a third (docs/performance.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes two glibc malloc parameters; it is called once, before any
    // other thread exists, and its result (0 when a value is refused) needs no handling.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// dicom-rs's parser meets the end of every data set it decodes as an error that it then takes
/// for the end, and snafu captures a backtrace for each such error whenever RUST_BACKTRACE
/// allows it: one capture per C-FIND match decoded, 70% more CPU for findscu when
/// RUST_BACKTRACE=1 is set (docs/performance.md). Library backtraces are turned off unless the
/// user asked for them with RUST_LIB_BACKTRACE; panics keep theirs.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in main, before any other thread exists, so nothing reads
        // the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

fn main() -> std::process::ExitCode {
    quiet_library_backtraces();
    tune_allocator();
    let cli = Cli::parse_from(args::expand_dcmtk_options(std::env::args_os()));
    // A client's tasks (the sender and the association drivers) hand work to each other at
    // every message: on one thread that is a function call, not a cross-thread wake-up. Disk
    // work goes to the blocking pool either way. Servers spread associations over all cores.
    let mut builder = match cli.command {
        Tool::Echoscu(_)
        | Tool::Storescu(_)
        | Tool::Dcmsend(_)
        | Tool::Findscu(_)
        | Tool::Getscu(_)
        | Tool::Movescu(_)
        | Tool::Termscu(_)
        | Tool::Qido(_)
        | Tool::Wado(_)
        | Tool::Stow(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("E: cannot start the async runtime: {error}");
            return exit::Code::Internal.into();
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Tool::Echoscu(options) => echoscu::run(options).await,
            Tool::Echoscp(options) => echoscp::run(options).await,
            Tool::Storescu(options) => storescu::run(options, "STORESCU").await,
            Tool::Storescp(options) => storescp::run(options, "STORESCP").await,
            Tool::Dcmsend(options) => storescu::run(options, "DCMSEND").await,
            Tool::Dcmrecv(options) => storescp::run(options, "DCMRECV").await,
            Tool::Findscu(options) => findscu::run(options).await,
            Tool::Getscu(options) => getscu::run(options).await,
            Tool::Movescu(options) => movescu::run(options).await,
            Tool::Qrscp(options) => qrscp::run(options).await,
            Tool::Serve(options) => serve_archive::run(options).await,
            Tool::Delete(options) => delete::run(options).await,
            Tool::Migrate(options) => migrate::run(options).await,
            Tool::Termscu(options) => termscu::run(options).await,
            Tool::Qido(options) => qido::run(options).await,
            Tool::Wado(options) => wado::run(options).await,
            Tool::Stow(options) => stow::run(options).await,
        }
    });
    code.into()
}
