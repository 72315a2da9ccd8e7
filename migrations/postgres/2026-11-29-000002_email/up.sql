-- Email: the kinds of email a person turned off (reminders only; security
-- email cannot be turned off), and the devices each person signed in from,
-- known by a keyed hash of the device cookie (never the cookie itself).
CREATE TABLE email_opt_outs (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE known_devices (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_hash TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_hash)
);
CREATE INDEX known_devices_recent ON known_devices(user_id, last_seen_at);
