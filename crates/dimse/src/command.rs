//! Command sets: the group-0000 elements that head every DIMSE message (PS3.7 §6.3, §9.3,
//! §10.3, Annex E), always encoded in implicit VR little endian (PS3.7 §6.3.1).
//!
//! # Decoding policy
//!
//! Decoding is strict about structure and lenient about one value:
//!
//! * every element must belong to group 0000, lengths are checked against the bytes present and
//!   against [`CommandLimits::max_command_len`] before anything is allocated, undefined lengths
//!   are refused, an element may not occur twice, and each known element must have a value length
//!   its VR allows (US exactly 2 bytes, UL 4, AT a multiple of 4, UI at most 64, AE at most 16…);
//! * identifiers (UI, AE, CS) must be printable ASCII; texts for people (LO, SH, e.g. the Error
//!   Comment) are decoded lossily (invalid UTF-8 bytes become `?`) so that a stray non-ASCII byte from a peer does not cost the
//!   response;
//! * the value of Command Group Length (0000,0000) is, by default, **tolerated** when it does not
//!   match the bytes that follow, and tolerated when absent: DCMTK and pynetdicom both parse the
//!   command set element by element and do not reject on it, and the command set's end is known
//!   anyway from the last command fragment. [`CommandLimits::strict_group_length`] turns the check
//!   into an error. The group length is never stored in a [`CommandSet`]: the encoder computes
//!   it.
//!
//! Elements this implementation does not know (retired command elements of PS3.7 Annex E.2,
//! private or future ones) are kept as [`CommandValue::Raw`] bytes.

use std::collections::BTreeMap;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Tags of the command elements of PS3.7 Annex E (Table E.1-1), as `(group << 16) | element`.
pub mod tags {
    /// (0000,0000) Command Group Length, UL.
    pub const COMMAND_GROUP_LENGTH: u32 = 0x0000_0000;
    /// (0000,0002) Affected SOP Class UID, UI.
    pub const AFFECTED_SOP_CLASS_UID: u32 = 0x0000_0002;
    /// (0000,0003) Requested SOP Class UID, UI.
    pub const REQUESTED_SOP_CLASS_UID: u32 = 0x0000_0003;
    /// (0000,0100) Command Field, US.
    pub const COMMAND_FIELD: u32 = 0x0000_0100;
    /// (0000,0110) Message ID, US.
    pub const MESSAGE_ID: u32 = 0x0000_0110;
    /// (0000,0120) Message ID Being Responded To, US.
    pub const MESSAGE_ID_BEING_RESPONDED_TO: u32 = 0x0000_0120;
    /// (0000,0600) Move Destination, AE.
    pub const MOVE_DESTINATION: u32 = 0x0000_0600;
    /// (0000,0700) Priority, US.
    pub const PRIORITY: u32 = 0x0000_0700;
    /// (0000,0800) Command Data Set Type, US.
    pub const COMMAND_DATA_SET_TYPE: u32 = 0x0000_0800;
    /// (0000,0900) Status, US.
    pub const STATUS: u32 = 0x0000_0900;
    /// (0000,0901) Offending Element, AT (1-n).
    pub const OFFENDING_ELEMENT: u32 = 0x0000_0901;
    /// (0000,0902) Error Comment, LO.
    pub const ERROR_COMMENT: u32 = 0x0000_0902;
    /// (0000,0903) Error ID, US.
    pub const ERROR_ID: u32 = 0x0000_0903;
    /// (0000,1000) Affected SOP Instance UID, UI.
    pub const AFFECTED_SOP_INSTANCE_UID: u32 = 0x0000_1000;
    /// (0000,1001) Requested SOP Instance UID, UI.
    pub const REQUESTED_SOP_INSTANCE_UID: u32 = 0x0000_1001;
    /// (0000,1002) Event Type ID, US.
    pub const EVENT_TYPE_ID: u32 = 0x0000_1002;
    /// (0000,1005) Attribute Identifier List, AT (1-n).
    pub const ATTRIBUTE_IDENTIFIER_LIST: u32 = 0x0000_1005;
    /// (0000,1008) Action Type ID, US.
    pub const ACTION_TYPE_ID: u32 = 0x0000_1008;
    /// (0000,1020) Number of Remaining Sub-operations, US.
    pub const NUMBER_OF_REMAINING_SUBOPERATIONS: u32 = 0x0000_1020;
    /// (0000,1021) Number of Completed Sub-operations, US.
    pub const NUMBER_OF_COMPLETED_SUBOPERATIONS: u32 = 0x0000_1021;
    /// (0000,1022) Number of Failed Sub-operations, US.
    pub const NUMBER_OF_FAILED_SUBOPERATIONS: u32 = 0x0000_1022;
    /// (0000,1023) Number of Warning Sub-operations, US.
    pub const NUMBER_OF_WARNING_SUBOPERATIONS: u32 = 0x0000_1023;
    /// (0000,1030) Move Originator Application Entity Title, AE.
    pub const MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE: u32 = 0x0000_1030;
    /// (0000,1031) Move Originator Message ID, US.
    pub const MOVE_ORIGINATOR_MESSAGE_ID: u32 = 0x0000_1031;
}

