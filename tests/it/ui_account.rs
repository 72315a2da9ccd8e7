//! Browser tests: ui_account (see webdriver.rs for check_page, resize, axe).
//! The security, team, OAuth app, consent, setup and invite pages, as a
//! person uses them at a laptop's and a phone's size: each page fits and
//! passes axe; destructive actions ask first (a dialog with JavaScript, a
//! page without) and report; a reload after each form lands on a real page.

use reqwest::StatusCode;

use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, spawn_app};
use crate::webdriver::{Browser, LAPTOP, PHONE};

const SIZES: [((u32, u32), &str); 2] = [(LAPTOP, "laptop"), (PHONE, "phone")];
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Signs the browser in as the owner (already set up), landing on the team page.
async fn owner_in(browser: &Browser, app: &TestApp) {
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
}

/// Checks the current page at both sizes (`name`-laptop, `name`-phone), ending at the laptop's.
async fn check_both(browser: &Browser, name: &str) {
    for (size, label) in [SIZES[1], SIZES[0]] {
        browser.resize(size).await;
        browser.check_page(&format!("account-{name}-{label}")).await;
    }
}

#[tokio::test]
async fn sessions_read_as_devices_and_signing_the_others_out_asks_first() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.setup_owner().await;
    let other = app.other_client();
    assert_eq!(other.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    owner_in(&browser, &app).await;
    browser.goto(&app.url("/settings/security")).await;
    browser.wait_for_title("Security · Latchkey").await;
    let sessions = browser.text("#sessions").await;
    assert!(sessions.contains("Chrome on Linux") && sessions.contains("127.0.0.1"), "{sessions}");
    assert!(sessions.contains("ago") || sessions.contains("just now"), "relative times: {sessions}");
    assert!(!sessions.contains("Mozilla/5.0"), "no raw user agent: {sessions}");
    check_both(&browser, "security").await;

    for (size, label) in SIZES {
        browser.resize(size).await;
        // The dialog opens; Cancel closes it and changes nothing.
        browser.click("#revoke-others").await;
        browser.wait_for("dialog[open]").await;
        let says = browser.text("dialog[open]").await;
        assert!(says.contains("1 other session ends at once") && !says.contains("Chrome on Linux"), "{says}");
        browser.check_page(&format!("account-security-dialog-{label}")).await;
        browser.click("dialog[open] [data-close-dialog]").await;
        browser.wait_gone("dialog").await;
        assert_eq!(
            browser.script("return document.activeElement && document.activeElement.id").await,
            serde_json::json!("revoke-others"),
            "focus goes back to the button"
        );
        assert_eq!(other.get("/settings/team").await.status(), StatusCode::OK, "{label}: Cancel changes nothing");
        // Escape closes it too.
        browser.click("#revoke-others").await;
        browser.wait_for("dialog[open]").await;
        browser.press("\u{E00C}").await;
        browser.wait_gone("dialog").await;
    }
    // Confirming signs the other session out and says so.
    browser.click("#revoke-others").await;
    browser.wait_for("dialog[open]").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for_text(".notice", "Signed out 1 other session").await;
    assert_eq!(other.get("/settings/team").await.status(), StatusCode::SEE_OTHER, "the other session ended");
    assert!(browser.url().await.ends_with("/settings/security"), "{}", browser.url().await);
    assert_eq!(browser.script("return document.querySelectorAll('#sessions .session-row').length").await, 1);
    browser.quit().await;
}

