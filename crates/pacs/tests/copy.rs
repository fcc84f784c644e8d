//! Copying an SQLite index into PostgreSQL (`copy_from_sqlite`, what `dimsum migrate` does;
//! these tests need DIMSUM_TEST_POSTGRES): the copy answers every C-FIND (hierarchical and
//! relational, at every level), count, look-up, walk and instance record exactly as the SQLite
//! index does, keeps the files pending removal, is checked by the first node that starts on
//! it, takes new instances after the copied ids, refuses a database that holds an index, and
//! leaves nothing when it fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use dimsum_net::dataset::dicom_core::VR;
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::query_model::QueryModel;
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::postgres::{COPIED_TABLES, CopyProgress, copy_from_sqlite};
use dimsum_pacs::index::{
    DeleteTarget, EntityUids, Index, IndexError, Inserted, OnDuplicate, PostgresConfig,
    PostgresIndex, SqliteConfig, SqliteIndex,
};

mod common;
use common::{
    Backend, CT, MR, SC, TestDatabase, TestIndex, TestInstance, element, find_plan, new_instance,
};

/// (patient id, patient name, study, study date, study description, series, modality, series
/// number, instance, SOP class, instance number)
type Row = [&'static str; 11];

/// Every kind of typed column, a name with an ideographic group (its `_alpha` column), empty
/// values (NULL columns), a modality with two values (an irregular series), a description
/// with a NUL character (which PostgreSQL text cannot hold), and two studies of a patient.
const ROWS: [Row; 8] = [
    [
        "P1", "DOE^JOHN", "1.1", "20240105", "CT CHEST", "1.1.1", "CT", "1", "1.1.1.1", CT, "1",
    ],
    [
        "P1", "DOE^JOHN", "1.1", "20240105", "CT CHEST", "1.1.1", "CT", "1", "1.1.1.2", CT, "2",
    ],
    [
        "P1", "DOE^JOHN", "1.1", "20240105", "CT CHEST", "1.1.2", "OT", "2", "1.1.2.1", SC, "",
    ],
    [
        "P1", "DOE^JOHN", "1.2", "20240320", "MR KNEE", "1.2.1", "MR", "1", "1.2.1.1", MR, "1",
    ],
    [
        "P2",
        "Yamada^Tarou=山田^太郎",
        "2.1",
        "",
        "",
        "2.1.1",
        "CT\\SR",
        "",
        "2.1.1.1",
        CT,
        "3",
    ],
    [
        "P3", "ROE^JANE", "3.1", "20231111", "A\0B", "3.1.1", "MR", "7", "3.1.1.1", MR, "1",
    ],
    [
        "P3", "ROE^JANE", "3.1", "20231111", "A\0B", "3.1.1", "MR", "7", "3.1.1.2", MR, "2",
    ],
    [
        "P4", "DOE^JANE", "4.1", "20240601", "GONE", "4.1.1", "US", "1", "4.1.1.1", SC, "1",
    ],
];

fn attributes(row: &Row) -> InMemDicomObject {
    let [
        pid,
        name,
        study,
        date,
        description,
        series,
        modality,
        number,
        sop,
        class,
        instance,
    ] = *row;
    let accession = format!("ACC{study}");
    let mut attributes = TestInstance {
        patient_id: pid,
        patient_name: name,
        study,
        study_date: date,
        study_time: if date.is_empty() { "" } else { "101500" },
        accession: &accession,
        study_description: description,
        series,
        modality,
        series_number: number,
        sop,
        sop_class: class,
        instance_number: instance,
    }
    .attributes();
    attributes.put(element(tags::ROWS, VR::US, "16"));
    attributes.put(element(tags::PIXEL_DATA, VR::OW, ""));
    attributes
}

fn path(root: &Path, sop: &str) -> PathBuf {
    root.join(format!("{sop}.dcm"))
}

/// An SQLite index of [`ROWS`], with one instance replaced by another file and study 4.1
/// deleted (their files pending removal); `None`: no PostgreSQL server, skip.
async fn sqlite_fixture() -> Option<TestIndex> {
    common::postgres_server()?;
    let test = TestIndex::new(Backend::Sqlite).await?;
    for row in &ROWS {
        let new = new_instance(attributes(row), path(test.root(), row[8]));
        test.index
            .insert(new, OnDuplicate::Fail)
            .await
            .expect("inserted");
    }
    let again = new_instance(attributes(&ROWS[1]), test.root().join("again.dcm"));
    let replaced = test
        .index
        .insert(again, OnDuplicate::Replace)
        .await
        .expect("replaced");
    assert!(matches!(replaced, Inserted::Replaced { old_file: Some(_) }));
    let deleted = test
        .index
        .delete(DeleteTarget::Study("4.1".into()))
        .await
        .expect("deleted");
    assert_eq!(deleted.instances, 1);
    test.index.close().await.expect("closed");
    Some(test)
}

/// The plans both indexes answer: every level of every model, hierarchical and relational,
/// on every kind of column.
fn plans() -> Vec<QueryPlan> {
    let key = |tag, vr, value: &str| element(tag, vr, value);
    let universal = || -> Vec<InMemElement> {
        vec![
            key(tags::PATIENT_ID, VR::LO, ""),
            key(tags::PATIENT_NAME, VR::PN, ""),
            key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            key(tags::STUDY_DATE, VR::DA, ""),
            key(tags::STUDY_DESCRIPTION, VR::LO, ""),
            key(tags::MODALITIES_IN_STUDY, VR::CS, ""),
            key(tags::SOP_CLASSES_IN_STUDY, VR::UI, ""),
            key(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, ""),
            key(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
        ]
    };
    let mut plans = vec![
        find_plan(
            QueryModel::PatientRoot,
            "PATIENT",
            vec![
                key(tags::PATIENT_ID, VR::LO, ""),
                key(tags::PATIENT_NAME, VR::PN, ""),
                key(tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, ""),
                key(tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS, ""),
                key(tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS, ""),
            ],
        ),
        find_plan(QueryModel::StudyRoot, "STUDY", universal()),
        find_plan(QueryModel::StudyRoot, "STUDY", {
            let mut keys = universal();
            keys.push(key(tags::STUDY_DATE, VR::DA, "20240101-20241231"));
            keys
        }),
        find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                key(tags::PATIENT_NAME, VR::PN, "yamada*"),
                key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            ],
        ),
        find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                key(tags::PATIENT_NAME, VR::PN, "doe*"),
                key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            ],
        ),
        find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                key(tags::STUDY_DESCRIPTION, VR::LO, "A*"),
                key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            ],
        ),
        find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                key(tags::MODALITIES_IN_STUDY, VR::CS, "SR"),
                key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            ],
        ),
        find_plan(
            QueryModel::StudyRoot,
            "SERIES",
            vec![
                key(tags::STUDY_INSTANCE_UID, VR::UI, "1.1"),
                key(tags::SERIES_INSTANCE_UID, VR::UI, ""),
                key(tags::MODALITY, VR::CS, ""),
                key(tags::SERIES_NUMBER, VR::IS, ""),
                key(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
            ],
        ),
        find_plan(
            QueryModel::StudyRoot,
            "SERIES",
            vec![
                key(tags::STUDY_INSTANCE_UID, VR::UI, "2.1"),
                key(tags::MODALITY, VR::CS, "CT"),
                key(tags::SERIES_INSTANCE_UID, VR::UI, ""),
            ],
        ),
        find_plan(
            QueryModel::StudyRoot,
            "IMAGE",
            vec![
                key(tags::STUDY_INSTANCE_UID, VR::UI, "3.1"),
                key(tags::SERIES_INSTANCE_UID, VR::UI, "3.1.1"),
                key(tags::SOP_INSTANCE_UID, VR::UI, ""),
                key(tags::INSTANCE_NUMBER, VR::IS, "2"),
            ],
        ),
        find_plan(
            QueryModel::PatientStudyOnly,
            "STUDY",
            vec![
                key(tags::PATIENT_ID, VR::LO, "P1"),
                key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
                key(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
            ],
        ),
    ];
    // Relational: studies with an MR series, patients with a study in 2024.
    plans.push(
        find_plan(
            QueryModel::StudyRoot,
            "STUDY",
            vec![
                key(tags::STUDY_INSTANCE_UID, VR::UI, ""),
                key(tags::MODALITY, VR::CS, "MR"),
            ],
        )
        .with_relational(true),
    );
    plans.push(
        find_plan(
            QueryModel::PatientRoot,
            "PATIENT",
            vec![
                key(tags::PATIENT_ID, VR::LO, ""),
                key(tags::STUDY_DATE, VR::DA, "20240101-"),
                key(tags::SOP_INSTANCE_UID, VR::UI, ""),
            ],
        )
        .with_relational(true),
    );
    plans
}

