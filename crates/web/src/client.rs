//! The DICOMweb client (PS3.18 §10: QIDO-RS 10.6, WADO-RS 10.4, STOW-RS 10.5, as a user
//! agent): an async HTTP client (reqwest over rustls) over this crate's request and response
//! types. Nothing here parses twice what the rest of the crate parses: queries are
//! [`QidoQuery`]s, representations [`Representation`]s, multipart bodies go through
//! [`Encoder`] and [`MultipartReader`], STOW-RS responses through [`StowResponse`], data sets
//! through `dimsum_dataset::json` and `::xml`.
//!
//! Every response is read within [`ClientLimits`]: a JSON or XML body is gathered up to its
//! size limit and no further, a multipart body is decoded as it arrives (a retrieved study is
//! never held whole: [`MultipartResponse::next_part`] and [`MultipartResponse::next_chunk`]
//! hand it out piece by piece, [`MultipartResponse::next_instance`] one bounded instance at a
//! time), and the body of an error response is kept up to a few KiB for the message. STOW-RS
//! bodies are streamed from the files as the request is sent, with a Content-Length computed
//! beforehand from the files' sizes.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncReadExt;

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::json::{self, JsonError, JsonLimits, PendingDataSet};
use dimsum_dataset::part10::{self, FileMeta, Part10Error};
use dimsum_dataset::xml::{self, XmlError, XmlLimits};

use crate::multipart::{
    ContentType, DecodeError, DecodeLimits, Decoder, MultipartError, MultipartReader, Part,
    PartHeaders,
};
use crate::qido::{QidoError, QidoLevel, QidoQuery};
use crate::resource::{Entity, Resource, ResourceError};
use crate::stow::{StowLimits, StowRequest, StowResponse, StowResponseError};
use crate::wado::{ImageType, Representation, TransferSyntax, WadoError, WadoRequest};

/// Bounds on what the client reads from a server (DESIGN principle 5: every size named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// DICOM JSON bodies (QIDO-RS results, metadata, STOW-RS responses): size, sequence depth
    /// and attributes per data set.
    pub json: JsonLimits,
    /// Native DICOM XML bodies (a STOW-RS response in XML).
    pub xml: XmlLimits,
    /// Most data sets in one QIDO-RS or metadata response (default 100,000).
    pub max_results: usize,
    /// Multipart bodies (WADO-RS retrieve, frames, bulk data): total size, parts, part size,
    /// header blocks. The defaults allow a 4 GiB study of 5,000 parts of up to 2 GiB each,
    /// which are handed out as they arrive.
    pub multipart: DecodeLimits,
    /// Largest part read whole into memory ([`MultipartResponse::read_part`],
    /// [`MultipartResponse::next_instance`], frames, bulk data; default 256 MiB). A larger
    /// part is read with [`MultipartResponse::next_chunk`].
    pub max_in_memory_part_bytes: u64,
    /// Largest rendered image (default 64 MiB), alone or as a part of a multipart answer
    /// ([`Client::rendered_images`], whose images together are held within
    /// [`ClientLimits::max_in_memory_part_bytes`]).
    pub max_rendered_bytes: u64,
    /// How much of an error response's body is kept for the error message (default 4 KiB).
    pub max_error_body_bytes: usize,
    /// Items of a STOW-RS response.
    pub stow: StowLimits,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            json: JsonLimits::default(),
            xml: XmlLimits::default(),
            max_results: 100_000,
            multipart: DecodeLimits::default(),
            max_in_memory_part_bytes: 256 << 20,
            max_rendered_bytes: 64 << 20,
            max_error_body_bytes: 4 << 10,
            stow: StowLimits::default(),
        }
    }
}

/// How the client authenticates (RFC 9110 §11.6.2 Authorization; PS3.18 does not fix a
/// scheme).
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer(String),
    /// `Authorization: Basic …` (RFC 7617).
    Basic {
        user: String,
        password: Option<String>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(…)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, …)"),
        }
    }
}

