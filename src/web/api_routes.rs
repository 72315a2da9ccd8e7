//! The `/api/v1` route table: `web::routes` builds the scope from it, and
//! the OpenAPI document's test compares it with the document, both ways.
//!
//! Rules: a route under `/api/v1` exists only as a row here (with the
//! handler that serves it), and has its `#[utoipa::path]` in the document.

use actix_web::http::Method;
use actix_web::{Route, Scope, web};

use super::{api_keys, api_keys_api, leaks_api, openapi};

/// One route: its method, its path under `/api/v1`, what serves it, and
/// the JSON body limit it needs when not the scope's.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    to: fn() -> Route,
    json: Option<fn() -> web::JsonConfig>,
}

const fn row(method: Method, path: &'static str, to: fn() -> Route) -> ApiRoute {
    ApiRoute { method, path, to, json: None }
}

const fn row_with_json(
    method: Method,
    path: &'static str,
    to: fn() -> Route,
    json: fn() -> web::JsonConfig,
) -> ApiRoute {
    ApiRoute { method, path, to, json: Some(json) }
}

/// Every route under `/api/v1`, in matching order.
pub static API_V1: [ApiRoute; 10] = [
    row(Method::GET, "/auth/test", || web::route().to(api_keys_api::auth_test)),
    row(Method::GET, "/api-keys", || web::route().to(api_keys_api::list)),
    row(Method::POST, "/api-keys", || web::route().to(api_keys_api::create)),
    row(Method::GET, "/api-keys/{id}", || web::route().to(api_keys_api::get)),
    row(Method::DELETE, "/api-keys/{id}", || web::route().to(api_keys_api::revoke)),
    row(Method::PATCH, "/api-keys/{id}", || web::route().to(api_keys_api::update)),
    row(Method::POST, "/api-keys/{id}/roll", || web::route().to(api_keys_api::roll)),
    row(Method::GET, "/api-keys/{id}/usage", || web::route().to(api_keys::usage::api)),
    // Leak reports carry up to 1,000 candidates: a larger body limit.
    row_with_json(Method::POST, "/leaked-keys", || web::route().to(leaks_api::leaked_keys), leaks_api::json_config),
    row(Method::GET, "/openapi.json", || web::route().to(openapi::serve)),
];

/// The `/api/v1` scope, from [`API_V1`].
pub fn scope() -> Scope {
    API_V1.iter().fold(web::scope("/api/v1").app_data(api_keys_api::json_config()), |scope, r| {
        let route = (r.to)().method(r.method.clone());
        match r.json {
            // A resource of its own (a path with one method): its body limit.
            Some(config) => scope.service(
                web::resource(r.path).app_data(config()).route(route).default_service(web::to(openapi::not_routed)),
            ),
            // The method guards the resource, so the next one of the same path is tried.
            None => scope.route(r.path, route),
        }
    })
}
