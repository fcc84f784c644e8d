//! The association requestor: building the A-ASSOCIATE-RQ and reading the answer (PS3.8 §9.3.2,
//! §9.3.3; PS3.7 Annex D.3.3).

use std::collections::HashMap;

use super::{
    MAX_PRESENTATION_CONTEXTS, Negotiated, NegotiatedContext, NegotiationError, find_role,
    requestor_roles, trim_ae_title, trim_uid, validate_ae_title,
    validate_implementation_version_name, validate_uid,
};
use crate::pdu::{
    AssociateAc, AssociateRq, AsyncOpsWindow, PresentationContextAc, PresentationContextResult,
    PresentationContextRq, RoleSelection, SopClassCommonExtendedNegotiation,
    SopClassExtendedNegotiation, UserIdentityRq, UserIdentityType, UserInformation,
};
use crate::uids;

/// A presentation context the requestor proposes (PS3.8 §9.3.2.2): an abstract syntax and the
/// transfer syntaxes it can use for it, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedContext {
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

impl ProposedContext {
    pub fn new(
        abstract_syntax: impl Into<String>,
        transfer_syntaxes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            abstract_syntax: abstract_syntax.into(),
            transfer_syntaxes: transfer_syntaxes.into_iter().map(Into::into).collect(),
        }
    }
}

/// Everything an association requestor asks for (the A-ASSOCIATE request primitive of PS3.8
/// §7.1.1 as carried by the A-ASSOCIATE-RQ PDU of §9.3.2, with the user information sub-items of
/// PS3.7 Annex D.3.3).
#[derive(Debug, Clone)]
pub struct AssociationRequest {
    pub calling_ae_title: String,
    pub called_ae_title: String,
    /// Proposed in this order with ids 1, 3, 5, …
    pub contexts: Vec<ProposedContext>,
    /// The longest P-DATA-TF we accept (the maximum length sub-item); 0 means no limit.
    pub max_pdu_length: u32,
    /// SCP/SCU role selection proposals, at most one per SOP class.
    pub role_selections: Vec<RoleSelection>,
    pub async_ops_window: Option<AsyncOpsWindow>,
    pub sop_class_extended: Vec<SopClassExtendedNegotiation>,
    pub sop_class_common_extended: Vec<SopClassCommonExtendedNegotiation>,
    pub user_identity: Option<UserIdentityRq>,
    pub implementation_class_uid: String,
    pub implementation_version_name: Option<String>,
}

impl AssociationRequest {
    /// A request from `calling` to `called` with no context yet, the default maximum length and
    /// dimsum's implementation class UID and version name.
    pub fn new(calling: impl Into<String>, called: impl Into<String>) -> Self {
        Self {
            calling_ae_title: calling.into(),
            called_ae_title: called.into(),
            contexts: Vec::new(),
            max_pdu_length: super::DEFAULT_MAX_PDU_LENGTH,
            role_selections: Vec::new(),
            async_ops_window: None,
            sop_class_extended: Vec::new(),
            sop_class_common_extended: Vec::new(),
            user_identity: None,
            implementation_class_uid: uids::IMPLEMENTATION_CLASS_UID.to_owned(),
            implementation_version_name: Some(uids::IMPLEMENTATION_VERSION_NAME.to_owned()),
        }
    }

    pub fn with_context(mut self, ctx: ProposedContext) -> Self {
        self.contexts.push(ctx);
        self
    }

    pub fn with_contexts(mut self, contexts: impl IntoIterator<Item = ProposedContext>) -> Self {
        self.contexts.extend(contexts);
        self
    }

    pub fn with_max_pdu_length(mut self, max_pdu_length: u32) -> Self {
        self.max_pdu_length = max_pdu_length;
        self
    }

    /// Proposes the roles the requestor wants for a SOP class (PS3.7 §D.3.3.4), e.g. SCP for the
    /// storage SOP classes of a C-GET.
    pub fn with_role(
        mut self,
        sop_class_uid: impl Into<String>,
        scu_role: bool,
        scp_role: bool,
    ) -> Self {
        self.role_selections.push(RoleSelection {
            sop_class_uid: sop_class_uid.into(),
            scu_role,
            scp_role,
        });
        self
    }

    pub fn with_async_ops_window(mut self, window: AsyncOpsWindow) -> Self {
        self.async_ops_window = Some(window);
        self
    }

    pub fn with_sop_class_extended(mut self, item: SopClassExtendedNegotiation) -> Self {
        self.sop_class_extended.push(item);
        self
    }

    pub fn with_sop_class_common_extended(
        mut self,
        item: SopClassCommonExtendedNegotiation,
    ) -> Self {
        self.sop_class_common_extended.push(item);
        self
    }

