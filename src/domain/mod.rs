//! The product's vocabulary as types: ids, kinds, statuses, roles, audit
//! actions, OAuth error codes and secrets.
//!
//! Rules: every enum that is stored or sent as text converts in exactly one
//! place (its `as_str` and `TryFrom<String>`/`parse`), so a string compared
//! with a literal elsewhere is a bug; an id of one kind cannot be passed where
//! another is expected; a [`PlainSecret`] cannot be logged, serialized or
//! stored (only its [`SecretHash`] can).

mod ids;
mod secret;
mod vocab;

pub use ids::{ClientId, EndpointId, InviteId, KeyId, SessionId, TeamId, TokenId, UserId};
pub use secret::{PlainSecret, SecretHash};
pub use vocab::{
    AuditAction, ClientType, DeliveryStatus, KeyKind, KeyStatus, OAuthErrorCode, Role, TokenKind, UnknownValue,
    UsageOutcome, WebhookEvent,
};
