//! The default storage: each instance becomes a Part 10 file (PS3.10 §7), written under a
//! temporary name and renamed when complete, so that a transfer cut off half-way leaves nothing
//! visible.
//!
//! All disk work (create, write, scan, fsync, rename) runs on tokio's blocking pool, never on
//! the async workers: a slow disk slows the association that writes to it, nothing else. An
//! instance up to [`BUFFER_BELOW`] is gathered in memory, scanned there and written in one
//! blocking task when complete (most instances: one hop to the pool and back); a larger one
//! goes to a blocking task as it arrives, through a bounded channel, so memory stays bounded
//! whatever its size.

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

/// Called after each instance is stored, on the blocking thread that wrote it (so it may read
/// files or parse the data set; it delays the instance's response, nothing else).
pub type StoredCallback = Arc<dyn Fn(&StoredInstance) + Send + Sync>;

/// Writes each received instance as a Part 10 file under `root` (file meta added: the command's
/// SOP class and instance, the negotiated transfer syntax, the calling AE as source AE title).
#[derive(Clone)]
pub struct FileStorage {
    root: PathBuf,
    layout: Layout,
    fsync: bool,
    limits: ScanLimits,
    on_stored: Option<StoredCallback>,
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

    pub fn on_stored(mut self, callback: impl Fn(&StoredInstance) + Send + Sync + 'static) -> Self {
        self.on_stored = Some(Arc::new(callback));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Storage for FileStorage {
    fn begin<'a>(
        &'a self,
        instance: &'a InstanceDescription,
    ) -> BoxFuture<'a, Result<Box<dyn InstanceWriter>, StoreFailure>> {
        let writer = FileWriter::Gathering {
            storage: self.clone(),
            instance: instance.clone(),
            pieces: Vec::new(),
            length: 0,
        };
        Box::pin(async move { Ok(Box::new(writer) as Box<dyn InstanceWriter>) })
    }
}

/// What the async side sends the blocking task that writes a large instance.
enum Piece {
    Data(Vec<Bytes>),
    Finish(oneshot::Sender<Result<StoreSuccess, StoreFailure>>),
}

/// The async end of one instance being written (boxed once per instance, so the size of the
/// larger variant costs nothing).
#[allow(clippy::large_enum_variant)]
enum FileWriter {
    /// Small so far: the pieces are kept until the instance is complete.
    Gathering {
        storage: FileStorage,
        instance: InstanceDescription,
        pieces: Vec<Bytes>,
        length: usize,
    },
    /// Large: a blocking task writes the pieces, handed over a batch at a time.
    Streaming {
        pieces: mpsc::Sender<Piece>,
        batch: Vec<Bytes>,
        batch_length: usize,
    },
}

fn writer_gone() -> StoreFailure {
    StoreFailure::new(Status::PROCESSING_FAILURE, "the file writer stopped")
}

impl InstanceWriter for FileWriter {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            if let FileWriter::Gathering {
                storage,
                instance,
                pieces,
                length,
            } = self
            {
                if *length + data.len() < BUFFER_BELOW {
                    *length += data.len();
                    pieces.push(data);
                    return Ok(());
                }
                // Too large to gather: what came so far is the first batch of a blocking writer.
                let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
                let (storage, instance) = (storage.clone(), instance.clone());
                let gathered = std::mem::take(pieces);
                let gathered_length = *length;
                tokio::task::spawn_blocking(move || write_instance(storage, instance, receiver));
                *self = FileWriter::Streaming {
                    pieces: sender,
                    batch: gathered,
                    batch_length: gathered_length,
                };
            }
            match self {
                FileWriter::Streaming {
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
                    pieces
                        .send(Piece::Data(std::mem::take(batch)))
                        .await
                        .map_err(|_| writer_gone())
                }
                FileWriter::Gathering { .. } => Err(writer_gone()),
            }
        })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StoreSuccess, StoreFailure>> {
        Box::pin(async move {
            match *self {
                FileWriter::Gathering {
                    storage,
                    instance,
                    pieces,
                    ..
                } => tokio::task::spawn_blocking(move || write_whole(storage, instance, pieces))
                    .await
                    .map_err(|_| writer_gone())?,
                FileWriter::Streaming { pieces, batch, .. } => {
                    if !batch.is_empty() {
                        pieces
                            .send(Piece::Data(batch))
                            .await
                            .map_err(|_| writer_gone())?;
                    }
                    let (reply, outcome) = oneshot::channel();
                    pieces
                        .send(Piece::Finish(reply))
                        .await
                        .map_err(|_| writer_gone())?;
                    outcome.await.map_err(|_| writer_gone())?
                }
            }
        })
    }
}

