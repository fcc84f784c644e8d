//! Our service user against our service provider: negotiation outcomes, PDU sizes, rejection,
//! limits, release collisions and shutdown.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use common::*;
use dimsum_net::scp::{Dispatcher, EchoScp};
use dimsum_net::ul::negotiation::ProposedContext;
use dimsum_net::ul::pdu::{
    Pdu, PresentationContextResult, RejectResult, RejectSource, ServiceProviderPresentationReason,
    ServiceUserReason,
};
use dimsum_net::ul::uids::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS,
};
use dimsum_net::{Association, Error, Limits, scu};

const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

#[tokio::test]
async fn echoes_go_through_at_every_max_pdu_size() {
    for (ours, theirs) in [(4096, 4096), (16384, 1 << 20), (1 << 20, 0), (0, 4096)] {
        let mut config = config();
        config.max_pdu_length = theirs;
        let server = start_server(config).await;
        let association = connect(server.address, &echo_request(ours))
            .await
            .expect("accepted");
        assert_eq!(association.negotiated().peer_max_pdu_length, theirs);
        assert_eq!(association.negotiated().local_max_pdu_length, ours);
        for _ in 0..3 {
            assert!(scu::echo(&association).await.expect("echo").is_success());
        }
        association.release().await.expect("released");
        let statistics = server.stop().await;
        assert_eq!((statistics.accepted, statistics.released), (1, 1));
    }
}

