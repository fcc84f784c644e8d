//! Storage Service Class provider (PS3.4 Annex B): receives C-STORE data sets as streams into a
//! [`Storage`].

use std::sync::Arc;

use tracing::{debug, error};

use dimsum_dimse::message::{CStoreRq, CStoreRsp, Message};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::SupportedContext;

use super::{FinalResponse, RequestContext, Scp, ScpFailure, contexts_for};
use crate::storage::{
    BoxFuture, DimseOrigin, InstanceDescription, Origin, Storage, StoreFailure, StoreSuccess,
};
use crate::{DataSetStream, Error, IncomingRequest};

/// Storage SCP: accepts the given storage SOP classes and transfer syntaxes and streams each
/// data set into its [`Storage`].
pub struct StoreScp<S> {
    storage: Arc<S>,
    sop_classes: Vec<String>,
    transfer_syntaxes: Vec<String>,
}

impl<S> Clone for StoreScp<S> {
    fn clone(&self) -> Self {
        Self {
            storage: Arc::clone(&self.storage),
            sop_classes: self.sop_classes.clone(),
            transfer_syntaxes: self.transfer_syntaxes.clone(),
        }
    }
}

impl<S: Storage> StoreScp<S> {
    /// `transfer_syntaxes` in our order of preference.
    pub fn new(storage: S, sop_classes: Vec<String>, transfer_syntaxes: Vec<String>) -> Self {
        Self {
            storage: Arc::new(storage),
            sop_classes,
            transfer_syntaxes,
        }
    }

    /// The transfer syntaxes accepted, in order of preference.
    pub fn transfer_syntaxes(&self) -> &[String] {
        &self.transfer_syntaxes
    }

    async fn store(
        &self,
        rq: &CStoreRq,
        data_set: Option<DataSetStream>,
        context: &RequestContext,
    ) -> Result<Message, ScpFailure> {
        let info = context.info();
        let instance = InstanceDescription {
            sop_class_uid: rq.affected_sop_class_uid.clone(),
            sop_instance_uid: rq.affected_sop_instance_uid.clone(),
            transfer_syntax_uid: context.transfer_syntax().to_owned(),
            origin: Origin::Dimse(DimseOrigin {
                calling_ae_title: info.negotiated.calling_ae_title.clone(),
                called_ae_title: info.negotiated.called_ae_title.clone(),
                peer_address: info.peer_address,
                message_id: rq.message_id,
                priority: rq.priority,
                move_originator_ae_title: rq.move_originator_ae_title.clone(),
                move_originator_message_id: rq.move_originator_message_id,
            }),
        };
        let outcome = match data_set {
            None => Err(StoreFailure::new(
                Status::CANNOT_UNDERSTAND,
                "C-STORE-RQ without a data set",
            )),
            Some(data_set)
                if !valid_uid(&instance.sop_instance_uid)
                    || !valid_uid(&instance.sop_class_uid) =>
            {
                drain(data_set).await?;
                Err(StoreFailure::new(
                    Status::CANNOT_UNDERSTAND,
                    "SOP class or instance UID is not a valid UID",
                ))
            }
            Some(data_set) => self.receive(&instance, data_set).await?,
        };
        let (status, comment) = match outcome {
            Ok(success) => {
                debug!(
                    "Stored {} from {} ({}): {}",
                    instance.sop_instance_uid,
                    info.peer_ae_title(),
                    instance.sop_class_uid,
                    success.status
                );
                (success.status, success.comment)
            }
            Err(failure) => {
                error!(
                    "cannot store {} from {}: {} ({})",
                    instance.sop_instance_uid,
                    info.peer_ae_title(),
                    failure.comment,
                    failure.status
                );
                (failure.status, Some(failure.comment))
            }
        };
        // A UID that cannot be sent back (too long, control characters) is left out.
        let echo = |uid: &String| valid_uid(uid).then(|| uid.clone());
        let mut response = Message::CStoreRsp(CStoreRsp {
            affected_sop_class_uid: echo(&instance.sop_class_uid),
            affected_sop_instance_uid: echo(&instance.sop_instance_uid),
            ..CStoreRsp::new(rq.message_id, status)
        });
        if let Some(comment) = comment {
            response.set_error_comment(&comment);
        }
        Ok(response)
    }

    /// Streams the data set into the storage. A failing writer does not stop the reading: the
    /// rest of the data set is read and dropped, and the failure answered once it is in.
    async fn receive(
        &self,
        instance: &InstanceDescription,
        mut data_set: DataSetStream,
    ) -> Result<Result<StoreSuccess, StoreFailure>, Error> {
        let mut writer = match self.storage.begin(instance).await {
            Ok(writer) => writer,
            Err(failure) => {
                drain(data_set).await?;
                return Ok(Err(failure));
            }
        };
        // On a network error the writer is dropped here: the storage removes what it wrote.
        while let Some(fragment) = data_set.next().await {
            if let Err(failure) = writer.write(fragment?).await {
                drop(writer);
                drain(data_set).await?;
                return Ok(Err(failure));
            }
        }
        Ok(writer.finish().await)
    }
}

/// Reads a data set to its end, keeping nothing.
async fn drain(mut data_set: DataSetStream) -> Result<(), Error> {
    while let Some(fragment) = data_set.next().await {
        fragment?;
    }
    Ok(())
}

/// Whether a UID from a command can be stored under and echoed back (PS3.5 §9.1).
fn valid_uid(uid: &str) -> bool {
    dimsum_ul::negotiation::is_valid_uid(uid)
}

impl<S: Storage> Scp for StoreScp<S> {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        contexts_for(&self.sop_classes, &self.transfer_syntaxes)
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let IncomingRequest {
                message, data_set, ..
            } = request;
            match &message {
                Message::CStoreRq(rq) => self.store(rq, data_set, context).await.map(Into::into),
                _ => Err(ScpFailure::unrecognized("C-STORE")),
            }
        })
    }
}
