-- SQLite has no TRUNCATE (DELETE without WHERE is refused by the foundation
-- migration's trigger); this migration exists for PostgreSQL.
SELECT 1;
