//! Storage Commitment Push Model (PS3.4 Annex J): the data sets both roles exchange, and the
//! SCP.
//!
//! The SCU asks, with an N-ACTION-RQ (Action Type 1) on the well-known SOP instance
//! [`STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE`], that the SCP commit to keep a list of SOP
//! instances, naming the request with a Transaction UID ([`CommitmentRequest`], PS3.4 J.3.2).
//! The N-ACTION-RSP only says that the request was understood; the answer comes later as an
//! N-EVENT-REPORT-RQ sent by the SCP ([`CommitmentResult`], PS3.4 J.3.3): Event Type 1 when
//! every instance is committed, 2 when some failed, each failure with its reason
//! ([`FailureReason`]).
//!
//! [`StorageCommitmentScp`] answers the N-ACTION-RQ as soon as the request is read, asks its
//! [`CommitmentHandler`] which instances it holds, and sends the report once the N-ACTION-RSP has
//! gone out: on the same association while it is open, otherwise (or always, when so configured)
//! on a new association to the requestor's AE title, looked up in an address table, proposing
//! the SCP role for the SOP class (PS3.4 J.3.3.1.3, PS3.7 D.3.3.4).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tracing::{Instrument, error, info, warn};

use dimsum_dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::identifier;
use dimsum_dataset::scan::ScanLimits;
use dimsum_dimse::message::{Message, NActionRq, NActionRsp, NEventReportRq};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AssociationRequest, ProposedContext, SupportedContext, is_valid_uid};
use dimsum_ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};

use super::{FinalResponse, RequestContext, Scp, ScpFailure};
use crate::storage::BoxFuture;
use crate::tls::ClientTls;
use crate::{Association, DataSetStream, Error, IncomingRequest, Limits, Role, Timeouts};

/// Storage Commitment Push Model SOP Class (PS3.4 J.3.5).
pub const STORAGE_COMMITMENT_PUSH_MODEL: &str = "1.2.840.10008.1.20.1";
/// The well-known SOP instance every Storage Commitment request and report names (PS3.4 J.3.5).
pub const STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE: &str = "1.2.840.10008.1.20.1.1";
/// Action Type ID of the N-ACTION-RQ: Request Storage Commitment (PS3.4 Table J.3-1).
pub const REQUEST_STORAGE_COMMITMENT: u16 = 1;
/// Event Type ID of the N-EVENT-REPORT-RQ: every instance committed (PS3.4 Table J.3-2).
pub const COMMITMENT_SUCCESSFUL: u16 = 1;
/// Event Type ID of the N-EVENT-REPORT-RQ: some instances failed (PS3.4 Table J.3-2).
pub const COMMITMENT_FAILURES_EXIST: u16 = 2;
/// The transfer syntaxes of the Storage Commitment data sets, in our order of preference.
pub const COMMITMENT_TRANSFER_SYNTAXES: [&str; 2] =
    [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN];
/// The most instances one request may name unless configured otherwise
/// ([`StorageCommitmentScp::with_max_references`]).
pub const DEFAULT_MAX_REFERENCES: usize = 100_000;
/// The largest Action Information or Event Information read, whatever the association allows.
const MAX_COMMITMENT_DATA_SET: usize = 32 * 1024 * 1024;

/// A SOP instance named in a Storage Commitment request or report (the SOP Instance Reference
/// Macro, PS3.3 Table 10-11): Referenced SOP Class UID (0008,1150) and Referenced SOP Instance
/// UID (0008,1155).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SopReference {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

impl SopReference {
    pub fn new(sop_class_uid: impl Into<String>, sop_instance_uid: impl Into<String>) -> Self {
        Self {
            sop_class_uid: sop_class_uid.into(),
            sop_instance_uid: sop_instance_uid.into(),
        }
    }
}

impl fmt::Display for SopReference {
    /// `1.2.3.4 (1.2.840.10008.5.1.4.1.1.2)`: the instance, then its class.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.sop_instance_uid, self.sop_class_uid)
    }
}

/// Why storage commitment could not be provided for an instance: Failure Reason (0008,1197)
/// (PS3.3 C.14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureReason(pub u16);

