//! The DICOMweb client (`dimsum_web::client`, feature `client`) against our own server over a
//! temporary archive on a loopback port: what it stores is found and retrieved byte for byte,
//! at every level, read as a stream within its limits; metadata at every level is the stored
//! data set without its bulk data, and with its BulkDataURIs resolved the whole data set; each
//! BulkDataURI gives the exact bytes of its element (little endian from a big endian file, the
//! frames of encapsulated Pixel Data); frames come native byte for byte or encapsulated as
//! stored with their transfer syntax; rendered images decode to the size asked, a rendered
//! study or series to one image per instance with pixel data, within the client's limits; an
//! empty frame list is refused before any request; the server's refusals come back as typed
//! errors with their status and body; and a bare listener shows what goes on the wire
//! (credentials, headers, the STOW-RS body and its Content-Length).

// The shared module re-exports what every server test file uses; not all of it is used here.
#[allow(unused_imports)]
mod common;

use common::*;

use dimsum_web::client::{Client, ClientError, ClientLimits, StowInstance};
use dimsum_web::qido::QidoQuery;
use dimsum_web::resource::Resource;
use dimsum_web::stow::{InstanceOutcome, failure};
use dimsum_web::wado::TransferSyntax;
use tokio::net::TcpListener;

const OTHER_STUDY: &str = "1.2.826.0.1.3680043.2.1125.7.2";
const OTHER_SERIES: &str = "1.2.826.0.1.3680043.2.1125.7.2.1";

fn client_of(served: &Served) -> Client {
    Client::new(&served.url("")).expect("client")
}

