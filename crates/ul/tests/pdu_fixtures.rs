//! Byte-exact PDU fixtures: hand-built from the layout tables of PS3.8 §9.3 / PS3.7 D.3.3
//! (`fixtures/spec/*.hex`, both directions) and captured from real peers (pynetdicom's test
//! suite and live DCMTK, `fixtures/*.bin`, decoded and checked field by field).

#[path = "fixtures/support.rs"]
mod support;

use bytes::Bytes;
use dimsum_ul::pdu::{
    Abort, AbortReason, AbortSource, AssociateAc, AssociateRj, AssociateRq, AsyncOpsWindow,
    DecodeError, PData, Pdu, Pdv, PresentationContextAc, PresentationContextResult,
    PresentationContextRq, RejectResult, RejectSource, RoleSelection, ServiceProviderAcseReason,
    ServiceProviderPresentationReason, ServiceUserReason, SopClassCommonExtendedNegotiation,
    SopClassExtendedNegotiation, UnknownSubItem, UserIdentityAc, UserIdentityRq, UserIdentityType,
    UserInformation,
};
use support::{bin_fixture, decode, encode, hex_fixture, try_decode};

const APP_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
const VERIFICATION: &str = "1.2.840.10008.1.1";
const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const DIMSUM_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1394.1";

fn s(text: &str) -> String {
    text.to_owned()
}

/// Asserts both directions: bytes decode to `value`, and `value` encodes to the bytes.
fn assert_exact(fixture: &str, value: Pdu) {
    let bytes = hex_fixture(fixture);
    assert_eq!(decode(&bytes), value, "decoding {fixture}");
    assert_eq!(encode(&value), bytes, "encoding {fixture}");
}

fn rq_contexts() -> Vec<PresentationContextRq> {
    vec![
        PresentationContextRq {
            id: 1,
            abstract_syntax: s(VERIFICATION),
            transfer_syntaxes: vec![s(IMPLICIT_LE)],
        },
        PresentationContextRq {
            id: 3,
            abstract_syntax: s(CT_IMAGE),
            transfer_syntaxes: vec![s(EXPLICIT_LE), s(IMPLICIT_LE)],
        },
    ]
}

#[test]
fn associate_rq_exact() {
    assert_exact(
        "associate_rq",
        Pdu::AssociateRq(AssociateRq {
            protocol_version: 1,
            called_ae_title: s("STORESCP"),
            calling_ae_title: s("DIMSUM"),
            application_context_name: s(APP_CONTEXT),
            presentation_contexts: rq_contexts(),
            user_information: UserInformation {
                max_length: Some(16384),
                implementation_class_uid: Some(s(DIMSUM_CLASS_UID)),
                implementation_version_name: Some(s("DIMSUM_0")),
                ..UserInformation::default()
            },
        }),
    );
}

fn rich_user_information_rq() -> UserInformation {
    UserInformation {
        max_length: Some(0),
        implementation_class_uid: Some(s(DIMSUM_CLASS_UID)),
        async_ops_window: Some(AsyncOpsWindow {
            max_operations_invoked: 3,
            max_operations_performed: 1,
        }),
        role_selections: vec![
            RoleSelection {
                sop_class_uid: s(CT_IMAGE),
                scu_role: true,
                scp_role: false,
            },
            RoleSelection {
                sop_class_uid: s(VERIFICATION),
                scu_role: true,
                scp_role: true,
            },
        ],
        implementation_version_name: Some(s("DIMSUM_0")),
        sop_class_extended: vec![SopClassExtendedNegotiation {
            sop_class_uid: s(CT_IMAGE),
            service_class_application_information: vec![2, 0, 3, 0, 1, 0],
        }],
        sop_class_common_extended: vec![SopClassCommonExtendedNegotiation {
            sop_class_uid: s(MR_IMAGE),
            service_class_uid: s("1.2.840.10008.4.2"),
            related_general_sop_class_uids: vec![
                s("1.2.840.10008.5.1.4.1.1.88.22"),
                s("1.2.840.10008.5.1.4.1.1.88.33"),
            ],
        }],
        user_identity_rq: Some(UserIdentityRq {
            identity_type: UserIdentityType::UsernameAndPasscode,
            positive_response_requested: true,
            primary_field: b"dimsum".to_vec(),
            secondary_field: b"s3cr3t".to_vec(),
        }),
        user_identity_ac: None,
        unknown: vec![UnknownSubItem {
            item_type: 0x5A,
            data: vec![0xAA, 0xBB, 0xCC],
        }],
    }
}

