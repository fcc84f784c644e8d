//! `dimsum storescp` under load and against peers that hold on to resources (DESIGN.md
//! principle 5: limits are explicit, and a server facing the internet must survive them):
//! peers stalling in the middle of a data set, more stalling peers than association slots,
//! a thousand silent connections, two hundred DCMTK senders at once, a peer that never reads
//! its responses, and a thousand associations in a row (memory must stay flat).
//!
//! The misbehaving peers are written here, in Rust, over std TCP with PDUs built by the
//! library's own codec (`dimsum_ul::pdu`, `dimsum_dimse::fragment` and `message`): they speak
//! the protocol correctly up to the point where they stop. The well-behaved peer that must
//! still get through is DCMTK (`echoscu`, `storescu`).
//!
//! The tests take a process-wide lock and run one at a time: several assert time bounds
//! (a C-ECHO within a few seconds) that would be meaningless while another test runs 200
//! DCMTK processes on the same two cores.

mod support;

use bytes::BytesMut;
use dimsum_dimse::command::{CommandLimits, CommandSet};
use dimsum_dimse::fragment;
use dimsum_dimse::message::{CEchoRq, CStoreRq, Message, Priority};
use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_ul::pdu::{
    Abort, AssociateRj, AsyncOpsWindow, DecodeLimits, Pdu, PresentationContextResult, RejectResult,
    RejectSource, ServiceProviderPresentationReason, decode_from,
};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};
use support::{
    Finished, IMPLICIT_VR_LE, LOCALHOST, LOG_TIMEOUT, ProcessGuard, VERIFICATION, dcmtk,
    files_under, free_port, generate_test_data, proc_status_kib, run, scratch_dir,
    start_dimsum_storescp, wait_until,
};

/// Secondary Capture Image Storage (PS3.4 Annex B): what the stalling peers announce.
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
/// How long a raw peer waits for one PDU before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of data set a stalling peer sends before it goes silent: well over what
/// `FileStorage` gathers in memory (256 KiB) and over one batch of its blocking writer
/// (1 MiB), so that the data is in the hidden temporary file when the stall begins and the
/// file's removal is really exercised.
const STALL_DATA_BYTES: usize = 1536 * 1024;
/// The value length the stalling peer's Pixel Data announces (never sent in full).
const STALL_PIXEL_LENGTH: u32 = 4 * 1024 * 1024;

/// Runs the tests of this file one at a time (see the module documentation).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// -------------------------------------------------------------------------------------------
// A raw DICOM peer over std TCP
// -------------------------------------------------------------------------------------------

/// One connection speaking PDUs by hand.
struct RawPeer {
    stream: TcpStream,
    received: BytesMut,
}

/// What an accepted A-ASSOCIATE-RQ gave.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    context_id: u8,
    /// The server's maximum PDU length (what our P-DATA-TF PDUs must fit).
    peer_max_pdu: u32,
    window: Option<AsyncOpsWindow>,
}

