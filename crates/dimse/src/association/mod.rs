//! The sans-IO association: one DICOM association (PS3.8 §7) with its Upper Layer state
//! machine, negotiation, DIMSE assembly, timers and table of operations in flight — driven by
//! bytes and instants, never touching a socket or a clock.
//!
//! # Driving it
//!
//! In the manner of quinn-proto's `Connection`, a driver (the tokio one in `dimsum-net`, or a
//! test) owns one [`Association`] per transport connection and
//!
//! * feeds it what happens: bytes read ([`Association::handle_input`]), bytes written
//!   ([`Association::handle_transmitted`]), the connection opening
//!   ([`Association::handle_connected`]) or closing ([`Association::handle_transport_closed`]),
//!   and the passing of time ([`Association::handle_timeout`] once the instant of
//!   [`Association::poll_timeout`] is reached);
//! * carries out what it asks for: bytes to write ([`Association::poll_transmit`]) and, once
//!   [`Association::is_closed`], closing the connection;
//! * hands on its [`Event`]s ([`Association::poll_event`]) to the user, and the user's
//!   primitives back: [`Association::respond`] to an association request,
//!   [`Association::send_message`] / [`Association::send_data`] for DIMSE messages,
//!   [`Association::release`] and [`Association::abort`].
//!
//! # Where the rules live
//!
//! * **PS3.8 Table 9-10**: every PDU received, every local primitive and every timer expiry is an
//!   event of [`dimsum_ul::fsm::Machine`]; its effects (send a PDU, an indication, ARTIM, close)
//!   are carried out here. AE-6's "acceptable by the service-provider" is the protocol version
//!   check of [`dimsum_ul::negotiation::provider_rejection`].
//! * **Abort reasons** (PS3.8 Table 9-26): a PDU that does not decode gets the reason of its
//!   decode error, an out-of-place PDU "unexpected PDU", a DIMSE violation (below) "unexpected
//!   PDU parameter" with the service-provider source; local aborts (the user, a timer) are
//!   service-user aborts.
//! * **Release** (PS3.8 §7.2, §9.2.1): an A-RELEASE-RQ from the peer is confirmed as soon as no
//!   operation we perform is left unanswered (P-DATA may still go out in Sta8); a release
//!   collision is resolved on both sides as Table 9-10 prescribes (requestor: AR-9 then await the
//!   A-RELEASE-RP; acceptor: await it, AR-10, then AR-4).
//! * **DIMSE routing** (PS3.7 §9.1): every response must answer an outstanding request of the
//!   same operation, on its presentation context, by Message ID Being Responded To; only C-FIND,
//!   C-GET and C-MOVE may answer "pending"; a C-CANCEL-RQ goes to the operation it names as
//!   [`Event::CancelRequested`], never as a new request. A peer that breaks these rules, sends
//!   P-DATA on a context that was not accepted, breaks the fragment sequence (PS3.8 Annex E), or
//!   exceeds the asynchronous operations window is aborted.
//! * **Asynchronous operations window** (PS3.7 §D.3.3.3): as negotiated (1/1 when it was not).
//!   The A-ASSOCIATE-AC's Maximum Number Operations Invoked bounds the requestor's outstanding
//!   requests, its Maximum Number Operations Performed the acceptor's. Our own requests beyond
//!   the window are refused with [`SendError::WindowFull`]; the peer's are an abort.
//! * **Contexts and roles** (PS3.7 §D.3.3.4): a request may only go on an accepted context whose
//!   abstract syntax is its SOP class, by the side that holds the role it needs (SCU for every
//!   request but N-EVENT-REPORT, which the SCP sends). Our own requests that break this are
//!   refused with a [`SendError`]; the peer's are answered here with 0x0122 (SOP class not
//!   supported) and an error comment, reported as [`Event::Refused`].
//! * **Timers**: ARTIM (from the state machine), ACSE, DIMSE, idle and write, each as described
//!   in [`Timeouts`]. Expiry aborts (or, for ARTIM and write, closes) the association.

mod event;
mod operations;
mod timers;
mod transmit;

pub use event::{AbortCause, Ending, Event, ProtocolViolation, SendError, Timer};
pub use timers::Timeouts;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use dimsum_ul::fsm::{Action, Effect, Event as FsmEvent, Machine, State, Transition, table_action};
use dimsum_ul::negotiation::{
    AssociationRequest, Decision, Negotiated, NegotiatedContext, NegotiationError,
    provider_rejection,
};
use dimsum_ul::pdu::{
    self, Abort, AbortReason, AbortSource, AssociateRq, DecodeLimits, PData, Pdu,
};

use crate::assemble::{Assembled, Assembler};
use crate::command::{CommandLimits, CommandSet};
use crate::fragment::{self, PDATA_HEADER_LEN};
use crate::message::{CommandField, Message};
use crate::status::Status;
use event::provider_abort_reason;
use operations::{Operation, Operations, Window, is_multi_response, request_for};
use timers::{Activity, Deadlines};

/// A read that may gather several small PDUs.
const SMALL_READ: usize = 64 * 1024;
/// The most [`Association::read_size`] asks for at once.
pub const MAX_READ: usize = 1024 * 1024;

/// Limits and timers of an association.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    pub timeouts: Timeouts,
    /// PDU decoding limits; `max_pdata_length` is replaced by the maximum PDU length we
    /// announce.
    pub decode: DecodeLimits,
    /// Command set limits (the longest command set accepted).
    pub command: CommandLimits,
}

