//! The archive behind `dimsum serve`: a data directory with the stored files and their index,
//! serving Storage (PS3.4 Annex B), Query/Retrieve (PS3.4 Annex C: C-FIND, C-GET, C-MOVE at
//! every level of the Patient Root, Study Root and Patient/Study Only models) and answering
//! whether an instance is stored (for Storage Commitment, PS3.4 Annex J).
//!
//! # Using it
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use dimsum_pacs::archive::{Archive, ArchiveConfig, DuplicatePolicy};
//! use dimsum_net::scp::{Dispatcher, FindScp, GetScp, MoveScp, StoreScp};
//!
//! let archive = Archive::open(
//!     ArchiveConfig::new("./dimsum-data")
//!         .with_duplicates(DuplicatePolicy::Replace)
//!         .with_destination("WORKSTATION", "10.0.0.7:104")
//!         .with_result_limit(Some(5000)),
//! )
//! .await?;
//! // Index a folder of files that were there before (they stay where they are).
//! archive.scan("/srv/old-images".as_ref(), |progress| eprintln!("{progress:?}")).await?;
//! // The archive is the storage of a StoreScp, and the handler of the Q/R SCPs.
//! let storage_classes: Vec<String> = vec!["1.2.840.10008.5.1.4.1.1.2".into()];
//! let syntaxes: Vec<String> = vec!["1.2.840.10008.1.2.1".into()];
//! let dispatcher = Dispatcher::new()
//!     .with(StoreScp::new(archive.clone(), storage_classes, syntaxes.clone()))
//!     .with(FindScp::new(archive.clone(), vec!["1.2.840.10008.5.1.4.1.2.2.1".into()], syntaxes.clone()))
//!     .with(MoveScp::new(archive.clone(), vec!["1.2.840.10008.5.1.4.1.2.2.2".into()], syntaxes));
//! # let _ = dispatcher;
//! // …serve; at the end:
//! println!("{:?} {:?}", archive.statistics(), archive.counts().await?);
//! archive.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The data directory
//!
//! * `storage/<Study Instance UID>/<Series Instance UID>/<SOP Instance UID>.dcm`: the Part 10
//!   files, written by [`FileStorage`] (a hidden temporary file linked into place when
//!   complete, never over another file: a second file of an instance, while the index decides
//!   which stays, is `<SOP Instance UID>.2.dcm`; UIDs made safe as file names);
//! * `index.sqlite` (with its `-wal` and `-shm`): the [`SqliteIndex`];
//! * `lock`: held while the archive is open, so two servers never share a directory.
//!
//! With its index on PostgreSQL ([`IndexBackend::Postgres`]), the index is in the database and
//! several archives ("nodes", each with its [`ArchiveConfig::node`] name) may share the
//! directory: each holds `lock.<node>`, names its temporary files `.<node>~….part` and removes
//! only its own, and answers each store once committed (the others find it at once).
//!
//! # Storing
//!
//! An instance is visible (found by C-FIND, sent by C-GET/C-MOVE, confirmed by Storage
//! Commitment) only once its file is complete and its index row committed. The C-STORE is
//! answered once the file is complete and the instance handed over to the index
//! ([`Index::hand_over`]): from then on every read of the index waits for its commit, so a peer
//! told it is stored finds it, while the commit overlaps the next store. With
//! [`ArchiveConfig::answer_after_commit`] (archives sharing an index) the answer waits for the
//! commit itself. A small instance (below [`dimsum_net::storage::BUFFER_BELOW`]) is written,
//! prepared for the index and handed over in one blocking call made on the association's own
//! thread once it has handed its other tasks on ([`run_blocking`]): its answer waits for no
//! thread to wake up.
//!
//! Stores of the same SOP Instance UID are taken one at a time (each holds the UID's lock until
//! its commit). One that arrives again is, by [`DuplicatePolicy`]: kept as it was (the peer is
//! told success; the new file is removed once the index has kept the first), replaced (the new
//! file and row replace the old, whose file is removed after the commit; a replacement that
//! fails leaves the old one), or refused with 0xA700 and a comment (looked up before anything
//! is kept). Keeping and replacing are decided by the index at the commit; a large instance is
//! looked up before it goes to disk, so that a kept-first duplicate is not written. A data set
//! whose SOP Instance UID differs from the command's, or that has no Study or Series Instance
//! UID, is refused (0xA900) and nothing of it is kept.
//!
//! # Crash safety
//!
//! The archive marks its index clean when it is closed ([`Archive::close`]) with no store in
//! flight. When it is opened and the previous run did not close cleanly (a kill, a crash, a
//! power cut), or when [`ArchiveConfig::check_on_open`] asks for it, index and storage are made
//! to agree before anything is served: temporary files are removed; a row whose file is gone is
//! deleted, one whose file changed is indexed again; a file of the storage without a row (its
//! store was cut off between the rename and the commit) is indexed, or removed when its SOP
//! Instance UID is indexed with another file (when the directory is shared, only once that file
//! is ten minutes old: another node may be replacing the instance with it). Files whose rows were deleted are listed in the
//! index until they are removed, so a crash in between never brings them back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use tokio::sync::{OwnedMutexGuard, OwnedRwLockReadGuard, RwLock};
use tracing::{debug, error, info, warn};

use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    FindHandler, FindMatch, MatchStream, MoveDestination, Query, Retrieval, RetrieveHandler,
    ScpFailure,
};
use dimsum_net::storage::{
    BoxFuture, FileStorage, FileWriter, Gathered, InstanceDescription, InstanceWriter, Layout,
    Storage, StoreFailure, StoreSuccess, StoredInstance, Written, run_blocking,
};

use crate::file::{self, FileError, Identity};
use crate::folder::{IndexCounts, encode_identifier};
use crate::hierarchy::QueryPlan;
use crate::index::postgres::{PostgresConfig, PostgresIndex};
use crate::index::record::RECORD_TRANSFER_SYNTAX;
use crate::index::{
    DeleteTarget, Deleted, FileLocation, Index, IndexError, IndexedInstance, Inserted, NewInstance,
    OnCommit, OnDuplicate, PreparedInstance, SqliteConfig, SqliteIndex,
};
use crate::matching::MatchOptions;

/// The folder of the files under the data directory.
pub const STORAGE_FOLDER: &str = "storage";
/// The index database under the data directory.
pub const INDEX_FILE: &str = "index.sqlite";
/// The lock file under the data directory.
pub const LOCK_FILE: &str = "lock";
/// The node name of an archive that is given none.
pub const DEFAULT_NODE: &str = "node";
/// The default most matches of one C-FIND.
pub const DEFAULT_RESULT_LIMIT: usize = 100_000;
/// How long after it was written a file without an index row may still be another node's
/// store in flight (a shared data directory): the check at open leaves such a file for later
/// when its instance is indexed with another file.
const SHARED_STORE_GRACE: std::time::Duration = std::time::Duration::from_secs(600);
/// Files read and indexed at once by [`Archive::scan`] and the check at open.
const SCAN_PARALLELISM: usize = 4;
/// Index rows read at once by the check at open.
const CHECK_PAGE: usize = 1000;

