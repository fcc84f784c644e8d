//! The DICOM Upper Layer state machine of PS3.8 §9.2, sans-IO.
//!
//! The state transition table (PS3.8 Table 9-10) is written as data in [`table_action`]: one row
//! per event, one column per state, each cell naming an action of Tables 9-6 to 9-9 or being
//! empty. What each action does is data too: a short, ordered list of [`Effect`]s and the next
//! [`State`].
//!
//! # How the network driver uses it
//!
//! One [`Machine`] lives beside each association (transport connection). The driver turns
//! everything that happens into an [`Event`] and calls [`Machine::handle`]:
//!
//! * a local service primitive (the user asks to associate, send data, release, abort, or answers
//!   an A-ASSOCIATE / A-RELEASE indication) becomes Evt1, Evt7–Evt9, Evt11, Evt14 or Evt15;
//! * a PDU read and decoded from the peer becomes Evt3, Evt4, Evt6, Evt10, Evt12, Evt13 or Evt16,
//!   and a PDU that does not decode (unknown type, malformed) becomes [`Event::InvalidPdu`] (Evt19);
//! * transport happenings become Evt2 (our connect completed), Evt5 (we accepted a connection) and
//!   Evt17 (the peer closed the connection, or it broke);
//! * the ARTIM timer firing becomes [`Event::ArtimExpired`] (Evt18).
//!
//! For an A-ASSOCIATE-RQ (Evt6) the driver first decides whether the request is acceptable *by the
//! service-provider* (PS3.8 AE-6: e.g. the protocol version is supported) and says so in
//! [`Event::AssociateRqReceived::acceptable`]; whether the *user* accepts it is the later Evt7/Evt8.
//!
//! The returned [`Transition`] lists the [`Effect`]s the driver must carry out, **in order**:
//! write a PDU, hand an indication/confirmation to the user, open or close the transport. The
//! machine carries no PDU contents: the driver sends the PDU the user (or its own negotiation
//! code) prepared, and hands over the PDU it decoded. A-ABORT PDUs carry the source given in
//! [`Effect::SendAbort`]; the reason is the driver's to choose (e.g. "unexpected PDU" for an
//! out-of-place PDU, "unrecognized PDU" for Evt19). AA-1 uses source service-user, as PS3.8
//! words it ("A-ABORT PDU (service-user source)"), even where it answers a bad PDU in Sta2; some
//! implementations send service-provider there. AA-7 names no source: we send service-provider,
//! like AA-8.
//!
//! The ARTIM timer is the driver's, not the machine's: [`Effect::StartArtim`] means "(re)arm the
//! ARTIM timer with its configured duration", [`Effect::StopArtim`] means "disarm it if armed",
//! and when an armed timer fires the driver feeds [`Event::ArtimExpired`]. Nothing here reads a
//! clock.
//!
//! The association is over when the machine is back in [`State::Sta1`]. After a transition to
//! [`State::Sta13`] the driver keeps reading (PDUs are ignored or answered with A-ABORT as the
//! table says) until the peer closes the connection (Evt17) or ARTIM expires (Evt18, which closes
//! it).
//!
//! An empty cell of Table 9-10 yields [`FsmError::InvalidEvent`] and leaves the state unchanged.
//! For a local primitive this means "not allowed now" (e.g. P-DATA before the association is
//! established) and should be reported to the user. For the other events, an empty cell means
//! the event cannot happen in that state (no PDU can arrive in Sta1 or Sta4, since there is no
//! connection yet), so the error indicates a bug in the driver.

mod table;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::pdu::AbortSource;

pub use table::table_action;

/// A state of the Upper Layer protocol machine, PS3.8 §9.2.1 (Tables 9-1 to 9-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Sta1: idle, no association.
    Sta1,
    /// Sta2: transport connection open, awaiting an A-ASSOCIATE-RQ PDU.
    Sta2,
    /// Sta3: awaiting the local A-ASSOCIATE response primitive (from the local user).
    Sta3,
    /// Sta4: awaiting the transport connection opening to complete (from the local transport service).
    Sta4,
    /// Sta5: awaiting an A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU.
    Sta5,
    /// Sta6: association established and ready for data transfer.
    Sta6,
    /// Sta7: awaiting an A-RELEASE-RP PDU.
    Sta7,
    /// Sta8: awaiting the local A-RELEASE response primitive (from the local user).
    Sta8,
    /// Sta9: release collision, requestor side; awaiting the A-RELEASE response (from the local user).
    Sta9,
    /// Sta10: release collision, acceptor side; awaiting an A-RELEASE-RP PDU.
    Sta10,
    /// Sta11: release collision, requestor side; awaiting an A-RELEASE-RP PDU.
    Sta11,
    /// Sta12: release collision, acceptor side; awaiting the A-RELEASE response primitive (from the local user).
    Sta12,
    /// Sta13: awaiting the transport connection close indication (the association no longer exists).
    Sta13,
}

