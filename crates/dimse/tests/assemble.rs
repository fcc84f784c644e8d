//! The assembler's happy paths and every error path (PS3.7 §6.3.1, PS3.8 Annex E).

mod common;

use bytes::Bytes;
use common::*;
use dimsum_dimse::command::{CommandLimits, tags};
use dimsum_dimse::fragment::encode_command;
use dimsum_dimse::message::{CEchoRq, CFindRsp, CStoreRq};
use dimsum_dimse::{
    AssembleError, Assembled, Assembler, CommandError, CommandField, CommandValue, Message,
    Priority, Status,
};

fn echo_rq(message_id: u16) -> Message {
    CEchoRq {
        message_id,
        affected_sop_class_uid: uid(VERIFICATION),
        data_set_present: false,
    }
    .into()
}

fn store_rq(message_id: u16) -> Message {
    CStoreRq {
        message_id,
        affected_sop_class_uid: uid(CT_IMAGE_STORAGE),
        affected_sop_instance_uid: uid("1.2.3.4"),
        priority: Priority::Medium,
        move_originator_ae_title: None,
        move_originator_message_id: None,
        data_set_present: true,
    }
    .into()
}

fn command_bytes(message: &Message) -> Vec<u8> {
    encode_command(message).unwrap().to_vec()
}

fn expect_command(result: Result<Option<Assembled>, AssembleError>) -> (u8, Message) {
    match result {
        Ok(Some(Assembled::Command {
            presentation_context_id,
            message,
            command,
        })) => {
            assert_eq!(Message::from_command_set(&command).unwrap(), message);
            (presentation_context_id, message)
        }
        other => panic!("expected a command, got {other:?}"),
    }
}

#[test]
fn command_only() {
    let mut assembler = Assembler::default();
    assert!(assembler.is_idle());
    let (context, message) =
        expect_command(assembler.push(pdv(1, true, true, &command_bytes(&echo_rq(1)))));
    assert_eq!((context, message), (1, echo_rq(1)));
    assert!(assembler.is_idle());
}

#[test]
fn command_in_many_fragments_then_data_in_many_fragments() {
    let mut assembler = Assembler::default();
    let command = command_bytes(&store_rq(3));
    let pieces: Vec<&[u8]> = command.chunks(7).collect();
    for piece in &pieces[..pieces.len() - 1] {
        assert_eq!(assembler.push(pdv(5, true, false, piece)).unwrap(), None);
        assert!(!assembler.is_idle());
    }
    let (context, message) =
        expect_command(assembler.push(pdv(5, true, true, pieces[pieces.len() - 1])));
    assert_eq!((context, message), (5, store_rq(3)));
    assert!(!assembler.is_idle(), "waiting for the data set");
    for (index, chunk) in [&b"abc"[..], b"", b"defg"].iter().enumerate() {
        let is_last = index == 2;
        let received = assembler.push(pdv(5, false, is_last, chunk)).unwrap();
        assert_eq!(
            received,
            Some(Assembled::DataFragment {
                presentation_context_id: 5,
                data: Bytes::copy_from_slice(chunk),
                is_last
            })
        );
    }
    assert!(assembler.is_idle());
}

#[test]
fn data_fragments_share_the_received_buffer() {
    let mut assembler = Assembler::default();
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&store_rq(1)))));
    let data = Bytes::from_static(b"pixel data");
    let pointer = data.as_ptr();
    let received = assembler
        .push(dimsum_ul::pdu::Pdv {
            presentation_context_id: 1,
            is_command: false,
            is_last: true,
            data,
        })
        .unwrap();
    match received {
        Some(Assembled::DataFragment { data, .. }) => assert_eq!(data.as_ptr(), pointer, "no copy"),
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn several_messages_back_to_back_on_different_contexts() {
    let mut assembler = Assembler::default();
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&echo_rq(1)))));
    expect_command(assembler.push(pdv(3, true, true, &command_bytes(&store_rq(2)))));
    assert!(assembler.push(pdv(3, false, true, b"x")).unwrap().is_some());
    let pending: Message = CFindRsp {
        data_set_present: true,
        ..CFindRsp::new(9, Status::PENDING)
    }
    .into();
    let final_rsp: Message = CFindRsp::new(9, Status::SUCCESS).into();
    expect_command(assembler.push(pdv(5, true, true, &command_bytes(&pending))));
    assert!(
        assembler
            .push(pdv(5, false, true, b"match"))
            .unwrap()
            .is_some()
    );
    let (_, message) =
        expect_command(assembler.push(pdv(5, true, true, &command_bytes(&final_rsp))));
    assert_eq!(message, final_rsp);
    assert!(assembler.is_idle());
}

#[test]
fn data_without_command() {
    let mut assembler = Assembler::default();
    assert_eq!(
        assembler.push(pdv(1, false, true, b"x")),
        Err(AssembleError::DataWithoutCommand {
            presentation_context_id: 1
        })
    );
    // After a command without a data set, data is just as unexpected.
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&echo_rq(1)))));
    assert_eq!(
        assembler.push(pdv(1, false, false, b"x")),
        Err(AssembleError::DataWithoutCommand {
            presentation_context_id: 1
        })
    );
}

