//! The index on its own, on both backends (SQLite, and PostgreSQL when DIMSUM_TEST_POSTGRES
//! names a server): instances indexed from their attributes (no files needed),
//! queried at every level of the three Q/R information models with every matching rule the
//! narrowing translates (wild cards, ranges, UID lists, universal keys, literal `%` and `_`,
//! PN case), computed keys kept right through inserts, replacements and deletes, hostile
//! identifiers, the result limit, and visibility only after commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use dimsum_net::dataset::dicom_core::header::Header;
use dimsum_net::dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::query_model::{QueryModel, QueryService};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::{
    DeleteTarget, Deleted, Index, IndexError, IndexedInstance, Inserted, NewInstance, OnCommit,
    OnDuplicate, PreparedInstance,
};
use dimsum_pacs::matching::MatchOptions;

mod common;
use common::{
    Backend, CT, MR, SC, TestIndex, TestInstance, element, find_plan, matches, new_instance,
    query_all, sorted_values, text,
};

const US: &str = "1.2.840.10008.5.1.4.1.1.6.1";

/// One test instance.
#[derive(Clone)]
struct Spec {
    patient: (&'static str, &'static str),
    study: (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ),
    series: (&'static str, &'static str, &'static str),
    sop: (&'static str, &'static str),
}

impl Spec {
    fn new_instance(&self, root: &Path) -> NewInstance {
        let (patient_id, patient_name) = self.patient;
        let (study, study_date, study_time, accession, study_description) = self.study;
        let (series, modality, series_number) = self.series;
        let (sop, sop_class) = self.sop;
        let attributes = TestInstance {
            patient_id,
            patient_name,
            study,
            study_date,
            study_time,
            accession,
            study_description,
            series,
            modality,
            series_number,
            sop,
            sop_class,
            instance_number: "1",
        }
        .attributes();
        new_instance(attributes, file_path(root, study, series, sop))
    }
}

/// The keys of a PATIENT level query of Patient ID `pid` ("": any) for the patient's computed
/// keys (C.6.1.1.2: Number of Patient Related Studies, Series and Instances).
fn patient_count_keys(pid: &str) -> Vec<InMemElement> {
    vec![
        element(tags::PATIENT_ID, VR::LO, pid),
        element(tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, ""),
        element(tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS, ""),
        element(tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS, ""),
    ]
}

/// Where the test instances are said to be: `root/study/series/sop.dcm`.
fn file_path(root: &Path, study: &str, series: &str, sop: &str) -> PathBuf {
    root.join(study).join(series).join(format!("{sop}.dcm"))
}

const P1: (&str, &str) = ("P1", "DOE^JOHN");
const P2: (&str, &str) = ("P2", "Roe^Jane");
const P3: (&str, &str) = ("P3", "Yamada^Tarou=山田^太郎");
const S11: (&str, &str, &str, &str, &str) = ("1.1", "20240105", "101500", "ACC%1", "CT CHEST");
const S12: (&str, &str, &str, &str, &str) = ("1.2", "20240320", "083000", "ACC_2", "MR KNEE");
const S21: (&str, &str, &str, &str, &str) = ("2.1", "20231111", "170000", "A1", "FOLLOW UP");
const S31: (&str, &str, &str, &str, &str) = ("3.1", "", "", "", "[US] neck");

/// 3 patients, 4 studies, 5 series, 6 instances.
fn specs() -> Vec<Spec> {
    let one = |patient, study, series, sop| Spec {
        patient,
        study,
        series,
        sop,
    };
    vec![
        one(P1, S11, ("1.1.1", "CT", "1"), ("1.1.1.1", CT)),
        one(P1, S11, ("1.1.1", "CT", "1"), ("1.1.1.2", CT)),
        one(P1, S11, ("1.1.2", "OT", "2"), ("1.1.2.1", SC)),
        one(P1, S12, ("1.2.1", "MR", "1"), ("1.2.1.1", MR)),
        one(P2, S21, ("2.1.1", "CT", "1"), ("2.1.1.1", CT)),
        one(P3, S31, ("3.1.1", "US", "1"), ("3.1.1.1", US)),
    ]
}

struct Fixture {
    test: TestIndex,
    index: Arc<dyn Index>,
}

impl Fixture {
    /// The index of [`specs`] on `backend`; `None`: skip the test.
    async fn new(backend: Backend) -> Option<Fixture> {
        let fixture = Fixture::empty(TestIndex::new(backend).await?);
        for spec in specs() {
            fixture.insert(&spec).await;
        }
        Some(fixture)
    }

    /// `test`'s index, as it is.
    fn empty(test: TestIndex) -> Fixture {
        Fixture {
            index: test.index.clone(),
            test,
        }
    }

    fn root(&self) -> &Path {
        self.test.root()
    }

    async fn insert(&self, spec: &Spec) -> Inserted {
        self.put(spec, OnDuplicate::Fail).await.expect("inserted")
    }

    async fn find(
        &self,
        model: QueryModel,
        level: &str,
        keys: Vec<InMemElement>,
    ) -> Vec<InMemDicomObject> {
        matches(self.index.as_ref(), find_plan(model, level, keys)).await
    }

    async fn find_with(
        &self,
        plan: QueryPlan,
        limit: Option<usize>,
    ) -> Vec<Result<InMemDicomObject, IndexError>> {
        query_all(self.index.as_ref(), plan, limit).await
    }

    async fn put(&self, spec: &Spec, on_duplicate: OnDuplicate) -> Result<Inserted, IndexError> {
        self.index
            .insert(spec.new_instance(self.root()), on_duplicate)
            .await
    }

    /// The instances a Study Root C-MOVE at `level` with `keys` retrieves.
    async fn retrieve(&self, level: &str, keys: Vec<InMemElement>) -> Vec<IndexedInstance> {
        self.retrieve_in(QueryModel::StudyRoot, level, keys).await
    }

    /// The instances a C-MOVE on `model` at `level` with `keys` retrieves.
    async fn retrieve_in(
        &self,
        model: QueryModel,
        level: &str,
        keys: Vec<InMemElement>,
    ) -> Vec<IndexedInstance> {
        let mut object = InMemDicomObject::from_element_iter(keys);
        object.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
        let plan = QueryPlan::new(model, QueryService::Move, object).expect("plan");
        self.index.instances(plan).await.expect("instances")
    }

    async fn lookup(&self, uid: &str) -> Option<IndexedInstance> {
        self.index.lookup(uid.into()).await.expect("lookup")
    }

    async fn delete(&self, target: DeleteTarget) -> Deleted {
        self.index.delete(target).await.expect("deleted")
    }

    /// (patients, studies, series, instances)
    async fn counts(&self) -> (usize, usize, usize, usize) {
        let counts = self.index.counts().await.expect("counts");
        (
            counts.patients,
            counts.studies,
            counts.series,
            counts.instances,
        )
    }

