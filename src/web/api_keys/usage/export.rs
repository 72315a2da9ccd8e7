//! A key's usage for programs: `GET /api/v1/api-keys/{id}/usage` (JSON, or
//! CSV when asked) and the key page's CSV download.
//!
//! Rules: every reading goes through `KeyService::usage_report` (keys of
//! another team are not found); the API needs `api_keys:read`; dates are
//! `YYYY-MM-DD` (UTC days), anything else is a `validation_failed` on its
//! field, never echoed; CSV cells are quoted and defused against spreadsheet
//! formulas (`format::csv_cell`).

use actix_web::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::super::key_id;
pub use super::json::{UsageReport, report_json};
use crate::domain::{KeyId, TeamId, UsageOutcome};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::keys::{KeyUsage, codec};
use crate::web::api_auth::ApiPrincipal;
use crate::web::auth::CurrentUser;
use crate::web::envelope::Success;
use crate::web::format;
use crate::web::{AppState, State};

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (either may be left out or empty; an
/// RFC 3339 time stands for its UTC day), and for the API `format=json|csv`.
#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SpanQuery {
    /// The first day (YYYY-MM-DD, or an RFC 3339 time for its UTC day); 30 days before `to` if left out.
    from: Option<String>,
    /// The last day (YYYY-MM-DD, or an RFC 3339 time for its UTC day); today if left out.
    to: Option<String>,
    /// `json` (the default) or `csv`.
    #[param(inline, value_type = Option<UsageFormat>)]
    format: Option<String>,
}

/// The formats of a key's usage.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum UsageFormat {
    Json,
    Csv,
}

/// The days asked for (Unix days); a date that does not read is refused.
fn parse_span(q: &SpanQuery) -> Result<(Option<i64>, Option<i64>), AppError> {
    let mut errors = FieldErrors::default();
    let mut day = |field: &str, raw: Option<&str>| match raw.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let parsed = format::parse_day(s).or_else(|| format::parse_rfc3339(s).map(|t| t.div_euclid(86_400)));
            if parsed.is_none() {
                errors.add(field, "Use a date like 2026-11-26 (YYYY-MM-DD), or an RFC 3339 time.");
            }
            parsed
        }
    };
    let (from, to) = (day("from", q.from.as_deref()), day("to", q.to.as_deref()));
    if errors.is_empty() { Ok((from, to)) } else { Err(AppError::Validation(errors)) }
}

/// The usage as CSV: a header row, then one row per day.
pub fn csv(u: &KeyUsage) -> String {
    let names: Vec<&str> = UsageOutcome::ALL.iter().map(|o| o.as_str()).collect();
    let mut out = format!("date,{},total\n", names.join(","));
    for d in &u.report.days {
        let counts: Vec<String> = d.counts.iter().map(ToString::to_string).collect();
        out.push_str(&format!("{},{},{}\n", format::csv_cell(&format::day(d.day)), counts.join(","), d.total()));
    }
    out
}

/// The CSV download of `u` (`<prefix>-usage-<from>-<to>.csv`).
fn csv_response(state: &AppState, u: &KeyUsage) -> HttpResponse {
    let prefix = codec::display(&state.config.api_key_prefix, &u.key.key_prefix);
    let name = format!("attachment; filename=\"{prefix}-usage-{}-{}.csv\"", format::day(u.from), format::day(u.to));
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((CONTENT_DISPOSITION, name))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(csv(u))
}

/// Whether the API caller asked for CSV (`format=csv`, or `Accept: text/csv`
/// without `format`); any other format, an empty one included, is refused.
fn wants_csv(req: &HttpRequest, q: &SpanQuery) -> Result<bool, AppError> {
    match q.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        None => Ok(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"))),
        Some(_) => Err(AppError::Validation(FieldErrors::single("format", "Use json or csv."))),
    }
}

/// `GET /api/v1/api-keys/{id}/usage?from=&to=` (scope `api_keys:read`):
/// per day by outcome, the addresses and user agents seen last, the scopes
/// exercised and unused — JSON, or CSV when asked.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys/{id}/usage",
    tag = "API keys",
    operation_id = "api_key_usage",
    summary = "A key's usage per day, its callers and the scopes it used.",
    description = "Scope `api_keys:read`. Requests per UTC day by outcome, the addresses and user agents that \
                   presented the key, and the scopes it exercised. CSV with `format=csv` or `Accept: text/csv`.",
    params(("id" = String, Path, description = "The key's id."), SpanQuery),
    security(("api_key" = []), ("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The key's usage.",
         content((Success<UsageReport> = "application/json"), (String = "text/csv"))),
        (status = 400, response = crate::web::openapi::BadRequest),
        (status = 404, response = crate::web::openapi::NotFound),
        (status = 422, response = crate::web::openapi::ValidationFailed),
    ),
)]
pub async fn api(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    path: web::Path<String>,
    query: web::Query<SpanQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require("api_keys:read")?;
    let (team_id, id) = (TeamId::from(principal.team_id()?), key_id(path.into_inner())?);
    let (from, to) = parse_span(&query)?;
    let as_csv = wants_csv(&req, &query)?;
    let usage = state.key_service().usage_report(&team_id, &id, from, to).await?;
    if as_csv {
        return Ok(csv_response(&state, &usage));
    }
    Ok(Success::ok(report_json(&usage)))
}

/// `GET /settings/developer/api-keys/{id}/usage.csv?from=&to=`: the key
/// page's "Download CSV".
pub async fn download(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    query: web::Query<SpanQuery>,
) -> Result<HttpResponse, AppError> {
    let (team, _) = user.team()?;
    let id: KeyId = key_id(path.into_inner())?;
    let (from, to) = parse_span(&query)?;
    let usage = state.key_service().usage_report(&TeamId::from(team.id.as_str()), &id, from, to).await?;
    Ok(csv_response(&state, &usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::usage::report::{DayOutcomes, Privilege, Report};

    fn day(day: i64, counts: [i64; 7]) -> DayOutcomes {
        DayOutcomes { day, counts }
    }

    #[test]
    fn csv_has_one_row_per_day_with_totals() {
        let key = crate::store::models::ApiKey {
            id: "key_1".into(),
            kind: crate::domain::KeyKind::Team,
            team_id: None,
            created_by: None,
            name: "n".into(),
            description: String::new(),
            key_hash: String::new(),
            key_prefix: "abcd1234".into(),
            scopes: String::new(),
            allowed_ips: String::new(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            revoked_by: None,
            revoked_reason: None,
            last_used_at: None,
            rolled_from: None,
            replaced_by: None,
            disabled_at: None,
            grace_extended_at: None,
        };
        let report = Report {
            days: vec![day(20_000, [1, 2, 3, 4, 5, 6, 7]), day(20_001, [0; 7])],
            addresses: Vec::new(),
            agents: Vec::new(),
            exercised: Vec::new(),
            privilege: Privilege::Unknown,
        };
        let u = KeyUsage { key, from: 20_000, to: 20_001, report };
        assert_eq!(
            csv(&u),
            "date,ok,scope_denied,address_denied,rate_limited,expired,revoked,disabled,total\n\
             \"2024-10-04\",1,2,3,4,5,6,7,28\n\"2024-10-05\",0,0,0,0,0,0,0,0\n"
        );
        let json = serde_json::to_value(report_json(&u)).unwrap();
        assert_eq!(json["days"][0]["address_denied"], 3);
        assert_eq!(json["days"][0]["total"], 28);
        assert_eq!(json["scopes"]["unused"], serde_json::Value::Null);
    }
}