/// Why a DICOMweb request failed (PS3.18 §10 as a client sees it): the request could not be
/// made, the server answered with an error status (its body kept for the message), or the
/// response is not what PS3.18 says it is.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service root given to [`Client::builder`].
    #[error("invalid DICOMweb URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A setting of [`ClientBuilder`] (a header, a certificate).
    #[error("invalid client setting: {0}")]
    Config(String),
    /// A UID that cannot be a path segment.
    #[error("{what} {uid:?} cannot be part of a URL")]
    InvalidUid { what: &'static str, uid: String },
    /// A query that does not fit the search asked for, or that cannot be built.
    #[error(transparent)]
    Query(#[from] QidoError),
    /// A representation that the resource does not have.
    #[error(transparent)]
    Representation(#[from] WadoError),
    /// A resource that cannot be asked for (an empty frame list: PS3.18 10.4.1.1.6 names at
    /// least one frame).
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// The request did not get a complete response: connection, TLS, timeout, a body cut short.
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{method} {url}: HTTP {status}{}", describe_body(.body))]
    Status {
        method: Method,
        url: String,
        status: u16,
        /// The start of the response body (at most [`ClientLimits::max_error_body_bytes`]).
        body: String,
    },
    /// A response whose media type is not the one asked for.
    #[error("{url}: the response is {found:?}, not {expected}")]
    UnexpectedMediaType {
        url: String,
        expected: String,
        found: String,
    },
    /// A part of a multipart response whose media type is not the one asked for.
    #[error("{url}: part {part} is {found:?}, not {expected}")]
    UnexpectedPartType {
        url: String,
        part: usize,
        expected: String,
        found: String,
    },
    /// A body larger than its limit.
    #[error("{url}: {what} is larger than the {limit} bytes accepted")]
    TooLarge {
        url: String,
        what: &'static str,
        limit: u64,
    },
    /// A multipart body that does not decode (RFC 2046 §5.1.1, PS3.18 8.6.1.2).
    #[error("{url}: {source}")]
    Multipart {
        url: String,
        #[source]
        source: DecodeError,
    },
    /// A part of a retrieve response that is not a Part 10 file (PS3.18 8.7.3.2, PS3.10 §7).
    #[error("{url}: part {part} is not a DICOM Part 10 file: {source}")]
    Part10 {
        url: String,
        part: usize,
        #[source]
        source: Part10Error,
    },
    /// A DICOM JSON body that does not read (PS3.18 F.2).
    #[error("{url}: {source}")]
    Json {
        url: String,
        #[source]
        source: JsonError,
    },
    /// A DICOM XML body that does not read (PS3.19 A.1).
    #[error("{url}: {source}")]
    Xml {
        url: String,
        #[source]
        source: XmlError,
    },
    /// A QIDO-RS or metadata body that is not a JSON array of data sets (PS3.18 F.2.1).
    #[error("{url}: the response is not a JSON array of DICOM JSON data sets")]
    NotAnArray { url: String },
    /// More data sets than [`ClientLimits::max_results`].
    #[error("{url}: the response holds more than {limit} data sets")]
    TooManyResults { url: String, limit: usize },
    /// A multipart response with no part where one was expected.
    #[error("{url}: the response holds no part")]
    NoPart { url: String },
    /// A rendered response of several images (PS3.18 8.7.4: a study, a series or several
    /// frames) to [`Client::rendered`], which returns one.
    #[error("{url}: the response holds several images; Client::rendered_images reads every one")]
    SeveralImages { url: String },
    /// A STOW-RS response data set that does not read (PS3.18 10.5.3).
    #[error("{url}: {source}")]
    StowResponse {
        url: String,
        #[source]
        source: StowResponseError,
    },
    /// A file to store that cannot be read.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The HTTP status the server answered with, for [`ClientError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server could not be reached or the exchange broke off (as opposed to an
    /// answer that was wrong).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }
}

/// The body of an error response on one line.
fn describe_body(body: &str) -> String {
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Builds a [`Client`]: the service root, authentication, extra headers, timeouts, trusted
/// certificates and limits.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    auth: Option<Auth>,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    timeout: Option<Duration>,
    root_certificates: Vec<Vec<u8>>,
    limits: ClientLimits,
}

impl ClientBuilder {
    /// Authenticates with a bearer token.
    pub fn bearer_auth(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Bearer(token.into()));
        self
    }

    /// Authenticates with a user name and password (HTTP Basic).
    pub fn basic_auth(mut self, user: impl Into<String>, password: Option<String>) -> Self {
        self.auth = Some(Auth::Basic {
            user: user.into(),
            password,
        });
        self
    }

    /// Sends `name: value` with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Time to establish the connection (TCP and TLS; default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest wait for the next bytes of a response (default 60 s); `None`: no limit.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Longest time for a whole request and response (default none: a study may take long,
    /// the read timeout catches a server that stalls).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts the certificates of a PEM file (in addition to the web PKI roots).
    pub fn add_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// The limits of what is read.
    pub fn limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, ClientError> {
        let base = check_base_url(&self.base_url)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ClientError::Config(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ClientError::Config(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("dimsum/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            // Retrieve URLs and BulkDataURIs are followed as given; a redirect to another
            // origin would carry the credentials there.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = self.read_timeout {
            http = http.read_timeout(timeout);
        }
        if let Some(timeout) = self.timeout {
            http = http.timeout(timeout);
        }
        for pem in &self.root_certificates {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("trusted certificates: {e}")))?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Client {
            http,
            base,
            auth: self.auth,
            limits: self.limits,
        })
    }
}

/// The service root: http or https, no query or fragment, without its trailing `/`.
fn check_base_url(url: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "the service root cannot have a query or a fragment",
        ));
    }
    if parsed.host_str().is_none() {
        return Err(invalid("no host"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// A DICOMweb client of one origin server's service root (PS3.18 §10): QIDO-RS, WADO-RS and
/// STOW-RS. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Option<Auth>,
    limits: ClientLimits,
}

/// A file or bytes to store with STOW-RS (PS3.18 10.5): a DICOM Part 10 file, sent as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StowInstance {
    /// A file, read as the request is sent.
    File(PathBuf),
    /// A Part 10 file in memory.
    Bytes(Bytes),
}

/// What a STOW-RS request got back (PS3.18 10.5.3): the HTTP status (200, 202 or 409), the
/// response data set read, and the `Warning` header if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StowOutcome {
    pub status: u16,
    pub response: StowResponse,
    pub warning: Option<String>,
}

/// An instance of a WADO-RS retrieve response (PS3.18 8.7.3.2): its part's headers and the
/// Part 10 file, with its meta read.
#[derive(Debug, Clone)]
pub struct RetrievedInstance {
    /// The part's headers (Content-Type with its transfer-syntax, Content-Location).
    pub headers: PartHeaders,
    /// The File Meta Information (PS3.10 §7.1).
    pub meta: FileMeta,
    /// Where the data set starts in `file`.
    pub data_set_offset: usize,
    /// The whole Part 10 file.
    pub file: Bytes,
}

impl RetrievedInstance {
    /// The data set, after the file meta.
    pub fn data_set(&self) -> &[u8] {
        self.file.get(self.data_set_offset..).unwrap_or_default()
    }
}

/// A rendered image (PS3.18 8.7.4): its media type (the response's, or its part's in a
/// multipart/related of several images) and bytes.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub content_type: ContentType,
    pub image: Bytes,
}

type BodyStream = BoxStream<'static, Result<Bytes, reqwest::Error>>;

/// A multipart/related response (PS3.18 8.6.1.2) read as it arrives: part by part, each part's
/// body in pieces ([`MultipartResponse::next_chunk`]) or whole within
/// [`ClientLimits::max_in_memory_part_bytes`].
pub struct MultipartResponse {
    url: String,
    method: Method,
    status: u16,
    content_type: ContentType,
    reader: MultipartReader<BodyStream>,
    parts: usize,
    max_in_memory: u64,
}

impl std::fmt::Debug for MultipartResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartResponse")
            .field("url", &self.url)
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("parts", &self.parts)
            .finish()
    }
}

impl MultipartResponse {
    /// The HTTP status (200, or 206 when the server could not give everything).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response's Content-Type.
    pub fn content_type(&self) -> &ContentType {
        &self.content_type
    }

