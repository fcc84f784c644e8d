//! Fuzzes the PDU decoder (PS3.8 §9.3): arbitrary bytes go through `decode_from` with the default
//! limits, as they would from a socket. Nothing may panic, and every PDU that decodes and can be
//! sent must re-encode to bytes that decode to the same value.

#![no_main]

use bytes::BytesMut;
use dimsum_ul::pdu::{DecodeLimits, decode_from};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let mut buf = BytesMut::from(data);
    // Several PDUs may follow each other in one input, as in a stream.
    while let Ok(Some(pdu)) = decode_from(&mut buf, &limits) {
        let mut encoded = BytesMut::new();
        // The decoder accepts text (blank AE titles, empty or long UIDs) that the negotiation
        // refuses and the encoder will not send; only what can be sent is checked further.
        if pdu.encode(&mut encoded).is_err() {
            continue;
        }
        let generous = DecodeLimits {
            max_pdata_length: 0,
            max_unlimited_pdata_length: u32::MAX,
            max_control_pdu_length: u32::MAX,
        };
        let again = decode_from(&mut encoded, &generous);
        assert_eq!(again, Ok(Some(pdu)), "re-encoded PDU decoded differently");
        assert!(encoded.is_empty(), "re-encoded PDU left bytes behind");
    }
});
