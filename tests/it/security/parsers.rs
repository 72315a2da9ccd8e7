//! Parsers, not string slicing: redirect URIs, `next` targets, forwarded
//! addresses, and text inputs. Each test tries several variants of an attack.

use reqwest::StatusCode;

use crate::both;
use crate::helpers::{TestApp, location};
use crate::oauth::{authorize, register};

const LOOPBACK: &str = "http://127.0.0.1:8765/cb";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_owned()
}

fn authorize_path(client_id: &str, redirect_uri: &str) -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=s1\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        enc(redirect_uri)
    )
}

async fn redirect_uris_are_parsed_and_matched_exactly(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "public", LOOPBACK, &["templates:read"]).await;
    // Consent once, remembered: from now on a matching request redirects at once.
    let first = authorize(&app, &app.url(&authorize_path(&a.client_id, LOOPBACK)), true).await;
    assert!(first.iter().any(|(k, _)| k == "code"));
    for evil in [
        "http://127.0.0.1:1@evil.example/cb",
        "http://127.0.0.1@evil.example/cb",
        "http://u@127.0.0.1:8765/cb",
        "http://u:p@127.0.0.1:8765/cb",
        "http://127.0.0.1:8765@evil.example/cb",
        "http://127.0.0.1:8765:1@evil.example/cb",
        "http://127.0.0.1.evil.example:8765/cb",
        "http://127.0.0.1:8765\\@evil.example/cb",
        "http://127.0.0.1:8765\\evil.example/cb",
        "http://127.0.0.1:8765/cb\\..\\x",
        "http://127.0.0.1:8765/cb#x",
        "http://127.0.0.1:8765/cb#",
        "http://127.0.0.1:http/cb",
        "http://127.0.0.1:8765x/cb",
        "http://127.0.0.1:/cb",
        "http://localhost:8765/cb",
        "http://[::1]:8765/cb",
        "http://127.1:8765/cb",
        "http://0x7f000001:8765/cb",
        "http://127.0.0.1:8765/cb/../x",
        "http://127.0.0.1:8765/cb/%2e%2e/x",
        "http://127.0.0.1:8765/cb/./",
        "http://127.0.0.1:8765/cb?x=1",
        "http://127.0.0.1:8765/cb?",
        "http://127.0.0.1:8765/%63b",
        "http://127.0.0.1:8765/cb%20",
        "http://127.0.0.1:8765/CB",
        "HTTP://127.0.0.1:8765/cb",
        "https://127.0.0.1:8765/cb",
        "http://127.0.0.1:8765/cb/",
        "http://127.0.0.1:8765/cb\t",
        " http://127.0.0.1:8765/cb",
        "//127.0.0.1:8765/cb",
        "https://evil.example/cb",
    ] {
        let res = app.get(&authorize_path(&a.client_id, evil)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{evil}");
        assert!(res.headers().get("location").is_none(), "{evil}: {}", location(&res));
        assert!(res.headers().get("hx-redirect").is_none(), "{evil}");
    }
    // The one legitimate variation: another port of the loopback literal.
    let res = app.get(&authorize_path(&a.client_id, "http://127.0.0.1:9999/cb")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("http://127.0.0.1:9999/cb?code="), "{}", location(&res));
}
both!(redirect_uris_are_parsed_and_matched_exactly);

