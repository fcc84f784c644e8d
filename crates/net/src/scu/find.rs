//! Query/Retrieve and Modality Worklist C-FIND SCU (PS3.4 Annex C.4.1, K.4.1; PS3.7 §9.1.2):
//! a query on an information model, its matches as they arrive, and C-CANCEL (PS3.7 §9.3.2.3).
//!
//! [`find`] collects every match; [`FindStream`] hands them over one by one and keeps none, so
//! that a query with a million matches runs in the memory of one: the association stops
//! reading from the peer when matches are not taken (see the driver's backpressure). Each match
//! is checked by the hardened scanner before dicom-rs decodes it; one that is not a valid data
//! set is an error that names it ([`QueryError::InvalidMatch`]).
//!
//! The request types here ([`QueryRequest`], [`QueryError`], [`query_context`]) are shared by
//! the C-GET and C-MOVE SCUs.

use bytes::Bytes;
use tracing::{debug, info};

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::identifier;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_dimse::association::SendError;
use dimsum_dimse::message::{CFindRq, Message, Priority};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{FindOptions, ProposedContext};
use dimsum_ul::pdu::SopClassExtendedNegotiation;
use dimsum_ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};

use crate::{Association, DataSetStream, Error, Responses};

/// The transfer syntaxes proposed for the context of a query (its identifiers), in order of
/// preference.
pub const QUERY_TRANSFER_SYNTAXES: [&str; 2] =
    [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN];

/// What a C-FIND, C-GET or C-MOVE asks for (PS3.4 C.4.1.1, C.4.2.1, C.4.3.1; K.4.1.1): the
/// information model, the identifier (keys to match and, for C-FIND, to return; Query/Retrieve
/// Level (0008,0052) included, except for the worklist) and the priority.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub model: QueryModel,
    pub identifier: InMemDicomObject,
    pub priority: Priority,
}

impl QueryRequest {
    /// A request on `model` with `identifier`, at medium priority.
    pub fn new(model: QueryModel, identifier: InMemDicomObject) -> Self {
        Self {
            model,
            identifier,
            priority: Priority::Medium,
        }
    }

    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The SOP class of `service` in the request's model.
    pub fn sop_class(&self, service: QueryService) -> Result<&'static str, QueryError> {
        self.model.sop_class(service).ok_or(QueryError::NoSopClass {
            model: self.model,
            service,
        })
    }
}

/// The presentation context to propose for `service` of `model` (PS3.8 §9.3.2.2), with
/// [`QUERY_TRANSFER_SYNTAXES`].
pub fn query_context(
    model: QueryModel,
    service: QueryService,
) -> Result<ProposedContext, QueryError> {
    let sop_class = model
        .sop_class(service)
        .ok_or(QueryError::NoSopClass { model, service })?;
    Ok(ProposedContext::new(sop_class, QUERY_TRANSFER_SYNTAXES))
}

/// The SOP class extended negotiation item proposing `options` (PS3.4 C.5.1.1: relational
/// queries, combined date-time matching, ...) for the FIND SOP class of `model`, to add to the
/// association request with `AssociationRequest::with_sop_class_extended`.
pub fn find_options_proposal(
    model: QueryModel,
    options: FindOptions,
) -> Result<SopClassExtendedNegotiation, QueryError> {
    let sop_class = model
        .sop_class(QueryService::Find)
        .ok_or(QueryError::NoSopClass {
            model,
            service: QueryService::Find,
        })?;
    Ok(options.proposal(sop_class))
}

/// The C-FIND options the SCP accepted for the FIND SOP class of `model` (PS3.4 C.5.1.1), of
/// those we `proposed`: an acceptor's answer granting more than was proposed is not believed.
pub fn accepted_find_options(
    association: &Association,
    model: QueryModel,
    proposed: FindOptions,
) -> FindOptions {
    model
        .sop_class(QueryService::Find)
        .map(|sop_class| FindOptions::accepted(association.negotiated(), sop_class))
        .unwrap_or_default()
        .intersection(proposed)
}

