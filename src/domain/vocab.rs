//! Kinds, statuses, roles, actions and codes: each stored or sent as TEXT and
//! converted here, once.

use std::fmt;

/// A stored or received text that names no known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}: {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// An enum whose values are fixed strings: `as_str`, `parse`, `Display`,
/// `TryFrom<String>` (for diesel's `deserialize_as`) and `From<Self> for String`
/// (for `serialize_as`).
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;

            fn try_from(s: String) -> Result<Self, UnknownValue> {
                Self::parse(&s).ok_or(UnknownValue { kind: stringify!($name), value: s })
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// In the OpenAPI document: a string, one of the values.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text,)*]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown {}: {s}", stringify!($name))))
            }
        }
    };
}

text_enum! {
    /// A member's role in a team, strongest first (as lists show them).
    Role {
        Owner = "owner",
        Admin = "admin",
        Developer = "developer",
        Viewer = "viewer",
    }
}

impl Role {
    /// The role as pages name it: "Owner", "Admin", "Developer", "Viewer".
    pub fn label(self) -> &'static str {
        match self {
            Self::Owner => "Owner",
            Self::Admin => "Admin",
            Self::Developer => "Developer",
            Self::Viewer => "Viewer",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Self::Viewer => 0,
            Self::Developer => 1,
            Self::Admin => 2,
            Self::Owner => 3,
        }
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

text_enum! {
    /// Which credential an `api_keys` row is.
    KeyKind {
        /// A team's API key.
        Team = "team",
        /// An operator's service key (introspection, leak reports).
        Service = "service",
    }
}

impl KeyKind {
    /// The introspection `token_type` of such a key.
    pub fn token_type(self) -> &'static str {
        match self {
            Self::Team => "api_key",
            Self::Service => "service_key",
        }
    }
}

text_enum! {
    /// Where a key stands at a moment; computed, never stored.
    KeyStatus {
        Active = "active",
        ExpiringSoon = "expiring_soon",
        Expired = "expired",
        Revoked = "revoked",
        Disabled = "disabled",
    }
}

impl KeyStatus {
    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::ExpiringSoon => "Expiring soon",
            Self::Expired => "Expired",
            Self::Revoked => "Revoked",
            Self::Disabled => "Disabled",
        }
    }

    /// Whether the key still authenticates.
    pub fn is_usable(self) -> bool {
        matches!(self, Self::Active | Self::ExpiringSoon)
    }

    /// Whether the key is over for good (revoked or expired): nothing about
    /// it changes any more, and it never authenticates again. A disabled key
    /// is not: it may be enabled, edited or revoked.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Expired | Self::Revoked)
    }
}

text_enum! {
    /// How a request presenting a key ended, as its usage counts it.
    UsageOutcome {
        Ok = "ok",
        ScopeDenied = "scope_denied",
        AddressDenied = "address_denied",
        RateLimited = "rate_limited",
        Expired = "expired",
        Revoked = "revoked",
        Disabled = "disabled",
    }
}

impl UsageOutcome {
    /// Its place in [`UsageOutcome::ALL`] (and in a day's counts).
    pub fn index(self) -> usize {
        self as usize
    }
}

text_enum! {
    /// RFC 6749 client types.
    ClientType {
        Confidential = "confidential",
        Public = "public",
    }
}

text_enum! {
    /// Which OAuth token an `oauth_tokens` row is.
    TokenKind {
        Access = "access",
        Refresh = "refresh",
    }
}

impl TokenKind {
    /// The RFC 7009 / 7662 `token_type_hint` and introspection `token_type`.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Access => "access_token",
            Self::Refresh => "refresh_token",
        }
    }

    /// The prefix of such a token's secret (`lkat_…`, `lkrt_…`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Access => "lkat",
            Self::Refresh => "lkrt",
        }
    }

    /// The kind a presented secret's prefix names, if it is a token's.
    pub fn of_prefix(prefix: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.prefix() == prefix)
    }
}