/// What a store does with a SOP Instance UID the archive holds already (in a configuration
/// file: `"keep-first"`, `"replace"` or `"reject"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicatePolicy {
    /// Keep the stored instance, read and drop the new one, and answer success.
    #[default]
    KeepFirst,
    /// Store the new one in place of the old.
    Replace,
    /// Refuse it: 0xA700 (PS3.4 Table B.2-1, Refused: Out of Resources) with a comment.
    Reject,
}

/// The C-MOVE destinations an archive knows (PS3.4 C.4.2.2.1: the Move Destination is an AE
/// title the SCP must know the address of) and how many associations a C-MOVE may open to one
/// at once. Held by [`ArchiveConfig`] and [`crate::FolderArchiveConfig`].
#[derive(Debug, Clone)]
pub struct MoveDestinations {
    /// AE title → "host:port".
    pub addresses: BTreeMap<String, String>,
    /// How many associations a C-MOVE may open to its destination at once (at least 1).
    pub associations: usize,
}

impl Default for MoveDestinations {
    fn default() -> Self {
        Self {
            addresses: BTreeMap::new(),
            associations: 1,
        }
    }
}

impl MoveDestinations {
    /// Adds a destination: `ae_title` is at `address` ("host:port").
    pub fn insert(&mut self, ae_title: impl Into<String>, address: impl Into<String>) {
        self.addresses.insert(ae_title.into(), address.into());
    }

    /// Sets how many associations a C-MOVE may open at once, kept between 1 and `most`.
    pub fn set_associations(&mut self, associations: usize, most: usize) {
        self.associations = associations.clamp(1, most.max(1));
    }

    /// The destination `ae_title` names, if it is known (an unknown one is answered 0xA801).
    pub fn get(&self, ae_title: &str) -> Option<MoveDestination> {
        crate::hierarchy::move_destination(&self.addresses, ae_title)
    }

    /// How many associations a C-MOVE may open to its destination at once (at least 1).
    pub fn associations(&self) -> usize {
        self.associations.max(1)
    }
}

/// How an [`Archive`] is set up.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The data directory: files under `storage/`, the index in `index.sqlite`.
    pub data_dir: PathBuf,
    pub duplicates: DuplicatePolicy,
    /// C-MOVE destinations, and how many associations a C-MOVE may open to one at once (1 to
    /// 16).
    pub move_destinations: MoveDestinations,
    /// The most matches one C-FIND returns before it ends with 0xA700 ("more than N matches");
    /// `None`: no limit.
    pub result_limit: Option<usize>,
    /// Optional matching rules (PN case).
    pub matching: MatchOptions,
    /// fsync each file and its folder before it is indexed, and commit the index durably
    /// (SQLite `synchronous = FULL`, PostgreSQL `synchronous_commit = on`): stored instances
    /// survive a power cut, at a cost in speed. Without it they survive a crash of the server
    /// process (and a restart of PostgreSQL), not of the machine.
    pub fsync: bool,
    /// Make index and storage agree at open even after a clean close.
    pub check_on_open: bool,
    /// Limits for the hardened scan of each file read.
    pub limits: ScanLimits,
    /// Where the index is: SQLite in the data directory, or a PostgreSQL database that several
    /// archives ("nodes") may share with the storage folder.
    pub index: IndexBackend,
    /// This archive's name among the nodes of a shared index: its lock file, its temporary
    /// files and its crash-recovery state are its own.
    pub node: String,
    /// Answer each C-STORE only once its index commit is done, and never let a file replace
    /// another: what several archives sharing the index and the storage folder need (another
    /// node's query finds an instance right after its store is answered; a second store of the
    /// same SOP Instance UID committed meanwhile by another node is answered by the duplicate
    /// policy). Off by default: a store is answered once handed over to the index, its commit
    /// overlapping the next store (see the module documentation).
    pub answer_after_commit: bool,
}

/// Where an archive's index is (see [`ArchiveConfig::index`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IndexBackend {
    /// The embedded SQLite index, `index.sqlite` in the data directory; the archive is the
    /// only one on its data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`postgres://USER@HOST:PORT/DATABASE`). Several archives may
    /// share it and the data directory: each store is answered once committed (so that every
    /// node finds it), files are never overwritten in place, and the check after a crash
    /// leaves alone what other nodes may be storing.
    Postgres { url: String },
}

impl ArchiveConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            index: IndexBackend::Sqlite,
            node: DEFAULT_NODE.to_owned(),
            answer_after_commit: false,
            data_dir: data_dir.into(),
            duplicates: DuplicatePolicy::default(),
            move_destinations: MoveDestinations::default(),
            result_limit: Some(DEFAULT_RESULT_LIMIT),
            matching: MatchOptions::default(),
            fsync: false,
            check_on_open: false,
            limits: ScanLimits::default(),
        }
    }

    pub fn with_duplicates(mut self, policy: DuplicatePolicy) -> Self {
        self.duplicates = policy;
        self
    }

    /// Adds a C-MOVE destination: `ae_title` is at `address` ("host:port").
    pub fn with_destination(
        mut self,
        ae_title: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        self.move_destinations.insert(ae_title, address);
        self
    }

    /// How many associations a C-MOVE may open to its destination at once (1 to 16).
    pub fn with_move_associations(mut self, associations: usize) -> Self {
        self.move_destinations.set_associations(associations, 16);
        self
    }

    pub fn with_result_limit(mut self, limit: Option<usize>) -> Self {
        self.result_limit = limit;
        self
    }

    pub fn with_matching(mut self, options: MatchOptions) -> Self {
        self.matching = options;
        self
    }

    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    pub fn with_check_on_open(mut self, check: bool) -> Self {
        self.check_on_open = check;
        self
    }

    /// See [`ArchiveConfig::answer_after_commit`].
    pub fn with_answer_after_commit(mut self, after_commit: bool) -> Self {
        self.answer_after_commit = after_commit;
        self
    }

    /// The index on PostgreSQL at `url`, shared with other nodes (see [`IndexBackend`]).
    pub fn with_postgres(mut self, url: impl Into<String>) -> Self {
        self.index = IndexBackend::Postgres { url: url.into() };
        self
    }

    /// This archive's node name (letters, digits, `-`, `_`, `.`).
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Whether `node` may name a node: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, not
    /// starting with `.` (it names files in the shared data directory).
    pub fn is_valid_node(node: &str) -> bool {
        (1..=64).contains(&node.len())
            && !node.starts_with('.')
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }

    /// Whether other archives may share the index and the storage folder.
    pub fn is_shared(&self) -> bool {
        matches!(self.index, IndexBackend::Postgres { .. })
    }

    /// The lock file that keeps a second archive of the same node off the data directory:
    /// `lock`, or `lock.<node>` when the directory is shared.
    pub fn lock_path(&self) -> PathBuf {
        if self.is_shared() {
            self.data_dir.join(format!("{LOCK_FILE}.{}", self.node))
        } else {
            self.data_dir.join(LOCK_FILE)
        }
    }

    /// The folder of the stored files.
    pub fn storage_root(&self) -> PathBuf {
        self.data_dir.join(STORAGE_FOLDER)
    }

    /// The index database.
    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join(INDEX_FILE)
    }
}

