//! QIDO-RS queries (PS3.18 10.6, 8.3.4): read from query strings, written back, limits and
//! hostile input, and the C-FIND identifier matched by the archive's own query planner.

use dimsum_dataset::dicom_core::header::HasLength;
use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::query_keys::KeyError;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_pacs::hierarchy::{Level, QueryPlan};
use dimsum_web::qido::{QidoError, QidoLevel, QidoLimits, QidoQuery};
use dimsum_web::resource::Resource;

/// Whether an error is the one a case expects.
type Check = fn(&QidoError) -> bool;

const ST: &str = "1.2.3.4";
const SE: &str = "1.2.3.4.5";

fn studies(query: &str) -> Result<QidoQuery, QidoError> {
    QidoQuery::parse(&Resource::Studies, query)
}

fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    object
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.into_owned())
}

#[test]
fn the_study_list_query_of_ohif_is_read() {
    let query = studies(
        "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060&StudyDate=19520101-20251231",
    )
    .expect("parsed");
    assert_eq!(query.level, QidoLevel::Study);
    assert_eq!(query.limit, Some(101));
    assert_eq!(query.offset, Some(0));
    assert_eq!(query.fuzzy_matching, Some(false));
    let include: Vec<Tag> = query.include.iter().map(|a| a.tag()).collect();
    assert_eq!(include, [tags::STUDY_DESCRIPTION, tags::MODALITY]);
    assert_eq!(query.keys.len(), 1);
    assert_eq!(query.keys[0].key().tag(), tags::STUDY_DATE);
    assert_eq!(query.keys[0].value(), "19520101-20251231");
    // The same with a literal comma, as OHIF sends it.
    let literal = studies("includefield=00081030,00080060").expect("parsed");
    assert_eq!(literal.include, query.include);
}

#[test]
fn attributes_by_keyword_tag_or_sequence_path() {
    let query = studies(
        "PatientName=DOE*&00100020=123&00400275.00400009=SPS1&includefield=StudyDescription&includefield=all",
    )
    .expect("parsed");
    let tags_given: Vec<Tag> = query.keys.iter().map(|k| k.key().tag()).collect();
    assert_eq!(
        tags_given,
        [
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::SCHEDULED_PROCEDURE_STEP_ID
        ]
    );
    assert_eq!(
        query.keys[2]
            .key()
            .path()
            .iter()
            .map(|s| s.tag)
            .collect::<Vec<_>>(),
        [
            tags::REQUEST_ATTRIBUTES_SEQUENCE,
            tags::SCHEDULED_PROCEDURE_STEP_ID
        ]
    );
    assert!(query.includes_all());
    assert_eq!(query.include.len(), 1);
    // `+` is a space and `%5E` a caret in a form-encoded value.
    let spaced = studies("PatientName=DOE%5EJOHN+Q").expect("parsed");
    assert_eq!(spaced.keys[0].value(), "DOE^JOHN Q");
}

#[test]
fn uid_lists_take_commas_or_backslashes() {
    for query in [
        "StudyInstanceUID=1.2.3,1.2.4",
        "0020000D=1.2.3%5C1.2.4",
        "0020000D=1.2.3%2C1.2.4",
    ] {
        let parsed = studies(query).expect(query);
        let identifier = parsed.identifier().expect("identifier");
        let element = identifier.get(tags::STUDY_INSTANCE_UID).expect("uid key");
        assert_eq!(
            element.value().to_multi_str().expect("text").as_ref(),
            ["1.2.3", "1.2.4"],
            "{query}"
        );
        // The value is written back as it was given.
        assert_eq!(
            QidoQuery::parse(&Resource::Studies, &parsed.to_query_string()).expect("again"),
            parsed
        );
    }
    // A comma is not a separator for a text attribute.
    let name = studies("StudyDescription=a,b").expect("parsed");
    let identifier = name.identifier().expect("identifier");
    assert_eq!(
        text(&identifier, tags::STUDY_DESCRIPTION).as_deref(),
        Some("a,b")
    );
}

