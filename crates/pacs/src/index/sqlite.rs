//! The embedded index: SQLite (bundled, so every machine runs the same version) in WAL mode,
//! one writer and parallel readers.
//!
//! * **One writer thread** owns the only writing connection. Inserts, deletes and the session
//!   state reach it through a bounded channel (a full channel slows the stores down instead of
//!   queueing without end) and are committed in batches — group commit: a batch is what
//!   arrived while the previous one committed, up to [`SqliteConfig::max_batch`] operations or
//!   [`SqliteConfig::max_batch_time`] — each operation in a savepoint of its own, so one that
//!   fails does not undo the others. A batch of inserts answered early (nobody awaits their
//!   commit) is kept open for more for [`SqliteConfig::linger`], unless someone waits for the
//!   writer (a read for them, an awaited operation, a queue half full): a serial sender's
//!   stores share a transaction instead of writing the same pages to the WAL once each. Each
//!   operation's future resolves once its batch committed: before that, no reader sees it.
//! * **Readers** run on tokio's blocking pool, each on a connection of its own (kept in a small
//!   pool): at most [`SqliteConfig::readers`] streaming queries at once, and as many short
//!   reads (lookups, counts, retrievals) beside them, so that queries whose matches a slow peer
//!   takes one by one never hold up the lookups of the stores. A query reads the database cursor and
//!   sends each match through a small bounded channel as it is found; dropping the stream
//!   (C-CANCEL, a closed association) stops it at the next match. WAL lets readers run while
//!   the writer commits.
//! * **SQL** is built only from the fixed names of the schema; every value from a query or a
//!   data set is a bound parameter. Wild card patterns use GLOB, which is case-sensitive as
//!   C.2.2.2.4 is and for which `%` and `_` are plain characters (`[` is escaped); UID lists
//!   are one JSON array parameter read with `json_each`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::scan::ScanLimits;
use dimsum_net::storage::BoxFuture;

use crate::folder::IndexCounts;
use crate::hierarchy::{Level, QueryPlan};

use super::counts::{CountWrite, Counts};
use super::prepared::{EntityRow, PreparedInstance, path_text};
use super::schema;
use super::sql::{
    Dialect, Param, QueryRun, indexed_instance, insert_row_sql, instance_location_columns,
    instance_record, instance_records_sql, instances_after_sql, retrieval_sql,
};
use super::writer::{Batches, Done, Linger, Operation, ParentIds, Reply, WriteOp, WriterHandle};
use super::{
    DeleteTarget, Deleted, EntityUids, Index, IndexError, IndexedInstance, Inserted,
    InstanceRecord, OnCommit, OnDuplicate, RecordStream, ResponseStream, SessionStart,
};
/// Matches found ahead of the consumer of a query.
const MATCHES_AHEAD: usize = 16;
/// WAL pages after which a checkpoint is asked for (16 MiB of 4 KiB pages; SQLite's default is
/// 1,000): the pages that every commit rewrites (series and study rows, index leaves) are then
/// copied back once per 4,000 pages instead of four times.
const CHECKPOINT_PAGES: i32 = 4000;
/// Instance records read ahead of the consumer of [`Index::instance_records`].
const RECORDS_AHEAD: usize = 32;

/// How a [`SqliteIndex`] is set up.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (created with its folder if missing).
    pub path: PathBuf,
    /// The most operations one transaction commits.
    pub max_batch: usize,
    /// The longest the writer gathers operations for one transaction.
    pub max_batch_time: Duration,
    /// Streaming queries that may run at once, each on its own connection (short reads have as
    /// many connections again).
    pub readers: usize,
    /// `synchronous = FULL`: each commit survives a power cut (with fsync'ed files). The
    /// default, `NORMAL`, survives a crash of the process, which is what WAL guarantees there.
    pub full_sync: bool,
    /// Limits for reading stored records back (they pass the hardened scanner).
    pub limits: ScanLimits,
    /// How long a connection waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// How long the writer keeps a transaction of inserts answered early
    /// ([`Index::hand_over_then`]) open for more before committing it (zero: commit what has
    /// arrived at once). Someone waiting for the writer (a read for them, an awaited
    /// operation, a queue half full) ends it at once.
    pub linger: Duration,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_batch: 512,
            max_batch_time: Duration::from_millis(50),
            readers: 8,
            full_sync: false,
            limits: ScanLimits::default(),
            busy_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(20),
        }
    }
}

/// The SQLite index (see the module documentation). Cloning is cheap; the clones share the
/// writer and the readers.
#[derive(Clone)]
pub struct SqliteIndex {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    /// The writer's queue and the inserts handed over ([`Index::hand_over`]), which reads
    /// wait for.
    writer: WriterHandle,
    thread: Mutex<Option<JoinHandle<()>>>,
    idle_readers: Mutex<Vec<Connection>>,
    /// Streaming queries.
    query_permits: Arc<Semaphore>,
    /// Short reads.
    reader_permits: Arc<Semaphore>,
}

impl std::fmt::Debug for SqliteIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteIndex")
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

