//! Typed settings: an optional TOML file (`LATCHKEY_CONFIG`) overlaid by the
//! environment. Both use the same key names (`LATCHKEY_BIND`, `DATABASE_URL`, …).
//!
//! Rules: unknown keys are refused with a message naming them; the server secret
//! is never printed (it is a `SecretString` and `Config`'s `Debug` redacts it).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Every key the file or the environment may set, with its meaning.
pub const KEYS: &[(&str, &str)] = &[
    ("LATCHKEY_BIND", "address to listen on"),
    ("LATCHKEY_DATA_DIR", "folder for the SQLite file and the generated secret"),
    ("DATABASE_URL", "sqlite://PATH or postgres://…"),
    ("LATCHKEY_PUBLIC_URL", "issuer and base of every absolute URL"),
    ("LATCHKEY_SECRET", "server secret (at least 32 characters)"),
    ("REDIS_URL", "Redis shared by every instance: limits, throttles, instant revocation"),
    ("LATCHKEY_REDIS_PREFIX", "prefix of every Redis key and channel of this deployment"),
    ("LATCHKEY_REQUIRE_HTTPS", "refuse plain-HTTP API requests"),
    ("LATCHKEY_TRUSTED_PROXIES", "comma-separated proxy addresses"),
    ("LATCHKEY_API_KEY_PREFIX", "prefix of API keys"),
    ("LATCHKEY_SCOPES", "comma-separated scope catalog"),
    ("LATCHKEY_DEFAULT_PLAN", "rate-limit plan of teams without one: free, starter, standard, pro, unlimited"),
    ("LATCHKEY_USAGE_FLUSH_SECONDS", "how often key usage is written to the database"),
    ("LATCHKEY_REMINDER_SECONDS", "how often keys about to expire are looked for, to remind people (at most 86400)"),
    ("LATCHKEY_SESSION_IDLE_MINUTES", "idle session timeout"),
    ("LATCHKEY_SESSION_ABSOLUTE_HOURS", "absolute session lifetime"),
    ("LATCHKEY_PASSWORD_THREADS", "passwords hashed at once (default: one per core)"),
    ("LATCHKEY_PASSWORD_WAIT_MS", "how long a sign-in waits for a hashing thread before a 503"),
    ("LATCHKEY_METRICS_BIND", "address of the Prometheus /metrics listener (unset: no metrics listener)"),
    ("LATCHKEY_SMTP_URL", "smtp://, smtps:// or smtp+starttls:// server for email (unset: email is logged only)"),
    ("LATCHKEY_SMTP_FROM", "sender of every email, e.g. Latchkey <no-reply@example.com>"),
    ("LATCHKEY_WEBHOOK_ALLOW_PRIVATE", "let webhooks reach http:// and private, loopback or link-local addresses"),
];

/// Environment variables of ours that are not settings.
const NON_SETTING_ENV: &[&str] = &["LATCHKEY_CONFIG", "LATCHKEY_LOG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key{}: {} (known keys: {})", if .0.len() > 1 { "s" } else { "" }, .0.join(", "), known_keys())]
    UnknownKeys(Vec<String>),
    #[error("configuration file {path}: {message}")]
    File { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("server secret file {path}: {source}")]
    Secret { path: String, source: std::io::Error },
}

fn known_keys() -> String {
    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }
}

#[derive(Clone)]
pub struct Config {
    pub bind: String,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub public_url: String,
    pub secret: SecretString,
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (several deployments may share one Redis).
    pub redis_prefix: String,
    pub require_https: bool,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub api_key_prefix: String,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    pub scopes: Vec<String>,
    pub default_plan: String,
    pub usage_flush_seconds: i64,
    /// How often the expiry reminders are looked for (seconds, at most a day).
    pub reminder_seconds: i64,
    /// Password hashes run at once (argon2id, 19 MiB each).
    pub password_threads: usize,
    /// How long a password check waits for a hashing thread (milliseconds).
    pub password_wait_ms: u64,
    /// Where `/metrics` is served, apart from the public port (unset: nowhere).
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// The SMTP server's URL (it may hold a password); unset: email is logged only.
    pub smtp_url: Option<SecretString>,
    /// The `From` of every email.
    pub smtp_from: String,
    /// Webhook endpoints may use http:// and reach private, loopback and
    /// link-local addresses (an operator's choice, for receivers on their own network).
    pub webhook_allow_private: bool,
}

