DROP TABLE oauth_tokens;
DROP TABLE oauth_codes;
DROP TABLE oauth_consents;
DROP TABLE oauth_clients;
