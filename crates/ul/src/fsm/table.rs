//! PS3.8 Table 9-10 (the state transition table) and Tables 9-6 to 9-9 (what each action does),
//! as data.

use super::{Action, Effect, Effects, Event, State};
use crate::pdu::AbortSource;

/// Number of states (columns of Table 9-10).
const STATES: usize = 13;
/// Number of events (rows of Table 9-10).
const EVENTS: usize = 19;

// Cell spellings, so that each row below reads like the row of the standard.
const __: Option<Action> = None;
const AE1: Option<Action> = Some(Action::Ae1);
const AE2: Option<Action> = Some(Action::Ae2);
const AE3: Option<Action> = Some(Action::Ae3);
const AE4: Option<Action> = Some(Action::Ae4);
const AE5: Option<Action> = Some(Action::Ae5);
const AE6: Option<Action> = Some(Action::Ae6);
const AE7: Option<Action> = Some(Action::Ae7);
const AE8: Option<Action> = Some(Action::Ae8);
const DT1: Option<Action> = Some(Action::Dt1);
const DT2: Option<Action> = Some(Action::Dt2);
const AR1: Option<Action> = Some(Action::Ar1);
const AR2: Option<Action> = Some(Action::Ar2);
const AR3: Option<Action> = Some(Action::Ar3);
const AR4: Option<Action> = Some(Action::Ar4);
const AR5: Option<Action> = Some(Action::Ar5);
const AR6: Option<Action> = Some(Action::Ar6);
const AR7: Option<Action> = Some(Action::Ar7);
const AR8: Option<Action> = Some(Action::Ar8);
const AR9: Option<Action> = Some(Action::Ar9);
const AR10: Option<Action> = Some(Action::Ar10);
const AA1: Option<Action> = Some(Action::Aa1);
const AA2: Option<Action> = Some(Action::Aa2);
const AA3: Option<Action> = Some(Action::Aa3);
const AA4: Option<Action> = Some(Action::Aa4);
const AA5: Option<Action> = Some(Action::Aa5);
const AA6: Option<Action> = Some(Action::Aa6);
const AA7: Option<Action> = Some(Action::Aa7);
const AA8: Option<Action> = Some(Action::Aa8);

/// PS3.8 Table 9-10: one row per event (Evt1..Evt19), one column per state (Sta1..Sta13).
#[rustfmt::skip]
const TABLE: [[Option<Action>; STATES]; EVENTS] = [
    //  Sta1 Sta2 Sta3 Sta4 Sta5 Sta6 Sta7 Sta8 Sta9 Sta10 Sta11 Sta12 Sta13
    [AE1, __,  __,  __,  __,  __,  __,  __,  __,  __,   __,   __,   __ ], // Evt1  A-ASSOCIATE request (local user)
    [__,  __,  __,  AE2, __,  __,  __,  __,  __,  __,   __,   __,   __ ], // Evt2  transport connect confirmation
    [__,  AA1, AA8, __,  AE3, AA8, AA8, AA8, AA8, AA8,  AA8,  AA8,  AA6], // Evt3  A-ASSOCIATE-AC PDU received
    [__,  AA1, AA8, __,  AE4, AA8, AA8, AA8, AA8, AA8,  AA8,  AA8,  AA6], // Evt4  A-ASSOCIATE-RJ PDU received
    [AE5, __,  __,  __,  __,  __,  __,  __,  __,  __,   __,   __,   __ ], // Evt5  transport connect indication
    [__,  AE6, AA8, __,  AA8, AA8, AA8, AA8, AA8, AA8,  AA8,  AA8,  AA7], // Evt6  A-ASSOCIATE-RQ PDU received
    [__,  __,  AE7, __,  __,  __,  __,  __,  __,  __,   __,   __,   __ ], // Evt7  A-ASSOCIATE response (accept)
    [__,  __,  AE8, __,  __,  __,  __,  __,  __,  __,   __,   __,   __ ], // Evt8  A-ASSOCIATE response (reject)
    [__,  __,  __,  __,  __,  DT1, __,  AR7, __,  __,   __,   __,   __ ], // Evt9  P-DATA request
    [__,  AA1, AA8, __,  AA8, DT2, AR6, AA8, AA8, AA8,  AA8,  AA8,  AA6], // Evt10 P-DATA-TF PDU received
    [__,  __,  __,  __,  __,  AR1, __,  __,  __,  __,   __,   __,   __ ], // Evt11 A-RELEASE request
    [__,  AA1, AA8, __,  AA8, AR2, AR8, AA8, AA8, AA8,  AA8,  AA8,  AA6], // Evt12 A-RELEASE-RQ PDU received
    [__,  AA1, AA8, __,  AA8, AA8, AR3, AA8, AA8, AR10, AR3,  AA8,  AA6], // Evt13 A-RELEASE-RP PDU received
    [__,  __,  __,  __,  __,  __,  __,  AR4, AR9, __,   __,   AR4,  __ ], // Evt14 A-RELEASE response
    [__,  __,  AA1, AA2, AA1, AA1, AA1, AA1, AA1, AA1,  AA1,  AA1,  __ ], // Evt15 A-ABORT request
    [__,  AA2, AA3, __,  AA3, AA3, AA3, AA3, AA3, AA3,  AA3,  AA3,  AA2], // Evt16 A-ABORT PDU received
    [__,  AA5, AA4, AA4, AA4, AA4, AA4, AA4, AA4, AA4,  AA4,  AA4,  AR5], // Evt17 transport connection closed
    [__,  AA2, __,  __,  __,  __,  __,  __,  __,  __,   __,   __,   AA2], // Evt18 ARTIM timer expired
    [__,  AA1, AA8, __,  AA8, AA8, AA8, AA8, AA8, AA8,  AA8,  AA8,  AA7], // Evt19 unrecognized or invalid PDU
];

