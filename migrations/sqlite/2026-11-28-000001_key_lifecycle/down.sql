DROP TRIGGER changes_api_keys_update;
CREATE TRIGGER changes_api_keys_update AFTER UPDATE OF kind, team_id, created_by, name, description, key_hash, key_prefix, scopes, allowed_ips, created_at, expires_at, revoked_at, revoked_by, revoked_reason, rolled_from, replaced_by ON api_keys
BEGIN INSERT INTO changes (kind, object_id, at) VALUES ('key', NEW.id, CAST(strftime('%s', 'now') AS INTEGER)); END;
DROP TABLE reminders;
DROP TABLE api_key_scope_use;
DROP TABLE usage_sightings;
DROP TABLE usage_hours;
ALTER TABLE api_key_usage DROP COLUMN disabled;
ALTER TABLE api_key_usage DROP COLUMN revoked;
ALTER TABLE api_key_usage DROP COLUMN expired;
ALTER TABLE api_key_usage DROP COLUMN rate_limited;
ALTER TABLE api_key_usage DROP COLUMN address_denied;
ALTER TABLE api_key_usage DROP COLUMN scope_denied;
ALTER TABLE oauth_clients DROP COLUMN old_secret_extended_at;
ALTER TABLE api_keys DROP COLUMN grace_extended_at;
ALTER TABLE api_keys DROP COLUMN disabled_at;
