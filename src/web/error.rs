//! API errors: one type, mapped to an HTTP status and a JSON body in one place.

use crate::settings::WriteError;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub key: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            key: None,
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn not_found(key: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("no such property `{key}`")).with_key(key)
    }
}

impl warp::reject::Reject for ApiError {}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        let status = match &error {
            WriteError::UnknownKey(_) => StatusCode::NOT_FOUND,
            WriteError::BadValue { .. } => StatusCode::BAD_REQUEST,
            WriteError::FileBroken(_) | WriteError::FileChanging => StatusCode::CONFLICT,
            WriteError::Unwritable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError {
            status,
            message: error.to_string(),
            key: error.key().map(str::to_owned),
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.key {
            Some(key) => json!({"error": self.message, "key": key}),
            None => json!({"error": self.message}),
        };
        warp::reply::with_status(warp::reply::json(&body), self.status).into_response()
    }
}

/// Turns warp's own rejections (no route, body too large, ...) into the same JSON errors.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let error = if let Some(error) = rejection.find::<ApiError>() {
        ApiError {
            status: error.status,
            message: error.message.clone(),
            key: error.key.clone(),
        }
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::new(StatusCode::BAD_REQUEST, format!("{rejection:?}"))
    };
    Ok(error.into_response())
}
