//! The association's timers, as deadlines computed from what is in flight. Nothing here reads a
//! clock: every instant comes from the driver.

use std::time::{Duration, Instant};

use super::event::Timer;

/// How long each timer runs (PS3.8 §9.1.5 for ARTIM; the others are local policy). `None`
/// switches a timer off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// ARTIM: how long an acceptor waits for the A-ASSOCIATE-RQ after the connection opens,
    /// and how long either side waits for the peer to close after A-ASSOCIATE-RJ,
    /// A-RELEASE-RP or A-ABORT.
    pub artim: Duration,
    /// Waiting for the A-ASSOCIATE-AC/RJ, and for the A-RELEASE-RP.
    pub acse: Option<Duration>,
    /// How long the peer may stay silent in the middle of a message (between fragments), or
    /// while a response to a request we sent is due. On expiry the association is aborted.
    pub dimse: Option<Duration>,
    /// How long an established association may stay without any operation in flight and
    /// nothing arriving before it is aborted.
    pub idle: Option<Duration>,
    /// How long bytes we have to send may wait without the peer taking any of them; then the
    /// connection is closed (the peer cannot even be told).
    pub write: Option<Duration>,
}

impl Default for Timeouts {
    /// 30 s for ARTIM and ACSE, 60 s for DIMSE and write, 5 minutes idle.
    fn default() -> Self {
        Self {
            artim: Duration::from_secs(30),
            acse: Some(Duration::from_secs(30)),
            dimse: Some(Duration::from_secs(60)),
            idle: Some(Duration::from_secs(300)),
            write: Some(Duration::from_secs(60)),
        }
    }
}

/// The armed deadlines. ARTIM and ACSE are armed and disarmed by protocol steps; DIMSE, idle
/// and write are derived from the activity instants kept here and what is in flight.
#[derive(Debug, Clone, Default)]
pub(super) struct Deadlines {
    pub artim: Option<Instant>,
    pub acse: Option<Instant>,
    /// When bytes last arrived, or an operation last changed (a request finished sending).
    pub last_activity: Option<Instant>,
    /// When the transmit backlog last shrank, or became non-empty.
    pub last_write_progress: Option<Instant>,
}

/// What the association is doing, for the derived deadlines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Activity {
    /// Established (Sta6–Sta8), so that DIMSE and idle apply.
    pub established: bool,
    /// A message is partly received.
    pub receiving_message: bool,
    /// A response is due to a request we fully sent.
    pub awaiting_response: bool,
    /// Any operation in flight in either direction, or a message being sent.
    pub busy: bool,
    /// Bytes wait to be written.
    pub transmitting: bool,
}

impl Deadlines {
    /// Every armed deadline with its timer.
    pub fn armed(&self, timeouts: &Timeouts, activity: Activity) -> [Option<(Instant, Timer)>; 5] {
        let after = |since: Option<Instant>, limit: Option<Duration>| {
            since
                .zip(limit)
                .and_then(|(since, limit)| since.checked_add(limit))
        };
        let dimse = (activity.established
            && (activity.receiving_message || activity.awaiting_response))
            .then(|| after(self.last_activity, timeouts.dimse))
            .flatten();
        let idle = (activity.established && !activity.busy && !activity.receiving_message)
            .then(|| after(self.last_activity, timeouts.idle))
            .flatten();
        let write = activity
            .transmitting
            .then(|| after(self.last_write_progress, timeouts.write))
            .flatten();
        [
            self.artim.map(|at| (at, Timer::Artim)),
            self.acse.map(|at| (at, Timer::Acse)),
            dimse.map(|at| (at, Timer::Dimse)),
            idle.map(|at| (at, Timer::Idle)),
            write.map(|at| (at, Timer::Write)),
        ]
    }

    /// The earliest armed deadline.
    pub fn next(&self, timeouts: &Timeouts, activity: Activity) -> Option<(Instant, Timer)> {
        self.armed(timeouts, activity)
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }
}
