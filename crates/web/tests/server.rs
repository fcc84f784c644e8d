//! The DICOMweb server (`dimsum_web::server`) over a real archive in a temporary folder, served
//! on a loopback port and called over HTTP: STOW-RS stores what WADO-RS gives back and C-FIND
//! finds, and bad requests (malformed multipart, wrong media types, unknown studies, bodies
//! over the limit, dot segments) are refused with their status and store or read nothing.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_instances_come_back_byte_for_byte_and_are_found_by_c_find() {
    let served = Served::start(WebConfig::default()).await;
    let first = Instance::new(STUDY, SERIES, 1, 3000);
    let second = Instance::new(STUDY, SERIES, 2, 300_000);

    // The first in one piece with a Content-Length, the second chunked in small pieces.
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(&[first.file()]))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/dicom+json");
    let body = json(&response.text().await.expect("body"));
    let referenced = &body["00081199"]["Value"];
    assert_eq!(referenced.as_array().expect("items").len(), 1);
    assert_eq!(referenced[0]["00081155"]["Value"][0], first.sop.as_str());
    assert_eq!(
        referenced[0]["00081190"]["Value"][0],
        format!(
            "{}/studies/{STUDY}/series/{SERIES}/instances/{}",
            served.url(""),
            first.sop
        )
        .as_str()
    );
    assert_eq!(
        body["00081190"]["Value"][0],
        served.url(&format!("/studies/{STUDY}")).as_str()
    );
    assert!(body.get("00081198").is_none(), "{body}");

    let chunks: Vec<Result<Bytes, std::io::Error>> = multipart(&[second.file()])
        .chunks(1021)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let response = served
        .stow(
            &format!("/studies/{STUDY}"),
            DICOM_MULTIPART,
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(served.instances().await, 2);

    // The study back, as stored.
    let response = served
        .client
        .get(served.url(&format!("/studies/{STUDY}")))
        .header("Accept", ANY_SYNTAX)
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(response.status(), 200);
    let mut parts = parts_of(response).await;
    assert_eq!(parts.len(), 2);
    parts.sort_by_key(|(_, body)| split(body).0.media_storage_sop_instance_uid);
    for ((content_type, body), sent) in parts.iter().zip([&first, &second]) {
        assert!(content_type.is("application", "dicom"));
        assert_eq!(content_type.parameter("transfer-syntax"), Some(EXPLICIT));
        let (meta, data_set) = split(body);
        assert_eq!(meta.media_storage_sop_instance_uid, sent.sop);
        assert_eq!(meta.transfer_syntax_uid, EXPLICIT);
        assert!(
            data_set == sent.data_set,
            "the data set of {} differs",
            sent.sop
        );
    }

    // One instance, with the default transfer syntax (Explicit VR Little Endian, as stored).
    let response = served
        .client
        .get(served.url(&format!(
            "/studies/{STUDY}/series/{SERIES}/instances/{}",
            second.sop
        )))
        .header("Accept", "multipart/related; type=application/dicom")
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(response.status(), 200);
    let parts = parts_of(response).await;
    assert_eq!(parts.len(), 1);
    assert!(split(&parts[0].1).1 == second.data_set);

    // The series.
    let response = served
        .client
        .get(served.url(&format!("/studies/{STUDY}/series/{SERIES}")))
        .header("Accept", ANY_SYNTAX)
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(parts_of(response).await.len(), 2);

    // C-FIND finds both.
    let mut expected = vec![first.sop.clone(), second.sop.clone()];
    expected.sort();
    assert_eq!(served.c_find(STUDY).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_another_study_is_refused_under_a_study_url_and_not_kept() {
    let served = Served::start(WebConfig::default()).await;
    let other = Instance::new(
        "1.2.826.0.1.3680043.2.1125.7.2",
        "1.2.826.0.1.3680043.2.1125.7.2.1",
        1,
        500,
    );
    let mine = Instance::new(STUDY, SERIES, 3, 500);

    // Alone: nothing stored, 409.
    let response = served
        .stow(
            &format!("/studies/{STUDY}"),
            DICOM_MULTIPART,
            multipart(&[other.file()]),
        )
        .await;
    assert_eq!(response.status(), 409);
    let body = json(&response.text().await.expect("body"));
    let failed = &body["00081198"]["Value"][0];
    assert_eq!(failed["00081155"]["Value"][0], other.sop.as_str());
    assert_eq!(failed["00081197"]["Value"][0], 0xA900);
    assert_eq!(served.instances().await, 0);

    // With one of the study: 202, one stored.
    let response = served
        .stow(
            &format!("/studies/{STUDY}"),
            DICOM_MULTIPART,
            multipart(&[mine.file(), other.file()]),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body = json(&response.text().await.expect("body"));
    assert_eq!(
        body["00081199"]["Value"][0]["00081155"]["Value"][0],
        mine.sop.as_str()
    );
    assert_eq!(
        body["00081198"]["Value"][0]["00081155"]["Value"][0],
        other.sop.as_str()
    );
    assert_eq!(served.c_find(STUDY).await, vec![mine.sop.clone()]);
    assert!(
        served
            .archive
            .lookup(&other.sop)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(other.study, "1.2.826.0.1.3680043.2.1125.7.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_multipart_body_is_400_and_nothing_is_stored() {
    let served = Served::start(WebConfig::default()).await;
    let instance = Instance::new(STUDY, SERIES, 4, 500);

    // No closing delimiter.
    let mut truncated = multipart(&[instance.file()]);
    truncated.truncate(truncated.len() - format!("\r\n--{BOUNDARY}--\r\n").len());
    // No delimiter at all.
    let undelimited = instance.file();
    // A delimiter followed by garbage.
    let mut garbage = format!("--{BOUNDARY}garbage\r\n\r\n").into_bytes();
    garbage.extend_from_slice(&instance.file());
    for body in [truncated, undelimited, garbage] {
        let response = served.stow("/studies", DICOM_MULTIPART, body).await;
        assert_eq!(response.status(), 400);
        let text = response.text().await.expect("body");
        assert!(text.contains("multipart"), "{text}");
    }
    // A boundary that RFC 2046 does not allow.
    let response = served
        .stow(
            "/studies",
            "multipart/related; type=\"application/dicom\"; boundary=\"\"",
            multipart(&[]),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(served.instances().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_is_not_dicom_fails_alone() {
    let served = Served::start(WebConfig::default()).await;
    let response = served
        .stow(
            "/studies",
            DICOM_MULTIPART,
            multipart(&[b"not a DICOM file at all".to_vec()]),
        )
        .await;
    assert_eq!(response.status(), 409);
    let body = json(&response.text().await.expect("body"));
    assert_eq!(body["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000);
    assert_eq!(served.instances().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_media_types_are_415() {
    let served = Served::start(WebConfig::default()).await;
    let file = Instance::new(STUDY, SERIES, 5, 100).file();
    for content_type in [
        "application/json",
        "application/dicom",
        "multipart/related; type=\"application/dicom+json\"; boundary=dimsum-test-boundary",
        "multipart/related; boundary=dimsum-test-boundary",
    ] {
        let response = served
            .stow(
                "/studies",
                content_type,
                multipart(std::slice::from_ref(&file)),
            )
            .await;
        assert_eq!(response.status(), 415, "{content_type}");
    }
    let response = served
        .client
        .post(served.url("/studies"))
        .body(multipart(&[file]))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    assert_eq!(served.instances().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_entities_are_404_and_other_transfer_syntaxes_406() {
    let served = Served::start(WebConfig::default()).await;
    let instance = Instance::new(STUDY, SERIES, 6, 100);
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(&[instance.file()]))
        .await;
    assert_eq!(response.status(), 200);

    for path in [
        "/studies/1.2.3.4".to_owned(),
        format!("/studies/{STUDY}/series/1.2.3.4"),
        format!("/studies/{STUDY}/series/{SERIES}/instances/1.2.3.4"),
        format!(
            "/studies/1.2.3.4/series/{SERIES}/instances/{}",
            instance.sop
        ),
        "/nothing/here".to_owned(),
    ] {
        let response = served
            .client
            .get(served.url(&path))
            .header("Accept", ANY_SYNTAX)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = served
        .client
        .get(served.url("/studies/not-a-uid"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);

    let response = served
        .client
        .get(served.url(&format!("/studies/{STUDY}")))
        .header(
            "Accept",
            // JPEG Baseline: uncompressed data is never compressed (tests/server_transcode.rs
            // has the conversions that are made).
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 406);
    let text = response.text().await.expect("body");
    assert!(text.contains("compressing"), "{text}");
    let response = served
        .client
        .get(served.url(&format!("/studies/{STUDY}")))
        .header("Accept", "application/dicom+json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_nothing_is_stored() {
    let mut config = WebConfig::default();
    config.max_body_bytes = 16 * 1024;

    let served = Served::start(config).await;
    let body = multipart(&[Instance::new(STUDY, SERIES, 7, 32 * 1024).file()]);

    // With a Content-Length.
    let response = served.stow("/studies", DICOM_MULTIPART, body.clone()).await;
    assert_eq!(response.status(), 413);
    // Chunked. The server answers as soon as the body passes the limit and closes the
    // connection with the rest of the body unread, which resets it: now and then the client
    // loses the answer with it (reqwest: IncompleteMessage). Such a try is made again; an
    // answer, when it comes, must be 413.
    let mut status = None;
    for _ in 0..5 {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(4096)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        let sent = served
            .try_stow(
                "/studies",
                DICOM_MULTIPART,
                reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
            )
            .await;
        match sent {
            Ok(response) => {
                status = Some(response.status());
                break;
            }
            Err(error) if error.is_request() => continue,
            Err(error) => panic!("STOW-RS request: {error}"),
        }
    }
    assert_eq!(status, Some(reqwest::StatusCode::PAYLOAD_TOO_LARGE));
    assert_eq!(served.instances().await, 0);

    // A part over its own limit.
    let mut config = WebConfig::default();
    config.max_part_bytes = 8 * 1024;

    let served = Served::start(config).await;
    let response = served.stow("/studies", DICOM_MULTIPART, body).await;
    assert_eq!(response.status(), 413);
    assert_eq!(served.instances().await, 0);
}

/// Sends `request` as raw bytes (no client normalizes its path) and returns the response.
async fn raw(address: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_reach_the_file_system() {
    let served = Served::start(WebConfig::default()).await;
    let instance = Instance::new(STUDY, SERIES, 8, 100);
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(&[instance.file()]))
        .await;
    assert_eq!(response.status(), 200);
    // A file the paths below would name if a URL were a path.
    let secret = served._data.path().join("secret");
    std::fs::write(&secret, "SECRET-CONTENT").expect("secret");

    for path in [
        format!("/dicom-web/studies/{STUDY}/../../../secret"),
        format!("/dicom-web/studies/{STUDY}/series/%2e%2e/instances/secret"),
        format!("/dicom-web/studies/{STUDY}/series/..%2f..%2fsecret"),
        "/dicom-web/studies/..".to_owned(),
        "/dicom-web/../secret".to_owned(),
    ] {
        let response = raw(
            served.address,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {ANY_SYNTAX}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let status = response.get(9..12).unwrap_or_default();
        assert!(status == "400" || status == "404", "{path}: {response}");
        assert!(!response.contains("SECRET-CONTENT"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_are_on_errors_too() {
    let mut config = WebConfig::default();
    config.cors = CorsOrigins::list(["http://viewer.example"]).expect("origins");
    config.max_body_bytes = 1024;

    let served = Served::start(config).await;
    for (method, path, body) in [
        (reqwest::Method::GET, "/studies/1.2.3.4", Vec::new()),
        (reqwest::Method::POST, "/studies", vec![0u8; 4096]),
        (reqwest::Method::GET, "/studies/x..y", Vec::new()),
    ] {
        let response = served
            .client
            .request(method, served.url(path))
            .header("Origin", "http://viewer.example")
            .header("Content-Type", DICOM_MULTIPART)
            .body(body)
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_client_error(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "http://viewer.example",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_after_a_stored_part_is_202_with_a_warning() {
    let served = Served::start(WebConfig::default()).await;
    let kept = Instance::new(STUDY, SERIES, 9, 500);
    let cut = Instance::new(STUDY, SERIES, 10, 500);
    let mut body = multipart(&[kept.file(), cut.file()]);
    body.truncate(body.len() - format!("\r\n--{BOUNDARY}--\r\n").len());
    let response = served.stow("/studies", DICOM_MULTIPART, body).await;
    assert_eq!(response.status(), 202);
    let warning = response.headers()["warning"]
        .to_str()
        .expect("warning")
        .to_owned();
    assert!(warning.starts_with("299 dimsum \""), "{warning}");
    assert!(warning.contains("closing delimiter"), "{warning}");
    let body = json(&response.text().await.expect("body"));
    assert_eq!(
        body["00081199"]["Value"][0]["00081155"]["Value"][0],
        kept.sop.as_str()
    );
    assert_eq!(served.c_find(STUDY).await, vec![kept.sop.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicom_json_is_compressed_when_asked_for_and_instances_are_not() {
    use std::io::Read;

    let served = Served::start(WebConfig::default()).await;
    let instances: Vec<Instance> = (1..=8)
        .map(|number| Instance::new(STUDY, SERIES, number, 2000))
        .collect();
    let files: Vec<Vec<u8>> = instances.iter().map(Instance::file).collect();
    let store = |encoding: &'static str| {
        served
            .client
            .post(served.url("/studies"))
            .header("Content-Type", DICOM_MULTIPART)
            .header("Accept", "application/dicom+json")
            .header("Accept-Encoding", encoding)
            .body(multipart(&files))
            .send()
    };

    // Plain: the response data set as JSON.
    let plain = store("identity").await.expect("STOW-RS");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("body");
    let expected = json(std::str::from_utf8(&plain).expect("UTF-8"));
    assert_eq!(
        expected["00081199"]["Value"]
            .as_array()
            .expect("items")
            .len(),
        instances.len()
    );

    // gzip: the same JSON, compressed.
    let gzipped = store("gzip").await.expect("STOW-RS");
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.expect("body");
    assert!(compressed.len() < plain.len(), "{} bytes", compressed.len());
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert_eq!(json(&text), expected);

    // br is offered too.
    let brotli = store("br").await.expect("STOW-RS");
    assert_eq!(brotli.headers()["content-encoding"], "br");

    // DICOM instances go as they are, whatever the client accepts.
    let retrieved = served
        .client
        .get(served.url(&format!("/studies/{STUDY}")))
        .header("Accept", ANY_SYNTAX)
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(retrieved.status(), 200);
    assert!(retrieved.headers().get("content-encoding").is_none());
    let parts = parts_of(retrieved).await;
    assert_eq!(parts.len(), instances.len());
}

/// `bytes` compressed with gzip.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_stored_and_a_gzip_bomb_is_413_with_nothing_stored() {
    let mut config = WebConfig::default();
    config.max_body_bytes = 1 << 20;
    let served = Served::start(config).await;
    let post = |encoding: &'static str, body: Vec<u8>| {
        served
            .client
            .post(served.url("/studies"))
            .header("Content-Type", DICOM_MULTIPART)
            .header("Content-Encoding", encoding)
            .header("Accept", "application/dicom+json")
            .body(body)
            .send()
    };

    // A gzip-encoded STOW-RS body is stored as if it had been sent plain.
    let instance = Instance::new(STUDY, SERIES, 11, 64 * 1024);
    let response = post("gzip", gzip(&multipart(&[instance.file()])))
        .await
        .expect("STOW-RS");
    assert_eq!(response.status(), 200);
    assert_eq!(
        served.c_find(STUDY).await,
        std::slice::from_ref(&instance.sop)
    );

    // A body of a few tens of KiB that inflates to 32 MiB, over the 1 MiB limit: refused once
    // the limit is passed, without inflating the rest, and nothing is stored. (Small enough to
    // be sent whole before the answer: the server stops reading at the limit.)
    let mut file = Instance::new(STUDY, SERIES, 12, 1024).file();
    file.resize(file.len() + (32 << 20), 0);
    let mut bomb = multipart(&[file]);
    let inflated = bomb.len();
    bomb = gzip(&bomb);
    assert!(bomb.len() * 500 < inflated, "{} bytes", bomb.len());
    let response = post("gzip", bomb).await.expect("STOW-RS");
    assert_eq!(response.status(), 413);
    assert_eq!(served.instances().await, 1);

    // An encoding the server does not know is 415, and nothing is stored.
    let other = Instance::new(STUDY, SERIES, 13, 1024);
    let response = post("compress", multipart(&[other.file()]))
        .await
        .expect("STOW-RS");
    assert_eq!(response.status(), 415);
    // A body that claims gzip but is not is a 400 (a malformed body), not a stored instance.
    let response = post("gzip", multipart(&[other.file()]))
        .await
        .expect("STOW-RS");
    assert_eq!(response.status(), 400);
    assert_eq!(served.instances().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_file_cut_short_ends_the_retrieval_without_its_closing_delimiter() {
    let served = Served::start(WebConfig::default()).await;
    let whole = Instance::new(STUDY, SERIES, 21, 4000);
    let cut = Instance::new(STUDY, SERIES, 22, 300_000);
    let response = served
        .stow(
            "/studies",
            DICOM_MULTIPART,
            multipart(&[whole.file(), cut.file()]),
        )
        .await;
    assert_eq!(response.status(), 200);
    // Another program cuts the second file short behind the archive's back.
    let stored = served
        .archive
        .lookup(&cut.sop)
        .await
        .expect("lookup")
        .expect("indexed");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&stored.location.path)
        .expect("open");
    file.set_len(stored.location.file_size / 2)
        .expect("truncate");
    drop(file);

    let response = served
        .client
        .get(served.url(&format!("/studies/{STUDY}")))
        .header("Accept", ANY_SYNTAX)
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(response.status(), 200);
    let content_type = ContentType::parse(
        response.headers()["content-type"]
            .to_str()
            .expect("content type"),
    )
    .expect("multipart content type");
    let decoder =
        Decoder::for_content_type(&content_type, DecodeLimits::default()).expect("decoder");
    let mut reader = MultipartReader::new(response.bytes_stream(), decoder);
    let mut complete = Vec::new();
    let ended = loop {
        match reader.next_part().await {
            Ok(Some(_)) => match reader.read_body().await {
                Ok(body) => complete.push(body),
                Err(error) => break Err(error.to_string()),
            },
            Ok(None) => break Ok(()),
            Err(error) => break Err(error.to_string()),
        }
    };
    assert!(ended.is_err(), "the body ended as if complete");
    // Only the whole instance can have come through complete, its data set as sent.
    assert!(complete.len() <= 1, "{} parts", complete.len());
    for body in &complete {
        assert!(
            split(body).1 == whole.data_set,
            "the whole instance changed"
        );
    }
}
