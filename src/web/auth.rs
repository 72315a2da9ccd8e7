//! Who is asking: the signed-in user (with idle and absolute timeouts), the
//! client address (trusting `X-Forwarded-For` only from configured proxies),
//! and safe post-login redirects.
//!
//! Rules: a session's user is decided by `LoginService::session_user`, the
//! one rule for pages and the JSON API alike; a session it refuses is ended.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use super::session::TypedSession;
use super::{AppState, State};
use crate::domain::UserId;
use crate::error::AppError;
use crate::service::accounts::{Role, TeamRole, UserContext};
use crate::service::audit::Actor;
use crate::service::login::LoginService;
use crate::store::models::Team;

impl AppState {
    /// Sign-in, its throttles and its audit trail.
    pub fn login_service(&self) -> LoginService<'_> {
        LoginService {
            db: &self.db,
            keys: &self.keys,
            by_account: &self.login_by_account,
            by_ip: &self.login_by_ip,
            audit_gate: &self.audit_gate,
            hashing: &self.hashing,
            clock: &self.clock,
            absolute_secs: self.config.session_absolute_hours * 3600,
            metrics: &self.metrics,
            notifier: &self.notifier,
        }
    }
}

/// A signed-in user. Extracting it from a request without a valid session
/// fails with `LoginRequired` (a redirect to `/login` for pages).
pub struct CurrentUser {
    pub ctx: UserContext,
    pub session: TypedSession,
    pub actor: Actor,
    /// The keys about to expire the member is told about (full pages only).
    pub expiring: Option<super::reminders::ExpiryBanner>,
}

impl CurrentUser {
    /// The user's team and role, or 403 when they belong to none.
    pub fn team(&self) -> Result<(&Team, Role), AppError> {
        self.ctx
            .team
            .as_ref()
            .map(|(t, r)| (t, *r))
            .ok_or_else(|| AppError::Forbidden("You are not a member of any team.".into()))
    }

    /// The user's team and role as the services take them, or 403 without a team.
    pub fn member(&self) -> Result<TeamRole, AppError> {
        let (team, role) = self.team()?;
        Ok(TeamRole { team_id: team.id.clone().into(), role })
    }

    pub fn user_id(&self) -> UserId {
        UserId::from(self.ctx.user.id.clone())
    }
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<State>()
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the application state is not registered")))?
                .clone();
            let session = TypedSession::new(req.get_session());
            let (user_id, ctx) = session_user(&state, &session).await?.ok_or(AppError::LoginRequired)?;
            let policy = ctx.team.as_ref().is_some_and(|(t, _)| t.require_totp);
            let exempt = req.path().starts_with("/settings/security") || req.path() == "/logout";
            if policy && !ctx.user.has_totp() && !exempt {
                return Err(AppError::TotpEnrolmentRequired);
            }
            let actor =
                Actor { user_id: Some(user_id.into()), label: ctx.user.email.clone(), ..request_actor(&req, &state) };
            let team = ctx.team.as_ref().map(|(t, r)| (t.id.as_str(), *r));
            let expiring = super::reminders::banner_for(&req, &state, team, &ctx.user.id).await;
            Ok(CurrentUser { ctx, session, actor, expiring })
        })
    }
}

/// The user a browser session is signed in as, for pages and the JSON API
/// alike (one rule): the session must name a user who still exists, signed in
/// less than `session_absolute_hours` ago. (The idle lifetime is the store's:
/// a row not used for `session_idle_minutes` no longer loads, whatever the
/// path.) A session past its lifetime, or whose user is gone, is ended. The
/// session's row must still exist *now* — after the request body arrived (see
/// `csrf::verify`) — so a request held open on a slow body cannot act for a
/// session that was ended meanwhile. (A state without a row was signed in by
/// this very request.)
pub async fn signed_in(state: &AppState, session: &Session) -> Result<Option<(String, UserContext)>, AppError> {
    let found = session_user(state, &TypedSession::new(session.clone())).await?;
    Ok(found.map(|(id, ctx)| (id.into(), ctx)))
}

