//! The OAuth 2.0 server, driven by the `oauth2` crate as a real client.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, RedirectUrl, RevocationUrl, Scope, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{TestApp, attr_after, csrf_from, location};

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet, EndpointSet>;

pub struct App {
    pub client_id: String,
    pub secret: Option<String>,
}

/// Registers an app through the dashboard form.
pub async fn register(app: &TestApp, client_type: &str, redirect: &str, scopes: &[&str]) -> App {
    let mut form = vec![("name", "Acme Connector"), ("redirect_uris", redirect), ("client_type", client_type)];
    for s in scopes {
        form.push(("scopes", s));
    }
    let res = app.post_form("/settings/developer/oauth-apps/new", "/settings/developer/oauth-apps", &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    App {
        client_id: attr_after(&html, r#"<code id="client-id">"#).unwrap(),
        secret: attr_after(&html, r#"<code id="secret">"#),
    }
}

pub fn client(app: &TestApp, a: &App, redirect: &str) -> Client {
    let mut c = BasicClient::new(ClientId::new(a.client_id.clone()))
        .set_auth_uri(AuthUrl::new(app.url("/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(app.url("/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).unwrap())
        .set_revocation_url(RevocationUrl::new(app.url("/oauth/revoke")).unwrap());
    if let Some(s) = &a.secret {
        c = c.set_client_secret(ClientSecret::new(s.clone()));
    }
    c
}

pub fn http() -> oauth2::reqwest::Client {
    oauth2::reqwest::ClientBuilder::new().redirect(oauth2::reqwest::redirect::Policy::none()).build().unwrap()
}

/// Follows an authorization URL as the signed-in user, approving (or denying)
/// on the consent screen; returns the redirect's query parameters.
pub async fn authorize(app: &TestApp, url: &str, approve: bool) -> Vec<(String, String)> {
    let path = &url[app.address.len()..];
    let res = app.get(path).await;
    let res = if res.status() == StatusCode::OK {
        let html = res.text().await.unwrap();
        assert!(html.contains("wants to access your Acme account"), "{html}");
        let token = attr_after(&html, r#"name="consent_token" value=""#).unwrap();
        let decision = if approve { "approve" } else { "deny" };
        let form = [("csrf_token", csrf_from(&html)), ("consent_token", token), ("decision", decision.to_owned())];
        app.client.post(app.url("/oauth/authorize")).form(&form).send().await.unwrap()
    } else {
        res
    };
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap_or_default());
    let loc = location(&res);
    assert!(loc.starts_with(REDIRECT) || loc.starts_with("http://127.0.0.1:"), "{loc}");
    let query = loc.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
    serde_urlencoded::from_str(&query).unwrap()
}

pub fn param<'a>(params: &'a [(String, String)], k: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub async fn code_for(
    app: &TestApp,
    c: &Client,
    scopes: &[&str],
    pkce: Option<PkceCodeChallenge>,
) -> (String, CsrfToken) {
    let mut req = c.authorize_url(CsrfToken::new_random);
    for s in scopes {
        req = req.add_scope(Scope::new((*s).to_owned()));
    }
    if let Some(ch) = pkce {
        req = req.set_pkce_challenge(ch);
    }
    let (url, state) = req.url();
    let params = authorize(app, url.as_str(), true).await;
    assert_eq!(param(&params, "state"), Some(state.secret().as_str()));
    assert_eq!(param(&params, "iss"), Some(app.address.as_str()));
    (param(&params, "code").expect("a code").to_owned(), state)
}

pub async fn auth_test(app: &TestApp, token: &str) -> reqwest::Response {
    app.other_client().client.get(app.url("/api/v1/auth/test")).bearer_auth(token).send().await.unwrap()
}

async fn a_public_client_completes_the_code_flow_with_pkce(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "public", REDIRECT, &["templates:read", "api_keys:read"]).await;
    assert!(a.secret.is_none(), "public apps have no secret");
    let c = client(&app, &a, REDIRECT);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (code, _) = code_for(&app, &c, &["templates:read"], Some(challenge)).await;
    let token =
        c.exchange_code(AuthorizationCode::new(code)).set_pkce_verifier(verifier).request_async(&http()).await.unwrap();
    assert_eq!(token.scopes().unwrap()[0].as_str(), "templates:read");
    let access = token.access_token().secret();
    assert!(access.starts_with("lkat_"));
    let res = auth_test(&app, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-ratelimit-limit"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["principal"]["type"], "access_token");
    assert_eq!(body["data"]["principal"]["client_id"], a.client_id.as_str());
    assert_eq!(body["data"]["scopes"], json!(["templates:read"]));
    // Scope checks apply: this token lacks api_keys:read.
    let res = app.other_client().client.get(app.url("/api/v1/api-keys")).bearer_auth(access).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A public client without PKCE is refused at the authorization step.
    let (url, _) = c.authorize_url(CsrfToken::new_random).url();
    let params = authorize(&app, url.as_str(), true).await;
    assert_eq!(param(&params, "error"), Some("invalid_request"));
}
both!(a_public_client_completes_the_code_flow_with_pkce);

async fn a_confidential_client_authenticates_with_basic_and_post(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    assert!(a.secret.as_deref().unwrap().starts_with("lkcs_"));
    let basic = client(&app, &a, REDIRECT);
    let (code, _) = code_for(&app, &basic, &["templates:read"], None).await;
    let token = basic.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    assert_eq!(auth_test(&app, token.access_token().secret()).await.status(), StatusCode::OK);
    // Consent is remembered: the second authorization skips the screen.
    let post = client(&app, &a, REDIRECT).set_auth_type(AuthType::RequestBody);
    let (url, _) = post.authorize_url(CsrfToken::new_random).add_scope(Scope::new("templates:read".into())).url();
    let res = app.get(&url.as_str()[app.address.len()..]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "remembered consent");
    let query: Vec<(String, String)> = serde_urlencoded::from_str(location(&res).split_once('?').unwrap().1).unwrap();
    let token = post
        .exchange_code(AuthorizationCode::new(param(&query, "code").unwrap().to_owned()))
        .request_async(&http())
        .await
        .unwrap();
    assert_eq!(auth_test(&app, token.access_token().secret()).await.status(), StatusCode::OK);
    // A wrong secret is invalid_client.
    let wrong = client(&app, &App { client_id: a.client_id.clone(), secret: Some("lkcs_wrong".into()) }, REDIRECT);
    let err = wrong.exchange_client_credentials().request_async(&http()).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_client"), "{err:?}");
}
both!(a_confidential_client_authenticates_with_basic_and_post);

async fn refresh_tokens_rotate_and_reuse_revokes_the_grant(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (code, _) = code_for(&app, &c, &[], None).await;
    let first = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    let r1 = first.refresh_token().unwrap().clone();
    let second = c.exchange_refresh_token(&r1).request_async(&http()).await.unwrap();
    let r2 = second.refresh_token().unwrap().clone();
    assert_ne!(r1.secret(), r2.secret(), "rotated");
    assert_eq!(auth_test(&app, second.access_token().secret()).await.status(), StatusCode::OK);
    // A retry within the grace gets the same pair again; later reuse revokes the whole grant.
    let retry = c.exchange_refresh_token(&r1).request_async(&http()).await.unwrap();
    assert_eq!(retry.refresh_token().unwrap().secret(), r2.secret());
    app.clock().advance(3);
    let err = c.exchange_refresh_token(&r1).request_async(&http()).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
    assert_eq!(auth_test(&app, second.access_token().secret()).await.status(), StatusCode::UNAUTHORIZED);
    assert!(c.exchange_refresh_token(&r2).request_async(&http()).await.is_err());
    assert!(app.get_html("/settings/team/audit").await.contains("oauth.refresh_reuse"));
}
both!(refresh_tokens_rotate_and_reuse_revokes_the_grant);

async fn client_credentials_revocation_and_introspection(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read", "templates:write"]).await;
    let c = client(&app, &a, REDIRECT);
    let token = c
        .exchange_client_credentials()
        .add_scope(Scope::new("templates:write".into()))
        .request_async(&http())
        .await
        .unwrap();
    assert!(token.refresh_token().is_none());
    let access = token.access_token().clone();
    assert_eq!(auth_test(&app, access.secret()).await.status(), StatusCode::OK);
    let verify =
        app.other_client().client.get(app.url("/auth/verify")).bearer_auth(access.secret()).send().await.unwrap();
    assert_eq!(verify.status(), StatusCode::OK, "access tokens work for forward auth too");
    assert_eq!(verify.headers()["x-latchkey-scopes"], "templates:write");
    let gateway = crate::helpers::service_key(&app, &["introspect"]);
    let introspect = |t: String| {
        let app = app.other_client();
        let gateway = gateway.clone();
        async move {
            app.client
                .post(app.url("/oauth/introspect"))
                .bearer_auth(gateway)
                .form(&[("token", t)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let info = introspect(access.secret().clone()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], a.client_id.as_str());
    assert_eq!(info["scope"], "templates:write");
    assert_eq!(info["token_type"], "access_token");
    // RFC 7009 over plain loopback http (the oauth2 crate insists on https for this one).
    let res = app
        .other_client()
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth(&a.client_id, a.secret.as_ref())
        .form(&[("token", access.secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(auth_test(&app, access.secret()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(introspect(access.secret().clone()).await["active"], false);
    // Scopes beyond the app's are refused.
    let err =
        c.exchange_client_credentials().add_scope(Scope::new("admin".into())).request_async(&http()).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_scope"));
}
both!(client_credentials_revocation_and_introspection);

async fn bad_requests_are_refused_the_right_way(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    // Wrong redirect URI: an error page, never a redirect.
    let evil = client(&app, &a, "https://evil.example/cb");
    let (url, _) = evil.authorize_url(CsrfToken::new_random).url();
    let res = app.get(&url.as_str()[app.address.len()..]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());
    assert!(res.text().await.unwrap().contains("not one this app registered"));
    let res = app.get("/oauth/authorize?response_type=code&client_id=lkc_nope").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Unregistered scope: back to the app with invalid_scope and the state.
    let (url, state) = c.authorize_url(CsrfToken::new_random).add_scope(Scope::new("admin".into())).url();
    let res = app.get(&url.as_str()[app.address.len()..]).await;
    let q: Vec<(String, String)> = serde_urlencoded::from_str(location(&res).split_once('?').unwrap().1).unwrap();
    assert_eq!(param(&q, "error"), Some("invalid_scope"));
    assert_eq!(param(&q, "state"), Some(state.secret().as_str()));
    // plain PKCE refused; a missing state stays absent.
    let path = format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=plain",
        a.client_id,
        REDIRECT,
        "a".repeat(43)
    );
    let q: Vec<(String, String)> =
        serde_urlencoded::from_str(location(&app.get(&path).await).split_once('?').unwrap().1).unwrap();
    assert_eq!(param(&q, "error"), Some("invalid_request"));
    assert_eq!(param(&q, "state"), None);
    // Consent denied.
    let (url, _) = c.authorize_url(CsrfToken::new_random).url();
    let denied = authorize(&app, url.as_str(), false).await;
    assert_eq!(param(&denied, "error"), Some("access_denied"));
    // Code reuse: refused, and what it issued is revoked.
    let (code, _) = code_for(&app, &c, &[], None).await;
    let token = c.exchange_code(AuthorizationCode::new(code.clone())).request_async(&http()).await.unwrap();
    let again = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap_err();
    assert!(format!("{again:?}").contains("invalid_grant"));
    assert_eq!(auth_test(&app, token.access_token().secret()).await.status(), StatusCode::UNAUTHORIZED);
    // A code of another client.
    let other = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let (code, _) = code_for(&app, &c, &[], None).await;
    let err = client(&app, &other, REDIRECT)
        .exchange_code(AuthorizationCode::new(code))
        .request_async(&http())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"));
    // PKCE mismatch, and a verifier without a challenge.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (code, _) = code_for(&app, &c, &[], Some(challenge)).await;
    let (_, wrong_verifier) = PkceCodeChallenge::new_random_sha256();
    let err = c
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(wrong_verifier)
        .request_async(&http())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"));
    let (code, _) = code_for(&app, &c, &[], None).await;
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    let err = c
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "downgrade refused");
    // An expired code.
    let (code, _) = code_for(&app, &c, &[], None).await;
    {
        use diesel::prelude::*;
        use latchkey::store::schema::oauth_codes;
        app.db()
            .run_sync(|conn| {
                diesel::update(oauth_codes::table)
                    .set(oauth_codes::expires_at.eq(1))
                    .execute(conn)
                    .map_err(latchkey::store::StoreError::from)
            })
            .unwrap();
    }
    let err = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"));
    // Token errors are RFC 6749 JSON with no-store.
    let res = app
        .other_client()
        .client
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let res = app
        .other_client()
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&a.client_id, a.secret.as_ref())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}
both!(bad_requests_are_refused_the_right_way);

async fn metadata_and_authorized_apps(app: TestApp) {
    app.owner_session().await;
    let meta: Value = app.get("/.well-known/oauth-authorization-server").await.json().await.unwrap();
    assert_eq!(meta["issuer"], app.address.as_str());
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["grant_types_supported"], json!(["authorization_code", "refresh_token", "client_credentials"]));
    assert!(meta["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("client_secret_basic")));
    for k in ["authorization_endpoint", "token_endpoint", "revocation_endpoint", "introspection_endpoint"] {
        assert!(meta[k].as_str().unwrap().starts_with(&app.address), "{k}");
    }
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (code, _) = code_for(&app, &c, &[], None).await;
    let token = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    let page = app.get_html("/settings/security").await;
    assert!(page.contains("Acme Connector") && page.contains(r#"id="authorized-apps""#));
    assert!(page.contains(r#"id="team-authorized-apps""#), "owners see the team's authorized apps");
    // Support sees the team's apps too.
    let staff = crate::support::support_user(&app).await;
    let team = attr_after(&staff.get_html("/support?q=acme").await, r#"<li><a href="/support/teams/"#).unwrap();
    assert!(staff.get_html(&format!("/support/teams/{team}")).await.contains(&a.client_id));
    let res =
        app.post_form("/settings/security", &format!("/settings/security/apps/{}/revoke", a.client_id), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(auth_test(&app, token.access_token().secret()).await.status(), StatusCode::UNAUTHORIZED);
    let audit = app.get_html("/settings/team/audit").await;
    for action in ["oauth.app_registered", "oauth.consent_granted", "oauth.consent_revoked"] {
        assert!(audit.contains(action), "{action}");
    }
    // Secret rotation with grace: both secrets work.
    let res = app
        .post_form(
            &format!("/settings/developer/oauth-apps/{}", a.client_id),
            &format!("/settings/developer/oauth-apps/{}/rotate", a.client_id),
            &[("grace", "3600")],
        )
        .await;
    let new_secret = attr_after(&res.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
    assert!(c.exchange_client_credentials().request_async(&http()).await.is_ok(), "old secret in grace");
    let rotated = client(&app, &App { client_id: a.client_id.clone(), secret: Some(new_secret) }, REDIRECT);
    assert!(rotated.exchange_client_credentials().request_async(&http()).await.is_ok());
    // Registration validates redirect URIs.
    let res = app
        .post_form(
            "/settings/developer/oauth-apps/new",
            "/settings/developer/oauth-apps",
            &[
                ("name", "Bad"),
                ("redirect_uris", "http://evil.example/cb#frag"),
                ("client_type", "public"),
                ("scopes", "templates:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Deleting the app revokes its tokens.
    let cc = c.exchange_client_credentials().request_async(&http()).await.unwrap();
    app.post_form(
        &format!("/settings/developer/oauth-apps/{}", a.client_id),
        &format!("/settings/developer/oauth-apps/{}/delete", a.client_id),
        &[],
    )
    .await;
    assert_eq!(auth_test(&app, cc.access_token().secret()).await.status(), StatusCode::UNAUTHORIZED);
}
both!(metadata_and_authorized_apps);
