//! The Query/Retrieve SCUs (`scu::find`, `scu::get`, `scu::move_`) over real associations on
//! 127.0.0.1, against our own SCP framework with small in-test handlers: matches collected and
//! streamed, C-CANCEL, 0xFF01, failures with their comments, undecodable matches, an aborting
//! and a silent SCP, 10,000 matches under backpressure; C-GET into a FileStorage (bytes
//! compared, progress counting down, an unproposed SOP class counted as failed and named);
//! C-MOVE to a separate store server (Move Originator checked) and to our own incoming port.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};

use common::{
    Arrival, CT_IMAGE, DEST_AE, FAILURE_COMMENT, SCP_AE, SCU_AE, SECONDARY_CAPTURE, TestServer,
    associate, associate_with, client_timeouts, config, echo_release_and_stop, files_under,
    instance_data_set, recording_storage, release_and_stop, start_named, within,
};
use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::identifier;
use dimsum_net::dataset::part10;
use dimsum_net::dataset::query_model::{QueryModel, QueryService};
use dimsum_net::dimse::message::{CFindRsp, Message};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    Dispatcher, EchoScp, FinalResponse, FindHandler, FindMatch, FindScp, GetScp, InstanceData,
    MatchStream, MoveDestination, MoveScp, Query, RequestContext, Retrieval, RetrieveHandler,
    RetrieveInstance, Scp, ScpFailure, StoreScp,
};
use dimsum_net::scu::{
    self, FindOutcome, FindStream, MoveReceiver, QueryError, QueryRequest, RetrieveOutcome,
    RetrieveProgress, find::FindEnd,
};
use dimsum_net::storage::{BoxFuture, FileStorage};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext, SupportedContext};
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};
use dimsum_net::{Association, Error, IncomingRequest, ServerConfig, Timeouts};

const STUDY: &str = "1.2.3.4.700";

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// An association request with the context of `service` for every model that has one, and
/// Verification.
fn qr_request(service: QueryService) -> AssociationRequest {
    QueryModel::ALL
        .into_iter()
        .filter_map(|model| scu::query_context(model, service).ok())
        .fold(
            AssociationRequest::new(SCU_AE, SCP_AE),
            |request, context| request.with_context(context),
        )
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
}

/// A text value of an identifier, without padding.
fn text(identifier: &InMemDicomObject, tag: dimsum_net::dataset::dicom_core::Tag) -> String {
    identifier
        .element(tag)
        .unwrap_or_else(|_| panic!("{tag} missing"))
        .to_str()
        .expect("text")
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// A STUDY level query for the studies of `patient_id` (the test handlers choose their
/// behaviour by it).
fn study_query(model: QueryModel, patient_id: &str) -> QueryRequest {
    let mut keys = vec![
        DataElement::new(tags::PATIENT_ID, VR::LO, patient_id),
        DataElement::new(tags::PATIENT_NAME, VR::PN, ""),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, ""),
    ];
    if model != QueryModel::ModalityWorklist {
        keys.push(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            "STUDY",
        ));
    }
    QueryRequest::new(model, InMemDicomObject::from_element_iter(keys))
}

fn study_uid(index: usize) -> String {
    format!("{STUDY}.{index}")
}

fn patient_name(index: usize) -> String {
    format!("DOE^PATIENT{index}")
}

/// Match `index` for `query`, encoded as the query was.
fn study_match(query: &Query, index: usize, extra: Option<&str>) -> Bytes {
    let mut elements = vec![
        DataElement::new(tags::PATIENT_ID, VR::LO, patient_id(query)),
        DataElement::new(tags::PATIENT_NAME, VR::PN, patient_name(index)),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, study_uid(index)),
    ];
    if let Some(extra) = extra {
        elements.push(DataElement::new(tags::PATIENT_COMMENTS, VR::LT, extra));
    }
    if query.keys.element(tags::QUERY_RETRIEVE_LEVEL).is_ok() {
        elements.push(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            "STUDY",
        ));
    }
    let encoded = identifier::encode(
        &InMemDicomObject::from_element_iter(elements),
        &query.transfer_syntax_uid,
    )
    .expect("encodable match");
    Bytes::from(encoded)
}

fn patient_id(query: &Query) -> String {
    text(&query.keys, tags::PATIENT_ID)
}

