use std::time::Duration;

use dimsum_ul::pdu::DecodeLimits;

/// The timers of an association (PS3.8 §9.1.5 for ARTIM; the others are local policy).
///
/// `None` waits for ever. Defaults follow DCMTK and pynetdicom: 30 s for connect, ACSE and
/// ARTIM, no DIMSE limit, and a 5 minute idle limit for service providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Option<Duration>,
    /// Waiting for A-ASSOCIATE-AC/RJ and for A-RELEASE-RP.
    pub acse: Option<Duration>,
    /// Waiting for a DIMSE response, or for the next fragment of a message being received.
    pub dimse: Option<Duration>,
    /// Association request/reject/release timer: how long an acceptor waits for the
    /// A-ASSOCIATE-RQ after the connection opens, and how long either side waits for the peer to
    /// close the connection after an A-ASSOCIATE-RJ, A-RELEASE-RP or A-ABORT.
    pub artim: Duration,
    /// How long a service provider waits for the next command before it aborts.
    pub idle: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Some(Duration::from_secs(30)),
            acse: Some(Duration::from_secs(30)),
            dimse: None,
            artim: Duration::from_secs(30),
            idle: Some(Duration::from_secs(300)),
        }
    }
}

/// Size limits applied to what a peer sends (PS3.8 §9.3, PS3.7 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Limits for PDU decoding; `max_pdata_length` is set from the max PDU length we announce.
    pub decode: DecodeLimits,
    /// The longest command set accepted (command sets are small; 64 KiB is generous).
    pub max_command_length: usize,
    /// The largest data set [`crate::Association::receive_data_set`] collects in memory.
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