/// Which side of the A-ASSOCIATE we are.
#[derive(Debug, Clone)]
enum Side {
    /// We requested the association with this request (and sent this A-ASSOCIATE-RQ).
    Requestor {
        request: Box<AssociationRequest>,
        rq: Box<AssociateRq>,
    },
    Acceptor,
}

/// What the data fragments arriving now belong to.
#[derive(Debug, Clone)]
enum Inbound {
    /// Handed on as [`Event::Data`].
    Deliver,
    /// Dropped (a C-CANCEL-RQ with a data set).
    Drop,
    /// Dropped, and once the last one is in, this refusal is sent.
    Refuse(Box<Refusal>),
}

/// A failure response the association sends by itself (see [`Event::Refused`]).
#[derive(Debug, Clone)]
struct Refusal {
    presentation_context_id: u8,
    message_id: u16,
    command_field: CommandField,
    status: Status,
    reason: String,
    /// The failure response, with the reason as its Error Comment.
    response: Message,
}

/// The message whose data set is being sent.
#[derive(Debug, Clone, Copy)]
struct Outbound {
    presentation_context_id: u8,
    /// The Message ID, when the message is one of our requests.
    request_id: Option<u16>,
}

/// One DICOM association, sans-IO (see the module documentation).
#[derive(Debug)]
pub struct Association {
    machine: Machine,
    side: Side,
    config: Config,
    decode: DecodeLimits,
    assembler: Assembler,
    negotiated: Option<Negotiated>,
    /// Requests we sent that are not finished (their responses are due).
    invoked: Operations,
    /// Requests the peer sent that we have not finished answering.
    performing: Operations,
    inbound: Inbound,
    outbound: Option<Outbound>,
    /// Refusals waiting for the message being sent to finish.
    refusals: VecDeque<Refusal>,
    release_requested: bool,
    transmit: transmit::TransmitQueue,
    events: VecDeque<Event>,
    deadlines: Deadlines,
    ending: Option<Ending>,
    ended_reported: bool,
    /// After an undecodable PDU the byte stream means nothing any more: input is dropped.
    discard_input: bool,
    /// The transport is closed or unusable: nothing more can be written.
    transport_given_up: bool,
    next_message_id: u16,
}

impl Association {
    /// A requestor (PS3.8 §7.1.1) for `request`, waiting for its transport connection to open
    /// (Sta4 after AE-1). Call [`Association::handle_connected`] once it is open.
    pub fn request(
        request: AssociationRequest,
        config: Config,
        now: Instant,
    ) -> Result<Association, NegotiationError> {
        let rq = request.to_pdu()?;
        let mut association = Association::new(
            Machine::new_requestor(),
            Side::Requestor {
                request: Box::new(request),
                rq: Box::new(rq),
            },
            config,
        );
        if let Side::Requestor { request, .. } = &association.side {
            association.decode.max_pdata_length = request.max_pdu_length;
        }
        association.step(FsmEvent::AssociateRequest, now, None, None);
        Ok(association)
    }

    /// An acceptor for a transport connection that just opened (Sta2 after AE-5, ARTIM
    /// running): it waits for the A-ASSOCIATE-RQ.
    pub fn accept(config: Config, now: Instant) -> Association {
        let mut association = Association::new(Machine::new_acceptor(), Side::Acceptor, config);
        association.step(FsmEvent::TransportConnectIndication, now, None, None);
        association
    }

    fn new(machine: Machine, side: Side, config: Config) -> Association {
        Association {
            machine,
            side,
            decode: config.decode,
            assembler: Assembler::new(config.command),
            config,
            negotiated: None,
            invoked: Operations::new(),
            performing: Operations::new(),
            inbound: Inbound::Deliver,
            outbound: None,
            refusals: VecDeque::new(),
            release_requested: false,
            transmit: transmit::TransmitQueue::default(),
            events: VecDeque::new(),
            deadlines: Deadlines::default(),
            ending: None,
            ended_reported: false,
            discard_input: false,
            transport_given_up: false,
            next_message_id: 1,
        }
    }

    // ---------------------------------------------------------------------------------------
    // State
    // ---------------------------------------------------------------------------------------

    /// The state of the PS3.8 state machine.
    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// Whether we requested the association.
    pub fn is_requestor(&self) -> bool {
        self.machine.is_requestor()
    }

    /// What was negotiated, once the association is established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether DIMSE messages can be sent (PS3.8 Sta6, or Sta8 while a release waits for our
    /// last responses).
    pub fn can_send(&self) -> bool {
        matches!(self.machine.state(), State::Sta6 | State::Sta8)
    }