#[test]
fn associate_rq_with_every_sub_item_exact() {
    assert_exact(
        "associate_rq_all_sub_items",
        Pdu::AssociateRq(AssociateRq {
            protocol_version: 1,
            called_ae_title: s("STORESCP"),
            calling_ae_title: s("DIMSUM"),
            application_context_name: s(APP_CONTEXT),
            presentation_contexts: vec![rq_contexts().remove(0)],
            user_information: rich_user_information_rq(),
        }),
    );
}

#[test]
fn associate_ac_exact() {
    assert_exact(
        "associate_ac",
        Pdu::AssociateAc(AssociateAc {
            protocol_version: 1,
            called_ae_title: s("STORESCP"),
            calling_ae_title: s("DIMSUM"),
            application_context_name: s(APP_CONTEXT),
            presentation_contexts: vec![
                PresentationContextAc {
                    id: 1,
                    result: PresentationContextResult::Acceptance,
                    transfer_syntax: s(IMPLICIT_LE),
                },
                PresentationContextAc {
                    id: 3,
                    result: PresentationContextResult::AbstractSyntaxNotSupported,
                    transfer_syntax: String::new(),
                },
                PresentationContextAc {
                    id: 5,
                    result: PresentationContextResult::UserRejection,
                    transfer_syntax: s(EXPLICIT_LE),
                },
            ],
            user_information: UserInformation {
                max_length: Some(32768),
                implementation_class_uid: Some(s(DIMSUM_CLASS_UID)),
                async_ops_window: Some(AsyncOpsWindow {
                    max_operations_invoked: 1,
                    max_operations_performed: 1,
                }),
                role_selections: vec![RoleSelection {
                    sop_class_uid: s(CT_IMAGE),
                    scu_role: false,
                    scp_role: true,
                }],
                implementation_version_name: Some(s("DIMSUM_0")),
                sop_class_extended: vec![SopClassExtendedNegotiation {
                    sop_class_uid: s(CT_IMAGE),
                    service_class_application_information: vec![1],
                }],
                user_identity_ac: Some(UserIdentityAc {
                    server_response: b"Accepted".to_vec(),
                }),
                ..UserInformation::default()
            },
        }),
    );
}

#[test]
fn associate_rj_exact() {
    assert_exact(
        "associate_rj",
        Pdu::AssociateRj(AssociateRj::new(
            RejectResult::Permanent,
            RejectSource::ServiceUser(ServiceUserReason::CalledAeTitleNotRecognized),
        )),
    );
}

#[test]
fn pdata_exact_and_zero_copy() {
    let value = Pdu::PData(PData {
        pdvs: vec![
            Pdv {
                presentation_context_id: 1,
                is_command: true,
                is_last: true,
                data: Bytes::from_static(&[0xDE, 0xAD, 0xBE, 0xEF]),
            },
            Pdv {
                presentation_context_id: 3,
                is_command: false,
                is_last: false,
                data: Bytes::from_static(&[1, 2, 3]),
            },
            Pdv {
                presentation_context_id: 3,
                is_command: false,
                is_last: true,
                data: Bytes::new(),
            },
        ],
    });
    assert_exact("pdata", value);

    // The PDV values point into the receive buffer rather than into copies.
    let bytes = hex_fixture("pdata");
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let Ok(Some(Pdu::PData(pdata))) =
        dimsum_ul::pdu::decode_from(&mut buf, &support::test_limits())
    else {
        panic!("P-DATA-TF did not decode");
    };
    assert_eq!(pdata.pdvs[0].data.as_ptr() as usize, base + 12);
    assert_eq!(pdata.pdvs[1].data.as_ptr() as usize, base + 22);
}

#[test]
fn release_and_abort_exact() {
    assert_exact("release_rq", Pdu::ReleaseRq);
    assert_exact("release_rp", Pdu::ReleaseRp);
    assert_exact(
        "abort_provider",
        Pdu::Abort(Abort::by_service_provider(
            AbortReason::InvalidPduParameterValue,
        )),
    );
    assert_exact("abort_user", Pdu::Abort(Abort::by_service_user()));
}

