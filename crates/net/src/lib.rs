//! # dimsum-net — DICOM networking over tokio
//!
//! The async driver of the sans-IO association of `dimsum-dimse`, and the services on it:
//!
//! * [`Association`]: one DICOM association (PS3.8 §7) for either side, over TCP or TLS
//!   ([`tls`]) — connect or accept, send requests (pipelined up to the asynchronous operations
//!   window) and responses, receive both, release, abort — full duplex, with the connect, ACSE,
//!   DIMSE, ARTIM, idle and write timers of [`Timeouts`].
//! * [`scu`]: one small client per service: C-ECHO, C-STORE, and the Query/Retrieve services —
//!   C-FIND (collected or streamed, with C-CANCEL; the Modality Worklist too), C-GET (its
//!   C-STORE sub-operations served on the same association into a [`storage::Storage`]) and
//!   C-MOVE (to a destination AE title, or to a temporary Storage SCP of our own); and Storage
//!   Commitment (N-ACTION, the report awaited on the same association or an incoming port).
//! * [`scp`]: the service-provider framework: an [`scp::Scp`] per service, handler traits that
//!   return statuses or streams, and a [`scp::Dispatcher`] that maps each incoming request to
//!   its SCP and sends the responses (and, for Storage Commitment, the N-EVENT-REPORT after
//!   them).
//! * [`storage`]: where received instances go, independent of how they came.
//! * [`Server`]: a listener that runs many associations at once, with limits, timeouts,
//!   graceful shutdown and statistics.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod association;
mod config;
mod error;
pub mod scp;
pub mod scu;
pub mod server;
pub mod storage;
pub mod tls;

pub use association::{
    Association, AssociationInfo, DataSetStream, DataSetWriter, IncomingRequest, Response,
    Responses, Role, Transport,
};
pub use config::{Limits, MoveRetry, Timeouts};
pub use error::{AbortOrigin, Error};
pub use server::{Server, ServerConfig, ServerHandle, ServerStatistics};

pub use dimsum_dataset as dataset;
/// Re-exports of the layers below, so that users need only this crate.
pub use dimsum_dimse as dimse;
pub use dimsum_ul as ul;
