//! The notices the product's use cases send, one constructor each: what it
//! is about, who is told, the line a log shows, and the details its email
//! names. None of them holds a secret but the invitation's token.

use serde_json::json;

use crate::domain::PlainSecret;
use crate::service::audit::Actor;
use crate::service::keys::codec;
use crate::service::notify::{KeyRef, Notice, NoticeKind, Recipient};
use crate::store::models::{ApiKey, Invite};

/// Where and how a security event happened: time, address, user agent
/// (already cut of anything that looks like a secret, `codec::redact`).
fn origin(actor: &Actor, at: i64) -> serde_json::Value {
    let agent = actor.user_agent.as_deref().map(|ua| codec::redact(ua).into_owned());
    json!({"at": at, "ip": actor.ip, "user_agent": agent})
}

/// A key as notices name it.
pub fn key_ref(key: &ApiKey, api_key_prefix: &str) -> KeyRef {
    KeyRef { id: key.id.clone(), name: key.name.clone(), prefix: codec::display(api_key_prefix, &key.key_prefix) }
}

impl Notice {
    /// To the invitee: who invited them, to which team and role, and the link.
    pub fn invitation(invite: &Invite, token: &PlainSecret, team_name: &str, invited_by: &str) -> Self {
        let text = format!("{} was invited to join {team_name} as {}.", invite.email, invite.role.as_str());
        let details = json!({"team_name": team_name, "role": invite.role.as_str(), "invited_by": invited_by});
        let mut notice = Self::new(NoticeKind::Invite, vec![Recipient::from(invite.email.as_str())], text)
            .team(&invite.team_id)
            .details(details);
        notice.invite_token = Some(token.clone());
        notice
    }

    /// To the key's creator: support revoked it, and why.
    pub fn key_revoked_by_support(key: &ApiKey, prefix: &str, recipients: Vec<Recipient>, reason: &str) -> Self {
        let key = key_ref(key, prefix);
        let text = format!("Key {} ({}…) was revoked by support.", key.name, key.prefix);
        Self::new(NoticeKind::KeyRevokedBySupport, recipients, text).key(key).details(json!({"reason": reason}))
    }

    /// To the key's creator and the team's owners: reported leaked, revoked.
    pub fn key_leaked(key: &ApiKey, prefix: &str, recipients: Vec<Recipient>) -> Self {
        let team = key.team_id.clone();
        let key = key_ref(key, prefix);
        let text = format!("Key {} ({}…) was reported leaked and revoked.", key.name, key.prefix);
        let notice = Self::new(NoticeKind::KeyLeaked, recipients, text).key(key);
        match team.as_deref() {
            Some(t) => notice.team(t),
            None => notice,
        }
    }

    /// To the user: a sign-in from a device they never used.
    pub fn new_device(user_id: &str, email: &str, actor: &Actor, at: i64) -> Self {
        let text = format!("{email} signed in from a new device.");
        Self::new(NoticeKind::NewDevice, vec![Recipient::user(user_id, email)], text).details(origin(actor, at))
    }

    /// To the user: two-factor authentication is off (`by_operator`: reset
    /// with `latchkey user reset-totp`).
    pub fn totp_disabled(recipient: Recipient, actor: &Actor, at: i64, by_operator: bool) -> Self {
        let text = format!("Two-factor authentication was turned off for {}.", recipient.email);
        let mut details = origin(actor, at);
        details["by"] = json!(if by_operator { "operator" } else { "user" });
        Self::new(NoticeKind::TotpDisabled, vec![recipient], text).details(details)
    }

    /// To the user: their password changed.
    pub fn password_changed(user_id: &str, email: &str, actor: &Actor, at: i64) -> Self {
        let text = format!("The password of {email} was changed.");
        Self::new(NoticeKind::PasswordChanged, vec![Recipient::user(user_id, email)], text).details(origin(actor, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    #[test]
    fn an_invitation_shows_its_token_only_where_the_email_puts_it() {
        let invite = Invite {
            id: "inv_1".into(),
            team_id: "team_1".into(),
            email: "new@example.test".into(),
            role: Role::Developer,
            token_hash: "h".into(),
            invited_by: "usr_1".into(),
            created_at: 0,
            expires_at: 1,
            accepted_at: None,
        };
        let token = PlainSecret::new("Tok3nTok3nTok3n".into());
        let notice = Notice::invitation(&invite, &token, "Acme", "owner@example.test");
        assert_eq!(notice.text, "new@example.test was invited to join Acme as developer.");
        for shown in [notice.text.clone(), format!("{notice:?}"), notice.details.to_string()] {
            assert!(!shown.contains("Tok3n"), "{shown}");
        }
        assert_eq!(notice.invite_token.as_ref().map(PlainSecret::expose), Some("Tok3nTok3nTok3n"));
    }
}
