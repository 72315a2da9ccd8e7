//! Least privilege and expiry reminders under attack: "roll with only the
//! used scopes" by everyone who may not roll the key (a developer on
//! another's key, a viewer, another team, a key without `api_keys:write`, a
//! request without its CSRF token), by a narrow key whose ceiling lacks a
//! used scope (refused, never narrowed further), with malformed bodies; and
//! the banner and the reminders never crossing teams.
//!
//! A developer may read a teammate's key, so the confirmation page (which
//! asks only of keys the caller may roll) answers 404 and the roll itself
//! 403 "Developers can change only the keys they created", as a plain roll
//! does; another team's key is 404 everywhere.
//!
//! Also the audit's findings (issue 14): a roll body with a misspelt, an
//! unknown or a null field (I1), and reminders sent again by nudging a key's
//! expiry (L4).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::member;
use crate::api_keys::{api_post, call, create_key, error_code};
use crate::both;
use crate::helpers::{TestApp, csrf_from};
use crate::key_edit::patched;
use crate::key_privilege::{BASE, DAY, GRANTED, USED, events, expiring, id, key_json, strings, watched_keys};
use latchkey::web::format::{parse_rfc3339, rfc3339};

const GLOBEX_EMAIL: &str = "owner@globex.test";
const GLOBEX_PASSWORD: &str = "globex password 123";

