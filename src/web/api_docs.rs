//! `GET /docs/api`: the API reference, Swagger UI (vendored in
//! `static/swagger-ui/`) drawing `/api/v1/openapi.json`.
//!
//! Rules: public, like the document it draws; no inline script or style
//! (the site's CSP holds here unchanged); without JavaScript the page links
//! the document itself.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use askama::Template;

use super::page::render;
use crate::error::AppError;

#[derive(Template)]
#[template(path = "pages/api_docs.html")]
struct ApiDocsPage {
    asset_v: &'static str,
}

/// The reference page.
pub async fn page() -> Result<HttpResponse, AppError> {
    render(StatusCode::OK, &ApiDocsPage { asset_v: super::assets::version() })
}
