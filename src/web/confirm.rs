//! Destructive actions ask first. A button is a link to the action's
//! confirmation page (`GET` on the action's own URL): without JavaScript the
//! browser follows it to a full page; with htmx the same handler answers the
//! fragment, a `<dialog>` that `app.js` opens as a modal. Either way the real
//! `POST` form names what will happen before anything changes. After the
//! action, [`with_toast`] reports it through the `aria-live` region.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use askama::Template;

use super::auth::CurrentUser;
use super::htmx::HxRequest;
use super::page::{Layout, Nav, render};
use crate::error::AppError;

/// An extra input the confirmation asks for (a grace period, a reason …).
#[derive(Debug, Clone)]
pub enum Field {
    /// A `<select>`; `options` are (value, text); `selected` names a value.
    Select { name: String, label: String, options: Vec<(String, String)>, selected: String },
    /// A required `<textarea>`.
    Text { name: String, label: String, placeholder: String, max: usize },
    /// A hidden value carried through.
    Hidden { name: String, value: String },
}

/// What a confirmation says and where its form goes.
#[derive(Debug, Clone)]
pub struct Confirm {
    /// Unique on the page: the dialog's id (`confirm-…`).
    pub id: String,
    /// "Revoke Billing worker?"
    pub title: String,
    /// What will happen, one sentence each ("Requests using it fail at once.").
    pub consequences: Vec<String>,
    /// The `POST` URL of the action.
    pub action: String,
    /// The confirm button's text ("Revoke key").
    pub confirm_label: String,
    /// Red confirm button.
    pub danger: bool,
    /// Where "Cancel" goes on the full page.
    pub cancel: String,
    pub fields: Vec<Field>,
    /// For an in-place change: the CSS selector htmx swaps with the answer
    /// (`#key-7`), and focus returns to. `None`: a normal (boosted) form post.
    pub target: Option<String>,
}

impl Confirm {
    pub fn new(id: impl Into<String>, title: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            consequences: Vec::new(),
            action: action.into(),
            confirm_label: "Confirm".into(),
            danger: true,
            cancel: "/".into(),
            fields: Vec::new(),
            target: None,
        }
    }

    pub fn says(mut self, sentence: impl Into<String>) -> Self {
        self.consequences.push(sentence.into());
        self
    }

    pub fn button(mut self, label: impl Into<String>) -> Self {
        self.confirm_label = label.into();
        self
    }

    pub fn cancel_to(mut self, href: impl Into<String>) -> Self {
        self.cancel = href.into();
        self
    }

    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    pub fn in_place(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn not_dangerous(mut self) -> Self {
        self.danger = false;
        self
    }
}

/// The grace choices of a roll or a secret rotation, as a field.
pub fn grace_field(label: &str) -> Field {
    Field::Select {
        name: "grace".into(),
        label: label.into(),
        options: [("0", "no time: stop it now"), ("3600", "1 hour"), ("86400", "24 hours"), ("604800", "7 days")]
            .iter()
            .map(|(v, t)| ((*v).to_owned(), (*t).to_owned()))
            .collect(),
        selected: "86400".into(),
    }
}

#[derive(Template)]
#[template(path = "partials/confirm_partial.html")]
struct ConfirmPartial<'a> {
    c: &'a Confirm,
    csrf: &'a str,
    as_dialog: bool,
}

#[derive(Template)]
#[template(path = "pages/confirm.html")]
struct ConfirmPage<'a> {
    layout: Layout,
    c: &'a Confirm,
    csrf: String,
    as_dialog: bool,
}

/// Answers a confirmation: the `<dialog>` fragment to htmx, the full page otherwise.
pub fn respond(hx: HxRequest, layout: Layout, confirm: &Confirm) -> Result<HttpResponse, AppError> {
    let csrf = layout.csrf.clone();
    if hx.wants_fragment() {
        return render(StatusCode::OK, &ConfirmPartial { c: confirm, csrf: &csrf, as_dialog: true });
    }
    render(StatusCode::OK, &ConfirmPage { layout, c: confirm, csrf, as_dialog: false })
}

/// Answers a confirmation on a page of the `nav` area, for the signed-in `user`.
pub fn ask(user: &CurrentUser, hx: HxRequest, nav: Nav, confirm: &Confirm) -> Result<HttpResponse, AppError> {
    respond(hx, Layout::new(user, nav)?, confirm)
}

#[derive(Template)]
#[template(path = "partials/toast_oob_partial.html")]
struct ToastOob<'a> {
    message: &'a str,
}

/// Adds a toast to an htmx fragment answer (an out-of-band swap into the
/// page's `aria-live` region), so an in-place change is announced.
pub fn with_toast(fragment: &str, message: &str) -> Result<String, AppError> {
    let toast = ToastOob { message }.render()?;
    Ok(format!("{fragment}{toast}"))
}

/// Renders an htmx fragment followed by a toast, uncacheable.
pub fn fragment_with_toast<T: Template>(fragment: &T, message: &str) -> Result<HttpResponse, AppError> {
    let body = with_toast(&fragment.render()?, message)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(body))
}
