//! `dimsum echoscu`: Verification SCU (PS3.4 Annex A), like DCMTK's echoscu.

use tracing::{error, info};

use dimsum_net::scu;
use dimsum_net::ul::negotiation::ProposedContext;
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};

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
    let association = match options
        .peer
        .open("ECHOSCU", |request| {
            Ok::<_, std::convert::Infallible>(request.with_context(ProposedContext::new(
                VERIFICATION_SOP_CLASS,
                [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN],
            )))
        })
        .await
    {
        Ok(association) => association,
        Err(code) => return code,
    };
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
