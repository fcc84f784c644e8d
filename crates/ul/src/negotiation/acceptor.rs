//! The association acceptor: answering an A-ASSOCIATE-RQ with an AC or an RJ according to a
//! policy (PS3.8 §9.3.3, §9.3.4; PS3.7 Annex D.3.3).

use std::fmt;
use std::sync::Arc;

use super::{
    MAX_PRESENTATION_CONTEXTS, Negotiated, NegotiatedContext, find_role, is_valid_uid,
    requestor_roles, trim_ae_title, trim_uid,
};
use crate::pdu::{
    AssociateAc, AssociateRj, AssociateRq, AsyncOpsWindow, PresentationContextAc,
    PresentationContextResult, PresentationContextRq, RejectResult, RejectSource, RoleSelection,
    ServiceProviderAcseReason, ServiceProviderPresentationReason, ServiceUserReason,
    SopClassExtendedNegotiation, UserIdentityAc, UserIdentityRq, UserIdentityType, UserInformation,
};
use crate::uids;

/// What the acceptor supports for one abstract syntax (PS3.8 §9.3.3.2; the roles of PS3.7
/// §D.3.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedContext {
    pub abstract_syntax: String,
    /// The transfer syntaxes we accept, in our order of preference: the first one that the
    /// requestor also proposed is chosen.
    pub transfer_syntaxes: Vec<String>,
    /// We let the requestor act as SCU for this SOP class when its role selection asks for it.
    pub scu_role: bool,
    /// We let the requestor act as SCP for this SOP class when its role selection asks for it
    /// (e.g. the storage SOP classes of a C-GET SCP).
    pub scp_role: bool,
}

impl SupportedContext {
    /// Supports `abstract_syntax` with these transfer syntaxes (our preference order), granting
    /// the requestor the SCU role only (the default roles).
    pub fn new(
        abstract_syntax: impl Into<String>,
        transfer_syntaxes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            abstract_syntax: abstract_syntax.into(),
            transfer_syntaxes: transfer_syntaxes.into_iter().map(Into::into).collect(),
            scu_role: true,
            scp_role: false,
        }
    }

    /// Sets which proposed requestor roles we grant.
    pub fn with_roles(mut self, scu_role: bool, scp_role: bool) -> Self {
        self.scu_role = scu_role;
        self.scp_role = scp_role;
        self
    }
}

/// What a user identity handler decides (PS3.7 §D.3.3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityOutcome {
    /// The identity is accepted. The bytes are the server response (Kerberos ticket, SAML
    /// response, JWT) sent back when the requestor asked for a positive response; they are
    /// ignored for the username types, whose response is empty.
    Accept(Option<Vec<u8>>),
    /// The identity is refused: the association is rejected (rejected-permanent, service-user,
    /// no-reason-given).
    Reject,
}

/// The function behind a [`UserIdentityHandler`].
type UserIdentityFn = dyn Fn(&UserIdentityRq, &AssociateRq) -> IdentityOutcome + Send + Sync;

/// Decides on a requestor's user identity (PS3.7 §D.3.3.7), given the whole request for context.
#[derive(Clone)]
pub struct UserIdentityHandler(Arc<UserIdentityFn>);

impl UserIdentityHandler {
    pub fn new(
        handler: impl Fn(&UserIdentityRq, &AssociateRq) -> IdentityOutcome + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(handler))
    }
}

impl fmt::Debug for UserIdentityHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserIdentityHandler(..)")
    }
}

/// Answers a SOP class extended negotiation item (PS3.7 §D.3.3.5): `Some(application
/// information)` to send back, `None` to leave it unanswered (meaning "not supported").
#[derive(Clone)]
pub struct SopClassExtendedHandler(Arc<SopClassExtendedFn>);

/// The function behind a [`SopClassExtendedHandler`].
type SopClassExtendedFn = dyn Fn(&SopClassExtendedNegotiation) -> Option<Vec<u8>> + Send + Sync;

