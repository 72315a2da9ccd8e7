//! Editing and pausing keys, attacked: as every member role and another team,
//! with API keys lacking `api_keys:write` or narrower than what they try to
//! hand out, without CSRF, and with bodies of every wrong shape. Every refused
//! variant changes nothing; the legitimate variation works.
//!
//! Also the audit's findings on edits (issue 14): an edit renewing the
//! team's maximum lifetime (M1), a roll racing an edit on PostgreSQL (L1),
//! dates past the year 9999 (I3).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{member, member_id};
use crate::api_keys::{api_post, call, create_key, error_code};
use crate::both;
use crate::helpers::{Backend, TEST_SECRET, TestApp, csrf_from, service_key, spawn_app};
use crate::key_edit::{edit_form, events, in_days, key_of, patch, patch_with_key, patched, sql, unlimited};
use latchkey::web::format::rfc3339;

const KEYS: &str = "/settings/developer/api-keys";

/// A key of another team ("Globex"), made beside the app's own; its id.
fn other_teams_key(app: &TestApp) -> String {
    use latchkey::domain::Role;
    use latchkey::service::audit::Actor;
    use latchkey::service::keys::{self, Creator, Expiry, KeyRequest, Settings};
    use latchkey::store::models::Team;
    let hasher = latchkey::service::crypto::Keys::derive(TEST_SECRET.as_bytes());
    app.db()
        .run_sync(|c| {
            let team = Team {
                id: "team_globex".into(),
                name: "Globex".into(),
                require_totp: false,
                created_at: 0,
                plan: None,
                max_key_lifetime_days: None,
            };
            team.insert(c)?;
            let actor = Actor::operator();
            let creator = Creator {
                actor: &actor,
                team_id: "team_globex",
                role: Role::Owner,
                ceiling: None,
                ip_ceiling: None,
                not_after: None,
            };
            let catalog = vec!["templates:read".to_owned()];
            let req = KeyRequest {
                name: "Globex key".into(),
                description: String::new(),
                scopes: catalog.clone(),
                expiry: Expiry::Never,
                allowed_ips: Vec::new(),
            };
            let settings = Settings { prefix: "lk", catalog: &catalog };
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            Ok::<_, latchkey::service::Error>(keys::create(c, &hasher, &creator, settings, &req, now)?.0.id)
        })
        .unwrap()
}

fn name_in_db(app: &TestApp, id: &str) -> String {
    let id = id.to_owned();
    let key = app
        .db()
        .run_sync(move |c| latchkey::store::models::ApiKey::find(c, &id).map_err(latchkey::store::StoreError::from));
    key.unwrap().unwrap().name
}