/// The answers of `index` to `plan`, in a sorted order of their own.
async fn answers(index: &dyn Index, plan: QueryPlan) -> Vec<String> {
    let found = common::query_all(index, plan, None).await;
    let mut answers: Vec<String> = found
        .into_iter()
        .map(|answer| format!("{:?}", answer.expect("a match")))
        .collect();
    answers.sort();
    answers
}

/// Every instance record of `study`, as text.
async fn records(index: &dyn Index, study: &str) -> Vec<String> {
    let entity = EntityUids {
        study: study.into(),
        series: None,
        instance: None,
    };
    index
        .instance_records(entity)
        .await
        .expect("records")
        .map(|record| {
            let record = record.expect("a record");
            format!(
                "{:?} {:?} {:?}",
                record.instance, record.attributes, record.bulk_data
            )
        })
        .collect()
        .await
}

#[tokio::test]
async fn the_copy_answers_every_read_as_the_sqlite_index_does() {
    let Some(source) = sqlite_fixture().await else {
        return;
    };
    let sqlite_path = source.sqlite.clone().expect("an SQLite file");
    let database = TestDatabase::new().await.expect("a database");
    let mut seen: Vec<CopyProgress> = Vec::new();
    let report = copy_from_sqlite(&sqlite_path, &database.url, |progress| seen.push(progress))
        .await
        .expect("copied");
    // Patients P1-P3 (P4 went with its study), 4 studies, 5 series, 7 instances.
    assert_eq!(
        report
            .tables
            .iter()
            .map(|(table, _)| *table)
            .collect::<Vec<_>>(),
        COPIED_TABLES
    );
    assert_eq!(
        [
            report.rows("patient"),
            report.rows("study"),
            report.rows("series"),
            report.rows("instance"),
            report.rows("pending_removal"),
        ],
        [3, 4, 5, 7, 2]
    );
    for (table, rows) in &report.tables {
        let last = seen
            .iter()
            .rfind(|progress| progress.table == *table)
            .expect("progress of every table");
        assert_eq!((last.copied, last.total), (*rows, *rows), "{table}");
    }

    // The description with a NUL went in as NULL, its study irregular (the engine decides).
    let row = database
        .client()
        .await
        .query_one(
            "SELECT study_description IS NULL, irregular FROM study WHERE study_instance_uid = '3.1'",
            &[],
        )
        .await
        .expect("study 3.1");
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i32>(1)), (true, 1));

    let sqlite: Arc<dyn Index> = Arc::new(
        SqliteIndex::open(SqliteConfig::new(&sqlite_path))
            .await
            .expect("SQLite again"),
    );
    let postgres: Arc<dyn Index> = Arc::new(
        PostgresIndex::open(PostgresConfig::new(&database.url, "first"))
            .await
            .expect("the copy"),
    );
    assert_eq!(
        postgres.counts().await.expect("counts"),
        sqlite.counts().await.expect("counts")
    );
    for (n, plan) in plans().into_iter().enumerate() {
        let expected = answers(sqlite.as_ref(), plan.clone()).await;
        assert!(!expected.is_empty(), "plan {n} finds nothing");
        assert_eq!(answers(postgres.as_ref(), plan).await, expected, "plan {n}");
    }
    for study in ["1.1", "1.2", "2.1", "3.1"] {
        let expected = records(sqlite.as_ref(), study).await;
        assert!(!expected.is_empty());
        assert_eq!(records(postgres.as_ref(), study).await, expected, "{study}");
    }
    for row in &ROWS {
        assert_eq!(
            postgres.lookup(row[8].into()).await.expect("lookup"),
            sqlite.lookup(row[8].into()).await.expect("lookup"),
            "{}",
            row[8]
        );
    }
    assert_eq!(
        postgres.instances_after(None, 100).await.expect("walk"),
        sqlite.instances_after(None, 100).await.expect("walk")
    );
    let instance = postgres
        .lookup("1.1.1.2".into())
        .await
        .expect("lookup")
        .expect("replaced instance");
    assert_eq!(instance.location.path, source.root().join("again.dcm"));

    // The first node to start checks the copy and removes the files pending removal; the
    // next one finds it checked.
    let first = postgres.begin_session().await.expect("session");
    assert!(!first.was_clean, "the first start checks the copy");
    let mut pending = first.pending_removals.clone();
    pending.sort();
    assert_eq!(
        pending,
        vec![
            path(source.root(), "1.1.1.2"),
            path(source.root(), "4.1.1.1")
        ]
    );
    let second = PostgresIndex::open(PostgresConfig::new(&database.url, "second"))
        .await
        .expect("a second node");
    assert!(second.begin_session().await.expect("session").was_clean);

    // New rows get ids after the copied ones.
    let new = new_instance(
        attributes(&[
            "P9", "NEW^ONE", "9.1", "20250101", "NEW", "9.1.1", "CT", "1", "9.1.1.1", CT, "1",
        ]),
        path(source.root(), "9.1.1.1"),
    );
    assert_eq!(
        postgres
            .insert(new, OnDuplicate::Fail)
            .await
            .expect("a new instance"),
        Inserted::New
    );
    let counts = postgres.counts().await.expect("counts");
    assert_eq!(
        (counts.patients, counts.studies, counts.instances),
        (4, 5, 8)
    );
    postgres.close().await.expect("closed");
    second.close().await.expect("closed");
    sqlite.close().await.expect("closed");
}

