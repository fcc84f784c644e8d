//! C-MOVE retries (`MoveScp::with_retry`, `MoveRetry`): the sub-associations to the move
//! destination are opened again after a refused connection, a transient rejection (the
//! destination's association limit reached) or an abort before the sub-operations were done;
//! a permanent rejection is not retried; a C-CANCEL during the wait ends the C-MOVE at once.
//! Each test runs a `MoveScp` over a handler of in-memory instances and a destination server
//! of our own on 127.0.0.1, and checks the responses, the counts and what the destination got.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{
    DEST_AE, PATIENCE, SCP_AE, SCU_AE, SECONDARY_CAPTURE, STUDY, TestServer, associate,
    echo_request, element, even, named_config, received_store, recording_storage, release_and_stop,
    secondary_capture_contexts, start_named, start_server_on, start_server_with, store_success,
    within,
};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::scan::ScanLimits;
use dimsum_net::dimse::message::{CMoveRq, CMoveRsp, Message, Priority};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    Dispatcher, EchoScp, FinalResponse, InstanceData, MoveDestination, MoveScp, Query,
    RequestContext, Retrieval, RetrieveHandler, RetrieveInstance, Scp, ScpFailure, StoreScp,
};
use dimsum_net::storage::BoxFuture;
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext, SupportedContext};
use dimsum_net::ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use dimsum_net::{Association, IncomingRequest, MoveRetry, Responses};

const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
/// Instances each C-MOVE retrieves.
const INSTANCES: usize = 6;

fn instance_uid(index: usize) -> String {
    format!("{STUDY}.7.{index}")
}

fn all_uids() -> BTreeSet<String> {
    (1..=INSTANCES).map(instance_uid).collect()
}

/// Retrieves [`INSTANCES`] Secondary Capture instances from memory, whatever the query; the
/// destination `DEST` is at `destination`.
#[derive(Clone)]
struct Instances {
    destination: SocketAddr,
}

impl RetrieveHandler for Instances {
    fn retrieve(&self, _query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>> {
        Box::pin(async {
            Ok(Retrieval::from_instances(
                (1..=INSTANCES)
                    .map(|index| {
                        let uid = instance_uid(index);
                        RetrieveInstance {
                            sop_class_uid: SECONDARY_CAPTURE.into(),
                            data: InstanceData::Memory(common::instance_data_set(
                                SECONDARY_CAPTURE,
                                &uid,
                                STUDY,
                            )),
                            sop_instance_uid: uid,
                            transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
                        }
                    })
                    .collect(),
            ))
        })
    }

    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        (ae_title == DEST_AE).then(|| MoveDestination {
            ae_title: DEST_AE.into(),
            address: self.destination.to_string(),
        })
    }
}

