//! Registering and managing a team's OAuth apps (Settings → Developer →
//! OAuth Apps).
//!
//! Rules: viewers register nothing; who may change an app is the policy's
//! ([`policy::manage_app`]), asked with the member's role read again inside
//! the write's transaction (a removal or demotion cannot cross it); names,
//! redirect URIs (1 to 20, each checked), the client type and https URLs are
//! validated, and scopes are those the member could grant; a confidential
//! app's secret is generated here and shown once; a rotation may keep the old
//! secret working up to 7 days; deleting an app revokes every token it holds
//! and the verifier forgets its cached tokens; every change is audited in its
//! transaction.

use serde_json::json;

use super::scopes_of;
use crate::domain::{AuditAction, ClientId, ClientType, PlainSecret, Role, TeamId};
use crate::service::audit::{self, Actor, Event};
use crate::service::clock::Clock;
use crate::service::crypto::{self, Keys};
use crate::service::keys::{codec, scopes};
use crate::service::verify::Verifier;
use crate::service::{Error, FieldErrors, Result, policy, redirect_uri, validate};
use crate::store::models::{OauthClient, OauthToken};
use crate::store::{Db, DbConn};

/// A team's apps, over what the application shares.
pub struct AppService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub verifier: &'a Verifier,
    pub clock: &'a Clock,
    /// Every scope the product knows.
    pub catalog: &'a [String],
}

/// A signed-in member acting on their team's apps.
pub struct Member<'a> {
    pub actor: &'a Actor,
    pub team_id: TeamId,
    pub role: Role,
}

impl Member<'_> {
    pub(super) fn caller(&self) -> policy::Caller<'_> {
        policy::Caller { user_id: self.actor.user_id.as_deref(), role: self.role, ceiling: None }
    }
}

/// What a developer submits to register or edit an app.
#[derive(Debug, Clone, Default)]
pub struct AppInput {
    pub name: String,
    pub redirect_uris: String,
    /// `None` when the form named no known type.
    pub client_type: Option<ClientType>,
    pub scopes: Vec<String>,
    pub logo_url: String,
    pub homepage: String,
}

/// The team's apps, and whether the member may register one.
pub struct AppList {
    pub apps: Vec<OauthClient>,
    pub can_register: bool,
}

/// An app, and whether the member may change it.
pub struct ManagedApp {
    pub app: OauthClient,
    pub can_manage: bool,
}

/// The answer to a submitted app form.
pub enum Submitted {
    /// Saved; a newly registered confidential app shows its secret once.
    Saved { app: OauthClient, secret: Option<PlainSecret> },
    /// Some fields are not valid: the form again, beside the app as it is
    /// (none on registration).
    Invalid { errors: FieldErrors, app: Option<OauthClient> },
}

/// What an app's page tells about it beyond its settings.
#[derive(Debug, Clone, Default)]
pub struct AppFacts {
    /// The team that owns the app.
    pub team_name: String,
    /// Who registered it (`None`: an account since deleted, or a transfer).
    pub registered_by: Option<String>,
    /// When the current secret was made (`None` for a public app). Derived:
    /// the latest rotation in the audit trail, else the registration.
    pub secret_made_at: Option<i64>,
    /// Until when the previous secret keeps working, while it still does.
    pub previous_secret_until: Option<i64>,
    /// The secret was disabled (a member who knew it left): rotate to get one.
    pub secret_disabled: bool,
}

/// A new secret (shown once) and the app it belongs to.
pub struct Rotated {
    pub app: OauthClient,
    pub secret: PlainSecret,
}

