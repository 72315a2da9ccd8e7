//! Latchkey: a self-hosted developer portal — API keys, OAuth 2.0 and
//! password + TOTP login for a SaaS API.
//!
//! Three layers, one direction: `web` → `service` → `store`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cli;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod error;
pub mod service;
pub mod startup;
pub mod store;
pub mod web;
