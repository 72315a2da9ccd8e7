-- The change feed: every change to what a cached verification depends on
-- (a key, a membership, a team, an OAuth token or app) appends a row, written
-- by the database itself so that no code path (nor a hand-made UPDATE) can
-- forget it. Each instance reads it once a second from its last sequence
-- number and drops what it names from its cache. Usage bookkeeping
-- (last_used_at, used_at) is not a change.
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX changes_at ON changes(at);

CREATE FUNCTION changes_note() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(OLD) - 'last_used_at' - 'used_at') = (to_jsonb(NEW) - 'last_used_at' - 'used_at') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    INSERT INTO changes (kind, object_id, at)
    VALUES (TG_ARGV[0], r ->> TG_ARGV[1], extract(epoch FROM now())::BIGINT);
    RETURN NULL;
END $$;

CREATE TRIGGER changes_api_keys AFTER UPDATE OR DELETE ON api_keys
FOR EACH ROW EXECUTE FUNCTION changes_note('key', 'id');
CREATE TRIGGER changes_memberships AFTER INSERT OR UPDATE OR DELETE ON memberships
FOR EACH ROW EXECUTE FUNCTION changes_note('user', 'user_id');
CREATE TRIGGER changes_teams AFTER UPDATE OR DELETE ON teams
FOR EACH ROW EXECUTE FUNCTION changes_note('team', 'id');
CREATE TRIGGER changes_oauth_tokens AFTER UPDATE OR DELETE ON oauth_tokens
FOR EACH ROW EXECUTE FUNCTION changes_note('token', 'id');
CREATE TRIGGER changes_oauth_clients AFTER UPDATE OR DELETE ON oauth_clients
FOR EACH ROW EXECUTE FUNCTION changes_note('client', 'id');