impl SqliteIndex {
    /// Opens (creating or migrating) the database and starts the writer; the work runs on
    /// tokio's blocking pool.
    pub async fn open(config: SqliteConfig) -> Result<SqliteIndex, IndexError> {
        tokio::task::spawn_blocking(move || SqliteIndex::open_blocking(config))
            .await
            .map_err(|error| IndexError::Task(error.to_string()))?
    }

    /// [`SqliteIndex::open`] on the calling thread (which may block).
    pub fn open_blocking(config: SqliteConfig) -> Result<SqliteIndex, IndexError> {
        let open_error = |source| IndexError::Open {
            path: config.path.clone(),
            source,
        };
        if let Some(folder) = config.path.parent()
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder).map_err(|error| IndexError::Open {
                path: config.path.clone(),
                source: rusqlite::Error::InvalidPath(PathBuf::from(format!(
                    "{}: {error}",
                    folder.display()
                ))),
            })?;
        }
        let mut connection = Connection::open(&config.path).map_err(open_error)?;
        connection
            .busy_timeout(config.busy_timeout)
            .map_err(open_error)?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(
                "{}: the index is in journal mode {mode}, not WAL",
                config.path.display()
            );
        }
        let synchronous = if config.full_sync { "FULL" } else { "NORMAL" };
        connection
            .execute_batch(&format!(
                "PRAGMA synchronous = {synchronous}; PRAGMA cache_size = -32768;"
            ))
            .map_err(open_error)?;
        match schema::migrate(&mut connection).map_err(open_error)? {
            Ok(()) => {}
            Err(found) => {
                return Err(IndexError::NewerSchema {
                    database: config.path.display().to_string(),
                    found,
                    known: schema::SCHEMA_VERSION,
                });
            }
        }
        // Checkpoints (copying the WAL back into the database, with its fsyncs) run on a
        // thread of their own, asked for by the WAL hook once the log holds CHECKPOINT_PAGES
        // pages, instead of inside whichever commit crossed that size on the writer.
        let (checkpoint_wanted, checkpoint_requests) = std::sync::mpsc::sync_channel(1);
        connection
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                if pages >= CHECKPOINT_PAGES {
                    let _ = checkpoint_wanted.try_send(());
                }
                Ok(())
            }))
            .map_err(open_error)?;
        let (writer, operations) = WriterHandle::new();
        let linger = Linger {
            time: config.linger,
            hand_overs: writer.hand_overs(),
        };
        let writer_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("dimsum-index-writer".into())
            .spawn(move || {
                let checkpointer = start_checkpointer(&writer_config, checkpoint_requests);
                run_writer(connection, operations, linger, &writer_config);
                // The writer's connection (and the hook's sender with it) is gone: the
                // checkpointer runs a last checkpoint and ends.
                if let Some(checkpointer) = checkpointer {
                    let _ = checkpointer.join();
                }
            })
            .map_err(|error| IndexError::Task(format!("cannot start the writer: {error}")))?;
        let readers = config.readers.max(1);
        Ok(SqliteIndex {
            inner: Arc::new(Inner {
                config,
                writer,
                thread: Mutex::new(Some(thread)),
                idle_readers: Mutex::new(Vec::new()),
                query_permits: Arc::new(Semaphore::new(readers)),
                reader_permits: Arc::new(Semaphore::new(readers)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.config.path
    }

    /// Stops the writer once what it was given is committed, and waits for it. Later writes
    /// fail with [`IndexError::WriterGone`]; reads go on.
    pub async fn close(&self) -> Result<(), IndexError> {
        self.inner.writer.stop().await;
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|error| IndexError::Task(error.to_string()))?
                .map_err(|_| IndexError::Task("the index writer panicked".into()))?;
        }
        Ok(())
    }

    /// Runs `read` on a reader connection on the blocking pool, once the inserts handed over
    /// before it are committed.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection, &SqliteConfig) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        self.inner.writer.settle().await;
        self.read_committed(read).await
    }

    /// Runs `read` on a reader connection on the blocking pool, once the inserts handed over
    /// before it are committed, as a stream: `read` hands each item to its `send` (false once
    /// the stream is dropped: it stops), at most `ahead` items ahead of the consumer; an error
    /// of `read` ends the stream. Holds a query permit while it reads.
    async fn stream_read<T, R>(
        &self,
        ahead: usize,
        read: R,
    ) -> Result<impl futures_util::Stream<Item = Result<T, IndexError>> + Send + 'static, IndexError>
    where
        T: Send + 'static,
        R: FnOnce(
                &Connection,
                &SqliteConfig,
                &mut dyn FnMut(Result<T, IndexError>) -> bool,
            ) -> Result<(), IndexError>
            + Send
            + 'static,
    {
        self.inner.writer.settle().await;
        let permit = self
            .inner
            .query_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| IndexError::Task("the index readers are closed".into()))?;
        let (sender, receiver) = mpsc::channel(ahead);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = inner.with_reader(|connection| {
                read(connection, &inner.config, &mut |item| {
                    sender.blocking_send(item).is_ok()
                })
            });
            if let Err(error) = outcome {
                let _ = sender.blocking_send(Err(error));
            }
            drop(permit);
        });
        Ok(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        ))
    }

    /// Runs `read` on a reader connection on the blocking pool, on what is committed now.
    async fn read_committed<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection, &SqliteConfig) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let permit = self
            .inner
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| IndexError::Task("the index readers are closed".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = inner.with_reader(|connection| read(connection, &inner.config));
            drop(permit);
            result
        })
        .await
        .map_err(|error| IndexError::Task(error.to_string()))?
    }
}

