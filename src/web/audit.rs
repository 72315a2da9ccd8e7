//! The team audit log (`/settings/team/audit`, and the same view for support
//! at `/support/teams/{id}/audit`): filters, cursor pages, CSV export.
//!
//! Rules: who may read which log is `service::audit`'s; here the filter form
//! is parsed and the log rendered as a page or as CSV (cells quoted and
//! defused against spreadsheet formulas).

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::CurrentUser;
use super::page::{Layout, Nav, render};
use super::{AppState, State, format};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::audit::{AuditService, LogFormat, LogReader, ObjectKind, TeamLog};
use crate::store::models::{ActionFilter, AuditCursor, AuditEvent, AuditFilter};

impl AppState {
    /// The team audit log's reading and export.
    pub fn audit_service(&self) -> AuditService<'_> {
        AuditService { db: &self.db, clock: &self.clock }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    actor: String,
    action: String,
    from: String,
    to: String,
    cursor: String,
    format: String,
}

pub struct AuditLine {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub link: Option<String>,
    pub ip: String,
    pub user_agent: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "pages/audit.html")]
struct AuditPage {
    layout: Layout,
    team_name: String,
    base: String,
    lines: Vec<AuditLine>,
    actor: String,
    action: String,
    from: String,
    to: String,
    next: Option<String>,
    csv: String,
    errors: FieldErrors,
}

/// Where an object's page is, for the viewer (`support` or the team).
pub fn object_link(kind: Option<&str>, id: Option<&str>, support: bool) -> Option<String> {
    match (ObjectKind::parse(kind?)?, id?, support) {
        (ObjectKind::ApiKey, id, false) => Some(format!("/settings/developer/api-keys/{id}")),
        (ObjectKind::ApiKey, id, true) => Some(format!("/support/keys/{id}")),
        (ObjectKind::User, id, true) => Some(format!("/support/users/{id}")),
        (ObjectKind::Team, id, true) => Some(format!("/support/teams/{id}")),
        _ => None,
    }
}

fn filter(q: &AuditQuery) -> Result<AuditFilter, FieldErrors> {
    let mut errors = FieldErrors::default();
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut date = |field: &str, s: &str, end: bool| match s.trim() {
        "" => None,
        d => match format::parse_date_end_of_day(d) {
            Some(t) => Some(if end { t } else { t - 86_399 }),
            None => {
                errors.add(field, "Use a date like 2026-11-25.");
                None
            }
        },
    };
    let from = date("from", &q.from, false);
    let to = date("to", &q.to, true);
    let before = match q.cursor.trim() {
        "" => None,
        c => AuditCursor::parse(c).or_else(|| {
            errors.add("cursor", "This cursor is not valid.");
            None
        }),
    };
    for (field, value) in [("actor", &q.actor), ("action", &q.action)] {
        if let Err(m) = crate::service::validate::search(value, 200) {
            errors.add(field, m);
        }
    }
    if errors.is_empty() {
        let action = text(&q.action).map(|a| ActionFilter::parse(&a));
        Ok(AuditFilter { actor: text(&q.actor), action, from, to, before })
    } else {
        Err(errors)
    }
}

fn line(e: AuditEvent, support: bool) -> AuditLine {
    AuditLine {
        when: format::datetime(e.created_at),
        link: object_link(e.object_type.as_deref(), e.object_id.as_deref(), support),
        object: match (&e.object_type, &e.object_id) {
            (Some(k), Some(id)) => format!("{k} {id}"),
            _ => String::new(),
        },
        actor: e.actor_label,
        action: e.action,
        ip: e.ip.unwrap_or_default(),
        user_agent: e.user_agent.unwrap_or_default(),
        details: if e.details == "{}" { String::new() } else { e.details },
    }
}

/// A CSV cell: quoted, and defused against spreadsheet formulas.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn csv(events: &[AuditEvent]) -> String {
    let mut out = String::from("id,time,actor,action,object_type,object_id,ip,user_agent,details\n");
    for e in events {
        let row = [
            e.id.to_string(),
            format::rfc3339(e.created_at),
            e.actor_label.clone(),
            e.action.clone(),
            e.object_type.clone().unwrap_or_default(),
            e.object_id.clone().unwrap_or_default(),
            e.ip.clone().unwrap_or_default(),
            e.user_agent.clone().unwrap_or_default(),
            e.details.clone(),
        ];
        out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// Renders a team's log for a team member or for support.
pub async fn view(
    state: &State,
    user: &CurrentUser,
    reader: LogReader<'_>,
    base: &str,
    query: &AuditQuery,
) -> Result<HttpResponse, AppError> {
    let support = matches!(reader, LogReader::Support { .. });
    let format = if query.format == "csv" { LogFormat::Csv } else { LogFormat::Page };
    let log = state.audit_service().team_log(reader, filter(query), format).await?;
    if format == LogFormat::Csv {
        return Ok(csv_response(&log));
    }
    let status = if log.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(
        status,
        &page(Layout::new(user, if support { Nav::Support } else { Nav::Audit })?, log, base, query, support),
    )
}

fn csv_response(log: &TeamLog) -> HttpResponse {
    let name = format!("attachment; filename=\"audit-{}-{}.csv\"", log.team_id, format::date(log.at));
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((CONTENT_DISPOSITION, name))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(csv(&log.events))
}

fn page(layout: Layout, log: TeamLog, base: &str, query: &AuditQuery, support: bool) -> AuditPage {
    let keep = |s: &str| super::auth::url_encode(s);
    let filters = format!(
        "actor={}&action={}&from={}&to={}",
        keep(&query.actor),
        keep(&query.action),
        keep(&query.from),
        keep(&query.to)
    );
    AuditPage {
        layout,
        team_name: log.team_name,
        base: base.to_owned(),
        lines: log.events.into_iter().map(|e| line(e, support)).collect(),
        actor: query.actor.clone(),
        action: query.action.clone(),
        from: query.from.clone(),
        to: query.to.clone(),
        next: log.next.map(|c| format!("{base}?{filters}&cursor={c}")),
        csv: format!("{base}?{filters}&format=csv"),
        errors: log.errors,
    }
}

pub async fn team_log(
    state: State,
    user: CurrentUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    view(&state, &user, LogReader::Member { team, role }, "/settings/team/audit", &query).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(super::cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::cell("=SUM(A1)"), "\"'=SUM(A1)\"");
    }
}
