//! [`ServerError`]: every failure of the server, answered in OpenAI's error shape.

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Errors of the server and its library functions. Each names the object, file or setting
/// that failed. As an HTTP response it becomes OpenAI's
/// `{"error": {"message", "type", "param", "code"}}` with the matching status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The request is malformed or its content is refused (400).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The parameter at fault.
        param: Option<String>,
        /// A stable code (e.g. `invalid_file`).
        code: Option<&'static str>,
    },
    /// No API key, or one that is unknown or revoked (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The object is visible but not the caller's to change (a base model every organization
    /// shares) (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such object in the caller's organization (404, also for other organizations' objects).
    #[error("no {kind} {id:?}")]
    NotFound {
        /// The kind of object (`file`, `organization`, `api key`).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The object already exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is over the limit (413).
    #[error("the request body is over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A parameter is out of range (422).
    #[error("{message}")]
    Unprocessable {
        /// What is wrong.
        message: String,
        /// The parameter at fault.
        param: Option<String>,
    },
    /// A model or service the request needs is not set up (503).
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests (429).
    #[error("{0}")]
    RateLimited(String),
    /// Another HTTP status produced by a layer (a timeout, a method the route lacks).
    #[error("{message}")]
    Http {
        /// The status.
        status: u16,
        /// What happened.
        message: String,
        /// A stable code (e.g. `unknown_url`).
        code: Option<&'static str>,
    },
    /// A database query failed.
    #[error("database ({context}): {source}")]
    Database {
        /// What the query was for.
        context: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The database schema could not be brought up to date.
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// A setting is unusable (e.g. a database URL of an unknown scheme).
    #[error("invalid setting {name}: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// Listening on the address failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something else failed inside the server (a task panicked, a validator failed).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl ServerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { context, source }
    }

    pub(crate) fn bad_request(message: impl Into<String>, param: Option<&str>, code: Option<&'static str>) -> Self {
        Self::BadRequest { message: message.into(), param: param.map(str::to_string), code }
    }

    pub(crate) fn unprocessable(message: impl Into<String>, param: &str) -> Self {
        Self::Unprocessable { message: message.into(), param: Some(param.to_string()) }
    }

    /// The HTTP status this error answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Http { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Self::Database { .. }
            | Self::Migrate(_)
            | Self::Io { .. }
            | Self::Random(_)
            | Self::Config { .. }
            | Self::Bind { .. }
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body OpenAI would send. Internal details (paths, SQL) are logged, not sent.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        let status = self.status();
        let (kind, code, param) = match self {
            Self::BadRequest { param, code, .. } => ("invalid_request_error", code.map(str::to_string), param.clone()),
            Self::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key".into()), None),
            Self::Forbidden(_) => ("invalid_request_error", Some("forbidden".into()), None),
            Self::NotFound { .. } => ("invalid_request_error", Some("not_found".into()), None),
            Self::Conflict(_) => ("invalid_request_error", Some("conflict".into()), None),
            Self::PayloadTooLarge { .. } => ("invalid_request_error", Some("payload_too_large".into()), None),
            Self::Unprocessable { param, .. } => ("invalid_request_error", Some("invalid_value".into()), param.clone()),
            Self::RateLimited(_) => ("requests", Some("rate_limit_exceeded".into()), None),
            Self::Unavailable(_) => ("server_error", Some("unavailable".into()), None),
            Self::Http { code, .. } if status.is_server_error() => ("server_error", code.map(str::to_string), None),
            Self::Http { code, .. } => ("invalid_request_error", code.map(str::to_string), None),
            _ => ("server_error", None, None),
        };
        let message = if status.is_server_error() && !matches!(self, Self::Http { .. } | Self::Unavailable(_)) {
            "internal server error".into()
        } else {
            self.to_string()
        };
        ErrorBody { error: ErrorDetail { message, kind: kind.into(), param, code } }
    }
}

/// OpenAI's error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// OpenAI's error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// `invalid_request_error`, `server_error`, `requests`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The parameter at fault.
    pub param: Option<String>,
    /// A stable code for programs.
    pub code: Option<String>,
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_in_the_log() {
        let e = ServerError::io("/secret/path", std::io::Error::other("disk full"));
        let body = e.body();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.error.message.contains("/secret"), "{}", body.error.message);
        assert_eq!(body.error.kind, "server_error");
        let nf = ServerError::NotFound { kind: "file", id: "file-x".into() };
        assert_eq!((nf.status(), nf.body().error.message), (StatusCode::NOT_FOUND, "no file \"file-x\"".to_string()));
    }
}