/// The action of PS3.8 Table 9-10 for `event` in `state`, or `None` for an empty cell.
pub fn table_action(state: State, event: Event) -> Option<Action> {
    let row = TABLE.get(usize::from(event.number()).checked_sub(1)?)?;
    row.get(usize::from(state.number()).checked_sub(1)?)
        .copied()
        .flatten()
}

/// Carries out `action` (PS3.8 Tables 9-6 to 9-9): the next state and the effects, in order.
///
/// `event` is needed by AE-6 (was the A-ASSOCIATE-RQ acceptable by the service-provider?) and
/// `is_requestor` by AR-8 (which side of a release collision are we?).
pub(super) fn perform(action: Action, event: Event, is_requestor: bool) -> (State, Effects) {
    use Effect::*;
    match action {
        // Table 9-6: association establishment.
        Action::Ae1 => (State::Sta4, const { Effects::of(&[OpenTransport]) }),
        Action::Ae2 => (State::Sta5, const { Effects::of(&[SendAssociateRq]) }),
        Action::Ae3 => (
            State::Sta6,
            const { Effects::of(&[IndicateAssociateAccepted]) },
        ),
        Action::Ae4 => (
            State::Sta1,
            const { Effects::of(&[IndicateAssociateRejected, CloseTransport]) },
        ),
        // The transport connection response primitive is the driver's accept(): already done.
        Action::Ae5 => (State::Sta2, const { Effects::of(&[StartArtim]) }),
        Action::Ae6 => {
            if matches!(event, Event::AssociateRqReceived { acceptable: true }) {
                (
                    State::Sta3,
                    const { Effects::of(&[StopArtim, IndicateAssociateRequest]) },
                )
            } else {
                (
                    State::Sta13,
                    const { Effects::of(&[StopArtim, SendAssociateRj, StartArtim]) },
                )
            }
        }
        Action::Ae7 => (State::Sta6, const { Effects::of(&[SendAssociateAc]) }),
        Action::Ae8 => (
            State::Sta13,
            const { Effects::of(&[SendAssociateRj, StartArtim]) },
        ),

        // Table 9-7: data transfer.
        Action::Dt1 => (State::Sta6, const { Effects::of(&[SendPData]) }),
        Action::Dt2 => (State::Sta6, const { Effects::of(&[IndicatePData]) }),

        // Table 9-8: association release.
        Action::Ar1 => (State::Sta7, const { Effects::of(&[SendReleaseRq]) }),
        Action::Ar2 => (
            State::Sta8,
            const { Effects::of(&[IndicateReleaseRequest]) },
        ),
        Action::Ar3 => (
            State::Sta1,
            const { Effects::of(&[IndicateReleaseConfirm, CloseTransport]) },
        ),
        Action::Ar4 => (
            State::Sta13,
            const { Effects::of(&[SendReleaseRp, StartArtim]) },
        ),
        Action::Ar5 => (State::Sta1, const { Effects::of(&[StopArtim]) }),
        Action::Ar6 => (State::Sta7, const { Effects::of(&[IndicatePData]) }),
        Action::Ar7 => (State::Sta8, const { Effects::of(&[SendPData]) }),
        Action::Ar8 => {
            let next = if is_requestor {
                State::Sta9
            } else {
                State::Sta10
            };
            (next, const { Effects::of(&[IndicateReleaseCollision]) })
        }
        Action::Ar9 => (State::Sta11, const { Effects::of(&[SendReleaseRp]) }),
        Action::Ar10 => (
            State::Sta12,
            const { Effects::of(&[IndicateReleaseConfirm]) },
        ),

        // Table 9-9: association abort.
        // AA-1 is worded "A-ABORT PDU (service-user source)" by the standard, also when it
        // answers an unexpected PDU in Sta2; we follow the wording.
        Action::Aa1 => (
            State::Sta13,
            const { Effects::of(&[SendAbort(AbortSource::ServiceUser), StartArtim]) },
        ),
        Action::Aa2 => (
            State::Sta1,
            const { Effects::of(&[StopArtim, CloseTransport]) },
        ),
        Action::Aa3 => (
            State::Sta1,
            const { Effects::of(&[IndicateAbort, CloseTransport]) },
        ),
        // Evt17: the transport is already closed, so there is nothing to close.
        Action::Aa4 => (State::Sta1, const { Effects::of(&[IndicateProviderAbort]) }),
        Action::Aa5 => (State::Sta1, const { Effects::of(&[StopArtim]) }),
        Action::Aa6 => (State::Sta13, const { Effects::of(&[]) }),
        // The standard names no source for AA-7; the association no longer exists, so the
        // abort can only come from the service-provider. ARTIM is already running in Sta13.
        Action::Aa7 => (
            State::Sta13,
            const { Effects::of(&[SendAbort(AbortSource::ServiceProvider)]) },
        ),
        Action::Aa8 => (
            State::Sta13,
            const {
                Effects::of(&[
                    SendAbort(AbortSource::ServiceProvider),
                    IndicateProviderAbort,
                    StartArtim,
                ])
            },
        ),
    }
}
