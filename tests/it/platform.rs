//! What every response shares: headers, errors, assets, probes, configuration.

use reqwest::StatusCode;

use crate::api_keys::{call, create_key};
use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app};

async fn every_response_has_the_security_headers(app: TestApp) {
    for path in ["/login", "/healthz", "/nope", "/static/app.css"] {
        let res = app.get(path).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}");
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(!h.contains_key("strict-transport-security"), "no HSTS on plain http");
    }
    let html = app.get_html("/login").await;
    assert!(!html.contains("<script>") && !html.contains(" onclick="), "no inline script");
}
both!(every_response_has_the_security_headers);

#[tokio::test]
async fn https_public_url_adds_hsts_and_secure_cookies() {
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, &[("LATCHKEY_PUBLIC_URL", "https://portal.acme.test")])
        .await
        .unwrap();
    let res = app.get("/login").await;
    assert!(res.headers()["strict-transport-security"].to_str().unwrap().contains("max-age="));
    let cookie = res.cookies().find(|c| c.name() == "latchkey_session").unwrap();
    assert!(cookie.secure());
}

#[tokio::test]
async fn static_assets_are_cached_with_etags() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let res = app.get("/static/htmx.min.js").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().contains("javascript"));
    assert!(res.headers()["cache-control"].to_str().unwrap().contains("max-age=31536000"));
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let again = app.client.get(app.url("/static/htmx.min.js")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(app.get("/static/../Cargo.toml").await.status(), StatusCode::NOT_FOUND);
}

async fn errors_render_as_pages_toasts_or_json_by_what_was_asked(app: TestApp) {
    let page = app.get("/no/such/page").await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("<h1>Not Found</h1>"));

    let json = app.get("/api/v1/nothing-here").await;
    assert_eq!(json.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "not_found");

    let toast = app.client.get(app.url("/no/such/page")).header("HX-Request", "true").send().await.unwrap();
    assert_eq!(toast.headers()["hx-retarget"], "#toasts");
    assert!(toast.text().await.unwrap().contains("class=\"toast toast-error\""));
}
both!(errors_render_as_pages_toasts_or_json_by_what_was_asked);

/// A failure the server did not expect is a 500 page that names the request,
/// as the `X-Request-Id` header does, and keeps its cause for the log: when a
/// handler fails, and when the session store fails before any handler runs.
async fn an_internal_error_shows_its_request_id_and_not_its_cause(app: TestApp) {
    use diesel::connection::SimpleConnection;
    app.owner_session().await;
    for (table, path) in [("api_keys", "/settings/developer/api-keys"), ("sessions", "/settings/team")] {
        let sql = format!("ALTER TABLE {table} RENAME TO {table}_gone");
        app.db().run_sync(|c| c.batch_execute(&sql).map_err(latchkey::store::StoreError::from)).unwrap();
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{table}");
        assert!(res.headers().contains_key("content-security-policy"), "{table}");
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = res.text().await.unwrap();
        assert!(page.contains("<h1>Internal Server Error</h1>"), "{table}: {page}");
        assert!(page.contains(&format!("<code>{id}</code>")), "{table}: {page}");
        for cause in [table, "_gone", "no such table", "does not exist", "database", "relation"] {
            assert!(!page.contains(cause), "{table}: the page says {cause:?}");
        }
    }
}
both!(an_internal_error_shows_its_request_id_and_not_its_cause);

/// A usage flush that fails (here: its table is gone) loses no count: the
/// batch is kept and written, with what came since, by the next flush.
async fn a_failed_usage_flush_keeps_its_counts_for_the_next(app: TestApp) {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use latchkey::store::StoreError;
    use latchkey::store::schema::{api_key_usage, api_keys};
    let (first, then) = (5, 4); // within the free plan's burst of 10
    app.owner_session().await;
    let key = create_key(&app, serde_json::json!({"name": "counted", "scopes": ["templates:read"]})).await;
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    let rename = |from: &str, to: &str| {
        let sql = format!("ALTER TABLE {from} RENAME TO {to}");
        app.db().run_sync(|c| c.batch_execute(&sql).map_err(StoreError::from)).unwrap();
    };
    rename("api_key_usage", "api_key_usage_gone");
    for _ in 0..first {
        assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
    }
    let failed = app.try_flush_usage().await.expect_err("the usage table is gone");
    let cause = format!("{:#}", anyhow::Error::new(failed));
    assert!(cause.contains(&format!("{first} requests, kept for the next flush")), "{cause}");
    rename("api_key_usage_gone", "api_key_usage");
    for _ in 0..then {
        assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
    }
    app.flush_usage().await;
    let (counts, last_used) = app
        .db()
        .run_sync(|c| {
            let counts = api_key_usage::table
                .filter(api_key_usage::key_id.eq(&id))
                .select(api_key_usage::count)
                .load::<i64>(c)?;
            let last = api_keys::table.find(&id).select(api_keys::last_used_at).first::<Option<i64>>(c)?;
            Ok::<_, StoreError>((counts, last))
        })
        .unwrap();
    assert_eq!(counts.iter().sum::<i64>(), first + then, "every verified call counted once: {counts:?}");
    assert!(last_used.is_some(), "last used is set");
}
both!(a_failed_usage_flush_keeps_its_counts_for_the_next);

