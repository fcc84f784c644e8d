//! Stored instances sent in another transfer syntax (PS3.18 8.7.3.5.2: the transfer syntax a
//! WADO-RS client asks for in `Accept`; PS3.5 §10 and Annex A: the transfer syntaxes), without
//! HTTP.
//!
//! * Between the uncompressed transfer syntaxes (Implicit VR Little Endian, Explicit VR Little
//!   and Big Endian, Deflated Explicit VR Little Endian, PS3.5 §A.1–§A.3, §A.5) the data set is
//!   re-encoded by the converter every sender uses
//!   ([`dimsum_dataset::convert::transcode`], as a C-STORE sub-operation is), in three pieces:
//!   the elements before the top-level Pixel Data, which are converted in memory; the Pixel Data
//!   value, streamed from the file in [`CHUNK`]-byte pieces (its words swapped when the byte
//!   order changes, as dicom-rs swaps OW); and the elements after it, converted in memory. A
//!   data set without Pixel Data is converted whole. What is held in memory is bounded by
//!   [`PixelLimits::max_header_bytes`] (a deflated data set is inflated whole, within
//!   [`PixelLimits::max_inflated_bytes`]), never by the size of the pixel data.
//! * From a compressed transfer syntax (PS3.5 §A.4) to an uncompressed one, every frame is
//!   decoded by [`PixelSource::decode_frame`] (dicom-pixeldata) as the body is sent, one frame
//!   in memory at a time within [`PixelLimits::max_frame_bytes`], into native Pixel Data
//!   (PS3.5 §8.2), with the attributes that describe the pixels rewritten to match
//!   ([`decoded_attributes`]).
//! * Compressing is not done: asking for a compressed transfer syntax other than the stored one
//!   is [`TranscodeError::CompressionNotImplemented`].
//!
//! A [`Transcoder`] gives the converted data set as a sequence of chunks; everything here
//! blocks (file reads, decoding, deflating), so callers run it on a blocking pool.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;
use dicom_encoding::encode::Encode;
use dicom_encoding::encode::explicit_be::ExplicitVRBigEndianEncoder;
use dicom_encoding::encode::explicit_le::ExplicitVRLittleEndianEncoder;
use dicom_encoding::encode::implicit_le::ImplicitVRLittleEndianEncoder;
use dimsum_dataset::convert::{self, ConvertError};
use dimsum_dataset::dicom_core::header::{DataElementHeader, Header, Length};
use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::identifier;
use dimsum_dataset::scan::{self, PixelDataValue, ScanError, ScanLimits};
use dimsum_dataset::transfer_syntax::{self, Encoding};
use flate2::Compression;
use flate2::write::DeflateEncoder;

use crate::pixel::source::Data;
use crate::pixel::{ImagePixel, PixelError, PixelLimits, PixelSource, can_decode};

/// Explicit VR Little Endian (PS3.5 §A.2): the default transfer syntax of `application/dicom`
/// (PS3.18 8.7.3.5.2), and the encoding of the data set of every compressed one.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// The largest piece of native Pixel Data read from a file at a time, in bytes (a multiple of
/// every word size, so that words are never split between pieces).
pub const CHUNK: usize = 1024 * 1024;

/// The longest value an element of defined length can have (PS3.5 §7.1.1: a 32-bit length,
/// 0xFFFFFFFF meaning undefined), even.
const MAX_DEFINED_LENGTH: u64 = 0xFFFF_FFFE;

/// How a stored instance is brought to the transfer syntax asked for (PS3.18 8.7.3.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The instance is stored in that transfer syntax: its file is sent as it is.
    AsStored,
    /// Both transfer syntaxes are uncompressed (PS3.5 §A.1–§A.3, §A.5): the data set is
    /// re-encoded.
    Reencode,
    /// The stored transfer syntax is compressed (PS3.5 §A.4) and the one asked for is not: the
    /// frames are decoded into native Pixel Data (PS3.5 §8.2).
    Decompress,
}

