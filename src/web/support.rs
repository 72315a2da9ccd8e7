//! The support console (`/support`), for the platform role `support` only;
//! everyone else, signed in or not, gets 404. Staff search keys, teams and
//! users, read a key's history, and revoke with a reason. They never see a
//! secret, cannot create keys and cannot act as a user.
//!
//! Rules: the console's use cases are `service::support`'s (one call per
//! handler); here the pages are rendered, and a form with errors is shown
//! again with them (422). A whole key is searched for only by `POST`
//! (`/support/search`): it never enters an address, a redirect or a link.
//! Revoking asks first (`GET …/revoke` answers the confirmation, `confirm.rs`).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::api_keys::UsageView;
use super::audit::{AuditQuery, EventLine, Viewer, sentences};
use super::auth::{CurrentUser, flash, id_param};
use super::confirm::{self, Confirm, Field};
use super::format::When;
use super::htmx::HxRequest;
use super::page::{Layout, Nav, redirect, render};
use super::{AppState, State};
use crate::domain::{KeyId, KeyStatus, TeamId, UserId};
use crate::error::AppError;
use crate::service::audit::LogReader;
use crate::service::keys::{codec, scopes_of};
use crate::service::support::{self, Found, KeyDossier, KeyHit, SupportService, Via};
use crate::service::{Error, FieldErrors, policy};