#[test]
fn data_before_command_ended() {
    let mut assembler = Assembler::default();
    let command = command_bytes(&store_rq(1));
    assert_eq!(
        assembler.push(pdv(1, true, false, &command[..10])).unwrap(),
        None
    );
    assert_eq!(
        assembler.push(pdv(1, false, true, b"x")),
        Err(AssembleError::DataBeforeCommandEnded {
            presentation_context_id: 1,
            command_context_id: 1
        })
    );
    assert!(assembler.is_idle(), "errors reset the assembler");
}

#[test]
fn new_command_before_data_set_ended() {
    let mut assembler = Assembler::default();
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&store_rq(1)))));
    assert!(
        assembler
            .push(pdv(1, false, false, b"part"))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        assembler.push(pdv(3, true, true, &command_bytes(&echo_rq(2)))),
        Err(AssembleError::CommandBeforeDataSetEnded {
            presentation_context_id: 3,
            data_set_context_id: 1
        })
    );
    assert!(assembler.is_idle());
    // Right after the command, before any data fragment, too.
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&store_rq(3)))));
    assert!(matches!(
        assembler.push(pdv(1, true, true, &command_bytes(&echo_rq(4)))),
        Err(AssembleError::CommandBeforeDataSetEnded { .. })
    ));
}

#[test]
fn data_on_another_context_than_its_command() {
    let mut assembler = Assembler::default();
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&store_rq(1)))));
    assert_eq!(
        assembler.push(pdv(3, false, true, b"x")),
        Err(AssembleError::DataContextMismatch {
            presentation_context_id: 3,
            command_context_id: 1
        })
    );
}

#[test]
fn command_fragments_switching_context() {
    let mut assembler = Assembler::default();
    let command = command_bytes(&echo_rq(1));
    assert_eq!(
        assembler.push(pdv(1, true, false, &command[..20])).unwrap(),
        None
    );
    assert_eq!(
        assembler.push(pdv(3, true, true, &command[20..])),
        Err(AssembleError::CommandContextChanged {
            presentation_context_id: 3,
            command_context_id: 1
        })
    );
}

#[test]
fn command_too_long_single_and_fragmented() {
    let limits = CommandLimits {
        max_command_len: 64,
        ..CommandLimits::default()
    };
    let command = command_bytes(&store_rq(1));
    assert!(command.len() > 64);
    let mut assembler = Assembler::new(limits);
    assert_eq!(
        assembler.push(pdv(1, true, true, &command)),
        Err(AssembleError::CommandTooLong {
            presentation_context_id: 1,
            max: 64
        })
    );
    assert_eq!(
        assembler.push(pdv(1, true, false, &command[..40])).unwrap(),
        None
    );
    assert_eq!(
        assembler.push(pdv(1, true, false, &command[40..80])),
        Err(AssembleError::CommandTooLong {
            presentation_context_id: 1,
            max: 64
        })
    );
    assert!(assembler.is_idle());
    // A command exactly at the limit is accepted.
    let echo = command_bytes(&echo_rq(1));
    let mut assembler = Assembler::new(CommandLimits {
        max_command_len: echo.len(),
        ..limits
    });
    expect_command(assembler.push(pdv(1, true, true, &echo)));
}

#[test]
fn undecodable_command() {
    let mut assembler = Assembler::default();
    let mut command = command_bytes(&echo_rq(1));
    command.truncate(command.len() - 1);
    assert!(matches!(
        assembler.push(pdv(1, true, true, &command)),
        Err(AssembleError::MalformedCommand {
            presentation_context_id: 1,
            ..
        })
    ));
    assert!(assembler.is_idle());
}

#[test]
fn invalid_message_keeps_the_command_and_discards_its_data_set() {
    let mut assembler = Assembler::default();
    let mut command = store_rq(8).to_command_set();
    command.remove(tags::AFFECTED_SOP_INSTANCE_UID);
    let bytes = command.encode().unwrap();
    match assembler.push(pdv(1, true, true, &bytes)) {
        Err(AssembleError::InvalidMessage {
            presentation_context_id,
            command: received,
            source,
        }) => {
            assert_eq!(presentation_context_id, 1);
            assert_eq!(
                received.get_us(tags::MESSAGE_ID),
                Some(8),
                "enough to answer 0xC000"
            );
            assert_eq!(
                source,
                CommandError::MissingElement {
                    command: CommandField::CStoreRq,
                    tag: dimsum_dimse::command::TagDisplay(tags::AFFECTED_SOP_INSTANCE_UID),
                }
            );
        }
        other => panic!("expected InvalidMessage, got {other:?}"),
    }
    assert!(
        !assembler.is_idle(),
        "the announced data set is still to come"
    );
    assert_eq!(
        assembler.push(pdv(1, false, false, b"dropped")).unwrap(),
        None
    );
    assert_eq!(
        assembler.push(pdv(1, false, true, b"dropped")).unwrap(),
        None
    );
    assert!(assembler.is_idle());
    expect_command(assembler.push(pdv(1, true, true, &command_bytes(&echo_rq(9)))));
}

#[test]
fn unknown_command_field_without_data_set() {
    let mut assembler = Assembler::default();
    let mut command = echo_rq(1).to_command_set();
    command.insert(tags::COMMAND_FIELD, CommandValue::Us(0x0042));
    assert!(matches!(
        assembler.push(pdv(1, true, true, &command.encode().unwrap())),
        Err(AssembleError::InvalidMessage {
            source: CommandError::UnknownCommandField(0x0042),
            ..
        })
    ));
    assert!(assembler.is_idle());
}