#[tokio::test]
async fn without_javascript_a_session_sign_out_and_a_member_removal_ask_on_a_page() {
    let Some(browser) = Browser::start_without_js().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    crate::accounts::member(&app, "dev@acme.test", "developer").await;
    owner_in(&browser, &app).await;

    // Roles read as names; option values stay lowercase; the sole owner has no Remove.
    let members = browser.text("#members").await;
    assert!(members.contains("Owner") && members.contains("Developer"), "{members}");
    let options = browser
        .script("return Array.from(document.querySelectorAll('#members option')).map(function (o) { return o.value + '=' + o.textContent; }).join(',')")
        .await;
    assert!(options.as_str().unwrap().contains("developer=Developer"), "{options}");
    assert!(!options.as_str().unwrap().contains("=developer"), "{options}");
    assert!(!browser.exists(&format!("tr[data-email='{OWNER_EMAIL}'] .remove-member")).await, "sole owner: no Remove");
    assert!(!browser.exists(&format!("tr[data-email='{OWNER_EMAIL}'] select")).await, "sole owner: no demotion");
    check_both(&browser, "team").await;

    // Remove: a confirmation page naming what ends, with the keys choice.
    browser.click("tr[data-email='dev@acme.test'] .remove-member").await;
    browser.wait_for_title("Remove dev@acme.test from Acme? · Latchkey").await;
    let says = browser.text("#confirm-remove").await;
    assert!(
        says.contains("signed-in session") && says.contains("OAuth grants") && says.contains("no working API keys"),
        "{says}"
    );
    check_both(&browser, "team-remove-confirm").await;
    // Cancel goes back and changes nothing.
    browser.click("#confirm-remove a.button").await;
    browser.wait_for_title("Team · Latchkey").await;
    assert!(browser.exists("tr[data-email='dev@acme.test']").await);
    browser.click("tr[data-email='dev@acme.test'] .remove-member").await;
    browser.wait_for_title("Remove dev@acme.test from Acme? · Latchkey").await;
    browser.click("[data-confirm-submit]").await;
    browser.wait_for_title("Team · Latchkey").await;
    assert!(browser.text(".notice").await.contains("Member removed"));
    assert!(!browser.exists("tr[data-email='dev@acme.test']").await);

    // A session's Sign out asks on its own page too.
    let other = app.other_client();
    other.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    browser.goto(&app.url("/settings/security")).await;
    let rows = "return document.querySelectorAll('#sessions .session-row').length";
    assert_eq!(browser.script(rows).await, 3);
    browser.click("#revoke-session-1, #revoke-session-2, #revoke-session-3").await;
    browser.wait_for("#confirm-revoke-session").await;
    assert!(browser.text("#confirm-revoke-session").await.contains("signed out at once"));
    browser.check_page("account-security-signout-confirm-laptop").await;
    browser.click("[data-confirm-submit]").await;
    browser.wait_for_text(".notice", "Session signed out").await;
    assert_eq!(browser.script(rows).await, 2);
    browser.quit().await;
}

#[tokio::test]
async fn reloads_after_a_role_change_an_invite_and_a_password_change_land_on_real_pages() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    crate::accounts::member(&app, "dev@acme.test", "developer").await;
    owner_in(&browser, &app).await;

    // Role change: Post/Redirect/Get.
    browser.script("document.querySelector(\"tr[data-email='dev@acme.test'] select\").value = 'viewer'").await;
    browser.click("tr[data-email='dev@acme.test'] .role-form button").await;
    browser.wait_for_text(".notice", "Role changed to Viewer").await;
    assert!(browser.url().await.ends_with("/settings/team"), "{}", browser.url().await);
    browser.script("location.reload()").await;
    browser.wait_for_title("Team · Latchkey").await;

    // Invite: the link is shown once; a reload lands on the team page saying so.
    browser.fill("#invite-email", "new@acme.test").await;
    browser.click("form[action='/settings/team/invites'] button[type=submit]").await;
    browser.wait_for("#invite-link").await;
    let link = browser.text("#invite-link").await;
    assert!(link.contains("/invite/"), "{link}");
    check_both(&browser, "team-invite-reveal").await;
    browser.script("location.reload()").await;
    browser.wait_for_text(".notice", "The invite link was shown once").await;
    assert_eq!(browser.title().await, "Team · Latchkey");
    assert!(!browser.source().await.contains(&link));
    assert!(browser.text("#invites").await.contains("Developer"), "roles read as names");
    // Revoking the invite asks first.
    browser.click("#invites .button.danger").await;
    browser.wait_for("dialog[open]").await;
    assert!(browser.text("dialog[open]").await.contains("stops working at once"));
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for_text(".notice", "Invite revoked").await;

    // Password change: a reload lands on the security page.
    browser.goto(&app.url("/settings/security")).await;
    browser.fill("#current-password", OWNER_PASSWORD).await;
    browser.fill("#new-password", "a brand new password 456").await;
    browser.click("form[action='/settings/security/password'] button[type=submit]").await;
    browser.wait_for_text(".notice", "Password changed").await;
    assert!(browser.url().await.ends_with("/settings/security"), "{}", browser.url().await);
    browser.script("location.reload()").await;
    browser.wait_for_title("Security · Latchkey").await;
    // A wrong password re-renders with the page's address in the bar.
    browser.fill("#current-password", "not my password at all").await;
    browser.fill("#new-password", "another new password 789").await;
    browser.click("form[action='/settings/security/password'] button[type=submit]").await;
    browser.wait_for("#current_password-error").await;
    assert!(browser.url().await.ends_with("/settings/security"), "{}", browser.url().await);
    browser.script("location.reload()").await;
    browser.wait_for_title("Security · Latchkey").await;
    browser.quit().await;
}

