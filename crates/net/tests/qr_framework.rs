//! The Query/Retrieve SCP framework over real associations on 127.0.0.1: `FindScp` over a
//! `FindHandler` (matches as a stream, C-CANCEL, failures and panics), `GetScp` over a
//! `RetrieveHandler` (C-STORE sub-operations on the same association, to an SCU that took the
//! SCP role for the storage SOP class), and `MoveScp` (sub-operations to a second in-test
//! server named by the move destination). The SCU side is written by hand with
//! `Association::request` / `Responses::next` / `cancel`, and `next_request` / `respond` for the
//! C-STORE sub-operations a C-GET SCU receives.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;

use common::{
    PATIENCE, SECONDARY_CAPTURE, TestServer, client_timeouts, config, element, even,
    start_server_with,
};
use dimsum_net::dimse::message::{
    CFindRq, CGetRq, CGetRsp, CMoveRq, CMoveRsp, CStoreRsp, Message, Priority,
};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    Dispatcher, EchoScp, FindHandler, FindMatch, FindScp, GetScp, InstanceData, MatchStream,
    MoveDestination, MoveScp, Query, Retrieval, RetrieveHandler, RetrieveInstance, ScpFailure,
    StoreScp,
};
use dimsum_net::storage::{BoxFuture, FileStorage, Origin};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};
use dimsum_net::{Association, Limits, Response, Responses, Role, scu};

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
const STUDY: &str = "1.2.3.4.300";
/// Our AE titles: the Q/R SCU, the Q/R SCP, the move destination.
const SCU_AE: &str = "QRSCU";
const SCP_AE: &str = "QRSCP";
const DEST_AE: &str = "DEST";

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Awaits `future`, failing the test after PATIENCE.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

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
    Bytes::from(
        [
            element(0x0008, 0x0016, b"UI", &even(SECONDARY_CAPTURE, 0)),
            element(0x0008, 0x0018, b"UI", &even(sop_instance_uid, 0)),
            element(0x0010, 0x0010, b"PN", b"DOE^JOHN"),
            element(0x0010, 0x0020, b"LO", b"PID1"),
            element(0x0020, 0x000D, b"UI", &even(STUDY, 0)),
            element(0x0020, 0x000E, b"UI", &even(&format!("{STUDY}.1"), 0)),
        ]
        .concat(),
    )
}

