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
