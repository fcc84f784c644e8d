//! Scenario tests of the sans-IO association (no sockets, no clock): two associations wired
//! back to back, or one fed raw PDUs, with time advanced by hand.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dimsum_dimse::association::{
    AbortCause, Association, Config, Ending, Event, ProtocolViolation, SendError, Timeouts, Timer,
};
use dimsum_dimse::fragment;
use dimsum_dimse::message::*;
use dimsum_dimse::{Message, Priority, Status};
use dimsum_ul::fsm::State;
use dimsum_ul::negotiation::{
    AcceptorPolicy, AssociationRequest, ProposedContext, SupportedContext,
};
use dimsum_ul::pdu::{
    self, Abort, AbortReason, AbortSource, AsyncOpsWindow, DecodeLimits, PData, Pdu, Pdv,
};

const VERIFICATION: &str = "1.2.840.10008.1.1";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const STUDY_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const IMPLICIT: &str = "1.2.840.10008.1.2";

fn timeouts() -> Timeouts {
    Timeouts {
        artim: Duration::from_secs(2),
        acse: Some(Duration::from_secs(3)),
        dimse: Some(Duration::from_secs(4)),
        idle: Some(Duration::from_secs(10)),
        write: Some(Duration::from_secs(5)),
    }
}

fn config() -> Config {
    Config {
        timeouts: timeouts(),
        ..Config::default()
    }
}

fn request() -> AssociationRequest {
    AssociationRequest::new("SCU", "SCP")
        .with_context(ProposedContext::new(VERIFICATION, [IMPLICIT]))
        .with_context(ProposedContext::new(CT, [IMPLICIT]))
        .with_context(ProposedContext::new(STUDY_FIND, [IMPLICIT]))
}

fn policy() -> AcceptorPolicy {
    AcceptorPolicy::new("SCP")
        .support(SupportedContext::new(VERIFICATION, [IMPLICIT]))
        .support(SupportedContext::new(CT, [IMPLICIT]))
        .support(SupportedContext::new(STUDY_FIND, [IMPLICIT]))
}

const ECHO_CONTEXT: u8 = 1;
const CT_CONTEXT: u8 = 3;
const FIND_CONTEXT: u8 = 5;

/// Both ends of an association and the time they share.
struct Pair {
    scu: Association,
    scp: Association,
    now: Instant,
    scu_events: Vec<Event>,
    scp_events: Vec<Event>,
    /// Every PDU each side sent, as the other decoded it.
    scu_sent: Vec<Pdu>,
    scp_sent: Vec<Pdu>,
}

/// Moves every transmitted byte from one association to the other, and collects events, until
/// nothing moves any more.
impl Pair {
    fn new(request: AssociationRequest, policy: &AcceptorPolicy) -> Pair {
        let now = Instant::now();
        let mut scu = Association::request(request, config(), now).expect("valid request");
        let scp = Association::accept(config(), now);
        scu.handle_connected(now);
        let mut pair = Pair {
            scu,
            scp,
            now,
            scu_events: Vec::new(),
            scp_events: Vec::new(),
            scu_sent: Vec::new(),
            scp_sent: Vec::new(),
        };
        pair.pump();
        let rq = match pair.scp_events.pop() {
            Some(Event::AssociationRequested(rq)) => rq,
            other => panic!("expected the association request, got {other:?}"),
        };
        pair.scp
            .respond(policy.evaluate(&rq), now)
            .expect("respond");
        pair.pump();
        assert_eq!(pair.scp_events.pop(), Some(Event::Established));
        assert_eq!(pair.scu_events.pop(), Some(Event::Established));
        pair
    }

    fn established() -> Pair {
        Pair::new(request(), &policy())
    }

