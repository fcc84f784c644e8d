//! Receiving side: turning the PDVs of P-DATA-TF PDUs back into messages (PS3.7 §6.3.1, PS3.8
//! Annex E).
//!
//! A DIMSE message is a command set, sent as one or more command fragments, optionally followed
//! by a data set, sent as one or more data fragments, all on one presentation context. The
//! [`Assembler`] buffers command fragments (never more than [`CommandLimits::max_command_len`])
//! and decodes the command when its last fragment arrives; data fragments are handed on as they
//! arrive, sharing the received buffer, so memory does not grow with the size of a data set.
//!
//! After any error the assembler is idle again; a peer that breaks the fragment sequence has
//! broken the protocol, and the caller normally aborts the association (PS3.8 §9.2, A-ABORT).
//! The one exception is [`AssembleError::InvalidMessage`]: the command set was well formed but is
//! not a valid message (an unknown command field, a missing mandatory element). The service
//! layer may answer it with a failure status, so the assembler stays in step with the peer: if
//! the command announced a data set, the fragments of that data set are silently discarded.

use bytes::{Bytes, BytesMut};
use dimsum_ul::pdu::Pdv;

use crate::command::{CommandDecodeError, CommandLimits, CommandSet};
use crate::message::{CommandError, Message};

/// What one PDV completed: a command, or a fragment of the data set that follows one (PS3.7
/// §6.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// A whole command. When `message.has_data_set()`, data fragments follow.
    Command {
        presentation_context_id: u8,
        message: Message,
        command: CommandSet,
    },
    /// A fragment of the data set of the last command, as received.
    DataFragment {
        presentation_context_id: u8,
        data: Bytes,
        is_last: bool,
    },
}

/// Why a PDV could not be taken (PS3.7 §6.3.1, PS3.8 Annex E).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error(
        "data fragment on presentation context {presentation_context_id} without a command announcing a data set"
    )]
    DataWithoutCommand { presentation_context_id: u8 },
    #[error(
        "data fragment on presentation context {presentation_context_id} before the last fragment of the command on context {command_context_id}"
    )]
    DataBeforeCommandEnded {
        presentation_context_id: u8,
        command_context_id: u8,
    },
    #[error(
        "new command on presentation context {presentation_context_id} before the last fragment of the data set on context {data_set_context_id}"
    )]
    CommandBeforeDataSetEnded {
        presentation_context_id: u8,
        data_set_context_id: u8,
    },
    #[error(
        "data fragment on presentation context {presentation_context_id}, but its command came on context {command_context_id}"
    )]
    DataContextMismatch {
        presentation_context_id: u8,
        command_context_id: u8,
    },
    #[error(
        "command fragment on presentation context {presentation_context_id}, but the command began on context {command_context_id}"
    )]
    CommandContextChanged {
        presentation_context_id: u8,
        command_context_id: u8,
    },
    #[error("command on presentation context {presentation_context_id} exceeds {max} bytes")]
    CommandTooLong {
        presentation_context_id: u8,
        max: usize,
    },
    #[error("undecodable command on presentation context {presentation_context_id}: {source}")]
    MalformedCommand {
        presentation_context_id: u8,
        #[source]
        source: CommandDecodeError,
    },
    #[error("invalid command on presentation context {presentation_context_id}: {source}")]
    InvalidMessage {
        presentation_context_id: u8,
        /// The decoded command set, to answer from (Message ID, Affected SOP Class UID…).
        command: CommandSet,
        #[source]
        source: CommandError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for the first fragment of a command.
    Idle,
    /// Some command fragments received, not the last.
    ReceivingCommand {
        presentation_context_id: u8,
        buffer: BytesMut,
    },
    /// A command announced a data set whose last fragment has not come yet.
    ReceivingDataSet { presentation_context_id: u8 },
    /// An invalid command announced a data set; its fragments are dropped.
    DiscardingDataSet { presentation_context_id: u8 },
}

/// Reassembles DIMSE messages from PDVs (PS3.7 §6.3.1); sans-IO, fed by the association driver.
#[derive(Debug, Clone)]
pub struct Assembler {
    limits: CommandLimits,
    state: State,
}

