//! What the C-FIND, C-GET and C-MOVE handlers are given (PS3.4 Annex C.4).

use std::net::SocketAddr;

use bytes::Bytes;

use dimsum_dimse::message::Priority;
use dimsum_dimse::status::Status;

use super::{RequestContext, ScpFailure};
use crate::DataSetStream;

/// A C-FIND, C-GET or C-MOVE request as its handler sees it.
#[derive(Debug, Clone)]
pub struct Query {
    /// The information model (Affected SOP Class UID), e.g. Study Root FIND or GET.
    pub sop_class_uid: String,
    pub priority: Priority,
    /// The transfer syntax the identifier is encoded in (and C-FIND matches must be).
    pub transfer_syntax_uid: String,
    /// The request's identifier: the keys to match (and, for C-FIND, to return).
    pub identifier: Bytes,
    pub calling_ae_title: String,
    pub peer_address: SocketAddr,
}

impl Query {
    /// Reads the identifier of a request (bounded by the association's in-memory limit).
    pub(super) async fn read(
        sop_class_uid: &str,
        priority: Priority,
        identifier: Option<DataSetStream>,
        context: &RequestContext,
    ) -> Result<Query, ScpFailure> {
        let Some(identifier) = identifier else {
            return Err(ScpFailure::new(
                Status::CANNOT_UNDERSTAND,
                "the request has no identifier",
            ));
        };
        let identifier = identifier
            .collect(context.association.limits().max_in_memory_data_set)
            .await?;
        let info = context.info();
        Ok(Query {
            sop_class_uid: sop_class_uid.to_owned(),
            priority,
            transfer_syntax_uid: context.transfer_syntax().to_owned(),
            identifier,
            calling_ae_title: info.negotiated.calling_ae_title.clone(),
            peer_address: info.peer_address,
        })
    }
}
