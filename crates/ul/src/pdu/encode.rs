//! Encoding of PDUs, items and sub-items (PS3.8 §9.3, PS3.7 Annex D.3.3).
//!
//! Everything is written straight into the output buffer: a length field is written as a
//! placeholder, the content after it, and the length patched in once known (and checked against
//! the field's width). Values are validated as they are written; on error the caller truncates
//! the buffer back to where the PDU started.

use bytes::{BufMut, BytesMut};

use super::codec::EncodeError;
use super::{
    Abort, AbortReason, AssociateAc, AssociateRj, AssociateRq, MAX_AE_TITLE_LEN, MAX_UID_LEN,
    PData, Pdu, PresentationContextAc, PresentationContextResult, PresentationContextRq,
    SopClassCommonExtendedNegotiation, UserIdentityRq, UserInformation, item_type,
};

/// Longest implementation version name (PS3.7 §D.3.3.2.3).
const MAX_IMPLEMENTATION_VERSION_NAME_LEN: usize = 16;

/// Width of a length field.
#[derive(Clone, Copy)]
enum LengthField {
    /// Items and sub-items, and the length-prefixed fields inside them.
    U16,
    /// PDUs and PDV items.
    U32,
}

impl LengthField {
    fn width(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }

    fn max(self) -> usize {
        match self {
            Self::U16 => usize::from(u16::MAX),
            Self::U32 => usize::try_from(u32::MAX).unwrap_or(usize::MAX),
        }
    }
}

/// Writes a length field of `width`, then what `write_content` writes, then patches the length
/// in, failing if it does not fit.
fn length_prefixed(
    out: &mut BytesMut,
    width: LengthField,
    field: &'static str,
    write_content: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let length_at = out.len();
    out.put_bytes(0, width.width());
    let content_start = out.len();
    write_content(out)?;
    let length = out.len() - content_start;
    if length > width.max() {
        return Err(EncodeError::FieldTooLong {
            field,
            len: length,
            max: width.max(),
        });
    }
    let length_bytes = (length as u64).to_be_bytes();
    out[length_at..content_start]
        .copy_from_slice(&length_bytes[length_bytes.len() - width.width()..]);
    Ok(())
}

/// An item or sub-item: type, reserved byte, 2-byte length, content.
fn item(
    out: &mut BytesMut,
    item_type: u8,
    field: &'static str,
    write_content: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    out.put_u8(item_type);
    out.put_u8(0);
    length_prefixed(out, LengthField::U16, field, write_content)
}

/// A byte field preceded by its 2-byte length.
fn u16_prefixed_bytes(
    out: &mut BytesMut,
    field: &'static str,
    bytes: &[u8],
) -> Result<(), EncodeError> {
    length_prefixed(out, LengthField::U16, field, |out| {
        out.put_slice(bytes);
        Ok(())
    })
}

/// Fails unless `uid` fits a UID field: 1 to 64 bytes (PS3.5 §9.1). Only the length, which the
/// encoding needs; the syntax of a UID is checked once, by negotiation, with [`crate::uid`].
fn check_uid(field: &'static str, uid: &str) -> Result<(), EncodeError> {
    if uid.is_empty() {
        return Err(EncodeError::InvalidValue {
            field,
            reason: "empty".into(),
        });
    }
    if uid.len() > MAX_UID_LEN {
        return Err(EncodeError::FieldTooLong {
            field,
            len: uid.len(),
            max: MAX_UID_LEN,
        });
    }
    Ok(())
}

/// A UID item or sub-item, written as is (no padding).
fn uid_item(
    out: &mut BytesMut,
    item_type: u8,
    field: &'static str,
    uid: &str,
) -> Result<(), EncodeError> {
    check_uid(field, uid)?;
    item(out, item_type, field, |out| {
        out.put_slice(uid.as_bytes());
        Ok(())
    })
}

/// A UID preceded by its 2-byte length, as inside role selection and extended negotiation.
fn u16_prefixed_uid(out: &mut BytesMut, field: &'static str, uid: &str) -> Result<(), EncodeError> {
    check_uid(field, uid)?;
    u16_prefixed_bytes(out, field, uid.as_bytes())
}

