//! Tests of the Upper Layer state machine against PS3.8 §9.2.
//!
//! The expectations below are written again from the standard, in a different shape from the
//! implementation's table (per state, i.e. per column of Table 9-10, as text), so that a wrong
//! cell in `table.rs` is caught rather than compared with itself.

use std::collections::{BTreeSet, HashMap};

use super::*;

// ---------------------------------------------------------------------------------------------
// Expectations, from PS3.8 Table 9-10 read column by column.
//
// `EvtN: ACTION -> StaM` for a filled cell, `EvtN: -` for an empty cell. Evt6 is listed twice:
// `Evt6+` for an A-ASSOCIATE-RQ acceptable by the service-provider, `Evt6-` otherwise.
// `StaR|StaA` is the next state for the association-requestor | acceptor (AR-8 only).
// ---------------------------------------------------------------------------------------------

const STA1: &str = "
    Evt1: AE-1 -> Sta4
    Evt2: -
    Evt3: -
    Evt4: -
    Evt5: AE-5 -> Sta2
    Evt6+: -
    Evt6-: -
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: -
    Evt11: -
    Evt12: -
    Evt13: -
    Evt14: -
    Evt15: -
    Evt16: -
    Evt17: -
    Evt18: -
    Evt19: -
";

const STA2: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-1 -> Sta13
    Evt4: AA-1 -> Sta13
    Evt5: -
    Evt6+: AE-6 -> Sta3
    Evt6-: AE-6 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-1 -> Sta13
    Evt11: -
    Evt12: AA-1 -> Sta13
    Evt13: AA-1 -> Sta13
    Evt14: -
    Evt15: -
    Evt16: AA-2 -> Sta1
    Evt17: AA-5 -> Sta1
    Evt18: AA-2 -> Sta1
    Evt19: AA-1 -> Sta13
";

const STA3: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: AE-7 -> Sta6
    Evt8: AE-8 -> Sta13
    Evt9: -
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AA-8 -> Sta13
    Evt14: -
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA4: &str = "
    Evt1: -
    Evt2: AE-2 -> Sta5
    Evt3: -
    Evt4: -
    Evt5: -
    Evt6+: -
    Evt6-: -
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: -
    Evt11: -
    Evt12: -
    Evt13: -
    Evt14: -
    Evt15: AA-2 -> Sta1
    Evt16: -
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: -
";

const STA5: &str = "
    Evt1: -
    Evt2: -
    Evt3: AE-3 -> Sta6
    Evt4: AE-4 -> Sta1
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AA-8 -> Sta13
    Evt14: -
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA6: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: DT-1 -> Sta6
    Evt10: DT-2 -> Sta6
    Evt11: AR-1 -> Sta7
    Evt12: AR-2 -> Sta8
    Evt13: AA-8 -> Sta13
    Evt14: -
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA7: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AR-6 -> Sta7
    Evt11: -
    Evt12: AR-8 -> Sta9|Sta10
    Evt13: AR-3 -> Sta1
    Evt14: -
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA8: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: AR-7 -> Sta8
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AA-8 -> Sta13
    Evt14: AR-4 -> Sta13
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA9: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AA-8 -> Sta13
    Evt14: AR-9 -> Sta11
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA10: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AR-10 -> Sta12
    Evt14: -
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA11: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AR-3 -> Sta1
    Evt14: -
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA12: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-8 -> Sta13
    Evt4: AA-8 -> Sta13
    Evt5: -
    Evt6+: AA-8 -> Sta13
    Evt6-: AA-8 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-8 -> Sta13
    Evt11: -
    Evt12: AA-8 -> Sta13
    Evt13: AA-8 -> Sta13
    Evt14: AR-4 -> Sta13
    Evt15: AA-1 -> Sta13
    Evt16: AA-3 -> Sta1
    Evt17: AA-4 -> Sta1
    Evt18: -
    Evt19: AA-8 -> Sta13
";

const STA13: &str = "
    Evt1: -
    Evt2: -
    Evt3: AA-6 -> Sta13
    Evt4: AA-6 -> Sta13
    Evt5: -
    Evt6+: AA-7 -> Sta13
    Evt6-: AA-7 -> Sta13
    Evt7: -
    Evt8: -
    Evt9: -
    Evt10: AA-6 -> Sta13
    Evt11: -
    Evt12: AA-6 -> Sta13
    Evt13: AA-6 -> Sta13
    Evt14: -
    Evt15: -
    Evt16: AA-2 -> Sta1
    Evt17: AR-5 -> Sta1
    Evt18: AA-2 -> Sta1
    Evt19: AA-7 -> Sta13
