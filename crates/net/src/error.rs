use std::io;

use dimsum_ul::pdu::{AbortReason, AbortSource, AssociateRj, DecodeError};

/// Who ended an association with an abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortOrigin {
    /// The peer sent an A-ABORT (PS3.8 §9.3.8) with this source.
    Peer(AbortSource),
    /// We aborted: the peer broke the protocol or a local limit was reached.
    Local,
}

impl std::fmt::Display for AbortOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortOrigin::Peer(AbortSource::ServiceUser) => f.write_str("the peer (service-user)"),
            AbortOrigin::Peer(AbortSource::ServiceProvider) => {
                f.write_str("the peer's upper layer (service-provider)")
            }
            AbortOrigin::Peer(AbortSource::Reserved) => f.write_str("the peer (reserved source)"),
            AbortOrigin::Local => f.write_str("us"),
        }
    }
}

/// Errors of the network layer. Each says what happened to the association.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("I/O error on the association: {0}")]
    Io(#[from] io::Error),
    #[error("timed out after {seconds:.1} s waiting for {waiting_for}")]
    Timeout {
        waiting_for: &'static str,
        seconds: f64,
    },
    #[error("association rejected: {0}")]
    Rejected(AssociateRj),
    #[error("association aborted by {origin}: {reason}")]
    Aborted {
        origin: AbortOrigin,
        reason: AbortReason,
    },
    #[error("the peer released the association")]
    Released,
    #[error("the peer closed the connection")]
    ConnectionClosed,
    #[error("invalid PDU from the peer (association aborted): {0}")]
    InvalidPdu(#[from] DecodeError),
    #[error("protocol error (association aborted): {0}")]
    Protocol(String),
    #[error("cannot negotiate the association: {0}")]
    Negotiation(#[from] dimsum_ul::negotiation::NegotiationError),
    #[error("cannot encode a PDU: {0}")]
    Encode(#[from] dimsum_ul::pdu::EncodeError),
    #[error("cannot encode a command: {0}")]
    EncodeCommand(#[from] dimsum_dimse::command::CommandEncodeError),
    #[error("cannot fragment a message: {0}")]
    Fragment(#[from] dimsum_dimse::fragment::FragmentError),
    #[error("{0}")]
    InvalidState(#[from] dimsum_ul::fsm::FsmError),
    #[error("no presentation context was accepted for {0}")]
    NoPresentationContext(String),
    #[error("unexpected DIMSE message: {0}")]
    UnexpectedMessage(String),
    #[error("cannot read the data set to send (association aborted): {0}")]
    DataSource(io::Error),
    #[error("data set of {size} bytes exceeds the in-memory limit of {limit} bytes")]
    DataSetTooLarge { size: usize, limit: usize },
}

impl Error {
    /// Whether the association is gone after this error (no further message can be exchanged).
    pub fn ends_association(&self) -> bool {
        !matches!(
            self,
            Error::NoPresentationContext(_)
                | Error::UnexpectedMessage(_)
                | Error::Encode(_)
                | Error::EncodeCommand(_)
                | Error::Fragment(_)
        )
    }
}