impl AppState {
    /// The support console's use cases.
    pub fn support_service(&self) -> SupportService<'_> {
        SupportService {
            db: &self.db,
            hasher: &self.keys,
            verifier: &self.verifier,
            clock: &self.clock,
            prefix: &self.config.api_key_prefix,
            notifier: &self.notifier,
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

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SearchForm {
    q: String,
}

impl SearchPage {
    fn new(layout: Layout, q: &str, searched: bool) -> Self {
        Self {
            layout,
            q: q.to_owned(),
            searched,
            whole_key: false,
            keys: Vec::new(),
            teams: Vec::new(),
            users: Vec::new(),
            errors: FieldErrors::default(),
        }
    }

    fn found(mut self, found: Found) -> Self {
        // The pasted key is never echoed back into the page.
        if found.whole_key {
            self.q = String::new();
        }
        Self { whole_key: found.whole_key, keys: found.keys, teams: found.teams, users: found.users, ..self }
    }

    fn refused(mut self, errors: FieldErrors) -> Self {
        // A whole key, or anything that looks like one, is never echoed.
        if codec::looks_like_a_whole_key(&self.q) {
            self.q = String::new();
        }
        self.q.truncate(self.q.char_indices().nth(support::MAX_QUERY).map_or(self.q.len(), |(i, _)| i));
        Self { errors, ..self }
    }
}

/// Runs a search and renders its results (or the query's errors, 422).
async fn run_search(state: &State, page: SearchPage, q: &str, via: Via) -> Result<HttpResponse, AppError> {
    match state.support_service().search(q, via).await {
        Ok(found) => render(StatusCode::OK, &page.found(found)),
        Err(Error::Invalid(errors)) => render(StatusCode::UNPROCESSABLE_ENTITY, &page.refused(errors)),
        Err(e) => Err(e.into()),
    }
}

/// `GET /support`: the console, and searches by prefix, team or email in the
/// address (a whole key there is refused, neither searched nor echoed).
pub async fn search(
    state: State,
    SupportUser(user): SupportUser,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let page = SearchPage::new(Layout::new(&user, Nav::Support)?, query.q.as_deref().unwrap_or(""), query.q.is_some());
    let Some(q) = query.q.as_deref() else { return render(StatusCode::OK, &page) };
    run_search(&state, page, q, Via::Address).await
}

/// `POST /support/search` (the console's form): any search, whole keys
/// included; the results are this response (uncacheable), never a redirect.
pub async fn search_post(
    state: State,
    SupportUser(user): SupportUser,
    form: web::Form<SearchForm>,
) -> Result<HttpResponse, AppError> {
    let page = SearchPage::new(Layout::new(&user, Nav::Support)?, &form.q, true);
    run_search(&state, page, &form.q, Via::Form).await
}

/// `GET /support/search` (a reload of the results): back to the console.
pub async fn search_reload(SupportUser(_): SupportUser) -> HttpResponse {
    redirect("/support")
}

/// A key as its support page shows it.
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created: When,
    pub last_used: Option<When>,
    pub expires: Option<When>,
    pub status: KeyStatus,
}

#[derive(Template)]
#[template(path = "support/key.html")]
struct KeyPage {
    layout: Layout,
    k: KeyView,
    kind: String,
    team: Option<(String, String)>,
    allowed_ips: Vec<String>,
    rolled_from: Option<(String, String)>,
    replaced_by: Option<(String, String)>,
    revocation: Option<String>,
    /// The usage cards (read-only: no download).
    usage: UsageView,
    /// The history for `partials/key_usage_history_partial.html`, as sentences.
    event_lines: Vec<EventLine>,
    active: bool,
    revoke_href: String,
    /// The reason typed before an error, shown again.
    reason: String,
    errors: FieldErrors,
}

fn key_page(layout: Layout, prefix: &str, d: KeyDossier, errors: FieldErrors, reason: &str) -> KeyPage {
    let key = &d.key;
    let k = KeyView {
        id: key.id.clone(),
        name: key.name.clone(),
        description: key.description.clone(),
        prefix: codec::display(prefix, &key.key_prefix),
        scopes: scopes_of(&key.scopes),
        created_by: d.creator.as_ref().map_or_else(|| "a former member".to_owned(), |u| u.email.clone()),
        created: When::at(key.created_at, d.at),
        last_used: When::maybe(key.last_used_at, d.at),
        expires: When::maybe(key.expires_at, d.at),
        status: d.status,
    };
    let usage = UsageView::new(&d.usage, d.at, None);
    let event_lines = sentences(d.events.clone(), &d.names, Viewer::Support, d.at);
    KeyPage {
        layout,
        // A disabled key may still be revoked (enabled again, it would work).
        active: !d.status.is_final(),
        kind: key.kind.to_string(),
        team: d.team.as_ref().map(|t| (t.id.clone(), t.name.clone())),
        allowed_ips: crate::service::keys::allowed_ips_of(key).iter().map(ToString::to_string).collect(),
        revocation: support::revocation_note(key),
        revoke_href: format!("/support/keys/{}/revoke", key.id),
        rolled_from: d.rolled_from,
        replaced_by: d.replaced_by,
        k,
        usage,
        event_lines,
        reason: reason.to_owned(),
        errors,
    }
}

pub async fn key(
    state: State,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = KeyId::from(id_param(path.into_inner())?);
    let dossier = state.support_service().key(&id).await?;
    render(
        StatusCode::OK,
        &key_page(Layout::new(&user, Nav::Support)?, &state.config.api_key_prefix, dossier, FieldErrors::default(), ""),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ReasonForm {
    reason: String,
}

/// `GET /support/keys/{id}/revoke`: asks first, with the reason field (a
/// page without JavaScript, a dialog for htmx). Only for keys support may
/// act on (others: 404, as the `POST`).
pub async fn confirm_revoke(
    state: State,
    hx: HxRequest,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = KeyId::from(id_param(path.into_inner())?);
    let d = state.support_service().key(&id).await?;
    let page = format!("/support/keys/{id}");
    let prefix = codec::display(&state.config.api_key_prefix, &d.key.key_prefix);
    let team = d.team.as_ref().map_or_else(|| "its team".to_owned(), |t| t.name.clone());
    let confirm = Confirm::new("confirm-revoke", format!("Revoke {}?", d.key.name), format!("{page}/revoke"))
        .says(format!("The key {prefix}… of {team} stops working now: requests with it fail at once."))
        .says("The team sees your reason on its keys list and in its audit log; this cannot be undone.")
        .field(Field::Text {
            name: "reason".into(),
            label: "Reason (the team reads this)".into(),
            placeholder: "Found in a public GitHub repository".into(),
            max: support::MAX_REASON,
        })
        .button("Revoke key")
        .cancel_to(page);
    confirm::respond(hx, Layout::new(&user, Nav::Support)?, &confirm)
}

/// `POST /support/keys/{id}/revoke` (field `reason`): revokes at once, then
/// back to the key page with a flash; without a reason, the key page again
/// with the error (and htmx's address set to it, so a reload finds a page).
pub async fn revoke(
    state: State,
    hx: HxRequest,
    SupportUser(user): SupportUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> Result<HttpResponse, AppError> {
    let id = KeyId::from(id_param(path.into_inner())?);
    match state.support_service().revoke(&user.actor, &id, &form.reason).await {
        Ok(()) => {
            flash(&user.session, "Key revoked. Requests with it fail now; the team sees your reason.");
            Ok(redirect(&format!("/support/keys/{id}")))
        }
        Err(Error::Invalid(errors)) => {
            let dossier = state.support_service().key(&id).await?;
            let page = key_page(
                Layout::new(&user, Nav::Support)?,
                &state.config.api_key_prefix,
                dossier,
                errors,
                &form.reason,
            );
            let res = render(StatusCode::UNPROCESSABLE_ENTITY, &page)?;
            Ok(super::htmx::push_url(res, hx, &format!("/support/keys/{id}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// A team member as support lists them: the role in words.
pub struct MemberView {
    pub id: String,
    pub email: String,
    pub role: String,
}

#[derive(Template)]
#[template(path = "support/team.html")]
struct TeamPage {
    layout: Layout,
    team_id: String,
    team_name: String,
    plan: String,
    require_totp: bool,
    members: Vec<MemberView>,
    keys: Vec<KeyHit>,
    apps: Vec<(String, String, String)>,
    event_lines: Vec<EventLine>,
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

fn role_label(role: &str) -> String {
    crate::domain::Role::parse(role).map_or_else(|| role.to_owned(), |r| r.label().to_owned())
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
        members: d
            .members
            .into_iter()
            .map(|(id, email, role)| MemberView { id, email, role: role_label(&role) })
            .collect(),
        keys: d.keys,
        apps: d.apps.into_iter().map(|(id, name, kind)| (id, name, capitalized(&kind))).collect(),
        event_lines: sentences(d.events, &d.names, Viewer::Support, state.clock.now()),
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
    event_lines: Vec<EventLine>,
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
        team: d.team.map(|(id, name, role)| (id, name, role_label(&role))),
        keys: d.keys,
        authorized: d.authorized,
        event_lines: sentences(d.events, &d.names, Viewer::Support, state.clock.now()),
        email: d.user.email,
    };
    render(StatusCode::OK, &page)
}