#[test]
fn bad_parameters_have_typed_errors() {
    let cases: [(&str, Check); 16] = [
        (
            "NoSuchKeyword=1",
            |e| matches!(e, QidoError::UnknownAttribute { name } if name == "NoSuchKeyword"),
        ),
        ("0010001=1", |e| matches!(e, QidoError::BadTag { .. })),
        ("0010001G=1", |e| matches!(e, QidoError::BadTag { .. })),
        ("(0010,0010)=1", |e| matches!(e, QidoError::BadTag { .. })),
        ("00100010.=1", |e| matches!(e, QidoError::BadTag { .. })),
        ("limit=10&limit=20", |e| {
            matches!(e, QidoError::DuplicateParameter { name: "limit" })
        }),
        ("offset=1&offset=1", |e| {
            matches!(e, QidoError::DuplicateParameter { name: "offset" })
        }),
        ("limit=0", |e| {
            matches!(e, QidoError::InvalidValue { name: "limit", .. })
        }),
        ("limit=-1", |e| {
            matches!(e, QidoError::InvalidValue { name: "limit", .. })
        }),
        ("limit=99999999999", |e| {
            matches!(e, QidoError::InvalidValue { name: "limit", .. })
        }),
        ("offset=ten", |e| {
            matches!(e, QidoError::InvalidValue { name: "offset", .. })
        }),
        ("fuzzymatching=yes", |e| {
            matches!(
                e,
                QidoError::InvalidValue {
                    name: "fuzzymatching",
                    ..
                }
            )
        }),
        ("PatientName=A&00100010=B", |e| {
            matches!(e, QidoError::DuplicateAttribute { .. })
        }),
        ("=1", |e| matches!(e, QidoError::EmptyName)),
        ("Rows=many", |e| {
            matches!(
                e,
                QidoError::InvalidKey {
                    source: KeyError::BadValue { .. },
                    ..
                }
            )
        }),
        ("QueryRetrieveLevel=PATIENT", |e| {
            matches!(e, QidoError::ConflictsWithPath { .. })
        }),
    ];
    for (query, check) in cases {
        let error = studies(query).expect_err(query);
        assert!(check(&error), "{query}: {error:?}");
        assert_eq!(error.status(), 400, "{query}");
    }
}

#[test]
fn a_key_the_path_fixes_cannot_be_given_again() {
    let resource = Resource::StudySeries(ST.into());
    let error = QidoQuery::parse(&resource, "StudyInstanceUID=1.2.9").expect_err("conflict");
    assert!(matches!(error, QidoError::ConflictsWithPath { .. }));
    // /studies has no UID in its path: the key is an ordinary one.
    assert!(studies("StudyInstanceUID=1.2.9").is_ok());
}

#[test]
fn only_search_resources_are_queried() {
    let error = QidoQuery::parse(&Resource::Study(ST.into()), "").expect_err("retrieval");
    assert!(matches!(error, QidoError::NotASearchResource { .. }));
    assert_eq!(error.status(), 404);
}

#[test]
fn hostile_query_strings_stop_at_a_limit() {
    // 10,000 parameters: refused at the parameter limit, whatever they are.
    let many = vec!["PatientName=A"; 10_000].join("&");
    let limits = QidoLimits {
        max_query_length: 1 << 20,
        ..QidoLimits::default()
    };
    assert_eq!(
        QidoQuery::parse_with(&Resource::Studies, &many, &limits),
        Err(QidoError::TooManyParameters { limit: 256 })
    );
    // The same string with the default limits is refused for its length before anything is read.
    assert!(matches!(
        studies(&many),
        Err(QidoError::QueryTooLong { limit: 65536, .. })
    ));
    // A long value.
    let long = format!("PatientName={}", "A".repeat(20_000));
    assert!(matches!(
        studies(&long),
        Err(QidoError::ValueTooLong { limit: 16384, .. })
    ));
    // Non-UTF-8 percent escapes, in a name or a value.
    assert_eq!(
        studies("PatientName=%FF%FE"),
        Err(QidoError::NotUtf8 { index: 0 })
    );
    assert_eq!(
        studies("limit=1&%C3%28=1"),
        Err(QidoError::NotUtf8 { index: 1 })
    );
    // Too many includefield attributes in one comma list.
    let fields = vec!["00100010"; 300].join(",");
    assert_eq!(
        studies(&format!("includefield={fields}")),
        Err(QidoError::TooManyIncludeFields { limit: 256 })
    );
}