impl SopClassExtendedHandler {
    pub fn new(
        handler: impl Fn(&SopClassExtendedNegotiation) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(handler))
    }
}

impl fmt::Debug for SopClassExtendedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SopClassExtendedHandler(..)")
    }
}

/// How an acceptor answers association requests (PS3.8 §9.3.3–9.3.4, PS3.7 Annex D.3.3): its AE
/// title and the checks on the AE titles, the presentation contexts it supports and the answers
/// to the user information sub-items.
#[derive(Debug, Clone)]
pub struct AcceptorPolicy {
    pub ae_title: String,
    /// Reject with called-AE-title-not-recognized when the called AE title differs from
    /// `ae_title` (both compared without leading/trailing spaces).
    pub require_called_ae_title: bool,
    /// `None` accepts any calling AE title; otherwise one outside the list is rejected with
    /// calling-AE-title-not-recognized.
    pub allowed_calling_ae_titles: Option<Vec<String>>,
    pub supported: Vec<SupportedContext>,
    /// Promiscuous mode, for storage: `Some(list)` accepts any abstract syntax that is not in
    /// `supported` (and is a valid UID) with the first transfer syntax of `list` that the
    /// requestor proposed, or with the requestor's first proposed transfer syntax when `list`
    /// is empty. The requestor gets the default role (SCU) only.
    pub promiscuous_transfer_syntaxes: Option<Vec<String>>,
    /// The longest P-DATA-TF we accept, announced in the AC; 0 means no limit.
    pub max_pdu_length: u32,
    /// How many presentation contexts of a request we negotiate; the later ones are
    /// provider-rejected.
    pub max_contexts: usize,
    /// Our asynchronous operations window, answered when the requestor proposes one; `None`
    /// answers 1/1 (no asynchronous operations).
    pub async_ops_window: Option<AsyncOpsWindow>,
    /// `None`: a user identity sub-item is ignored (PS3.7 §D.3.3.7 allows it) and never
    /// answered.
    pub user_identity_handler: Option<UserIdentityHandler>,
    /// `None`: SOP class extended negotiation items are not answered.
    pub sop_class_extended_handler: Option<SopClassExtendedHandler>,
    pub implementation_class_uid: String,
    pub implementation_version_name: Option<String>,
}

/// The acceptor's answer to an A-ASSOCIATE-RQ (PS3.8 §9.3.3, §9.3.4).
// One value per association, consumed at once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Decision {
    Accept {
        ac: AssociateAc,
        negotiated: Negotiated,
    },
    Reject(AssociateRj),
}

