//! Email end to end, through an SMTP sink the test starts: each kind arrives
//! with the right recipients only, as text and HTML, with no secret in it;
//! reminders can be turned off in one click and on again; SMTP being down
//! fails no request.

pub mod sink;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::accounts::{DEV_PASSWORD, member};
use crate::api_keys::create_key;
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, spawn_app_with};
use crate::key_privilege::{expiring, id};
use sink::{Mail, Sink};

pub const FROM: &str = "Latchkey <no-reply@portal.test>";
const DAY: i64 = 86_400;

/// Runs `async fn name(app: TestApp, sink: Sink)` on SQLite and PostgreSQL,
/// each with a fresh SMTP sink as the server's `LATCHKEY_SMTP_URL`.
#[macro_export]
macro_rules! with_smtp {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                if let Some((app, sink)) = $crate::email::spawn_with_sink($crate::helpers::Backend::Sqlite).await {
                    super::$name(app, sink).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some((app, sink)) = $crate::email::spawn_with_sink($crate::helpers::Backend::Postgres).await {
                    super::$name(app, sink).await;
                }
            }
        }
    };
}

pub async fn spawn_with_sink(backend: Backend) -> Option<(TestApp, Sink)> {
    let sink = Sink::start().await;
    let app = spawn_app_with(backend, &[("LATCHKEY_SMTP_URL", &sink.url()), ("LATCHKEY_SMTP_FROM", FROM)]).await?;
    Some((app, sink))
}

/// Waits until every email handed to the sender went out (or failed for good).
pub async fn delivered(app: &TestApp) {
    assert_eq!(app.state().notifier.drain(Duration::from_secs(60)).await, 0, "email still queued");
}

/// The one message `email` got; every message is for exactly one recipient.
pub fn only_mail_to(sink: &Sink, email: &str) -> Mail {
    let mails = sink.to(email);
    assert_eq!(mails.len(), 1, "{email}: {mails:#?}");
    assert_eq!(mails[0].to, [email], "one recipient per message");
    mails[0].clone()
}

/// A message is a proper one: from us, text and HTML, nothing remote.
pub fn well_formed(mail: &Mail) {
    assert_eq!(mail.header("From").as_deref(), Some(FROM));
    assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"), "{}", mail.data);
    let (text, html) = (mail.text(), mail.html());
    assert!(!text.is_empty() && html.contains("<html"));
    for remote in ["<img", "src=", "bit.ly", "utm_", "tracking"] {
        assert!(!html.contains(remote), "{remote}: {html}");
    }
}

/// No message holds any of `secrets`, however encoded.
pub fn no_secret_in(sink: &Sink, secrets: &[&str]) {
    for mail in sink.mails() {
        let readable = mail.readable();
        for s in secrets.iter().filter(|s| s.len() >= 6) {
            assert!(!readable.contains(s) && !mail.data.contains(s), "a secret in an email to {:?}", mail.to);
        }
    }
}

/// Every link of a message points under the server's public URL.
fn links_are_ours(app: &TestApp, mail: &Mail) {
    let text = mail.text();
    for word in text.split_whitespace().filter(|w| w.starts_with("http")) {
        assert!(word.starts_with(&app.address), "{word}");
    }
}