fn decode_limits() -> DecodeLimits {
    DecodeLimits {
        max_pdata_length: 0,
        ..DecodeLimits::default()
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl RawPeer {
    /// Connects to 127.0.0.1:`port` (bounded), Nagle off.
    fn connect(port: u16) -> RawPeer {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)
            .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
        RawPeer::over(stream)
    }

    fn over(stream: TcpStream) -> RawPeer {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        RawPeer {
            stream,
            received: BytesMut::with_capacity(64 * 1024),
        }
    }

    fn local_port(&self) -> u16 {
        self.stream.local_addr().expect("local address").port()
    }

    fn send(&mut self, pdu: &Pdu) -> io::Result<()> {
        let mut out = BytesMut::new();
        pdu.encode(&mut out).expect("encode a PDU");
        self.stream.write_all(&out)
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next PDU within `timeout`: `Ok(None)` when the server closed the connection first,
    /// an error of kind `TimedOut` when nothing complete came in time.
    fn read_pdu(&mut self, timeout: Duration) -> io::Result<Option<Pdu>> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match decode_from(&mut self.received, &decode_limits()) {
                Ok(Some(pdu)) => return Ok(Some(pdu)),
                Ok(None) => {}
                Err(error) => return Err(io::Error::other(format!("bad PDU: {error}"))),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(error) if is_timeout(&error) => return Err(io::ErrorKind::TimedOut.into()),
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends the A-ASSOCIATE-RQ and reads the answer: the accepted context, or the rejection.
    fn associate(&mut self, request: &AssociationRequest) -> Result<Accepted, AssociateRj> {
        let rq = request.to_pdu().expect("a valid association request");
        self.send(&Pdu::AssociateRq(rq))
            .expect("send the A-ASSOCIATE-RQ");
        match self.read_pdu(IO_TIMEOUT) {
            Ok(Some(Pdu::AssociateAc(ac))) => {
                let context = ac
                    .presentation_contexts
                    .first()
                    .unwrap_or_else(|| panic!("A-ASSOCIATE-AC without a context: {ac:?}"));
                assert_eq!(
                    context.result,
                    PresentationContextResult::Acceptance,
                    "the proposed context was refused: {ac:?}"
                );
                Ok(Accepted {
                    context_id: context.id,
                    peer_max_pdu: ac.user_information.max_length.unwrap_or(0),
                    window: ac.user_information.async_ops_window,
                })
            }
            Ok(Some(Pdu::AssociateRj(rj))) => Err(rj),
            other => panic!("no A-ASSOCIATE-AC/RJ: {other:?}"),
        }
    }

    /// Reads the next PDU, which must be an A-ABORT (within `timeout`); returns the abort (if
    /// that is what came), when the wait ended, and otherwise what came instead.
    fn wait_for_abort(&mut self, timeout: Duration) -> (Option<Abort>, Instant, String) {
        let outcome = self.read_pdu(timeout);
        let at = Instant::now();
        match outcome {
            Ok(Some(Pdu::Abort(abort))) => (Some(abort), at, String::new()),
            Ok(Some(other)) => (
                None,
                at,
                format!("unexpected PDU before the abort: {other:?}"),
            ),
            Ok(None) => (None, at, "closed without A-ABORT".into()),
            Err(error) => (None, at, format!("read failed: {error}")),
        }
    }
}

/// An A-ASSOCIATE-RQ proposing one context.
fn association_request(calling: &str, abstract_syntax: &str, syntax: &str) -> AssociationRequest {
    AssociationRequest::new(calling, "ANY-SCP")
        .with_context(ProposedContext::new(abstract_syntax, [syntax]))
}

/// The P-DATA-TF PDUs of a command.
fn command_pdus(accepted: &Accepted, message: Message) -> BytesMut {
    let command = message
        .to_command_set()
        .encode()
        .expect("encode a command set");
    let mut out = BytesMut::new();
    fragment::encode_pdata_pdus(
        accepted.context_id,
        true,
        &command,
        accepted.peer_max_pdu,
        &mut out,
    )
    .expect("fragment a command");
    out
}

fn echo_request(message_id: u16) -> Message {
    Message::from(CEchoRq {
        message_id,
        affected_sop_class_uid: VERIFICATION.into(),
        data_set_present: false,
    })
}

/// The DIMSE message carried by a P-DATA-TF holding one whole command.
fn command_in(pdu: &Pdu) -> Option<Message> {
    let Pdu::PData(pdata) = pdu else {
        return None;
    };
    let pdv = pdata.pdvs.first()?;
    if !(pdv.is_command && pdv.is_last) {
        return None;
    }
    let set = CommandSet::decode(&pdv.data, &CommandLimits::default()).ok()?;
    Message::from_command_set(&set).ok()
}

/// One implicit VR little endian element (tag, length, value).
fn implicit_element(out: &mut Vec<u8>, group: u16, element: u16, value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn padded_uid(uid: &str) -> Vec<u8> {
    let mut value = uid.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(0);
    }
    value
}

// -------------------------------------------------------------------------------------------
// A peer that stalls in the middle of a data set
// -------------------------------------------------------------------------------------------

/// How a stalling peer's association went.
enum Stall {
    /// A-ASSOCIATE-RJ (all slots taken).
    Rejected(AssociateRj),
    /// Associated, sent a C-STORE-RQ and [`STALL_DATA_BYTES`] of its data set, then went
    /// silent at `since` with the socket open.
    Stalled { peer: RawPeer, since: Instant },
}

/// Associates (Secondary Capture, Implicit VR LE), announces a data set with a C-STORE-RQ,
/// sends the start of it (SOP class and instance, then a Pixel Data element of
/// [`STALL_PIXEL_LENGTH`] of which only part follows), none of it flagged last, and stops.
fn stall_in_data_set(port: u16, sop_instance_uid: &str) -> Stall {
    let mut peer = RawPeer::connect(port);
    let request = association_request("STALLER", SECONDARY_CAPTURE, IMPLICIT_VR_LE);
    let accepted = match peer.associate(&request) {
        Ok(accepted) => accepted,
        Err(rj) => return Stall::Rejected(rj),
    };
    let store = Message::from(CStoreRq {
        message_id: 1,
        affected_sop_class_uid: SECONDARY_CAPTURE.into(),
        affected_sop_instance_uid: sop_instance_uid.into(),
        priority: Priority::Medium,
        move_originator_ae_title: None,
        move_originator_message_id: None,
        data_set_present: true,
    });
    let mut data = Vec::with_capacity(STALL_DATA_BYTES + 256);
    implicit_element(&mut data, 0x0008, 0x0016, &padded_uid(SECONDARY_CAPTURE));
    implicit_element(&mut data, 0x0008, 0x0018, &padded_uid(sop_instance_uid));
    data.extend_from_slice(&0x7FE0u16.to_le_bytes());
    data.extend_from_slice(&0x0010u16.to_le_bytes());
    data.extend_from_slice(&STALL_PIXEL_LENGTH.to_le_bytes());
    data.resize(STALL_DATA_BYTES, 0x5A);
    let mut out = command_pdus(&accepted, store);
    fragment::encode_pdata_chunk(
        accepted.context_id,
        false,
        &data,
        false,
        accepted.peer_max_pdu,
        &mut out,
    )
    .expect("fragment the data set");
    peer.send_bytes(&out).expect("send the C-STORE-RQ and data");
    Stall::Stalled {
        peer,
        since: Instant::now(),
    }
}

/// The hidden temporary files (`.<uid>.<pid>-<n>.part`) under `dir`.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(".part"))
        })
        .collect()
}

