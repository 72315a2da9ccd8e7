//! HTTP: handlers parse the request, call a service, and render. No SQL and no
//! crypto here beyond calling the service layer.

pub mod answer;
pub mod api_auth;
pub mod api_docs;
pub mod api_keys;
pub mod api_keys_api;
pub mod api_routes;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod confirm;
pub mod csrf;
pub mod device;
pub mod email;
pub mod envelope;
pub mod format;
pub mod health;
pub mod htmx;
pub mod introspect;
pub mod invite;
pub mod leaks_api;
pub mod login;
pub mod login_totp;
pub mod metrics;
pub mod middleware;
pub mod oauth;
pub mod oauth_apps;
pub mod openapi;
pub mod page;
pub mod reminders;
pub mod resubmit;
pub mod rotation;
pub mod security;
pub mod session;
pub mod session_store;
pub mod setup;
pub mod support;
pub mod team;
pub mod webhooks;

use std::sync::{Arc, Mutex};

use actix_web::web;

use crate::config::Config;
use crate::service::attempts::{Policy, Throttle};
use crate::service::audit_gate::AuditGate;
use crate::service::clock::Clock;
use crate::service::cluster::Redis;
use crate::service::crypto::Keys;
use crate::service::hashing::Hashing;
use crate::service::metrics::Metrics;
use crate::service::notify::Notifier;
use crate::service::ratelimit::Limits;
use crate::service::verify::Verifier;
use crate::store::Db;

/// Shared by every worker.
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub keys: Keys,
    /// The first-run token, while no user exists.
    pub setup_token: Mutex<Option<String>>,
    /// Failed sign-ins per account (and TOTP codes, password re-checks per user).
    pub login_by_account: Throttle,
    pub login_by_ip: Throttle,
    /// Failed `/oauth/token` requests per client and address, and per address.
    pub token_by_client: Throttle,
    pub token_by_ip: Throttle,
    /// Tokens issued per OAuth client.
    pub issuance: Limits,
    /// What several instances share (Redis), or nothing.
    pub redis: Arc<Redis>,
    /// Events an unauthenticated caller can cause, summarised.
    pub audit_gate: Arc<AuditGate>,
    pub verifier: Arc<Verifier>,
    /// The time every service sees (tests move it).
    pub clock: Clock,
    /// The bounded password hashing threads.
    pub hashing: Hashing,
    /// How people are told what happened (email: SMTP or logged only; set
    /// at start from the configuration, `service::email::outbox`).
    pub notifier: Notifier,
    /// Where this instance hands its usage on (Redis, or the database).
    pub usage_relay: Arc<crate::service::usage::Relay>,
    /// One usage flush at a time on this instance (a batch being written is
    /// in neither the buffer nor the database until it commits).
    pub usage_flush: Arc<tokio::sync::Mutex<()>>,
    /// This instance's Prometheus metrics (no-ops without `metrics_bind`).
    pub metrics: Metrics,
    /// Sends this instance's share of the queued webhook deliveries.
    pub webhooks: Arc<crate::service::webhooks::Dispatcher>,
}

impl AppState {
    /// Writes this instance's buffered usage, and moves what every instance
    /// handed to Redis, now: what a decision about recent use (ending a
    /// rotation's grace) must see. A failure is logged; the decision then
    /// also counts what is still buffered here.
    pub async fn write_usage_now(&self) {
        // After any flush in progress has committed.
        let _one_at_a_time = self.usage_flush.lock().await;
        let written = async {
            self.verifier.flush(&self.db, &self.usage_relay).await?;
            self.usage_relay.move_to_db(&self.db, crate::service::usage::When::Now).await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::new(e)), "writing usage before a decision failed");
        }
    }

    /// The state of one instance; `redis` is shared with the others (or off).
    pub fn new(config: Config, db: Db, setup_token: Option<String>, redis: Arc<Redis>) -> std::io::Result<Self> {
        let keys = Keys::derive(config.secret_bytes());
        let audit_gate = Arc::new(AuditGate::default());
        let plans = Limits::new("plan", redis.clone());
        let clock = Clock::system();
        let metrics = Metrics::new(config.metrics_bind.is_some(), clock.clone());
        let verifier = Arc::new(
            Verifier::new(
                &config.api_key_prefix,
                &config.default_plan,
                audit_gate.clone(),
                plans,
                keys.cache_index_key(),
            )
            .with_metrics(metrics.clone()),
        );
        let name_secret = keys.derived_base62("redis throttle names", 43);
        let throttle = |name, max_failures, minutes: i64| {
            Throttle::shared(name, Policy { max_failures, window_secs: minutes * 60 }, redis.clone())
                .with_name_secret(name_secret.clone())
        };
        let queue_wait = std::time::Duration::from_millis(config.password_wait_ms);
        let hashing = Hashing::start(config.password_threads, queue_wait)?;
        let every = std::time::Duration::from_secs(config.usage_flush_seconds.unsigned_abs());
        let usage_relay = Arc::new(crate::service::usage::Relay::new(redis.clone(), every));
        let webhooks = crate::service::webhooks::Dispatcher::new(
            db.clone(),
            keys.clone(),
            clock.clone(),
            config.webhook_allow_private,
            &config.api_key_prefix,
        )
        .map_err(std::io::Error::other)?;
        Ok(Self {
            webhooks: Arc::new(webhooks),
            usage_relay,
            usage_flush: Arc::default(),
            notifier: Notifier::logged_only(),
            hashing,
            clock,
            metrics,
            verifier,
            audit_gate,
            token_by_client: throttle("token_client", 10, 5),
            token_by_ip: throttle("token_ip", 50, 15),
            issuance: Limits::new("issuance", redis.clone()),
            login_by_account: throttle("login_account", 5, 15),
            login_by_ip: throttle("login_ip", 30, 15),
            redis,
            config,
            db,
            keys,
            setup_token: Mutex::new(setup_token),
        })
    }
}

