//! `dimsum movescu`: Query/Retrieve C-MOVE SCU (PS3.4 C.4.2), like DCMTK's movescu: asks the
//! peer to send the matching instances to a move destination, which may be this tool itself
//! (`--port`: a temporary Storage SCP writes them into a folder).

use tracing::{error, info};

use dimsum_net::ServerConfig;
use dimsum_net::dataset::{QueryService, sop_class, transfer_syntax};
use dimsum_net::scp::StoreScp;
use dimsum_net::scu::{self, MoveReceiver, QueryError, query_context};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::qr_options::{self, RetrieveQueryOptions};
use crate::retrieve::{self, ReceiveOptions};

/// Options of `dimsum movescu`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub query: RetrieveQueryOptions,
    /// The move destination's AE title [default: our own AE title].
    #[arg(long = "move", value_name = "AE")]
    pub move_destination: Option<String>,
    /// Receive the instances ourselves: listen on this port for the peer's C-STORE
    /// sub-operations (the move destination must then be us, as the peer knows us).
    #[arg(long = "port", value_name = "PORT")]
    pub incoming_port: Option<u16>,
    /// Address to listen on with --port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0",
        requires = "incoming_port"
    )]
    pub bind: String,
    #[command(flatten)]
    pub receive: ReceiveOptions,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let query = match options.query.query() {
        Ok(query) => query,
        Err(code) => return code,
    };
    let model = query.model;
    let calling = options.query.peer.calling("MOVESCU").to_owned();
    let destination = options
        .move_destination
        .clone()
        .unwrap_or_else(|| calling.clone());
    let receiver = match options.incoming_port {
        Some(port) => match bind_receiver(&options, port, &destination).await {
            Ok(receiver) => Some(receiver),
            Err(code) => return code,
        },
        None => None,
    };
    let association = match options
        .query
        .peer
        .open("MOVESCU", |request| {
            Ok::<_, QueryError>(request.with_context(query_context(model, QueryService::Move)?))
        })
        .await
    {
        Ok(association) => association,
        Err(code) => return code,
    };
    let mut progress = options.receive.progress();
    let moved = match receiver {
        Some(receiver) => scu::move_to_self(&association, receiver, &query, |p| progress.update(p))
            .await
            .map(|(outcome, statistics)| {
                info!(
                    "Received on port {:?}: {statistics:?}",
                    options.incoming_port
                );
                outcome
            }),
        None => scu::move_to(&association, &destination, &query, |p| progress.update(p)).await,
    };
    let code = match moved {
        Ok(outcome) => retrieve::summarize("Move", &outcome, options.verbosity.quiet),
        Err(error) => qr_options::query_failed(&error),
    };
    if association.ending().is_some() {
        return code;
    }
    qr_options::finish(association, options.query.abort, code).await
}

/// The temporary Storage SCP for `--port`, answering as `ae_title` and writing into the output
/// folder; it accepts every storage SOP class in every transfer syntax we know.
async fn bind_receiver(options: &Options, port: u16, ae_title: &str) -> Result<MoveReceiver, Code> {
    let storage = options.receive.storage()?;
    let mut config = ServerConfig::new(ae_title);
    config.max_pdu_length = options.query.peer.network.max_pdu;
    config.timeouts = options.query.peer.network.timeouts();
    config.tls = options
        .query
        .peer
        .network
        .tls
        .server_tls()
        .map_err(|error| {
            error!("{error}");
            Code::Usage
        })?;
    let store = StoreScp::new(
        storage,
        sop_class::storage_sop_classes()
            .into_iter()
            .map(String::from)
            .collect(),
        transfer_syntax::known_transfer_syntaxes()
            .into_iter()
            .map(String::from)
            .collect(),
    );
    let address = format!("{}:{port}", options.bind);
    MoveReceiver::bind(address.as_str(), config, store)
        .await
        .map_err(|error| {
            error!("cannot listen on {address}: {error}");
            Code::Internal
        })
}
