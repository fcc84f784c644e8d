//! Hostile and broken peers against our service provider (PS3.8 §9.2 Table 9-10 abort cells):
//! each case checks what the server answers, then that a normal association still works.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use common::*;
use dimsum_net::ul::pdu::{Abort, AbortReason, AbortSource, PData, Pdu, Pdv};

fn abort(source: AbortSource, reason: AbortReason) -> Pdu {
    Pdu::Abort(Abort { source, reason })
}

fn pdata(is_command: bool, is_last: bool, data: &'static [u8]) -> Pdu {
    Pdu::PData(PData {
        pdvs: vec![Pdv {
            presentation_context_id: 1,
            is_command,
            is_last,
            data: Bytes::from_static(data),
        }],
    })
}

/// Sends `bytes` before any association (Sta2) and returns what the server answered before it
/// closed the connection.
async fn send_before_association(server: &TestServer, bytes: &[u8]) -> Vec<Pdu> {
    let mut stream = raw_connect(server.address).await;
    stream.write_all(bytes).await.expect("send");
    read_until_closed(&mut stream).await
}

/// Sends `bytes` on an established association (Sta6) and returns what the server answered.
async fn send_on_association(server: &TestServer, bytes: &[u8]) -> Vec<Pdu> {
    let (mut stream, _) = raw_associate(server.address).await;
    stream.write_all(bytes).await.expect("send");
    read_until_closed(&mut stream).await
}

#[tokio::test]
async fn a_length_of_0xfffffff0_is_refused_at_once_before_and_after_association() {
    let server = start_server(config()).await;
    let header = [0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0];
    // Sta2, Evt19 (invalid PDU) -> AA-1: A-ABORT, service-user source.
    let answer = send_before_association(&server, &header).await;
    assert_eq!(
        answer,
        vec![abort(AbortSource::ServiceUser, AbortReason::NotSpecified)]
    );
    // Sta6, Evt19 -> AA-8: A-ABORT, service-provider, invalid PDU parameter value.
    let answer = send_on_association(&server, &[0x04, 0x00, 0xFF, 0xFF, 0xFF, 0xF0]).await;
    assert_eq!(
        answer,
        vec![abort(
            AbortSource::ServiceProvider,
            AbortReason::InvalidPduParameterValue
        )]
    );
    assert_echo_works(server.address).await;
    let statistics = server.stop().await;
    assert_eq!(statistics.failed_requests, 1);
    assert_eq!(statistics.failed, 1);
    assert_eq!(statistics.released, 1);
}

