//! Browser tests: ui_webhooks (see webdriver.rs for check_page, resize, axe).
//! The webhooks pages at a laptop's and a phone's size: the list and its
//! form, the secret shown once, the deliveries with their Resend button, and
//! the rotation that asks first.

use serde_json::json;

use crate::api_keys::create_key;
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, spawn_app_with};
use crate::webdriver::{Browser, LAPTOP, PHONE};
use crate::webhooks::receiver::{Mode, Receiver};
use crate::webhooks::{ALLOW_PRIVATE, PAGE, add_endpoint, deliver_all};

const SIZES: [((u32, u32), &str); 2] = [(LAPTOP, "laptop"), (PHONE, "phone")];

#[tokio::test]
async fn ui_webhooks_pages_fit_a_laptop_and_a_phone_and_show_the_secret_once() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app_with(Backend::Sqlite, &[ALLOW_PRIVATE]).await.unwrap();
    app.owner_session().await;
    let rx = Receiver::start().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;

    browser.goto(&app.url(PAGE)).await;
    browser.wait_for("#no-endpoints").await;
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.check_page(&format!("webhooks-empty-{name}")).await;
    }

    // Added in the browser: the secret is shown once.
    browser.resize(LAPTOP).await;
    browser.fill("#webhook-url", &rx.url("/hooks/latchkey")).await;
    browser.click("#all-events").await;
    browser.click("#add-endpoint-button").await;
    browser.wait_for("#secret").await;
    assert!(browser.text("#secret").await.starts_with("whsec_"));
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.check_page(&format!("webhook-secret-{name}")).await;
    }

    // A second endpoint that fails, so the list has both kinds of status.
    rx.answer(Mode::Status(200));
    let failing = Receiver::start().await;
    failing.answer(Mode::Status(500));
    let (bad, _) =
        add_endpoint(&app, &failing.url("/a/rather/long/path/that/should/wrap/on/a/phone"), &["api_key.created"]).await;
    create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    create_key(&app, json!({"name": "Reports", "scopes": ["templates:read"]})).await;
    deliver_all(&app).await;

    browser.goto(&app.url(PAGE)).await;
    browser.wait_for("#endpoints").await;
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.check_page(&format!("webhooks-list-{name}")).await;
    }
    browser.goto(&app.url(&format!("{PAGE}/{bad}"))).await;
    browser.wait_for("#delivery-list").await;
    assert!(browser.text("#delivery-list").await.contains("Pending"));
    assert!(!browser.exists("#secret").await, "the secret is not shown again");
    for (size, name) in SIZES {
        browser.resize(size).await;
        browser.check_page(&format!("webhook-deliveries-{name}")).await;
    }

    // Resend swaps the list in place (a message still waiting is not queued
    // twice); rotation asks first, in a dialog.
    browser.resize(LAPTOP).await;
    let first = crate::webhooks::deliveries(&app, &bad)[0].id;
    browser.click(&format!("#resend-{first}")).await;
    browser.wait_ready().await;
    browser.wait_for("#delivery-list").await;
    assert_eq!(crate::webhooks::deliveries(&app, &bad).len(), 2, "it waits already");
    browser.click("#rotate-secret").await;
    browser.wait_for("dialog#confirm-rotate").await;
    browser.check_page("webhook-rotate-dialog-laptop").await;
}
