//! Request extractors whose refusals are `{error, message}` like every other answer.
//!
//! axum's own `Json` and `Query` refuse with a plain-text body and, for a body that parses
//! but does not fit the type, 422. A client (or schemathesis, which checks every answer
//! against the OpenAPI document) then meets a second error shape; these wrappers keep one:
//! 400 `bad_request` naming what was wrong, 415 `unsupported_media_type` without a JSON
//! content type, 413 `payload_too_large` over the body limit.
//!
//! They never refuse by themselves: the outcome is handed to the handler, which checks the
//! caller's token first and only then looks at the body (`let b = b?;`), so an anonymous
//! caller learns nothing about what a body must look like and always gets its 401.

use super::ApiError;
use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

/// A JSON request body (`Content-Type: application/json`), or why it is not one.
#[derive(Debug, Clone)]
pub struct Json<T>(pub Result<T, ApiError>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Json(
            match axum::Json::<T>::from_request(req, state).await {
                Ok(axum::Json(v)) => Ok(v),
                Err(r) => Err(json_refusal(&r)),
            },
        ))
    }
}

fn json_refusal(r: &JsonRejection) -> ApiError {
    let message = r.body_text();
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
        ),
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
        }
        _ => ApiError::bad_request(message),
    }
}

/// Query parameters, or why they do not parse.
#[derive(Debug, Clone)]
pub struct Query<T>(pub Result<T, ApiError>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Query(
            match axum::extract::Query::<T>::from_request_parts(parts, state).await {
                Ok(axum::extract::Query(v)) => Ok(v),
                Err(r) => Err(ApiError::bad_request(r.body_text())),
            },
        ))
    }
}
