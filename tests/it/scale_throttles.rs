//! Sign-in throttles across instances: failed passwords and TOTP codes for an
//! account, and failures from an address, are counted in Redis, so N
//! instances lock an account after the same 5 failures as one; concurrent
//! guesses spread over the instances cannot race past the limit; and an
//! instance that cannot reach Redis still throttles on its own, and shares
//! its count again once Redis answers.

use futures_util::future::join_all;
use reqwest::{Client, StatusCode};

use crate::helpers::{
    Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, csrf_from, fresh_postgres, location, login_failures, serve,
    spawn_app_with, spawn_instances,
};
use crate::totp::enrol_at;

const WRONG: &str = "wrong password!!";

/// The instance that takes attempt `i` (alternating).
fn pick(apps: &[TestApp], i: usize) -> &TestApp {
    &apps[i % apps.len()]
}

async fn assert_locked(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    assert!(res.text().await.unwrap().contains("Too many failed attempts. Try again in"));
}

/// POSTs a form to `on` (any instance) with `client`'s cookies, taking the
/// CSRF token from `page` on that instance.
async fn post_on(client: &Client, on: &TestApp, page: &str, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let html = client.get(on.url(page)).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_from(&html);
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf_token", &csrf));
    client.post(on.url(path)).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn failed_passwords_on_either_instance_lock_the_account_on_both() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    apps[0].setup_owner().await;
    for i in 0..5 {
        assert_eq!(pick(&apps, i).login(OWNER_EMAIL, WRONG).await.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for app in &apps {
        assert_locked(app.login(OWNER_EMAIL, WRONG).await).await;
        assert_locked(app.login(OWNER_EMAIL, OWNER_PASSWORD).await).await;
        assert_eq!(app.get("/settings/team").await.status(), StatusCode::SEE_OTHER, "not signed in");
    }
    assert_eq!(login_failures(&apps[0]), 5, "only the checked attempts were audited");
}

#[tokio::test]
async fn failures_from_one_address_are_counted_over_both_instances() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    apps[0].setup_owner().await;
    // 30 per address in 15 minutes: each of these accounts fails once.
    for i in 0..30 {
        let res = pick(&apps, i).login(&format!("nobody{i}@acme.test"), "guess").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for app in &apps {
        assert_locked(app.login(OWNER_EMAIL, OWNER_PASSWORD).await).await;
    }
}

#[tokio::test]
async fn concurrent_guesses_over_two_instances_are_checked_exactly_five_times() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    apps[0].setup_owner().await;
    // 20 browsers, each with its own session and CSRF token, half on each instance.
    let mut browsers = Vec::new();
    for i in 0..20 {
        let b = pick(&apps, i).other_client();
        let csrf = csrf_from(&b.get_html("/login").await);
        browsers.push((b, csrf));
    }
    let guesses = browsers.iter().map(|(b, csrf)| {
        let form = [("email", OWNER_EMAIL), ("password", WRONG), ("csrf_token", csrf.as_str())];
        b.client.post(b.url("/login")).form(&form).send()
    });
    let statuses: Vec<StatusCode> = join_all(guesses).await.into_iter().map(|r| r.unwrap().status()).collect();
    let count = |s| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(count(StatusCode::UNAUTHORIZED), 5, "{statuses:?}");
    assert_eq!(count(StatusCode::TOO_MANY_REQUESTS), 15, "{statuses:?}");
    assert_eq!(login_failures(&apps[0]), 5, "exactly five passwords were checked and audited");
    for app in &apps {
        assert_locked(app.login(OWNER_EMAIL, OWNER_PASSWORD).await).await;
    }
}

#[tokio::test]
async fn wrong_totp_codes_on_either_instance_lock_the_second_step_on_both() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    enrol_at(a, OWNER_PASSWORD, 0).await;
    a.post_form("/settings/team", "/logout", &[]).await;
    let res = a.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(location(&res), "/login/totp");
    // One browser (its session is in the shared database) sends its codes to
    // either instance.
    for i in 0..5 {
        let res = post_on(&a.client, pick(&apps, i), "/login/totp", "/login/totp", &[("code", "000000")]).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "code {i}");
    }
    for on in [a, b] {
        let res = post_on(&a.client, on, "/login/totp", "/login/totp", &[("code", "000000")]).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(a.get("/settings/team").await.status(), StatusCode::SEE_OTHER, "not signed in");
}

/// A Redis URL on which nothing listens.
fn closed_redis_url() -> String {
    format!("redis://127.0.0.1:{}/0", crate::helpers::free_port())
}

async fn without_redis_an_instance_still_throttles_on_its_own(backend: Backend) {
    let url = closed_redis_url();
    let Some(app) = spawn_app_with(backend, &[("REDIS_URL", url.as_str())]).await else { return };
    app.owner_session().await;
    app.post_form("/settings/team", "/logout", &[]).await;
    for i in 0..5 {
        assert_eq!(app.login(OWNER_EMAIL, WRONG).await.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    assert_locked(app.login(OWNER_EMAIL, OWNER_PASSWORD).await).await;
    // Another account is not locked.
    assert_eq!(app.login("nobody@acme.test", "guess").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_redis_an_instance_still_throttles_on_its_own_sqlite() {
    without_redis_an_instance_still_throttles_on_its_own(Backend::Sqlite).await;
}

#[tokio::test]
async fn without_redis_an_instance_still_throttles_on_its_own_postgres() {
    without_redis_an_instance_still_throttles_on_its_own(Backend::Postgres).await;
}

#[tokio::test]
async fn instances_count_alone_while_redis_is_down_and_share_again_when_it_answers() {
    let Some(database_url) = fresh_postgres() else { return };
    // A private Redis, down when the instances start.
    let Some(mut redis) = crate::helpers::PrivateRedis::start().await else { return };
    redis.kill();
    let url = redis.url();
    let settings = [("REDIS_URL", url.as_str()), ("LATCHKEY_REDIS_PREFIX", "latchkey-outage:")];
    let mut apps = Vec::new();
    for _ in 0..2 {
        let dir =
            std::env::temp_dir().join(format!("latchkey-test-{}", latchkey::service::crypto::new_id("t").unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        apps.push(serve(&dir, &database_url, &settings).await);
    }
    let (a, b) = (&apps[0], &apps[1]);
    a.setup_owner().await;

    // Redis down: A locks the account after its own five failures; B, which
    // saw none of them, still checks the password.
    for i in 0..5 {
        assert_eq!(a.login(OWNER_EMAIL, WRONG).await.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    assert_locked(a.login(OWNER_EMAIL, OWNER_PASSWORD).await).await;
    assert_eq!(b.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    b.post_form("/settings/team", "/logout", &[]).await;

    // Redis comes up: once each instance hears it answer, they share one
    // count again (no restart).
    assert!(redis.restart().await);
    for app in &apps {
        let mut tries = 0;
        while app.redis().ping().await.is_err() {
            tries += 1;
            assert!(tries < 100, "the private Redis did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let ghost = "ghost@acme.test";
    for i in 0..5 {
        assert_eq!(pick(&apps, i).login(ghost, WRONG).await.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for app in &apps {
        assert_locked(app.login(ghost, WRONG).await).await;
    }
}