/// Why a C-FIND, C-GET or C-MOVE could not be carried out. A final response with a failure
/// status is not an error: it is the operation's outcome.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Network(#[from] Error),
    #[error("the {model:?} information model has no {service:?} SOP class")]
    NoSopClass {
        model: QueryModel,
        service: QueryService,
    },
    #[error("cannot encode the identifier in transfer syntax {transfer_syntax}: {reason}")]
    Identifier {
        transfer_syntax: String,
        reason: String,
    },
    #[error("match {index} of C-FIND message {message_id} is not a valid data set: {reason}")]
    InvalidMatch {
        message_id: u16,
        /// 1 for the first match.
        index: usize,
        reason: String,
    },
    #[error("the {what} of message {message_id} is not a valid data set: {reason}")]
    InvalidResponseData {
        message_id: u16,
        what: &'static str,
        reason: String,
    },
    #[error(
        "{count} presentation contexts proposed, at most 128 fit in an association request (PS3.8 §9.3.2.2)"
    )]
    TooManyContexts { count: usize },
}

impl QueryError {
    /// Whether the association is gone after this error.
    pub fn ends_association(&self) -> bool {
        match self {
            QueryError::Network(error) => error.ends_association(),
            _ => false,
        }
    }
}

/// One match of a C-FIND (a pending C-FIND-RSP, PS3.4 C.4.1.1.4): the identifier and its
/// status, 0xFF00, or 0xFF01 when the SCP did not support some optional keys.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub identifier: InMemDicomObject,
    pub status: Status,
}

impl QueryMatch {
    /// Whether the SCP said that some optional keys were not supported (0xFF01).
    pub fn optional_keys_unsupported(&self) -> bool {
        self.status == Status::PENDING_WARNING
    }
}

/// The final response of a C-FIND (PS3.4 C.4.1.1.4, Table C.4-1): success, cancel or a
/// failure, with the SCP's Error Comment; and how many matches came before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindEnd {
    pub status: Status,
    pub error_comment: Option<String>,
    pub matches: usize,
}

/// Every match of a C-FIND and its final status ([`find`]).
#[derive(Debug, Clone)]
pub struct FindOutcome {
    pub matches: Vec<QueryMatch>,
    pub status: Status,
    pub error_comment: Option<String>,
}

/// Sends a C-FIND and collects every match until the final response. A match that is not a
/// valid data set ends the query (C-CANCEL, the rest read and dropped) with
/// [`QueryError::InvalidMatch`].
pub async fn find(
    association: &Association,
    query: &QueryRequest,
) -> Result<FindOutcome, QueryError> {
    let mut stream = FindStream::start(association, query).await?;
    let mut matches = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(found)) => matches.push(found),
            Ok(None) => break,
            Err(error) if error.ends_association() => return Err(error),
            Err(error) => {
                stream.cancel().await?;
                stream.finish().await?;
                return Err(error);
            }
        }
    }
    let end = stream.finish().await?;
    Ok(FindOutcome {
        matches,
        status: end.status,
        error_comment: end.error_comment,
    })
}

/// A C-FIND in progress, its matches taken one at a time ([`FindStream::next`]); nothing is
/// kept. [`FindStream::cancel`] asks the SCP to stop; the matches it sent meanwhile still come,
/// then the final response (usually Cancel, 0xFE00).
///
/// Dropping it before the end leaves the operation to finish on the association, its
/// responses discarded; cancel and [`FindStream::finish`] end it cleanly.
#[derive(Debug)]
pub struct FindStream {
    association: Association,
    presentation_context_id: u8,
    message_id: u16,
    transfer_syntax: String,
    responses: Responses,
    matches: usize,
    cancel_sent: bool,
    end: Option<FindEnd>,
}

impl FindStream {
    /// Sends the C-FIND-RQ on the accepted context of the model's FIND SOP class, its
    /// identifier encoded in that context's transfer syntax.
    pub async fn start(
        association: &Association,
        query: &QueryRequest,
    ) -> Result<FindStream, QueryError> {
        let sop_class = query.sop_class(QueryService::Find)?;
        let (presentation_context_id, transfer_syntax, identifier) =
            prepare(association, sop_class, &query.identifier)?;
        let message_id = association.next_message_id();
        let request = Message::CFindRq(CFindRq {
            message_id,
            affected_sop_class_uid: sop_class.to_owned(),
            priority: query.priority,
            data_set_present: true,
        });
        info!("Sending Find Request (MsgID {message_id}, {sop_class})");
        let responses = association
            .request(presentation_context_id, request, Some(identifier))
            .await?;
        Ok(FindStream {
            association: association.clone(),
            presentation_context_id,
            message_id,
            transfer_syntax,
            responses,
            matches: 0,
            cancel_sent: false,
            end: None,
        })
    }

    /// The Message ID of the C-FIND-RQ.
    pub fn message_id(&self) -> u16 {
        self.message_id
    }