/// Why a stored instance cannot be sent in the transfer syntax asked for.
/// [`TranscodeError::status`] says how a server answers it.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The transfer syntax asked for is not one the registry knows.
    #[error("{to:?} is not a transfer syntax this server knows")]
    UnknownTransferSyntax { to: String },
    /// Compressed data asked for, of an instance not stored in it.
    #[error(
        "the instance is stored in {}; sending it in {} would mean compressing it, which this \
         server does not do: it sends compressed data as stored (transfer-syntax=*) or \
         decompressed to an uncompressed transfer syntax such as Explicit VR Little Endian",
        describe(.from),
        describe(.to)
    )]
    CompressionNotImplemented { from: String, to: String },
    /// The stored compressed data cannot be decoded by this server.
    #[error(
        "the instance is stored in {}, which this server cannot decode, so it cannot be sent in {}",
        describe(.from),
        describe(.to)
    )]
    NotDecodable { from: String, to: String },
    /// Neither a re-encoding nor a decoding leads from one to the other.
    #[error("the instance cannot be converted from {} to {}", describe(.from), describe(.to))]
    Unsupported { from: String, to: String },
    /// The frames could not be read or decoded.
    #[error(transparent)]
    Pixel(#[from] PixelError),
    /// The shared converter refused or failed.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The stored data set was refused by the hardened scan.
    #[error("the stored data set cannot be read: {0}")]
    Scan(#[from] ScanError),
    /// The file could not be read.
    #[error("cannot read {what}: {source}")]
    Io { what: String, source: io::Error },
    /// A limit of the server.
    #[error("{what} is {size} bytes, more than the limit of {limit} ({limit_name})")]
    TooLarge {
        what: String,
        size: u64,
        limit: u64,
        limit_name: &'static str,
    },
    /// The stored object contradicts itself (encapsulated Pixel Data in an uncompressed
    /// transfer syntax…).
    #[error("{0}")]
    Inconsistent(String),
    /// A conversion this server does not make.
    #[error("{0} is not implemented")]
    NotImplemented(String),
    /// The converted data could not be encoded.
    #[error("the converted data set cannot be encoded: {0}")]
    Encode(String),
}

impl TranscodeError {
    /// The HTTP status a server answers with: 406 when the transfer syntax asked for cannot be
    /// produced (unknown, compression, no decoder, not implemented); 422 when the stored object
    /// cannot be processed (inconsistent, or over a limit); 500 for a read or encode failure;
    /// the pixel module's own status for its errors.
    pub fn status(&self) -> u16 {
        match self {
            TranscodeError::UnknownTransferSyntax { .. }
            | TranscodeError::CompressionNotImplemented { .. }
            | TranscodeError::NotDecodable { .. }
            | TranscodeError::Unsupported { .. }
            | TranscodeError::NotImplemented(_) => 406,
            TranscodeError::Pixel(error) => error.status(),
            TranscodeError::Convert(error) => match error {
                ConvertError::Compressed { .. } | ConvertError::Unsupported { .. } => 406,
                ConvertError::Scan(_) | ConvertError::Decode { .. } => 422,
                ConvertError::Encode { .. } | ConvertError::Deflate(_) => 500,
            },
            TranscodeError::Scan(_)
            | TranscodeError::TooLarge { .. }
            | TranscodeError::Inconsistent(_) => 422,
            TranscodeError::Io { .. } | TranscodeError::Encode(_) => 500,
        }
    }
}

/// A transfer syntax for messages: its name and UID.
fn describe(uid: &str) -> String {
    match transfer_syntax::name(uid) {
        Some(name) => format!("{name} ({uid})"),
        None => format!("the unknown transfer syntax {uid}"),
    }
}

fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

/// How an instance stored in `from` is sent in `to` (PS3.18 8.7.3.5.2), decided from the
/// transfer syntaxes alone, before anything is read: as stored when they are equal, re-encoded
/// between uncompressed ones, decoded from a compressed one this server decodes to an
/// uncompressed one; an error (406) otherwise.
pub fn plan(from: &str, to: &str) -> Result<Conversion, TranscodeError> {
    let (from, to) = (trim(from), trim(to));
    if from == to {
        return Ok(Conversion::AsStored);
    }
    let error = |make: fn(String, String) -> TranscodeError| make(from.to_owned(), to.to_owned());
    if !transfer_syntax::is_known(to) {
        return Err(TranscodeError::UnknownTransferSyntax { to: to.to_owned() });
    }
    if !transfer_syntax::is_uncompressed(to) {
        return Err(if transfer_syntax::is_encapsulated(to) {
            error(|from, to| TranscodeError::CompressionNotImplemented { from, to })
        } else {
            error(|from, to| TranscodeError::Unsupported { from, to })
        });
    }
    if transfer_syntax::is_uncompressed(from) {
        return Ok(Conversion::Reencode);
    }
    if transfer_syntax::is_encapsulated(from) {
        if can_decode(from) {
            return Ok(Conversion::Decompress);
        }
        return Err(error(|from, to| TranscodeError::NotDecodable { from, to }));
    }
    Err(error(|from, to| TranscodeError::Unsupported { from, to }))
}

/// Where a stored instance's data set is and how it is encoded (a location from the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataSet {
    /// The Part 10 file.
    pub path: PathBuf,
    /// The offset of the data set in the file (after the File Meta Information).
    pub offset: u64,
    /// The length of the data set.
    pub length: u64,
    /// Its transfer syntax.
    pub transfer_syntax: String,
}