/// Why the archive could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("the data directory {0} is in use by another dimsum (its lock is held)")]
    Locked(PathBuf),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: no {name}, so the instance has no place in the patient/study/series tree")]
    MissingAttribute { path: PathBuf, name: &'static str },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("an archive task failed: {0}")]
    Task(String),
    #[error(
        "`{0}` is not a node name: 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`"
    )]
    InvalidNode(String),
}

/// What the archive did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStatistics {
    /// Instances stored (new or replacing another).
    pub stored: u64,
    /// Bytes of the data sets stored.
    pub stored_bytes: u64,
    /// Instances that replaced one with the same SOP Instance UID.
    pub replaced: u64,
    /// Instances that arrived again and were dropped (the first kept).
    pub duplicates_kept: u64,
    /// Instances that arrived again and were refused.
    pub duplicates_refused: u64,
    /// Stores that failed (refused data sets included).
    pub store_failures: u64,
    pub queries: u64,
    pub retrievals: u64,
    /// Instances indexed by [`Archive::scan`] and by the check at open.
    pub scanned: u64,
}

#[derive(Default)]
struct Counters {
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    replaced: AtomicU64,
    duplicates_kept: AtomicU64,
    duplicates_refused: AtomicU64,
    store_failures: AtomicU64,
    queries: AtomicU64,
    retrievals: AtomicU64,
    scanned: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// How far a [`Archive::scan`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProgress {
    /// Files looked at so far.
    pub done: usize,
    /// Files found.
    pub total: usize,
    /// The file just looked at.
    pub path: PathBuf,
}

/// What a [`Archive::scan`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub files: usize,
    /// Instances added to the index.
    pub indexed: usize,
    /// Instances whose SOP Instance UID was indexed already (the first kept).
    pub already_indexed: usize,
    /// Files that are not DICOM, are damaged, or lack the UIDs that place them.
    pub skipped: usize,
}

/// The archive (see the module documentation). Cloning is cheap: the clones share everything.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

struct Inner {
    config: ArchiveConfig,
    index: Arc<dyn Index>,
    files: FileStorage,
    /// Stores hold it shared; deletes and close exclusively (a delete never races a store of
    /// the same file).
    ingest: Arc<RwLock<()>>,
    /// One lock per SOP Instance UID being stored.
    uid_locks: Mutex<UidLocks>,
    counters: Counters,
    /// An instance was acknowledged whose commit then failed: its file is kept, and the archive
    /// is not marked clean at close, so that the next start indexes it.
    index_behind: AtomicBool,
    _lock: File,
}

