//! Relational queries (PS3.4 C.4.1.2.2.2, C.4.1.3.2) against the index, on both backends: keys of levels
//! below the query's match when some descendant's chain passes them all, upper unique keys
//! are not needed, the responses carry the lower keys zero-length, and the result limit,
//! cancellation (a dropped stream) and hostile values behave as for hierarchical queries.

use futures_util::StreamExt;

use dimsum_net::dataset::dicom_core::{Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::query_model::QueryModel;
use dimsum_pacs::hierarchy::QueryPlan;
use std::sync::Arc;

use dimsum_pacs::index::{Index, IndexError, OnDuplicate};

mod common;
use common::{
    Backend, CT, MR, SC, TestIndex, element, find_plan, matches, new_instance, query_all,
    sorted_values,
};

/// (patient id, patient name, study, study date, series, modality, series number, instance,
/// SOP class)
type Row = [&'static str; 9];

/// P1 has a CT+SC study in January and an MR study in March; P2 a CT study; P3 an MR study.
const ROWS: [Row; 7] = [
    [
        "P1", "DOE^JOHN", "1.1", "20240105", "1.1.1", "CT", "1", "1.1.1.1", CT,
    ],
    [
        "P1", "DOE^JOHN", "1.1", "20240105", "1.1.1", "CT", "1", "1.1.1.2", CT,
    ],
    [
        "P1", "DOE^JOHN", "1.1", "20240105", "1.1.2", "OT", "2", "1.1.2.1", SC,
    ],
    [
        "P1", "DOE^JOHN", "1.2", "20240320", "1.2.1", "MR", "1", "1.2.1.1", MR,
    ],
    [
        "P2", "ROE^JANE", "2.1", "20231111", "2.1.1", "CT", "1", "2.1.1.1", CT,
    ],
    [
        "P3", "DOE^JANE", "3.1", "20240601", "3.1.1", "MR", "7", "3.1.1.1", MR,
    ],
    [
        "P3", "DOE^JANE", "3.1", "20240601", "3.1.1", "MR", "7", "3.1.1.2", MR,
    ],
];

struct Fixture {
    _test: TestIndex,
    index: Arc<dyn Index>,
}

impl Fixture {
    /// The index of [`ROWS`] on `backend`; `None`: skip the test.
    async fn new(backend: Backend) -> Option<Fixture> {
        let test = TestIndex::new(backend).await?;
        let index = test.index.clone();
        let folder = &test.folder;
        for [pid, name, study, date, series, modality, number, sop, class] in ROWS {
            let attributes = InMemDicomObject::from_element_iter([
                element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
                element(tags::SOP_CLASS_UID, VR::UI, class),
                element(tags::SOP_INSTANCE_UID, VR::UI, sop),
                element(tags::STUDY_DATE, VR::DA, date),
                element(tags::STUDY_TIME, VR::TM, "120000"),
                element(tags::MODALITY, VR::CS, modality),
                element(tags::PATIENT_NAME, VR::PN, name),
                element(tags::PATIENT_ID, VR::LO, pid),
                element(tags::STUDY_INSTANCE_UID, VR::UI, study),
                element(tags::SERIES_INSTANCE_UID, VR::UI, series),
                element(tags::SERIES_NUMBER, VR::IS, number),
                element(tags::SERIES_DESCRIPTION, VR::LO, "AXIAL"),
            ]);
            let instance = new_instance(attributes, folder.path().join(format!("{sop}.dcm")));
            index
                .insert(instance, OnDuplicate::Fail)
                .await
                .expect("inserted");
        }
        Some(Fixture { _test: test, index })
    }

    async fn run(
        &self,
        plan: QueryPlan,
        limit: Option<usize>,
    ) -> Vec<Result<InMemDicomObject, IndexError>> {
        query_all(self.index.as_ref(), plan, limit).await
    }

    /// The sorted values of `tag` in the matches of a relational query.
    async fn values(&self, plan: QueryPlan, tag: Tag) -> Vec<String> {
        sorted_values(&matches(self.index.as_ref(), plan).await, tag)
    }

    /// Checks every case of `cases`: (what it tests, a plan, a tag, the sorted values of the
    /// tag in the plan's matches).
    async fn assert_cases(&self, cases: Vec<(&str, QueryPlan, Tag, &[&str])>) {
        for (case, plan, tag, expected) in cases {
            assert_eq!(self.values(plan, tag).await, expected, "{case}");
        }
    }
}

fn plan(model: QueryModel, level: &str, keys: Vec<InMemElement>, relational: bool) -> QueryPlan {
    find_plan(model, level, keys).with_relational(relational)
}

fn studies(keys: Vec<InMemElement>) -> QueryPlan {
    let mut keys = keys;
    keys.push(element(tags::STUDY_INSTANCE_UID, VR::UI, ""));
    plan(QueryModel::StudyRoot, "STUDY", keys, true)
}

async fn a_study_query_with_a_modality_finds_the_studies_having_such_a_series(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    let modality = || element(tags::MODALITY, VR::CS, "CT");
    let study = tags::STUDY_INSTANCE_UID;
    fixture
        .assert_cases(vec![
            (
                "a CT series",
                studies(vec![modality()]),
                study,
                &["1.1", "2.1"],
            ),
            // Wild cards and an instance level key reach the lowest table.
            (
                "a wild card modality",
                studies(vec![element(tags::MODALITY, VR::CS, "?R")]),
                study,
                &["1.2", "3.1"],
            ),
            (
                "an instance",
                studies(vec![element(tags::SOP_INSTANCE_UID, VR::UI, "1.1.2.1")]),
                study,
                &["1.1"],
            ),
        ])
        .await;
    // The lower key is in every response, zero-length: a study has no single modality.
    let found = fixture.run(studies(vec![modality()]), None).await;
    for response in found {
        let response = response.expect("a match");
        let element = response.get(tags::MODALITY).expect("Modality returned");
        assert_eq!(element.to_str().expect("text"), "");
    }
    // Hierarchical: the key is not matched (and not supported, 0xFF01 for the archive).
    let hierarchical = plan(
        QueryModel::StudyRoot,
        "STUDY",
        vec![modality(), element(tags::STUDY_INSTANCE_UID, VR::UI, "")],
        false,
    );
    assert!(hierarchical.has_unsupported_keys());
    assert!(!studies(vec![modality()]).has_unsupported_keys());
    assert_eq!(fixture.values(hierarchical, study).await.len(), 4);
}

async fn an_image_query_by_patient_name_needs_no_upper_unique_keys(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    let images = plan(
        QueryModel::StudyRoot,
        "IMAGE",
        vec![
            element(tags::PATIENT_NAME, VR::PN, "DOE^*"),
            element(tags::SOP_INSTANCE_UID, VR::UI, ""),
            element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        ],
        true,
    );
    assert_eq!(
        fixture.values(images, tags::SOP_INSTANCE_UID).await,
        [
            "1.1.1.1", "1.1.1.2", "1.1.2.1", "1.2.1.1", "3.1.1.1", "3.1.1.2"
        ]
    );
    // Patient Root at SERIES level with a patient name and an instance key.
    let series = plan(
        QueryModel::PatientRoot,
        "SERIES",
        vec![
            element(tags::PATIENT_NAME, VR::PN, "doe^john"),
            element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
            element(tags::SOP_CLASS_UID, VR::UI, &format!("{CT}\\{MR}")),
        ],
        true,
    );
    assert_eq!(
        fixture.values(series, tags::SERIES_INSTANCE_UID).await,
        ["1.1.1", "1.2.1"]
    );
}

async fn keys_of_several_lower_levels_must_hold_on_one_descendant_chain(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    // Study 1.1 has a CT series (number 1) and an OT series (number 2): no CT series 2.
    let both = |modality: &str, number: &str| {
        studies(vec![
            element(tags::MODALITY, VR::CS, modality),
            element(tags::SERIES_NUMBER, VR::IS, number),
        ])
    };
    // Patient level: P1 has a March study and a CT series, never on the same study.
    let patients = |date: &str, modality: &str| {
        plan(
            QueryModel::PatientRoot,
            "PATIENT",
            vec![
                element(tags::PATIENT_ID, VR::LO, ""),
                element(tags::STUDY_DATE, VR::DA, date),
                element(tags::MODALITY, VR::CS, modality),
            ],
            true,
        )
    };
    // An instance key and a series key of different series of the same study.
    let mismatch = studies(vec![
        element(tags::MODALITY, VR::CS, "CT"),
        element(tags::SOP_CLASS_UID, VR::UI, SC),
    ]);
    let (study, patient) = (tags::STUDY_INSTANCE_UID, tags::PATIENT_ID);
    let march = "20240301-20240331";
    fixture
        .assert_cases(vec![
            ("CT series 2", both("CT", "2"), study, &[]),
            ("OT series 2", both("OT", "2"), study, &["1.1"]),
            ("a March CT study", patients(march, "CT"), patient, &[]),
            ("a March MR study", patients(march, "MR"), patient, &["P1"]),
            ("CT, 5 Jan", patients("20240105", "CT"), patient, &["P1"]),
            ("a CT study", patients("", "CT"), patient, &["P1", "P2"]),
            ("a CT series of SC instances", mismatch, study, &[]),
        ])
        .await;
}

async fn the_result_limit_and_a_dropped_stream_still_work(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    let ct = || studies(vec![element(tags::MODALITY, VR::CS, "CT")]);
    let found = fixture.run(ct(), Some(1)).await;
    assert_eq!(found.len(), 2);
    assert!(found[0].is_ok());
    assert!(matches!(
        found[1],
        Err(IndexError::TooManyMatches { limit: 1 })
    ));
    assert!(fixture.run(ct(), Some(2)).await.iter().all(Result::is_ok));
    // Streams dropped after their first match give their readers back.
    for _ in 0..20 {
        let mut stream = fixture.index.query(ct(), None).await.expect("query");
        assert!(stream.next().await.is_some());
    }
    assert_eq!(
        fixture.values(ct(), tags::STUDY_INSTANCE_UID).await,
        ["1.1", "2.1"]
    );
}

async fn hostile_lower_level_values_neither_break_the_query_nor_leak_rows(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    let mut cases = Vec::new();
    for hostile in [
        "'; DROP TABLE series; --",
        "\" OR 1=1 --",
        "CT' OR '1'='1",
        "%",
        "_",
        "[CT]",
    ] {
        cases.push((
            format!("Modality {hostile}"),
            tags::MODALITY,
            VR::CS,
            hostile.to_owned(),
        ));
        cases.push((
            format!("SOP Instance UID {hostile}"),
            tags::SOP_INSTANCE_UID,
            VR::UI,
            hostile.to_owned(),
        ));
    }
    let huge = "x".repeat(10 * 1024 * 1024);
    cases.push((
        "a huge value".into(),
        tags::SERIES_DESCRIPTION,
        VR::LO,
        huge.clone(),
    ));
    cases.push((
        "a huge wild card".into(),
        tags::SERIES_DESCRIPTION,
        VR::LO,
        format!("*{huge}*"),
    ));
    fixture
        .assert_cases(
            cases
                .iter()
                .map(|(case, tag, vr, value)| {
                    (
                        case.as_str(),
                        studies(vec![element(*tag, *vr, value)]),
                        tags::STUDY_INSTANCE_UID,
                        &[][..],
                    )
                })
                .collect(),
        )
        .await;
    let counts = fixture.index.counts().await.expect("counts");
    assert_eq!((counts.studies, counts.series, counts.instances), (4, 5, 7));
}

crate::on_both_backends!(
    a_study_query_with_a_modality_finds_the_studies_having_such_a_series,
    an_image_query_by_patient_name_needs_no_upper_unique_keys,
    keys_of_several_lower_levels_must_hold_on_one_descendant_chain,
    the_result_limit_and_a_dropped_stream_still_work,
    hostile_lower_level_values_neither_break_the_query_nor_leak_rows,
);
