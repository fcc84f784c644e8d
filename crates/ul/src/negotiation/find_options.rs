//! The service-class application information of the C-FIND SOP classes (PS3.4 C.5.1.1, Tables
//! C.5-1 and C.5-2), carried in a SOP class extended negotiation sub-item (PS3.7 §D.3.3.5).

use super::{Negotiated, trim_uid};
use crate::pdu::SopClassExtendedNegotiation;

/// How many bytes of C-FIND application information PS3.4 C.5.1.1 defines; later ones are
/// neither read nor answered.
pub const FIND_OPTION_BYTES: usize = 4;

/// The C-FIND options a requestor proposes or an acceptor accepts for a Query/Retrieve (or
/// other C-FIND) SOP class: PS3.4 C.5.1.1, Tables C.5-1 (A-ASSOCIATE-RQ) and C.5-2
/// (A-ASSOCIATE-AC). Each option is one byte, 1 = supported, 0 = not; a byte the requestor did
/// not send is 0.
///
/// The acceptor's answer ([`FindOptions::answer`]) has as many bytes as the proposal (at most
/// four) and never accepts an option that was not proposed; a requestor reads the answer with
/// [`FindOptions::accepted`] and intersects it with what it proposed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FindOptions {
    /// Byte 1: relational queries (PS3.4 C.4.1.2.2.2, C.4.1.3.2).
    pub relational_queries: bool,
    /// Byte 2: combined date and time range matching (PS3.4 C.2.2.2.5.2).
    pub combined_date_time: bool,
    /// Byte 3: fuzzy semantic matching of person names (PS3.4 C.2.2.2.1).
    pub fuzzy_person_names: bool,
    /// Byte 4: timezone query adjustment (PS3.4 C.4.1.1.3.1).
    pub timezone_adjustment: bool,
}

impl FindOptions {
    /// No option: what holds when nothing was negotiated.
    pub const NONE: FindOptions = FindOptions {
        relational_queries: false,
        combined_date_time: false,
        fuzzy_person_names: false,
        timezone_adjustment: false,
    };

    fn flags(self) -> [bool; FIND_OPTION_BYTES] {
        [
            self.relational_queries,
            self.combined_date_time,
            self.fuzzy_person_names,
            self.timezone_adjustment,
        ]
    }

    fn from_flags(flags: [bool; FIND_OPTION_BYTES]) -> FindOptions {
        let [
            relational_queries,
            combined_date_time,
            fuzzy_person_names,
            timezone_adjustment,
        ] = flags;
        FindOptions {
            relational_queries,
            combined_date_time,
            fuzzy_person_names,
            timezone_adjustment,
        }
    }

    /// Reads service-class application information: byte `n` is option `n` when it is 1; a
    /// missing byte, or any other value, is "not supported".
    pub fn from_bytes(information: &[u8]) -> FindOptions {
        let mut flags = [false; FIND_OPTION_BYTES];
        for (flag, byte) in flags.iter_mut().zip(information) {
            *flag = *byte == 1;
        }
        FindOptions::from_flags(flags)
    }

    /// The application information of a proposal: one byte per option up to the last one
    /// proposed (byte 1 always, as Table C.5-1 requires).
    pub fn to_bytes(self) -> Vec<u8> {
        let flags = self.flags();
        let length = flags
            .iter()
            .rposition(|flag| *flag)
            .map_or(1, |last| last + 1);
        flags[..length].iter().map(|flag| u8::from(*flag)).collect()
    }

    /// Whether no option is set.
    pub fn is_empty(self) -> bool {
        self == FindOptions::NONE
    }

    /// The options set in both.
    pub fn intersection(self, other: FindOptions) -> FindOptions {
        let (ours, theirs) = (self.flags(), other.flags());
        FindOptions::from_flags(std::array::from_fn(|n| ours[n] && theirs[n]))
    }

    /// The sub-item proposing these options for `sop_class_uid`.
    pub fn proposal(self, sop_class_uid: impl Into<String>) -> SopClassExtendedNegotiation {
        SopClassExtendedNegotiation {
            sop_class_uid: sop_class_uid.into(),
            service_class_application_information: self.to_bytes(),
        }
    }

