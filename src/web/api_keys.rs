//! Settings → Developer → API Keys: the list, the create form, the show-once
//! reveal, roll, revoke, and a key's detail page (its Edit card, disable and
//! enable in `edit`).
//!
//! Rules: the secret appears only in the response to the POST that made it
//! (`Cache-Control: no-store`), never in a redirect, flash or session; when
//! htmx sent that POST, the address bar gets a URL whose GET says "this secret
//! was shown once" (never a 404, never the secret). Roll and revoke ask first
//! (a `GET` on the action's URL answers the confirmation: a page without
//! JavaScript, a dialog with htmx); htmx swaps a revoked row in place with a
//! toast. Every other form is Post/Redirect/Get. Viewers see the list without
//! buttons. Each handler parses, calls one [`KeyService`] method and renders.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::answer::{again, bad_request, flashed, refusable};
use super::api_keys_api::{parse_cursor, parse_filter};
use super::auth::{CurrentUser, id_param};
use super::confirm::{self, Confirm, Field};
use super::htmx::{HxRequest, push_url};
use super::page::{Layout, Nav, redirect, render};
use super::{AppState, State, format};
use crate::domain::{KeyId, KeyStatus, PlainSecret, TeamId};
use crate::error::AppError;
use crate::service::keys::{self, Detail, KeyCaller, KeyService, ListQuery, Rolled, Settings, codec};
use crate::service::{self as services, FieldErrors, policy};
use crate::store::models::ApiKey;

impl AppState {
    /// The API keys use cases, on this instance's database, hasher, verifier and clock.
    pub fn key_service(&self) -> KeyService<'_> {
        let settings = Settings { prefix: &self.config.api_key_prefix, catalog: &self.config.scopes };
        KeyService::new(&self.db, &self.keys, &self.verifier, settings, &self.clock)
    }
}

mod edit;
mod form;
mod privilege;
mod rotation;
mod rows;
pub mod usage;

use edit::EditForm;
pub use edit::{disable, disable_confirm, enable, enable_confirm, update};

pub use rotation::{extend, extend_confirm, finish, finish_confirm};

use form::{CreateForm, ScopeGroup, ScopeOption, admin_option, groups, key_request, parse_form, resolve, summary};
pub use privilege::{PrivilegeView, roll_used, roll_used_confirm};
pub use rows::{KeyRow, row};
pub use usage::UsageView;

const PAGE_SIZE: i64 = 25;
const BASE: &str = "/settings/developer/api-keys";

#[derive(Template)]
#[template(path = "pages/api_keys.html")]
struct KeysPage<'a> {
    layout: Layout,
    rows: Vec<KeyRow>,
    filter: String,
    filters: Vec<(&'static str, &'static str)>,
    next_cursor: Option<String>,
    /// The search term (never a whole key), and whether to offer the field.
    q: String,
    searchable: bool,
    /// No key at all in the team: the first-run guide.
    first_run: bool,
    public_url: &'a str,
    can_create: bool,
    can_set_policy: bool,
    max_lifetime: Option<i64>,
    groups: Vec<ScopeGroup>,
    admin: Option<ScopeOption>,
    /// What the ticked boxes grant, in words.
    grants: Vec<String>,
    form: CreateForm,
    errors: FieldErrors,
}

impl KeysPage<'_> {
    fn preset_is(&self, preset: &str) -> bool {
        match preset {
            "read_only" | "full" => self.form.preset == preset,
            _ => self.form.preset != "read_only" && self.form.preset != "full",
        }
    }

    /// The query string that keeps the filter and search (for the pager).
    fn keep(&self) -> String {
        let mut out = format!("status={}", super::auth::url_encode(&self.filter));
        if !self.q.is_empty() {
            out.push_str("&q=");
            out.push_str(&super::auth::url_encode(&self.q));
        }
        out
    }

    fn filter_href(&self, status: &str) -> String {
        let mut out = format!("?status={status}");
        if !self.q.is_empty() {
            out.push_str("&q=");
            out.push_str(&super::auth::url_encode(&self.q));
        }
        out
    }

    fn curl(&self) -> String {
        format!("curl -H \"X-API-Key: <your key>\" {}/api/v1/auth/test", self.public_url)
    }
}

#[derive(Template)]
#[template(path = "pages/api_key_reveal.html")]
struct RevealPage<'a> {
    layout: Layout,
    id: String,
    name: String,
    secret: PlainSecret,
    prefix: String,
    public_url: &'a str,
    /// The key a roll replaced: (display prefix, until when it keeps working).
    rolled_from: Option<(String, Option<format::When>)>,
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
}

