//! The authorization server's metadata (RFC 8414).
//!
//! Rules: it states only what the endpoints do: the code flow with S256 PKCE,
//! the three grants, the client authentication methods, and the `iss`
//! parameter on every authorization response (RFC 9207).

use serde::Serialize;

/// `/.well-known/oauth-authorization-server`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuthorizationServerMetadata)]
pub struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    response_types_supported: [&'static str; 1],
    response_modes_supported: [&'static str; 1],
    grant_types_supported: [&'static str; 3],
    token_endpoint_auth_methods_supported: [&'static str; 3],
    revocation_endpoint_auth_methods_supported: [&'static str; 3],
    introspection_endpoint_auth_methods_supported: [&'static str; 1],
    code_challenge_methods_supported: [&'static str; 1],
    scopes_supported: Vec<String>,
    authorization_response_iss_parameter_supported: bool,
}

/// The metadata of the server at `issuer` (its public URL).
pub fn metadata(issuer: &str, scopes: &[String]) -> Metadata {
    let client_auth = ["client_secret_basic", "client_secret_post", "none"];
    Metadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        token_endpoint: format!("{issuer}/oauth/token"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        introspection_endpoint: format!("{issuer}/oauth/introspect"),
        response_types_supported: ["code"],
        response_modes_supported: ["query"],
        grant_types_supported: ["authorization_code", "refresh_token", "client_credentials"],
        token_endpoint_auth_methods_supported: client_auth,
        revocation_endpoint_auth_methods_supported: client_auth,
        introspection_endpoint_auth_methods_supported: ["bearer"],
        code_challenge_methods_supported: ["S256"],
        scopes_supported: scopes.to_vec(),
        authorization_response_iss_parameter_supported: true,
    }
}