impl Assembler {
    pub fn new(limits: CommandLimits) -> Self {
        Self {
            limits,
            state: State::Idle,
        }
    }

    /// Whether the assembler is between messages: no command or data set under way.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Takes the next PDV received. Returns what it completed, if anything.
    pub fn push(&mut self, pdv: Pdv) -> Result<Option<Assembled>, AssembleError> {
        // Take the state out so that every error path leaves the assembler idle.
        let state = std::mem::replace(&mut self.state, State::Idle);
        let context = pdv.presentation_context_id;
        match state {
            State::Idle if pdv.is_command => self.command_fragment(BytesMut::new(), pdv),
            State::Idle => Err(AssembleError::DataWithoutCommand {
                presentation_context_id: context,
            }),
            State::ReceivingCommand {
                presentation_context_id,
                buffer,
            } => {
                if !pdv.is_command {
                    Err(AssembleError::DataBeforeCommandEnded {
                        presentation_context_id: context,
                        command_context_id: presentation_context_id,
                    })
                } else if context != presentation_context_id {
                    Err(AssembleError::CommandContextChanged {
                        presentation_context_id: context,
                        command_context_id: presentation_context_id,
                    })
                } else {
                    self.command_fragment(buffer, pdv)
                }
            }
            State::ReceivingDataSet {
                presentation_context_id,
            }
            | State::DiscardingDataSet {
                presentation_context_id,
            } if pdv.is_command => Err(AssembleError::CommandBeforeDataSetEnded {
                presentation_context_id: context,
                data_set_context_id: presentation_context_id,
            }),
            State::ReceivingDataSet {
                presentation_context_id,
            }
            | State::DiscardingDataSet {
                presentation_context_id,
            } if context != presentation_context_id => Err(AssembleError::DataContextMismatch {
                presentation_context_id: context,
                command_context_id: presentation_context_id,
            }),
            State::ReceivingDataSet {
                presentation_context_id,
            } => {
                if !pdv.is_last {
                    self.state = State::ReceivingDataSet {
                        presentation_context_id,
                    };
                }
                Ok(Some(Assembled::DataFragment {
                    presentation_context_id,
                    data: pdv.data,
                    is_last: pdv.is_last,
                }))
            }
            State::DiscardingDataSet {
                presentation_context_id,
            } => {
                if !pdv.is_last {
                    self.state = State::DiscardingDataSet {
                        presentation_context_id,
                    };
                }
                Ok(None)
            }
        }
    }

    /// Adds a command fragment to what was received of the command so far (`buffer`), and
    /// decodes the command after its last fragment.
    fn command_fragment(
        &mut self,
        mut buffer: BytesMut,
        pdv: Pdv,
    ) -> Result<Option<Assembled>, AssembleError> {
        let presentation_context_id = pdv.presentation_context_id;
        let max = self.limits.max_command_len;
        if buffer.len().saturating_add(pdv.data.len()) > max {
            return Err(AssembleError::CommandTooLong {
                presentation_context_id,
                max,
            });
        }
        if !pdv.is_last {
            buffer.extend_from_slice(&pdv.data);
            self.state = State::ReceivingCommand {
                presentation_context_id,
                buffer,
            };
            return Ok(None);
        }
        // A command in a single fragment, the usual case, is decoded without copying.
        let bytes = if buffer.is_empty() {
            pdv.data
        } else {
            buffer.extend_from_slice(&pdv.data);
            buffer.freeze()
        };
        let command = CommandSet::decode(&bytes, &self.limits).map_err(|source| {
            AssembleError::MalformedCommand {
                presentation_context_id,
                source,
            }
        })?;
        match Message::from_command_set(&command) {
            Ok(message) => {
                if message.has_data_set() {
                    self.state = State::ReceivingDataSet {
                        presentation_context_id,
                    };
                }
                Ok(Some(Assembled::Command {
                    presentation_context_id,
                    message,
                    command,
                }))
            }
            Err(source) => {
                if command.has_data_set() {
                    self.state = State::DiscardingDataSet {
                        presentation_context_id,
                    };
                }
                Err(AssembleError::InvalidMessage {
                    presentation_context_id,
                    command,
                    source,
                })
            }
        }
    }
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new(CommandLimits::default())
    }
}