// -------------------------------------------------------------------------------------------
// DCMTK echoscu, /proc
// -------------------------------------------------------------------------------------------

/// DCMTK `echoscu -v` to 127.0.0.1:`port`, bounded timeouts.
fn dcmtk_echoscu(dir: &Path, port: u16) -> Option<Finished> {
    let mut command = dcmtk("echoscu")?;
    command
        .args(["-v", "-to", "5", "-ta", "5", "-td", "5"])
        .args([LOCALHOST, &port.to_string()]);
    Some(run("dcmtk-echoscu", dir, command, Duration::from_secs(30)))
}

fn echo_succeeded(echo: &Finished) -> bool {
    echo.code() == Some(0)
        && echo
            .output()
            .contains("I: Received Echo Response (Success)")
}

/// Runs `echoscu` until it succeeds or `budget` passes; returns the successful run (or the
/// last failed one), the time until it succeeded, and the number of attempts.
fn echo_until_success(
    dir: &Path,
    port: u16,
    budget: Duration,
) -> Option<(Finished, Duration, u32)> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let echo = dcmtk_echoscu(dir, port)?;
        if echo_succeeded(&echo) || start.elapsed() >= budget {
            return Some((echo, start.elapsed(), attempts));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Open file descriptors of a process.
fn open_descriptors(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count())
}

/// One IPv4 TCP socket as /proc/net/tcp shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpRow {
    /// 01 ESTABLISHED, 04 FIN_WAIT1, 07 CLOSE, ...
    state: u8,
    /// Bytes written and not acknowledged by the other end.
    tx_queue: u64,
    /// Bytes received and not read by the application.
    rx_queue: u64,
}

const TCP_ESTABLISHED: u8 = 0x01;

/// The 127.0.0.1 sockets whose (local, remote) ports are `pairs`, from one read of
/// /proc/net/tcp (which lists every socket of the host, TIME_WAIT included: read it rarely).
fn tcp_rows<const N: usize>(pairs: [(u16, u16); N]) -> [Option<TcpRow>; N] {
    let mut rows = [None; N];
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return rows;
    };
    let wanted = pairs.map(|(local, remote)| {
        (
            format!("0100007F:{local:04X}"),
            format!("0100007F:{remote:04X}"),
        )
    });
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let Some(index) = wanted
            .iter()
            .position(|(l, r)| l.as_str() == *local && r.as_str() == *remote)
        else {
            continue;
        };
        rows[index] = parse_tcp_row(&fields);
    }
    rows
}

/// State and queues of one /proc/net/tcp line split on whitespace.
fn parse_tcp_row(fields: &[&str]) -> Option<TcpRow> {
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    let (tx, rx) = fields.get(4)?.split_once(':')?;
    Some(TcpRow {
        state,
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
    })
}

/// The 127.0.0.1 socket whose local port is `local` and remote port `remote`, if any.
fn tcp_row(local: u16, remote: u16) -> Option<TcpRow> {
    let [row] = tcp_rows([(local, remote)]);
    row
}

