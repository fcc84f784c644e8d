//! C-GET and C-MOVE SCPs (PS3.4 Annex C.4.2, C.4.3): the handler names the instances that
//! match, as a stream; the framework sends each with a C-STORE sub-operation through the
//! Storage SCU's sending engine ([`crate::scu::store::send_instances`]) — on the same
//! association for C-GET, on one or more new ones to the move destination for C-MOVE —
//! pipelined up to the window the peer granted, with a pending response after each completed
//! sub-operation and the final response with the counts and the failed instances; a
//! C-CANCEL-RQ stops it with status Cancel.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use dimsum_dataset::identifier;
use dimsum_dimse::message::{CGetRsp, CMoveRsp, Message, Priority};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AssociationRequest, MAX_PRESENTATION_CONTEXTS, SupportedContext};
use dimsum_ul::pdu::{
    AssociateRj, AsyncOpsWindow, RejectResult, RejectSource, ServiceProviderPresentationReason,
};

use super::{FinalResponse, Query, RequestContext, Scp, ScpFailure, contexts_for};
use crate::scu::store::{
    self, BatchEnd, Outcome, StoreFileError, StoreInstance, StoreOutcome, TransferSyntaxProposal,
};
use crate::storage::BoxFuture;
use crate::{Association, Error, IncomingRequest, MoveRetry};

pub use crate::scu::store::InstanceData;

/// One instance to send as a C-STORE sub-operation (PS3.4 C.4.2.2, C.4.3.2): its identity, the
/// transfer syntax its data set is encoded in, and where that data set is — what the Storage
/// SCU's engine sends.
pub type RetrieveInstance = StoreInstance;

/// Outcomes of sub-operations waiting for the pending response that reports them; with the
/// window, this bounds the sub-operations one retrieval has in flight.
const OUTCOMES_QUEUED: usize = 64;
/// The asynchronous operations window a C-MOVE proposes to its destination: C-STOREs
/// outstanding at once on each association (a destination that grants none gets one at a
/// time).
const MOVE_WINDOW: u16 = 16;
/// The most associations a C-MOVE opens to its destination, whatever the handler says.
const MAX_MOVE_ASSOCIATIONS: usize = 16;
/// Bytes of UIDs the Failed SOP Instance UID List holds at most: a UI value's length has 16
/// bits in the explicit VR syntaxes. Failures beyond it are counted, not named.
const FAILED_LIST_BYTES: usize = 65_534;

/// A C-MOVE destination: its AE title and "host:port".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveDestination {
    pub ae_title: String,
    pub address: String,
}

/// The instances of a retrieval, produced as they are needed (an archive opens each file when
/// its turn comes). Dropping the stream (on C-CANCEL, or when the association ends) must stop
/// the work. An error ends the retrieval with the error's status after the sub-operations
/// already started are answered.
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
    /// sub-operations (at least 1, at most 16, and no more than there are instances); the
    /// instances are dealt out to them as they come from the stream.
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

/// C-MOVE SCP over a [`RetrieveHandler`]: sub-operations go to the move destination on
/// associations of their own, opened again after a transient failure as its [`MoveRetry`]
/// allows ([`MoveScp::with_retry`]).
pub struct MoveScp<H> {
    handler: Arc<H>,
    sop_classes: Vec<String>,
    transfer_syntaxes: Vec<String>,
    retry: MoveRetry,
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
    /// Retries as [`MoveRetry::default`] says.
    pub fn new(handler: H, sop_classes: Vec<String>, transfer_syntaxes: Vec<String>) -> Self {
        Self {
            handler: Arc::new(handler),
            sop_classes,
            transfer_syntaxes,
            retry: MoveRetry::default(),
        }
    }

    /// How the associations to the move destination are retried ([`MoveRetry::NONE`]: never).
    pub fn with_retry(mut self, retry: MoveRetry) -> Self {
        self.retry = retry;
        self
    }
}

/// The sub-operation counts of PS3.7 Table 9.3-6 / 9.3-8, as sent.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    remaining: u16,
    completed: u16,
    failed: u16,
    warning: u16,
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

/// What the sub-operations have come to: the counts and the instances that failed.
#[derive(Debug, Default)]
struct Tally {
    /// Sub-operations announced (the handler's count).
    count: usize,
    completed: usize,
    failed: usize,
    warning: usize,
    failed_uids: Vec<String>,
}

