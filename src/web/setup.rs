//! First run: `/setup?token=…` creates the first team and its owner. The token
//! is printed to the log at start; the page is gone once any user exists (the
//! rules are `AccountService`'s).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::request_actor;
use super::page::{redirect, render};
use super::session::TypedSession;
use super::{AppState, State, csrf};
use crate::error::AppError;
use crate::service::accounts::{AccountService, NewTeam};
use crate::service::{Error, FieldErrors};

impl AppState {
    /// Setup, invites and membership changes.
    pub fn account_service(&self) -> AccountService<'_> {
        AccountService {
            db: &self.db,
            keys: &self.keys,
            verifier: &self.verifier,
            hashing: &self.hashing,
            clock: &self.clock,
            setup_token: &self.setup_token,
            notifier: &self.notifier,
        }
    }
}

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

impl SetupPage {
    fn new(session: &TypedSession, form: NewTeam, errors: FieldErrors) -> Result<Self, AppError> {
        let NewTeam { token, team_name, email, .. } = form;
        Ok(Self { csrf: csrf::token(session)?, asset_v: super::assets::version(), token, team_name, email, errors })
    }
}

pub async fn form(
    state: State,
    session: TypedSession,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    state.account_service().check_setup_token(&query.token).await?;
    let blank = NewTeam {
        token: query.into_inner().token,
        team_name: String::new(),
        email: String::new(),
        password: String::new(),
    };
    render(StatusCode::OK, &SetupPage::new(&session, blank, FieldErrors::default())?)
}

pub async fn submit(
    state: State,
    session: TypedSession,
    req: HttpRequest,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, AppError> {
    let SetupForm { token, team_name, email, password } = form.into_inner();
    let form = NewTeam { token, team_name, email, password };
    match state.account_service().setup(&request_actor(&req, &state), &form).await {
        Ok(()) => {
            session.flash("Your team is ready. Sign in with the password you chose.")?;
            super::login::prefill_email(&session, form.email.trim())?;
            Ok(redirect("/login"))
        }
        Err(Error::Invalid(errors)) => {
            render(StatusCode::UNPROCESSABLE_ENTITY, &SetupPage::new(&session, form, errors)?)
        }
        Err(e) => Err(e.into()),
    }
}
