//! Messages shared by the integration tests.

#![allow(dead_code)]

use bytes::Bytes;
use dimsum_dimse::message::*;
use dimsum_dimse::{Message, Priority, Status};
use dimsum_ul::pdu::Pdv;

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

pub fn uid(text: &str) -> String {
    text.to_owned()
}

/// One message of every type, with optional fields set on some and not on others.
pub fn every_message() -> Vec<Message> {
    vec![
        CEchoRq {
            message_id: 1,
            affected_sop_class_uid: uid(VERIFICATION),
            data_set_present: false,
        }
        .into(),
        CEchoRsp {
            affected_sop_class_uid: Some(uid(VERIFICATION)),
            ..CEchoRsp::new(1, Status::SUCCESS)
        }
        .into(),
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
        CStoreRsp {
            affected_sop_class_uid: Some(uid(CT_IMAGE_STORAGE)),
            affected_sop_instance_uid: Some(uid("1.2.3")),
            offending_element: Some(vec![0x0010_0010, 0x0010_0020]),
            error_comment: Some(uid("coerced")),
            ..CStoreRsp::new(7, Status::COERCION_OF_DATA_ELEMENTS)
        }
        .into(),
        CFindRq {
            message_id: 2,
            affected_sop_class_uid: uid("1.2.840.10008.5.1.4.1.2.1.1"),
            priority: Priority::High,
            data_set_present: true,
        }
        .into(),
        CFindRsp {
            data_set_present: true,
            ..CFindRsp::new(2, Status::PENDING)
        }
        .into(),
        CGetRq {
            message_id: 3,
            affected_sop_class_uid: uid("1.2.840.10008.5.1.4.1.2.2.3"),
            priority: Priority::Medium,
            data_set_present: true,
        }
        .into(),
        CGetRsp {
            number_of_remaining_suboperations: Some(3),
            number_of_completed_suboperations: Some(2),
            number_of_failed_suboperations: Some(1),
            number_of_warning_suboperations: Some(0),
            ..CGetRsp::new(3, Status::PENDING)
        }
        .into(),
        CMoveRq {
            message_id: 4,
            affected_sop_class_uid: uid("1.2.840.10008.5.1.4.1.2.2.2"),
            priority: Priority::Medium,
            move_destination: uid("STORESCP"),
            data_set_present: true,
        }
        .into(),
        CMoveRsp {
            number_of_completed_suboperations: Some(10),
            number_of_failed_suboperations: Some(1),
            number_of_warning_suboperations: Some(0),
            data_set_present: true,
            ..CMoveRsp::new(4, Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES)
        }
        .into(),
        CCancelRq {
            message_id_being_responded_to: 2,
            data_set_present: false,
        }
        .into(),
        NEventReportRq {
            message_id: 9,
            affected_sop_class_uid: uid("1.2.840.10008.1.20.1"),
            affected_sop_instance_uid: uid("1.2.840.10008.1.20.1.1"),
            event_type_id: 1,
            data_set_present: true,
        }
        .into(),
        NEventReportRsp {
            event_type_id: Some(1),
            ..NEventReportRsp::new(9, Status::SUCCESS)
        }
        .into(),
        NGetRq {
            message_id: 10,
            requested_sop_class_uid: uid("1.2.840.10008.5.1.1.16"),
            requested_sop_instance_uid: uid("1.2.840.10008.5.1.1.17"),
            attribute_identifier_list: Some(vec![0x2110_0010, 0x2110_0020]),
            data_set_present: false,
        }
        .into(),
        NGetRsp {
            affected_sop_instance_uid: Some(uid("1.2.840.10008.5.1.1.17")),
            data_set_present: true,
            ..NGetRsp::new(10, Status::ATTRIBUTES_NOT_SUPPORTED)
        }
        .into(),
        NSetRq {
            message_id: 11,
            requested_sop_class_uid: uid("1.2.840.10008.5.1.1.40"),
            requested_sop_instance_uid: uid("1.2.3.4.5"),
            data_set_present: true,
        }
        .into(),
        NSetRsp {
            error_id: Some(42),
            ..NSetRsp::new(11, Status::INVALID_ATTRIBUTE_VALUE)
        }
        .into(),
        NActionRq {
            message_id: 12,
            requested_sop_class_uid: uid("1.2.840.10008.1.20.1"),
            requested_sop_instance_uid: uid("1.2.840.10008.1.20.1.1"),
            action_type_id: 1,
            data_set_present: true,
        }
        .into(),
        NActionRsp {
            action_type_id: Some(1),
            affected_sop_class_uid: Some(uid("1.2.840.10008.1.20.1")),
            ..NActionRsp::new(12, Status::SUCCESS)
        }
        .into(),
        NCreateRq {
            message_id: 13,
            affected_sop_class_uid: uid("1.2.840.10008.3.1.2.3.3"),
            affected_sop_instance_uid: None,
            data_set_present: true,
        }
        .into(),
        NCreateRsp {
            affected_sop_instance_uid: Some(uid("1.2.3.4.6")),
            ..NCreateRsp::new(13, Status::SUCCESS)
        }
        .into(),
        NDeleteRq {
            message_id: 14,
            requested_sop_class_uid: uid("1.2.840.10008.5.1.1.40"),
            requested_sop_instance_uid: uid("1.2.3.4.5"),
            data_set_present: false,
        }
        .into(),
        NDeleteRsp {
            error_comment: Some(uid("no such print")),
            ..NDeleteRsp::new(14, Status::NO_SUCH_SOP_INSTANCE)
        }
        .into(),
    ]
}

pub fn pdv(presentation_context_id: u8, is_command: bool, is_last: bool, data: &[u8]) -> Pdv {
    Pdv {
        presentation_context_id,
        is_command,
        is_last,
        data: Bytes::copy_from_slice(data),
    }
}

/// A tiny deterministic generator (xorshift64*), so that "random" tests repeat exactly.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }
}
