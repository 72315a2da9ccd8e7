//! The OpenAPI document: valid OpenAPI 3.1 (the OpenAPI Initiative's JSON
//! Schema, vendored), every `$ref` resolves, every schema is a valid JSON
//! Schema, every operation states the refusals it can really answer, and its
//! `/api/v1` paths are the server's route table, both ways. Served with an
//! ETag. `openapi_answers.rs` checks real answers against it.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::both;
use crate::helpers::TestApp;

/// The document as the server serves it, without any credential.
pub async fn document(app: &TestApp) -> Value {
    let res = app.other_client().client.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// Where a document is known to the validator.
pub const DOC_URL: &str = "https://latchkey.test/openapi.json";

/// The validator of `doc`'s schemas, with formats (date-time, date) asserted.
pub fn compiler(doc: &Value) -> boon::Compiler {
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    compiler.add_resource(DOC_URL, doc.clone()).unwrap();
    compiler
}

/// `value` validated against the schema at JSON pointer `pointer` of the document.
pub fn check(compiler: &mut boon::Compiler, pointer: &str, value: &Value) -> Result<(), String> {
    let mut schemas = boon::Schemas::new();
    let location = format!("{DOC_URL}#{pointer}");
    let index = compiler.compile(&location, &mut schemas).map_err(|e| format!("{location}: {e:#}"))?;
    schemas.validate(value, index).map_err(|e| format!("{e:#}"))
}

/// `~` and `/` escaped for a JSON pointer.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Every operation: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

/// Every `$ref` anywhere in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

async fn the_document_is_valid_openapi_3_1_and_every_ref_resolves(app: TestApp) {
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "Latchkey");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["servers"][0]["url"], app.address.as_str());

    let meta: Value = serde_json::from_str(include_str!("vendor/openapi-3.1.schema.json")).unwrap();
    let mut oas = boon::Compiler::new();
    oas.add_resource("https://latchkey.test/oas-3.1.json", meta).unwrap();
    let mut schemas = boon::Schemas::new();
    let index = oas.compile("https://latchkey.test/oas-3.1.json", &mut schemas).unwrap();
    if let Err(e) = schemas.validate(&doc, index) {
        panic!("the document is not valid OpenAPI 3.1: {e:#}");
    }

    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }

    // Each schema is itself a valid JSON Schema (draft 2020-12, the 3.1 dialect's base).
    let mut compiler = compiler(&doc);
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        let mut schemas = boon::Schemas::new();
        let location = format!("{DOC_URL}#/components/schemas/{}", escape(name));
        if let Err(e) = compiler.compile(&location, &mut schemas) {
            panic!("schema {name} does not compile: {e:#}");
        }
    }
}
both!(the_document_is_valid_openapi_3_1_and_every_ref_resolves);

async fn every_operation_documents_the_refusals_it_can_answer(app: TestApp) {
    let doc = document(&app).await;
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let expected = [
        "bad_request",
        "unauthorized",
        "forbidden",
        "insecure_connection",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "validation_failed",
        "rate_limit_exceeded",
        "internal",
        "unavailable",
    ];
    assert_eq!(codes, expected.into_iter().collect(), "every code of the envelope");
    for (path, method, op) in operations(&doc) {
        let what = format!("{} {path}", method.to_uppercase());
        let statuses: BTreeSet<&str> = op["responses"].as_object().unwrap().keys().map(String::as_str).collect();
        assert!(statuses.iter().any(|s| s.starts_with('2')), "{what} has no success");
        assert!(op["operationId"].is_string() && op["description"].is_string(), "{what} is not described");
        let keyed = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
        if keyed {
            for status in ["401", "403", "429", "500", "503"] {
                assert!(statuses.contains(status), "{what} lacks {status}");
            }
            assert!(doc.pointer("/components/responses/RateLimited/headers/Retry-After").is_some());
        }
        if op.get("requestBody").is_some() {
            assert!(statuses.contains("400"), "{what} takes a body but lacks 400");
            // The OAuth endpoints answer a body they cannot read (too large included) with `invalid_request`.
            let envelope = !path.starts_with("/oauth/token") && !path.starts_with("/oauth/revoke");
            assert!(!envelope || statuses.contains("413"), "{what} takes a body but lacks 413");
        }
        if path.contains("{id}") {
            assert!(statuses.contains("404"), "{what} names an object but lacks 404");
        }
        if path.starts_with("/oauth/token") || path.starts_with("/oauth/revoke") {
            assert!(statuses.contains("401") && statuses.contains("400"), "{what}: RFC 6749 errors");
        }
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
    assert_eq!(schemes["client_basic"]["scheme"], "basic");
    assert_eq!(schemes["session"]["in"], "cookie");
}
both!(every_operation_documents_the_refusals_it_can_answer);

async fn the_api_v1_routes_and_the_document_match_both_ways(app: TestApp) {
    let doc = document(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .filter(|(path, _, _)| path.starts_with("/api/v1/"))
        .map(|(path, method, _)| (method.to_uppercase(), path))
        .collect();
    let routed: BTreeSet<(String, String)> = latchkey::web::api_routes::API_V1
        .iter()
        .map(|r| (r.method.to_string(), format!("/api/v1{}", r.path)))
        .collect();
    assert_eq!(routed, documented, "the route table and the document differ");
    // And the table is what the server routes: each answers (401 without a
    // credential, the document itself 200), where an unrouted path is a 404.
    let client = app.other_client().client;
    for (method, path) in &routed {
        let url = app.url(&path.replace("{id}", "key_0000000000000000"));
        let res = client.request(method.parse().unwrap(), url).send().await.unwrap();
        let expected = if path.ends_with("/openapi.json") { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(res.status(), expected, "{method} {path}");
    }
    let unrouted = client.get(app.url("/api/v1/no-such-thing")).send().await.unwrap();
    assert_eq!(unrouted.status(), StatusCode::NOT_FOUND);
}
both!(the_api_v1_routes_and_the_document_match_both_ways);

async fn the_document_has_an_etag_and_answers_304_while_unchanged(app: TestApp) {
    let client = app.other_client().client;
    let first = client.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(first.headers()["cache-control"], "no-cache");
    let again = client.get(app.url("/api/v1/openapi.json")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = client.get(app.url("/api/v1/openapi.json")).header("If-None-Match", "\"other\"").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    // The scope catalogue of this server is in it: a client can offer the real scopes.
    let doc: Value = other.json().await.unwrap();
    let scopes = &doc["components"]["schemas"]["CreateApiKey"]["properties"]["scopes"]["items"]["enum"];
    assert!(scopes.as_array().unwrap().iter().any(|s| s == "api_keys:read"), "{scopes}");
}
both!(the_document_has_an_etag_and_answers_304_while_unchanged);
