//! Reliability under contention: concurrent writers of every kind on the
//! embedded SQLite default (and PostgreSQL) all succeed — a busy database
//! makes a request wait, never fail.

use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::create_key;
use crate::both;
use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, TestApp};
use crate::oauth::{REDIRECT, register};

async fn sixteen_concurrent_writers_of_every_kind_never_fail(app: TestApp) {
    app.owner_session().await;
    // The plan's limits are not what this test is about.
    app.db().run_sync(|c| latchkey::service::accounts::set_plan(c, "Acme", "unlimited")).unwrap();
    let admin =
        create_key(&app, json!({"name": "writer", "scopes": ["admin"]})).await["key"].as_str().unwrap().to_owned();
    let oauth_app = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let secret = oauth_app.secret.clone().unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (base, admin, client_id, secret) =
            (app.address.clone(), admin.clone(), oauth_app.client_id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut failures = Vec::new();
            for i in 0..12 {
                let res = match w % 4 {
                    // Keys: create, then revoke (insert + update + audit in one transaction each).
                    0 | 1 => {
                        let res = http
                            .post(format!("{base}/api/v1/api-keys"))
                            .header("X-API-Key", &admin)
                            .json(&json!({"name": format!("k{w}-{i}"), "scopes": ["templates:read"]}))
                            .send()
                            .await
                            .unwrap();
                        if res.status() == StatusCode::CREATED {
                            let id = res.json::<serde_json::Value>().await.unwrap()["data"]["id"]
                                .as_str()
                                .unwrap()
                                .to_owned();
                            http.delete(format!("{base}/api/v1/api-keys/{id}"))
                                .header("X-API-Key", &admin)
                                .send()
                                .await
                                .unwrap()
                        } else {
                            res
                        }
                    }
                    // Tokens: client_credentials issuance.
                    2 => http
                        .post(format!("{base}/oauth/token"))
                        .basic_auth(&client_id, Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .unwrap(),
                    // Sessions and audit: a sign-in writes a session row and a login event.
                    _ => {
                        let c = reqwest::Client::builder()
                            .cookie_store(true)
                            .redirect(reqwest::redirect::Policy::none())
                            .build()
                            .unwrap();
                        let page = c.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
                        let csrf = crate::helpers::csrf_from(&page);
                        c.post(format!("{base}/login"))
                            .form(&[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD), ("csrf_token", &csrf)])
                            .send()
                            .await
                            .unwrap()
                    }
                };
                let status = res.status();
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS && w % 4 != 2 {
                    failures.push(format!("writer {w} request {i}: {status} {}", res.text().await.unwrap()));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(failures.is_empty(), "{} failed: {failures:#?}", failures.len());
}
both!(sixteen_concurrent_writers_of_every_kind_never_fail);

/// One consent form approved by ten concurrent submissions (same session,
/// same token) issues one code: the others find the form already used.
async fn a_consent_form_submitted_concurrently_issues_one_code(app: TestApp) {
    use oauth2::{CsrfToken, PkceCodeChallenge, Scope};

    use crate::helpers::{attr_after, csrf_from};

    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let (challenge, _verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = crate::oauth::client(&app, &a, REDIRECT)
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("templates:read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let html = app.get_html(&url.as_str()[app.address.len()..]).await;
    let form = [
        ("csrf_token", csrf_from(&html)),
        ("consent_token", attr_after(&html, r#"name="consent_token" value=""#).unwrap()),
        ("decision", "approve".to_owned()),
    ];
    let submissions = (0..10).map(|_| app.client.post(app.url("/oauth/authorize")).form(&form).send());
    let answers = futures_util::future::join_all(submissions).await;
    let codes = answers
        .iter()
        .map(|r| r.as_ref().unwrap())
        .filter(|r| r.headers().get("location").is_some_and(|l| l.to_str().unwrap().contains("code=")))
        .count();
    assert_eq!(codes, 1, "{:?}", answers.iter().map(|r| r.as_ref().unwrap().status()).collect::<Vec<_>>());
}
both!(a_consent_form_submitted_concurrently_issues_one_code);
