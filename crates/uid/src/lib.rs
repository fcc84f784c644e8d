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

/// A new UID under the 2.25 root (PS3.5 §B.2): "2.25." and a 128-bit number drawn from the
/// standard library's randomly seeded hasher keys mixed with the clock, the process id and a
/// counter, so that no two calls, in one process or in several, give the same UID.
pub fn generate() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |salt: u64| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u64(count);
        hasher.write_u64(salt);
        hasher.finish()
    };
    let value = (u128::from(half(0)) << 64) | u128::from(half(1));
    format!("2.25.{value}")
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

    #[test]
    fn generated_uids_are_valid_and_distinct() {
        let uids: std::collections::HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(uids.len(), 1000);
        for uid in &uids {
            assert!(uid.starts_with("2.25."), "{uid}");
            assert_eq!(validate(uid), Ok(()), "{uid}");
        }
    }
}
