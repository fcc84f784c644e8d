//! C-GET and C-MOVE SCPs (PS3.4 Annex C.4.2, C.4.3): the handler names the instances that
//! match; the framework sends each with a C-STORE sub-operation — on the same association for
//! C-GET, on a new one to the move destination for C-MOVE — with a pending response after each
//! and the final response with the counts; a C-CANCEL-RQ stops it with status Cancel.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::{info, warn};

use dimsum_dataset::identifier;
use dimsum_dimse::message::{CGetRsp, CMoveRsp, Message, Priority};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AssociationRequest, ProposedContext, SupportedContext};

use super::{FinalResponse, Query, RequestContext, Scp, ScpFailure, contexts_for};
use crate::scu::store::{self, StoreRequest};
use crate::storage::BoxFuture;
use crate::{Association, Error, IncomingRequest, Role};

/// Where an instance's data set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceData {
    /// In memory.
    Memory(Bytes),
    /// `length` bytes of a file from `offset` (the data set of a Part 10 file, after its meta).
    File {
        path: PathBuf,
        offset: u64,
        length: u64,
    },
}

/// One instance to send, with its identity and encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrieveInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The transfer syntax `data` is encoded in; it is sent on a context that accepted it.
    pub transfer_syntax_uid: String,
    pub data: InstanceData,
}

/// A C-MOVE destination: its AE title and "host:port".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveDestination {
    pub ae_title: String,
    pub address: String,
}

/// The instances of a retrieval, produced as they are needed (an archive opens each file when
/// its turn comes). Dropping the stream (on C-CANCEL, or when the association ends) must stop
/// the work.
pub type InstanceStream = Pin<Box<dyn Stream<Item = Result<RetrieveInstance, ScpFailure>> + Send>>;

/// What a [`RetrieveHandler`] answers to a C-GET or C-MOVE: how many instances it will send,
/// which SOP classes and transfer syntaxes they use, and the instances themselves as a stream.
pub struct Retrieval {
    /// How many instances `instances` yields: the first Number of Remaining Sub-operations.
    pub count: usize,
    /// The (SOP class UID, transfer syntax UID) pairs among the instances: the presentation
    /// contexts a C-MOVE proposes to its destination before the first instance is read.
    pub contexts: BTreeSet<(String, String)>,
    pub instances: InstanceStream,
}

impl Retrieval {
    /// A retrieval of instances that are all known already.
    pub fn from_instances(instances: Vec<RetrieveInstance>) -> Retrieval {
        Retrieval {
            count: instances.len(),
            contexts: instances
                .iter()
                .map(|i| (i.sop_class_uid.clone(), i.transfer_syntax_uid.clone()))
                .collect(),
            instances: Box::pin(futures_util::stream::iter(instances.into_iter().map(Ok))),
        }
    }
}

impl std::fmt::Debug for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrieval")
            .field("count", &self.count)
            .field("contexts", &self.contexts)
            .finish_non_exhaustive()
    }
}

/// The action of a C-GET or C-MOVE SCP: the instances that match a query, and (for C-MOVE)
/// where an AE title is and how many associations may carry its sub-operations.
pub trait RetrieveHandler: Send + Sync + 'static {
    fn retrieve(&self, query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>>;

    /// The address of a move destination; `None` answers 0xA801 (move destination unknown).
    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        let _ = ae_title;
        None
    }

    /// How many associations a C-MOVE may open to `destination` at once to carry its
    /// sub-operations (at least 1).
    fn move_associations(&self, destination: &MoveDestination) -> usize {
        let _ = destination;
        1
    }
}

/// C-GET SCP over a [`RetrieveHandler`]: sub-operations go back on the same association, on
/// the storage contexts for which the requestor took the SCP role ([`GetScp::with_storage`]
/// says which the acceptor grants).
pub struct GetScp<H> {
    handler: Arc<H>,
    sop_classes: Vec<String>,
    transfer_syntaxes: Vec<String>,
    /// Storage SOP classes and transfer syntaxes accepted for the sub-operations.
    storage: Option<(Vec<String>, Vec<String>)>,
}

