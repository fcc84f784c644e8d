//! C-FIND SOP class extended negotiation (PS3.4 C.5.1.1) end to end on 127.0.0.1: a `Server`
//! whose `FindScp` declares the options it supports answers a requestor's proposal with no
//! more than was proposed and no more than it supports, a handler sees what was agreed in
//! `Query::find_options`, and the SCU reads the answer with `accepted_find_options`.

mod common;

use std::sync::{Arc, Mutex};

use futures_util::stream;

use common::{SCP_AE, SCU_AE, TestServer, associate, release_and_stop, start_named, within};
use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::query_model::QueryModel;
use dimsum_net::dataset::query_model::QueryService;
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{Dispatcher, EchoScp, FindHandler, FindScp, MatchStream, Query, ScpFailure};
use dimsum_net::scu::find::{accepted_find_options, find_options_proposal};
use dimsum_net::scu::{QueryRequest, find, query_context};
use dimsum_net::storage::BoxFuture;
use dimsum_net::ul::negotiation::{AssociationRequest, FindOptions};
use dimsum_net::ul::pdu::SopClassExtendedNegotiation;
use dimsum_net::ul::uids::EXPLICIT_VR_LITTLE_ENDIAN;

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";

const RELATIONAL_AND_DATE_TIME: FindOptions = FindOptions {
    relational_queries: true,
    combined_date_time: true,
    fuzzy_person_names: false,
    timezone_adjustment: false,
};

const EVERYTHING: FindOptions = FindOptions {
    relational_queries: true,
    combined_date_time: true,
    fuzzy_person_names: true,
    timezone_adjustment: true,
};

/// Records the options of every query it is given and finds nothing.
#[derive(Default, Clone)]
struct RecordingFinder {
    seen: Arc<Mutex<Vec<FindOptions>>>,
}

impl FindHandler for RecordingFinder {
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        self.seen.lock().unwrap().push(query.find_options);
        Box::pin(async { Ok(Box::pin(stream::empty()) as MatchStream) })
    }
}

