//! Sessions: an ended session never comes back (not through a request that
//! was in flight when it ended), one lifetime rule for pages and the API,
//! anonymous pages write nothing, no redirect loop under a 2FA policy, TOTP
//! secrets bound to their user, enrolment behind the password, an audit log
//! that cannot be truncated, and a command line that exits cleanly.

use std::time::Duration;

use diesel::prelude::*;
use latchkey::store::StoreError;
use latchkey::store::schema::{audit_events, sessions, users};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accounts::DEV_PASSWORD;
use crate::both;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp, attr_after, csrf_from, location};
use crate::totp::{away_from_boundary, code_at_step, current_step, enrol_at, start_enrolment};

const SESSION: &str = "latchkey_session";

/// Signs `email` in on a fresh client; returns it and its session cookie value.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> (TestApp, String) {
    let client = app.other_client();
    let res = client.login(email, password).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.cookies().find(|c| c.name() == SESSION).unwrap().value().to_owned();
    (client, cookie)
}

/// Whether a bare session cookie value opens a signed-in page.
async fn authenticates(app: &TestApp, cookie: &str) -> bool {
    let res = crate::helpers::new_client()
        .get(app.url("/settings/security"))
        .header("Cookie", format!("{SESSION}={cookie}"))
        .send()
        .await
        .unwrap();
    match res.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert!(location(&res).starts_with("/login"), "{}", location(&res));
            false
        }
        other => panic!("unexpected {other}"),
    }
}

/// A POST whose body arrives slowly: the server has loaded the session long
/// before the handler runs.
struct InFlight {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl InFlight {
    async fn start(app: &TestApp, cookie: &str, path: &str, body: &str) -> InFlight {
        Self::start_with(app, cookie, path, "Content-Type: application/x-www-form-urlencoded", body).await
    }

    /// `headers`: extra header lines (without the final CRLF).
    async fn start_with(app: &TestApp, cookie: &str, path: &str, headers: &str, body: &str) -> InFlight {
        let host = app.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {SESSION}={cookie}\r\n{headers}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (first, rest) = body.as_bytes().split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first).await.unwrap();
        stream.flush().await.unwrap();
        // Let the server read the headers and load the session.
        tokio::time::sleep(Duration::from_millis(600)).await;
        InFlight { stream, rest: rest.to_vec() }
    }

    /// Sends the rest of the body; returns the status and any new session cookie.
    async fn finish(mut self) -> (u16, Option<String>) {
        self.stream.write_all(&self.rest).await.unwrap();
        let mut raw = Vec::new();
        self.stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        let head = &text[..text.find("\r\n\r\n").unwrap_or(text.len())];
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let cookie = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .filter_map(|v| v.strip_prefix(&format!("{SESSION}=")).map(|v| v.split(';').next().unwrap().to_owned()))
            .find(|v| !v.is_empty());
        (status, cookie)
    }
}

fn user_id(app: &TestApp, email: &str) -> String {
    let email = email.to_owned();
    app.db().run_sync(|c| latchkey::service::accounts::user_by_email(c, &email)).unwrap().unwrap().id
}

