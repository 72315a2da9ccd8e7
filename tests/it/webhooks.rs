//! Webhooks end to end: a receiver on loopback (the operator's setting
//! `LATCHKEY_WEBHOOK_ALLOW_PRIVATE` lets endpoints reach it) checks every
//! signature with its own HMAC; events, retries, order, restarts, several
//! instances, rotation, disabling and resending.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, api_post, create_key};
use crate::helpers::{Backend, OWNER_EMAIL, TestApp, attr_after, spawn_app_with};

pub mod receiver;

use receiver::{Mode, Receiver, signed_with};

pub const PAGE: &str = "/settings/developer/webhooks";
pub const ALLOW_PRIVATE: (&str, &str) = ("LATCHKEY_WEBHOOK_ALLOW_PRIVATE", "true");
/// The settings of these tests: private targets allowed, and sessions that
/// outlast the days the tests move the clock by (a session's row expires by
/// the system clock, its check reads the test clock).
pub const SETTINGS: [(&str, &str); 3] =
    [ALLOW_PRIVATE, ("LATCHKEY_SESSION_IDLE_MINUTES", "20000"), ("LATCHKEY_SESSION_ABSOLUTE_HOURS", "1000")];

/// Runs a test body on SQLite and PostgreSQL, with private targets allowed.
#[macro_export]
macro_rules! both_private {
    ($name:ident) => {
        $crate::both_with!($name, &$crate::webhooks::SETTINGS);
    };
}

