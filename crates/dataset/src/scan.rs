//! The hardening layer: a bounded walk over every element header of a data set (PS3.5 §7)
//! before any general decoder sees bytes that came from outside the process.
//!
//! dicom-rs allocates whatever length an element header claims and recurses into nested
//! sequences. [`scan`] visits every header, at every depth, without recursion and without
//! reading values it does not need, and checks:
//! - that each defined length fits in the bytes that remain in its enclosing container (the data
//!   set, a sequence or an item of defined length);
//! - that undefined lengths appear only where PS3.5 §7.5 and §A.4 allow them (SQ, UN, and
//!   encapsulated Pixel Data) and end before their container does;
//! - that item and delimiter tags (FFFE,xxxx) appear only where they belong;
//! - the nesting depth and the number of headers against [`ScanLimits`];
//! - that each value length is a whole number of values of its VR (PS3.5 §6.2), and the Basic
//!   Offset Table a whole number of 32-bit offsets (PS3.5 §A.4).
//!
//! The scan reads the bytes exactly as dicom-rs will: in implicit VR the VR comes from the same
//! dictionary, and a value length that is not a multiple of its VR's size is refused because
//! dicom-rs would read only the whole values and lose its place in the stream. One deliberate
//! difference from PS3.5 §6.2.2: an explicit VR UN element of undefined length is walked in the
//! enclosing encoding, not as implicit VR little endian, because that is how dicom-rs 0.10
//! reads it; bytes encoded per §6.2.2 are therefore refused rather than handed to a decoder that
//! would misread them.
//!
//! It reads into memory only the few top-level values of [`Summary`] and seeks over everything
//! else, so a 500 MB Pixel Data costs one seek.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::ops::{AttributeSelector, AttributeSelectorStep};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use flate2::read::DeflateDecoder;

use crate::part10::has_long_length;
use crate::transfer_syntax::{self, Encoding};
use crate::trim_uid;

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITATION: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITATION: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0008);
const DOUBLE_FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0009);
const SOP_CLASS_UID: Tag = Tag(0x0008, 0x0016);
const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
const MODALITY: Tag = Tag(0x0008, 0x0060);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
const UNDEFINED_LENGTH: u32 = u32::MAX;

/// Bounds on what a data set may make the scanner do. Limits are explicit (PS3.5 §7.5 sets no
/// bound on nesting; these are ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Deepest nesting of sequences (and encapsulated pixel data) accepted.
    pub max_depth: usize,
    /// Most headers accepted: data elements, items, fragments and delimiters, at any depth.
    pub max_elements: usize,
    /// Longest value read into memory (the attributes of [`Summary`]); all others are skipped.
    pub max_value_read: usize,
    /// Largest inflated size of a deflated data set (PS3.5 §A.5), against decompression bombs.
    pub max_inflated_size: u64,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_depth: 16,
            max_elements: 1_000_000,
            max_value_read: 1024 * 1024,
            max_inflated_size: 4 * 1024 * 1024 * 1024,
        }
    }
}

/// What a scan learned about a composite object: the identifying attributes of its top-level
/// data set (PS3.3 C.12.1 SOP Common, C.7.1.1 Patient, C.7.2.1 General Study, C.7.3.1 General
/// Series), without their padding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// (0008,0016) SOP Class UID.
    pub sop_class_uid: Option<String>,
    /// (0008,0018) SOP Instance UID.
    pub sop_instance_uid: Option<String>,
    /// (0020,000D) Study Instance UID.
    pub study_instance_uid: Option<String>,
    /// (0020,000E) Series Instance UID.
    pub series_instance_uid: Option<String>,
    /// (0010,0020) Patient ID.
    pub patient_id: Option<String>,
    /// (0008,0060) Modality.
    pub modality: Option<String>,
    /// Number of data elements at every depth (items, fragments and delimiters not counted).
    pub elements: usize,
    /// True if the top-level data set has Pixel Data, Float or Double Float Pixel Data.
    pub has_pixel_data: bool,
    /// The tag and VR of that element (in implicit VR, the dictionary's: OW for Pixel Data).
    pub pixel_data_header: Option<(Tag, VR)>,
}

/// Where the top-level Pixel Data (7FE0,0010) of a data set lies (PS3.5 §7.1 and §8.2 native,
/// §A.4 encapsulated), as [`locate_pixel_data`] found it while scanning, or any element that
/// [`locate_element`] was asked for. Offsets count from the first byte of the data set (of the
/// inflated data set for a deflated transfer syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelDataLocation {
    /// Offset of the element's header.
    pub header_offset: u64,
    /// The VR of the element (in implicit VR, the dictionary's: OW).
    pub vr: VR,
    /// Its value.
    pub value: PixelDataValue,
}

