//! The DICOMweb server over the archive (PS3.18 §10: the RESTful services), as axum routes:
//!
//! * STOW-RS, Store Instances (PS3.18 10.5): `POST {root}/studies` and
//!   `POST {root}/studies/{study}`, multipart/related bodies of `application/dicom` parts, each
//!   stored through the archive's [`Storage`](dimsum_net::storage::Storage) as a C-STORE is
//!   ([`stow`]);
//! * WADO-RS, Retrieve Instances (PS3.18 10.4): `GET {root}/studies/{study}`,
//!   `…/series/{series}` and `…/instances/{instance}`, multipart/related `application/dicom`
//!   bodies streamed from the stored files ([`wado`]).
//!
//! Every request is bounded by [`WebConfig`]: its body size (tower-http's limit, and the
//! multipart decoder's), the number and size of parts, and a timeout until the response
//! starts. URL components are UIDs checked against PS3.5 §9.1 and only ever used as query
//! values of the index: the files sent are those the index names. CORS, when configured,
//! applies to every response, errors included.

mod error;
mod metadata;
mod pixel;
mod qido;
mod stow;
mod viewer;
mod wado;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use dimsum_dataset::scan::ScanLimits;
use dimsum_pacs::archive::Archive;

pub use error::WebError;

use crate::multipart::{Accept, HeaderLimits};
use crate::pixel::PixelLimits;
use crate::qido::QidoLimits;
use crate::resource::Resource;

/// Which origins may call the DICOMweb services from a browser (the Fetch standard's CORS
/// protocol, as PS3.18 8.10 allows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: only same-origin pages can read the responses.
    #[default]
    None,
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// These origins (`https://viewer.example.org`), checked when configured.
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// The origins in `origins`, each a valid header value.
    pub fn list<I, S>(origins: I) -> Result<Self, WebConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        origins
            .into_iter()
            .map(|origin| {
                let origin = origin.as_ref();
                HeaderValue::from_str(origin).map_err(|_| WebConfigError::InvalidOrigin {
                    origin: origin.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(CorsOrigins::List)
    }
}

/// Why a [`WebConfig`] value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebConfigError {
    /// A CORS origin that cannot be a header value.
    #[error("the CORS origin {origin:?} is not a valid header value")]
    InvalidOrigin { origin: String },
    /// A root that does not start with `/` or holds characters outside a path segment.
    #[error("the DICOMweb root {root:?} must start with '/' and hold path segments only")]
    InvalidRoot { root: String },
}

/// How the DICOMweb server is set up, and its limits (PS3.18 §10; DESIGN principle 5: named
/// limits with defaults safe for a server facing the internet).
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The path of the DICOMweb root (`/dicom-web` by default; `""` serves at `/`).
    root: String,
    /// The origin written in Retrieve URLs (`https://pacs.example.org`); by default the
    /// request's `Host` over `http`.
    pub base_url: Option<String>,
    /// The largest request body, in bytes (default 1 GiB): 413 beyond.
    pub max_body_bytes: u64,
    /// The most parts in one STOW-RS request (default 1,000).
    pub max_parts: usize,
    /// The largest part, in bytes (default 1 GiB).
    pub max_part_bytes: u64,
    /// The time a request may take until its response starts (default 10 minutes: a STOW-RS
    /// body is read within it); 408 beyond.
    pub request_timeout: Duration,
    /// The limits of Content-Type and Accept values.
    pub header_limits: HeaderLimits,
    /// The limits of the scan of a stored data set's header elements.
    pub scan_limits: ScanLimits,
    /// The limits of frames, rendered images and thumbnails: frame and image sizes, decoded
    /// and rendered (PS3.18 10.4.1.1.6, 10.4.1.2, 10.4.1.3).
    pub pixel_limits: PixelLimits,
    /// CORS.
    pub cors: CorsOrigins,
    /// The limits of a QIDO-RS query string (PS3.18 8.3.4).
    pub qido_limits: QidoLimits,
    /// The most results one QIDO-RS response carries (PS3.18 8.3.4.4 `maxResults`, default
    /// 1,000): a larger `limit` is cut to it, with a Warning header when more remain.
    pub max_search_results: u32,
    /// A static web viewer build (OHIF Viewer) served at `/viewer`, configured to use this
    /// server's DICOMweb root; `None`: no viewer.
    pub viewer: Option<PathBuf>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            root: "/dicom-web".to_owned(),
            base_url: None,
            max_body_bytes: 1 << 30,
            max_parts: 1_000,
            max_part_bytes: 1 << 30,
            request_timeout: Duration::from_secs(600),
            header_limits: HeaderLimits::default(),
            scan_limits: ScanLimits::default(),
            pixel_limits: PixelLimits::default(),
            cors: CorsOrigins::None,
            qido_limits: QidoLimits::default(),
            max_search_results: 1_000,
            viewer: None,
        }
    }
}

