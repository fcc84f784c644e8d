//! Storage: our SCU against our SCP with file storage — streaming, statuses, atomic files,
//! hostile data sets and UIDs.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use common::*;
use dimsum_net::ServerConfig;
use dimsum_net::dataset::part10;
use dimsum_net::dimse::message::{CStoreRq, Message, Priority};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{Dispatcher, EchoScp, StoreScp};
use dimsum_net::scu::store::{self, StoreRequest};
use dimsum_net::storage::{FileStorage, Layout};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_net::ul::pdu::{PData, Pdu, Pdv};
use dimsum_net::ul::uids::EXPLICIT_VR_LITTLE_ENDIAN;

fn request(sop_instance_uid: &str) -> StoreRequest {
    StoreRequest {
        sop_class_uid: SECONDARY_CAPTURE.into(),
        sop_instance_uid: sop_instance_uid.into(),
        priority: Priority::Medium,
        move_originator: None,
    }
}

fn store_association_request(max_pdu: u32) -> AssociationRequest {
    let mut request = AssociationRequest::new("STORESCU", "STORESCP").with_context(
        ProposedContext::new(SECONDARY_CAPTURE, [EXPLICIT_VR_LITTLE_ENDIAN]),
    );
    request.max_pdu_length = max_pdu;
    request
}

