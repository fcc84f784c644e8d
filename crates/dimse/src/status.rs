//! DIMSE status codes (PS3.7 Annex C) and the service-class specific codes most often met
//! (PS3.4 Tables B.2-1, C.4-1, C.4-2, C.4-3).

use std::fmt;

/// The category a status code belongs to (PS3.7 §C.1): what a peer must do with the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCategory {
    Success,
    Warning,
    Failure,
    Cancel,
    Pending,
}

/// A DIMSE status code, the value of Status (0000,0900) (PS3.7 Annex C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(pub u16);

impl Status {
    /// 0000: success (PS3.7 §C.1.1).
    pub const SUCCESS: Status = Status(0x0000);
    /// 0001: warning, requested optional attributes are not supported (PS3.7 §C.4.1).
    pub const ATTRIBUTES_NOT_SUPPORTED: Status = Status(0x0001);
    /// 0105: failure, no such attribute (PS3.7 §C.4.2).
    pub const NO_SUCH_ATTRIBUTE: Status = Status(0x0105);
    /// 0106: failure, invalid attribute value (PS3.7 §C.4.3).
    pub const INVALID_ATTRIBUTE_VALUE: Status = Status(0x0106);
    /// 0107: warning, attribute list error (PS3.7 §C.4.4).
    pub const ATTRIBUTE_LIST_ERROR: Status = Status(0x0107);
    /// 0110: failure, processing failure (PS3.7 §C.4.5).
    pub const PROCESSING_FAILURE: Status = Status(0x0110);
    /// 0111: failure, duplicate SOP instance (PS3.7 §C.4.6).
    pub const DUPLICATE_SOP_INSTANCE: Status = Status(0x0111);
    /// 0112: failure, no such SOP instance (PS3.7 §C.4.7).
    pub const NO_SUCH_SOP_INSTANCE: Status = Status(0x0112);
    /// 0113: failure, no such event type (PS3.7 §C.4.8).
    pub const NO_SUCH_EVENT_TYPE: Status = Status(0x0113);
    /// 0114: failure, no such argument (PS3.7 §C.4.9).
    pub const NO_SUCH_ARGUMENT: Status = Status(0x0114);
    /// 0115: failure, invalid argument value (PS3.7 §C.4.10).
    pub const INVALID_ARGUMENT_VALUE: Status = Status(0x0115);
    /// 0116: warning, attribute value out of range (PS3.7 §C.4.11).
    pub const ATTRIBUTE_VALUE_OUT_OF_RANGE: Status = Status(0x0116);
    /// 0117: failure, invalid object instance (PS3.7 §C.4.12).
    pub const INVALID_OBJECT_INSTANCE: Status = Status(0x0117);
    /// 0118: failure, no such SOP class (PS3.7 §C.4.13).
    pub const NO_SUCH_SOP_CLASS: Status = Status(0x0118);
    /// 0119: failure, class-instance conflict (PS3.7 §C.4.14).
    pub const CLASS_INSTANCE_CONFLICT: Status = Status(0x0119);
    /// 0120: failure, missing attribute (PS3.7 §C.4.15).
    pub const MISSING_ATTRIBUTE: Status = Status(0x0120);
    /// 0121: failure, missing attribute value (PS3.7 §C.4.16).
    pub const MISSING_ATTRIBUTE_VALUE: Status = Status(0x0121);
    /// 0122: failure, refused: SOP class not supported (PS3.7 §C.5.1).
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// 0123: failure, no such action (PS3.7 §C.4.17).
    pub const NO_SUCH_ACTION: Status = Status(0x0123);
    /// 0124: failure, refused: not authorized (PS3.7 §C.5.4).
    pub const NOT_AUTHORIZED: Status = Status(0x0124);
    /// 0210: failure, duplicate invocation (PS3.7 §C.4.18).
    pub const DUPLICATE_INVOCATION: Status = Status(0x0210);
    /// 0211: failure, unrecognized operation (PS3.7 §C.4.19).
    pub const UNRECOGNIZED_OPERATION: Status = Status(0x0211);
    /// 0212: failure, mistyped argument (PS3.7 §C.4.20).
    pub const MISTYPED_ARGUMENT: Status = Status(0x0212);
    /// 0213: failure, resource limitation (PS3.7 §C.4.21).
    pub const RESOURCE_LIMITATION: Status = Status(0x0213);
    /// A700: failure, refused: out of resources (PS3.4 Table B.2-1).
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// A701: failure, out of resources, unable to calculate the number of matches (PS3.4 Table
    /// C.4-2).
    pub const OUT_OF_RESOURCES_NUMBER_OF_MATCHES: Status = Status(0xA701);
    /// A702: failure, out of resources, unable to perform sub-operations (PS3.4 Table C.4-2).
    pub const OUT_OF_RESOURCES_SUBOPERATIONS: Status = Status(0xA702);
    /// A801: failure, move destination unknown (PS3.4 Table C.4-2).
    pub const MOVE_DESTINATION_UNKNOWN: Status = Status(0xA801);
    /// A900: failure, data set (identifier) does not match SOP class (PS3.4 Tables B.2-1, C.4-1).
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Status = Status(0xA900);
    /// B000: warning; in a C-STORE-RSP coercion of data elements (PS3.4 Table B.2-1), in a
    /// C-GET/C-MOVE-RSP sub-operations complete with one or more failures or warnings (PS3.4
    /// Table C.4-2).
    pub const COERCION_OF_DATA_ELEMENTS: Status = Status(0xB000);
    /// B000 under its C-GET/C-MOVE meaning (PS3.4 Table C.4-2).
    pub const SUBOPERATIONS_COMPLETE_WITH_FAILURES: Status = Status(0xB000);
    /// B006: warning, elements discarded (PS3.4 Table B.2-1).
    pub const ELEMENTS_DISCARDED: Status = Status(0xB006);
    /// B007: warning, data set does not match SOP class (PS3.4 Table B.2-1).
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: Status = Status(0xB007);
    /// C000: failure, cannot understand (PS3.4 Table B.2-1; the whole C000–CFFF range).
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// FE00: cancel, matching or sub-operations terminated by a C-CANCEL (PS3.7 §C.3).
    pub const CANCEL: Status = Status(0xFE00);
    /// FF00: pending, matches are continuing (PS3.7 §C.2).
    pub const PENDING: Status = Status(0xFF00);
    /// FF01: pending, but one or more optional keys were not supported (PS3.4 Table C.4-1).
    pub const PENDING_WARNING: Status = Status(0xFF01);

