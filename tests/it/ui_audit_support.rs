//! Browser tests: ui_audit_support (see webdriver.rs for check_page, resize, axe).
//! The audit log as sentences, the support console's search by POST, and
//! support's revoke that asks first, at a laptop's and a phone's size, with
//! and without JavaScript.

use serde_json::json;

use crate::api_keys::{api_delete, api_post, create_key};
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, spawn_app};
use crate::support::{SUPPORT_EMAIL, SUPPORT_PASSWORD, support_user};
use crate::webdriver::{Browser, LAPTOP, PHONE};

const SIZES: [((u32, u32), &str); 2] = [(LAPTOP, "laptop"), (PHONE, "phone")];

/// A team with a scripted history: a key created, rolled and revoked, a
/// developer invited who signs in and is made an admin, an app registered.
async fn team_with_history() -> (TestApp, String) {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    assert!(
        api_post(&app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 86400}))
            .await
            .status()
            .is_success()
    );
    assert!(api_delete(&app, &format!("/api/v1/api-keys/{id}")).await.status().is_success());
    crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let dev_id = crate::accounts::member_id(&app.get_html("/settings/team").await, "dev@acme.test");
    app.post_form("/settings/team", &format!("/settings/team/members/{dev_id}/role"), &[("role", "admin")]).await;
    crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    (app, id)
}

/// Whether an element lies inside the viewport across (not cut off, not hidden).
/// Makes the support user and signs the browser in as them.
async fn support_signed_in(browser: &Browser, app: &TestApp) {
    support_user(app).await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(SUPPORT_EMAIL, SUPPORT_PASSWORD, "Support · Latchkey").await;
}

async fn fully_visible(browser: &Browser, css: &str) -> bool {
    let v = browser
        .script(&format!(
            "var e = document.querySelector({css:?}); if (!e) return false; var r = e.getBoundingClientRect();\
             return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth;"
        ))
        .await;
    v == json!(true)
}

#[tokio::test]
async fn ui_the_audit_log_reads_as_sentences_and_fits_a_laptop_and_a_phone() {
    let Some(browser) = Browser::start().await else { return };
    let (app, key_id) = team_with_history().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.goto(&app.url("/settings/team/audit")).await;
        browser.wait_for("#audit li.event").await;
        browser.check_page(&format!("audit-log-{name}")).await;
        assert!(fully_visible(&browser, "#csv-export").await, "{name}: Export CSV is on screen");
        browser.wait_for_text("#audit", "changed dev@acme.test’s role from Developer to Admin").await;
        browser.wait_for_text("#audit", "registered the app Acme Connector").await;
        browser.wait_for_text("#audit", "dev@acme.test signed in").await;
        let revoked = browser.text("#audit li[data-action='api_key.revoked'] .event-sentence").await;
        assert!(revoked.starts_with(&format!("{OWNER_EMAIL} revoked key Billing worker (lk_")), "{revoked}");
        assert!(browser.exists(&format!("#audit a.event-object[href='/settings/developer/api-keys/{key_id}']")).await);
        // Details open on demand: labelled values, moments as relative times.
        let rolled = "#audit li[data-action='api_key.rolled'] details.event-details";
        assert_eq!(browser.script(&format!("return document.querySelector({rolled:?}).open")).await, json!(false));
        browser.click(&format!("{rolled} > summary")).await;
        browser.wait_for_text(rolled, "24 hours").await;
        assert!(browser.exists(&format!("{rolled}[open] dd time[datetime]")).await);
        browser.check_page(&format!("audit-log-details-{name}")).await;
        // A "from" after the "to": a field error, and no events listed.
        browser
            .script("document.getElementById('from').value = '2026-03-02'; document.getElementById('to').value = '2026-03-01'; return true;")
            .await;
        browser.click(".filters button[type=submit]").await;
        browser.wait_for_text("#from-error", "after the “To” date").await;
        assert!(!browser.exists("#audit li.event").await, "{name}: no query ran");
        browser.check_page(&format!("audit-log-bad-dates-{name}")).await;
    }
    browser.quit().await;
}

