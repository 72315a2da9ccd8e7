//! What each kind of email says: its subject, paragraphs, facts and the one
//! link it offers (a page under the public URL), built from a notice for one
//! recipient. The templates (`templates/email/`) lay it out as text and HTML.

use serde_json::Value;

use super::compose::Site;
use super::{moment, one_line};
use crate::service::notify::{KeyRef, Notice, NoticeKind, Recipient};

/// How long a name may be in a subject or a sentence.
const NAME: usize = 80;
/// How long a reason, an address or a user agent may be.
const LONG: usize = 300;

/// What one email says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub subject: String,
    pub paragraphs: Vec<String>,
    /// Label and value ("IP address", "203.0.113.9").
    pub facts: Vec<(String, String)>,
    /// The button: its words and where it leads.
    pub action: Option<(String, String)>,
    /// Why the person got this email (and what to do if it surprises them).
    pub footer: String,
    /// The one-click unsubscribe URL (reminders only).
    pub unsubscribe: Option<String>,
}

impl View {
    fn new(subject: String, paragraphs: Vec<String>, footer: &str) -> Self {
        Self { subject, paragraphs, facts: Vec::new(), action: None, footer: footer.to_owned(), unsubscribe: None }
    }

    fn fact(mut self, label: &str, value: Option<String>) -> Self {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.facts.push((label.to_owned(), v));
        }
        self
    }

    fn action(mut self, label: &str, url: String) -> Self {
        self.action = Some((label.to_owned(), url));
        self
    }
}

/// What `notice` says to `to`, or `None` when it has nothing for them (an
/// invite without its token).
pub fn view(notice: &Notice, to: &Recipient, site: &Site) -> Option<View> {
    let d = &notice.details;
    let mut view = match notice.kind {
        NoticeKind::Invite => invite(notice, site)?,
        NoticeKind::KeyExpiring => expiring(notice.key.as_ref()?, d, site),
        NoticeKind::KeyRevokedBySupport => revoked(notice.key.as_ref()?, d, site),
        NoticeKind::KeyLeaked => leaked(notice.key.as_ref()?, site),
        NoticeKind::NewDevice => new_device(d, site),
        NoticeKind::TotpDisabled => totp_disabled(d, site),
        NoticeKind::PasswordChanged => password_changed(d, site),
        NoticeKind::WebhookEndpointDisabled => endpoint_disabled(d, site),
    };
    if notice.kind.may_unsubscribe() {
        view.unsubscribe = to.user_id.as_deref().map(|user| site.unsubscribe_url(user, notice.kind));
    }
    Some(view)
}

/// A detail as one short line, if present.
fn text(d: &Value, field: &str, max: usize) -> Option<String> {
    d.get(field).and_then(Value::as_str).map(|s| one_line(s, max)).filter(|s| !s.is_empty())
}

fn key_name(key: &KeyRef) -> String {
    format!("{} ({}…)", one_line(&key.name, NAME), key.prefix)
}

fn invite(notice: &Notice, site: &Site) -> Option<View> {
    let token = notice.invite_token.as_ref()?;
    let d = &notice.details;
    let team = text(d, "team_name", NAME).unwrap_or_else(|| "a team".into());
    let role = text(d, "role", NAME).unwrap_or_else(|| "member".into());
    let by = text(d, "invited_by", NAME).map(|who| format!("{who} invited you")).unwrap_or("You are invited".into());
    let paragraphs = vec![
        format!("{by} to join the team {team} on Latchkey as {role}."),
        "Open the link below to choose a password and join. It works once and expires in 7 days.".into(),
    ];
    let footer = "If you did not expect this invitation, you can ignore this email: nothing happens until the link \
                  is opened and a password chosen.";
    let view = View::new(format!("You are invited to join {team} on Latchkey"), paragraphs, footer);
    Some(view.action("Accept the invitation", site.url(&format!("/invite/{}", token.expose()))))
}

fn expiring(key: &KeyRef, d: &Value, site: &Site) -> View {
    let days = d.get("days").and_then(Value::as_i64).unwrap_or(1);
    let when = if days == 1 { "in 1 day".to_owned() } else { format!("in {days} days") };
    let paragraphs = vec![
        format!("The API key {} expires {when}. Requests made with it will then fail.", key_name(key)),
        "To keep things working, roll the key (a new secret with the same settings) and replace it where it is \
         used, or extend its expiry if your team allows it."
            .into(),
    ];
    let footer = "You get this reminder because you created this key or manage your team's keys.";
    let view = View::new(format!("API key {} expires {when}", one_line(&key.name, NAME)), paragraphs, footer);
    view.action("Open the key", site.key_url(&key.id))
}

