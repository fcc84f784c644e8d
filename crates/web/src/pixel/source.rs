//! A stored instance's Pixel Data, located by the hardened scan and read one frame at a time
//! (PS3.5 §8.2 native, §A.4 encapsulated with its Basic or Extended Offset Table).

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dimsum_dataset::dicom_core::value::{DataSetSequence, PixelFragmentSequence, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::meta::FileMetaTableBuilder;
use dimsum_dataset::dicom_object::{FileDicomObject, InMemDicomObject};
use dimsum_dataset::identifier;
use dimsum_dataset::scan::{self, ItemLocation, PixelDataValue, ScanLimits};
use dimsum_dataset::transfer_syntax::{self, Encoding};

use super::codestream::{Codestream, DeclaredSize};
use super::{ImagePixel, PixelError, PixelLimits};

/// Explicit VR Little Endian (PS3.5 §A.2): the transfer syntax of uncompressed frames.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// Where a stored data set's bytes are: the stored file, or (deflated syntaxes) the inflated
/// data set in memory. Shared by the pixel source and the transfer-syntax conversion.
pub(crate) enum Data {
    File {
        file: BufReader<File>,
        path: PathBuf,
        /// The offset of the data set in the file.
        base: u64,
    },
    Memory(Vec<u8>),
}

/// A read of [`Data`] that failed: what was read, and why.
#[derive(Debug)]
pub(crate) struct DataReadError {
    pub(crate) what: String,
    pub(crate) source: io::Error,
}

impl From<DataReadError> for PixelError {
    fn from(DataReadError { what, source }: DataReadError) -> Self {
        PixelError::Io { what, source }
    }
}

impl Data {
    /// `length` bytes at `offset` of the data set; `length` has been checked against a limit.
    pub(crate) fn read_at(&mut self, offset: u64, length: usize) -> Result<Vec<u8>, DataReadError> {
        match self {
            Data::File { file, path, base } => {
                let mut buffer = vec![0u8; length];
                file.seek(SeekFrom::Start(*base + offset))
                    .and_then(|_| file.read_exact(&mut buffer))
                    .map_err(|source| DataReadError {
                        what: format!("{} at offset {}", path.display(), *base + offset),
                        source,
                    })?;
                Ok(buffer)
            }
            Data::Memory(bytes) => usize::try_from(offset)
                .ok()
                .and_then(|start| bytes.get(start..start.checked_add(length)?))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| DataReadError {
                    what: "the inflated data set".to_owned(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "it ends too soon"),
                }),
        }
    }
}

/// How the frames lie in the Pixel Data.
enum Layout {
    /// Native (PS3.5 §8.2): frame k at (k − 1) × the bits of a frame from `offset`.
    Native {
        offset: u64,
        /// Explicit VR Big Endian: words are swapped into little endian on reading.
        big_endian: bool,
        /// The size of a word to swap (big endian only).
        swap_unit: usize,
    },
    /// Encapsulated (PS3.5 §A.4): the fragments (value offset, length) of each frame.
    Encapsulated { frames: Vec<Vec<(u64, u32)>> },
}

/// The Pixel Data of one stored instance: its attributes, and where each frame is. Built with
/// [`PixelSource::open`] on a blocking thread; each frame is read when asked for.
pub struct PixelSource {
    data: Data,
    transfer_syntax: String,
    attributes: InMemDicomObject,
    image: ImagePixel,
    layout: Layout,
    limits: PixelLimits,
}

impl std::fmt::Debug for PixelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PixelSource")
            .field("transfer_syntax", &self.transfer_syntax)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