impl State {
    /// Every state, in the order of the standard (`State::ALL[n - 1].number() == n`).
    pub const ALL: [State; 13] = [
        State::Sta1,
        State::Sta2,
        State::Sta3,
        State::Sta4,
        State::Sta5,
        State::Sta6,
        State::Sta7,
        State::Sta8,
        State::Sta9,
        State::Sta10,
        State::Sta11,
        State::Sta12,
        State::Sta13,
    ];

    /// The state's number in the standard, 1..=13 (`Sta6` → 6).
    pub fn number(&self) -> u8 {
        match self {
            State::Sta1 => 1,
            State::Sta2 => 2,
            State::Sta3 => 3,
            State::Sta4 => 4,
            State::Sta5 => 5,
            State::Sta6 => 6,
            State::Sta7 => 7,
            State::Sta8 => 8,
            State::Sta9 => 9,
            State::Sta10 => 10,
            State::Sta11 => 11,
            State::Sta12 => 12,
            State::Sta13 => 13,
        }
    }
}

impl fmt::Display for State {
    /// `Sta6`, as the standard writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sta{}", self.number())
    }
}

/// An event fed to the Upper Layer protocol machine, PS3.8 §9.2.3 (the rows of Table 9-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Evt1: A-ASSOCIATE request primitive (local user).
    AssociateRequest,
    /// Evt2: transport connection confirmation (local transport service): our connect completed.
    TransportConnectConfirm,
    /// Evt3: A-ASSOCIATE-AC PDU received on the transport connection.
    AssociateAcReceived,
    /// Evt4: A-ASSOCIATE-RJ PDU received on the transport connection.
    AssociateRjReceived,
    /// Evt5: transport connection indication (local transport service): a peer connected to us.
    TransportConnectIndication,
    /// Evt6: A-ASSOCIATE-RQ PDU received on the transport connection.
    AssociateRqReceived {
        /// Whether the request is acceptable by the service-provider (the condition of AE-6).
        acceptable: bool,
    },
    /// Evt7: A-ASSOCIATE response primitive (accept), from the local user.
    AssociateResponseAccept,
    /// Evt8: A-ASSOCIATE response primitive (reject), from the local user.
    AssociateResponseReject,
    /// Evt9: P-DATA request primitive (local user).
    PDataRequest,
    /// Evt10: P-DATA-TF PDU received on the transport connection.
    PDataReceived,
    /// Evt11: A-RELEASE request primitive (local user).
    ReleaseRequest,
    /// Evt12: A-RELEASE-RQ PDU received on the transport connection.
    ReleaseRqReceived,
    /// Evt13: A-RELEASE-RP PDU received on the transport connection.
    ReleaseRpReceived,
    /// Evt14: A-RELEASE response primitive (local user).
    ReleaseResponse,
    /// Evt15: A-ABORT request primitive (local user).
    AbortRequest,
    /// Evt16: A-ABORT PDU received on the transport connection.
    AbortReceived,
    /// Evt17: transport connection closed indication (local transport service).
    TransportClosed,
    /// Evt18: ARTIM timer expired (association reject/release timer).
    ArtimExpired,
    /// Evt19: unrecognized or invalid PDU received.
    InvalidPdu,
}

impl Event {
    /// The event's number in the standard, 1..=19 (`AssociateRqReceived` → 6).
    pub fn number(&self) -> u8 {
        match self {
            Event::AssociateRequest => 1,
            Event::TransportConnectConfirm => 2,
            Event::AssociateAcReceived => 3,
            Event::AssociateRjReceived => 4,
            Event::TransportConnectIndication => 5,
            Event::AssociateRqReceived { .. } => 6,
            Event::AssociateResponseAccept => 7,
            Event::AssociateResponseReject => 8,
            Event::PDataRequest => 9,
            Event::PDataReceived => 10,
            Event::ReleaseRequest => 11,
            Event::ReleaseRqReceived => 12,
            Event::ReleaseRpReceived => 13,
            Event::ReleaseResponse => 14,
            Event::AbortRequest => 15,
            Event::AbortReceived => 16,
            Event::TransportClosed => 17,
            Event::ArtimExpired => 18,
            Event::InvalidPdu => 19,
        }
    }
}