impl FailureReason {
    /// 0x0110: a general failure in processing the operation.
    pub const PROCESSING_FAILURE: FailureReason = FailureReason(0x0110);
    /// 0x0112: the instance is not held by the SCP.
    pub const NO_SUCH_OBJECT_INSTANCE: FailureReason = FailureReason(0x0112);
    /// 0x0119: the SCP holds the instance under another SOP class.
    pub const CLASS_INSTANCE_CONFLICT: FailureReason = FailureReason(0x0119);
    /// 0x0122: the SCP does not support the instance's SOP class.
    pub const REFERENCED_SOP_CLASS_NOT_SUPPORTED: FailureReason = FailureReason(0x0122);
    /// 0x0131: the Transaction UID is already in use.
    pub const DUPLICATE_TRANSACTION_UID: FailureReason = FailureReason(0x0131);
    /// 0x0213: the SCP has not enough resources to store the instance.
    pub const RESOURCE_LIMITATION: FailureReason = FailureReason(0x0213);

    /// The meaning PS3.3 C.14.1.1 gives the value.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x0110 => "processing failure",
            0x0112 => "no such object instance",
            0x0119 => "class/instance conflict",
            0x0122 => "referenced SOP class not supported",
            0x0131 => "duplicate transaction UID",
            0x0213 => "resource limitation",
            _ => "unknown failure reason",
        }
    }
}

impl fmt::Display for FailureReason {
    /// `0x0112 (no such object instance)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X} ({})", self.0, self.description())
    }
}

/// An instance for which storage was not committed, and why (an item of the Failed SOP Sequence
/// (0008,1198), PS3.4 Table J.3-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedInstance {
    pub reference: SopReference,
    pub reason: FailureReason,
}

/// Why a Storage Commitment data set could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentDataError {
    #[error("not a valid data set: {0}")]
    Unreadable(String),
    #[error("cannot encode the data set: {0}")]
    Unencodable(String),
    #[error("no Transaction UID (0008,1195)")]
    NoTransactionUid,
    #[error("no Referenced SOP Sequence (0008,1199), or it is empty")]
    NoReferences,
    #[error("{sequence} item {item}: {problem}")]
    BadItem {
        sequence: &'static str,
        /// 1-based, as people count.
        item: usize,
        problem: String,
    },
    #[error("{what} is not a valid UID: {value:?}")]
    InvalidUid { what: &'static str, value: String },
    #[error("{count} instances named, more than the {limit} accepted")]
    TooManyReferences { count: usize, limit: usize },
}

/// A Storage Commitment request: the Action Information of the N-ACTION-RQ (PS3.4 J.3.2.1.1,
/// Table J.3-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentRequest {
    /// Transaction UID (0008,1195): names the request; the report carries it back.
    pub transaction_uid: String,
    /// Referenced SOP Sequence (0008,1199): the instances to commit, in the requestor's order.
    pub references: Vec<SopReference>,
}

impl CommitmentRequest {
    /// A request for `references` under a fresh Transaction UID (PS3.5 B.2).
    pub fn new(references: Vec<SopReference>) -> Self {
        Self {
            transaction_uid: dimsum_ul::uid::generate(),
            references,
        }
    }

    /// The Action Information in `transfer_syntax_uid` (an uncompressed transfer syntax).
    pub fn encode(&self, transfer_syntax_uid: &str) -> Result<Vec<u8>, CommitmentDataError> {
        let items = self.references.iter().map(reference_item).collect();
        let data_set = InMemDicomObject::from_element_iter([
            uid_element(tags::TRANSACTION_UID, &self.transaction_uid),
            sequence(tags::REFERENCED_SOP_SEQUENCE, items),
        ]);
        encode(&data_set, transfer_syntax_uid)
    }

    /// Reads the Action Information of an N-ACTION-RQ (checked by the hardened scanner first),
    /// accepting at most `max_references` instances.
    pub fn decode(
        data: &[u8],
        transfer_syntax_uid: &str,
        max_references: usize,
    ) -> Result<Self, CommitmentDataError> {
        let data_set = decode(data, transfer_syntax_uid)?;
        let transaction_uid = transaction_uid(&data_set)?;
        let items = items(&data_set, tags::REFERENCED_SOP_SEQUENCE);
        if items.is_empty() {
            return Err(CommitmentDataError::NoReferences);
        }
        if items.len() > max_references {
            return Err(CommitmentDataError::TooManyReferences {
                count: items.len(),
                limit: max_references,
            });
        }
        let references = items
            .iter()
            .enumerate()
            .map(|(index, item)| read_reference(item, "Referenced SOP Sequence", index))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            transaction_uid,
            references,
        })
    }
}

