//! Every page, as a person sees it on a laptop (1280×900) and a phone
//! (390×844): it never scrolls sideways, axe-core finds no serious or critical
//! accessibility violation, and a screenshot lands in `target/screenshots/`.

use serde_json::json;

use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, spawn_app};
use crate::webdriver::{Browser, LAPTOP, PHONE};

/// A team with some history: keys (one rolled, one revoked, long names), an
/// OAuth app, a developer, a pending invite.
async fn lived_in(app: &TestApp) -> (String, String, String) {
    app.owner_session().await;
    let mut first = String::new();
    for i in 0..6 {
        let name = if i == 0 {
            "Billing worker with a rather long descriptive name for the nightly reconciliation job".to_owned()
        } else {
            format!("Server {i}")
        };
        // The first key takes calls from anywhere (its page gets a chart); the others are fenced.
        let ips = if i == 0 { json!([]) } else { json!(["203.0.113.0/24", "2001:db8::/32"]) };
        let key = crate::api_keys::create_key(
            app,
            json!({"name": name, "description": "Runs every night at 02:00 UTC and reconciles invoices against the ledger",
                   "scopes": ["templates:read", "templates:write", "messages:send", "contacts:read", "products:read"],
                   "allowed_ips": ips}),
        )
        .await;
        if i == 0 {
            first = key["id"].as_str().unwrap().to_owned();
            // Some traffic, so that its page has a chart.
            for _ in 0..3 {
                let res = crate::api_keys::call(app, "/api/v1/auth/test", key["key"].as_str().unwrap()).await;
                assert!(res.status().is_success());
            }
            app.flush_usage().await;
        }
        if i == 1 {
            crate::api_keys::api_delete(app, &format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap())).await;
        }
        if i == 2 {
            // Watched for 20 days using one of its five scopes: flagged in the
            // list; its page suggests rolling it with only that one.
            let (id, now) = (key["id"].as_str().unwrap().to_owned(), app.clock().now());
            app.db()
                .run_sync(move |c| {
                    latchkey::store::models::ScopeUseRow::merge(c, &id, "templates:read", now - 20 * 86_400, now)
                        .map_err(latchkey::store::StoreError::from)
                })
                .unwrap();
        }
    }
    // One key expires in 3 days: the banner on every page, the note in its row.
    crate::key_privilege::expiring(app, "Nightly export to the data warehouse", 3 * 86_400).await;
    let rolled =
        crate::api_keys::api_post(app, &format!("/api/v1/api-keys/{first}/roll"), &json!({"grace_seconds": 86400}))
            .await;
    assert!(rolled.status().is_success());
    let registered =
        crate::oauth::register(app, "confidential", crate::oauth::REDIRECT, &["templates:read", "contacts:read"]).await;
    let dev = crate::accounts::member(app, "dev@acme.test", "developer").await;
    crate::totp::enrol_at(&dev, crate::accounts::DEV_PASSWORD, 0).await;
    let invite = app.invite("new.person.with.a.long.address@example-corporation.test", "viewer").await;
    (first, registered.client_id, invite)
}

/// The id of the team's key named `name`.
async fn key_named(app: &TestApp, name: &str) -> String {
    let list: serde_json::Value = app.get("/api/v1/api-keys?limit=100").await.json().await.unwrap();
    let key = list["data"].as_array().unwrap().iter().find(|k| k["name"] == name).expect("a key of that name");
    key["id"].as_str().unwrap().to_owned()
}