// ------------------------------------------------------------------------------------------
// C-FIND
// ------------------------------------------------------------------------------------------

const MANY: usize = 5;
const SLOW: usize = 100;
const HUGE: usize = 10_000;

/// Matches by the query's Patient ID: "MANY" → 5 matches, "SLOW" → 100 matches 20 ms apart,
/// "WARN" → 2 matches with 0xFF01, "FAIL" → 0xA700 with a comment, "BROKEN" → 3 matches, the
/// second not a data set, "HUGE" → 10,000 matches of some 4 KiB each; anything else → none.
#[derive(Default)]
struct TestFinder {
    /// The SOP class of each query.
    sop_classes: Arc<Mutex<Vec<String>>>,
    /// Matches produced so far (SLOW and HUGE).
    produced: Arc<AtomicUsize>,
}

impl FindHandler for TestFinder {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        self.sop_classes
            .lock()
            .unwrap()
            .push(query.sop_class_uid.clone());
        let produced = Arc::clone(&self.produced);
        Box::pin(async move {
            let matches: MatchStream = match patient_id(&query).as_str() {
                "MANY" => Box::pin(stream::iter(
                    (0..MANY).map(move |i| Ok(FindMatch::new(study_match(&query, i, None)))),
                )),
                "SLOW" => Box::pin(stream::iter(0..SLOW).then(move |i| {
                    let query = query.clone();
                    let produced = Arc::clone(&produced);
                    async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        produced.fetch_add(1, Ordering::SeqCst);
                        Ok(FindMatch::new(study_match(&query, i, None)))
                    }
                })),
                "WARN" => Box::pin(stream::iter((0..2).map(move |i| {
                    Ok(FindMatch {
                        identifier: study_match(&query, i, None),
                        status: Status::PENDING_WARNING,
                    })
                }))),
                "FAIL" => {
                    return Err(ScpFailure::new(Status::OUT_OF_RESOURCES, FAILURE_COMMENT));
                }
                "BROKEN" => {
                    // (0010,0010) PN claiming 0xFFF0 bytes where 4 remain.
                    let lying = Bytes::from_static(&[
                        0x10, 0x00, 0x10, 0x00, b'P', b'N', 0xF0, 0xFF, b'D', b'O', b'E', b' ',
                    ]);
                    Box::pin(stream::iter(vec![
                        Ok(FindMatch::new(study_match(&query, 0, None))),
                        Ok(FindMatch::new(lying)),
                        Ok(FindMatch::new(study_match(&query, 2, None))),
                    ]))
                }
                "HUGE" => {
                    let padding = "X".repeat(4096);
                    Box::pin(stream::iter((0..HUGE).map(move |i| {
                        produced.fetch_add(1, Ordering::SeqCst);
                        Ok(FindMatch::new(study_match(&query, i, Some(&padding))))
                    })))
                }
                _ => Box::pin(stream::empty()),
            };
            Ok(matches)
        })
    }
}

/// A find server for every FIND SOP class (the four models).
async fn start_find_server(finder: TestFinder) -> TestServer {
    let find = FindScp::new(
        finder,
        QueryModel::sop_classes(QueryService::Find)
            .into_iter()
            .map(String::from)
            .collect(),
        vec![
            EXPLICIT_VR_LITTLE_ENDIAN.into(),
            IMPLICIT_VR_LITTLE_ENDIAN.into(),
        ],
    );
    start_named(Dispatcher::new().with(EchoScp::new()).with(find), SCP_AE).await
}

/// A find server with `finder`, and an association to it with every FIND context.
async fn find_session(finder: TestFinder) -> (TestServer, Association) {
    let server = start_find_server(finder).await;
    let association = associate(server.address, &qr_request(QueryService::Find)).await;
    (server, association)
}

/// `scu::find` of the studies of `patient_id` in `model`, within PATIENCE.
async fn find_studies(
    association: &Association,
    model: QueryModel,
    patient_id: &str,
) -> Result<FindOutcome, QueryError> {
    within(
        "find",
        scu::find(association, &study_query(model, patient_id)),
    )
    .await
}

/// The streamed form of `query`, its C-FIND-RQ sent.
async fn start_stream(association: &Association, query: &QueryRequest) -> FindStream {
    within("start", FindStream::start(association, query))
        .await
        .expect("C-FIND-RQ sent")
}

