//! The default storage: each instance becomes a Part 10 file (PS3.10 §7), written under a
//! temporary name and renamed when complete, so that a transfer cut off half-way leaves nothing
//! visible. The temporary file of an instance gathered in memory is made in the folder the file
//! goes to (the layout's study or series folder: the rename then stays within one folder, which
//! on Linux needs no file-system-wide rename lock); a larger one's, whose folder is known only
//! once it is complete, in the root.
//!
//! All disk work (create, write, scan, fsync, rename) runs on tokio's blocking pool, never on
//! the async workers: a slow disk slows the association that writes to it, nothing else. An
//! instance up to [`BUFFER_BELOW`] is gathered in memory, scanned there and written in one
//! blocking task when complete (most instances: one hop to the pool and back); a larger one
//! goes to a blocking task as it arrives, through a bounded channel, so memory stays bounded
//! whatever its size.
//!
//! A storage that does more with each instance (an archive that indexes it) drives a
//! [`FileWriter`] itself: it can take a small instance's data set as a [`Gathered`] and write it
//! inside a blocking task of its own (with its other blocking work, one hop to the pool per
//! store), or finish a large one with [`FileWriter::finish_then`], whose closure runs on the
//! blocking thread that completed the file.
//!
//! Several servers may share one storage root ([`FileStorage::with_unique_names`]): a complete
//! file is then linked into place without ever replacing one that another store put there (the
//! next free name, `<uid>.2.dcm`, `<uid>.3.dcm`…, is taken instead), and each server's
//! temporary files carry its own prefix ([`FileStorage::with_temporary_prefix`]), so that it
//! removes only its own leftovers ([`FileStorage::remove_temporary_files`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use dimsum_dataset::part10::{self, FileMeta};
use dimsum_dataset::scan::{self, ScanLimits, Summary};
use dimsum_dataset::transfer_syntax;
use dimsum_dimse::status::Status;
use dimsum_ul::uids::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

use super::{BoxFuture, InstanceDescription, InstanceWriter, Storage, StoreFailure, StoreSuccess};

/// Batches of a data set that may wait for the disk, per instance.
const BATCHES_IN_FLIGHT: usize = 4;
/// A large instance goes to its blocking writer in batches of about this many bytes: one
/// hand-over (and at most one wake-up of the writer) per batch, not per PDU.
const BATCH: usize = 1024 * 1024;
/// Instances smaller than this are gathered in memory and written at once.
pub const BUFFER_BELOW: usize = 256 * 1024;

/// How received files are laid out under the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `<root>/<SOPInstanceUID>.dcm`
    #[default]
    Flat,
    /// `<root>/<StudyInstanceUID>/<SOPInstanceUID>.dcm` (DCMTK's `--sort-on-study-uid`)
    ByStudy,
    /// `<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`
    ByStudyAndSeries,
}

/// A stored instance, as told to [`FileStorage::on_stored`].
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub path: PathBuf,
    pub instance: InstanceDescription,
    pub summary: Summary,
    /// Where the data set starts in the file (the length of the preamble and file meta).
    pub data_set_offset: u64,
    /// Bytes of the data set (without the file meta).
    pub data_set_length: u64,
    /// The data set itself, when the instance was small enough to be gathered in memory
    /// ([`BUFFER_BELOW`]): what the file holds after `data_set_offset`, so that the callback
    /// can read it without opening the file. `None` for an instance streamed to disk.
    pub data_set: Option<Bytes>,
}

/// What a [`FileWriter`] made of an instance: the outcome to answer (success, or the warning
/// 0xB007 when the data set's SOP Class or Instance UID is not the command's) and the file.
#[derive(Debug, Clone)]
pub struct Written {
    pub success: StoreSuccess,
    pub stored: StoredInstance,
}

/// Called after each instance is stored, on the blocking thread that wrote it (so it may read
/// files or parse the data set; it delays the instance's response, nothing else).
pub type StoredCallback = Arc<dyn Fn(&StoredInstance) + Send + Sync>;

