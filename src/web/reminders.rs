//! The banner every signed-in page shows while keys the member is told about
//! expire within a week: "Key *Billing* expires in 3 days", up to three by
//! name, then "and N more", with a link to the list filtered to them.
//!
//! Rules: the banner is read for full pages only (a `GET` that is not an htmx
//! fragment), with one indexed query of the member's own team
//! (`ReminderService::banner`); a failure to read it is logged and the page
//! renders without it.

use actix_web::HttpRequest;

use super::AppState;
use super::format::When;
use super::htmx::HxRequest;
use crate::domain::{Role, TeamId};
use crate::service::reminders::{Banner, ReminderService};

impl AppState {
    /// Expiry reminders and the banner, on this instance's database, clock and notifier.
    pub fn reminder_service(&self) -> ReminderService<'_> {
        ReminderService {
            db: &self.db,
            clock: &self.clock,
            notifier: &self.notifier,
            key_prefix: &self.config.api_key_prefix,
        }
    }
}

/// A key the banner names, as the page shows it.
#[derive(Debug, Clone)]
pub struct BannerKey {
    pub href: String,
    pub name: String,
    pub expires: When,
}

/// The banner as the layout shows it.
#[derive(Debug, Clone)]
pub struct ExpiryBanner {
    pub keys: Vec<BannerKey>,
    /// "and 2 more", or empty.
    pub more: String,
}

impl ExpiryBanner {
    /// Where "See them" goes: the list of keys expiring soon.
    pub const LIST: &'static str = "/settings/developer/api-keys?status=expiring_soon";

    fn of(banner: Banner, now: i64) -> Self {
        let keys = banner
            .named
            .into_iter()
            .map(|k| BannerKey {
                href: format!("/settings/developer/api-keys/{}", k.id),
                name: k.name,
                expires: When::at(k.expires_at, now),
            })
            .collect();
        let more = match (banner.more, banner.at_least) {
            (0, _) => String::new(),
            (n, false) => format!("and {n} more"),
            (n, true) => format!("and at least {n} more"),
        };
        Self { keys, more }
    }

    /// The list link's label.
    pub fn list_label(&self) -> &'static str {
        if self.keys.len() == 1 && self.more.is_empty() { "See it in the list" } else { "See them all" }
    }
}

/// The banner for a full page of a member of `team` (none for a fragment,
/// a form post, or a person without a team).
pub async fn banner_for(
    req: &HttpRequest,
    state: &AppState,
    team: Option<(&str, Role)>,
    user_id: &str,
) -> Option<ExpiryBanner> {
    let page = req.method() == actix_web::http::Method::GET && !HxRequest::of(req).wants_fragment();
    let (team_id, role) = team.filter(|_| page)?;
    let service = state.reminder_service();
    match service.banner(&TeamId::from(team_id), user_id, role).await {
        Ok(banner) => banner.map(|b| ExpiryBanner::of(b, state.clock.now())),
        Err(e) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::new(e)), "reading the expiry banner failed");
            None
        }
    }
}
