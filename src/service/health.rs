//! Readiness: whether this instance can serve, as a load balancer asks.
//!
//! Rules: ready means the database answers a trivial query now; nothing is
//! cached and nothing is written.

use diesel::connection::SimpleConnection;

use crate::store::{Db, StoreError};

/// Whether the database answers.
pub async fn database_answers(db: &Db) -> Result<(), StoreError> {
    db.run(|conn| conn.batch_execute("SELECT 1").map_err(StoreError::from)).await
}