    /// The category of the code (PS3.7 Annex C): 0000 success; 0001, 0107, 0116 and B000–BFFF
    /// warning; FE00 cancel; FF00 and FF01 pending; everything else failure.
    pub fn category(self) -> StatusCategory {
        match self.0 {
            0x0000 => StatusCategory::Success,
            0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => StatusCategory::Warning,
            0xFE00 => StatusCategory::Cancel,
            0xFF00 | 0xFF01 => StatusCategory::Pending,
            _ => StatusCategory::Failure,
        }
    }

    pub fn is_success(self) -> bool {
        self.category() == StatusCategory::Success
    }

    pub fn is_warning(self) -> bool {
        self.category() == StatusCategory::Warning
    }

    pub fn is_failure(self) -> bool {
        self.category() == StatusCategory::Failure
    }

    pub fn is_cancel(self) -> bool {
        self.category() == StatusCategory::Cancel
    }

    pub fn is_pending(self) -> bool {
        self.category() == StatusCategory::Pending
    }

    /// Whether the response ends the operation: anything but pending.
    pub fn is_final(self) -> bool {
        !self.is_pending()
    }

    /// What the code means, for people. Codes whose meaning depends on the service class are
    /// described with the range they fall in; unknown codes by their category.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x0000 => "success",
            0x0001 => "requested optional attributes are not supported",
            0x0105 => "no such attribute",
            0x0106 => "invalid attribute value",
            0x0107 => "attribute list error",
            0x0110 => "processing failure",
            0x0111 => "duplicate SOP instance",
            0x0112 => "no such SOP instance",
            0x0113 => "no such event type",
            0x0114 => "no such argument",
            0x0115 => "invalid argument value",
            0x0116 => "attribute value out of range",
            0x0117 => "invalid object instance",
            0x0118 => "no such SOP class",
            0x0119 => "class-instance conflict",
            0x0120 => "missing attribute",
            0x0121 => "missing attribute value",
            0x0122 => "SOP class not supported",
            0x0123 => "no such action",
            0x0124 => "not authorized",
            0x0210 => "duplicate invocation",
            0x0211 => "unrecognized operation",
            0x0212 => "mistyped argument",
            0x0213 => "resource limitation",
            0xA701 => "out of resources: unable to calculate number of matches",
            0xA702 => "out of resources: unable to perform sub-operations",
            0xA700..=0xA7FF => "out of resources",
            0xA801 => "move destination unknown",
            0xA900..=0xA9FF => "data set does not match SOP class",
            0xB000 => "coercion of data elements, or sub-operations completed with failures",
            0xB006 => "elements discarded",
            0xB007 => "data set does not match SOP class (warning)",
            0xC000..=0xCFFF => "cannot understand",
            0xFE00 => "cancelled",
            0xFF00 => "pending",
            0xFF01 => "pending, optional keys not supported",
            _ => match self.category() {
                StatusCategory::Warning => "warning",
                StatusCategory::Failure => "failure",
                // Every success, cancel and pending code is named above.
                StatusCategory::Success | StatusCategory::Cancel | StatusCategory::Pending => {
                    "unknown status"
                }
            },
        }
    }
}