fn instance_uids() -> Vec<String> {
    (1..=3).map(|i| format!("{STUDY}.1.{i}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn start(dispatcher: Dispatcher, ae_title: &str) -> TestServer {
    let mut config = config();
    config.ae_title = ae_title.into();
    start_server_with(config, dispatcher).await
}

async fn connect(address: SocketAddr, request: &AssociationRequest) -> Association {
    within(
        "association",
        Association::connect(
            &address.to_string(),
            request,
            client_timeouts(),
            Limits::default(),
        ),
    )
    .await
    .expect("association accepted")
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

async fn release(association: Association, server: TestServer) {
    within("release", association.release())
        .await
        .expect("released");
    server.stop().await;
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
const FAILURE_COMMENT: &str = "the index is unavailable";

/// Sets its flag when dropped (with the stream that owns it).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl FindHandler for TestFinder {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        self.queries.lock().unwrap().push(query.clone());
        Box::pin(async move {
            let identifier = &query.identifier;
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
        vec![STUDY_ROOT_FIND.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    start(Dispatcher::new().with(EchoScp::new()).with(find), SCP_AE).await
}

/// Sends a C-FIND-RQ for `patient_id`; returns its message ID, context and responses.
async fn send_find(association: &Association, patient_id: &str) -> (u16, u8, Responses) {
    let context = association
        .context_for(STUDY_ROOT_FIND)
        .expect("FIND context");
    let message_id = association.next_message_id();
    let rq = Message::CFindRq(CFindRq {
        message_id,
        affected_sop_class_uid: STUDY_ROOT_FIND.into(),
        priority: Priority::Medium,
        data_set_present: true,
    });
    let responses = within(
        "C-FIND-RQ sent",
        association.request(context, rq, Some(study_query(patient_id))),
    )
    .await
    .expect("C-FIND-RQ sent");
    (message_id, context, responses)
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
    let data = match response.data_set {
        Some(data_set) => Some(
            within("identifier", data_set.collect(1 << 20))
                .await
                .expect("identifier"),
        ),
        None => None,
    };
    (status, data)
}

#[tokio::test]
async fn a_find_handler_stream_becomes_pending_responses_then_success() {
    let finder = TestFinder::default();
    let queries = Arc::clone(&finder.queries);
    let server = start_find_server(finder).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_FIND)).await;
    let (message_id, _, mut responses) = send_find(&association, "MANY").await;
    let mut identifiers = Vec::new();
    let final_status = loop {
        let response = next_response(&mut responses).await;
        match find_response(response, message_id).await {
            (status, Some(identifier)) if status == Status::PENDING => identifiers.push(identifier),
            (status, None) if status.is_final() => break status,
            (status, data) => panic!("unexpected C-FIND-RSP {status} with {data:?}"),
        }
    };
    assert_eq!(final_status, Status::SUCCESS);
    let expected: Vec<Bytes> = (0..MANY).map(study_match).collect();
    assert_eq!(identifiers, expected);
    assert!(within("end", responses.next()).await.is_none());

    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert_eq!(queries[0].sop_class_uid, STUDY_ROOT_FIND);
    assert_eq!(queries[0].identifier, study_query("MANY"));
    assert_eq!(queries[0].transfer_syntax_uid, EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(queries[0].calling_ae_title, SCU_AE);
    release(association, server).await;
}

#[tokio::test]
async fn a_c_cancel_stops_a_slow_find_with_status_cancel_and_drops_the_stream() {
    let finder = TestFinder::default();
    let produced = Arc::clone(&finder.produced);
    let dropped = Arc::clone(&finder.dropped);
    let server = start_find_server(finder).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_FIND)).await;
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
    within("stream dropped", async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let so_far = produced.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        produced.load(Ordering::SeqCst),
        so_far,
        "the search went on"
    );
    assert!(so_far < 10, "{so_far} matches produced");
    // The association goes on.
    let status = within("echo", scu::echo(&association)).await.expect("echo");
    assert_eq!(status, Status::SUCCESS);
    release(association, server).await;
}

#[tokio::test]
async fn a_failing_find_handler_gives_its_status_and_error_comment() {
    let server = start_find_server(TestFinder::default()).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_FIND)).await;
    let (message_id, _, mut responses) = send_find(&association, "FAIL").await;
    let response = next_response(&mut responses).await;
    assert!(response.is_final, "{:?}", response.message);
    let Message::CFindRsp(rsp) = &response.message else {
        panic!("expected a C-FIND-RSP, got {:?}", response.message);
    };
    assert_eq!(rsp.message_id_being_responded_to, message_id);
    assert_eq!(rsp.status, Status::OUT_OF_RESOURCES);
    assert_eq!(rsp.error_comment.as_deref(), Some(FAILURE_COMMENT));
    assert!(response.data_set.is_none());
    release(association, server).await;
}

#[tokio::test]
async fn a_find_stream_failing_after_a_match_ends_with_its_status_and_error_comment() {
    let server = start_find_server(TestFinder::default()).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_FIND)).await;
    let (message_id, _, mut responses) = send_find(&association, "PARTIAL").await;
    let first = find_response(next_response(&mut responses).await, message_id).await;
    assert_eq!(first, (Status::PENDING, Some(study_match(0))));
    let response = next_response(&mut responses).await;
    assert!(response.is_final, "{:?}", response.message);
    let Message::CFindRsp(rsp) = &response.message else {
        panic!("expected a C-FIND-RSP, got {:?}", response.message);
    };
    assert_eq!(rsp.status, Status::OUT_OF_RESOURCES);
    assert_eq!(rsp.error_comment.as_deref(), Some(FAILURE_COMMENT));
    release(association, server).await;
}

