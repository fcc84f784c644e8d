//! # dimsum-ul — the DICOM Upper Layer, sans-IO
//!
//! * [`pdu`]: every PDU, item and sub-item of PS3.8 §9.3 with a strict, bounded codec.
//! * [`fsm`]: the Upper Layer state machine of PS3.8 §9.2 (Table 9-10) as a pure transition table.
//! * [`negotiation`]: building an A-ASSOCIATE-RQ and answering one with a policy (PS3.8 §9.3.2–9.3.4,
//!   PS3.7 Annex D).
//! * [`uid`]: the syntax of a UID (PS3.5 §9.1), the validator every dimsum crate shares.
//! * [`uids`]: the UIDs the Upper Layer and DIMSE need by name.
//!
//! Nothing here touches a socket or a clock: the async driver lives in `dimsum-net`.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod fsm;
pub mod negotiation;
pub mod pdu;
pub mod uids;

pub use dimsum_uid as uid;
