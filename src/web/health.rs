//! Liveness and readiness probes.
//!
//! Rules: liveness never touches the database; readiness is
//! `service::health`'s, and a failure is logged with its cause and answered
//! 503 in plain text.

use actix_web::HttpResponse;

use super::State;
use crate::service::health;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The database answers.
pub async fn readyz(state: State) -> HttpResponse {
    match health::database_answers(&state.db).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable")
        }
    }
}
