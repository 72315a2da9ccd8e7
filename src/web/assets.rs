//! Static files (htmx, CSS, JS, icons), embedded in release builds.
//! URLs carry `?v=<content version>` so they can be cached for a year; each file
//! also has an ETag for conditional requests.

use std::sync::OnceLock;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::error::AppError;

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Assets;

/// A short hash over every asset, appended to asset URLs.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        let mut names: Vec<_> = Assets::iter().collect();
        names.sort();
        for name in names {
            if let Some(file) = Assets::get(&name) {
                hasher.update(name.as_bytes());
                hasher.update(file.metadata.sha256_hash());
            }
        }
        hex::encode(hasher.finalize())[..12].to_owned()
    })
}

pub async fn serve(path: web::Path<String>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let file = Assets::get(&path).ok_or(AppError::NotFound)?;
    let etag = format!("\"{}\"", &hex::encode(file.metadata.sha256_hash())[..16]);
    let cache = (CACHE_CONTROL, "public, max-age=31536000, immutable");
    let matches = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    if matches {
        return Ok(HttpResponse::NotModified().insert_header(cache).insert_header((ETAG, etag)).finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, file.metadata.mimetype()))
        .insert_header(cache)
        .insert_header((ETAG, etag))
        .body(file.data.into_owned()))
}
