//! The API's answers in JSON: [`json`] for a body, [`ApiError`] for an error (with a
//! request id, and the cause only in the log, when the failure is inside the server), and
//! [`refused`] for a request whose token was not enough.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::json_row::json_string;
use super::{Refusal, Scope};

/// The answer to a request whose token was refused for `scope`: 401 (with
/// `WWW-Authenticate`) without a valid token, 403 with one that lacks the scope.
pub(super) fn refused(refusal: Refusal, scope: Option<Scope>) -> Response {
    match refusal {
        Refusal::Unauthenticated => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is needed (Authorization: Bearer TOKEN)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Forbidden => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token lacks the {} scope",
                scope.map_or(String::new(), |s| s.to_string())
            ),
        )
        .into_response(),
    }
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer: `{"error": "..."}` with its status, and for a failure inside the
/// server `"request_id"` (also in `X-Request-Id`) under which the log has the cause.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    message: String,
    request_id: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            request_id: None,
        }
    }

    /// A failure inside the server (500): its cause (paths, hosts, users, a broker's
    /// words) goes to the log under a request id, the client gets the id alone.
    pub(super) fn internal(cause: impl std::fmt::Display) -> Self {
        Self::logged(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            format!("{cause}"),
        )
    }

    /// A store or broker the request needed failed (503): a retry may succeed; the cause
    /// goes to the log under a request id.
    pub(super) fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self::logged(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable; retry",
            format!("{cause}"),
        )
    }

    fn logged(status: StatusCode, summary: &str, cause: String) -> Self {
        let id = request_id();
        eprintln!("serve: request {id}: {} {cause}", status.as_u16());
        Self {
            status,
            message: format!("{summary} (request {id}; the server's log has the cause)"),
            request_id: Some(id),
        }
    }
}

/// A fresh id for a request whose failure is logged: 16 hex digits.
pub(super) fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Random where the system gives randomness, else a count: ids only need to be told apart in one log.
    let number = getrandom::u64().unwrap_or_else(|_| NEXT.fetch_add(1, Ordering::Relaxed));
    format!("{number:016x}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.request_id {
            None => format!("{{\"error\":{}}}", json_string(&self.message)),
            Some(id) => format!(
                "{{\"error\":{},\"request_id\":{}}}",
                json_string(&self.message),
                json_string(id)
            ),
        };
        let mut response = json(self.status, body);
        if let Some(id) = self
            .request_id
            .and_then(|id| HeaderValue::from_str(&id).ok())
        {
            response.headers_mut().insert("x-request-id", id);
        }
        response
    }
}