    /// The sorted values of `tag` in the matches of a Study Root query at `level`.
    async fn column(&self, level: &str, keys: Vec<InMemElement>, tag: Tag) -> Vec<String> {
        let mut keys = keys;
        if !keys.iter().any(|key| key.tag() == tag) {
            keys.push(element(tag, VR::UN, ""));
        }
        let found = self.find(QueryModel::StudyRoot, level, keys).await;
        sorted_values(&found, tag)
    }
}

fn study_uid(value: &str) -> InMemElement {
    element(tags::STUDY_INSTANCE_UID, VR::UI, value)
}

// ------------------------------------------------------------------------------------------

async fn every_level_of_every_model_is_answered_with_its_computed_keys(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };

    assert_eq!(fixture.counts().await, (3, 4, 5, 6));

    let patients = fixture
        .find(QueryModel::PatientRoot, "PATIENT", {
            let mut keys = patient_count_keys("");
            keys.push(element(tags::PATIENT_NAME, VR::PN, ""));
            keys
        })
        .await;
    assert_eq!(
        sorted_values(&patients, tags::PATIENT_ID),
        ["P1", "P2", "P3"]
    );
    let p1 = patients
        .iter()
        .find(|p| text(p, tags::PATIENT_ID) == "P1")
        .expect("P1");
    assert_eq!(text(p1, tags::NUMBER_OF_PATIENT_RELATED_STUDIES), "2");
    assert_eq!(text(p1, tags::NUMBER_OF_PATIENT_RELATED_SERIES), "3");
    assert_eq!(text(p1, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES), "4");
    assert_eq!(text(p1, tags::QUERY_RETRIEVE_LEVEL), "PATIENT");
    assert_eq!(text(p1, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");

    // Patient Root STUDY under P1; the same through Patient/Study Only.
    for model in [QueryModel::PatientRoot, QueryModel::PatientStudyOnly] {
        let studies = fixture
            .find(
                model,
                "STUDY",
                vec![
                    element(tags::PATIENT_ID, VR::LO, "P1"),
                    study_uid(""),
                    element(tags::MODALITIES_IN_STUDY, VR::CS, ""),
                    element(tags::SOP_CLASSES_IN_STUDY, VR::UI, ""),
                    element(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, ""),
                    element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
                ],
            )
            .await;
        assert_eq!(
            sorted_values(&studies, tags::STUDY_INSTANCE_UID),
            ["1.1", "1.2"]
        );
        let s11 = studies
            .iter()
            .find(|s| text(s, tags::STUDY_INSTANCE_UID) == "1.1")
            .expect("1.1");
        assert_eq!(text(s11, tags::MODALITIES_IN_STUDY), "CT\\OT");
        assert_eq!(text(s11, tags::SOP_CLASSES_IN_STUDY), format!("{CT}\\{SC}"));
        assert_eq!(text(s11, tags::NUMBER_OF_STUDY_RELATED_SERIES), "2");
        assert_eq!(text(s11, tags::NUMBER_OF_STUDY_RELATED_INSTANCES), "3");
    }

    // Study Root at each level.
    assert_eq!(
        fixture
            .column("STUDY", vec![], tags::STUDY_INSTANCE_UID)
            .await,
        ["1.1", "1.2", "2.1", "3.1"]
    );
    let series = fixture
        .find(
            QueryModel::StudyRoot,
            "SERIES",
            vec![
                study_uid("1.1"),
                element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
                element(tags::MODALITY, VR::CS, ""),
                element(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
                element(tags::PATIENT_NAME, VR::PN, ""),
            ],
        )
        .await;
    assert_eq!(
        sorted_values(&series, tags::SERIES_INSTANCE_UID),
        ["1.1.1", "1.1.2"]
    );
    assert_eq!(sorted_values(&series, tags::MODALITY), ["CT", "OT"]);
    assert_eq!(
        sorted_values(&series, tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        ["1", "2"]
    );
    assert_eq!(
        sorted_values(&series, tags::PATIENT_NAME),
        ["DOE^JOHN", "DOE^JOHN"]
    );
    let images = fixture
        .find(
            QueryModel::PatientRoot,
            "IMAGE",
            vec![
                element(tags::PATIENT_ID, VR::LO, "P1"),
                study_uid("1.1"),
                element(tags::SERIES_INSTANCE_UID, VR::UI, "1.1.1"),
                element(tags::SOP_INSTANCE_UID, VR::UI, ""),
                element(tags::SOP_CLASS_UID, VR::UI, ""),
                element(tags::INSTANCE_NUMBER, VR::IS, ""),
            ],
        )
        .await;
    assert_eq!(
        sorted_values(&images, tags::SOP_INSTANCE_UID),
        ["1.1.1.1", "1.1.1.2"]
    );
    assert_eq!(sorted_values(&images, tags::SOP_CLASS_UID), [CT, CT]);
    assert_eq!(sorted_values(&images, tags::INSTANCE_NUMBER), ["1", "1"]);

    // Retrieval: every instance below the matches of each level.
    let uids = |instances: Vec<IndexedInstance>| {
        let mut uids: Vec<String> = instances.into_iter().map(|i| i.sop_instance_uid).collect();
        uids.sort();
        uids
    };
    let patient = fixture
        .retrieve_in(
            QueryModel::PatientRoot,
            "PATIENT",
            vec![element(tags::PATIENT_ID, VR::LO, P1.0)],
        )
        .await;
    assert_eq!(uids(patient), ["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.2.1.1"]);
    let study = fixture.retrieve("STUDY", vec![study_uid("1.1\\2.1")]).await;
    assert_eq!(uids(study), ["1.1.1.1", "1.1.1.2", "1.1.2.1", "2.1.1.1"]);
    let series = fixture
        .retrieve(
            "SERIES",
            vec![element(tags::SERIES_INSTANCE_UID, VR::UI, "1.1.1")],
        )
        .await;
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0].location.path,
        fixture
            .root()
            .join("1.1/1.1.1")
            .join(format!("{}.dcm", series[0].sop_instance_uid))
    );
    let image = fixture
        .retrieve(
            "IMAGE",
            vec![element(tags::SOP_INSTANCE_UID, VR::UI, "3.1.1.1")],
        )
        .await;
    assert_eq!(uids(image), ["3.1.1.1"]);
    let found = fixture.lookup("1.2.1.1").await.expect("indexed");
    assert_eq!(
        (
            found.sop_class_uid.as_str(),
            found.study_instance_uid.as_str(),
            found.series_instance_uid.as_str()
        ),
        (MR, "1.2", "1.2.1")
    );
    assert!(fixture.lookup("9.9").await.is_none());
}

async fn wild_cards_ranges_uid_lists_and_literal_percent_and_underscore(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };

    let studies = |keys| fixture.column("STUDY", keys, tags::STUDY_INSTANCE_UID);
    let accession = |value| vec![element(tags::ACCESSION_NUMBER, VR::SH, value)];
    assert_eq!(studies(accession("ACC%1")).await, ["1.1"]);
    assert_eq!(studies(accession("ACC_2")).await, ["1.2"]);
    assert_eq!(
        studies(accession("ACC%*")).await,
        ["1.1"],
        "% is no wild card"
    );
    assert_eq!(
        studies(accession("ACC_*")).await,
        ["1.2"],
        "_ is no wild card"
    );
    assert_eq!(studies(accession("ACC?*")).await, ["1.1", "1.2"]);
    assert_eq!(studies(accession("%")).await, Vec::<String>::new());
    assert_eq!(studies(accession("*")).await, ["1.1", "1.2", "2.1", "3.1"]);
    assert_eq!(
        studies(accession("acc*")).await,
        Vec::<String>::new(),
        "SH keeps case"
    );
    let description = |value| vec![element(tags::STUDY_DESCRIPTION, VR::LO, value)];
    assert_eq!(studies(description("[US]*")).await, ["3.1"], "[ is literal");
    assert_eq!(studies(description("*K*")).await, ["1.2"]);

    let date = |value| vec![element(tags::STUDY_DATE, VR::DA, value)];
    assert_eq!(studies(date("20240101-")).await, ["1.1", "1.2"]);
    assert_eq!(studies(date("-20231231")).await, ["2.1"]);
    assert_eq!(studies(date("20240105")).await, ["1.1"]);
    assert_eq!(studies(date("20240101-20240131")).await, ["1.1"]);
    assert_eq!(studies(date("2024.03.20")).await, ["1.2"]);
    assert_eq!(
        studies(date("2024-03-20")).await,
        Vec::<String>::new(),
        "malformed"
    );
    let time = |value| vec![element(tags::STUDY_TIME, VR::TM, value)];
    assert_eq!(studies(time("08-09")).await, ["1.2"]);
    assert_eq!(studies(time("08-10")).await, ["1.1", "1.2"]);
    assert_eq!(studies(time("1015")).await, ["1.1"]);
    assert_eq!(studies(time("12-")).await, ["2.1"]);

    assert_eq!(
        studies(vec![study_uid("1.2\\3.1\\9.9")]).await,
        ["1.2", "3.1"]
    );
    let many: Vec<String> = (0..2000)
        .map(|n| format!("9.{n}"))
        .chain(["2.1".into()])
        .collect();
    let list = DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::Strs(many.into_iter().collect()),
    );
    assert_eq!(studies(vec![list]).await, ["2.1"], "a list of 2001 UIDs");

