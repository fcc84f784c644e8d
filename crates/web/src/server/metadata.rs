//! WADO-RS metadata and bulk data (PS3.18 10.4.1.1.4-10.4.1.1.5): answered from the index.

use axum::Router;

use super::SharedState;

/// The routes of this module (none yet).
pub(super) fn routes() -> Router<SharedState> {
    Router::new()
}
