//! Two-factor login with TOTP (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step) and
//! single-use recovery codes.
//!
//! Rules: the secret is stored only AEAD-encrypted under a key derived from the
//! server secret, bound to its user and column (associated data), so a value
//! copied to another row does not open — values sealed before that binding
//! open once more and are sealed again, bound, on their next use; each time step is accepted once per user (a replayed or
//! older code is refused); recovery codes are stored as keyed hashes and work
//! once; every change is audited.

use serde_json::json;
use totp_rs::{Algorithm, Builder};

use super::audit::{self, Actor, Event};
use super::crypto::{self, Keys};
use super::{Error, FieldErrors, Result};
use crate::domain::{AuditAction, PlainSecret};
use crate::store::DbConn;
use crate::store::models::{Membership, RecoveryCode, SessionRow, User};

pub const ISSUER: &str = "Latchkey";
pub const RECOVERY_CODES: usize = 10;
const SECRET_BYTES: usize = 20;
const STEP: u64 = 30;

/// What a person typed in the code field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Totp(String),
    Recovery(String),
}

/// Trims spaces; accepts 6 digits or a recovery code (`xxxxx-xxxxx`).
pub fn classify(raw: &str) -> Result<Code, &'static str> {
    let code: String = raw.trim().chars().filter(|c| *c != ' ').collect();
    if code.is_empty() {
        return Err("Enter the 6-digit code from your authenticator app, or a recovery code.");
    }
    if code.chars().all(|c| c.is_ascii_digit()) {
        return if code.len() == 6 { Ok(Code::Totp(code)) } else { Err("Authenticator codes have exactly 6 digits.") };
    }
    let normal: String = code.chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase();
    if normal.len() == 10 && normal.chars().all(|c| c.is_ascii_alphanumeric()) && code.matches('-').count() <= 1 {
        return Ok(Code::Recovery(normal));
    }
    Err("That is neither a 6-digit code nor a recovery code.")
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::Error::msg(e.to_string()))
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(email: &str, secret_b32: &str) -> String {
    let label = format!("{ISSUER}:{email}");
    let enc = |s: &str| serde_urlencoded::to_string([("v", s)]).map(|q| q[2..].replace('+', "%20")).unwrap_or_default();
    format!("otpauth://totp/{}?secret={secret_b32}&issuer={ISSUER}&algorithm=SHA1&digits=6&period=30", enc(&label))
}

/// A QR code of `uri` as an SVG data URL (drawn here; nothing leaves the server).
pub fn qr_data_url(uri: &str) -> Result<String> {
    use base64::Engine;
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(internal)?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(220, 220).build();
    Ok(format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg)))
}

/// The step a code matches at `at` (±1 step), if any.
pub fn matching_step(secret: &[u8], code: &str, at: u64) -> Result<Option<u64>> {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| internal(format!("totp: {e:?}")))?;
    // `check` returns the matched counter (time step), not a time.
    Ok(totp.check(code, at))
}

/// A time in Unix seconds as the TOTP library counts it.
fn unix(at: i64) -> u64 {
    at.max(0).unsigned_abs()
}

/// The stored columns that hold a sealed secret.
const PENDING_COLUMN: &str = "totp_pending_enc";
const SECRET_COLUMN: &str = "totp_secret_enc";

/// The associated data that binds a sealed secret to its user and column.
fn context(user_id: &str, column: &str) -> String {
    format!("latchkey/users/{user_id}/{column}")
}

fn user(conn: &mut DbConn, user_id: &str) -> Result<User> {
    User::find(conn, user_id)?.ok_or(Error::NotFound)
}

fn team_of(conn: &mut DbConn, user_id: &str) -> Result<Option<String>> {
    Ok(Membership::of_user(conn, user_id)?.map(|(_, t)| t.id))
}

fn record(
    conn: &mut DbConn,
    actor: &Actor,
    user_id: &str,
    action: AuditAction,
    details: serde_json::Value,
) -> Result<()> {
    let team = team_of(conn, user_id)?;
    let mut event = Event::new(action).object("user", user_id).details(details);
    if let Some(t) = team.as_deref() {
        event = event.team(t);
    }
    audit::record(conn, actor, event)
}

/// Starts (or restarts) enrolment; returns the manual key (base32).
pub fn start(conn: &mut DbConn, keys: &Keys, user_id: &str) -> Result<String> {
    let u = user(conn, user_id)?;
    if u.has_totp() {
        return Err(Error::Invalid(FieldErrors::single("code", "Two-factor authentication is already on.")));
    }
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(internal)?;
    let sealed = keys.seal(&secret, &context(user_id, PENDING_COLUMN)).map_err(internal)?;
    User::set_totp_pending(conn, user_id, Some(&sealed))?;
    Ok(base32(&secret))
}

