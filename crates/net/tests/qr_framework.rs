//! The Query/Retrieve SCP framework over real associations on 127.0.0.1: `FindScp` over a
//! `FindHandler` (matches as a stream, C-CANCEL, failures and panics), `GetScp` over a
//! `RetrieveHandler` (C-STORE sub-operations on the same association, to an SCU that took the
//! SCP role for the storage SOP class), and `MoveScp` (sub-operations to a second in-test
//! server named by the move destination). The SCU side is written by hand with
//! `Association::request` / `Responses::next` / `cancel`, and `next_request` / `respond` for the
//! C-STORE sub-operations a C-GET SCU receives.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};

use common::{
    Arrival, CT_IMAGE, DEST_AE, FAILURE_COMMENT, PATIENCE, SCP_AE, SCU_AE, SECONDARY_CAPTURE,
    TestServer, assert_echo_on, assert_pipelined, associate, echo_release_and_stop, element, even,
    received_store, recording_storage, release_and_stop, secondary_capture_contexts, start_named,
    store_success, within,
};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::part10::{self, FileMeta};
use dimsum_net::dataset::scan::ScanLimits;
use dimsum_net::dimse::message::{
    CFindRq, CGetRq, CGetRsp, CMoveRq, CMoveRsp, CStoreRsp, Message, Priority,
};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    Dispatcher, EchoScp, FinalResponse, FindHandler, FindMatch, FindScp, GetScp, InstanceData,
    MatchStream, MoveDestination, MoveScp, Query, RequestContext, Retrieval, RetrieveHandler,
    RetrieveInstance, Scp, ScpFailure, StoreScp,
};
use dimsum_net::storage::{
    BoxFuture, FileStorage, InstanceDescription, InstanceWriter, Storage, StoreFailure,
};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext, SupportedContext};
use dimsum_net::ul::pdu::AsyncOpsWindow;
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};
use dimsum_net::{
    Association, DataSetStream, IncomingRequest, Response, Responses, Role, ServerStatistics,
};

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
const WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";
const STUDY: &str = "1.2.3.4.300";

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// A STUDY level identifier asking for the studies of `patient_id` (the test handlers pick
/// their behaviour by it).
fn study_query(patient_id: &str) -> Bytes {
    Bytes::from(
        [
            element(0x0008, 0x0052, b"CS", b"STUDY "),
            element(0x0010, 0x0020, b"LO", &even(patient_id, b' ')),
            element(0x0020, 0x000D, b"UI", b""),
        ]
        .concat(),
    )
}

/// A STUDY level identifier with no Query/Retrieve Level.
fn no_level_query() -> Bytes {
    Bytes::from(
        [
            element(0x0010, 0x0020, b"LO", b"PID1"),
            element(0x0020, 0x000D, b"UI", b""),
        ]
        .concat(),
    )
}

/// An identifier with this Query/Retrieve Level.
fn level_query(level: &[u8]) -> Bytes {
    Bytes::from(
        [
            element(0x0008, 0x0052, b"CS", level),
            element(0x0010, 0x0020, b"LO", b"PID1"),
        ]
        .concat(),
    )
}

/// Bytes that are not a data set: an element whose length runs past the end.
fn not_a_data_set() -> Bytes {
    let mut bytes = element(0x0008, 0x0052, b"CS", b"STUDY ");
    bytes.extend_from_slice(&[0x10, 0x00, 0x20, 0x00, b'L', b'O', 0x00, 0x10, b'A', b'B']);
    Bytes::from(bytes)
}

/// The identifier of match `index`.
fn study_match(index: usize) -> Bytes {
    Bytes::from(
        [
            element(0x0008, 0x0052, b"CS", b"STUDY "),
            element(0x0020, 0x000D, b"UI", &even(&format!("{STUDY}.{index}"), 0)),
        ]
        .concat(),
    )
}

