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
        .raw_header(subject(&one_line(&view.subject, 150)))
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

/// The Subject header. lettre writes an all-ASCII word as it is, so a typed
/// `=?utf-8?q?…?=` (a key name) would reach mail clients as an RFC 2047
/// encoded-word and be decoded into whatever it names (a right-to-left
/// override, say). A subject holding `=?` is therefore sent whole as
/// encoded-words of our own, which decode back to the literal text.
fn subject(text: &str) -> HeaderValue {
    let name = HeaderName::new_from_ascii_str("Subject");
    if !text.contains("=?") {
        return HeaderValue::new(name, text.to_owned());
    }
    HeaderValue::dangerous_new_pre_encoded(name, text.to_owned(), encoded_words(text))
}

/// How many bytes of text one encoded-word carries: 39 bytes are 52 base64
/// characters, a word of 64 (`=?utf-8?b?` and `?=` around them), so even the
/// first line (`Subject: ` and a word) stays within RFC 2047's 76 characters.
const WORD_BYTES: usize = 39;

/// `text` as base64 encoded-words (RFC 2047), each whole characters of
/// UTF-8, folded one to a line. Only ASCII comes out, and no line break
/// that is not followed by a space: nothing can start a header.
fn encoded_words(text: &str) -> String {
    use base64::Engine;
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (at, c) in text.char_indices() {
        if at + c.len_utf8() - start > WORD_BYTES {
            words.push(&text[start..end]);
            start = at;
        }
        end = at + c.len_utf8();
    }
    words.push(&text[start..end]);
    words
        .iter()
        .map(|w| format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(w)))
        .collect::<Vec<_>>()
        .join("\r\n ")
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

    /// The Subject header of a formatted message, unfolded.
    fn subject_of(m: &str) -> String {
        let head = m.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        head.split("\r\n").find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_owned()
    }

    /// What a mail client shows for a header value: every RFC 2047
    /// encoded-word (B or Q, UTF-8) decoded, the space between two of them
    /// dropped.
    fn decoded(value: &str) -> String {
        use base64::Engine;
        let mut out = Vec::new();
        let (mut rest, mut after_word) = (value, false);
        while !rest.is_empty() {
            let word = rest.strip_prefix("=?").and_then(|w| {
                let (charset, w) = w.split_once('?')?;
                let (encoding, w) = w.split_once('?')?;
                let (text, tail) = w.split_once("?=")?;
                let bytes = match encoding {
                    "b" | "B" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
                    "q" | "Q" => q_decoded(text)?,
                    _ => return None,
                };
                charset.eq_ignore_ascii_case("utf-8").then_some((bytes, tail))
            });
            if let Some((bytes, tail)) = word {
                out.extend(bytes);
                (rest, after_word) = (tail, true);
                continue;
            }
            let space = rest.len() - rest.trim_start_matches(' ').len();
            if space > 0 {
                let next = &rest[space..];
                if !(after_word && next.starts_with("=?")) {
                    out.extend(&rest.as_bytes()[..space]);
                }
                rest = next;
                continue;
            }
            let c = rest.chars().next().unwrap();
            out.extend(c.to_string().as_bytes());
            (rest, after_word) = (&rest[c.len_utf8()..], false);
        }
        String::from_utf8(out).unwrap()
    }

    fn q_decoded(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = text.bytes();
        while let Some(b) = bytes.next() {
            out.push(match b {
                b'_' => b' ',
                b'=' => u8::from_str_radix(std::str::from_utf8(&[bytes.next()?, bytes.next()?]).ok()?, 16).ok()?,
                b => b,
            });
        }
        Some(out)
    }

    fn reminder(name: &str) -> String {
        let key = KeyRef { id: "key_1".into(), name: name.into(), prefix: "lk_abcd1234".into() };
        let to = Recipient::user("usr_1", "a@example.test");
        let n = Notice::new(NoticeKind::KeyExpiring, vec![to.clone()], "x".into())
            .key(key)
            .details(serde_json::json!({"days": 7}));
        formatted(&letter(&n, &to, &site(), &from()).unwrap().unwrap())
    }

    #[test]
    fn a_typed_encoded_word_reaches_the_reader_as_typed() {
        assert_eq!(decoded("a =?utf-8?q?=E2=80=AEx?= b"), "a \u{202e}x b", "the test decoder decodes");
        for name in [
            "=?utf-8?q?=E2=80=AEcod.exe?=",
            "=?UTF-8?B?4oCuY29kLmV4ZQ==?=",
            "x =?utf-8?q?=E2=80=AE?= =?utf-8?b?4oCu?= y",
            "=?",
            "Größe =?iso-8859-1?q?=E9?= ünd",
        ] {
            let m = reminder(name);
            let subject = subject_of(&m);
            assert!(name == "=?" || !subject.contains(name), "not as typed: {subject}");
            assert_eq!(decoded(&subject), format!("API key {name} expires in 7 days"), "{subject}");
            let head = m.split("\r\n\r\n").next().unwrap();
            assert!(head.is_ascii(), "{head}");
            let folded = head.split("Subject: ").nth(1).unwrap();
            for line in folded.split("\r\n").take_while(|l| l.starts_with(' ') || l.starts_with("=?")) {
                assert!(line.len() + "Subject: ".len() <= 76, "{line}");
            }
        }
    }

    #[test]
    fn a_long_subject_with_an_encoded_word_is_folded_into_short_whole_words() {
        let name = format!("=?utf-8?b?4oCu?= {}", "é€😀x".repeat(30));
        let subject = subject(&one_line(&format!("API key {name} expires in 7 days"), 150));
        let mut headers = lettre::message::header::Headers::new();
        headers.insert_raw(subject);
        let line = headers.to_string();
        for (i, l) in line.trim_end().split("\r\n").enumerate() {
            assert!(l.len() <= 76, "{l}");
            let word = if i == 0 { l.strip_prefix("Subject: ").unwrap() } else { l.strip_prefix(' ').unwrap() };
            assert!(word.starts_with("=?utf-8?b?") && word.ends_with("?=") && word.len() <= 75, "{word}");
            assert!(!decoded(word).contains('\u{fffd}'), "whole characters in each word");
        }
        let shown = decoded(line.trim_end().strip_prefix("Subject: ").unwrap().replace("\r\n ", " ").as_str());
        assert_eq!(shown, one_line(&format!("API key {name} expires in 7 days"), 150));
    }

    #[test]
    fn a_subject_without_an_encoded_word_is_unchanged() {
        assert!(reminder("Billing ?= = ?").contains("Subject: API key Billing ?= = ? expires in 7 days\r\n"));
        assert!(reminder("Größe").contains("Subject: API key =?utf-8?b?R3LDtsOfZQ==?= expires in 7 days\r\n"));
    }
}
