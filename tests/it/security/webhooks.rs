//! Attacks on webhooks: server-side request forgery (at registration and
//! at delivery, through names, literal forms, redirects, slow and huge
//! answers), the policy (roles, support, another team, API keys), CSRF, the
//! secret's storage, and bad input.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::create_key;
use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::webhooks::receiver::{Mode, Receiver};
use crate::webhooks::{ALLOW_PRIVATE, PAGE, add_endpoint, add_endpoint_form, deliveries};

/// A name other than `localhost` that resolves to a loopback address (this
/// machine's name, when its hosts file says so), for the resolver's check.
fn loopback_name() -> Option<String> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/etc/hostname").ok()?.trim().to_owned();
    let found: Vec<_> = (name.as_str(), 443).to_socket_addrs().ok()?.collect();
    (!name.is_empty() && !found.is_empty() && found.iter().all(|a| a.ip().is_loopback())).then_some(name)
}

fn endpoints_stored(app: &TestApp) -> usize {
    app.db()
        .run_sync(|c| {
            use latchkey::store::schema::webhook_endpoints::dsl::*;
            webhook_endpoints.count().get_result::<i64>(c).map_err(latchkey::store::StoreError::from)
        })
        .unwrap() as usize
}

/// Points an endpoint somewhere its form would refuse (as a DNS change
/// after registration would).
fn point_at(app: &TestApp, endpoint: &str, target: &str) {
    let (endpoint, target) = (endpoint.to_owned(), target.to_owned());
    app.db()
        .run_sync(move |c| {
            use latchkey::store::schema::webhook_endpoints as e;
            diesel::update(e::table.find(endpoint))
                .set(e::url.eq(target))
                .execute(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
}

async fn private_and_plain_http_targets_are_refused_at_registration(app: TestApp) {
    app.owner_session().await;
    for url in [
        "http://hooks.example.com/in",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://LOCALHOST./hook",
        "https://0.0.0.0/",
        "https://10.0.0.8/",
        "https://172.20.1.1/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[fe80::1]/",
        "https://[fd00::1]/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://user:pass@hooks.example.com/",
        "javascript:alert(1)",
        "file:///etc/passwd",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(loopback_name().map(|n| format!("https://{n}/hook")))
    {
        let url = url.as_str();
        let res = add_endpoint_form(&app, url, &[]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let html = res.text().await.unwrap();
        assert!(html.contains(r#"id="url-error""#), "{url}: the URL field says why");
    }
    assert_eq!(endpoints_stored(&app), 0);
    assert_eq!(add_endpoint_form(&app, "https://hooks.example.com/in", &[]).await.status(), StatusCode::OK);
}
both!(private_and_plain_http_targets_are_refused_at_registration);

async fn deliveries_never_reach_private_addresses_whatever_the_stored_url(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let (endpoint, _) = add_endpoint(&app, "https://hooks.example.com/in", &[]).await;
    let port = rx.port;
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("https://localhost:{port}/"),
        format!("https://[::1]:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0.0.0.0:{port}/"),
        format!("https://169.254.169.254:{port}/"),
    ]
    .into_iter()
    .chain(loopback_name().map(|n| format!("https://{n}:{port}/")))
    {
        point_at(&app, &endpoint, &target);
        create_key(&app, json!({"name": format!("k{target}"), "scopes": ["templates:read"]})).await;
        assert_eq!(app.deliver_webhooks().await, 1, "{target}");
        let last = deliveries(&app, &endpoint).into_iter().find(|d| d.attempts > 0 && d.status.as_str() == "pending");
        let last = last.unwrap_or_else(|| panic!("{target}: attempted and refused"));
        assert!(last.last_error.as_deref().unwrap_or_default().contains("refused"), "{target}: {:?}", last.last_error);
        // The next target gets a fresh queue.
        point_at(&app, &endpoint, "https://hooks.example.com/in");
        delete_deliveries(&app, &endpoint);
    }
    assert!(rx.requests().is_empty(), "nothing reached the loopback receiver");
}
both!(deliveries_never_reach_private_addresses_whatever_the_stored_url);

fn delete_deliveries(app: &TestApp, endpoint: &str) {
    let endpoint = endpoint.to_owned();
    app.db()
        .run_sync(move |c| {
            use latchkey::store::schema::webhook_deliveries as d;
            diesel::delete(d::table.filter(d::endpoint_id.eq(endpoint)))
                .execute(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
}

#[tokio::test]
async fn a_redirect_is_never_followed() {
    let app = spawn_app_with(Backend::Sqlite, &[ALLOW_PRIVATE]).await.unwrap();
    app.owner_session().await;
    let (first, inner) = (Receiver::start().await, Receiver::start().await);
    first.answer(Mode::Redirect(inner.url("/internal")));
    let (endpoint, _) = add_endpoint(&app, &first.url("/"), &[]).await;
    create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    assert_eq!(app.deliver_webhooks().await, 1);
    let d = &deliveries(&app, &endpoint)[0];
    assert_eq!((d.status.as_str(), d.last_status), ("pending", Some(302)));
    assert!(d.last_error.as_deref().unwrap().contains("redirect"));
    assert_eq!(first.requests().len(), 1);
    assert!(inner.requests().is_empty(), "the redirect target was never called");
}

#[tokio::test]
async fn a_slow_receiver_is_cut_off_after_five_seconds() {
    let app = spawn_app_with(Backend::Sqlite, &[ALLOW_PRIVATE]).await.unwrap();
    app.owner_session().await;
    let rx = Receiver::start().await;
    rx.answer(Mode::Slow(std::time::Duration::from_secs(30)));
    let (endpoint, _) = add_endpoint(&app, &rx.url("/"), &[]).await;
    create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    assert_eq!(app.deliver_webhooks().await, 1);
    let d = &deliveries(&app, &endpoint)[0];
    assert_eq!((d.status.as_str(), d.last_status), ("pending", None));
    assert_eq!(d.last_error.as_deref(), Some("no answer within 5 seconds"));
}

#[tokio::test]
async fn an_endless_answer_is_read_no_further_than_64_kb() {
    let app = spawn_app_with(Backend::Sqlite, &[ALLOW_PRIVATE]).await.unwrap();
    app.owner_session().await;
    let rx = Receiver::start().await;
    rx.answer(Mode::Endless);
    let (endpoint, _) = add_endpoint(&app, &rx.url("/"), &[]).await;
    create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    assert_eq!(app.deliver_webhooks().await, 1);
    let d = &deliveries(&app, &endpoint)[0];
    // Reading it whole would have run into the 5 s limit and failed.
    assert_eq!((d.status.as_str(), d.last_status), ("delivered", Some(200)), "{:?}", d.last_error);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(rx.endless_written() < 100 * 1024 * 1024, "the receiver could not push its whole answer");
}

async fn only_owners_and_admins_reach_webhooks_and_other_teams_endpoints_are_not_found(app: TestApp) {
    app.owner_session().await;
    let (endpoint, _) = add_endpoint(&app, "https://hooks.example.com/in", &[]).await;
    let admin = crate::accounts::member(&app, "admin@acme.test", "admin").await;
    assert_eq!(admin.get(&format!("{PAGE}/{endpoint}")).await.status(), StatusCode::OK);
    assert!(admin.get_html("/settings/team").await.contains(PAGE), "admins see the nav entry");
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let support = crate::support::support_user(&app).await;
    for (who, name) in [(&dev, "developer"), (&viewer, "viewer"), (&support, "support")] {
        for path in [PAGE.to_owned(), format!("{PAGE}/{endpoint}"), format!("{PAGE}/{endpoint}/rotate")] {
            assert_eq!(who.get(&path).await.status(), StatusCode::FORBIDDEN, "{name} {path}");
        }
        let csrf = crate::helpers::csrf_from(&who.get_html("/settings/security").await);
        for path in [PAGE.to_owned(), format!("{PAGE}/{endpoint}/delete"), format!("{PAGE}/{endpoint}/rotate")] {
            let form = [("csrf_token", csrf.as_str()), ("url", "https://evil.example/"), ("all_events", "on")];
            let res = who.client.post(who.url(&path)).form(&form).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name} POST {path}");
        }
        assert!(!who.get_html("/settings/security").await.contains(PAGE), "{name}: no nav entry");
    }
    // Another team's owner: the endpoint does not exist for them.
    let other = other_team_owner(&app).await;
    for path in [format!("{PAGE}/{endpoint}"), format!("{PAGE}/{endpoint}/rotate"), format!("{PAGE}/{endpoint}/delete")]
    {
        assert_eq!(other.get(&path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = other.post_form(PAGE, &format!("{PAGE}/{endpoint}/delete"), &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(!other.get_html(PAGE).await.contains(&endpoint));
    // An API key is no way in: the pages want a signed-in person.
    let key = create_key(&app, json!({"name": "k", "scopes": ["admin"]})).await;
    let anonymous = app.other_client();
    let res = anonymous.client.get(app.url(PAGE)).bearer_auth(key["key"].as_str().unwrap()).send().await.unwrap();
    assert_ne!(res.status(), StatusCode::OK);
    assert_eq!(endpoints_stored(&app), 1);
}
both!(only_owners_and_admins_reach_webhooks_and_other_teams_endpoints_are_not_found);

async fn webhook_forms_need_the_csrf_token(app: TestApp) {
    app.owner_session().await;
    let (endpoint, _) = add_endpoint(&app, "https://hooks.example.com/in", &[]).await;
    let form = [("url", "https://evil.example/"), ("all_events", "on"), ("grace", "0")];
    for path in [
        PAGE.to_owned(),
        format!("{PAGE}/{endpoint}"),
        format!("{PAGE}/{endpoint}/rotate"),
        format!("{PAGE}/{endpoint}/disable"),
        format!("{PAGE}/{endpoint}/delete"),
    ] {
        let res = app.client.post(app.url(&path)).form(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        let bad = [("csrf_token", "forged"), ("url", "https://evil.example/")];
        let res = app.client.post(app.url(&path)).form(&bad).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let html = app.get_html(&format!("{PAGE}/{endpoint}")).await;
    assert!(
        html.contains("https://hooks.example.com/in") && !html.contains("evil.example") && html.contains("Enabled")
    );
    assert_eq!(endpoints_stored(&app), 1);
}
both!(webhook_forms_need_the_csrf_token);

async fn the_signing_secret_is_never_stored_or_audited_in_the_clear(app: TestApp) {
    app.owner_session().await;
    let (endpoint, secret) = add_endpoint(&app, "https://hooks.example.com/in", &[]).await;
    let page = format!("{PAGE}/{endpoint}");
    let res = app.post_form(&format!("{page}/rotate"), &format!("{page}/rotate"), &[("grace", "86400")]).await;
    let rotated = crate::helpers::attr_after(&res.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
    let stored: Vec<String> = app
        .db()
        .run_sync(|c| {
            use latchkey::store::schema::{audit_events, webhook_endpoints};
            let mut rows: Vec<String> = audit_events::table.select(audit_events::details).load(c)?;
            let (a, b): (String, Option<String>) = webhook_endpoints::table
                .select((webhook_endpoints::secret_enc, webhook_endpoints::old_secret_enc))
                .first(c)?;
            rows.extend([a, b.unwrap_or_default()]);
            Ok::<_, latchkey::store::StoreError>(rows)
        })
        .unwrap();
    for s in [&secret, &rotated] {
        let raw = &s["whsec_".len()..];
        assert!(stored.iter().all(|row| !row.contains(raw)), "no stored row holds the secret");
        assert!(!app.get_html(&page).await.contains(raw), "shown once only");
    }
    if app.database_url.starts_with("sqlite") {
        app.flush_usage().await;
        let path = app.database_url.trim_start_matches("sqlite://");
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        for s in [&secret, &rotated] {
            let raw = &s.as_bytes()["whsec_".len()..];
            assert!(!bytes.windows(raw.len()).any(|w| w == raw), "the database file never holds the secret");
        }
    }
}
both!(the_signing_secret_is_never_stored_or_audited_in_the_clear);

async fn bad_endpoint_input_gets_field_errors_and_keeps_what_was_typed(app: TestApp) {
    app.owner_session().await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("url", ""), ("all_events", "on")], "url-error"),
        (&[("url", "https://hooks.example.com/typed"), ("events", "api_key.exploded")], "events-error"),
        (&[("url", "https://hooks.example.com/typed")], "events-error"),
        (
            &[("url", "https://hooks.example.com/typed"), ("description", "bad\u{0}text"), ("all_events", "on")],
            "description-error",
        ),
        (
            &[("url", "https://hooks.example.com/typed"), ("description", &"x".repeat(501)), ("all_events", "on")],
            "description-error",
        ),
    ];
    for (form, error) in cases {
        let res = app.post_form(PAGE, PAGE, form).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{form:?}");
        let html = res.text().await.unwrap();
        assert!(html.contains(&format!(r#"id="{error}""#)), "{form:?}");
        if form[0].1.contains("typed") {
            assert!(html.contains("https://hooks.example.com/typed"), "what was typed is kept");
        }
    }
    let long = format!("https://hooks.example.com/{}", "a".repeat(3000));
    assert_eq!(add_endpoint_form(&app, &long, &[]).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app.post_form(PAGE, "/settings/developer/webhooks/we_nope/deliveries/1/resend", &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.post_form(PAGE, "/settings/developer/webhooks/we_nope/deliveries/x/resend", &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(endpoints_stored(&app), 0);
}
both!(bad_endpoint_input_gets_field_errors_and_keeps_what_was_typed);

/// A leak report's `url` is kept and announced without the credential it may
/// carry (`?token=<the key>`, `user:password@`).
async fn a_leak_reports_url_never_carries_a_credential_into_events(app: TestApp) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    add_endpoint(&app, &rx.url("/hooks"), &["api_key.leaked"]).await;
    let key = create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let k = key["key"].as_str().unwrap();
    let partner = crate::helpers::service_key(&app, &["leaks:report"]);
    let url = format!("https://finder:hunter2secret@gist.example/x?token={k}");
    let report = json!({"keys": [k], "url": url});
    let res = app.client.post(app.url("/api/v1/leaked-keys")).bearer_auth(&partner).json(&report).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    crate::webhooks::deliver_all(&app).await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].json()["type"], "api_key.leaked");
    assert!(!got[0].body.contains(k) && !got[0].body.contains("hunter2secret"), "{}", got[0].body);
    assert!(got[0].body.contains("gist.example"), "where it was found is still said");
    let log = app.get_html("/settings/team/audit").await;
    assert!(!log.contains(k) && !log.contains("hunter2secret"));
}
crate::both_private!(a_leak_reports_url_never_carries_a_credential_into_events);

/// The owner of another team ("Other"), signed in in a browser of their own.
async fn other_team_owner(app: &TestApp) -> TestApp {
    team_owner(app, "Other").await
}

/// The owner of a new team `name`, signed in in a browser of their own.
async fn team_owner(app: &TestApp, name: &str) -> TestApp {
    let hash = latchkey::service::password::hash(&mut Default::default(), "other owner password").unwrap();
    let (email, team) = (format!("boss@{}.test", name.to_lowercase()), name.to_owned());
    let login = email.clone();
    app.db().run_sync(move |c| latchkey::service::accounts::create_user(c, &email, hash, false, Some(&team))).unwrap();
    let other = app.other_client();
    assert_eq!(other.login(&login, "other owner password").await.status(), StatusCode::SEE_OTHER);
    other
}

/// A signed-in owner's endpoint that has received one message: (its
/// receiver, the endpoint's id, the delivery's id).
async fn one_delivered_message(app: &TestApp) -> (Receiver, String, i64) {
    app.owner_session().await;
    let rx = Receiver::start().await;
    let (endpoint, _) = add_endpoint(app, &rx.url("/"), &[]).await;
    create_key(app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    crate::webhooks::deliver_all(app).await;
    let first = deliveries(app, &endpoint)[0].id;
    (rx, endpoint, first)
}

/// Resending a message that already waits for the endpoint queues nothing
/// more: an owner cannot flood a receiver (or the queue) by clicking.
async fn resending_a_message_that_waits_already_queues_nothing_more(app: TestApp) {
    let (rx, endpoint, first) = one_delivered_message(&app).await;
    let page = format!("{PAGE}/{endpoint}");
    for _ in 0..5 {
        let res = app.post_form(&page, &format!("{page}/deliveries/{first}/resend"), &[]).await;
        assert!(res.status().is_redirection() || res.status().is_success(), "{}", res.status());
    }
    assert_eq!(deliveries(&app, &endpoint).len(), 2, "one resend waits, not five");
    crate::webhooks::deliver_all(&app).await;
    assert_eq!(rx.wait_for(2).await.len(), 2);
    let res = app.post_form(&page, &format!("{page}/deliveries/{first}/resend"), &[]).await;
    assert!(res.status().is_redirection() || res.status().is_success());
    assert_eq!(deliveries(&app, &endpoint).len(), 3, "once delivered, it may be resent again");
}
crate::both_private!(resending_a_message_that_waits_already_queues_nothing_more);

/// One team's backlog cannot hold another team's deliveries back: with the
/// most endpoints a team may have, each with a delivery due (older), the
/// next pass still serves the other team's endpoint, and the busy team gets
/// only its share of the pass.
async fn one_teams_backlog_never_holds_back_another_teams_deliveries(app: TestApp) {
    app.owner_session().await;
    let busy = Receiver::start().await;
    for i in 0..20 {
        add_endpoint(&app, &busy.url(&format!("/busy-{i}")), &["api_key.created"]).await;
    }
    create_key(&app, json!({"name": "flood", "scopes": ["templates:read"]})).await;
    // Another team, with one endpoint, whose event comes after all of those.
    let other = other_team_owner(&app).await;
    let quiet = Receiver::start().await;
    add_endpoint(&other, &quiet.url("/quiet"), &["api_key.created"]).await;
    create_key(&other, json!({"name": "mine", "scopes": ["templates:read"]})).await;

    app.deliver_webhooks().await;
    assert_eq!(quiet.requests().len(), 1, "the other team is served in the first pass");
    let served = busy.requests().len();
    assert!(served > 0 && served <= 4, "the busy team had {served} endpoints in one pass");
    crate::webhooks::deliver_all(&app).await;
    assert_eq!(busy.wait_for(20).await.len(), 20, "and its backlog still goes out, none lost");
}
crate::both_private!(one_teams_backlog_never_holds_back_another_teams_deliveries);

/// Resends sent at the same moment (several tabs, several managers) queue
/// the message once: the check and the queueing cannot interleave.
async fn resends_at_the_same_moment_queue_the_message_once(app: TestApp) {
    let (rx, endpoint, first) = one_delivered_message(&app).await;
    let page = format!("{PAGE}/{endpoint}");
    let csrf = crate::helpers::csrf_from(&app.get_html(&page).await);
    let path = app.url(&format!("{page}/deliveries/{first}/resend"));
    for round in 0..3 {
        let burst = (0..8).map(|_| app.client.post(&path).form(&[("csrf_token", csrf.as_str())]).send());
        for res in futures_util::future::join_all(burst).await {
            let status = res.unwrap().status();
            assert!(status.is_redirection() || status.is_success(), "{status}");
        }
        assert_eq!(deliveries(&app, &endpoint).len(), 2 + round, "round {round}: one resend waits, not eight");
        crate::webhooks::deliver_all(&app).await;
    }
    assert_eq!(rx.wait_for(4).await.len(), 4);
}
crate::both_private!(resends_at_the_same_moment_queue_the_message_once);

/// Several teams' backlogs together cannot hold another team back either:
/// every team with a delivery due gets a slot in a pass before any team gets
/// a second, so more teams than a pass has slots for, with their most
/// overdue deliveries, still leave the newest team its turn at once.
async fn several_teams_backlogs_never_hold_back_another_teams_deliveries(app: TestApp) {
    app.owner_session().await;
    let busy = Receiver::start().await;
    for t in 0..9 {
        let team = team_owner(&app, &format!("Busy{t}")).await;
        for i in 0..4 {
            add_endpoint(&team, &busy.url(&format!("/t{t}-{i}")), &["api_key.created"]).await;
        }
        create_key(&team, json!({"name": "flood", "scopes": ["templates:read"]})).await;
    }
    app.clock().advance(1);
    let quiet = Receiver::start().await;
    add_endpoint(&app, &quiet.url("/quiet"), &["api_key.created"]).await;
    create_key(&app, json!({"name": "mine", "scopes": ["templates:read"]})).await;

    app.deliver_webhooks().await;
    assert_eq!(quiet.requests().len(), 1, "the newest team is served in the first pass");
    crate::webhooks::deliver_all(&app).await;
    assert_eq!(busy.wait_for(36).await.len(), 36, "every busy team's deliveries still go out");
}
crate::both_private!(several_teams_backlogs_never_hold_back_another_teams_deliveries);
