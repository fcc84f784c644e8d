//! Protocol Data Units of the DICOM Upper Layer (PS3.8 §9.3) and their items and sub-items
//! (PS3.8 §9.3.2–9.3.7, PS3.7 Annex D.3).
//!
//! The types here are plain data. [`codec`] encodes them and decodes them strictly: every length
//! is checked against the bytes present and against [`DecodeLimits`] before anything is
//! allocated.

pub mod codec;
mod decode;
mod encode;
mod reasons;
#[cfg(test)]
mod tests;

pub use codec::{DecodeError, DecodeLimits, EncodeError, PduHeader, decode_from, read_header};

use bytes::Bytes;

/// Length of the fixed PDU header: type (1), reserved (1), length (4).
pub const PDU_HEADER_LEN: usize = 6;
/// Length of a PDV item header inside a P-DATA-TF: item length (4), context id (1), control (1).
pub const PDV_HEADER_LEN: usize = 6;
/// Longest AE title on the wire (PS3.5 §6.2, AE VR).
pub const MAX_AE_TITLE_LEN: usize = 16;
/// Longest UID (PS3.5 §9.1).
pub const MAX_UID_LEN: usize = crate::uid::MAX_LEN;

/// Item and sub-item type codes (PS3.8 §9.3.2–9.3.3, Annex D; PS3.7 Annex D.3.3).
pub mod item_type {
    /// Application context item (PS3.8 §9.3.2.1).
    pub const APPLICATION_CONTEXT: u8 = 0x10;
    /// Presentation context item of an A-ASSOCIATE-RQ (PS3.8 §9.3.2.2).
    pub const PRESENTATION_CONTEXT_RQ: u8 = 0x20;
    /// Presentation context item of an A-ASSOCIATE-AC (PS3.8 §9.3.3.2).
    pub const PRESENTATION_CONTEXT_AC: u8 = 0x21;
    /// Abstract syntax sub-item (PS3.8 §9.3.2.2.1).
    pub const ABSTRACT_SYNTAX: u8 = 0x30;
    /// Transfer syntax sub-item (PS3.8 §9.3.2.2.2).
    pub const TRANSFER_SYNTAX: u8 = 0x40;
    /// User information item (PS3.8 §9.3.2.3).
    pub const USER_INFORMATION: u8 = 0x50;
    /// Maximum length sub-item (PS3.8 §D.1).
    pub const MAX_LENGTH: u8 = 0x51;
    /// Implementation class UID sub-item (PS3.7 §D.3.3.2).
    pub const IMPLEMENTATION_CLASS_UID: u8 = 0x52;
    /// Asynchronous operations window sub-item (PS3.7 §D.3.3.3).
    pub const ASYNC_OPS_WINDOW: u8 = 0x53;
    /// SCP/SCU role selection sub-item (PS3.7 §D.3.3.4).
    pub const ROLE_SELECTION: u8 = 0x54;
    /// Implementation version name sub-item (PS3.7 §D.3.3.2).
    pub const IMPLEMENTATION_VERSION_NAME: u8 = 0x55;
    /// SOP class extended negotiation sub-item (PS3.7 §D.3.3.5).
    pub const SOP_CLASS_EXTENDED: u8 = 0x56;
    /// SOP class common extended negotiation sub-item (PS3.7 §D.3.3.6).
    pub const SOP_CLASS_COMMON_EXTENDED: u8 = 0x57;
    /// User identity sub-item of an A-ASSOCIATE-RQ (PS3.7 §D.3.3.7.1).
    pub const USER_IDENTITY_RQ: u8 = 0x58;
    /// User identity sub-item of an A-ASSOCIATE-AC (PS3.7 §D.3.3.7.2).
    pub const USER_IDENTITY_AC: u8 = 0x59;

    /// True for the user information sub-item types that have a field of their own in
    /// [`super::UserInformation`] (0x51–0x59).
    pub fn is_known_user_information_sub_item(item_type: u8) -> bool {
        (MAX_LENGTH..=USER_IDENTITY_AC).contains(&item_type)
    }
}

