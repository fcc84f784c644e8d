//! `dimsum echoscp`: Verification SCP (PS3.4 Annex A), the echo part of DCMTK's storescp.

use dimsum_net::scp::{Dispatcher, EchoScp};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::options::ServerOptions;

/// Options of `dimsum echoscp`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// TCP port to listen on.
    pub port: u16,
    #[command(flatten)]
    pub server: ServerOptions,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let dispatcher = Dispatcher::new().with(EchoScp::new());
    crate::serve::serve(&options.server, options.port, "ECHOSCP", dispatcher).await
}
