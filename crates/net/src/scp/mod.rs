//! The service-provider framework (PS3.7 §7–8 from the performing side).
//!
//! An [`Scp`] serves some SOP classes: it says which presentation contexts it supports and
//! performs each request that arrives on them, returning the final response. The framework owns
//! the answering: a [`Dispatcher`] maps every request to its SCP by the abstract syntax of its
//! presentation context, runs each in its own task (as many at once as the asynchronous
//! operations window lets the peer send), and sends the final response — or 0x0110 (processing
//! failure) with an error comment when the SCP fails or panics without answering. The sans-IO
//! association below has already checked the request's SOP class against its context and the
//! roles (answering 0x0122 itself), and routes a C-CANCEL-RQ to the operation's cancellation
//! token, never here as a new request.
//!
//! The service classes are written on top, each with a handler trait for the user's action:
//!
//! * Verification: [`EchoScp`], a status per C-ECHO;
//! * Storage: [`StoreScp`] over a [`crate::storage::Storage`], the data set streamed in;
//! * Query/Retrieve: [`FindScp`] over a [`FindHandler`] that returns a stream of matches, and
//!   [`GetScp`] / [`MoveScp`] over a [`RetrieveHandler`] that returns the instances to send; the
//!   framework sends the pending responses and the C-STORE sub-operations;
//! * Storage Commitment: [`StorageCommitmentScp`] over a [`CommitmentHandler`] that says which
//!   instances are committed; the framework answers the N-ACTION and sends the N-EVENT-REPORT.

mod commitment;
mod echo;
mod find;
mod query;
mod retrieve;
mod store;

pub use commitment::{
    COMMITMENT_FAILURES_EXIST, COMMITMENT_SUCCESSFUL, COMMITMENT_TRANSFER_SYNTAXES,
    CommitmentDataError, CommitmentHandler, CommitmentRequest, CommitmentResult,
    DEFAULT_MAX_REFERENCES, FailedInstance, FailureReason, KnownInstances,
    REQUEST_STORAGE_COMMITMENT, STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE, SopReference, StorageCommitmentScp,
};
pub use echo::{EchoAction, EchoScp};
pub use find::{FindHandler, FindMatch, FindScp, MatchStream};
pub use query::Query;
pub use retrieve::{
    GetScp, InstanceData, InstanceStream, MoveDestination, MoveScp, Retrieval, RetrieveHandler,
    RetrieveInstance,
};
pub use store::StoreScp;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use dimsum_dimse::association::Ending;
use dimsum_dimse::message::Message;
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AcceptorPolicy, FindOptions, SupportedContext};

use crate::storage::BoxFuture;
use crate::{Association, AssociationInfo, Error, IncomingRequest};

/// Why an SCP could not perform a request: the status of the final response and its Error
/// Comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScpFailure {
    pub status: Status,
    pub comment: String,
}

impl ScpFailure {
    pub fn new(status: Status, comment: impl Into<String>) -> Self {
        Self {
            status,
            comment: comment.into(),
        }
    }

    /// 0x0110 processing failure.
    pub fn processing(comment: impl Into<String>) -> Self {
        Self::new(Status::PROCESSING_FAILURE, comment)
    }
}

impl ScpFailure {
    /// 0x0211 for a request an SCP does not perform on its context: only `what` is.
    pub fn unrecognized(what: &str) -> Self {
        Self::new(
            Status::UNRECOGNIZED_OPERATION,
            format!("only {what} is performed on this context"),
        )
    }
}

/// The presentation contexts for `sop_classes`, each accepted with `transfer_syntaxes` (in our
/// order of preference).
pub fn contexts_for(sop_classes: &[String], transfer_syntaxes: &[String]) -> Vec<SupportedContext> {
    sop_classes
        .iter()
        .map(|sop_class| {
            SupportedContext::new(
                sop_class.as_str(),
                transfer_syntaxes.iter().map(String::as_str),
            )
        })
        .collect()
}

impl From<Error> for ScpFailure {
    fn from(error: Error) -> Self {
        ScpFailure::processing(error.to_string())
    }
}

/// The final response to a request, with the data set it carries, if any (the identifier of a
/// C-GET or C-MOVE response naming failed instances, an N-GET attribute list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalResponse {
    pub message: Message,
    pub data_set: Option<bytes::Bytes>,
}

impl From<Message> for FinalResponse {
    fn from(message: Message) -> Self {
        Self {
            message,
            data_set: None,
        }
    }
}

/// What an SCP knows about the request it performs.
#[derive(Clone)]
pub struct RequestContext {
    /// The association it came on: for pending responses and sub-operations.
    pub association: Association,
    pub presentation_context_id: u8,
    /// Fired by a C-CANCEL-RQ naming the request (C-FIND, C-GET, C-MOVE).
    pub cancelled: CancellationToken,
    /// What to do once the final response has gone out (see [`RequestContext::after_response`]).
    after_response: Arc<std::sync::Mutex<Option<BoxFuture<'static, ()>>>>,
}

