//! Who a verified credential is: a team's API key, an operator's service key,
//! or an OAuth access token, read from the database as the verifier caches it.
//!
//! Rules: a credential is read with its holder's role *now* — a team key or
//! token whose holder is no longer a member of the team is unknown, and its
//! scopes are those the current role allows (`policy::effective_scopes`);
//! service keys have no team, no role cap and no plan limit; whether a
//! credential still authenticates at a moment is decided once, in
//! [`Principal::is_usable`].

use std::sync::Arc;

use ipnet::IpNet;

use super::accounts::{self, Role};
use super::keys::{self, codec};
use super::policy;
use super::ratelimit::{self, Plan};
use crate::domain::{ClientId, KeyId, KeyKind, TeamId, TokenId, TokenKind, UserId};
use crate::store::models::{ApiKey, OauthClient, OauthToken, Team};
use crate::store::{DbConn, StoreError};

/// What every verified credential carries, whatever its kind.
#[derive(Debug, Clone)]
pub struct Grant {
    pub team_id: Option<TeamId>,
    pub team_name: Option<String>,
    /// The member answerable for the credential (its creator, the user a
    /// token acts for, or the registrant of a client_credentials app) and
    /// their role in the team *now*; no role for service keys.
    pub holder: Option<UserId>,
    pub role: Option<Role>,
    /// What the credential may do now: its scopes that the holder's current
    /// role still allows (policy::effective_scopes).
    pub scopes: Arc<[String]>,
    /// Address ranges it works from; empty means any.
    pub allowed: Vec<IpNet>,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// Paused by its team: refused like a revoked key until enabled.
    pub disabled: bool,
    pub plan: Plan,
    /// What the plan's limits count under (see [`limit_key`]).
    pub limit_key: String,
    /// The credential as `auth/test` shows it, serialised by the web layer on
    /// first use: a cached credential is read once and shown many times.
    pub shown: std::sync::OnceLock<Box<[u8]>>,
}

/// What the plan's limits count under: the team (all its keys and tokens),
/// or the credential itself when it has no team (service keys).
pub fn limit_key(team_id: Option<&str>, credential_id: &str) -> String {
    match team_id {
        Some(team) => format!("team:{team}"),
        None => format!("key:{credential_id}"),
    }
}

/// A credential as the verifier knows it.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A team's API key; `prefix` is its displayed prefix (`lk_a1b2c3d4`).
    ApiKey { id: KeyId, name: String, prefix: String, grant: Grant },
    /// An operator's service key (introspection, leak reports).
    ServiceKey { id: KeyId, name: String, prefix: String, grant: Grant },
    /// An OAuth access token of the app `client_id` (named `app`), acting for
    /// `user_id` (none for a client_credentials token), issued at `issued_at`.
    AccessToken { id: TokenId, client_id: ClientId, app: String, user_id: Option<UserId>, issued_at: i64, grant: Grant },
}

impl Principal {
    pub fn grant(&self) -> &Grant {
        match self {
            Self::ApiKey { grant, .. } | Self::ServiceKey { grant, .. } | Self::AccessToken { grant, .. } => grant,
        }
    }

    /// The key's or the token's id.
    pub fn id(&self) -> &str {
        match self {
            Self::ApiKey { id, .. } | Self::ServiceKey { id, .. } => id.as_str(),
            Self::AccessToken { id, .. } => id.as_str(),
        }
    }

    /// The key's id, for a key (usage is recorded for keys only).
    pub fn key_id(&self) -> Option<&KeyId> {
        match self {
            Self::ApiKey { id, .. } | Self::ServiceKey { id, .. } => Some(id),
            Self::AccessToken { .. } => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::ApiKey { name, .. } | Self::ServiceKey { name, .. } => name,
            Self::AccessToken { app, .. } => app,
        }
    }

    pub fn is_service_key(&self) -> bool {
        matches!(self, Self::ServiceKey { .. })
    }

    pub fn is_access_token(&self) -> bool {
        matches!(self, Self::AccessToken { .. })
    }

    pub fn team_id(&self) -> Option<&TeamId> {
        self.grant().team_id.as_ref()
    }

    pub fn team_name(&self) -> Option<&str> {
        self.grant().team_name.as_deref()
    }

    pub fn holder(&self) -> Option<&UserId> {
        self.grant().holder.as_ref()
    }

    pub fn role(&self) -> Option<Role> {
        self.grant().role
    }

    pub fn scopes(&self) -> &[String] {
        &self.grant().scopes
    }

    pub fn allowed_ips(&self) -> &[IpNet] {
        &self.grant().allowed
    }

    pub fn expires_at(&self) -> Option<i64> {
        self.grant().expires_at
    }

    pub fn is_revoked(&self) -> bool {
        self.grant().revoked
    }

    pub fn is_disabled(&self) -> bool {
        self.grant().disabled
    }

    /// Whether the credential authenticates at `at`: not revoked, not
    /// disabled, not expired.
    pub fn is_usable(&self, at: i64) -> bool {
        !self.is_revoked() && !self.is_disabled() && self.expires_at().is_none_or(|e| e > at)
    }