impl Inner {
    /// Runs `read` on an idle reader connection (or a new one), then keeps the connection.
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let connection = match idle {
            Some(connection) => connection,
            None => open_reader(&self.config)?,
        };
        let result = read(&connection);
        let mut idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < 2 * self.config.readers.max(1) {
            idle.push(connection);
        }
        result
    }
}

fn open_reader(config: &SqliteConfig) -> Result<Connection, IndexError> {
    let open_error = |source| IndexError::Open {
        path: config.path.clone(),
        source,
    };
    let connection = Connection::open(&config.path).map_err(open_error)?;
    connection
        .busy_timeout(config.busy_timeout)
        .map_err(open_error)?;
    connection
        .execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -16384;")
        .map_err(open_error)?;
    Ok(connection)
}

// ------------------------------------------------------------------------------------------
// The writer
// ------------------------------------------------------------------------------------------

/// The checkpointer thread: a passive checkpoint (PRAGMA wal_checkpoint(PASSIVE)) on a
/// connection of its own each time the writer's WAL hook asks, and a last one when the writer
/// is gone. Passive checkpoints never wait for the writer or the readers: what they cannot copy
/// yet, the next one does. `None` (autocheckpoints left off, logged) if it cannot start.
fn start_checkpointer(
    config: &SqliteConfig,
    requests: std::sync::mpsc::Receiver<()>,
) -> Option<JoinHandle<()>> {
    let checkpoint = |connection: &Connection| {
        if let Err(error) =
            connection.wal_checkpoint_v2(Some("main"), rusqlite::wal::CheckpointMode::PASSIVE)
        {
            warn!("index: a checkpoint failed: {error}");
        }
    };
    // Reading the journal mode opens the database file, in WAL mode, before the first request.
    let opened = Connection::open(&config.path).and_then(|connection| {
        connection.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))?;
        Ok(connection)
    });
    let connection = match opened {
        Ok(connection) => connection,
        Err(error) => {
            warn!("index: no checkpointer, the WAL will grow: {error}");
            return None;
        }
    };
    let started = std::thread::Builder::new()
        .name("dimsum-index-checkpointer".into())
        .spawn(move || {
            while requests.recv().is_ok() {
                checkpoint(&connection);
            }
            checkpoint(&connection);
        });
    match started {
        Ok(thread) => Some(thread),
        Err(error) => {
            warn!("index: no checkpointer, the WAL will grow: {error}");
            None
        }
    }
}

/// The writer thread: gathers a batch, applies each operation in a savepoint, commits, answers.
fn run_writer(
    mut connection: Connection,
    operations: mpsc::Receiver<WriteOp>,
    linger: Linger,
    config: &SqliteConfig,
) {
    let mut state = WriterState::new();
    let mut batches =
        Batches::new(operations, config.max_batch, config.max_batch_time).with_linger(linger);
    while let Some(batch) = batches.next_blocking() {
        let count = batch.len();
        commit_batch(&mut connection, &mut state, batch);
        debug!("index: committed {count} operations");
    }
}

fn commit_batch(connection: &mut Connection, state: &mut WriterState, batch: Vec<WriteOp>) {
    let mut replies = Vec::with_capacity(batch.len());
    // Held until the transaction is over and answered (dropped at the end of this function).
    let mut marks = Vec::new();
    let outcome = (|| -> Result<(), IndexError> {
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // What the batch's inserts add to the rows above them, written once at its end (or
        // before an operation that removes rows: it reads and lowers them).
        let mut counts = Counts::default();
        for WriteOp {
            operation,
            reply,
            mark,
        } in batch
        {
            marks.extend(mark);
            let existing = match &operation {
                Operation::Insert(prepared, _) => existing_instance(&transaction, prepared),
                _ => Ok(None),
            };
            let removes_rows = match &operation {
                Operation::Delete(_) => true,
                Operation::Insert(_, OnDuplicate::Replace) => matches!(existing, Ok(Some(_))),
                _ => false,
            };
            if removes_rows && !counts.is_empty() {
                write_counts(&transaction, &mut counts)?;
            }
            // Each operation in a savepoint of its own (statements prepared once, not parsed
            // for every operation as rusqlite's savepoints are).
            transaction
                .prepare_cached("SAVEPOINT operation")?
                .execute([])?;
            let mut own = Counts::default();
            let result = apply(&transaction, state, &mut own, operation, existing);
            if result.is_ok() {
                counts.add(own);
            } else {
                // What it did is undone: so is what the writer remembered meanwhile.
                state.forget_parents();
                transaction
                    .prepare_cached("ROLLBACK TO operation")?
                    .execute([])?;
            }
            transaction
                .prepare_cached("RELEASE operation")?
                .execute([])?;
            replies.push((reply, result));
        }
        write_counts(&transaction, &mut counts)?;
        transaction.commit()?;
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            for (reply, result) in replies {
                reply.send(result);
            }
        }
        Err(error) => {
            warn!("index: a transaction failed: {error}");
            state.forget_parents();
            state.pending_removals_possible = true;
            for (reply, _) in replies {
                reply.send(Err(IndexError::Task(format!(
                    "the index transaction failed: {error}"
                ))));
            }
        }
    }
}

