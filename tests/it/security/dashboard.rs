//! The dashboard as an attacker uses it: confirmation pages (GET on a
//! destructive action's URL) that must change nothing and show nothing the
//! caller may not act on; names, descriptions and reasons that try to become
//! markup; a scope picker pushed past the role's ceiling; whole secrets that
//! try to reach an address bar.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{DEV_PASSWORD, member, member_id};
use crate::api_keys::{call, create_key};
use crate::both;
use crate::helpers::{OWNER_EMAIL, TestApp};

async fn audit_count(app: &TestApp) -> usize {
    app.get_html("/settings/team/audit").await.matches("class=\"event\"").count()
}

/// GET with and without htmx's headers (the dialog fragment and the page).
async fn both_ways(who: &TestApp, path: &str) -> [StatusCode; 2] {
    let page = who.get(path).await.status();
    let fragment = who.client.get(who.url(path)).header("HX-Request", "true").send().await.unwrap().status();
    [page, fragment]
}

async fn confirmation_pages_change_nothing_and_hide_what_the_caller_may_not_touch(app: TestApp) {
    app.owner_session().await;
    let owners = create_key(&app, json!({"name": "Owner's key", "scopes": ["templates:read"]})).await;
    let (owners_id, owners_secret) = (owners["id"].as_str().unwrap(), owners["key"].as_str().unwrap());
    let registered = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let viewer = member(&app, "viewer@acme.test", "viewer").await;
    let devs = create_key(&dev, json!({"name": "Dev's key", "scopes": ["templates:read"]})).await;
    let devs_id = devs["id"].as_str().unwrap();
    let team = app.get_html("/settings/team").await;
    let owner_id = member_id(&team, OWNER_EMAIL);
    let dev_id = member_id(&team, "dev@acme.test");
    let before = audit_count(&app).await;

    let keys = "/settings/developer/api-keys";
    let apps = "/settings/developer/oauth-apps";
    // Not theirs to act on: refused as page and as dialog (404, or 403 for an
    // object of their own team they may read but not change, as the POST
    // answers), with no name in it.
    let refused: Vec<(&TestApp, String)> = vec![
        (&dev, format!("{keys}/{owners_id}/revoke")),
        (&dev, format!("{keys}/{owners_id}/roll")),
        (&viewer, format!("{keys}/{devs_id}/revoke")),
        (&viewer, format!("{keys}/{owners_id}/roll")),
        (&dev, format!("{apps}/{}/rotate", registered.client_id)),
        (&dev, format!("{apps}/{}/delete", registered.client_id)),
        (&viewer, format!("{apps}/{}/rotate", registered.client_id)),
        (&dev, format!("/settings/team/members/{owner_id}/remove")),
        (&viewer, format!("/settings/team/members/{dev_id}/remove")),
        // Members are not support staff.
        (&app, format!("/support/keys/{owners_id}/revoke")),
    ];
    for (who, path) in &refused {
        for status in both_ways(who, path).await {
            assert!(status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN, "{path}: {status}");
        }
        let body = who.get(path).await.text().await.unwrap();
        assert!(!body.contains("Owner's key") && !body.contains("Acme Connector"), "{path} leaks a name");
    }
    // The sole owner cannot be removed: not asked about it, sent back to the
    // team page with the reason.
    let res = app.get(&format!("/settings/team/members/{owner_id}/remove")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&res), "/settings/team");
    // Theirs: the confirmation, and still nothing changes.
    let allowed: Vec<(&TestApp, String)> = vec![
        (&dev, format!("{keys}/{devs_id}/revoke")),
        (&dev, format!("{keys}/{devs_id}/roll")),
        (&app, format!("{keys}/{owners_id}/revoke")),
        (&app, format!("{keys}/{owners_id}/roll")),
        (&app, format!("{apps}/{}/rotate", registered.client_id)),
        (&app, format!("{apps}/{}/delete", registered.client_id)),
        (&app, format!("/settings/team/members/{dev_id}/remove")),
        (&app, "/settings/security/sessions/revoke-others".to_owned()),
    ];
    for (who, path) in &allowed {
        for status in both_ways(who, path).await {
            assert_eq!(status, StatusCode::OK, "{path}");
        }
    }
    assert_eq!(call(&app, "/api/v1/auth/test", owners_secret).await.status(), StatusCode::OK, "the key still works");
    assert_eq!(call(&app, "/api/v1/auth/test", devs["key"].as_str().unwrap()).await.status(), StatusCode::OK);
    assert_eq!(dev.get("/settings/team").await.status(), StatusCode::OK, "the developer is still a member");
    assert_eq!(viewer.get("/settings/team").await.status(), StatusCode::OK, "the other session still works");
    let app_page = app.get_html(&format!("{apps}/{}", registered.client_id)).await;
    assert!(app_page.contains("Acme Connector"), "the app still exists");
    assert_eq!(audit_count(&app).await, before, "no GET recorded an action");
}
both!(confirmation_pages_change_nothing_and_hide_what_the_caller_may_not_touch);

