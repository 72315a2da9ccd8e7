//! Team page: invites, roles, removal, and the rules that guard them.

use reqwest::StatusCode;

use crate::both;
use crate::helpers::{OWNER_EMAIL, TestApp, attr_after};

const DEV_EMAIL: &str = "dev@acme.test";
pub const DEV_PASSWORD: &str = "developer password 1";

async fn invite_then_accept_then_sign_in_as_the_invitee(app: TestApp) {
    app.owner_session().await;
    let link = app.invite(DEV_EMAIL, "developer").await;

    let invitee = app.other_client();
    let page = invitee.get_html(&link).await;
    assert!(page.contains("Join Acme") && page.contains(DEV_EMAIL) && page.contains("Developer"));
    let res = invitee.post_form(&link, &link, &[("password", DEV_PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // The link works once.
    let again = app.other_client();
    assert_eq!(again.get(&link).await.status(), StatusCode::FORBIDDEN);

    assert_eq!(invitee.login(DEV_EMAIL, DEV_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let team = invitee.get_html("/settings/team").await;
    assert!(team.contains(DEV_EMAIL) && team.contains(OWNER_EMAIL));
    assert!(!team.contains("Invite a teammate"), "developers see no invite form");

    // The owner's page lists the new member and the audit trail.
    let owner_view = app.get_html("/settings/team").await;
    assert!(owner_view.contains(DEV_EMAIL));
    for action in ["setup.completed", "login.succeeded", "member.invited", "invite.accepted"] {
        assert!(owner_view.contains(action), "audit shows {action}");
    }
}
both!(invite_then_accept_then_sign_in_as_the_invitee);

async fn invite_form_validates_and_keeps_input(app: TestApp) {
    app.owner_session().await;
    let res = app.post_form("/settings/team", "/settings/team/invites", &[("email", "nope"), ("role", "admin")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("Enter a valid email address.") && html.contains(r#"value="nope""#));
    // An existing account gets the same answer as a new email (the invite cannot be accepted).
    let res =
        app.post_form("/settings/team", "/settings/team/invites", &[("email", OWNER_EMAIL), ("role", "admin")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.text().await.unwrap().contains("already has an account"));
    let res = app
        .post_form("/settings/team", "/settings/team/invites", &[("email", "x@acme.test"), ("role", "emperor")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A weak password on the invite page is refused with the field error.
    let link = app.invite(DEV_EMAIL, "viewer").await;
    let invitee = app.other_client();
    let res = invitee.post_form(&link, &link, &[("password", DEV_EMAIL)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Still usable after the failed attempt.
    assert_eq!(invitee.post_form(&link, &link, &[("password", DEV_PASSWORD)]).await.status(), StatusCode::SEE_OTHER);
}
both!(invite_form_validates_and_keeps_input);

/// Owner invites a developer who accepts and signs in; returns the developer's client.
async fn developer(app: &TestApp) -> TestApp {
    let link = app.invite(DEV_EMAIL, "developer").await;
    let dev = app.other_client();
    dev.post_form(&link, &link, &[("password", DEV_PASSWORD)]).await;
    assert_eq!(dev.login(DEV_EMAIL, DEV_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    dev
}

pub fn member_id(html: &str, email: &str) -> String {
    let row = &html[html.find(&format!(r#"data-email="{email}""#)).unwrap()..];
    attr_after(row, r#"data-user-id=""#).expect("the member's row names their id")
}

async fn a_developer_cannot_invite_or_change_roles(app: TestApp) {
    app.owner_session().await;
    let dev = developer(&app).await;
    let res = dev
        .post_form("/settings/team", "/settings/team/invites", &[("email", "pal@acme.test"), ("role", "viewer")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let owner_page = app.get_html("/settings/team").await;
    assert!(!owner_page.contains("pal@acme.test"));
    let owner_id = member_id(&owner_page, OWNER_EMAIL);
    let res = dev
        .post_form("/settings/team", &format!("/settings/team/members/{owner_id}/role"), &[("role", "viewer")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(app.get_html("/settings/team").await.contains("role-owner"));
}
both!(a_developer_cannot_invite_or_change_roles);

async fn the_last_owner_cannot_be_demoted_or_removed(app: TestApp) {
    app.owner_session().await;
    let page = app.get_html("/settings/team").await;
    let me = member_id(&page, OWNER_EMAIL);
    let res = app.post_form("/settings/team", &format!("/settings/team/members/{me}/role"), &[("role", "admin")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("A team needs at least one owner"));
    let res = app.post_form("/settings/team", &format!("/settings/team/members/{me}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.get_html("/settings/team").await.contains("role-owner"));
}
both!(the_last_owner_cannot_be_demoted_or_removed);

async fn role_changes_apply_and_removal_ends_the_members_sessions(app: TestApp) {
    app.owner_session().await;
    let dev = developer(&app).await;
    let page = app.get_html("/settings/team").await;
    let dev_id = member_id(&page, DEV_EMAIL);

    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{dev_id}/role"), &[("role", "admin")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let dev_page = dev.get_html("/settings/team").await;
    assert!(dev_page.contains("Invite a teammate"), "now an admin");
    // An admin cannot make anyone owner.
    let res =
        dev.post_form("/settings/team", &format!("/settings/team/members/{dev_id}/role"), &[("role", "owner")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let res = app.post_form("/settings/team", &format!("/settings/team/members/{dev_id}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let after = dev.get("/settings/team").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the removed member is signed out");
    let activity = app.get_html("/settings/team").await;
    assert!(activity.contains("member.role_changed") && activity.contains("member.removed"));
    assert!(!activity.contains(&format!(r#"data-email="{DEV_EMAIL}""#)));
}
both!(role_changes_apply_and_removal_ends_the_members_sessions);

/// A teammate with `role` who accepted an invite and signed in.
pub async fn member(app: &TestApp, email: &str, role: &str) -> TestApp {
    let link = app.invite(email, role).await;
    let client = app.other_client();
    client.post_form(&link, &link, &[("password", DEV_PASSWORD)]).await;
    assert_eq!(client.login(email, DEV_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    client
}