    pub fn with_user_identity(mut self, identity: UserIdentityRq) -> Self {
        self.user_identity = Some(identity);
        self
    }

    pub fn with_implementation(
        mut self,
        class_uid: impl Into<String>,
        version_name: Option<String>,
    ) -> Self {
        self.implementation_class_uid = class_uid.into();
        self.implementation_version_name = version_name;
        self
    }

    /// Validates the request and builds the A-ASSOCIATE-RQ, giving the contexts the ids 1, 3,
    /// 5, … in the order they were added.
    ///
    /// Checks: AE titles (PS3.5 §6.2), every UID (PS3.5 §9.1), 1–128 contexts each with at
    /// least one transfer syntax, one role selection per SOP class, the implementation version
    /// name and the user identity fields (PS3.7 §D.3.3.7).
    pub fn to_pdu(&self) -> Result<AssociateRq, NegotiationError> {
        let calling = validate_ae_title("calling", &self.calling_ae_title)?;
        let called = validate_ae_title("called", &self.called_ae_title)?;
        self.validate_contexts()?;
        self.validate_user_information()?;

        let presentation_contexts = self
            .contexts
            .iter()
            .zip((1u8..=u8::MAX).step_by(2))
            .map(|(ctx, id)| PresentationContextRq {
                id,
                abstract_syntax: ctx.abstract_syntax.clone(),
                transfer_syntaxes: ctx.transfer_syntaxes.clone(),
            })
            .collect();

        Ok(AssociateRq {
            protocol_version: 1,
            called_ae_title: called.to_owned(),
            calling_ae_title: calling.to_owned(),
            application_context_name: uids::APPLICATION_CONTEXT_NAME.to_owned(),
            presentation_contexts,
            user_information: UserInformation {
                max_length: Some(self.max_pdu_length),
                implementation_class_uid: Some(self.implementation_class_uid.clone()),
                async_ops_window: self.async_ops_window,
                role_selections: self.role_selections.clone(),
                implementation_version_name: self.implementation_version_name.clone(),
                sop_class_extended: self.sop_class_extended.clone(),
                sop_class_common_extended: self.sop_class_common_extended.clone(),
                user_identity_rq: self.user_identity.clone(),
                user_identity_ac: None,
                unknown: Vec::new(),
            },
        })
    }

    fn validate_contexts(&self) -> Result<(), NegotiationError> {
        if self.contexts.is_empty() {
            return Err(NegotiationError::NoPresentationContexts);
        }
        if self.contexts.len() > MAX_PRESENTATION_CONTEXTS {
            return Err(NegotiationError::TooManyPresentationContexts {
                count: self.contexts.len(),
            });
        }
        for ctx in &self.contexts {
            validate_uid("abstract syntax", &ctx.abstract_syntax)?;
            if ctx.transfer_syntaxes.is_empty() {
                return Err(NegotiationError::NoTransferSyntax {
                    abstract_syntax: ctx.abstract_syntax.clone(),
                });
            }
            for ts in &ctx.transfer_syntaxes {
                validate_uid("transfer syntax", ts)?;
            }
        }
        Ok(())
    }

    fn validate_user_information(&self) -> Result<(), NegotiationError> {
        validate_uid("implementation class", &self.implementation_class_uid)?;
        if let Some(name) = &self.implementation_version_name {
            validate_implementation_version_name(name)?;
        }
        for (index, role) in self.role_selections.iter().enumerate() {
            validate_uid("role selection SOP class", &role.sop_class_uid)?;
            if find_role(&self.role_selections[..index], &role.sop_class_uid).is_some() {
                return Err(NegotiationError::DuplicateRoleSelection {
                    sop_class_uid: role.sop_class_uid.clone(),
                });
            }
        }
        for item in &self.sop_class_extended {
            validate_uid("extended negotiation SOP class", &item.sop_class_uid)?;
        }
        for item in &self.sop_class_common_extended {
            validate_uid("common extended negotiation SOP class", &item.sop_class_uid)?;
            validate_uid(
                "common extended negotiation service class",
                &item.service_class_uid,
            )?;
            for related in &item.related_general_sop_class_uids {
                validate_uid("related general SOP class", related)?;
            }
        }
        if let Some(identity) = &self.user_identity {
            validate_user_identity(identity)?;
        }
        Ok(())
    }

