//! Decoding of PDU bodies, items and sub-items (PS3.8 §9.3, PS3.7 Annex D.3.3).
//!
//! Every read goes through [`Reader`], which checks each length against the bytes of the
//! enclosing item before taking them, so nothing here indexes out of range or allocates by a
//! claimed length. The rules for what is tolerated follow PS3.8 §9.3.1: reserved fields are not
//! tested, items of an unrecognized type at the PDU level are skipped, and text fields are read
//! leniently (the negotiation, not the codec, decides whether an AE title or UID is acceptable).

use bytes::Bytes;

use super::codec::DecodeError;
use super::{
    Abort, AbortReason, AbortSource, AssociateAc, AssociateRj, AssociateRq, AsyncOpsWindow, PData,
    Pdu, PduType, Pdv, PresentationContextAc, PresentationContextResult, PresentationContextRq,
    RejectResult, RejectSource, RoleSelection, SopClassCommonExtendedNegotiation,
    SopClassExtendedNegotiation, UnknownSubItem, UserIdentityAc, UserIdentityRq, UserIdentityType,
    UserInformation,
};
use super::{MAX_AE_TITLE_LEN as AE_TITLE_FIELD_LEN, item_type};

/// A cursor over the bytes of one PDU or item; every length is checked before it is used.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Names the PDU or item being read, for error messages.
    context: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], context: &'static str) -> Self {
        Self {
            bytes,
            position: 0,
            context,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let taken = self
            .position
            .checked_add(count)
            .and_then(|end| self.bytes.get(self.position..end))
            .ok_or(DecodeError::Truncated {
                context: self.context,
                needed: count,
                available: self.remaining(),
            })?;
        self.position += count;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// A field preceded by its 2-byte length.
    fn u16_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.u16()?;
        self.take(usize::from(length))
    }

    /// The next item: type (1), reserved (1), length (2), then that many bytes, which must lie
    /// within this reader. `None` at the end.
    pub(crate) fn next_item(&mut self) -> Result<Option<(u8, &'a [u8])>, DecodeError> {
        if self.is_empty() {
            return Ok(None);
        }
        let item_type = self.u8()?;
        let _reserved = self.u8()?;
        Ok(Some((item_type, self.u16_prefixed()?)))
    }

    /// Fails unless every byte was read: a fixed-layout item must be exactly its declared length.
    fn finish(self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::InvalidParameter(format!(
                "{}: {} unexpected bytes after the last field",
                self.context,
                self.remaining()
            )))
        }
    }
}

/// Decodes the body (everything after the 6-byte header) of a PDU of a recognized type.
pub(crate) fn decode_body(pdu_type: PduType, body: Bytes) -> Result<Pdu, DecodeError> {
    Ok(match pdu_type {
        PduType::AssociateRq => Pdu::AssociateRq(decode_associate_rq(&body)?),
        PduType::AssociateAc => Pdu::AssociateAc(decode_associate_ac(&body)?),
        PduType::AssociateRj => Pdu::AssociateRj(decode_associate_rj(&body)?),
        PduType::PData => Pdu::PData(decode_pdata(&body)?),
        PduType::ReleaseRq => {
            fixed_four_bytes(&body, "A-RELEASE-RQ")?;
            Pdu::ReleaseRq
        }
        PduType::ReleaseRp => {
            fixed_four_bytes(&body, "A-RELEASE-RP")?;
            Pdu::ReleaseRp
        }
        PduType::Abort => Pdu::Abort(decode_abort(&body)?),
    })
}

/// The body of A-RELEASE-RQ/RP, A-ASSOCIATE-RJ and A-ABORT: exactly four bytes.
fn fixed_four_bytes(body: &[u8], context: &'static str) -> Result<[u8; 4], DecodeError> {
    let mut reader = Reader::new(body, context);
    let fields = reader.take_array()?;
    reader.finish()?;
    Ok(fields)
}

/// The parts shared by A-ASSOCIATE-RQ and -AC: the fixed fields and the application context
/// name and user information items; presentation context items go to `on_presentation_context`.
struct AssociateCommon {
    protocol_version: u16,
    called_ae_title: String,
    calling_ae_title: String,
    application_context_name: String,
    user_information: UserInformation,
}

