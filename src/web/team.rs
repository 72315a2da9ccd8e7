//! `/settings/team`: members and roles, invites, role changes and removals.
//! Who may do what, and what a change ends, are `AccountService`'s rules.
//!
//! The page offers only what the rules allow (the sole owner is neither
//! removed nor demoted); removing a member and revoking an invite ask first
//! (a `GET` on the action's URL answers the confirmation); forms are
//! Post/Redirect/Get, except the invite link, shown once in the response to
//! the invite (`no-store`): a reload of that URL lands on the team page with a
//! notice.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::State;
use super::auth::{CurrentUser, id_param};
use super::confirm::{self, Confirm, Field};
use super::format::When;
use super::htmx::HxRequest;
use super::htmx::push_url;
use super::page::{Layout, Nav, redirect, render};
use crate::domain::{InviteId, PlainSecret, UserId};
use crate::error::AppError;
use crate::service::accounts::{Invited, KeyDisposal, Role};
use crate::service::{Error, FieldErrors, policy};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct InviteForm {
    email: String,
    role: String,
    /// The form's token (`web::resubmit`).
    submission: String,
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

const PAGE: &str = "/settings/team";

pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub joined: When,
    pub is_self: bool,
    /// The roles the viewer may give this member (their own included);
    /// empty when their role cannot be changed by the viewer.
    pub role_options: Vec<Role>,
    /// Whether the viewer may remove this member.
    pub removable: bool,
    /// Working API keys this member is answerable for.
    pub active_keys: usize,
}

pub struct InviteRow {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub expires: When,
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
    /// Recent activity as sentences (`partials/audit_events_partial.html`).
    event_lines: Vec<super::audit::EventLine>,
    assignable: Vec<Role>,
    invite_email: String,
    invite_role: String,
    /// The link of the invite just made (shown once).
    invite_link: Option<PlainSecret>,
    /// The invite form's token (`web::resubmit`).
    submission: String,
    errors: FieldErrors,
    /// The invite link was also emailed (SMTP is configured).
    emailed: bool,
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
    let (me, at) = (&user.ctx.user.id, state.clock.now());
    let owners = overview.members.iter().filter(|(m, _, _)| m.role == Role::Owner).count();
    let names = state.audit_service().names(&overview.events).await?;
    let event_lines = super::audit::sentences(overview.events, &names, super::audit::Viewer::Team, at);
    Ok(TeamPage {
        layout: Layout::new(user, Nav::Team)?,
        team_name: team.name.clone(),
        can_manage: role.manages_members(),
        can_read_audit: policy::may_read_audit(role),
        members: overview
            .members
            .into_iter()
            .map(|(m, u, active_keys)| {
                // What the rules would refuse is not offered: the sole owner
                // keeps the role and the team.
                let sole_owner = m.role == Role::Owner && owners <= 1;
                let manageable = role.manages_members() && role.may_assign(m.role) && !sole_owner;
                let role_options: Vec<Role> = if manageable {
                    Role::ALL.iter().copied().filter(|r| role.may_assign(*r)).collect()
                } else {
                    Vec::new()
                };
                MemberRow {
                    active_keys,
                    role_options,
                    removable: manageable,
                    is_self: &u.id == me,
                    user_id: u.id,
                    email: u.email,
                    role: m.role,
                    joined: When::at(m.created_at, at),
                }
            })
            .collect(),
        invites: overview
            .invites
            .into_iter()
            .map(|i| InviteRow { id: i.id, email: i.email, role: i.role, expires: When::at(i.expires_at, at) })
            .collect(),
        event_lines,
        assignable: Role::ALL.iter().copied().filter(|r| role.may_assign(*r)).collect(),
        invite_email: String::new(),
        invite_role: "developer".into(),
        invite_link: None,
        submission: super::resubmit::token()?,
        errors: FieldErrors::default(),
        emailed: false,
    })
}

pub async fn show(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    render(StatusCode::OK, &page(&state, &user).await?)
}

