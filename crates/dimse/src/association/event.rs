//! What the sans-IO association tells its driver and its user: events, how an association ended,
//! and why a local primitive was refused.

use bytes::Bytes;
use dimsum_ul::fsm::State;
use dimsum_ul::pdu::{Abort, AbortReason, AbortSource, AssociateRj, AssociateRq, DecodeError};

use crate::assemble::AssembleError;
use crate::command::{CommandEncodeError, CommandSet};
use crate::message::{CommandField, Message};
use crate::status::Status;

/// Something that happened on the association, in the order it happened (see
/// [`super::Association::poll_event`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Acceptor side: an A-ASSOCIATE-RQ arrived that the service-provider can take (PS3.8 AE-6).
    /// Answer it with [`super::Association::respond`].
    AssociationRequested(Box<AssociateRq>),
    /// The association is established (PS3.8 Sta6): the requestor read and understood the
    /// A-ASSOCIATE-AC, or the acceptor sent it. [`super::Association::negotiated`] tells what
    /// was agreed.
    Established,
    /// A request from the peer, for us to perform (PS3.7 §9.1, §10.1). When
    /// `message.has_data_set()`, [`Event::Data`] fragments follow. Answer it with
    /// [`super::Association::send_message`] (every request gets exactly one final response).
    Request {
        presentation_context_id: u8,
        message: Message,
        command_set: CommandSet,
    },
    /// A response to one of our requests, matched by Message ID Being Responded To. `is_final`
    /// is false for a pending response (C-FIND, C-GET, C-MOVE); after the final one the
    /// operation is over and its slot of the asynchronous operations window is free.
    Response {
        presentation_context_id: u8,
        message: Message,
        command_set: CommandSet,
        is_final: bool,
    },
    /// A fragment of the data set of the last [`Event::Request`] or [`Event::Response`], as it
    /// arrived (a slice of the received PDU, not a copy).
    Data {
        presentation_context_id: u8,
        data: Bytes,
        is_last: bool,
    },
    /// The peer asks to cancel the C-FIND, C-GET or C-MOVE it invoked with this Message ID
    /// (C-CANCEL-RQ, PS3.7 §9.3.2.3). The operation still owes its final response (status
    /// Cancel, 0xFE00, once it stops).
    CancelRequested { message_id: u16 },
    /// A request the association answered itself with a failure response, because it could not
    /// be performed as sent (its SOP class does not match its presentation context, or the peer
    /// does not hold the role it needs). For the log: the peer already has its answer.
    Refused {
        message_id: u16,
        command_field: CommandField,
        status: Status,
        reason: String,
    },
    /// The peer asked to release the association (A-RELEASE-RQ). The confirmation goes out by
    /// itself as soon as no operation we perform is left unanswered.
    ReleaseRequested,
    /// The association is over: no message can be sent or received any more. Sent once; the
    /// driver keeps pumping until [`super::Association::is_closed`] (an A-ABORT or A-RELEASE-RP
    /// may still have to be written, and PS3.8 §9.1.5 waits for the peer to close).
    Ended(Ending),
}

/// How an association ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Released in order (A-RELEASE, PS3.8 §7.2), also after a release collision.
    Released,
    /// The A-ASSOCIATE-RQ was rejected: by the peer (we are the requestor) or by us.
    Rejected {
        rejection: AssociateRj,
        by_peer: bool,
    },
    /// The peer sent an A-ABORT (PS3.8 §9.3.8).
    AbortedByPeer(Abort),
    /// We aborted (an A-ABORT was sent unless the transport was unusable), for this reason.
    Aborted(AbortCause),
    /// The transport connection closed without a release or abort (A-P-ABORT, PS3.8 AA-4), or
    /// before an association request arrived (AA-5).
    ConnectionClosed,
    /// A timer ran out. For ARTIM in Sta2 the connection was closed; for the ACSE, DIMSE and
    /// idle timers an A-ABORT was sent; for the write timer the connection was closed.
    TimedOut(Timer),
}

impl Ending {
    /// Whether the association ended in order.
    pub fn is_released(&self) -> bool {
        matches!(self, Ending::Released)
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Released => f.write_str("released"),
            Ending::Rejected {
                rejection,
                by_peer: true,
            } => write!(f, "rejected by the peer: {rejection}"),
            Ending::Rejected {
                rejection,
                by_peer: false,
            } => write!(f, "rejected: {rejection}"),
            Ending::AbortedByPeer(abort) => match abort.source {
                AbortSource::ServiceProvider => {
                    write!(f, "aborted by the peer's upper layer: {}", abort.reason)
                }
                _ => f.write_str("aborted by the peer"),
            },
            Ending::Aborted(cause) => write!(f, "aborted: {cause}"),
            Ending::ConnectionClosed => f.write_str("the peer closed the connection"),
            Ending::TimedOut(timer) => write!(f, "timed out: {timer}"),
        }
    }
}

