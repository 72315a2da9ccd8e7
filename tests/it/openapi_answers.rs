//! Real answers of each documented operation validate against the schema
//! the OpenAPI document gives them (formats asserted): successes and
//! refusals, the JSON API's envelope and the OAuth endpoints' RFC shapes.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{TestApp, service_key};
use crate::openapi::{check, compiler, document, escape};

/// The JSON pointer of the schema the document gives `method path`'s
/// `status` answer (following a `#/components/responses` reference).
fn schema_of(doc: &Value, path: &str, method: &str, status: u16) -> String {
    let mut at = format!("/paths/{}/{method}/responses/{status}", escape(path));
    let response = doc.pointer(&at).unwrap_or_else(|| panic!("{method} {path} documents no {status}"));
    if let Some(r) = response["$ref"].as_str() {
        at = r.trim_start_matches('#').to_owned();
    }
    format!("{at}/content/application~1json/schema")
}

/// Checks one answer: its status is documented, and its JSON body fits.
async fn conforms(doc: &Value, (method, path): (&str, &str), res: Response) -> Value {
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(content_type.as_deref(), Some("application/json"), "{method} {path} {status}");
    let pointer = schema_of(doc, path, method, status);
    let mut compiler = compiler(doc);
    if let Err(e) = check(&mut compiler, &pointer, &body) {
        panic!("{method} {path} {status} does not fit its schema: {e}\n{body:#}");
    }
    body
}

