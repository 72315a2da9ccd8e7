-- Whether the authorization request carried a redirect_uri (RFC 6749 §4.1.3):
-- the token request must then repeat it, and may omit it otherwise.
ALTER TABLE oauth_codes ADD COLUMN redirect_uri_given BOOLEAN NOT NULL DEFAULT TRUE;
