//! HTTP: handlers parse the request, call a service, and render. No SQL and no
//! crypto here beyond calling the service layer.

pub mod assets;
pub mod auth;
pub mod csrf;
pub mod format;
pub mod health;
pub mod invite;
pub mod login;
pub mod middleware;
pub mod page;
pub mod session_store;
pub mod setup;
pub mod team;

use std::sync::Mutex;

use actix_web::web;

use crate::config::Config;
use crate::service::crypto::Keys;
use crate::service::throttle::{Policy, Throttle};
use crate::store::Db;

/// Shared by every worker.
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub keys: Keys,
    /// The first-run token, while no user exists.
    pub setup_token: Mutex<Option<String>>,
    pub login_by_account: Throttle,
    pub login_by_ip: Throttle,
}

impl AppState {
    pub fn new(config: Config, db: Db, setup_token: Option<String>) -> Self {
        let keys = Keys::derive(config.secret_bytes());
        Self {
            config,
            db,
            keys,
            setup_token: Mutex::new(setup_token),
            login_by_account: Throttle::new(Policy { max_failures: 5, window_secs: 15 * 60 }),
            login_by_ip: Throttle::new(Policy { max_failures: 30, window_secs: 15 * 60 }),
        }
    }
}

pub type State = web::Data<AppState>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/static/{path:.*}", web::get().to(assets::serve))
        .route("/", web::get().to(team::home))
        .service(web::resource("/setup").get(setup::form).post(setup::submit))
        .service(web::resource("/login").get(login::form).post(login::submit))
        .route("/logout", web::post().to(login::logout))
        .route("/settings/team", web::get().to(team::show))
        .route("/settings/team/invites", web::post().to(team::invite))
        .route("/settings/team/invites/{id}/revoke", web::post().to(team::revoke_invite))
        .route("/settings/team/members/{user_id}/role", web::post().to(team::change_role))
        .route("/settings/team/members/{user_id}/remove", web::post().to(team::remove_member))
        .service(web::resource("/invite/{token}").get(invite::form).post(invite::accept));
}
