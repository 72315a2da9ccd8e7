//! Attacks, one module per class (SECURITY-CHECKLIST.md): each test tries
//! several variants of an attack on SQLite and PostgreSQL and expects every
//! one to fail, and the one legitimate variation (where there is one) to work.
//!
//! Attacks on several instances (PostgreSQL + Redis) live beside the
//! several-instance tests: limits spread over instances, a downgraded plan's
//! leases (`scale_limits`); guesses spread over instances and in parallel
//! (`scale_throttles`); a revoke racing a verification, a change committing
//! late, revocation across instances (`scale`); outages (`outages`).

mod api_contract;
mod cache;
mod concurrency;
mod dashboard;
mod email;
mod invites;
mod key_edit;
mod key_privilege;
mod key_rotation;
mod key_usage;
mod limits;
mod oauth_protocol;
mod parsers;
mod policy;
mod sessions;
mod webhooks;