/// Names tried for a file when the storage never replaces one ([`FileStorage::with_unique_names`]):
/// `<uid>.dcm`, then `<uid>.2.dcm` up to `<uid>.16.dcm`.
pub const UNIQUE_NAME_TRIES: u32 = 16;

/// Writes each received instance as a Part 10 file under `root` (file meta added: the command's
/// SOP class and instance, the negotiated transfer syntax, the calling AE as source AE title).
#[derive(Clone)]
pub struct FileStorage {
    root: PathBuf,
    layout: Layout,
    fsync: bool,
    limits: ScanLimits,
    on_stored: Option<StoredCallback>,
    unique_names: bool,
    /// Starts the name of every temporary file (after the dot that hides it): `None` for the
    /// unprefixed names, which every storage on the root takes for its own leftovers.
    temporary_prefix: Option<Arc<str>>,
}

impl FileStorage {
    /// Stores under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            layout: Layout::Flat,
            fsync: false,
            limits: ScanLimits::default(),
            on_stored: None,
            unique_names: false,
            temporary_prefix: None,
        })
    }

    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// fsync each file and its folder before it becomes visible (off by default, as in DCMTK).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Never replace a file at the final path (off by default: a second store of an instance
    /// replaces its file, as DCMTK's storescp does). When on, a complete file is hard-linked
    /// into place, which fails rather than replace what another store (of this server or of
    /// another sharing the root) put there, and the next free name is taken: `<uid>.2.dcm`,
    /// `<uid>.3.dcm`… up to [`UNIQUE_NAME_TRIES`] names, after which the store fails (0x0110).
    /// The root's file system must support hard links (local ones and NFS do).
    pub fn with_unique_names(mut self, unique: bool) -> Self {
        self.unique_names = unique;
        self
    }

    /// Temporary files are named `.<prefix>~…part` (the prefix made safe as a file name, at most
    /// 64 characters), so that several servers sharing the root each remove only their own
    /// leftovers ([`FileStorage::remove_temporary_files`]). Without a prefix they are named
    /// `.…part`, and every leftover on the root counts as this storage's.
    pub fn with_temporary_prefix(mut self, prefix: &str) -> Self {
        let prefix: String = safe_file_name(prefix).chars().take(64).collect();
        self.temporary_prefix = Some(prefix.into());
        self
    }

    pub fn on_stored(mut self, callback: impl Fn(&StoredInstance) + Send + Sync + 'static) -> Self {
        self.on_stored = Some(Arc::new(callback));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `file_name` (of an entry of the root) is a temporary file of this storage: one
    /// with its prefix, or any temporary file when it has none.
    pub fn is_own_temporary(&self, file_name: &str) -> bool {
        let Some(rest) = file_name.strip_prefix('.') else {
            return false;
        };
        if !rest.ends_with(TEMPORARY_SUFFIX) {
            return false;
        }
        match &self.temporary_prefix {
            None => true,
            Some(prefix) => rest
                .strip_prefix(prefix.as_ref())
                .is_some_and(|after| after.starts_with(TEMPORARY_SEPARATOR)),
        }
    }

    /// Removes this storage's temporary files from the root ([`FileStorage::is_own_temporary`]):
    /// what stores cut off by a crash left (those of small instances, in the layout's folders,
    /// are found by a walk of the whole storage: [`crate::scu::store::list_files_and_hidden`]).
    /// Blocking; call it before this storage stores anything (a store in flight has a temporary
    /// file too). Returns the files removed.
    pub fn remove_temporary_files(&self) -> io::Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !self.is_own_temporary(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// The writer of one instance, for a storage that drives it itself ([`Storage::begin`]
    /// boxes the same).
    pub fn writer(&self, instance: &InstanceDescription) -> FileWriter {
        FileWriter(State::Gathering(Box::new(Gathered {
            storage: self.clone(),
            instance: instance.clone(),
            pieces: Vec::new(),
            length: 0,
        })))
    }
}

impl Storage for FileStorage {
    fn begin<'a>(
        &'a self,
        instance: &'a InstanceDescription,
    ) -> BoxFuture<'a, Result<Box<dyn InstanceWriter>, StoreFailure>> {
        let writer = self.writer(instance);
        Box::pin(async move { Ok(Box::new(writer) as Box<dyn InstanceWriter>) })
    }
}