async fn health_and_readiness_probes_answer(app: TestApp) {
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let detail = ready.text().await.unwrap();
    let lines: Vec<&str> = detail.lines().collect();
    assert_eq!(lines[0], "ready", "{detail}");
    assert_eq!(lines[1], "database: ok");
    assert!(lines[2].starts_with("redis: off"), "no REDIS_URL: {detail}");
    assert!(lines[3].starts_with("change feed: "), "{detail}");
}
both!(health_and_readiness_probes_answer);

async fn malformed_input_gets_a_clear_error_and_never_a_crash(app: TestApp) {
    app.setup_owner().await;
    let csrf = crate::helpers::csrf_from(&app.get_html("/login").await);
    let bodies: Vec<Vec<u8>> = vec![
        b"%%%".to_vec(),
        vec![0xff, 0xfe, 0x00],
        format!("csrf_token={csrf}&email=%00%01&password=\u{202e}").into_bytes(),
        format!("csrf_token={csrf}&email={}&password=x", "a".repeat(60_000)).into_bytes(),
    ];
    for body in bodies {
        let res = app
            .client
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let huge = format!("csrf_token={csrf}&email={}", "a".repeat(300_000));
    let res = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.get("/invite/%00abc").await.status(), StatusCode::FORBIDDEN);
    let login = app.login(crate::helpers::OWNER_EMAIL, crate::helpers::OWNER_PASSWORD).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let res = app.post_form("/settings/team", "/settings/team/members/%00x/remove", &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK, "server still up");
}
both!(malformed_input_gets_a_clear_error_and_never_a_crash);

async fn audit_events_are_append_only_in_the_database(app: TestApp) {
    use diesel::connection::SimpleConnection;
    app.setup_owner().await;
    let db = app.db();
    let update = db.run_sync(|c| {
        c.batch_execute("UPDATE audit_events SET action = 'x'").map_err(latchkey::store::StoreError::from)
    });
    assert!(update.is_err(), "updates are refused");
    let delete =
        db.run_sync(|c| c.batch_execute("DELETE FROM audit_events").map_err(latchkey::store::StoreError::from));
    assert!(delete.is_err(), "deletes are refused");
}
both!(audit_events_are_append_only_in_the_database);

fn run_binary(envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    cmd.envs(envs.iter().copied()).args(args).output().unwrap()
}

#[test]
fn bad_configuration_stops_the_binary_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("latchkey-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.to_str().unwrap();
    let out = run_binary(&[("LATCHKEY_DATA_DIR", data), ("LATCHKEY_BIND", "not-an-address")], &["migrate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LATCHKEY_BIND: must be HOST:PORT"), "{err}");

    let file = dir.join("latchkey.toml");
    std::fs::write(&file, "LATCHKEY_BIND = \"127.0.0.1:9\"\nbind_adress = \"oops\"\n").unwrap();
    let out = run_binary(&[("LATCHKEY_DATA_DIR", data), ("LATCHKEY_CONFIG", file.to_str().unwrap())], &["migrate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown configuration key: bind_adress"), "{err}");

    let out = run_binary(&[("LATCHKEY_DATA_DIR", data), ("LATCHKEY_SECRET", "too-short")], &["migrate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LATCHKEY_SECRET: must be at least 32 characters") && !err.contains("too-short"), "{err}");
}

#[test]
fn the_server_secret_is_generated_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("latchkey-secret-{}", std::process::id()));
    let data = dir.to_str().unwrap();
    let out = run_binary(&[("LATCHKEY_DATA_DIR", data)], &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("secret");
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(run_binary(&[("LATCHKEY_DATA_DIR", data)], &["migrate"]).status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "reused, not regenerated");
    assert!(dir.join("latchkey.db").exists());
}

