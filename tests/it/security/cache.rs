//! The verified-credential cache: indexed by a keyed hash of the presented
//! secret, it answers only that exact secret, and introspection (which now
//! reads it too) sees a change made here at once.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, create_key};
use crate::both;
use crate::helpers::{TestApp, service_key};

async fn auth_test(app: &TestApp, presented: &str) -> StatusCode {
    let c = app.other_client();
    c.client.get(c.url("/api/v1/auth/test")).header("X-API-Key", presented).send().await.unwrap().status()
}

async fn introspect(app: &TestApp, gateway: &str, token: &str) -> Value {
    let c = app.other_client();
    let res = c.client.post(c.url("/oauth/introspect")).bearer_auth(gateway).form(&[("token", token)]).send();
    res.await.unwrap().json().await.unwrap()
}

/// Near misses of a cached key: another character, case, prefix, length.
fn near_misses(secret: &str) -> Vec<String> {
    let (head, last) = secret.split_at(secret.len() - 1);
    let other_last = if last == "a" { "b" } else { "a" };
    let body = secret.split_once('_').unwrap().1;
    vec![
        format!("{head}{other_last}"),
        secret.to_uppercase(),
        format!("lkat_{body}"),
        format!("{secret}x"),
        head.to_owned(),
        format!("{head} {last}"),
    ]
}

async fn cached_credentials_answer_only_their_own_secret(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "cached", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let gateway = service_key(&app, &["introspect"]);
    // Cached by both paths.
    assert_eq!(auth_test(&app, &secret).await, StatusCode::OK);
    assert_eq!(introspect(&app, &gateway, &secret).await["active"], true);
    for miss in near_misses(&secret) {
        assert_eq!(auth_test(&app, &miss).await, StatusCode::UNAUTHORIZED, "{miss:?}");
        assert_eq!(introspect(&app, &gateway, &miss).await, json!({"active": false}), "{miss:?}");
    }
    // Still cached and right; then revoked here: refused by both at once.
    assert_eq!(auth_test(&app, &secret).await, StatusCode::OK);
    let id = key["id"].as_str().unwrap();
    assert_eq!(api_delete(&app, &format!("/api/v1/api-keys/{id}")).await.status(), StatusCode::OK);
    assert_eq!(introspect(&app, &gateway, &secret).await, json!({"active": false}));
    assert_eq!(auth_test(&app, &secret).await, StatusCode::UNAUTHORIZED);
}
both!(cached_credentials_answer_only_their_own_secret);
