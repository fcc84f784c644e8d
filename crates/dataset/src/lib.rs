//! The data-set layer of dimsum: what the Storage service needs to know about the objects it
//! moves.
//!
//! - [`transfer_syntax`]: which transfer syntaxes exist and how they encode a data set
//!   (PS3.5 §10 and Annex A), taken from the dicom-rs transfer syntax registry.
//! - [`sop_class`]: the Storage SOP classes (PS3.4 Annex B), taken from the dicom-rs UID
//!   dictionary.
//! - [`part10`]: the Part 10 file header, preamble and File Meta Information (PS3.10 §7.1).
//! - [`scan`]: the hardening layer. Bytes from the network pass a bounded walk over every
//!   element header (PS3.5 §7) before any general decoder sees them: lengths are checked against
//!   their enclosing container, nesting depth and element count are capped, and large values
//!   are skipped rather than read.
//! - [`convert`]: re-encoding a data set between the uncompressed transfer syntaxes, through
//!   dicom-rs once [`scan`] has accepted it.
//! - [`identifier`]: identifiers (PS3.4 Annex C.4) decoded from the network once [`scan`] has
//!   accepted them, and encoded by dicom-rs (queries, matches, the Failed SOP Instance UID List
//!   of a C-GET or C-MOVE response).
//! - [`charset`]: Specific Character Set with ISO 2022 code extensions (PS3.5 §6.1.2.5), which
//!   dicom-rs leaves undecoded: the text of such data sets decoded to Unicode.
//! - [`query_model`]: the Query/Retrieve and Modality Worklist information models.
//! - [`query_keys`]: matching and return keys as a person writes them (DCMTK's `-k
//!   PatientName=DOE*`, `-k (0040,0100)[0].Modality=CT`), applied to an identifier, and query
//!   files read through [`scan`](mod@scan) (PS3.4 C.4.1.1.3).
//! - [`dump`]: a data set as text for a person, one element per line (what `findscu` prints).
//! - [`json`]: the DICOM JSON Model (PS3.18 F.2), both ways, over the dicom-json crate (QIDO-RS
//!   responses, `findscu --json`).
//!
//! UID syntax (PS3.5 §9.1) is checked by `dimsum-uid`, the validator the Upper Layer uses too.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod charset;
pub mod convert;
pub mod dump;
pub mod elements;
pub mod identifier;
pub mod json;
pub mod part10;
pub mod query_keys;
pub mod query_model;
pub mod scan;
pub mod sop_class;
pub mod transfer_syntax;
pub mod xml;

pub use convert::{ConvertError, transcode};
pub use part10::{FileMeta, Part10Error, encode_header, is_part10_file, read_meta};
pub use query_model::{QueryModel, QueryService};
pub use scan::{ScanError, ScanLimits, Summary, scan, scan_bytes, scan_deflated};

/// The dicom-rs crates this layer is built on, at the exact versions it checks data against,
/// for the layers above (data sets, tags, the dictionary).
pub use dicom_core;
pub use dicom_dictionary_std;
pub use dicom_object;

/// Strips the padding that DICOM adds to make a UI value even in length (a trailing NUL) and the
/// trailing spaces some implementations add instead (PS3.5 §9.1).
pub(crate) fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}
