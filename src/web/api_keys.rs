//! Settings → Developer → API Keys: the list, the create form, the show-once
//! reveal, roll, revoke, and a key's detail page.
//!
//! Rules: the secret appears only in the response to the POST that made it
//! (`Cache-Control: no-store`), never in a redirect, flash or session; viewers
//! see the list without buttons; everything works without JavaScript, and htmx
//! swaps a revoked row in place.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::api_keys_api::{cursor_of, parse_cursor, parse_filter, settings};
use super::auth::{CurrentUser, flash, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::{State, format};
use crate::error::AppError;
use crate::service::accounts::{self, Role};
use crate::service::keys::{self, Creator, Expiry, KeyRequest, codec, scopes};
use crate::service::{FieldErrors, policy};
use crate::store::models::ApiKey;
use crate::store::now;

const PAGE_SIZE: i64 = 25;

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub last_used: String,
    pub expires: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub note: Option<String>,
    pub can_manage: bool,
}

pub struct ScopeOption {
    pub value: String,
    pub action: String,
    pub checked: bool,
}

pub struct ScopeGroup {
    pub resource: String,
    pub options: Vec<ScopeOption>,
}

#[derive(Default)]
pub struct CreateForm {
    pub name: String,
    pub description: String,
    pub preset: String,
    pub scopes: Vec<String>,
    pub expires_in_days: String,
    pub expires_at: String,
    pub allowed_ips: String,
}

#[derive(Template)]
#[template(path = "pages/api_keys.html")]
struct KeysPage {
    layout: Layout,
    rows: Vec<KeyRow>,
    filter: String,
    filters: Vec<(&'static str, &'static str)>,
    next_cursor: Option<String>,
    can_create: bool,
    can_set_policy: bool,
    max_lifetime: Option<i64>,
    groups: Vec<ScopeGroup>,
    form: CreateForm,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "pages/api_key_reveal.html")]
struct RevealPage {
    layout: Layout,
    name: String,
    secret: String,
    prefix: String,
    curl: String,
    rolled_from: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "partials/api_key_row_partial.html")]
struct RowPartial {
    k: KeyRow,
    csrf: String,
}

pub struct UsageBar {
    pub x: i64,
    pub y: i64,
    pub height: i64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "pages/api_key_detail.html")]
struct DetailPage {
    layout: Layout,
    k: KeyRow,
    description: String,
    allowed_ips: Vec<String>,
    rolled_from: Option<(String, String)>,
    replaced_by: Option<(String, String)>,
    revoked_reason: Option<String>,
    bars: Vec<UsageBar>,
    total: i64,
    peak: i64,
    events: Vec<super::team::EventRow>,
}

const STATUS_LABELS: [(&str, &str); 4] =
    [("active", "Active"), ("expiring_soon", "Expiring soon"), ("expired", "Expired"), ("revoked", "Revoked")];

fn label(status: &str) -> &'static str {
    STATUS_LABELS.iter().find(|(s, _)| *s == status).map_or("Active", |(_, l)| l)
}

pub fn row(key: &ApiKey, prefix: &str, emails: &HashMap<String, String>, me: &str, role: Role, at: i64) -> KeyRow {
    let status = keys::status(key, at);
    let note = match (&key.replaced_by, &key.rolled_from, &key.revoked_reason) {
        (_, _, Some(_)) => crate::service::support::revocation_note(key),
        (Some(_), _, _) if status != "expired" => {
            Some(format!("Rolled; keeps working until {}", key.expires_at.map(format::datetime).unwrap_or_default()))
        }
        (Some(_), _, _) => Some("Rolled; replaced by a newer key".into()),
        (None, Some(_), _) => Some("Replaces a rolled key".into()),
        _ => None,
    };
    KeyRow {
        id: key.id.clone(),
        name: key.name.clone(),
        prefix: codec::display(prefix, &key.key_prefix),
        scopes: keys::scopes_of(key),
        created_by: match key.created_by.as_ref() {
            Some(id) => emails.get(id).cloned().unwrap_or_else(|| "a former member".into()),
            None => "—".into(),
        },
        created_at: format::date(key.created_at),
        last_used: key.last_used_at.map_or_else(|| "Never".into(), |t| format::relative(t, at)),
        expires: key.expires_at.map_or_else(|| "Never".into(), format::datetime),
        status,
        status_label: label(status),
        note,
        can_manage: matches!(status, "active" | "expiring_soon")
            && policy::manage_key(
                &policy::Caller { user_id: Some(me), role, ceiling: None },
                key.created_by.as_deref(),
            )
            .is_ok(),
    }
}