impl fmt::Display for Event {
    /// `Evt6`, as the standard writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Evt{}", self.number())
    }
}

/// An action of the Upper Layer protocol machine, PS3.8 §9.2.2 (Tables 9-6 to 9-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// AE-1: transport connect request.
    Ae1,
    /// AE-2: send A-ASSOCIATE-RQ.
    Ae2,
    /// AE-3: A-ASSOCIATE confirmation (accept).
    Ae3,
    /// AE-4: A-ASSOCIATE confirmation (reject), close transport.
    Ae4,
    /// AE-5: transport connection response, start ARTIM.
    Ae5,
    /// AE-6: stop ARTIM, then A-ASSOCIATE indication or A-ASSOCIATE-RJ.
    Ae6,
    /// AE-7: send A-ASSOCIATE-AC.
    Ae7,
    /// AE-8: send A-ASSOCIATE-RJ, start ARTIM.
    Ae8,
    /// DT-1: send P-DATA-TF.
    Dt1,
    /// DT-2: P-DATA indication.
    Dt2,
    /// AR-1: send A-RELEASE-RQ.
    Ar1,
    /// AR-2: A-RELEASE indication.
    Ar2,
    /// AR-3: A-RELEASE confirmation, close transport.
    Ar3,
    /// AR-4: send A-RELEASE-RP, start ARTIM.
    Ar4,
    /// AR-5: stop ARTIM.
    Ar5,
    /// AR-6: P-DATA indication while awaiting A-RELEASE-RP.
    Ar6,
    /// AR-7: send P-DATA-TF while awaiting the local A-RELEASE response.
    Ar7,
    /// AR-8: A-RELEASE indication (release collision).
    Ar8,
    /// AR-9: send A-RELEASE-RP (collision, requestor side).
    Ar9,
    /// AR-10: A-RELEASE confirmation (collision, acceptor side).
    Ar10,
    /// AA-1: send A-ABORT (service-user source), start ARTIM.
    Aa1,
    /// AA-2: stop ARTIM, close transport.
    Aa2,
    /// AA-3: A-ABORT or A-P-ABORT indication, close transport.
    Aa3,
    /// AA-4: A-P-ABORT indication.
    Aa4,
    /// AA-5: stop ARTIM.
    Aa5,
    /// AA-6: ignore the PDU.
    Aa6,
    /// AA-7: send A-ABORT.
    Aa7,
    /// AA-8: send A-ABORT (service-provider source), A-P-ABORT indication, start ARTIM.
    Aa8,
}

