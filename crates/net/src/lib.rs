//! # dimsum-net — DICOM networking over tokio
//!
//! The async driver of the sans-IO cores in `dimsum-ul` and `dimsum-dimse`:
//!
//! * [`Association`]: one DICOM association (PS3.8 §7) for either side — connect or accept,
//!   exchange DIMSE messages, release, abort — driven through the PS3.8 §9.2 state machine, with
//!   the connect, ACSE, DIMSE, ARTIM and idle timers of [`Timeouts`].
//! * [`scu`]: one small client per service (C-ECHO so far).
//! * [`scp`]: the service-provider framework: an [`scp::Scp`] per service and a
//!   [`scp::Dispatcher`] that maps each incoming command to its SCP.
//! * [`Server`]: a listener that runs many associations at once, with a limit, idle timeouts,
//!   graceful shutdown and statistics.

mod association;
mod config;
mod error;
pub mod scp;
pub mod scu;
mod server;

pub use association::{Association, AssociationInfo, Command, Incoming};
pub use config::{Limits, Timeouts};
pub use error::{AbortOrigin, Error};
pub use server::{Server, ServerConfig, ServerHandle, ServerStatistics};

pub use dimsum_dataset as dataset;
/// Re-exports of the layers below, so that users need only this crate.
pub use dimsum_dimse as dimse;
pub use dimsum_ul as ul;
