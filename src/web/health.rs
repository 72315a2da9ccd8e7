//! Liveness and readiness probes.

use actix_web::HttpResponse;
use diesel::connection::SimpleConnection;

use super::State;
use crate::store::StoreError;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The database answers.
pub async fn readyz(state: State) -> HttpResponse {
    let result = state.db.run(|conn| conn.batch_execute("SELECT 1").map_err(StoreError::from)).await;
    match result {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable")
        }
    }
}