/// What the key page says on arrival, if anything.
enum Notice {
    None,
    /// After the reveal (a reload of it): the secret was shown once.
    ShownOnce,
    /// A GET of `…/roll` for a key already rolled: when, and the new key (id, prefix).
    Rolled {
        at: format::When,
        id: String,
        prefix: String,
    },
}

#[derive(Template)]
#[template(path = "pages/api_key_detail.html")]
struct DetailPage {
    layout: Layout,
    k: KeyRow,
    scopes: Vec<(String, String)>,
    allowed_ips: Vec<String>,
    revoked_reason: Option<String>,
    /// The usage cards (`partials/key_usage_history_partial.html`).
    usage: UsageView,
    /// The key's history as sentences (`partials/audit_events_partial.html`).
    event_lines: Vec<super::audit::EventLine>,
    notice: Notice,
    /// The Edit card (also what `…/rename` re-renders).
    edit: EditForm,
    /// The least-privilege card (`partials/key_privilege_partial.html`).
    privilege: PrivilegeView,
    errors: FieldErrors,
    /// A roll of this key in its grace period (`partials/key_rotation_partial.html`).
    rotation: Option<super::rotation::RotationCard>,
}

/// How a key's history reads to `role`: the audit log's readers see where
/// each action came from; developers and viewers see when, who and what.
fn history_reader(role: crate::domain::Role) -> super::audit::Viewer {
    if crate::service::policy::may_read_audit(role) { super::audit::Viewer::Team } else { super::audit::Viewer::Member }
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

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IndexQuery {
    status: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
    /// `whole-key`: the search just refused a whole key (and dropped it from the URL).
    refused: Option<String>,
}

/// The status tabs: every status, and all of them.
fn filters() -> Vec<(&'static str, &'static str)> {
    std::iter::once(("all", "All")).chain(KeyStatus::ALL.iter().map(|s| (s.as_str(), s.label()))).collect()
}

async fn page<'a>(
    state: &'a State,
    user: &CurrentUser,
    query: &IndexQuery,
    mut form: CreateForm,
    mut errors: FieldErrors,
) -> Result<KeysPage<'a>, AppError> {
    let (team, role) = user.team()?;
    let filter = parse_filter(query.status.as_deref())?;
    let after = parse_cursor(query.cursor.as_deref())?;
    let mut q = query.q.as_deref().unwrap_or("").trim().chars().take(100).collect::<String>();
    if codec::looks_like_a_whole_key(&q) || query.refused.as_deref() == Some("whole-key") {
        q.clear();
        errors.add(
            "q",
            "That looks like a whole key: search by its name or its first characters (lk_a1b2…). \
             Never paste a secret here.",
        );
    }
    let service = state.key_service();
    let search = (!q.is_empty()).then(|| q.clone());
    let overview = service
        .overview(&TeamId::from(team.id.as_str()), ListQuery { filter, after, limit: PAGE_SIZE, search })
        .await?;
    let (at, prefix) = (service.now(), &state.config.api_key_prefix);
    let catalog = &state.config.scopes;
    if form.preset.is_empty() {
        form.preset = "custom".into();
    }
    if super::resubmit::accepted(&form.submission).is_none() {
        form.submission = super::resubmit::token()?;
    }
    Ok(KeysPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        rows: overview
            .listing
            .keys
            .iter()
            .map(|k| {
                row(k, prefix, &overview.emails, &user.ctx.user.id, role, at)
                    .link(k, prefix, &overview.linked)
                    .judged(overview.listing.privileges.get(&k.id))
                    .busy(overview.busy.get(&k.id).map(|ends| format::When::at(*ends, at)))
            })
            .collect(),
        filter: query.status.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "all".into()),
        filters: filters(),
        next_cursor: overview.listing.next.map(|c| c.to_string()),
        searchable: overview.total > PAGE_SIZE || !q.is_empty() || errors.get("q").is_some(),
        first_run: overview.total == 0,
        q,
        public_url: &state.config.public_url,
        can_create: policy::create_key(role).is_ok(),
        can_set_policy: policy::manages_members(role),
        max_lifetime: team.max_key_lifetime_days,
        groups: groups(catalog, role, &form.scopes),
        admin: admin_option(catalog, role, &form.scopes),
        grants: summary(catalog, &form.scopes),
        form,
        errors,
    })
}