/// Command Data Set Type value meaning "no data set follows" (PS3.7 §9.3, Table E.1-1). Any
/// other value means a data set follows.
pub const NO_DATA_SET: u16 = 0x0101;
/// The Command Data Set Type value this implementation sends when a data set follows (the value
/// DCMTK and pynetdicom send).
pub const DATA_SET_PRESENT: u16 = 0x0001;
/// Default for [`CommandLimits::max_command_len`]: 64 KiB, far above any real command set.
pub const DEFAULT_MAX_COMMAND_LEN: usize = 64 * 1024;

/// Length of an implicit VR little endian element header: tag (4), value length (4).
const ELEMENT_HEADER_LEN: usize = 8;
/// The value length that means "undefined length" (PS3.5 §7.1.1); never valid in a command set.
const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;

/// Value representations (PS3.5 §6.2) used by the command elements of PS3.7 Annex E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandVr {
    /// Unsigned short, exactly one value.
    Us,
    /// Unsigned long, exactly one value.
    Ul,
    /// Unique identifier, padded with NUL.
    Ui,
    /// Application entity title, padded with space.
    Ae,
    /// Long string, padded with space.
    Lo,
    /// Short string, padded with space.
    Sh,
    /// Code string, padded with space.
    Cs,
    /// Attribute tag, one or more values.
    At,
}

impl CommandVr {
    /// The longest value length the VR allows, in bytes (PS3.5 Table 6.2-1).
    fn max_string_len(self) -> Option<usize> {
        match self {
            CommandVr::Ui | CommandVr::Lo => Some(64),
            CommandVr::Ae | CommandVr::Sh | CommandVr::Cs => Some(16),
            CommandVr::Us | CommandVr::Ul | CommandVr::At => None,
        }
    }

    /// Byte used to pad a string value to even length (PS3.5 §6.2).
    fn padding(self) -> u8 {
        if self == CommandVr::Ui { 0 } else { b' ' }
    }

    /// Whether a string of this VR identifies something (and must be printable ASCII) rather than
    /// being text for people.
    fn is_string(self) -> bool {
        self.max_string_len().is_some()
    }

    fn is_identifier(self) -> bool {
        matches!(self, CommandVr::Ui | CommandVr::Ae | CommandVr::Cs)
    }
}

impl fmt::Display for CommandVr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandVr::Us => "US",
            CommandVr::Ul => "UL",
            CommandVr::Ui => "UI",
            CommandVr::Ae => "AE",
            CommandVr::Lo => "LO",
            CommandVr::Sh => "SH",
            CommandVr::Cs => "CS",
            CommandVr::At => "AT",
        })
    }
}

/// A command element this implementation knows: its tag, keyword and VR (PS3.7 Table E.1-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandElementSpec {
    pub tag: u32,
    pub keyword: &'static str,
    pub vr: CommandVr,
}

/// Every command element of PS3.7 Table E.1-1, sorted by tag.
pub const COMMAND_ELEMENTS: &[CommandElementSpec] = &{
    use CommandVr::*;
    use tags::*;
    const fn spec(tag: u32, keyword: &'static str, vr: CommandVr) -> CommandElementSpec {
        CommandElementSpec { tag, keyword, vr }
    }
    [
        spec(COMMAND_GROUP_LENGTH, "CommandGroupLength", Ul),
        spec(AFFECTED_SOP_CLASS_UID, "AffectedSOPClassUID", Ui),
        spec(REQUESTED_SOP_CLASS_UID, "RequestedSOPClassUID", Ui),
        spec(COMMAND_FIELD, "CommandField", Us),
        spec(MESSAGE_ID, "MessageID", Us),
        spec(
            MESSAGE_ID_BEING_RESPONDED_TO,
            "MessageIDBeingRespondedTo",
            Us,
        ),
        spec(MOVE_DESTINATION, "MoveDestination", Ae),
        spec(PRIORITY, "Priority", Us),
        spec(COMMAND_DATA_SET_TYPE, "CommandDataSetType", Us),
        spec(STATUS, "Status", Us),
        spec(OFFENDING_ELEMENT, "OffendingElement", At),
        spec(ERROR_COMMENT, "ErrorComment", Lo),
        spec(ERROR_ID, "ErrorID", Us),
        spec(AFFECTED_SOP_INSTANCE_UID, "AffectedSOPInstanceUID", Ui),
        spec(REQUESTED_SOP_INSTANCE_UID, "RequestedSOPInstanceUID", Ui),
        spec(EVENT_TYPE_ID, "EventTypeID", Us),
        spec(ATTRIBUTE_IDENTIFIER_LIST, "AttributeIdentifierList", At),
        spec(ACTION_TYPE_ID, "ActionTypeID", Us),
        spec(
            NUMBER_OF_REMAINING_SUBOPERATIONS,
            "NumberOfRemainingSuboperations",
            Us,
        ),
        spec(
            NUMBER_OF_COMPLETED_SUBOPERATIONS,
            "NumberOfCompletedSuboperations",
            Us,
        ),
        spec(
            NUMBER_OF_FAILED_SUBOPERATIONS,
            "NumberOfFailedSuboperations",
            Us,
        ),
        spec(
            NUMBER_OF_WARNING_SUBOPERATIONS,
            "NumberOfWarningSuboperations",
            Us,
        ),
        spec(
            MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
            "MoveOriginatorApplicationEntityTitle",
            Ae,
        ),
        spec(MOVE_ORIGINATOR_MESSAGE_ID, "MoveOriginatorMessageID", Us),
    ]
};