/// An AE title field: 1–16 characters of the default repertoire, not all spaces, no backslash or
/// control character (PS3.5 §6.2, AE), padded with spaces to 16 bytes.
fn ae_title(out: &mut BytesMut, field: &'static str, title: &str) -> Result<(), EncodeError> {
    if title.len() > MAX_AE_TITLE_LEN {
        return Err(EncodeError::FieldTooLong {
            field,
            len: title.len(),
            max: MAX_AE_TITLE_LEN,
        });
    }
    if title.trim_matches(' ').is_empty() {
        return Err(EncodeError::InvalidValue {
            field,
            reason: "empty or only spaces".into(),
        });
    }
    if let Some(bad) = title
        .chars()
        .find(|&c| !c.is_ascii() || c.is_ascii_control() || c == '\\')
    {
        return Err(EncodeError::InvalidValue {
            field,
            reason: format!("{bad:?} is not allowed in an AE title"),
        });
    }
    out.put_slice(title.as_bytes());
    out.put_bytes(b' ', MAX_AE_TITLE_LEN - title.len());
    Ok(())
}

/// Appends `pdu`; on error `out` may hold part of it (the caller truncates).
pub(crate) fn encode_pdu(pdu: &Pdu, out: &mut BytesMut) -> Result<(), EncodeError> {
    if let Pdu::PData(pdata) = pdu {
        out.reserve(pdata_length(pdata));
    }
    out.put_u8(pdu.pdu_type() as u8);
    out.put_u8(0);
    length_prefixed(out, LengthField::U32, "PDU length", |out| match pdu {
        Pdu::AssociateRq(rq) => encode_associate_rq(out, rq),
        Pdu::AssociateAc(ac) => encode_associate_ac(out, ac),
        Pdu::AssociateRj(rj) => encode_associate_rj(out, rj),
        Pdu::PData(pdata) => encode_pdata(out, pdata),
        Pdu::ReleaseRq | Pdu::ReleaseRp => {
            out.put_u32(0);
            Ok(())
        }
        Pdu::Abort(abort) => encode_abort(out, abort),
    })
}

/// The fixed fields of an A-ASSOCIATE-RQ/AC (PS3.8 Tables 9-11, 9-17) and its application
/// context item.
fn associate_header(
    out: &mut BytesMut,
    protocol_version: u16,
    called_ae_title: &str,
    calling_ae_title: &str,
    application_context_name: &str,
) -> Result<(), EncodeError> {
    out.put_u16(protocol_version);
    out.put_u16(0);
    ae_title(out, "called AE title", called_ae_title)?;
    ae_title(out, "calling AE title", calling_ae_title)?;
    out.put_bytes(0, 32);
    uid_item(
        out,
        item_type::APPLICATION_CONTEXT,
        "application context name",
        application_context_name,
    )
}

fn encode_associate_rq(out: &mut BytesMut, rq: &AssociateRq) -> Result<(), EncodeError> {
    associate_header(
        out,
        rq.protocol_version,
        &rq.called_ae_title,
        &rq.calling_ae_title,
        &rq.application_context_name,
    )?;
    for context in &rq.presentation_contexts {
        encode_presentation_context_rq(out, context)?;
    }
    encode_user_information(out, &rq.user_information)
}

fn encode_associate_ac(out: &mut BytesMut, ac: &AssociateAc) -> Result<(), EncodeError> {
    associate_header(
        out,
        ac.protocol_version,
        &ac.called_ae_title,
        &ac.calling_ae_title,
        &ac.application_context_name,
    )?;
    for context in &ac.presentation_contexts {
        encode_presentation_context_ac(out, context)?;
    }
    encode_user_information(out, &ac.user_information)
}

/// Presentation context item of an RQ (PS3.8 Table 9-13) with its sub-items.
pub(crate) fn encode_presentation_context_rq(
    out: &mut BytesMut,
    context: &PresentationContextRq,
) -> Result<(), EncodeError> {
    item(
        out,
        item_type::PRESENTATION_CONTEXT_RQ,
        "presentation context item",
        |out| {
            out.put_slice(&[context.id, 0, 0, 0]);
            uid_item(
                out,
                item_type::ABSTRACT_SYNTAX,
                "abstract syntax",
                &context.abstract_syntax,
            )?;
            for transfer_syntax in &context.transfer_syntaxes {
                uid_item(
                    out,
                    item_type::TRANSFER_SYNTAX,
                    "transfer syntax",
                    transfer_syntax,
                )?;
            }
            Ok(())
        },
    )
}

