//! `dimsum termscu`: asks a server to shut down with DCMTK's private Shutdown SOP Class, like
//! DCMTK's termscu.
//!
//! The request is an association proposing only that SOP class. A server that honours it (DCMTK's
//! `dcmqrscp --allow-shutdown`, `dimsum <server> --allow-shutdown`) refuses the association with
//! rejected-permanent, service-user, no-reason-given and stops; one that does not know it or is
//! not configured to honour it accepts the association without the context (DCMTK's storescp,
//! dimsum's servers by default). DCMTK's termscu reports both as failures; this one tells them
//! apart, and exits 0 only when the server took the request.

use tracing::{error, info, warn};

use dimsum_net::server::{PRIVATE_SHUTDOWN_SOP_CLASS, shutdown_rejection};
use dimsum_net::ul::negotiation::{AssociationRequest, Negotiated, ProposedContext};
use dimsum_net::ul::pdu::AssociateRj;
use dimsum_net::ul::uids::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dimsum_net::{Association, Limits};

use crate::exit::{self, Code};
use crate::logging::{self, Verbosity};
use crate::options::PeerOptions;

/// Options of `dimsum termscu`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub peer: PeerOptions,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Whether `rejection` is how DCMTK's servers answer a shutdown request they honour.
fn is_shutdown_refusal(rejection: &AssociateRj) -> bool {
    *rejection == shutdown_rejection()
}

/// What a server that accepted the association made of the shutdown request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// It accepted the shutdown SOP class (a server that answers the request this way).
    AcceptedTheClass,
    /// It refused the shutdown SOP class (the presentation context result): it goes on running.
    ClassRefused(String),
}

/// The verdict for an association the server accepted.
fn verdict_for_acceptance(negotiated: &Negotiated) -> Verdict {
    if negotiated
        .find_accepted(PRIVATE_SHUTDOWN_SOP_CLASS)
        .is_some()
    {
        return Verdict::AcceptedTheClass;
    }
    let result = negotiated
        .contexts
        .iter()
        .find(|context| context.abstract_syntax == PRIVATE_SHUTDOWN_SOP_CLASS)
        .map_or_else(
            || "no answer for its presentation context".to_owned(),
            |context| context.result.to_string(),
        );
    Verdict::ClassRefused(result)
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
    let tls = match options.peer.network.tls() {
        Ok(tls) => tls,
        Err(error) => {
            error!("{error}");
            return Code::Usage;
        }
    };
    info!(
        "Requesting shutdown of {}@{} as {} (DCMTK's private shutdown SOP class)",
        request.called_ae_title, address, request.calling_ae_title
    );
    let connected = Association::connect_with(
        &address,
        &request,
        options.peer.network.timeouts(),
        Limits::default(),
        tls.as_ref(),
    )
    .await;
    let association = match connected {
        Ok(association) => association,
        Err(dimsum_net::Error::Rejected(rejection)) if is_shutdown_refusal(&rejection) => {
            info!(
                "Shutdown request accepted: {address} refused the association ({rejection}), \
                 as DCMTK's servers do when they shut down"
            );
            return Code::Success;
        }
        Err(error) => return exit::report(&error, &address),
    };
    let verdict = verdict_for_acceptance(association.negotiated());
    info!("Releasing association");
    if let Err(error) = association.release().await {
        warn!("the release failed: {error}");
    }
    match verdict {
        Verdict::AcceptedTheClass => {
            info!("Shutdown request accepted: {address} accepted the shutdown SOP class");
            Code::Success
        }
        Verdict::ClassRefused(result) => {
            error!(
                "{address} does not honour the shutdown request (the shutdown SOP class was \
                 refused: {result}); it goes on running. A dimsum server honours it with \
                 --allow-shutdown, DCMTK's dcmqrscp with --allow-shutdown."
            );
            Code::Rejected
        }
    }
}