";

/// The effects of each action, from Tables 9-6 to 9-9, in order. `AE-6+`/`AE-6-`: the request
/// is / is not acceptable by the service-provider.
const ACTION_EFFECTS: &str = "
    AE-1: open-transport
    AE-2: send-associate-rq
    AE-3: indicate-accepted
    AE-4: indicate-rejected close-transport
    AE-5: start-artim
    AE-6+: stop-artim indicate-associate-rq
    AE-6-: stop-artim send-associate-rj start-artim
    AE-7: send-associate-ac
    AE-8: send-associate-rj start-artim
    DT-1: send-p-data
    DT-2: indicate-p-data
    AR-1: send-release-rq
    AR-2: indicate-release-rq
    AR-3: indicate-release-confirm close-transport
    AR-4: send-release-rp start-artim
    AR-5: stop-artim
    AR-6: indicate-p-data
    AR-7: send-p-data
    AR-8: indicate-release-collision
    AR-9: send-release-rp
    AR-10: indicate-release-confirm
    AA-1: send-abort-user start-artim
    AA-2: stop-artim close-transport
    AA-3: indicate-abort close-transport
    AA-4: indicate-provider-abort
    AA-5: stop-artim
    AA-6:
    AA-7: send-abort-provider
    AA-8: send-abort-provider indicate-provider-abort start-artim
";

fn parse_effect(token: &str) -> Effect {
    match token {
        "open-transport" => Effect::OpenTransport,
        "send-associate-rq" => Effect::SendAssociateRq,
        "indicate-accepted" => Effect::IndicateAssociateAccepted,
        "indicate-rejected" => Effect::IndicateAssociateRejected,
        "indicate-associate-rq" => Effect::IndicateAssociateRequest,
        "send-associate-ac" => Effect::SendAssociateAc,
        "send-associate-rj" => Effect::SendAssociateRj,
        "send-p-data" => Effect::SendPData,
        "indicate-p-data" => Effect::IndicatePData,
        "send-release-rq" => Effect::SendReleaseRq,
        "indicate-release-rq" => Effect::IndicateReleaseRequest,
        "indicate-release-confirm" => Effect::IndicateReleaseConfirm,
        "send-release-rp" => Effect::SendReleaseRp,
        "indicate-release-collision" => Effect::IndicateReleaseCollision,
        "send-abort-user" => Effect::SendAbort(AbortSource::ServiceUser),
        "send-abort-provider" => Effect::SendAbort(AbortSource::ServiceProvider),
        "indicate-abort" => Effect::IndicateAbort,
        "indicate-provider-abort" => Effect::IndicateProviderAbort,
        "start-artim" => Effect::StartArtim,
        "stop-artim" => Effect::StopArtim,
        "close-transport" => Effect::CloseTransport,
        other => panic!("unknown effect token {other:?} in the test expectations"),
    }
}

/// `ACTION_EFFECTS` as a map from `AE-1` (or `AE-6+`) to the effect list.
fn expected_action_effects() -> HashMap<String, Vec<Effect>> {
    ACTION_EFFECTS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, effects) = line.split_once(':').expect("`NAME: effects`");
            (
                name.to_owned(),
                effects.split_whitespace().map(parse_effect).collect(),
            )
        })
        .collect()
}

/// Every event, with Evt6 in both flavours, and how the expectations spell it.
fn all_events() -> [(&'static str, Event); 20] {
    [
        ("Evt1", Event::AssociateRequest),
        ("Evt2", Event::TransportConnectConfirm),
        ("Evt3", Event::AssociateAcReceived),
        ("Evt4", Event::AssociateRjReceived),
        ("Evt5", Event::TransportConnectIndication),
        ("Evt6+", Event::AssociateRqReceived { acceptable: true }),
        ("Evt6-", Event::AssociateRqReceived { acceptable: false }),
        ("Evt7", Event::AssociateResponseAccept),
        ("Evt8", Event::AssociateResponseReject),
        ("Evt9", Event::PDataRequest),
        ("Evt10", Event::PDataReceived),
        ("Evt11", Event::ReleaseRequest),
        ("Evt12", Event::ReleaseRqReceived),
        ("Evt13", Event::ReleaseRpReceived),
        ("Evt14", Event::ReleaseResponse),
        ("Evt15", Event::AbortRequest),
        ("Evt16", Event::AbortReceived),
        ("Evt17", Event::TransportClosed),
        ("Evt18", Event::ArtimExpired),
        ("Evt19", Event::InvalidPdu),
    ]
}

fn event_named(name: &str) -> Event {
    all_events()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("unknown event {name:?} in the test expectations"))
}

