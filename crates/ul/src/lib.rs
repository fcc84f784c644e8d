//! # dimsum-ul — the DICOM Upper Layer, sans-IO
//!
//! * [`pdu`]: every PDU, item and sub-item of PS3.8 §9.3 with a strict, bounded codec.
//! * [`fsm`]: the Upper Layer state machine of PS3.8 §9.2 (Table 9-10) as a pure transition table.
//! * [`negotiation`]: building an A-ASSOCIATE-RQ and answering one with a policy (PS3.8 §9.3.2–9.3.4,
//!   PS3.7 Annex D).
//!
//! Nothing here touches a socket or a clock: the async driver lives in `dimsum-net`.

pub mod fsm;
pub mod negotiation;
pub mod pdu;
pub mod uids;
