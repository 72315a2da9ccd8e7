//! Small formatting helpers for pages and messages.

/// "3 minutes", "1 hour", "45 seconds".
pub fn duration(secs: i64) -> String {
    let (n, unit) = if secs >= 3600 {
        ((secs + 3599) / 3600, "hour")
    } else if secs >= 60 {
        ((secs + 59) / 60, "minute")
    } else {
        (secs.max(1), "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A unix time as `2026-11-25 14:03 UTC`.
pub fn datetime(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix).ok().and_then(|t| t.format(&fmt).ok()).unwrap_or_else(|| "—".into())
}

/// A unix time as `2026-11-25`.
pub fn date(unix: i64) -> String {
    datetime(unix).chars().take(10).collect()
}

/// RFC 3339 (`2026-11-25T14:03:00Z`), for JSON.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses RFC 3339 into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Parses `YYYY-MM-DD` (a date input) as the end of that day, UTC.
pub fn parse_date_end_of_day(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt).ok().map(|d| d.midnight().assume_utc().unix_timestamp() + 86_399)
}

/// Parses `YYYY-MM-DD` as a Unix day (days since 1970-01-01, UTC).
pub fn parse_day(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|d| d.midnight().assume_utc().unix_timestamp().div_euclid(86_400))
}

/// A Unix day as `2026-11-25`.
pub fn day(unix_day: i64) -> String {
    date(unix_day.saturating_mul(86_400))
}

/// A CSV cell: quoted, and defused against spreadsheet formulas (a leading
/// `=`, `+`, `-` or `@` gets a `'`).
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// "3 hours ago", "in 5 days", relative to `now`.
pub fn relative(unix: i64, now: i64) -> String {
    let delta = unix - now;
    let text = duration(delta.abs().max(1));
    if delta >= 0 { format!("in {text}") } else { format!("{text} ago") }
}

/// A moment as a page shows it: words relative to now ("3 hours ago", "in 5 days"),
/// with the exact UTC time for a `title` and RFC 3339 for `<time datetime>`.
/// Render with `{% call m::when(w) %}{% endcall %}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    pub iso: String,
    pub exact: String,
    pub words: String,
}

impl When {
    pub fn at(unix: i64, now: i64) -> Self {
        Self { iso: rfc3339(unix), exact: datetime(unix), words: ago(unix, now) }
    }

    /// `None` stays `None` (never used, never expires …).
    pub fn maybe(unix: Option<i64>, now: i64) -> Option<Self> {
        unix.map(|u| Self::at(u, now))
    }
}

/// "just now", "5 minutes ago", "in 3 days", "2 months ago": rounded to the
/// nearest unit, the way a person says it.
pub fn ago(unix: i64, now: i64) -> String {
    let delta = unix - now;
    let secs = delta.abs();
    if secs < 45 {
        return "just now".into();
    }
    let round = |unit: i64| (secs + unit / 2) / unit;
    let (n, unit) = match secs {
        s if s < 3_570 => (round(60).max(1), "minute"),
        s if s < 86_400 - 1_800 => (round(3_600), "hour"),
        s if s < 30 * 86_400 => (round(86_400), "day"),
        s if s < 365 * 86_400 => (round(30 * 86_400), "month"),
        _ => (round(365 * 86_400), "year"),
    };
    let text = format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if delta > 0 { format!("in {text}") } else { format!("{text} ago") }
}

/// A user agent in words: "Chrome on macOS", "Firefox on Windows", "curl".
pub fn device(user_agent: &str) -> String {
    let ua = user_agent;
    if ua.trim().is_empty() {
        return "Unknown device".into();
    }
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("HeadlessChrome/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("CriOS/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python-requests/", "Python requests"),
        ("Go-http-client/", "Go HTTP client"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Android", "Android"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Windows", "Windows"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => format!("A browser on {o}"),
        (None, None) => {
            // An unknown agent: its product token, short.
            let token: String = ua.split(['/', ' ']).next().unwrap_or("").chars().take(40).collect();
            if token.is_empty() { "Unknown device".into() } else { token }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn moments_read_like_a_person_wrote_them() {
        let now = 1_800_000_000;
        assert_eq!(super::ago(now - 10, now), "just now");
        assert_eq!(super::ago(now - 300, now), "5 minutes ago");
        assert_eq!(super::ago(now - 3_600, now), "1 hour ago");
        assert_eq!(super::ago(now + 7 * 86_400 - 5, now), "in 7 days");
        assert_eq!(super::ago(now - 86_400, now), "1 day ago");
        assert_eq!(super::ago(now + 400 * 86_400, now), "in 1 year");
        let w = super::When::at(0, now);
        assert_eq!(w.iso, "1970-01-01T00:00:00Z");
        assert_eq!(w.exact, "1970-01-01 00:00 UTC");
    }

    #[test]
    fn devices_are_named_in_words() {
        let mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        assert_eq!(super::device(mac), "Chrome on macOS");
        let ff = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert_eq!(super::device(ff), "Firefox on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(super::device(iphone), "Safari on iOS");
        assert_eq!(super::device("curl/8.5.0"), "curl");
        assert_eq!(super::device(""), "Unknown device");
        assert_eq!(super::device("reqwest"), "reqwest");
    }

    #[test]
    fn durations_round_up() {
        assert_eq!(super::duration(1), "1 second");
        assert_eq!(super::duration(61), "2 minutes");
        assert_eq!(super::duration(3600), "1 hour");
        assert_eq!(super::datetime(0), "1970-01-01 00:00 UTC");
    }
}
