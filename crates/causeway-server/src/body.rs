//! Request bodies: read with the configured size limit (413 in the envelope when exceeded)
//! and decode JSON with errors that say what is wrong, never axum's plain-text rejections.

use axum::body::Body;
use bytes::Bytes;
use causeway_core::GatewayError;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

pub async fn read_limited(body: Body, limit_mb: u64) -> Result<Bytes, GatewayError> {
    let limit = usize::try_from(limit_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(GatewayError::payload_too_large(limit_mb))
            } else {
                Err(GatewayError::bad_request(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
    }
}

/// Decodes a JSON body into `T`; the message names the field that failed.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::bad_request(
            "Invalid request body: the body is empty; send a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let msg = if path.is_empty() || path == "." {
            format!("Invalid request body: {}", e.inner())
        } else {
            format!("Invalid request body: {path}: {}", e.inner())
        };
        let err = GatewayError::bad_request(msg);
        if path.is_empty() || path == "." {
            err
        } else {
            err.with_param(path)
        }
    })?;
    de.end().map_err(|e| {
        GatewayError::bad_request(format!(
            "Invalid request body: unexpected data after the JSON value ({e})"
        ))
    })?;
    Ok(value)
}
