//! Errors become HTTP responses here and only here: the Bifrost envelope with the right
//! status, `Retry-After` when known, and the request id as `event_id`.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use causeway_core::GatewayError;
use http::{HeaderValue, StatusCode, header};

/// A `GatewayError` bound to the request id it answers.
pub struct ApiError {
    pub error: GatewayError,
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(error: GatewayError, request_id: Option<&str>) -> Self {
        ApiError {
            error,
            request_id: request_id.map(str::to_owned),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        ApiError {
            error,
            request_id: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self.error, self.request_id.as_deref())
    }
}

pub fn error_response(err: &GatewayError, request_id: Option<&str>) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = err.to_envelope_bytes(request_id);
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = err.details().retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        h.insert(header::RETRY_AFTER, v);
    }
    if let Some(id) = request_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        h.insert("x-request-id", v);
    }
    resp
}

/// JSON response helper for management routes.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => error_response(
            &GatewayError::internal(format!("encoding response: {e}")),
            None,
        ),
    }
}
