//! Storage Service Class provider (PS3.4 Annex B): receives C-STORE data sets as streams.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{debug, error};

use dimsum_dimse::message::{CStoreRsp, Message, Priority};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::SupportedContext;

use super::{BoxFuture, Scp, refuse};
use crate::{Association, Command, Error};

/// What a storage handler knows about the instance being stored.
#[derive(Debug, Clone)]
pub struct StoreRequestInfo {
    pub calling_ae_title: String,
    pub called_ae_title: String,
    pub peer_address: SocketAddr,
    pub message_id: u16,
    pub priority: Priority,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The transfer syntax of the data set: the one negotiated for its presentation context.
    pub transfer_syntax_uid: String,
    pub move_originator_ae_title: Option<String>,
    pub move_originator_message_id: Option<u16>,
}

/// Why a store failed: the status to answer (PS3.4 Table B.2-1) and what to tell people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    pub status: Status,
    /// Goes into the response's Error Comment (at most 64 characters are sent).
    pub comment: String,
}

impl StoreFailure {
    pub fn new(status: Status, comment: impl Into<String>) -> Self {
        Self {
            status,
            comment: comment.into(),
        }
    }
}

/// A successful (possibly warning) outcome of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSuccess {
    /// Success, or a warning such as 0xB007 (data set does not match SOP class).
    pub status: Status,
    pub comment: Option<String>,
}

/// Where one data set goes while it arrives.
pub trait StorageSink: Send {
    /// Takes the next fragment of the data set.
    fn write(&mut self, data: &[u8]) -> Result<(), StoreFailure>;
    /// The data set is complete: make it durable and visible.
    fn finish(self: Box<Self>) -> Result<StoreSuccess, StoreFailure>;
}

/// The action of a Storage SCP: where each incoming instance goes. Dropping a sink without
/// [`StorageSink::finish`] must leave nothing behind (the transfer was cut off or refused).
pub trait StorageHandler: Send + Sync + 'static {
    /// Starts storing an instance, or refuses it with a status.
    fn begin(&self, request: &StoreRequestInfo) -> Result<Box<dyn StorageSink>, StoreFailure>;
}

/// Storage SCP: accepts the given storage SOP classes and transfer syntaxes and streams each
/// data set into its [`StorageHandler`].
pub struct StoreScp<H> {
    handler: Arc<H>,
    sop_classes: Vec<String>,
    transfer_syntaxes: Vec<String>,
}

impl<H> Clone for StoreScp<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
            sop_classes: self.sop_classes.clone(),
            transfer_syntaxes: self.transfer_syntaxes.clone(),
        }
    }
}

impl<H: StorageHandler> StoreScp<H> {
    /// `transfer_syntaxes` in our order of preference.
    pub fn new(handler: H, sop_classes: Vec<String>, transfer_syntaxes: Vec<String>) -> Self {
        Self {
            handler: Arc::new(handler),
            sop_classes,
            transfer_syntaxes,
        }
    }

    /// The transfer syntaxes accepted, in order of preference.
    pub fn transfer_syntaxes(&self) -> &[String] {
        &self.transfer_syntaxes
    }