/// A small Secondary Capture data set for `sop_instance_uid`.
fn instance_data_set(sop_instance_uid: &str) -> Bytes {
    common::instance_data_set(SECONDARY_CAPTURE, sop_instance_uid, STUDY)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn qr_request(sop_class: &str) -> AssociationRequest {
    AssociationRequest::new(SCU_AE, SCP_AE)
        .with_context(ProposedContext::new(
            sop_class,
            [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
}

/// The next response, which must come within PATIENCE.
async fn next_response(responses: &mut Responses) -> Response {
    within("response", responses.next())
        .await
        .expect("a response before the end")
        .expect("a response, not an error")
}

/// Sends `request`, made with the next Message ID, on the context of `sop_class` with
/// `identifier`; returns the Message ID, the context and the responses.
async fn send_request(
    association: &Association,
    sop_class: &str,
    request: impl FnOnce(u16) -> Message,
    identifier: Bytes,
) -> (u16, u8, Responses) {
    let context = association.context_for(sop_class).expect("a context");
    let message_id = association.next_message_id();
    let responses = within(
        "request sent",
        association.request(context, request(message_id), Some(identifier)),
    )
    .await
    .expect("request sent");
    (message_id, context, responses)
}

/// The whole data set of a response, if it has one.
async fn collect_data_set(data_set: Option<DataSetStream>) -> Option<Bytes> {
    match data_set {
        Some(data_set) => Some(
            within("data set", data_set.collect(1 << 20))
                .await
                .expect("data set"),
        ),
        None => None,
    }
}

/// Waits for the handler's stream to be dropped (`dropped` set), then checks that nothing more
/// is produced for a while; returns how many items it had produced.
async fn assert_stream_dropped(
    dropped: &AtomicBool,
    produced: &AtomicUsize,
    poll: Duration,
    settle: Duration,
) -> usize {
    within("stream dropped", async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(poll).await;
        }
    })
    .await;
    let so_far = produced.load(Ordering::SeqCst);
    tokio::time::sleep(settle).await;
    assert_eq!(
        produced.load(Ordering::SeqCst),
        so_far,
        "the stream went on after it was dropped"
    );
    so_far
}

// ------------------------------------------------------------------------------------------
// C-FIND
// ------------------------------------------------------------------------------------------

/// Matches by the query's Patient ID: "MANY" → 5 matches at once, "SLOW" → 100 matches 50 ms
/// apart, "FAIL" → an error before any match, "PARTIAL" → one match then an error, "PANIC" →
/// a panic, anything else → none.
#[derive(Default)]
struct TestFinder {
    queries: Arc<Mutex<Vec<Query>>>,
    /// Slow matches produced so far.
    produced: Arc<AtomicUsize>,
    /// Set when the slow stream is dropped.
    dropped: Arc<AtomicBool>,
}

const MANY: usize = 5;
const SLOW: usize = 100;

/// Sets its flag when dropped (with the stream that owns it).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The failures a C-FIND handler may give, each chosen by a Patient ID "REFUSE-xxxx".
const REFUSALS: [(Status, &str); 3] = [
    (Status::OUT_OF_RESOURCES, "the index is unavailable"),
    (
        Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        "no such attribute in this model",
    ),
    (Status::CANNOT_UNDERSTAND, "the query cannot be parsed"),
];

impl FindHandler for TestFinder {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        self.queries.lock().unwrap().push(query.clone());
        Box::pin(async move {
            let identifier = &query.identifier;
            for (status, comment) in REFUSALS {
                if contains(identifier, format!("REFUSE-{:04X}", status.0).as_bytes()) {
                    return Err(ScpFailure::new(status, comment));
                }
            }
            if contains(identifier, b"OPTIONAL") {
                // Matches for which an optional key was not supported: 0xFF01.
                let matches = (0..MANY).map(|i| {
                    Ok(FindMatch {
                        identifier: study_match(i),
                        status: Status::PENDING_WARNING,
                    })
                });
                return Ok(Box::pin(stream::iter(matches)) as MatchStream);
            }
            if contains(identifier, b"MANY") {
                let matches = (0..MANY).map(|i| Ok(FindMatch::new(study_match(i))));
                return Ok(Box::pin(stream::iter(matches)) as MatchStream);
            }
            if contains(identifier, b"SLOW") {
                let state = (
                    0usize,
                    Arc::clone(&self.produced),
                    DropFlag(Arc::clone(&self.dropped)),
                );
                let slow = stream::unfold(state, |(index, produced, flag)| async move {
                    if index == SLOW {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    produced.fetch_add(1, Ordering::SeqCst);
                    Some((
                        Ok(FindMatch::new(study_match(index))),
                        (index + 1, produced, flag),
                    ))
                });
                return Ok(Box::pin(slow) as MatchStream);
            }
            if contains(identifier, b"PARTIAL") {
                let matches = vec![
                    Ok(FindMatch::new(study_match(0))),
                    Err(ScpFailure::new(Status::OUT_OF_RESOURCES, FAILURE_COMMENT)),
                ];
                return Ok(Box::pin(stream::iter(matches)) as MatchStream);
            }
            if contains(identifier, b"FAIL") {
                return Err(ScpFailure::new(Status::OUT_OF_RESOURCES, FAILURE_COMMENT));
            }
            if contains(identifier, b"PANIC") {
                panic!("a bug in the find handler");
            }
            Ok(Box::pin(stream::empty()) as MatchStream)
        })
    }
}

async fn start_find_server(finder: TestFinder) -> TestServer {
    let find = FindScp::new(
        finder,
        vec![STUDY_ROOT_FIND.into(), WORKLIST_FIND.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    start_named(Dispatcher::new().with(EchoScp::new()).with(find), SCP_AE).await
}

/// A find server with `finder`, and an association to it on `sop_class`.
async fn find_session(finder: TestFinder, sop_class: &str) -> (TestServer, Association) {
    let server = start_find_server(finder).await;
    let association = associate(server.address, &qr_request(sop_class)).await;
    (server, association)
}

/// Sends a C-FIND-RQ for `patient_id`; returns its message ID, context and responses.
async fn send_find(association: &Association, patient_id: &str) -> (u16, u8, Responses) {
    send_find_with(association, STUDY_ROOT_FIND, study_query(patient_id)).await
}

/// Sends a C-FIND-RQ on `sop_class` with `identifier`.
async fn send_find_with(
    association: &Association,
    sop_class: &str,
    identifier: Bytes,
) -> (u16, u8, Responses) {
    let rq = |message_id| {
        Message::CFindRq(CFindRq {
            message_id,
            affected_sop_class_uid: sop_class.into(),
            priority: Priority::Medium,
            data_set_present: true,
        })
    };
    send_request(association, sop_class, rq, identifier).await
}

/// The only response to a C-FIND that fails at once: its status and Error Comment.
async fn find_refusal(mut responses: Responses, message_id: u16) -> (Status, Option<String>) {
    let response = next_response(&mut responses).await;
    assert!(response.is_final, "{:?}", response.message);
    assert!(response.data_set.is_none());
    let Message::CFindRsp(rsp) = response.message else {
        panic!("expected a C-FIND-RSP, got {:?}", response.message);
    };
    assert_eq!(rsp.message_id_being_responded_to, message_id);
    (rsp.status, rsp.error_comment)
}

/// A C-FIND-RSP's status, and its data set when it has one.
async fn find_response(response: Response, message_id: u16) -> (Status, Option<Bytes>) {
    let Message::CFindRsp(rsp) = &response.message else {
        panic!("expected a C-FIND-RSP, got {:?}", response.message);
    };
    assert_eq!(rsp.message_id_being_responded_to, message_id);
    assert_eq!(rsp.affected_sop_class_uid.as_deref(), Some(STUDY_ROOT_FIND));
    assert_eq!(response.is_final, rsp.status.is_final());
    let status = rsp.status;
    (status, collect_data_set(response.data_set).await)
}

/// The pending responses of a C-FIND, each status with its identifier, and the final status.
async fn find_responses(
    mut responses: Responses,
    message_id: u16,
) -> (Vec<(Status, Option<Bytes>)>, Status) {
    let mut pendings = Vec::new();
    loop {
        let (status, identifier) =
            find_response(next_response(&mut responses).await, message_id).await;
        if status.is_final() {
            assert!(
                identifier.is_none(),
                "a final C-FIND-RSP with an identifier"
            );
            assert!(within("end", responses.next()).await.is_none());
            return (pendings, status);
        }
        pendings.push((status, identifier));
    }
}

#[tokio::test]
async fn a_find_handler_stream_becomes_pending_responses_then_success() {
    let finder = TestFinder::default();
    let queries = Arc::clone(&finder.queries);
    let (server, association) = find_session(finder, STUDY_ROOT_FIND).await;
    let (message_id, _, responses) = send_find(&association, "MANY").await;
    let (pendings, final_status) = find_responses(responses, message_id).await;
    assert_eq!(final_status, Status::SUCCESS);
    let expected: Vec<(Status, Option<Bytes>)> = (0..MANY)
        .map(|i| (Status::PENDING, Some(study_match(i))))
        .collect();
    assert_eq!(pendings, expected);

    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert_eq!(queries[0].sop_class_uid, STUDY_ROOT_FIND);
    assert_eq!(queries[0].identifier, study_query("MANY"));
    assert_eq!(queries[0].transfer_syntax_uid, EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(queries[0].calling_ae_title, SCU_AE);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_c_cancel_stops_a_slow_find_with_status_cancel_and_drops_the_stream() {
    let finder = TestFinder::default();
    let produced = Arc::clone(&finder.produced);
    let dropped = Arc::clone(&finder.dropped);
    let (server, association) = find_session(finder, STUDY_ROOT_FIND).await;
    let (message_id, context, mut responses) = send_find(&association, "SLOW").await;
    let mut pendings = 0;
    let final_status = loop {
        let response = next_response(&mut responses).await;
        let (status, identifier) = find_response(response, message_id).await;
        if status.is_final() {
            break status;
        }
        assert_eq!(identifier, Some(study_match(pendings)));
        pendings += 1;
        if pendings == 2 {
            within("C-CANCEL-RQ", association.cancel(context, message_id))
                .await
                .expect("C-CANCEL-RQ sent");
        }
    };
    assert_eq!(final_status, Status::CANCEL);
    assert!(
        (2..10).contains(&pendings),
        "{pendings} pending responses of {SLOW} after a C-CANCEL after the 2nd"
    );
    // The handler's stream was dropped: the search stopped.
    let so_far = assert_stream_dropped(
        &dropped,
        &produced,
        Duration::from_millis(10),
        Duration::from_millis(200),
    )
    .await;
    assert!(so_far < 10, "{so_far} matches produced");
    // The association goes on.
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_failing_find_handler_gives_its_status_and_error_comment() {
    let (server, association) = find_session(TestFinder::default(), STUDY_ROOT_FIND).await;
    let (message_id, _, responses) = send_find(&association, "FAIL").await;
    let refusal = find_refusal(responses, message_id).await;
    assert_eq!(
        refusal,
        (Status::OUT_OF_RESOURCES, Some(FAILURE_COMMENT.to_owned()))
    );
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_find_stream_failing_after_a_match_ends_with_its_status_and_error_comment() {
    let (server, association) = find_session(TestFinder::default(), STUDY_ROOT_FIND).await;
    let (message_id, _, mut responses) = send_find(&association, "PARTIAL").await;
    let first = find_response(next_response(&mut responses).await, message_id).await;
    assert_eq!(first, (Status::PENDING, Some(study_match(0))));
    let refusal = find_refusal(responses, message_id).await;
    assert_eq!(
        refusal,
        (Status::OUT_OF_RESOURCES, Some(FAILURE_COMMENT.to_owned()))
    );
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_panicking_find_handler_gives_0x0110_and_the_association_goes_on() {
    let (server, association) = find_session(TestFinder::default(), STUDY_ROOT_FIND).await;
    let (message_id, _, responses) = send_find(&association, "PANIC").await;
    let (status, comment) = find_refusal(responses, message_id).await;
    assert_eq!(status, Status::PROCESSING_FAILURE);
    assert!(comment.is_some());
    assert_echo_on(&association).await;
    // And another C-FIND on it works.
    let (message_id, _, responses) = send_find(&association, "NONE").await;
    assert_eq!(
        find_responses(responses, message_id).await,
        (vec![], Status::SUCCESS)
    );
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_find_handlers_pending_0xff01_is_kept_on_every_match() {
    let (server, association) = find_session(TestFinder::default(), STUDY_ROOT_FIND).await;
    let (message_id, _, responses) = send_find(&association, "OPTIONAL").await;
    let (pendings, final_status) = find_responses(responses, message_id).await;
    assert_eq!(final_status, Status::SUCCESS);
    let expected: Vec<(Status, Option<Bytes>)> = (0..MANY)
        .map(|i| (Status::PENDING_WARNING, Some(study_match(i))))
        .collect();
    assert_eq!(pendings, expected);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_find_handlers_refusals_come_back_with_their_status_and_comment() {
    let (server, association) = find_session(TestFinder::default(), STUDY_ROOT_FIND).await;
    for (status, comment) in REFUSALS {
        let patient_id = format!("REFUSE-{:04X}", status.0);
        let (message_id, _, responses) = send_find(&association, &patient_id).await;
        let refusal = find_refusal(responses, message_id).await;
        assert_eq!(refusal, (status, Some(comment.to_owned())), "{patient_id}");
    }
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_find_identifier_that_is_not_a_data_set_gets_0xc000_and_reaches_no_handler() {
    let finder = TestFinder::default();
    let queries = Arc::clone(&finder.queries);
    let (server, association) = find_session(finder, STUDY_ROOT_FIND).await;
    let (message_id, _, responses) =
        send_find_with(&association, STUDY_ROOT_FIND, not_a_data_set()).await;
    let (status, comment) = find_refusal(responses, message_id).await;
    assert_eq!(status, Status::CANNOT_UNDERSTAND, "{comment:?}");
    assert!(comment.is_some());
    assert!(queries.lock().unwrap().is_empty());
    // The association goes on.
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_find_without_a_level_or_with_one_outside_the_model_gets_0xa900() {
    let finder = TestFinder::default();
    let queries = Arc::clone(&finder.queries);
    let (server, association) = find_session(finder, STUDY_ROOT_FIND).await;
    for identifier in [no_level_query(), level_query(b"IMAGEX")] {
        let (message_id, _, responses) =
            send_find_with(&association, STUDY_ROOT_FIND, identifier).await;
        let (status, comment) = find_refusal(responses, message_id).await;
        assert_eq!(status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
        assert!(
            comment
                .as_deref()
                .is_some_and(|comment| comment.contains("Query/Retrieve Level")),
            "{comment:?}"
        );
    }
    assert!(queries.lock().unwrap().is_empty());
    // PATIENT is a level of Patient Root, not of Study Root.
    let (message_id, _, responses) =
        send_find_with(&association, STUDY_ROOT_FIND, level_query(b"PATIENT ")).await;
    let (status, _) = find_refusal(responses, message_id).await;
    assert_eq!(status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_worklist_query_has_no_level_and_reaches_its_handler() {
    let finder = TestFinder::default();
    let queries = Arc::clone(&finder.queries);
    let (server, association) = find_session(finder, WORKLIST_FIND).await;
    let worklist = Bytes::from(
        [
            element(0x0010, 0x0020, b"LO", b"MANY"),
            element(0x0040, 0x0100, b"SQ", b""),
        ]
        .concat(),
    );
    let (message_id, _, responses) =
        send_find_with(&association, WORKLIST_FIND, worklist.clone()).await;
    let last = within("final", responses.last()).await.expect("final");
    assert_eq!(
        last.message.message_id_being_responded_to(),
        Some(message_id)
    );
    assert_eq!(last.message.status(), Some(Status::SUCCESS));
    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert_eq!(queries[0].sop_class_uid, WORKLIST_FIND);
    assert_eq!(queries[0].identifier, worklist);
    release_and_stop(association, server).await;
}

// ------------------------------------------------------------------------------------------
// C-GET and C-MOVE
// ------------------------------------------------------------------------------------------

/// How many instances the "MANY" and "SLOW" retrievals have.
const RETRIEVED: usize = 50;
/// How long a storage SCP of these tests holds a sub-operation before answering it, so that
/// several are visibly outstanding when the window allows it however fast the machine is.
const ANSWER_DELAY: Duration = Duration::from_millis(15);
const BROKEN_COMMENT: &str = "the archive went offline";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// The SOP Instance UID of instance `index` (from 1).
fn instance_uid(index: usize) -> String {
    format!("{STUDY}.1.{index}")
}

fn instance_uids() -> Vec<String> {
    (1..=3).map(instance_uid).collect()
}

fn retrieved_uids() -> BTreeSet<String> {
    (1..=RETRIEVED).map(instance_uid).collect()
}

/// A Secondary Capture instance in memory, explicit VR little endian.
fn memory_instance(uid: String) -> RetrieveInstance {
    RetrieveInstance {
        sop_class_uid: SECONDARY_CAPTURE.into(),
        data: InstanceData::Memory(instance_data_set(&uid)),
        sop_instance_uid: uid,
        transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
    }
}

/// The data set of [`instance_data_set`] in implicit VR little endian.
fn implicit_data_set(sop_instance_uid: &str) -> Bytes {
    let element = |group: u16, number: u16, value: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&number.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    };
    Bytes::from(
        [
            element(0x0008, 0x0016, &even(SECONDARY_CAPTURE, 0)),
            element(0x0008, 0x0018, &even(sop_instance_uid, 0)),
            element(0x0010, 0x0010, b"DOE^JOHN"),
            element(0x0010, 0x0020, b"PID1"),
            element(0x0020, 0x000D, &even(STUDY, 0)),
            element(0x0020, 0x000E, &even(&format!("{STUDY}.1"), 0)),
        ]
        .concat(),
    )
}

/// Retrieves by the query's Patient ID: "MANY" → [`RETRIEVED`] instances from a stream, every
/// other one from a Part 10 file; "SLOW" → [`RETRIEVED`] instances from a stream that takes
/// 10 ms over each (counted, and flagged when dropped); "BROKEN" → 3 instances, then a
/// failure; "MIXED" → 5 instances of which one has a SOP class and one a transfer syntax that
/// no context accepts, and one is in implicit VR (to be converted); anything else → 3
/// instances in memory. The C-MOVE destination `DEST` is at `destination`, reached over
/// `associations` associations.
struct TestRetriever {
    destination: Option<SocketAddr>,
    associations: usize,
    queries: Arc<Mutex<Vec<Query>>>,
    produced: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
    files: Arc<tempfile::TempDir>,
}

impl Default for TestRetriever {
    fn default() -> Self {
        Self {
            destination: None,
            associations: 1,
            queries: Arc::default(),
            produced: Arc::default(),
            dropped: Arc::default(),
            files: Arc::new(tempfile::tempdir().expect("tempdir")),
        }
    }
}

impl TestRetriever {
    /// Instance `index`; an even one as the data set of a Part 10 file written now.
    fn instance(&self, index: usize) -> RetrieveInstance {
        let uid = instance_uid(index);
        if index % 2 == 1 {
            return memory_instance(uid);
        }
        let meta = FileMeta::new(
            SECONDARY_CAPTURE,
            uid.as_str(),
            EXPLICIT_VR_LITTLE_ENDIAN,
            "1.2.3.4.5",
            "QRTEST",
        );
        let mut bytes = part10::encode_header(&meta).expect("file meta");
        let offset = bytes.len() as u64;
        let data_set = instance_data_set(&uid);
        bytes.extend_from_slice(&data_set);
        let path = self.files.path().join(format!("{uid}.dcm"));
        std::fs::write(&path, bytes).expect("write a test file");
        RetrieveInstance {
            data: InstanceData::File {
                path,
                offset,
                length: data_set.len() as u64,
            },
            ..memory_instance(uid)
        }
    }

    fn mixed(&self) -> Vec<RetrieveInstance> {
        let mut instances: Vec<RetrieveInstance> =
            (1..=5).map(|i| memory_instance(instance_uid(i))).collect();
        instances[1].sop_class_uid = CT_IMAGE.into();
        instances[2].transfer_syntax_uid = JPEG_BASELINE.into();
        instances[4].transfer_syntax_uid = IMPLICIT_VR_LITTLE_ENDIAN.into();
        instances[4].data = InstanceData::Memory(implicit_data_set(&instance_uid(5)));
        instances
    }
}

impl RetrieveHandler for TestRetriever {
    fn retrieve(&self, query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>> {
        self.queries.lock().unwrap().push(query.clone());
        Box::pin(async move {
            let identifier = &query.identifier;
            let contexts = BTreeSet::from([(
                SECONDARY_CAPTURE.to_owned(),
                EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
            )]);
            if contains(identifier, b"MANY") {
                let instances: Vec<RetrieveInstance> =
                    (1..=RETRIEVED).map(|i| self.instance(i)).collect();
                let stream = stream::iter(instances).then(|instance| async move {
                    tokio::task::yield_now().await;
                    Ok(instance)
                });
                return Ok(Retrieval {
                    count: RETRIEVED,
                    contexts,
                    instances: Box::pin(stream),
                });
            }
            if contains(identifier, b"SLOW") {
                let state = (
                    1usize,
                    Arc::clone(&self.produced),
                    DropFlag(Arc::clone(&self.dropped)),
                );
                let slow = stream::unfold(state, |(index, produced, flag)| async move {
                    if index > RETRIEVED {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    produced.fetch_add(1, Ordering::SeqCst);
                    Some((
                        Ok(memory_instance(instance_uid(index))),
                        (index + 1, produced, flag),
                    ))
                });
                return Ok(Retrieval {
                    count: RETRIEVED,
                    contexts,
                    instances: Box::pin(slow),
                });
            }
            if contains(identifier, b"BROKEN") {
                let items = instance_uids()
                    .into_iter()
                    .map(|uid| Ok(memory_instance(uid)))
                    .chain([Err(ScpFailure::new(
                        Status::OUT_OF_RESOURCES,
                        BROKEN_COMMENT,
                    ))]);
                return Ok(Retrieval {
                    count: 5,
                    contexts,
                    instances: Box::pin(stream::iter(items)),
                });
            }
            if contains(identifier, b"MIXED") {
                return Ok(Retrieval::from_instances(self.mixed()));
            }
            Ok(Retrieval::from_instances(
                instance_uids().into_iter().map(memory_instance).collect(),
            ))
        })
    }

    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        let address = self.destination?;
        (ae_title == DEST_AE).then(|| MoveDestination {
            ae_title: DEST_AE.into(),
            address: address.to_string(),
        })
    }

    fn move_associations(&self, _: &MoveDestination) -> usize {
        self.associations
    }
}

/// The sub-operation counts of a C-GET-RSP or C-MOVE-RSP: remaining, completed, failed,
/// warning.
type Counts = (Option<u16>, Option<u16>, Option<u16>, Option<u16>);

/// The [`Counts`] of a C-GET-RSP or a C-MOVE-RSP, which name them alike.
macro_rules! sub_operation_counts {
    ($rsp:expr) => {
        (
            $rsp.number_of_remaining_suboperations,
            $rsp.number_of_completed_suboperations,
            $rsp.number_of_failed_suboperations,
            $rsp.number_of_warning_suboperations,
        )
    };
}

fn get_counts(rsp: &CGetRsp) -> Counts {
    sub_operation_counts!(rsp)
}

fn move_counts(rsp: &CMoveRsp) -> Counts {
    sub_operation_counts!(rsp)
}

/// Pending counts after each of `total` sub-operations that all succeeded, but the last.
fn successful_pendings(total: u16) -> Vec<Counts> {
    (1..total)
        .map(|done| (Some(total - done), Some(done), Some(0), Some(0)))
        .collect()
}

/// The Failed SOP Instance UID List of a final response's identifier.
fn failed_list(identifier: &Bytes) -> Vec<String> {
    let keys = dimsum_net::dataset::identifier::decode(
        identifier,
        EXPLICIT_VR_LITTLE_ENDIAN,
        &ScanLimits::default(),
    )
    .expect("a valid identifier");
    keys.element(tags::FAILED_SOP_INSTANCE_UID_LIST)
        .expect("a Failed SOP Instance UID List")
        .to_multi_str()
        .expect("UIDs")
        .iter()
        .map(|uid| uid.trim_end_matches(['\0', ' ']).to_owned())
        .collect()
}

async fn start_get_server(retriever: TestRetriever) -> TestServer {
    let get = GetScp::new(
        retriever,
        vec![STUDY_ROOT_GET.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    )
    .with_storage(
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    start_named(Dispatcher::new().with(EchoScp::new()).with(get), SCP_AE).await
}

/// A C-STORE sub-operation as the C-GET SCU received it.
#[derive(Debug)]
struct Received {
    context: u8,
    sop_instance_uid: String,
    data_set: Bytes,
    move_originator: Option<String>,
}

/// What a C-GET SCU saw.
struct GetRun {
    stores: Vec<Received>,
    pendings: Vec<Counts>,
    final_response: CGetRsp,
    final_data_set: Option<Bytes>,
    store_context: u8,
    /// The most C-STORE-RQs received and not yet answered at once.
    max_outstanding: usize,
}

/// How the C-GET SCU of a test behaves.
struct GetScu {
    identifier: Bytes,
    /// The operations it lets the SCP have outstanding (its "performed" window), if it
    /// proposes a window.
    performs: Option<u16>,
    /// How long it holds each C-STORE-RQ before answering.
    delay: Duration,
    /// It sends a C-CANCEL-RQ once it has received this many C-STORE-RQs.
    cancel_after: Option<usize>,
}

impl GetScu {
    fn new(identifier: Bytes) -> Self {
        Self {
            identifier,
            performs: None,
            delay: Duration::ZERO,
            cancel_after: None,
        }
    }
}

/// Opens an association that can receive the sub-operations, sends a C-GET for "PID1" and
/// answers each C-STORE-RQ at once with `answer(index)` until the final C-GET-RSP.
async fn run_get(address: SocketAddr, answer: impl Fn(usize) -> Status) -> (Association, GetRun) {
    run_get_with(address, &GetScu::new(study_query("PID1")), answer).await
}

/// How a C-GET SCU answers that fails its second sub-operation with 0xA700.
fn failing_the_second(index: usize) -> Status {
    if index == 1 {
        Status::OUT_OF_RESOURCES
    } else {
        Status::SUCCESS
    }
}

/// Like [`run_get`] for `patient_id`, every C-STORE-RQ answered with success.
async fn run_get_of(address: SocketAddr, patient_id: &str) -> (Association, GetRun) {
    run_get_with(address, &GetScu::new(study_query(patient_id)), |_| {
        Status::SUCCESS
    })
    .await
}

/// The SOP Instance UIDs a C-GET SCU received, each once, after checking that none came twice.
fn received_uids(run: &GetRun) -> BTreeSet<String> {
    let received: BTreeSet<String> = run
        .stores
        .iter()
        .map(|store| store.sop_instance_uid.clone())
        .collect();
    assert_eq!(
        received.len(),
        run.stores.len(),
        "an instance received twice"
    );
    received
}

/// Like [`run_get`], behaving as `scu` says.
async fn run_get_with(
    address: SocketAddr,
    scu: &GetScu,
    answer: impl Fn(usize) -> Status,
) -> (Association, GetRun) {
    let mut request = qr_request(STUDY_ROOT_GET)
        .with_context(ProposedContext::new(
            SECONDARY_CAPTURE,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_role(SECONDARY_CAPTURE, true, true);
    if let Some(performs) = scu.performs {
        request = request.with_async_ops_window(AsyncOpsWindow {
            max_operations_invoked: 1,
            max_operations_performed: performs,
        });
    }
    let association = associate(address, &request).await;
    let store_context = association
        .context_for_role(SECONDARY_CAPTURE, Role::Scp)
        .expect("the server granted us the SCP role for the storage SOP class");
    let rq = |message_id| {
        Message::CGetRq(CGetRq {
            message_id,
            affected_sop_class_uid: STUDY_ROOT_GET.into(),
            priority: Priority::Medium,
            data_set_present: true,
        })
    };
    let (message_id, context, mut responses) =
        send_request(&association, STUDY_ROOT_GET, rq, scu.identifier.clone()).await;

    let mut stores = Vec::new();
    let mut pendings = Vec::new();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut max_outstanding = 0;
    let mut answering = Vec::new();
    let deadline = tokio::time::sleep(PATIENCE);
    tokio::pin!(deadline);
    let (final_response, final_data_set) = loop {
        tokio::select! {
            biased;
            request = association.next_request() => {
                let mut request = request.expect("the association goes on");
                let Message::CStoreRq(rq) = &request.message else {
                    panic!("expected a C-STORE-RQ, got {:?}", request.message);
                };
                let rq = rq.clone();
                assert_eq!(rq.affected_sop_class_uid, SECONDARY_CAPTURE);
                let data_set = within(
                    "sub-operation data set",
                    request.data_set.take().expect("a data set").collect(1 << 20),
                )
                .await
                .expect("data set");
                let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
                max_outstanding = max_outstanding.max(now);
                let status = answer(stores.len());
                stores.push(Received {
                    context: request.presentation_context_id,
                    sop_instance_uid: rq.affected_sop_instance_uid.clone(),
                    data_set,
                    move_originator: rq.move_originator_ae_title.clone(),
                });
                if scu.cancel_after == Some(stores.len()) {
                    within("C-CANCEL-RQ", association.cancel(context, message_id))
                        .await
                        .expect("C-CANCEL-RQ sent");
                }
                let rsp = CStoreRsp {
                    affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
                    affected_sop_instance_uid: Some(rq.affected_sop_instance_uid.clone()),
                    ..CStoreRsp::new(rq.message_id, status)
                };
                let (association, outstanding, delay) =
                    (association.clone(), Arc::clone(&outstanding), scu.delay);
                let answer = async move {
                    tokio::time::sleep(delay).await;
                    outstanding.fetch_sub(1, Ordering::SeqCst);
                    association
                        .respond(request.presentation_context_id, rsp.into(), None)
                        .await
                };
                if delay.is_zero() {
                    within("C-STORE-RSP sent", answer).await.expect("C-STORE-RSP sent");
                } else {
                    answering.push(tokio::spawn(answer));
                }
            }
            response = responses.next() => {
                let response = response.expect("a C-GET-RSP").expect("a C-GET-RSP");
                let Message::CGetRsp(rsp) = &response.message else {
                    panic!("expected a C-GET-RSP, got {:?}", response.message);
                };
                assert_eq!(rsp.message_id_being_responded_to, message_id);
                if !response.is_final {
                    assert_eq!(rsp.status, Status::PENDING);
                    pendings.push(get_counts(rsp));
                    continue;
                }
                break (rsp.clone(), collect_data_set(response.data_set).await);
            }
            _ = &mut deadline => panic!(
                "no final C-GET-RSP within {PATIENCE:?}; {} stores, pendings {pendings:?}",
                stores.len()
            ),
        }
    };
    // Every sub-operation was answered before the final response.
    for answer in answering {
        within("C-STORE-RSP", answer)
            .await
            .expect("answering task")
            .expect("C-STORE-RSP sent");
    }
    (
        association,
        GetRun {
            stores,
            pendings,
            final_response,
            final_data_set,
            store_context,
            max_outstanding,
        },
    )
}

#[tokio::test]
async fn a_c_get_sends_its_instances_on_the_same_association_with_pending_counts() {
    let server = start_get_server(TestRetriever::default()).await;
    let (association, run) = run_get(server.address, |_| Status::SUCCESS).await;
    let uids = instance_uids();
    assert_eq!(run.stores.len(), 3, "{:?}", run.stores);
    for (store, uid) in run.stores.iter().zip(&uids) {
        assert_eq!(&store.sop_instance_uid, uid);
        assert_eq!(store.context, run.store_context);
        assert_eq!(store.data_set, instance_data_set(uid));
        assert_eq!(store.move_originator, None);
    }
    assert_eq!(run.pendings, successful_pendings(3));
    let last = &run.final_response;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(get_counts(last).1, Some(3));
    assert_eq!(get_counts(last).2, Some(0));
    assert_eq!(get_counts(last).3, Some(0));
    // Number of Remaining Sub-operations only while pending or after a cancel (PS3.7 C.4.3).
    assert_eq!(get_counts(last).0, None);
    assert_eq!(run.final_data_set, None);
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_failed_c_get_sub_operation_gives_0xb000_with_one_failed() {
    let server = start_get_server(TestRetriever::default()).await;
    let (association, run) = run_get(server.address, failing_the_second).await;
    assert_eq!(run.stores.len(), 3, "{:?}", run.stores);
    assert_eq!(
        run.pendings,
        vec![
            (Some(2), Some(1), Some(0), Some(0)),
            (Some(1), Some(1), Some(1), Some(0)),
        ]
    );
    let last = &run.final_response;
    assert_eq!(last.status, Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES);
    assert_eq!(
        (get_counts(last).1, get_counts(last).2, get_counts(last).3),
        (Some(2), Some(1), Some(0))
    );
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_c_get_with_a_failed_sub_operation_names_the_failed_instance() {
    let server = start_get_server(TestRetriever::default()).await;
    let (association, run) = run_get(server.address, failing_the_second).await;
    assert_eq!(
        run.final_response.status,
        Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES
    );
    assert!(run.final_response.data_set_present);
    let identifier = run
        .final_data_set
        .expect("an identifier in the final C-GET-RSP");
    assert_eq!(failed_list(&identifier), vec![instance_uids()[1].clone()]);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_c_get_from_a_stream_pipelines_its_sub_operations_through_the_window() {
    let server = start_get_server(TestRetriever::default()).await;
    let scu = GetScu {
        performs: Some(8),
        delay: ANSWER_DELAY,
        ..GetScu::new(study_query("MANY"))
    };
    let (association, run) = run_get_with(server.address, &scu, |_| Status::SUCCESS).await;
    let last = &run.final_response;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(
        get_counts(last),
        (None, Some(RETRIEVED as u16), Some(0), Some(0))
    );
    // Every instance once, with its data set, from memory or from its file.
    assert_eq!(run.stores.len(), RETRIEVED);
    assert_eq!(received_uids(&run), retrieved_uids());
    for store in &run.stores {
        assert_eq!(store.data_set, instance_data_set(&store.sop_instance_uid));
    }
    assert_pipelined("sub-operations", run.max_outstanding, 8, RETRIEVED);
    // A pending response after each completed sub-operation but the last.
    assert_eq!(run.pendings, successful_pendings(RETRIEVED as u16));
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_c_get_without_a_window_sends_one_sub_operation_at_a_time() {
    let server = start_get_server(TestRetriever::default()).await;
    let scu = GetScu {
        delay: Duration::from_millis(2),
        ..GetScu::new(study_query("MANY"))
    };
    let (association, run) = run_get_with(server.address, &scu, |_| Status::SUCCESS).await;
    assert_eq!(run.final_response.status, Status::SUCCESS);
    assert_eq!(run.max_outstanding, 1);
    assert_eq!(run.stores.len(), RETRIEVED);
    assert_eq!(received_uids(&run), retrieved_uids());
    assert_eq!(run.pendings, successful_pendings(RETRIEVED as u16));
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_cancelled_c_get_ends_with_0xfe00_counts_that_add_up_and_a_dropped_stream() {
    let retriever = TestRetriever::default();
    let produced = Arc::clone(&retriever.produced);
    let dropped = Arc::clone(&retriever.dropped);
    let server = start_get_server(retriever).await;
    let scu = GetScu {
        performs: Some(4),
        delay: ANSWER_DELAY,
        cancel_after: Some(5),
        ..GetScu::new(study_query("SLOW"))
    };
    let (association, run) = run_get_with(server.address, &scu, |_| Status::SUCCESS).await;
    let last = &run.final_response;
    assert_eq!(last.status, Status::CANCEL, "{:?}", last.error_comment);
    let (remaining, completed, failed, warning) = get_counts(last);
    let remaining = remaining.expect("Number of Remaining Sub-operations after a cancel");
    let (completed, failed, warning) = (
        completed.expect("completed"),
        failed.expect("failed"),
        warning.expect("warning"),
    );
    assert_eq!(
        usize::from(remaining + completed + failed + warning),
        RETRIEVED,
        "{:?}",
        get_counts(last)
    );
    // Every sub-operation sent was answered and counted; the rest remain.
    assert_eq!(usize::from(completed), run.stores.len());
    assert_eq!((failed, warning), (0, 0));
    assert!(
        run.stores.len() <= 5 + 4,
        "{} sub-operations after a C-CANCEL-RQ at the 5th, with a window of 4",
        run.stores.len()
    );
    // The handler's stream was dropped: nothing more is produced.
    let so_far = assert_stream_dropped(
        &dropped,
        &produced,
        Duration::from_millis(5),
        Duration::from_millis(100),
    )
    .await;
    assert!(so_far < RETRIEVED / 2, "{so_far} instances produced");
    // The association goes on.
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_retrieval_stream_that_fails_ends_with_its_status_after_the_sub_operations_sent() {
    let server = start_get_server(TestRetriever::default()).await;
    let (association, run) = run_get_of(server.address, "BROKEN").await;
    let last = &run.final_response;
    assert_eq!(last.status, Status::OUT_OF_RESOURCES);
    assert_eq!(last.error_comment.as_deref(), Some(BROKEN_COMMENT));
    assert_eq!(get_counts(last), (None, Some(3), Some(0), Some(0)));
    assert_eq!(run.stores.len(), 3);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn instances_without_a_usable_context_fail_alone_and_an_uncompressed_one_is_converted() {
    let server = start_get_server(TestRetriever::default()).await;
    let (association, run) = run_get_of(server.address, "MIXED").await;
    let last = &run.final_response;
    assert_eq!(last.status, Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES);
    assert_eq!(get_counts(last), (None, Some(3), Some(2), Some(0)));
    let identifier = run.final_data_set.expect("a Failed SOP Instance UID List");
    assert_eq!(
        failed_list(&identifier),
        vec![instance_uid(2), instance_uid(3)],
        "the CT instance (no context) and the JPEG one (no context for its syntax)"
    );
    let received: Vec<&str> = run
        .stores
        .iter()
        .map(|store| store.sop_instance_uid.as_str())
        .collect();
    assert_eq!(
        received,
        vec![
            instance_uid(1).as_str(),
            instance_uid(4).as_str(),
            instance_uid(5).as_str()
        ]
    );
    // The implicit VR one arrives in the explicit VR syntax the context accepted.
    assert_eq!(run.stores[2].data_set, instance_data_set(&instance_uid(5)));
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_c_get_with_a_bad_identifier_gets_0xc000_and_without_a_level_0xa900() {
    let retriever = TestRetriever::default();
    let queries = Arc::clone(&retriever.queries);
    let server = start_get_server(retriever).await;
    for (identifier, expected) in [
        (not_a_data_set(), Status::CANNOT_UNDERSTAND),
        (no_level_query(), Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
    ] {
        let (association, run) = run_get_with(server.address, &GetScu::new(identifier), |_| {
            Status::SUCCESS
        })
        .await;
        let last = &run.final_response;
        assert_eq!(last.status, expected, "{:?}", last.error_comment);
        assert!(last.error_comment.is_some());
        assert!(run.stores.is_empty());
        within("release", association.release())
            .await
            .expect("released");
    }
    assert!(queries.lock().unwrap().is_empty(), "a handler was asked");
    server.stop().await;
}

/// [`FileStorage`], refusing one instance with 0xA700.
struct RefusingStorage {
    inner: FileStorage,
    refuse: Option<String>,
}

impl Storage for RefusingStorage {
    fn begin<'a>(
        &'a self,
        instance: &'a InstanceDescription,
    ) -> BoxFuture<'a, Result<Box<dyn InstanceWriter>, StoreFailure>> {
        if self.refuse.as_deref() == Some(instance.sop_instance_uid.as_str()) {
            return Box::pin(async {
                Err(StoreFailure::new(
                    Status::OUT_OF_RESOURCES,
                    "refused by the test",
                ))
            });
        }
        self.inner.begin(instance)
    }
}

async fn start_destination(root: &Path) -> (TestServer, Arc<Mutex<Vec<Arrival>>>) {
    start_refusing_destination(root, None).await
}

async fn start_refusing_destination(
    root: &Path,
    refuse: Option<String>,
) -> (TestServer, Arc<Mutex<Vec<Arrival>>>) {
    let (storage, arrivals) = recording_storage(root);
    let store = StoreScp::new(
        RefusingStorage {
            inner: storage,
            refuse,
        },
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let server = start_named(Dispatcher::new().with(store), DEST_AE).await;
    (server, arrivals)
}

/// A move server whose destination `DEST` is at `destination`, reached over `associations`
/// associations, and an association to it on Study Root MOVE.
async fn move_session(destination: SocketAddr, associations: usize) -> (TestServer, Association) {
    let retriever = TestRetriever {
        destination: Some(destination),
        associations,
        ..TestRetriever::default()
    };
    let find_move = MoveScp::new(
        retriever,
        vec![STUDY_ROOT_MOVE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let server = start_named(
        Dispatcher::new().with(EchoScp::new()).with(find_move),
        SCP_AE,
    )
    .await;
    let association = associate(server.address, &qr_request(STUDY_ROOT_MOVE)).await;
    (server, association)
}

/// Releases the association of a move, stops its server and then the destination; the
/// destination's statistics.
async fn finish_move(
    association: Association,
    server: TestServer,
    destination: TestServer,
) -> ServerStatistics {
    release_and_stop(association, server).await;
    destination.stop().await
}

/// What a C-MOVE SCU saw: the message ID, the pending counts, the final response and its
/// identifier.
struct MoveRun {
    message_id: u16,
    pendings: Vec<Counts>,
    last: CMoveRsp,
    final_data_set: Option<Bytes>,
}

/// Sends a C-MOVE for "PID1" to `destination`.
async fn run_move(association: &Association, destination: &str) -> MoveRun {
    run_move_with(association, destination, study_query("PID1")).await
}

async fn run_move_with(association: &Association, destination: &str, identifier: Bytes) -> MoveRun {
    let rq = |message_id| {
        Message::CMoveRq(CMoveRq {
            message_id,
            affected_sop_class_uid: STUDY_ROOT_MOVE.into(),
            priority: Priority::Medium,
            move_destination: destination.into(),
            data_set_present: true,
        })
    };
    let (message_id, _, mut responses) =
        send_request(association, STUDY_ROOT_MOVE, rq, identifier).await;
    let mut pendings = Vec::new();
    loop {
        let response = next_response(&mut responses).await;
        let Message::CMoveRsp(rsp) = response.message else {
            panic!("expected a C-MOVE-RSP, got {:?}", response.message);
        };
        assert_eq!(rsp.message_id_being_responded_to, message_id);
        if response.is_final {
            let final_data_set = collect_data_set(response.data_set).await;
            return MoveRun {
                message_id,
                pendings,
                last: rsp,
                final_data_set,
            };
        }
        assert_eq!(rsp.status, Status::PENDING);
        pendings.push(move_counts(&rsp));
    }
}

/// The SOP Instance UID of a stored file (its name).
fn stored_uid(arrival: &Arrival) -> String {
    arrival
        .path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .expect("a file name")
        .to_owned()
}

#[tokio::test]
async fn a_c_move_stores_its_instances_at_the_destination_with_the_move_originator() {
    let root = tempfile::tempdir().expect("tempdir");
    let (destination, arrivals) = start_destination(root.path()).await;
    let (server, association) = move_session(destination.address, 1).await;
    let run = run_move(&association, DEST_AE).await;
    let last = &run.last;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(run.pendings, successful_pendings(3));
    let counts = move_counts(last);
    assert_eq!((counts.1, counts.2, counts.3), (Some(3), Some(0), Some(0)));
    assert_eq!(counts.0, None);
    let statistics = finish_move(association, server, destination).await;
    assert_eq!(
        (statistics.accepted, statistics.released),
        (1, 1),
        "one association for the sub-operations, released: {statistics}"
    );

    let mut arrivals = arrivals.lock().unwrap().clone();
    arrivals.sort();
    let uids = instance_uids();
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    for (arrival, uid) in arrivals.iter().zip(&uids) {
        assert_eq!(arrival.path, root.path().join(format!("{uid}.dcm")));
        assert_eq!(arrival.calling, SCP_AE);
        assert_eq!(arrival.originator.as_deref(), Some(SCU_AE));
        assert_eq!(arrival.originator_id, Some(run.message_id));
        let bytes = std::fs::read(&arrival.path).expect("stored file");
        let (meta, offset) = part10::read_meta(&mut &bytes[..]).expect("file meta");
        assert_eq!(&meta.media_storage_sop_instance_uid, uid);
        assert_eq!(
            Bytes::copy_from_slice(&bytes[offset as usize..]),
            instance_data_set(uid)
        );
    }
}

#[tokio::test]
async fn a_c_move_over_three_associations_stores_every_instance_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let (destination, arrivals) = start_destination(root.path()).await;
    let (server, association) = move_session(destination.address, 3).await;
    let run = run_move_with(&association, DEST_AE, study_query("MANY")).await;
    let last = &run.last;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(
        move_counts(last),
        (None, Some(RETRIEVED as u16), Some(0), Some(0))
    );
    assert_eq!(run.pendings, successful_pendings(RETRIEVED as u16));
    let statistics = finish_move(association, server, destination).await;
    assert_eq!(
        (statistics.accepted, statistics.released, statistics.failed),
        (3, 3, 0),
        "three associations for the sub-operations, all released: {statistics}"
    );
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), RETRIEVED, "every instance stored once");
    let stored: BTreeSet<String> = arrivals.iter().map(stored_uid).collect();
    assert_eq!(stored, retrieved_uids());
    let peers: BTreeSet<SocketAddr> = arrivals.iter().map(|arrival| arrival.peer).collect();
    assert_eq!(peers.len(), 3, "instances came over {peers:?}");
    let shares: Vec<usize> = peers
        .iter()
        .map(|peer| arrivals.iter().filter(|a| a.peer == *peer).count())
        .collect();
    eprintln!("instances per association: {shares:?}");
    for arrival in &arrivals {
        assert_eq!(arrival.originator.as_deref(), Some(SCU_AE));
        assert_eq!(arrival.originator_id, Some(run.message_id));
        let bytes = std::fs::read(&arrival.path).expect("stored file");
        let (_, offset) = part10::read_meta(&mut &bytes[..]).expect("file meta");
        assert_eq!(
            Bytes::copy_from_slice(&bytes[offset as usize..]),
            instance_data_set(&stored_uid(arrival))
        );
    }
}

#[tokio::test]
async fn an_instance_refused_by_the_move_destination_gives_0xb000_and_is_named() {
    let root = tempfile::tempdir().expect("tempdir");
    let refused = instance_uid(17);
    let (destination, arrivals) =
        start_refusing_destination(root.path(), Some(refused.clone())).await;
    let (server, association) = move_session(destination.address, 3).await;
    let run = run_move_with(&association, DEST_AE, study_query("MANY")).await;
    let last = &run.last;
    assert_eq!(last.status, Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES);
    assert_eq!(
        move_counts(last),
        (None, Some(RETRIEVED as u16 - 1), Some(1), Some(0))
    );
    assert!(last.data_set_present);
    let identifier = run.final_data_set.expect("a Failed SOP Instance UID List");
    assert_eq!(failed_list(&identifier), vec![refused.clone()]);
    finish_move(association, server, destination).await;
    let stored: BTreeSet<String> = arrivals.lock().unwrap().iter().map(stored_uid).collect();
    let mut expected = retrieved_uids();
    expected.remove(&refused);
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn a_c_move_to_an_unknown_destination_gives_0xa801() {
    let root = tempfile::tempdir().expect("tempdir");
    let (destination, arrivals) = start_destination(root.path()).await;
    let (server, association) = move_session(destination.address, 1).await;
    let run = run_move(&association, "NOWHERE").await;
    assert_eq!(run.last.status, Status::MOVE_DESTINATION_UNKNOWN);
    assert!(run.pendings.is_empty(), "{:?}", run.pendings);
    assert!(run.last.error_comment.is_some());
    let statistics = finish_move(association, server, destination).await;
    assert_eq!(statistics.accepted, 0, "{statistics}");
    assert!(arrivals.lock().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(root.path()).expect("dir").count(),
        0,
        "something was stored"
    );
}

#[tokio::test]
async fn a_c_move_to_an_unreachable_destination_gives_0xa702() {
    // A port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let (server, association) = move_session(closed, 2).await;
    let run = run_move(&association, DEST_AE).await;
    assert_eq!(
        run.last.status,
        Status::OUT_OF_RESOURCES_SUBOPERATIONS,
        "{:?}",
        run.last.error_comment
    );
    assert!(
        run.last
            .error_comment
            .as_deref()
            .is_some_and(|comment| comment.contains(DEST_AE)),
        "{:?}",
        run.last.error_comment
    );
    assert!(run.pendings.is_empty(), "{:?}", run.pendings);
    release_and_stop(association, server).await;
}

/// A storage SCP that aborts its association when it receives `poison`, and answers every
/// other C-STORE-RQ with success after a few milliseconds, noting the instance and the
/// association (the peer's address) first.
struct AbortingStore {
    poison: String,
    stored: Arc<Mutex<Vec<(String, SocketAddr)>>>,
}

impl Scp for AbortingStore {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        secondary_capture_contexts()
    }

    fn perform<'a>(
        &'a self,
        mut request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let rq = received_store(&mut request).await?;
            if rq.affected_sop_instance_uid == self.poison {
                context.association.abort().await;
                return Err(ScpFailure::processing("aborted by the test"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.stored.lock().unwrap().push((
                rq.affected_sop_instance_uid.clone(),
                context.info().peer_address,
            ));
            Ok(store_success(&rq))
        })
    }
}

#[tokio::test]
async fn a_destination_association_that_ends_fails_only_its_own_sub_operations() {
    let poison = instance_uid(10);
    let stored: Arc<Mutex<Vec<(String, SocketAddr)>>> = Arc::default();
    let destination = start_named(
        Dispatcher::new().with(AbortingStore {
            poison: poison.clone(),
            stored: Arc::clone(&stored),
        }),
        DEST_AE,
    )
    .await;
    let (server, association) = move_session(destination.address, 3).await;
    let run = run_move_with(&association, DEST_AE, study_query("MANY")).await;
    let last = &run.last;
    assert_eq!(last.status, Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES);
    let (remaining, completed, failed, warning) = move_counts(last);
    let (completed, failed) = (
        usize::from(completed.expect("completed")),
        usize::from(failed.expect("failed")),
    );
    assert_eq!((remaining, warning), (None, Some(0)));
    assert_eq!(completed + failed, RETRIEVED, "{:?}", move_counts(last));
    // Only what that association had started fails: at most its window of 16; what it had
    // taken and not sent went over the other two.
    assert!(
        (1..=16).contains(&failed),
        "{failed} failed sub-operations for one ended association"
    );
    let named: BTreeSet<String> = failed_list(&run.final_data_set.expect("the failed list"))
        .into_iter()
        .collect();
    assert_eq!(named.len(), failed);
    assert!(named.contains(&poison), "{named:?}");
    eprintln!("{failed} sub-operations failed with the association that ended");
    let statistics = finish_move(association, server, destination).await;
    assert_eq!(
        (statistics.accepted, statistics.released, statistics.failed),
        (3, 2, 1),
        "{statistics}"
    );
    // Every instance was stored once or named; none twice.
    let stored = stored.lock().unwrap().clone();
    let stored_uids: BTreeSet<String> = stored.iter().map(|(uid, _)| uid.clone()).collect();
    assert_eq!(stored_uids.len(), stored.len(), "an instance stored twice");
    assert!(stored.len() >= completed);
    let accounted: BTreeSet<String> = stored_uids.union(&named).cloned().collect();
    assert_eq!(accounted, retrieved_uids());
}
