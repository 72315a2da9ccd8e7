//! What every page shares: the layout data and the render helper.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use askama::Template;

use super::auth::{CurrentUser, take_flash};
use super::csrf;
use crate::domain::Role;
use crate::error::AppError;

/// The navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Team,
    Audit,
    Security,
    ApiKeys,
    OauthApps,
    Webhooks,
    Support,
}

/// Layout data for pages behind login (navigation, CSRF token, flash).
pub struct Layout {
    pub csrf: String,
    pub email: String,
    pub team_name: String,
    pub role: Option<Role>,
    pub is_support: bool,
    pub active: Nav,
    pub asset_v: &'static str,
    pub flash: Option<String>,
    /// Keys about to expire (see `web::reminders`).
    pub expiring: Option<super::reminders::ExpiryBanner>,
}

impl Layout {
    pub fn new(user: &CurrentUser, active: Nav) -> Result<Self, AppError> {
        let (team_name, role) = match &user.ctx.team {
            Some((t, r)) => (t.name.clone(), Some(*r)),
            None => (String::new(), None),
        };
        Ok(Self {
            csrf: csrf::token(&user.session)?,
            email: user.ctx.user.email.clone(),
            team_name,
            role,
            is_support: user.ctx.user.is_support,
            active,
            asset_v: super::assets::version(),
            flash: take_flash(&user.session),
            expiring: user.expiring.clone(),
        })
    }
}

impl Layout {
    /// The navigation's audit-log entry: team admins and owners.
    pub fn shows_audit_log(&self) -> bool {
        self.role.is_some_and(crate::service::policy::may_read_audit)
    }

    /// The navigation's webhooks entry: team admins and owners.
    pub fn shows_webhooks(&self) -> bool {
        self.role.is_some_and(|r| crate::service::policy::may_manage_webhooks(r).is_ok())
    }

    /// The `aria-current`/`active` marker for an entry.
    pub fn is(&self, nav: Nav) -> bool {
        self.active == nav
    }
}

/// Renders a template as an uncacheable HTML response.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Result<HttpResponse, AppError> {
    let body = page.render()?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body))
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, to.to_owned())).finish()
}

/// After signing in: a full page load, even when htmx submitted the form, so
/// the next page (an OAuth consent screen, say) brings its own headers.
pub fn redirect_full(req: &actix_web::HttpRequest, to: &str) -> HttpResponse {
    if super::htmx::HxRequest::of(req).is_htmx() {
        return HttpResponse::Ok().insert_header(("HX-Redirect", to.to_owned())).finish();
    }
    redirect(to)
}

/// A form choosing how long an old credential keeps working (seconds).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct GraceForm {
    pub grace: i64,
}