/// A filled cell: the action's name and the next state for the requestor and for the acceptor.
#[derive(Debug)]
struct Cell {
    action: String,
    next_requestor: u8,
    next_acceptor: u8,
}

fn parse_state_number(text: &str) -> u8 {
    text.trim()
        .strip_prefix("Sta")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad state {text:?} in the test expectations"))
}

/// Parses one column: event spelling → `None` (empty cell) or the filled cell.
fn parse_column(column: &str) -> Vec<(String, Option<Cell>)> {
    column
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (event, rest) = line.split_once(':').expect("`EvtN: ...`");
            let rest = rest.trim();
            let cell = (rest != "-").then(|| {
                let (action, next) = rest.split_once("->").expect("`ACTION -> StaN`");
                let (next_requestor, next_acceptor) = match next.split_once('|') {
                    Some((r, a)) => (parse_state_number(r), parse_state_number(a)),
                    None => (parse_state_number(next), parse_state_number(next)),
                };
                Cell {
                    action: action.trim().to_owned(),
                    next_requestor,
                    next_acceptor,
                }
            });
            (event.trim().to_owned(), cell)
        })
        .collect()
}

/// Event sequences that bring a fresh machine of the given role into a state, through the
/// table itself (no back door): (state, is_requestor, path).
fn paths_to(state: State) -> Vec<(bool, Vec<Event>)> {
    use Event::*;
    let accept = AssociateRqReceived { acceptable: true };
    let reject = AssociateRqReceived { acceptable: false };
    let sta6_requestor = vec![
        AssociateRequest,
        TransportConnectConfirm,
        AssociateAcReceived,
    ];
    let sta6_acceptor = vec![TransportConnectIndication, accept, AssociateResponseAccept];
    let then = |base: &Vec<Event>, more: &[Event]| [base.as_slice(), more].concat();
    match state {
        State::Sta1 => vec![(true, vec![]), (false, vec![])],
        State::Sta2 => vec![(false, vec![TransportConnectIndication])],
        State::Sta3 => vec![(false, vec![TransportConnectIndication, accept])],
        State::Sta4 => vec![(true, vec![AssociateRequest])],
        State::Sta5 => vec![(true, vec![AssociateRequest, TransportConnectConfirm])],
        State::Sta6 => vec![
            (true, sta6_requestor.clone()),
            (false, sta6_acceptor.clone()),
        ],
        State::Sta7 => vec![
            (true, then(&sta6_requestor, &[ReleaseRequest])),
            (false, then(&sta6_acceptor, &[ReleaseRequest])),
        ],
        State::Sta8 => vec![
            (true, then(&sta6_requestor, &[ReleaseRqReceived])),
            (false, then(&sta6_acceptor, &[ReleaseRqReceived])),
        ],
        State::Sta9 => vec![(
            true,
            then(&sta6_requestor, &[ReleaseRequest, ReleaseRqReceived]),
        )],
        State::Sta10 => {
            vec![(
                false,
                then(&sta6_acceptor, &[ReleaseRequest, ReleaseRqReceived]),
            )]
        }
        State::Sta11 => vec![(
            true,
            then(
                &sta6_requestor,
                &[ReleaseRequest, ReleaseRqReceived, ReleaseResponse],
            ),
        )],
        State::Sta12 => vec![(
            false,
            then(
                &sta6_acceptor,
                &[ReleaseRequest, ReleaseRqReceived, ReleaseRpReceived],
            ),
        )],
        State::Sta13 => vec![
            (false, vec![TransportConnectIndication, reject]),
            (
                false,
                vec![TransportConnectIndication, accept, AssociateResponseReject],
            ),
            (true, then(&sta6_requestor, &[AbortRequest])),
        ],
    }
}

fn machine_in(state: State, is_requestor: bool, path: &[Event]) -> Machine {
    let mut machine = if is_requestor {
        Machine::new_requestor()
    } else {
        Machine::new_acceptor()
    };
    for &event in path {
        machine
            .handle(event)
            .unwrap_or_else(|e| panic!("path to {state}: {e}"));
    }
    assert_eq!(
        machine.state(),
        state,
        "path {path:?} does not lead to {state}"
    );
    machine
}