/// A server whose Study Root FIND SCP supports `supported`.
async fn server(finder: RecordingFinder, supported: FindOptions) -> TestServer {
    let find = FindScp::new(
        finder,
        vec![STUDY_ROOT_FIND.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    )
    .with_find_options(supported);
    start_named(Dispatcher::new().with(EchoScp::new()).with(find), SCP_AE).await
}

fn request(extended: &[SopClassExtendedNegotiation]) -> AssociationRequest {
    let mut request = AssociationRequest::new(SCU_AE, SCP_AE)
        .with_context(query_context(QueryModel::StudyRoot, QueryService::Find).unwrap())
        .with_context(query_context(QueryModel::PatientRoot, QueryService::Find).unwrap());
    for item in extended {
        request = request.with_sop_class_extended(item.clone());
    }
    request
}

fn study_query() -> QueryRequest {
    QueryRequest::new(
        QueryModel::StudyRoot,
        InMemDicomObject::from_element_iter([
            DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
        ]),
    )
}

/// Associates with `extended` proposed, runs one Study Root C-FIND and returns the acceptor's
/// answers, what the SCU reads as accepted of `proposed`, and what the handler saw.
async fn negotiate(
    supported: FindOptions,
    extended: &[SopClassExtendedNegotiation],
    proposed: FindOptions,
) -> (Vec<SopClassExtendedNegotiation>, FindOptions, FindOptions) {
    let finder = RecordingFinder::default();
    let seen = Arc::clone(&finder.seen);
    let server = server(finder, supported).await;
    let association = associate(server.address, &request(extended)).await;
    let answers = association.negotiated().sop_class_extended.clone();
    let accepted = accepted_find_options(&association, QueryModel::StudyRoot, proposed);
    let outcome = within("find", find(&association, &study_query()))
        .await
        .expect("find");
    assert_eq!(outcome.status, Status::SUCCESS);
    release_and_stop(association, server).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    (answers, accepted, seen[0])
}

#[tokio::test]
async fn the_options_both_sides_support_are_accepted_and_reach_the_handler() {
    let proposal = find_options_proposal(QueryModel::StudyRoot, EVERYTHING).unwrap();
    assert_eq!(proposal.service_class_application_information, [1, 1, 1, 1]);
    let (answers, accepted, seen) =
        negotiate(RELATIONAL_AND_DATE_TIME, &[proposal], EVERYTHING).await;
    // Fuzzy semantic matching and timezone adjustment are answered 0: not supported.
    assert_eq!(
        answers,
        [SopClassExtendedNegotiation {
            sop_class_uid: STUDY_ROOT_FIND.into(),
            service_class_application_information: vec![1, 1, 0, 0],
        }]
    );
    assert_eq!(accepted, RELATIONAL_AND_DATE_TIME);
    assert_eq!(seen, RELATIONAL_AND_DATE_TIME);
}

#[tokio::test]
async fn an_option_that_was_not_proposed_is_never_accepted() {
    let date_time_only = FindOptions {
        combined_date_time: true,
        ..FindOptions::NONE
    };
    let proposal = find_options_proposal(QueryModel::StudyRoot, date_time_only).unwrap();
    assert_eq!(proposal.service_class_application_information, [0, 1]);
    let (answers, accepted, seen) =
        negotiate(RELATIONAL_AND_DATE_TIME, &[proposal], date_time_only).await;
    assert_eq!(answers[0].service_class_application_information, [0, 1]);
    assert_eq!(accepted, date_time_only);
    assert_eq!(seen, date_time_only);
}

#[tokio::test]
async fn an_scp_that_supports_no_option_leaves_the_proposal_unanswered() {
    let proposal = find_options_proposal(QueryModel::StudyRoot, EVERYTHING).unwrap();
    let (answers, accepted, seen) = negotiate(FindOptions::NONE, &[proposal], EVERYTHING).await;
    assert!(answers.is_empty(), "{answers:?}");
    assert_eq!(accepted, FindOptions::NONE);
    assert_eq!(seen, FindOptions::NONE);
}

#[tokio::test]
async fn without_a_proposal_nothing_is_negotiated() {
    let (answers, accepted, seen) = negotiate(EVERYTHING, &[], FindOptions::NONE).await;
    assert!(answers.is_empty());
    assert_eq!(accepted, FindOptions::NONE);
    assert_eq!(seen, FindOptions::NONE);
}

#[tokio::test]
async fn a_proposal_for_a_sop_class_the_find_scp_does_not_serve_is_not_answered() {
    // Patient Root FIND is not served (its context is refused); the Study Root proposal is
    // answered on its own.
    let patient_root = find_options_proposal(QueryModel::PatientRoot, EVERYTHING).unwrap();
    assert_eq!(patient_root.sop_class_uid, PATIENT_ROOT_FIND);
    let relational = FindOptions {
        relational_queries: true,
        ..FindOptions::NONE
    };
    let study_root = find_options_proposal(QueryModel::StudyRoot, relational).unwrap();
    let (answers, accepted, seen) =
        negotiate(EVERYTHING, &[patient_root, study_root], relational).await;
    assert_eq!(
        answers,
        [SopClassExtendedNegotiation {
            sop_class_uid: STUDY_ROOT_FIND.into(),
            service_class_application_information: vec![1],
        }]
    );
    assert_eq!(accepted, relational);
    assert_eq!(seen, relational);
}

#[tokio::test]
async fn a_requestor_does_not_believe_an_answer_granting_more_than_it_proposed() {
    // The acceptor answers what it was asked; the SCU still limits the answer to its own
    // proposal (here it claims to have proposed relational only, and sent everything).
    let proposal = find_options_proposal(QueryModel::StudyRoot, EVERYTHING).unwrap();
    let relational = FindOptions {
        relational_queries: true,
        ..FindOptions::NONE
    };
    let (_, accepted, _) = negotiate(EVERYTHING, &[proposal], relational).await;
    assert_eq!(accepted, relational);
}
