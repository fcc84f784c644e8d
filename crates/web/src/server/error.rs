//! The errors of the DICOMweb routes and the HTTP status each is answered with (PS3.18 8.5,
//! 10.4.3, 10.5.3).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a DICOMweb request was refused (PS3.18 8.5 status codes); the body says why, as
/// `text/plain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    /// 400: the request is malformed (a UID, a header, a multipart body).
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 406: no representation the client accepts can be produced.
    #[error("{0}")]
    NotAcceptable(String),
    /// 413: the body is over a limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body's media type is not one this service takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the stored object cannot be processed as asked (pixel data that disagrees with its
    /// attributes, a limit of the server).
    #[error("{0}")]
    Unprocessable(String),
    /// 500: the archive failed.
    #[error("{0}")]
    Internal(String),
    /// 503: the archive cannot take the request now.
    #[error("{0}")]
    Unavailable(String),
}

impl WebError {
    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            WebError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!("DICOMweb request failed: {self}");
        } else {
            tracing::debug!("DICOMweb request refused ({status}): {self}");
        }
        let mut response = (status, format!("{self}\n")).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