/// Drives every event of Table 9-10 in `state` (from a fresh machine brought there by each
/// path) and checks action, next state and effects against the expectations above.
fn check_state(state: State, column: &str) {
    let cells = parse_column(column);
    let spelled: Vec<&str> = cells.iter().map(|(event, _)| event.as_str()).collect();
    let all: Vec<&str> = all_events().iter().map(|(name, _)| *name).collect();
    assert_eq!(
        spelled, all,
        "the expectation for {state} must list every event once, in order"
    );
    let action_effects = expected_action_effects();

    for (is_requestor, path) in paths_to(state) {
        for (event_name, cell) in &cells {
            let event = event_named(event_name);
            let mut machine = machine_in(state, is_requestor, &path);
            let result = machine.handle(event);
            let context = format!("{state} + {event_name} (requestor: {is_requestor})");
            match cell {
                None => {
                    assert_eq!(
                        result,
                        Err(FsmError::InvalidEvent { state, event }),
                        "{context}: empty cell"
                    );
                    assert_eq!(machine.state(), state, "{context}: state must not change");
                    assert_eq!(table_action(state, event), None, "{context}: table_action");
                }
                Some(cell) => {
                    let transition = result.unwrap_or_else(|e| panic!("{context}: {e}"));
                    assert_eq!(transition.action.name(), cell.action, "{context}: action");
                    assert_eq!(
                        table_action(state, event).map(|a| a.name()),
                        Some(cell.action.as_str()),
                        "{context}: table_action"
                    );
                    let next = if is_requestor {
                        cell.next_requestor
                    } else {
                        cell.next_acceptor
                    };
                    assert_eq!(transition.to.number(), next, "{context}: next state");
                    assert_eq!(machine.state(), transition.to, "{context}: machine state");
                    assert_eq!(transition.from, state, "{context}: from");
                    assert_eq!(transition.event, event, "{context}: event");

                    let effects_key = match (cell.action.as_str(), event) {
                        ("AE-6", Event::AssociateRqReceived { acceptable: true }) => "AE-6+",
                        ("AE-6", _) => "AE-6-",
                        (name, _) => name,
                    };
                    let expected = action_effects
                        .get(effects_key)
                        .unwrap_or_else(|| panic!("no expected effects for {effects_key}"));
                    assert_eq!(
                        transition.effects.as_slice(),
                        expected,
                        "{context}: effects"
                    );
                }
            }
        }
    }
}

#[test]
fn sta1_idle() {
    check_state(State::Sta1, STA1);
}

#[test]
fn sta2_awaiting_associate_rq() {
    check_state(State::Sta2, STA2);
}

#[test]
fn sta3_awaiting_local_associate_response() {
    check_state(State::Sta3, STA3);
}

#[test]
fn sta4_awaiting_transport_open() {
    check_state(State::Sta4, STA4);
}

#[test]
fn sta5_awaiting_associate_ac_or_rj() {
    check_state(State::Sta5, STA5);
}

#[test]
fn sta6_established() {
    check_state(State::Sta6, STA6);
}

#[test]
fn sta7_awaiting_release_rp() {
    check_state(State::Sta7, STA7);
}

#[test]
fn sta8_awaiting_local_release_response() {
    check_state(State::Sta8, STA8);
}

#[test]
fn sta9_collision_requestor_awaiting_local_response() {
    check_state(State::Sta9, STA9);
}

#[test]
fn sta10_collision_acceptor_awaiting_release_rp() {
    check_state(State::Sta10, STA10);
}

#[test]
fn sta11_collision_requestor_awaiting_release_rp() {
    check_state(State::Sta11, STA11);
}

#[test]
fn sta12_collision_acceptor_awaiting_local_response() {
    check_state(State::Sta12, STA12);
}

#[test]
fn sta13_awaiting_transport_close() {
    check_state(State::Sta13, STA13);
}

#[test]
fn expectations_cover_all_247_cells_and_every_action() {
    let columns = [
        STA1, STA2, STA3, STA4, STA5, STA6, STA7, STA8, STA9, STA10, STA11, STA12, STA13,
    ];
    let mut cells = 0;
    let mut actions = BTreeSet::new();
    for column in columns {
        for (event, cell) in parse_column(column) {
            if event != "Evt6-" {
                cells += 1;
            }
            if let Some(cell) = cell {
                actions.insert(cell.action);
            }
        }
    }
    assert_eq!(cells, 13 * 19);
    assert_eq!(
        actions.len(),
        28,
        "every AE/DT/AR/AA action appears in Table 9-10: {actions:?}"
    );
    let with_effects: BTreeSet<String> = expected_action_effects()
        .into_keys()
        .map(|k| k.trim_end_matches(['+', '-']).to_owned())
        .collect();
    assert_eq!(actions, with_effects);
}

