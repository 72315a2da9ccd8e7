ALTER TABLE oauth_codes DROP COLUMN redirect_uri_given;
