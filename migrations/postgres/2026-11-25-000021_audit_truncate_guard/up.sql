-- The audit log is append-only: UPDATE and DELETE are refused row by row
-- (foundation migration); TRUNCATE fires no row trigger, so it is refused by
-- a statement-level one. (A role that owns the table can still drop the
-- trigger: run the server as a role that does not own its tables — README.)
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
