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
