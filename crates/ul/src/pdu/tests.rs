//! Item- and sub-item-level tests: each item of PS3.8 §9.3 and sub-item of PS3.7 Annex D.3.3,
//! written by hand from its layout table, encoded and decoded on its own; plus the decoder's
//! rules for each item and the encoder's refusals.

use bytes::BytesMut;

use super::codec::{DecodeError, EncodeError};
use super::decode::{
    Reader, decode_presentation_context_ac, decode_presentation_context_rq, decode_user_information,
};
use super::encode::{
    encode_presentation_context_ac, encode_presentation_context_rq, encode_user_information,
};
use super::*;

/// Splits a whole item into its type and body, checking its length field.
fn split_item(bytes: &[u8]) -> (u8, &[u8]) {
    let mut reader = Reader::new(bytes, "test item");
    let item = reader.next_item().unwrap().unwrap();
    assert!(
        reader.next_item().unwrap().is_none(),
        "bytes after the item"
    );
    item
}

fn encoded(write: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>) -> Vec<u8> {
    let mut out = BytesMut::new();
    write(&mut out).unwrap();
    out.to_vec()
}

/// A user information item (type 0x50) around `sub_items`.
fn user_information_item(sub_items: &[u8]) -> Vec<u8> {
    let mut item = vec![0x50, 0x00];
    item.extend_from_slice(&u16::try_from(sub_items.len()).unwrap().to_be_bytes());
    item.extend_from_slice(sub_items);
    item
}

/// Asserts both directions for a user information item holding `sub_item`.
fn assert_sub_item(sub_item: &[u8], value: &UserInformation) {
    let item = user_information_item(sub_item);
    let (item_type, body) = split_item(&item);
    assert_eq!(item_type, 0x50);
    assert_eq!(
        &decode_user_information(body).unwrap(),
        value,
        "decoding {sub_item:02x?}"
    );
    assert_eq!(
        encoded(|out| encode_user_information(out, value)),
        item,
        "encoding {value:?}"
    );
}

fn decode_sub_item(sub_item: &[u8]) -> Result<UserInformation, DecodeError> {
    decode_user_information(sub_item)
}

#[test]
fn presentation_context_rq_item() {
    // PS3.8 Table 9-13 with sub-items of Tables 9-14 and 9-15.
    let bytes = b"\x20\x00\x00\x2e\x01\x00\x00\x00\
                  \x30\x00\x00\x111.2.840.10008.1.1\
                  \x40\x00\x00\x111.2.840.10008.1.2";
    let value = PresentationContextRq {
        id: 1,
        abstract_syntax: "1.2.840.10008.1.1".into(),
        transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
    };
    assert_eq!(
        decode_presentation_context_rq(split_item(bytes).1).unwrap(),
        value
    );
    assert_eq!(
        encoded(|out| encode_presentation_context_rq(out, &value)),
        bytes
    );
}