impl Tally {
    fn new(count: usize) -> Self {
        Self {
            count,
            ..Self::default()
        }
    }

    fn remaining(&self) -> usize {
        self.count
            .saturating_sub(self.completed + self.failed + self.warning)
    }

    fn counts(&self) -> Counts {
        let wire = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Counts {
            remaining: wire(self.remaining()),
            completed: wire(self.completed),
            failed: wire(self.failed),
            warning: wire(self.warning),
        }
    }

    /// Counts a sub-operation by the C-STORE-RSP's status, or as failed when it got none.
    fn record(
        &mut self,
        instance: &RetrieveInstance,
        outcome: Result<StoreOutcome, StoreFileError>,
    ) {
        match outcome {
            Ok(stored) if stored.response.status.is_success() => self.completed += 1,
            Ok(stored) if stored.response.status.is_warning() => self.warning += 1,
            Ok(stored) => {
                info!(
                    "sub-operation for {} failed: {}{}",
                    instance.sop_instance_uid,
                    stored.response.status,
                    stored
                        .response
                        .error_comment
                        .map(|comment| format!(" ({comment})"))
                        .unwrap_or_default()
                );
                self.fail(instance);
            }
            Err(error) => {
                warn!(
                    "sub-operation for {} failed: {error}",
                    instance.sop_instance_uid
                );
                self.fail(instance);
            }
        }
    }

    fn fail(&mut self, instance: &RetrieveInstance) {
        self.failed += 1;
        self.failed_uids.push(instance.sop_instance_uid.clone());
    }

    /// The final status when nothing went wrong with the retrieval itself: success when every
    /// sub-operation succeeded, 0xB000 when some failed or warned (PS3.4 C.4.2.1.5).
    fn final_status(&self) -> Status {
        if self.failed > 0 || self.warning > 0 {
            Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES
        } else {
            Status::SUCCESS
        }
    }
}

/// Deals the instances of a retrieval out to the associations that send them, as each has
/// room: first those handed back by an association that ended before sending them, then the
/// handler's stream. Stops (dropping the stream) when `stop` fires.
struct Dealer {
    handed_back: Mutex<VecDeque<RetrieveInstance>>,
    source: tokio::sync::Mutex<DealerSource>,
    stop: CancellationToken,
}

struct DealerSource {
    /// `None` once it has ended, failed or been closed.
    instances: Option<InstanceStream>,
    /// The handler's failure, when its stream gave one.
    failure: Option<ScpFailure>,
}

impl Dealer {
    fn new(instances: InstanceStream, stop: CancellationToken) -> Self {
        Self {
            handed_back: Mutex::default(),
            source: tokio::sync::Mutex::new(DealerSource {
                instances: Some(instances),
                failure: None,
            }),
            stop,
        }
    }

    fn handed_back(&self) -> std::sync::MutexGuard<'_, VecDeque<RetrieveInstance>> {
        self.handed_back
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hand_back(&self, instance: RetrieveInstance) {
        self.handed_back().push_back(instance);
    }

    fn has_handed_back(&self) -> bool {
        !self.handed_back().is_empty()
    }

    /// Whether an instance is still to be sent (the next one of the stream is taken and
    /// handed back to find out).
    async fn has_more(&self) -> bool {
        if self.has_handed_back() {
            return true;
        }
        match self.next().await {
            Some(instance) => {
                self.hand_back(instance);
                true
            }
            None => false,
        }
    }

    /// The next instance to send; `None` when there are no more, the stream failed, or `stop`
    /// fired.
    async fn next(&self) -> Option<RetrieveInstance> {
        if self.stop.is_cancelled() {
            return None;
        }
        if let Some(instance) = self.handed_back().pop_front() {
            return Some(instance);
        }
        let mut source = tokio::select! {
            biased;
            () = self.stop.cancelled() => return None,
            source = self.source.lock() => source,
        };
        // Handed back while this waited for its turn.
        if let Some(instance) = self.handed_back().pop_front() {
            return Some(instance);
        }
        let instances = source.instances.as_mut()?;
        let next = tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            next = instances.next() => Some(next),
        };
        match next {
            Some(Some(Ok(instance))) => Some(instance),
            Some(Some(Err(failure))) => {
                source.failure = Some(failure);
                source.instances = None;
                None
            }
            Some(None) | None => {
                source.instances = None;
                None
            }
        }
    }

    /// The instances for one association, each keyed by itself (to be named or handed back).
    fn stream(&self) -> impl Stream<Item = (RetrieveInstance, StoreInstance)> + Send + '_ {
        futures_util::stream::unfold(self, |dealer| async move {
            let instance = dealer.next().await?;
            Some(((instance.clone(), instance), dealer))
        })
    }

    /// Drops the handler's stream: no more instances are produced.
    async fn close(&self) {
        self.source.lock().await.instances = None;
    }

    async fn take_failure(&self) -> Option<ScpFailure> {
        self.source.lock().await.failure.take()
    }
}

