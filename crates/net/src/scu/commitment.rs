//! Storage Commitment Push Model SCU (PS3.4 Annex J, J.3.2.1.2 and J.3.3.1.3): asks a peer to
//! commit to keep instances it was sent, and waits for its answer.
//!
//! [`commit`] sends the N-ACTION-RQ with a fresh Transaction UID and, once the N-ACTION-RSP says
//! the request was taken, waits (up to a time limit) for the SCP's N-EVENT-REPORT-RQ on the same
//! association, answering it with N-EVENT-REPORT-RSP 0x0000. An SCP may report on a new
//! association instead (the standard lets the SCU release as soon as the N-ACTION-RSP is in):
//! [`CommitmentReceiver`] is a temporary SCP of ours on an incoming port, accepting the SCP role
//! the reporting SCP proposes, and [`commit_via`] waits on both the association and the
//! receiver, as [`crate::scu::move_to_self`] does for C-MOVE.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::ToSocketAddrs;
use tokio::sync::oneshot;
use tracing::{info, warn};

use dimsum_dimse::message::{Message, NActionRq, NEventReportRq, NEventReportRsp};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{ProposedContext, SupportedContext};

use crate::scp::{
    COMMITMENT_FAILURES_EXIST, COMMITMENT_SUCCESSFUL, COMMITMENT_TRANSFER_SYNTAXES,
    CommitmentDataError, CommitmentRequest, CommitmentResult, Dispatcher, FinalResponse,
    REQUEST_STORAGE_COMMITMENT, RequestContext, STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE, Scp, ScpFailure, SopReference,
};
use crate::storage::BoxFuture;
use crate::{Association, Error, IncomingRequest, Server, ServerConfig, ServerStatistics};

/// How long [`commit`] waits for the report unless told otherwise.
pub const DEFAULT_REPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest Event Information read.
const MAX_REPORT_DATA_SET: usize = 32 * 1024 * 1024;

/// The presentation context to propose for Storage Commitment requests (the default SCU role).
pub fn commitment_context() -> ProposedContext {
    ProposedContext::new(STORAGE_COMMITMENT_PUSH_MODEL, COMMITMENT_TRANSFER_SYNTAXES)
}

/// The answer to a Storage Commitment request (PS3.4 J.3.3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentReport {
    /// The instances committed and those that failed, with the reasons.
    pub result: CommitmentResult,
    /// Event Type ID as sent: 1 (all committed) or 2 (failures exist).
    pub event_type_id: u16,
    /// Instances of the request that the report names in neither list (PS3.4 J.3.3.1.2 wants
    /// every one named); not committed.
    pub unreported: Vec<SopReference>,
    /// Whether the report came on a new association (to a [`CommitmentReceiver`]) rather than
    /// on the request's.
    pub on_new_association: bool,
}

impl CommitmentReport {
    /// Whether every instance asked for was committed.
    pub fn all_committed(&self) -> bool {
        self.result.failed.is_empty() && self.unreported.is_empty()
    }
}

/// Why a Storage Commitment request got no report. A report with failures is not an error: it
/// is the outcome.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Network(#[from] Error),
    #[error("no instance to commit")]
    Empty,
    #[error("cannot encode the Storage Commitment request: {0}")]
    Encode(CommitmentDataError),
    #[error("the peer refused the Storage Commitment request: {status}{}", comment_suffix(.comment))]
    Refused {
        status: Status,
        comment: Option<String>,
    },
    #[error(
        "no Storage Commitment report for transaction {transaction_uid} within {seconds:.0} s (the peer may report on a new association: listen for it on a port)"
    )]
    NoReport {
        transaction_uid: String,
        seconds: f64,
    },
    #[error(
        "the association ended before the Storage Commitment report for transaction {transaction_uid} arrived ({source}); listen on a port for a report on a new association"
    )]
    Ended {
        transaction_uid: String,
        source: Error,
    },
}

fn comment_suffix(comment: &Option<String>) -> String {
    comment
        .as_deref()
        .map(|comment| format!(": {comment}"))
        .unwrap_or_default()
}

/// Requests storage commitment for `references` on `association` and waits up to `wait` for
/// the report on the same association.
pub async fn commit(
    association: &Association,
    references: &[SopReference],
    wait: Duration,
) -> Result<CommitmentReport, CommitError> {
    let reports = Reports::default();
    transaction(association, &reports, references, wait, false).await
}

/// Like [`commit`], but the report may also come on a new association to `receiver`, which
/// serves for the duration and is then shut down (its associations allowed to finish); returns
/// its statistics too.
pub async fn commit_via(
    association: &Association,
    receiver: CommitmentReceiver,
    references: &[SopReference],
    wait: Duration,
) -> Result<(CommitmentReport, ServerStatistics), CommitError> {
    let CommitmentReceiver { server, reports } = receiver;
    let handle = server.handle();
    let serving = server.run();
    let committing = pin!(async {
        let outcome = transaction(association, &reports, references, wait, true).await;
        handle.shutdown();
        outcome
    });
    let (outcome, statistics) = tokio::join!(committing, serving);
    Ok((outcome?, statistics))
}