/// The value of a Pixel Data element (PS3.5 §8.2, §A.4), or of any other element located
/// (`Native`: a value of defined length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelDataValue {
    /// Native pixel data of defined length.
    Native { offset: u64, length: u32 },
    /// Encapsulated pixel data: every item in order, the Basic Offset Table first.
    Encapsulated { items: Vec<ItemLocation> },
}

/// One item of encapsulated pixel data (PS3.5 §A.4): the offset of its tag, and the offset and
/// length of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemLocation {
    pub item_offset: u64,
    pub offset: u64,
    pub length: u32,
}

/// Why a data set was refused (PS3.5 §7). Offsets count from the first byte of the data set.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("could not read the data set at offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    #[error("the data set is truncated: it ends at offset {offset}, inside {inside}")]
    Truncated { offset: u64, inside: String },
    #[error(
        "element header at offset {offset} needs {needed} bytes, only {remaining} remain in {inside}"
    )]
    HeaderPastEnd {
        offset: u64,
        needed: u64,
        remaining: u64,
        inside: String,
    },
    #[error("element {tag} at offset {offset} claims {length} bytes, only {remaining} remain")]
    LengthPastEnd {
        tag: Tag,
        offset: u64,
        length: u32,
        remaining: u64,
    },
    #[error(
        "element {tag} at offset {offset} has VR {vr} and length {length}, not a whole number of {unit}-byte values"
    )]
    LengthNotMultiple {
        tag: Tag,
        offset: u64,
        vr: &'static str,
        length: u32,
        unit: u32,
    },
    #[error("element {tag} at offset {offset} has an unknown VR code {code}")]
    UnknownVr { tag: Tag, offset: u64, code: VrCode },
    #[error(
        "element {tag} at offset {offset} has an undefined length, allowed only for SQ, UN and encapsulated Pixel Data, not {what}"
    )]
    UndefinedLengthNotAllowed { tag: Tag, offset: u64, what: String },
    #[error("{tag} at offset {offset} nests deeper than the limit of {max_depth} levels")]
    TooDeep {
        tag: Tag,
        offset: u64,
        max_depth: usize,
    },
    #[error("more than {max} elements and items (the limit was reached at offset {offset})")]
    TooManyElements { offset: u64, max: usize },
    #[error(
        "{what} {tag} at offset {offset} has an undefined length and never ends: {inside} ends at offset {end}"
    )]
    Unterminated {
        what: &'static str,
        tag: Tag,
        offset: u64,
        inside: String,
        end: u64,
    },
    #[error("unexpected {tag} at offset {offset}: {reason}")]
    UnexpectedTag {
        tag: Tag,
        offset: u64,
        reason: String,
    },
    #[error("delimiter {tag} at offset {offset} has length {length}; it must be 0")]
    DelimiterLength { tag: Tag, offset: u64, length: u32 },
    #[error(
        "element {tag} at offset {offset} is {length} bytes long, more than the {max} bytes we read into memory"
    )]
    ValueTooLong {
        tag: Tag,
        offset: u64,
        length: u32,
        max: usize,
    },
    #[error("the inflated data set exceeds the limit of {max} bytes")]
    InflatedTooLarge { max: u64 },
    #[error("cannot scan a data set in {0}")]
    UnknownTransferSyntax(String),
}

/// A VR code as it appeared on the wire, shown as letters when it is made of letters and as hex
/// bytes otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrCode(pub [u8; 2]);

impl fmt::Display for VrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.0;
        if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() {
            write!(f, "\"{}{}\"", char::from(a), char::from(b))
        } else {
            write!(f, "0x{a:02X} 0x{b:02X}")
        }
    }
}

/// Scans `length` bytes of a data set encoded in `transfer_syntax_uid`, starting at the reader's
/// current position. Values are skipped by seeking. A deflated transfer syntax is inflated as in
/// [`scan_deflated`]. To notice data that stops short of `length`, the scan finally seeks to the
/// end of the reader, and leaves it there.
pub fn scan<R: Read + Seek>(
    mut reader: R,
    length: u64,
    transfer_syntax_uid: &str,
    limits: &ScanLimits,
) -> Result<Summary, ScanError> {
    let encoding = encoding_of(transfer_syntax_uid)?;
    if transfer_syntax::is_deflated(transfer_syntax_uid) {
        return scan_deflated(reader.take(length), limits);
    }
    let io_error = |source| ScanError::Io { offset: 0, source };
    let start = reader.stream_position().map_err(io_error)?;
    let summary = Scanner::new(SeekSource(&mut reader), Some(length), encoding, limits).run()?;
    // Skipping by seeking cannot notice that the last value reaches past the end of the data.
    let actual_end = reader.seek(SeekFrom::End(0)).map_err(io_error)?;
    if actual_end < start.saturating_add(length) {
        return Err(ScanError::Truncated {
            offset: actual_end.saturating_sub(start),
            inside: "the last element".to_owned(),
        });
    }
    Ok(summary)
}

