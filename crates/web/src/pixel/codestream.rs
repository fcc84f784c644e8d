//! The image size a compressed frame declares in its own header (ISO/IEC 10918-1 B.2.2 frame
//! header of JPEG and JPEG-LS; ISO/IEC 15444-1 A.5.1 SIZ marker of JPEG 2000, A.1 and I.4 for
//! the codestream and the JP2 box structure), read before a decoder sees the frame: the
//! decoders allocate what the codestream declares, so a frame whose header disagrees with Rows,
//! Columns and Samples per Pixel is refused first (PS3.5 §8.2.1 and §A.4: they must agree).

/// The most marker segments or boxes walked before the size must have been found.
const MAX_SEGMENTS: usize = 4096;

/// What a codestream declares: columns, rows and components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredSize {
    pub columns: u32,
    pub rows: u32,
    pub components: u32,
}

/// The kind of codestream a transfer syntax carries, when its header is read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codestream {
    /// JPEG (ISO/IEC 10918-1) and JPEG-LS (ISO/IEC 14495-1), which share the marker syntax.
    Jpeg,
    /// JPEG 2000 (ISO/IEC 15444-1), a codestream or a JP2 file.
    Jpeg2000,
}

impl Codestream {
    /// The codestream of a transfer syntax (PS3.5 §A.4.1–A.4.4, A.4.10–A.4.11); `None` for
    /// the others (RLE's decoder sizes its output by the attributes).
    pub fn of(transfer_syntax: &str) -> Option<Codestream> {
        let jpeg = [
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.51",
            "1.2.840.10008.1.2.4.57",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.81",
        ];
        let jpeg2000 = [
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91",
            "1.2.840.10008.1.2.4.92",
            "1.2.840.10008.1.2.4.93",
            "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.4.202",
            "1.2.840.10008.1.2.4.203",
        ];
        if jpeg.contains(&transfer_syntax) {
            Some(Codestream::Jpeg)
        } else if jpeg2000.contains(&transfer_syntax) {
            Some(Codestream::Jpeg2000)
        } else {
            None
        }
    }

    /// The size `frame` declares; `None` when no header can be found within the frame.
    pub fn declared_size(self, frame: &[u8]) -> Option<DeclaredSize> {
        match self {
            Codestream::Jpeg => jpeg_size(frame),
            Codestream::Jpeg2000 => jpeg2000_size(frame),
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *bytes.get(at)?,
        *bytes.get(at + 1)?,
        *bytes.get(at + 2)?,
        *bytes.get(at + 3)?,
    ]))
}

/// The frame header (SOFn, or SOF55 of JPEG-LS) of a JPEG stream, found by walking its marker
/// segments from SOI up to the first scan.
fn jpeg_size(frame: &[u8]) -> Option<DeclaredSize> {
    if frame.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    for _ in 0..MAX_SEGMENTS {
        if *frame.get(at)? != 0xFF {
            return None;
        }
        let marker = *frame.get(at + 1)?;
        match marker {
            // Fill bytes before a marker.
            0xFF => {
                at += 1;
                continue;
            }
            // Markers without a length: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => {
                at += 2;
                continue;
            }
            // Start of scan or end of image before any frame header.
            0xDA | 0xD9 => return None,
            _ => {}
        }
        let length = usize::from(u16_at(frame, at + 2)?);
        let is_frame_header =
            matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7);
        if is_frame_header {
            return Some(DeclaredSize {
                rows: u32::from(u16_at(frame, at + 5)?),
                columns: u32::from(u16_at(frame, at + 7)?),
                components: u32::from(*frame.get(at + 9)?),
            });
        }
        if length < 2 {
            return None;
        }
        at += 2 + length;
    }
    None
}

