//! The document's security schemes: how each operation may be called.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// `api_key` (`X-API-Key`), `bearer` (an API key or OAuth access token),
/// `session` + `csrf` (a signed-in browser), `client_basic` (an OAuth client
/// at `/oauth/token` and `/oauth/revoke`).
pub struct Schemes;

impl utoipa::Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header =
            |name: &str, says: &str| SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, says)));
        components.add_security_scheme(
            "api_key",
            header("X-API-Key", "An API key (`lk_…`), or an operator's service key where the operation says so."),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer` with an API key or an OAuth access token (`lkat_…`)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "latchkey_session",
                "A signed-in browser's session cookie: it acts with the scopes its role may grant.",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            header("X-CSRF-Token", "With a session, every state-changing request sends the session's CSRF token."),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("An OAuth client's `client_id` and `client_secret` (`client_secret_basic`)."))
                    .build(),
            ),
        );
    }
}
