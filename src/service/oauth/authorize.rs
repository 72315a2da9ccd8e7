//! The authorization endpoint: a request from an app, the user's consent,
//! and the answer sent back to the app.
//!
//! Rules: the request is checked before anything else (see [`super::request`]);
//! a visitor signs in first, then must belong to a team and be able to grant
//! at least one requested scope; a remembered consent gets its code at once;
//! otherwise the consent form carries a single-use token — a nonce kept with
//! the pending request in the session, signed for this user — and is refused
//! when the token, the user or the nonce differ, or after
//! [`CONSENT_TTL`] seconds; every answer sent to the app names the issuer
//! (RFC 9207).

use serde::{Deserialize, Serialize};

use super::request::{self, Approval, Refusal};
use super::{AuthorizeParams, ValidRequest};
use crate::domain::{OAuthErrorCode, Role, TeamId, UserId};
use crate::service::audit::Actor;
use crate::service::clock::Clock;
use crate::service::crypto::{self, Keys};
use crate::service::{Error, Result, redirect_uri};
use crate::store::Db;
use crate::store::models::OauthClient;

/// Seconds a consent form stays answerable.
pub const CONSENT_TTL: i64 = 600;

/// The authorization endpoint, over what the application shares.
pub struct AuthorizeService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub clock: &'a Clock,
    /// This server's public URL: the `iss` of every answer.
    pub issuer: &'a str,
}

/// The signed-in user answering a request.
pub struct Visitor<'a> {
    pub actor: &'a Actor,
    pub user_id: UserId,
    pub team: Option<TeamSeat>,
}

/// A user's team and their role in it.
pub struct TeamSeat {
    pub id: TeamId,
    pub name: String,
    pub role: Role,
}

/// A request waiting for the user's answer, kept in their session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingConsent {
    pub nonce: String,
    pub request: ValidRequest,
    pub granted: Vec<String>,
    /// When the form was shown (Unix seconds).
    pub at: i64,
}

/// What the consent page shows, and what to keep until it is answered.
pub struct ConsentPrompt {
    pub app: OauthClient,
    /// The signed-in user's team (what the app will reach).
    pub team_name: String,
    /// The team that registered the app (who is asking).
    pub app_team_name: String,
    pub scopes: Vec<String>,
    /// The form's signed, single-use token.
    pub token: String,
    /// To keep in the session until the form comes back.
    pub pending: PendingConsent,
    /// Where approving sends the user (for the page and its form-action).
    pub redirect_origin: String,
}

/// How an authorization request or a consent answer goes on.
pub enum Authorization {
    /// The request cannot be accepted, and the app is not to be trusted with
    /// an answer: an error page.
    Refused(&'static str),
    /// A valid request, nobody signed in: sign in, then come back.
    SignIn,
    /// Ask the user.
    Consent(Box<ConsentPrompt>),
    /// Back to the app (a code or an error): this URL.
    Redirect(String),
}

impl AuthorizeService<'_> {
    /// `GET /oauth/authorize`: checks the request, then asks the user or
    /// answers the app.
    pub async fn start(&self, visitor: Option<&Visitor<'_>>, params: AuthorizeParams) -> Result<Authorization> {
        let validated = self.db.run(move |conn| request::validate(conn, &params)).await?;
        let (valid, client) = match validated {
            Ok(v) => v,
            Err(refusal) => return self.refused(refusal),
        };
        let Some(visitor) = visitor else { return Ok(Authorization::SignIn) };
        let Some(team) = &visitor.team else {
            let description = "You are not a member of any team.";
            return self.error_back(&valid, OAuthErrorCode::AccessDenied, description);
        };
        let granted = request::grantable(&valid, team.role);
        if granted.is_empty() {
            let description = "Your role cannot grant any of the requested scopes.";
            return self.error_back(&valid, OAuthErrorCode::InvalidScope, description);
        }
        let (uid, cid, wanted) = (visitor.user_id.clone(), client.id.clone(), granted.clone());
        let remembered = self.db.run(move |conn| request::consented(conn, uid.as_str(), &cid, &wanted)).await?;
        if remembered {
            return self.code_back(visitor, &team.id, valid, granted, None).await;
        }
        let owner = client.team_id.clone();
        let app_team_name = self
            .db
            .run(move |conn| -> Result<String> {
                Ok(crate::store::models::Team::find(conn, &owner)?.map(|t| t.name).unwrap_or_default())
            })
            .await?;
        let mut asked = self.prompt(visitor, client, team, valid, granted)?;
        if let Authorization::Consent(prompt) = &mut asked {
            prompt.app_team_name = app_team_name;
        }
        Ok(asked)
    }

    /// `POST /oauth/authorize`: the user's answer to the consent form whose
    /// request waited in `pending`.
    pub async fn decide(
        &self,
        visitor: &Visitor<'_>,
        pending: Option<PendingConsent>,
        consent_token: &str,
        approve: bool,
    ) -> Result<Authorization> {
        let (nonce, sig) = consent_token.split_once('.').unwrap_or(("", ""));
        let valid_token = !nonce.is_empty() && crypto::ct_eq(&self.sign(&visitor.user_id, nonce), sig);
        let Some(pending) = pending.filter(|p| valid_token && p.nonce == nonce) else {
            return Ok(Authorization::Refused(
                "This consent form has expired or was already used. Start again from the app.",
            ));
        };
        if self.clock.now() - pending.at > CONSENT_TTL {
            return Ok(Authorization::Refused("This consent form has expired. Start again from the app."));
        }
        let Some(team) = &visitor.team else { return Err(Error::Forbidden("You are not a member of any team.")) };
        if !approve {
            let description = "The user denied the request.";
            return self.error_back(&pending.request, OAuthErrorCode::AccessDenied, description);
        }
        self.code_back(visitor, &team.id, pending.request, pending.granted, Some(&pending.nonce)).await
    }

