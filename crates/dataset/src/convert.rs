//! Re-encoding a data set between the uncompressed transfer syntaxes (PS3.5 §A.1, §A.2, §A.3,
//! §A.5), as a Storage SCU or SCP does when the accepted presentation context differs from the
//! encoding the object was stored in (PS3.4 §B.4.1).
//!
//! The bytes are first accepted by [`scan_bytes`](crate::scan::scan_bytes), then decoded and
//! re-encoded by dicom-rs, which swaps the bytes of OW, OF, OD, OL and the numeric VRs when the
//! byte order changes. Compressed (encapsulated) pixel data is not decoded here.

use std::io::{self, Read, Write};

use dicom_core::header::Header;
use dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN;
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use crate::scan::{ScanError, ScanLimits, scan_bytes};
use crate::transfer_syntax::{self, describe};
use crate::trim_uid;

/// Why a data set could not be re-encoded (PS3.5 §10: the transfer syntaxes involved).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot convert compressed data from {} to {}", describe(.from), describe(.to))]
    Compressed { from: String, to: String },
    #[error("cannot convert from {} to {}: only the uncompressed transfer syntaxes can be converted", describe(.from), describe(.to))]
    Unsupported { from: String, to: String },
    #[error("the data set was refused: {0}")]
    Scan(#[from] ScanError),
    #[error("could not decode the data set in {}: {source}", describe(.transfer_syntax))]
    Decode {
        transfer_syntax: String,
        #[source]
        source: Box<dicom_object::ReadError>,
    },
    #[error("could not encode the data set in {}: {source}", describe(.transfer_syntax))]
    Encode {
        transfer_syntax: String,
        #[source]
        source: Box<dicom_object::WriteError>,
    },
    #[error("could not deflate the data set: {0}")]
    Deflate(#[source] io::Error),
}

/// Re-encodes the data set `data`, encoded in `from_ts`, in `to_ts`. Both must be among the four
/// uncompressed transfer syntaxes; a compressed one gives [`ConvertError::Compressed`]. The data
/// set is scanned with `limits` before it is decoded. Retired group length elements (gggg,0000)
/// of the top-level data set are dropped, as their values would no longer hold.
pub fn transcode(
    data: &[u8],
    from_ts: &str,
    to_ts: &str,
    limits: &ScanLimits,
) -> Result<Vec<u8>, ConvertError> {
    let (from, to) = (trim_uid(from_ts), trim_uid(to_ts));
    if transfer_syntax::is_encapsulated(from) || transfer_syntax::is_encapsulated(to) {
        return Err(ConvertError::Compressed {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    let unsupported = || ConvertError::Unsupported {
        from: from.to_owned(),
        to: to.to_owned(),
    };
    if !transfer_syntax::is_uncompressed(from) || !transfer_syntax::is_uncompressed(to) {
        return Err(unsupported());
    }

    if from == to {
        // Checked as it would be for a conversion, and returned as it came.
        decode_checked(data, from, limits, false)?;
        return Ok(data.to_vec());
    }
    let mut object = decode_checked(data, from, limits, true)?.ok_or_else(unsupported)?;
    object.retain(|element| element.tag().element() != 0x0000);

    encode(&object, to)
}

/// Decodes the data set `data`, encoded in the uncompressed transfer syntax `ts` (inflated first
/// when deflated), once [`scan_bytes`] has accepted it with `limits`. With `decode` false, only
/// the checks are made and `None` is returned.
pub(crate) fn decode_checked(
    data: &[u8],
    ts: &str,
    limits: &ScanLimits,
    decode: bool,
) -> Result<Option<InMemDicomObject>, ConvertError> {
    let ts = trim_uid(ts);
    if !transfer_syntax::is_uncompressed(ts) {
        return Err(ConvertError::Unsupported {
            from: ts.to_owned(),
            to: ts.to_owned(),
        });
    }
    let inflated;
    let (plain, plain_ts) = if transfer_syntax::is_deflated(ts) {
        inflated = inflate(data, limits)?;
        (inflated.as_slice(), EXPLICIT_VR_LITTLE_ENDIAN)
    } else {
        (data, ts)
    };
    scan_bytes(plain, plain_ts, limits)?;
    if !decode {
        return Ok(None);
    }
    let source_ts = registry_entry(plain_ts).ok_or_else(|| ConvertError::Unsupported {
        from: ts.to_owned(),
        to: ts.to_owned(),
    })?;
    InMemDicomObject::read_dataset_with_ts(plain, source_ts)
        .map(Some)
        .map_err(|source| ConvertError::Decode {
            transfer_syntax: plain_ts.to_owned(),
            source: Box::new(source),
        })
}

/// Encodes `object` in the uncompressed transfer syntax `to` (deflating for Deflated Explicit
/// VR Little Endian), through dicom-rs.
pub(crate) fn encode(object: &InMemDicomObject, to: &str) -> Result<Vec<u8>, ConvertError> {
    let unsupported = || ConvertError::Unsupported {
        from: to.to_owned(),
        to: to.to_owned(),
    };
    let deflate_output = transfer_syntax::is_deflated(to);
    let target_uid = if deflate_output {
        EXPLICIT_VR_LITTLE_ENDIAN
    } else {
        to
    };
    let target_ts = registry_entry(target_uid).ok_or_else(unsupported)?;
    let mut encoded = Vec::new();
    object
        .write_dataset_with_ts(&mut encoded, target_ts)
        .map_err(|source| ConvertError::Encode {
            transfer_syntax: to.to_owned(),
            source: Box::new(source),
        })?;
    if deflate_output {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&encoded).map_err(ConvertError::Deflate)?;
        encoded = encoder.finish().map_err(ConvertError::Deflate)?;
    }
    Ok(encoded)
}

fn registry_entry(uid: &str) -> Option<&'static TransferSyntax> {
    TransferSyntaxRegistry.get(uid)
}

/// Inflates a deflated data set (raw deflate, PS3.5 §A.5) into memory, refusing to grow past
/// [`ScanLimits::max_inflated_size`].
fn inflate(data: &[u8], limits: &ScanLimits) -> Result<Vec<u8>, ConvertError> {
    let mut inflated = Vec::new();
    DeflateDecoder::new(data)
        .take(limits.max_inflated_size.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|source| ScanError::Io { offset: 0, source })?;
    if inflated.len() as u64 > limits.max_inflated_size {
        return Err(ScanError::InflatedTooLarge {
            max: limits.max_inflated_size,
        }
        .into());
    }
    Ok(inflated)
}