/// The default scope catalog of DESIGN.md.
pub const DEFAULT_SCOPES: &[&str] = &[
    "messages:send",
    "templates:read",
    "templates:write",
    "conversations:read",
    "conversations:write",
    "products:read",
    "products:write",
    "contacts:read",
    "contacts:write",
    "api_keys:read",
    "api_keys:write",
    "admin",
];

/// The longest interval between two looks for keys about to expire.
pub const MAX_REMINDER_SECONDS: i64 = 86_400;

pub const PLANS: &[&str] = &["free", "starter", "standard", "pro", "unlimited"];

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database", &self.database)
            .field("public_url", &self.public_url)
            .field("secret", &"[redacted]")
            .field("require_https", &self.require_https)
            .field("api_key_prefix", &self.api_key_prefix)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads `LATCHKEY_CONFIG` (if set) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        if let Ok(path) = std::env::var("LATCHKEY_CONFIG") {
            values = read_file(Path::new(&path))?;
        }
        let env: Vec<(String, String)> = std::env::vars().collect();
        values.extend(env_overlay(&env)?);
        Self::from_values(&values)
    }

    /// Builds a configuration from key/value pairs, with every default applied.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let unknown: Vec<String> =
            values.keys().filter(|k| !KEYS.iter().any(|(known, _)| known == k)).cloned().collect();
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownKeys(unknown));
        }
        let get = |k: &str| values.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let bind = get("LATCHKEY_BIND").unwrap_or_else(|| "127.0.0.1:8080".into());
        if bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid("LATCHKEY_BIND", "must be HOST:PORT, e.g. 127.0.0.1:8080"));
        }
        let data_dir = PathBuf::from(get("LATCHKEY_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url =
            get("DATABASE_URL").unwrap_or_else(|| format!("sqlite://{}", data_dir.join("latchkey.db").display()));
        let database = DatabaseUrl::parse(&database_url).map_err(|m| invalid("DATABASE_URL", &m))?;
        let public_url =
            get("LATCHKEY_PUBLIC_URL").unwrap_or_else(|| format!("http://{bind}")).trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(invalid("LATCHKEY_PUBLIC_URL", "must start with http:// or https://"));
        }
        let secret = match get("LATCHKEY_SECRET") {
            Some(s) if s.len() >= 32 => SecretString::from(s),
            Some(_) => return Err(invalid("LATCHKEY_SECRET", "must be at least 32 characters")),
            None => load_or_create_secret(&data_dir)?,
        };
        let require_https = parse_bool("LATCHKEY_REQUIRE_HTTPS", get("LATCHKEY_REQUIRE_HTTPS"))?;
        let trusted_proxies = parse_proxies(get("LATCHKEY_TRUSTED_PROXIES"))?;
        let api_key_prefix = get("LATCHKEY_API_KEY_PREFIX").unwrap_or_else(|| "lk".into());
        if api_key_prefix.is_empty()
            || api_key_prefix.len() > 16
            || !api_key_prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid("LATCHKEY_API_KEY_PREFIX", "1–16 lowercase letters or digits"));
        }
        let session_idle_minutes =
            parse_int("LATCHKEY_SESSION_IDLE_MINUTES", get("LATCHKEY_SESSION_IDLE_MINUTES"), 60)?;
        let session_absolute_hours =
            parse_int("LATCHKEY_SESSION_ABSOLUTE_HOURS", get("LATCHKEY_SESSION_ABSOLUTE_HOURS"), 12)?;
        let scopes = match get("LATCHKEY_SCOPES") {
            None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            Some(list) => parse_scopes(&list)?,
        };
        let default_plan = get("LATCHKEY_DEFAULT_PLAN").unwrap_or_else(|| "free".into());
        if !PLANS.contains(&default_plan.as_str()) {
            return Err(invalid("LATCHKEY_DEFAULT_PLAN", "must be one of free, starter, standard, pro, unlimited"));
        }
        let usage_flush_seconds = parse_int("LATCHKEY_USAGE_FLUSH_SECONDS", get("LATCHKEY_USAGE_FLUSH_SECONDS"), 5)?;
        let reminder_seconds = parse_int("LATCHKEY_REMINDER_SECONDS", get("LATCHKEY_REMINDER_SECONDS"), 300)?;
        if reminder_seconds > MAX_REMINDER_SECONDS {
            // Looked for less often than daily, the one-day reminder could be missed.
            return Err(invalid("LATCHKEY_REMINDER_SECONDS", "must be at most 86400 (one day)"));
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let password_threads = parse_int(
            "LATCHKEY_PASSWORD_THREADS",
            get("LATCHKEY_PASSWORD_THREADS"),
            i64::try_from(cores).unwrap_or(1),
        )?;
        let password_wait_ms = parse_int("LATCHKEY_PASSWORD_WAIT_MS", get("LATCHKEY_PASSWORD_WAIT_MS"), 1500)?;
        let redis_url = get("REDIS_URL").filter(|u| !u.trim().is_empty());
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("redis+unix://"))
        {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// or redis+unix:// (TLS to Redis is not built in: use a local tunnel)",
            ));
        }
        let redis_prefix = get("LATCHKEY_REDIS_PREFIX").unwrap_or_else(|| "latchkey:".into());
        if redis_prefix.is_empty()
            || redis_prefix.len() > 64
            || redis_prefix.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("LATCHKEY_REDIS_PREFIX", "must be 1 to 64 characters without spaces"));
        }
        let metrics_bind = match get("LATCHKEY_METRICS_BIND") {
            None => None,
            Some(b) => Some(
                b.parse().map_err(|_| invalid("LATCHKEY_METRICS_BIND", "must be HOST:PORT, e.g. 127.0.0.1:9090"))?,
            ),
        };
        let smtp_url = get("LATCHKEY_SMTP_URL");
        if let Some(url) = &smtp_url
            && !["smtp://", "smtps://", "smtp+starttls://"].iter().any(|s| url.starts_with(s))
        {
            return Err(invalid("LATCHKEY_SMTP_URL", "must start with smtp://, smtps:// or smtp+starttls://"));
        }
        let smtp_from = get("LATCHKEY_SMTP_FROM").unwrap_or_else(|| "Latchkey <latchkey@localhost>".into());
        if smtp_from.chars().any(char::is_control) || smtp_from.len() > 254 || !smtp_from.contains('@') {
            return Err(invalid("LATCHKEY_SMTP_FROM", "must be an address, e.g. Latchkey <no-reply@example.com>"));
        }
        let webhook_allow_private =
            parse_bool("LATCHKEY_WEBHOOK_ALLOW_PRIVATE", get("LATCHKEY_WEBHOOK_ALLOW_PRIVATE"))?;
        Ok(Self {
            metrics_bind,
            smtp_url: smtp_url.map(SecretString::from),
            smtp_from,
            webhook_allow_private,
            scopes,
            default_plan,
            usage_flush_seconds,
            reminder_seconds,
            password_threads: usize::try_from(password_threads).unwrap_or(1),
            password_wait_ms: password_wait_ms.unsigned_abs(),
            bind,
            data_dir,
            database,
            public_url,
            secret,
            redis_url,
            redis_prefix,
            require_https,
            trusted_proxies,
            api_key_prefix,
            session_idle_minutes,
            session_absolute_hours,
        })
    }

    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    pub fn secret_bytes(&self) -> &[u8] {
        self.secret.expose_secret().as_bytes()
    }
}

fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid { key, message: message.to_owned() }
}

fn parse_bool(key: &'static str, v: Option<String>) -> Result<bool, ConfigError> {
    match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0" | "false" | "off" | "no") => Ok(false),
        Some("1" | "true" | "on" | "yes") => Ok(true),
        Some(_) => Err(invalid(key, "must be true or false")),
    }
}

fn parse_int(key: &'static str, v: Option<String>, default: i64) -> Result<i64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid(key, "must be a positive whole number")),
        },
    }
}

fn parse_scopes(list: &str) -> Result<Vec<String>, ConfigError> {
    let scopes: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let bad = scopes.iter().find(|s| {
        !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':') || s.len() > 64
    });
    match bad {
        Some(b) => Err(invalid("LATCHKEY_SCOPES", &format!("{b:?} is not a scope (resource:action)"))),
        None if scopes.is_empty() => Err(invalid("LATCHKEY_SCOPES", "needs at least one scope")),
        None => Ok(scopes),
    }
}

fn parse_proxies(v: Option<String>) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| invalid("LATCHKEY_TRUSTED_PROXIES", &format!("{s:?} is not an IP address"))))
        .collect()
}

/// The keys of ours found in the environment. An unknown `LATCHKEY_*` variable
/// is most likely a typo, so it is refused rather than ignored.
fn env_overlay(env: &[(String, String)]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut unknown = Vec::new();
    for (k, v) in env {
        if KEYS.iter().any(|(known, _)| known == k) {
            out.insert(k.clone(), v.clone());
        } else if k.starts_with("LATCHKEY_")
            && !k.starts_with("LATCHKEY_TEST_")
            && !NON_SETTING_ENV.contains(&k.as_str())
        {
            unknown.push(k.clone());
        }
    }
    if unknown.is_empty() { Ok(out) } else { Err(ConfigError::UnknownKeys(unknown)) }
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_err = |message: String| ConfigError::File { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_err(e.message().to_owned()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| format!("{i:?}")))
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(file_err(format!("{k}: unsupported value {other:?}"))),
        };
        out.insert(k, s);
    }
    Ok(out)
}