/// The owner of a second team, Globex, signed in on a browser of their own.
async fn other_team_owner(app: &TestApp) -> TestApp {
    let hash = latchkey::service::password::hash(&mut Default::default(), GLOBEX_PASSWORD).unwrap();
    app.db()
        .run_sync(|c| latchkey::service::accounts::create_user(c, GLOBEX_EMAIL, hash, false, Some("Globex")))
        .unwrap();
    let other = app.other_client();
    assert_eq!(other.login(GLOBEX_EMAIL, GLOBEX_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    other
}

async fn with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.other_client().client.post(app.url(path)).header("X-API-Key", key).json(body).send().await.unwrap()
}

const NARROW: &str = r#"{"grace_seconds": 0, "only_used_scopes": true}"#;

fn narrow() -> Value {
    serde_json::from_str(NARROW).unwrap()
}

/// The form POST of the page's "roll with only the used scopes", with `who`'s CSRF token.
async fn page_roll(who: &TestApp, key_id: &str) -> reqwest::Response {
    let csrf = csrf_from(&who.get_html("/settings/security").await);
    let form = [("csrf_token", csrf.as_str()), ("grace", "0")];
    who.client.post(who.url(&format!("{BASE}/{key_id}/roll-used"))).form(&form).send().await.unwrap()
}

async fn team_key_count(app: &TestApp) -> usize {
    let list: Value = app.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    list["data"].as_array().unwrap().len()
}

async fn only_those_who_may_roll_a_key_may_narrow_it(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("catalog sync", GRANTED, USED)]).await;
    let target = id(&keys[0]);
    let reader = create_key(&app, json!({"name": "reader", "scopes": ["api_keys:read"]})).await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let viewer = member(&app, "viewer@acme.test", "viewer").await;
    let globex = other_team_owner(&app).await;
    let before = team_key_count(&app).await;
    let confirm = format!("{BASE}/{target}/roll-used");
    let api = format!("/api/v1/api-keys/{target}/roll");

    for (who, name) in [(&dev, "developer"), (&viewer, "viewer"), (&globex, "another team")] {
        assert_eq!(who.get(&confirm).await.status(), StatusCode::NOT_FOUND, "{name}: the confirmation");
        let page = page_roll(who, target).await;
        let expected = if name == "another team" { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN };
        assert_eq!(page.status(), expected, "{name}: the page's roll");
        let (status, body) = error_code(api_post(who, &api, &narrow()).await).await;
        assert_eq!(status, expected, "{name}: the API's roll: {body}");
        assert!(body["data"]["key"].is_null());
    }
    // Another team's key is not found, not even its judgement.
    assert_eq!(globex.get(&format!("/api/v1/api-keys/{target}")).await.status(), StatusCode::NOT_FOUND);
    // A key that may only read.
    let (status, body) = error_code(with_key(&app, &api, reader["key"].as_str().unwrap(), &narrow()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"]["message"].as_str().unwrap().contains("api_keys:write"), "{body}");
    // No CSRF token: neither the form nor a session's API call.
    let no_token = app.client.post(app.url(&confirm)).form(&[("grace", "0")]).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let no_header = app.client.post(app.url(&api)).json(&narrow()).send().await.unwrap();
    assert_eq!(no_header.status(), StatusCode::FORBIDDEN);

    assert_eq!(key_json(&app, target).await["replaced_by"], Value::Null, "the key was not rolled");
    assert_eq!(team_key_count(&app).await, before, "no key was made");
    assert_eq!(call(&app, "/api/v1/auth/test", keys[0]["key"].as_str().unwrap()).await.status(), StatusCode::OK);
    // The one who may: the owner, on the page.
    let res = page_roll(&app, target).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains(r#"<code id="secret">"#));
}
both!(only_those_who_may_roll_a_key_may_narrow_it);

async fn a_narrowed_roll_never_exceeds_the_callers_ceiling(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("catalog sync", GRANTED, USED)]).await;
    let api = format!("/api/v1/api-keys/{}/roll", id(&keys[0]));
    let before = team_key_count(&app).await;
    // Holds api_keys:write, but not products:read, which the new key would carry.
    for scopes in [json!(["api_keys:write"]), json!(["api_keys:write", "api_keys:read"])] {
        let narrow_key = create_key(&app, json!({"name": format!("writer {scopes}"), "scopes": scopes})).await;
        let res = with_key(&app, &api, narrow_key["key"].as_str().unwrap(), &narrow()).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(!text.contains(r#""key":"lk_"#), "no secret handed out: {text}");
    }
    assert_eq!(team_key_count(&app).await, before + 2, "only the two writers were made");
    assert_eq!(key_json(&app, id(&keys[0])).await["replaced_by"], Value::Null);
    // Within its ceiling, a key may narrow another: the new key gets the used scopes, nothing else.
    let wide =
        create_key(&app, json!({"name": "wide", "scopes": ["api_keys:write", "api_keys:read", "products:read"]})).await;
    let res = with_key(&app, &api, wide["key"].as_str().unwrap(), &narrow()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new: Value = res.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(strings(&new["scopes"]), USED);
}
both!(a_narrowed_roll_never_exceeds_the_callers_ceiling);

async fn malformed_roll_requests_are_refused_and_change_nothing(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("catalog sync", GRANTED, USED)]).await;
    let api = format!("/api/v1/api-keys/{}/roll", id(&keys[0]));
    for flag in [json!("true"), json!(1), json!([true]), json!({"yes": true})] {
        let (status, body) =
            error_code(api_post(&app, &api, &json!({"grace_seconds": 0, "only_used_scopes": flag})).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{flag}");
        assert_eq!(body["error"]["code"], "validation_failed");
        assert!(body["error"]["fields"]["only_used_scopes"].is_string(), "{flag}: {body}");
    }
    for grace in [json!(-1), json!(604_801), json!(i64::MAX), json!("3600"), json!(1.5)] {
        let (status, body) =
            error_code(api_post(&app, &api, &json!({"grace_seconds": grace, "only_used_scopes": true})).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{grace}");
        assert!(body["error"]["fields"]["grace_seconds"].is_string(), "{grace}: {body}");
    }
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let raw = |body: &'static str| {
        app.client
            .post(app.url(&api))
            .header("X-CSRF-Token", csrf.clone())
            .header("Content-Type", "application/json")
            .body(body)
    };
    for body in ["[true]", "{\"only_used_scopes\": tru", "\"only_used_scopes\""] {
        assert_eq!(raw(body).send().await.unwrap().status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // A path that is not an id, on the page and the API.
    for bad in ["key%00x", "key%0d%0aSet-Cookie:x", "..%2F..%2Fsettings", &"k".repeat(200)] {
        assert_eq!(app.get(&format!("{BASE}/{bad}/roll-used")).await.status(), StatusCode::NOT_FOUND, "{bad}");
        let res = api_post(&app, &format!("/api/v1/api-keys/{bad}/roll"), &narrow()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    // A form grace that is not a number.
    let page = app.get_html(&format!("{BASE}/{}/roll-used", id(&keys[0]))).await;
    let form = [("csrf_token", csrf_from(&page)), ("grace", "a day".to_owned())];
    let res = app.client.post(app.url(&format!("{BASE}/{}/roll-used", id(&keys[0])))).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(key_json(&app, id(&keys[0])).await["replaced_by"], Value::Null, "nothing was rolled");
    // Refused while unknown, from the page too: back to the key, with the reason.
    let fresh = create_key(&app, json!({"name": "fresh", "scopes": GRANTED})).await;
    let form = [("csrf_token", csrf_from(&page)), ("grace", "0".to_owned())];
    let res = app.client.post(app.url(&format!("{BASE}/{}/roll-used", id(&fresh)))).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = app.get_html(&format!("{BASE}/{}", id(&fresh))).await;
    assert!(back.contains("We suggest scopes after 14 days of use: this key has not been watched that long yet."));
    assert_eq!(key_json(&app, id(&fresh)).await["replaced_by"], Value::Null);
}
both!(malformed_roll_requests_are_refused_and_change_nothing);

async fn reminders_and_the_banner_never_cross_teams(app: TestApp) {
    app.owner_session().await;
    let globex = other_team_owner(&app).await;
    let theirs = expiring(&globex, "Globex payroll", 2 * DAY).await;
    let ours = expiring(&app, "Acme billing", 3 * DAY).await;

    let page = app.get_html("/settings/team").await;
    assert!(page.contains("Acme billing") && !page.contains("Globex payroll"), "{page}");
    let page = globex.get_html("/settings/team").await;
    assert!(page.contains("Globex payroll") && !page.contains("Acme billing"));
    // Nor does the list filtered to them.
    let list = app.get_html(&format!("{BASE}?status=expiring_soon")).await;
    assert!(list.contains(id(&ours)) && !list.contains(id(&theirs)));

    let (claimed, notices) = app.run_reminders_recorded().await;
    assert_eq!(claimed, 2);
    for n in &notices {
        let expected =
            if n.key.as_ref().unwrap().id == id(&theirs) { GLOBEX_EMAIL } else { crate::helpers::OWNER_EMAIL };
        assert_eq!(n.recipients, [expected], "{n:?}");
    }
    // Each team's log holds its own reminder only.
    let log = app.get_html("/settings/team/audit").await;
    assert!(log.contains("Acme billing") && !log.contains("Globex payroll"));
}
both!(reminders_and_the_banner_never_cross_teams);

/// I1: a roll takes only `grace_seconds` and `only_used_scopes` (a boolean).
/// A misspelt flag, fields it does not take (`scopes`, anything else) and a
/// null flag are field errors naming the field — never a roll that keeps
/// every scope — from a session and from a key alike; nothing is rolled.
async fn a_roll_body_with_a_field_it_does_not_take_rolls_nothing(app: TestApp) {
    app.owner_session().await;
    let keys = watched_keys(&app, &[("catalog sync", GRANTED, USED)]).await;
    let writer = create_key(&app, json!({"name": "writer", "scopes": ["admin"]})).await;
    let api = format!("/api/v1/api-keys/{}/roll", id(&keys[0]));
    let before = team_key_count(&app).await;
    let cases = [
        (json!({"only_used_scope": true}), "only_used_scope"),
        (json!({"scopes": ["admin"]}), "scopes"),
        (json!({"grace_seconds": 60, "x": 1}), "x"),
        (json!({"only_used_scopes": null}), "only_used_scopes"),
    ];
    for (body, field) in &cases {
        let by_session = api_post(&app, &api, body).await;
        let by_key = with_key(&app, &api, writer["key"].as_str().unwrap(), body).await;
        for (who, res) in [("session", by_session), ("key", by_key)] {
            let (status, json) = error_code(res).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{who} {body}: {json}");
            assert_eq!(json["error"]["code"], "validation_failed");
            assert!(json["error"]["fields"][field].is_string(), "{who} {body}: {json}");
            assert!(json["data"].is_null(), "no secret handed out");
        }
    }
    assert_eq!(key_json(&app, id(&keys[0])).await["replaced_by"], Value::Null, "nothing was rolled");
    assert_eq!(team_key_count(&app).await, before, "no key was made");
    assert!(events(&app, "api_key.rolled", id(&keys[0])).is_empty());
    assert_eq!(call(&app, "/api/v1/auth/test", keys[0]["key"].as_str().unwrap()).await.status(), StatusCode::OK);
}
both!(a_roll_body_with_a_field_it_does_not_take_rolls_nothing);

/// L4: nudging a key's expiry a second at a time never sends its reminder
/// again: the key stays within the week the reminder was about. Moving it
/// out of the week (to 20 days) and back is different: the team was last
/// told the key had weeks left, so the new date within a week deserves a
/// reminder of its own — and each such round trip takes two audited edits.
async fn nudging_an_expiry_never_sends_its_reminder_again(app: TestApp) {
    app.owner_session().await;
    let key = expiring(&app, "nudged", 5 * DAY).await;
    let key_id = id(&key);
    let expires_at = parse_rfc3339(key["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(app.run_reminders().await, 1);
    assert_eq!(events(&app, "api_key.expiring", key_id).len(), 1);
    for nudge in 1..=5 {
        let later = rfc3339(expires_at + nudge);
        assert_eq!(patched(&app, key_id, json!({"expires_at": later})).await["expires_at"], later.as_str());
        assert_eq!(app.run_reminders().await, 0, "nudge {nudge}");
    }
    assert_eq!(events(&app, "api_key.expiring", key_id).len(), 1, "one reminder for one week");

    let now = app.clock().now();
    patched(&app, key_id, json!({"expires_at": rfc3339(now + 20 * DAY)})).await;
    assert_eq!(app.run_reminders().await, 0, "weeks left: nothing to say");
    patched(&app, key_id, json!({"expires_at": rfc3339(now + 5 * DAY)})).await;
    assert_eq!(app.run_reminders().await, 1, "back within a week: a new date to hear about");
    let sent = events(&app, "api_key.expiring", key_id);
    assert_eq!(sent.len(), 2);
    assert_eq!(events(&app, "api_key.updated", key_id).len(), 7, "every move audited");

    // Nudging across the threshold itself (just inside a week, then just
    // outside, after each reminder) sends nothing more either.
    let edge = expiring(&app, "edge", 7 * DAY - 30).await;
    let edge_id = id(&edge);
    assert_eq!(app.run_reminders().await, 1);
    for nudge in 1..=4 {
        let now = app.clock().now();
        patched(&app, edge_id, json!({"expires_at": rfc3339(now + 7 * DAY + 3)})).await;
        assert_eq!(app.run_reminders().await, 0, "outside by seconds {nudge}");
        patched(&app, edge_id, json!({"expires_at": rfc3339(now + 7 * DAY - 30)})).await;
        assert_eq!(app.run_reminders().await, 0, "back inside {nudge}");
    }
    assert_eq!(events(&app, "api_key.expiring", edge_id).len(), 1);
}
both!(nudging_an_expiry_never_sends_its_reminder_again);