fn revoked(key: &KeyRef, d: &Value, site: &Site) -> View {
    let paragraphs = vec![
        format!("Latchkey support revoked your API key {}. Requests made with it now fail.", key_name(key)),
        "If you still need access, create a new key and replace the old one where it was used.".into(),
    ];
    let footer = "You get this email because you created this key. It is about your account's security and cannot \
                  be turned off.";
    let view =
        View::new(format!("Your API key {} was revoked by support", one_line(&key.name, NAME)), paragraphs, footer);
    view.fact("Reason", text(d, "reason", LONG)).action("Open the key", site.key_url(&key.id))
}

fn leaked(key: &KeyRef, site: &Site) -> View {
    let paragraphs = vec![
        format!(
            "A secret-scanning partner found the API key {} where it should not be, and reported it. Latchkey \
             revoked it at once: requests made with it now fail.",
            key_name(key)
        ),
        "Create a new key, replace the leaked one where it was used, and check the key's history for requests \
         you do not recognise."
            .into(),
    ];
    let footer = "You get this email because you created this key or own its team. It is about your team's \
                  security and cannot be turned off.";
    let view =
        View::new(format!("API key {} was reported leaked and revoked", one_line(&key.name, NAME)), paragraphs, footer);
    view.action("Open the key", site.key_url(&key.id))
}

/// Time, address and browser of a security event.
fn origin(view: View, d: &Value) -> View {
    let at = d.get("at").and_then(Value::as_i64).map(moment);
    view.fact("Time", at).fact("IP address", text(d, "ip", LONG)).fact("Browser", text(d, "user_agent", LONG))
}

const NOT_YOU: &str = "If this was not you, change your password at once and sign out your other sessions in \
                       Settings → Security.";
const SECURITY_FOOTER: &str = "You get this email to keep your account safe. It cannot be turned off.";

fn new_device(d: &Value, site: &Site) -> View {
    let paragraphs =
        vec!["Your Latchkey account was signed in to from a device it was not used on before.".into(), NOT_YOU.into()];
    let view = origin(View::new("New sign-in to your Latchkey account".into(), paragraphs, SECURITY_FOOTER), d);
    view.action("Review your sessions", site.url("/settings/security"))
}

fn totp_disabled(d: &Value, site: &Site) -> View {
    let by_operator = d.get("by").and_then(Value::as_str) == Some("operator");
    let first = if by_operator {
        "The operator of this Latchkey turned off two-factor authentication for your account (at your request, \
         after you lost your authenticator). Your sessions were signed out."
    } else {
        "Two-factor authentication was turned off for your Latchkey account."
    };
    let paragraphs = vec![first.into(), "Turn it on again in Settings → Security.".into(), NOT_YOU.into()];
    let view = origin(View::new("Two-factor authentication was turned off".into(), paragraphs, SECURITY_FOOTER), d);
    view.action("Open Settings → Security", site.url("/settings/security"))
}

fn password_changed(d: &Value, site: &Site) -> View {
    let paragraphs = vec![
        "The password of your Latchkey account was changed, and its other sessions were signed out.".into(),
        "If this was not you, contact your team's owner or the operator of this Latchkey at once.".into(),
    ];
    let view = origin(View::new("Your Latchkey password was changed".into(), paragraphs, SECURITY_FOOTER), d);
    view.action("Open Settings → Security", site.url("/settings/security"))
}

fn endpoint_disabled(d: &Value, site: &Site) -> View {
    let endpoint = text(d, "endpoint", LONG).unwrap_or_else(|| "(an endpoint)".into());
    let paragraphs = vec![
        format!("Deliveries to the webhook endpoint {endpoint} kept failing, so Latchkey disabled it."),
        "Fix the receiver, then enable the endpoint again and resend the deliveries it missed.".into(),
    ];
    let footer = "You get this email because you own or administer this team.";
    let view = View::new("A webhook endpoint was disabled".into(), paragraphs, footer);
    view.fact("Endpoint", Some(endpoint))
        .fact("Reason", text(d, "reason", LONG))
        .action("Open webhooks", site.url("/settings/developer/webhooks"))
}
