//! What a new or copied key must satisfy: a valid name, description, scopes,
//! expiry and address ranges, within the team's maximum lifetime and the
//! caller's ceilings.
//!
//! Rules: every failing field of a request is reported at once; a roll is
//! refused, never silently narrowed.

use ipnet::IpNet;

use super::{Creator, Expiry, KeyRequest, MAX_ALLOWED_IPS, MAX_DESCRIPTION, MAX_NAME, Settings};
use super::{allowed_ips_of, caller, may_manage, parse_cidr};
use crate::service::policy;
use crate::service::{Error, FieldErrors, Result};
use crate::store::DbConn;
use crate::store::models::{ApiKey, Team};

/// A request that passed every check.
pub(super) struct Valid {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    pub allowed_ips: Vec<IpNet>,
}

/// Checks a request to create a key; every failing field is reported.
pub(super) fn validate(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    req: &KeyRequest,
    at: i64,
) -> Result<Valid> {
    let mut errors = FieldErrors::default();
    let name =
        crate::service::validate::name(&req.name, MAX_NAME).map_err(|m| errors.add("name", m)).unwrap_or_default();
    if !name.is_empty() && ApiKey::active_name_taken(conn, creator.team_id, &name, at)? {
        errors.add("name", "An active key of your team already has this name.");
    }
    let description = crate::service::validate::text(&req.description, MAX_DESCRIPTION)
        .map_err(|m| errors.add("description", m))
        .unwrap_or_default();
    let scopes = policy::grant_scopes(&caller(creator), settings.catalog, &req.scopes)
        .map_err(|m| errors.add("scopes", m))
        .unwrap_or_default();
    let max_days = Team::find(conn, creator.team_id)?.and_then(|t| t.max_key_lifetime_days);
    let expires_at = expiry(req.expiry, max_days, at).map_err(|m| errors.add("expires_at", m)).unwrap_or_default();
    let allowed_ips = ranges(&req.allowed_ips).map_err(|m| errors.add("allowed_ips", m)).unwrap_or_default();
    if let Err(m) = within_address_ceiling(creator, &allowed_ips) {
        errors.add("allowed_ips", m);
    }
    if let Err(m) = within_lifetime_ceiling(creator, expires_at) {
        errors.add("expires_at", m);
    }
    errors.into_result()?;
    Ok(Valid { name, description, scopes, expires_at, allowed_ips })
}

/// Address ranges as typed (blank entries skipped, duplicates dropped), or
/// why they are not: at most [`MAX_ALLOWED_IPS`], each an IPv4/IPv6 address
/// or CIDR range.
pub(super) fn ranges(raw: &[String]) -> Result<Vec<IpNet>, String> {
    if raw.len() > MAX_ALLOWED_IPS {
        return Err("Use at most 50 addresses or ranges.".into());
    }
    let mut out = Vec::new();
    for raw in raw.iter().filter(|s| !s.trim().is_empty()) {
        match parse_cidr(raw) {
            Some(net) if !out.contains(&net) => out.push(net),
            Some(_) => {}
            None => return Err(format!("{:?} is not an IPv4/IPv6 address or CIDR range.", raw.trim())),
        }
    }
    Ok(out)
}

/// A caller restricted to addresses never hands out a key usable from elsewhere.
pub(super) fn within_address_ceiling(creator: &Creator<'_>, ranges: &[IpNet]) -> Result<(), String> {
    let Some(ceiling) = creator.ip_ceiling.filter(|c| !c.is_empty()) else { return Ok(()) };
    if !ranges.is_empty() && ranges.iter().all(|n| ceiling.iter().any(|c| c.contains(n))) {
        return Ok(());
    }
    let list = ceiling.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    Err(format!("The key you used works only from {list}: the new key must be limited to those ranges too."))
}

/// A caller that expires never hands out a key that outlives it.
pub(super) fn within_lifetime_ceiling(creator: &Creator<'_>, expires_at: Option<i64>) -> Result<(), String> {
    match (creator.not_after, expires_at) {
        (Some(limit), None) => {
            Err(format!("The key you used expires at {limit} (Unix time): the new key must expire by then too."))
        }
        (Some(limit), Some(e)) if e > limit => {
            Err(format!("The key you used expires at {limit} (Unix time): the new key must expire by then too."))
        }
        _ => Ok(()),
    }
}

/// 9999-12-31T23:59:59Z: the last moment a date can be written with four digits.
const LAST_TIME: i64 = 253_402_300_799;

pub(super) fn expiry(e: Expiry, max_days: Option<i64>, at: i64) -> Result<Option<i64>, String> {
    let exp = match e {
        Expiry::Never => None,
        Expiry::InDays(d) if (1..=3650).contains(&d) => Some(at + d * 86_400),
        Expiry::InDays(_) => return Err("Choose between 1 and 3650 days.".into()),
        Expiry::At(t) if t > LAST_TIME => return Err("Choose a date before the year 10000.".into()),
        Expiry::At(t) if t > at => Some(t),
        Expiry::At(_) => return Err("The expiry must be in the future.".into()),
    };
    match (max_days, exp) {
        (Some(max), None) => Err(format!("Your team requires keys to expire within {max} days.")),
        (Some(max), Some(t)) if t > at + max * 86_400 => Err(format!("Your team allows at most {max} days.")),
        _ => Ok(exp),
    }
}

/// Whether `creator` may roll `old` at `at` at all: a key they manage, that
/// works and was not rolled yet.
pub(super) fn may_roll_at_all(creator: &Creator<'_>, old: &ApiKey, at: i64) -> Result<()> {
    may_manage(creator, old)?;
    if !old.status(at).is_usable() || old.replaced_by.is_some() {
        return Err(Error::Invalid(FieldErrors::single(
            "key",
            "Only an active key that was not rolled yet can be rolled.",
        )));
    }
    Ok(())
}

/// Whether `creator` may roll `old` at `at` into a key with `scopes` (the
/// old key's, or fewer); if so, the copy's expiry.
pub(super) fn may_roll(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    old: &ApiKey,
    scopes: &[String],
    at: i64,
) -> Result<Option<i64>> {
    may_roll_at_all(creator, old, at)?;
    // A roll copies a credential: the caller's ceiling and current role
    // apply as to a new key, and so does the team's maximum lifetime.
    policy::copy_scopes(&caller(creator), settings.catalog, scopes)?;
    within_address_ceiling(creator, &allowed_ips_of(old))
        .map_err(|m| Error::Invalid(FieldErrors::single("allowed_ips", m)))?;
    let max_days = Team::find(conn, creator.team_id)?.and_then(|t| t.max_key_lifetime_days);
    let expires_at = policy::cap_expiry(old.expires_at, max_days, at);
    within_lifetime_ceiling(creator, expires_at).map_err(|m| Error::Invalid(FieldErrors::single("expires_at", m)))?;
    Ok(expires_at)
}