async fn registration_refuses_redirect_uris_that_parse_differently(app: TestApp) {
    app.owner_session().await;
    for bad in [
        "http://127.0.0.1:1@evil.example/cb",
        "https://u@app.example/cb",
        "https://app.example\\@evil.example/cb",
        "https://app.example/cb#frag",
        "https://app.example:abc/cb",
        "https://app.example:/cb",
        "https://*.app.example/cb",
        "https://app.example/cb/../x",
        "https://app.example/cb/%2e%2e/x",
        "https://APP.example/cb",
        "https://app.example",
        "https://app.example:443/cb",
        "http://app.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "https://app.example/c\u{202e}b",
        "javascript:alert(1)",
    ] {
        let form =
            [("name", "Bad app"), ("redirect_uris", bad), ("client_type", "public"), ("scopes", "templates:read")];
        let res = app.post_form("/settings/developer/oauth-apps/new", "/settings/developer/oauth-apps", &form).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let html = res.text().await.unwrap();
        assert!(!html.contains(r#"id="client-id""#), "{bad}");
    }
    let html = app.get_html("/settings/developer/oauth-apps").await;
    assert!(!html.contains("Bad app"));
}
both!(registration_refuses_redirect_uris_that_parse_differently);

/// Return targets that browsers resolve to another origin, or that hide one.
const EVIL_NEXT: [&str; 10] = [
    "/\t/evil.example",
    "/%09/evil.example",
    "//evil.example",
    "/\\evil.example",
    "/%5cevil.example",
    "/%2F%2Fevil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "/ /evil",
    "/\r\n/evil.example",
];

fn assert_local(loc: &str, next: &str) {
    assert!(loc.starts_with('/') && !loc.starts_with("//"), "{next:?} -> {loc:?}");
    assert!(!loc.chars().any(|c| c.is_control() || c == '\\'), "{next:?} -> {loc:?}");
    assert!(!loc.to_lowercase().contains("evil") && !loc.contains(':'), "{next:?} -> {loc:?}");
}

async fn every_next_target_stays_on_site(app: TestApp) {
    use crate::helpers::{OWNER_EMAIL, OWNER_PASSWORD, attr_after};
    app.owner_session().await;
    // Signed in: GET /login?next= sends the user on at once.
    for next in EVIL_NEXT {
        let res = app.get(&format!("/login?next={}", enc(next))).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_local(&location(&res), next);
    }
    // After the password.
    for next in EVIL_NEXT {
        let browser = app.other_client();
        let res = browser
            .post_form("/login", "/login", &[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD), ("next", next)])
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_local(&location(&res), next);
    }
    // An honest target still works.
    let browser = app.other_client();
    let res = browser
        .post_form(
            "/login",
            "/login",
            &[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD), ("next", "/settings/team?tab=1")],
        )
        .await;
    assert_eq!(location(&res), "/settings/team?tab=1");
    // After the TOTP step (a recovery code each time, as codes are single use).
    let (_, page) = crate::totp::enrol_at(&app, crate::helpers::OWNER_PASSWORD, 0).await;
    let list = &page[page.find(r#"id="recovery-codes""#).unwrap()..];
    let codes: Vec<String> = list.split("<code>").skip(1).map(|c| c[..c.find('<').unwrap()].to_owned()).collect();
    assert!(codes.len() >= EVIL_NEXT.len());
    for (next, code) in EVIL_NEXT.iter().zip(&codes) {
        let browser = app.other_client();
        let res = browser
            .post_form("/login", "/login", &[("email", OWNER_EMAIL), ("password", OWNER_PASSWORD), ("next", next)])
            .await;
        assert_eq!(location(&res), "/login/totp", "{next:?}");
        let res = browser.post_form("/login/totp", "/login/totp", &[("code", code)]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_local(&location(&res), next);
    }
    // Anonymous: the login form carries only a safe target.
    let html = app.other_client().get_html(&format!("/login?next={}", enc("/\t/evil.example"))).await;
    assert_eq!(attr_after(&html, r#"name="next" value=""#).as_deref(), Some("/"));
}
both!(every_next_target_stays_on_site);

/// `both!` for an app behind a trusted proxy at 127.0.0.1 (where tests connect from).
macro_rules! behind_proxy {
    ($name:ident) => {
        mod $name {
            use crate::helpers::{Backend, spawn_app_with};
            const PROXY: &[(&str, &str)] = &[("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1")];
            #[tokio::test]
            async fn sqlite() {
                if let Some(app) = spawn_app_with(Backend::Sqlite, PROXY).await {
                    super::$name(app).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(app) = spawn_app_with(Backend::Postgres, PROXY).await {
                    super::$name(app).await;
                }
            }
        }
    };
}

async fn forwarded(app: &TestApp, key: &str, lines: &[&str]) -> StatusCode {
    let mut req = app.other_client().client.get(app.url("/api/v1/api-keys")).header("X-API-Key", key);
    for line in lines {
        req = req.header("X-Forwarded-For", *line);
    }
    req.send().await.unwrap().status()
}

async fn forwarded_addresses_cannot_escape_an_allow_list(app: TestApp) {
    use serde_json::json;
    app.owner_session().await;
    // Many calls: the team's plan limit is not what this test is about.
    app.db().run_sync(|c| latchkey::service::accounts::set_plan(c, "Acme", "unlimited")).unwrap();
    let v4 = crate::api_keys::create_key(
        &app,
        json!({"name": "fenced", "scopes": ["api_keys:read"], "allowed_ips": ["203.0.113.7/32"]}),
    )
    .await;
    let v4 = v4["key"].as_str().unwrap();
    for lines in [
        &["203.0.113.7", "198.51.100.9"][..],
        &["203.0.113.7", "garbage"],
        &["203.0.113.7", ""],
        &["203.0.113.7, 198.51.100.9:5555"],
        &["203.0.113.7, [2001:db8::1]:443"],
        &["203.0.113.7, 2001:db8::1"],
        &["203.0.113.7, ::ffff:198.51.100.9"],
        &["203.0.113.7, garbage"],
        &["203.0.113.7, unknown"],
        &["203.0.113.7,"],
        &["203.0.113.7,,127.0.0.1"],
        &["203.0.113.7, 203.0.113.7:99999"],
        &["203.0.113.7, 203.0.113.7:"],
        &["203.0.113.7, 203.0.113.7:5555:1"],
        &["203.0.113.7, [203.0.113.7]:1"],
        &["203.0.113.7, 203.0.113.7 198.51.100.9"],
        &["203.0.113.7, fe80::1%eth0"],
        &["203.0.113.7, 0xcb.0.113.7"],
    ] {
        assert_eq!(forwarded(&app, v4, lines).await, StatusCode::FORBIDDEN, "{lines:?}");
    }
    // The nearest untrusted hop really is the allowed address.
    for lines in [
        &["203.0.113.7"][..],
        &["203.0.113.7:5555"],
        &["198.51.100.9, 203.0.113.7"],
        &["garbage, 203.0.113.7:5555"],
        &["198.51.100.9", "203.0.113.7"],
        &["203.0.113.7, 127.0.0.1"],
        &["::ffff:203.0.113.7"],
        &["[::ffff:203.0.113.7]:443"],
    ] {
        assert_eq!(forwarded(&app, v4, lines).await, StatusCode::OK, "{lines:?}");
    }
    let v6 = crate::api_keys::create_key(
        &app,
        json!({"name": "fenced v6", "scopes": ["api_keys:read"], "allowed_ips": ["2001:db8::/32"]}),
    )
    .await;
    let v6 = v6["key"].as_str().unwrap();
    assert_eq!(forwarded(&app, v6, &["[2001:db8::5]:443"]).await, StatusCode::OK);
    assert_eq!(forwarded(&app, v6, &["2001:db8::5"]).await, StatusCode::OK);
    assert_eq!(forwarded(&app, v6, &["2001:db8::5, 198.51.100.9"]).await, StatusCode::FORBIDDEN);
    assert_eq!(forwarded(&app, v6, &["2001:db8::5", "[2001:db9::1]:1"]).await, StatusCode::FORBIDDEN);
    // An allow-list written with the IPv4-mapped form is the same address.
    let mapped = crate::api_keys::create_key(
        &app,
        json!({"name": "fenced mapped", "scopes": ["api_keys:read"], "allowed_ips": ["::ffff:203.0.113.7/128"]}),
    )
    .await;
    let mapped = mapped["key"].as_str().unwrap();
    assert_eq!(forwarded(&app, mapped, &["203.0.113.7"]).await, StatusCode::OK);
    assert_eq!(forwarded(&app, mapped, &["::ffff:203.0.113.7"]).await, StatusCode::OK);
    assert_eq!(forwarded(&app, mapped, &["203.0.113.7, 198.51.100.9"]).await, StatusCode::FORBIDDEN);
}
behind_proxy!(forwarded_addresses_cannot_escape_an_allow_list);

/// Characters no text input may carry: NUL, a bidi override (names), CRLF.
const HOSTILE: [&str; 3] = ["\0", "\u{202e}", "\r\n"];

fn rows(app: &TestApp) -> [i64; 3] {
    use diesel::prelude::*;
    use latchkey::store::schema::{api_keys, invites, oauth_clients};
    app.db()
        .run_sync(|c| {
            let n = |r: QueryResult<i64>| r.map_err(latchkey::store::StoreError::from);
            Ok::<_, latchkey::store::StoreError>([
                n(oauth_clients::table.count().get_result(c))?,
                n(api_keys::table.count().get_result(c))?,
                n(invites::table.count().get_result(c))?,
            ])
        })
        .unwrap()
}

async fn oauth_client_ids_with_control_characters_are_refused(app: TestApp) {
    app.owner_session().await;
    let a = register(&app, "public", LOOPBACK, &["templates:read"]).await;
    let anonymous = app.other_client();
    for bad in HOSTILE.iter().map(|h| format!("{}{h}", a.client_id)).chain(["lkc_\0".to_owned(), "\0".to_owned()]) {
        let res = app.get(&authorize_path(&enc(&bad), LOOPBACK)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(res.headers().get("location").is_none(), "{bad:?}");
        for endpoint in ["/oauth/token", "/oauth/revoke"] {
            let form = [("grant_type", "client_credentials"), ("client_id", bad.as_str()), ("token", "x")];
            let res = anonymous.client.post(app.url(endpoint)).form(&form).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{endpoint} {bad:?}");
            let res = anonymous
                .client
                .post(app.url(endpoint))
                .basic_auth(enc(&bad), Some("lkcs_x"))
                .form(&[("grant_type", "client_credentials"), ("token", "x")])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{endpoint} basic {bad:?}");
        }
    }
    // The other parameters of the authorization request: an error page too.
    for h in HOSTILE.iter().filter(|h| **h != "\u{202e}") {
        for param in ["state", "scope"] {
            let path = authorize_path(&a.client_id, LOOPBACK).replace("state=s1", "") + "&";
            let path = format!("{path}{param}={}", enc(&format!("a{h}b")));
            let res = app.get(&path).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{param} {h:?}");
            assert!(res.headers().get("location").is_none(), "{param} {h:?}");
        }
    }
    // Introspection of a token with control characters: inactive, not an error.
    let service = crate::helpers::service_key(&app, &["introspect"]);
    for bad in HOSTILE.iter().map(|h| format!("lkat_{h}")) {
        let res = anonymous
            .client
            .post(app.url("/oauth/introspect"))
            .header("X-API-Key", &service)
            .form(&[("token", bad.as_str()), ("client_id", "lkc_\0")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{bad:?}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["active"], false);
    }
}
both!(oauth_client_ids_with_control_characters_are_refused);

async fn text_inputs_refuse_control_and_format_characters(app: TestApp) {
    use serde_json::json;
    // The first team's name, at setup.
    let token = app.setup_token.clone().unwrap();
    let page = format!("/setup?token={token}");
    for h in HOSTILE {
        let team = format!("Ac{h}me");
        let form = [
            ("token", token.as_str()),
            ("team_name", team.as_str()),
            ("email", crate::helpers::OWNER_EMAIL),
            ("password", crate::helpers::OWNER_PASSWORD),
        ];
        let res = app.post_form(&page, "/setup", &form).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{h:?}");
    }
    app.owner_session().await;
    let before = rows(&app);
    for h in HOSTILE {
        let name = format!("Acme{h}Connector");
        let url = format!("https://acme.example/{h}logo.png");
        for (field, value) in [("name", name.as_str()), ("logo_url", url.as_str()), ("homepage", url.as_str())] {
            let mut form = vec![
                ("name", "Acme"),
                ("redirect_uris", LOOPBACK),
                ("client_type", "public"),
                ("scopes", "templates:read"),
            ];
            form.retain(|(k, _)| *k != field);
            form.push((field, value));
            let res =
                app.post_form("/settings/developer/oauth-apps/new", "/settings/developer/oauth-apps", &form).await;
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field} {h:?}");
        }
        for body in [
            json!({"name": format!("deploy{h}key"), "scopes": ["templates:read"]}),
            json!({"name": "deploy", "description": format!("one{h}\u{1b}[31m"), "scopes": ["templates:read"]}),
        ] {
            let res = crate::api_keys::api_post(&app, "/api/v1/api-keys", &body).await;
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        let email = format!("new{h}@acme.test");
        let res =
            app.post_form("/settings/team", "/settings/team/invites", &[("email", &email), ("role", "viewer")]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{h:?}");
        let audit = format!("/settings/team/audit?actor={}&action={}", enc(&format!("a{h}")), enc("x\0"));
        assert_eq!(app.get(&audit).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "{h:?}");
    }
    for email in ["\"><svg onload=alert(1)>@x.test", "<img src=x>@x.test", "a@x.test>", "\"a\"@x.test", "a@[127.0.0.1]"]
    {
        let res =
            app.post_form("/settings/team", "/settings/team/invites", &[("email", email), ("role", "viewer")]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{email}");
    }
    assert_eq!(rows(&app), before, "nothing stored");
    // Support: the search field and a revocation's reason.
    let key = crate::api_keys::create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let staff = crate::support::support_user(&app).await;
    let id = key["id"].as_str().unwrap();
    for h in HOSTILE.iter().filter(|h| **h != "\u{202e}") {
        let res = staff.get(&format!("/support?q={}", enc(&format!("ac{h}me")))).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{h:?}");
        let reason = format!("leaked{h}\u{1b}");
        let res = staff
            .post_form(&format!("/support/keys/{id}"), &format!("/support/keys/{id}/revoke"), &[("reason", &reason)])
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{h:?}");
    }
    let res = crate::api_keys::call(&app, "/api/v1/auth/test", key["key"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK, "the key was not revoked");
}
both!(text_inputs_refuse_control_and_format_characters);

async fn a_roll_refuses_a_grace_that_is_not_a_whole_number(app: TestApp) {
    use serde_json::json;
    app.owner_session().await;
    let key = crate::api_keys::create_key(&app, json!({"name": "k", "scopes": ["templates:read"]})).await;
    let id = key["id"].as_str().unwrap();
    let path = format!("/api/v1/api-keys/{id}/roll");
    for grace in ["86400.0", "\"86400\"", "8.64e4", "1e400", "99999999999999999999999", "true", "null", "-1", "604801"]
    {
        let body = format!(r#"{{"grace_seconds": {grace}}}"#);
        let csrf = crate::helpers::csrf_from(&app.get_html("/settings/team").await);
        let res = app
            .client
            .post(app.url(&path))
            .header("X-CSRF-Token", csrf)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(matches!(res.status().as_u16(), 400 | 422), "{grace}: {}", res.status());
    }
    // Nothing was rolled: the key still has no successor, and still works.
    let now: serde_json::Value = app.get(&format!("/api/v1/api-keys/{id}")).await.json().await.unwrap();
    assert!(now["data"]["replaced_by"].is_null(), "{now}");
    let res = crate::api_keys::api_post(&app, &path, &json!({"grace_seconds": 3600})).await;
    assert_eq!(res.status(), StatusCode::OK);
}
both!(a_roll_refuses_a_grace_that_is_not_a_whole_number);

async fn free_text_refuses_invisible_formatting_and_forms_refuse_bad_utf8(app: TestApp) {
    use serde_json::json;
    app.owner_session().await;
    for bad in [
        "\u{202E}gpj.exe",
        "a\u{200B}b",
        "x\u{2066}y",
        "\u{FEFF}z",
        "tag\u{E0041}",
        "\u{3164}",
        "a\u{34F}b",
        "p\u{E000}",
        "n\u{FFFF}",
        "k\u{17B4}",
        "m\u{180B}",
        "\u{2065}",
        "e\u{E0080}",
    ] {
        let body = json!({"name": "k", "description": bad, "scopes": ["templates:read"]});
        let res = crate::api_keys::api_post(&app, "/api/v1/api-keys", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        let body = json!({"name": format!("n{bad}\u{2028}"), "scopes": ["templates:read"]});
        let res = crate::api_keys::api_post(&app, "/api/v1/api-keys", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    // Names also refuse variation selectors (text keeps them: emoji use them)
    // and a leading combining mark.
    for name in ["k\u{FE0F}", "\u{301}k", "\u{20DD}"] {
        let body = json!({"name": name, "scopes": ["templates:read"]});
        let res = crate::api_keys::api_post(&app, "/api/v1/api-keys", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
    }
    // A form whose bytes are not UTF-8 is refused, not stored with replacement characters.
    let csrf = crate::helpers::csrf_from(&app.get_html("/settings/developer/api-keys").await);
    for raw in ["a%ED%B3%BFb", "a%FFb", "%C0%AF"] {
        let body = format!("name={raw}&scopes=templates%3Aread&csrf_token={csrf}");
        let res = app
            .client
            .post(app.url("/settings/developer/api-keys"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{raw}");
    }
    let list: serde_json::Value = app.get("/api/v1/api-keys").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing was stored: {list}");
}
both!(free_text_refuses_invisible_formatting_and_forms_refuse_bad_utf8);

/// A damaged allowed-address list (a range that no longer parses) must not
/// widen the key to every address: it fails closed.
async fn a_damaged_address_list_never_opens_a_key_to_every_address(app: TestApp) {
    use diesel::prelude::*;
    use latchkey::store::StoreError;
    use latchkey::store::schema::api_keys;

    app.owner_session().await;
    let key = crate::api_keys::create_key(
        &app,
        serde_json::json!({"name": "pinned", "scopes": ["templates:read"], "allowed_ips": ["203.0.113.0/24"]}),
    )
    .await;
    let id = key["id"].as_str().unwrap().to_owned();
    app.db()
        .run_sync(move |c| {
            diesel::update(api_keys::table.find(id))
                .set(api_keys::allowed_ips.eq("203.0.113.0/33"))
                .execute(c)
                .map_err(StoreError::from)
        })
        .unwrap();
    app.forget_cached_credentials();
    let res = crate::api_keys::call(&app, "/api/v1/auth/test", key["key"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "from 127.0.0.1, outside every parseable range");
}
both!(a_damaged_address_list_never_opens_a_key_to_every_address);