/// C-MOVE SCP over a [`RetrieveHandler`]: sub-operations go to the move destination on an
/// association of their own.
pub struct MoveScp<H> {
    handler: Arc<H>,
    sop_classes: Vec<String>,
    transfer_syntaxes: Vec<String>,
}

impl<H: RetrieveHandler> GetScp<H> {
    /// `sop_classes`: the GET SOP classes served; `transfer_syntaxes` for their identifiers.
    pub fn new(handler: H, sop_classes: Vec<String>, transfer_syntaxes: Vec<String>) -> Self {
        Self {
            handler: Arc::new(handler),
            sop_classes,
            transfer_syntaxes,
            storage: None,
        }
    }

    /// Accepts these storage SOP classes with these transfer syntaxes for the C-STORE
    /// sub-operations, granting the requestor the SCP role it proposes for them (PS3.4
    /// C.4.3.1, PS3.7 §D.3.3.4).
    pub fn with_storage(
        mut self,
        sop_classes: Vec<String>,
        transfer_syntaxes: Vec<String>,
    ) -> Self {
        self.storage = Some((sop_classes, transfer_syntaxes));
        self
    }
}

impl<H: RetrieveHandler> MoveScp<H> {
    /// `sop_classes`: the MOVE SOP classes served; `transfer_syntaxes` for their identifiers.
    pub fn new(handler: H, sop_classes: Vec<String>, transfer_syntaxes: Vec<String>) -> Self {
        Self {
            handler: Arc::new(handler),
            sop_classes,
            transfer_syntaxes,
        }
    }
}

/// The sub-operation counts of PS3.7 Table 9.3-6 / 9.3-8.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    remaining: u16,
    completed: u16,
    failed: u16,
    warning: u16,
}

impl Counts {
    /// The final status: success when every sub-operation succeeded, B000 when some failed or
    /// warned (PS3.4 C.4.2.1.5), Cancel when cancelled.
    fn final_status(&self, cancelled: bool) -> Status {
        if cancelled {
            Status::CANCEL
        } else if self.failed > 0 || self.warning > 0 {
            Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES
        } else {
            Status::SUCCESS
        }
    }
}

/// Which retrieve a request is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Move,
}

impl Kind {
    /// A C-GET-RSP or C-MOVE-RSP with these counts; `remaining` only while pending or after a
    /// cancel (PS3.7 C.4.2.1.4).
    fn response(self, message_id: u16, sop_class: &str, status: Status, counts: Counts) -> Message {
        let remaining = (status.is_pending() || status.is_cancel()).then_some(counts.remaining);
        match self {
            Kind::Get => CGetRsp {
                affected_sop_class_uid: Some(sop_class.to_owned()),
                number_of_remaining_suboperations: remaining,
                number_of_completed_suboperations: Some(counts.completed),
                number_of_failed_suboperations: Some(counts.failed),
                number_of_warning_suboperations: Some(counts.warning),
                ..CGetRsp::new(message_id, status)
            }
            .into(),
            Kind::Move => CMoveRsp {
                affected_sop_class_uid: Some(sop_class.to_owned()),
                number_of_remaining_suboperations: remaining,
                number_of_completed_suboperations: Some(counts.completed),
                number_of_failed_suboperations: Some(counts.failed),
                number_of_warning_suboperations: Some(counts.warning),
                ..CMoveRsp::new(message_id, status)
            }
            .into(),
        }
    }
}

/// The fields common to C-GET-RQ and C-MOVE-RQ.
struct RetrieveRequest {
    kind: Kind,
    message_id: u16,
    sop_class_uid: String,
    priority: Priority,
    move_destination: Option<String>,
}

