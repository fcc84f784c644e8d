//! Tests of both sides of association negotiation, and of the two talking to each other.

use super::*;
use crate::pdu::{
    AssociateAc, AssociateRj, AssociateRq, PresentationContextAc, PresentationContextResult as R,
    PresentationContextRq, RejectResult, RejectSource, RoleSelection, ServiceProviderAcseReason,
    ServiceProviderPresentationReason, ServiceUserReason, UserIdentityType,
};
use crate::uids::{
    APPLICATION_CONTEXT_NAME, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

fn request() -> AssociationRequest {
    AssociationRequest::new("SCU", "STORESCP")
}

fn policy() -> AcceptorPolicy {
    AcceptorPolicy::new("STORESCP")
        .support(SupportedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .support(SupportedContext::new(
            CT,
            [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN],
        ))
}

/// A hand-built RQ, for the inputs `AssociationRequest` refuses to produce.
fn raw_rq(contexts: Vec<PresentationContextRq>) -> AssociateRq {
    AssociateRq {
        protocol_version: 1,
        called_ae_title: "STORESCP".into(),
        calling_ae_title: "SCU".into(),
        application_context_name: APPLICATION_CONTEXT_NAME.into(),
        presentation_contexts: contexts,
        user_information: Default::default(),
    }
}

fn raw_context(id: u8, abstract_syntax: &str, ts: &[&str]) -> PresentationContextRq {
    PresentationContextRq {
        id,
        abstract_syntax: abstract_syntax.into(),
        transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
    }
}

fn accept(policy: &AcceptorPolicy, rq: &AssociateRq) -> (AssociateAc, Negotiated) {
    match policy.evaluate(rq) {
        Decision::Accept { ac, negotiated } => (ac, negotiated),
        Decision::Reject(rj) => panic!("rejected: {rj:?}"),
    }
}

fn reject(policy: &AcceptorPolicy, rq: &AssociateRq) -> AssociateRj {
    match policy.evaluate(rq) {
        Decision::Accept { negotiated, .. } => panic!("accepted: {negotiated:?}"),
        Decision::Reject(rj) => rj,
    }
}

/// Both sides, end to end: the requestor's view built from the acceptor's AC.
fn negotiate(request: &AssociationRequest, policy: &AcceptorPolicy) -> (Negotiated, Negotiated) {
    let rq = request.to_pdu().unwrap();
    let (ac, acceptor_view) = accept(policy, &rq);
    let requestor_view = request.interpret_ac(&rq, &ac).unwrap();
    (requestor_view, acceptor_view)
}

fn results(negotiated: &Negotiated) -> Vec<(u8, R, Option<&str>)> {
    negotiated
        .contexts
        .iter()
        .map(|c| (c.id, c.result, c.transfer_syntax.as_deref()))
        .collect()
}

// ---------------------------------------------------------------- requestor: building the RQ

#[test]
fn rq_numbers_contexts_with_odd_ids_and_fills_user_information() {
    let rq = request()
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(CT, [EXPLICIT_VR_LITTLE_ENDIAN]))
        .with_context(ProposedContext::new(MR, [EXPLICIT_VR_LITTLE_ENDIAN]))
        .with_max_pdu_length(32_768)
        .to_pdu()
        .unwrap();
    let ids: Vec<u8> = rq.presentation_contexts.iter().map(|c| c.id).collect();
    assert_eq!(ids, [1, 3, 5]);
    assert_eq!(rq.presentation_contexts[1].abstract_syntax, CT);
    assert_eq!(rq.protocol_version, 1);
    assert_eq!(rq.application_context_name, APPLICATION_CONTEXT_NAME);
    assert_eq!(rq.calling_ae_title, "SCU");
    assert_eq!(rq.called_ae_title, "STORESCP");
    let info = &rq.user_information;
    assert_eq!(info.max_length, Some(32_768));
    assert_eq!(
        info.implementation_class_uid.as_deref(),
        Some(IMPLEMENTATION_CLASS_UID)
    );
    assert_eq!(
        info.implementation_version_name.as_deref(),
        Some(IMPLEMENTATION_VERSION_NAME)
    );
    assert!(info.user_identity_ac.is_none());
}

#[test]
fn rq_accepts_128_contexts_and_refuses_129_or_none() {
    let ctx = ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]);
    let full = request().with_contexts(std::iter::repeat_n(ctx.clone(), 128));
    let rq = full.to_pdu().unwrap();
    assert_eq!(rq.presentation_contexts.last().map(|c| c.id), Some(255));
    assert_eq!(
        full.with_context(ctx).to_pdu(),
        Err(NegotiationError::TooManyPresentationContexts { count: 129 })
    );
    assert_eq!(
        request().to_pdu(),
        Err(NegotiationError::NoPresentationContexts)
    );
}

#[test]
fn rq_refuses_context_without_transfer_syntax() {
    let empty: [&str; 0] = [];
    let err = request()
        .with_context(ProposedContext::new(CT, empty))
        .to_pdu();
    assert_eq!(
        err,
        Err(NegotiationError::NoTransferSyntax {
            abstract_syntax: CT.into()
        })
    );
}

