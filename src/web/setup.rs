//! First run: `/setup?token=…` creates the first team and its owner. The token
//! is printed to the log at start; the page is gone once any user exists.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{flash, request_actor};
use super::page::{redirect, render};
use super::{State, csrf};
use crate::error::AppError;
use crate::service::{FieldErrors, accounts, crypto, password, validate};

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupForm {
    token: String,
    team_name: String,
    email: String,
    password: String,
}

#[derive(Template)]
#[template(path = "pages/setup.html")]
struct SetupPage {
    csrf: String,
    asset_v: &'static str,
    token: String,
    team_name: String,
    email: String,
    errors: FieldErrors,
}

/// 404 once a user exists; 403 for a wrong token.
async fn check_token(state: &State, presented: &str) -> Result<(), AppError> {
    let open = state.db.run(accounts::setup_open).await?;
    let expected = state.setup_token.lock().map(|t| t.clone()).unwrap_or(None);
    match expected {
        Some(t) if open => {
            if crypto::ct_eq(&t, presented) {
                Ok(())
            } else {
                Err(AppError::Forbidden(
                    "This setup link is not valid. Use the full URL printed in the server log at start.".into(),
                ))
            }
        }
        _ => Err(AppError::NotFound),
    }
}

pub async fn form(state: State, session: Session, query: web::Query<TokenQuery>) -> Result<HttpResponse, AppError> {
    check_token(&state, &query.token).await?;
    let page = SetupPage {
        csrf: csrf::token(&session)?,
        asset_v: super::assets::version(),
        token: query.token.clone(),
        team_name: String::new(),
        email: String::new(),
        errors: FieldErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn submit(
    state: State,
    session: Session,
    req: HttpRequest,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    check_token(&state, &form.token).await?;
    let mut errors = FieldErrors::default();
    let team_name = validate::team_name(&form.team_name).map_err(|m| errors.add("team_name", m)).ok();
    let email = validate::account(&form.email, &form.password).map_err(|e| errors.0.extend(e.0)).ok();
    let (Some(team_name), Some(email)) = (team_name, email) else {
        let page = SetupPage {
            csrf: csrf::token(&session)?,
            asset_v: super::assets::version(),
            token: form.token,
            team_name: form.team_name,
            email: form.email,
            errors,
        };
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let hash = web::block(move || password::hash(&form.password))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))??;
    let actor = request_actor(&req, &state);
    state.db.run(move |conn| accounts::setup(conn, &actor, &team_name, &email, hash)).await?;
    if let Ok(mut token) = state.setup_token.lock() {
        *token = None;
    }
    tracing::info!("first-run setup completed; the setup page is now gone");
    flash(&session, "Your team is ready. Sign in with the email and password you chose.");
    Ok(redirect("/login"))
}
