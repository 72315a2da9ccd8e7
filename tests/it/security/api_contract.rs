//! What contract fuzzing (`.ci/fuzz-api`) found, kept as attacks: methods a
//! path does not take, requests with a part left out or in the wrong
//! encoding. Each must be refused as documented (status, JSON shape,
//! headers) and change nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{TestApp, service_key};

async fn a_method_a_documented_path_does_not_take_is_405_with_its_allow_list(app: TestApp) {
    let client = app.other_client().client;
    for (method, path, allow) in [
        ("TRACE", "/api/v1/api-keys", "GET, POST"),
        ("PUT", "/api/v1/api-keys", "GET, POST"),
        ("PUT", "/api/v1/api-keys/key_0000000000000000", "DELETE, GET, PATCH"),
        ("GET", "/api/v1/leaked-keys", "POST"),
        ("TRACE", "/.well-known/oauth-authorization-server", "GET"),
        ("PUT", "/.well-known/oauth-authorization-server", "GET"),
        ("POST", "/auth/verify", "GET"),
        ("GET", "/oauth/token", "POST"),
        ("DELETE", "/oauth/introspect", "POST"),
        ("FOO", "/auth/verify", "GET"),
    ] {
        let res = client.request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let mut listed: Vec<&str> = res.headers()["allow"].to_str().unwrap().split(", ").collect();
        listed.sort_unstable();
        assert_eq!(listed.join(", "), allow, "{method} {path}");
        if path.starts_with("/api/") || path == "/oauth/introspect" || path == "/auth/verify" {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "method_not_allowed", "{method} {path}");
        }
    }
    // Elsewhere an unknown path stays a 404.
    let res = client.request(Method::TRACE, app.url("/api/v1/nothing-here")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
both!(a_method_a_documented_path_does_not_take_is_405_with_its_allow_list);

async fn a_made_up_method_skips_no_csrf_check_into_a_handler(app: TestApp) {
    app.owner_session().await;
    let before: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    // With the session's cookie but no CSRF token, no method reaches a page's or the API's handler.
    for method in ["TRACE", "FOO", "PROPFIND", "MERGE"] {
        for path in ["/settings/developer/api-keys", "/api/v1/api-keys", "/logout", "/settings/security/password"] {
            let res = app
                .client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(path))
                .form(&[("name", "sneaky"), ("scopes", "admin")])
                .send()
                .await
                .unwrap();
            let status = res.status();
            assert!(status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    // Still signed in, nothing created; and a real POST without the token is still refused.
    let after: Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert_eq!(before["data"], after["data"]);
    let res = app.client.post(app.url("/settings/developer/api-keys")).form(&[("name", "x")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
both!(a_made_up_method_skips_no_csrf_check_into_a_handler);

async fn introspection_without_a_token_is_refused_once_the_caller_is_known(app: TestApp) {
    let partner = service_key(&app, &["introspect"]);
    let client = app.other_client().client;
    let url = app.url("/oauth/introspect");
    let missing = client.post(&url).bearer_auth(&partner).form(&[("token_type_hint", "access_token")]).send().await;
    let missing = missing.unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["fields"]["token"].is_string(), "{body}");
    // Without a good caller the answer is the same 401 as ever: nothing is learnt.
    for caller in ["", "lk_not_a_real_key", "Bearer"] {
        let res = client.post(&url).header("Authorization", format!("Bearer {caller}")).form(&json!({})).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::UNAUTHORIZED, "{caller:?}");
    }
    let empty = client.post(&url).bearer_auth(&partner).form(&[("token", "")]).send().await.unwrap();
    assert_eq!(empty.json::<Value>().await.unwrap(), json!({"active": false}));
}
both!(introspection_without_a_token_is_refused_once_the_caller_is_known);

/// A documented enum in the query, present but empty (`?status=`), is not
/// "left out": the API refuses it as it refuses any other undocumented
/// value. The keys page's filter form, which sends `status=` for "all",
/// still works.
async fn an_empty_query_enum_is_refused_not_read_as_left_out(app: TestApp) {
    app.owner_session().await;
    let (id, _) = crate::key_usage::new_key(&app, json!({"name": "listed", "scopes": ["templates:read"]})).await;
    for (path, field) in [
        ("/api/v1/api-keys?status=".to_owned(), "status"),
        ("/api/v1/api-keys?status=ALL".to_owned(), "status"),
        (format!("/api/v1/api-keys/{id}/usage?format="), "format"),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed", "{path}");
        assert!(body["error"]["fields"][field].is_string(), "{path}: {body}");
    }
    // What the contract allows still answers.
    for path in ["/api/v1/api-keys?status=all".to_owned(), format!("/api/v1/api-keys/{id}/usage?format=json")] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK, "{path}");
    }
    let page = app.get("/settings/developer/api-keys?status=").await;
    assert_eq!(page.status(), StatusCode::OK);
}
both!(an_empty_query_enum_is_refused_not_read_as_left_out);

/// A refusal names the scope asked for only when it looks like one: a
/// caller's `?scope=` is not echoed at length (nor its odd characters), and
/// the document carries no note meant for the code's readers.
async fn a_scope_asked_for_is_echoed_only_when_it_looks_like_one(app: TestApp) {
    app.owner_session().await;
    let (_, key) = crate::key_usage::new_key(&app, json!({"name": "narrow", "scopes": ["templates:read"]})).await;
    let client = app.other_client().client;
    let ask = |scope: String| {
        let (client, key, url) = (client.clone(), key.clone(), app.url("/auth/verify"));
        async move {
            let res = client.get(url).query(&[("scope", scope)]).header("X-API-Key", key).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
            let body: Value = res.json().await.unwrap();
            body["error"]["message"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(ask("admin".into()).await, "This credential lacks the scope admin.");
    let long = ask("x".repeat(9000)).await;
    assert!(long.len() < 100 && !long.contains("xxxx"), "{long}");
    let odd = ask("<script>alert(1)</script>".into()).await;
    assert!(!odd.contains('<'), "{odd}");
    let document = app.get("/api/v1/openapi.json").await.text().await.unwrap();
    assert!(!document.contains("`Debug`"), "a note for the code's readers reached the document");
}
both!(a_scope_asked_for_is_echoed_only_when_it_looks_like_one);
