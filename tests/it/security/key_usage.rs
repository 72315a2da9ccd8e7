//! Reading a key's usage: any member of its team may (viewers included),
//! nobody else — another team's members and keys get 404, a key without
//! `api_keys:read` 403, no credential 401 — and whatever the dates say, the
//! answer is a field error, never a 500 nor an echo. A credential sent as a
//! user agent is kept nowhere (the audit's L2, issue 14).

use diesel::prelude::*;
use oauth2::TokenResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{call, create_key};
use crate::both;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp};
use crate::key_edit::{events, patch, unlimited};
use crate::key_usage::{KEYS, call_as, new_key, report, today, usage};
use crate::oauth::{REDIRECT, client, http, register};
use latchkey::store::StoreError;
use latchkey::store::schema::{audit_events, sessions, usage_sightings};

const GLOBEX_EMAIL: &str = "boss@globex.test";
const GLOBEX_PASSWORD: &str = "globex owner password";

/// The owner of another team ("Globex"), signed in on a fresh client.
async fn other_team(app: &TestApp) -> TestApp {
    let hash = latchkey::service::password::hash(&mut Default::default(), GLOBEX_PASSWORD).unwrap();
    app.db()
        .run_sync(|c| latchkey::service::accounts::create_user(c, GLOBEX_EMAIL, hash, false, Some("Globex")))
        .unwrap();
    let boss = app.other_client();
    assert_eq!(boss.login(GLOBEX_EMAIL, GLOBEX_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    boss
}

async fn status_of(who: &TestApp, path: &str) -> StatusCode {
    who.get(path).await.status()
}

async fn members_of_the_team_read_usage_and_nobody_else_does(app: TestApp) {
    app.owner_session().await;
    let (id, secret) = new_key(&app, json!({"name": "watched", "scopes": ["templates:read"]})).await;
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
    let api = format!("/api/v1/api-keys/{id}/usage");
    let csv = format!("{KEYS}/{id}/usage.csv");

    // Every member reads, the developer who did not make the key included.
    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    for who in [&app, &viewer, &dev] {
        assert_eq!(status_of(who, &api).await, StatusCode::OK);
        assert_eq!(status_of(who, &csv).await, StatusCode::OK);
        assert!(who.get_html(&format!("{KEYS}/{id}")).await.contains(r#"id="usage""#));
    }

    // Another team: its owner, and its keys, find nothing — not even with good dates.
    let boss = other_team(&app).await;
    let theirs = create_key(&boss, json!({"name": "globex reader", "scopes": ["api_keys:read"]})).await;
    let their_secret = theirs["key"].as_str().unwrap();
    let their_id = theirs["id"].as_str().unwrap();
    let one_day = format!("?from={0}&to={0}", today(&app));
    for path in [api.clone(), format!("{api}{one_day}"), format!("{api}?format=csv")] {
        let res = boss.get(&path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "not_found");
        assert_eq!(call(&app, &path, their_secret).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(status_of(&boss, &csv).await, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, &format!("/api/v1/api-keys/{their_id}/usage"), their_secret).await.status(), StatusCode::OK);

    // Keys of the team: api_keys:read is needed (and the refusal is counted).
    let (reader, reader_secret) = new_key(&app, json!({"name": "reader", "scopes": ["api_keys:read"]})).await;
    let (_, narrow) = new_key(&app, json!({"name": "narrow", "scopes": ["api_keys:write"]})).await;
    assert_eq!(call(&app, &api, &reader_secret).await.status(), StatusCode::OK);
    let res = call(&app, &api, &narrow).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "forbidden");
    assert_eq!(call(&app, &api, &secret).await.status(), StatusCode::FORBIDDEN, "the key itself lacks the scope");
    let service = crate::helpers::service_key(&app, &["introspect"]);
    assert_eq!(call(&app, &api, &service).await.status(), StatusCode::FORBIDDEN);

    // No credential, a malformed id, support staff (no team): nothing.
    let anonymous = app.other_client();
    assert_eq!(status_of(&anonymous, &api).await, StatusCode::UNAUTHORIZED);
    assert_ne!(status_of(&anonymous, &csv).await, StatusCode::OK);
    for bad in ["key_nope", "..", "%2e%2e", "x%00"] {
        assert_eq!(status_of(&app, &format!("/api/v1/api-keys/{bad}/usage")).await, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(status_of(&app, &format!("{KEYS}/{bad}/usage.csv")).await, StatusCode::NOT_FOUND, "{bad}");
    }
    let staff = crate::support::support_user(&app).await;
    assert_eq!(status_of(&staff, &api).await, StatusCode::FORBIDDEN);
    assert_ne!(status_of(&staff, &csv).await, StatusCode::OK);

    app.flush_usage().await;
    let data = report(&app, &id).await;
    assert_eq!(data["days"][29]["ok"], 1);
    assert_eq!(data["days"][29]["scope_denied"], 1, "its own refused read");
    assert_eq!(report(&app, &reader).await["scopes"]["exercised"][0]["scope"], "api_keys:read");
}
both!(members_of_the_team_read_usage_and_nobody_else_does);

async fn bad_dates_are_field_errors_never_a_500_nor_an_echo(app: TestApp) {
    app.owner_session().await;
    let (id, _) = new_key(&app, json!({"name": "dated", "scopes": ["templates:read"]})).await;
    let long = "9".repeat(2000);
    let cases: Vec<(String, &[&str])> = vec![
        ("?from=2026-13-01".into(), &["from"]),
        ("?to=yesterday".into(), &["to"]),
        ("?from=2026-02-30&to=26-11-2026".into(), &["from", "to"]),
        ("?from=2026-11-26&to=2026-11-25".into(), &["from", "to"]),
        ("?from=2025-01-01&to=2026-01-02".into(), &["from", "to"]),
        ("?from=2020-01-01".into(), &["from", "to"]),
        ("?from=2026-11-26%00".into(), &["from"]),
        ("?from=%0d%0a2026-11-26".into(), &["from"]),
        ("?to=2026-11-26%09".into(), &["to"]),
        ("?to=%E2%80%AE2026-11-26".into(), &["to"]),
        (format!("?from={long}"), &["from"]),
        ("?from=20261126".into(), &["from"]),
        ("?from=2026-11-26T25:00:00Z".into(), &["from"]),
        ("?format=xml".into(), &["format"]),
        // Present but empty is not "left out": the contract's enum has no "".
        ("?format=".into(), &["format"]),
        ("?format=CSV".into(), &["format"]),
    ];
    for (query, fields) in cases {
        let (status, body) = usage(&app, &id, &query).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed");
        let got: Vec<&str> = body["error"]["fields"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(got, fields, "{query}");
        assert!(!body.to_string().contains("999999") && !body.to_string().contains("2026-13"), "never echoed");
        if !query.starts_with("?format") {
            let page = app.get(&format!("{KEYS}/{id}/usage.csv{query}")).await;
            assert_eq!(page.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        }
    }
    // What the query string itself cannot say is a 400, still never a 500.
    for query in ["?from=%FF", "?from=2026-11-26&from=2026-11-27"] {
        let (status, _) = usage(&app, &id, query).await;
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY, "{query}: {status}");
    }
    // The edges that are allowed: one day, and 366.
    let (status, body) = usage(&app, &id, "?from=2024-01-01&to=2024-12-31").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["days"].as_array().unwrap().len(), 366);
    assert_eq!(body["data"]["days"][59]["date"], "2024-02-29");
    let (status, body) = usage(&app, &id, "?from=1970-01-01&to=1970-01-01").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["days"],
        json!([{"date": "1970-01-01", "ok": 0, "scope_denied": 0, "address_denied": 0,
        "rate_limited": 0, "expired": 0, "revoked": 0, "disabled": 0, "total": 0}])
    );
    let (status, _) = usage(&app, &id, "?from=9999-12-31&to=9999-12-31").await;
    assert_eq!(status, StatusCode::OK);
    // An RFC 3339 time, as the rest of the API writes times, stands for its UTC day.
    let (status, body) = usage(&app, &id, "?from=2026-11-20T10:00:00Z&to=2026-11-26T23:59:59Z").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["data"]["from"].as_str(), body["data"]["days"].as_array().unwrap().len()),
        (Some("2026-11-20"), 7)
    );
}
both!(bad_dates_are_field_errors_never_a_500_nor_an_echo);

/// An access token of a new confidential app (`client_credentials`).
async fn access_token(app: &TestApp) -> String {
    let registered = register(app, "confidential", REDIRECT, &["templates:read"]).await;
    let token = client(app, &registered, REDIRECT).exchange_client_credentials().request_async(&http()).await.unwrap();
    token.access_token().secret().clone()
}

/// Every text the database keeps about who called: the usage sightings,
/// the audit events' actors, agents and details, the sessions.
fn everything_kept(app: &TestApp) -> Vec<String> {
    app.db()
        .run_sync(|c| {
            let mut all: Vec<String> = usage_sightings::table.select(usage_sightings::value).load(c)?;
            let events: Vec<(String, Option<String>, String)> = audit_events::table
                .select((audit_events::actor_label, audit_events::user_agent, audit_events::details))
                .load(c)?;
            for (label, agent, details) in events {
                all.extend([label, agent.unwrap_or_default(), details]);
            }
            let kept: Vec<(Option<String>, String)> =
                sessions::table.select((sessions::user_agent, sessions::state)).load(c)?;
            all.extend(kept.into_iter().flat_map(|(agent, state)| [agent.unwrap_or_default(), state]));
            Ok::<_, StoreError>(all)
        })
        .unwrap()
}

/// L2: a key, another key or an OAuth access token sent as (or inside) a
/// User-Agent — by a script, or a browser signing in — is replaced by
/// `[secret]` wherever an agent is kept or shown: usage sightings, the usage
/// report, the key page, support's key page, audit actors and sessions.
async fn a_credential_sent_as_a_user_agent_is_kept_nowhere(app: TestApp) {
    app.owner_session().await;
    unlimited(&app);
    let scopes = ["templates:read", "api_keys:read", "api_keys:write"];
    let (id, key) = new_key(&app, json!({"name": "leaky", "scopes": scopes})).await;
    let (_, other) = new_key(&app, json!({"name": "bystander", "scopes": ["templates:read"]})).await;
    let token = access_token(&app).await;
    let test = "/api/v1/auth/test";
    let body = key.split_once('_').unwrap().1;
    let variants = [
        key.clone(),
        format!("worker/1.0 ({token})"),
        format!("worker/1.0 ({other})"),
        // Forms a person turns back into the key at a glance: no prefix, no
        // checksum, an encoded separator.
        format!("client/2 {body}"),
        format!("client/3 lk_{}", &body[..30]),
        format!("client/4 lk%5F{body}"),
    ];
    for agent in variants {
        assert_eq!(call_as(&app, test, &key, &agent, None).await, StatusCode::OK, "{agent}");
    }
    // State-changing calls with such agents: with the key itself, and from a
    // browser that signed in with one.
    let res = app
        .other_client()
        .client
        .patch(app.url(&format!("/api/v1/api-keys/{id}")))
        .header("X-API-Key", &key)
        .header("User-Agent", &key)
        .json(&json!({"name": "leaky renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut browser = app.other_client();
    browser.client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("worker/1.0 ({token})"))
        .build()
        .unwrap();
    assert_eq!(browser.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(patch(&browser, &id, &json!({"name": "leaky again"})).await.status(), StatusCode::OK);
    app.flush_usage().await;

    // The random part of each secret (checksum aside), which no kept text may hold.
    let secrets: Vec<&str> = [&key, &other, &token].into_iter().map(|s| &s.split_once('_').unwrap().1[..30]).collect();
    let leaks = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s), "{what} holds a secret: {text}");
        }
    };
    for text in everything_kept(&app) {
        leaks("the database", &text);
    }
    let data = report(&app, &id).await;
    leaks("the usage report", &data.to_string());
    let mut agents: Vec<&str> =
        data["user_agents"].as_array().unwrap().iter().map(|a| a["user_agent"].as_str().unwrap()).collect();
    agents.sort_unstable();
    let kept = [
        latchkey::service::keys::codec::HOLDS_A_SECRET,
        "[secret]",
        "client/2 [secret]",
        "client/3 lk_[secret]",
        "worker/1.0 ([secret])",
    ];
    assert_eq!(agents, kept, "kept as the agents they were, secrets cut out");
    let owner_page = app.get_html(&format!("{KEYS}/{id}")).await;
    let staff = crate::support::support_user(&app).await;
    let support_page = staff.get_html(&format!("/support/keys/{id}")).await;
    for (what, page) in [("the key page", &owner_page), ("support's key page", &support_page)] {
        leaks(what, page);
        assert!(page.contains("worker/1.0 ([secret])"), "{what} shows the agent");
    }
    let signed_in: Vec<Option<String>> =
        app.db().run_sync(|c| sessions::table.select(sessions::user_agent).load(c).map_err(StoreError::from)).unwrap();
    assert!(signed_in.contains(&Some("worker/1.0 ([secret])".to_owned())), "{signed_in:?}");
    let mut recorded: Vec<Option<String>> =
        events(&app, &id, "api_key.updated").into_iter().map(|e| e.user_agent).collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [Some("[secret]".to_owned()), Some("worker/1.0 ([secret])".to_owned())],
        "the audit keeps the agents, secrets cut out"
    );
}
both!(a_credential_sent_as_a_user_agent_is_kept_nowhere);