/// Presentation context item of an AC (PS3.8 Table 9-18). The transfer syntax may be empty when
/// the context is not accepted; an empty transfer syntax sub-item is then sent.
pub(crate) fn encode_presentation_context_ac(
    out: &mut BytesMut,
    context: &PresentationContextAc,
) -> Result<(), EncodeError> {
    item(
        out,
        item_type::PRESENTATION_CONTEXT_AC,
        "presentation context item",
        |out| {
            out.put_slice(&[context.id, 0, context.result.code(), 0]);
            if context.result == PresentationContextResult::Acceptance
                || !context.transfer_syntax.is_empty()
            {
                uid_item(
                    out,
                    item_type::TRANSFER_SYNTAX,
                    "transfer syntax",
                    &context.transfer_syntax,
                )
            } else {
                item(out, item_type::TRANSFER_SYNTAX, "transfer syntax", |_| {
                    Ok(())
                })
            }
        },
    )
}

/// User information item (PS3.8 Table 9-16) with its sub-items in the order documented on
/// [`UserInformation`].
pub(crate) fn encode_user_information(
    out: &mut BytesMut,
    info: &UserInformation,
) -> Result<(), EncodeError> {
    item(
        out,
        item_type::USER_INFORMATION,
        "user information item",
        |out| {
            if let Some(max_length) = info.max_length {
                item(
                    out,
                    item_type::MAX_LENGTH,
                    "maximum length sub-item",
                    |out| {
                        out.put_u32(max_length);
                        Ok(())
                    },
                )?;
            }
            if let Some(uid) = &info.implementation_class_uid {
                uid_item(
                    out,
                    item_type::IMPLEMENTATION_CLASS_UID,
                    "implementation class UID",
                    uid,
                )?;
            }
            if let Some(window) = info.async_ops_window {
                item(
                    out,
                    item_type::ASYNC_OPS_WINDOW,
                    "asynchronous operations window sub-item",
                    |out| {
                        out.put_u16(window.max_operations_invoked);
                        out.put_u16(window.max_operations_performed);
                        Ok(())
                    },
                )?;
            }
            for role in &info.role_selections {
                item(
                    out,
                    item_type::ROLE_SELECTION,
                    "role selection sub-item",
                    |out| {
                        u16_prefixed_uid(out, "role selection SOP class UID", &role.sop_class_uid)?;
                        out.put_u8(u8::from(role.scu_role));
                        out.put_u8(u8::from(role.scp_role));
                        Ok(())
                    },
                )?;
            }
            if let Some(name) = &info.implementation_version_name {
                encode_implementation_version_name(out, name)?;
            }
            for extended in &info.sop_class_extended {
                item(
                    out,
                    item_type::SOP_CLASS_EXTENDED,
                    "SOP class extended negotiation sub-item",
                    |out| {
                        u16_prefixed_uid(
                            out,
                            "extended negotiation SOP class UID",
                            &extended.sop_class_uid,
                        )?;
                        out.put_slice(&extended.service_class_application_information);
                        Ok(())
                    },
                )?;
            }
            for common in &info.sop_class_common_extended {
                encode_sop_class_common_extended(out, common)?;
            }
            if let Some(identity) = &info.user_identity_rq {
                encode_user_identity_rq(out, identity)?;
            }
            if let Some(identity) = &info.user_identity_ac {
                item(
                    out,
                    item_type::USER_IDENTITY_AC,
                    "user identity sub-item",
                    |out| {
                        u16_prefixed_bytes(
                            out,
                            "user identity server response",
                            &identity.server_response,
                        )
                    },
                )?;
            }
            for unknown in &info.unknown {
                if item_type::is_known_user_information_sub_item(unknown.item_type) {
                    return Err(EncodeError::InvalidValue {
                        field: "unknown user information sub-item",
                        reason: format!(
                            "type 0x{:02X} is a known sub-item type",
                            unknown.item_type
                        ),
                    });
                }
                item(
                    out,
                    unknown.item_type,
                    "unknown user information sub-item",
                    |out| {
                        out.put_slice(&unknown.data);
                        Ok(())
                    },
                )?;
            }
            Ok(())
        },
    )
}

