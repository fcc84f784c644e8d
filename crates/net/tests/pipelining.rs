//! Pipelining between dimsum peers: C-STOREs go out through the asynchronous operations window
//! (PS3.7 §D.3.3.3) that the association negotiated, as seen on the wire by a relay between
//! the Store SCU (`scu::store::store_files`) and a `Server` with a `StoreScp` over
//! `FileStorage`. The relay decodes the PDUs flowing each way and the DIMSE commands in them,
//! and tracks which C-STORE-RQs are outstanding (sent, final response not yet seen).
//!
//! The storage waits a few milliseconds before it finishes each instance, so that a server
//! that performs several operations at once visibly has several outstanding however fast the
//! machine is (without it, a fast server answers each C-STORE before the next is sent and the
//! test would prove nothing); the window is what the test checks, not the timing.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use common::{
    PATIENCE, SECONDARY_CAPTURE, TestServer, assert_pipelined, associate, config, data_set,
    element, even, files_under, start_server_with,
};
use dimsum_net::dataset::part10::{self, FileMeta};
use dimsum_net::dimse::status::Status;
use dimsum_net::dimse::{CommandLimits, CommandSet, Message};
use dimsum_net::scp::{Dispatcher, StoreScp};
use dimsum_net::scu::store::{
    self, BatchEnd, InstanceData, StoreFile, StoreFileError, StoreInstance, TransferSyntaxProposal,
};
use dimsum_net::storage::{
    BoxFuture, FileStorage, InstanceDescription, InstanceWriter, Storage, StoreFailure,
    StoreSuccess,
};
use dimsum_net::ul::negotiation::AssociationRequest;
use dimsum_net::ul::pdu::{self, AsyncOpsWindow, DecodeLimits, Pdu};
use dimsum_net::ul::uids::EXPLICIT_VR_LITTLE_ENDIAN;

const INSTANCES: usize = 40;
/// What the SCU proposes: up to 8 of its requests outstanding, 1 of ours.
const PROPOSED: AsyncOpsWindow = AsyncOpsWindow {
    max_operations_invoked: 8,
    max_operations_performed: 1,
};
/// How long the storage holds each instance before it finishes it.
const STORE_DELAY: Duration = Duration::from_millis(10);

// ------------------------------------------------------------------------------------------
// Test data
// ------------------------------------------------------------------------------------------

/// A small Secondary Capture data set (explicit VR LE) for `sop_instance_uid`.
fn small_data_set(sop_instance_uid: &str, index: usize) -> Vec<u8> {
    [
        element(0x0008, 0x0016, b"UI", &even(SECONDARY_CAPTURE, 0)),
        element(0x0008, 0x0018, b"UI", &even(sop_instance_uid, 0)),
        element(0x0010, 0x0010, b"PN", &even(&format!("PIPE^{index}"), b' ')),
        element(0x0020, 0x000D, b"UI", &even("1.2.3.4.200", 0)),
        element(0x0020, 0x000E, b"UI", &even("1.2.3.4.200.1", 0)),
    ]
    .concat()
}