/// What the writer thread keeps between operations: the rows of recently stored series (an
/// instance of a series it knows needs no lookup of its parents) and whether any file may be
/// waiting in `pending_removal`. The parents are forgotten whenever an operation or a
/// transaction fails and whenever a delete or a replacement may have removed rows.
struct WriterState {
    /// Series Instance UID → the Study Instance UID it was stored with and the rows' ids.
    parents: HashMap<String, (String, ParentIds)>,
    pending_removals_possible: bool,
}

/// Series the writer remembers at most (a few hundred KiB).
const PARENTS_REMEMBERED: usize = 4096;

impl WriterState {
    fn new() -> Self {
        Self {
            parents: HashMap::new(),
            pending_removals_possible: true,
        }
    }

    /// The rows of a series stored before under the same study, if the writer remembers it.
    fn known_parents(&self, study_uid: &str, series_uid: &str) -> Option<ParentIds> {
        let (known_study, ids) = self.parents.get(series_uid)?;
        (known_study == study_uid).then_some(ParentIds {
            new_study: false,
            new_series: false,
            ..*ids
        })
    }

    fn remember_parents(&mut self, study_uid: &str, series_uid: &str, ids: &ParentIds) {
        if self.parents.len() >= PARENTS_REMEMBERED {
            self.parents.clear();
        }
        self.parents
            .insert(series_uid.to_owned(), (study_uid.to_owned(), *ids));
    }

    fn forget_parents(&mut self) {
        self.parents.clear();
    }
}

/// Writes a batch's counts (which it forgets).
fn write_counts(transaction: &Connection, counts: &mut Counts) -> Result<(), IndexError> {
    for write in counts.writes(Dialect::Sqlite) {
        match write {
            CountWrite::Statement(text, params) => {
                transaction
                    .prepare_cached(&text)?
                    .execute(params_from_iter(params.iter()))?;
            }
            CountWrite::RefreshModalities(study_id) => refresh_modalities(transaction, study_id)?,
            CountWrite::RefreshSopClasses(study_id) => refresh_sop_classes(transaction, study_id)?,
        }
    }
    Ok(())
}

/// The row of an instance with the SOP Instance UID of `prepared`, if there is one.
fn existing_instance(
    transaction: &Connection,
    prepared: &PreparedInstance,
) -> Result<Option<i64>, IndexError> {
    Ok(transaction
        .prepare_cached("SELECT id FROM instance WHERE sop_instance_uid = ?")?
        .query_row([&prepared.sop_instance_uid], |row| row.get(0))
        .optional()?)
}

