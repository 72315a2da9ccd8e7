//! Audit events as sentences: "owner@acme.test revoked key *Billing worker*
//! (lk_7iRm…)", with a link to the object while it exists, the address and
//! device in words, a relative time, and the details as a list. The one
//! renderer of events: the audit log, the support pages' recent activity,
//! and any other page that shows events (with
//! `templates/partials/audit_events_partial.html`, which reads `event_lines`).

use serde_json::Value;

use super::format::{self, When};
use crate::domain::{AuditAction, Role};
use crate::service::audit::{ObjectKind, ObjectNames};
use crate::store::models::AuditEvent;

/// Who reads the events: links go to the team's pages or to the console's,
/// and only readers of the audit log see where an action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// A team's owner or admin (the audit log's readers): addresses, devices
    /// and details, except where support acted (the team reads only
    /// "Latchkey support", never the person nor their address).
    Team,
    /// A developer or viewer (a key's history): when, who and what only.
    Member,
    /// Support staff: everything.
    Support,
}

impl Viewer {
    /// Whether this reader sees the address, device and details of `e`.
    fn sees_origin(self, e: &AuditEvent) -> bool {
        match self {
            Viewer::Support => true,
            Viewer::Team => e.actor_label != crate::service::audit::SUPPORT_LABEL,
            Viewer::Member => false,
        }
    }
}

/// The object a sentence names: "*Billing worker* (lk_7iRm…)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub name: String,
    /// A key's display prefix.
    pub code: Option<String>,
    /// Its page, while it exists and the viewer has one.
    pub href: Option<String>,
}

/// One entry of an event's details: a label and a text, or a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub label: String,
    pub text: String,
    pub when: Option<When>,
}

/// An event as a sentence: `actor` `before` `object` `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    pub id: i64,
    /// The recorded action (`api_key.revoked`), for machines (`data-action`).
    pub action: String,
    pub actor: String,
    pub actor_href: Option<String>,
    pub before: String,
    pub object: Option<ObjectRef>,
    pub after: String,
    pub when: When,
    pub ip: String,
    /// The user agent in words ("Chrome on macOS"); empty when none was recorded.
    pub device: String,
    pub details: Vec<Detail>,
}

impl EventLine {
    /// The sentence as plain text (for tests, titles and CSV-like uses).
    pub fn text(&self) -> String {
        let object = self.object.as_ref().map_or(String::new(), |o| match &o.code {
            Some(c) => format!("{} ({c})", o.name),
            None => o.name.clone(),
        });
        format!("{} {}{}{}", self.actor, self.before, object, self.after)
    }
}

/// Renders events as sentences for `viewer`, with their objects named from
/// `names` (see `service::audit::name_objects`) and times relative to `now`.
pub fn sentences(events: Vec<AuditEvent>, names: &ObjectNames, viewer: Viewer, now: i64) -> Vec<EventLine> {
    events.into_iter().map(|e| sentence(e, names, viewer, now)).collect()
}

fn sentence(e: AuditEvent, names: &ObjectNames, viewer: Viewer, now: i64) -> EventLine {
    let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
    let object = object_ref(&e, &details, names, viewer);
    let phrase = match AuditAction::parse(&e.action) {
        Some(action) => phrase(action, &e, &details, object.is_some()),
        None if object.is_some() => Phrase::new(&format!("did “{}” to ", readable_action(&e.action)), ""),
        None => Phrase::plain(&format!("did “{}”", readable_action(&e.action))),
    };
    let Phrase { before, mut after, actor, with_object } = phrase;
    let object = if with_object { object } else { None };
    if let Some(n) = details.get("repeated").and_then(Value::as_u64).filter(|n| *n > 0) {
        after.push_str(&format!(", and {n} more time{} after that", if n == 1 { "" } else { "s" }));
    }
    let origin = viewer.sees_origin(&e);
    let actor_href = match (viewer, e.actor_id.as_deref()) {
        (Viewer::Support, Some(id)) => Some(format!("/support/users/{id}")),
        _ => None,
    };
    EventLine {
        id: e.id,
        actor: actor.unwrap_or_else(|| e.actor_label.clone()),
        actor_href,
        before,
        object,
        after,
        when: When::at(e.created_at, now),
        ip: if origin { e.ip.clone().unwrap_or_default() } else { String::new() },
        device: if origin {
            e.user_agent.as_deref().filter(|ua| !ua.trim().is_empty()).map(format::device).unwrap_or_default()
        } else {
            String::new()
        },
        details: if viewer == Viewer::Member { Vec::new() } else { detail_list(&details, names, now) },
        action: e.action,
    }
}