pub async fn index(state: State, user: CurrentUser, query: web::Query<IndexQuery>) -> Result<HttpResponse, AppError> {
    if query.q.as_deref().is_some_and(codec::looks_like_a_whole_key) {
        // Out of the address bar (and so history) at once: the page says why.
        let status = query.status.as_deref().filter(|s| !s.is_empty()).unwrap_or("all");
        let to = format!("{BASE}?status={}&refused=whole-key", super::auth::url_encode(status));
        return Ok(redirect(&to));
    }
    let form = CreateForm { expires_in_days: "90".into(), preset: "custom".into(), ..CreateForm::default() };
    if query.q.as_deref().is_some_and(|q| q.chars().any(char::is_control)) {
        // Not searched (a NUL byte is not even text to PostgreSQL), not echoed.
        let query = IndexQuery { q: None, ..query.into_inner() };
        let errors =
            FieldErrors::single("q", "Search by a name or the key's first characters, without control characters.");
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page(&state, &user, &query, form, errors).await?);
    }
    render(StatusCode::OK, &page(&state, &user, &query, form, FieldErrors::default()).await?)
}

fn reveal(
    state: &State,
    user: &CurrentUser,
    key: &ApiKey,
    secret: PlainSecret,
    rolled_from: Option<(String, Option<format::When>)>,
) -> Result<HttpResponse, AppError> {
    let page = RevealPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        id: key.id.clone(),
        name: key.name.clone(),
        prefix: codec::display(&state.config.api_key_prefix, &key.key_prefix),
        public_url: &state.config.public_url,
        secret,
        rolled_from,
    };
    render(StatusCode::OK, &page)
}

/// `POST /settings/developer/api-keys`: create (→ the one-time reveal), or
/// with `intent=preview` fill the boxes from the preset and say what the key
/// would get, creating nothing.
pub async fn create(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let mut form = parse_form(body.into_inner());
    if form.is_preview() {
        policy::create_key(caller.role)?;
        let errors = match resolve(&form, &state.config.scopes, caller.role) {
            Ok(scopes) => {
                form.scopes = scopes;
                FieldErrors::default()
            }
            Err(m) => FieldErrors::single("scopes", m),
        };
        let view = page(&state, &user, &IndexQuery::default(), form, errors).await?;
        return Ok(push_url(render(StatusCode::OK, &view)?, hx, BASE));
    }
    // The same filled-in form again (a reload of its reveal): the key it made.
    let submission = super::resubmit::accepted(&form.submission);
    if let Some(id) = super::resubmit::made(&user.session, "api_key", submission)? {
        return Ok(redirect(&format!("{BASE}/{id}/created")));
    }
    let draft = key_request(&form, &state.config.scopes, caller.role);
    match refusable(state.key_service().create(&caller, draft).await)? {
        Ok(created) => {
            super::resubmit::remember(&user.session, "api_key", submission, &created.key.id)?;
            let res = reveal(&state, &user, &created.key, created.secret, None)?;
            Ok(push_url(res, hx, &format!("{BASE}/{}/created", created.key.id)))
        }
        Err(errors) => again(&page(&state, &user, &IndexQuery::default(), form, errors).await?, hx, BASE),
    }
}

/// `GET …/{id}/roll`: the confirmation, or — for a key already rolled — the
/// page that says when, and that its new secret was shown once then.
pub async fn roll_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let key = state.key_service().manageable(&caller, &id).await?;
    if key.replaced_by.is_some() {
        return detail_with(&state, &user, &id, Notice::None).await;
    }
    let back = format!("{BASE}/{}", key.id);
    if !key.status(state.key_service().now()).is_usable() {
        return Ok(redirect(&back));
    }
    let c = Confirm::new(format!("confirm-roll-{}", key.id), format!("Roll {}?", key.name), format!("{back}/roll"))
        .says("You get a new key with the same scopes and settings; its secret is shown once.")
        .says("The old key keeps working for 24 hours (or the time you choose below), then stops.");
    ask_roll(&user, hx, c, ("Roll key", back))
}

/// A roll's confirmation (`c`, which says what the roll makes): its button,
/// the grace to choose, and "Cancel" back to the key's page.
fn ask_roll(
    user: &CurrentUser,
    hx: HxRequest,
    c: Confirm,
    (button, back): (&str, String),
) -> Result<HttpResponse, AppError> {
    let c =
        c.button(button).not_dangerous().cancel_to(back).field(confirm::grace_field("The old key keeps working for"));
    confirm::ask(user, hx, Nav::ApiKeys, &c)
}

