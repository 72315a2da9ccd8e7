//! Editing and pausing a key (issue 14, point 1): `PATCH /api/v1/api-keys/{id}`,
//! the key page's Edit card, and Disable / Enable from the page and the list.
//! Attacks on the same paths live in `security/key_edit.rs`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{call, create_key, error_code};
use crate::both;
use crate::helpers::{OWNER_EMAIL, TestApp, csrf_from, fresh_postgres, location, serve};
use latchkey::store::StoreError;
use latchkey::store::models::{AuditEvent, Reminder};

const KEYS: &str = "/settings/developer/api-keys";

/// A session `PATCH` of a key, with the CSRF header.
pub async fn patch(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let url = app.url(&format!("/api/v1/api-keys/{id}"));
    app.client.patch(url).header("X-CSRF-Token", csrf).json(body).send().await.unwrap()
}

/// A `PATCH` of a key made with another key.
pub async fn patch_with_key(app: &TestApp, key: &str, id: &str, body: &Value) -> reqwest::Response {
    let url = app.url(&format!("/api/v1/api-keys/{id}"));
    app.other_client().client.patch(url).header("X-API-Key", key).json(body).send().await.unwrap()
}

/// A `PATCH` that must succeed; the key as it is now.
pub async fn patched(app: &TestApp, id: &str, body: Value) -> Value {
    let (status, json) = error_code(patch(app, id, &body).await).await;
    assert_eq!(status, StatusCode::OK, "{body} → {json}");
    json["data"].clone()
}

/// The key as the API shows it to the signed-in user.
pub async fn key_of(app: &TestApp, id: &str) -> Value {
    let res = app.get(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["data"].clone()
}

/// The key's audit events with `action`, oldest first.
pub fn events(app: &TestApp, id: &str, action: &str) -> Vec<AuditEvent> {
    let id = id.to_owned();
    let mut all =
        app.db().run_sync(move |c| AuditEvent::for_object(c, "api_key", &id, 100).map_err(StoreError::from)).unwrap();
    all.retain(|e| e.action == action);
    all.sort_by_key(|e| e.id);
    all
}

/// Unix seconds `days` from now, as RFC 3339.
pub fn in_days(days: i64) -> String {
    latchkey::web::format::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp() + days * 86_400)
}

/// Runs SQL on the test database.
pub fn sql(app: &TestApp, statements: &str) {
    use diesel::connection::SimpleConnection;
    let s = statements.to_owned();
    app.db().run_sync(move |c| c.batch_execute(&s).map_err(StoreError::from)).unwrap();
}

/// Every team on the `unlimited` plan: these tests call with keys more often
/// than the free plan's burst allows.
pub fn unlimited(app: &TestApp) {
    sql(app, "UPDATE teams SET plan = 'unlimited'");
    app.forget_cached_credentials();
}

async fn scopes_seen(app: &TestApp, key: &str) -> Value {
    let res = call(app, "/api/v1/auth/test", key).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["scopes"].clone()
}