impl From<u16> for Status {
    fn from(code: u16) -> Self {
        Status(code)
    }
}

impl From<Status> for u16 {
    fn from(status: Status) -> Self {
        status.0
    }
}

impl fmt::Display for Status {
    /// `0x0122 (SOP class not supported)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X} ({})", self.0, self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_annex_c() {
        use StatusCategory::*;
        let cases = [
            (0x0000, Success),
            (0x0001, Warning),
            (0x0107, Warning),
            (0x0116, Warning),
            (0xB000, Warning),
            (0xB006, Warning),
            (0xBFFF, Warning),
            (0xFE00, Cancel),
            (0xFF00, Pending),
            (0xFF01, Pending),
            (0x0002, Failure),
            (0x0110, Failure),
            (0x0122, Failure),
            (0xA700, Failure),
            (0xA900, Failure),
            (0xAFFF, Failure),
            (0xC000, Failure),
            (0xC123, Failure),
            (0xFE01, Failure),
            (0xFF02, Failure),
            (0xFFFF, Failure),
        ];
        for (code, category) in cases {
            assert_eq!(Status(code).category(), category, "0x{code:04X}");
        }
    }

    #[test]
    fn predicates_match_category() {
        assert!(Status::SUCCESS.is_success() && Status::SUCCESS.is_final());
        assert!(Status::PENDING.is_pending() && !Status::PENDING.is_final());
        assert!(Status::PENDING_WARNING.is_pending());
        assert!(Status::CANCEL.is_cancel() && Status::CANCEL.is_final());
        assert!(Status::ELEMENTS_DISCARDED.is_warning());
        assert!(Status::CANNOT_UNDERSTAND.is_failure());
    }

    #[test]
    fn constants_have_the_standard_codes() {
        assert_eq!(Status::SOP_CLASS_NOT_SUPPORTED.0, 0x0122);
        assert_eq!(Status::NO_SUCH_SOP_CLASS.0, 0x0118);
        assert_eq!(Status::PROCESSING_FAILURE.0, 0x0110);
        assert_eq!(Status::DUPLICATE_SOP_INSTANCE.0, 0x0111);
        assert_eq!(Status::NO_SUCH_SOP_INSTANCE.0, 0x0112);
        assert_eq!(Status::INVALID_ARGUMENT_VALUE.0, 0x0115);
        assert_eq!(Status::UNRECOGNIZED_OPERATION.0, 0x0211);
        assert_eq!(Status::DUPLICATE_INVOCATION.0, 0x0210);
        assert_eq!(Status::MISTYPED_ARGUMENT.0, 0x0212);
        assert_eq!(Status::RESOURCE_LIMITATION.0, 0x0213);
        assert_eq!(Status::OUT_OF_RESOURCES.0, 0xA700);
        assert_eq!(Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS.0, 0xA900);
        assert_eq!(Status::CANNOT_UNDERSTAND.0, 0xC000);
        assert_eq!(Status::COERCION_OF_DATA_ELEMENTS.0, 0xB000);
        assert_eq!(Status::ELEMENTS_DISCARDED.0, 0xB006);
        assert_eq!(Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING.0, 0xB007);
    }

    #[test]
    fn display_shows_code_and_meaning() {
        assert_eq!(
            Status::SOP_CLASS_NOT_SUPPORTED.to_string(),
            "0x0122 (SOP class not supported)"
        );
        assert_eq!(Status(0xC211).to_string(), "0xC211 (cannot understand)");
        assert_eq!(Status(0xA7FE).to_string(), "0xA7FE (out of resources)");
        assert_eq!(Status(0xB123).to_string(), "0xB123 (warning)");
        assert_eq!(Status(0x0300).to_string(), "0x0300 (failure)");
    }
}
