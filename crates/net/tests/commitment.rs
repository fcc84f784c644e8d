//! Storage Commitment Push Model (PS3.4 Annex J) between our SCU (`scu::commit`,
//! `scu::commit_via`) and our SCP (`scp::StorageCommitmentScp`) over real associations on
//! 127.0.0.1: every instance committed (event type 1), unknown instances and a class/instance
//! conflict (event type 2 with 0x0112 and 0x0119), the report on the same association, on a new
//! association to the requestor's incoming port (always, and as the fallback once the requestor
//! has released), no address for the requestor, malformed N-ACTION requests answered with their
//! failure status and no report, and a reporting SCP of the test's own that sends a report for
//! another transaction first and leaves an instance out.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use common::{SCP_AE, SCU_AE, TestServer, associate, config, start_named, whole_data_set, within};
use dimsum_net::dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::identifier;
use dimsum_net::dimse::message::{Message, NActionRq, NActionRsp, NEventReportRq, NEventReportRsp};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    COMMITMENT_FAILURES_EXIST, COMMITMENT_SUCCESSFUL, CommitmentHandler, CommitmentRequest,
    CommitmentResult, Dispatcher, FailedInstance, FailureReason, FinalResponse, KnownInstances,
    RequestContext, STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE, Scp,
    ScpFailure, SopReference, StorageCommitmentScp,
};
use dimsum_net::scu::{self, CommitError, CommitmentReceiver, CommitmentReport};
use dimsum_net::storage::BoxFuture;
use dimsum_net::ul::negotiation::{AssociationRequest, SupportedContext};
use dimsum_net::ul::uids::EXPLICIT_VR_LITTLE_ENDIAN;
use dimsum_net::{Association, IncomingRequest, ServerStatistics};

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// How long the SCU waits for a report in these tests.
const REPORT_WAIT: Duration = Duration::from_secs(10);

fn reference(index: u32) -> SopReference {
    SopReference::new(CT_IMAGE, format!("1.2.826.0.1.3680043.8.498.77.{index}"))
}

/// Instances 1..=count.
fn references(count: u32) -> Vec<SopReference> {
    (1..=count).map(reference).collect()
}

fn commitment_request() -> AssociationRequest {
    AssociationRequest::new(SCU_AE, SCP_AE).with_context(scu::commitment_context())
}

/// A Storage Commitment SCP over `scp` on a free port, named SCP_AE.
async fn start_scp<H: CommitmentHandler>(scp: StorageCommitmentScp<H>) -> TestServer {
    start_named(Dispatcher::new().with(scp), SCP_AE).await
}

/// A receiver for reports on a new association, named SCU_AE, on a free port.
async fn receiver() -> (CommitmentReceiver, SocketAddr) {
    let mut receiver_config = config();
    receiver_config.ae_title = SCU_AE.into();
    let receiver = CommitmentReceiver::bind("127.0.0.1:0", receiver_config)
        .await
        .expect("receiver binds");
    let address = receiver.local_addr().expect("receiver address");
    (receiver, address)
}

async fn commit_on_same(
    association: &Association,
    references: &[SopReference],
) -> CommitmentReport {
    within(
        "commitment",
        scu::commit(association, references, REPORT_WAIT),
    )
    .await
    .expect("a report")
}

async fn release(association: Association, server: TestServer) -> ServerStatistics {
    within("release", association.release())
        .await
        .expect("released");
    server.stop().await
}

#[tokio::test]
async fn every_instance_stored_is_reported_committed_on_the_same_association() {
    let asked = references(3);
    let server = start_scp(StorageCommitmentScp::new(
        asked.iter().cloned().collect::<KnownInstances>(),
    ))
    .await;
    let association = associate(server.address, &commitment_request()).await;

    let report = commit_on_same(&association, &asked).await;

    assert_eq!(report.event_type_id, COMMITMENT_SUCCESSFUL);
    assert_eq!(report.result.committed, asked);
    assert!(report.result.failed.is_empty());
    assert!(report.unreported.is_empty());
    assert!(!report.on_new_association);
    assert!(report.all_committed());
    assert!(report.result.transaction_uid.starts_with("2.25."));
    let statistics = release(association, server).await;
    assert_eq!((statistics.accepted, statistics.released), (1, 1));
}

