//! A key's usage as the JSON API answers it: typed, so the OpenAPI
//! document's schema is what is sent.
//!
//! Rules: days are `YYYY-MM-DD` (UTC), times RFC 3339; a day has one count
//! per outcome (`UsageOutcome`) and their total.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::UsageOutcome;
use crate::service::keys::KeyUsage;
use crate::service::usage::report::{DayOutcomes, Privilege};
use crate::store::models::SightingRow;
use crate::web::format;

/// A key's usage over whole UTC days, as the JSON API answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub key_id: String,
    /// The first day (UTC).
    #[schema(format = Date)]
    pub from: String,
    /// The last day (UTC).
    #[schema(format = Date)]
    pub to: String,
    /// Each day of the span, oldest first.
    pub days: Vec<DayCounts>,
    /// The addresses that presented the key lately.
    pub addresses: Vec<AddressSeen>,
    /// The user agents that presented the key lately.
    pub user_agents: Vec<AgentSeen>,
    pub scopes: ScopeUse,
}

/// One day's requests by outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayCounts {
    #[schema(format = Date)]
    pub date: String,
    pub ok: i64,
    pub scope_denied: i64,
    pub address_denied: i64,
    pub rate_limited: i64,
    pub expired: i64,
    pub revoked: i64,
    pub disabled: i64,
    pub total: i64,
}

/// An address that presented the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressSeen {
    pub address: String,
    #[schema(format = DateTime)]
    pub first_seen: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    pub requests: i64,
}

/// A user agent that presented the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSeen {
    pub user_agent: String,
    #[schema(format = DateTime)]
    pub first_seen: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    pub requests: i64,
}

/// Which granted scopes the key exercised, and which it did not.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeUse {
    pub exercised: Vec<ScopeExercised>,
    /// Granted scopes not used lately; null while that is unknown (fewer than 14 days watched).
    #[schema(required = true)]
    pub unused: Option<Vec<String>>,
    /// Days of use the judgement rests on; null while unknown.
    #[schema(required = true)]
    pub observed_days: Option<i64>,
}

/// A scope the key exercised.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeExercised {
    pub scope: String,
    #[schema(format = DateTime)]
    pub first_used: String,
    #[schema(format = DateTime)]
    pub last_used: String,
}

/// The usage as the JSON API answers it (times RFC 3339).
pub fn report_json(u: &KeyUsage) -> UsageReport {
    let seen = |s: &SightingRow| (format::rfc3339(s.first_seen), format::rfc3339(s.last_seen), s.requests);
    let addresses = u.report.addresses.iter().map(|s| {
        let (first_seen, last_seen, requests) = seen(s);
        AddressSeen { address: s.value.clone(), first_seen, last_seen, requests }
    });
    let user_agents = u.report.agents.iter().map(|s| {
        let (first_seen, last_seen, requests) = seen(s);
        AgentSeen { user_agent: s.value.clone(), first_seen, last_seen, requests }
    });
    let exercised = u.report.exercised.iter().map(|s| ScopeExercised {
        scope: s.scope.clone(),
        first_used: format::rfc3339(s.first_used),
        last_used: format::rfc3339(s.last_used),
    });
    let observed_days = match &u.report.privilege {
        Privilege::Known { days, .. } => Some(*days),
        Privilege::Unknown => None,
    };
    UsageReport {
        key_id: u.key.id.clone(),
        from: format::day(u.from),
        to: format::day(u.to),
        days: u.report.days.iter().map(day_counts).collect(),
        addresses: addresses.collect(),
        user_agents: user_agents.collect(),
        scopes: ScopeUse {
            exercised: exercised.collect(),
            unused: u.report.privilege.unused().map(<[String]>::to_vec),
            observed_days,
        },
    }
}

fn day_counts(d: &DayOutcomes) -> DayCounts {
    use UsageOutcome as O;
    DayCounts {
        date: format::day(d.day),
        ok: d.get(O::Ok),
        scope_denied: d.get(O::ScopeDenied),
        address_denied: d.get(O::AddressDenied),
        rate_limited: d.get(O::RateLimited),
        expired: d.get(O::Expired),
        revoked: d.get(O::Revoked),
        disabled: d.get(O::Disabled),
        total: d.total(),
    }
}
