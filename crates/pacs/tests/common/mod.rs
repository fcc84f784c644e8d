//! Shared helpers for the archive tests: data elements, SOP class UIDs, a server on a free
//! loopback port and an association to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::query_model::{QueryModel, QueryService};
use dimsum_net::scp::Dispatcher;
use dimsum_net::ul::negotiation::AssociationRequest;
use dimsum_net::{Association, Limits, Server, ServerConfig, ServerStatistics, Timeouts};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::postgres::create_database;
use dimsum_pacs::index::{
    FileLocation, Index, IndexError, NewInstance, PostgresConfig, PostgresIndex, SqliteConfig,
    SqliteIndex,
};

pub const EXPLICIT: &str = "1.2.840.10008.1.2.1";
pub const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
pub const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// `tag` with `value`, or empty (a universal key) when `value` is empty.
pub fn element(tag: Tag, vr: VR, value: &str) -> InMemElement {
    if value.is_empty() {
        DataElement::empty(tag, vr)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(value))
    }
}

/// The value of `tag` in `object` as text; panics when it is missing.
pub fn text(object: &InMemDicomObject, tag: Tag) -> String {
    object
        .get(tag)
        .unwrap_or_else(|| panic!("no {tag} in {object:?}"))
        .to_str()
        .expect("text")
        .into_owned()
}

/// The sorted values of `tag` in `found`.
pub fn sorted_values(found: &[InMemDicomObject], tag: Tag) -> Vec<String> {
    let mut values: Vec<String> = found.iter().map(|object| text(object, tag)).collect();
    values.sort();
    values
}

/// An instance to index from `attributes` alone (no file needed): its SOP Class and Instance
/// UIDs are theirs, in Explicit VR Little Endian, said to be a file of 1132 bytes at `path`.
pub fn new_instance(attributes: InMemDicomObject, path: PathBuf) -> NewInstance {
    NewInstance {
        sop_class_uid: text(&attributes, tags::SOP_CLASS_UID),
        sop_instance_uid: text(&attributes, tags::SOP_INSTANCE_UID),
        transfer_syntax_uid: EXPLICIT.into(),
        location: FileLocation {
            path,
            data_set_offset: 132,
            data_set_length: 1000,
            file_size: 1132,
            modified_ns: 1,
        },
        attributes,
    }
}

/// The keys of a test instance at every level, from which [`TestInstance::attributes`] makes
/// its data set (PS3.4 C.6.1.1: the patient, study, series and instance keys the index columns
/// hold); an empty value is an empty element.
#[derive(Debug, Clone, Copy)]
pub struct TestInstance<'a> {
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub study: &'a str,
    pub study_date: &'a str,
    pub study_time: &'a str,
    pub accession: &'a str,
    pub study_description: &'a str,
    pub series: &'a str,
    pub modality: &'a str,
    pub series_number: &'a str,
    pub sop: &'a str,
    pub sop_class: &'a str,
    pub instance_number: &'a str,
}

impl TestInstance<'_> {
    /// Its keys in UTF-8, with a referring physician, a birth date and a sex of its patient.
    pub fn attributes(&self) -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
            element(tags::SOP_CLASS_UID, VR::UI, self.sop_class),
            element(tags::SOP_INSTANCE_UID, VR::UI, self.sop),
            element(tags::STUDY_DATE, VR::DA, self.study_date),
            element(tags::STUDY_TIME, VR::TM, self.study_time),
            element(tags::ACCESSION_NUMBER, VR::SH, self.accession),
            element(tags::MODALITY, VR::CS, self.modality),
            element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "SMITH^ANN"),
            element(tags::STUDY_DESCRIPTION, VR::LO, self.study_description),
            element(tags::PATIENT_NAME, VR::PN, self.patient_name),
            element(tags::PATIENT_ID, VR::LO, self.patient_id),
            element(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
            element(tags::PATIENT_SEX, VR::CS, "O"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, self.study),
            element(tags::SERIES_INSTANCE_UID, VR::UI, self.series),
            element(tags::SERIES_NUMBER, VR::IS, self.series_number),
            element(tags::INSTANCE_NUMBER, VR::IS, self.instance_number),
        ])
    }
}

