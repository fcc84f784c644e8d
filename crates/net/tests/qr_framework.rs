//! The SCP framework for C-FIND, C-GET and C-MOVE (PS3.4 Annex C): a test handler for each,
//! served by a real `Server`, with the requests sent by hand on a real association. The
//! framework sends the pending and final responses, stops on C-CANCEL, answers a failing or
//! panicking handler, and performs the C-STORE sub-operations.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;

use common::*;
use dimsum_net::dimse::message::{CFindRq, CGetRq, CMoveRq, CStoreRsp, Message, Priority};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    Dispatcher, EchoScp, FindHandler, FindMatch, Query, FindScp, GetScp, InstanceData,
    MatchStream, MoveDestination, MoveScp, RetrieveHandler, RetrieveInstance,
    ScpFailure, StoreScp,
};
use dimsum_net::storage::{BoxFuture, FileStorage};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_net::ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS};
use dimsum_net::{Association, Responses, scu};

const STUDY_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const STUDY_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

fn identifier() -> Bytes {
    Bytes::from(element(0x0008, 0x0052, b"CS", b"STUDY "))
}

fn explicit() -> Vec<String> {
    vec![EXPLICIT_VR_LITTLE_ENDIAN.into()]
}

/// What the test C-FIND handler does.
#[derive(Clone, Copy)]
enum FindBehaviour {
    /// `count` matches, `delay` apart.
    Matches { count: usize, delay: Duration },
    /// One match, then a failure.
    FailsAfterOne,
    /// Panics instead of answering.
    Panics,
}

struct TestFind {
    behaviour: FindBehaviour,
    /// Matches handed to the framework so far.
    produced: Arc<AtomicUsize>,
}

impl FindHandler for TestFind {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        let behaviour = self.behaviour;
        let produced = Arc::clone(&self.produced);
        Box::pin(async move {
            assert_eq!(
                query.identifier,
                identifier(),
                "the identifier reaches the handler"
            );
            let matches: MatchStream = match behaviour {
                FindBehaviour::Matches { count, delay } => Box::pin(stream::unfold(0, move |i| {
                    let produced = Arc::clone(&produced);
                    async move {
                        if i == count {
                            return None;
                        }
                        tokio::time::sleep(delay).await;
                        produced.fetch_add(1, Ordering::SeqCst);
                        let found = element(
                            0x0020,
                            0x000D,
                            b"UI",
                            &padded_uid(&format!("1.2.3.{}", i + 1)),
                        );
                        Some((Ok(FindMatch::new(Bytes::from(found))), i + 1))
                    }
                })),
                FindBehaviour::FailsAfterOne => Box::pin(stream::iter(vec![
                    Ok(FindMatch::new(identifier())),
                    Err(ScpFailure::new(
                        Status::OUT_OF_RESOURCES,
                        "the index went away",
                    )),
                ])),
                FindBehaviour::Panics => panic!("a handler bug"),
            };
            Ok(matches)
        })
    }
}

async fn find_server(behaviour: FindBehaviour) -> (TestServer, Arc<AtomicUsize>) {
    let produced = Arc::new(AtomicUsize::new(0));
    let handler = TestFind {
        behaviour,
        produced: Arc::clone(&produced),
    };
    let dispatcher = Dispatcher::new().with(EchoScp::new()).with(FindScp::new(
        handler,
        vec![STUDY_FIND.into()],
        explicit(),
    ));
    (start_server_with(config(), dispatcher).await, produced)
}