#[tokio::test]
async fn ui_support_search_keeps_a_pasted_key_out_of_the_address_and_every_page_fits() {
    let Some(browser) = Browser::start().await else { return };
    let (app, _) = team_with_history().await;
    let key = create_key(&app, json!({"name": "Leaked key", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    support_signed_in(&browser, &app).await;
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.goto(&app.url("/support")).await;
        browser.check_page(&format!("support-console-{name}")).await;
        browser.fill("#q", &secret).await;
        browser.click(".search-form button").await;
        browser.wait_for_text("#key-results", "Leaked key").await;
        let href = browser.script("return location.href").await;
        let href = href.as_str().unwrap();
        assert!(!href.contains(&secret) && !href.contains(&secret[3..]), "{name}: the key is not in {href}");
        assert!(!browser.source().await.contains(&secret), "{name}: nor in the page");
        assert_eq!(browser.text("#q").await, "", "not echoed into the field");
        browser.check_page(&format!("support-results-{name}")).await;
        // A reload of the results lands on the console.
        browser.goto(href).await;
        browser.wait_for_title("Support · Latchkey").await;
        assert!(browser.url().await.ends_with("/support"), "{}", browser.url().await);
        // A whole key in an address is refused without echo.
        browser.goto(&app.url(&format!("/support?q={secret}"))).await;
        browser.wait_for_text("#q-error", "search form").await;
        assert!(!browser.source().await.contains(&secret));
        browser.check_page(&format!("support-refused-{name}")).await;
        // Every console page fits and is accessible.
        browser.goto(&app.url("/support")).await;
        browser.fill("#q", "acme").await;
        browser.click(".search-form button").await;
        browser.wait_for("#team-results a").await;
        browser.click("#team-results a").await;
        browser.wait_for_title("Acme · Support · Latchkey").await;
        browser.wait_for_text("#activity", "registered the app Acme Connector").await;
        assert!(!browser.exists("#activity code").await || !browser.text("#activity").await.contains("api_key."));
        browser.check_page(&format!("support-team-{name}")).await;
        browser.click("#members a").await;
        browser.wait_for_text("#activity", "signed in").await;
        browser.check_page(&format!("support-user-{name}")).await;
        browser.goto(&app.url("/support")).await;
        browser.fill("#q", "acme").await;
        browser.click(".search-form button").await;
        browser.click("#team-results a").await;
        browser.click("a[href$='/audit']").await;
        browser.wait_for("#audit li.event").await;
        browser.check_page(&format!("support-team-audit-{name}")).await;
        browser.goto(&app.url(&format!("/support/keys/{}", key["id"].as_str().unwrap()))).await;
        browser.wait_for_title("Leaked key · Support · Latchkey").await;
        browser.check_page(&format!("support-key-{name}")).await;
    }
    browser.quit().await;
}

#[tokio::test]
async fn ui_support_revoke_asks_in_a_dialog_and_reports() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    support_signed_in(&browser, &app).await;
    for (size, name) in SIZES {
        let key = create_key(&app, json!({"name": format!("Key on a {name}"), "scopes": ["templates:read"]})).await;
        let page = format!("/support/keys/{}", key["id"].as_str().unwrap());
        browser.resize(size).await;
        browser.goto(&app.url(&page)).await;
        browser.wait_for("#revoke-key").await;
        // The dialog opens, says what happens, and Escape closes it, focus back on the button.
        browser.click("#revoke-key").await;
        browser.wait_for("dialog#confirm-revoke[open]").await;
        browser.wait_for_text("#confirm-revoke", "fail at once").await;
        browser.check_page(&format!("support-revoke-dialog-{name}")).await;
        browser.press("\u{E00C}").await;
        browser.wait_gone("dialog#confirm-revoke").await;
        assert_eq!(browser.script("return document.activeElement.id").await, json!("revoke-key"));
        assert!(browser.url().await.ends_with(&page), "the dialog changes no address");
        // No reason: the key page again with the error, at the key page's address.
        browser.click("#revoke-key").await;
        browser.wait_for("dialog#confirm-revoke[open]").await;
        browser.click("#confirm-revoke [data-confirm-submit]").await;
        browser.wait_for("#reason-error").await;
        assert!(browser.url().await.ends_with(&page), "{}", browser.url().await);
        browser.check_page(&format!("support-revoke-error-{name}")).await;
        browser.fill("#reason", "Posted in a public gist").await;
        browser.click("#revoke-submit").await;
        browser.wait_for_text("#revocation", "Revoked by Latchkey support: Posted in a public gist").await;
        browser.wait_for_text(".notice", "Key revoked").await;
        assert!(browser.url().await.ends_with(&page));
        assert!(!browser.exists("#revoke-key").await);
        // Through the dialog in one go (another key).
        let other = create_key(&app, json!({"name": format!("Other on a {name}"), "scopes": ["templates:read"]})).await;
        let other_page = format!("/support/keys/{}", other["id"].as_str().unwrap());
        browser.goto(&app.url(&other_page)).await;
        browser.click("#revoke-key").await;
        browser.fill("#confirm-revoke-reason", "Found in a public GitHub repository").await;
        browser.click("#confirm-revoke [data-confirm-submit]").await;
        browser.wait_for_text("#revocation", "Found in a public GitHub repository").await;
        assert!(browser.url().await.ends_with(&other_page));
        browser.check_page(&format!("support-revoked-{name}")).await;
    }
    browser.quit().await;
}

#[tokio::test]
async fn ui_support_search_and_revoke_work_without_javascript() {
    let Some(browser) = Browser::start_without_js().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "No script key", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let page = format!("/support/keys/{}", key["id"].as_str().unwrap());
    support_signed_in(&browser, &app).await;
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.goto(&app.url("/support")).await;
        browser.fill("#q", &secret).await;
        browser.click(".search-form button").await;
        browser.wait_for_text("#key-results", "No script key").await;
        let url = browser.url().await;
        assert!(url.ends_with("/support/search") && !url.contains(&secret[3..]), "{url}");
        browser.check_page(&format!("support-results-nojs-{name}")).await;
    }
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.goto(&app.url(&page)).await;
        browser.click("#revoke-key").await;
        browser.wait_for_title("Revoke No script key? · Latchkey").await;
        assert!(browser.url().await.ends_with(&format!("{page}/revoke")));
        browser.wait_for_text("#confirm-revoke", "fail at once").await;
        browser.check_page(&format!("support-revoke-page-nojs-{name}")).await;
        if name == "laptop" {
            // Cancel goes back to the key page.
            browser.click("#confirm-revoke a.button").await;
            browser.wait_for_title("No script key · Support · Latchkey").await;
            continue;
        }
        browser.fill("#confirm-revoke-reason", "Posted in a public gist").await;
        browser.click("#confirm-revoke [data-confirm-submit]").await;
        browser.wait_for_text("#revocation", "Revoked by Latchkey support: Posted in a public gist").await;
        assert!(browser.url().await.ends_with(&page));
    }
    browser.quit().await;
}