fn retrieve_request(message: &Message, kind: Kind) -> Result<RetrieveRequest, ScpFailure> {
    match (message, kind) {
        (Message::CGetRq(rq), Kind::Get) => Ok(RetrieveRequest {
            kind,
            message_id: rq.message_id,
            sop_class_uid: rq.affected_sop_class_uid.clone(),
            priority: rq.priority,
            move_destination: None,
        }),
        (Message::CMoveRq(rq), Kind::Move) => Ok(RetrieveRequest {
            kind,
            message_id: rq.message_id,
            sop_class_uid: rq.affected_sop_class_uid.clone(),
            priority: rq.priority,
            move_destination: Some(rq.move_destination.clone()),
        }),
        _ => Err(ScpFailure::unrecognized(match kind {
            Kind::Get => "C-GET",
            Kind::Move => "C-MOVE",
        })),
    }
}

/// Reads the identifier and asks the handler for the instances.
async fn instances<H: RetrieveHandler>(
    handler: &H,
    rq: &RetrieveRequest,
    request: IncomingRequest,
    context: &RequestContext,
) -> Result<Retrieval, ScpFailure> {
    let query = Query::read(&rq.sop_class_uid, rq.priority, request.data_set, context).await?;
    handler.retrieve(query).await
}

/// Sends every instance on `target` as C-STORE sub-operations, with a pending response on the
/// request's association after each; returns the final response.
async fn send_all(
    rq: &RetrieveRequest,
    retrieval: Retrieval,
    target: &Association,
    context: &RequestContext,
) -> Result<FinalResponse, ScpFailure> {
    let mut failed = Vec::new();
    let mut counts = Counts {
        remaining: u16::try_from(retrieval.count).unwrap_or(u16::MAX),
        ..Counts::default()
    };
    let mut instances = retrieval.instances;
    let move_originator = match rq.kind {
        Kind::Get => None,
        Kind::Move => Some((context.info().peer_ae_title().to_owned(), rq.message_id)),
    };
    while let Some(instance) = instances.next().await {
        let instance = instance?;
        if context.cancelled.is_cancelled() {
            return Ok(final_response(rq, counts, true, &failed, context));
        }
        let status = sub_operation(target, &instance, move_originator.clone()).await;
        counts.remaining = counts.remaining.saturating_sub(1);
        match status {
            Ok(status) if status.is_success() => {
                counts.completed = counts.completed.saturating_add(1)
            }
            Ok(status) if status.is_warning() => counts.warning = counts.warning.saturating_add(1),
            Ok(status) => {
                info!(
                    "sub-operation for {} failed: {status}",
                    instance.sop_instance_uid
                );
                counts.failed = counts.failed.saturating_add(1);
                failed.push(instance.sop_instance_uid.clone());
            }
            Err(error) if error.ends_association() && rq.kind == Kind::Get => {
                return Err(error.into());
            }
            Err(error) => {
                warn!(
                    "sub-operation for {} failed: {error}",
                    instance.sop_instance_uid
                );
                counts.failed = counts.failed.saturating_add(1);
                failed.push(instance.sop_instance_uid.clone());
            }
        }
        if counts.remaining > 0 {
            let pending =
                rq.kind
                    .response(rq.message_id, &rq.sop_class_uid, Status::PENDING, counts);
            context.send_pending(pending, None).await?;
        }
    }
    Ok(final_response(rq, counts, false, &failed, context))
}

/// The final C-GET-RSP or C-MOVE-RSP; when sub-operations failed, with the identifier naming
/// them (Failed SOP Instance UID List, PS3.4 C.4.2.1.4), encoded in the request's transfer
/// syntax.
fn final_response(
    rq: &RetrieveRequest,
    counts: Counts,
    cancelled: bool,
    failed: &[String],
    context: &RequestContext,
) -> FinalResponse {
    let status = counts.final_status(cancelled);
    let mut message = rq
        .kind
        .response(rq.message_id, &rq.sop_class_uid, status, counts);
    if failed.is_empty() {
        return message.into();
    }
    match identifier::failed_instances(failed, context.transfer_syntax()) {
        Ok(identifier) => {
            match &mut message {
                Message::CGetRsp(rsp) => rsp.data_set_present = true,
                Message::CMoveRsp(rsp) => rsp.data_set_present = true,
                _ => {}
            }
            FinalResponse {
                message,
                data_set: Some(identifier.into()),
            }
        }
        Err(error) => {
            warn!("cannot encode the Failed SOP Instance UID List: {error}");
            message.into()
        }
    }
}

