//! Authorization: every action decided by the one policy, tried as owner,
//! admin, developer, viewer, a demoted member, a removed member, an API key
//! and an OAuth access token. Ceilings hold on every path that copies a
//! credential; membership and role are read where credentials are verified.

use std::time::Duration;

use oauth2::{Scope, TokenResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{member, member_id};
use crate::api_keys::{call, create_key};
use crate::both;
use crate::helpers::TestApp;
use crate::oauth::{REDIRECT, client, code_for, http, register};

/// As if the verifier's cache (≤ 1 s) had expired, so a change is seen everywhere.
fn past_the_cache(app: &TestApp) {
    app.forget_cached_credentials();
}

async fn with_key(app: &TestApp, method: reqwest::Method, path: &str, key: &str, body: Value) -> reqwest::Response {
    let req = app.other_client().client.request(method, app.url(path)).header("X-API-Key", key);
    req.json(&body).send().await.unwrap()
}

async fn roll_with_key(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    with_key(app, reqwest::Method::POST, &format!("/api/v1/api-keys/{id}/roll"), key, json!({"grace_seconds": 0})).await
}

async fn roll_with_session(app: &TestApp, id: &str) -> reqwest::Response {
    crate::api_keys::api_post(app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 0})).await
}

async fn team_key_count(app: &TestApp) -> usize {
    let list: Value = app.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    list["data"].as_array().unwrap().len()
}