fn decode_associate_common<'a>(
    body: &'a [u8],
    context: &'static str,
    presentation_context_type: u8,
    mut on_presentation_context: impl FnMut(&'a [u8]) -> Result<(), DecodeError>,
) -> Result<AssociateCommon, DecodeError> {
    let mut reader = Reader::new(body, context);
    let protocol_version = reader.u16()?;
    let _reserved: [u8; 2] = reader.take_array()?;
    let called_ae_title = decode_ae_title(reader.take(AE_TITLE_FIELD_LEN)?);
    let calling_ae_title = decode_ae_title(reader.take(AE_TITLE_FIELD_LEN)?);
    let _reserved: [u8; 32] = reader.take_array()?;
    let mut application_context_name = None;
    let mut user_information = None;
    while let Some((item_type, item)) = reader.next_item()? {
        match item_type {
            item_type::APPLICATION_CONTEXT => {
                set_once(&mut application_context_name, decode_uid(item), || {
                    format!("{context}: more than one application context item")
                })?
            }
            item_type::USER_INFORMATION => set_once(
                &mut user_information,
                decode_user_information(item)?,
                || format!("{context}: more than one user information item"),
            )?,
            t if t == presentation_context_type => on_presentation_context(item)?,
            // PS3.8 §9.3.1: items of an unrecognized type are ignored.
            _ => {}
        }
    }
    let application_context_name = application_context_name.ok_or_else(|| {
        DecodeError::InvalidParameter(format!("{context}: no application context item"))
    })?;
    Ok(AssociateCommon {
        protocol_version,
        called_ae_title,
        calling_ae_title,
        application_context_name,
        user_information: user_information.unwrap_or_default(),
    })
}

fn decode_associate_rq(body: &[u8]) -> Result<AssociateRq, DecodeError> {
    let mut presentation_contexts = Vec::new();
    let common = decode_associate_common(
        body,
        "A-ASSOCIATE-RQ",
        item_type::PRESENTATION_CONTEXT_RQ,
        |item| {
            presentation_contexts.push(decode_presentation_context_rq(item)?);
            Ok(())
        },
    )?;
    Ok(AssociateRq {
        protocol_version: common.protocol_version,
        called_ae_title: common.called_ae_title,
        calling_ae_title: common.calling_ae_title,
        application_context_name: common.application_context_name,
        presentation_contexts,
        user_information: common.user_information,
    })
}

fn decode_associate_ac(body: &[u8]) -> Result<AssociateAc, DecodeError> {
    let mut presentation_contexts = Vec::new();
    let common = decode_associate_common(
        body,
        "A-ASSOCIATE-AC",
        item_type::PRESENTATION_CONTEXT_AC,
        |item| {
            presentation_contexts.push(decode_presentation_context_ac(item)?);
            Ok(())
        },
    )?;
    Ok(AssociateAc {
        protocol_version: common.protocol_version,
        called_ae_title: common.called_ae_title,
        calling_ae_title: common.calling_ae_title,
        application_context_name: common.application_context_name,
        presentation_contexts,
        user_information: common.user_information,
    })
}

/// Presentation context item of an RQ (PS3.8 §9.3.2.2): the body after the item header.
pub(crate) fn decode_presentation_context_rq(
    item: &[u8],
) -> Result<PresentationContextRq, DecodeError> {
    const CONTEXT: &str = "presentation context item (RQ)";
    let mut reader = Reader::new(item, CONTEXT);
    let [id, _, _, _] = reader.take_array()?;
    let mut abstract_syntax = None;
    let mut transfer_syntaxes = Vec::new();
    while let Some((sub_item_type, sub_item)) = reader.next_item()? {
        match sub_item_type {
            item_type::ABSTRACT_SYNTAX => {
                set_once(&mut abstract_syntax, decode_uid(sub_item), || {
                    format!("presentation context {id}: more than one abstract syntax")
                })?
            }
            item_type::TRANSFER_SYNTAX => transfer_syntaxes.push(decode_uid(sub_item)),
            _ => {}
        }
    }
    let abstract_syntax = abstract_syntax.ok_or_else(|| {
        DecodeError::InvalidParameter(format!(
            "presentation context {id}: no abstract syntax sub-item"
        ))
    })?;
    Ok(PresentationContextRq {
        id,
        abstract_syntax,
        transfer_syntaxes,
    })
}

