//! Client authentication at the token and revocation endpoints.
//!
//! Rules: one authentication method per request (HTTP Basic or the form, RFC
//! 6749 §2.3) and every parameter at most once (§3.1–3.2); a public app sends
//! no secret, a confidential one its current secret or, until it expires, the
//! previous one; secrets are compared as keyed hashes in constant time; a wrong
//! secret of a known confidential app is audited through the gate; failures
//! are throttled per client and address and per address, checked before
//! anything else and counted when a request fails.

use serde_json::json;

use super::{OAuthError, app_actor};
use crate::domain::{AuditAction, ClientType};
use crate::service::attempts::Throttle;
use crate::service::audit_gate::{Admission, AuditGate, PendingEvent};
use crate::service::clock::Clock;
use crate::service::crypto::{self, Keys};
use crate::store::DbConn;
use crate::store::models::OauthClient;

/// How the client authenticated at the token, revocation or introspection endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl ClientCredentials {
    /// The credentials of a request: from HTTP Basic (`basic`, already
    /// decoded) or the form, never both.
    pub(super) fn of_request(basic: Option<Self>, form: &[(String, String)]) -> Result<Self, OAuthError> {
        if let Some((name, _)) =
            form.iter().enumerate().find(|(i, (k, _))| form[..*i].iter().any(|(f, _)| f == k)).map(|(_, p)| p)
        {
            return Err(OAuthError::invalid_request(format!("The parameter {name} is repeated.")));
        }
        match basic {
            Some(b)
                if field(form, "client_secret").is_some()
                    || field(form, "client_id").is_some_and(|id| Some(id) != b.client_id) =>
            {
                Err(OAuthError::invalid_request("Authenticate the client one way: HTTP Basic or the form, not both."))
            }
            Some(b) => Ok(b),
            None => Ok(Self { client_id: field(form, "client_id"), client_secret: field(form, "client_secret") }),
        }
    }
}

/// A form parameter (the form has no repeats: see [`ClientCredentials::of_request`]).
pub(super) fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(f, _)| f == name).map(|(_, v)| v.clone())
}

/// How the token and revocation endpoints audit: anonymous failures through
/// the gate, and every event with the caller's address.
#[derive(Clone, Copy)]
pub(super) struct AuditCtx<'a> {
    pub gate: &'a AuditGate,
    pub ip: Option<&'a str>,
    pub clock: &'a Clock,
}

impl AuditCtx<'_> {
    /// Records `e` unless the gate already recorded one for this app and
    /// action lately (it then counts it).
    pub fn gated(
        &self,
        client: &OauthClient,
        e: &PendingEvent,
        action: AuditAction,
        conn: &mut DbConn,
    ) -> crate::service::Result<()> {
        if self.gate.admit(&format!("{action}:{}", client.id), e, self.clock.now()) == Admission::Record {
            e.record(conn)?;
        }
        Ok(())
    }
}

/// The authenticated client, or `invalid_client`.
pub(super) fn authenticate(
    conn: &mut DbConn,
    hasher: &Keys,
    creds: &ClientCredentials,
    clock: &Clock,
) -> Result<OauthClient, OAuthError> {
    let id = creds.client_id.as_deref().ok_or_else(OAuthError::invalid_client)?;
    if !crate::service::validate::client_id(id) {
        return Err(OAuthError::invalid_request("The client_id is malformed."));
    }
    let client = OauthClient::find(conn, id)?.ok_or_else(OAuthError::invalid_client)?;
    match (client.client_type, creds.client_secret.as_deref()) {
        (ClientType::Public, None) => Ok(client),
        (ClientType::Public, Some(_)) => Err(OAuthError::invalid_client()),
        (ClientType::Confidential, Some(secret)) => {
            let hash = hasher.token_hash(secret);
            let current = client.secret_hash.as_deref().is_some_and(|h| crypto::ct_eq(h, &hash));
            let old = client.old_secret_hash.as_deref().is_some_and(|h| crypto::ct_eq(h, &hash))
                && client.old_secret_expires_at.is_some_and(|t| t > clock.now());
            if current || old { Ok(client) } else { Err(OAuthError::invalid_client()) }
        }
        (ClientType::Confidential, None) => Err(OAuthError::invalid_client()),
    }
}

/// The subject under which a use of the secret this request presents is
/// counted (`usage::secret_subject` of its keyed hash, which is the stored
/// hash it matches once the client authenticated); `None` without a secret.
pub(super) fn presented_subject(hasher: &Keys, creds: &ClientCredentials) -> Option<String> {
    creds.client_secret.as_deref().map(|s| crate::service::usage::secret_subject(&hasher.token_hash(s)))
}

/// [`authenticate`], auditing a failed authentication of a known
/// confidential app (a wrong or missing secret: someone may be guessing it),
/// gated like other anonymous failures: one event per app and minute, then a
/// count.
pub(super) fn authenticate_audited(
    conn: &mut DbConn,
    hasher: &Keys,
    creds: &ClientCredentials,
    audit: AuditCtx<'_>,
) -> Result<OauthClient, OAuthError> {
    let err = match authenticate(conn, hasher, creds, audit.clock) {
        Err(e) if e.error == crate::domain::OAuthErrorCode::InvalidClient => e,
        other => return other,
    };
    let Some(id) = creds.client_id.as_deref().filter(|id| crate::service::validate::client_id(id)) else {
        return Err(err);
    };
    let Some(client) = OauthClient::find(conn, id)?.filter(|c| c.client_type == ClientType::Confidential) else {
        return Err(err);
    };
    let action = AuditAction::OauthClientAuthFailed;
    let e = PendingEvent::new(action, app_actor(&client, audit.ip))
        .team(Some(&client.team_id))
        .object("oauth_app", &client.id)
        .details(json!({"reason": "wrong or missing client secret"}));
    audit.gated(&client, &e, action, conn)?;
    Err(err)
}

/// The failure throttles one request answers to: per client and address,
/// and per address, at the moment the request came.
pub(super) struct Failures<'a> {
    throttles: [(&'a Throttle, String); 2],
    at: i64,
}

impl<'a> Failures<'a> {
    pub fn new(
        (by_client, by_ip): (&'a Throttle, &'a Throttle),
        client_id: Option<&str>,
        address: &str,
        at: i64,
    ) -> Self {
        let by_client_key = format!("{}|{address}", client_id.unwrap_or_default());
        Self { throttles: [(by_client, by_client_key), (by_ip, address.to_owned())], at }
    }

    /// `Err(retry_after)` when the client or the address is locked out.
    pub async fn check(&self) -> Result<(), i64> {
        for (throttle, key) in &self.throttles {
            throttle.check(key, self.at).await?;
        }
        Ok(())
    }

    pub async fn record(&self) {
        for (throttle, key) in &self.throttles {
            throttle.record_failure(key, self.at).await;
        }
    }
}