async fn the_api_answers_fit_their_documented_schemas(app: TestApp) {
    let doc = document(&app).await;
    app.owner_session().await;
    let created = crate::api_keys::api_post(
        &app,
        "/api/v1/api-keys",
        &json!({"name": "Contract", "scopes": ["api_keys:read", "api_keys:write"], "expires_in_days": 30,
                "allowed_ips": ["127.0.0.0/8", "::1"]}),
    )
    .await;
    let created = conforms(&doc, ("post", "/api/v1/api-keys"), created).await;
    let (key, id) = (created["data"]["key"].as_str().unwrap(), created["data"]["id"].as_str().unwrap());
    let with_key = |method: reqwest::Method, path: &str| {
        app.other_client().client.request(method, app.url(path)).header("X-API-Key", key)
    };
    let by_id = format!("/api/v1/api-keys/{id}");
    let get = reqwest::Method::GET;
    conforms(&doc, ("get", "/api/v1/auth/test"), with_key(get.clone(), "/api/v1/auth/test").send().await.unwrap())
        .await;
    conforms(
        &doc,
        ("get", "/api/v1/api-keys"),
        with_key(get.clone(), "/api/v1/api-keys?limit=1").send().await.unwrap(),
    )
    .await;
    conforms(&doc, ("get", "/api/v1/api-keys/{id}"), with_key(get.clone(), &by_id).send().await.unwrap()).await;
    let patched = with_key(reqwest::Method::PATCH, &by_id).json(&json!({"description": "checked"})).send().await;
    conforms(&doc, ("patch", "/api/v1/api-keys/{id}"), patched.unwrap()).await;
    app.flush_usage().await;
    let usage = with_key(get.clone(), &format!("{by_id}/usage")).send().await.unwrap();
    let usage = conforms(&doc, ("get", "/api/v1/api-keys/{id}/usage"), usage).await;
    assert!(!usage["data"]["addresses"].as_array().unwrap().is_empty(), "{usage}");

    // Refusals fit the envelope, each with its status.
    let missing = with_key(get.clone(), "/api/v1/api-keys/key_missing").send().await.unwrap();
    assert_eq!(conforms(&doc, ("get", "/api/v1/api-keys/{id}"), missing).await["error"]["code"], "not_found");
    let invalid = with_key(reqwest::Method::POST, "/api/v1/api-keys").json(&json!({"name": ""})).send().await;
    let invalid = conforms(&doc, ("post", "/api/v1/api-keys"), invalid.unwrap()).await;
    assert_eq!(invalid["error"]["code"], "validation_failed");
    let malformed = with_key(reqwest::Method::POST, "/api/v1/api-keys")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await;
    assert_eq!(conforms(&doc, ("post", "/api/v1/api-keys"), malformed.unwrap()).await["error"]["code"], "bad_request");
    let anonymous = app.other_client().client.get(app.url("/api/v1/api-keys")).send().await.unwrap();
    assert_eq!(conforms(&doc, ("get", "/api/v1/api-keys"), anonymous).await["error"]["code"], "unauthorized");

    // Roll (the new secret), then revoke the new key with the old one (in its grace).
    let rolled = with_key(reqwest::Method::POST, &format!("{by_id}/roll")).json(&json!({"grace_seconds": 60})).send();
    let rolled = conforms(&doc, ("post", "/api/v1/api-keys/{id}/roll"), rolled.await.unwrap()).await;
    let new_id = rolled["data"]["id"].as_str().unwrap();
    let revoked = with_key(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{new_id}")).send().await.unwrap();
    let revoked = conforms(&doc, ("delete", "/api/v1/api-keys/{id}"), revoked).await;
    assert_eq!(revoked["data"]["status"], "revoked");
}
both!(the_api_answers_fit_their_documented_schemas);

async fn the_oauth_and_service_answers_fit_their_documented_schemas(app: TestApp) {
    let doc = document(&app).await;
    app.owner_session().await;
    let key = crate::api_keys::create_key(&app, json!({"name": "Seen", "scopes": ["templates:read"]})).await;
    let key = key["key"].as_str().unwrap().to_owned();
    let partner = service_key(&app, &["introspect", "leaks:report"]);
    let client = app.other_client().client;

    let introspect =
        |token: &str| client.post(app.url("/oauth/introspect")).bearer_auth(&partner).form(&[("token", token)]).send();
    let active = conforms(&doc, ("post", "/oauth/introspect"), introspect(&key).await.unwrap()).await;
    assert_eq!(active["active"], true);
    let inactive = conforms(&doc, ("post", "/oauth/introspect"), introspect("lk_nothing").await.unwrap()).await;
    assert_eq!(inactive, json!({"active": false}));

    let verify = client.get(app.url("/auth/verify?scope=templates:read")).header("X-API-Key", &key).send().await;
    let verify = verify.unwrap();
    assert_eq!(verify.status(), StatusCode::OK);
    assert!(
        verify.headers().contains_key("x-latchkey-principal") && verify.headers().contains_key("x-ratelimit-limit")
    );
    let denied = client.get(app.url("/auth/verify?scope=admin")).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(conforms(&doc, ("get", "/auth/verify"), denied).await["error"]["code"], "forbidden");

    let metadata = client.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    conforms(&doc, ("get", "/.well-known/oauth-authorization-server"), metadata).await;
    let token = client.post(app.url("/oauth/token")).form(&[("grant_type", "password")]).send().await.unwrap();
    assert!(conforms(&doc, ("post", "/oauth/token"), token).await["error"].is_string());

    let leaks = client.post(app.url("/api/v1/leaked-keys")).bearer_auth(&partner);
    let leaks = leaks.json(&json!({"keys": [key, "lk_garbage"], "url": "https://example.com/paste"})).send();
    let leaks = conforms(&doc, ("post", "/api/v1/leaked-keys"), leaks.await.unwrap()).await;
    assert_eq!(leaks["data"]["results"], json!([{"outcome": "revoked"}, {"outcome": "malformed"}]));
}
both!(the_oauth_and_service_answers_fit_their_documented_schemas);

async fn a_token_request_that_is_not_form_encoded_gets_an_oauth_error_not_a_page(app: TestApp) {
    let doc = document(&app).await;
    let client = app.other_client().client;
    for path in ["/oauth/token", "/oauth/revoke"] {
        let res = client.post(app.url(path)).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body = conforms(&doc, ("post", path), res).await;
        assert_eq!(body["error"], "invalid_request", "{path}");
        // A form too large to read says so (not "send it form-encoded").
        let big = format!("grant_type=client_credentials&scope={}", "a".repeat(70_000));
        let res = client
            .post(app.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = conforms(&doc, ("post", path), res).await;
        assert_eq!(body["error"], "invalid_request", "{path}");
        assert_eq!(body["error_description"], "The request body is too large.", "{path}");
    }
}
both!(a_token_request_that_is_not_form_encoded_gets_an_oauth_error_not_a_page);
