//! A person in headless Chromium: setup → login → team page → logout.

use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, spawn_app};
use crate::webdriver::Browser;

#[tokio::test]
async fn a_person_sets_up_signs_in_sees_the_team_and_signs_out() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let token = app.setup_token.clone().unwrap();

    browser.goto(&app.url(&format!("/setup?token={token}"))).await;
    assert_eq!(browser.title().await, "Set up · Latchkey");
    browser.fill("#team_name", "Acme Rockets").await;
    browser.fill("#email", OWNER_EMAIL).await;
    browser.fill("#password", OWNER_PASSWORD).await;
    browser.click("button[type=submit]").await;

    browser.wait_for_title("Sign in · Latchkey").await;
    assert!(browser.text(".notice").await.contains("Your team is ready"));
    browser.fill("#email", OWNER_EMAIL).await;
    browser.fill("#password", "wrong password here").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("#login-error", "Incorrect email or password.").await;

    browser.fill("#password", OWNER_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_title("Team · Latchkey").await;
    let members = browser.text("#members").await;
    assert!(members.contains(OWNER_EMAIL) && members.to_lowercase().contains("owner"), "{members}");
    assert_eq!(browser.text(".team-name").await, "Acme Rockets");
    assert!(browser.text("nav").await.contains("Team"));
    // The stylesheet applied (no CSP violation): the sidebar is dark.
    let bg = browser.css(".sidebar", "background-color").await;
    assert_eq!(bg, "rgba(17, 24, 39, 1)");

    browser.click(".sidebar-foot button").await;
    browser.wait_for_title("Sign in · Latchkey").await;
    browser.goto(&app.url("/settings/team")).await;
    browser.wait_for_title("Sign in · Latchkey").await;
    browser.quit().await;
}

#[tokio::test]
async fn a_person_creates_a_key_sees_it_once_and_revokes_it_in_place() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.setup_owner().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;

    browser.click("a[href='/settings/developer/api-keys']").await;
    browser.wait_for_title("API Keys · Latchkey").await;
    browser.fill("#key-name", "Browser key").await;
    browser.click("input[value='templates:read']").await;
    browser.click("input[value='messages:send']").await;
    browser.click("#create button[type=submit]").await;
    browser.wait_for_title("Your new key · Latchkey").await;
    let secret = browser.text("#secret").await;
    assert!(secret.starts_with("lk_") && secret.len() == 39, "{secret}");
    assert!(browser.text(".reveal").await.contains("will not be shown again"));
    browser.click("#copy-secret").await;
    browser.wait_for_text("#copy-secret", "Copied").await;

    // Reload: the secret is gone for good; the page says it was shown once.
    browser.script("location.reload()").await;
    browser.wait_for_title("Browser key · Latchkey").await;
    browser.wait_for("#shown-once").await;
    assert!(!browser.source().await.contains(&secret));
    browser.goto(&app.url("/settings/developer/api-keys")).await;
    browser.wait_for_title("API Keys · Latchkey").await;
    let row = browser.text("#keys tbody tr").await;
    assert!(row.contains("Browser key") && row.contains("templates:read") && row.contains("messages:send"), "{row}");
    assert!(row.contains(&secret[..11]));

    // Revoke with htmx: the row changes, the page does not reload.
    browser.script("window.__stillHere = true").await;
    browser.click("#keys tbody tr details.menu summary").await;
    browser.click("#keys tbody tr a[id^='revoke-']").await;
    browser.wait_for("dialog[open] [data-confirm-submit]").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for_text("#keys tbody tr", "Revoked").await;
    assert_eq!(browser.script("return window.__stillHere === true").await, serde_json::json!(true));
    let res =
        app.other_client().client.get(app.url("/api/v1/auth/test")).header("X-API-Key", &secret).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    browser.quit().await;
}

