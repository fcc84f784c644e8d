//! # dimsum-dimse — DICOM Message Service Element (PS3.7), sans-IO
//!
//! * [`command`]: command sets, the group-0000 elements of a message, always implicit VR little
//!   endian (PS3.7 §6.3, Annex E), with a strict, bounded decoder.
//! * [`status`]: status codes and their categories (PS3.7 Annex C).
//! * [`message`]: a typed struct for every DIMSE-C and DIMSE-N request and response (PS3.7 §9,
//!   §10), to and from a command set.
//! * [`fragment`]: splitting commands and data sets into P-DATA-TF PDUs that fit the peer's
//!   maximum PDU length (PS3.8 §9.3.5, Annex E).
//! * [`assemble`]: reassembling received PDVs into commands and a stream of data-set fragments.
//! * [`association`]: the sans-IO association — PS3.8 state machine, negotiation, assembly,
//!   DIMSE routing, the asynchronous operations window and the timers — driven by bytes and
//!   instants.
//!
//! Nothing here touches a socket or a clock: the async driver lives in `dimsum-net`.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod assemble;
pub mod association;
pub mod command;
pub mod fragment;
pub mod message;
pub mod status;

pub use assemble::{AssembleError, Assembled, Assembler};
pub use command::{CommandLimits, CommandSet, CommandValue};
pub use message::{CommandError, CommandField, Message, Priority};
pub use status::{Status, StatusCategory};
