//! Strict, bounded encoding and decoding of PDUs (PS3.8 §9.3).
//!
//! API CONTRACT (implemented by the PDU codec work; signatures are fixed):
//! - [`read_header`] peeks at the 6-byte header.
//! - [`decode_from`] takes one whole PDU off the front of a receive buffer, if complete, after
//!   checking its length against [`DecodeLimits`] *before* waiting for/allocating the body.
//! - [`Pdu::encode`] appends the wire form to a buffer.

use bytes::BytesMut;

use super::{AbortReason, PDU_HEADER_LEN, Pdu, PduType, decode, encode};

/// Limits applied while decoding (PS3.8 §9.3.1, §D.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The maximum length we announced for P-DATA-TF PDUs (their length field); 0 = unlimited
    /// (then `max_unlimited_pdata_length` applies).
    pub max_pdata_length: u32,
    /// Hard cap on a P-DATA-TF when we announced 0 (no limit).
    pub max_unlimited_pdata_length: u32,
    /// Cap on the length of every other PDU type (associate RQ/AC/RJ, release, abort).
    pub max_control_pdu_length: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pdata_length: 16_384,
            max_unlimited_pdata_length: 64 * 1024 * 1024,
            max_control_pdu_length: 1024 * 1024,
        }
    }
}

/// The fixed header of every PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduHeader {
    pub pdu_type: u8,
    /// The PDU length field: bytes that follow the 6-byte header.
    pub length: u32,
}

/// Why a PDU could not be decoded. Each maps to the A-ABORT reason to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unrecognized PDU type 0x{0:02X}")]
    UnrecognizedPdu(u8),
    #[error("PDU type 0x{pdu_type:02X} claims {length} bytes, more than the limit of {max}")]
    TooLong { pdu_type: u8, length: u32, max: u32 },
    #[error("{context}: needs {needed} bytes, only {available} present")]
    Truncated {
        context: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("unrecognized PDU parameter: {0}")]
    UnrecognizedParameter(String),
    #[error("unexpected PDU parameter: {0}")]
    UnexpectedParameter(String),
    #[error("invalid PDU parameter value: {0}")]
    InvalidParameter(String),
}

impl DecodeError {
    /// The A-ABORT reason (PS3.8 Table 9-26) that reports this error to the peer.
    pub fn abort_reason(&self) -> AbortReason {
        match self {
            DecodeError::UnrecognizedPdu(_) => AbortReason::UnrecognizedPdu,
            DecodeError::UnrecognizedParameter(_) => AbortReason::UnrecognizedPduParameter,
            DecodeError::UnexpectedParameter(_) => AbortReason::UnexpectedPduParameter,
            DecodeError::TooLong { .. }
            | DecodeError::Truncated { .. }
            | DecodeError::InvalidParameter(_) => AbortReason::InvalidPduParameterValue,
        }
    }
}

/// Why a PDU could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} is {len} bytes long, longer than the maximum {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid value for {field}: {reason}")]
    InvalidValue { field: &'static str, reason: String },
}

/// Reads the PDU header at the front of `buf`; `None` when fewer than 6 bytes are present.
pub fn read_header(buf: &[u8]) -> Option<PduHeader> {
    let bytes: [u8; 6] = buf.get(..6)?.try_into().ok()?;
    Some(PduHeader {
        pdu_type: bytes[0],
        length: u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
    })
}

/// Takes one complete PDU off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. The header is validated (known type, length
/// within `limits`) as soon as it is present, so a hostile length is refused before the body is
/// awaited or allocated. P-DATA-TF values share `buf`'s storage (no copy).
///
/// An error found in the header leaves `buf` as it was; one found in the body comes after the
/// PDU was taken off `buf`. Either way the association is to be aborted with
/// [`DecodeError::abort_reason`].
pub fn decode_from(buf: &mut BytesMut, limits: &DecodeLimits) -> Result<Option<Pdu>, DecodeError> {
    let Some(header) = read_header(buf) else {
        return Ok(None);
    };
    let pdu_type =
        PduType::from_code(header.pdu_type).ok_or(DecodeError::UnrecognizedPdu(header.pdu_type))?;
    check_length(pdu_type, header, limits)?;
    let total = usize::try_from(header.length)
        .ok()
        .and_then(|length| length.checked_add(PDU_HEADER_LEN))
        .ok_or(DecodeError::TooLong {
            pdu_type: header.pdu_type,
            length: header.length,
            max: u32::MAX,
        })?;
    if buf.len() < total {
        return Ok(None);
    }
    let body = buf.split_to(total).freeze().slice(PDU_HEADER_LEN..);
    decode::decode_body(pdu_type, body).map(Some)
}

/// Bytes in the body of A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT (PS3.8 Tables 9-21 to 9-26).
const FIXED_BODY_LEN: u32 = 4;

/// Refuses a PDU whose length field exceeds `limits` or, for the fixed-size PDUs, differs from
/// their size; done on the header alone, before the body is awaited.
fn check_length(
    pdu_type: PduType,
    header: PduHeader,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    let max = match pdu_type {
        PduType::PData if limits.max_pdata_length == 0 => limits.max_unlimited_pdata_length,
        PduType::PData => limits.max_pdata_length,
        _ => limits.max_control_pdu_length,
    };
    if header.length > max {
        return Err(DecodeError::TooLong {
            pdu_type: header.pdu_type,
            length: header.length,
            max,
        });
    }
    let fixed_size = matches!(
        pdu_type,
        PduType::AssociateRj | PduType::ReleaseRq | PduType::ReleaseRp | PduType::Abort
    );
    if fixed_size && header.length != FIXED_BODY_LEN {
        return Err(DecodeError::InvalidParameter(format!(
            "{pdu_type:?} PDU length is {}, not {FIXED_BODY_LEN}",
            header.length
        )));
    }
    Ok(())
}

impl Pdu {
    /// Appends the wire form of this PDU to `out`.
    ///
    /// AE titles are padded with spaces to 16 bytes and must have 1–16 characters; UIDs are
    /// written as they are and must have 1–64 bytes; every item length must fit its field. On
    /// error nothing is appended.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        encode::encode_pdu(self, out).inspect_err(|_| out.truncate(start))
    }
}
