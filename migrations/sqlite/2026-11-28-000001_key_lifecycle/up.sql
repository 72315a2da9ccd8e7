-- Key lifecycle: a key can be paused (disabled) and come back; a roll's grace
-- can be extended once; usage is counted by outcome, by hour (for watching a
-- rotation), with the last client addresses and user agents seen and the
-- scopes each key exercised; reminders are sent once per threshold.
ALTER TABLE api_keys ADD COLUMN disabled_at BIGINT;
ALTER TABLE api_keys ADD COLUMN grace_extended_at BIGINT;
ALTER TABLE oauth_clients ADD COLUMN old_secret_extended_at BIGINT;

-- `count` stays the requests that were answered (outcome `ok`).
ALTER TABLE api_key_usage ADD COLUMN scope_denied BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_key_usage ADD COLUMN address_denied BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_key_usage ADD COLUMN rate_limited BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_key_usage ADD COLUMN expired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_key_usage ADD COLUMN revoked BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_key_usage ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;

-- A subject is a key id, or `cs_` and the start of a client secret's hash.
CREATE TABLE usage_hours (
    subject TEXT NOT NULL,
    hour BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (subject, hour)
);
CREATE INDEX usage_hours_hour ON usage_hours(hour);

-- The last few distinct values of each kind (`address`, `agent`) per subject.
CREATE TABLE usage_sightings (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (subject, kind, value)
);
CREATE INDEX usage_sightings_recent ON usage_sightings(subject, kind, last_seen);

CREATE TABLE api_key_scope_use (
    key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    first_used BIGINT NOT NULL,
    last_used BIGINT NOT NULL,
    PRIMARY KEY (key_id, scope)
);

-- One row per subject and reminder kind: inserted once, by one instance.
CREATE TABLE reminders (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (subject, kind)
);

-- The new columns of api_keys are changes (PostgreSQL's trigger compares whole rows).
DROP TRIGGER changes_api_keys_update;
CREATE TRIGGER changes_api_keys_update AFTER UPDATE OF kind, team_id, created_by, name, description, key_hash, key_prefix, scopes, allowed_ips, created_at, expires_at, revoked_at, revoked_by, revoked_reason, rolled_from, replaced_by, disabled_at, grace_extended_at ON api_keys
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('key', NEW.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
