//! Settings → Developer → API Keys: the list, the create form, the show-once
//! reveal, roll, revoke, and a key's detail page.
//!
//! Rules: the secret appears only in the response to the POST that made it
//! (`Cache-Control: no-store`), never in a redirect, flash or session; viewers
//! see the list without buttons; everything works without JavaScript, and htmx
//! swaps a revoked row in place (the list page includes the same row partial).
//! Each handler parses, calls one [`KeyService`] method and renders.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::api_keys_api::{parse_cursor, parse_filter};
use super::auth::{CurrentUser, flash, id_param};
use super::htmx::HxRequest;
use super::page::{Layout, Nav, redirect, render};
use super::{AppState, State, format};
use crate::domain::{KeyId, KeyStatus, PlainSecret, TeamId};
use crate::error::AppError;
use crate::service::accounts::Role;
use crate::service::keys::{self, Detail, KeyCaller, KeyService, ListQuery, Settings, codec};
use crate::service::{self as services, FieldErrors, policy};
use crate::store::models::ApiKey;

impl AppState {
    /// The API keys use cases, on this instance's database, hasher, verifier and clock.
    pub fn key_service(&self) -> KeyService<'_> {
        let settings = Settings { prefix: &self.config.api_key_prefix, catalog: &self.config.scopes };
        KeyService::new(&self.db, &self.keys, &self.verifier, settings, &self.clock)
    }
}

mod form;
mod rows;

use form::{CreateForm, ScopeGroup, groups, key_request, parse_form};
pub use rows::{KeyRow, UsageBar, bars, row};

const PAGE_SIZE: i64 = 25;

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
struct RevealPage<'a> {
    layout: Layout,
    name: String,
    secret: PlainSecret,
    prefix: String,
    public_url: &'a str,
    rolled_from: Option<(String, String)>,
}

impl RevealPage<'_> {
    /// A command that tries the new key.
    fn curl(&self) -> String {
        format!("curl -H \"X-API-Key: {}\" {}/api/v1/auth/test", self.secret.expose(), self.public_url)
    }
}

#[derive(Template)]
#[template(path = "partials/api_key_row_partial.html")]
struct RowPartial {
    k: KeyRow,
    csrf: String,
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

/// The signed-in member as the key service sees them.
fn caller(user: &CurrentUser) -> Result<KeyCaller, AppError> {
    let (team, role) = user.team()?;
    Ok(KeyCaller::member(user.actor.clone(), TeamId::from(team.id.as_str()), role))
}

/// A key id from the path; anything malformed is "not found".
pub fn key_id(raw: String) -> Result<KeyId, AppError> {
    id_param(raw).map(KeyId::from)
}

/// A refusal of a form that has no field to show it next to: the first message.
fn bad_request(e: services::Error) -> AppError {
    match e {
        services::Error::Invalid(errors) => AppError::BadRequest(errors.0.values().next().cloned().unwrap_or_default()),
        other => other.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IndexQuery {
    status: Option<String>,
    cursor: Option<String>,
}

/// The status tabs: every status, and all of them.
fn filters() -> Vec<(&'static str, &'static str)> {
    std::iter::once(("all", "All")).chain(KeyStatus::ALL.iter().map(|s| (s.as_str(), s.label()))).collect()
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
    let service = state.key_service();
    let overview =
        service.overview(&TeamId::from(team.id.as_str()), ListQuery { filter, after, limit: PAGE_SIZE }).await?;
    let (at, prefix) = (service.now(), &state.config.api_key_prefix);
    Ok(KeysPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        rows: overview
            .listing
            .keys
            .iter()
            .map(|k| row(k, prefix, &overview.emails, &user.ctx.user.id, role, at))
            .collect(),
        filter: query.status.clone().unwrap_or_else(|| "all".into()),
        filters: filters(),
        next_cursor: overview.listing.next.map(|c| c.to_string()),
        can_create: policy::create_key(role).is_ok(),
        can_set_policy: policy::manages_members(role),
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

fn reveal(
    state: &State,
    user: &CurrentUser,
    key: &ApiKey,
    secret: PlainSecret,
    rolled_from: Option<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let page = RevealPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        name: key.name.clone(),
        prefix: codec::display(&state.config.api_key_prefix, &key.key_prefix),
        public_url: &state.config.public_url,
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
    let caller = caller(&user)?;
    let form = parse_form(body.into_inner());
    let draft = key_request(&form, &state.config.scopes, caller.role);
    match state.key_service().create(&caller, draft).await {
        Ok(created) => reveal(&state, &user, &created.key, created.secret, None),
        Err(services::Error::Invalid(errors)) => {
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
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let rolled = state.key_service().roll(&caller, &id, form.grace).await.map_err(bad_request)?;
    let old_prefix = codec::display(&state.config.api_key_prefix, &rolled.old.key_prefix);
    let until = rolled.old.expires_at.map(format::datetime).unwrap_or_default();
    reveal(&state, &user, &rolled.key, rolled.secret, Some((old_prefix, until)))
}

pub async fn revoke(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let key = service.revoke(&caller, &id).await?;
    if hx.wants_fragment() {
        let emails = service.emails(&caller.team_id).await?;
        let k = row(&key, &state.config.api_key_prefix, &emails, &user.ctx.user.id, caller.role, service.now());
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
    let caller = caller(&user)?;
    let days = match form.max_lifetime_days.trim() {
        "" | "none" => None,
        d => Some(d.parse::<i64>().map_err(|_| AppError::BadRequest("Enter a number of days.".into()))?),
    };
    state.key_service().set_policy(&caller, days).await.map_err(bad_request)?;
    flash(&user.session, "Key policy saved.");
    Ok(redirect("/settings/developer/api-keys"))
}

fn detail_page(state: &State, user: &CurrentUser, role: Role, d: Detail, at: i64) -> Result<DetailPage, AppError> {
    let prefix = &state.config.api_key_prefix;
    let link = |k: &ApiKey| (k.id.clone(), codec::display(prefix, &k.key_prefix));
    let (bars, total, peak) = bars(&d.usage);
    Ok(DetailPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        k: row(&d.key, prefix, &d.emails, &user.ctx.user.id, role, at),
        description: d.key.description.clone(),
        allowed_ips: keys::allowed_ips_of(&d.key).iter().map(ToString::to_string).collect(),
        rolled_from: d.rolled_from.as_ref().map(link),
        replaced_by: d.replaced_by.as_ref().map(link),
        revoked_reason: d.key.revoked_reason.clone(),
        bars,
        total,
        peak,
        events: d
            .events
            .into_iter()
            .map(|e| super::team::EventRow {
                when: format::datetime(e.created_at),
                actor: e.actor_label,
                action: e.action,
            })
            .collect(),
    })
}

pub async fn detail(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let detail = service.detail(&TeamId::from(team.id.as_str()), &id).await?;
    render(StatusCode::OK, &detail_page(&state, &user, role, detail, service.now())?)
}