/// rejected-transient, service-provider (presentation), local-limit-exceeded (PS3.8 Table 9-21):
/// the answer of a server that already runs as many associations as it allows.
pub fn reject_local_limit_exceeded() -> AssociateRj {
    AssociateRj {
        result: RejectResult::Transient,
        source: RejectSource::ServiceProviderPresentation(
            ServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    }
}

/// rejected-transient, service-provider (presentation), temporary-congestion (PS3.8 Table 9-21).
pub fn reject_temporary_congestion() -> AssociateRj {
    AssociateRj {
        result: RejectResult::Transient,
        source: RejectSource::ServiceProviderPresentation(
            ServiceProviderPresentationReason::TemporaryCongestion,
        ),
    }
}

/// The rejection the Upper Layer service-provider itself gives an A-ASSOCIATE-RQ it cannot take
/// (PS3.8 AE-6, "not acceptable by the service-provider"), before any user policy: a protocol
/// version without bit 0 (version 1) set is refused permanently with service-provider (ACSE)
/// source, protocol-version-not-supported (PS3.8 §9.3.2, Table 9-21).
pub fn provider_rejection(rq: &AssociateRq) -> Option<AssociateRj> {
    (rq.protocol_version & 1 == 0).then(|| {
        reject_permanent(RejectSource::ServiceProviderAcse(
            ServiceProviderAcseReason::ProtocolVersionNotSupported,
        ))
    })
}

fn reject_permanent(source: RejectSource) -> AssociateRj {
    AssociateRj {
        result: RejectResult::Permanent,
        source,
    }
}

/// The first choice among the values both sides allow, where 0 means "unlimited".
fn min_window_value(ours: u16, theirs: u16) -> u16 {
    match (ours, theirs) {
        (0, other) | (other, 0) => other,
        (a, b) => a.min(b),
    }
}

impl AcceptorPolicy {
    /// A policy for `ae_title` that supports nothing yet, checks neither AE title, negotiates
    /// up to 128 contexts, announces the default maximum length and answers 1/1 to an
    /// asynchronous operations window.
    pub fn new(ae_title: impl Into<String>) -> Self {
        Self {
            ae_title: ae_title.into(),
            require_called_ae_title: false,
            allowed_calling_ae_titles: None,
            supported: Vec::new(),
            promiscuous_transfer_syntaxes: None,
            max_pdu_length: super::DEFAULT_MAX_PDU_LENGTH,
            max_contexts: MAX_PRESENTATION_CONTEXTS,
            async_ops_window: None,
            user_identity_handler: None,
            sop_class_extended_handler: None,
            implementation_class_uid: uids::IMPLEMENTATION_CLASS_UID.to_owned(),
            implementation_version_name: Some(uids::IMPLEMENTATION_VERSION_NAME.to_owned()),
        }
    }

    /// Adds a supported abstract syntax. A later entry for the same abstract syntax is never
    /// consulted: the first one wins.
    pub fn support(mut self, ctx: SupportedContext) -> Self {
        self.supported.push(ctx);
        self
    }

    pub fn require_called_ae_title(mut self, require: bool) -> Self {
        self.require_called_ae_title = require;
        self
    }

    pub fn allow_calling_ae_titles(
        mut self,
        titles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.allowed_calling_ae_titles = Some(titles.into_iter().map(Into::into).collect());
        self
    }

    pub fn with_promiscuous_transfer_syntaxes(
        mut self,
        transfer_syntaxes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.promiscuous_transfer_syntaxes =
            Some(transfer_syntaxes.into_iter().map(Into::into).collect());
        self
    }

    pub fn with_max_pdu_length(mut self, max_pdu_length: u32) -> Self {
        self.max_pdu_length = max_pdu_length;
        self
    }

    pub fn with_max_contexts(mut self, max_contexts: usize) -> Self {
        self.max_contexts = max_contexts;
        self
    }

    pub fn with_async_ops_window(mut self, window: AsyncOpsWindow) -> Self {
        self.async_ops_window = Some(window);
        self
    }

    pub fn with_user_identity_handler(
        mut self,
        handler: impl Fn(&UserIdentityRq, &AssociateRq) -> IdentityOutcome + Send + Sync + 'static,
    ) -> Self {
        self.user_identity_handler = Some(UserIdentityHandler::new(handler));
        self
    }

    pub fn with_sop_class_extended_handler(
        mut self,
        handler: impl Fn(&SopClassExtendedNegotiation) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        self.sop_class_extended_handler = Some(SopClassExtendedHandler::new(handler));
        self
    }

    /// Answers an A-ASSOCIATE-RQ.
    ///
    /// Rejections, checked in this order (PS3.8 Table 9-21):
    /// 1. protocol version without bit 0: permanent, service-provider (ACSE),
    ///    protocol-version-not-supported (only bit 0 is tested);
    /// 2. application context name other than DICOM's: permanent, service-user,
    ///    application-context-name-not-supported;
    /// 3. called AE title (when required): permanent, service-user, called-AE-title-not-recognized;
    /// 4. calling AE title (when restricted): permanent, service-user,
    ///    calling-AE-title-not-recognized;
    /// 5. user identity refused by the handler: permanent, service-user, no-reason-given.
    ///
    /// Otherwise the AC answers every proposed context in order (see the module documentation),
    /// the role selections, extended negotiation, the asynchronous operations window and the
    /// user identity.
    pub fn evaluate(&self, rq: &AssociateRq) -> Decision {
        if let Some(rejection) = self.association_rejection(rq) {
            return Decision::Reject(rejection);
        }
        let user_identity_ac = match self.check_user_identity(rq) {
            Ok(response) => response,
            Err(rejection) => return Decision::Reject(rejection),
        };

        let (contexts, role_answers) = self.negotiate_contexts(rq);
        let rq_info = &rq.user_information;
        let sop_class_extended =
            self.answer_sop_class_extended(rq_info.sop_class_extended.as_slice(), &contexts);
        let async_ops_window = rq_info
            .async_ops_window
            .map(|proposed| self.answer_async_ops_window(proposed));

        let ac_contexts = rq
            .presentation_contexts
            .iter()
            .zip(&contexts)
            .map(|(proposed, negotiated)| PresentationContextAc {
                id: proposed.id,
                result: negotiated.result,
                transfer_syntax: negotiated.transfer_syntax.clone().unwrap_or_else(|| {
                    proposed
                        .transfer_syntaxes
                        .first()
                        .cloned()
                        .unwrap_or_default()
                }),
            })
            .collect();

        let ac = AssociateAc {
            protocol_version: 1,
            called_ae_title: rq.called_ae_title.clone(),
            calling_ae_title: rq.calling_ae_title.clone(),
            application_context_name: uids::APPLICATION_CONTEXT_NAME.to_owned(),
            presentation_contexts: ac_contexts,
            user_information: UserInformation {
                max_length: Some(self.max_pdu_length),
                implementation_class_uid: Some(self.implementation_class_uid.clone()),
                async_ops_window,
                role_selections: role_answers,
                implementation_version_name: self.implementation_version_name.clone(),
                sop_class_extended: sop_class_extended.clone(),
                sop_class_common_extended: Vec::new(),
                user_identity_rq: None,
                user_identity_ac: user_identity_ac.clone(),
                unknown: Vec::new(),
            },
        };
        let negotiated = Negotiated {
            calling_ae_title: trim_ae_title(&rq.calling_ae_title).to_owned(),
            called_ae_title: trim_ae_title(&rq.called_ae_title).to_owned(),
            contexts,
            peer_max_pdu_length: rq_info.max_length.unwrap_or(0),
            local_max_pdu_length: self.max_pdu_length,
            peer_implementation_class_uid: rq_info.implementation_class_uid.clone(),
            peer_implementation_version_name: rq_info.implementation_version_name.clone(),
            async_ops_window,
            user_identity_response: user_identity_ac,
            user_identity: rq_info.user_identity_rq.clone(),
            sop_class_extended,
            sop_class_common_extended: rq_info.sop_class_common_extended.clone(),
        };
        Decision::Accept { ac, negotiated }
    }

    /// The checks that refuse the whole association before any context is looked at.
    fn association_rejection(&self, rq: &AssociateRq) -> Option<AssociateRj> {
        if let Some(rejection) = provider_rejection(rq) {
            return Some(rejection);
        }
        if trim_uid(&rq.application_context_name) != uids::APPLICATION_CONTEXT_NAME {
            return Some(reject_permanent(RejectSource::ServiceUser(
                ServiceUserReason::ApplicationContextNameNotSupported,
            )));
        }
        if self.require_called_ae_title
            && trim_ae_title(&rq.called_ae_title) != trim_ae_title(&self.ae_title)
        {
            return Some(reject_permanent(RejectSource::ServiceUser(
                ServiceUserReason::CalledAeTitleNotRecognized,
            )));
        }
        if let Some(allowed) = &self.allowed_calling_ae_titles {
            let calling = trim_ae_title(&rq.calling_ae_title);
            if !allowed.iter().any(|title| trim_ae_title(title) == calling) {
                return Some(reject_permanent(RejectSource::ServiceUser(
                    ServiceUserReason::CallingAeTitleNotRecognized,
                )));
            }
        }
        None
    }

    /// Runs the user identity handler, if any: the 0x59 sub-item to send, or the rejection.
    fn check_user_identity(&self, rq: &AssociateRq) -> Result<Option<UserIdentityAc>, AssociateRj> {
        let (Some(handler), Some(identity)) = (
            &self.user_identity_handler,
            &rq.user_information.user_identity_rq,
        ) else {
            return Ok(None);
        };
        match (handler.0)(identity, rq) {
            IdentityOutcome::Reject => Err(reject_permanent(RejectSource::ServiceUser(
                ServiceUserReason::NoReasonGiven,
            ))),
            IdentityOutcome::Accept(_) if !identity.positive_response_requested => Ok(None),
            IdentityOutcome::Accept(response) => {
                let has_server_response = !matches!(
                    identity.identity_type,
                    UserIdentityType::Username | UserIdentityType::UsernameAndPasscode
                );
                let server_response = if has_server_response {
                    response.unwrap_or_default()
                } else {
                    Vec::new()
                };
                Ok(Some(UserIdentityAc { server_response }))
            }
        }
    }

    /// Negotiates every proposed context (in order) and answers the role selections of the SOP
    /// classes that were accepted.
    fn negotiate_contexts(&self, rq: &AssociateRq) -> (Vec<NegotiatedContext>, Vec<RoleSelection>) {
        let mut id_uses = [0u16; 256];
        for proposed in &rq.presentation_contexts {
            let uses = &mut id_uses[usize::from(proposed.id)];
            *uses = uses.saturating_add(1);
        }
        let role_proposals = &rq.user_information.role_selections;
        let mut role_answers: Vec<RoleSelection> = Vec::new();

        let contexts = rq
            .presentation_contexts
            .iter()
            .enumerate()
            .map(|(index, proposed)| {
                let abstract_syntax = trim_uid(&proposed.abstract_syntax);
                let id_is_usable = proposed.id % 2 == 1 && id_uses[usize::from(proposed.id)] == 1;
                if index >= self.max_contexts || !id_is_usable {
                    return refused(proposed, PresentationContextResult::ProviderRejection);
                }
                let (transfer_syntax, grantable_roles) = match self.choose_transfer_syntax(proposed)
                {
                    Ok(choice) => choice,
                    Err(result) => return refused(proposed, result),
                };
                let Some(proposal) = find_role(role_proposals, abstract_syntax) else {
                    let (scu_role, scp_role) = requestor_roles(None, None);
                    return accepted(proposed, transfer_syntax, scu_role, scp_role);
                };
                let answer = RoleSelection {
                    sop_class_uid: abstract_syntax.to_owned(),
                    scu_role: proposal.scu_role && grantable_roles.0,
                    scp_role: proposal.scp_role && grantable_roles.1,
                };
                let (scu_role, scp_role) = requestor_roles(Some(proposal), Some(&answer));
                if !scu_role && !scp_role {
                    return refused(proposed, PresentationContextResult::UserRejection);
                }
                if find_role(&role_answers, abstract_syntax).is_none() {
                    role_answers.push(answer);
                }
                accepted(proposed, transfer_syntax, scu_role, scp_role)
            })
            .collect();
        (contexts, role_answers)
    }

    /// The transfer syntax to accept for a context and the roles we grant for its abstract
    /// syntax (SCU, SCP), or the result that refuses it.
    fn choose_transfer_syntax<'a>(
        &'a self,
        proposed: &'a PresentationContextRq,
    ) -> Result<(&'a str, (bool, bool)), PresentationContextResult> {
        let abstract_syntax = trim_uid(&proposed.abstract_syntax);
        let is_proposed = |ts: &str| {
            proposed
                .transfer_syntaxes
                .iter()
                .any(|p| trim_uid(p) == trim_uid(ts))
        };
        let first_of_ours = |ours: &'a [String]| {
            ours.iter()
                .map(|ts| trim_uid(ts))
                .find(|ts| is_proposed(ts))
                .ok_or(PresentationContextResult::TransferSyntaxesNotSupported)
        };

        if let Some(supported) = self
            .supported
            .iter()
            .find(|s| trim_uid(&s.abstract_syntax) == abstract_syntax)
        {
            let ts = first_of_ours(&supported.transfer_syntaxes)?;
            return Ok((ts, (supported.scu_role, supported.scp_role)));
        }
        let Some(promiscuous) = &self.promiscuous_transfer_syntaxes else {
            return Err(PresentationContextResult::AbstractSyntaxNotSupported);
        };
        if !is_valid_uid(abstract_syntax) {
            return Err(PresentationContextResult::AbstractSyntaxNotSupported);
        }
        let ts = if promiscuous.is_empty() {
            proposed
                .transfer_syntaxes
                .iter()
                .map(|ts| trim_uid(ts))
                .find(|ts| is_valid_uid(ts))
                .ok_or(PresentationContextResult::TransferSyntaxesNotSupported)?
        } else {
            first_of_ours(promiscuous)?
        };
        Ok((ts, requestor_roles(None, None)))
    }

    /// Answers the SOP class extended negotiation items (the first per SOP class) of the SOP
    /// classes that have an accepted context.
    fn answer_sop_class_extended(
        &self,
        proposals: &[SopClassExtendedNegotiation],
        contexts: &[NegotiatedContext],
    ) -> Vec<SopClassExtendedNegotiation> {
        let Some(handler) = &self.sop_class_extended_handler else {
            return Vec::new();
        };
        let mut answers: Vec<SopClassExtendedNegotiation> = Vec::new();
        for proposal in proposals {
            let sop_class = trim_uid(&proposal.sop_class_uid);
            let is_accepted = contexts
                .iter()
                .any(|ctx| ctx.is_accepted() && ctx.abstract_syntax == sop_class);
            let already_answered = answers.iter().any(|a| a.sop_class_uid == sop_class);
            if !is_accepted || already_answered {
                continue;
            }
            if let Some(information) = (handler.0)(proposal) {
                answers.push(SopClassExtendedNegotiation {
                    sop_class_uid: sop_class.to_owned(),
                    service_class_application_information: information,
                });
            }
        }
        answers
    }

    /// Our answer to a proposed asynchronous operations window (PS3.7 §D.3.3.3). The AC's
    /// Maximum Number Operations Invoked is how many operations the *requestor* may have
    /// outstanding: no more than it proposed, no more than we perform at once. Its Maximum
    /// Number Operations Performed is how many the requestor performs for us: no more than it
    /// proposed, no more than we invoke. Without a window of our own, 1/1.
    fn answer_async_ops_window(&self, proposed: AsyncOpsWindow) -> AsyncOpsWindow {
        match self.async_ops_window {
            None => AsyncOpsWindow {
                max_operations_invoked: 1,
                max_operations_performed: 1,
            },
            Some(ours) => AsyncOpsWindow {
                max_operations_invoked: min_window_value(
                    proposed.max_operations_invoked,
                    ours.max_operations_performed,
                ),
                max_operations_performed: min_window_value(
                    proposed.max_operations_performed,
                    ours.max_operations_invoked,
                ),
            },
        }
    }
}

fn refused(
    proposed: &PresentationContextRq,
    result: PresentationContextResult,
) -> NegotiatedContext {
    NegotiatedContext {
        id: proposed.id,
        abstract_syntax: trim_uid(&proposed.abstract_syntax).to_owned(),
        result,
        transfer_syntax: None,
        scu_role: false,
        scp_role: false,
    }
}

fn accepted(
    proposed: &PresentationContextRq,
    transfer_syntax: &str,
    scu_role: bool,
    scp_role: bool,
) -> NegotiatedContext {
    NegotiatedContext {
        id: proposed.id,
        abstract_syntax: trim_uid(&proposed.abstract_syntax).to_owned(),
        result: PresentationContextResult::Acceptance,
        transfer_syntax: Some(transfer_syntax.to_owned()),
        scu_role,
        scp_role,
    }
}