/// [`scan`], which also says where the top-level Pixel Data is (`None` when there is none): the
/// same bounded walk, recording the offset of its value, or of each item of encapsulated pixel
/// data (at most [`ScanLimits::max_elements`] of them).
pub fn locate_pixel_data<R: Read + Seek>(
    reader: R,
    length: u64,
    transfer_syntax_uid: &str,
    limits: &ScanLimits,
) -> Result<(Summary, Option<PixelDataLocation>), ScanError> {
    let path = AttributeSelector::from(PIXEL_DATA);
    locate_element(reader, length, transfer_syntax_uid, &path, limits)
}

/// [`scan`], which also says where the element at `path` is (items numbered from 0; `None` when
/// there is none, or it is a sequence): the same bounded walk, recording the offset of its
/// value, or of each item of encapsulated pixel data. This is how a bulk data element is found
/// in a stored file without decoding anything else.
pub fn locate_element<R: Read + Seek>(
    mut reader: R,
    length: u64,
    transfer_syntax_uid: &str,
    path: &AttributeSelector,
    limits: &ScanLimits,
) -> Result<(Summary, Option<PixelDataLocation>), ScanError> {
    let encoding = encoding_of(transfer_syntax_uid)?;
    if transfer_syntax::is_deflated(transfer_syntax_uid) {
        let source = StreamSource(DeflateDecoder::new(reader.take(length)));
        let mut scanner = Scanner::new(source, None, Encoding::ExplicitLittle, limits);
        scanner.target = Some(Target::new(path));
        return scanner.run_located();
    }
    let io_error = |source| ScanError::Io { offset: 0, source };
    let start = reader.stream_position().map_err(io_error)?;
    let mut scanner = Scanner::new(SeekSource(&mut reader), Some(length), encoding, limits);
    scanner.target = Some(Target::new(path));
    let located = scanner.run_located()?;
    let actual_end = reader.seek(SeekFrom::End(0)).map_err(io_error)?;
    if actual_end < start.saturating_add(length) {
        return Err(ScanError::Truncated {
            offset: actual_end.saturating_sub(start),
            inside: "the last element".to_owned(),
        });
    }
    Ok(located)
}

/// The element [`locate_element`] looks for, and what it found.
struct Target {
    /// The items entered (sequence tag, item index from 0), then the element's tag.
    items: Vec<(Tag, u32)>,
    tag: Tag,
    found: Option<PixelDataLocation>,
    /// While the fragments of the element found are being read: the depth of their frame.
    fragments_at: Option<usize>,
}

impl Target {
    fn new(path: &AttributeSelector) -> Target {
        let items = path
            .iter()
            .filter_map(|step| match *step {
                AttributeSelectorStep::Nested { tag, item } => Some((tag, item)),
                AttributeSelectorStep::Tag(_) => None,
            })
            .collect();
        Target {
            items,
            tag: path.last_tag(),
            found: None,
            fragments_at: None,
        }
    }
}

/// Scans a data set held in memory; see [`scan`].
pub fn scan_bytes(
    data: &[u8],
    transfer_syntax_uid: &str,
    limits: &ScanLimits,
) -> Result<Summary, ScanError> {
    scan(
        io::Cursor::new(data),
        data.len() as u64,
        transfer_syntax_uid,
        limits,
    )
}

/// Scans a Deflated Explicit VR Little Endian data set (PS3.5 §A.5): inflates the raw deflate
/// stream from `reader` and walks the explicit VR little endian data set inside, skipping values
/// by reading them into a small buffer. The data set ends where the stream does; it may not
/// inflate to more than [`ScanLimits::max_inflated_size`].
pub fn scan_deflated<R: Read>(reader: R, limits: &ScanLimits) -> Result<Summary, ScanError> {
    let source = StreamSource(DeflateDecoder::new(reader));
    Scanner::new(source, None, Encoding::ExplicitLittle, limits).run()
}

