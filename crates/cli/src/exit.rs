//! Exit statuses that scripts can rely on (documented in docs/tools.md).

use tracing::error;

/// The exit status of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything succeeded.
    Success = 0,
    /// A peer answered with a non-success DIMSE status.
    DimseFailure = 1,
    /// Bad command line (clap also uses 2).
    Usage = 2,
    /// The association was rejected, or no presentation context was accepted.
    Rejected = 3,
    /// The connection could not be made, or timed out.
    Connection = 4,
    /// The association was aborted or the peer broke the protocol.
    Aborted = 5,
    /// Something failed locally (cannot bind, cannot start).
    Internal = 6,
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// The exit status for a network error.
pub fn for_error(error: &dimsum_net::Error) -> Code {
    use dimsum_net::Error::*;
    match error {
        Rejected(_) | NoPresentationContext(_) | Negotiation(_) => Code::Rejected,
        Connect { .. } | Timeout { .. } | Io(_) | ConnectionClosed | Transport(_) | Tls(_) => {
            Code::Connection
        }
        DataSource(_) => Code::Internal,
        _ => Code::Aborted,
    }
}

/// Prints a network error for a person and returns the exit status for scripts.
pub fn report(error: &dimsum_net::Error, address: &str) -> Code {
    match error {
        dimsum_net::Error::Rejected(rj) => error!("association rejected by {address}: {rj}"),
        other => error!("{other}"),
    }
    for_error(error)
}