/// A value with everything the model can hold survives encode then decode.
#[test]
fn rich_values_round_trip() {
    let mut rich_ac_info = rich_user_information_rq();
    rich_ac_info.user_identity_rq = None;
    rich_ac_info.user_identity_ac = Some(UserIdentityAc {
        server_response: vec![0; 300],
    });
    rich_ac_info.unknown.push(UnknownSubItem {
        item_type: 0xFF,
        data: Vec::new(),
    });
    let values = [
        Pdu::AssociateRq(AssociateRq {
            protocol_version: 0xFFFF,
            called_ae_title: s("A B\u{7e}%"),
            calling_ae_title: s("SIXTEEN_CHARS_AE"),
            application_context_name: s(APP_CONTEXT),
            presentation_contexts: (0..128)
                .map(|i| PresentationContextRq {
                    id: 2 * i + 1,
                    abstract_syntax: format!("1.2.3.{i}"),
                    transfer_syntaxes: vec![s(IMPLICIT_LE), s(EXPLICIT_LE), s(EXPLICIT_BE)],
                })
                .collect(),
            user_information: rich_user_information_rq(),
        }),
        Pdu::AssociateAc(AssociateAc {
            protocol_version: 1,
            called_ae_title: s("X"),
            calling_ae_title: s("Y"),
            application_context_name: s(APP_CONTEXT),
            presentation_contexts: vec![PresentationContextAc {
                id: 255,
                result: PresentationContextResult::TransferSyntaxesNotSupported,
                transfer_syntax: String::new(),
            }],
            user_information: rich_ac_info,
        }),
        Pdu::PData(PData {
            pdvs: vec![Pdv {
                presentation_context_id: 7,
                is_command: false,
                is_last: true,
                data: Bytes::from(vec![0x5A; 60_000]),
            }],
        }),
    ];
    for value in values {
        assert_eq!(decode(&encode(&value)), value);
    }
}

#[test]
fn reject_and_abort_codes_round_trip_including_reserved_ones() {
    let sources = [
        RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven),
        RejectSource::ServiceUser(ServiceUserReason::ApplicationContextNameNotSupported),
        RejectSource::ServiceUser(ServiceUserReason::CallingAeTitleNotRecognized),
        RejectSource::ServiceUser(ServiceUserReason::Reserved(5)),
        RejectSource::ServiceProviderAcse(ServiceProviderAcseReason::NoReasonGiven),
        RejectSource::ServiceProviderAcse(ServiceProviderAcseReason::ProtocolVersionNotSupported),
        RejectSource::ServiceProviderAcse(ServiceProviderAcseReason::Reserved(0)),
        RejectSource::ServiceProviderPresentation(
            ServiceProviderPresentationReason::TemporaryCongestion,
        ),
        RejectSource::ServiceProviderPresentation(
            ServiceProviderPresentationReason::LocalLimitExceeded,
        ),
        RejectSource::ServiceProviderPresentation(ServiceProviderPresentationReason::Reserved(7)),
    ];
    for source in sources {
        for result in [RejectResult::Permanent, RejectResult::Transient] {
            let value = Pdu::AssociateRj(AssociateRj::new(result, source));
            let bytes = encode(&value);
            assert_eq!(
                bytes[7..],
                [result.code(), source.code(), source.reason_code()]
            );
            assert_eq!(decode(&bytes), value);
        }
    }
    for code in 0..=255u8 {
        for source in [
            AbortSource::ServiceUser,
            AbortSource::Reserved,
            AbortSource::ServiceProvider,
        ] {
            let value = Pdu::Abort(Abort {
                source,
                reason: AbortReason::from_code(code),
            });
            let bytes = encode(&value);
            assert_eq!(bytes, [7, 0, 0, 0, 0, 4, 0, 0, source.code(), code]);
            assert_eq!(decode(&bytes), value);
        }
    }
}

#[test]
fn reasons_read_like_sentences() {
    let rj = AssociateRj::new(
        RejectResult::Permanent,
        RejectSource::ServiceUser(ServiceUserReason::CalledAeTitleNotRecognized),
    );
    assert_eq!(
        rj.to_string(),
        "rejected-permanent by service-user: called AE title not recognized"
    );
    let rj = AssociateRj::new(
        RejectResult::Transient,
        RejectSource::ServiceProviderPresentation(ServiceProviderPresentationReason::Reserved(5)),
    );
    assert_eq!(
        rj.to_string(),
        "rejected-transient by service-provider (presentation): reserved reason 5"
    );
    assert_eq!(
        Abort::by_service_provider(AbortReason::UnexpectedPdu).to_string(),
        "aborted by service-provider: unexpected PDU"
    );
    assert_eq!(
        Abort::by_service_user().to_string(),
        "aborted by service-user"
    );
}

