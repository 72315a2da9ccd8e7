ALTER TABLE teams ADD COLUMN plan TEXT;
ALTER TABLE teams ADD COLUMN max_key_lifetime_days BIGINT;

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    team_id TEXT REFERENCES teams(id) ON DELETE CASCADE,
    created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    allowed_ips TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    revoked_by TEXT,
    revoked_reason TEXT,
    last_used_at BIGINT,
    rolled_from TEXT,
    replaced_by TEXT
);
CREATE INDEX api_keys_team ON api_keys(team_id, created_at);
CREATE INDEX api_keys_prefix ON api_keys(key_prefix);

CREATE TABLE api_key_usage (
    key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    day BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);