/// A Storage Commitment report: the Event Information of the N-EVENT-REPORT-RQ (PS3.4
/// J.3.3.1.1, Table J.3-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentResult {
    /// Transaction UID (0008,1195) of the request this reports on.
    pub transaction_uid: String,
    /// Referenced SOP Sequence (0008,1199): the instances committed.
    pub committed: Vec<SopReference>,
    /// Failed SOP Sequence (0008,1198): the instances not committed, with their reason.
    pub failed: Vec<FailedInstance>,
}

impl CommitmentResult {
    /// The report for `request` from one outcome per reference, in order (see
    /// [`CommitmentHandler::commit`]); a reference without an outcome failed with 0x0110.
    pub fn from_outcomes(
        request: &CommitmentRequest,
        outcomes: Vec<Result<(), FailureReason>>,
    ) -> Self {
        let mut outcomes = outcomes.into_iter();
        let mut result = Self {
            transaction_uid: request.transaction_uid.clone(),
            committed: Vec::new(),
            failed: Vec::new(),
        };
        for reference in &request.references {
            match outcomes
                .next()
                .unwrap_or(Err(FailureReason::PROCESSING_FAILURE))
            {
                Ok(()) => result.committed.push(reference.clone()),
                Err(reason) => result.failed.push(FailedInstance {
                    reference: reference.clone(),
                    reason,
                }),
            }
        }
        result
    }

    /// Event Type ID of the report: 1 when every instance is committed, 2 when failures exist.
    pub fn event_type_id(&self) -> u16 {
        if self.failed.is_empty() {
            COMMITMENT_SUCCESSFUL
        } else {
            COMMITMENT_FAILURES_EXIST
        }
    }

    /// The Event Information in `transfer_syntax_uid` (an uncompressed transfer syntax). Either
    /// sequence is left out when it has no item (both are type 1C).
    pub fn encode(&self, transfer_syntax_uid: &str) -> Result<Vec<u8>, CommitmentDataError> {
        let mut data_set = InMemDicomObject::from_element_iter([uid_element(
            tags::TRANSACTION_UID,
            &self.transaction_uid,
        )]);
        if !self.committed.is_empty() {
            let items = self.committed.iter().map(reference_item).collect();
            data_set.put(sequence(tags::REFERENCED_SOP_SEQUENCE, items));
        }
        if !self.failed.is_empty() {
            let items = self
                .failed
                .iter()
                .map(|failed| {
                    let mut item = reference_item(&failed.reference);
                    item.put(DataElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        PrimitiveValue::from(failed.reason.0),
                    ));
                    item
                })
                .collect();
            data_set.put(sequence(tags::FAILED_SOP_SEQUENCE, items));
        }
        encode(&data_set, transfer_syntax_uid)
    }

    /// Reads the Event Information of an N-EVENT-REPORT-RQ (checked by the hardened scanner
    /// first).
    pub fn decode(data: &[u8], transfer_syntax_uid: &str) -> Result<Self, CommitmentDataError> {
        let data_set = decode(data, transfer_syntax_uid)?;
        let transaction_uid = transaction_uid(&data_set)?;
        let committed = items(&data_set, tags::REFERENCED_SOP_SEQUENCE)
            .iter()
            .enumerate()
            .map(|(index, item)| read_reference(item, "Referenced SOP Sequence", index))
            .collect::<Result<_, _>>()?;
        let failed = items(&data_set, tags::FAILED_SOP_SEQUENCE)
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let reference = read_reference(item, "Failed SOP Sequence", index)?;
                let reason = item
                    .element(tags::FAILURE_REASON)
                    .ok()
                    .and_then(|element| element.to_int::<u16>().ok())
                    .ok_or_else(|| CommitmentDataError::BadItem {
                        sequence: "Failed SOP Sequence",
                        item: index + 1,
                        problem: "no Failure Reason (0008,1197)".to_owned(),
                    })?;
                Ok(FailedInstance {
                    reference,
                    reason: FailureReason(reason),
                })
            })
            .collect::<Result<_, CommitmentDataError>>()?;
        Ok(Self {
            transaction_uid,
            committed,
            failed,
        })
    }
}

fn uid_element(tag: Tag, uid: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid))
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn reference_item(reference: &SopReference) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        uid_element(tags::REFERENCED_SOP_CLASS_UID, &reference.sop_class_uid),
        uid_element(
            tags::REFERENCED_SOP_INSTANCE_UID,
            &reference.sop_instance_uid,
        ),
    ])
}