#[tokio::test]
async fn an_app_page_tells_its_secrets_age_and_grace_and_rotation_asks_first() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let registered = crate::oauth::register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    owner_in(&browser, &app).await;
    browser.goto(&app.url("/settings/developer/oauth-apps")).await;
    browser.wait_for_title("OAuth Apps · Latchkey").await;
    check_both(&browser, "oauth-apps").await;

    let page = format!("/settings/developer/oauth-apps/{}", registered.client_id);
    browser.goto(&app.url(&page)).await;
    browser.wait_for_title("Acme Connector · Latchkey").await;
    assert!(browser.text("#app-team").await.contains("Acme"));
    assert!(browser.text("#app-registered").await.contains(OWNER_EMAIL));
    assert!(browser.text("#secret-age").await.contains("Made just now"), "{}", browser.text("#secret-age").await);
    assert!(browser.text("#secret-grace").await.contains("None working"));
    check_both(&browser, "oauth-app").await;

    // Rotate: a labelled dialog that says what happens; the secret shows once.
    browser.click("#rotate-secret").await;
    browser.wait_for("dialog[open]").await;
    let says = browser.text("dialog[open]").await;
    assert!(says.contains("The old secret keeps working for") && says.contains("shown once"), "{says}");
    browser.check_page("account-oauth-rotate-dialog-laptop").await;
    browser.click("dialog[open] [data-close-dialog]").await;
    browser.wait_gone("dialog").await;
    browser.click("#rotate-secret").await;
    browser.wait_for("dialog[open]").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for("#secret").await;
    let secret = browser.text("#secret").await;
    assert!(secret.starts_with("lkcs_"), "{secret}");
    assert!(browser.text("#secret-grace").await.contains("keeps working until"));
    check_both(&browser, "oauth-app-rotated").await;
    // A reload lands on a real page that says the secret was shown once.
    browser.script("location.reload()").await;
    browser.wait_for_text(".notice", "shown once").await;
    assert!(!browser.source().await.contains(&secret));
    // The app page now tells the grace of the previous secret.
    browser.goto(&app.url(&page)).await;
    browser.wait_for_text("#secret-grace", "keeps working until").await;
    assert!(browser.text("#secret-grace").await.contains("in 1 day"), "{}", browser.text("#secret-grace").await);

    // Delete asks first.
    browser.click("#delete-app").await;
    browser.wait_for("dialog[open]").await;
    assert!(browser.text("dialog[open]").await.contains("revoked at once"));
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for_title("OAuth Apps · Latchkey").await;
    assert!(browser.text(".notice").await.contains("App deleted"));
    browser.quit().await;
}

#[tokio::test]
async fn the_consent_screen_stands_alone_and_names_who_registered_the_app() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let registered = crate::oauth::register(&app, "confidential", REDIRECT, &["templates:read", "messages:send"]).await;
    let url = format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=templates:read%20messages:send&state=xyz",
        registered.client_id,
        latchkey::web::auth::url_encode(REDIRECT)
    );
    browser.goto(&app.url(&url)).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Authorize Acme Connector · Latchkey").await;
    assert!(!browser.exists("#sidebar").await && !browser.exists("[aria-current=page]").await, "no app navigation");
    assert!(browser.text("#consent-owner").await.contains("Acme"));
    assert!(browser.text("#consent-owner").await.contains("just now"));
    assert!(browser.text("#consent-scopes").await.contains("Read your templates"));
    assert!(browser.text("#consent-who").await.contains(OWNER_EMAIL));
    assert!(browser.text("#consent-redirect").await.contains("127.0.0.1:9"));
    assert!(browser.exists("#approve").await && browser.exists("#deny").await);
    check_both(&browser, "consent").await;
    browser.quit().await;
}

#[tokio::test]
async fn after_setup_and_after_joining_the_sign_in_page_knows_the_email() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let token = app.setup_token.clone().unwrap();
    browser.goto(&app.url(&format!("/setup?token={token}"))).await;
    browser.wait_for_title("Set up · Latchkey").await;
    check_both(&browser, "setup").await;
    browser.fill("#team_name", "Acme").await;
    browser.fill("#email", OWNER_EMAIL).await;
    browser.fill("#password", OWNER_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_title("Sign in · Latchkey").await;
    assert!(browser.text(".notice").await.contains("Your team is ready"));
    assert_eq!(browser.script("return document.getElementById('email').value").await, OWNER_EMAIL);
    assert_eq!(browser.script("return document.activeElement.id").await, "password", "the password is next");
    check_both(&browser, "login-prefilled").await;
    browser.fill("#password", OWNER_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_title("Team · Latchkey").await;

    // Joining by invite: the same.
    browser.fill("#invite-email", "dev@acme.test").await;
    browser.click("form[action='/settings/team/invites'] button[type=submit]").await;
    let link = browser.text("#invite-link").await;
    let path = link[link.find("/invite/").unwrap()..].to_owned();
    browser.click(".sidebar-foot button").await;
    browser.wait_for_title("Sign in · Latchkey").await;
    browser.goto(&app.url(&path)).await;
    browser.wait_for_title("Join Acme · Latchkey").await;
    assert!(browser.text("main").await.contains("Developer"));
    check_both(&browser, "invite").await;
    browser.fill("#password", crate::accounts::DEV_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_title("Sign in · Latchkey").await;
    assert_eq!(browser.script("return document.getElementById('email').value").await, "dev@acme.test");
    browser.fill("#password", crate::accounts::DEV_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_title("Team · Latchkey").await;
    browser.quit().await;
}
