//! Cross-cutting middleware: the request log, security headers, and the
//! rendering of errors as a page, an htmx toast or the JSON envelope.
//!
//! Rules: every error response is rendered here, once, with a body (never an
//! empty one); a server error is logged here, once, with its whole cause
//! chain, inside the request's span (so with its request id); the request id
//! is on every response and on the page of a server error.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use tracing::Instrument;

use crate::error::AppError;

/// Names one request in every log line it causes, in the `X-Request-Id`
/// response header and on the error page, so a person can quote it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    fn new() -> Self {
        static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self(
            crate::service::crypto::random_base62(12)
                .unwrap_or_else(|_| format!("seq{}", FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed))),
        )
    }

    pub fn of(req: &HttpRequest) -> Option<String> {
        req.extensions().get::<RequestId>().map(|id| id.0.clone())
    }
}

/// One log line per request: method, route pattern (never the raw path, which
/// can hold a token), status and latency. No query strings, cookies or bodies.
/// Every line logged while the request runs carries its request id.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let id = RequestId::new();
    let span = tracing::info_span!("request", id = %id.0);
    req.extensions_mut().insert(id.clone());
    let log = |route: &str, status: StatusCode| span.in_scope(|| log_line(&method, route, status, started));
    let mut res = match next.call(req).instrument(span.clone()).await {
        Ok(res) => res,
        Err(e) => {
            // Raised before routing ended (see `render_errors`): already rendered.
            log("<unmatched>", e.as_response_error().status_code());
            return Err(e);
        }
    };
    // Finding the route pattern walks the routing table again: only for a line that is logged.
    if tracing::enabled!(target: "latchkey::http", tracing::Level::INFO) {
        log(&res.request().match_pattern().unwrap_or_else(|| "<unmatched>".into()), res.status());
    }
    set_request_id(res.headers_mut(), &id.0);
    Ok(res)
}

fn log_line(method: &actix_web::http::Method, route: &str, status: StatusCode, started: Instant) {
    tracing::info!(
        target: "latchkey::http",
        method = %method,
        route = %route,
        status = status.as_u16(),
        latency_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
}

fn set_request_id(headers: &mut header::HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(header::HeaderName::from_static("x-request-id"), v);
    }
}

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers of [`security_headers`] but HSTS.
const SECURITY_HEADERS: [(header::HeaderName, &str); 7] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    (header::HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Headers on every response; a handler may set its own `Cache-Control`.
pub fn security_headers(https: bool) -> DefaultHeaders {
    let mut headers = SECURITY_HEADERS.into_iter().fold(DefaultHeaders::new(), |h, pair| h.add(pair));
    if https {
        headers = headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"));
    }
    headers
}

/// How the client wants an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wants {
    Json,
    Toast,
    Page,
}

/// What rendering an error needs from its request.
struct Asked {
    wants: Wants,
    /// The path and query of a GET, to come back to after signing in.
    here: Option<String>,
    request_id: Option<String>,
    route: String,
}

impl Asked {
    /// What an error response to `req` needs; `routed`: whether routing has
    /// run, so that the route pattern is known (finding it walks the routing
    /// table: only when an error is rendered).
    fn of(req: &HttpRequest, routed: bool) -> Self {
        let here = req.uri().path_and_query().map(|pq| pq.as_str().to_owned());
        Self {
            wants: wants(req),
            here: here.filter(|_| req.method() == actix_web::http::Method::GET),
            request_id: RequestId::of(req),
            route: if routed { req.match_pattern().unwrap_or_default() } else { String::new() },
        }
    }
}

fn wants(req: &HttpRequest) -> Wants {
    let path = req.path();
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if path.starts_with("/api/")
        || path == "/auth/verify"
        || path == "/oauth/introspect"
        || (accept.contains("application/json") && !accept.contains("text/html"))
    {
        Wants::Json
    } else if super::htmx::HxRequest::of(req).wants_fragment() {
        Wants::Toast
    } else {
        Wants::Page
    }
}

#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    asset_v: &'a str,
    request_id: Option<String>,
}

#[derive(Template)]
#[template(path = "partials/toast_partial.html")]
struct Toast<'a> {
    kind: &'a str,
    message: &'a str,
}

