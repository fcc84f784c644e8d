//! What the server tests share: test instances, multipart bodies, and the archive with the
//! DICOMweb server on a loopback port.

#![allow(dead_code)]

pub use std::net::SocketAddr;
pub use std::time::Duration;

pub use bytes::Bytes;
pub use futures_util::StreamExt;
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use dimsum_dataset::dicom_core::value::PrimitiveValue;
pub use dimsum_dataset::dicom_core::{DataElement, VR};
pub use dimsum_dataset::dicom_dictionary_std::tags;
pub use dimsum_dataset::dicom_object::InMemDicomObject;
pub use dimsum_dataset::identifier;
pub use dimsum_dataset::part10::{self, FileMeta, encode_header};
pub use dimsum_dataset::query_model::{QueryModel, QueryService};
pub use dimsum_pacs::archive::{Archive, ArchiveConfig};
pub use dimsum_pacs::hierarchy::QueryPlan;
pub use dimsum_web::multipart::{ContentType, DecodeLimits, Decoder, MultipartReader};
pub use dimsum_web::server::{CorsOrigins, WebConfig, router};

pub const EXPLICIT: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT: &str = "1.2.840.10008.1.2";
pub const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const STUDY: &str = "1.2.826.0.1.3680043.2.1125.7.1";
pub const SERIES: &str = "1.2.826.0.1.3680043.2.1125.7.1.1";
pub const BOUNDARY: &str = "dimsum-test-boundary";
pub const DICOM_MULTIPART: &str =
    "multipart/related; type=\"application/dicom\"; boundary=dimsum-test-boundary";
pub const ANY_SYNTAX: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

/// A test instance: its UIDs and data set.
pub struct Instance {
    pub sop: String,
    pub study: String,
    pub data_set: Vec<u8>,
}

impl Instance {
    pub fn new(study: &str, series: &str, number: u32, pixels: usize) -> Instance {
        let sop = format!("{series}.{number}");
        let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
        let object = InMemDicomObject::from_element_iter([
            text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            text(tags::SOP_CLASS_UID, VR::UI, CT),
            text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
            text(tags::STUDY_DATE, VR::DA, "20240105"),
            text(tags::MODALITY, VR::CS, "CT"),
            text(tags::PATIENT_NAME, VR::PN, "DOE^JANE"),
            text(tags::PATIENT_ID, VR::LO, "P-WEB"),
            text(tags::STUDY_INSTANCE_UID, VR::UI, study),
            text(tags::SERIES_INSTANCE_UID, VR::UI, series),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8((0..pixels).map(|i| (i % 251) as u8).collect()),
            ),
        ]);
        Instance {
            sop,
            study: study.to_owned(),
            data_set: identifier::encode(&object, EXPLICIT).expect("data set"),
        }
    }

    /// The Part 10 file of the instance.
    pub fn file(&self) -> Vec<u8> {
        let mut bytes =
            encode_header(&FileMeta::new(CT, &self.sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
        bytes.extend_from_slice(&self.data_set);
        bytes
    }
}

/// A multipart/related body of `application/dicom` parts.
pub fn multipart(files: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for file in files {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Selects the index of the test archives: `postgres` for a fresh PostgreSQL database each
/// on the server of `DIMSUM_TEST_POSTGRES`; SQLite otherwise. `scripts/test` runs these tests a
/// second time with it: one suite, two backends.
pub const TEST_BACKEND: &str = "DIMSUM_TEST_BACKEND";

/// The configuration of a test archive in `data_dir`, its index on the backend
/// [`TEST_BACKEND`] selects.
pub async fn archive_config(data_dir: std::path::PathBuf) -> ArchiveConfig {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let config = ArchiveConfig::new(data_dir);
    match std::env::var(TEST_BACKEND).as_deref() {
        Ok("postgres") => {
            let server = std::env::var("DIMSUM_TEST_POSTGRES").unwrap_or_else(|_| {
                panic!("{TEST_BACKEND}=postgres needs DIMSUM_TEST_POSTGRES (a server URL)")
            });
            let name = format!(
                "web_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            let url = dimsum_pacs::index::postgres::create_database(&server, &name)
                .await
                .expect("a fresh PostgreSQL database");
            config.with_postgres(url)
        }
        Ok("sqlite") | Err(_) => config,
        Ok(other) => panic!("{TEST_BACKEND}={other}: give sqlite or postgres"),
    }
}

/// The archive and the server on a loopback port.
pub struct Served {
    pub _data: tempfile::TempDir,
    pub archive: Archive,
    pub address: SocketAddr,
    pub root: String,
    pub client: reqwest::Client,
}

impl Served {
    pub async fn start(config: WebConfig) -> Served {
        let data = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(archive_config(data.path().join("archive")).await)
            .await
            .expect("archive");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let root = config.root().to_owned();
        let app = router(archive.clone(), config);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Served {
            _data: data,
            archive,
            address,
            root,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.address, self.root)
    }

    pub async fn stow(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.try_stow(path, content_type, body)
            .await
            .expect("STOW-RS request")
    }

    /// [`Served::stow`], with a request that fails (the connection lost) as an error.
    pub async fn try_stow(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.url(path))
            .header("Content-Type", content_type)
            .header("Accept", "application/dicom+json")
            .body(body)
            .send()
            .await
    }

    pub async fn instances(&self) -> u64 {
        self.archive.counts().await.expect("counts").instances as u64
    }

    /// The SOP Instance UIDs C-FIND finds in `study` (Study Root, IMAGE level), through the
    /// archive's index and query plan.
    pub async fn c_find(&self, study: &str) -> Vec<String> {
        let keys = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from("IMAGE"),
            ),
            DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(study),
            ),
            DataElement::empty(tags::SERIES_INSTANCE_UID, VR::UI),
            DataElement::empty(tags::SOP_INSTANCE_UID, VR::UI),
        ]);
        let plan = QueryPlan::new(QueryModel::StudyRoot, QueryService::Find, keys).expect("plan");
        let matches: Vec<_> = self
            .archive
            .index()
            .query(plan, None)
            .await
            .expect("query")
            .collect()
            .await;
        let mut uids: Vec<String> = matches
            .into_iter()
            .map(|found| {
                found
                    .expect("match")
                    .get(tags::SOP_INSTANCE_UID)
                    .expect("SOP Instance UID")
                    .to_str()
                    .expect("text")
                    .trim_end_matches('\0')
                    .to_owned()
            })
            .collect();
        uids.sort();
        uids
    }
}

/// The parts of a multipart/related response: each part's Content-Type and body.
pub async fn parts_of(response: reqwest::Response) -> Vec<(ContentType, Bytes)> {
    let content_type = ContentType::parse(
        response.headers()["content-type"]
            .to_str()
            .expect("content type"),
    )
    .expect("multipart content type");
    assert!(content_type.is("multipart", "related"), "{content_type}");
    let decoder =
        Decoder::for_content_type(&content_type, DecodeLimits::default()).expect("decoder");
    let mut reader = MultipartReader::new(response.bytes_stream(), decoder);
    let mut parts = Vec::new();
    while let Some(headers) = reader.next_part().await.expect("part") {
        let body = reader.read_body().await.expect("body");
        parts.push((headers.content_type().clone(), body));
    }
    parts
}

/// The data set of a Part 10 file, and its meta.
pub fn split(file: &[u8]) -> (FileMeta, Vec<u8>) {
    let (meta, offset) = part10::read_meta(&mut &file[..]).expect("meta");
    (meta, file[offset as usize..].to_vec())
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}
