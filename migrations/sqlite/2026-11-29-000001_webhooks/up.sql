-- Webhooks (Standard Webhooks): a team's endpoints, the messages its audited
-- changes produce (written in the transaction of the change: an outbox), and
-- one delivery per endpoint and message, retried with backoff. Secrets are
-- sealed (AES-GCM under a key derived from the server secret), never plain.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- Space-separated event types, or `*` for every type.
    events TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    old_secret_enc TEXT,
    old_secret_until BIGINT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT,
    disabled_reason TEXT,
    -- The instance delivering to it now, until when (real time).
    lease_until BIGINT,
    lease_by TEXT
);
CREATE INDEX webhook_endpoints_team ON webhook_endpoints(team_id);

CREATE TABLE webhook_messages (
    id TEXT PRIMARY KEY NOT NULL,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_messages_team ON webhook_messages(team_id, created_at);

-- `id` is the order of deliveries: an endpoint gets its messages oldest first.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    message_id TEXT NOT NULL REFERENCES webhook_messages(id) ON DELETE CASCADE,
    -- pending | delivered | failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT,
    first_attempt_at BIGINT,
    last_attempt_at BIGINT,
    last_status BIGINT,
    last_error TEXT
);
-- The next delivery due per endpoint, and the endpoints with one due.
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, status, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries(message_id);