/// PDU type codes (PS3.8 Table 9-11 and following).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    AssociateRq = 0x01,
    AssociateAc = 0x02,
    AssociateRj = 0x03,
    PData = 0x04,
    ReleaseRq = 0x05,
    ReleaseRp = 0x06,
    Abort = 0x07,
}

impl PduType {
    /// The PDU type for a wire code, or `None` for an unrecognized one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::AssociateRq,
            0x02 => Self::AssociateAc,
            0x03 => Self::AssociateRj,
            0x04 => Self::PData,
            0x05 => Self::ReleaseRq,
            0x06 => Self::ReleaseRp,
            0x07 => Self::Abort,
            _ => return None,
        })
    }
}

/// A Protocol Data Unit of the Upper Layer (PS3.8 §9.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    AssociateRq(AssociateRq),
    AssociateAc(AssociateAc),
    AssociateRj(AssociateRj),
    PData(PData),
    ReleaseRq,
    ReleaseRp,
    Abort(Abort),
}

impl Pdu {
    /// The PDU's type code.
    pub fn pdu_type(&self) -> PduType {
        match self {
            Pdu::AssociateRq(_) => PduType::AssociateRq,
            Pdu::AssociateAc(_) => PduType::AssociateAc,
            Pdu::AssociateRj(_) => PduType::AssociateRj,
            Pdu::PData(_) => PduType::PData,
            Pdu::ReleaseRq => PduType::ReleaseRq,
            Pdu::ReleaseRp => PduType::ReleaseRp,
            Pdu::Abort(_) => PduType::Abort,
        }
    }
}

/// A-ASSOCIATE-RQ PDU (PS3.8 §9.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateRq {
    /// Protocol version bit field; only bit 0 (version 1) is defined.
    pub protocol_version: u16,
    /// Called AE title, without the space padding of the wire.
    pub called_ae_title: String,
    /// Calling AE title, without the space padding of the wire.
    pub calling_ae_title: String,
    /// Application context name (PS3.8 §9.3.2.1), normally [`crate::uids::APPLICATION_CONTEXT_NAME`].
    pub application_context_name: String,
    /// Presentation context items (PS3.8 §9.3.2.2).
    pub presentation_contexts: Vec<PresentationContextRq>,
    /// User information item (PS3.8 §9.3.2.3).
    pub user_information: UserInformation,
}

/// A-ASSOCIATE-AC PDU (PS3.8 §9.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateAc {
    /// Protocol version bit field; only bit 0 (version 1) is defined.
    pub protocol_version: u16,
    /// Called AE title echoed from the request (the standard reserves the field but tells
    /// implementations to send the request's value).
    pub called_ae_title: String,
    /// Calling AE title echoed from the request.
    pub calling_ae_title: String,
    /// Application context name (PS3.8 §9.3.3.1).
    pub application_context_name: String,
    /// Presentation context result items (PS3.8 §9.3.3.2).
    pub presentation_contexts: Vec<PresentationContextAc>,
    /// User information item (PS3.8 §9.3.3.3).
    pub user_information: UserInformation,
}

/// Presentation context item of an A-ASSOCIATE-RQ (PS3.8 §9.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextRq {
    /// Odd number 1–255.
    pub id: u8,
    /// Abstract syntax sub-item (PS3.8 §9.3.2.2.1): a SOP class UID.
    pub abstract_syntax: String,
    /// Transfer syntax sub-items (PS3.8 §9.3.2.2.2), in order of preference.
    pub transfer_syntaxes: Vec<String>,
}

/// Presentation context item of an A-ASSOCIATE-AC (PS3.8 §9.3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextAc {
    pub id: u8,
    pub result: PresentationContextResult,
    /// The accepted transfer syntax; the standard says to ignore it unless the result is
    /// acceptance, and implementations may send it empty then.
    pub transfer_syntax: String,
}

/// Result/reason field of a presentation context AC item (PS3.8 Table 9-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresentationContextResult {
    Acceptance,
    UserRejection,
    /// "no-reason (provider rejection)".
    ProviderRejection,
    AbstractSyntaxNotSupported,
    TransferSyntaxesNotSupported,
}