impl RequestContext {
    /// The association's negotiated state and peer.
    pub fn info(&self) -> &AssociationInfo {
        self.association.info()
    }

    /// The C-FIND options agreed for `sop_class_uid` on this association (PS3.4 C.5.1.1): what
    /// the acceptor answered to the requestor's SOP class extended negotiation for it.
    pub fn find_options(&self, sop_class_uid: &str) -> FindOptions {
        FindOptions::accepted(&self.info().negotiated, sop_class_uid)
    }

    /// The transfer syntax of the request's presentation context (its data set's encoding).
    pub fn transfer_syntax(&self) -> &str {
        self.association
            .transfer_syntax(self.presentation_context_id)
    }

    /// Runs `work` once the request's successful final response has been sent: for a service
    /// that goes on after answering, such as Storage Commitment, whose N-EVENT-REPORT follows
    /// the N-ACTION-RSP (PS3.4 J.3.3). It runs in the request's own task, so the association
    /// (and a server shutting down) waits for it; it does not run when the SCP fails or the
    /// response cannot be sent. A later call replaces the work of an earlier one.
    pub fn after_response(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut slot = self
            .after_response
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(Box::pin(work));
    }

    fn take_after_response(&self) -> Option<BoxFuture<'static, ()>> {
        self.after_response
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Sends a pending response (C-FIND, C-GET, C-MOVE) on the request's context.
    pub async fn send_pending(
        &self,
        response: Message,
        data_set: Option<bytes::Bytes>,
    ) -> Result<(), Error> {
        self.association
            .respond(self.presentation_context_id, response, data_set)
            .await
    }
}

/// A service class provider for one or more SOP classes.
pub trait Scp: Send + Sync + 'static {
    /// The presentation contexts this provider accepts; requests on them come to it.
    fn supported_contexts(&self) -> Vec<SupportedContext>;

    /// Contexts this provider needs accepted for its sub-operations (the storage SOP classes a
    /// C-GET SCP sends on, with the requestor as SCP), without performing requests on them.
    fn sub_operation_contexts(&self) -> Vec<SupportedContext> {
        Vec::new()
    }

    /// The answer to a requestor's SOP class extended negotiation for `sop_class_uid`, one of
    /// this provider's (PS3.7 §D.3.3.5; the application information is the service class's,
    /// e.g. PS3.4 C.5.1.1 for C-FIND): `Some(application information)` to send back, `None` to
    /// leave it unanswered (nothing supported). The answer must accept no more than `proposed`.
    fn extended_negotiation(&self, sop_class_uid: &str, proposed: &[u8]) -> Option<Vec<u8>> {
        let _ = (sop_class_uid, proposed);
        None
    }

    /// Performs one request and returns its final response (pending ones, if the service has
    /// them, go out through [`RequestContext::send_pending`]). The request's data set, if any,
    /// is `request.data_set`. On `Err`, the framework answers with the failure's status.
    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>>;
}

/// Told of every request a [`Dispatcher`] answers, with its final response, as it is sent: how a
/// [`crate::Server`] counts messages, queries, retrieves and instances.
pub trait RequestObserver: Send + Sync {
    fn answered(&self, request: &Message, response: &Message);
}

/// How an association served by a [`Dispatcher`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// Released in order.
    Released,
    /// It ended with an error (abort, timeout, protocol error, closed connection).
    Failed(Error),
}

/// Maps each incoming request to the SCP that serves its SOP class (by the abstract syntax of
/// the presentation context it came on).
#[derive(Clone, Default)]
pub struct Dispatcher {
    providers: Vec<Arc<dyn Scp>>,
    by_abstract_syntax: HashMap<String, usize>,
    /// The provider for SOP classes nobody else serves, and the transfer syntaxes it accepts
    /// for them (promiscuous mode).
    fallback: Option<(Arc<dyn Scp>, Vec<String>)>,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; for a SOP class served by two providers, the first one added wins.
    pub fn with(mut self, provider: impl Scp) -> Self {
        let index = self.providers.len();
        for context in provider.supported_contexts() {
            self.by_abstract_syntax
                .entry(context.abstract_syntax)
                .or_insert(index);
        }
        self.providers.push(Arc::new(provider));
        self
    }

    /// Serves every SOP class no other provider serves with `provider`, accepting it with
    /// `transfer_syntaxes` (in our order of preference): promiscuous mode, e.g. for storing SOP
    /// classes that are private or newer than our dictionary.
    pub fn with_fallback(mut self, provider: impl Scp, transfer_syntaxes: Vec<String>) -> Self {
        self.fallback = Some((Arc::new(provider), transfer_syntaxes));
        self
    }