/// A C-FIND plan on `model` at `level` with `keys`.
pub fn find_plan(model: QueryModel, level: &str, keys: Vec<InMemElement>) -> QueryPlan {
    let mut object = InMemDicomObject::from_element_iter(keys);
    object.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
    QueryPlan::new(model, QueryService::Find, object).expect("plan")
}

/// Everything `index` answers to `plan` with at most `limit` matches, the stream read to its
/// end (within 10 s).
pub async fn query_all(
    index: &dyn Index,
    plan: QueryPlan,
    limit: Option<usize>,
) -> Vec<Result<InMemDicomObject, IndexError>> {
    let stream = index.query(plan, limit).await.expect("query");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the query ends")
}

/// The matches of `plan` in `index` (no result limit), each one expected to be a match.
pub async fn matches(index: &dyn Index, plan: QueryPlan) -> Vec<InMemDicomObject> {
    query_all(index, plan, None)
        .await
        .into_iter()
        .map(|found| found.expect("a match"))
        .collect()
}

/// Explicit VR Little Endian alone, as the transfer syntaxes of a context.
pub fn explicit() -> Vec<String> {
    vec![EXPLICIT.into()]
}

/// A server on a free loopback port, and the task that runs it.
pub struct TestServer {
    pub address: SocketAddr,
    pub handle: dimsum_net::ServerHandle,
    pub task: JoinHandle<ServerStatistics>,
}

impl TestServer {
    /// Serves `dispatcher` as `ae_title`, with the default timers and a short shutdown grace.
    pub async fn start(ae_title: &str, dispatcher: Dispatcher) -> TestServer {
        let config = ServerConfig {
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::new(ae_title)
        };
        let server = Server::bind("127.0.0.1:0", config, dispatcher)
            .await
            .expect("bind");
        TestServer {
            address: server.local_addr().expect("address"),
            handle: server.handle(),
            task: tokio::spawn(server.run()),
        }
    }

    /// Shuts the server down and waits up to `patience` for its task to end.
    pub async fn stop(self, patience: Duration) -> ServerStatistics {
        self.handle.shutdown();
        tokio::time::timeout(patience, self.task)
            .await
            .expect("server stopped in time")
            .expect("server task")
    }

    /// Opens an association with `request`, waiting up to `patience`.
    pub async fn connect(&self, request: &AssociationRequest, patience: Duration) -> Association {
        tokio::time::timeout(
            patience,
            Association::connect(
                &self.address.to_string(),
                request,
                Timeouts::default(),
                Limits::default(),
            ),
        )
        .await
        .expect("association in time")
        .expect("association accepted")
    }
}

/// The index backends every index test runs on: one suite, two back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server of the tests (`DIMSUM_TEST_POSTGRES`), or `None` to skip: unset, a
/// test skips with a message, unless `DIMSUM_REQUIRE_PEERS=1`, which makes it fail.
pub fn postgres_server() -> Option<String> {
    match std::env::var("DIMSUM_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("DIMSUM_REQUIRE_PEERS").as_deref() != Ok("1"),
                "DIMSUM_TEST_POSTGRES is not set and DIMSUM_REQUIRE_PEERS=1: give the URL of a \
                 PostgreSQL server (scripts/postgres start prints one)"
            );
            eprintln!("SKIP: DIMSUM_TEST_POSTGRES is not set");
            None
        }
    }
}

/// A new database on the test server, dropped (with its connections) when the value goes.
pub struct TestDatabase {
    pub server: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A fresh database; `None` when the tests have no PostgreSQL server (skip).
    pub async fn new() -> Option<TestDatabase> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = postgres_server()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let name = format!(
            "dimsum_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let url = create_database(&server, &name)
            .await
            .expect("a test database");
        Some(TestDatabase { server, name, url })
    }

