//! `GET /metrics`: the Prometheus text format, served only by the separate
//! listener on `LATCHKEY_METRICS_BIND` (see `startup`), never on the public
//! port.
//!
//! Rules: what is read and how lives in `service::metrics`; here the text is
//! only answered, never cached.

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};

use super::{AppState, State};
use crate::error::AppError;
use crate::service::metrics::Sources;

/// The Prometheus text exposition format's content type.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl AppState {
    /// What a scrape reads from this instance.
    pub fn metrics_sources(&self) -> Sources<'_> {
        Sources { db: &self.db, redis: &self.redis, hashing: &self.hashing, verifier: &self.verifier }
    }
}

/// The metrics of this instance.
pub async fn scrape(state: State) -> Result<HttpResponse, AppError> {
    let text = state.metrics.scrape(state.metrics_sources()).await.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, CONTENT_TYPE_TEXT))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(text))
}

/// The metrics listener's routes: `/metrics` alone.
pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.route("/metrics", actix_web::web::get().to(scrape));
}
