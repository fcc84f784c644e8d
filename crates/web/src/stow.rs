//! STOW-RS, the Store transaction (PS3.18 §10.5): the request's resource and media type, the
//! response data set built from the outcome of each instance and read back (10.5.3, Table
//! 10.5.3-1), and the HTTP status rules of 10.5.3.1 as a pure function.

use dimsum_dataset::dicom_core::header::HasLength;
use dimsum_dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;

use crate::multipart::{Boundary, ContentType, Encoder};
use crate::resource::Resource;

/// Failure Reason (0008,1197) values (PS3.18 Table 10.5.3-2, from the C-STORE statuses of
/// PS3.4 B.2.3).
pub mod failure {
    /// Processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// SOP Class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP Class (also: a Study Instance UID other than the
    /// one of the request's path).
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Referenced Transfer Syntax not supported.
    pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
}

/// Warning Reason (0008,1196) values (PS3.18 Table 10.5.3-3).
pub mod warning {
    /// Coercion of data elements.
    pub const COERCION_OF_DATA_ELEMENTS: u16 = 0xB000;
    /// Elements discarded.
    pub const ELEMENTS_DISCARDED: u16 = 0xB006;
    /// Data set does not match SOP Class.
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xB007;
}

/// What became of one instance of a STOW-RS request (PS3.18 10.5.3, Table 10.5.3-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceOutcome {
    /// Stored: an item of Referenced SOP Sequence (0008,1199).
    Stored {
        sop_class_uid: String,
        sop_instance_uid: String,
        /// Retrieve URL (0008,1190) of the instance.
        retrieve_url: Option<String>,
        /// Warning Reason (0008,1196), when stored with a warning.
        warning: Option<u16>,
    },
    /// Not stored: an item of Failed SOP Sequence (0008,1198). The UIDs are empty when the
    /// part could not be read far enough to know them.
    Failed {
        sop_class_uid: String,
        sop_instance_uid: String,
        /// Failure Reason (0008,1197).
        reason: u16,
    },
}

/// Why a whole STOW-RS request is refused before any instance is looked at (PS3.18 10.5.3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StowRejection {
    /// The request is malformed: a payload that is not multipart/related, no boundary, a body
    /// that cannot be read, no instance at all.
    #[error("bad STOW-RS request: {0}")]
    BadRequest(String),
    /// The media type of the body (or its `type` parameter) is not one the server stores.
    #[error(
        "unsupported media type {0:?}: STOW-RS takes multipart/related; type=\"application/dicom\""
    )]
    UnsupportedMediaType(String),
}

impl StowRejection {
    /// 400 or 415 (PS3.18 10.5.3.1).
    pub fn status(&self) -> u16 {
        match self {
            StowRejection::BadRequest(_) => 400,
            StowRejection::UnsupportedMediaType(_) => 415,
        }
    }
}

/// The HTTP status of a STOW-RS response (PS3.18 10.5.3.1): 200 when every instance was stored
/// without warning; 202 when some were stored and others failed or were stored with a warning;
/// 409 when none was stored; 400 when the request held no instance.
pub fn status_code(outcomes: &[InstanceOutcome]) -> u16 {
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, InstanceOutcome::Stored { .. }))
        .count();
    let clean = outcomes
        .iter()
        .filter(|o| matches!(o, InstanceOutcome::Stored { warning: None, .. }))
        .count();
    if outcomes.is_empty() {
        400
    } else if stored == 0 {
        409
    } else if clean == outcomes.len() {
        200
    } else {
        202
    }
}

/// Bounds on a STOW-RS response read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StowLimits {
    /// Most items in Referenced SOP Sequence and Failed SOP Sequence together.
    pub max_items: usize,
}

impl Default for StowLimits {
    fn default() -> Self {
        Self { max_items: 100_000 }
    }
}

/// Why a STOW-RS response data set cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StowResponseError {
    #[error("the response lists more than {limit} instances")]
    TooManyItems { limit: usize },
    #[error("{attribute} is not a sequence")]
    NotASequence { attribute: &'static str },
    #[error("an item of {sequence} has no {attribute}")]
    Missing {
        sequence: &'static str,
        attribute: &'static str,
    },
    #[error("{attribute} in {sequence} is not a valid value")]
    Invalid {
        sequence: &'static str,
        attribute: &'static str,
    },
}

/// The response of a STOW-RS request (PS3.18 10.5.3, Table 10.5.3-1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StowResponse {
    /// Retrieve URL (0008,1190) of the study, when the request named one.
    pub retrieve_url: Option<String>,
    /// Each instance's outcome, stored ones and failed ones.
    pub outcomes: Vec<InstanceOutcome>,
}

