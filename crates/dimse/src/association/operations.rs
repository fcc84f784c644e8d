//! The operations in flight on an association, in both directions, and the asynchronous
//! operations window that bounds them (PS3.7 §9.1, Annex D.3.3.3).

use std::collections::BTreeMap;

use crate::message::CommandField;

/// A DIMSE operation one side invoked and the other has not finished answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Operation {
    /// The request's command field (C-STORE-RQ, C-FIND-RQ, …).
    pub request: CommandField,
    pub presentation_context_id: u8,
    /// For an operation we invoked: whether the request (with its data set) is fully sent, so
    /// that a response is due.
    pub request_sent: bool,
}

/// The request command field a response answers (C-STORE-RSP → C-STORE-RQ).
pub(super) fn request_for(response: CommandField) -> Option<CommandField> {
    CommandField::from_code(response.code() & 0x7FFF).filter(|_| response.is_response())
}

/// Whether the operation may answer with pending statuses and may be cancelled: C-FIND, C-GET
/// and C-MOVE (PS3.7 §9.1.2–9.1.4).
pub(super) fn is_multi_response(request: CommandField) -> bool {
    matches!(
        request,
        CommandField::CFindRq | CommandField::CGetRq | CommandField::CMoveRq
    )
}

/// How many operations may be outstanding in one direction: `None` is unlimited (a window
/// value of 0, PS3.7 §D.3.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window(Option<u16>);

impl Window {
    /// Synchronous operation: one at a time (no window negotiated).
    pub const ONE: Window = Window(Some(1));

    /// A negotiated window value; 0 means unlimited.
    pub fn from_negotiated(value: u16) -> Window {
        Window((value != 0).then_some(value))
    }

    /// Whether one more operation fits when `outstanding` are in flight.
    pub fn admits(self, outstanding: usize) -> bool {
        self.0.is_none_or(|limit| outstanding < usize::from(limit))
    }

    /// The limit, for messages (0 for unlimited).
    pub fn limit(self) -> u16 {
        self.0.unwrap_or(0)
    }
}

/// The operations of one direction, keyed by the request's Message ID.
#[derive(Debug, Clone)]
pub(super) struct Operations {
    pub window: Window,
    in_flight: BTreeMap<u16, Operation>,
}

impl Operations {
    pub fn new() -> Self {
        Self {
            window: Window::ONE,
            in_flight: BTreeMap::new(),
        }
    }

    pub fn get(&self, message_id: u16) -> Option<&Operation> {
        self.in_flight.get(&message_id)
    }

    pub fn get_mut(&mut self, message_id: u16) -> Option<&mut Operation> {
        self.in_flight.get_mut(&message_id)
    }

    pub fn contains(&self, message_id: u16) -> bool {
        self.in_flight.contains_key(&message_id)
    }

    pub fn insert(&mut self, message_id: u16, operation: Operation) {
        self.in_flight.insert(message_id, operation);
    }

    pub fn remove(&mut self, message_id: u16) -> Option<Operation> {
        self.in_flight.remove(&message_id)
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Whether one more operation fits the window.
    pub fn has_room(&self) -> bool {
        self.window.admits(self.in_flight.len())
    }

    /// Whether a response is due for some fully sent request.
    pub fn awaits_response(&self) -> bool {
        self.in_flight.values().any(|op| op.request_sent)
    }

    pub fn clear(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_map_to_their_requests() {
        assert_eq!(
            request_for(CommandField::CStoreRsp),
            Some(CommandField::CStoreRq)
        );
        assert_eq!(
            request_for(CommandField::NEventReportRsp),
            Some(CommandField::NEventReportRq)
        );
        assert_eq!(request_for(CommandField::CStoreRq), None);
    }

    #[test]
    fn window_zero_is_unlimited() {
        assert!(Window::from_negotiated(0).admits(60_000));
        assert!(Window::from_negotiated(2).admits(1));
        assert!(!Window::from_negotiated(2).admits(2));
        assert!(!Window::ONE.admits(1));
        assert_eq!(Window::from_negotiated(0).limit(), 0);
    }
}
