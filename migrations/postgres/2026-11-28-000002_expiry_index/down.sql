DROP INDEX api_keys_team_expiry;
DROP INDEX api_keys_expiry;
