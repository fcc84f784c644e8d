//! The archive's index: what is stored, where, and its attributes, so that every query and
//! retrieval is answered without opening files (PS3.4 Annex C: the Query/Retrieve information
//! models; C.6.1.1 for the levels and their computed keys).
//!
//! [`Index`] is the boundary between the archive and its database. Its callers — the C-FIND,
//! C-GET and C-MOVE handlers of [`crate::archive::Archive`], its storage path, Storage
//! Commitment — never see SQL; a backend answers with the help of the shared query engine
//! ([`query`]): it narrows its candidates with the engine's [`query::Narrowing`] (typed columns,
//! in its own SQL dialect, with bound parameters only), then lets [`crate::hierarchy::QueryPlan`]
//! check every key on the stored attributes and build each response, so results are exactly
//! those of the matching engine whatever the database. [`SqliteIndex`] is the embedded backend;
//! [`PostgresIndex`] keeps the index on a PostgreSQL server that several archives ("nodes")
//! share. Both write their SQL through [`sql`] (one copy of the query logic, in each one's
//! dialect) and their tables through [`schema`].
//!
//! Each instance is kept with its file location and its complete attribute set without bulk
//! data ([`record`]); each patient, study and series with the attributes of its level (from the
//! first instance that created it) and its computed keys (Number of … Related …, Modalities In
//! Study, SOP Classes In Study), maintained as instances come and go.

pub(crate) mod counts;
pub(crate) mod hand_over;
pub mod postgres;
pub mod prepared;
pub mod query;
pub mod record;
pub(crate) mod relational;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub(crate) mod writer;

pub use postgres::{PostgresConfig, PostgresIndex};
pub use prepared::PreparedInstance;
pub use sqlite::{SqliteConfig, SqliteIndex};

use std::path::PathBuf;
use std::pin::Pin;

use futures_util::Stream;

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_net::scp::{InstanceData, RetrieveInstance};
use dimsum_net::storage::BoxFuture;

use crate::folder::IndexCounts;
use crate::hierarchy::QueryPlan;

/// Why the index could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot open the index database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the index database failed: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database (a file, or a PostgreSQL URL without its password) was written by a newer
    /// dimsum.
    #[error(
        "the index {database} has schema version {found}, newer than the {known} this dimsum knows: use a newer dimsum"
    )]
    NewerSchema {
        database: String,
        found: i64,
        known: i64,
    },
    /// The PostgreSQL server cannot be reached (or refused the connection), at `url` (its
    /// password left out).
    #[error("cannot connect to the PostgreSQL index {url}: {reason}")]
    PostgresConnect { url: String, reason: String },
    /// A PostgreSQL statement or connection failed (the server's message, and its SQLSTATE
    /// when it sent one).
    #[error("the PostgreSQL index failed: {0}")]
    Postgres(String),
    /// A query found more matches than the result limit allows (the stream ends with it, after
    /// `limit` matches).
    #[error("more than {limit} matches: narrow the query")]
    TooManyMatches { limit: usize },
    #[error("instance {0} is already in the index")]
    Duplicate(String),
    #[error("the attributes of instance {sop_instance_uid} cannot be indexed: {reason}")]
    Unindexable {
        sop_instance_uid: String,
        reason: String,
    },
    #[error("stored attributes in the index cannot be read ({what}): {reason}")]
    Corrupt { what: String, reason: String },
    #[error("the index writer has stopped")]
    WriterGone,
    #[error("an index task failed: {0}")]
    Task(String),
}

/// Where an instance's data set is: its Part 10 file and the range of the data set in it,
/// with the file's size and modification time as they were when it was indexed (so that a
/// check after a crash can tell a file that changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLocation {
    pub path: PathBuf,
    /// Offset of the data set in the file (after the File Meta Information).
    pub data_set_offset: u64,
    pub data_set_length: u64,
    pub file_size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: i64,
}

/// An instance to index: its identity (PS3.3 C.12.1), its file, and its attributes (those
/// before the Pixel Data; bulk data is left out when it is stored, see [`record`]). When the
/// instance has a top-level Pixel Data, Float Pixel Data or Double Float Pixel Data element,
/// the attributes should hold it too, with its VR and, to spare decoding it, an empty value:
/// the record keeps where it is ([`record::BulkElement`]) so that WADO-RS metadata can point to
/// it.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub location: FileLocation,
    pub attributes: InMemDicomObject,
}