async fn names_descriptions_and_reasons_render_as_text_never_as_markup(app: TestApp) {
    app.owner_session().await;
    let evil_name = r#"<img src=x onerror=alert(1)>"#;
    let evil_text = r#""><script>alert(2)</script>"#;
    let key =
        create_key(&app, json!({"name": evil_name, "description": evil_text, "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    let page = format!("/settings/developer/api-keys/{id}");
    let res = app.post_form(&page, &format!("{page}/rename"), &[("name", evil_text), ("description", evil_name)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let staff = crate::support::support_user(&app).await;
    let res = staff
        .post_form(&format!("/support/keys/{id}"), &format!("/support/keys/{id}/revoke"), &[("reason", evil_text)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let views: Vec<(&TestApp, String)> = vec![
        (&app, "/settings/developer/api-keys".to_owned()),
        (&app, page.clone()),
        (&app, format!("{page}/roll")),
        (&app, "/settings/team/audit".to_owned()),
        (&app, "/settings/team".to_owned()),
        (&staff, format!("/support/keys/{id}")),
        (&staff, format!("/support/keys/{id}/revoke")),
        (&staff, "/support?q=acme".to_owned()),
    ];
    for (who, path) in &views {
        for hx in [false, true] {
            let mut req = who.client.get(who.url(path));
            if hx {
                req = req.header("HX-Request", "true");
            }
            let html = req.send().await.unwrap().text().await.unwrap();
            assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "{path} (htmx {hx}): markup");
        }
    }
}
both!(names_descriptions_and_reasons_render_as_text_never_as_markup);

async fn form_scopes(who: &TestApp, fields: &[(&str, &str)]) -> (StatusCode, Vec<Vec<String>>) {
    let res = who.post_form("/settings/developer/api-keys", "/settings/developer/api-keys", fields).await;
    let status = res.status();
    let list: Value = who.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    let scopes = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .collect();
    (status, scopes)
}

async fn the_scope_picker_never_grants_beyond_the_role_nor_admin_unasked(app: TestApp) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    // Full access for a developer: the developer's ceiling, never admin.
    let (status, keys) = form_scopes(&dev, &[("name", "dev full"), ("preset", "full")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].iter().any(|s| s == "admin"), "{keys:?}");
    // Beyond the ceiling or contradicting itself, however submitted: refused,
    // nothing created.
    for fields in [
        vec![("name", "a"), ("preset", "custom"), ("scopes", "admin")],
        vec![("name", "b"), ("scopes", "admin")],
        vec![("name", "c"), ("preset", "full"), ("scopes", "admin")],
        vec![("name", "d"), ("preset", "read_only"), ("scopes", "api_keys:write")],
        vec![("name", "e"), ("preset", "everything"), ("scopes", "templates:read")],
        vec![("name", "f"), ("preset", "custom"), ("scopes", "not:a-scope")],
    ] {
        let (status, keys) = form_scopes(&dev, &fields).await;
        assert!(status.is_client_error(), "{fields:?} → {status}");
        assert_eq!(keys.len(), 1, "{fields:?} created a key");
    }
    // A preview never creates, whatever else it carries.
    let (status, keys) = form_scopes(&dev, &[("name", "g"), ("preset", "full"), ("intent", "preview")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys.len(), 1);
    // The owner's Full access has no admin; admin only when ticked alone in Custom.
    let (_, keys) = form_scopes(&app, &[("name", "owner full"), ("preset", "full")]).await;
    assert!(keys.iter().all(|k| !k.contains(&"admin".to_owned())), "{keys:?}");
    let _ = DEV_PASSWORD;
}
both!(the_scope_picker_never_grants_beyond_the_role_nor_admin_unasked);

async fn a_whole_secret_never_reaches_an_address_or_a_page(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Leaky", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap();
    // The keys list search: refused, dropped from the address, not echoed.
    let res = app.get(&format!("/settings/developer/api-keys?q={secret}")).await;
    let location = crate::helpers::location(&res);
    assert!(res.status().is_redirection() && !location.contains(secret), "{location}");
    assert!(!app.get_html(&location).await.contains(secret));
    let res = app.get(&format!("/settings/developer/api-keys?q=prefix%20{secret}")).await;
    assert!(!crate::helpers::location(&res).contains(secret));
    // Support: by POST only; a GET is refused without echo.
    let staff = crate::support::support_user(&app).await;
    let res = staff.get(&format!("/support?q={secret}")).await;
    assert!(res.status().is_client_error());
    assert!(!res.text().await.unwrap().contains(secret));
    let res = staff.post_form("/support", "/support/search", &[("q", secret)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("location").is_none());
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains("Leaky") && !html.contains(secret), "found by hash, never echoed");
    // Without the CSRF token the search is refused.
    let res = staff.client.post(staff.url("/support/search")).form(&[("q", secret)]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
both!(a_whole_secret_never_reaches_an_address_or_a_page);

async fn a_key_history_shows_where_actions_came_from_only_to_audit_readers(app: TestApp) {
    app.owner_session().await;
    let dev = member(&app, "dev@acme.test", "developer").await;
    let key = create_key(&dev, json!({"name": "Dev key", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap();
    let staff = crate::support::support_user(&app).await;
    let res = staff
        .post_form(&format!("/support/keys/{id}"), &format!("/support/keys/{id}/revoke"), &[("reason", "leaked")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = format!("/settings/developer/api-keys/{id}");
    // A developer (not an audit reader): when, who and what — no address,
    // device or details, for their own action as for support's.
    let html = dev.get_html(&page).await;
    assert!(html.contains("created key") && html.contains("Latchkey support"), "{html}");
    assert!(!html.contains("event-ip") && !html.contains("event-device") && !html.contains("event-details"), "{html}");
    // The owner: the developer's address, never support's.
    let html = app.get_html(&page).await;
    assert_eq!(html.matches("class=\"event-ip\"").count(), 1, "{html}");
    let audit = app.get_html("/settings/team/audit").await;
    let support_event = &audit[audit.find("data-action=\"api_key.revoked_by_support\"").unwrap()..];
    let support_event = &support_event[..support_event.find("</li>").unwrap()];
    assert!(!support_event.contains("event-ip") && !support_event.contains("event-device"), "{support_event}");
    // Nor in the CSV export.
    let csv = app.get("/settings/team/audit?format=csv").await.text().await.unwrap();
    let row = csv.lines().find(|l| l.contains("api_key.revoked_by_support")).unwrap();
    assert!(!row.contains("127.0.0.1") && !row.contains("reqwest"), "{row}");
    assert!(csv.lines().any(|l| l.contains("api_key.created") && l.contains("127.0.0.1")), "{csv}");
    // Support sees everything.
    let html = staff.get_html(&format!("/support/keys/{id}")).await;
    assert_eq!(html.matches("class=\"event-ip\"").count(), 2);
    let _ = DEV_PASSWORD;
}
both!(a_key_history_shows_where_actions_came_from_only_to_audit_readers);

async fn a_key_pasted_with_words_around_it_is_found_by_hash_and_never_echoed(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Pasted", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap();
    let staff = crate::support::support_user(&app).await;
    let (head, tail) = secret.split_at(20);
    let joined: String = secret.chars().map(|c| format!("{c}\u{200D}")).collect();
    for pasted in [
        format!("{secret}."),
        format!("key: {secret}"),
        format!("\"{secret}\""),
        format!("<{secret}>"),
        format!("{head}\u{00AD}{tail}"),
        format!("{head}\u{200B}{tail}"),
        format!("{head} {tail}"),
        format!("{head}\u{2014}{tail}"),
        format!("{}.{}", &secret[..11], &secret[11..]),
        joined,
    ] {
        let res = staff.post_form("/support", "/support/search", &[("q", &pasted)]).await;
        assert_eq!(res.status(), StatusCode::OK, "{pasted}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Pasted") && !html.contains(secret) && !html.contains(head),
            "{pasted}: found, not echoed"
        );
        let res = staff.get(&format!("/support?q={}", latchkey::web::auth::url_encode(&pasted))).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{pasted}");
        assert!(!res.text().await.unwrap().contains(head), "{pasted}: refused without echo");
    }
    // People with an underscore in their address are still found (by GET too).
    member(&app, "jane_macdonald@acme.test", "viewer").await;
    let res = staff.get("/support?q=jane_macdonald%40acme.test").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("/support/users/"), "found");
    // A secret-length word that is not a valid key is not searched as text either.
    let fake = format!("lk_{}", "A".repeat(36));
    let html = staff.post_form("/support", "/support/search", &[("q", &fake)]).await.text().await.unwrap();
    assert!(!html.contains(&fake));
}
both!(a_key_pasted_with_words_around_it_is_found_by_hash_and_never_echoed);

async fn control_characters_in_the_key_search_are_a_field_error(app: TestApp) {
    app.owner_session().await;
    create_key(&app, json!({"name": "One", "scopes": ["templates:read"]})).await;
    for q in ["%00", "a%00b", "%1b%5B31m"] {
        let res = app.get(&format!("/settings/developer/api-keys?q={q}")).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert!(res.text().await.unwrap().contains(r#"id="q-error""#), "{q}");
    }
}
both!(control_characters_in_the_key_search_are_a_field_error);

async fn not_you_on_the_consent_screen_signs_out_and_comes_back_to_the_request(app: TestApp) {
    app.owner_session().await;
    let registered = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let request = format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=templates:read&state=s",
        registered.client_id,
        latchkey::web::auth::url_encode(crate::oauth::REDIRECT)
    );
    let html = app.get_html(&request).await;
    assert!(html.contains(r#"id="switch-account""#), "{html}");
    let next = crate::helpers::attr_after(&html, r#"name="next" value=""#).unwrap();
    let res = app.post_form(&request, "/logout", &[("next", &next.replace("&amp;", "&"))]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = crate::helpers::location(&res);
    assert!(to.starts_with("/login?next=%2Foauth%2Fauthorize"), "{to}");
    assert!(app.get("/settings/team").await.status().is_redirection(), "signed out");
    // Never an open redirect.
    app.login(OWNER_EMAIL, crate::helpers::OWNER_PASSWORD).await;
    let res = app.post_form("/settings/team", "/logout", &[("next", "https://evil.example/")]).await;
    assert_eq!(crate::helpers::location(&res), "/login");
}
both!(not_you_on_the_consent_screen_signs_out_and_comes_back_to_the_request);