impl PixelSource {
    /// Opens the instance whose data set is the `length` bytes at `offset` of the file at
    /// `path` (a location from the index), encoded in `transfer_syntax`: the data set is walked
    /// by the hardened scan within `scan_limits`, which finds the Pixel Data; the attributes
    /// before it are decoded; and every frame is placed, checked against the bytes there are.
    pub fn open(
        path: &Path,
        offset: u64,
        length: u64,
        transfer_syntax: &str,
        scan_limits: &ScanLimits,
        limits: &PixelLimits,
    ) -> Result<PixelSource, PixelError> {
        let transfer_syntax = transfer_syntax.trim_end_matches(['\0', ' ']).to_owned();
        let io_error = |source| PixelError::Io {
            what: path.display().to_string(),
            source,
        };
        let mut file = File::open(path).map_err(io_error)?;
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let deflated = transfer_syntax::is_deflated(&transfer_syntax);
        let (mut data, plain_syntax, location) = if deflated {
            let inflated = inflate(&mut file, length, limits.max_inflated_bytes, path)?;
            let (_, location) = scan::locate_pixel_data(
                Cursor::new(&inflated),
                inflated.len() as u64,
                EXPLICIT_VR_LITTLE_ENDIAN,
                scan_limits,
            )?;
            (Data::Memory(inflated), EXPLICIT_VR_LITTLE_ENDIAN, location)
        } else {
            let encoding = transfer_syntax::encoding(&transfer_syntax).ok_or_else(|| {
                PixelError::NotDecodable {
                    transfer_syntax: transfer_syntax.clone(),
                }
            })?;
            let mut reader = BufReader::new(file);
            let (_, location) =
                scan::locate_pixel_data(&mut reader, length, &transfer_syntax, scan_limits)?;
            let plain = match encoding {
                Encoding::ImplicitLittle => IMPLICIT_VR_LITTLE_ENDIAN,
                Encoding::ExplicitLittle => EXPLICIT_VR_LITTLE_ENDIAN,
                Encoding::ExplicitBig => EXPLICIT_VR_BIG_ENDIAN,
            };
            (
                Data::File {
                    file: reader,
                    path: path.to_owned(),
                    base: offset,
                },
                plain,
                location,
            )
        };
        let location = location.ok_or(PixelError::NoPixelData)?;

        // The attributes before the Pixel Data, decoded behind the scan.
        let header_length = location.header_offset;
        if header_length > limits.max_header_bytes {
            return Err(PixelError::TooLarge {
                what: "the data set before its Pixel Data".to_owned(),
                size: header_length,
                limit: limits.max_header_bytes,
                limit_name: "max_header_bytes",
            });
        }
        let header = data.read_at(0, header_length as usize)?;
        let attributes = identifier::decode(&header, plain_syntax, scan_limits)
            .map_err(|error| PixelError::Attributes(error.to_string()))?;
        let image = ImagePixel::from_attributes(&attributes)?;

        let encapsulated_syntax = transfer_syntax::is_encapsulated(&transfer_syntax);
        let layout = match location.value {
            PixelDataValue::Native { offset, length } => {
                if encapsulated_syntax {
                    return Err(PixelError::Fragments(format!(
                        "the transfer syntax {transfer_syntax} is encapsulated, but the Pixel Data has a defined length"
                    )));
                }
                check_native_length(&image, u64::from(length))?;
                let big_endian = plain_syntax == EXPLICIT_VR_BIG_ENDIAN;
                let swap_unit = if image.bits_allocated >= 16 {
                    usize::from(image.bits_allocated / 8)
                } else if location.vr == VR::OW {
                    2
                } else {
                    1
                };
                Layout::Native {
                    offset,
                    big_endian,
                    swap_unit,
                }
            }
            PixelDataValue::Encapsulated { items } => {
                if !encapsulated_syntax {
                    return Err(PixelError::Fragments(format!(
                        "the Pixel Data is encapsulated, but the transfer syntax {transfer_syntax} is not"
                    )));
                }
                let frames = frames_of(&mut data, &attributes, &image, &items, limits)?;
                Layout::Encapsulated { frames }
            }
        };
        Ok(PixelSource {
            data,
            transfer_syntax,
            attributes,
            image,
            layout,
            limits: *limits,
        })
    }

    /// The stored transfer syntax.
    pub fn transfer_syntax(&self) -> &str {
        &self.transfer_syntax
    }

    /// Whether the frames are encapsulated (compressed, PS3.5 §A.4).
    pub fn is_encapsulated(&self) -> bool {
        matches!(self.layout, Layout::Encapsulated { .. })
    }

    /// The attributes before the Pixel Data.
    pub fn attributes(&self) -> &InMemDicomObject {
        &self.attributes
    }

    /// How the frames are laid out.
    pub fn image(&self) -> &ImagePixel {
        &self.image
    }

    /// The limits this source was opened with.
    pub fn limits(&self) -> &PixelLimits {
        &self.limits
    }

    /// The number of frames.
    pub fn number_of_frames(&self) -> u32 {
        self.image.number_of_frames
    }

    /// Checks that frame `frame` (1-based) exists.
    pub fn check_frame(&self, frame: u32) -> Result<(), PixelError> {
        if frame == 0 || frame > self.image.number_of_frames {
            return Err(PixelError::FrameOutOfRange {
                frame,
                frames: self.image.number_of_frames,
            });
        }
        Ok(())
    }

    /// Whether dicom-pixeldata can decode these frames (always, for native ones).
    pub fn is_decodable(&self) -> bool {
        !self.is_encapsulated() || super::render::can_decode(&self.transfer_syntax)
    }