/// The object's name and page: as it is called now, or as the event
/// recorded it (`details.name`, an invite's email) when it is gone.
fn object_ref(e: &AuditEvent, details: &Value, names: &ObjectNames, viewer: Viewer) -> Option<ObjectRef> {
    let (kind, id) = (e.object_type.as_deref()?, e.object_id.as_deref()?);
    let named = names.get(&(kind.to_owned(), id.to_owned()));
    let recorded = |field: &str| details.get(field).and_then(Value::as_str).map(str::to_owned);
    let kind = ObjectKind::parse(kind);
    let name = match (named, kind) {
        (Some(n), _) => n.name.clone(),
        (None, Some(ObjectKind::Invite)) => recorded("email").unwrap_or_else(|| "an invitation".into()),
        (None, Some(ObjectKind::Webhook)) => recorded("url").unwrap_or_else(|| "(no longer exists)".into()),
        (None, _) => recorded("name").unwrap_or_else(|| "(no longer exists)".into()),
    };
    let href = named.and_then(|n| match (kind?, viewer) {
        (ObjectKind::ApiKey, Viewer::Team | Viewer::Member) => Some(format!("/settings/developer/api-keys/{id}")),
        (ObjectKind::ApiKey, Viewer::Support) => Some(format!("/support/keys/{id}")),
        (ObjectKind::OauthApp, Viewer::Team | Viewer::Member) => Some(format!("/settings/developer/oauth-apps/{id}")),
        (ObjectKind::OauthApp, Viewer::Support) => n.team_id.as_ref().map(|t| format!("/support/teams/{t}")),
        (ObjectKind::User, Viewer::Team | Viewer::Member) => {
            (n.team_id.is_some() && n.team_id == e.team_id).then(|| "/settings/team".to_owned())
        }
        (ObjectKind::User, Viewer::Support) => Some(format!("/support/users/{id}")),
        (ObjectKind::Team, Viewer::Team | Viewer::Member) => Some("/settings/team".into()),
        (ObjectKind::Team, Viewer::Support) => Some(format!("/support/teams/{id}")),
        (ObjectKind::Webhook, Viewer::Team | Viewer::Member) => Some(format!("/settings/developer/webhooks/{id}")),
        (ObjectKind::Invite | ObjectKind::Webhook, _) => None,
    });
    Some(ObjectRef { name, code: named.and_then(|n| n.code.clone()), href })
}

/// A sentence's words around its object; `actor` replaces the recorded
/// label where that reads badly as a subject.
struct Phrase {
    before: String,
    after: String,
    actor: Option<String>,
    with_object: bool,
}

impl Phrase {
    fn new(before: &str, after: &str) -> Self {
        Self { before: before.to_owned(), after: after.to_owned(), actor: None, with_object: true }
    }

    /// A sentence that names no object.
    fn plain(text: &str) -> Self {
        Self { before: text.to_owned(), after: String::new(), actor: None, with_object: false }
    }

    fn by(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }

    fn then(mut self, more: &str) -> Self {
        self.after.push_str(more);
        self
    }
}

fn text<'a>(d: &'a Value, field: &str) -> Option<&'a str> {
    d.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn count(d: &Value, field: &str) -> u64 {
    d.get(field).and_then(Value::as_u64).unwrap_or(0)
}

