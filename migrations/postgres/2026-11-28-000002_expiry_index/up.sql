-- Keys by expiry: the reminder scan reads the keys of every team expiring
-- within the next 7 days (a range of api_keys_expiry); the banner on every
-- signed-in page reads one team's (a range of api_keys_team_expiry).
CREATE INDEX api_keys_expiry ON api_keys(expires_at);
CREATE INDEX api_keys_team_expiry ON api_keys(team_id, expires_at);
