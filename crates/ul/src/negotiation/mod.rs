//! Association negotiation (PS3.8 §7.1, §9.3.2–9.3.4; PS3.7 Annex D.3.3), both sides.
//!
//! * The requestor describes what it wants in an [`AssociationRequest`], turns it into an
//!   A-ASSOCIATE-RQ with [`AssociationRequest::to_pdu`] and reads the acceptor's answer with
//!   [`AssociationRequest::interpret_ac`].
//! * The acceptor describes what it supports in an [`AcceptorPolicy`] and answers an
//!   A-ASSOCIATE-RQ with [`AcceptorPolicy::evaluate`]: an A-ASSOCIATE-AC or an A-ASSOCIATE-RJ.
//!
//! Both sides end with the same [`Negotiated`] view of the association.
//!
//! Choices where the standard leaves room (each is tested):
//!
//! * **Maximum length.** PS3.8 §D.1 makes the maximum length sub-item mandatory. When a
//!   non-conforming peer omits it, the peer is taken to have announced 0 ("no limit"), which is
//!   what DCMTK does. The sender still caps its own PDUs.
//! * **Rejected contexts** carry the first transfer syntax the requestor proposed (empty if it
//!   proposed none) in the AC, as pynetdicom does; PS3.8 Table 9-18 says the field is not
//!   significant then, and a non-empty UID keeps strict decoders happy (DCMTK sends it empty).
//! * **Invalid context ids.** PS3.8 §9.3.2.2 requires odd ids, each used once. An even id, or an
//!   id that appears more than once (which makes every answer carrying it ambiguous), is answered
//!   with "no-reason (provider rejection)" for every item carrying it; the rest of the association
//!   proceeds. Contexts beyond the acceptor's local limit are provider-rejected the same way.
//! * **Role selection** follows PS3.7 §D.3.3.4: without a role item the requestor is SCU and the
//!   acceptor SCP; with one, the acceptor grants each proposed role it supports and never a role
//!   that was not proposed. If that leaves the requestor with no role at all, the context is
//!   refused with "user-rejection" (as pynetdicom does) and no role item is sent.
//! * **An AC that accepts nothing** is not an error: the caller decides what to do with it.
//! * **An AC that omits a proposed context** is read as a provider rejection of it; an AC that
//!   answers a context id that was not proposed, answers one twice, or accepts one with a transfer
//!   syntax that was not proposed for it is an error.

mod acceptor;
mod find_options;
mod requestor;
#[cfg(test)]
mod tests;

pub use acceptor::{
    AcceptorPolicy, Decision, IdentityOutcome, SopClassExtendedHandler, SupportedContext,
    UserIdentityHandler, provider_rejection, reject_local_limit_exceeded,
    reject_temporary_congestion,
};
pub use find_options::{FIND_OPTION_BYTES, FindOptions};
pub use requestor::{AssociationRequest, ProposedContext};

use crate::pdu::{
    AsyncOpsWindow, MAX_AE_TITLE_LEN, PresentationContextResult, RoleSelection,
    SopClassCommonExtendedNegotiation, SopClassExtendedNegotiation, UserIdentityAc, UserIdentityRq,
};

/// The maximum P-DATA-TF length announced unless configured otherwise (the value DCMTK uses).
pub const DEFAULT_MAX_PDU_LENGTH: u32 = 16_384;
/// Presentation context ids are odd numbers 1–255 (PS3.8 §9.3.2.2): at most 128 contexts.
pub const MAX_PRESENTATION_CONTEXTS: usize = 128;
/// Longest implementation version name (PS3.7 §D.3.3.2).
pub const MAX_IMPLEMENTATION_VERSION_NAME_LEN: usize = 16;

/// The outcome of an association negotiation as both sides see it (PS3.8 §7.1.1, PS3.7 Annex
/// D.3.3).
///
/// `Negotiated::default()` is "nothing negotiated yet": no context, no limits known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Calling AE title (the requestor's), without padding.
    pub calling_ae_title: String,
    /// Called AE title (the acceptor's), without padding.
    pub called_ae_title: String,
    /// Every proposed presentation context with its result, in the order proposed.
    pub contexts: Vec<NegotiatedContext>,
    /// The longest P-DATA-TF the peer accepts (its maximum length sub-item): what we may send.
    /// 0 means no limit.
    pub peer_max_pdu_length: u32,
    /// The longest P-DATA-TF we announced we accept. 0 means no limit.
    pub local_max_pdu_length: u32,
    pub peer_implementation_class_uid: Option<String>,
    pub peer_implementation_version_name: Option<String>,
    /// The asynchronous operations window of the AC; `None` when it was not negotiated, which
    /// means 1/1 (no asynchronous operations): see [`Negotiated::async_window`].
    pub async_ops_window: Option<AsyncOpsWindow>,
    /// The acceptor's user identity response (sub-item 0x59), when it sent one.
    pub user_identity_response: Option<UserIdentityAc>,
    /// The requestor's user identity (sub-item 0x58), when it sent one.
    pub user_identity: Option<UserIdentityRq>,
    /// SOP class extended negotiation as agreed: the acceptor's answers (PS3.7 §D.3.3.5).
    pub sop_class_extended: Vec<SopClassExtendedNegotiation>,
    /// The requestor's SOP class common extended negotiation items (PS3.7 §D.3.3.6; the acceptor
    /// does not answer them).
    pub sop_class_common_extended: Vec<SopClassCommonExtendedNegotiation>,
}