    /// Frame `frame` (1-based) as stored: the bytes of a native frame (in little endian; a
    /// 1-bit frame starts at its first bit and is padded to whole bytes), or the fragments of
    /// an encapsulated frame one after the other.
    pub fn read_frame(&mut self, frame: u32) -> Result<Vec<u8>, PixelError> {
        self.check_frame(frame)?;
        let index = u64::from(frame - 1);
        let limit = self.limits.max_frame_bytes;
        let too_large = |size| PixelError::TooLarge {
            what: format!("frame {frame}"),
            size,
            limit,
            limit_name: "max_frame_bytes",
        };
        match &self.layout {
            Layout::Native {
                offset,
                big_endian,
                swap_unit,
            } => {
                let (offset, big_endian, swap_unit) = (*offset, *big_endian, *swap_unit);
                let bits = self.image.frame_bits();
                let size = bits.div_ceil(8);
                if size > limit {
                    return Err(too_large(size));
                }
                if self.image.bits_allocated == 1 {
                    if big_endian && swap_unit > 1 {
                        return Err(PixelError::NotImplemented(
                            "1-bit pixel data in Explicit VR Big Endian".to_owned(),
                        ));
                    }
                    let first_bit = index * bits;
                    let start = first_bit / 8;
                    let end = (first_bit + bits).div_ceil(8);
                    let bytes = self.data.read_at(offset + start, (end - start) as usize)?;
                    return Ok(shift_bits(&bytes, (first_bit % 8) as u32, bits));
                }
                let mut bytes = self.data.read_at(offset + index * size, size as usize)?;
                if big_endian && swap_unit > 1 {
                    for word in bytes.chunks_exact_mut(swap_unit) {
                        word.reverse();
                    }
                }
                Ok(bytes)
            }
            Layout::Encapsulated { frames } => {
                let fragments =
                    frames
                        .get(index as usize)
                        .cloned()
                        .ok_or(PixelError::FrameOutOfRange {
                            frame,
                            frames: self.image.number_of_frames,
                        })?;
                let size: u64 = fragments.iter().map(|(_, length)| u64::from(*length)).sum();
                if size > limit {
                    return Err(too_large(size));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                for (offset, length) in fragments {
                    bytes.extend_from_slice(&self.data.read_at(offset, length as usize)?);
                }
                Ok(bytes)
            }
        }
    }

    /// Frame `frame` uncompressed, as in Explicit VR Little Endian: a native frame as it is
    /// ([`PixelSource::read_frame`]), an encapsulated one decoded by dicom-pixeldata (colour
    /// frames come out as interleaved RGB, as the decoders give them).
    pub fn decode_frame(&mut self, frame: u32) -> Result<Vec<u8>, PixelError> {
        if !self.is_encapsulated() {
            return self.read_frame(frame);
        }
        super::render::decode_frame(self, frame)
    }

    /// A single-frame object holding frame `frame` (its attributes, Number of Frames 1, the
    /// frame's own item of the Per-frame Functional Groups, and its Pixel Data: native frames
    /// in Explicit VR Little Endian, encapsulated ones as one fragment in the stored transfer
    /// syntax), for dicom-pixeldata.
    pub(crate) fn frame_object(
        &mut self,
        frame: u32,
    ) -> Result<FileDicomObject<InMemDicomObject>, PixelError> {
        let bytes = self.read_frame(frame)?;
        let mut object = self.attributes.clone();
        object.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("1"),
        ));
        object.remove_element(tags::EXTENDED_OFFSET_TABLE);
        object.remove_element(tags::EXTENDED_OFFSET_TABLE_LENGTHS);
        let per_frame = object
            .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|element| element.items())
            .and_then(|items| items.get((frame - 1) as usize))
            .cloned();
        if let Some(item) = per_frame {
            object.put(DataElement::new(
                tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ));
        }
        let syntax = if self.is_encapsulated() {
            self.check_declared_size(frame, &bytes)?;
            object.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PixelFragmentSequence::new_fragments(vec![bytes]),
            ));
            self.transfer_syntax.clone()
        } else {
            let vr = if self.image.bits_allocated > 8 {
                VR::OW
            } else {
                VR::OB
            };
            object.put(DataElement::new(
                tags::PIXEL_DATA,
                vr,
                PrimitiveValue::U8(bytes.into()),
            ));
            EXPLICIT_VR_LITTLE_ENDIAN.to_owned()
        };
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(syntax)
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("2.25.0");
        object
            .with_meta(meta)
            .map_err(|error| PixelError::Attributes(error.to_string()))
    }
}

