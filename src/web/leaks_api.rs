//! `POST /api/v1/leaked-keys`: leak reports from a secret-scanning
//! partner's service key (`leaks:report`).
//!
//! Rules: the support service decides and revokes (`SupportService::report_leaks`);
//! the answer gives one outcome per candidate in input order and never says
//! whose a credential was.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::State;
use super::api_auth::{ApiPrincipal, Credential};
use super::envelope::Success;
use crate::error::AppError;
use crate::service::support;

/// A leak report: credentials found in public, and where.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = LeakReport)]
pub struct LeakBody {
    /// Up to 1,000 candidates (API keys, OAuth tokens or client secrets), whole.
    #[schema(min_items = 1, max_items = 1000, required = true, value_type = Vec<String>)]
    keys: Option<Vec<String>>,
    /// Where they were found (an https or http URL).
    #[schema(max_length = 2000, nullable = false)]
    url: Option<String>,
}

/// What a leak report did, one result per candidate in input order.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LeakResults)]
pub struct LeakResults {
    pub results: Vec<LeakResult>,
}

/// What happened to one candidate (never which team owned it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct LeakResult {
    pub outcome: support::Outcome,
}

/// `POST /api/v1/leaked-keys`, for a secret-scanning partner's service key.
#[utoipa::path(
    post,
    path = "/api/v1/leaked-keys",
    tag = "Leaked credentials",
    operation_id = "report_leaked_keys",
    summary = "Reports credentials found in public; live ones are revoked.",
    description = "For a secret-scanning partner: a service key with `leaks:report`. Each candidate that is a live \
                   Latchkey credential is revoked at once; the answer never says whose it was.",
    request_body = LeakBody,
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "One outcome per candidate, in input order.", body = Success<LeakResults>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 422, response = super::openapi::ValidationFailed),
    ),
)]
pub async fn leaked_keys(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    body: web::Json<LeakBody>,
) -> Result<HttpResponse, AppError> {
    let principal = principal.revalidated(&req, &state).await?;
    let caller = match &principal.credential {
        Credential::ApiKey(k) => Some(&**k),
        Credential::Session(_) => None,
    };
    let LeakBody { keys, url } = body.into_inner();
    let report = state.support_service().report_leaks(caller, &principal.actor(), keys, url).await?;
    let results = report.outcomes.iter().map(|&outcome| LeakResult { outcome }).collect();
    Ok(Success::ok(LeakResults { results }))
}

/// Leak reports carry up to 1,000 candidates: a larger body limit than the rest.
pub fn json_config() -> web::JsonConfig {
    super::api_keys_api::json_config().limit(1024 * 1024)
}