#[tokio::test]
async fn a_panicking_find_handler_gives_0x0110_and_the_association_goes_on() {
    let server = start_find_server(TestFinder::default()).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_FIND)).await;
    let (message_id, _, mut responses) = send_find(&association, "PANIC").await;
    let response = next_response(&mut responses).await;
    assert!(response.is_final, "{:?}", response.message);
    let Message::CFindRsp(rsp) = &response.message else {
        panic!("expected a C-FIND-RSP, got {:?}", response.message);
    };
    assert_eq!(rsp.message_id_being_responded_to, message_id);
    assert_eq!(rsp.status, Status::PROCESSING_FAILURE);
    assert!(rsp.error_comment.is_some());
    let status = within("echo", scu::echo(&association))
        .await
        .expect("echo after the panic");
    assert_eq!(status, Status::SUCCESS);
    // And another C-FIND on it works.
    let (message_id, _, responses) = send_find(&association, "NONE").await;
    let last = within("final", responses.last()).await.expect("final");
    assert_eq!(
        last.message.message_id_being_responded_to(),
        Some(message_id)
    );
    assert_eq!(last.message.status(), Some(Status::SUCCESS));
    release(association, server).await;
}

// ------------------------------------------------------------------------------------------
// C-GET and C-MOVE
// ------------------------------------------------------------------------------------------

/// Three Secondary Capture instances in memory, for any query; `DEST` is at `destination`.
#[derive(Default)]
struct TestRetriever {
    destination: Option<SocketAddr>,
    queries: Arc<Mutex<Vec<Query>>>,
}

