//! The DICOMweb client (`dimsum_web::client`, feature `client`) against our own server over a
//! temporary archive on a loopback port: what it stores is found and retrieved byte for byte,
//! at every level, read as a stream within its limits; the server's refusals come back as typed
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