    /// The consent page's data, with a signed, single-use token: the pending
    /// request lives in the session under a nonce, and the form must return
    /// the nonce with our signature.
    fn prompt(
        &self,
        visitor: &Visitor<'_>,
        app: OauthClient,
        team: &TeamSeat,
        valid: ValidRequest,
        granted: Vec<String>,
    ) -> Result<Authorization> {
        let nonce = crypto::random_base62(24).map_err(|e| Error::internal(e, "generating a consent nonce"))?;
        let token = format!("{nonce}.{}", self.sign(&visitor.user_id, &nonce));
        let redirect_origin = redirect_uri::origin(&valid.redirect_uri).unwrap_or_default();
        let pending = PendingConsent { nonce, request: valid, granted: granted.clone(), at: self.clock.now() };
        Ok(Authorization::Consent(Box::new(ConsentPrompt {
            app,
            team_name: team.name.clone(),
            app_team_name: String::new(),
            scopes: granted,
            token,
            pending,
            redirect_origin,
        })))
    }

    /// The signature of a consent nonce, for this user only.
    fn sign(&self, user_id: &UserId, nonce: &str) -> String {
        self.keys.sign(&format!("consent:{user_id}:{nonce}"))
    }

    /// Approves the request and sends the code back.
    async fn code_back(
        &self,
        visitor: &Visitor<'_>,
        team_id: &TeamId,
        valid: ValidRequest,
        granted: Vec<String>,
        consent_nonce: Option<&str>,
    ) -> Result<Authorization> {
        let (keys, actor, uid, tid) =
            (self.keys.clone(), visitor.actor.clone(), visitor.user_id.clone(), team_id.clone());
        let (req, at) = (valid.clone(), self.clock.now());
        // One grant per consent form, whichever submission of it arrives first.
        let form_grant = consent_nonce.map(|n| {
            format!("grant_{}", self.sign(&visitor.user_id, &format!("code:{n}")).chars().take(32).collect::<String>())
        });
        let code = self
            .db
            .run(move |conn| {
                let who = Approval { actor: &actor, user_id: uid.as_str(), team_id: tid.as_str(), at };
                request::approve(conn, &keys, &who, (&req, &granted), form_grant.as_deref())
            })
            .await?;
        let Some(code) = code else {
            return Ok(Authorization::Refused(
                "This consent form has expired or was already used. Start again from the app.",
            ));
        };
        let mut params = vec![("code", code.as_str())];
        params.extend(valid.state.as_deref().map(|s| ("state", s)));
        Ok(Authorization::Redirect(self.location(&valid.redirect_uri, params)))
    }

    fn refused(&self, refusal: Refusal) -> Result<Authorization> {
        match refusal {
            Refusal::Page(message) => Ok(Authorization::Refused(message)),
            Refusal::Redirect { redirect_uri, error, description, state } => {
                let mut params = vec![("error", error.as_str()), ("error_description", description)];
                params.extend(state.as_deref().map(|s| ("state", s)));
                Ok(Authorization::Redirect(self.location(&redirect_uri, params)))
            }
        }
    }

    fn error_back(
        &self,
        valid: &ValidRequest,
        error: OAuthErrorCode,
        description: &'static str,
    ) -> Result<Authorization> {
        let (redirect_uri, state) = (valid.redirect_uri.clone(), valid.state.clone());
        self.refused(Refusal::Redirect { redirect_uri, error, description, state })
    }

    /// The redirect URI with the answer's parameters and the issuer.
    fn location(&self, redirect_uri: &str, params: Vec<(&str, &str)>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(params).append_pair("iss", self.issuer);
        let sep = if redirect_uri.contains('?') { '&' } else { '?' };
        format!("{redirect_uri}{sep}{}", query.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientId;

    #[test]
    fn a_pending_consent_keeps_the_stored_shape() {
        let request = ValidRequest {
            client_id: ClientId::from("lkc_abc"),
            redirect_uri: "https://app.example/cb".into(),
            scopes: vec!["templates:read".into()],
            state: Some("xyz".into()),
            code_challenge: None,
            redirect_uri_omitted: false,
        };
        let pending = PendingConsent { nonce: "n0nce".into(), request, granted: vec!["templates:read".into()], at: 7 };
        let stored = serde_json::to_value(&pending).unwrap();
        assert_eq!(stored["nonce"], "n0nce");
        assert_eq!(stored["request"]["client_id"], "lkc_abc");
        assert_eq!(stored["granted"][0], "templates:read");
        assert_eq!(stored["at"], 7);
        let back: PendingConsent = serde_json::from_value(stored).unwrap();
        assert_eq!(back.request.client_id.as_str(), "lkc_abc");
    }
}