impl Action {
    /// The action's name in the standard: `"AE-1"`, `"DT-2"`, `"AR-10"`, `"AA-8"`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Ae1 => "AE-1",
            Action::Ae2 => "AE-2",
            Action::Ae3 => "AE-3",
            Action::Ae4 => "AE-4",
            Action::Ae5 => "AE-5",
            Action::Ae6 => "AE-6",
            Action::Ae7 => "AE-7",
            Action::Ae8 => "AE-8",
            Action::Dt1 => "DT-1",
            Action::Dt2 => "DT-2",
            Action::Ar1 => "AR-1",
            Action::Ar2 => "AR-2",
            Action::Ar3 => "AR-3",
            Action::Ar4 => "AR-4",
            Action::Ar5 => "AR-5",
            Action::Ar6 => "AR-6",
            Action::Ar7 => "AR-7",
            Action::Ar8 => "AR-8",
            Action::Ar9 => "AR-9",
            Action::Ar10 => "AR-10",
            Action::Aa1 => "AA-1",
            Action::Aa2 => "AA-2",
            Action::Aa3 => "AA-3",
            Action::Aa4 => "AA-4",
            Action::Aa5 => "AA-5",
            Action::Aa6 => "AA-6",
            Action::Aa7 => "AA-7",
            Action::Aa8 => "AA-8",
        }
    }

    /// What the action does, in the words of Tables 9-6 to 9-9 (abridged).
    pub fn description(&self) -> &'static str {
        match self {
            Action::Ae1 => "issue a transport connect request to the local transport service",
            Action::Ae2 => "send the A-ASSOCIATE-RQ PDU",
            Action::Ae3 => "issue the A-ASSOCIATE confirmation (accept) primitive",
            Action::Ae4 => {
                "issue the A-ASSOCIATE confirmation (reject) primitive and close the transport connection"
            }
            Action::Ae5 => "issue the transport connection response primitive and start ARTIM",
            Action::Ae6 => {
                "stop ARTIM; if the A-ASSOCIATE-RQ is acceptable by the service-provider issue the \
                 A-ASSOCIATE indication, otherwise send an A-ASSOCIATE-RJ PDU and start ARTIM"
            }
            Action::Ae7 => "send the A-ASSOCIATE-AC PDU",
            Action::Ae8 => "send the A-ASSOCIATE-RJ PDU and start ARTIM",
            Action::Dt1 => "send a P-DATA-TF PDU",
            Action::Dt2 => "issue a P-DATA indication primitive",
            Action::Ar1 => "send an A-RELEASE-RQ PDU",
            Action::Ar2 => "issue an A-RELEASE indication primitive",
            Action::Ar3 => {
                "issue the A-RELEASE confirmation primitive and close the transport connection"
            }
            Action::Ar4 => "send an A-RELEASE-RP PDU and start ARTIM",
            Action::Ar5 => "stop ARTIM (the transport closed after the association ended)",
            Action::Ar6 => "issue a P-DATA indication (while awaiting the A-RELEASE-RP PDU)",
            Action::Ar7 => "send a P-DATA-TF PDU (while awaiting the local A-RELEASE response)",
            Action::Ar8 => "issue an A-RELEASE indication (release collision)",
            Action::Ar9 => "send an A-RELEASE-RP PDU (release collision, requestor side)",
            Action::Ar10 => {
                "issue the A-RELEASE confirmation primitive (release collision, acceptor side)"
            }
            Action::Aa1 => "send an A-ABORT PDU (service-user source) and (re)start ARTIM",
            Action::Aa2 => "stop ARTIM if running and close the transport connection",
            Action::Aa3 => {
                "issue an A-ABORT indication (service-user initiated abort) or an A-P-ABORT \
                 indication (service-provider initiated abort), and close the transport connection"
            }
            Action::Aa4 => "issue an A-P-ABORT indication primitive",
            Action::Aa5 => "stop ARTIM (the transport closed before an A-ASSOCIATE-RQ arrived)",
            Action::Aa6 => "ignore the PDU",
            Action::Aa7 => "send an A-ABORT PDU",
            Action::Aa8 => {
                "send an A-ABORT PDU (service-provider source), issue an A-P-ABORT indication \
                 and start ARTIM"
            }
        }
    }
}

impl fmt::Display for Action {
    /// The standard's name, e.g. `AA-8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing the driver must do as part of an action of PS3.8 §9.2.2; a [`Transition`] lists
/// them in the order they must be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// AE-1: open the transport connection to the peer; report the outcome as Evt2 or Evt17.
    OpenTransport,
    /// AE-2: send the A-ASSOCIATE-RQ PDU.
    SendAssociateRq,
    /// AE-3: A-ASSOCIATE confirmation (accept) to the local user.
    IndicateAssociateAccepted,
    /// AE-4: A-ASSOCIATE confirmation (reject) to the local user.
    IndicateAssociateRejected,
    /// AE-6 (acceptable request): A-ASSOCIATE indication to the local user, who answers with
    /// Evt7 or Evt8.
    IndicateAssociateRequest,
    /// AE-7: send the A-ASSOCIATE-AC PDU.
    SendAssociateAc,
    /// AE-8, and AE-6 for a request the service-provider cannot accept: send an A-ASSOCIATE-RJ PDU.
    SendAssociateRj,
    /// DT-1, AR-7: send a P-DATA-TF PDU.
    SendPData,
    /// DT-2, AR-6: P-DATA indication to the local user.
    IndicatePData,
    /// AR-1: send an A-RELEASE-RQ PDU.
    SendReleaseRq,
    /// AR-2: A-RELEASE indication to the local user, who answers with Evt14.
    IndicateReleaseRequest,
    /// AR-3, AR-10: A-RELEASE confirmation to the local user.
    IndicateReleaseConfirm,
    /// AR-4, AR-9: send an A-RELEASE-RP PDU.
    SendReleaseRp,
    /// AR-8: A-RELEASE indication to the local user in a release collision; the user answers
    /// with Evt14 (requestor side, Sta9) or after the peer's A-RELEASE-RP (acceptor side, Sta12).
    IndicateReleaseCollision,
    /// AA-1 (service-user source), AA-7 and AA-8 (service-provider source): send an A-ABORT PDU
    /// with this source.
    SendAbort(AbortSource),
    /// AA-3: A-ABORT indication (the peer's abort had source service-user) or A-P-ABORT
    /// indication (source service-provider); the driver knows which from the PDU it received.
    IndicateAbort,
    /// AA-4, AA-8: A-P-ABORT indication to the local user.
    IndicateProviderAbort,
    /// (Re)arm the ARTIM timer; when it fires, feed [`Event::ArtimExpired`].
    StartArtim,
    /// Disarm the ARTIM timer if it is armed.
    StopArtim,
    /// Close the transport connection.
    CloseTransport,
}