// ---------------------------------------------------------------------------------------------
// Numbers, names and the small types.
// ---------------------------------------------------------------------------------------------

#[test]
fn states_are_numbered_as_in_the_standard() {
    let numbers: Vec<u8> = State::ALL.iter().map(State::number).collect();
    assert_eq!(numbers, (1..=13).collect::<Vec<u8>>());
    assert_eq!(State::Sta13.to_string(), "Sta13");
    assert_eq!(State::Sta6.number(), 6);
}

#[test]
fn events_are_numbered_as_in_the_standard() {
    let expected: Vec<u8> = vec![
        1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
    ];
    let numbers: Vec<u8> = all_events().iter().map(|(_, e)| e.number()).collect();
    assert_eq!(numbers, expected);
    for (name, event) in all_events() {
        assert_eq!(event.to_string(), name.trim_end_matches(['+', '-']));
    }
}

#[test]
fn action_names_follow_the_standard() {
    assert_eq!(Action::Ae1.name(), "AE-1");
    assert_eq!(Action::Dt2.name(), "DT-2");
    assert_eq!(Action::Ar10.name(), "AR-10");
    assert_eq!(Action::Aa8.name(), "AA-8");
    assert_eq!(Action::Aa8.to_string(), "AA-8");
    assert!(
        Action::Ae6
            .description()
            .contains("acceptable by the service-provider")
    );
    assert!(Action::Aa1.description().contains("service-user source"));
    assert!(
        Action::Aa8
            .description()
            .contains("service-provider source")
    );
}

#[test]
fn invalid_event_error_names_state_and_event() {
    let mut machine = Machine::new_requestor();
    let error = machine.handle(Event::PDataRequest).unwrap_err();
    assert_eq!(
        error,
        FsmError::InvalidEvent {
            state: State::Sta1,
            event: Event::PDataRequest
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("Evt9") && message.contains("Sta1"),
        "{message}"
    );
    assert_eq!(machine.state(), State::Sta1);
}

#[test]
fn effects_list_behaves_like_a_slice() {
    let mut machine = Machine::new_acceptor();
    machine.handle(Event::TransportConnectIndication).unwrap();
    let t = machine
        .handle(Event::AssociateRqReceived { acceptable: false })
        .unwrap();
    assert_eq!(t.effects.len(), 3);
    assert!(t.effects.contains(Effect::SendAssociateRj));
    assert!(!t.effects.contains(Effect::CloseTransport));
    let in_order: Vec<Effect> = (&t.effects).into_iter().copied().collect();
    assert_eq!(
        in_order,
        [
            Effect::StopArtim,
            Effect::SendAssociateRj,
            Effect::StartArtim
        ]
    );
    assert_eq!(
        format!("{:?}", t.effects),
        "[StopArtim, SendAssociateRj, StartArtim]"
    );

    // AA-6: nothing to do.
    let ignored = machine.handle(Event::PDataReceived).unwrap();
    assert_eq!(ignored.action, Action::Aa6);
    assert!(ignored.effects.is_empty());
    assert_eq!(ignored.effects.as_slice(), &[] as &[Effect]);

    // Equality looks at the listed effects only: AR-5 and AA-5 both just stop ARTIM.
    let ar5 = machine.handle(Event::TransportClosed).unwrap();
    let mut other = Machine::new_acceptor();
    other.handle(Event::TransportConnectIndication).unwrap();
    let aa5 = other.handle(Event::TransportClosed).unwrap();
    assert_eq!((ar5.action, aa5.action), (Action::Ar5, Action::Aa5));
    assert_eq!(ar5.effects, aa5.effects);
    assert_ne!(ar5.effects, ignored.effects);
}

// ---------------------------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------------------------

/// Handles `event` and checks the action, the next state and the effects.
fn step(machine: &mut Machine, event: Event, action: Action, to: State, effects: &[Effect]) {
    let t = machine.handle(event).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (t.action, t.to, t.effects.as_slice()),
        (action, to, effects),
        "{event:?}"
    );
    assert_eq!(machine.state(), to);
}

