//! Verification SCP (PS3.4 Annex A).

use std::sync::Arc;

use tracing::info;

use dimsum_dimse::message::{CEchoRsp, Message};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::SupportedContext;
use dimsum_ul::uids::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
};

use super::{FinalResponse, RequestContext, Scp, ScpFailure};
use crate::storage::BoxFuture;
use crate::{AssociationInfo, IncomingRequest};

/// The action an [`EchoScp`] takes on a C-ECHO: the status to answer with.
pub type EchoAction = Arc<dyn Fn(&AssociationInfo, u16) -> Status + Send + Sync>;

/// Verification SCP (PS3.4 Annex A): answers every C-ECHO-RQ, with success unless an action
/// says otherwise.
#[derive(Clone, Default)]
pub struct EchoScp {
    action: Option<EchoAction>,
}

impl EchoScp {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `action` (with the association and the request's message ID) for the status of each
    /// response.
    pub fn with_action(
        action: impl Fn(&AssociationInfo, u16) -> Status + Send + Sync + 'static,
    ) -> Self {
        Self {
            action: Some(Arc::new(action)),
        }
    }
}

impl Scp for EchoScp {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        vec![SupportedContext::new(
            VERIFICATION_SOP_CLASS,
            [
                EXPLICIT_VR_LITTLE_ENDIAN,
                IMPLICIT_VR_LITTLE_ENDIAN,
                EXPLICIT_VR_BIG_ENDIAN,
            ],
        )]
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let Message::CEchoRq(rq) = &request.message else {
                return Err(ScpFailure::unrecognized("C-ECHO"));
            };
            info!(
                "Received Echo Request (MsgID {}) from {}",
                rq.message_id,
                context.info().peer_ae_title()
            );
            let status = match &self.action {
                Some(action) => action(context.info(), rq.message_id),
                None => Status::SUCCESS,
            };
            Ok(Message::CEchoRsp(CEchoRsp {
                affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
                ..CEchoRsp::new(rq.message_id, status)
            })
            .into())
        })
    }
}
