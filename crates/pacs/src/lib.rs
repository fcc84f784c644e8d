//! # dimsum-pacs — the archive
//!
//! * [`archive`]: [`Archive`], the archive of `dimsum serve`: a data directory of stored files
//!   and their index, a `Storage` for C-STORE (with a duplicate policy), the C-FIND, C-GET and
//!   C-MOVE handlers, deletes, scans of existing folders, crash recovery at open.
//! * [`index`]: the index behind a trait ([`index::Index`]), [`index::SqliteIndex`] by default:
//!   typed columns narrow each query with bound parameters, the matching engine decides.
//! * [`hierarchy`]: the Q/R levels (PS3.4 C.6), which attribute lives at which level, and a
//!   hierarchical query planned against them, shared by every archive.
//! * [`matching`]: the C-FIND matching engine (PS3.4 C.2.2.2) and the response identifier
//!   (C.4.1.1.3.2), independent of any storage.
//! * [`folder`]: [`FolderArchive`], an in-memory index of a folder of Part 10 files that serves
//!   hierarchical C-FIND, C-GET and C-MOVE (PS3.4 Annex C) through the `dimsum-net` handler
//!   traits, and takes instances stored later.
//! * [`worklist`]: [`WorklistFolder`], a Modality Worklist (PS3.4 Annex K) answered from a
//!   folder of worklist files, re-read on every query.
//!
//! Files from disk are read through [`file`](mod@file): the Part 10 meta is read by
//! `dimsum_dataset::part10`, the data set passes the hardened scanner `dimsum_dataset::scan`,
//! and only then does dicom-rs read it, up to the Pixel Data.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod archive;
pub mod commitment;
pub mod file;
pub mod folder;
pub mod hierarchy;
pub mod index;
pub mod matching;
pub mod worklist;

pub use archive::{Archive, ArchiveConfig, ArchiveStatistics, DuplicatePolicy};
pub use file::FileError;
pub use folder::{ArchiveError, FolderArchive, FolderArchiveConfig, IndexCounts};
pub use worklist::WorklistFolder;