// -------------------------------------------------------------------------------------------
// 1. A peer stalling in the middle of a data set
// -------------------------------------------------------------------------------------------

#[test]
fn peer_stalling_mid_data_set_is_aborted_after_the_dimse_timeout() {
    let _serial = serial();
    let dir = scratch_dir("limits-stall-one");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &["--dimse-timeout", "2"]);
    let uid = "1.2.826.0.1.3680043.10.1394.99.1";
    let Stall::Stalled { mut peer, since } = stall_in_data_set(port, uid) else {
        panic!("the stalling peer was rejected\n{}", scp.describe());
    };
    // the data so far is on disk, in the hidden temporary file
    assert!(
        wait_until(Duration::from_millis(1500), || !temporary_files(&output)
            .is_empty()),
        "no temporary file while the transfer is stalled: {:#?}\n{}",
        files_under(&output),
        scp.describe()
    );
    let (abort, at, why) = peer.wait_for_abort(Duration::from_secs(10));
    let after = at - since;
    eprintln!("MEASURED stall-one: A-ABORT {after:?} after the stall ({abort:?})");
    assert!(
        abort.is_some(),
        "no A-ABORT for the stalled peer ({why}, after {after:?})\n{}",
        scp.describe()
    );
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_secs(5),
        "A-ABORT {after:?} after the stall, expected about the 2 s DIMSE timeout\n{}",
        scp.describe()
    );
    // the partial object vanishes, temporary file included; nothing is stored
    assert!(
        wait_until(LOG_TIMEOUT, || files_under(&output).is_empty()),
        "files left after the abort: {:#?}\n{}",
        files_under(&output),
        scp.describe()
    );
    // a normal C-ECHO works while the aborted peer still holds its socket open
    let Some(echo) = dcmtk_echoscu(&dir, port) else {
        return;
    };
    assert!(
        echo_succeeded(&echo),
        "C-ECHO after the abort failed\n{}\n{}",
        echo.describe(),
        scp.describe()
    );
    assert!(
        scp.stderr().contains("DIMSE timeout"),
        "the server did not log the DIMSE timeout\n{}",
        scp.describe()
    );
    drop(peer);
    assert!(
        files_under(&output).is_empty(),
        "{:#?}",
        files_under(&output)
    );
}

// -------------------------------------------------------------------------------------------
// 2. More stalling peers than association slots
// -------------------------------------------------------------------------------------------

#[test]
fn more_stalling_peers_than_slots_lock_out_a_c_echo_no_longer_than_the_dimse_timeout() {
    const SLOTS: usize = 4;
    const STALLERS: usize = 6;
    let _serial = serial();
    let dir = scratch_dir("limits-stall-many");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(
        &dir,
        &output,
        port,
        &[
            "--max-associations",
            &SLOTS.to_string(),
            "--dimse-timeout",
            "2",
        ],
    );
    // every staller reports once it has stalled (or was rejected), then waits for its abort
    // and hands its still-open socket back, so that no peer closes before the test ends
    let (ready_tx, ready_rx) = mpsc::channel::<bool>();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(STALLERS));
    let stallers: Vec<_> = (0..STALLERS)
        .map(|index| {
            let ready = ready_tx.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let uid = format!("1.2.826.0.1.3680043.10.1394.99.2.{index}");
                match stall_in_data_set(port, &uid) {
                    Stall::Rejected(rj) => {
                        let _ = ready.send(false);
                        (Err(rj), None)
                    }
                    Stall::Stalled { mut peer, since } => {
                        let _ = ready.send(true);
                        let (abort, at, why) = peer.wait_for_abort(Duration::from_secs(15));
                        (Ok((abort, at - since, why)), Some(peer))
                    }
                }
            })
        })
        .collect();
    drop(ready_tx);
    let mut stalled = 0;
    for _ in 0..STALLERS {
        let report = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("a staller did not report\n{}", scp.describe()));
        stalled += usize::from(report);
    }
    let all_stalled = Instant::now();
    assert_eq!(
        stalled,
        SLOTS,
        "associations accepted out of {STALLERS} with {SLOTS} slots\n{}",
        scp.describe()
    );
    let Some((echo, waited, attempts)) = echo_until_success(&dir, port, Duration::from_secs(15))
    else {
        return;
    };
    let since_stall = all_stalled.elapsed();
    eprintln!(
        "MEASURED stall-many: echoscu succeeded {since_stall:?} after the stalls ({waited:?} of retrying, {attempts} attempts)"
    );
    assert!(
        echo_succeeded(&echo),
        "C-ECHO never succeeded while stalled peers held the slots ({attempts} attempts)\n{}\n{}",
        echo.describe(),
        scp.describe()
    );
    assert!(
        since_stall < Duration::from_secs(8),
        "C-ECHO succeeded only {since_stall:?} after the stalls (DIMSE timeout 2 s)\n{}",
        scp.describe()
    );
    let mut open_sockets = Vec::new();
    let mut rejections = Vec::new();
    for staller in stallers {
        let (outcome, peer) = staller.join().expect("a staller thread panicked");
        open_sockets.extend(peer);
        match outcome {
            Err(rj) => rejections.push(rj),
            Ok((abort, after, why)) => {
                assert!(
                    abort.is_some(),
                    "a stalled peer got no A-ABORT ({why}, after {after:?})\n{}",
                    scp.describe()
                );
                assert!(
                    after <= Duration::from_secs(6),
                    "a stalled peer was aborted only after {after:?}\n{}",
                    scp.describe()
                );
            }
        }
    }
    assert_eq!(rejections.len(), STALLERS - SLOTS);
    for rj in &rejections {
        assert_eq!(rj.result, RejectResult::Transient, "{rj:?}");
        assert_eq!(
            rj.source,
            RejectSource::ServiceProviderPresentation(
                ServiceProviderPresentationReason::LocalLimitExceeded
            ),
            "{rj:?}"
        );
    }
    assert!(
        wait_until(LOG_TIMEOUT, || temporary_files(&output).is_empty()),
        "temporary files left: {:#?}\n{}",
        files_under(&output),
        scp.describe()
    );
    assert!(
        files_under(&output).is_empty(),
        "{:#?}",
        files_under(&output)
    );
    drop(open_sockets);
}

