//! Shared helpers for the network tests: a server on a free loopback port, raw peers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use dimsum_net::dimse::message::{CStoreRq, CStoreRsp, Message};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{Dispatcher, EchoScp, FinalResponse, ScpFailure, contexts_for};
use dimsum_net::storage::{FileStorage, Origin};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext, SupportedContext};
use dimsum_net::ul::pdu::{self, DecodeLimits, Pdu};
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};
use dimsum_net::{
    Association, IncomingRequest, Limits, Server, ServerConfig, ServerHandle, ServerStatistics,
    Timeouts, scu,
};

/// Upper bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub address: SocketAddr,
    pub handle: ServerHandle,
    pub task: JoinHandle<ServerStatistics>,
}

impl TestServer {
    pub async fn stop(self) -> ServerStatistics {
        self.handle.shutdown();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stops")
            .expect("server task")
    }
}

/// A test configuration: short ARTIM and idle timers so that hostile tests end quickly.
pub fn config() -> ServerConfig {
    let mut config = ServerConfig::new("ECHOSCP");
    config.timeouts = Timeouts {
        artim: Duration::from_secs(1),
        idle: Some(Duration::from_secs(5)),
        dimse: Some(Duration::from_secs(5)),
        ..Timeouts::default()
    };
    config.shutdown_grace = Duration::from_secs(2);
    config
}

/// Awaits `future`, failing the test after PATIENCE.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

pub async fn start_server(config: ServerConfig) -> TestServer {
    start_server_with(config, Dispatcher::new().with(EchoScp::new())).await
}

/// A server on a free loopback port serving with `dispatcher`.
pub async fn start_server_with(config: ServerConfig, dispatcher: Dispatcher) -> TestServer {
    start_server_on("127.0.0.1:0", config, dispatcher).await
}

/// A server bound to `address` serving with `dispatcher`.
pub async fn start_server_on(
    address: &str,
    config: ServerConfig,
    dispatcher: Dispatcher,
) -> TestServer {
    let server = Server::bind(address, config, dispatcher)
        .await
        .expect("bind");
    let address = server.local_addr().expect("address");
    let handle = server.handle();
    let task = tokio::spawn(server.run());
    TestServer {
        address,
        handle,
        task,
    }
}

/// The test configuration named `ae_title`.
pub fn named_config(ae_title: &str) -> ServerConfig {
    let mut config = config();
    config.ae_title = ae_title.into();
    config
}

/// A server with the test configuration, named `ae_title`, serving with `dispatcher`.
pub async fn start_named(dispatcher: Dispatcher, ae_title: &str) -> TestServer {
    start_server_with(named_config(ae_title), dispatcher).await
}

pub fn echo_request(max_pdu: u32) -> AssociationRequest {
    let mut request = AssociationRequest::new("TESTSCU", "ECHOSCP").with_context(
        ProposedContext::new(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]),
    );
    request.max_pdu_length = max_pdu;
    request
}

pub fn client_timeouts() -> Timeouts {
    Timeouts {
        connect: Some(PATIENCE),
        acse: Some(PATIENCE),
        dimse: Some(PATIENCE),
        artim: Duration::from_secs(2),
        idle: None,
        write: Some(PATIENCE),
    }
}

pub async fn connect(
    address: SocketAddr,
    request: &AssociationRequest,
) -> Result<Association, dimsum_net::Error> {
    Association::connect(
        &address.to_string(),
        request,
        client_timeouts(),
        Limits::default(),
    )
    .await
}

/// An association that `address` accepts within PATIENCE, with `timeouts`.
pub async fn associate_with(
    address: SocketAddr,
    request: &AssociationRequest,
    timeouts: Timeouts,
) -> Association {
    within(
        "association",
        Association::connect(&address.to_string(), request, timeouts, Limits::default()),
    )
    .await
    .expect("association accepted")
}

/// An association that `address` accepts within PATIENCE, with the client timeouts.
pub async fn associate(address: SocketAddr, request: &AssociationRequest) -> Association {
    associate_with(address, request, client_timeouts()).await
}

/// A C-ECHO on `association` that succeeds within PATIENCE.
pub async fn assert_echo_on(association: &Association) {
    let status = within("echo", scu::echo(association))
        .await
        .expect("echo answered");
    assert_eq!(status, Status::SUCCESS);
}

/// Releases `association` within PATIENCE, then stops `server`.
pub async fn release_and_stop(association: Association, server: TestServer) {
    within("release", association.release())
        .await
        .expect("released");
    server.stop().await;
}

