//! A deterministic mutation loop over encoded commands: decoding and assembling must never panic,
//! and whatever decodes must re-encode to a fixed point.

mod common;

use common::*;
use dimsum_dimse::command::{CommandEncodeError, CommandLimits, CommandValueError};
use dimsum_dimse::fragment::encode_command;
use dimsum_dimse::{Assembler, CommandSet, Message};

const ROUNDS_PER_MESSAGE: usize = 2_000;

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let position = rng.below(bytes.len());
        match rng.below(7) {
            0 => {
                if let Some(byte) = bytes.get_mut(position) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 => {
                if let Some(byte) = bytes.get_mut(position) {
                    *byte = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20][rng.below(6)];
                }
            }
            2 => bytes.truncate(position),
            3 => bytes.insert(position.min(bytes.len()), rng.next_u64() as u8),
            4 => {
                // Rewrite what may be a 32-bit length field with a hostile value.
                let value: u32 = [0, 1, 2, 3, 0xFFFF_FFFF, 0x7FFF_FFFF, 65, 4096][rng.below(8)];
                if position + 4 <= bytes.len() {
                    bytes[position..position + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            5 => {
                // Duplicate a slice.
                let end = (position + rng.below(16)).min(bytes.len());
                let slice = bytes[position.min(end)..end].to_vec();
                bytes.splice(position.min(bytes.len())..position.min(bytes.len()), slice);
            }
            _ => {
                if position < bytes.len() {
                    bytes.remove(position);
                }
            }
        }
    }
}

#[test]
fn mutated_commands_never_panic_and_reencode_to_a_fixed_point() {
    let limits = CommandLimits::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut decoded_count = 0;
    let mut message_count = 0;
    for message in every_message() {
        let original = encode_command(&message).unwrap().to_vec();
        for _ in 0..ROUNDS_PER_MESSAGE {
            let mut bytes = original.clone();
            mutate(&mut rng, &mut bytes);
            let Ok(command) = CommandSet::decode(&bytes, &limits) else {
                continue;
            };
            decoded_count += 1;
            let reencoded = match command.encode() {
                Ok(bytes) => bytes,
                // Text is decoded leniently and encoded strictly: an over-long or non-printable
                // string is the one thing that may keep a decoded set from encoding again.
                Err(CommandEncodeError::InvalidValue(
                    CommandValueError::InvalidLength { .. }
                    | CommandValueError::InvalidCharacter { .. },
                )) => continue,
                Err(other) => panic!("a decoded command set does not encode: {other}"),
            };
            let again = CommandSet::decode(&reencoded, &limits).expect("re-encoded bytes decode");
            assert_eq!(again.encode().unwrap(), reencoded, "fixed point");
            if let Ok(parsed) = Message::from_command_set(&command) {
                message_count += 1;
                let encoded = encode_command(&parsed).expect("it encoded as a command set");
                let round = CommandSet::decode(&encoded, &limits).unwrap();
                assert_eq!(Message::from_command_set(&round).unwrap(), parsed);
            }
            // The assembler must not panic on the same bytes cut into fragments either.
            let mut assembler = Assembler::new(limits);
            let cut = rng.below(bytes.len() + 1);
            let _ = assembler.push(pdv(1, true, false, &bytes[..cut]));
            let _ = assembler.push(pdv(1, true, true, &bytes[cut..]));
            let _ = assembler.push(pdv(1, false, true, &bytes));
        }
    }
    // The loop must exercise the success paths, not only the error paths.
    assert!(
        decoded_count > 1_000,
        "only {decoded_count} mutants decoded"
    );
    assert!(
        message_count > 100,
        "only {message_count} mutants were valid messages"
    );
}