/// The specification of a known command element, or `None` for an unknown tag.
pub fn element_spec(tag: u32) -> Option<&'static CommandElementSpec> {
    COMMAND_ELEMENTS
        .binary_search_by_key(&tag, |spec| spec.tag)
        .ok()
        .and_then(|index| COMMAND_ELEMENTS.get(index))
}

/// Formats a data element tag (PS3.5 §7.1) the way DICOM people write it: `(0000,0110)`, followed by the keyword when the
/// element is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDisplay(pub u32);

impl fmt::Display for TagDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:04X},{:04X})", self.0 >> 16, self.0 & 0xFFFF)?;
        if let Some(spec) = element_spec(self.0) {
            write!(f, " {}", spec.keyword)?;
        }
        Ok(())
    }
}

/// The value of one command element (PS3.7 Annex E). Which variant a known tag takes follows from
/// its VR: US → [`CommandValue::Us`], UL → [`CommandValue::Ul`], UI/AE/LO/SH/CS →
/// [`CommandValue::Str`] (without padding), AT → [`CommandValue::At`]; unknown tags →
/// [`CommandValue::Raw`]. (No command element of PS3.7 Table E.1-1 is a multi-valued US, so there
/// is no variant for one: the retired ones that were are kept raw.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CommandValue {
    Us(u16),
    Ul(u32),
    /// A string value without its trailing padding.
    Str(String),
    /// Attribute tags, each `(group << 16) | element`.
    At(Vec<u32>),
    /// The value bytes of an element this implementation does not know.
    Raw(Vec<u8>),
}

impl CommandValue {
    /// Name of the variant, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            CommandValue::Us(_) => "US",
            CommandValue::Ul(_) => "UL",
            CommandValue::Str(_) => "string",
            CommandValue::At(_) => "AT",
            CommandValue::Raw(_) => "raw bytes",
        }
    }
}

/// Limits and policy applied while decoding a command set (PS3.7 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLimits {
    /// Longest command set accepted, in bytes ([`DEFAULT_MAX_COMMAND_LEN`] by default). Also
    /// bounds how much the [`crate::assemble::Assembler`] buffers for one command.
    pub max_command_len: usize,
    /// Refuse a command set whose Command Group Length is absent or does not match the bytes
    /// that follow it (default `false`: tolerated, see the module documentation).
    pub strict_group_length: bool,
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self {
            max_command_len: DEFAULT_MAX_COMMAND_LEN,
            strict_group_length: false,
        }
    }
}

/// Why bytes could not be decoded as a command set (PS3.7 §6.3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandDecodeError {
    #[error("command set is {len} bytes long, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("element header at offset {offset} truncated: {available} bytes left, 8 needed")]
    TruncatedHeader { offset: usize, available: usize },
    #[error("element {tag} claims {claimed} bytes, only {available} left")]
    TruncatedValue {
        tag: TagDisplay,
        claimed: u32,
        available: usize,
    },
    #[error("element {tag} at offset {offset} is not in group 0000")]
    NotCommandGroup { tag: TagDisplay, offset: usize },
    #[error("element {tag} has an undefined length")]
    UndefinedLength { tag: TagDisplay },
    #[error("element {tag} occurs twice")]
    DuplicateElement { tag: TagDisplay },
    #[error("invalid element: {0}")]
    InvalidValue(#[from] CommandValueError),
    #[error("command group length is {declared} but {actual} bytes follow it")]
    GroupLengthMismatch { declared: u32, actual: usize },
    #[error("command group length (0000,0000) is missing")]
    MissingGroupLength,
}

/// Why a command element's value is not acceptable for its tag (PS3.7 Table E.1-1, PS3.5 Table
/// 6.2-1); shared by the decoder and the encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandValueError {
    #[error("{tag} has VR {vr}, which does not allow a value length of {len}")]
    InvalidLength {
        tag: TagDisplay,
        vr: CommandVr,
        len: usize,
    },
    #[error("{tag} contains a character outside printable ASCII")]
    InvalidCharacter { tag: TagDisplay },
    #[error("{tag} has VR {vr} and cannot hold a {kind} value")]
    WrongType {
        tag: TagDisplay,
        vr: CommandVr,
        kind: &'static str,
    },
    #[error("{tag} is an unknown element and must be given as raw bytes, not a {kind} value")]
    UnknownElementNotRaw { tag: TagDisplay, kind: &'static str },
    #[error("{tag} is not in group 0000")]
    NotCommandGroup { tag: TagDisplay },
    #[error("{tag} is computed by the encoder and cannot be set")]
    GroupLengthNotSettable { tag: TagDisplay },
    #[error("{tag} value is {len} bytes long, more than a 32-bit length allows")]
    ValueTooLong { tag: TagDisplay, len: usize },
}

