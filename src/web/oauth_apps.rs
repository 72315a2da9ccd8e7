//! Settings → Developer → OAuth Apps: register, edit, rotate the secret,
//! delete. A confidential app's secret is shown once, like an API key.
//!
//! Rules: each handler calls one method of [`AppService`]; who may do what is
//! the service's (the policy's) answer, which the pages only reflect.
//! Rotating the secret and deleting ask first (a `GET` on the action's URL
//! answers the confirmation, under the same policy); the new secret is shown
//! once in the rotation's answer (`no-store`), and a reload of that URL says
//! so above the confirmation rather than failing.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::answer::{again, bad_request, flashed};
use super::auth::{CurrentUser, id_param};
use super::confirm::{self, Confirm, Field};
use super::format::When;
use super::htmx::{HxRequest, push_url};
use super::page::{Layout, Nav, redirect, render};
use super::{AppState, State};
use crate::domain::{ClientId, ClientType, PlainSecret, Role, TeamId};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::oauth::{self, AppFacts, AppInput, AppService, Member, Submitted};
use crate::store::models::OauthClient;

mod rotation;

pub use rotation::{
    extend as extend_rotation, extend_confirm as confirm_extend_rotation, finish as finish_rotation,
    finish_confirm as confirm_finish_rotation,
};

impl AppState {
    pub fn oauth_app_service(&self) -> AppService<'_> {
        AppService {
            db: &self.db,
            keys: &self.keys,
            verifier: &self.verifier,
            clock: &self.clock,
            catalog: &self.config.scopes,
        }
    }
}

pub struct AppView {
    pub id: String,
    pub name: String,
    /// As shown: `confidential` or `public` (empty on a form without one).
    pub client_type: String,
    pub public: bool,
    pub redirect_uris: String,
    pub scopes: Vec<String>,
    pub logo_url: String,
    pub homepage: String,
    pub created: Option<When>,
    /// "Confidential", "Public".
    pub type_label: &'static str,
}

/// The facts of a saved app, as its page shows them.
#[derive(Default)]
pub struct FactsView {
    pub team_name: String,
    pub registered_by: Option<String>,
    pub secret_made: Option<When>,
    pub previous_until: Option<When>,
    pub secret_disabled: bool,
}

fn facts_view(f: AppFacts, now: i64) -> FactsView {
    FactsView {
        team_name: f.team_name,
        registered_by: f.registered_by,
        secret_made: When::maybe(f.secret_made_at, now),
        previous_until: When::maybe(f.previous_secret_until, now),
        secret_disabled: f.secret_disabled,
    }
}

fn type_label(t: Option<ClientType>) -> &'static str {
    match t {
        Some(ClientType::Confidential) => "Confidential",
        Some(ClientType::Public) => "Public",
        None => "",
    }
}

/// The session key naming the app whose secret was just rotated (so that a
/// reload of the rotation's URL can say the secret was shown once).
const ROTATED: &str = "oauth_app_rotated";
/// The session marker of an app whose secret was just shown at registration.
const CREATED: &str = "oauth_app_created";

fn view(c: &OauthClient, now: i64) -> AppView {
    AppView {
        id: c.id.clone(),
        name: c.name.clone(),
        client_type: c.client_type.to_string(),
        public: c.client_type == ClientType::Public,
        redirect_uris: c.redirect_uris.clone(),
        scopes: oauth::scopes_of(&c.allowed_scopes),
        logo_url: c.logo_url.clone(),
        homepage: c.homepage.clone(),
        created: Some(When::at(c.created_at, now)),
        type_label: type_label(Some(c.client_type)),
    }
}

#[derive(Template)]
#[template(path = "pages/oauth_apps.html")]
struct ListPage {
    layout: Layout,
    apps: Vec<AppView>,
    can_edit: bool,
}

#[derive(Template)]
#[template(path = "pages/oauth_app.html")]
struct AppPage {
    layout: Layout,
    /// `None` on the registration form.
    app: Option<AppView>,
    form: AppView,
    catalog: Vec<(String, bool)>,
    secret: Option<PlainSecret>,
    can_edit: bool,
    errors: FieldErrors,
    facts: FactsView,
    /// The registration form's token (`web::resubmit`): sent twice, it lands
    /// on the app it registered instead of registering another.
    submission: String,
    /// The previous secret in its grace period (`partials/rotation_card_partial.html`).
    rotation: Option<super::rotation::RotationCard>,
}

impl AppPage {
    /// An app's page (or the empty registration form) for `user`.
    fn new(
        state: &State,
        user: &CurrentUser,
        role: Role,
        app: Option<AppView>,
        form: AppView,
    ) -> Result<Self, AppError> {
        let grantable = state.oauth_app_service().grantable(role);
        let catalog = grantable.into_iter().map(|s| (s.clone(), form.scopes.contains(&s))).collect();
        let layout = Layout::new(user, Nav::OauthApps)?;
        Ok(Self {
            layout,
            form,
            catalog,
            secret: None,
            can_edit: true,
            errors: FieldErrors::default(),
            facts: FactsView::default(),
            submission: if app.is_none() { super::resubmit::token()? } else { String::new() },
            app,
            rotation: None,
        })
    }