    /// The acceptor's answer (Table C.5-2) to a proposal's application information, when it
    /// supports `supported`: as many bytes as were proposed (at most four), each 1 only when it
    /// was proposed as 1 and is supported. `None` (leave the item unanswered: nothing
    /// supported) for an empty proposal.
    pub fn answer(proposed: &[u8], supported: FindOptions) -> Option<Vec<u8>> {
        if proposed.is_empty() {
            return None;
        }
        let granted = FindOptions::from_bytes(proposed).intersection(supported);
        let length = proposed.len().min(FIND_OPTION_BYTES);
        Some(
            granted.flags()[..length]
                .iter()
                .map(|flag| u8::from(*flag))
                .collect(),
        )
    }

    /// The options agreed for `sop_class_uid` on an association: the acceptor's answer in
    /// `negotiated.sop_class_extended` (on either side), or [`FindOptions::NONE`] when it sent
    /// none. A requestor intersects this with what it proposed.
    pub fn accepted(negotiated: &Negotiated, sop_class_uid: &str) -> FindOptions {
        let wanted = trim_uid(sop_class_uid);
        negotiated
            .sop_class_extended
            .iter()
            .find(|item| trim_uid(&item.sop_class_uid) == wanted)
            .map(|item| FindOptions::from_bytes(&item.service_class_application_information))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: FindOptions = FindOptions {
        relational_queries: true,
        combined_date_time: true,
        fuzzy_person_names: true,
        timezone_adjustment: true,
    };

    #[test]
    fn bytes_round_trip_with_the_shortest_proposal() {
        assert_eq!(FindOptions::NONE.to_bytes(), vec![0]);
        let relational = FindOptions {
            relational_queries: true,
            ..FindOptions::NONE
        };
        assert_eq!(relational.to_bytes(), vec![1]);
        let date_time = FindOptions {
            combined_date_time: true,
            ..FindOptions::NONE
        };
        assert_eq!(date_time.to_bytes(), vec![0, 1]);
        assert_eq!(ALL.to_bytes(), vec![1, 1, 1, 1]);
        for options in [FindOptions::NONE, relational, date_time, ALL] {
            assert_eq!(FindOptions::from_bytes(&options.to_bytes()), options);
        }
        // Other values than 1 are no support; bytes past the fourth are ignored.
        assert_eq!(
            FindOptions::from_bytes(&[2, 0xFF, 1, 0, 1, 1]),
            FindOptions {
                fuzzy_person_names: true,
                ..FindOptions::NONE
            }
        );
        assert_eq!(FindOptions::from_bytes(&[]), FindOptions::NONE);
    }

    #[test]
    fn the_answer_never_grants_more_than_proposed_nor_than_supported() {
        let supported = FindOptions {
            relational_queries: true,
            combined_date_time: true,
            ..FindOptions::NONE
        };
        assert_eq!(
            FindOptions::answer(&[1, 1, 1, 1], supported),
            Some(vec![1, 1, 0, 0])
        );
        assert_eq!(FindOptions::answer(&[1], supported), Some(vec![1]));
        assert_eq!(FindOptions::answer(&[0, 1], supported), Some(vec![0, 1]));
        assert_eq!(
            FindOptions::answer(&[1, 1], FindOptions::NONE),
            Some(vec![0, 0])
        );
        assert_eq!(
            FindOptions::answer(&[1, 1, 1, 1, 1, 1], ALL),
            Some(vec![1, 1, 1, 1]),
            "only the bytes C.5.1.1 defines are answered"
        );
        assert_eq!(FindOptions::answer(&[], ALL), None);
    }

    #[test]
    fn the_accepted_options_are_read_per_sop_class() {
        let negotiated = Negotiated {
            sop_class_extended: vec![SopClassExtendedNegotiation {
                sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.1\0".into(),
                service_class_application_information: vec![1, 0],
            }],
            ..Negotiated::default()
        };
        assert!(
            FindOptions::accepted(&negotiated, "1.2.840.10008.5.1.4.1.2.2.1").relational_queries
        );
        assert_eq!(
            FindOptions::accepted(&negotiated, "1.2.840.10008.5.1.4.1.2.1.1"),
            FindOptions::NONE
        );
    }
}