/// The locks of the SOP Instance UIDs being stored, and the size at which the map is swept of
/// those nobody holds.
struct UidLocks {
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

impl UidLocks {
    const FIRST_SWEEP: usize = 64;
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Archive {
    /// Opens the data directory (creating it), its index ([`SqliteIndex`], or
    /// [`PostgresIndex`] as [`ArchiveConfig::index`] says) and, when the last run did not
    /// close cleanly, makes index and storage agree (see the module documentation).
    pub async fn open(mut config: ArchiveConfig) -> Result<Archive, Error> {
        // Other nodes cannot know what this one handed over: they find a store once committed.
        config.answer_after_commit |= config.is_shared();
        if !ArchiveConfig::is_valid_node(&config.node) {
            return Err(Error::InvalidNode(config.node));
        }
        let data_dir = config.data_dir.clone();
        let lock_path = config.lock_path();
        let lock_file = tokio::task::spawn_blocking(move || take_lock(&data_dir, &lock_path))
            .await
            .map_err(|error| Error::Task(error.to_string()))??;
        let index: Arc<dyn Index> = match &config.index {
            IndexBackend::Sqlite => {
                let mut sqlite = SqliteConfig::new(config.index_path());
                sqlite.full_sync = config.fsync;
                sqlite.limits = config.limits;
                Arc::new(SqliteIndex::open(sqlite).await?)
            }
            IndexBackend::Postgres { url } => {
                let mut postgres = PostgresConfig::new(url.clone(), config.node.clone());
                postgres.limits = config.limits;
                postgres.full_sync = config.fsync;
                Arc::new(PostgresIndex::open(postgres).await?)
            }
        };
        Archive::with_index(config, index, lock_file).await
    }

    /// The archive over another [`Index`] (a server database); `lock_file` is held open while
    /// the archive lives.
    pub async fn with_index(
        config: ArchiveConfig,
        index: Arc<dyn Index>,
        lock_file: File,
    ) -> Result<Archive, Error> {
        let files = file_storage(&config)?;
        let archive = Archive {
            inner: Arc::new(Inner {
                config,
                index,
                files,
                ingest: Arc::new(RwLock::new(())),
                uid_locks: Mutex::new(UidLocks {
                    locks: HashMap::new(),
                    sweep_at: UidLocks::FIRST_SWEEP,
                }),
                counters: Counters::default(),
                index_behind: AtomicBool::new(false),
                _lock: lock_file,
            }),
        };
        let session = archive.inner.index.begin_session().await?;
        archive.remove_files(session.pending_removals).await?;
        remove_temporary_files(&archive.inner.files).await?;
        if !session.was_clean || archive.inner.config.check_on_open {
            if !session.was_clean {
                warn!(
                    "{}: the archive was not closed cleanly; checking index and storage",
                    archive.inner.config.data_dir.display()
                );
            }
            archive.check().await?;
        }
        let counts = archive.counts().await?;
        info!(
            "archive {}: {} patients, {} studies, {} series, {} instances",
            archive.inner.config.data_dir.display(),
            counts.patients,
            counts.studies,
            counts.series,
            counts.instances
        );
        Ok(archive)
    }

    pub fn config(&self) -> &ArchiveConfig {
        &self.inner.config
    }

    /// The index, for what the archive does not wrap.
    pub fn index(&self) -> &Arc<dyn Index> {
        &self.inner.index
    }

    /// How many patients, studies, series and instances are stored.
    pub async fn counts(&self) -> Result<IndexCounts, Error> {
        Ok(self.inner.index.counts().await?)
    }

    pub fn statistics(&self) -> ArchiveStatistics {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ArchiveStatistics {
            stored: get(&c.stored),
            stored_bytes: get(&c.stored_bytes),
            replaced: get(&c.replaced),
            duplicates_kept: get(&c.duplicates_kept),
            duplicates_refused: get(&c.duplicates_refused),
            store_failures: get(&c.store_failures),
            queries: get(&c.queries),
            retrievals: get(&c.retrievals),
            scanned: get(&c.scanned),
        }
    }

    /// The stored instance with this SOP Instance UID (what Storage Commitment checks).
    pub async fn lookup(&self, sop_instance_uid: &str) -> Result<Option<IndexedInstance>, Error> {
        Ok(self
            .inner
            .index
            .lookup(sop_instance_uid.trim_end_matches(['\0', ' ']).to_owned())
            .await?)
    }

    /// Whether an instance with this SOP Instance UID is stored.
    pub async fn contains(&self, sop_instance_uid: &str) -> Result<bool, Error> {
        Ok(self.lookup(sop_instance_uid).await?.is_some())
    }

    /// Deletes a study, series or instance: rows and files together. Waits for the stores in
    /// flight to finish first.
    pub async fn delete(&self, target: DeleteTarget) -> Result<Deleted, Error> {
        let _exclusive = self.inner.ingest.write().await;
        let deleted = self.inner.index.delete(target).await?;
        self.remove_files(deleted.files.clone()).await?;
        Ok(deleted)
    }

    /// Waits until every store in flight is committed to the index and what follows its
    /// commit is done (the file of a replaced instance removed). Reads need not call it: they
    /// see every acknowledged store anyway ([`Index::hand_over`]).
    pub async fn settle(&self) {
        drop(self.inner.ingest.write().await);
    }

    /// Waits for the stores in flight, marks the index clean and closes it. The archive
    /// stores nothing more.
    pub async fn close(&self) -> Result<(), Error> {
        let _exclusive = self.inner.ingest.write().await;
        if self.inner.index_behind.load(Ordering::SeqCst) {
            warn!(
                "{}: stored files are missing from the index; the next start indexes them",
                self.inner.config.data_dir.display()
            );
        } else {
            self.inner.index.mark_clean().await?;
        }
        self.inner.index.close().await?;
        Ok(())
    }

    /// Indexes the Part 10 files under `dir` (recursively; hidden files left out) where they
    /// are: they are served from there, and deleting their study removes them. Instances whose
    /// SOP Instance UID is indexed already keep their first file. `progress` is called after
    /// each file.
    pub async fn scan(
        &self,
        dir: &Path,
        progress: impl Fn(&ScanProgress) + Send + Sync,
    ) -> Result<ScanReport, Error> {
        let root = dir.to_path_buf();
        let files = tokio::task::spawn_blocking(move || file::list_files(&root))
            .await
            .map_err(|error| Error::Task(error.to_string()))?
            .map_err(|source| Error::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        let total = files.len();
        let mut report = ScanReport {
            files: total,
            ..ScanReport::default()
        };
        let mut outcomes = stream::iter(files)
            .map(|path| async move {
                let outcome = self.index_file(&path, OnDuplicate::Keep).await;
                (path, outcome)
            })
            .buffer_unordered(SCAN_PARALLELISM);
        let mut done = 0;
        while let Some((path, outcome)) = outcomes.next().await {
            done += 1;
            match outcome {
                Ok(Inserted::AlreadyPresent) => report.already_indexed += 1,
                Ok(_) => report.indexed += 1,
                Err(Error::Index(error)) if is_fatal(&error) => return Err(Error::Index(error)),
                Err(error) => {
                    report.skipped += 1;
                    match &error {
                        Error::File(file) if file.is_not_dicom() => {
                            debug!("{}: not a DICOM file, skipped", path.display())
                        }
                        _ => warn!("skipped: {error}"),
                    }
                }
            }
            progress(&ScanProgress { done, total, path });
        }
        add(&self.inner.counters.scanned, report.indexed as u64);
        info!(
            "scanned {}: {} files, {} indexed, {} already indexed, {} skipped",
            dir.display(),
            report.files,
            report.indexed,
            report.already_indexed,
            report.skipped
        );
        Ok(report)
    }

    /// Reads one file and indexes it.
    async fn index_file(&self, path: &Path, on_duplicate: OnDuplicate) -> Result<Inserted, Error> {
        let limits = self.inner.config.limits;
        let path = path.to_path_buf();
        let instance = tokio::task::spawn_blocking(move || read_instance(&path, &limits))
            .await
            .map_err(|error| Error::Task(error.to_string()))??;
        Ok(self.inner.index.insert(instance, on_duplicate).await?)
    }

    /// Removes files (a missing one is fine) and tells the index they are gone.
    async fn remove_files(&self, files: Vec<PathBuf>) -> Result<(), Error> {
        if files.is_empty() {
            return Ok(());
        }
        let storage_root = self.inner.config.storage_root();
        let to_remove = files.clone();
        tokio::task::spawn_blocking(move || {
            for path in &to_remove {
                remove_file(path)?;
                prune_folders(path, &storage_root);
            }
            Ok::<(), Error>(())
        })
        .await
        .map_err(|error| Error::Task(error.to_string()))??;
        self.inner.index.files_removed(files).await?;
        Ok(())
    }

    /// Makes index and storage agree (see the module documentation).
    async fn check(&self) -> Result<(), Error> {
        let index = &self.inner.index;
        let mut indexed_paths = HashSet::new();
        let mut after = None;
        let (mut gone, mut changed) = (0usize, 0usize);
        loop {
            let page = index.instances_after(after.clone(), CHECK_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.sop_instance_uid.clone());
            for instance in page {
                let location = &instance.location;
                let found = file_fingerprint(&location.path);
                match found {
                    None => {
                        warn!(
                            "instance {}: its file {} is gone; removed from the index",
                            instance.sop_instance_uid,
                            location.path.display()
                        );
                        index
                            .delete(DeleteTarget::Instance(instance.sop_instance_uid.clone()))
                            .await?;
                        gone += 1;
                    }
                    Some((size, modified)) => {
                        if size != location.file_size || modified != location.modified_ns {
                            warn!(
                                "instance {}: its file {} changed; indexing it again",
                                instance.sop_instance_uid,
                                location.path.display()
                            );
                            changed += 1;
                            if let Err(error) =
                                self.index_file(&location.path, OnDuplicate::Replace).await
                            {
                                warn!("{error}; removing it from the index");
                                index
                                    .delete(DeleteTarget::Instance(
                                        instance.sop_instance_uid.clone(),
                                    ))
                                    .await?;
                            }
                        }
                        indexed_paths.insert(location.path.clone());
                    }
                }
            }
        }
        let storage_root = self.inner.config.storage_root();
        let root = storage_root.clone();
        let storage = self.inner.files.clone();
        // Temporary files of stores cut off in the study and series folders (those of the
        // root went at the start) are removed on the way.
        let (temporary, files) = tokio::task::spawn_blocking(move || {
            let own_temporary = |name: &str| storage.is_own_temporary(name);
            let listed = file::list_files_and_hidden(&root, own_temporary)
                .map_err(|source| Error::DataDir { path: root, source })?;
            let (temporary, files): (Vec<_>, Vec<_>) = listed.into_iter().partition(|path| {
                path.file_name()
                    .is_some_and(|name| own_temporary(&name.to_string_lossy()))
            });
            temporary.iter().try_for_each(|path| remove_file(path))?;
            Ok::<_, Error>((temporary, files))
        })
        .await
        .map_err(|error| Error::Task(error.to_string()))??;
        report_removed_temporary_files(temporary);
        let (mut added, mut removed) = (0usize, 0usize);
        let shared = self.inner.config.is_shared();
        for path in files.into_iter().filter(|p| !indexed_paths.contains(p)) {
            match self.index_file(&path, OnDuplicate::Keep).await {
                Ok(Inserted::AlreadyPresent) if shared && recently_written(&path) => {
                    // Another node may be replacing the instance with it right now.
                    warn!(
                        "{}: a second file of an indexed instance, written in the last {} s: left for the next check",
                        path.display(),
                        SHARED_STORE_GRACE.as_secs()
                    );
                }
                Ok(Inserted::AlreadyPresent) => {
                    // Its SOP Instance UID has another file: the index wins.
                    warn!(
                        "{}: a second file of an indexed instance; removed",
                        path.display()
                    );
                    remove_file(&path)?;
                    removed += 1;
                }
                Ok(_) => added += 1,
                Err(Error::Index(error)) if is_fatal(&error) => return Err(Error::Index(error)),
                Err(error) => warn!("{}: left in place, not indexed: {error}", path.display()),
            }
        }
        add(&self.inner.counters.scanned, added as u64);
        info!(
            "checked index and storage: {gone} rows without their file removed, {changed} changed files indexed again, {added} files without a row indexed, {removed} extra files removed"
        );
        Ok(())
    }

    /// The lock of one SOP Instance UID's stores.
    fn uid_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut uid_locks = lock(&self.inner.uid_locks);
        let UidLocks { locks, sweep_at } = &mut *uid_locks;
        // Forget the locks nobody holds (the map holds one reference), once the map has grown
        // to twice what the last sweep left (at least 64): a sweep per store would go over
        // every store in flight each time.
        if locks.len() >= *sweep_at {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            *sweep_at = (locks.len() * 2).max(UidLocks::FIRST_SWEEP);
        }
        locks.entry(uid.to_owned()).or_default().clone()
    }

    async fn begin_store(
        &self,
        instance: &InstanceDescription,
    ) -> Result<Box<dyn InstanceWriter>, StoreFailure> {
        let uid = instance.sop_instance_uid.trim_end_matches(['\0', ' ']);
        if !dimsum_net::ul::uid::is_valid(uid) {
            return Err(StoreFailure::new(
                Status::CANNOT_UNDERSTAND,
                format!("the SOP Instance UID {uid:?} is not a valid UID"),
            ));
        }
        let ingest = self.inner.ingest.clone().read_owned().await;
        let uid_guard = self.uid_lock(uid).lock_owned().await;
        Ok(Box::new(ArchiveWriter {
            archive: self.clone(),
            file: Some(self.inner.files.writer(instance)),
            uid: uid.to_owned(),
            admitted: None,
            guards: Some((ingest, uid_guard)),
        }))
    }

    /// The duplicate look-up of a store (what is committed is enough: no other store of this
    /// UID is in flight while this one holds the UID's lock, until its commit) judged by the
    /// duplicate policy.
    fn admission(
        &self,
        uid: &str,
        existing: Result<Option<IndexedInstance>, IndexError>,
    ) -> Result<Admission, StoreFailure> {
        if existing.map_err(index_failure)?.is_none() {
            return Ok(Admission::Store);
        }
        let counters = &self.inner.counters;
        match self.inner.config.duplicates {
            DuplicatePolicy::KeepFirst => {
                add(&counters.duplicates_kept, 1);
                debug!("instance {uid} is stored already: keeping the first");
                Ok(Admission::KeepFirst)
            }
            DuplicatePolicy::Reject => {
                add(&counters.duplicates_refused, 1);
                Err(duplicate_refused(uid))
            }
            DuplicatePolicy::Replace => Ok(Admission::Store),
        }
    }

    /// What the index does when the instance turns out to be indexed already at its commit:
    /// keep the first, replace it, or fail (refused duplicates are looked up before anything
    /// is kept; the commit only meets one that another archive sharing the index stored
    /// meanwhile).
    fn on_duplicate(&self) -> OnDuplicate {
        match self.inner.config.duplicates {
            DuplicatePolicy::KeepFirst => OnDuplicate::Keep,
            DuplicatePolicy::Replace => OnDuplicate::Replace,
            DuplicatePolicy::Reject => OnDuplicate::Fail,
        }
    }

    /// Stores an instance gathered in memory, blocking ([`run_blocking`]): the file, the
    /// preparation and the hand-over to the index in one go (and first the duplicate look-up,
    /// when the policy refuses duplicates: its answer depends on it). Under the other policies
    /// the index decides at the commit ([`Archive::on_duplicate`]): the answer is success
    /// either way, and the file, which never replaces another, is removed after the commit when
    /// the first is kept.
    fn store_gathered(
        &self,
        uid: &str,
        gathered: Gathered,
        admitted: Option<Admission>,
        guards: Option<StoreGuards>,
    ) -> Result<Finished, StoreFailure> {
        let admission = match admitted {
            Some(admission) => admission,
            None if self.inner.config.duplicates == DuplicatePolicy::Reject => {
                let existing = self.inner.index.lookup_committed_blocking(uid.to_owned());
                self.admission(uid, existing)?
            }
            None => Admission::Store,
        };
        match admission {
            Admission::KeepFirst => Ok(Finished::Answered(kept_first())),
            Admission::Store => self.complete_store(gathered.write(), guards),
        }
    }

    /// The file storage wrote `written` (on this blocking thread; never over another file):
    /// prepares its instance for the index and hands it over. By default the store is answered
    /// at once: from then on every read of the index waits for it ([`Index::hand_over`]), so
    /// the peer, told it is stored, finds it, and the commit overlaps the next store's
    /// arrival; what follows the commit ([`Archive::after_commit`]) runs on the index's writer,
    /// which lets the store's guards go. With [`ArchiveConfig::answer_after_commit`] the answer
    /// waits for the commit ([`Archive::answer_after_commit`]). A data set the index cannot
    /// take (its preparation failed) is refused and its file removed.
    fn complete_store(
        &self,
        written: Result<Written, StoreFailure>,
        guards: Option<StoreGuards>,
    ) -> Result<Finished, StoreFailure> {
        let Written {
            success,
            mut stored,
        } = written?;
        let prepared = match prepare_stored(&stored, &self.inner.config.limits) {
            Ok(prepared) => prepared,
            Err(failure) => {
                self.discard(&stored);
                return Err(failure);
            }
        };
        // Prepared: what follows needs no data set.
        stored.data_set = None;
        // A warning of the file storage (the data set's SOP Class UID is not the command's) is
        // told as a comment of the success.
        let success = StoreSuccess {
            status: Status::SUCCESS,
            comment: success.comment.filter(|_| !success.status.is_success()),
        };
        if self.inner.config.answer_after_commit {
            let committed = self.inner.index.hand_over(prepared, self.on_duplicate());
            return Ok(Finished::AfterCommit(Box::new(AfterCommit {
                committed,
                stored,
                success,
                guards,
            })));
        }
        let archive = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let then = OnCommit::new(move |outcome| {
            // On the index's writer: any removal goes to a task.
            match archive.after_commit(&stored, outcome) {
                None => drop(guards),
                Some(remove) => {
                    runtime.spawn(async move {
                        archive.remove_after_commit(&stored, remove).await;
                        drop(guards);
                    });
                }
            }
        });
        self.inner
            .index
            .hand_over_then(prepared, self.on_duplicate(), then);
        Ok(Finished::Answered(Ok(success)))
    }

    /// What follows the commit of a stored instance: counted; if the commit failed, the file
    /// is kept (its peer was told it is stored) and the archive left not clean, so that the
    /// next start indexes it. Returns the file to remove once committed
    /// ([`Archive::remove_after_commit`]): the one of the instance it replaced, or its own when
    /// the instance was indexed already and the first is kept.
    fn after_commit(
        &self,
        stored: &StoredInstance,
        outcome: Result<Inserted, IndexError>,
    ) -> Option<Removal> {
        let counters = &self.inner.counters;
        let uid = &stored.instance.sop_instance_uid;
        if !matches!(outcome, Ok(Inserted::AlreadyPresent) | Err(_)) {
            add(&counters.stored, 1);
            add(&counters.stored_bytes, stored.data_set_length);
        }
        match outcome {
            Ok(Inserted::New) => None,
            Ok(Inserted::Replaced { old_file }) => {
                add(&counters.replaced, 1);
                old_file.map(Removal::Replaced)
            }
            Ok(Inserted::AlreadyPresent) => {
                add(&counters.duplicates_kept, 1);
                debug!("instance {uid} is stored already: keeping the first");
                Some(Removal::Own)
            }
            Err(error) => {
                self.inner.index_behind.store(true, Ordering::SeqCst);
                error!(
                    "instance {uid}: stored in {} but not indexed ({error}); the next start indexes it",
                    stored.path.display()
                );
                None
            }
        }
    }

    /// Removes what [`Archive::after_commit`] says: the file of the instance `stored` replaced
    /// (and tells the index), or the file of `stored` itself.
    async fn remove_after_commit(&self, stored: &StoredInstance, removal: Removal) {
        match removal {
            Removal::Replaced(old_file) => {
                if let Err(error) = self.remove_files(vec![old_file]).await {
                    warn!(
                        "instance {}: the replaced file stays: {error}",
                        stored.instance.sop_instance_uid
                    );
                }
            }
            Removal::Own => {
                let archive = self.clone();
                let stored = stored.clone();
                if let Err(error) =
                    tokio::task::spawn_blocking(move || archive.discard(&stored)).await
                {
                    warn!("{error}");
                }
            }
        }
    }

    /// The answer of a store once its commit is done ([`ArchiveConfig::answer_after_commit`]):
    /// success once committed (the file of an instance it replaced removed first, or its own
    /// when the first is kept); when another archive sharing the index committed the same SOP
    /// Instance UID meanwhile and duplicates are refused ([`IndexError::Duplicate`]), 0xA700 and
    /// this store's file removed; any other failure of the index: 0x0110, and the file removed.
    /// The store's guards are held until then.
    async fn answer_after_commit(&self, after: AfterCommit) -> Result<StoreSuccess, StoreFailure> {
        let AfterCommit {
            committed,
            stored,
            success,
            guards,
        } = after;
        let uid = stored.instance.sop_instance_uid.clone();
        let answer = match committed.await {
            Err(IndexError::Duplicate(_)) => {
                add(&self.inner.counters.duplicates_refused, 1);
                Err(duplicate_refused(&uid))
            }
            Err(error) => {
                warn!("instance {uid}: not indexed ({error}); its file is removed");
                Err(StoreFailure::new(
                    Status::PROCESSING_FAILURE,
                    format!("the index failed: {error}"),
                ))
            }
            Ok(inserted) => {
                if let Some(removal) = self.after_commit(&stored, Ok(inserted)) {
                    self.remove_after_commit(&stored, removal).await;
                }
                drop(guards);
                return Ok(success);
            }
        };
        self.remove_after_commit(&stored, Removal::Own).await;
        drop(guards);
        answer
    }

    /// Removes the file of a store that is not kept, and the folders it leaves empty
    /// (blocking).
    fn discard(&self, stored: &StoredInstance) {
        match remove_file(&stored.path) {
            Ok(()) => prune_folders(&stored.path, &self.inner.config.storage_root()),
            Err(error) => warn!("instance {}: {error}", stored.instance.sop_instance_uid),
        }
    }
}

/// Whether an index error stops a scan (the index cannot go on), rather than skipping a file.
fn is_fatal(error: &IndexError) -> bool {
    !matches!(
        error,
        IndexError::Unindexable { .. } | IndexError::Duplicate(_)
    )
}

/// An index failure as a store status: a data set it cannot index is refused (0xA900), any
/// other failure is a processing failure.
fn index_failure(error: IndexError) -> StoreFailure {
    let status = match error {
        IndexError::Unindexable { .. } => Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        IndexError::Duplicate(_) => Status::OUT_OF_RESOURCES,
        _ => Status::PROCESSING_FAILURE,
    };
    StoreFailure::new(status, error.to_string())
}

/// Takes the data directory's lock, the file `lock_path` in it (creating the directory).
fn take_lock(data_dir: &Path, lock_path: &Path) -> Result<File, Error> {
    let io_error = |source| Error::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(io_error)?;
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(io_error)?;
    match lock_file.try_lock() {
        Ok(()) => Ok(lock_file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(data_dir.to_path_buf())),
        Err(fs::TryLockError::Error(source)) => Err(io_error(source)),
    }
}

/// Logs the temporary files removed that stores cut off left.
fn report_removed_temporary_files(removed: Vec<PathBuf>) {
    for path in removed {
        info!(
            "removed {}, left by a store that was cut off",
            path.display()
        );
    }
}

/// Removes the temporary files stores cut off left in the storage root: all of them, or only
/// this node's when the storage is shared (another node may be receiving into its own).
async fn remove_temporary_files(files: &FileStorage) -> Result<(), Error> {
    let files = files.clone();
    let removed = tokio::task::spawn_blocking(move || {
        files
            .remove_temporary_files()
            .map_err(|source| Error::DataDir {
                path: files.root().to_path_buf(),
                source,
            })
    })
    .await
    .map_err(|error| Error::Task(error.to_string()))??;
    report_removed_temporary_files(removed);
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes the series and study folders a removal left empty (never the storage root).
fn prune_folders(path: &Path, storage_root: &Path) {
    let mut folder = path.parent();
    while let Some(current) = folder {
        if current == storage_root || !current.starts_with(storage_root) {
            break;
        }
        if fs::remove_dir(current).is_err() {
            break;
        }
        folder = current.parent();
    }
}

/// Whether the file at `path` was modified within [`SHARED_STORE_GRACE`] (or cannot be read).
fn recently_written(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_none_or(|age| age < SHARED_STORE_GRACE)
}

/// A file's size and modification time (nanoseconds since the epoch), if it is there.
fn file_fingerprint(path: &Path) -> Option<(u64, i64)> {
    let metadata = fs::metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        });
    Some((metadata.len(), modified))
}

/// The file storage of an archive: Part 10 files under `storage/<study>/<series>/`, its
/// temporary files named after the node when the folder is shared (so that each node removes
/// only its own leftovers). A file never replaces another
/// ([`FileStorage::with_unique_names`]): a second store of an instance is filed beside the
/// first until the index decides which stays, and several archives may share the folder.
fn file_storage(config: &ArchiveConfig) -> Result<FileStorage, Error> {
    let storage_root = config.storage_root();
    let files = FileStorage::new(&storage_root)
        .map_err(|source| Error::DataDir {
            path: storage_root.clone(),
            source,
        })?
        .with_layout(Layout::ByStudyAndSeries)
        .with_fsync(config.fsync)
        .with_unique_names(true);
    Ok(if config.is_shared() {
        files.with_temporary_prefix(&config.node)
    } else {
        files
    })
}

/// What the index needs of an instance the storage just wrote (runs on the thread that wrote
/// it): its attributes from the data set in memory when the storage kept it, from the file
/// otherwise; the SOP Instance UID in the data set must be the command's (0xA900).
fn prepare_stored(
    stored: &StoredInstance,
    limits: &ScanLimits,
) -> Result<PreparedInstance, StoreFailure> {
    let uid = stored
        .instance
        .sop_instance_uid
        .trim_end_matches(['\0', ' ']);
    let in_data_set = stored.summary.sop_instance_uid.as_deref().unwrap_or("");
    if in_data_set.trim_end_matches(['\0', ' ']) != uid {
        return Err(StoreFailure::new(
            Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!("the data set's SOP Instance UID ({in_data_set}) is not the command's"),
        ));
    }
    // The data set's bytes, when the storage kept it in memory.
    let received = stored
        .data_set
        .as_ref()
        .and_then(|data_set| data_set.get(..usize::try_from(stored.data_set_length).ok()?));
    let read = match &stored.data_set {
        Some(data_set) => stored_instance(stored, |ts| {
            file::decode_attributes_in_memory(received.unwrap_or(data_set), ts, limits)
        }),
        None => File::open(&stored.path)
            .and_then(|mut file| {
                io::Seek::seek(&mut file, io::SeekFrom::Start(stored.data_set_offset))?;
                Ok(file)
            })
            .map_err(|source| {
                Error::File(FileError::Io {
                    path: stored.path.clone(),
                    source,
                })
            })
            .and_then(|file| {
                stored_instance(stored, |ts| {
                    file::decode_attributes_as_read(file, stored.data_set_length, ts, limits)
                })
            }),
    }
    .map_err(|error| match error {
        Error::MissingAttribute { name, .. } => StoreFailure::new(
            Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!("the data set has no {name}"),
        ),
        other => StoreFailure::new(Status::PROCESSING_FAILURE, other.to_string()),
    })?;
    let (instance, text_as_read) = read;
    // The data set as received, when its bytes are what the record would be encoded to.
    let received =
        received.filter(|_| text_as_read && instance.transfer_syntax_uid == RECORD_TRANSFER_SYNTAX);
    match received {
        Some(data_set) => PreparedInstance::received(instance, data_set),
        None => PreparedInstance::new(instance),
    }
    .map_err(index_failure)
}

/// The instance to index from a file the storage just wrote, its attributes decoded by
/// `decode` (given the transfer syntax) from its data set (kept in memory, or the file
/// positioned after its meta). The storage scanned the data set already: its summary gives the
/// identity, and only the attributes before the pixel data are decoded.
fn stored_instance(
    stored: &StoredInstance,
    decode: impl FnOnce(
        &str,
    ) -> Result<
        (dimsum_dataset::dicom_object::InMemDicomObject, bool),
        file::AttributesError,
    >,
) -> Result<(NewInstance, bool), Error> {
    let description = &stored.instance;
    let ts = &description.transfer_syntax_uid;
    let (attributes, text_as_read) = decode(ts).map_err(|error| error.at(&stored.path))?;
    let identity = Identity::from_summary(
        &stored.summary,
        &description.sop_class_uid,
        &description.sop_instance_uid,
    );
    let instance = new_instance(
        stored.path.clone(),
        ts.clone(),
        (stored.data_set_offset, stored.data_set_length),
        (attributes, stored.summary.pixel_data_header),
        identity,
    )?;
    Ok((instance, text_as_read))
}

fn read_instance(path: &Path, limits: &ScanLimits) -> Result<NewInstance, Error> {
    let file = file::read_part10(path, limits)?;
    let identity = Identity::of(&file.summary, &file.meta);
    new_instance(
        file.path,
        file.meta.transfer_syntax_uid,
        (file.data_set_offset, file.data_set_length),
        (file.attributes, file.summary.pixel_data_header),
        identity,
    )
}

/// The instance to index for the file at `path` whose data set (in `transfer_syntax_uid`,
/// at `(offset, length)` in the file) has `attributes` (those before the pixel data, and the
/// tag and VR of the pixel data element the scan found, which the index records as a bulk data
/// element) and `identity`.
fn new_instance(
    path: PathBuf,
    transfer_syntax_uid: String,
    (data_set_offset, data_set_length): (u64, u64),
    (mut attributes, pixel_data): (
        dimsum_dataset::dicom_object::InMemDicomObject,
        Option<(
            dimsum_dataset::dicom_core::Tag,
            dimsum_dataset::dicom_core::VR,
        )>,
    ),
    identity: Result<Identity, &'static str>,
) -> Result<NewInstance, Error> {
    if let Some((tag, vr)) = pixel_data {
        attributes.put(dimsum_dataset::dicom_core::DataElement::empty(tag, vr));
    }
    let identity = identity.map_err(|name| Error::MissingAttribute {
        path: path.clone(),
        name,
    })?;
    let (file_size, modified_ns) = file_fingerprint(&path).unwrap_or_default();
    Ok(NewInstance {
        sop_class_uid: identity.sop_class_uid,
        sop_instance_uid: identity.sop_instance_uid,
        transfer_syntax_uid,
        location: FileLocation {
            path,
            data_set_offset,
            data_set_length,
            file_size,
            modified_ns,
        },
        attributes,
    })
}

/// What a store's blocking work leaves to do before its answer.
enum Finished {
    /// Answer now (the commit follows, see [`Archive::complete_store`]).
    Answered(Result<StoreSuccess, StoreFailure>),
    /// Answer once the commit is done ([`Archive::answer_after_commit`]).
    AfterCommit(Box<AfterCommit>),
}

/// A store handed over to the index whose answer waits for the commit.
struct AfterCommit {
    committed: BoxFuture<'static, Result<Inserted, IndexError>>,
    /// Without its data set.
    stored: StoredInstance,
    success: StoreSuccess,
    guards: Option<StoreGuards>,
}

/// One instance being stored into the archive (see [`Archive::store_gathered`] and
/// [`Archive::complete_store`]): the file storage's writer, then the index.
struct ArchiveWriter {
    archive: Archive,
    /// `None` once finished, or once the instance is known to be kept as it was.
    file: Option<FileWriter>,
    uid: String,
    /// The duplicate policy's decision, once taken: at the end of a small instance, before a
    /// large one starts going to disk.
    admitted: Option<Admission>,
    /// Held until the store is committed to the index (then by what follows the commit), or
    /// dropped.
    guards: Option<StoreGuards>,
}

/// What a store holds until its instance is committed to the index: the shared ingest lock
/// (deletes and close wait for it) and the lock of its SOP Instance UID (a second store of the
/// same UID waits, then finds the first indexed).
type StoreGuards = (OwnedRwLockReadGuard<()>, OwnedMutexGuard<()>);

fn finished_already() -> StoreFailure {
    StoreFailure::new(
        Status::PROCESSING_FAILURE,
        "the instance was finished already",
    )
}

fn kept_first() -> Result<StoreSuccess, StoreFailure> {
    Ok(StoreSuccess {
        status: Status::SUCCESS,
        comment: None,
    })
}

fn duplicate_refused(uid: &str) -> StoreFailure {
    StoreFailure::new(
        Status::OUT_OF_RESOURCES,
        format!("instance {uid} is stored already (duplicates are refused)"),
    )
}

/// What the duplicate look-up made of a store.
enum Admission {
    /// Store it: the index decides at the commit ([`Archive::on_duplicate`]).
    Store,
    /// Keep the indexed one; the data set is dropped and the peer told success.
    KeepFirst,
}

/// A file to remove once an instance is committed ([`Archive::after_commit`]).
enum Removal {
    /// The file of the instance it replaced.
    Replaced(PathBuf),
    /// Its own: the instance was indexed already and the first is kept.
    Own,
}

impl ArchiveWriter {
    async fn write_piece(&mut self, data: Bytes) -> Result<(), StoreFailure> {
        if matches!(self.admitted, Some(Admission::KeepFirst)) {
            return Ok(());
        }
        let Some(file) = self.file.as_mut() else {
            return Err(finished_already());
        };
        if self.admitted.is_none() && file.streams_with(data.len()) {
            // A large instance goes to disk from here on: decide first.
            let existing = self
                .archive
                .inner
                .index
                .lookup_committed(self.uid.clone())
                .await;
            let admission = self.archive.admission(&self.uid, existing)?;
            if let Admission::KeepFirst = admission {
                self.file = None;
                self.admitted = Some(admission);
                return Ok(());
            }
            self.admitted = Some(admission);
        }
        file.write(data).await
    }