async fn start_store_server(root: &Path, layout: Layout, max_pdu: u32) -> TestServer {
    let storage = FileStorage::new(root).expect("storage").with_layout(layout);
    let store = StoreScp::new(
        storage,
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let mut config: ServerConfig = config();
    config.max_pdu_length = max_pdu;
    start_server_with(config, Dispatcher::new().with(EchoScp::new()).with(store)).await
}

/// The data set of a stored Part 10 file, and its meta.
fn read_stored(path: &Path) -> (part10::FileMeta, Vec<u8>) {
    let bytes = std::fs::read(path).expect("stored file");
    let (meta, offset) = part10::read_meta(&mut &bytes[..]).expect("valid file meta");
    (meta, bytes[offset as usize..].to_vec())
}

#[tokio::test]
async fn a_data_set_is_stored_as_a_part10_file_byte_for_byte() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_store_server(root.path(), Layout::Flat, 16384).await;
    let association = connect(server.address, &store_association_request(16384))
        .await
        .expect("accepted");
    let sent = data_set("1.2.3.4.5.6", 100_000);
    let response = store::store_data_set(&association, 1, &request("1.2.3.4.5.6"), &sent)
        .await
        .expect("stored");
    assert_eq!(
        response.status,
        Status::SUCCESS,
        "{:?}",
        response.error_comment
    );
    assert_eq!(
        response.affected_sop_instance_uid.as_deref(),
        Some("1.2.3.4.5.6")
    );
    association.release().await.expect("released");
    server.stop().await;
    let files = files_under(root.path());
    assert_eq!(files, vec![root.path().join("1.2.3.4.5.6.dcm")]);
    let (meta, received) = read_stored(&files[0]);
    assert_eq!(received, sent);
    assert_eq!(meta.media_storage_sop_class_uid, SECONDARY_CAPTURE);
    assert_eq!(meta.media_storage_sop_instance_uid, "1.2.3.4.5.6");
    assert_eq!(meta.transfer_syntax_uid, EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(
        meta.source_application_entity_title.as_deref(),
        Some("STORESCU")
    );
}

#[tokio::test]
async fn a_large_data_set_streams_through_small_pdus_into_study_and_series_folders() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_store_server(root.path(), Layout::ByStudyAndSeries, 4096).await;
    let association = connect(server.address, &store_association_request(4096))
        .await
        .expect("accepted");
    let sent = data_set("1.2.3.4.5.7", 8 * 1024 * 1024 + 4);
    // Streamed in uneven pieces, as a reader gives them.
    let (pieces, receiver) = tokio::sync::mpsc::channel(2);
    let chunks: Vec<bytes::Bytes> = sent
        .chunks(1_000_003)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    tokio::spawn(async move {
        for chunk in chunks {
            if pieces.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let response = store::store_pieces(
        &association,
        1,
        &request("1.2.3.4.5.7"),
        receiver,
        sent.len() as u64,
    )
    .await
    .expect("stored");
    assert_eq!(
        response.status,
        Status::SUCCESS,
        "{:?}",
        response.error_comment
    );
    association.release().await.expect("released");
    server.stop().await;
    let expected = root.path().join(STUDY).join(SERIES).join("1.2.3.4.5.7.dcm");
    assert_eq!(files_under(root.path()), vec![expected.clone()]);
    assert_eq!(read_stored(&expected).1, sent);
}

#[tokio::test]
async fn hostile_uids_are_refused_and_nothing_leaves_the_output_folder() {
    let root = tempfile::tempdir().expect("tempdir");
    let inner = root.path().join("out");
    let server = start_store_server(&inner, Layout::ByStudy, 16384).await;
    let association = connect(server.address, &store_association_request(16384))
        .await
        .expect("accepted");
    for uid in ["../escaped", "/etc/evil", "a/../../b", ".", ".."] {
        let response = store::store_data_set(&association, 1, &request(uid), &data_set(uid, 10))
            .await
            .expect("answered");
        assert_eq!(response.status, Status::CANNOT_UNDERSTAND, "{uid}");
    }
    // The study folder comes from the data set, which is not a command field: it is sanitised.
    let mut escaping = data_set("1.2.3.20", 10);
    let study = padded_uid(STUDY);
    let at = escaping
        .windows(study.len())
        .position(|w| w == study.as_slice())
        .expect("study UID");
    escaping[at..at + 10].copy_from_slice(b"../../../x");
    let response = store::store_data_set(&association, 1, &request("1.2.3.20"), &escaping)
        .await
        .expect("answered");
    assert_eq!(
        response.status,
        Status::SUCCESS,
        "{:?}",
        response.error_comment
    );
    association.release().await.expect("released");
    server.stop().await;
    let files = files_under(root.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = &files[0];
    assert!(
        stored.starts_with(&inner),
        "{} escaped the output folder",
        stored.display()
    );
    assert_eq!(
        stored.parent().and_then(|p| p.parent()),
        Some(inner.as_path())
    );
    assert!(stored.ends_with("1.2.3.20.dcm"));
}

/// A C-STORE-RQ command set written by hand, so that it can carry what our encoder refuses.
fn raw_store_command(sop_instance_uid: &[u8]) -> Vec<u8> {
    let element = |tag: u32, value: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        out.extend_from_slice(&(tag as u16).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    };
    let body = [
        element(0x0000_0002, &padded_uid(SECONDARY_CAPTURE)),
        element(0x0000_0100, &1u16.to_le_bytes()),
        element(0x0000_0110, &5u16.to_le_bytes()),
        element(0x0000_0700, &0u16.to_le_bytes()),
        element(0x0000_0800, &1u16.to_le_bytes()),
        element(0x0000_1000, sop_instance_uid),
    ]
    .concat();
    [
        element(0x0000_0000, &(body.len() as u32).to_le_bytes()),
        body,
    ]
    .concat()
}

#[tokio::test]
async fn over_long_and_nul_uids_are_refused_with_0xc000_and_nothing_is_written() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_store_server(root.path(), Layout::Flat, 16384).await;
    let (mut stream, mut buf) =
        raw_associate_with(server.address, store_association_request(16384)).await;
    let long = "7".repeat(200);
    for uid in [long.as_bytes(), b"1.2\0.3\0\0".as_slice()] {
        for (is_command, data) in [
            (true, raw_store_command(uid)),
            (false, data_set("1.2.3", 10)),
        ] {
            let pdu = Pdu::PData(PData {
                pdvs: vec![Pdv {
                    presentation_context_id: 1,
                    is_command,
                    is_last: true,
                    data: Bytes::from(data),
                }],
            });
            stream.write_all(&encode(&pdu)).await.expect("P-DATA");
        }
        let Pdu::PData(response) = read_pdu(&mut stream, &mut buf).await else {
            panic!("expected a response")
        };
        let command =
            dimsum_net::dimse::CommandSet::decode(&response.pdvs[0].data, &Default::default())
                .expect("command");
        let Ok(Message::CStoreRsp(rsp)) = Message::from_command_set(&command) else {
            panic!("expected a C-STORE-RSP")
        };
        assert_eq!(rsp.status, Status::CANNOT_UNDERSTAND);
        assert_eq!(rsp.message_id_being_responded_to, 5);
        assert_eq!(rsp.affected_sop_instance_uid, None);
    }
    stream
        .write_all(&encode(&Pdu::ReleaseRq))
        .await
        .expect("release");
    assert_eq!(read_pdu(&mut stream, &mut buf).await, Pdu::ReleaseRp);
    drop(stream);
    server.stop().await;
    assert_eq!(files_under(root.path()), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn a_data_set_with_a_lying_length_gets_0xa900_and_no_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_store_server(root.path(), Layout::Flat, 16384).await;
    let association = connect(server.address, &store_association_request(16384))
        .await
        .expect("accepted");
    let mut lying = data_set("1.2.3.9", 16);
    // (0010,0010) PN claims 0xFFF0 bytes where 8 follow.
    let at = lying
        .windows(4)
        .position(|w| w == [0x10, 0x00, 0x10, 0x00])
        .expect("patient name");
    lying[at + 6..at + 8].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let response = store::store_data_set(&association, 1, &request("1.2.3.9"), &lying)
        .await
        .expect("answered");
    assert_eq!(response.status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
    assert!(response.error_comment.is_some());
    // The association goes on: a good one after it is stored.
    let good = data_set("1.2.3.10", 16);
    let response = store::store_data_set(&association, 1, &request("1.2.3.10"), &good)
        .await
        .expect("stored");
    assert_eq!(
        response.status,
        Status::SUCCESS,
        "{:?}",
        response.error_comment
    );
    association.release().await.expect("released");
    server.stop().await;
    assert_eq!(
        files_under(root.path()),
        vec![root.path().join("1.2.3.10.dcm")]
    );
}

#[tokio::test]
async fn a_mismatched_instance_uid_is_stored_with_a_warning() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_store_server(root.path(), Layout::Flat, 16384).await;
    let association = connect(server.address, &store_association_request(16384))
        .await
        .expect("accepted");
    let response = store::store_data_set(
        &association,
        1,
        &request("1.2.3.11"),
        &data_set("9.9.9", 16),
    )
    .await
    .expect("answered");
    assert!(response.status.is_warning(), "status {}", response.status);
    association.release().await.expect("released");
    server.stop().await;
    assert_eq!(
        files_under(root.path()),
        vec![root.path().join("1.2.3.11.dcm")]
    );
}

#[tokio::test]
async fn an_abort_in_the_middle_of_a_data_set_leaves_no_file_and_the_server_serves_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_store_server(root.path(), Layout::Flat, 16384).await;
    let rq = store_association_request(16384).to_pdu().expect("request");
    let mut stream = raw_connect(server.address).await;
    stream
        .write_all(&encode(&Pdu::AssociateRq(rq)))
        .await
        .expect("RQ");
    let mut buf = bytes::BytesMut::new();
    assert!(matches!(
        read_pdu(&mut stream, &mut buf).await,
        Pdu::AssociateAc(_)
    ));
    let command = Message::CStoreRq(CStoreRq {
        message_id: 1,
        affected_sop_class_uid: SECONDARY_CAPTURE.into(),
        affected_sop_instance_uid: "1.2.3.12".into(),
        priority: Priority::Medium,
        move_originator_ae_title: None,
        move_originator_message_id: None,
        data_set_present: true,
    });
    let command_bytes = command.to_command_set().encode().expect("command");
    let half = data_set("1.2.3.12", 50_000)[..30_000].to_vec();
    for (is_command, is_last, data) in [
        (true, true, command_bytes),
        (false, false, Bytes::from(half)),
    ] {
        let pdu = Pdu::PData(PData {
            pdvs: vec![Pdv {
                presentation_context_id: 1,
                is_command,
                is_last,
                data,
            }],
        });
        stream.write_all(&encode(&pdu)).await.expect("P-DATA");
    }
    stream
        .write_all(&encode(&Pdu::Abort(
            dimsum_net::ul::pdu::Abort::by_service_user(),
        )))
        .await
        .expect("abort");
    drop(stream);
    // The server notices, removes the partial file, and serves the next association.
    let association = connect(server.address, &store_association_request(16384))
        .await
        .expect("accepted");
    let response = store::store_data_set(
        &association,
        1,
        &request("1.2.3.13"),
        &data_set("1.2.3.13", 10),
    )
    .await
    .expect("stored");
    assert_eq!(
        response.status,
        Status::SUCCESS,
        "{:?}",
        response.error_comment
    );
    association.release().await.expect("released");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;
    assert_eq!(
        files_under(root.path()),
        vec![root.path().join("1.2.3.13.dcm")]
    );
}

#[tokio::test]
async fn an_unknown_sop_class_is_refused_and_promiscuous_mode_stores_it() {
    const PRIVATE_CLASS: &str = "1.2.3.999.1";
    let root = tempfile::tempdir().expect("tempdir");
    let storage = FileStorage::new(root.path()).expect("storage");
    let store = StoreScp::new(
        storage,
        vec![SECONDARY_CAPTURE.into()],
        vec![EXPLICIT_VR_LITTLE_ENDIAN.into()],
    );
    let dispatcher = Dispatcher::new()
        .with(store.clone())
        .with_fallback(store, vec![EXPLICIT_VR_LITTLE_ENDIAN.into()]);
    let server = start_server_with(config(), dispatcher).await;
    let request_private = AssociationRequest::new("STORESCU", "STORESCP").with_context(
        ProposedContext::new(PRIVATE_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN]),
    );
    let association = connect(server.address, &request_private)
        .await
        .expect("accepted");
    let mut rq = request("1.2.3.14");
    rq.sop_class_uid = PRIVATE_CLASS.into();
    let response = store::store_data_set(&association, 1, &rq, &data_set("1.2.3.14", 10))
        .await
        .expect("answered");
    // Stored; the data set says secondary capture while the command says the private class.
    assert!(response.status.is_warning(), "status {}", response.status);
    association.release().await.expect("released");
    server.stop().await;
    assert_eq!(
        files_under(root.path()),
        vec![root.path().join("1.2.3.14.dcm")]
    );
}