/// One C-STORE sub-operation: the status the storage SCP answered.
async fn sub_operation(
    target: &Association,
    instance: &RetrieveInstance,
    move_originator: Option<(String, u16)>,
) -> Result<Status, Error> {
    let context = target
        .accepted_contexts(&instance.sop_class_uid, Role::Scu)
        .find(|context| context.transfer_syntax.as_deref() == Some(&instance.transfer_syntax_uid))
        .map(|context| context.id)
        .ok_or_else(|| {
            Error::NoPresentationContext(format!(
                "{} in {}",
                instance.sop_class_uid, instance.transfer_syntax_uid
            ))
        })?;
    let request = StoreRequest {
        sop_class_uid: instance.sop_class_uid.clone(),
        sop_instance_uid: instance.sop_instance_uid.clone(),
        priority: Priority::Medium,
        move_originator,
    };
    let response = match &instance.data {
        InstanceData::Memory(data) => {
            store::store_bytes(target, context, &request, data.clone()).await?
        }
        InstanceData::File {
            path,
            offset,
            length,
        } => {
            let pieces = store::read_file_pieces(path.clone(), *offset, *length);
            store::store_pieces(target, context, &request, pieces, *length).await?
        }
    };
    Ok(response.status)
}

impl<H: RetrieveHandler> Scp for GetScp<H> {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        contexts_for(&self.sop_classes, &self.transfer_syntaxes)
    }

    fn sub_operation_contexts(&self) -> Vec<SupportedContext> {
        self.storage
            .as_ref()
            .map(|(sop_classes, transfer_syntaxes)| {
                contexts_for(sop_classes, transfer_syntaxes)
                    .into_iter()
                    .map(|context| context.with_roles(true, true))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let rq = retrieve_request(&request.message, Kind::Get)?;
            let instances = instances(self.handler.as_ref(), &rq, request, context).await?;
            send_all(&rq, instances, &context.association, context).await
        })
    }
}

impl<H: RetrieveHandler> Scp for MoveScp<H> {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        contexts_for(&self.sop_classes, &self.transfer_syntaxes)
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let rq = retrieve_request(&request.message, Kind::Move)?;
            let destination_title = rq.move_destination.clone().unwrap_or_default();
            let Some(destination) = self.handler.destination(&destination_title) else {
                return Err(ScpFailure::new(
                    Status::MOVE_DESTINATION_UNKNOWN,
                    format!("unknown move destination {destination_title}"),
                ));
            };
            let instances = instances(self.handler.as_ref(), &rq, request, context).await?;
            if instances.count == 0 {
                return Ok(rq
                    .kind
                    .response(
                        rq.message_id,
                        &rq.sop_class_uid,
                        Status::SUCCESS,
                        Counts::default(),
                    )
                    .into());
            }
            let target = connect_destination(&destination, &instances.contexts, context)
                .await
                .map_err(|error| {
                    ScpFailure::new(
                        Status::OUT_OF_RESOURCES_SUBOPERATIONS,
                        format!("cannot reach {}: {error}", destination.ae_title),
                    )
                })?;
            let outcome = send_all(&rq, instances, &target, context).await;
            if let Err(error) = target.release().await {
                warn!(
                    "releasing the association to {}: {error}",
                    destination.ae_title
                );
            }
            outcome
        })
    }
}

/// Opens the association for the C-MOVE sub-operations: a context per SOP class and transfer
/// syntax of the instances.
async fn connect_destination(
    destination: &MoveDestination,
    pairs: &BTreeSet<(String, String)>,
    context: &RequestContext,
) -> Result<Association, Error> {
    let request = AssociationRequest::new(context.info().local_ae_title(), &destination.ae_title)
        .with_contexts(
            pairs
                .iter()
                .map(|(sop_class, ts)| ProposedContext::new(sop_class, [ts.as_str()])),
        );
    Association::connect(
        &destination.address,
        &request,
        *context.association.timeouts(),
        *context.association.limits(),
    )
    .await
}