/// Stores three instances (two series of one study, one from a file, the others from memory)
/// and returns them.
async fn store_three(served: &Served, client: &Client, dir: &std::path::Path) -> Vec<Instance> {
    let instances = vec![
        Instance::new(STUDY, SERIES, 1, 3000),
        Instance::new(STUDY, SERIES, 2, 400_000),
        Instance::new(STUDY, &format!("{STUDY}.9"), 3, 10),
    ];
    let path = dir.join("first.dcm");
    std::fs::write(&path, instances[0].file()).expect("write");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&sent);
    let outcome = client
        .store_instances_with_progress(
            None,
            vec![
                StowInstance::File(path),
                StowInstance::Bytes(instances[1].file().into()),
                StowInstance::Bytes(instances[2].file().into()),
            ],
            move |bytes| {
                counter.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .await
        .expect("STOW-RS");
    assert_eq!(outcome.status, 200, "{outcome:?}");
    assert_eq!(outcome.warning, None);
    let total: usize = instances.iter().map(|i| i.file().len()).sum();
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        total as u64,
        "progress counts every byte of the files"
    );
    let mut stored: Vec<&str> = outcome
        .response
        .outcomes
        .iter()
        .map(|outcome| match outcome {
            InstanceOutcome::Stored {
                sop_class_uid,
                sop_instance_uid,
                retrieve_url,
                warning: None,
            } => {
                assert_eq!(sop_class_uid, CT);
                let url = retrieve_url.as_deref().expect("Retrieve URL");
                assert!(url.ends_with(sop_instance_uid.as_str()), "{url}");
                sop_instance_uid.as_str()
            }
            other => panic!("not stored cleanly: {other:?}"),
        })
        .collect();
    stored.sort();
    let mut expected: Vec<&str> = instances.iter().map(|i| i.sop.as_str()).collect();
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(served.c_find(STUDY).await, expected);
    instances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_instances_are_retrieved_at_every_level_byte_for_byte() {
    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let dir = tempfile::tempdir().expect("tempdir");
    let sent = store_three(&served, &client, dir.path()).await;

    // The study, as stored, through the instance stream.
    let response = client
        .retrieve_study(STUDY, Some(TransferSyntax::Any))
        .await
        .expect("retrieve study");
    assert_eq!(response.status(), 200);
    let mut received: Vec<_> = response
        .into_instances()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|instance| instance.expect("instance"))
        .collect();
    assert_eq!(received.len(), 3);
    received.sort_by(|a, b| {
        a.meta
            .media_storage_sop_instance_uid
            .cmp(&b.meta.media_storage_sop_instance_uid)
    });
    let mut by_uid: Vec<&Instance> = sent.iter().collect();
    by_uid.sort_by(|a, b| a.sop.cmp(&b.sop));
    for (instance, expected) in received.iter().zip(by_uid) {
        assert_eq!(instance.meta.media_storage_sop_instance_uid, expected.sop);
        assert_eq!(instance.meta.transfer_syntax_uid, EXPLICIT);
        assert_eq!(
            instance.headers.content_type().parameter("transfer-syntax"),
            Some(EXPLICIT)
        );
        assert!(
            instance.data_set() == expected.data_set.as_slice(),
            "data set of {} differs",
            expected.sop
        );
    }

    // A series, in the default transfer syntax, read piece by piece.
    let mut response = client
        .retrieve_series(STUDY, SERIES, None)
        .await
        .expect("retrieve series");
    let mut files = Vec::new();
    while let Some(headers) = response.next_instance_part().await.expect("part") {
        assert!(headers.content_type().is("application", "dicom"));
        let mut file = Vec::new();
        while let Some(chunk) = response.next_chunk().await.expect("chunk") {
            file.extend_from_slice(&chunk);
        }
        files.push(file);
    }
    assert_eq!(response.parts(), 2);
    let mut data_sets: Vec<Vec<u8>> = files.iter().map(|file| split(file).1).collect();
    data_sets.sort_by_key(Vec::len);
    assert_eq!(
        data_sets,
        vec![sent[0].data_set.clone(), sent[1].data_set.clone()]
    );

    // One instance, named by its three UIDs.
    let mut response = client
        .retrieve_instance(STUDY, SERIES, &sent[1].sop, Some(TransferSyntax::Any))
        .await
        .expect("retrieve instance");
    let instance = response.next_instance().await.expect("read").expect("one");
    assert_eq!(instance.meta.media_storage_sop_instance_uid, sent[1].sop);
    assert_eq!(instance.data_set(), sent[1].data_set.as_slice());
    assert!(response.next_instance().await.expect("end").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_another_study_is_a_409_outcome_not_an_error() {
    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let other = Instance::new(OTHER_STUDY, OTHER_SERIES, 1, 100);
    let outcome = client
        .store_instances(Some(STUDY), vec![StowInstance::Bytes(other.file().into())])
        .await
        .expect("a STOW-RS response");
    assert_eq!(outcome.status, 409);
    assert_eq!(
        outcome.response.outcomes,
        vec![InstanceOutcome::Failed {
            sop_class_uid: CT.to_owned(),
            sop_instance_uid: other.sop.clone(),
            reason: failure::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        }]
    );
    assert_eq!(served.instances().await, 0);

    // One good, one bad: 202, both named.
    let good = Instance::new(STUDY, SERIES, 1, 100);
    let outcome = client
        .store_instances(
            Some(STUDY),
            vec![
                StowInstance::Bytes(good.file().into()),
                StowInstance::Bytes(other.file().into()),
            ],
        )
        .await
        .expect("a STOW-RS response");
    assert_eq!(outcome.status, 202);
    assert_eq!(outcome.response.outcomes.len(), 2);
    assert_eq!(served.instances().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_typed_errors_with_status_and_body() {
    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let stored = Instance::new(STUDY, SERIES, 1, 100);
    client
        .store_instances(None, vec![StowInstance::Bytes(stored.file().into())])
        .await
        .expect("stored");

    // An unknown study: 404, with the server's explanation.
    let error = client
        .retrieve_study(OTHER_STUDY, None)
        .await
        .expect_err("unknown study");
    assert_eq!(error.status(), Some(404), "{error}");
    match &error {
        ClientError::Status { url, body, .. } => {
            assert!(url.ends_with(&format!("/studies/{OTHER_STUDY}")), "{url}");
            assert!(!body.is_empty(), "the body explains the 404");
        }
        other => panic!("{other:?}"),
    }

    // A transfer syntax the archive does not convert to: 406.
    let error = client
        .retrieve_study(
            STUDY,
            Some(TransferSyntax::Uid("1.2.840.10008.1.2.4.50".to_owned())),
        )
        .await
        .expect_err("JPEG is not stored");
    assert_eq!(error.status(), Some(406), "{error}");

    // A part that is not a Part 10 file: a 409 naming it failed (0xC000, cannot understand).
    let outcome = client
        .store_instances(
            None,
            vec![StowInstance::Bytes(Bytes::from_static(b"not DICOM"))],
        )
        .await
        .expect("a STOW-RS response");
    assert_eq!(outcome.status, 409, "{outcome:?}");
    assert!(
        matches!(
            outcome.response.outcomes.as_slice(),
            [InstanceOutcome::Failed {
                reason: failure::CANNOT_UNDERSTAND,
                ..
            }]
        ),
        "{outcome:?}"
    );
    assert_eq!(served.instances().await, 1);

    // A UID that would change the path, and a file that does not exist: refused before sending.
    assert!(matches!(
        client.retrieve_series(STUDY, "..", None).await,
        Err(ClientError::InvalidUid { .. })
    ));
    let missing = std::path::PathBuf::from("/nonexistent/dimsum/file.dcm");
    match client
        .store_instances(None, vec![StowInstance::File(missing.clone())])
        .await
    {
        Err(ClientError::File { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }

    // Nothing listening: a transport error.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let error = Client::new(&format!("http://{address}/dicom-web"))
        .expect("client")
        .retrieve_study(STUDY, None)
        .await
        .expect_err("nothing listens");
    assert!(error.is_transport(), "{error:?}");

    // A service root that is not one.
    assert!(matches!(
        Client::new("ftp://127.0.0.1/dicom-web"),
        Err(ClientError::InvalidUrl { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_larger_than_the_in_memory_limit_are_refused_but_can_be_streamed() {
    let served = Served::start(WebConfig::default()).await;
    let big = Instance::new(STUDY, SERIES, 1, 300_000);
    client_of(&served)
        .store_instances(None, vec![StowInstance::Bytes(big.file().into())])
        .await
        .expect("stored");
    let limits = ClientLimits {
        max_in_memory_part_bytes: 100_000,
        ..ClientLimits::default()
    };
    let client = Client::builder(&served.url(""))
        .limits(limits)
        .build()
        .expect("client");
    let mut response = client.retrieve_study(STUDY, None).await.expect("response");
    match response.next_instance().await {
        Err(ClientError::TooLarge { limit, .. }) => assert_eq!(limit, 100_000),
        other => panic!("{other:?}"),
    }
    // The same part read in pieces.
    let mut response = client.retrieve_study(STUDY, None).await.expect("response");
    response
        .next_instance_part()
        .await
        .expect("part")
        .expect("one");
    let mut file = Vec::new();
    while let Some(chunk) = response.next_chunk().await.expect("chunk") {
        file.extend_from_slice(&chunk);
    }
    assert!(
        split(&file).1 == big.data_set,
        "the data set comes back whole"
    );

    // A multipart body over the decoder's limit is refused as it arrives.
    let limits = ClientLimits {
        multipart: DecodeLimits {
            max_body_bytes: 50_000,
            ..DecodeLimits::default()
        },
        ..ClientLimits::default()
    };
    let client = Client::builder(&served.url(""))
        .limits(limits)
        .build()
        .expect("client");
    let mut response = client.retrieve_study(STUDY, None).await.expect("response");
    let mut error = None;
    loop {
        match response.next_chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => match response.next_part().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            },
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(error, Some(ClientError::Multipart { .. })),
        "{error:?}"
    );
}

/// One HTTP/1.1 request read off a socket: its head and body (by Content-Length).
async fn read_request(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        let read = stream.read(&mut chunk).await.expect("read");
        assert!(read > 0, "the request ended early");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).expect("head");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("length"))
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.expect("read");
        assert!(read > 0, "the body ended before its Content-Length");
        body.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(body.len(), length, "nothing beyond the Content-Length");
    (head, body)
}

/// Answers one request with `response` and hands back what was asked.
async fn one_request(
    response: &'static str,
) -> (String, tokio::task::JoinHandle<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let request = read_request(&mut stream).await;
        stream.write_all(response.as_bytes()).await.expect("write");
        stream.shutdown().await.ok();
        request
    });
    (format!("http://{address}/dicom-web/"), task)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stow_body_is_multipart_with_its_exact_length_and_credentials() {
    let (url, request) = one_request(
        "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    let client = Client::builder(&url)
        .bearer_auth("secret-token")
        .header("X-Site", "ward 7")
        .build()
        .expect("client");
    let files = [
        Instance::new(STUDY, SERIES, 1, 5000).file(),
        Instance::new(STUDY, SERIES, 2, 70_000).file(),
    ];
    let outcome = client
        .store_instances(
            Some(STUDY),
            files
                .iter()
                .map(|f| StowInstance::Bytes(f.clone().into()))
                .collect(),
        )
        .await
        .expect("stored");
    assert_eq!(outcome.status, 200);
    assert!(outcome.response.outcomes.is_empty());
    let (head, body) = request.await.expect("request");
    assert!(
        head.starts_with(&format!("POST /dicom-web/studies/{STUDY} HTTP/1.1")),
        "{head}"
    );
    assert_eq!(header(&head, "authorization"), Some("Bearer secret-token"));
    assert_eq!(header(&head, "x-site"), Some("ward 7"));
    assert_eq!(header(&head, "accept"), Some("application/dicom+json"));
    assert!(header(&head, "transfer-encoding").is_none(), "{head}");
    let content_type =
        ContentType::parse(header(&head, "content-type").expect("type")).expect("content type");
    assert!(content_type.is("multipart", "related"));
    assert_eq!(content_type.parameter("type"), Some("application/dicom"));
    let decoder =
        Decoder::for_content_type(&content_type, DecodeLimits::default()).expect("decoder");
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
    let mut reader = MultipartReader::new(chunks, decoder);
    let mut parts = Vec::new();
    while let Some(headers) = reader.next_part().await.expect("part") {
        assert!(headers.content_type().is("application", "dicom"));
        parts.push(reader.read_body().await.expect("body").to_vec());
    }
    assert_eq!(parts, files);

    // Basic credentials; an empty store is refused by the server, whose body is kept.
    let (url, request) = one_request(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 17\r\nConnection: close\r\n\r\nno instance given",
    )
    .await;
    let client = Client::builder(&url)
        .basic_auth("alice", Some("wonder".to_owned()))
        .build()
        .expect("client");
    let error = client
        .store_instances(None, Vec::new())
        .await
        .expect_err("400");
    match &error {
        ClientError::Status { status, body, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(body, "no instance given");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("no instance given"), "{error}");
    let (head, body) = request.await.expect("request");
    // alice:wonder
    assert_eq!(
        header(&head, "authorization"),
        Some("Basic YWxpY2U6d29uZGVy")
    );
    let boundary = ContentType::parse(header(&head, "content-type").expect("type"))
        .expect("content type")
        .boundary()
        .expect("boundary");
    assert_eq!(body, format!("--{}--\r\n", boundary.as_str()).into_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_stay_with_the_service_root() {
    // A BulkDataURI on another origin gets no Authorization header.
    let (other, request) = one_request(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
    )
    .await;
    let client = Client::builder("http://127.0.0.1:9/dicom-web")
        .bearer_auth("secret-token")
        .build()
        .expect("client");
    let bytes = client
        .bulkdata(&format!(
            "{other}studies/1.2/series/1.3/instances/1.4/bulkdata/7FE00010"
        ))
        .await
        .expect("bulk data");
    assert_eq!(&bytes[..], b"abcd");
    let (head, _) = request.await.expect("request");
    assert!(header(&head, "authorization").is_none(), "{head}");
}

fn uid_of(found: &InMemDicomObject, tag: dimsum_dataset::dicom_core::Tag) -> String {
    found
        .get(tag)
        .and_then(|element| element.to_str().ok())
        .map(|text| text.trim_end_matches(['\0', ' ']).to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_at_every_level_find_what_was_stored() {
    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let dir = tempfile::tempdir().expect("tempdir");
    let sent = store_three(&served, &client, dir.path()).await;
    let other_series = format!("{STUDY}.9");

    // Studies: the one stored, with its patient; a fuzzy name key finds it, another does not.
    let query = QidoQuery::new(&Resource::Studies).expect("query");
    let studies = client.search_studies(&query).await.expect("studies");
    assert_eq!(studies.len(), 1);
    assert_eq!(uid_of(&studies[0], tags::STUDY_INSTANCE_UID), STUDY);
    assert_eq!(uid_of(&studies[0], tags::PATIENT_ID), "P-WEB");
    let mut fuzzy = QidoQuery::new(&Resource::Studies)
        .expect("query")
        .with_key("PatientName", "jane")
        .expect("key");
    fuzzy.fuzzy_matching = Some(true);
    assert_eq!(client.search_studies(&fuzzy).await.expect("fuzzy").len(), 1);
    let nobody = QidoQuery::new(&Resource::Studies)
        .expect("query")
        .with_key("PatientID", "NOBODY")
        .expect("key");
    assert!(
        client
            .search_studies(&nobody)
            .await
            .expect("no match")
            .is_empty()
    );

    // Series of the study, and of every study filtered by modality.
    let query = QidoQuery::new(&Resource::StudySeries(STUDY.to_owned())).expect("query");
    let mut series: Vec<String> = client
        .search_series(&query)
        .await
        .expect("series")
        .iter()
        .map(|found| uid_of(found, tags::SERIES_INSTANCE_UID))
        .collect();
    series.sort();
    assert_eq!(series, vec![SERIES.to_owned(), other_series.clone()]);
    let query = QidoQuery::new(&Resource::AllSeries)
        .expect("query")
        .with_key("Modality", "CT")
        .expect("key");
    assert_eq!(client.search_series(&query).await.expect("series").len(), 2);

    // Instances of a series, paged.
    let query = QidoQuery::new(&Resource::SeriesInstances(
        STUDY.to_owned(),
        SERIES.to_owned(),
    ))
    .expect("query");
    let mut instances: Vec<String> = client
        .search_instances(&query)
        .await
        .expect("instances")
        .iter()
        .map(|found| uid_of(found, tags::SOP_INSTANCE_UID))
        .collect();
    instances.sort();
    assert_eq!(instances, vec![sent[0].sop.clone(), sent[1].sop.clone()]);
    let mut paged = query.clone();
    paged.limit = Some(1);
    paged.offset = Some(1);
    assert_eq!(
        client.search_instances(&paged).await.expect("paged").len(),
        1
    );

    // A date the matching rules cannot read: the server's 400, with its reason.
    let bad_date = QidoQuery::new(&Resource::Studies)
        .expect("query")
        .with_key("StudyDate", "last-week")
        .expect("the client leaves dates to the server");
    let error = client.search_studies(&bad_date).await.expect_err("400");
    assert_eq!(error.status(), Some(400), "{error}");
    assert!(error.to_string().contains("StudyDate"), "{error}");

    // A query of one level is not sent to another's search.
    let studies_query = QidoQuery::new(&Resource::Studies).expect("query");
    assert!(matches!(
        client.search_instances(&studies_query).await,
        Err(ClientError::Query(_))
    ));
}

// ------------------------------------------------------------------------------------------
// Metadata, bulk data, frames and rendered images (PS3.18 10.4.1.1.4-10.4.1.1.6, 10.4.1.2)
// ------------------------------------------------------------------------------------------

const RLE: &str = "1.2.840.10008.1.2.5";
const BULK_SERIES_2: &str = "1.2.826.0.1.3680043.2.1125.7.1.5";

/// The bulk data of [`bulky`]'s instances: each element's tag path (as dimsum's BulkDataURIs
/// write it), VR and value.
fn bulk_values(number: u32) -> Vec<(&'static str, VR, Vec<u8>)> {
    let bytes = |length: usize, seed: u32| -> Vec<u8> {
        (0..length)
            .map(|i| ((i * 7 + seed as usize) % 251) as u8)
            .collect()
    };
    vec![
        // Encapsulated Document: a top-level OB over 1 KiB.
        ("00420011", VR::OB, bytes(3000, number)),
        // The icon's Pixel Data, in the first item of the Icon Image Sequence.
        ("00880200/0/7FE00010", VR::OB, bytes(40 * 32, number + 1)),
        // Pixel Data: 64 × 64 × 16 bits.
        ("7FE00010", VR::OW, bytes(64 * 64 * 2, number + 2)),
    ]
}

/// An instance of `series` (in [`STUDY`]) with bulk data at the top level, in a sequence item
/// and as its Pixel Data, and a small binary value (ICC Profile) that stays inline; with the
/// bulk values left empty when `with_bulk_data` is false (what the metadata holds before its
/// BulkDataURIs are resolved).
fn bulky(series: &str, number: u32, with_bulk_data: bool) -> InMemDicomObject {
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let mut values = bulk_values(number).into_iter().map(|(_, vr, value)| {
        if with_bulk_data {
            (vr, PrimitiveValue::U8(value.into()))
        } else {
            (vr, PrimitiveValue::Empty)
        }
    });
    let mut next = |tag| {
        let (vr, value) = values.next().expect("a bulk value");
        DataElement::new(tag, vr, value)
    };
    let document = next(tags::ENCAPSULATED_DOCUMENT);
    let icon = InMemDicomObject::from_element_iter([
        us(tags::ROWS, 40),
        us(tags::COLUMNS, 32),
        next(tags::PIXEL_DATA),
    ]);
    let pixel_data = next(tags::PIXEL_DATA);
    InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            &format!("{series}.{number}"),
        ),
        text(tags::STUDY_DATE, VR::DA, "20240105"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::STUDY_DESCRIPTION, VR::LO, "Thorax Übersicht"),
        text(tags::PATIENT_NAME, VR::PN, "MÜLLER^JÜRGEN"),
        text(tags::PATIENT_ID, VR::LO, "P-BULK"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, &number.to_string()),
        us(tags::ROWS, 64),
        us(tags::COLUMNS, 64),
        us(tags::BITS_ALLOCATED, 16),
        DataElement::new(
            tags::ICC_PROFILE,
            VR::OB,
            PrimitiveValue::U8(vec![1u8; 16].into()),
        ),
        text(
            tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
            VR::LO,
            "text/plain",
        ),
        document,
        DataElement::new(
            tags::ICON_IMAGE_SEQUENCE,
            VR::SQ,
            dimsum_dataset::dicom_core::value::DataSetSequence::from(vec![icon]),
        ),
        pixel_data,
    ])
}

/// [`bulky`]'s instance as a Part 10 file (Explicit VR Little Endian).
fn bulky_file(series: &str, number: u32) -> Vec<u8> {
    let sop = format!("{series}.{number}");
    let mut file =
        encode_header(&FileMeta::new(CT, &sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
    file.extend_from_slice(
        &identifier::encode(&bulky(series, number, true), EXPLICIT).expect("data set"),
    );
    file
}

/// The three instances of the bulk data tests: (series, number), two in [`SERIES`].
const BULKY: [(&str, u32); 3] = [(SERIES, 1), (SERIES, 2), (BULK_SERIES_2, 1)];

/// Stores [`BULKY`] through the client.
async fn store_bulky(client: &Client) {
    let outcome = client
        .store_instances(
            None,
            BULKY
                .iter()
                .map(|(series, number)| StowInstance::Bytes(bulky_file(series, *number).into()))
                .collect(),
        )
        .await
        .expect("STOW-RS");
    assert_eq!(outcome.status, 200, "{outcome:?}");
    assert_eq!(outcome.response.outcomes.len(), BULKY.len());
}

/// The URL of an instance of [`STUDY`] below the service root.
fn instance_url(served: &Served, series: &str, sop: &str) -> String {
    served.url(&format!("/studies/{STUDY}/series/{series}/instances/{sop}"))
}

/// The path of a BulkDataReference's selector as dimsum writes bulk data paths.
fn selector_text(selector: &dimsum_dataset::dicom_core::ops::AttributeSelector) -> String {
    use dimsum_dataset::dicom_core::ops::AttributeSelectorStep;
    selector
        .iter()
        .map(|step| match *step {
            AttributeSelectorStep::Nested { tag, item } => {
                format!("{:04X}{:04X}/{item}", tag.group(), tag.element())
            }
            AttributeSelectorStep::Tag(tag) => format!("{:04X}{:04X}", tag.group(), tag.element()),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_at_every_level_is_the_stored_data_set_without_its_bulk_data() {
    use dimsum_dataset::json;
    use dimsum_web::resource::Entity;

    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    store_bulky(&client).await;

    let study = Entity::Study {
        study: STUDY.to_owned(),
    };
    let series = Entity::Series {
        study: STUDY.to_owned(),
        series: SERIES.to_owned(),
    };
    let instance = Entity::Instance {
        study: STUDY.to_owned(),
        series: BULK_SERIES_2.to_owned(),
        instance: format!("{BULK_SERIES_2}.1"),
    };
    for (entity, expected) in [
        (&study, &BULKY[..]),
        (&series, &BULKY[..2]),
        (&instance, &BULKY[2..]),
    ] {
        let mut found = client.metadata(entity).await.expect("metadata");
        assert_eq!(found.len(), expected.len(), "{entity:?}");
        found.sort_by_key(|pending| uid_of(pending.object(), tags::SOP_INSTANCE_UID));
        for (pending, (series, number)) in found.iter().zip(expected) {
            let sop = format!("{series}.{number}");
            assert_eq!(uid_of(pending.object(), tags::SOP_INSTANCE_UID), sop);
            // Everything but the bulk data, as stored (text in UTF-8 once read).
            assert_eq!(
                json::to_json(pending.object()),
                json::to_json(&bulky(series, *number, false)),
                "{entity:?}: {sop}"
            );
            // Each bulk element named by its path and VR, at the instance's bulkdata resource.
            let references: Vec<(String, VR, String)> = pending
                .bulk_data()
                .iter()
                .map(|r| (selector_text(&r.path), r.vr, r.uri.clone()))
                .collect();
            let url = instance_url(&served, series, &sop);
            let wanted: Vec<(String, VR, String)> = bulk_values(*number)
                .into_iter()
                .map(|(path, vr, _)| (path.to_owned(), vr, format!("{url}/bulkdata/{path}")))
                .collect();
            assert_eq!(references, wanted, "{sop}");
        }
    }

    // Resolved, the metadata is the stored data set, bulk data included.
    let mut resolved = Vec::new();
    for pending in client.metadata(&study).await.expect("metadata") {
        resolved.push(client.resolve_bulk_data(pending).await.expect("resolved"));
    }
    resolved.sort_by_key(|object| uid_of(object, tags::SOP_INSTANCE_UID));
    assert_eq!(resolved.len(), BULKY.len());
    for (object, (series, number)) in resolved.iter().zip(BULKY) {
        assert_eq!(
            json::to_json(object),
            json::to_json(&bulky(series, number, true)),
            "{series}.{number} resolved"
        );
    }

    // As the server wrote it: the BulkDataURIs kept for another program.
    let written = client.metadata_json(&series).await.expect("metadata JSON");
    let items = written.as_array().expect("an array");
    assert_eq!(items.len(), 2);
    for item in items {
        let sop = item["00080018"]["Value"][0]
            .as_str()
            .expect("SOP Instance UID");
        assert_eq!(
            item["7FE00010"],
            serde_json::json!({
                "vr": "OW",
                "BulkDataURI": format!("{}/bulkdata/7FE00010", instance_url(&served, SERIES, sop))
            })
        );
        assert!(item["00282000"]["InlineBinary"].is_string(), "{item}");
    }

    // An entity the archive does not hold: the server's 404.
    let unknown = Entity::Series {
        study: STUDY.to_owned(),
        series: format!("{SERIES}.404"),
    };
    let error = client.metadata(&unknown).await.expect_err("no such series");
    assert_eq!(error.status(), Some(404), "{error}");
    // A dot segment is refused before sending; a slash is sent percent-encoded, so that it
    // cannot change the path, and the server refuses the segment.
    let error = client
        .metadata(&Entity::Study {
            study: "..".to_owned(),
        })
        .await
        .expect_err("a dot segment");
    assert!(matches!(error, ClientError::InvalidUid { .. }), "{error:?}");
    let error = client
        .metadata(&Entity::Study {
            study: "1.2.3/../4".to_owned(),
        })
        .await
        .expect_err("not a UID");
    assert_eq!(error.status(), Some(400), "{error}");
    match &error {
        ClientError::Status { url, .. } => {
            assert!(url.ends_with("/studies/1.2.3%2F..%2F4/metadata"), "{url}")
        }
        other => panic!("{other:?}"),
    }
}

/// A pydicom test file of tests/data: its bytes, and its Study, Series and SOP Instance UIDs.
fn test_file(name: &str) -> (Vec<u8>, [String; 3]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let object = dimsum_dataset::dicom_object::OpenFileOptions::new()
        .open_file(&path)
        .expect("a test file");
    let uids = [
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
    ]
    .map(|tag| uid_of(&object, tag));
    (std::fs::read(&path).expect("read"), uids)
}

/// The Pixel Data of a pydicom test file as dicom-rs reads it: the native value in little
/// endian, or the fragments of an encapsulated one.
fn pixel_data_of(name: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let object = dimsum_dataset::dicom_object::OpenFileOptions::new()
        .open_file(path)
        .expect("a test file");
    let element = object.element(tags::PIXEL_DATA).expect("pixel data");
    match element.value().fragments() {
        Some(fragments) => (Vec::new(), fragments.to_vec()),
        None => (element.to_bytes().expect("bytes").into_owned(), Vec::new()),
    }
}

/// Stores pydicom test files through the client (each once).
async fn store_files(client: &Client, files: Vec<Vec<u8>>) {
    let count = files.len();
    let outcome = client
        .store_instances(
            None,
            files
                .into_iter()
                .map(|file| StowInstance::Bytes(file.into()))
                .collect(),
        )
        .await
        .expect("STOW-RS");
    assert_eq!(outcome.status, 200, "{outcome:?}");
    assert_eq!(outcome.response.outcomes.len(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_data_uris_give_the_exact_bytes_of_each_element() {
    use dimsum_web::resource::Entity;

    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    store_bulky(&client).await;

    // Every bulk element of every instance, by its absolute BulkDataURI, and relative to the
    // service root with and without a leading slash.
    for (series, number) in BULKY {
        let sop = format!("{series}.{number}");
        let relative = format!("studies/{STUDY}/series/{series}/instances/{sop}/bulkdata");
        for (path, _, value) in bulk_values(number) {
            for uri in [
                format!("{}/bulkdata/{path}", instance_url(&served, series, &sop)),
                format!("{relative}/{path}"),
                format!("/{relative}/{path}"),
            ] {
                let bytes = client.bulkdata(&uri).await.expect("bulk data");
                assert!(bytes[..] == value[..], "{uri}: the bytes differ");
            }
        }
    }
    // No element there, and an element that is not bulk data: the server's 404.
    let relative = format!("studies/{STUDY}/series/{SERIES}/instances/{SERIES}.1/bulkdata");
    for path in ["00420012", "00100010", "00880200/1/7FE00010"] {
        let error = client
            .bulkdata(&format!("{relative}/{path}"))
            .await
            .expect_err("nothing there");
        assert_eq!(error.status(), Some(404), "{path}: {error}");
    }
    // A path that is not a tag path: 400.
    let error = client
        .bulkdata(&format!("{relative}/0042001G"))
        .await
        .expect_err("bad path");
    assert_eq!(error.status(), Some(400), "{error}");

    // Explicit VR Big Endian (pydicom's MR_small, in an archive of its own): the Pixel Data
    // comes in little endian, the same bytes as the little endian file's.
    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let (file, [study, series, sop]) = test_file("MR_small_bigendian.dcm");
    store_files(&client, vec![file]).await;
    let (little_endian, _) = pixel_data_of("MR_small.dcm");
    let entity = Entity::Instance {
        study,
        series,
        instance: sop,
    };
    let pending = client
        .metadata(&entity)
        .await
        .expect("metadata")
        .pop()
        .expect("one");
    let pixel_uri = pending
        .bulk_data()
        .iter()
        .find(|r| r.path.last_tag() == tags::PIXEL_DATA && r.path.num_steps() == 1)
        .map(|r| r.uri.clone())
        .expect("a BulkDataURI for the Pixel Data");
    assert!(pixel_uri.ends_with("/bulkdata/7FE00010"), "{pixel_uri}");
    let bytes = client.bulkdata(&pixel_uri).await.expect("pixel data");
    assert!(bytes[..] == little_endian[..], "the pixels differ");
    let resolved = client.resolve_bulk_data(pending).await.expect("resolved");
    let pixels = resolved
        .get(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("bytes");
    assert!(pixels[..] == little_endian[..]);
}

/// A native multi-frame instance of `frames` frames of 4 × 5 16-bit values (each frame's its
/// own), in [`SERIES`]; its file and its Pixel Data.
fn multi_frame(number: u32, frames: u32) -> (Vec<u8>, Vec<u8>) {
    let sop = format!("{SERIES}.{number}");
    let pixels: Vec<u8> = (0..frames as usize * 4 * 5)
        .flat_map(|i| (i as u16 * 7 + 3).to_le_bytes())
        .collect();
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let object = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::PATIENT_ID, VR::LO, "P-FRAMES"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, SERIES),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, 4),
        us(tags::COLUMNS, 5),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 16),
        us(tags::HIGH_BIT, 15),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(pixels.clone().into()),
        ),
    ]);
    let mut file =
        encode_header(&FileMeta::new(CT, &sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
    file.extend_from_slice(&identifier::encode(&object, EXPLICIT).expect("data set"));
    (file, pixels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_native_byte_for_byte_and_encapsulated_as_stored() {
    use dimsum_web::resource::Entity;

    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let (mr_file, [mr_study, mr_series, mr_sop]) = test_file("MR_small.dcm");
    let (rle_file, [rle_study, rle_series, rle_sop]) = test_file("SC_rgb_rle_2frame.dcm");
    let (multi_file, multi_pixels) = multi_frame(1, 6);
    let multi_sop = format!("{SERIES}.1");
    store_files(&client, vec![mr_file, rle_file, multi_file]).await;

    // Native: the frame is the file's Pixel Data, byte for byte, in Explicit VR Little
    // Endian whether asked as such or as stored.
    let (mr_pixels, _) = pixel_data_of("MR_small.dcm");
    assert_eq!(mr_pixels.len(), 64 * 64 * 2);
    for syntax in [
        None,
        Some(TransferSyntax::Any),
        Some(TransferSyntax::Uid(EXPLICIT.to_owned())),
    ] {
        let frames = client
            .frames(&mr_study, &mr_series, &mr_sop, &[1], syntax.clone())
            .await
            .expect("frame 1");
        assert_eq!(frames.len(), 1, "{syntax:?}");
        let (headers, body) = &frames[0];
        assert!(headers.content_type().is("application", "octet-stream"));
        assert_eq!(
            headers.content_type().parameter("transfer-syntax"),
            Some(EXPLICIT),
            "{syntax:?}"
        );
        assert!(body[..] == mr_pixels[..], "{syntax:?}: the frame differs");
    }
    // Several frames of a multi-frame instance, in the order asked.
    let frames = client
        .frames(STUDY, SERIES, &multi_sop, &[3, 1, 6], None)
        .await
        .expect("frames");
    let frame_size = 4 * 5 * 2;
    assert_eq!(frames.len(), 3);
    for ((_, body), frame) in frames.iter().zip([3usize, 1, 6]) {
        let start = (frame - 1) * frame_size;
        assert!(
            body[..] == multi_pixels[start..start + frame_size],
            "frame {frame} differs"
        );
    }

    // Encapsulated (RLE, two frames): as stored, each frame is its fragment, named with the
    // stored transfer syntax; asked by its UID, the same.
    let (_, fragments) = pixel_data_of("SC_rgb_rle_2frame.dcm");
    assert_eq!(fragments.len(), 2);
    for syntax in [TransferSyntax::Any, TransferSyntax::Uid(RLE.to_owned())] {
        let frames = client
            .frames(
                &rle_study,
                &rle_series,
                &rle_sop,
                &[2, 1],
                Some(syntax.clone()),
            )
            .await
            .expect("frames as stored");
        assert_eq!(frames.len(), 2);
        for ((headers, body), fragment) in frames.iter().zip([&fragments[1], &fragments[0]]) {
            assert!(headers.content_type().is("application", "octet-stream"));
            assert_eq!(
                headers.content_type().parameter("transfer-syntax"),
                Some(RLE),
                "{syntax:?}"
            );
            assert!(body[..] == fragment[..], "{syntax:?}: a frame differs");
        }
    }
    // By default, decoded: interleaved RGB, the first frame starting with a red band and the
    // second (inverted) with cyan.
    let decoded = client
        .frames(&rle_study, &rle_series, &rle_sop, &[1, 2], None)
        .await
        .expect("decoded frames");
    assert_eq!(
        decoded[0].0.content_type().parameter("transfer-syntax"),
        Some(EXPLICIT)
    );
    assert_eq!(decoded[0].1.len(), 100 * 100 * 3);
    assert_eq!(decoded[0].1[..3], [255, 0, 0]);
    assert_eq!(decoded[1].1[..3], [0, 255, 255]);

    // The metadata's BulkDataURI of the encapsulated Pixel Data is its Frames resource;
    // resolved, it is every frame decoded, one after the other.
    let instance = Entity::Instance {
        study: rle_study.clone(),
        series: rle_series.clone(),
        instance: rle_sop.clone(),
    };
    let pending = client
        .metadata(&instance)
        .await
        .expect("metadata")
        .pop()
        .expect("one");
    let references = pending.bulk_data();
    assert_eq!(references.len(), 1);
    let frames_uri = references[0].uri.clone();
    assert!(
        references[0]
            .uri
            .ends_with(&format!("/instances/{rle_sop}/frames/1,2")),
        "{}",
        references[0].uri
    );
    let resolved = client.resolve_bulk_data(pending).await.expect("resolved");
    let pixels = resolved
        .get(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("bytes");
    assert!(pixels[..] == [decoded[0].1.clone(), decoded[1].1.clone()].concat()[..]);
    // The frames together count against the in-memory limit: two of 30,000 bytes pass 40,000.
    let limited = Client::builder(&served.url(""))
        .limits(ClientLimits {
            max_in_memory_part_bytes: 40_000,
            ..ClientLimits::default()
        })
        .build()
        .expect("client");
    match limited.bulkdata(&frames_uri).await {
        Err(ClientError::TooLarge { limit, .. }) => assert_eq!(limit, 40_000),
        other => panic!("{other:?}"),
    }

    // Frame 0 is not a frame number: the server's 400. A frame past the end: 404, saying
    // which and how many there are.
    let error = client
        .frames(&rle_study, &rle_series, &rle_sop, &[0], None)
        .await
        .expect_err("frame 0");
    assert_eq!(error.status(), Some(400), "{error}");
    let error = client
        .frames(&rle_study, &rle_series, &rle_sop, &[1, 3], None)
        .await
        .expect_err("frame 3 of 2");
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(error.to_string().contains("frame 3"), "{error}");
    let error = client
        .frames(STUDY, SERIES, &multi_sop, &[7], Some(TransferSyntax::Any))
        .await
        .expect_err("frame 7 of 6");
    assert_eq!(error.status(), Some(404), "{error}");
    // An instance the archive does not hold, or one named under another series.
    let error = client
        .frames(STUDY, SERIES, &format!("{SERIES}.404"), &[1], None)
        .await
        .expect_err("unknown instance");
    assert_eq!(error.status(), Some(404), "{error}");
    let error = client
        .frames(&mr_study, &rle_series, &mr_sop, &[1], None)
        .await
        .expect_err("another series");
    assert_eq!(error.status(), Some(404), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_images_decode_to_the_size_of_the_image_or_viewport() {
    use dimsum_web::resource::Entity;
    use dimsum_web::wado::ImageType;
    use image::GenericImageView;

    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    let (mr_file, [mr_study, mr_series, mr_sop]) = test_file("MR_small.dcm");
    let (rle_file, [rle_study, rle_series, rle_sop]) = test_file("SC_rgb_rle_2frame.dcm");
    store_files(&client, vec![mr_file, rle_file]).await;
    let mr = Entity::Instance {
        study: mr_study.clone(),
        series: mr_series.clone(),
        instance: mr_sop.clone(),
    };
    let rgb = Entity::Instance {
        study: rle_study.clone(),
        series: rle_series.clone(),
        instance: rle_sop.clone(),
    };
    let decoded = |rendered: &dimsum_web::client::Rendered, format: image::ImageFormat| {
        assert_eq!(
            image::guess_format(&rendered.image).expect("an image format"),
            format
        );
        image::load_from_memory(&rendered.image).expect("decodes")
    };

    // The instance as JPEG and PNG: 64 × 64, as the image.
    let jpeg = client
        .rendered(&Resource::Rendered(mr.clone(), None), ImageType::Jpeg, &[])
        .await
        .expect("JPEG");
    assert!(
        jpeg.content_type.is("image", "jpeg"),
        "{}",
        jpeg.content_type
    );
    assert_eq!(
        decoded(&jpeg, image::ImageFormat::Jpeg).dimensions(),
        (64, 64)
    );
    let png = client
        .rendered(&Resource::Rendered(mr.clone(), None), ImageType::Png, &[])
        .await
        .expect("PNG");
    assert!(png.content_type.is("image", "png"), "{}", png.content_type);
    let plain = decoded(&png, image::ImageFormat::Png);
    assert_eq!(plain.dimensions(), (64, 64));
    // A viewport, and a source region flipped left to right.
    let small = client
        .rendered(
            &Resource::Rendered(mr.clone(), None),
            ImageType::Png,
            &[("viewport", "32,32")],
        )
        .await
        .expect("viewport");
    assert_eq!(
        decoded(&small, image::ImageFormat::Png).dimensions(),
        (32, 32)
    );
    let flipped = client
        .rendered(
            &Resource::Rendered(mr.clone(), None),
            ImageType::Png,
            &[("viewport", "64,64,0,0,-64,64")],
        )
        .await
        .expect("flipped");
    let flipped = decoded(&flipped, image::ImageFormat::Png);
    assert_eq!(flipped.get_pixel(0, 10), plain.get_pixel(63, 10));

    // One frame of the RLE instance: 100 × 100 RGB, the second frame's first band cyan, the
    // first's red.
    for (frame, colour) in [(1, [255u8, 0, 0]), (2, [0, 255, 255])] {
        let rendered = client
            .rendered(
                &Resource::Rendered(rgb.clone(), Some(vec![frame])),
                ImageType::Png,
                &[],
            )
            .await
            .expect("a rendered frame");
        let image = decoded(&rendered, image::ImageFormat::Png).to_rgb8();
        assert_eq!(image.dimensions(), (100, 100));
        assert_eq!(image.get_pixel(0, 0).0, colour, "frame {frame}");
    }
    // Both frames of the instance as one animated GIF of two frames, and a thumbnail that
    // fits 128 × 128.
    let gif = client
        .rendered(
            &Resource::Rendered(rgb.clone(), Some(vec![1, 2])),
            ImageType::Gif,
            &[],
        )
        .await
        .expect("GIF");
    assert!(gif.content_type.is("image", "gif"));
    assert_eq!(
        decoded(&gif, image::ImageFormat::Gif).dimensions(),
        (100, 100)
    );
    {
        use image::AnimationDecoder;
        let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&gif.image[..]))
            .expect("a GIF");
        assert_eq!(decoder.into_frames().count(), 2);
    }
    let thumbnail = client
        .rendered(
            &Resource::Thumbnail(
                Entity::Series {
                    study: mr_study.clone(),
                    series: mr_series.clone(),
                },
                None,
            ),
            ImageType::Jpeg,
            &[("viewport", "16,16")],
        )
        .await
        .expect("series thumbnail");
    assert_eq!(
        decoded(&thumbnail, image::ImageFormat::Jpeg).dimensions(),
        (16, 16)
    );

    // Refusals: a parameter value the server refuses (400), a frame past the end (404), an
    // instance it does not hold (404); a resource that has no rendered representation is
    // refused before sending.
    let error = client
        .rendered(
            &Resource::Rendered(mr.clone(), None),
            ImageType::Jpeg,
            &[("quality", "0")],
        )
        .await
        .expect_err("quality 0");
    assert_eq!(error.status(), Some(400), "{error}");
    let error = client
        .rendered(
            &Resource::Rendered(rgb.clone(), Some(vec![3])),
            ImageType::Jpeg,
            &[],
        )
        .await
        .expect_err("frame 3 of 2");
    assert_eq!(error.status(), Some(404), "{error}");
    let error = client
        .rendered(
            &Resource::Rendered(
                Entity::Instance {
                    study: mr_study.clone(),
                    series: mr_series.clone(),
                    instance: format!("{mr_sop}.404"),
                },
                None,
            ),
            ImageType::Png,
            &[],
        )
        .await
        .expect_err("unknown instance");
    assert_eq!(error.status(), Some(404), "{error}");
    let error = client
        .rendered(&Resource::Metadata(mr.clone()), ImageType::Jpeg, &[])
        .await
        .expect_err("metadata is not rendered");
    assert!(matches!(error, ClientError::Representation(_)), "{error:?}");
}

/// A series of [`STUDY`] other than [`SERIES`].
const SERIES_B: &str = "1.2.826.0.1.3680043.2.1125.7.1.2";
/// A third series of [`STUDY`].
const SERIES_C: &str = "1.2.826.0.1.3680043.2.1125.7.1.3";

/// An 8-bit MONOCHROME2 image of `rows` × `columns` and `frames` frames in `series` of
/// [`STUDY`] (a gradient, each frame its own), or the same attributes without Pixel Data when
/// `frames` is 0; its Part 10 file.
fn grey_image(series: &str, number: u32, rows: u16, columns: u16, frames: u32) -> Vec<u8> {
    let sop = format!("{series}.{number}");
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let mut object = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::PATIENT_ID, VR::LO, "P-RENDERED"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.max(1).to_string()),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, rows),
        us(tags::COLUMNS, columns),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
    ]);
    if frames > 0 {
        let size = usize::from(rows) * usize::from(columns);
        let pixels: Vec<u8> = (0..frames as usize * size)
            .map(|i| ((i % size) * 255 / size + i / size * 30) as u8)
            .collect();
        object.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(pixels.into()),
        ));
    }
    let mut file =
        encode_header(&FileMeta::new(CT, &sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
    file.extend_from_slice(&identifier::encode(&object, EXPLICIT).expect("data set"));
    file
}

/// The (width, height) of each rendered image, decoded as `format`, sorted.
fn sizes_of(
    images: &[dimsum_web::client::Rendered],
    format: image::ImageFormat,
) -> Vec<(u32, u32)> {
    use image::GenericImageView;
    let mut sizes: Vec<(u32, u32)> = images
        .iter()
        .map(|rendered| {
            assert_eq!(
                image::guess_format(&rendered.image).expect("an image format"),
                format
            );
            assert_eq!(
                Some(rendered.content_type.essence()),
                format.to_mime_type().split(';').next().map(str::to_owned),
                "the part's media type"
            );
            image::load_from_memory_with_format(&rendered.image, format)
                .expect("decodes")
                .dimensions()
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_study_or_series_gives_one_image_per_instance_with_pixel_data() {
    use dimsum_web::resource::Entity;
    use dimsum_web::wado::ImageType;

    let served = Served::start(WebConfig::default()).await;
    let client = client_of(&served);
    // Three series of one study: six images (one of three frames), and an instance without
    // Pixel Data, which is left out. Every size differs, so that each image is known by it.
    store_files(
        &client,
        vec![
            grey_image(SERIES, 1, 20, 30, 1),
            grey_image(SERIES, 2, 24, 16, 1),
            grey_image(SERIES, 3, 10, 40, 1),
            grey_image(SERIES_B, 1, 12, 12, 3),
            grey_image(SERIES_B, 2, 8, 50, 1),
            grey_image(SERIES_C, 1, 30, 20, 1),
            grey_image(SERIES_C, 2, 6, 6, 0),
        ],
    )
    .await;
    let study = Entity::Study {
        study: STUDY.to_owned(),
    };
    let series = |series: &str| Entity::Series {
        study: STUDY.to_owned(),
        series: series.to_owned(),
    };
    // (width, height) of each image with pixel data, sorted.
    let mut every: Vec<(u32, u32)> =
        vec![(30, 20), (16, 24), (40, 10), (12, 12), (50, 8), (20, 30)];
    every.sort_unstable();

    // The study, as PNG and as JPEG: an image per instance with pixel data, each of its
    // instance's size.
    let png = client
        .rendered_images(
            &Resource::Rendered(study.clone(), None),
            ImageType::Png,
            &[],
        )
        .await
        .expect("the rendered study");
    assert_eq!(sizes_of(&png, image::ImageFormat::Png), every);
    let jpeg = client
        .rendered_images(
            &Resource::Rendered(study.clone(), None),
            ImageType::Jpeg,
            &[],
        )
        .await
        .expect("the rendered study as JPEG");
    assert_eq!(sizes_of(&jpeg, image::ImageFormat::Jpeg), every);

    // A series, and a viewport applied to each of its images (fit in 80 × 80, the aspect
    // ratio kept).
    let images = client
        .rendered_images(
            &Resource::Rendered(series(SERIES), None),
            ImageType::Png,
            &[],
        )
        .await
        .expect("the rendered series");
    assert_eq!(
        sizes_of(&images, image::ImageFormat::Png),
        vec![(16, 24), (30, 20), (40, 10)]
    );
    let images = client
        .rendered_images(
            &Resource::Rendered(series(SERIES), None),
            ImageType::Png,
            &[("viewport", "80,80")],
        )
        .await
        .expect("the rendered series in a viewport");
    assert_eq!(
        sizes_of(&images, image::ImageFormat::Png),
        vec![(53, 80), (80, 20), (80, 53)]
    );
    // The multi-frame instance's series: its first frame stands for it.
    let images = client
        .rendered_images(
            &Resource::Rendered(series(SERIES_B), None),
            ImageType::Png,
            &[],
        )
        .await
        .expect("series B");
    assert_eq!(
        sizes_of(&images, image::ImageFormat::Png),
        vec![(12, 12), (50, 8)]
    );

    // Frames of an instance: one image each, GIF included (as parts, not one animation).
    let multi = Entity::Instance {
        study: STUDY.to_owned(),
        series: SERIES_B.to_owned(),
        instance: format!("{SERIES_B}.1"),
    };
    for (image_type, format) in [
        (ImageType::Png, image::ImageFormat::Png),
        (ImageType::Gif, image::ImageFormat::Gif),
    ] {
        let images = client
            .rendered_images(
                &Resource::Rendered(multi.clone(), Some(vec![3, 1])),
                image_type,
                &[],
            )
            .await
            .expect("two frames");
        assert_eq!(sizes_of(&images, format), vec![(12, 12), (12, 12)]);
    }
    // The frames differ (each frame's gradient is brighter by 30), in the order asked.
    let frames = client
        .rendered_images(
            &Resource::Rendered(multi.clone(), Some(vec![1, 3])),
            ImageType::Png,
            &[],
        )
        .await
        .expect("frames 1 and 3");
    let first = image::load_from_memory(&frames[0].image)
        .expect("png")
        .to_luma8();
    let third = image::load_from_memory(&frames[1].image)
        .expect("png")
        .to_luma8();
    assert_ne!(first.as_raw(), third.as_raw());
    // One instance, and a thumbnail: a list of one.
    let one = client
        .rendered_images(
            &Resource::Rendered(multi.clone(), None),
            ImageType::Png,
            &[],
        )
        .await
        .expect("an instance");
    assert_eq!(sizes_of(&one, image::ImageFormat::Png), vec![(12, 12)]);
    let thumbnail = client
        .rendered_images(
            &Resource::Thumbnail(study.clone(), None),
            ImageType::Jpeg,
            &[("viewport", "16,16")],
        )
        .await
        .expect("a thumbnail");
    assert_eq!(thumbnail.len(), 1);

    // Client::rendered reads one image: a series that renders to one (the other instance has
    // no pixel data) gives it; one of several images is a typed error that says where to go.
    let single = client
        .rendered(
            &Resource::Rendered(series(SERIES_C), None),
            ImageType::Png,
            &[],
        )
        .await
        .expect("a series of one image");
    assert_eq!(
        sizes_of(std::slice::from_ref(&single), image::ImageFormat::Png),
        vec![(20, 30)]
    );
    for resource in [
        Resource::Rendered(study.clone(), None),
        Resource::Rendered(series(SERIES), None),
    ] {
        match client.rendered(&resource, ImageType::Jpeg, &[]).await {
            Err(error @ ClientError::SeveralImages { .. }) => {
                assert!(error.to_string().contains("rendered_images"), "{error}");
            }
            other => panic!("{resource}: {other:?}"),
        }
    }

    // The limits: each image within max_rendered_bytes, all of them within
    // max_in_memory_part_bytes.
    let total: u64 = png.iter().map(|r| r.image.len() as u64).sum();
    let largest = png
        .iter()
        .map(|r| r.image.len() as u64)
        .max()
        .expect("images");
    let limited = |limits: ClientLimits| {
        Client::builder(&served.url(""))
            .limits(limits)
            .build()
            .expect("client")
    };
    let error = limited(ClientLimits {
        max_in_memory_part_bytes: total - 1,
        ..ClientLimits::default()
    })
    .rendered_images(
        &Resource::Rendered(study.clone(), None),
        ImageType::Png,
        &[],
    )
    .await
    .expect_err("over the total");
    match error {
        ClientError::TooLarge { limit, what, .. } => {
            assert_eq!(limit, total - 1);
            assert_eq!(what, "the rendered images together");
        }
        other => panic!("{other:?}"),
    }
    let error = limited(ClientLimits {
        max_rendered_bytes: largest - 1,
        ..ClientLimits::default()
    })
    .rendered_images(
        &Resource::Rendered(study.clone(), None),
        ImageType::Png,
        &[],
    )
    .await
    .expect_err("one image over the limit");
    match error {
        ClientError::TooLarge { limit, what, .. } => {
            assert_eq!(limit, largest - 1);
            assert_eq!(what, "a rendered image");
        }
        other => panic!("{other:?}"),
    }
    // And exactly at the limits, everything.
    let images = limited(ClientLimits {
        max_in_memory_part_bytes: total,
        max_rendered_bytes: largest,
        ..ClientLimits::default()
    })
    .rendered_images(
        &Resource::Rendered(study.clone(), None),
        ImageType::Png,
        &[],
    )
    .await
    .expect("at the limits");
    assert_eq!(images.len(), 6);

    // A study the archive does not hold: the server's 404.
    let error = client
        .rendered_images(
            &Resource::Rendered(
                Entity::Study {
                    study: OTHER_STUDY.to_owned(),
                },
                None,
            ),
            ImageType::Png,
            &[],
        )
        .await
        .expect_err("no such study");
    assert_eq!(error.status(), Some(404), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_frame_list_is_refused_before_any_request() {
    use dimsum_web::resource::{Entity, ResourceError};
    use dimsum_web::wado::ImageType;

    // Nothing listens on this port: a request would be a transport error.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let client = Client::new(&format!("http://{address}/dicom-web")).expect("client");
    let sop = format!("{SERIES}.1");

    let error = client
        .frames(STUDY, SERIES, &sop, &[], None)
        .await
        .expect_err("no frame");
    assert!(
        matches!(error, ClientError::Resource(ResourceError::NoFrames)),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "the frame list is empty");
    let instance = Entity::Instance {
        study: STUDY.to_owned(),
        series: SERIES.to_owned(),
        instance: sop.clone(),
    };
    for resource in [
        Resource::Rendered(instance.clone(), Some(Vec::new())),
        Resource::Thumbnail(instance.clone(), Some(Vec::new())),
    ] {
        let error = client
            .rendered(&resource, ImageType::Jpeg, &[])
            .await
            .expect_err("no frame");
        assert!(
            matches!(error, ClientError::Resource(ResourceError::NoFrames)),
            "{error:?}"
        );
        let error = client
            .rendered_images(&resource, ImageType::Jpeg, &[])
            .await
            .expect_err("no frame");
        assert!(
            matches!(error, ClientError::Resource(ResourceError::NoFrames)),
            "{error:?}"
        );
    }
    // The same calls with a frame do go out (and find nobody).
    let error = client
        .frames(STUDY, SERIES, &sop, &[1], None)
        .await
        .expect_err("nobody listens");
    assert!(error.is_transport(), "{error:?}");
    let error = client
        .rendered(
            &Resource::Rendered(instance, Some(vec![1])),
            ImageType::Jpeg,
            &[],
        )
        .await
        .expect_err("nobody listens");
    assert!(error.is_transport(), "{error:?}");
}