    /// How the association ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref().filter(|_| self.ended_reported)
    }

    /// Whether the transport connection is to be closed now (PS3.8 Sta1): the driver writes what
    /// [`Association::poll_transmit`] still gives, then closes.
    pub fn is_closed(&self) -> bool {
        self.machine.state() == State::Sta1
    }

    /// Whether bytes the driver still holds unwritten are to be dropped rather than flushed
    /// before the transport is closed: the peer closed it, or stopped taking our bytes (the
    /// write timer).
    pub fn abandons_unwritten(&self) -> bool {
        self.transport_given_up
    }

    /// How many requests we have outstanding, and how many the window allows (0: unlimited).
    pub fn invoked_operations(&self) -> (usize, u16) {
        (self.invoked.len(), self.invoked.window.limit())
    }

    /// How many of the peer's requests we are performing, and how many the window allows.
    pub fn performed_operations(&self) -> (usize, u16) {
        (self.performing.len(), self.performing.window.limit())
    }

    /// Whether another request of ours fits the asynchronous operations window now.
    pub fn can_invoke(&self) -> bool {
        self.invoked.has_room()
    }

    /// Whether a message's data set is being sent (its last fragment is still to come).
    pub fn is_sending_message(&self) -> bool {
        self.outbound.is_some()
    }

    /// A fresh Message ID for a request (PS3.7 §9.1.1.1): 1, 2, … wrapping past 65535 to 1,
    /// never one that an outstanding request of ours uses.
    pub fn next_message_id(&mut self) -> u16 {
        loop {
            let id = self.next_message_id;
            self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
            if !self.invoked.contains(id) {
                return id;
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Driver interface
    // ---------------------------------------------------------------------------------------

    /// The next event for the user, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next bytes to write to the transport, in order. Report what was written with
    /// [`Association::handle_transmitted`].
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop()
    }

    /// `n` bytes of what [`Association::poll_transmit`] gave were written.
    pub fn handle_transmitted(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.transmit.written(n);
            self.deadlines.last_write_progress = Some(now);
        }
    }

    /// Bytes queued or handed out but not yet reported written: what a sender should keep
    /// bounded before it adds more.
    pub fn transmit_backlog(&self) -> usize {
        self.transmit.backlog()
    }

    /// The instant at which [`Association::handle_timeout`] is due, if a timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines
            .next(&self.config.timeouts, self.activity())
            .map(|(at, _)| at)
    }

    fn activity(&self) -> Activity {
        Activity {
            established: matches!(
                self.machine.state(),
                State::Sta6 | State::Sta7 | State::Sta8
            ),
            receiving_message: !self.assembler.is_idle(),
            awaiting_response: self.invoked.awaits_response(),
            busy: !self.invoked.is_empty()
                || !self.performing.is_empty()
                || self.outbound.is_some(),
            transmitting: self.transmit.backlog() > 0,
        }
    }

    /// Requestor: the transport connection is open (PS3.8 Evt2): the A-ASSOCIATE-RQ goes out
    /// and the ACSE timer starts.
    pub fn handle_connected(&mut self, now: Instant) {
        let Side::Requestor { rq, .. } = &self.side else {
            return;
        };
        let rq = Pdu::AssociateRq((**rq).clone());
        if self
            .step(FsmEvent::TransportConnectConfirm, now, Some(rq), None)
            .is_some()
        {
            self.arm_acse(now);
        }
    }

    /// How many bytes the driver should read next, given what it holds unconsumed: up to the end
    /// of a large PDU under way and its successor's header, so that a large data fragment lands
    /// in a buffer of its own and is never moved; otherwise a chunk that may hold several small
    /// PDUs. Never more than [`MAX_READ`], whatever a header claims.
    pub fn read_size(&self, buffered: &[u8]) -> usize {
        match pdu::read_header(buffered) {
            Some(header) => {
                let total = usize::try_from(header.length)
                    .unwrap_or(usize::MAX)
                    .saturating_add(pdu::PDU_HEADER_LEN);
                let missing = total.saturating_sub(buffered.len());
                if total > SMALL_READ && missing > 0 {
                    missing.saturating_add(pdu::PDU_HEADER_LEN).min(MAX_READ)
                } else {
                    SMALL_READ
                }
            }
            None => SMALL_READ,
        }
    }

    /// Bytes arrived: `buffer` holds what was read and not yet consumed. Every complete PDU is
    /// taken off its front and handled; a partial PDU stays for the next call. Call this after
    /// every read that returned data.
    pub fn handle_input(&mut self, buffer: &mut BytesMut, now: Instant) {
        if buffer.is_empty() {
            return;
        }
        self.deadlines.last_activity = Some(now);
        while !self.discard_input && self.machine.state() != State::Sta1 {
            match pdu::decode_from(buffer, &self.decode) {
                Ok(None) => return,
                Ok(Some(pdu)) => self.on_pdu(pdu, now),
                Err(error) => {
                    self.discard_input = true;
                    self.on_invalid_pdu(error, now);
                }
            }
        }
        buffer.clear();
    }

    /// The transport connection closed (PS3.8 Evt17), by the peer or because it broke.
    pub fn handle_transport_closed(&mut self, now: Instant) {
        self.transmit.clear();
        self.transport_given_up = true;
        if self.machine.state() != State::Sta1 {
            self.set_ending(Ending::ConnectionClosed);
            self.step(FsmEvent::TransportClosed, now, None, None);
        }
    }

    /// Time passed: carries out every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Timer> = self
            .deadlines
            .armed(&self.config.timeouts, self.activity())
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at <= now)
            .map(|(_, timer)| timer)
            .collect();
        for timer in due {
            self.expire(timer, now);
        }
    }

    fn expire(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Artim => {
                self.deadlines.artim = None;
                self.set_ending(Ending::TimedOut(Timer::Artim));
                self.step(FsmEvent::ArtimExpired, now, None, None);
            }
            Timer::Write => {
                self.set_ending(Ending::TimedOut(Timer::Write));
                self.handle_transport_closed(now);
            }
            Timer::Acse | Timer::Dimse | Timer::Idle => {
                if timer == Timer::Acse {
                    self.deadlines.acse = None;
                }
                if self.machine.state() != State::Sta13 && self.machine.state() != State::Sta1 {
                    self.set_ending(Ending::TimedOut(timer));
                    self.step(FsmEvent::AbortRequest, now, None, None);
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // User primitives
    // ---------------------------------------------------------------------------------------

    /// Acceptor: answers the A-ASSOCIATE-RQ of [`Event::AssociationRequested`] (PS3.8 Evt7 /
    /// Evt8): an A-ASSOCIATE-AC establishes the association, an A-ASSOCIATE-RJ ends it (ARTIM
    /// then waits for the peer to close).
    pub fn respond(&mut self, decision: Decision, now: Instant) -> Result<(), SendError> {
        if self.machine.state() != State::Sta3 {
            return Err(SendError::NotAwaitingResponse);
        }
        match decision {
            Decision::Accept { ac, negotiated } => {
                self.step(
                    FsmEvent::AssociateResponseAccept,
                    now,
                    Some(Pdu::AssociateAc(ac)),
                    None,
                );
                self.establish(negotiated, now);
            }
            Decision::Reject(rejection) => {
                self.set_ending(Ending::Rejected {
                    rejection,
                    by_peer: false,
                });
                self.step(
                    FsmEvent::AssociateResponseReject,
                    now,
                    Some(Pdu::AssociateRj(rejection)),
                    None,
                );
            }
        }
        Ok(())
    }

    /// Sends a DIMSE message's command set on presentation context `presentation_context_id`
    /// (PS3.7 §9.3, fragmented for the peer's maximum PDU length, PS3.8 §9.3.5). When the
    /// message has a data set, [`Association::send_data`] must follow with all of it before
    /// another message can be sent.
    ///
    /// A request takes a slot of the asynchronous operations window until its final response;
    /// a response must answer a request we are performing; a C-CANCEL-RQ must name a C-FIND,
    /// C-GET or C-MOVE of ours that is outstanding. On error nothing is sent.
    pub fn send_message(
        &mut self,
        presentation_context_id: u8,
        message: &Message,
        now: Instant,
    ) -> Result<(), SendError> {
        self.check_can_send()?;
        if self.outbound.is_some() {
            return Err(SendError::MessageInProgress);
        }
        let context = self.accepted_context(presentation_context_id)?;
        let field = message.command_field();
        let kind = self.classify_outgoing(context, message)?;
        let command = message.to_command_set().encode()?;
        let has_data_set = message.has_data_set();
        match kind {
            Outgoing::Request(id) => self.invoked.insert(
                id,
                Operation {
                    request: field,
                    presentation_context_id,
                    request_sent: !has_data_set,
                },
            ),
            Outgoing::Response { id, is_final: true } => {
                self.performing.remove(id);
            }
            Outgoing::Response { .. } | Outgoing::Cancel => {}
        }
        self.write_pdvs(presentation_context_id, true, command, true, now);
        if has_data_set {
            self.outbound = Some(Outbound {
                presentation_context_id,
                request_id: match kind {
                    Outgoing::Request(id) => Some(id),
                    _ => None,
                },
            });
        } else {
            self.message_sent(None, now);
        }
        Ok(())
    }

    /// Sends the next piece of the data set of the message being sent; `is_last` on the final
    /// one (an empty final piece is allowed). The bytes are not copied: they are sent as slices
    /// of `data` behind each P-DATA-TF header.
    pub fn send_data(&mut self, data: Bytes, is_last: bool, now: Instant) -> Result<(), SendError> {
        self.check_can_send()?;
        let Some(outbound) = self.outbound else {
            return Err(SendError::NoDataSetExpected);
        };
        if data.is_empty() && !is_last {
            return Ok(());
        }
        self.write_pdvs(outbound.presentation_context_id, false, data, is_last, now);
        if is_last {
            self.outbound = None;
            self.message_sent(outbound.request_id, now);
        }
        Ok(())
    }

    /// Requests the release of the association (PS3.8 Evt11, AR-1); the ACSE timer waits for the
    /// A-RELEASE-RP. Responses to our outstanding requests are still delivered meanwhile.
    pub fn release(&mut self, now: Instant) -> Result<(), SendError> {
        if self.ended_reported {
            return Err(SendError::Ended);
        }
        if self.machine.state() != State::Sta6 {
            return Err(SendError::NotEstablished(self.machine.state()));
        }
        if self.outbound.is_some() {
            return Err(SendError::MessageInProgress);
        }
        self.step(FsmEvent::ReleaseRequest, now, Some(Pdu::ReleaseRq), None);
        self.arm_acse(now);
        Ok(())
    }

    /// Aborts the association (PS3.8 Evt15: A-ABORT, service-user source). Before an
    /// association request has arrived (Sta2) the connection is just closed.
    pub fn abort(&mut self, now: Instant) {
        match self.machine.state() {
            State::Sta1 | State::Sta13 => {}
            State::Sta2 => {
                self.set_ending(Ending::Aborted(AbortCause::User));
                self.step(FsmEvent::ArtimExpired, now, None, None);
            }
            _ => {
                self.set_ending(Ending::Aborted(AbortCause::User));
                self.step(FsmEvent::AbortRequest, now, None, None);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // The state machine and its effects
    // ---------------------------------------------------------------------------------------

    /// Feeds one event to the PS3.8 machine and carries out its effects other than the
    /// indications (which the caller handles from the returned transition): `outgoing` is the
    /// PDU a "send" effect sends, `cause` what an A-ABORT reports.
    fn step(
        &mut self,
        event: FsmEvent,
        now: Instant,
        outgoing: Option<Pdu>,
        cause: Option<&AbortCause>,
    ) -> Option<Transition> {
        let transition = self.machine.handle(event).ok()?;
        for effect in &transition.effects {
            match *effect {
                Effect::SendAssociateRq
                | Effect::SendAssociateAc
                | Effect::SendAssociateRj
                | Effect::SendReleaseRq
                | Effect::SendReleaseRp => {
                    if let Some(pdu) = &outgoing {
                        self.queue_pdu(pdu, now);
                    }
                }
                Effect::SendAbort(source) => {
                    let source = match cause {
                        Some(AbortCause::Protocol(_) | AbortCause::Negotiation(_)) => {
                            AbortSource::ServiceProvider
                        }
                        _ => source,
                    };
                    let reason = match (source, cause) {
                        (AbortSource::ServiceProvider, Some(cause)) => provider_abort_reason(cause),
                        (AbortSource::ServiceProvider, None) => AbortReason::UnexpectedPdu,
                        _ => AbortReason::NotSpecified,
                    };
                    self.queue_pdu(&Pdu::Abort(Abort { source, reason }), now);
                }
                Effect::StartArtim => {
                    self.deadlines.artim = now.checked_add(self.config.timeouts.artim);
                }
                Effect::StopArtim => self.deadlines.artim = None,
                _ => {}
            }
        }
        if matches!(transition.to, State::Sta1 | State::Sta13) {
            self.on_ended();
        }
        Some(transition)
    }

    fn queue_pdu(&mut self, pdu: &Pdu, now: Instant) {
        let was_idle = self.transmit.backlog() == 0;
        // Every PDU we build from our own values encodes; one that would not is dropped rather
        // than sent half-written.
        self.transmit.push_encoded(|out| {
            let _ = pdu.encode(out);
        });
        if was_idle {
            self.deadlines.last_write_progress = Some(now);
        }
    }

    /// The association can carry no more messages: report how it ended, once, and forget
    /// everything in flight.
    fn on_ended(&mut self) {
        self.deadlines.acse = None;
        if self.ended_reported {
            return;
        }
        self.ended_reported = true;
        let ending = self.ending.get_or_insert(Ending::ConnectionClosed).clone();
        self.invoked.clear();
        self.performing.clear();
        self.outbound = None;
        self.refusals.clear();
        self.inbound = Inbound::Deliver;
        self.assembler = Assembler::new(self.config.command);
        self.events.push_back(Event::Ended(ending));
    }

    /// Records how the association ends; the first cause found wins.
    fn set_ending(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some(ending);
        }
    }

    fn arm_acse(&mut self, now: Instant) {
        self.deadlines.acse = self
            .config
            .timeouts
            .acse
            .and_then(|limit| now.checked_add(limit));
    }

    /// Aborts because of `cause` (PS3.8 Evt15 from the local side; the A-ABORT names the
    /// service-provider for a protocol violation).
    fn abort_for(&mut self, cause: AbortCause, now: Instant) {
        if matches!(self.machine.state(), State::Sta1 | State::Sta13) {
            return;
        }
        self.set_ending(Ending::Aborted(cause.clone()));
        self.step(FsmEvent::AbortRequest, now, None, Some(&cause));
    }

    // ---------------------------------------------------------------------------------------
    // Receiving
    // ---------------------------------------------------------------------------------------

    fn on_invalid_pdu(&mut self, error: pdu::DecodeError, now: Instant) {
        let cause = AbortCause::InvalidPdu(error);
        self.set_ending(Ending::Aborted(cause.clone()));
        self.step(FsmEvent::InvalidPdu, now, None, Some(&cause));
    }

    fn on_pdu(&mut self, pdu: Pdu, now: Instant) {
        let state = self.machine.state();
        let mut outgoing = None;
        let event = match &pdu {
            Pdu::AssociateRq(rq) => match provider_rejection(rq) {
                None => FsmEvent::AssociateRqReceived { acceptable: true },
                Some(rejection) => {
                    outgoing = Some(Pdu::AssociateRj(rejection));
                    self.set_ending(Ending::Rejected {
                        rejection,
                        by_peer: false,
                    });
                    FsmEvent::AssociateRqReceived { acceptable: false }
                }
            },
            Pdu::AssociateAc(_) => FsmEvent::AssociateAcReceived,
            Pdu::AssociateRj(_) => FsmEvent::AssociateRjReceived,
            Pdu::PData(_) => FsmEvent::PDataReceived,
            Pdu::ReleaseRq => FsmEvent::ReleaseRqReceived,
            Pdu::ReleaseRp => FsmEvent::ReleaseRpReceived,
            Pdu::Abort(_) => FsmEvent::AbortReceived,
        };
        let cause = AbortCause::UnexpectedPdu {
            pdu: pdu_name(&pdu),
            state,
        };
        // How the association ends must be known before the step that ends it.
        if let Some(ending) = table_action(state, event).and_then(|action| match action {
            Action::Aa1 | Action::Aa7 | Action::Aa8 => Some(Ending::Aborted(cause.clone())),
            Action::Ae4 => match &pdu {
                Pdu::AssociateRj(rejection) => Some(Ending::Rejected {
                    rejection: *rejection,
                    by_peer: true,
                }),
                _ => None,
            },
            Action::Aa2 | Action::Aa3 => match &pdu {
                Pdu::Abort(abort) => Some(Ending::AbortedByPeer(*abort)),
                _ => None,
            },
            Action::Ar3 | Action::Ar10 => Some(Ending::Released),
            _ => None,
        }) {
            self.set_ending(ending);
        }
        let Some(transition) = self.step(event, now, outgoing, Some(&cause)) else {
            return;
        };
        if transition.action == Action::Aa3 {
            self.transmit.clear();
        }
        let mut pdu = Some(pdu);
        for effect in &transition.effects {
            match effect {
                Effect::IndicatePData => {
                    if let Some(Pdu::PData(pdata)) = pdu.take() {
                        self.on_pdata(pdata, now);
                    }
                }
                Effect::IndicateAssociateRequest => {
                    if let Some(Pdu::AssociateRq(rq)) = pdu.take() {
                        self.events
                            .push_back(Event::AssociationRequested(Box::new(rq)));
                    }
                }
                Effect::IndicateAssociateAccepted => {
                    if let Some(Pdu::AssociateAc(ac)) = pdu.take() {
                        self.on_associate_ac(&ac, now);
                    }
                }
                Effect::IndicateReleaseRequest => {
                    self.release_requested = true;
                    self.events.push_back(Event::ReleaseRequested);
                    self.confirm_release_when_done(now);
                }
                // Acceptor side of a collision (AR-10): now answer the peer's request (AR-4).
                Effect::IndicateReleaseConfirm if self.machine.state() == State::Sta12 => {
                    self.step(FsmEvent::ReleaseResponse, now, Some(Pdu::ReleaseRp), None);
                }
                // Requestor side (AR-8 to Sta9): answer the peer's request (AR-9), then await
                // its answer; the acceptor side (Sta10) awaits the answer first.
                Effect::IndicateReleaseCollision if self.machine.state() == State::Sta9 => {
                    self.set_ending(Ending::Released);
                    self.step(FsmEvent::ReleaseResponse, now, Some(Pdu::ReleaseRp), None);
                }
                _ => {}
            }
        }
    }

    fn on_associate_ac(&mut self, ac: &dimsum_ul::pdu::AssociateAc, now: Instant) {
        let Side::Requestor { request, rq } = &self.side else {
            return;
        };
        self.deadlines.acse = None;
        match request.interpret_ac(rq, ac) {
            Ok(negotiated) => self.establish(negotiated, now),
            Err(error) => self.abort_for(AbortCause::Negotiation(error.to_string()), now),
        }
    }

    /// Sta6: what was negotiated takes effect.
    fn establish(&mut self, negotiated: Negotiated, now: Instant) {
        let (invoke, perform) = match negotiated.async_ops_window {
            None => (Window::ONE, Window::ONE),
            Some(window) => {
                let invoked = Window::from_negotiated(window.max_operations_invoked);
                let performed = Window::from_negotiated(window.max_operations_performed);
                // The AC's "invoked" bounds the requestor's requests, its "performed" the
                // acceptor's (PS3.7 §D.3.3.3).
                if self.is_requestor() {
                    (invoked, performed)
                } else {
                    (performed, invoked)
                }
            }
        };
        self.invoked.window = invoke;
        self.performing.window = perform;
        self.decode.max_pdata_length = negotiated.local_max_pdu_length;
        self.negotiated = Some(negotiated);
        self.deadlines.last_activity = Some(now);
        self.events.push_back(Event::Established);
    }

    fn on_pdata(&mut self, pdata: PData, now: Instant) {
        for pdv in pdata.pdvs {
            if !matches!(
                self.machine.state(),
                State::Sta6 | State::Sta7 | State::Sta8
            ) {
                return;
            }
            let context = pdv.presentation_context_id;
            if self.accepted_context(context).is_err() {
                self.abort_for(
                    AbortCause::Protocol(ProtocolViolation::ContextNotAccepted(context)),
                    now,
                );
                return;
            }
            match self.assembler.push(pdv) {
                Ok(None) => {}
                Ok(Some(Assembled::Command {
                    presentation_context_id,
                    message,
                    command,
                })) => self.on_command(presentation_context_id, message, command, now),
                Ok(Some(Assembled::DataFragment {
                    presentation_context_id,
                    data,
                    is_last,
                })) => self.on_data(presentation_context_id, data, is_last, now),
                Err(error) => {
                    self.abort_for(AbortCause::Protocol(error.into()), now);
                    return;
                }
            }
        }
    }

    fn on_command(
        &mut self,
        presentation_context_id: u8,
        message: Message,
        command_set: CommandSet,
        now: Instant,
    ) {
        let field = message.command_field();
        self.inbound = Inbound::Deliver;
        let outcome = if field.is_response() {
            self.on_response(presentation_context_id, message, command_set)
        } else if field == CommandField::CCancelRq {
            self.on_cancel(&message);
            Ok(())
        } else {
            self.on_request(presentation_context_id, message, command_set, now)
        };
        if let Err(violation) = outcome {
            self.abort_for(AbortCause::Protocol(violation), now);
        }
    }

    fn on_response(
        &mut self,
        presentation_context_id: u8,
        message: Message,
        command_set: CommandSet,
    ) -> Result<(), ProtocolViolation> {
        let field = message.command_field();
        let message_id = message.message_id_being_responded_to().unwrap_or_default();
        let operation = *self
            .invoked
            .get(message_id)
            .ok_or(ProtocolViolation::UnknownResponse { field, message_id })?;
        if request_for(field) != Some(operation.request) {
            return Err(ProtocolViolation::ResponseTypeMismatch {
                field,
                message_id,
                request: operation.request,
            });
        }
        if presentation_context_id != operation.presentation_context_id {
            return Err(ProtocolViolation::ResponseContextMismatch {
                field,
                message_id,
                got: presentation_context_id,
                expected: operation.presentation_context_id,
            });
        }
        let is_final = message.status().is_none_or(|status| status.is_final());
        if !is_final && !is_multi_response(operation.request) {
            return Err(ProtocolViolation::PendingNotAllowed { field, message_id });
        }
        if is_final {
            self.invoked.remove(message_id);
        }
        self.events.push_back(Event::Response {
            presentation_context_id,
            message,
            command_set,
            is_final,
        });
        Ok(())
    }

    /// A C-CANCEL-RQ: for an operation we perform that can be cancelled, an event; otherwise
    /// (already answered, or one that cannot be cancelled) it is ignored, as PS3.7 §9.3.2.3
    /// allows.
    fn on_cancel(&mut self, message: &Message) {
        if message.has_data_set() {
            self.inbound = Inbound::Drop;
        }
        let message_id = message.message_id_being_responded_to().unwrap_or_default();
        if self
            .performing
            .get(message_id)
            .is_some_and(|op| is_multi_response(op.request))
        {
            self.events.push_back(Event::CancelRequested { message_id });
        }
    }

    fn on_request(
        &mut self,
        presentation_context_id: u8,
        message: Message,
        command_set: CommandSet,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        let field = message.command_field();
        let message_id = message.message_id().unwrap_or_default();
        if self.performing.contains(message_id) {
            return Err(ProtocolViolation::DuplicateMessageId(message_id));
        }
        if !self.performing.has_room() {
            return Err(ProtocolViolation::WindowExceeded {
                limit: self.performing.window.limit(),
            });
        }
        self.performing.insert(
            message_id,
            Operation {
                request: field,
                presentation_context_id,
                request_sent: true,
            },
        );
        let problem = self
            .accepted_context(presentation_context_id)
            .ok()
            .and_then(|context| request_problem(context, &message, !self.is_requestor()));
        let Some(reason) = problem else {
            self.events.push_back(Event::Request {
                presentation_context_id,
                message,
                command_set,
            });
            return Ok(());
        };
        let status = Status::SOP_CLASS_NOT_SUPPORTED;
        let Some(mut response) = message.response_with_status(status) else {
            return Ok(());
        };
        response.set_error_comment(&reason);
        let refusal = Refusal {
            presentation_context_id,
            message_id,
            command_field: field,
            status,
            reason,
            response,
        };
        if message.has_data_set() {
            self.inbound = Inbound::Refuse(Box::new(refusal));
        } else {
            self.refuse(refusal, now);
        }
        Ok(())
    }

    fn on_data(&mut self, presentation_context_id: u8, data: Bytes, is_last: bool, now: Instant) {
        match &self.inbound {
            Inbound::Deliver => self.events.push_back(Event::Data {
                presentation_context_id,
                data,
                is_last,
            }),
            Inbound::Drop => {}
            Inbound::Refuse(refusal) if is_last => {
                let refusal = (**refusal).clone();
                self.refuse(refusal, now);
            }
            Inbound::Refuse(_) => {}
        }
        if is_last {
            self.inbound = Inbound::Deliver;
        }
    }

    /// Sends a refusal now, or after the message being sent.
    fn refuse(&mut self, refusal: Refusal, now: Instant) {
        self.refusals.push_back(refusal);
        self.send_refusals(now);
    }

    fn send_refusals(&mut self, now: Instant) {
        while self.outbound.is_none() && self.can_send() {
            let Some(refusal) = self.refusals.pop_front() else {
                break;
            };
            self.performing.remove(refusal.message_id);
            if let Ok(command) = refusal.response.to_command_set().encode() {
                self.write_pdvs(refusal.presentation_context_id, true, command, true, now);
            }
            self.events.push_back(Event::Refused {
                message_id: refusal.message_id,
                command_field: refusal.command_field,
                status: refusal.status,
                reason: refusal.reason,
            });
        }
        self.deadlines.last_activity = Some(now);
        self.confirm_release_when_done(now);
    }

    // ---------------------------------------------------------------------------------------
    // Sending
    // ---------------------------------------------------------------------------------------

    fn check_can_send(&self) -> Result<(), SendError> {
        if self.ended_reported {
            Err(SendError::Ended)
        } else if !self.can_send() {
            Err(SendError::NotEstablished(self.machine.state()))
        } else {
            Ok(())
        }
    }

    fn accepted_context(&self, id: u8) -> Result<&NegotiatedContext, SendError> {
        self.negotiated
            .as_ref()
            .and_then(|negotiated| negotiated.context(id))
            .filter(|context| context.is_accepted())
            .ok_or(SendError::NoPresentationContext(id))
    }

    /// Checks a message we are about to send against the operations in flight and the
    /// negotiated contexts and roles.
    fn classify_outgoing(
        &self,
        context: &NegotiatedContext,
        message: &Message,
    ) -> Result<Outgoing, SendError> {
        let field = message.command_field();
        if field.is_response() {
            let id = message.message_id_being_responded_to().unwrap_or_default();
            let operation = self
                .performing
                .get(id)
                .filter(|op| request_for(field) == Some(op.request))
                .filter(|op| op.presentation_context_id == context.id)
                .ok_or(SendError::NoSuchOperation {
                    field,
                    message_id: id,
                })?;
            let is_final = message.status().is_none_or(|status| status.is_final());
            if !is_final && !is_multi_response(operation.request) {
                return Err(SendError::PendingNotAllowed { field });
            }
            return Ok(Outgoing::Response { id, is_final });
        }
        if field == CommandField::CCancelRq {
            let id = message.message_id_being_responded_to().unwrap_or_default();
            return match self.invoked.get(id) {
                Some(op) if is_multi_response(op.request) => Ok(Outgoing::Cancel),
                _ => Err(SendError::NoSuchOperation {
                    field,
                    message_id: id,
                }),
            };
        }
        let id = message.message_id().unwrap_or_default();
        if !holds_invoker_role(context, field, self.is_requestor()) {
            return Err(SendError::RoleNotNegotiated {
                field,
                context_id: context.id,
            });
        }
        if let Some(sop_class) = request_sop_class(message)
            && trim_uid(sop_class) != trim_uid(&context.abstract_syntax)
        {
            return Err(SendError::SopClassMismatch {
                field,
                context_id: context.id,
                abstract_syntax: context.abstract_syntax.clone(),
                sop_class: sop_class.to_owned(),
            });
        }
        if self.invoked.contains(id) {
            return Err(SendError::DuplicateMessageId(id));
        }
        if !self.invoked.has_room() {
            return Err(SendError::WindowFull {
                limit: self.invoked.window.limit(),
            });
        }
        Ok(Outgoing::Request(id))
    }

    /// Queues `data` as P-DATA-TF PDUs of one PDV each, sized for the peer, each a P-DATA
    /// request of the state machine (DT-1, or AR-7 in Sta8).
    fn write_pdvs(
        &mut self,
        presentation_context_id: u8,
        is_command: bool,
        data: Bytes,
        is_last: bool,
        now: Instant,
    ) {
        let peer_max = self
            .negotiated
            .as_ref()
            .map_or(0, |negotiated| negotiated.peer_max_pdu_length);
        let max = fragment::max_pdv_data_len(peer_max);
        let was_idle = self.transmit.backlog() == 0;
        for (piece, piece_is_last) in fragment::pdv_fragments(&data, max, is_last) {
            if self.machine.handle(FsmEvent::PDataRequest).is_err() {
                return;
            }
            let mut header = [0u8; PDATA_HEADER_LEN];
            if fragment::write_pdata_header(
                &mut header,
                presentation_context_id,
                is_command,
                piece_is_last,
                piece.len(),
            )
            .is_err()
            {
                return;
            }
            self.transmit
                .push_encoded(|out| out.extend_from_slice(&header));
            self.transmit.push_payload(data.slice_ref(piece));
        }
        if was_idle {
            self.deadlines.last_write_progress = Some(now);
        }
    }

    /// A message is fully sent: its operation now awaits its response; refusals held back and a
    /// release waiting for our last response can go.
    fn message_sent(&mut self, request_id: Option<u16>, now: Instant) {
        if let Some(operation) = request_id.and_then(|id| self.invoked.get_mut(id)) {
            operation.request_sent = true;
        }
        self.deadlines.last_activity = Some(now);
        if self.refusals.is_empty() {
            self.confirm_release_when_done(now);
        } else {
            self.send_refusals(now);
        }
    }

    /// PS3.8 Evt14 for a release the peer requested, once nothing we perform is unanswered.
    fn confirm_release_when_done(&mut self, now: Instant) {
        if self.release_requested
            && self.machine.state() == State::Sta8
            && self.performing.is_empty()
            && self.outbound.is_none()
        {
            self.set_ending(Ending::Released);
            self.step(FsmEvent::ReleaseResponse, now, Some(Pdu::ReleaseRp), None);
        }
    }
}

/// What a message we send is, once checked.
#[derive(Debug, Clone, Copy)]
enum Outgoing {
    Request(u16),
    Response { id: u16, is_final: bool },
    Cancel,
}

/// The SOP class a request names: Affected SOP Class UID, or Requested SOP Class UID for
/// N-GET, N-SET, N-ACTION and N-DELETE (PS3.7 §9.3, §10.3).
fn request_sop_class(message: &Message) -> Option<&str> {
    Some(match message {
        Message::CStoreRq(rq) => &rq.affected_sop_class_uid,
        Message::CFindRq(rq) => &rq.affected_sop_class_uid,
        Message::CGetRq(rq) => &rq.affected_sop_class_uid,
        Message::CMoveRq(rq) => &rq.affected_sop_class_uid,
        Message::CEchoRq(rq) => &rq.affected_sop_class_uid,
        Message::NEventReportRq(rq) => &rq.affected_sop_class_uid,
        Message::NCreateRq(rq) => &rq.affected_sop_class_uid,
        Message::NGetRq(rq) => &rq.requested_sop_class_uid,
        Message::NSetRq(rq) => &rq.requested_sop_class_uid,
        Message::NActionRq(rq) => &rq.requested_sop_class_uid,
        Message::NDeleteRq(rq) => &rq.requested_sop_class_uid,
        _ => return None,
    })
}

fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

/// Whether the side that sends request `field` on `context` holds the role it needs (PS3.7
/// §D.3.3.4): the SCU role for every request but N-EVENT-REPORT, which the SCP sends.
fn holds_invoker_role(
    context: &NegotiatedContext,
    field: CommandField,
    invoker_is_requestor: bool,
) -> bool {
    let needs_scp = field == CommandField::NEventReportRq;
    match (invoker_is_requestor, needs_scp) {
        (true, false) => context.scu_role,
        (true, true) => context.scp_role,
        (false, false) => context.acceptor_scu_role(),
        (false, true) => context.acceptor_scp_role(),
    }
}

/// Why a request from the peer cannot be performed on its context, if it cannot.
fn request_problem(
    context: &NegotiatedContext,
    message: &Message,
    invoker_is_requestor: bool,
) -> Option<String> {
    let field = message.command_field();
    if !holds_invoker_role(context, field, invoker_is_requestor) {
        return Some(format!("{field} not allowed: no such role negotiated"));
    }
    let sop_class = request_sop_class(message)?;
    (trim_uid(sop_class) != trim_uid(&context.abstract_syntax))
        .then(|| "SOP Class UID does not match the presentation context".to_owned())
}

/// The PDU's name as the standard writes it, for messages.
fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::AssociateRq(_) => "an A-ASSOCIATE-RQ",
        Pdu::AssociateAc(_) => "an A-ASSOCIATE-AC",
        Pdu::AssociateRj(_) => "an A-ASSOCIATE-RJ",
        Pdu::PData(_) => "a P-DATA-TF",
        Pdu::ReleaseRq => "an A-RELEASE-RQ",
        Pdu::ReleaseRp => "an A-RELEASE-RP",
        Pdu::Abort(_) => "an A-ABORT",
    }
}