impl From<crate::pixel::source::DataReadError> for TranscodeError {
    fn from(error: crate::pixel::source::DataReadError) -> Self {
        TranscodeError::Io {
            what: error.what,
            source: error.source,
        }
    }
}

/// What remains to be sent of a converted data set, in order.
enum Step {
    /// Bytes already converted.
    Bytes(Vec<u8>),
    /// Native Pixel Data copied from the stored data set, words of `swap` bytes reversed
    /// (byte order changed).
    Native {
        offset: u64,
        remaining: u64,
        swap: Option<usize>,
    },
    /// Decoded frames, `next` to `frames` (1-based), then one byte of padding when `pad`.
    Frames {
        source: Box<PixelSource>,
        next: u32,
        frames: u32,
        swap: Option<usize>,
        pad: bool,
    },
}

/// A stored data set being converted to another transfer syntax (PS3.18 8.7.3.5.2): opened
/// with [`Transcoder::open`], which reads and converts what comes before the Pixel Data, and
/// decodes the first frame of compressed Pixel Data (so that most failures are known before a
/// response starts), then read chunk by chunk with
/// [`Transcoder::read_chunk`]. Blocking.
pub struct Transcoder {
    target: String,
    conversion: Conversion,
    data: Option<Data>,
    steps: VecDeque<Step>,
    deflate: Option<DeflateEncoder<Vec<u8>>>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("target", &self.target)
            .field("conversion", &self.conversion)
            .field("steps", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl Transcoder {
    /// Opens the data set `stored` for conversion to `target`, which [`plan`] must allow and
    /// not be the stored transfer syntax ([`Conversion::AsStored`] is sent as it is, not
    /// through here). The data set is scanned within `scan_limits`; what is held in memory is
    /// bounded by `pixel_limits`.
    pub fn open(
        stored: &StoredDataSet,
        target: &str,
        scan_limits: &ScanLimits,
        pixel_limits: &PixelLimits,
    ) -> Result<Transcoder, TranscodeError> {
        let target = trim(target).to_owned();
        let conversion = plan(&stored.transfer_syntax, &target)?;
        let deflate = transfer_syntax::is_deflated(&target);
        let plain_target = if deflate {
            EXPLICIT_VR_LITTLE_ENDIAN
        } else {
            target.as_str()
        };
        let (data, steps) = match conversion {
            Conversion::AsStored => {
                return Err(TranscodeError::Unsupported {
                    from: stored.transfer_syntax.clone(),
                    to: target,
                });
            }
            Conversion::Reencode => reencode(stored, plain_target, scan_limits, pixel_limits)?,
            Conversion::Decompress => decompress(stored, plain_target, scan_limits, pixel_limits)?,
        };
        Ok(Transcoder {
            target,
            conversion,
            data: Some(data),
            steps,
            deflate: deflate.then(|| DeflateEncoder::new(Vec::new(), Compression::default())),
        })
    }

    /// The transfer syntax the data set is converted to.
    pub fn transfer_syntax(&self) -> &str {
        &self.target
    }

    /// How the data set is converted.
    pub fn conversion(&self) -> Conversion {
        self.conversion
    }

    /// The next piece of the converted data set (at most a [`CHUNK`] of native pixel data, one
    /// decoded frame, or the converted elements before or after the Pixel Data), `None` once
    /// it is all given. After an error, nothing more should be asked.
    pub fn read_chunk(&mut self) -> Result<Option<Bytes>, TranscodeError> {
        loop {
            let Some(step) = self.steps.pop_front() else {
                return self.finish();
            };
            let chunk = self.produce(step)?;
            match self.deflate.as_mut() {
                None if chunk.is_empty() => continue,
                None => return Ok(Some(Bytes::from(chunk))),
                Some(encoder) => {
                    encoder
                        .write_all(&chunk)
                        .map_err(|error| TranscodeError::Encode(format!("deflate: {error}")))?;
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Ok(Some(Bytes::from(out)));
                    }
                }
            }
        }
    }

    /// The end: the rest of the deflated stream, then nothing.
    fn finish(&mut self) -> Result<Option<Bytes>, TranscodeError> {
        self.data = None;
        match self.deflate.take() {
            None => Ok(None),
            Some(encoder) => {
                let out = encoder
                    .finish()
                    .map_err(|error| TranscodeError::Encode(format!("deflate: {error}")))?;
                Ok((!out.is_empty()).then(|| Bytes::from(out)))
            }
        }
    }

    /// The bytes of one step, its rest put back at the front.
    fn produce(&mut self, step: Step) -> Result<Vec<u8>, TranscodeError> {
        match step {
            Step::Bytes(bytes) => Ok(bytes),
            Step::Native {
                offset,
                remaining,
                swap,
            } => {
                let size = remaining.min(CHUNK as u64);
                let data = self
                    .data
                    .as_mut()
                    .ok_or_else(|| TranscodeError::Encode("the data set is closed".to_owned()))?;
                let mut bytes = data.read_at(offset, size as usize)?;
                if let Some(unit) = swap {
                    swap_words(&mut bytes, unit);
                }
                if remaining > size {
                    self.steps.push_front(Step::Native {
                        offset: offset + size,
                        remaining: remaining - size,
                        swap,
                    });
                }
                Ok(bytes)
            }
            Step::Frames {
                mut source,
                next,
                frames,
                swap,
                pad,
            } => {
                let mut bytes = source.decode_frame(next)?;
                if let Some(unit) = swap {
                    swap_words(&mut bytes, unit);
                }
                if next < frames {
                    self.steps.push_front(Step::Frames {
                        source,
                        next: next + 1,
                        frames,
                        swap,
                        pad,
                    });
                } else if pad {
                    bytes.push(0);
                }
                Ok(bytes)
            }
        }
    }
}

impl Iterator for Transcoder {
    type Item = Result<Bytes, TranscodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read_chunk() {
            Ok(chunk) => chunk.map(Ok),
            Err(error) => {
                self.steps.clear();
                self.deflate = None;
                Some(Err(error))
            }
        }
    }
}