    /// The page of a saved app, with its facts.
    async fn of(state: &State, user: &CurrentUser, role: Role, app: &OauthClient) -> Result<Self, AppError> {
        let now = state.clock.now();
        let service = state.oauth_app_service();
        let facts = facts_view(service.facts(app).await?, now);
        let rotation = service.secret_rotation(&member(user)?, app).await?;
        let rotation = rotation.map(|r| rotation::rotation_card(&r, &app.id, now));
        Ok(Self { facts, rotation, ..Self::new(state, user, role, Some(view(app, now)), view(app, now))? })
    }
}

fn parse(pairs: Vec<(String, String)>) -> AppInput {
    let mut input = AppInput::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => input.name = v,
            "redirect_uris" => input.redirect_uris = v,
            "client_type" => input.client_type = ClientType::parse(&v),
            "scopes" => input.scopes.push(v),
            "logo_url" => input.logo_url = v,
            "homepage" => input.homepage = v,
            _ => {}
        }
    }
    input
}

fn form_view(input: &AppInput) -> AppView {
    AppView {
        id: String::new(),
        name: input.name.clone(),
        client_type: input.client_type.map(|t| t.to_string()).unwrap_or_default(),
        public: input.client_type == Some(ClientType::Public),
        redirect_uris: input.redirect_uris.clone(),
        scopes: input.scopes.clone(),
        logo_url: input.logo_url.clone(),
        homepage: input.homepage.clone(),
        created: None,
        type_label: type_label(input.client_type),
    }
}

/// The signed-in user as a member of their team (403 without one).
fn member(user: &CurrentUser) -> Result<Member<'_>, AppError> {
    let (team, role) = user.team()?;
    Ok(Member { actor: &user.actor, team_id: TeamId::from(team.id.as_str()), role })
}

/// A form that did not validate, again, with its errors (422); the address
/// bar shows the form's page (htmx).
async fn invalid(
    state: &State,
    (user, hx): (&CurrentUser, HxRequest),
    m: &Member<'_>,
    (input, errors): (AppInput, FieldErrors),
    app: Option<OauthClient>,
) -> Result<HttpResponse, AppError> {
    let mut form = form_view(&input);
    let now = state.clock.now();
    if let Some(app) = &app {
        (form.client_type, form.public) = (app.client_type.to_string(), app.client_type == ClientType::Public);
        form.type_label = type_label(Some(app.client_type));
    }
    let facts = match &app {
        Some(a) => facts_view(state.oauth_app_service().facts(a).await?, now),
        None => FactsView::default(),
    };
    let here = match &app {
        Some(a) => format!("/settings/developer/oauth-apps/{}", a.id),
        None => "/settings/developer/oauth-apps/new".to_owned(),
    };
    let view_of = app.as_ref().map(|a| view(a, now));
    again(&AppPage { errors, facts, ..AppPage::new(state, user, m.role, view_of, form)? }, hx, &here)
}

pub async fn index(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let list = state.oauth_app_service().list(&member(&user)?).await?;
    let now = state.clock.now();
    let page = ListPage {
        layout: Layout::new(&user, Nav::OauthApps)?,
        apps: list.apps.iter().map(|a| view(a, now)).collect(),
        can_edit: list.can_register,
    };
    render(StatusCode::OK, &page)
}

pub async fn new_form(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let m = member(&user)?;
    state.oauth_app_service().may_register(&m)?;
    let form = form_view(&AppInput { client_type: Some(ClientType::Confidential), ..AppInput::default() });
    render(StatusCode::OK, &AppPage::new(&state, &user, m.role, None, form)?)
}

pub async fn create(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let submission = super::resubmit::accepted_in(&pairs);
    let (m, input) = (member(&user)?, parse(pairs.clone()));
    if let Some(id) = super::resubmit::made(&user.session, "oauth_app", submission)? {
        // Sent again (a reload of the page that showed the secret): that app.
        user.session.insert(CREATED, id.as_str())?;
        return Ok(redirect(&format!("/settings/developer/oauth-apps/{id}")));
    }
    match state.oauth_app_service().register(&m, input.clone()).await? {
        Submitted::Saved { app, secret } => {
            super::resubmit::remember(&user.session, "oauth_app", submission, &app.id)?;
            // The secret is shown once, in this answer; htmx puts the app's
            // page in the address bar, which says so on a reload.
            user.session.insert(CREATED, app.id.as_str())?;
            let url = format!("/settings/developer/oauth-apps/{}", app.id);
            let page = AppPage { secret, ..AppPage::of(&state, &user, m.role, &app).await? };
            Ok(push_url(render(StatusCode::OK, &page)?, hx, &url))
        }
        Submitted::Invalid { errors, app } => invalid(&state, (&user, hx), &m, (input, errors), app).await,
    }
}

