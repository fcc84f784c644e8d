//! Storage Service Class user (PS3.4 Annex B): C-STORE of data sets and Part 10 files.
//!
//! Files are streamed from disk: only the file meta is parsed, the data set goes from the file
//! into P-DATA-TF PDUs in chunks. When the peer did not accept a file's transfer syntax, an
//! uncompressed data set is converted (in memory) to one it accepted; compressed data cannot be.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dimsum_dataset::part10::{self, FileMeta};
use dimsum_dataset::{convert, scan::ScanLimits, transfer_syntax};
use dimsum_dimse::message::{CStoreRq, CStoreRsp, Message, Priority};
use dimsum_ul::negotiation::ProposedContext;
use dimsum_ul::uids::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use crate::{Association, Error};

/// The C-STORE-RQ fields that describe what is stored (PS3.7 §9.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub priority: Priority,
    /// Move Originator AE Title and Message ID, when storing as a C-MOVE sub-operation.
    pub move_originator: Option<(String, u16)>,
}

impl StoreRequest {
    fn to_message(&self, message_id: u16) -> Message {
        Message::CStoreRq(CStoreRq {
            message_id,
            affected_sop_class_uid: self.sop_class_uid.clone(),
            affected_sop_instance_uid: self.sop_instance_uid.clone(),
            priority: self.priority,
            move_originator_ae_title: self.move_originator.as_ref().map(|(ae, _)| ae.clone()),
            move_originator_message_id: self.move_originator.as_ref().map(|(_, id)| *id),
            data_set_present: true,
        })
    }
}

/// Sends a data set held in memory (encoded in the transfer syntax of `presentation_context_id`)
/// and returns the peer's C-STORE-RSP.
pub async fn store_data_set(
    association: &mut Association,
    presentation_context_id: u8,
    request: &StoreRequest,
    data_set: &[u8],
) -> Result<CStoreRsp, Error> {
    let message_id = association.next_message_id();
    association
        .send_message(
            presentation_context_id,
            &request.to_message(message_id),
            Some(data_set),
        )
        .await?;
    await_store_response(association, message_id).await
}

/// Streams a data set of `length` bytes from `reader` and returns the peer's C-STORE-RSP.
pub async fn store_from_reader<R: Read>(
    association: &mut Association,
    presentation_context_id: u8,
    request: &StoreRequest,
    reader: &mut R,
    length: u64,
) -> Result<CStoreRsp, Error> {
    let message_id = association.next_message_id();
    association
        .send_message_streaming(
            presentation_context_id,
            &request.to_message(message_id),
            reader,
            length,
        )
        .await?;
    await_store_response(association, message_id).await
}

async fn await_store_response(
    association: &mut Association,
    message_id: u16,
) -> Result<CStoreRsp, Error> {
    let response = association.receive_command().await?;
    association.discard_data_set().await?;
    match response.message {
        Message::CStoreRsp(rsp) if rsp.message_id_being_responded_to == message_id => Ok(rsp),
        other => Err(Error::UnexpectedMessage(format!(
            "expected the C-STORE-RSP to message {message_id}, got {}",
            other.command_field()
        ))),
    }
}

/// A Part 10 file ready to be sent: its meta and where its data set lies.
#[derive(Debug, Clone)]
pub struct StoreFile {
    pub path: PathBuf,
    pub meta: FileMeta,
    /// Offset of the data set in the file (after the file meta).
    pub data_offset: u64,
    /// Length of the data set in bytes.
    pub data_length: u64,
}

/// Why one file could not be stored; the association goes on (unlike [`Error`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable DICOM file: {reason}")]
    NotDicom { path: PathBuf, reason: String },
    #[error("no presentation context was accepted for SOP class {sop_class_uid}")]
    NoContext { sop_class_uid: String },
    #[error(
        "transfer syntax {transfer_syntax_uid} not accepted by the peer and compressed data cannot be converted"
    )]
    CannotConvert { transfer_syntax_uid: String },
    #[error("cannot convert from {from} to {to}: {reason}")]
    Conversion {
        from: String,
        to: String,
        reason: String,
    },
    #[error(transparent)]
    Network(#[from] Error),
}

impl StoreFileError {
    /// Whether the association is gone (the rest of a batch cannot go on it).
    pub fn ends_association(&self) -> bool {
        matches!(self, StoreFileError::Network(error) if error.ends_association())
    }
}

/// What happened to one stored file.
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    pub response: CStoreRsp,
    /// The transfer syntax the data set was converted to, when it was.
    pub converted_to: Option<String>,
}