#[test]
fn ae_title_validation() {
    assert_eq!(validate_ae_title("calling", "ANY-SCP"), Ok("ANY-SCP"));
    assert_eq!(validate_ae_title("calling", "  PADDED  "), Ok("PADDED"));
    assert_eq!(
        validate_ae_title("calling", "A234567890123456"),
        Ok("A234567890123456")
    );
    for (title, reason) in [
        ("", "empty or only spaces"),
        ("    ", "empty or only spaces"),
        ("A2345678901234567", "longer than 16 characters"),
        ("BACK\\SLASH", "contains a backslash"),
        ("TAB\tAE", "contains a control character"),
        ("NUL\0", "contains a control character"),
        ("ÉCHO", "contains a character outside ISO 646 (ASCII)"),
    ] {
        assert_eq!(
            validate_ae_title("called", title),
            Err(NegotiationError::InvalidAeTitle {
                which: "called",
                title: title.into(),
                reason
            }),
            "{title:?}"
        );
    }
}

#[test]
fn rq_checks_both_ae_titles() {
    let ctx = ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]);
    let bad_calling =
        AssociationRequest::new("WAY-TOO-LONG-CALLING", "SCP").with_context(ctx.clone());
    assert!(matches!(
        bad_calling.to_pdu(),
        Err(NegotiationError::InvalidAeTitle {
            which: "calling",
            ..
        })
    ));
    let bad_called = AssociationRequest::new("SCU", "").with_context(ctx.clone());
    assert!(matches!(
        bad_called.to_pdu(),
        Err(NegotiationError::InvalidAeTitle {
            which: "called",
            ..
        })
    ));
    let padded = AssociationRequest::new(" SCU ", "SCP  ").with_context(ctx);
    let rq = padded.to_pdu().unwrap();
    assert_eq!(
        (rq.calling_ae_title.as_str(), rq.called_ae_title.as_str()),
        ("SCU", "SCP")
    );
}

#[test]
fn uid_validation() {
    for valid in [
        "1.2.840.10008.1.1",
        "0",
        "1.0.3",
        "2.25.329800735698586629295641978511506172918",
    ] {
        assert!(is_valid_uid(valid), "{valid}");
    }
    let too_long = format!("1.{}", "2".repeat(63));
    for invalid in [
        "",
        "1..2",
        "1.2.",
        ".1",
        "1.02",
        "1.2a",
        "1.2 ",
        too_long.as_str(),
    ] {
        assert!(!is_valid_uid(invalid), "{invalid:?}");
    }
}

#[test]
fn rq_checks_every_uid() {
    let ok = || request().with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]));
    let field_of = |r: AssociationRequest| match r.to_pdu() {
        Err(NegotiationError::InvalidUid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field_of(
            request().with_context(ProposedContext::new("1.2.x", [IMPLICIT_VR_LITTLE_ENDIAN]))
        ),
        "abstract syntax"
    );
    assert_eq!(
        field_of(request().with_context(ProposedContext::new(CT, ["1..2"]))),
        "transfer syntax"
    );
    assert_eq!(
        field_of(ok().with_implementation("1.02", None)),
        "implementation class"
    );
    assert_eq!(
        field_of(ok().with_role("bad", true, true)),
        "role selection SOP class"
    );
    assert_eq!(
        field_of(
            ok().with_sop_class_common_extended(SopClassCommonExtendedNegotiation {
                sop_class_uid: CT.into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_class_uids: vec!["".into()],
            })
        ),
        "related general SOP class"
    );
}

#[test]
fn rq_checks_implementation_version_name() {
    let ctx = ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]);
    let long = request()
        .with_context(ctx.clone())
        .with_implementation(IMPLEMENTATION_CLASS_UID, Some("SEVENTEEN_CHARS_X".into()));
    assert!(matches!(
        long.to_pdu(),
        Err(NegotiationError::InvalidImplementationVersionName { .. })
    ));
    let none = request()
        .with_context(ctx)
        .with_implementation(IMPLEMENTATION_CLASS_UID, None);
    assert_eq!(
        none.to_pdu()
            .unwrap()
            .user_information
            .implementation_version_name,
        None
    );
}

#[test]
fn rq_refuses_two_role_selections_for_one_sop_class() {
    let r = request()
        .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_role(CT, true, false)
        .with_role(CT, false, true);
    assert_eq!(
        r.to_pdu(),
        Err(NegotiationError::DuplicateRoleSelection {
            sop_class_uid: CT.into()
        })
    );
}

#[test]
fn rq_checks_user_identity_fields() {
    let with = |identity_type, primary: &[u8], secondary: &[u8]| {
        request()
            .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
            .with_user_identity(UserIdentityRq {
                identity_type,
                positive_response_requested: false,
                primary_field: primary.to_vec(),
                secondary_field: secondary.to_vec(),
            })
            .to_pdu()
    };
    assert!(with(UserIdentityType::UsernameAndPasscode, b"alice", b"secret").is_ok());
    assert!(matches!(
        with(UserIdentityType::Username, b"", b""),
        Err(NegotiationError::InvalidUserIdentity(_))
    ));
    assert!(matches!(
        with(UserIdentityType::Jwt, b"token", b"secret"),
        Err(NegotiationError::InvalidUserIdentity(_))
    ));
    assert!(matches!(
        with(UserIdentityType::Saml, &vec![b'x'; 65_530], b""),
        Err(NegotiationError::InvalidUserIdentity(_))
    ));
}

// ---------------------------------------------------------------- acceptor: association-level

