//! Rotations watched: a rolled key's grace and an OAuth app's previous client
//! secret, side by side with their replacements; "Finish now" after a quiet
//! period; the one-time extension; the warning about busy rotations.

use oauth2::TokenResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_post, call, create_key};
use crate::both;
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, attr_after, location, spawn_app};
use crate::oauth::{App, REDIRECT, client, http, register};
use crate::webdriver::{Browser, LAPTOP, PHONE};

pub const KEYS: &str = "/settings/developer/api-keys";
pub const APPS: &str = "/settings/developer/oauth-apps";

/// A key made and rolled with `grace` seconds: (old id, old secret, new id, new secret).
pub async fn rolled_key(app: &TestApp, name: &str, grace: i64) -> (String, String, String, String) {
    let old = create_key(app, json!({"name": name, "scopes": ["templates:read"]})).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    let res = api_post(app, &format!("/api/v1/api-keys/{old_id}/roll"), &json!({"grace_seconds": grace})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new: Value = res.json().await.unwrap();
    let new_id = new["data"]["id"].as_str().unwrap().to_owned();
    let new_secret = new["data"]["key"].as_str().unwrap().to_owned();
    (old_id, old["key"].as_str().unwrap().to_owned(), new_id, new_secret)
}

/// `n` authenticated requests with `key`.
async fn use_key(app: &TestApp, key: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(call(app, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
    }
}

/// The number a cell of the rotation card shows.
pub fn cell(html: &str, id: &str) -> String {
    attr_after(html, &format!(r#"id="{id}">"#)).unwrap_or_else(|| panic!("no #{id} on the page"))
}

/// How many audit events of `action` the database holds.
pub fn events(app: &TestApp, action: &str) -> usize {
    let action = action.to_owned();
    app.db()
        .run_sync(move |c| {
            latchkey::store::models::AuditEvent::recent_by_action(c, &action, 1000)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
        .len()
}

/// A key as stored.
pub fn stored(app: &TestApp, id: &str) -> latchkey::store::models::ApiKey {
    let id = id.to_owned();
    app.db()
        .run_sync(move |c| latchkey::store::models::ApiKey::find(c, &id).map_err(latchkey::store::StoreError::from))
        .unwrap()
        .unwrap()
}

/// An app as stored.
pub fn stored_app(app: &TestApp, id: &str) -> latchkey::store::models::OauthClient {
    let id = id.to_owned();
    app.db()
        .run_sync(move |c| {
            latchkey::store::models::OauthClient::find(c, &id).map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
        .unwrap()
}

/// Rotates an app's secret from its page with `grace` seconds; returns the new secret.
pub async fn rotate_secret(app: &TestApp, client_id: &str, grace: &str) -> String {
    let page = format!("{APPS}/{client_id}");
    let res = app.post_form(&page, &format!("{page}/rotate"), &[("grace", grace)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    attr_after(&res.text().await.unwrap(), r#"<code id="secret">"#).unwrap()
}

/// A `client_credentials` token request with `secret`: whether it was granted.
pub async fn token_with(app: &TestApp, client_id: &str, secret: &str) -> Result<(), String> {
    let a = App { client_id: client_id.to_owned(), secret: Some(secret.to_owned()) };
    let c = client(app, &a, REDIRECT);
    c.exchange_client_credentials()
        .request_async(&http())
        .await
        .map(|t| assert!(!t.access_token().secret().is_empty()))
        .map_err(|e| format!("{e:?}"))
}

async fn the_card_shows_old_and_new_traffic_side_by_side(app: TestApp) {
    app.owner_session().await;
    let (old_id, old_secret, new_id, new_secret) = rolled_key(&app, "watched", 86_400).await;
    let plain = create_key(&app, json!({"name": "plain", "scopes": ["templates:read"]})).await;
    use_key(&app, &old_secret, 3).await;
    use_key(&app, &new_secret, 2).await;
    app.flush_usage().await;
    for id in [&old_id, &new_id] {
        let html = app.get_html(&format!("{KEYS}/{id}")).await;
        assert!(html.contains("Rotation in progress"), "{id}");
        assert_eq!(cell(&html, "rotation-old-requests"), "3");
        assert_eq!(cell(&html, "rotation-new-requests"), "2");
        assert_eq!(cell(&html, "rotation-old-addresses"), "1");
        assert_eq!(cell(&html, "rotation-new-addresses"), "1");
        assert!(html.contains(r#"id="rotation-hours""#) && html.contains("<td>3</td><td>2</td>"), "{html}");
        assert!(html.contains(&format!(r#"action="{KEYS}/{id}/finish""#)));
        assert!(!html.contains(r#"id="rotation-busy""#), "a day of grace left is not near its end");
    }
    let html = app.get_html(&format!("{KEYS}/{}", plain["id"].as_str().unwrap())).await;
    assert!(!html.contains("Rotation in progress"), "a key in no roll shows no card");
    // A viewer sees the card, without its actions.
    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let html = viewer.get_html(&format!("{KEYS}/{old_id}")).await;
    assert!(html.contains("Rotation in progress") && !html.contains(r#"id="finish-rotation""#));
}
both!(the_card_shows_old_and_new_traffic_side_by_side);

async fn finish_now_waits_for_the_quiet_period_then_ends_the_old_key_at_once(app: TestApp) {
    app.owner_session().await;
    let (old_id, old_secret, new_id, new_secret) = rolled_key(&app, "finished", 86_400).await;
    use_key(&app, &old_secret, 1).await;
    app.flush_usage().await;
    let page = format!("{KEYS}/{new_id}");
    // The confirmation changes nothing.
    let confirm = app.get_html(&format!("{page}/finish?quiet=3600")).await;
    assert!(confirm.contains("End grace now") && confirm.contains(r#"<option value="3600" selected>"#), "{confirm}");
    assert_eq!(events(&app, "api_key.grace_finished"), 0);
    // Refused while the old key is busy: the page again, the reason beside the field.
    let res = app.post_form(&page, &format!("{page}/finish"), &[("quiet", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="quiet-error">The old key was used less than a minute ago"#), "{html}");
    use_key(&app, &old_secret, 1).await;
    app.flush_usage().await;
    // Twenty minutes later (within the session's idle time): too recent for
    // an hour of quiet, enough for fifteen minutes.
    app.clock().advance(20 * 60);
    let res = app.post_form(&page, &format!("{page}/finish"), &[("quiet", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("The old key was used 20 minutes ago"));
    let res = app.post_form(&page, &format!("{page}/finish"), &[("quiet", "900")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), page);
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::UNAUTHORIZED);
    use_key(&app, &new_secret, 1).await;
    assert_eq!(events(&app, "api_key.grace_finished"), 1);
    let html = app.get_html(&page).await;
    assert!(html.contains("no longer works") && !html.contains("Rotation in progress"), "{html}");
    assert!(app.get_html(&format!("{KEYS}/{old_id}")).await.contains("ended the grace of the old key"));
    // Ended: a second finish finds no grace; its confirmation sends back to the page.
    let res = app.post_form(&page, &format!("{page}/finish"), &[("quiet", "900")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(location(&app.get(&format!("{page}/finish?quiet=900")).await), page);
}
both!(finish_now_waits_for_the_quiet_period_then_ends_the_old_key_at_once);

async fn the_grace_is_extended_once_within_seven_days_and_the_teams_maximum(app: TestApp) {
    app.owner_session().await;
    let (old_id, old_secret, _, _) = rolled_key(&app, "busy", 3600).await;
    let (ended, _, ended_new, _) = rolled_key(&app, "ended", 0).await;
    let (aged, ..) = rolled_key(&app, "aged", 3600).await;
    made_ago(&app, &aged, 86_400 - 1800);
    use_key(&app, &old_secret, 1).await;
    app.flush_usage().await;
    // Busy near the deadline: a banner on the key's page and on its row in the list.
    let page = format!("{KEYS}/{old_id}");
    let html = app.get_html(&page).await;
    assert!(html.contains(r#"id="rotation-busy""#) && html.contains(r#"id="extend-rotation""#), "{html}");
    assert!(app.get_html(KEYS).await.contains(&format!(r#"id="busy-{old_id}""#)));
    let res = app.post_form(KEYS, &format!("{KEYS}/policy"), &[("max_lifetime_days", "1")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The confirmation changes nothing; the extension is bounded by the team's maximum.
    let before = stored(&app, &old_id);
    assert!(app.get_html(&format!("{page}/extend")).await.contains("Extend grace"));
    assert_eq!(stored(&app, &old_id).expires_at, before.expires_at);
    let res = app.post_form(&page, &format!("{page}/extend"), &[("extend", "604800")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    let after = stored(&app, &old_id);
    assert_eq!(after.expires_at, Some(before.created_at + 86_400), "the team allows keys one day");
    assert!(after.grace_extended_at.is_some());
    assert_eq!(events(&app, "api_key.grace_extended"), 1);
    use_key(&app, &old_secret, 1).await;
    // Once per roll.
    let res = app.post_form(&page, &format!("{page}/extend"), &[("extend", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("extended already"));
    assert_eq!(location(&app.get(&format!("{page}/extend")).await), page, "nothing to confirm");
    // Only while in grace: a roll with no grace has none to extend.
    for id in [&ended, &ended_new] {
        let page = format!("{KEYS}/{id}");
        let res = app.post_form(&page, &format!("{page}/extend"), &[("extend", "3600")]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(res.text().await.unwrap().contains("not in the grace period"));
    }
    // Nothing left under the team's maximum: a key made most of a day ago.
    let aged_page = format!("{KEYS}/{aged}");
    let res = app.post_form(&aged_page, &format!("{aged_page}/extend"), &[("extend", "86400")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("cannot be extended"));
    // Never past seven days from now: a grace of seven days has nothing left.
    let res = app.post_form(KEYS, &format!("{KEYS}/policy"), &[("max_lifetime_days", "")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (week_id, ..) = rolled_key(&app, "week", 7 * 86_400).await;
    let week = format!("{KEYS}/{week_id}");
    let res = app.post_form(&week, &format!("{week}/extend"), &[("extend", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(events(&app, "api_key.grace_extended"), 1);
}
both!(the_grace_is_extended_once_within_seven_days_and_the_teams_maximum);

/// Arranges that key `id` was made `secs` ago.
fn made_ago(app: &TestApp, id: &str, secs: i64) {
    use diesel::prelude::*;
    use latchkey::store::schema::api_keys;
    let (id, at) = (id.to_owned(), app.clock().now() - secs);
    app.db()
        .run_sync(move |c| {
            diesel::update(api_keys::table.find(&id))
                .set(api_keys::created_at.eq(at))
                .execute(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
}

async fn busy_rotations_are_warned_about_once(app: TestApp) {
    app.owner_session().await;
    let (_, busy_secret, _, _) = rolled_key(&app, "busy", 3600).await;
    rolled_key(&app, "quiet", 3600).await;
    rolled_key(&app, "far", 7 * 86_400).await;
    use_key(&app, &busy_secret, 2).await;
    let registered = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let previous = registered.secret.clone().unwrap();
    rotate_secret(&app, &registered.client_id, "3600").await;
    token_with(&app, &registered.client_id, &previous).await.unwrap();
    app.flush_usage().await;
    let state = app.state();
    let now = app.clock().now();
    assert_eq!(state.key_service().warn_busy_rotations(now).await.unwrap(), 1);
    assert_eq!(state.key_service().warn_busy_rotations(now + 60).await.unwrap(), 0, "claimed once");
    assert_eq!(events(&app, "api_key.rotation_busy"), 1);
    let apps = state.oauth_app_service();
    assert_eq!(apps.warn_busy_secret_rotations(now).await.unwrap(), 1);
    assert_eq!(apps.warn_busy_secret_rotations(now + 60).await.unwrap(), 0);
    assert_eq!(events(&app, "oauth.secret_rotation_busy"), 1);
    let log = app.get_html("/settings/team/audit").await;
    assert!(log.contains("is still in use near the end of its grace"), "{log}");
}
both!(busy_rotations_are_warned_about_once);

async fn the_previous_client_secret_is_counted_apart_and_finished_after_quiet(app: TestApp) {
    app.owner_session().await;
    let registered = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let (id, previous) = (registered.client_id.clone(), registered.secret.clone().unwrap());
    let current = rotate_secret(&app, &id, "86400").await;
    token_with(&app, &id, &previous).await.unwrap();
    token_with(&app, &id, &previous).await.unwrap();
    token_with(&app, &id, &current).await.unwrap();
    assert!(token_with(&app, &id, "lkcs_wrong").await.is_err(), "a wrong secret counts for neither");
    app.flush_usage().await;
    let page = format!("{APPS}/{id}");
    let html = app.get_html(&page).await;
    assert!(html.contains("Rotation in progress"), "{html}");
    assert_eq!(cell(&html, "rotation-old-requests"), "2");
    assert_eq!(cell(&html, "rotation-new-requests"), "1");
    assert_eq!(cell(&html, "rotation-old-addresses"), "1");
    // Refused while the previous secret is in use; the confirmation changes nothing.
    assert!(app.get_html(&format!("{page}/finish-rotation?quiet=900")).await.contains("End grace now"));
    let res = app.post_form(&page, &format!("{page}/finish-rotation"), &[("quiet", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("The old secret was used less than a minute ago"));
    token_with(&app, &id, &previous).await.unwrap();
    app.flush_usage().await;
    app.clock().advance(20 * 60);
    let res = app.post_form(&page, &format!("{page}/finish-rotation"), &[("quiet", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("The old secret was used 20 minutes ago"));
    let res = app.post_form(&page, &format!("{page}/finish-rotation"), &[("quiet", "900")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), page);
    let refused = token_with(&app, &id, &previous).await.unwrap_err();
    assert!(refused.contains("invalid_client"), "{refused}");
    token_with(&app, &id, &current).await.unwrap();
    assert!(stored_app(&app, &id).old_secret_hash.is_none());
    assert_eq!(events(&app, "oauth.secret_grace_finished"), 1);
    assert!(!app.get_html(&page).await.contains("Rotation in progress"));
}
both!(the_previous_client_secret_is_counted_apart_and_finished_after_quiet);

async fn the_previous_secrets_grace_is_extended_once_per_rotation(app: TestApp) {
    app.owner_session().await;
    let registered = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let id = registered.client_id.clone();
    let page = format!("{APPS}/{id}");
    rotate_secret(&app, &id, "3600").await;
    let before = stored_app(&app, &id).old_secret_expires_at.unwrap();
    assert!(app.get_html(&format!("{page}/extend-rotation")).await.contains("Extend grace"));
    assert_eq!(stored_app(&app, &id).old_secret_expires_at, Some(before), "asking changes nothing");
    let res = app.post_form(&page, &format!("{page}/extend-rotation"), &[("extend", "86400")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_app(&app, &id).old_secret_expires_at, Some(before + 86_400));
    let res = app.post_form(&page, &format!("{page}/extend-rotation"), &[("extend", "3600")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("extended already"));
    // At most seven days from now.
    let now = app.clock().now();
    rotate_secret(&app, &id, "86400").await;
    let res = app.post_form(&page, &format!("{page}/extend-rotation"), &[("extend", "604800")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "a new rotation may be extended again");
    let until = stored_app(&app, &id).old_secret_expires_at.unwrap();
    assert!(until <= app.clock().now() + 7 * 86_400 && until >= now + 7 * 86_400 - 60, "{until}");
    assert_eq!(events(&app, "oauth.secret_grace_extended"), 2);
}
both!(the_previous_secrets_grace_is_extended_once_per_rotation);

#[tokio::test]
async fn a_person_reads_the_rotation_card_and_is_told_why_it_cannot_finish_yet() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let (old_id, old_secret, _, new_secret) = rolled_key(&app, "Billing worker", 3600).await;
    use_key(&app, &old_secret, 2).await;
    use_key(&app, &new_secret, 1).await;
    app.flush_usage().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    browser.goto(&app.url(&format!("{KEYS}/{old_id}"))).await;
    browser.wait_for("#rotation").await;
    assert!(browser.text("#rotation-busy").await.contains("still in use"));
    for (size, name) in [(LAPTOP, "key-rotation-laptop"), (PHONE, "key-rotation-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
    }
    browser.resize(LAPTOP).await;
    browser.click("#finish-rotation").await;
    browser.wait_for("dialog[open] [data-confirm-submit]").await;
    assert!(browser.text("dialog[open]").await.contains("stops working at once"));
    browser.check_page("key-rotation-finish-dialog-laptop").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for("#quiet-error").await;
    assert!(browser.text("#quiet-error").await.contains("The old key was used"));
    browser.check_page("key-rotation-finish-refused-laptop").await;
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK, "nothing ended");
    // The same card on an app's page, for its previous client secret.
    let registered = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let previous = registered.secret.clone().unwrap();
    rotate_secret(&app, &registered.client_id, "3600").await;
    token_with(&app, &registered.client_id, &previous).await.unwrap();
    app.flush_usage().await;
    browser.goto(&app.url(&format!("{APPS}/{}", registered.client_id))).await;
    browser.wait_for("#rotation-busy").await;
    assert_eq!(browser.text("#rotation-old-requests").await, "1");
    for (size, name) in [(LAPTOP, "app-rotation-laptop"), (PHONE, "app-rotation-phone")] {
        browser.resize(size).await;
        browser.check_page(name).await;
    }
    browser.quit().await;
}