/// An endpoint added through the page: (its id, its secret shown once).
/// From then on the test drives delivery itself (the server's timer is held).
pub async fn add_endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    app.state().webhooks.hold_timer();
    let res = add_endpoint_form(app, url, events).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let id = format!("we_{}", attr_after(&html, "/settings/developer/webhooks/we_").unwrap());
    let id = id.split('/').next().unwrap().to_owned();
    (id, attr_after(&html, r#"<code id="secret">"#).expect("the secret is shown once"))
}

/// The form post that adds an endpoint (`events` empty: all events).
pub async fn add_endpoint_form(app: &TestApp, url: &str, events: &[&str]) -> reqwest::Response {
    let mut form = vec![("url", url), ("description", "Our event bus")];
    if events.is_empty() {
        form.push(("all_events", "on"));
    }
    form.extend(events.iter().map(|e| ("events", *e)));
    app.post_form(PAGE, PAGE, &form).await
}

/// Every delivery of an endpoint, oldest first.
pub fn deliveries(app: &TestApp, endpoint: &str) -> Vec<latchkey::store::models::WebhookDelivery> {
    let id = endpoint.to_owned();
    app.db()
        .run_sync(move |c| {
            latchkey::store::models::WebhookDelivery::all_for(c, &id).map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
}

/// Delivery passes until nothing is due.
pub async fn deliver_all(app: &TestApp) {
    while app.deliver_webhooks().await > 0 {}
}

async fn key_events_arrive_signed_with_the_documented_payload(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let (endpoint, secret) = add_endpoint(&app, &rx.url("/hooks"), &[]).await;

    let key = create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap();
    let res = api_post(&app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 0})).await;
    let rolled: Value = res.json().await.unwrap();
    let new_id = rolled["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(api_delete(&app, &format!("/api/v1/api-keys/{new_id}")).await.status(), StatusCode::OK);
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let soon = soon.format(&time::format_description::well_known::Rfc3339).unwrap();
    let expiring = create_key(&app, json!({"name": "Soon", "scopes": ["templates:read"], "expires_at": soon})).await;
    assert_eq!(app.run_reminders().await, 1);
    let partner = crate::helpers::service_key(&app, &["leaks:report"]);
    let report = json!({"keys": [expiring["key"]], "url": "https://gist.example/leak"});
    let res = app.client.post(app.url("/api/v1/leaked-keys")).bearer_auth(&partner).json(&report).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    deliver_all(&app).await;
    let got = rx.wait_for(6).await;
    let types: Vec<String> = got.iter().map(|r| r.event_type()).collect();
    assert_eq!(
        types,
        [
            "api_key.created",
            "api_key.rolled",
            "api_key.revoked",
            "api_key.created",
            "api_key.expiring",
            "api_key.leaked"
        ]
    );
    let secrets =
        [key["key"].as_str().unwrap(), rolled["data"]["key"].as_str().unwrap(), expiring["key"].as_str().unwrap()];
    for r in &got {
        assert!(signed_with(&secret, r), "signature of {}", r.body);
        assert!(r.id.starts_with("msg_") && r.path == "/hooks");
        assert!(
            !secrets.iter().any(|s| r.body.contains(s)) && !r.body.contains(&secret[6..]),
            "no secret in {}",
            r.body
        );
        let body = r.json();
        assert!(
            time::OffsetDateTime::parse(
                body["timestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
        assert_eq!(body["data"]["object"]["type"], "api_key");
        assert!(body["data"]["key"]["prefix"].as_str().unwrap().starts_with("lk_"), "{body}");
    }
    let created = got[0].json();
    assert_eq!(created["data"]["key"]["name"], "Billing worker");
    assert_eq!(created["data"]["actor"], OWNER_EMAIL);
    assert_eq!(created["data"]["details"]["scopes"], json!(["templates:read"]));
    assert_eq!(got[1].json()["data"]["details"]["new_key_id"], new_id.as_str());
    assert_eq!(got[2].json()["data"]["by"], "team");
    assert_eq!(got[4].json()["data"]["details"]["days"], 3);
    assert_eq!(got[5].json()["data"]["details"]["url"], "https://gist.example/leak");
    assert!(deliveries(&app, &endpoint).iter().all(|d| d.status.as_str() == "delivered" && d.attempts == 1));
}
crate::both_private!(key_events_arrive_signed_with_the_documented_payload);

async fn app_member_and_security_events_reach_only_the_endpoints_that_want_them(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let wanted = [
        "oauth_app.created",
        "oauth_app.updated",
        "oauth_app.secret_rotated",
        "oauth_app.deleted",
        "member.invited",
        "member.joined",
        "member.role_changed",
        "member.removed",
        "security.totp_disabled",
    ];
    let (_, secret) = add_endpoint(&app, &rx.url("/team"), &wanted).await;
    let other = Receiver::start().await;
    add_endpoint(&app, &other.url("/keys-only"), &["api_key.created"]).await;

    create_key(&app, json!({"name": "Not for the team endpoint", "scopes": ["templates:read"]})).await;
    let a = crate::oauth::register(&app, "confidential", "https://app.example/cb", &["templates:read"]).await;
    let page = format!("/settings/developer/oauth-apps/{}", a.client_id);
    let form =
        [("name", "Acme Connector 2"), ("redirect_uris", "https://app.example/cb"), ("scopes", "templates:read")];
    assert_eq!(app.post_form(&page, &page, &form).await.status(), StatusCode::SEE_OTHER);
    app.post_form(&format!("{page}/rotate"), &format!("{page}/rotate"), &[("grace", "0")]).await;
    app.post_form(&format!("{page}/delete"), &format!("{page}/delete"), &[]).await;
    crate::accounts::member(&app, "dev@acme.test", "developer").await;
    app.db().run_sync(|c| latchkey::service::totp::operator_reset(c, "dev@acme.test")).unwrap();
    let team = app.get_html("/settings/team").await;
    let dev_id = crate::accounts::member_id(&team, "dev@acme.test");
    let role = format!("/settings/team/members/{dev_id}/role");
    assert_eq!(app.post_form("/settings/team", &role, &[("role", "viewer")]).await.status(), StatusCode::SEE_OTHER);
    let remove = format!("/settings/team/members/{dev_id}/remove");
    assert_eq!(app.post_form("/settings/team", &remove, &[]).await.status(), StatusCode::SEE_OTHER);

    deliver_all(&app).await;
    let got = rx.wait_for(9).await;
    let types: Vec<String> = got.iter().map(|r| r.event_type()).collect();
    assert_eq!(
        types,
        [
            "oauth_app.created",
            "oauth_app.updated",
            "oauth_app.secret_rotated",
            "oauth_app.deleted",
            "member.invited",
            "member.joined",
            "security.totp_disabled",
            "member.role_changed",
            "member.removed"
        ]
    );
    assert!(got.iter().all(|r| signed_with(&secret, r)));
    assert!(got.iter().all(|r| !a.secret.as_deref().is_some_and(|s| r.body.contains(s))));
    assert_eq!(got[0].json()["data"]["app"]["name"], "Acme Connector");
    assert_eq!(got[4].json()["data"]["details"]["email"], "dev@acme.test");
    assert_eq!(got[5].json()["data"]["user"]["email"], "dev@acme.test");
    assert_eq!(got[6].json()["data"]["actor"], "operator (command line)");
    let keys_only = other.wait_for(1).await;
    assert_eq!(keys_only.len(), 1);
    assert_eq!(keys_only[0].event_type(), "api_key.created");
}
crate::both_private!(app_member_and_security_events_reach_only_the_endpoints_that_want_them);

async fn a_failed_delivery_is_retried_with_backoff_and_later_ones_wait_their_turn(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    rx.answer(Mode::Status(500));
    let (endpoint, secret) = add_endpoint(&app, &rx.url("/"), &["api_key.created"]).await;
    create_key(&app, json!({"name": "first", "scopes": ["templates:read"]})).await;
    create_key(&app, json!({"name": "second", "scopes": ["templates:read"]})).await;

    assert_eq!(app.deliver_webhooks().await, 1, "the first fails; the second waits behind it");
    assert_eq!(app.deliver_webhooks().await, 0, "nothing is due before the backoff");
    let d = deliveries(&app, &endpoint);
    assert_eq!((d[0].status.as_str(), d[0].attempts, d[0].last_status), ("pending", 1, Some(500)));
    assert_eq!(d[0].next_attempt_at.unwrap() - d[0].last_attempt_at.unwrap(), 5);
    assert_eq!(d[1].attempts, 0);

    app.clock().advance(5);
    assert_eq!(app.deliver_webhooks().await, 1);
    let d = deliveries(&app, &endpoint);
    assert_eq!(d[0].next_attempt_at.unwrap() - d[0].last_attempt_at.unwrap(), 300);
    rx.answer(Mode::Status(204));
    app.clock().advance(300);
    assert_eq!(app.deliver_webhooks().await, 2);

    let got = rx.requests();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| signed_with(&secret, r)));
    assert!(got[0].id == got[1].id && got[1].id == got[2].id, "a retry keeps its webhook-id");
    assert_ne!(got[2].timestamp, got[0].timestamp, "each attempt is signed at its own time");
    let names: Vec<Value> = got.iter().map(|r| r.json()["data"]["key"]["name"].clone()).collect();
    assert_eq!(names, [json!("first"), json!("first"), json!("first"), json!("second")], "order kept");
    let d = deliveries(&app, &endpoint);
    assert_eq!((d[0].status.as_str(), d[0].attempts, d[0].last_status), ("delivered", 3, Some(204)));
    assert_eq!((d[1].status.as_str(), d[1].attempts), ("delivered", 1));
}
crate::both_private!(a_failed_delivery_is_retried_with_backoff_and_later_ones_wait_their_turn);

async fn an_endpoint_failing_for_a_day_is_disabled_and_its_owners_told(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    rx.answer(Mode::Status(503));
    let (endpoint, _) = add_endpoint(&app, &rx.url("/"), &[]).await;
    create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let mut notices = Vec::new();
    for _ in 0..8 {
        let (n, sent) = app.deliver_webhooks_recorded().await;
        assert_eq!(n, 1);
        notices.extend(sent);
        app.clock().advance(latchkey::service::webhooks::LAST_TRY_AFTER);
    }
    let d = deliveries(&app, &endpoint);
    assert_eq!((d[0].status.as_str(), d[0].attempts, d[0].next_attempt_at), ("failed", 8, None));
    assert_eq!(rx.requests().len(), 8, "immediately, then 7 retries");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind.as_str(), "webhook.endpoint_disabled");
    let told: Vec<&str> = notices[0].recipients.iter().map(|r| r.email.as_str()).collect();
    assert_eq!(told, [OWNER_EMAIL]);
    assert!(notices[0].text.contains(rx.url("/").trim_end_matches('/')));
    let page = app.get_html(&format!("{PAGE}/{endpoint}")).await;
    assert!(page.contains("Disabled") && page.contains(latchkey::service::webhooks::FAILING_REASON));
    let log = app.get_html("/settings/team/audit").await;
    assert!(log.contains("disabled the webhook endpoint"), "audited");

    // Nothing is queued for it while disabled; enabled again, it gets new events.
    create_key(&app, json!({"name": "k2", "scopes": ["templates:read"]})).await;
    assert_eq!(deliveries(&app, &endpoint).len(), 1);
    rx.answer(Mode::Status(200));
    let res = app.post_form(&format!("{PAGE}/{endpoint}"), &format!("{PAGE}/{endpoint}/enable"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    create_key(&app, json!({"name": "k3", "scopes": ["templates:read"]})).await;
    assert_eq!(app.deliver_webhooks().await, 1);
    assert_eq!(deliveries(&app, &endpoint)[1].status.as_str(), "delivered");
    assert_eq!(rx.requests().last().unwrap().json()["data"]["key"]["name"], "k3");
}
crate::both_private!(an_endpoint_failing_for_a_day_is_disabled_and_its_owners_told);

async fn a_rotation_signs_with_both_secrets_during_its_grace_then_only_the_new_one(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let (endpoint, old) = add_endpoint(&app, &rx.url("/"), &["api_key.created"]).await;
    let page = format!("{PAGE}/{endpoint}");
    let res = app.post_form(&format!("{page}/rotate"), &format!("{page}/rotate"), &[("grace", "3600")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let new = attr_after(&res.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
    assert_ne!(new, old);
    assert!(!app.get_html(&page).await.contains(&new), "shown once");

    create_key(&app, json!({"name": "during", "scopes": ["templates:read"]})).await;
    deliver_all(&app).await;
    app.clock().advance(3601);
    create_key(&app, json!({"name": "after", "scopes": ["templates:read"]})).await;
    deliver_all(&app).await;
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].signature.split(' ').count(), 2, "new and old: {}", got[0].signature);
    assert!(signed_with(&new, &got[0]) && signed_with(&old, &got[0]));
    let first =
        receiver::Received { signature: got[0].signature.split(' ').next().unwrap().to_owned(), ..got[0].clone() };
    assert!(signed_with(&new, &first), "the new secret's signature comes first");
    assert_eq!(got[1].signature.split(' ').count(), 1);
    assert!(signed_with(&new, &got[1]) && !signed_with(&old, &got[1]));
}
crate::both_private!(a_rotation_signs_with_both_secrets_during_its_grace_then_only_the_new_one);

async fn resend_queues_a_delivered_message_again(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let (endpoint, secret) = add_endpoint(&app, &rx.url("/"), &[]).await;
    create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    deliver_all(&app).await;
    let first = deliveries(&app, &endpoint)[0].id;
    let page = format!("{PAGE}/{endpoint}");
    let html = app.get_html(&page).await;
    assert!(html.contains(&format!(r#"id="resend-{first}""#)) && html.contains("api_key.created"));
    let res = app.post_form(&page, &format!("{page}/deliveries/{first}/resend"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    deliver_all(&app).await;
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].id, got[1].id, "the same message");
    assert!(signed_with(&secret, &got[1]));
    assert_eq!(deliveries(&app, &endpoint).len(), 2);
}
crate::both_private!(resend_queues_a_delivered_message_again);

#[tokio::test]
async fn no_delivery_is_lost_across_a_server_restart() {
    let app = spawn_app_with(Backend::Sqlite, &[ALLOW_PRIVATE]).await.unwrap();
    app.owner_session().await;
    let rx = Receiver::start().await;
    rx.answer(Mode::Status(500));
    let (endpoint, secret) = add_endpoint(&app, &rx.url("/"), &[]).await;
    create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    assert_eq!(app.deliver_webhooks().await, 1);
    app.stop().await;

    rx.answer(Mode::Status(200));
    let again = crate::helpers::serve(&app.data_dir, &app.database_url, &[ALLOW_PRIVATE]).await;
    again.clock().advance(5);
    again.deliver_webhooks().await;
    let got = rx.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, got[1].id);
    assert!(signed_with(&secret, &got[1]));
    assert_eq!(deliveries(&again, &endpoint)[0].status.as_str(), "delivered");
}

#[tokio::test]
async fn two_instances_deliver_each_message_exactly_once() {
    let Some(apps) = crate::helpers::spawn_instances(2, &[ALLOW_PRIVATE]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let rx = Receiver::start().await;
    let (endpoint, _) = add_endpoint(a, &rx.url("/"), &[]).await;
    for i in 0..6 {
        create_key(a, json!({"name": format!("k{i}"), "scopes": ["templates:read"]})).await;
    }
    for _ in 0..4 {
        tokio::join!(a.deliver_webhooks(), b.deliver_webhooks());
    }
    deliver_all(a).await;
    deliver_all(b).await;
    let got = rx.wait_for(6).await;
    let mut ids: Vec<String> = got.iter().map(|r| r.id.clone()).collect();
    let names: Vec<Value> = got.iter().map(|r| r.json()["data"]["key"]["name"].clone()).collect();
    assert_eq!(names, (0..6).map(|i| json!(format!("k{i}"))).collect::<Vec<_>>(), "in order");
    ids.dedup();
    assert_eq!(ids.len(), 6, "each exactly once");
    assert!(deliveries(a, &endpoint).iter().all(|d| d.attempts == 1 && d.status.as_str() == "delivered"));
}

/// A key refused for its team's plan is announced once, however many refusals
/// follow in the hour, and again once the hour has passed.
async fn a_rate_limited_key_is_announced_at_most_once_an_hour(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let (_endpoint, secret) = add_endpoint(&app, &rx.url("/hooks"), &["api_key.rate_limited"]).await;
    let key = create_key(&app, json!({"name": "Busy worker", "scopes": ["templates:read"]})).await;
    let secret_key = key["key"].as_str().unwrap().to_owned();
    let burst = |n: usize| {
        let (app, k) = (&app, secret_key.clone());
        async move {
            let mut limited = 0;
            for _ in 0..n {
                let res = app.client.get(app.url("/api/v1/auth/test")).bearer_auth(&k).send().await.unwrap();
                limited += usize::from(res.status() == StatusCode::TOO_MANY_REQUESTS);
            }
            limited
        }
    };
    assert!(burst(25).await >= 10, "the free plan allows 10 a minute");
    app.flush_usage().await;
    deliver_all(&app).await;
    app.clock().advance(120);
    assert!(burst(25).await >= 10, "refused again in a later minute of the same hour");
    app.flush_usage().await;
    deliver_all(&app).await;
    let got = rx.wait_for(1).await;
    assert_eq!(got.len(), 1, "once within the hour");
    assert!(signed_with(&secret, &got[0]));
    let body = got[0].json();
    assert_eq!(body["type"], "api_key.rate_limited");
    assert_eq!(body["data"]["key"]["id"], key["id"]);
    assert_eq!(body["data"]["details"]["plan"], "free");
    assert!(!got[0].body.contains(&secret_key));

    app.clock().advance(latchkey::service::verify::RATE_LIMITED_EVERY);
    assert!(burst(25).await >= 10);
    app.flush_usage().await;
    deliver_all(&app).await;
    assert_eq!(rx.wait_for(2).await.len(), 2, "again after an hour");
}
both_private!(a_rate_limited_key_is_announced_at_most_once_an_hour);