/// Replaces any error response with the rendering the request asked for.
///
/// An `Err` from a layer further in (the session store failing, say) comes
/// back without its request, which cannot be cloned before routing; it is
/// rendered from what was read of the request beforehand, with the request
/// id and the security headers set here, since the outer layers pass an
/// `Err` through untouched. Our own layers answer with
/// `ServiceRequest::error_response` instead of `Err`.
pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Read before the call, since an `Err` comes back without its request.
    let before = Asked::of(req.request(), false);
    let state = req.app_data::<super::State>().cloned();
    let db_down = move || state.as_ref().is_some_and(|s| s.db.is_unreachable());
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => return Err(rendered_without_request(&before, e, db_down())),
    };
    let Some(err) = res.response().error() else { return Ok(res.map_into_boxed_body()) };
    let rendered = render_any(&Asked::of(res.request(), true), err, db_down());
    let (http_req, _) = res.into_parts();
    Ok(ServiceResponse::new(http_req, rendered))
}

/// Renders an `Err` that came back instead of a response.
fn rendered_without_request(asked: &Asked, e: actix_web::Error, db_down: bool) -> actix_web::Error {
    let mut res = render_any(asked, &e, db_down);
    for (name, value) in SECURITY_HEADERS {
        res.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    if let Some(id) = &asked.request_id {
        set_request_id(res.headers_mut(), id);
    }
    actix_web::error::InternalError::from_response(e, res).into()
}

/// `db_down`: the database could not be reached at the last attempt, so a
/// framework 500 (the session middleware failing to load or save) is the
/// database being away: 503.
fn render_any(asked: &Asked, err: &actix_web::Error, db_down: bool) -> HttpResponse {
    match err.as_error::<AppError>() {
        Some(app) => render(asked, app),
        None => render(asked, &generic(err.as_response_error().status_code(), &err.to_string(), db_down)),
    }
}

/// Maps framework errors (bad form bodies, oversized payloads) onto ours.
fn generic(status: StatusCode, cause: &str, db_down: bool) -> AppError {
    match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => AppError::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
        s if s.is_client_error() => AppError::BadRequest("The request could not be understood.".into()),
        _ if db_down => AppError::Internal(crate::store::StoreError::Connection(cause.to_owned()).into()),
        _ => AppError::Internal(anyhow::Error::msg(cause.to_owned())),
    }
}

fn render(asked: &Asked, err: &AppError) -> HttpResponse {
    let status = err.status_code();
    // A full hashing queue is load, not a fault: the request log has its 503.
    if status.is_server_error() && !matches!(err, AppError::Busy { .. }) {
        tracing::error!(error = %err.chain(), route = asked.route, "request failed");
    }
    let wants = asked.wants;
    if matches!(err, AppError::LoginRequired) && wants != Wants::Json {
        return login_redirect(asked);
    }
    if matches!(err, AppError::TotpEnrolmentRequired) && wants != Wants::Json {
        let target = super::auth::enrolment_path(asked.here.as_deref());
        let target = target.as_str();
        if wants == Wants::Toast {
            return HttpResponse::Ok().insert_header(("HX-Redirect", target)).finish();
        }
        return HttpResponse::SeeOther().insert_header((header::LOCATION, target)).finish();
    }
    let message = err.public_message();
    let mut res = match wants {
        Wants::Json => HttpResponse::build(status).json(super::envelope::ErrorEnvelope::of(err, message.clone())),
        Wants::Toast => {
            let body = Toast { kind: "error", message: &message }.render().unwrap_or_else(|e| {
                tracing::error!(error = %e, "rendering the error toast failed");
                message.clone()
            });
            HttpResponse::build(status)
                .insert_header(("HX-Retarget", "#toasts"))
                .insert_header(("HX-Reswap", "beforeend"))
                .content_type("text/html; charset=utf-8")
                .body(body)
        }
        Wants::Page => {
            let title = status.canonical_reason().unwrap_or("Error");
            let request_id = asked.request_id.clone().filter(|_| status.is_server_error());
            let reference = request_id.as_deref().map(|id| format!(" (reference: {id})")).unwrap_or_default();
            let page = ErrorPage {
                status: status.as_u16(),
                title,
                message: &message,
                asset_v: super::assets::version(),
                request_id,
            };
            let body = page.render().unwrap_or_else(|e| {
                tracing::error!(error = %e, "rendering the error page failed");
                format!("{} {title}: {message}{reference}", status.as_u16())
            });
            HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body)
        }
    };
    if let AppError::TooManyRequests { retry_after } | AppError::Busy { retry_after } = err
        && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if err.is_unavailable() {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if let AppError::MethodNotAllowed { allow } = err
        && let Ok(v) = HeaderValue::from_str(allow)
    {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

fn login_redirect(asked: &Asked) -> HttpResponse {
    let here = asked.here.as_deref().unwrap_or("/");
    let target = format!("/login?next={}", super::auth::url_encode(here));
    if asked.wants == Wants::Toast {
        return HttpResponse::Ok().insert_header(("HX-Redirect", target)).finish();
    }
    HttpResponse::SeeOther().insert_header((header::LOCATION, target)).finish()
}
