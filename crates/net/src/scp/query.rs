//! What the C-FIND, C-GET and C-MOVE handlers are given (PS3.4 Annex C.4).

use std::net::SocketAddr;

use bytes::Bytes;

use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::identifier;
use dimsum_dataset::query_model::QueryModel;
use dimsum_dataset::scan::ScanLimits;
use dimsum_dimse::message::Priority;
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::FindOptions;

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
    /// The request's identifier as received: the keys to match (and, for C-FIND, to return).
    pub identifier: Bytes,
    /// The identifier decoded (it passed the hardened scanner first).
    pub keys: InMemDicomObject,
    pub calling_ae_title: String,
    pub peer_address: SocketAddr,
    /// The C-FIND options the requestor and this SCP agreed on for the query's SOP class
    /// (PS3.4 C.5.1.1: relational queries, combined date-time matching, ...);
    /// [`FindOptions::NONE`] when none were negotiated, and for C-GET and C-MOVE.
    pub find_options: FindOptions,
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
        let transfer_syntax_uid = context.transfer_syntax().to_owned();
        let keys = identifier::decode(&identifier, &transfer_syntax_uid, &ScanLimits::default())
            .map_err(|error| {
                ScpFailure::new(
                    Status::CANNOT_UNDERSTAND,
                    format!("the identifier is not a valid data set: {error}"),
                )
            })?;
        check_level(sop_class_uid, &keys)?;
        let info = context.info();
        Ok(Query {
            sop_class_uid: sop_class_uid.to_owned(),
            priority,
            transfer_syntax_uid,
            identifier,
            keys,
            calling_ae_title: info.negotiated.calling_ae_title.clone(),
            peer_address: info.peer_address,
            find_options: context.find_options(sop_class_uid),
        })
    }
}

/// A Query/Retrieve identifier must name one of its model's levels in Query/Retrieve Level
/// (0008,0052) (PS3.4 C.4.1.1.3.1, C.6); a worklist query has none. Anything else answers
/// 0xA900 (identifier does not match SOP class).
fn check_level(sop_class_uid: &str, keys: &InMemDicomObject) -> Result<(), ScpFailure> {
    let Some((model, _)) = QueryModel::of_sop_class(sop_class_uid) else {
        return Ok(());
    };
    if model.levels().is_empty() {
        return Ok(());
    }
    let level = keys
        .element(tags::QUERY_RETRIEVE_LEVEL)
        .ok()
        .and_then(|element| element.to_str().ok())
        .map(|level| level.trim().to_owned());
    match level {
        Some(level) if model.levels().contains(&level.as_str()) => Ok(()),
        Some(level) => Err(ScpFailure::new(
            Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!(
                "Query/Retrieve Level {level:?} is not one of {} in this information model",
                model.levels().join(", ")
            ),
        )),
        None => Err(ScpFailure::new(
            Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "the identifier has no Query/Retrieve Level (0008,0052)",
        )),
    }
}
