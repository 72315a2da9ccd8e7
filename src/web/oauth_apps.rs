//! Settings → Developer → OAuth Apps: register, edit, rotate the secret,
//! delete. A confidential app's secret is shown once, like an API key.
//!
//! Rules: each handler calls one method of [`AppService`]; who may do what is
//! the service's (the policy's) answer, which the pages only reflect.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::auth::{CurrentUser, flash, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::{AppState, State, format};
use crate::domain::{ClientId, ClientType, PlainSecret, Role, TeamId};
use crate::error::AppError;
use crate::service::oauth::{self, AppInput, AppService, Member, Submitted};
use crate::service::{Error, FieldErrors};
use crate::store::models::OauthClient;

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
    pub created: String,
}

fn view(c: &OauthClient) -> AppView {
    AppView {
        id: c.id.clone(),
        name: c.name.clone(),
        client_type: c.client_type.to_string(),
        public: c.client_type == ClientType::Public,
        redirect_uris: c.redirect_uris.clone(),
        scopes: oauth::scopes_of(&c.allowed_scopes),
        logo_url: c.logo_url.clone(),
        homepage: c.homepage.clone(),
        created: format::date(c.created_at),
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
        Ok(Self { layout, app, form, catalog, secret: None, can_edit: true, errors: FieldErrors::default() })
    }

    /// The page of a saved app.
    fn of(state: &State, user: &CurrentUser, role: Role, app: &OauthClient) -> Result<Self, AppError> {
        Self::new(state, user, role, Some(view(app)), view(app))
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
        created: String::new(),
    }
}

/// The signed-in user as a member of their team (403 without one).
fn member(user: &CurrentUser) -> Result<Member<'_>, AppError> {
    let (team, role) = user.team()?;
    Ok(Member { actor: &user.actor, team_id: TeamId::from(team.id.as_str()), role })
}

/// A form that did not validate, again, with its errors (422).
fn invalid(
    state: &State,
    user: &CurrentUser,
    m: &Member<'_>,
    (input, errors): (AppInput, FieldErrors),
    app: Option<OauthClient>,
) -> Result<HttpResponse, AppError> {
    let mut form = form_view(&input);
    if let Some(app) = &app {
        (form.client_type, form.public) = (app.client_type.to_string(), app.client_type == ClientType::Public);
    }
    let page = AppPage { errors, ..AppPage::new(state, user, m.role, app.as_ref().map(view), form)? };
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

pub async fn index(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let list = state.oauth_app_service().list(&member(&user)?).await?;
    let page = ListPage {
        layout: Layout::new(&user, Nav::OauthApps)?,
        apps: list.apps.iter().map(view).collect(),
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
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (m, input) = (member(&user)?, parse(body.into_inner()));
    match state.oauth_app_service().register(&m, input.clone()).await? {
        Submitted::Saved { app, secret } => {
            render(StatusCode::OK, &AppPage { secret, ..AppPage::of(&state, &user, m.role, &app)? })
        }
        Submitted::Invalid { errors, app } => invalid(&state, &user, &m, (input, errors), app),
    }
}

pub async fn show(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let m = member(&user)?;
    let id = ClientId::from(id_param(path.into_inner())?);
    let shown = state.oauth_app_service().show(&m, id).await?;
    render(StatusCode::OK, &AppPage { can_edit: shown.can_manage, ..AppPage::of(&state, &user, m.role, &shown.app)? })
}

pub async fn update(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (m, id, input) = (member(&user)?, id_param(path.into_inner())?, parse(body.into_inner()));
    match state.oauth_app_service().update(&m, ClientId::from(id.as_str()), input.clone()).await? {
        Submitted::Saved { .. } => {
            flash(&user.session, "App saved.");
            Ok(redirect(&format!("/settings/developer/oauth-apps/{id}")))
        }
        Submitted::Invalid { errors, app } => invalid(&state, &user, &m, (input, errors), app),
    }
}

pub async fn rotate(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<super::page::GraceForm>,
) -> Result<HttpResponse, AppError> {
    let (m, id) = (member(&user)?, ClientId::from(id_param(path.into_inner())?));
    let rotated = state.oauth_app_service().rotate(&m, id, form.grace).await.map_err(|e| match e {
        Error::Invalid(f) => AppError::BadRequest(f.0.values().next().cloned().unwrap_or_default()),
        other => other.into(),
    })?;
    let page = AppPage { secret: Some(rotated.secret), ..AppPage::of(&state, &user, m.role, &rotated.app)? };
    render(StatusCode::OK, &page)
}

pub async fn delete(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = ClientId::from(id_param(path.into_inner())?);
    state.oauth_app_service().delete(&member(&user)?, id).await?;
    flash(&user.session, "App deleted; every token it held was revoked.");
    Ok(redirect("/settings/developer/oauth-apps"))
}
