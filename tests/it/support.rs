//! Support console, leak reports and the team audit log.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, call, create_key, post_json_with};
use crate::both;
use crate::helpers::{OWNER_EMAIL, TestApp, attr_after, csrf_from, service_key};

pub const SUPPORT_EMAIL: &str = "help@latchkey.test";
pub const SUPPORT_PASSWORD: &str = "support staff password";

/// How an audit event starts on a page (`partials/audit_events_partial.html`).
const EVENT: &str = r#"<li class="event""#;

/// How many audit events a page shows.
fn events_in(html: &str) -> usize {
    html.matches(EVENT).count()
}

/// A signed-in support user on a fresh client.
pub async fn support_user(app: &TestApp) -> TestApp {
    let hash = latchkey::service::password::hash(&mut Default::default(), SUPPORT_PASSWORD).unwrap();
    app.db().run_sync(|c| latchkey::service::accounts::create_user(c, SUPPORT_EMAIL, hash, true, None)).unwrap();
    let staff = app.other_client();
    assert_eq!(staff.login(SUPPORT_EMAIL, SUPPORT_PASSWORD).await.status(), StatusCode::SEE_OTHER);
    staff
}

async fn the_console_is_not_found_for_everyone_but_support(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let paths =
        ["/support".to_owned(), "/support?q=acme".to_owned(), format!("/support/keys/{}", key["id"].as_str().unwrap())];
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let viewer = crate::accounts::member(&app, "viewer@acme.test", "viewer").await;
    let anonymous = app.other_client();
    for who in [&app, &dev, &viewer, &anonymous] {
        for path in &paths {
            assert_eq!(who.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
    let res = app
        .post_form(
            "/settings/team",
            &format!("/support/keys/{}/revoke", key["id"].as_str().unwrap()),
            &[("reason", "x")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let staff = support_user(&app).await;
    for path in &paths {
        assert_eq!(staff.get(path).await.status(), StatusCode::OK, "{path}");
    }
    // Support staff have no team: no key creation, no team pages, none in the navigation.
    let console = staff.get_html("/support").await;
    let nav = &console[console.find("<nav").unwrap()..console.find("</nav>").unwrap()];
    assert!(nav.contains(r#"href="/support""#) && nav.contains(r#"href="/settings/security""#));
    assert!(!nav.contains("/settings/team") && !nav.contains("/settings/developer"));
    assert_eq!(staff.get("/settings/developer/api-keys").await.status(), StatusCode::FORBIDDEN);
    let csrf = csrf_from(&staff.get_html("/support").await);
    let body = json!({"name": "x", "scopes": ["templates:read"]});
    let res = post_json_with(&staff, "/api/v1/api-keys", ("X-CSRF-Token", &csrf), &body).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
both!(the_console_is_not_found_for_everyone_but_support);

async fn support_finds_keys_by_prefix_whole_key_team_and_email(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "leaky", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let staff = support_user(&app).await;
    let by_prefix = staff.get_html(&format!("/support?q={}", &secret[..11])).await;
    assert!(
        by_prefix.contains(&format!("/support/keys/{}", key["id"].as_str().unwrap())) && by_prefix.contains("Acme")
    );
    let by_key = staff.post_form("/support", "/support/search", &[("q", &secret)]).await;
    assert_eq!(by_key.status(), StatusCode::OK);
    assert_eq!(by_key.headers()["cache-control"], "no-store");
    let by_key = by_key.text().await.unwrap();
    assert!(by_key.contains(&format!("/support/keys/{}", key["id"].as_str().unwrap())));
    assert!(!by_key.contains(&secret), "the pasted key is not echoed");
    let unknown = latchkey::service::keys::codec::generate("lk").unwrap();
    let res = staff.post_form("/support", "/support/search", &[("q", &unknown)]).await;
    assert!(res.text().await.unwrap().contains("No key of ours matches what you pasted"));
    let by_team = staff.get_html("/support?q=acm").await;
    let team_link = attr_after(&by_team, r#"<li><a href="/support/teams/"#).unwrap();
    let by_email = staff.get_html("/support?q=owner%40").await;
    assert!(by_email.contains(OWNER_EMAIL));
    let team_page = staff.get_html(&format!("/support/teams/{team_link}")).await;
    assert!(team_page.contains("leaky") && team_page.contains(OWNER_EMAIL) && team_page.contains("api_key.created"));
    assert!(team_page.contains("created key") && team_page.contains(">Owner<"), "sentences and role labels");
    let key_page = staff.get_html(&format!("/support/keys/{}", key["id"].as_str().unwrap())).await;
    assert!(
        key_page.contains("templates:read")
            && key_page.contains(OWNER_EMAIL)
            && key_page.contains("Requests, last 30 days")
    );
    assert!(!key_page.contains(&secret));
    for bad in ["/support?q=", "/support?q=%20%20"] {
        assert_eq!(staff.get(bad).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let long = format!("/support?q={}", "x".repeat(201));
    assert_eq!(staff.get(&long).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
both!(support_finds_keys_by_prefix_whole_key_team_and_email);

async fn revoking_with_a_reason_takes_effect_at_once_and_the_team_sees_why(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "pasted", "scopes": ["templates:read"]})).await;
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
    let staff = support_user(&app).await;
    let page = format!("/support/keys/{id}");
    let empty = staff.post_form(&page, &format!("/support/keys/{id}/revoke"), &[("reason", "  ")]).await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK, "nothing changed");
    let res = staff
        .post_form(&page, &format!("/support/keys/{id}/revoke"), &[("reason", "Found in a public GitHub repo")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::UNAUTHORIZED);
    let list = app.get_html("/settings/developer/api-keys").await;
    assert!(list.contains("Revoked by Latchkey support: Found in a public GitHub repo"));
    let audit = app.get_html("/settings/team/audit").await;
    assert!(audit.contains("api_key.revoked_by_support") && audit.contains("Latchkey support"));
    assert!(!audit.contains(SUPPORT_EMAIL), "the team never sees who in support acted");
}
both!(revoking_with_a_reason_takes_effect_at_once_and_the_team_sees_why);

async fn leak_reports_answer_per_candidate_without_naming_teams(app: TestApp) {
    app.owner_session().await;
    let live = create_key(&app, json!({"name": "live", "scopes": ["templates:read"]})).await;
    let dead = create_key(&app, json!({"name": "dead", "scopes": ["templates:read"]})).await;
    api_delete(&app, &format!("/api/v1/api-keys/{}", dead["id"].as_str().unwrap())).await;
    let scanner = service_key(&app, &["leaks:report"]);
    let unknown = latchkey::service::keys::codec::generate("lk").unwrap();
    let body = json!({"keys": [live["key"], dead["key"], unknown, "not a key", live["key"]], "url": "https://github.com/acme/app/blob/main/.env"});
    let report = |key: String, body: Value| {
        let app = app.other_client();
        async move { app.client.post(app.url("/api/v1/leaked-keys")).bearer_auth(key).json(&body).send().await.unwrap() }
    };
    let res = report(scanner.clone(), body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains("team"), "no team revealed: {text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    let outcomes: Vec<&str> =
        json["data"]["results"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["revoked", "already_inactive", "not_found", "malformed", "already_inactive"]);
    assert_eq!(call(&app, "/api/v1/auth/test", live["key"].as_str().unwrap()).await.status(), StatusCode::UNAUTHORIZED);
    let list = app.get_html("/settings/developer/api-keys").await;
    assert!(list.contains("Revoked automatically: reported as leaked at https://github.com/acme/app/blob/main/.env"));

    let too_many: Vec<String> = (0..1001).map(|i| format!("candidate-{i}")).collect();
    let (status, json) = {
        let r = report(scanner.clone(), json!({"keys": too_many})).await;
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json["error"]["fields"]["keys"].is_string());
    let thousand: Vec<String> = (0..1000).map(|i| format!("candidate-{i}")).collect();
    assert_eq!(report(scanner.clone(), json!({"keys": thousand})).await.status(), StatusCode::OK);
    assert_eq!(report(scanner, json!({"url": "x"})).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Only a service key with leaks:report may report.
    assert_eq!(
        report(service_key(&app, &["introspect"]), json!({"keys": ["x"]})).await.status(),
        StatusCode::FORBIDDEN
    );
    let team_key = create_key(&app, json!({"name": "t", "scopes": ["admin"]})).await;
    assert_eq!(
        report(team_key["key"].as_str().unwrap().to_owned(), json!({"keys": ["x"]})).await.status(),
        StatusCode::FORBIDDEN
    );
}
both!(leak_reports_answer_per_candidate_without_naming_teams);

async fn the_audit_log_filters_pages_and_exports_csv(app: TestApp) {
    app.owner_session().await;
    for i in 0..26 {
        let key = create_key(&app, json!({"name": format!("k{i}"), "scopes": ["templates:read"]})).await;
        api_delete(&app, &format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap())).await;
    }
    let first = app.get_html("/settings/team/audit").await;
    assert_eq!(events_in(&first), 50);
    let next = attr_after(&first, r#"id="next-page" href=""#)
        .or_else(|| {
            attr_after(&first, r#"<a href="/settings/team/audit?"#).map(|s| format!("/settings/team/audit?{s}"))
        })
        .unwrap();
    let next = next.replace("&amp;", "&");
    let second = app.get_html(&next).await;
    assert!(events_in(&second) >= 3, "older events on page two");
    let revoked = app.get_html("/settings/team/audit?action=api_key.revoked").await;
    assert_eq!(events_in(&revoked), 26);
    let prefix = app.get_html("/settings/team/audit?action=api_key.").await;
    assert_eq!(events_in(&prefix), 50);
    assert!(app.get_html("/settings/team/audit?actor=nobody").await.contains("No events match."));
    let today = latchkey::web::format::date(latchkey::store::now());
    assert_eq!(
        events_in(&app.get_html(&format!("/settings/team/audit?action=setup.completed&from={today}&to={today}")).await),
        1
    );
    assert!(app.get_html("/settings/team/audit?from=2001-01-01&to=2001-01-02").await.contains("No events match."));
    let bad = app.get("/settings/team/audit?from=yesterday").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("Use a date like"));
    let csv = app.get("/settings/team/audit?action=api_key.revoked&format=csv").await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "id,time,actor,action,object_type,object_id,ip,user_agent,details");
    assert_eq!(lines.len(), 27);
    assert!(
        lines[1].contains(&format!("\"{OWNER_EMAIL}\""))
            && lines[1].contains("\"api_key.revoked\"")
            && lines[1].contains("\"127.0.0.1\"")
    );
    // Links to objects.
    assert!(revoked.contains(r#"<a href="/settings/developer/api-keys/key_"#));
    // Developers cannot read it; support can, for any team.
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    assert_eq!(dev.get("/settings/team/audit").await.status(), StatusCode::FORBIDDEN);
    let staff = support_user(&app).await;
    let team = attr_after(&staff.get_html("/support?q=acme").await, r#"<li><a href="/support/teams/"#).unwrap();
    let support_view = staff.get_html(&format!("/support/teams/{team}/audit?action=api_key.revoked")).await;
    assert_eq!(events_in(&support_view), 26);
    assert!(support_view.contains(r#"<a href="/support/keys/key_"#));
}
both!(the_audit_log_filters_pages_and_exports_csv);

async fn the_audit_actor_filter_finds_every_actor_whose_email_contains_the_text(app: TestApp) {
    app.owner_session().await;
    let dev = crate::accounts::member(&app, "dev@acme.test", "developer").await;
    create_key(&dev, json!({"name": "by dev", "scopes": ["templates:read"]})).await;
    create_key(&app, json!({"name": "by owner", "scopes": ["templates:read"]})).await;
    let page = app.get_html("/settings/team/audit?actor=ACME.test&action=api_key.created").await;
    let rows: Vec<&str> = page.split(EVENT).skip(1).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].contains(OWNER_EMAIL) && rows[1].contains("dev@acme.test"), "both actors, newest first");
    let page = app.get_html("/settings/team/audit?actor=dev@&action=api_key.").await;
    let rows: Vec<&str> = page.split(EVENT).skip(1).collect();
    assert!(rows.len() == 1 && rows[0].contains("dev@acme.test"));
}
both!(the_audit_actor_filter_finds_every_actor_whose_email_contains_the_text);

async fn keys_expiring_within_a_week_are_flagged(app: TestApp) {
    app.owner_session().await;
    create_key(&app, json!({"name": "soon", "scopes": ["templates:read"], "expires_in_days": 3})).await;
    create_key(&app, json!({"name": "later", "scopes": ["templates:read"], "expires_in_days": 30})).await;
    let list: Value = app.get("/api/v1/api-keys?status=expiring").await.json().await.unwrap();
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["soon"]);
    assert!(app.get_html("/settings/developer/api-keys").await.contains("Expiring soon"));
    let staff = support_user(&app).await;
    let id = list["data"][0]["id"].as_str().unwrap();
    let page = staff.get_html(&format!("/support/keys/{id}")).await;
    assert!(page.contains(">Expiring soon<") && !page.contains(">expiring_soon<"), "statuses in words");
}
both!(keys_expiring_within_a_week_are_flagged);

/// The log's search by action prefix and actor text reads one index range
/// per (action, actor) pair up to a bound, and past it matches the text row
/// by row: both ways give exactly what a scan of the team's log gives.
async fn the_audit_search_by_prefix_and_actor_matches_a_scan_of_the_log(app: TestApp) {
    use latchkey::domain::AuditAction;
    use latchkey::service::audit::{Actor, Event, record_at};
    use latchkey::store::models::{ActionFilter, AuditEvent, AuditFilter};
    let actions = [AuditAction::ApiKeyCreated, AuditAction::ApiKeyRolled, AuditAction::ApiKeyRevoked];
    let all = app
        .db()
        .run_sync(move |c| {
            for i in 0..40i64 {
                let actor = Actor { label: format!("API key lk_x{i:02} (worker)"), ..Actor::default() };
                for (n, action) in actions.iter().enumerate() {
                    let at = 1_700_000_000 + i * 10 + n as i64;
                    record_at(c, &actor, Event::new(*action).team("team_search"), at).unwrap();
                }
                let other = Actor { label: format!("API key lk_x{i:02} (worker)"), ..Actor::default() };
                record_at(c, &other, Event::new(AuditAction::ApiKeyCreated).team("team_other"), 1_700_000_000).unwrap();
            }
            AuditEvent::search(c, "team_search", &AuditFilter::default(), 10_000)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap();
    assert_eq!(all.len(), 120);
    for (actor, limit) in [("api KEY", 50), ("lk_x07 ", 50), ("lk_x1", 7), ("nobody", 50)] {
        let f = AuditFilter {
            actor: Some(actor.to_owned()),
            action: Some(ActionFilter::Prefix("api_key.".into())),
            ..AuditFilter::default()
        };
        let found = app.db().run_sync(move |c| {
            AuditEvent::search(c, "team_search", &f, limit).map_err(latchkey::store::StoreError::from)
        });
        let found: Vec<i64> = found.unwrap().iter().map(|e| e.id).collect();
        let needle = actor.to_lowercase();
        let expected: Vec<i64> = all
            .iter()
            .filter(|e| e.actor_label.to_lowercase().contains(&needle) && e.action.starts_with("api_key."))
            .take(usize::try_from(limit).unwrap())
            .map(|e| e.id)
            .collect();
        assert_eq!(found, expected, "actor {actor:?}, limit {limit}");
    }
}
both!(the_audit_search_by_prefix_and_actor_matches_a_scan_of_the_log);

/// A page's text without tags, entities decoded, whitespace collapsed.
pub fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out.replace("&#x27;", "'").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">");
    out.replace("&amp;", "&").split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn a_whole_key_is_searched_only_by_post_and_never_lands_in_an_address(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "pasted", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let staff = support_user(&app).await;
    let console = staff.get_html("/support").await;
    assert!(console.contains(r#"<form method="post" action="/support/search""#), "the form posts");
    assert!(console.contains("never stored"), "the console keeps its promise");
    // A whole key in an address is refused: not searched, not echoed.
    let res = staff.get(&format!("/support?q={secret}")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(!body.contains(&secret) && !body.contains(&secret[..20]), "not echoed");
    assert!(body.contains("search form") && body.contains(r#"id="q-error""#));
    assert!(!body.contains("/support/keys/"), "not searched");
    // Prefixes, teams and emails still work in the address.
    let by_prefix = staff.get_html(&format!("/support?q={}", &secret[..11])).await;
    assert!(by_prefix.contains(&format!("/support/keys/{}", key["id"].as_str().unwrap())));
    // By POST: found, uncacheable, no redirect and no link holding the key.
    let res = staff.post_form("/support", "/support/search", &[("q", &secret)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("location").is_none());
    let body = res.text().await.unwrap();
    assert!(body.contains("pasted") && !body.contains(&secret) && !body.contains(&secret[3..]));
    // A reload of the results lands on the console; no CSRF token, no search.
    let reload = staff.get("/support/search").await;
    assert_eq!(reload.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&reload), "/support");
    let forged = staff.client.post(staff.url("/support/search")).form(&[("q", &secret)]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Only support reaches it.
    assert_eq!(
        app.post_form("/settings/team", "/support/search", &[("q", "acme")]).await.status(),
        StatusCode::NOT_FOUND
    );
}
both!(a_whole_key_is_searched_only_by_post_and_never_lands_in_an_address);

async fn support_revoke_asks_first_then_redirects_or_shows_the_missing_reason(app: TestApp) {
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    let staff = support_user(&app).await;
    let page = format!("/support/keys/{id}");
    let confirm = format!("{page}/revoke");
    let key_page = staff.get_html(&page).await;
    assert!(key_page.contains(&format!(r#"href="{confirm}""#)) && key_page.contains(r#"id="revoke-key""#));
    assert!(!key_page.contains(r#"name="reason""#), "the page asks nothing until the button is used");
    // The confirmation: a page without JavaScript, a dialog for htmx; it says what happens.
    let full = staff.get_html(&confirm).await;
    assert!(
        full.contains(r#"name="reason""#) && full.contains("fail at once") && full.contains("team sees your reason")
    );
    assert!(full.contains(&format!(r#"action="{confirm}""#)) && !full.contains("<dialog"));
    let dialog = staff.client.get(staff.url(&confirm)).header("HX-Request", "true").send().await.unwrap();
    assert!(dialog.text().await.unwrap().starts_with("<dialog"));
    for who in [&app, &app.other_client()] {
        assert_eq!(who.get(&confirm).await.status(), StatusCode::NOT_FOUND, "the same check as the POST");
    }
    assert_eq!(staff.get("/support/keys/key_nope/revoke").await.status(), StatusCode::NOT_FOUND);
    // No reason: the key page again, with the error, at the key page's address.
    let csrf = csrf_from(&key_page);
    let empty = staff
        .client
        .post(staff.url(&confirm))
        .header("HX-Request", "true")
        .header("HX-Boosted", "true")
        .form(&[("reason", " "), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(empty.headers()["hx-push-url"], page.as_str());
    let body = empty.text().await.unwrap();
    assert!(body.contains(r#"id="reason""#) && body.contains(r#"id="reason-error""#));
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK, "nothing changed");
    // With a reason: revoked, then back to the key page with a flash.
    let done = staff.post_form(&page, &confirm, &[("reason", "Posted in a public gist")]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&done), page);
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::UNAUTHORIZED);
    let after = staff.get_html(&page).await;
    assert!(after.contains("Key revoked") && after.contains("Revoked by Latchkey support: Posted in a public gist"));
    assert!(!after.contains(r#"id="revoke-key""#), "nothing left to revoke");
}
both!(support_revoke_asks_first_then_redirects_or_shows_the_missing_reason);

async fn the_audit_log_reads_as_sentences_with_links_and_details(app: TestApp) {
    use crate::api_keys::{api_delete, api_post};
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "Billing worker", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    let rolled = api_post(&app, &format!("/api/v1/api-keys/{id}/roll"), &json!({"grace_seconds": 86400})).await;
    assert!(rolled.status().is_success());
    assert!(api_delete(&app, &format!("/api/v1/api-keys/{id}")).await.status().is_success());
    crate::accounts::member(&app, "dev@acme.test", "developer").await;
    let dev_id = crate::accounts::member_id(&app.get_html("/settings/team").await, "dev@acme.test");
    let res =
        app.post_form("/settings/team", &format!("/settings/team/members/{dev_id}/role"), &[("role", "admin")]).await;
    assert!(res.status().is_redirection() || res.status().is_success(), "{}", res.status());
    let oauth_app = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;

    let page = app.get_html("/settings/team/audit").await;
    let text = text_of(&page);
    for sentence in [
        format!("{OWNER_EMAIL} created key Billing worker (lk_"),
        format!("{OWNER_EMAIL} rolled key Billing worker (lk_"),
        "into a new key; the old key was given 24 hours of grace".to_owned(),
        format!("{OWNER_EMAIL} revoked key Billing worker (lk_"),
        format!("{OWNER_EMAIL} invited dev@acme.test as Developer"),
        "dev@acme.test accepted an invitation and joined as Developer".to_owned(),
        "dev@acme.test signed in".to_owned(),
        format!("{OWNER_EMAIL} changed dev@acme.test’s role from Developer to Admin"),
        format!("{OWNER_EMAIL} registered the app Acme Connector"),
        format!("{OWNER_EMAIL} signed in"),
        "from 127.0.0.1".to_owned(),
    ] {
        assert!(text.contains(&sentence), "{sentence:?} in {text}");
    }
    // Links to the objects that exist; relative times with the exact time.
    assert!(
        page.contains(&format!(
            r#"<a href="/settings/developer/api-keys/{id}" class="event-object">Billing worker</a>"#
        ))
    );
    assert!(page.contains(&format!(r#"<a href="/settings/developer/oauth-apps/{}""#, oauth_app.client_id)));
    assert!(page.contains(r#"<a href="/settings/team" class="event-object">dev@acme.test</a>"#));
    assert!(page.contains("<time datetime=") && text.contains("just now"));
    // Details: expandable, labelled, timestamps as moments, no raw JSON or identifiers.
    assert!(page.contains(r#"<details class="event-details"><summary>Details</summary>"#));
    assert!(
        page.contains("<dt>Grace</dt><dd>24 hours</dd>") && page.contains("<dt>Old key stops</dt><dd><time datetime=")
    );
    assert!(!page.contains("grace_seconds") && !page.contains("{&quot;") && !page.contains("old_expires_at"));
    // Export is at the top, outside the filters.
    let csv = page.find(r#"id="csv-export""#).unwrap();
    assert!(csv < page.find(r#"class="filters""#).unwrap());
    // Support reads the same sentences with links to the console's pages.
    let staff = support_user(&app).await;
    let team = attr_after(&staff.get_html("/support?q=acme").await, r#"<li><a href="/support/teams/"#).unwrap();
    let support_log = staff.get_html(&format!("/support/teams/{team}/audit")).await;
    assert!(support_log.contains(&format!(r#"<a href="/support/keys/{id}" class="event-object">Billing worker</a>"#)));
    assert!(
        support_log.contains(&format!(r#"<a href="/support/users/{dev_id}" class="event-object">dev@acme.test</a>"#))
    );
    let user_page = text_of(&staff.get_html(&format!("/support/users/{dev_id}")).await);
    assert!(
        user_page.contains("Recent activity dev@acme.test signed in") || user_page.contains("dev@acme.test signed in")
    );
    assert!(user_page.contains("Admin of Acme"), "{user_page}");
}
both!(the_audit_log_reads_as_sentences_with_links_and_details);

async fn a_from_date_after_the_to_date_is_a_field_error_and_runs_no_query(app: TestApp) {
    app.owner_session().await;
    let res = app.get("/settings/team/audit?from=2026-03-02&to=2026-03-01").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"id="from-error""#) && page.contains("after the “To” date"));
    assert!(page.contains(r#"aria-describedby="from-error""#) && page.contains(r#"value="2026-03-02""#));
    assert_eq!(events_in(&page), 0);
    assert!(page.contains("Fix the filter"));
    let same_day = app.get("/settings/team/audit?from=2026-03-01&to=2026-03-01").await;
    assert_eq!(same_day.status(), StatusCode::OK);
    let csv = app.get("/settings/team/audit?from=2026-03-02&to=2026-03-01&format=csv").await;
    assert_eq!(csv.status(), StatusCode::UNPROCESSABLE_ENTITY, "no export of a contradictory filter");
}
both!(a_from_date_after_the_to_date_is_a_field_error_and_runs_no_query);
