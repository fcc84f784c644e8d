//! `dimsum echoscp`: Verification SCP (PS3.4 Annex A), the echo part of DCMTK's storescp.

use std::time::Duration;

use tracing::{error, info};

use dimsum_net::scp::{Dispatcher, EchoScp};
use dimsum_net::{Server, ServerConfig, Timeouts};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::options::parse_max_pdu;

/// Options of `dimsum echoscp`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// TCP port to listen on.
    pub port: u16,
    /// Our AE title.
    #[arg(long = "aetitle", value_name = "AE", default_value = "ECHOSCP")]
    pub aetitle: String,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: String,
    /// Maximum PDU length we receive (0 = unlimited, else 4096..=16777216).
    #[arg(long = "max-pdu", value_name = "BYTES", default_value_t = 16384, value_parser = parse_max_pdu)]
    pub max_pdu: u32,
    /// Reject associations whose called AE title is not ours.
    #[arg(long)]
    pub require_called_aet: bool,
    /// Accept only this calling AE title (repeat for several).
    #[arg(long = "allow-calling", value_name = "AE")]
    pub allow_calling: Vec<String>,
    /// Associations served at once; more are rejected (transient, local limit exceeded).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_associations: u32,
    /// ACSE timeout in seconds (0 = none).
    #[arg(long = "acse-timeout", value_name = "SECONDS", default_value_t = 30)]
    pub acse_timeout: u64,
    /// ARTIM timeout in seconds: wait for the association request, and for the peer to close.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub artim_timeout: u64,
    /// Abort an association idle for this many seconds (0 = never).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub idle_timeout: u64,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let mut config = ServerConfig::new(&options.aetitle);
    config.max_pdu_length = options.max_pdu;
    config.require_called_ae_title = options.require_called_aet;
    config.allowed_calling_ae_titles =
        (!options.allow_calling.is_empty()).then(|| options.allow_calling.clone());
    config.max_associations = options.max_associations as usize;
    config.timeouts = Timeouts {
        acse: seconds(options.acse_timeout),
        artim: Duration::from_secs(options.artim_timeout),
        idle: seconds(options.idle_timeout),
        ..Timeouts::default()
    };
    let dispatcher = Dispatcher::new().with(EchoScp::new());
    let address = format!("{}:{}", options.bind, options.port);
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
