//! Liveness and readiness probes.
//!
//! Rules: liveness never touches the database; readiness is
//! `service::health`'s (200 when the database answers, else 503), with one
//! line of detail per part (database, Redis, change feed); a failure is
//! logged with its cause.

use actix_web::HttpResponse;

use super::State;
use crate::service::health;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The database answers (and how Redis and the change feed are doing).
pub async fn readyz(state: State) -> HttpResponse {
    let readiness = health::readiness(&state.db, &state.redis, &state.verifier).await;
    let body = readiness.detail();
    match &readiness.database {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body(body),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body(body)
        }
    }
}
