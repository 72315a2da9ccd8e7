//! `GET /api/v1/auth/test`: who is calling, with what scopes and limits.
//!
//! Rules: any valid credential may ask; the answer is the success envelope
//! with the same members also at its top level (as DESIGN.md shows them);
//! the part that depends on the key alone is serialised once per cached read
//! of the key, so integrations may call it before every call.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::service::principal::Principal;
use crate::service::ratelimit::RateState;
use crate::web::api_auth::{ApiPrincipal, Credential};
use crate::web::envelope::SuccessStatus;

/// The credential that made the request.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Who<'a> {
    /// A team's API key.
    ApiKey { key_id: &'a str, name: &'a str, prefix: &'a str, team_id: Option<&'a str>, team: Option<&'a str> },
    /// An operator's service key.
    ServiceKey { key_id: &'a str, name: &'a str, prefix: &'a str },
    /// An OAuth access token, for its app and (but for `client_credentials`) its user.
    AccessToken {
        token_id: &'a str,
        app: &'a str,
        client_id: &'a str,
        user_id: Option<&'a str>,
        team_id: Option<&'a str>,
        team: Option<&'a str>,
    },
    /// A signed-in browser session.
    Session { user_id: &'a str, email: &'a str, team_id: Option<&'a str>, team: Option<&'a str> },
}

/// What `auth/test` says of a credential whatever the request: all of its
/// answer but the rate limit.
#[derive(Serialize)]
struct AuthTestHead<'a> {
    authenticated: bool,
    principal: Who<'a>,
    scopes: &'a [String],
}

/// The answer's object (in `data`, and its members again at the top level).
#[derive(Serialize, ToSchema)]
pub struct AuthTest<'a> {
    /// Always true (a refused credential gets the 401 envelope).
    pub authenticated: bool,
    pub principal: Who<'a>,
    /// The credential's effective scopes.
    pub scopes: Vec<String>,
    /// The team's hourly window as the `X-RateLimit-*` headers report it;
    /// null for a session.
    #[schema(required = true)]
    pub rate_limit: Option<RateState>,
}

/// The whole answer: the envelope, with `data`'s members repeated at the top.
#[derive(Serialize, ToSchema)]
pub struct AuthTestAnswer<'a> {
    pub status: SuccessStatus,
    pub data: AuthTest<'a>,
    pub authenticated: bool,
    pub principal: Who<'a>,
    pub scopes: Vec<String>,
    #[schema(required = true)]
    pub rate_limit: Option<RateState>,
}

/// Who is calling, with what scopes and limits.
#[utoipa::path(
    get,
    path = "/api/v1/auth/test",
    tag = "Credentials",
    operation_id = "auth_test",
    description = "Any valid credential may call it: the principal, its effective scopes and the team's rate-limit \
                   window. The members of `data` are repeated at the top level.",
    security(("api_key" = []), ("bearer" = []), ("session" = [])),
    responses((status = 200, description = "The credential is valid.", body = AuthTestAnswer)),
)]
pub async fn auth_test(principal: ApiPrincipal) -> Result<HttpResponse, AppError> {
    let head =
        |credential| AuthTestHead { authenticated: true, principal: who(credential), scopes: principal.scopes() };
    let fresh;
    let head: &[u8] = match &principal.credential {
        Credential::ApiKey(k) => match k.grant().shown.get() {
            Some(shown) => shown,
            None => {
                let shown = serde_json::to_vec(&head(&principal.credential)).map_err(internal)?;
                k.grant().shown.get_or_init(|| shown.into_boxed_slice())
            }
        },
        Credential::Session(_) => {
            fresh = serde_json::to_vec(&head(&principal.credential)).map_err(internal)?;
            &fresh
        }
    };
    // `head` is `{…}` with members: the object is `head` without its `}`,
    // then the rate limit; its members then follow the envelope's own.
    let open = head.strip_suffix(b"}").unwrap_or(head);
    let mut object = Vec::with_capacity(head.len() + 80);
    object.extend_from_slice(open);
    object.extend_from_slice(br#","rate_limit":"#);
    serde_json::to_writer(&mut object, &principal.rate).map_err(internal)?;
    object.push(b'}');
    let members = object.get(1..).unwrap_or_default();
    let mut out = Vec::with_capacity(40 + 2 * object.len());
    out.extend_from_slice(br#"{"status":"success","data":"#);
    out.extend_from_slice(&object);
    out.push(b',');
    out.extend_from_slice(members);
    Ok(HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(out))
}

fn internal(e: serde_json::Error) -> AppError {
    AppError::Internal(e.into())
}

/// Who the credential is, as `auth/test` shows it.
fn who(credential: &Credential) -> Who<'_> {
    match credential {
        Credential::ApiKey(k) => match &**k {
            Principal::ServiceKey { id, name, prefix, .. } => Who::ServiceKey { key_id: id.as_str(), name, prefix },
            Principal::AccessToken { id, client_id, app, user_id, .. } => Who::AccessToken {
                token_id: id.as_str(),
                app,
                client_id: client_id.as_str(),
                user_id: user_id.as_ref().map(|u| u.as_str()),
                team_id: k.team_id().map(|t| t.as_str()),
                team: k.team_name(),
            },
            Principal::ApiKey { id, name, prefix, .. } => Who::ApiKey {
                key_id: id.as_str(),
                name,
                prefix,
                team_id: k.team_id().map(|t| t.as_str()),
                team: k.team_name(),
            },
        },
        Credential::Session(ctx) => Who::Session {
            user_id: &ctx.user.id,
            email: &ctx.user.email,
            team_id: ctx.team.as_ref().map(|(t, _)| t.id.as_str()),
            team: ctx.team.as_ref().map(|(t, _)| t.name.as_str()),
        },
    }
}