/// Sends every instance of `retrieval` as C-STORE sub-operations on `targets` (dealt out to them
/// as they come), with a pending response on the request's association after each completed
/// one; returns the final response. An association that ends fails the sub-operations it had
/// started; the instances it had taken but not sent go to the others. When none is left and
/// `redial` has a retry left, new associations are opened (the `targets` they join are released
/// by the caller) and carry the rest, the sub-operations that had no answer included;
/// otherwise those fail with the rest.
async fn send_all(
    rq: &RetrieveRequest,
    retrieval: Retrieval,
    targets: &mut Vec<Association>,
    mut redial: Option<&mut Redial<'_>>,
    context: &RequestContext,
) -> Result<FinalResponse, ScpFailure> {
    let stop = context.cancelled.child_token();
    let dealer = Dealer::new(retrieval.instances, stop.clone());
    let mut tally = Tally::new(retrieval.count);
    let move_originator = match rq.kind {
        Kind::Get => None,
        Kind::Move => Some((context.info().peer_ae_title().to_owned(), rq.message_id)),
    };
    let mut live: Vec<usize> = (0..targets.len()).collect();
    // Sub-operations sent on an association that ended before answering, kept aside while a
    // retry may send them again.
    let mut unanswered = Vec::new();
    loop {
        let hold = redial.as_ref().is_some_and(|redial| redial.can_retry());
        let (sender, outcomes) = mpsc::channel(OUTCOMES_QUEUED);
        let engines = join_all(live.iter().map(|&index| {
            store::send_instances(
                &targets[index],
                dealer.stream(),
                move_originator.clone(),
                &stop,
                sender.clone(),
            )
        }));
        drop(sender);
        let reporting = report(
            rq,
            context,
            &dealer,
            (&mut tally, hold.then_some(&mut unanswered)),
            outcomes,
            &stop,
        );
        let (ends, reported) = tokio::join!(engines, reporting);
        live = live
            .into_iter()
            .zip(ends)
            .filter_map(|(index, end)| (end != BatchEnd::AssociationEnded).then_some(index))
            .collect();
        if let Err(error) = reported {
            // The requestor is gone: nobody to answer.
            return Err(error.into());
        }
        if stop.is_cancelled() {
            break;
        }
        if live.is_empty() {
            let Some(redial) = redial.as_deref_mut().filter(|redial| redial.can_retry()) else {
                break;
            };
            if unanswered.is_empty() && !dealer.has_more().await {
                break;
            }
            for (instance, _) in unanswered.drain(..) {
                dealer.hand_back(instance);
            }
            match redial.reopen().await {
                Ok(reopened) => {
                    live = (targets.len()..targets.len() + reopened.len()).collect();
                    targets.extend(reopened);
                    continue;
                }
                // The handed back instances stay among the remaining.
                Err(DialEnd::Cancelled) => break,
                // They fail with the rest, below.
                Err(DialEnd::Unreachable(error)) => {
                    warn!("giving up on {}: {error}", redial.destination.ae_title);
                    break;
                }
            }
        }
        for (instance, outcome) in unanswered.drain(..) {
            tally.record(&instance, outcome);
        }
        // Another round only to send what an association that ended handed back.
        if !dealer.has_handed_back() {
            break;
        }
    }
    for (instance, outcome) in unanswered.drain(..) {
        tally.record(&instance, outcome);
    }
    let cancelled = context.cancelled.is_cancelled();
    let mut failure = dealer.take_failure().await;
    if live.is_empty() && !cancelled && failure.is_none() {
        if rq.kind == Kind::Get {
            return Err(ScpFailure::processing(
                "the association ended during the sub-operations",
            ));
        }
        // No association left to carry the rest: each is a failed sub-operation.
        while let Some(instance) = dealer.next().await {
            tally.fail(&instance);
        }
        failure = dealer.take_failure().await;
    }
    let (status, comment) = match &failure {
        Some(failure) => (failure.status, Some(failure.comment.as_str())),
        None if cancelled => (Status::CANCEL, None),
        None => (tally.final_status(), None),
    };
    Ok(final_response(rq, &tally, status, comment, context))
}