/// What a blocking task that completes a streamed file runs with the outcome.
type Then = Box<dyn FnOnce(Result<Written, StoreFailure>) + Send>;

/// What the async side sends the blocking task that writes a large instance.
enum Piece {
    Data(Vec<Bytes>),
    Finish(Then),
}

/// An instance small enough to be gathered in memory (below [`BUFFER_BELOW`]), whole: written
/// by one blocking call ([`Gathered::write`]).
pub struct Gathered {
    storage: FileStorage,
    instance: InstanceDescription,
    pieces: Vec<Bytes>,
    length: usize,
}

impl Gathered {
    /// Bytes of the data set.
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Scans the data set in memory, then writes, syncs and moves the file into place in one
    /// go (nothing is written for a data set the scan refuses). Blocking.
    pub fn write(self) -> Result<Written, StoreFailure> {
        let Gathered {
            storage,
            instance,
            pieces,
            ..
        } = self;
        let data = match pieces.as_slice() {
            [one] => one.clone(),
            _ => Bytes::from(pieces.concat()),
        };
        let summary = scan::scan_bytes(&data, &instance.transfer_syntax_uid, &storage.limits)
            .map_err(scan_failure)?;
        // The file's folder is known: its temporary file is made there, so that moving it into
        // place renames within one folder.
        let (folder, _) = final_place(&storage, &instance, &summary);
        let mut sink = FileSink::create_in(storage, instance, &data, Some(&folder))?;
        sink.data_set = Some(data);
        sink.complete(summary)
    }
}

/// Runs blocking `work` (a small store's file I/O) for the async task that calls it, and
/// returns its result, or `Err` with a message if it panicked. On tokio's multi-threaded
/// runtime it runs right here: the worker thread first hands its other tasks to another thread
/// ([`tokio::task::block_in_place`]), so the async workers are never blocked, and the store
/// waits for no thread to wake up — on a virtual machine, waking a pool thread and then the
/// task again costs more than writing a small file. On any other runtime it goes to the
/// blocking pool.
pub async fn run_blocking<T>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String>
where
    T: Send + 'static,
{
    let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    });
    if multi_threaded {
        tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a blocking task panicked".to_owned())
            })
        })
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| error.to_string())
    }
}

/// The async end of one instance being written by a [`FileStorage`]: the data set is gathered
/// in memory while it is below [`BUFFER_BELOW`], then goes to a blocking task a batch at a time.
pub struct FileWriter(State);

enum State {
    /// Small so far: the pieces are kept until the instance is complete.
    Gathering(Box<Gathered>),
    /// Large: a blocking task writes the pieces, handed over a batch at a time.
    Streaming {
        pieces: mpsc::Sender<Piece>,
        batch: Vec<Bytes>,
        batch_length: usize,
    },
    /// A write failed, or the blocking writer is gone.
    Broken,
}

fn writer_gone() -> StoreFailure {
    StoreFailure::new(Status::PROCESSING_FAILURE, "the file writer stopped")
}

impl FileWriter {
    /// Whether `more` bytes more make the instance too large to gather: the next write then
    /// starts writing the file on the blocking pool.
    pub fn streams_with(&self, more: usize) -> bool {
        match &self.0 {
            State::Gathering(gathered) => gathered.length.saturating_add(more) >= BUFFER_BELOW,
            State::Streaming { .. } | State::Broken => true,
        }
    }

    /// The whole data set, when it was gathered in memory (the caller then writes it with
    /// [`Gathered::write`]); the writer itself otherwise.
    pub fn into_gathered(self) -> Result<Gathered, FileWriter> {
        match self.0 {
            State::Gathering(gathered) => Ok(*gathered),
            other => Err(FileWriter(other)),
        }
    }