/// The manual key of an enrolment in progress.
/// One that no longer opens shows as none (confirming it asks to start again).
pub fn pending(keys: &Keys, u: &User) -> Option<String> {
    let sealed = u.totp_pending_enc.as_deref()?;
    match keys.open(sealed, &context(&u.id, PENDING_COLUMN)) {
        Ok(opened) => Some(base32(&opened.plaintext)),
        Err(e) => {
            tracing::warn!(user = %u.id, error = %e, "a pending TOTP secret does not open for its user");
            None
        }
    }
}

fn new_recovery_codes(conn: &mut DbConn, keys: &Keys, user_id: &str, at: i64) -> Result<Vec<PlainSecret>> {
    RecoveryCode::delete_for_user(conn, user_id)?;
    let mut shown = Vec::with_capacity(RECOVERY_CODES);
    let mut rows = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = crypto::random_base62(10).map_err(internal)?.to_ascii_lowercase();
        rows.push(RecoveryCode {
            id: crypto::new_id("rc").map_err(internal)?,
            user_id: user_id.to_owned(),
            code_hash: keys.token_hash(&format!("recovery:{raw}")),
            created_at: at,
            used_at: None,
        });
        shown.push(PlainSecret::new(format!("{}-{}", &raw[..5], &raw[5..])));
    }
    RecoveryCode::insert_all(conn, &rows)?;
    Ok(shown)
}

/// Confirms enrolment with a current code; returns the recovery codes (shown once).
pub fn confirm(
    conn: &mut DbConn,
    keys: &Keys,
    actor: &Actor,
    user_id: &str,
    raw: &str,
    at: i64,
) -> Result<Vec<PlainSecret>> {
    let Code::Totp(code) = classify(raw).map_err(|m| Error::Invalid(FieldErrors::single("code", m)))? else {
        return Err(Error::Invalid(FieldErrors::single("code", "Enter the 6-digit code from your authenticator app.")));
    };
    crate::store::transaction(conn, |conn| {
        let u = user(conn, user_id)?;
        let sealed = u.totp_pending_enc.clone().ok_or_else(|| {
            Error::Invalid(FieldErrors::single(
                "code",
                "Start the set-up first: your enrolment expired or was finished.",
            ))
        })?;
        let secret = keys
            .open(&sealed, &context(user_id, PENDING_COLUMN))
            .map_err(|e| {
                tracing::warn!(user = user_id, error = %e, "a pending TOTP secret does not open for its user");
                Error::Invalid(FieldErrors::single("code", "Start the set-up again: your enrolment cannot be read."))
            })?
            .plaintext;
        let step = matching_step(&secret, &code, unix(at))?.ok_or_else(|| {
            Error::Invalid(FieldErrors::single(
                "code",
                "That code is not right. Check your device's clock and try the next one.",
            ))
        })?;
        let enabled = keys.seal(&secret, &context(user_id, SECRET_COLUMN)).map_err(internal)?;
        User::enable_totp(conn, user_id, &enabled, at, step as i64)?;
        let codes = new_recovery_codes(conn, keys, user_id, at)?;
        record(conn, actor, user_id, AuditAction::TotpEnabled, json!({}))?;
        Ok(codes)
    })
}

/// Which second factor signed the user in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    RecoveryCode,
}

/// Checks a second factor; a used step or recovery code is refused.
pub fn verify(conn: &mut DbConn, keys: &Keys, actor: &Actor, user_id: &str, raw: &str, at: i64) -> Result<Factor> {
    let code = classify(raw).map_err(|m| Error::Invalid(FieldErrors::single("code", m)))?;
    let wrong = || Error::Forbidden("That code is not valid.");
    crate::store::transaction(conn, |conn| {
        let u = user(conn, user_id)?;
        let sealed = u.totp_secret_enc.as_deref().ok_or(Error::Forbidden("Two-factor authentication is off."))?;
        match code {
            Code::Totp(code) => {
                let bound = context(user_id, SECRET_COLUMN);
                // A value sealed for another user or column does not open: no code matches it.
                let opened = keys.open(sealed, &bound).map_err(|e| {
                    tracing::warn!(user = user_id, error = %e, "a TOTP secret does not open for its user");
                    wrong()
                })?;
                let step = matching_step(&opened.plaintext, &code, unix(at))?.ok_or_else(wrong)?;
                if User::claim_totp_step(conn, user_id, step as i64)? != 1 {
                    return Err(Error::Forbidden("That code was already used. Wait for the next one."));
                }
                if opened.legacy {
                    let resealed = keys.seal(&opened.plaintext, &bound).map_err(internal)?;
                    User::set_totp_secret(conn, user_id, &resealed)?;
                }
                Ok(Factor::Totp)
            }
            Code::Recovery(normal) => {
                let hash = keys.token_hash(&format!("recovery:{normal}"));
                if RecoveryCode::consume(conn, user_id, &hash, at)? != 1 {
                    return Err(wrong());
                }
                let left = RecoveryCode::remaining(conn, user_id)?;
                record(conn, actor, user_id, AuditAction::TotpRecoveryCodeUsed, json!({"remaining": left}))?;
                Ok(Factor::RecoveryCode)
            }
        }
    })
}