/// Scans a data set read from a stream that cannot seek (an HTTP body as it arrives): values
/// are skipped by reading them, and the data set ends where the reader does. A deflated
/// transfer syntax is inflated as in [`scan_deflated`].
pub fn scan_stream<R: Read>(
    reader: R,
    transfer_syntax_uid: &str,
    limits: &ScanLimits,
) -> Result<Summary, ScanError> {
    if transfer_syntax::is_deflated(transfer_syntax_uid) {
        return scan_deflated(reader, limits);
    }
    let encoding = encoding_of(transfer_syntax_uid)?;
    Scanner::new(StreamSource(reader), None, encoding, limits).run()
}

fn encoding_of(transfer_syntax_uid: &str) -> Result<Encoding, ScanError> {
    transfer_syntax::encoding(transfer_syntax_uid).ok_or_else(|| {
        ScanError::UnknownTransferSyntax(transfer_syntax::describe(transfer_syntax_uid))
    })
}

/// Where the scanner's bytes come from: a seekable reader skips by seeking, a stream by reading.
trait Source {
    /// Reads until `buf` is full or the data ends; returns how many bytes were read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Moves `count` bytes forward; returns how many were passed (fewer only at the end of a
    /// stream).
    fn skip(&mut self, count: u64) -> io::Result<u64>;
}

fn fill_from<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

struct SeekSource<'r, R>(&'r mut R);

impl<R: Read + Seek> Source for SeekSource<'_, R> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        fill_from(self.0, buf)
    }

    fn skip(&mut self, count: u64) -> io::Result<u64> {
        let offset = i64::try_from(count)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "skip too large"))?;
        self.0.seek_relative(offset)?;
        Ok(count)
    }
}

struct StreamSource<R>(R);

impl<R: Read> Source for StreamSource<R> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        fill_from(&mut self.0, buf)
    }

    fn skip(&mut self, count: u64) -> io::Result<u64> {
        io::copy(&mut (&mut self.0).take(count), &mut io::sink())
    }
}

/// What an open container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Data elements: the top-level data set, or a sequence item.
    Elements,
    /// Items of a sequence (SQ, or UN of undefined length).
    Items,
    /// Fragments of encapsulated pixel data (PS3.5 §A.4).
    Fragments,
}

/// An open container: the top-level data set, a sequence, an item or encapsulated pixel data.
#[derive(Debug, Clone, Copy)]
struct Frame {
    content: Content,
    /// The tag that opened it (the element, or the item tag).
    tag: Tag,
    /// Offset of the header that opened it.
    offset: u64,
    /// Where it ends if its length is defined.
    end: Option<u64>,
    /// How far it may reach: its own end or, for an undefined length, its container's limit.
    limit: u64,
    encoding: Encoding,
    /// Items (or fragments) read so far in it.
    items: u64,
}

impl Frame {
    fn describe(&self, is_top_level: bool) -> String {
        if is_top_level {
            return "the data set".to_owned();
        }
        match self.content {
            Content::Elements => format!("the item at offset {}", self.offset),
            Content::Items => format!("sequence {} at offset {}", self.tag, self.offset),
            Content::Fragments => format!("the pixel data at offset {}", self.offset),
        }
    }

    fn what(&self) -> &'static str {
        match self.content {
            Content::Elements => "item",
            Content::Items => "sequence",
            Content::Fragments => "encapsulated pixel data",
        }
    }
}

/// One header as read from the wire.
struct Header {
    tag: Tag,
    /// `None` for item and delimiter tags, and for implicit VR elements.
    vr: Option<VR>,
    length: u32,
}

struct Scanner<'l, S> {
    source: S,
    limits: &'l ScanLimits,
    /// Bytes consumed so far, from the start of the data set.
    position: u64,
    /// True when the data set's length is not known: it ends where the (inflated) stream ends.
    ends_at_eof: bool,
    stack: Vec<Frame>,
    /// Number of open sequences and encapsulated pixel data elements.
    depth: usize,
    headers: usize,
    summary: Summary,
    /// `Some` when an element is to be located ([`locate_element`]).
    target: Option<Target>,
}

impl<'l, S: Source> Scanner<'l, S> {
    fn new(source: S, length: Option<u64>, encoding: Encoding, limits: &'l ScanLimits) -> Self {
        let top = Frame {
            content: Content::Elements,
            tag: Tag(0, 0),
            offset: 0,
            end: length,
            limit: length.unwrap_or(limits.max_inflated_size),
            encoding,
            items: 0,
        };
        Scanner {
            source,
            limits,
            position: 0,
            ends_at_eof: length.is_none(),
            stack: vec![top],
            depth: 0,
            headers: 0,
            summary: Summary::default(),
            target: None,
        }
    }

    fn run_located(self) -> Result<(Summary, Option<PixelDataLocation>), ScanError> {
        let (summary, target) = self.walk()?;
        Ok((summary, target.and_then(|target| target.found)))
    }

