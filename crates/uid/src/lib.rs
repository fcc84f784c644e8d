//! # dimsum-uid — the syntax of a DICOM UID (PS3.5 §9.1)
//!
//! The one place that says what a well-formed UID is. `dimsum-ul` re-exports it as
//! `dimsum_ul::uid` (association negotiation checks every UID it proposes or accepts) and
//! `dimsum-dataset` uses it for the UIDs of the File Meta Information (PS3.10 §7.1). It is a
//! crate of its own because those two crates do not depend on each other.
//!
//! A UID here is the value without its padding: strip the trailing NUL (or the spaces some
//! implementations send) before checking.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The longest UID: 64 characters (PS3.5 §9.1, Table 6.2-1 for UI).
pub const MAX_LEN: usize = 64;

/// Why a string is not a well-formed UID (PS3.5 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("empty")]
    Empty,
    #[error("longer than 64 characters")]
    TooLong {
        /// The length of the value, in bytes.
        length: usize,
    },
    #[error("empty component")]
    EmptyComponent,
    #[error("a component contains a character other than a digit")]
    NotDigit,
    #[error("a component has a leading zero")]
    LeadingZero,
}

impl UidError {
    /// The reason as a fixed phrase, e.g. "empty component".
    pub fn reason(self) -> &'static str {
        match self {
            UidError::Empty => "empty",
            UidError::TooLong { .. } => "longer than 64 characters",
            UidError::EmptyComponent => "empty component",
            UidError::NotDigit => "a component contains a character other than a digit",
            UidError::LeadingZero => "a component has a leading zero",
        }
    }
}

/// Checks the syntax of PS3.5 §9.1: 1 to 64 characters, dot-separated components of digits,
/// each non-empty and without a leading zero (except "0" itself).
pub fn validate(uid: &str) -> Result<(), UidError> {
    if uid.is_empty() {
        return Err(UidError::Empty);
    }
    if uid.len() > MAX_LEN {
        return Err(UidError::TooLong { length: uid.len() });
    }
    for component in uid.split('.') {
        if component.is_empty() {
            return Err(UidError::EmptyComponent);
        }
        if !component.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UidError::NotDigit);
        }
        if component.len() > 1 && component.starts_with('0') {
            return Err(UidError::LeadingZero);
        }
    }
    Ok(())
}

/// Whether `uid` has the syntax of PS3.5 §9.1 (see [`validate`]).
pub fn is_valid(uid: &str) -> bool {
    validate(uid).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_uids() {
        for uid in [
            "0",
            "1.2",
            "1.2.840.10008.1.1",
            "1.2.840.10008.5.1.4.1.1.2",
            "2.25.329800735698586629295641978511506172918",
            "1.0.0.2",
            &"1".repeat(MAX_LEN),
        ] {
            assert_eq!(validate(uid), Ok(()), "{uid}");
            assert!(is_valid(uid), "{uid}");
        }
    }

    #[test]
    fn invalid_uids_with_their_reason() {
        let long = "1".repeat(MAX_LEN + 1);
        for (uid, error) in [
            ("", UidError::Empty),
            (long.as_str(), UidError::TooLong { length: 65 }),
            ("1..2", UidError::EmptyComponent),
            (".1.2", UidError::EmptyComponent),
            ("1.2.", UidError::EmptyComponent),
            ("1.2.x", UidError::NotDigit),
            ("1.2 .3", UidError::NotDigit),
            ("1.2.3\0", UidError::NotDigit),
            ("1.02.3", UidError::LeadingZero),
            ("00", UidError::LeadingZero),
        ] {
            assert_eq!(validate(uid), Err(error), "{uid:?}");
            assert!(!is_valid(uid), "{uid:?}");
            assert_eq!(error.to_string(), error.reason());
        }
    }
}