    /// The URL requested.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Parts started so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    fn error(&self, error: MultipartError<reqwest::Error>) -> ClientError {
        match error {
            MultipartError::Decode(source) => ClientError::Multipart {
                url: self.url.clone(),
                source,
            },
            MultipartError::Input(source) => ClientError::Transport {
                method: self.method.clone(),
                url: self.url.clone(),
                source,
            },
        }
    }

    /// The headers of the next part (what is left of the current one is skipped), or `None`
    /// after the last.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, ClientError> {
        match self.reader.next_part().await {
            Ok(Some(headers)) => {
                self.parts += 1;
                Ok(Some(headers))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(self.error(error)),
        }
    }

    /// The next piece of the current part's body, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.reader.next_chunk().await.map_err(|e| self.error(e))
    }

    /// The rest of the current part's body, at most
    /// [`ClientLimits::max_in_memory_part_bytes`].
    async fn read_rest(&mut self) -> Result<Bytes, ClientError> {
        self.read_rest_within(self.max_in_memory, "a part read into memory")
            .await
    }

    /// The rest of the current part's body, at most `limit` bytes.
    async fn read_rest_within(
        &mut self,
        limit: u64,
        what: &'static str,
    ) -> Result<Bytes, ClientError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(ClientError::TooLarge {
                    url: self.url.clone(),
                    what,
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// The next part, whole, or `None` after the last.
    pub async fn read_part(&mut self) -> Result<Option<(PartHeaders, Bytes)>, ClientError> {
        let Some(headers) = self.next_part().await? else {
            return Ok(None);
        };
        let body = self.read_rest().await?;
        Ok(Some((headers, body)))
    }

    /// The headers of the next part, which must be `application/dicom` (PS3.18 8.7.3.2); its
    /// body is then read with [`MultipartResponse::next_chunk`] (a Part 10 file).
    pub async fn next_instance_part(&mut self) -> Result<Option<PartHeaders>, ClientError> {
        let Some(headers) = self.next_part().await? else {
            return Ok(None);
        };
        if !headers.content_type().is("application", "dicom") {
            return Err(ClientError::UnexpectedPartType {
                url: self.url.clone(),
                part: self.parts,
                expected: "application/dicom".to_owned(),
                found: headers.content_type().to_string(),
            });
        }
        Ok(Some(headers))
    }

    /// The next instance of a retrieve response, whole (within
    /// [`ClientLimits::max_in_memory_part_bytes`]), its file meta read; `None` after the last.
    pub async fn next_instance(&mut self) -> Result<Option<RetrievedInstance>, ClientError> {
        let Some(headers) = self.next_instance_part().await? else {
            return Ok(None);
        };
        let file = self.read_rest().await?;
        let (meta, offset) =
            part10::read_meta(&mut &file[..]).map_err(|source| ClientError::Part10 {
                url: self.url.clone(),
                part: self.parts,
                source,
            })?;
        let data_set_offset = usize::try_from(offset)
            .ok()
            .filter(|offset| *offset <= file.len())
            .ok_or_else(|| ClientError::Part10 {
                url: self.url.clone(),
                part: self.parts,
                source: Part10Error::NotPart10,
            })?;
        Ok(Some(RetrievedInstance {
            headers,
            meta,
            data_set_offset,
            file,
        }))
    }

    /// The instances as a stream ([`MultipartResponse::next_instance`] until the end); it ends
    /// after an error.
    pub fn into_instances(self) -> impl Stream<Item = Result<RetrievedInstance, ClientError>> {
        stream::unfold(Some(self), |response| async move {
            let mut response = response?;
            match response.next_instance().await {
                Ok(Some(instance)) => Some((Ok(instance), Some(response))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
    }
}

/// The context of one request, for its errors.
struct Call {
    method: Method,
    url: String,
}

impl Call {
    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            method: self.method.clone(),
            url: self.url.clone(),
            source,
        }
    }
}

impl Client {
    /// A client of the DICOMweb service root `base_url` (`https://pacs.example.org/dicom-web`)
    /// with the default settings.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Self::builder(base_url).build()
    }

    /// A builder for a client of `base_url`.
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            auth: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(60)),
            timeout: None,
            root_certificates: Vec::new(),
            limits: ClientLimits::default(),
        }
    }

    /// The service root, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The limits in force.
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// The URL of `resource` below the service root.
    pub fn url_of(&self, resource: &Resource) -> String {
        format!("{}/{}", self.base, resource.to_path())
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        // Credentials go to the service root's origin only, not to a URL a response named
        // elsewhere.
        let same_origin = url
            .strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
        match (&self.auth, same_origin) {
            (Some(Auth::Bearer(token)), true) => request.bearer_auth(token),
            (Some(Auth::Basic { user, password }), true) => {
                request.basic_auth(user, password.as_ref())
            }
            _ => request,
        }
    }

    /// Sends a request and checks the status: one of `accepted`, or [`ClientError::Status`]
    /// with the start of the body.
    async fn send(
        &self,
        call: &Call,
        request: reqwest::RequestBuilder,
        accepted: &[StatusCode],
    ) -> Result<reqwest::Response, ClientError> {
        tracing::debug!("{} {}", call.method, call.url);
        let response = request.send().await.map_err(|e| call.transport(e))?;
        let status = response.status();
        tracing::debug!("{} {}: {}", call.method, call.url, status);
        if accepted.contains(&status) {
            return Ok(response);
        }
        let body = read_prefix(response, self.limits.max_error_body_bytes).await;
        Err(ClientError::Status {
            method: call.method.clone(),
            url: call.url.clone(),
            status: status.as_u16(),
            body,
        })
    }

    // -----------------------------------------------------------------------------------------
    // QIDO-RS (PS3.18 10.6)
    // -----------------------------------------------------------------------------------------

    /// Searches with `query` (its resource, keys, includefield, fuzzymatching, limit and
    /// offset) and returns the matches (PS3.18 10.6.3: a JSON array; 204 or an empty body is no
    /// match). Values a server gives as BulkDataURIs are left empty.
    pub async fn search(&self, query: &QidoQuery) -> Result<Vec<InMemDicomObject>, ClientError> {
        let mut url = self.url_of(&query.resource());
        let query_string = query.to_query_string();
        if !query_string.is_empty() {
            url.push('?');
            url.push_str(&query_string);
        }
        let call = Call {
            method: Method::GET,
            url,
        };
        let request = self
            .request(Method::GET, &call.url)
            .header(header::ACCEPT, "application/dicom+json");
        let response = self
            .send(&call, request, &[StatusCode::OK, StatusCode::NO_CONTENT])
            .await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let data_sets = self.read_json_array(&call, response).await?;
        Ok(data_sets
            .into_iter()
            .map(|pending| pending.into_parts().0)
            .collect())
    }

    /// [`Client::search`] for studies: the query must be of the study level.
    pub async fn search_studies(
        &self,
        query: &QidoQuery,
    ) -> Result<Vec<InMemDicomObject>, ClientError> {
        self.search(check_level(query, QidoLevel::Study)?).await
    }

    /// [`Client::search`] for series (of all studies, or of the study the query names).
    pub async fn search_series(
        &self,
        query: &QidoQuery,
    ) -> Result<Vec<InMemDicomObject>, ClientError> {
        self.search(check_level(query, QidoLevel::Series)?).await
    }

    /// [`Client::search`] for instances (of all studies, of a study or of a series).
    pub async fn search_instances(
        &self,
        query: &QidoQuery,
    ) -> Result<Vec<InMemDicomObject>, ClientError> {
        self.search(check_level(query, QidoLevel::Instance)?).await
    }

    /// A JSON array of DICOM JSON data sets (PS3.18 F.2.1), within the limits.
    async fn read_json_array(
        &self,
        call: &Call,
        response: reqwest::Response,
    ) -> Result<Vec<PendingDataSet>, ClientError> {
        let items = self.read_json_items(call, response).await?;
        self.read_items(call, &items)
    }

    /// Each item of a JSON array as a DICOM JSON data set (PS3.18 F.2).
    fn read_items(
        &self,
        call: &Call,
        items: &[serde_json::Value],
    ) -> Result<Vec<PendingDataSet>, ClientError> {
        items
            .iter()
            .map(|item| {
                json::read_json(item, &self.limits.json).map_err(|source| ClientError::Json {
                    url: call.url.clone(),
                    source,
                })
            })
            .collect()
    }

    /// The items of a JSON array body (an empty body is an empty array), within the limits.
    async fn read_json_items(
        &self,
        call: &Call,
        response: reqwest::Response,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        check_media_type(
            call,
            &response,
            &["application/dicom+json", "application/json"],
        )?;
        let limit = self.limits.json.max_bytes as u64;
        let body = read_limited(call, response, limit, "the DICOM JSON body").await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let value =
            json::parse_json(&body, &self.limits.json).map_err(|source| ClientError::Json {
                url: call.url.clone(),
                source,
            })?;
        let serde_json::Value::Array(items) = value else {
            return Err(ClientError::NotAnArray {
                url: call.url.clone(),
            });
        };
        if items.len() > self.limits.max_results {
            return Err(ClientError::TooManyResults {
                url: call.url.clone(),
                limit: self.limits.max_results,
            });
        }
        Ok(items)
    }

    // -----------------------------------------------------------------------------------------
    // WADO-RS (PS3.18 10.4)
    // -----------------------------------------------------------------------------------------

    /// Retrieves `request` as a multipart/related response (PS3.18 8.7.3: DICOM instances,
    /// frames or bulk data), read as it arrives.
    pub async fn retrieve(&self, request: &WadoRequest) -> Result<MultipartResponse, ClientError> {
        let call = Call {
            method: Method::GET,
            url: self.url_of(&request.resource),
        };
        let builder = self
            .request(Method::GET, &call.url)
            .header(header::ACCEPT, request.accept_header());
        let response = self
            .send(
                &call,
                builder,
                &[StatusCode::OK, StatusCode::PARTIAL_CONTENT],
            )
            .await?;
        self.multipart(call, response)
    }

    fn multipart(
        &self,
        call: Call,
        response: reqwest::Response,
    ) -> Result<MultipartResponse, ClientError> {
        let content_type = response_type(&call, &response)?;
        if !content_type.is("multipart", "related") {
            return Err(ClientError::UnexpectedMediaType {
                url: call.url,
                expected: "multipart/related".to_owned(),
                found: content_type.to_string(),
            });
        }
        let decoder =
            Decoder::for_content_type(&content_type, self.limits.multipart).map_err(|e| {
                ClientError::UnexpectedMediaType {
                    url: call.url.clone(),
                    expected: format!("multipart/related with a boundary ({e})"),
                    found: content_type.to_string(),
                }
            })?;
        let status = response.status().as_u16();
        let body: BodyStream = response.bytes_stream().boxed();
        Ok(MultipartResponse {
            url: call.url,
            method: call.method,
            status,
            content_type,
            reader: MultipartReader::new(body, decoder),
            parts: 0,
            max_in_memory: self.limits.max_in_memory_part_bytes,
        })
    }

    /// Retrieves the instances of a study, series or instance as Part 10 files (PS3.18
    /// 10.4.1.1.1-3), in `syntax` (`None`: the server's default, Explicit VR Little Endian;
    /// [`TransferSyntax::Any`]: as stored).
    pub async fn retrieve_entity(
        &self,
        entity: &Entity,
        syntax: Option<TransferSyntax>,
    ) -> Result<MultipartResponse, ClientError> {
        check_entity(entity)?;
        let resource = match entity.clone() {
            Entity::Study { study } => Resource::Study(study),
            Entity::Series { study, series } => Resource::Series(study, series),
            Entity::Instance {
                study,
                series,
                instance,
            } => Resource::Instance(study, series, instance),
        };
        let request = WadoRequest::with_accept(resource, vec![Representation::Dicom(syntax)])?;
        self.retrieve(&request).await
    }

    /// Retrieves a study's instances (PS3.18 10.4.1.1.1).
    pub async fn retrieve_study(
        &self,
        study: &str,
        syntax: Option<TransferSyntax>,
    ) -> Result<MultipartResponse, ClientError> {
        let entity = Entity::Study {
            study: study.to_owned(),
        };
        self.retrieve_entity(&entity, syntax).await
    }

    /// Retrieves a series' instances (PS3.18 10.4.1.1.2).
    pub async fn retrieve_series(
        &self,
        study: &str,
        series: &str,
        syntax: Option<TransferSyntax>,
    ) -> Result<MultipartResponse, ClientError> {
        let entity = Entity::Series {
            study: study.to_owned(),
            series: series.to_owned(),
        };
        self.retrieve_entity(&entity, syntax).await
    }

    /// Retrieves one instance (PS3.18 10.4.1.1.3).
    pub async fn retrieve_instance(
        &self,
        study: &str,
        series: &str,
        instance: &str,
        syntax: Option<TransferSyntax>,
    ) -> Result<MultipartResponse, ClientError> {
        let entity = Entity::Instance {
            study: study.to_owned(),
            series: series.to_owned(),
            instance: instance.to_owned(),
        };
        self.retrieve_entity(&entity, syntax).await
    }

    /// The metadata of a study, series or instance (PS3.18 10.4.1.1.4) in DICOM JSON: one data
    /// set per instance, with its BulkDataURIs kept as references (resolve them with
    /// [`Client::resolve_bulk_data`]).
    pub async fn metadata(&self, entity: &Entity) -> Result<Vec<PendingDataSet>, ClientError> {
        let (call, items) = self.metadata_items(entity).await?;
        self.read_items(&call, &items)
    }

    /// The metadata of a study, series or instance (PS3.18 10.4.1.1.4) as the server wrote it:
    /// a JSON array whose every item was checked to read as a DICOM JSON data set (its
    /// BulkDataURIs are kept as they are, for a person or another program to follow).
    pub async fn metadata_json(&self, entity: &Entity) -> Result<serde_json::Value, ClientError> {
        let (call, items) = self.metadata_items(entity).await?;
        self.read_items(&call, &items)?;
        Ok(serde_json::Value::Array(items))
    }

    async fn metadata_items(
        &self,
        entity: &Entity,
    ) -> Result<(Call, Vec<serde_json::Value>), ClientError> {
        check_entity(entity)?;
        let call = Call {
            method: Method::GET,
            url: self.url_of(&Resource::Metadata(entity.clone())),
        };
        let request = self
            .request(Method::GET, &call.url)
            .header(header::ACCEPT, Representation::DicomJson.media_type());
        let response = self.send(&call, request, &[StatusCode::OK]).await?;
        let items = self.read_json_items(&call, response).await?;
        Ok((call, items))
    }

    /// A data set read from DICOM JSON with every BulkDataURI fetched ([`Client::bulkdata`]).
    pub async fn resolve_bulk_data(
        &self,
        pending: PendingDataSet,
    ) -> Result<InMemDicomObject, ClientError> {
        let mut values = Vec::with_capacity(pending.bulk_data().len());
        for reference in pending.bulk_data() {
            values.push(self.bulkdata(&reference.uri).await?.to_vec());
        }
        let mut values = values.into_iter();
        pending
            .resolve(|_| Ok::<_, Infallible>(values.next().unwrap_or_default()))
            .map_err(|error| match error {
                json::ResolveError::Value(source) => ClientError::Json {
                    url: self.base.clone(),
                    source,
                },
                json::ResolveError::Fetch { source, .. } => match source {},
            })
    }

    /// Frames of an instance (PS3.18 10.4.1.1.6), 1-based, each as its part's headers and
    /// bytes: uncompressed unless `syntax` asks otherwise (8.7.3.4). An empty `frames` is
    /// [`ResourceError::NoFrames`], refused before any request.
    pub async fn frames(
        &self,
        study: &str,
        series: &str,
        instance: &str,
        frames: &[u32],
        syntax: Option<TransferSyntax>,
    ) -> Result<Vec<(PartHeaders, Bytes)>, ClientError> {
        let entity = Entity::Instance {
            study: study.to_owned(),
            series: series.to_owned(),
            instance: instance.to_owned(),
        };
        check_entity(&entity)?;
        if frames.is_empty() {
            return Err(ResourceError::NoFrames.into());
        }
        let request = WadoRequest::with_accept(
            Resource::Frames(entity, frames.to_vec()),
            vec![Representation::OctetStream(syntax)],
        )?;
        let mut response = self.retrieve(&request).await?;
        let mut parts = Vec::with_capacity(frames.len());
        while let Some(part) = response.read_part().await? {
            parts.push(part);
        }
        Ok(parts)
    }

    /// One rendered image (PS3.18 10.4.1.2, 8.7.4) of an instance or a frame, or the thumbnail
    /// (10.4.1.3) of a study, series, instance or frame, with query parameters such as
    /// `viewport`, `quality` and `window` (8.3.5.1). An answer of several images (a study or
    /// series, several frames: a multipart/related) is [`ClientError::SeveralImages`] unless
    /// it holds only one: [`Client::rendered_images`] reads them all.
    pub async fn rendered(
        &self,
        resource: &Resource,
        image: ImageType,
        parameters: &[(&str, &str)],
    ) -> Result<Rendered, ClientError> {
        let representation = Representation::Image(image);
        let accept = representation.media_type();
        let (call, response) = self
            .request_rendered(resource, &representation, &accept, parameters)
            .await?;
        let mut images = self.read_rendered(call, response, 1).await?;
        images.pop().ok_or_else(|| ClientError::NoPart {
            url: self.url_of(resource),
        })
    }

    /// Every rendered image (PS3.18 10.4.1.2, 8.7.4) of a study or series (one per instance
    /// with pixel data), of an instance or of frames (one per frame), in the order the server
    /// sends them, with their media types; or the one image of a thumbnail (10.4.1.3). The
    /// server is asked for `multipart/related; type="image/…"` first, then for the single
    /// image; either answer is read. Each image is within
    /// [`ClientLimits::max_rendered_bytes`], all of them together within
    /// [`ClientLimits::max_in_memory_part_bytes`], and their number within the multipart
    /// limits ([`ClientLimits::multipart`]).
    pub async fn rendered_images(
        &self,
        resource: &Resource,
        image: ImageType,
        parameters: &[(&str, &str)],
    ) -> Result<Vec<Rendered>, ClientError> {
        let representation = Representation::Image(image);
        let single = representation.media_type();
        let accept = format!("multipart/related; type=\"{single}\", {single}");
        let (call, response) = self
            .request_rendered(resource, &representation, &accept, parameters)
            .await?;
        self.read_rendered(call, response, usize::MAX).await
    }

    /// Sends the request for a rendered or thumbnail resource, checked beforehand (its UIDs,
    /// its frame list, that it has `representation`), with `parameters` as its query.
    async fn request_rendered(
        &self,
        resource: &Resource,
        representation: &Representation,
        accept: &str,
        parameters: &[(&str, &str)],
    ) -> Result<(Call, reqwest::Response), ClientError> {
        if let Some(entity) = resource.entity() {
            check_entity(&entity)?;
        }
        if let Resource::Rendered(_, Some(frames)) | Resource::Thumbnail(_, Some(frames)) = resource
            && frames.is_empty()
        {
            return Err(ResourceError::NoFrames.into());
        }
        representation.check_for(resource)?;
        let mut url = self.url_of(resource);
        if !parameters.is_empty() {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(parameters)
                .finish();
            url.push('?');
            url.push_str(&query);
        }
        let call = Call {
            method: Method::GET,
            url,
        };
        let request = self
            .request(Method::GET, &call.url)
            .header(header::ACCEPT, accept);
        let response = self.send(&call, request, &[StatusCode::OK]).await?;
        Ok((call, response))
    }

    /// The images of a rendered response (PS3.18 8.7.4): one `image/…` body, or the
    /// `image/…` parts of a multipart/related one; more than `at_most` is
    /// [`ClientError::SeveralImages`] (found when the next part starts, before its body is
    /// read).
    async fn read_rendered(
        &self,
        call: Call,
        response: reqwest::Response,
        at_most: usize,
    ) -> Result<Vec<Rendered>, ClientError> {
        let content_type = response_type(&call, &response)?;
        if content_type.main_type() == "image" {
            let image = read_limited(
                &call,
                response,
                self.limits.max_rendered_bytes,
                "the rendered image",
            )
            .await?;
            return Ok(vec![Rendered {
                content_type,
                image,
            }]);
        }
        if !content_type.is("multipart", "related") {
            return Err(ClientError::UnexpectedMediaType {
                url: call.url,
                expected: "image/jpeg, image/png, image/gif or multipart/related of images"
                    .to_owned(),
                found: content_type.to_string(),
            });
        }
        let mut multipart = self.multipart(call, response)?;
        let mut images = Vec::new();
        let mut total: u64 = 0;
        while let Some(headers) = multipart.next_part().await? {
            if images.len() == at_most {
                return Err(ClientError::SeveralImages { url: multipart.url });
            }
            let content_type = headers.content_type().clone();
            if content_type.main_type() != "image" {
                return Err(ClientError::UnexpectedPartType {
                    url: multipart.url,
                    part: multipart.parts,
                    expected: "image/…".to_owned(),
                    found: content_type.to_string(),
                });
            }
            let image = multipart
                .read_rest_within(self.limits.max_rendered_bytes, "a rendered image")
                .await?;
            total += image.len() as u64;
            if total > self.limits.max_in_memory_part_bytes {
                return Err(ClientError::TooLarge {
                    url: multipart.url,
                    what: "the rendered images together",
                    limit: self.limits.max_in_memory_part_bytes,
                });
            }
            images.push(Rendered {
                content_type,
                image,
            });
        }
        if images.is_empty() {
            return Err(ClientError::NoPart { url: multipart.url });
        }
        Ok(images)
    }

    /// The bytes of one bulk data value (PS3.18 10.4.1.1.5) at `uri`, a BulkDataURI as a
    /// metadata response gives it (absolute, or relative to the service root): the parts of a
    /// multipart/related response one after the other (a bulk data resource has one; a Frames
    /// resource, the BulkDataURI of encapsulated Pixel Data, one per frame, which together are
    /// the uncompressed value), within [`ClientLimits::max_in_memory_part_bytes`] in all; or a
    /// single `application/octet-stream` body. Credentials are only sent when `uri` is below
    /// the service root.
    pub async fn bulkdata(&self, uri: &str) -> Result<Bytes, ClientError> {
        let url = if uri.starts_with("http://") || uri.starts_with("https://") {
            uri.to_owned()
        } else {
            format!("{}/{}", self.base, uri.trim_start_matches('/'))
        };
        let call = Call {
            method: Method::GET,
            url,
        };
        let request = self.request(Method::GET, &call.url).header(
            header::ACCEPT,
            "multipart/related; type=\"application/octet-stream\", application/octet-stream",
        );
        let response = self.send(&call, request, &[StatusCode::OK]).await?;
        let content_type = response_type(&call, &response)?;
        if content_type.is("multipart", "related") {
            let mut multipart = self.multipart(call, response)?;
            let Some((_, first)) = multipart.read_part().await? else {
                return Err(ClientError::NoPart { url: multipart.url });
            };
            let mut value = BytesMut::new();
            let mut rest = Some(first);
            while let Some(body) = rest.take() {
                if (value.len() + body.len()) as u64 > self.limits.max_in_memory_part_bytes {
                    return Err(ClientError::TooLarge {
                        url: multipart.url,
                        what: "the bulk data",
                        limit: self.limits.max_in_memory_part_bytes,
                    });
                }
                match multipart.read_part().await? {
                    // One part (the usual case): its bytes as they are.
                    None if value.is_empty() => return Ok(body),
                    None => value.extend_from_slice(&body),
                    Some((_, next)) => {
                        value.extend_from_slice(&body);
                        rest = Some(next);
                    }
                }
            }
            return Ok(value.freeze());
        }
        read_limited(
            &call,
            response,
            self.limits.max_in_memory_part_bytes,
            "the bulk data",
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // STOW-RS (PS3.18 10.5)
    // -----------------------------------------------------------------------------------------

    /// Stores `instances` (PS3.18 10.5) to `studies`, or to `studies/{study}` when `study` is
    /// given, in one multipart/related request whose parts are read from their files as the
    /// body is sent. The response data set is read (200, 202 and 409 all carry one); any other
    /// status is an error.
    pub async fn store_instances(
        &self,
        study: Option<&str>,
        instances: Vec<StowInstance>,
    ) -> Result<StowOutcome, ClientError> {
        self.store_instances_with_progress(study, instances, |_| {})
            .await
    }

    /// [`Client::store_instances`], calling `progress` with the size of each piece of the
    /// files as it is handed to the connection.
    pub async fn store_instances_with_progress(
        &self,
        study: Option<&str>,
        instances: Vec<StowInstance>,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<StowOutcome, ClientError> {
        if let Some(study) = study {
            check_uid("Study Instance UID", study)?;
        }
        let request = StowRequest {
            study: study.map(str::to_owned),
        };
        let call = Call {
            method: Method::POST,
            url: self.url_of(&request.resource()),
        };
        let encoder = StowRequest::encoder();
        let headers = PartHeaders::new(StowRequest::part_type());
        let mut head = Vec::new();
        headers.write_block(&mut head);
        // The body's length, as the encoder writes it: per part `--boundary CRLF`, the header
        // block and the file, CRLF before every part but the first, and the closing
        // `CRLF --boundary-- CRLF`.
        let delimiter = 2 + encoder.boundary().as_str().len() as u64;
        let mut length = delimiter + 4 + if instances.is_empty() { 0 } else { 2 };
        let mut sized = Vec::with_capacity(instances.len());
        for (index, instance) in instances.into_iter().enumerate() {
            let size = match &instance {
                StowInstance::Bytes(bytes) => bytes.len() as u64,
                StowInstance::File(path) => tokio::fs::metadata(path)
                    .await
                    .map_err(|source| ClientError::File {
                        path: path.clone(),
                        source,
                    })?
                    .len(),
            };
            let separator = if index == 0 { 0 } else { 2 };
            length += separator + delimiter + 2 + head.len() as u64 + size;
            sized.push((instance, size));
        }
        let progress = Arc::new(progress);
        let parts = stream::iter(sized).map(move |(instance, size)| {
            let progress = Arc::clone(&progress);
            let body: BoxStream<'static, Result<Bytes, std::io::Error>> = match instance {
                StowInstance::Bytes(bytes) => stream::once(async move { Ok(bytes) }).boxed(),
                StowInstance::File(path) => file_stream(path, size),
            };
            Part::stream(
                headers.clone(),
                body.inspect_ok(move |chunk| progress(chunk.len() as u64)),
            )
        });
        let body = encoder.encode(parts);
        let builder = self
            .request(Method::POST, &call.url)
            .header(header::CONTENT_TYPE, encoder.content_type().to_string())
            .header(header::CONTENT_LENGTH, length)
            .header(header::ACCEPT, "application/dicom+json")
            .body(reqwest::Body::wrap_stream(body));
        let response = self
            .send(
                &call,
                builder,
                &[StatusCode::OK, StatusCode::ACCEPTED, StatusCode::CONFLICT],
            )
            .await?;
        let status = response.status().as_u16();
        let warning = response
            .headers()
            .get(header::WARNING)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let response = self.read_stow_response(&call, response).await?;
        Ok(StowOutcome {
            status,
            response,
            warning,
        })
    }

    /// The response data set of a STOW-RS request, DICOM JSON or XML; an empty body is a
    /// response that names no instance.
    async fn read_stow_response(
        &self,
        call: &Call,
        response: reqwest::Response,
    ) -> Result<StowResponse, ClientError> {
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|_| response_type(call, &response))
            .transpose()?;
        let limit = self.limits.json.max_bytes.max(self.limits.xml.max_bytes) as u64;
        let body = read_limited(call, response, limit, "the STOW-RS response").await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(StowResponse::default());
        }
        let object = match content_type {
            Some(ct) if ct.is("application", "dicom+xml") || ct.is("multipart", "related") => {
                let text =
                    std::str::from_utf8(&body).map_err(|_| ClientError::UnexpectedMediaType {
                        url: call.url.clone(),
                        expected: "UTF-8 XML".to_owned(),
                        found: ct.to_string(),
                    })?;
                xml::read_xml(xml_document(text), &self.limits.xml)
                    .map_err(|source| ClientError::Xml {
                        url: call.url.clone(),
                        source,
                    })?
                    .into_parts()
                    .0
            }
            _ => {
                let json_error = |source| ClientError::Json {
                    url: call.url.clone(),
                    source,
                };
                let value = json::parse_json(&body, &self.limits.json).map_err(json_error)?;
                // A data set, or (as some servers write it) an array of one.
                let value = match value {
                    serde_json::Value::Array(mut items) if items.len() == 1 => items.remove(0),
                    other => other,
                };
                json::read_json(&value, &self.limits.json)
                    .map_err(json_error)?
                    .into_parts()
                    .0
            }
        };
        StowResponse::from_data_set_with(&object, &self.limits.stow).map_err(|source| {
            ClientError::StowResponse {
                url: call.url.clone(),
                source,
            }
        })
    }
}

