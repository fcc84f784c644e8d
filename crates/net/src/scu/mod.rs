//! Service class users: one small client per service, over an established [`crate::Association`]:
//!
//! * [`echo`]: Verification (PS3.4 Annex A);
//! * [`store`]: Storage (PS3.4 Annex B), Part 10 files streamed from disk, with the Move
//!   Originator of a C-MOVE sub-operation when given;
//! * [`find`](mod@find): C-FIND on the Query/Retrieve information models and the Modality
//!   Worklist (PS3.4 C.4.1, K.4.1), every match at once or as a stream, with C-CANCEL;
//! * [`get`](mod@get): C-GET (PS3.4 C.4.3), its C-STORE sub-operations served on the same
//!   association into a [`crate::storage::Storage`] while the responses come;
//! * [`move_`]: C-MOVE (PS3.4 C.4.2) to a destination AE title, or to a temporary Storage SCP
//!   of our own on an incoming port;
//! * [`commitment`]: Storage Commitment Push Model (PS3.4 Annex J): N-ACTION, then the
//!   N-EVENT-REPORT awaited on the same association or on an incoming port.

pub mod commitment;
mod echo;
pub mod find;
pub mod get;
pub mod move_;
pub mod store;

pub use commitment::{
    CommitError, CommitmentReceiver, CommitmentReport, DEFAULT_REPORT_TIMEOUT, commit, commit_via,
    commitment_context,
};
pub use echo::echo;
pub use find::{
    FindEnd, FindOutcome, FindStream, QUERY_TRANSFER_SYNTAXES, QueryError, QueryMatch,
    QueryRequest, find, query_context,
};
pub use get::{
    RetrieveOutcome, RetrieveProgress, STORAGE_TRANSFER_SYNTAXES, SubOperations,
    common_storage_sop_classes, default_storage_contexts, get, propose_get, sop_classes_in_study,
    storage_contexts,
};
pub use move_::{MoveReceiver, move_to, move_to_self};
