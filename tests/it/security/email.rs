//! Attacks on email: unsubscribe links forged, borrowed or followed by a
//! scanner; typed text trying to add headers or recipients; a key name
//! smuggling RFC 2047 encoded-words into a subject; a reminder reaching
//! another team.

use reqwest::StatusCode;
use serde_json::json;

use crate::email::sink::Sink;
use crate::email::{delivered, only_mail_to, unsubscribe_url};
use crate::helpers::{OWNER_EMAIL, TestApp};
use crate::key_privilege::expiring;
use crate::with_smtp;

const DAY: i64 = 86_400;

/// Whether `member`'s security page shows expiry reminders on.
async fn reminders_on(member: &TestApp) -> bool {
    member.get_html("/settings/security").await.contains(r#"id="email-1" checked"#)
}

fn anonymous_post(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
}

async fn only_a_post_with_the_true_token_unsubscribes_and_only_its_own_user(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    delivered(&app).await;
    sink.clear();
    expiring(&dev, "weekly", 6 * DAY).await;
    app.run_reminders().await;
    delivered(&app).await;
    let dev_url = unsubscribe_url(&only_mail_to(&sink, "dev@acme.test"));
    let owner_url = unsubscribe_url(&only_mail_to(&sink, OWNER_EMAIL));

    // A mail scanner follows the link: it only asks.
    for _ in 0..3 {
        let res = reqwest::get(&dev_url).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let page = res.text().await.unwrap();
        assert!(page.contains("dev@acme.test") && page.contains(r#"id="unsubscribe""#), "{page}");
    }
    assert!(reminders_on(&dev).await, "a GET changes nothing");

    // Forged and borrowed tokens: refused alike, nothing changed.
    let token = dev_url.split_once("token=").unwrap().1.to_owned();
    let (named, mac) = token.split_once('.').unwrap();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let owner_id = {
        let owner_token = owner_url.split_once("token=").unwrap().1;
        let named = owner_token.split_once('.').unwrap().0;
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(named).unwrap();
        String::from_utf8(decoded).unwrap().split_once(':').unwrap().0.to_owned()
    };
    let mut flipped = mac.to_owned();
    flipped.replace_range(0..1, if mac.starts_with('0') { "1" } else { "0" });
    let forged = [
        format!("{}.{mac}", b64(&format!("{owner_id}:api_key.expiring"))),
        format!("{named}.{flipped}"),
        format!("{}.{mac}", b64(&format!("{owner_id}:security.new_device"))),
        format!("{named}.{}", "0".repeat(64)),
        named.to_owned(),
        String::new(),
        "a".repeat(5000),
        format!("{token}%0d%0aSet-Cookie:%20x=1"),
    ];
    let base = dev_url.split_once("token=").unwrap().0.to_owned();
    for t in &forged {
        let url = format!("{base}token={t}");
        assert_eq!(anonymous_post(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{t}");
        assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::NOT_FOUND, "{t}");
    }
    assert!(reminders_on(&dev).await && reminders_on(&app).await, "no forged token turned anything off");

    // The true token, twice (a retry changes nothing more), turns off its own user only.
    for _ in 0..2 {
        assert_eq!(anonymous_post(&dev_url).send().await.unwrap().status(), StatusCode::OK);
    }
    assert!(!reminders_on(&dev).await && reminders_on(&app).await);

    // Security email cannot be turned off from the page either.
    let res = dev.post_form("/settings/security", "/settings/security/email", &[("kind", "security.new_device")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = dev.get_html("/settings/security").await;
    assert!(page.contains("This email cannot be turned off."), "{page}");
}
with_smtp!(only_a_post_with_the_true_token_unsubscribes_and_only_its_own_user);

async fn typed_text_cannot_add_headers_or_recipients(app: TestApp, sink: Sink) {
    app.owner_session().await;
    for evil in ["x@acme.test\r\nBcc: evil@evil.test", "x@acme.test\nTo: evil@evil.test", "x@acme.test, evil@evil.test"]
    {
        let res =
            app.post_form("/settings/team", "/settings/team/invites", &[("email", evil), ("role", "viewer")]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{evil:?}");
    }
    let res = crate::api_keys::api_post(
        &app,
        "/api/v1/api-keys",
        &json!({"name": "k\r\nBcc: evil@evil.test", "scopes": ["templates:read"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // What got past validation (or came from elsewhere) still cannot: a
    // notice whose every field holds a header.
    use latchkey::service::notify::{KeyRef, Notice, NoticeKind, Recipient};
    let evil = "Acme\r\nBcc: evil@evil.test\r\nX-Injected: 1\r\n\r\nbody";
    let key = KeyRef { id: "key_x\r\nX-Injected: 1".into(), name: evil.into(), prefix: "lk_abcd1234".into() };
    let to = Recipient::user("usr_x", OWNER_EMAIL);
    for kind in NoticeKind::ALL {
        let details = json!({
            "team_name": evil, "role": evil, "invited_by": evil, "reason": evil, "ip": evil,
            "user_agent": evil, "endpoint": evil, "at": 0, "days": 7,
        });
        let mut notice = Notice::new(kind, vec![to.clone()], evil.into()).key(key.clone()).details(details);
        notice.invite_token = Some(latchkey::domain::PlainSecret::new("t0k3n".into()));
        app.state().notifier.send(&notice);
    }
    delivered(&app).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), NoticeKind::ALL.len());
    for mail in &mails {
        assert_eq!(mail.to, [OWNER_EMAIL], "no recipient added");
        let names = mail.header_names();
        assert!(
            !names.iter().any(|n| n.eq_ignore_ascii_case("bcc") || n.eq_ignore_ascii_case("x-injected")),
            "{names:?}"
        );
        assert_eq!(names.iter().filter(|n| n.eq_ignore_ascii_case("to")).count(), 1);
    }
    assert!(sink.to("evil@evil.test").is_empty());
}
with_smtp!(typed_text_cannot_add_headers_or_recipients);

async fn a_reminder_never_reaches_another_teams_owner(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let hash = latchkey::service::password::hash(&mut Default::default(), "globex password 123").unwrap();
    app.db()
        .run_sync(|c| latchkey::service::accounts::create_user(c, "owner@globex.test", hash, false, Some("Globex")))
        .unwrap();
    let globex = app.other_client();
    assert_eq!(globex.login("owner@globex.test", "globex password 123").await.status(), StatusCode::SEE_OTHER);
    let acme = expiring(&app, "acme key", 6 * DAY).await;
    let theirs = expiring(&globex, "globex key", 6 * DAY).await;
    assert_eq!(app.run_reminders().await, 2);
    delivered(&app).await;
    let to_acme = only_mail_to(&sink, OWNER_EMAIL);
    let to_globex = only_mail_to(&sink, "owner@globex.test");
    assert!(to_acme.text().contains("acme key") && !to_acme.readable().contains("globex key"));
    assert!(to_globex.text().contains("globex key") && !to_globex.readable().contains("acme key"));
    crate::email::no_secret_in(&sink, &[acme["key"].as_str().unwrap(), theirs["key"].as_str().unwrap()]);
}
with_smtp!(a_reminder_never_reaches_another_teams_owner);

/// Key names that are RFC 2047 encoded-words: a right-to-left override the
/// portal refuses when typed directly, in Q and in B.
const ENCODED_NAMES: [&str; 3] =
    ["=?utf-8?q?=E2=80=AEcod.exe?=", "=?UTF-8?B?4oCuY29kLmV4ZQ==?=", "exe.doc =?utf-8?q?=E2=80=AE?= x"];

/// The Subject of `mail` shows exactly `expected`, and the raw header does
/// not carry the typed encoded-word for a client to decode.
fn subject_is_literal(mail: &crate::email::sink::Mail, typed: &str, expected: &str) {
    let raw = mail.header("Subject").unwrap();
    assert!(!raw.contains(typed), "the typed encoded-word is sent unencoded: {raw}");
    let shown = mail.subject();
    assert!(!shown.contains('\u{202e}'), "{shown:?}");
    assert_eq!(shown, expected, "{raw}");
}

async fn a_key_name_cannot_smuggle_encoded_words_into_a_subject(app: TestApp, sink: Sink) {
    app.owner_session().await;
    let refused = json!({"name": "\u{202e}cod.exe", "scopes": ["templates:read"], "expires_in_days": 7});
    let res = crate::api_keys::api_post(&app, "/api/v1/api-keys", &refused).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "typed directly, the override is refused");

    // The expiry reminder.
    let mut keys = Vec::new();
    for name in ENCODED_NAMES {
        let body = json!({"name": name, "scopes": ["templates:read"], "expires_in_days": 7});
        keys.push(crate::api_keys::create_key(&app, body).await);
    }
    assert_eq!(app.run_reminders().await, ENCODED_NAMES.len());
    delivered(&app).await;
    let mails = sink.to(OWNER_EMAIL);
    assert_eq!(mails.len(), ENCODED_NAMES.len());
    for name in ENCODED_NAMES {
        let mail = mails.iter().find(|m| m.subject().contains(name)).unwrap_or_else(|| panic!("{name}: {mails:#?}"));
        subject_is_literal(mail, name, &format!("API key {name} expires in 7 days"));
    }

    // Reported leaked, and revoked by support.
    sink.clear();
    let scanner = crate::helpers::service_key(&app, &["leaks:report"]);
    let body = json!({"keys": [keys[0]["key"]], "url": "https://github.com/acme/app/blob/main/.env"});
    let res = app.other_client().client.post(app.url("/api/v1/leaked-keys")).bearer_auth(&scanner).json(&body);
    assert_eq!(res.send().await.unwrap().status(), StatusCode::OK);
    let staff = crate::support::support_user(&app).await;
    let key = crate::key_privilege::id(&keys[1]);
    let path = format!("/support/keys/{key}/revoke");
    let res = staff.post_form(&format!("/support/keys/{key}"), &path, &[("reason", "=?utf-8?q?=E2=80=AE?=")]).await;
    assert!(res.status().is_redirection() || res.status().is_success(), "{}", res.status());
    delivered(&app).await;
    let mails = sink.to(OWNER_EMAIL);
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let leak = &ENCODED_NAMES[0];
    let leaked = mails.iter().find(|m| m.subject().contains("leaked")).unwrap();
    subject_is_literal(leaked, leak, &format!("API key {leak} was reported leaked and revoked"));
    let revoked = mails.iter().find(|m| m.subject().contains("support")).unwrap();
    let name = &ENCODED_NAMES[1];
    subject_is_literal(revoked, name, &format!("Your API key {name} was revoked by support"));
}
with_smtp!(a_key_name_cannot_smuggle_encoded_words_into_a_subject);