/// The XML document of a body that may be a one-part multipart/related of application/dicom+xml
/// (PS3.18 8.7.3.3.2): the text from the first `<?xml` or `<NativeDicomModel` to the last `>`.
fn xml_document(text: &str) -> &str {
    let start = text
        .find("<?xml")
        .or_else(|| text.find("<NativeDicomModel"))
        .unwrap_or(0);
    let end = text.rfind('>').map_or(text.len(), |end| end + 1);
    text.get(start..end).unwrap_or(text)
}

/// A file's first `size` bytes as a stream of pieces, opened when first polled; a file shorter
/// than `size` is an error (the Content-Length sent would be wrong).
fn file_stream(path: PathBuf, size: u64) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    const PIECE: u64 = 256 << 10;
    enum State {
        Closed(PathBuf, u64),
        Open(tokio::fs::File, PathBuf, u64),
        Done,
    }
    let named = |path: &std::path::Path, error: std::io::Error| {
        std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    };
    stream::unfold(State::Closed(path, size), move |state| async move {
        let (mut file, path, remaining) = match state {
            State::Done => return None,
            State::Closed(path, size) => match tokio::fs::File::open(&path).await {
                Ok(file) => (file, path, size),
                Err(error) => return Some((Err(named(&path, error)), State::Done)),
            },
            State::Open(file, path, remaining) => (file, path, remaining),
        };
        if remaining == 0 {
            return None;
        }
        // At most PIECE (256 KiB), so the cast cannot truncate.
        let mut piece = vec![0u8; remaining.min(PIECE) as usize];
        match file.read(&mut piece).await {
            Ok(0) => {
                let error = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was sent",
                );
                Some((Err(named(&path, error)), State::Done))
            }
            Ok(read) => {
                piece.truncate(read);
                let left = remaining - read as u64;
                Some((Ok(Bytes::from(piece)), State::Open(file, path, left)))
            }
            Err(error) => Some((Err(named(&path, error)), State::Done)),
        }
    })
    .boxed()
}

