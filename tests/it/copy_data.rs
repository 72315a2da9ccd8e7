//! `latchkey copy-data --to postgres://…`: data of every kind made on a SQLite
//! server, copied while that server keeps serving, then used unchanged by a
//! server on PostgreSQL with the same secret. PostgreSQL required (skipped
//! loudly otherwise).

use diesel::prelude::*;
use oauth2::{AuthorizationCode, TokenResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, api_post, call, create_key};
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TEST_SECRET, TestApp, fresh_postgres, spawn_app};
use crate::oauth::{REDIRECT, client, code_for, http, register};
use crate::totp::{away_from_boundary, code_at_step, current_step, enrol_at};
use latchkey::store::copy::{NOT_COPIED, TABLES};

/// `latchkey copy-data --to TARGET` as the operator runs it, from `database_url`.
fn copy_command(database_url: &str, target: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    cmd.env("DATABASE_URL", database_url).env("LATCHKEY_SECRET", TEST_SECRET);
    cmd.args(["copy-data", "--to", target]);
    cmd
}

use latchkey::store::copy::{Count, Name};

/// Rows per copied table in the PostgreSQL database at `url`.
fn pg_counts(url: &str) -> Vec<(String, i64)> {
    let mut conn = PgConnection::establish(url).unwrap();
    TABLES
        .iter()
        .map(|t| {
            let n =
                diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {t}")).get_result::<Count>(&mut conn).unwrap().n;
            ((*t).to_owned(), n)
        })
        .collect()
}

/// One query's single text column, on PostgreSQL.
fn pg_strings(url: &str, sql: &str) -> Vec<String> {
    let mut conn = PgConnection::establish(url).unwrap();
    diesel::sql_query(sql).load::<Name>(&mut conn).unwrap().into_iter().map(|r| r.name).collect()
}

/// The same, on the SQLite file of `url`.
fn sqlite_strings(url: &str, sql: &str) -> Vec<String> {
    let mut conn = SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
    diesel::sql_query(sql).load::<Name>(&mut conn).unwrap().into_iter().map(|r| r.name).collect()
}

/// Every table a migrated database has is copied or deliberately left out:
/// a migration that adds a table fails here until the copy knows it.
#[tokio::test]
async fn the_copied_tables_are_every_table_of_the_schema() {
    let dir = std::env::temp_dir().join(format!("latchkey-copy-tables-{}", std::process::id()));
    let path = dir.join("schema.db");
    let _ = std::fs::remove_file(&path);
    let conn = latchkey::store::connect_once(&latchkey::config::DatabaseUrl::Sqlite(path.clone())).unwrap();
    drop(conn);
    let mut tables = sqlite_strings(
        &format!("sqlite://{}", path.display()),
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    );
    tables.retain(|t| !NOT_COPIED.contains(&t.as_str()));
    let mut copied: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    copied.sort();
    assert_eq!(tables, copied, "SQLite tables");
    std::fs::remove_dir_all(&dir).unwrap();

    let Some(pg) = fresh_postgres() else { return };
    let mut tables = pg_strings(
        &pg,
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY table_name",
    );
    tables.retain(|t| !NOT_COPIED.contains(&t.as_str()));
    assert_eq!(tables, copied, "PostgreSQL tables");
}

/// What the SQLite server holds before the copy, for the checks after it.
struct Made {
    key: String,
    key_id: String,
    revoked: String,
    rolled_old: String,
    rolled_new: String,
    gateway: String,
    oauth: crate::oauth::App,
    access: String,
    refresh: oauth2::RefreshToken,
    totp: String,
}

