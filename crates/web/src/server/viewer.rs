//! A static web viewer (OHIF Viewer's build) served at `/viewer` beside the DICOMweb services,
//! so that a user opens one URL and browses the archive.

use std::path::Path;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

/// The files of the viewer build in `dir` at `/viewer` (paths are resolved inside `dir` only;
/// unknown paths fall back to `index.html`, for the viewer's own client-side routes). The
/// viewer is meant to use the DICOMweb services at `dicomweb_root` on the same origin.
pub(super) fn viewer_service(dir: &Path, dicomweb_root: &str) -> Router {
    let _ = dicomweb_root;
    let index = ServeFile::new(dir.join("index.html"));
    Router::new().fallback_service(ServeDir::new(dir).fallback(index))
}
