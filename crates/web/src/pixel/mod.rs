//! The pixel data of stored instances, without HTTP: frames found and read, decoded and
//! rendered (PS3.18 10.4.1.1.6 Frames, 10.4.1.2 Rendered, 10.4.1.3 Thumbnail; PS3.5 §8.2 native
//! and §A.4 encapsulated pixel data).
//!
//! * [`image_pixel`]: the Image Pixel module attributes that say how big a frame is (PS3.3
//!   C.7.6.3), checked before anything is allocated from them;
//! * [`source`]: [`PixelSource`], a stored instance's Pixel Data located by the hardened scan
//!   (`dimsum_dataset::scan::locate_pixel_data`) and its frames read from the file one at a
//!   time, only their own bytes;
//! * [`codestream`]: the size a JPEG or JPEG 2000 frame declares, checked against the
//!   attributes before a decoder allocates it;
//! * [`media`]: which media type and transfer syntax the frames of an instance are sent in
//!   for an `Accept` value (PS3.18 8.7.3.4, 8.7.3.5, 8.7.5);
//! * [`render`]: frames decoded by dicom-pixeldata and rendered (VOI window, MONOCHROME1,
//!   viewport) into JPEG, PNG or GIF (PS3.18 8.3.5.1, 8.7.4).
//!
//! Everything here blocks (file reads, decoding, encoding): callers run it on a blocking pool.

pub mod codestream;
pub mod image_pixel;
pub mod media;
pub mod render;
pub mod source;

pub use image_pixel::ImagePixel;
pub use media::{FrameMedia, negotiate_frames};
pub use render::{RenderedImage, can_decode, encode_image, render_frame};
pub use source::PixelSource;

/// The limits of pixel data work for one request (DESIGN principle 5: named, with defaults safe
/// for a server facing the internet). No size read from a header is allocated before it is
/// checked against these and against the bytes the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLimits {
    /// The largest frame held in memory, stored or decoded, in bytes (default 256 MiB).
    pub max_frame_bytes: u64,
    /// The most pixels of an image rendered, before and after scaling to the viewport (default
    /// 64 million: 8,000 × 8,000).
    pub max_rendered_pixels: u64,
    /// The largest part of a data set before its Pixel Data read into memory to learn its
    /// attributes, in bytes (default 64 MiB).
    pub max_header_bytes: u64,
    /// The largest inflated data set of a deflated transfer syntax, held in memory to find its
    /// frames (default 256 MiB).
    pub max_inflated_bytes: u64,
    /// The most instances in one multi-instance rendered response (default 1,000).
    pub max_rendered_instances: usize,
}

impl Default for PixelLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 256 * 1024 * 1024,
            max_rendered_pixels: 64_000_000,
            max_header_bytes: 64 * 1024 * 1024,
            max_inflated_bytes: 256 * 1024 * 1024,
            max_rendered_instances: 1_000,
        }
    }
}

/// Why the frames of a stored instance cannot be given or rendered. [`PixelError::status`]
/// says how a server answers it.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the stored data set cannot be read: {0}")]
    Scan(#[from] dimsum_dataset::scan::ScanError),
    #[error("the attributes before the Pixel Data cannot be decoded: {0}")]
    Attributes(String),
    #[error("the instance has no Pixel Data (7FE0,0010), so no frames")]
    NoPixelData,
    #[error("the instance has no {name}, which its Pixel Data needs")]
    MissingAttribute { name: &'static str },
    #[error("{name} {value:?} is not valid: {reason}")]
    InvalidAttribute {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "the Pixel Data is {actual} bytes long, but Rows × Columns × Samples per Pixel × Bits Allocated × Number of Frames ({rows} × {columns} × {samples} × {bits} bits × {frames}) make {expected} bytes"
    )]
    LengthMismatch {
        actual: u64,
        expected: u64,
        rows: u16,
        columns: u16,
        samples: u16,
        bits: u16,
        frames: u32,
    },
    #[error("frame {frame} does not exist: the instance has {frames} frame(s)")]
    FrameOutOfRange { frame: u32, frames: u32 },
    #[error("the frames of the encapsulated Pixel Data cannot be told apart: {0}")]
    Fragments(String),
    #[error("{what} is {size} bytes, more than the limit of {limit} ({limit_name})")]
    TooLarge {
        what: String,
        size: u64,
        limit: u64,
        limit_name: &'static str,
    },
    #[error("frames in {transfer_syntax} cannot be decoded by this server")]
    NotDecodable { transfer_syntax: String },
    #[error("frame {frame} cannot be decoded: {reason}")]
    Decode { frame: u32, reason: String },
    #[error("{0} is not implemented")]
    NotImplemented(String),
    #[error("the image cannot be encoded: {0}")]
    Encode(String),
    #[error("{0}")]
    OutsideImage(String),
}

impl PixelError {
    /// The HTTP status a server answers with: 404 for a frame or pixel data that does not
    /// exist; 406 when the representation asked for cannot be produced (no decoder, a rendering
    /// not implemented); 500 for a read or encode failure; 422 when the stored object cannot be
    /// processed (attributes that disagree with the Pixel Data, fragments that cannot be told
    /// apart, a limit); 400 for a viewport outside the image.
    pub fn status(&self) -> u16 {
        match self {
            PixelError::NoPixelData | PixelError::FrameOutOfRange { .. } => 404,
            PixelError::OutsideImage(_) => 400,
            PixelError::NotDecodable { .. } | PixelError::NotImplemented(_) => 406,
            PixelError::Io { .. } | PixelError::Encode(_) => 500,
            PixelError::Scan(_)
            | PixelError::Attributes(_)
            | PixelError::MissingAttribute { .. }
            | PixelError::InvalidAttribute { .. }
            | PixelError::LengthMismatch { .. }
            | PixelError::Fragments(_)
            | PixelError::TooLarge { .. }
            | PixelError::Decode { .. } => 422,
        }
    }
}