impl PresentationContextResult {
    pub fn code(self) -> u8 {
        match self {
            Self::Acceptance => 0,
            Self::UserRejection => 1,
            Self::ProviderRejection => 2,
            Self::AbstractSyntaxNotSupported => 3,
            Self::TransferSyntaxesNotSupported => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Acceptance,
            1 => Self::UserRejection,
            2 => Self::ProviderRejection,
            3 => Self::AbstractSyntaxNotSupported,
            4 => Self::TransferSyntaxesNotSupported,
            _ => return None,
        })
    }
}

/// User information item (PS3.8 §9.3.2.3, §9.3.3.3) with its sub-items (PS3.8 Annex D,
/// PS3.7 Annex D.3.3). Sub-items of unknown type are kept in [`UserInformation::unknown`].
///
/// Sub-items are encoded in this order: 0x51, 0x52, 0x53, 0x54…, 0x55, 0x56…, 0x57…, 0x58, 0x59,
/// then the unknown ones as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInformation {
    /// Maximum length sub-item 0x51 (PS3.8 §D.1): the longest P-DATA-TF PDU (its length field)
    /// the sender can receive; 0 means no limit.
    pub max_length: Option<u32>,
    /// Implementation class UID sub-item 0x52 (PS3.7 §D.3.3.2).
    pub implementation_class_uid: Option<String>,
    /// Asynchronous operations window sub-item 0x53 (PS3.7 §D.3.3.3).
    pub async_ops_window: Option<AsyncOpsWindow>,
    /// SCP/SCU role selection sub-items 0x54 (PS3.7 §D.3.3.4).
    pub role_selections: Vec<RoleSelection>,
    /// Implementation version name sub-item 0x55 (PS3.7 §D.3.3.2).
    pub implementation_version_name: Option<String>,
    /// SOP class extended negotiation sub-items 0x56 (PS3.7 §D.3.3.5).
    pub sop_class_extended: Vec<SopClassExtendedNegotiation>,
    /// SOP class common extended negotiation sub-items 0x57 (PS3.7 §D.3.3.6); RQ only.
    pub sop_class_common_extended: Vec<SopClassCommonExtendedNegotiation>,
    /// User identity negotiation sub-item 0x58 (PS3.7 §D.3.3.7.1); RQ only.
    pub user_identity_rq: Option<UserIdentityRq>,
    /// User identity negotiation sub-item 0x59 (PS3.7 §D.3.3.7.2); AC only.
    pub user_identity_ac: Option<UserIdentityAc>,
    /// Sub-items of types this implementation does not know, kept as received.
    pub unknown: Vec<UnknownSubItem>,
}

/// Asynchronous operations window sub-item (PS3.7 §D.3.3.3). 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncOpsWindow {
    pub max_operations_invoked: u16,
    pub max_operations_performed: u16,
}

/// SCP/SCU role selection sub-item (PS3.7 §D.3.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSelection {
    pub sop_class_uid: String,
    /// In an RQ: the requestor proposes to act as SCU; in an AC: the acceptor accepts that.
    pub scu_role: bool,
    /// In an RQ: the requestor proposes to act as SCP; in an AC: the acceptor accepts that.
    pub scp_role: bool,
}

/// SOP class extended negotiation sub-item (PS3.7 §D.3.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SopClassExtendedNegotiation {
    pub sop_class_uid: String,
    /// Service-class-application-information, defined by each service class (PS3.4).
    pub service_class_application_information: Vec<u8>,
}

/// SOP class common extended negotiation sub-item (PS3.7 §D.3.3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SopClassCommonExtendedNegotiation {
    pub sop_class_uid: String,
    pub service_class_uid: String,
    pub related_general_sop_class_uids: Vec<String>,
}

/// User identity type (PS3.7 Table D.3-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserIdentityType {
    Username,
    UsernameAndPasscode,
    Kerberos,
    Saml,
    Jwt,
}

impl UserIdentityType {
    pub fn code(self) -> u8 {
        match self {
            Self::Username => 1,
            Self::UsernameAndPasscode => 2,
            Self::Kerberos => 3,
            Self::Saml => 4,
            Self::Jwt => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Username,
            2 => Self::UsernameAndPasscode,
            3 => Self::Kerberos,
            4 => Self::Saml,
            5 => Self::Jwt,
            _ => return None,
        })
    }
}