#[tokio::test]
async fn a_person_enrols_in_two_factor_and_signs_in_with_a_code() {
    use crate::totp::{away_from_boundary, code_at_step, current_step};
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.setup_owner().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;

    browser.click("a[href='/settings/security']").await;
    browser.wait_for_title("Security · Latchkey").await;
    browser.fill("#start-password", OWNER_PASSWORD).await;
    browser.click("#start-totp").await;
    browser.wait_for_text("#two-factor", "Key for manual entry").await;
    let key = browser.text("#totp-secret").await;
    assert_eq!(key.len(), 32, "{key}");
    assert!(
        browser.script("return document.getElementById('totp-qr').naturalWidth > 0").await == serde_json::json!(true),
        "QR shows"
    );
    away_from_boundary().await;
    browser.fill("#confirm-code", &code_at_step(&key, current_step())).await;
    browser.click("#two-factor button.primary").await;
    browser.wait_for_text("#recovery-codes", "-").await;
    assert_eq!(
        browser.script("return document.querySelectorAll('#recovery-codes li').length").await,
        serde_json::json!(10)
    );

    browser.click(".sidebar-foot button").await;
    browser.wait_for_title("Sign in · Latchkey").await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Two-factor authentication · Latchkey").await;
    browser.fill("#code", &code_at_step(&key, current_step() + 1)).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_title("Team · Latchkey").await;
    browser.quit().await;
}

#[tokio::test]
async fn support_pastes_a_key_revokes_it_with_a_reason_and_the_owner_sees_why() {
    use crate::support::{SUPPORT_EMAIL, SUPPORT_PASSWORD, support_user};
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let key =
        crate::api_keys::create_key(&app, serde_json::json!({"name": "Leaked key", "scopes": ["templates:read"]}))
            .await;
    let secret = key["key"].as_str().unwrap().to_owned();
    support_user(&app).await;

    browser.goto(&app.url("/login")).await;
    browser.sign_in(SUPPORT_EMAIL, SUPPORT_PASSWORD, "Support · Latchkey").await;
    browser.fill("#q", &secret).await;
    browser.click(".search-form button").await;
    browser.wait_for_text("#key-results", "Leaked key").await;
    assert!(!browser.source().await.contains(&secret));
    browser.click("#key-results a").await;
    browser.wait_for_title("Leaked key · Support · Latchkey").await;
    browser.click("#revoke-key").await;
    browser.fill("#confirm-revoke-reason", "Posted in a public gist").await;
    browser.click("#confirm-revoke [data-confirm-submit]").await;
    browser.wait_for_text("#revocation", "Revoked by Latchkey support: Posted in a public gist").await;
    browser.click(".sidebar-foot button").await;
    browser.wait_for_title("Sign in · Latchkey").await;

    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    browser.goto(&app.url("/settings/developer/api-keys")).await;
    browser.wait_for_text("#keys", "Revoked by Latchkey support: Posted in a public gist").await;
    browser.quit().await;
}

/// A tiny client web app on loopback that shows the code it received.
fn spawn_client_page() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let query = target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap_or_default();
            let code = pairs.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone()).unwrap_or_default();
            let body = format!("<!doctype html><title>Test client</title><h1 id=\"code\">{code}</h1>");
            let mut out = &stream;
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn a_person_signs_in_and_approves_an_app_which_receives_a_code() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let port = spawn_client_page();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let registered = crate::oauth::register(&app, "confidential", &redirect, &["templates:read"]).await;
    let url = format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=templates:read&state=xyz",
        registered.client_id,
        latchkey::web::auth::url_encode(&redirect)
    );

    browser.goto(&app.url(&url)).await;
    browser.wait_for_title("Sign in · Latchkey").await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Authorize Acme Connector · Latchkey").await;
    assert!(browser.text("#consent-scopes").await.contains("Read your templates"));
    browser.click("#approve").await;
    browser.wait_for_title("Test client").await;
    let code = browser.text("#code").await;
    assert!(code.len() >= 43, "{code:?}");
    let exchanged = app
        .other_client()
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&registered.client_id, registered.secret.as_ref())
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(exchanged.status(), reqwest::StatusCode::OK);
    browser.quit().await;
}
