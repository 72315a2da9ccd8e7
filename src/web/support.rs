//! The support console (`/support`), for the platform role `support` only;
//! everyone else, signed in or not, gets 404. Staff search keys, teams and
//! users, read a key's history, and revoke with a reason. They never see a
//! secret, cannot create keys and cannot act as a user.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::api_auth::{ApiPrincipal, Credential};
use super::api_keys::{KeyRow, UsageBar, bars, row};
use super::audit::{AuditQuery, object_link};
use super::auth::{CurrentUser, flash, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::team::EventRow;
use super::{State, format};
use crate::error::AppError;
use crate::service::accounts::Role;
use crate::service::keys::{self, codec, scopes};
use crate::service::support::{self, Outcome};
use crate::service::{Error, FieldErrors};
use crate::store::models::{ApiKey, AuditEvent, Membership, Team, User};
use crate::store::{StoreError, now};

/// A signed-in user with the support role; anything else is "not found".
pub struct SupportUser(pub CurrentUser);

impl FromRequest for SupportUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            match user.await {
                Ok(u) if u.ctx.user.is_support => Ok(SupportUser(u)),
                _ => Err(AppError::NotFound),
            }
        })
    }
}

pub struct KeyHit {
    pub id: String,
    pub prefix: String,
    pub name: String,
    pub team: String,
    pub status: &'static str,
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

fn key_hit(k: &ApiKey, prefix: &str, team_names: &[(String, String)], at: i64) -> KeyHit {
    KeyHit {
        id: k.id.clone(),
        prefix: codec::display(prefix, &k.key_prefix),
        name: k.name.clone(),
        team: match &k.team_id {
            Some(t) => team_names.iter().find(|(id, _)| id == t).map(|(_, n)| n.clone()).unwrap_or_default(),
            None => "(service key)".into(),
        },
        status: keys::status(k, at).as_str(),
    }
}

pub async fn search(
    state: State,
    SupportUser(user): SupportUser,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let mut page = SearchPage {
        layout: Layout::new(&user, Nav::Support)?,
        q: query.q.clone().unwrap_or_default(),
        searched: query.q.is_some(),
        whole_key: false,
        keys: Vec::new(),
        teams: Vec::new(),
        users: Vec::new(),
        errors: FieldErrors::default(),
    };
    let Some(q) = query.q.clone() else { return render(StatusCode::OK, &page) };
    let (keys, prefix) = (state.keys.clone(), state.config.api_key_prefix.clone());
    let found = state
        .db
        .run(move |conn| {
            let r = support::search(conn, &keys, &prefix, &q)?;
            let mut names = Vec::new();
            for k in &r.keys {
                if let Some(t) = k.team_id.as_deref().map(|t| Team::find(conn, t)).transpose()?.flatten() {
                    names.push((t.id, t.name));
                }
            }
            Ok::<_, Error>((r, names))
        })
        .await;
    match found {
        Ok((r, names)) => {
            let at = now();
            page.whole_key = r.whole_key;
            page.keys = r.keys.iter().map(|k| key_hit(k, &state.config.api_key_prefix, &names, at)).collect();
            page.teams = r.teams.into_iter().map(|t| (t.id, t.name)).collect();
            page.users = r.users.into_iter().map(|u| (u.id, u.email)).collect();
            // The pasted key is never echoed back into the page.
            if page.whole_key {
                page.q = String::new();
            }
            render(StatusCode::OK, &page)
        }
        Err(Error::Invalid(errors)) => {
            page.q.truncate(page.q.char_indices().nth(200).map_or(page.q.len(), |(i, _)| i));
            page.errors = errors;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
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
    events: Vec<EventRow>,
    active: bool,
    errors: FieldErrors,
}

async fn key_page(state: &State, user: &CurrentUser, id: String, errors: FieldErrors) -> Result<KeyPage, AppError> {
    let (key, team, creator, events, usage, from, to) = state
        .db
        .run(move |conn| {
            let key = ApiKey::find(conn, &id)?.filter(support::visible).ok_or(Error::NotFound)?;
            let team = key.team_id.as_deref().map(|t| Team::find(conn, t)).transpose()?.flatten();
            let creator = key.created_by.as_deref().map(|u| User::find(conn, u)).transpose()?.flatten();
            let mut events = keys::history(conn, &key.id)?;
            crate::service::audit::name_support_staff(conn, &mut events)?;
            let usage = keys::usage(conn, &key.id, 30, now())?;
            let from = key.rolled_from.as_deref().map(|i| ApiKey::find(conn, i)).transpose()?.flatten();
            let to = key.replaced_by.as_deref().map(|i| ApiKey::find(conn, i)).transpose()?.flatten();
            Ok::<_, Error>((key, team, creator, events, usage, from, to))
        })
        .await?;
    let prefix = &state.config.api_key_prefix;
    let emails = creator.map(|u| (u.id, u.email)).into_iter().collect();
    let mut k = row(&key, prefix, &emails, "", Role::Viewer, now());
    k.can_manage = false;
    let link = |k: &ApiKey| (k.id.clone(), codec::display(prefix, &k.key_prefix));
    let (bars, total, peak) = bars(&usage);
    Ok(KeyPage {
        layout: Layout::new(user, Nav::Support)?,
        active: k.status.is_usable(),
        kind: key.kind.to_string(),
        team: team.map(|t| (t.id, t.name)),
        allowed_ips: keys::allowed_ips_of(&key).iter().map(ToString::to_string).collect(),
        rolled_from: from.as_ref().map(link),
        replaced_by: to.as_ref().map(link),
        revocation: support::revocation_note(&key),
        k,
        bars,
        total,
        peak,
        events: events.into_iter().map(event_row).collect(),
        errors,
    })
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
    let page = key_page(&state, &user, id_param(path.into_inner())?, FieldErrors::default()).await?;
    render(StatusCode::OK, &page)
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
    let id = id_param(path.into_inner())?;
    let actor = user.actor.clone();
    let (key_id, reason) = (id.clone(), form.reason.clone());
    match state.db.run(move |conn| support::revoke_with_reason(conn, &actor, &key_id, &reason)).await {
        Ok(_) => {
            state.verifier.invalidate(&id);
            flash(&user.session, "Key revoked. The team sees your reason.");
            Ok(redirect(&format!("/support/keys/{id}")))
        }
        Err(Error::Invalid(errors)) => {
            render(StatusCode::UNPROCESSABLE_ENTITY, &key_page(&state, &user, id, errors).await?)
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
    let id = id_param(path.into_inner())?;
    let (team, members, keys, apps, events) = state
        .db
        .run(move |conn| {
            let team = Team::find(conn, &id)?.ok_or(Error::NotFound)?;
            let members = Membership::list(conn, &id)?;
            let keys = keys::list(conn, &id, crate::store::models::StatusFilter::All, None, 200, now())?;
            let apps = crate::service::oauth::apps(conn, &id)?;
            let mut events = crate::service::audit::recent_for_team(conn, &id, 20)?;
            crate::service::audit::name_support_staff(conn, &mut events)?;
            Ok::<_, Error>((team, members, keys, apps, events))
        })
        .await?;
    let names = vec![(team.id.clone(), team.name.clone())];
    let at = now();
    let page = TeamPage {
        layout: Layout::new(&user, Nav::Support)?,
        plan: team.plan.clone().unwrap_or_else(|| format!("{} (default)", state.config.default_plan)),
        require_totp: team.require_totp,
        members: members.into_iter().map(|(m, u)| (u.id, u.email, String::from(m.role))).collect(),
        keys: keys.iter().map(|k| key_hit(k, &state.config.api_key_prefix, &names, at)).collect(),
        apps: apps.into_iter().map(|a| (a.id, a.name, a.client_type.to_string())).collect(),
        events: linked(events),
        team_id: team.id,
        team_name: team.name,
    };
    render(StatusCode::OK, &page)
}

pub async fn team_audit(
    state: State,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let id = id_param(path.into_inner())?;
    let lookup = id.clone();
    let team = state
        .db
        .run(move |conn| Team::find(conn, &lookup).map_err(StoreError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    let base = format!("/support/teams/{id}/audit");
    super::audit::view(&state, &user, (team.id, team.name), &base, &query, true).await
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
    let id = id_param(path.into_inner())?;
    let (u, team, keys, authorized, events) = state
        .db
        .run(move |conn| {
            let u = User::find(conn, &id)?.ok_or(Error::NotFound)?;
            let team = Membership::of_user(conn, &id)?;
            let keys = ApiKey::created_by(conn, &id, 100)?;
            let authorized = crate::service::oauth::authorized_apps(conn, &id)?;
            let mut events = AuditEvent::by_actor(conn, &id, 20)?;
            crate::service::audit::name_support_staff(conn, &mut events)?;
            Ok::<_, Error>((u, team, keys, authorized, events))
        })
        .await?;
    let names: Vec<(String, String)> = team.iter().map(|(_, t)| (t.id.clone(), t.name.clone())).collect();
    let at = now();
    let page = UserPage {
        layout: Layout::new(&viewer, Nav::Support)?,
        is_support: u.is_support,
        totp: u.has_totp(),
        team: team.map(|(m, t)| (t.id, t.name, String::from(m.role))),
        keys: keys.iter().map(|k| key_hit(k, &state.config.api_key_prefix, &names, at)).collect(),
        authorized: authorized.into_iter().map(|(c, a)| (a.name, c.scopes)).collect(),
        events: linked(events),
        email: u.email,
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
    if !matches!(&principal.credential, Credential::ApiKey(k) if k.is_service_key())
        || !scopes::satisfies(principal.scopes(), "leaks:report")
    {
        return Err(AppError::Forbidden("This credential lacks the scope leaks:report.".into()));
    }
    let body = body.into_inner();
    let candidates = body
        .keys
        .ok_or_else(|| AppError::Validation(FieldErrors::single("keys", "Send a list of candidate strings.")))?;
    let url = body.url.unwrap_or_default();
    let (hasher, prefix, actor) = (state.keys.clone(), state.config.api_key_prefix.clone(), principal.actor.clone());
    let report =
        state.db.run(move |conn| support::report_leaks(conn, &hasher, &actor, &prefix, &candidates, &url)).await?;
    for id in &report.revoked_keys {
        state.verifier.invalidate(id);
    }
    if report.oauth_changed {
        state.verifier.invalidate_all();
    }
    let results: Vec<_> = report.outcomes.iter().map(|o: &Outcome| json!({"outcome": o})).collect();
    Ok(HttpResponse::Ok().json(json!({"status": "success", "data": {"results": results}})))
}

/// Leak reports carry up to 1,000 candidates: a larger body limit than the rest.
pub fn leak_json_config() -> web::JsonConfig {
    super::api_keys_api::json_config().limit(1024 * 1024)
}