/// The association request: the shutdown SOP class with the transfer syntaxes DCMTK's termscu
/// proposes.
fn build_request(options: &Options) -> Result<AssociationRequest, String> {
    let mut request = AssociationRequest::new(
        options.peer.association.calling("TERMSCU"),
        &options.peer.association.call,
    )
    .with_context(ProposedContext::new(
        PRIVATE_SHUTDOWN_SOP_CLASS,
        [
            IMPLICIT_VR_LITTLE_ENDIAN,
            EXPLICIT_VR_LITTLE_ENDIAN,
            EXPLICIT_VR_BIG_ENDIAN,
        ],
    ));
    request.max_pdu_length = options.peer.network.max_pdu;
    request.user_identity = options.peer.association.user_identity();
    request.to_pdu().map_err(|e| e.to_string())?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    use dimsum_net::ul::negotiation::NegotiatedContext;
    use dimsum_net::ul::pdu::{
        PresentationContextResult, RejectResult, RejectSource, ServiceUserReason,
    };

    fn answered(result: PresentationContextResult) -> Negotiated {
        let accepted = result == PresentationContextResult::Acceptance;
        Negotiated {
            contexts: vec![NegotiatedContext {
                id: 1,
                abstract_syntax: PRIVATE_SHUTDOWN_SOP_CLASS.to_owned(),
                result,
                transfer_syntax: accepted.then(|| IMPLICIT_VR_LITTLE_ENDIAN.to_owned()),
                scu_role: accepted,
                scp_role: false,
            }],
            ..Negotiated::default()
        }
    }

    #[test]
    fn only_dcmtks_refusal_counts_as_a_shutdown() {
        assert!(is_shutdown_refusal(&AssociateRj {
            result: RejectResult::Permanent,
            source: RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven),
        }));
        for other in [
            AssociateRj {
                result: RejectResult::Transient,
                source: RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven),
            },
            AssociateRj {
                result: RejectResult::Permanent,
                source: RejectSource::ServiceUser(ServiceUserReason::CallingAeTitleNotRecognized),
            },
            dimsum_net::ul::negotiation::reject_local_limit_exceeded(),
        ] {
            assert!(!is_shutdown_refusal(&other), "{other}");
        }
    }

    #[test]
    fn an_accepted_association_is_a_shutdown_only_with_the_class_accepted() {
        assert_eq!(
            verdict_for_acceptance(&answered(PresentationContextResult::Acceptance)),
            Verdict::AcceptedTheClass
        );
        let refused = verdict_for_acceptance(&answered(
            PresentationContextResult::AbstractSyntaxNotSupported,
        ));
        assert_eq!(
            refused,
            Verdict::ClassRefused(
                PresentationContextResult::AbstractSyntaxNotSupported.to_string()
            )
        );
        assert_eq!(
            verdict_for_acceptance(&Negotiated::default()),
            Verdict::ClassRefused("no answer for its presentation context".to_owned())
        );
    }

    #[test]
    fn the_request_proposes_the_shutdown_class_as_dcmtk_does() {
        use clap::Parser;
        #[derive(Parser)]
        struct Tool {
            #[command(flatten)]
            options: Options,
        }
        let args = [
            "termscu",
            "--aetitle",
            "OPERATOR",
            "--call",
            "ARCHIVE",
            "pacs",
            "11112",
        ];
        let tool = Tool::try_parse_from(args).expect("parses");
        let request = build_request(&tool.options).expect("a valid request");
        assert_eq!(
            (
                request.calling_ae_title.as_str(),
                request.called_ae_title.as_str()
            ),
            ("OPERATOR", "ARCHIVE")
        );
        assert_eq!(
            (tool.options.peer.host.as_str(), tool.options.peer.port),
            ("pacs", 11112)
        );
        let [context] = request.contexts.as_slice() else {
            panic!("one context, not {:?}", request.contexts);
        };
        assert_eq!(context.abstract_syntax, PRIVATE_SHUTDOWN_SOP_CLASS);
        assert_eq!(
            context.transfer_syntaxes,
            [
                IMPLICIT_VR_LITTLE_ENDIAN,
                EXPLICIT_VR_LITTLE_ENDIAN,
                EXPLICIT_VR_BIG_ENDIAN
            ]
        );
    }
}
