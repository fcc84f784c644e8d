//! Typed DIMSE messages: every DIMSE-C (PS3.7 §9.3) and DIMSE-N (PS3.7 §10.3) request and
//! response, converted to and from a [`CommandSet`].
//!
//! Each message is declared once, as a list of fields with their command element and whether it
//! is mandatory (`req`) or not (`opt`); the struct, its reading (with a typed error naming a
//! missing mandatory element) and its writing are generated from that list. Requests get
//! `message_id`; responses get `message_id_being_responded_to`, `status` and the optional
//! `offending_element`, `error_comment` and `error_id` of PS3.7 Annex C; every message gets
//! `data_set_present` (Command Data Set Type ≠ 0101).
//!
//! [`Message::from_command_set`] checks the presence and type of mandatory elements only; whether
//! a data set *should* accompany a given message (a C-STORE-RQ always has one, a C-ECHO-RQ never)
//! is left to the service layer, which knows how to answer.

use std::fmt;

use crate::command::{CommandSet, CommandValue, DATA_SET_PRESENT, NO_DATA_SET, TagDisplay, tags};
use crate::status::Status;

macro_rules! command_fields {
    ($($(#[$meta:meta])* $name:ident = $code:literal, $label:literal;)*) => {
        /// Command Field (0000,0100) values: the DIMSE operation of a message (PS3.7 §9.3,
        /// §10.3, Table E.1-1).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum CommandField {
            $($(#[$meta])* $name = $code,)*
        }

        impl CommandField {
            /// The value of Command Field on the wire.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The command field for a wire value, or `None` for an unknown one.
            pub fn from_code(code: u16) -> Option<Self> {
                match code {
                    $($code => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// The name the standard uses, e.g. `C-STORE-RQ`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$name => $label,)*
                }
            }
        }
    };
}

command_fields! {
    CStoreRq = 0x0001, "C-STORE-RQ";
    CStoreRsp = 0x8001, "C-STORE-RSP";
    CGetRq = 0x0010, "C-GET-RQ";
    CGetRsp = 0x8010, "C-GET-RSP";
    CFindRq = 0x0020, "C-FIND-RQ";
    CFindRsp = 0x8020, "C-FIND-RSP";
    CMoveRq = 0x0021, "C-MOVE-RQ";
    CMoveRsp = 0x8021, "C-MOVE-RSP";
    CEchoRq = 0x0030, "C-ECHO-RQ";
    CEchoRsp = 0x8030, "C-ECHO-RSP";
    NEventReportRq = 0x0100, "N-EVENT-REPORT-RQ";
    NEventReportRsp = 0x8100, "N-EVENT-REPORT-RSP";
    NGetRq = 0x0110, "N-GET-RQ";
    NGetRsp = 0x8110, "N-GET-RSP";
    NSetRq = 0x0120, "N-SET-RQ";
    NSetRsp = 0x8120, "N-SET-RSP";
    NActionRq = 0x0130, "N-ACTION-RQ";
    NActionRsp = 0x8130, "N-ACTION-RSP";
    NCreateRq = 0x0140, "N-CREATE-RQ";
    NCreateRsp = 0x8140, "N-CREATE-RSP";
    NDeleteRq = 0x0150, "N-DELETE-RQ";
    NDeleteRsp = 0x8150, "N-DELETE-RSP";
    CCancelRq = 0x0FFF, "C-CANCEL-RQ";
}

impl CommandField {
    /// Whether this is a response (bit 15 set).
    pub fn is_response(self) -> bool {
        self.code() & 0x8000 != 0
    }
}

impl fmt::Display for CommandField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Priority (0000,0700) of a C-STORE, C-FIND, C-GET or C-MOVE request (PS3.7 Table E.1-1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    /// The value on the wire: LOW 0002, MEDIUM 0000, HIGH 0001.
    pub fn code(self) -> u16 {
        match self {
            Priority::Low => 0x0002,
            Priority::Medium => 0x0000,
            Priority::High => 0x0001,
        }
    }

    /// The priority for a wire value, or `None` for an undefined one.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            0x0002 => Some(Priority::Low),
            0x0000 => Some(Priority::Medium),
            0x0001 => Some(Priority::High),
            _ => None,
        }
    }
}

/// Why a command set is not a valid DIMSE message (PS3.7 §9.3, §10.3). The service provider
/// answers with status 0xC000-range / 0x0211 / 0x0212 or aborts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command set has no Command Field (0000,0100) of type US")]
    MissingCommandField,
    #[error("unknown command field 0x{0:04X}")]
    UnknownCommandField(u16),
    #[error("{command} lacks the mandatory element {tag}")]
    MissingElement {
        command: CommandField,
        tag: TagDisplay,
    },
    #[error("{command}: element {tag} has an invalid value {value:?}")]
    InvalidElement {
        command: CommandField,
        tag: TagDisplay,
        value: CommandValue,
    },
}

/// How a typed message field is stored in a command element.
trait FieldValue: Sized {
    /// The field for an element value, or `None` when the value has the wrong type or an
    /// undefined code.
    fn from_value(value: &CommandValue) -> Option<Self>;
    fn to_value(&self) -> CommandValue;
}

impl FieldValue for u16 {
    fn from_value(value: &CommandValue) -> Option<Self> {
        match value {
            CommandValue::Us(number) => Some(*number),
            _ => None,
        }
    }
    fn to_value(&self) -> CommandValue {
        CommandValue::Us(*self)
    }
}

impl FieldValue for String {
    fn from_value(value: &CommandValue) -> Option<Self> {
        match value {
            CommandValue::Str(text) => Some(text.clone()),
            _ => None,
        }
    }
    fn to_value(&self) -> CommandValue {
        CommandValue::Str(self.clone())
    }
}

/// Attribute tags (AT, 1-n), each `(group << 16) | element`.
impl FieldValue for Vec<u32> {
    fn from_value(value: &CommandValue) -> Option<Self> {
        match value {
            CommandValue::At(tag_list) => Some(tag_list.clone()),
            _ => None,
        }
    }
    fn to_value(&self) -> CommandValue {
        CommandValue::At(self.clone())
    }
}

impl FieldValue for Priority {
    fn from_value(value: &CommandValue) -> Option<Self> {
        u16::from_value(value).and_then(Priority::from_code)
    }
    fn to_value(&self) -> CommandValue {
        CommandValue::Us(self.code())
    }
}

impl FieldValue for Status {
    fn from_value(value: &CommandValue) -> Option<Self> {
        u16::from_value(value).map(Status)
    }
    fn to_value(&self) -> CommandValue {
        CommandValue::Us(self.0)
    }
}

fn read_optional<T: FieldValue>(
    command_set: &CommandSet,
    command: CommandField,
    tag: u32,
) -> Result<Option<T>, CommandError> {
    command_set
        .get(tag)
        .map(|value| {
            T::from_value(value).ok_or_else(|| CommandError::InvalidElement {
                command,
                tag: TagDisplay(tag),
                value: value.clone(),
            })
        })
        .transpose()
}

fn read_required<T: FieldValue>(
    command_set: &CommandSet,
    command: CommandField,
    tag: u32,
) -> Result<T, CommandError> {
    read_optional(command_set, command, tag)?.ok_or(CommandError::MissingElement {
        command,
        tag: TagDisplay(tag),
    })
}

fn write_value<T: FieldValue>(command_set: &mut CommandSet, tag: u32, value: &T) {
    command_set.insert(tag, value.to_value());
}

/// Writes Command Field and Command Data Set Type, present in every message.
fn write_common(command_set: &mut CommandSet, command: CommandField, data_set_present: bool) {
    write_value(command_set, tags::COMMAND_FIELD, &command.code());
    let data_set_type = if data_set_present {
        DATA_SET_PRESENT
    } else {
        NO_DATA_SET
    };
    write_value(command_set, tags::COMMAND_DATA_SET_TYPE, &data_set_type);
}

/// Reads Command Data Set Type: mandatory in every message, 0101 meaning no data set.
fn read_data_set_present(
    command_set: &CommandSet,
    command: CommandField,
) -> Result<bool, CommandError> {
    let data_set_type: u16 = read_required(command_set, command, tags::COMMAND_DATA_SET_TYPE)?;
    Ok(data_set_type != NO_DATA_SET)
}

macro_rules! field_type {
    (req $ty:ty) => { $ty };
    (opt $ty:ty) => { Option<$ty> };
}

macro_rules! read_field {
    (req, $set:expr, $command:expr, $tag:expr) => {
        read_required($set, $command, $tag)?
    };
    (opt, $set:expr, $command:expr, $tag:expr) => {
        read_optional($set, $command, $tag)?
    };
}

macro_rules! write_field {
    (req, $set:expr, $tag:expr, $value:expr) => {
        write_value($set, $tag, &$value)
    };
    (opt, $set:expr, $tag:expr, $value:expr) => {
        if let Some(value) = &$value {
            write_value($set, $tag, value);
        }
    };
}

/// Message IDs and status, answered by every message struct.
trait MessageHeader {
    fn message_id(&self) -> Option<u16>;
    fn message_id_being_responded_to(&self) -> Option<u16>;
    fn status(&self) -> Option<Status>;
}

macro_rules! message_struct {
    // A request: Message ID first.
    (request $(#[$meta:meta])* $name:ident { $($fields:tt)* }) => {
        message_struct!(@fields $(#[$meta])* $name {
            /// Message ID (0000,0110).
            req message_id: u16 = MESSAGE_ID,
            $($fields)*
        });
        impl MessageHeader for $name {
            fn message_id(&self) -> Option<u16> { Some(self.message_id) }
            fn message_id_being_responded_to(&self) -> Option<u16> { None }
            fn status(&self) -> Option<Status> { None }
        }
    };
    // C-CANCEL-RQ: names the request it cancels.
    (cancel $(#[$meta:meta])* $name:ident { $($fields:tt)* }) => {
        message_struct!(@fields $(#[$meta])* $name {
            /// Message ID Being Responded To (0000,0120): the request to cancel.
            req message_id_being_responded_to: u16 = MESSAGE_ID_BEING_RESPONDED_TO,
            $($fields)*
        });
        impl MessageHeader for $name {
            fn message_id(&self) -> Option<u16> { None }
            fn message_id_being_responded_to(&self) -> Option<u16> {
                Some(self.message_id_being_responded_to)
            }
            fn status(&self) -> Option<Status> { None }
        }
    };
    // A response: Message ID Being Responded To and Status, the optional error fields of PS3.7
    // Annex C, and only optional fields of its own.
    (response $(#[$meta:meta])* $name:ident {
        $($(#[$field_meta:meta])* opt $field:ident : $ty:ty = $tag:ident),* $(,)?
    }) => {
        message_struct!(@fields $(#[$meta])* $name {
            /// Message ID Being Responded To (0000,0120).
            req message_id_being_responded_to: u16 = MESSAGE_ID_BEING_RESPONDED_TO,
            /// Status (0000,0900).
            req status: Status = STATUS,
            $($(#[$field_meta])* opt $field: $ty = $tag,)*
            /// Offending Element (0000,0901): the elements in error (PS3.7 Annex C).
            opt offending_element: Vec<u32> = OFFENDING_ELEMENT,
            /// Error Comment (0000,0902): a description for people (PS3.7 Annex C).
            opt error_comment: String = ERROR_COMMENT,
            /// Error ID (0000,0903): an implementation-specific code (PS3.7 Annex C).
            opt error_id: u16 = ERROR_ID,
        });
        impl $name {
            /// A response with no data set and no optional field.
            pub fn new(message_id_being_responded_to: u16, status: Status) -> Self {
                Self {
                    message_id_being_responded_to,
                    status,
                    $($field: None,)*
                    offending_element: None,
                    error_comment: None,
                    error_id: None,
                    data_set_present: false,
                }
            }
        }
        impl MessageHeader for $name {
            fn message_id(&self) -> Option<u16> { None }
            fn message_id_being_responded_to(&self) -> Option<u16> {
                Some(self.message_id_being_responded_to)
            }
            fn status(&self) -> Option<Status> { Some(self.status) }
        }
    };
    (@fields $(#[$meta:meta])* $name:ident {
        $($(#[$field_meta:meta])* $mode:ident $field:ident : $ty:ty = $tag:ident),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: field_type!($mode $ty),)*
            /// Whether a data set follows the command: Command Data Set Type (0000,0800) other
            /// than 0101.
            pub data_set_present: bool,
        }

        impl $name {
            /// The Command Field of this message.
            pub const COMMAND_FIELD: CommandField = CommandField::$name;

            /// Reads the message's fields from a command set whose Command Field is this one.
            fn read(command_set: &CommandSet) -> Result<Self, CommandError> {
                Ok(Self {
                    $($field: read_field!($mode, command_set, CommandField::$name, tags::$tag),)*
                    data_set_present: read_data_set_present(command_set, CommandField::$name)?,
                })
            }

            /// Writes the message's fields into a command set.
            fn write(&self, command_set: &mut CommandSet) {
                write_common(command_set, CommandField::$name, self.data_set_present);
                $(write_field!($mode, command_set, tags::$tag, self.$field);)*
            }
        }
    };
}

macro_rules! messages {
    ($($kind:ident $(#[$meta:meta])* $name:ident { $($fields:tt)* })*) => {
        $(message_struct!($kind $(#[$meta])* $name { $($fields)* });)*

        /// Any DIMSE message (PS3.7 §9.3, §10.3).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $($name($name),)*
        }

        $(impl From<$name> for Message {
            fn from(message: $name) -> Self {
                Message::$name(message)
            }
        })*

        impl Message {
            /// The operation of this message.
            pub fn command_field(&self) -> CommandField {
                match self {
                    $(Message::$name(_) => CommandField::$name,)*
                }
            }

            /// Whether a data set follows the command.
            pub fn has_data_set(&self) -> bool {
                match self {
                    $(Message::$name(message) => message.data_set_present,)*
                }
            }

            fn header(&self) -> &dyn MessageHeader {
                match self {
                    $(Message::$name(message) => message,)*
                }
            }

            /// The command set of this message, ready to [`CommandSet::encode`].
            pub fn to_command_set(&self) -> CommandSet {
                let mut command_set = CommandSet::new();
                match self {
                    $(Message::$name(message) => message.write(&mut command_set),)*
                }
                command_set
            }

            /// Reads a message from a decoded command set, checking that its mandatory elements
            /// are present and well typed. Elements a message does not define are ignored.
            pub fn from_command_set(command_set: &CommandSet) -> Result<Message, CommandError> {
                let code = command_set
                    .get_us(tags::COMMAND_FIELD)
                    .ok_or(CommandError::MissingCommandField)?;
                let command =
                    CommandField::from_code(code).ok_or(CommandError::UnknownCommandField(code))?;
                Ok(match command {
                    $(CommandField::$name => Message::$name($name::read(command_set)?),)*
                })
            }
        }
    };
}

impl Message {
    /// Message ID (0000,0110) of a request; `None` for responses and C-CANCEL-RQ.
    pub fn message_id(&self) -> Option<u16> {
        self.header().message_id()
    }

    /// Message ID Being Responded To (0000,0120) of a response or a C-CANCEL-RQ.
    pub fn message_id_being_responded_to(&self) -> Option<u16> {
        self.header().message_id_being_responded_to()
    }

    /// Status (0000,0900) of a response; `None` for requests.
    pub fn status(&self) -> Option<Status> {
        self.header().status()
    }
}

messages! {
    request
    /// C-STORE-RQ (PS3.7 §9.3.1.1, Table 9.3-1).
    CStoreRq {
        /// Affected SOP Class UID (0000,0002).
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        req affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
        /// Priority (0000,0700).
        req priority: Priority = PRIORITY,
        /// Move Originator Application Entity Title (0000,1030), when the store is a C-MOVE
        /// sub-operation.
        opt move_originator_ae_title: String = MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
        /// Move Originator Message ID (0000,1031), when the store is a C-MOVE sub-operation.
        opt move_originator_message_id: u16 = MOVE_ORIGINATOR_MESSAGE_ID,
    }

    response
    /// C-STORE-RSP (PS3.7 §9.3.1.2, Table 9.3-2).
    CStoreRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
    }

    request
    /// C-FIND-RQ (PS3.7 §9.3.2.1, Table 9.3-3); the identifier follows as the data set.
    CFindRq {
        /// Affected SOP Class UID (0000,0002).
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Priority (0000,0700).
        req priority: Priority = PRIORITY,
    }

    response
    /// C-FIND-RSP (PS3.7 §9.3.2.2, Table 9.3-4); a pending response carries a match as its data
    /// set, the final one none.
    CFindRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
    }

    request
    /// C-GET-RQ (PS3.7 §9.3.3.1, Table 9.3-5); the identifier follows as the data set.
    CGetRq {
        /// Affected SOP Class UID (0000,0002).
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Priority (0000,0700).
        req priority: Priority = PRIORITY,
    }

    response
    /// C-GET-RSP (PS3.7 §9.3.3.2, Table 9.3-6).
    CGetRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Number of Remaining Sub-operations (0000,1020).
        opt number_of_remaining_suboperations: u16 = NUMBER_OF_REMAINING_SUBOPERATIONS,
        /// Number of Completed Sub-operations (0000,1021).
        opt number_of_completed_suboperations: u16 = NUMBER_OF_COMPLETED_SUBOPERATIONS,
        /// Number of Failed Sub-operations (0000,1022).
        opt number_of_failed_suboperations: u16 = NUMBER_OF_FAILED_SUBOPERATIONS,
        /// Number of Warning Sub-operations (0000,1023).
        opt number_of_warning_suboperations: u16 = NUMBER_OF_WARNING_SUBOPERATIONS,
    }

    request
    /// C-MOVE-RQ (PS3.7 §9.3.4.1, Table 9.3-7); the identifier follows as the data set.
    CMoveRq {
        /// Affected SOP Class UID (0000,0002).
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Priority (0000,0700).
        req priority: Priority = PRIORITY,
        /// Move Destination (0000,0600): the AE title to store the matches to.
        req move_destination: String = MOVE_DESTINATION,
    }

    response
    /// C-MOVE-RSP (PS3.7 §9.3.4.2, Table 9.3-8).
    CMoveRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Number of Remaining Sub-operations (0000,1020).
        opt number_of_remaining_suboperations: u16 = NUMBER_OF_REMAINING_SUBOPERATIONS,
        /// Number of Completed Sub-operations (0000,1021).
        opt number_of_completed_suboperations: u16 = NUMBER_OF_COMPLETED_SUBOPERATIONS,
        /// Number of Failed Sub-operations (0000,1022).
        opt number_of_failed_suboperations: u16 = NUMBER_OF_FAILED_SUBOPERATIONS,
        /// Number of Warning Sub-operations (0000,1023).
        opt number_of_warning_suboperations: u16 = NUMBER_OF_WARNING_SUBOPERATIONS,
    }

    request
    /// C-ECHO-RQ (PS3.7 §9.3.5.1, Table 9.3-12).
    CEchoRq {
        /// Affected SOP Class UID (0000,0002): the Verification SOP Class.
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
    }

    response
    /// C-ECHO-RSP (PS3.7 §9.3.5.2, Table 9.3-13).
    CEchoRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
    }

    cancel
    /// C-CANCEL-RQ (PS3.7 §9.3.2.3, §9.3.3.3, §9.3.4.3, Table 9.3-10).
    CCancelRq {}

    request
    /// N-EVENT-REPORT-RQ (PS3.7 §10.3.1.1, Table 10.3-1); the event information follows as the
    /// data set.
    NEventReportRq {
        /// Affected SOP Class UID (0000,0002).
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        req affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
        /// Event Type ID (0000,1002).
        req event_type_id: u16 = EVENT_TYPE_ID,
    }

    response
    /// N-EVENT-REPORT-RSP (PS3.7 §10.3.1.2, Table 10.3-2).
    NEventReportRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
        /// Event Type ID (0000,1002).
        opt event_type_id: u16 = EVENT_TYPE_ID,
    }

    request
    /// N-GET-RQ (PS3.7 §10.3.2.1, Table 10.3-3).
    NGetRq {
        /// Requested SOP Class UID (0000,0003).
        req requested_sop_class_uid: String = REQUESTED_SOP_CLASS_UID,
        /// Requested SOP Instance UID (0000,1001).
        req requested_sop_instance_uid: String = REQUESTED_SOP_INSTANCE_UID,
        /// Attribute Identifier List (0000,1005): the attributes wanted; absent means all.
        opt attribute_identifier_list: Vec<u32> = ATTRIBUTE_IDENTIFIER_LIST,
    }

    response
    /// N-GET-RSP (PS3.7 §10.3.2.2, Table 10.3-4); the attribute list follows as the data set.
    NGetRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
    }

    request
    /// N-SET-RQ (PS3.7 §10.3.3.1, Table 10.3-5); the modification list follows as the data set.
    NSetRq {
        /// Requested SOP Class UID (0000,0003).
        req requested_sop_class_uid: String = REQUESTED_SOP_CLASS_UID,
        /// Requested SOP Instance UID (0000,1001).
        req requested_sop_instance_uid: String = REQUESTED_SOP_INSTANCE_UID,
    }

    response
    /// N-SET-RSP (PS3.7 §10.3.3.2, Table 10.3-6).
    NSetRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
    }

    request
    /// N-ACTION-RQ (PS3.7 §10.3.4.1, Table 10.3-7); the action information follows as the data
    /// set.
    NActionRq {
        /// Requested SOP Class UID (0000,0003).
        req requested_sop_class_uid: String = REQUESTED_SOP_CLASS_UID,
        /// Requested SOP Instance UID (0000,1001).
        req requested_sop_instance_uid: String = REQUESTED_SOP_INSTANCE_UID,
        /// Action Type ID (0000,1008).
        req action_type_id: u16 = ACTION_TYPE_ID,
    }

    response
    /// N-ACTION-RSP (PS3.7 §10.3.4.2, Table 10.3-8).
    NActionRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
        /// Action Type ID (0000,1008).
        opt action_type_id: u16 = ACTION_TYPE_ID,
    }

    request
    /// N-CREATE-RQ (PS3.7 §10.3.5.1, Table 10.3-9); the attribute list follows as the data set.
    NCreateRq {
        /// Affected SOP Class UID (0000,0002).
        req affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000); absent when the SCP is to assign one.
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
    }

    response
    /// N-CREATE-RSP (PS3.7 §10.3.5.2, Table 10.3-10).
    NCreateRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
    }

    request
    /// N-DELETE-RQ (PS3.7 §10.3.6.1, Table 10.3-11).
    NDeleteRq {
        /// Requested SOP Class UID (0000,0003).
        req requested_sop_class_uid: String = REQUESTED_SOP_CLASS_UID,
        /// Requested SOP Instance UID (0000,1001).
        req requested_sop_instance_uid: String = REQUESTED_SOP_INSTANCE_UID,
    }

    response
    /// N-DELETE-RSP (PS3.7 §10.3.6.2, Table 10.3-12).
    NDeleteRsp {
        /// Affected SOP Class UID (0000,0002).
        opt affected_sop_class_uid: String = AFFECTED_SOP_CLASS_UID,
        /// Affected SOP Instance UID (0000,1000).
        opt affected_sop_instance_uid: String = AFFECTED_SOP_INSTANCE_UID,
    }
}

impl Message {
    /// Sets the Error Comment (0000,0902) of a response — LO, so at most 64 characters are
    /// kept (PS3.7 Annex C); requests and C-CANCEL-RQ have none and are left as they are.
    pub fn set_error_comment(&mut self, comment: &str) {
        let slot = match self {
            Message::CStoreRsp(rsp) => &mut rsp.error_comment,
            Message::CFindRsp(rsp) => &mut rsp.error_comment,
            Message::CGetRsp(rsp) => &mut rsp.error_comment,
            Message::CMoveRsp(rsp) => &mut rsp.error_comment,
            Message::CEchoRsp(rsp) => &mut rsp.error_comment,
            Message::NEventReportRsp(rsp) => &mut rsp.error_comment,
            Message::NGetRsp(rsp) => &mut rsp.error_comment,
            Message::NSetRsp(rsp) => &mut rsp.error_comment,
            Message::NActionRsp(rsp) => &mut rsp.error_comment,
            Message::NCreateRsp(rsp) => &mut rsp.error_comment,
            Message::NDeleteRsp(rsp) => &mut rsp.error_comment,
            _ => return,
        };
        *slot = Some(comment.chars().take(64).collect());
    }

    /// The response to this request carrying only `status` and the request's identifying UIDs
    /// (the affected or requested SOP class and instance, as PS3.7 §9.3 and §10.3 have the
    /// response echo them). What a provider answers when it cannot perform a request. `None` for
    /// responses and C-CANCEL-RQ, which are not answered.
    pub fn response_with_status(&self, status: Status) -> Option<Message> {
        let id = self.message_id()?;
        Some(match self {
            Message::CStoreRq(rq) => CStoreRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                affected_sop_instance_uid: echoable_uid(&rq.affected_sop_instance_uid),
                ..CStoreRsp::new(id, status)
            }
            .into(),
            Message::CFindRq(rq) => CFindRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                ..CFindRsp::new(id, status)
            }
            .into(),
            Message::CGetRq(rq) => CGetRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                ..CGetRsp::new(id, status)
            }
            .into(),
            Message::CMoveRq(rq) => CMoveRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                ..CMoveRsp::new(id, status)
            }
            .into(),
            Message::CEchoRq(rq) => CEchoRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                ..CEchoRsp::new(id, status)
            }
            .into(),
            Message::NEventReportRq(rq) => NEventReportRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                affected_sop_instance_uid: echoable_uid(&rq.affected_sop_instance_uid),
                event_type_id: Some(rq.event_type_id),
                ..NEventReportRsp::new(id, status)
            }
            .into(),
            Message::NGetRq(rq) => NGetRsp {
                affected_sop_class_uid: echoable_uid(&rq.requested_sop_class_uid),
                affected_sop_instance_uid: echoable_uid(&rq.requested_sop_instance_uid),
                ..NGetRsp::new(id, status)
            }
            .into(),
            Message::NSetRq(rq) => NSetRsp {
                affected_sop_class_uid: echoable_uid(&rq.requested_sop_class_uid),
                affected_sop_instance_uid: echoable_uid(&rq.requested_sop_instance_uid),
                ..NSetRsp::new(id, status)
            }
            .into(),
            Message::NActionRq(rq) => NActionRsp {
                affected_sop_class_uid: echoable_uid(&rq.requested_sop_class_uid),
                affected_sop_instance_uid: echoable_uid(&rq.requested_sop_instance_uid),
                action_type_id: Some(rq.action_type_id),
                ..NActionRsp::new(id, status)
            }
            .into(),
            Message::NCreateRq(rq) => NCreateRsp {
                affected_sop_class_uid: echoable_uid(&rq.affected_sop_class_uid),
                affected_sop_instance_uid: rq
                    .affected_sop_instance_uid
                    .as_deref()
                    .and_then(echoable_uid),
                ..NCreateRsp::new(id, status)
            }
            .into(),
            Message::NDeleteRq(rq) => NDeleteRsp {
                affected_sop_class_uid: echoable_uid(&rq.requested_sop_class_uid),
                affected_sop_instance_uid: echoable_uid(&rq.requested_sop_instance_uid),
                ..NDeleteRsp::new(id, status)
            }
            .into(),
            _ => return None,
        })
    }
}