text_enum! {
    /// The `error` of an OAuth error response (RFC 6749 §4.1.2.1, §5.2; RFC 8628 `slow_down`).
    OAuthErrorCode {
        InvalidRequest = "invalid_request",
        InvalidClient = "invalid_client",
        InvalidGrant = "invalid_grant",
        UnauthorizedClient = "unauthorized_client",
        UnsupportedGrantType = "unsupported_grant_type",
        UnsupportedResponseType = "unsupported_response_type",
        UnsupportedTokenType = "unsupported_token_type",
        InvalidScope = "invalid_scope",
        AccessDenied = "access_denied",
        ServerError = "server_error",
        TemporarilyUnavailable = "temporarily_unavailable",
        SlowDown = "slow_down",
    }
}

text_enum! {
    /// What an audit event records.
    AuditAction {
        SetupCompleted = "setup.completed",
        UserCreated = "user.created",
        LoginSucceeded = "login.succeeded",
        LoginFailed = "login.failed",
        LoginTotpFailed = "login.totp_failed",
        Logout = "logout",
        PasswordChanged = "password.changed",
        SessionRevoked = "session.revoked",
        TotpEnabled = "totp.enabled",
        TotpDisabled = "totp.disabled",
        TotpResetByOperator = "totp.reset_by_operator",
        TotpRecoveryCodeUsed = "totp.recovery_code_used",
        TotpRecoveryCodesRegenerated = "totp.recovery_codes_regenerated",
        TeamTotpPolicyChanged = "team.totp_policy_changed",
        TeamPlanChanged = "team.plan_changed",
        TeamKeyPolicyChanged = "team.key_policy_changed",
        MemberInvited = "member.invited",
        MemberRoleChanged = "member.role_changed",
        MemberRemoved = "member.removed",
        InviteAccepted = "invite.accepted",
        InviteRevoked = "invite.revoked",
        ApiKeyCreated = "api_key.created",
        ApiKeyRolled = "api_key.rolled",
        ApiKeyRevoked = "api_key.revoked",
        ApiKeyRevokedBySupport = "api_key.revoked_by_support",
        ApiKeyTransferred = "api_key.transferred",
        ApiKeyLeakReported = "api_key.leak_reported",
        ApiKeyRefusedRevoked = "api_key.refused_revoked",
        ApiKeyRenamed = "api_key.renamed",
        ApiKeyUpdated = "api_key.updated",
        ApiKeyDisabled = "api_key.disabled",
        ApiKeyEnabled = "api_key.enabled",
        ApiKeyGraceFinished = "api_key.grace_finished",
        ApiKeyGraceExtended = "api_key.grace_extended",
        ApiKeyExpiring = "api_key.expiring",
        ApiKeyRotationBusy = "api_key.rotation_busy",
        ServiceKeyCreated = "service_key.created",
        OauthAppRegistered = "oauth.app_registered",
        OauthAppUpdated = "oauth.app_updated",
        OauthAppDeleted = "oauth.app_deleted",
        OauthSecretRotated = "oauth.secret_rotated",
        OauthSecretLeaked = "oauth.secret_leaked",
        OauthSecretGraceFinished = "oauth.secret_grace_finished",
        OauthSecretGraceExtended = "oauth.secret_grace_extended",
        OauthSecretRotationBusy = "oauth.secret_rotation_busy",
        OauthConsentGranted = "oauth.consent_granted",
        OauthConsentRevoked = "oauth.consent_revoked",
        OauthTokenIssued = "oauth.token_issued",
        OauthTokenRevoked = "oauth.token_revoked",
        OauthTokenFailed = "oauth.token_failed",
        OauthTokenRefusedRevoked = "oauth.token_refused_revoked",
        OauthClientAuthFailed = "oauth.client_auth_failed",
        OauthCodeReused = "oauth.code_reused",
        OauthRefreshReuse = "oauth.refresh_reuse",
        ApiKeyRateLimited = "api_key.rate_limited",
        WebhookCreated = "webhook.created",
        WebhookUpdated = "webhook.updated",
        WebhookSecretRotated = "webhook.secret_rotated",
        WebhookDeleted = "webhook.deleted",
        WebhookDisabled = "webhook.disabled",
        WebhookEnabled = "webhook.enabled",
    }
}

