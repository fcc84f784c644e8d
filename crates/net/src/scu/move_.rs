//! Query/Retrieve C-MOVE SCU (PS3.4 Annex C.4.2; PS3.7 §9.1.4): the SCP stores the matching
//! instances to a move destination, named by its AE title, over an association of its own; the
//! C-MOVE responses report the progress.
//!
//! [`move_to`] sends the C-MOVE-RQ and reads its responses. When the destination is the caller
//! itself (DCMTK's `movescu --port`), [`MoveReceiver`] is a temporary Storage SCP on an incoming
//! port and [`move_to_self`] runs the move with it as destination, then shuts it down once its
//! associations have finished.
//!
//! The SCP of a C-MOVE sends each instance with a C-STORE-RQ that carries the Move Originator
//! Application Entity Title and Message ID (PS3.7 §9.1.1.1): our own C-MOVE SCP does so through
//! [`crate::scu::store::StoreRequest::move_originator`] and the `move_originator` argument of
//! [`crate::scu::store::store_file`] / [`crate::scu::store::store_files`]; a receiving
//! [`crate::storage::Storage`] finds them in [`crate::storage::DimseOrigin`].

use std::net::SocketAddr;
use std::pin::pin;

use tokio::net::ToSocketAddrs;
use tracing::info;

use dimsum_dataset::query_model::QueryService;
use dimsum_dimse::message::{CMoveRq, Message};

use super::find::{QueryError, QueryRequest, prepare};
use super::get::{RetrieveKind, RetrieveOutcome, RetrieveProgress, RetrieveResponses};
use crate::scp::{Dispatcher, StoreScp};
use crate::storage::Storage;
use crate::{Association, Error, Server, ServerConfig, ServerStatistics};

/// Sends a C-MOVE for `query` with `destination` as Move Destination (0000,0600) and reads its
/// responses until the final one; `progress` is called with every C-MOVE-RSP, the final one
/// included.
pub async fn move_to(
    association: &Association,
    destination: &str,
    query: &QueryRequest,
    progress: impl FnMut(&RetrieveProgress),
) -> Result<RetrieveOutcome, QueryError> {
    let sop_class = query.sop_class(QueryService::Move)?;
    let (presentation_context_id, transfer_syntax, identifier) =
        prepare(association, sop_class, &query.identifier)?;
    let message_id = association.next_message_id();
    let request = Message::CMoveRq(CMoveRq {
        message_id,
        affected_sop_class_uid: sop_class.to_owned(),
        priority: query.priority,
        move_destination: destination.to_owned(),
        data_set_present: true,
    });
    info!("Sending Move Request (MsgID {message_id}, {sop_class}) to {destination}");
    let mut responses = association
        .request(presentation_context_id, request, Some(identifier))
        .await?;
    let mut reader = RetrieveResponses::new(
        RetrieveKind::Move,
        message_id,
        transfer_syntax,
        association,
        progress,
    );
    loop {
        if let Some(outcome) = reader.handle(responses.next().await).await? {
            return Ok(outcome);
        }
    }
}

/// A temporary Storage SCP (PS3.4 Annex B) on an incoming port, for a C-MOVE whose destination
/// is the caller: bound first (so that its port is known), then run by [`move_to_self`] for the
/// duration of the move. Its AE title ([`ServerConfig::ae_title`]) is the move destination.
pub struct MoveReceiver {
    server: Server,
}

impl MoveReceiver {
    /// Binds a server at `address` (port 0 for any free port) that stores every instance sent
    /// to it with `store` (its storage SOP classes and transfer syntaxes are those accepted).
    pub async fn bind<S: Storage>(
        address: impl ToSocketAddrs,
        config: ServerConfig,
        store: StoreScp<S>,
    ) -> Result<MoveReceiver, Error> {
        let server = Server::bind(address, config, Dispatcher::new().with(store)).await?;
        Ok(MoveReceiver { server })
    }

    /// The address the receiver listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The AE title it answers as: the move destination.
    pub fn ae_title(&self) -> &str {
        &self.server.policy().ae_title
    }
}

impl std::fmt::Debug for MoveReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoveReceiver")
            .field("ae_title", &self.ae_title())
            .field("address", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Runs `receiver` while a C-MOVE for `query` with the receiver's AE title as destination goes
/// on (see [`move_to`]); after the final response, the receiver stops accepting, lets the
/// associations it serves finish (up to [`ServerConfig::shutdown_grace`]) and returns its
/// statistics with the move's outcome.
pub async fn move_to_self(
    association: &Association,
    receiver: MoveReceiver,
    query: &QueryRequest,
    progress: impl FnMut(&RetrieveProgress),
) -> Result<(RetrieveOutcome, ServerStatistics), QueryError> {
    let destination = receiver.ae_title().to_owned();
    let handle = receiver.server.handle();
    let serving = receiver.server.run();
    let moving = pin!(async {
        let outcome = move_to(association, &destination, query, progress).await;
        handle.shutdown();
        outcome
    });
    let (outcome, statistics) = tokio::join!(moving, serving);
    Ok((outcome?, statistics))
}
