//! Query/Retrieve C-GET SCU (PS3.4 Annex C.4.3; PS3.7 §9.1.3): the SCP sends the matching
//! instances back on the same association as C-STORE sub-operations, on the storage contexts
//! for which we took the SCP role (PS3.7 §D.3.3.4).
//!
//! [`propose_get`] adds to an association request the model's GET context and a storage
//! context per SOP class we can receive, with SCP/SCU role selection: by default the common
//! storage SOP classes ([`common_storage_sop_classes`], which fit with room to spare in the
//! 128 contexts of a request), or a list of our own, or the SOP Classes In Study (0008,0062) of
//! a prior C-FIND match ([`sop_classes_in_study`]). [`get`] sends the C-GET-RQ and, while its
//! responses come, serves the C-STORE sub-operations with a [`StoreScp`] into a
//! [`Storage`] (a [`crate::storage::FileStorage`] writes each instance into a folder, atomically).
//!
//! The types of the outcome ([`RetrieveOutcome`], [`RetrieveProgress`], [`SubOperations`]) are
//! shared with the C-MOVE SCU.

use std::pin::pin;

use tracing::{debug, info, warn};

use dimsum_dataset::dicom_dictionary_std::{tags, uids};
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::identifier;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_dimse::message::{CGetRq, Message};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AssociationRequest, MAX_PRESENTATION_CONTEXTS, ProposedContext};
use dimsum_ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};

use super::find::{QueryError, QueryRequest, drain, prepare, query_context, unexpected};
use crate::scp::{Dispatcher, StoreScp};
use crate::storage::Storage;
use crate::{Association, Error, Response, Role};

/// The transfer syntaxes proposed by default for the storage contexts of a C-GET, in order of
/// preference: the uncompressed ones every SCP can send.
pub const STORAGE_TRANSFER_SYNTAXES: [&str; 2] =
    [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN];

/// The sub-operation counts of a C-GET-RSP or C-MOVE-RSP (PS3.7 Tables 9.3-6 and 9.3-8), each
/// as the response carried it (they are optional in some responses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOperations {
    pub remaining: Option<u16>,
    pub completed: Option<u16>,
    pub failed: Option<u16>,
    pub warning: Option<u16>,
}

/// One C-GET-RSP or C-MOVE-RSP as it came (PS3.4 C.4.2.1.5, C.4.3.1.4): its status and the
/// sub-operation counts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrieveProgress {
    pub status: Status,
    pub sub_operations: SubOperations,
    /// False while pending (0xFF00); true for the last response.
    pub is_final: bool,
}

/// How a C-GET or C-MOVE ended (PS3.4 C.4.2.1.5, C.4.3.1.4): the final status with its Error
/// Comment, the final counts, and the Failed SOP Instance UID List (0008,0058) when the final
/// response carried one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrieveOutcome {
    /// The Message ID of the request (what a C-MOVE destination sees as Move Originator
    /// Message ID).
    pub message_id: u16,
    pub status: Status,
    pub error_comment: Option<String>,
    pub sub_operations: SubOperations,
    pub failed_sop_instance_uids: Vec<String>,
}

/// Which retrieve the responses answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RetrieveKind {
    Get,
    Move,
}

impl RetrieveKind {
    fn response_name(self) -> &'static str {
        match self {
            RetrieveKind::Get => "C-GET-RSP",
            RetrieveKind::Move => "C-MOVE-RSP",
        }
    }
}

/// Reads the responses of one C-GET or C-MOVE: reports each to `progress`, and gives the
/// outcome with the final one.
pub(super) struct RetrieveResponses<P> {
    kind: RetrieveKind,
    message_id: u16,
    transfer_syntax: String,
    limit: usize,
    progress: P,
}

impl<P: FnMut(&RetrieveProgress)> RetrieveResponses<P> {
    pub(super) fn new(
        kind: RetrieveKind,
        message_id: u16,
        transfer_syntax: String,
        association: &Association,
        progress: P,
    ) -> Self {
        Self {
            kind,
            message_id,
            transfer_syntax,
            limit: association.limits().max_in_memory_data_set,
            progress,
        }
    }

