//! Bytes waiting to be written: small PDUs gathered into one buffer, large data fragments kept
//! as slices of the caller's buffers, so that a data set is never copied on its way out.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Payloads shorter than this are copied behind their PDU header; longer ones go out as their
/// own slice (a vectored write sends both without a copy).
const COPY_BELOW: usize = 4 * 1024;

#[derive(Debug, Default)]
pub(super) struct TransmitQueue {
    ready: VecDeque<Bytes>,
    /// Small pieces not yet cut into `ready`.
    gather: BytesMut,
    /// Bytes queued (ready and gathered).
    queued: usize,
    /// Bytes handed to the driver that it has not reported written yet.
    unwritten: usize,
}

impl TransmitQueue {
    /// Appends bytes produced by an encoder (a PDU).
    pub fn push_encoded(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let before = self.gather.len();
        encode(&mut self.gather);
        self.queued += self.gather.len() - before;
    }

    /// Appends a payload: copied when small, else queued as its own slice.
    pub fn push_payload(&mut self, payload: Bytes) {
        self.queued += payload.len();
        if payload.len() < COPY_BELOW {
            self.gather.extend_from_slice(&payload);
        } else {
            self.cut();
            self.ready.push_back(payload);
        }
    }

    fn cut(&mut self) {
        if !self.gather.is_empty() {
            self.ready.push_back(self.gather.split().freeze());
        }
    }

    /// The next bytes to write, in order.
    pub fn pop(&mut self) -> Option<Bytes> {
        if self.ready.is_empty() {
            self.cut();
        }
        let bytes = self.ready.pop_front()?;
        self.queued -= bytes.len();
        self.unwritten += bytes.len();
        Some(bytes)
    }

    /// The driver wrote `n` bytes of what it popped.
    pub fn written(&mut self, n: usize) {
        self.unwritten = self.unwritten.saturating_sub(n);
    }

    /// Bytes not yet written: queued here or held by the driver.
    pub fn backlog(&self) -> usize {
        self.queued + self.unwritten
    }

    /// Forgets everything (the transport is gone).
    pub fn clear(&mut self) {
        self.ready.clear();
        self.gather.clear();
        self.queued = 0;
        self.unwritten = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_are_gathered_and_large_ones_kept_as_slices() {
        let mut queue = TransmitQueue::default();
        queue.push_encoded(|out| out.extend_from_slice(b"head"));
        queue.push_payload(Bytes::from_static(b"small"));
        let large = Bytes::from(vec![7u8; COPY_BELOW]);
        queue.push_payload(large.clone());
        queue.push_encoded(|out| out.extend_from_slice(b"tail"));
        assert_eq!(queue.backlog(), 4 + 5 + COPY_BELOW + 4);
        assert_eq!(queue.pop().as_deref(), Some(&b"headsmall"[..]));
        let popped = queue.pop().expect("large slice");
        assert_eq!(popped.as_ptr(), large.as_ptr(), "not copied");
        assert_eq!(queue.pop().as_deref(), Some(&b"tail"[..]));
        assert_eq!(queue.pop(), None);
        assert_eq!(queue.backlog(), 4 + 5 + COPY_BELOW + 4);
        queue.written(9);
        queue.written(COPY_BELOW + 4);
        assert_eq!(queue.backlog(), 0);
    }
}
