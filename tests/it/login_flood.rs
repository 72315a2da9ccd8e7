//! Sign-ins while every password hashing thread is taken: a 503 with
//! `Retry-After` that changes nothing (no throttle count, no audit event).
//! The threads are held by the test, so nothing here depends on timing.

use reqwest::StatusCode;

use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, login_failures, spawn_app_with};

/// One hashing thread and a short wait, so that a held thread refuses quickly.
const SETTINGS: &[(&str, &str)] = &[("LATCHKEY_PASSWORD_THREADS", "1"), ("LATCHKEY_PASSWORD_WAIT_MS", "50")];
const BUSY: &str = "Too many sign-ins are being checked right now; try again in a moment.";

macro_rules! with_one_hashing_thread {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                if let Some(app) = spawn_app_with(Backend::Sqlite, SETTINGS).await {
                    super::$name(app).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(app) = spawn_app_with(Backend::Postgres, SETTINGS).await {
                    super::$name(app).await;
                }
            }
        }
    };
}

async fn assert_busy(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 10, "{retry}");
    let page = res.text().await.unwrap();
    assert!(page.contains(BUSY), "{page}");
    assert!(page.contains("name=\"password\""), "the sign-in form is shown again");
}

async fn sign_ins_refused_for_a_full_queue_are_not_counted_or_audited(app: TestApp) {
    app.setup_owner().await;
    let held = app.hold_password_threads().await;
    // More than the account's five failures, and every kind of sign-in alike.
    for _ in 0..6 {
        assert_busy(app.login(OWNER_EMAIL, "wrong password!!").await).await;
    }
    assert_busy(app.login("nobody@acme.test", "wrong password!!").await).await;
    assert_busy(app.login(OWNER_EMAIL, OWNER_PASSWORD).await).await;
    assert_eq!(login_failures(&app), 0, "nothing audited as a failure");
    drop(held);

    // No throttle counted them: the right password signs in.
    let res = app.login(OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get("/settings/team").await.status(), StatusCode::OK);
}
with_one_hashing_thread!(sign_ins_refused_for_a_full_queue_are_not_counted_or_audited);

async fn failures_count_again_once_a_thread_is_free(app: TestApp) {
    app.setup_owner().await;
    let held = app.hold_password_threads().await;
    assert_busy(app.login(OWNER_EMAIL, "wrong password!!").await).await;
    drop(held);
    for _ in 0..5 {
        assert_eq!(app.login(OWNER_EMAIL, "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_failures(&app), 5);
    assert_eq!(app.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}
with_one_hashing_thread!(failures_count_again_once_a_thread_is_free);

async fn a_password_change_refused_for_a_full_queue_keeps_the_old_password(app: TestApp) {
    app.owner_session().await;
    let held = app.hold_password_threads().await;
    let res = app.change_password(OWNER_PASSWORD, "a brand new password 42").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    drop(held);
    let other = app.other_client();
    assert_eq!(other.login(OWNER_EMAIL, OWNER_PASSWORD).await.status(), StatusCode::SEE_OTHER);
}
with_one_hashing_thread!(a_password_change_refused_for_a_full_queue_keeps_the_old_password);
