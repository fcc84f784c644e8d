use std::time::Duration;

use dimsum_dimse::association as proto;
use dimsum_dimse::command::CommandLimits;
use dimsum_ul::pdu::DecodeLimits;

/// The timers of an association (PS3.8 §9.1.5 for ARTIM; the others are local policy).
///
/// `None` switches a timer off. The defaults are safe for a server facing the internet: 30 s
/// for connect, ACSE and ARTIM; 60 s of silence in the middle of a message or while a response
/// is due (DIMSE) and 60 s for a peer that does not read what we send (write); 5 minutes idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and the TLS handshake).
    pub connect: Option<Duration>,
    /// Waiting for A-ASSOCIATE-AC/RJ and for A-RELEASE-RP.
    pub acse: Option<Duration>,
    /// The peer silent in the middle of a message, or while a response to our request is due.
    pub dimse: Option<Duration>,
    /// Association request/reject/release timer: how long an acceptor waits for the
    /// A-ASSOCIATE-RQ after the connection opens (and for the TLS handshake), and how long
    /// either side waits for the peer to close after an A-ASSOCIATE-RJ, A-RELEASE-RP or A-ABORT.
    pub artim: Duration,
    /// How long an association may have nothing in flight before it is aborted.
    pub idle: Option<Duration>,
    /// How long bytes to send may wait without the peer taking any of them.
    pub write: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        let association = proto::Timeouts::default();
        Self {
            connect: Some(Duration::from_secs(30)),
            acse: association.acse,
            dimse: association.dimse,
            artim: association.artim,
            idle: association.idle,
            write: association.write,
        }
    }
}

impl Timeouts {
    /// The timers the sans-IO association runs.
    pub fn association(&self) -> proto::Timeouts {
        proto::Timeouts {
            artim: self.artim,
            acse: self.acse,
            dimse: self.dimse,
            idle: self.idle,
            write: self.write,
        }
    }

    /// How long `timer` runs, in seconds (for messages).
    pub fn seconds(&self, timer: proto::Timer) -> f64 {
        let duration = match timer {
            proto::Timer::Artim => Some(self.artim),
            proto::Timer::Acse => self.acse,
            proto::Timer::Dimse => self.dimse,
            proto::Timer::Idle => self.idle,
            proto::Timer::Write => self.write,
        };
        duration.map_or(0.0, |d| d.as_secs_f64())
    }
}

/// Size limits applied to what a peer sends (PS3.8 §9.3, PS3.7 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Limits for PDU decoding; `max_pdata_length` is set from the max PDU length we announce.
    pub decode: DecodeLimits,
    /// The longest command set accepted (command sets are small; 64 KiB is generous).
    pub max_command_length: usize,
    /// The largest data set collected in memory (identifiers, small objects); larger ones are
    /// streamed.
    pub max_in_memory_data_set: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            max_command_length: 64 * 1024,
            max_in_memory_data_set: 64 * 1024 * 1024,
        }
    }
}

/// How a C-MOVE SCP retries its sub-associations to the move destination (PS3.4 C.4.2.3.1: the
/// SCP opens them as a Storage SCU; retrying is local policy).
///
/// A connection refused or broken before the association is established, an A-ASSOCIATE-RJ
/// that is rejected-transient or gives "temporary congestion" or "local limit exceeded" (PS3.8
/// §7.1.1.9), and destination associations that all end while sub-operations remain are
/// retried after `delay`, at most `retries` times per C-MOVE. A permanent rejection is not
/// retried; a C-CANCEL ends the wait at once. An instance the destination answered is never
/// sent again; one sent without an answer is sent again on the new association.
///
/// The default, 2 retries 1 s apart, rides out a destination that is restarting or has all its
/// associations busy (a DCMTK `storescp` or an Orthanc receiving another batch) without keeping
/// the requestor waiting long for one that is down; DCMTK's `dcmqrscp` does not retry at all
/// (`retries: 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveRetry {
    /// How many times to try again after the first attempt fails (0: never).
    pub retries: u32,
    /// How long to wait before each new attempt.
    pub delay: Duration,
}

impl Default for MoveRetry {
    fn default() -> Self {
        Self {
            retries: 2,
            delay: Duration::from_secs(1),
        }
    }
}

impl MoveRetry {
    /// No retries: the first failure to reach the destination is final.
    pub const NONE: MoveRetry = MoveRetry {
        retries: 0,
        delay: Duration::ZERO,
    };
}

/// The sans-IO association's configuration for these timers and limits.
pub(crate) fn association_config(timeouts: &Timeouts, limits: &Limits) -> proto::Config {
    proto::Config {
        timeouts: timeouts.association(),
        decode: limits.decode,
        command: CommandLimits {
            max_command_len: limits.max_command_length,
            ..CommandLimits::default()
        },
    }
}
