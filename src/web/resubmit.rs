//! A form sent twice must not make a second credential. Without JavaScript,
//! reloading the page a `POST` answered (a one-time reveal) makes the browser
//! send the form again. Forms that create something carry a random
//! `submission` token; the session remembers the last token that made
//! something of each kind, and the same token again lands on what it made.

use super::session::TypedSession;
use crate::error::AppError;

/// Our tokens are 16 characters; anything longer is not one of ours.
const MAX_LEN: usize = 32;

/// A new token for a form.
pub fn token() -> Result<String, AppError> {
    crate::service::crypto::random_base62(16).map_err(|e| AppError::Internal(anyhow::anyhow!("random: {e}")))
}

/// A submitted token, if it can be one of ours.
pub fn accepted(raw: &str) -> Option<&str> {
    (!raw.is_empty() && raw.len() <= MAX_LEN).then_some(raw)
}

/// The token of a form read as pairs (`submission`), if it can be one of ours.
pub fn accepted_in(pairs: &[(String, String)]) -> Option<&str> {
    pairs.iter().find(|(k, _)| k == "submission").and_then(|(_, v)| accepted(v))
}

fn slot(kind: &str) -> String {
    format!("made_by_form.{kind}")
}

/// What the form with `token` already made (its id), if it did.
pub fn made(session: &TypedSession, kind: &str, token: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(token) = token else { return Ok(None) };
    let last: Option<(String, String)> = session.get(&slot(kind))?;
    Ok(last.filter(|(t, _)| t == token).map(|(_, id)| id))
}

/// Remembers that the form with `token` made `id`.
pub fn remember(session: &TypedSession, kind: &str, token: Option<&str>, id: &str) -> Result<(), AppError> {
    match token {
        Some(token) => session.insert(&slot(kind), (token, id)),
        None => Ok(()),
    }
}
