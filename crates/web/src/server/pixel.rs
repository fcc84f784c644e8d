//! WADO-RS frames, rendered and thumbnail resources (PS3.18 10.4.1.1.6, 10.4.1.2, 10.4.1.3).

use axum::Router;

use super::SharedState;

/// The routes of this module (none yet).
pub(super) fn routes() -> Router<SharedState> {
    Router::new()
}
