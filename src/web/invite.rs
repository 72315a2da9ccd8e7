//! `/invite/{token}`: the invitee sets a password and joins the team.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{flash, request_actor};
use super::page::{redirect, render};
use super::{State, csrf};
use crate::error::AppError;
use crate::service::{FieldErrors, accounts, password, validate};

const INVALID_LINK: &str = "This invite link is not valid: it may have expired or been used already.";

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
    role: String,
    errors: FieldErrors,
}

async fn page(state: &State, session: &Session, token: String) -> Result<InvitePage, AppError> {
    if token.len() > 64 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::Forbidden("This invite link is not valid.".into()));
    }
    let keys = state.keys.clone();
    let lookup = token.clone();
    let (invite, team) =
        state.db.run(move |conn| accounts::open_invite(conn, &keys, &lookup)).await.map_err(|e| match e {
            crate::service::Error::NotFound => AppError::Forbidden(INVALID_LINK.into()),
            other => other.into(),
        })?;
    Ok(InvitePage {
        csrf: csrf::token(session)?,
        asset_v: super::assets::version(),
        token,
        team_name: team.name,
        email: invite.email,
        role: invite.role,
        errors: FieldErrors::default(),
    })
}

pub async fn form(state: State, session: Session, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    render(StatusCode::OK, &page(&state, &session, path.into_inner()).await?)
}

pub async fn accept(
    state: State,
    session: Session,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<AcceptForm>,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    let mut view = page(&state, &session, token.clone()).await?;
    if let Err(m) = validate::new_password(&form.password, &view.email) {
        view.errors.add("password", m);
        return render(StatusCode::UNPROCESSABLE_ENTITY, &view);
    }
    let pw = form.into_inner().password;
    let hash =
        web::block(move || password::hash(&pw)).await.map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))??;
    let (keys, actor) = (state.keys.clone(), request_actor(&req, &state));
    // An invite to an email that has an account by now fails like a used link.
    state.db.run(move |conn| accounts::accept_invite(conn, &keys, &actor, &token, hash)).await.map_err(
        |e| match e {
            crate::service::Error::NotFound => AppError::Forbidden(INVALID_LINK.into()),
            other => other.into(),
        },
    )?;
    flash(&session, &format!("Welcome to {}. Sign in with your new password.", view.team_name));
    Ok(redirect("/login"))
}
