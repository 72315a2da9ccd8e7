//! Row types and their database methods, one file per table.

mod api_key;
mod audit;
mod change;
mod email;
mod grace;
mod invite;
mod oauth;
mod recovery;
mod session;
mod team;
mod usage;
mod user;
mod webhook;
mod webhook_delivery;

pub use api_key::{ApiKey, EXPIRING_SOON_SECS, StatusFilter};
pub use audit::{ActionFilter, AuditCursor, AuditEvent, AuditFilter, NewAuditEvent};
pub use change::Change;
pub use email::{EmailOptOut, KnownDevice};
pub use invite::Invite;
pub use oauth::{OauthClient, OauthCode, OauthConsent, OauthToken};
pub use recovery::RecoveryCode;
pub use session::SessionRow;
pub use team::{Membership, Team};
pub use usage::{Reminder, ScopeUseRow, SightingRow, UsageDay, UsageHour};
pub use user::User;
pub use webhook::{EndpointSettings, WebhookEndpoint, WebhookMessage};
pub use webhook_delivery::{Attempt, WebhookDelivery};