/// Turns 2FA off; the caller has checked the password, this checks the code.
pub fn disable(conn: &mut DbConn, keys: &Keys, actor: &Actor, user_id: &str, raw: &str, at: i64) -> Result<()> {
    crate::store::transaction(conn, |conn| {
        verify(conn, keys, actor, user_id, raw, at)?;
        User::disable_totp(conn, user_id)?;
        RecoveryCode::delete_for_user(conn, user_id)?;
        record(conn, actor, user_id, AuditAction::TotpDisabled, json!({}))
    })
}

pub fn regenerate(conn: &mut DbConn, keys: &Keys, actor: &Actor, user_id: &str, at: i64) -> Result<Vec<PlainSecret>> {
    crate::store::transaction(conn, |conn| {
        if !user(conn, user_id)?.has_totp() {
            return Err(Error::Forbidden("Turn on two-factor authentication first."));
        }
        let codes = new_recovery_codes(conn, keys, user_id, at)?;
        record(conn, actor, user_id, AuditAction::TotpRecoveryCodesRegenerated, json!({}))?;
        Ok(codes)
    })
}

pub fn remaining_codes(conn: &mut DbConn, user_id: &str) -> Result<i64> {
    Ok(RecoveryCode::remaining(conn, user_id)?)
}

/// Seals again, bound to their row's user and column, the secrets sealed
/// before that binding existed (run at start, so that none stays movable);
/// returns how many users were updated. A value that no longer opens is left
/// as it is (and keeps failing).
pub fn reseal_unbound(conn: &mut DbConn, keys: &Keys) -> Result<usize> {
    crate::store::transaction(conn, |conn| {
        let users = User::with_unbound_totp(conn)?;
        let mut updated = 0;
        for u in &users {
            let reseal = |sealed: Option<&str>, column: &str| -> Result<Option<String>> {
                let bound = context(&u.id, column);
                match sealed.map(|s| keys.open(s, &bound)) {
                    Some(Ok(opened)) if opened.legacy => {
                        Ok(Some(keys.seal(&opened.plaintext, &bound).map_err(internal)?))
                    }
                    _ => Ok(None),
                }
            };
            let (secret, pending) = (
                reseal(u.totp_secret_enc.as_deref(), SECRET_COLUMN)?,
                reseal(u.totp_pending_enc.as_deref(), PENDING_COLUMN)?,
            );
            if let Some(sealed) = &secret {
                User::set_totp_secret(conn, &u.id, sealed)?;
            }
            if let Some(sealed) = &pending {
                User::set_totp_pending(conn, &u.id, Some(sealed))?;
            }
            updated += usize::from(secret.is_some() || pending.is_some());
        }
        Ok(updated)
    })
}

/// Operator command: turns a user's 2FA off (they lost every factor).
pub fn operator_reset(conn: &mut DbConn, email: &str) -> Result<()> {
    crate::store::transaction(conn, |conn| {
        let u = User::find_by_email(conn, email)?.ok_or(Error::NotFound)?;
        User::disable_totp(conn, &u.id)?;
        RecoveryCode::delete_for_user(conn, &u.id)?;
        SessionRow::delete_for_user(conn, &u.id)?;
        record(conn, &Actor::operator(), &u.id, AuditAction::TotpResetByOperator, json!({}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_with_spaces_trimmed() {
        assert_eq!(classify(" 123456 ").unwrap(), Code::Totp("123456".into()));
        assert_eq!(classify("123 456").unwrap(), Code::Totp("123456".into()));
        assert_eq!(classify("abcde-12345").unwrap(), Code::Recovery("abcde12345".into()));
        assert_eq!(classify("ABCDE12345").unwrap(), Code::Recovery("abcde12345".into()));
        for bad in ["", "12345", "1234567", "12a456", "abc", "abcde--12345", "ab\u{0}de-12345"] {
            assert!(classify(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn a_code_matches_its_step_and_neighbours_only() {
        let secret = b"12345678901234567890";
        // RFC 6238 test vector: T = 59 s → 94287082 (8 digits); 6 digits → 287082.
        assert_eq!(matching_step(secret, "287082", 59).unwrap(), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 30).unwrap(), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 90).unwrap(), None);
    }
}