    let modalities = |value| vec![element(tags::MODALITIES_IN_STUDY, VR::CS, value)];
    assert_eq!(studies(modalities("CT")).await, ["1.1", "2.1"]);
    assert_eq!(studies(modalities("M?")).await, ["1.2"]);
    assert_eq!(studies(modalities("OT\\US")).await, ["1.1", "3.1"]);
    let classes = vec![element(tags::SOP_CLASSES_IN_STUDY, VR::UI, SC)];
    assert_eq!(studies(classes).await, ["1.1"]);

    // Universal keys of every kind restrict nothing.
    let universal = vec![
        element(tags::STUDY_DATE, VR::DA, ""),
        element(tags::PATIENT_NAME, VR::PN, "*"),
        element(tags::ACCESSION_NUMBER, VR::SH, "**"),
        element(tags::MODALITIES_IN_STUDY, VR::CS, ""),
    ];
    assert_eq!(studies(universal).await, ["1.1", "1.2", "2.1", "3.1"]);
    // Keys at two levels, both applied.
    let series = fixture
        .column(
            "SERIES",
            vec![
                element(tags::PATIENT_ID, VR::LO, "P1"),
                element(tags::MODALITY, VR::CS, "CT"),
                element(tags::SERIES_NUMBER, VR::IS, "01"),
            ],
            tags::SERIES_INSTANCE_UID,
        )
        .await;
    assert_eq!(series, ["1.1.1"]);
}

async fn person_names_match_without_case_and_by_alphabetic_group_or_with_case_when_asked(
    backend: Backend,
) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };

    let patients = |name: &str| {
        fixture.column(
            "STUDY",
            vec![element(tags::PATIENT_NAME, VR::PN, name)],
            tags::PATIENT_ID,
        )
    };
    assert_eq!(patients("doe^john").await, ["P1", "P1"]);
    assert_eq!(patients("DOE^JOHN^^").await, ["P1", "P1"]);
    assert_eq!(patients("roe*").await, ["P2"]);
    assert_eq!(patients("R?E^JANE").await, ["P2"]);
    assert_eq!(
        patients("yamada^tarou").await,
        ["P3"],
        "the alphabetic group"
    );
    assert_eq!(patients("*田*").await, ["P3"], "the whole name");
    assert_eq!(patients("Yamada^Tarou=山田^太郎").await, ["P3"]);
    assert_eq!(patients("Doe").await, Vec::<String>::new());
    let referring = fixture
        .column(
            "STUDY",
            vec![element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "smith*")],
            tags::STUDY_INSTANCE_UID,
        )
        .await;
    assert_eq!(referring.len(), 4);

    let sensitive = MatchOptions {
        case_insensitive_person_names: false,
        ..MatchOptions::default()
    };
    let find = |name: &str| {
        fixture.find_with(
            find_plan(
                QueryModel::PatientRoot,
                "PATIENT",
                vec![
                    element(tags::PATIENT_NAME, VR::PN, name),
                    element(tags::PATIENT_ID, VR::LO, ""),
                ],
            )
            .with_options(sensitive),
            None,
        )
    };
    assert!(find("doe^john").await.is_empty());
    assert_eq!(find("DOE^JOHN").await.len(), 1);
    assert!(find("roe?jane").await.is_empty());
    assert_eq!(find("Roe^Ja?e").await.len(), 1);
}

/// Modalities In Study, SOP Classes In Study, Number of Study Related Series and Instances of
/// study `uid`, if it is there.
async fn study_computed_keys(fixture: &Fixture, uid: &'static str) -> Option<[String; 4]> {
    let found = fixture
        .find(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                study_uid(uid),
                element(tags::MODALITIES_IN_STUDY, VR::CS, ""),
                element(tags::SOP_CLASSES_IN_STUDY, VR::UI, ""),
                element(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, ""),
                element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
            ],
        )
        .await;
    found.first().map(|s| {
        [
            tags::MODALITIES_IN_STUDY,
            tags::SOP_CLASSES_IN_STUDY,
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        ]
        .map(|tag| text(s, tag))
    })
}

