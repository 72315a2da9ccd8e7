//! API keys end to end: dashboard, JSON API, verification, limits, introspection.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, csrf_from, service_key, spawn_app_with};

/// Creates a key through the JSON API as the signed-in user; returns the body's `data`.
pub async fn create_key(app: &TestApp, body: Value) -> Value {
    let res = api_post(app, "/api/v1/api-keys", &body).await;
    let status = res.status();
    let json: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["data"].clone()
}

/// A session `DELETE` on the JSON API (with the CSRF header), e.g. a revoke.
pub async fn api_delete(app: &TestApp, path: &str) -> reqwest::Response {
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    app.client.delete(app.url(path)).header("X-CSRF-Token", csrf).send().await.unwrap()
}

pub async fn api_post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    post_json_with(app, path, ("X-CSRF-Token", &csrf), body).await
}

/// A JSON `POST` with one header: a key (`X-API-Key`) or a session's CSRF token.
pub async fn post_json_with(app: &TestApp, path: &str, (name, value): (&str, &str), body: &Value) -> reqwest::Response {
    app.client.post(app.url(path)).header(name, value).json(body).send().await.unwrap()
}

/// A key-authenticated GET claiming to come from `forwarded_for`.
async fn call_forwarded(app: &TestApp, path: &str, key: &str, forwarded_for: &str) -> reqwest::Response {
    let client = app.other_client();
    client
        .client
        .get(app.url(path))
        .header("X-API-Key", key)
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap()
}

pub async fn call(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.other_client().client.get(app.url(path)).header("X-API-Key", key).send().await.unwrap()
}

pub async fn error_code(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    (status, res.json().await.unwrap())
}

