//! Browser tests: ui_keys (see webdriver.rs for check_page, resize, axe).
//! The API keys pages at a laptop and a phone: the list fits, the scope
//! picker's presets (with and without JavaScript), confirmations and toasts,
//! reloads after a reveal, the Edit card, search and the first-run guide.

use serde_json::{Value, json};

use crate::api_keys::{api_post, create_key};
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, spawn_app};
use crate::webdriver::{Browser, LAPTOP, PHONE};

const KEYS: &str = "/settings/developer/api-keys";

async fn signed_in(browser: &Browser, app: &TestApp) {
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
}

async fn key_names(app: &TestApp) -> Vec<String> {
    let list: Value = app.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    list["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect()
}

async fn checked(browser: &Browser, scope: &str) -> bool {
    browser.script(&format!("return document.querySelector(\"input[name=scopes][value='{scope}']\").checked")).await
        == json!(true)
}

#[tokio::test]
async fn the_key_list_fits_a_laptop_and_a_phone_with_many_keys_and_a_rolled_pair() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    signed_in(&browser, &app).await;

    // The empty page is a first-run guide.
    browser.goto(&app.url(KEYS)).await;
    browser.wait_for("#first-run").await;
    assert!(browser.text("#first-curl").await.contains("/api/v1/auth/test"));
    for (size, name) in [(LAPTOP, "keys-empty-laptop"), (PHONE, "keys-empty-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
    }

    let all = ["templates:read", "templates:write", "contacts:read", "contacts:write", "messages:send"];
    for i in 0..21 {
        let long = format!("Production billing reconciliation worker for the European region number {i:02}");
        let desc = "Runs nightly against the ledger, reconciles invoices with the payment provider and reports drift to the finance channel";
        create_key(
            &app,
            json!({"name": long, "description": desc, "scopes": all, "expires_at": "2031-01-31T00:00:00Z"}),
        )
        .await;
    }
    let old = create_key(&app, json!({"name": "Rolled worker", "scopes": ["templates:read"]})).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    let res = api_post(&app, &format!("/api/v1/api-keys/{old_id}/roll"), &json!({"grace_seconds": 3600})).await;
    let rolled: Value = res.json().await.unwrap();
    let new_id = rolled["data"]["id"].as_str().unwrap().to_owned();

    browser.resize(LAPTOP).await;
    browser.goto(&app.url(&format!("{KEYS}?status=all"))).await;
    browser.wait_for("#keys").await;
    // Rolled pairs are linked; the old key offers no Roll, the new one does.
    assert!(browser.text(&format!("#key-{old_id}")).await.contains("Replaced by"));
    assert!(browser.text(&format!("#key-{new_id}")).await.contains("Replaces"));
    assert!(!browser.exists(&format!("#roll-{old_id}")).await && browser.exists(&format!("#roll-{new_id}")).await);
    // Only badges are coloured; times are relative with the exact one on hover.
    assert_eq!(browser.script("return document.querySelectorAll('#keys tr[class]').length").await, json!(0));
    assert!(browser.exists("#keys time[datetime][title]").await);
    assert!(browser.text("#keys").await.contains("5 scopes"));
    for (size, name) in [(LAPTOP, "keys-list-laptop"), (PHONE, "keys-list-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
        // The actions menu opens within the page.
        browser.click(&format!("#key-{new_id} details.menu summary")).await;
        browser.wait_for(&format!("#roll-{new_id}")).await;
        browser.assert_no_horizontal_scroll(&format!("{name} with the menu open")).await;
        browser.press("\u{E00C}").await;
    }
    for (size, name) in [(LAPTOP, "key-detail-laptop"), (PHONE, "key-detail-phone")] {
        browser.resize(size).await;
        browser.goto(&app.url(&format!("{KEYS}/{old_id}"))).await;
        browser.wait_for("#key-scopes").await;
        browser.check_page(name).await;
    }
    assert!(browser.text("#key-scopes").await.contains("Read your templates"));
    browser.quit().await;
}

#[tokio::test]
async fn presets_tick_the_boxes_and_a_departure_switches_to_custom() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    signed_in(&browser, &app).await;
    for (size, name) in [(LAPTOP, "keys-create-laptop"), (PHONE, "keys-create-phone")] {
        browser.resize(size).await;
        browser.goto(&app.url(KEYS)).await;
        browser.wait_for("#scope-picker").await;
        browser.click("#preset-read_only").await;
        assert!(checked(&browser, "templates:read").await && !checked(&browser, "templates:write").await);
        browser.wait_for_text("#scope-summary", "Read your templates").await;
        browser.click("#preset-full").await;
        assert!(checked(&browser, "templates:write").await && !checked(&browser, "admin").await);
        browser.wait_for_text("#scope-summary", "Create and change your templates").await;
        // Unticking one box departs from the preset: the radio says Custom.
        browser.click("input[name=scopes][value='templates:write']").await;
        assert_eq!(browser.script("return document.getElementById('preset-custom').checked").await, json!(true));
        assert!(!browser.text("#scope-summary").await.contains("Create and change your templates"));
        // admin carries a visible warning.
        assert!(browser.text("#admin-warning").await.contains("Admin is everything"));
        // No preview button with JavaScript: the boxes already say it.
        assert_eq!(browser.css("#apply-preset", "display").await, "none");
        browser.check_page(name).await;
    }
    browser.fill("#key-name", "Reader").await;
    browser.click("#preset-read_only").await;
    browser.click("#create-key").await;
    browser.wait_for_title("Your new key · Latchkey").await;
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert!(list["data"][0]["scopes"].as_array().unwrap().iter().all(|s| s.as_str().unwrap().ends_with(":read")));
    browser.quit().await;
}

#[tokio::test]
async fn without_javascript_a_preview_fills_the_boxes_and_a_contradiction_is_refused() {
    let Some(browser) = Browser::start_without_js().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    signed_in(&browser, &app).await;
    browser.goto(&app.url(KEYS)).await;
    browser.fill("#key-name", "Previewed").await;
    browser.click("#preset-read_only").await;
    browser.click("#apply-preset").await;
    browser.wait_for_text("#scope-summary", "This key will be able to:").await;
    assert!(checked(&browser, "templates:read").await && !checked(&browser, "templates:write").await);
    assert!(key_names(&app).await.is_empty(), "a preview creates nothing");
    for (size, name) in [(LAPTOP, "keys-preview-nojs-laptop"), (PHONE, "keys-preview-nojs-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
    }
    // Read-only with a write box ticked: refused, nothing created.
    browser.click("input[name=scopes][value='templates:write']").await;
    browser.click("#create-key").await;
    browser.wait_for_text("#scopes-error", "Read-only cannot include templates:write").await;
    assert!(key_names(&app).await.is_empty(), "a contradiction creates nothing");

    // The confirmation page works without JavaScript.
    let key = create_key(&app, json!({"name": "No script", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap();
    browser.goto(&app.url(KEYS)).await;
    browser.click(&format!("#key-{id} details.menu summary")).await;
    browser.click(&format!("#revoke-{id}")).await;
    browser.wait_for_title("Revoke No script? · Latchkey").await;
    assert!(browser.text(".confirm-card").await.contains("cannot be undone"));
    for (size, name) in [(LAPTOP, "key-revoke-confirm-laptop"), (PHONE, "key-revoke-confirm-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
    }
    browser.click("[data-confirm-submit]").await;
    browser.wait_for_title("API Keys · Latchkey").await;
    assert!(browser.text(".notice").await.contains("Revoked No script"));
    assert!(browser.text(&format!("#key-{id}")).await.contains("Revoked"));
    browser.quit().await;
}

#[tokio::test]
async fn revoke_and_roll_ask_in_a_dialog_report_and_reloads_land_on_friendly_pages() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    signed_in(&browser, &app).await;
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.resize(size).await;
        let key = create_key(&app, json!({"name": format!("Doomed {label}"), "scopes": ["templates:read"]})).await;
        let id = key["id"].as_str().unwrap();
        browser.goto(&app.url(KEYS)).await;
        browser.click(&format!("#key-{id} details.menu summary")).await;
        browser.click(&format!("#revoke-{id}")).await;
        browser.wait_for("dialog[open] [data-confirm-submit]").await;
        assert!(browser.text("dialog[open]").await.contains("fail at once; this cannot be undone"));
        browser.check_page(&format!("key-revoke-dialog-{label}")).await;
        browser.click("dialog[open] [data-confirm-submit]").await;
        browser.wait_for_text("#toasts", &format!("Revoked Doomed {label}")).await;
        browser.wait_for_text(&format!("#key-{id}"), "Revoked").await;
        browser.wait_gone("dialog[open]").await;
        let focused = browser
            .script("var a = document.activeElement; return a && a.closest('tr') ? a.closest('tr').id : ''")
            .await;
        assert_eq!(focused, json!(format!("key-{id}")));
    }

    // Create, then reload: the friendly "shown once" page, never the secret.
    browser.resize(LAPTOP).await;
    browser.goto(&app.url(KEYS)).await;
    browser.fill("#key-name", "Fresh").await;
    browser.click("input[name=scopes][value='templates:read']").await;
    browser.click("#create-key").await;
    browser.wait_for_title("Your new key · Latchkey").await;
    let secret = browser.text("#secret").await;
    assert!(browser.url().await.ends_with("/created"), "{}", browser.url().await);
    browser.script("location.reload()").await;
    browser.wait_for("#shown-once").await;
    assert!(!browser.source().await.contains(&secret));
    for (size, name) in [(LAPTOP, "key-shown-once-laptop"), (PHONE, "key-shown-once-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
    }

    // Roll from the key page: the dialog names the grace; a reload lands on the rolled notice.
    browser.resize(LAPTOP).await;
    browser.click("[id^='roll-key_']").await;
    browser.wait_for("dialog[open] select[name=grace]").await;
    let said = browser.text("dialog[open]").await;
    assert!(said.contains("keeps working for 24 hours"), "{said}");
    assert!(browser.text("dialog[open] select").await.contains("7 days"));
    browser.check_page("key-roll-dialog-laptop").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for_title("Your new key · Latchkey").await;
    let rolled_secret = browser.text("#secret").await;
    assert!(browser.url().await.ends_with("/roll"));
    browser.script("location.reload()").await;
    browser.wait_for("#rolled-notice").await;
    assert!(browser.text("#rolled-notice").await.contains("its new secret was shown once then"));
    assert!(!browser.source().await.contains(&rolled_secret));
    browser.resize(PHONE).await;
    browser.check_page("key-rolled-notice-phone").await;
    browser.quit().await;
}

#[tokio::test]
async fn a_key_is_renamed_and_the_list_is_searched() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    for i in 0..25 {
        create_key(&app, json!({"name": format!("Worker {i:02}"), "scopes": ["templates:read"]})).await;
    }
    signed_in(&browser, &app).await;
    browser.goto(&app.url(&format!("{KEYS}/{id}"))).await;
    browser.click("#edit-link").await;
    browser.fill("#edit-name", "Invoice worker").await;
    browser.fill("#edit-description", "Sends invoices").await;
    browser.click("#edit-save").await;
    browser.wait_for_text(".notice", "Saved Invoice worker").await;
    assert!(browser.text("#key-title").await.contains("Invoice worker"));
    let history = browser.text("#history").await;
    assert!(history.contains("changed key Invoice worker") && history.contains("(name, description)"), "{history}");

    for (size, name) in [(LAPTOP, "keys-search-laptop"), (PHONE, "keys-search-phone")] {
        browser.resize(size).await;
        browser.goto(&app.url(KEYS)).await;
        browser.fill("#key-search", "invoice").await;
        browser.click(".key-search button[type=submit]").await;
        browser.wait_for("#clear-search").await;
        assert_eq!(browser.script("return document.querySelectorAll('#keys tbody tr').length").await, json!(1));
        browser.check_page(name).await;
    }
    // A whole key pasted in the search is refused and leaves the address bar.
    browser.fill("#key-search", key["key"].as_str().unwrap()).await;
    browser.click(".key-search button[type=submit]").await;
    browser.wait_for("#q-error").await;
    assert!(!browser.url().await.contains(key["key"].as_str().unwrap()));
    assert!(!browser.source().await.contains(key["key"].as_str().unwrap()));
    browser.quit().await;
}
