//! C-FIND SCP (PS3.4 Annex C.4.1, Modality Worklist K.4): the handler returns a stream of
//! matches; the framework sends one pending response per match and the final one, and stops
//! with status Cancel when a C-CANCEL-RQ arrives.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use dimsum_dimse::message::{CFindRq, CFindRsp, Message};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{FindOptions, SupportedContext};

use super::{FinalResponse, Query, RequestContext, Scp, ScpFailure, contexts_for};
use crate::IncomingRequest;
use crate::storage::BoxFuture;

/// One match: its identifier (encoded in the query's transfer syntax) and the pending status
/// to send it with (0xFF00, or 0xFF01 when optional keys were not supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindMatch {
    pub identifier: Bytes,
    pub status: Status,
}

impl FindMatch {
    /// A match sent with status 0xFF00.
    pub fn new(identifier: Bytes) -> Self {
        Self {
            identifier,
            status: Status::PENDING,
        }
    }
}

/// The matches of a query, produced as they are found.
pub type MatchStream = Pin<Box<dyn Stream<Item = Result<FindMatch, ScpFailure>> + Send>>;

/// The action of a C-FIND SCP: the matches for a query. Dropping the stream (on C-CANCEL, or
/// when the association ends) must stop the search.
pub trait FindHandler: Send + Sync + 'static {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>>;
}

/// C-FIND SCP for the given information models, over a [`FindHandler`].
pub struct FindScp<H> {
    handler: Arc<H>,
    sop_classes: Vec<String>,
    transfer_syntaxes: Vec<String>,
    /// The C-FIND options accepted when a requestor proposes them (PS3.4 C.5.1.1).
    options: FindOptions,
}

impl<H: FindHandler> FindScp<H> {
    /// `sop_classes`: the FIND SOP classes served; `transfer_syntaxes` in our order of
    /// preference.
    pub fn new(handler: H, sop_classes: Vec<String>, transfer_syntaxes: Vec<String>) -> Self {
        Self {
            handler: Arc::new(handler),
            sop_classes,
            transfer_syntaxes,
            options: FindOptions::NONE,
        }
    }

    /// Accepts these C-FIND options (PS3.4 C.5.1.1) for its SOP classes when a requestor
    /// proposes them; the handler then finds what was agreed in [`Query::find_options`]. With
    /// none (the default), extended negotiation is left unanswered. Only the options the handler
    /// implements belong here.
    pub fn with_find_options(mut self, options: FindOptions) -> Self {
        self.options = options;
        self
    }

    async fn find(
        &self,
        rq: &CFindRq,
        request: IncomingRequest,
        context: &RequestContext,
    ) -> Result<Message, ScpFailure> {
        let query = Query::read(
            &rq.affected_sop_class_uid,
            rq.priority,
            request.data_set,
            context,
        )
        .await?;
        let final_response = |status| {
            Message::CFindRsp(CFindRsp {
                affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
                ..CFindRsp::new(rq.message_id, status)
            })
        };
        let mut matches = self.handler.find(query).await?;
        loop {
            let next = tokio::select! {
                biased;
                _ = context.cancelled.cancelled() => return Ok(final_response(Status::CANCEL)),
                next = matches.next() => next,
            };
            match next {
                Some(Ok(found)) => {
                    let pending = Message::CFindRsp(CFindRsp {
                        affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
                        data_set_present: true,
                        ..CFindRsp::new(rq.message_id, pending_status(found.status))
                    });
                    context
                        .send_pending(pending, Some(found.identifier))
                        .await?;
                }
                Some(Err(failure)) => return Err(failure),
                None => return Ok(final_response(Status::SUCCESS)),
            }
        }
    }
}

/// A match's status as sent: FF00 or FF01; anything else becomes FF00.
fn pending_status(status: Status) -> Status {
    if status.is_pending() {
        status
    } else {
        Status::PENDING
    }
}

impl<H: FindHandler> Scp for FindScp<H> {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        contexts_for(&self.sop_classes, &self.transfer_syntaxes)
    }

    /// PS3.4 C.5.1.1: the options both proposed and supported, as many bytes as proposed.
    fn extended_negotiation(&self, sop_class_uid: &str, proposed: &[u8]) -> Option<Vec<u8>> {
        if self.options.is_empty() || !self.sop_classes.iter().any(|s| s == sop_class_uid) {
            return None;
        }
        FindOptions::answer(proposed, self.options)
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let Message::CFindRq(rq) = request.message.clone() else {
                return Err(ScpFailure::unrecognized("C-FIND"));
            };
            self.find(&rq, request, context).await.map(Into::into)
        })
    }
}
