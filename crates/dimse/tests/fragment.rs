//! Splitting into P-DATA-TF PDUs at several maximum PDU lengths and payload sizes, checked by
//! parsing the PDUs back by hand (PS3.8 §9.3.5, Annex E).

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use dimsum_dimse::fragment::{
    PDATA_HEADER_LEN, encode_command, encode_pdata_chunk, encode_pdata_pdus, max_pdv_data_len,
    write_pdata_header,
};
use dimsum_dimse::{Assembled, Assembler};
use dimsum_ul::pdu::Pdv;

/// Parses a run of single-PDV P-DATA-TF PDUs, checking each header and the peer's limit.
fn parse_pdus(mut bytes: &[u8], peer_max_pdu: u32) -> Vec<Pdv> {
    let limit = if peer_max_pdu == 0 {
        1024 * 1024
    } else {
        peer_max_pdu as usize
    };
    let mut pdvs = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[0], 0x04, "P-DATA-TF type");
        assert_eq!(bytes[1], 0, "reserved");
        let pdu_len = u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize;
        assert!(
            pdu_len <= limit,
            "PDU length {pdu_len} above the peer's {limit}"
        );
        let item_len = u32::from_be_bytes(bytes[6..10].try_into().unwrap()) as usize;
        assert_eq!(item_len + 4, pdu_len, "one PDV per PDU");
        let control = bytes[11];
        assert_eq!(control & !0x03, 0, "reserved control bits are zero");
        pdvs.push(Pdv {
            presentation_context_id: bytes[10],
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            data: Bytes::copy_from_slice(&bytes[12..6 + pdu_len]),
        });
        bytes = &bytes[6 + pdu_len..];
    }
    pdvs
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|index| (index % 251) as u8).collect()
}

#[test]
fn sizes_around_the_fragment_boundary() {
    for peer_max_pdu in [4096u32, 16_384, 0] {
        let max = max_pdv_data_len(peer_max_pdu);
        let cases = [
            (0, 1),
            (1, 1),
            (max - 1, 1),
            (max, 1),
            (max + 1, 2),
            (3 * max, 3),
            (3 * max + 1, 4),
        ];
        for (len, expected_pdus) in cases {
            let data = payload(len);
            let mut out = BytesMut::new();
            let written = encode_pdata_pdus(5, false, &data, peer_max_pdu, &mut out).unwrap();
            assert_eq!(
                written, expected_pdus,
                "max PDU {peer_max_pdu}, {len} bytes"
            );
            let pdvs = parse_pdus(&out, peer_max_pdu);
            assert_eq!(pdvs.len(), expected_pdus);
            assert_eq!(out.len(), len + PDATA_HEADER_LEN * expected_pdus);
            for (index, pdv) in pdvs.iter().enumerate() {
                assert_eq!(pdv.presentation_context_id, 5);
                assert!(!pdv.is_command);
                assert_eq!(pdv.is_last, index + 1 == pdvs.len());
                if index + 1 < pdvs.len() {
                    assert_eq!(pdv.data.len(), max, "all but the last fragment are full");
                }
            }
            let joined: Vec<u8> = pdvs
                .iter()
                .flat_map(|pdv| pdv.data.iter().copied())
                .collect();
            assert_eq!(joined, data);
        }
    }
}

#[test]
fn chunked_data_set_flags_only_the_end() {
    let data = payload(10_000);
    let mut out = BytesMut::new();
    let chunks: Vec<&[u8]> = data.chunks(3_000).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        encode_pdata_chunk(3, false, chunk, index + 1 == chunks.len(), 4096, &mut out).unwrap();
    }
    let pdvs = parse_pdus(&out, 4096);
    // Each 3000-byte chunk fits one PDU; the 1000-byte tail another.
    assert_eq!(pdvs.len(), 4);
    assert_eq!(pdvs.iter().filter(|pdv| pdv.is_last).count(), 1);
    assert!(pdvs.last().unwrap().is_last);
    let joined: Vec<u8> = pdvs
        .iter()
        .flat_map(|pdv| pdv.data.iter().copied())
        .collect();
    assert_eq!(joined, data);
}

#[test]
fn header_for_vectored_writes_matches_the_copying_encoder() {
    let data = payload(100);
    let mut copied = BytesMut::new();
    encode_pdata_pdus(9, true, &data, 16_384, &mut copied).unwrap();
    let mut header = [0u8; PDATA_HEADER_LEN];
    write_pdata_header(&mut header, 9, true, true, data.len()).unwrap();
    assert_eq!(&copied[..PDATA_HEADER_LEN], &header);
    assert_eq!(&copied[PDATA_HEADER_LEN..], data.as_slice());
}

#[test]
fn every_message_fragmented_and_reassembled() {
    for peer_max_pdu in [16u32, 64, 4096, 0] {
        let mut assembler = Assembler::default();
        for message in every_message() {
            let command = encode_command(&message).unwrap();
            let mut out = BytesMut::new();
            encode_pdata_pdus(1, true, &command, peer_max_pdu, &mut out).unwrap();
            let data = payload(if message.has_data_set() { 200 } else { 0 });
            if message.has_data_set() {
                encode_pdata_pdus(1, false, &data, peer_max_pdu, &mut out).unwrap();
            }
            let mut received_message = None;
            let mut received_data = Vec::new();
            for pdv in parse_pdus(&out, peer_max_pdu) {
                match assembler.push(pdv).unwrap() {
                    Some(Assembled::Command { message, .. }) => received_message = Some(message),
                    Some(Assembled::DataFragment { data, .. }) => {
                        received_data.extend_from_slice(&data)
                    }
                    None => {}
                }
            }
            assert_eq!(
                received_message.as_ref(),
                Some(&message),
                "max PDU {peer_max_pdu}"
            );
            assert_eq!(received_data, data);
            assert!(assembler.is_idle());
        }
    }
}
