//! Wire codes and readable descriptions of the A-ASSOCIATE-RJ result/source/reason fields
//! (PS3.8 §9.3.4, Table 9-21) and of the A-ABORT source/reason fields (PS3.8 §9.3.8,
//! Table 9-26).
//!
//! `from_code` of a reason is total: a value the standard reserves becomes the `Reserved` variant,
//! so a peer's unusual reason is reported, not refused. `Display` gives the standard's wording,
//! made readable, for error messages.

use std::fmt;

use super::{
    Abort, AbortReason, AbortSource, AssociateRj, RejectResult, RejectSource,
    ServiceProviderAcseReason, ServiceProviderPresentationReason, ServiceUserReason,
};

impl RejectResult {
    /// The result field of an A-ASSOCIATE-RJ: 1 permanent, 2 transient.
    pub fn code(self) -> u8 {
        match self {
            Self::Permanent => 1,
            Self::Transient => 2,
        }
    }

    /// The result for a wire code, or `None` for a value the standard does not define.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Permanent),
            2 => Some(Self::Transient),
            _ => None,
        }
    }
}

impl fmt::Display for RejectResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Permanent => "rejected-permanent",
            Self::Transient => "rejected-transient",
        })
    }
}

impl ServiceUserReason {
    pub fn code(self) -> u8 {
        match self {
            Self::NoReasonGiven => 1,
            Self::ApplicationContextNameNotSupported => 2,
            Self::CallingAeTitleNotRecognized => 3,
            Self::CalledAeTitleNotRecognized => 7,
            Self::Reserved(code) => code,
        }
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::NoReasonGiven,
            2 => Self::ApplicationContextNameNotSupported,
            3 => Self::CallingAeTitleNotRecognized,
            7 => Self::CalledAeTitleNotRecognized,
            other => Self::Reserved(other),
        }
    }
}

impl fmt::Display for ServiceUserReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoReasonGiven => f.write_str("no reason given"),
            Self::ApplicationContextNameNotSupported => {
                f.write_str("application context name not supported")
            }
            Self::CallingAeTitleNotRecognized => f.write_str("calling AE title not recognized"),
            Self::CalledAeTitleNotRecognized => f.write_str("called AE title not recognized"),
            Self::Reserved(code) => write!(f, "reserved reason {code}"),
        }
    }
}

impl ServiceProviderAcseReason {
    pub fn code(self) -> u8 {
        match self {
            Self::NoReasonGiven => 1,
            Self::ProtocolVersionNotSupported => 2,
            Self::Reserved(code) => code,
        }
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::NoReasonGiven,
            2 => Self::ProtocolVersionNotSupported,
            other => Self::Reserved(other),
        }
    }
}

impl fmt::Display for ServiceProviderAcseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoReasonGiven => f.write_str("no reason given"),
            Self::ProtocolVersionNotSupported => f.write_str("protocol version not supported"),
            Self::Reserved(code) => write!(f, "reserved reason {code}"),
        }
    }
}

impl ServiceProviderPresentationReason {
    pub fn code(self) -> u8 {
        match self {
            Self::TemporaryCongestion => 1,
            Self::LocalLimitExceeded => 2,
            Self::Reserved(code) => code,
        }
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::TemporaryCongestion,
            2 => Self::LocalLimitExceeded,
            other => Self::Reserved(other),
        }
    }
}

impl fmt::Display for ServiceProviderPresentationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TemporaryCongestion => f.write_str("temporary congestion"),
            Self::LocalLimitExceeded => f.write_str("local limit exceeded"),
            Self::Reserved(code) => write!(f, "reserved reason {code}"),
        }
    }
}

impl RejectSource {
    /// The source field: 1 service-user, 2 service-provider (ACSE), 3 service-provider
    /// (presentation).
    pub fn code(self) -> u8 {
        match self {
            Self::ServiceUser(_) => 1,
            Self::ServiceProviderAcse(_) => 2,
            Self::ServiceProviderPresentation(_) => 3,
        }
    }

    /// The reason/diagnostic field that goes with the source.
    pub fn reason_code(self) -> u8 {
        match self {
            Self::ServiceUser(reason) => reason.code(),
            Self::ServiceProviderAcse(reason) => reason.code(),
            Self::ServiceProviderPresentation(reason) => reason.code(),
        }
    }