    /// Handles one response; the outcome when it is the final one.
    pub(super) async fn handle(
        &mut self,
        response: Option<Result<Response, Error>>,
    ) -> Result<Option<RetrieveOutcome>, QueryError> {
        let response = match response {
            Some(response) => response?,
            None => return Err(Error::ConnectionClosed.into()),
        };
        let name = self.kind.response_name();
        // C-GET-RSP and C-MOVE-RSP carry the same fields (PS3.7 Tables 9.3-6, 9.3-8).
        macro_rules! fields {
            ($rsp:expr) => {
                (
                    $rsp.status,
                    SubOperations {
                        remaining: $rsp.number_of_remaining_suboperations,
                        completed: $rsp.number_of_completed_suboperations,
                        failed: $rsp.number_of_failed_suboperations,
                        warning: $rsp.number_of_warning_suboperations,
                    },
                    $rsp.error_comment.clone(),
                )
            };
        }
        let (status, sub_operations, error_comment) = match (&response.message, self.kind) {
            (Message::CGetRsp(rsp), RetrieveKind::Get) => fields!(rsp),
            (Message::CMoveRsp(rsp), RetrieveKind::Move) => fields!(rsp),
            (other, _) => return Err(unexpected(name, self.message_id, other).into()),
        };
        (self.progress)(&RetrieveProgress {
            status,
            sub_operations,
            is_final: response.is_final,
        });
        if !response.is_final {
            debug!(
                "{name} (MsgID {}): {status}, {sub_operations:?}",
                self.message_id
            );
            if let Some(data_set) = response.data_set {
                // Only a final response names failed instances; anything else is dropped.
                drain(data_set).await?;
            }
            return Ok(None);
        }
        info!(
            "Received Final {name} (MsgID {}): {status}",
            self.message_id
        );
        let failed_sop_instance_uids = match response.data_set {
            Some(data_set) => {
                let invalid = |reason: String| QueryError::InvalidResponseData {
                    message_id: self.message_id,
                    what: "identifier of the final response",
                    reason,
                };
                let data = match data_set.collect(self.limit).await {
                    Ok(data) => data,
                    Err(error @ Error::DataSetTooLarge { .. }) => {
                        return Err(invalid(error.to_string()));
                    }
                    Err(error) => return Err(error.into()),
                };
                let identifier =
                    identifier::decode(&data, &self.transfer_syntax, &ScanLimits::default())
                        .map_err(|error| invalid(error.to_string()))?;
                failed_instances(&identifier).map_err(invalid)?
            }
            None => Vec::new(),
        };
        Ok(Some(RetrieveOutcome {
            message_id: self.message_id,
            status,
            error_comment,
            sub_operations,
            failed_sop_instance_uids,
        }))
    }
}

/// The Failed SOP Instance UID List (0008,0058) of an identifier; empty when absent.
fn failed_instances(identifier: &InMemDicomObject) -> Result<Vec<String>, String> {
    let Ok(element) = identifier.element(tags::FAILED_SOP_INSTANCE_UID_LIST) else {
        return Ok(Vec::new());
    };
    let uids = element
        .to_multi_str()
        .map_err(|error| format!("Failed SOP Instance UID List: {error}"))?;
    Ok(uids
        .iter()
        .map(|uid| uid.trim_end_matches(['\0', ' ']).to_owned())
        .filter(|uid| !uid.is_empty())
        .collect())
}