/// What to do when the SOP Instance UID is in the index already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Leave the indexed instance: [`Inserted::AlreadyPresent`].
    Keep,
    /// Replace it (its file is returned for removal unless it is the new one's).
    Replace,
    /// [`IndexError::Duplicate`].
    Fail,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The instance is new.
    New,
    /// It replaced an instance with the same SOP Instance UID, whose file (when it is not the
    /// new instance's) the caller removes.
    Replaced { old_file: Option<PathBuf> },
    /// It was there already and was kept ([`OnDuplicate::Keep`]).
    AlreadyPresent,
}

/// An indexed instance: what a retrieval sends and a Storage Commitment checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub location: FileLocation,
}

impl IndexedInstance {
    /// The C-STORE sub-operation of a C-GET or C-MOVE that sends it.
    pub fn to_retrieve(&self) -> RetrieveInstance {
        RetrieveInstance {
            sop_class_uid: self.sop_class_uid.clone(),
            sop_instance_uid: self.sop_instance_uid.clone(),
            transfer_syntax_uid: self.transfer_syntax_uid.clone(),
            data: InstanceData::File {
                path: self.location.path.clone(),
                offset: self.location.data_set_offset,
                length: self.location.data_set_length,
            },
        }
    }
}

/// An instance with its stored record (what WADO-RS metadata, PS3.18 10.4.1.1.4, is answered
/// from): every attribute without bulk data, and where each bulk element was.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub instance: IndexedInstance,
    /// The attributes without bulk data ([`record::split_bulk_data`]).
    pub attributes: InMemDicomObject,
    /// The bulk elements left out, in data set order; none for a record written by a version
    /// that did not keep them.
    pub bulk_data: Vec<record::BulkElement>,
}

/// A study, a series of it, or an instance of that series, by its UIDs (the entity of a
/// WADO-RS resource, PS3.18 10.4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityUids {
    pub study: String,
    /// With `study`: a series of that study.
    pub series: Option<String>,
    /// With `series`: an instance of that series.
    pub instance: Option<String>,
}

/// The instances of an entity with their records, in order ([`Index::instance_records`]),
/// read as the stream is polled; dropping it stops the reading.
pub type RecordStream = Pin<Box<dyn Stream<Item = Result<InstanceRecord, IndexError>> + Send>>;

/// What follows the commit of an insert handed over with [`Index::hand_over_then`]: called
/// once with the outcome, on whatever thread finished the insert (a writer thread: it must be
/// quick and must not block). One dropped uncalled (its insert dropped with a writer that
/// stopped) is called with [`IndexError::WriterGone`], so that an outcome is never lost.
pub struct OnCommit(Option<CommitCallback>);

type CommitCallback = Box<dyn FnOnce(Result<Inserted, IndexError>) + Send>;

impl OnCommit {
    pub fn new(then: impl FnOnce(Result<Inserted, IndexError>) + Send + 'static) -> Self {
        Self(Some(Box::new(then)))
    }

    /// Calls it with the insert's outcome.
    pub fn call(mut self, outcome: Result<Inserted, IndexError>) {
        if let Some(then) = self.0.take() {
            then(outcome);
        }
    }
}

impl Drop for OnCommit {
    fn drop(&mut self) {
        if let Some(then) = self.0.take() {
            then(Err(IndexError::WriterGone));
        }
    }
}

impl std::fmt::Debug for OnCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnCommit")
            .field("called", &self.0.is_none())
            .finish()
    }
}

/// What to delete: an entity and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    Study(String),
    Series(String),
    Instance(String),
}

/// What a delete removed from the index: the instances, and their files, which the caller
/// removes ([`Index::files_removed`] once done). The files stay listed in the index as pending
/// removal until then, so a crash in between cannot bring them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    pub instances: usize,
    pub files: Vec<PathBuf>,
}

/// The state kept across runs for crash recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStart {
    /// Whether the previous run marked the index clean when it closed (no store in flight).
    pub was_clean: bool,
    /// Files whose rows were deleted and that may not be removed yet.
    pub pending_removals: Vec<PathBuf>,
}

/// The matches of a query as response identifiers, produced as the database cursor advances;
/// dropping the stream stops the search. After the result limit it ends with
/// [`IndexError::TooManyMatches`].
pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<InMemDicomObject, IndexError>> + Send>>;