    /// The source and reason for the wire codes, or `None` for an undefined source.
    pub fn from_codes(source: u8, reason: u8) -> Option<Self> {
        match source {
            1 => Some(Self::ServiceUser(ServiceUserReason::from_code(reason))),
            2 => Some(Self::ServiceProviderAcse(
                ServiceProviderAcseReason::from_code(reason),
            )),
            3 => Some(Self::ServiceProviderPresentation(
                ServiceProviderPresentationReason::from_code(reason),
            )),
            _ => None,
        }
    }

    /// True when the reason is a `Reserved` variant holding a code the standard defines, a value
    /// that cannot be sent because it would be read back as the defined reason.
    pub(crate) fn reason_is_misfiled(self) -> bool {
        Self::from_codes(self.code(), self.reason_code()) != Some(self)
    }
}

impl fmt::Display for RejectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceUser(reason) => write!(f, "by service-user: {reason}"),
            Self::ServiceProviderAcse(reason) => write!(f, "by service-provider (ACSE): {reason}"),
            Self::ServiceProviderPresentation(reason) => {
                write!(f, "by service-provider (presentation): {reason}")
            }
        }
    }
}

impl AssociateRj {
    pub fn new(result: RejectResult, source: RejectSource) -> Self {
        Self { result, source }
    }
}

/// For example "rejected-permanent by service-user: called AE title not recognized".
impl fmt::Display for AssociateRj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.result, self.source)
    }
}

impl AbortSource {
    pub fn code(self) -> u8 {
        match self {
            Self::ServiceUser => 0,
            Self::Reserved => 1,
            Self::ServiceProvider => 2,
        }
    }

    /// The source for a wire code, or `None` for a value the standard does not define.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::ServiceUser),
            1 => Some(Self::Reserved),
            2 => Some(Self::ServiceProvider),
            _ => None,
        }
    }
}

impl fmt::Display for AbortSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceUser => "service-user",
            Self::Reserved => "reserved source",
            Self::ServiceProvider => "service-provider",
        })
    }
}

impl AbortReason {
    pub fn code(self) -> u8 {
        match self {
            Self::NotSpecified => 0,
            Self::UnrecognizedPdu => 1,
            Self::UnexpectedPdu => 2,
            Self::UnrecognizedPduParameter => 4,
            Self::UnexpectedPduParameter => 5,
            Self::InvalidPduParameterValue => 6,
            Self::Reserved(code) => code,
        }
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::NotSpecified,
            1 => Self::UnrecognizedPdu,
            2 => Self::UnexpectedPdu,
            4 => Self::UnrecognizedPduParameter,
            5 => Self::UnexpectedPduParameter,
            6 => Self::InvalidPduParameterValue,
            other => Self::Reserved(other),
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSpecified => f.write_str("reason not specified"),
            Self::UnrecognizedPdu => f.write_str("unrecognized PDU"),
            Self::UnexpectedPdu => f.write_str("unexpected PDU"),
            Self::UnrecognizedPduParameter => f.write_str("unrecognized PDU parameter"),
            Self::UnexpectedPduParameter => f.write_str("unexpected PDU parameter"),
            Self::InvalidPduParameterValue => f.write_str("invalid PDU parameter value"),
            Self::Reserved(code) => write!(f, "reserved reason {code}"),
        }
    }
}

impl Abort {
    /// An A-ABORT initiated by the service-user (A-ABORT service); the reason field is 0.
    pub fn by_service_user() -> Self {
        Self {
            source: AbortSource::ServiceUser,
            reason: AbortReason::NotSpecified,
        }
    }

    /// An A-ABORT initiated by the service-provider (A-P-ABORT) with its reason.
    pub fn by_service_provider(reason: AbortReason) -> Self {
        Self {
            source: AbortSource::ServiceProvider,
            reason,
        }
    }
}

/// For example "aborted by service-provider: invalid PDU parameter value"; the reason of a
/// service-user abort carries no meaning and is left out.
impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            AbortSource::ServiceUser => f.write_str("aborted by service-user"),
            source => write!(f, "aborted by {source}: {}", self.reason),
        }
    }
}

/// For example "abstract syntax not supported" (PS3.8 Table 9-18).
impl fmt::Display for super::PresentationContextResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Acceptance => "acceptance",
            Self::UserRejection => "user rejection",
            Self::ProviderRejection => "no reason (provider rejection)",
            Self::AbstractSyntaxNotSupported => "abstract syntax not supported",
            Self::TransferSyntaxesNotSupported => "transfer syntaxes not supported",
        })
    }
}