// ---------------------------------------------------------------------------------------------
// Captured from pynetdicom's test suite (pynetdicom/tests/encoded_pdu_items.py).
// ---------------------------------------------------------------------------------------------

fn rq(pdu: Pdu) -> AssociateRq {
    match pdu {
        Pdu::AssociateRq(rq) => rq,
        other => panic!("expected A-ASSOCIATE-RQ, got {other:?}"),
    }
}

fn ac(pdu: Pdu) -> AssociateAc {
    match pdu {
        Pdu::AssociateAc(ac) => ac,
        other => panic!("expected A-ASSOCIATE-AC, got {other:?}"),
    }
}

const PYNETDICOM_CLASS_UID: &str = "1.2.826.0.1.3680043.9.3811.0.9.0";

#[test]
fn pynetdicom_associate_rq() {
    let rq = rq(decode(&bin_fixture("pynetdicom_a_associate_rq.bin")));
    assert_eq!(rq.protocol_version, 1);
    assert_eq!(rq.called_ae_title, "ANY-SCP");
    assert_eq!(rq.calling_ae_title, "ECHOSCU");
    assert_eq!(rq.application_context_name, APP_CONTEXT);
    assert_eq!(
        rq.presentation_contexts,
        [PresentationContextRq {
            id: 1,
            abstract_syntax: s(VERIFICATION),
            transfer_syntaxes: vec![s(IMPLICIT_LE)]
        }]
    );
    assert_eq!(
        rq.user_information,
        UserInformation {
            max_length: Some(16382),
            implementation_class_uid: Some(s(PYNETDICOM_CLASS_UID)),
            implementation_version_name: Some(s("PYNETDICOM_090")),
            ..UserInformation::default()
        }
    );
}

#[test]
fn pynetdicom_associate_rq_with_user_identity_and_async_window() {
    let info = rq(decode(&bin_fixture(
        "pynetdicom_a_associate_rq_user_async.bin",
    )))
    .user_information;
    assert_eq!(
        info.user_identity_rq,
        Some(UserIdentityRq {
            identity_type: UserIdentityType::Username,
            positive_response_requested: true,
            primary_field: b"pynetdicom".to_vec(),
            secondary_field: Vec::new(),
        })
    );
    assert_eq!(
        info.async_ops_window,
        Some(AsyncOpsWindow {
            max_operations_invoked: 5,
            max_operations_performed: 5
        })
    );

    let rq = rq(decode(&bin_fixture(
        "pynetdicom_a_associate_rq_user_id_user_pass.bin",
    )));
    assert_eq!(rq.calling_ae_title, "STORESCU");
    assert_eq!(
        rq.presentation_contexts[0].transfer_syntaxes,
        [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE]
    );
    assert_eq!(
        rq.user_information.implementation_version_name.as_deref(),
        Some("OFFIS_DCMTK_360")
    );
    assert_eq!(
        rq.user_information.user_identity_rq,
        Some(UserIdentityRq {
            identity_type: UserIdentityType::UsernameAndPasscode,
            positive_response_requested: false,
            primary_field: b"pynetdicom".to_vec(),
            secondary_field: b"p4ssw0rd".to_vec(),
        })
    );
}

#[test]
fn pynetdicom_associate_rq_with_role_selection() {
    let rq = rq(decode(&bin_fixture("pynetdicom_a_associate_rq_role.bin")));
    assert_eq!(rq.calling_ae_title, "GETSCU");
    assert_eq!(rq.presentation_contexts[0].abstract_syntax, CT_IMAGE);
    assert_eq!(
        rq.user_information.role_selections,
        [RoleSelection {
            sop_class_uid: s(CT_IMAGE),
            scu_role: false,
            scp_role: true
        }]
    );
}

