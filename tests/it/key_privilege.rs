//! Least privilege from real use (unused scopes named after 14 days, a roll
//! that keeps only the used scopes, from the page and the API) and expiry
//! reminders (once a week and once a day before, once whatever the number of
//! instances; the banner on every page). Attacks on both are in
//! `security/key_privilege.rs`.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, api_post, call, create_key, error_code};
use crate::both;
use crate::helpers::{OWNER_EMAIL, TestApp, csrf_from, location, spawn_instances};
use latchkey::store::StoreError;
use latchkey::store::models::{AuditEvent, Reminder};

pub const DAY: i64 = 86_400;
pub const BASE: &str = "/settings/developer/api-keys";

/// Uses `scopes` with `secret`: `api_keys:read` through the key list, any
/// other through `/auth/verify?scope=`; then writes the usage.
pub async fn exercise(app: &TestApp, secret: &str, scopes: &[&str]) {
    for scope in scopes {
        let path = match *scope {
            "api_keys:read" => "/api/v1/api-keys".to_owned(),
            other => format!("/auth/verify?scope={other}"),
        };
        assert_eq!(call(app, &path, secret).await.status(), StatusCode::OK, "{scope}");
    }
    app.flush_usage().await;
}

/// Moves the test clock `secs` back (negative: on). Sessions live by the
/// wall clock (their rows expire an hour after their last use in real time),
/// so a test that needs days to pass starts that many days in the past and
/// comes back to now, rather than going ahead of now.
pub fn back(app: &TestApp, secs: i64) {
    app.clock().advance(-secs);
}

/// Keys `(name, scopes, used)` made 15 days ago that used `used` then, and
/// again now (the test clock moved 15 days on in between).
pub async fn watched_keys(app: &TestApp, specs: &[(&str, &[&str], &[&str])]) -> Vec<Value> {
    back(app, 15 * DAY);
    let mut keys = Vec::new();
    for (name, scopes, used) in specs {
        let key = create_key(app, json!({"name": name, "scopes": scopes})).await;
        exercise(app, key["key"].as_str().unwrap(), used).await;
        keys.push(key);
    }
    back(app, -15 * DAY);
    for ((_, _, used), key) in specs.iter().zip(&keys) {
        exercise(app, key["key"].as_str().unwrap(), used).await;
    }
    keys
}

pub const GRANTED: &[&str] = &["api_keys:read", "products:read", "products:write"];
pub const USED: &[&str] = &["api_keys:read", "products:read"];

pub fn id(key: &Value) -> &str {
    key["id"].as_str().unwrap()
}

