//! The one integration-test binary. Each test drives the real server on port 0
//! with a fresh database: a new SQLite file, and — when
//! `LATCHKEY_TEST_DATABASE_URL` is set — a new PostgreSQL database too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod webdriver;

pub mod accounts;
pub mod api_keys;
mod browser;
mod copy_data;
pub mod email;
pub mod key_edit;
pub mod key_privilege;
pub mod key_rotation;
mod key_usage;
mod login;
mod login_flood;
mod metrics;
pub mod oauth;
pub mod openapi;
mod openapi_answers;
mod outages;
mod platform;
mod scale;
mod scale_limits;
mod scale_throttles;
mod scale_usage;
mod security;
mod setup;
pub mod support;
pub mod totp;
mod ui_account;
mod ui_api_docs;
mod ui_audit_support;
mod ui_email;
mod ui_keys;
mod ui_pages;
mod ui_webhooks;
mod usage_housekeeping;
pub mod webhooks;