impl PixelSource {
    /// Checks that a compressed frame's own header declares the size of the attributes (the
    /// decoders allocate what the codestream says).
    fn check_declared_size(&self, frame: u32, bytes: &[u8]) -> Result<(), PixelError> {
        let Some(codestream) = Codestream::of(&self.transfer_syntax) else {
            return Ok(());
        };
        let image = &self.image;
        let expected = DeclaredSize {
            columns: u32::from(image.columns),
            rows: u32::from(image.rows),
            components: u32::from(image.samples_per_pixel),
        };
        match codestream.declared_size(bytes) {
            Some(declared) if declared == expected => Ok(()),
            Some(declared) => Err(PixelError::Decode {
                frame,
                reason: format!(
                    "its codestream declares {} × {} pixels of {} components, the attributes {} × {} of {}",
                    declared.columns,
                    declared.rows,
                    declared.components,
                    expected.columns,
                    expected.rows,
                    expected.components
                ),
            }),
            None => Err(PixelError::Decode {
                frame,
                reason: "its codestream has no header that gives its size".to_owned(),
            }),
        }
    }
}

/// The data set inflated (PS3.5 §A.5), at most `limit` bytes.
pub(crate) fn inflate(
    file: &mut File,
    length: u64,
    limit: u64,
    path: &Path,
) -> Result<Vec<u8>, PixelError> {
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(file.take(length))
        .take(limit.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|source| PixelError::Io {
            what: format!("the deflated data set of {}", path.display()),
            source,
        })?;
    if inflated.len() as u64 > limit {
        return Err(PixelError::TooLarge {
            what: "the inflated data set".to_owned(),
            size: inflated.len() as u64,
            limit,
            limit_name: "max_inflated_bytes",
        });
    }
    Ok(inflated)
}

/// Checks a native Pixel Data length against Rows × Columns × Samples per Pixel × Bits
/// Allocated × Number of Frames (PS3.5 §8.1.1, §8.2): exactly, or one byte more to make it
/// even (PS3.5 §7.1.1).
fn check_native_length(image: &ImagePixel, actual: u64) -> Result<(), PixelError> {
    let bits = u128::from(image.frame_bits()) * u128::from(image.number_of_frames);
    let expected = bits.div_ceil(8);
    let fits = u128::from(actual) == expected
        || (!expected.is_multiple_of(2) && u128::from(actual) == expected + 1);
    if fits {
        return Ok(());
    }
    Err(PixelError::LengthMismatch {
        actual,
        expected: u64::try_from(expected).unwrap_or(u64::MAX),
        rows: image.rows,
        columns: image.columns,
        samples: image.samples_per_pixel,
        bits: image.bits_allocated,
        frames: image.number_of_frames,
    })
}

/// `bits` bits starting at bit `shift` of `bytes` (PS3.5 §8.1.1: the first pixel in the least
/// significant bit), moved to start at bit 0, the last byte padded with zeros.
fn shift_bits(bytes: &[u8], shift: u32, bits: u64) -> Vec<u8> {
    let size = bits.div_ceil(8) as usize;
    let mut out: Vec<u8> = (0..size)
        .map(|i| {
            let low = bytes.get(i).copied().unwrap_or(0);
            if shift == 0 {
                return low;
            }
            let high = bytes.get(i + 1).copied().unwrap_or(0);
            (low >> shift) | (high << (8 - shift))
        })
        .collect();
    let rest = (bits % 8) as u32;
    if rest != 0
        && let Some(last) = out.last_mut()
    {
        *last &= (1u8 << rest) - 1;
    }
    out
}

