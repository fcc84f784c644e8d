//! Sending side: splitting a command set or a data set into P-DATA-TF PDUs that fit the peer's
//! maximum PDU length (PS3.7 §6.3.1, PS3.8 §9.3.5, Annex E).
//!
//! Every PDU written here carries exactly one PDV. Its 12-byte header (PDU header and PDV
//! header) comes from [`write_pdata_header`], so a driver can write `(header, payload slice)`
//! with a vectored write and never copy a large payload; [`encode_pdata_pdus`] is the copying
//! convenience for small payloads such as command sets.
//!
//! A data set need not be in memory at once: a driver reading a file in chunks calls
//! [`encode_pdata_chunk`] (or iterates [`pdv_fragments`]) once per chunk with `is_last_chunk`
//! set on the final one; only the final fragment of the final chunk is flagged "last".

use bytes::{BufMut, Bytes, BytesMut};
use dimsum_ul::pdu::{PDU_HEADER_LEN, PDV_HEADER_LEN, PduType};

use crate::command::CommandEncodeError;
use crate::message::Message;

/// Length of the header [`write_pdata_header`] produces: PDU header (6) + PDV header (6).
pub const PDATA_HEADER_LEN: usize = PDU_HEADER_LEN + PDV_HEADER_LEN;

/// The PDU length used when the peer announced 0 (no limit, PS3.8 §D.1): 1 MiB. Sending
/// smaller PDUs than a peer accepts is always allowed, and this keeps one PDU's worth of
/// buffering bounded.
pub const UNLIMITED_PEER_PDU_LEN: u32 = 1024 * 1024;

/// Message control header bit 0: the PDV holds command information (PS3.8 Annex E.2).
const CONTROL_COMMAND: u8 = 0x01;
/// Message control header bit 1: the PDV holds the last fragment (PS3.8 Annex E.2).
const CONTROL_LAST: u8 = 0x02;

/// Why a P-DATA-TF PDU could not be built (PS3.8 §9.3.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("PDV of {len} bytes does not fit in the 32-bit length of a P-DATA-TF PDU")]
    TooLong { len: usize },
}

/// The longest PDV payload (fragment) that fits in one P-DATA-TF PDU for a peer whose maximum
/// length (User Information item 0x51, PS3.8 §D.1) is `peer_max_pdu`: the maximum minus the
/// 6-byte PDV header (item length, context id, control). A maximum of 0 means "no limit" and is
/// read as [`UNLIMITED_PEER_PDU_LEN`]. A maximum too small for any payload (6 or less, which no
/// real peer announces) yields 1 byte rather than 0, so that progress is always possible.
pub fn max_pdv_data_len(peer_max_pdu: u32) -> usize {
    let max_pdu = if peer_max_pdu == 0 {
        UNLIMITED_PEER_PDU_LEN
    } else {
        peer_max_pdu
    };
    usize::try_from(max_pdu)
        .unwrap_or(usize::MAX)
        .saturating_sub(PDV_HEADER_LEN)
        .max(1)
}

/// The message control header byte of a PDV (PS3.8 Annex E.2).
pub fn control_header(is_command: bool, is_last: bool) -> u8 {
    let mut control = 0;
    if is_command {
        control |= CONTROL_COMMAND;
    }
    if is_last {
        control |= CONTROL_LAST;
    }
    control
}

/// Writes the header of a P-DATA-TF PDU holding one PDV of `data_len` bytes (PS3.8 §9.3.5,
/// Table 9-22, §9.3.5.1): PDU type 04, reserved, PDU length; PDV item length, presentation
/// context id, message control header. The `data_len` payload bytes follow it on the wire.
pub fn write_pdata_header(
    out: &mut [u8; PDATA_HEADER_LEN],
    presentation_context_id: u8,
    is_command: bool,
    is_last: bool,
    data_len: usize,
) -> Result<(), FragmentError> {
    let too_long = || FragmentError::TooLong { len: data_len };
    // PDV item length counts the context id and control header; PDU length counts the PDV item
    // length field as well.
    let item_len = u32::try_from(data_len)
        .ok()
        .and_then(|len| len.checked_add(2))
        .ok_or_else(too_long)?;
    let pdu_len = item_len.checked_add(4).ok_or_else(too_long)?;
    let [p0, p1, p2, p3] = pdu_len.to_be_bytes();
    let [i0, i1, i2, i3] = item_len.to_be_bytes();
    *out = [
        PduType::PData as u8,
        0,
        p0,
        p1,
        p2,
        p3,
        i0,
        i1,
        i2,
        i3,
        presentation_context_id,
        control_header(is_command, is_last),
    ];
    Ok(())
}