    /// A connection of the test's own to the database (its task spawned).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // On a thread with a runtime of its own: drop cannot wait for the test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
        });
        if let Ok(Err(error)) = dropped.join() {
            eprintln!("test database {} not dropped: {error}", self.name);
        }
    }
}

/// A new, empty index on a backend, with the temporary folder its files are said to be in.
pub struct TestIndex {
    pub backend: Backend,
    pub folder: tempfile::TempDir,
    pub index: Arc<dyn Index>,
    /// The SQLite file, or the PostgreSQL database.
    pub sqlite: Option<PathBuf>,
    pub postgres: Option<TestDatabase>,
}

impl TestIndex {
    /// A new index on `backend` with its default configuration; `None`: skip the test.
    pub async fn new(backend: Backend) -> Option<TestIndex> {
        Self::with(backend, |_| {}, |_| {}).await
    }

    /// A new index on `backend`, its configuration changed by the function of its backend.
    pub async fn with(
        backend: Backend,
        sqlite: impl FnOnce(&mut SqliteConfig),
        postgres: impl FnOnce(&mut PostgresConfig),
    ) -> Option<TestIndex> {
        let folder = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => {
                let path = folder.path().join("index.sqlite");
                let mut config = SqliteConfig::new(&path);
                sqlite(&mut config);
                let index = SqliteIndex::open(config).await.expect("index");
                Some(TestIndex {
                    backend,
                    folder,
                    index: Arc::new(index),
                    sqlite: Some(path),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let database = TestDatabase::new().await?;
                let mut config = PostgresConfig::new(&database.url, "test");
                postgres(&mut config);
                let index = PostgresIndex::open(config).await.expect("index");
                Some(TestIndex {
                    backend,
                    folder,
                    index: Arc::new(index),
                    sqlite: None,
                    postgres: Some(database),
                })
            }
        }
    }

    pub fn root(&self) -> &Path {
        self.folder.path()
    }

    /// The same database opened again (after [`Index::close`]).
    pub async fn reopen(&self) -> Result<Arc<dyn Index>, IndexError> {
        Ok(match (&self.sqlite, &self.postgres) {
            (Some(path), _) => Arc::new(SqliteIndex::open(SqliteConfig::new(path)).await?),
            (_, Some(database)) => {
                Arc::new(PostgresIndex::open(PostgresConfig::new(&database.url, "test")).await?)
            }
            _ => unreachable!("an index has a database"),
        })
    }

    /// Writes schema version `version` into the database, as a newer dimsum would.
    pub async fn set_schema_version(&self, version: i64) {
        if let Some(path) = &self.sqlite {
            let connection = rusqlite::Connection::open(path).expect("open");
            connection
                .execute_batch(&format!("PRAGMA user_version = {version}"))
                .expect("version");
        }
        if let Some(database) = &self.postgres {
            database
                .client()
                .await
                .execute("UPDATE dimsum_schema SET version = $1", &[&version])
                .await
                .expect("version");
        }
    }

    /// Another connection that keeps the writer from committing (reads go on) until
    /// [`WriterBlock::release`].
    pub async fn block_writer(&self) -> WriterBlock {
        if let Some(path) = &self.sqlite {
            let blocker = rusqlite::Connection::open(path).expect("open");
            blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
            return WriterBlock::Sqlite(blocker);
        }
        let database = self.postgres.as_ref().expect("a database");
        let client = database.client().await;
        // Every insert deletes from pending_removal: it waits; reads of other tables do not.
        client
            .batch_execute("BEGIN; LOCK TABLE pending_removal IN EXCLUSIVE MODE")
            .await
            .expect("lock");
        WriterBlock::Postgres(client)
    }
}

/// What [`TestIndex::block_writer`] holds.
pub enum WriterBlock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl WriterBlock {
    pub async fn release(self) {
        match self {
            WriterBlock::Sqlite(connection) => connection.execute_batch("COMMIT").expect("unlock"),
            WriterBlock::Postgres(client) => client.batch_execute("COMMIT").await.expect("unlock"),
        }
    }
}

/// One `#[tokio::test]` per backend for each test body `name(backend: Backend)` listed:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}