/// Takes the outcomes of the sub-operations as they come: counts them (or hands back those not
/// sent, and keeps aside in `unanswered`, when given, those whose association ended before
/// answering) and sends a pending response after each while some remain and no C-CANCEL came.
/// On C-CANCEL, drops the handler's stream. Fails when the request's association is gone (and
/// then fires `stop`).
async fn report(
    rq: &RetrieveRequest,
    context: &RequestContext,
    dealer: &Dealer,
    (tally, mut unanswered): (&mut Tally, Option<&mut Vec<Outcome<RetrieveInstance>>>),
    mut outcomes: mpsc::Receiver<Outcome<RetrieveInstance>>,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let mut lost = None;
    let mut closed = false;
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled(), if !closed => {
                closed = true;
                dealer.close().await;
                continue;
            }
            next = outcomes.recv() => next,
        };
        let Some((instance, outcome)) = next else {
            break;
        };
        if let Err(StoreFileError::NotSent | StoreFileError::NotStarted(_)) = outcome {
            // Its association ended before it went out: another one may send it.
            dealer.hand_back(instance);
            continue;
        }
        if let (Some(unanswered), Err(error)) = (unanswered.as_deref_mut(), &outcome)
            && error.ends_association()
        {
            unanswered.push((instance, outcome));
            continue;
        }
        tally.record(&instance, outcome);
        if lost.is_some() || stop.is_cancelled() || tally.remaining() == 0 {
            continue;
        }
        let pending = rq.kind.response(
            rq.message_id,
            &rq.sop_class_uid,
            Status::PENDING,
            tally.counts(),
        );
        match context.send_pending(pending, None).await {
            Ok(()) => {}
            Err(error) if error.ends_association() => {
                stop.cancel();
                lost = Some(error);
            }
            Err(error) => warn!("cannot send a pending response: {error}"),
        }
    }
    lost.map_or(Ok(()), Err)
}

/// The final C-GET-RSP or C-MOVE-RSP; when sub-operations failed, with the identifier naming
/// them (Failed SOP Instance UID List, PS3.4 C.4.2.1.4), encoded in the request's transfer
/// syntax.
fn final_response(
    rq: &RetrieveRequest,
    tally: &Tally,
    status: Status,
    comment: Option<&str>,
    context: &RequestContext,
) -> FinalResponse {
    let mut message = rq
        .kind
        .response(rq.message_id, &rq.sop_class_uid, status, tally.counts());
    if let Some(comment) = comment {
        message.set_error_comment(comment);
    }
    if tally.failed_uids.is_empty() {
        return message.into();
    }
    let named = nameable(&tally.failed_uids);
    if named.len() < tally.failed_uids.len() {
        warn!(
            "{} failed instances, {} of them named in the response",
            tally.failed_uids.len(),
            named.len()
        );
    }
    match identifier::failed_instances(named, context.transfer_syntax()) {
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

/// The first UIDs of `uids` that fit in one UI value (with their separators).
fn nameable(uids: &[String]) -> &[String] {
    let mut length = 0;
    let fitting = uids
        .iter()
        .take_while(|uid| {
            length += uid.len() + 1;
            length <= FAILED_LIST_BYTES + 1
        })
        .count();
    &uids[..fitting]
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
            let retrieval = instances(self.handler.as_ref(), &rq, request, context).await?;
            send_all(
                &rq,
                retrieval,
                &mut vec![context.association.clone()],
                None,
                context,
            )
            .await
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
            let retrieval = instances(self.handler.as_ref(), &rq, request, context).await?;
            if retrieval.count == 0 {
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
            let wanted = self
                .handler
                .move_associations(&destination)
                .clamp(1, MAX_MOVE_ASSOCIATIONS)
                .min(retrieval.count);
            let mut redial = Redial {
                destination: &destination,
                pairs: retrieval.contexts.clone(),
                count: wanted,
                retry: self.retry,
                retries_left: self.retry.retries,
                context,
            };
            let mut targets = match redial.dial().await {
                Ok(targets) => targets,
                Err(end) => return Ok(not_moved(&rq, retrieval, &destination, end, context).await),
            };
            let outcome = send_all(&rq, retrieval, &mut targets, Some(&mut redial), context).await;
            for (target, released) in targets
                .iter()
                .zip(join_all(targets.iter().map(Association::release)).await)
            {
                match released {
                    Ok(()) => {}
                    // It ended before; its sub-operations were counted already.
                    Err(error) if target.ending().is_some() => {
                        debug!("association to {}: {error}", destination.ae_title)
                    }
                    Err(error) => warn!(
                        "releasing the association to {}: {error}",
                        destination.ae_title
                    ),
                }
            }
            outcome
        })
    }
}