/// A roll's answer: the one-time reveal of the new key, naming the old one
/// and until when it works; with htmx, the address bar shows `again`, where
/// a reload lands on "rolled, shown once".
fn reveal_roll(
    state: &State,
    user: &CurrentUser,
    hx: HxRequest,
    rolled: Rolled,
    again: &str,
) -> Result<HttpResponse, AppError> {
    let old_prefix = codec::display(&state.config.api_key_prefix, &rolled.old.key_prefix);
    let until = format::When::maybe(rolled.old.expires_at, state.key_service().now());
    let res = reveal(state, user, &rolled.key, rolled.secret, Some((old_prefix, until)))?;
    Ok(push_url(res, hx, again))
}

pub async fn roll(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<super::page::GraceForm>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let rolled = match service.roll(&caller, &id, form.grace).await {
        Ok(rolled) => rolled,
        // Rolled already — a reload of the reveal sends the roll again without
        // JavaScript: the page that says when, and that its secret was shown once.
        Err(services::Error::Invalid(errors)) => {
            if service.manageable(&caller, &id).await?.replaced_by.is_some() {
                return Ok(redirect(&format!("{BASE}/{id}/roll")));
            }
            return Err(bad_request(services::Error::Invalid(errors)));
        }
        Err(e) => return Err(bad_request(e)),
    };
    let again = format!("{BASE}/{}/roll", rolled.old.id);
    reveal_roll(&state, &user, hx, rolled, &again)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FromQuery {
    from: String,
}

/// `GET …/{id}/revoke`: the confirmation (in place on the list; from the key
/// page, a normal post that comes back to it).
pub async fn revoke_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    query: web::Query<FromQuery>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let key = service.manageable(&caller, &id).await?;
    let page_url = format!("{BASE}/{}", key.id);
    if key.status(service.now()).is_final() {
        return Ok(redirect(&page_url));
    }
    let prefix = codec::display(&state.config.api_key_prefix, &key.key_prefix);
    let c = Confirm::new(
        format!("confirm-revoke-{}", key.id),
        format!("Revoke {}?", key.name),
        format!("{page_url}/revoke"),
    )
    .says(format!("Requests using {prefix}… fail at once; this cannot be undone."))
    .button("Revoke key");
    confirm::ask(&user, hx, Nav::ApiKeys, &placed(c, &query, &key))
}

/// Where a row action's confirmation sits: asked from the key page, a normal
/// post that comes back to it; asked from the list, in place on the key's row.
fn placed(c: Confirm, query: &FromQuery, key: &ApiKey) -> Confirm {
    let page_url = format!("{BASE}/{}", key.id);
    if query.from == "detail" {
        c.cancel_to(page_url.clone()).field(Field::Hidden { name: "next".into(), value: page_url })
    } else {
        c.cancel_to(BASE).in_place(format!("#key-{}", key.id))
    }
}

