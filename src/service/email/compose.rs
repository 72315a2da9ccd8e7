//! One notice, one recipient → one message: plain text and simple HTML
//! (multipart/alternative) from `templates/email/message.{txt,html}`, with
//! the RFC 8058 one-click unsubscribe headers on reminders.

use askama::Template;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use super::content::{self, View};
use super::{one_line, unsubscribe};
use crate::service::crypto::Keys;
use crate::service::notify::{Notice, NoticeKind, Recipient};

/// Where links point, and the key that signs unsubscribe links.
#[derive(Clone)]
pub struct Site {
    public_url: String,
    keys: Keys,
}

impl Site {
    pub fn new(public_url: &str, keys: Keys) -> Self {
        Self { public_url: public_url.trim_end_matches('/').to_owned(), keys }
    }

    /// An absolute URL of a page of ours.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    pub fn key_url(&self, key_id: &str) -> String {
        const SEGMENT: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');
        let id = percent_encoding::utf8_percent_encode(key_id, SEGMENT);
        self.url(&format!("/settings/developer/api-keys/{id}"))
    }

    /// The one-click unsubscribe URL of `user` for `kind`.
    pub fn unsubscribe_url(&self, user_id: &str, kind: NoticeKind) -> String {
        self.url(&format!("/email/unsubscribe?token={}", unsubscribe::token(&self.keys, user_id, kind)))
    }
}

#[derive(Template)]
#[template(path = "email/message.txt")]
struct TextEmail<'a> {
    v: &'a View,
}

#[derive(Template)]
#[template(path = "email/message.html")]
struct HtmlEmail<'a> {
    v: &'a View,
}

/// The message telling `to` about `notice`, or `None` when the notice has
/// nothing for them.
pub fn letter(notice: &Notice, to: &Recipient, site: &Site, from: &Mailbox) -> anyhow::Result<Option<Message>> {
    let Some(view) = content::view(notice, to, site) else { return Ok(None) };
    let text = TextEmail { v: &view }.render()?;
    let html = HtmlEmail { v: &view }.render()?;
    let address = to.email.parse().map_err(|e| anyhow::anyhow!("the recipient's address does not parse: {e}"))?;
    let mut builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, address))
        .subject(one_line(&view.subject, 150))
        .message_id(None)
        .raw_header(raw("Auto-Submitted", "auto-generated"));
    if let Some(url) = &view.unsubscribe {
        builder = builder
            .raw_header(raw("List-Unsubscribe", &format!("<{url}>")))
            .raw_header(raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"));
    }
    let parts = MultiPart::alternative()
        .singlepart(part(ContentType::TEXT_PLAIN, text))
        .singlepart(part(ContentType::TEXT_HTML, html));
    Ok(Some(builder.multipart(parts)?))
}

fn raw(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// A part in quoted-printable (any text, lines kept short).
fn part(content_type: ContentType, text: String) -> SinglePart {
    let body = Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable).unwrap_or_else(Body::new);
    SinglePart::builder().header(content_type).body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PlainSecret;
    use crate::service::notify::KeyRef;

    fn site() -> Site {
        Site::new("https://portal.example.test/", Keys::derive(b"a-secret-that-is-long-enough-0123456789"))
    }

    fn from() -> Mailbox {
        "Latchkey <no-reply@example.test>".parse().unwrap()
    }

    fn formatted(m: &Message) -> String {
        String::from_utf8(m.formatted()).unwrap()
    }

    #[test]
    fn a_reminder_has_both_parts_and_one_click_unsubscribe() {
        let key = KeyRef { id: "key_1".into(), name: "Billing".into(), prefix: "lk_abcd1234".into() };
        let to = Recipient::user("usr_1", "a@example.test");
        let n = Notice::new(NoticeKind::KeyExpiring, vec![to.clone()], "x".into())
            .key(key)
            .details(serde_json::json!({"days": 7}));
        let m = formatted(&letter(&n, &to, &site(), &from()).unwrap().unwrap());
        assert!(m.contains("multipart/alternative") && m.contains("text/plain") && m.contains("text/html"), "{m}");
        assert!(m.contains("List-Unsubscribe: <https://portal.example.test/email/unsubscribe?token="), "{m}");
        assert!(m.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(m.contains("Subject: API key Billing expires in 7 days"), "{m}");
        assert!(!m.contains("<img"), "no remote images, no tracking pixel");
    }

    #[test]
    fn security_email_has_no_unsubscribe_and_an_invite_needs_its_token() {
        let to = Recipient::user("usr_1", "a@example.test");
        let n = Notice::new(NoticeKind::PasswordChanged, vec![to.clone()], "x".into());
        let m = formatted(&letter(&n, &to, &site(), &from()).unwrap().unwrap());
        assert!(!m.contains("List-Unsubscribe"));
        let mut invite = Notice::new(NoticeKind::Invite, vec!["b@example.test".into()], "x".into());
        assert!(letter(&invite, &"b@example.test".into(), &site(), &from()).unwrap().is_none());
        invite.invite_token = Some(PlainSecret::new("T0k3n".into()));
        let m = formatted(&letter(&invite, &"b@example.test".into(), &site(), &from()).unwrap().unwrap());
        assert!(m.contains("https://portal.example.test/invite/T0k3n"), "{m}");
    }

    #[test]
    fn typed_text_cannot_add_a_header() {
        let to = Recipient::from("a@example.test");
        let mut n = Notice::new(NoticeKind::Invite, vec![to.clone()], "x".into());
        n.details = serde_json::json!({"team_name": "Acme\r\nBcc: evil@example.test", "role": "viewer\nX-Evil: 1"});
        n.invite_token = Some(PlainSecret::new("t".into()));
        let message = letter(&n, &to, &site(), &from()).unwrap().unwrap();
        let m = formatted(&message);
        let headers = m.split("\r\n\r\n").next().unwrap();
        assert!(headers.lines().all(|l| !l.starts_with("Bcc:") && !l.starts_with("X-Evil:")), "{headers}");
        assert_eq!(message.envelope().to().len(), 1);
    }
}