    /// Every presentation context of every provider, sub-operation contexts included. A SOP
    /// class listed by several providers is supported once, with every role any of them grants
    /// and their transfer syntaxes in the order of the first.
    pub fn supported_contexts(&self) -> Vec<SupportedContext> {
        let mut merged: Vec<SupportedContext> = Vec::new();
        let all = self.providers.iter().flat_map(|provider| {
            let mut contexts = provider.supported_contexts();
            contexts.extend(provider.sub_operation_contexts());
            contexts
        });
        for context in all {
            match merged
                .iter_mut()
                .find(|known| known.abstract_syntax == context.abstract_syntax)
            {
                Some(known) => {
                    known.scu_role |= context.scu_role;
                    known.scp_role |= context.scp_role;
                    for ts in context.transfer_syntaxes {
                        if !known.transfer_syntaxes.contains(&ts) {
                            known.transfer_syntaxes.push(ts);
                        }
                    }
                }
                None => merged.push(context),
            }
        }
        merged
    }

    /// An acceptor policy for `ae_title` that supports every provider's contexts and answers
    /// SOP class extended negotiation through the provider of each SOP class
    /// ([`Scp::extended_negotiation`]).
    pub fn policy(&self, ae_title: &str) -> AcceptorPolicy {
        let dispatcher = self.clone();
        let policy = self
            .supported_contexts()
            .into_iter()
            .fold(AcceptorPolicy::new(ae_title), |policy, context| {
                policy.support(context)
            })
            .with_sop_class_extended_handler(move |item| {
                let sop_class = item.sop_class_uid.trim_end_matches(['\0', ' ']);
                dispatcher
                    .by_abstract_syntax
                    .get(sop_class)
                    .and_then(|&i| dispatcher.providers.get(i))?
                    .extended_negotiation(sop_class, &item.service_class_application_information)
            });
        match &self.fallback {
            Some((_, transfer_syntaxes)) => {
                policy.with_promiscuous_transfer_syntaxes(transfer_syntaxes.clone())
            }
            None => policy,
        }
    }

    fn provider_for(&self, abstract_syntax: &str) -> Option<&Arc<dyn Scp>> {
        self.by_abstract_syntax
            .get(abstract_syntax)
            .and_then(|&i| self.providers.get(i))
            .or(self.fallback.as_ref().map(|(provider, _)| provider))
    }

    /// Serves an established association until it ends: every request is performed in a task
    /// of its own and answered.
    pub async fn serve(&self, association: &Association) -> Outcome {
        self.serve_observed(association, None).await
    }

    /// [`Dispatcher::serve`], telling `observer` of every request answered.
    pub async fn serve_observed(
        &self,
        association: &Association,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Outcome {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                request = association.next_request() => match request {
                    Some(request) => {
                        let provider = association
                            .negotiated()
                            .context(request.presentation_context_id)
                            .and_then(|context| self.provider_for(&context.abstract_syntax))
                            .cloned();
                        running.spawn(
                            perform(provider, request, association.clone(), observer.clone())
                                .in_current_span(),
                        );
                    }
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        while running.join_next().await.is_some() {}
        match association.closed().await {
            Ending::Released => Outcome::Released,
            ending => Outcome::Failed(Error::from_ending(&ending, association.timeouts())),
        }
    }
}

/// Performs one request with `provider` and sends its final response, whatever happens to the
/// provider (an error or a panic becomes a failure response).
async fn perform(
    provider: Option<Arc<dyn Scp>>,
    mut request: IncomingRequest,
    association: Association,
    observer: Option<Arc<dyn RequestObserver>>,
) {
    let presentation_context_id = request.presentation_context_id;
    let context = RequestContext {
        association: association.clone(),
        presentation_context_id,
        cancelled: request.cancelled.clone(),
        after_response: Arc::default(),
    };
    let request_message = request.message.clone();
    let outcome = match provider {
        Some(provider) => {
            // A panic in the provider is caught here and answered like any failure.
            let performing = std::panic::AssertUnwindSafe(provider.perform(request, &context));
            match futures_util::FutureExt::catch_unwind(performing).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    warn!("the service provider panicked");
                    Err(ScpFailure::processing(
                        "the service provider failed unexpectedly",
                    ))
                }
            }
        }
        None => {
            info!("no provider for this SOP class");
            if let Some(data_set) = request.data_set.take() {
                // Read to its end before answering, as a peer expects.
                let _ = data_set.collect(usize::MAX).await;
            }
            Err(ScpFailure::new(
                Status::SOP_CLASS_NOT_SUPPORTED,
                "no provider for this SOP class",
            ))
        }
    };
    let after_response = context.take_after_response();
    let (response, after_response) = match outcome {
        Ok(response) => (response, after_response),
        Err(failure) => match failure_response(&request_message, &failure) {
            Some(response) => (response.into(), None),
            None => return,
        },
    };
    if let Some(observer) = &observer {
        observer.answered(&request_message, &response.message);
    }
    match association
        .respond(presentation_context_id, response.message, response.data_set)
        .await
    {
        Ok(()) => {
            if let Some(work) = after_response {
                work.await;
            }
        }
        Err(error) if !error.ends_association() => warn!(%error, "cannot send the response"),
        Err(_) => {}
    }
}

/// The final response reporting `failure` for `request`.
pub fn failure_response(request: &Message, failure: &ScpFailure) -> Option<Message> {
    let mut response = request.response_with_status(failure.status)?;
    response.set_error_comment(&failure.comment);
    Some(response)
}