/// Why a command set could not be encoded (PS3.7 §6.3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandEncodeError {
    #[error("invalid element: {0}")]
    InvalidValue(#[from] CommandValueError),
    #[error("command set is {len} bytes long, more than a 32-bit group length allows")]
    TooLong { len: usize },
}

/// A command set: the group-0000 elements of one DIMSE message, ordered by tag (PS3.7 §6.3.1).
///
/// Command Group Length (0000,0000) is not stored; [`CommandSet::encode`] writes it first and
/// correct.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CommandSet {
    elements: BTreeMap<u32, CommandValue>,
}

impl CommandSet {
    /// An empty command set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an element, replacing any previous value. The value is checked when encoding.
    pub fn insert(&mut self, tag: u32, value: CommandValue) -> Option<CommandValue> {
        self.elements.insert(tag, value)
    }

    /// Removes an element.
    pub fn remove(&mut self, tag: u32) -> Option<CommandValue> {
        self.elements.remove(&tag)
    }

    /// The value of an element.
    pub fn get(&self, tag: u32) -> Option<&CommandValue> {
        self.elements.get(&tag)
    }

    /// Whether an element is present.
    pub fn contains(&self, tag: u32) -> bool {
        self.elements.contains_key(&tag)
    }

    /// The elements in ascending tag order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &CommandValue)> {
        self.elements.iter().map(|(tag, value)| (*tag, value))
    }

    /// Number of elements (Command Group Length not counted).
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether no element is present.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// The value of a US element, if present and a single US.
    pub fn get_us(&self, tag: u32) -> Option<u16> {
        match self.get(tag) {
            Some(CommandValue::Us(value)) => Some(*value),
            _ => None,
        }
    }

    /// The value of a string element, if present and a string.
    pub fn get_str(&self, tag: u32) -> Option<&str> {
        match self.get(tag) {
            Some(CommandValue::Str(value)) => Some(value),
            _ => None,
        }
    }

    /// Whether Command Data Set Type (0000,0800) announces a data set: present and not 0x0101
    /// (PS3.7 Table E.1-1).
    pub fn has_data_set(&self) -> bool {
        self.get_us(tags::COMMAND_DATA_SET_TYPE)
            .is_some_and(|value| value != NO_DATA_SET)
    }

    /// Encodes the command set in implicit VR little endian, Command Group Length first.
    pub fn encode(&self) -> Result<Bytes, CommandEncodeError> {
        let mut body = BytesMut::new();
        for (tag, value) in &self.elements {
            encode_element(*tag, value, &mut body)?;
        }
        let group_length = u32::try_from(body.len())
            .map_err(|_| CommandEncodeError::TooLong { len: body.len() })?;
        let mut out = BytesMut::with_capacity(ELEMENT_HEADER_LEN + 4 + body.len());
        put_element_header(&mut out, tags::COMMAND_GROUP_LENGTH, 4);
        out.put_u32_le(group_length);
        out.extend_from_slice(&body);
        Ok(out.freeze())
    }

    /// Decodes a whole command set (implicit VR little endian), strictly and within `limits`;
    /// see the module documentation for the policy.
    pub fn decode(bytes: &[u8], limits: &CommandLimits) -> Result<Self, CommandDecodeError> {
        if bytes.len() > limits.max_command_len {
            return Err(CommandDecodeError::TooLong {
                len: bytes.len(),
                max: limits.max_command_len,
            });
        }
        let mut elements = BTreeMap::new();
        let mut group_length: Option<(u32, usize)> = None;
        let mut offset = 0;
        while offset < bytes.len() {
            let (tag, value_bytes, next) = read_element(bytes, offset)?;
            if tag == tags::COMMAND_GROUP_LENGTH {
                if group_length.is_some() {
                    return Err(CommandDecodeError::DuplicateElement {
                        tag: TagDisplay(tag),
                    });
                }
                let declared = decode_value(tag, value_bytes)?;
                if let CommandValue::Ul(declared) = declared {
                    group_length = Some((declared, bytes.len() - next));
                }
            } else {
                let value = decode_value(tag, value_bytes)?;
                if elements.insert(tag, value).is_some() {
                    return Err(CommandDecodeError::DuplicateElement {
                        tag: TagDisplay(tag),
                    });
                }
            }
            offset = next;
        }
        if limits.strict_group_length {
            match group_length {
                None => return Err(CommandDecodeError::MissingGroupLength),
                Some((declared, actual)) if usize::try_from(declared) != Ok(actual) => {
                    return Err(CommandDecodeError::GroupLengthMismatch { declared, actual });
                }
                Some(_) => {}
            }
        }
        Ok(Self { elements })
    }
}

