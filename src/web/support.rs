//! The support console (`/support`), for the platform role `support` only;
//! everyone else, signed in or not, gets 404. Staff search keys, teams and
//! users, read a key's history, and revoke with a reason. They never see a
//! secret, cannot create keys and cannot act as a user.
//!
//! Rules: the console's use cases are `service::support`'s (one call per
//! handler); here the pages are rendered, and a form with errors is shown
//! again with them (422).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::api_auth::{ApiPrincipal, Credential};
use super::api_keys::{HistoryRow, KeyRow, UsageBar, bars, history, row};
use super::audit::{AuditQuery, object_link};
use super::auth::{CurrentUser, flash, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::team::EventRow;
use super::{AppState, State, format};
use crate::domain::{KeyId, TeamId, UserId};
use crate::error::AppError;
use crate::service::accounts::Role;
use crate::service::audit::LogReader;
use crate::service::support::{self, Found, KeyDossier, KeyHit, SupportService};
use crate::service::{Error, FieldErrors, policy};
use crate::store::models::AuditEvent;

impl AppState {
    /// The support console's use cases.
    pub fn support_service(&self) -> SupportService<'_> {
        SupportService {
            db: &self.db,
            hasher: &self.keys,
            verifier: &self.verifier,
            clock: &self.clock,
            prefix: &self.config.api_key_prefix,
        }
    }
}

/// A signed-in user with the support role; anything else is "not found".
pub struct SupportUser(pub CurrentUser);

impl FromRequest for SupportUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            match user.await {
                Ok(u) if policy::may_use_support_console(u.ctx.user.is_support) => Ok(SupportUser(u)),
                _ => Err(AppError::NotFound),
            }
        })
    }
}

#[derive(Template)]
#[template(path = "support/search.html")]
struct SearchPage {
    layout: Layout,
    q: String,
    searched: bool,
    whole_key: bool,
    keys: Vec<KeyHit>,
    teams: Vec<(String, String)>,
    users: Vec<(String, String)>,
    errors: FieldErrors,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SearchQuery {
    q: Option<String>,
}

impl SearchPage {
    fn found(mut self, found: Found) -> Self {
        // The pasted key is never echoed back into the page.
        if found.whole_key {
            self.q = String::new();
        }
        Self { whole_key: found.whole_key, keys: found.keys, teams: found.teams, users: found.users, ..self }
    }