async fn scopes_of(app: &TestApp, credential: &str) -> Vec<String> {
    let res = call(app, "/api/v1/auth/test", credential).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

async fn a_roll_never_exceeds_the_callers_ceiling_nor_the_teams_lifetime(app: TestApp) {
    app.owner_session().await;
    let admin = create_key(&app, json!({"name": "admin", "scopes": ["admin"]})).await;
    let writer_only = create_key(&app, json!({"name": "w", "scopes": ["api_keys:write"]})).await;
    let writer_read = create_key(&app, json!({"name": "wr", "scopes": ["api_keys:write", "templates:read"]})).await;
    let templates = create_key(&app, json!({"name": "t", "scopes": ["templates:write"]})).await;
    let oauth_app = register(&app, "confidential", REDIRECT, &["api_keys:write"]).await;
    let token = client(&app, &oauth_app, REDIRECT)
        .exchange_client_credentials()
        .add_scope(Scope::new("api_keys:write".into()))
        .request_async(&http())
        .await
        .unwrap();
    let before = team_key_count(&app).await;
    let attempts = [
        (writer_only["key"].as_str().unwrap(), admin["id"].as_str().unwrap()),
        (writer_read["key"].as_str().unwrap(), admin["id"].as_str().unwrap()),
        (writer_read["key"].as_str().unwrap(), templates["id"].as_str().unwrap()),
        (token.access_token().secret().as_str(), admin["id"].as_str().unwrap()),
        (token.access_token().secret().as_str(), templates["id"].as_str().unwrap()),
    ];
    for (credential, target) in attempts {
        let res = roll_with_key(&app, credential, target).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(!text.contains(r#""key":"lk_"#), "no secret handed out: {text}");
    }
    assert_eq!(team_key_count(&app).await, before, "no key was created");
    assert_eq!(call(&app, "/api/v1/auth/test", admin["key"].as_str().unwrap()).await.status(), StatusCode::OK);
    // The legitimate case: a key may roll a key within its own scopes.
    let res = roll_with_key(&app, writer_read["key"].as_str().unwrap(), writer_only["id"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A never-expiring key rolled under a 30-day policy gets an expiry within 30 days.
    let policy = app
        .post_form(
            "/settings/developer/api-keys",
            "/settings/developer/api-keys/policy",
            &[("max_lifetime_days", "30")],
        )
        .await;
    assert_eq!(policy.status(), StatusCode::SEE_OTHER);
    let res = roll_with_session(&app, admin["id"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rolled: Value = res.json().await.unwrap();
    let expires = rolled["data"]["expires_at"].as_str().expect("the new key expires");
    let expires = time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).unwrap();
    let limit = time::OffsetDateTime::now_utc() + time::Duration::days(30) + time::Duration::minutes(1);
    assert!(expires <= limit, "{expires} is within the team's 30 days");
}
both!(a_roll_never_exceeds_the_callers_ceiling_nor_the_teams_lifetime);

async fn a_demoted_member_keeps_only_what_the_new_role_allows(app: TestApp) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "admin").await;
    let dev_id = member_id(&app.get_html("/settings/team").await, "dev@acme.test");
    let admin_key = create_key(&dev, json!({"name": "their admin key", "scopes": ["admin"]})).await;
    let writer =
        create_key(&dev, json!({"name": "their writer", "scopes": ["api_keys:write", "templates:write", "admin"]}))
            .await;
    let role = |r: &'static str| {
        let (app, path) = (&app, format!("/settings/team/members/{dev_id}/role"));
        async move { app.post_form("/settings/team", &path, &[("role", r)]).await.status() }
    };
    assert_eq!(role("developer").await, StatusCode::SEE_OTHER);
    past_the_cache(&app);
    // Through the session and through their own keys: no admin key comes back.
    assert_eq!(roll_with_session(&dev, admin_key["id"].as_str().unwrap()).await.status(), StatusCode::FORBIDDEN);
    let writer_key = writer["key"].as_str().unwrap();
    assert_eq!(scopes_of(&app, writer_key).await, ["api_keys:write", "templates:write"]);
    assert_eq!(
        roll_with_key(&app, writer_key, admin_key["id"].as_str().unwrap()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(scopes_of(&app, admin_key["key"].as_str().unwrap()).await, Vec::<String>::new());
    let created = with_key(
        &app,
        reqwest::Method::POST,
        "/api/v1/api-keys",
        writer_key,
        json!({"name": "sneaky", "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Demoted to viewer: writes are gone wherever the key is checked.
    assert_eq!(role("viewer").await, StatusCode::SEE_OTHER);
    past_the_cache(&app);
    let verify = |scope: &'static str| {
        let app = &app;
        async move {
            let url = app.url(&format!("/auth/verify?scope={scope}"));
            app.other_client().client.get(url).header("X-API-Key", writer_key).send().await.unwrap().status()
        }
    };
    assert_eq!(verify("templates:write").await, StatusCode::FORBIDDEN);
    assert_eq!(scopes_of(&app, writer_key).await, Vec::<String>::new());
    let listed = with_key(&app, reqwest::Method::GET, "/api/v1/api-keys", writer_key, json!({})).await;
    assert_eq!(listed.status(), StatusCode::FORBIDDEN);
}
both!(a_demoted_member_keeps_only_what_the_new_role_allows);

async fn developers_manage_only_the_apps_they_registered(app: TestApp) {
    app.owner_session().await;
    let owners = register(&app, "confidential", REDIRECT, &["admin"]).await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let viewer = member(&app, "viewer@acme.test", "viewer").await;
    let page = format!("/settings/developer/oauth-apps/{}", owners.client_id);
    for who in [&dev, &viewer] {
        let attempts = [
            (
                page.clone(),
                vec![
                    ("name", "Acme Connector"),
                    ("redirect_uris", "http://127.0.0.1:9/callback\nhttps://evil.example/cb"),
                    ("scopes", "admin"),
                ],
            ),
            (format!("{page}/rotate"), vec![("grace", "0")]),
            (format!("{page}/delete"), vec![]),
        ];
        for (path, form) in attempts {
            let res = who.post_form("/settings/team", &path, &form).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
    }
    // The owner's app is untouched: its secret still works, its redirect URIs are the same.
    let token = client(&app, &owners, REDIRECT).exchange_client_credentials().request_async(&http()).await;
    assert!(token.is_ok(), "the owner's secret still works");
    let html = app.get_html(&page).await;
    assert!(!html.contains("evil.example"));
    // A developer manages the app they registered.
    let mine = register(&dev, "confidential", REDIRECT, &["templates:read"]).await;
    let res = dev
        .post_form(
            "/settings/team",
            &format!("/settings/developer/oauth-apps/{}/rotate", mine.client_id),
            &[("grace", "0")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
both!(developers_manage_only_the_apps_they_registered);

async fn removal_and_demotion_reach_oauth_grants(app: TestApp) {
    app.owner_session().await;
    let oauth_app =
        register(&app, "confidential", REDIRECT, &["templates:read", "templates:write", "api_keys:read"]).await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let c = client(&dev, &oauth_app, REDIRECT);
    let (code, _) = code_for(&dev, &c, &["templates:write", "api_keys:read"], None).await;
    let tokens = c.exchange_code(oauth2::AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    let access = tokens.access_token().secret().clone();
    let refresh = tokens.refresh_token().unwrap().clone();
    let dev_id = member_id(&app.get_html("/settings/team").await, "dev@acme.test");

    // Demotion narrows what the token does, at once and on refresh.
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{dev_id}/role"), &[("role", "viewer")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    past_the_cache(&app);
    assert_eq!(scopes_of(&app, &access).await, ["api_keys:read"]);
    let refreshed = c.exchange_refresh_token(&refresh).request_async(&http()).await.unwrap();
    assert_eq!(refreshed.scopes().unwrap().iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["api_keys:read"]);
    let access = refreshed.access_token().secret().clone();
    let refresh = refreshed.refresh_token().unwrap().clone();

    // Removal ends every grant: access, refresh and introspection.
    let res = app
        .post_form("/settings/team", &format!("/settings/team/members/{dev_id}/remove"), &[("keys", "revoke")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    past_the_cache(&app);
    assert_eq!(call(&app, "/api/v1/api-keys", &access).await.status(), StatusCode::UNAUTHORIZED);
    assert!(c.exchange_refresh_token(&refresh).request_async(&http()).await.is_err());
    let gateway = crate::helpers::service_key(&app, &["introspect"]);
    for t in [access.as_str(), refresh.secret().as_str()] {
        let info: Value = app
            .other_client()
            .client
            .post(app.url("/oauth/introspect"))
            .bearer_auth(&gateway)
            .form(&[("token", t)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["active"], false, "{t}");
    }
}
both!(removal_and_demotion_reach_oauth_grants);

async fn a_removed_members_keys_are_revoked_or_answered_for(app: TestApp) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let other = member(&app, "other@acme.test", "developer").await;
    let revoked = create_key(&dev, json!({"name": "dev key", "scopes": ["templates:write"]})).await;
    let kept = create_key(&other, json!({"name": "other key", "scopes": ["templates:write"]})).await;
    let page = app.get_html("/settings/team").await;
    assert!(page.contains("1 working key"), "the team page says how many they answer for");
    let (dev_id, other_id) = (member_id(&page, "dev@acme.test"), member_id(&page, "other@acme.test"));
    let asks = app.get_html(&format!("/settings/team/members/{dev_id}/remove")).await;
    assert!(asks.contains(r#"name="keys""#), "the removal's confirmation asks about their keys");
    assert!(asks.contains("1 working API key"), "and says how many they answer for");
    let remove = |id: String, keys: &'static str| {
        let app = &app;
        async move {
            let path = format!("/settings/team/members/{id}/remove");
            app.post_form("/settings/team", &path, &[("keys", keys)]).await.status()
        }
    };
    assert_eq!(remove(dev_id, "revoke").await, StatusCode::SEE_OTHER);
    assert_eq!(remove(other_id, "transfer").await, StatusCode::SEE_OTHER);
    past_the_cache(&app);
    assert_eq!(
        call(&app, "/api/v1/auth/test", revoked["key"].as_str().unwrap()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(scopes_of(&app, kept["key"].as_str().unwrap()).await, ["templates:write"]);
    let key: Value = app.get(&format!("/api/v1/api-keys/{}", kept["id"].as_str().unwrap())).await.json().await.unwrap();
    let owner_id = key["data"]["created_by"].as_str().unwrap().to_owned();
    let list = app.get_html("/settings/developer/api-keys").await;
    assert!(list.contains("owner@acme.test"), "the remover answers for the transferred key");
    assert!(!owner_id.is_empty());
}
both!(a_removed_members_keys_are_revoked_or_answered_for);

async fn admins_manage_developers_and_viewers_only(app: TestApp) {
    app.owner_session().await;
    let admin = member(&app, "admin1@acme.test", "admin").await;
    member(&app, "admin2@acme.test", "admin").await;
    member(&app, "dev@acme.test", "developer").await;
    let page = app.get_html("/settings/team").await;
    let (admin2, dev) = (member_id(&page, "admin2@acme.test"), member_id(&page, "dev@acme.test"));
    let forbidden = [
        (format!("/settings/team/members/{admin2}/role"), vec![("role", "developer")]),
        (format!("/settings/team/members/{admin2}/role"), vec![("role", "viewer")]),
        (format!("/settings/team/members/{admin2}/remove"), vec![("keys", "revoke")]),
        (format!("/settings/team/members/{dev}/role"), vec![("role", "admin")]),
        (format!("/settings/team/members/{dev}/role"), vec![("role", "owner")]),
    ];
    for (path, form) in forbidden {
        let res = admin.post_form("/settings/team", &path, &form).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
    }
    for role in ["admin", "owner"] {
        let res = admin
            .post_form("/settings/team", "/settings/team/invites", &[("email", "new@acme.test"), ("role", role)])
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "inviting an {role}");
        assert!(!res.text().await.unwrap().contains("/invite/"));
    }
    let after = app.get_html("/settings/team").await;
    let row = &after[after.find(r#"data-email="admin2@acme.test""#).unwrap()..];
    assert!(row[..row.find("</tr>").unwrap()].contains("role-admin"), "{after}");
    // What admins may do still works.
    let res =
        admin.post_form("/settings/team", &format!("/settings/team/members/{dev}/role"), &[("role", "viewer")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}
both!(admins_manage_developers_and_viewers_only);

async fn invites_do_not_outlive_their_inviters_rights(app: TestApp) {
    app.owner_session().await;
    let removed = member(&app, "admin1@acme.test", "admin").await;
    let demoted = member(&app, "admin2@acme.test", "admin").await;
    let link_removed = removed.invite("a@acme.test", "developer").await;
    let link_demoted = demoted.invite("b@acme.test", "viewer").await;
    let page = app.get_html("/settings/team").await;
    let (r, d) = (member_id(&page, "admin1@acme.test"), member_id(&page, "admin2@acme.test"));
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{r}/remove"), &[("keys", "revoke")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{d}/role"), &[("role", "developer")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for (link, email) in [(link_removed, "a@acme.test"), (link_demoted, "b@acme.test")] {
        let invitee = app.other_client();
        assert_ne!(invitee.get(&link).await.status(), StatusCode::OK, "{link}");
        let csrf = crate::helpers::csrf_from(&invitee.get_html("/login").await);
        let res =
            invitee.client.post(invitee.url(&link)).form(&[("password", "a fine password 123"), ("csrf_token", &csrf)]);
        assert_ne!(res.send().await.unwrap().status(), StatusCode::SEE_OTHER);
        assert_ne!(invitee.login(email, "a fine password 123").await.status(), StatusCode::SEE_OTHER);
    }
}
both!(invites_do_not_outlive_their_inviters_rights);

async fn only_owners_and_admins_see_the_teams_activity(app: TestApp) {
    app.owner_session().await;
    assert_ne!(app.other_client().login("owner@acme.test", "wrong password").await.status(), StatusCode::SEE_OTHER);
    for role in ["developer", "viewer"] {
        let m = member(&app, &format!("{role}@acme.test"), role).await;
        let page = m.get_html("/settings/team").await;
        assert!(!page.contains("Recent activity") && !page.contains("login.failed"), "{role}");
        assert_eq!(m.get("/settings/team/audit").await.status(), StatusCode::FORBIDDEN);
    }
    let admin = member(&app, "admin@acme.test", "admin").await;
    assert!(admin.get_html("/settings/team").await.contains("login.failed"));
}
both!(only_owners_and_admins_see_the_teams_activity);

async fn a_key_locked_to_addresses_hands_out_no_key_usable_elsewhere(app: TestApp) {
    app.owner_session().await;
    let locked = create_key(
        &app,
        json!({"name": "locked", "scopes": ["api_keys:write", "api_keys:read"], "allowed_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let open = create_key(&app, json!({"name": "open", "scopes": ["api_keys:read"]})).await;
    let locked_key = locked["key"].as_str().unwrap();
    let before = team_key_count(&app).await;
    for ranges in
        [json!(null), json!([]), json!(["0.0.0.0/0"]), json!(["127.0.0.0/8"]), json!(["127.0.0.1/32", "9.9.9.9"])]
    {
        let mut body = json!({"name": "escape", "scopes": ["api_keys:read"]});
        if !ranges.is_null() {
            body["allowed_ips"] = ranges.clone();
        }
        let res = with_key(&app, reqwest::Method::POST, "/api/v1/api-keys", locked_key, body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{ranges}");
    }
    // Rolling an unrestricted key would hand out an unrestricted secret.
    assert_eq!(
        roll_with_key(&app, locked_key, open["id"].as_str().unwrap()).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(team_key_count(&app).await, before, "nothing was created");
    // Within its own ranges it may.
    let body = json!({"name": "inside", "scopes": ["api_keys:read"], "allowed_ips": ["127.0.0.1"]});
    let res = with_key(&app, reqwest::Method::POST, "/api/v1/api-keys", locked_key, body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}
both!(a_key_locked_to_addresses_hands_out_no_key_usable_elsewhere);

fn consents_to(app: &TestApp, client_id: &str) -> i64 {
    use diesel::prelude::*;
    use latchkey::store::schema::oauth_consents;
    let id = client_id.to_owned();
    app.db()
        .run_sync(move |c| {
            oauth_consents::table
                .filter(oauth_consents::client_id.eq(id))
                .count()
                .get_result::<i64>(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
}

async fn a_removed_member_keeps_nothing_through_the_apps_they_registered(app: TestApp) {
    app.owner_session().await;
    let admin = member(&app, "admin@acme.test", "admin").await;
    let theirs = register(&admin, "confidential", REDIRECT, &["admin", "templates:read"]).await;
    let c = client(&app, &theirs, REDIRECT);
    let before = c.exchange_client_credentials().request_async(&http()).await.unwrap();
    let before = before.access_token().secret().clone();
    // The owner consented to their app: its next authorize link would not ask again.
    let (code, _) = code_for(&app, &c, &["templates:read"], None).await;
    c.exchange_code(oauth2::AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    assert_eq!(consents_to(&app, &theirs.client_id), 1);
    let id = member_id(&app.get_html("/settings/team").await, "admin@acme.test");
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{id}/remove"), &[("keys", "revoke")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The secret they know no longer works, their tokens are dead, consent must be given again.
    let again = c.exchange_client_credentials().add_scope(Scope::new("admin".into())).request_async(&http()).await;
    assert!(format!("{again:?}").contains("invalid_client"), "{again:?}");
    assert_eq!(call(&app, "/api/v1/auth/test", &before).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(consents_to(&app, &theirs.client_id), 0);
    // Its redirect URIs (their choice) are forgotten: it sends no one anywhere…
    let (url, _) = c.authorize_url(oauth2::CsrfToken::new_random).add_scope(Scope::new("templates:read".into())).url();
    let res = app.get(&url.as_str()[app.address.len()..]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "an error page, never a redirect");
    assert!(res.headers().get("location").is_none());
    // …until the remover, who answers for the app now, enters them again and rotates its secret.
    let page = format!("/settings/developer/oauth-apps/{}", theirs.client_id);
    let form = [("name", "Acme Connector"), ("redirect_uris", REDIRECT), ("scopes", "templates:read")];
    assert_eq!(app.post_form(&page, &page, &form).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.post_form(&page, &format!("{page}/rotate"), &[("grace", "0")]).await.status(), StatusCode::OK);
    let res = app.get(&url.as_str()[app.address.len()..]).await;
    assert_eq!(res.status(), StatusCode::OK, "the consent screen, not a silent redirect");
}
both!(a_removed_member_keeps_nothing_through_the_apps_they_registered);

async fn a_transfer_never_gives_back_what_a_demotion_took(app: TestApp) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let key = create_key(&dev, json!({"name": "dev key", "scopes": ["templates:write", "templates:read"]})).await;
    let id = member_id(&app.get_html("/settings/team").await, "dev@acme.test");
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{id}/role"), &[("role", "viewer")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{id}/remove"), &[("keys", "transfer")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    past_the_cache(&app);
    assert_eq!(scopes_of(&app, key["key"].as_str().unwrap()).await, ["templates:read"]);
}
both!(a_transfer_never_gives_back_what_a_demotion_took);

async fn an_expiring_key_hands_out_no_key_that_outlives_it(app: TestApp) {
    app.owner_session().await;
    let short = create_key(&app, json!({"name": "short", "scopes": ["api_keys:write"], "expires_in_days": 2})).await;
    let long = create_key(&app, json!({"name": "long", "scopes": ["api_keys:write"]})).await;
    let short_key = short["key"].as_str().unwrap();
    for body in [
        json!({"name": "forever", "scopes": ["api_keys:write"]}),
        json!({"name": "later", "scopes": ["api_keys:write"], "expires_in_days": 30}),
    ] {
        let res = with_key(&app, reqwest::Method::POST, "/api/v1/api-keys", short_key, body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(
        roll_with_key(&app, short_key, long["id"].as_str().unwrap()).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let body = json!({"name": "sooner", "scopes": ["api_keys:write"], "expires_in_days": 1});
    let res = with_key(&app, reqwest::Method::POST, "/api/v1/api-keys", short_key, body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}
both!(an_expiring_key_hands_out_no_key_that_outlives_it);

/// A request whose credential is revoked while its body is still on the way.
async fn slow_request_with(
    app: &TestApp,
    path: &str,
    credential: &str,
    body: &str,
    revoke: impl std::future::Future<Output = ()>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {credential}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    revoke.await;
    stream.write_all(&body.as_bytes()[3..]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn a_key_revoked_while_its_request_is_in_flight_does_not_act(app: TestApp) {
    app.owner_session().await;
    let victim = create_key(&app, json!({"name": "victim", "scopes": ["templates:read"]})).await;
    for path in ["/api/v1/api-keys".to_owned(), format!("/api/v1/api-keys/{}/roll", victim["id"].as_str().unwrap())] {
        let writer = create_key(
            &app,
            json!({"name": format!("w{}", path.len()), "scopes": ["api_keys:write", "templates:read"]}),
        )
        .await;
        let id = writer["id"].as_str().unwrap().to_owned();
        let revoke = async {
            let res = crate::api_keys::api_delete(&app, &format!("/api/v1/api-keys/{id}")).await;
            assert_eq!(res.status(), StatusCode::OK);
        };
        let body = r#"{"name":"minted in flight","scopes":["templates:read"],"grace_seconds":0}"#;
        let answer = slow_request_with(&app, &path, writer["key"].as_str().unwrap(), body, revoke).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
    }
    let names: Value = app.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    assert!(!names.to_string().contains("minted in flight"));
}
both!(a_key_revoked_while_its_request_is_in_flight_does_not_act);

async fn what_an_admin_learned_of_others_apps_dies_with_their_rights(app: TestApp) {
    app.owner_session().await;
    let owners = register(&app, "confidential", REDIRECT, &["admin", "templates:read"]).await;
    let page = format!("/settings/developer/oauth-apps/{}", owners.client_id);
    for (email, change) in [("removed@acme.test", "remove"), ("demoted@acme.test", "viewer")] {
        let admin = member(&app, email, "admin").await;
        // The admin rotates the owner's app (learning its secret) and adds a redirect URI.
        let res = admin.post_form(&page, &format!("{page}/rotate"), &[("grace", "0")]).await;
        assert_eq!(res.status(), StatusCode::OK);
        let secret = crate::helpers::attr_after(&res.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
        let theirs = "http://127.0.0.1:7777/cb";
        let uris = format!("{REDIRECT}\n{theirs}");
        let form = [
            ("name", "Acme Connector"),
            ("redirect_uris", uris.as_str()),
            ("scopes", "admin"),
            ("scopes", "templates:read"),
        ];
        assert_eq!(admin.post_form(&page, &page, &form).await.status(), StatusCode::SEE_OTHER, "{email}");
        let learned = crate::oauth::App { client_id: owners.client_id.clone(), secret: Some(secret) };
        let c = client(&app, &learned, theirs);
        let before =
            c.exchange_client_credentials().request_async(&http()).await.unwrap().access_token().secret().clone();
        // The owner consents once (remembered), and a code is still unused at the change.
        let (pending, _) = code_for(&app, &c, &["templates:read"], None).await;
        assert_eq!(consents_to(&app, &owners.client_id), 1);
        let id = member_id(&app.get_html("/settings/team").await, email);
        let path = if change == "remove" {
            format!("/settings/team/members/{id}/remove")
        } else {
            format!("/settings/team/members/{id}/role")
        };
        let form = if change == "remove" { [("keys", "revoke")] } else { [("role", "viewer")] };
        assert_eq!(app.post_form("/settings/team", &path, &form).await.status(), StatusCode::SEE_OTHER);
        let again = c.exchange_client_credentials().request_async(&http()).await;
        assert!(format!("{again:?}").contains("invalid_client"), "{email}: {again:?}");
        assert_eq!(call(&app, "/api/v1/auth/test", &before).await.status(), StatusCode::UNAUTHORIZED, "{email}");
        assert_eq!(consents_to(&app, &owners.client_id), 0, "{email}: consent must be given again");
        let unused = c.exchange_code(oauth2::AuthorizationCode::new(pending)).request_async(&http()).await;
        assert!(unused.is_err(), "{email}: an unused code of the app died too");
        // The owner restores the app by rotating its secret.
        assert_eq!(app.post_form(&page, &format!("{page}/rotate"), &[("grace", "0")]).await.status(), StatusCode::OK);
    }
}
both!(what_an_admin_learned_of_others_apps_dies_with_their_rights);

async fn a_code_issued_to_a_removed_members_app_cannot_be_redeemed(app: TestApp) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let theirs = register(&dev, "public", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &theirs, REDIRECT);
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let (code, _) = code_for(&app, &c, &["templates:read"], Some(challenge)).await;
    let id = member_id(&app.get_html("/settings/team").await, "dev@acme.test");
    let path = format!("/settings/team/members/{id}/remove");
    assert_eq!(app.post_form("/settings/team", &path, &[("keys", "revoke")]).await.status(), StatusCode::SEE_OTHER);
    let res =
        c.exchange_code(oauth2::AuthorizationCode::new(code)).set_pkce_verifier(verifier).request_async(&http()).await;
    assert!(res.is_err(), "{res:?}");
}
both!(a_code_issued_to_a_removed_members_app_cannot_be_redeemed);

async fn a_public_apps_redirect_uris_die_with_the_rights_of_who_chose_them(app: TestApp) {
    app.owner_session().await;
    let public = register(&app, "public", REDIRECT, &["templates:read"]).await;
    let page = format!("/settings/developer/oauth-apps/{}", public.client_id);
    let admin = member(&app, "admin@acme.test", "admin").await;
    let evil = "https://evil.example/cb";
    let uris = format!("{REDIRECT}\n{evil}");
    let form = [("name", "Acme Connector"), ("redirect_uris", uris.as_str()), ("scopes", "templates:read")];
    assert_eq!(admin.post_form(&page, &page, &form).await.status(), StatusCode::SEE_OTHER);
    let id = member_id(&app.get_html("/settings/team").await, "admin@acme.test");
    let path = format!("/settings/team/members/{id}/role");
    assert_eq!(app.post_form("/settings/team", &path, &[("role", "viewer")]).await.status(), StatusCode::SEE_OTHER);
    for target in [evil, REDIRECT] {
        let url = format!(
            "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            public.client_id,
            latchkey::web::auth::url_encode(target)
        );
        let res = app.get(&url).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{target}");
        assert!(res.headers().get("location").is_none(), "{target}");
    }
    // A developer demoted to viewer loses the app they registered too.
    let dev = member(&app, "dev@acme.test", "developer").await;
    let mine = register(&dev, "confidential", REDIRECT, &["templates:read"]).await;
    let id = member_id(&app.get_html("/settings/team").await, "dev@acme.test");
    let path = format!("/settings/team/members/{id}/role");
    assert_eq!(app.post_form("/settings/team", &path, &[("role", "viewer")]).await.status(), StatusCode::SEE_OTHER);
    let res = client(&app, &mine, REDIRECT).exchange_client_credentials().request_async(&http()).await;
    assert!(format!("{res:?}").contains("invalid_client"), "{res:?}");
}
both!(a_public_apps_redirect_uris_die_with_the_rights_of_who_chose_them);

async fn writes_racing_a_removal_never_outlive_it(app: TestApp) {
    app.owner_session().await;
    let owners = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let page = format!("/settings/developer/oauth-apps/{}", owners.client_id);
    for round in 0..4 {
        let email = format!("racer{round}@acme.test");
        let admin = member(&app, &email, "admin").await;
        let csrf = crate::helpers::csrf_from(&admin.get_html(&page).await);
        let id = member_id(&app.get_html("/settings/team").await, &email);
        let owner_csrf = crate::helpers::csrf_from(&app.get_html("/settings/team").await);
        let rotations = (0..10).map(|_| {
            let form = [("grace", "0".to_owned()), ("csrf_token", csrf.clone())];
            admin.client.post(admin.url(&format!("{page}/rotate"))).form(&form).send()
        });
        let removal = app
            .client
            .post(app.url(&format!("/settings/team/members/{id}/remove")))
            .form(&[("keys", "revoke"), ("csrf_token", owner_csrf.as_str())])
            .send();
        let (answers, removed) = tokio::join!(futures_util::future::join_all(rotations), removal);
        assert_eq!(removed.unwrap().status(), StatusCode::SEE_OTHER);
        for answer in answers {
            let Ok(answer) = answer else { continue };
            let Some(secret) = crate::helpers::attr_after(&answer.text().await.unwrap(), r#"<code id="secret">"#)
            else {
                continue;
            };
            let learned = crate::oauth::App { client_id: owners.client_id.clone(), secret: Some(secret) };
            let res = client(&app, &learned, REDIRECT).exchange_client_credentials().request_async(&http()).await;
            assert!(res.is_err(), "round {round}: a secret learned in the race still works");
        }
        // The owner restores the app for the next round.
        let form = [("name", "Acme Connector"), ("redirect_uris", REDIRECT), ("scopes", "templates:read")];
        assert_eq!(app.post_form(&page, &page, &form).await.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.post_form(&page, &format!("{page}/rotate"), &[("grace", "0")]).await.status(), StatusCode::OK);
    }
}
both!(writes_racing_a_removal_never_outlive_it);