/// A request's UID as a response may echo it, or `None` when the command encoder would refuse
/// it: 1 to [`MAX_LEN`](dimsum_ul::uid::MAX_LEN) printable ASCII characters, no space.
///
/// Deliberately not the UID syntax of PS3.5 §9.1 ([`dimsum_ul::uid::validate`]): decoding is
/// lenient, so a request may carry a malformed UID, and a provider that refuses it (0xC000,
/// 0xA900…) still echoes whatever can be encoded. Leaving out only what cannot be encoded keeps
/// the refusal itself always sendable.
fn echoable_uid(uid: &str) -> Option<String> {
    (!uid.is_empty()
        && uid.len() <= dimsum_ul::uid::MAX_LEN
        && uid.bytes().all(|b| b.is_ascii_graphic()))
    .then(|| uid.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_field_codes_round_trip() {
        for code in 0..=u16::MAX {
            if let Some(field) = CommandField::from_code(code) {
                assert_eq!(field.code(), code);
                assert_eq!(field.is_response(), field.name().ends_with("-RSP"));
            }
        }
        assert_eq!(
            CommandField::from_code(0x0FFF),
            Some(CommandField::CCancelRq)
        );
        assert_eq!(CommandField::CMoveRsp.code(), 0x8021);
        assert_eq!(
            CommandField::NEventReportRq.to_string(),
            "N-EVENT-REPORT-RQ"
        );
    }

    #[test]
    fn priority_codes() {
        for priority in [Priority::Low, Priority::Medium, Priority::High] {
            assert_eq!(Priority::from_code(priority.code()), Some(priority));
        }
        assert_eq!(Priority::Low.code(), 2);
        assert_eq!(Priority::High.code(), 1);
        assert_eq!(Priority::Medium.code(), 0);
        assert_eq!(Priority::from_code(3), None);
    }

    #[test]
    fn missing_mandatory_element_is_named() {
        let mut set = Message::from(CStoreRq {
            message_id: 7,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            affected_sop_instance_uid: "1.2.3.4".into(),
            priority: Priority::Medium,
            move_originator_ae_title: None,
            move_originator_message_id: None,
            data_set_present: true,
        })
        .to_command_set();
        set.remove(tags::AFFECTED_SOP_INSTANCE_UID);
        let error = Message::from_command_set(&set).unwrap_err();
        assert_eq!(
            error,
            CommandError::MissingElement {
                command: CommandField::CStoreRq,
                tag: TagDisplay(tags::AFFECTED_SOP_INSTANCE_UID)
            }
        );
        assert_eq!(
            error.to_string(),
            "C-STORE-RQ lacks the mandatory element (0000,1000) AffectedSOPInstanceUID"
        );
    }

    #[test]
    fn invalid_priority_is_rejected() {
        let mut set = Message::from(CFindRq {
            message_id: 1,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.2.1.1".into(),
            priority: Priority::High,
            data_set_present: true,
        })
        .to_command_set();
        set.insert(tags::PRIORITY, CommandValue::Us(9));
        assert!(matches!(
            Message::from_command_set(&set),
            Err(CommandError::InvalidElement {
                command: CommandField::CFindRq,
                ..
            })
        ));
    }

    #[test]
    fn command_field_and_data_set_type_are_required() {
        let rsp = Message::from(CEchoRsp::new(3, Status::SUCCESS));
        let mut set = rsp.to_command_set();
        set.remove(tags::COMMAND_DATA_SET_TYPE);
        assert!(matches!(
            Message::from_command_set(&set),
            Err(CommandError::MissingElement {
                command: CommandField::CEchoRsp,
                ..
            })
        ));
        set.remove(tags::COMMAND_FIELD);
        assert_eq!(
            Message::from_command_set(&set),
            Err(CommandError::MissingCommandField)
        );
        set.insert(tags::COMMAND_FIELD, CommandValue::Us(0x1234));
        assert_eq!(
            Message::from_command_set(&set),
            Err(CommandError::UnknownCommandField(0x1234))
        );
    }

    #[test]
    fn header_accessors() {
        let rq = Message::from(CEchoRq {
            message_id: 5,
            affected_sop_class_uid: "1.2.840.10008.1.1".into(),
            data_set_present: false,
        });
        assert_eq!(rq.message_id(), Some(5));
        assert_eq!(rq.message_id_being_responded_to(), None);
        assert_eq!(rq.status(), None);
        let rsp = Message::from(CFindRsp::new(5, Status::PENDING));
        assert_eq!(rsp.message_id(), None);
        assert_eq!(rsp.message_id_being_responded_to(), Some(5));
        assert_eq!(rsp.status(), Some(Status::PENDING));
        let cancel = Message::from(CCancelRq {
            message_id_being_responded_to: 5,
            data_set_present: false,
        });
        assert_eq!(cancel.message_id_being_responded_to(), Some(5));
        assert_eq!(cancel.command_field(), CommandField::CCancelRq);
    }

    #[test]
    fn a_refused_request_gets_its_own_response_type_with_the_request_uids() {
        let rq = Message::CStoreRq(CStoreRq {
            message_id: 7,
            affected_sop_class_uid: "1.2.3".into(),
            affected_sop_instance_uid: "1.2.3.4".into(),
            priority: Priority::Medium,
            move_originator_ae_title: None,
            move_originator_message_id: None,
            data_set_present: true,
        });
        let Some(Message::CStoreRsp(rsp)) = rq.response_with_status(Status::OUT_OF_RESOURCES)
        else {
            panic!("expected a C-STORE-RSP");
        };
        assert_eq!(rsp.message_id_being_responded_to, 7);
        assert_eq!(rsp.status, Status::OUT_OF_RESOURCES);
        assert_eq!(rsp.affected_sop_instance_uid.as_deref(), Some("1.2.3.4"));
        assert!(!rsp.data_set_present);
        let cancel = Message::CCancelRq(CCancelRq {
            message_id_being_responded_to: 7,
            data_set_present: false,
        });
        assert_eq!(cancel.response_with_status(Status::SUCCESS), None);
        assert_eq!(
            Message::CEchoRsp(CEchoRsp::new(1, Status::SUCCESS))
                .response_with_status(Status::SUCCESS),
            None
        );
    }

    /// Refusals echo what the encoder can encode, well-formed UID or not, and leave out the rest.
    #[test]
    fn refusals_echo_encodable_uids_only() {
        let too_long = "1".repeat(dimsum_ul::uid::MAX_LEN + 1);
        for (uid, echoed) in [
            ("1.2.840.10008.5.1.4.1.1.2", true),
            ("1.2.x", true),  // malformed (PS3.5 §9.1), but encodable
            ("1.02.3", true), // likewise
            ("", false),
            ("1.2 3", false),
            ("1.2.\u{e9}", false),
            (too_long.as_str(), false),
        ] {
            assert_eq!(echoable_uid(uid).is_some(), echoed, "{uid:?}");
            let rq = Message::CStoreRq(CStoreRq {
                message_id: 1,
                affected_sop_class_uid: uid.into(),
                affected_sop_instance_uid: uid.into(),
                priority: Priority::Medium,
                move_originator_ae_title: None,
                move_originator_message_id: None,
                data_set_present: true,
            });
            let Some(rsp) = rq.response_with_status(Status::OUT_OF_RESOURCES) else {
                panic!("a C-STORE-RQ is answered");
            };
            assert!(rsp.to_command_set().encode().is_ok(), "{uid:?}");
        }
    }
}
