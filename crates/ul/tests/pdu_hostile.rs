//! Hostile input for the PDU decoder: truncation, lying lengths, unknown types, nesting that
//! overruns its parent, floods of items, and a deterministic mutation loop over every fixture.
//! Nothing may panic; anything decoded must re-encode and decode to the same value.

#[path = "fixtures/support.rs"]
mod support;

use bytes::BytesMut;
use dimsum_ul::pdu::{DecodeError, DecodeLimits, EncodeError, Pdu, decode_from};
use support::{all_fixtures, decode, hex_fixture, test_limits, try_decode};

fn with_pdu_length(mut bytes: Vec<u8>) -> Vec<u8> {
    let length = u32::try_from(bytes.len() - 6).unwrap();
    bytes[2..6].copy_from_slice(&length.to_be_bytes());
    bytes
}

/// Re-encodes a decoded PDU and checks that decoding gives it back. Returns false when the
/// encoder refuses the value: the decoder is lenient with text that the negotiation, not the
/// codec, rejects (blank AE titles, empty or over-long UIDs), and the encoder refuses to send
/// such values; any other refusal fails the test.
fn round_trips_or_is_unsendable(pdu: &Pdu, context: &str) -> bool {
    let mut out = BytesMut::new();
    match pdu.encode(&mut out) {
        Ok(()) => {
            assert_eq!(&decode(&out), pdu, "{context}");
            true
        }
        Err(EncodeError::FieldTooLong { field, .. } | EncodeError::InvalidValue { field, .. }) => {
            let text_field = [
                "AE title",
                "UID",
                "syntax",
                "version name",
                "application context",
            ];
            assert!(
                text_field.iter().any(|t| field.contains(t)),
                "{context}: unexpected refusal of {field} in {pdu:?}"
            );
            assert!(out.is_empty(), "a failed encode appended bytes");
            false
        }
    }
}

#[test]
fn every_strict_prefix_of_every_fixture_waits_for_more() {
    for (name, bytes) in all_fixtures() {
        if try_decode(&bytes).is_err() {
            continue; // the one deliberately inconsistent capture, tested elsewhere
        }
        for end in 0..bytes.len() {
            assert_eq!(try_decode(&bytes[..end]), Ok(None), "{name} cut at {end}");
        }
    }
}

#[test]
fn every_truncated_body_with_a_matching_length_fails_cleanly() {
    for (name, bytes) in all_fixtures() {
        for end in 6..bytes.len() {
            let cut = with_pdu_length(bytes[..end].to_vec());
            match try_decode(&cut) {
                Ok(Some(pdu)) => {
                    round_trips_or_is_unsendable(&pdu, &format!("{name} cut at {end}"));
                }
                Ok(None) => panic!("{name} cut at {end}: complete PDU reported incomplete"),
                Err(_) => {}
            }
        }
    }
}

#[test]
fn huge_claimed_length_is_refused_from_the_header_alone() {
    for pdu_type in 1..=7u8 {
        let mut buf = BytesMut::from(&[pdu_type, 0, 0xFF, 0xFF, 0xFF, 0xF0][..]);
        let capacity = buf.capacity();
        let result = decode_from(&mut buf, &DecodeLimits::default());
        match result {
            Err(DecodeError::TooLong {
                pdu_type: t,
                length: 0xFFFF_FFF0,
                max,
            }) => {
                assert_eq!(t, pdu_type);
                assert!(max < 0xFFFF_FFF0);
            }
            other => panic!("type {pdu_type}: {other:?}"),
        }
        assert_eq!(
            (buf.len(), buf.capacity()),
            (6, capacity),
            "nothing consumed or reserved"
        );
    }
}

