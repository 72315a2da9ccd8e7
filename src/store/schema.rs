//! The one schema both backends share. Times are unix seconds (`BigInt`).

diesel::table! {
    teams (id) {
        id -> Text,
        name -> Text,
        require_totp -> Bool,
        created_at -> BigInt,
        plan -> Nullable<Text>,
        max_key_lifetime_days -> Nullable<BigInt>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        is_support -> Bool,
        created_at -> BigInt,
        totp_secret_enc -> Nullable<Text>,
        totp_pending_enc -> Nullable<Text>,
        totp_enabled_at -> Nullable<BigInt>,
        totp_last_step -> Nullable<BigInt>,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> Text,
        user_id -> Text,
        code_hash -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    memberships (team_id, user_id) {
        team_id -> Text,
        user_id -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    invites (id) {
        id -> Text,
        team_id -> Text,
        email -> Text,
        role -> Text,
        token_hash -> Text,
        invited_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        accepted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        created_at -> BigInt,
        team_id -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        actor_label -> Text,
        action -> Text,
        object_type -> Nullable<Text>,
        object_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        details -> Text,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        kind -> Text,
        team_id -> Nullable<Text>,
        created_by -> Nullable<Text>,
        name -> Text,
        description -> Text,
        key_hash -> Text,
        key_prefix -> Text,
        scopes -> Text,
        allowed_ips -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        revoked_by -> Nullable<Text>,
        revoked_reason -> Nullable<Text>,
        last_used_at -> Nullable<BigInt>,
        rolled_from -> Nullable<Text>,
        replaced_by -> Nullable<Text>,
        disabled_at -> Nullable<BigInt>,
        grace_extended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_key_usage (key_id, day) {
        key_id -> Text,
        day -> BigInt,
        count -> BigInt,
        scope_denied -> BigInt,
        address_denied -> BigInt,
        rate_limited -> BigInt,
        expired -> BigInt,
        revoked -> BigInt,
        disabled -> BigInt,
    }
}

diesel::table! {
    usage_hours (subject, hour) {
        subject -> Text,
        hour -> BigInt,
        requests -> BigInt,
    }
}

diesel::table! {
    usage_sightings (subject, kind, value) {
        subject -> Text,
        kind -> Text,
        value -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
        requests -> BigInt,
    }
}

diesel::table! {
    api_key_scope_use (key_id, scope) {
        key_id -> Text,
        scope -> Text,
        first_used -> BigInt,
        last_used -> BigInt,
    }
}

diesel::table! {
    reminders (subject, kind) {
        subject -> Text,
        kind -> Text,
        sent_at -> BigInt,
    }
}

diesel::table! {
    oauth_clients (id) {
        id -> Text,
        team_id -> Text,
        created_by -> Nullable<Text>,
        name -> Text,
        client_type -> Text,
        redirect_uris -> Text,
        allowed_scopes -> Text,
        logo_url -> Text,
        homepage -> Text,
        secret_hash -> Nullable<Text>,
        old_secret_hash -> Nullable<Text>,
        old_secret_expires_at -> Nullable<BigInt>,
        created_at -> BigInt,
        old_secret_extended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    oauth_consents (user_id, client_id) {
        user_id -> Text,
        client_id -> Text,
        scopes -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    oauth_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        user_id -> Text,
        team_id -> Text,
        redirect_uri -> Text,
        scopes -> Text,
        code_challenge -> Nullable<Text>,
        grant_id -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        redirect_uri_given -> Bool,
    }
}

diesel::table! {
    oauth_tokens (id) {
        id -> Text,
        token_hash -> Text,
        kind -> Text,
        client_id -> Text,
        user_id -> Nullable<Text>,
        team_id -> Text,
        scopes -> Text,
        grant_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    email_opt_outs (user_id, kind) {
        user_id -> Text,
        kind -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    known_devices (user_id, device_hash) {
        user_id -> Text,
        device_hash -> Text,
        first_seen_at -> BigInt,
        last_seen_at -> BigInt,
    }
}

diesel::table! {
    changes (seq) {
        seq -> BigInt,
        kind -> Text,
        object_id -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        team_id -> Text,
        url -> Text,
        description -> Text,
        events -> Text,
        secret_enc -> Text,
        old_secret_enc -> Nullable<Text>,
        old_secret_until -> Nullable<BigInt>,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
        disabled_reason -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        lease_by -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_messages (id) {
        id -> Text,
        team_id -> Text,
        event_type -> Text,
        payload -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        endpoint_id -> Text,
        message_id -> Text,
        status -> Text,
        attempts -> BigInt,
        created_at -> BigInt,
        next_attempt_at -> Nullable<BigInt>,
        first_attempt_at -> Nullable<BigInt>,
        last_attempt_at -> Nullable<BigInt>,
        last_status -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(oauth_consents -> oauth_clients (client_id));
diesel::joinable!(memberships -> teams (team_id));
diesel::joinable!(api_keys -> teams (team_id));
diesel::joinable!(api_key_usage -> api_keys (key_id));
diesel::joinable!(api_key_scope_use -> api_keys (key_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(invites -> teams (team_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_deliveries -> webhook_messages (message_id));
diesel::joinable!(email_opt_outs -> users (user_id));
diesel::joinable!(known_devices -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    teams,
    users,
    memberships,
    invites,
    sessions,
    audit_events,
    api_keys,
    api_key_usage,
    recovery_codes,
    oauth_clients,
    oauth_consents,
    oauth_codes,
    oauth_tokens,
    changes,
    usage_hours,
    usage_sightings,
    api_key_scope_use,
    reminders,
    webhook_endpoints,
    webhook_messages,
    webhook_deliveries,
    email_opt_outs,
    known_devices
);
