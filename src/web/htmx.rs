//! The one htmx idiom: [`HxRequest`] says whether htmx sent the request and
//! whether it wants a fragment; a handler renders the partial for a fragment
//! request and the full page (which includes the same partial) otherwise.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse};

/// How the request was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HxRequest {
    /// A plain browser request: answer with a full page.
    Page,
    /// htmx swapping part of the page: answer with the fragment.
    Fragment,
    /// A boosted link or form (`hx-boost`): htmx, but it wants a full page.
    Boosted,
}

impl HxRequest {
    pub fn of(req: &HttpRequest) -> Self {
        let headers = req.headers();
        match (headers.contains_key("HX-Request"), headers.contains_key("HX-Boosted")) {
            (false, _) => Self::Page,
            (true, false) => Self::Fragment,
            (true, true) => Self::Boosted,
        }
    }

    /// Whether htmx made the request (fragment or boosted).
    pub fn is_htmx(self) -> bool {
        self != Self::Page
    }

    /// Whether to answer with a fragment rather than a full page.
    pub fn wants_fragment(self) -> bool {
        self == Self::Fragment
    }
}

impl FromRequest for HxRequest {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}

/// Adds `HX-Push-Url` to a page re-rendered by a form post that htmx sent,
/// so the address bar shows the page (`url`), not the POST-only URL.
pub fn push_url(mut res: HttpResponse, hx: HxRequest, url: &str) -> HttpResponse {
    if hx.is_htmx()
        && let Ok(v) = actix_web::http::header::HeaderValue::from_str(url)
    {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static("hx-push-url"), v);
    }
    res
}
