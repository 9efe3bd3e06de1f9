//! Errors as RFC 9457 `application/problem+json`, the one error shape every endpoint uses.
//!
//! Handlers return `Result<_, Problem>`; the extractor error handlers installed by the
//! server turn malformed JSON, bad paths and queries and oversized bodies into problems
//! too, so a client never sees an HTML or plain-text error from svc.

use std::time::Duration;

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde::{Deserialize, Serialize};

const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    pub(crate) title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    /// The methods the resource serves, for the `Allow` header of a 405.
    #[serde(skip)]
    allow: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_string(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 405 with `Allow`: `path` is served, but only with the `allowed` methods.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        let allow = allowed.join(", ");
        let mut p = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} does not take {method}; it takes {allow}"),
        );
        p.allow = Some(allow);
        p
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 503 with `Retry-After`: the caller may try again later.
    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        let mut p = Self::new(StatusCode::SERVICE_UNAVAILABLE, detail);
        p.retry_after = Some(retry_after);
        p
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        if let Some(after) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, after.as_secs().max(1).to_string()));
        }
        if let Some(allow) = &self.allow {
            res.insert_header((header::ALLOW, allow.as_str()));
        }
        res.body(serde_json::to_string(self).unwrap_or_default())
    }
}

/// Maps a JSON body that could not be read to 400, 413 or 415.
pub(crate) fn from_json_error(err: JsonPayloadError) -> Problem {
    match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, err.to_string())
        }
        JsonPayloadError::ContentType => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) => Problem::bad_request(format!("invalid JSON body: {e}")),
        _ => Problem::bad_request(err.to_string()),
    }
}

pub(crate) fn from_query_error(err: QueryPayloadError) -> Problem {
    Problem::bad_request(format!("invalid query string: {err}"))
}

pub(crate) fn from_path_error(err: PathError) -> Problem {
    Problem::bad_request(format!("invalid path: {err}"))
}

impl From<super::store::StoreError> for Problem {
    fn from(e: super::store::StoreError) -> Self {
        tracing::error!(error = %e, "state file operation failed");
        Problem::internal("the state file could not be read or written")
    }
}