/// Why we aborted an association.
#[derive(Debug, Clone, PartialEq)]
pub enum AbortCause {
    /// The local user asked for it (A-ABORT request primitive).
    User,
    /// The peer sent bytes that are not a valid PDU (PS3.8 Evt19).
    InvalidPdu(DecodeError),
    /// The peer sent a PDU the state machine does not allow in this state (PS3.8 Table 9-10,
    /// AA-1 / AA-8).
    UnexpectedPdu { pdu: &'static str, state: State },
    /// The peer broke the DIMSE protocol (PS3.7).
    Protocol(ProtocolViolation),
    /// The A-ASSOCIATE-AC could not be understood against our request.
    Negotiation(String),
}

impl std::fmt::Display for AbortCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortCause::User => f.write_str("by the local user"),
            AbortCause::InvalidPdu(error) => write!(f, "invalid PDU from the peer: {error}"),
            AbortCause::UnexpectedPdu { pdu, state } => {
                write!(f, "the peer sent {pdu}, which is not allowed in {state}")
            }
            AbortCause::Protocol(violation) => write!(f, "DIMSE protocol violation: {violation}"),
            AbortCause::Negotiation(reason) => {
                write!(f, "cannot use the A-ASSOCIATE-AC: {reason}")
            }
        }
    }
}

/// A DIMSE rule the peer broke (PS3.7 §9.1, Annex D.3.3.3; PS3.8 Annex E); the association is
/// aborted with A-ABORT (service-provider, unexpected PDU parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    #[error("P-DATA on presentation context {0}, which was not accepted")]
    ContextNotAccepted(u8),
    #[error(transparent)]
    Assembly(#[from] AssembleError),
    #[error("{field} answers message ID {message_id}, which is not outstanding")]
    UnknownResponse {
        field: CommandField,
        message_id: u16,
    },
    #[error("{field} answers message ID {message_id}, which is a {request}")]
    ResponseTypeMismatch {
        field: CommandField,
        message_id: u16,
        request: CommandField,
    },
    #[error(
        "{field} to message ID {message_id} came on presentation context {got}, the request on {expected}"
    )]
    ResponseContextMismatch {
        field: CommandField,
        message_id: u16,
        got: u8,
        expected: u8,
    },
    #[error("{field} to message ID {message_id} has a pending status, which it cannot have")]
    PendingNotAllowed {
        field: CommandField,
        message_id: u16,
    },
    #[error(
        "the peer has more than {limit} operations outstanding, the asynchronous operations window it agreed to"
    )]
    WindowExceeded { limit: u16 },
    #[error("message ID {0} is already used by an operation the peer has outstanding")]
    DuplicateMessageId(u16),
}

/// One of the association's timers (PS3.8 §9.1.5 for ARTIM; the others are local policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ARTIM: an acceptor waiting for the A-ASSOCIATE-RQ, or either side waiting for the peer to
    /// close after A-ASSOCIATE-RJ, A-RELEASE-RP or A-ABORT.
    Artim,
    /// Waiting for the A-ASSOCIATE-AC/RJ or the A-RELEASE-RP.
    Acse,
    /// The peer silent in the middle of a message, or while a response to our request is due.
    Dimse,
    /// Nothing in flight and nothing arriving for too long.
    Idle,
    /// The peer not taking the bytes we send.
    Write,
}

impl std::fmt::Display for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Timer::Artim => "ARTIM (no association request, or the peer did not close)",
            Timer::Acse => "ACSE (no answer to the association or release request)",
            Timer::Dimse => "DIMSE (the peer went silent in a message or owes a response)",
            Timer::Idle => "idle (no message for too long)",
            Timer::Write => "write (the peer does not read what we send)",
        })
    }
}

/// Why a local primitive ([`super::Association::send_message`], `send_data`, `release`, …) was
/// refused. Nothing was sent and the association goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the association is not established (state {0})")]
    NotEstablished(State),
    #[error("the association has ended")]
    Ended,
    #[error("presentation context {0} was not accepted")]
    NoPresentationContext(u8),
    #[error(
        "{field} on presentation context {context_id} is for {abstract_syntax}, not {sop_class}"
    )]
    SopClassMismatch {
        field: CommandField,
        context_id: u8,
        abstract_syntax: String,
        sop_class: String,
    },
    #[error("we do not hold the role to send {field} on presentation context {context_id}")]
    RoleNotNegotiated { field: CommandField, context_id: u8 },
    #[error("the asynchronous operations window is full ({limit} outstanding)")]
    WindowFull { limit: u16 },
    #[error("message ID {0} is already used by an outstanding request")]
    DuplicateMessageId(u16),
    #[error("no operation with message ID {message_id} awaits {field}")]
    NoSuchOperation {
        field: CommandField,
        message_id: u16,
    },
    #[error("{field} cannot have a pending status")]
    PendingNotAllowed { field: CommandField },
    #[error("a message is being sent; its data set must be finished first")]
    MessageInProgress,
    #[error("no message awaits its data set")]
    NoDataSetExpected,
    #[error("cannot encode the command: {0}")]
    Encode(#[from] CommandEncodeError),
    #[error("not the association acceptor, or the request was already answered")]
    NotAwaitingResponse,
}

/// The A-ABORT reason for a cause (PS3.8 Table 9-26), service-provider source.
pub(super) fn provider_abort_reason(cause: &AbortCause) -> AbortReason {
    match cause {
        AbortCause::InvalidPdu(error) => error.abort_reason(),
        AbortCause::UnexpectedPdu { .. } => AbortReason::UnexpectedPdu,
        AbortCause::Protocol(_) | AbortCause::Negotiation(_) => AbortReason::UnexpectedPduParameter,
        AbortCause::User => AbortReason::NotSpecified,
    }
}
