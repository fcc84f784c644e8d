//! Fuzzes the sans-IO association (PS3.8 §9.2, PS3.7): bytes from a hostile peer fed to an
//! acceptor, cut into reads as the input says, with time passing and the user answering every
//! request. Nothing may panic, everything queued stays bounded, and once the association has
//! ended it stays ended.
//!
//! Input format: the first byte picks whether the input is prefixed with a valid A-ASSOCIATE-RQ
//! (so that the fuzzer starts in Sta6 most of the time); then, repeated, a control byte (bits
//! 0–5: how many bytes to read next, times 37; bit 6: let a second pass; bit 7: answer the
//! pending requests) and that many bytes.

#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use dimsum_dimse::association::{Association, Config, Event};
use dimsum_dimse::message::Message;
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AcceptorPolicy, AssociationRequest, ProposedContext, SupportedContext};
use dimsum_ul::pdu::{AsyncOpsWindow, Pdu};
use libfuzzer_sys::fuzz_target;

const VERIFICATION: &str = "1.2.840.10008.1.1";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const IMPLICIT: &str = "1.2.840.10008.1.2";

fn policy() -> AcceptorPolicy {
    AcceptorPolicy::new("SCP")
        .support(SupportedContext::new(VERIFICATION, [IMPLICIT]))
        .support(SupportedContext::new(CT, [IMPLICIT]).with_roles(true, true))
        .support(SupportedContext::new(FIND, [IMPLICIT]))
        .with_async_ops_window(AsyncOpsWindow {
            max_operations_invoked: 2,
            max_operations_performed: 4,
        })
}

fn request_bytes() -> Vec<u8> {
    let request = AssociationRequest::new("FUZZ", "SCP")
        .with_context(ProposedContext::new(VERIFICATION, [IMPLICIT]))
        .with_context(ProposedContext::new(CT, [IMPLICIT]))
        .with_context(ProposedContext::new(FIND, [IMPLICIT]))
        .with_role(CT, true, true)
        .with_async_ops_window(AsyncOpsWindow {
            max_operations_invoked: 0,
            max_operations_performed: 0,
        });
    let mut bytes = BytesMut::new();
    if let Ok(rq) = request.to_pdu() {
        let _ = Pdu::AssociateRq(rq).encode(&mut bytes);
    }
    bytes.to_vec()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut input = if first & 1 == 1 { request_bytes() } else { Vec::new() };
    input.extend_from_slice(rest);
    let mut now = Instant::now();
    let mut association = Association::accept(Config::default(), now);
    let policy = policy();
    let mut buffer = BytesMut::new();
    let mut pending: Vec<(u8, Message)> = Vec::new();
    let mut ended = false;
    let mut rest = input.as_slice();
    while let [control, tail @ ..] = rest {
        let take = (usize::from(control & 0x3F) * 37 + 1).min(tail.len());
        let (chunk, next) = tail.split_at(take);
        rest = next;
        buffer.extend_from_slice(chunk);
        association.handle_input(&mut buffer, now);
        if control & 0x40 != 0 {
            now += Duration::from_secs(1);
            association.handle_timeout(now);
        }
        while let Some(event) = association.poll_event() {
            assert!(!ended, "an event after the end: {event:?}");
            match event {
                Event::AssociationRequested(rq) => {
                    let _ = association.respond(policy.evaluate(&rq), now);
                }
                Event::Request {
                    presentation_context_id,
                    message,
                    ..
                } => pending.push((presentation_context_id, message)),
                Event::Ended(_) => ended = true,
                _ => {}
            }
        }
        if control & 0x80 != 0 {
            for (context, request) in pending.drain(..) {
                if let Some(response) = request.response_with_status(Status::SUCCESS) {
                    let _ = association.send_message(context, &response, now);
                }
            }
        }
        // What a hostile peer can make us hold stays bounded.
        assert!(association.transmit_backlog() < 1 << 20);
        assert!(pending.len() <= 16);
        while let Some(bytes) = association.poll_transmit() {
            association.handle_transmitted(bytes.len(), now);
        }
        if association.is_closed() {
            break;
        }
    }
});
