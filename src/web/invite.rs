//! `/invite/{token}`: the invitee sets a password and joins the team (the
//! rules are `AccountService`'s).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::State;
use super::auth::request_actor;
use super::page::{redirect, render};
use super::session::TypedSession;
use crate::domain::Role;
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::accounts::Acceptance;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AcceptForm {
    password: String,
}

#[derive(Template)]
#[template(path = "pages/invite.html")]
struct InvitePage {
    csrf: String,
    asset_v: &'static str,
    token: String,
    team_name: String,
    email: String,
    role: Role,
    errors: FieldErrors,
}

impl InvitePage {
    fn new(
        session: &TypedSession,
        token: String,
        (team_name, email, role): (String, String, Role),
        errors: FieldErrors,
    ) -> Result<Self, AppError> {
        let (csrf, asset_v) = (super::csrf::token(session)?, super::assets::version());
        Ok(Self { csrf, asset_v, token, team_name, email, role, errors })
    }
}

pub async fn form(state: State, session: TypedSession, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    let (invite, team) = state.account_service().open_invite(&token).await?;
    let page = InvitePage::new(&session, token, (team.name, invite.email, invite.role), FieldErrors::default())?;
    render(StatusCode::OK, &page)
}

pub async fn accept(
    state: State,
    session: TypedSession,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<AcceptForm>,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    let actor = request_actor(&req, &state);
    match state.account_service().accept_invite(&actor, &token, &form.password).await? {
        Acceptance::Joined { team_name, email } => {
            session.flash(&format!("Welcome to {team_name}. Sign in with your new password."))?;
            super::login::prefill_email(&session, &email)?;
            Ok(redirect("/login"))
        }
        Acceptance::Refused { team_name, email, role, errors } => {
            let page = InvitePage::new(&session, token, (team_name, email, role), errors)?;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}
