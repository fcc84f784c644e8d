//! Fuzzes the DIMSE assembler (PS3.7 §6.3.1, PS3.8 Annex E): the input is cut into PDVs and
//! pushed in order; nothing may panic, and the assembler's idle state must follow what it
//! returned.
//!
//! Input format, repeated: a control byte (bit 0 command, bit 1 last, bits 2–3 choose the
//! presentation context 1, 3, 5 or 7), a length byte, then up to that many payload bytes.

#![no_main]

use bytes::Bytes;
use dimsum_dimse::assemble::{AssembleError, Assembled, Assembler};
use dimsum_dimse::command::CommandLimits;
use dimsum_ul::pdu::Pdv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small command limit so that the too-long path is reachable.
    let limits = CommandLimits {
        max_command_len: 1024,
        ..CommandLimits::default()
    };
    let mut assembler = Assembler::new(limits);
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(take);
        rest = next;
        let pdv = Pdv {
            presentation_context_id: 1 + 2 * ((control >> 2) & 0x03),
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            data: Bytes::copy_from_slice(payload),
        };
        match assembler.push(pdv) {
            Ok(Some(Assembled::Command { message, .. })) => {
                assert_eq!(assembler.is_idle(), !message.has_data_set());
            }
            Ok(Some(Assembled::DataFragment { is_last, .. })) => {
                assert_eq!(assembler.is_idle(), is_last);
            }
            Ok(None) => {}
            Err(AssembleError::InvalidMessage { command, .. }) => {
                assert_eq!(assembler.is_idle(), !command.has_data_set());
            }
            Err(_) => assert!(assembler.is_idle()),
        }
    }
});