/// Sends a C-GET for `query` and serves its C-STORE sub-operations into `storage` while its
/// responses come; `progress` is called with every C-GET-RSP, the final one included.
///
/// The association must have been requested with [`propose_get`] (or otherwise with the
/// model's GET context and storage contexts on which we hold the SCP role); instances of other
/// SOP classes cannot be sent to us and the SCP counts them as failed. Sub-operations arrive
/// only between the request and its final response: none is served after it.
pub async fn get<S: Storage>(
    association: &Association,
    query: &QueryRequest,
    storage: S,
    progress: impl FnMut(&RetrieveProgress),
) -> Result<RetrieveOutcome, QueryError> {
    let sop_class = query.sop_class(QueryService::Get)?;
    let (presentation_context_id, transfer_syntax, identifier) =
        prepare(association, sop_class, &query.identifier)?;
    let dispatcher = Dispatcher::new().with(receiver(association, storage));
    let message_id = association.next_message_id();
    let request = Message::CGetRq(CGetRq {
        message_id,
        affected_sop_class_uid: sop_class.to_owned(),
        priority: query.priority,
        data_set_present: true,
    });
    info!("Sending Get Request (MsgID {message_id}, {sop_class})");
    let mut responses = association
        .request(presentation_context_id, request, Some(identifier))
        .await?;
    let mut reader = RetrieveResponses::new(
        RetrieveKind::Get,
        message_id,
        transfer_syntax,
        association,
        progress,
    );
    // The sub-operations are served until the final response; then serving stops (the
    // dispatcher is dropped). It also ends when the association does; the responses then say
    // how.
    let mut serving = pin!(dispatcher.serve(association));
    let mut served = false;
    loop {
        tokio::select! {
            response = responses.next() => {
                if let Some(outcome) = reader.handle(response).await? {
                    return Ok(outcome);
                }
            }
            ended = &mut serving, if !served => {
                served = true;
                debug!("the association ended while the C-GET was running: {ended:?}");
            }
        }
    }
}

/// A Storage SCP for the storage contexts of `association` on which we hold the SCP role.
fn receiver<S: Storage>(association: &Association, storage: S) -> StoreScp<S> {
    let mut sop_classes: Vec<String> = Vec::new();
    let mut transfer_syntaxes: Vec<String> = Vec::new();
    for context in association.negotiated().accepted() {
        let ours = association
            .accepted_contexts(&context.abstract_syntax, Role::Scp)
            .any(|accepted| accepted.id == context.id);
        if !ours {
            continue;
        }
        if !sop_classes.contains(&context.abstract_syntax) {
            sop_classes.push(context.abstract_syntax.clone());
        }
        if let Some(ts) = &context.transfer_syntax
            && !transfer_syntaxes.contains(ts)
        {
            transfer_syntaxes.push(ts.clone());
        }
    }
    if sop_classes.is_empty() {
        warn!("no storage context with the SCP role was accepted: no instance can be received");
    }
    StoreScp::new(storage, sop_classes, transfer_syntaxes)
}

/// Adds to `request` what a C-GET on `model` needs (PS3.4 C.4.3.1, PS3.7 §D.3.3.4): the
/// model's GET context, the `storage` contexts, and an SCP/SCU Role Selection asking for the SCP
/// role (and not the SCU role) for each of their SOP classes, unless `request` has one for it
/// already. Fails when the whole would exceed the 128 contexts of an association request.
pub fn propose_get(
    request: AssociationRequest,
    model: QueryModel,
    storage: &[ProposedContext],
) -> Result<AssociationRequest, QueryError> {
    let count = request.contexts.len() + 1 + storage.len();
    if count > MAX_PRESENTATION_CONTEXTS {
        return Err(QueryError::TooManyContexts { count });
    }
    let mut request = request.with_context(query_context(model, QueryService::Get)?);
    for context in storage {
        let sop_class = &context.abstract_syntax;
        if !request
            .role_selections
            .iter()
            .any(|role| &role.sop_class_uid == sop_class)
        {
            request = request.with_role(sop_class.clone(), false, true);
        }
        request = request.with_context(context.clone());
    }
    Ok(request)
}

/// A storage context per SOP class of `sop_classes` (each once, in order), each proposing
/// `transfer_syntaxes`.
pub fn storage_contexts(
    sop_classes: &[impl AsRef<str>],
    transfer_syntaxes: &[impl AsRef<str>],
) -> Vec<ProposedContext> {
    let mut contexts: Vec<ProposedContext> = Vec::new();
    for sop_class in sop_classes {
        let sop_class = sop_class.as_ref().trim_end_matches(['\0', ' ']);
        if sop_class.is_empty()
            || contexts
                .iter()
                .any(|context| context.abstract_syntax == sop_class)
        {
            continue;
        }
        contexts.push(ProposedContext::new(
            sop_class,
            transfer_syntaxes.iter().map(AsRef::as_ref),
        ));
    }
    contexts
}

