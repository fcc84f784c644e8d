//! WADO-RS representations (PS3.18 10.4, 8.7): Accept values per resource, read back by the
//! multipart Accept parser, and which resource takes which.

use dimsum_web::multipart::{Accept, ContentType};
use dimsum_web::resource::{Entity, Resource};
use dimsum_web::wado::{ImageType, Representation, TransferSyntax, WadoError, WadoRequest};

const ST: &str = "1.2.3";
const SE: &str = "1.2.3.4";
const IN: &str = "1.2.3.4.5";

fn instance() -> Entity {
    Entity::Instance {
        study: ST.into(),
        series: SE.into(),
        instance: IN.into(),
    }
}

#[test]
fn each_resource_has_its_default_accept_header() {
    let cases = [
        (
            Resource::Study(ST.into()),
            "multipart/related; type=\"application/dicom\"",
        ),
        (
            Resource::Instance(ST.into(), SE.into(), IN.into()),
            "multipart/related; type=\"application/dicom\"",
        ),
        (Resource::Metadata(instance()), "application/dicom+json"),
        (
            Resource::Frames(instance(), vec![1]),
            "multipart/related; type=\"application/octet-stream\"",
        ),
        (
            Resource::Bulkdata(instance(), vec!["7FE00010".into()]),
            "multipart/related; type=\"application/octet-stream\"",
        ),
        (Resource::Rendered(instance(), None), "image/jpeg"),
        (Resource::Thumbnail(instance(), Some(vec![1])), "image/jpeg"),
    ];
    for (resource, accept) in cases {
        let request = WadoRequest::new(resource.clone()).expect("retrievable");
        assert_eq!(request.accept_header(), accept, "{resource}");
        assert_eq!(request.path(), resource.to_path());
    }
    assert_eq!(WadoRequest::new(Resource::Studies), None);
    assert_eq!(WadoRequest::new(Resource::StudySeries(ST.into())), None);
}

#[test]
fn accept_values_read_back_through_the_accept_parser() {
    let representations = vec![
        Representation::Dicom(Some(TransferSyntax::Uid("1.2.840.10008.1.2.4.50".into()))),
        Representation::Dicom(Some(TransferSyntax::Any)),
        Representation::OctetStream(Some(TransferSyntax::Any)),
        Representation::DicomJson,
        Representation::DicomXml,
        Representation::Image(ImageType::Png),
    ];
    for representation in &representations {
        let accept = Accept::parse(&representation.media_type()).expect("Accept");
        let range = &accept.ranges()[0];
        assert_eq!(
            Representation::from_content_type(&range.media_type).as_ref(),
            Ok(representation),
            "{representation}"
        );
    }
    let request = WadoRequest::with_accept(
        Resource::Series(ST.into(), SE.into()),
        vec![
            Representation::Dicom(Some(TransferSyntax::Uid("1.2.840.10008.1.2.1".into()))),
            Representation::Dicom(Some(TransferSyntax::Any)),
        ],
    )
    .expect("valid");
    assert_eq!(
        request.accept_header(),
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1, multipart/related; type=\"application/dicom\"; transfer-syntax=*"
    );
    assert_eq!(
        Accept::parse(&request.accept_header())
            .expect("Accept")
            .ranges()
            .len(),
        2
    );
}

#[test]
fn what_ohif_sends_for_frames_is_understood_quoted_or_not() {
    for value in [
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
    ] {
        let content_type = ContentType::parse(value).expect("media type");
        assert_eq!(
            Representation::from_content_type(&content_type),
            Ok(Representation::OctetStream(Some(TransferSyntax::Any)))
        );
    }
}

#[test]
fn a_representation_a_resource_lacks_is_406() {
    let error = WadoRequest::with_accept(
        Resource::Metadata(instance()),
        vec![Representation::Dicom(None)],
    )
    .expect_err("DICOM is not a metadata representation");
    assert!(matches!(error, WadoError::NotAcceptable { .. }));
    assert_eq!(error.status(), 406);
    assert!(!Representation::DicomJson.is_valid_for(&Resource::Frames(instance(), vec![1])));
    assert!(!Representation::Image(ImageType::Jpeg).is_valid_for(&Resource::Study(ST.into())));
    assert!(Representation::OctetStream(None).is_valid_for(&Resource::Frames(instance(), vec![2])));
}

#[test]
fn unknown_or_malformed_media_types_are_refused() {
    let unknown = ContentType::parse("text/html").expect("media type");
    assert!(matches!(
        Representation::from_content_type(&unknown),
        Err(WadoError::Unsupported(_))
    ));
    let other_related =
        ContentType::parse("multipart/related; type=\"video/mp4\"").expect("media type");
    assert_eq!(
        Representation::from_content_type(&other_related).map_err(|e| e.status()),
        Err(406)
    );
    let bad_syntax =
        ContentType::parse("multipart/related; type=\"application/dicom\"; transfer-syntax=1.02.3")
            .expect("media type");
    let error = Representation::from_content_type(&bad_syntax).expect_err("bad UID");
    assert!(matches!(error, WadoError::InvalidTransferSyntax { .. }));
    assert_eq!(error.status(), 400);
    let no_type = ContentType::parse("multipart/related").expect("media type");
    assert!(matches!(
        Representation::from_content_type(&no_type),
        Err(WadoError::Unsupported(_))
    ));
}