    fn pump(&mut self) {
        loop {
            let a = transfer(&mut self.scu, &mut self.scp, self.now, &mut self.scu_sent);
            let b = transfer(&mut self.scp, &mut self.scu, self.now, &mut self.scp_sent);
            while let Some(event) = self.scu.poll_event() {
                self.scu_events.push(event);
            }
            while let Some(event) = self.scp.poll_event() {
                self.scp_events.push(event);
            }
            if !a && !b {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.scu.handle_timeout(self.now);
        self.scp.handle_timeout(self.now);
        self.pump();
    }
}

/// Writes everything `from` has to send into `to`; true if anything moved.
fn transfer(
    from: &mut Association,
    to: &mut Association,
    now: Instant,
    log: &mut Vec<Pdu>,
) -> bool {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = from.poll_transmit() {
        from.handle_transmitted(chunk.len(), now);
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return false;
    }
    log.extend(decode_all(&bytes));
    to.handle_input(&mut bytes, now);
    true
}

fn decode_all(bytes: &[u8]) -> Vec<Pdu> {
    let mut buf = BytesMut::from(bytes);
    let limits = DecodeLimits {
        max_pdata_length: 0,
        ..DecodeLimits::default()
    };
    let mut pdus = Vec::new();
    while let Ok(Some(pdu)) = pdu::decode_from(&mut buf, &limits) {
        pdus.push(pdu);
    }
    pdus
}

/// Everything `association` wants to send, decoded.
fn drain(association: &mut Association, now: Instant) -> Vec<Pdu> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = association.poll_transmit() {
        association.handle_transmitted(chunk.len(), now);
        bytes.extend_from_slice(&chunk);
    }
    decode_all(&bytes)
}

fn events(association: &mut Association) -> Vec<Event> {
    std::iter::from_fn(|| association.poll_event()).collect()
}

fn feed(association: &mut Association, pdu: &Pdu, now: Instant) {
    let mut bytes = BytesMut::new();
    pdu.encode(&mut bytes).expect("encodable");
    association.handle_input(&mut bytes, now);
}

fn echo_rq(message_id: u16) -> Message {
    CEchoRq {
        message_id,
        affected_sop_class_uid: VERIFICATION.into(),
        data_set_present: false,
    }
    .into()
}

fn store_rq(message_id: u16, sop_class: &str) -> Message {
    CStoreRq {
        message_id,
        affected_sop_class_uid: sop_class.into(),
        affected_sop_instance_uid: "1.2.3.4".into(),
        priority: Priority::Medium,
        move_originator_ae_title: None,
        move_originator_message_id: None,
        data_set_present: true,
    }
    .into()
}

fn find_rq(message_id: u16) -> Message {
    CFindRq {
        message_id,
        affected_sop_class_uid: STUDY_FIND.into(),
        priority: Priority::Medium,
        data_set_present: true,
    }
    .into()
}

/// The P-DATA-TF PDUs of a command, as a peer would send them.
fn command_pdu(context: u8, message: &Message) -> Pdu {
    Pdu::PData(PData {
        pdvs: vec![Pdv {
            presentation_context_id: context,
            is_command: true,
            is_last: true,
            data: fragment::encode_command(message).expect("encodable"),
        }],
    })
}

fn data_pdu(context: u8, data: &'static [u8], is_last: bool) -> Pdu {
    Pdu::PData(PData {
        pdvs: vec![Pdv {
            presentation_context_id: context,
            is_command: false,
            is_last,
            data: Bytes::from_static(data),
        }],
    })
}

fn ended(events: &[Event]) -> Option<&Ending> {
    events.iter().find_map(|event| match event {
        Event::Ended(ending) => Some(ending),
        _ => None,
    })
}

fn aborts(pdus: &[Pdu]) -> Vec<Abort> {
    pdus.iter()
        .filter_map(|pdu| match pdu {
            Pdu::Abort(abort) => Some(*abort),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Establishment, messages, release
// ------------------------------------------------------------------------------------------

#[test]
fn an_echo_goes_and_its_response_is_routed_back() {
    let mut pair = Pair::established();
    let id = pair.scu.next_message_id();
    pair.scu
        .send_message(ECHO_CONTEXT, &echo_rq(id), pair.now)
        .expect("sent");
    assert_eq!(pair.scu.invoked_operations(), (1, 1));
    pair.pump();
    let Some(Event::Request {
        presentation_context_id,
        message: Message::CEchoRq(rq),
        ..
    }) = pair.scp_events.pop()
    else {
        panic!("expected the echo request");
    };
    assert_eq!(presentation_context_id, ECHO_CONTEXT);
    pair.scp
        .send_message(
            ECHO_CONTEXT,
            &CEchoRsp::new(rq.message_id, Status::SUCCESS).into(),
            pair.now,
        )
        .expect("answered");
    pair.pump();
    assert!(matches!(
        pair.scu_events.pop(),
        Some(Event::Response {
            message: Message::CEchoRsp(CEchoRsp { message_id_being_responded_to, .. }),
            is_final: true,
            ..
        }) if message_id_being_responded_to == id
    ));
    assert_eq!(pair.scu.invoked_operations(), (0, 1));
    // The same request answered twice is refused locally: nothing awaits it.
    assert_eq!(
        pair.scp.send_message(
            ECHO_CONTEXT,
            &CEchoRsp::new(rq.message_id, Status::SUCCESS).into(),
            pair.now
        ),
        Err(SendError::NoSuchOperation {
            field: CommandField::CEchoRsp,
            message_id: id
        })
    );
}

#[test]
fn a_release_by_the_requestor_ends_both_sides_released() {
    let mut pair = Pair::established();
    pair.scu.release(pair.now).expect("release");
    pair.pump();
    assert_eq!(ended(&pair.scu_events), Some(&Ending::Released));
    assert_eq!(ended(&pair.scp_events), Some(&Ending::Released));
    assert_eq!(pair.scu_sent.last(), Some(&Pdu::ReleaseRq));
    assert_eq!(pair.scp_sent.last(), Some(&Pdu::ReleaseRp));
    assert!(
        pair.scu.is_closed(),
        "AR-3 closes the requestor's transport"
    );
    // The acceptor waits in Sta13 for the close (ARTIM bounds it).
    assert_eq!(pair.scp.state(), State::Sta13);
    pair.scp.handle_transport_closed(pair.now);
    assert!(pair.scp.is_closed());
}

#[test]
fn a_release_waits_for_the_response_the_acceptor_still_owes() {
    let mut pair = Pair::established();
    let id = pair.scu.next_message_id();
    pair.scu
        .send_message(ECHO_CONTEXT, &echo_rq(id), pair.now)
        .expect("sent");
    pair.pump();
    // A (misbehaving) requestor releases before its answer came.
    feed(&mut pair.scp, &Pdu::ReleaseRq, pair.now);
    assert_eq!(pair.scp.state(), State::Sta8);
    assert!(drain(&mut pair.scp, pair.now).is_empty(), "no RP yet");
    // AR-7: the response still goes out in Sta8, and then the release is confirmed.
    pair.scp
        .send_message(
            ECHO_CONTEXT,
            &CEchoRsp::new(id, Status::SUCCESS).into(),
            pair.now,
        )
        .expect("answered in Sta8");
    let sent = drain(&mut pair.scp, pair.now);
    assert!(matches!(sent.first(), Some(Pdu::PData(_))));
    assert_eq!(sent.last(), Some(&Pdu::ReleaseRp));
    assert_eq!(ended(&events(&mut pair.scp)), Some(&Ending::Released));
}

#[test]
fn a_release_collision_is_resolved_on_both_sides() {
    let mut pair = Pair::established();
    // Both ask at once: each A-RELEASE-RQ crosses the other.
    pair.scu.release(pair.now).expect("requestor release");
    pair.scp.release(pair.now).expect("acceptor release");
    let from_scu = drain(&mut pair.scu, pair.now);
    let from_scp = drain(&mut pair.scp, pair.now);
    assert_eq!(from_scu, vec![Pdu::ReleaseRq]);
    assert_eq!(from_scp, vec![Pdu::ReleaseRq]);
    for pdu in &from_scp {
        feed(&mut pair.scu, pdu, pair.now);
    }
    for pdu in &from_scu {
        feed(&mut pair.scp, pdu, pair.now);
    }
    // Requestor: AR-8 (Sta9), AR-9: sends its A-RELEASE-RP and awaits the peer's (Sta11).
    assert_eq!(pair.scu.state(), State::Sta11);
    // Acceptor: AR-8 (Sta10): awaits the requestor's A-RELEASE-RP first.
    assert_eq!(pair.scp.state(), State::Sta10);
    let rp_from_scu = drain(&mut pair.scu, pair.now);
    assert_eq!(rp_from_scu, vec![Pdu::ReleaseRp]);
    assert!(drain(&mut pair.scp, pair.now).is_empty());
    feed(&mut pair.scp, &Pdu::ReleaseRp, pair.now);
    // AR-10 then AR-4: the acceptor answers and waits for the close (Sta13).
    assert_eq!(pair.scp.state(), State::Sta13);
    let rp_from_scp = drain(&mut pair.scp, pair.now);
    assert_eq!(rp_from_scp, vec![Pdu::ReleaseRp]);
    feed(&mut pair.scu, &Pdu::ReleaseRp, pair.now);
    // AR-3: released, transport closed.
    assert!(pair.scu.is_closed());
    assert_eq!(ended(&events(&mut pair.scu)), Some(&Ending::Released));
    assert_eq!(ended(&events(&mut pair.scp)), Some(&Ending::Released));
}

#[test]
fn a_protocol_version_without_bit_0_is_rejected_by_the_provider_itself() {
    let now = Instant::now();
    let mut scp = Association::accept(config(), now);
    let mut rq = request().to_pdu().expect("rq");
    rq.protocol_version = 2;
    feed(&mut scp, &Pdu::AssociateRq(rq), now);
    // AE-6, not acceptable: A-ASSOCIATE-RJ without asking the user, then ARTIM (Sta13).
    let sent = drain(&mut scp, now);
    let [Pdu::AssociateRj(rejection)] = sent.as_slice() else {
        panic!("expected one A-ASSOCIATE-RJ, got {sent:?}");
    };
    let events = events(&mut scp);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::AssociationRequested(_))),
        "the user was asked: {events:?}"
    );
    assert_eq!(
        ended(&events),
        Some(&Ending::Rejected {
            rejection: *rejection,
            by_peer: false
        })
    );
    assert_eq!(scp.state(), State::Sta13);
    scp.handle_timeout(now + Duration::from_secs(2));
    assert!(scp.is_closed(), "ARTIM closes after the rejection");
}

#[test]
fn a_rejection_by_the_acceptor_reaches_the_requestor() {
    let now = Instant::now();
    let mut scu = Association::request(request(), config(), now).expect("request");
    let mut scp = Association::accept(config(), now);
    scu.handle_connected(now);
    for pdu in drain(&mut scu, now) {
        feed(&mut scp, &pdu, now);
    }
    let policy = AcceptorPolicy::new("OTHER").require_called_ae_title(true);
    let Some(Event::AssociationRequested(rq)) = scp.poll_event() else {
        panic!("expected the request");
    };
    scp.respond(policy.evaluate(&rq), now).expect("respond");
    for pdu in drain(&mut scp, now) {
        feed(&mut scu, &pdu, now);
    }
    assert!(matches!(
        ended(&events(&mut scu)),
        Some(Ending::Rejected { by_peer: true, .. })
    ));
    assert!(scu.is_closed(), "AE-4 closes the transport");
}

// ------------------------------------------------------------------------------------------
// Aborts and DIMSE routing
// ------------------------------------------------------------------------------------------

#[test]
fn an_abort_arriving_during_a_long_send_ends_the_sender_at_once() {
    let mut pair = Pair::established();
    let id = pair.scu.next_message_id();
    pair.scu
        .send_message(CT_CONTEXT, &store_rq(id, CT), pair.now)
        .expect("command");
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    pair.scu
        .send_data(chunk.clone(), false, pair.now)
        .expect("first chunk");
    pair.pump();
    // The receiver gives up half-way.
    pair.scp.abort(pair.now);
    pair.pump();
    assert_eq!(
        ended(&pair.scu_events),
        Some(&Ending::AbortedByPeer(Abort {
            source: AbortSource::ServiceUser,
            reason: AbortReason::NotSpecified
        }))
    );
    assert!(pair.scu.is_closed(), "AA-3 closes the transport");
    assert_eq!(
        pair.scu.send_data(chunk, false, pair.now),
        Err(SendError::Ended)
    );
}

#[test]
fn a_cancel_between_responses_goes_to_the_operation_it_names() {
    let mut pair = Pair::established();
    let id = pair.scu.next_message_id();
    pair.scu
        .send_message(FIND_CONTEXT, &find_rq(id), pair.now)
        .expect("find");
    pair.scu
        .send_data(
            Bytes::from_static(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "),
            true,
            pair.now,
        )
        .expect("identifier");
    pair.pump();
    assert!(matches!(
        pair.scp_events.as_slice(),
        [Event::Request { .. }, Event::Data { is_last: true, .. }]
    ));
    pair.scp_events.clear();
    let pending = Message::from(CFindRsp {
        data_set_present: true,
        ..CFindRsp::new(id, Status::PENDING)
    });
    pair.scp
        .send_message(FIND_CONTEXT, &pending, pair.now)
        .expect("pending");
    pair.scp
        .send_data(Bytes::from_static(b"match"), true, pair.now)
        .expect("match");
    pair.pump();
    assert!(matches!(
        pair.scu_events.as_slice(),
        [
            Event::Response {
                is_final: false,
                ..
            },
            Event::Data { is_last: true, .. }
        ]
    ));
    // The requestor cancels between two responses.
    pair.scu
        .send_message(
            FIND_CONTEXT,
            &CCancelRq {
                message_id_being_responded_to: id,
                data_set_present: false,
            }
            .into(),
            pair.now,
        )
        .expect("cancel");
    pair.pump();
    assert_eq!(
        pair.scp_events,
        vec![Event::CancelRequested { message_id: id }],
        "the cancel is not a new request"
    );
    pair.scp
        .send_message(
            FIND_CONTEXT,
            &CFindRsp::new(id, Status::CANCEL).into(),
            pair.now,
        )
        .expect("final");
    pair.pump();
    assert!(matches!(
        pair.scu_events.last(),
        Some(Event::Response { is_final: true, message: Message::CFindRsp(rsp), .. })
            if rsp.status == Status::CANCEL
    ));
    assert_eq!(pair.scu.invoked_operations().0, 0);
    // A cancel for an operation that is over is ignored (PS3.7 §9.3.2.3).
    pair.scp_events.clear();
    feed(
        &mut pair.scp,
        &command_pdu(
            FIND_CONTEXT,
            &CCancelRq {
                message_id_being_responded_to: id,
                data_set_present: false,
            }
            .into(),
        ),
        pair.now,
    );
    assert!(events(&mut pair.scp).is_empty());
    assert_eq!(pair.scp.state(), State::Sta6);
}

#[test]
fn a_response_with_an_unknown_message_id_aborts() {
    let mut pair = Pair::established();
    let response = CEchoRsp::new(42, Status::SUCCESS).into();
    feed(
        &mut pair.scu,
        &command_pdu(ECHO_CONTEXT, &response),
        pair.now,
    );
    let sent = drain(&mut pair.scu, pair.now);
    assert_eq!(
        aborts(&sent),
        vec![Abort {
            source: AbortSource::ServiceProvider,
            reason: AbortReason::UnexpectedPduParameter
        }]
    );
    assert_eq!(
        ended(&events(&mut pair.scu)),
        Some(&Ending::Aborted(AbortCause::Protocol(
            ProtocolViolation::UnknownResponse {
                field: CommandField::CEchoRsp,
                message_id: 42
            }
        )))
    );
}

#[test]
fn a_response_of_the_wrong_type_aborts() {
    let mut pair = Pair::established();
    let id = pair.scu.next_message_id();
    pair.scu
        .send_message(ECHO_CONTEXT, &echo_rq(id), pair.now)
        .expect("sent");
    pair.pump();
    let wrong: Message = CStoreRsp::new(id, Status::SUCCESS).into();
    feed(&mut pair.scu, &command_pdu(ECHO_CONTEXT, &wrong), pair.now);
    assert!(matches!(
        ended(&events(&mut pair.scu)),
        Some(Ending::Aborted(AbortCause::Protocol(
            ProtocolViolation::ResponseTypeMismatch { .. }
        )))
    ));
}

#[test]
fn a_pending_status_for_a_store_aborts() {
    let mut pair = Pair::established();
    let id = pair.scu.next_message_id();
    pair.scu
        .send_message(CT_CONTEXT, &store_rq(id, CT), pair.now)
        .expect("command");
    pair.scu
        .send_data(Bytes::from_static(b"data"), true, pair.now)
        .expect("data");
    pair.pump();
    let pending: Message = CStoreRsp::new(id, Status::PENDING).into();
    // Our own side refuses to send it…
    assert_eq!(
        pair.scp.send_message(CT_CONTEXT, &pending, pair.now),
        Err(SendError::PendingNotAllowed {
            field: CommandField::CStoreRsp
        })
    );
    // …and a peer that sends it is aborted.
    feed(&mut pair.scu, &command_pdu(CT_CONTEXT, &pending), pair.now);
    assert!(matches!(
        ended(&events(&mut pair.scu)),
        Some(Ending::Aborted(AbortCause::Protocol(
            ProtocolViolation::PendingNotAllowed { .. }
        )))
    ));
}

#[test]
fn a_peer_exceeding_the_window_is_aborted() {
    // No window negotiated: one operation at a time.
    let mut pair = Pair::established();
    feed(
        &mut pair.scp,
        &command_pdu(ECHO_CONTEXT, &echo_rq(1)),
        pair.now,
    );
    assert!(matches!(
        events(&mut pair.scp).as_slice(),
        [Event::Request { .. }]
    ));
    feed(
        &mut pair.scp,
        &command_pdu(ECHO_CONTEXT, &echo_rq(2)),
        pair.now,
    );
    assert_eq!(
        ended(&events(&mut pair.scp)),
        Some(&Ending::Aborted(AbortCause::Protocol(
            ProtocolViolation::WindowExceeded { limit: 1 }
        )))
    );
    assert_eq!(
        aborts(&drain(&mut pair.scp, pair.now)),
        vec![Abort {
            source: AbortSource::ServiceProvider,
            reason: AbortReason::UnexpectedPduParameter
        }]
    );
}

#[test]
fn our_requests_are_held_to_the_negotiated_window() {
    let request = request().with_async_ops_window(AsyncOpsWindow {
        max_operations_invoked: 3,
        max_operations_performed: 1,
    });
    let policy = policy().with_async_ops_window(AsyncOpsWindow {
        max_operations_invoked: 1,
        max_operations_performed: 2,
    });
    let mut pair = Pair::new(request, &policy);
    // AC: the requestor may invoke min(3, 2) = 2.
    assert_eq!(pair.scu.invoked_operations(), (0, 2));
    assert_eq!(pair.scp.performed_operations(), (0, 2));
    for id in [1, 2] {
        pair.scu
            .send_message(ECHO_CONTEXT, &echo_rq(id), pair.now)
            .expect("within the window");
    }
    assert_eq!(
        pair.scu.send_message(ECHO_CONTEXT, &echo_rq(3), pair.now),
        Err(SendError::WindowFull { limit: 2 })
    );
    assert!(!pair.scu.can_invoke());
    pair.pump();
    // Both outstanding at once on the wire, and the acceptor performs both.
    assert_eq!(
        pair.scp_events
            .iter()
            .filter(|e| matches!(e, Event::Request { .. }))
            .count(),
        2
    );
    pair.scp
        .send_message(
            ECHO_CONTEXT,
            &CEchoRsp::new(2, Status::SUCCESS).into(),
            pair.now,
        )
        .expect("answer the second first");
    pair.pump();
    assert!(pair.scu.can_invoke());
    pair.scu
        .send_message(ECHO_CONTEXT, &echo_rq(3), pair.now)
        .expect("room again");
    // Message IDs in use are skipped.
    assert_ne!(pair.scu.next_message_id(), 1);
}

#[test]
fn a_request_on_a_context_that_was_not_accepted_is_refused_locally_and_aborted_remotely() {
    let mut pair = Pair::new(
        request(),
        &AcceptorPolicy::new("SCP").support(SupportedContext::new(VERIFICATION, [IMPLICIT])),
    );
    assert_eq!(
        pair.scu
            .send_message(CT_CONTEXT, &store_rq(1, CT), pair.now),
        Err(SendError::NoPresentationContext(CT_CONTEXT))
    );
    feed(
        &mut pair.scp,
        &command_pdu(CT_CONTEXT, &store_rq(1, CT)),
        pair.now,
    );
    assert_eq!(
        ended(&events(&mut pair.scp)),
        Some(&Ending::Aborted(AbortCause::Protocol(
            ProtocolViolation::ContextNotAccepted(CT_CONTEXT)
        )))
    );
}

#[test]
fn a_sop_class_that_does_not_match_its_context_is_answered_0122_after_its_data_set() {
    let mut pair = Pair::established();
    let mr = "1.2.840.10008.5.1.4.1.1.4";
    assert!(matches!(
        pair.scu
            .send_message(CT_CONTEXT, &store_rq(1, mr), pair.now),
        Err(SendError::SopClassMismatch { .. })
    ));
    // A peer that does it anyway: the command, then two data fragments.
    feed(
        &mut pair.scp,
        &command_pdu(CT_CONTEXT, &store_rq(9, mr)),
        pair.now,
    );
    feed(
        &mut pair.scp,
        &data_pdu(CT_CONTEXT, b"part", false),
        pair.now,
    );
    assert!(events(&mut pair.scp).is_empty(), "nothing for the user");
    assert!(
        drain(&mut pair.scp, pair.now).is_empty(),
        "no answer before the data set ends"
    );
    feed(
        &mut pair.scp,
        &data_pdu(CT_CONTEXT, b"rest", true),
        pair.now,
    );
    let sent = drain(&mut pair.scp, pair.now);
    let [Pdu::PData(pdata)] = sent.as_slice() else {
        panic!("expected the refusal, got {sent:?}");
    };
    let command = dimsum_dimse::CommandSet::decode(
        &pdata.pdvs[0].data,
        &dimsum_dimse::CommandLimits::default(),
    )
    .expect("command");
    let Ok(Message::CStoreRsp(rsp)) = Message::from_command_set(&command) else {
        panic!("expected a C-STORE-RSP");
    };
    assert_eq!(rsp.message_id_being_responded_to, 9);
    assert_eq!(rsp.status, Status::SOP_CLASS_NOT_SUPPORTED);
    assert!(
        rsp.error_comment
            .is_some_and(|c| c.contains("does not match"))
    );
    assert!(matches!(
        events(&mut pair.scp).as_slice(),
        [Event::Refused { message_id: 9, .. }]
    ));
    assert_eq!(pair.scp.state(), State::Sta6);
    assert_eq!(pair.scp.performed_operations().0, 0);
}

#[test]
fn roles_decide_who_may_send_a_store() {
    // Without a role item, the acceptor may not store to the requestor (C-GET's sub-operation).
    let mut pair = Pair::established();
    assert_eq!(
        pair.scp
            .send_message(CT_CONTEXT, &store_rq(1, CT), pair.now),
        Err(SendError::RoleNotNegotiated {
            field: CommandField::CStoreRq,
            context_id: CT_CONTEXT
        })
    );
    // With the requestor proposing SCP for CT and the acceptor granting it, it may.
    let request = request().with_role(CT, true, true);
    let policy = AcceptorPolicy::new("SCP")
        .support(SupportedContext::new(VERIFICATION, [IMPLICIT]))
        .support(SupportedContext::new(CT, [IMPLICIT]).with_roles(true, true));
    let mut pair = Pair::new(request, &policy);
    pair.scp
        .send_message(CT_CONTEXT, &store_rq(1, CT), pair.now)
        .expect("the acceptor stores to the requestor");
    pair.scp
        .send_data(Bytes::from_static(b"data"), true, pair.now)
        .expect("data");
    pair.pump();
    assert!(matches!(
        pair.scu_events.as_slice(),
        [Event::Request { .. }, Event::Data { is_last: true, .. }]
    ));
    // And a requestor without that role refuses such a request by itself.
    let mut pair = Pair::established();
    feed(
        &mut pair.scu,
        &command_pdu(CT_CONTEXT, &store_rq(5, CT)),
        pair.now,
    );
    feed(
        &mut pair.scu,
        &data_pdu(CT_CONTEXT, b"data", true),
        pair.now,
    );
    assert!(matches!(
        events(&mut pair.scu).as_slice(),
        [Event::Refused {
            message_id: 5,
            status: Status::SOP_CLASS_NOT_SUPPORTED,
            ..
        }]
    ));
}

#[test]
fn one_message_at_a_time_on_the_way_out() {
    let mut pair = Pair::established();
    pair.scu
        .send_message(CT_CONTEXT, &store_rq(1, CT), pair.now)
        .expect("command");
    assert_eq!(
        pair.scu.send_message(ECHO_CONTEXT, &echo_rq(2), pair.now),
        Err(SendError::MessageInProgress)
    );
    assert_eq!(
        pair.scu.release(pair.now),
        Err(SendError::MessageInProgress)
    );
    pair.scu
        .send_data(Bytes::from_static(b"all"), true, pair.now)
        .expect("data");
    assert_eq!(
        pair.scu
            .send_data(Bytes::from_static(b"more"), true, pair.now),
        Err(SendError::NoDataSetExpected)
    );
}

#[test]
fn a_large_data_set_is_cut_to_the_peer_maximum_without_copying() {
    let mut pair = Pair::established();
    let peer_max = pair
        .scu
        .negotiated()
        .expect("negotiated")
        .peer_max_pdu_length;
    pair.scu
        .send_message(CT_CONTEXT, &store_rq(1, CT), pair.now)
        .expect("command");
    let data = Bytes::from(vec![5u8; 100_000]);
    pair.scu
        .send_data(data.clone(), true, pair.now)
        .expect("data");
    let mut slices = Vec::new();
    while let Some(chunk) = pair.scu.poll_transmit() {
        slices.push(chunk);
    }
    let total: usize = slices.iter().map(Bytes::len).sum();
    assert!(
        slices
            .iter()
            .any(|slice| data.as_ptr_range().contains(&slice.as_ptr())),
        "the data set went out as slices of the caller's buffer"
    );
    let pdus = decode_all(&slices.concat());
    let fragments: Vec<&Pdv> = pdus
        .iter()
        .filter_map(|pdu| match pdu {
            Pdu::PData(pdata) => pdata.pdvs.first(),
            _ => None,
        })
        .filter(|pdv| !pdv.is_command)
        .collect();
    assert_eq!(
        fragments.len(),
        100_000usize.div_ceil(peer_max as usize - 6)
    );
    assert!(
        fragments
            .iter()
            .all(|pdv| pdv.data.len() + 6 <= peer_max as usize)
    );
    assert_eq!(fragments.iter().filter(|pdv| pdv.is_last).count(), 1);
    assert!(total > 100_000);
}

// ------------------------------------------------------------------------------------------
// Timers
// ------------------------------------------------------------------------------------------

#[test]
fn artim_closes_an_acceptor_that_never_gets_a_request() {
    let now = Instant::now();
    let mut scp = Association::accept(config(), now);
    assert_eq!(scp.poll_timeout(), Some(now + Duration::from_secs(2)));
    scp.handle_timeout(now + Duration::from_millis(1999));
    assert!(!scp.is_closed());
    scp.handle_timeout(now + Duration::from_secs(2));
    assert!(scp.is_closed(), "AA-2 closes the transport");
    assert!(drain(&mut scp, now).is_empty(), "without a PDU");
    assert_eq!(
        ended(&events(&mut scp)),
        Some(&Ending::TimedOut(Timer::Artim))
    );
}

#[test]
fn the_acse_timer_aborts_a_requestor_that_gets_no_answer() {
    let now = Instant::now();
    let mut scu = Association::request(request(), config(), now).expect("request");
    scu.handle_connected(now);
    assert!(matches!(
        drain(&mut scu, now).as_slice(),
        [Pdu::AssociateRq(_)]
    ));
    assert_eq!(scu.poll_timeout(), Some(now + Duration::from_secs(3)));
    scu.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(
        aborts(&drain(&mut scu, now)),
        vec![Abort {
            source: AbortSource::ServiceUser,
            reason: AbortReason::NotSpecified
        }]
    );
    assert_eq!(
        ended(&events(&mut scu)),
        Some(&Ending::TimedOut(Timer::Acse))
    );
    // Then ARTIM waits for the close.
    scu.handle_timeout(now + Duration::from_secs(5));
    assert!(scu.is_closed());
}

#[test]
fn the_acse_timer_also_bounds_the_wait_for_the_release_answer() {
    let mut pair = Pair::established();
    pair.scu.release(pair.now).expect("release");
    drain(&mut pair.scu, pair.now);
    pair.now += Duration::from_secs(3);
    pair.scu.handle_timeout(pair.now);
    assert_eq!(
        ended(&events(&mut pair.scu)),
        Some(&Ending::TimedOut(Timer::Acse))
    );
}

#[test]
fn the_dimse_timer_aborts_a_peer_silent_in_the_middle_of_a_data_set() {
    let mut pair = Pair::established();
    feed(
        &mut pair.scp,
        &command_pdu(CT_CONTEXT, &store_rq(1, CT)),
        pair.now,
    );
    feed(
        &mut pair.scp,
        &data_pdu(CT_CONTEXT, b"first", false),
        pair.now,
    );
    events(&mut pair.scp);
    // Each fragment restarts the clock.
    pair.now += Duration::from_secs(3);
    feed(
        &mut pair.scp,
        &data_pdu(CT_CONTEXT, b"second", false),
        pair.now,
    );
    assert_eq!(
        pair.scp.poll_timeout(),
        Some(pair.now + Duration::from_secs(4))
    );
    pair.now += Duration::from_secs(4);
    pair.scp.handle_timeout(pair.now);
    assert_eq!(
        ended(&events(&mut pair.scp)),
        Some(&Ending::TimedOut(Timer::Dimse))
    );
    assert_eq!(aborts(&drain(&mut pair.scp, pair.now)).len(), 1);
}

#[test]
fn the_dimse_timer_bounds_the_wait_for_a_response() {
    let mut pair = Pair::established();
    pair.scu
        .send_message(ECHO_CONTEXT, &echo_rq(1), pair.now)
        .expect("sent");
    pair.pump();
    pair.advance(Duration::from_secs(4));
    assert_eq!(
        ended(&pair.scu_events),
        Some(&Ending::TimedOut(Timer::Dimse))
    );
    // The acceptor that performs it is not timed: the abort reached it.
    assert!(matches!(
        ended(&pair.scp_events),
        Some(Ending::AbortedByPeer(_))
    ));
}

#[test]
fn the_idle_timer_aborts_an_association_with_nothing_in_flight() {
    let mut pair = Pair::established();
    pair.advance(Duration::from_secs(9));
    assert!(ended(&pair.scp_events).is_none());
    pair.advance(Duration::from_secs(1));
    assert!(
        matches!(ended(&pair.scp_events), Some(Ending::TimedOut(Timer::Idle)))
            || matches!(ended(&pair.scu_events), Some(Ending::TimedOut(Timer::Idle)))
    );
}

#[test]
fn the_idle_timer_does_not_run_while_an_operation_is_performed() {
    let mut pair = Pair::established();
    pair.scu
        .send_message(ECHO_CONTEXT, &echo_rq(1), pair.now)
        .expect("sent");
    pair.pump();
    // The acceptor works on it for a long time; the requestor waits without a DIMSE limit.
    let now = pair.now + Duration::from_secs(60);
    pair.scp.handle_timeout(now);
    assert!(
        events(&mut pair.scp)
            .iter()
            .all(|e| !matches!(e, Event::Ended(_)))
    );
    assert_eq!(pair.scp.state(), State::Sta6);
}

#[test]
fn the_write_timer_closes_a_transport_that_takes_nothing() {
    let mut pair = Pair::established();
    pair.scu
        .send_message(CT_CONTEXT, &store_rq(1, CT), pair.now)
        .expect("command");
    // The driver takes the bytes but the peer never reads: no progress is reported.
    let _stuck = pair.scu.poll_transmit();
    assert!(pair.scu.transmit_backlog() > 0);
    pair.scu.handle_timeout(pair.now + Duration::from_secs(5));
    assert!(pair.scu.is_closed());
    assert_eq!(
        ended(&events(&mut pair.scu)),
        Some(&Ending::TimedOut(Timer::Write))
    );
    assert_eq!(pair.scu.transmit_backlog(), 0);
    assert!(
        pair.scu.abandons_unwritten(),
        "what the driver holds is dropped, not flushed to a peer that does not read"
    );
}

// ------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------

#[test]
fn an_undecodable_pdu_aborts_with_its_reason_and_later_bytes_are_ignored() {
    let mut pair = Pair::established();
    let mut garbage = BytesMut::from(&[0x09u8, 0, 0, 0, 0, 2, 0xAB, 0xCD, 0x04, 0, 0][..]);
    pair.scp.handle_input(&mut garbage, pair.now);
    assert_eq!(
        aborts(&drain(&mut pair.scp, pair.now)),
        vec![Abort {
            source: AbortSource::ServiceProvider,
            reason: AbortReason::UnrecognizedPdu
        }]
    );
    assert!(matches!(
        ended(&events(&mut pair.scp)),
        Some(Ending::Aborted(AbortCause::InvalidPdu(_)))
    ));
    let mut more = BytesMut::from(&[0x07u8, 0, 0, 0, 0, 4, 0, 0, 0, 0][..]);
    pair.scp.handle_input(&mut more, pair.now);
    assert!(drain(&mut pair.scp, pair.now).is_empty());
}

#[test]
fn pdus_split_across_reads_are_reassembled() {
    let mut pair = Pair::established();
    let mut bytes = BytesMut::new();
    command_pdu(ECHO_CONTEXT, &echo_rq(1))
        .encode(&mut bytes)
        .expect("encode");
    let whole = bytes.freeze();
    let mut buffer = BytesMut::new();
    for byte in whole.iter() {
        buffer.extend_from_slice(&[*byte]);
        pair.scp.handle_input(&mut buffer, pair.now);
    }
    assert!(matches!(
        events(&mut pair.scp).as_slice(),
        [Event::Request { .. }]
    ));
}

#[test]
fn an_association_request_on_an_established_association_aborts_as_unexpected() {
    let mut pair = Pair::established();
    let rq = request().to_pdu().expect("rq");
    feed(&mut pair.scp, &Pdu::AssociateRq(rq), pair.now);
    assert_eq!(
        aborts(&drain(&mut pair.scp, pair.now)),
        vec![Abort {
            source: AbortSource::ServiceProvider,
            reason: AbortReason::UnexpectedPdu
        }]
    );
    assert!(matches!(
        ended(&events(&mut pair.scp)),
        Some(Ending::Aborted(AbortCause::UnexpectedPdu {
            state: State::Sta6,
            ..
        }))
    ));
}