/// Applies one operation; an insert comes with the answer of its look-up
/// ([`existing_instance`]) and adds to `counts`.
fn apply(
    transaction: &Connection,
    state: &mut WriterState,
    counts: &mut Counts,
    operation: Operation,
    existing: Result<Option<i64>, IndexError>,
) -> Result<Done, IndexError> {
    match operation {
        Operation::Insert(prepared, on_duplicate) => insert(
            transaction,
            state,
            counts,
            &prepared,
            on_duplicate,
            existing?,
        )
        .map(Done::Inserted),
        Operation::Delete(target) => {
            state.forget_parents();
            delete(transaction, &target).map(Done::Deleted)
        }
        Operation::FilesRemoved(files) => {
            let mut statement =
                transaction.prepare_cached("DELETE FROM pending_removal WHERE path = ?")?;
            for file in files {
                statement.execute([path_text(&file)?])?;
            }
            Ok(Done::Nothing)
        }
        Operation::BeginSession => {
            let was_clean: Option<i64> = transaction
                .query_row(
                    "SELECT value FROM archive_state WHERE name = 'clean'",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            transaction.execute(
                "INSERT OR REPLACE INTO archive_state (name, value) VALUES ('clean', 0)",
                [],
            )?;
            let mut statement = transaction.prepare("SELECT path FROM pending_removal")?;
            let pending_removals = statement
                .query_map([], |row| row.get::<_, String>(0))?
                .map(|path| path.map(PathBuf::from))
                .collect::<Result<Vec<_>, _>>()?;
            state.pending_removals_possible = !pending_removals.is_empty();
            Ok(Done::Session(SessionStart {
                was_clean: was_clean.is_none_or(|clean| clean != 0),
                pending_removals,
            }))
        }
        Operation::MarkClean => {
            transaction.execute(
                "INSERT OR REPLACE INTO archive_state (name, value) VALUES ('clean', 1)",
                [],
            )?;
            Ok(Done::Nothing)
        }
        Operation::Close => Ok(Done::Nothing),
    }
}

/// Inserts an entity row with its extra columns (parent, location…); returns its id.
fn insert_row(
    transaction: &Connection,
    level: Level,
    row: (&EntityRow, &str),
    extra: Vec<(&str, Param)>,
) -> Result<i64, IndexError> {
    let (sql, _) = insert_row_sql(Dialect::Sqlite, level, row, extra)?;
    transaction
        .prepare_cached(&sql.text)?
        .execute(params_from_iter(sql.params.iter()))?;
    Ok(transaction.last_insert_rowid())
}

/// The ids of an instance's patient, study and series rows, created when missing.
fn find_or_create_parents(
    transaction: &Connection,
    prepared: &PreparedInstance,
    study_uid: &str,
    series_uid: &str,
) -> Result<ParentIds, IndexError> {
    let uid = prepared.sop_instance_uid.as_str();
    let found_study: Option<(i64, i64)> = transaction
        .prepare_cached("SELECT id, patient FROM study WHERE study_instance_uid = ?")?
        .query_row([study_uid], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (mut patient_id, mut study_id, new_study) = match found_study {
        Some((study_id, patient_id)) => (patient_id, study_id, false),
        None => {
            let [patient, study, _] = prepared.parent_rows();
            let patient_key = (
                patient.text("patient_id").unwrap_or_default(),
                patient.text("issuer_of_patient_id").unwrap_or_default(),
            );
            let found_patient: Option<i64> = transaction
                .prepare_cached(
                    "SELECT id FROM patient WHERE patient_id = ? AND issuer_of_patient_id = ?",
                )?
                .query_row([patient_key.0, patient_key.1], |row| row.get(0))
                .optional()?;
            let patient_id = match found_patient {
                Some(id) => id,
                None => insert_row(transaction, Level::Patient, (patient, uid), Vec::new())?,
            };
            let study_id = insert_row(
                transaction,
                Level::Study,
                (study, uid),
                vec![("patient", Param::Integer(patient_id))],
            )?;
            (patient_id, study_id, true)
        }
    };
    let found_series: Option<(i64, i64)> = transaction
        .prepare_cached("SELECT id, study FROM series WHERE series_instance_uid = ?")?
        .query_row([series_uid], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (series_id, new_series) = match found_series {
        Some((series_id, owner)) => {
            if owner != study_id {
                warn!(
                    "instance {}: series {series_uid} belongs to another study than {study_uid}; filed under that one",
                    prepared.sop_instance_uid
                );
                study_id = owner;
                patient_id = transaction
                    .prepare_cached("SELECT patient FROM study WHERE id = ?")?
                    .query_row([owner], |row| row.get(0))?;
            }
            (series_id, false)
        }
        None => (
            insert_row(
                transaction,
                Level::Series,
                (&prepared.parent_rows()[2], uid),
                vec![("study", Param::Integer(study_id))],
            )?,
            true,
        ),
    };
    Ok(ParentIds {
        patient_id,
        study_id,
        series_id,
        new_study,
        new_series,
    })
}

/// Inserts an instance (its parents created when missing); `existing` is the row already
/// there with its SOP Instance UID. Adds what it counts to `counts`.
fn insert(
    transaction: &Connection,
    state: &mut WriterState,
    counts: &mut Counts,
    prepared: &PreparedInstance,
    on_duplicate: OnDuplicate,
    existing: Option<i64>,
) -> Result<Inserted, IndexError> {
    let uid = prepared.sop_instance_uid.as_str();
    let new_path = path_text(&prepared.location.path)?;
    let mut replaced = None;
    if let Some(existing) = existing {
        match on_duplicate {
            OnDuplicate::Keep => return Ok(Inserted::AlreadyPresent),
            OnDuplicate::Fail => {
                return Err(IndexError::Duplicate(prepared.sop_instance_uid.clone()));
            }
            OnDuplicate::Replace => {
                // Its series, study and patient may go with it.
                state.forget_parents();
                let old = remove_instance(transaction, existing)?;
                replaced = Some((old.to_str() != Some(new_path)).then_some(old));
            }
        }
    }

    let study_uid = prepared.study_instance_uid.as_str();
    let series_uid = prepared.series_instance_uid.as_str();
    let parents = match state.known_parents(study_uid, series_uid) {
        Some(known) => known,
        None => {
            let found = find_or_create_parents(transaction, prepared, study_uid, series_uid)?;
            state.remember_parents(study_uid, series_uid, &found);
            found
        }
    };
    insert_row(
        transaction,
        Level::Image,
        (&prepared.instance, uid),
        instance_location_columns(prepared, parents.series_id, new_path)?,
    )?;
    // The computed keys above it, written with the batch's.
    counts.instance(parents, &prepared.sop_class_uid);
    if state.pending_removals_possible {
        transaction
            .prepare_cached("DELETE FROM pending_removal WHERE path = ?")?
            .execute([new_path])?;
    }
    match replaced {
        None => Ok(Inserted::New),
        Some(old_file) => {
            if let Some(old) = &old_file {
                state.pending_removals_possible = true;
                transaction
                    .prepare_cached("INSERT OR IGNORE INTO pending_removal (path) VALUES (?)")?
                    .execute([path_text(old)?])?;
            }
            Ok(Inserted::Replaced { old_file })
        }
    }
}

/// Removes one instance row and maintains everything above it (entities left empty go too);
/// returns its file.
fn remove_instance(transaction: &Connection, id: i64) -> Result<PathBuf, IndexError> {
    let (path, series_id, sop_class, study_id, patient_id): (String, i64, String, i64, i64) =
        transaction
            .prepare_cached(
                "SELECT i.path, i.series, i.sop_class_uid, se.study, st.patient
                 FROM instance i JOIN series se ON se.id = i.series
                 JOIN study st ON st.id = se.study WHERE i.id = ?",
            )?
            .query_row([id], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?;
    transaction
        .prepare_cached("DELETE FROM instance WHERE id = ?")?
        .execute([id])?;
    let series_left: i64 = transaction
        .prepare_cached(
            "UPDATE series SET number_of_instances = number_of_instances - 1 WHERE id = ?
             RETURNING number_of_instances",
        )?
        .query_row([series_id], |row| row.get(0))?;
    let series_gone = series_left <= 0;
    if series_gone {
        transaction
            .prepare_cached("DELETE FROM series WHERE id = ?")?
            .execute([series_id])?;
    }
    let studies_series: i64 = transaction
        .prepare_cached(
            "UPDATE study SET number_of_instances = number_of_instances - 1,
                number_of_series = number_of_series - ? WHERE id = ?
             RETURNING number_of_series",
        )?
        .query_row([i64::from(series_gone), study_id], |row| row.get(0))?;
    let class_left: i64 = transaction
        .prepare_cached(
            "UPDATE study_sop_class SET instances = instances - 1
             WHERE study = ? AND sop_class_uid = ? RETURNING instances",
        )?
        .query_row(params![study_id, sop_class], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let study_gone = studies_series <= 0;
    if study_gone {
        transaction
            .prepare_cached("DELETE FROM study_sop_class WHERE study = ?")?
            .execute([study_id])?;
        transaction
            .prepare_cached("DELETE FROM study WHERE id = ?")?
            .execute([study_id])?;
    } else {
        if class_left <= 0 {
            transaction
                .prepare_cached(
                    "DELETE FROM study_sop_class WHERE study = ? AND sop_class_uid = ?",
                )?
                .execute(params![study_id, sop_class])?;
            refresh_sop_classes(transaction, study_id)?;
        }
        if series_gone {
            refresh_modalities(transaction, study_id)?;
        }
    }
    let patient_studies: i64 = transaction
        .prepare_cached(
            "UPDATE patient SET number_of_instances = number_of_instances - 1,
                number_of_series = number_of_series - ?,
                number_of_studies = number_of_studies - ? WHERE id = ?
             RETURNING number_of_studies",
        )?
        .query_row(
            [i64::from(series_gone), i64::from(study_gone), patient_id],
            |row| row.get(0),
        )?;
    if patient_studies <= 0 {
        transaction
            .prepare_cached("DELETE FROM patient WHERE id = ?")?
            .execute([patient_id])?;
    }
    Ok(PathBuf::from(path))
}

/// Modalities In Study: the distinct modalities of the study's series.
fn refresh_modalities(transaction: &Connection, study_id: i64) -> Result<(), IndexError> {
    let mut modalities = BTreeSet::new();
    {
        let mut statement = transaction.prepare_cached(
            "SELECT modality FROM series WHERE study = ? AND modality IS NOT NULL",
        )?;
        let mut rows = statement.query([study_id])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(0)?;
            modalities.extend(
                text.split('\\')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty()),
            );
        }
    }
    let joined = modalities.into_iter().collect::<Vec<_>>().join("\\");
    transaction
        .prepare_cached("UPDATE study SET modalities_in_study = ? WHERE id = ?")?
        .execute(params![joined, study_id])?;
    Ok(())
}

/// SOP Classes In Study: the SOP classes of the study's instances (written only when they
/// changed).
fn refresh_sop_classes(transaction: &Connection, study_id: i64) -> Result<(), IndexError> {
    let classes: Vec<String> = transaction
        .prepare_cached(
            "SELECT sop_class_uid FROM study_sop_class WHERE study = ? ORDER BY sop_class_uid",
        )?
        .query_map([study_id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    transaction
        .prepare_cached(
            "UPDATE study SET sop_classes_in_study = ?1 WHERE id = ?2
             AND sop_classes_in_study IS NOT ?1",
        )?
        .execute(params![classes.join("\\"), study_id])?;
    Ok(())
}

fn delete(transaction: &Connection, target: &DeleteTarget) -> Result<Deleted, IndexError> {
    let (condition, uid) = match target {
        DeleteTarget::Study(uid) => ("st.study_instance_uid = ?", uid),
        DeleteTarget::Series(uid) => ("se.series_instance_uid = ?", uid),
        DeleteTarget::Instance(uid) => ("i.sop_instance_uid = ?", uid),
    };
    let ids: Vec<i64> = transaction
        .prepare_cached(&format!(
            "SELECT i.id FROM instance i JOIN series se ON se.id = i.series
             JOIN study st ON st.id = se.study WHERE {condition}"
        ))?
        .query_map([uid], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut deleted = Deleted::default();
    for id in ids {
        let path = remove_instance(transaction, id)?;
        transaction
            .prepare_cached("INSERT OR IGNORE INTO pending_removal (path) VALUES (?)")?
            .execute([path_text(&path)?])?;
        deleted.files.push(path);
        deleted.instances += 1;
    }
    Ok(deleted)
}

// ------------------------------------------------------------------------------------------
// Reading (the SQL and the matching are shared with the other backends: super::sql)
// ------------------------------------------------------------------------------------------

/// Runs a query, giving each response to `send` (which says whether to go on).
fn run_query(
    connection: &Connection,
    plan: &QueryPlan,
    limit: Option<usize>,
    limits: &ScanLimits,
    mut send: impl FnMut(Result<InMemDicomObject, IndexError>) -> bool,
) -> Result<(), IndexError> {
    let (mut run, sql) = QueryRun::new(Dialect::Sqlite, plan, limit, limits);
    debug!("index query: {}", sql.text);
    let mut statement = connection.prepare_cached(&sql.text)?;
    let mut rows = statement.query(params_from_iter(sql.params.iter()))?;
    while let Some(row) = rows.next()? {
        let Some(chain) = run.candidate(row)? else {
            continue;
        };
        if !descendant_passes(connection, &mut run, chain.0)? {
            continue;
        }
        let answer = run.answer(&chain);
        let last = answer.is_err();
        if !send(answer) || last {
            return Ok(());
        }
    }
    Ok(())
}

/// Whether the entity `id` of a candidate has a descendant that passes the keys below the
/// plan's level (always, for a hierarchical query).
fn descendant_passes(
    connection: &Connection,
    run: &mut QueryRun<'_>,
    id: i64,
) -> Result<bool, IndexError> {
    let Some(sql) = run.descendant_rows(id) else {
        return Ok(true);
    };
    let mut statement = connection.prepare_cached(&sql.text)?;
    let mut rows = statement.query(params_from_iter(sql.params.iter()))?;
    while let Some(row) = rows.next()? {
        if run.descendant_passes(row)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`INSTANCE_COLUMNS`] read from the instance table alone, its study and series UIDs by
/// subqueries: SQLite prepares a join whose WHERE term is a bound parameter again each time the
/// parameter changes, a single-table statement only once — this one runs before every store.
const INSTANCE_COLUMNS_BY_SUBQUERY: &str = "i.sop_class_uid, i.sop_instance_uid,
    i.transfer_syntax_uid,
    (SELECT st.study_instance_uid FROM series se JOIN study st ON st.id = se.study
        WHERE se.id = i.series),
    (SELECT se.series_instance_uid FROM series se WHERE se.id = i.series),
    i.path, i.data_set_offset, i.data_set_length, i.file_size, i.file_modified_ns";

fn retrieval_instances(
    connection: &Connection,
    plan: &QueryPlan,
    limits: &ScanLimits,
) -> Result<Vec<IndexedInstance>, IndexError> {
    let transaction = connection.unchecked_transaction()?;
    let mut entities = Vec::new();
    {
        let (mut run, sql) = QueryRun::new(Dialect::Sqlite, plan, None, limits);
        let mut statement = transaction.prepare_cached(&sql.text)?;
        let mut rows = statement.query(params_from_iter(sql.params.iter()))?;
        while let Some(row) = rows.next()? {
            if let Some((id, _)) = run.candidate(row)?
                && descendant_passes(&transaction, &mut run, id)?
            {
                entities.push(id);
            }
        }
    }
    let mut statement =
        transaction.prepare_cached(&retrieval_sql(Dialect::Sqlite, plan.level()))?;
    let mut instances = Vec::new();
    for id in entities {
        let mut rows = statement.query([id])?;
        while let Some(row) = rows.next()? {
            instances.push(indexed_instance(row)?);
        }
    }
    Ok(instances)
}

/// Reads the instances of `entity` with their records, in the order of
/// [`Index::instance_records`], giving each to `send` (which says whether to go on).
/// The instance with this SOP Instance UID, as the connection sees the index.
fn lookup_instance(
    connection: &Connection,
    sop_instance_uid: String,
) -> Result<Option<IndexedInstance>, IndexError> {
    connection
        .prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS_BY_SUBQUERY} FROM instance i WHERE i.sop_instance_uid = ?"
        ))?
        .query_row([sop_instance_uid], |row| Ok(indexed_instance(row)))
        .optional()?
        .transpose()
}

fn read_instance_records(
    connection: &Connection,
    entity: &EntityUids,
    limits: &ScanLimits,
    mut send: impl FnMut(Result<InstanceRecord, IndexError>) -> bool,
) -> Result<(), IndexError> {
    let sql = instance_records_sql(Dialect::Sqlite, entity);
    let mut statement = connection.prepare_cached(&sql.text)?;
    let mut rows = statement.query(params_from_iter(sql.params.iter()))?;
    while let Some(row) = rows.next()? {
        let record = instance_record(row, limits);
        let failed = record.is_err();
        if !send(record) || failed {
            return Ok(());
        }
    }
    Ok(())
}

impl Index for SqliteIndex {
    fn hand_over(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'static, Result<Inserted, IndexError>> {
        self.inner.writer.hand_over(instance, on_duplicate)
    }

    /// [`Index::hand_over`] whose writer thread calls `then` right after the commit.
    fn hand_over_then(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
        then: OnCommit,
    ) {
        self.inner
            .writer
            .queue_insert(instance, on_duplicate, Reply::Then(then));
    }

    fn query(
        &self,
        plan: QueryPlan,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<ResponseStream, IndexError>> {
        Box::pin(async move {
            let stream = self
                .stream_read(MATCHES_AHEAD, move |connection, config, send| {
                    run_query(connection, &plan, limit, &config.limits, send)
                })
                .await?;
            Ok(Box::pin(stream) as ResponseStream)
        })
    }

    fn instances(
        &self,
        plan: QueryPlan,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>> {
        Box::pin(
            self.read(move |connection, config| {
                retrieval_instances(connection, &plan, &config.limits)
            }),
        )
    }

    fn instance_records(
        &self,
        entity: EntityUids,
    ) -> BoxFuture<'_, Result<RecordStream, IndexError>> {
        Box::pin(async move {
            let stream = self
                .stream_read(RECORDS_AHEAD, move |connection, config, send| {
                    read_instance_records(connection, &entity, &config.limits, send)
                })
                .await?;
            Ok(Box::pin(stream) as RecordStream)
        })
    }

    fn lookup(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>> {
        Box::pin(async move {
            self.inner.writer.settle().await;
            self.lookup_committed(sop_instance_uid).await
        })
    }

    fn lookup_committed(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>> {
        Box::pin(
            self.read_committed(move |connection, _| lookup_instance(connection, sop_instance_uid)),
        )
    }

    /// The look-up on the calling thread, on a reader connection of the pool, within the
    /// short reads' permits.
    fn lookup_committed_blocking(
        &self,
        sop_instance_uid: String,
    ) -> Result<Option<IndexedInstance>, IndexError> {
        let permits = &self.inner.reader_permits;
        let permit = match permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::runtime::Handle::current()
                .block_on(permits.acquire())
                .map_err(|_| IndexError::Task("the index readers are closed".into()))?,
        };
        let found = self
            .inner
            .with_reader(|connection| lookup_instance(connection, sop_instance_uid));
        drop(permit);
        found
    }

    fn delete(&self, target: DeleteTarget) -> BoxFuture<'_, Result<Deleted, IndexError>> {
        Box::pin(self.inner.writer.delete(target))
    }

    fn files_removed(&self, files: Vec<PathBuf>) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(self.inner.writer.files_removed(files))
    }

    fn counts(&self) -> BoxFuture<'_, Result<IndexCounts, IndexError>> {
        Box::pin(self.read(|connection, _| {
            let count = |table: &str| -> Result<usize, IndexError> {
                let n: i64 =
                    connection.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                        row.get(0)
                    })?;
                Ok(usize::try_from(n).unwrap_or(0))
            };
            Ok(IndexCounts {
                patients: count("patient")?,
                studies: count("study")?,
                series: count("series")?,
                instances: count("instance")?,
                skipped_files: 0,
            })
        }))
    }

    fn instances_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>> {
        Box::pin(self.read(move |connection, _| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut statement = connection.prepare_cached(&instances_after_sql(Dialect::Sqlite))?;
            let mut rows = statement.query(params![after.unwrap_or_default(), limit])?;
            let mut instances = Vec::new();
            while let Some(row) = rows.next()? {
                instances.push(indexed_instance(row)?);
            }
            Ok(instances)
        }))
    }

    fn begin_session(&self) -> BoxFuture<'_, Result<SessionStart, IndexError>> {
        Box::pin(self.inner.writer.begin_session())
    }

    fn mark_clean(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(self.inner.writer.mark_clean())
    }

    fn close(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(SqliteIndex::close(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::query::Narrowing;
    use crate::index::sql::{Param, candidates_sql};
    use dimsum_dataset::dicom_core::{DataElement, VR};
    use dimsum_dataset::dicom_dictionary_std::tags;
    use dimsum_dataset::query_model::{QueryModel, QueryService};

    #[test]
    fn values_from_a_query_only_ever_reach_sql_as_bound_parameters() {
        let hostile = "x'); DROP TABLE study; --";
        let keys = InMemDicomObject::from_element_iter([
            DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, format!("{hostile}*")),
            DataElement::new(tags::ACCESSION_NUMBER, VR::SH, hostile),
            DataElement::new(tags::STUDY_DATE, VR::DA, "20240101-"),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, format!("1.2\\{hostile}")),
            DataElement::new(tags::MODALITIES_IN_STUDY, VR::CS, hostile),
            DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, format!("[{hostile}]?")),
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, "7"),
        ]);
        let plan = QueryPlan::new(QueryModel::StudyRoot, QueryService::Find, keys).expect("plan");
        let sql = candidates_sql(Dialect::Sqlite, plan.level(), &Narrowing::of(&plan), None);
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert!(!sql.text.contains("2024"), "{}", sql.text);
        assert_eq!(
            sql.text.matches('?').count(),
            sql.params.len(),
            "{}",
            sql.text
        );
        assert!(sql.params.contains(&Param::Text(format!("[[]{hostile}]?"))));
        assert!(sql.params.contains(&Param::Real(7.0)));
        // The statement is valid SQL against the schema.
        let mut connection = Connection::open_in_memory().expect("open");
        schema::migrate(&mut connection)
            .expect("migrated")
            .expect("version");
        let mut statement = connection.prepare(&sql.text).expect("prepared");
        let mut rows = statement
            .query(params_from_iter(sql.params.iter()))
            .expect("ran");
        assert!(rows.next().expect("read").is_none());
    }
}