#[test]
fn a_query_writes_back_to_a_query_string_that_reads_the_same() {
    let resource = Resource::SeriesInstances(ST.into(), SE.into());
    let query = QidoQuery::new(&resource)
        .expect("search")
        .with_key("PatientName", "DOE^J*")
        .expect("key")
        .with_key(
            "SOPClassUID",
            "1.2.840.10008.5.1.4.1.1.2,1.2.840.10008.5.1.4.1.1.4",
        )
        .expect("key")
        .with_key("InstanceNumber", "")
        .expect("key")
        .with_include("00280010")
        .expect("include");
    let query = QidoQuery {
        include_all: true,
        fuzzy_matching: Some(true),
        limit: Some(25),
        offset: Some(50),
        ..query
    };
    let written = query.to_query_string();
    assert_eq!(
        written,
        "PatientName=DOE%5EJ*&SOPClassUID=1.2.840.10008.5.1.4.1.1.2%2C1.2.840.10008.5.1.4.1.1.4&InstanceNumber=&includefield=00280010%2Call&fuzzymatching=true&limit=25&offset=50"
    );
    assert_eq!(QidoQuery::parse(&resource, &written), Ok(query.clone()));
    assert_eq!(query.resource(), resource);
    assert_eq!(
        query.to_string(),
        format!("studies/{ST}/series/{SE}/instances?{written}")
    );
    let empty = QidoQuery::new(&Resource::AllSeries).expect("search");
    assert_eq!(empty.to_string(), "series");
}

#[test]
fn the_identifier_holds_the_level_the_required_return_keys_and_the_matching_keys() {
    let query = studies("PatientName=DOE*&includefield=StudyDescription").expect("parsed");
    let identifier = query.identifier().expect("identifier");
    assert_eq!(
        text(&identifier, tags::QUERY_RETRIEVE_LEVEL).as_deref(),
        Some("STUDY")
    );
    assert_eq!(
        text(&identifier, tags::PATIENT_NAME).as_deref(),
        Some("DOE*")
    );
    // Table 10.6.3-3 return keys are present and empty, as is the includefield attribute.
    for tag in [
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::ACCESSION_NUMBER,
        tags::MODALITIES_IN_STUDY,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::STUDY_INSTANCE_UID,
        tags::STUDY_ID,
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        tags::STUDY_DESCRIPTION,
    ] {
        let element = identifier
            .get(tag)
            .unwrap_or_else(|| panic!("{tag} missing"));
        assert!(
            element.value().primitive().is_some_and(|v| v.is_empty()),
            "{tag}"
        );
    }
    // No series keys for a study search.
    assert!(identifier.get(tags::MODALITY).is_none());
    assert!(identifier.get(tags::SERIES_INSTANCE_UID).is_none());

    // /series: study keys too (10.6.3.3.2); studies/{s}/series: series keys and the UID.
    let all = QidoQuery::new(&Resource::AllSeries)
        .expect("search")
        .identifier()
        .expect("identifier");
    assert!(all.get(tags::PATIENT_NAME).is_some());
    assert!(all.get(tags::MODALITY).is_some());
    let scoped = QidoQuery::new(&Resource::StudySeries(ST.into()))
        .expect("search")
        .identifier()
        .expect("identifier");
    assert!(scoped.get(tags::PATIENT_NAME).is_none());
    assert_eq!(text(&scoped, tags::STUDY_INSTANCE_UID).as_deref(), Some(ST));
    assert_eq!(
        text(&scoped, tags::QUERY_RETRIEVE_LEVEL).as_deref(),
        Some("SERIES")
    );
    let request = scoped
        .get(tags::REQUEST_ATTRIBUTES_SEQUENCE)
        .and_then(|e| e.items())
        .expect("Request Attribute Sequence");
    assert!(request[0].get(tags::SCHEDULED_PROCEDURE_STEP_ID).is_some());
    assert!(request[0].get(tags::REQUESTED_PROCEDURE_ID).is_some());

    // studies/{s}/series/{se}/instances: instance keys only, both UIDs, IMAGE level.
    let instances = QidoQuery::new(&Resource::SeriesInstances(ST.into(), SE.into()))
        .expect("search")
        .identifier()
        .expect("identifier");
    assert_eq!(
        text(&instances, tags::QUERY_RETRIEVE_LEVEL).as_deref(),
        Some("IMAGE")
    );
    assert_eq!(
        text(&instances, tags::SERIES_INSTANCE_UID).as_deref(),
        Some(SE)
    );
    for tag in [
        tags::SOP_CLASS_UID,
        tags::SOP_INSTANCE_UID,
        tags::ROWS,
        tags::NUMBER_OF_FRAMES,
    ] {
        assert!(instances.get(tag).is_some(), "{tag}");
    }
    assert!(instances.get(tags::MODALITY).is_none());
    // studies/{s}/instances: series keys as well (10.6.3.3.3).
    let study_instances = QidoQuery::new(&Resource::StudyInstances(ST.into()))
        .expect("search")
        .identifier()
        .expect("identifier");
    assert!(study_instances.get(tags::MODALITY).is_some());
    assert!(study_instances.get(tags::PATIENT_NAME).is_none());
}