/// The storage contexts a C-GET proposes by default: the [`common_storage_sop_classes`], each
/// with [`STORAGE_TRANSFER_SYNTAXES`].
pub fn default_storage_contexts() -> Vec<ProposedContext> {
    storage_contexts(common_storage_sop_classes(), &STORAGE_TRANSFER_SYNTAXES)
}

/// The SOP Classes In Study (0008,0062) of a C-FIND match at STUDY level (PS3.4 C.6.1.1.3,
/// C.6.2.1.2), each once: the storage SOP classes to propose for retrieving that study.
pub fn sop_classes_in_study(found: &InMemDicomObject) -> Vec<String> {
    let Ok(element) = found.element(tags::SOP_CLASSES_IN_STUDY) else {
        return Vec::new();
    };
    let Ok(values) = element.to_multi_str() else {
        return Vec::new();
    };
    let mut sop_classes: Vec<String> = Vec::new();
    for value in values.iter() {
        let uid = value.trim_end_matches(['\0', ' ']).trim_start();
        if !uid.is_empty() && !sop_classes.iter().any(|known| known == uid) {
            sop_classes.push(uid.to_owned());
        }
    }
    sop_classes
}

/// The storage SOP classes a C-GET proposes when told nothing else (PS3.4 Annex B.5): the
/// current (not retired) ones of the modalities, reports, presentation states and documents
/// in common use, at most 120, so that with the GET context and a few others they fit in the
/// 128 contexts of an association request. The full list of the standard is much longer
/// ([`dimsum_dataset::sop_class::storage_sop_classes`]); for others, pass a list (or the SOP
/// Classes In Study of a C-FIND match).
pub fn common_storage_sop_classes() -> &'static [&'static str] {
    &COMMON_STORAGE_SOP_CLASSES
}

