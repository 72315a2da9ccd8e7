//! The team audit log (`/settings/team/audit`, and the same view for support
//! at `/support/teams/{id}/audit`): filters, cursor pages, CSV export.
//!
//! Rules: who may read which log is `service::audit`'s; here the filter form
//! is parsed and the log rendered as a page of sentences ([`sentences`], the
//! one renderer of events, with `partials/audit_events_partial.html`) or as
//! CSV (cells quoted and defused against spreadsheet formulas).

mod sentences;

pub use sentences::{Detail, EventLine, ObjectRef, Viewer, action_choices, action_name, sentences};

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
use crate::service::audit::{AuditService, LogFormat, LogReader, TeamLog};
use crate::store::models::{ActionFilter, AuditCursor, AuditEvent, AuditFilter};

impl AppState {
    /// The team audit log's reading and export.
    pub fn audit_service(&self) -> AuditService<'_> {
        AuditService { db: &self.db, clock: &self.clock, prefix: &self.config.api_key_prefix }
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

#[derive(Template)]
#[template(path = "pages/audit.html")]
struct AuditPage {
    layout: Layout,
    team_name: String,
    base: String,
    /// Support reads it from the team's console page.
    team_page: Option<String>,
    event_lines: Vec<EventLine>,
    actor: String,
    action: String,
    /// An action filter typed into the address that no choice names.
    custom_action: Option<String>,
    choices: Vec<(&'static str, Vec<(String, String)>)>,
    from: String,
    to: String,
    next: Option<String>,
    csv: String,
    errors: FieldErrors,
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
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        errors.add("from", "This date is after the “To” date: pick a day on or before it.");
    }
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

/// The log as CSV. A team's export, like its pages, never carries where
/// support staff acted from (`support` = the reader is support).
fn csv(events: &[AuditEvent], support: bool) -> String {
    let mut out = String::from("id,time,actor,action,object_type,object_id,ip,user_agent,details\n");
    for e in events {
        let origin = support || e.actor_label != crate::service::audit::SUPPORT_LABEL;
        let row = [
            e.id.to_string(),
            format::rfc3339(e.created_at),
            e.actor_label.clone(),
            e.action.clone(),
            e.object_type.clone().unwrap_or_default(),
            e.object_id.clone().unwrap_or_default(),
            if origin { e.ip.clone().unwrap_or_default() } else { String::new() },
            if origin { e.user_agent.clone().unwrap_or_default() } else { String::new() },
            e.details.clone(),
        ];
        out.push_str(&row.iter().map(|c| format::csv_cell(c)).collect::<Vec<_>>().join(","));
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
    let team_page = match reader {
        LogReader::Support { team_id } => Some(format!("/support/teams/{team_id}")),
        LogReader::Member { .. } => None,
    };
    let support = team_page.is_some();
    let format = if query.format == "csv" { LogFormat::Csv } else { LogFormat::Page };
    let log = state.audit_service().team_log(reader, filter(query), format).await?;
    if format == LogFormat::Csv {
        return Ok(csv_response(&log, support));
    }
    let status = if log.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(
        status,
        &page(Layout::new(user, if support { Nav::Support } else { Nav::Audit })?, log, base, query, team_page),
    )
}

fn csv_response(log: &TeamLog, support: bool) -> HttpResponse {
    let name = format!("attachment; filename=\"audit-{}-{}.csv\"", log.team_id, format::date(log.at));
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((CONTENT_DISPOSITION, name))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(csv(&log.events, support))
}

fn page(layout: Layout, log: TeamLog, base: &str, query: &AuditQuery, team_page: Option<String>) -> AuditPage {
    let keep = |s: &str| super::auth::url_encode(s);
    let filters = format!(
        "actor={}&action={}&from={}&to={}",
        keep(&query.actor),
        keep(&query.action),
        keep(&query.from),
        keep(&query.to)
    );
    let viewer = if team_page.is_some() { Viewer::Support } else { Viewer::Team };
    let choices = action_choices();
    let action = query.action.trim().to_owned();
    let known = action.is_empty() || choices.iter().any(|(_, items)| items.iter().any(|(v, _)| *v == action));
    AuditPage {
        layout,
        team_name: log.team_name,
        base: base.to_owned(),
        team_page,
        event_lines: sentences(log.events, &log.names, viewer, log.at),
        actor: query.actor.clone(),
        custom_action: (!known).then(|| action.clone()),
        choices,
        action,
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
        use crate::web::format::csv_cell;
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=SUM(A1)"), "\"'=SUM(A1)\"");
    }
}
