//! multipart/related (RFC 2387 over RFC 2046 §5.1), the body of STOW-RS requests and WADO-RS
//! responses (PS3.18 8.6.1.2, 10.4 and 10.5), usable without an HTTP stack:
//!
//! * [`content_type`]: `Content-Type` and `Accept` values ([`ContentType`], [`Accept`]) and the
//!   [`Boundary`], parsed strictly within [`HeaderLimits`];
//! * [`encode`]: [`Encoder`], which writes parts (bytes or streams) as a stream of chunks;
//! * [`decode`]: [`Decoder`], the sans-IO streaming decoder, and [`MultipartReader`], which
//!   drives it from a stream of chunks, both within [`DecodeLimits`].

pub mod content_type;
pub mod decode;
pub mod encode;
pub mod headers;

pub use content_type::{
    Accept, Boundary, BoundaryError, ContentType, ContentTypeError, HeaderLimits,
    MAX_BOUNDARY_LENGTH, MediaRange,
};
pub use decode::{DecodeError, DecodeLimits, Decoder, Event, MultipartError, MultipartReader};
pub use encode::{Encoder, Part, PartBody};
pub use headers::{HeaderValueError, PartHeaders};