fn encode(
    data_set: &InMemDicomObject,
    transfer_syntax_uid: &str,
) -> Result<Vec<u8>, CommitmentDataError> {
    identifier::encode(data_set, transfer_syntax_uid)
        .map_err(|error| CommitmentDataError::Unencodable(error.to_string()))
}

fn decode(data: &[u8], transfer_syntax_uid: &str) -> Result<InMemDicomObject, CommitmentDataError> {
    identifier::decode(data, transfer_syntax_uid, &ScanLimits::default())
        .map_err(|error| CommitmentDataError::Unreadable(error.to_string()))
}

/// The value of a UI element without its padding, if present and readable.
fn uid_value(data_set: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = data_set.element(tag).ok()?;
    let value = element.to_str().ok()?;
    let value = value.trim_end_matches(['\0', ' ']);
    (!value.is_empty()).then(|| value.to_owned())
}

fn transaction_uid(data_set: &InMemDicomObject) -> Result<String, CommitmentDataError> {
    let uid =
        uid_value(data_set, tags::TRANSACTION_UID).ok_or(CommitmentDataError::NoTransactionUid)?;
    checked_uid("Transaction UID (0008,1195)", uid)
}

fn checked_uid(what: &'static str, uid: String) -> Result<String, CommitmentDataError> {
    if is_valid_uid(&uid) {
        Ok(uid)
    } else {
        Err(CommitmentDataError::InvalidUid { what, value: uid })
    }
}

/// The items of a sequence; none when it is absent or not a sequence.
fn items(data_set: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    data_set
        .element(tag)
        .ok()
        .and_then(|element| element.items())
        .unwrap_or_default()
}

fn read_reference(
    item: &InMemDicomObject,
    sequence: &'static str,
    index: usize,
) -> Result<SopReference, CommitmentDataError> {
    let field = |tag: Tag, name: &'static str| {
        let value = uid_value(item, tag).ok_or_else(|| CommitmentDataError::BadItem {
            sequence,
            item: index + 1,
            problem: format!("no {name}"),
        })?;
        if is_valid_uid(&value) {
            Ok(value)
        } else {
            Err(CommitmentDataError::BadItem {
                sequence,
                item: index + 1,
                problem: format!("{name} is not a valid UID: {value:?}"),
            })
        }
    };
    Ok(SopReference {
        sop_class_uid: field(
            tags::REFERENCED_SOP_CLASS_UID,
            "Referenced SOP Class UID (0008,1150)",
        )?,
        sop_instance_uid: field(
            tags::REFERENCED_SOP_INSTANCE_UID,
            "Referenced SOP Instance UID (0008,1155)",
        )?,
    })
}

/// What a Storage Commitment SCP commits to (PS3.4 J.3.3.1.2): for each referenced instance,
/// whether it is stored (and will be kept), or why not. An archive answers from its index.
pub trait CommitmentHandler: Send + Sync + 'static {
    /// One outcome per reference of `request.references`, in the same order: `Ok(())` when the
    /// instance is committed, else the reason it is not (a missing outcome counts as 0x0110).
    fn commit<'a>(
        &'a self,
        request: &'a CommitmentRequest,
    ) -> BoxFuture<'a, Vec<Result<(), FailureReason>>>;
}

/// A closure deciding each reference on its own is a handler.
impl<F> CommitmentHandler for F
where
    F: Fn(&SopReference) -> Result<(), FailureReason> + Send + Sync + 'static,
{
    fn commit<'a>(
        &'a self,
        request: &'a CommitmentRequest,
    ) -> BoxFuture<'a, Vec<Result<(), FailureReason>>> {
        Box::pin(std::future::ready(
            request.references.iter().map(self).collect(),
        ))
    }
}

/// A handler over a set of instances held in memory (SOP instance → SOP class), shared by its
/// clones: an instance in the set with the SOP class asked for is committed; with another class
/// it fails with 0x0119 (class/instance conflict); absent, with 0x0112 (no such object
/// instance).
#[derive(Debug, Clone, Default)]
pub struct KnownInstances {
    instances: Arc<RwLock<HashMap<String, String>>>,
}

impl KnownInstances {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or re-classes) an instance.
    pub fn insert(&self, reference: SopReference) {
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        instances.insert(reference.sop_instance_uid, reference.sop_class_uid);
    }

    /// The outcome for one reference.
    pub fn check(&self, reference: &SopReference) -> Result<(), FailureReason> {
        let instances = self
            .instances
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match instances.get(&reference.sop_instance_uid) {
            Some(class) if *class == reference.sop_class_uid => Ok(()),
            Some(_) => Err(FailureReason::CLASS_INSTANCE_CONFLICT),
            None => Err(FailureReason::NO_SUCH_OBJECT_INSTANCE),
        }
    }
}

