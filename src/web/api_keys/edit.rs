//! A key's Edit card and its pause: `POST …/{id}/edit` (name, description,
//! allowed IPs, expiry, fewer scopes), and `…/{id}/disable` and
//! `…/{id}/enable`, which ask first (a `GET` on the same URL answers the
//! confirmation: a page without JavaScript, a dialog with htmx).
//!
//! Rules: Post/Redirect/Get; a refusal re-renders the key's page (422) with
//! what was typed and the field errors. The scope boxes list only what the
//! key holds (an edit only takes scopes away; a key holding `admin` also
//! lists the scopes `admin` includes, to narrow it to them). An expiry left as
//! the page showed it is not a change. From the list, htmx swaps the row in
//! place with a toast; from the key's page, the POST comes back to it. Each
//! handler parses, calls one `KeyService` method and renders.

use actix_web::{HttpResponse, web};

use super::{BASE, FromQuery, Notice, RevokeForm, caller, detail_page, key_id, placed, row_action_done};
use crate::domain::KeyStatus;
use crate::error::AppError;
use crate::service::keys::{self, KeyEdit, codec, scopes};
use crate::service::{self as services, FieldErrors};
use crate::store::models::ApiKey;
use crate::web::answer::{again, bad_request, flashed, refusable};
use crate::web::auth::CurrentUser;
use crate::web::confirm::{self, Confirm};
use crate::web::htmx::HxRequest;
use crate::web::page::{Nav, redirect};
use crate::web::{State, format};

/// A scope box of the Edit card.
pub struct ScopeChoice {
    pub value: String,
    /// Plain words: "Read your templates".
    pub description: String,
    pub checked: bool,
}

/// The Edit card's fields.
pub struct EditForm {
    pub name: String,
    pub description: String,
    /// One range per line.
    pub allowed_ips: String,
    /// `YYYY-MM-DD` (UTC), empty for never.
    pub expires_at: String,
    /// The expiry as the page showed it: the same date sent back is no change.
    pub expires_was: String,
    pub scopes: Vec<ScopeChoice>,
    /// The key holds `admin`, which includes every other scope.
    pub holds_admin: bool,
    /// A roll replaced the key: the rotation decides when it stops.
    pub in_grace: bool,
}

impl EditForm {
    /// The card for `key` as it is now.
    pub fn of(key: &ApiKey, catalog: &[String]) -> Self {
        let held = scopes::scopes_of(&key.scopes);
        let holds_admin = held.iter().any(|s| s == scopes::ADMIN);
        let implied =
            catalog.iter().filter(|c| holds_admin && !held.contains(c) && !scopes::PLATFORM.contains(&c.as_str()));
        let mut choices: Vec<ScopeChoice> = held
            .iter()
            .map(|s| ScopeChoice { value: s.clone(), description: scopes::describe(s), checked: true })
            .collect();
        choices.extend(implied.map(|s| ScopeChoice {
            value: s.clone(),
            description: scopes::describe(s),
            checked: false,
        }));
        let expiry = key.expires_at.map(format::date).unwrap_or_default();
        Self {
            name: key.name.clone(),
            description: key.description.clone(),
            allowed_ips: keys::allowed_ips_of(key).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
            expires_at: expiry.clone(),
            expires_was: expiry,
            scopes: choices,
            holds_admin,
            in_grace: key.replaced_by.is_some(),
        }
    }

    /// The card as it was posted (after a refusal).
    fn posted(self, post: &EditPost) -> Self {
        let scopes =
            self.scopes.into_iter().map(|c| ScopeChoice { checked: post.scopes.contains(&c.value), ..c }).collect();
        Self {
            name: post.name.clone(),
            description: post.description.clone(),
            allowed_ips: post.allowed_ips.clone(),
            expires_at: post.expires_at.clone(),
            expires_was: post.expires_was.clone(),
            scopes,
            ..self
        }
    }
}

/// What the Edit card sent.
#[derive(Default)]
struct EditPost {
    name: String,
    description: String,
    allowed_ips: String,
    expires_at: String,
    expires_was: String,
    scopes: Vec<String>,
}

impl EditPost {
    fn parse(pairs: Vec<(String, String)>) -> Self {
        let mut post = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "name" => post.name = v,
                "description" => post.description = v,
                "allowed_ips" => post.allowed_ips = v,
                "expires_at" => post.expires_at = v,
                "expires_was" => post.expires_was = v,
                "scopes" => post.scopes.push(v),
                _ => {}
            }
        }
        post
    }

    /// The edit the card asks for: every field it shows (the boxes ticked are
    /// the scopes to keep); the expiry only when it is not the one shown.
    fn edit(&self) -> Result<KeyEdit, FieldErrors> {
        let (typed, shown) = (self.expires_at.trim(), self.expires_was.trim());
        let expires_at = match typed {
            _ if typed == shown => None,
            "" => Some(None),
            t => Some(Some(
                format::parse_date_end_of_day(t)
                    .or_else(|| format::parse_rfc3339(t))
                    .ok_or_else(|| FieldErrors::single("expires_at", "Use a date like 2027-01-31."))?,
            )),
        };
        Ok(KeyEdit {
            name: Some(self.name.clone()),
            description: Some(self.description.clone()),
            allowed_ips: Some(
                self.allowed_ips.split([',', '\n']).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            ),
            expires_at,
            scopes: Some(self.scopes.clone()),
            disabled: None,
        })
    }
}

