//! The one error type of the gateway: knows its HTTP status, its Bifrost `type`, its
//! `extra_fields.error_type` class, whether a retry may help, and how to render the envelope.
//! It never carries secrets: messages are written by us or copied from an upstream error body.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

/// Low-cardinality classification, also used as a metric label (`extra_fields.error_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    CallerModelNotAvailable,
    CallerModelUnknown,
    CallerInvalidRequest,
    CallerCancelled,
    CallerUnauthenticated,
    CallerNotFound,
    PolicyModelBlocked,
    PolicyProviderBlocked,
    PolicyAccessDenied,
    PolicyBudgetExceeded,
    PolicyRateLimited,
    ProviderAuthFailed,
    ProviderBilling,
    ProviderRateLimited,
    ProviderOverloaded,
    ProviderServerError,
    ProviderTimeout,
    ProviderConnectionFailed,
    ProviderCredentialsExhausted,
    ProviderInvalidRequest,
    GatewayDropped,
    GatewayInternal,
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::CallerModelNotAvailable => "caller_model_not_available",
            ErrorClass::CallerModelUnknown => "caller_model_unknown",
            ErrorClass::CallerInvalidRequest => "caller_invalid_request",
            ErrorClass::CallerCancelled => "caller_cancelled",
            ErrorClass::CallerUnauthenticated => "caller_unauthenticated",
            ErrorClass::CallerNotFound => "caller_not_found",
            ErrorClass::PolicyModelBlocked => "policy_model_blocked",
            ErrorClass::PolicyProviderBlocked => "policy_provider_blocked",
            ErrorClass::PolicyAccessDenied => "policy_access_denied",
            ErrorClass::PolicyBudgetExceeded => "policy_budget_exceeded",
            ErrorClass::PolicyRateLimited => "policy_rate_limited",
            ErrorClass::ProviderAuthFailed => "provider_auth_failed",
            ErrorClass::ProviderBilling => "provider_billing",
            ErrorClass::ProviderRateLimited => "provider_rate_limited",
            ErrorClass::ProviderOverloaded => "provider_overloaded",
            ErrorClass::ProviderServerError => "provider_server_error",
            ErrorClass::ProviderTimeout => "provider_timeout",
            ErrorClass::ProviderConnectionFailed => "provider_connection_failed",
            ErrorClass::ProviderCredentialsExhausted => "provider_credentials_exhausted",
            ErrorClass::ProviderInvalidRequest => "provider_invalid_request",
            ErrorClass::GatewayDropped => "bifrost_dropped",
            ErrorClass::GatewayInternal => "bifrost_internal",
            ErrorClass::Other => "_OTHER",
        }
    }

    /// The class an upstream HTTP status implies when nothing more specific is known.
    pub fn from_upstream_status(status: u16) -> ErrorClass {
        match status {
            401 | 403 => ErrorClass::ProviderAuthFailed,
            402 => ErrorClass::ProviderBilling,
            429 => ErrorClass::ProviderRateLimited,
            503 | 529 => ErrorClass::ProviderOverloaded,
            504 | 408 => ErrorClass::ProviderTimeout,
            500..=599 => ErrorClass::ProviderServerError,
            400..=499 => ErrorClass::ProviderInvalidRequest,
            _ => ErrorClass::Other,
        }
    }
}

/// What the routing layer may do after this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Not retryable: the same request will fail the same way (bad input, policy).
    Never,
    /// Transient (5xx, timeout, connection): retry, same key allowed, with backoff.
    Backoff,
    /// The key is rate limited: rotate to another key, still with backoff.
    RotateKey,
    /// The key is rejected (401/402/403): never use it again for this request.
    RetireKey,
}