#[test]
fn requestor_full_life() {
    use Effect::*;
    let mut m = Machine::new_requestor();
    assert!(m.is_requestor());
    assert_eq!(m.state(), State::Sta1);
    step(
        &mut m,
        Event::AssociateRequest,
        Action::Ae1,
        State::Sta4,
        &[OpenTransport],
    );
    step(
        &mut m,
        Event::TransportConnectConfirm,
        Action::Ae2,
        State::Sta5,
        &[SendAssociateRq],
    );
    step(
        &mut m,
        Event::AssociateAcReceived,
        Action::Ae3,
        State::Sta6,
        &[IndicateAssociateAccepted],
    );
    step(
        &mut m,
        Event::PDataRequest,
        Action::Dt1,
        State::Sta6,
        &[SendPData],
    );
    step(
        &mut m,
        Event::PDataReceived,
        Action::Dt2,
        State::Sta6,
        &[IndicatePData],
    );
    step(
        &mut m,
        Event::ReleaseRequest,
        Action::Ar1,
        State::Sta7,
        &[SendReleaseRq],
    );
    // The peer may still send data before it answers the release.
    step(
        &mut m,
        Event::PDataReceived,
        Action::Ar6,
        State::Sta7,
        &[IndicatePData],
    );
    step(
        &mut m,
        Event::ReleaseRpReceived,
        Action::Ar3,
        State::Sta1,
        &[IndicateReleaseConfirm, CloseTransport],
    );
}

#[test]
fn requestor_rejected() {
    use Effect::*;
    let mut m = Machine::new_requestor();
    step(
        &mut m,
        Event::AssociateRequest,
        Action::Ae1,
        State::Sta4,
        &[OpenTransport],
    );
    step(
        &mut m,
        Event::TransportConnectConfirm,
        Action::Ae2,
        State::Sta5,
        &[SendAssociateRq],
    );
    step(
        &mut m,
        Event::AssociateRjReceived,
        Action::Ae4,
        State::Sta1,
        &[IndicateAssociateRejected, CloseTransport],
    );
}

#[test]
fn acceptor_full_life() {
    use Effect::*;
    let mut m = Machine::new_acceptor();
    assert!(!m.is_requestor());
    step(
        &mut m,
        Event::TransportConnectIndication,
        Action::Ae5,
        State::Sta2,
        &[StartArtim],
    );
    step(
        &mut m,
        Event::AssociateRqReceived { acceptable: true },
        Action::Ae6,
        State::Sta3,
        &[StopArtim, IndicateAssociateRequest],
    );
    step(
        &mut m,
        Event::AssociateResponseAccept,
        Action::Ae7,
        State::Sta6,
        &[SendAssociateAc],
    );
    step(
        &mut m,
        Event::PDataReceived,
        Action::Dt2,
        State::Sta6,
        &[IndicatePData],
    );
    step(
        &mut m,
        Event::PDataRequest,
        Action::Dt1,
        State::Sta6,
        &[SendPData],
    );
    step(
        &mut m,
        Event::ReleaseRqReceived,
        Action::Ar2,
        State::Sta8,
        &[IndicateReleaseRequest],
    );
    // The user may still send pending data before answering the release.
    step(
        &mut m,
        Event::PDataRequest,
        Action::Ar7,
        State::Sta8,
        &[SendPData],
    );
    step(
        &mut m,
        Event::ReleaseResponse,
        Action::Ar4,
        State::Sta13,
        &[SendReleaseRp, StartArtim],
    );
    step(
        &mut m,
        Event::TransportClosed,
        Action::Ar5,
        State::Sta1,
        &[StopArtim],
    );
}

#[test]
fn acceptor_user_rejects_then_artim_expires() {
    use Effect::*;
    let mut m = Machine::new_acceptor();
    step(
        &mut m,
        Event::TransportConnectIndication,
        Action::Ae5,
        State::Sta2,
        &[StartArtim],
    );
    step(
        &mut m,
        Event::AssociateRqReceived { acceptable: true },
        Action::Ae6,
        State::Sta3,
        &[StopArtim, IndicateAssociateRequest],
    );
    step(
        &mut m,
        Event::AssociateResponseReject,
        Action::Ae8,
        State::Sta13,
        &[SendAssociateRj, StartArtim],
    );
    // The peer does not close: ARTIM closes for us.
    step(
        &mut m,
        Event::ArtimExpired,
        Action::Aa2,
        State::Sta1,
        &[StopArtim, CloseTransport],
    );
}