    /// The data set is complete: makes the file durable and visible, then runs `then` with
    /// the outcome on the blocking thread that completed it (so that it may do more blocking
    /// work with the file before the answer). Fails without running `then` only when the
    /// blocking writer is gone.
    pub async fn finish_then<T: Send + 'static>(
        self,
        then: impl FnOnce(Result<Written, StoreFailure>) -> T + Send + 'static,
    ) -> Result<T, StoreFailure> {
        match self.0 {
            State::Gathering(gathered) => run_blocking(move || then(gathered.write()))
                .await
                .map_err(|_| writer_gone()),
            State::Streaming { pieces, batch, .. } => {
                if !batch.is_empty() {
                    pieces
                        .send(Piece::Data(batch))
                        .await
                        .map_err(|_| writer_gone())?;
                }
                let (reply, outcome) = oneshot::channel();
                let then: Then = Box::new(move |written| {
                    let _ = reply.send(then(written));
                });
                pieces
                    .send(Piece::Finish(then))
                    .await
                    .map_err(|_| writer_gone())?;
                outcome.await.map_err(|_| writer_gone())
            }
            State::Broken => Err(writer_gone()),
        }
    }
}

impl InstanceWriter for FileWriter {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            self.0 = match std::mem::replace(&mut self.0, State::Broken) {
                State::Gathering(mut gathered) if gathered.length + data.len() < BUFFER_BELOW => {
                    gathered.length += data.len();
                    gathered.pieces.push(data);
                    self.0 = State::Gathering(gathered);
                    return Ok(());
                }
                // Too large to gather: what came so far is the first batch of a blocking
                // writer.
                State::Gathering(gathered) => {
                    let Gathered {
                        storage,
                        instance,
                        pieces,
                        length,
                    } = *gathered;
                    let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
                    tokio::task::spawn_blocking(move || {
                        write_instance(storage, instance, receiver)
                    });
                    State::Streaming {
                        pieces: sender,
                        batch: pieces,
                        batch_length: length,
                    }
                }
                other => other,
            };
            match &mut self.0 {
                State::Streaming {
                    pieces,
                    batch,
                    batch_length,
                } => {
                    *batch_length += data.len();
                    batch.push(data);
                    if *batch_length < BATCH {
                        return Ok(());
                    }
                    *batch_length = 0;
                    let sent = pieces.send(Piece::Data(std::mem::take(batch))).await;
                    if sent.is_err() {
                        self.0 = State::Broken;
                        return Err(writer_gone());
                    }
                    Ok(())
                }
                State::Gathering(_) | State::Broken => Err(writer_gone()),
            }
        })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StoreSuccess, StoreFailure>> {
        Box::pin(async move {
            self.finish_then(|written| written.map(|written| written.success))
                .await?
        })
    }
}

/// The blocking side of a large instance: creates the file, writes every piece, and on
/// `Finish` scans, syncs and moves it into place, then runs the finisher's closure. A channel
/// closed before `Finish` (the transfer was cut off) removes the file. A write error is kept
/// and reported at `Finish`; the pieces after it are dropped.
fn write_instance(
    storage: FileStorage,
    instance: InstanceDescription,
    mut pieces: mpsc::Receiver<Piece>,
) {
    let mut sink = FileSink::create(storage, instance, &[]);
    while let Some(piece) = pieces.blocking_recv() {
        match piece {
            Piece::Data(batch) => {
                for data in batch {
                    if let Ok(active) = &mut sink
                        && let Err(failure) = active.write(&data)
                    {
                        sink = Err(failure);
                    }
                }
            }
            Piece::Finish(then) => {
                then(sink.and_then(FileSink::finish));
                return;
            }
        }
    }
}
struct FileSink {
    storage: FileStorage,
    instance: InstanceDescription,
    /// The file being written; `None` once it was renamed or removed.
    temporary: Option<PathBuf>,
    file: Option<File>,
    data_offset: u64,
    data_length: u64,
    /// The whole data set, when it was gathered in memory.
    data_set: Option<Bytes>,
}

impl FileSink {
    /// Creates the temporary file and writes the file meta (the instance's SOP class and
    /// instance, transfer syntax and source AE title).
    /// `first` is the beginning of the data set, written with the file meta in one write.
    fn create(
        storage: FileStorage,
        instance: InstanceDescription,
        first: &[u8],
    ) -> Result<FileSink, StoreFailure> {
        Self::create_in(storage, instance, first, None)
    }