impl FromIterator<SopReference> for KnownInstances {
    fn from_iter<I: IntoIterator<Item = SopReference>>(references: I) -> Self {
        let known = Self::new();
        for reference in references {
            known.insert(reference);
        }
        known
    }
}

impl CommitmentHandler for KnownInstances {
    fn commit<'a>(
        &'a self,
        request: &'a CommitmentRequest,
    ) -> BoxFuture<'a, Vec<Result<(), FailureReason>>> {
        Box::pin(std::future::ready(
            request.references.iter().map(|r| self.check(r)).collect(),
        ))
    }
}

/// Where and how the SCP sends its reports.
#[derive(Clone)]
struct Reporting {
    /// Our AE title on a new association; `None`: the one the requestor called us by.
    ae_title: Option<String>,
    /// Requestor AE title → "host:port", for reports on a new association.
    peers: HashMap<String, String>,
    /// Always report on a new association, never on the one the request came on.
    always_new_association: bool,
    timeouts: Timeouts,
    limits: Limits,
    tls: Option<ClientTls>,
}

/// Storage Commitment Push Model SCP (PS3.4 Annex J, J.3.2.1.3 and J.3.3.1.2) over a
/// [`CommitmentHandler`].
///
/// The N-ACTION-RQ is answered with success once its Action Information is read (failures:
/// 0x0112 for another SOP instance than the well-known one, 0x0123 for another Action Type,
/// 0x0115 for a missing or invalid Transaction UID or Referenced SOP Sequence, 0x0110 for a data
/// set that cannot be read, 0x0213 for more instances than [`Self::with_max_references`]);
/// then the handler is asked, and the N-EVENT-REPORT-RQ goes out on the same association if it
/// is still open, else on a new one to the address configured for the requestor's AE title
/// (an AE title with no address is logged as an error: its report cannot be delivered). The
/// N-EVENT-REPORT-RSP is awaited within the DIMSE timeout.
pub struct StorageCommitmentScp<H> {
    handler: Arc<H>,
    transfer_syntaxes: Vec<String>,
    max_references: usize,
    reporting: Arc<Reporting>,
}

impl<H: CommitmentHandler> StorageCommitmentScp<H> {
    pub fn new(handler: H) -> Self {
        Self {
            handler: Arc::new(handler),
            transfer_syntaxes: COMMITMENT_TRANSFER_SYNTAXES
                .iter()
                .map(|ts| ts.to_string())
                .collect(),
            max_references: DEFAULT_MAX_REFERENCES,
            reporting: Arc::new(Reporting {
                ae_title: None,
                peers: HashMap::new(),
                always_new_association: false,
                timeouts: Timeouts::default(),
                limits: Limits::default(),
                tls: None,
            }),
        }
    }

    fn reporting(mut self, change: impl FnOnce(&mut Reporting)) -> Self {
        change(Arc::make_mut(&mut self.reporting));
        self
    }

    /// Where a requestor's reports go when they cannot go on its association: its AE title and
    /// "host:port" (repeatable).
    pub fn with_peer(self, ae_title: impl Into<String>, address: impl Into<String>) -> Self {
        let (ae_title, address) = (ae_title.into(), address.into());
        self.reporting(|reporting| {
            reporting.peers.insert(ae_title, address);
        })
    }

    /// Our AE title on a new association for a report (default: the title the requestor called
    /// us by).
    pub fn with_ae_title(self, ae_title: impl Into<String>) -> Self {
        let ae_title = ae_title.into();
        self.reporting(|reporting| reporting.ae_title = Some(ae_title))
    }

    /// Reports always on a new association (as many archives do), never on the request's.
    pub fn always_report_on_new_association(self, always: bool) -> Self {
        self.reporting(|reporting| reporting.always_new_association = always)
    }

    /// Timers and limits of the associations opened for reports.
    pub fn with_report_association(self, timeouts: Timeouts, limits: Limits) -> Self {
        self.reporting(|reporting| {
            reporting.timeouts = timeouts;
            reporting.limits = limits;
        })
    }

    /// TLS on the associations opened for reports.
    pub fn with_tls(self, tls: ClientTls) -> Self {
        self.reporting(|reporting| reporting.tls = Some(tls))
    }