#[test]
fn pynetdicom_associate_rq_with_extended_negotiation() {
    let rq = rq(decode(&bin_fixture(
        "pynetdicom_a_associate_rq_user_id_ext_neg.bin",
    )));
    let ids: Vec<u8> = rq.presentation_contexts.iter().map(|pc| pc.id).collect();
    assert_eq!(ids, [1, 3, 5]);
    assert_eq!(rq.presentation_contexts[2].abstract_syntax, MR_IMAGE);
    assert_eq!(
        rq.user_information.sop_class_extended,
        [
            SopClassExtendedNegotiation {
                sop_class_uid: s(CT_IMAGE),
                service_class_application_information: vec![2, 0, 3, 0, 1, 0]
            },
            SopClassExtendedNegotiation {
                sop_class_uid: s(MR_IMAGE),
                service_class_application_information: vec![2, 0, 3, 0, 1, 0]
            },
        ]
    );
    assert!(rq.user_information.user_identity_rq.is_some());
}

#[test]
fn pynetdicom_common_extended_negotiation() {
    // Despite its name this fixture is an A-ASSOCIATE-AC (type 0x02) carrying a 0x57 sub-item.
    let ac = ac(decode(&bin_fixture(
        "pynetdicom_a_associate_rq_com_ext_neg.bin",
    )));
    assert_eq!(ac.presentation_contexts.len(), 3);
    assert_eq!(
        ac.user_information.sop_class_common_extended,
        [SopClassCommonExtendedNegotiation {
            sop_class_uid: s(MR_IMAGE),
            service_class_uid: s("1.2.840.10008.4.2"),
            related_general_sop_class_uids: vec![s("1.2.840.10008.5.1.4.1.1.88.22")],
        }]
    );
}

#[test]
fn pynetdicom_blank_called_ae_title_decodes_as_empty() {
    // 16 spaces: the negotiation, not the codec, rejects it (with called-AE-title-not-recognized).
    let rq = rq(decode(&bin_fixture("pynetdicom_a_associate_rq_called.bin")));
    assert_eq!(rq.called_ae_title, "");
    assert_eq!(rq.calling_ae_title, "ANY-");
}

#[test]
fn pynetdicom_associate_ac() {
    let ac = ac(decode(&bin_fixture("pynetdicom_a_associate_ac.bin")));
    assert_eq!(
        (ac.called_ae_title.as_str(), ac.calling_ae_title.as_str()),
        ("ANY-SCP", "ECHOSCU")
    );
    assert_eq!(
        ac.presentation_contexts,
        [PresentationContextAc {
            id: 1,
            result: PresentationContextResult::Acceptance,
            transfer_syntax: s(IMPLICIT_LE)
        }]
    );
    assert_eq!(ac.user_information.max_length, Some(16384));
    assert_eq!(
        ac.user_information.implementation_class_uid.as_deref(),
        Some("1.2.276.0.7230010.3.0.3.6.0")
    );
}

#[test]
fn pynetdicom_associate_ac_rejected_contexts_without_transfer_syntax() {
    // MergeCOM sends an empty transfer syntax sub-item with a rejection (pynetdicom issue 342).
    let ac1 = ac(decode(&bin_fixture(
        "pynetdicom_a_associate_ac_zero_ts.bin",
    )));
    assert_eq!(
        ac1.presentation_contexts,
        [
            PresentationContextAc {
                id: 1,
                result: PresentationContextResult::Acceptance,
                transfer_syntax: s(EXPLICIT_LE)
            },
            PresentationContextAc {
                id: 3,
                result: PresentationContextResult::AbstractSyntaxNotSupported,
                transfer_syntax: String::new()
            },
        ]
    );
    assert_eq!(
        ac1.user_information.implementation_version_name.as_deref(),
        Some("MergeCOM3_390IB2")
    );
    assert_eq!(ac1.user_information.max_length, Some(28672));
    // Others send no transfer syntax sub-item at all (pynetdicom issue 361).
    let ac2 = ac(decode(&bin_fixture("pynetdicom_a_associate_ac_no_ts.bin")));
    assert_eq!(
        ac2.presentation_contexts,
        [PresentationContextAc {
            id: 1,
            result: PresentationContextResult::AbstractSyntaxNotSupported,
            transfer_syntax: String::new()
        }]
    );
}

