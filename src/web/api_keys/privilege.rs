//! Least privilege on the key page: the card that names the scopes a key did
//! not use lately, and "Roll with only the used scopes" — its confirmation
//! (`GET …/{id}/roll-used`, with the grace and the scopes the new key will
//! carry) and the roll itself (`POST`, then the one-time reveal, as a roll).
//!
//! Rules: the card speaks only of a key that works and was not rolled away;
//! nothing is suggested before 14 days of use; the button shows only where
//! rolling is allowed, and the service decides again from the database when
//! the roll is made (a judgement that changed meanwhile is refused, never
//! applied silently). A refusal on the page comes back to the key page with
//! the reason; a reload of the reveal lands on "rolled, shown once".

use actix_web::{HttpResponse, web};

use super::{BASE, Notice, ask_roll, caller, detail_with, key_id, reveal_roll};
use crate::domain::KeyId;
use crate::error::AppError;
use crate::service::keys::{KeyCaller, KeyService};
use crate::service::usage::report::{OBSERVE_DAYS, Privilege};
use crate::service::{self as services, FieldErrors};
use crate::web::State;
use crate::web::answer::{bad_request, flashed};
use crate::web::auth::CurrentUser;
use crate::web::confirm::Confirm;
use crate::web::htmx::HxRequest;
use crate::web::page::{GraceForm, redirect};

/// What the key page's least-privilege card says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeView {
    /// Nothing: the key no longer works, or was rolled away.
    Hidden,
    /// Not watched for 14 days yet.
    Unknown { observe_days: i64 },
    /// Every scope it holds was used in the last `days` days.
    Tight { days: i64 },
    /// No scope at all was used in the last `days` days.
    Idle { days: i64 },
    /// `unused` were not used in the last `days` days; `used` were.
    Over { days: i64, unused: Vec<String>, used: Vec<String> },
}

impl PrivilegeView {
    /// The card for a key whose use says `privilege`; `current`: it works and was not rolled away.
    pub fn of(privilege: &Privilege, current: bool) -> Self {
        match privilege {
            _ if !current => Self::Hidden,
            Privilege::Unknown => Self::Unknown { observe_days: OBSERVE_DAYS },
            Privilege::Known { days, unused, .. } if unused.is_empty() => Self::Tight { days: *days },
            Privilege::Known { days, used, .. } if used.is_empty() => Self::Idle { days: *days },
            Privilege::Known { days, unused, used } => {
                Self::Over { days: *days, unused: unused.clone(), used: used.clone() }
            }
        }
    }
}

/// A key page's address and its "roll with only the used scopes" one.
fn urls(id: &str) -> (String, String) {
    let page = format!("{BASE}/{id}");
    let roll_used = format!("{page}/roll-used");
    (page, roll_used)
}

/// `GET …/{id}/roll-used`: the confirmation, naming the scopes the new key
/// carries and those it drops; for a key already rolled, the page that says
/// when; for one with nothing to drop, its page.
pub async fn roll_used_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let (key, privilege) = service.manageable_judged(&caller, &id).await?;
    if key.replaced_by.is_some() {
        return detail_with(&state, &user, &id, Notice::None).await;
    }
    let (back, action) = urls(&key.id);
    let current = key.status(service.now()).is_usable();
    let PrivilegeView::Over { days, unused, used } = PrivilegeView::of(&privilege, current) else {
        return Ok(redirect(&back));
    };
    let c = Confirm::new(
        format!("confirm-roll-used-{}", key.id),
        format!("Roll {} with only the scopes it used?", key.name),
        action,
    )
    .says(format!("The new key carries only {}.", used.join(", ")))
    .says(format!("It drops {}, not used in {days} days.", unused.join(", ")))
    .says(
        "Its secret is shown once. The old key keeps working for 24 hours (or the time you choose below), then stops.",
    );
    ask_roll(&user, hx, c, ("Roll with the used scopes", back))
}

/// `POST …/{id}/roll-used`: the roll, then the one-time reveal; a refusal
/// goes back to the key page with the reason.
pub async fn roll_used(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<GraceForm>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let rolled = match service.roll_with_used_scopes(&caller, &id, form.grace).await {
        Ok(rolled) => rolled,
        Err(services::Error::Invalid(errors)) => return refused(&service, &user, &caller, &id, errors).await,
        Err(e) => return Err(bad_request(e)),
    };
    let (_, again) = urls(id.as_str());
    reveal_roll(&state, &user, hx, rolled, &again)
}

/// A roll refused as invalid: for a key rolled already (a reload of the
/// reveal without JavaScript), the page that says when; for a judgement that
/// no longer holds, the key page with the reason.
async fn refused(
    service: &KeyService<'_>,
    user: &CurrentUser,
    caller: &KeyCaller,
    id: &KeyId,
    errors: FieldErrors,
) -> Result<HttpResponse, AppError> {
    let (back, again) = urls(id.as_str());
    if service.manageable(caller, id).await?.replaced_by.is_some() {
        return Ok(redirect(&again));
    }
    match errors.get("only_used_scopes") {
        Some(reason) => Ok(flashed(&user.session, reason, &back)),
        None => Err(bad_request(services::Error::Invalid(errors))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_card_speaks_only_of_a_current_key_and_only_suggests_what_was_used() {
        let over = Privilege::Known { days: 30, unused: v(&["products:write"]), used: v(&["products:read"]) };
        assert_eq!(PrivilegeView::of(&over, false), PrivilegeView::Hidden);
        assert!(matches!(PrivilegeView::of(&over, true), PrivilegeView::Over { days: 30, .. }));
        assert_eq!(PrivilegeView::of(&Privilege::Unknown, true), PrivilegeView::Unknown { observe_days: 14 });
        let idle = Privilege::Known { days: 20, unused: v(&["a:read"]), used: Vec::new() };
        assert_eq!(PrivilegeView::of(&idle, true), PrivilegeView::Idle { days: 20 });
        let tight = Privilege::Known { days: 20, unused: Vec::new(), used: v(&["a:read"]) };
        assert_eq!(PrivilegeView::of(&tight, true), PrivilegeView::Tight { days: 20 });
    }
}