/// Splits `chunk` into PDV payloads of at most `max_data_len` bytes, each paired with its
/// "last fragment" flag: set on the final piece only when `is_last_chunk`. An empty chunk yields
/// one empty fragment (an empty data set or a final flag with nothing left to send still needs
/// a PDV).
pub fn pdv_fragments(
    chunk: &[u8],
    max_data_len: usize,
    is_last_chunk: bool,
) -> impl Iterator<Item = (&[u8], bool)> {
    let max_data_len = max_data_len.max(1);
    let count = chunk.len().div_ceil(max_data_len).max(1);
    (0..count).map(move |index| {
        let start = index * max_data_len;
        let end = chunk.len().min(start.saturating_add(max_data_len));
        let piece = chunk.get(start..end).unwrap_or_default();
        (piece, is_last_chunk && index + 1 == count)
    })
}

/// Appends to `out` the P-DATA-TF PDUs (one PDV each) that carry `chunk`, sized for
/// `peer_max_pdu`; the final PDV is flagged last only when `is_last_chunk`. Returns the number of
/// PDUs written. (Pieces are cut to [`max_pdv_data_len`], so the error cannot happen; it is
/// returned rather than hidden.)
pub fn encode_pdata_chunk(
    presentation_context_id: u8,
    is_command: bool,
    chunk: &[u8],
    is_last_chunk: bool,
    peer_max_pdu: u32,
    out: &mut BytesMut,
) -> Result<usize, FragmentError> {
    let max_data_len = max_pdv_data_len(peer_max_pdu);
    let mut written = 0;
    let mut header = [0; PDATA_HEADER_LEN];
    for (piece, is_last) in pdv_fragments(chunk, max_data_len, is_last_chunk) {
        write_pdata_header(
            &mut header,
            presentation_context_id,
            is_command,
            is_last,
            piece.len(),
        )?;
        out.reserve(PDATA_HEADER_LEN + piece.len());
        out.put_slice(&header);
        out.put_slice(piece);
        written += 1;
    }
    Ok(written)
}

/// Appends to `out` the P-DATA-TF PDUs (one PDV each) that carry the whole of `data`, the last
/// one flagged last. Returns the number of PDUs written.
pub fn encode_pdata_pdus(
    presentation_context_id: u8,
    is_command: bool,
    data: &[u8],
    peer_max_pdu: u32,
    out: &mut BytesMut,
) -> Result<usize, FragmentError> {
    encode_pdata_chunk(
        presentation_context_id,
        is_command,
        data,
        true,
        peer_max_pdu,
        out,
    )
}

/// The encoded command set of a message (implicit VR little endian, PS3.7 §6.3.1).
pub fn encode_command(message: &Message) -> Result<Bytes, CommandEncodeError> {
    message.to_command_set().encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_data_len_subtracts_pdv_header() {
        assert_eq!(max_pdv_data_len(16_384), 16_378);
        assert_eq!(max_pdv_data_len(4096), 4090);
        assert_eq!(max_pdv_data_len(0), 1024 * 1024 - 6);
        assert_eq!(max_pdv_data_len(6), 1);
        assert_eq!(max_pdv_data_len(1), 1);
    }

    #[test]
    fn header_layout() {
        let mut header = [0; PDATA_HEADER_LEN];
        write_pdata_header(&mut header, 3, true, true, 10).unwrap();
        assert_eq!(header, [0x04, 0, 0, 0, 0, 16, 0, 0, 0, 12, 3, 0x03]);
        write_pdata_header(&mut header, 5, false, false, 0x0001_0000).unwrap();
        assert_eq!(header, [0x04, 0, 0, 1, 0, 6, 0, 1, 0, 2, 5, 0x00]);
        write_pdata_header(&mut header, 5, false, true, 0).unwrap();
        assert_eq!(header[11], 0x02);
        write_pdata_header(&mut header, 5, true, false, 0).unwrap();
        assert_eq!(header[11], 0x01);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn header_rejects_lengths_beyond_u32() {
        let mut header = [0; PDATA_HEADER_LEN];
        let len = u32::MAX as usize - 5;
        assert_eq!(
            write_pdata_header(&mut header, 1, false, true, len),
            Err(FragmentError::TooLong { len })
        );
        assert!(write_pdata_header(&mut header, 1, false, true, len - 1).is_ok());
    }

    #[test]
    fn fragments_flag_only_the_final_piece_of_the_final_chunk() {
        let data = [7u8; 10];
        let pieces: Vec<_> = pdv_fragments(&data, 4, true)
            .map(|(p, last)| (p.len(), last))
            .collect();
        assert_eq!(pieces, [(4, false), (4, false), (2, true)]);
        let pieces: Vec<_> = pdv_fragments(&data, 4, false)
            .map(|(p, last)| (p.len(), last))
            .collect();
        assert_eq!(pieces, [(4, false), (4, false), (2, false)]);
        let pieces: Vec<_> = pdv_fragments(&[], 4, true)
            .map(|(p, last)| (p.len(), last))
            .collect();
        assert_eq!(pieces, [(0, true)]);
    }
}
