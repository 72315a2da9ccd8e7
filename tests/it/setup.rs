//! First-run setup at `/setup?token=…`.

use reqwest::StatusCode;

use crate::both;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp, csrf_from, location};

async fn setup_with_the_logged_token_creates_the_team_and_then_is_gone(app: TestApp) {
    let token = app.setup_token.clone().unwrap();
    let page = app.get(&format!("/setup?token={token}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Create team"));

    app.setup_owner().await;

    // The page is gone, for GET and POST, even with the right token.
    assert_eq!(app.get(&format!("/setup?token={token}")).await.status(), StatusCode::NOT_FOUND);
    let csrf = csrf_from(&app.get_html("/login").await);
    let second = app
        .client
        .post(app.url("/setup"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", &token),
            ("team_name", "Evil"),
            ("email", "e@evil.test"),
            ("password", "another password 1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.login("e@evil.test", "another password 1").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
}
both!(setup_with_the_logged_token_creates_the_team_and_then_is_gone);

async fn setup_with_a_wrong_token_is_refused_and_creates_nothing(app: TestApp) {
    assert_eq!(app.get("/setup?token=wrong").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get("/setup").await.status(), StatusCode::FORBIDDEN);
    let res = app
        .post_form(
            "/login",
            "/setup",
            &[("token", "wrong"), ("team_name", "Acme"), ("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Nothing was created: the real token still works.
    app.setup_owner().await;
}
both!(setup_with_a_wrong_token_is_refused_and_creates_nothing);

async fn setup_form_errors_keep_the_input_but_never_the_password(app: TestApp) {
    let token = app.setup_token.clone().unwrap();
    let page = format!("/setup?token={token}");
    let res = app
        .post_form(
            &page,
            "/setup",
            &[("token", &token), ("team_name", "Acme Widgets"), ("email", "not-an-email"), ("password", "short-pw")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"value="Acme Widgets""#));
    assert!(html.contains(r#"value="not-an-email""#));
    assert!(html.contains("Enter a valid email address."));
    assert!(html.contains("Use at least 12 characters."));
    assert!(!html.contains("short-pw"));

    let res = app
        .post_form(
            &page,
            "/setup",
            &[("token", &token), ("team_name", "A"), ("email", OWNER_EMAIL), ("password", OWNER_EMAIL)],
        )
        .await;
    let html = res.text().await.unwrap();
    assert!(html.contains("Use at least 2 characters."));
    assert!(html.contains("must not be your email address"));
    // Still open: nothing was created by the failed attempts.
    assert_eq!(app.get(&page).await.status(), StatusCode::OK);
}
both!(setup_form_errors_keep_the_input_but_never_the_password);

async fn pages_behind_login_redirect_to_login_with_next(app: TestApp) {
    app.setup_owner().await;
    let res = app.get("/settings/team").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login?next=%2Fsettings%2Fteam");
}
both!(pages_behind_login_redirect_to_login_with_next);