fn qr_request() -> AssociationRequest {
    AssociationRequest::new("QRSCU", "ECHOSCP")
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(
            STUDY_FIND,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(STUDY_GET, [EXPLICIT_VR_LITTLE_ENDIAN]))
        .with_context(ProposedContext::new(
            STUDY_MOVE,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(
            SECONDARY_CAPTURE,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_role(SECONDARY_CAPTURE, false, true)
}

async fn send_find(association: &Association) -> (u16, u8, Responses) {
    let context = association.context_for(STUDY_FIND).expect("FIND accepted");
    let message_id = association.next_message_id();
    let request = CFindRq {
        message_id,
        affected_sop_class_uid: STUDY_FIND.into(),
        priority: Priority::Medium,
        data_set_present: true,
    };
    let responses = association
        .request(context, request.into(), Some(identifier()))
        .await
        .expect("sent");
    (message_id, context, responses)
}

/// Every response of `responses`: (status, identifier) pairs, the final one last.
async fn all_responses(mut responses: Responses) -> Vec<(Status, Option<Bytes>)> {
    let mut seen = Vec::new();
    while let Some(response) = tokio::time::timeout(PATIENCE, responses.next())
        .await
        .expect("a response in time")
    {
        let response = response.expect("a response");
        let data = match response.data_set {
            Some(data_set) => Some(data_set.collect(1 << 20).await.expect("identifier")),
            None => None,
        };
        seen.push((response.message.status().expect("a status"), data));
    }
    seen
}

#[tokio::test]
async fn a_find_handler_s_matches_become_pending_responses_then_success() {
    let (server, _) = find_server(FindBehaviour::Matches {
        count: 5,
        delay: Duration::ZERO,
    })
    .await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    let (_, _, responses) = send_find(&association).await;
    let seen = all_responses(responses).await;
    assert_eq!(seen.len(), 6, "{seen:?}");
    for (i, (status, data)) in seen[..5].iter().enumerate() {
        assert_eq!(*status, Status::PENDING);
        let expected = element(
            0x0020,
            0x000D,
            b"UI",
            &padded_uid(&format!("1.2.3.{}", i + 1)),
        );
        assert_eq!(data.as_deref(), Some(expected.as_slice()));
    }
    assert_eq!(seen[5], (Status::SUCCESS, None));
    association.release().await.expect("released");
    server.stop().await;
}

#[tokio::test]
async fn a_cancel_stops_a_slow_find_with_status_cancel() {
    let (server, produced) = find_server(FindBehaviour::Matches {
        count: 100,
        delay: Duration::from_millis(50),
    })
    .await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    let (message_id, context, mut responses) = send_find(&association).await;
    let mut pending = 0;
    while pending < 2 {
        let response = tokio::time::timeout(PATIENCE, responses.next())
            .await
            .expect("in time")
            .expect("a response")
            .expect("ok");
        assert!(!response.is_final);
        pending += 1;
    }
    association
        .cancel(context, message_id)
        .await
        .expect("cancel sent");
    let rest = all_responses(responses).await;
    let (final_status, _) = rest.last().cloned().expect("a final response");
    assert_eq!(final_status, Status::CANCEL, "{rest:?}");
    let pendings = pending + rest.len() - 1;
    assert!(
        pendings < 10,
        "{pendings} matches were sent after the cancel"
    );
    assert!(produced.load(Ordering::SeqCst) < 10, "the search went on");
    // The association goes on.
    assert!(scu::echo(&association).await.expect("echo").is_success());
    association.release().await.expect("released");
    server.stop().await;
}

#[tokio::test]
async fn a_failing_find_handler_is_answered_with_its_status_and_comment() {
    let (server, _) = find_server(FindBehaviour::FailsAfterOne).await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    let (_, _, mut responses) = send_find(&association).await;
    let first = responses.next().await.expect("one").expect("ok");
    assert_eq!(first.message.status(), Some(Status::PENDING));
    drop(first);
    let last = responses.last().await.expect("final");
    let Message::CFindRsp(rsp) = last.message else {
        panic!("expected a C-FIND-RSP");
    };
    assert_eq!(rsp.status, Status::OUT_OF_RESOURCES);
    assert_eq!(rsp.error_comment.as_deref(), Some("the index went away"));
    association.release().await.expect("released");
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_answered_0110_and_the_association_goes_on() {
    let (server, _) = find_server(FindBehaviour::Panics).await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    let (_, _, responses) = send_find(&association).await;
    let last = tokio::time::timeout(PATIENCE, responses.last())
        .await
        .expect("answered in time")
        .expect("final");
    assert_eq!(last.message.status(), Some(Status::PROCESSING_FAILURE));
    assert!(scu::echo(&association).await.expect("echo").is_success());
    association.release().await.expect("released");
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// C-GET and C-MOVE
// ------------------------------------------------------------------------------------------

/// A retrieve handler with three in-memory instances and one known move destination.
struct TestRetrieve {
    destination: Option<MoveDestination>,
}

fn instances() -> Vec<RetrieveInstance> {
    (1..=3)
        .map(|i| {
            let uid = format!("1.2.3.4.300.{i}");
            RetrieveInstance {
                sop_class_uid: SECONDARY_CAPTURE.into(),
                data: InstanceData::Memory(Bytes::from(data_set(&uid, 1024))),
                sop_instance_uid: uid,
                transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
            }
        })
        .collect()
}

impl RetrieveHandler for TestRetrieve {
    fn retrieve(
        &self,
        query: Query,
    ) -> BoxFuture<'_, Result<Vec<RetrieveInstance>, ScpFailure>> {
        Box::pin(async move {
            assert_eq!(query.identifier, identifier());
            Ok(instances())
        })
    }

    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        self.destination
            .clone()
            .filter(|destination| destination.ae_title == ae_title)
    }
}

/// The counts of a C-GET-RSP or C-MOVE-RSP: (remaining, completed, failed, warning).
fn counts(message: &Message) -> (Option<u16>, Option<u16>, Option<u16>, Option<u16>) {
    match message {
        Message::CGetRsp(rsp) => (
            rsp.number_of_remaining_suboperations,
            rsp.number_of_completed_suboperations,
            rsp.number_of_failed_suboperations,
            rsp.number_of_warning_suboperations,
        ),
        Message::CMoveRsp(rsp) => (
            rsp.number_of_remaining_suboperations,
            rsp.number_of_completed_suboperations,
            rsp.number_of_failed_suboperations,
            rsp.number_of_warning_suboperations,
        ),
        _ => (None, None, None, None),
    }
}

/// Runs a C-GET answering each C-STORE sub-operation with `answer(n)` (n = 1, 2, …); returns
/// the SOP instance UIDs received and every C-GET response.
async fn get_with(answer: fn(usize) -> Status) -> (Vec<String>, Vec<Message>) {
    let dispatcher = Dispatcher::new().with(
        GetScp::new(
            TestRetrieve { destination: None },
            vec![STUDY_GET.into()],
            explicit(),
        )
        .with_storage(vec![SECONDARY_CAPTURE.into()], explicit()),
    );
    let server = start_server_with(config(), dispatcher).await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    // Our side performs the C-STORE sub-operations while the C-GET is outstanding.
    let receiver = association.clone();
    let stores = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(request) = receiver.next_request().await {
            let Message::CStoreRq(rq) = &request.message else {
                panic!("expected a C-STORE-RQ, got {:?}", request.message);
            };
            let data = request
                .data_set
                .expect("a data set")
                .collect(1 << 20)
                .await
                .expect("data");
            assert_eq!(data.as_ref(), data_set(&rq.affected_sop_instance_uid, 1024));
            received.push(rq.affected_sop_instance_uid.clone());
            let response = CStoreRsp {
                affected_sop_class_uid: Some(rq.affected_sop_class_uid.clone()),
                affected_sop_instance_uid: Some(rq.affected_sop_instance_uid.clone()),
                ..CStoreRsp::new(rq.message_id, answer(received.len()))
            };
            receiver
                .respond(request.presentation_context_id, response.into(), None)
                .await
                .expect("answered");
        }
        received
    });
    let context = association.context_for(STUDY_GET).expect("GET accepted");
    let request = CGetRq {
        message_id: association.next_message_id(),
        affected_sop_class_uid: STUDY_GET.into(),
        priority: Priority::Medium,
        data_set_present: true,
    };
    let mut responses = association
        .request(context, request.into(), Some(identifier()))
        .await
        .expect("sent");
    let mut seen = Vec::new();
    while let Some(response) = tokio::time::timeout(PATIENCE, responses.next())
        .await
        .expect("in time")
    {
        seen.push(response.expect("response").message);
    }
    association.release().await.expect("released");
    let received = tokio::time::timeout(PATIENCE, stores)
        .await
        .expect("the store task ends")
        .expect("store task");
    server.stop().await;
    (received, seen)
}

#[tokio::test]
async fn a_get_sends_its_instances_back_on_the_same_association() {
    let (received, responses) = get_with(|_| Status::SUCCESS).await;
    assert_eq!(
        received,
        ["1.2.3.4.300.1", "1.2.3.4.300.2", "1.2.3.4.300.3"]
    );
    let (last, pending) = responses.split_last().expect("responses");
    assert_eq!(pending.len(), 2, "{responses:?}");
    assert_eq!(counts(&pending[0]), (Some(2), Some(1), Some(0), Some(0)));
    assert_eq!(counts(&pending[1]), (Some(1), Some(2), Some(0), Some(0)));
    assert!(pending.iter().all(|m| m.status() == Some(Status::PENDING)));
    assert_eq!(last.status(), Some(Status::SUCCESS));
    assert_eq!(counts(last), (None, Some(3), Some(0), Some(0)));
}

#[tokio::test]
async fn a_failed_sub_operation_makes_the_get_end_with_b000() {
    let (received, responses) = get_with(|n| {
        if n == 2 {
            Status::OUT_OF_RESOURCES
        } else {
            Status::SUCCESS
        }
    })
    .await;
    assert_eq!(received.len(), 3);
    let last = responses.last().expect("final");
    assert_eq!(
        last.status(),
        Some(Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES)
    );
    assert_eq!(counts(last), (None, Some(2), Some(1), Some(0)));
}

async fn move_server(destination: Option<MoveDestination>) -> TestServer {
    let dispatcher = Dispatcher::new().with(MoveScp::new(
        TestRetrieve { destination },
        vec![STUDY_MOVE.into()],
        explicit(),
    ));
    start_server_with(config(), dispatcher).await
}

async fn send_move(association: &Association, destination: &str) -> Vec<Message> {
    let context = association.context_for(STUDY_MOVE).expect("MOVE accepted");
    let request = CMoveRq {
        message_id: association.next_message_id(),
        affected_sop_class_uid: STUDY_MOVE.into(),
        priority: Priority::Medium,
        move_destination: destination.into(),
        data_set_present: true,
    };
    let mut responses = association
        .request(context, request.into(), Some(identifier()))
        .await
        .expect("sent");
    let mut seen = Vec::new();
    while let Some(response) = tokio::time::timeout(PATIENCE, responses.next())
        .await
        .expect("in time")
    {
        seen.push(response.expect("response").message);
    }
    seen
}

fn stored_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_move_stores_its_instances_at_the_destination() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = FileStorage::new(root.path()).expect("storage");
    let destination_server = start_server_with(
        config(),
        Dispatcher::new().with(StoreScp::new(
            storage,
            vec![SECONDARY_CAPTURE.into()],
            explicit(),
        )),
    )
    .await;
    let server = move_server(Some(MoveDestination {
        ae_title: "DEST".into(),
        address: destination_server.address.to_string(),
    }))
    .await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    let responses = send_move(&association, "DEST").await;
    let last = responses.last().expect("final");
    assert_eq!(last.status(), Some(Status::SUCCESS), "{responses:?}");
    assert_eq!(counts(last), (None, Some(3), Some(0), Some(0)));
    assert_eq!(
        stored_names(root.path()),
        [
            "1.2.3.4.300.1.dcm",
            "1.2.3.4.300.2.dcm",
            "1.2.3.4.300.3.dcm"
        ]
    );
    association.release().await.expect("released");
    server.stop().await;
    let statistics = destination_server.stop().await;
    assert_eq!(
        statistics.accepted, 1,
        "one association for the sub-operations"
    );
    assert_eq!(statistics.released, 1);
}

#[tokio::test]
async fn a_move_to_an_unknown_destination_is_refused_with_a801() {
    let server = move_server(None).await;
    let association = connect(server.address, &qr_request())
        .await
        .expect("accepted");
    let responses = send_move(&association, "NOWHERE").await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(
        responses[0].status(),
        Some(Status::MOVE_DESTINATION_UNKNOWN)
    );
    association.release().await.expect("released");
    server.stop().await;
}
