//! Rotations as an attacker uses them: "Finish now" and the extension of a
//! roll's grace (`…/api-keys/{id}/finish`, `…/extend`) and of an app's
//! previous secret (`…/oauth-apps/{id}/finish-rotation`, `…/extend-rotation`)
//! tried by a viewer, a developer on someone else's key or app, a member of
//! another team, an API key, a form without its CSRF token, and bad input.
//! Every refusal leaves the grace exactly as it was.
//!
//! Also the audit's findings (issue 14): "Finish now" while a use of the old
//! credential is still in the usage buffer (L3), and a demoted member
//! extending the grace of a key holding a scope they could no longer grant (I4).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{member, member_id};
use crate::api_keys::{api_post, call, create_key};
use crate::both;
use crate::helpers::{TestApp, csrf_from};
use crate::key_rotation::{APPS, KEYS, events, rolled_key, rotate_secret, stored, stored_app, token_with};
use crate::oauth::{REDIRECT, register};

const RIVAL_EMAIL: &str = "owner@rival.test";
const RIVAL_PASSWORD: &str = "rival owner password";

/// The owner of another team, signed in on a fresh client.
async fn rival(app: &TestApp) -> TestApp {
    let hash = latchkey::service::password::hash(&mut Default::default(), RIVAL_PASSWORD).unwrap();
    app.db()
        .run_sync(|c| latchkey::service::accounts::create_user(c, RIVAL_EMAIL, hash, false, Some("Rival")))
        .unwrap();
    let rival = app.other_client();
    assert_eq!(rival.login(RIVAL_EMAIL, RIVAL_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    rival
}

/// GET as a page and as an htmx fragment.
async fn both_ways(who: &TestApp, path: &str) -> [StatusCode; 2] {
    let page = who.get(path).await.status();
    let fragment = who.client.get(who.url(path)).header("HX-Request", "true").send().await.unwrap().status();
    [page, fragment]
}

/// POSTs `fields` to `path` with the caller's own CSRF token.
async fn post(who: &TestApp, path: &str, fields: &[(&str, &str)]) -> StatusCode {
    who.post_form("/settings/team", path, fields).await.status()
}

/// What a refusal must leave untouched: a key's expiry and extension.
fn key_grace(app: &TestApp, id: &str) -> (Option<i64>, Option<i64>) {
    let k = stored(app, id);
    (k.expires_at, k.grace_extended_at)
}

/// What a refusal must leave untouched: an app's previous secret.
fn app_grace(app: &TestApp, id: &str) -> (Option<String>, Option<i64>, Option<i64>) {
    let c = stored_app(app, id);
    (c.old_secret_hash, c.old_secret_expires_at, c.old_secret_extended_at)
}

async fn only_who_may_roll_a_key_may_finish_or_extend_its_grace(app: TestApp) {
    app.owner_session().await;
    let (old_id, old_secret, new_id, _) = rolled_key(&app, "Owner's key", 86_400).await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let viewer = member(&app, "viewer@acme.test", "viewer").await;
    let (dev_old, ..) = rolled_key(&dev, "Dev's key", 86_400).await;
    let rival = rival(&app).await;
    let owners = key_grace(&app, &old_id);
    let devs = key_grace(&app, &dev_old);
    let mut attempts: Vec<(&TestApp, String)> = Vec::new();
    for id in [&old_id, &new_id] {
        for who in [&dev, &viewer, &rival] {
            attempts.push((who, format!("{KEYS}/{id}")));
        }
    }
    attempts.push((&viewer, format!("{KEYS}/{dev_old}")));
    attempts.push((&rival, format!("{KEYS}/{dev_old}")));
    for (who, page) in &attempts {
        for action in ["finish?quiet=3600", "extend"] {
            for status in both_ways(who, &format!("{page}/{action}")).await {
                assert_eq!(status, StatusCode::NOT_FOUND, "GET {page}/{action}");
            }
            let body = who.get(&format!("{page}/{action}")).await.text().await.unwrap();
            assert!(!body.contains("Owner's key") && !body.contains("Dev's key"), "{page} leaks a name");
        }
        assert_eq!(post(who, &format!("{page}/finish"), &[("quiet", "900")]).await, StatusCode::NOT_FOUND, "{page}");
        assert_eq!(post(who, &format!("{page}/extend"), &[("extend", "3600")]).await, StatusCode::NOT_FOUND, "{page}");
    }
    assert_eq!(key_grace(&app, &old_id), owners);
    assert_eq!(key_grace(&app, &dev_old), devs);
    // A developer acts on their own roll, an owner on anyone's.
    assert_eq!(both_ways(&dev, &format!("{KEYS}/{dev_old}/extend")).await, [StatusCode::OK; 2]);
    assert_eq!(both_ways(&app, &format!("{KEYS}/{dev_old}/finish?quiet=900")).await, [StatusCode::OK; 2]);
    assert_eq!(post(&dev, &format!("{KEYS}/{dev_old}/extend"), &[("extend", "3600")]).await, StatusCode::SEE_OTHER);
    // An API key, even one that may write keys, has no way in: these are pages.
    let writer = create_key(&app, json!({"name": "writer", "scopes": ["api_keys:write", "api_keys:read"]})).await;
    let writer = writer["key"].as_str().unwrap();
    for path in [format!("{KEYS}/{old_id}/finish"), format!("{KEYS}/{old_id}/extend")] {
        let res = app
            .other_client()
            .client
            .post(app.url(&path))
            .header("X-API-Key", writer)
            .form(&[("quiet", "900"), ("extend", "3600")])
            .send()
            .await
            .unwrap();
        assert!(!res.status().is_success() && !res.status().is_server_error(), "{path}: {}", res.status());
    }
    // Without the CSRF token: 403, nothing changes.
    for (path, field) in [("finish", ("quiet", "900")), ("extend", ("extend", "3600"))] {
        let res = app.client.post(app.url(&format!("{KEYS}/{old_id}/{path}"))).form(&[field]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(key_grace(&app, &old_id), owners);
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK);
}
both!(only_who_may_roll_a_key_may_finish_or_extend_its_grace);

/// Values a quiet period or an extension must refuse without a 500.
fn bad_values() -> Vec<String> {
    let mut v: Vec<String> =
        ["", "abc", "60", "-3600", "3600.0", "99999999999999999999", "3600\u{0}", "36\u{7}00", "ｓ"]
            .map(String::from)
            .to_vec();
    v.push("9".repeat(5_000));
    v.push("x".repeat(20_000));
    v
}

async fn bad_input_is_refused_and_changes_nothing(app: TestApp) {
    app.owner_session().await;
    let (old_id, ..) = rolled_key(&app, "k", 86_400).await;
    let registered = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    rotate_secret(&app, &registered.client_id, "86400").await;
    let (keys, apps) = (key_grace(&app, &old_id), app_grace(&app, &registered.client_id));
    let key_page = format!("{KEYS}/{old_id}");
    let app_page = format!("{APPS}/{}", registered.client_id);
    let targets = [
        (format!("{key_page}/finish"), "quiet"),
        (format!("{key_page}/extend"), "extend"),
        (format!("{app_page}/finish-rotation"), "quiet"),
        (format!("{app_page}/extend-rotation"), "extend"),
    ];
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    for (path, field) in &targets {
        for value in bad_values() {
            let form = [(*field, value.as_str()), ("csrf_token", csrf.as_str())];
            let status = app.client.post(app.url(path)).form(&form).send().await.unwrap().status();
            let ok = [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE];
            assert!(ok.contains(&status), "{path} {field}={:?}: {status}", &value[..value.len().min(20)]);
        }
        // A repeated field, and a field of the wrong name.
        let twice = [(*field, "900"), (*field, "86400"), ("csrf_token", csrf.as_str())];
        let status = app.client.post(app.url(path)).form(&twice).send().await.unwrap().status();
        assert!(status.is_client_error(), "{path} twice: {status}");
        let other = [("grace", "3600"), ("csrf_token", csrf.as_str())];
        let status = app.client.post(app.url(path)).form(&other).send().await.unwrap().status();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} without its field");
        // The confirmations take any query without failing.
        for query in ["?quiet=abc", "?quiet=%00", "?quiet=1&quiet=2"] {
            let status = app.get(&format!("{path}{query}")).await.status();
            assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{path}{query}: {status}");
        }
    }
    assert_eq!(key_grace(&app, &old_id), keys);
    assert_eq!(app_grace(&app, &registered.client_id), apps);
}
both!(bad_input_is_refused_and_changes_nothing);

async fn only_who_may_manage_an_app_may_finish_or_extend_its_previous_secret(app: TestApp) {
    app.owner_session().await;
    let owners = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    rotate_secret(&app, &owners.client_id, "86400").await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let viewer = member(&app, "viewer@acme.test", "viewer").await;
    let devs = register(&dev, "confidential", REDIRECT, &["templates:read"]).await;
    rotate_secret(&dev, &devs.client_id, "86400").await;
    let rival = rival(&app).await;
    let before = (app_grace(&app, &owners.client_id), app_grace(&app, &devs.client_id));
    let owners_page = format!("{APPS}/{}", owners.client_id);
    let devs_page = format!("{APPS}/{}", devs.client_id);
    let attempts = [
        (&dev, &owners_page),
        (&viewer, &owners_page),
        (&rival, &owners_page),
        (&viewer, &devs_page),
        (&rival, &devs_page),
    ];
    for (who, page) in attempts {
        for action in ["finish-rotation?quiet=900", "extend-rotation"] {
            for status in both_ways(who, &format!("{page}/{action}")).await {
                assert_eq!(status, StatusCode::NOT_FOUND, "GET {page}/{action}");
            }
        }
        let finish = post(who, &format!("{page}/finish-rotation"), &[("quiet", "900")]).await;
        assert_eq!(finish, StatusCode::NOT_FOUND, "{page}");
        let extend = post(who, &format!("{page}/extend-rotation"), &[("extend", "3600")]).await;
        assert_eq!(extend, StatusCode::NOT_FOUND, "{page}");
    }
    // Without the CSRF token: 403.
    let res = app.client.post(app.url(&format!("{owners_page}/extend-rotation"))).form(&[("extend", "3600")]).send();
    assert_eq!(res.await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!((app_grace(&app, &owners.client_id), app_grace(&app, &devs.client_id)), before);
    // The developer manages the app they registered; the owner any app.
    assert_eq!(both_ways(&dev, &format!("{devs_page}/extend-rotation")).await, [StatusCode::OK; 2]);
    assert_eq!(post(&dev, &format!("{devs_page}/extend-rotation"), &[("extend", "3600")]).await, StatusCode::SEE_OTHER);
    assert_eq!(both_ways(&app, &format!("{devs_page}/finish-rotation?quiet=900")).await, [StatusCode::OK; 2]);
}
both!(only_who_may_manage_an_app_may_finish_or_extend_its_previous_secret);

/// A refused "Finish now" (or extension): the page again, 422, with the reason beside `field`.
async fn refused_with(res: reqwest::Response, field: &str, says: &str) {
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!(r#"id="{field}-error">{says}"#)), "{html}");
}

/// L3: a use of the old key or the previous client secret that this
/// instance served but has not written yet still counts: with the last
/// written use twenty minutes old, one more use left in the buffer keeps a
/// 15-minute "Finish now" refused — before the flush and after it — and the
/// old credential working.
async fn finish_now_counts_a_use_still_in_the_buffer(app: TestApp) {
    app.owner_session().await;
    let (old_id, old_secret, new_id, _) = rolled_key(&app, "buffered", 3600).await;
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK);
    app.flush_usage().await;
    app.clock().advance(20 * 60);
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK, "not written yet");
    let grace = key_grace(&app, &old_id);
    let page = format!("{KEYS}/{new_id}");
    for flushed in [false, true] {
        if flushed {
            app.flush_usage().await;
        }
        let res = app.post_form(&page, &format!("{page}/finish"), &[("quiet", "900")]).await;
        refused_with(res, "quiet", "The old key was used less than a minute ago").await;
    }
    assert_eq!(key_grace(&app, &old_id), grace);
    assert_eq!(events(&app, "api_key.grace_finished"), 0);
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK, "still in its grace");

    let registered = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let (client_id, previous) = (registered.client_id.clone(), registered.secret.clone().unwrap());
    rotate_secret(&app, &client_id, "3600").await;
    token_with(&app, &client_id, &previous).await.unwrap();
    app.flush_usage().await;
    app.clock().advance(20 * 60);
    token_with(&app, &client_id, &previous).await.unwrap();
    let before = app_grace(&app, &client_id);
    let page = format!("{APPS}/{client_id}");
    for flushed in [false, true] {
        if flushed {
            app.flush_usage().await;
        }
        let res = app.post_form(&page, &format!("{page}/finish-rotation"), &[("quiet", "900")]).await;
        refused_with(res, "quiet", "The old secret was used less than a minute ago").await;
    }
    assert_eq!(app_grace(&app, &client_id), before);
    assert_eq!(events(&app, "oauth.secret_grace_finished"), 0);
    token_with(&app, &client_id, &previous).await.expect("the previous secret still works");
}
both!(finish_now_counts_a_use_still_in_the_buffer);

/// L3 across instances: a use that another instance handed to Redis (and no
/// instance moved yet) is counted too — Finish now first moves what every
/// instance handed over. (PostgreSQL and Redis.)
#[tokio::test]
async fn finish_now_counts_a_use_another_instance_handed_to_redis() {
    let flush_hourly = ("LATCHKEY_USAGE_FLUSH_SECONDS", "3600");
    let unlimited = ("LATCHKEY_DEFAULT_PLAN", "unlimited");
    let Some(apps) = crate::helpers::spawn_instances(2, &[unlimited, flush_hourly]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (old_id, old_secret, new_id, _) = rolled_key(a, "handed over", 3600).await;
    assert_eq!(call(a, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK);
    a.flush_usage().await;
    for app in [a, b] {
        app.clock().advance(20 * 60);
    }
    // B serves the old key once and hands it to Redis; nobody moves it yet.
    assert_eq!(call(b, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK);
    b.usage_flusher().tick().await.unwrap();
    let page = format!("{KEYS}/{new_id}");
    let res = a.post_form(&page, &format!("{page}/finish"), &[("quiet", "900")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("used less than a minute ago"));
    assert_eq!(events(a, "api_key.grace_finished"), 0);
    assert_eq!(call(b, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK, "still in its grace");
    assert!(stored(a, &old_id).expires_at.is_some_and(|e| e > a.clock().now()), "its grace runs on");
}

/// I4: lengthening a key's life is loosening it. An admin rolls a key
/// holding `admin`, is demoted to developer, and may no longer extend its
/// grace (from either key's page): a field error, the old key's end as it
/// was. An owner may.
async fn a_demoted_member_may_not_extend_the_grace_of_a_key_they_could_not_grant(app: TestApp) {
    app.owner_session().await;
    let admin = member(&app, "admin@acme.test", "admin").await;
    let created = create_key(&admin, json!({"name": "everything", "scopes": ["admin"]})).await;
    let old_id = created["id"].as_str().unwrap().to_owned();
    let res = api_post(&admin, &format!("/api/v1/api-keys/{old_id}/roll"), &json!({"grace_seconds": 3600})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new_id = res.json::<Value>().await.unwrap()["data"]["id"].as_str().unwrap().to_owned();
    let admin_id = member_id(&app.get_html("/settings/team").await, "admin@acme.test");
    let demote = format!("/settings/team/members/{admin_id}/role");
    assert_eq!(post(&app, &demote, &[("role", "developer")]).await, StatusCode::SEE_OTHER);

    let before = key_grace(&app, &old_id);
    for id in [&old_id, &new_id] {
        let page = format!("{KEYS}/{id}");
        let res = admin.post_form(&page, &format!("{page}/extend"), &[("extend", "3600")]).await;
        refused_with(res, "extend", "The old key holds a scope you could not grant now").await;
    }
    assert_eq!(key_grace(&app, &old_id), before, "the old key ends as it did");
    assert_eq!(events(&app, "api_key.grace_extended"), 0);

    let page = format!("{KEYS}/{old_id}");
    assert_eq!(post(&app, &format!("{page}/extend"), &[("extend", "3600")]).await, StatusCode::SEE_OTHER);
    let (expires_at, extended_at) = key_grace(&app, &old_id);
    assert_eq!(expires_at, before.0.map(|e| e + 3600), "the owner may");
    assert!(extended_at.is_some());
}
both!(a_demoted_member_may_not_extend_the_grace_of_a_key_they_could_not_grant);