/// A temporary Storage Commitment SCU endpoint on an incoming port, for reports the SCP sends on
/// a new association (PS3.4 J.3.3.1.3): it accepts the Storage Commitment SOP class with the
/// SCP role for the requestor and answers its N-EVENT-REPORT-RQs. Bound first (so that its port
/// is known), then run by [`commit_via`]. The SCP must know it by its AE title
/// ([`ServerConfig::ae_title`], normally our calling AE title) and address.
pub struct CommitmentReceiver {
    server: Server,
    reports: Reports,
}

impl CommitmentReceiver {
    /// Binds a server at `address` (port 0 for any free port).
    pub async fn bind(
        address: impl ToSocketAddrs,
        config: ServerConfig,
    ) -> Result<CommitmentReceiver, Error> {
        let reports = Reports::default();
        let scp = ReportScp {
            reports: reports.clone(),
            on_new_association: true,
        };
        let server = Server::bind(address, config, Dispatcher::new().with(scp)).await?;
        Ok(CommitmentReceiver { server, reports })
    }

    /// The address the receiver listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The AE title it answers as.
    pub fn ae_title(&self) -> &str {
        &self.server.policy().ae_title
    }
}

impl std::fmt::Debug for CommitmentReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitmentReceiver")
            .field("ae_title", &self.ae_title())
            .field("address", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// A report as handed from the SCP that answered it to the waiting request.
#[derive(Debug)]
struct Delivered {
    result: CommitmentResult,
    event_type_id: u16,
    on_new_association: bool,
}

/// The transactions waiting for their report, by Transaction UID.
#[derive(Clone, Default)]
struct Reports {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Delivered>>>>,
}

impl Reports {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Delivered>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expect(&self, transaction_uid: &str) -> oneshot::Receiver<Delivered> {
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(transaction_uid.to_owned(), sender);
        receiver
    }

    fn is_waiting(&self, transaction_uid: &str) -> bool {
        self.lock().contains_key(transaction_uid)
    }

    fn deliver(&self, delivered: Delivered) {
        if let Some(sender) = self.lock().remove(&delivered.result.transaction_uid) {
            let _ = sender.send(delivered);
        }
    }

    fn forget(&self, transaction_uid: &str) {
        self.lock().remove(transaction_uid);
    }
}

/// Answers the N-EVENT-REPORT-RQs of Storage Commitment for the transactions awaited.
struct ReportScp {
    reports: Reports,
    on_new_association: bool,
}

impl ReportScp {
    async fn receive(
        &self,
        rq: &NEventReportRq,
        request: IncomingRequest,
        context: &RequestContext,
    ) -> Result<Message, ScpFailure> {
        let limit = context
            .association
            .limits()
            .max_in_memory_data_set
            .min(MAX_REPORT_DATA_SET);
        let data = match request.data_set {
            Some(data_set) => Some(data_set.collect(limit).await?),
            None => None,
        };
        let instance = rq.affected_sop_instance_uid.trim_end_matches(['\0', ' ']);
        if instance != STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE {
            return Err(ScpFailure::new(
                Status::NO_SUCH_SOP_INSTANCE,
                format!("the SOP instance is {STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE}"),
            ));
        }
        if ![COMMITMENT_SUCCESSFUL, COMMITMENT_FAILURES_EXIST].contains(&rq.event_type_id) {
            return Err(ScpFailure::new(
                Status::NO_SUCH_EVENT_TYPE,
                format!("Event Type {} is not 1 or 2", rq.event_type_id),
            ));
        }
        let Some(data) = data else {
            return Err(ScpFailure::new(
                Status::INVALID_ARGUMENT_VALUE,
                "the N-EVENT-REPORT-RQ has no Event Information",
            ));
        };
        let result =
            CommitmentResult::decode(&data, context.transfer_syntax()).map_err(|error| {
                let status = match error {
                    CommitmentDataError::Unreadable(_) => Status::PROCESSING_FAILURE,
                    _ => Status::INVALID_ARGUMENT_VALUE,
                };
                ScpFailure::new(status, format!("Event Information: {error}"))
            })?;
        if !self.reports.is_waiting(&result.transaction_uid) {
            return Err(ScpFailure::new(
                Status::INVALID_ARGUMENT_VALUE,
                format!(
                    "no Storage Commitment request {} is awaited here",
                    result.transaction_uid
                ),
            ));
        }
        info!(
            "Received Storage Commitment report {} from {} (event type {}): {} committed, {} failed",
            result.transaction_uid,
            context.info().peer_ae_title(),
            rq.event_type_id,
            result.committed.len(),
            result.failed.len()
        );
        // Handed over once the response is out, so that the caller may release at once.
        let reports = self.reports.clone();
        let delivered = Delivered {
            result,
            event_type_id: rq.event_type_id,
            on_new_association: self.on_new_association,
        };
        context.after_response(async move { reports.deliver(delivered) });
        Ok(Message::NEventReportRsp(NEventReportRsp {
            affected_sop_class_uid: Some(STORAGE_COMMITMENT_PUSH_MODEL.to_owned()),
            affected_sop_instance_uid: Some(STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE.to_owned()),
            event_type_id: Some(rq.event_type_id),
            ..NEventReportRsp::new(rq.message_id, Status::SUCCESS)
        }))
    }
}

impl Scp for ReportScp {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        // The reporting SCP is the requestor and proposes the SCP role for itself.
        vec![
            SupportedContext::new(STORAGE_COMMITMENT_PUSH_MODEL, COMMITMENT_TRANSFER_SYNTAXES)
                .with_roles(false, true),
        ]
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let Message::NEventReportRq(rq) = request.message.clone() else {
                return Err(ScpFailure::unrecognized("N-EVENT-REPORT"));
            };
            self.receive(&rq, request, context).await.map(Into::into)
        })
    }
}