async fn only_those_who_may_manage_a_key_edit_it_and_other_teams_keys_do_not_exist(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let owners = create_key(&app, json!({"name": "Owner's key", "scopes": ["templates:read"]})).await;
    let id = owners["id"].as_str().unwrap();
    let dev = member(&app, "dev@acme.test", "developer").await;
    let viewer = member(&app, "viewer@acme.test", "viewer").await;
    let admin = member(&app, "admin@acme.test", "admin").await;
    let page = format!("{KEYS}/{id}");
    let before = key_of(&app, id).await;
    let attempts =
        [json!({"name": "mine now"}), json!({"disabled": true}), json!({}), json!({"scopes": ["templates:read"]})];
    for body in &attempts {
        assert_eq!(patch(&dev, id, body).await.status(), StatusCode::NOT_FOUND, "developer: {body}");
        assert_eq!(patch(&viewer, id, body).await.status(), StatusCode::FORBIDDEN, "viewer: {body}");
    }
    for who in [&dev, &viewer] {
        for path in ["disable", "enable"] {
            assert_eq!(who.get(&format!("{page}/{path}")).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let res = who
            .post_form("/settings/team", &format!("{page}/edit"), &[("name", "x"), ("scopes", "templates:read")])
            .await;
        assert!(matches!(res.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{}", res.status());
        let res = who.post_form("/settings/team", &format!("{page}/disable"), &[]).await;
        assert!(matches!(res.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{}", res.status());
    }
    assert_eq!(key_of(&app, id).await, before, "nothing changed");
    assert_eq!(call(&app, "/api/v1/auth/test", owners["key"].as_str().unwrap()).await.status(), StatusCode::OK);

    // A developer edits their own key; an admin any key — until demoted (the role is read again).
    let devs = create_key(&dev, json!({"name": "Dev's key", "scopes": ["templates:read"]})).await;
    assert_eq!(
        patched(&dev, devs["id"].as_str().unwrap(), json!({"name": "Dev's renamed"})).await["name"],
        "Dev's renamed"
    );
    assert_eq!(patched(&admin, id, json!({"description": "by the admin"})).await["description"], "by the admin");
    let admin_id = member_id(&app.get_html("/settings/team").await, "admin@acme.test");
    let res = app
        .post_form("/settings/team", &format!("/settings/team/members/{admin_id}/role"), &[("role", "developer")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(patch(&admin, id, &json!({"name": "demoted"})).await.status(), StatusCode::NOT_FOUND);
    let updated = events(&app, id, "api_key.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].actor_label, "admin@acme.test", "the audit names who acted");

    // Another team's key does not exist here, whatever the path.
    let globex = other_teams_key(&app);
    assert_eq!(patch(&app, &globex, &json!({"name": "ours"})).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(patch(&app, &globex, &json!({"disabled": true})).await.status(), StatusCode::NOT_FOUND);
    for path in ["disable", "enable"] {
        assert_eq!(app.get(&format!("{KEYS}/{globex}/{path}")).await.status(), StatusCode::NOT_FOUND);
        let res = app.post_form("/settings/team", &format!("{KEYS}/{globex}/{path}"), &[]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = app
        .post_form(
            "/settings/team",
            &format!("{KEYS}/{globex}/edit"),
            &[("name", "ours"), ("scopes", "templates:read")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(name_in_db(&app, &globex), "Globex key");
    assert!(
        events(&app, &globex, "api_key.updated").is_empty() && events(&app, &globex, "api_key.disabled").is_empty()
    );
}
both!(only_those_who_may_manage_a_key_edit_it_and_other_teams_keys_do_not_exist);

async fn a_key_needs_api_keys_write_and_never_hands_out_more_than_it_holds(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let reader = create_key(&app, json!({"name": "reader", "scopes": ["api_keys:read", "templates:write"]})).await;
    let writer = create_key(
        &app,
        json!({"name": "writer", "scopes": ["api_keys:write"], "allowed_ips": ["127.0.0.1"], "expires_at": in_days(10)}),
    )
    .await;
    let target = create_key(&app, json!({"name": "target", "scopes": ["templates:read", "templates:write"]})).await;
    let admin = create_key(&app, json!({"name": "everything", "scopes": ["admin"], "expires_at": in_days(3)})).await;
    let (w, tid, aid) =
        (writer["key"].as_str().unwrap(), target["id"].as_str().unwrap(), admin["id"].as_str().unwrap());
    patched(&app, aid, json!({"disabled": true})).await;

    // Without api_keys:write: 403, nothing changed.
    let before = key_of(&app, tid).await;
    let (status, json) =
        error_code(patch_with_key(&app, reader["key"].as_str().unwrap(), tid, &json!({"name": "x"})).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("api_keys:write"));

    // What a narrow writer may not do, each refused on its field, nothing changed.
    let refused = [
        (tid, json!({"allowed_ips": ["10.0.0.0/8"]}), "allowed_ips"),
        (tid, json!({"expires_at": in_days(20)}), "expires_at"),
        (tid, json!({"scopes": ["templates:read", "api_keys:write"]}), "scopes"),
        (aid, json!({"disabled": false}), "disabled"),
        (aid, json!({"expires_at": in_days(5)}), "expires_at"),
    ];
    for (id, body, field) in &refused {
        let (status, json) = error_code(patch_with_key(&app, w, id, body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["fields"][field].is_string(), "{body}: {json}");
    }
    assert_eq!(key_of(&app, tid).await, before);
    assert_eq!(key_of(&app, aid).await["status"], "disabled");
    assert_eq!(
        call(&app, "/api/v1/auth/test", admin["key"].as_str().unwrap()).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // What it may: narrow another key's scopes, addresses and life, within its own limits.
    let k = patched_with_key(&app, w, tid, json!({"scopes": ["templates:read"], "allowed_ips": ["127.0.0.1"]})).await;
    assert_eq!((k["scopes"].clone(), k["allowed_ips"].clone()), (json!(["templates:read"]), json!(["127.0.0.1/32"])));
    assert!(patched_with_key(&app, w, tid, json!({"expires_at": in_days(5)})).await["expires_at"].is_string());
    patched_with_key(&app, w, aid, json!({"name": "everything (paused)"})).await;
    // Loosening a key it could have made is fine; one holding more than the writer is not.
    let narrowed = key_of(&app, tid).await;
    for (body, field) in [
        (json!({"expires_at": in_days(8)}), "expires_at"),
        (json!({"expires_at": null}), "expires_at"),
        (json!({"allowed_ips": []}), "allowed_ips"),
        (json!({"allowed_ips": ["127.0.0.1", "10.0.0.1"]}), "allowed_ips"),
    ] {
        let (status, json) = error_code(patch_with_key(&app, w, tid, &body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["fields"][field].is_string(), "{body}: {json}");
    }
    assert_eq!(key_of(&app, tid).await, narrowed);
    let peer = create_key(&app, json!({"name": "peer", "scopes": ["api_keys:write"], "expires_at": in_days(2)})).await;
    let pid = peer["id"].as_str().unwrap();
    assert!(patched_with_key(&app, w, pid, json!({"expires_at": in_days(8)})).await["expires_at"].is_string());
    let updated = events(&app, tid, "api_key.updated");
    assert_eq!(updated.len(), 2);
    assert!(updated.iter().all(|e| e.actor_label.starts_with("API key lk_") && e.actor_label.contains("(writer)")));
}
both!(a_key_needs_api_keys_write_and_never_hands_out_more_than_it_holds);

async fn patched_with_key(app: &TestApp, key: &str, id: &str, body: Value) -> Value {
    let (status, json) = error_code(patch_with_key(app, key, id, &body).await).await;
    assert_eq!(status, StatusCode::OK, "{body} → {json}");
    json["data"].clone()
}

async fn bad_edits_are_refused_and_change_nothing(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let created = create_key(&app, json!({"name": "Steady", "scopes": ["templates:read", "templates:write"]})).await;
    let id = created["id"].as_str().unwrap();
    let before = key_of(&app, id).await;
    let many: Vec<String> = (0..51).map(|i| format!("10.0.{i}.0/24")).collect();
    let cases = [
        (json!({"name": "nul\u{0}name"}), "name"),
        (json!({"name": "tab\tname"}), "name"),
        (json!({"name": "line\r\nbreak"}), "name"),
        (json!({"description": "bell\u{7}"}), "description"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"description": "x".repeat(501)}), "description"),
        (json!({"name": 5}), "name"),
        (json!({"name": null}), "name"),
        (json!({"scopes": "templates:read"}), "scopes"),
        (json!({"scopes": [1]}), "scopes"),
        (json!({"scopes": ["templates:read\u{0}"]}), "scopes"),
        (json!({"allowed_ips": ["10.0.0.1\u{0}"]}), "allowed_ips"),
        (json!({"allowed_ips": ["999.1.1.1"]}), "allowed_ips"),
        (json!({"allowed_ips": "10.0.0.0/8"}), "allowed_ips"),
        (json!({"allowed_ips": many}), "allowed_ips"),
        (json!({"expires_at": 1893456000}), "expires_at"),
        (json!({"expires_at": "tomorrow"}), "expires_at"),
        (json!({"expires_at": "99999-01-01T00:00:00Z"}), "expires_at"),
        (json!({"disabled": "yes"}), "disabled"),
        (json!({"disabled": null}), "disabled"),
        (json!({"disabled": 1}), "disabled"),
        (json!({"key_hash": "x"}), "key_hash"),
        (json!({"id": "key_other"}), "id"),
        (json!({"team_id": "team_globex"}), "team_id"),
        (json!({"\u{0}<script>": 1}), "body"),
        (json!(["name"]), "body"),
        (json!("name"), "body"),
        (json!({"name": "Fine name", "scopes": ["nope:read"]}), "scopes"),
        (json!({"name": "Fine name", "extra": true}), "extra"),
    ];
    for (body, field) in &cases {
        let (status, json) = error_code(patch(&app, id, body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert_eq!(json["error"]["code"], "validation_failed");
        assert!(json["error"]["fields"][field].is_string(), "{body}: {json}");
    }
    // Not JSON, too big, too deep: a clear 4xx, never a 500.
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let raw = |body: String, json_type: bool| {
        let mut req = app.client.patch(app.url(&format!("/api/v1/api-keys/{id}"))).header("X-CSRF-Token", &csrf);
        if json_type {
            req = req.header("Content-Type", "application/json");
        }
        async move { req.body(body).send().await.unwrap().status() }
    };
    assert_eq!(raw("{".into(), true).await, StatusCode::BAD_REQUEST);
    assert_eq!(raw(r#"{"name":"a"}"#.into(), false).await, StatusCode::BAD_REQUEST, "not sent as JSON");
    assert_eq!(raw(format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000)), true).await, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(raw(format!("{}{}", "[".repeat(200), "]".repeat(200)), true).await, StatusCode::BAD_REQUEST);
    assert_eq!(raw(r#"{"name":"\ud800"}"#.into(), true).await, StatusCode::BAD_REQUEST, "a lone surrogate");
    assert_eq!(key_of(&app, id).await, before, "nothing changed");
    assert!(events(&app, id, "api_key.updated").is_empty());

    // A session needs the CSRF header (the API) or field (the page); odd ids are not found.
    let url = app.url(&format!("/api/v1/api-keys/{id}"));
    let none = app.client.patch(&url).json(&json!({"name": "forged"})).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::FORBIDDEN);
    let wrong =
        app.client.patch(&url).header("X-CSRF-Token", "guess").json(&json!({"name": "forged"})).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    for path in ["edit", "disable", "enable"] {
        let form = [("name", "forged"), ("scopes", "templates:read")];
        let res = app.client.post(app.url(&format!("{KEYS}/{id}/{path}"))).form(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path} without its CSRF field");
    }
    for odd in ["key_%00", "..%2f..", &"k".repeat(300)] {
        assert_eq!(patch(&app, odd, &json!({"name": "x"})).await.status(), StatusCode::NOT_FOUND, "{odd}");
    }
    assert_eq!(key_of(&app, id).await, before, "still nothing changed");
}
both!(bad_edits_are_refused_and_change_nothing);

async fn a_disabled_key_reported_as_leaked_is_revoked_for_good(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let created = create_key(&app, json!({"name": "Paused and leaked", "scopes": ["templates:read"]})).await;
    let (id, secret) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    patched(&app, id, json!({"disabled": true})).await;
    let scanner = service_key(&app, &["leaks:report"]);
    let res = app
        .other_client()
        .client
        .post(app.url("/api/v1/leaked-keys"))
        .bearer_auth(scanner)
        .json(&json!({"keys": [secret], "url": "https://example.com/paste"}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["results"][0]["outcome"], "revoked", "{body}");
    let (status, json) = error_code(patch(&app, id, &json!({"disabled": false})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(key_of(&app, id).await["status"], "revoked");
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::UNAUTHORIZED);
}
both!(a_disabled_key_reported_as_leaked_is_revoked_for_good);

const HOUR: i64 = 3_600;

/// M1: an edit never renews a key's allowance. With a team maximum of one
/// day, a key made twelve hours ago may live twelve more hours, not "one
/// day from now" — through the API and through the Edit card alike; a new
/// lease of life is a roll.
async fn an_edit_never_renews_the_teams_maximum_lifetime(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let res = app.post_form(KEYS, &format!("{KEYS}/policy"), &[("max_lifetime_days", "1")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let now = app.clock().now();
    let body = json!({"name": "Day pass", "scopes": ["templates:read"], "expires_at": rfc3339(now + 6 * HOUR)});
    let id = create_key(&app, body).await["id"].as_str().unwrap().to_owned();
    sql(&app, &format!("UPDATE api_keys SET created_at = {} WHERE id = '{id}'", now - 12 * HOUR));
    let before = key_of(&app, &id).await;

    // Within "now + one day", beyond "creation + one day".
    let renewed = rfc3339(now + 23 * HOUR);
    let (status, json) = error_code(patch(&app, &id, &json!({"expires_at": renewed})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(json["error"]["code"], "validation_failed");
    assert!(json["error"]["fields"]["expires_at"].as_str().unwrap().contains("from their creation"), "{json}");
    let page_url = format!("{KEYS}/{id}");
    let page = app.get_html(&page_url).await;
    let form = edit_form(&page, &[("name", "Day pass"), ("scopes", "templates:read"), ("expires_at", &renewed)]);
    let res = app.client.post(app.url(&format!("{page_url}/edit"))).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "the Edit card");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="expires_at-error""#) && html.contains("from their creation"), "{html}");
    assert_eq!(key_of(&app, &id).await, before, "nothing changed");
    assert!(events(&app, &id, "api_key.updated").is_empty());

    // Within what its creation allows: accepted, both ways.
    let within = rfc3339(now + 11 * HOUR);
    assert_eq!(patched(&app, &id, json!({"expires_at": within})).await["expires_at"], within.as_str());
    let page = app.get_html(&page_url).await;
    let sooner = rfc3339(now + 10 * HOUR);
    let form = edit_form(&page, &[("name", "Day pass"), ("scopes", "templates:read"), ("expires_at", &sooner)]);
    let res = app.client.post(app.url(&format!("{page_url}/edit"))).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(key_of(&app, &id).await["expires_at"], sooner.as_str());

    // A key made before the maximum was set (3 days old, 20 hours left) may
    // be shortened, never lengthened.
    let body = json!({"name": "Older", "scopes": ["templates:read"], "expires_at": rfc3339(now + 20 * HOUR)});
    let old_id = create_key(&app, body).await["id"].as_str().unwrap().to_owned();
    sql(&app, &format!("UPDATE api_keys SET created_at = {} WHERE id = '{old_id}'", now - 72 * HOUR));
    let shorter = rfc3339(now + 10 * HOUR);
    assert_eq!(patched(&app, &old_id, json!({"expires_at": shorter})).await["expires_at"], shorter.as_str());
    let (status, json) = error_code(patch(&app, &old_id, &json!({"expires_at": rfc3339(now + 11 * HOUR)})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(key_of(&app, &old_id).await["expires_at"], shorter.as_str());

    // One that never expires may be given an expiry within what the team allows from now.
    let body = json!({"name": "Forever", "scopes": ["templates:read"], "expires_at": rfc3339(now + HOUR)});
    let never = create_key(&app, body).await;
    let never_id = never["id"].as_str().unwrap().to_owned();
    sql(
        &app,
        &format!("UPDATE api_keys SET created_at = {}, expires_at = NULL WHERE id = '{never_id}'", now - 72 * HOUR),
    );
    let bounded = rfc3339(now + 20 * HOUR);
    assert_eq!(patched(&app, &never_id, json!({"expires_at": bounded})).await["expires_at"], bounded.as_str());
}
both!(an_edit_never_renews_the_teams_maximum_lifetime);

/// I3: an expiry past the year 9999 (written so, or brought there by its
/// offset) is refused on create and on edit and never stored; the last day
/// that can be written is a date like any other.
async fn an_expiry_past_the_year_9999_is_refused_and_never_stored(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let id = create_key(&app, json!({"name": "Steady", "scopes": ["templates:read"]})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = key_of(&app, &id).await;
    for (i, late) in ["10000-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"].into_iter().enumerate() {
        let body = json!({"name": format!("Late {i}"), "scopes": ["templates:read"], "expires_at": late});
        let (status, json) = error_code(api_post(&app, "/api/v1/api-keys", &body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "create {late}: {json}");
        assert_eq!(json["error"]["code"], "validation_failed");
        assert!(json["error"]["fields"]["expires_at"].is_string(), "create {late}: {json}");
        let (status, json) = error_code(patch(&app, &id, &json!({"expires_at": late})).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "edit {late}: {json}");
        assert!(json["error"]["fields"]["expires_at"].is_string(), "edit {late}: {json}");
    }
    assert_eq!(key_of(&app, &id).await, before, "never stored");
    let listed: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "no key was made");

    let last = "9999-12-31T00:00:00Z";
    let far = create_key(&app, json!({"name": "Far", "scopes": ["templates:read"], "expires_at": last})).await;
    assert_eq!(far["expires_at"], last);
    assert_eq!(patched(&app, &id, json!({"expires_at": last})).await["expires_at"], last);
    assert_eq!(key_of(&app, &id).await["expires_at"], last);
    let page = app.get_html(&format!("{KEYS}/{id}")).await;
    assert!(page.contains(&format!(r#"datetime="{last}""#)) && page.contains("9999-12-31 00:00 UTC"), "{page}");
}
both!(an_expiry_past_the_year_9999_is_refused_and_never_stored);

/// L1 (PostgreSQL: SQLite's writers never overlap): a roll racing an edit
/// that narrows and pauses the key. Whenever both succeed, the roll came
/// first (its event precedes the edit's) — the copy never carries the key as
/// it was before an edit that had committed; whenever the edit came first,
/// the roll is refused (a disabled key is not rolled) and no key is made.
#[tokio::test]
async fn a_roll_racing_an_edit_never_copies_the_key_as_it_was() {
    let Some(app) = spawn_app(Backend::Postgres).await else { return };
    app.owner_session().await;
    unlimited(&app);
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let (mut rolls_first, mut edits_first) = (0, 0);
    for round in 0..20 {
        let body = json!({"name": format!("Raced {round}"), "scopes": ["templates:read", "templates:write"]});
        let id = create_key(&app, body).await["id"].as_str().unwrap().to_owned();
        let edit = app
            .client
            .patch(app.url(&format!("/api/v1/api-keys/{id}")))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"scopes": ["templates:read"], "disabled": true}))
            .send();
        let roll = app
            .client
            .post(app.url(&format!("/api/v1/api-keys/{id}/roll")))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"grace_seconds": 3600}))
            .send();
        let (edit, roll) = tokio::join!(edit, roll);
        let (edit, (roll_status, roll_body)) = (edit.unwrap(), error_code(roll.unwrap()).await);
        assert_eq!(edit.status(), StatusCode::OK, "round {round}: a key in its grace may be narrowed and paused");
        let rolled = events(&app, &id, "api_key.rolled");
        let mut edited = events(&app, &id, "api_key.updated");
        edited.extend(events(&app, &id, "api_key.disabled"));
        assert_eq!(edited.len(), 2, "round {round}: the narrowing and the pause");
        let old = key_of(&app, &id).await;
        assert_eq!((old["status"].as_str(), old["scopes"].clone()), (Some("disabled"), json!(["templates:read"])));
        if roll_status == StatusCode::OK {
            rolls_first += 1;
            assert_eq!(rolled.len(), 1, "round {round}");
            assert!(
                edited.iter().all(|e| rolled[0].id < e.id),
                "round {round}: the roll copied the key as it was before an edit that had committed: \
                 rolled {} after {:?}",
                rolled[0].id,
                edited.iter().map(|e| (e.id, e.action.clone())).collect::<Vec<_>>()
            );
            let copy = key_of(&app, roll_body["data"]["id"].as_str().unwrap()).await;
            assert_eq!(copy["scopes"], json!(["templates:read", "templates:write"]), "the key as it was when rolled");
            assert_eq!(copy["status"], "active");
        } else {
            edits_first += 1;
            assert_eq!(roll_status, StatusCode::UNPROCESSABLE_ENTITY, "round {round}: {roll_body}");
            assert!(roll_body["error"]["fields"]["key"].is_string(), "round {round}: {roll_body}");
            assert!(roll_body["data"].is_null(), "no secret handed out");
            assert!(rolled.is_empty() && old["replaced_by"].is_null(), "round {round}: nothing rolled");
        }
    }
    let listed: Value = app.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 20 + rolls_first, "a new key only for each roll that won");
    assert_eq!(rolls_first + edits_first, 20);
}