async fn the_secret_is_revealed_once_and_stored_nowhere(app: TestApp) {
    app.owner_session().await;
    let page = app.get_html("/settings/developer/api-keys").await;
    let csrf = csrf_from(&page);
    let res = app
        .client
        .post(app.url("/settings/developer/api-keys"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Production"),
            ("scopes", "templates:read"),
            ("scopes", "messages:send"),
            ("expires_in_days", "30"),
            ("allowed_ips", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let secret = crate::helpers::attr_after(&html, r#"<code id="secret">"#).unwrap();
    assert!(secret.starts_with("lk_") && secret.len() == 3 + 36, "{secret}");
    let curl = crate::helpers::attr_after(&html, r#"<code id="curl">"#).unwrap();
    assert!(curl.starts_with("curl -H ") && curl.contains(&format!("X-API-Key: {secret}")), "{curl}");
    assert!(curl.ends_with(&format!(" {}/api/v1/auth/test", app.address)), "{curl}");

    // Never again: not on the list, the detail page, the JSON API, or in the database.
    let list = app.get_html("/settings/developer/api-keys").await;
    assert!(list.contains("Production") && list.contains(&secret[..11]));
    assert!(!list.contains(&secret));
    let keys: Value = app.get("/api/v1/api-keys").await.json().await.unwrap_or(json!(null));
    assert!(!keys.to_string().contains(&secret));
    let id = crate::helpers::attr_after(&list, r#"href="/settings/developer/api-keys/"#).unwrap();
    assert!(!app.get_html(&format!("/settings/developer/api-keys/{id}")).await.contains(&secret));
    assert!(!database_dump(&app).contains(&secret[3..]), "the secret is not stored");
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
}
both!(the_secret_is_revealed_once_and_stored_nowhere);

/// Every text column of the tables that could hold a secret.
fn database_dump(app: &TestApp) -> String {
    use diesel::prelude::*;
    use latchkey::store::schema::{api_keys, audit_events, sessions};
    app.db()
        .run_sync(|c| {
            let keys: Vec<(String, String, String)> =
                api_keys::table.select((api_keys::key_hash, api_keys::name, api_keys::scopes)).load(c)?;
            let audit: Vec<String> = audit_events::table.select(audit_events::details).load(c)?;
            let sessions: Vec<String> = sessions::table.select(sessions::state).load(c)?;
            Ok::<_, latchkey::store::StoreError>(format!("{keys:?}{audit:?}{sessions:?}"))
        })
        .unwrap()
}

async fn a_revoked_key_fails_on_the_very_next_request(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "ci", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let ok = call(&app, "/api/v1/auth/test", &secret).await;
    assert_eq!(ok.status(), StatusCode::OK);
    for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert!(ok.headers().contains_key(h), "{h}");
    }
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["authenticated"], true);
    assert_eq!(body["data"]["principal"]["type"], "api_key");
    assert_eq!(body["data"]["principal"]["key_id"], key["id"]);
    assert_eq!(body["data"]["principal"]["team"], "Acme");
    assert_eq!(body["data"]["scopes"], json!(["templates:read"]));
    assert_eq!(body["data"]["rate_limit"]["limit"], 100);
    let bearer = app.client.get(app.url("/api/v1/auth/test")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);

    // Revoke from the dashboard as htmx does: the row comes back, revoked.
    let page = app.get_html("/settings/developer/api-keys").await;
    let id = key["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/settings/developer/api-keys/{id}/revoke")))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", csrf_from(&page))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let row = res.text().await.unwrap();
    assert!(row.starts_with(&format!(r#"<tr id="key-{id}""#)) && row.contains("Revoked") && !row.contains(">Revoke<"));

    let (status, body) = error_code(call(&app, "/api/v1/auth/test", &secret).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "unauthorized");
    let history = app.get_html(&format!("/settings/developer/api-keys/{id}")).await;
    for action in ["api_key.created", "api_key.revoked"] {
        assert!(history.contains(action), "{action}");
    }
    // The refusal is audited off the request path, with the next usage flush (every 5 s).
    for _ in 0..30 {
        if app.get_html(&format!("/settings/developer/api-keys/{id}")).await.contains("api_key.refused_revoked") {
            return;
        }
        app.flush_usage().await;
    }
    panic!("api_key.refused_revoked was not flushed");
}
both!(a_revoked_key_fails_on_the_very_next_request);

async fn malformed_unknown_and_missing_credentials_get_one_answer(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap();
    let mut flipped = secret.to_owned().into_bytes();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let unknown = latchkey::service::keys::codec::generate("lk").unwrap();
    let mut answers = Vec::new();
    for presented in [flipped.as_str(), unknown.as_str(), "lk_short", "", "whm_x"] {
        let (status, body) = error_code(call(&app, "/api/v1/auth/test", presented).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented}");
        answers.push(body);
    }
    let none = app.other_client().get("/api/v1/auth/test").await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    answers.push(none.json().await.unwrap());
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "no oracle: {answers:?}");
}
both!(malformed_unknown_and_missing_credentials_get_one_answer);

async fn a_bad_checksum_is_refused_without_touching_the_database(app: TestApp) {
    use diesel::connection::SimpleConnection;
    app.owner_session().await;
    app.db()
        .run_sync(|c| {
            c.batch_execute("DROP TABLE api_key_usage; DROP TABLE api_key_scope_use; DROP TABLE api_keys;")
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
    let good_shape = latchkey::service::keys::codec::generate("lk").unwrap();
    let mut bad = good_shape.clone();
    bad.pop();
    bad.push(if good_shape.ends_with('0') { '1' } else { '0' });
    assert_eq!(call(&app, "/api/v1/auth/test", &bad).await.status(), StatusCode::UNAUTHORIZED);
    // A well-formed key does reach the (now broken) database: that is the contrast.
    assert_eq!(call(&app, "/api/v1/auth/test", &good_shape).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
both!(a_bad_checksum_is_refused_without_touching_the_database);

async fn rolling_keeps_the_old_key_for_the_grace_period(app: TestApp) {
    app.owner_session().await;
    let old = create_key(&app, json!({"name": "rolled", "scopes": ["templates:read"]})).await;
    let old_secret = old["key"].as_str().unwrap().to_owned();
    let id = old["id"].as_str().unwrap();
    let res = api_post(&app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 3600})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new: Value = res.json().await.unwrap();
    let new_secret = new["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(new["data"]["rolled_from"], old["id"]);
    assert_eq!(new["data"]["scopes"], old["scopes"]);
    assert_eq!(call(&app, "/api/v1/auth/test", &old_secret).await.status(), StatusCode::OK, "grace");
    assert_eq!(call(&app, "/api/v1/auth/test", &new_secret).await.status(), StatusCode::OK);
    let old_now: Value = app.get(&format!("/api/v1/api-keys/{id}")).await.json().await.unwrap();
    assert_eq!(old_now["data"]["replaced_by"], new["data"]["id"]);
    assert_eq!(old_now["data"]["status"], "expiring_soon");
    // Rolling the new one with no grace ends it at once.
    let new_id = new["data"]["id"].as_str().unwrap();
    let res = api_post(&app, &format!("/api/v1/api-keys/{new_id}/roll"), &json!({"grace_seconds": 0})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(call(&app, "/api/v1/auth/test", &new_secret).await.status(), StatusCode::UNAUTHORIZED);
    // A rolled key cannot be rolled again.
    let again = api_post(&app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 0})).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
both!(rolling_keeps_the_old_key_for_the_grace_period);

async fn expiry_is_honoured(app: TestApp) {
    app.owner_session().await;
    let soon = latchkey::web::format::rfc3339(app.clock().now() + 2);
    let key = create_key(&app, json!({"name": "short", "scopes": ["templates:read"], "expires_at": soon})).await;
    let secret = key["key"].as_str().unwrap();
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK);
    app.clock().advance(3);
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::UNAUTHORIZED);
    let past = api_post(
        &app,
        "/api/v1/api-keys",
        &json!({"name": "past", "scopes": ["templates:read"], "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    let (status, body) = error_code(past).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["expires_at"].is_string());
}
both!(expiry_is_honoured);

async fn missing_scopes_and_foreign_addresses_are_forbidden(app: TestApp) {
    app.owner_session().await;
    let reader = create_key(&app, json!({"name": "reader", "scopes": ["templates:read"]})).await;
    let (status, body) = error_code(call(&app, "/api/v1/api-keys", reader["key"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("api_keys:read"));

    let fenced = create_key(
        &app,
        json!({"name": "fenced", "scopes": ["api_keys:read"], "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"]}),
    )
    .await;
    assert_eq!(fenced["allowed_ips"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    let (status, body) = error_code(call(&app, "/api/v1/api-keys", fenced["key"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    // X-Forwarded-For is ignored from an untrusted peer.
    let spoofed = call_forwarded(&app, "/api/v1/api-keys", fenced["key"].as_str().unwrap(), "10.1.2.3").await;
    assert_eq!(spoofed.status(), StatusCode::FORBIDDEN);
    let local =
        create_key(&app, json!({"name": "local", "scopes": ["api_keys:read"], "allowed_ips": ["127.0.0.1"]})).await;
    assert_eq!(call(&app, "/api/v1/api-keys", local["key"].as_str().unwrap()).await.status(), StatusCode::OK);
}
both!(missing_scopes_and_foreign_addresses_are_forbidden);

#[tokio::test]
async fn a_trusted_proxy_may_name_the_client_address() {
    let app = spawn_app_with(Backend::Sqlite, &[("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1")]).await.unwrap();
    app.owner_session().await;
    let fenced =
        create_key(&app, json!({"name": "fenced", "scopes": ["api_keys:read"], "allowed_ips": ["10.0.0.0/8"]})).await;
    let via_proxy = call_forwarded(&app, "/api/v1/api-keys", fenced["key"].as_str().unwrap(), "10.1.2.3").await;
    assert_eq!(via_proxy.status(), StatusCode::OK);
}

async fn the_plan_limits_requests_with_headers_and_429(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "busy", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap();
    for i in 0..10u64 {
        let res = call(&app, "/api/v1/auth/test", secret).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-ratelimit-limit"], "100");
        assert_eq!(res.headers()["x-ratelimit-remaining"].to_str().unwrap(), (99 - i).to_string());
    }
    let res = call(&app, "/api/v1/auth/test", secret).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(res.headers().contains_key("x-ratelimit-reset"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["retry_after"], retry);
}
both!(the_plan_limits_requests_with_headers_and_429);

async fn roles_limit_what_keys_may_do(app: TestApp) {
    app.owner_session().await;
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let res = api_post(&dev, "/api/v1/api-keys", &json!({"name": "too much", "scopes": ["admin"]})).await;
    let (status, body) = error_code(res).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["scopes"].as_str().unwrap().contains("cannot grant admin"));
    create_key(&dev, json!({"name": "dev key", "scopes": ["templates:write"]})).await;

    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let page = viewer.get_html("/settings/developer/api-keys").await;
    assert!(page.contains("dev key"), "viewers see the list");
    assert!(!page.contains("Create a key") && !page.contains(">Revoke<") && !page.contains(">Roll<"));
    let res = api_post(&viewer, "/api/v1/api-keys", &json!({"name": "v", "scopes": ["templates:read"]})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let form = viewer
        .post_form(
            "/settings/developer/api-keys",
            "/settings/developer/api-keys",
            &[("name", "v"), ("scopes", "templates:read")],
        )
        .await;
    assert_eq!(form.status(), StatusCode::FORBIDDEN);
    // A key-authenticated client cannot mint broader keys than its own.
    let writer = create_key(&app, json!({"name": "writer", "scopes": ["api_keys:write"]})).await;
    let broader = json!({"name": "x", "scopes": ["templates:write"]});
    let key = ("X-API-Key", writer["key"].as_str().unwrap());
    let res = post_json_with(&app.other_client(), "/api/v1/api-keys", key, &broader).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
both!(roles_limit_what_keys_may_do);

async fn bad_json_input_gets_clear_errors_and_creates_nothing(app: TestApp) {
    app.owner_session().await;
    let cases = [
        (json!({"name": "a", "scopes": ["nope:read"]}), "scopes"),
        (json!({"name": "a", "scopes": ["templates:read"], "allowed_ips": ["10.0.0.300/8"]}), "allowed_ips"),
        (json!({"name": "", "scopes": ["templates:read"]}), "name"),
        (json!({"name": "a", "scopes": []}), "scopes"),
        (json!({"name": "a", "scopes": ["templates:read"], "expires_at": "tomorrow"}), "expires_at"),
    ];
    for (body, field) in cases {
        let (status, json) = error_code(api_post(&app, "/api/v1/api-keys", &body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(json["error"]["code"], "validation_failed");
        assert!(json["error"]["fields"][field].is_string(), "{json}");
    }
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let malformed = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .header("X-CSRF-Token", &csrf)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    let (status, json) = error_code(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["status"], "error");
    let huge = json!({"name": "x".repeat(70_000), "scopes": ["templates:read"]});
    let res = post_json_with(&app, "/api/v1/api-keys", ("X-CSRF-Token", &csrf), &huge).await;
    let (status, json) = error_code(res).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["error"]["code"], "payload_too_large");
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]), "nothing was created");
    // Duplicate active names are refused too.
    create_key(&app, json!({"name": "dup", "scopes": ["templates:read"]})).await;
    let (status, json) =
        error_code(api_post(&app, "/api/v1/api-keys", &json!({"name": "dup", "scopes": ["templates:read"]})).await)
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json["error"]["fields"]["name"].is_string());
}
both!(bad_json_input_gets_clear_errors_and_creates_nothing);

async fn the_dashboard_form_keeps_input_on_errors(app: TestApp) {
    app.owner_session().await;
    let res = app
        .post_form(
            "/settings/developer/api-keys",
            "/settings/developer/api-keys",
            &[("name", "Web"), ("description", "frontend"), ("scopes", "templates:read"), ("allowed_ips", "not-an-ip")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"value="Web""#) && html.contains(r#"value="frontend""#) && html.contains("not-an-ip"));
    assert!(html.contains("is not an IPv4/IPv6 address or CIDR range"));
    assert!(html.contains(r#"value="templates:read" checked"#));
    // The read-only preset picks every read scope.
    let res = app
        .post_form(
            "/settings/developer/api-keys",
            "/settings/developer/api-keys",
            &[("name", "Reader"), ("preset", "read_only"), ("expires_in_days", "7")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    let scopes = list["data"][0]["scopes"].as_array().unwrap();
    assert!(scopes.len() >= 5 && scopes.iter().all(|s| s.as_str().unwrap().ends_with(":read")));
    assert_eq!(list["data"][0]["status"], "expiring_soon");
}
both!(the_dashboard_form_keeps_input_on_errors);

async fn lists_paginate_with_cursors_and_filter_by_status(app: TestApp) {
    app.owner_session().await;
    for name in ["one", "two", "three"] {
        create_key(&app, json!({"name": name, "scopes": ["templates:read"]})).await;
    }
    let first: Value = app.get("/api/v1/api-keys?limit=2").await.json().await.unwrap();
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app.get(&format!("/api/v1/api-keys?limit=2&cursor={cursor}")).await.json().await.unwrap();
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    let mut names: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "three", "two"]);
    let id = first["data"][0]["id"].as_str().unwrap();
    let res = api_delete(&app, &format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let revoked: Value = app.get("/api/v1/api-keys?status=revoked").await.json().await.unwrap();
    assert_eq!(revoked["data"].as_array().unwrap().len(), 1);
    let page = app.get_html("/settings/developer/api-keys?status=active").await;
    assert_eq!(page.matches("<tr id=\"key-").count(), 2);
    assert_eq!(app.get("/api/v1/api-keys?cursor=garbage").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
both!(lists_paginate_with_cursors_and_filter_by_status);

async fn session_use_of_the_api_needs_the_csrf_header(app: TestApp) {
    app.owner_session().await;
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .json(&json!({"name": "x", "scopes": ["templates:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]), "reading needs no header; nothing was created");
}
both!(session_use_of_the_api_needs_the_csrf_header);

async fn introspection_needs_a_service_key_and_reports_keys(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "introspected", "scopes": ["templates:read", "messages:send"]})).await;
    let secret = key["key"].as_str().unwrap();
    let gateway = service_key(&app, &["introspect"]);
    // A caller that is not a service key is refused in the JSON envelope,
    // whatever its Accept header: callers of this endpoint are servers.
    let refused =
        app.other_client().client.post(app.url("/oauth/introspect")).form(&[("token", secret)]).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"]["code"], "unauthorized");
    let ask = |caller: String, token: String| {
        let app = app.other_client();
        async move {
            app.client
                .post(app.url("/oauth/introspect"))
                .bearer_auth(caller)
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
        }
    };
    let res = ask(gateway.clone(), secret.to_owned()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "templates:read messages:send");
    assert_eq!(body["key_id"], key["id"]);
    let res: Value = ask(gateway.clone(), "lk_nonsense".into()).await.json().await.unwrap();
    assert_eq!(res, json!({"active": false}));
    // A team key may not introspect; neither may a service key without the scope.
    assert_eq!(ask(secret.to_owned(), secret.to_owned()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ask(service_key(&app, &["leaks:report"]), secret.to_owned()).await.status(), StatusCode::FORBIDDEN);
    // After revocation: inactive.
    api_delete(&app, &format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap())).await;
    let res: Value = ask(gateway, secret.to_owned()).await.json().await.unwrap();
    assert_eq!(res["active"], false);
}
both!(introspection_needs_a_service_key_and_reports_keys);

async fn forward_auth_answers_for_a_reverse_proxy(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "edge", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap();
    let res = call(&app, "/auth/verify", secret).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-latchkey-principal"], key["id"].as_str().unwrap());
    assert_eq!(res.headers()["x-latchkey-scopes"], "templates:read");
    assert!(res.headers().contains_key("x-latchkey-team") && res.headers().contains_key("x-ratelimit-remaining"));
    let (status, body) = error_code(call(&app, "/auth/verify?scope=templates:write", secret).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = error_code(call(&app, "/auth/verify", "lk_bogus").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
}
both!(forward_auth_answers_for_a_reverse_proxy);

#[tokio::test]
async fn usage_is_flushed_in_batches_and_charted() {
    let app = spawn_app_with(Backend::Sqlite, &[("LATCHKEY_USAGE_FLUSH_SECONDS", "1")]).await.unwrap();
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "charted", "scopes": ["templates:read"]})).await;
    for _ in 0..3 {
        assert_eq!(call(&app, "/api/v1/auth/test", key["key"].as_str().unwrap()).await.status(), StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let page = app.get_html(&format!("/settings/developer/api-keys/{}", key["id"].as_str().unwrap())).await;
    assert!(page.contains("3 requests in all"), "usage flushed");
    assert!(page.contains(r#"<svg id="usage-chart""#) && page.contains("<rect"));
    assert!(!page.contains("<dd>Never</dd>\n    <dt>Expires"), "last used is set");
}

#[tokio::test]
async fn require_https_refuses_plain_http_unless_a_trusted_proxy_says_tls() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("LATCHKEY_REQUIRE_HTTPS", "true"), ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await
    .unwrap();
    app.owner_session().await;
    let csrf = csrf_from(&app.get_html("/settings/team").await);
    let request = json!({"name": "x", "scopes": ["templates:read"]});
    let plain = post_json_with(&app, "/api/v1/api-keys", ("X-CSRF-Token", &csrf), &request).await;
    let (status, body) = error_code(plain).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "insecure_connection");
    let tls = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .header("X-CSRF-Token", &csrf)
        .header("X-Forwarded-Proto", "https")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(tls.status(), StatusCode::CREATED);
}

async fn a_database_failure_during_introspection_is_an_internal_error(app: TestApp) {
    let gateway = service_key(&app, &["introspect"]);
    let unknown = latchkey::service::keys::codec::generate("lk").unwrap();
    app.db()
        .run_sync(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute("ALTER TABLE api_keys RENAME TO api_keys_unavailable")
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
    let res = app
        .other_client()
        .client
        .post(app.url("/oauth/introspect"))
        .bearer_auth(gateway)
        .form(&[("token", unknown)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "not 401, not inactive");
}
both!(a_database_failure_during_introspection_is_an_internal_error);

/// The create form as a browser without JavaScript sends it (CSRF from the page).
async fn submit_create(app: &TestApp, fields: &[(&str, &str)]) -> reqwest::Response {
    app.post_form("/settings/developer/api-keys", "/settings/developer/api-keys", fields).await
}

async fn key_names(app: &TestApp) -> Vec<String> {
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    list["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect()
}

async fn the_server_decides_what_presets_and_boxes_mean(app: TestApp) {
    app.owner_session().await;
    // A preset contradicted by the boxes is refused, never silently changed.
    let res = submit_create(
        &app,
        &[("name", "Mixed"), ("preset", "read_only"), ("scopes", "templates:read"), ("scopes", "templates:write")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("Read-only cannot include templates:write — untick it or choose Custom."), "{html}");
    assert!(html.contains(r#"value="templates:write" checked"#), "the boxes stay as ticked");
    // Custom with nothing ticked is a field error.
    let res = submit_create(&app, &[("name", "Nothing"), ("preset", "custom")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains(r#"id="scopes-error""#));
    assert!(key_names(&app).await.is_empty(), "nothing was created");

    // Preview (no JavaScript): the boxes are filled from the preset and the
    // page says what the key would get; nothing is created.
    let res = submit_create(&app, &[("name", "Everything"), ("preset", "full"), ("intent", "preview")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"value="templates:write" checked"#) && html.contains(r#"value="contacts:read" checked"#));
    assert!(!html.contains(r#"value="admin" checked"#), "Full access never includes admin");
    assert!(html.contains("This key will be able to:") && html.contains("Create and change your templates"));
    assert!(html.contains(r#"id="admin-warning""#));
    assert!(html.contains(r#"value="Everything""#));
    assert!(key_names(&app).await.is_empty(), "a preview creates nothing");

    // Full access with no boxes: every grantable scope but admin.
    let res = submit_create(&app, &[("name", "Full"), ("preset", "full"), ("expires_in_days", "30")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    let scopes: Vec<&str> = list["data"][0]["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(scopes.contains(&"templates:write") && !scopes.contains(&"admin"), "{scopes:?}");
    // admin only by explicit tick.
    let res = submit_create(&app, &[("name", "Root"), ("preset", "custom"), ("scopes", "admin")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(key_names(&app).await.len(), 2);
}
both!(the_server_decides_what_presets_and_boxes_mean);

async fn destructive_actions_ask_first_and_reloads_land_on_real_pages(app: TestApp) {
    app.owner_session().await;
    // Create as htmx would: the reveal, and an address whose GET says "shown once".
    let page = app.get_html("/settings/developer/api-keys").await;
    let res = app
        .client
        .post(app.url("/settings/developer/api-keys"))
        .header("HX-Request", "true")
        .header("HX-Boosted", "true")
        .form(&[
            ("csrf_token", csrf_from(&page).as_str()),
            ("name", "Billing worker"),
            ("scopes", "templates:read"),
            ("expires_in_days", "30"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let pushed = res.headers()["hx-push-url"].to_str().unwrap().to_owned();
    let html = res.text().await.unwrap();
    let secret = crate::helpers::attr_after(&html, r#"<code id="secret">"#).unwrap();
    let id = pushed.trim_start_matches("/settings/developer/api-keys/").trim_end_matches("/created").to_owned();
    assert_eq!(pushed, format!("/settings/developer/api-keys/{id}/created"));
    let reloaded = app.get(&pushed).await;
    assert_eq!(reloaded.status(), StatusCode::OK);
    let reloaded = reloaded.text().await.unwrap();
    assert!(reloaded.contains(r#"id="shown-once""#) && reloaded.contains("roll the key"), "{reloaded}");
    assert!(!reloaded.contains(&secret));

    // Revoke asks first: a confirmation page without JavaScript, a dialog for htmx.
    let base = format!("/settings/developer/api-keys/{id}");
    let confirm = app.get_html(&format!("{base}/revoke")).await;
    assert!(confirm.contains("Revoke Billing worker?") && confirm.contains("fail at once; this cannot be undone"));
    let dialog = app.client.get(app.url(&format!("{base}/revoke"))).header("HX-Request", "true").send().await.unwrap();
    let dialog = dialog.text().await.unwrap();
    assert!(dialog.starts_with("<dialog") && dialog.contains(&format!(r##"hx-target="#key-{id}""##)), "{dialog}");
    let roll = app.get_html(&format!("{base}/roll")).await;
    assert!(roll.contains("keeps working for 24 hours") && roll.contains(r#"<option value="86400" selected>24 hours"#));

    // A developer may not act on the owner's key: not found, as for the POST.
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    assert_eq!(dev.get(&format!("{base}/revoke")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(dev.get(&format!("{base}/roll")).await.status(), StatusCode::NOT_FOUND);

    // Roll as htmx: the reveal, pushed to …/roll, whose GET is now the friendly page.
    let res = app
        .client
        .post(app.url(&format!("{base}/roll")))
        .header("HX-Request", "true")
        .header("HX-Boosted", "true")
        .header("X-CSRF-Token", csrf_from(&page))
        .form(&[("grace", "3600")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["hx-push-url"], format!("{base}/roll").as_str());
    let html = res.text().await.unwrap();
    let new_secret = crate::helpers::attr_after(&html, r#"<code id="secret">"#).unwrap();
    let again = app.get(&format!("{base}/roll")).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again = again.text().await.unwrap();
    assert!(again.contains(r#"id="rolled-notice""#) && again.contains("its new secret was shown once then"));
    assert!(!again.contains(&new_secret) && !again.contains(">Roll<"), "no Roll for a rolled key");
    // The list links the pair and offers no Roll on the old key.
    let list = app.get_html("/settings/developer/api-keys").await;
    assert!(list.contains("Replaced by") && list.contains("Replaces"));
    assert!(!list.contains(&format!(r#"id="roll-{id}""#)));
    assert!(
        list.lines().filter(|l| l.starts_with("<tr id=\"key-")).all(|l| !l.contains("class=")),
        "rows carry no status"
    );

    // Revoke in place as htmx does: the row and a toast.
    let res = app
        .client
        .post(app.url(&format!("{base}/revoke")))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", csrf_from(&page))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert!(body.starts_with(&format!(r#"<tr id="key-{id}""#)) && body.contains("Revoked Billing worker"));
    // Without htmx: PRG back to where the confirmation came from.
    let other = create_key(&app, json!({"name": "other", "scopes": ["templates:read"]})).await;
    let other_id = other["id"].as_str().unwrap();
    let other_page = format!("/settings/developer/api-keys/{other_id}");
    let res = app.post_form(&other_page, &format!("{other_page}/revoke"), &[("next", &other_page)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&res), other_page);
    // GETs of POST-only URLs land on pages.
    let res = app.get(&format!("{other_page}/rename")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get("/settings/developer/api-keys/policy").await.status(), StatusCode::SEE_OTHER);
}
both!(destructive_actions_ask_first_and_reloads_land_on_real_pages);

async fn a_key_is_renamed_with_an_audit_event(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Old name", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let id = key["id"].as_str().unwrap();
    let page = format!("/settings/developer/api-keys/{id}");
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
    let res =
        app.post_form(&page, &format!("{page}/rename"), &[("name", "New name"), ("description", "billing")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&res), page);
    let html = app.get_html(&page).await;
    assert!(html.contains("New name") && html.contains("billing") && html.contains("is now called New name"));
    assert!(html.contains(r#"data-action="api_key.renamed""#) && html.contains("from “Old name”"), "{html}");
    assert!(html.contains(r#"id="usage-empty""#) && !html.contains("0 requests in all"), "an empty state");
    let audit = app.get_html("/settings/team/audit").await;
    assert!(audit.contains("api_key.renamed") || audit.contains("renamed"), "audited");
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK, "the secret still works");
    // Field errors re-render, with the page's URL for htmx.
    let csrf = csrf_from(&app.get_html(&page).await);
    let res = app
        .client
        .post(app.url(&format!("{page}/rename")))
        .header("HX-Request", "true")
        .header("HX-Boosted", "true")
        .form(&[("csrf_token", csrf.as_str()), ("name", "  "), ("description", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.headers()["hx-push-url"], page.as_str());
    assert!(res.text().await.unwrap().contains(r#"id="name-error""#));
    // A viewer cannot rename.
    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let res = viewer.post_form(&page, &format!("{page}/rename"), &[("name", "x")]).await;
    assert!(res.status() == StatusCode::FORBIDDEN || res.status() == StatusCode::NOT_FOUND, "{}", res.status());
}
both!(a_key_is_renamed_with_an_audit_event);

async fn the_list_is_searchable_once_it_has_more_than_a_page(app: TestApp) {
    app.owner_session().await;
    let empty = app.get_html("/settings/developer/api-keys").await;
    assert!(empty.contains(r#"id="first-run""#) && empty.contains("/api/v1/auth/test") && empty.contains("/docs/api"));
    let first = create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    let page = app.get_html("/settings/developer/api-keys").await;
    assert!(!page.contains(r#"id="first-run""#) && !page.contains(r#"id="key-search""#), "one page: no search field");
    for i in 0..25 {
        create_key(&app, json!({"name": format!("Worker {i:02}"), "scopes": ["templates:read"]})).await;
    }
    let page = app.get_html("/settings/developer/api-keys").await;
    assert!(page.contains(r#"id="key-search""#));
    let found = app.get_html("/settings/developer/api-keys?status=all&q=BILLING").await;
    assert_eq!(found.matches("<tr id=\"key-").count(), 1);
    let prefix = &first["key"].as_str().unwrap()[..9];
    let found = app.get_html(&format!("/settings/developer/api-keys?status=active&q={prefix}")).await;
    assert!(found.contains("Billing worker"));
    let some = app.get_html("/settings/developer/api-keys?status=active&q=worker%201").await;
    assert_eq!(some.matches("<tr id=\"key-").count(), 10, "Worker 10–19");
    // A whole key is refused and not echoed back.
    let whole = first["key"].as_str().unwrap();
    let res = app.get(&format!("/settings/developer/api-keys?q={whole}")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "out of the address bar at once");
    let to = crate::helpers::location(&res);
    assert!(!to.contains(whole) && !to.contains(&whole[3..12]), "{to}");
    let refused = app.get_html(&to).await;
    assert!(refused.contains(r#"id="q-error""#) && !refused.contains(&whole[3..]));
}
both!(the_list_is_searchable_once_it_has_more_than_a_page);

/// Without JavaScript a reload of the reveal sends the same form again: it
/// lands on the key it made ("shown once"), and makes no second key.
async fn the_same_form_sent_again_lands_on_the_key_it_made(app: TestApp) {
    app.owner_session().await;
    let keys = "/settings/developer/api-keys";
    let (first, again) =
        crate::helpers::submit_twice(&app, keys, keys, &[("name", "Once"), ("scopes", "templates:read")]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let secret = crate::helpers::attr_after(&first.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let to = crate::helpers::location(&again);
    assert!(to.ends_with("/created"), "{to}");
    let page = app.get_html(&to).await;
    assert!(page.contains("shown once") && page.contains("Once") && !page.contains(&secret), "{page}");
    assert_eq!(key_names(&app).await, vec!["Once".to_owned()], "one key");
    // A roll sent again (a reload of its reveal) lands on the page saying it was rolled.
    let id = to.trim_end_matches("/created").rsplit('/').next().unwrap().to_owned();
    let roll = format!("/settings/developer/api-keys/{id}/roll");
    let page = format!("/settings/developer/api-keys/{id}");
    assert_eq!(app.post_form(&page, &roll, &[("grace", "3600")]).await.status(), StatusCode::OK);
    let again = app.post_form(&page, &roll, &[("grace", "3600")]).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&again), roll);
    let html = app.get_html(&roll).await;
    assert!(html.contains("shown once"), "{html}");
    assert_eq!(key_names(&app).await.len(), 2, "one roll, one new key");
    // A new form is a new key.
    let res = submit_create(&app, &[("name", "Twice"), ("scopes", "templates:read")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(key_names(&app).await.len(), 3);
}
both!(the_same_form_sent_again_lands_on_the_key_it_made);