/// Reads `DATA_DIR/secret`, or creates it (mode 0600) with 32 random bytes in hex.
fn load_or_create_secret(data_dir: &Path) -> Result<SecretString, ConfigError> {
    let path = data_dir.join("secret");
    let io_err = |source| ConfigError::Secret { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => return Err(io_err(std::io::Error::other("too short (need at least 32 characters)"))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(e)),
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir).map_err(io_err)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io_err(std::io::Error::other(e)))?;
    let secret = hex::encode(bytes);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io_err)?;
    file.write_all(secret.as_bytes()).map_err(io_err)?;
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn unknown_keys_are_named_in_the_error() {
        let err = Config::from_values(&values(&[("LATCHKEY_BIDN", "x")])).unwrap_err();
        assert!(err.to_string().contains("unknown configuration key: LATCHKEY_BIDN"), "{err}");
    }

    #[test]
    fn defaults_apply_and_secret_is_redacted() {
        let secret = "s".repeat(40);
        let cfg = Config::from_values(&values(&[("LATCHKEY_SECRET", &secret)])).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:8080");
        assert_eq!(cfg.public_url, "http://127.0.0.1:8080");
        assert_eq!(cfg.database, DatabaseUrl::Sqlite(PathBuf::from("./data/latchkey.db")));
        assert!(!format!("{cfg:?}").contains(&secret));
    }

    #[test]
    fn bad_values_are_refused_with_the_key_name() {
        let secret = "s".repeat(40);
        let err =
            Config::from_values(&values(&[("LATCHKEY_SECRET", &secret), ("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL:"), "{err}");
        let err = Config::from_values(&values(&[("LATCHKEY_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().starts_with("LATCHKEY_SECRET:"), "{err}");
    }

    #[test]
    fn the_reminder_interval_is_positive_and_at_most_a_day() {
        let secret = "s".repeat(40);
        let cfg = Config::from_values(&values(&[("LATCHKEY_SECRET", &secret)])).unwrap();
        assert_eq!(cfg.reminder_seconds, 300);
        for bad in ["0", "-5", "86401", "soon"] {
            let err = Config::from_values(&values(&[("LATCHKEY_SECRET", &secret), ("LATCHKEY_REMINDER_SECONDS", bad)]))
                .unwrap_err();
            assert!(err.to_string().starts_with("LATCHKEY_REMINDER_SECONDS:"), "{bad}: {err}");
        }
        let cfg =
            Config::from_values(&values(&[("LATCHKEY_SECRET", &secret), ("LATCHKEY_REMINDER_SECONDS", "60")])).unwrap();
        assert_eq!(cfg.reminder_seconds, 60);
    }

    #[test]
    fn unknown_latchkey_env_vars_are_refused() {
        let env = vec![
            ("LATCHKEY_BINDD".to_owned(), "x".to_owned()),
            ("LATCHKEY_TEST_DATABASE_URL".to_owned(), "y".to_owned()),
        ];
        let err = env_overlay(&env).unwrap_err();
        assert!(err.to_string().contains("LATCHKEY_BINDD"));
    }
}