    async fn finish_store(mut self) -> Result<StoreSuccess, StoreFailure> {
        let admitted = self.admitted.take();
        let Some(file) = self.file.take() else {
            return match admitted {
                Some(Admission::KeepFirst) => kept_first(),
                _ => Err(finished_already()),
            };
        };
        let guards = self.guards.take();
        let archive = self.archive.clone();
        let finished = match file.into_gathered() {
            Ok(gathered) => {
                let uid = self.uid.clone();
                run_blocking(move || archive.store_gathered(&uid, gathered, admitted, guards))
                    .await
                    .map_err(|error| StoreFailure::new(Status::PROCESSING_FAILURE, error))
            }
            Err(file) => {
                file.finish_then(move |written| archive.complete_store(written, guards))
                    .await
            }
        };
        match finished?? {
            Finished::Answered(answer) => answer,
            Finished::AfterCommit(after) => self.archive.answer_after_commit(*after).await,
        }
    }
}

impl InstanceWriter for ArchiveWriter {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            let written = self.write_piece(data).await;
            if written.is_err() {
                add(&self.archive.inner.counters.store_failures, 1);
            }
            written
        })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StoreSuccess, StoreFailure>> {
        Box::pin(async move {
            let counters = self.archive.clone();
            let answer = self.finish_store().await;
            if answer.is_err() {
                add(&counters.inner.counters.store_failures, 1);
            }
            answer
        })
    }
}

