//! The refusals the document names by reference (`#/components/responses/…`):
//! the JSON envelope's, one per status, and the OAuth endpoints' (RFC 6749).
//!
//! Rules: each status has one response here, with the codes that can come
//! with it (`ErrorCode::status` is the one mapping of code to status); the
//! statuses any credential-authenticated operation can answer are added to
//! every such operation by [`CredentialResponses`], since its extractor,
//! not its handler, answers them.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// One response of the refusal schema `schema`, described, with `headers`.
fn refusal(schema: &str, description: &str, headers: &[(&str, &str)]) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", content);
    for (name, says) in headers {
        response = response.header(*name, integer_header(says));
    }
    response.build().into()
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::Integer)).description(Some(description)).build()
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before trying again.");

/// The `X-RateLimit-*` headers of every answer to a credential-authenticated request.
pub const RATE_HEADERS: [(&str, &str); 3] = [
    ("X-RateLimit-Limit", "Requests per hour the team's plan allows (a key may carry a lower override)."),
    ("X-RateLimit-Remaining", "Requests left in the current hourly window."),
    ("X-RateLimit-Reset", "Unix seconds at which the window rolls over."),
];

/// Declares a response component: its type, name, schema, description and headers.
macro_rules! refusal {
    ($name:ident, $schema:literal, $description:literal $(, $header:expr)*) => {
        #[doc = $description]
        pub struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), refusal($schema, $description, &[$($header),*]))
            }
        }
    };
}

refusal!(
    BadRequest,
    "ErrorEnvelope",
    "`bad_request`: the request could not be read (malformed JSON or query, \
    wrong content type)."
);
refusal!(
    Unauthorized,
    "ErrorEnvelope",
    "`unauthorized`: the credential is missing, malformed, unknown, expired or \
    revoked (one answer for all)."
);
refusal!(
    Forbidden,
    "ErrorEnvelope",
    "`forbidden`: the credential lacks the scope, may not be used from this address \
    or belongs to no team (or a session sent no `X-CSRF-Token`); `insecure_connection`: the server requires HTTPS."
);
refusal!(NotFound, "ErrorEnvelope", "`not_found`: no such object (objects of another team included).");
refusal!(PayloadTooLarge, "ErrorEnvelope", "`payload_too_large`: the body is over the endpoint's limit.");
refusal!(ValidationFailed, "ErrorEnvelope", "`validation_failed`: `error.fields` names each field that is not valid.");
refusal!(
    RateLimited,
    "ErrorEnvelope",
    "`rate_limit_exceeded`: the team's plan allows no more now; `error.retry_after` \
    and `Retry-After` say how long to wait.",
    RETRY_AFTER,
    RATE_HEADERS[0],
    RATE_HEADERS[1],
    RATE_HEADERS[2]
);
refusal!(
    Internal,
    "ErrorEnvelope",
    "`internal`: a fault on the server's side (no detail; the `X-Request-Id` header \
    names it in the server's log)."
);
refusal!(
    Unavailable,
    "ErrorEnvelope",
    "`unavailable`: the database is briefly out of reach, or the server is \
    saturated; try again after `Retry-After`.",
    RETRY_AFTER
);
refusal!(
    OAuthBadRequest,
    "OAuthError",
    "RFC 6749 §5.2: `invalid_request`, `invalid_grant`, \
    `unauthorized_client`, `unsupported_grant_type` or `invalid_scope`."
);
refusal!(
    OAuthInvalidClient,
    "OAuthError",
    "RFC 6749 §5.2 `invalid_client`: the client could not be authenticated \
    (with `WWW-Authenticate: Basic`)."
);
refusal!(
    OAuthSlowDown,
    "OAuthError",
    "`slow_down`: too many failed attempts, or too many tokens for this client; \
    `retry_after` and `Retry-After` say how long to wait.",
    RETRY_AFTER
);
refusal!(OAuthServerError, "OAuthError", "`server_error`: a fault on the server's side.");
refusal!(
    OAuthUnavailable,
    "OAuthError",
    "`temporarily_unavailable`: the database is briefly out of reach.",
    RETRY_AFTER
);

/// A refusal by reference, at `status`, as `(status = …, response = T)` states it.
fn by_reference<'r, T: utoipa::ToResponse<'r>>(status: &str) -> (String, RefOr<Response>) {
    (status.to_owned(), Ref::from_response_name(T::response().0).into())
}

/// What an operation that changes one object from a body may refuse: the
/// body unreadable (400), no such object (404), the body too large (413),
/// a field not valid (422). Named in `responses(…, ChangeRefusals)`.
pub struct ChangeRefusals;

impl utoipa::IntoResponses for ChangeRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            by_reference::<BadRequest>("400"),
            by_reference::<NotFound>("404"),
            by_reference::<PayloadTooLarge>("413"),
            by_reference::<ValidationFailed>("422"),
        ])
    }
}

/// Adds to every operation that takes an API key what its credential
/// extractor may answer (401, 403, 429, 500, 503) and, to the successes of
/// those that count the request against the plan (`/api/v1`, `/auth/verify`),
/// the `X-RateLimit-*` headers.
pub struct CredentialResponses;

impl utoipa::Modify for CredentialResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let counted = path.starts_with("/api/v1/") || path == "/auth/verify";
            let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
            for operation in operations.into_iter().flatten().filter(|o| takes_api_key(o)) {
                add_credential_responses(operation, counted);
            }
        }
    }
}

fn takes_api_key(operation: &Operation) -> bool {
    let requirements = operation.security.iter().flatten();
    requirements.filter_map(|r| serde_json::to_value(r).ok()).any(|r| r.get("api_key").is_some())
}

fn add_credential_responses(operation: &mut Operation, counted: bool) {
    let responses = &mut operation.responses.responses;
    for (status, name) in [
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("429", "RateLimited"),
        ("500", "Internal"),
        ("503", "Unavailable"),
    ] {
        responses.entry(status.to_owned()).or_insert_with(|| Ref::from_response_name(name).into());
    }
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (counted && status.starts_with('2'), response) {
            for (name, says) in RATE_HEADERS {
                response.headers.entry(name.to_owned()).or_insert_with(|| integer_header(says));
            }
        }
    }
}