    /// [`FileSink::create`] with its temporary file in `folder` (created when missing), not
    /// in the root.
    fn create_in(
        storage: FileStorage,
        instance: InstanceDescription,
        first: &[u8],
        folder: Option<&Path>,
    ) -> Result<FileSink, StoreFailure> {
        let meta = FileMeta {
            media_storage_sop_class_uid: instance.sop_class_uid.clone(),
            media_storage_sop_instance_uid: instance.sop_instance_uid.clone(),
            transfer_syntax_uid: instance.transfer_syntax_uid.clone(),
            implementation_class_uid: IMPLEMENTATION_CLASS_UID.to_string(),
            implementation_version_name: Some(IMPLEMENTATION_VERSION_NAME.to_string()),
            source_application_entity_title: instance.source_ae_title().map(str::to_owned),
        };
        let mut header = part10::encode_header(&meta).map_err(|e| {
            StoreFailure::new(
                Status::CANNOT_UNDERSTAND,
                format!("cannot write a file meta: {e}"),
            )
        })?;
        let temporary = temporary_path(
            folder.unwrap_or(&storage.root),
            storage.temporary_prefix.as_deref(),
            &instance.sop_instance_uid,
        );
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&temporary)
        };
        let mut file = match (open(), folder) {
            (Err(error), Some(folder)) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(folder).map_err(|e| write_failure(folder, e))?;
                open()
            }
            (opened, _) => opened,
        }
        .map_err(|e| write_failure(&temporary, e))?;
        let mut sink = FileSink {
            storage,
            instance,
            temporary: Some(temporary),
            data_offset: header.len() as u64,
            data_set: None,
            data_length: first.len() as u64,
            file: None,
        };
        header.extend_from_slice(first);
        file.write_all(&header)
            .map_err(|e| write_failure(sink.temporary_path(), e))?;
        sink.file = Some(file);
        Ok(sink)
    }

    fn temporary_path(&self) -> &Path {
        self.temporary.as_deref().unwrap_or(Path::new(""))
    }

    /// Checks the data set with the hardened scanner, reading it back from the file (seeking
    /// over large values).
    fn scan(&self, file: &mut File) -> Result<Summary, StoreFailure> {
        let io_failure = |e: io::Error| write_failure(self.temporary_path(), e);
        file.seek(SeekFrom::Start(self.data_offset))
            .map_err(io_failure)?;
        let ts = &self.instance.transfer_syntax_uid;
        let limits = &self.storage.limits;
        let result = if transfer_syntax::is_deflated(ts) {
            scan::scan_deflated(BufReader::new(&mut *file), limits)
        } else {
            scan::scan(BufReader::new(&mut *file), self.data_length, ts, limits)
        };
        result.map_err(scan_failure)
    }

    /// The folder the file goes to, by the layout, and its name without the extension.
    fn final_place(&self, summary: &Summary) -> (PathBuf, String) {
        final_place(&self.storage, &self.instance, summary)
    }

    /// Moves the complete temporary file into `folder` as `<name>.dcm`: renamed over whatever
    /// is there, or, with unique names, to the first free name of `<name>.dcm`, `<name>.2.dcm`…
    /// without replacing any ([`move_without_replacing`]; the folder is created when missing).
    /// Returns where it is, and whether the temporary file is still there (linked).
    fn place(&self, folder: &Path, name: &str) -> Result<(PathBuf, bool), StoreFailure> {
        let temporary = self.temporary_path();
        let mut created_folder = false;
        let mut number = 1;
        loop {
            let destination = folder.join(if number == 1 {
                format!("{name}.dcm")
            } else {
                format!("{name}.{number}.dcm")
            });
            let placed = if self.storage.unique_names {
                move_without_replacing(temporary, &destination)
            } else {
                fs::rename(temporary, &destination).map(|()| false)
            };
            match placed {
                Ok(linked) => return Ok((destination, linked)),
                // The folder usually exists: create it only when the move says it does not.
                Err(error) if error.kind() == io::ErrorKind::NotFound && !created_folder => {
                    fs::create_dir_all(folder).map_err(|e| write_failure(folder, e))?;
                    created_folder = true;
                }
                Err(error)
                    if error.kind() == io::ErrorKind::AlreadyExists
                        && self.storage.unique_names
                        && number < UNIQUE_NAME_TRIES =>
                {
                    number += 1;
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(StoreFailure::new(
                        Status::PROCESSING_FAILURE,
                        format!(
                            "cannot write: {}: {number} files of this instance are there already",
                            folder.join(format!("{name}.dcm")).display()
                        ),
                    ));
                }
                Err(error) => return Err(write_failure(&destination, error)),
            }
        }
    }
}

