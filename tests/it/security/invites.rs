//! Invitation floods: each invitation is an email through the operator's
//! SMTP server, so a team sends at most 20 in any rolling hour (re-invites,
//! revoked and accepted ones count) and the same address is invited again at
//! most once in 10 minutes. A refused invitation is a field error on the form
//! that sends nothing and changes nothing, and a parallel burst cannot pass
//! the count together.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::accounts::DEV_PASSWORD;
use crate::email::delivered;
use crate::email::sink::Sink;
use crate::helpers::{OWNER_EMAIL, TestApp, csrf_from};
use crate::key_privilege::back;
use crate::{both, with_smtp};

const TEAM_FULL: &str = "This team has sent 20 invitations in the last hour: try again later.";
const TOO_SOON: &str =
    "An invitation was sent to this address a few minutes ago: wait 10 minutes before sending another.";

fn invite_rows(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use latchkey::store::schema::invites;
    app.db().run_sync(|c| invites::table.count().get_result(c).map_err(latchkey::store::StoreError::from)).unwrap()
}

fn audit_rows(app: &TestApp) -> usize {
    app.db()
        .run_sync(|c| {
            latchkey::store::models::AuditEvent::recent_by_action(c, "member.invited", 10_000)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
        .len()
}

/// How many emails went to the outside addresses the tests invite.
fn invitations_sent(sink: &Sink) -> usize {
    sink.mails().iter().filter(|m| m.to.iter().any(|t| t.ends_with("@outside.test"))).count()
}

async fn post_invite(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_form("/settings/team", "/settings/team/invites", &[("email", email), ("role", "viewer")]).await
}

/// The invitation is refused with `message` on the re-rendered form, the
/// address kept, and nothing is written or sent.
async fn refused(app: &TestApp, sink: &Sink, email: &str, message: &str) {
    delivered(app).await;
    let (rows, audited, sent) = (invite_rows(app), audit_rows(app), sink.mails().len());
    let res = post_invite(app, email).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{email}");
    let page = res.text().await.unwrap();
    assert!(page.contains(message), "{email}: {page}");
    assert!(page.contains(&format!(r#"value="{email}""#)), "the address is kept: {page}");
    assert!(!page.contains(r#"id="invite-link""#), "no link");
    delivered(app).await;
    assert_eq!((invite_rows(app), audit_rows(app), sink.mails().len()), (rows, audited, sent), "{email}");
}

async fn a_team_sends_at_most_twenty_invitations_an_hour_and_one_per_address_in_ten_minutes(app: TestApp, sink: Sink) {
    // Sessions live by the wall clock: start in the past, come back to now.
    back(&app, 10 * 60 + 3600);
    app.owner_session().await;
    delivered(&app).await;
    sink.clear();

    // Re-inviting one address: once, then not for 10 minutes, whatever its case.
    app.invite("again@outside.test", "viewer").await;
    refused(&app, &sink, "again@outside.test", TOO_SOON).await;
    back(&app, -9 * 60);
    refused(&app, &sink, "Again@Outside.test", TOO_SOON).await;
    back(&app, -60);
    app.invite("again@outside.test", "viewer").await;

    // Revoking an invitation does not give its email back.
    let page = app.get_html("/settings/team").await;
    let id = page[page.find("/settings/team/invites/inv_").unwrap() + "/settings/team/invites/".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let path = format!("/settings/team/invites/{id}/revoke");
    assert_eq!(app.post_form(&path, &path, &[]).await.status(), StatusCode::SEE_OTHER);
    refused(&app, &sink, "again@outside.test", TOO_SOON).await;

    // 18 more outside addresses make 20 in the hour; the 21st is refused.
    let mut links = Vec::new();
    for n in 0..18 {
        links.push(app.invite(&format!("outsider{n}@outside.test"), "viewer").await);
    }
    refused(&app, &sink, "one-more@outside.test", TEAM_FULL).await;
    // Accepting an invitation frees nothing either.
    let invitee = app.other_client();
    assert_eq!(
        invitee.post_form(&links[0], &links[0], &[("password", DEV_PASSWORD)]).await.status(),
        StatusCode::SEE_OTHER
    );
    refused(&app, &sink, "one-more@outside.test", TEAM_FULL).await;
    delivered(&app).await;
    assert_eq!(invitations_sent(&sink), 20);
    assert_eq!(invite_rows(&app), 20);

    // An hour after the last ones, the team may invite again.
    back(&app, -3600);
    app.invite("one-more@outside.test", "viewer").await;
    app.invite("outsider0@outside.test", "viewer").await;
    delivered(&app).await;
    assert_eq!(invitations_sent(&sink), 22);
}
with_smtp!(a_team_sends_at_most_twenty_invitations_an_hour_and_one_per_address_in_ten_minutes);

async fn a_parallel_burst_of_invitations_sends_exactly_the_limit(app: TestApp, sink: Sink) {
    app.owner_session().await;
    delivered(&app).await;
    sink.clear();
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let posts = (0..30).map(|n| {
        let email = format!("burst{n}@outside.test");
        let form = [("email", email.as_str()), ("role", "viewer"), ("csrf_token", csrf.as_str())];
        app.client.post(app.url("/settings/team/invites")).form(&form).send()
    });
    let answers = join_all(posts).await;
    let statuses: Vec<StatusCode> = answers.into_iter().map(|a| a.unwrap().status()).collect();
    let accepted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count();
    assert_eq!((accepted, refused), (20, 10), "{statuses:?}");
    delivered(&app).await;
    assert_eq!(invitations_sent(&sink), 20);
    assert_eq!(invite_rows(&app), 20);
    assert_eq!(audit_rows(&app), 20);
}
with_smtp!(a_parallel_burst_of_invitations_sends_exactly_the_limit);

/// The count and the insert cannot interleave: an invitation made while
/// another one's transaction is still open waits for it, then counts it.
async fn an_invitation_waits_for_one_still_being_made_and_then_counts_it(app: TestApp) {
    use latchkey::domain::{Role, TeamId};
    use latchkey::service::accounts::{INVITES_PER_HOUR, TeamRole, invite};
    use latchkey::service::audit::Actor;
    use latchkey::service::{Error, crypto::Keys};
    use latchkey::store::models::Team;

    app.owner_session().await;
    for n in 1..INVITES_PER_HOUR {
        app.invite(&format!("outsider{n}@outside.test"), "viewer").await;
    }
    let db = app.db();
    let team = db.run_sync(|c| Team::search(c, "Acme", 1).map_err(latchkey::store::StoreError::from)).unwrap();
    let member = TeamRole { team_id: TeamId::from(team[0].id.clone()), role: Role::Owner };
    let owner = db
        .run_sync(|c| {
            latchkey::store::models::User::find_by_email(c, OWNER_EMAIL).map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
        .unwrap();
    let actor = Actor { user_id: Some(owner.id), label: OWNER_EMAIL.into(), ..Actor::default() };
    let keys = Keys::derive(crate::helpers::TEST_SECRET.as_bytes());
    let at = app.clock().now();
    let (held, holding) = std::sync::mpsc::channel();
    let first = {
        let (db, keys, member, actor) = (db.clone(), keys.clone(), member.clone(), actor.clone());
        std::thread::spawn(move || {
            db.run_sync(|c| {
                latchkey::store::transaction(c, |c| {
                    let made = invite(c, &keys, &actor, &member, "last@outside.test", Role::Viewer, at);
                    held.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    made
                })
            })
        })
    };
    holding.recv().unwrap();
    let second = db.run_sync(|c| invite(c, &keys, &actor, &member, "late@outside.test", Role::Viewer, at));
    let first = first.join().unwrap();
    assert!(first.is_ok(), "{:?}", first.map(|_| ()));
    assert!(matches!(second, Err(Error::Invalid(_))), "{second:?}");
    assert_eq!(invite_rows(&app), 20);
}
both!(an_invitation_waits_for_one_still_being_made_and_then_counts_it);

/// A revoked invitation never comes back: not on an instance whose clock is
/// behind the one that revoked it, nor after a clock steps back.
async fn a_revoked_invitation_stays_revoked_whatever_the_clock_reads(app: TestApp) {
    app.owner_session().await;
    let link = app.invite("late@outside.test", "viewer").await;
    let page = app.get_html("/settings/team").await;
    let id = page[page.find("/settings/team/invites/inv_").unwrap() + "/settings/team/invites/".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let path = format!("/settings/team/invites/{id}/revoke");
    assert_eq!(app.post_form(&path, &path, &[]).await.status(), StatusCode::SEE_OTHER);
    for behind in [0, 1, 5, 3600] {
        back(&app, behind);
        let invitee = app.other_client();
        let res = invitee.get(&link).await;
        assert_ne!(res.status(), StatusCode::OK, "{behind} s behind: the revoked link opened");
        // The link's page has no form now: the POST carries a token of the
        // invitee's own session, as a scripted attacker's would.
        let csrf = csrf_from(&invitee.get_html("/login").await);
        let form = [("csrf_token", csrf.as_str()), ("password", DEV_PASSWORD)];
        let res = invitee.client.post(invitee.url(&link)).form(&form).send().await.unwrap();
        assert_ne!(res.status(), StatusCode::SEE_OTHER, "{behind} s behind: the revoked link was accepted");
        assert!(!app.get_html("/settings/team").await.contains(&id), "{behind} s behind: listed as pending");
        back(&app, -behind);
    }
}
both!(a_revoked_invitation_stays_revoked_whatever_the_clock_reads);