pub async fn emails(state: &State, team_id: &str) -> Result<HashMap<String, String>, AppError> {
    let team = team_id.to_owned();
    let members = state.db.run(move |conn| accounts::members(conn, &team)).await?;
    Ok(members.into_iter().map(|(_, u)| (u.id, u.email)).collect())
}

fn groups(catalog: &[String], role: Role, checked: &[String]) -> Vec<ScopeGroup> {
    let mut out: Vec<ScopeGroup> = Vec::new();
    for scope in scopes::grantable(catalog, role) {
        let (resource, action) = scope.split_once(':').unwrap_or((scope, "all"));
        let option = ScopeOption {
            value: scope.to_owned(),
            action: action.to_owned(),
            checked: checked.iter().any(|c| c == scope),
        };
        match out.iter_mut().find(|g| g.resource == resource) {
            Some(g) => g.options.push(option),
            None => out.push(ScopeGroup { resource: resource.to_owned(), options: vec![option] }),
        }
    }
    out
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IndexQuery {
    status: Option<String>,
    cursor: Option<String>,
}

async fn page(
    state: &State,
    user: &CurrentUser,
    query: &IndexQuery,
    form: CreateForm,
    errors: FieldErrors,
) -> Result<KeysPage, AppError> {
    let (team, role) = user.team()?;
    let filter = parse_filter(query.status.as_deref())?;
    let after = parse_cursor(query.cursor.as_deref())?;
    let team_id = team.id.clone();
    let mut rows = state.db.run(move |conn| keys::list(conn, &team_id, filter, after, PAGE_SIZE + 1)).await?;
    let next_cursor = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(cursor_of)
    } else {
        None
    };
    let emails = emails(state, &team.id).await?;
    let at = now();
    let prefix = &state.config.api_key_prefix;
    Ok(KeysPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        rows: rows.iter().map(|k| row(k, prefix, &emails, &user.ctx.user.id, role, at)).collect(),
        filter: query.status.clone().unwrap_or_else(|| "all".into()),
        filters: vec![
            ("all", "All"),
            ("active", "Active"),
            ("expiring_soon", "Expiring soon"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
        ],
        next_cursor,
        can_create: role != Role::Viewer,
        can_set_policy: role.manages_members(),
        max_lifetime: team.max_key_lifetime_days,
        groups: groups(&state.config.scopes, role, &form.scopes),
        form,
        errors,
    })
}

pub async fn index(state: State, user: CurrentUser, query: web::Query<IndexQuery>) -> Result<HttpResponse, AppError> {
    let form = CreateForm { expires_in_days: "90".into(), preset: "custom".into(), ..CreateForm::default() };
    render(StatusCode::OK, &page(&state, &user, &query, form, FieldErrors::default()).await?)
}

fn parse_form(pairs: Vec<(String, String)>) -> CreateForm {
    let mut form = CreateForm::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => form.name = v,
            "description" => form.description = v,
            "preset" => form.preset = v,
            "scopes" => form.scopes.push(v),
            "expires_in_days" => form.expires_in_days = v,
            "expires_at" => form.expires_at = v,
            "allowed_ips" => form.allowed_ips = v,
            _ => {}
        }
    }
    form
}