/// Most effects a single action has (AE-6 reject and AA-8 have three).
const MAX_EFFECTS: usize = 3;

/// The ordered effects of one action of PS3.8 §9.2.2: a fixed-capacity list that never
/// allocates (the machine runs once per P-DATA PDU).
#[derive(Clone, Copy)]
pub struct Effects {
    slots: [Effect; MAX_EFFECTS],
    len: usize,
}

impl Effects {
    /// Builds a list; used only in `const` context, so an overlong list fails to compile.
    const fn of(effects: &[Effect]) -> Effects {
        assert!(
            effects.len() <= MAX_EFFECTS,
            "an action has at most MAX_EFFECTS effects"
        );
        let mut slots = [Effect::StopArtim; MAX_EFFECTS];
        let mut i = 0;
        while i < effects.len() {
            slots[i] = effects[i];
            i += 1;
        }
        Effects {
            slots,
            len: effects.len(),
        }
    }

    /// The effects, in the order the driver must carry them out.
    pub fn as_slice(&self) -> &[Effect] {
        self.slots.get(..self.len).unwrap_or_default()
    }

    /// Whether `effect` is one of them.
    pub fn contains(&self, effect: Effect) -> bool {
        self.as_slice().contains(&effect)
    }

    /// How many effects there are.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there is nothing to do (AA-6: the PDU is ignored).
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Iterates over the effects in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Effect> {
        self.as_slice().iter()
    }
}

impl PartialEq for Effects {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Effects {}

impl fmt::Debug for Effects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> IntoIterator for &'a Effects {
    type Item = &'a Effect;
    type IntoIter = std::slice::Iter<'a, Effect>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One step of the machine: a filled cell of PS3.8 Table 9-10 applied to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state the machine was in.
    pub from: State,
    /// The event that was handled.
    pub event: Event,
    /// The action of the table cell.
    pub action: Action,
    /// The state the machine is in now.
    pub to: State,
    /// What the driver must do, in order.
    pub effects: Effects,
}

/// An event the Upper Layer state machine (PS3.8 Table 9-10) cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsmError {
    /// The cell of Table 9-10 is empty: a local primitive not allowed in this state (or, for a
    /// transport or PDU event, one that cannot happen in it). The state is unchanged.
    #[error("{event} ({event:?}) is not allowed in state {state} (empty cell of PS3.8 Table 9-10)")]
    InvalidEvent {
        /// The state the machine is (still) in.
        state: State,
        /// The refused event.
        event: Event,
    },
}

/// The Upper Layer protocol machine of one association, PS3.8 §9.2.
///
/// The role only matters for AR-8 (release collision): the association-requestor goes to Sta9,
/// the acceptor to Sta10.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    is_requestor: bool,
}

impl Machine {
    /// A machine in Sta1 for the side that requests the association (sends A-ASSOCIATE-RQ).
    pub fn new_requestor() -> Self {
        Machine {
            state: State::Sta1,
            is_requestor: true,
        }
    }

    /// A machine in Sta1 for the side that accepts the association (receives A-ASSOCIATE-RQ).
    pub fn new_acceptor() -> Self {
        Machine {
            state: State::Sta1,
            is_requestor: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether this side is the association-requestor.
    pub fn is_requestor(&self) -> bool {
        self.is_requestor
    }

    /// Takes `event`: looks up Table 9-10, applies the action and moves to the next state.
    ///
    /// On an empty cell nothing changes and [`FsmError::InvalidEvent`] is returned.
    pub fn handle(&mut self, event: Event) -> Result<Transition, FsmError> {
        let from = self.state;
        let action =
            table_action(from, event).ok_or(FsmError::InvalidEvent { state: from, event })?;
        let (to, effects) = table::perform(action, event, self.is_requestor);
        self.state = to;
        Ok(Transition {
            from,
            event,
            action,
            to,
            effects,
        })
    }
}
