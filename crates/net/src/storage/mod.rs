//! Storing instances, whatever brought them: a C-STORE (PS3.4 Annex B), or an HTTP request such
//! as STOW-RS (PS3.18 §10.5). Nothing here knows about associations.
//!
//! A [`Storage`] starts an [`InstanceWriter`] per instance; the data set arrives piece by piece
//! as it comes off the network, and [`InstanceWriter::finish`] makes it durable and visible, or
//! says why it could not. A writer dropped before `finish` (the transfer was cut off) leaves
//! nothing behind. [`FileStorage`] writes Part 10 files, doing all its disk work on the
//! blocking pool behind a bounded channel.

mod file;

pub use file::{
    BUFFER_BELOW, FileStorage, FileWriter, Gathered, Layout, StoredCallback, StoredInstance,
    UNIQUE_NAME_TRIES, Written, run_blocking, safe_file_name,
};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;

use dimsum_dimse::message::Priority;
use dimsum_dimse::status::Status;

/// A boxed future, as storage traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The instance being stored (the SOP Common Module identity and its encoding) and where it
/// comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDescription {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The transfer syntax the data set is encoded in.
    pub transfer_syntax_uid: String,
    pub origin: Origin,
}

impl InstanceDescription {
    /// The AE title to record as Source Application Entity Title (PS3.10 §7.1), if any.
    pub fn source_ae_title(&self) -> Option<&str> {
        match &self.origin {
            Origin::Dimse(origin) => Some(&origin.calling_ae_title),
            Origin::Web { .. } => None,
        }
    }
}

/// Who sent an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A C-STORE on an association.
    Dimse(DimseOrigin),
    /// An HTTP request (STOW-RS).
    Web { peer_address: Option<SocketAddr> },
}

/// The association and C-STORE-RQ an instance came with (PS3.7 §9.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimseOrigin {
    pub calling_ae_title: String,
    pub called_ae_title: String,
    pub peer_address: SocketAddr,
    pub message_id: u16,
    pub priority: Priority,
    pub move_originator_ae_title: Option<String>,
    pub move_originator_message_id: Option<u16>,
}

/// Why a store failed: the status to answer (PS3.4 Table B.2-1; STOW-RS reports the same codes
/// as Failure Reason, PS3.18 §10.5.3) and what to tell people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    pub status: Status,
    /// For the response's Error Comment (at most 64 characters are sent).
    pub comment: String,
}

impl StoreFailure {
    pub fn new(status: Status, comment: impl Into<String>) -> Self {
        Self {
            status,
            comment: comment.into(),
        }
    }
}

/// A successful (possibly warning) outcome of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSuccess {
    /// Success, or a warning such as 0xB007 (data set does not match SOP class).
    pub status: Status,
    pub comment: Option<String>,
}

/// Where instances go. Implementations must be cheap to call from async code: disk or database
/// work belongs on the blocking pool or in async I/O.
pub trait Storage: Send + Sync + 'static {
    /// Starts storing an instance, or refuses it with a status.
    fn begin<'a>(
        &'a self,
        instance: &'a InstanceDescription,
    ) -> BoxFuture<'a, Result<Box<dyn InstanceWriter>, StoreFailure>>;
}

/// One instance being stored.
pub trait InstanceWriter: Send {
    /// Takes the next piece of the data set. A failure here is final for the instance; the
    /// caller still reads the rest of the data set from the network.
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, Result<(), StoreFailure>>;

    /// The data set is complete: make it durable and visible.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StoreSuccess, StoreFailure>>;
}