#[test]
fn release_collision_requestor_side() {
    use Effect::*;
    let mut m = machine_in(State::Sta6, true, &paths_to(State::Sta6)[0].1);
    assert!(m.is_requestor());
    step(
        &mut m,
        Event::ReleaseRequest,
        Action::Ar1,
        State::Sta7,
        &[SendReleaseRq],
    );
    step(
        &mut m,
        Event::ReleaseRqReceived,
        Action::Ar8,
        State::Sta9,
        &[IndicateReleaseCollision],
    );
    step(
        &mut m,
        Event::ReleaseResponse,
        Action::Ar9,
        State::Sta11,
        &[SendReleaseRp],
    );
    step(
        &mut m,
        Event::ReleaseRpReceived,
        Action::Ar3,
        State::Sta1,
        &[IndicateReleaseConfirm, CloseTransport],
    );
}

#[test]
fn release_collision_acceptor_side() {
    use Effect::*;
    let mut m = machine_in(State::Sta6, false, &paths_to(State::Sta6)[1].1);
    assert!(!m.is_requestor());
    step(
        &mut m,
        Event::ReleaseRequest,
        Action::Ar1,
        State::Sta7,
        &[SendReleaseRq],
    );
    step(
        &mut m,
        Event::ReleaseRqReceived,
        Action::Ar8,
        State::Sta10,
        &[IndicateReleaseCollision],
    );
    step(
        &mut m,
        Event::ReleaseRpReceived,
        Action::Ar10,
        State::Sta12,
        &[IndicateReleaseConfirm],
    );
    step(
        &mut m,
        Event::ReleaseResponse,
        Action::Ar4,
        State::Sta13,
        &[SendReleaseRp, StartArtim],
    );
    step(
        &mut m,
        Event::TransportClosed,
        Action::Ar5,
        State::Sta1,
        &[StopArtim],
    );
}

/// What the peer's machine sees when one side carries out `effect` (a PDU written, or the
/// transport closed).
fn seen_by_peer(effect: Effect) -> Option<Event> {
    match effect {
        Effect::SendAssociateRq => Some(Event::AssociateRqReceived { acceptable: true }),
        Effect::SendAssociateAc => Some(Event::AssociateAcReceived),
        Effect::SendAssociateRj => Some(Event::AssociateRjReceived),
        Effect::SendPData => Some(Event::PDataReceived),
        Effect::SendReleaseRq => Some(Event::ReleaseRqReceived),
        Effect::SendReleaseRp => Some(Event::ReleaseRpReceived),
        Effect::SendAbort(_) => Some(Event::AbortReceived),
        Effect::CloseTransport => Some(Event::TransportClosed),
        _ => None,
    }
}

/// Feeds `event` to `machine` and returns what goes on the wire to the peer.
fn run(machine: &mut Machine, event: Event) -> Vec<Event> {
    let t = machine.handle(event).unwrap_or_else(|e| panic!("{e}"));
    t.effects.iter().filter_map(|&e| seen_by_peer(e)).collect()
}

fn deliver(machine: &mut Machine, wire: Vec<Event>) -> Vec<Event> {
    wire.into_iter()
        .flat_map(|event| run(machine, event))
        .collect()
}

#[test]
fn two_machines_collide_on_release_and_both_end_idle() {
    let mut requestor = Machine::new_requestor();
    let mut acceptor = Machine::new_acceptor();
    run(&mut requestor, Event::AssociateRequest);
    assert!(run(&mut acceptor, Event::TransportConnectIndication).is_empty());
    let rq = run(&mut requestor, Event::TransportConnectConfirm);
    assert_eq!(deliver(&mut acceptor, rq), []);
    let ac = run(&mut acceptor, Event::AssociateResponseAccept);
    assert_eq!(deliver(&mut requestor, ac), []);
    assert_eq!(
        (requestor.state(), acceptor.state()),
        (State::Sta6, State::Sta6)
    );

    // Both users release at the same time: the two A-RELEASE-RQ PDUs cross.
    let from_requestor = run(&mut requestor, Event::ReleaseRequest);
    let from_acceptor = run(&mut acceptor, Event::ReleaseRequest);
    assert_eq!(deliver(&mut requestor, from_acceptor), []);
    assert_eq!(deliver(&mut acceptor, from_requestor), []);
    assert_eq!(
        (requestor.state(), acceptor.state()),
        (State::Sta9, State::Sta10)
    );

    // The requestor's user answers first (PS3.8 §7.2 collision rules).
    let rp = run(&mut requestor, Event::ReleaseResponse);
    assert_eq!(deliver(&mut acceptor, rp), []);
    assert_eq!(
        (requestor.state(), acceptor.state()),
        (State::Sta11, State::Sta12)
    );
    let rp = run(&mut acceptor, Event::ReleaseResponse);
    let closed = deliver(&mut requestor, rp);
    assert_eq!(closed, [Event::TransportClosed]);
    assert_eq!(deliver(&mut acceptor, closed), []);
    assert_eq!(
        (requestor.state(), acceptor.state()),
        (State::Sta1, State::Sta1)
    );
}

