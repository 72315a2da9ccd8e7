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

/// "3 hours ago", "in 5 days", relative to `now`.
pub fn relative(unix: i64, now: i64) -> String {
    let delta = unix - now;
    let text = duration(delta.abs().max(1));
    if delta >= 0 { format!("in {text}") } else { format!("{text} ago") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_round_up() {
        assert_eq!(super::duration(1), "1 second");
        assert_eq!(super::duration(61), "2 minutes");
        assert_eq!(super::duration(3600), "1 hour");
        assert_eq!(super::datetime(0), "1970-01-01 00:00 UTC");
    }
}