/// A move server retrying as `retry`, its destination at `destination`, and an association to
/// it on Study Root MOVE.
async fn move_session(destination: SocketAddr, retry: MoveRetry) -> (TestServer, Association) {
    let scp = MoveScp::new(
        Instances { destination },
        vec![STUDY_ROOT_MOVE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    )
    .with_retry(retry);
    let server = start_named(Dispatcher::new().with(EchoScp::new()).with(scp), SCP_AE).await;
    let request = AssociationRequest::new(SCU_AE, SCP_AE).with_context(ProposedContext::new(
        STUDY_ROOT_MOVE,
        [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN],
    ));
    let association = associate(server.address, &request).await;
    (server, association)
}

/// Sends a STUDY level C-MOVE to `DEST`; its Message ID, context and responses.
async fn send_move(association: &Association) -> (u16, u8, Responses) {
    let identifier = Bytes::from(
        [
            element(0x0008, 0x0052, b"CS", b"STUDY "),
            element(0x0020, 0x000D, b"UI", &even(STUDY, 0)),
        ]
        .concat(),
    );
    let context = association.context_for(STUDY_ROOT_MOVE).expect("a context");
    let message_id = association.next_message_id();
    let rq = Message::CMoveRq(CMoveRq {
        message_id,
        affected_sop_class_uid: STUDY_ROOT_MOVE.into(),
        priority: Priority::Medium,
        move_destination: DEST_AE.into(),
        data_set_present: true,
    });
    let responses = within(
        "C-MOVE-RQ sent",
        association.request(context, rq, Some(identifier)),
    )
    .await
    .expect("C-MOVE-RQ sent");
    (message_id, context, responses)
}

/// Remaining, completed, failed, warning.
type Counts = (Option<u16>, Option<u16>, Option<u16>, Option<u16>);

fn counts(rsp: &CMoveRsp) -> Counts {
    (
        rsp.number_of_remaining_suboperations,
        rsp.number_of_completed_suboperations,
        rsp.number_of_failed_suboperations,
        rsp.number_of_warning_suboperations,
    )
}

/// The pending counts, the final response and the UIDs of its Failed SOP Instance UID List.
struct MoveRun {
    pendings: Vec<Counts>,
    last: CMoveRsp,
    failed: Vec<String>,
}

/// Reads the responses to a C-MOVE to the end.
async fn finish_run(mut responses: Responses) -> MoveRun {
    let mut pendings = Vec::new();
    loop {
        let response = within("C-MOVE-RSP", responses.next())
            .await
            .expect("a response before the end")
            .expect("a response, not an error");
        let Message::CMoveRsp(rsp) = response.message else {
            panic!("expected a C-MOVE-RSP, got {:?}", response.message);
        };
        if !response.is_final {
            assert_eq!(rsp.status, Status::PENDING);
            pendings.push(counts(&rsp));
            continue;
        }
        let failed = match response.data_set {
            None => Vec::new(),
            Some(data_set) => {
                let bytes = within("identifier", data_set.collect(1 << 20))
                    .await
                    .expect("identifier");
                let keys = dimsum_net::dataset::identifier::decode(
                    &bytes,
                    EXPLICIT_VR_LITTLE_ENDIAN,
                    &ScanLimits::default(),
                )
                .expect("a valid identifier");
                keys.element(tags::FAILED_SOP_INSTANCE_UID_LIST)
                    .expect("a Failed SOP Instance UID List")
                    .to_multi_str()
                    .expect("UIDs")
                    .iter()
                    .map(|uid| uid.trim_end_matches('\0').to_owned())
                    .collect()
            }
        };
        return MoveRun {
            pendings,
            last: rsp,
            failed,
        };
    }
}

/// Every pending response adds up to [`INSTANCES`] and none goes back.
fn assert_truthful(pendings: &[Counts]) {
    let mut done = 0;
    for &(remaining, completed, failed, warning) in pendings {
        let [remaining, completed, failed, warning] =
            [remaining, completed, failed, warning].map(|n| usize::from(n.expect("a count")));
        assert_eq!(
            remaining + completed + failed + warning,
            INSTANCES,
            "{pendings:?}"
        );
        assert!(completed + failed + warning > done, "{pendings:?}");
        done = completed + failed + warning;
    }
}

/// A loopback address nobody listens on (a port just freed).
fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// A destination storing into `root`, recording what it gets.
fn destination_dispatcher(
    root: &std::path::Path,
) -> (Dispatcher, Arc<Mutex<Vec<common::Arrival>>>) {
    let (storage, arrivals) = recording_storage(root);
    let store = StoreScp::new(
        storage,
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    (Dispatcher::new().with(EchoScp::new()).with(store), arrivals)
}

/// The UIDs of the instances that arrived at a destination, in order of arrival.
fn arrived_uids(arrivals: &Mutex<Vec<common::Arrival>>) -> Vec<String> {
    arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|arrival| arrival.sop_instance_uid.clone())
        .collect()
}

/// Checks that `uids` are the UIDs of every instance, each once: none missing, none twice.
fn assert_every_instance_once(mut uids: Vec<String>) {
    uids.sort();
    assert_eq!(uids, all_uids().into_iter().collect::<Vec<_>>());
}

/// Checks that the C-MOVE of `run` succeeded with every sub-operation completed, its pending
/// responses truthful.
fn assert_every_sub_operation_completed(run: &MoveRun) {
    assert_eq!(
        run.last.status,
        Status::SUCCESS,
        "{:?}",
        run.last.error_comment
    );
    assert_eq!(
        counts(&run.last),
        (None, Some(INSTANCES as u16), Some(0), Some(0))
    );
    assert_truthful(&run.pendings);
}

/// A move server retrying as `retry`, its destination at `destination`, an association to it
/// and the responses to a C-MOVE sent on it.
async fn start_move(
    destination: SocketAddr,
    retry: MoveRetry,
) -> (TestServer, Association, Responses) {
    let (server, association) = move_session(destination, retry).await;
    let (_, _, responses) = send_move(&association).await;
    (server, association, responses)
}

#[tokio::test]
async fn a_destination_that_refuses_connections_at_first_gets_every_instance_after_a_retry() {
    let address = free_address();
    let retry = MoveRetry {
        retries: 10,
        delay: Duration::from_millis(200),
    };
    let (server, association, responses) = start_move(address, retry).await;
    // The first attempts find nobody listening; then the destination starts on that port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let root = tempfile::tempdir().expect("tempdir");
    let (dispatcher, arrivals) = destination_dispatcher(root.path());
    let destination =
        start_server_on(&address.to_string(), named_config(DEST_AE), dispatcher).await;

    let run = finish_run(responses).await;
    assert_every_sub_operation_completed(&run);
    assert_every_instance_once(arrived_uids(&arrivals));
    release_and_stop(association, server).await;
    destination.stop().await;
}

#[tokio::test]
async fn a_destination_at_its_association_limit_is_retried_once_it_has_room() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dispatcher, arrivals) = destination_dispatcher(root.path());
    let mut config = named_config(DEST_AE);
    config.max_associations = 1;
    let destination = start_server_with(config, dispatcher).await;
    // The only association the destination takes, held until it has turned the move away.
    let occupant = associate(destination.address, &echo_request(16384)).await;

    let retry = MoveRetry {
        retries: 20,
        delay: Duration::from_millis(100),
    };
    let (server, association, responses) = start_move(destination.address, retry).await;
    within("a rejected sub-association", async {
        while destination.handle.statistics().rejected == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within("occupant released", occupant.release())
        .await
        .expect("released");

    let run = finish_run(responses).await;
    assert_every_sub_operation_completed(&run);
    assert_every_instance_once(arrived_uids(&arrivals));
    release_and_stop(association, server).await;
    let statistics = destination.stop().await;
    // The occupant and the move's association that got in; at least one turned away.
    assert_eq!(statistics.accepted, 2, "{statistics}");
    assert!(statistics.rejected >= 1, "{statistics}");
}

#[tokio::test]
async fn a_permanent_rejection_is_not_retried_and_fails_every_sub_operation_with_0xa702() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dispatcher, arrivals) = destination_dispatcher(root.path());
    let mut config = named_config(DEST_AE);
    // Our move server calls as QRSCP: rejected-permanent, calling AE title not recognised.
    config.allowed_calling_ae_titles = Some(vec!["SOMEONE".into()]);
    let destination = start_server_with(config, dispatcher).await;
    // A retry would wait far longer than the test lets the C-MOVE take.
    let retry = MoveRetry {
        retries: 3,
        delay: PATIENCE * 2,
    };
    let (server, association, responses) = start_move(destination.address, retry).await;
    let run = finish_run(responses).await;
    assert_eq!(run.last.status, Status::OUT_OF_RESOURCES_SUBOPERATIONS);
    assert!(
        run.last
            .error_comment
            .as_deref()
            .is_some_and(|comment| comment.contains(DEST_AE) && comment.contains("rejected")),
        "{:?}",
        run.last.error_comment
    );
    assert!(run.pendings.is_empty(), "{:?}", run.pendings);
    assert_eq!(
        counts(&run.last),
        (None, Some(0), Some(INSTANCES as u16), Some(0))
    );
    assert_eq!(run.failed.into_iter().collect::<BTreeSet<_>>(), all_uids());
    release_and_stop(association, server).await;
    let statistics = destination.stop().await;
    assert_eq!(
        (statistics.accepted, statistics.rejected),
        (0, 1),
        "{statistics}"
    );
    assert!(arrivals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_c_cancel_during_the_wait_before_a_retry_ends_the_move_at_once() {
    let retry = MoveRetry {
        retries: 3,
        delay: PATIENCE * 2,
    };
    let (server, association) = move_session(free_address(), retry).await;
    let (message_id, context, responses) = send_move(&association).await;
    // The first connection is refused at once; the C-MOVE then waits to retry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    within("C-CANCEL-RQ", association.cancel(context, message_id))
        .await
        .expect("C-CANCEL-RQ sent");
    // finish_run waits at most PATIENCE, half the delay.
    let run = finish_run(responses).await;
    assert_eq!(run.last.status, Status::CANCEL);
    assert_eq!(
        counts(&run.last),
        (Some(INSTANCES as u16), Some(0), Some(0), Some(0))
    );
    assert!(run.pendings.is_empty(), "{:?}", run.pendings);
    assert!(run.failed.is_empty());
    release_and_stop(association, server).await;
}

/// A storage SCP that aborts the first association on which it receives `poison`, before
/// storing it, and stores (records) every other instance.
struct AbortsOnce {
    poison: String,
    aborted: Arc<Mutex<bool>>,
    stored: Arc<Mutex<Vec<String>>>,
}

impl Scp for AbortsOnce {
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
            let uid = &rq.affected_sop_instance_uid;
            if *uid == self.poison && !std::mem::replace(&mut *self.aborted.lock().unwrap(), true) {
                context.association.abort().await;
                return Err(ScpFailure::processing("aborted by the test"));
            }
            self.stored.lock().unwrap().push(uid.clone());
            Ok(store_success(&rq))
        })
    }
}