fn check_level(query: &QidoQuery, level: QidoLevel) -> Result<&QidoQuery, ClientError> {
    if query.level == level {
        Ok(query)
    } else {
        Err(ClientError::Query(QidoError::NotASearchResource {
            resource: format!(
                "{} (a {:?}-level query, not {:?})",
                query.resource(),
                query.level,
                level
            ),
        }))
    }
}

/// A UID goes into a path segment percent-encoded; only what would change the path's meaning
/// once normalised (empty, `.`, `..`) is refused here: servers hold UIDs that PS3.5 would not
/// allow, and the server is the one to judge them.
fn check_uid(what: &'static str, uid: &str) -> Result<(), ClientError> {
    if uid.is_empty() || uid == "." || uid == ".." || uid.chars().any(char::is_control) {
        return Err(ClientError::InvalidUid {
            what,
            uid: uid.chars().take(80).collect(),
        });
    }
    Ok(())
}

fn check_entity(entity: &Entity) -> Result<(), ClientError> {
    check_uid("Study Instance UID", entity.study())?;
    if let Some(series) = entity.series() {
        check_uid("Series Instance UID", series)?;
    }
    if let Some(instance) = entity.instance() {
        check_uid("SOP Instance UID", instance)?;
    }
    Ok(())
}

/// The response's Content-Type, parsed.
fn response_type(call: &Call, response: &reqwest::Response) -> Result<ContentType, ClientError> {
    let value = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    ContentType::parse(value).map_err(|e| ClientError::UnexpectedMediaType {
        url: call.url.clone(),
        expected: format!("a valid Content-Type ({e})"),
        found: value.to_owned(),
    })
}

