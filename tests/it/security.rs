//! Attacks, one module per class (SECURITY-CHECKLIST.md): each test tries
//! several variants of an attack on SQLite and PostgreSQL and expects every
//! one to fail, and the one legitimate variation (where there is one) to work.

mod concurrency;
mod limits;
mod oauth_protocol;
mod parsers;
mod policy;
mod sessions;