/// Number of Patient Related Studies, Series and Instances of patient `pid`, if it is there.
async fn patient_computed_keys(fixture: &Fixture, pid: &'static str) -> Option<[String; 3]> {
    let found = fixture
        .find(QueryModel::PatientRoot, "PATIENT", patient_count_keys(pid))
        .await;
    found.first().map(|p| {
        [
            tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
            tags::NUMBER_OF_PATIENT_RELATED_SERIES,
            tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        ]
        .map(|tag| text(p, tag))
    })
}

async fn computed_keys_follow_inserts_replacements_and_deletes(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    let fixture = &fixture;
    let study = |uid| study_computed_keys(fixture, uid);
    let patient = |pid| patient_computed_keys(fixture, pid);
    let s = |values: [&str; 4]| Some(values.map(str::to_owned));
    let p = |values: [&str; 3]| Some(values.map(str::to_owned));
    assert_eq!(
        study("1.1").await,
        s(["CT\\OT", &format!("{CT}\\{SC}"), "2", "3"])
    );

    // A new series of another modality and SOP class.
    fixture
        .insert(&Spec {
            patient: P1,
            study: S11,
            series: ("1.1.3", "MR", "3"),
            sop: ("1.1.3.1", MR),
        })
        .await;
    assert_eq!(
        study("1.1").await,
        s(["CT\\MR\\OT", &format!("{CT}\\{MR}\\{SC}"), "3", "4"])
    );
    assert_eq!(patient("P1").await, p(["2", "4", "5"]));

    // Replaced in place (same file): nothing to remove. Replaced elsewhere: the old file.
    let again = Spec {
        patient: P1,
        study: S11,
        series: ("1.1.3", "MR", "3"),
        sop: ("1.1.3.1", MR),
    };
    let duplicate = fixture.put(&again, OnDuplicate::Fail).await;
    assert!(
        matches!(duplicate, Err(IndexError::Duplicate(_))),
        "{duplicate:?}"
    );
    let kept = fixture.put(&again, OnDuplicate::Keep).await.expect("kept");
    assert_eq!(kept, Inserted::AlreadyPresent);
    let replaced = fixture
        .put(&again, OnDuplicate::Replace)
        .await
        .expect("replaced");
    assert_eq!(replaced, Inserted::Replaced { old_file: None });
    let moved = Spec {
        series: ("2.1.1", "CT", "1"),
        study: S21,
        patient: P2,
        ..again
    };
    let replaced = fixture
        .put(&moved, OnDuplicate::Replace)
        .await
        .expect("replaced");
    assert_eq!(
        replaced,
        Inserted::Replaced {
            old_file: Some(file_path(fixture.root(), "1.1", "1.1.3", "1.1.3.1"))
        }
    );
    assert_eq!(
        study("1.1").await,
        s(["CT\\OT", &format!("{CT}\\{SC}"), "2", "3"])
    );
    assert_eq!(
        study("2.1").await,
        s(["CT", &format!("{CT}\\{MR}"), "1", "2"])
    );
    assert_eq!(patient("P2").await, p(["1", "1", "2"]));

    // Deletes: a series, an instance, a study; empty parents go.
    let deleted = fixture.delete(DeleteTarget::Series("1.1.2".into())).await;
    assert_eq!(deleted.instances, 1);
    assert_eq!(
        deleted.files,
        [file_path(fixture.root(), "1.1", "1.1.2", "1.1.2.1")]
    );
    assert_eq!(study("1.1").await, s(["CT", CT, "1", "2"]));
    assert_eq!(patient("P1").await, p(["2", "2", "3"]));
    let deleted = fixture
        .delete(DeleteTarget::Instance("1.1.1.1".into()))
        .await;
    assert_eq!(deleted.instances, 1);
    assert_eq!(study("1.1").await, s(["CT", CT, "1", "1"]));
    let deleted = fixture.delete(DeleteTarget::Study("1.2".into())).await;
    assert_eq!(deleted.instances, 1);
    assert_eq!(study("1.2").await, None);
    assert_eq!(patient("P1").await, p(["1", "1", "1"]));
    let one_more = Spec {
        patient: P1,
        study: S11,
        series: ("1.1.1", "CT", "1"),
        sop: ("1.1.1.5", CT),
    };
    fixture.insert(&one_more).await;
    assert_eq!(study("1.1").await, s(["CT", CT, "1", "2"]));
    fixture.delete(DeleteTarget::Study("1.1".into())).await;
    assert_eq!(patient("P1").await, None, "a patient without studies goes");
    let nothing = fixture.delete(DeleteTarget::Study("9.9".into())).await;
    assert_eq!(nothing.instances, 0);
    assert_eq!(fixture.counts().await, (2, 2, 2, 3));

    // The same study and series stored again after their delete: new rows, right counts (the
    // writer forgets the rows it remembered when a delete removes them).
    for sop in ["1.1.1.7", "1.1.1.8"] {
        fixture
            .insert(&Spec {
                sop: (sop, CT),
                ..one_more
            })
            .await;
    }
    assert_eq!(study("1.1").await, s(["CT", CT, "1", "2"]));
    assert_eq!(patient("P1").await, p(["1", "1", "2"]));
    assert_eq!(fixture.counts().await, (3, 3, 3, 5));
}

/// The computed keys a batch adds to are written before an operation of the same batch removes
/// rows (a replacement, a delete): both read and lower them. The SQLite writer keeps the
/// batch open (its linger) until the awaited delete comes, so that all five operations share
/// one transaction; PostgreSQL's writer takes what is queued.
async fn counts_of_a_batch_are_written_before_a_removal_in_it(backend: Backend) {
    let Some(test) = TestIndex::with(
        backend,
        |config| config.linger = Duration::from_secs(60),
        |_| {},
    )
    .await
    else {
        return;
    };
    let fixture = Fixture::empty(test);
    let ct = |sop| Spec {
        sop: (sop, CT),
        ..specs()[0].clone()
    };
    let moved = Spec {
        series: ("1.1.9", "MR", "9"),
        sop: ("9.9.9.2", MR),
        ..specs()[0].clone()
    };
    let (committed, mut commits) = tokio::sync::mpsc::unbounded_channel();
    let queued = [
        (ct("9.9.9.1"), OnDuplicate::Fail),
        (ct("9.9.9.2"), OnDuplicate::Fail),
        (ct("9.9.9.3"), OnDuplicate::Fail),
        // Removes 9.9.9.2, counted by this batch only, then files it under a new series.
        (moved, OnDuplicate::Replace),
    ];
    let handed_over = queued.len();
    for (spec, on_duplicate) in queued {
        let committed = committed.clone();
        hand_over_spec(&fixture.test, &spec, on_duplicate, move |outcome| {
            let _ = committed.send(outcome.map_err(|error| error.to_string()));
        });
    }
    // Awaited: it ends the linger and joins the batch.
    let deleted = fixture
        .delete(DeleteTarget::Instance("9.9.9.1".into()))
        .await;
    assert_eq!(deleted.instances, 1);
    let mut outcomes = Vec::new();
    for _ in 0..handed_over {
        let outcome = tokio::time::timeout(Duration::from_secs(20), commits.recv())
            .await
            .expect("committed");
        outcomes.push(outcome.expect("answered"));
    }
    assert_eq!(
        outcomes,
        [
            Ok(Inserted::New),
            Ok(Inserted::New),
            Ok(Inserted::New),
            Ok(Inserted::Replaced {
                old_file: Some(file_path(fixture.root(), "1.1", "1.1.1", "9.9.9.2"))
            }),
        ]
    );
    // Left: 9.9.9.3 in series 1.1.1 (CT) and 9.9.9.2 in series 1.1.9 (MR).
    assert_eq!(
        study_computed_keys(&fixture, "1.1").await,
        Some([
            "CT\\MR".to_owned(),
            format!("{CT}\\{MR}"),
            "2".to_owned(),
            "2".to_owned()
        ])
    );
    assert_eq!(
        patient_computed_keys(&fixture, "P1").await,
        Some(["1", "2", "2"].map(str::to_owned))
    );
    assert_eq!(fixture.counts().await, (1, 1, 2, 2));
}