#[test]
fn artim_expires_while_awaiting_associate_rq() {
    use Effect::*;
    let mut m = Machine::new_acceptor();
    step(
        &mut m,
        Event::TransportConnectIndication,
        Action::Ae5,
        State::Sta2,
        &[StartArtim],
    );
    step(
        &mut m,
        Event::ArtimExpired,
        Action::Aa2,
        State::Sta1,
        &[StopArtim, CloseTransport],
    );
}

#[test]
fn artim_expires_while_awaiting_transport_close() {
    use Effect::*;
    let mut m = Machine::new_acceptor();
    step(
        &mut m,
        Event::TransportConnectIndication,
        Action::Ae5,
        State::Sta2,
        &[StartArtim],
    );
    step(
        &mut m,
        Event::AssociateRqReceived { acceptable: false },
        Action::Ae6,
        State::Sta13,
        &[StopArtim, SendAssociateRj, StartArtim],
    );
    // A peer that keeps talking is ignored, or aborted for an A-ASSOCIATE-RQ / garbage.
    step(&mut m, Event::PDataReceived, Action::Aa6, State::Sta13, &[]);
    step(
        &mut m,
        Event::InvalidPdu,
        Action::Aa7,
        State::Sta13,
        &[SendAbort(AbortSource::ServiceProvider)],
    );
    step(
        &mut m,
        Event::ArtimExpired,
        Action::Aa2,
        State::Sta1,
        &[StopArtim, CloseTransport],
    );
}

#[test]
fn local_abort_then_peer_closes() {
    use Effect::*;
    let mut m = machine_in(State::Sta6, true, &paths_to(State::Sta6)[0].1);
    step(
        &mut m,
        Event::AbortRequest,
        Action::Aa1,
        State::Sta13,
        &[SendAbort(AbortSource::ServiceUser), StartArtim],
    );
    step(
        &mut m,
        Event::TransportClosed,
        Action::Ar5,
        State::Sta1,
        &[StopArtim],
    );
}

#[test]
fn abort_before_transport_is_open() {
    use Effect::*;
    let mut m = Machine::new_requestor();
    step(
        &mut m,
        Event::AssociateRequest,
        Action::Ae1,
        State::Sta4,
        &[OpenTransport],
    );
    step(
        &mut m,
        Event::AbortRequest,
        Action::Aa2,
        State::Sta1,
        &[StopArtim, CloseTransport],
    );
}

#[test]
fn unexpected_pdu_in_data_transfer_is_a_provider_abort() {
    use Effect::*;
    let mut m = machine_in(State::Sta6, false, &paths_to(State::Sta6)[1].1);
    step(
        &mut m,
        Event::AssociateAcReceived,
        Action::Aa8,
        State::Sta13,
        &[
            SendAbort(AbortSource::ServiceProvider),
            IndicateProviderAbort,
            StartArtim,
        ],
    );
    // The peer answers our A-ABORT by aborting too: close.
    step(
        &mut m,
        Event::AbortReceived,
        Action::Aa2,
        State::Sta1,
        &[StopArtim, CloseTransport],
    );
}

#[test]
fn peer_abort_and_connection_loss_in_data_transfer() {
    use Effect::*;
    let path = &paths_to(State::Sta6)[0].1;
    let mut m = machine_in(State::Sta6, true, path);
    step(
        &mut m,
        Event::AbortReceived,
        Action::Aa3,
        State::Sta1,
        &[IndicateAbort, CloseTransport],
    );
    let mut m = machine_in(State::Sta6, true, path);
    step(
        &mut m,
        Event::TransportClosed,
        Action::Aa4,
        State::Sta1,
        &[IndicateProviderAbort],
    );
}

#[test]
fn refused_primitive_leaves_the_association_usable() {
    let mut m = machine_in(State::Sta6, true, &paths_to(State::Sta6)[0].1);
    assert_eq!(
        m.handle(Event::AssociateRequest),
        Err(FsmError::InvalidEvent {
            state: State::Sta6,
            event: Event::AssociateRequest
        })
    );
    assert_eq!(m.state(), State::Sta6);
    step(
        &mut m,
        Event::PDataRequest,
        Action::Dt1,
        State::Sta6,
        &[Effect::SendPData],
    );
}