fn encode_implementation_version_name(out: &mut BytesMut, name: &str) -> Result<(), EncodeError> {
    const FIELD: &str = "implementation version name";
    if name.is_empty() {
        return Err(EncodeError::InvalidValue {
            field: FIELD,
            reason: "empty".into(),
        });
    }
    if name.len() > MAX_IMPLEMENTATION_VERSION_NAME_LEN {
        return Err(EncodeError::FieldTooLong {
            field: FIELD,
            len: name.len(),
            max: MAX_IMPLEMENTATION_VERSION_NAME_LEN,
        });
    }
    item(out, item_type::IMPLEMENTATION_VERSION_NAME, FIELD, |out| {
        out.put_slice(name.as_bytes());
        Ok(())
    })
}

fn encode_sop_class_common_extended(
    out: &mut BytesMut,
    common: &SopClassCommonExtendedNegotiation,
) -> Result<(), EncodeError> {
    // The reserved byte of this sub-item is its Sub-Item-version, 0 (PS3.7 Table D.3-12).
    item(
        out,
        item_type::SOP_CLASS_COMMON_EXTENDED,
        "SOP class common extended negotiation sub-item",
        |out| {
            u16_prefixed_uid(
                out,
                "common extended negotiation SOP class UID",
                &common.sop_class_uid,
            )?;
            u16_prefixed_uid(
                out,
                "common extended negotiation service class UID",
                &common.service_class_uid,
            )?;
            length_prefixed(
                out,
                LengthField::U16,
                "related general SOP class identification",
                |out| {
                    for uid in &common.related_general_sop_class_uids {
                        u16_prefixed_uid(out, "related general SOP class UID", uid)?;
                    }
                    Ok(())
                },
            )
        },
    )
}

fn encode_user_identity_rq(
    out: &mut BytesMut,
    identity: &UserIdentityRq,
) -> Result<(), EncodeError> {
    item(
        out,
        item_type::USER_IDENTITY_RQ,
        "user identity sub-item",
        |out| {
            out.put_u8(identity.identity_type.code());
            out.put_u8(u8::from(identity.positive_response_requested));
            u16_prefixed_bytes(out, "user identity primary field", &identity.primary_field)?;
            u16_prefixed_bytes(
                out,
                "user identity secondary field",
                &identity.secondary_field,
            )
        },
    )
}

fn encode_associate_rj(out: &mut BytesMut, rj: &AssociateRj) -> Result<(), EncodeError> {
    if rj.source.reason_is_misfiled() {
        return Err(EncodeError::InvalidValue {
            field: "A-ASSOCIATE-RJ reason",
            reason: format!(
                "Reserved({}) is a defined reason for this source",
                rj.source.reason_code()
            ),
        });
    }
    out.put_slice(&[
        0,
        rj.result.code(),
        rj.source.code(),
        rj.source.reason_code(),
    ]);
    Ok(())
}

fn encode_abort(out: &mut BytesMut, abort: &Abort) -> Result<(), EncodeError> {
    if AbortReason::from_code(abort.reason.code()) != abort.reason {
        return Err(EncodeError::InvalidValue {
            field: "A-ABORT reason",
            reason: format!("Reserved({}) is a defined reason", abort.reason.code()),
        });
    }
    out.put_slice(&[0, 0, abort.source.code(), abort.reason.code()]);
    Ok(())
}

/// Bytes of a P-DATA-TF PDU on the wire, header included, used to reserve room once.
fn pdata_length(pdata: &PData) -> usize {
    super::PDU_HEADER_LEN
        + pdata
            .pdvs
            .iter()
            .map(|pdv| super::PDV_HEADER_LEN + pdv.data.len())
            .sum::<usize>()
}

fn encode_pdata(out: &mut BytesMut, pdata: &PData) -> Result<(), EncodeError> {
    if pdata.pdvs.is_empty() {
        return Err(EncodeError::InvalidValue {
            field: "P-DATA-TF",
            reason: "no PDV item".into(),
        });
    }
    for pdv in &pdata.pdvs {
        length_prefixed(out, LengthField::U32, "PDV item", |out| {
            let control = u8::from(pdv.is_command) | (u8::from(pdv.is_last) << 1);
            out.put_slice(&[pdv.presentation_context_id, control]);
            out.put_slice(&pdv.data);
            Ok(())
        })?;
    }
    Ok(())
}