    /// Interprets the acceptor's A-ASSOCIATE-AC against the A-ASSOCIATE-RQ we sent (`rq`, as
    /// returned by [`AssociationRequest::to_pdu`]).
    ///
    /// Every proposed context appears in the result, in the order proposed; one the AC does not
    /// mention counts as provider-rejected. An AC that accepts nothing is returned as is, and so
    /// is an accepted context whose role answer leaves us neither SCU nor SCP (both roles
    /// false): the caller cannot use it.
    pub fn interpret_ac(
        &self,
        rq: &AssociateRq,
        ac: &AssociateAc,
    ) -> Result<Negotiated, NegotiationError> {
        let answers = index_answers(rq, ac)?;
        let rq_info = &rq.user_information;
        let ac_info = &ac.user_information;

        let mut contexts = Vec::with_capacity(rq.presentation_contexts.len());
        for proposed in &rq.presentation_contexts {
            let answer = answers.get(&proposed.id);
            let result = answer.map_or(PresentationContextResult::ProviderRejection, |a| a.result);
            let context = match answer {
                Some(answer) if result == PresentationContextResult::Acceptance => {
                    let accepted = trim_uid(&answer.transfer_syntax);
                    if !proposed
                        .transfer_syntaxes
                        .iter()
                        .any(|ts| trim_uid(ts) == accepted)
                    {
                        return Err(NegotiationError::TransferSyntaxNotProposed {
                            id: proposed.id,
                            transfer_syntax: answer.transfer_syntax.clone(),
                        });
                    }
                    let (scu_role, scp_role) = requestor_roles(
                        find_role(&rq_info.role_selections, &proposed.abstract_syntax),
                        find_role(&ac_info.role_selections, &proposed.abstract_syntax),
                    );
                    NegotiatedContext {
                        id: proposed.id,
                        abstract_syntax: trim_uid(&proposed.abstract_syntax).to_owned(),
                        result,
                        transfer_syntax: Some(accepted.to_owned()),
                        scu_role,
                        scp_role,
                    }
                }
                _ => NegotiatedContext {
                    id: proposed.id,
                    abstract_syntax: trim_uid(&proposed.abstract_syntax).to_owned(),
                    result,
                    transfer_syntax: None,
                    scu_role: false,
                    scp_role: false,
                },
            };
            contexts.push(context);
        }

        Ok(Negotiated {
            calling_ae_title: trim_ae_title(&rq.calling_ae_title).to_owned(),
            called_ae_title: trim_ae_title(&rq.called_ae_title).to_owned(),
            contexts,
            peer_max_pdu_length: ac_info.max_length.unwrap_or(0),
            local_max_pdu_length: rq_info.max_length.unwrap_or(0),
            peer_implementation_class_uid: ac_info.implementation_class_uid.clone(),
            peer_implementation_version_name: ac_info.implementation_version_name.clone(),
            async_ops_window: ac_info.async_ops_window,
            user_identity_response: ac_info.user_identity_ac.clone(),
            user_identity: rq_info.user_identity_rq.clone(),
            sop_class_extended: ac_info.sop_class_extended.clone(),
            sop_class_common_extended: rq_info.sop_class_common_extended.clone(),
        })
    }
}

/// The AC's result items by context id, checking that each answers a proposed context once.
fn index_answers<'a>(
    rq: &AssociateRq,
    ac: &'a AssociateAc,
) -> Result<HashMap<u8, &'a PresentationContextAc>, NegotiationError> {
    let mut answers = HashMap::with_capacity(ac.presentation_contexts.len());
    for answer in &ac.presentation_contexts {
        if !rq.presentation_contexts.iter().any(|p| p.id == answer.id) {
            return Err(NegotiationError::UnknownContextId { id: answer.id });
        }
        if answers.insert(answer.id, answer).is_some() {
            return Err(NegotiationError::DuplicateContextResult { id: answer.id });
        }
    }
    Ok(answers)
}

/// Checks a user identity sub-item (PS3.7 §D.3.3.7.1): a non-empty primary field, a secondary
/// field only for username-and-passcode, both short enough for the sub-item's 2-byte length.
fn validate_user_identity(identity: &UserIdentityRq) -> Result<(), NegotiationError> {
    if identity.primary_field.is_empty() {
        return Err(NegotiationError::InvalidUserIdentity(
            "the primary field is empty",
        ));
    }
    // Item length: type (1), positive-response (1), two 2-byte field lengths and the fields.
    let item_length = 6 + identity.primary_field.len() + identity.secondary_field.len();
    if item_length > usize::from(u16::MAX) {
        return Err(NegotiationError::InvalidUserIdentity(
            "the fields do not fit in a sub-item (65535 bytes)",
        ));
    }
    if identity.identity_type != UserIdentityType::UsernameAndPasscode
        && !identity.secondary_field.is_empty()
    {
        return Err(NegotiationError::InvalidUserIdentity(
            "only username-and-passcode has a secondary field",
        ));
    }
    Ok(())
}