impl WebConfig {
    /// The path of the DICOMweb root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Serves the services under `root` (`/dicom-web`, or `""` or `/` for the server's root).
    pub fn with_root(mut self, root: &str) -> Result<Self, WebConfigError> {
        let root = root.trim_end_matches('/');
        let valid = root.is_empty()
            || root.strip_prefix('/').is_some_and(|path| {
                path.split('/').all(|segment| {
                    !segment.is_empty()
                        && segment != "."
                        && segment != ".."
                        && segment
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                })
            });
        if !valid {
            return Err(WebConfigError::InvalidRoot {
                root: root.to_owned(),
            });
        }
        self.root = root.to_owned();
        Ok(self)
    }
}

/// What every handler shares.
struct AppState {
    archive: Archive,
    config: WebConfig,
}

type SharedState = Arc<AppState>;

/// The DICOMweb routes (PS3.18 §10.4 WADO-RS retrieve of instances, §10.5 STOW-RS) over
/// `archive`, with the limits, timeout and CORS of `config`. Serve it with
/// `axum::serve(listener, router(…))` (or `.into_make_service_with_connect_info::<SocketAddr>()`
/// to record the peer address of stored instances).
pub fn router(archive: Archive, config: WebConfig) -> Router {
    let root = config.root.clone();
    let body_limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let timeout = config.request_timeout;
    let cors = cors_layer(&config.cors);
    let viewer = config.viewer.clone();
    let state: SharedState = Arc::new(AppState { archive, config });
    let services = Router::new()
        .route("/studies", post(stow::store))
        .route(
            "/studies/{study}",
            get(wado::retrieve_resource).post(stow::store),
        )
        .route(
            "/studies/{study}/series/{series}",
            get(wado::retrieve_resource),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}",
            get(wado::retrieve_resource),
        )
        .merge(qido::routes())
        .merge(metadata::routes())
        .merge(pixel::routes())
        .fallback(not_found)
        .with_state(state);
    let mut app = if root.is_empty() {
        services
    } else {
        Router::new().nest(&root, services).fallback(not_found)
    };
    if let Some(dir) = viewer {
        app = app.nest_service("/viewer", viewer::viewer_service(&dir, &root));
    }
    // The body limit applies to the body as the handlers read it, i.e. after a gzip, deflate or
    // br Content-Encoding is undone: a small compressed body that inflates beyond it is 413 like
    // any other. Other encodings are 415.
    let decompression = RequestDecompressionLayer::new()
        .gzip(true)
        .deflate(true)
        .br(true);
    let app = app
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(decompression)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    let compression = CompressionLayer::new()
        .gzip(true)
        .br(true)
        .compress_when(SizeAbove::new(COMPRESS_ABOVE).and(is_structured_text));
    let app = app.layer(compression);
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(TraceLayer::new_for_http())
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in progress
/// finish (HTTP/1.1; the peer address of each request is recorded for the handlers). Every
/// connection has TCP_NODELAY: a response written in pieces (headers, then a streamed body)
/// must not wait for the client's delayed acknowledgement (40 ms on Linux) between them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|connection| {
        if let Err(error) = connection.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on a DICOMweb connection: {error}");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Responses smaller than this are sent as they are.
const COMPRESS_ABOVE: u16 = 512;

/// Whether a response is compressed (gzip or br) when the client accepts it (RFC 9110 12.5.3):
/// text, DICOM JSON and DICOM XML (QIDO-RS results, metadata, STOW-RS responses), which shrink
/// ten times and more. Pixel data and DICOM instances are sent as they are: compressed
/// transfer syntaxes do not shrink, and uncompressed ones cost more CPU to compress than the
/// bytes they save on a local network.
fn is_structured_text(
    _status: StatusCode,
    _version: axum::http::Version,
    headers: &HeaderMap,
    _extensions: &axum::http::Extensions,
) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let content_type = content_type.to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || essence == "application/json"
        || essence == "application/xml"
        || (essence == "multipart/related" && content_type.contains("+xml"))
}

fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(Any)
            .expose_headers(Any),
    )
}

async fn not_found() -> WebError {
    WebError::NotFound("no DICOMweb resource at this path".to_owned())
}

/// What the client accepts (PS3.18 8.7.5): `from_query` (the `accept` query parameter,
/// 8.3.3.1) when given, else the request's `Accept` headers joined, parsed within the header
/// limits (400 when not ASCII or malformed); `None` when there is none, so the resource's
/// default representation applies.
fn accept_of(
    headers: &HeaderMap,
    state: &SharedState,
    from_query: Option<&str>,
) -> Result<Option<Accept>, WebError> {
    let joined = match from_query {
        Some(value) => value.to_owned(),
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| WebError::BadRequest("the Accept header is not ASCII".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(", "),
    };
    if joined.trim().is_empty() {
        return Ok(None);
    }
    Accept::parse_with(&joined, &state.config.header_limits)
        .map(Some)
        .map_err(|error| WebError::BadRequest(format!("Accept: {error}")))
}

/// The resource of a request, from its path below the DICOMweb root, parsed by
/// [`crate::resource`]: segments percent-decoded, dot segments and encoded separators refused,
/// UIDs checked (PS3.5 §9.1). A UID is only ever a query value of the index, never part of a
/// file path.
fn resource_of(uri: &axum::http::Uri) -> Result<Resource, WebError> {
    Resource::parse(uri.path()).map_err(|error| match error.status() {
        404 => WebError::NotFound(error.to_string()),
        _ => WebError::BadRequest(error.to_string()),
    })
}