/// `extra_fields` of the envelope: which request and route the error belongs to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExtraFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_requested: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_model_requested: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_model_used: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ErrorDetails {
    pub status: u16,
    /// Top-level `type` (Bifrost decision or gateway kind, e.g. `request_dropped`).
    pub kind: Option<String>,
    /// `error.type` (for provider errors, the upstream's type).
    pub error_type: Option<String>,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    /// `is_bifrost_error`: a fault of the gateway itself, not of the caller, policy or provider.
    pub gateway_fault: bool,
    pub class: ErrorClass,
    pub retry: RetryHint,
    /// Fallbacks allowed after this error (a plugin may forbid them).
    pub allow_fallbacks: bool,
    pub retry_after_secs: Option<u64>,
    pub extra: ExtraFields,
    pub event_id: Option<String>,
}

/// Cheap to clone (an `Arc`), rendered as the Bifrost error envelope.
#[derive(Clone)]
pub struct GatewayError(Arc<ErrorDetails>);

impl GatewayError {
    pub fn new(status: u16, class: ErrorClass, message: impl Into<String>) -> Self {
        GatewayError(Arc::new(ErrorDetails {
            status,
            kind: None,
            error_type: None,
            code: None,
            message: message.into(),
            param: None,
            gateway_fault: matches!(
                class,
                ErrorClass::GatewayDropped | ErrorClass::GatewayInternal
            ),
            class,
            retry: RetryHint::Never,
            allow_fallbacks: true,
            retry_after_secs: None,
            extra: ExtraFields::default(),
            event_id: None,
        }))
    }

    /// 400 for input the caller must fix; `param` names the offending field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        GatewayError::new(400, ErrorClass::CallerInvalidRequest, message)
            .with_type("invalid_request_error")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        GatewayError::new(404, ErrorClass::CallerNotFound, message).with_type("not_found")
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        GatewayError::new(409, ErrorClass::CallerInvalidRequest, message).with_type("conflict")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        GatewayError::new(403, ErrorClass::PolicyAccessDenied, message).with_type("access_blocked")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        GatewayError::new(401, ErrorClass::CallerUnauthenticated, message)
            .with_type("authentication_error")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        GatewayError::new(500, ErrorClass::GatewayInternal, message).with_type("internal_error")
    }

    pub fn payload_too_large(limit_mb: u64) -> Self {
        GatewayError::new(
            413,
            ErrorClass::CallerInvalidRequest,
            format!(
                "request body is larger than the {limit_mb} MB limit (client.max_request_body_size_mb)"
            ),
        )
        .with_type("request_too_large")
    }

    pub fn with_type(self, kind: impl Into<String>) -> Self {
        let kind = kind.into();
        self.map(|d| {
            d.error_type = Some(kind.clone());
            d.kind = Some(kind);
        })
    }

    /// Sets only `error.type` (leaves the top-level `type` alone).
    pub fn with_error_type(self, error_type: impl Into<String>) -> Self {
        let error_type = error_type.into();
        self.map(|d| d.error_type = Some(error_type))
    }

    pub fn with_code(self, code: impl Into<String>) -> Self {
        let code = code.into();
        self.map(|d| d.code = Some(code))
    }

    pub fn with_param(self, param: impl Into<String>) -> Self {
        let param = param.into();
        self.map(|d| d.param = Some(param))
    }

    pub fn with_retry(self, retry: RetryHint) -> Self {
        self.map(|d| d.retry = retry)
    }

    pub fn with_retry_after(self, secs: u64) -> Self {
        self.map(|d| d.retry_after_secs = Some(secs))
    }

    pub fn with_gateway_fault(self, fault: bool) -> Self {
        self.map(|d| d.gateway_fault = fault)
    }

    pub fn without_fallbacks(self) -> Self {
        self.map(|d| d.allow_fallbacks = false)
    }

    pub fn with_event_id(self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.map(|d| d.event_id = Some(id))
    }

    /// Fills the request-describing `extra_fields`; fields already set are kept.
    pub fn with_request_info(
        self,
        request_type: &'static str,
        provider: &str,
        original_model: &str,
        resolved_model: &str,
    ) -> Self {
        self.map(|d| {
            let e = &mut d.extra;
            e.request_type.get_or_insert(request_type);
            e.provider.get_or_insert_with(|| provider.to_owned());
            e.model_requested
                .get_or_insert_with(|| original_model.to_owned());
            e.original_model_requested
                .get_or_insert_with(|| original_model.to_owned());
            e.resolved_model_used
                .get_or_insert_with(|| resolved_model.to_owned());
        })
    }

    fn map(mut self, f: impl FnOnce(&mut ErrorDetails)) -> Self {
        f(Arc::make_mut(&mut self.0));
        self
    }

    pub fn details(&self) -> &ErrorDetails {
        &self.0
    }
    pub fn status(&self) -> u16 {
        self.0.status
    }
    pub fn message(&self) -> &str {
        &self.0.message
    }
    pub fn class(&self) -> ErrorClass {
        self.0.class
    }
    pub fn retry(&self) -> RetryHint {
        self.0.retry
    }
    pub fn kind(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }

    /// The envelope as a JSON value; `event_id` falls back to the given request id.
    pub fn to_envelope(&self, request_id: Option<&str>) -> Value {
        let d = &*self.0;
        let event_id = d.event_id.as_deref().or(request_id);
        let mut error = Map::new();
        error.insert("type".into(), opt_str(d.error_type.as_deref()));
        error.insert("code".into(), opt_str(d.code.as_deref()));
        error.insert("message".into(), Value::String(d.message.clone()));
        error.insert("param".into(), opt_str(d.param.as_deref()));
        if let Some(id) = event_id {
            error.insert("event_id".into(), Value::String(id.to_owned()));
        }
        let mut extra = match serde_json::to_value(&d.extra) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        extra.insert(
            "error_type".into(),
            Value::String(
                d.extra
                    .error_type
                    .unwrap_or_else(|| d.class.as_str())
                    .to_owned(),
            ),
        );
        let mut env = Map::new();
        if let Some(id) = event_id {
            env.insert("event_id".into(), Value::String(id.to_owned()));
        }
        if let Some(kind) = &d.kind {
            env.insert("type".into(), Value::String(kind.clone()));
        }
        env.insert("is_bifrost_error".into(), Value::Bool(d.gateway_fault));
        env.insert("status_code".into(), Value::from(d.status));
        env.insert("error".into(), Value::Object(error));
        env.insert("extra_fields".into(), Value::Object(extra));
        Value::Object(env)
    }

    pub fn to_envelope_bytes(&self, request_id: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&self.to_envelope(request_id)).unwrap_or_else(|_| {
            br#"{"is_bifrost_error":true,"status_code":500,"error":{"message":"error could not be encoded"},"extra_fields":{}}"#.to_vec()
        })
    }
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

