//! Running a server tool until SIGINT/SIGTERM (or an honoured shutdown request), then printing
//! what it did.

use tracing::{error, info};

use dimsum_net::scp::Dispatcher;
use dimsum_net::{Server, ServerConfig, ServerStatistics};

use crate::options::ServerOptions;

use crate::exit::Code;

/// Serves with `dispatcher` as `options` say (our AE title defaulting to `default_ae_title`).
pub async fn serve(
    options: &ServerOptions,
    port: u16,
    default_ae_title: &str,
    dispatcher: Dispatcher,
) -> Code {
    match options.config(default_ae_title) {
        Ok(config) => {
            let address = format!("{}:{port}", options.bind);
            run_server(&address, config, dispatcher, |_| {}).await
        }
        Err(error) => {
            error!("{error}");
            Code::Usage
        }
    }
}

/// Binds `address` ("host:port"), tells `on_listening` where it listens, serves with
/// `dispatcher` until SIGINT or SIGTERM (or, when configured, DCMTK's shutdown request), then
/// stops gracefully and prints the statistics.
pub async fn run_server(
    address: &str,
    config: ServerConfig,
    dispatcher: Dispatcher,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Code {
    let grace = config.shutdown_grace.as_secs_f64();
    let server = match Server::bind(address, config, dispatcher).await {
        Ok(server) => server,
        Err(e) => {
            error!("cannot listen on {address}: {e}");
            return Code::Internal;
        }
    };
    if let Ok(listening) = server.local_addr() {
        on_listening(listening);
    }
    let handle = server.handle();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        info!("Shutting down: no new associations; running ones have {grace:.0} s to finish");
        handle.shutdown();
    });
    let statistics = server.run().await;
    signals.abort();
    print_statistics(&statistics);
    Code::Success
}

/// Prints the statistics of a server that has stopped, for the person who ran it (on stderr,
/// like every message of the tools; not with `-q`).
pub fn print_statistics(statistics: &ServerStatistics) {
    if !tracing::enabled!(tracing::Level::WARN) {
        return;
    }
    let report = format!("{statistics:#}");
    eprintln!("Server stopped. Statistics:");
    for line in report.lines() {
        eprintln!("  {line}");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