impl StowResponse {
    /// The HTTP status for the response ([`status_code`]).
    pub fn status(&self) -> u16 {
        status_code(&self.outcomes)
    }

    /// The response data set: Retrieve URL, Referenced SOP Sequence (stored instances, with their
    /// Retrieve URL and Warning Reason) and Failed SOP Sequence (with Failure Reason), each
    /// sequence present only when it has items.
    pub fn to_data_set(&self) -> InMemDicomObject {
        let mut object = InMemDicomObject::new_empty();
        if let Some(url) = &self.retrieve_url {
            object.put(DataElement::new(
                tags::RETRIEVE_URL,
                VR::UR,
                PrimitiveValue::from(url.as_str()),
            ));
        }
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        for outcome in &self.outcomes {
            let mut item = InMemDicomObject::new_empty();
            match outcome {
                InstanceOutcome::Stored {
                    sop_class_uid,
                    sop_instance_uid,
                    retrieve_url,
                    warning,
                } => {
                    put_uids(&mut item, sop_class_uid, sop_instance_uid);
                    if let Some(url) = retrieve_url {
                        item.put(DataElement::new(
                            tags::RETRIEVE_URL,
                            VR::UR,
                            PrimitiveValue::from(url.as_str()),
                        ));
                    }
                    if let Some(reason) = warning {
                        item.put(DataElement::new(
                            tags::WARNING_REASON,
                            VR::US,
                            PrimitiveValue::from(*reason),
                        ));
                    }
                    stored.push(item);
                }
                InstanceOutcome::Failed {
                    sop_class_uid,
                    sop_instance_uid,
                    reason,
                } => {
                    put_uids(&mut item, sop_class_uid, sop_instance_uid);
                    item.put(DataElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        PrimitiveValue::from(*reason),
                    ));
                    failed.push(item);
                }
            }
        }
        if !stored.is_empty() {
            object.put(DataElement::new(
                tags::REFERENCED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(stored),
            ));
        }
        if !failed.is_empty() {
            object.put(DataElement::new(
                tags::FAILED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(failed),
            ));
        }
        object
    }

    /// Reads a response data set (as the DICOM JSON or XML of the response decodes to) within
    /// the default [`StowLimits`].
    pub fn from_data_set(object: &InMemDicomObject) -> Result<StowResponse, StowResponseError> {
        Self::from_data_set_with(object, &StowLimits::default())
    }

    /// Reads a response data set within `limits`: stored instances first, then failed ones.
    pub fn from_data_set_with(
        object: &InMemDicomObject,
        limits: &StowLimits,
    ) -> Result<StowResponse, StowResponseError> {
        let stored = items(
            object,
            tags::REFERENCED_SOP_SEQUENCE,
            "Referenced SOP Sequence",
        )?;
        let failed = items(object, tags::FAILED_SOP_SEQUENCE, "Failed SOP Sequence")?;
        if stored.len().saturating_add(failed.len()) > limits.max_items {
            return Err(StowResponseError::TooManyItems {
                limit: limits.max_items,
            });
        }
        let mut outcomes = Vec::with_capacity(stored.len() + failed.len());
        for item in stored {
            const SEQ: &str = "Referenced SOP Sequence";
            let (sop_class_uid, sop_instance_uid) = uids(item, SEQ)?;
            outcomes.push(InstanceOutcome::Stored {
                sop_class_uid,
                sop_instance_uid,
                retrieve_url: text(item, tags::RETRIEVE_URL),
                warning: reason(item, tags::WARNING_REASON, SEQ, "Warning Reason")?,
            });
        }
        for item in failed {
            const SEQ: &str = "Failed SOP Sequence";
            let (sop_class_uid, sop_instance_uid) = uids(item, SEQ)?;
            let reason = reason(item, tags::FAILURE_REASON, SEQ, "Failure Reason")?.ok_or(
                StowResponseError::Missing {
                    sequence: SEQ,
                    attribute: "Failure Reason",
                },
            )?;
            outcomes.push(InstanceOutcome::Failed {
                sop_class_uid,
                sop_instance_uid,
                reason,
            });
        }
        Ok(StowResponse {
            retrieve_url: text(object, tags::RETRIEVE_URL),
            outcomes,
        })
    }
}

fn put_uids(item: &mut InMemDicomObject, class: &str, instance: &str) {
    for (tag, uid) in [
        (tags::REFERENCED_SOP_CLASS_UID, class),
        (tags::REFERENCED_SOP_INSTANCE_UID, instance),
    ] {
        if uid.is_empty() {
            item.put(DataElement::empty(tag, VR::UI));
        } else {
            item.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(uid)));
        }
    }
}