    /// The most instances one request may name (default [`DEFAULT_MAX_REFERENCES`]); more is
    /// refused with 0x0213 (resource limitation).
    pub fn with_max_references(mut self, max_references: usize) -> Self {
        self.max_references = max_references;
        self
    }

    /// Reads and checks an N-ACTION-RQ: its Action Information as a request, or the failure to
    /// answer with.
    async fn read_request(
        &self,
        rq: &NActionRq,
        data_set: Option<DataSetStream>,
        context: &RequestContext,
    ) -> Result<CommitmentRequest, ScpFailure> {
        let limit = context
            .association
            .limits()
            .max_in_memory_data_set
            .min(MAX_COMMITMENT_DATA_SET);
        // The data set is read before anything is refused: a peer expects its request read.
        let data = match data_set {
            Some(data_set) => Some(data_set.collect(limit).await.map_err(|error| match error {
                Error::DataSetTooLarge { .. } => {
                    ScpFailure::new(Status::RESOURCE_LIMITATION, error.to_string())
                }
                error => ScpFailure::from(error),
            })?),
            None => None,
        };
        let instance = rq.requested_sop_instance_uid.trim_end_matches(['\0', ' ']);
        if instance != STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE {
            return Err(ScpFailure::new(
                Status::NO_SUCH_SOP_INSTANCE,
                format!("the SOP instance is {STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE}"),
            ));
        }
        if rq.action_type_id != REQUEST_STORAGE_COMMITMENT {
            return Err(ScpFailure::new(
                Status::NO_SUCH_ACTION,
                format!(
                    "Action Type {} is not Request Storage Commitment (1)",
                    rq.action_type_id
                ),
            ));
        }
        let Some(data) = data else {
            return Err(ScpFailure::new(
                Status::INVALID_ARGUMENT_VALUE,
                "the N-ACTION-RQ has no Action Information",
            ));
        };
        CommitmentRequest::decode(&data, context.transfer_syntax(), self.max_references).map_err(
            |error| {
                let status = match error {
                    CommitmentDataError::Unreadable(_) | CommitmentDataError::Unencodable(_) => {
                        Status::PROCESSING_FAILURE
                    }
                    CommitmentDataError::TooManyReferences { .. } => Status::RESOURCE_LIMITATION,
                    _ => Status::INVALID_ARGUMENT_VALUE,
                };
                ScpFailure::new(status, format!("Action Information: {error}"))
            },
        )
    }
}

impl<H: CommitmentHandler> Scp for StorageCommitmentScp<H> {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        vec![SupportedContext::new(
            STORAGE_COMMITMENT_PUSH_MODEL,
            self.transfer_syntaxes.iter().map(String::as_str),
        )]
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
            let Message::NActionRq(rq) = &message else {
                return Err(ScpFailure::unrecognized("N-ACTION"));
            };
            let commitment = self.read_request(rq, data_set, context).await?;
            info!(
                "Storage Commitment request {} from {} for {} instances",
                commitment.transaction_uid,
                context.info().peer_ae_title(),
                commitment.references.len()
            );
            let handler = Arc::clone(&self.handler);
            let reporting = Arc::clone(&self.reporting);
            let association = context.association.clone();
            context.after_response(
                async move {
                    let outcomes = handler.commit(&commitment).await;
                    let result = CommitmentResult::from_outcomes(&commitment, outcomes);
                    reporting.report(&association, &result).await;
                }
                .in_current_span(),
            );
            Ok(Message::NActionRsp(NActionRsp {
                affected_sop_class_uid: Some(STORAGE_COMMITMENT_PUSH_MODEL.to_owned()),
                affected_sop_instance_uid: Some(STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE.to_owned()),
                action_type_id: Some(REQUEST_STORAGE_COMMITMENT),
                ..NActionRsp::new(rq.message_id, Status::SUCCESS)
            })
            .into())
        })
    }
}

impl Reporting {
    /// Sends `result` to the requestor of `association`: on it while it is open (unless always
    /// on a new one), else on a new association to the requestor's configured address.
    async fn report(&self, association: &Association, result: &CommitmentResult) {
        let transaction = &result.transaction_uid;
        info!(
            "Storage Commitment result {transaction}: {} committed, {} failed (event type {})",
            result.committed.len(),
            result.failed.len(),
            result.event_type_id()
        );
        if !self.always_new_association && association.is_established() {
            match send_report(association, result).await {
                Ok(status) => {
                    log_answer(status, transaction, "the same association");
                    return;
                }
                Err(error) => warn!(
                    "cannot report Storage Commitment {transaction} on the request's association ({error}); trying a new association"
                ),
            }
        }
        let info = association.info();
        let peer = info.peer_ae_title();
        let Some(address) = self.peers.get(peer) else {
            error!(
                "cannot report Storage Commitment {transaction} to {peer}: no address is configured for that AE title"
            );
            return;
        };
        let ae_title = self.ae_title.as_deref().unwrap_or(info.local_ae_title());
        if let Err(error) = self.report_on_new(ae_title, peer, address, result).await {
            error!(
                "cannot report Storage Commitment {transaction} to {peer} at {address}: {error}"
            );
        }
    }