fn role(s: Option<&str>) -> String {
    match s.and_then(Role::parse) {
        Some(r) => r.label().to_owned(),
        None => s.map_or_else(|| "a member".to_owned(), readable_action),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn grace(d: &Value, what: &str) -> String {
    match d.get("grace_seconds").and_then(Value::as_i64) {
        Some(0) => format!("; the old {what} stopped working at once"),
        Some(s) => format!("; the old {what} was given {} of grace", format::duration(s)),
        None => String::new(),
    }
}

/// ` with only the scopes it used (products:read)`, for a roll that dropped
/// the scopes its key did not use (`narrowed_from`).
fn narrowed(d: &Value) -> String {
    if d.get("narrowed_from").is_none() {
        return String::new();
    }
    let kept: Vec<&str> = d
        .get("scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(" with only the scopes it used ({})", kept.join(", "))
}

/// ` (its name, scopes)`: the fields an edit changed, from `changed`.
fn changed_fields(d: &Value) -> String {
    let fields: Vec<String> = d
        .get("changed")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|f| f.replace('_', " ")).collect())
        .unwrap_or_default();
    if fields.is_empty() { String::new() } else { format!(" ({})", fields.join(", ")) }
}

/// ` until <time>` from `until` (Unix seconds), in UTC.
fn until(d: &Value) -> String {
    d.get("until").and_then(Value::as_i64).map(|t| format!(" until {} UTC", format::rfc3339(t))).unwrap_or_default()
}

/// ` expires in N days` from `days`.
fn expires_in(d: &Value) -> String {
    format!(" expires in {}", plural(count(d, "days"), "day", "days"))
}

/// The words of each recorded action. Exhaustive: a new action does not
/// compile until it has a sentence.
fn phrase(action: AuditAction, e: &AuditEvent, d: &Value, has_object: bool) -> Phrase {
    use AuditAction as A;
    let reason = text(d, "reason").map(|r| format!(" (reason: {r})")).unwrap_or_default();
    match action {
        A::SetupCompleted => Phrase::new("set up Latchkey and created the team ", ""),
        A::UserCreated => Phrase::new("created the account ", "")
            .then(if d.get("support").and_then(Value::as_bool) == Some(true) { " for support staff" } else { "" }),
        A::LoginSucceeded => Phrase::plain(match text(d, "method") {
            Some("password+totp") => "signed in with a two-factor code",
            Some("password+recovery_code") => "signed in with a recovery code",
            _ => "signed in",
        }),
        A::LoginFailed if e.actor_label == "unknown accounts" => {
            Phrase::plain("failed to sign in to an account that does not exist").by("Someone")
        }
        A::LoginFailed => Phrase::plain("failed to sign in (wrong password or no such account)"),
        A::LoginTotpFailed => Phrase::plain("entered a wrong two-factor code"),
        A::Logout => Phrase::plain("signed out"),
        A::PasswordChanged => match count(d, "sessions_ended") {
            0 => Phrase::plain("changed their password"),
            n => {
                Phrase::plain(&format!("changed their password, which signed out {}", plural(n, "session", "sessions")))
            }
        },
        A::SessionRevoked if d.get("others").and_then(Value::as_bool) == Some(true) => {
            Phrase::plain(&format!("signed out all their other sessions ({})", count(d, "sessions")))
        }
        A::SessionRevoked => Phrase::plain("signed out one of their sessions"),
        A::TotpEnabled => Phrase::plain("turned on two-factor authentication"),
        A::TotpDisabled => Phrase::plain("turned off two-factor authentication"),
        A::TotpResetByOperator => Phrase::new("reset two-factor authentication for ", ""),
        A::TotpRecoveryCodeUsed => Phrase::plain(&format!("used a recovery code ({} left)", count(d, "remaining"))),
        A::TotpRecoveryCodesRegenerated => Phrase::plain("made new recovery codes"),
        A::TeamTotpPolicyChanged => {
            if d.get("require_totp").and_then(Value::as_bool) == Some(true) {
                Phrase::new("made two-factor authentication required in ", "")
            } else {
                Phrase::new("made two-factor authentication optional in ", "")
            }
        }
        A::TeamPlanChanged => {
            Phrase::new("moved ", "").then(&format!(" to the plan {}", text(d, "plan").unwrap_or("default")))
        }
        A::TeamKeyPolicyChanged => match d.get("max_key_lifetime_days").and_then(Value::as_u64) {
            Some(days) => Phrase::plain(&format!("limited new keys to {}", plural(days, "day", "days"))),
            None => Phrase::plain("removed the limit on how long keys may live"),
        },
        A::MemberInvited => Phrase::new("invited ", "").then(&format!(" as {}", role(text(d, "role")))),
        A::MemberRoleChanged => Phrase::new("changed ", "").then(&format!(
            "’s role from {} to {}",
            role(text(d, "from")),
            role(text(d, "to"))
        )),
        A::MemberRemoved => Phrase::new("removed ", " from the team"),
        A::InviteAccepted => Phrase::plain(&format!("accepted an invitation and joined as {}", role(text(d, "role")))),
        A::InviteRevoked if text(d, "email").is_some() => Phrase::new("revoked the invitation of ", ""),
        A::InviteRevoked => Phrase::plain("revoked an invitation"),
        A::ApiKeyCreated => Phrase::new("created key ", ""),
        A::ApiKeyRolled => Phrase::new("rolled key ", " into a new key").then(&narrowed(d)).then(&grace(d, "key")),
        A::ApiKeyRevoked => Phrase::new("revoked key ", "").then(&reason),
        A::ApiKeyRevokedBySupport => Phrase::new("revoked key ", "").then(&reason),
        A::ApiKeyRenamed => match (text(d, "old_name"), text(d, "new_name")) {
            (Some(old), Some(new)) if old != new => Phrase::new("renamed key ", "").then(&format!(" from “{old}”")),
            _ => Phrase::new("changed the description of key ", ""),
        },
        A::ApiKeyUpdated => Phrase::new("changed key ", "").then(&changed_fields(d)),
        A::ApiKeyDisabled => Phrase::new("disabled key ", "; it is refused until enabled again"),
        A::ApiKeyEnabled => Phrase::new("enabled key ", " again"),
        A::ApiKeyGraceFinished => Phrase::new("ended the grace of the old key ", " early"),
        A::ApiKeyGraceExtended => Phrase::new("extended the grace of the old key ", "").then(&until(d)),
        // The actor is Latchkey itself (`Actor::system`).
        A::ApiKeyExpiring => Phrase::new("reminded the team that key ", "").then(&expires_in(d)),
        A::ApiKeyRotationBusy => {
            Phrase::new("was warned that the old key ", " is still in use near the end of its grace")
        }
        A::ApiKeyTransferred => Phrase::new("took over key ", " from a member who left"),
        A::ApiKeyLeakReported => Phrase::new("reported key ", " as leaked; it was revoked"),
        A::ApiKeyRefusedRevoked => Phrase::new("was refused: it presented the revoked key ", ""),
        A::ServiceKeyCreated => Phrase::new("created the service key ", ""),
        A::OauthAppRegistered => Phrase::new("registered the app ", ""),
        A::OauthAppUpdated => Phrase::new("changed the settings of the app ", ""),
        A::OauthAppDeleted => Phrase::new("deleted the app ", "").then(&match count(d, "tokens_revoked") {
            0 => String::new(),
            n => format!(", revoking {}", plural(n, "token", "tokens")),
        }),
        A::OauthSecretRotated => Phrase::new("rotated the client secret of ", "").then(&grace(d, "secret")),
        A::OauthSecretLeaked => Phrase::new("reported the client secret of ", " as leaked; it was replaced"),
        A::OauthSecretGraceFinished => Phrase::new("ended the grace of the previous client secret of ", " early"),
        A::OauthSecretGraceExtended => {
            Phrase::new("extended the grace of the previous client secret of ", "").then(&until(d))
        }
        A::OauthSecretRotationBusy => {
            Phrase::new("was warned that the previous client secret of ", " is still in use near the end of its grace")
        }
        A::OauthConsentGranted => Phrase::new("authorized the app ", "").then(&scopes_clause(d)),
        A::OauthConsentRevoked => Phrase::new("took back the access of the app ", ""),
        A::OauthTokenIssued => Phrase::new("was issued an access token for ", "").then(&match text(d, "grant_type") {
            Some(g) => format!(" ({})", readable_action(g)),
            None => String::new(),
        }),
        A::OauthTokenRevoked => Phrase::new("revoked tokens of the app ", "").then(&match count(d, "tokens_revoked") {
            0 => reason.clone(),
            n => format!(" ({}){reason}", plural(n, "token", "tokens")),
        }),
        A::OauthTokenFailed => Phrase::new("could not get a token for ", "").then(&reason),
        A::OauthTokenRefusedRevoked => Phrase::new("was refused: it presented a revoked token of the app ", ""),
        A::OauthClientAuthFailed => Phrase::new("failed to authenticate as the app ", "").then(&reason),
        A::OauthCodeReused => Phrase::new("reused an authorization code of the app ", "; what it gave was revoked"),
        A::OauthRefreshReuse => Phrase::new("reused an old refresh token of the app ", "; the whole grant was revoked"),
        A::ApiKeyRateLimited => Phrase::new("refused requests of key ", " over the team's rate limit"),
        A::WebhookCreated => Phrase::new("added the webhook endpoint ", ""),
        A::WebhookUpdated => Phrase::new("changed the webhook endpoint ", ""),
        A::WebhookSecretRotated => {
            Phrase::new("rotated the signing secret of the webhook endpoint ", "").then(&grace(d, "secret"))
        }
        A::WebhookDeleted => Phrase::new("deleted the webhook endpoint ", ""),
        A::WebhookDisabled if e.actor_label == crate::service::audit::SYSTEM_LABEL => {
            Phrase::new("disabled the webhook endpoint ", " after its deliveries kept failing")
        }
        A::WebhookDisabled => Phrase::new("disabled the webhook endpoint ", ""),
        A::WebhookEnabled => Phrase::new("enabled the webhook endpoint ", " again"),
    }
    .object_or_not(has_object)
}

impl Phrase {
    /// Without an object to name, a sentence that expects one says so
    /// rather than dangling.
    fn object_or_not(mut self, has_object: bool) -> Self {
        if self.with_object && !has_object {
            self.before.push_str("(unknown)");
        }
        self
    }
}

fn scopes_clause(d: &Value) -> String {
    match d.get("scopes").and_then(Value::as_array) {
        Some(s) if !s.is_empty() => {
            let list: Vec<&str> = s.iter().filter_map(Value::as_str).collect();
            format!(" to {}", list.join(", "))
        }
        _ => String::new(),
    }
}

/// `api_key.refused_revoked` → "api key: refused revoked".
fn readable_action(action: &str) -> String {
    action.replace('.', ": ").replace('_', " ")
}

/// Labels for detail fields that read badly when merely de-underscored.
fn detail_label(field: &str) -> String {
    let known = match field {
        "grace_seconds" => "Grace",
        "old_expires_at" => "Old key stops",
        "new_key_id" => "New key",
        "narrowed_from" => "Scopes before",
        "expires_at" => "Expires",
        "allowed_ips" => "Allowed IPs",
        "max_key_lifetime_days" => "Longest key lifetime (days)",
        "require_totp" => "Two-factor required",
        "url" => "Where",
        "user_id" => "Person",
        "grant_id" => "Grant",
        "token_id" => "Token",
        "interval_secs" => "Counted over",
        "from" => "From",
        "to" => "To",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    let words = field.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// Whether a number in this field is a moment (unix seconds).
fn is_moment(field: &str) -> bool {
    field.ends_with("_at") || field == "from" || field == "to"
}

fn detail_list(d: &Value, names: &ObjectNames, now: i64) -> Vec<Detail> {
    let Some(map) = d.as_object() else { return Vec::new() };
    map.iter()
        .map(|(field, v)| {
            let label = detail_label(field);
            if let (true, Some(t)) = (is_moment(field), v.as_i64()) {
                return Detail { label, text: String::new(), when: Some(When::at(t, now)) };
            }
            let text = match (field.as_str(), v) {
                ("new_key_id", Value::String(id)) => {
                    let kind = ObjectKind::ApiKey.as_str().to_owned();
                    match names.get(&(kind, id.clone())) {
                        Some(n) => format!("{} ({})", n.name, n.code.clone().unwrap_or_default()),
                        None => id.clone(),
                    }
                }
                (f, Value::Number(n)) if f.ends_with("_seconds") || f.ends_with("_secs") => match n.as_i64() {
                    Some(0) => "none".into(),
                    Some(s) => format::duration(s),
                    None => n.to_string(),
                },
                ("role" | "from" | "to", Value::String(r)) => role(Some(r)),
                ("method", Value::String(m)) => match m.as_str() {
                    "password+totp" => "password and two-factor code".into(),
                    "password+recovery_code" => "password and recovery code".into(),
                    other => other.replace('_', " "),
                },
                ("grant_type", Value::String(g)) => g.replace('_', " "),
                (f, Value::Null) if f.ends_with("_at") => "never".into(),
                (_, v) => value_text(v),
            };
            Detail { label, text, when: None }
        })
        .collect()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "none".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
    }
}

/// The action filter's choices: every kind of action in words, grouped,
/// with "all of a group" first (a prefix such as `api_key.`).
pub fn action_choices() -> Vec<(&'static str, Vec<(String, String)>)> {
    const GROUPS: [(&str, &str, &str); 11] = [
        ("api_key.", "API keys", "Anything about API keys"),
        ("service_key.", "Service keys", "Anything about service keys"),
        ("oauth.", "OAuth apps and tokens", "Anything about OAuth"),
        ("member.", "Members", "Anything about members"),
        ("invite.", "Invitations", "Anything about invitations"),
        ("team.", "Team settings", "Any change of team settings"),
        ("login.", "Sign-ins", "Any sign-in"),
        ("totp.", "Two-factor authentication", "Anything about two-factor"),
        ("password.", "Passwords", "Any password change"),
        ("session.", "Sessions", "Any session signed out"),
        ("webhook.", "Webhooks", "Anything about webhook endpoints"),
    ];
    let mut out: Vec<(&'static str, Vec<(String, String)>)> =
        GROUPS.iter().map(|(prefix, label, all)| (*label, vec![((*prefix).to_owned(), (*all).to_owned())])).collect();
    let mut other = Vec::new();
    for a in AuditAction::ALL {
        let item = (a.as_str().to_owned(), action_name(*a).to_owned());
        match GROUPS.iter().position(|(p, _, _)| a.as_str().starts_with(p)) {
            Some(i) => out[i].1.push(item),
            None => other.push(item),
        }
    }
    out.push(("Other", other));
    out
}

/// An action's name in the filter ("Key revoked").
pub fn action_name(action: AuditAction) -> &'static str {
    use AuditAction as A;
    match action {
        A::SetupCompleted => "Latchkey set up",
        A::UserCreated => "Account created",
        A::LoginSucceeded => "Signed in",
        A::LoginFailed => "Sign-in failed",
        A::LoginTotpFailed => "Wrong two-factor code",
        A::Logout => "Signed out",
        A::PasswordChanged => "Password changed",
        A::SessionRevoked => "Session signed out",
        A::TotpEnabled => "Two-factor turned on",
        A::TotpDisabled => "Two-factor turned off",
        A::TotpResetByOperator => "Two-factor reset by the operator",
        A::TotpRecoveryCodeUsed => "Recovery code used",
        A::TotpRecoveryCodesRegenerated => "New recovery codes",
        A::TeamTotpPolicyChanged => "Two-factor policy changed",
        A::TeamPlanChanged => "Plan changed",
        A::TeamKeyPolicyChanged => "Key lifetime limit changed",
        A::MemberInvited => "Member invited",
        A::MemberRoleChanged => "Role changed",
        A::MemberRemoved => "Member removed",
        A::InviteAccepted => "Invitation accepted",
        A::InviteRevoked => "Invitation revoked",
        A::ApiKeyCreated => "Key created",
        A::ApiKeyRolled => "Key rolled",
        A::ApiKeyRevoked => "Key revoked",
        A::ApiKeyRevokedBySupport => "Key revoked by support",
        A::ApiKeyRenamed => "Key renamed",
        A::ApiKeyUpdated => "Key changed",
        A::ApiKeyDisabled => "Key disabled",
        A::ApiKeyEnabled => "Key enabled",
        A::ApiKeyGraceFinished => "Old key ended early",
        A::ApiKeyGraceExtended => "Old key's grace extended",
        A::ApiKeyExpiring => "Expiry reminder",
        A::ApiKeyRotationBusy => "Old key still in use",
        A::ApiKeyTransferred => "Key taken over",
        A::ApiKeyLeakReported => "Key reported as leaked",
        A::ApiKeyRefusedRevoked => "Revoked key refused",
        A::ServiceKeyCreated => "Service key created",
        A::OauthAppRegistered => "App registered",
        A::OauthAppUpdated => "App settings changed",
        A::OauthAppDeleted => "App deleted",
        A::OauthSecretRotated => "Client secret rotated",
        A::OauthSecretLeaked => "Client secret reported as leaked",
        A::OauthSecretGraceFinished => "Previous client secret ended early",
        A::OauthSecretGraceExtended => "Previous client secret's grace extended",
        A::OauthSecretRotationBusy => "Previous client secret still in use",
        A::OauthConsentGranted => "App authorized",
        A::OauthConsentRevoked => "App access taken back",
        A::OauthTokenIssued => "Token issued",
        A::OauthTokenRevoked => "Tokens revoked",
        A::OauthTokenFailed => "Token request failed",
        A::OauthTokenRefusedRevoked => "Revoked token refused",
        A::OauthClientAuthFailed => "App authentication failed",
        A::OauthCodeReused => "Authorization code reused",
        A::OauthRefreshReuse => "Refresh token reused",
        A::ApiKeyRateLimited => "Key rate limited",
        A::WebhookCreated => "Webhook endpoint added",
        A::WebhookUpdated => "Webhook endpoint changed",
        A::WebhookSecretRotated => "Webhook secret rotated",
        A::WebhookDeleted => "Webhook endpoint deleted",
        A::WebhookDisabled => "Webhook endpoint disabled",
        A::WebhookEnabled => "Webhook endpoint enabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::audit::ObjectName;

    fn event(action: &str, object: Option<(&str, &str)>, details: Value) -> AuditEvent {
        AuditEvent {
            id: 1,
            created_at: 1_800_000_000 - 300,
            team_id: Some("team_1".into()),
            actor_id: Some("usr_1".into()),
            actor_label: "owner@acme.test".into(),
            action: action.into(),
            object_type: object.map(|(k, _)| k.to_owned()),
            object_id: object.map(|(_, i)| i.to_owned()),
            ip: Some("203.0.113.7".into()),
            user_agent: Some(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".into(),
            ),
            details: details.to_string(),
        }
    }

    fn names() -> ObjectNames {
        let mut n = ObjectNames::new();
        n.insert(
            ("api_key".into(), "key_1".into()),
            ObjectName {
                name: "Billing worker".into(), code: Some("lk_7iRm…".into()), team_id: Some("team_1".into())
            },
        );
        n.insert(
            ("user".into(), "usr_2".into()),
            ObjectName { name: "dev@acme.test".into(), code: None, team_id: Some("team_1".into()) },
        );
        n
    }

    fn line(action: &str, object: Option<(&str, &str)>, details: Value) -> EventLine {
        let mut lines = sentences(vec![event(action, object, details)], &names(), Viewer::Team, 1_800_000_000);
        lines.remove(0)
    }

    #[test]
    fn events_read_as_sentences_with_links() {
        let l = line("api_key.revoked", Some(("api_key", "key_1")), serde_json::json!({"name": "Billing worker"}));
        assert_eq!(l.text(), "owner@acme.test revoked key Billing worker (lk_7iRm…)");
        assert_eq!(l.object.unwrap().href.as_deref(), Some("/settings/developer/api-keys/key_1"));
        assert_eq!(l.device, "Chrome on macOS");
        assert_eq!(l.when.words, "5 minutes ago");
        let l = line(
            "member.role_changed",
            Some(("user", "usr_2")),
            serde_json::json!({"from": "developer", "to": "admin"}),
        );
        assert_eq!(l.text(), "owner@acme.test changed dev@acme.test’s role from Developer to Admin");
        assert_eq!(
            line("login.succeeded", None, serde_json::json!({"method": "password"})).text(),
            "owner@acme.test signed in"
        );
        let gone = line("oauth.app_deleted", Some(("oauth_app", "app_9")), serde_json::json!({"name": "Old app"}));
        assert_eq!(gone.text(), "owner@acme.test deleted the app Old app");
        assert_eq!(gone.object.unwrap().href, None, "no link to what no longer exists");
        let odd = line("space.launched", None, serde_json::json!({}));
        assert_eq!(odd.text(), "owner@acme.test did “space: launched”");
    }

    #[test]
    fn every_action_has_a_sentence() {
        for a in AuditAction::ALL {
            let l = line(a.as_str(), Some(("api_key", "key_1")), serde_json::json!({}));
            assert!(!l.text().contains("did “") && !l.text().contains(a.as_str()), "{}: {}", a.as_str(), l.text());
            assert!(!action_name(*a).is_empty());
        }
    }

    #[test]
    fn details_are_labelled_and_times_are_moments() {
        let l = line(
            "api_key.rolled",
            Some(("api_key", "key_1")),
            serde_json::json!({"new_key_id": "key_1", "grace_seconds": 86400, "old_expires_at": 1_800_086_400}),
        );
        assert!(l.text().ends_with("into a new key; the old key was given 24 hours of grace"), "{}", l.text());
        let grace = l.details.iter().find(|d| d.label == "Grace").unwrap();
        assert_eq!(grace.text, "24 hours");
        let stops = l.details.iter().find(|d| d.label == "Old key stops").unwrap();
        assert_eq!(stops.when.as_ref().unwrap().words, "in 1 day");
        let new = l.details.iter().find(|d| d.label == "New key").unwrap();
        assert_eq!(new.text, "Billing worker (lk_7iRm…)");
    }

    #[test]
    fn a_narrowed_roll_and_a_reminder_say_what_they_did() {
        let l = line(
            "api_key.rolled",
            Some(("api_key", "key_1")),
            serde_json::json!({"grace_seconds": 0, "scopes": ["products:read"],
                               "narrowed_from": ["products:read", "products:write"]}),
        );
        assert!(
            l.text().ends_with(
                "into a new key with only the scopes it used (products:read); the old key stopped working at once"
            ),
            "{}",
            l.text()
        );
        let before = l.details.iter().find(|d| d.label == "Scopes before").unwrap();
        assert_eq!(before.text, "products:read, products:write");
        let mut e = event("api_key.expiring", Some(("api_key", "key_1")), serde_json::json!({"days": 7}));
        (e.actor_id, e.actor_label) = (None, crate::service::audit::SYSTEM_LABEL.into());
        let l = sentences(vec![e], &names(), Viewer::Team, 1_800_000_000).remove(0);
        assert_eq!(l.text(), "Latchkey reminded the team that key Billing worker (lk_7iRm…) expires in 7 days");
    }
}