    /// The next match; `None` once the final response has come ([`FindStream::end`] then
    /// tells its status). A match that is not a valid data set gives
    /// [`QueryError::InvalidMatch`], and the stream goes on with the next one.
    pub async fn next(&mut self) -> Result<Option<QueryMatch>, QueryError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let response = match self.responses.next().await {
            Some(response) => response?,
            None => return Err(Error::ConnectionClosed.into()),
        };
        let Message::CFindRsp(rsp) = &response.message else {
            return Err(unexpected("C-FIND-RSP", self.message_id, &response.message).into());
        };
        let (status, error_comment) = (rsp.status, rsp.error_comment.clone());
        if response.is_final {
            if let Some(data_set) = response.data_set {
                // A final C-FIND-RSP has no identifier (PS3.7 Table 9.3-4); one is dropped.
                drain(data_set).await?;
            }
            info!(
                "Received Final Find Response (MsgID {}): {status}",
                self.message_id
            );
            self.end = Some(FindEnd {
                status,
                error_comment,
                matches: self.matches,
            });
            return Ok(None);
        }
        self.matches += 1;
        let index = self.matches;
        let invalid = |reason: String| QueryError::InvalidMatch {
            message_id: self.message_id,
            index,
            reason,
        };
        let Some(data_set) = response.data_set else {
            return Err(invalid("the pending C-FIND-RSP has no identifier".into()));
        };
        let data = match data_set
            .collect(self.association.limits().max_in_memory_data_set)
            .await
        {
            Ok(data) => data,
            Err(error @ Error::DataSetTooLarge { .. }) => return Err(invalid(error.to_string())),
            Err(error) => return Err(error.into()),
        };
        let identifier = identifier::decode(&data, &self.transfer_syntax, &ScanLimits::default())
            .map_err(|error| invalid(error.to_string()))?;
        debug!(
            "Find Response {index} (MsgID {}): {status}",
            self.message_id
        );
        Ok(Some(QueryMatch { identifier, status }))
    }

    /// Sends a C-CANCEL-RQ for the query (PS3.7 §9.3.2.3), once; a no-op after the final
    /// response. Matches already on their way still come from [`FindStream::next`].
    pub async fn cancel(&mut self) -> Result<(), QueryError> {
        if self.cancel_sent || self.end.is_some() {
            return Ok(());
        }
        info!("Sending Cancel Request (MsgID {})", self.message_id);
        match self
            .association
            .cancel(self.presentation_context_id, self.message_id)
            .await
        {
            // The final response is in already: nothing left to cancel.
            Ok(()) | Err(Error::Send(SendError::NoSuchOperation { .. })) => {
                self.cancel_sent = true;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Whether [`FindStream::cancel`] sent a C-CANCEL-RQ.
    pub fn is_cancelled(&self) -> bool {
        self.cancel_sent
    }

    /// The final response, once it has come.
    pub fn end(&self) -> Option<&FindEnd> {
        self.end.as_ref()
    }

    /// Reads (and drops) the remaining matches up to the final response, and returns it.
    pub async fn finish(mut self) -> Result<FindEnd, QueryError> {
        loop {
            if let Some(end) = self.end.take() {
                return Ok(end);
            }
            match self.next().await {
                Ok(_) => {}
                Err(error) if error.ends_association() => return Err(error),
                Err(_) => {}
            }
        }
    }
}

/// The accepted context for `sop_class`, its transfer syntax and `identifier` encoded in it.
pub(super) fn prepare(
    association: &Association,
    sop_class: &str,
    identifier: &InMemDicomObject,
) -> Result<(u8, String, Bytes), QueryError> {
    let presentation_context_id = association.context_for(sop_class)?;
    let transfer_syntax = association
        .transfer_syntax(presentation_context_id)
        .to_owned();
    let encoded = identifier::encode(identifier, &transfer_syntax).map_err(|error| {
        QueryError::Identifier {
            transfer_syntax: transfer_syntax.clone(),
            reason: error.to_string(),
        }
    })?;
    Ok((presentation_context_id, transfer_syntax, encoded.into()))
}

/// "expected the C-FIND-RSP to message 3, got C-STORE-RQ"
pub(super) fn unexpected(expected: &str, message_id: u16, got: &Message) -> Error {
    Error::UnexpectedMessage(format!(
        "expected the {expected} to message {message_id}, got {}",
        got.command_field()
    ))
}

/// Reads a data set to its end, keeping nothing.
pub(super) async fn drain(mut data_set: DataSetStream) -> Result<(), Error> {
    while let Some(fragment) = data_set.next().await {
        fragment?;
    }
    Ok(())
}
