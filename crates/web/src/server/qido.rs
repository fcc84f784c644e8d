//! QIDO-RS, Search (PS3.18 10.6): the search routes over the archive's index.

use axum::Router;

use super::SharedState;

/// The routes of this module (none yet).
pub(super) fn routes() -> Router<SharedState> {
    Router::new()
}
