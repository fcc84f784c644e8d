//! Shared helpers for the archive tests: data elements, SOP class UIDs, a server on a free
//! loopback port and an association to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::query_model::{QueryModel, QueryService};
use dimsum_net::scp::Dispatcher;
use dimsum_net::ul::negotiation::AssociationRequest;
use dimsum_net::{Association, Limits, Server, ServerConfig, ServerStatistics, Timeouts};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::{FileLocation, Index, IndexError, NewInstance, SqliteConfig, SqliteIndex};

pub const EXPLICIT: &str = "1.2.840.10008.1.2.1";
pub const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
pub const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// `tag` with `value`, or empty (a universal key) when `value` is empty.
pub fn element(tag: Tag, vr: VR, value: &str) -> InMemElement {
    if value.is_empty() {
        DataElement::empty(tag, vr)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(value))
    }
}

/// The value of `tag` in `object` as text; panics when it is missing.
pub fn text(object: &InMemDicomObject, tag: Tag) -> String {
    object
        .get(tag)
        .unwrap_or_else(|| panic!("no {tag} in {object:?}"))
        .to_str()
        .expect("text")
        .into_owned()
}

/// The sorted values of `tag` in `found`.
pub fn sorted_values(found: &[InMemDicomObject], tag: Tag) -> Vec<String> {
    let mut values: Vec<String> = found.iter().map(|object| text(object, tag)).collect();
    values.sort();
    values
}

/// A new, empty SQLite index in a temporary folder, and the folder (which goes with it).
pub async fn temporary_index() -> (tempfile::TempDir, SqliteIndex) {
    let folder = tempfile::tempdir().expect("tempdir");
    let index = SqliteIndex::open(SqliteConfig::new(folder.path().join("index.sqlite")))
        .await
        .expect("index");
    (folder, index)
}

/// An instance to index from `attributes` alone (no file needed): its SOP Class and Instance
/// UIDs are theirs, in Explicit VR Little Endian, said to be a file of 1132 bytes at `path`.
pub fn new_instance(attributes: InMemDicomObject, path: PathBuf) -> NewInstance {
    NewInstance {
        sop_class_uid: text(&attributes, tags::SOP_CLASS_UID),
        sop_instance_uid: text(&attributes, tags::SOP_INSTANCE_UID),
        transfer_syntax_uid: EXPLICIT.into(),
        location: FileLocation {
            path,
            data_set_offset: 132,
            data_set_length: 1000,
            file_size: 1132,
            modified_ns: 1,
        },
        attributes,
    }
}

/// A C-FIND plan on `model` at `level` with `keys`.
pub fn find_plan(model: QueryModel, level: &str, keys: Vec<InMemElement>) -> QueryPlan {
    let mut object = InMemDicomObject::from_element_iter(keys);
    object.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
    QueryPlan::new(model, QueryService::Find, object).expect("plan")
}

/// Everything `index` answers to `plan` with at most `limit` matches, the stream read to its
/// end (within 10 s).
pub async fn query_all(
    index: &SqliteIndex,
    plan: QueryPlan,
    limit: Option<usize>,
) -> Vec<Result<InMemDicomObject, IndexError>> {
    let stream = index.query(plan, limit).await.expect("query");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the query ends")
}

/// Explicit VR Little Endian alone, as the transfer syntaxes of a context.
pub fn explicit() -> Vec<String> {
    vec![EXPLICIT.into()]
}

/// A server on a free loopback port, and the task that runs it.
pub struct TestServer {
    pub address: SocketAddr,
    pub handle: dimsum_net::ServerHandle,
    pub task: JoinHandle<ServerStatistics>,
}

impl TestServer {
    /// Serves `dispatcher` as `ae_title`, with the default timers and a short shutdown grace.
    pub async fn start(ae_title: &str, dispatcher: Dispatcher) -> TestServer {
        let config = ServerConfig {
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::new(ae_title)
        };
        let server = Server::bind("127.0.0.1:0", config, dispatcher)
            .await
            .expect("bind");
        TestServer {
            address: server.local_addr().expect("address"),
            handle: server.handle(),
            task: tokio::spawn(server.run()),
        }
    }

    /// Shuts the server down and waits up to `patience` for its task to end.
    pub async fn stop(self, patience: Duration) -> ServerStatistics {
        self.handle.shutdown();
        tokio::time::timeout(patience, self.task)
            .await
            .expect("server stopped in time")
            .expect("server task")
    }

    /// Opens an association with `request`, waiting up to `patience`.
    pub async fn connect(&self, request: &AssociationRequest, patience: Duration) -> Association {
        tokio::time::timeout(
            patience,
            Association::connect(
                &self.address.to_string(),
                request,
                Timeouts::default(),
                Limits::default(),
            ),
        )
        .await
        .expect("association in time")
        .expect("association accepted")
    }
}