#[test]
fn acceptor_rejects_protocol_version_without_bit_0() {
    let mut rq = raw_rq(vec![raw_context(1, CT, &[IMPLICIT_VR_LITTLE_ENDIAN])]);
    rq.protocol_version = 2;
    assert_eq!(
        reject(&policy(), &rq),
        AssociateRj {
            result: RejectResult::Permanent,
            source: RejectSource::ServiceProviderAcse(
                ServiceProviderAcseReason::ProtocolVersionNotSupported
            ),
        }
    );
    // Only bit 0 is tested: other bits set alongside it are fine.
    rq.protocol_version = 0x8003;
    accept(&policy(), &rq);
}

#[test]
fn acceptor_rejects_unknown_application_context() {
    let mut rq = raw_rq(vec![raw_context(1, CT, &[IMPLICIT_VR_LITTLE_ENDIAN])]);
    rq.application_context_name = "1.2.3.4".into();
    assert_eq!(
        reject(&policy(), &rq),
        AssociateRj {
            result: RejectResult::Permanent,
            source: RejectSource::ServiceUser(
                ServiceUserReason::ApplicationContextNameNotSupported
            ),
        }
    );
}

#[test]
fn acceptor_checks_called_ae_title_only_when_required() {
    let mut rq = raw_rq(vec![raw_context(1, CT, &[IMPLICIT_VR_LITTLE_ENDIAN])]);
    rq.called_ae_title = "OTHER".into();
    accept(&policy(), &rq);
    let strict = policy().require_called_ae_title(true);
    assert_eq!(
        reject(&strict, &rq),
        AssociateRj {
            result: RejectResult::Permanent,
            source: RejectSource::ServiceUser(ServiceUserReason::CalledAeTitleNotRecognized),
        }
    );
    rq.called_ae_title = " STORESCP  ".into();
    accept(&strict, &rq);
}

#[test]
fn acceptor_checks_calling_ae_title_against_the_allowed_list() {
    let restricted = policy().allow_calling_ae_titles(["MODALITY1 ", "SCU"]);
    let mut rq = raw_rq(vec![raw_context(1, CT, &[IMPLICIT_VR_LITTLE_ENDIAN])]);
    accept(&restricted, &rq);
    rq.calling_ae_title = "MODALITY1".into();
    accept(&restricted, &rq);
    rq.calling_ae_title = "INTRUDER".into();
    assert_eq!(
        reject(&restricted, &rq),
        AssociateRj {
            result: RejectResult::Permanent,
            source: RejectSource::ServiceUser(ServiceUserReason::CallingAeTitleNotRecognized),
        }
    );
    // An empty list allows nobody.
    let nobody = policy().allow_calling_ae_titles(Vec::<String>::new());
    rq.calling_ae_title = "SCU".into();
    assert!(matches!(nobody.evaluate(&rq), Decision::Reject(_)));
}

#[test]
fn local_limit_and_congestion_rejections() {
    assert_eq!(
        reject_local_limit_exceeded(),
        AssociateRj {
            result: RejectResult::Transient,
            source: RejectSource::ServiceProviderPresentation(
                ServiceProviderPresentationReason::LocalLimitExceeded
            ),
        }
    );
    assert_eq!(
        reject_temporary_congestion().source,
        RejectSource::ServiceProviderPresentation(
            ServiceProviderPresentationReason::TemporaryCongestion
        )
    );
}

#[test]
fn ac_echoes_ae_titles_and_announces_our_parameters() {
    let rq = request()
        .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_max_pdu_length(0)
        .to_pdu()
        .unwrap();
    let (ac, negotiated) = accept(&policy().with_max_pdu_length(65_536), &rq);
    assert_eq!(ac.calling_ae_title, rq.calling_ae_title);
    assert_eq!(ac.called_ae_title, rq.called_ae_title);
    assert_eq!(ac.application_context_name, APPLICATION_CONTEXT_NAME);
    assert_eq!(ac.protocol_version, 1);
    assert_eq!(ac.user_information.max_length, Some(65_536));
    assert_eq!(
        ac.user_information.implementation_class_uid.as_deref(),
        Some(IMPLEMENTATION_CLASS_UID)
    );
    assert_eq!(negotiated.peer_max_pdu_length, 0);
    assert_eq!(negotiated.local_max_pdu_length, 65_536);
    assert_eq!(
        negotiated.peer_implementation_class_uid.as_deref(),
        Some(IMPLEMENTATION_CLASS_UID)
    );
    assert_eq!(
        (
            negotiated.calling_ae_title.as_str(),
            negotiated.called_ae_title.as_str()
        ),
        ("SCU", "STORESCP")
    );
}

// ---------------------------------------------------------------- acceptor: contexts

