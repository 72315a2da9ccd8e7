//! `/settings/team`: members and roles, invites, role changes and removals.
//! Who may do what, and what a change ends, are `AccountService`'s rules.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{CurrentUser, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::{State, format};
use crate::domain::{InviteId, PlainSecret, UserId};
use crate::error::AppError;
use crate::service::accounts::{Invited, KeyDisposal, Role};
use crate::service::{Error, FieldErrors, policy};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct InviteForm {
    email: String,
    role: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RoleForm {
    role: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RemoveForm {
    /// `revoke` (the default) or `transfer`: what happens to their working keys.
    keys: String,
}

pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub joined: String,
    pub is_self: bool,
    /// Whether the viewer may change or remove this member.
    pub editable: bool,
    /// Working API keys this member is answerable for.
    pub active_keys: usize,
}

pub struct InviteRow {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub expires: String,
}

pub struct EventRow {
    pub when: String,
    pub actor: String,
    pub action: String,
}

#[derive(Template)]
#[template(path = "pages/team.html")]
struct TeamPage {
    layout: Layout,
    team_name: String,
    can_manage: bool,
    can_read_audit: bool,
    members: Vec<MemberRow>,
    invites: Vec<InviteRow>,
    events: Vec<EventRow>,
    assignable: Vec<&'static str>,
    invite_email: String,
    invite_role: String,
    /// The link of the invite just made (shown once).
    invite_link: Option<PlainSecret>,
    errors: FieldErrors,
}

/// `/`: the team page for members; a short page for users without a team.
pub async fn home(user: CurrentUser) -> Result<HttpResponse, AppError> {
    match user.ctx.team {
        Some(_) => Ok(redirect("/settings/team")),
        None if user.ctx.user.is_support => Ok(redirect("/support")),
        None => {
            Err(AppError::Forbidden("You are not a member of any team yet. Ask a team owner for an invite.".into()))
        }
    }
}

async fn page(state: &State, user: &CurrentUser) -> Result<TeamPage, AppError> {
    let (team, role) = user.team()?;
    let overview = state.account_service().team_overview(&user.member()?).await?;
    let me = &user.ctx.user.id;
    Ok(TeamPage {
        layout: Layout::new(user, Nav::Team)?,
        team_name: team.name.clone(),
        can_manage: role.manages_members(),
        can_read_audit: policy::may_read_audit(role),
        members: overview
            .members
            .into_iter()
            .map(|(m, u, active_keys)| MemberRow {
                active_keys,
                editable: role.may_assign(m.role),
                is_self: &u.id == me,
                user_id: u.id,
                email: u.email,
                role: m.role,
                joined: format::date(m.created_at),
            })
            .collect(),
        invites: overview
            .invites
            .into_iter()
            .map(|i| InviteRow { id: i.id, email: i.email, role: i.role, expires: format::datetime(i.expires_at) })
            .collect(),
        events: overview
            .events
            .into_iter()
            .map(|e| EventRow { when: format::datetime(e.created_at), actor: e.actor_label, action: e.action })
            .collect(),
        assignable: Role::ALL.iter().filter(|r| role.may_assign(**r)).map(|r| r.as_str()).collect(),
        invite_email: String::new(),
        invite_role: "developer".into(),
        invite_link: None,
        errors: FieldErrors::default(),
    })
}

pub async fn show(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    render(StatusCode::OK, &page(&state, &user).await?)
}

pub async fn invite(state: State, user: CurrentUser, form: web::Form<InviteForm>) -> Result<HttpResponse, AppError> {
    let InviteForm { email, role } = form.into_inner();
    let invited = state.account_service().invite(&user.actor, &user.member()?, &email, &role).await;
    let mut view = page(&state, &user).await?;
    match invited {
        Ok(Invited { email, token }) => {
            let link = format!("{}/invite/{}", state.config.public_url, token.expose());
            view.invite_link = Some(PlainSecret::new(link));
            view.invite_email = email;
            render(StatusCode::OK, &view)
        }
        Err(Error::Invalid(errors)) => {
            (view.errors, view.invite_email, view.invite_role) = (errors, email, role);
            render(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_invite(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let member = user.member()?;
    let id = InviteId::from(id_param(path.into_inner())?);
    state.account_service().revoke_invite(&user.actor, &member, &id).await?;
    user.session.flash("Invite revoked.")?;
    Ok(redirect("/settings/team"))
}

/// After a change: back to the team page with `message`, or the page again
/// with a rule's message (other errors pass on).
async fn done(
    state: &State,
    user: &CurrentUser,
    result: Result<(), Error>,
    message: &str,
) -> Result<HttpResponse, AppError> {
    match result {
        Ok(()) => {
            user.session.flash(message)?;
            Ok(redirect("/settings/team"))
        }
        Err(Error::Invalid(errors)) => {
            let mut view = page(state, user).await?;
            view.errors = errors;
            render(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn change_role(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let member = user.member()?;
    let new_role = Role::parse(&form.role).ok_or_else(|| AppError::BadRequest("Choose a valid role.".into()))?;
    let target = UserId::from(id_param(path.into_inner())?);
    let result = state.account_service().change_role(&user.actor, &member, &target, new_role).await;
    done(&state, &user, result, "Role updated.").await
}

pub async fn remove_member(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RemoveForm>,
) -> Result<HttpResponse, AppError> {
    let member = user.member()?;
    let keys = match form.keys.as_str() {
        "" => KeyDisposal::Revoke,
        other => KeyDisposal::parse(other)
            .ok_or_else(|| AppError::BadRequest("Choose revoke or transfer for their keys.".into()))?,
    };
    let target = UserId::from(id_param(path.into_inner())?);
    let result = state.account_service().remove_member(&user.actor, &member, &target, keys).await;
    if result.is_ok() && target.as_str() == user.ctx.user.id {
        user.session.purge();
        return Ok(redirect("/login"));
    }
    done(&state, &user, result, "Member removed; their sessions, OAuth grants and invites have ended.").await
}