    async fn store(&self, request: Command, association: &mut Association) -> Result<(), Error> {
        let Message::CStoreRq(rq) = &request.message else {
            return refuse(request, association, Status::UNRECOGNIZED_OPERATION).await;
        };
        let presentation_context_id = request.presentation_context_id;
        let info = association.info();
        let transfer_syntax_uid = association
            .negotiated()
            .context(presentation_context_id)
            .and_then(|context| context.transfer_syntax.clone())
            .unwrap_or_default();
        let store_request = StoreRequestInfo {
            calling_ae_title: info.negotiated.calling_ae_title.clone(),
            called_ae_title: info.negotiated.called_ae_title.clone(),
            peer_address: info.peer_address,
            message_id: rq.message_id,
            priority: rq.priority,
            sop_class_uid: rq.affected_sop_class_uid.clone(),
            sop_instance_uid: rq.affected_sop_instance_uid.clone(),
            transfer_syntax_uid,
            move_originator_ae_title: rq.move_originator_ae_title.clone(),
            move_originator_message_id: rq.move_originator_message_id,
        };
        let outcome = if !rq.data_set_present {
            Err(StoreFailure::new(
                Status::CANNOT_UNDERSTAND,
                "C-STORE-RQ without a data set",
            ))
        } else if !acceptable_uid(&store_request.sop_instance_uid)
            || !acceptable_uid(&store_request.sop_class_uid)
        {
            association.discard_data_set().await?;
            Err(StoreFailure::new(
                Status::CANNOT_UNDERSTAND,
                "SOP class or instance UID is not a valid UID",
            ))
        } else {
            self.receive(&store_request, association).await?
        };
        let (status, comment) = match outcome {
            Ok(success) => {
                debug!(
                    "Stored {} from {} ({}): {}",
                    store_request.sop_instance_uid,
                    store_request.calling_ae_title,
                    store_request.sop_class_uid,
                    success.status
                );
                (success.status, success.comment)
            }
            Err(failure) => {
                error!(
                    "cannot store {} from {}: {} ({})",
                    store_request.sop_instance_uid,
                    store_request.calling_ae_title,
                    failure.comment,
                    failure.status
                );
                (failure.status, Some(failure.comment))
            }
        };
        // A UID that cannot be sent back (too long, control characters) is left out.
        let echo = |uid: &String| acceptable_uid(uid).then(|| uid.clone());
        let response = Message::CStoreRsp(CStoreRsp {
            affected_sop_class_uid: echo(&store_request.sop_class_uid),
            affected_sop_instance_uid: echo(&store_request.sop_instance_uid),
            error_comment: comment.map(|c| error_comment(&c)),
            ..CStoreRsp::new(rq.message_id, status)
        });
        association
            .send_message(presentation_context_id, &response, None)
            .await
    }

    /// Streams the data set into the handler's sink. A failing sink does not stop the reading:
    /// the rest of the data set is read and dropped so that the association stays usable.
    async fn receive(
        &self,
        request: &StoreRequestInfo,
        association: &mut Association,
    ) -> Result<Result<StoreSuccess, StoreFailure>, Error> {
        let mut sink = match self.handler.begin(request) {
            Ok(sink) => Some(sink),
            Err(failure) => {
                association.discard_data_set().await?;
                return Ok(Err(failure));
            }
        };
        let mut failure = None;
        loop {
            // On a network error the sink is dropped here: the handler removes what it wrote.
            let (fragment, is_last) = association.read_data_fragment().await?;
            if let Some(active) = sink.as_mut()
                && let Err(e) = active.write(&fragment)
            {
                failure = Some(e);
                sink = None;
            }
            if is_last {
                break;
            }
        }
        Ok(match (sink, failure) {
            (Some(sink), _) => sink.finish(),
            (None, Some(failure)) => Err(failure),
            (None, None) => Err(StoreFailure::new(
                Status::PROCESSING_FAILURE,
                "storage sink lost",
            )),
        })
    }
}

/// Whether a UID from a command can be stored under and echoed back: a well-formed UID
/// (PS3.5 §9.1: 1 to 64 characters, digits and dots, no empty component).
fn acceptable_uid(uid: &str) -> bool {
    dimsum_ul::negotiation::is_valid_uid(uid)
}

/// An Error Comment (0000,0902) is LO: at most 64 characters.
fn error_comment(text: &str) -> String {
    text.chars().take(64).collect()
}

impl<H: StorageHandler> Scp for StoreScp<H> {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        self.sop_classes
            .iter()
            .map(|sop_class| {
                SupportedContext::new(
                    sop_class.as_str(),
                    self.transfer_syntaxes.iter().map(String::as_str),
                )
            })
            .collect()
    }

    fn handle<'a>(
        &'a self,
        request: Command,
        association: &'a mut Association,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.store(request, association))
    }
}