fn record(elements: &[(Tag, VR, &str)]) -> InMemDicomObject {
    let mut object = InMemDicomObject::new_empty();
    for (tag, vr, value) in elements {
        object.put(DataElement::new(*tag, *vr, PrimitiveValue::from(*value)));
    }
    object
}

#[test]
fn the_archive_query_plan_matches_with_the_identifier() {
    let query =
        studies("PatientName=doe*&StudyDate=20200101-20201231&includefield=StudyDescription")
            .expect("parsed");
    let plan = QueryPlan::new(
        QueryModel::StudyRoot,
        QueryService::Find,
        query.identifier().expect("identifier"),
    )
    .expect("a plan");
    assert_eq!(plan.level(), Level::Study);
    assert!(!plan.has_unsupported_keys());

    let patient = record(&[
        (tags::PATIENT_NAME, VR::PN, "DOE^JOHN"),
        (tags::PATIENT_ID, VR::LO, "P1"),
    ]);
    let other_patient = record(&[(tags::PATIENT_NAME, VR::PN, "ROE^JANE")]);
    let study = record(&[
        (tags::STUDY_INSTANCE_UID, VR::UI, ST),
        (tags::STUDY_DATE, VR::DA, "20200615"),
        (tags::STUDY_DESCRIPTION, VR::LO, "CHEST"),
    ]);
    let old_study = record(&[(tags::STUDY_DATE, VR::DA, "20190615")]);
    assert!(plan.passes(Level::Patient, &patient));
    assert!(!plan.passes(Level::Patient, &other_patient));
    assert!(plan.passes(Level::Study, &study));
    assert!(!plan.passes(Level::Study, &old_study));

    let response = plan.response(&[&patient, &study]);
    assert_eq!(text(&response, tags::PATIENT_ID).as_deref(), Some("P1"));
    assert_eq!(
        text(&response, tags::STUDY_INSTANCE_UID).as_deref(),
        Some(ST)
    );
    assert_eq!(
        text(&response, tags::STUDY_DESCRIPTION).as_deref(),
        Some("CHEST")
    );
    // A UID list from the path and the query string narrows the same way.
    let series_query = QidoQuery::parse(
        &Resource::StudySeries(ST.into()),
        "SeriesInstanceUID=1.2.3.4.5,1.2.3.4.6&Modality=CT",
    )
    .expect("parsed");
    let plan = QueryPlan::new(
        QueryModel::StudyRoot,
        QueryService::Find,
        series_query.identifier().expect("identifier"),
    )
    .expect("a plan");
    assert_eq!(plan.level(), Level::Series);
    let series = record(&[
        (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.6"),
        (tags::MODALITY, VR::CS, "CT"),
    ]);
    let other_series = record(&[
        (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.7"),
        (tags::MODALITY, VR::CS, "CT"),
    ]);
    assert!(plan.passes(Level::Study, &study));
    assert!(!plan.passes(Level::Study, &old_study));
    assert!(plan.passes(Level::Series, &series));
    assert!(!plan.passes(Level::Series, &other_series));
}
