//! What every page shares: the layout data and the render helper.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use askama::Template;

use super::auth::{CurrentUser, take_flash};
use super::csrf;
use crate::error::AppError;

/// Layout data for pages behind login (navigation, CSRF token, flash).
pub struct Layout {
    pub csrf: String,
    pub email: String,
    pub team_name: String,
    pub role: String,
    pub is_support: bool,
    pub active: &'static str,
    pub asset_v: &'static str,
    pub flash: Option<String>,
}

impl Layout {
    pub fn new(user: &CurrentUser, active: &'static str) -> Result<Self, AppError> {
        let (team_name, role) = match &user.ctx.team {
            Some((t, r)) => (t.name.clone(), r.as_str().to_owned()),
            None => (String::new(), String::new()),
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
        })
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