impl fmt::Debug for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayError")
            .field("status", &self.0.status)
            .field("kind", &self.0.kind)
            .field("class", &self.0.class.as_str())
            .field("message", &self.0.message)
            .finish()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.message, self.0.status)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_bifrost_shape() {
        let e = GatewayError::new(
            503,
            ErrorClass::GatewayDropped,
            "request dropped: queue is full",
        )
        .with_type("request_dropped")
        .with_request_info("chat_completion", "openai", "openai/gpt-4o", "gpt-4o");
        let v = e.to_envelope(Some("req-1"));
        assert_eq!(v["status_code"], 503);
        assert_eq!(v["type"], "request_dropped");
        assert_eq!(v["is_bifrost_error"], true);
        assert_eq!(v["event_id"], "req-1");
        assert_eq!(v["error"]["message"], "request dropped: queue is full");
        assert_eq!(v["error"]["event_id"], "req-1");
        assert_eq!(v["extra_fields"]["provider"], "openai");
        assert_eq!(v["extra_fields"]["resolved_model_used"], "gpt-4o");
        assert_eq!(v["extra_fields"]["error_type"], "bifrost_dropped");
    }

    #[test]
    fn request_info_does_not_overwrite() {
        let e = GatewayError::bad_request("x")
            .with_request_info("chat_completion", "openai", "a", "b")
            .with_request_info("embedding", "groq", "c", "d");
        assert_eq!(e.details().extra.provider.as_deref(), Some("openai"));
        assert_eq!(e.details().extra.request_type, Some("chat_completion"));
    }
}