    fn run(self) -> Result<Summary, ScanError> {
        self.walk().map(|(summary, _)| summary)
    }

    fn walk(mut self) -> Result<(Summary, Option<Target>), ScanError> {
        while let Some(frame) = self.stack.last().copied() {
            let is_top_level = self.stack.len() == 1;
            if frame.end == Some(self.position) {
                self.stack.pop();
                if frame.content != Content::Elements {
                    self.depth = self.depth.saturating_sub(1);
                }
                continue;
            }
            let remaining = frame.limit.saturating_sub(self.position);
            if remaining == 0 {
                if self.ends_at_eof && self.stack.len() == 1 {
                    return Err(ScanError::InflatedTooLarge {
                        max: self.limits.max_inflated_size,
                    });
                }
                let inside = self.container_description(1);
                return Err(ScanError::Unterminated {
                    what: frame.what(),
                    tag: frame.tag,
                    offset: frame.offset,
                    inside,
                    end: frame.limit,
                });
            }
            let header_offset = self.position;
            let Some(header) = self.read_header(&frame, is_top_level, remaining)? else {
                // The stream ended cleanly between two top-level elements.
                return Ok((self.summary, self.target));
            };
            self.headers += 1;
            if self.headers > self.limits.max_elements {
                return Err(ScanError::TooManyElements {
                    offset: header_offset,
                    max: self.limits.max_elements,
                });
            }
            match frame.content {
                Content::Elements => self.on_element(&frame, header, header_offset)?,
                Content::Items => self.on_sequence_content(&frame, header, header_offset)?,
                Content::Fragments => self.on_fragment(&frame, header, header_offset)?,
            }
        }
        Ok((self.summary, self.target))
    }

