DROP TRIGGER changes_api_keys ON api_keys;
DROP TRIGGER changes_memberships ON memberships;
DROP TRIGGER changes_teams ON teams;
DROP TRIGGER changes_oauth_tokens ON oauth_tokens;
DROP TRIGGER changes_oauth_clients ON oauth_clients;
DROP FUNCTION changes_note();
DROP TABLE changes;