/// The SIZ marker segment of a JPEG 2000 codestream (it follows SOC), inside the `jp2c` box of
/// a JP2 file if the frame is one.
fn jpeg2000_size(frame: &[u8]) -> Option<DeclaredSize> {
    let codestream = if frame.get(..2)? == [0xFF, 0x4F] {
        frame
    } else {
        jp2_codestream(frame)?
    };
    if codestream.get(..4)? != [0xFF, 0x4F, 0xFF, 0x51] {
        return None;
    }
    // SIZ: Lsiz (2), Rsiz (2), Xsiz, Ysiz, XOsiz, YOsiz (4 each), …, Csiz (2) at 38.
    let siz = 4;
    let width = u32_at(codestream, siz + 4)?.checked_sub(u32_at(codestream, siz + 12)?)?;
    let height = u32_at(codestream, siz + 8)?.checked_sub(u32_at(codestream, siz + 16)?)?;
    let components = u16_at(codestream, siz + 36)?;
    Some(DeclaredSize {
        columns: width,
        rows: height,
        components: u32::from(components),
    })
}

/// The contents of the contiguous codestream box (`jp2c`) of a JP2 file (ISO/IEC 15444-1 I.4).
fn jp2_codestream(file: &[u8]) -> Option<&[u8]> {
    let mut at = 0usize;
    for _ in 0..MAX_SEGMENTS {
        let length = u32_at(file, at)?;
        let kind = file.get(at + 4..at + 8)?;
        let (header, size) = match length {
            0 => (8, file.len().checked_sub(at)?),
            1 => {
                let high = u32_at(file, at + 8)?;
                let low = u32_at(file, at + 12)?;
                let size = (u64::from(high) << 32) | u64::from(low);
                (16, usize::try_from(size).ok()?)
            }
            n => (8, usize::try_from(n).ok()?),
        };
        if size < header {
            return None;
        }
        if kind == b"jp2c" {
            return file.get(at + header..at.checked_add(size)?.min(file.len()));
        }
        at = at.checked_add(size)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_frame_header_is_found_after_other_segments() {
        let mut jpeg = vec![0xFF, 0xD8];
        // APP0 of 16 bytes, then fill bytes, then SOF0: 8 bits, 300 rows, 200 columns, 3.
        jpeg.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
        jpeg.extend_from_slice(&[0; 14]);
        jpeg.extend_from_slice(&[0xFF, 0xFF, 0xC0, 0x00, 0x11, 8, 0x01, 0x2C, 0x00, 0xC8, 3]);
        assert_eq!(
            Codestream::Jpeg.declared_size(&jpeg),
            Some(DeclaredSize {
                columns: 200,
                rows: 300,
                components: 3
            })
        );
        // A scan before any frame header, a truncated stream, no SOI.
        assert_eq!(
            Codestream::Jpeg.declared_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]),
            None
        );
        assert_eq!(Codestream::Jpeg.declared_size(&jpeg[..20]), None);
        assert_eq!(Codestream::Jpeg.declared_size(&jpeg[2..]), None);
        // A length that points back does not loop.
        assert_eq!(
            Codestream::Jpeg.declared_size(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00]),
            None
        );
    }

    #[test]
    fn a_jpeg_2000_siz_in_a_codestream_and_in_a_jp2_file() {
        let mut codestream = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for value in [640u32 + 10, 480 + 20, 10, 20, 640, 480, 0, 0] {
            codestream.extend_from_slice(&value.to_be_bytes());
        }
        codestream.extend_from_slice(&3u16.to_be_bytes());
        let size = Some(DeclaredSize {
            columns: 640,
            rows: 480,
            components: 3,
        });
        assert_eq!(Codestream::Jpeg2000.declared_size(&codestream), size);
        let mut jp2 = Vec::new();
        jp2.extend_from_slice(&12u32.to_be_bytes());
        jp2.extend_from_slice(b"jP  \r\n\x87\n");
        jp2.extend_from_slice(&((codestream.len() + 8) as u32).to_be_bytes());
        jp2.extend_from_slice(b"jp2c");
        jp2.extend_from_slice(&codestream);
        assert_eq!(Codestream::Jpeg2000.declared_size(&jp2), size);
        assert_eq!(Codestream::Jpeg2000.declared_size(&jp2[..30]), None);
    }
}