/// One presentation context after negotiation (PS3.8 §9.3.3.2 with the roles of PS3.7
/// §D.3.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub result: PresentationContextResult,
    /// The accepted transfer syntax; `Some` only when the context was accepted.
    pub transfer_syntax: Option<String>,
    /// The requestor may act as SCU on this context. False for a context that was not accepted.
    pub scu_role: bool,
    /// The requestor may act as SCP on this context. False for a context that was not accepted.
    pub scp_role: bool,
}

impl NegotiatedContext {
    /// Whether the context was accepted.
    pub fn is_accepted(&self) -> bool {
        self.result == PresentationContextResult::Acceptance
    }

    /// The acceptor acts as SCU exactly when the requestor acts as SCP.
    pub fn acceptor_scu_role(&self) -> bool {
        self.scp_role
    }

    /// The acceptor acts as SCP exactly when the requestor acts as SCU.
    pub fn acceptor_scp_role(&self) -> bool {
        self.scu_role
    }
}

impl Negotiated {
    /// The accepted presentation contexts, in the order proposed.
    pub fn accepted(&self) -> impl Iterator<Item = &NegotiatedContext> {
        self.contexts.iter().filter(|ctx| ctx.is_accepted())
    }

    /// The first accepted context (in the order proposed) for an abstract syntax.
    pub fn find_accepted(&self, abstract_syntax: &str) -> Option<&NegotiatedContext> {
        let wanted = trim_uid(abstract_syntax);
        self.accepted()
            .find(|ctx| trim_uid(&ctx.abstract_syntax) == wanted)
    }

    /// The accepted context for an abstract syntax whose transfer syntax comes first in
    /// `preferred_transfer_syntaxes`; when none of them was accepted, the first accepted context
    /// for the abstract syntax.
    pub fn find_accepted_preferring(
        &self,
        abstract_syntax: &str,
        preferred_transfer_syntaxes: &[&str],
    ) -> Option<&NegotiatedContext> {
        let wanted = trim_uid(abstract_syntax);
        let candidates = || {
            self.accepted()
                .filter(move |ctx| trim_uid(&ctx.abstract_syntax) == wanted)
        };
        preferred_transfer_syntaxes
            .iter()
            .find_map(|preferred| {
                candidates().find(|ctx| {
                    ctx.transfer_syntax
                        .as_deref()
                        .is_some_and(|ts| trim_uid(ts) == trim_uid(preferred))
                })
            })
            .or_else(|| candidates().next())
    }

    /// The context with this id, whatever its result.
    pub fn context(&self, id: u8) -> Option<&NegotiatedContext> {
        self.contexts.iter().find(|ctx| ctx.id == id)
    }

    /// The asynchronous operations window in force: the negotiated one, or 1/1 (PS3.7
    /// §D.3.3.3: without negotiation, operations are synchronous).
    pub fn async_window(&self) -> AsyncOpsWindow {
        self.async_ops_window.unwrap_or(AsyncOpsWindow {
            max_operations_invoked: 1,
            max_operations_performed: 1,
        })
    }
}