/// The fragments of each frame of encapsulated Pixel Data (PS3.5 §A.4): by the Extended
/// Offset Table, one frame in all fragments, one fragment per frame, or by the Basic Offset
/// Table; anything else cannot be told apart.
fn frames_of(
    data: &mut Data,
    attributes: &InMemDicomObject,
    image: &ImagePixel,
    items: &[ItemLocation],
    limits: &PixelLimits,
) -> Result<Vec<Vec<(u64, u32)>>, PixelError> {
    let error = |text: String| PixelError::Fragments(text);
    let Some((table, fragments)) = items.split_first() else {
        return Err(error("there is no Basic Offset Table item".to_owned()));
    };
    let Some(first) = fragments.first() else {
        return Err(error("there is no fragment".to_owned()));
    };
    let frames = image.number_of_frames as usize;
    let piece = |item: &ItemLocation| (item.offset, item.length);
    // Each frame's first fragment, found by its offset from the first fragment's item tag.
    let fragment_at = |relative: u64| {
        fragments
            .binary_search_by_key(&relative, |item| item.item_offset - first.item_offset)
            .ok()
    };

    if let Some(offsets) = attributes.get(tags::EXTENDED_OFFSET_TABLE) {
        let offsets = u64_values(offsets)
            .ok_or_else(|| error("the Extended Offset Table cannot be read".to_owned()))?;
        let lengths = attributes
            .get(tags::EXTENDED_OFFSET_TABLE_LENGTHS)
            .and_then(u64_values)
            .ok_or_else(|| {
                error("the Extended Offset Table has no Extended Offset Table Lengths".to_owned())
            })?;
        if offsets.len() != frames || lengths.len() != frames {
            return Err(error(format!(
                "the Extended Offset Table has {} offsets and {} lengths for {frames} frames",
                offsets.len(),
                lengths.len()
            )));
        }
        // PS3.5 A.4: with an Extended Offset Table, each frame is one fragment.
        return offsets
            .iter()
            .zip(&lengths)
            .enumerate()
            .map(|(index, (&offset, &length))| {
                let found = fragment_at(offset).and_then(|i| fragments.get(i)).ok_or_else(|| {
                    error(format!(
                        "the Extended Offset Table places frame {} at offset {offset}, where no fragment starts",
                        index + 1
                    ))
                })?;
                if length > u64::from(found.length) {
                    return Err(error(format!(
                        "the Extended Offset Table gives frame {} {length} bytes, more than its fragment's {}",
                        index + 1,
                        found.length
                    )));
                }
                Ok(vec![(found.offset, length as u32)])
            })
            .collect();
    }
    if frames == 1 {
        return Ok(vec![fragments.iter().map(piece).collect()]);
    }
    if fragments.len() == frames {
        return Ok(fragments.iter().map(|item| vec![piece(item)]).collect());
    }
    if table.length == 0 {
        return Err(error(format!(
            "{frames} frames are in {} fragments, and there is no Basic or Extended Offset Table",
            fragments.len()
        )));
    }
    if u64::from(table.length) > limits.max_header_bytes {
        return Err(PixelError::TooLarge {
            what: "the Basic Offset Table".to_owned(),
            size: u64::from(table.length),
            limit: limits.max_header_bytes,
            limit_name: "max_header_bytes",
        });
    }
    let table_bytes = data.read_at(table.offset, table.length as usize)?;
    let offsets: Vec<u64> = table_bytes
        .chunks_exact(4)
        .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    if offsets.len() != frames {
        return Err(error(format!(
            "the Basic Offset Table has {} offsets for {frames} frames",
            offsets.len()
        )));
    }
    let mut starts = Vec::with_capacity(frames);
    for (index, &offset) in offsets.iter().enumerate() {
        let start = fragment_at(offset).ok_or_else(|| {
            error(format!(
                "the Basic Offset Table places frame {} at offset {offset}, where no fragment starts",
                index + 1
            ))
        })?;
        if index == 0 && start != 0 {
            return Err(error(
                "the Basic Offset Table does not start at 0".to_owned(),
            ));
        }
        if starts.last().is_some_and(|&previous| start <= previous) {
            return Err(error(format!(
                "the Basic Offset Table's offset of frame {} does not follow the previous one's",
                index + 1
            )));
        }
        starts.push(start);
    }
    Ok(starts
        .iter()
        .enumerate()
        .map(|(index, &start)| {
            let end = starts.get(index + 1).copied().unwrap_or(fragments.len());
            fragments
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .map(piece)
                .collect()
        })
        .collect())
}

/// The 64-bit values of an OV element (the Extended Offset Table and its lengths).
fn u64_values(element: &dimsum_dataset::dicom_object::mem::InMemElement) -> Option<Vec<u64>> {
    match element.value().primitive()? {
        PrimitiveValue::U64(values) => Some(values.to_vec()),
        PrimitiveValue::U8(bytes) if bytes.len() % 8 == 0 => Some(
            bytes
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_move_to_the_start_of_the_frame() {
        // Bits 3.. of 0b1010_1000, 0b0000_0011: 1,0,1,0,1 then 1,1 → 0b111_0101.
        assert_eq!(
            shift_bits(&[0b1010_1000, 0b0000_0011], 3, 7),
            vec![0b111_0101]
        );
        assert_eq!(shift_bits(&[0xFF, 0xFF], 0, 12), vec![0xFF, 0x0F]);
        assert_eq!(shift_bits(&[0xF0, 0x0F], 4, 8), vec![0xFF]);
    }
}