/// Presentation context item of an AC (PS3.8 §9.3.3.2): the body after the item header. A
/// missing transfer syntax sub-item (sent by some peers with a rejection) reads as empty.
pub(crate) fn decode_presentation_context_ac(
    item: &[u8],
) -> Result<PresentationContextAc, DecodeError> {
    const CONTEXT: &str = "presentation context item (AC)";
    let mut reader = Reader::new(item, CONTEXT);
    let [id, _, result_code, _] = reader.take_array()?;
    let result = PresentationContextResult::from_code(result_code).ok_or_else(|| {
        DecodeError::InvalidParameter(format!(
            "presentation context {id}: result/reason {result_code} is undefined"
        ))
    })?;
    let mut transfer_syntax = None;
    while let Some((sub_item_type, sub_item)) = reader.next_item()? {
        if sub_item_type == item_type::TRANSFER_SYNTAX {
            set_once(&mut transfer_syntax, decode_uid(sub_item), || {
                format!(
                    "presentation context {id}: more than one transfer syntax in an A-ASSOCIATE-AC"
                )
            })?;
        }
    }
    Ok(PresentationContextAc {
        id,
        result,
        transfer_syntax: transfer_syntax.unwrap_or_default(),
    })
}

/// User information item (PS3.8 §9.3.2.3, §9.3.3.3): the body after the item header.
///
/// Sub-items are accepted in any order and in either PDU (the negotiation ignores those that do
/// not belong); a second copy of a single-valued sub-item replaces the first.
pub(crate) fn decode_user_information(item: &[u8]) -> Result<UserInformation, DecodeError> {
    let mut reader = Reader::new(item, "user information item");
    let mut info = UserInformation::default();
    while let Some((sub_item_type, sub_item)) = reader.next_item()? {
        match sub_item_type {
            item_type::MAX_LENGTH => {
                let mut fields = Reader::new(sub_item, "maximum length sub-item");
                info.max_length = Some(fields.u32()?);
                fields.finish()?;
            }
            item_type::IMPLEMENTATION_CLASS_UID => {
                info.implementation_class_uid = Some(decode_uid(sub_item))
            }
            item_type::ASYNC_OPS_WINDOW => {
                let mut fields = Reader::new(sub_item, "asynchronous operations window sub-item");
                info.async_ops_window = Some(AsyncOpsWindow {
                    max_operations_invoked: fields.u16()?,
                    max_operations_performed: fields.u16()?,
                });
                fields.finish()?;
            }
            item_type::ROLE_SELECTION => {
                info.role_selections.push(decode_role_selection(sub_item)?)
            }
            item_type::IMPLEMENTATION_VERSION_NAME => {
                info.implementation_version_name = Some(decode_uid(sub_item));
            }
            item_type::SOP_CLASS_EXTENDED => {
                let mut fields = Reader::new(sub_item, "SOP class extended negotiation sub-item");
                let sop_class_uid = decode_uid(fields.u16_prefixed()?);
                let service_class_application_information =
                    fields.take(fields.remaining())?.to_vec();
                info.sop_class_extended.push(SopClassExtendedNegotiation {
                    sop_class_uid,
                    service_class_application_information,
                });
            }
            item_type::SOP_CLASS_COMMON_EXTENDED => {
                info.sop_class_common_extended
                    .push(decode_sop_class_common_extended(sub_item)?);
            }
            item_type::USER_IDENTITY_RQ => {
                info.user_identity_rq = Some(decode_user_identity_rq(sub_item)?)
            }
            item_type::USER_IDENTITY_AC => {
                let mut fields = Reader::new(sub_item, "user identity sub-item (AC)");
                let server_response = fields.u16_prefixed()?.to_vec();
                fields.finish()?;
                info.user_identity_ac = Some(UserIdentityAc { server_response });
            }
            _ => info.unknown.push(UnknownSubItem {
                item_type: sub_item_type,
                data: sub_item.to_vec(),
            }),
        }
    }
    Ok(info)
}

fn decode_role_selection(sub_item: &[u8]) -> Result<RoleSelection, DecodeError> {
    let mut fields = Reader::new(sub_item, "SCP/SCU role selection sub-item");
    let sop_class_uid = decode_uid(fields.u16_prefixed()?);
    let scu_role = decode_role(fields.u8()?, "SCU")?;
    let scp_role = decode_role(fields.u8()?, "SCP")?;
    fields.finish()?;
    Ok(RoleSelection {
        sop_class_uid,
        scu_role,
        scp_role,
    })
}

fn decode_role(value: u8, role: &str) -> Result<bool, DecodeError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(DecodeError::InvalidParameter(format!(
            "role selection: {role}-role {other} is neither 0 nor 1"
        ))),
    }
}

