DROP INDEX audit_events_actor;
DROP INDEX audit_events_object;
DROP INDEX audit_events_team_actor;
DROP INDEX audit_events_team_action;
DROP INDEX audit_events_team;
CREATE INDEX audit_events_team ON audit_events(team_id, id);
DROP INDEX api_keys_team;
CREATE INDEX api_keys_team ON api_keys(team_id, created_at);
