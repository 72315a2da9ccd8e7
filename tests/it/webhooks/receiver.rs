//! A webhook receiver on loopback, written for the tests over a bare
//! `TcpListener`: it records every request and answers as told (200, any
//! status, a redirect, a slow or an endless answer); and the receiver's side
//! of Standard Webhooks, implemented here independently of Latchkey.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Mode {
    Status(u16),
    /// 302 to this URL.
    Redirect(String),
    /// Waits this long before answering 200.
    Slow(Duration),
    /// 200, then a body that never ends.
    Endless,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Received>,
    mode: Option<Mode>,
    /// Bytes of an endless answer written before the client hung up.
    endless_written: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Self { port, shared }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn answer(&self, mode: Mode) {
        self.shared.lock().unwrap().mode = Some(mode);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().unwrap().requests.clone()
    }

    pub fn endless_written(&self) -> usize {
        self.shared.lock().unwrap().endless_written
    }

    /// Waits (bounded) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} webhook requests, got {}", self.requests().len());
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let Some(received) = read_request(&mut stream).await else { return };
    let mode = {
        let mut s = shared.lock().unwrap();
        s.requests.push(received);
        s.mode.clone().unwrap_or(Mode::Status(200))
    };
    let head = |status: &str, extra: &str| format!("HTTP/1.1 {status}\r\n{extra}connection: close\r\n");
    let reply = match mode {
        Mode::Status(code) => format!("{}content-length: 2\r\n\r\nok", head(&format!("{code} X"), "")),
        Mode::Redirect(to) => format!("{}content-length: 0\r\n\r\n", head("302 Found", &format!("location: {to}\r\n"))),
        Mode::Slow(wait) => {
            tokio::time::sleep(wait).await;
            format!("{}content-length: 2\r\n\r\nok", head("200 OK", ""))
        }
        Mode::Endless => {
            let _ = stream.write_all(head("200 OK", "content-type: text/plain\r\n").as_bytes()).await;
            let _ = stream.write_all(b"\r\n").await;
            let chunk = vec![b'x'; 16 * 1024];
            let mut written = 0;
            // Up to 100 MB, for at most about 20 seconds.
            for _ in 0..6400 {
                if tokio::time::timeout(Duration::from_secs(3), stream.write_all(&chunk))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    break;
                }
                written += chunk.len();
                shared.lock().unwrap().endless_written = written;
            }
            return;
        }
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    Some(Received {
        path,
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
    })
}

/// The receiver's check (Standard Webhooks): one of the space-separated
/// `v1,` signatures is base64(HMAC-SHA256(secret bytes, "id.timestamp.body")).
pub fn signed_with(secret: &str, r: &Received) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}
