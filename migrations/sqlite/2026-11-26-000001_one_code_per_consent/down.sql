DROP INDEX oauth_codes_grant;