impl AppService<'_> {
    /// The scopes `role` may give an app, from the catalog.
    pub fn grantable(&self, role: Role) -> Vec<String> {
        scopes::grantable(self.catalog, role).into_iter().map(str::to_owned).collect()
    }

    pub async fn list(&self, member: &Member<'_>) -> Result<AppList> {
        let tid = member.team_id.clone();
        let apps = self.db.run(move |conn| apps(conn, tid.as_str())).await?;
        Ok(AppList { apps, can_register: policy::register_app(member.role).is_ok() })
    }

    /// Whether the member may open the registration form.
    pub fn may_register(&self, member: &Member<'_>) -> Result<()> {
        policy::register_app(member.role)
    }

    pub async fn show(&self, member: &Member<'_>, id: ClientId) -> Result<ManagedApp> {
        let tid = member.team_id.clone();
        let app = self.db.run(move |conn| app(conn, &tid, &id)).await?;
        let can_manage =
            policy::manage_app(&member.caller(), app.created_by.as_deref(), &scopes_of(&app.allowed_scopes));
        Ok(ManagedApp { can_manage: can_manage.is_ok(), app })
    }

    /// The facts of an app the member may see (loaded with [`Self::show`]).
    pub async fn facts(&self, app: &OauthClient) -> Result<AppFacts> {
        let (app, at) = (app.clone(), self.clock.now());
        self.db.run(move |conn| facts(conn, &app, at)).await
    }

    /// An app the member may manage (rotate, delete), by the same policy as
    /// the change itself: for the confirmation that asks first.
    pub async fn manageable(&self, member: &Member<'_>, id: ClientId) -> Result<OauthClient> {
        let shown = self.show(member, id).await?;
        policy::manage_app(&member.caller(), shown.app.created_by.as_deref(), &scopes_of(&shown.app.allowed_scopes))?;
        Ok(shown.app)
    }

    /// Registers an app; a confidential one gets its secret (shown once).
    pub async fn register(&self, member: &Member<'_>, input: AppInput) -> Result<Submitted> {
        policy::register_app(member.role)?;
        let valid = match validate_app(&input, self.catalog, member.role) {
            Ok(valid) => valid,
            Err(errors) => return Ok(Submitted::Invalid { errors, app: None }),
        };
        let (keys, m, at) = (self.keys.clone(), member.acting(), self.clock.now());
        let (app, secret) = new_app(&keys, &m, &input, valid, at)?;
        self.db.run(move |conn| crate::store::transaction(conn, |conn| insert_app(conn, &m, app, secret))).await
    }

    /// Saves an app's settings (its type never changes).
    pub async fn update(&self, member: &Member<'_>, id: ClientId, input: AppInput) -> Result<Submitted> {
        let (m, catalog) = (member.acting(), self.catalog.to_vec());
        self.db
            .run(move |conn| {
                match crate::store::transaction(conn, |conn| save_settings(conn, &m, (&id, input), &catalog)) {
                    Ok(app) => Ok(Submitted::Saved { app, secret: None }),
                    Err(Error::Invalid(errors)) => {
                        Ok(Submitted::Invalid { errors, app: Some(app(conn, &m.team_id, &id)?) })
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Replaces a confidential app's secret; the old one keeps working for
    /// `grace` seconds (0 to 7 days).
    pub async fn rotate(&self, member: &Member<'_>, id: ClientId, grace: i64) -> Result<Rotated> {
        if !(0..=7 * 86_400).contains(&grace) {
            return Err(Error::Invalid(FieldErrors::single("grace", "Choose a grace period between 0 and 7 days.")));
        }
        let (keys, m, at) = (self.keys.clone(), member.acting(), self.clock.now());
        self.db
            .run(move |conn| {
                let secret = crate::store::transaction(conn, |conn| rotate_secret(conn, (&keys, &m), &id, grace, at))?;
                Ok(Rotated { app: app(conn, &m.team_id, &id)?, secret })
            })
            .await
    }

    /// Deletes an app and revokes every token it holds.
    pub async fn delete(&self, member: &Member<'_>, id: ClientId) -> Result<()> {
        let (m, at) = (member.acting(), self.clock.now());
        self.db.run(move |conn| crate::store::transaction(conn, |conn| delete_app(conn, &m, &id, at))).await?;
        self.verifier.invalidate_all();
        Ok(())
    }
}

/// A [`Member`] owned, for the blocking call.
pub(super) struct Acting {
    pub(super) actor: Actor,
    pub(super) team_id: TeamId,
    role: Role,
}

impl Member<'_> {
    pub(super) fn acting(&self) -> Acting {
        Acting { actor: self.actor.clone(), team_id: self.team_id.clone(), role: self.role }
    }
}

fn insert_app(conn: &mut DbConn, m: &Acting, app: OauthClient, secret: Option<PlainSecret>) -> Result<Submitted> {
    app.insert(conn)?;
    let e = Event::new(AuditAction::OauthAppRegistered).team(m.team_id.as_str()).object("oauth_app", &app.id);
    audit::record(conn, &m.actor, e.details(json!({"name": app.name, "type": app.client_type})))?;
    Ok(Submitted::Saved { app, secret })
}

fn save_settings(
    conn: &mut DbConn,
    m: &Acting,
    (id, input): (&ClientId, AppInput),
    catalog: &[String],
) -> Result<OauthClient> {
    let mut c = managed_app(conn, m, id)?;
    let input = AppInput { client_type: Some(c.client_type), ..input };
    let (uris, granted) = validate_app(&input, catalog, m.role).map_err(Error::Invalid)?;
    c.name = input.name.trim().to_owned();
    c.redirect_uris = uris.join("\n");
    c.allowed_scopes = granted.join(" ");
    c.logo_url = input.logo_url.trim().to_owned();
    c.homepage = input.homepage.trim().to_owned();
    OauthClient::update_settings(conn, &c)?;
    let e = Event::new(AuditAction::OauthAppUpdated).team(m.team_id.as_str()).object("oauth_app", &c.id);
    audit::record(conn, &m.actor, e)?;
    Ok(c)
}

fn rotate_secret(
    conn: &mut DbConn,
    (keys, m): (&Keys, &Acting),
    id: &ClientId,
    grace: i64,
    at: i64,
) -> Result<PlainSecret> {
    let c = managed_app(conn, m, id)?;
    let Some(current) = c.secret_hash.as_deref() else {
        return Err(Error::Invalid(FieldErrors::single("grace", "Public apps have no secret.")));
    };
    let secret = generate_secret()?;
    let old = (grace > 0).then_some(current);
    OauthClient::rotate_secret(conn, id.as_str(), &keys.token_hash(secret.expose()), old, at + grace)?;
    let e = Event::new(AuditAction::OauthSecretRotated)
        .team(m.team_id.as_str())
        .object("oauth_app", id.as_str())
        .details(json!({"grace_seconds": grace}));
    audit::record(conn, &m.actor, e)?;
    Ok(secret)
}

fn delete_app(conn: &mut DbConn, m: &Acting, id: &ClientId, at: i64) -> Result<()> {
    let c = managed_app(conn, m, id)?;
    let revoked = OauthToken::revoke_for(conn, &c.id, None, at)?;
    OauthClient::delete(conn, &c.id)?;
    let e = Event::new(AuditAction::OauthAppDeleted)
        .team(m.team_id.as_str())
        .object("oauth_app", id.as_str())
        .details(json!({"name": c.name, "tokens_revoked": revoked}));
    audit::record(conn, &m.actor, e)
}

fn facts(conn: &mut DbConn, app: &OauthClient, at: i64) -> Result<AppFacts> {
    let team_name = crate::store::models::Team::find(conn, &app.team_id)?.map(|t| t.name).unwrap_or_default();
    let registered_by = match app.created_by.as_deref() {
        Some(u) => crate::store::models::User::find(conn, u)?.map(|u| u.email),
        None => None,
    };
    let secret_made_at = match app.secret_hash {
        Some(_) => Some(OauthClient::secret_rotated_at(conn, &app.id)?.unwrap_or(app.created_at)),
        None => None,
    };
    let previous_secret_until = app.old_secret_expires_at.filter(|until| app.old_secret_hash.is_some() && *until > at);
    let secret_disabled = app.secret_hash.as_deref().is_some_and(|h| h.starts_with("disabled:"));
    Ok(AppFacts { team_name, registered_by, secret_made_at, previous_secret_until, secret_disabled })
}

/// The team's apps, newest first.
pub fn apps(conn: &mut DbConn, team_id: &str) -> Result<Vec<OauthClient>> {
    Ok(OauthClient::for_team(conn, team_id)?)
}

/// An app of the team.
pub(super) fn app(conn: &mut DbConn, team_id: &TeamId, id: &ClientId) -> Result<OauthClient> {
    OauthClient::find(conn, id.as_str())?.filter(|c| c.team_id == team_id.as_str()).ok_or(Error::NotFound)
}

/// An app of the team that the member may manage, per the policy.
pub(super) fn managed_app(conn: &mut DbConn, m: &Acting, id: &ClientId) -> Result<OauthClient> {
    let c = app(conn, &m.team_id, id)?;
    // The role the request started with may be stale: read it again, held
    // until this transaction ends, so a removal or demotion cannot cross it.
    let role = match m.actor.user_id.as_deref() {
        Some(u) => crate::service::accounts::locked_role(conn, m.team_id.as_str(), Some(u))?
            .ok_or(Error::NotFound)?
            .min(m.role),
        None => m.role,
    };
    let caller = policy::Caller { user_id: m.actor.user_id.as_deref(), role, ceiling: None };
    policy::manage_app(&caller, c.created_by.as_deref(), &scopes_of(&c.allowed_scopes))?;
    Ok(c)
}

fn generate_secret() -> Result<PlainSecret> {
    let secret = codec::generate("lkcs").map_err(|e| Error::internal(e, "generating a client secret"))?;
    Ok(PlainSecret::new(secret))
}

/// A new app from a valid form, with its secret if it is confidential.
fn new_app(
    keys: &Keys,
    m: &Acting,
    input: &AppInput,
    (uris, granted): (Vec<String>, Vec<String>),
    at: i64,
) -> Result<(OauthClient, Option<PlainSecret>)> {
    let client_type = input.client_type.unwrap_or(ClientType::Public);
    let secret = match client_type {
        ClientType::Confidential => Some(generate_secret()?),
        ClientType::Public => None,
    };
    let random = crypto::random_base62(24).map_err(|e| Error::internal(e, "generating a client id"))?;
    let app = OauthClient {
        id: format!("lkc_{random}"),
        team_id: m.team_id.as_str().to_owned(),
        created_by: m.actor.user_id.clone(),
        name: input.name.trim().to_owned(),
        client_type,
        redirect_uris: uris.join("\n"),
        allowed_scopes: granted.join(" "),
        logo_url: input.logo_url.trim().to_owned(),
        homepage: input.homepage.trim().to_owned(),
        secret_hash: secret.as_ref().map(|s| keys.token_hash(s.expose())),
        old_secret_hash: None,
        old_secret_expires_at: None,
        created_at: at,
        old_secret_extended_at: None,
    };
    Ok((app, secret))
}

/// The redirect URIs (one per line) and the granted scopes of a valid form.
fn validate_app(input: &AppInput, catalog: &[String], role: Role) -> Result<(Vec<String>, Vec<String>), FieldErrors> {
    let mut errors = FieldErrors::default();
    if let Err(m) = validate::name(&input.name, 100) {
        errors.add("name", m);
    }
    let uris: Vec<String> =
        input.redirect_uris.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if uris.is_empty() || uris.len() > 20 {
        errors.add("redirect_uris", "Give between 1 and 20 redirect URIs, one per line.");
    }
    for u in &uris {
        if let Err(m) = redirect_uri::check(u) {
            errors.add("redirect_uris", format!("{u:?}: {m}"));
        }
    }
    if input.client_type.is_none() {
        errors.add("client_type", "Choose confidential or public.");
    }
    let granted =
        scopes::check(&input.scopes, catalog, role, None).map_err(|m| errors.add("scopes", m)).unwrap_or_default();
    for (field, value) in [("logo_url", &input.logo_url), ("homepage", &input.homepage)] {
        if let Err(m) = validate::https_url(value) {
            errors.add(field, m);
        }
    }
    if errors.is_empty() { Ok((uris, granted)) } else { Err(errors) }
}