impl Storage for Archive {
    fn begin<'a>(
        &'a self,
        instance: &'a InstanceDescription,
    ) -> BoxFuture<'a, Result<Box<dyn InstanceWriter>, StoreFailure>> {
        Box::pin(async move {
            let result = self.begin_store(instance).await;
            if result.is_err() {
                add(&self.inner.counters.store_failures, 1);
            }
            result
        })
    }
}

impl FindHandler for Archive {
    /// C-FIND (PS3.4 C.4.1): the matches stream from the index cursor as the framework sends
    /// them; past the result limit the query ends with 0xA700. Relational queries and combined
    /// date-time matching are used when the peer negotiated them (PS3.4 C.5.1.1); the keys of
    /// levels below the query's then come back zero-length (see [`crate::folder`]).
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        Box::pin(async move {
            add(&self.inner.counters.queries, 1);
            // What the peer negotiated (PS3.4 C.5.1.1): combined date-time matching (byte 2),
            // fuzzy semantic matching of person names (byte 3) and relational queries (byte 1).
            let options = MatchOptions {
                combined_date_time: query.find_options.combined_date_time,
                fuzzy_person_names: query.find_options.fuzzy_person_names,
                ..self.inner.config.matching
            };
            let plan = QueryPlan::from_query(&query, QueryService::Find)?
                .with_options(options)
                .with_relational(query.find_options.relational_queries);
            let status = if plan.has_unsupported_keys() {
                Status::PENDING_WARNING
            } else {
                Status::PENDING
            };
            let responses = self
                .inner
                .index
                .query(plan, self.inner.config.result_limit)
                .await
                .map_err(query_failure)?;
            let transfer_syntax_uid = query.transfer_syntax_uid;
            let matches = responses.map(move |response| {
                let identifier = response.map_err(query_failure)?;
                Ok(FindMatch {
                    identifier: encode_identifier(&identifier, &transfer_syntax_uid)?,
                    status,
                })
            });
            Ok(Box::pin(matches) as MatchStream)
        })
    }
}