fn swap_words(bytes: &mut [u8], unit: usize) {
    for word in bytes.chunks_exact_mut(unit) {
        word.reverse();
    }
}

/// Whether the byte order changes between two uncompressed encodings (PS3.5 §7.3).
fn byte_order_changes(from: &str, to: &str) -> bool {
    let big = |uid| transfer_syntax::encoding(uid) == Some(Encoding::ExplicitBig);
    big(from) != big(to)
}

/// Checks that a piece of a data set held in memory is within `max_header_bytes`.
fn check_in_memory(what: &str, size: u64, limits: &PixelLimits) -> Result<(), TranscodeError> {
    if size > limits.max_header_bytes {
        return Err(TranscodeError::TooLarge {
            what: what.to_owned(),
            size,
            limit: limits.max_header_bytes,
            limit_name: "max_header_bytes",
        });
    }
    Ok(())
}

/// The header of an element of defined length in the uncompressed transfer syntax `to` (PS3.5
/// §7.1), by dicom-rs's encoders.
fn element_header(to: &str, tag: Tag, vr: VR, length: u32) -> Result<Vec<u8>, TranscodeError> {
    let header = DataElementHeader::new(tag, vr, Length(length));
    let mut out = Vec::with_capacity(12);
    let written = match transfer_syntax::encoding(to) {
        Some(Encoding::ImplicitLittle) => {
            ImplicitVRLittleEndianEncoder::default().encode_element_header(&mut out, header)
        }
        Some(Encoding::ExplicitLittle) => {
            ExplicitVRLittleEndianEncoder::default().encode_element_header(&mut out, header)
        }
        Some(Encoding::ExplicitBig) => {
            ExplicitVRBigEndianEncoder::default().encode_element_header(&mut out, header)
        }
        None => {
            return Err(TranscodeError::Unsupported {
                from: to.to_owned(),
                to: to.to_owned(),
            });
        }
    };
    written.map_err(|error| TranscodeError::Encode(error.to_string()))?;
    Ok(out)
}