#[tokio::test]
async fn the_negotiated_contexts_say_which_syntaxes_were_accepted() {
    let server = start_server(config()).await;
    let request = echo_request(16384)
        .with_context(ProposedContext::new(
            CT_IMAGE_STORAGE,
            [IMPLICIT_VR_LITTLE_ENDIAN],
        ))
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            ["1.2.3.4.5.6"],
        ))
        .with_context(ProposedContext::new(
            VERIFICATION_SOP_CLASS,
            [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN],
        ));
    let association = connect(server.address, &request).await.expect("accepted");
    let results: Vec<_> = association
        .negotiated()
        .contexts
        .iter()
        .map(|c| (c.id, c.result, c.transfer_syntax.clone()))
        .collect();
    assert_eq!(
        results,
        vec![
            (
                1,
                PresentationContextResult::Acceptance,
                Some(IMPLICIT_VR_LITTLE_ENDIAN.to_string())
            ),
            (
                3,
                PresentationContextResult::AbstractSyntaxNotSupported,
                None
            ),
            (
                5,
                PresentationContextResult::TransferSyntaxesNotSupported,
                None
            ),
            // The server prefers explicit VR little endian when offered.
            (
                7,
                PresentationContextResult::Acceptance,
                Some(EXPLICIT_VR_LITTLE_ENDIAN.to_string())
            ),
        ]
    );
    association.release().await.expect("released");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_called_ae_title_is_rejected_when_required() {
    let mut config = config();
    config.require_called_ae_title = true;
    let server = start_server(config).await;
    let mut request = echo_request(16384);
    request.called_ae_title = "SOMEONE-ELSE".into();
    match connect(server.address, &request).await {
        Err(Error::Rejected(rj)) => {
            assert_eq!(rj.result, RejectResult::Permanent);
            assert_eq!(
                rj.source,
                RejectSource::ServiceUser(ServiceUserReason::CalledAeTitleNotRecognized)
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_echo_works(server.address).await;
    let statistics = server.stop().await;
    assert_eq!((statistics.rejected, statistics.accepted), (1, 1));
}

#[tokio::test]
async fn a_calling_ae_title_not_allowed_is_rejected() {
    let mut config = config();
    config.allowed_calling_ae_titles = Some(vec!["FRIEND".into()]);
    let server = start_server(config).await;
    match connect(server.address, &echo_request(16384)).await {
        Err(Error::Rejected(rj)) => {
            assert_eq!(
                rj.source,
                RejectSource::ServiceUser(ServiceUserReason::CallingAeTitleNotRecognized)
            )
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let mut request = echo_request(16384);
    request.calling_ae_title = "FRIEND".into();
    let association = connect(server.address, &request)
        .await
        .expect("FRIEND is accepted");
    association.release().await.expect("released");
    server.stop().await;
}

#[tokio::test]
async fn beyond_max_associations_requests_are_rejected_transiently() {
    let mut config = config();
    config.max_associations = 1;
    let server = start_server(config).await;
    let first = connect(server.address, &echo_request(16384))
        .await
        .expect("first accepted");
    match connect(server.address, &echo_request(16384)).await {
        Err(Error::Rejected(rj)) => {
            assert_eq!(rj.result, RejectResult::Transient);
            assert_eq!(
                rj.source,
                RejectSource::ServiceProviderPresentation(
                    ServiceProviderPresentationReason::LocalLimitExceeded
                )
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    first.release().await.expect("released");
    // The slot is free again once the first association is over.
    let mut accepted = None;
    for _ in 0..50 {
        match connect(server.address, &echo_request(16384)).await {
            Ok(association) => {
                accepted = Some(association);
                break;
            }
            Err(Error::Rejected(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    accepted
        .expect("accepted after the first released")
        .release()
        .await
        .expect("released");
    let statistics = server.stop().await;
    assert_eq!((statistics.accepted, statistics.rejected), (2, 1));
}

#[tokio::test]
async fn a_peer_abort_is_reported_with_its_source() {
    let server = start_server(config()).await;
    let association = connect(server.address, &echo_request(16384))
        .await
        .expect("accepted");
    association.abort().await;
    assert_echo_works(server.address).await;
    let statistics = server.stop().await;
    assert_eq!((statistics.failed, statistics.released), (1, 1));
}

#[tokio::test]
async fn shutdown_waits_for_running_associations_within_the_grace_period() {
    let server = start_server(config()).await;
    let association = connect(server.address, &echo_request(16384))
        .await
        .expect("accepted");
    server.handle.shutdown();
    // The running association is still served during the grace period.
    assert!(scu::echo(&association).await.expect("echo").is_success());
    association.release().await.expect("released");
    let statistics = tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("stops")
        .expect("task");
    assert_eq!(
        (statistics.accepted, statistics.released, statistics.active),
        (1, 1, 0)
    );
}

/// Requestor side of a release collision (PS3.8 §9.2.1, Sta7 -> Sta9 -> Sta11 -> Sta1).
#[tokio::test]
async fn release_collision_as_requestor() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let peer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        let Pdu::AssociateRq(rq) = read_pdu(&mut stream, &mut buf).await else {
            panic!("expected RQ")
        };
        let policy = Dispatcher::new().with(EchoScp::new()).policy("ECHOSCP");
        let dimsum_net::ul::negotiation::Decision::Accept { ac, .. } = policy.evaluate(&rq) else {
            panic!("policy rejects")
        };
        stream
            .write_all(&encode(&Pdu::AssociateAc(ac)))
            .await
            .expect("AC");
        assert_eq!(read_pdu(&mut stream, &mut buf).await, Pdu::ReleaseRq);
        // Collide: the acceptor asks to release too, then awaits the requestor's answer.
        stream
            .write_all(&encode(&Pdu::ReleaseRq))
            .await
            .expect("RQ");
        assert_eq!(read_pdu(&mut stream, &mut buf).await, Pdu::ReleaseRp);
        stream
            .write_all(&encode(&Pdu::ReleaseRp))
            .await
            .expect("RP");
        read_until_closed(&mut stream).await
    });
    let association = connect(address, &echo_request(16384))
        .await
        .expect("accepted");
    association
        .release()
        .await
        .expect("release completes despite the collision");
    assert_eq!(
        tokio::time::timeout(PATIENCE, peer)
            .await
            .expect("in time")
            .expect("peer"),
        vec![]
    );
}

/// Acceptor side of a release collision (Sta7 -> Sta10 -> Sta12 -> Sta13).
#[tokio::test]
async fn release_collision_as_acceptor() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let policy = Dispatcher::new().with(EchoScp::new()).policy("ECHOSCP");
        let association =
            Association::accept(stream, &policy, client_timeouts(), Limits::default())
                .await
                .expect("accepted");
        association.release().await
    });
    let mut stream = raw_connect(address).await;
    let rq = echo_request(16384).to_pdu().expect("request");
    stream
        .write_all(&encode(&Pdu::AssociateRq(rq)))
        .await
        .expect("RQ");
    let mut buf = BytesMut::new();
    assert!(matches!(
        read_pdu(&mut stream, &mut buf).await,
        Pdu::AssociateAc(_)
    ));
    assert_eq!(read_pdu(&mut stream, &mut buf).await, Pdu::ReleaseRq);
    // Collide as requestor: send our own RQ, then answer theirs (Sta9 -> AR-9 -> Sta11).
    stream
        .write_all(&encode(&Pdu::ReleaseRq))
        .await
        .expect("RQ");
    stream
        .write_all(&encode(&Pdu::ReleaseRp))
        .await
        .expect("RP");
    assert_eq!(read_pdu(&mut stream, &mut buf).await, Pdu::ReleaseRp);
    drop(stream);
    tokio::time::timeout(PATIENCE, acceptor)
        .await
        .expect("in time")
        .expect("task")
        .expect("release completes despite the collision");
}