fn items<'a>(
    object: &'a InMemDicomObject,
    tag: Tag,
    attribute: &'static str,
) -> Result<&'a [InMemDicomObject], StowResponseError> {
    match object.get(tag) {
        None => Ok(&[]),
        Some(element) => match element.items() {
            Some(items) => Ok(items),
            None if element.is_empty() => Ok(&[]),
            None => Err(StowResponseError::NotASequence { attribute }),
        },
    }
}

fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    object
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
        .filter(|s| !s.is_empty())
}

fn uids(
    item: &InMemDicomObject,
    sequence: &'static str,
) -> Result<(String, String), StowResponseError> {
    let get = |tag, attribute| {
        item.get(tag)
            .ok_or(StowResponseError::Missing {
                sequence,
                attribute,
            })
            .map(|_| text(item, tag).unwrap_or_default())
    };
    Ok((
        get(tags::REFERENCED_SOP_CLASS_UID, "Referenced SOP Class UID")?,
        get(
            tags::REFERENCED_SOP_INSTANCE_UID,
            "Referenced SOP Instance UID",
        )?,
    ))
}

fn reason(
    item: &InMemDicomObject,
    tag: Tag,
    sequence: &'static str,
    attribute: &'static str,
) -> Result<Option<u16>, StowResponseError> {
    let Some(element) = item.get(tag) else {
        return Ok(None);
    };
    // DICOM JSON carries US as a number; a text value is accepted too.
    element
        .to_int::<u16>()
        .map(Some)
        .map_err(|_| StowResponseError::Invalid {
            sequence,
            attribute,
        })
}

/// A STOW-RS request (PS3.18 10.5.1): to `studies`, or to `studies/{study}`, whose instances
/// must then all belong to that study; the body is multipart/related application/dicom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StowRequest {
    /// The study the path names, if any.
    pub study: Option<String>,
}

impl StowRequest {
    /// The resource the request is POSTed to.
    pub fn resource(&self) -> Resource {
        match &self.study {
            Some(study) => Resource::Study(study.clone()),
            None => Resource::Studies,
        }
    }

    /// The resource of a STOW-RS request, or a rejection for a resource STOW-RS does not take.
    pub fn for_resource(resource: &Resource) -> Result<StowRequest, StowRejection> {
        match resource {
            Resource::Studies => Ok(StowRequest { study: None }),
            Resource::Study(study) => Ok(StowRequest {
                study: Some(study.clone()),
            }),
            other => Err(StowRejection::BadRequest(format!(
                "STOW-RS stores to studies or studies/{{study}}, not {other}"
            ))),
        }
    }

    /// The failure reason of an instance of Study Instance UID `study` sent to this request:
    /// 0xA900 when the path names another study (PS3.18 10.5.1), `None` when it may be stored.
    pub fn check_study(&self, study: &str) -> Option<u16> {
        match &self.study {
            Some(expected) if expected != study.trim_end_matches(['\0', ' ']) => {
                Some(failure::DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
            }
            _ => None,
        }
    }

    /// `application/dicom`, the type of each part.
    pub fn part_type() -> ContentType {
        dicom_type()
    }

    /// The multipart encoder of the body, with a random boundary; its `content_type()` is the
    /// request's `Content-Type`: `multipart/related; type="application/dicom"; boundary=…`.
    pub fn encoder() -> Encoder {
        Encoder::new(dicom_type())
    }

    /// The request's `Content-Type` for `boundary`.
    pub fn content_type(boundary: &Boundary) -> ContentType {
        ContentType::multipart_related(&dicom_type(), boundary)
    }

    /// Checks the `Content-Type` of a request: multipart/related of application/dicom (415
    /// otherwise; 400 when it is not multipart/related at all or its boundary is missing).
    pub fn check_content_type(value: &str) -> Result<Boundary, StowRejection> {
        let content_type = ContentType::parse(value)
            .map_err(|e| StowRejection::BadRequest(format!("Content-Type {value:?}: {e}")))?;
        if !content_type.is("multipart", "related") {
            return Err(StowRejection::UnsupportedMediaType(content_type.essence()));
        }
        match content_type.related_type() {
            Ok(Some(related)) if related.is("application", "dicom") => {}
            Ok(Some(related)) => {
                return Err(StowRejection::UnsupportedMediaType(related.essence()));
            }
            Ok(None) => {
                return Err(StowRejection::UnsupportedMediaType(
                    "multipart/related without a type parameter".to_owned(),
                ));
            }
            Err(e) => return Err(StowRejection::BadRequest(e.to_string())),
        }
        content_type
            .boundary()
            .map_err(|e| StowRejection::BadRequest(e.to_string()))
    }
}

fn dicom_type() -> ContentType {
    ContentType::parse("application/dicom").unwrap_or_else(|_| ContentType::text_plain())
}