const COMMON_STORAGE_SOP_CLASSES: [&str; 98] = [
    // Radiography, CT, MR, NM, PET, ultrasound
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_INTRA_ORAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_INTRA_ORAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::CT_IMAGE_STORAGE,
    uids::ENHANCED_CT_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ENHANCED_MR_IMAGE_STORAGE,
    uids::MR_SPECTROSCOPY_STORAGE,
    uids::ENHANCED_MR_COLOR_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_MR_IMAGE_STORAGE,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
    uids::ENHANCED_PET_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_PET_IMAGE_STORAGE,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
    uids::ENHANCED_US_VOLUME_STORAGE,
    // Angiography, fluoroscopy, 3D X-ray, breast
    uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::ENHANCED_XA_IMAGE_STORAGE,
    uids::X_RAY_RADIOFLUOROSCOPIC_IMAGE_STORAGE,
    uids::ENHANCED_XRF_IMAGE_STORAGE,
    uids::X_RAY3_D_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::X_RAY3_D_CRANIOFACIAL_IMAGE_STORAGE,
    uids::BREAST_TOMOSYNTHESIS_IMAGE_STORAGE,
    uids::BREAST_PROJECTION_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::BREAST_PROJECTION_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::INTRAVASCULAR_OPTICAL_COHERENCE_TOMOGRAPHY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::INTRAVASCULAR_OPTICAL_COHERENCE_TOMOGRAPHY_IMAGE_STORAGE_FOR_PROCESSING,
    // Secondary capture
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_SINGLE_BIT_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_TRUE_COLOR_SECONDARY_CAPTURE_IMAGE_STORAGE,
    // Visible light, ophthalmology
    uids::VL_ENDOSCOPIC_IMAGE_STORAGE,
    uids::VIDEO_ENDOSCOPIC_IMAGE_STORAGE,
    uids::VL_MICROSCOPIC_IMAGE_STORAGE,
    uids::VIDEO_MICROSCOPIC_IMAGE_STORAGE,
    uids::VL_SLIDE_COORDINATES_MICROSCOPIC_IMAGE_STORAGE,
    uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    uids::VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE,
    uids::VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE,
    uids::OPHTHALMIC_PHOTOGRAPHY8_BIT_IMAGE_STORAGE,
    uids::OPHTHALMIC_PHOTOGRAPHY16_BIT_IMAGE_STORAGE,
    uids::OPHTHALMIC_TOMOGRAPHY_IMAGE_STORAGE,
    uids::WIDE_FIELD_OPHTHALMIC_PHOTOGRAPHY_STEREOGRAPHIC_PROJECTION_IMAGE_STORAGE,
    uids::WIDE_FIELD_OPHTHALMIC_PHOTOGRAPHY3_D_COORDINATES_IMAGE_STORAGE,
    uids::OPHTHALMIC_OPTICAL_COHERENCE_TOMOGRAPHY_EN_FACE_IMAGE_STORAGE,
    uids::OPHTHALMIC_THICKNESS_MAP_STORAGE,
    // Presentation states
    uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::PSEUDO_COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::BLENDING_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::XAXRF_GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    // Structured reports and documents
    uids::BASIC_TEXT_SR_STORAGE,
    uids::ENHANCED_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::COMPREHENSIVE3_DSR_STORAGE,
    uids::EXTENSIBLE_SR_STORAGE,
    uids::PROCEDURE_LOG_STORAGE,
    uids::MAMMOGRAPHY_CADSR_STORAGE,
    uids::KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    uids::CHEST_CADSR_STORAGE,
    uids::X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::RADIOPHARMACEUTICAL_RADIATION_DOSE_SR_STORAGE,
    uids::ENHANCED_X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::PATIENT_RADIATION_DOSE_SR_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
    uids::ENCAPSULATED_CDA_STORAGE,
    uids::ENCAPSULATED_STL_STORAGE,
    // Derived objects: segmentation, registration, maps
    uids::RAW_DATA_STORAGE,
    uids::SPATIAL_REGISTRATION_STORAGE,
    uids::SPATIAL_FIDUCIALS_STORAGE,
    uids::DEFORMABLE_SPATIAL_REGISTRATION_STORAGE,
    uids::SEGMENTATION_STORAGE,
    uids::SURFACE_SEGMENTATION_STORAGE,
    uids::REAL_WORLD_VALUE_MAPPING_STORAGE,
    uids::PARAMETRIC_MAP_STORAGE,
    // Radiotherapy
    uids::RT_IMAGE_STORAGE,
    uids::RT_DOSE_STORAGE,
    uids::RT_STRUCTURE_SET_STORAGE,
    uids::RT_BEAMS_TREATMENT_RECORD_STORAGE,
    uids::RT_PLAN_STORAGE,
    uids::RT_BRACHY_TREATMENT_RECORD_STORAGE,
    uids::RT_TREATMENT_SUMMARY_RECORD_STORAGE,
    uids::RT_ION_PLAN_STORAGE,
    uids::RT_ION_BEAMS_TREATMENT_RECORD_STORAGE,
    // Waveforms
    uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE,
    uids::GENERAL_ECG_WAVEFORM_STORAGE,
    uids::AMBULATORY_ECG_WAVEFORM_STORAGE,
    uids::HEMODYNAMIC_WAVEFORM_STORAGE,
    uids::CARDIAC_ELECTROPHYSIOLOGY_WAVEFORM_STORAGE,
    uids::BASIC_VOICE_AUDIO_WAVEFORM_STORAGE,
    uids::ARTERIAL_PULSE_WAVEFORM_STORAGE,
];

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;
    use dimsum_dataset::dicom_core::{DataElement, VR};
    use dimsum_dataset::sop_class::is_storage_sop_class;

    #[test]
    fn the_common_list_is_current_storage_classes_each_once_and_fits() {
        let list = common_storage_sop_classes();
        assert!(list.len() <= 120, "{} classes", list.len());
        for (i, uid) in list.iter().enumerate() {
            assert!(
                is_storage_sop_class(uid),
                "{uid} is not a storage SOP class"
            );
            assert!(!list[..i].contains(uid), "{uid} listed twice");
        }
        let request = propose_get(
            AssociationRequest::new("GETSCU", "QRSCP"),
            QueryModel::StudyRoot,
            &default_storage_contexts(),
        )
        .expect("fits");
        request.to_pdu().expect("a valid A-ASSOCIATE-RQ");
    }

    #[test]
    fn propose_get_adds_the_get_context_and_asks_the_scp_role_once_per_class() {
        let storage = storage_contexts(
            &[
                uids::CT_IMAGE_STORAGE,
                uids::MR_IMAGE_STORAGE,
                uids::CT_IMAGE_STORAGE,
            ],
            &STORAGE_TRANSFER_SYNTAXES,
        );
        assert_eq!(storage.len(), 2);
        let request = propose_get(
            AssociationRequest::new("GETSCU", "QRSCP"),
            QueryModel::PatientRoot,
            &storage,
        )
        .expect("fits");
        let abstract_syntaxes: Vec<&str> = request
            .contexts
            .iter()
            .map(|context| context.abstract_syntax.as_str())
            .collect();
        assert_eq!(
            abstract_syntaxes,
            [
                uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
                uids::CT_IMAGE_STORAGE,
                uids::MR_IMAGE_STORAGE
            ]
        );
        let roles: Vec<(&str, bool, bool)> = request
            .role_selections
            .iter()
            .map(|role| (role.sop_class_uid.as_str(), role.scu_role, role.scp_role))
            .collect();
        assert_eq!(
            roles,
            [
                (uids::CT_IMAGE_STORAGE, false, true),
                (uids::MR_IMAGE_STORAGE, false, true)
            ]
        );
        assert!(matches!(
            propose_get(
                AssociationRequest::new("GETSCU", "QRSCP"),
                QueryModel::ModalityWorklist,
                &storage
            ),
            Err(QueryError::NoSopClass { .. })
        ));
    }

    #[test]
    fn too_many_contexts_are_refused_before_anything_is_sent() {
        let all = dimsum_dataset::sop_class::storage_sop_classes();
        let storage = storage_contexts(&all, &STORAGE_TRANSFER_SYNTAXES);
        let error = propose_get(
            AssociationRequest::new("GETSCU", "QRSCP"),
            QueryModel::StudyRoot,
            &storage,
        )
        .expect_err("too many");
        assert!(
            matches!(error, QueryError::TooManyContexts { count } if count == all.len() + 1),
            "{error}"
        );
    }

    #[test]
    fn sop_classes_in_study_are_read_trimmed_and_once() {
        let found = InMemDicomObject::from_element_iter([DataElement::new(
            tags::SOP_CLASSES_IN_STUDY,
            VR::UI,
            PrimitiveValue::Strs(
                [
                    uids::CT_IMAGE_STORAGE.to_owned(),
                    format!("{}\0", uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
                    uids::CT_IMAGE_STORAGE.to_owned(),
                ]
                .into_iter()
                .collect(),
            ),
        )]);
        assert_eq!(
            sop_classes_in_study(&found),
            [
                uids::CT_IMAGE_STORAGE,
                uids::SECONDARY_CAPTURE_IMAGE_STORAGE
            ]
        );
        assert!(sop_classes_in_study(&InMemDicomObject::new_empty()).is_empty());
    }

    #[test]
    fn the_failed_list_of_a_final_identifier_is_read() {
        let uids = vec!["1.2.3.4".to_owned(), "1.2.3.55".to_owned()];
        let encoded =
            identifier::failed_instances(&uids, EXPLICIT_VR_LITTLE_ENDIAN).expect("encoded");
        let decoded =
            identifier::decode(&encoded, EXPLICIT_VR_LITTLE_ENDIAN, &ScanLimits::default())
                .expect("decoded");
        assert_eq!(failed_instances(&decoded), Ok(uids));
        assert_eq!(
            failed_instances(&InMemDicomObject::new_empty()),
            Ok(Vec::new())
        );
    }
}