#[test]
fn every_context_result_in_the_order_proposed() {
    let rq = raw_rq(vec![
        raw_context(1, CT, &[JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(3, MR, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(5, CT, &[JPEG_BASELINE]),
        raw_context(7, VERIFICATION_SOP_CLASS, &[IMPLICIT_VR_LITTLE_ENDIAN]),
    ]);
    let (ac, negotiated) = accept(&policy(), &rq);
    assert_eq!(
        results(&negotiated),
        [
            (1, R::Acceptance, Some(EXPLICIT_VR_LITTLE_ENDIAN)),
            (3, R::AbstractSyntaxNotSupported, None),
            (5, R::TransferSyntaxesNotSupported, None),
            (7, R::Acceptance, Some(IMPLICIT_VR_LITTLE_ENDIAN)),
        ]
    );
    // The AC answers every context in order; refused ones carry the first proposed syntax.
    assert_eq!(
        ac.presentation_contexts,
        [
            PresentationContextAc {
                id: 1,
                result: R::Acceptance,
                transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN.into()
            },
            PresentationContextAc {
                id: 3,
                result: R::AbstractSyntaxNotSupported,
                transfer_syntax: IMPLICIT_VR_LITTLE_ENDIAN.into()
            },
            PresentationContextAc {
                id: 5,
                result: R::TransferSyntaxesNotSupported,
                transfer_syntax: JPEG_BASELINE.into()
            },
            PresentationContextAc {
                id: 7,
                result: R::Acceptance,
                transfer_syntax: IMPLICIT_VR_LITTLE_ENDIAN.into()
            },
        ]
    );
    assert_eq!(
        negotiated.accepted().map(|c| c.id).collect::<Vec<_>>(),
        [1, 7]
    );
}

#[test]
fn transfer_syntax_follows_our_preference_not_theirs() {
    // They prefer implicit, we prefer explicit: explicit wins.
    let rq = raw_rq(vec![raw_context(
        1,
        CT,
        &[IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN],
    )]);
    let (_, negotiated) = accept(&policy(), &rq);
    assert_eq!(
        negotiated.contexts[0].transfer_syntax.as_deref(),
        Some(EXPLICIT_VR_LITTLE_ENDIAN)
    );
    // Reverse our preference: implicit wins.
    let reversed = AcceptorPolicy::new("STORESCP").support(SupportedContext::new(
        CT,
        [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN],
    ));
    let rq = raw_rq(vec![raw_context(
        1,
        CT,
        &[EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN],
    )]);
    let (_, negotiated) = accept(&reversed, &rq);
    assert_eq!(
        negotiated.contexts[0].transfer_syntax.as_deref(),
        Some(IMPLICIT_VR_LITTLE_ENDIAN)
    );
}

#[test]
fn uids_with_wire_padding_still_match() {
    let rq = raw_rq(vec![raw_context(
        1,
        "1.2.840.10008.1.1\0",
        &["1.2.840.10008.1.2\0"],
    )]);
    let (ac, negotiated) = accept(&policy(), &rq);
    assert_eq!(
        ac.presentation_contexts[0].transfer_syntax,
        IMPLICIT_VR_LITTLE_ENDIAN
    );
    assert_eq!(
        negotiated.contexts[0].abstract_syntax,
        VERIFICATION_SOP_CLASS
    );
}

#[test]
fn even_and_duplicate_context_ids_are_provider_rejected() {
    let rq = raw_rq(vec![
        raw_context(2, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(3, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(5, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(3, VERIFICATION_SOP_CLASS, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(0, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
    ]);
    let (ac, negotiated) = accept(&policy(), &rq);
    assert_eq!(
        results(&negotiated),
        [
            (2, R::ProviderRejection, None),
            (3, R::ProviderRejection, None),
            (5, R::Acceptance, Some(IMPLICIT_VR_LITTLE_ENDIAN)),
            (3, R::ProviderRejection, None),
            (0, R::ProviderRejection, None),
        ]
    );
    assert_eq!(ac.presentation_contexts.len(), 5);
}

#[test]
fn contexts_beyond_the_local_limit_are_provider_rejected() {
    let rq = raw_rq(vec![
        raw_context(1, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(3, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(5, CT, &[IMPLICIT_VR_LITTLE_ENDIAN]),
    ]);
    let (_, negotiated) = accept(&policy().with_max_contexts(2), &rq);
    assert_eq!(
        negotiated
            .contexts
            .iter()
            .map(|c| c.result)
            .collect::<Vec<_>>(),
        [R::Acceptance, R::Acceptance, R::ProviderRejection]
    );
}

#[test]
fn no_accepted_context_is_still_an_ac() {
    let rq = raw_rq(vec![raw_context(1, MR, &[IMPLICIT_VR_LITTLE_ENDIAN])]);
    let (ac, negotiated) = accept(&policy(), &rq);
    assert_eq!(
        ac.presentation_contexts[0].result,
        R::AbstractSyntaxNotSupported
    );
    assert_eq!(negotiated.accepted().count(), 0);
}

#[test]
fn promiscuous_mode_accepts_unknown_abstract_syntaxes() {
    let rq = raw_rq(vec![
        raw_context(1, MR, &[JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(3, "1.2.3.4.5.6", &[JPEG_BASELINE]),
        raw_context(5, "not a uid", &[IMPLICIT_VR_LITTLE_ENDIAN]),
        raw_context(7, CT, &[JPEG_BASELINE]),
    ]);
    let ours = policy()
        .with_promiscuous_transfer_syntaxes([EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]);
    let (_, negotiated) = accept(&ours, &rq);
    assert_eq!(
        results(&negotiated),
        [
            (1, R::Acceptance, Some(EXPLICIT_VR_LITTLE_ENDIAN)),
            (3, R::TransferSyntaxesNotSupported, None),
            (5, R::AbstractSyntaxNotSupported, None),
            // An explicitly supported SOP class keeps its own transfer syntax list.
            (7, R::TransferSyntaxesNotSupported, None),
        ]
    );
    assert!(negotiated.contexts[0].scu_role && !negotiated.contexts[0].scp_role);

    // An empty list takes the requestor's first choice.
    let any =
        AcceptorPolicy::new("STORESCP").with_promiscuous_transfer_syntaxes(Vec::<String>::new());
    let (_, negotiated) = accept(&any, &rq);
    assert_eq!(
        negotiated.contexts[0].transfer_syntax.as_deref(),
        Some(JPEG_BASELINE)
    );
    assert_eq!(
        negotiated.contexts[1].transfer_syntax.as_deref(),
        Some(JPEG_BASELINE)
    );
    assert_eq!(negotiated.contexts[2].result, R::AbstractSyntaxNotSupported);
}

// ---------------------------------------------------------------- role selection

/// The requestor's (SCU, SCP) roles and the role item in the AC, for a proposal and a policy.
fn role_outcome(
    proposal: Option<(bool, bool)>,
    granted: (bool, bool),
) -> (R, (bool, bool), Option<(bool, bool)>) {
    let mut request = request().with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]));
    if let Some((scu, scp)) = proposal {
        request = request.with_role(CT, scu, scp);
    }
    let policy = AcceptorPolicy::new("SCP").support(
        SupportedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]).with_roles(granted.0, granted.1),
    );
    let rq = request.to_pdu().unwrap();
    let (ac, acceptor_view) = accept(&policy, &rq);
    let requestor_view = request.interpret_ac(&rq, &ac).unwrap();
    // Both sides must agree.
    assert_eq!(requestor_view, acceptor_view);
    let ctx = &acceptor_view.contexts[0];
    let role_item = ac
        .user_information
        .role_selections
        .iter()
        .map(|r| {
            assert_eq!(r.sop_class_uid, CT);
            (r.scu_role, r.scp_role)
        })
        .next();
    assert!(ac.user_information.role_selections.len() <= 1);
    (ctx.result, (ctx.scu_role, ctx.scp_role), role_item)
}

#[test]
fn role_selection_matrix() {
    use R::{Acceptance as A, UserRejection as U};
    let t = true;
    let f = false;
    #[rustfmt::skip]
    let cases = [
        // proposal (scu, scp), granted by policy -> result, requestor roles, AC item
        (None,          (t, t), A, (t, f), None),
        (None,          (f, t), A, (t, f), None),
        (None,          (f, f), A, (t, f), None),
        (Some((t, t)),  (t, t), A, (t, t), Some((t, t))),
        (Some((t, t)),  (t, f), A, (t, f), Some((t, f))),
        (Some((t, t)),  (f, t), A, (f, t), Some((f, t))),
        (Some((t, t)),  (f, f), U, (f, f), None),
        (Some((t, f)),  (t, t), A, (t, f), Some((t, f))),
        (Some((t, f)),  (f, t), U, (f, f), None),
        (Some((f, t)),  (t, t), A, (f, t), Some((f, t))),
        (Some((f, t)),  (t, f), U, (f, f), None),
        (Some((f, t)),  (f, t), A, (f, t), Some((f, t))),
        (Some((f, f)),  (t, t), U, (f, f), None),
    ];
    for (proposal, granted, result, roles, item) in cases {
        assert_eq!(
            role_outcome(proposal, granted),
            (result, roles, item),
            "proposal {proposal:?}, granted {granted:?}"
        );
    }
}

#[test]
fn acceptor_view_roles_are_the_inverse() {
    let (requestor_view, _) = negotiate(
        &request()
            .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
            .with_role(CT, false, true),
        &AcceptorPolicy::new("SCP").support(
            SupportedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]).with_roles(false, true),
        ),
    );
    let ctx = &requestor_view.contexts[0];
    assert!(ctx.acceptor_scu_role() && !ctx.acceptor_scp_role());
}

#[test]
fn role_items_only_for_accepted_sop_classes_and_once_per_class() {
    // C-GET: the requestor proposes SCP for CT (two contexts) and MR (not supported).
    let request = request()
        .with_context(ProposedContext::new(
            STUDY_ROOT_GET,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_context(ProposedContext::new(CT, [EXPLICIT_VR_LITTLE_ENDIAN]))
        .with_context(ProposedContext::new(MR, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_role(CT, false, true)
        .with_role(MR, false, true);
    let policy = AcceptorPolicy::new("QRSCP")
        .support(SupportedContext::new(
            STUDY_ROOT_GET,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .support(
            SupportedContext::new(CT, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])
                .with_roles(false, true),
        );
    let rq = request.to_pdu().unwrap();
    let (ac, negotiated) = accept(&policy, &rq);
    assert_eq!(
        ac.user_information.role_selections,
        [RoleSelection {
            sop_class_uid: CT.into(),
            scu_role: false,
            scp_role: true
        }]
    );
    let roles: Vec<_> = negotiated
        .contexts
        .iter()
        .map(|c| (c.id, c.result, c.scu_role, c.scp_role))
        .collect();
    assert_eq!(
        roles,
        [
            (1, R::Acceptance, true, false),
            (3, R::Acceptance, false, true),
            (5, R::Acceptance, false, true),
            (7, R::AbstractSyntaxNotSupported, false, false),
        ]
    );
    assert_eq!(request.interpret_ac(&rq, &ac).unwrap(), negotiated);
}

// ---------------------------------------------------------------- user identity

fn identity(identity_type: UserIdentityType, positive: bool) -> UserIdentityRq {
    UserIdentityRq {
        identity_type,
        positive_response_requested: positive,
        primary_field: b"alice".to_vec(),
        secondary_field: if identity_type == UserIdentityType::UsernameAndPasscode {
            b"secret".to_vec()
        } else {
            Vec::new()
        },
    }
}

fn rq_with_identity(id: UserIdentityRq) -> AssociateRq {
    request()
        .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_user_identity(id)
        .to_pdu()
        .unwrap()
}

fn password_checker() -> AcceptorPolicy {
    policy().with_user_identity_handler(|id, rq| {
        assert_eq!(rq.calling_ae_title, "SCU");
        match (id.primary_field.as_slice(), id.secondary_field.as_slice()) {
            (b"alice", b"secret") => IdentityOutcome::Accept(None),
            (b"alice", b"") => IdentityOutcome::Accept(Some(b"server-ticket".to_vec())),
            _ => IdentityOutcome::Reject,
        }
    })
}

#[test]
fn user_identity_is_ignored_without_a_handler() {
    let rq = rq_with_identity(identity(UserIdentityType::UsernameAndPasscode, true));
    let (ac, negotiated) = accept(&policy(), &rq);
    assert_eq!(ac.user_information.user_identity_ac, None);
    assert_eq!(
        negotiated.user_identity,
        rq.user_information.user_identity_rq
    );
}

#[test]
fn user_identity_rejected_by_the_handler() {
    let mut id = identity(UserIdentityType::UsernameAndPasscode, false);
    id.secondary_field = b"wrong".to_vec();
    assert_eq!(
        reject(&password_checker(), &rq_with_identity(id)),
        AssociateRj {
            result: RejectResult::Permanent,
            source: RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven),
        }
    );
}

#[test]
fn user_identity_accepted_without_positive_response_sends_no_item() {
    let rq = rq_with_identity(identity(UserIdentityType::UsernameAndPasscode, false));
    let (ac, negotiated) = accept(&password_checker(), &rq);
    assert_eq!(ac.user_information.user_identity_ac, None);
    assert_eq!(negotiated.user_identity_response, None);
}

#[test]
fn user_identity_positive_response() {
    // Username types answer with an empty server response.
    let rq = rq_with_identity(identity(UserIdentityType::UsernameAndPasscode, true));
    let (ac, _) = accept(&password_checker(), &rq);
    assert_eq!(
        ac.user_information.user_identity_ac,
        Some(UserIdentityAc {
            server_response: Vec::new()
        })
    );
    let rq = rq_with_identity(identity(UserIdentityType::Username, true));
    let (ac, _) = accept(&password_checker(), &rq);
    assert_eq!(
        ac.user_information.user_identity_ac,
        Some(UserIdentityAc {
            server_response: Vec::new()
        })
    );
    // Kerberos/SAML/JWT carry the handler's response, and the requestor sees it.
    let request = request()
        .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_user_identity(identity(UserIdentityType::Kerberos, true));
    let (requestor_view, acceptor_view) = negotiate(&request, &password_checker());
    let expected = Some(UserIdentityAc {
        server_response: b"server-ticket".to_vec(),
    });
    assert_eq!(requestor_view.user_identity_response, expected);
    assert_eq!(acceptor_view.user_identity_response, expected);
}

// ---------------------------------------------------------------- other user information

#[test]
fn async_ops_window_answer() {
    let window = |invoked, performed| AsyncOpsWindow {
        max_operations_invoked: invoked,
        max_operations_performed: performed,
    };
    let answer = |proposed: Option<AsyncOpsWindow>, ours: Option<AsyncOpsWindow>| {
        let mut request =
            request().with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]));
        if let Some(w) = proposed {
            request = request.with_async_ops_window(w);
        }
        let mut policy = policy();
        policy.async_ops_window = ours;
        let (requestor_view, acceptor_view) = negotiate(&request, &policy);
        assert_eq!(
            requestor_view.async_ops_window,
            acceptor_view.async_ops_window
        );
        requestor_view
    };
    // Not proposed: not answered, synchronous.
    let negotiated = answer(None, Some(window(5, 5)));
    assert_eq!(negotiated.async_ops_window, None);
    assert_eq!(negotiated.async_window(), window(1, 1));
    // Proposed, no window of ours: 1/1.
    assert_eq!(
        answer(Some(window(10, 3)), None).async_ops_window,
        Some(window(1, 1))
    );
    // PS3.7 §D.3.3.3: the AC's "invoked" is what the requestor may invoke (at most what it
    // proposed and what we perform); its "performed" what the requestor performs for us (at
    // most what it proposed and what we invoke); 0 is unlimited.
    assert_eq!(
        answer(Some(window(10, 3)), Some(window(8, 4))).async_ops_window,
        Some(window(4, 3))
    );
    assert_eq!(
        answer(Some(window(0, 0)), Some(window(8, 4))).async_ops_window,
        Some(window(4, 8))
    );
    assert_eq!(
        answer(Some(window(2, 7)), Some(window(0, 0))).async_ops_window,
        Some(window(2, 7))
    );
}

#[test]
fn sop_class_extended_negotiation_answers_accepted_classes_only() {
    let find = "1.2.840.10008.5.1.4.1.2.2.1";
    let request = request()
        .with_context(ProposedContext::new(find, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_sop_class_extended(SopClassExtendedNegotiation {
            sop_class_uid: find.into(),
            service_class_application_information: vec![1, 1, 1],
        })
        .with_sop_class_extended(SopClassExtendedNegotiation {
            sop_class_uid: MR.into(),
            service_class_application_information: vec![1],
        })
        .with_sop_class_common_extended(SopClassCommonExtendedNegotiation {
            sop_class_uid: find.into(),
            service_class_uid: "1.2.840.10008.4.2".into(),
            related_general_sop_class_uids: Vec::new(),
        });
    let supports_find =
        AcceptorPolicy::new("QR").support(SupportedContext::new(find, [IMPLICIT_VR_LITTLE_ENDIAN]));

    // No handler: nothing answered.
    let (requestor_view, acceptor_view) = negotiate(&request, &supports_find);
    assert!(requestor_view.sop_class_extended.is_empty());
    assert_eq!(
        acceptor_view.sop_class_common_extended,
        request.sop_class_common_extended
    );

    // Relational queries supported, the rest not (the handler sees only accepted SOP classes).
    let with_handler = supports_find.with_sop_class_extended_handler(|item| {
        assert_eq!(item.sop_class_uid, "1.2.840.10008.5.1.4.1.2.2.1");
        Some(vec![1, 0, 0])
    });
    let (requestor_view, acceptor_view) = negotiate(&request, &with_handler);
    let expected = [SopClassExtendedNegotiation {
        sop_class_uid: find.into(),
        service_class_application_information: vec![1, 0, 0],
    }];
    assert_eq!(requestor_view.sop_class_extended, expected);
    assert_eq!(acceptor_view.sop_class_extended, expected);
}

// ---------------------------------------------------------------- requestor: reading the AC

fn ac_for(rq: &AssociateRq, contexts: Vec<PresentationContextAc>) -> AssociateAc {
    AssociateAc {
        protocol_version: 1,
        called_ae_title: rq.called_ae_title.clone(),
        calling_ae_title: rq.calling_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT_NAME.into(),
        presentation_contexts: contexts,
        user_information: crate::pdu::UserInformation {
            max_length: Some(28_672),
            implementation_class_uid: Some("1.2.276.0.7230010.3.0.3.6.8".into()),
            implementation_version_name: Some("OFFIS_DCMTK_368".into()),
            ..Default::default()
        },
    }
}

fn ac_item(id: u8, result: R, ts: &str) -> PresentationContextAc {
    PresentationContextAc {
        id,
        result,
        transfer_syntax: ts.into(),
    }
}

fn two_context_request() -> AssociationRequest {
    request()
        .with_context(ProposedContext::new(
            CT,
            [JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(MR, [IMPLICIT_VR_LITTLE_ENDIAN]))
}

#[test]
fn interpret_ac_reads_contexts_max_pdu_and_implementation() {
    let request = two_context_request();
    let rq = request.to_pdu().unwrap();
    let ac = ac_for(
        &rq,
        vec![
            ac_item(1, R::Acceptance, EXPLICIT_VR_LITTLE_ENDIAN),
            ac_item(3, R::AbstractSyntaxNotSupported, ""),
        ],
    );
    let negotiated = request.interpret_ac(&rq, &ac).unwrap();
    assert_eq!(
        results(&negotiated),
        [
            (1, R::Acceptance, Some(EXPLICIT_VR_LITTLE_ENDIAN)),
            (3, R::AbstractSyntaxNotSupported, None),
        ]
    );
    let ct = negotiated.find_accepted(CT).unwrap();
    assert_eq!((ct.id, ct.scu_role, ct.scp_role), (1, true, false));
    assert!(negotiated.find_accepted(MR).is_none());
    assert_eq!(
        negotiated.context(3).map(|c| c.abstract_syntax.as_str()),
        Some(MR)
    );
    assert!(negotiated.context(5).is_none());
    assert_eq!(negotiated.peer_max_pdu_length, 28_672);
    assert_eq!(negotiated.local_max_pdu_length, DEFAULT_MAX_PDU_LENGTH);
    assert_eq!(
        negotiated.peer_implementation_version_name.as_deref(),
        Some("OFFIS_DCMTK_368")
    );
    assert_eq!(
        negotiated.peer_implementation_class_uid.as_deref(),
        Some("1.2.276.0.7230010.3.0.3.6.8")
    );
}

#[test]
fn interpret_ac_without_max_length_means_unlimited() {
    let request = two_context_request();
    let rq = request.to_pdu().unwrap();
    let mut ac = ac_for(&rq, vec![ac_item(1, R::Acceptance, JPEG_BASELINE)]);
    ac.user_information.max_length = None;
    assert_eq!(
        request.interpret_ac(&rq, &ac).unwrap().peer_max_pdu_length,
        0
    );
}

#[test]
fn interpret_ac_missing_context_is_provider_rejected() {
    let request = two_context_request();
    let rq = request.to_pdu().unwrap();
    let ac = ac_for(
        &rq,
        vec![ac_item(3, R::Acceptance, IMPLICIT_VR_LITTLE_ENDIAN)],
    );
    let negotiated = request.interpret_ac(&rq, &ac).unwrap();
    assert_eq!(
        results(&negotiated),
        [
            (1, R::ProviderRejection, None),
            (3, R::Acceptance, Some(IMPLICIT_VR_LITTLE_ENDIAN)),
        ]
    );
}

#[test]
fn interpret_ac_errors() {
    let request = two_context_request();
    let rq = request.to_pdu().unwrap();
    let unknown = ac_for(
        &rq,
        vec![
            ac_item(1, R::Acceptance, JPEG_BASELINE),
            ac_item(9, R::Acceptance, JPEG_BASELINE),
        ],
    );
    assert_eq!(
        request.interpret_ac(&rq, &unknown),
        Err(NegotiationError::UnknownContextId { id: 9 })
    );
    let twice = ac_for(
        &rq,
        vec![
            ac_item(3, R::UserRejection, ""),
            ac_item(3, R::Acceptance, IMPLICIT_VR_LITTLE_ENDIAN),
        ],
    );
    assert_eq!(
        request.interpret_ac(&rq, &twice),
        Err(NegotiationError::DuplicateContextResult { id: 3 })
    );
    let foreign_ts = ac_for(&rq, vec![ac_item(3, R::Acceptance, EXPLICIT_VR_BIG_ENDIAN)]);
    assert_eq!(
        request.interpret_ac(&rq, &foreign_ts),
        Err(NegotiationError::TransferSyntaxNotProposed {
            id: 3,
            transfer_syntax: EXPLICIT_VR_BIG_ENDIAN.into()
        })
    );
    // The transfer syntax of a refused context is not tested.
    let refused = ac_for(
        &rq,
        vec![ac_item(
            3,
            R::TransferSyntaxesNotSupported,
            EXPLICIT_VR_BIG_ENDIAN,
        )],
    );
    assert!(request.interpret_ac(&rq, &refused).is_ok());
}

#[test]
fn interpret_ac_roles() {
    let request = two_context_request().with_role(CT, true, true);
    let rq = request.to_pdu().unwrap();
    let accepted_both = vec![
        ac_item(1, R::Acceptance, JPEG_BASELINE),
        ac_item(3, R::Acceptance, IMPLICIT_VR_LITTLE_ENDIAN),
    ];
    let roles_of = |role_items: Vec<RoleSelection>| {
        let mut ac = ac_for(&rq, accepted_both.clone());
        ac.user_information.role_selections = role_items;
        let n = request.interpret_ac(&rq, &ac).unwrap();
        n.contexts
            .iter()
            .map(|c| (c.scu_role, c.scp_role))
            .collect::<Vec<_>>()
    };
    let item = |uid: &str, scu, scp| RoleSelection {
        sop_class_uid: uid.into(),
        scu_role: scu,
        scp_role: scp,
    };
    // No answer: defaults.
    assert_eq!(roles_of(vec![]), [(true, false), (true, false)]);
    // Granted SCP only.
    assert_eq!(
        roles_of(vec![item(CT, false, true)]),
        [(false, true), (true, false)]
    );
    // A grant for a SOP class we made no proposal for is ignored.
    assert_eq!(
        roles_of(vec![item(MR, true, true)]),
        [(true, false), (true, false)]
    );
    // Proposed (1, 0) but granted (1, 1): the SCP grant is ignored.
    let request = two_context_request().with_role(CT, true, false);
    let rq = request.to_pdu().unwrap();
    let mut ac = ac_for(&rq, accepted_both.clone());
    ac.user_information.role_selections = vec![item(CT, true, true)];
    let ct = request.interpret_ac(&rq, &ac).unwrap().contexts[0].clone();
    assert_eq!((ct.scu_role, ct.scp_role), (true, false));
}

#[test]
fn find_accepted_preferring_a_transfer_syntax() {
    let request = request()
        .with_context(ProposedContext::new(CT, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_context(ProposedContext::new(CT, [JPEG_BASELINE]))
        .with_context(ProposedContext::new(CT, [EXPLICIT_VR_LITTLE_ENDIAN]));
    let policy = AcceptorPolicy::new("SCP").support(SupportedContext::new(
        CT,
        [JPEG_BASELINE, IMPLICIT_VR_LITTLE_ENDIAN],
    ));
    let (negotiated, _) = negotiate(&request, &policy);
    assert_eq!(negotiated.find_accepted(CT).map(|c| c.id), Some(1));
    assert_eq!(
        negotiated
            .find_accepted_preferring(CT, &[EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE])
            .map(|c| c.id),
        Some(3)
    );
    assert_eq!(
        negotiated
            .find_accepted_preferring(CT, &[EXPLICIT_VR_BIG_ENDIAN])
            .map(|c| c.id),
        Some(1)
    );
    assert!(
        negotiated
            .find_accepted_preferring(MR, &[JPEG_BASELINE])
            .is_none()
    );
}

#[test]
fn both_sides_agree_end_to_end() {
    let request = request()
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(
            CT,
            [
                JPEG_BASELINE,
                IMPLICIT_VR_LITTLE_ENDIAN,
                EXPLICIT_VR_LITTLE_ENDIAN,
            ],
        ))
        .with_context(ProposedContext::new(MR, [IMPLICIT_VR_LITTLE_ENDIAN]))
        .with_user_identity(identity(UserIdentityType::Username, false));
    let (requestor_view, acceptor_view) = negotiate(&request, &policy().with_max_pdu_length(0));
    assert_eq!(requestor_view.contexts, acceptor_view.contexts);
    assert_eq!(requestor_view.user_identity, acceptor_view.user_identity);
    // Each side's peer maximum is the other side's local one.
    assert_eq!(
        requestor_view.peer_max_pdu_length,
        acceptor_view.local_max_pdu_length
    );
    assert_eq!(
        requestor_view.local_max_pdu_length,
        acceptor_view.peer_max_pdu_length
    );
    assert_eq!(requestor_view.peer_max_pdu_length, 0);
    assert_eq!(acceptor_view.peer_max_pdu_length, DEFAULT_MAX_PDU_LENGTH);
}