    /// Describes the container `level` frames below the innermost one (0 = innermost).
    fn container_description(&self, level: usize) -> String {
        let index = self.stack.len().checked_sub(level + 1);
        match index.and_then(|i| self.stack.get(i)) {
            Some(frame) => frame.describe(index == Some(0)),
            None => "the data set".to_owned(),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ScanError> {
        let filled = self.source.fill(buf).map_err(|source| ScanError::Io {
            offset: self.position,
            source,
        })?;
        self.position += filled as u64;
        if filled < buf.len() {
            return Err(ScanError::Truncated {
                offset: self.position,
                inside: self.container_description(0),
            });
        }
        Ok(())
    }

    fn skip(&mut self, count: u64) -> Result<(), ScanError> {
        let skipped = self.source.skip(count).map_err(|source| ScanError::Io {
            offset: self.position,
            source,
        })?;
        self.position += skipped;
        if skipped < count {
            return Err(ScanError::Truncated {
                offset: self.position,
                inside: self.container_description(0),
            });
        }
        Ok(())
    }

    fn header_past_end(&self, offset: u64, needed: u64, remaining: u64) -> ScanError {
        ScanError::HeaderPastEnd {
            offset,
            needed,
            remaining,
            inside: self.container_description(0),
        }
    }

    /// Reads the next header; `None` when a data set of unknown length ends cleanly.
    fn read_header(
        &mut self,
        frame: &Frame,
        is_top_level: bool,
        remaining: u64,
    ) -> Result<Option<Header>, ScanError> {
        let mut first = [0u8; 8];
        if self.ends_at_eof && is_top_level {
            let filled = self
                .source
                .fill(&mut first)
                .map_err(|source| ScanError::Io {
                    offset: self.position,
                    source,
                })?;
            self.position += filled as u64;
            match filled {
                0 => return Ok(None),
                8 => {}
                _ => {
                    return Err(ScanError::Truncated {
                        offset: self.position,
                        inside: "an element header".to_owned(),
                    });
                }
            }
            if remaining < 8 {
                return Err(ScanError::InflatedTooLarge {
                    max: self.limits.max_inflated_size,
                });
            }
        } else {
            if remaining < 8 {
                return Err(self.header_past_end(self.position, 8, remaining));
            }
            self.read_exact(&mut first)?;
        }

        let big_endian = frame.encoding == Encoding::ExplicitBig;
        let u16_at = |i: usize| {
            let bytes = [first[i], first[i + 1]];
            if big_endian {
                u16::from_be_bytes(bytes)
            } else {
                u16::from_le_bytes(bytes)
            }
        };
        let u32_at = |i: usize| {
            let bytes = [first[i], first[i + 1], first[i + 2], first[i + 3]];
            if big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        let tag = Tag(u16_at(0), u16_at(2));
        if tag.group() == 0xFFFE || frame.encoding == Encoding::ImplicitLittle {
            // Item and delimiter tags carry no VR in any encoding (PS3.5 §7.5).
            return Ok(Some(Header {
                tag,
                vr: None,
                length: u32_at(4),
            }));
        }
        let code = [first[4], first[5]];
        let offset = self.position - 8;
        let vr = VR::from_binary(code).ok_or(ScanError::UnknownVr {
            tag,
            offset,
            code: VrCode(code),
        })?;
        let length = if has_long_length(vr) {
            if remaining < 12 {
                return Err(self.header_past_end(offset, 12, remaining));
            }
            let mut long = [0u8; 4];
            self.read_exact(&mut long)?;
            if big_endian {
                u32::from_be_bytes(long)
            } else {
                u32::from_le_bytes(long)
            }
        } else {
            u32::from(u16_at(6))
        };
        Ok(Some(Header {
            tag,
            vr: Some(vr),
            length,
        }))
    }

    fn check_length(&self, frame: &Frame, header: &Header, offset: u64) -> Result<u64, ScanError> {
        let remaining = frame.limit.saturating_sub(self.position);
        if u64::from(header.length) > remaining {
            if self.ends_at_eof && frame.limit == self.limits.max_inflated_size {
                return Err(ScanError::InflatedTooLarge {
                    max: self.limits.max_inflated_size,
                });
            }
            return Err(ScanError::LengthPastEnd {
                tag: header.tag,
                offset,
                length: header.length,
                remaining,
            });
        }
        Ok(self.position + u64::from(header.length))
    }

    fn open(&mut self, frame: Frame) -> Result<(), ScanError> {
        if frame.content != Content::Elements {
            if self.depth >= self.limits.max_depth {
                return Err(ScanError::TooDeep {
                    tag: frame.tag,
                    offset: frame.offset,
                    max_depth: self.limits.max_depth,
                });
            }
            self.depth += 1;
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A header inside the top-level data set or an item.
    fn on_element(&mut self, frame: &Frame, header: Header, offset: u64) -> Result<(), ScanError> {
        let tag = header.tag;
        if tag.group() == 0xFFFE {
            let is_open_item =
                tag == ITEM_DELIMITATION && self.stack.len() > 1 && frame.end.is_none();
            if !is_open_item {
                return Err(ScanError::UnexpectedTag {
                    tag,
                    offset,
                    reason: format!(
                        "an item or delimiter tag among the data elements of {}",
                        self.container_description(0)
                    ),
                });
            }
            return self.close_with_delimiter(&header, offset);
        }
        self.summary.elements += 1;
        let is_top_level = self.stack.len() == 1;
        if is_top_level && matches!(tag, PIXEL_DATA | FLOAT_PIXEL_DATA | DOUBLE_FLOAT_PIXEL_DATA) {
            self.summary.has_pixel_data = true;
            self.summary.pixel_data_header =
                Some((tag, header.vr.unwrap_or_else(|| implicit_vr(tag))));
        }
        if self.is_target(tag)
            && !self.is_sequence(frame, &header, offset)?
            && let Some(target) = self.target.as_mut()
        {
            if header.length == UNDEFINED_LENGTH {
                // Its fragments come next, in the frame opened below.
                target.fragments_at = Some(self.stack.len() + 1);
            }
            target.found = Some(PixelDataLocation {
                header_offset: offset,
                vr: header.vr.unwrap_or_else(|| implicit_vr(tag)),
                value: if header.length == UNDEFINED_LENGTH {
                    PixelDataValue::Encapsulated { items: Vec::new() }
                } else {
                    PixelDataValue::Native {
                        offset: self.position,
                        length: header.length,
                    }
                },
            });
        }

        if header.length == UNDEFINED_LENGTH {
            let (content, encoding) = self.undefined_length_content(frame, &header, offset)?;
            return self.open(Frame {
                content,
                tag,
                offset,
                end: None,
                limit: frame.limit,
                encoding,
                items: 0,
            });
        }

        let end = self.check_length(frame, &header, offset)?;
        let is_sequence = match header.vr {
            Some(vr) => vr == VR::SQ,
            None => dictionary_says_sequence(tag),
        };
        if is_sequence {
            return self.open(Frame {
                content: Content::Items,
                tag,
                offset,
                end: Some(end),
                limit: end,
                encoding: frame.encoding,
                items: 0,
            });
        }
        let vr = header.vr.unwrap_or_else(|| implicit_vr(tag));
        let unit = value_unit(vr);
        if !header.length.is_multiple_of(unit) {
            return Err(ScanError::LengthNotMultiple {
                tag,
                offset,
                vr: vr.to_string(),
                length: header.length,
                unit,
            });
        }
        if is_top_level && summary_slot(&mut self.summary, tag).is_some() {
            if header.length as usize > self.limits.max_value_read {
                return Err(ScanError::ValueTooLong {
                    tag,
                    offset,
                    length: header.length,
                    max: self.limits.max_value_read,
                });
            }
            let mut value = vec![0u8; header.length as usize];
            self.read_exact(&mut value)?;
            if let Some(slot) = summary_slot(&mut self.summary, tag) {
                *slot = Some(decode_text(&value));
            }
            return Ok(());
        }
        self.skip(u64::from(header.length))
    }

    /// What an element of undefined length contains, or why it may not have one (PS3.5 §7.5,
    /// §6.2.2 for UN, §A.4 for encapsulated pixel data).
    fn undefined_length_content(
        &self,
        frame: &Frame,
        header: &Header,
        offset: u64,
    ) -> Result<(Content, Encoding), ScanError> {
        let tag = header.tag;
        match header.vr {
            Some(VR::SQ) => Ok((Content::Items, frame.encoding)),
            // PS3.5 §6.2.2 says implicit VR little endian; dicom-rs reads it in the enclosing
            // encoding, and the scan must see what the decoder will see (see the module docs).
            Some(VR::UN) => Ok((Content::Items, frame.encoding)),
            // Encapsulated pixel data is OB (PS3.5 §A.4); files written with OW exist in the wild
            // (some of pydicom's JPEG-LS, JPEG 2000 and RLE test files) and DCMTK, pynetdicom and
            // dicom-rs read them as encapsulated too.
            Some(VR::OB | VR::OW) if tag == PIXEL_DATA => Ok((Content::Fragments, frame.encoding)),
            Some(vr) => Err(ScanError::UndefinedLengthNotAllowed {
                tag,
                offset,
                what: format!("VR {}", vr.to_string()),
            }),
            None => match StandardDataDictionary.by_tag(tag).map(|entry| entry.vr()) {
                None | Some(VirtualVr::Exact(VR::SQ)) => Ok((Content::Items, frame.encoding)),
                Some(_) => Err(ScanError::UndefinedLengthNotAllowed {
                    tag,
                    offset,
                    what: "an element that the dictionary does not list as a sequence".to_owned(),
                }),
            },
        }
    }

    /// A header inside a sequence: an item, or the sequence delimiter.
    fn on_sequence_content(
        &mut self,
        frame: &Frame,
        header: Header,
        offset: u64,
    ) -> Result<(), ScanError> {
        if header.tag == ITEM
            && let Some(open) = self.stack.last_mut()
        {
            open.items += 1;
        }
        match header.tag {
            ITEM if header.length == UNDEFINED_LENGTH => self.open(Frame {
                content: Content::Elements,
                tag: ITEM,
                offset,
                end: None,
                limit: frame.limit,
                encoding: frame.encoding,
                items: 0,
            }),
            ITEM => {
                let end = self.check_length(frame, &header, offset)?;
                self.open(Frame {
                    content: Content::Elements,
                    tag: ITEM,
                    offset,
                    end: Some(end),
                    limit: end,
                    encoding: frame.encoding,
                    items: 0,
                })
            }
            SEQUENCE_DELIMITATION if frame.end.is_none() => {
                self.close_with_delimiter(&header, offset)
            }
            tag => Err(ScanError::UnexpectedTag {
                tag,
                offset,
                reason: format!(
                    "expected an item {ITEM}{} in {}",
                    if frame.end.is_none() {
                        " or a sequence delimiter"
                    } else {
                        ""
                    },
                    self.container_description(0)
                ),
            }),
        }
    }

    /// A header inside encapsulated pixel data: a fragment (the first is the offset table), or
    /// the sequence delimiter (PS3.5 §A.4).
    fn on_fragment(&mut self, frame: &Frame, header: Header, offset: u64) -> Result<(), ScanError> {
        match header.tag {
            ITEM if header.length == UNDEFINED_LENGTH => {
                Err(ScanError::UndefinedLengthNotAllowed {
                    tag: ITEM,
                    offset,
                    what: "a pixel data fragment".to_owned(),
                })
            }
            ITEM => {
                self.check_length(frame, &header, offset)?;
                let depth = self.stack.len();
                if let Some(Target {
                    found:
                        Some(PixelDataLocation {
                            value: PixelDataValue::Encapsulated { items },
                            ..
                        }),
                    fragments_at,
                    ..
                }) = self.target.as_mut()
                    && *fragments_at == Some(depth)
                {
                    items.push(ItemLocation {
                        item_offset: offset,
                        offset: self.position,
                        length: header.length,
                    });
                }
                let is_offset_table = frame.items == 0;
                if let Some(open) = self.stack.last_mut() {
                    open.items += 1;
                }
                if is_offset_table && !header.length.is_multiple_of(4) {
                    return Err(ScanError::LengthNotMultiple {
                        tag: ITEM,
                        offset,
                        vr: "Basic Offset Table",
                        length: header.length,
                        unit: 4,
                    });
                }
                self.skip(u64::from(header.length))
            }
            SEQUENCE_DELIMITATION => self.close_with_delimiter(&header, offset),
            tag => Err(ScanError::UnexpectedTag {
                tag,
                offset,
                reason: format!(
                    "expected a fragment {ITEM} or a sequence delimiter in {}",
                    self.container_description(0)
                ),
            }),
        }
    }

    /// Closes the innermost container, of undefined length, at its delimiter.
    fn close_with_delimiter(&mut self, header: &Header, offset: u64) -> Result<(), ScanError> {
        if header.length != 0 {
            return Err(ScanError::DelimiterLength {
                tag: header.tag,
                offset,
                length: header.length,
            });
        }
        let depth = self.stack.len();
        if let Some(target) = self.target.as_mut()
            && target.fragments_at == Some(depth)
        {
            target.fragments_at = None;
        }
        if let Some(frame) = self.stack.pop()
            && frame.content != Content::Elements
        {
            self.depth = self.depth.saturating_sub(1);
        }
        Ok(())
    }

    /// Whether the element `tag` at the current position is the one [`locate_element`] looks
    /// for: the same tag, in the same items of the same sequences.
    fn is_target(&self, tag: Tag) -> bool {
        let Some(target) = &self.target else {
            return false;
        };
        if target.tag != tag || self.stack.len() != 2 * target.items.len() + 1 {
            return false;
        }
        target
            .items
            .iter()
            .enumerate()
            .all(|(n, &(sequence, item))| {
                let opened = self.stack.get(2 * n + 1);
                let inside = self.stack.get(2 * n + 2);
                opened.is_some_and(|frame| {
                    frame.content == Content::Items
                        && frame.tag == sequence
                        && frame.items == u64::from(item) + 1
                }) && inside.is_some_and(|frame| frame.content == Content::Elements)
            })
    }

    /// Whether an element holds items rather than a value (PS3.5 §7.5).
    fn is_sequence(&self, frame: &Frame, header: &Header, offset: u64) -> Result<bool, ScanError> {
        if header.length == UNDEFINED_LENGTH {
            let (content, _) = self.undefined_length_content(frame, header, offset)?;
            return Ok(content == Content::Items);
        }
        Ok(match header.vr {
            Some(vr) => vr == VR::SQ,
            None => dictionary_says_sequence(header.tag),
        })
    }
}

/// The VR of an implicit VR element (PS3.5 §7.1.3): the dictionary's, resolved as dicom-rs
/// resolves it (US for US-or-SS, OW for OB-or-OW), or UN for an element it does not know.
fn implicit_vr(tag: Tag) -> VR {
    StandardDataDictionary
        .by_tag(tag)
        .map_or(VR::UN, |entry| entry.vr().relaxed())
}

/// True if the standard dictionary gives this tag the VR SQ (needed in implicit VR, PS3.5 §7.1.3).
fn dictionary_says_sequence(tag: Tag) -> bool {
    implicit_vr(tag) == VR::SQ
}

/// The size of one value of a binary VR (PS3.5 §6.2, Table 6.2-1); 1 for byte and text VRs.
fn value_unit(vr: VR) -> u32 {
    use VR::*;
    match vr {
        US | SS | OW => 2,
        AT | FL | OF | OL | SL | UL => 4,
        FD | OD | OV | SV | UV => 8,
        _ => 1,
    }
}

fn summary_slot(summary: &mut Summary, tag: Tag) -> Option<&mut Option<String>> {
    match tag {
        SOP_CLASS_UID => Some(&mut summary.sop_class_uid),
        SOP_INSTANCE_UID => Some(&mut summary.sop_instance_uid),
        STUDY_INSTANCE_UID => Some(&mut summary.study_instance_uid),
        SERIES_INSTANCE_UID => Some(&mut summary.series_instance_uid),
        PATIENT_ID => Some(&mut summary.patient_id),
        MODALITY => Some(&mut summary.modality),
        _ => None,
    }
}

/// A text value without its padding (PS3.5 §6.2: trailing NUL for UI, spaces for the others).
fn decode_text(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    trim_uid(text.trim_start_matches(' ')).to_owned()
}