/// Checks that `association` still works (a C-ECHO), then releases it and stops `server`.
pub async fn echo_release_and_stop(association: Association, server: TestServer) {
    assert_echo_on(&association).await;
    release_and_stop(association, server).await;
}

/// Checks that `what` (C-STOREs, sub-operations) went out pipelined: more than one outstanding
/// at a time, and never more than `window`; then prints how many at most of `total`.
pub fn assert_pipelined(what: &str, max_outstanding: usize, window: usize, total: usize) {
    assert!(
        max_outstanding > 1,
        "the {what} were not pipelined: at most {max_outstanding} outstanding"
    );
    assert!(
        max_outstanding <= window,
        "{max_outstanding} {what} outstanding, beyond the window of {window}"
    );
    eprintln!("at most {max_outstanding} of {total} {what} outstanding");
}

/// Opens an association, echoes and releases: the server still serves normally.
pub async fn assert_echo_works(address: SocketAddr) {
    let association = connect(address, &echo_request(16384))
        .await
        .expect("association accepted");
    assert_echo_on(&association).await;
    association.release().await.expect("released");
}

/// The bytes of an encoded PDU.
pub fn encode(pdu: &Pdu) -> Vec<u8> {
    let mut buf = BytesMut::new();
    pdu.encode(&mut buf).expect("encodable");
    buf.to_vec()
}

/// A raw TCP peer that speaks in bytes.
pub async fn raw_connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads PDUs until the peer closes the connection (bounded by PATIENCE); returns them.
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<Pdu> {
    let mut buf = BytesMut::new();
    let mut pdus = Vec::new();
    let limits = DecodeLimits {
        max_pdata_length: 0,
        ..DecodeLimits::default()
    };
    loop {
        while let Ok(Some(pdu)) = pdu::decode_from(&mut buf, &limits) {
            pdus.push(pdu);
        }
        match tokio::time::timeout(PATIENCE, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return pdus,
            Ok(Ok(_)) => {}
            Err(_) => {
                panic!("the peer did not close the connection within {PATIENCE:?}; got {pdus:?}")
            }
        }
    }
}

/// Reads exactly one PDU (bounded by PATIENCE).
pub async fn read_pdu(stream: &mut TcpStream, buf: &mut BytesMut) -> Pdu {
    let limits = DecodeLimits {
        max_pdata_length: 0,
        ..DecodeLimits::default()
    };
    loop {
        if let Some(pdu) = pdu::decode_from(buf, &limits).expect("valid PDU") {
            return pdu;
        }
        let n = tokio::time::timeout(PATIENCE, stream.read_buf(buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "connection closed while a PDU was expected");
    }
}

/// Sends an A-ASSOCIATE-RQ for verification and reads the A-ASSOCIATE-AC.
pub async fn raw_associate(address: SocketAddr) -> (TcpStream, BytesMut) {
    raw_associate_with(address, echo_request(16384)).await
}

/// Sends `request` as an A-ASSOCIATE-RQ and reads the A-ASSOCIATE-AC.
pub async fn raw_associate_with(
    address: SocketAddr,
    request: AssociationRequest,
) -> (TcpStream, BytesMut) {
    let mut stream = raw_connect(address).await;
    let rq = request.to_pdu().expect("valid request");
    stream
        .write_all(&encode(&Pdu::AssociateRq(rq)))
        .await
        .expect("send RQ");
    let mut buf = BytesMut::new();
    match read_pdu(&mut stream, &mut buf).await {
        Pdu::AssociateAc(_) => (stream, buf),
        other => panic!("expected A-ASSOCIATE-AC, got {other:?}"),
    }
}

pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// Our AE titles in the Query/Retrieve tests: the Q/R SCU, the Q/R SCP, the move destination.
pub const SCU_AE: &str = "QRSCU";
pub const SCP_AE: &str = "QRSCP";
pub const DEST_AE: &str = "DEST";
/// The Error Comment of the Q/R test handlers that fail.
pub const FAILURE_COMMENT: &str = "the index is unavailable";
pub const STUDY: &str = "1.2.3.4.100";
pub const SERIES: &str = "1.2.3.4.100.1";

/// One explicit VR little endian element (PS3.5 §7.1.2).
pub fn element(group: u16, number: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// A value padded to even length with `pad` (NUL for UIDs, a space for text, PS3.5 §6.2).
pub fn even(value: &str, pad: u8) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(pad);
    }
    bytes
}

pub fn padded_uid(uid: &str) -> Vec<u8> {
    even(uid, 0)
}

