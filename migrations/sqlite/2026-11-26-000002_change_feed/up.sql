-- The change feed: every change to what a cached verification depends on
-- (a key, a membership, a team, an OAuth token or app) appends a row, written
-- by the database itself so that no code path (nor a hand-made UPDATE) can
-- forget it. Each instance reads it once a second from its last sequence
-- number and drops what it names from its cache. Usage bookkeeping
-- (last_used_at, used_at) is not a change: the UPDATE OF lists name every
-- other column (a test fails when a new column is missing from them).
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX changes_at ON changes(at);

CREATE TRIGGER changes_api_keys_update AFTER UPDATE OF kind, team_id, created_by, name, description, key_hash, key_prefix, scopes, allowed_ips, created_at, expires_at, revoked_at, revoked_by, revoked_reason, rolled_from, replaced_by ON api_keys
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('key', NEW.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_api_keys_delete AFTER DELETE ON api_keys
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('key', OLD.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_memberships_insert AFTER INSERT ON memberships
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('user', NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_memberships_update AFTER UPDATE ON memberships
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('user', NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_memberships_delete AFTER DELETE ON memberships
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('user', OLD.user_id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_teams_update AFTER UPDATE ON teams
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('team', NEW.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_teams_delete AFTER DELETE ON teams
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('team', OLD.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_oauth_tokens_update AFTER UPDATE OF token_hash, kind, client_id, user_id, team_id, scopes, grant_id, created_at, expires_at, revoked_at ON oauth_tokens
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('token', NEW.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_oauth_tokens_delete AFTER DELETE ON oauth_tokens
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('token', OLD.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_oauth_clients_update AFTER UPDATE ON oauth_clients
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('client', NEW.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
CREATE TRIGGER changes_oauth_clients_delete AFTER DELETE ON oauth_clients
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('client', OLD.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
