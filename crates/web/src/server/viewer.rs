//! A static web viewer (OHIF Viewer's build) served at `/viewer` beside the DICOMweb services,
//! so that a user opens one URL and browses the archive.
//!
//! What is served below `/viewer`:
//!
//! * `app-config.js`: generated here, never the build's own — OHIF's configuration with one
//!   DICOMweb data source whose QIDO-RS and WADO-RS roots are this server's DICOMweb root on the
//!   same origin (PS3.18 §10.4 and §10.6 as the server implements them), and the router's base
//!   name `/viewer`;
//! * the files of the build, resolved inside its folder only (tower-http's `ServeDir`: a path
//!   with `..`, a root or a drive prefix, once percent-decoded, is never joined to the folder);
//! * `index.html` for any other path whose last segment has no `.`: the viewer's client-side
//!   routes (`/viewer/viewer?StudyInstanceUIDs=…`, `/viewer/local`…). A missing asset
//!   (`/viewer/missing.js`) stays a 404, so that a broken build shows as one.
//!
//! The build must have been made for the public URL `/viewer/` (OHIF's `PUBLIC_URL`): npm's
//! `@ohif/app` ships one made for `/`, which `scripts/setup-viewer` relocates with
//! `tests/viewer/relocate-ohif.mjs`. A build whose `index.html` does not say so is still
//! served, with a warning in the log, since its scripts would be looked for at the server's root.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

/// Where the viewer is served (the path `server::router` nests it at), with the trailing slash
/// that OHIF's `PUBLIC_URL` carries.
const PUBLIC_URL: &str = "/viewer/";

/// The router's base name of the viewer's client-side routes.
const ROUTER_BASENAME: &str = "/viewer";

/// What every response of generated content carries: the viewer's configuration and its entry
/// page follow the server's configuration and the build in place, never a cached copy.
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// The files of the viewer build in `dir` at `/viewer` (paths are resolved inside `dir` only;
/// unknown paths without an extension fall back to `index.html`, for the viewer's own
/// client-side routes), and a generated `app-config.js` that points the viewer at the DICOMweb
/// services at `dicomweb_root` on the same origin (`/dicom-web`, or `""` for the server's root).
pub(super) fn viewer_service(dir: &Path, dicomweb_root: &str) -> Router {
    check_build(dir);
    let config = app_config(dicomweb_root);
    let index = dir.join("index.html");
    let client_route = client_route.with_state(index);
    Router::new()
        .route(
            "/app-config.js",
            get(move || async move {
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/javascript; charset=utf-8"),
                        ),
                        (header::CACHE_CONTROL, NO_CACHE),
                    ],
                    config,
                )
            }),
        )
        .fallback_service(ServeDir::new(dir).fallback(client_route))
}

/// Logs what would keep the build in `dir` from working at `/viewer`.
fn check_build(dir: &Path) {
    match std::fs::read_to_string(dir.join("index.html")) {
        Err(error) => tracing::warn!(
            dir = %dir.display(),
            %error,
            "the viewer folder has no readable index.html: /viewer will answer 404"
        ),
        Ok(html) => {
            let relocated = format!("window.PUBLIC_URL=\"{PUBLIC_URL}\"");
            let relocated_spaced = format!("window.PUBLIC_URL = \"{PUBLIC_URL}\"");
            if !html.contains(&relocated) && !html.contains(&relocated_spaced) {
                tracing::warn!(
                    dir = %dir.display(),
                    "the viewer's index.html does not set window.PUBLIC_URL to {PUBLIC_URL}: \
                     a build made for another public URL loads its scripts from there, not \
                     from /viewer (relocate it with tests/viewer/relocate-ohif.mjs, as \
                     scripts/setup-viewer does)"
                );
            }
        }
    }
}

