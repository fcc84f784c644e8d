//! # dimsum-pacs — the archive
//!
//! * [`matching`]: the C-FIND matching engine (PS3.4 C.2.2.2) and the response identifier
//!   (C.4.1.1.3.2), independent of any storage.
//! * [`folder`]: [`FolderArchive`], an in-memory index of a folder of Part 10 files that serves
//!   hierarchical C-FIND, C-GET and C-MOVE (PS3.4 Annex C) through the `dimsum-net` handler
//!   traits, and takes instances stored later.
//! * [`worklist`]: [`WorklistFolder`], a Modality Worklist (PS3.4 Annex K) answered from a
//!   folder of worklist files, re-read on every query.
//!
//! Files from disk are read through [`file`]: the Part 10 meta is read by
//! `dimsum_dataset::part10`, the data set passes the hardened scanner `dimsum_dataset::scan`,
//! and only then does dicom-rs read it, up to the Pixel Data.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod file;
pub mod folder;
pub mod hierarchy;
pub mod index;
pub mod matching;
pub mod worklist;

pub use file::FileError;
pub use folder::{ArchiveError, FolderArchive, FolderArchiveConfig, IndexCounts};
pub use worklist::WorklistFolder;