pub async fn show(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let m = member(&user)?;
    let id = ClientId::from(id_param(path.into_inner())?);
    let shown = state.oauth_app_service().show(&m, id).await?;
    let mut page = AppPage { can_edit: shown.can_manage, ..AppPage::of(&state, &user, m.role, &shown.app).await? };
    if user.session.take::<String>(CREATED)?.is_some_and(|created| created == shown.app.id) {
        page.layout.flash = Some(
            "The client secret was shown once, when the app was registered, and cannot be shown again. If you lost it, rotate it."
                .into(),
        );
    }
    render(StatusCode::OK, &page)
}

pub async fn update(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (m, id, input) = (member(&user)?, id_param(path.into_inner())?, parse(body.into_inner()));
    match state.oauth_app_service().update(&m, ClientId::from(id.as_str()), input.clone()).await? {
        Submitted::Saved { .. } => {
            Ok(flashed(&user.session, "App saved.", &format!("/settings/developer/oauth-apps/{id}")))
        }
        Submitted::Invalid { errors, app } => invalid(&state, (&user, hx), &m, (input, errors), app).await,
    }
}

pub async fn rotate(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RotateForm>,
) -> Result<HttpResponse, AppError> {
    let (m, id) = (member(&user)?, ClientId::from(id_param(path.into_inner())?));
    let submission = super::resubmit::accepted(&form.submission);
    if super::resubmit::made(&user.session, "rotation", submission)?.is_some_and(|made| made == id.as_str()) {
        // Sent again (a reload of the page that showed the new secret): no
        // second rotation, which would end the secret just copied.
        user.session.insert(ROTATED, id.as_str())?;
        return Ok(redirect(&format!("/settings/developer/oauth-apps/{id}/rotate")));
    }
    let rotated = state.oauth_app_service().rotate(&m, id, form.grace).await.map_err(bad_request)?;
    user.session.insert(ROTATED, rotated.app.id.as_str())?;
    super::resubmit::remember(&user.session, "rotation", submission, &rotated.app.id)?;
    let page = AppPage { secret: Some(rotated.secret), ..AppPage::of(&state, &user, m.role, &rotated.app).await? };
    render(StatusCode::OK, &page)
}

/// A rotation: the grace of the old secret, and the form's token (`web::resubmit`).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct RotateForm {
    grace: i64,
    submission: String,
}

/// `GET …/{id}/rotate`: the confirmation, naming what happens. A reload
/// right after a rotation (its answer showed the secret) says the secret was
/// shown once, above the same confirmation.
pub async fn confirm_rotate(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let app = manageable(&state, &user, path).await?;
    if app.client_type == ClientType::Public {
        return Ok(redirect(&format!("/settings/developer/oauth-apps/{}", app.id)));
    }
    let facts = state.oauth_app_service().facts(&app).await?;
    let back = format!("/settings/developer/oauth-apps/{}", app.id);
    let mut c = Confirm::new("confirm-rotate", format!("Rotate the secret of {}?", app.name), format!("{back}/rotate"))
        .says("A new client secret is made and shown once, on the next page: copy it into your app.")
        .says("The current secret keeps working for the time you choose below, so your app can switch without downtime; then it stops working.");
    if facts.previous_secret_until.is_some() {
        c = c.says("The previous secret, still in its grace period, stops working at once.");
    }
    let c = c
        .field(confirm::grace_field("The old secret keeps working for"))
        .field(Field::Hidden { name: "submission".into(), value: super::resubmit::token()? })
        .button("Rotate secret")
        .cancel_to(back)
        .not_dangerous();
    let mut layout = Layout::new(&user, Nav::OauthApps)?;
    if !hx.wants_fragment() && user.session.take::<String>(ROTATED)?.is_some_and(|id| id == app.id) {
        layout.flash = Some(
            "The new secret was shown once, when it was made, and cannot be shown again. If you lost it, rotate again."
                .into(),
        );
    }
    confirm::respond(hx, layout, &c)
}

/// The app in `path`, if the member may manage it (else not found).
async fn manageable(state: &State, user: &CurrentUser, path: web::Path<String>) -> Result<OauthClient, AppError> {
    let m = member(user)?;
    Ok(state.oauth_app_service().manageable(&m, ClientId::from(id_param(path.into_inner())?)).await?)
}

/// `GET …/{id}/delete`: what deleting the app ends.
pub async fn confirm_delete(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let app = manageable(&state, &user, path).await?;
    let back = format!("/settings/developer/oauth-apps/{}", app.id);
    let c = Confirm::new("confirm-delete-app", format!("Delete {}?", app.name), format!("{back}/delete"))
        .says("Every access and refresh token it holds is revoked at once, and everyone who authorized it loses that access.")
        .says("Sign-ins through it stop working. This cannot be undone.")
        .button("Delete app")
        .cancel_to(back);
    confirm::ask(&user, hx, Nav::OauthApps, &c)
}

pub async fn delete(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = ClientId::from(id_param(path.into_inner())?);
    state.oauth_app_service().delete(&member(&user)?, id).await?;
    Ok(flashed(&user.session, "App deleted; every token it held was revoked.", "/settings/developer/oauth-apps"))
}
