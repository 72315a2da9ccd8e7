//! `/login`, `/logout`, throttling, sessions and CSRF.

use reqwest::StatusCode;

use crate::both;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp, csrf_from, location};

async fn login_renews_the_session_and_logout_ends_it(app: TestApp) {
    app.setup_owner().await;
    let before = app.get("/login").await;
    let anon_cookie = before.cookies().find(|c| c.name() == "latchkey_session").map(|c| c.value().to_owned());
    let csrf = csrf_from(&before.text().await.unwrap());
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", OWNER_EMAIL),
            ("password", OWNER_PASSWORD),
            ("next", "/settings/team"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/settings/team");
    let cookie = res.cookies().find(|c| c.name() == "latchkey_session").expect("session cookie set at login");
    assert!(cookie.http_only());
    assert!(cookie.same_site_lax());
    let logged_in = cookie.value().to_owned();
    assert_ne!(Some(logged_in.clone()), anon_cookie, "session id renewed at login");

    let team = app.get_html("/settings/team").await;
    assert!(team.contains(OWNER_EMAIL));

    // Log out, then replay the old cookie from a fresh client: it is dead.
    let res = app.post_form("/settings/team", "/logout", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::SEE_OTHER);
    let replay = app
        .other_client()
        .client
        .get(app.url("/settings/team"))
        .header("cookie", format!("latchkey_session={logged_in}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert!(location(&replay).starts_with("/login"));
}
both!(login_renews_the_session_and_logout_ends_it);

async fn wrong_password_and_unknown_email_get_the_same_neutral_answer(app: TestApp) {
    app.setup_owner().await;
    let wrong = app.login(OWNER_EMAIL, "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong.text().await.unwrap();
    let unknown = app.login("nobody@acme.test", "not the password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown = unknown.text().await.unwrap();
    for html in [&wrong, &unknown] {
        assert!(html.contains("Incorrect email or password."));
        assert!(!html.contains("not the password"), "the password is never echoed");
    }
    assert!(wrong.contains(&format!(r#"value="{OWNER_EMAIL}""#)), "email kept");
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::SEE_OTHER, "no session granted");
}
both!(wrong_password_and_unknown_email_get_the_same_neutral_answer);

async fn repeated_failures_are_throttled_per_account(app: TestApp) {
    app.setup_owner().await;
    for _ in 0..5 {
        assert_eq!(app.login(OWNER_EMAIL, "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let retry: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    assert!(res.text().await.unwrap().contains("Too many failed attempts. Try again in"));
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::SEE_OTHER);
}
both!(repeated_failures_are_throttled_per_account);

async fn next_never_redirects_off_site(app: TestApp) {
    app.setup_owner().await;
    for evil in ["//evil.example/x", "https://evil.example", "/\\evil.example"] {
        let res = app
            .post_form("/login", "/login", &[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD), ("next", evil)])
            .await;
        assert_eq!(location(&res), "/", "{evil}");
        app.post_form("/settings/team", "/logout", &[]).await;
    }
}
both!(next_never_redirects_off_site);

async fn posts_without_a_valid_csrf_token_are_refused_and_change_nothing(app: TestApp) {
    app.owner_session().await;
    let form = [("email", "mallory@acme.test"), ("role", "admin")];
    let missing = app.client.post(app.url("/settings/team/invites")).form(&form).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let mut with_wrong: Vec<(&str, &str)> = form.to_vec();
    with_wrong.push(("csrf_token", "forged"));
    let wrong = app.client.post(app.url("/settings/team/invites")).form(&with_wrong).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let header = app.client.post(app.url("/logout")).header("X-CSRF-Token", "forged").send().await.unwrap();
    assert_eq!(header.status(), StatusCode::FORBIDDEN);
    let team = app.get_html("/settings/team").await;
    assert!(!team.contains("mallory@acme.test"), "no invite was created");
    assert!(team.contains(OWNER_EMAIL), "still signed in");

    // The header form works too (what htmx sends).
    let csrf = csrf_from(&team);
    let ok = app.client.post(app.url("/logout")).header("X-CSRF-Token", csrf).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
}
both!(posts_without_a_valid_csrf_token_are_refused_and_change_nothing);

async fn sessions_are_stored_hashed_and_shared_through_the_database(app: TestApp) {
    use diesel::prelude::*;
    use latchkey::store::schema::sessions;
    app.setup_owner().await;
    let res = app.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    let cookie = res.cookies().find(|c| c.name() == "latchkey_session").unwrap().value().to_owned();
    let rows: Vec<(String, Option<String>, String)> = app
        .db()
        .run_sync(|c| {
            sessions::table
                .select((sessions::id, sessions::user_id, sessions::state))
                .load(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
    assert!(rows.iter().any(|(_, uid, _)| uid.is_some()), "the signed-in session has a user");
    for (id, _, state) in &rows {
        assert!(!cookie.contains(id.as_str()) && !id.contains(&cookie), "row id is not the cookie");
        assert!(!state.contains(OWNER_PASSWORD));
    }
}
both!(sessions_are_stored_hashed_and_shared_through_the_database);

async fn an_expired_session_is_refused_server_side(app: TestApp) {
    use diesel::prelude::*;
    use latchkey::store::schema::sessions;
    app.owner_session().await;
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK);
    // Idle past the timeout: the row's expiry is in the past.
    app.db()
        .run_sync(|c| {
            diesel::update(sessions::table)
                .set(sessions::expires_at.eq(1))
                .execute(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
    let res = app.get("/settings/team").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/login"));
}
both!(an_expired_session_is_refused_server_side);

/// Moves the sign-in time of every signed-in session to the epoch.
fn signed_in_long_ago(app: &TestApp) {
    use diesel::prelude::*;
    use latchkey::store::schema::sessions;
    app.db()
        .run_sync(|c| {
            let rows: Vec<(String, String)> = sessions::table.select((sessions::id, sessions::state)).load(c)?;
            for (id, state) in rows {
                let mut map: std::collections::HashMap<String, String> = serde_json::from_str(&state).unwrap();
                if map.contains_key("auth_at") {
                    map.insert("auth_at".into(), "1".into());
                    let state = serde_json::to_string(&map).unwrap();
                    diesel::update(sessions::table.find(id)).set(sessions::state.eq(state)).execute(c)?;
                }
            }
            Ok::<_, latchkey::store::StoreError>(())
        })
        .unwrap();
}

async fn a_session_older_than_the_absolute_lifetime_ends(app: TestApp) {
    app.owner_session().await;
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK);
    // Signed in long ago (the session is still active, so only the absolute limit applies).
    signed_in_long_ago(&app);
    let res = app.get("/settings/team").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/login"));
}
both!(a_session_older_than_the_absolute_lifetime_ends);

/// The first page after the absolute limit is the sign-in form itself: the
/// old session ends there, and signing in from that form works at once (its
/// CSRF token belongs to the fresh session that replaces the old one).
async fn signing_in_from_the_first_page_after_the_absolute_limit_works(app: TestApp) {
    app.owner_session().await;
    signed_in_long_ago(&app);
    let res = app.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK, "signed in again");
}
both!(signing_in_from_the_first_page_after_the_absolute_limit_works);
