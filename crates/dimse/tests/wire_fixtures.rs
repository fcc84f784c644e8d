//! Byte-exact encodings checked against bytes written by hand from PS3.7 and against bytes
//! recorded from pynetdicom 3.0.4 (see fixtures/generate.py; Python is not needed to run these).

mod common;

use bytes::BytesMut;
use common::*;
use dimsum_dimse::command::CommandLimits;
use dimsum_dimse::fragment::{encode_command, encode_pdata_pdus};
use dimsum_dimse::message::*;
use dimsum_dimse::{CommandSet, Message, Priority, Status};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Checks that `message` encodes to exactly the recorded bytes and that the bytes decode back to
/// `message`.
fn assert_wire(message: Message, name: &str) {
    let expected = fixture(name);
    assert_eq!(
        encode_command(&message).unwrap().as_ref(),
        expected.as_slice(),
        "{name}"
    );
    let decoded = CommandSet::decode(&expected, &CommandLimits::default()).unwrap();
    assert_eq!(
        Message::from_command_set(&decoded).unwrap(),
        message,
        "{name}"
    );
}

#[test]
fn c_echo_rq_matches_ps3_7_by_hand() {
    #[rustfmt::skip]
    let by_hand: &[u8] = &[
        // (0000,0000) UL, length 4, value 56
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00,
        // (0000,0002) UI, length 18, "1.2.840.10008.1.1" + NUL
        0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00,
        b'1', b'.', b'2', b'.', b'8', b'4', b'0', b'.', b'1', b'0', b'0', b'0', b'8', b'.', b'1',
        b'.', b'1', 0x00,
        // (0000,0100) US 0x0030 C-ECHO-RQ
        0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00,
        // (0000,0110) US message id 1
        0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00,
        // (0000,0800) US 0x0101 no data set
        0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01,
    ];
    let message: Message = CEchoRq {
        message_id: 1,
        affected_sop_class_uid: uid(VERIFICATION),
        data_set_present: false,
    }
    .into();
    assert_eq!(encode_command(&message).unwrap().as_ref(), by_hand);
    assert_eq!(
        fixture("c_echo_rq"),
        by_hand,
        "pynetdicom agrees with the hand-written bytes"
    );
}

#[test]
fn c_echo_rq_pdata_matches_pynetdicom() {
    let message: Message = CEchoRq {
        message_id: 1,
        affected_sop_class_uid: uid(VERIFICATION),
        data_set_present: false,
    }
    .into();
    let mut out = BytesMut::new();
    let pdus = encode_pdata_pdus(
        1,
        true,
        &encode_command(&message).unwrap(),
        16_384,
        &mut out,
    )
    .unwrap();
    assert_eq!(pdus, 1);
    assert_eq!(out.as_ref(), fixture("c_echo_rq.pdata").as_slice());
}

#[test]
fn c_echo_rq_and_rsp_match_pynetdicom() {
    assert_wire(
        CEchoRq {
            message_id: 1,
            affected_sop_class_uid: uid(VERIFICATION),
            data_set_present: false,
        }
        .into(),
        "c_echo_rq",
    );
    assert_wire(
        CEchoRsp {
            affected_sop_class_uid: Some(uid(VERIFICATION)),
            ..CEchoRsp::new(1, Status::SUCCESS)
        }
        .into(),
        "c_echo_rsp",
    );
}

#[test]
fn c_store_rq_and_rsp_match_pynetdicom() {
    assert_wire(
        CStoreRq {
            message_id: 7,
            affected_sop_class_uid: uid(CT_IMAGE_STORAGE),
            affected_sop_instance_uid: uid("1.2.826.0.1.3680043.2.1125.1.12345"),
            priority: Priority::Low,
            move_originator_ae_title: Some(uid("MOVESCU")),
            move_originator_message_id: Some(3),
            data_set_present: true,
        }
        .into(),
        "c_store_rq",
    );
    assert_wire(
        CStoreRsp {
            affected_sop_class_uid: Some(uid(CT_IMAGE_STORAGE)),
            affected_sop_instance_uid: Some(uid("1.2.826.0.1.3680043.2.1125.1.12345")),
            offending_element: Some(vec![0x0010_0010, 0x0010_0020]),
            error_comment: Some(uid("coerced")),
            ..CStoreRsp::new(7, Status::COERCION_OF_DATA_ELEMENTS)
        }
        .into(),
        "c_store_rsp",
    );
}

#[test]
fn query_retrieve_messages_match_pynetdicom() {
    assert_wire(
        CFindRq {
            message_id: 2,
            affected_sop_class_uid: uid("1.2.840.10008.5.1.4.1.2.1.1"),
            priority: Priority::High,
            data_set_present: true,
        }
        .into(),
        "c_find_rq",
    );
    assert_wire(
        CFindRsp {
            affected_sop_class_uid: Some(uid("1.2.840.10008.5.1.4.1.2.1.1")),
            data_set_present: true,
            ..CFindRsp::new(2, Status::PENDING)
        }
        .into(),
        "c_find_rsp",
    );
    assert_wire(
        CMoveRq {
            message_id: 4,
            affected_sop_class_uid: uid("1.2.840.10008.5.1.4.1.2.2.2"),
            priority: Priority::Medium,
            move_destination: uid("STORESCP"),
            data_set_present: true,
        }
        .into(),
        "c_move_rq",
    );
    assert_wire(
        CGetRsp {
            affected_sop_class_uid: Some(uid("1.2.840.10008.5.1.4.1.2.2.3")),
            number_of_remaining_suboperations: Some(3),
            number_of_completed_suboperations: Some(2),
            number_of_failed_suboperations: Some(1),
            number_of_warning_suboperations: Some(0),
            ..CGetRsp::new(5, Status::PENDING)
        }
        .into(),
        "c_get_rsp",
    );
    assert_wire(
        CCancelRq {
            message_id_being_responded_to: 2,
            data_set_present: false,
        }
        .into(),
        "c_cancel_rq",
    );
}

#[test]
fn normalized_messages_match_pynetdicom() {
    assert_wire(
        NEventReportRq {
            message_id: 9,
            affected_sop_class_uid: uid("1.2.840.10008.1.20.1"),
            affected_sop_instance_uid: uid("1.2.840.10008.1.20.1.1"),
            event_type_id: 1,
            data_set_present: true,
        }
        .into(),
        "n_event_report_rq",
    );
    assert_wire(
        NGetRq {
            message_id: 10,
            requested_sop_class_uid: uid("1.2.840.10008.5.1.1.16"),
            requested_sop_instance_uid: uid("1.2.840.10008.5.1.1.17"),
            attribute_identifier_list: Some(vec![0x2110_0010, 0x2110_0020]),
            data_set_present: false,
        }
        .into(),
        "n_get_rq",
    );
    assert_wire(
        NActionRq {
            message_id: 11,
            requested_sop_class_uid: uid("1.2.840.10008.1.20.1"),
            requested_sop_instance_uid: uid("1.2.840.10008.1.20.1.1"),
            action_type_id: 1,
            data_set_present: true,
        }
        .into(),
        "n_action_rq",
    );
    assert_wire(
        NSetRsp {
            affected_sop_class_uid: Some(uid("1.2.840.10008.5.1.1.40")),
            affected_sop_instance_uid: Some(uid("1.2.3.4.5")),
            error_id: Some(42),
            ..NSetRsp::new(12, Status::INVALID_ATTRIBUTE_VALUE)
        }
        .into(),
        "n_set_rsp",
    );
}
