DROP TABLE audit_events;
DROP TABLE sessions;
DROP TABLE invites;
DROP TABLE memberships;
DROP TABLE users;
DROP TABLE teams;