    /// Opens an association to `peer` at `address`, proposing the SCP role for Storage
    /// Commitment (PS3.4 J.3.3.1.3), sends the report and releases.
    async fn report_on_new(
        &self,
        ae_title: &str,
        peer: &str,
        address: &str,
        result: &CommitmentResult,
    ) -> Result<(), ReportError> {
        let request = AssociationRequest::new(ae_title, peer)
            .with_context(ProposedContext::new(
                STORAGE_COMMITMENT_PUSH_MODEL,
                COMMITMENT_TRANSFER_SYNTAXES,
            ))
            .with_role(STORAGE_COMMITMENT_PUSH_MODEL, false, true);
        let association = Association::connect_with(
            address,
            &request,
            self.timeouts,
            self.limits,
            self.tls.as_ref(),
        )
        .await?;
        let sent = send_report(&association, result).await;
        if let Err(error) = association.release().await {
            warn!("releasing the Storage Commitment report association with {peer}: {error}");
        }
        log_answer(sent?, &result.transaction_uid, "a new association");
        Ok(())
    }
}

fn log_answer(status: Status, transaction: &str, how: &str) {
    if status.is_failure() {
        warn!(
            "the requestor answered the Storage Commitment report {transaction} ({how}) with {status}"
        );
    } else {
        info!("Storage Commitment report {transaction} delivered on {how}: {status}");
    }
}

/// Why a report could not be delivered.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error(transparent)]
    Network(#[from] Error),
    #[error("cannot encode the report: {0}")]
    Encode(CommitmentDataError),
}