/// The form as a service request; presets expand to the role's scopes.
fn key_request(form: &CreateForm, catalog: &[String], role: Role) -> Result<KeyRequest, FieldErrors> {
    let grantable = scopes::grantable(catalog, role);
    let scopes: Vec<String> = match form.preset.as_str() {
        "read_only" => grantable.iter().filter(|s| s.ends_with(":read")).map(|s| (*s).to_owned()).collect(),
        "full" => grantable.iter().map(|s| (*s).to_owned()).collect(),
        _ => form.scopes.clone(),
    };
    let expiry = if !form.expires_at.trim().is_empty() {
        let at = format::parse_date_end_of_day(&form.expires_at).or_else(|| format::parse_rfc3339(&form.expires_at));
        Expiry::At(at.ok_or_else(|| FieldErrors::single("expires_at", "Use a date like 2027-01-31."))?)
    } else {
        match form.expires_in_days.trim() {
            "" | "never" => Expiry::Never,
            d => Expiry::InDays(d.parse().map_err(|_| FieldErrors::single("expires_at", "Choose an expiry."))?),
        }
    };
    Ok(KeyRequest {
        name: form.name.clone(),
        description: form.description.clone(),
        scopes,
        expiry,
        allowed_ips: form
            .allowed_ips
            .split([',', '\n'])
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

fn reveal(
    state: &State,
    user: &CurrentUser,
    key: &ApiKey,
    secret: String,
    rolled_from: Option<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let page = RevealPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        name: key.name.clone(),
        curl: format!("curl -H \"X-API-Key: {secret}\" {}/api/v1/auth/test", state.config.public_url),
        prefix: codec::display(&state.config.api_key_prefix, &key.key_prefix),
        secret,
        rolled_from,
    };
    render(StatusCode::OK, &page)
}

pub async fn create(
    state: State,
    user: CurrentUser,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    if role == Role::Viewer {
        return Err(AppError::Forbidden("Viewers cannot create API keys.".into()));
    }
    let form = parse_form(body.into_inner());
    let result = match key_request(&form, &state.config.scopes, role) {
        Ok(req) => {
            let (st, actor, team_id) = (state.clone(), user.actor.clone(), team.id.clone());
            state
                .db
                .run(move |conn| {
                    let creator = Creator {
                        actor: &actor,
                        team_id: &team_id,
                        role,
                        ceiling: None,
                        ip_ceiling: None,
                        not_after: None,
                    };
                    keys::create(conn, &st.keys, &creator, settings(&st), &req)
                })
                .await
        }
        Err(errors) => Err(crate::service::Error::Invalid(errors)),
    };
    match result {
        Ok((key, secret)) => {
            state.verifier.invalidate_unknown();
            reveal(&state, &user, &key, secret, None)
        }
        Err(crate::service::Error::Invalid(errors)) => {
            let view = page(&state, &user, &IndexQuery::default(), form, errors).await?;
            render(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn roll(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<super::page::GraceForm>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = id_param(path.into_inner())?;
    let (st, actor, team_id, old_id, grace) =
        (state.clone(), user.actor.clone(), team.id.clone(), id.clone(), form.grace);
    let result = state
        .db
        .run(move |conn| {
            let creator =
                Creator { actor: &actor, team_id: &team_id, role, ceiling: None, ip_ceiling: None, not_after: None };
            let rolled = keys::roll(conn, &st.keys, &creator, super::api_keys_api::settings(&st), &old_id, grace)?;
            let old = keys::get(conn, &team_id, &old_id)?;
            Ok::<_, crate::service::Error>((rolled, old))
        })
        .await;
    state.verifier.invalidate(&id);
    match result {
        Ok(((key, secret), old)) => {
            state.verifier.invalidate_unknown();
            let old_prefix = codec::display(&state.config.api_key_prefix, &old.key_prefix);
            let until = old.expires_at.map(format::datetime).unwrap_or_default();
            reveal(&state, &user, &key, secret, Some((old_prefix, until)))
        }
        Err(crate::service::Error::Invalid(errors)) => {
            let message = errors.0.values().next().cloned().unwrap_or_default();
            Err(AppError::BadRequest(message))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke(
    state: State,
    user: CurrentUser,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = id_param(path.into_inner())?;
    let (actor, team_id, key_id) = (user.actor.clone(), team.id.clone(), id.clone());
    let key = state
        .db
        .run(move |conn| {
            let creator =
                Creator { actor: &actor, team_id: &team_id, role, ceiling: None, ip_ceiling: None, not_after: None };
            keys::revoke(conn, &creator, &key_id)
        })
        .await?;
    state.verifier.invalidate(&id);
    if super::htmx::HxRequest::of(&req).wants_fragment() {
        let emails = emails(&state, &team.id).await?;
        let k = row(&key, &state.config.api_key_prefix, &emails, &user.ctx.user.id, role, now());
        return render(StatusCode::OK, &RowPartial { k, csrf: super::csrf::token(&user.session)? });
    }
    flash(&user.session, &format!("Revoked {}: it stops working immediately.", key.name));
    Ok(redirect("/settings/developer/api-keys"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PolicyForm {
    max_lifetime_days: String,
}

pub async fn policy(state: State, user: CurrentUser, form: web::Form<PolicyForm>) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let days = match form.max_lifetime_days.trim() {
        "" | "none" => None,
        d => Some(d.parse::<i64>().map_err(|_| AppError::BadRequest("Enter a number of days.".into()))?),
    };
    let (actor, team_id) = (user.actor.clone(), team.id.clone());
    state.db.run(move |conn| keys::set_max_lifetime(conn, &actor, &team_id, role, days)).await.map_err(
        |e| match e {
            crate::service::Error::Invalid(f) => AppError::BadRequest(f.0.values().next().cloned().unwrap_or_default()),
            other => other.into(),
        },
    )?;
    flash(&user.session, "Key policy saved.");
    Ok(redirect("/settings/developer/api-keys"))
}

pub fn bars(usage: &[(i64, i64)]) -> (Vec<UsageBar>, i64, i64) {
    let peak = usage.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let total = usage.iter().map(|(_, c)| *c).sum();
    let bars = usage
        .iter()
        .enumerate()
        .map(|(i, (day, count))| {
            let height = if peak == 0 { 0 } else { (count * 100 + peak - 1) / peak };
            UsageBar {
                x: i as i64 * 20,
                y: 110 - height,
                height,
                label: format!("{}: {count} requests", format::date(day * 86_400)),
            }
        })
        .collect();
    (bars, total, peak)
}

pub async fn detail(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = id_param(path.into_inner())?;
    let team_id = team.id.clone();
    let (key, events, usage, linked) = state
        .db
        .run(move |conn| {
            let key = keys::get(conn, &team_id, &id)?;
            let events = keys::history(conn, &key.id)?;
            let usage = keys::usage(conn, &key.id, 30)?;
            let from = key.rolled_from.as_deref().map(|i| keys::get(conn, &team_id, i)).transpose()?;
            let to = key.replaced_by.as_deref().map(|i| keys::get(conn, &team_id, i)).transpose()?;
            Ok::<_, crate::service::Error>((key, events, usage, (from, to)))
        })
        .await?;
    let emails = emails(&state, &team.id).await?;
    let prefix = &state.config.api_key_prefix;
    let link = |k: &ApiKey| (k.id.clone(), codec::display(prefix, &k.key_prefix));
    let (bars, total, peak) = bars(&usage);
    let page = DetailPage {
        layout: Layout::new(&user, Nav::ApiKeys)?,
        k: row(&key, prefix, &emails, &user.ctx.user.id, role, now()),
        description: key.description.clone(),
        allowed_ips: keys::allowed_ips_of(&key).iter().map(ToString::to_string).collect(),
        rolled_from: linked.0.as_ref().map(link),
        replaced_by: linked.1.as_ref().map(link),
        revoked_reason: key.revoked_reason.clone(),
        bars,
        total,
        peak,
        events: events
            .into_iter()
            .map(|e| super::team::EventRow {
                when: format::datetime(e.created_at),
                actor: e.actor_label,
                action: e.action,
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}
