//! The Query/Retrieve information models (PS3.4 Annex C.6) and the Modality Worklist
//! information model (PS3.4 Annex K.6): which SOP class a C-FIND, C-GET or C-MOVE uses.

use dicom_dictionary_std::uids;

use crate::trim_uid;

/// An information model a C-FIND (and, for the Q/R models, C-GET and C-MOVE) queries: PS3.4
/// C.6.1 (Patient Root), C.6.2 (Study Root), C.6.3 (Patient/Study Only, retired but still used),
/// K.6.1 (Modality Worklist, C-FIND only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryModel {
    PatientRoot,
    StudyRoot,
    PatientStudyOnly,
    ModalityWorklist,
}

/// Which DIMSE-C service of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryService {
    Find,
    Get,
    Move,
}

impl QueryModel {
    /// Every model, in the order DCMTK's tools list them.
    pub const ALL: [QueryModel; 4] = [
        QueryModel::PatientRoot,
        QueryModel::StudyRoot,
        QueryModel::PatientStudyOnly,
        QueryModel::ModalityWorklist,
    ];

    /// The SOP class of `service` in this model; `None` for C-GET and C-MOVE of the worklist.
    // Patient/Study Only is retired (dicom-rs marks its UIDs deprecated) but still in use.
    #[allow(deprecated)]
    pub fn sop_class(self, service: QueryService) -> Option<&'static str> {
        use QueryModel::*;
        use QueryService::*;
        Some(match (self, service) {
            (PatientRoot, Find) => uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            (PatientRoot, Get) => uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
            (PatientRoot, Move) => uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
            (StudyRoot, Find) => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            (StudyRoot, Get) => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
            (StudyRoot, Move) => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
            (PatientStudyOnly, Find) => {
                uids::PATIENT_STUDY_ONLY_QUERY_RETRIEVE_INFORMATION_MODEL_FIND
            }
            (PatientStudyOnly, Get) => {
                uids::PATIENT_STUDY_ONLY_QUERY_RETRIEVE_INFORMATION_MODEL_GET
            }
            (PatientStudyOnly, Move) => {
                uids::PATIENT_STUDY_ONLY_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE
            }
            (ModalityWorklist, Find) => uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND,
            (ModalityWorklist, Get | Move) => return None,
        })
    }

    /// The model and service of a SOP class UID, if it is one of them.
    pub fn of_sop_class(uid: &str) -> Option<(QueryModel, QueryService)> {
        let uid = trim_uid(uid);
        Self::ALL.into_iter().find_map(|model| {
            [QueryService::Find, QueryService::Get, QueryService::Move]
                .into_iter()
                .find(|&service| model.sop_class(service) == Some(uid))
                .map(|service| (model, service))
        })
    }

    /// The SOP classes of `service` across every model that has it.
    pub fn sop_classes(service: QueryService) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter_map(|model| model.sop_class(service))
            .collect()
    }

    /// The Query/Retrieve levels of the model, top down (PS3.4 C.6): empty for the worklist,
    /// which has none.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            QueryModel::PatientRoot => &["PATIENT", "STUDY", "SERIES", "IMAGE"],
            QueryModel::StudyRoot => &["STUDY", "SERIES", "IMAGE"],
            QueryModel::PatientStudyOnly => &["PATIENT", "STUDY"],
            QueryModel::ModalityWorklist => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sop_class_maps_back_to_its_model_and_service() {
        for model in QueryModel::ALL {
            for service in [QueryService::Find, QueryService::Get, QueryService::Move] {
                if let Some(uid) = model.sop_class(service) {
                    assert_eq!(QueryModel::of_sop_class(uid), Some((model, service)));
                    let padded = format!("{uid}\0");
                    assert_eq!(QueryModel::of_sop_class(&padded), Some((model, service)));
                }
            }
        }
        assert_eq!(QueryModel::of_sop_class("1.2.840.10008.1.1"), None);
        assert_eq!(QueryModel::sop_classes(QueryService::Find).len(), 4);
        assert_eq!(QueryModel::sop_classes(QueryService::Move).len(), 3);
        assert_eq!(
            QueryModel::StudyRoot.sop_class(QueryService::Get),
            Some("1.2.840.10008.5.1.4.1.2.2.3")
        );
    }
}