/// The Study Instance UID of the stream's next match, which must be a valid one.
async fn next_study_uid(stream: &mut FindStream) -> String {
    let found = within("next match", stream.next())
        .await
        .expect("a valid match")
        .expect("a match, not the end");
    text(&found.identifier, tags::STUDY_INSTANCE_UID)
}

#[tokio::test]
async fn find_collects_every_match_with_its_content_on_every_model() {
    let finder = TestFinder::default();
    let sop_classes = Arc::clone(&finder.sop_classes);
    let (server, association) = find_session(finder).await;
    for model in QueryModel::ALL {
        let outcome = find_studies(&association, model, "MANY")
            .await
            .expect("find");
        assert_eq!(outcome.status, Status::SUCCESS, "{model:?}");
        assert_eq!(outcome.error_comment, None);
        assert_eq!(outcome.matches.len(), MANY, "{model:?}");
        for (index, found) in outcome.matches.iter().enumerate() {
            assert_eq!(found.status, Status::PENDING);
            assert!(!found.optional_keys_unsupported());
            assert_eq!(text(&found.identifier, tags::PATIENT_ID), "MANY");
            assert_eq!(
                text(&found.identifier, tags::PATIENT_NAME),
                patient_name(index)
            );
            assert_eq!(
                text(&found.identifier, tags::STUDY_INSTANCE_UID),
                study_uid(index)
            );
        }
    }
    // Each query went out on its model's FIND SOP class.
    let expected: Vec<String> = QueryModel::ALL
        .into_iter()
        .map(|model| model.sop_class(QueryService::Find).unwrap().to_owned())
        .collect();
    assert_eq!(*sop_classes.lock().unwrap(), expected);
    // A query with no match.
    let outcome = find_studies(&association, QueryModel::StudyRoot, "NONE")
        .await
        .expect("find");
    assert_eq!(outcome.status, Status::SUCCESS);
    assert!(outcome.matches.is_empty());
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn the_streamed_form_yields_the_matches_one_by_one_as_they_come() {
    let finder = TestFinder::default();
    let produced = Arc::clone(&finder.produced);
    let (server, association) = find_session(finder).await;
    let query = study_query(QueryModel::PatientRoot, "SLOW");
    let mut stream = start_stream(&association, &query).await;
    assert_eq!(next_study_uid(&mut stream).await, study_uid(0));
    let so_far = produced.load(Ordering::SeqCst);
    assert!(
        so_far < SLOW,
        "the first match came only after {so_far} of {SLOW} were produced"
    );
    assert!(stream.end().is_none());
    let mut index = 1;
    while let Some(found) = within("next match", stream.next()).await.expect("a match") {
        assert_eq!(
            text(&found.identifier, tags::STUDY_INSTANCE_UID),
            study_uid(index)
        );
        index += 1;
    }
    assert_eq!(index, SLOW);
    let end = stream.end().cloned().expect("the final response");
    assert_eq!(
        end,
        FindEnd {
            status: Status::SUCCESS,
            error_comment: None,
            matches: SLOW
        }
    );
    // After the end, the stream stays ended.
    assert!(stream.next().await.expect("no error").is_none());
    assert_eq!(stream.finish().await.expect("final"), end);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn cancel_after_three_matches_ends_with_status_cancel_and_few_more_matches() {
    let (server, association) = find_session(TestFinder::default()).await;
    let query = study_query(QueryModel::StudyRoot, "SLOW");
    let mut stream = start_stream(&association, &query).await;
    for index in 0..3 {
        assert_eq!(next_study_uid(&mut stream).await, study_uid(index));
    }
    within("cancel", stream.cancel())
        .await
        .expect("C-CANCEL-RQ sent");
    assert!(stream.is_cancelled());
    // A second cancel is a no-op.
    within("cancel", stream.cancel()).await.expect("no-op");
    let mut after = 0;
    while within("next", stream.next())
        .await
        .expect("a match or the end")
        .is_some()
    {
        after += 1;
    }
    assert!(after <= 3, "{after} matches after the C-CANCEL-RQ");
    let end = stream.end().cloned().expect("the final response");
    assert_eq!(end.status, Status::CANCEL);
    assert_eq!(end.matches, 3 + after);
    // Cancelling after the end does nothing, and the association goes on.
    within("cancel", stream.cancel()).await.expect("no-op");
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_pending_warning_0xff01_is_reported_with_its_match() {
    let (server, association) = find_session(TestFinder::default()).await;
    let outcome = find_studies(&association, QueryModel::StudyRoot, "WARN")
        .await
        .expect("find");
    assert_eq!(outcome.status, Status::SUCCESS);
    assert_eq!(outcome.matches.len(), 2);
    for (index, found) in outcome.matches.iter().enumerate() {
        assert_eq!(found.status, Status::PENDING_WARNING);
        assert!(found.optional_keys_unsupported());
        assert_eq!(
            text(&found.identifier, tags::STUDY_INSTANCE_UID),
            study_uid(index)
        );
    }
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_failing_scp_gives_its_status_and_error_comment() {
    let (server, association) = find_session(TestFinder::default()).await;
    let outcome = find_studies(&association, QueryModel::PatientRoot, "FAIL")
        .await
        .expect("a final response, not an error");
    assert_eq!(outcome.status, Status::OUT_OF_RESOURCES);
    assert_eq!(outcome.error_comment.as_deref(), Some(FAILURE_COMMENT));
    assert!(outcome.matches.is_empty());
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn an_undecodable_match_is_an_error_that_names_it() {
    let (server, association) = find_session(TestFinder::default()).await;
    let query = study_query(QueryModel::StudyRoot, "BROKEN");
    let error = within("find", scu::find(&association, &query))
        .await
        .expect_err("the second match is not a data set");
    let QueryError::InvalidMatch {
        index, ref reason, ..
    } = error
    else {
        panic!("expected InvalidMatch, got {error}");
    };
    assert_eq!(index, 2);
    assert!(!reason.is_empty());
    assert!(error.to_string().contains("match 2"), "{error}");
    assert!(!error.ends_association());

    // The streamed form reports it and goes on with the next match.
    let mut stream = start_stream(&association, &query).await;
    assert_eq!(next_study_uid(&mut stream).await, study_uid(0));
    let second = within("second", stream.next()).await;
    assert!(
        matches!(second, Err(QueryError::InvalidMatch { index: 2, .. })),
        "{second:?}"
    );
    assert_eq!(next_study_uid(&mut stream).await, study_uid(2));
    let end = within("end", stream.finish()).await.expect("final");
    assert_eq!((end.status, end.matches), (Status::SUCCESS, 3));
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn ten_thousand_matches_stream_under_backpressure_and_all_arrive() {
    let finder = TestFinder::default();
    let produced = Arc::clone(&finder.produced);
    let (server, association) = find_session(finder).await;
    let query = study_query(QueryModel::StudyRoot, "HUGE");
    let mut stream = start_stream(&association, &query).await;
    assert_eq!(next_study_uid(&mut stream).await, study_uid(0));
    // Nothing takes the matches for a while: the association stops reading once a few MB wait
    // (the socket buffers hold a few more), TCP holds the SCP back, and it cannot produce most
    // of the 40 MB.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held_back = produced.load(Ordering::SeqCst);
    assert!(
        held_back < HUGE * 3 / 4,
        "the SCP produced {held_back} of {HUGE} matches (some 4 KiB each) while none was taken"
    );
    let mut count = 1;
    let deadline = Duration::from_secs(120);
    tokio::time::timeout(deadline, async {
        while let Some(found) = stream.next().await.expect("a valid match") {
            if count % 1000 == 0 {
                assert_eq!(
                    text(&found.identifier, tags::STUDY_INSTANCE_UID),
                    study_uid(count)
                );
            }
            count += 1;
        }
    })
    .await
    .expect("every match within 120 s");
    assert_eq!(count, HUGE);
    let end = stream.end().cloned().expect("final");
    assert_eq!((end.status, end.matches), (Status::SUCCESS, HUGE));
    release_and_stop(association, server).await;
}

/// A C-FIND SCP that misbehaves by Patient ID: "ABORT" sends one match then aborts the
/// association; "SILENT" never answers.
struct Misbehaving;

impl Scp for Misbehaving {
    fn supported_contexts(&self) -> Vec<SupportedContext> {
        vec![SupportedContext::new(
            QueryModel::StudyRoot.sop_class(QueryService::Find).unwrap(),
            [EXPLICIT_VR_LITTLE_ENDIAN],
        )]
    }

    fn perform<'a>(
        &'a self,
        mut request: IncomingRequest,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<FinalResponse, ScpFailure>> {
        Box::pin(async move {
            let Message::CFindRq(rq) = request.message.clone() else {
                return Err(ScpFailure::unrecognized("C-FIND"));
            };
            let data = request
                .data_set
                .take()
                .expect("identifier")
                .collect(1 << 20)
                .await
                .expect("identifier");
            let keys = identifier::decode(&data, context.transfer_syntax(), &Default::default())
                .expect("valid identifier");
            if text(&keys, tags::PATIENT_ID) == "ABORT" {
                let pending = CFindRsp {
                    data_set_present: true,
                    ..CFindRsp::new(rq.message_id, Status::PENDING)
                };
                let found = InMemDicomObject::from_element_iter([DataElement::new(
                    tags::STUDY_INSTANCE_UID,
                    VR::UI,
                    study_uid(0),
                )]);
                let found = identifier::encode(&found, context.transfer_syntax()).unwrap();
                context
                    .send_pending(pending.into(), Some(found.into()))
                    .await
                    .expect("pending sent");
                context.association.abort().await;
                return Err(ScpFailure::processing("aborted"));
            }
            std::future::pending::<()>().await;
            Err(ScpFailure::processing("unreachable"))
        })
    }
}

#[tokio::test]
async fn an_association_aborted_mid_find_is_a_typed_error_after_the_matches_so_far() {
    let server = start_named(Dispatcher::new().with(Misbehaving), SCP_AE).await;
    let association = associate(server.address, &qr_request(QueryService::Find)).await;
    let query = study_query(QueryModel::StudyRoot, "ABORT");
    let mut stream = start_stream(&association, &query).await;
    assert_eq!(next_study_uid(&mut stream).await, study_uid(0));
    let error = within("abort", stream.next())
        .await
        .expect_err("the association was aborted");
    assert!(
        matches!(error, QueryError::Network(Error::Aborted { .. })),
        "{error}"
    );
    assert!(error.ends_association());
    // The collecting form says the same.
    let error = within("find", scu::find(&association, &query))
        .await
        .expect_err("the association is gone");
    assert!(error.ends_association(), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_scp_gives_a_dimse_timeout() {
    let server = start_named(Dispatcher::new().with(Misbehaving), SCP_AE).await;
    let timeouts = Timeouts {
        dimse: Some(Duration::from_secs(1)),
        ..client_timeouts()
    };
    let association =
        associate_with(server.address, &qr_request(QueryService::Find), timeouts).await;
    let error = find_studies(&association, QueryModel::StudyRoot, "SILENT")
        .await
        .expect_err("no answer");
    assert!(
        matches!(error, QueryError::Network(Error::Timeout { .. })),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_model_without_the_service_or_an_unnegotiated_context_is_refused_before_sending() {
    let server = start_find_server(TestFinder::default()).await;
    let request = AssociationRequest::new(SCU_AE, SCP_AE)
        .with_context(scu::query_context(QueryModel::StudyRoot, QueryService::Find).unwrap());
    let association = associate(server.address, &request).await;
    let error = find_studies(&association, QueryModel::PatientRoot, "MANY")
        .await
        .expect_err("Patient Root was not proposed");
    assert!(
        matches!(error, QueryError::Network(Error::NoPresentationContext(_))),
        "{error}"
    );
    let root = tempfile::tempdir().expect("tempdir");
    let error = get_into(
        &association,
        QueryModel::ModalityWorklist,
        "MANY",
        root.path(),
    )
    .await
    .expect_err("the worklist has no C-GET");
    assert!(
        matches!(
            error,
            QueryError::NoSopClass {
                model: QueryModel::ModalityWorklist,
                service: QueryService::Get
            }
        ),
        "{error}"
    );
    // Still usable.
    let outcome = find_studies(&association, QueryModel::StudyRoot, "MANY")
        .await
        .expect("find");
    assert_eq!(outcome.matches.len(), MANY);
    release_and_stop(association, server).await;
}

// ------------------------------------------------------------------------------------------
// C-GET and C-MOVE
// ------------------------------------------------------------------------------------------

/// The instances every retrieve answers: three Secondary Captures, and with `with_ct` a CT.
fn instances(with_ct: bool) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = (1..=3)
        .map(|i| (SECONDARY_CAPTURE.to_owned(), format!("{STUDY}.1.{i}")))
        .collect();
    if with_ct {
        all.insert(1, (CT_IMAGE.to_owned(), format!("{STUDY}.1.9")));
    }
    all
}

/// Retrieves [`instances`] for any query; move destinations by AE title.
#[derive(Default)]
struct TestRetriever {
    with_ct: bool,
    destinations: HashMap<String, SocketAddr>,
}

impl RetrieveHandler for TestRetriever {
    fn retrieve(&self, _query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>> {
        let all = instances(self.with_ct);
        Box::pin(async move {
            Ok(Retrieval::from_instances(
                all.into_iter()
                    .map(|(sop_class, uid)| RetrieveInstance {
                        data: InstanceData::Memory(instance_data_set(&sop_class, &uid, STUDY)),
                        sop_class_uid: sop_class,
                        sop_instance_uid: uid,
                        transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
                    })
                    .collect(),
            ))
        })
    }

    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        self.destinations
            .get(ae_title)
            .map(|address| MoveDestination {
                ae_title: ae_title.to_owned(),
                address: address.to_string(),
            })
    }
}

async fn start_get_server(with_ct: bool) -> TestServer {
    let get = GetScp::new(
        TestRetriever {
            with_ct,
            ..TestRetriever::default()
        },
        QueryModel::sop_classes(QueryService::Get)
            .into_iter()
            .map(String::from)
            .collect(),
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    )
    .with_storage(
        vec![SECONDARY_CAPTURE.into(), CT_IMAGE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    start_named(Dispatcher::new().with(EchoScp::new()).with(get), SCP_AE).await
}

/// Checks that `root` holds exactly the instances `uids` as `<uid>.dcm`, each the data set sent.
fn assert_stored(root: &Path, expected: &[(String, String)]) {
    let mut wanted: Vec<_> = expected
        .iter()
        .map(|(_, uid)| root.join(format!("{uid}.dcm")))
        .collect();
    wanted.sort();
    assert_eq!(files_under(root), wanted, "exactly the instances sent");
    for (sop_class, uid) in expected {
        let bytes = std::fs::read(root.join(format!("{uid}.dcm"))).expect("stored file");
        let (meta, offset) = part10::read_meta(&mut &bytes[..]).expect("file meta");
        assert_eq!(&meta.media_storage_sop_instance_uid, uid);
        assert_eq!(&meta.media_storage_sop_class_uid, sop_class);
        assert_eq!(meta.transfer_syntax_uid, EXPLICIT_VR_LITTLE_ENDIAN);
        assert_eq!(
            Bytes::copy_from_slice(&bytes[offset as usize..]),
            instance_data_set(sop_class, uid, STUDY),
            "{uid}"
        );
    }
}

/// Pending responses count down, and the last one is final.
fn assert_counts_down(progress: &[RetrieveProgress], total: u16) {
    let (last, pending) = progress.split_last().expect("at least the final response");
    assert!(last.is_final, "{progress:?}");
    let mut before = total;
    for step in pending {
        assert!(!step.is_final);
        assert_eq!(step.status, Status::PENDING);
        let remaining = step
            .sub_operations
            .remaining
            .expect("remaining while pending");
        assert!(remaining < before, "{progress:?}");
        let done = step.sub_operations.completed.unwrap_or(0)
            + step.sub_operations.failed.unwrap_or(0)
            + step.sub_operations.warning.unwrap_or(0);
        assert_eq!(done + remaining, total, "{progress:?}");
        before = remaining;
    }
}

/// A retrieve of the three Secondary Captures that succeeded: every sub-operation completed,
/// none failed or with a warning, none named, the progress counting down to the final counts.
fn assert_retrieved_all(outcome: &RetrieveOutcome, progress: &[RetrieveProgress]) {
    assert_eq!(
        outcome.status,
        Status::SUCCESS,
        "{:?}",
        outcome.error_comment
    );
    assert_eq!(outcome.sub_operations.completed, Some(3));
    assert_eq!(outcome.sub_operations.failed, Some(0));
    assert_eq!(outcome.sub_operations.warning, Some(0));
    assert!(outcome.failed_sop_instance_uids.is_empty());
    assert_counts_down(progress, 3);
    assert_eq!(
        progress.last().expect("the final response").sub_operations,
        outcome.sub_operations
    );
}

/// `scu::get` of the studies of `patient_id` in `model` into a FileStorage at `root`, within
/// PATIENCE; the outcome with every progress step.
async fn get_into(
    association: &Association,
    model: QueryModel,
    patient_id: &str,
    root: &Path,
) -> Result<(RetrieveOutcome, Vec<RetrieveProgress>), QueryError> {
    let mut progress = Vec::new();
    let outcome = within(
        "get",
        scu::get(
            association,
            &study_query(model, patient_id),
            FileStorage::new(root).expect("storage"),
            |step| progress.push(*step),
        ),
    )
    .await?;
    Ok((outcome, progress))
}

#[tokio::test]
async fn get_into_a_file_storage_stores_exactly_the_instances_sent() {
    let server = start_get_server(false).await;
    let request = scu::propose_get(
        AssociationRequest::new(SCU_AE, SCP_AE).with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        )),
        QueryModel::StudyRoot,
        &scu::default_storage_contexts(),
    )
    .expect("fits");
    // A second model on the same association, with the storage contexts already there.
    let request = scu::propose_get(request, QueryModel::PatientRoot, &[]).expect("fits");
    let association = associate(server.address, &request).await;
    let root = tempfile::tempdir().expect("tempdir");
    let (outcome, progress) = get_into(&association, QueryModel::StudyRoot, "PID1", root.path())
        .await
        .expect("get");
    assert!(progress.len() >= 2, "{progress:?}");
    assert_retrieved_all(&outcome, &progress);
    assert_stored(root.path(), &instances(false));

    // Another C-GET on the same association, into another folder.
    let again = tempfile::tempdir().expect("tempdir");
    let (outcome, progress) = get_into(&association, QueryModel::PatientRoot, "PID1", again.path())
        .await
        .expect("second get");
    assert_retrieved_all(&outcome, &progress);
    assert_stored(again.path(), &instances(false));
    echo_release_and_stop(association, server).await;
}

#[tokio::test]
async fn a_get_of_a_sop_class_we_did_not_propose_counts_it_failed_and_names_it() {
    let server = start_get_server(true).await;
    let request = scu::propose_get(
        AssociationRequest::new(SCU_AE, SCP_AE),
        QueryModel::StudyRoot,
        &scu::storage_contexts(&[SECONDARY_CAPTURE], &[EXPLICIT_VR_LITTLE_ENDIAN]),
    )
    .expect("fits");
    let association = associate(server.address, &request).await;
    let root = tempfile::tempdir().expect("tempdir");
    let (outcome, progress) = get_into(&association, QueryModel::StudyRoot, "PID1", root.path())
        .await
        .expect("get");
    assert_eq!(outcome.status, Status::SUBOPERATIONS_COMPLETE_WITH_FAILURES);
    assert_eq!(outcome.sub_operations.completed, Some(3));
    assert_eq!(outcome.sub_operations.failed, Some(1));
    let ct_uid = format!("{STUDY}.1.9");
    assert_eq!(outcome.failed_sop_instance_uids, vec![ct_uid]);
    assert_counts_down(&progress, 4);
    assert_stored(root.path(), &instances(false));
    release_and_stop(association, server).await;
}

/// What a store server received, sorted: instance UID, calling AE title, Move Originator AE
/// title and Message ID.
fn senders(arrivals: &Mutex<Vec<Arrival>>) -> Vec<(String, String, Option<String>, Option<u16>)> {
    let mut senders: Vec<_> = arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|arrival| {
            (
                arrival.sop_instance_uid.clone(),
                arrival.calling.clone(),
                arrival.originator.clone(),
                arrival.originator_id,
            )
        })
        .collect();
    senders.sort();
    senders
}

fn store_scp(storage: FileStorage) -> StoreScp<FileStorage> {
    StoreScp::new(
        storage,
        vec![SECONDARY_CAPTURE.into(), CT_IMAGE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    )
}

/// A move server knowing `destinations`, and an association to it with every MOVE context.
async fn move_session(destinations: HashMap<String, SocketAddr>) -> (TestServer, Association) {
    let retriever = TestRetriever {
        destinations,
        ..TestRetriever::default()
    };
    let moving = MoveScp::new(
        retriever,
        QueryModel::sop_classes(QueryService::Move)
            .into_iter()
            .map(String::from)
            .collect(),
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let server = start_named(Dispatcher::new().with(EchoScp::new()).with(moving), SCP_AE).await;
    let association = associate(server.address, &qr_request(QueryService::Move)).await;
    (server, association)
}

/// `scu::move_to` `destination` of the studies of "PID1" in `model`, within PATIENCE; the
/// outcome with every progress step.
async fn move_study(
    association: &Association,
    destination: &str,
    model: QueryModel,
) -> (RetrieveOutcome, Vec<RetrieveProgress>) {
    let mut progress = Vec::new();
    let outcome = within(
        "move",
        scu::move_to(
            association,
            destination,
            &study_query(model, "PID1"),
            |step| progress.push(*step),
        ),
    )
    .await
    .expect("a final response");
    (outcome, progress)
}

#[tokio::test]
async fn move_stores_at_a_separate_destination_with_the_move_originator() {
    let root = tempfile::tempdir().expect("tempdir");
    let (storage, arrivals) = recording_storage(root.path());
    let destination = start_named(Dispatcher::new().with(store_scp(storage)), DEST_AE).await;
    let (server, association) =
        move_session(HashMap::from([(DEST_AE.to_owned(), destination.address)])).await;
    let (outcome, progress) = move_study(&association, DEST_AE, QueryModel::StudyRoot).await;
    assert_retrieved_all(&outcome, &progress);
    release_and_stop(association, server).await;
    destination.stop().await;

    let expected: Vec<_> = instances(false)
        .into_iter()
        .map(|(_, uid)| {
            (
                uid,
                SCP_AE.to_owned(),
                Some(SCU_AE.to_owned()),
                Some(outcome.message_id),
            )
        })
        .collect();
    assert_eq!(senders(&arrivals), expected);
    assert_stored(root.path(), &instances(false));
}

#[tokio::test]
async fn move_to_an_unknown_destination_gives_0xa801_and_its_comment() {
    let (server, association) = move_session(HashMap::new()).await;
    let (outcome, progress) = move_study(&association, "NOWHERE", QueryModel::PatientRoot).await;
    assert_eq!(outcome.status, Status::MOVE_DESTINATION_UNKNOWN);
    assert!(
        outcome
            .error_comment
            .as_deref()
            .is_some_and(|comment| comment.contains("NOWHERE")),
        "{:?}",
        outcome.error_comment
    );
    assert_eq!(progress.len(), 1);
    assert!(progress[0].is_final);
    release_and_stop(association, server).await;
}

#[tokio::test]
async fn move_to_our_own_incoming_port_receives_the_instances() {
    let root = tempfile::tempdir().expect("tempdir");
    let (storage, arrivals) = recording_storage(root.path());
    let mut receiver_config = ServerConfig::new(SCU_AE);
    receiver_config.timeouts = config().timeouts;
    receiver_config.shutdown_grace = Duration::from_secs(2);
    let receiver = MoveReceiver::bind("127.0.0.1:0", receiver_config, store_scp(storage))
        .await
        .expect("bound");
    assert_eq!(receiver.ae_title(), SCU_AE);
    let incoming = receiver.local_addr().expect("address");
    let (server, association) = move_session(HashMap::from([(SCU_AE.to_owned(), incoming)])).await;
    let mut progress = Vec::new();
    let (outcome, statistics) = within(
        "move",
        scu::move_to_self(
            &association,
            receiver,
            &study_query(QueryModel::StudyRoot, "PID1"),
            |step| progress.push(*step),
        ),
    )
    .await
    .expect("move");
    assert_retrieved_all(&outcome, &progress);
    assert_eq!(
        (statistics.accepted, statistics.released, statistics.active),
        (1, 1, 0),
        "{statistics}"
    );
    assert_stored(root.path(), &instances(false));
    let arrivals = senders(&arrivals);
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    assert!(
        arrivals
            .iter()
            .all(|(_, calling, originator, id)| calling == SCP_AE
                && originator.as_deref() == Some(SCU_AE)
                && *id == Some(outcome.message_id)),
        "{arrivals:?}"
    );
    // The receiver is gone: nothing listens on its port any more.
    assert!(
        tokio::net::TcpStream::connect(incoming).await.is_err(),
        "the incoming port is still open"
    );
    release_and_stop(association, server).await;
}
