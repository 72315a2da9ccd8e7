//! The JSON API's envelopes (DESIGN.md): `{"status":"success","data":…}`
//! (lists add `next_cursor`) and `{"status":"error","error":{…}}`.
//!
//! Rules: every `/api/v1` answer is one of these types, so that what the
//! OpenAPI document says of them (their `ToSchema`) is what is sent; an
//! error's `code` always comes with its one status ([`ErrorCode::status`]).

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, ErrorCode};

/// Always `success` in a success envelope.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuccessStatus {
    Success,
}

/// Always `error` in an error envelope.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStatus {
    Error,
}

/// A successful answer: `data` is the object asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success<T> {
    pub status: SuccessStatus,
    pub data: T,
}

impl<T: Serialize> Success<T> {
    /// `200 OK` with `data` in the envelope.
    pub fn ok(data: T) -> HttpResponse {
        Self::with_status(StatusCode::OK, data)
    }

    pub fn with_status(status: StatusCode, data: T) -> HttpResponse {
        HttpResponse::build(status).json(Success { status: SuccessStatus::Success, data })
    }
}

/// One page of a list: pass `next_cursor` back as `cursor` for the next
/// page; it is `null` on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub status: SuccessStatus,
    pub data: Vec<T>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T: Serialize> Page<T> {
    pub fn ok(data: Vec<T>, next_cursor: Option<String>) -> HttpResponse {
        HttpResponse::Ok().json(Page { status: SuccessStatus::Success, data, next_cursor })
    }
}

/// A refusal or failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub status: ErrorStatus,
    pub error: ErrorBody,
}

/// What went wrong: a stable `code` for programs, a `message` for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `validation_failed`: a message per field that is not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// With `rate_limit_exceeded` and a saturated server's `unavailable`:
    /// seconds to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub retry_after: Option<i64>,
}

impl ErrorEnvelope {
    /// The envelope of `err`, with the message people are shown.
    pub fn of(err: &AppError, message: String) -> Self {
        let (fields, retry_after) = match err {
            AppError::Validation(fields) => (Some(fields.0.clone()), None),
            AppError::TooManyRequests { retry_after } | AppError::Busy { retry_after } => (None, Some(*retry_after)),
            _ => (None, None),
        };
        Self { status: ErrorStatus::Error, error: ErrorBody { code: err.code(), message, fields, retry_after } }
    }
}