#[test]
fn presentation_context_rq_rules() {
    // Reserved bytes are not tested, padding is stripped from UIDs, unknown sub-items skipped.
    let body = b"\x07\xAA\xBB\xCC\x30\x00\x00\x041.2\0\x77\x00\x00\x01\x00\x40\x00\x00\x051.2 \0";
    let value = decode_presentation_context_rq(body).unwrap();
    assert_eq!((value.id, value.abstract_syntax.as_str()), (7, "1.2"));
    assert_eq!(value.transfer_syntaxes, ["1.2"]);
    // No abstract syntax.
    let no_abstract = decode_presentation_context_rq(b"\x01\x00\x00\x00\x40\x00\x00\x011");
    assert!(matches!(no_abstract, Err(DecodeError::InvalidParameter(_))));
    // Two abstract syntaxes.
    let two = decode_presentation_context_rq(b"\x01\x00\x00\x00\x30\x00\x00\x011\x30\x00\x00\x012");
    assert!(matches!(two, Err(DecodeError::UnexpectedParameter(_))));
    // Shorter than its fixed fields.
    assert!(matches!(
        decode_presentation_context_rq(b"\x01\x00"),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn presentation_context_ac_item() {
    // PS3.8 Table 9-18.
    let bytes = b"\x21\x00\x00\x19\x01\x00\x00\x00\x40\x00\x00\x111.2.840.10008.1.2";
    let value = PresentationContextAc {
        id: 1,
        result: PresentationContextResult::Acceptance,
        transfer_syntax: "1.2.840.10008.1.2".into(),
    };
    assert_eq!(
        decode_presentation_context_ac(split_item(bytes).1).unwrap(),
        value
    );
    assert_eq!(
        encoded(|out| encode_presentation_context_ac(out, &value)),
        bytes
    );

    // Rejected without a transfer syntax: an empty sub-item is sent.
    let bytes = b"\x21\x00\x00\x08\x03\x00\x04\x00\x40\x00\x00\x00";
    let value = PresentationContextAc {
        id: 3,
        result: PresentationContextResult::TransferSyntaxesNotSupported,
        transfer_syntax: String::new(),
    };
    assert_eq!(
        decode_presentation_context_ac(split_item(bytes).1).unwrap(),
        value
    );
    assert_eq!(
        encoded(|out| encode_presentation_context_ac(out, &value)),
        bytes
    );
}

#[test]
fn presentation_context_ac_rules() {
    for code in 0..=4 {
        let body = [1, 0, code, 0];
        let result = decode_presentation_context_ac(&body).unwrap().result;
        assert_eq!(result.code(), code);
    }
    for code in [5, 0x80, 0xFF] {
        assert!(matches!(
            decode_presentation_context_ac(&[1, 0, code, 0]),
            Err(DecodeError::InvalidParameter(_))
        ));
    }
    let two = decode_presentation_context_ac(b"\x01\x00\x00\x00\x40\x00\x00\x011\x40\x00\x00\x012");
    assert!(matches!(two, Err(DecodeError::UnexpectedParameter(_))));
    // An accepted context must name its transfer syntax.
    let accepted_empty = PresentationContextAc {
        id: 1,
        result: PresentationContextResult::Acceptance,
        transfer_syntax: String::new(),
    };
    let err = encode_presentation_context_ac(&mut BytesMut::new(), &accepted_empty).unwrap_err();
    assert_eq!(
        err,
        EncodeError::InvalidValue {
            field: "transfer syntax",
            reason: "empty".into()
        }
    );
}

#[test]
fn maximum_length_sub_item() {
    // PS3.8 Table D.1-1.
    let info = UserInformation {
        max_length: Some(0x0001_0000),
        ..Default::default()
    };
    assert_sub_item(b"\x51\x00\x00\x04\x00\x01\x00\x00", &info);
    for wrong in [
        &b"\x51\x00\x00\x03\x00\x01\x00"[..],
        b"\x51\x00\x00\x05\x00\x01\x00\x00\x00",
    ] {
        assert!(decode_sub_item(wrong).is_err(), "{wrong:02x?}");
    }
}

#[test]
fn implementation_class_uid_and_version_name_sub_items() {
    // PS3.7 Tables D.3-1 and D.3-3.
    let info = UserInformation {
        implementation_class_uid: Some("1.2.3.4".into()),
        implementation_version_name: Some("VERSION_16_CHARS".into()),
        ..Default::default()
    };
    assert_sub_item(
        b"\x52\x00\x00\x071.2.3.4\x55\x00\x00\x10VERSION_16_CHARS",
        &info,
    );
    // Trailing NUL and space padding from some peers is removed.
    let padded = decode_sub_item(b"\x52\x00\x00\x081.2.3.4\0\x55\x00\x00\x04ABC ").unwrap();
    assert_eq!(padded.implementation_class_uid.as_deref(), Some("1.2.3.4"));
    assert_eq!(padded.implementation_version_name.as_deref(), Some("ABC"));
    // 17 characters is too long to send.
    let long = UserInformation {
        implementation_version_name: Some("X".repeat(17)),
        ..Default::default()
    };
    assert!(matches!(
        encode_user_information(&mut BytesMut::new(), &long),
        Err(EncodeError::FieldTooLong { max: 16, .. })
    ));
}

#[test]
fn async_ops_window_sub_item() {
    // PS3.7 Table D.3-7.
    let info = UserInformation {
        async_ops_window: Some(AsyncOpsWindow {
            max_operations_invoked: 0x0102,
            max_operations_performed: 0,
        }),
        ..Default::default()
    };
    assert_sub_item(b"\x53\x00\x00\x04\x01\x02\x00\x00", &info);
    assert!(decode_sub_item(b"\x53\x00\x00\x02\x01\x02").is_err());
    assert!(decode_sub_item(b"\x53\x00\x00\x06\x01\x02\x00\x00\x00\x00").is_err());
}

#[test]
fn role_selection_sub_item() {
    // PS3.7 Table D.3-9.
    let info = UserInformation {
        role_selections: vec![
            RoleSelection {
                sop_class_uid: "1.2.3".into(),
                scu_role: false,
                scp_role: true,
            },
            RoleSelection {
                sop_class_uid: "1.2.4".into(),
                scu_role: true,
                scp_role: false,
            },
        ],
        ..Default::default()
    };
    assert_sub_item(
        b"\x54\x00\x00\x09\x00\x051.2.3\x00\x01\x54\x00\x00\x09\x00\x051.2.4\x01\x00",
        &info,
    );
    for bad in [
        &b"\x54\x00\x00\x09\x00\x051.2.3\x02\x00"[..],
        b"\x54\x00\x00\x09\x00\x051.2.3\x00\xFF",
    ] {
        assert!(
            matches!(decode_sub_item(bad), Err(DecodeError::InvalidParameter(_))),
            "{bad:02x?}"
        );
    }
    // Missing role bytes, and extra bytes after them.
    assert!(decode_sub_item(b"\x54\x00\x00\x08\x00\x051.2.3\x00").is_err());
    assert!(decode_sub_item(b"\x54\x00\x00\x0a\x00\x051.2.3\x00\x01\x00").is_err());
}

#[test]
fn sop_class_extended_negotiation_sub_item() {
    // PS3.7 Table D.3-11: the application information is whatever follows the UID.
    let info = UserInformation {
        sop_class_extended: vec![
            SopClassExtendedNegotiation {
                sop_class_uid: "1.2".into(),
                service_class_application_information: vec![1, 0, 1],
            },
            SopClassExtendedNegotiation {
                sop_class_uid: "1.3".into(),
                service_class_application_information: vec![],
            },
        ],
        ..Default::default()
    };
    assert_sub_item(
        b"\x56\x00\x00\x08\x00\x031.2\x01\x00\x01\x56\x00\x00\x05\x00\x031.3",
        &info,
    );
}

#[test]
fn sop_class_common_extended_negotiation_sub_item() {
    // PS3.7 Table D.3-12.
    let info = UserInformation {
        sop_class_common_extended: vec![SopClassCommonExtendedNegotiation {
            sop_class_uid: "1.2".into(),
            service_class_uid: "1.3".into(),
            related_general_sop_class_uids: vec!["1.4".into(), "1.5.6".into()],
        }],
        ..Default::default()
    };
    assert_sub_item(
        b"\x57\x00\x00\x18\x00\x031.2\x00\x031.3\x00\x0c\x00\x031.4\x00\x051.5.6",
        &info,
    );
    // With no related SOP classes the identification field is present and empty.
    let none = UserInformation {
        sop_class_common_extended: vec![SopClassCommonExtendedNegotiation {
            sop_class_uid: "1.2".into(),
            service_class_uid: "1.3".into(),
            related_general_sop_class_uids: vec![],
        }],
        ..Default::default()
    };
    assert_sub_item(b"\x57\x00\x00\x0c\x00\x031.2\x00\x031.3\x00\x00", &none);
    // Bytes after the identification field.
    assert!(decode_sub_item(b"\x57\x00\x00\x0d\x00\x031.2\x00\x031.3\x00\x00\x00").is_err());
}

#[test]
fn user_identity_rq_sub_item() {
    // PS3.7 Table D.3-14, each identity type.
    for (code, identity_type) in [
        (1, UserIdentityType::Username),
        (2, UserIdentityType::UsernameAndPasscode),
        (3, UserIdentityType::Kerberos),
        (4, UserIdentityType::Saml),
        (5, UserIdentityType::Jwt),
    ] {
        let info = UserInformation {
            user_identity_rq: Some(UserIdentityRq {
                identity_type,
                positive_response_requested: code % 2 == 0,
                primary_field: b"ab".to_vec(),
                secondary_field: if code == 2 { b"pw".to_vec() } else { vec![] },
            }),
            ..Default::default()
        };
        let secondary: &[u8] = if code == 2 {
            b"\x00\x02pw"
        } else {
            b"\x00\x00"
        };
        let mut sub_item = vec![
            0x58,
            0x00,
            0x00,
            8 + if code == 2 { 2 } else { 0 },
            code,
            u8::from(code % 2 == 0),
        ];
        sub_item.extend_from_slice(b"\x00\x02ab");
        sub_item.extend_from_slice(secondary);
        assert_sub_item(&sub_item, &info);
    }
    for bad_type in [0u8, 6, 0xFF] {
        let sub_item = [0x58, 0, 0, 6, bad_type, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode_sub_item(&sub_item),
            Err(DecodeError::InvalidParameter(_))
        ));
    }
    // Missing secondary length field.
    assert!(decode_sub_item(b"\x58\x00\x00\x04\x01\x00\x00\x00").is_err());
}

#[test]
fn user_identity_ac_sub_item() {
    // PS3.7 Table D.3-15.
    let info = UserInformation {
        user_identity_ac: Some(UserIdentityAc {
            server_response: b"ticket".to_vec(),
        }),
        ..Default::default()
    };
    assert_sub_item(b"\x59\x00\x00\x08\x00\x06ticket", &info);
    let empty = UserInformation {
        user_identity_ac: Some(UserIdentityAc {
            server_response: vec![],
        }),
        ..Default::default()
    };
    assert_sub_item(b"\x59\x00\x00\x02\x00\x00", &empty);
    assert!(decode_sub_item(b"\x59\x00\x00\x03\x00\x00\x00").is_err());
}

#[test]
fn unknown_sub_items_are_kept() {
    let info = UserInformation {
        unknown: vec![
            UnknownSubItem {
                item_type: 0x5A,
                data: vec![1, 2],
            },
            UnknownSubItem {
                item_type: 0x00,
                data: vec![],
            },
        ],
        ..Default::default()
    };
    assert_sub_item(b"\x5a\x00\x00\x02\x01\x02\x00\x00\x00\x00", &info);
    // An "unknown" sub-item of a known type cannot be sent: it would be read back as known.
    let misfiled = UserInformation {
        unknown: vec![UnknownSubItem {
            item_type: 0x51,
            data: vec![0; 4],
        }],
        ..Default::default()
    };
    assert!(matches!(
        encode_user_information(&mut BytesMut::new(), &misfiled),
        Err(EncodeError::InvalidValue {
            field: "unknown user information sub-item",
            ..
        })
    ));
}

#[test]
fn empty_user_information_item() {
    assert_sub_item(b"", &UserInformation::default());
}

fn rq_with(called: &str, calling: &str, context: &str) -> Pdu {
    Pdu::AssociateRq(AssociateRq {
        protocol_version: 1,
        called_ae_title: called.into(),
        calling_ae_title: calling.into(),
        application_context_name: context.into(),
        presentation_contexts: vec![],
        user_information: UserInformation::default(),
    })
}

#[test]
fn encoder_refuses_bad_ae_titles_and_uids_and_appends_nothing() {
    let cases = [
        (
            rq_with("A".repeat(17).as_str(), "B", "1.2"),
            "called AE title",
        ),
        (rq_with("A", "", "1.2"), "calling AE title"),
        (rq_with("    ", "B", "1.2"), "called AE title"),
        (rq_with("A\\B", "B", "1.2"), "called AE title"),
        (rq_with("A", "B\n", "1.2"), "calling AE title"),
        (rq_with("A", "É", "1.2"), "calling AE title"),
        (rq_with("A", "B", ""), "application context name"),
        (
            rq_with("A", "B", &"1".repeat(65)),
            "application context name",
        ),
    ];
    for (pdu, expected_field) in cases {
        let mut out = BytesMut::from(&b"earlier"[..]);
        let error = pdu.encode(&mut out).unwrap_err();
        let field = match error {
            EncodeError::FieldTooLong { field, .. } | EncodeError::InvalidValue { field, .. } => {
                field
            }
        };
        assert_eq!(field, expected_field, "{pdu:?}");
        assert_eq!(&out[..], b"earlier", "bytes appended by a failed encode");
    }
    // 16 characters and 64-byte UIDs are fine, and written without padding.
    let mut out = BytesMut::new();
    rq_with("SIXTEEN_CHARS_AE", "B", &"1".repeat(64))
        .encode(&mut out)
        .unwrap();
    assert_eq!(&out[10..26], b"SIXTEEN_CHARS_AE");
    assert_eq!(&out[26..42], b"B               ");
    assert_eq!(&out[74..78], b"\x10\x00\x00\x40");
}

#[test]
fn encoder_checks_every_length_field() {
    let huge = UserInformation {
        user_identity_rq: Some(UserIdentityRq {
            identity_type: UserIdentityType::Saml,
            positive_response_requested: false,
            primary_field: vec![0; 70_000],
            secondary_field: vec![],
        }),
        ..Default::default()
    };
    assert_eq!(
        encode_user_information(&mut BytesMut::new(), &huge),
        Err(EncodeError::FieldTooLong {
            field: "user identity primary field",
            len: 70_000,
            max: 65_535
        })
    );
    // Each field fits but the sub-item does not.
    let crowded = UserInformation {
        sop_class_extended: vec![SopClassExtendedNegotiation {
            sop_class_uid: "1.2".into(),
            service_class_application_information: vec![0; 65_531],
        }],
        ..Default::default()
    };
    assert!(matches!(
        encode_user_information(&mut BytesMut::new(), &crowded),
        Err(EncodeError::FieldTooLong {
            field: "SOP class extended negotiation sub-item",
            len: 65_536,
            ..
        })
    ));
    // 65,535 bytes exactly is the largest sub-item.
    let fits = UserInformation {
        sop_class_extended: vec![SopClassExtendedNegotiation {
            sop_class_uid: "1.2".into(),
            service_class_application_information: vec![0; 65_530],
        }],
        ..Default::default()
    };
    let mut out = BytesMut::new();
    assert!(matches!(
        encode_user_information(&mut out, &fits),
        Err(EncodeError::FieldTooLong {
            field: "user information item",
            len: 65_539,
            ..
        })
    ));
}

#[test]
fn encoder_refuses_reserved_variants_holding_defined_codes_and_empty_pdata() {
    let rj = Pdu::AssociateRj(AssociateRj::new(
        RejectResult::Transient,
        RejectSource::ServiceUser(ServiceUserReason::Reserved(7)),
    ));
    assert!(matches!(
        rj.encode(&mut BytesMut::new()),
        Err(EncodeError::InvalidValue { .. })
    ));
    let abort = Pdu::Abort(Abort {
        source: AbortSource::ServiceProvider,
        reason: AbortReason::Reserved(1),
    });
    assert!(matches!(
        abort.encode(&mut BytesMut::new()),
        Err(EncodeError::InvalidValue { .. })
    ));
    assert!(matches!(
        Pdu::PData(PData::default()).encode(&mut BytesMut::new()),
        Err(EncodeError::InvalidValue { .. })
    ));
}

#[test]
fn codes_and_from_code_agree() {
    for code in 0..=255u8 {
        assert_eq!(ServiceUserReason::from_code(code).code(), code);
        assert_eq!(ServiceProviderAcseReason::from_code(code).code(), code);
        assert_eq!(
            ServiceProviderPresentationReason::from_code(code).code(),
            code
        );
        assert_eq!(AbortReason::from_code(code).code(), code);
        if let Some(result) = RejectResult::from_code(code) {
            assert_eq!(result.code(), code);
        }
        if let Some(source) = AbortSource::from_code(code) {
            assert_eq!(source.code(), code);
        }
    }
    assert_eq!(
        ServiceUserReason::from_code(7),
        ServiceUserReason::CalledAeTitleNotRecognized
    );
    assert_eq!(
        ServiceUserReason::from_code(4),
        ServiceUserReason::Reserved(4)
    );
    assert_eq!(AbortReason::from_code(3), AbortReason::Reserved(3));
    assert_eq!(RejectResult::from_code(3), None);
    assert_eq!(AbortSource::from_code(3), None);
    assert_eq!(RejectSource::from_codes(0, 1), None);
    assert_eq!(RejectSource::from_codes(4, 1), None);
}

#[test]
fn decode_errors_map_to_abort_reasons() {
    assert_eq!(
        DecodeError::UnrecognizedPdu(9).abort_reason(),
        AbortReason::UnrecognizedPdu
    );
    assert_eq!(
        DecodeError::UnexpectedParameter("x".into()).abort_reason(),
        AbortReason::UnexpectedPduParameter
    );
    assert_eq!(
        DecodeError::Truncated {
            context: "x",
            needed: 2,
            available: 1
        }
        .abort_reason(),
        AbortReason::InvalidPduParameterValue
    );
}