pub type State = web::Data<AppState>;

/// The routes, matched in order: the verification paths that every call of
/// the operator's API may go through come first, so their routing costs
/// least.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/verify", web::get().to(introspect::forward_auth))
        .route("/oauth/introspect", web::post().to(introspect::introspect))
        .service(api_routes::scope())
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/docs/api", web::get().to(api_docs::page))
        .route("/static/{path:.*}", web::get().to(assets::serve))
        .route("/", web::get().to(team::home))
        .service(web::resource("/setup").get(setup::form).post(setup::submit))
        .service(web::resource("/login").get(login::form).post(login::submit))
        .service(web::resource("/logout").get(login::logout_reload).post(login::logout))
        .service(web::resource("/login/totp").get(login_totp::form).post(login_totp::submit))
        .route("/settings/security", web::get().to(security::show))
        .service(web::resource("/settings/security/totp/start").get(security::to_page).post(security::totp_start))
        .service(
            web::resource("/settings/security/totp/confirm")
                .get(security::codes_shown_once)
                .post(security::totp_confirm),
        )
        .service(web::resource("/settings/security/totp/disable").get(security::to_page).post(security::totp_disable))
        .service(
            web::resource("/settings/security/recovery-codes")
                .get(security::codes_shown_once)
                .post(security::recovery_regenerate),
        )
        .service(web::resource("/settings/security/password").get(security::to_page).post(security::change_password))
        .service(
            web::resource("/settings/security/sessions/revoke-others")
                .get(security::confirm_revoke_others)
                .post(security::revoke_others),
        )
        .service(
            web::resource("/settings/security/sessions/{id}/revoke")
                .get(security::confirm_revoke_session)
                .post(security::revoke_session),
        )
        .service(web::resource("/settings/security/team-policy").get(security::to_page).post(security::team_policy))
        .service(web::resource("/settings/security/email").get(security::to_page).post(email::preference))
        .service(web::resource("/email/unsubscribe").get(email::ask).post(email::unsubscribe))
        .route("/settings/team", web::get().to(team::show))
        .route("/settings/team/audit", web::get().to(audit::team_log))
        .route("/support", web::get().to(support::search))
        .route("/support/keys/{id}", web::get().to(support::key))
        .service(web::resource("/support/search").get(support::search_reload).post(support::search_post))
        .service(web::resource("/support/keys/{id}/revoke").get(support::confirm_revoke).post(support::revoke))
        .route("/support/teams/{id}", web::get().to(support::team))
        .route("/support/teams/{id}/audit", web::get().to(support::team_audit))
        .route("/support/users/{id}", web::get().to(support::user))
        .service(web::resource("/settings/team/invites").get(team::invite_shown_once).post(team::invite))
        .service(
            web::resource("/settings/team/invites/{id}/revoke")
                .get(team::confirm_revoke_invite)
                .post(team::revoke_invite),
        )
        .service(web::resource("/settings/team/members/{user_id}/role").get(team::to_page).post(team::change_role))
        .service(
            web::resource("/settings/team/members/{user_id}/remove")
                .get(team::confirm_remove)
                .post(team::remove_member),
        )
        .service(web::resource("/invite/{token}").get(invite::form).post(invite::accept))
        .service(web::resource("/settings/developer/api-keys").get(api_keys::index).post(api_keys::create))
        .route("/settings/developer/api-keys/policy", web::post().to(api_keys::policy))
        .route("/settings/developer/api-keys/policy", web::get().to(api_keys::to_list))
        .route("/settings/developer/api-keys/{id}", web::get().to(api_keys::detail))
        .route("/settings/developer/api-keys/{id}/created", web::get().to(api_keys::created))
        .route("/settings/developer/api-keys/{id}/usage.csv", web::get().to(api_keys::usage::download))
        .route("/settings/developer/api-keys/{id}/roll", web::get().to(api_keys::roll_confirm))
        .route("/settings/developer/api-keys/{id}/roll", web::post().to(api_keys::roll))
        .route("/settings/developer/api-keys/{id}/roll-used", web::get().to(api_keys::roll_used_confirm))
        .route("/settings/developer/api-keys/{id}/roll-used", web::post().to(api_keys::roll_used))
        .route("/settings/developer/api-keys/{id}/revoke", web::get().to(api_keys::revoke_confirm))
        .route("/settings/developer/api-keys/{id}/revoke", web::post().to(api_keys::revoke))
        .route("/settings/developer/api-keys/{id}/rename", web::get().to(api_keys::to_detail))
        .route("/settings/developer/api-keys/{id}/rename", web::post().to(api_keys::rename))
        .route("/settings/developer/api-keys/{id}/edit", web::get().to(api_keys::to_detail))
        .route("/settings/developer/api-keys/{id}/edit", web::post().to(api_keys::update))
        .service(
            web::resource("/settings/developer/api-keys/{id}/disable")
                .get(api_keys::disable_confirm)
                .post(api_keys::disable),
        )
        .service(
            web::resource("/settings/developer/api-keys/{id}/enable")
                .get(api_keys::enable_confirm)
                .post(api_keys::enable),
        )
        .service(
            web::resource("/settings/developer/api-keys/{id}/finish")
                .get(api_keys::finish_confirm)
                .post(api_keys::finish),
        )
        .service(
            web::resource("/settings/developer/api-keys/{id}/extend")
                .get(api_keys::extend_confirm)
                .post(api_keys::extend),
        )
        .service(web::resource("/oauth/authorize").get(oauth::authorize).post(oauth::decide))
        .route("/oauth/token", web::post().to(oauth::token))
        .route("/oauth/revoke", web::post().to(oauth::revoke))
        .route("/.well-known/oauth-authorization-server", web::get().to(oauth::metadata))
        .service(web::resource("/settings/developer/oauth-apps").get(oauth_apps::index).post(oauth_apps::create))
        .route("/settings/developer/oauth-apps/new", web::get().to(oauth_apps::new_form))
        .service(web::resource("/settings/developer/oauth-apps/{id}").get(oauth_apps::show).post(oauth_apps::update))
        .service(
            web::resource("/settings/developer/oauth-apps/{id}/rotate")
                .get(oauth_apps::confirm_rotate)
                .post(oauth_apps::rotate),
        )
        .service(
            web::resource("/settings/developer/oauth-apps/{id}/finish-rotation")
                .get(oauth_apps::confirm_finish_rotation)
                .post(oauth_apps::finish_rotation),
        )
        .service(
            web::resource("/settings/developer/oauth-apps/{id}/extend-rotation")
                .get(oauth_apps::confirm_extend_rotation)
                .post(oauth_apps::extend_rotation),
        )
        .service(
            web::resource("/settings/developer/oauth-apps/{id}/delete")
                .get(oauth_apps::confirm_delete)
                .post(oauth_apps::delete),
        )
        .service(web::resource("/settings/developer/webhooks").get(webhooks::index).post(webhooks::create))
        .service(web::resource("/settings/developer/webhooks/{id}").get(webhooks::show).post(webhooks::update))
        .route("/settings/developer/webhooks/{id}/deliveries", web::get().to(webhooks::deliveries))
        .service(
            web::resource("/settings/developer/webhooks/{id}/rotate")
                .get(webhooks::confirm_rotate)
                .post(webhooks::rotate),
        )
        .service(
            web::resource("/settings/developer/webhooks/{id}/disable")
                .get(webhooks::confirm_disable)
                .post(webhooks::disable),
        )
        .service(
            web::resource("/settings/developer/webhooks/{id}/enable").get(webhooks::to_endpoint).post(webhooks::enable),
        )
        .service(
            web::resource("/settings/developer/webhooks/{id}/delete")
                .get(webhooks::confirm_delete)
                .post(webhooks::delete),
        )
        .route("/settings/developer/webhooks/{id}/deliveries/{delivery}/resend", web::post().to(webhooks::resend))
        .service(
            web::resource("/settings/security/apps/{client_id}/revoke")
                .get(security::confirm_revoke_app)
                .post(security::revoke_app),
        );
}
