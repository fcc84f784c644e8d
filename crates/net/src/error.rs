use std::io;

use dimsum_dimse::association::{AbortCause, Ending, SendError};
use dimsum_ul::pdu::{AbortReason, AbortSource, AssociateRj, DecodeError};

use crate::Timeouts;

/// Who ended an association with an abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortOrigin {
    /// The peer sent an A-ABORT (PS3.8 §9.3.8) with this source.
    Peer(AbortSource),
    /// We aborted: the local user asked, or a local limit was reached.
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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    #[error("the association was released")]
    Released,
    #[error("the peer closed the connection")]
    ConnectionClosed,
    #[error("the connection failed: {0}")]
    Transport(String),
    #[error("invalid PDU from the peer (association aborted): {0}")]
    InvalidPdu(#[from] DecodeError),
    #[error("protocol error (association aborted): {0}")]
    Protocol(String),
    #[error("cannot negotiate the association: {0}")]
    Negotiation(#[from] dimsum_ul::negotiation::NegotiationError),
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
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
        match self {
            Error::Send(SendError::Ended | SendError::NotEstablished(_)) => true,
            Error::Send(_)
            | Error::NoPresentationContext(_)
            | Error::UnexpectedMessage(_)
            | Error::DataSetTooLarge { .. } => false,
            _ => true,
        }
    }

    /// The error that reports how an association ended, to whoever was still waiting on it.
    pub fn from_ending(ending: &Ending, timeouts: &Timeouts) -> Error {
        match ending {
            Ending::Released => Error::Released,
            Ending::Rejected { rejection, .. } => Error::Rejected(*rejection),
            Ending::AbortedByPeer(abort) => Error::Aborted {
                origin: AbortOrigin::Peer(abort.source),
                reason: abort.reason,
            },
            Ending::Aborted(AbortCause::User) => Error::Aborted {
                origin: AbortOrigin::Local,
                reason: AbortReason::NotSpecified,
            },
            Ending::Aborted(AbortCause::InvalidPdu(error)) => Error::InvalidPdu(error.clone()),
            Ending::Aborted(cause) => Error::Protocol(cause.to_string()),
            Ending::ConnectionClosed => Error::ConnectionClosed,
            Ending::TimedOut(timer) => Error::Timeout {
                waiting_for: timer_subject(*timer),
                seconds: timeouts.seconds(*timer),
            },
        }
    }
}

/// What a timer waits for, for "timed out after … s waiting for …".
fn timer_subject(timer: dimsum_dimse::association::Timer) -> &'static str {
    use dimsum_dimse::association::Timer;
    match timer {
        Timer::Artim => "the association request (ARTIM)",
        Timer::Acse => "the association or release answer (ACSE timeout)",
        Timer::Dimse => "the peer in the middle of a message or a due response (DIMSE timeout)",
        Timer::Idle => "the next command (idle timeout)",
        Timer::Write => "the peer to read what we send (write timeout)",
    }
}