pub async fn key_json(app: &TestApp, id: &str) -> Value {
    let res = app.get(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["data"].clone()
}

/// The `<tr>` of a key on a list page.
fn row<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page.find(&format!(r#"<tr id="key-{id}""#)).expect("the key has a row");
    let end = page[start..].find("</tr>").unwrap();
    &page[start..start + end]
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// The audit events `action` about key `id`, oldest first.
pub fn events(app: &TestApp, action: &str, id: &str) -> Vec<Value> {
    let id = id.to_owned();
    let events =
        app.db().run_sync(move |c| AuditEvent::for_object(c, "api_key", &id, 100).map_err(StoreError::from)).unwrap();
    let mut out: Vec<Value> = events
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| json!({"id": e.id, "actor": e.actor_label, "details": serde_json::from_str::<Value>(&e.details).unwrap()}))
        .collect();
    out.sort_by_key(|e| e["id"].as_i64());
    out
}

async fn unused_scopes_are_named_after_fourteen_days_of_use(app: TestApp) {
    app.owner_session().await;
    back(&app, 15 * DAY);
    let key = create_key(&app, json!({"name": "catalog sync", "scopes": GRANTED})).await;
    exercise(&app, key["key"].as_str().unwrap(), USED).await;
    assert_eq!(key_json(&app, id(&key)).await["unused_scopes"], Value::Null, "unknown before 14 days");
    let page = app.get_html(&format!("{BASE}/{}", id(&key))).await;
    assert!(page.contains("We suggest scopes after 14 days of use"), "{page}");
    back(&app, -DAY);
    assert_eq!(key_json(&app, id(&key)).await["unused_scopes"], Value::Null, "nor after one");

    back(&app, -14 * DAY);
    exercise(&app, key["key"].as_str().unwrap(), USED).await;
    let tight = create_key(&app, json!({"name": "tight", "scopes": ["api_keys:read"]})).await;
    let fresh = create_key(&app, json!({"name": "fresh", "scopes": ["products:read"]})).await;
    // `tight` needs 14 days of its own before it is judged.
    assert_eq!(key_json(&app, id(&key)).await["unused_scopes"], json!(["products:write"]));
    assert_eq!(key_json(&app, id(&fresh)).await["unused_scopes"], Value::Null);
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    let listed = |id: &str| list["data"].as_array().unwrap().iter().find(|k| k["id"] == id).unwrap().clone();
    assert_eq!(listed(id(&key))["unused_scopes"], json!(["products:write"]));
    assert_eq!(listed(id(&fresh))["unused_scopes"], Value::Null);
    assert_eq!(listed(id(&tight))["unused_scopes"], Value::Null);

    let page = app.get_html(BASE).await;
    let flagged = row(&page, id(&key));
    assert!(flagged.contains("Unused scopes") && flagged.contains("<code>products:write</code>"), "{flagged}");
    assert!(!flagged.contains("<code>products:read</code>"), "{flagged}");
    assert!(!row(&page, id(&fresh)).contains("Unused scopes"));
    let detail = app.get_html(&format!("{BASE}/{}", id(&key))).await;
    assert!(detail.contains("This key has not used <code>products:write</code> in 15 days."), "{detail}");
    assert!(!detail.contains("This key has not used <code>products:read</code>"));
    assert!(detail.contains(&format!(r#"href="{BASE}/{}/roll-used""#, id(&key))));
}
both!(unused_scopes_are_named_after_fourteen_days_of_use);

async fn a_key_that_used_every_scope_is_not_flagged(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("all used", USED, USED)]).await;
    assert_eq!(key_json(&app, id(&keys[0])).await["unused_scopes"], json!([]));
    let page = app.get_html(BASE).await;
    assert!(!row(&page, id(&keys[0])).contains("Unused scopes"));
    let detail = app.get_html(&format!("{BASE}/{}", id(&keys[0]))).await;
    assert!(detail.contains(r#"id="privilege-tight""#) && !detail.contains("roll-used"), "{detail}");
    let res = app.get(&format!("{BASE}/{}/roll-used", id(&keys[0]))).await;
    assert_eq!((res.status(), location(&res)), (StatusCode::SEE_OTHER, format!("{BASE}/{}", id(&keys[0]))));
}
both!(a_key_that_used_every_scope_is_not_flagged);

async fn a_roll_with_the_used_scopes_from_the_page_carries_exactly_those(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("catalog sync", GRANTED, USED)]).await;
    let (old, path) = (&keys[0], format!("{BASE}/{}/roll-used", id(&keys[0])));
    let confirm = app.get_html(&path).await;
    assert!(confirm.contains("The new key carries only api_keys:read, products:read."), "{confirm}");
    assert!(confirm.contains("It drops products:write, not used in 15 days.") && confirm.contains(r#"name="grace""#));
    let dialog = app.client.get(app.url(&path)).header("HX-Request", "true").send().await.unwrap();
    assert!(dialog.text().await.unwrap().starts_with(&format!(r#"<dialog id="confirm-roll-used-{}""#, id(old))));

    let form = [("csrf_token", csrf_from(&confirm)), ("grace", "3600".to_owned())];
    let res = app.client.post(app.url(&path)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let reveal = res.text().await.unwrap();
    let secret = crate::helpers::attr_after(&reveal, r#"<code id="secret">"#).expect("the secret is shown");
    let old_now = key_json(&app, id(old)).await;
    let new = key_json(&app, old_now["replaced_by"].as_str().unwrap()).await;
    assert_eq!(strings(&new["scopes"]), USED, "exactly the used scopes");
    assert_eq!(new["rolled_from"], old["id"]);
    assert_eq!(old_now["status"], "expiring_soon", "the old key is in its grace");
    assert_eq!(call(&app, "/api/v1/auth/test", old["key"].as_str().unwrap()).await.status(), StatusCode::OK);
    assert_eq!(call(&app, "/auth/verify?scope=products:read", &secret).await.status(), StatusCode::OK);
    assert_eq!(call(&app, "/auth/verify?scope=products:write", &secret).await.status(), StatusCode::FORBIDDEN);

    // A reload sends the form again: nothing new, and the secret is not shown again.
    let again = app.client.post(app.url(&path)).form(&form).send().await.unwrap();
    assert_eq!((again.status(), location(&again)), (StatusCode::SEE_OTHER, path.clone()));
    let landing = app.get_html(&path).await;
    assert!(landing.contains(r#"id="rolled-notice""#) && !landing.contains(&secret), "{landing}");
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "one roll, one new key");

    let rolled = events(&app, "api_key.rolled", id(old));
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["details"]["scopes"], json!(USED));
    assert_eq!(rolled[0]["details"]["narrowed_from"], json!(GRANTED));
    let history = app.get_html(&format!("{BASE}/{}", id(old))).await;
    assert!(history.contains("into a new key with only the scopes it used (api_keys:read, products:read)"));
}
both!(a_roll_with_the_used_scopes_from_the_page_carries_exactly_those);

async fn a_roll_with_the_used_scopes_through_the_api(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("catalog sync", GRANTED, USED), ("all used", USED, USED)]).await;
    let fresh = create_key(&app, json!({"name": "fresh", "scopes": GRANTED})).await;
    let roll = |id: &str| format!("/api/v1/api-keys/{id}/roll");
    let body = json!({"grace_seconds": 600, "only_used_scopes": true});

    let (status, refused) = error_code(api_post(&app, &roll(id(&fresh)), &body).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused["error"]["fields"]["only_used_scopes"].as_str().unwrap().contains("14 days"), "{refused}");
    let (status, refused) = error_code(api_post(&app, &roll(id(&keys[1])), &body).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused["error"]["fields"]["only_used_scopes"].is_string(), "nothing would be dropped: {refused}");
    assert_eq!(key_json(&app, id(&keys[1])).await["replaced_by"], Value::Null);

    let res = api_post(&app, &roll(id(&keys[0])), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let new: Value = res.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(strings(&new["scopes"]), USED);
    assert_eq!(new["rolled_from"], keys[0]["id"]);
    assert_eq!(new["unused_scopes"], Value::Null, "a new key is not judged yet");
    let secret = new["key"].as_str().unwrap();
    assert_eq!(call(&app, "/auth/verify?scope=products:write", secret).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "/api/v1/auth/test", keys[0]["key"].as_str().unwrap()).await.status(), StatusCode::OK);
    // Asked without the flag, a roll keeps every scope.
    let res = api_post(&app, &roll(id(&keys[1])), &json!({"grace_seconds": 0, "only_used_scopes": false})).await;
    let same: Value = res.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(strings(&same["scopes"]), USED);
}
both!(a_roll_with_the_used_scopes_through_the_api);

/// Pauses a key as `PATCH … {"disabled": true}` will.
fn disable(app: &TestApp, id: &str) {
    use latchkey::store::schema::api_keys;
    let id = id.to_owned();
    app.db()
        .run_sync(move |c| {
            diesel::update(api_keys::table.find(id))
                .set(api_keys::disabled_at.eq(Some(1)))
                .execute(c)
                .map_err(StoreError::from)
        })
        .unwrap();
}

fn reminded(app: &TestApp, id: &str, kind: &str) -> bool {
    let (id, kind) = (id.to_owned(), kind.to_owned());
    app.db().run_sync(move |c| Reminder::sent(c, &id, &kind).map_err(StoreError::from)).unwrap()
}

/// A key expiring `secs` from the test clock's now.
pub async fn expiring(app: &TestApp, name: &str, secs: i64) -> Value {
    let at = latchkey::web::format::rfc3339(app.clock().now() + secs);
    create_key(app, json!({"name": name, "scopes": ["templates:read"], "expires_at": at})).await
}

async fn expiry_reminders_come_a_week_and_a_day_before_once_each(app: TestApp) {
    app.owner_session().await;
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    back(&app, 5 * DAY + DAY / 2);
    let weekly = expiring(&dev, "weekly", 6 * DAY).await;
    let late = expiring(&app, "late", 12 * 3600).await;
    let far = expiring(&app, "far", 30 * DAY).await;
    let revoked = expiring(&app, "revoked", 3 * DAY).await;
    assert!(api_delete(&app, &format!("/api/v1/api-keys/{}", id(&revoked))).await.status().is_success());
    let paused = expiring(&app, "paused", 3 * DAY).await;
    disable(&app, id(&paused));
    let rolled = expiring(&app, "rolled", 3 * DAY).await;
    let res = api_post(&app, &format!("/api/v1/api-keys/{}/roll", id(&rolled)), &json!({"grace_seconds": 3600})).await;
    let successor: Value = res.json::<Value>().await.unwrap()["data"].clone();

    let (claimed, notices) = app.run_reminders_recorded().await;
    assert_eq!(claimed, 3, "weekly, late and the rolled key's successor: {notices:?}");
    let notice = |key: &Value| notices.iter().find(|n| n.key.as_ref().unwrap().id == id(key)).unwrap().clone();
    assert_eq!(notice(&weekly).recipients, ["dev@acme.test", OWNER_EMAIL], "its creator and the owner");
    assert_eq!(notice(&late).recipients, [OWNER_EMAIL]);
    assert_eq!(notice(&weekly).key.unwrap().prefix, weekly["prefix"].as_str().unwrap());
    assert_eq!(
        notice(&weekly).text,
        format!("Key weekly ({}…) expires in 6 days.", weekly["prefix"].as_str().unwrap())
    );
    for n in &notices {
        for k in [&weekly, &late, &successor] {
            assert!(!n.text.contains(k["key"].as_str().unwrap()), "never a secret");
        }
    }
    let week = events(&app, "api_key.expiring", id(&weekly));
    assert_eq!(week.len(), 1);
    assert_eq!((week[0]["details"]["days"].as_i64(), week[0]["actor"].as_str()), (Some(6), Some("Latchkey")));
    let day = events(&app, "api_key.expiring", id(&late));
    assert_eq!((day.len(), day[0]["details"]["days"].as_i64()), (1, Some(1)));
    assert!(
        reminded(&app, id(&late), "expiring_1d") && !reminded(&app, id(&late), "expiring_7d"),
        "only the 1-day one"
    );
    for quiet in [&far, &revoked, &paused, &rolled] {
        assert!(events(&app, "api_key.expiring", id(quiet)).is_empty(), "{}", quiet["name"]);
    }
    assert_eq!(app.run_reminders().await, 0, "each once");

    // A day before: the one-day reminder follows the weekly one.
    back(&app, -(5 * DAY + DAY / 2));
    assert_eq!(app.run_reminders().await, 1);
    let week = events(&app, "api_key.expiring", id(&weekly));
    assert_eq!(week.len(), 2);
    assert_eq!(week[1]["details"]["days"].as_i64(), Some(1));
    assert_eq!(app.run_reminders().await, 0);
    assert_eq!(events(&app, "api_key.expiring", id(&late)).len(), 1, "an expired key hears nothing more");
    let page = app.get_html(&format!("{BASE}/{}", id(&weekly))).await;
    assert!(page.contains(r#"<span class="event-actor">Latchkey</span> reminded the team that key"#), "{page}");
}
both!(expiry_reminders_come_a_week_and_a_day_before_once_each);

#[tokio::test]
async fn two_instances_send_each_reminder_once() {
    let Some(apps) = spawn_instances(2, &[("LATCHKEY_DEFAULT_PLAN", "unlimited")]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(expiring(a, &format!("k{i}"), 3 * DAY).await);
    }
    let (n1, n2, n3, n4) = tokio::join!(a.run_reminders(), b.run_reminders(), a.run_reminders(), b.run_reminders());
    assert_eq!(n1 + n2 + n3 + n4, 4);
    for clock in [a.clock(), b.clock()] {
        clock.advance(2 * DAY + DAY / 2);
    }
    let (n1, n2, n3, n4) = tokio::join!(b.run_reminders(), a.run_reminders(), b.run_reminders(), a.run_reminders());
    assert_eq!(n1 + n2 + n3 + n4, 4);
    for key in &keys {
        let sent = events(a, "api_key.expiring", id(key));
        let days: Vec<i64> = sent.iter().map(|e| e["details"]["days"].as_i64().unwrap()).collect();
        assert_eq!(days, [3, 1], "one per threshold");
    }
}

async fn the_banner_names_expiring_keys_to_those_told_about_them(app: TestApp) {
    app.owner_session().await;
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let dev_key = expiring(&dev, "Dev soon", 2 * DAY).await;
    expiring(&app, "Owner soon", 3 * DAY).await;
    for (name, days) in [("Later one", 5), ("Later two", 6), ("Later three", 6)] {
        expiring(&app, name, days * DAY).await;
    }
    let gone = expiring(&app, "Gone", DAY).await;
    api_delete(&app, &format!("/api/v1/api-keys/{}", id(&gone))).await;

    let page = app.get_html("/settings/team").await;
    let banner = &page[page.find(r#"id="expiry-banner""#).expect("the owner sees the banner")..];
    let banner = &banner[..banner.find("</div>").unwrap()];
    assert!(banner.contains(&format!(r#"Key <a href="{BASE}/{}">Dev soon</a> expires"#, id(&dev_key))), "{banner}");
    assert!(banner.contains(">in 2 days</time>") && banner.contains("Owner soon") && banner.contains("Later "));
    assert!(banner.contains("and 2 more.") && !banner.contains("Gone"), "{banner}");
    assert!(banner.contains(r#"href="/settings/developer/api-keys?status=expiring_soon""#));

    let mine = dev.get_html("/settings/security").await;
    assert!(mine.contains(r#"id="expiry-banner""#) && mine.contains("Dev soon"), "the developer's own key");
    assert!(!mine.contains("Owner soon") && !mine.contains("expiring-more"), "not the others'");
    let nothing = viewer.get_html("/settings/team").await;
    assert!(!nothing.contains("expiry-banner"), "the viewer made none of them");

    let list = app.get_html(&format!("{BASE}?status=expiring_soon")).await;
    assert!(row(&list, id(&dev_key)).contains(r#"<div class="expiry-note">Expires in 2 days</div>"#));
    let fragment = app
        .client
        .get(app.url(&format!("{BASE}/{}/roll", id(&dev_key))))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert!(!fragment.text().await.unwrap().contains("expiry-banner"), "fragments carry no banner");
}
both!(the_banner_names_expiring_keys_to_those_told_about_them);