/// The elements of `bytes` (a run of whole top-level elements in `from`) converted to `to` by
/// the shared converter; nothing for no bytes.
fn convert_elements(
    bytes: &[u8],
    from: &str,
    to: &str,
    scan_limits: &ScanLimits,
) -> Result<Vec<u8>, TranscodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(convert::transcode(bytes, from, to, scan_limits)?)
}

/// Opens the stored data set: the file positioned at the data set, or the inflated data set of
/// a deflated transfer syntax; and the encoding its elements are in.
fn open_data(
    stored: &StoredDataSet,
    pixel_limits: &PixelLimits,
) -> Result<(Data, &'static str, u64), TranscodeError> {
    let path = &stored.path;
    let io_error = |source| TranscodeError::Io {
        what: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    file.seek(SeekFrom::Start(stored.offset))
        .map_err(io_error)?;
    let from = trim(&stored.transfer_syntax);
    if transfer_syntax::is_deflated(from) {
        let inflated = crate::pixel::source::inflate(
            &mut file,
            stored.length,
            pixel_limits.max_inflated_bytes,
            path,
        )?;
        let length = inflated.len() as u64;
        return Ok((Data::Memory(inflated), EXPLICIT_VR_LITTLE_ENDIAN, length));
    }
    let plain = match transfer_syntax::encoding(from) {
        Some(Encoding::ImplicitLittle) => "1.2.840.10008.1.2",
        Some(Encoding::ExplicitLittle) => EXPLICIT_VR_LITTLE_ENDIAN,
        Some(Encoding::ExplicitBig) => "1.2.840.10008.1.2.2",
        None => {
            return Err(TranscodeError::Unsupported {
                from: from.to_owned(),
                to: from.to_owned(),
            });
        }
    };
    Ok((
        Data::File {
            file: BufReader::new(file),
            path: path.clone(),
            base: stored.offset,
        },
        plain,
        stored.length,
    ))
}

/// Where the top-level Pixel Data of the opened data set is, by the hardened scan.
fn locate(
    data: &mut Data,
    length: u64,
    plain_from: &str,
    scan_limits: &ScanLimits,
) -> Result<Option<scan::PixelDataLocation>, TranscodeError> {
    let (_, location) = match data {
        Data::Memory(bytes) => {
            scan::locate_pixel_data(Cursor::new(bytes), length, plain_from, scan_limits)?
        }
        Data::File { file, base, .. } => {
            file.seek(SeekFrom::Start(*base))
                .map_err(|source| TranscodeError::Io {
                    what: "the stored data set".to_owned(),
                    source,
                })?;
            scan::locate_pixel_data(&mut *file, length, plain_from, scan_limits)?
        }
    };
    Ok(location)
}

/// The steps of an uncompressed data set re-encoded in `to` (uncompressed, not deflated).
fn reencode(
    stored: &StoredDataSet,
    to: &str,
    scan_limits: &ScanLimits,
    pixel_limits: &PixelLimits,
) -> Result<(Data, VecDeque<Step>), TranscodeError> {
    let (mut data, from, length) = open_data(stored, pixel_limits)?;
    let location = locate(&mut data, length, from, scan_limits)?;
    let mut steps = VecDeque::new();
    let Some(location) = location else {
        check_in_memory("the data set (it has no Pixel Data)", length, pixel_limits)?;
        let bytes = data.read_at(0, length as usize)?;
        steps.push_back(Step::Bytes(convert_elements(
            &bytes,
            from,
            to,
            scan_limits,
        )?));
        return Ok((data, steps));
    };
    let PixelDataValue::Native {
        offset,
        length: value_length,
    } = location.value
    else {
        return Err(TranscodeError::Inconsistent(format!(
            "the Pixel Data is encapsulated, but the transfer syntax {} is not",
            describe(&stored.transfer_syntax)
        )));
    };
    check_in_memory(
        "the data set before its Pixel Data",
        location.header_offset,
        pixel_limits,
    )?;
    let header = data.read_at(0, location.header_offset as usize)?;
    steps.push_back(Step::Bytes(convert_elements(
        &header,
        from,
        to,
        scan_limits,
    )?));
    steps.push_back(Step::Bytes(element_header(
        to,
        tags::PIXEL_DATA,
        location.vr,
        value_length,
    )?));
    // dicom-rs reads OW as 16-bit words and writes them in the byte order of the target; other
    // VRs (OB, UN) are bytes.
    let swap = (location.vr == VR::OW && byte_order_changes(from, to)).then_some(2);
    steps.push_back(Step::Native {
        offset,
        remaining: u64::from(value_length),
        swap,
    });
    let trailer_start = offset + u64::from(value_length);
    let trailer_length = length.saturating_sub(trailer_start);
    check_in_memory(
        "the data set after its Pixel Data",
        trailer_length,
        pixel_limits,
    )?;
    let trailer = data.read_at(trailer_start, trailer_length as usize)?;
    steps.push_back(Step::Bytes(convert_elements(
        &trailer,
        from,
        to,
        scan_limits,
    )?));
    Ok((data, steps))
}

/// The steps of a compressed data set decoded into native Pixel Data in `to` (uncompressed,
/// not deflated).
fn decompress(
    stored: &StoredDataSet,
    to: &str,
    scan_limits: &ScanLimits,
    pixel_limits: &PixelLimits,
) -> Result<(Data, VecDeque<Step>), TranscodeError> {
    let from = trim(&stored.transfer_syntax);
    let source = PixelSource::open(
        &stored.path,
        stored.offset,
        stored.length,
        from,
        scan_limits,
        pixel_limits,
    )?;
    if !source.is_decodable() {
        return Err(TranscodeError::NotDecodable {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    let image = source.image().clone();
    let frames = image.number_of_frames;
    let frame_bytes = image.frame_bytes();
    if frame_bytes > pixel_limits.max_frame_bytes {
        return Err(TranscodeError::TooLarge {
            what: "a decoded frame".to_owned(),
            size: frame_bytes,
            limit: pixel_limits.max_frame_bytes,
            limit_name: "max_frame_bytes",
        });
    }
    if frames > 1 && !image.frame_bits().is_multiple_of(8) {
        return Err(TranscodeError::NotImplemented(format!(
            "decoding {frames} frames of {} bits each (not whole bytes) into one native Pixel Data",
            image.frame_bits()
        )));
    }
    let total = frame_bytes * u64::from(frames);
    let pad = total % 2 == 1;
    let value_length = total + u64::from(pad);
    if value_length > MAX_DEFINED_LENGTH {
        return Err(TranscodeError::TooLarge {
            what: "the decoded Pixel Data".to_owned(),
            size: value_length,
            limit: MAX_DEFINED_LENGTH,
            limit_name: "the 32-bit length of a native Pixel Data element",
        });
    }

    let mut attributes = source.attributes().clone();
    decoded_attributes(&mut attributes, from, &image);
    let header = identifier::encode(&attributes, to)?;

    // The elements after the encapsulated Pixel Data, if any: from its Sequence Delimitation
    // Item (PS3.5 §A.4) to the end of the data set.
    let (mut data, plain_from, length) = open_data(stored, pixel_limits)?;
    let location = locate(&mut data, length, plain_from, scan_limits)?;
    let trailer_start = match location.map(|location| location.value) {
        Some(PixelDataValue::Encapsulated { items }) => items
            .last()
            .map(|item| item.offset + u64::from(item.length) + 8)
            .unwrap_or(length),
        _ => {
            return Err(TranscodeError::Inconsistent(
                "the Pixel Data was found encapsulated, then not".to_owned(),
            ));
        }
    };
    let trailer_length = length.saturating_sub(trailer_start);
    check_in_memory(
        "the data set after its Pixel Data",
        trailer_length,
        pixel_limits,
    )?;
    let trailer = data.read_at(trailer_start, trailer_length as usize)?;

    let vr = if image.bits_allocated > 8 {
        VR::OW
    } else {
        VR::OB
    };
    let swap = (vr == VR::OW && byte_order_changes(EXPLICIT_VR_LITTLE_ENDIAN, to)).then_some(2);
    // The first frame is decoded now, so that an instance whose frames cannot be decoded is
    // refused before a response starts (the others are decoded as the body is sent).
    let mut source = source;
    let mut first = source.decode_frame(1)?;
    if let Some(unit) = swap {
        swap_words(&mut first, unit);
    }
    if frames == 1 && pad {
        first.push(0);
    }
    let mut steps = VecDeque::new();
    steps.push_back(Step::Bytes(header));
    steps.push_back(Step::Bytes(element_header(
        to,
        tags::PIXEL_DATA,
        vr,
        value_length as u32,
    )?));
    steps.push_back(Step::Bytes(first));
    if frames > 1 {
        steps.push_back(Step::Frames {
            source: Box::new(source),
            next: 2,
            frames,
            swap,
            pad,
        });
    }
    steps.push_back(Step::Bytes(convert_elements(
        &trailer,
        plain_from,
        to,
        scan_limits,
    )?));
    Ok((data, steps))
}

/// The transfer syntaxes whose compression is always lossy, with the Lossy Image Compression
/// Method (0028,2114) that names it (PS3.3 C.7.6.1.1.5.1). JPEG 2000 and HTJ2K may be either:
/// their instances' own attributes say which.
const LOSSY: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.4.50", "ISO_10918_1"),
    ("1.2.840.10008.1.2.4.51", "ISO_10918_1"),
    ("1.2.840.10008.1.2.4.81", "ISO_14495_1"),
];

/// The Photometric Interpretation of frames decoded from `from` (PS3.3 C.7.6.3.1.2; PS3.5
/// §8.2.1, §8.2.4): lossy JPEG decoders give RGB whatever the stored colour space
/// (YBR_FULL_422, YBR_FULL); JPEG 2000 and HTJ2K decoders undo the component transform of
/// YBR_ICT and YBR_RCT; others (RLE, lossless JPEG) give the stored colour space.
fn decoded_photometric(from: &str, stored: &str, samples: u16) -> String {
    if samples < 3 {
        return stored.to_owned();
    }
    let jpeg_lossy = matches!(from, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51");
    let jpeg_2000 = matches!(
        from,
        "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.92"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203"
    );
    if jpeg_lossy || (jpeg_2000 && matches!(stored, "YBR_ICT" | "YBR_RCT")) {
        "RGB".to_owned()
    } else {
        stored.to_owned()
    }
}

/// The attributes before the Pixel Data, made to describe the decoded frames (PS3.5 §8.2,
/// PS3.3 C.7.6.3): Photometric Interpretation as decoded, Planar Configuration 0 (decoders give
/// colour by pixel), the attributes of encapsulated Pixel Data only (Extended Offset Table and
/// its lengths, Encapsulated Pixel Data Value Total Length) and group lengths removed. Lossy
/// Image Compression is kept, and set to 01 with its method for a transfer syntax that is
/// always lossy (PS3.3 C.7.6.1.1.5: once lossy compressed, an image stays marked so); the other
/// lossy compression attributes are history and stay as they are. Bits Allocated and Stored
/// are those the frames were decoded with, unchanged.
pub fn decoded_attributes(attributes: &mut InMemDicomObject, from: &str, image: &ImagePixel) {
    let from = trim(from);
    attributes.retain(|element| element.tag().element() != 0x0000);
    for tag in [
        tags::EXTENDED_OFFSET_TABLE,
        tags::EXTENDED_OFFSET_TABLE_LENGTHS,
        tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH,
    ] {
        attributes.remove_element(tag);
    }
    if image.samples_per_pixel > 1 {
        let photometric = decoded_photometric(
            from,
            &image.photometric_interpretation,
            image.samples_per_pixel,
        );
        attributes.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(photometric),
        ));
        attributes.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    if let Some((_, method)) = LOSSY.iter().find(|(uid, _)| *uid == from) {
        attributes.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("01"),
        ));
        if attributes
            .get(tags::LOSSY_IMAGE_COMPRESSION_METHOD)
            .is_none()
        {
            attributes.put(DataElement::new(
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                VR::CS,
                PrimitiveValue::from(*method),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_transfer_syntaxes() {
        let implicit = "1.2.840.10008.1.2";
        let rle = "1.2.840.10008.1.2.5";
        let jpeg = "1.2.840.10008.1.2.4.50";
        let jpeg_ls = "1.2.840.10008.1.2.4.80";
        assert_eq!(plan(implicit, implicit).ok(), Some(Conversion::AsStored));
        assert_eq!(
            plan(implicit, EXPLICIT_VR_LITTLE_ENDIAN).ok(),
            Some(Conversion::Reencode)
        );
        assert_eq!(
            plan(rle, EXPLICIT_VR_LITTLE_ENDIAN).ok(),
            Some(Conversion::Decompress)
        );
        assert_eq!(plan(rle, implicit).ok(), Some(Conversion::Decompress));
        let compress = plan(implicit, jpeg).expect_err("compression");
        assert!(matches!(
            compress,
            TranscodeError::CompressionNotImplemented { .. }
        ));
        assert_eq!(compress.status(), 406);
        assert!(compress.to_string().contains("compressing"), "{compress}");
        assert!(matches!(
            plan(rle, jpeg),
            Err(TranscodeError::CompressionNotImplemented { .. })
        ));
        assert!(matches!(
            plan(jpeg_ls, EXPLICIT_VR_LITTLE_ENDIAN),
            Err(TranscodeError::NotDecodable { .. })
        ));
        assert!(matches!(
            plan(implicit, "1.2.3.4"),
            Err(TranscodeError::UnknownTransferSyntax { .. })
        ));
    }

    #[test]
    fn decoded_colour_is_described_as_it_comes_out_of_the_decoders() {
        let jpeg = "1.2.840.10008.1.2.4.50";
        let rle = "1.2.840.10008.1.2.5";
        let j2k = "1.2.840.10008.1.2.4.91";
        assert_eq!(decoded_photometric(jpeg, "YBR_FULL_422", 3), "RGB");
        assert_eq!(decoded_photometric(jpeg, "YBR_FULL", 3), "RGB");
        assert_eq!(decoded_photometric(jpeg, "MONOCHROME2", 1), "MONOCHROME2");
        assert_eq!(decoded_photometric(rle, "YBR_FULL", 3), "YBR_FULL");
        assert_eq!(decoded_photometric(j2k, "YBR_ICT", 3), "RGB");
        assert_eq!(decoded_photometric(j2k, "YBR_RCT", 3), "RGB");
        assert_eq!(
            decoded_photometric("1.2.840.10008.1.2.4.70", "YBR_FULL", 3),
            "YBR_FULL"
        );
    }

    #[test]
    fn lossy_history_is_kept_and_marked() {
        let image = ImagePixel {
            rows: 2,
            columns: 2,
            samples_per_pixel: 3,
            bits_allocated: 8,
            bits_stored: 8,
            pixel_representation: 0,
            planar_configuration: 1,
            photometric_interpretation: "YBR_FULL_422".to_owned(),
            number_of_frames: 1,
        };
        let text = |tag, value: &str| DataElement::new(tag, VR::CS, PrimitiveValue::from(value));
        let mut attributes = InMemDicomObject::from_element_iter([
            text(tags::PHOTOMETRIC_INTERPRETATION, "YBR_FULL_422"),
            DataElement::new(
                tags::PLANAR_CONFIGURATION,
                VR::US,
                PrimitiveValue::from(1u16),
            ),
            text(tags::LOSSY_IMAGE_COMPRESSION, "00"),
            DataElement::new(
                tags::EXTENDED_OFFSET_TABLE,
                VR::OV,
                PrimitiveValue::U64(vec![0].into()),
            ),
            DataElement::new(Tag(0x0028, 0x0000), VR::UL, PrimitiveValue::from(10u32)),
        ]);
        decoded_attributes(&mut attributes, "1.2.840.10008.1.2.4.50", &image);
        let value = |tag| {
            attributes
                .get(tag)
                .map(|element| element.to_str().expect("text").trim().to_owned())
        };
        assert_eq!(
            value(tags::PHOTOMETRIC_INTERPRETATION).as_deref(),
            Some("RGB")
        );
        assert_eq!(value(tags::PLANAR_CONFIGURATION).as_deref(), Some("0"));
        assert_eq!(value(tags::LOSSY_IMAGE_COMPRESSION).as_deref(), Some("01"));
        assert_eq!(
            value(tags::LOSSY_IMAGE_COMPRESSION_METHOD).as_deref(),
            Some("ISO_10918_1")
        );
        assert!(attributes.get(tags::EXTENDED_OFFSET_TABLE).is_none());
        assert!(attributes.get(Tag(0x0028, 0x0000)).is_none());

        // A lossless syntax leaves the attributes' own word.
        let mut lossless =
            InMemDicomObject::from_element_iter([text(tags::LOSSY_IMAGE_COMPRESSION, "01")]);
        let grey = ImagePixel {
            samples_per_pixel: 1,
            photometric_interpretation: "MONOCHROME2".to_owned(),
            ..image
        };
        decoded_attributes(&mut lossless, "1.2.840.10008.1.2.5", &grey);
        assert_eq!(
            lossless
                .get(tags::LOSSY_IMAGE_COMPRESSION)
                .and_then(|e| e.to_str().ok())
                .as_deref(),
            Some("01")
        );
        assert!(lossless.get(tags::LOSSY_IMAGE_COMPRESSION_METHOD).is_none());
        assert!(lossless.get(tags::PHOTOMETRIC_INTERPRETATION).is_none());
    }
}