#[tokio::test]
async fn unknown_instances_and_a_class_conflict_are_reported_as_failures() {
    let stored = KnownInstances::new();
    stored.insert(reference(1));
    stored.insert(reference(3));
    stored.insert(SopReference::new(MR_IMAGE, reference(4).sop_instance_uid));
    let server = start_scp(StorageCommitmentScp::new(stored)).await;
    let association = associate(server.address, &commitment_request()).await;

    let report = commit_on_same(&association, &references(4)).await;

    assert_eq!(report.event_type_id, COMMITMENT_FAILURES_EXIST);
    assert_eq!(report.result.committed, vec![reference(1), reference(3)]);
    assert_eq!(
        report.result.failed,
        vec![
            FailedInstance {
                reference: reference(2),
                reason: FailureReason::NO_SUCH_OBJECT_INSTANCE,
            },
            FailedInstance {
                reference: reference(4),
                reason: FailureReason::CLASS_INSTANCE_CONFLICT,
            },
        ]
    );
    assert!(report.unreported.is_empty());
    assert!(!report.all_committed());
    release(association, server).await;
}

#[tokio::test]
async fn a_closure_handler_decides_each_instance() {
    let server = start_scp(StorageCommitmentScp::new(|reference: &SopReference| {
        if reference.sop_instance_uid.ends_with(".2") {
            Err(FailureReason::RESOURCE_LIMITATION)
        } else {
            Ok(())
        }
    }))
    .await;
    let association = associate(server.address, &commitment_request()).await;

    let report = commit_on_same(&association, &references(2)).await;

    assert_eq!(report.result.committed, vec![reference(1)]);
    assert_eq!(report.result.failed.len(), 1);
    assert_eq!(report.result.failed[0].reason, FailureReason(0x0213));
    release(association, server).await;
}

#[tokio::test]
async fn the_report_can_always_go_on_a_new_association_to_the_requestor() {
    let (receiver, receiver_address) = receiver().await;
    let stored: KnownInstances = [reference(1)].into_iter().collect();
    let server = start_scp(
        StorageCommitmentScp::new(stored)
            .with_peer(SCU_AE, receiver_address.to_string())
            .with_ae_title("REPORTER")
            .always_report_on_new_association(true),
    )
    .await;
    let association = associate(server.address, &commitment_request()).await;

    let (report, receiver_statistics) = within(
        "commitment via the receiver",
        scu::commit_via(&association, receiver, &references(2), REPORT_WAIT),
    )
    .await
    .expect("a report");

    assert!(report.on_new_association);
    assert_eq!(report.event_type_id, COMMITMENT_FAILURES_EXIST);
    assert_eq!(report.result.committed, vec![reference(1)]);
    assert_eq!(report.result.failed[0].reference, reference(2));
    assert_eq!(
        report.result.failed[0].reason,
        FailureReason::NO_SUCH_OBJECT_INSTANCE
    );
    // The reporting association was accepted, and released once the report was answered.
    assert_eq!(receiver_statistics.accepted, 1);
    assert_eq!(receiver_statistics.released, 1);
    release(association, server).await;
}

/// A handler that takes its time, so that the requestor has released before the report.
struct Slow(KnownInstances);

impl CommitmentHandler for Slow {
    fn commit<'a>(
        &'a self,
        request: &'a CommitmentRequest,
    ) -> BoxFuture<'a, Vec<Result<(), FailureReason>>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.commit(request).await
        })
    }
}

/// Records the N-EVENT-REPORT-RQs it answers (with 0x0000): a requestor's own receiver.
#[derive(Clone, Default)]
struct RecordingReceiver {
    reports: Arc<Mutex<Vec<(NEventReportRq, CommitmentResult, String)>>>,
}

impl Scp for RecordingReceiver {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        vec![
            SupportedContext::new(STORAGE_COMMITMENT_PUSH_MODEL, [EXPLICIT_VR_LITTLE_ENDIAN])
                .with_roles(false, true),
        ]
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let Message::NEventReportRq(rq) = request.message.clone() else {
                return Err(ScpFailure::unrecognized("N-EVENT-REPORT"));
            };
            let data = whole_data_set(request, "event information").await?;
            let result =
                CommitmentResult::decode(&data, context.transfer_syntax()).expect("a result");
            self.reports.lock().unwrap().push((
                rq.clone(),
                result,
                context.info().peer_ae_title().to_owned(),
            ));
            Ok(
                Message::NEventReportRsp(NEventReportRsp::new(rq.message_id, Status::SUCCESS))
                    .into(),
            )
        })
    }
}