#[test]
fn pynetdicom_associate_ac_with_user_identity_has_a_wrong_pdu_length() {
    // The fixture's PDU length (184) is 14 bytes short of its items: our decoder takes the PDU
    // length at its word and finds the user information item overrunning the PDU.
    let mut bytes = bin_fixture("pynetdicom_a_associate_ac_user.bin");
    assert_eq!(bytes.len(), 204);
    assert!(matches!(
        try_decode(&bytes),
        Err(DecodeError::Truncated { .. })
    ));
    // With the length corrected, the user identity answer decodes.
    bytes[2..6].copy_from_slice(&198u32.to_be_bytes());
    let ac = ac(decode(&bytes));
    assert_eq!(
        ac.user_information.user_identity_ac,
        Some(UserIdentityAc {
            server_response: b"Accepted".to_vec()
        })
    );
}

#[test]
fn pynetdicom_reject_release_abort() {
    assert_eq!(
        decode(&bin_fixture("pynetdicom_a_associate_rj.bin")),
        Pdu::AssociateRj(AssociateRj::new(
            RejectResult::Permanent,
            RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven)
        ))
    );
    assert_eq!(
        decode(&bin_fixture("pynetdicom_a_release_rq.bin")),
        Pdu::ReleaseRq
    );
    assert_eq!(
        decode(&bin_fixture("pynetdicom_a_release_rp.bin")),
        Pdu::ReleaseRp
    );
    assert_eq!(
        decode(&bin_fixture("pynetdicom_a_abort.bin")),
        Pdu::Abort(Abort::by_service_user())
    );
    assert_eq!(
        decode(&bin_fixture("pynetdicom_a_p_abort.bin")),
        Pdu::Abort(Abort::by_service_provider(
            AbortReason::UnrecognizedPduParameter
        ))
    );
}

#[test]
fn pynetdicom_pdata() {
    let bytes = bin_fixture("pynetdicom_p_data_tf.bin");
    let Pdu::PData(pdata) = decode(&bytes) else {
        panic!("expected P-DATA-TF")
    };
    assert_eq!(pdata.pdvs.len(), 1);
    let pdv = &pdata.pdvs[0];
    assert_eq!(
        (pdv.presentation_context_id, pdv.is_command, pdv.is_last),
        (1, true, true)
    );
    assert_eq!(pdv.data.len(), 0x50 - 2);
    assert_eq!(pdv.data[..], bytes[12..]);
    // C-ECHO-RSP command set: group length element (0000,0000) = 66.
    assert_eq!(pdv.data[..12], [0, 0, 0, 0, 4, 0, 0, 0, 0x42, 0, 0, 0]);
    // Re-encoding gives the captured bytes back.
    assert_eq!(encode(&Pdu::PData(pdata)), bytes);

    let Pdu::PData(report) = decode(&bin_fixture("pynetdicom_p_data_tf_n_event_report.bin")) else {
        panic!("expected P-DATA-TF")
    };
    assert_eq!(report.pdvs[0].data.len(), 0x72 - 2);
}

/// Captured PDUs whose wire form is canonical re-encode to the same bytes.
#[test]
fn pynetdicom_canonical_pdus_re_encode_identically() {
    for name in [
        "pynetdicom_a_associate_rj.bin",
        "pynetdicom_a_release_rq.bin",
        "pynetdicom_a_abort.bin",
        "pynetdicom_a_p_abort.bin",
    ] {
        let bytes = bin_fixture(name);
        assert_eq!(encode(&decode(&bytes)), bytes, "{name}");
    }
    // This one was captured from DCMTK, reserved 0xFF byte included; we send that byte as 0.
    let mut bytes = bin_fixture("pynetdicom_a_associate_rq_user_id_user_pass.bin");
    assert_eq!(bytes[0x67..0x6B], [0x01, 0x00, 0xFF, 0x00]);
    bytes[0x69] = 0;
    assert_eq!(encode(&decode(&bytes)), bytes);
}

// ---------------------------------------------------------------------------------------------
// Captured live from DCMTK 3.6.7 with fixtures/capture_dcmtk.py.
// ---------------------------------------------------------------------------------------------

const DCMTK_CLASS_UID: &str = "1.2.276.0.7230010.3.0.3.6.7";

