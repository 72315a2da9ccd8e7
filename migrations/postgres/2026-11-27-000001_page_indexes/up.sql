-- Indexes for the pages of a big team (bench/pages.sh: 10,000 keys, 100,000
-- audit events). The key list and the team's audit log are read in the order
-- of an index, (created_at, id) newest first, a range of it for each filter
-- and cursor; the log's is led by the action or by the actor's label when
-- filtered by them (the model reads one range per action or label). A key's
-- history (its page, support's key page) and a person's actions (support's
-- user page) are found by index, not by reading the whole log.
DROP INDEX api_keys_team;
CREATE INDEX api_keys_team ON api_keys(team_id, created_at, id);
DROP INDEX audit_events_team;
CREATE INDEX audit_events_team ON audit_events(team_id, created_at, id);
CREATE INDEX audit_events_team_action ON audit_events(team_id, action, created_at, id);
CREATE INDEX audit_events_team_actor ON audit_events(team_id, actor_label, created_at, id);
CREATE INDEX audit_events_object ON audit_events(object_type, object_id, id);
CREATE INDEX audit_events_actor ON audit_events(actor_id, id);