/// Moves `from` to `to` unless `to` exists ([`io::ErrorKind::AlreadyExists`] then): one
/// rename that never replaces (Linux `renameat2` with `RENAME_NOREPLACE`) where the file system
/// has it, else a hard link. Returns whether `from` is still there (linked: for the caller to
/// remove).
fn move_without_replacing(from: &Path, to: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(false),
            Err(error)
                if error == rustix::io::Errno::INVAL || error == rustix::io::Errno::NOSYS => {}
            Err(error) => return Err(error.into()),
        }
    }
    fs::hard_link(from, to).map(|()| true)
}

impl FileSink {
    fn write(&mut self, data: &[u8]) -> Result<(), StoreFailure> {
        let file = self.file.as_mut().ok_or_else(file_closed)?;
        file.write_all(data)
            .map_err(|e| write_failure(self.temporary.as_deref().unwrap_or(Path::new("")), e))?;
        self.data_length += data.len() as u64;
        Ok(())
    }

    /// Scans what was written, then makes it durable and visible.
    fn finish(mut self) -> Result<Written, StoreFailure> {
        let mut file = self.file.take().ok_or_else(file_closed)?;
        let summary = self.scan(&mut file);
        self.file = Some(file);
        self.complete(summary?)
    }

    /// The data set, already scanned (`summary`), is complete: sync, move into place, report.
    fn complete(mut self, summary: Summary) -> Result<Written, StoreFailure> {
        let Some(file) = self.file.take() else {
            return Err(file_closed());
        };
        if self.storage.fsync {
            file.sync_all()
                .map_err(|e| write_failure(self.temporary_path(), e))?;
        }
        drop(file);
        let (folder, name) = self.final_place(&summary);
        let (destination, linked) = self.place(&folder, &name)?;
        let temporary = self.temporary.take();
        if linked && let Some(temporary) = temporary {
            // Linked into place: the temporary name goes (a leftover is removed at the next
            // start, and the file is in place whatever happens to it).
            let _ = fs::remove_file(temporary);
        }
        if self.storage.fsync {
            File::open(&folder)
                .and_then(|f| f.sync_all())
                .map_err(|e| write_failure(&folder, e))?;
        }
        let mismatch = [
            (
                "SOP class",
                &summary.sop_class_uid,
                &self.instance.sop_class_uid,
            ),
            (
                "SOP instance",
                &summary.sop_instance_uid,
                &self.instance.sop_instance_uid,
            ),
        ]
        .into_iter()
        .find(|(_, in_data_set, in_command)| in_data_set.as_deref() != Some(in_command.as_str()))
        .map(|(what, in_data_set, _)| {
            format!(
                "{what} UID in the data set ({}) differs from the command",
                in_data_set.as_deref().unwrap_or("none")
            )
        });
        let stored = StoredInstance {
            path: destination,
            instance: self.instance.clone(),
            summary,
            data_set_offset: self.data_offset,
            data_set_length: self.data_length,
            data_set: self.data_set.take(),
        };
        if let Some(callback) = &self.storage.on_stored {
            callback(&stored);
        }
        let success = match mismatch {
            None => StoreSuccess {
                status: Status::SUCCESS,
                comment: None,
            },
            Some(comment) => StoreSuccess {
                status: Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING,
                comment: Some(comment),
            },
        };
        Ok(Written { success, stored })
    }
}

impl Drop for FileSink {
    /// A sink dropped before `finish` (transfer cut off, refused, failed) removes its file.
    fn drop(&mut self) {
        self.file = None;
        if let Some(temporary) = self.temporary.take() {
            let _ = fs::remove_file(temporary);
        }
    }
}

