//! A key's usage as its pages show it: the chart of requests by outcome,
//! who calls with the key and the scopes it exercised — on the key page and
//! on support's (read-only) key page. [`export`] answers the JSON API and
//! the CSV downloads.
//!
//! Rules: outcomes keep one colour each (`o-{outcome}` in app.css) and one
//! order (`UsageOutcome::ALL`, OK at the bottom of a bar); the chart is
//! summarised in words and numbers for those who cannot see it; values
//! clients sent (addresses, user agents) are only ever rendered escaped.

pub mod export;
pub mod json;

pub use export::{api, download};

use super::super::format::{self, When};
use crate::domain::UsageOutcome;
use crate::service::usage::report::{DayOutcomes, Report};
use crate::store::models::SightingRow;

/// Chart units of the busiest day's bar.
const BAR_MAX: i64 = 100;
/// Where bars stand in the chart (its baseline).
const BASELINE: i64 = 110;

/// How a page names an outcome.
fn outcome_label(o: UsageOutcome) -> &'static str {
    match o {
        UsageOutcome::Ok => "OK",
        UsageOutcome::ScopeDenied => "Missing scope",
        UsageOutcome::AddressDenied => "Address not allowed",
        UsageOutcome::RateLimited => "Rate limited",
        UsageOutcome::Expired => "Expired",
        UsageOutcome::Revoked => "Revoked",
        UsageOutcome::Disabled => "Disabled",
    }
}

/// One outcome's part of a day's bar (its class is `o-{outcome}`).
pub struct Segment {
    pub outcome: &'static str,
    pub y: i64,
    pub height: i64,
    pub label: String,
}

/// A day's bar: its outcomes stacked, OK at the bottom.
pub struct DayBar {
    pub x: i64,
    pub segments: Vec<Segment>,
}

/// An outcome in the legend, with its requests over the chart's days.
pub struct LegendItem {
    pub outcome: &'static str,
    pub label: &'static str,
    pub count: i64,
}

/// A day with requests, for the table of numbers.
pub struct DayRow {
    pub date: String,
    pub counts: Vec<i64>,
    pub total: i64,
}

/// An address or user agent that presented the key.
pub struct SeenView {
    pub value: String,
    /// The user agent in words ("curl", "Chrome on macOS"); empty for an address.
    pub device: String,
    pub first: When,
    pub last: When,
    pub requests: i64,
}

/// What the usage cards of a key page show.
pub struct UsageView {
    pub bars: Vec<DayBar>,
    /// The chart's width in its own units (20 per day).
    pub width: i64,
    pub total: i64,
    pub refused: i64,
    pub peak: i64,
    pub legend: Vec<LegendItem>,
    /// The outcomes' names, in column order.
    pub columns: Vec<&'static str>,
    pub days: Vec<DayRow>,
    pub addresses: Vec<SeenView>,
    pub agents: Vec<SeenView>,
    /// Exercised scopes with when each was last used.
    pub scopes: Vec<(String, When)>,
    /// Where the team downloads the numbers (support has no link).
    pub csv_href: Option<String>,
}

impl UsageView {
    /// The cards for `report`, read at `at`.
    pub fn new(report: &Report, at: i64, csv_href: Option<String>) -> Self {
        let total = report.days.iter().map(DayOutcomes::total).sum();
        let ok: i64 = report.days.iter().map(|d| d.get(UsageOutcome::Ok)).sum();
        let seen = |rows: &[SightingRow], agent: bool| rows.iter().map(|s| seen_view(s, agent, at)).collect();
        Self {
            bars: bars(&report.days),
            width: i64::try_from(report.days.len()).unwrap_or(0) * 20,
            total,
            refused: total - ok,
            peak: report.days.iter().map(DayOutcomes::total).max().unwrap_or(0),
            legend: legend(&report.days),
            columns: UsageOutcome::ALL.iter().map(|o| outcome_label(*o)).collect(),
            days: report.days.iter().filter(|d| d.total() > 0).map(day_row).collect(),
            addresses: seen(&report.addresses, false),
            agents: seen(&report.agents, true),
            scopes: report.exercised.iter().map(|s| (s.scope.clone(), When::at(s.last_used, at))).collect(),
            csv_href,
        }
    }

    /// The chart in words, for its `aria-label`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.legend.iter().map(|l| format!("{} {}", l.label, l.count)).collect();
        format!(
            "Requests per day over the last {} days by outcome: {} in all ({}), {} on the busiest day",
            self.bars.len(),
            self.total,
            parts.join(", "),
            self.peak
        )
    }
}

fn seen_view(s: &SightingRow, agent: bool, at: i64) -> SeenView {
    SeenView {
        value: s.value.clone(),
        device: if agent { format::device(&s.value) } else { String::new() },
        first: When::at(s.first_seen, at),
        last: When::at(s.last_seen, at),
        requests: s.requests,
    }
}

fn day_row(d: &DayOutcomes) -> DayRow {
    DayRow { date: format::day(d.day), counts: d.counts.to_vec(), total: d.total() }
}

/// The outcomes that happened over `days`, OK first.
fn legend(days: &[DayOutcomes]) -> Vec<LegendItem> {
    UsageOutcome::ALL
        .iter()
        .map(|o| LegendItem {
            outcome: o.as_str(),
            label: outcome_label(*o),
            count: days.iter().map(|d| d.get(*o)).sum(),
        })
        .filter(|l| l.count > 0)
        .collect()
}

/// Each day's outcomes stacked, the busiest day [`BAR_MAX`] high: each
/// segment ends where the running total of its day does (rounded up, so a
/// day with requests always shows).
pub fn bars(days: &[DayOutcomes]) -> Vec<DayBar> {
    let peak = days.iter().map(DayOutcomes::total).max().unwrap_or(0);
    let scaled = |n: i64| if peak == 0 { 0 } else { (n * BAR_MAX + peak - 1) / peak };
    days.iter()
        .zip((0..).step_by(20))
        .map(|(d, x)| {
            let (mut below, mut segments) = (0, Vec::new());
            for o in UsageOutcome::ALL.iter().filter(|o| d.get(**o) > 0) {
                let (bottom, top) = (scaled(below), scaled(below + d.get(*o)));
                below += d.get(*o);
                if top > bottom {
                    let label = format!("{}: {} {}", format::day(d.day), d.get(*o), outcome_label(*o));
                    segments.push(Segment { outcome: o.as_str(), y: BASELINE - top, height: top - bottom, label });
                }
            }
            DayBar { x, segments }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: i64, counts: [i64; 7]) -> DayOutcomes {
        DayOutcomes { day, counts }
    }

    #[test]
    fn bars_stack_outcomes_and_the_busiest_day_is_full_height() {
        let days = [day(0, [0; 7]), day(1, [30, 10, 0, 0, 0, 0, 0]), day(2, [0, 0, 0, 0, 0, 0, 1])];
        let bars = bars(&days);
        assert!(bars[0].segments.is_empty());
        let busiest: Vec<(&str, i64, i64)> = bars[1].segments.iter().map(|s| (s.outcome, s.y, s.height)).collect();
        assert_eq!(busiest, [("ok", 35, 75), ("scope_denied", 10, 25)]);
        assert_eq!(bars[2].x, 40);
        assert_eq!(bars[2].segments[0].height, 3, "a day with requests always shows");
        assert!(bars[1].segments[1].label.ends_with("10 Missing scope"));
    }
}