#[test]
fn pdata_limit_follows_the_announced_maximum() {
    let limits = DecodeLimits {
        max_pdata_length: 1000,
        max_unlimited_pdata_length: 5000,
        max_control_pdu_length: 100,
    };
    let header = |pdu_type: u8, length: u32| {
        let mut bytes = vec![pdu_type, 0];
        bytes.extend_from_slice(&length.to_be_bytes());
        BytesMut::from(&bytes[..])
    };
    assert_eq!(decode_from(&mut header(4, 1000), &limits), Ok(None));
    assert_eq!(
        decode_from(&mut header(4, 1001), &limits),
        Err(DecodeError::TooLong {
            pdu_type: 4,
            length: 1001,
            max: 1000
        })
    );
    let unlimited = DecodeLimits {
        max_pdata_length: 0,
        ..limits
    };
    assert_eq!(decode_from(&mut header(4, 5000), &unlimited), Ok(None));
    assert_eq!(
        decode_from(&mut header(4, 5001), &unlimited),
        Err(DecodeError::TooLong {
            pdu_type: 4,
            length: 5001,
            max: 5000
        })
    );
    assert_eq!(decode_from(&mut header(1, 100), &limits), Ok(None));
    assert_eq!(
        decode_from(&mut header(2, 101), &limits),
        Err(DecodeError::TooLong {
            pdu_type: 2,
            length: 101,
            max: 100
        })
    );
    // A large but allowed length reserves nothing while waiting.
    let mut buf = header(4, 5000);
    let capacity = buf.capacity();
    assert_eq!(decode_from(&mut buf, &unlimited), Ok(None));
    assert_eq!(buf.capacity(), capacity);
}

#[test]
fn unknown_pdu_types_are_unrecognized() {
    for pdu_type in [0x00, 0x08, 0x10, 0xFF] {
        let mut buf = BytesMut::from(&[pdu_type, 0, 0, 0, 0, 4, 0, 0, 0, 0][..]);
        assert_eq!(
            decode_from(&mut buf, &DecodeLimits::default()),
            Err(DecodeError::UnrecognizedPdu(pdu_type))
        );
    }
    // Known as soon as the header is there, before the body.
    let mut buf = BytesMut::from(&[0x09, 0, 0, 0, 0, 40][..]);
    assert_eq!(
        decode_from(&mut buf, &DecodeLimits::default()),
        Err(DecodeError::UnrecognizedPdu(0x09))
    );
}

#[test]
fn fixed_size_pdus_must_have_four_byte_bodies() {
    for pdu_type in [3u8, 5, 6, 7] {
        for length in [0u32, 3, 5, 100] {
            let mut bytes = vec![pdu_type, 0];
            bytes.extend_from_slice(&length.to_be_bytes());
            let result = decode_from(&mut BytesMut::from(&bytes[..]), &DecodeLimits::default());
            assert!(
                matches!(result, Err(DecodeError::InvalidParameter(_))),
                "type {pdu_type} length {length}: {result:?}"
            );
        }
    }
}

#[test]
fn pdus_are_taken_one_at_a_time_from_a_stream() {
    let mut stream = hex_fixture("associate_rq");
    stream.extend(hex_fixture("pdata"));
    stream.extend(&hex_fixture("release_rq")[..7]);
    let mut buf = BytesMut::from(&stream[..]);
    let limits = test_limits();
    assert!(matches!(
        decode_from(&mut buf, &limits),
        Ok(Some(Pdu::AssociateRq(_)))
    ));
    assert!(matches!(
        decode_from(&mut buf, &limits),
        Ok(Some(Pdu::PData(_)))
    ));
    assert_eq!(decode_from(&mut buf, &limits), Ok(None));
    assert_eq!(buf.len(), 7);
    buf.extend_from_slice(&[0, 0, 0]);
    assert_eq!(decode_from(&mut buf, &limits), Ok(Some(Pdu::ReleaseRq)));
    assert!(buf.is_empty());
}

/// The A-ASSOCIATE-RQ fixture with its variable items replaced by `items`.
fn rq_with_items(items: &[u8]) -> Vec<u8> {
    let mut bytes = hex_fixture("associate_rq")[..6 + 68].to_vec();
    bytes.extend_from_slice(items);
    with_pdu_length(bytes)
}

const APP_CONTEXT_ITEM: &[u8] = b"\x10\x00\x00\x151.2.840.10008.3.1.1.1";