// -------------------------------------------------------------------------------------------
// 3. A thousand silent connections
// -------------------------------------------------------------------------------------------

#[test]
fn a_c_echo_gets_through_a_thousand_silent_connections() {
    const SILENT: usize = 1000;
    let _serial = serial();
    // this process opens the connections: make sure it may (the server raises its own limit)
    let limit = rlimit::increase_nofile_limit(4096).expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= SILENT as u64 + 200,
        "the open-file limit of the test process is {limit}: cannot open {SILENT} connections"
    );
    let dir = scratch_dir("limits-silent");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    let pid = scp.id();
    let before = open_descriptors(pid);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let opening = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    for index in 0..SILENT {
        assert!(
            opening.elapsed() < Duration::from_secs(30),
            "opening {SILENT} connections took too long ({index} open)"
        );
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .unwrap_or_else(|error| panic!("connection {index}: {error}\n{}", scp.describe()));
        silent.push(stream);
    }
    // the server has accepted them all (they are its pending connections, not a listen backlog)
    let accepted = wait_until(Duration::from_secs(10), || {
        open_descriptors(pid) >= before + SILENT
    });
    assert!(
        accepted,
        "the server holds {} descriptors ({before} before {SILENT} connections)\n{}",
        open_descriptors(pid),
        scp.describe()
    );
    eprintln!(
        "MEASURED silent: {SILENT} connections open in {:?}, server descriptors {} -> {}",
        opening.elapsed(),
        before,
        open_descriptors(pid)
    );
    let echo_start = Instant::now();
    let Some(echo) = dcmtk_echoscu(&dir, port) else {
        return;
    };
    let took = echo_start.elapsed();
    eprintln!("MEASURED silent: echoscu took {took:?} with {SILENT} silent connections");
    assert!(
        echo_succeeded(&echo),
        "C-ECHO failed with {SILENT} silent connections open\n{}\n{}",
        echo.describe(),
        scp.describe()
    );
    assert!(
        took < Duration::from_secs(5),
        "C-ECHO took {took:?} with {SILENT} silent connections open"
    );
    // the silent connections still hold (not closed by the server within the test)
    assert!(open_descriptors(pid) >= before + SILENT);
    drop(silent);
    // and closing them gives their descriptors back
    assert!(
        wait_until(Duration::from_secs(10), || open_descriptors(pid)
            <= before + 10),
        "the server still holds {} descriptors after the connections closed ({before} before)",
        open_descriptors(pid)
    );
}

// -------------------------------------------------------------------------------------------
// 4. Two hundred DCMTK senders at once
// -------------------------------------------------------------------------------------------