/// A developer of the owner's team, signed in on its own client.
async fn developer(app: &TestApp, email: &str) -> (TestApp, String) {
    let link = app.invite(email, "developer").await;
    let res = app.other_client().post_form(&link, &link, &[("password", DEV_PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    sign_in(app, email, DEV_PASSWORD).await
}

#[derive(Debug, Clone, Copy)]
enum Ender {
    LogoutWithTheSameCookie,
    PasswordChangeElsewhere,
    SignOutOthersElsewhere,
    RemovalByTheOwner,
    OperatorTotpReset,
}

async fn end_session(app: &TestApp, how: Ender, email: &str, cookie: &str) {
    match how {
        Ender::LogoutWithTheSameCookie => {
            let client = crate::helpers::new_client();
            let page = client
                .get(app.url("/settings/security"))
                .header("Cookie", format!("{SESSION}={cookie}"))
                .send()
                .await
                .unwrap();
            let csrf = csrf_from(&page.text().await.unwrap());
            let res = client
                .post(app.url("/logout"))
                .header("Cookie", format!("{SESSION}={cookie}"))
                .form(&[("csrf_token", csrf)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        }
        Ender::PasswordChangeElsewhere => {
            let (other, _) = sign_in(app, email, DEV_PASSWORD).await;
            let res = other.change_password(DEV_PASSWORD, "a brand new password 42").await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        }
        Ender::SignOutOthersElsewhere => {
            let (other, _) = sign_in(app, email, DEV_PASSWORD).await;
            let res = other.post_form("/settings/security", "/settings/security/sessions/revoke-others", &[]).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        }
        Ender::RemovalByTheOwner => {
            let path = format!("/settings/team/members/{}/remove", user_id(app, email));
            let res = app.post_form("/settings/team", &path, &[]).await;
            assert!(res.status().is_redirection() || res.status().is_success(), "{}", res.status());
        }
        Ender::OperatorTotpReset => {
            let email = email.to_owned();
            app.db().run_sync(|c| latchkey::service::totp::operator_reset(c, &email)).unwrap();
        }
    }
}

async fn an_ended_session_never_comes_back_through_a_request_in_flight(app: TestApp) {
    app.owner_session().await;
    let enders = [
        Ender::LogoutWithTheSameCookie,
        Ender::PasswordChangeElsewhere,
        Ender::SignOutOthersElsewhere,
        Ender::RemovalByTheOwner,
        Ender::OperatorTotpReset,
    ];
    for (i, how) in enders.into_iter().enumerate() {
        let email = format!("victim{i}@acme.test");
        let (victim, cookie) = developer(&app, &email).await;
        assert!(authenticates(&app, &cookie).await, "{how:?}: signed in");
        // The in-flight request writes the session (it renders a page with a message).
        let csrf = csrf_from(&victim.get_html("/settings/security").await);
        let body = format!("password=not-the-password&csrf_token={csrf}");
        let flight = InFlight::start(&app, &cookie, "/settings/security/recovery-codes", &body).await;
        end_session(&app, how, &email, &cookie).await;
        let (status, new_cookie) = flight.finish().await;
        assert!(status < 500, "{how:?}: {status}");
        assert!(!authenticates(&app, &cookie).await, "{how:?}: the old cookie is dead");
        if let Some(new_cookie) = new_cookie {
            assert!(!authenticates(&app, &new_cookie).await, "{how:?}: the in-flight answer's cookie is dead");
        }
        assert!(!authenticates(&app, &cookie).await, "{how:?}: still dead afterwards");
    }
}
both!(an_ended_session_never_comes_back_through_a_request_in_flight);

fn key_count(app: &TestApp) -> i64 {
    app.db()
        .run_sync(|c| latchkey::store::schema::api_keys::table.count().get_result(c).map_err(StoreError::from))
        .unwrap()
}

/// A request held open on a slow body does not act for its session once that
/// session has ended: no key is minted, by the page form (token in the body
/// or in the htmx header) or by the JSON API.
async fn a_request_in_flight_cannot_act_after_its_session_ended(app: TestApp) {
    app.owner_session().await;
    for (i, variant) in ["form", "htmx header", "json api"].into_iter().enumerate() {
        let email = format!("minter{i}@acme.test");
        let (victim, cookie) = developer(&app, &email).await;
        let csrf = csrf_from(&victim.get_html("/settings/developer/api-keys").await);
        let flight = match variant {
            "form" => {
                let body = format!("name=late&preset=custom&scopes=templates%3Aread&csrf_token={csrf}");
                InFlight::start(&app, &cookie, "/settings/developer/api-keys", &body).await
            }
            "htmx header" => {
                let headers = format!(
                    "Content-Type: application/x-www-form-urlencoded\r\nX-CSRF-Token: {csrf}\r\nHX-Request: true"
                );
                let body = "name=late&preset=custom&scopes=templates%3Aread";
                InFlight::start_with(&app, &cookie, "/settings/developer/api-keys", &headers, body).await
            }
            _ => {
                let headers = format!("Content-Type: application/json\r\nX-CSRF-Token: {csrf}");
                let body = r#"{"name":"late","scopes":["templates:read"]}"#;
                InFlight::start_with(&app, &cookie, "/api/v1/api-keys", &headers, body).await
            }
        };
        end_session(&app, Ender::SignOutOthersElsewhere, &email, &cookie).await;
        let (status, new_cookie) = flight.finish().await;
        assert!(matches!(status, 200 | 303 | 401 | 403), "{variant}: {status}");
        assert_ne!(status, 201, "{variant}");
        assert_eq!(key_count(&app), 0, "{variant}: a key was minted for an ended session");
        assert!(!authenticates(&app, &cookie).await, "{variant}");
        if let Some(new_cookie) = new_cookie {
            assert!(!authenticates(&app, &new_cookie).await, "{variant}");
        }
    }
    // The same requests on a live session do mint keys (the attack is real).
    let (live, cookie) = developer(&app, "live@acme.test").await;
    let csrf = csrf_from(&live.get_html("/settings/developer/api-keys").await);
    let headers = format!("Content-Type: application/json\r\nX-CSRF-Token: {csrf}");
    let body = r#"{"name":"on time","scopes":["templates:read"]}"#;
    let (status, _) = InFlight::start_with(&app, &cookie, "/api/v1/api-keys", &headers, body).await.finish().await;
    assert_eq!(status, 201);
    assert_eq!(key_count(&app), 1);
}
both!(a_request_in_flight_cannot_act_after_its_session_ended);

/// A password change in flight renews its session — unless the session ended
/// meanwhile: then it stays ended (no row re-created by the renewal), and the
/// change is not made.
async fn a_renewal_in_flight_does_not_revive_an_ended_session(app: TestApp) {
    app.owner_session().await;
    let email = "renewer@acme.test";
    let (victim, cookie) = developer(&app, email).await;
    let csrf = csrf_from(&victim.get_html("/settings/security").await);
    let body = format!(
        "current_password={}&new_password=another+new+password+7&csrf_token={csrf}",
        DEV_PASSWORD.replace(' ', "+")
    );
    let flight = InFlight::start(&app, &cookie, "/settings/security/password", &body).await;
    end_session(&app, Ender::SignOutOthersElsewhere, email, &cookie).await;
    let (status, new_cookie) = flight.finish().await;
    assert!(status < 500, "{status}");
    assert!(!authenticates(&app, &cookie).await);
    if let Some(new_cookie) = new_cookie {
        assert!(!authenticates(&app, &new_cookie).await, "the renewed cookie must not work");
    }
    // The ended session changed nothing (its password is the old one)…
    assert_eq!(app.other_client().login(email, "another new password 7").await.status(), StatusCode::UNAUTHORIZED);
    // …and a password change on a live session still keeps that browser signed in.
    let (keeper, _) = sign_in(&app, email, DEV_PASSWORD).await;
    let res = keeper.change_password(DEV_PASSWORD, "and a third password 9").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(keeper.get("/settings/security").await.status(), StatusCode::OK);
}
both!(a_renewal_in_flight_does_not_revive_an_ended_session);

/// Sets `auth_at` of every signed-in session row (None removes it).
fn set_auth_at(app: &TestApp, auth_at: Option<i64>) {
    app.db()
        .run_sync(|c| {
            let rows: Vec<(String, String)> = sessions::table
                .filter(sessions::user_id.is_not_null())
                .select((sessions::id, sessions::state))
                .load(c)?;
            for (id, state) in rows {
                let mut map: std::collections::HashMap<String, String> = serde_json::from_str(&state).unwrap();
                match auth_at {
                    Some(t) => map.insert("auth_at".into(), t.to_string()),
                    None => map.remove("auth_at"),
                };
                let state = serde_json::to_string(&map).unwrap();
                diesel::update(sessions::table.find(id)).set(sessions::state.eq(state)).execute(c)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

async fn the_absolute_session_lifetime_holds_on_the_api_as_on_pages(app: TestApp) {
    let now = latchkey::store::now();
    let variants = [
        ("13 hours old", Some(now - 13 * 3600)),
        ("just past 12 hours", Some(now - 12 * 3600 - 5)),
        ("no sign-in time", None),
    ];
    app.setup_owner().await;
    for (what, auth_at) in variants {
        let (client, _) = sign_in(&app, OWNER_EMAIL, OWNER_PASSWORD).await;
        let csrf = csrf_from(&client.get_html("/settings/team").await);
        let list = client.client.get(client.url("/api/v1/api-keys")).send().await.unwrap();
        assert_eq!(list.status(), StatusCode::OK, "{what}: a fresh session works");
        set_auth_at(&app, auth_at);
        let list = client.client.get(client.url("/api/v1/api-keys")).send().await.unwrap();
        assert_eq!(list.status(), StatusCode::UNAUTHORIZED, "{what}: list");
        let create = client
            .client
            .post(client.url("/api/v1/api-keys"))
            .header("X-CSRF-Token", &csrf)
            .json(&serde_json::json!({"name": "late", "scopes": ["admin"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(create.status(), StatusCode::UNAUTHORIZED, "{what}: create");
        let page = client.get("/settings/team").await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "{what}: page");
        assert!(location(&page).starts_with("/login"));
    }
    let keys: i64 = app
        .db()
        .run_sync(|c| latchkey::store::schema::api_keys::table.count().get_result(c).map_err(StoreError::from))
        .unwrap();
    assert_eq!(keys, 0, "no key was created by an expired session");
}
both!(the_absolute_session_lifetime_holds_on_the_api_as_on_pages);

fn session_rows(app: &TestApp) -> i64 {
    app.db().run_sync(|c| sessions::table.count().get_result(c).map_err(StoreError::from)).unwrap()
}

async fn anonymous_pages_write_nothing_and_their_forms_keep_the_csrf_check(app: TestApp) {
    let token = app.setup_token.clone().unwrap();
    let before = session_rows(&app);
    // Fresh visitors and one returning visitor.
    let returning = app.other_client();
    for i in 0..20 {
        let res = if i % 2 == 0 { app.other_client().get("/login").await } else { returning.get("/login").await };
        assert_eq!(res.status(), StatusCode::OK);
        if let Some(c) = res.headers().get_all("set-cookie").iter().find(|c| c.to_str().unwrap().starts_with(SESSION)) {
            let c = c.to_str().unwrap();
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
        }
    }
    app.get(&format!("/setup?token={token}")).await;
    app.get("/no/such/page").await;
    app.get("/oauth/authorize?client_id=nobody&response_type=code").await;
    app.get("/invite/not-a-real-invite-token").await;
    let failed = app.login(OWNER_EMAIL, "wrong password").await;
    assert!(failed.status().is_client_error());
    assert_eq!(session_rows(&app), before, "anonymous requests wrote session rows");

    app.owner_session().await;
    let link = app.invite("newcomer@acme.test", "viewer").await;
    let stranger = app.other_client();
    assert_eq!(stranger.get(&link).await.status(), StatusCode::OK);
    let before = session_rows(&app);
    for _ in 0..3 {
        assert_eq!(stranger.get("/login").await.status(), StatusCode::OK);
        assert!(stranger.login(OWNER_EMAIL, "still wrong").await.status().is_client_error());
    }
    assert_eq!(session_rows(&app), before);

    // The login form still needs its own CSRF token: missing, forged, or
    // another visitor's token (with or without that visitor's cookie) fail.
    let victim = app.other_client();
    let page = victim.get_html("/login").await;
    let mine = csrf_from(&page);
    let attacker = app.other_client();
    let theirs = csrf_from(&attacker.get_html("/login").await);
    let creds = [("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)];
    for token in [None, Some("forged-token".to_owned()), Some(theirs), Some(format!("{mine}x")), Some(String::new())] {
        let mut form = creds.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec();
        if let Some(t) = token.clone() {
            form.push(("csrf_token".into(), t));
        }
        let res = victim.client.post(victim.url("/login")).form(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{token:?}");
        let bare = crate::helpers::new_client().post(app.url("/login")).form(&form).send().await.unwrap();
        assert_eq!(bare.status(), StatusCode::FORBIDDEN, "no cookie, {token:?}");
    }
    assert_eq!(session_rows(&app), before, "refused logins wrote nothing");
    let mut form = creds.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec();
    form.push(("csrf_token".into(), mine));
    let ok = victim.client.post(victim.url("/login")).form(&form).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(session_rows(&app), before + 1, "the row is created at sign-in");
    assert_eq!(victim.get("/settings/team").await.status(), StatusCode::OK);
}
both!(anonymous_pages_write_nothing_and_their_forms_keep_the_csrf_check);

async fn a_team_2fa_policy_sends_to_enrolment_then_back_never_in_a_loop(app: TestApp) {
    app.owner_session().await;
    let oauth_app = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let email = "unenrolled@acme.test";
    let (member, _) = developer(&app, email).await;
    let res = app.post_form("/settings/security", "/settings/security/team-policy", &[("require_totp", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (pkce, _) = oauth2::PkceCodeChallenge::new_random_sha256();
    let (url, _) = crate::oauth::client(&app, &oauth_app, crate::oauth::REDIRECT)
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scope(oauth2::Scope::new("templates:read".into()))
        .set_pkce_challenge(pkce)
        .url();
    let authorize = url.as_str()[app.address.len()..].to_owned();
    let via_login = format!("/login?next={}", latchkey::web::auth::url_encode(&authorize));
    for start in [authorize.clone(), via_login] {
        let mut path = start.clone();
        let mut seen = Vec::new();
        let landed = loop {
            let res = member.get(&path).await;
            if res.status() != StatusCode::SEE_OTHER {
                break (path, res.status());
            }
            seen.push(path.clone());
            assert!(seen.len() < 5, "{start}: redirect loop {seen:?}");
            path = location(&res);
        };
        assert_eq!(landed.1, StatusCode::OK, "{start}: {landed:?}");
        assert!(landed.0.starts_with("/settings/security?required=1"), "{start}: landed on {}", landed.0);
        assert!(!seen.iter().any(|p| p.starts_with("/login")) || start.starts_with("/login"), "{seen:?}");
    }
    // Enrol, then continue to the app.
    let (_, page) = enrol_at(&member, DEV_PASSWORD, 0).await;
    let link = &page[..page.find(r#"id="continue""#).expect("a way to continue after enrolment")];
    let next = attr_after(&link[link.rfind("<a ").unwrap()..], r#"href=""#)
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert_eq!(next, authorize);
    let res = member.get(&next).await;
    assert_eq!(res.status(), StatusCode::OK, "the consent page, at last");
    assert!(res.text().await.unwrap().contains("consent_token"));
    // /login sends an enrolled, signed-in member on as well.
    assert_eq!(location(&member.get("/login?next=/settings/team").await), "/settings/team");
}
both!(a_team_2fa_policy_sends_to_enrolment_then_back_never_in_a_loop);

async fn starting_2fa_enrolment_needs_the_password(app: TestApp) {
    app.owner_session().await;
    let (member, _) = developer(&app, "thief-target@acme.test").await;
    let pending = |email: &'static str| {
        app.db()
            .run_sync(move |c| {
                users::table
                    .filter(users::email.eq(email))
                    .select(users::totp_pending_enc)
                    .first::<Option<String>>(c)
                    .map_err(StoreError::from)
            })
            .unwrap()
    };
    // Four wrong tries: a fifth would reach the password re-check throttle.
    for password in [None, Some("wrong password"), Some(DEV_PASSWORD), Some(" owner password 123")] {
        let fields: Vec<(&str, &str)> = password.map(|p| vec![("password", p)]).unwrap_or_default();
        let res = app.post_form("/settings/security", "/settings/security/totp/start", &fields).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{password:?}");
        let html = res.text().await.unwrap();
        assert!(!html.contains(r#"id="totp-secret""#), "{password:?}: no secret shown");
        assert_eq!(pending(OWNER_EMAIL), None, "{password:?}: nothing stored");
    }
    let res =
        member.post_form("/settings/security", "/settings/security/totp/start", &[("password", OWNER_PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "another user's password");
    assert_eq!(pending("thief-target@acme.test"), None);
    // With the right password it starts.
    let key = start_enrolment(&app, OWNER_PASSWORD).await;
    assert_eq!(key.len(), 32);
    assert!(pending(OWNER_EMAIL).is_some());
}
both!(starting_2fa_enrolment_needs_the_password);

fn totp_columns(app: &TestApp, email: &'static str) -> (Option<String>, Option<String>) {
    app.db()
        .run_sync(move |c| {
            users::table
                .filter(users::email.eq(email))
                .select((users::totp_secret_enc, users::totp_pending_enc))
                .first(c)
                .map_err(StoreError::from)
        })
        .unwrap()
}

fn set_secret(app: &TestApp, email: &'static str, sealed: Option<String>) {
    app.db()
        .run_sync(move |c| {
            diesel::update(users::table.filter(users::email.eq(email)))
                .set((users::totp_secret_enc.eq(sealed), users::totp_last_step.eq(None::<i64>)))
                .execute(c)
                .map_err(StoreError::from)
        })
        .unwrap();
}

/// Password step on a fresh client, then a TOTP code.
async fn second_factor(app: &TestApp, email: &str, password: &str, code: &str) -> StatusCode {
    let client = app.other_client();
    let res = client.login(email, password).await;
    assert_eq!(location(&res), "/login/totp");
    client.post_form("/login/totp", "/login/totp", &[("code", code)]).await.status()
}

async fn a_totp_secret_copied_to_another_user_does_not_work(app: TestApp) {
    const MEMBER: &str = "copy-target@acme.test";
    app.owner_session().await;
    let (member, _) = developer(&app, MEMBER).await;
    let (owner_key, _) = enrol_at(&app, OWNER_PASSWORD, 0).await;
    enrol_at(&member, DEV_PASSWORD, 0).await;
    let (owner_sealed, _) = totp_columns(&app, OWNER_EMAIL);
    let (member_sealed, _) = totp_columns(&app, MEMBER);
    let owner_sealed = owner_sealed.unwrap();
    // The owner's ciphertext in the member's row, as is and with its version tag stripped.
    let untagged = owner_sealed.split_once(':').map(|(_, h)| h.to_owned()).unwrap_or_else(|| owner_sealed.clone());
    for copied in [owner_sealed.clone(), untagged] {
        set_secret(&app, MEMBER, Some(copied.clone()));
        away_from_boundary().await;
        let status = second_factor(&app, MEMBER, DEV_PASSWORD, &code_at_step(&owner_key, current_step())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{copied}: the owner's code signs the member in");
    }
    // The owner's ciphertext moved into the pending column does not open there either.
    app.db()
        .run_sync(|c| {
            diesel::update(users::table.filter(users::email.eq(MEMBER)))
                .set((
                    users::totp_secret_enc.eq(None::<String>),
                    users::totp_enabled_at.eq(None::<i64>),
                    users::totp_pending_enc.eq(Some(owner_sealed.clone())),
                ))
                .execute(c)
                .map_err(StoreError::from)
        })
        .unwrap();
    let page = member.get_html("/settings/security").await;
    assert!(!page.contains(r#"id="totp-secret""#), "a foreign pending secret is not shown");
    let res = member
        .post_form(
            "/settings/security",
            "/settings/security/totp/confirm",
            &[("code", &code_at_step(&owner_key, current_step()))],
        )
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    // The owner's own secret still works for the owner; the member's for the member.
    set_secret(&app, MEMBER, member_sealed);
    app.db()
        .run_sync(|c| {
            diesel::update(users::table.filter(users::email.eq(MEMBER)))
                .set((users::totp_enabled_at.eq(Some(1_i64)), users::totp_pending_enc.eq(None::<String>)))
                .execute(c)
                .map_err(StoreError::from)
        })
        .unwrap();
    set_secret(&app, OWNER_EMAIL, Some(owner_sealed));
    away_from_boundary().await;
    let status = second_factor(&app, OWNER_EMAIL, OWNER_PASSWORD, &code_at_step(&owner_key, current_step())).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}
both!(a_totp_secret_copied_to_another_user_does_not_work);

async fn the_audit_log_cannot_be_truncated_or_deleted(app: TestApp) {
    app.owner_session().await;
    let count =
        || app.db().run_sync(|c| audit_events::table.count().get_result::<i64>(c).map_err(StoreError::from)).unwrap();
    let before = count();
    assert!(before > 0);
    let mut attacks = vec!["DELETE FROM audit_events", "UPDATE audit_events SET action = 'x'"];
    if app.database_url.starts_with("postgres") {
        attacks.extend([
            "TRUNCATE audit_events",
            "TRUNCATE TABLE audit_events RESTART IDENTITY",
            "TRUNCATE audit_events CASCADE",
            "TRUNCATE sessions, audit_events",
            "TRUNCATE ONLY audit_events",
        ]);
    }
    for sql in attacks {
        let result = app.db().run_sync(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute(sql).map_err(StoreError::from)
        });
        assert!(result.is_err(), "{sql} succeeded");
        assert_eq!(count(), before, "{sql}");
    }
}
both!(the_audit_log_cannot_be_truncated_or_deleted);

/// The CLI on PostgreSQL, 20 times in a row: every run exits 0, none by a signal.
#[test]
fn the_command_line_exits_cleanly_every_time_on_postgresql() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    let Some(url) = crate::helpers::fresh_postgres() else { return };
    let dir = std::env::temp_dir().join(format!("latchkey-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .env("DATABASE_URL", &url)
            .env("LATCHKEY_DATA_DIR", &dir)
            .env("LATCHKEY_SECRET", crate::helpers::TEST_SECRET)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.signal(), None, "{args:?} killed by a signal: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    };
    run(&["migrate"], b"");
    for i in 0..20 {
        let email = format!("cli-{i}@acme.test");
        let team = format!("Team {i}");
        let args: Vec<&str> = if i == 0 {
            vec!["user", "create", "--email", &email, "--team", &team]
        } else {
            vec!["user", "create", "--email", &email]
        };
        run(&args, b"a command line password\n");
    }
    run(&["user", "reset-totp", "--email", "cli-3@acme.test"], b"");
    run(&["team", "set-plan", "--team", "Team 0", "--plan", "pro"], b"");
    run(&["service-key", "create", "--name", "verifier", "--scopes", "introspect"], b"");
}

/// Drops the test's database and roles, even when an assertion failed.
struct Cluster {
    admin: String,
    db: String,
    roles: [String; 2],
}

impl Drop for Cluster {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        if let Ok(mut c) = diesel::PgConnection::establish(&self.admin) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db));
            for r in &self.roles {
                let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {r}"));
            }
        }
    }
}

/// As the README says: the owner migrates, the server runs as a role that does
/// not own the tables — and that role cannot empty the audit log in any way.
#[test]
fn the_server_runs_as_a_role_that_cannot_empty_the_audit_log() {
    use diesel::connection::SimpleConnection;
    use latchkey::config::DatabaseUrl;
    let Ok(admin) = std::env::var("LATCHKEY_TEST_DATABASE_URL") else {
        crate::helpers::skipped("PostgreSQL tests: set LATCHKEY_TEST_DATABASE_URL");
        return;
    };
    let tag = latchkey::service::crypto::random_base62(10).unwrap().to_lowercase();
    let c = Cluster {
        admin: admin.clone(),
        db: format!("lk_roles_{tag}"),
        roles: [format!("lk_owner_{tag}"), format!("lk_app_{tag}")],
    };
    let [owner, app_role] = &c.roles;
    let mut root = diesel::PgConnection::establish(&admin).unwrap();
    for sql in [
        format!("CREATE ROLE {owner} LOGIN"),
        format!("CREATE ROLE {app_role} LOGIN"),
        format!("CREATE DATABASE {} OWNER {owner}", c.db),
    ] {
        root.batch_execute(&sql).unwrap();
    }
    let (scheme_user, rest) = admin.split_once('@').unwrap();
    let host = rest.rsplit_once('/').unwrap().0;
    let url_as = |role: &str| format!("{}://{role}@{host}/{}", scheme_user.split("://").next().unwrap(), c.db);
    let root_url = format!("{scheme_user}@{host}/{}", c.db);
    diesel::PgConnection::establish(&root_url)
        .unwrap()
        .batch_execute(&format!("ALTER SCHEMA public OWNER TO {owner}"))
        .unwrap();
    let Ok(mut as_owner) = latchkey::store::connect_once(&DatabaseUrl::parse(&url_as(owner)).unwrap()) else {
        crate::helpers::skipped("the role test: new roles cannot connect without a password here");
        return;
    };
    as_owner
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app_role}; \
             REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {app_role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app_role};"
        ))
        .unwrap();
    // The server's role starts (no DDL on an up-to-date database) and works.
    let db = latchkey::store::Db::connect(&DatabaseUrl::parse(&url_as(app_role)).unwrap()).unwrap();
    let hash = latchkey::service::password::hash(&mut Default::default(), "a server role password").unwrap();
    db.run_sync(|conn| latchkey::service::accounts::create_user(conn, "role@acme.test", hash, false, Some("Roles")))
        .unwrap();
    let count =
        || db.run_sync(|conn| audit_events::table.count().get_result::<i64>(conn).map_err(StoreError::from)).unwrap();
    let before = count();
    assert!(before > 0);
    for sql in [
        "TRUNCATE audit_events",
        "DELETE FROM audit_events",
        "UPDATE audit_events SET action = 'x'",
        "DROP TRIGGER audit_events_no_truncate ON audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TABLE audit_events",
    ] {
        let result = db.run_sync(|conn| conn.batch_execute(sql).map_err(StoreError::from));
        assert!(result.is_err(), "{sql} succeeded as the server's role");
        assert_eq!(count(), before, "{sql}");
    }
    drop(db);
}

/// A TOTP secret sealed the way earlier versions did: AES-256-GCM under the
/// TOTP key, no associated data, no version tag.
fn legacy_seal(secret: &[u8]) -> String {
    use aes_gcm::aead::{Aead, KeyInit};
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(crate::helpers::TEST_SECRET.as_bytes()).unwrap();
    mac.update(b"latchkey/totp-aead");
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&mac.finalize().into_bytes()).unwrap();
    let nonce = [9u8; 12];
    let sealed = cipher.encrypt(&nonce.into(), secret).unwrap();
    [nonce.as_slice(), &sealed].concat().iter().map(|b| format!("{b:02x}")).collect()
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u64, 0u32);
    for c in s.chars() {
        buffer = (buffer << 5) | "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".find(c).unwrap() as u64;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

async fn secrets_sealed_by_earlier_versions_keep_working_and_get_bound(app: TestApp) {
    const MEMBER: &str = "legacy@acme.test";
    app.owner_session().await;
    let (member, _) = developer(&app, MEMBER).await;
    let (owner_key, _) = enrol_at(&app, OWNER_PASSWORD, 0).await;
    let (member_key, _) = enrol_at(&member, DEV_PASSWORD, 0).await;
    // Next use: a legacy value works once more and is sealed again, bound.
    set_secret(&app, OWNER_EMAIL, Some(legacy_seal(&base32_decode(&owner_key))));
    away_from_boundary().await;
    let status = second_factor(&app, OWNER_EMAIL, OWNER_PASSWORD, &code_at_step(&owner_key, current_step())).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a legacy secret still signs in");
    let (resealed, _) = totp_columns(&app, OWNER_EMAIL);
    assert!(resealed.unwrap().starts_with("v2:"), "sealed again, bound");
    // At start: every legacy value is bound to its row's user, so a copy made
    // afterwards does not open for anyone else.
    set_secret(&app, MEMBER, Some(legacy_seal(&base32_decode(&member_key))));
    let config = crate::helpers::test_config(&app.data_dir, &app.database_url, &[]);
    drop(latchkey::startup::Application::build(config).await.unwrap());
    let (bound, _) = totp_columns(&app, MEMBER);
    let bound = bound.unwrap();
    assert!(bound.starts_with("v2:"), "{bound}");
    set_secret(&app, OWNER_EMAIL, Some(bound));
    away_from_boundary().await;
    let code = code_at_step(&member_key, current_step());
    assert_eq!(second_factor(&app, OWNER_EMAIL, OWNER_PASSWORD, &code).await, StatusCode::UNAUTHORIZED);
}
both!(secrets_sealed_by_earlier_versions_keep_working_and_get_bound);