#[tokio::test]
async fn a_database_that_holds_an_index_is_refused_and_a_failed_copy_leaves_nothing() {
    let Some(source) = sqlite_fixture().await else {
        return;
    };
    let sqlite_path = source.sqlite.clone().expect("an SQLite file");

    // An index with a NUL in an identifying value cannot go into PostgreSQL: the copy fails
    // after the first tables went in, and none of them is left.
    let broken = TestIndex::new(Backend::Sqlite).await.expect("SQLite");
    for row in &ROWS[..4] {
        let new = new_instance(attributes(row), path(broken.root(), row[8]));
        broken
            .index
            .insert(new, OnDuplicate::Fail)
            .await
            .expect("inserted");
    }
    let row = [
        "P\0X", "NUL^ID", "5.1", "", "", "5.1.1", "CT", "", "5.1.1.1", CT, "",
    ];
    let new = new_instance(attributes(&row), path(broken.root(), row[8]));
    broken
        .index
        .insert(new, OnDuplicate::Fail)
        .await
        .expect("inserted in SQLite");
    broken.index.close().await.expect("closed");
    let database = TestDatabase::new().await.expect("a database");
    let error = copy_from_sqlite(
        broken.sqlite.as_deref().expect("file"),
        &database.url,
        |_| {},
    )
    .await
    .expect_err("a NUL in a Patient ID");
    assert!(matches!(error, IndexError::Unindexable { .. }), "{error}");
    let client = database.client().await;
    for table in COPIED_TABLES {
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(rows, 0, "{table} after a failed copy");
    }

    // Into the same database, now that it is still empty, the good index goes; a second copy
    // is refused and changes nothing.
    let report = copy_from_sqlite(&sqlite_path, &database.url, |_| {})
        .await
        .expect("copied");
    assert_eq!(report.rows("instance"), 7);
    let error = copy_from_sqlite(&sqlite_path, &database.url, |_| {})
        .await
        .expect_err("the database holds an index");
    assert!(
        error
            .to_string()
            .contains("holds an index already (7 instances"),
        "{error}"
    );
    let instances: i64 = client
        .query_one("SELECT count(*) FROM instance", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(instances, 7);

    // Not an index at all.
    let empty = source.root().join("empty.sqlite");
    rusqlite::Connection::open(&empty).expect("an empty database");
    let other = TestDatabase::new().await.expect("a database");
    let error = copy_from_sqlite(&empty, &other.url, |_| {})
        .await
        .expect_err("schema version 0");
    assert!(error.to_string().contains("not a dimsum index"), "{error}");
}