impl FromIterator<(u32, CommandValue)> for CommandSet {
    fn from_iter<I: IntoIterator<Item = (u32, CommandValue)>>(iter: I) -> Self {
        Self {
            elements: iter.into_iter().collect(),
        }
    }
}

fn put_element_header(out: &mut BytesMut, tag: u32, value_len: u32) {
    out.put_u16_le((tag >> 16) as u16);
    out.put_u16_le((tag & 0xFFFF) as u16);
    out.put_u32_le(value_len);
}

/// Reads the element at `offset`: its tag, its value bytes and the offset of the next element.
fn read_element(bytes: &[u8], offset: usize) -> Result<(u32, &[u8], usize), CommandDecodeError> {
    let rest = bytes.get(offset..).unwrap_or_default();
    let Some((header, after_header)) = rest.split_first_chunk::<ELEMENT_HEADER_LEN>() else {
        return Err(CommandDecodeError::TruncatedHeader {
            offset,
            available: rest.len(),
        });
    };
    let [g0, g1, e0, e1, l0, l1, l2, l3] = *header;
    let group = u16::from_le_bytes([g0, g1]);
    let tag = (u32::from(group) << 16) | u32::from(u16::from_le_bytes([e0, e1]));
    if group != 0 {
        return Err(CommandDecodeError::NotCommandGroup {
            tag: TagDisplay(tag),
            offset,
        });
    }
    let claimed = u32::from_le_bytes([l0, l1, l2, l3]);
    if claimed == UNDEFINED_LENGTH {
        return Err(CommandDecodeError::UndefinedLength {
            tag: TagDisplay(tag),
        });
    }
    let value = usize::try_from(claimed)
        .ok()
        .and_then(|len| after_header.get(..len))
        .ok_or(CommandDecodeError::TruncatedValue {
            tag: TagDisplay(tag),
            claimed,
            available: after_header.len(),
        })?;
    Ok((tag, value, offset + ELEMENT_HEADER_LEN + value.len()))
}

/// Checks that a value length is one the VR allows.
fn check_length(tag: u32, vr: CommandVr, len: usize) -> Result<(), CommandValueError> {
    let allowed = match vr {
        CommandVr::Us => len == 2,
        CommandVr::Ul => len == 4,
        CommandVr::At => len.is_multiple_of(4) && len > 0,
        CommandVr::Ui | CommandVr::Ae | CommandVr::Lo | CommandVr::Sh | CommandVr::Cs => {
            vr.max_string_len().is_some_and(|max| len <= max)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(CommandValueError::InvalidLength {
            tag: TagDisplay(tag),
            vr,
            len,
        })
    }
}

/// Checks that an identifier string holds printable ASCII only.
fn check_identifier(tag: u32, vr: CommandVr, value: &[u8]) -> Result<(), CommandValueError> {
    if vr.is_identifier()
        && !value
            .iter()
            .all(|byte| byte.is_ascii_graphic() || *byte == b' ')
    {
        return Err(CommandValueError::InvalidCharacter {
            tag: TagDisplay(tag),
        });
    }
    Ok(())
}

/// Decodes the value bytes of one element according to its tag.
fn decode_value(tag: u32, bytes: &[u8]) -> Result<CommandValue, CommandValueError> {
    let Some(spec) = element_spec(tag) else {
        return Ok(CommandValue::Raw(bytes.to_vec()));
    };
    let vr = spec.vr;
    // Strings are checked without their padding so that an odd-length value (which some
    // implementations send) gets the same treatment as its padded form.
    let content = match vr {
        CommandVr::Us | CommandVr::Ul | CommandVr::At => bytes,
        _ => trim_padding(bytes),
    };
    // Text is decoded leniently (any length, any byte): what a value means is for the service
    // to judge, which can then answer with a status (e.g. 0xC000 for an over-long UID) instead of
    // the association being aborted. The encoder stays strict.
    if !vr.is_string() {
        check_length(tag, vr, content.len())?;
    }
    Ok(match vr {
        CommandVr::Us => CommandValue::Us(u16::from_le_bytes(fixed_width(tag, vr, content)?)),
        CommandVr::Ul => CommandValue::Ul(u32::from_le_bytes(fixed_width(tag, vr, content)?)),
        CommandVr::At => CommandValue::At(
            content
                .chunks_exact(4)
                .filter_map(|chunk| <[u8; 4]>::try_from(chunk).ok())
                .map(|[g0, g1, e0, e1]| {
                    (u32::from(u16::from_le_bytes([g0, g1])) << 16)
                        | u32::from(u16::from_le_bytes([e0, e1]))
                })
                .collect(),
        ),
        CommandVr::Ui | CommandVr::Ae | CommandVr::Lo | CommandVr::Sh | CommandVr::Cs => {
            let text = text_from_bytes(content);
            // AE titles: leading spaces are not significant either (PS3.5 Table 6.2-1).
            let text = if vr == CommandVr::Ae {
                text.trim_start()
            } else {
                &text
            };
            CommandValue::Str(text.to_owned())
        }
    })
}

/// A string value as text: valid UTF-8 as is, otherwise every non-ASCII byte replaced by `?`.
/// (Not U+FFFD, whose three bytes could push a value past its VR's maximum length, making a
/// decoded command set impossible to encode again.)
fn text_from_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes
            .iter()
            .map(|byte| {
                if byte.is_ascii() {
                    char::from(*byte)
                } else {
                    '?'
                }
            })
            .collect(),
    }
}