/// Visits each path at both sizes; returns what is wrong with them.
async fn sweep(browser: &Browser, app: &TestApp, who: &str, pages: &[(&str, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.resize(size).await;
        for (name, path) in pages {
            browser.goto(&app.url(path)).await;
            problems.extend(browser.page_problems(&format!("{who}-{name}-{label}")).await);
        }
    }
    problems
}

#[tokio::test]
async fn every_page_fits_a_laptop_and_a_phone_and_passes_axe() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();

    // Before anyone exists: the setup page.
    let token = app.setup_token.clone().unwrap();
    let mut problems = sweep(&browser, &app, "anonymous", &[("setup", format!("/setup?token={token}"))]).await;

    let (key, client_id, invite) = lived_in(&app).await;
    let over = key_named(&app, "Server 2").await;
    let anonymous = [("login", "/login".to_owned()), ("not-found", "/no/such/page".to_owned()), ("invite", invite)];
    problems.extend(sweep(&browser, &app, "anonymous", &anonymous).await);
    // The second step of a sign-in with two-factor authentication.
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.clear_cookies().await;
        browser.resize(size).await;
        browser.goto(&app.url("/login")).await;
        browser.sign_in("dev@acme.test", crate::accounts::DEV_PASSWORD, "Two-factor authentication · Latchkey").await;
        problems.extend(browser.page_problems(&format!("anonymous-login-totp-{label}")).await);
    }
    browser.clear_cookies().await;

    browser.resize(LAPTOP).await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    let consent = format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=templates:read&state=s",
        latchkey::web::auth::url_encode(crate::oauth::REDIRECT)
    );
    let owner_pages = [
        ("team", "/settings/team".to_owned()),
        ("audit", "/settings/team/audit".to_owned()),
        ("security", "/settings/security".to_owned()),
        ("keys", "/settings/developer/api-keys".to_owned()),
        ("keys-revoked", "/settings/developer/api-keys?status=revoked".to_owned()),
        ("key", format!("/settings/developer/api-keys/{key}")),
        ("key-over-privileged", format!("/settings/developer/api-keys/{over}")),
        ("key-roll-used", format!("/settings/developer/api-keys/{over}/roll-used")),
        ("oauth-apps", "/settings/developer/oauth-apps".to_owned()),
        ("oauth-app-new", "/settings/developer/oauth-apps/new".to_owned()),
        ("oauth-app", format!("/settings/developer/oauth-apps/{client_id}")),
        ("consent", consent),
    ];
    problems.extend(sweep(&browser, &app, "owner", &owner_pages).await);

    // The one-time reveal, at both sizes.
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.resize(size).await;
        browser.goto(&app.url("/settings/developer/api-keys")).await;
        browser.fill("#key-name", &format!("Reveal on the {label}")).await;
        browser.click("input[name=scopes][value='templates:read']").await;
        browser.click("#create button[type=submit]").await;
        browser.wait_for_title("Your new key · Latchkey").await;
        problems.extend(browser.page_problems(&format!("owner-reveal-{label}")).await);
    }

    // The support console, as support staff.
    let staff = crate::support::support_user(&app).await;
    let found = staff.get_html("/support?q=acme").await;
    let team = link_id(&found, "/support/teams/");
    let found = staff.get_html("/support?q=owner%40acme.test").await;
    let user = link_id(&found, "/support/users/");
    browser.clear_cookies().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(crate::support::SUPPORT_EMAIL, crate::support::SUPPORT_PASSWORD, "Support · Latchkey").await;
    let support_pages = [
        ("console", "/support".to_owned()),
        ("search", "/support?q=acme".to_owned()),
        ("key", format!("/support/keys/{key}")),
        ("team", format!("/support/teams/{team}")),
        ("team-audit", format!("/support/teams/{team}/audit")),
        ("user", format!("/support/users/{user}")),
    ];
    problems.extend(sweep(&browser, &app, "support", &support_pages).await);
    browser.quit().await;
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// The id in the first link that starts with `prefix`.
fn link_id(html: &str, prefix: &str) -> String {
    let at = html.find(&format!("href=\"{prefix}")).unwrap_or_else(|| panic!("no {prefix} link in {html}"));
    let rest = &html[at + 6 + prefix.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn on_a_phone_the_navigation_folds_behind_a_menu_button_that_works_by_keyboard() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.setup_owner().await;
    browser.resize(PHONE).await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    let shown = "var e = document.querySelector('.sidebar-foot'); return !!(e.offsetWidth || e.offsetHeight)";
    assert_eq!(browser.script(shown).await, json!(false), "the menu starts folded");
    assert_eq!(
        browser.script("return document.querySelector('.nav-toggle').getAttribute('aria-expanded')").await,
        json!("false")
    );
    // Keyboard: focus the button and press Enter.
    browser.script("document.querySelector('.nav-toggle').focus()").await;
    browser.press("\u{E007}").await;
    assert_eq!(browser.script(shown).await, json!(true), "Enter opens the menu");
    assert_eq!(
        browser.script("return document.querySelector('.nav-toggle').getAttribute('aria-expanded')").await,
        json!("true")
    );
    // The whole email and Sign out fit on the screen.
    let fits =
        "var e = document.querySelector('.who .email').getBoundingClientRect(); return e.right <= window.innerWidth";
    assert_eq!(browser.script(fits).await, json!(true));
    browser.check_page("owner-menu-open-phone").await;
    browser.click("a[href='/settings/security']").await;
    browser.wait_for_title("Security · Latchkey").await;
    assert_eq!(browser.script(shown).await, json!(false), "a new page starts with the menu folded");
    browser.quit().await;

    // Without JavaScript the navigation is simply shown, and still fits.
    let Some(plain) = Browser::start_without_js().await else { return };
    plain.resize(PHONE).await;
    plain.goto(&app.url("/login")).await;
    plain.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    assert_eq!(plain.script(shown).await, json!(true));
    assert_eq!(plain.script("return document.querySelector('.nav-toggle').hidden").await, json!(true));
    plain.check_page("owner-team-nojs-phone").await;
    plain.click(".sidebar-foot button").await;
    plain.wait_for_title("Sign in · Latchkey").await;
    plain.quit().await;
}

/// Post/Redirect/Get: a reload (a GET) of the URL any form posts to lands on a
/// real page — the page it belongs to, a confirmation, or a "shown once" note —
/// and never on a 404 or 405.
#[tokio::test]
async fn a_reload_after_any_form_lands_on_a_real_page() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let (key, client_id, _invite) = lived_in(&app).await;
    let team = app.get_html("/settings/team").await;
    let dev = crate::accounts::member_id(&team, "dev@acme.test");
    let keys = "/settings/developer/api-keys";
    let apps = "/settings/developer/oauth-apps";
    let paths = [
        "/settings/security/totp/start".to_owned(),
        "/settings/security/totp/confirm".to_owned(),
        "/settings/security/totp/disable".to_owned(),
        "/settings/security/recovery-codes".to_owned(),
        "/settings/security/password".to_owned(),
        "/settings/security/sessions/revoke-others".to_owned(),
        "/settings/security/team-policy".to_owned(),
        "/settings/team/invites".to_owned(),
        format!("/settings/team/members/{dev}/role"),
        format!("/settings/team/members/{dev}/remove"),
        format!("{keys}/policy"),
        format!("{keys}/{key}/roll"),
        format!("{keys}/{key}/roll-used"),
        format!("{keys}/{key}/revoke"),
        format!("{keys}/{key}/rename"),
        format!("{keys}/{key}/created"),
        format!("{apps}/{client_id}/rotate"),
        format!("{apps}/{client_id}/delete"),
        "/logout".to_owned(),
    ];
    for path in &paths {
        let (landed, body) = follow(&app, path).await;
        assert!(body.contains("<main"), "GET {path} lands on a page ({landed}): {body}");
    }
    let staff = crate::support::support_user(&app).await;
    for path in ["/support/search".to_owned(), format!("/support/keys/{key}/revoke")] {
        let (landed, body) = follow(&staff, &path).await;
        assert!(body.contains("<main"), "GET {path} lands on a page ({landed}): {body}");
    }
}