/// Why an association request could not be built or an acceptor's answer not understood
/// (PS3.8 §9.3.2–9.3.3, PS3.7 Annex D.3.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("invalid {which} AE title {title:?}: {reason}")]
    InvalidAeTitle {
        which: &'static str,
        title: String,
        reason: &'static str,
    },
    #[error("invalid {field} UID {uid:?}: {reason}")]
    InvalidUid {
        field: &'static str,
        uid: String,
        reason: &'static str,
    },
    #[error("invalid implementation version name {name:?}: {reason}")]
    InvalidImplementationVersionName { name: String, reason: &'static str },
    #[error("no presentation context to propose")]
    NoPresentationContexts,
    #[error(
        "{count} presentation contexts proposed, at most {MAX_PRESENTATION_CONTEXTS} fit in an association"
    )]
    TooManyPresentationContexts { count: usize },
    #[error("the presentation context for {abstract_syntax} proposes no transfer syntax")]
    NoTransferSyntax { abstract_syntax: String },
    #[error("more than one SCP/SCU role selection for SOP class {sop_class_uid}")]
    DuplicateRoleSelection { sop_class_uid: String },
    #[error("invalid user identity: {0}")]
    InvalidUserIdentity(&'static str),
    #[error("the A-ASSOCIATE-AC answers presentation context {id}, which was not proposed")]
    UnknownContextId { id: u8 },
    #[error("the A-ASSOCIATE-AC answers presentation context {id} more than once")]
    DuplicateContextResult { id: u8 },
    #[error(
        "the A-ASSOCIATE-AC accepts presentation context {id} with transfer syntax {transfer_syntax:?}, which was not proposed for it"
    )]
    TransferSyntaxNotProposed { id: u8, transfer_syntax: String },
}

/// The role the requestor ends up with for a SOP class (PS3.7 §D.3.3.4), from its proposal and
/// the acceptor's answer. Without both, the defaults apply: requestor SCU, acceptor SCP. With
/// both, a role is held only when proposed and granted (the requestor ignores a grant of a role
/// it did not propose).
fn requestor_roles(
    proposal: Option<&RoleSelection>,
    answer: Option<&RoleSelection>,
) -> (bool, bool) {
    match (proposal, answer) {
        (Some(proposal), Some(answer)) => (
            proposal.scu_role && answer.scu_role,
            proposal.scp_role && answer.scp_role,
        ),
        _ => (true, false),
    }
}

/// The first role selection item for a SOP class.
fn find_role<'a>(roles: &'a [RoleSelection], sop_class_uid: &str) -> Option<&'a RoleSelection> {
    let wanted = trim_uid(sop_class_uid);
    roles
        .iter()
        .find(|role| trim_uid(&role.sop_class_uid) == wanted)
}

/// A UID as received, without the trailing NUL padding of the wire (or a stray trailing space).
fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

/// An AE title without its insignificant leading and trailing spaces (PS3.5 §6.2, AE VR).
fn trim_ae_title(title: &str) -> &str {
    title.trim_matches(' ')
}

/// Checks an AE title (PS3.5 §6.2, AE VR): 1–16 characters of the ISO 646 basic G0 set without
/// backslash, not all spaces. Returns it without leading/trailing spaces.
pub fn validate_ae_title<'a>(
    which: &'static str,
    title: &'a str,
) -> Result<&'a str, NegotiationError> {
    let invalid = |reason| NegotiationError::InvalidAeTitle {
        which,
        title: title.to_owned(),
        reason,
    };
    if title.len() > MAX_AE_TITLE_LEN {
        return Err(invalid("longer than 16 characters"));
    }
    if let Some(bad) = title.chars().find(|&c| !(' '..='~').contains(&c)) {
        return Err(invalid(if bad.is_control() {
            "contains a control character"
        } else {
            "contains a character outside ISO 646 (ASCII)"
        }));
    }
    if title.contains('\\') {
        return Err(invalid("contains a backslash"));
    }
    let trimmed = trim_ae_title(title);
    if trimmed.is_empty() {
        return Err(invalid("empty or only spaces"));
    }
    Ok(trimmed)
}

/// Whether a UID has the syntax of PS3.5 §9.1; the rule is [`crate::uid::validate`]'s.
pub use crate::uid::is_valid as is_valid_uid;

/// Checks a UID (PS3.5 §9.1, through [`crate::uid::validate`]) for the named field.
pub fn validate_uid(field: &'static str, uid: &str) -> Result<(), NegotiationError> {
    crate::uid::validate(uid).map_err(|error| NegotiationError::InvalidUid {
        field,
        uid: uid.to_owned(),
        reason: error.reason(),
    })
}

/// Checks an implementation version name (PS3.7 §D.3.3.2): 1–16 ISO 646 basic G0 characters.
pub fn validate_implementation_version_name(name: &str) -> Result<(), NegotiationError> {
    let invalid = |reason| NegotiationError::InvalidImplementationVersionName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_IMPLEMENTATION_VERSION_NAME_LEN {
        return Err(invalid("longer than 16 characters"));
    }
    if !name.chars().all(|c| (' '..='~').contains(&c)) {
        return Err(invalid(
            "contains a character outside the ISO 646 basic G0 set",
        ));
    }
    Ok(())
}
