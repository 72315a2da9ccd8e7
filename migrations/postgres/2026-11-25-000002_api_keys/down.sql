DROP TABLE api_key_usage;
DROP TABLE api_keys;
ALTER TABLE teams DROP COLUMN max_key_lifetime_days;
ALTER TABLE teams DROP COLUMN plan;
