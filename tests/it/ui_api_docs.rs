//! The API reference at `/docs/api`: Swagger UI, vendored and served by us,
//! draws every operation of the document under the site's CSP (no
//! violation, no console error), fits a laptop and a phone, passes axe, and
//! is linked from the developer pages; without JavaScript it links the
//! document itself.

use serde_json::Value;

use crate::helpers::{Backend, spawn_app};
use crate::webdriver::{Browser, LAPTOP, PHONE};

/// "METHOD /path" of every operation Swagger UI drew.
async fn drawn(browser: &Browser) -> Vec<String> {
    let v = browser
        .script(
            "return Array.from(document.querySelectorAll('.opblock-summary')).map(function (o) {\
               return o.querySelector('.opblock-summary-method').textContent + ' ' +\
                      o.querySelector('.opblock-summary-path').getAttribute('data-path'); })",
        )
        .await;
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_api_reference_draws_every_operation_under_the_csp() {
    let Some(browser) = Browser::start().await else { return };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let operations: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    browser.record_page_errors().await;
    let mut problems = Vec::new();
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.resize(size).await;
        browser.goto(&app.url("/docs/api")).await;
        browser.wait_for(".opblock-summary").await;
        browser.wait_ready().await;
        let ops = drawn(&browser).await;
        assert!(ops.contains(&"POST /api/v1/api-keys".to_owned()), "{ops:?}");
        assert!(ops.contains(&"POST /oauth/token".to_owned()), "{ops:?}");
        assert_eq!(ops.len(), operations, "every operation is drawn: {ops:?}");
        problems.extend(browser.page_errors().await.into_iter().map(|p| format!("api-docs-{label}: {p}")));
        problems.extend(browser.page_problems(&format!("api-docs-{label}")).await);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    browser.quit().await;
}

#[tokio::test]
async fn the_developer_pages_link_the_reference_and_it_needs_no_script_to_reach_the_document() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.owner_session().await;
    let keys = app.get_html("/settings/developer/api-keys").await;
    assert!(keys.contains(r#"href="/docs/api""#), "the developer pages link the reference");
    let page = app.other_client().get_html("/docs/api").await;
    assert!(page.contains("<noscript>") && page.contains(r#"href="/api/v1/openapi.json""#));
    assert!(!page.contains("<script>") && !page.contains(" style="), "no inline script or style (CSP)");
    let res = app.other_client().get("/docs/api").await;
    assert_eq!(res.headers()["content-security-policy"], latchkey::web::middleware::CSP, "the site's CSP, unchanged");
}