#[test]
fn two_hundred_dcmtk_senders_at_once_all_succeed() {
    const SENDERS: usize = 200;
    const FILES_EACH: usize = 2;
    let _serial = serial();
    let total = SENDERS * FILES_EACH;
    let Some(files) = generate_test_data(
        "limits-senders",
        &[
            "--batch",
            &total.to_string(),
            "--kind",
            "small",
            "--seed",
            "7",
        ],
    ) else {
        return;
    };
    assert_eq!(files.len(), total);
    let sent: BTreeSet<String> = files
        .iter()
        .map(|file| format!("{}.dcm", file.sop_instance_uid))
        .collect();
    assert_eq!(sent.len(), total, "the generated SOP instance UIDs repeat");
    let dir = scratch_dir("limits-senders");
    let output = dir.join("received");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("create the log folder");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    let start = Instant::now();
    let mut senders: Vec<ProcessGuard> = Vec::with_capacity(SENDERS);
    for chunk in files.chunks(FILES_EACH) {
        let Some(mut command) = dcmtk("storescu") else {
            return;
        };
        command
            .args(["-to", "30", "-ta", "30", "-td", "60"])
            .args([LOCALHOST, &port.to_string()])
            .args(chunk.iter().map(|file| &file.path));
        senders.push(ProcessGuard::spawn("dcmtk-storescu", &logs, command));
    }
    let deadline = start + Duration::from_secs(120);
    let mut failures = Vec::new();
    for sender in &mut senders {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = sender.wait(left.max(Duration::from_millis(1)));
        if !status.success() {
            failures.push(sender.describe());
        }
    }
    let took = start.elapsed();
    eprintln!("MEASURED senders: {SENDERS} storescu x {FILES_EACH} files done in {took:?}");
    assert!(
        failures.is_empty(),
        "{} of {SENDERS} storescu failed; first:\n{}\n{}",
        failures.len(),
        failures.first().cloned().unwrap_or_default(),
        scp.describe()
    );
    let stored_names = || -> BTreeSet<String> {
        files_under(&output)
            .iter()
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        wait_until(LOG_TIMEOUT, || stored_names() == sent),
        "stored {} files, sent {total}; missing {:?}, unexpected {:?}\n{}",
        stored_names().len(),
        sent.difference(&stored_names()).take(5).collect::<Vec<_>>(),
        stored_names().difference(&sent).take(5).collect::<Vec<_>>(),
        scp.describe()
    );
    let log = scp.stderr();
    let released = log.matches("Association released by").count();
    let rejected = log.matches("Association rejected").count();
    assert_eq!(
        (released, rejected),
        (SENDERS, 0),
        "released and rejected associations in the server log"
    );
}

// -------------------------------------------------------------------------------------------
// 5. A peer that never reads its responses
// -------------------------------------------------------------------------------------------

