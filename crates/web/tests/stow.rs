//! STOW-RS (PS3.18 10.5): the response data set both ways (and through DICOM JSON), the status
//! rules of 10.5.3.1, and the request's resource and media type.

use dimsum_dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::json;
use dimsum_web::multipart::Boundary;
use dimsum_web::resource::Resource;
use dimsum_web::stow::{
    InstanceOutcome, StowLimits, StowRejection, StowRequest, StowResponse, StowResponseError,
    failure, status_code, warning,
};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

fn stored(uid: &str, warn: Option<u16>) -> InstanceOutcome {
    InstanceOutcome::Stored {
        sop_class_uid: CT.into(),
        sop_instance_uid: uid.into(),
        retrieve_url: Some(format!(
            "http://h/dicomweb/studies/1.2/series/1.3/instances/{uid}"
        )),
        warning: warn,
    }
}

fn failed(uid: &str, reason: u16) -> InstanceOutcome {
    InstanceOutcome::Failed {
        sop_class_uid: CT.into(),
        sop_instance_uid: uid.into(),
        reason,
    }
}

#[test]
fn status_codes_follow_10_5_3_1() {
    assert_eq!(
        status_code(&[stored("1.1", None), stored("1.2", None)]),
        200
    );
    assert_eq!(
        status_code(&[
            stored("1.1", None),
            failed("1.2", failure::OUT_OF_RESOURCES)
        ]),
        202
    );
    assert_eq!(
        status_code(&[stored("1.1", Some(warning::COERCION_OF_DATA_ELEMENTS))]),
        202
    );
    assert_eq!(
        status_code(&[
            failed("1.1", failure::CANNOT_UNDERSTAND),
            failed("1.2", failure::SOP_CLASS_NOT_SUPPORTED)
        ]),
        409
    );
    assert_eq!(status_code(&[]), 400);
    assert_eq!(
        StowRejection::BadRequest("no boundary".into()).status(),
        400
    );
    assert_eq!(
        StowRejection::UnsupportedMediaType("text/plain".into()).status(),
        415
    );
}