/// The bytes of a fixed-width value (US, UL) as an array.
fn fixed_width<const N: usize>(
    tag: u32,
    vr: CommandVr,
    bytes: &[u8],
) -> Result<[u8; N], CommandValueError> {
    <[u8; N]>::try_from(bytes).map_err(|_| CommandValueError::InvalidLength {
        tag: TagDisplay(tag),
        vr,
        len: bytes.len(),
    })
}

/// Strips the trailing padding (spaces and NULs) from a string value.
fn trim_padding(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|byte| *byte != b' ' && *byte != 0)
        .map_or(0, |index| index + 1);
    bytes.get(..end).unwrap_or_default()
}

/// Appends one element, checking its value against its tag.
fn encode_element(
    tag: u32,
    value: &CommandValue,
    out: &mut BytesMut,
) -> Result<(), CommandValueError> {
    if tag >> 16 != 0 {
        return Err(CommandValueError::NotCommandGroup {
            tag: TagDisplay(tag),
        });
    }
    if tag == tags::COMMAND_GROUP_LENGTH {
        return Err(CommandValueError::GroupLengthNotSettable {
            tag: TagDisplay(tag),
        });
    }
    let value_bytes = value_bytes(tag, value)?;
    let len = u32::try_from(value_bytes.len()).map_err(|_| CommandValueError::ValueTooLong {
        tag: TagDisplay(tag),
        len: value_bytes.len(),
    })?;
    put_element_header(out, tag, len);
    out.extend_from_slice(&value_bytes);
    Ok(())
}

