//! # dimsum-web — DICOMweb (PS3.18)
//!
//! * [`multipart`]: multipart/related bodies (RFC 2387, PS3.18 8.6.1.2): `Content-Type` and
//!   `Accept` values, a streaming writer and a bounded streaming reader.
//! * [`resource`]: the resources of the Studies Service (PS3.18 §10) as typed paths.
//! * `server` (feature `server`, on by default): STOW-RS and WADO-RS retrieve routes (axum)
//!   over the archive.
//! * `pixel` (feature `pixel`, part of `server`): frames of stored instances found, read,
//!   decoded and rendered (PS3.18 10.4.1.1.6, 10.4.1.2, 10.4.1.3).
//! * [`rendered`]: the query parameters of rendered and thumbnail resources (PS3.18 8.3.5.1).
//! * [`qido`]: QIDO-RS queries (PS3.18 10.6, 8.3.4) read and written, and their C-FIND
//!   identifiers.
//! * `transcode` (feature `pixel`): stored instances converted to the transfer syntax a
//!   WADO-RS client asks for (PS3.18 8.7.3.5.2): uncompressed ones re-encoded, compressed ones
//!   decoded, as a stream of chunks.
//! * [`stow`]: STOW-RS requests (PS3.18 10.5) and the response data set and status.
//! * [`wado`]: WADO-RS representations (PS3.18 10.4, 8.7): `Accept` values and response media
//!   types.
//! * [`client`] (feature `client`): the DICOMweb client (reqwest over rustls) over these
//!   types: QIDO-RS searches, WADO-RS retrievals read as they arrive, STOW-RS of files streamed.
//!
//! The types here need no HTTP stack: they take and give bytes and streams of `Bytes`.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "client")]
pub mod client;
pub mod multipart;
#[cfg(feature = "pixel")]
pub mod pixel;
pub mod qido;
pub mod rendered;
pub mod resource;
#[cfg(feature = "server")]
pub mod server;
pub mod stow;
#[cfg(feature = "pixel")]
pub mod transcode;
pub mod wado;
