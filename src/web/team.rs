//! `/settings/team`: members and roles, invites, role changes and removals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{CurrentUser, flash, id_param};
use super::page::{Layout, Nav, redirect, render};
use super::{State, format};
use crate::error::AppError;
use crate::service::accounts::{self, KeyDisposal, Role};
use crate::service::{FieldErrors, audit, policy, validate};

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
    pub role: String,
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
    pub role: String,
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
    invite_link: Option<String>,
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
    let team_id = team.id.clone();
    let can_read_audit = policy::may_read_audit(role);
    let (members, invites, events) = state
        .db
        .run(move |conn| {
            let events = if can_read_audit { audit::recent_for_team(conn, &team_id, 10)? } else { Vec::new() };
            Ok::<_, crate::service::Error>((
                accounts::members_with_keys(conn, &team_id)?,
                accounts::pending_invites(conn, &team_id)?,
                events,
            ))
        })
        .await?;
    let me = &user.ctx.user.id;
    Ok(TeamPage {
        layout: Layout::new(user, Nav::Team)?,
        team_name: team.name.clone(),
        can_manage: role.manages_members(),
        can_read_audit,
        members: members
            .into_iter()
            .map(|(m, u, active_keys)| MemberRow {
                active_keys,
                editable: Role::parse(&m.role).is_some_and(|r| role.may_assign(r)),
                is_self: &u.id == me,
                user_id: u.id,
                email: u.email,
                role: m.role,
                joined: format::date(m.created_at),
            })
            .collect(),
        invites: invites
            .into_iter()
            .map(|i| InviteRow { id: i.id, email: i.email, role: i.role, expires: format::datetime(i.expires_at) })
            .collect(),
        events: events
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
    let (team, actor_role) = user.team()?;
    if !actor_role.manages_members() {
        return Err(AppError::Forbidden("Only owners and admins can invite members.".into()));
    }
    let form = form.into_inner();
    let mut errors = FieldErrors::default();
    let email = validate::email(&form.email).map_err(|m| errors.add("email", m)).ok();
    let role = Role::parse(&form.role);
    if role.is_none() {
        errors.add("role", "Choose a role.");
    }
    let result = match (email, role) {
        (Some(email), Some(role)) => {
            let (team_id, keys, actor) = (team.id.clone(), state.keys.clone(), user.actor.clone());
            state.db.run(move |conn| accounts::invite(conn, &keys, &actor, (&team_id, actor_role), &email, role)).await
        }
        _ => Err(crate::service::Error::Invalid(errors)),
    };
    let mut view = page(&state, &user).await?;
    match result {
        Ok((_, token)) => {
            view.invite_link = Some(format!("{}/invite/{token}", state.config.public_url));
            view.invite_email = form.email.trim().to_lowercase();
            render(StatusCode::OK, &view)
        }
        Err(crate::service::Error::Invalid(errors)) => {
            view.errors = errors;
            view.invite_email = form.email;
            view.invite_role = form.role;
            render(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_invite(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let (team_id, actor, id) = (team.id.clone(), user.actor.clone(), id_param(path.into_inner())?);
    state.db.run(move |conn| accounts::revoke_invite(conn, &actor, (&team_id, role), &id)).await?;
    flash(&user.session, "Invite revoked.");
    Ok(redirect("/settings/team"))
}

/// Re-renders the team page with a rule's message, or passes other errors on.
async fn refused(state: &State, user: &CurrentUser, e: crate::service::Error) -> Result<HttpResponse, AppError> {
    match e {
        crate::service::Error::Invalid(errors) => {
            let mut view = page(state, user).await?;
            view.errors = errors;
            render(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        other => Err(other.into()),
    }
}

pub async fn change_role(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let (team, actor_role) = user.team()?;
    let new_role = Role::parse(&form.role).ok_or_else(|| AppError::BadRequest("Choose a valid role.".into()))?;
    let (team_id, actor, target) = (team.id.clone(), user.actor.clone(), id_param(path.into_inner())?);
    let result =
        state.db.run(move |conn| accounts::change_role(conn, &actor, (&team_id, actor_role), &target, new_role)).await;
    if result.is_ok() {
        // What their keys and tokens may do changes at once here.
        state.verifier.invalidate_all();
    }
    match result {
        Ok(()) => {
            flash(&user.session, "Role updated.");
            Ok(redirect("/settings/team"))
        }
        Err(e) => refused(&state, &user, e).await,
    }
}

pub async fn remove_member(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RemoveForm>,
) -> Result<HttpResponse, AppError> {
    let (team, actor_role) = user.team()?;
    let keys = match form.keys.as_str() {
        "" => KeyDisposal::Revoke,
        other => KeyDisposal::parse(other)
            .ok_or_else(|| AppError::BadRequest("Choose revoke or transfer for their keys.".into()))?,
    };
    let (team_id, actor, target) = (team.id.clone(), user.actor.clone(), id_param(path.into_inner())?);
    let removed_self = target == user.ctx.user.id;
    let result =
        state.db.run(move |conn| accounts::remove_member(conn, &actor, (&team_id, actor_role), &target, keys)).await;
    if result.is_ok() {
        // Their keys and tokens end at once here (elsewhere within the cache's bound).
        state.verifier.invalidate_all();
    }
    match result {
        Ok(()) if removed_self => {
            user.session.purge();
            Ok(redirect("/login"))
        }
        Ok(()) => {
            flash(&user.session, "Member removed; their sessions, OAuth grants and invites have ended.");
            Ok(redirect("/settings/team"))
        }
        Err(e) => refused(&state, &user, e).await,
    }
}