/// The value bytes of an element, padded to even length, after checking that the value suits
/// the tag's VR exactly as the decoder would.
fn value_bytes(tag: u32, value: &CommandValue) -> Result<Vec<u8>, CommandValueError> {
    let Some(spec) = element_spec(tag) else {
        return match value {
            CommandValue::Raw(bytes) => {
                let mut bytes = bytes.clone();
                if bytes.len() % 2 == 1 {
                    bytes.push(0);
                }
                Ok(bytes)
            }
            other => Err(CommandValueError::UnknownElementNotRaw {
                tag: TagDisplay(tag),
                kind: other.kind(),
            }),
        };
    };
    let vr = spec.vr;
    let wrong_type = || CommandValueError::WrongType {
        tag: TagDisplay(tag),
        vr,
        kind: value.kind(),
    };
    let bytes = match (vr, value) {
        (CommandVr::Us, CommandValue::Us(number)) => number.to_le_bytes().to_vec(),
        (CommandVr::Ul, CommandValue::Ul(number)) => number.to_le_bytes().to_vec(),
        (CommandVr::At, CommandValue::At(tag_list)) => tag_list
            .iter()
            .flat_map(|item| {
                let [g, e] = [(item >> 16) as u16, (item & 0xFFFF) as u16];
                let [g0, g1] = g.to_le_bytes();
                let [e0, e1] = e.to_le_bytes();
                [g0, g1, e0, e1]
            })
            .collect(),
        (
            CommandVr::Ui | CommandVr::Ae | CommandVr::Lo | CommandVr::Sh | CommandVr::Cs,
            CommandValue::Str(text),
        ) => {
            let trimmed = trim_padding(text.as_bytes());
            check_identifier(tag, vr, trimmed)?;
            let mut bytes = trimmed.to_vec();
            if bytes.len() % 2 == 1 {
                bytes.push(vr.padding());
            }
            bytes
        }
        _ => return Err(wrong_type()),
    };
    let checked_len = match vr {
        CommandVr::Us | CommandVr::Ul | CommandVr::At => bytes.len(),
        _ => trim_padding(&bytes).len(),
    };
    check_length(tag, vr, checked_len)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_rq() -> CommandSet {
        [
            (
                tags::AFFECTED_SOP_CLASS_UID,
                CommandValue::Str("1.2.840.10008.1.1".into()),
            ),
            (tags::COMMAND_FIELD, CommandValue::Us(0x0030)),
            (tags::MESSAGE_ID, CommandValue::Us(1)),
            (tags::COMMAND_DATA_SET_TYPE, CommandValue::Us(NO_DATA_SET)),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn element_table_is_sorted_and_complete() {
        assert!(
            COMMAND_ELEMENTS
                .windows(2)
                .all(|pair| pair[0].tag < pair[1].tag)
        );
        assert_eq!(COMMAND_ELEMENTS.len(), 24);
        assert_eq!(
            element_spec(tags::MOVE_DESTINATION).map(|s| s.vr),
            Some(CommandVr::Ae)
        );
        assert_eq!(element_spec(0x0000_4000), None);
    }

    #[test]
    fn tag_display_names_known_elements() {
        assert_eq!(
            TagDisplay(tags::MESSAGE_ID).to_string(),
            "(0000,0110) MessageID"
        );
        assert_eq!(TagDisplay(0x0008_0018).to_string(), "(0008,0018)");
    }

    #[test]
    fn group_length_is_first_and_correct() {
        let bytes = echo_rq().encode().unwrap();
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let declared = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        assert_eq!(declared as usize, bytes.len() - 12);
    }

    #[test]
    fn strings_are_padded_by_vr() {
        let mut set = CommandSet::new();
        set.insert(
            tags::AFFECTED_SOP_CLASS_UID,
            CommandValue::Str("1.2.3".into()),
        );
        set.insert(tags::MOVE_DESTINATION, CommandValue::Str("STORE".into()));
        let bytes = set.encode().unwrap();
        // (0000,0002) "1.2.3\0"
        assert_eq!(&bytes[12..26], b"\x00\x00\x02\x00\x06\x00\x00\x001.2.3\x00");
        // (0000,0600) "STORE "
        assert_eq!(&bytes[26..], b"\x00\x00\x00\x06\x06\x00\x00\x00STORE ");
    }

    #[test]
    fn decode_round_trips_and_drops_group_length() {
        let set = echo_rq();
        let decoded =
            CommandSet::decode(&set.encode().unwrap(), &CommandLimits::default()).unwrap();
        assert_eq!(decoded, set);
        assert!(!decoded.contains(tags::COMMAND_GROUP_LENGTH));
    }

    #[test]
    fn group_length_mismatch_is_tolerated_unless_strict() {
        let mut bytes = echo_rq().encode().unwrap().to_vec();
        bytes[8] = bytes[8].wrapping_add(2);
        assert_eq!(
            CommandSet::decode(&bytes, &CommandLimits::default()).unwrap(),
            echo_rq()
        );
        let strict = CommandLimits {
            strict_group_length: true,
            ..CommandLimits::default()
        };
        assert!(matches!(
            CommandSet::decode(&bytes, &strict),
            Err(CommandDecodeError::GroupLengthMismatch { .. })
        ));
        assert_eq!(
            CommandSet::decode(&bytes[12..], &strict),
            Err(CommandDecodeError::MissingGroupLength)
        );
        assert_eq!(
            CommandSet::decode(&bytes[12..], &CommandLimits::default()).unwrap(),
            echo_rq()
        );
    }

    #[test]
    fn decode_rejects_other_groups() {
        let bytes = [0x08, 0, 0x18, 0, 2, 0, 0, 0, b'1', 0];
        assert!(matches!(
            CommandSet::decode(&bytes, &CommandLimits::default()),
            Err(CommandDecodeError::NotCommandGroup { offset: 0, .. })
        ));
    }

    #[test]
    fn decode_rejects_truncation_and_undefined_length() {
        let limits = CommandLimits::default();
        assert!(matches!(
            CommandSet::decode(&[0, 0, 0x10, 1, 2, 0], &limits),
            Err(CommandDecodeError::TruncatedHeader {
                offset: 0,
                available: 6
            })
        ));
        assert!(matches!(
            CommandSet::decode(&[0, 0, 0x10, 1, 2, 0, 0, 0, 1], &limits),
            Err(CommandDecodeError::TruncatedValue {
                claimed: 2,
                available: 1,
                ..
            })
        ));
        assert!(matches!(
            CommandSet::decode(&[0, 0, 0x10, 1, 0xFF, 0xFF, 0xFF, 0xFF], &limits),
            Err(CommandDecodeError::UndefinedLength { .. })
        ));
    }

    #[test]
    fn decode_checks_value_lengths_per_vr() {
        let limits = CommandLimits::default();
        // MessageID (US) with 4 bytes.
        let us4 = [0, 0, 0x10, 1, 4, 0, 0, 0, 1, 0, 0, 0];
        assert!(matches!(
            CommandSet::decode(&us4, &limits),
            Err(CommandDecodeError::InvalidValue(
                CommandValueError::InvalidLength { len: 4, .. }
            ))
        ));
        // MoveDestination (AE) with 18 characters: text is decoded as it is (the service judges
        // it and answers with a status), but it cannot be encoded again.
        let mut ae = vec![0, 0, 0, 6, 18, 0, 0, 0];
        ae.extend_from_slice(b"ABCDEFGHIJKLMNOPQR");
        let set = CommandSet::decode(&ae, &limits).unwrap();
        assert_eq!(
            set.get_str(tags::MOVE_DESTINATION),
            Some("ABCDEFGHIJKLMNOPQR")
        );
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::InvalidLength { len: 18, .. }
            ))
        ));
        // OffendingElement (AT) with 6 bytes.
        let at6 = [0, 0, 1, 9, 6, 0, 0, 0, 8, 0, 0x18, 0, 0, 0];
        assert!(matches!(
            CommandSet::decode(&at6, &limits),
            Err(CommandDecodeError::InvalidValue(
                CommandValueError::InvalidLength { len: 6, .. }
            ))
        ));
    }

    #[test]
    fn decode_rejects_duplicates_and_oversize() {
        let element = [0, 0, 0x10, 1, 2, 0, 0, 0, 1, 0];
        let twice = [element, element].concat();
        assert!(matches!(
            CommandSet::decode(&twice, &CommandLimits::default()),
            Err(CommandDecodeError::DuplicateElement { .. })
        ));
        let small = CommandLimits {
            max_command_len: 9,
            ..CommandLimits::default()
        };
        assert_eq!(
            CommandSet::decode(&element, &small),
            Err(CommandDecodeError::TooLong { len: 10, max: 9 })
        );
    }

    #[test]
    fn identifiers_with_control_characters_decode_but_do_not_encode_texts_are_lossy() {
        let limits = CommandLimits::default();
        let uid = [0, 0, 2, 0, 4, 0, 0, 0, b'1', 0x07, b'2', 0];
        let set = CommandSet::decode(&uid, &limits).unwrap();
        assert_eq!(set.get_str(tags::AFFECTED_SOP_CLASS_UID), Some("1\u{7}2"));
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::InvalidCharacter { .. }
            ))
        ));
        let comment = [0, 0, 2, 9, 4, 0, 0, 0, b'o', 0xE9, b'k', b' '];
        let set = CommandSet::decode(&comment, &limits).unwrap();
        assert_eq!(set.get_str(tags::ERROR_COMMENT), Some("o?k"));
        // Replacement never makes a value longer than its VR allows.
        let mut long = vec![0, 0, 2, 9, 64, 0, 0, 0];
        long.extend(std::iter::repeat_n(0xCB, 64));
        let set = CommandSet::decode(&long, &limits).unwrap();
        assert_eq!(
            set.get_str(tags::ERROR_COMMENT),
            Some("?".repeat(64).as_str())
        );
        assert!(set.encode().is_ok());
    }

    #[test]
    fn odd_length_strings_and_leading_ae_spaces_are_tolerated() {
        let limits = CommandLimits::default();
        let ae = [0, 0, 0, 6, 5, 0, 0, 0, b' ', b'S', b'C', b'P', b' '];
        let set = CommandSet::decode(&ae, &limits).unwrap();
        assert_eq!(set.get_str(tags::MOVE_DESTINATION), Some("SCP"));
    }

    #[test]
    fn unknown_elements_are_kept_raw_and_padded_on_encode() {
        let bytes = [0, 0, 0, 0x40, 3, 0, 0, 0, 1, 2, 3];
        let set = CommandSet::decode(&bytes, &CommandLimits::default()).unwrap();
        assert_eq!(
            set.get(0x0000_4000),
            Some(&CommandValue::Raw(vec![1, 2, 3]))
        );
        let encoded = set.encode().unwrap();
        assert_eq!(&encoded[12..], &[0, 0, 0, 0x40, 4, 0, 0, 0, 1, 2, 3, 0]);
    }

    #[test]
    fn encode_checks_values_like_decode() {
        let mut set = CommandSet::new();
        set.insert(tags::MESSAGE_ID, CommandValue::Str("1".into()));
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::WrongType { .. }
            ))
        ));
        let mut set = CommandSet::new();
        set.insert(
            tags::AFFECTED_SOP_CLASS_UID,
            CommandValue::Str("1".repeat(65)),
        );
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::InvalidLength { len: 65, .. }
            ))
        ));
        let mut set = CommandSet::new();
        set.insert(0x0008_0018, CommandValue::Raw(vec![]));
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::NotCommandGroup { .. }
            ))
        ));
        let mut set = CommandSet::new();
        set.insert(tags::COMMAND_GROUP_LENGTH, CommandValue::Ul(3));
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::GroupLengthNotSettable { .. }
            ))
        ));
        let mut set = CommandSet::new();
        set.insert(0x0000_4000, CommandValue::Us(3));
        assert!(matches!(
            set.encode(),
            Err(CommandEncodeError::InvalidValue(
                CommandValueError::UnknownElementNotRaw { .. }
            ))
        ));
    }

    #[test]
    fn attribute_tags_encode_group_then_element() {
        let mut set = CommandSet::new();
        set.insert(
            tags::OFFENDING_ELEMENT,
            CommandValue::At(vec![0x0010_0020, 0x0008_0018]),
        );
        let bytes = set.encode().unwrap();
        assert_eq!(&bytes[20..], &[0x10, 0, 0x20, 0, 0x08, 0, 0x18, 0]);
        let decoded = CommandSet::decode(&bytes, &CommandLimits::default()).unwrap();
        assert_eq!(decoded, set);
    }

    #[test]
    fn data_set_type_other_than_0101_means_present() {
        let mut set = echo_rq();
        assert!(!set.has_data_set());
        set.insert(tags::COMMAND_DATA_SET_TYPE, CommandValue::Us(0x0102));
        assert!(set.has_data_set());
        set.insert(tags::COMMAND_DATA_SET_TYPE, CommandValue::Us(0));
        assert!(set.has_data_set());
    }
}