/// The final response of a C-MOVE whose destination could not be reached at all: 0xA702 with
/// every instance a failed sub-operation (named in the Failed SOP Instance UID List, PS3.4
/// C.4.2.1.4), or Cancel with all of them remaining when a C-CANCEL came during a retry's wait.
async fn not_moved(
    rq: &RetrieveRequest,
    retrieval: Retrieval,
    destination: &MoveDestination,
    end: DialEnd,
    context: &RequestContext,
) -> FinalResponse {
    let mut tally = Tally::new(retrieval.count);
    let error = match end {
        DialEnd::Cancelled => {
            return final_response(rq, &tally, Status::CANCEL, None, context);
        }
        DialEnd::Unreachable(error) => error,
    };
    let dealer = Dealer::new(retrieval.instances, context.cancelled.child_token());
    while let Some(instance) = dealer.next().await {
        tally.fail(&instance);
    }
    let comment = format!("cannot reach {}: {error}", destination.ae_title);
    final_response(
        rq,
        &tally,
        Status::OUT_OF_RESOURCES_SUBOPERATIONS,
        Some(&comment),
        context,
    )
}

/// Why no association to a move destination could be opened.
enum DialEnd {
    /// A C-CANCEL came while waiting to retry.
    Cancelled,
    /// The last attempt's error: permanent, or no retry was left.
    Unreachable(Error),
}

/// Opens the associations that carry a C-MOVE's sub-operations to its destination, and opens
/// them again as its [`MoveRetry`] allows.
struct Redial<'a> {
    destination: &'a MoveDestination,
    /// The (SOP class, transfer syntax) pairs of the instances.
    pairs: BTreeSet<(String, String)>,
    /// How many associations to open.
    count: usize,
    retry: MoveRetry,
    retries_left: u32,
    context: &'a RequestContext,
}

impl Redial<'_> {
    fn can_retry(&self) -> bool {
        self.retries_left > 0
    }

    /// Opens the associations; a failure worth retrying is retried after the delay while
    /// retries are left.
    async fn dial(&mut self) -> Result<Vec<Association>, DialEnd> {
        loop {
            let error =
                match connect_destination(self.destination, &self.pairs, self.count, self.context)
                    .await
                {
                    Ok(associations) => return Ok(associations),
                    Err(error) => error,
                };
            if !self.can_retry() || !worth_retrying(&error) {
                return Err(DialEnd::Unreachable(error));
            }
            info!(
                "cannot reach {}: {error}; trying again in {:.1} s",
                self.destination.ae_title,
                self.retry.delay.as_secs_f64()
            );
            self.wait().await?;
        }
    }

    /// Opens the associations again after all of them ended with sub-operations left (one
    /// retry, after the delay).
    async fn reopen(&mut self) -> Result<Vec<Association>, DialEnd> {
        info!(
            "every association to {} ended with sub-operations left; trying again in {:.1} s",
            self.destination.ae_title,
            self.retry.delay.as_secs_f64()
        );
        self.wait().await?;
        self.dial().await
    }

    /// Uses up a retry and waits for its delay, or for a C-CANCEL.
    async fn wait(&mut self) -> Result<(), DialEnd> {
        self.retries_left = self.retries_left.saturating_sub(1);
        tokio::select! {
            biased;
            () = self.context.cancelled.cancelled() => Err(DialEnd::Cancelled),
            () = tokio::time::sleep(self.retry.delay) => Ok(()),
        }
    }
}