/// Sends an N-ACTION-RQ with `action_information` (or none) and returns its response.
async fn send_action(
    association: &Association,
    rq: NActionRq,
    action_information: Option<Vec<u8>>,
) -> NActionRsp {
    let context = association
        .context_for(STORAGE_COMMITMENT_PUSH_MODEL)
        .expect("commitment context");
    let rq = NActionRq {
        data_set_present: action_information.is_some(),
        ..rq
    };
    let response = within(
        "N-ACTION-RSP",
        association
            .request(
                context,
                Message::NActionRq(rq),
                action_information.map(Bytes::from),
            )
            .await
            .expect("sent")
            .last(),
    )
    .await
    .expect("answered");
    match response.message {
        Message::NActionRsp(rsp) => rsp,
        other => panic!("expected an N-ACTION-RSP, got {other:?}"),
    }
}

fn action(message_id: u16) -> NActionRq {
    NActionRq {
        message_id,
        requested_sop_class_uid: STORAGE_COMMITMENT_PUSH_MODEL.into(),
        requested_sop_instance_uid: STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE.into(),
        action_type_id: 1,
        data_set_present: true,
    }
}

#[tokio::test]
async fn once_the_requestor_has_released_the_report_goes_on_a_new_association() {
    let recorder = RecordingReceiver::default();
    let mut receiver_config = config();
    receiver_config.ae_title = SCU_AE.into();
    let receiver =
        common::start_server_with(receiver_config, Dispatcher::new().with(recorder.clone())).await;
    let stored: KnownInstances = references(2).into_iter().collect();
    let server = start_scp(
        StorageCommitmentScp::new(Slow(stored)).with_peer(SCU_AE, receiver.address.to_string()),
    )
    .await;
    let association = associate(server.address, &commitment_request()).await;
    let request = CommitmentRequest::new(references(2));
    let data = request.encode(EXPLICIT_VR_LITTLE_ENDIAN).expect("encoded");

    let rsp = send_action(&association, action(7), Some(data)).await;
    assert_eq!(rsp.status, Status::SUCCESS);
    assert_eq!(rsp.action_type_id, Some(1));
    assert_eq!(
        rsp.affected_sop_instance_uid.as_deref(),
        Some(STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE)
    );
    within("release", association.release())
        .await
        .expect("released");

    let delivered = common::within("the report on a new association", async {
        loop {
            if let Some(report) = recorder.reports.lock().unwrap().first().cloned() {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (rq, result, calling_ae) = delivered;
    assert_eq!(rq.event_type_id, COMMITMENT_SUCCESSFUL);
    assert_eq!(
        rq.affected_sop_instance_uid,
        STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE
    );
    assert_eq!(result.transaction_uid, request.transaction_uid);
    assert_eq!(result.committed, references(2));
    // The SCP calls with the AE title the requestor called it by.
    assert_eq!(calling_ae, SCP_AE);
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test]
async fn with_no_address_for_the_requestor_a_report_that_cannot_go_on_the_same_association_is_lost()
{
    let stored: KnownInstances = references(1).into_iter().collect();
    // The SCP reports only on new associations, and knows no address for SCU_AE.
    let server = start_scp(
        StorageCommitmentScp::new(stored)
            .with_peer("SOMEONE_ELSE", "127.0.0.1:9")
            .always_report_on_new_association(true),
    )
    .await;
    let association = associate(server.address, &commitment_request()).await;

    let outcome = scu::commit(&association, &references(1), Duration::from_millis(500)).await;

    match outcome {
        Err(CommitError::NoReport {
            transaction_uid, ..
        }) => assert!(transaction_uid.starts_with("2.25.")),
        other => panic!("expected no report, got {other:?}"),
    }
    release(association, server).await;
}

/// Encodes a data set in Explicit VR Little Endian.
fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    identifier::encode(
        &InMemDicomObject::from_element_iter(elements),
        EXPLICIT_VR_LITTLE_ENDIAN,
    )
    .expect("encoded")
}

fn uid(tag: dimsum_net::dataset::dicom_core::Tag, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(value))
}

fn referenced_sop_sequence(items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tags::REFERENCED_SOP_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(items),
    )
}

#[tokio::test]
async fn a_malformed_n_action_gets_a_failure_status_and_no_report() {
    let stored: KnownInstances = references(2).into_iter().collect();
    let server = start_scp(StorageCommitmentScp::new(stored).with_max_references(2)).await;
    let association = associate(server.address, &commitment_request()).await;
    let good = || {
        CommitmentRequest::new(references(1))
            .encode(EXPLICIT_VR_LITTLE_ENDIAN)
            .expect("encoded")
    };
    let item = |class: Option<&str>, instance: Option<&str>| {
        let mut elements = Vec::new();
        if let Some(class) = class {
            elements.push(uid(tags::REFERENCED_SOP_CLASS_UID, class));
        }
        if let Some(instance) = instance {
            elements.push(uid(tags::REFERENCED_SOP_INSTANCE_UID, instance));
        }
        InMemDicomObject::from_element_iter(elements)
    };
    let instance = reference(1).sop_instance_uid;
    let cases: Vec<(&str, NActionRq, Option<Vec<u8>>, Status)> = vec![
        (
            "no Transaction UID",
            action(1),
            Some(encode(vec![referenced_sop_sequence(vec![item(
                Some(CT_IMAGE),
                Some(&instance),
            )])])),
            Status::INVALID_ARGUMENT_VALUE,
        ),
        (
            "a Transaction UID that is not a UID",
            action(2),
            Some(encode(vec![
                uid(tags::TRANSACTION_UID, "not.a.uid"),
                referenced_sop_sequence(vec![item(Some(CT_IMAGE), Some(&instance))]),
            ])),
            Status::INVALID_ARGUMENT_VALUE,
        ),
        (
            "no Referenced SOP Sequence",
            action(3),
            Some(encode(vec![uid(tags::TRANSACTION_UID, "1.2.3.4.5")])),
            Status::INVALID_ARGUMENT_VALUE,
        ),
        (
            "an item without its SOP instance",
            action(4),
            Some(encode(vec![
                uid(tags::TRANSACTION_UID, "1.2.3.4.5"),
                referenced_sop_sequence(vec![
                    item(Some(CT_IMAGE), Some(&instance)),
                    item(Some(CT_IMAGE), None),
                ]),
            ])),
            Status::INVALID_ARGUMENT_VALUE,
        ),
        (
            "a data set that cannot be read",
            action(5),
            Some(vec![0x08, 0x00, 0x95, 0x11, b'U', b'I', 0xFF, 0x7F, 1, 2]),
            Status::PROCESSING_FAILURE,
        ),
        (
            "no Action Information",
            action(6),
            None,
            Status::INVALID_ARGUMENT_VALUE,
        ),
        (
            "another Action Type",
            NActionRq {
                action_type_id: 2,
                ..action(7)
            },
            Some(good()),
            Status::NO_SUCH_ACTION,
        ),
        (
            "another SOP instance",
            NActionRq {
                requested_sop_instance_uid: "1.2.840.10008.1.20.1.2".into(),
                ..action(8)
            },
            Some(good()),
            Status::NO_SUCH_SOP_INSTANCE,
        ),
        (
            "more instances than accepted",
            action(9),
            Some(
                CommitmentRequest::new(references(3))
                    .encode(EXPLICIT_VR_LITTLE_ENDIAN)
                    .expect("encoded"),
            ),
            Status::RESOURCE_LIMITATION,
        ),
    ];
    for (what, rq, data, expected) in cases {
        let rsp = send_action(&association, rq, data).await;
        assert_eq!(rsp.status, expected, "{what}: {:?}", rsp.error_comment);
        assert!(
            rsp.error_comment.as_deref().is_some_and(|c| !c.is_empty()),
            "{what}: an error comment"
        );
    }
    // None of them is reported on.
    let report = tokio::time::timeout(Duration::from_millis(300), association.next_request()).await;
    assert!(
        report.is_err(),
        "no N-EVENT-REPORT after a refused N-ACTION: {report:?}"
    );
    // The association still serves a good request.
    let report = commit_on_same(&association, &references(1)).await;
    assert_eq!(report.event_type_id, COMMITMENT_SUCCESSFUL);
    release(association, server).await;
}

#[tokio::test]
async fn a_refused_request_is_an_error_of_the_scu() {
    let server =
        start_scp(StorageCommitmentScp::new(KnownInstances::new()).with_max_references(1)).await;
    let association = associate(server.address, &commitment_request()).await;

    let outcome = within(
        "commitment",
        scu::commit(&association, &references(2), REPORT_WAIT),
    )
    .await;

    match outcome {
        Err(CommitError::Refused { status, comment }) => {
            assert_eq!(status, Status::RESOURCE_LIMITATION);
            assert!(comment.is_some_and(|c| c.contains("2 instances")));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        scu::commit(&association, &[], REPORT_WAIT).await,
        Err(CommitError::Empty)
    ));
    release(association, server).await;
}

/// A reporting SCP of the test's own: it answers the N-ACTION, then reports a transaction
/// nobody asked for, then the right one without its last instance; it records the statuses its
/// reports got.
#[derive(Clone, Default)]
struct OddReporter {
    answers: Arc<Mutex<Vec<Status>>>,
}

impl Scp for OddReporter {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        vec![SupportedContext::new(
            STORAGE_COMMITMENT_PUSH_MODEL,
            [EXPLICIT_VR_LITTLE_ENDIAN],
        )]
    }

    fn perform<'a>(
        &'a self,
        request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let Message::NActionRq(rq) = request.message.clone() else {
                return Err(ScpFailure::unrecognized("N-ACTION"));
            };
            let data = whole_data_set(request, "action information").await?;
            let asked = CommitmentRequest::decode(&data, context.transfer_syntax(), 100)
                .expect("a request");
            let association = context.association.clone();
            let presentation_context_id = context.presentation_context_id;
            let answers = Arc::clone(&self.answers);
            context.after_response(async move {
                let mut committed = asked.references.clone();
                committed.pop();
                let reports = [
                    CommitmentResult {
                        transaction_uid: "1.2.3.999".into(),
                        committed: asked.references.clone(),
                        failed: Vec::new(),
                    },
                    CommitmentResult {
                        transaction_uid: asked.transaction_uid.clone(),
                        committed,
                        failed: Vec::new(),
                    },
                ];
                for result in reports {
                    let event = Message::NEventReportRq(NEventReportRq {
                        message_id: association.next_message_id(),
                        affected_sop_class_uid: STORAGE_COMMITMENT_PUSH_MODEL.into(),
                        affected_sop_instance_uid: STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE.into(),
                        event_type_id: result.event_type_id(),
                        data_set_present: true,
                    });
                    let data = result.encode(EXPLICIT_VR_LITTLE_ENDIAN).expect("encoded");
                    let response = association
                        .request(presentation_context_id, event, Some(Bytes::from(data)))
                        .await
                        .expect("sent")
                        .last()
                        .await
                        .expect("answered");
                    answers
                        .lock()
                        .unwrap()
                        .push(response.message.status().expect("a status"));
                }
            });
            Ok(Message::NActionRsp(NActionRsp::new(rq.message_id, Status::SUCCESS)).into())
        })
    }
}

#[tokio::test]
async fn the_scu_refuses_reports_for_other_transactions_and_names_the_instances_left_out() {
    let reporter = OddReporter::default();
    let server = start_named(Dispatcher::new().with(reporter.clone()), SCP_AE).await;
    let association = associate(server.address, &commitment_request()).await;

    let report = commit_on_same(&association, &references(3)).await;

    assert_eq!(report.event_type_id, COMMITMENT_SUCCESSFUL);
    assert_eq!(report.result.committed, references(2));
    assert_eq!(report.unreported, vec![reference(3)]);
    assert!(!report.all_committed());
    within("both answers", async {
        while reporter.answers.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        *reporter.answers.lock().unwrap(),
        vec![Status::INVALID_ARGUMENT_VALUE, Status::SUCCESS]
    );
    release(association, server).await;
}