/// One Storage Commitment transaction: the request, then the wait for its report on the
/// association (and on a receiver sharing `reports`, when `receiving`).
async fn transaction(
    association: &Association,
    reports: &Reports,
    references: &[SopReference],
    wait: Duration,
    receiving: bool,
) -> Result<CommitmentReport, CommitError> {
    if references.is_empty() {
        return Err(CommitError::Empty);
    }
    let request = CommitmentRequest::new(references.to_vec());
    let transaction_uid = request.transaction_uid.clone();
    let delivered = reports.expect(&transaction_uid);
    let outcome =
        request_and_wait(association, reports, &request, delivered, wait, receiving).await;
    reports.forget(&transaction_uid);
    let delivered = outcome?;
    let reported: std::collections::HashSet<&SopReference> = delivered
        .result
        .committed
        .iter()
        .chain(
            delivered
                .result
                .failed
                .iter()
                .map(|failed| &failed.reference),
        )
        .collect();
    let unreported: Vec<SopReference> = references
        .iter()
        .filter(|reference| !reported.contains(reference))
        .cloned()
        .collect();
    if !unreported.is_empty() {
        warn!(
            "the Storage Commitment report {transaction_uid} does not name {} of the instances asked for",
            unreported.len()
        );
    }
    Ok(CommitmentReport {
        result: delivered.result,
        event_type_id: delivered.event_type_id,
        unreported,
        on_new_association: delivered.on_new_association,
    })
}

async fn request_and_wait(
    association: &Association,
    reports: &Reports,
    request: &CommitmentRequest,
    mut delivered: oneshot::Receiver<Delivered>,
    wait: Duration,
    receiving: bool,
) -> Result<Delivered, CommitError> {
    let transaction_uid = &request.transaction_uid;
    let presentation_context_id = association.context_for(STORAGE_COMMITMENT_PUSH_MODEL)?;
    let transfer_syntax = association
        .transfer_syntax(presentation_context_id)
        .to_owned();
    let data = request
        .encode(&transfer_syntax)
        .map_err(CommitError::Encode)?;
    let message_id = association.next_message_id();
    let rq = Message::NActionRq(NActionRq {
        message_id,
        requested_sop_class_uid: STORAGE_COMMITMENT_PUSH_MODEL.to_owned(),
        requested_sop_instance_uid: STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE.to_owned(),
        action_type_id: REQUEST_STORAGE_COMMITMENT,
        data_set_present: true,
    });
    info!(
        "Sending Storage Commitment Request (MsgID {message_id}, transaction {transaction_uid}) for {} instances",
        request.references.len()
    );
    let response = association
        .request(presentation_context_id, rq, Some(Bytes::from(data)))
        .await?
        .last()
        .await?;
    let (status, comment) = match &response.message {
        Message::NActionRsp(rsp) => (rsp.status, rsp.error_comment.clone()),
        other => {
            return Err(Error::UnexpectedMessage(format!(
                "expected the N-ACTION-RSP to message {message_id}, got {}",
                other.command_field()
            ))
            .into());
        }
    };
    if status.is_failure() || status.is_cancel() || status.is_pending() {
        return Err(CommitError::Refused { status, comment });
    }
    info!(
        "Storage Commitment request {transaction_uid} accepted ({status}); waiting for the report"
    );
    let dispatcher = Dispatcher::new().with(ReportScp {
        reports: reports.clone(),
        on_new_association: false,
    });
    let waiting = async {
        let mut serving = pin!(dispatcher.serve(association));
        let mut association_open = true;
        loop {
            tokio::select! {
                biased;
                delivered = &mut delivered => {
                    return delivered.map_err(|_| CommitError::Network(Error::ConnectionClosed));
                }
                outcome = &mut serving, if association_open => {
                    association_open = false;
                    if let Ok(delivered) = delivered.try_recv() {
                        return Ok(delivered);
                    }
                    if !receiving {
                        let source = match outcome {
                            crate::scp::Outcome::Released => Error::Released,
                            crate::scp::Outcome::Failed(error) => error,
                        };
                        return Err(CommitError::Ended {
                            transaction_uid: transaction_uid.clone(),
                            source,
                        });
                    }
                }
            }
        }
    };
    match tokio::time::timeout(wait, waiting).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CommitError::NoReport {
            transaction_uid: transaction_uid.clone(),
            seconds: wait.as_secs_f64(),
        }),
    }
}