#[test]
fn the_response_data_set_lists_stored_and_failed_instances() {
    let response = StowResponse {
        retrieve_url: Some("http://h/dicomweb/studies/1.2".into()),
        outcomes: vec![
            stored("1.2.3.1", None),
            stored("1.2.3.2", Some(warning::ELEMENTS_DISCARDED)),
            failed("1.2.3.3", failure::DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
            InstanceOutcome::Failed {
                sop_class_uid: String::new(),
                sop_instance_uid: String::new(),
                reason: failure::CANNOT_UNDERSTAND,
            },
        ],
    };
    assert_eq!(response.status(), 202);
    let data_set = response.to_data_set();
    let referenced = data_set
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .and_then(|e| e.items())
        .expect("Referenced SOP Sequence");
    assert_eq!(referenced.len(), 2);
    assert_eq!(
        referenced[1]
            .get(tags::WARNING_REASON)
            .expect("warning")
            .to_int::<u16>()
            .expect("US"),
        0xB006
    );
    let failed_items = data_set
        .get(tags::FAILED_SOP_SEQUENCE)
        .and_then(|e| e.items())
        .expect("Failed SOP Sequence");
    assert_eq!(failed_items.len(), 2);
    assert_eq!(
        failed_items[0]
            .get(tags::FAILURE_REASON)
            .expect("reason")
            .to_int::<u16>()
            .expect("US"),
        0xA900
    );
    assert_eq!(StowResponse::from_data_set(&data_set), Ok(response.clone()));

    // Through DICOM JSON, as a client receives it.
    let value = json::to_json(&data_set);
    let text = value.to_string();
    assert!(text.contains("\"00081199\""), "{text}");
    assert!(text.contains("\"00081198\""), "{text}");
    let back = json::from_json(&value).expect("JSON read");
    assert_eq!(StowResponse::from_data_set(&back), Ok(response));
}

#[test]
fn an_all_stored_response_has_no_failed_sequence() {
    let response = StowResponse {
        retrieve_url: None,
        outcomes: vec![stored("1.2.3.1", None)],
    };
    let data_set = response.to_data_set();
    assert!(data_set.get(tags::FAILED_SOP_SEQUENCE).is_none());
    assert!(data_set.get(tags::RETRIEVE_URL).is_none());
    assert_eq!(response.status(), 200);
}

#[test]
fn malformed_responses_are_refused_with_why() {
    let mut no_reason = InMemDicomObject::new_empty();
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(CT),
    ));
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2"),
    ));
    no_reason.put(DataElement::new(
        tags::FAILED_SOP_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item.clone()]),
    ));
    assert_eq!(
        StowResponse::from_data_set(&no_reason),
        Err(StowResponseError::Missing {
            sequence: "Failed SOP Sequence",
            attribute: "Failure Reason"
        })
    );
    let mut not_sequence = InMemDicomObject::new_empty();
    not_sequence.put(DataElement::new(
        tags::REFERENCED_SOP_SEQUENCE,
        VR::LO,
        PrimitiveValue::from("x"),
    ));
    assert_eq!(
        StowResponse::from_data_set(&not_sequence),
        Err(StowResponseError::NotASequence {
            attribute: "Referenced SOP Sequence"
        })
    );
    let mut bad_reason = item.clone();
    bad_reason.put(DataElement::new(
        tags::WARNING_REASON,
        VR::US,
        PrimitiveValue::from("x"),
    ));
    let mut with_bad = InMemDicomObject::new_empty();
    with_bad.put(DataElement::new(
        tags::REFERENCED_SOP_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![bad_reason]),
    ));
    assert!(matches!(
        StowResponse::from_data_set(&with_bad),
        Err(StowResponseError::Invalid {
            attribute: "Warning Reason",
            ..
        })
    ));
    let many = StowResponse {
        retrieve_url: None,
        outcomes: (0..11).map(|i| stored(&format!("1.{i}"), None)).collect(),
    };
    assert_eq!(
        StowResponse::from_data_set_with(&many.to_data_set(), &StowLimits { max_items: 10 }),
        Err(StowResponseError::TooManyItems { limit: 10 })
    );
}

#[test]
fn requests_go_to_studies_or_one_study() {
    let any = StowRequest::for_resource(&Resource::Studies).expect("studies");
    assert_eq!(any.resource(), Resource::Studies);
    assert_eq!(any.check_study("1.2.3"), None);
    let one = StowRequest::for_resource(&Resource::Study("1.2.3".into())).expect("a study");
    assert_eq!(one.resource().to_path(), "studies/1.2.3");
    assert_eq!(one.check_study("1.2.3\0"), None);
    assert_eq!(one.check_study("1.2.4"), Some(0xA900));
    assert!(matches!(
        StowRequest::for_resource(&Resource::AllSeries),
        Err(StowRejection::BadRequest(_))
    ));
}

#[test]
fn request_content_types_are_checked() {
    let boundary = Boundary::new("abc123").expect("boundary");
    let written = StowRequest::content_type(&boundary).to_string();
    assert_eq!(
        StowRequest::check_content_type(&written),
        Ok(boundary.clone())
    );
    assert_eq!(
        StowRequest::check_content_type(
            "multipart/related; type=application/dicom; boundary=abc123"
        ),
        Ok(boundary)
    );
    assert_eq!(
        StowRequest::encoder()
            .content_type()
            .related_type()
            .expect("type")
            .map(|t| t.essence()),
        Some("application/dicom".to_owned())
    );
    for (value, status) in [
        ("application/dicom", 415),
        (
            "multipart/related; type=\"application/dicom+json\"; boundary=x",
            415,
        ),
        ("multipart/related; boundary=x", 415),
        ("multipart/related; type=\"application/dicom\"", 400),
        ("not a media type", 400),
    ] {
        let error = StowRequest::check_content_type(value).expect_err(value);
        assert_eq!(error.status(), status, "{value}: {error}");
    }
}
