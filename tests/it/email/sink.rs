//! An SMTP sink for tests: a few lines over `tokio::net::TcpListener` that
//! speak EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT, and keep each
//! message's envelope and data. It can refuse the first messages with a
//! transient error (451) to show retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    /// The envelope's recipients (RCPT TO), whatever the headers say.
    pub to: Vec<String>,
    /// The message as sent (headers and body, dot-stuffing undone).
    pub data: String,
}

pub struct Sink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start() -> Self {
        Self::refusing_first(0).await
    }

    /// A sink that answers 451 to the first `n` messages.
    pub async fn refusing_first(n: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(AtomicUsize::new(n));
        let kept = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, kept.clone(), refusals.clone()));
            }
        });
        Self { port, mails, task }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Forgets what was received so far (the invitations of a test's setup).
    pub fn clear(&self) {
        self.mails.lock().unwrap().clear();
    }

    /// The messages whose envelope names `email`.
    pub fn to(&self, email: &str) -> Vec<Mail> {
        self.mails().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(email))).collect()
    }
}

async fn session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>, refusals: Arc<AtomicUsize>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let (mut from, mut to) = (String::new(), Vec::new());
    let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if command.starts_with("MAIL FROM:") {
            if refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                b"451 try again later\r\n"
            } else {
                from = angle(&line);
                to.clear();
                b"250 ok\r\n"
            }
        } else if command.starts_with("RCPT TO:") {
            to.push(angle(&line));
            b"250 ok\r\n"
        } else if command == "DATA" {
            let _ = write.write_all(b"354 end with .\r\n").await;
            let data = read_data(&mut lines).await;
            mails.lock().unwrap().push(Mail { from: from.clone(), to: std::mem::take(&mut to), data });
            b"250 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else if command == "RSET" {
            to.clear();
            b"250 ok\r\n"
        } else {
            b"250 ok\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The address between `<` and `>`.
fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end].to_owned()
}

async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut data = String::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 || line == ".\r\n" {
            return data;
        }
        data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
    }
}

impl Mail {
    /// The message's header section.
    pub fn head(&self) -> &str {
        self.data.split("\r\n\r\n").next().unwrap_or_default()
    }

    /// A header's value, unfolded (the first with this name).
    pub fn header(&self, name: &str) -> Option<String> {
        let unfolded = self.head().replace("\r\n ", " ").replace("\r\n\t", " ");
        let prefix = format!("{}:", name.to_ascii_lowercase());
        unfolded
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }

    /// The Subject as a mail client shows it (RFC 2047 encoded-words decoded).
    pub fn subject(&self) -> String {
        encoded_words_decoded(&self.header("Subject").expect("a Subject header"))
    }

    /// The names of every header, in order.
    pub fn header_names(&self) -> Vec<String> {
        self.head()
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
            .collect()
    }

    /// The decoded body of the part of `content_type` (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> Option<String> {
        let at = self.data.find(&format!("Content-Type: {content_type}"))?;
        let rest = &self.data[at..];
        let (head, body) = rest.split_once("\r\n\r\n")?;
        let body = body.split("\r\n--").next().unwrap_or_default();
        Some(if head.contains("quoted-printable") {
            quoted_printable(body)
        } else if head.contains("base64") {
            let joined: String = body.split_whitespace().collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(joined).unwrap()).unwrap()
        } else {
            body.to_owned()
        })
    }

    pub fn text(&self) -> String {
        self.part("text/plain").expect("a text/plain part")
    }

    pub fn html(&self) -> String {
        self.part("text/html").expect("a text/html part")
    }

    /// Everything a reader could see: the headers, then each part decoded.
    pub fn readable(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.head(),
            self.part("text/plain").unwrap_or_default(),
            self.part("text/html").unwrap_or_default()
        )
    }
}

/// An unfolded header value as a mail client shows it: every RFC 2047
/// encoded-word (UTF-8, B or Q) decoded, the spaces between two of them
/// dropped, anything else as it is.
pub fn encoded_words_decoded(value: &str) -> String {
    let mut out = Vec::new();
    let (mut rest, mut after_word) = (value, false);
    while !rest.is_empty() {
        if let Some((bytes, tail)) = encoded_word(rest) {
            out.extend(bytes);
            (rest, after_word) = (tail, true);
            continue;
        }
        let space = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if space > 0 {
            let next = &rest[space..];
            if !(after_word && encoded_word(next).is_some()) {
                out.extend(&rest.as_bytes()[..space]);
            }
            rest = next;
            continue;
        }
        let c = rest.chars().next().unwrap();
        out.extend(c.to_string().as_bytes());
        (rest, after_word) = (&rest[c.len_utf8()..], false);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bytes of the encoded-word `text` starts with, and what follows it.
fn encoded_word(text: &str) -> Option<(Vec<u8>, &str)> {
    let w = text.strip_prefix("=?")?;
    let (charset, w) = w.split_once('?')?;
    let (encoding, w) = w.split_once('?')?;
    let (encoded, tail) = w.split_once("?=")?;
    if !charset.eq_ignore_ascii_case("utf-8") || encoded.contains(' ') {
        return None;
    }
    let bytes = match encoding {
        "b" | "B" => base64::engine::general_purpose::STANDARD.decode(encoded).ok()?,
        "q" | "Q" => quoted_printable_bytes(&encoded.replace('_', " ")),
        _ => return None,
    };
    Some((bytes, tail))
}

/// RFC 2045 quoted-printable, decoded (soft line breaks joined).
fn quoted_printable(body: &str) -> String {
    String::from_utf8(quoted_printable_bytes(body)).unwrap()
}

fn quoted_printable_bytes(body: &str) -> Vec<u8> {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
        ) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