/// A small secondary-capture-like data set with `pixel_bytes` bytes of pixel data.
pub fn data_set(sop_instance_uid: &str, pixel_bytes: usize) -> Vec<u8> {
    let mut data = Vec::new();
    data.extend(element(
        0x0008,
        0x0016,
        b"UI",
        &padded_uid(SECONDARY_CAPTURE),
    ));
    data.extend(element(
        0x0008,
        0x0018,
        b"UI",
        &padded_uid(sop_instance_uid),
    ));
    data.extend(element(0x0010, 0x0010, b"PN", b"DOE^JANE"));
    data.extend(element(0x0020, 0x000D, b"UI", &padded_uid(STUDY)));
    data.extend(element(0x0020, 0x000E, b"UI", &padded_uid(SERIES)));
    let pixels: Vec<u8> = (0..pixel_bytes).map(|i| (i * 7 % 251) as u8).collect();
    data.extend(element(0x7FE0, 0x0010, b"OW", &pixels));
    data
}

/// A small instance of `sop_class` in study `study` (explicit VR little endian): what the
/// Q/R test handlers retrieve.
pub fn instance_data_set(sop_class: &str, sop_instance_uid: &str, study: &str) -> bytes::Bytes {
    bytes::Bytes::from(
        [
            element(0x0008, 0x0016, b"UI", &even(sop_class, 0)),
            element(0x0008, 0x0018, b"UI", &even(sop_instance_uid, 0)),
            element(0x0010, 0x0010, b"PN", b"DOE^JOHN"),
            element(0x0010, 0x0020, b"LO", b"PID1"),
            element(0x0020, 0x000D, b"UI", &even(study, 0)),
            element(0x0020, 0x000E, b"UI", &even(&format!("{study}.1"), 0)),
        ]
        .concat(),
    )
}

/// What a store server of the tests received, as its storage reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arrival {
    pub path: PathBuf,
    pub sop_instance_uid: String,
    /// The calling AE title of the association that brought it.
    pub calling: String,
    pub originator: Option<String>,
    pub originator_id: Option<u16>,
    /// Which association brought it.
    pub peer: SocketAddr,
}

/// A FileStorage at `root` that records every instance stored over DIMSE.
pub fn recording_storage(root: &Path) -> (FileStorage, Arc<Mutex<Vec<Arrival>>>) {
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let storage = FileStorage::new(root)
        .expect("storage")
        .on_stored(move |stored| {
            if let Origin::Dimse(origin) = &stored.instance.origin {
                seen.lock().unwrap().push(Arrival {
                    path: stored.path.clone(),
                    sop_instance_uid: stored.instance.sop_instance_uid.clone(),
                    calling: origin.calling_ae_title.clone(),
                    originator: origin.move_originator_ae_title.clone(),
                    originator_id: origin.move_originator_message_id,
                    peer: origin.peer_address,
                });
            }
        });
    (storage, arrivals)
}

/// Every file below `root`, hidden ones included, sorted.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The presentation contexts of a test store SCP: Secondary Capture in explicit VR little
/// endian.
pub fn secondary_capture_contexts() -> Vec<SupportedContext> {
    contexts_for(
        &[SECONDARY_CAPTURE.to_owned()],
        &[EXPLICIT_VR_LITTLE_ENDIAN.to_owned()],
    )
}

/// The C-STORE-RQ of `request`, its data set (if any) read to the end (1 MiB at most) and
/// dropped; a failure for any other message.
pub async fn received_store(request: &mut IncomingRequest) -> Result<CStoreRq, ScpFailure> {
    let Message::CStoreRq(rq) = request.message.clone() else {
        return Err(ScpFailure::unrecognized("C-STORE"));
    };
    if let Some(data_set) = request.data_set.take() {
        data_set.collect(1 << 20).await?;
    }
    Ok(rq)
}

/// The successful C-STORE-RSP to `rq`, naming its SOP class and instance.
pub fn store_success(rq: &CStoreRq) -> FinalResponse {
    let rsp = CStoreRsp {
        affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
        affected_sop_instance_uid: Some(rq.affected_sop_instance_uid.clone()),
        ..CStoreRsp::new(rq.message_id, Status::SUCCESS)
    };
    Message::from(rsp).into()
}

/// The data set of `request`, read whole (1 MiB at most); `what` names it in the panic when
/// the request has none.
pub async fn whole_data_set(
    request: IncomingRequest,
    what: &str,
) -> Result<bytes::Bytes, ScpFailure> {
    let data_set = request
        .data_set
        .unwrap_or_else(|| panic!("no {what} in the request"));
    Ok(data_set.collect(1 << 20).await?)
}