async fn hostile_identifiers_neither_break_the_query_nor_leak_rows(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };

    let studies = |keys| fixture.column("STUDY", keys, tags::STUDY_INSTANCE_UID);
    let none = Vec::<String>::new();
    for hostile in [
        "'; DROP TABLE study; --",
        "\" OR 1=1 --",
        "1.1' OR '1'='1",
        "%",
        "_",
        "%%",
        "\\' OR 1=1",
        "?*' OR ''='",
    ] {
        assert_eq!(
            studies(vec![element(tags::ACCESSION_NUMBER, VR::SH, hostile)]).await,
            none,
            "{hostile}"
        );
        assert_eq!(
            studies(vec![element(tags::PATIENT_NAME, VR::PN, hostile)]).await,
            none,
            "{hostile}"
        );
        assert_eq!(studies(vec![study_uid(hostile)]).await, none, "{hostile}");
    }
    // A 10 MB value, as an exact key and as a pattern.
    let huge = "x".repeat(10 * 1024 * 1024);
    assert_eq!(
        studies(vec![element(tags::STUDY_DESCRIPTION, VR::LO, &huge)]).await,
        none
    );
    assert_eq!(
        studies(vec![element(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            &format!("*{huge}*")
        )])
        .await,
        none
    );
    // 1,000 keys (universal private ones and one that restricts).
    let mut keys: Vec<InMemElement> = (0..1000u16)
        .map(|n| element(Tag(0x0011, 0x1000 + n), VR::LO, ""))
        .collect();
    keys.push(element(tags::ACCESSION_NUMBER, VR::SH, "A1"));
    assert_eq!(studies(keys).await, ["2.1"]);
    // A deeply nested sequence key.
    let mut nested = element(tags::CODE_VALUE, VR::SH, "X");
    for _ in 0..64 {
        nested = DataElement::new(
            tags::PROCEDURE_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![InMemDicomObject::from_element_iter([nested])]),
        );
    }
    assert_eq!(studies(vec![nested]).await, none);
    // The tables are intact.
    let counts = fixture.index.counts().await.expect("counts");
    assert_eq!((counts.studies, counts.instances), (4, 6));
}

async fn a_result_limit_ends_with_an_error_not_a_silent_truncation(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };

    let found = fixture
        .find_with(
            find_plan(QueryModel::StudyRoot, "STUDY", vec![study_uid("")]),
            Some(3),
        )
        .await;
    assert_eq!(found.len(), 4);
    assert!(found[..3].iter().all(Result::is_ok));
    assert!(matches!(
        found[3],
        Err(IndexError::TooManyMatches { limit: 3 })
    ));
    let exactly = fixture
        .find_with(
            find_plan(QueryModel::StudyRoot, "STUDY", vec![study_uid("")]),
            Some(4),
        )
        .await;
    assert_eq!(exactly.len(), 4);
    assert!(
        exactly.iter().all(Result::is_ok),
        "four matches fit a limit of four"
    );

    // A stream dropped early gives its reader back.
    for _ in 0..20 {
        let mut stream = fixture
            .index
            .query(find_plan(QueryModel::StudyRoot, "IMAGE", vec![]), None)
            .await
            .expect("query");
        assert!(stream.next().await.is_some());
    }
    assert_eq!(
        fixture
            .column("STUDY", vec![], tags::STUDY_INSTANCE_UID)
            .await
            .len(),
        4
    );
}

