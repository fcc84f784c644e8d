//! Every message type survives encode → decode unchanged, and its command set holds what the
//! standard says.

mod common;

use common::*;
use dimsum_dimse::command::{CommandLimits, DATA_SET_PRESENT, NO_DATA_SET, tags};
use dimsum_dimse::fragment::encode_command;
use dimsum_dimse::{CommandField, CommandSet, Message};

#[test]
fn every_message_type_round_trips() {
    let messages = every_message();
    let mut fields: Vec<CommandField> = messages.iter().map(Message::command_field).collect();
    fields.sort_by_key(|field| field.code());
    fields.dedup();
    assert_eq!(fields.len(), 23, "one message per command field");
    for message in messages {
        let bytes = encode_command(&message).unwrap();
        let command = CommandSet::decode(&bytes, &CommandLimits::default()).unwrap();
        assert_eq!(Message::from_command_set(&command).unwrap(), message);
    }
}

#[test]
fn command_sets_carry_field_and_data_set_type() {
    for message in every_message() {
        let command = message.to_command_set();
        assert_eq!(
            command.get_us(tags::COMMAND_FIELD),
            Some(message.command_field().code())
        );
        let expected = if message.has_data_set() {
            DATA_SET_PRESENT
        } else {
            NO_DATA_SET
        };
        assert_eq!(command.get_us(tags::COMMAND_DATA_SET_TYPE), Some(expected));
        assert_eq!(command.has_data_set(), message.has_data_set());
        assert_eq!(command.get_us(tags::MESSAGE_ID), message.message_id());
        assert_eq!(
            command.get_us(tags::MESSAGE_ID_BEING_RESPONDED_TO),
            message.message_id_being_responded_to()
        );
        assert_eq!(
            command.get_us(tags::STATUS),
            message.status().map(|status| status.0)
        );
        assert_eq!(
            message.status().is_some(),
            message.command_field().is_response()
        );
    }
}

#[test]
fn absent_optional_fields_are_not_encoded() {
    let message = every_message()
        .into_iter()
        .find(|message| message.command_field() == CommandField::NCreateRq)
        .unwrap();
    let command = message.to_command_set();
    assert!(!command.contains(tags::AFFECTED_SOP_INSTANCE_UID));
    assert_eq!(
        command.len(),
        4,
        "field, message id, class uid, data set type"
    );
}

#[test]
fn unknown_and_extra_elements_are_ignored_by_messages() {
    let message = every_message().remove(0);
    let mut command = message.to_command_set();
    command.insert(0x0000_4000, dimsum_dimse::CommandValue::Raw(vec![1, 2]));
    command.insert(tags::PRIORITY, dimsum_dimse::CommandValue::Us(1));
    let bytes = command.encode().unwrap();
    let decoded = CommandSet::decode(&bytes, &CommandLimits::default()).unwrap();
    assert_eq!(Message::from_command_set(&decoded).unwrap(), message);
}
