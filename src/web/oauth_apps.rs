//! Settings → Developer → OAuth Apps: register, edit, rotate the secret,
//! delete. A confidential app's secret is shown once, like an API key.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::auth::{CurrentUser, flash, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::{State, format};
use crate::error::AppError;
use crate::service::accounts::Role;
use crate::service::keys::scopes;
use crate::service::oauth::{self, AppInput};
use crate::service::{Error, FieldErrors, policy};
use crate::store::models::OauthClient;

pub struct AppView {
    pub id: String,
    pub name: String,
    pub client_type: String,
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
        client_type: c.client_type.clone(),
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
    secret: Option<String>,
    can_edit: bool,
    errors: FieldErrors,
}

fn parse(pairs: Vec<(String, String)>) -> AppInput {
    let mut input = AppInput::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => input.name = v,
            "redirect_uris" => input.redirect_uris = v,
            "client_type" => input.client_type = v,
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
        client_type: input.client_type.clone(),
        redirect_uris: input.redirect_uris.clone(),
        scopes: input.scopes.clone(),
        logo_url: input.logo_url.clone(),
        homepage: input.homepage.clone(),
        created: String::new(),
    }
}

fn catalog(state: &State, role: Role, checked: &[String]) -> Vec<(String, bool)> {
    scopes::grantable(&state.config.scopes, role)
        .into_iter()
        .map(|s| (s.to_owned(), checked.iter().any(|c| c == s)))
        .collect()
}

/// Whether the signed-in user may change this app (the policy decides).
fn may_manage(user: &CurrentUser, role: Role, app: &OauthClient) -> bool {
    let caller = policy::Caller { user_id: Some(&user.ctx.user.id), role, ceiling: None };
    policy::manage_app(&caller, app.created_by.as_deref(), &oauth::scopes_of(&app.allowed_scopes)).is_ok()
}

pub async fn index(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let tid = team.id.clone();
    let apps = state.db.run(move |conn| oauth::apps(conn, &tid)).await?;
    render(
        StatusCode::OK,
        &ListPage {
            layout: Layout::new(&user, Nav::OauthApps)?,
            apps: apps.iter().map(view).collect(),
            can_edit: role != Role::Viewer,
        },
    )
}

pub async fn new_form(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let (_, role) = user.team()?;
    if role == Role::Viewer {
        return Err(AppError::Forbidden("Viewers cannot register apps.".into()));
    }
    let form = form_view(&AppInput { client_type: "confidential".into(), ..AppInput::default() });
    let page = AppPage {
        layout: Layout::new(&user, Nav::OauthApps)?,
        app: None,
        form,
        catalog: catalog(&state, role, &[]),
        secret: None,
        can_edit: true,
        errors: FieldErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn create(
    state: State,
    user: CurrentUser,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let input = parse(body.into_inner());
    let (st, actor, tid, inp) = (state.clone(), user.actor.clone(), team.id.clone(), input.clone());
    match state.db.run(move |conn| oauth::register(conn, &st.keys, &actor, (&tid, role), &st.config.scopes, &inp)).await
    {
        Ok((client, secret)) => {
            let v = view(&client);
            let page = AppPage {
                layout: Layout::new(&user, Nav::OauthApps)?,
                catalog: catalog(&state, role, &v.scopes),
                form: view(&client),
                app: Some(v),
                secret,
                can_edit: true,
                errors: FieldErrors::default(),
            };
            render(StatusCode::OK, &page)
        }
        Err(Error::Invalid(errors)) => {
            let page = AppPage {
                layout: Layout::new(&user, Nav::OauthApps)?,
                app: None,
                catalog: catalog(&state, role, &input.scopes),
                form: form_view(&input),
                secret: None,
                can_edit: true,
                errors,
            };
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

async fn load(state: &State, user: &CurrentUser, id: String) -> Result<OauthClient, AppError> {
    let (team, _) = user.team()?;
    let tid = team.id.clone();
    Ok(state.db.run(move |conn| oauth::app(conn, &tid, &id)).await?)
}

pub async fn show(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (_, role) = user.team()?;
    let client = load(&state, &user, id_param(path.into_inner())?).await?;
    let v = view(&client);
    let page = AppPage {
        layout: Layout::new(&user, Nav::OauthApps)?,
        catalog: catalog(&state, role, &v.scopes),
        form: view(&client),
        app: Some(v),
        secret: None,
        can_edit: may_manage(&user, role, &client),
        errors: FieldErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn update(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = id_param(path.into_inner())?;
    let input = parse(body.into_inner());
    let (st, actor, tid, inp, cid) = (state.clone(), user.actor.clone(), team.id.clone(), input.clone(), id.clone());
    match state.db.run(move |conn| oauth::update(conn, &actor, (&tid, role), &st.config.scopes, &cid, &inp)).await {
        Ok(_) => {
            flash(&user.session, "App saved.");
            Ok(redirect(&format!("/settings/developer/oauth-apps/{id}")))
        }
        Err(Error::Invalid(errors)) => {
            let client = load(&state, &user, id).await?;
            let mut form = form_view(&input);
            form.client_type = client.client_type.clone();
            let page = AppPage {
                layout: Layout::new(&user, Nav::OauthApps)?,
                app: Some(view(&client)),
                catalog: catalog(&state, role, &input.scopes),
                form,
                secret: None,
                can_edit: true,
                errors,
            };
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn rotate(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<super::page::GraceForm>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = id_param(path.into_inner())?;
    let (keys, actor, tid, cid, grace) =
        (state.keys.clone(), user.actor.clone(), team.id.clone(), id.clone(), form.grace);
    let secret =
        state.db.run(move |conn| oauth::rotate_secret(conn, &keys, &actor, (&tid, role), &cid, grace)).await.map_err(
            |e| match e {
                Error::Invalid(f) => AppError::BadRequest(f.0.values().next().cloned().unwrap_or_default()),
                other => other.into(),
            },
        )?;
    let client = load(&state, &user, id).await?;
    let v = view(&client);
    let page = AppPage {
        layout: Layout::new(&user, Nav::OauthApps)?,
        catalog: catalog(&state, role, &v.scopes),
        form: view(&client),
        app: Some(v),
        secret: Some(secret),
        can_edit: true,
        errors: FieldErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn delete(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let id = id_param(path.into_inner())?;
    let (actor, tid) = (user.actor.clone(), team.id.clone());
    state.db.run(move |conn| oauth::delete(conn, &actor, (&tid, role), &id)).await?;
    state.verifier.invalidate_all();
    flash(&user.session, "App deleted; every token it held was revoked.");
    Ok(redirect("/settings/developer/oauth-apps"))
}
