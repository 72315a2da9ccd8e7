//! The OAuth protocol's edges and the credentials' lifecycle: refresh retries
//! never fork a grant, redirect_uri at the token endpoint (RFC 6749 §4.1.3),
//! issuance and revocation audited, leak reports of every credential kind,
//! introspection of IP-locked keys, what a failed login stores, neutral
//! invites, and what support may touch and show.

use oauth2::{AuthorizationCode, RefreshToken, TokenResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{call, create_key};
use crate::both;
use crate::helpers::{OWNER_EMAIL, TestApp, attr_after, csrf_from, service_key};
use crate::oauth::{App, REDIRECT, auth_test, authorize, client, code_for, http, param, register};
use crate::support::{SUPPORT_EMAIL, support_user};

/// Every text column of the tables a typed secret could reach.
fn full_dump(app: &TestApp) -> String {
    use diesel::prelude::*;
    use latchkey::store::schema::{audit_events, sessions};
    app.db()
        .run_sync(|c| {
            let audit: Vec<(String, String, Option<String>, Option<String>)> = audit_events::table
                .select((
                    audit_events::actor_label,
                    audit_events::details,
                    audit_events::object_id,
                    audit_events::user_agent,
                ))
                .load(c)?;
            let sessions: Vec<String> = sessions::table.select(sessions::state).load(c)?;
            Ok::<_, latchkey::store::StoreError>(format!("{audit:?}{sessions:?}"))
        })
        .unwrap()
}

/// The `details` of every audit event with this action, oldest first.
fn events(app: &TestApp, action: &str) -> Vec<Value> {
    use diesel::prelude::*;
    use latchkey::store::schema::audit_events;
    let action = action.to_owned();
    let rows: Vec<String> = app
        .db()
        .run_sync(move |c| {
            audit_events::table
                .filter(audit_events::action.eq(action))
                .order(audit_events::id.asc())
                .select(audit_events::details)
                .load(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
    rows.iter().map(|d| serde_json::from_str(d).unwrap()).collect()
}

fn count_tokens(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use latchkey::store::schema::oauth_tokens;
    app.db().run_sync(|c| oauth_tokens::table.count().get_result(c).map_err(latchkey::store::StoreError::from)).unwrap()
}

/// An access and refresh token for the owner through the code flow.
async fn first_pair(app: &TestApp, a: &App) -> (String, String) {
    let c = client(app, a, REDIRECT);
    let (code, _) = code_for(app, &c, &["templates:read"], None).await;
    let t = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    (t.access_token().secret().clone(), t.refresh_token().unwrap().secret().clone())
}

async fn refresh_raw(app: &TestApp, a: &App, token: &str) -> reqwest::Response {
    app.other_client()
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&a.client_id, a.secret.as_ref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

async fn a_refresh_retry_gets_the_same_successor_and_never_forks_the_grant(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (_, r1) = first_pair(&app, &a).await;
    let before = count_tokens(&app);
    // Two concurrent refreshes with the same token (a client's retry, or a thief racing it).
    let r1 = RefreshToken::new(r1);
    let (h1, h2) = (http(), http());
    let (x, y) = tokio::join!(
        c.exchange_refresh_token(&r1).request_async(&h1),
        c.exchange_refresh_token(&r1).request_async(&h2)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.access_token().secret(), y.access_token().secret(), "one successor, not two branches");
    assert_eq!(x.refresh_token().unwrap().secret(), y.refresh_token().unwrap().secret());
    // A third, sequential retry still gets the same pair; and nothing was inserted twice.
    let z = c.exchange_refresh_token(&r1).request_async(&http()).await.unwrap();
    assert_eq!(z.refresh_token().unwrap().secret(), x.refresh_token().unwrap().secret());
    assert_eq!(count_tokens(&app), before + 2);
    let successor = x.refresh_token().unwrap().clone();
    assert_eq!(auth_test(&app, x.access_token().secret()).await.status(), StatusCode::OK);
    // The successor rotates; the predecessor presented again now is reuse, even within the grace.
    let next = c.exchange_refresh_token(&successor).request_async(&http()).await.unwrap();
    let err = c.exchange_refresh_token(&r1).request_async(&http()).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
    assert_eq!(auth_test(&app, next.access_token().secret()).await.status(), StatusCode::UNAUTHORIZED);
    assert!(c.exchange_refresh_token(next.refresh_token().unwrap()).request_async(&http()).await.is_err());
    assert!(c.exchange_refresh_token(&successor).request_async(&http()).await.is_err());
    assert_eq!(events(&app, "oauth.refresh_reuse").last().unwrap()["revoked"], "grant");

    // Six racing requests with one token: one successor for all of them.
    let (_, r1) = first_pair(&app, &a).await;
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let (app, a, r1) =
                (app.other_client(), App { client_id: a.client_id.clone(), secret: a.secret.clone() }, r1.clone());
            tokio::spawn(async move {
                let res = refresh_raw(&app, &a, &r1).await;
                assert_eq!(res.status(), StatusCode::OK);
                let body: Value = res.json().await.unwrap();
                (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in racers {
        answers.push(r.await.unwrap());
    }
    assert!(answers.iter().all(|p| *p == answers[0]), "{answers:?}");

    // After the grace, a replay revokes the grant.
    let (_, r1) = first_pair(&app, &a).await;
    let res = refresh_raw(&app, &a, &r1).await;
    assert_eq!(res.status(), StatusCode::OK);
    let live: Value = res.json().await.unwrap();
    app.clock().advance(3);
    assert_eq!(refresh_raw(&app, &a, &r1).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(auth_test(&app, live["access_token"].as_str().unwrap()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh_raw(&app, &a, live["refresh_token"].as_str().unwrap()).await.status(), StatusCode::BAD_REQUEST);

    // A retry never revives a successor that was revoked meanwhile.
    let (_, r1) = first_pair(&app, &a).await;
    let got: Value = refresh_raw(&app, &a, &r1).await.json().await.unwrap();
    let revoke = app
        .other_client()
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth(&a.client_id, a.secret.as_ref())
        .form(&[("token", got["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    assert_eq!(refresh_raw(&app, &a, &r1).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(auth_test(&app, got["access_token"].as_str().unwrap()).await.status(), StatusCode::UNAUTHORIZED);
    // Another client's retry of the same token gets nothing.
    let other = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let (_, r1) = first_pair(&app, &a).await;
    assert_eq!(refresh_raw(&app, &a, &r1).await.status(), StatusCode::OK);
    assert_eq!(refresh_raw(&app, &other, &r1).await.status(), StatusCode::BAD_REQUEST);
}
both!(a_refresh_retry_gets_the_same_successor_and_never_forks_the_grant);

/// Authorizes with a hand-made URL (with or without `redirect_uri`); returns the code.
async fn code_via(app: &TestApp, a: &App, redirect_uri: Option<&str>) -> String {
    let mut url = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&scope=templates:read&state=s1",
        app.address, a.client_id
    );
    if let Some(r) = redirect_uri {
        url.push_str(&format!("&redirect_uri={}", latchkey::web::auth::url_encode(r)));
    }
    let params = authorize(app, &url, true).await;
    param(&params, "code").expect("a code").to_owned()
}

async fn exchange_raw(app: &TestApp, a: &App, code: &str, redirect_uri: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code)];
    if let Some(r) = redirect_uri {
        form.push(("redirect_uri", r));
    }
    app.other_client()
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&a.client_id, a.secret.as_ref())
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn the_token_request_repeats_redirect_uri_only_if_the_authorization_request_had_one(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    // Omitted at authorize: may be omitted at the token endpoint, or repeated exactly.
    let code = code_via(&app, &a, None).await;
    assert_eq!(exchange_raw(&app, &a, &code, None).await.status(), StatusCode::OK);
    let code = code_via(&app, &a, None).await;
    assert_eq!(exchange_raw(&app, &a, &code, Some(REDIRECT)).await.status(), StatusCode::OK);
    let code = code_via(&app, &a, None).await;
    for wrong in ["http://127.0.0.1:10/callback", "http://127.0.0.1:9/callback/", ""] {
        let res = exchange_raw(&app, &a, &code, Some(wrong)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{wrong}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    // Given at authorize: required at the token endpoint, and identical.
    let given = "http://127.0.0.1:4711/callback";
    let code = code_via(&app, &a, Some(given)).await;
    for wrong in [None, Some(REDIRECT), Some("http://127.0.0.1:4711/callback?x=1"), Some("")] {
        let res = exchange_raw(&app, &a, &code, wrong).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{wrong:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    assert_eq!(exchange_raw(&app, &a, &code, Some(given)).await.status(), StatusCode::OK);
}
both!(the_token_request_repeats_redirect_uri_only_if_the_authorization_request_had_one);

async fn every_token_issuance_and_revocation_is_audited_without_the_token(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (access, r1) = first_pair(&app, &a).await;
    let refreshed = refresh_raw(&app, &a, &r1).await.json::<Value>().await.unwrap();
    let retried = refresh_raw(&app, &a, &r1).await.json::<Value>().await.unwrap();
    assert_eq!(refreshed["refresh_token"], retried["refresh_token"]);
    let machine = c.exchange_client_credentials().request_async(&http()).await.unwrap();
    let issued = events(&app, "oauth.token_issued");
    let kinds: Vec<&str> = issued.iter().map(|e| e["grant_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["authorization_code", "refresh_token", "client_credentials"], "one event per issuance");
    assert_eq!(issued[0]["scopes"], json!(["templates:read"]));
    // RFC 7009 revocation of an access token (it takes its grant) and of the machine token.
    for t in [refreshed["access_token"].as_str().unwrap(), machine.access_token().secret()] {
        let res = app
            .other_client()
            .client
            .post(app.url("/oauth/revoke"))
            .basic_auth(&a.client_id, a.secret.as_ref())
            .form(&[("token", t)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let revoked = events(&app, "oauth.token_revoked");
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert!(revoked.iter().all(|e| e["revoked"] == "grant" && e["presented"] == "access_token"));
    assert!(revoked[0]["tokens_revoked"].as_u64().unwrap() >= 1);
    // A second revocation of the same token revokes nothing and records nothing.
    let again = app
        .other_client()
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth(&a.client_id, a.secret.as_ref())
        .form(&[("token", machine.access_token().secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(events(&app, "oauth.token_revoked").len(), 2);
    let audit = app.get_html("/settings/team/audit").await;
    assert!(audit.contains("oauth.token_issued") && audit.contains("oauth.token_revoked"));
    let dump = full_dump(&app);
    for secret in [&access, &r1, refreshed["refresh_token"].as_str().unwrap(), machine.access_token().secret()] {
        assert!(!dump.contains(&secret[5..]), "no token in the audit trail");
        assert!(!audit.contains(&secret[5..]));
    }
}
both!(every_token_issuance_and_revocation_is_audited_without_the_token);

async fn report(app: &TestApp, scanner: &str, keys: &[&str]) -> Vec<String> {
    let body = json!({"keys": keys, "url": "https://paste.example/leak"});
    let res =
        app.other_client().client.post(app.url("/api/v1/leaked-keys")).bearer_auth(scanner).json(&body).send().await;
    let json: Value = res.unwrap().json().await.unwrap();
    json["data"]["results"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap().to_owned()).collect()
}

async fn a_leak_report_revokes_every_kind_of_credential(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let key = key["key"].as_str().unwrap().to_owned();
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (leaked_access, sibling_refresh) = first_pair(&app, &a).await;
    let (grant_access, leaked_refresh) = first_pair(&app, &a).await;
    let machine = c.exchange_client_credentials().request_async(&http()).await.unwrap();
    let machine = machine.access_token().secret().clone();
    let secret = a.secret.clone().unwrap();
    for t in [&leaked_access, &grant_access, &machine] {
        assert_eq!(auth_test(&app, t).await.status(), StatusCode::OK);
    }
    let scanner = service_key(&app, &["leaks:report"]);
    let mint = |p: &str| latchkey::service::keys::codec::generate(p).unwrap();
    let (unknown_at, unknown_rt, unknown_cs) = (mint("lkat"), mint("lkrt"), mint("lkcs"));
    let mut bad_checksum = leaked_access.clone();
    bad_checksum.replace_range(6..7, if &bad_checksum[6..7] == "A" { "B" } else { "A" });
    let foreign = mint("ghp");
    let outcomes = report(
        &app,
        &scanner,
        &[
            &key,
            &leaked_access,
            &leaked_refresh,
            &unknown_at,
            &unknown_rt,
            &unknown_cs,
            &bad_checksum,
            &foreign,
            "lkat_short",
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        ["revoked", "revoked", "revoked", "not_found", "not_found", "not_found", "malformed", "malformed", "malformed"]
    );
    // Each leaked credential stops working at once.
    assert_eq!(call(&app, "/api/v1/auth/test", &key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(auth_test(&app, &leaked_access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh_raw(&app, &a, &leaked_refresh).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(auth_test(&app, &grant_access).await.status(), StatusCode::UNAUTHORIZED, "the refresh took its grant");
    // A leaked access token takes only itself: its grant's refresh token still works.
    assert_eq!(refresh_raw(&app, &a, &sibling_refresh).await.status(), StatusCode::OK);
    // A leaked client secret is replaced: it no longer authenticates.
    assert_eq!(report(&app, &scanner, &[&secret]).await, ["revoked"]);
    let err = c.exchange_client_credentials().request_async(&http()).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_client"), "the leaked secret no longer authenticates: {err:?}");
    assert_eq!(auth_test(&app, &machine).await.status(), StatusCode::UNAUTHORIZED, "what the secret minted ends");
    assert_eq!(refresh_raw(&app, &a, &sibling_refresh).await.status(), StatusCode::UNAUTHORIZED);
    // Reported again: already inactive, whatever the kind.
    let again = report(&app, &scanner, &[&key, &leaked_access, &leaked_refresh, &secret]).await;
    // (A replaced client secret is no longer stored anywhere: not found.)
    assert_eq!(again, ["already_inactive", "already_inactive", "already_inactive", "not_found"]);
    let audit = app.get_html("/settings/team/audit").await;
    assert!(audit.contains("oauth.secret_leaked") && audit.contains("oauth.token_revoked"));
    let dump = full_dump(&app);
    assert!(!dump.contains(&secret[5..]) && !dump.contains(&leaked_refresh[5..]));
    // The team recovers: a rotation gives a working secret again.
    let page = format!("/settings/developer/oauth-apps/{}", a.client_id);
    let res = app.post_form(&page, &format!("{page}/rotate"), &[("grace", "0")]).await;
    let fresh = attr_after(&res.text().await.unwrap(), r#"<code id="secret">"#).expect("a new secret");
    let c = client(&app, &App { client_id: a.client_id.clone(), secret: Some(fresh) }, REDIRECT);
    assert!(c.exchange_client_credentials().request_async(&http()).await.is_ok());
}
both!(a_leak_report_revokes_every_kind_of_credential);

async fn introspection_names_the_ranges_of_an_ip_locked_key(app: TestApp) {
    app.owner_session().await;
    let gateway = service_key(&app, &["introspect"]);
    let introspect = |t: String| {
        let (app, gateway) = (app.other_client(), gateway.clone());
        async move {
            let res = app.client.post(app.url("/oauth/introspect")).bearer_auth(gateway).form(&[("token", t)]).send();
            res.await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let ranges = ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"];
    let locked = create_key(&app, json!({"name": "locked", "scopes": ["templates:read"], "allowed_ips": ranges})).await;
    let info = introspect(locked["key"].as_str().unwrap().to_owned()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["allowed_ips"], json!(ranges), "{info}");
    let one =
        create_key(&app, json!({"name": "one", "scopes": ["templates:read"], "allowed_ips": ["192.0.2.9"]})).await;
    let info = introspect(one["key"].as_str().unwrap().to_owned()).await;
    assert_eq!(info["allowed_ips"].as_array().map(Vec::len), Some(1), "{info}");
    assert!(info["allowed_ips"][0].as_str().unwrap().starts_with("192.0.2.9"));
    let open = create_key(&app, json!({"name": "open", "scopes": ["templates:read"]})).await;
    let info = introspect(open["key"].as_str().unwrap().to_owned()).await;
    assert_eq!(info["active"], true);
    assert!(info.get("allowed_ips").is_none(), "present only when restricted: {info}");
}
both!(introspection_names_the_ranges_of_an_ip_locked_key);

async fn a_password_typed_into_the_email_field_is_not_stored(app: TestApp) {
    app.setup_owner().await;
    let typed = ["Tr0ub4dor&3-Secret", "correct horse battery staple", "hunter2@"];
    for t in typed {
        let res = app.other_client().login(t, "whatever password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{t}");
    }
    // A plausible email is still recorded (it says who was targeted): a known
    // account's failures always are (unknown ones are summarised per minute).
    let owner = crate::helpers::OWNER_EMAIL;
    assert_eq!(app.other_client().login(owner, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    let failed = events(&app, "login.failed");
    assert_eq!(failed.len(), 2, "the first unknown-account failure and the owner's");
    let dump = full_dump(&app);
    for t in typed {
        assert!(!dump.contains(t) && !dump.contains(&t.to_lowercase()), "{t} stored: {dump}");
    }
    assert!(dump.contains("(not an email)") && dump.contains(owner));
}
both!(a_password_typed_into_the_email_field_is_not_stored);

/// The page's answer to an invite, with the email and the link's token blanked.
async fn invite_answer(app: &TestApp, email: &str) -> (StatusCode, String, String) {
    let res = app.post_form("/settings/team", "/settings/team/invites", &[("email", email), ("role", "viewer")]).await;
    let status = res.status();
    let html = res.text().await.unwrap();
    let link = attr_after(&html, r#"<code id="invite-link">"#).unwrap_or_default();
    let (start, end) = (html.find(r#"<header class="page-head">"#).unwrap(), html.find("<h2>Members</h2>").unwrap());
    let blank = |s: &str| s.replace(email, "EMAIL").replace(&email.to_lowercase(), "EMAIL").replace(&link, "LINK");
    let form = html[html.find("Invite a teammate").unwrap()..].split("Pending invites").next().unwrap().to_owned();
    (status, blank(&html[start..end]), blank(&form) + &link)
}

async fn an_invite_does_not_tell_whether_the_email_has_an_account(app: TestApp) {
    // An address is invited again at most once in 10 minutes: the clock
    // moves on between the invites (from the past, as sessions live by the
    // wall clock).
    let later = || app.clock().advance(latchkey::service::accounts::REINVITE_AFTER_SECS);
    crate::key_privilege::back(&app, 6 * latchkey::service::accounts::REINVITE_AFTER_SECS);
    app.owner_session().await;
    let member = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    drop(member);
    let _staff = support_user(&app).await; // an account outside the team
    let fresh = invite_answer(&app, "newcomer@acme.test").await;
    assert_eq!(fresh.0, StatusCode::OK);
    for existing in ["dev@acme.test", SUPPORT_EMAIL, OWNER_EMAIL, "DEV@acme.test"] {
        later();
        let answer = invite_answer(&app, existing).await;
        assert_eq!(answer.0, fresh.0, "{existing}");
        assert_eq!(answer.1, fresh.1, "{existing}: the same answer");
        assert!(answer.2.contains("/invite/"), "{existing}: a link like any other");
        assert!(!answer.2.contains("field-error") && !answer.2.to_lowercase().contains("account"));
    }
    // Accepting an invite for an existing account fails like a used link and changes nothing.
    later();
    let link = app.invite(SUPPORT_EMAIL, "admin").await;
    let taker = app.other_client();
    let res = taker.post_form(&link, &link, &[("password", "a brand new password 1")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("This invite link is not valid"));
    assert_eq!(taker.login(SUPPORT_EMAIL, "a brand new password 1").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.other_client().login(SUPPORT_EMAIL, crate::support::SUPPORT_PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(!app.get_html("/settings/team").await.contains(&format!(r#"data-email="{SUPPORT_EMAIL}""#)));
}
both!(an_invite_does_not_tell_whether_the_email_has_an_account);

async fn support_cannot_find_or_revoke_the_operators_service_keys(app: TestApp) {
    app.owner_session().await;
    let hasher = latchkey::service::crypto::Keys::derive(crate::helpers::TEST_SECRET.as_bytes());
    let scopes = vec!["introspect".to_owned()];
    let (service, secret) = app
        .db()
        .run_sync(|c| latchkey::service::keys::create_service_key(c, &hasher, "lk", "gateway", &scopes))
        .unwrap();
    let secret = secret.expose().to_owned();
    let staff = support_user(&app).await;
    let display = format!("lk_{}", service.key_prefix);
    for q in [secret.as_str(), display.as_str(), &format!("{display}…")] {
        let html = staff.get_html(&format!("/support?q={}", latchkey::web::auth::url_encode(q))).await;
        assert!(!html.contains(&service.id), "{q}: a service key is not listed to support");
    }
    assert_eq!(staff.get(&format!("/support/keys/{}", service.id)).await.status(), StatusCode::NOT_FOUND);
    // The revoke form of a team key, aimed at the service key.
    let team_key = create_key(&app, json!({"name": "t", "scopes": ["templates:read"]})).await;
    let page = format!("/support/keys/{}", team_key["id"].as_str().unwrap());
    let csrf = csrf_from(&staff.get_html(&page).await);
    let res = staff
        .client
        .post(staff.url(&format!("/support/keys/{}/revoke", service.id)))
        .form(&[("reason", "breaking the gateway"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let probe = create_key(&app, json!({"name": "p", "scopes": ["templates:read"]})).await;
    let res = app
        .other_client()
        .client
        .post(app.url("/oauth/introspect"))
        .bearer_auth(&secret)
        .form(&[("token", probe["key"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["active"], true, "the service key still works");
    // Team keys remain support's to revoke.
    let res = staff.post_form(&page, &format!("{page}/revoke"), &[("reason", "leaked")]).await.status();
    assert_eq!(res, StatusCode::SEE_OTHER);
}
both!(support_cannot_find_or_revoke_the_operators_service_keys);

async fn the_team_never_sees_the_support_persons_email(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "pasted", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    let staff = support_user(&app).await;
    let page = format!("/support/keys/{id}");
    let res = staff.post_form(&page, &format!("{page}/revoke"), &[("reason", "Found in a public repo")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let team_views = [
        format!("/settings/developer/api-keys/{id}"),
        "/settings/developer/api-keys".to_owned(),
        "/settings/developer/api-keys?status=revoked".to_owned(),
        "/settings/team/audit".to_owned(),
        "/settings/team/audit?format=csv".to_owned(),
        "/settings/team/audit?action=api_key.revoked_by_support&format=csv".to_owned(),
        "/settings/team".to_owned(),
    ];
    let mut saw_support = false;
    for path in &team_views {
        let body = app.get_html(path).await;
        assert!(!body.contains(SUPPORT_EMAIL) && !body.contains("help@"), "{path} shows the support person");
        saw_support |= body.contains("Latchkey support");
    }
    assert!(saw_support, "the team sees that support acted");
    // Filtering the log by the person finds nothing either.
    let found = app.get_html(&format!("/settings/team/audit?actor={}&format=csv", "help%40latchkey.test")).await;
    assert!(!found.contains("revoked_by_support"), "{found}");
    // Support itself still sees who it was.
    let own = staff.get_html(&page).await;
    assert!(own.contains(SUPPORT_EMAIL), "support's key page names the person");
    let team_id = {
        let html = staff.get_html("/support?q=Acme").await;
        let i = html.find("/support/teams/").unwrap() + "/support/teams/".len();
        html[i..].split('"').next().unwrap().to_owned()
    };
    assert!(staff.get_html(&format!("/support/teams/{team_id}/audit")).await.contains(SUPPORT_EMAIL));
}
both!(the_team_never_sees_the_support_persons_email);

fn introspect_exp(app: &TestApp, gateway: &str, token: &str) -> impl std::future::Future<Output = i64> {
    let (client, url, gateway, token) =
        (app.other_client().client, app.url("/oauth/introspect"), gateway.to_owned(), token.to_owned());
    async move {
        let info: Value =
            client.post(url).bearer_auth(gateway).form(&[("token", token)]).send().await.unwrap().json().await.unwrap();
        assert_eq!(info["active"], true, "{info}");
        info["exp"].as_i64().unwrap()
    }
}

async fn no_refresh_token_outlives_the_teams_maximum_lifetime(app: TestApp) {
    app.owner_session().await;
    let res = app
        .post_form("/settings/developer/api-keys", "/settings/developer/api-keys/policy", &[("max_lifetime_days", "1")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (code, _) = code_for(&app, &c, &["templates:read"], None).await;
    let first = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    let gateway = service_key(&app, &["introspect"]);
    let now = latchkey::store::now();
    let first_exp = introspect_exp(&app, &gateway, first.refresh_token().unwrap().secret()).await;
    assert!(first_exp <= now + 86_400 + 5, "{first_exp} is within a day");
    // Rotation never extends the grant.
    let second = c.exchange_refresh_token(first.refresh_token().unwrap()).request_async(&http()).await.unwrap();
    assert!(introspect_exp(&app, &gateway, second.refresh_token().unwrap().secret()).await <= first_exp);
    assert!(introspect_exp(&app, &gateway, second.access_token().secret()).await <= first_exp);
}
both!(no_refresh_token_outlives_the_teams_maximum_lifetime);

/// A token request authenticated with HTTP Basic, carrying `form`.
async fn token_with_basic(app: &TestApp, id: &str, secret: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let req = app.other_client().client.post(app.url("/oauth/token")).basic_auth(id, Some(secret));
    req.form(form).send().await.unwrap()
}

async fn malformed_verifiers_and_double_client_authentication_are_refused(app: TestApp) {
    use sha2::Digest;
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let secret = a.secret.clone().unwrap();
    for verifier in ["a", &"b".repeat(129), &format!("{}$%", "c".repeat(43))] {
        use base64::Engine;
        let challenge =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let url = format!(
            "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=templates:read&state=s\
             &code_challenge={challenge}&code_challenge_method=S256",
            app.address,
            a.client_id,
            latchkey::web::auth::url_encode(REDIRECT)
        );
        let code = param(&authorize(&app, &url, true).await, "code").unwrap().to_owned();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ];
        let res = token_with_basic(&app, &a.client_id, &secret, &form).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{verifier}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    // One client authentication method per request (RFC 6749 §2.3).
    let other = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", other.client_id.as_str()),
            ("client_secret", other.secret.as_deref().unwrap()),
        ],
        vec![("grant_type", "client_credentials"), ("client_secret", secret.as_str())],
        vec![("grant_type", "client_credentials"), ("client_id", other.client_id.as_str())],
    ] {
        let res = token_with_basic(&app, &a.client_id, &secret, &form).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
}
both!(malformed_verifiers_and_double_client_authentication_are_refused);

async fn revocation_endpoint_failures_are_throttled_and_audited_and_parameters_never_repeat(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let secret = a.secret.clone().unwrap();
    let mut statuses = Vec::new();
    for i in 0..15 {
        let res = app
            .other_client()
            .client
            .post(app.url("/oauth/revoke"))
            .basic_auth(&a.client_id, Some(format!("lkcs_bad{i}")))
            .form(&[("token", "lkat_whatever")])
            .send()
            .await
            .unwrap();
        statuses.push(res.status());
    }
    assert!(statuses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(events(&app, "oauth.client_auth_failed").len(), 1);
    // Repeated parameters are refused, whichever value comes first.
    let other = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let other_secret = other.secret.clone().unwrap();
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", other.client_id.as_str()),
            ("client_secret", other_secret.as_str()),
            ("client_secret", "wrong"),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("grant_type", "authorization_code"),
            ("client_id", other.client_id.as_str()),
            ("client_secret", other_secret.as_str()),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("scope", "templates:read"),
            ("scope", "admin"),
            ("client_id", other.client_id.as_str()),
            ("client_secret", other_secret.as_str()),
        ],
    ] {
        let res = app.other_client().client.post(app.url("/oauth/token")).form(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
    let _ = secret;
}
both!(revocation_endpoint_failures_are_throttled_and_audited_and_parameters_never_repeat);