async fn session_user(state: &AppState, session: &TypedSession) -> Result<Option<(UserId, UserContext)>, AppError> {
    let Some(user_id) = session.user_id()? else { return Ok(None) };
    let signed_in_at = session.signed_in_at()?.unwrap_or(0);
    let found = state.login_service().session_user(&user_id, signed_in_at, session.row_id()?).await?;
    match found {
        Some(ctx) => Ok(Some((user_id, ctx))),
        None => {
            session.end_signed_out();
            Ok(None)
        }
    }
}

/// The anonymous actor of a request: its address and user agent.
pub fn request_actor(req: &HttpRequest, state: &AppState) -> Actor {
    actor_from(client_ip(req, state), req.headers().get(actix_web::http::header::USER_AGENT))
}

/// An anonymous actor from a client address and `User-Agent` header.
pub fn actor_from(ip: Option<IpAddr>, user_agent: Option<&actix_web::http::header::HeaderValue>) -> Actor {
    Actor {
        user_id: None,
        label: "anonymous".into(),
        ip: ip.map(|ip| ip.to_string()),
        // A secret sent as a user agent is never recorded with the event.
        user_agent: user_agent
            .and_then(|v| v.to_str().ok())
            .map(|s| crate::service::keys::codec::redact(s).chars().take(300).collect()),
    }
}

/// The client's address: the socket peer, or — when the peer is a trusted
/// proxy — the nearest untrusted address in `X-Forwarded-For`; `None` when
/// that cannot be read (see `service::forwarded`).
pub fn client_ip(req: &HttpRequest, state: &AppState) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    let proxies = &state.config.trusted_proxies;
    if !crate::service::forwarded::is_trusted(peer, proxies) {
        return Some(peer.to_canonical());
    }
    let lines: Vec<&[u8]> = req.headers().get_all("X-Forwarded-For").map(|v| v.as_bytes()).collect();
    crate::service::forwarded::client_address(peer, proxies, &lines)
}

/// Where to go after signing in: a safe same-origin path (see
/// `service::safe_redirect`), else `/`. Every `next` goes through here.
pub fn safe_next(next: Option<&str>) -> String {
    next.and_then(crate::service::safe_redirect::local_path).unwrap_or("/").to_owned()
}

/// Where a member whose team requires 2FA and who has none is sent: the
/// enrolment page, which offers to continue to `next` (a same-site path) once
/// 2FA is on. Never back to `/login` (that page sends signed-in users on).
pub fn enrolment_path(next: Option<&str>) -> String {
    match next.map(|n| safe_next(Some(n))).filter(|n| n != "/") {
        Some(n) => format!("/settings/security?required=1&next={}", url_encode(&n)),
        None => "/settings/security?required=1".to_owned(),
    }
}

/// A public id from a URL path (`usr_…`, `inv_…`); anything else is simply not found.
pub fn id_param(raw: String) -> Result<String, AppError> {
    let ok = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(raw) } else { Err(AppError::NotFound) }
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).map(|q| q[2..].to_owned()).unwrap_or_default()
}

/// A one-shot message for the next page (never a secret). One that cannot be
/// stored is logged; the change it reports is made all the same.
pub fn flash(session: &TypedSession, message: &str) {
    if let Err(e) = session.flash(message) {
        tracing::error!(error = ?e, "storing a flash message");
    }
}

/// The one-shot message for this page, if any. One that cannot be read is
/// logged and not shown: the page itself still renders.
pub fn take_flash(session: &TypedSession) -> Option<String> {
    session.take_flash().unwrap_or_else(|e| {
        tracing::error!(error = ?e, "reading the flash message");
        None
    })
}

pub fn state(req: &HttpRequest) -> Result<State, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the application state is not registered")))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_kept_on_site() {
        assert_eq!(safe_next(Some("/settings/team?x=1")), "/settings/team?x=1");
        for bad in ["//evil.example", "/\\evil.example", "https://evil.example", "evil", "", "/\t/evil"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