/// Writes `count` Part 10 files into `dir`; returns them with the data sets they hold.
fn write_files(dir: &Path, count: usize) -> Vec<(StoreFile, String, Vec<u8>)> {
    (0..count)
        .map(|index| {
            let uid = format!("1.2.3.4.200.1.{}", index + 1);
            let meta = FileMeta::new(
                SECONDARY_CAPTURE,
                uid.as_str(),
                EXPLICIT_VR_LITTLE_ENDIAN,
                "1.2.3.4.5",
                "PIPETEST",
            );
            let data_set = small_data_set(&uid, index);
            let mut bytes = part10::encode_header(&meta).expect("file meta");
            bytes.extend_from_slice(&data_set);
            let path = dir.join(format!("{index:03}.dcm"));
            std::fs::write(&path, bytes).expect("write test file");
            let file = StoreFile::open(&path).expect("a Part 10 file");
            (file, uid, data_set)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// A storage that takes its time
// ------------------------------------------------------------------------------------------

/// [`FileStorage`], finishing each instance only after [`STORE_DELAY`].
struct SlowStorage(FileStorage);

struct SlowWriter(Box<dyn InstanceWriter>);

impl Storage for SlowStorage {
    fn begin<'a>(
        &'a self,
        instance: &'a InstanceDescription,
    ) -> BoxFuture<'a, Result<Box<dyn InstanceWriter>, StoreFailure>> {
        Box::pin(async move {
            let writer = self.0.begin(instance).await?;
            Ok(Box::new(SlowWriter(writer)) as Box<dyn InstanceWriter>)
        })
    }
}

impl InstanceWriter for SlowWriter {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, Result<(), StoreFailure>> {
        self.0.write(data)
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StoreSuccess, StoreFailure>> {
        let inner = self.0;
        Box::pin(async move {
            tokio::time::sleep(STORE_DELAY).await;
            inner.finish().await
        })
    }
}

async fn start_store_server(root: &Path, max_operations_performed: u16) -> TestServer {
    let storage = SlowStorage(FileStorage::new(root).expect("storage"));
    let store = StoreScp::new(
        storage,
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let mut config = config();
    config.ae_title = "STORESCP".into();
    config.max_operations_performed = max_operations_performed;
    start_server_with(config, Dispatcher::new().with(store)).await
}

// ------------------------------------------------------------------------------------------
// The relay
// ------------------------------------------------------------------------------------------

/// What the relay saw.
#[derive(Debug, Default)]
struct Wire {
    /// Message IDs of the C-STORE-RQs sent whose final C-STORE-RSP has not passed yet.
    outstanding: BTreeSet<u16>,
    /// The most C-STORE-RQs outstanding at once.
    max_outstanding: usize,
    requests: usize,
    /// The statuses of the C-STORE-RSPs, in wire order.
    responses: Vec<Status>,
    /// The asynchronous operations window the A-ASSOCIATE-RQ proposed and the AC granted.
    proposed: Option<Option<AsyncOpsWindow>>,
    granted: Option<Option<AsyncOpsWindow>>,
    /// Anything the relay could not decode.
    errors: Vec<String>,
}

/// A relay from a local port to `server` for one connection; returns its address and what it
/// sees.
async fn start_relay(server: SocketAddr) -> (SocketAddr, Arc<Mutex<Wire>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let address = listener.local_addr().expect("relay address");
    let wire = Arc::new(Mutex::new(Wire::default()));
    let seen = Arc::clone(&wire);
    tokio::spawn(async move {
        let Ok(Ok((client, _))) = tokio::time::timeout(PATIENCE, listener.accept()).await else {
            return;
        };
        let Ok(upstream) = TcpStream::connect(server).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = upstream.into_split();
        let up = tokio::spawn(pump(client_read, server_write, Arc::clone(&seen), true));
        let down = tokio::spawn(pump(server_read, client_write, seen, false));
        let _ = tokio::join!(up, down);
    });
    (address, wire)
}

/// Copies one direction (`to_server`: from the SCU), decoding each complete PDU and the
/// commands in it before the bytes that complete it are passed on: a request counts as
/// outstanding before the server can see it, and stops only before the SCU sees its response.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    wire: Arc<Mutex<Wire>>,
    to_server: bool,
) {
    let limits = DecodeLimits {
        max_pdata_length: 0,
        ..DecodeLimits::default()
    };
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pending = BytesMut::new();
    let mut command = BytesMut::new();
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        loop {
            match pdu::decode_from(&mut pending, &limits) {
                Ok(Some(pdu)) => observe(&pdu, &mut command, &wire, to_server),
                Ok(None) => break,
                Err(error) => {
                    wire.lock().unwrap().errors.push(error.to_string());
                    pending.clear();
                    break;
                }
            }
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn observe(pdu: &Pdu, command: &mut BytesMut, wire: &Mutex<Wire>, to_server: bool) {
    let mut wire = wire.lock().unwrap();
    match pdu {
        Pdu::AssociateRq(rq) => wire.proposed = Some(rq.user_information.async_ops_window),
        Pdu::AssociateAc(ac) => wire.granted = Some(ac.user_information.async_ops_window),
        Pdu::PData(pdata) => {
            for pdv in pdata.pdvs.iter().filter(|pdv| pdv.is_command) {
                command.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    continue;
                }
                let bytes = command.split().freeze();
                let message = CommandSet::decode(&bytes, &CommandLimits::default())
                    .map_err(|e| e.to_string())
                    .and_then(|set| Message::from_command_set(&set).map_err(|e| e.to_string()));
                match message {
                    Ok(Message::CStoreRq(rq)) if to_server => {
                        wire.requests += 1;
                        wire.outstanding.insert(rq.message_id);
                        wire.max_outstanding = wire.max_outstanding.max(wire.outstanding.len());
                    }
                    Ok(Message::CStoreRsp(rsp)) if !to_server && rsp.status.is_final() => {
                        wire.outstanding.remove(&rsp.message_id_being_responded_to);
                        wire.responses.push(rsp.status);
                    }
                    Ok(other) => wire.errors.push(format!(
                        "unexpected {:?} {}",
                        other.command_field(),
                        if to_server {
                            "to the server"
                        } else {
                            "to the SCU"
                        }
                    )),
                    Err(error) => wire.errors.push(error),
                }
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------------------------------------
// The scenario
// ------------------------------------------------------------------------------------------

/// Stores `INSTANCES` files through a relay to a server granting `max_operations_performed`;
/// checks that every one is stored, byte for byte; returns what the relay saw and the window
/// the SCU negotiated.
async fn store_through_relay(max_operations_performed: u16) -> (Wire, AsyncOpsWindow) {
    let sources = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    let files = write_files(sources.path(), INSTANCES);
    let server = start_store_server(root.path(), max_operations_performed).await;
    let (relay, wire) = start_relay(server.address).await;

    let store_files: Vec<StoreFile> = files.iter().map(|(file, _, _)| file.clone()).collect();
    let request = AssociationRequest::new("STORESCU", "STORESCP")
        .with_contexts(store::propose_contexts(
            &store_files,
            &TransferSyntaxProposal::AsFiles,
        ))
        .with_async_ops_window(PROPOSED);
    let association = associate(relay, &request).await;
    let window = association.negotiated().async_window();

    let mut outcomes = Vec::new();
    tokio::time::timeout(
        PATIENCE * 3,
        store::store_files(&association, &store_files, None, |file, outcome| {
            outcomes.push((file.meta.media_storage_sop_instance_uid.clone(), outcome))
        }),
    )
    .await
    .expect("the batch finishes in time");
    tokio::time::timeout(PATIENCE, association.release())
        .await
        .expect("release in time")
        .expect("released");
    server.stop().await;

    assert_eq!(outcomes.len(), INSTANCES);
    for (uid, outcome) in &outcomes {
        match outcome {
            Ok(stored) => assert_eq!(
                stored.response.status,
                Status::SUCCESS,
                "{uid}: {:?}",
                stored.response.error_comment
            ),
            Err(error) => panic!("{uid} not stored: {error}"),
        }
    }
    let stored = files_under(root.path());
    assert_eq!(stored.len(), INSTANCES, "stored files: {stored:?}");
    for (_, uid, data_set) in &files {
        let path = root.path().join(format!("{uid}.dcm"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("{} not stored: {error}", path.display()));
        let (meta, offset) = part10::read_meta(&mut &bytes[..]).expect("stored file meta");
        assert_eq!(meta.media_storage_sop_instance_uid, *uid);
        assert_eq!(&bytes[offset as usize..], data_set.as_slice(), "{uid}");
    }

    let wire = std::mem::take(&mut *wire.lock().unwrap());
    assert!(wire.errors.is_empty(), "relay: {:?}", wire.errors);
    assert_eq!(wire.proposed, Some(Some(PROPOSED)), "{wire:?}");
    assert_eq!(wire.requests, INSTANCES, "{wire:?}");
    assert_eq!(wire.responses, vec![Status::SUCCESS; INSTANCES], "{wire:?}");
    assert!(wire.outstanding.is_empty(), "{wire:?}");
    (wire, window)
}

#[tokio::test]
async fn c_stores_pipeline_up_to_the_window_the_server_grants() {
    let (wire, window) = store_through_relay(16).await;
    let granted = AsyncOpsWindow {
        max_operations_invoked: 8,
        max_operations_performed: 1,
    };
    assert_eq!(wire.granted, Some(Some(granted)), "{wire:?}");
    assert_eq!(window, granted);
    assert_pipelined("C-STOREs", wire.max_outstanding, 8, INSTANCES);
}

#[tokio::test]
async fn a_server_granting_no_window_gets_one_c_store_at_a_time() {
    let (wire, window) = store_through_relay(1).await;
    let granted = AsyncOpsWindow {
        max_operations_invoked: 1,
        max_operations_performed: 1,
    };
    assert_eq!(wire.granted, Some(Some(granted)), "{wire:?}");
    assert_eq!(window, granted);
    assert_eq!(
        wire.max_outstanding, 1,
        "more than one C-STORE outstanding without a window"
    );
}

/// The sending engine itself, given a stream: instances from memory, from a file range, and a
/// large one from a file range streamed in pieces, each reported with its key; a file range
/// that the file does not hold fails alone, before anything of it is sent, and the association
/// goes on.
#[tokio::test]
async fn the_engine_sends_a_stream_of_instances_and_a_short_file_fails_alone() {
    let sources = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    let files = write_files(sources.path(), 2);
    let server = start_store_server(root.path(), 16).await;

    let memory_uid = "1.2.3.4.200.1.10";
    let memory = small_data_set(memory_uid, 10);
    // A 3 MiB data set 128 bytes into a file: sent in pieces as it is read.
    let large_uid = "1.2.3.4.200.1.11";
    let large = data_set(large_uid, 3 << 20);
    let large_path = sources.path().join("large.bin");
    std::fs::write(&large_path, [vec![0u8; 128], large.clone()].concat()).expect("write");
    let instance = |uid: &str, data| StoreInstance {
        sop_class_uid: SECONDARY_CAPTURE.into(),
        sop_instance_uid: uid.into(),
        transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
        data,
    };
    let mut short = files[1].0.instance();
    if let InstanceData::File { length, .. } = &mut short.data {
        *length += 100;
    }
    let instances = vec![
        (
            0,
            instance(memory_uid, InstanceData::Memory(memory.clone().into())),
        ),
        (1, files[0].0.instance()),
        (2, short),
        (
            3,
            instance(
                large_uid,
                InstanceData::File {
                    path: large_path,
                    offset: 128,
                    length: large.len() as u64,
                },
            ),
        ),
    ];

    let request = AssociationRequest::new("STORESCU", "STORESCP")
        .with_contexts(store::propose_contexts_for(
            [(SECONDARY_CAPTURE, EXPLICIT_VR_LITTLE_ENDIAN)],
            &TransferSyntaxProposal::AsFiles,
        ))
        .with_async_ops_window(PROPOSED);
    let association = associate(server.address, &request).await;
    let (sender, mut outcomes) = tokio::sync::mpsc::channel(8);
    let stop = tokio_util::sync::CancellationToken::new();
    let end = tokio::time::timeout(
        PATIENCE,
        store::send_instances(
            &association,
            futures_util::stream::iter(instances),
            None,
            &stop,
            sender,
        ),
    )
    .await
    .expect("the batch finishes in time");
    assert_eq!(end, BatchEnd::Finished);
    let mut reported = std::collections::BTreeMap::new();
    while let Some((key, outcome)) = outcomes.recv().await {
        assert!(
            reported.insert(key, outcome).is_none(),
            "{key} reported twice"
        );
    }
    assert_eq!(
        reported.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    for key in [0, 1, 3] {
        match &reported[&key] {
            Ok(stored) => assert_eq!(stored.response.status, Status::SUCCESS, "{key}"),
            Err(error) => panic!("{key} not stored: {error}"),
        }
    }
    assert!(
        matches!(&reported[&2], Err(StoreFileError::Read { .. })),
        "{:?}",
        reported[&2]
    );
    // The association goes on.
    assert!(association.is_established());
    let after_uid = "1.2.3.4.200.1.12";
    let after = small_data_set(after_uid, 12);
    let context = association
        .context_for(SECONDARY_CAPTURE)
        .expect("a storage context");
    let request = store::StoreRequest {
        sop_class_uid: SECONDARY_CAPTURE.into(),
        sop_instance_uid: after_uid.into(),
        priority: dimsum_net::dimse::message::Priority::Medium,
        move_originator: None,
    };
    let response = tokio::time::timeout(
        PATIENCE,
        store::store_data_set(&association, context, &request, &after),
    )
    .await
    .expect("stored in time")
    .expect("stored");
    assert_eq!(response.status, Status::SUCCESS);
    tokio::time::timeout(PATIENCE, association.release())
        .await
        .expect("release in time")
        .expect("released");
    server.stop().await;

    assert_eq!(files_under(root.path()).len(), 4);
    for (uid, expected) in [
        (after_uid, after.as_slice()),
        (memory_uid, memory.as_slice()),
        (files[0].1.as_str(), files[0].2.as_slice()),
        (large_uid, large.as_slice()),
    ] {
        let bytes = std::fs::read(root.path().join(format!("{uid}.dcm"))).expect("stored");
        let (_, offset) = part10::read_meta(&mut &bytes[..]).expect("stored file meta");
        assert!(&bytes[offset as usize..] == expected, "{uid} differs");
    }
}