/// A destination that aborts its first association on the third instance, performing one
/// C-STORE at a time (so that the one it aborts on is the only one unanswered), and the list
/// of what it stored.
async fn destination_aborting_once() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut config = named_config(DEST_AE);
    config.max_operations_performed = 1;
    let destination = start_server_with(
        config,
        Dispatcher::new().with(AbortsOnce {
            poison: instance_uid(3),
            aborted: Arc::default(),
            stored: Arc::clone(&stored),
        }),
    )
    .await;
    (destination, stored)
}

#[tokio::test]
async fn a_sub_association_that_aborts_is_opened_again_and_nothing_stored_is_sent_twice() {
    let (destination, stored) = destination_aborting_once().await;
    let retry = MoveRetry {
        retries: 1,
        delay: Duration::from_millis(50),
    };
    let (server, association, responses) = start_move(destination.address, retry).await;
    let run = finish_run(responses).await;
    assert_every_sub_operation_completed(&run);
    assert_every_instance_once(stored.lock().unwrap().clone());
    release_and_stop(association, server).await;
    let statistics = destination.stop().await;
    assert_eq!(
        (statistics.accepted, statistics.released, statistics.failed),
        (2, 1, 1),
        "{statistics}"
    );
}

#[tokio::test]
async fn without_retries_an_abort_fails_the_rest_with_0xb000() {
    let (destination, stored) = destination_aborting_once().await;
    let (server, association, responses) = start_move(destination.address, MoveRetry::NONE).await;
    let run = finish_run(responses).await;
    assert_eq!(
        run.last.status,
        Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES
    );
    let stored = stored.lock().unwrap().clone();
    let (_, completed, failed, _) = counts(&run.last);
    assert_eq!(completed, Some(stored.len() as u16));
    assert_eq!(failed, Some((INSTANCES - stored.len()) as u16));
    assert!(run.failed.contains(&instance_uid(3)), "{:?}", run.failed);
    let accounted: BTreeSet<String> = stored.into_iter().chain(run.failed).collect();
    assert_eq!(accounted, all_uids());
    release_and_stop(association, server).await;
    let statistics = destination.stop().await;
    assert_eq!(statistics.accepted, 1, "{statistics}");
}