/// Whether opening an association to a move destination may succeed if tried again: the
/// connection was refused, timed out or broke before the association was established, or the
/// destination rejected it for a transient reason (PS3.8 §7.1.1.9: rejected-transient,
/// temporary congestion, local limit exceeded). A permanent rejection, a TLS or negotiation
/// failure is not.
fn worth_retrying(error: &Error) -> bool {
    match error {
        Error::Rejected(AssociateRj { result, source }) => {
            *result == RejectResult::Transient
                || matches!(
                    source,
                    RejectSource::ServiceProviderPresentation(
                        ServiceProviderPresentationReason::TemporaryCongestion
                            | ServiceProviderPresentationReason::LocalLimitExceeded
                    )
                )
        }
        Error::Connect { .. }
        | Error::Io(_)
        | Error::Timeout { .. }
        | Error::Aborted { .. }
        | Error::ConnectionClosed
        | Error::Transport(_) => true,
        _ => false,
    }
}

/// Opens up to `count` associations for the C-MOVE sub-operations, at once: a context per SOP
/// class and transfer syntax of the instances (and an uncompressed fallback to convert to,
/// while the contexts fit in one request), and an asynchronous operations window. Fails with
/// the first error when none can be opened.
async fn connect_destination(
    destination: &MoveDestination,
    pairs: &BTreeSet<(String, String)>,
    count: usize,
    context: &RequestContext,
) -> Result<Vec<Association>, Error> {
    let pairs = || pairs.iter().map(|(sop, ts)| (sop.as_str(), ts.as_str()));
    let mut contexts = store::propose_contexts_for(pairs(), &TransferSyntaxProposal::AsFiles);
    if contexts.len() > MAX_PRESENTATION_CONTEXTS {
        // Without the fallbacks; instances beyond the contexts proposed fail one by one.
        contexts = pairs()
            .map(|(sop, ts)| dimsum_ul::negotiation::ProposedContext::new(sop, [ts]))
            .take(MAX_PRESENTATION_CONTEXTS)
            .collect();
    }
    let request = AssociationRequest::new(context.info().local_ae_title(), &destination.ae_title)
        .with_contexts(contexts)
        .with_async_ops_window(AsyncOpsWindow {
            max_operations_invoked: MOVE_WINDOW,
            max_operations_performed: 1,
        });
    let attempts = join_all((0..count).map(|_| {
        Association::connect(
            &destination.address,
            &request,
            *context.association.timeouts(),
            *context.association.limits(),
        )
    }))
    .await;
    let mut connected = Vec::new();
    let mut first_error = None;
    for attempt in attempts {
        match attempt {
            Ok(association) => connected.push(association),
            Err(error) => {
                warn!(
                    "cannot open an association to {} at {}: {error}",
                    destination.ae_title, destination.address
                );
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if connected.is_empty() => Err(error),
        _ => Ok(connected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_list_names_as_many_uids_as_fit_in_one_ui_value() {
        let uids: Vec<String> = (0..4000)
            .map(|i| format!("1.2.840.99999.{i:010}"))
            .collect();
        let named = nameable(&uids);
        let length: usize = named.iter().map(String::len).sum::<usize>() + named.len() - 1;
        assert!(length <= FAILED_LIST_BYTES, "{length}");
        let one_more = length + 1 + uids[named.len()].len();
        assert!(one_more > FAILED_LIST_BYTES, "{one_more}");
        assert_eq!(nameable(&uids[..3]), &uids[..3]);
        assert!(nameable(&[]).is_empty());
    }

    #[test]
    fn counts_saturate_and_remaining_never_goes_below_zero() {
        let instance = StoreInstance {
            sop_class_uid: "1.2.3".into(),
            sop_instance_uid: "1.2.3.4".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            data: InstanceData::Memory(bytes::Bytes::new()),
        };
        let mut tally = Tally::new(2);
        for _ in 0..3 {
            tally.fail(&instance);
        }
        assert_eq!(tally.remaining(), 0);
        assert_eq!(
            tally.final_status(),
            Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES
        );
        let mut many = Tally::new(100_000);
        many.completed = 70_000;
        let counts = many.counts();
        assert_eq!((counts.remaining, counts.completed), (30_000, u16::MAX));
        assert_eq!(Tally::new(0).final_status(), Status::SUCCESS);
    }
}