/// User identity negotiation sub-item of an A-ASSOCIATE-RQ (PS3.7 §D.3.3.7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentityRq {
    pub identity_type: UserIdentityType,
    pub positive_response_requested: bool,
    /// Username, Kerberos ticket, SAML assertion or JWT.
    pub primary_field: Vec<u8>,
    /// Passcode; empty unless the type is [`UserIdentityType::UsernameAndPasscode`].
    pub secondary_field: Vec<u8>,
}

/// User identity negotiation sub-item of an A-ASSOCIATE-AC (PS3.7 §D.3.3.7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentityAc {
    /// Server response: a Kerberos ticket, SAML response or JWT; empty for a username.
    pub server_response: Vec<u8>,
}

/// A user information sub-item of a type this implementation does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSubItem {
    pub item_type: u8,
    pub data: Vec<u8>,
}

/// A-ASSOCIATE-RJ PDU (PS3.8 §9.3.4, Table 9-21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociateRj {
    pub result: RejectResult,
    pub source: RejectSource,
}

/// Result field of an A-ASSOCIATE-RJ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectResult {
    /// 1: rejected-permanent.
    Permanent,
    /// 2: rejected-transient.
    Transient,
}

/// Source field of an A-ASSOCIATE-RJ with the reason/diagnostic that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectSource {
    /// 1: DICOM UL service-user.
    ServiceUser(ServiceUserReason),
    /// 2: DICOM UL service-provider (ACSE related function).
    ServiceProviderAcse(ServiceProviderAcseReason),
    /// 3: DICOM UL service-provider (Presentation related function).
    ServiceProviderPresentation(ServiceProviderPresentationReason),
}

/// Reasons given by the service-user (PS3.8 Table 9-21, source 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceUserReason {
    NoReasonGiven,
    ApplicationContextNameNotSupported,
    CallingAeTitleNotRecognized,
    CalledAeTitleNotRecognized,
    /// Any other (reserved) value, kept as received.
    Reserved(u8),
}

/// Reasons given by the service-provider, ACSE function (PS3.8 Table 9-21, source 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceProviderAcseReason {
    NoReasonGiven,
    ProtocolVersionNotSupported,
    Reserved(u8),
}

/// Reasons given by the service-provider, presentation function (PS3.8 Table 9-21, source 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceProviderPresentationReason {
    TemporaryCongestion,
    LocalLimitExceeded,
    Reserved(u8),
}

/// P-DATA-TF PDU (PS3.8 §9.3.5): one or more presentation data values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PData {
    pub pdvs: Vec<Pdv>,
}

/// A presentation data value item (PS3.8 §9.3.5.1) with its message control header (PS3.8 Annex
/// E.2). `data` shares the received buffer: decoding a P-DATA-TF copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdv {
    pub presentation_context_id: u8,
    /// Control header bit 0: the fragment belongs to a command set (otherwise a data set).
    pub is_command: bool,
    /// Control header bit 1: the last fragment of the command or data set.
    pub is_last: bool,
    pub data: Bytes,
}

/// A-ABORT PDU (PS3.8 §9.3.8, Table 9-26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    pub source: AbortSource,
    /// Meaningful only when the source is the service-provider; 0 otherwise.
    pub reason: AbortReason,
}

/// Source field of an A-ABORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortSource {
    /// 0: DICOM UL service-user (initiated abort).
    ServiceUser,
    /// 1: reserved.
    Reserved,
    /// 2: DICOM UL service-provider (initiated abort).
    ServiceProvider,
}

/// Reason/diagnostic field of an A-ABORT sent by the service-provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortReason {
    NotSpecified,
    UnrecognizedPdu,
    UnexpectedPdu,
    UnrecognizedPduParameter,
    UnexpectedPduParameter,
    InvalidPduParameterValue,
    /// 3 or any value above 6, kept as received.
    Reserved(u8),
}