/// `POST …/{id}/edit`: the Edit card; Post/Redirect/Get.
pub async fn update(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let caller = caller(&user)?;
    let id = key_id(path.into_inner())?;
    let post = EditPost::parse(body.into_inner());
    let page_url = format!("{BASE}/{}", id.as_str());
    let service = state.key_service();
    let result = match post.edit() {
        Ok(edit) => service.edit(&caller, &id, edit).await,
        // Unreadable: refused after the authorization, as the service would.
        Err(errors) => service.manageable(&caller, &id).await.and(Err(services::Error::Invalid(errors))),
    };
    match refusable(result)? {
        Ok(key) => Ok(flashed(&user.session, &format!("Saved {}.", key.name), &page_url)),
        Err(errors) => {
            let mut view = detail_page(&state, &user, &id, Notice::None).await?;
            view.edit = view.edit.posted(&post);
            view.errors = errors;
            again(&view, hx, &page_url)
        }
    }
}

/// `GET …/{id}/disable`: the confirmation (in place on the list; from the
/// key's page, a normal post that comes back to it).
pub async fn disable_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    query: web::Query<FromQuery>,
) -> Result<HttpResponse, AppError> {
    pause_confirm(&state, &user, hx, path.into_inner(), &query, true).await
}

/// `GET …/{id}/enable`: the confirmation, as for disabling.
pub async fn enable_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    query: web::Query<FromQuery>,
) -> Result<HttpResponse, AppError> {
    pause_confirm(&state, &user, hx, path.into_inner(), &query, false).await
}

async fn pause_confirm(
    state: &State,
    user: &CurrentUser,
    hx: HxRequest,
    raw_id: String,
    query: &FromQuery,
    disable: bool,
) -> Result<HttpResponse, AppError> {
    let caller = caller(user)?;
    let id = key_id(raw_id)?;
    let service = state.key_service();
    let key = service.manageable(&caller, &id).await?;
    let page_url = format!("{BASE}/{}", key.id);
    let status = key.status(service.now());
    let fits = if disable { status.is_usable() } else { status == KeyStatus::Disabled };
    if !fits {
        return Ok(redirect(&page_url));
    }
    let prefix = codec::display(&state.config.api_key_prefix, &key.key_prefix);
    let c = if disable {
        Confirm::new(
            format!("confirm-disable-{}", key.id),
            format!("Disable {}?", key.name),
            format!("{page_url}/disable"),
        )
        .says(format!("Requests using {prefix}… are refused at once, as if the key were revoked."))
        .says("Nothing else changes: enable it again at any time and it works as before.")
        .button("Disable key")
    } else {
        Confirm::new(
            format!("confirm-enable-{}", key.id),
            format!("Enable {}?", key.name),
            format!("{page_url}/enable"),
        )
        .says(format!("Requests using {prefix}… work again at once, with the key's scopes and limits."))
        .button("Enable key")
        .not_dangerous()
    };
    confirm::ask(user, hx, Nav::ApiKeys, &placed(c, query, &key))
}

/// `POST …/{id}/disable`: refused at once until enabled again.
pub async fn disable(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: Option<web::Form<RevokeForm>>,
) -> Result<HttpResponse, AppError> {
    pause(&state, &user, hx, path.into_inner(), form, true).await
}

/// `POST …/{id}/enable`: works again at once.
pub async fn enable(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: Option<web::Form<RevokeForm>>,
) -> Result<HttpResponse, AppError> {
    pause(&state, &user, hx, path.into_inner(), form, false).await
}

async fn pause(
    state: &State,
    user: &CurrentUser,
    hx: HxRequest,
    raw_id: String,
    form: Option<web::Form<RevokeForm>>,
    disable: bool,
) -> Result<HttpResponse, AppError> {
    let caller = caller(user)?;
    let id = key_id(raw_id)?;
    let key = state.key_service().edit(&caller, &id, KeyEdit::pausing(disable)).await.map_err(bad_request)?;
    let (toast, said) = if disable {
        (
            format!("Disabled {}", key.name),
            format!("Disabled {}: requests using it are refused until you enable it.", key.name),
        )
    } else {
        (format!("Enabled {}", key.name), format!("Enabled {}: requests using it work again.", key.name))
    };
    row_action_done((state, user, hx), &caller, &key, (&toast, &said), form).await
}
