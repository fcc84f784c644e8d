//! Fuzzes the command set decoder and the typed message reader (PS3.7 §6.3.1, §9, §10): neither
//! may panic, and whatever decodes must re-encode to bytes that decode to the same thing.

#![no_main]

use dimsum_dimse::command::{
    CommandEncodeError, CommandLimits, CommandSet, CommandValue, CommandValueError,
};
use dimsum_dimse::fragment::encode_command;
use dimsum_dimse::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = CommandLimits::default();
    let Ok(command) = CommandSet::decode(data, &limits) else {
        return;
    };
    // The decoder normalises (string padding, the group length, odd-length unknown values
    // padded to even): the same elements come back, and after one round the bytes are stable.
    let reencoded = match command.encode() {
        Ok(bytes) => bytes,
        // Text is decoded leniently and encoded strictly: an over-long or non-printable string
        // is the one thing that may keep a decoded set from encoding again.
        Err(CommandEncodeError::InvalidValue(
            CommandValueError::InvalidLength { .. } | CommandValueError::InvalidCharacter { .. },
        )) => return,
        Err(other) => panic!("a decoded command set does not encode: {other}"),
    };
    let again = CommandSet::decode(&reencoded, &limits).expect("re-encoded bytes decode");
    assert!(
        again
            .iter()
            .map(|(tag, _)| tag)
            .eq(command.iter().map(|(tag, _)| tag))
    );
    assert!(
        again
            .iter()
            .zip(command.iter())
            .all(|((_, a), (_, b))| { matches!(a, CommandValue::Raw(_)) || a == b }),
        "known elements survive unchanged"
    );
    assert_eq!(
        again.encode().expect("encodes"),
        reencoded,
        "encoding is a fixed point"
    );

    if let Ok(message) = Message::from_command_set(&command) {
        let bytes = encode_command(&message).expect("a decoded message encodes");
        let round = CommandSet::decode(&bytes, &limits).expect("encoded message decodes");
        assert_eq!(Message::from_command_set(&round).as_ref(), Ok(&message));
    }
});
