//! Running a server tool until SIGINT/SIGTERM.

use tracing::{error, info};

use dimsum_net::scp::Dispatcher;
use dimsum_net::{Server, ServerConfig};

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
        Ok(config) => run_server(&options.bind, port, config, dispatcher).await,
        Err(error) => {
            error!("{error}");
            Code::Usage
        }
    }
}

/// Binds `bind:port`, serves with `dispatcher` until SIGINT or SIGTERM, then stops gracefully.
pub async fn run_server(
    bind: &str,
    port: u16,
    config: ServerConfig,
    dispatcher: Dispatcher,
) -> Code {
    let address = format!("{bind}:{port}");
    let server = match Server::bind(&address, config, dispatcher).await {
        Ok(server) => server,
        Err(e) => {
            error!("cannot listen on {address}: {e}");
            return Code::Internal;
        }
    };
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("Shutting down");
        handle.shutdown();
    });
    server.run().await;
    Code::Success
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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