#[tokio::test]
async fn an_unknown_pdu_type_is_aborted_as_unrecognized() {
    let server = start_server(config()).await;
    let unknown = [0x09, 0x00, 0x00, 0x00, 0x00, 0x02, 0xAB, 0xCD];
    let answer = send_before_association(&server, &unknown).await;
    assert_eq!(
        answer,
        vec![abort(AbortSource::ServiceUser, AbortReason::NotSpecified)]
    );
    let answer = send_on_association(&server, &unknown).await;
    assert_eq!(
        answer,
        vec![abort(
            AbortSource::ServiceProvider,
            AbortReason::UnrecognizedPdu
        )]
    );
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn p_data_before_association_is_aborted() {
    let server = start_server(config()).await;
    // Sta2, Evt10 -> AA-1.
    let answer = send_before_association(&server, &encode(&pdata(true, true, b"\0\0\0\0"))).await;
    assert_eq!(
        answer,
        vec![abort(AbortSource::ServiceUser, AbortReason::NotSpecified)]
    );
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn a_second_association_request_on_an_association_is_an_unexpected_pdu() {
    let server = start_server(config()).await;
    let rq = echo_request(16384).to_pdu().expect("request");
    // Sta6, Evt6 -> AA-8.
    let answer = send_on_association(&server, &encode(&Pdu::AssociateRq(rq))).await;
    assert_eq!(
        answer,
        vec![abort(
            AbortSource::ServiceProvider,
            AbortReason::UnexpectedPdu
        )]
    );
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn a_truncated_request_followed_by_close_loses_nothing() {
    let server = start_server(config()).await;
    let rq = encode(&Pdu::AssociateRq(
        echo_request(16384).to_pdu().expect("request"),
    ));
    for cut in [1, 5, 6, 20, rq.len() - 1] {
        let mut stream = raw_connect(server.address).await;
        stream.write_all(&rq[..cut]).await.expect("send");
        stream.shutdown().await.expect("half-close");
        // Sta2, Evt17 -> AA-5: nothing is sent back, the connection is closed.
        assert_eq!(read_until_closed(&mut stream).await, vec![], "cut at {cut}");
    }
    assert_echo_works(server.address).await;
    let statistics = server.stop().await;
    assert_eq!(statistics.failed_requests, 5);
    assert_eq!(statistics.accepted, 1);
}

#[tokio::test]
async fn a_silent_peer_is_closed_by_artim() {
    let server = start_server(config()).await;
    let mut stream = raw_connect(server.address).await;
    let started = Instant::now();
    // Sta2, Evt18 (ARTIM, 1 s here) -> AA-2: close without a PDU.
    assert_eq!(read_until_closed(&mut stream).await, vec![]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before ARTIM"
    );
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_disappears_mid_message_leaves_the_server_serving() {
    let server = start_server(config()).await;
    // Half a command, then gone.
    let (mut stream, _) = raw_associate(server.address).await;
    stream
        .write_all(&encode(&pdata(true, false, b"\0\0\0\0\x04\0\0\0")))
        .await
        .expect("send");
    drop(stream);
    // Half a PDU, then gone.
    let (mut stream, _) = raw_associate(server.address).await;
    let bytes = encode(&pdata(true, true, b"0123456789"));
    stream
        .write_all(&bytes[..bytes.len() - 3])
        .await
        .expect("send");
    drop(stream);
    assert_echo_works(server.address).await;
    let statistics = server.stop().await;
    assert_eq!(statistics.accepted, 3);
    assert_eq!(statistics.failed, 2);
    assert_eq!(statistics.released, 1);
}

#[tokio::test]
async fn an_idle_association_is_aborted_after_the_idle_timeout() {
    let mut config = config();
    config.timeouts.idle = Some(Duration::from_millis(500));
    let server = start_server(config).await;
    let (mut stream, _) = raw_associate(server.address).await;
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(answer.len(), 1, "one A-ABORT expected, got {answer:?}");
    assert!(matches!(answer[0], Pdu::Abort(_)));
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn a_p_data_on_a_context_that_was_not_accepted_is_aborted() {
    let server = start_server(config()).await;
    let pdu = Pdu::PData(PData {
        pdvs: vec![Pdv {
            presentation_context_id: 3,
            is_command: true,
            is_last: true,
            data: Bytes::from_static(b"\0\0\0\0"),
        }],
    });
    let answer = send_on_association(&server, &encode(&pdu)).await;
    assert_eq!(answer.len(), 1, "one A-ABORT expected, got {answer:?}");
    assert!(matches!(
        answer[0],
        Pdu::Abort(Abort {
            source: AbortSource::ServiceProvider,
            ..
        })
    ));
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_in_a_command_is_aborted_not_fatal() {
    let server = start_server(config()).await;
    let answer = send_on_association(
        &server,
        &encode(&pdata(true, true, b"\x00\x00\x00\x00\xFF\xFF\xFF\x7F")),
    )
    .await;
    assert_eq!(answer.len(), 1, "one A-ABORT expected, got {answer:?}");
    assert!(matches!(answer[0], Pdu::Abort(_)));
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn many_hostile_connections_at_once_do_not_stop_the_server() {
    let server = start_server(config()).await;
    let mut peers = Vec::new();
    for i in 0..20u8 {
        let address = server.address;
        peers.push(tokio::spawn(async move {
            let mut stream = raw_connect(address).await;
            let junk = [i % 9, 0, 0, 0, 0, 1, 0];
            let _ = stream.write_all(&junk).await;
            read_until_closed(&mut stream).await
        }));
    }
    for peer in peers {
        tokio::time::timeout(PATIENCE, peer)
            .await
            .expect("in time")
            .expect("peer task");
    }
    assert_echo_works(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn a_raw_release_request_is_answered_and_the_server_goes_on() {
    let server = start_server(config()).await;
    let (mut stream, mut buf) = raw_associate(server.address).await;
    stream
        .write_all(&encode(&Pdu::ReleaseRq))
        .await
        .expect("send");
    assert_eq!(read_pdu(&mut stream, &mut buf).await, Pdu::ReleaseRp);
    drop(stream);
    assert_echo_works(server.address).await;
    let statistics = server.stop().await;
    assert_eq!(statistics.released, 2);
}

#[tokio::test]
async fn silent_connections_do_not_take_association_slots() {
    let mut config = config();
    config.max_associations = 1;
    config.max_pending_associations = Some(3);
    let server = start_server(config).await;
    // Two peers connect and say nothing (each is closed by ARTIM after 1 s)...
    let silent = [
        raw_connect(server.address).await,
        raw_connect(server.address).await,
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...and a real association still gets the one slot.
    assert_echo_works(server.address).await;
    // A third silent peer still fits the pending bound (3); a fourth is beyond it and is
    // closed at once, without a PDU, while the third waits for ARTIM.
    let mut third = raw_connect(server.address).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = raw_connect(server.address).await;
    let started = Instant::now();
    assert_eq!(read_until_closed(&mut fourth).await, vec![]);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the fourth waited for ARTIM"
    );
    assert_eq!(read_until_closed(&mut third).await, vec![]);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "the third was not given ARTIM"
    );
    drop(silent);
    let statistics = server.stop().await;
    assert_eq!(statistics.accepted, 1);
    assert!(statistics.failed_requests >= 1);
}
