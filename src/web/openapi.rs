//! The OpenAPI 3.1 document of `/api/v1` and of the OAuth endpoints' JSON,
//! made from the code: each handler's `#[utoipa::path]`, the `ToSchema` of
//! the types it sends and reads, and the envelope's refusals
//! ([`responses`]). Served at `GET /api/v1/openapi.json`; `/docs/api`
//! renders it.
//!
//! Rules: the document is built once, when the server starts, with this
//! configuration's public URL and scope catalogue, and served as built
//! (ETag, revalidated by clients); no credential is needed to read it. Every
//! route of `web::api_routes::API_V1` is in it and nothing else under
//! `/api/v1` (a test compares them both ways).

mod responses;
mod schemes;

use actix_web::dev::ResourceDef;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

pub use responses::{
    BadRequest, ChangeRefusals, Forbidden, Internal, NotFound, OAuthBadRequest, OAuthInvalidClient, OAuthServerError,
    OAuthSlowDown, OAuthUnavailable, PayloadTooLarge, RateLimited, Unauthorized, Unavailable, ValidationFailed,
};

use responses::CredentialResponses;
use schemes::Schemes;

use crate::config::Config;
use crate::error::AppError;
use crate::web::envelope::ErrorEnvelope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "API keys, OAuth 2.0 and credential checks of a Latchkey developer portal. Success answers of \
                       `/api/v1` are `{\"status\":\"success\",\"data\":…}` (lists add `next_cursor`); refusals are \
                       `{\"status\":\"error\",\"error\":{\"code\",\"message\"}}` with one `code` per status. The OAuth \
                       endpoints answer as their RFCs say."
    ),
    paths(
        crate::web::api_keys_api::auth_test::auth_test,
        crate::web::api_keys_api::list,
        crate::web::api_keys_api::create,
        crate::web::api_keys_api::get,
        crate::web::api_keys_api::edit::update,
        crate::web::api_keys_api::revoke,
        crate::web::api_keys_api::roll::roll,
        crate::web::api_keys::usage::export::api,
        crate::web::leaks_api::leaked_keys,
        serve,
        crate::web::introspect::introspect,
        crate::web::introspect::forward_auth,
        crate::web::oauth::back_channel::token,
        crate::web::oauth::back_channel::revoke,
        crate::web::oauth::back_channel::metadata,
    ),
    components(
        schemas(ErrorEnvelope, crate::web::oauth::OAuthErrorJson),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, PayloadTooLarge, ValidationFailed, RateLimited, Internal,
            Unavailable, OAuthBadRequest, OAuthInvalidClient, OAuthSlowDown, OAuthServerError, OAuthUnavailable,
        ),
    ),
    modifiers(&Schemes, &CredentialResponses),
    tags(
        (name = "API keys", description = "A team's API keys: list, create, read, change, roll, revoke, usage."),
        (name = "Credentials", description = "Who a credential is, for callers and reverse proxies."),
        (name = "Leaked credentials", description = "Reports from secret-scanning partners."),
        (name = "OAuth 2.0", description = "The authorization server's back channel (RFC 6749, 7009, 7662, 8414)."),
        (name = "Document", description = "This document."),
    ),
)]
struct ApiDoc;

/// The document of a server with `config`, as a value (tests read it).
pub fn document(config: &Config) -> anyhow::Result<serde_json::Value> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.license = None;
    doc.servers = Some(vec![utoipa::openapi::server::Server::new(config.public_url.clone())]);
    let mut doc = serde_json::to_value(&doc).context("serialising the OpenAPI document")?;
    // The scope catalogue is configuration: the document names this server's.
    for schema in ["CreateApiKey", "UpdateApiKey"] {
        if let Some(items) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/scopes/items")) {
            items["enum"] = serde_json::json!(config.scopes);
        }
    }
    Ok(doc)
}

/// The document as served: built once at start, with its paths' methods.
pub struct Document {
    json: web::Bytes,
    etag: String,
    /// Each documented path (as routing matches it) and its methods.
    methods: Vec<(ResourceDef, Vec<String>)>,
}

impl Document {
    pub fn build(config: &Config) -> anyhow::Result<Self> {
        let doc = document(config)?;
        let json = serde_json::to_vec(&doc).context("writing the OpenAPI document")?;
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&json))[..16]);
        let paths = doc["paths"].as_object().into_iter().flatten();
        let methods = paths
            .map(|(path, item)| {
                let methods = item.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()).collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Ok(Self { json: json.into(), etag, methods })
    }

    /// The methods of the documented path `path` matches, if any.
    fn methods_of(&self, path: &str) -> Option<&[String]> {
        self.methods.iter().find(|(def, _)| def.is_match(path)).map(|(_, methods)| methods.as_slice())
    }
}

/// What no route took: on a documented path, another method than its own
/// is `405` with `Allow` (RFC 9110 §15.5.6); anything else is `404`.
pub async fn not_routed(req: HttpRequest, doc: Option<web::Data<Document>>) -> Result<HttpResponse, AppError> {
    let methods = doc.as_deref().and_then(|d| d.methods_of(req.path()));
    Err(match methods {
        Some(methods) if !methods.iter().any(|m| m == req.method().as_str()) => {
            AppError::MethodNotAllowed { allow: methods.join(", ") }
        }
        _ => AppError::NotFound,
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "Document",
    operation_id = "openapi_document",
    description = "The OpenAPI 3.1 document of this server; no credential needed. It has an `ETag`: send it back \
                   in `If-None-Match` to get `304` while it is unchanged.",
    responses(
        (status = 200, description = "The document.", content_type = "application/json", body = Object,
         headers(("ETag" = String, description = "The document's version."))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`."),
    ),
)]
pub async fn serve(doc: web::Data<Document>, req: HttpRequest) -> HttpResponse {
    let cache = (CACHE_CONTROL, "no-cache");
    let unchanged = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == doc.etag || tag == "*")
    });
    if unchanged {
        return HttpResponse::NotModified().insert_header(cache).insert_header((ETAG, doc.etag.clone())).finish();
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header(cache)
        .insert_header((ETAG, doc.etag.clone()))
        .body(doc.json.clone())
}
