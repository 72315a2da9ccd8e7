//! Limits and throttles: concurrent guesses cannot race past a throttle, a
//! team's plan counts all its credentials together and minting a credential
//! buys no allowance, token issuance is limited per client, and anonymous
//! floods add only a bounded number of audit rows (written off the request
//! path for refused revoked credentials).

use futures_util::future::join_all;
use oauth2::{CsrfToken, PkceCodeChallenge, Scope};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::create_key;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp, csrf_from, location, new_client};
use crate::oauth::{REDIRECT, authorize, client, register};
use crate::totp::{code_at_step, current_step, enrol_at};
use crate::{both, both_with};

/// Flushes every second; believes `X-Forwarded-For` from the test itself.
const FLUSHING_BEHIND_A_PROXY: &[(&str, &str)] =
    &[("LATCHKEY_USAGE_FLUSH_SECONDS", "1"), ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1")];

fn audit_rows(app: &TestApp, action: &str) -> Vec<latchkey::store::models::AuditEvent> {
    let action = action.to_owned();
    app.db()
        .run_sync(move |c| {
            latchkey::store::models::AuditEvent::recent_by_action(c, &action, 10_000)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
}

/// A fresh browser with the login page's CSRF token.
async fn login_browser(app: &TestApp) -> (TestApp, String) {
    let b = app.other_client();
    let csrf = csrf_from(&b.get_html("/login").await);
    (b, csrf)
}

fn count(statuses: &[StatusCode], s: StatusCode) -> usize {
    statuses.iter().filter(|&&x| x == s).count()
}

async fn concurrent_wrong_passwords_are_checked_at_most_five_times(app: TestApp) {
    app.setup_owner().await;
    // Variant 1: one account, 20 guesses at once, each from its own session.
    let mut browsers = Vec::new();
    for _ in 0..20 {
        browsers.push(login_browser(&app).await);
    }
    let guesses = browsers.iter().map(|(b, csrf)| {
        let form = [("email", OWNER_EMAIL), ("password", "wrong guess"), ("csrf_token", csrf.as_str())];
        b.client.post(b.url("/login")).form(&form).send()
    });
    let statuses: Vec<StatusCode> = join_all(guesses).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 5, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 15, "{statuses:?}");
    let failed = audit_rows(&app, "login.failed");
    assert_eq!(failed.len(), 5, "only the checked attempts were audited");
    // The right password is refused too while the account is locked.
    assert_eq!(app.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // Variant 2: one address spraying 40 different (unknown) accounts at once.
    let mut browsers = Vec::new();
    for _ in 0..40 {
        browsers.push(login_browser(&app).await);
    }
    let emails: Vec<String> = (0..40).map(|i| format!("nobody{i}@acme.test")).collect();
    let guesses = browsers.iter().zip(&emails).map(|((b, csrf), email)| {
        let form = [("email", email.as_str()), ("password", "guess"), ("csrf_token", csrf.as_str())];
        b.client.post(b.url("/login")).form(&form).send()
    });
    let statuses: Vec<StatusCode> = join_all(guesses).await.into_iter().map(|r| r.unwrap().status()).collect();
    // 30 per address in 15 minutes, 5 already spent on the owner above.
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 25, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 15, "{statuses:?}");
    let unknown = audit_rows(&app, "login.failed").len() - failed.len();
    assert!(unknown <= 1, "failures for unknown accounts are summarised, not one row each: {unknown}");
}
both!(concurrent_wrong_passwords_are_checked_at_most_five_times);

async fn rotating_addresses_inside_one_ipv6_64_share_one_throttle(app: TestApp) {
    app.setup_owner().await;
    let mut browsers = Vec::new();
    for _ in 0..40 {
        browsers.push(login_browser(&app).await);
    }
    let emails: Vec<String> = (0..40).map(|i| format!("nobody{i}@acme.test")).collect();
    // Every guess from another address of the same /64.
    let guesses = browsers.iter().zip(&emails).enumerate().map(|(i, ((b, csrf), email))| {
        let form = [("email", email.as_str()), ("password", "guess"), ("csrf_token", csrf.as_str())];
        let from = format!("2001:db8:aa:bb:{:x}:{:x}::1", i * 7919 % 65_536, i);
        b.client.post(b.url("/login")).header("X-Forwarded-For", from).form(&form).send()
    });
    let statuses: Vec<StatusCode> = join_all(guesses).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 30, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 10, "{statuses:?}");
    // Another /64 is another client.
    let (b, csrf) = login_browser(&app).await;
    let form = [("email", "someone@acme.test"), ("password", "guess"), ("csrf_token", csrf.as_str())];
    let other = b.client.post(b.url("/login")).header("X-Forwarded-For", "2001:db8:aa:bc::1").form(&form).send();
    assert_eq!(other.await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
both_with!(rotating_addresses_inside_one_ipv6_64_share_one_throttle, super::FLUSHING_BEHIND_A_PROXY);

/// Signs in with the password in a fresh browser; returns it at the TOTP step.
async fn at_totp_step(app: &TestApp) -> (TestApp, String) {
    let (b, _) = login_browser(app).await;
    let res = b.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(location(&res), "/login/totp");
    let csrf = csrf_from(&b.get_html("/login/totp").await);
    (b, csrf)
}

async fn concurrent_wrong_totp_codes_are_checked_at_most_five_times(app: TestApp) {
    app.owner_session().await;
    let (key, _) = enrol_at(&app, crate::helpers::OWNER_PASSWORD, 0).await;
    let mut browsers = Vec::new();
    for _ in 0..16 {
        browsers.push(at_totp_step(&app).await);
    }
    let right = code_at_step(&key, current_step());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let guesses = browsers.iter().map(|(b, csrf)| {
        b.client.post(b.url("/login/totp")).form(&[("code", wrong), ("csrf_token", csrf.as_str())]).send()
    });
    let statuses: Vec<StatusCode> = join_all(guesses).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 5, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 11, "{statuses:?}");
    assert_eq!(audit_rows(&app, "login.totp_failed").len(), 5);
}
both!(concurrent_wrong_totp_codes_are_checked_at_most_five_times);

async fn password_rechecks_on_the_security_page_are_throttled_together(app: TestApp) {
    app.owner_session().await;
    enrol_at(&app, crate::helpers::OWNER_PASSWORD, -1).await;
    let csrf = csrf_from(&app.get_html("/settings/security").await);
    // Every page that re-checks the password, guessed at once (6 each).
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/settings/security/password", vec![("current_password", "guess 1"), ("new_password", "a new password 123")]),
        ("/settings/security/recovery-codes", vec![("password", "guess 2")]),
        ("/settings/security/totp/disable", vec![("password", "guess 3"), ("code", "123456")]),
    ];
    let guesses = (0..6).flat_map(|_| forms.iter()).map(|(path, fields)| {
        let mut form = fields.clone();
        form.push(("csrf_token", csrf.as_str()));
        app.client.post(app.url(path)).form(&form).send()
    });
    let statuses: Vec<StatusCode> = join_all(guesses).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(count(&statuses, StatusCode::UNPROCESSABLE_ENTITY), 5, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 13, "{statuses:?}");
    // Locked: even the right password changes nothing now.
    let res = app.change_password(OWNER_PASSWORD, "a new password 123").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert!(audit_rows(&app, "password.changed").is_empty());
}
both!(password_rechecks_on_the_security_page_are_throttled_together);

async fn token_request(http: &reqwest::Client, app: &TestApp, id: &str, secret: &str) -> reqwest::Response {
    http.post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

async fn access_token(app: &TestApp, id: &str, secret: &str) -> String {
    let res = token_request(&new_client(), app, id, secret).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

async fn auth_test(app: &TestApp, credential: &str) -> reqwest::Response {
    new_client().get(app.url("/api/v1/auth/test")).bearer_auth(credential).send().await.unwrap()
}

async fn a_team_shares_one_allowance_and_new_tokens_buy_none(app: TestApp) {
    app.owner_session().await;
    app.db().run_sync(|c| latchkey::service::accounts::set_plan(c, "Acme", "free")).unwrap();
    let body = json!({"name": "one", "scopes": ["templates:read"]});
    let k1 = create_key(&app, body.clone()).await["key"].as_str().unwrap().to_owned();
    let k2 = create_key(&app, json!({"name": "two", "scopes": ["templates:read"]})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let oauth_app = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let secret = oauth_app.secret.clone().unwrap();
    let token = access_token(&app, &oauth_app.client_id, &secret).await;
    let creds = [k1.as_str(), k2.as_str(), token.as_str()];
    let mut admitted = 0;
    let mut remaining = Vec::new();
    for i in 0..30 {
        let res = auth_test(&app, creds[i % 3]).await;
        if res.status() == StatusCode::OK {
            admitted += 1;
            remaining.push(res.headers()["x-ratelimit-remaining"].to_str().unwrap().parse::<u64>().unwrap());
        } else {
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(res.headers()["x-ratelimit-limit"], "100", "the headers still tell the team's state");
        }
    }
    assert_eq!(admitted, 10, "the free plan's burst, across both keys and the token");
    assert_eq!(remaining, (90..100).rev().collect::<Vec<u64>>(), "one counter, counting down across credentials");
    // Variants: freshly minted tokens and a freshly created key get no allowance of their own.
    for _ in 0..3 {
        let fresh = access_token(&app, &oauth_app.client_id, &secret).await;
        assert_eq!(auth_test(&app, &fresh).await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let k3 = create_key(&app, json!({"name": "three", "scopes": ["templates:read"]})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth_test(&app, &k3).await.status(), StatusCode::TOO_MANY_REQUESTS);
    let verify = new_client().get(app.url("/auth/verify")).header("X-API-Key", &k3).send().await.unwrap();
    assert_eq!(verify.status(), StatusCode::TOO_MANY_REQUESTS);
}
both!(a_team_shares_one_allowance_and_new_tokens_buy_none);

async fn hammering_the_token_endpoint_is_refused_after_the_issuance_limit(app: TestApp) {
    app.owner_session().await;
    let oauth_app = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let secret = oauth_app.secret.clone().unwrap();
    let http = new_client();
    let calls = (0..70).map(|_| token_request(&http, &app, &oauth_app.client_id, &secret));
    let responses = join_all(calls).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    let limit = latchkey::service::ratelimit::TOKEN_ISSUANCE.per_minute as usize;
    assert_eq!(count(&statuses, StatusCode::OK), limit, "{statuses:?}");
    let refused = responses.into_iter().find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).unwrap();
    let retry: i64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "slow_down", "RFC 6749-style error: {body}");
    // Another app of the team has its own issuance allowance.
    let other = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    assert_eq!(
        token_request(&http, &app, &other.client_id, other.secret.as_deref().unwrap()).await.status(),
        StatusCode::OK
    );
}
both!(hammering_the_token_endpoint_is_refused_after_the_issuance_limit);

async fn failing_token_request(http: &reqwest::Client, app: &TestApp, form: &[(&str, &str)], from: &str) -> StatusCode {
    http.post(app.url("/oauth/token")).header("X-Forwarded-For", from).form(form).send().await.unwrap().status()
}

async fn anonymous_token_floods_add_only_a_handful_of_audit_rows(app: TestApp) {
    app.owner_session().await;
    let public = register(&app, "public", REDIRECT, &["templates:read"]).await;
    let http = new_client();
    let bogus = [("grant_type", "authorization_code"), ("client_id", &public.client_id), ("code", "guessed")];
    // Variant 1: 300 failures from one address, a few at a time: refused after 10.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.extend(join_all((0..10).map(|_| failing_token_request(&http, &app, &bogus, "198.51.100.7"))).await);
    }
    assert!(count(&statuses, StatusCode::BAD_REQUEST) <= 20, "checked, then refused: {statuses:?}");
    assert!(count(&statuses, StatusCode::TOO_MANY_REQUESTS) >= 280);
    // Variant 2: 300 failures, each from another address (and IPv6 /64).
    let addresses: Vec<String> = (0..300)
        .map(|i| if i % 2 == 0 { format!("203.0.{}.{}", i / 250, i % 250) } else { format!("2001:db8:{i:x}::1") })
        .collect();
    let flood = addresses.iter().map(|a| failing_token_request(&http, &app, &bogus, a));
    let statuses = join_all(flood).await;
    // Failing requests in flight hold the app's issuance allowance; most are checked.
    assert_eq!(count(&statuses, StatusCode::BAD_REQUEST) + count(&statuses, StatusCode::TOO_MANY_REQUESTS), 300);
    assert!(count(&statuses, StatusCode::BAD_REQUEST) > 60, "{statuses:?}");
    // Variant 3: a real code replayed from many addresses (each replay is a reuse).
    let c = client(&app, &public, REDIRECT);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = c
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("templates:read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let params = authorize(&app, url.as_str(), true).await;
    let code = params.iter().find(|(k, _)| k == "code").unwrap().1.clone();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", public.client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.secret().as_str()),
    ];
    assert_eq!(failing_token_request(&http, &app, &exchange, "192.0.2.1").await, StatusCode::OK);
    let replays = (0..50).map(|i| {
        let from = format!("192.0.2.{}", 10 + i);
        let http = &http;
        let exchange = &exchange;
        let app = &app;
        async move { failing_token_request(http, app, exchange, &from).await }
    });
    assert_eq!(count(&join_all(replays).await, StatusCode::BAD_REQUEST), 50);
    app.flush_usage().await;
    let failed = audit_rows(&app, "oauth.token_failed").len();
    let reused = audit_rows(&app, "oauth.code_reused").len();
    assert!(failed <= 2, "610 failed requests, {failed} oauth.token_failed rows");
    assert_eq!(reused, 1, "50 replays, one oauth.code_reused row (its summary follows the minute)");
    let team_log = app.get_html("/settings/team/audit").await;
    assert!(team_log.contains("oauth.token_failed"));
}
both_with!(anonymous_token_floods_add_only_a_handful_of_audit_rows, super::FLUSHING_BEHIND_A_PROXY);

async fn refused_revoked_credentials_are_audited_off_the_request_path_by_kind(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "gone", "scopes": ["templates:read"]})).await;
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    let res = crate::api_keys::api_delete(&app, &format!("/api/v1/api-keys/{id}")).await;
    assert!(res.status().is_success());
    let oauth_app = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let client_secret = oauth_app.secret.clone().unwrap();
    let token = access_token(&app, &oauth_app.client_id, &client_secret).await;
    let revoke = new_client()
        .post(app.url("/oauth/revoke"))
        .basic_auth(&oauth_app.client_id, Some(&client_secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    for _ in 0..25 {
        assert_eq!(auth_test(&app, &secret).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(auth_test(&app, &token).await.status(), StatusCode::UNAUTHORIZED);
        let verify = new_client().get(app.url("/auth/verify")).bearer_auth(&secret).send().await.unwrap();
        assert_eq!(verify.status(), StatusCode::UNAUTHORIZED);
    }
    app.flush_usage().await;
    let keys = audit_rows(&app, "api_key.refused_revoked");
    assert_eq!(keys.len(), 1, "50 refusals of the key, one row until the minute's summary");
    assert_eq!(keys[0].object_id.as_deref(), Some(id.as_str()));
    let tokens = audit_rows(&app, "oauth.token_refused_revoked");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].object_type.as_deref(), Some("oauth_app"));
    assert_eq!(tokens[0].object_id.as_deref(), Some(oauth_app.client_id.as_str()));
    assert!(keys.iter().chain(&tokens).all(|e| e.team_id.is_some()), "on the team's log");
    assert!(!keys.iter().any(|e| e.object_id.as_deref().is_some_and(|o| o.starts_with("tok"))), "a token is not a key");
}
both_with!(refused_revoked_credentials_are_audited_off_the_request_path_by_kind, super::FLUSHING_BEHIND_A_PROXY);

async fn one_address_cannot_use_up_a_clients_issuance_for_everyone(app: TestApp) {
    app.owner_session().await;
    let oauth_app = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let (id, secret) = (oauth_app.client_id.clone(), oauth_app.secret.clone().unwrap());
    let http = new_client();
    let from = |address: &'static str| {
        let (http, app, id, secret) = (&http, &app, &id, &secret);
        async move {
            let req =
                http.post(app.url("/oauth/token")).header("X-Forwarded-For", address).basic_auth(id, Some(secret));
            req.form(&[("grant_type", "client_credentials")]).send().await.unwrap().status()
        }
    };
    let limit = latchkey::service::ratelimit::TOKEN_ISSUANCE.per_minute as usize;
    let statuses = join_all((0..limit + 5).map(|_| from("198.51.100.1"))).await;
    assert_eq!(count(&statuses, StatusCode::OK), limit, "{statuses:?}");
    // Another caller of the same app still gets tokens.
    assert_eq!(from("203.0.113.9").await, StatusCode::OK);
    // Every issuance says from where.
    let issued = audit_rows(&app, "oauth.token_issued");
    assert_eq!(issued.len(), limit + 1);
    assert!(issued.iter().all(|e| matches!(e.ip.as_deref(), Some("198.51.100.1" | "203.0.113.9"))));
}
both_with!(one_address_cannot_use_up_a_clients_issuance_for_everyone, super::FLUSHING_BEHIND_A_PROXY);

async fn wrong_client_secrets_are_audited_once_a_minute_with_the_address(app: TestApp) {
    app.owner_session().await;
    let oauth_app = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let http = new_client();
    for i in 0..30 {
        let res = http
            .post(app.url("/oauth/token"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .basic_auth(&oauth_app.client_id, Some(format!("lkcs_wrong{i}")))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let rows = audit_rows(&app, "oauth.client_auth_failed");
    assert_eq!(rows.len(), 1, "one event, then a count");
    assert_eq!(rows[0].object_id.as_deref(), Some(oauth_app.client_id.as_str()));
    assert_eq!(rows[0].ip.as_deref(), Some("198.51.100.0"));
}
both_with!(wrong_client_secrets_are_audited_once_a_minute_with_the_address, super::FLUSHING_BEHIND_A_PROXY);