impl StoreFile {
    /// Reads the file meta of a Part 10 file (PS3.10 §7.1); the data set itself is not read.
    pub fn open(path: impl Into<PathBuf>) -> Result<StoreFile, StoreFileError> {
        let path = path.into();
        let read_error = |source| StoreFileError::Read {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(read_error)?;
        let file_length = file.metadata().map_err(read_error)?.len();
        let (meta, data_offset) =
            part10::read_meta(&mut BufReader::new(file)).map_err(|e| StoreFileError::NotDicom {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if meta.media_storage_sop_class_uid.is_empty()
            || meta.media_storage_sop_instance_uid.is_empty()
        {
            return Err(StoreFileError::NotDicom {
                path,
                reason: "the file meta has no media storage SOP class or instance UID".into(),
            });
        }
        let data_length = file_length.saturating_sub(data_offset);
        Ok(StoreFile {
            path,
            meta,
            data_offset,
            data_length,
        })
    }

    fn request(&self, move_originator: Option<(String, u16)>) -> StoreRequest {
        StoreRequest {
            sop_class_uid: self.meta.media_storage_sop_class_uid.clone(),
            sop_instance_uid: self.meta.media_storage_sop_instance_uid.clone(),
            priority: Priority::Medium,
            move_originator,
        }
    }
}

/// Which transfer syntaxes a batch proposes (PS3.8 §9.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferSyntaxProposal {
    /// For each SOP class, a context per transfer syntax its files have, plus, when some are
    /// uncompressed, a fallback context with the uncompressed syntaxes for conversion (like
    /// DCMTK's `storescu -R` with fallback).
    AsFiles,
    /// One context per SOP class with only this transfer syntax; files are converted to it.
    Only(String),
}

/// The uncompressed syntaxes a sender can convert between, in order of preference.
const CONVERTIBLE: [&str; 3] = [
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
];

/// The presentation contexts to propose for sending `files`.
pub fn propose_contexts(
    files: &[StoreFile],
    proposal: &TransferSyntaxProposal,
) -> Vec<ProposedContext> {
    let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for file in files {
        let syntaxes = by_class
            .entry(&file.meta.media_storage_sop_class_uid)
            .or_default();
        if !syntaxes.contains(&file.meta.transfer_syntax_uid.as_str()) {
            syntaxes.push(&file.meta.transfer_syntax_uid);
        }
    }
    let mut contexts = Vec::new();
    for (sop_class, syntaxes) in by_class {
        match proposal {
            TransferSyntaxProposal::Only(ts) => {
                contexts.push(ProposedContext::new(sop_class, [ts.as_str()]))
            }
            TransferSyntaxProposal::AsFiles => {
                for ts in &syntaxes {
                    contexts.push(ProposedContext::new(sop_class, [*ts]));
                }
                if syntaxes
                    .iter()
                    .any(|ts| transfer_syntax::is_uncompressed(ts))
                {
                    contexts.push(ProposedContext::new(sop_class, CONVERTIBLE));
                }
            }
        }
    }
    contexts
}

/// Sends one Part 10 file on an established association: as it is when its transfer syntax was
/// accepted, converted when it is uncompressed and another uncompressed syntax was accepted.
pub async fn store_file(
    association: &mut Association,
    file: &StoreFile,
    move_originator: Option<(String, u16)>,
) -> Result<StoreOutcome, StoreFileError> {
    let sop_class = &file.meta.media_storage_sop_class_uid;
    let file_ts = &file.meta.transfer_syntax_uid;
    let request = file.request(move_originator);
    let read_error = |source| StoreFileError::Read {
        path: file.path.clone(),
        source,
    };
    let negotiated = association.negotiated();
    let same_syntax = negotiated.accepted().find(|c| {
        &c.abstract_syntax == sop_class && c.transfer_syntax.as_deref() == Some(file_ts.as_str())
    });
    if let Some(context) = same_syntax {
        let id = context.id;
        let mut reader = File::open(&file.path).map_err(read_error)?;
        reader
            .seek(SeekFrom::Start(file.data_offset))
            .map_err(read_error)?;
        let response =
            store_from_reader(association, id, &request, &mut reader, file.data_length).await?;
        return Ok(StoreOutcome {
            response,
            converted_to: None,
        });
    }
    let convertible_target = negotiated
        .accepted()
        .filter(|c| &c.abstract_syntax == sop_class)
        .filter_map(|c| c.transfer_syntax.clone().map(|ts| (c.id, ts)))
        .find(|(_, ts)| transfer_syntax::is_uncompressed(ts));
    let Some((id, target)) = convertible_target else {
        if negotiated
            .accepted()
            .any(|c| &c.abstract_syntax == sop_class)
        {
            return Err(StoreFileError::CannotConvert {
                transfer_syntax_uid: file_ts.clone(),
            });
        }
        return Err(StoreFileError::NoContext {
            sop_class_uid: sop_class.clone(),
        });
    };
    if !transfer_syntax::is_uncompressed(file_ts) {
        return Err(StoreFileError::CannotConvert {
            transfer_syntax_uid: file_ts.clone(),
        });
    }
    let mut data = Vec::new();
    let mut reader = File::open(&file.path).map_err(read_error)?;
    reader
        .seek(SeekFrom::Start(file.data_offset))
        .map_err(read_error)?;
    reader.read_to_end(&mut data).map_err(read_error)?;
    let converted =
        convert::transcode(&data, file_ts, &target, &ScanLimits::default()).map_err(|e| {
            StoreFileError::Conversion {
                from: file_ts.clone(),
                to: target.clone(),
                reason: e.to_string(),
            }
        })?;
    let response = store_data_set(association, id, &request, &converted).await?;
    Ok(StoreOutcome {
        response,
        converted_to: Some(target),
    })
}

/// Lists the files under `paths` (folders recursively), sorted, for a batch.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        collect_into(path, &mut files)?;
    }
    Ok(files)
}

fn collect_into(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            collect_into(&entry, files)?;
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}