#[test]
fn item_longer_than_its_pdu_is_truncated() {
    let mut items = APP_CONTEXT_ITEM.to_vec();
    items.extend_from_slice(b"\x50\x00\x00\x10\x51\x00\x00\x04\x00\x00");
    assert!(matches!(
        try_decode(&rq_with_items(&items)),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn sub_item_longer_than_its_item_is_truncated() {
    for sub_item in [
        &b"\x51\x00\x00\x08\x00\x00\x40\x00"[..], // max length claims 8, has 4
        b"\x58\x00\x00\x06\x01\x00\x00\x09abcd",  // primary field claims 9, has 2
        b"\x54\x00\x00\x05\x00\x40\x31\x00\x01",  // UID length 64 inside a 5-byte item
        b"\x57\x00\x00\x0b\x00\x01\x31\x00\x01\x32\x00\x07\x00\x01\x33", // related list overruns
    ] {
        let mut items = APP_CONTEXT_ITEM.to_vec();
        items.extend_from_slice(&[0x50, 0, 0, u8::try_from(sub_item.len()).unwrap()]);
        items.extend_from_slice(sub_item);
        let result = try_decode(&rq_with_items(&items));
        assert!(
            matches!(result, Err(DecodeError::Truncated { .. })),
            "{sub_item:02x?}: {result:?}"
        );
    }
    // Transfer syntax sub-item overrunning its presentation context item.
    let mut items = APP_CONTEXT_ITEM.to_vec();
    items.extend_from_slice(
        b"\x20\x00\x00\x0c\x01\x00\x00\x00\x30\x00\x00\x01\x31\x40\x00\x00\x09\x31",
    );
    assert!(matches!(
        try_decode(&rq_with_items(&items)),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn unknown_pdu_level_items_are_skipped_and_known_ones_checked() {
    let mut items = b"\x99\x00\x00\x02\xAB\xCD".to_vec();
    items.extend_from_slice(APP_CONTEXT_ITEM);
    items.extend_from_slice(b"\x21\x00\x00\x00"); // an AC item inside an RQ: not for us, skipped
    let Pdu::AssociateRq(rq) = decode(&rq_with_items(&items)) else {
        panic!("expected RQ")
    };
    assert_eq!(rq.application_context_name, "1.2.840.10008.3.1.1.1");
    assert!(rq.presentation_contexts.is_empty());

    assert!(matches!(
        try_decode(&rq_with_items(b"")),
        Err(DecodeError::InvalidParameter(_))
    ));
    let twice = [APP_CONTEXT_ITEM, APP_CONTEXT_ITEM].concat();
    assert!(matches!(
        try_decode(&rq_with_items(&twice)),
        Err(DecodeError::UnexpectedParameter(_))
    ));
}

#[test]
fn floods_of_items_decode_in_bounded_memory() {
    // 60,000 presentation contexts with empty abstract syntaxes: 12 bytes each.
    let mut items = APP_CONTEXT_ITEM.to_vec();
    for i in 0..60_000u32 {
        items.extend_from_slice(&[0x20, 0, 0, 8, (i % 256) as u8, 0, 0, 0, 0x30, 0, 0, 0]);
    }
    let Pdu::AssociateRq(rq) = decode(&rq_with_items(&items)) else {
        panic!("expected RQ")
    };
    assert_eq!(rq.presentation_contexts.len(), 60_000);

    // 16,383 unknown sub-items fill a user information item to its 65,532-byte maximum.
    let mut items = APP_CONTEXT_ITEM.to_vec();
    items.extend_from_slice(&[0x50, 0, 0xFF, 0xFC]);
    for _ in 0..16_383 {
        items.extend_from_slice(&[0x77, 0, 0, 0]);
    }
    let Pdu::AssociateRq(rq) = decode(&rq_with_items(&items)) else {
        panic!("expected RQ")
    };
    assert_eq!(rq.user_information.unknown.len(), 16_383);

    // 10,000 empty PDVs in one P-DATA-TF.
    let mut bytes = vec![4, 0, 0, 0, 0, 0];
    for _ in 0..10_000 {
        bytes.extend_from_slice(&[0, 0, 0, 2, 1, 0]);
    }
    let bytes = with_pdu_length(bytes);
    let limits = DecodeLimits {
        max_pdata_length: 0,
        ..DecodeLimits::default()
    };
    let Ok(Some(Pdu::PData(pdata))) = decode_from(&mut BytesMut::from(&bytes[..]), &limits) else {
        panic!("expected P-DATA-TF")
    };
    assert_eq!(pdata.pdvs.len(), 10_000);
}

#[test]
fn malformed_pdata() {
    let cases: [(&[u8], &str); 4] = [
        (b"\x04\x00\x00\x00\x00\x00", "no PDV"),
        (
            b"\x04\x00\x00\x00\x00\x05\x00\x00\x00\x01\x01",
            "PDV length 1",
        ),
        (
            b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x05\x01\x03\x00\x00",
            "PDV overruns the PDU",
        ),
        (
            b"\x04\x00\x00\x00\x00\x03\x00\x00\x00",
            "PDV length field cut",
        ),
    ];
    for (bytes, what) in cases {
        assert!(try_decode(bytes).is_err(), "{what}");
    }
    // Control bits other than 0 (command) and 1 (last) are ignored.
    let Pdu::PData(pdata) = decode(b"\x04\x00\x00\x00\x00\x07\x00\x00\x00\x03\x05\xFD\x42") else {
        panic!()
    };
    let pdv = &pdata.pdvs[0];
    assert_eq!(
        (
            pdv.presentation_context_id,
            pdv.is_command,
            pdv.is_last,
            &pdv.data[..]
        ),
        (5, true, false, &[0x42][..])
    );
}

/// xorshift64*: a small deterministic PRNG, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    // Short PDUs only grow, so that every slice below is in range.
    let mutation = if len < 8 { 4 } else { rng.below(7) };
    match mutation {
        0 => bytes[rng.below(len)] ^= 1 << rng.below(8),
        1 => bytes[rng.below(len)] = rng.next() as u8,
        2 => bytes[rng.below(len)] = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF][rng.below(6)],
        3 => {
            let at = 6 + rng.below(len - 6);
            let count = 1 + rng.below(8.min(len - at));
            bytes.drain(at..at + count);
        }
        4 => {
            let at = 6 + rng.below(len - 5);
            for _ in 0..1 + rng.below(8) {
                bytes.insert(at, rng.next() as u8);
            }
        }
        5 => {
            // Duplicate a slice: repeats items and sub-items.
            let from = 6 + rng.below(len - 6);
            let to = (from + 1 + rng.below(64)).min(len);
            let chunk = bytes[from..to].to_vec();
            let at = 6 + rng.below(len - 5);
            bytes.splice(at..at, chunk);
        }
        _ => {
            // Set a big-endian u16 somewhere to a near-boundary value: hits item length fields.
            let at = rng.below(len - 1);
            let value: u16 = [0, 1, 2, 3, 4, 0xFF, 0xFFFF][rng.below(7)];
            bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
        }
    }
}

#[test]
fn mutated_fixtures_never_panic_and_round_trip_when_accepted() {
    let fixtures = all_fixtures();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused, mut unsendable) = (0, 0, 0);
    for round in 0..20_000 {
        let (name, original) = &fixtures[round % fixtures.len()];
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut bytes);
        }
        // Most rounds keep the header length honest so that the body parser gets exercised.
        if rng.below(8) != 0 {
            bytes = with_pdu_length(bytes);
        }
        match try_decode(&bytes) {
            Ok(Some(pdu)) => {
                accepted += 1;
                if !round_trips_or_is_unsendable(
                    &pdu,
                    &format!("round {round} from {name}: {bytes:02x?}"),
                ) {
                    unsendable += 1;
                }
            }
            Ok(None) => {}
            Err(_) => refused += 1,
        }
    }
    eprintln!("{accepted} accepted ({unsendable} not re-encodable), {refused} refused");
    assert!(accepted > 3_000, "only {accepted} mutants decoded");
    assert!(refused > 5_000, "only {refused} mutants refused");
    assert!(
        unsendable < accepted / 4,
        "{unsendable} of {accepted} decoded mutants could not be re-encoded"
    );
}