/// What a row action (revoke, disable, enable) answers once done: with
/// htmx, the row as it is now and `toast`; otherwise `said` as a flash, back
/// to the key page when the form came from it, else to the list.
async fn row_action_done(
    (state, user, hx): (&State, &CurrentUser, HxRequest),
    caller: &KeyCaller,
    key: &ApiKey,
    (toast, said): (&str, &str),
    form: Option<web::Form<RevokeForm>>,
) -> Result<HttpResponse, AppError> {
    if hx.wants_fragment() {
        return row_answer(state, user, caller, key, toast).await;
    }
    let next = form.map(|f| f.into_inner().next).unwrap_or_default();
    let back = if next == format!("{BASE}/{}", key.id) { next } else { BASE.to_owned() };
    Ok(flashed(&user.session, said, &back))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RevokeForm {
    next: String,
}

pub async fn revoke(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: Option<web::Form<RevokeForm>>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let key = state.key_service().revoke(&caller, &id).await?;
    let (toast, said) =
        (format!("Revoked {}", key.name), format!("Revoked {}: requests using it fail at once.", key.name));
    row_action_done((&state, &user, hx), &caller, &key, (&toast, &said), form).await
}

/// The answer to an in-place change of a row (htmx): the row as it is now, and a toast.
async fn row_answer(
    state: &State,
    user: &CurrentUser,
    caller: &KeyCaller,
    key: &ApiKey,
    toast: &str,
) -> Result<HttpResponse, AppError> {
    let service = state.key_service();
    let emails = service.emails(&caller.team_id).await?;
    let prefix = &state.config.api_key_prefix;
    let mut linked = std::collections::HashMap::new();
    for other in key.rolled_from.iter().chain(key.replaced_by.iter()) {
        if let Ok(k) = service.get(&caller.team_id, &KeyId::from(other.as_str())).await {
            linked.insert(k.id.clone(), k);
        }
    }
    let k = row(key, prefix, &emails, &user.ctx.user.id, caller.role, service.now()).link(key, prefix, &linked);
    confirm::fragment_with_toast(&RowPartial { k }, toast)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RenameForm {
    name: String,
    description: String,
}

/// `POST …/{id}/rename`: a new name and description; Post/Redirect/Get.
pub async fn rename(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let form = form.into_inner();
    let page_url = format!("{BASE}/{}", id.as_str());
    match refusable(state.key_service().rename(&caller, &id, form.name.clone(), form.description.clone()).await)? {
        Ok(key) => Ok(flashed(&user.session, &format!("Saved: the key is now called {}.", key.name), &page_url)),
        Err(errors) => {
            let mut view = detail_page(&state, &user, &id, Notice::None).await?;
            view.edit.name = form.name;
            view.edit.description = form.description;
            view.errors = errors;
            again(&view, hx, &page_url)
        }
    }
}

/// A GET of a POST-only URL (`…/rename`, `…/edit`): the page it belongs to.
pub async fn to_detail(path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    Ok(redirect(&format!("{BASE}/{}", id.as_str())))
}

pub async fn to_list() -> HttpResponse {
    redirect(BASE)
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
    Ok(flashed(&user.session, "Key policy saved.", BASE))
}

async fn detail_page(state: &State, user: &CurrentUser, id: &KeyId, notice: Notice) -> Result<DetailPage, AppError> {
    let (team, role) = user.team()?;
    let service = state.key_service();
    let d: Detail = service.detail(&TeamId::from(team.id.as_str()), id).await?;
    let at = service.now();
    let prefix = &state.config.api_key_prefix;
    let mut linked = std::collections::HashMap::new();
    for k in d.rolled_from.iter().chain(d.replaced_by.iter()) {
        linked.insert(k.id.clone(), k.clone());
    }
    let notice = match (notice, &d.replaced_by) {
        (Notice::None, Some(new)) if d.key.replaced_by.is_some() => Notice::Rolled {
            at: format::When::at(new.created_at, at),
            id: new.id.clone(),
            prefix: codec::display(prefix, &new.key_prefix),
        },
        (n, _) => n,
    };
    let names = state.audit_service().names(&d.events).await?;
    let usage = UsageView::new(&d.usage, at, Some(format!("{BASE}/{}/usage.csv", d.key.id)));
    let rotation =
        service.rotation(&caller(user)?, id).await?.map(|r| rotation::rotation_card(&r, prefix, id.as_str(), at));
    Ok(DetailPage {
        layout: Layout::new(user, Nav::ApiKeys)?,
        k: row(&d.key, prefix, &d.emails, &user.ctx.user.id, role, at).link(&d.key, prefix, &linked),
        scopes: keys::scopes_of(&d.key.scopes).into_iter().map(|s| (keys::scopes::describe(&s), s)).collect(),
        allowed_ips: keys::allowed_ips_of(&d.key).iter().map(ToString::to_string).collect(),
        revoked_reason: d.key.revoked_reason.clone(),
        usage,
        event_lines: super::audit::sentences(d.events, &names, history_reader(role), at),
        notice,
        edit: EditForm::of(&d.key, &state.config.scopes),
        privilege: PrivilegeView::of(&d.privilege, d.key.status(at).is_usable() && d.key.replaced_by.is_none()),
        errors: FieldErrors::default(),
        rotation,
    })
}

async fn detail_with(state: &State, user: &CurrentUser, id: &KeyId, notice: Notice) -> Result<HttpResponse, AppError> {
    render(StatusCode::OK, &detail_page(state, user, id, notice).await?)
}

pub async fn detail(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    let page = detail_page(&state, &user, &id, Notice::None).await?;
    // The "rolled" notice belongs to a reload of …/roll, not to every visit.
    let page = DetailPage { notice: Notice::None, ..page };
    render(StatusCode::OK, &page)
}

/// `GET …/{id}/created`: where a reload of the create reveal lands — the key's
/// facts and "this secret was shown once", never the secret.
pub async fn created(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    let page = detail_page(&state, &user, &id, Notice::ShownOnce).await?;
    let page = match page.notice {
        Notice::Rolled { .. } => DetailPage { notice: Notice::ShownOnce, ..page },
        _ => page,
    };
    render(StatusCode::OK, &page)
}