/// The blocking side for a small instance: scans it in memory, then writes, syncs and renames
/// the file in one go (nothing is written for a data set the scan refuses).
fn write_whole(
    storage: FileStorage,
    instance: InstanceDescription,
    pieces: Vec<Bytes>,
) -> Result<StoreSuccess, StoreFailure> {
    let data = match pieces.as_slice() {
        [one] => one.clone(),
        _ => Bytes::from(pieces.concat()),
    };
    let summary = scan::scan_bytes(&data, &instance.transfer_syntax_uid, &storage.limits)
        .map_err(scan_failure)?;
    let mut sink = FileSink::create(storage, instance, &data)?;
    sink.data_set = Some(data);
    sink.complete(summary)
}

/// The blocking side: creates the file, writes every piece, and on `Finish` scans, syncs and
/// renames it. A channel closed before `Finish` (the transfer was cut off) removes the file. A
/// write error is kept and reported at `Finish`; the pieces after it are dropped.
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
            Piece::Finish(reply) => {
                let _ = reply.send(sink.and_then(FileSink::finish));
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
        let temporary = temporary_path(&storage.root, &instance.sop_instance_uid);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temporary)
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

    fn final_path(&self, summary: &Summary) -> PathBuf {
        let folder = |uid: &Option<String>| safe_file_name(uid.as_deref().unwrap_or("unknown"));
        let mut path = self.storage.root.clone();
        match self.storage.layout {
            Layout::Flat => {}
            Layout::ByStudy => path.push(folder(&summary.study_instance_uid)),
            Layout::ByStudyAndSeries => {
                path.push(folder(&summary.study_instance_uid));
                path.push(folder(&summary.series_instance_uid));
            }
        }
        path.push(format!(
            "{}.dcm",
            safe_file_name(&self.instance.sop_instance_uid)
        ));
        path
    }
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
    fn finish(mut self) -> Result<StoreSuccess, StoreFailure> {
        let mut file = self.file.take().ok_or_else(file_closed)?;
        let summary = self.scan(&mut file);
        self.file = Some(file);
        self.complete(summary?)
    }

    /// The data set, already scanned (`summary`), is complete: sync, rename into place, report.
    fn complete(mut self, summary: Summary) -> Result<StoreSuccess, StoreFailure> {
        let Some(file) = self.file.take() else {
            return Err(file_closed());
        };
        if self.storage.fsync {
            file.sync_all()
                .map_err(|e| write_failure(self.temporary_path(), e))?;
        }
        drop(file);
        let destination = self.final_path(&summary);
        let temporary = self.temporary_path().to_path_buf();
        // The folder usually exists: create it only when the rename says it does not.
        let renamed = match fs::rename(&temporary, &destination) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if let Some(folder) = destination.parent() {
                    fs::create_dir_all(folder).map_err(|e| write_failure(folder, e))?;
                }
                fs::rename(&temporary, &destination)
            }
            other => other,
        };
        renamed.map_err(|e| write_failure(&destination, e))?;
        self.temporary = None;
        if self.storage.fsync
            && let Some(folder) = destination.parent()
        {
            File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(|e| write_failure(folder, e))?;
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
        Ok(match mismatch {
            None => StoreSuccess {
                status: Status::SUCCESS,
                comment: None,
            },
            Some(comment) => StoreSuccess {
                status: Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING,
                comment: Some(comment),
            },
        })
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

/// A hidden, unique name in `root` for a file being received.
fn temporary_path(root: &Path, sop_instance_uid: &str) -> PathBuf {
    let n = TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed);
    let uid: String = safe_file_name(sop_instance_uid).chars().take(64).collect();
    root.join(format!(".{uid}.{}-{n}.part", std::process::id()))
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