/// Data of every kind: owner with password and TOTP (recovery codes), an
/// invite and a member, keys (scoped, fenced, expiring; rolled; revoked; a
/// service key), an OAuth app with consent, code and tokens, sessions, usage
/// and audit events.
async fn make_everything(app: &TestApp) -> Made {
    app.owner_session().await;
    let (totp, _) = enrol_at(app, OWNER_PASSWORD, -1).await;
    // An endpoint: every event below queues a webhook message and delivery.
    crate::webhooks::add_endpoint(app, "https://hooks.example.com/in", &[]).await;
    app.invite("pending@acme.test", "developer").await;
    crate::accounts::member(app, "dev@acme.test", "developer").await;
    let expires = latchkey::web::format::rfc3339(app.clock().now() + 30 * 86_400);
    let body = json!({"name": "kept", "scopes": ["templates:read", "api_keys:read"],
                      "allowed_ips": ["127.0.0.1", "10.0.0.0/8"], "expires_at": expires});
    let key = create_key(app, body).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(call(app, "/api/v1/auth/test", &secret).await.status(), StatusCode::OK);
    }
    // An exercised scope (api_key_scope_use), hours and sightings (usage_*).
    assert_eq!(call(app, "/api/v1/api-keys", &secret).await.status(), StatusCode::OK);
    let revoked = create_key(app, json!({"name": "revoked", "scopes": ["templates:read"]})).await;
    assert_eq!(
        api_delete(app, &format!("/api/v1/api-keys/{}", revoked["id"].as_str().unwrap())).await.status(),
        StatusCode::OK
    );
    let old = create_key(app, json!({"name": "rolled", "scopes": ["templates:read"]})).await;
    let res = api_post(
        app,
        &format!("/api/v1/api-keys/{}/roll", old["id"].as_str().unwrap()),
        &json!({"grace_seconds": 86400}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let new: Value = res.json().await.unwrap();
    let gateway = crate::helpers::service_key(app, &["introspect"]);

    let oauth = register(app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(app, &oauth, REDIRECT);
    let (code, _) = code_for(app, &c, &["templates:read"], None).await;
    let token = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    app.flush_usage().await;
    let (key_id, at) = (key["id"].as_str().unwrap().to_owned(), app.clock().now());
    let claimed = app.db().run_sync(move |c| {
        latchkey::store::models::Reminder::claim(c, &key_id, "expiring_7d", at)
            .map_err(latchkey::store::StoreError::from)
    });
    assert!(claimed.unwrap(), "a reminder row");
    // Reminders turned off (email_opt_outs); signing in recorded a device (known_devices).
    let res = app.post_form("/settings/security", "/settings/security/email", &[("kind", "api_key.expiring")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    Made {
        key: secret,
        key_id: key["id"].as_str().unwrap().to_owned(),
        revoked: revoked["key"].as_str().unwrap().to_owned(),
        rolled_old: old["key"].as_str().unwrap().to_owned(),
        rolled_new: new["data"]["key"].as_str().unwrap().to_owned(),
        gateway,
        oauth,
        access: token.access_token().secret().clone(),
        refresh: token.refresh_token().unwrap().clone(),
        totp,
    }
}

#[tokio::test]
async fn a_copy_taken_while_serving_works_unchanged_on_postgresql() {
    let Some(target) = fresh_postgres() else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let made = make_everything(&app).await;

    // Copy while the SQLite server keeps creating keys.
    let copy = copy_command(&app.database_url, &target).output();
    tokio::pin!(copy);
    let mut meanwhile = 0;
    let out = loop {
        tokio::select! {
            out = &mut copy => break out.unwrap(),
            _ = create_key(&app, json!({"name": format!("meanwhile {meanwhile}"), "scopes": ["templates:read"]})) => {
                meanwhile += 1;
            }
        }
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    eprintln!("{meanwhile} key(s) created while the copy ran\n{stdout}");
    assert!(stdout.contains("DATABASE_URL=") && stdout.contains("same server secret"), "{stdout}");
    assert!(!stdout.contains(TEST_SECRET) && !stderr.contains(TEST_SECRET), "the secret is never printed");
    let counts = pg_counts(&target);
    for (table, n) in &counts {
        assert!(*n > 0, "{table} has data of its kind");
        assert!(
            stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [table.as_str(), &n.to_string()]),
            "{table} {n}: {stdout}"
        );
    }

    // One snapshot: each copied key came with its creation event, and the ids
    // of the audit log are the SQLite ones.
    let orphans = pg_strings(
        &target,
        "SELECT k.id AS name FROM api_keys k WHERE k.name LIKE 'meanwhile %' AND NOT EXISTS \
         (SELECT 1 FROM audit_events a WHERE a.action = 'api_key.created' AND a.object_id = k.id) \
         UNION ALL SELECT a.object_id AS name FROM audit_events a WHERE a.action = 'api_key.created' \
         AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = a.object_id)",
    );
    assert!(orphans.is_empty(), "{orphans:?}");
    let audit_sql = "SELECT id::text || ' ' || action || ' ' || details AS name FROM audit_events ORDER BY id";
    let copied_audit = pg_strings(&target, audit_sql);
    let source_audit = sqlite_strings(
        &app.database_url,
        "SELECT CAST(id AS TEXT) || ' ' || action || ' ' || details AS name FROM audit_events ORDER BY id",
    );
    assert_eq!(copied_audit[..], source_audit[..copied_audit.len()], "same events, same ids");
    let last_copied: i64 = copied_audit.last().unwrap().split(' ').next().unwrap().parse().unwrap();

    // A second copy into the now non-empty target is refused and writes nothing.
    let again = copy_command(&app.database_url, &target).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(pg_counts(&target), counts, "nothing written");

    // A server on PostgreSQL with the same secret; the old browser comes along.
    let dir = app.data_dir.join("on-postgres");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pg = crate::helpers::serve(&dir, &target, &[]).await;
    assert!(pg.setup_token.is_none(), "the copied server has its users");
    pg.client = app.client.clone();
    let detail = pg.get_html(&format!("/settings/developer/api-keys/{}", made.key_id)).await;
    assert!(detail.contains("4 requests in all"), "usage kept, and the old session works: {detail}");
    assert_eq!(call(&pg, "/api/v1/auth/test", &made.key).await.status(), StatusCode::OK);
    assert_eq!(call(&pg, "/api/v1/auth/test", &made.revoked).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call(&pg, "/api/v1/auth/test", &made.rolled_old).await.status(), StatusCode::OK, "grace kept");
    assert_eq!(call(&pg, "/api/v1/auth/test", &made.rolled_new).await.status(), StatusCode::OK);
    let audit = pg.get_html("/settings/team/audit").await;
    assert!(audit.contains("api_key.revoked") && audit.contains("api_key.rolled") && audit.contains("totp"), "{audit}");

    // OAuth: the access token introspects active; the refresh token refreshes.
    let info: Value = pg
        .other_client()
        .client
        .post(pg.url("/oauth/introspect"))
        .bearer_auth(&made.gateway)
        .form(&[("token", &made.access)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true, "{info}");
    let c = client(&pg, &made.oauth, REDIRECT);
    let refreshed = c.exchange_refresh_token(&made.refresh).request_async(&http()).await.unwrap();
    assert_eq!(crate::oauth::auth_test(&pg, refreshed.access_token().secret()).await.status(), StatusCode::OK);

    // New rows continue after the copied ids.
    let key = create_key(&pg, json!({"name": "on postgres", "scopes": ["templates:read"]})).await;
    let ids = pg_strings(
        &target,
        &format!("SELECT id::text AS name FROM audit_events WHERE object_id = '{}'", key["id"].as_str().unwrap()),
    );
    assert_eq!(ids.len(), 1);
    assert!(ids[0].parse::<i64>().unwrap() > last_copied, "{} after {last_copied}", ids[0]);

    // The owner signs in anew with password and TOTP.
    let browser = pg.other_client();
    let res = browser.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(crate::helpers::location(&res), "/login/totp");
    away_from_boundary().await;
    let res =
        browser.post_form("/login/totp", "/login/totp", &[("code", &code_at_step(&made.totp, current_step()))]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/settings/team").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn copy_data_refuses_what_it_cannot_copy() {
    let Some(target) = fresh_postgres() else { return };
    let dir = std::env::temp_dir().join(format!("latchkey-copy-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let refused = |out: std::process::Output, says: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
    };
    let other = fresh_postgres().unwrap();
    refused(copy_command(&other, &target).output().await.unwrap(), "already uses PostgreSQL");
    let missing = format!("sqlite://{}", dir.join("missing.db").display());
    refused(copy_command(&missing, &target).output().await.unwrap(), "no SQLite database at");
    assert!(!dir.join("missing.db").exists(), "nothing created");
    let blank = dir.join("blank.db");
    std::fs::write(&blank, b"").unwrap();
    let blank = format!("sqlite://{}", blank.display());
    refused(copy_command(&blank, &target).output().await.unwrap(), "run `latchkey migrate` first");
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    refused(
        copy_command(&app.database_url, "sqlite:///tmp/x.db").output().await.unwrap(),
        "--to must be a PostgreSQL URL",
    );
    assert!(pg_counts(&target).iter().all(|(_, n)| *n == 0), "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A table larger than one batch arrives whole, and its sequence continues
/// after the last copied id.
#[tokio::test]
async fn a_table_larger_than_a_batch_is_copied_whole() {
    let Some(target) = fresh_postgres() else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let mut conn = SqliteConnection::establish(app.database_url.trim_start_matches("sqlite://")).unwrap();
    diesel::sql_query(
        "INSERT INTO audit_events (created_at, actor_label, action, details) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1234) \
         SELECT i, 'bulk', 'test.bulk', '{\"n\":' || i || '}' FROM n",
    )
    .execute(&mut conn)
    .unwrap();
    drop(conn);
    let out = copy_command(&app.database_url, &target).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let sql = "SELECT details AS name FROM audit_events ORDER BY id";
    let source = sqlite_strings(&app.database_url, sql);
    assert_eq!(source.len(), 1234);
    assert_eq!(pg_strings(&target, sql), source);
    assert!(stdout.contains("sequence of audit_events.id set to 1234"), "{stdout}");
    let mut pg = PgConnection::establish(&target).unwrap();
    let next = diesel::sql_query("SELECT nextval(pg_get_serial_sequence('audit_events', 'id')) AS n")
        .get_result::<Count>(&mut pg)
        .unwrap()
        .n;
    assert_eq!(next, 1235);
}