impl RetrieveHandler for TestRetriever {
    fn retrieve(&self, query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>> {
        self.queries.lock().unwrap().push(query);
        Box::pin(async move {
            Ok(Retrieval::from_instances(
                instance_uids()
                    .into_iter()
                    .map(|uid| RetrieveInstance {
                        sop_class_uid: SECONDARY_CAPTURE.into(),
                        data: InstanceData::Memory(instance_data_set(&uid)),
                        sop_instance_uid: uid,
                        transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
                    })
                    .collect(),
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
}

/// The sub-operation counts of a C-GET-RSP or C-MOVE-RSP: remaining, completed, failed,
/// warning.
type Counts = (Option<u16>, Option<u16>, Option<u16>, Option<u16>);

fn get_counts(rsp: &CGetRsp) -> Counts {
    (
        rsp.number_of_remaining_suboperations,
        rsp.number_of_completed_suboperations,
        rsp.number_of_failed_suboperations,
        rsp.number_of_warning_suboperations,
    )
}

fn move_counts(rsp: &CMoveRsp) -> Counts {
    (
        rsp.number_of_remaining_suboperations,
        rsp.number_of_completed_suboperations,
        rsp.number_of_failed_suboperations,
        rsp.number_of_warning_suboperations,
    )
}

async fn start_get_server() -> TestServer {
    let get = GetScp::new(
        TestRetriever::default(),
        vec![STUDY_ROOT_GET.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    )
    .with_storage(
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    start(Dispatcher::new().with(EchoScp::new()).with(get), SCP_AE).await
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
}

/// Opens an association that can receive the sub-operations, sends a C-GET and answers each
/// C-STORE-RQ with `answer(index)` until the final C-GET-RSP.
async fn run_get(address: SocketAddr, answer: impl Fn(usize) -> Status) -> (Association, GetRun) {
    let request = qr_request(STUDY_ROOT_GET)
        .with_context(ProposedContext::new(
            SECONDARY_CAPTURE,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_role(SECONDARY_CAPTURE, true, true);
    let association = connect(address, &request).await;
    let store_context = association
        .context_for_role(SECONDARY_CAPTURE, Role::Scp)
        .expect("the server granted us the SCP role for the storage SOP class");
    let context = association
        .context_for(STUDY_ROOT_GET)
        .expect("GET context");
    let message_id = association.next_message_id();
    let rq = Message::CGetRq(CGetRq {
        message_id,
        affected_sop_class_uid: STUDY_ROOT_GET.into(),
        priority: Priority::Medium,
        data_set_present: true,
    });
    let mut responses = within(
        "C-GET-RQ sent",
        association.request(context, rq, Some(study_query("PID1"))),
    )
    .await
    .expect("C-GET-RQ sent");

    let mut stores = Vec::new();
    let mut pendings = Vec::new();
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
                let status = answer(stores.len());
                stores.push(Received {
                    context: request.presentation_context_id,
                    sop_instance_uid: rq.affected_sop_instance_uid.clone(),
                    data_set,
                    move_originator: rq.move_originator_ae_title.clone(),
                });
                let rsp = CStoreRsp {
                    affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
                    affected_sop_instance_uid: Some(rq.affected_sop_instance_uid.clone()),
                    ..CStoreRsp::new(rq.message_id, status)
                };
                within(
                    "C-STORE-RSP sent",
                    association.respond(request.presentation_context_id, rsp.into(), None),
                )
                .await
                .expect("C-STORE-RSP sent");
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
                let rsp = rsp.clone();
                let data = match response.data_set {
                    Some(data_set) => Some(
                        within("final identifier", data_set.collect(1 << 20))
                            .await
                            .expect("identifier"),
                    ),
                    None => None,
                };
                break (rsp, data);
            }
            _ = &mut deadline => panic!(
                "no final C-GET-RSP within {PATIENCE:?}; {} stores, pendings {pendings:?}",
                stores.len()
            ),
        }
    };
    (
        association,
        GetRun {
            stores,
            pendings,
            final_response,
            final_data_set,
            store_context,
        },
    )
}

#[tokio::test]
async fn a_c_get_sends_its_instances_on_the_same_association_with_pending_counts() {
    let server = start_get_server().await;
    let (association, run) = run_get(server.address, |_| Status::SUCCESS).await;
    let uids = instance_uids();
    assert_eq!(run.stores.len(), 3, "{:?}", run.stores);
    for (store, uid) in run.stores.iter().zip(&uids) {
        assert_eq!(&store.sop_instance_uid, uid);
        assert_eq!(store.context, run.store_context);
        assert_eq!(store.data_set, instance_data_set(uid));
        assert_eq!(store.move_originator, None);
    }
    assert_eq!(
        run.pendings,
        vec![
            (Some(2), Some(1), Some(0), Some(0)),
            (Some(1), Some(2), Some(0), Some(0)),
        ]
    );
    let last = &run.final_response;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(get_counts(last).1, Some(3));
    assert_eq!(get_counts(last).2, Some(0));
    assert_eq!(get_counts(last).3, Some(0));
    // Number of Remaining Sub-operations only while pending or after a cancel (PS3.7 C.4.3).
    assert_eq!(get_counts(last).0, None);
    assert_eq!(run.final_data_set, None);
    let status = within("echo", scu::echo(&association)).await.expect("echo");
    assert_eq!(status, Status::SUCCESS);
    release(association, server).await;
}

#[tokio::test]
async fn a_failed_c_get_sub_operation_gives_0xb000_with_one_failed() {
    let server = start_get_server().await;
    let (association, run) = run_get(server.address, |index| {
        if index == 1 {
            Status::OUT_OF_RESOURCES
        } else {
            Status::SUCCESS
        }
    })
    .await;
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
    release(association, server).await;
}

#[tokio::test]
async fn a_c_get_with_a_failed_sub_operation_names_the_failed_instance() {
    let server = start_get_server().await;
    let (association, run) = run_get(server.address, |index| {
        if index == 1 {
            Status::OUT_OF_RESOURCES
        } else {
            Status::SUCCESS
        }
    })
    .await;
    assert_eq!(
        run.final_response.status,
        Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES
    );
    assert!(run.final_response.data_set_present);
    let identifier = run
        .final_data_set
        .expect("an identifier in the final C-GET-RSP");
    // (0008,0058) UI with the failed instance's UID.
    assert!(contains(&identifier, &[0x08, 0x00, 0x58, 0x00]));
    assert!(contains(&identifier, instance_uids()[1].as_bytes()));
    release(association, server).await;
}

/// What the move destination stored: file, calling AE title, Move Originator AE title and
/// Message ID.
type Arrival = (PathBuf, String, Option<String>, Option<u16>);

async fn start_destination(root: &Path) -> (TestServer, Arc<Mutex<Vec<Arrival>>>) {
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let storage = FileStorage::new(root)
        .expect("storage")
        .on_stored(move |stored| {
            if let Origin::Dimse(origin) = &stored.instance.origin {
                seen.lock().unwrap().push((
                    stored.path.clone(),
                    origin.calling_ae_title.clone(),
                    origin.move_originator_ae_title.clone(),
                    origin.move_originator_message_id,
                ));
            }
        });
    let store = StoreScp::new(
        storage,
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let server = start(Dispatcher::new().with(store), DEST_AE).await;
    (server, arrivals)
}

async fn start_move_server(destination: SocketAddr) -> TestServer {
    let retriever = TestRetriever {
        destination: Some(destination),
        ..TestRetriever::default()
    };
    let find_move = MoveScp::new(
        retriever,
        vec![STUDY_ROOT_MOVE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    start(
        Dispatcher::new().with(EchoScp::new()).with(find_move),
        SCP_AE,
    )
    .await
}

/// Sends a C-MOVE to `destination`; returns its message ID, the pending counts and the final
/// response.
async fn run_move(association: &Association, destination: &str) -> (u16, Vec<Counts>, CMoveRsp) {
    let context = association
        .context_for(STUDY_ROOT_MOVE)
        .expect("MOVE context");
    let message_id = association.next_message_id();
    let rq = Message::CMoveRq(CMoveRq {
        message_id,
        affected_sop_class_uid: STUDY_ROOT_MOVE.into(),
        priority: Priority::Medium,
        move_destination: destination.into(),
        data_set_present: true,
    });
    let mut responses = within(
        "C-MOVE-RQ sent",
        association.request(context, rq, Some(study_query("PID1"))),
    )
    .await
    .expect("C-MOVE-RQ sent");
    let mut pendings = Vec::new();
    loop {
        let response = next_response(&mut responses).await;
        let Message::CMoveRsp(rsp) = response.message else {
            panic!("expected a C-MOVE-RSP, got {:?}", response.message);
        };
        assert_eq!(rsp.message_id_being_responded_to, message_id);
        if response.is_final {
            return (message_id, pendings, rsp);
        }
        assert_eq!(rsp.status, Status::PENDING);
        pendings.push(move_counts(&rsp));
    }
}

#[tokio::test]
async fn a_c_move_stores_its_instances_at_the_destination_with_the_move_originator() {
    let root = tempfile::tempdir().expect("tempdir");
    let (destination, arrivals) = start_destination(root.path()).await;
    let server = start_move_server(destination.address).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_MOVE)).await;
    let (message_id, pendings, last) = run_move(&association, DEST_AE).await;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(
        pendings,
        vec![
            (Some(2), Some(1), Some(0), Some(0)),
            (Some(1), Some(2), Some(0), Some(0)),
        ]
    );
    let counts = move_counts(&last);
    assert_eq!((counts.1, counts.2, counts.3), (Some(3), Some(0), Some(0)));
    assert_eq!(counts.0, None);
    release(association, server).await;
    let statistics = destination.stop().await;
    assert_eq!(
        (statistics.accepted, statistics.released),
        (1, 1),
        "one association for the sub-operations, released: {statistics}"
    );

    let mut arrivals = arrivals.lock().unwrap().clone();
    arrivals.sort();
    let uids = instance_uids();
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    for ((path, calling, originator, originator_id), uid) in arrivals.iter().zip(&uids) {
        assert_eq!(path, &root.path().join(format!("{uid}.dcm")));
        assert_eq!(calling, SCP_AE);
        assert_eq!(originator.as_deref(), Some(SCU_AE));
        assert_eq!(*originator_id, Some(message_id));
        let bytes = std::fs::read(path).expect("stored file");
        let (meta, offset) =
            dimsum_net::dataset::part10::read_meta(&mut &bytes[..]).expect("file meta");
        assert_eq!(&meta.media_storage_sop_instance_uid, uid);
        assert_eq!(
            Bytes::copy_from_slice(&bytes[offset as usize..]),
            instance_data_set(uid)
        );
    }
}

#[tokio::test]
async fn a_c_move_to_an_unknown_destination_gives_0xa801() {
    let root = tempfile::tempdir().expect("tempdir");
    let (destination, arrivals) = start_destination(root.path()).await;
    let server = start_move_server(destination.address).await;
    let association = connect(server.address, &qr_request(STUDY_ROOT_MOVE)).await;
    let (_, pendings, last) = run_move(&association, "NOWHERE").await;
    assert_eq!(last.status, Status::MOVE_DESTINATION_UNKNOWN);
    assert!(pendings.is_empty(), "{pendings:?}");
    assert!(last.error_comment.is_some());
    release(association, server).await;
    let statistics = destination.stop().await;
    assert_eq!(statistics.accepted, 0, "{statistics}");
    assert!(arrivals.lock().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(root.path()).expect("dir").count(),
        0,
        "something was stored"
    );
}
