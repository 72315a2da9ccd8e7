//! Two-factor login. Codes are computed here by an independent RFC 6238
//! implementation (HMAC-SHA1 from the `hmac`/`sha1` crates), not the server's.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;

use crate::both;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp, attr_after, location};

fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u64, 0u32);
    for c in s.trim_end_matches('=').chars() {
        let v = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".find(c.to_ascii_uppercase()).expect("base32") as u64;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// RFC 6238 / RFC 4226 with SHA-1 and 6 digits, for time step `step`.
pub fn code_at_step(secret_b32: &str, step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&base32_decode(secret_b32)).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:06}", bin % 1_000_000)
}

pub fn current_step() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

/// Waits until we are not within 4 s of a step boundary, so the server and
/// this test agree on the current step.
pub async fn away_from_boundary() {
    loop {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 30;
        if (2..26).contains(&secs) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Starts enrolment on the signed-in client (re-entering its `password`);
/// returns the manual key.
pub async fn start_enrolment(app: &TestApp, password: &str) -> String {
    let res = app.post_form("/settings/security", "/settings/security/totp/start", &[("password", password)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "Post/Redirect/Get");
    assert!(location(&res).starts_with("/settings/security"), "{}", location(&res));
    let html = app.get_html(&location(&res)).await;
    assert!(html.contains(r#"src="data:image/svg+xml;base64,"#), "QR code drawn on the server");
    attr_after(&html, r#"<code id="totp-secret">"#).unwrap()
}

/// Enrols with the code of `step`; returns the manual key and the page.
pub async fn enrol_at(app: &TestApp, password: &str, step_offset: i64) -> (String, String) {
    away_from_boundary().await;
    let key = start_enrolment(app, password).await;
    let step = (current_step() as i64 + step_offset) as u64;
    let res = app
        .post_form("/settings/security", "/settings/security/totp/confirm", &[("code", &code_at_step(&key, step))])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    (key, res.text().await.unwrap())
}

async fn password_step(app: &TestApp) {
    app.post_form("/settings/team", "/logout", &[]).await;
    let res = app.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login/totp");
}

async fn second_step(app: &TestApp, code: &str) -> reqwest::Response {
    app.post_form("/login/totp", "/login/totp", &[("code", code)]).await
}

async fn enrolment_needs_a_right_code_and_shows_recovery_codes_once(app: TestApp) {
    app.owner_session().await;
    let key = start_enrolment(&app, OWNER_PASSWORD).await;
    assert_eq!(key.len(), 32, "160-bit secret in base32");
    let wrong = app.post_form("/settings/security", "/settings/security/totp/confirm", &[("code", "000000")]).await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().await.unwrap().contains("That code is not right"));
    let page = app.get_html("/settings/security").await;
    assert!(page.contains(r#"id="totp-secret""#), "still enrolling, still off");

    away_from_boundary().await;
    let res = app
        .post_form(
            "/settings/security",
            "/settings/security/totp/confirm",
            &[("code", &code_at_step(&key, current_step()))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let list = &html[html.find(r#"id="recovery-codes""#).unwrap()..];
    assert_eq!(list[..list.find("</ul>").unwrap()].matches("<code>").count(), 10);
    assert!(html.contains("download=\"latchkey-recovery-codes.txt\""));
    let later = app.get_html("/settings/security").await;
    assert!(!later.contains(r#"id="recovery-codes""#) && !later.contains(&key), "shown once");
    assert!(later.contains(r#"<strong id="codes-left">10</strong>"#));
    // Stored encrypted: neither the key nor its bytes are in the database.
    let stored = stored_totp(&app);
    assert!(stored.starts_with("Some") && !stored.contains(&key) && !stored.contains(&hex(&base32_decode(&key))));
}
both!(enrolment_needs_a_right_code_and_shows_recovery_codes_once);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn stored_totp(app: &TestApp) -> String {
    use diesel::prelude::*;
    use latchkey::store::schema::users;
    let v: Vec<Option<String>> = app
        .db()
        .run_sync(|c| users::table.select(users::totp_secret_enc).load(c).map_err(latchkey::store::StoreError::from))
        .unwrap();
    format!("{:?}", v[0])
}

async fn login_needs_the_code_accepts_skew_of_one_step_and_refuses_replays(app: TestApp) {
    app.owner_session().await;
    let (key, _) = enrol_at(&app, OWNER_PASSWORD, -1).await; // one step behind: accepted
    password_step(&app).await;
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::SEE_OTHER, "half signed in grants nothing");
    let now = current_step();
    for far in [now - 2, now + 2] {
        let res = second_step(&app, &code_at_step(&key, far)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "±2 steps refused");
    }
    let ahead = code_at_step(&key, now + 1);
    let res = second_step(&app, &format!("  {ahead} ")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "one step ahead, whitespace trimmed");
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK);

    // The same step again, from a new sign-in: refused.
    password_step(&app).await;
    let replay = second_step(&app, &ahead).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.text().await.unwrap().contains("already used"));
    let older = second_step(&app, &code_at_step(&key, now)).await;
    assert_eq!(older.status(), StatusCode::UNAUTHORIZED, "an older step after a newer one is refused");
}
both!(login_needs_the_code_accepts_skew_of_one_step_and_refuses_replays);

async fn a_recovery_code_works_once(app: TestApp) {
    app.owner_session().await;
    let (_, page) = enrol_at(&app, OWNER_PASSWORD, 0).await;
    let list = &page[page.find(r#"id="recovery-codes""#).unwrap()..];
    let code = attr_after(list, "<code>").unwrap();
    password_step(&app).await;
    let res = second_step(&app, &code.to_uppercase()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let security = app.get_html("/settings/security").await;
    assert!(
        security.contains("You signed in with a recovery code")
            && security.contains(r#"<strong id="codes-left">9</strong>"#)
    );
    password_step(&app).await;
    assert_eq!(second_step(&app, &code).await.status(), StatusCode::UNAUTHORIZED, "used up");
}
both!(a_recovery_code_works_once);

async fn bad_codes_get_clear_errors_and_failures_are_throttled(app: TestApp) {
    app.owner_session().await;
    enrol_at(&app, OWNER_PASSWORD, 0).await;
    password_step(&app).await;
    for (bad, message) in [
        ("12345", "exactly 6 digits"),
        ("1234567", "exactly 6 digits"),
        ("12a4b6", "neither"),
        ("", "Enter the 6-digit code"),
    ] {
        let res = second_step(&app, bad).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert!(res.text().await.unwrap().contains(message), "{bad:?}");
    }
    for _ in 0..5 {
        assert_eq!(second_step(&app, "000000").await.status(), StatusCode::UNAUTHORIZED);
    }
    let res = second_step(&app, "000000").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::SEE_OTHER);
}
both!(bad_codes_get_clear_errors_and_failures_are_throttled);

async fn turning_it_off_needs_the_password_and_a_code(app: TestApp) {
    app.owner_session().await;
    let (key, _) = enrol_at(&app, OWNER_PASSWORD, -1).await;
    let code = code_at_step(&key, current_step() + 1);
    let res = app.disable_totp("wrong password", &code).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app.disable_totp(OWNER_PASSWORD, "000000").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.get_html("/settings/security").await.contains("status-active\">On"));
    let res = app.disable_totp(OWNER_PASSWORD, &code).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(app.get_html("/settings/security").await.contains("Set up two-factor authentication"));
    assert_eq!(stored_totp(&app), "None");
    let audit = app.get_html("/settings/team").await;
    assert!(audit.contains("totp.enabled") && audit.contains("totp.disabled"));
}
both!(turning_it_off_needs_the_password_and_a_code);

async fn a_team_policy_sends_members_to_enrolment_first(app: TestApp) {
    app.owner_session().await;
    let member = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let res = app.post_form("/settings/security", "/settings/security/team-policy", &[("require_totp", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for path in ["/settings/team", "/settings/developer/api-keys"] {
        let res = member.get(path).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        let back = latchkey::web::auth::url_encode(path);
        assert_eq!(location(&res), format!("/settings/security?required=1&next={back}"), "{path}");
    }
    assert!(member.get_html("/settings/security?required=1").await.contains("Your team requires two-factor"));
    let csrf = crate::helpers::csrf_from(&member.get_html("/settings/security").await);
    let api = member.client.get(member.url("/api/v1/api-keys")).header("X-CSRF-Token", csrf).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::FORBIDDEN, "no session API use before enrolment");
    enrol_at(&member, crate::accounts::DEV_PASSWORD, 0).await;
    assert_eq!(member.get("/settings/team").await.status(), StatusCode::OK);
    // Only an owner sets the policy.
    let res = member.post_form("/settings/security", "/settings/security/team-policy", &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
both!(a_team_policy_sends_members_to_enrolment_first);

async fn a_password_change_ends_other_sessions(app: TestApp) {
    app.owner_session().await;
    let other = app.other_client();
    other.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(other.get("/settings/team").await.status(), StatusCode::OK);
    let bad = app.change_password("nope", "a brand new password").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let short = app.change_password(OWNER_PASSWORD, "short").await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app.change_password(OWNER_PASSWORD, "a brand new password").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(other.get("/settings/team").await.status(), StatusCode::SEE_OTHER, "other session ended");
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK, "this one kept");
    assert_eq!(app.other_client().login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.other_client().login(OWNER_EMAIL, "a brand new password").await.status(), StatusCode::SEE_OTHER);
}
both!(a_password_change_ends_other_sessions);

async fn sessions_are_listed_and_can_be_signed_out(app: TestApp) {
    app.owner_session().await;
    let other = app.other_client();
    other.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    let page = app.get_html("/settings/security").await;
    let table = &page[page.find(r#"id="sessions""#).unwrap()..];
    assert_eq!(table.matches(r#"class="session-row""#).count(), 2);
    assert_eq!(table.matches("this session").count(), 1);
    let id = attr_after(table, r#"href="/settings/security/sessions/"#).unwrap();
    let id = id.trim_end_matches("/revoke").to_owned();
    let res = app.post_form("/settings/security", &format!("/settings/security/sessions/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(other.get("/settings/team").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK);
    other.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    let res = app.post_form("/settings/security", "/settings/security/sessions/revoke-others", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(other.get("/settings/team").await.status(), StatusCode::SEE_OTHER);
    assert!(app.get_html("/settings/team").await.contains("session.revoked"));
}
both!(sessions_are_listed_and_can_be_signed_out);