async fn an_instance_is_visible_only_once_its_transaction_committed(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };

    // Another connection holds a lock: the writer cannot commit.
    let blocker = fixture.test.block_writer().await;
    let spec = Spec {
        patient: P2,
        study: S21,
        series: ("2.1.9", "SR", "9"),
        sop: ("2.1.9.1", SC),
    };
    let index = fixture.index.clone();
    let new = spec.new_instance(fixture.root());
    let insert = tokio::spawn(async move { index.insert(new, OnDuplicate::Fail).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!insert.is_finished(), "resolved before its commit");
    // What is committed does not hold it yet.
    let committed = fixture.index.lookup_committed("2.1.9.1".into()).await;
    assert!(committed.expect("lookup").is_none());
    // A read that starts now waits for the instance handed over before it: it never answers
    // without it.
    let index = fixture.index.clone();
    let lookup = tokio::spawn(async move { index.lookup("2.1.9.1".into()).await });
    let index = fixture.index.clone();
    let series = tokio::spawn(async move {
        let mut keys = InMemDicomObject::from_element_iter([
            study_uid("2.1"),
            element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
        ]);
        keys.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"));
        let plan = QueryPlan::new(QueryModel::StudyRoot, QueryService::Find, keys).expect("plan");
        query_all(index.as_ref(), plan, None).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !lookup.is_finished() && !series.is_finished(),
        "read before the commit"
    );
    blocker.release().await;
    let inserted = tokio::time::timeout(Duration::from_secs(10), insert)
        .await
        .expect("committed")
        .expect("task")
        .expect("inserted");
    assert_eq!(inserted, Inserted::New);
    let found = tokio::time::timeout(Duration::from_secs(10), lookup)
        .await
        .expect("answered")
        .expect("task")
        .expect("lookup");
    assert_eq!(found.expect("found").sop_instance_uid, "2.1.9.1");
    let series = tokio::time::timeout(Duration::from_secs(10), series)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(series.len(), 2, "{series:?}");
}

async fn every_read_after_a_hand_over_sees_the_instance(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    for (uid, spec) in ["9.9.9.0", "9.9.9.1", "9.9.9.2"].into_iter().zip(specs()) {
        let spec = Spec {
            sop: (uid, spec.sop.1),
            ..spec
        };
        let prepared = PreparedInstance::new(spec.new_instance(fixture.root())).expect("prepared");
        // Handed over and not awaited: the reads right after it find it all the same.
        let committed = fixture.index.hand_over(prepared, OnDuplicate::Fail);
        assert_eq!(
            fixture.lookup(uid).await.expect("found").sop_instance_uid,
            uid
        );
        let keys = vec![
            study_uid(spec.study.0),
            element(tags::SERIES_INSTANCE_UID, VR::UI, spec.series.0),
        ];
        let images = fixture.column("IMAGE", keys, tags::SOP_INSTANCE_UID).await;
        assert!(images.iter().any(|found| found == uid), "{images:?}");
        assert_eq!(committed.await.expect("committed"), Inserted::New);
    }
}

async fn the_index_survives_reopening_and_refuses_a_newer_schema(backend: Backend) {
    let Some(fixture) = Fixture::new(backend).await else {
        return;
    };
    fixture.index.close().await.expect("closed");
    let late = fixture
        .index
        .insert(specs()[0].new_instance(fixture.root()), OnDuplicate::Keep)
        .await;
    assert!(matches!(late, Err(IndexError::WriterGone)), "{late:?}");
    let reopened = fixture.test.reopen().await.expect("reopened");
    assert_eq!(reopened.counts().await.expect("counts").instances, 6);
    let session = reopened.begin_session().await.expect("session");
    assert!(session.was_clean, "a new index is clean");
    let session = reopened.begin_session().await.expect("session");
    assert!(!session.was_clean, "not marked clean since");
    reopened.mark_clean().await.expect("clean");
    assert!(reopened.begin_session().await.expect("session").was_clean);
    reopened.close().await.expect("closed");

    fixture.test.set_schema_version(99).await;
    let refused = fixture.test.reopen().await;
    assert!(
        matches!(refused, Err(IndexError::NewerSchema { found: 99, .. })),
        "{:?}",
        refused.err()
    );
}

async fn a_query_whose_matches_wait_for_a_slow_peer_holds_up_no_lookup(backend: Backend) {
    let Some(test) = TestIndex::with(
        backend,
        |sqlite| sqlite.readers = 1,
        |postgres| postgres.pool_size = 1,
    )
    .await
    else {
        return;
    };
    let (folder, index) = (&test.folder, test.index.clone());
    let many: Vec<NewInstance> = (0..40)
        .map(|n| {
            let sop: &'static str = Box::leak(format!("1.1.1.{n}").into_boxed_str());
            Spec {
                patient: P1,
                study: S11,
                series: ("1.1.1", "CT", "1"),
                sop: (sop, CT),
            }
            .new_instance(folder.path())
        })
        .collect();
    let inserts = many
        .into_iter()
        .map(|instance| index.insert(instance, OnDuplicate::Fail));
    for inserted in futures_util::future::join_all(inserts).await {
        assert_eq!(inserted.expect("inserted"), Inserted::New);
    }
    // The only query reader is taken by a query nobody reads from.
    let mut stalled = index
        .query(find_plan(QueryModel::StudyRoot, "IMAGE", vec![]), None)
        .await
        .expect("query");
    assert!(stalled.next().await.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let found = tokio::time::timeout(Duration::from_secs(5), index.lookup("1.1.1.7".into()))
        .await
        .expect("the lookup is not held up")
        .expect("lookup");
    assert!(found.is_some());
    let counts = tokio::time::timeout(Duration::from_secs(5), index.counts())
        .await
        .expect("not held up")
        .expect("counts");
    assert_eq!(counts.instances, 40);
    let rest = stalled.collect::<Vec<_>>().await;
    assert_eq!(rest.len(), 39);
}

#[tokio::test]
async fn checkpoints_run_beside_the_writer_and_leave_the_database_file_complete() {
    let Some(fixture) = Fixture::new(Backend::Sqlite).await else {
        return;
    };
    let path: PathBuf = fixture.test.sqlite.clone().expect("an SQLite file");
    let size_before = std::fs::metadata(&path).expect("database file").len();
    // One instance per commit: a few hundred commits write well over the pages after which
    // the WAL hook asks the checkpointer for a checkpoint.
    for n in 0..1200 {
        let sop = format!("1.1.1.{}", 100 + n);
        fixture
            .insert(&Spec {
                patient: P1,
                study: S11,
                series: ("1.1.1", "CT", "1"),
                sop: (Box::leak(sop.into_boxed_str()), CT),
            })
            .await;
    }
    // A checkpoint copies pages into the database file: it grows while the ingest goes on.
    let file_size = || std::fs::metadata(&path).expect("database file").len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file_size() <= size_before + 100_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint ran during the ingest: the database file holds {} bytes, {size_before} before",
            file_size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    fixture.index.close().await.expect("closed");

    // After the last checkpoint, the database file alone (no WAL) holds every instance.
    let copy = fixture.root().join("copy.sqlite");
    std::fs::copy(&path, &copy).expect("copied");
    let alone = rusqlite::Connection::open(&copy).expect("open the copy");
    let instances: i64 = alone
        .query_row("SELECT count(*) FROM instance", [], |row| row.get(0))
        .expect("count");
    assert_eq!(instances, 1206);
}

crate::on_both_backends!(
    every_level_of_every_model_is_answered_with_its_computed_keys,
    wild_cards_ranges_uid_lists_and_literal_percent_and_underscore,
    person_names_match_without_case_and_by_alphabetic_group_or_with_case_when_asked,
    computed_keys_follow_inserts_replacements_and_deletes,
    counts_of_a_batch_are_written_before_a_removal_in_it,
    hostile_identifiers_neither_break_the_query_nor_leak_rows,
    a_result_limit_ends_with_an_error_not_a_silent_truncation,
    an_instance_is_visible_only_once_its_transaction_committed,
    the_index_survives_reopening_and_refuses_a_newer_schema,
    a_query_whose_matches_wait_for_a_slow_peer_holds_up_no_lookup,
);

/// Reads right after a hand-over, with the writer on another worker thread.
mod hand_over {
    use super::{Backend, every_read_after_a_hand_over_sees_the_instance as test};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        test(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        test(Backend::Postgres).await
    }
}

/// A SQLite index whose writer keeps a batch of inserts answered early open for a minute (its
/// linger) unless something ends the wait.
async fn lingering_index() -> Option<TestIndex> {
    TestIndex::with(
        Backend::Sqlite,
        |config| config.linger = Duration::from_secs(60),
        |_| {},
    )
    .await
}

/// Hands over a CT instance of the first test patient with SOP Instance UID `sop`, answered
/// early: `committed` is told whether its commit succeeded.
fn hand_over(test: &TestIndex, sop: &'static str, committed: impl FnOnce(bool) + Send + 'static) {
    let spec = Spec {
        sop: (sop, CT),
        ..specs()[0].clone()
    };
    hand_over_spec(test, &spec, OnDuplicate::Fail, move |outcome| {
        committed(outcome.is_ok())
    });
}

/// Hands over the instance of `spec`, answered early: `committed` is told how its commit
/// went.
fn hand_over_spec(
    test: &TestIndex,
    spec: &Spec,
    on_duplicate: OnDuplicate,
    committed: impl FnOnce(Result<Inserted, IndexError>) + Send + 'static,
) {
    let prepared = PreparedInstance::new(spec.new_instance(test.root())).expect("prepared");
    test.index
        .hand_over_then(prepared, on_duplicate, OnCommit::new(committed));
}

/// Hands over one insert and checks that the writer is keeping it open for more: nothing is
/// committed 300 ms later. The receiver hears of its commit.
async fn held_open(test: &TestIndex, sop: &'static str) -> tokio::sync::oneshot::Receiver<bool> {
    let (committed, mut commit) = tokio::sync::oneshot::channel();
    hand_over(test, sop, move |ok| {
        let _ = committed.send(ok);
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        commit.try_recv().is_err(),
        "committed before the linger was over"
    );
    commit
}

/// The SQLite writer keeps a batch of inserts answered early open for more (its linger), and
/// a read that waits for them ends that at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_ends_the_writers_wait_for_more_inserts() {
    let Some(test) = lingering_index().await else {
        return;
    };
    let commit = held_open(&test, "9.9.9.7").await;
    // A read waits for the insert handed over: the writer commits it at once.
    let found = tokio::time::timeout(Duration::from_secs(20), test.index.lookup("9.9.9.7".into()))
        .await
        .expect("the read ended the linger")
        .expect("lookup");
    assert_eq!(found.expect("found").sop_instance_uid, "9.9.9.7");
    assert_eq!(commit.await, Ok(true));
}

/// An operation someone awaits ends the SQLite writer's linger too: it is committed at once,
/// with the inserts the writer was keeping open for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awaited_operation_ends_the_writers_wait_for_more_inserts() {
    let Some(test) = lingering_index().await else {
        return;
    };
    let commit = held_open(&test, "9.9.9.8").await;
    tokio::time::timeout(
        Duration::from_secs(20),
        test.index.files_removed(Vec::new()),
    )
    .await
    .expect("the awaited operation ended the linger")
    .expect("files removed");
    assert_eq!(commit.await, Ok(true));
}

/// A queue of inserts filling up ends the SQLite writer's linger too: the writer takes what
/// is queued before any store has to wait for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_half_full_ends_the_writers_wait_for_more_inserts() {
    let Some(test) = lingering_index().await else {
        return;
    };
    // The writer's queue holds 256 operations: one insert taken, then more than half of the
    // queue's room.
    const INSERTS: usize = 1 + 129;
    let (committed, mut commits) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..INSERTS {
        let sop: &'static str = Box::leak(format!("9.9.9.9.{n}").into_boxed_str());
        let committed = committed.clone();
        hand_over(&test, sop, move |ok| {
            let _ = committed.send(ok);
        });
        if n == 0 {
            // The writer takes it and waits for more: the others queue up meanwhile.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for _ in 0..INSERTS {
        let outcome = tokio::time::timeout(Duration::from_secs(20), commits.recv())
            .await
            .expect("committed long before the linger was over");
        assert_eq!(outcome, Some(true));
    }
}

/// Tests of what only a server database does: several nodes on one database, migrations by
/// nodes starting at once, a server that drops the writer's connection, and the same answers
/// as SQLite to hostile values.
mod postgres_only {
    use std::collections::{BTreeMap, BTreeSet};

    use futures_util::StreamExt;

    use dimsum_pacs::index::{PostgresConfig, PostgresIndex};

    use super::common::{Backend, TestDatabase, TestIndex};
    use super::*;

    fn leak(text: String) -> &'static str {
        Box::leak(text.into_boxed_str())
    }

    /// Instance `uid` of study `study` (of patient P<study % 2>) and series `series` (modality
    /// CT, MR or OT by its number, SOP class by modality).
    fn spec(study: usize, series: usize, uid: &str) -> Spec {
        let (modality, class) = [("CT", CT), ("MR", MR), ("OT", SC)][series % 3];
        Spec {
            patient: [("P0", "ZERO^PATIENT"), ("P1", "ONE^PATIENT")][study % 2],
            study: (
                leak(format!("7.{study}")),
                "20240105",
                "101500",
                "A",
                "SHARED",
            ),
            series: (leak(format!("7.{study}.{series}")), modality, "1"),
            sop: (leak(uid.to_owned()), class),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_inserting_into_shared_studies_index_every_instance_once() {
        let Some(database) = TestDatabase::new().await else {
            return;
        };
        let open = |node: &str| PostgresIndex::open(PostgresConfig::new(&database.url, node));
        let (a, b) = tokio::join!(open("a"), open("b"));
        let nodes = [a.expect("node a"), b.expect("node b")];
        let root = tempfile::tempdir().expect("tempdir");
        // Four writers, two per node, 500 instances each into 4 studies of 3 series; every
        // tenth instance is one that all four store (90 % their own, 10 % duplicates).
        let mut expected: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
        let mut work = Vec::new();
        for writer in 0..4 {
            let mut specs = Vec::new();
            for n in 0..500usize {
                let uid = if n % 10 == 0 {
                    format!("9.0.{n}")
                } else {
                    format!("9.{}.{n}", writer + 1)
                };
                let (study, series) = (n % 4, (n / 4) % 3);
                expected
                    .entry((study, series))
                    .or_default()
                    .insert(uid.clone());
                specs.push(spec(study, series, &uid));
            }
            work.push((nodes[writer % 2].clone(), specs));
        }
        let root_path = root.path().to_path_buf();
        let tasks = work.into_iter().map(|(index, specs)| {
            let root = root_path.clone();
            tokio::spawn(async move {
                futures_util::stream::iter(specs)
                    .map(|spec| {
                        let index = index.clone();
                        let instance = spec.new_instance(&root);
                        async move { index.insert(instance, OnDuplicate::Keep).await }
                    })
                    .buffer_unordered(64)
                    .collect::<Vec<_>>()
                    .await
            })
        });
        let mut new = 0;
        for answers in futures_util::future::join_all(tasks).await {
            for answer in answers.expect("task") {
                match answer.expect("inserted") {
                    Inserted::New => new += 1,
                    Inserted::AlreadyPresent => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        let unique: usize = expected.values().map(BTreeSet::len).sum();
        assert_eq!(unique, 4 * 450 + 50);
        assert_eq!(new, unique, "each instance indexed once");
        for index in &nodes {
            let counts = index.counts().await.expect("counts");
            assert_eq!(
                (
                    counts.patients,
                    counts.studies,
                    counts.series,
                    counts.instances
                ),
                (2, 4, 12, unique)
            );
        }
        // The computed keys, as either node answers them.
        let plan = find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
                element(tags::MODALITIES_IN_STUDY, VR::CS, ""),
                element(tags::SOP_CLASSES_IN_STUDY, VR::UI, ""),
                element(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, ""),
                element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
            ],
        );
        let found = matches(&nodes[1], plan).await;
        assert_eq!(found.len(), 4);
        for study in 0..4 {
            let record = found
                .iter()
                .find(|s| text(s, tags::STUDY_INSTANCE_UID) == format!("7.{study}"))
                .expect("the study");
            let instances: usize = (0..3).map(|series| expected[&(study, series)].len()).sum();
            assert_eq!(text(record, tags::MODALITIES_IN_STUDY), "CT\\MR\\OT");
            assert_eq!(
                text(record, tags::SOP_CLASSES_IN_STUDY),
                format!("{CT}\\{MR}\\{SC}")
            );
            assert_eq!(text(record, tags::NUMBER_OF_STUDY_RELATED_SERIES), "3");
            assert_eq!(
                text(record, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
                instances.to_string()
            );
        }
        let patients = find_plan(QueryModel::PatientRoot, "PATIENT", patient_count_keys("P0"));
        let found = query_all(&nodes[0], patients, None).await;
        let p0 = found[0].as_ref().expect("P0");
        let p0_instances: usize = expected
            .iter()
            .filter(|((study, _), _)| study % 2 == 0)
            .map(|(_, uids)| uids.len())
            .sum();
        assert_eq!(text(p0, tags::NUMBER_OF_PATIENT_RELATED_STUDIES), "2");
        assert_eq!(text(p0, tags::NUMBER_OF_PATIENT_RELATED_SERIES), "6");
        assert_eq!(
            text(p0, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES),
            p0_instances.to_string()
        );
        for index in &nodes {
            index.close().await.expect("closed");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_opening_a_new_database_at_once_migrate_it_once() {
        let Some(database) = TestDatabase::new().await else {
            return;
        };
        let open = |node: &str| PostgresIndex::open(PostgresConfig::new(&database.url, node));
        let (a, b, c) = tokio::join!(open("a"), open("b"), open("c"));
        for index in [a, b, c] {
            let index = index.expect("opened");
            assert_eq!(index.counts().await.expect("counts").instances, 0);
            index.close().await.expect("closed");
        }
        let client = database.client().await;
        let versions: Vec<i64> = client
            .query("SELECT version FROM dimsum_schema", &[])
            .await
            .expect("versions")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, [dimsum_pacs::index::schema::SCHEMA_VERSION]);
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'instance'",
                &[],
            )
            .await
            .expect("tables")
            .get(0);
        assert_eq!(tables, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_survives_the_server_dropping_its_connections() {
        let Some(test) = TestIndex::new(Backend::Postgres).await else {
            return;
        };
        let database = test.postgres.as_ref().expect("a database");
        let index = test.index.clone();
        let root = test.root().to_path_buf();
        let inserts = tokio::spawn(async move {
            futures_util::stream::iter(0..600usize)
                .map(|n| {
                    let instance = spec(n % 2, n % 3, &format!("8.{n}")).new_instance(&root);
                    let index = index.clone();
                    async move {
                        // Paced, so that the connections are dropped while it goes on.
                        tokio::time::sleep(Duration::from_millis((n % 7) as u64)).await;
                        index.insert(instance, OnDuplicate::Fail).await
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        });
        let killer = database.client().await;
        let mut killed = 0;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let rows = killer
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&database.name],
                )
                .await
                .expect("terminated");
            killed += rows.len();
        }
        assert!(killed >= 3, "the connections were dropped ({killed})");
        let answers = tokio::time::timeout(Duration::from_secs(120), inserts)
            .await
            .expect("the inserts end")
            .expect("task");
        for answer in &answers {
            assert_eq!(answer.as_ref().expect("inserted"), &Inserted::New);
        }
        let counts = test.index.counts().await.expect("counts");
        assert_eq!(
            (counts.studies, counts.series, counts.instances),
            (2, 6, 600)
        );
        let plan = find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                element(tags::STUDY_INSTANCE_UID, VR::UI, "7.0"),
                element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
            ],
        );
        let found = query_all(test.index.as_ref(), plan, None).await;
        assert_eq!(
            text(
                found[0].as_ref().expect("study"),
                tags::NUMBER_OF_STUDY_RELATED_INSTANCES
            ),
            "300"
        );
    }

    #[tokio::test]
    async fn hostile_values_match_on_postgresql_exactly_what_they_match_on_sqlite() {
        let Some(postgres) = TestIndex::new(Backend::Postgres).await else {
            return;
        };
        let sqlite = TestIndex::new(Backend::Sqlite).await.expect("sqlite");
        let values = [
            "A%B", "A_B", "AxB", "A\\\\B", "it's", "O'Brien%", "100%_", "[x]*", "a\"b",
        ];
        for (n, value) in values.iter().enumerate() {
            let mut one = spec(n, 0, &format!("6.{n}"));
            one.study.4 = value;
            for test in [&postgres, &sqlite] {
                test.index
                    .insert(one.new_instance(test.root()), OnDuplicate::Fail)
                    .await
                    .expect("inserted");
            }
        }
        let keys = [
            "A%B", "A_B", "A?B", "A*B", "A%*", "A_*", "*%*", "*_*", "*\\\\*", "A\\\\B", "*'*",
            "O'Brien%", "O'Brien?", "100%_", "100??", "[x]*", "[*", "*\"*", "%", "_", "*", "''",
            "\\\\",
        ];
        for key in keys {
            let mut answers = Vec::new();
            for test in [&postgres, &sqlite] {
                let plan = find_plan(
                    QueryModel::StudyRoot,
                    "STUDY",
                    vec![
                        element(tags::STUDY_DESCRIPTION, VR::LO, key),
                        element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
                    ],
                );
                let found = matches(test.index.as_ref(), plan).await;
                answers.push(sorted_values(&found, tags::STUDY_INSTANCE_UID));
            }
            assert_eq!(answers[0], answers[1], "{key:?}");
        }
        // A few that must match something (the comparison above is not of two empty sets).
        let postgres = &postgres;
        let matches = |key: &'static str| async move {
            let plan = find_plan(
                QueryModel::StudyRoot,
                "STUDY",
                vec![
                    element(tags::STUDY_DESCRIPTION, VR::LO, key),
                    element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
                ],
            );
            query_all(postgres.index.as_ref(), plan, None).await.len()
        };
        // (A backslash separates LO values: the description stored as A, two backslashes, B is
        // several values, which no single-value key matches.)
        assert_eq!(matches("A?B").await, 3, "A%B, A_B and AxB");
        assert_eq!(matches("A%B").await, 1);
        assert_eq!(matches("*_*").await, 2, "A_B and 100%_");
        assert_eq!(matches("O'Brien%").await, 1);
    }
}
