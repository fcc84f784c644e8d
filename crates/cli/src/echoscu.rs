//! `dimsum echoscu`: Verification SCU (PS3.4 Annex A), like DCMTK's echoscu.

use tracing::{error, info};

use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};
use dimsum_net::{Association, Limits, scu};

use crate::exit::{self, Code};
use crate::logging::{self, Verbosity};
use crate::options::PeerOptions;

/// Options of `dimsum echoscu`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub peer: PeerOptions,
    /// Number of C-ECHO requests to send on the association.
    #[arg(short = 'r', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Abort the association instead of releasing it.
    #[arg(long)]
    pub abort: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let address = format!("{}:{}", options.peer.host, options.peer.port);
    let request = match build_request(&options) {
        Ok(request) => request,
        Err(message) => {
            error!("{message}");
            return Code::Usage;
        }
    };
    info!(
        "Requesting association with {}@{} as {}",
        request.called_ae_title, address, request.calling_ae_title
    );
    let tls = match options.peer.network.tls() {
        Ok(tls) => tls,
        Err(error) => {
            error!("{error}");
            return Code::Usage;
        }
    };
    let timeouts = options.peer.network.timeouts();
    let association = match Association::connect_with(
        &address,
        &request,
        timeouts,
        Limits::default(),
        tls.as_ref(),
    )
    .await
    {
        Ok(association) => association,
        Err(error) => return exit::report(&error, &address),
    };
    info!(
        "Association accepted: {}",
        association.info().peer_summary()
    );
    if association
        .negotiated()
        .find_accepted(VERIFICATION_SOP_CLASS)
        .is_none()
    {
        let result = association
            .negotiated()
            .contexts
            .first()
            .map(|context| context.result);
        error!(
            "no presentation context accepted for Verification SOP Class ({}): {}",
            VERIFICATION_SOP_CLASS,
            result.map(|result| result.to_string()).unwrap_or_default()
        );
        association.abort().await;
        return Code::Rejected;
    }
    let mut code = Code::Success;
    for _ in 0..options.repeat {
        match scu::echo(&association).await {
            Ok(status) if status.is_success() => {}
            Ok(_) => code = Code::DimseFailure,
            Err(error) => return exit::report(&error, &address),
        }
    }
    if options.abort {
        info!("Aborting association");
        association.abort().await;
        return code;
    }
    info!("Releasing association");
    match association.release().await {
        Ok(()) => {
            info!("Association released");
            code
        }
        Err(error) => exit::report(&error, &address),
    }
}

fn build_request(options: &Options) -> Result<AssociationRequest, String> {
    let mut request = AssociationRequest::new(
        options.peer.association.calling("ECHOSCU"),
        &options.peer.association.call,
    )
    .with_context(ProposedContext::new(
        VERIFICATION_SOP_CLASS,
        [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN],
    ));
    request.max_pdu_length = options.peer.network.max_pdu;
    request.user_identity = options.peer.association.user_identity();
    request.to_pdu().map_err(|e| e.to_string())?;
    Ok(request)
}