/// The archive's index (see the module documentation). Every method does its blocking work off
/// the async workers: the futures only wait for it.
pub trait Index: Send + Sync + 'static {
    /// Indexes an instance; its future resolves once the transaction that holds it committed
    /// (before that, no query sees it).
    fn insert(
        &self,
        instance: NewInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'_, Result<Inserted, IndexError>> {
        Box::pin(async move {
            let prepared = tokio::task::spawn_blocking(move || PreparedInstance::new(instance))
                .await
                .map_err(|error| IndexError::Task(error.to_string()))??;
            self.insert_prepared(prepared, on_duplicate).await
        })
    }

    /// [`Index::insert`] of an instance prepared already (by the thread that stored its file,
    /// which has it in hand: one hand-off fewer per store).
    fn insert_prepared(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'_, Result<Inserted, IndexError>> {
        self.hand_over(instance, on_duplicate)
    }

    /// Hands a prepared instance over to be indexed, and returns at once a future that
    /// resolves once it is committed (or failed). From the moment this returns, every read of
    /// the index (queries, look-ups, retrievals, records, counts) waits until the instance is
    /// committed or failed before it reads: whoever was told the instance is stored finds it.
    /// The store path answers its peer on this promise, without waiting for the commit.
    /// Writes (deletes) are not ordered after it: the archive makes them wait for the stores in
    /// flight. Call it within a tokio runtime.
    fn hand_over(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'static, Result<Inserted, IndexError>>;

    /// [`Index::hand_over`], with `then` called once the insert is committed or failed instead
    /// of a future to await: a backend with a writer thread calls it there, right after the
    /// commit (so it must be quick and must not block), sparing the caller a task and a
    /// wake-up per store. Every guarantee of [`Index::hand_over`] holds from the moment this
    /// returns. The default awaits [`Index::hand_over`] on a task. Call it within a tokio
    /// runtime (a blocking task of its pool will do).
    fn hand_over_then(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
        then: OnCommit,
    ) {
        let committed = self.hand_over(instance, on_duplicate);
        tokio::spawn(async move { then.call(committed.await) });
    }

    /// The response identifiers of a hierarchical query, at most `limit` of them (`None`: no
    /// limit) before the stream ends with [`IndexError::TooManyMatches`].
    fn query(
        &self,
        plan: QueryPlan,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<ResponseStream, IndexError>>;

    /// Every instance at or below the entities that match a C-GET or C-MOVE.
    fn instances(&self, plan: QueryPlan)
    -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>>;

    /// The instances of `entity` (none when it is not indexed, or an instance or series is not
    /// under the study and series given) with their stored records: the series in Series
    /// Number order, each one's instances in Instance Number order (those without a number
    /// after those with one, then in the order they were indexed).
    fn instance_records(
        &self,
        entity: EntityUids,
    ) -> BoxFuture<'_, Result<RecordStream, IndexError>>;

    /// The instance with this SOP Instance UID, if it is indexed.
    fn lookup(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>>;

    /// [`Index::lookup`] of what is committed now, without waiting for the instances handed
    /// over ([`Index::hand_over`]): the duplicate check of a store, which holds the lock of its
    /// SOP Instance UID (so that no store of the same UID is in flight) and must not wait for
    /// the commits of other instances.
    fn lookup_committed(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>>;

    /// [`Index::lookup_committed`] on the calling thread, which may block: the store path calls
    /// it from the blocking task that writes a small instance's file, so that the look-up costs
    /// no hand-off of its own. The default runs [`Index::lookup_committed`] to completion on
    /// the current tokio runtime: call it from a blocking task of that runtime, never from
    /// async code.
    fn lookup_committed_blocking(
        &self,
        sop_instance_uid: String,
    ) -> Result<Option<IndexedInstance>, IndexError> {
        tokio::runtime::Handle::current().block_on(self.lookup_committed(sop_instance_uid))
    }

    /// Deletes an entity and everything below it, maintaining the computed keys above it.
    fn delete(&self, target: DeleteTarget) -> BoxFuture<'_, Result<Deleted, IndexError>>;

    /// The files of a [`Deleted`] (or of a replaced instance) are gone: forget them.
    fn files_removed(&self, files: Vec<PathBuf>) -> BoxFuture<'_, Result<(), IndexError>>;

    /// How many patients, studies, series and instances are indexed.
    fn counts(&self) -> BoxFuture<'_, Result<IndexCounts, IndexError>>;

    /// Up to `limit` indexed instances whose SOP Instance UID sorts after `after`, in that
    /// order: a walk over the whole index in pages (to check it against the storage).
    fn instances_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>>;

    /// Starts a run: marks the index not clean until [`Index::mark_clean`], and says how the
    /// previous run ended.
    fn begin_session(&self) -> BoxFuture<'_, Result<SessionStart, IndexError>>;

    /// Marks the index clean: nothing is in flight, storage and index agree.
    fn mark_clean(&self) -> BoxFuture<'_, Result<(), IndexError>>;

    /// Finishes what was given to write and stops writing; reads may go on.
    fn close(&self) -> BoxFuture<'_, Result<(), IndexError>>;
}