pub async fn invite(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, AppError> {
    let InviteForm { email, role, submission } = form.into_inner();
    let submission = super::resubmit::accepted(&submission);
    if super::resubmit::made(&user.session, "invite", submission)?.is_some() {
        // Sent again (a reload of the page that showed the link): no second invite.
        return invite_shown_once(user).await;
    }
    let invited = state.account_service().invite(&user.actor, &user.member()?, &email, &role).await;
    let mut view = page(&state, &user).await?;
    match invited {
        Ok(Invited { email, token }) => {
            super::resubmit::remember(&user.session, "invite", submission, &email)?;
            let link = format!("{}/invite/{}", state.config.public_url, token.expose());
            view.invite_link = Some(PlainSecret::new(link));
            view.invite_email = email;
            view.emailed = state.config.smtp_url.is_some();
            render(StatusCode::OK, &view)
        }
        Err(Error::Invalid(errors)) => {
            (view.errors, view.invite_email, view.invite_role) = (errors, email, role);
            Ok(push_url(render(StatusCode::UNPROCESSABLE_ENTITY, &view)?, hx, PAGE))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /settings/team/invites` (a reload after inviting): the link was
/// shown once, in the answer to the invite.
pub async fn invite_shown_once(user: CurrentUser) -> Result<HttpResponse, AppError> {
    user.session.flash("The invite link was shown once; revoke and re-invite if lost.")?;
    Ok(redirect(PAGE))
}

/// `GET` of a member form's POST-only URL: the team page.
pub async fn to_page() -> HttpResponse {
    redirect(PAGE)
}

/// A refusal of the rules on a confirmation: back to the team page, saying why.
fn refused_back(user: &CurrentUser, e: Error) -> Result<HttpResponse, AppError> {
    match e {
        Error::Invalid(errors) => {
            let message = errors.0.values().next().cloned().unwrap_or_else(|| "That change is not possible.".into());
            user.session.flash(&message)?;
            Ok(redirect(PAGE))
        }
        other => Err(other.into()),
    }
}

/// `GET …/members/{user_id}/remove`: what the removal ends, and the choice
/// for their keys.
pub async fn confirm_remove(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let member = user.member()?;
    let target = UserId::from(id_param(path.into_inner())?);
    let preview = match state.account_service().removal_preview(&member, &target).await {
        Ok(p) => p,
        Err(e) => return refused_back(&user, e),
    };
    let (team, _) = user.team()?;
    let is_self = target.as_str() == user.ctx.user.id;
    let who = if is_self { "You".to_owned() } else { preview.email.clone() };
    let mut c = Confirm::new(
        "confirm-remove",
        format!("Remove {} from {}?", preview.email, team.name),
        format!("/settings/team/members/{target}/remove"),
    )
    .says(format!(
        "{who} ({}) lose{} access to {} at once.",
        preview.role.label(),
        if is_self { "" } else { "s" },
        team.name
    ))
    .says(format!(
        "What ends: {}, their OAuth grants in this team, and the invites they sent.",
        match preview.sessions {
            0 => "their sessions (none signed in now)".to_owned(),
            1 => "their 1 signed-in session".to_owned(),
            n => format!("their {n} signed-in sessions"),
        }
    ))
    .button("Remove member")
    .cancel_to(PAGE);
    c = match preview.working_keys {
        0 => c
            .says("They hold no working API keys.")
            .field(Field::Hidden { name: "keys".into(), value: "revoke".into() }),
        n => c
            .says(format!(
                "They hold {n} working API key{}: choose whether they stop working now or pass to you.",
                if n == 1 { "" } else { "s" }
            ))
            .field(Field::Select {
                name: "keys".into(),
                label: format!("Their {n} working API key{}", if n == 1 { "" } else { "s" }),
                options: vec![
                    ("revoke".into(), "Revoke them now".into()),
                    ("transfer".into(), "Pass them to me (narrowed to what my role allows)".into()),
                ],
                selected: "revoke".into(),
            }),
    };
    if is_self {
        c = c.says("You will be signed out.");
    }
    confirm::respond(hx, Layout::new(&user, Nav::Team)?, &c)
}

/// `GET …/invites/{id}/revoke`: which invite stops working.
pub async fn confirm_revoke_invite(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let member = user.member()?;
    let id = InviteId::from(id_param(path.into_inner())?);
    let invite = state.account_service().revocable_invite(&member, &id).await?;
    let c = Confirm::new(
        "confirm-revoke-invite",
        format!("Revoke the invite for {}?", invite.email),
        format!("/settings/team/invites/{id}/revoke"),
    )
    .says(format!("The link sent to {} stops working at once; they can join only with a new invite.", invite.email))
    .button("Revoke invite")
    .cancel_to(PAGE);
    confirm::respond(hx, Layout::new(&user, Nav::Team)?, &c)
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
    (user, hx): (&CurrentUser, HxRequest),
    result: Result<(), Error>,
    message: &str,
) -> Result<HttpResponse, AppError> {
    match result {
        Ok(()) => {
            user.session.flash(message)?;
            Ok(redirect(PAGE))
        }
        Err(Error::Invalid(errors)) => {
            let mut view = page(state, user).await?;
            view.errors = errors;
            Ok(push_url(render(StatusCode::UNPROCESSABLE_ENTITY, &view)?, hx, PAGE))
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn change_role(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let member = user.member()?;
    let new_role = Role::parse(&form.role).ok_or_else(|| AppError::BadRequest("Choose a valid role.".into()))?;
    let target = UserId::from(id_param(path.into_inner())?);
    let result = state.account_service().change_role(&user.actor, &member, &target, new_role).await;
    done(&state, (&user, hx), result, &format!("Role changed to {}.", new_role.label())).await
}

pub async fn remove_member(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
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
    done(&state, (&user, hx), result, "Member removed; their sessions, OAuth grants and invites have ended.").await
}
