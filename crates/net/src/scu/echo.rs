use tracing::info;

use dimsum_dimse::message::{CEchoRq, Message};
use dimsum_dimse::status::Status;
use dimsum_ul::uids::VERIFICATION_SOP_CLASS;

use crate::{Association, Error};

/// Sends one C-ECHO-RQ (PS3.7 §9.1.5, Verification Service Class PS3.4 Annex A) and returns the
/// status of the response.
pub async fn echo(association: &Association) -> Result<Status, Error> {
    let presentation_context_id = association.context_for(VERIFICATION_SOP_CLASS)?;
    let message_id = association.next_message_id();
    let request = Message::CEchoRq(CEchoRq {
        message_id,
        affected_sop_class_uid: VERIFICATION_SOP_CLASS.to_string(),
        data_set_present: false,
    });
    info!("Sending Echo Request (MsgID {message_id})");
    let response = association
        .request(presentation_context_id, request, None)
        .await?
        .last()
        .await?;
    match response.message {
        Message::CEchoRsp(rsp) => {
            info!(
                "Received Echo Response (MsgID {message_id}): {}",
                rsp.status
            );
            Ok(rsp.status)
        }
        other => Err(Error::UnexpectedMessage(format!(
            "expected the C-ECHO-RSP to message {message_id}, got {}",
            other.command_field()
        ))),
    }
}
