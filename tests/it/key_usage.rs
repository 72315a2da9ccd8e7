//! A key's usage read back: every request counted exactly once by outcome
//! (JSON, CSV and the key page agree), the addresses and user agents seen
//! (from trusted proxies only), the scopes exercised, across two instances
//! sharing Redis, and the key page's chart at a laptop and a phone.

use diesel::connection::SimpleConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, call, create_key};
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, spawn_app_with, spawn_instances};
use crate::{both, both_with};

pub const KEYS: &str = "/settings/developer/api-keys";
const UNLIMITED: (&str, &str) = ("LATCHKEY_DEFAULT_PLAN", "unlimited");
const BEHIND_A_PROXY: (&str, &str) = ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1");
/// The outcomes, in the order of the API's day objects and the CSV's columns.
pub const OUTCOMES: [&str; 7] =
    ["ok", "scope_denied", "address_denied", "rate_limited", "expired", "revoked", "disabled"];

/// `GET /api/v1/api-keys/{id}/usage{query}` as the signed-in member.
pub async fn usage(app: &TestApp, id: &str, query: &str) -> (StatusCode, Value) {
    let res = app.get(&format!("/api/v1/api-keys/{id}/usage{query}")).await;
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// The report's `data`, which must be there.
pub async fn report(app: &TestApp, id: &str) -> Value {
    let (status, body) = usage(app, id, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

/// The service clock's day, as the API writes it.
pub fn today(app: &TestApp) -> String {
    latchkey::web::format::day(app.clock().now().div_euclid(86_400))
}

/// A day's counts in [`OUTCOMES`] order, and its total.
fn counts(day: &Value) -> (Vec<i64>, i64) {
    (OUTCOMES.iter().map(|o| day[o].as_i64().unwrap()).collect(), day["total"].as_i64().unwrap())
}

/// Asserts that `id` was used exactly as `expected` (by outcome), on the
/// last day or two (a script may run over midnight), each day's total the
/// sum of its outcomes; returns the report.
async fn counted(app: &TestApp, id: &str, expected: [i64; 7]) -> Value {
    let data = report(app, id).await;
    let days = data["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let mut sum = vec![0; 7];
    for (i, day) in days.iter().enumerate() {
        let (got, total) = counts(day);
        assert_eq!(total, got.iter().sum::<i64>(), "the total of {}", day["date"]);
        assert!(i >= 28 || total == 0, "{} of {id} is empty", day["date"]);
        sum.iter_mut().zip(&got).for_each(|(s, g)| *s += g);
    }
    assert_eq!(sum, expected, "{id}");
    data
}

/// Runs SQL on the test's database.
pub fn sql(app: &TestApp, statements: &str) {
    let statements = statements.to_owned();
    app.db().run_sync(move |c| c.batch_execute(&statements).map_err(latchkey::store::StoreError::from)).unwrap();
}

/// Pauses a key the way `PATCH {"disabled": true}` will, then forgets the cache.
pub fn disable(app: &TestApp, id: &str) {
    sql(app, &format!("UPDATE api_keys SET disabled_at = {} WHERE id = '{id}'", app.clock().now()));
    app.forget_cached_credentials();
}

/// A request with a key and a user agent, optionally through the (trusted) proxy.
pub async fn call_as(app: &TestApp, path: &str, key: &str, agent: &str, forwarded: Option<&str>) -> StatusCode {
    let mut req = app.other_client().client.get(app.url(path)).header("X-API-Key", key).header("User-Agent", agent);
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    req.send().await.unwrap().status()
}

/// A new key's id and secret.
pub async fn new_key(app: &TestApp, body: Value) -> (String, String) {
    let key = create_key(app, body).await;
    (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned())
}

async fn times(app: &TestApp, n: usize, path: &str, key: &str, status: StatusCode) {
    for _ in 0..n {
        assert_eq!(call(app, path, key).await.status(), status, "{path}");
    }
}

/// The CSV of `id` through the key page's link, the API's `format=csv` and
/// its `Accept: text/csv`: the same body each time; returns it.
async fn csv(app: &TestApp, id: &str, prefix: &str, query: &str) -> String {
    let page = app.get(&format!("{KEYS}/{id}/usage.csv{query}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = page.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with(&format!("attachment; filename=\"{prefix}-usage-")), "{disposition}");
    assert!(disposition.ends_with(".csv\""), "{disposition}");
    let body = page.text().await.unwrap();
    let sep = if query.is_empty() { "?" } else { "&" };
    let api = app.get(&format!("/api/v1/api-keys/{id}/usage{query}{sep}format=csv")).await;
    assert_eq!(api.headers()["content-disposition"].to_str().unwrap(), disposition);
    assert_eq!(api.text().await.unwrap(), body);
    let accept = app.client.get(app.url(&format!("/api/v1/api-keys/{id}/usage{query}"))).header("Accept", "text/csv");
    assert_eq!(accept.send().await.unwrap().text().await.unwrap(), body);
    body
}

/// The CSV a report's days make (what the download must be).
fn csv_of(data: &Value) -> String {
    let mut out = format!("date,{},total\n", OUTCOMES.join(","));
    for day in data["days"].as_array().unwrap() {
        let (c, total) = counts(day);
        let cells: Vec<String> = c.iter().map(ToString::to_string).collect();
        out.push_str(&format!("\"{}\",{},{total}\n", day["date"].as_str().unwrap(), cells.join(",")));
    }
    out
}

/// A key's display prefix (`lk_a1b2c3d4`).
async fn prefix_of(app: &TestApp, id: &str) -> String {
    let key: Value = app.get(&format!("/api/v1/api-keys/{id}")).await.json().await.unwrap();
    key["data"]["prefix"].as_str().unwrap().to_owned()
}

fn exercised(data: &Value) -> Vec<String> {
    data["scopes"]["exercised"].as_array().unwrap().iter().map(|s| s["scope"].as_str().unwrap().to_owned()).collect()
}

/// The scripted mix: each key meets the outcomes it is there for; then the
/// days, totals, CSV rows and exercised scopes say exactly that.
async fn every_outcome_is_counted_exactly_once(app: TestApp) {
    app.owner_session().await;
    let (a, a_key) = new_key(&app, json!({"name": "worker", "scopes": ["api_keys:read", "products:write"]})).await;
    let (b, b_key) = new_key(&app, json!({"name": "narrow", "scopes": ["templates:read"]})).await;
    let (c, c_key) =
        new_key(&app, json!({"name": "office", "scopes": ["templates:read"], "allowed_ips": ["10.0.0.0/8"]})).await;
    let expires = latchkey::web::format::rfc3339(app.clock().now() + 30 * 60);
    let (d, d_key) = new_key(&app, json!({"name": "short", "scopes": ["templates:read"], "expires_at": expires})).await;
    let (e, e_key) = new_key(&app, json!({"name": "revoked", "scopes": ["templates:read"]})).await;
    let (f, f_key) = new_key(&app, json!({"name": "paused", "scopes": ["templates:read"]})).await;
    let (g, g_key) = new_key(&app, json!({"name": "busy", "scopes": ["templates:read"]})).await;

    times(&app, 3, "/api/v1/auth/test", &a_key, StatusCode::OK).await;
    times(&app, 1, "/api/v1/api-keys", &a_key, StatusCode::OK).await;
    times(&app, 1, "/auth/verify?scope=products:write", &a_key, StatusCode::OK).await;
    times(&app, 1, "/auth/verify?scope=contacts:read", &a_key, StatusCode::FORBIDDEN).await;
    times(&app, 1, "/api/v1/auth/test", &b_key, StatusCode::OK).await;
    times(&app, 1, "/api/v1/api-keys", &b_key, StatusCode::FORBIDDEN).await;
    times(&app, 1, "/auth/verify?scope=products:write", &b_key, StatusCode::FORBIDDEN).await;
    times(&app, 2, "/api/v1/auth/test", &c_key, StatusCode::FORBIDDEN).await;
    times(&app, 1, "/api/v1/auth/test", &e_key, StatusCode::OK).await;
    assert_eq!(api_delete(&app, &format!("/api/v1/api-keys/{e}")).await.status(), StatusCode::OK);
    times(&app, 2, "/api/v1/auth/test", &e_key, StatusCode::UNAUTHORIZED).await;
    times(&app, 1, "/api/v1/auth/test", &f_key, StatusCode::OK).await;
    disable(&app, &f);
    times(&app, 3, "/api/v1/auth/test", &f_key, StatusCode::UNAUTHORIZED).await;
    times(&app, 1, "/api/v1/auth/test", &d_key, StatusCode::OK).await;
    app.clock().advance(45 * 60);
    times(&app, 2, "/api/v1/auth/test", &d_key, StatusCode::UNAUTHORIZED).await;
    // A tiny plan for the team (its burst window is clear: 45 minutes passed).
    app.db().run_sync(|c| latchkey::service::accounts::set_plan(c, "Acme", "free")).unwrap();
    app.forget_cached_credentials();
    times(&app, 10, "/api/v1/auth/test", &g_key, StatusCode::OK).await;
    times(&app, 2, "/api/v1/auth/test", &g_key, StatusCode::TOO_MANY_REQUESTS).await;
    app.flush_usage().await;

    let a_data = counted(&app, &a, [5, 1, 0, 0, 0, 0, 0]).await;
    let b_data = counted(&app, &b, [1, 2, 0, 0, 0, 0, 0]).await;
    counted(&app, &c, [0, 0, 2, 0, 0, 0, 0]).await;
    counted(&app, &d, [1, 0, 0, 0, 2, 0, 0]).await;
    counted(&app, &e, [1, 0, 0, 0, 0, 2, 0]).await;
    counted(&app, &f, [1, 0, 0, 0, 0, 0, 3]).await;
    let g_data = counted(&app, &g, [10, 0, 0, 2, 0, 0, 0]).await;
    // A second flush writes nothing twice.
    app.flush_usage().await;
    counted(&app, &a, [5, 1, 0, 0, 0, 0, 0]).await;

    assert_eq!(exercised(&a_data), ["api_keys:read", "products:write"], "what its routes required");
    assert!(exercised(&b_data).is_empty() && exercised(&g_data).is_empty(), "refused scopes are not exercised");
    assert_eq!(a_data["key_id"], a.as_str());
    assert_eq!(a_data["to"], today(&app).as_str());
    assert_eq!(a_data["days"][0]["date"], a_data["from"]);
    assert_eq!(a_data["scopes"]["unused"], Value::Null, "not judged before 14 days of use");
    assert_eq!(a_data["scopes"]["observed_days"], Value::Null);
    let used = &a_data["scopes"]["exercised"][0];
    assert!(used["first_used"].as_str().unwrap().ends_with('Z') && used["last_used"].is_string(), "{used}");

    // The CSV says the same, row by row, whichever way it is asked for.
    let body = csv(&app, &a, &prefix_of(&app, &a).await, "").await;
    assert_eq!(body, csv_of(&a_data));
    assert_eq!(body.lines().count(), 31, "a header and one row per day");
    let one_day = format!("?from={0}&to={0}", today(&app));
    let g_csv = csv(&app, &g, &prefix_of(&app, &g).await, &one_day).await;
    assert_eq!(g_csv, format!("date,{},total\n\"{}\",10,0,0,2,0,0,0,12\n", OUTCOMES.join(","), today(&app)));

    // The key page charts it: stacked by outcome, with a legend and the numbers.
    let page = app.get_html(&format!("{KEYS}/{a}")).await;
    assert!(page.contains("6 requests in all, 1 of them refused; busiest day 6."), "{page}");
    assert!(page.contains(r#"class="o-ok""#) && page.contains(r#"class="o-scope_denied""#));
    let legend = &page[page.find(r#"id="usage-legend""#).unwrap()..];
    assert!(legend.starts_with(r#"id="usage-legend"><li><span class="swatch o-ok""#), "{legend}");
    assert!(legend.contains("Missing scope <strong>1</strong>"));
    assert!(page.contains(&format!(r#"href="{KEYS}/{a}/usage.csv""#)));
    let scopes = &page[page.find(r#"id="exercised-scopes""#).unwrap()..];
    assert!(scopes.contains("<code>api_keys:read</code> · last used <time"), "{scopes}");
}
both_with!(every_outcome_is_counted_exactly_once, &[super::UNLIMITED]);

/// Behind a trusted proxy the forwarded client address is recorded (an
/// IPv4-mapped IPv6 address is the same address); the last ten user agents
/// are kept; a hostile one is text on the key page and on support's.
async fn addresses_come_from_trusted_proxies_and_agents_are_the_last_ten(app: TestApp) {
    app.owner_session().await;
    let (id, key) = new_key(&app, json!({"name": "proxied", "scopes": ["templates:read"]})).await;
    let test = "/api/v1/auth/test";
    for forwarded in ["203.0.113.7", "::ffff:203.0.113.7", "198.51.100.1, 203.0.113.7"] {
        assert_eq!(call_as(&app, test, &key, "curl/8.5.0", Some(forwarded)).await, StatusCode::OK);
    }
    for i in 0..12 {
        app.clock().advance(1);
        assert_eq!(call_as(&app, test, &key, &format!("agent-{i:02}/1.0"), None).await, StatusCode::OK);
        if i == 5 {
            app.flush_usage().await;
        }
    }
    app.clock().advance(1);
    let hostile = "<script>alert(1)</script>";
    assert_eq!(call_as(&app, test, &key, hostile, Some("=1+2")).await, StatusCode::OK);
    app.flush_usage().await;

    let data = report(&app, &id).await;
    let addresses: Vec<(&str, i64)> = data["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["address"].as_str().unwrap(), a["requests"].as_i64().unwrap()))
        .collect();
    assert_eq!(addresses, [("127.0.0.1", 12), ("203.0.113.7", 3)], "a garbled header records no address");
    let agents: Vec<&str> =
        data["user_agents"].as_array().unwrap().iter().map(|a| a["user_agent"].as_str().unwrap()).collect();
    let mut want = vec![hostile.to_owned()];
    want.extend((3..12).rev().map(|i| format!("agent-{i:02}/1.0")));
    assert_eq!(agents, want, "the ten seen last, latest first");
    assert_eq!(data["days"].as_array().unwrap().iter().map(|d| d["ok"].as_i64().unwrap()).sum::<i64>(), 16);

    let owner_page = app.get_html(&format!("{KEYS}/{id}")).await;
    let staff = crate::support::support_user(&app).await;
    let support_page = staff.get_html(&format!("/support/keys/{id}")).await;
    for page in [&owner_page, &support_page] {
        assert!(!page.contains("<script>alert(1)"), "a user agent is never markup");
        let escaped = ["&lt;script&gt;alert(1)", "&#60;script&#62;alert(1)"];
        assert!(escaped.iter().any(|e| page.contains(e)), "it is shown as text");
        let clients = &page[page.find(r#"id="key-addresses""#).unwrap()..];
        assert!(clients.contains("<code class=\"seen-value\">203.0.113.7</code>"));
        assert!(page.contains(r#"id="key-agents""#) && page.contains("agent-11/1.0"));
    }
    assert!(!support_page.contains("usage.csv"), "support reads, it downloads nothing");
}

both_with!(addresses_come_from_trusted_proxies_and_agents_are_the_last_ten, &[super::UNLIMITED, super::BEHIND_A_PROXY]);

/// Without a trusted proxy, `X-Forwarded-For` is the client's own claim:
/// ignored, the peer's address is recorded.
async fn an_untrusted_forwarded_header_is_ignored(app: TestApp) {
    app.owner_session().await;
    let (id, key) = new_key(&app, json!({"name": "direct", "scopes": ["templates:read"]})).await;
    for forwarded in ["203.0.113.7", "::ffff:203.0.113.7"] {
        assert_eq!(call_as(&app, "/api/v1/auth/test", &key, "curl/8", Some(forwarded)).await, StatusCode::OK);
    }
    app.flush_usage().await;
    let data = report(&app, &id).await;
    let addresses: Vec<&str> =
        data["addresses"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["127.0.0.1"]);
    assert_eq!(data["addresses"][0]["requests"], 2);
}
both!(an_untrusted_forwarded_header_is_ignored);

/// Two instances hand their usage to Redis; one move writes it: outcomes,
/// addresses, user agents and exercised scopes arrive once, exactly.
#[tokio::test]
async fn two_instances_hand_over_outcomes_addresses_and_scopes_exactly_once() {
    let hourly = ("LATCHKEY_USAGE_FLUSH_SECONDS", "3600");
    let Some(apps) = spawn_instances(2, &[UNLIMITED, hourly, BEHIND_A_PROXY]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (id, key) = new_key(a, json!({"name": "shared", "scopes": ["api_keys:read"]})).await;
    a.flush_usage().await;
    for _ in 0..3 {
        assert_eq!(call_as(a, "/api/v1/auth/test", &key, "instance-a/1", Some("203.0.113.7")).await, StatusCode::OK);
    }
    assert_eq!(call_as(b, "/api/v1/api-keys", &key, "instance-b/1", Some("198.51.100.9")).await, StatusCode::OK);
    for _ in 0..2 {
        let status = call_as(b, "/auth/verify?scope=contacts:read", &key, "instance-b/1", Some("198.51.100.9")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    a.usage_flusher().tick().await.unwrap();
    b.usage_flusher().tick().await.unwrap();
    assert_eq!(report(a, &id).await["days"][29]["total"], 0, "handed to Redis, not yet moved");
    b.flush_usage().await;
    for round in 0..2 {
        let data = counted(a, &id, [4, 2, 0, 0, 0, 0, 0]).await;
        let mut addresses: Vec<(String, i64)> = data["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["address"].as_str().unwrap().to_owned(), x["requests"].as_i64().unwrap()))
            .collect();
        addresses.sort();
        assert_eq!(addresses, [("198.51.100.9".to_owned(), 3), ("203.0.113.7".to_owned(), 3)], "round {round}");
        let mut agents: Vec<&str> =
            data["user_agents"].as_array().unwrap().iter().map(|x| x["user_agent"].as_str().unwrap()).collect();
        agents.sort_unstable();
        assert_eq!(agents, ["instance-a/1", "instance-b/1"]);
        assert_eq!(exercised(&data), ["api_keys:read"]);
        a.flush_usage().await;
        b.flush_usage().await;
    }
}

/// The key page with every kind of refusal, a long user agent and an IPv6
/// address fits a laptop and a phone and passes axe, numbers table open.
#[tokio::test]
async fn the_usage_cards_fit_a_laptop_and_a_phone() {
    use crate::webdriver::{Browser, LAPTOP, PHONE};
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app_with(Backend::Sqlite, &[UNLIMITED, BEHIND_A_PROXY]).await.unwrap();
    app.owner_session().await;
    let (id, key) = new_key(&app, json!({"name": "mixed", "scopes": ["api_keys:read", "templates:read"]})).await;
    let id_for_sql = id.clone();
    let long_agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/131.0.0.0 Safari/537.36 BillingReconciliationWorker/2.4.1";
    let v6 = "2001:db8:85a3:1234:5678:8a2e:370:7334";
    for (path, status) in [
        ("/api/v1/auth/test", StatusCode::OK),
        ("/api/v1/api-keys", StatusCode::OK),
        ("/auth/verify?scope=products:write", StatusCode::FORBIDDEN),
        ("/auth/verify?scope=templates:read", StatusCode::OK),
    ] {
        assert_eq!(call_as(&app, path, &key, long_agent, Some(v6)).await, status);
    }
    times(&app, 2, "/api/v1/auth/test", &key, StatusCode::OK).await;
    disable(&app, &id);
    times(&app, 1, "/api/v1/auth/test", &key, StatusCode::UNAUTHORIZED).await;
    app.flush_usage().await;
    // Earlier days, as a month of use leaves them.
    let today = app.clock().now().div_euclid(86_400);
    app.db()
        .run_sync(move |c| {
            for (ago, counts) in [(1, [40, 3, 0, 0, 0, 0, 0]), (4, [12, 0, 5, 9, 0, 0, 0]), (17, [2, 0, 0, 0, 1, 1, 0])]
            {
                latchkey::store::models::UsageDay::add(c, &id_for_sql, today - ago, &counts)?;
            }
            Ok::<_, latchkey::store::StoreError>(())
        })
        .unwrap();

    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    for (size, name) in [(LAPTOP, "key-usage-laptop"), (PHONE, "key-usage-phone")] {
        browser.resize(size).await;
        browser.goto(&app.url(&format!("{KEYS}/{id}"))).await;
        browser.wait_for("#usage-chart").await;
        browser.click("#usage-numbers summary").await;
        browser.wait_for("#usage-table").await;
        assert!(browser.text("#usage-legend").await.contains("Disabled"));
        assert!(browser.text("#key-addresses").await.contains(v6));
        browser.check_page(name).await;
    }
    browser.quit().await;
}