    /// Why a credential that is not usable at `at` is refused, as usage counts it.
    pub fn refusal(&self, at: i64) -> Option<crate::domain::UsageOutcome> {
        use crate::domain::UsageOutcome;
        if self.is_revoked() {
            Some(UsageOutcome::Revoked)
        } else if self.expires_at().is_some_and(|e| e <= at) {
            Some(UsageOutcome::Expired)
        } else if self.is_disabled() {
            Some(UsageOutcome::Disabled)
        } else {
            None
        }
    }

    /// The introspection `token_type`.
    pub fn token_type(&self) -> &'static str {
        match self {
            Self::ApiKey { .. } => KeyKind::Team.token_type(),
            Self::ServiceKey { .. } => KeyKind::Service.token_type(),
            Self::AccessToken { .. } => TokenKind::Access.hint(),
        }
    }

    /// How the credential reads as an actor in the audit log: "API key
    /// `prefix` (name)", an access token showing its app's client id and name.
    pub fn label(&self) -> String {
        match self {
            Self::ApiKey { name, prefix, .. } | Self::ServiceKey { name, prefix, .. } => {
                format!("API key {prefix} ({name})")
            }
            Self::AccessToken { client_id, app, .. } => format!("API key {client_id} ({app})"),
        }
    }
}

fn team_plan(team: Option<&Team>, default_plan: Plan) -> Plan {
    team.and_then(|t| t.plan.as_deref()).and_then(ratelimit::plan).unwrap_or(default_plan)
}

/// An OAuth access token by its hash. The holder's role is read here, where
/// the credential is verified (and cached with it), so removal and demotion
/// take effect within the cache's bound. A token whose holder is no longer a
/// member of the team is unknown.
pub fn load_access_token(conn: &mut DbConn, hash: &str, default_plan: Plan) -> Result<Option<Principal>, StoreError> {
    let found = OauthToken::find_by_hash(conn, hash)?;
    let Some(t) = found.filter(|t| t.kind == TokenKind::Access) else { return Ok(None) };
    let Some(client) = OauthClient::find(conn, &t.client_id)? else { return Ok(None) };
    // A user's token acts for the user; a client_credentials token for the
    // member who registered the app.
    let holder = t.user_id.clone().or_else(|| client.created_by.clone());
    let Some(role) = accounts::current_role(conn, &t.team_id, holder.as_deref())? else { return Ok(None) };
    let team = Team::find(conn, &t.team_id)?;
    let grant = Grant {
        plan: team_plan(team.as_ref(), default_plan),
        shown: Default::default(),
        team_name: team.map(|t| t.name),
        limit_key: limit_key(Some(&t.team_id), &t.id),
        team_id: Some(t.team_id.into()),
        holder: holder.map(UserId::from),
        role: Some(role),
        scopes: policy::effective_scopes(Some(role), &super::oauth::scopes_of(&t.scopes)).into(),
        allowed: Vec::new(),
        expires_at: Some(t.expires_at),
        revoked: t.revoked_at.is_some(),
        disabled: false,
    };
    Ok(Some(Principal::AccessToken {
        id: t.id.into(),
        client_id: client.id.into(),
        app: client.name,
        user_id: t.user_id.map(UserId::from),
        issued_at: t.created_at,
        grant,
    }))
}

/// An API key or service key by its hash; a team key whose holder is no
/// longer a member is unknown.
pub fn load_key(
    conn: &mut DbConn,
    hash: &str,
    prefix: &str,
    default_plan: Plan,
) -> Result<Option<Principal>, StoreError> {
    let Some(key) = ApiKey::find_by_hash(conn, hash)? else { return Ok(None) };
    let (team, role) = match key.team_id.as_deref() {
        Some(t) => match accounts::current_role(conn, t, key.created_by.as_deref())? {
            Some(role) => (Team::find(conn, t)?, Some(role)),
            None => return Ok(None),
        },
        None => (None, None),
    };
    let service = key.kind == KeyKind::Service;
    // Service keys are the operator's own: no plan limits them, no role caps them.
    let (plan, scopes) = if service {
        (ratelimit::UNLIMITED, keys::scopes_of(&key.scopes))
    } else {
        (team_plan(team.as_ref(), default_plan), policy::effective_scopes(role, &keys::scopes_of(&key.scopes)))
    };
    let grant = Grant {
        scopes: scopes.into(),
        allowed: keys::allowed_ips_of(&key),
        limit_key: limit_key(key.team_id.as_deref(), &key.id),
        team_id: key.team_id.map(TeamId::from),
        team_name: team.map(|t| t.name),
        holder: key.created_by.map(UserId::from),
        role,
        expires_at: key.expires_at,
        revoked: key.revoked_at.is_some(),
        disabled: key.disabled_at.is_some(),
        plan,
        shown: Default::default(),
    };
    let (id, name, prefix) = (KeyId::from(key.id), key.name, codec::display(prefix, &key.key_prefix));
    Ok(Some(if service {
        Principal::ServiceKey { id, name, prefix, grant }
    } else {
        Principal::ApiKey { id, name, prefix, grant }
    }))
}