/// The peer proposes an unlimited asynchronous operations window and storescp grants
/// `--max-operations` (16): up to 16 C-ECHO-RQs may be outstanding at the server. The peer
/// sends them in batches and never reads a response. A C-ECHO-RSP is ~100 bytes, so to make
/// the server's writes stall without tens of thousands of requests, the peer shrinks what the
/// kernel will buffer for it: SO_RCVBUF 4 KiB (the window it advertises) and TCP_MAXSEG 536
/// before connecting (Linux sizes the sender's initial send buffer from the MSS, so the
/// server's send buffer stays at tens of KB instead of megabytes on loopback).
///
/// Pacing keeps the peer within the window as the server sees it: the server counts an
/// operation done once it has queued its response, so after each batch the peer waits until
/// the bytes the server has written (its socket's unacknowledged bytes plus what arrived in
/// ours, from /proc/net/tcp, checked after 2 ms) account for every response of the batch,
/// or 10 ms when they do not (the server answers 16 echoes in far less; a window overrun would show as an abort
/// for a protocol error in its log, which the test rules out). Measured on loopback: the
/// server's send buffer still grows a little with each batch (every ACK the peer's requests
/// carry lets Linux expand it), up to ~230–330 KB, so the peer keeps sending until those
/// counts have not moved for 300 ms; then the server holds answers it cannot write, the peer
/// stops, and the server must cut the connection once its write timeout runs out.
#[test]
fn peer_that_never_reads_is_cut_off_after_the_write_timeout() {
    use socket2::{Domain, Protocol, Socket, Type};
    const MAX_ECHOES: u32 = 60_000;
    /// Longest pause between batches: ample for the server to answer 16 echoes.
    const BATCH_GAP: Duration = Duration::from_millis(10);
    /// No write progress for this long while batches keep coming: the server's writes stall.
    const STALL_QUIET: Duration = Duration::from_millis(300);
    let _serial = serial();
    let dir = scratch_dir("limits-no-read");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &["--write-timeout", "2"]);

    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.set_tcp_mss(536).expect("TCP_MAXSEG");
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    socket
        .connect_timeout(&address.into(), IO_TIMEOUT)
        .expect("connect");
    let mut peer = RawPeer::over(socket.into());
    let request = association_request("NO-READER", VERIFICATION, IMPLICIT_VR_LE)
        .with_async_ops_window(AsyncOpsWindow {
            max_operations_invoked: 0,
            max_operations_performed: 1,
        });
    let accepted = peer
        .associate(&request)
        .unwrap_or_else(|rj| panic!("rejected: {rj:?}\n{}", scp.describe()));
    let window = accepted
        .window
        .map(|window| window.max_operations_invoked)
        .unwrap_or(1);
    assert_eq!(window, 16, "the window storescp grants by default");

    // one echo read normally: its response's size on the wire
    peer.send_bytes(&command_pdus(&accepted, echo_request(1)))
        .expect("send a C-ECHO-RQ");
    let buffered_before = peer.received.len();
    let first = peer
        .read_pdu(IO_TIMEOUT)
        .expect("read")
        .expect("a response");
    let response = command_in(&first).expect("a C-ECHO-RSP");
    assert_eq!(response.status(), Some(Status::SUCCESS));
    assert_eq!(peer.received.len(), buffered_before, "one PDU per response");
    let mut encoded = BytesMut::new();
    first.encode(&mut encoded).expect("re-encode");
    let response_len = encoded.len() as u64;

    let local = peer.local_port();
    let written_by_server = || {
        let [server, ours] = tcp_rows([(port, local), (local, port)]);
        server.map_or(0, |row| row.tx_queue) + ours.map_or(0, |row| row.rx_queue)
    };
    let start = Instant::now();
    let mut message_id: u16 = 1;
    let mut sent: u32 = 0;
    let mut last_written = 0;
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < STALL_QUIET {
        assert!(
            sent < MAX_ECHOES && start.elapsed() < Duration::from_secs(30),
            "the server's writes never stalled ({sent} echoes sent, {last_written} bytes written)\n{}",
            scp.describe()
        );
        let mut batch = BytesMut::new();
        for _ in 0..window {
            message_id = message_id.wrapping_add(1).max(2);
            batch.extend_from_slice(&command_pdus(&accepted, echo_request(message_id)));
        }
        peer.send_bytes(&batch).unwrap_or_else(|error| {
            panic!(
                "sending echoes failed after {sent}: {error}\n{}",
                scp.describe()
            )
        });
        sent += u32::from(window);
        let expected = u64::from(sent) * response_len;
        // until the batch's answers are in the socket buffers, or BATCH_GAP
        let batch_start = Instant::now();
        thread::sleep(Duration::from_millis(2));
        let mut written = written_by_server();
        if written < expected {
            thread::sleep(BATCH_GAP.saturating_sub(batch_start.elapsed()));
            written = written_by_server();
        }
        if written != last_written {
            last_written = written;
            last_progress = Instant::now();
        }
    }
    eprintln!(
        "MEASURED no-read: writes stalled after {sent} echoes ({last_written} bytes in the socket buffers, {:?})",
        start.elapsed()
    );
    // the server must close its socket: it leaves ESTABLISHED (FIN_WAIT1 with its unsent
    // bytes, or gone after a reset)
    let closed = wait_until(Duration::from_secs(12), || {
        tcp_row(port, local).is_none_or(|row| row.state != TCP_ESTABLISHED)
    });
    let after = last_progress.elapsed();
    eprintln!(
        "MEASURED no-read: server socket {:?} {after:?} after the last write progress",
        tcp_row(port, local)
    );
    assert!(
        closed,
        "the server kept the connection of a peer that does not read for {after:?} (write timeout 2 s)\n{}",
        scp.describe()
    );
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_secs(7),
        "connection cut {after:?} after the last write progress, write timeout 2 s\n{}",
        scp.describe()
    );
    // reading now drains what was sent and ends with EOF or a reset, all responses successes
    let mut responses = 0u32;
    let drained = loop {
        match peer.read_pdu(IO_TIMEOUT) {
            Ok(Some(pdu)) => {
                let message =
                    command_in(&pdu).unwrap_or_else(|| panic!("not a C-ECHO-RSP: {pdu:?}"));
                assert_eq!(message.status(), Some(Status::SUCCESS));
                responses += 1;
            }
            Ok(None) => break "EOF".to_owned(),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                panic!("the connection did not end after {responses} responses")
            }
            Err(error) => break error.to_string(),
        }
    };
    eprintln!("MEASURED no-read: drained {responses} of {sent} responses, then {drained}");
    assert!(responses <= sent);
    assert!(
        scp.stderr().contains("write timeout") && !scp.stderr().contains("window"),
        "the server did not log the write timeout (or the peer overran the window)\n{}",
        scp.describe()
    );
    let Some(echo) = dcmtk_echoscu(&dir, port) else {
        return;
    };
    assert!(
        echo_succeeded(&echo),
        "C-ECHO after the cut failed\n{}\n{}",
        echo.describe(),
        scp.describe()
    );
}