text_enum! {
    /// What a webhook message announces (its `type`; Standard Webhooks).
    WebhookEvent {
        ApiKeyCreated = "api_key.created",
        ApiKeyRolled = "api_key.rolled",
        ApiKeyRevoked = "api_key.revoked",
        ApiKeyExpiring = "api_key.expiring",
        ApiKeyLeaked = "api_key.leaked",
        ApiKeyRateLimited = "api_key.rate_limited",
        OauthAppCreated = "oauth_app.created",
        OauthAppUpdated = "oauth_app.updated",
        OauthAppDeleted = "oauth_app.deleted",
        OauthAppSecretRotated = "oauth_app.secret_rotated",
        OauthAppSecretLeaked = "oauth_app.secret_leaked",
        MemberInvited = "member.invited",
        MemberJoined = "member.joined",
        MemberRoleChanged = "member.role_changed",
        MemberRemoved = "member.removed",
        SecurityTotpDisabled = "security.totp_disabled",
    }
}

impl WebhookEvent {
    /// The event an audited action announces, if any.
    pub fn of_action(action: AuditAction) -> Option<Self> {
        use AuditAction as A;
        Some(match action {
            A::ApiKeyCreated => Self::ApiKeyCreated,
            A::ApiKeyRolled => Self::ApiKeyRolled,
            A::ApiKeyRevoked | A::ApiKeyRevokedBySupport => Self::ApiKeyRevoked,
            A::ApiKeyExpiring => Self::ApiKeyExpiring,
            A::ApiKeyLeakReported => Self::ApiKeyLeaked,
            A::ApiKeyRateLimited => Self::ApiKeyRateLimited,
            A::OauthAppRegistered => Self::OauthAppCreated,
            A::OauthAppUpdated => Self::OauthAppUpdated,
            A::OauthAppDeleted => Self::OauthAppDeleted,
            A::OauthSecretRotated => Self::OauthAppSecretRotated,
            A::OauthSecretLeaked => Self::OauthAppSecretLeaked,
            A::MemberInvited => Self::MemberInvited,
            A::InviteAccepted => Self::MemberJoined,
            A::MemberRoleChanged => Self::MemberRoleChanged,
            A::MemberRemoved => Self::MemberRemoved,
            A::TotpDisabled | A::TotpResetByOperator => Self::SecurityTotpDisabled,
            _ => return None,
        })
    }

    /// One line for the event checkboxes.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ApiKeyCreated => "An API key was created",
            Self::ApiKeyRolled => "An API key was rolled",
            Self::ApiKeyRevoked => "An API key was revoked (by a member or by support)",
            Self::ApiKeyExpiring => "An API key expires in 7 days, then in 1 day",
            Self::ApiKeyLeaked => "An API key was reported leaked and revoked",
            Self::ApiKeyRateLimited => {
                "An API key was refused for its team's rate limit (at most once an hour per key)"
            }
            Self::OauthAppCreated => "An OAuth app was registered",
            Self::OauthAppUpdated => "An OAuth app's settings changed",
            Self::OauthAppDeleted => "An OAuth app was deleted",
            Self::OauthAppSecretRotated => "An OAuth app's secret was rotated",
            Self::OauthAppSecretLeaked => "An OAuth app's secret was reported leaked",
            Self::MemberInvited => "Someone was invited to the team",
            Self::MemberJoined => "Someone joined the team",
            Self::MemberRoleChanged => "A member's role changed",
            Self::MemberRemoved => "A member was removed",
            Self::SecurityTotpDisabled => "A member's two-factor authentication was turned off",
        }
    }
}

text_enum! {
    /// Where one webhook delivery stands.
    DeliveryStatus {
        /// Not delivered yet: due at `next_attempt_at`.
        Pending = "pending",
        Delivered = "delivered",
        /// Every attempt failed (24 hours of retries).
        Failed = "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        for r in Role::ALL {
            assert_eq!(Role::try_from(r.as_str().to_owned()), Ok(*r));
        }
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(*e));
        }
        for c in OAuthErrorCode::ALL {
            assert_eq!(OAuthErrorCode::parse(c.as_str()), Some(*c));
        }
        assert!(KeyStatus::try_from("paused".to_owned()).is_err());
    }

    #[test]
    fn roles_order_from_viewer_to_owner() {
        assert!(Role::Viewer < Role::Developer && Role::Developer < Role::Admin && Role::Admin < Role::Owner);
    }
}