#[test]
fn dcmtk_echoscu_associate_rq() {
    let bytes = bin_fixture("dcmtk_echoscu_associate_rq.bin");
    // DCMTK puts 0xFF in the reserved byte after the presentation context ID: not tested.
    assert_eq!(bytes[0x67..0x6B], [0x01, 0x00, 0xFF, 0x00]);
    let rq = rq(decode(&bytes));
    assert_eq!(rq.protocol_version, 1);
    assert_eq!(rq.called_ae_title, "CAPTURE_SCP");
    assert_eq!(rq.calling_ae_title, "CAPTURE_SCU");
    assert_eq!(rq.application_context_name, APP_CONTEXT);
    assert_eq!(
        rq.presentation_contexts,
        [PresentationContextRq {
            id: 1,
            abstract_syntax: s(VERIFICATION),
            transfer_syntaxes: vec![s(IMPLICIT_LE)]
        }]
    );
    assert_eq!(
        rq.user_information,
        UserInformation {
            max_length: Some(16384),
            implementation_class_uid: Some(s(DCMTK_CLASS_UID)),
            implementation_version_name: Some(s("OFFIS_DCMTK_367")),
            ..UserInformation::default()
        }
    );
}

#[test]
fn dcmtk_echoscu_rich_associate_rq() {
    let rq = rq(decode(&bin_fixture("dcmtk_echoscu_rich_associate_rq.bin")));
    assert_eq!(rq.user_information.max_length, Some(32768));
    let expected: Vec<_> = [1, 3]
        .into_iter()
        .map(|id| PresentationContextRq {
            id,
            abstract_syntax: s(VERIFICATION),
            transfer_syntaxes: vec![s(IMPLICIT_LE), s(EXPLICIT_LE), s(EXPLICIT_BE)],
        })
        .collect();
    assert_eq!(rq.presentation_contexts, expected);
}

#[test]
fn dcmtk_storescp_associate_ac_and_release() {
    let ac = ac(decode(&bin_fixture("dcmtk_storescp_associate_ac.bin")));
    assert_eq!(
        (ac.called_ae_title.as_str(), ac.calling_ae_title.as_str()),
        ("CAPTURE_SCP", "CAPTURE_SCU")
    );
    assert_eq!(ac.application_context_name, APP_CONTEXT);
    assert_eq!(
        ac.presentation_contexts,
        [PresentationContextAc {
            id: 1,
            result: PresentationContextResult::Acceptance,
            transfer_syntax: s(IMPLICIT_LE)
        }]
    );
    assert_eq!(ac.user_information.max_length, Some(16384));
    assert_eq!(
        ac.user_information.implementation_class_uid.as_deref(),
        Some(DCMTK_CLASS_UID)
    );
    assert_eq!(
        ac.user_information.implementation_version_name.as_deref(),
        Some("OFFIS_DCMTK_367")
    );
    assert_eq!(
        decode(&bin_fixture("dcmtk_storescp_release_rp.bin")),
        Pdu::ReleaseRp
    );
}

#[test]
fn dcmtk_storescp_rejections() {
    let not_dicom = decode(&bin_fixture("dcmtk_storescp_associate_rj_context.bin"));
    let Pdu::AssociateRj(rj) = not_dicom else {
        panic!("expected A-ASSOCIATE-RJ, got {not_dicom:?}")
    };
    assert_eq!(
        rj,
        AssociateRj::new(
            RejectResult::Permanent,
            RejectSource::ServiceUser(ServiceUserReason::ApplicationContextNameNotSupported)
        )
    );
    assert_eq!(
        rj.to_string(),
        "rejected-permanent by service-user: application context name not supported"
    );
    assert_eq!(
        decode(&bin_fixture("dcmtk_storescp_associate_rj_refuse.bin")),
        Pdu::AssociateRj(AssociateRj::new(
            RejectResult::Permanent,
            RejectSource::ServiceUser(ServiceUserReason::NoReasonGiven)
        ))
    );
}

/// Everything captured from DCMTK is in canonical form and re-encodes to the same bytes.
#[test]
fn dcmtk_pdus_re_encode_identically_except_reserved_bytes() {
    for name in [
        "dcmtk_storescp_associate_ac.bin",
        "dcmtk_storescp_release_rp.bin",
        "dcmtk_storescp_associate_rj_context.bin",
        "dcmtk_storescp_associate_rj_refuse.bin",
    ] {
        let bytes = bin_fixture(name);
        assert_eq!(encode(&decode(&bytes)), bytes, "{name}");
    }
    // The RQ differs only in the reserved 0xFF byte, which we send as 0.
    let mut bytes = bin_fixture("dcmtk_echoscu_associate_rq.bin");
    bytes[0x69] = 0;
    assert_eq!(encode(&decode(&bytes)), bytes);
}