// -------------------------------------------------------------------------------------------
// 6. A thousand associations in a row
// -------------------------------------------------------------------------------------------

/// One association: A-ASSOCIATE-RQ, one C-ECHO, A-RELEASE-RQ, close.
fn one_echo_association(port: u16) -> Result<(), String> {
    let mut peer = RawPeer::connect(port);
    let accepted = peer
        .associate(&association_request(
            "SEQUENTIAL",
            VERIFICATION,
            IMPLICIT_VR_LE,
        ))
        .map_err(|rj| format!("rejected: {rj:?}"))?;
    peer.send_bytes(&command_pdus(&accepted, echo_request(1)))
        .map_err(|error| format!("send C-ECHO-RQ: {error}"))?;
    let response = peer
        .read_pdu(IO_TIMEOUT)
        .map_err(|error| format!("read C-ECHO-RSP: {error}"))?
        .ok_or("closed before the C-ECHO-RSP")?;
    match command_in(&response).and_then(|message| message.status()) {
        Some(Status::SUCCESS) => {}
        other => return Err(format!("C-ECHO-RSP status {other:?}: {response:?}")),
    }
    peer.send(&Pdu::ReleaseRq)
        .map_err(|error| format!("send A-RELEASE-RQ: {error}"))?;
    match peer.read_pdu(IO_TIMEOUT) {
        Ok(Some(Pdu::ReleaseRp)) => Ok(()),
        other => Err(format!("no A-RELEASE-RP: {other:?}")),
    }
}

#[test]
fn a_thousand_associations_in_a_row_leave_memory_flat() {
    const WARM_UP: usize = 100;
    const TOTAL: usize = 1000;
    const GROWTH_LIMIT_KIB: u64 = 8 * 1024;
    let _serial = serial();
    let dir = scratch_dir("limits-sequential");
    let output = dir.join("received");
    let port = free_port();
    let scp = start_dimsum_storescp(&dir, &output, port, &[]);
    let pid = scp.id();
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut rss_after_warm_up = 0;
    for index in 0..TOTAL {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{index} associations took {:?}",
            start.elapsed()
        );
        if let Err(why) = one_echo_association(port) {
            failures.push(format!("association {index}: {why}"));
        }
        if index + 1 == WARM_UP {
            thread::sleep(Duration::from_millis(300));
            rss_after_warm_up = proc_status_kib(pid, "VmRSS");
        }
    }
    let took = start.elapsed();
    thread::sleep(Duration::from_millis(300));
    let rss_at_end = proc_status_kib(pid, "VmRSS");
    let growth = rss_at_end.saturating_sub(rss_after_warm_up);
    eprintln!(
        "MEASURED sequential: {TOTAL} associations in {took:?}; VmRSS {rss_after_warm_up} KiB after {WARM_UP}, {rss_at_end} KiB after {TOTAL} (+{growth} KiB), descriptors {}",
        open_descriptors(pid)
    );
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} associations failed; first: {:?}\n{}",
        failures.len(),
        failures.first(),
        scp.describe()
    );
    assert!(
        growth < GROWTH_LIMIT_KIB,
        "storescp grew by {growth} KiB over {} associations ({rss_after_warm_up} -> {rss_at_end} KiB)",
        TOTAL - WARM_UP
    );
    // every association was released (the log has one line per association)
    assert!(
        wait_until(LOG_TIMEOUT, || scp
            .stderr()
            .matches("Association released by SEQUENTIAL")
            .count()
            == TOTAL),
        "released associations in the log: {}",
        scp.stderr()
            .matches("Association released by SEQUENTIAL")
            .count()
    );
}