/// Sends `result` as an N-EVENT-REPORT-RQ on `association`, on a Storage Commitment context on
/// which we are the SCP, and returns the status of the N-EVENT-REPORT-RSP.
async fn send_report(
    association: &Association,
    result: &CommitmentResult,
) -> Result<Status, ReportError> {
    let presentation_context_id =
        association.context_for_role(STORAGE_COMMITMENT_PUSH_MODEL, Role::Scp)?;
    let transfer_syntax = association
        .transfer_syntax(presentation_context_id)
        .to_owned();
    let data = result
        .encode(&transfer_syntax)
        .map_err(ReportError::Encode)?;
    let message_id = association.next_message_id();
    let request = Message::NEventReportRq(NEventReportRq {
        message_id,
        affected_sop_class_uid: STORAGE_COMMITMENT_PUSH_MODEL.to_owned(),
        affected_sop_instance_uid: STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE.to_owned(),
        event_type_id: result.event_type_id(),
        data_set_present: true,
    });
    let response = association
        .request(presentation_context_id, request, Some(Bytes::from(data)))
        .await?
        .last()
        .await?;
    match response.message {
        Message::NEventReportRsp(rsp) => Ok(rsp.status),
        other => Err(Error::UnexpectedMessage(format!(
            "expected the N-EVENT-REPORT-RSP to message {message_id}, got {}",
            other.command_field()
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(index: u32) -> SopReference {
        SopReference::new("1.2.840.10008.5.1.4.1.1.2", format!("1.2.3.{index}"))
    }

    #[test]
    fn a_request_survives_encoding_in_both_transfer_syntaxes() {
        let request = CommitmentRequest::new(vec![reference(1), reference(2)]);
        for ts in COMMITMENT_TRANSFER_SYNTAXES {
            let data = request.encode(ts).unwrap();
            assert_eq!(CommitmentRequest::decode(&data, ts, 10).unwrap(), request);
        }
        let data = request.encode(EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        assert_eq!(
            CommitmentRequest::decode(&data, EXPLICIT_VR_LITTLE_ENDIAN, 1),
            Err(CommitmentDataError::TooManyReferences { count: 2, limit: 1 })
        );
    }

    #[test]
    fn a_result_survives_encoding_and_names_its_event_type() {
        let request = CommitmentRequest::new(vec![reference(1), reference(2), reference(3)]);
        let result = CommitmentResult::from_outcomes(
            &request,
            vec![Ok(()), Err(FailureReason::NO_SUCH_OBJECT_INSTANCE)],
        );
        assert_eq!(result.transaction_uid, request.transaction_uid);
        assert_eq!(result.committed, vec![reference(1)]);
        // The third had no outcome from the handler: a processing failure.
        assert_eq!(
            result.failed,
            vec![
                FailedInstance {
                    reference: reference(2),
                    reason: FailureReason::NO_SUCH_OBJECT_INSTANCE
                },
                FailedInstance {
                    reference: reference(3),
                    reason: FailureReason::PROCESSING_FAILURE
                },
            ]
        );
        assert_eq!(result.event_type_id(), COMMITMENT_FAILURES_EXIST);
        for ts in COMMITMENT_TRANSFER_SYNTAXES {
            let data = result.encode(ts).unwrap();
            assert_eq!(CommitmentResult::decode(&data, ts).unwrap(), result);
        }
        let all = CommitmentResult::from_outcomes(&request, vec![Ok(()); 3]);
        assert_eq!(all.event_type_id(), COMMITMENT_SUCCESSFUL);
        let data = all.encode(EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        let decoded = decode(&data, EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        // Type 1C: no empty Failed SOP Sequence.
        assert!(decoded.element(tags::FAILED_SOP_SEQUENCE).is_err());
        assert_eq!(items(&decoded, tags::REFERENCED_SOP_SEQUENCE).len(), 3);
    }

    #[test]
    fn a_failed_item_without_its_reason_is_refused() {
        let mut item = reference_item(&reference(1));
        item.remove_element(tags::REFERENCED_SOP_CLASS_UID);
        let data = encode(
            &InMemDicomObject::from_element_iter([
                uid_element(tags::TRANSACTION_UID, "1.2.3"),
                sequence(
                    tags::FAILED_SOP_SEQUENCE,
                    vec![reference_item(&reference(1))],
                ),
            ]),
            EXPLICIT_VR_LITTLE_ENDIAN,
        )
        .unwrap();
        let error = CommitmentResult::decode(&data, EXPLICIT_VR_LITTLE_ENDIAN).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Failed SOP Sequence item 1: no Failure Reason (0008,1197)"
        );
        let data = encode(
            &InMemDicomObject::from_element_iter([
                uid_element(tags::TRANSACTION_UID, "1.2.3"),
                sequence(tags::REFERENCED_SOP_SEQUENCE, vec![item]),
            ]),
            EXPLICIT_VR_LITTLE_ENDIAN,
        )
        .unwrap();
        let error = CommitmentResult::decode(&data, EXPLICIT_VR_LITTLE_ENDIAN).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Referenced SOP Sequence item 1: no Referenced SOP Class UID (0008,1150)"
        );
    }

    #[test]
    fn padded_uids_are_read_without_their_padding() {
        let data = encode(
            &InMemDicomObject::from_element_iter([uid_element(tags::TRANSACTION_UID, "1.2.3\0")]),
            IMPLICIT_VR_LITTLE_ENDIAN,
        )
        .unwrap();
        let result = CommitmentResult::decode(&data, IMPLICIT_VR_LITTLE_ENDIAN).unwrap();
        assert_eq!(result.transaction_uid, "1.2.3");
        assert!(result.committed.is_empty() && result.failed.is_empty());
    }

    #[test]
    fn failure_reasons_read_as_the_standard_names_them() {
        assert_eq!(
            FailureReason::NO_SUCH_OBJECT_INSTANCE.to_string(),
            "0x0112 (no such object instance)"
        );
        assert_eq!(
            FailureReason(0x0131).to_string(),
            "0x0131 (duplicate transaction UID)"
        );
        assert_eq!(
            FailureReason(0xA700).description(),
            "unknown failure reason"
        );
    }

    #[test]
    fn known_instances_check_class_and_instance() {
        let known: KnownInstances = [reference(1)].into_iter().collect();
        assert_eq!(known.check(&reference(1)), Ok(()));
        assert_eq!(
            known.check(&reference(2)),
            Err(FailureReason::NO_SUCH_OBJECT_INSTANCE)
        );
        assert_eq!(
            known.check(&SopReference::new("1.2.840.10008.5.1.4.1.1.4", "1.2.3.1")),
            Err(FailureReason::CLASS_INSTANCE_CONFLICT)
        );
    }
}