fn decode_sop_class_common_extended(
    sub_item: &[u8],
) -> Result<SopClassCommonExtendedNegotiation, DecodeError> {
    let mut fields = Reader::new(sub_item, "SOP class common extended negotiation sub-item");
    let sop_class_uid = decode_uid(fields.u16_prefixed()?);
    let service_class_uid = decode_uid(fields.u16_prefixed()?);
    let mut related = Reader::new(
        fields.u16_prefixed()?,
        "related general SOP class identification",
    );
    fields.finish()?;
    let mut related_general_sop_class_uids = Vec::new();
    while !related.is_empty() {
        related_general_sop_class_uids.push(decode_uid(related.u16_prefixed()?));
    }
    Ok(SopClassCommonExtendedNegotiation {
        sop_class_uid,
        service_class_uid,
        related_general_sop_class_uids,
    })
}

fn decode_user_identity_rq(sub_item: &[u8]) -> Result<UserIdentityRq, DecodeError> {
    let mut fields = Reader::new(sub_item, "user identity sub-item (RQ)");
    let type_code = fields.u8()?;
    let identity_type = UserIdentityType::from_code(type_code).ok_or_else(|| {
        DecodeError::InvalidParameter(format!("user identity type {type_code} is undefined"))
    })?;
    let positive_response_requested = fields.u8()? != 0;
    let primary_field = fields.u16_prefixed()?.to_vec();
    let secondary_field = fields.u16_prefixed()?.to_vec();
    fields.finish()?;
    Ok(UserIdentityRq {
        identity_type,
        positive_response_requested,
        primary_field,
        secondary_field,
    })
}

fn decode_associate_rj(body: &[u8]) -> Result<AssociateRj, DecodeError> {
    let [_, result_code, source_code, reason_code] = fixed_four_bytes(body, "A-ASSOCIATE-RJ")?;
    let result = RejectResult::from_code(result_code).ok_or_else(|| {
        DecodeError::InvalidParameter(format!("A-ASSOCIATE-RJ result {result_code} is undefined"))
    })?;
    let source = RejectSource::from_codes(source_code, reason_code).ok_or_else(|| {
        DecodeError::InvalidParameter(format!("A-ASSOCIATE-RJ source {source_code} is undefined"))
    })?;
    Ok(AssociateRj { result, source })
}

fn decode_abort(body: &[u8]) -> Result<Abort, DecodeError> {
    let [_, _, source_code, reason_code] = fixed_four_bytes(body, "A-ABORT")?;
    let source = AbortSource::from_code(source_code).ok_or_else(|| {
        DecodeError::InvalidParameter(format!("A-ABORT source {source_code} is undefined"))
    })?;
    Ok(Abort {
        source,
        reason: AbortReason::from_code(reason_code),
    })
}

/// P-DATA-TF (PS3.8 §9.3.5): one or more PDV items; each `data` is a slice of `body`.
fn decode_pdata(body: &Bytes) -> Result<PData, DecodeError> {
    let mut reader = Reader::new(body, "P-DATA-TF");
    let mut pdvs = Vec::with_capacity(1);
    while !reader.is_empty() {
        let item_length = reader.u32()?;
        let value_length = usize::try_from(item_length)
            .ok()
            .and_then(|length| length.checked_sub(2))
            .ok_or_else(|| {
                DecodeError::InvalidParameter(format!(
                    "PDV item length {item_length} is less than 2"
                ))
            })?;
        let [presentation_context_id, control] = reader.take_array()?;
        let start = reader.position;
        reader.take(value_length)?;
        pdvs.push(Pdv {
            presentation_context_id,
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            data: body.slice(start..reader.position),
        });
    }
    if pdvs.is_empty() {
        return Err(DecodeError::InvalidParameter(
            "P-DATA-TF without any PDV item".into(),
        ));
    }
    Ok(PData { pdvs })
}

/// Fills a slot for an item that may appear only once; a second one is an unexpected parameter.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    describe_duplicate: impl FnOnce() -> String,
) -> Result<(), DecodeError> {
    if slot.replace(value).is_some() {
        return Err(DecodeError::UnexpectedParameter(describe_duplicate()));
    }
    Ok(())
}

/// An AE title field: the padding spaces (and the NULs some peers pad with) are not part of it.
fn decode_ae_title(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_matches([' ', '\0'])
        .to_owned()
}

/// A UID or similar text field of an item: trailing NUL or space padding is removed.
fn decode_uid(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches(['\0', ' '])
        .to_owned()
}
