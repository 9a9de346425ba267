//! Errors of the admin API as JSON: `{"code": "NOT_FOUND", "message": "..."}` (EMQX's shape)
//! with a 4xx status for anything the request got wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to an HTTP request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    pub fn unavailable() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "SERVICE_UNAVAILABLE",
            message: "the broker has stopped".into(),
        }
    }
}

impl From<crate::server::ServerError> for ApiError {
    fn from(_: crate::server::ServerError) -> ApiError {
        ApiError::unavailable()
    }
}

impl From<crate::broker::AdminError> for ApiError {
    fn from(e: crate::broker::AdminError) -> ApiError {
        use crate::broker::AdminError;
        match &e {
            AdminError::UnknownClient(_) => {
                ApiError::not_found("CLIENTID_NOT_FOUND", e.to_string())
            }
            AdminError::NoSubscription(..) => {
                ApiError::not_found("SUBSCRIPTION_NOT_FOUND", e.to_string())
            }
            AdminError::InvalidFilter(_) | AdminError::InvalidTopic(_) => {
                ApiError::bad_request(e.to_string())
            }
            AdminError::Refused(_) => ApiError {
                status: StatusCode::FORBIDDEN,
                code: "REFUSED",
                message: e.to_string(),
            },
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> ApiError {
        ApiError {
            status: match e.status() {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            },
            code: "BAD_REQUEST",
            message: e.body_text(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::bad_request(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// Any path the API does not have.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no such endpoint: {}", uri.path()))
}