/// A data set the hardened scan refuses (PS3.4 Table B.2-1: 0xA900).
fn scan_failure(error: scan::ScanError) -> StoreFailure {
    StoreFailure::new(Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, error.to_string())
}

fn file_closed() -> StoreFailure {
    StoreFailure::new(Status::PROCESSING_FAILURE, "file already closed")
}

/// A disk error as a store status: no space is "out of resources" (0xA700), anything else a
/// processing failure.
fn write_failure(path: &Path, error: io::Error) -> StoreFailure {
    let status = match error.raw_os_error() {
        Some(code) if code == libc_enospc() || code == libc_edquot() => Status::OUT_OF_RESOURCES,
        _ if error.kind() == io::ErrorKind::StorageFull => Status::OUT_OF_RESOURCES,
        _ => Status::PROCESSING_FAILURE,
    };
    let reason = if status == Status::OUT_OF_RESOURCES {
        "out of space"
    } else {
        "cannot write"
    };
    StoreFailure::new(status, format!("{reason}: {}: {error}", path.display()))
}

/// ENOSPC and EDQUOT on Linux (no libc dependency for two numbers).
const fn libc_enospc() -> i32 {
    28
}
const fn libc_edquot() -> i32 {
    122
}

static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);
/// Ends the name of every temporary file.
const TEMPORARY_SUFFIX: &str = ".part";
/// Ends a temporary file's prefix ([`FileStorage::with_temporary_prefix`]): never in a prefix,
/// which is made safe as a file name.
const TEMPORARY_SEPARATOR: char = '~';

/// The folder an instance's file goes to in `storage`, by its layout, and the file's name
/// without the extension.
fn final_place(
    storage: &FileStorage,
    instance: &InstanceDescription,
    summary: &Summary,
) -> (PathBuf, String) {
    let folder = |uid: &Option<String>| safe_file_name(uid.as_deref().unwrap_or("unknown"));
    let mut path = storage.root.clone();
    match storage.layout {
        Layout::Flat => {}
        Layout::ByStudy => path.push(folder(&summary.study_instance_uid)),
        Layout::ByStudyAndSeries => {
            path.push(folder(&summary.study_instance_uid));
            path.push(folder(&summary.series_instance_uid));
        }
    }
    (path, safe_file_name(&instance.sop_instance_uid))
}

/// A hidden, unique name in `root` for a file being received: `.<uid>.<pid>-<n>.part`, or
/// `.<prefix>~<uid>.<pid>-<n>.part`.
fn temporary_path(root: &Path, prefix: Option<&str>, sop_instance_uid: &str) -> PathBuf {
    let n = TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed);
    let uid: String = safe_file_name(sop_instance_uid).chars().take(64).collect();
    let pid = std::process::id();
    root.join(match prefix {
        None => format!(".{uid}.{pid}-{n}{TEMPORARY_SUFFIX}"),
        Some(prefix) => format!(".{prefix}{TEMPORARY_SEPARATOR}{uid}.{pid}-{n}{TEMPORARY_SUFFIX}"),
    })
}

/// A file name made from a UID that cannot leave its folder: only `[0-9A-Za-z.-]` are kept (the
/// rest become `_`), at most 128 characters, never empty, never starting with a dot.
pub fn safe_file_name(uid: &str) -> String {
    let mut name: String = uid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
        name.truncate(128);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn uids_become_names_that_stay_in_their_folder() {
        assert_eq!(safe_file_name("1.2.840.113619.2.55"), "1.2.840.113619.2.55");
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._.._etc_passwd");
        assert_eq!(safe_file_name(".."), "_..");
        assert_eq!(safe_file_name("."), "_.");
        assert_eq!(safe_file_name(""), "_");
        assert_eq!(safe_file_name("a/b\\c\0d"), "a_b_c_d");
        assert_eq!(safe_file_name(&"9".repeat(200)).len(), 128);
        assert_eq!(safe_file_name(&".".repeat(200)).len(), 128);
        assert!(!safe_file_name(&".".repeat(200)).starts_with('.'));
    }
}
