DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events;
DROP TABLE audit_events;
DROP TABLE sessions;
DROP TABLE invites;
DROP TABLE memberships;
DROP TABLE users;
DROP TABLE teams;
DROP FUNCTION IF EXISTS audit_events_append_only;