async fn every_field_is_changed_in_place_and_audited(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let scopes = ["templates:read", "templates:write", "contacts:read"];
    let created = create_key(&app, json!({"name": "Billing", "scopes": scopes, "expires_at": in_days(30)})).await;
    let (id, secret) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK);

    // Nothing asked, nothing changed, nothing recorded.
    app.flush_usage().await;
    let before = key_of(&app, id).await;
    assert_eq!(patched(&app, id, json!({})).await, before);
    assert_eq!(patched(&app, id, json!({"name": "Billing", "scopes": scopes})).await, before, "the same values");
    assert!(events(&app, id, "api_key.updated").is_empty());

    assert_eq!(patched(&app, id, json!({"name": "Invoices"})).await["name"], "Invoices");
    assert_eq!(patched(&app, id, json!({"description": "Nightly run"})).await["description"], "Nightly run");
    let k = patched(&app, id, json!({"allowed_ips": ["127.0.0.1", "10.0.0.0/8"]})).await;
    assert_eq!(k["allowed_ips"], json!(["127.0.0.1/32", "10.0.0.0/8"]));
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK, "tests call from 127.0.0.1");
    patched(&app, id, json!({"allowed_ips": ["10.0.0.0/8"]})).await;
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::FORBIDDEN, "at once");
    assert_eq!(patched(&app, id, json!({"allowed_ips": []})).await["allowed_ips"], json!([]));
    let later = in_days(60);
    assert_eq!(patched(&app, id, json!({"expires_at": later})).await["expires_at"], later.as_str());
    assert_eq!(patched(&app, id, json!({"expires_at": null})).await["expires_at"], Value::Null);
    let k = patched(&app, id, json!({"scopes": ["templates:read", "contacts:read"]})).await;
    assert_eq!(k["scopes"], json!(["templates:read", "contacts:read"]));
    assert_eq!(scopes_seen(&app, secret).await, json!(["templates:read", "contacts:read"]), "at once");
    assert_eq!(k["prefix"], created["prefix"], "the same key, the same secret");

    // One event per change, naming the fields with their old and new values, by the owner.
    let updated = events(&app, id, "api_key.updated");
    assert_eq!(updated.len(), 8, "{updated:?}");
    assert!(updated.iter().all(|e| e.actor_label == OWNER_EMAIL && e.actor_id.is_some()));
    let last: Value = serde_json::from_str(&updated[7].details).unwrap();
    assert_eq!(last["changed"], json!(["scopes"]));
    assert_eq!(last["old_scopes"], json!(scopes));
    assert_eq!(last["new_scopes"], json!(["templates:read", "contacts:read"]));
    let never: Value = serde_json::from_str(&updated[6].details).unwrap();
    assert_eq!((never["changed"].clone(), never["new_expiry"].clone()), (json!(["expires_at"]), json!("never")));
    let page = app.get_html(&format!("{KEYS}/{id}")).await;
    assert!(page.contains(r#"data-action="api_key.updated""#) && page.contains("changed key"), "{page}");
}
both!(every_field_is_changed_in_place_and_audited);

async fn scopes_only_narrow_and_an_admin_key_can_be_narrowed(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let created = create_key(&app, json!({"name": "Narrow", "scopes": ["templates:read", "templates:write"]})).await;
    let (id, secret) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    let before = key_of(&app, id).await;
    for (body, says) in [
        (json!({"scopes": ["templates:read", "contacts:read"]}), "create a new key"),
        (json!({"scopes": ["admin"]}), "create a new key"),
        (json!({"name": "Renamed too", "scopes": ["contacts:write"]}), "create a new key"),
        (json!({"scopes": []}), "at least one"),
        (json!({"scopes": ["nope:read"]}), "Unknown scope"),
    ] {
        let (status, json) = error_code(patch(&app, id, &body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(json["error"]["code"], "validation_failed");
        assert!(json["error"]["fields"]["scopes"].as_str().unwrap().contains(says), "{json}");
    }
    assert_eq!(key_of(&app, id).await, before, "never silently narrowed, nothing changed");
    assert_eq!(scopes_seen(&app, secret).await, json!(["templates:read", "templates:write"]));

    // `admin` holds every team scope: narrowing an admin key to one of them is narrowing.
    let admin = create_key(&app, json!({"name": "Everything", "scopes": ["admin"]})).await;
    let (admin_id, admin_secret) = (admin["id"].as_str().unwrap(), admin["key"].as_str().unwrap());
    let page = app.get_html(&format!("{KEYS}/{admin_id}")).await;
    assert!(page.contains(r#"id="admin-includes""#) && page.contains(r#"value="contacts:read""#), "{page}");
    assert_eq!(
        patched(&app, admin_id, json!({"scopes": ["templates:read"]})).await["scopes"],
        json!(["templates:read"])
    );
    assert_eq!(scopes_seen(&app, admin_secret).await, json!(["templates:read"]));
    assert_eq!(call(&app, "/api/v1/api-keys", admin_secret).await.status(), StatusCode::FORBIDDEN);
    let (status, _) = error_code(patch(&app, admin_id, &json!({"scopes": ["admin"]})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "and never back");
}
both!(scopes_only_narrow_and_an_admin_key_can_be_narrowed);

async fn expiry_stays_within_the_teams_maximum_and_a_rolls_grace(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let res = app.post_form(KEYS, &format!("{KEYS}/policy"), &[("max_lifetime_days", "30")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let created =
        create_key(&app, json!({"name": "Short", "scopes": ["templates:read"], "expires_at": in_days(10)})).await;
    let id = created["id"].as_str().unwrap();
    let before = key_of(&app, id).await;
    let past = latchkey::web::format::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp() - 60);
    for (expires_at, says) in [
        (json!(in_days(60)), "at most 30 days"),
        (Value::Null, "expire within 30 days"),
        (json!(past), "in the future"),
    ] {
        let (status, json) = error_code(patch(&app, id, &json!({"expires_at": expires_at})).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{expires_at}");
        assert!(json["error"]["fields"]["expires_at"].as_str().unwrap().contains(says), "{json}");
    }
    assert_eq!(key_of(&app, id).await, before);

    // A reminder comes again only once the expiry moved later by more than
    // its threshold; a shorter life or a nudge re-arms nothing.
    let claim = |kind: &'static str| {
        let key_id = id.to_owned();
        app.db().run_sync(move |c| Reminder::claim(c, &key_id, kind, 0).map_err(StoreError::from)).unwrap()
    };
    let sent = |kind: &'static str| {
        let key_id = id.to_owned();
        app.db().run_sync(move |c| Reminder::sent(c, &key_id, kind).map_err(StoreError::from)).unwrap()
    };
    assert!(claim("expiring_7d") && claim("expiring_1d"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (expires_at, week_sent, day_sent, why) in [
        (now + 5 * 86_400, true, true, "shorter: nothing re-armed"),
        (now + 5 * 86_400 + 7, true, true, "a nudge: nothing re-armed"),
        (now + 6 * 86_400 + 43_200, true, false, "a day and a half more: the day's reminder may come again"),
        (now + 20 * 86_400, false, false, "two weeks more: the week's too"),
    ] {
        let at = latchkey::web::format::rfc3339(expires_at);
        assert_eq!(patched(&app, id, json!({"expires_at": at})).await["expires_at"], at.as_str());
        assert_eq!((sent("expiring_7d"), sent("expiring_1d")), (week_sent, day_sent), "{why}");
    }

    // A key in a roll's grace stops when the roll says; it may still be renamed.
    let res =
        crate::api_keys::api_post(&app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 3600})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (status, json) = error_code(patch(&app, id, &json!({"expires_at": in_days(5)})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json["error"]["fields"]["expires_at"].as_str().unwrap().contains("rolled"), "{json}");
    assert_eq!(patched(&app, id, json!({"name": "Short (old)"})).await["name"], "Short (old)");

    // Revoked or expired: never changed again.
    let gone = create_key(&app, json!({"name": "Gone", "scopes": ["templates:read"], "expires_at": in_days(1)})).await;
    let gone_id = gone["id"].as_str().unwrap();
    let soon = create_key(&app, json!({"name": "Soon", "scopes": ["templates:read"], "expires_at": in_days(2)})).await;
    let soon_id = soon["id"].as_str().unwrap();
    assert!(crate::api_keys::api_delete(&app, &format!("/api/v1/api-keys/{gone_id}")).await.status().is_success());
    sql(&app, &format!("UPDATE api_keys SET expires_at = 1 WHERE id = '{soon_id}'"));
    for (target, body) in [
        (gone_id, json!({"name": "Back"})),
        (gone_id, json!({"disabled": false})),
        (soon_id, json!({"expires_at": in_days(25)})),
    ] {
        let (status, json) = error_code(patch(&app, target, &body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(json["error"]["fields"]["key"].as_str().unwrap().contains("cannot be changed"), "{json}");
    }
}
both!(expiry_stays_within_the_teams_maximum_and_a_rolls_grace);

/// How many of the key's requests were counted as refused for being disabled.
fn disabled_count(app: &TestApp, id: &str) -> i64 {
    use diesel::prelude::*;
    use latchkey::store::schema::api_key_usage;
    let id = id.to_owned();
    app.db()
        .run_sync(move |c| {
            let counts: Vec<i64> =
                api_key_usage::table.filter(api_key_usage::key_id.eq(&id)).select(api_key_usage::disabled).load(c)?;
            Ok::<_, latchkey::store::StoreError>(counts.iter().sum())
        })
        .unwrap()
}

async fn a_disabled_key_is_refused_like_an_unknown_one_until_enabled(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let created = create_key(&app, json!({"name": "Paused", "scopes": ["templates:read"]})).await;
    let (id, secret) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK, "verified and cached");

    let k = patched(&app, id, json!({"disabled": true})).await;
    assert_eq!(k["status"], "disabled");
    assert!(k["disabled_at"].is_string());
    let unknown = latchkey::service::keys::codec::generate("lk").unwrap();
    let (status, refused) = error_code(call(&app, "/api/v1/auth/test", secret).await).await;
    let (_, stranger) = error_code(call(&app, "/api/v1/auth/test", &unknown).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "at once, on the instance that disabled it");
    assert_eq!(refused, stranger, "the same answer as a key that does not exist");
    for _ in 0..2 {
        assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::UNAUTHORIZED);
    }
    app.flush_usage().await;
    assert_eq!(disabled_count(&app, id), 3, "every refusal counted as disabled");

    let listed: Value = app.get("/api/v1/api-keys?status=disabled").await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let active: Value = app.get("/api/v1/api-keys?status=active").await.json().await.unwrap();
    assert!(active["data"].as_array().unwrap().is_empty());
    patched(&app, id, json!({"disabled": true})).await;
    assert_eq!(events(&app, id, "api_key.disabled").len(), 1, "disabling twice records once");

    let k = patched(&app, id, json!({"disabled": false})).await;
    assert_eq!((k["status"].as_str(), k["disabled_at"].is_null()), (Some("active"), true));
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK, "works again at once");
    patched(&app, id, json!({"disabled": true, "name": "Paused again"})).await;
    let disabled = events(&app, id, "api_key.disabled");
    assert_eq!((disabled.len(), events(&app, id, "api_key.enabled").len()), (2, 1));
    assert!(disabled.iter().all(|e| e.actor_label == OWNER_EMAIL));
    assert_eq!(events(&app, id, "api_key.updated").len(), 1, "the rename, apart from the pause");
}
both!(a_disabled_key_is_refused_like_an_unknown_one_until_enabled);

/// Polls `key` on `app` until its answer is `wanted`; how long that took.
async fn until_status(app: &TestApp, key: &str, wanted: StatusCode, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if call(app, "/api/v1/auth/test", key).await.status() == wanted {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Two instances on one PostgreSQL, without Redis: the change feed alone
/// carries a pause and a resume to the other instance within a second.
#[tokio::test]
async fn disabling_on_one_instance_reaches_the_other_within_a_second() {
    let Some(url) = fresh_postgres() else { return };
    let dir = |n: &str| {
        let d = std::env::temp_dir().join(format!("latchkey-test-edit-{n}-{}-{}", std::process::id(), url.len()));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let settings = [("LATCHKEY_DEFAULT_PLAN", "unlimited")];
    let a = serve(&dir(&format!("a{}", &url[url.len() - 8..])), &url, &settings).await;
    let b = serve(&dir(&format!("b{}", &url[url.len() - 8..])), &url, &settings).await;
    a.owner_session().await;
    unlimited(&a);
    let created = create_key(&a, json!({"name": "k", "scopes": ["messages:send"]})).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(call(&b, "/api/v1/auth/test", key).await.status(), StatusCode::OK, "cached on B");
    patched(&a, id, json!({"disabled": true})).await;
    assert_eq!(call(&a, "/api/v1/auth/test", key).await.status(), StatusCode::UNAUTHORIZED, "at once on A");
    let seen = until_status(&b, key, StatusCode::UNAUTHORIZED, Duration::from_millis(1500)).await;
    assert!(seen.is_some(), "B refuses it within a second");
    patched(&a, id, json!({"disabled": false})).await;
    assert_eq!(call(&a, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
    assert!(until_status(&b, key, StatusCode::OK, Duration::from_millis(1500)).await.is_some());
}

/// The Edit card's form: what the page shows, plus `changes`.
pub fn edit_form<'a>(page: &'a str, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let shown = crate::helpers::attr_after(page, r#"name="expires_was" value=""#).unwrap_or_default();
    let mut form = vec![("csrf_token", csrf_from(page)), ("expires_at", shown.clone()), ("expires_was", shown)];
    for (k, v) in changes {
        form.retain(|(f, _)| f != k || *k == "scopes");
        form.push((k, (*v).to_owned()));
    }
    form
}

async fn the_edit_card_changes_a_key_and_keeps_what_was_typed_on_errors(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let body = json!({"name": "Card", "scopes": ["templates:read", "templates:write"], "expires_at": in_days(30)});
    let created = create_key(&app, body).await;
    let id = created["id"].as_str().unwrap();
    let url = format!("{KEYS}/{id}");
    let page = app.get_html(&url).await;
    assert!(page.contains(r#"id="edit""#) && !page.contains(r#"id="rename""#), "the Edit card replaces Rename");
    assert!(page.contains(r#"value="templates:write" checked"#) && !page.contains(r#"value="contacts:read""#));
    assert!(page.contains("To add a scope, create a new key"));
    let before = key_of(&app, id).await;

    let post = |fields: Vec<(&str, String)>, hx: bool| {
        let mut req = app.client.post(app.url(&format!("{url}/edit"))).form(&fields);
        if hx {
            req = req.header("HX-Request", "true").header("HX-Boosted", "true");
        }
        async move { req.send().await.unwrap() }
    };
    // Refusals re-render the page with the field errors and what was typed; nothing changes.
    let widen = edit_form(
        &page,
        &[("name", "Typed name"), ("scopes", "templates:read"), ("scopes", "contacts:read"), ("allowed_ips", "")],
    );
    let res = post(widen, true).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.headers()["hx-push-url"], url.as_str());
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="scopes-error""#) && html.contains("create a new key") && html.contains("Typed name"));
    for (field, value) in [("name", " "), ("expires_at", "someday"), ("allowed_ips", "10.0.0.300")] {
        let res = post(edit_form(&page, &[(field, value), ("scopes", "templates:read")]), false).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert!(res.text().await.unwrap().contains(&format!(r#"id="{field}-error""#)), "{field}");
    }
    let res = post(edit_form(&page, &[("name", "Card")]), false).await;
    assert!(res.text().await.unwrap().contains(r#"id="scopes-error""#), "no box ticked: no scope kept");
    assert_eq!(key_of(&app, id).await, before, "nothing changed");

    // The expiry as shown is no change; the ticked boxes are the scopes kept.
    let fields = edit_form(
        &page,
        &[
            ("name", "Card v2"),
            ("description", "d"),
            ("allowed_ips", "127.0.0.1\n10.0.0.0/8"),
            ("scopes", "templates:read"),
        ],
    );
    let res = post(fields, false).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), url);
    let k = key_of(&app, id).await;
    assert_eq!((k["name"].as_str(), k["scopes"].clone()), (Some("Card v2"), json!(["templates:read"])));
    assert_eq!(
        (k["expires_at"].clone(), k["allowed_ips"].clone()),
        (before["expires_at"].clone(), json!(["127.0.0.1/32", "10.0.0.0/8"]))
    );
    let shown = app.get_html(&url).await;
    assert!(
        shown.contains("Saved Card v2.") && !shown.contains(r#"value="templates:write""#),
        "only what it holds now"
    );
    let res =
        post(edit_form(&shown, &[("name", "Card v2"), ("expires_at", ""), ("scopes", "templates:read")]), false).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "an empty date is never");
    assert_eq!(key_of(&app, id).await["expires_at"], Value::Null);
    assert_eq!(app.get(&format!("{url}/edit")).await.status(), StatusCode::SEE_OTHER, "a GET lands on the page");
    // `…/rename` still works.
    let res = app.post_form(&url, &format!("{url}/rename"), &[("name", "Renamed"), ("description", "")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(key_of(&app, id).await["name"], "Renamed");
}
both!(the_edit_card_changes_a_key_and_keeps_what_was_typed_on_errors);

async fn disable_and_enable_ask_first_on_the_list_and_the_page(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let created = create_key(&app, json!({"name": "Worker", "scopes": ["templates:read"]})).await;
    let (id, secret) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    let url = format!("{KEYS}/{id}");
    let list = app.get_html(KEYS).await;
    assert!(list.contains(&format!(r#"id="disable-{id}""#)) && !list.contains(&format!(r#"id="enable-{id}""#)));

    // Asks first: a page without JavaScript, a dialog with htmx, red for disabling.
    let confirm = app.get_html(&format!("{url}/disable")).await;
    assert!(confirm.contains("Disable Worker?") && confirm.contains("refused at once"), "{confirm}");
    let dialog = app.client.get(app.url(&format!("{url}/disable"))).header("HX-Request", "true").send().await.unwrap();
    let dialog = dialog.text().await.unwrap();
    assert!(dialog.starts_with("<dialog") && dialog.contains(&format!(r##"hx-target="#key-{id}""##)));
    assert!(dialog.contains("danger-solid"));

    // In place from the list: the row and a toast.
    let res = app
        .client
        .post(app.url(&format!("{url}/disable")))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", csrf_from(&list))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let row = res.text().await.unwrap();
    assert!(row.starts_with(&format!(r#"<tr id="key-{id}""#)) && row.contains("status-disabled"), "{row}");
    assert!(row.contains(&format!(r#"id="enable-{id}""#)) && row.contains("Disabled Worker"));
    assert!(!row.contains(&format!(r#"id="roll-{id}""#)), "a disabled key is not rolled");
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&format!("{url}/disable")).await.status(), StatusCode::SEE_OTHER, "disabled already");

    // The page says so; enabling asks (not in red) and comes back to the page.
    let page = app.get_html(&url).await;
    assert!(page.contains(r#"id="disabled-notice""#) && page.contains("status-disabled"));
    let confirm = app.get_html(&format!("{url}/enable?from=detail")).await;
    assert!(confirm.contains("Enable Worker?") && !confirm.contains("danger-solid"));
    assert!(confirm.contains(&format!(r#"name="next" value="{url}""#)));
    let res = app.post_form(&url, &format!("{url}/enable"), &[("next", &url)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), url);
    assert!(app.get_html(&url).await.contains("Enabled Worker"));
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK);
    assert_eq!(app.get(&format!("{url}/enable")).await.status(), StatusCode::SEE_OTHER, "enabled already");

    // Without htmx from the list: back to the list. A disabled key can still be revoked.
    let res = app.post_form(KEYS, &format!("{url}/disable"), &[]).await;
    assert_eq!(location(&res), KEYS);
    assert!(app.get_html(&format!("{url}/revoke")).await.contains("Revoke Worker?"));
    let res = app.post_form(&url, &format!("{url}/revoke"), &[("next", &url)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(key_of(&app, id).await["status"], "revoked");
    let res = app.post_form(&url, &format!("{url}/enable"), &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a revoked key never comes back");
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::UNAUTHORIZED);
}
both!(disable_and_enable_ask_first_on_the_list_and_the_page);

/// The Edit card and the disable dialog in a browser, at laptop size, with axe.
#[tokio::test]
async fn the_edit_card_and_the_disable_dialog_in_a_browser() {
    use crate::webdriver::{Browser, LAPTOP};
    let Some(browser) = Browser::start().await else { return };
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    unlimited(&app);
    let created =
        create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read", "templates:write"]})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, crate::helpers::OWNER_PASSWORD, "Team · Latchkey").await;
    browser.resize(LAPTOP).await;
    browser.goto(&app.url(&format!("{KEYS}/{id}"))).await;
    browser.click("#edit-link").await;
    browser.fill("#edit-name", "Invoice worker").await;
    browser.click("#edit-scopes input[value='templates:write']").await;
    browser.check_page("key-edit-card-laptop").await;
    browser.click("#edit-save").await;
    browser.wait_for_text(".notice", "Saved Invoice worker").await;
    assert!(browser.text("#key-title").await.contains("Invoice worker"));
    assert!(!browser.text("#key-scopes").await.contains("templates:write"));
    assert!(browser.text("#history").await.contains("changed key Invoice worker"));

    browser.click(&format!("#disable-{id}")).await;
    browser.wait_for("dialog[open] [data-confirm-submit]").await;
    assert!(browser.text("dialog[open]").await.contains("refused at once"));
    browser.check_page("key-disable-dialog-laptop").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for("#disabled-notice").await;
    assert_eq!(browser.text("#key-title .status").await, "Disabled");
    browser.check_page("key-disabled-laptop").await;

    // Enabled again from the list's menu, in place.
    browser.goto(&app.url(KEYS)).await;
    browser.click(&format!("#key-{id} details.menu summary")).await;
    browser.click(&format!("#enable-{id}")).await;
    browser.wait_for("dialog[open] [data-confirm-submit]").await;
    browser.click("dialog[open] [data-confirm-submit]").await;
    browser.wait_for_text("#toasts", "Enabled Invoice worker").await;
    browser.wait_for_text(&format!("#key-{id}"), "Active").await;
    browser.quit().await;
}
