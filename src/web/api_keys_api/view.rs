//! The key object of the JSON API, as every `/api/v1/api-keys` answer shows it.
//!
//! Rules: never the secret, except in [`NewKey`], which only the answer to
//! the request that made the key carries; times are RFC 3339 (UTC).

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{KeyStatus, PlainSecret};
use crate::service::keys as key_service;
use crate::service::usage::report::Privilege;
use crate::store::models::ApiKey;
use crate::web::format::rfc3339;

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    #[schema(example = "key_3mJr7AoUXx2Wqd")]
    pub id: String,
    pub name: String,
    pub description: String,
    /// The first characters of the key, for people to recognise it.
    #[schema(example = "lk_a1b2c3d4")]
    pub prefix: String,
    pub scopes: Vec<String>,
    /// CIDR ranges the key works from; empty means any address.
    pub allowed_ips: Vec<String>,
    pub status: KeyStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The user who created it (null for keys made by the operator).
    #[schema(required = true)]
    pub created_by: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub revoked_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub disabled_at: Option<String>,
    #[schema(required = true)]
    pub revoked_reason: Option<String>,
    /// The key this one replaced in a roll.
    #[schema(required = true)]
    pub rolled_from: Option<String>,
    /// The key that replaced this one in a roll.
    #[schema(required = true)]
    pub replaced_by: Option<String>,
    /// Granted scopes the key did not use lately; null while that is unknown
    /// (fewer than 14 days of use, or not judged in this answer).
    #[schema(required = true)]
    pub unused_scopes: Option<Vec<String>>,
}

/// A key just created or rolled, with its secret: shown this once
/// (`Cache-Control: no-store`), never again.
// No `Debug`: it holds the secret.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// The whole secret key.
    #[schema(example = "lk_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8")]
    #[serde(rename = "key")]
    pub secret: String,
}

impl KeyView {
    /// `key` as the API shows it at `now`; `unused_scopes` not judged (null).
    pub fn of(key: &ApiKey, prefix: &str, now: i64) -> Self {
        let time = |t: Option<i64>| t.map(rfc3339);
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            description: key.description.clone(),
            prefix: key_service::codec::display(prefix, &key.key_prefix),
            scopes: key_service::scopes_of(&key.scopes),
            allowed_ips: key_service::allowed_ips_of(key).iter().map(ToString::to_string).collect(),
            status: key_service::status(key, now),
            created_at: rfc3339(key.created_at),
            created_by: key.created_by.clone(),
            last_used_at: time(key.last_used_at),
            expires_at: time(key.expires_at),
            revoked_at: time(key.revoked_at),
            disabled_at: time(key.disabled_at),
            revoked_reason: key.revoked_reason.clone(),
            rolled_from: key.rolled_from.clone(),
            replaced_by: key.replaced_by.clone(),
            unused_scopes: None,
        }
    }

    /// [`KeyView::of`] with `unused_scopes` judged from `privilege`.
    pub fn judged(key: &ApiKey, prefix: &str, now: i64, privilege: Option<&Privilege>) -> Self {
        let unused = privilege.and_then(Privilege::unused).map(<[String]>::to_vec);
        Self { unused_scopes: unused, ..Self::of(key, prefix, now) }
    }
}

impl NewKey {
    pub fn of(key: &ApiKey, prefix: &str, now: i64, secret: &PlainSecret) -> Self {
        Self { key: KeyView::of(key, prefix, now), secret: secret.expose().to_owned() }
    }
}