async fn an_invitation_reaches_the_invitee_alone_and_the_link_is_still_shown(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let res = app
        .post_form("/settings/team", "/settings/team/invites", &[("email", "new@acme.test"), ("role", "developer")])
        .await;
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"id="invite-emailed""#), "the inviter is told it was emailed");
    let path = crate::helpers::attr_after(&page, r#"<code id="invite-link">"#).expect("the link is still shown");
    let path = path[path.find("/invite/").unwrap()..].to_owned();
    delivered(&app).await;
    let mail = only_mail_to(&sink, "new@acme.test");
    well_formed(&mail);
    links_are_ours(&app, &mail);
    assert_eq!(mail.header("Subject").as_deref(), Some("You are invited to join Acme on Latchkey"));
    let link = format!("{}{path}", app.address);
    assert!(mail.text().contains(&link) && mail.html().contains(&link), "{}", mail.text());
    assert_eq!(mail.readable().matches("/invite/").count(), mail.readable().matches(&link).count(), "only its link");
    assert!(mail.text().contains(OWNER_EMAIL) && mail.text().contains("developer"));
    assert_eq!(sink.mails().len(), 1, "nobody else was told (the owner's first sign-in is not announced)");
    let other = app.invite("second@acme.test", "viewer").await;
    delivered(&app).await;
    assert!(!only_mail_to(&sink, "second@acme.test").readable().contains(&path), "not another invite's link");
    assert_ne!(other, path);
}
with_smtp!(an_invitation_reaches_the_invitee_alone_and_the_link_is_still_shown);

async fn expiry_reminders_reach_the_creator_and_managers_and_unsubscribe_in_one_click(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    member(&app, "viewer@acme.test", "viewer").await;
    delivered(&app).await;
    sink.clear();
    let weekly = expiring(&dev, "weekly", 6 * DAY).await;
    assert_eq!(app.run_reminders().await, 1);
    delivered(&app).await;
    let to_dev = only_mail_to(&sink, "dev@acme.test");
    let to_owner = only_mail_to(&sink, OWNER_EMAIL);
    assert!(sink.to("viewer@acme.test").is_empty(), "a viewer who did not create it is not told");
    for mail in [&to_dev, &to_owner] {
        well_formed(mail);
        links_are_ours(&app, mail);
        assert_eq!(mail.header("Subject").as_deref(), Some("API key weekly expires in 6 days"));
        assert!(mail.text().contains(weekly["prefix"].as_str().unwrap()));
        assert!(mail.text().contains(&format!("/settings/developer/api-keys/{}", id(&weekly))));
        assert_eq!(mail.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    }
    no_secret_in(&sink, &[weekly["key"].as_str().unwrap()]);

    // One click, as a mail client does it: no cookie, no CSRF token.
    let url = unsubscribe_url(&to_dev);
    assert_ne!(url, unsubscribe_url(&to_owner), "each person's own link");
    let res = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(dev.get_html("/settings/security").await.contains(r#"id="email-1" >"#), "shown off");

    let later = expiring(&dev, "later", 5 * DAY).await;
    assert_eq!(app.run_reminders().await, 1);
    delivered(&app).await;
    assert_eq!(sink.to("dev@acme.test").len(), 1, "no reminder after unsubscribing");
    assert_eq!(sink.to(OWNER_EMAIL).len(), 2, "the owner still gets them");
    let res = dev.change_password(DEV_PASSWORD, "a brand new password").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    delivered(&app).await;
    let last = sink.to("dev@acme.test").pop().unwrap();
    assert_eq!(
        last.header("Subject").as_deref(),
        Some("Your Latchkey password was changed"),
        "security email still sent"
    );
    assert!(last.header("List-Unsubscribe").is_none());

    // On again, from the security page.
    let res = dev
        .post_form("/settings/security", "/settings/security/email", &[("kind", "api_key.expiring"), ("on", "on")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(dev.get_html("/settings/security").await.contains(r#"id="email-1" checked"#));
    expiring(&dev, "again", 4 * DAY).await;
    assert_eq!(app.run_reminders().await, 1);
    delivered(&app).await;
    assert_eq!(sink.to("dev@acme.test").len(), 3, "reminded again");
    no_secret_in(&sink, &[later["key"].as_str().unwrap(), "a brand new password", DEV_PASSWORD]);
}
with_smtp!(expiry_reminders_reach_the_creator_and_managers_and_unsubscribe_in_one_click);

pub fn unsubscribe_url(mail: &Mail) -> String {
    let header = mail.header("List-Unsubscribe").expect("a List-Unsubscribe header");
    header.trim_start_matches('<').trim_end_matches('>').to_owned()
}

async fn support_revocations_and_leaks_tell_the_creator_and_leaks_the_owners(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    member(&app, "admin@acme.test", "admin").await;
    delivered(&app).await;
    sink.clear();
    let first = create_key(&dev, json!({"name": "Billing", "scopes": ["templates:read"]})).await;
    let staff = crate::support::support_user(&app).await;
    let path = format!("/support/keys/{}/revoke", id(&first));
    let res =
        staff.post_form(&format!("/support/keys/{}", id(&first)), &path, &[("reason", "Seen in a public gist")]).await;
    assert!(res.status().is_redirection() || res.status().is_success(), "{}", res.status());
    delivered(&app).await;
    let mail = only_mail_to(&sink, "dev@acme.test");
    well_formed(&mail);
    assert_eq!(mail.header("Subject").as_deref(), Some("Your API key Billing was revoked by support"));
    assert!(mail.text().contains("Seen in a public gist") && mail.text().contains(first["prefix"].as_str().unwrap()));
    assert!(sink.to(OWNER_EMAIL).is_empty() && sink.to("admin@acme.test").is_empty());

    let second = create_key(&dev, json!({"name": "Deploy", "scopes": ["templates:read"]})).await;
    let scanner = crate::helpers::service_key(&app, &["leaks:report"]);
    let body = json!({"keys": [second["key"]], "url": "https://github.com/acme/app/blob/main/.env"});
    let res = app.other_client().client.post(app.url("/api/v1/leaked-keys")).bearer_auth(&scanner).json(&body);
    assert_eq!(res.send().await.unwrap().status(), StatusCode::OK);
    delivered(&app).await;
    let to_dev = sink.to("dev@acme.test");
    assert_eq!(to_dev.len(), 2);
    let to_owner = only_mail_to(&sink, OWNER_EMAIL);
    for mail in [&to_dev[1], &to_owner] {
        well_formed(mail);
        links_are_ours(&app, mail);
        assert_eq!(mail.header("Subject").as_deref(), Some("API key Deploy was reported leaked and revoked"));
    }
    assert!(sink.to("admin@acme.test").is_empty(), "admins are not told of leaks");
    assert_eq!(sink.mails().len(), 3);
    no_secret_in(&sink, &[first["key"].as_str().unwrap(), second["key"].as_str().unwrap(), &scanner]);
}
with_smtp!(support_revocations_and_leaks_tell_the_creator_and_leaks_the_owners);

async fn a_sign_in_from_a_new_device_is_announced_but_not_the_first_nor_a_known_one(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let res = app.post_form("/settings/team", "/logout", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    delivered(&app).await;
    assert!(sink.mails().is_empty(), "the first sign-in and the same browser again are not announced");

    let leaked = latchkey::service::keys::codec::generate("lk").unwrap();
    let mut laptop = app.other_client();
    laptop.client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0 {leaked}"))
        .build()
        .unwrap();
    let res = laptop.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> =
        res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let device = cookies.iter().find(|c| c.starts_with("latchkey_device=")).expect("a device cookie");
    assert!(device.contains("HttpOnly") && device.contains("Max-Age="), "{device}");
    delivered(&app).await;
    let mail = only_mail_to(&sink, OWNER_EMAIL);
    well_formed(&mail);
    links_are_ours(&app, &mail);
    assert_eq!(mail.header("Subject").as_deref(), Some("New sign-in to your Latchkey account"));
    let text = mail.text();
    assert!(
        text.contains("IP address: 127.0.0.1") && text.contains("Firefox/140.0") && text.contains(" UTC"),
        "{text}"
    );
    let session = cookies.iter().find(|c| c.starts_with("latchkey_session=")).unwrap();
    let session = session.split(';').next().unwrap().trim_start_matches("latchkey_session=");
    let device = device.split(';').next().unwrap().trim_start_matches("latchkey_device=");
    no_secret_in(&sink, &[&leaked, session, device, OWNER_PASSWORD]);

    laptop.post_form("/settings/team", "/logout", &[]).await;
    assert_eq!(laptop.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    delivered(&app).await;
    assert_eq!(sink.mails().len(), 1, "a known device is not announced again");
}
with_smtp!(a_sign_in_from_a_new_device_is_announced_but_not_the_first_nor_a_known_one);

async fn turning_2fa_off_and_changing_the_password_are_emailed_without_secrets(app: TestApp, sink: Sink) {
    use crate::totp::{code_at_step, current_step, enrol_at};
    app.owner_session().await;
    let (totp_secret, page) = enrol_at(&app, OWNER_PASSWORD, -1).await;
    let list = &page[page.find(r#"id="recovery-codes""#).unwrap()..];
    let list = &list[..list.find("</ul>").unwrap()];
    let codes: Vec<String> =
        list.split("<code>").skip(1).filter_map(|c| c.split("</code>").next()).map(str::to_owned).collect();
    assert_eq!(codes.len(), 10);
    let code = code_at_step(&totp_secret, current_step() + 1);
    let res = app.disable_totp(OWNER_PASSWORD, &code).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let new_password = "an entirely new password";
    let res = app.change_password(OWNER_PASSWORD, new_password).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    delivered(&app).await;
    let mails = sink.to(OWNER_EMAIL);
    let subjects: Vec<String> = mails.iter().map(|m| m.header("Subject").unwrap()).collect();
    assert_eq!(subjects, ["Two-factor authentication was turned off", "Your Latchkey password was changed"]);
    for mail in &mails {
        well_formed(mail);
        links_are_ours(&app, mail);
        assert!(mail.header("List-Unsubscribe").is_none(), "security email cannot be turned off");
        assert!(mail.text().contains("IP address: 127.0.0.1"));
    }
    assert_eq!(sink.mails().len(), 2);
    let mut secrets = vec![totp_secret.as_str(), OWNER_PASSWORD, new_password, code.as_str()];
    secrets.extend(codes.iter().map(String::as_str));
    no_secret_in(&sink, &secrets);
}
with_smtp!(turning_2fa_off_and_changing_the_password_are_emailed_without_secrets);

async fn the_operators_reset_of_2fa_is_emailed(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("DATABASE_URL", &app.database_url)
        .env("LATCHKEY_DATA_DIR", &app.data_dir)
        .env("LATCHKEY_SECRET", crate::helpers::TEST_SECRET)
        .env("LATCHKEY_PUBLIC_URL", &app.address)
        .env("LATCHKEY_SMTP_URL", sink.url())
        .env("LATCHKEY_SMTP_FROM", FROM)
        .args(["user", "reset-totp", "--email", OWNER_EMAIL])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mail = only_mail_to(&sink, OWNER_EMAIL);
    well_formed(&mail);
    links_are_ours(&app, &mail);
    assert_eq!(mail.header("Subject").as_deref(), Some("Two-factor authentication was turned off"));
    assert!(mail.text().contains("The operator of this Latchkey"));
}
with_smtp!(the_operators_reset_of_2fa_is_emailed);

async fn with_smtp_down_every_request_still_succeeds_and_the_failure_is_counted(backend: Backend) {
    let closed = crate::helpers::free_port();
    let url = format!("smtp://127.0.0.1:{closed}");
    let Some(app) = spawn_app_with(backend, &[("LATCHKEY_SMTP_URL", &url)]).await else { return };
    app.owner_session().await;
    let path = app.invite("new@acme.test", "developer").await;
    assert!(path.starts_with("/invite/"), "the inviter still gets the link");
    assert!(app.get_html("/settings/team").await.contains("new@acme.test"), "the invite stands");
    delivered(&app).await;
    assert_eq!(app.state().notifier.failed(), 1, "tried, then given up and logged");
    let invitee = app.other_client();
    assert_eq!(invitee.post_form(&path, &path, &[("password", DEV_PASSWORD)]).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn with_smtp_down_every_request_still_succeeds_and_the_failure_is_counted_sqlite() {
    with_smtp_down_every_request_still_succeeds_and_the_failure_is_counted(Backend::Sqlite).await;
}

#[tokio::test]
async fn with_smtp_down_every_request_still_succeeds_and_the_failure_is_counted_postgres() {
    with_smtp_down_every_request_still_succeeds_and_the_failure_is_counted(Backend::Postgres).await;
}

#[tokio::test]
async fn a_message_refused_for_a_while_is_sent_on_a_later_try() {
    let sink = Sink::refusing_first(2).await;
    let Some(app) = spawn_app_with(Backend::Sqlite, &[("LATCHKEY_SMTP_URL", &sink.url())]).await else { return };
    app.owner_session().await;
    app.invite("new@acme.test", "developer").await;
    delivered(&app).await;
    assert_eq!(sink.to("new@acme.test").len(), 1, "sent on the third try");
    assert_eq!(app.state().notifier.failed(), 0);
}