#[test]
fn user_create_reads_the_password_from_stdin() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("latchkey-cli-{}", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .env("LATCHKEY_DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .args(["user", "create", "--email", "Support@Latchkey.test", "--support"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"support staff password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("created user support@latchkey.test") && stdout.contains("support role"));
    assert!(!stdout.contains("support staff password"));
}

#[test]
fn the_binary_prints_the_setup_url_and_stops_gracefully_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("latchkey-serve-{}", std::process::id()));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .env("LATCHKEY_DATA_DIR", &dir)
        .env("LATCHKEY_BIND", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut setup_line = None;
    let mut port = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("/setup?token=") {
            setup_line = Some(line.clone());
        }
        if let Some(i) = line.find("port=") {
            port = line[i + 5..]
                .trim_matches(|c: char| !c.is_ascii_digit())
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .map(str::to_owned);
            break;
        }
    }
    let setup_line = setup_line.expect("the setup URL is logged");
    assert!(setup_line.contains("http://127.0.0.1:"), "{setup_line}");
    // Wait until it serves, so its signal handlers are in place.
    let port: u16 = port.expect("the port is logged").parse().unwrap();
    let mut served = false;
    for _ in 0..100 {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            if reply.starts_with("HTTP/1.") && reply.contains(" 200 OK") {
                served = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !served {
        let _ = child.kill();
        panic!("the server never answered /healthz");
    }
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn service_keys_and_plans_are_set_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("latchkey-sk-{}", std::process::id()));
    let data = dir.to_str().unwrap();
    let out = run_binary(
        &[("LATCHKEY_DATA_DIR", data)],
        &["service-key", "create", "--name", "gateway", "--scopes", "introspect,leaks:report"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(latchkey::service::keys::codec::parse(&key).is_some(), "{key}");
    let out =
        run_binary(&[("LATCHKEY_DATA_DIR", data)], &["service-key", "create", "--name", "x", "--scopes", "admin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a platform scope"));
    let out = run_binary(&[("LATCHKEY_DATA_DIR", data)], &["team", "set-plan", "--team", "Nobody", "--plan", "pro"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No team is named"));
}

#[test]
fn the_operator_can_reset_a_users_two_factor() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("latchkey-reset-{}", std::process::id()));
    let data = dir.to_str().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .env("LATCHKEY_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .args(["user", "create", "--email", "lost@acme.test", "--team", "Acme"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"lost my phone password\n").unwrap();
    assert!(child.wait().unwrap().success());
    let out = run_binary(&[("LATCHKEY_DATA_DIR", data)], &["user", "reset-totp", "--email", "Lost@acme.test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("two-factor authentication is off for lost@acme.test"));
    let out = run_binary(&[("LATCHKEY_DATA_DIR", data)], &["user", "reset-totp", "--email", "nobody@acme.test"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user with the email"));
}

/// `latchkey backup --to FILE` as the operator runs it, on the database at `database_url`.
fn backup_command(database_url: &str, to: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    cmd.env("DATABASE_URL", database_url).env("LATCHKEY_SECRET", crate::helpers::TEST_SECRET);
    cmd.arg("backup").arg("--to").arg(to);
    cmd
}

/// A snapshot taken while the server writes is a database another server,
/// given the same secret, serves as it was: the key verifies, the owner signs
/// in, the audit log holds the key's creation. A second backup to the same
/// file is refused and leaves it as it was.
#[tokio::test]
async fn a_backup_taken_while_serving_restores_keys_and_the_audit_log() {
    use crate::api_keys::{call, create_key};
    use serde_json::json;
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let key = create_key(&app, json!({"name": "backed up", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);

    // The folder does not exist yet: the command creates it.
    let snapshot = app.data_dir.join("backups").join("snap.db");
    let backup = backup_command(&app.database_url, &snapshot).output();
    tokio::pin!(backup);
    let mut written_meanwhile = 0;
    let out = loop {
        tokio::select! {
            out = &mut backup => break out.unwrap(),
            _ = create_key(&app, json!({"name": format!("meanwhile {written_meanwhile}"), "scopes": ["templates:read"]})) => {
                written_meanwhile += 1;
            }
        }
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let size = std::fs::metadata(&snapshot).unwrap().len();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the snapshot is private");
    }
    assert!(stdout.contains(&format!("written to {} ({size} bytes)", snapshot.display())), "{stdout}");
    eprintln!("{written_meanwhile} key(s) created while the backup ran");
    assert_eq!(call(&app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK, "still serving");

    let restored_dir = app.data_dir.join("restored");
    std::fs::create_dir_all(&restored_dir).unwrap();
    let restored_db = restored_dir.join("latchkey.db");
    std::fs::copy(&snapshot, &restored_db).unwrap();
    let restored_url = format!("sqlite://{}", restored_db.display());
    let restored = crate::helpers::serve(&restored_dir, &restored_url, &[]).await;
    assert!(restored.setup_token.is_none(), "the restored server has its users");
    let res = call(&restored, "/api/v1/auth/test", &secret).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"]["principal"]["key_id"], key["id"]);
    let login = restored.login(crate::helpers::OWNER_EMAIL, crate::helpers::OWNER_PASSWORD).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let audit = restored.get_html("/settings/team/audit?action=api_key.created").await;
    assert!(audit.contains("api_key.created") && audit.contains("backed up"), "{audit}");

    // Another secret derives other key hashes: the same key is unknown there.
    let other_secret = [("LATCHKEY_SECRET", "another-secret-0123456789-abcdefghijkl")];
    let elsewhere = crate::helpers::serve(&restored_dir, &restored_url, &other_secret).await;
    assert_eq!(call(&elsewhere, "/api/v1/auth/test", &secret).await.status(), StatusCode::UNAUTHORIZED);

    let before = std::fs::read(&snapshot).unwrap();
    let again = backup_command(&app.database_url, &snapshot).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&snapshot).unwrap(), before, "the existing file is left as it was");

    // A quote in the file name is a file name, not SQL.
    let quoted = app.data_dir.join("backups").join("o'clock \"snap\"; DROP TABLE users.db");
    let out = backup_command(&app.database_url, &quoted).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&quoted).unwrap().starts_with(b"SQLite format 3\0"));
}

#[tokio::test]
async fn backup_refuses_a_missing_database_and_postgresql() {
    let dir = std::env::temp_dir().join(format!("latchkey-backup-{}", std::process::id()));
    let missing = format!("sqlite://{}", dir.join("nothing-here.db").display());
    let out = backup_command(&missing, &dir.join("snap.db")).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no SQLite database at"), "{stderr}");
    assert!(!dir.join("nothing-here.db").exists() && !dir.join("snap.db").exists(), "nothing is created");

    let Some(postgres) = crate::helpers::fresh_postgres() else { return };
    let out = backup_command(&postgres, &dir.join("snap.db")).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.join("snap.db").exists(), "nothing is written");
}

/// PostgreSQL out of reach: requests get `503 unavailable` with `Retry-After`
/// (never a 500) once the pool gives up, and the same instance serves again
/// as soon as the database is back, without a restart.
#[tokio::test]
async fn an_unreachable_database_answers_503_and_the_server_recovers_by_itself() {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    let Some(app) = spawn_app(Backend::Postgres).await else { return };
    app.owner_session().await;
    let key = create_key(&app, serde_json::json!({"name": "outage", "scopes": ["templates:read"]})).await;
    let secret = key["key"].as_str().unwrap();
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK);
    let oauth_app = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let grant = [
        ("grant_type", "client_credentials"),
        ("client_id", oauth_app.client_id.as_str()),
        ("client_secret", oauth_app.secret.as_deref().unwrap()),
    ];

    let base = std::env::var("LATCHKEY_TEST_DATABASE_URL").unwrap();
    let name = app.database_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let mut admin = diesel::PgConnection::establish(&base).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .unwrap();
    app.forget_cached_credentials();
    let res = call(&app, "/api/v1/auth/test", secret).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().get("retry-after").unwrap(), "5");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // A page of a signed-in person (whose session cannot be read) is a 503 too.
    assert_eq!(app.get("/settings/developer/api-keys").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The token endpoint (an app, no cookie) answers in its RFC 6749 form, still 503.
    let machine = app.other_client().client;
    let token = machine.post(app.url("/oauth/token")).form(&grant).send().await.unwrap();
    assert_eq!(token.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(token.headers().get("retry-after").unwrap(), "5");
    let body: serde_json::Value = token.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");

    admin.batch_execute(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")).unwrap();
    assert_eq!(call(&app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK);
    let token = machine.post(app.url("/oauth/token")).form(&grant).send().await.unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    assert_eq!(app.get("/settings/developer/api-keys").await.status(), StatusCode::OK);
}