/// Checks that the response is one of the media types `expected` (`type/subtype`); a response
/// without a Content-Type is taken as the first.
fn check_media_type(
    call: &Call,
    response: &reqwest::Response,
    expected: &[&str],
) -> Result<(), ClientError> {
    if response.headers().get(header::CONTENT_TYPE).is_none() {
        return Ok(());
    }
    let content_type = response_type(call, response)?;
    let essence = content_type.essence();
    if expected.iter().any(|e| e.eq_ignore_ascii_case(&essence)) {
        Ok(())
    } else {
        Err(ClientError::UnexpectedMediaType {
            url: call.url.clone(),
            expected: expected.join(" or "),
            found: content_type.to_string(),
        })
    }
}

/// The body, at most `limit` bytes (refused at once when the Content-Length says more).
async fn read_limited(
    call: &Call,
    response: reqwest::Response,
    limit: u64,
    what: &'static str,
) -> Result<Bytes, ClientError> {
    let too_large = || ClientError::TooLarge {
        url: call.url.clone(),
        what,
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| call.transport(e))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The start of an error response's body, as text (lossy), at most `limit` bytes; a body that
/// cannot be read is left out.
async fn read_prefix(response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while body.len() < limit {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_root_is_checked_and_kept_without_its_slash() {
        assert_eq!(
            check_base_url("http://127.0.0.1:8042/dicom-web/").unwrap(),
            "http://127.0.0.1:8042/dicom-web"
        );
        assert_eq!(
            check_base_url("https://pacs.example.org").unwrap(),
            "https://pacs.example.org"
        );
        for bad in [
            "ftp://host/dicom-web",
            "http://host/dicom-web?x=1",
            "not a url",
            "http://host/#frag",
        ] {
            assert!(
                matches!(check_base_url(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn uids_that_would_change_the_path_are_refused() {
        for bad in ["", ".", "..", "1.2\n3"] {
            assert!(check_uid("UID", bad).is_err(), "{bad:?}");
        }
        // Not PS3.5-valid (a leading zero), but a server may hold it.
        assert!(check_uid("UID", "1.02.3").is_ok());
    }

    #[test]
    fn an_xml_document_is_found_inside_a_multipart_body() {
        let body = "--b\r\nContent-Type: application/dicom+xml\r\n\r\n<?xml version=\"1.0\"?><NativeDicomModel/>\r\n--b--\r\n";
        assert_eq!(
            xml_document(body),
            "<?xml version=\"1.0\"?><NativeDicomModel/>"
        );
        assert_eq!(xml_document("<NativeDicomModel/>"), "<NativeDicomModel/>");
    }

    #[tokio::test]
    async fn a_file_is_streamed_up_to_its_size_and_a_short_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.dcm");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let chunks: Vec<_> = file_stream(path.clone(), data.len() as u64)
            .collect::<Vec<_>>()
            .await;
        let sent: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(sent, data);

        let chunks: Vec<_> = file_stream(path.clone(), data.len() as u64 + 10)
            .collect::<Vec<_>>()
            .await;
        let last = chunks.last().unwrap();
        assert_eq!(
            last.as_ref().unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );

        let missing: Vec<_> = file_stream(dir.path().join("missing"), 1).collect().await;
        assert_eq!(missing.len(), 1);
        assert!(missing[0].is_err());
    }
}