/// The viewer's entry page for a client-side route; 404 for a path that names a file (its last
/// segment, percent-decoded, has a `.`) that the build does not have, or whose last segment
/// hides a separator. Nothing of the path is used to find the page.
async fn client_route(State(index): State<PathBuf>, uri: Uri) -> Response {
    let last_segment = uri.path().rsplit('/').next().unwrap_or_default();
    let last_segment = percent_encoding::percent_decode_str(last_segment).decode_utf8_lossy();
    if last_segment.contains(['.', '/', '\\']) {
        return (StatusCode::NOT_FOUND, "no such file in the viewer build").into_response();
    }
    match tokio::fs::read(&index).await {
        Ok(page) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, NO_CACHE),
            ],
            page,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(index = %index.display(), %error, "the viewer's index.html cannot be read");
            (StatusCode::NOT_FOUND, "the viewer build has no index.html").into_response()
        }
    }
}

/// OHIF Viewer's `app-config.js` (its `window.config`) for this server: one DICOMweb data
/// source at `dicomweb_root` on the page's own origin, with the features the server
/// implements.
///
/// The data source, option by option (OHIF's `@ohif/extension-default` DICOMweb data source):
/// * `qidoRoot`, `wadoRoot`: the DICOMweb root, made absolute from `window.location.origin`
///   when the page loads, so that the configuration holds whatever name the server is reached
///   by; `wadoUriRoot` too, though WADO-URI (PS3.18 §9) is not served: with `imageRendering`
///   and `thumbnailRendering` as below, OHIF never uses it;
/// * `qidoSupportsIncludeField`, `supportsFuzzyMatching`, `supportsWildcard`: QIDO-RS
///   `includefield`, `fuzzymatching` (PS3.18 8.3.4.3) and `*`/`?` wildcards (PS3.4 C.2.2.2.4)
///   are implemented, so OHIF sends them rather than filtering locally (`staticWado: false`);
/// * `imageRendering: "wadors"`: frames by WADO-RS (PS3.18 10.4.1.1.6), asked for as
///   `multipart/related; type="application/octet-stream"; transfer-syntax=*` (quoted, as RFC
///   2045 wants a `/` in a parameter value: `omitQuotationForMultipartRequest: false`);
/// * `thumbnailRendering: "thumbnail"` fetched with `thumbnailRequestStrategy: "fetch"`: the
///   series' thumbnail resource (PS3.18 10.4.1.3), `image/jpeg`;
/// * `enableStudyLazyLoad`: series metadata (PS3.18 10.4.1.1.2) one series at a time;
/// * `bulkDataURI.enabled`: the metadata's BulkDataURIs resolve;
/// * `dicomUploadEnabled`: the study list's upload sends STOW-RS (PS3.18 10.5).
fn app_config(dicomweb_root: &str) -> String {
    // A JSON string is a JavaScript string literal; `<` is escaped too, though the root is
    // plain path segments (WebConfig::with_root).
    let js_string = |value: &str| {
        serde_json::Value::String(value.to_owned())
            .to_string()
            .replace('<', "\\u003c")
    };
    let root = js_string(dicomweb_root.trim_end_matches('/'));
    let basename = js_string(ROUTER_BASENAME);
    format!(
        r#"/** @type {{AppTypes.Config}} */
// OHIF Viewer's configuration, generated by dimsum serve: one DICOMweb data source, this
// server's DICOMweb root on the page's own origin.
(function () {{
  const root = window.location.origin + {root};
  window.config = {{
    name: 'dimsum',
    routerBasename: {basename},
    extensions: [],
    modes: [],
    customizationService: {{}},
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    groupEnabledModesFirst: true,
    maxNumRequests: {{
      interaction: 100,
      thumbnail: 75,
      prefetch: 25,
    }},
    showErrorDetails: 'always',
    defaultDataSourceName: 'dimsum',
    dataSources: [
      {{
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'dimsum',
        configuration: {{
          friendlyName: 'dimsum archive',
          name: 'dimsum',
          qidoRoot: root,
          wadoRoot: root,
          wadoUriRoot: root,
          qidoSupportsIncludeField: true,
          supportsFuzzyMatching: true,
          supportsWildcard: true,
          staticWado: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'thumbnail',
          thumbnailRequestStrategy: 'fetch',
          enableStudyLazyLoad: true,
          omitQuotationForMultipartRequest: false,
          bulkDataURI: {{
            enabled: true,
          }},
          dicomUploadEnabled: true,
          supportsReject: false,
        }},
      }},
    ],
  }};
}})();
"#
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A viewer build in a folder of its own, beside a file that must never be served.
    struct Build {
        _root: tempfile::TempDir,
        dir: PathBuf,
    }

    const INDEX: &str = "<!doctype html><script>window.PUBLIC_URL=\"/viewer/\"</script>\
                         <script src=\"/viewer/app-config.js\"></script>\
                         <script defer src=\"/viewer/app.bundle.js\"></script>";
    const BUNDLE: &str = "console.log('the viewer');";
    const SECRET: &str = "SECRET-OUTSIDE-THE-BUILD";

    fn build() -> Build {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ohif");
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), INDEX).unwrap();
        std::fs::write(dir.join("app.bundle.js"), BUNDLE).unwrap();
        std::fs::write(dir.join("assets").join("logo.svg"), "<svg/>").unwrap();
        // The build's own configuration, which must never be the one served.
        std::fs::write(
            dir.join("app-config.js"),
            "window.config = { name: 'stock' };",
        )
        .unwrap();
        std::fs::write(root.path().join("secret.txt"), SECRET).unwrap();
        Build { _root: root, dir }
    }

    /// Serves the viewer nested at `/viewer` as `server::router` does, on a loopback port.
    async fn serve(dir: &Path, dicomweb_root: &str) -> SocketAddr {
        let app = Router::new()
            .nest_service("/viewer", viewer_service(dir, dicomweb_root))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not the viewer") });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    async fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
        let response = reqwest::get(format!("http://{address}{path}"))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// Sends `path` as is, byte for byte (no client normalizes it): status line and body.
    async fn raw_get(address: SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response.lines().next().unwrap_or_default().to_owned();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn serves_the_build_and_its_entry_page() {
        let build = build();
        let address = serve(&build.dir, "/dicom-web").await;

        let (status, content_type, body) = get(address, "/viewer/app.bundle.js").await;
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("text/javascript"),
            "{content_type}"
        );
        assert_eq!(body, BUNDLE);
        let (status, content_type, body) = get(address, "/viewer/assets/logo.svg").await;
        assert_eq!((status, body.as_str()), (200, "<svg/>"));
        assert_eq!(content_type, "image/svg+xml");

        for entry in ["/viewer", "/viewer/", "/viewer/index.html"] {
            let (status, content_type, body) = get(address, entry).await;
            assert_eq!(status, 200, "{entry}");
            assert!(
                content_type.starts_with("text/html"),
                "{entry}: {content_type}"
            );
            assert_eq!(body, INDEX, "{entry}");
        }
    }

    #[tokio::test]
    async fn client_side_routes_get_the_entry_page_and_missing_files_404() {
        let build = build();
        let address = serve(&build.dir, "/dicom-web").await;
        for route in [
            "/viewer/viewer?StudyInstanceUIDs=1.2.3.4",
            "/viewer/viewer/dicomweb?StudyInstanceUIDs=1.2.3",
            "/viewer/local",
            "/viewer/segmentation?StudyInstanceUIDs=1.2",
        ] {
            let (status, content_type, body) = get(address, route).await;
            assert_eq!(status, 200, "{route}");
            assert!(
                content_type.starts_with("text/html"),
                "{route}: {content_type}"
            );
            assert_eq!(body, INDEX, "{route}");
        }
        for missing in [
            "/viewer/missing.js",
            "/viewer/assets/missing.png",
            "/viewer/a/b.css",
        ] {
            let (status, _, body) = get(address, missing).await;
            assert_eq!(status, 404, "{missing}");
            assert_ne!(body, INDEX, "{missing}");
        }
        // Outside /viewer, the viewer answers nothing.
        let (status, _, body) = get(address, "/app.bundle.js").await;
        assert_eq!((status, body.as_str()), (404, "not the viewer"));
    }

    #[tokio::test]
    async fn app_config_is_generated_for_the_dicomweb_root() {
        let build = build();
        let address = serve(&build.dir, "/dicom-web").await;
        let (status, content_type, body) = get(address, "/viewer/app-config.js").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/javascript; charset=utf-8");
        assert!(
            !body.contains("stock"),
            "the build's own app-config.js was served"
        );
        assert!(
            body.contains(r#"const root = window.location.origin + "/dicom-web";"#),
            "{body}"
        );
        assert!(body.contains(r#"routerBasename: "/viewer","#), "{body}");
        for option in [
            "qidoRoot: root,",
            "wadoRoot: root,",
            "imageRendering: 'wadors',",
            "thumbnailRendering: 'thumbnail',",
            "supportsFuzzyMatching: true,",
            "supportsWildcard: true,",
            "qidoSupportsIncludeField: true,",
            "defaultDataSourceName: 'dimsum',",
            "sourceName: 'dimsum',",
        ] {
            assert!(body.contains(option), "{option} missing from {body}");
        }

        // DICOMweb at the server's root: the roots are the origin itself.
        let address = serve(&build.dir, "").await;
        let (_, _, body) = get(address, "/viewer/app-config.js").await;
        assert!(
            body.contains(r#"const root = window.location.origin + "";"#),
            "{body}"
        );
    }

    #[tokio::test]
    async fn app_config_runs_as_javascript() {
        // When node is there, the generated script is run as a browser would: it must set
        // window.config with absolute roots on the page's origin.
        let Ok(node) = which_node() else {
            eprintln!("SKIP: node not found; the generated app-config.js is not run");
            return;
        };
        let script = app_config("/dicom-web");
        let harness = format!(
            "const window = {{ location: {{ origin: 'http://127.0.0.1:8042' }} }};\n{script}\n\
             const source = window.config.dataSources[0].configuration;\n\
             process.stdout.write(JSON.stringify([window.config.routerBasename, \
             window.config.defaultDataSourceName, window.config.dataSources[0].sourceName, \
             source.qidoRoot, source.wadoRoot]));"
        );
        let output = std::process::Command::new(node)
            .arg("-e")
            .arg(harness)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            r#"["/viewer","dimsum","dimsum","http://127.0.0.1:8042/dicom-web","http://127.0.0.1:8042/dicom-web"]"#
        );
    }

    fn which_node() -> Result<PathBuf, ()> {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("node"))
            .find(|candidate| candidate.is_file())
            .ok_or(())
    }

    #[tokio::test]
    async fn paths_never_leave_the_build_folder() {
        let build = build();
        let address = serve(&build.dir, "/dicom-web").await;
        for path in [
            "/viewer/../secret.txt",
            "/viewer/%2e%2e/secret.txt",
            "/viewer/..%2fsecret.txt",
            "/viewer/..%2Fsecret.txt",
            "/viewer/assets/../../secret.txt",
            "/viewer/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
            "/viewer/..%5csecret.txt",
            "/viewer//secret.txt",
            "/viewer/%2fetc%2fpasswd",
            "/viewer/..",
            "/viewer/%2e%2e",
        ] {
            let (status, body) = raw_get(address, path).await;
            assert!(
                !body.contains(SECRET),
                "{path} served the file outside the build"
            );
            assert!(!body.contains("root:"), "{path} served /etc/passwd");
            assert!(
                status.contains(" 404 ") || status.contains(" 400 "),
                "{path}: {status} {body}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_build_answers_404() {
        let root = tempfile::tempdir().unwrap();
        let address = serve(&root.path().join("absent"), "/dicom-web").await;
        let (status, _, _) = get(address, "/viewer/").await;
        assert_eq!(status, 404);
        let (status, _, _) = get(address, "/viewer/viewer?StudyInstanceUIDs=1.2").await;
        assert_eq!(status, 404);
        // The configuration is generated, build or not.
        let (status, _, _) = get(address, "/viewer/app-config.js").await;
        assert_eq!(status, 200);
    }
}