fn query_failure(error: IndexError) -> ScpFailure {
    match error {
        IndexError::TooManyMatches { limit } => ScpFailure::new(
            Status::OUT_OF_RESOURCES,
            format!("more than {limit} matches: narrow the query"),
        ),
        other => ScpFailure::processing(other.to_string()),
    }
}

impl RetrieveHandler for Archive {
    /// C-GET and C-MOVE (PS3.4 C.4.2, C.4.3): every instance below the matching entities.
    fn retrieve(&self, query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>> {
        Box::pin(async move {
            add(&self.inner.counters.retrievals, 1);
            let service = match QueryModel::of_sop_class(&query.sop_class_uid) {
                Some((_, QueryService::Get)) => QueryService::Get,
                _ => QueryService::Move,
            };
            let plan =
                QueryPlan::from_query(&query, service)?.with_options(self.inner.config.matching);
            plan.check_retrieval_keys()?;
            let instances = self
                .inner
                .index
                .instances(plan)
                .await
                .map_err(query_failure)?;
            debug!("{} instances to retrieve", instances.len());
            Ok(Retrieval::from_instances(
                instances.iter().map(IndexedInstance::to_retrieve).collect(),
            ))
        })
    }

    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        self.inner.config.move_destinations.get(ae_title)
    }

    fn move_associations(&self, _destination: &MoveDestination) -> usize {
        self.inner.config.move_destinations.associations()
    }
}