/// GETs `path`, following redirects; fails on anything but a 200 at the end.
async fn follow(app: &TestApp, path: &str) -> (String, String) {
    let mut at = path.to_owned();
    for _ in 0..5 {
        let res = app.get(&at).await;
        if res.status().is_redirection() {
            at = crate::helpers::location(&res);
            continue;
        }
        assert_eq!(res.status(), reqwest::StatusCode::OK, "GET {path} → {at}");
        return (at, res.text().await.unwrap());
    }
    panic!("GET {path}: too many redirects");
}

/// Every destructive action on every page asks in a modal dialog that names
/// what will happen; Escape closes it, nothing changes, and focus returns to
/// the button. At both sizes, with axe-core on the open dialog.
#[tokio::test]
async fn every_destructive_action_asks_in_a_dialog_at_both_sizes() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let (key, client_id, _invite) = lived_in(&app).await;
    // Something for the security page to offer: another session and an authorized app.
    let elsewhere = app.other_client();
    assert!(elsewhere.login(OWNER_EMAIL, OWNER_PASSWORD).await.status().is_redirection());
    let consent = format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=templates:read&state=s",
        latchkey::web::auth::url_encode(crate::oauth::REDIRECT)
    );
    crate::oauth::authorize(&app, &app.url(&consent), true).await;
    let over = key_named(&app, "Server 2").await;

    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    let pages = [
        ("keys", "/settings/developer/api-keys".to_owned()),
        ("key", format!("/settings/developer/api-keys/{key}")),
        ("key-over-privileged", format!("/settings/developer/api-keys/{over}")),
        ("team", "/settings/team".to_owned()),
        ("security", "/settings/security".to_owned()),
        ("oauth-app", format!("/settings/developer/oauth-apps/{client_id}")),
    ];
    let mut problems = Vec::new();
    let mut seen = 0;
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.resize(size).await;
        for (name, path) in &pages {
            browser.goto(&app.url(path)).await;
            browser.wait_ready().await;
            let count = browser.script("return document.querySelectorAll('[data-opens-dialog]').length").await;
            let count = count.as_u64().unwrap_or(0).min(6);
            assert!(count > 0, "{name}: no destructive action offered");
            for i in 0..count {
                let opener = format!("document.querySelectorAll('[data-opens-dialog]')[{i}]");
                let id = browser.script(&format!("return {opener}.id")).await;
                let id = id.as_str().unwrap_or_default().to_owned();
                assert!(!id.is_empty(), "{name}: opener {i} has an id");
                // Open it the way a person does: menus first.
                browser
                    .script(&format!("var o = {opener}; var m = o.closest('details.menu'); if (m) m.open = true; o.focus(); o.click();"))
                    .await;
                browser.wait_for("dialog[open]").await;
                browser.wait_ready().await;
                let what = browser.text("dialog[open]").await;
                assert!(
                    what.contains("Cancel") && what.len() > 40,
                    "{name}/{id}: the dialog says what happens: {what}"
                );
                assert_eq!(
                    browser.script("return document.activeElement.closest('dialog[open]') !== null").await,
                    json!(true),
                    "{name}/{id}: focus moves into the dialog"
                );
                problems.extend(browser.page_problems(&format!("dialog-{name}-{id}-{label}")).await);
                browser.press("\u{E00C}").await;
                browser.wait_gone("dialog[open]").await;
                // Focus returns to the button, or to its action menu's summary.
                let back = browser
                    .script(&format!(
                        "var o = {opener}; var m = o.closest('details.menu'); var a = document.activeElement;\
                         return a === o || (m !== null && a === m.querySelector('summary'));"
                    ))
                    .await;
                assert_eq!(back, json!(true), "{name}/{id}: focus returns to the button");
                seen += 1;
            }
        }
    }
    assert!(seen >= 14, "only {seen} dialogs seen");
    // Nothing changed: the keys, the other session and the app are all there.
    assert!(elsewhere.get("/settings/team").await.status().is_success());
    browser.quit().await;
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// Without JavaScript a reload of the page that showed a new app's secret
/// sends the registration again: it lands on that app, which says its secret
/// was shown once, and registers nothing more.
#[tokio::test]
async fn registering_an_app_twice_by_reloading_lands_on_the_app_it_made() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let fields = [
        ("name", "Once"),
        ("redirect_uris", crate::oauth::REDIRECT),
        ("client_type", "confidential"),
        ("scopes", "templates:read"),
    ];
    let (first, again) = crate::helpers::submit_twice(
        &app,
        "/settings/developer/oauth-apps/new",
        "/settings/developer/oauth-apps",
        &fields,
    )
    .await;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    let secret = crate::helpers::attr_after(&first.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::SEE_OTHER);
    let to = crate::helpers::location(&again);
    let page = app.get_html(&to).await;
    assert!(page.contains("shown once") && page.contains("Once") && !page.contains(&secret), "{page}");
    let list = app.get_html("/settings/developer/oauth-apps").await;
    assert_eq!(list.matches(">Once</a>").count(), 1, "one app: {list}");
}

