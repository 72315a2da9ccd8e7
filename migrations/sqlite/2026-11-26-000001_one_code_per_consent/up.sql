-- A consent form is approved once: its code carries a grant id derived from
-- the form's nonce, and a second approval of the same form cannot insert.
CREATE UNIQUE INDEX oauth_codes_grant ON oauth_codes(grant_id);