    fn refused(mut self, errors: FieldErrors) -> Self {
        self.q.truncate(self.q.char_indices().nth(support::MAX_QUERY).map_or(self.q.len(), |(i, _)| i));
        Self { errors, ..self }
    }
}

pub async fn search(
    state: State,
    SupportUser(user): SupportUser,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let page = SearchPage {
        layout: Layout::new(&user, Nav::Support)?,
        q: query.q.clone().unwrap_or_default(),
        searched: query.q.is_some(),
        whole_key: false,
        keys: Vec::new(),
        teams: Vec::new(),
        users: Vec::new(),
        errors: FieldErrors::default(),
    };
    let Some(q) = query.q.as_deref() else { return render(StatusCode::OK, &page) };
    match state.support_service().search(q).await {
        Ok(found) => render(StatusCode::OK, &page.found(found)),
        Err(Error::Invalid(errors)) => render(StatusCode::UNPROCESSABLE_ENTITY, &page.refused(errors)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "support/key.html")]
struct KeyPage {
    layout: Layout,
    k: KeyRow,
    kind: String,
    team: Option<(String, String)>,
    allowed_ips: Vec<String>,
    rolled_from: Option<(String, String)>,
    replaced_by: Option<(String, String)>,
    revocation: Option<String>,
    bars: Vec<UsageBar>,
    total: i64,
    peak: i64,
    events: Vec<HistoryRow>,
    active: bool,
    errors: FieldErrors,
}

fn key_page(state: &State, layout: Layout, d: KeyDossier, errors: FieldErrors) -> KeyPage {
    let emails = d.creator.map(|u| (u.id, u.email)).into_iter().collect();
    let mut k = row(&d.key, &state.config.api_key_prefix, &emails, "", Role::Viewer, d.at);
    k.can_manage = false;
    let (bars, total, peak) = bars(&d.usage);
    KeyPage {
        layout,
        active: d.status.is_usable(),
        kind: d.key.kind.to_string(),
        team: d.team.map(|t| (t.id, t.name)),
        allowed_ips: crate::service::keys::allowed_ips_of(&d.key).iter().map(ToString::to_string).collect(),
        rolled_from: d.rolled_from,
        replaced_by: d.replaced_by,
        revocation: support::revocation_note(&d.key),
        k,
        bars,
        total,
        peak,
        events: history(d.events, d.at),
        errors,
    }
}

/// Events with a link to their object's support page.
fn linked(events: Vec<AuditEvent>) -> Vec<(EventRow, Option<String>)> {
    events
        .into_iter()
        .map(|e| {
            let link = object_link(e.object_type.as_deref(), e.object_id.as_deref(), true);
            (event_row(e), link)
        })
        .collect()
}

fn event_row(e: AuditEvent) -> EventRow {
    EventRow { when: format::datetime(e.created_at), actor: e.actor_label, action: e.action }
}

pub async fn key(
    state: State,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = KeyId::from(id_param(path.into_inner())?);
    let dossier = state.support_service().key(&id).await?;
    render(StatusCode::OK, &key_page(&state, Layout::new(&user, Nav::Support)?, dossier, FieldErrors::default()))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ReasonForm {
    reason: String,
}

pub async fn revoke(
    state: State,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> Result<HttpResponse, AppError> {
    let id = KeyId::from(id_param(path.into_inner())?);
    match state.support_service().revoke(&user.actor, &id, &form.reason).await {
        Ok(()) => {
            flash(&user.session, "Key revoked. The team sees your reason.");
            Ok(redirect(&format!("/support/keys/{id}")))
        }
        Err(Error::Invalid(errors)) => {
            let dossier = state.support_service().key(&id).await?;
            let page = key_page(&state, Layout::new(&user, Nav::Support)?, dossier, errors);
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "support/team.html")]
struct TeamPage {
    layout: Layout,
    team_id: String,
    team_name: String,
    plan: String,
    require_totp: bool,
    members: Vec<(String, String, String)>,
    keys: Vec<KeyHit>,
    apps: Vec<(String, String, String)>,
    events: Vec<(EventRow, Option<String>)>,
}

pub async fn team(
    state: State,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = TeamId::from(id_param(path.into_inner())?);
    let d = state.support_service().team(&id).await?;
    let page = TeamPage {
        layout: Layout::new(&user, Nav::Support)?,
        plan: d.team.plan.clone().unwrap_or_else(|| format!("{} (default)", state.config.default_plan)),
        require_totp: d.team.require_totp,
        members: d.members,
        keys: d.keys,
        apps: d.apps,
        events: linked(d.events),
        team_id: d.team.id,
        team_name: d.team.name,
    };
    render(StatusCode::OK, &page)
}

pub async fn team_audit(
    state: State,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let team_id = TeamId::from(id_param(path.into_inner())?);
    let base = format!("/support/teams/{team_id}/audit");
    super::audit::view(&state, &user, LogReader::Support { team_id: &team_id }, &base, &query).await
}

#[derive(Template)]
#[template(path = "support/user.html")]
struct UserPage {
    layout: Layout,
    email: String,
    is_support: bool,
    totp: bool,
    team: Option<(String, String, String)>,
    keys: Vec<KeyHit>,
    authorized: Vec<(String, String)>,
    events: Vec<(EventRow, Option<String>)>,
}

pub async fn user(
    state: State,
    SupportUser(viewer): SupportUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = UserId::from(id_param(path.into_inner())?);
    let d = state.support_service().user(&id).await?;
    let page = UserPage {
        layout: Layout::new(&viewer, Nav::Support)?,
        is_support: d.user.is_support,
        totp: d.user.has_totp(),
        team: d.team,
        keys: d.keys,
        authorized: d.authorized,
        events: linked(d.events),
        email: d.user.email,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct LeakBody {
    keys: Option<Vec<String>>,
    url: Option<String>,
}

/// `POST /api/v1/leaked-keys`, for a secret-scanning partner's service key.
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
    let results: Vec<_> = report.outcomes.iter().map(|o| json!({"outcome": o})).collect();
    Ok(HttpResponse::Ok().json(json!({"status": "success", "data": {"results": results}})))
}

/// Leak reports carry up to 1,000 candidates: a larger body limit than the rest.
pub fn leak_json_config() -> web::JsonConfig {
    super::api_keys_api::json_config().limit(1024 * 1024)
}