/// The same for an invite: a reload of the page showing the link sends the
/// invite again; it makes no second invite and says the link was shown once.
#[tokio::test]
async fn inviting_twice_by_reloading_makes_one_invite() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let fields = [("email", "new@acme.test"), ("role", "viewer")];
    let (first, again) = crate::helpers::submit_twice(&app, "/settings/team", "/settings/team/invites", &fields).await;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    let link = crate::helpers::attr_after(&first.text().await.unwrap(), r#"<code id="invite-link">"#).unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::SEE_OTHER);
    let page = app.get_html(&crate::helpers::location(&again)).await;
    assert!(page.contains("shown once") && !page.contains(&link), "{page}");
    let invites = &page[page.find(r#"id="invites""#).unwrap()..];
    let invites = &invites[..invites.find("</table>").unwrap()];
    assert_eq!(invites.matches("new@acme.test").count(), 1, "one invite");
}

/// A rotation sent again by a reload does not rotate twice (which would end
/// the secret just copied): it lands on the page saying the secret was shown once.
#[tokio::test]
async fn rotating_twice_by_reloading_rotates_once() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let registered = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let rotate = format!("/settings/developer/oauth-apps/{}/rotate", registered.client_id);
    let (first, again) = crate::helpers::submit_twice(&app, &rotate, &rotate, &[("grace", "0")]).await;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    let secret = crate::helpers::attr_after(&first.text().await.unwrap(), r#"<code id="secret">"#).unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::SEE_OTHER);
    let page = app.get_html(&crate::helpers::location(&again)).await;
    assert!(page.contains("shown once") && !page.contains(&secret), "{page}");
    // The secret shown by the first rotation still works.
    let learned = crate::oauth::App { client_id: registered.client_id.clone(), secret: Some(secret) };
    let token = crate::oauth::client(&app, &learned, crate::oauth::REDIRECT)
        .exchange_client_credentials()
        .request_async(&crate::oauth::http())
        .await;
    assert!(token.is_ok(), "{token:?}");
}

/// New recovery codes sent again by a reload are not made again (the codes
/// just shown stay the good ones).
#[tokio::test]
async fn new_recovery_codes_twice_by_reloading_are_made_once() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    crate::totp::enrol_at(&app, OWNER_PASSWORD, 0).await;
    let codes = "/settings/security/recovery-codes";
    let (first, again) =
        crate::helpers::submit_twice(&app, "/settings/security", codes, &[("password", OWNER_PASSWORD)]).await;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    assert!(first.text().await.unwrap().contains(r#"id="recovery-codes""#));
    assert_eq!(again.status(), reqwest::StatusCode::SEE_OTHER);
    let page = app.get_html(&crate::helpers::location(&again)).await;
    assert!(page.contains("shown only once") && !page.contains(r#"id="recovery-codes""#), "{page}");
    let audit = app.get_html("/settings/team/audit").await;
    assert_eq!(audit.matches(r#"data-action="totp.recovery_codes_regenerated""#).count(), 1, "made once");
}

/// Rows are never tinted by their status: only the badge is coloured.
#[tokio::test]
async fn only_the_status_badge_is_coloured_never_the_row() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    lived_in(&app).await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    browser.goto(&app.url("/settings/developer/api-keys")).await;
    browser.wait_ready().await;
    let colours = browser
        .script(
            "return Array.from(document.querySelectorAll('#keys tbody tr')).map(function (tr) {\
               var cells = Array.from(tr.querySelectorAll('td')).map(function (td) { return getComputedStyle(td).backgroundColor; });\
               var badge = tr.querySelector('.status');\
               return [getComputedStyle(tr).backgroundColor].concat(cells).concat([badge ? badge.textContent.trim() + '=' + getComputedStyle(badge).backgroundColor : 'none']);\
             })",
        )
        .await;
    let rows = colours.as_array().unwrap();
    assert!(rows.len() >= 6, "{colours}");
    let mut kinds = std::collections::HashSet::new();
    for row in rows {
        let row = row.as_array().unwrap();
        let (badge, plain) = row.split_last().unwrap();
        assert!(plain.iter().all(|c| c == "rgba(0, 0, 0, 0)"), "a tinted row: {row:?}");
        let badge = badge.as_str().unwrap();
        assert!(!badge.ends_with("rgba(0, 0, 0, 0)"), "an uncoloured badge: {badge}");
        kinds.insert(badge.split('=').next().unwrap().to_owned());
    }
    assert!(kinds.contains("Active") && kinds.contains("Revoked"), "{kinds:?}");
    browser.quit().await;
}
