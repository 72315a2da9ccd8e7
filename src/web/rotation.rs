//! The "Rotation in progress" card (`partials/rotation_card_partial.html`)
//! that a rolled key's pages and an app's page show while the old credential
//! is in its grace period: old and new side by side, "Finish now" with a
//! quiet period, and the one-time extension.
//!
//! Rules: the card shows what `service::rotation` measured, never decides;
//! its actions appear only where the service says the viewer may act (the
//! POSTs ask the policy again); "Finish now" is a GET form to the action's
//! confirmation (a page without JavaScript, a dialog with htmx).

use serde::Deserialize;

use super::confirm::{Confirm, Field};
use super::format::{self, When};
use crate::service::rotation::{self, DEFAULT_EXTEND, DEFAULT_QUIET, EXTEND_CHOICES, QUIET_CHOICES, Watch};

/// One credential's column.
pub struct SideView {
    pub last: Option<When>,
    pub addresses: i64,
    pub requests: i64,
}

/// One hour's requests, old and new.
pub struct HourRow {
    pub label: String,
    pub old: i64,
    pub new: i64,
}

/// What the card shows.
pub struct RotationCard {
    /// "old key", "previous secret".
    pub old_name: &'static str,
    /// "new key", "current secret".
    pub new_name: &'static str,
    /// Column headings: "Old key lk_a1b2c3d4…".
    pub old_label: String,
    pub new_label: String,
    pub started: When,
    pub ends: When,
    pub old: SideView,
    pub new: SideView,
    pub hours: Vec<HourRow>,
    pub busy: bool,
    /// The viewer may finish or extend.
    pub may_act: bool,
    /// `…/finish` (keys) or `…/finish-rotation` (apps).
    pub finish_href: String,
    /// The extension's confirmation, while one is possible and the viewer may ask for it.
    pub extend_href: Option<String>,
    /// The latest end an extension could reach now.
    pub extend_until: Option<When>,
    /// The quiet periods: (seconds, words, selected).
    pub quiet_options: Vec<(i64, String, bool)>,
}

impl RotationCard {
    /// The card of a watched rotation at `now`; `extend` is (its
    /// confirmation URL, the latest end it could reach).
    pub fn new(
        (old_name, new_name): (&'static str, &'static str),
        (old_label, new_label): (String, String),
        watch: &Watch,
        (may_act, finish_href): (bool, String),
        extend: Option<(String, i64)>,
        now: i64,
    ) -> Self {
        let side = |s: &rotation::Side| SideView {
            last: When::maybe(s.last_presented, now),
            addresses: s.addresses,
            requests: s.requests,
        };
        let label = |start: i64| format::datetime(start).trim_end_matches(" UTC").to_owned();
        let extend = extend.filter(|_| may_act);
        Self {
            old_name,
            new_name,
            old_label,
            new_label,
            started: When::at(watch.started, now),
            ends: When::at(watch.ends, now),
            old: side(&watch.old),
            new: side(&watch.new),
            hours: watch.hours.iter().map(|h| HourRow { label: label(h.start), old: h.old, new: h.new }).collect(),
            busy: watch.busy,
            may_act,
            finish_href,
            extend_until: extend.as_ref().map(|(_, until)| When::at(*until, now)),
            extend_href: extend.map(|(href, _)| href),
            quiet_options: quiet_options(DEFAULT_QUIET),
        }
    }

    /// Keeps the quiet period the person chose (a refused "Finish now").
    pub fn select_quiet(&mut self, quiet: Option<i64>) {
        if let Some(q) = quiet.filter(|q| QUIET_CHOICES.contains(q)) {
            self.quiet_options = quiet_options(q);
        }
    }
}

fn quiet_options(selected: i64) -> Vec<(i64, String, bool)> {
    QUIET_CHOICES.iter().map(|q| (*q, rotation::period(*q), *q == selected)).collect()
}

/// A submitted number of seconds (a quiet period, an extension); anything else is `None`.
pub fn seconds(raw: &str) -> Option<i64> {
    raw.trim().parse().ok()
}

/// The quiet period's field of a confirmation, `selected` preselected.
pub fn quiet_field(selected: Option<i64>, label: &str) -> Field {
    let selected = selected.filter(|q| QUIET_CHOICES.contains(q)).unwrap_or(DEFAULT_QUIET);
    Field::Select {
        name: "quiet".into(),
        label: label.into(),
        options: QUIET_CHOICES.iter().map(|q| (q.to_string(), rotation::period(*q))).collect(),
        selected: selected.to_string(),
    }
}

/// The extension's field of a confirmation.
pub fn extend_field(label: &str) -> Field {
    Field::Select {
        name: "extend".into(),
        label: label.into(),
        options: EXTEND_CHOICES.iter().map(|s| (s.to_string(), rotation::period(*s))).collect(),
        selected: DEFAULT_EXTEND.to_string(),
    }
}

/// "Finish now"'s form (and its confirmation's query): the quiet period asked for.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct QuietForm {
    quiet: String,
}

impl QuietForm {
    pub fn quiet(&self) -> Option<i64> {
        seconds(&self.quiet)
    }
}

/// The extension's form: how much longer.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ExtendForm {
    extend: String,
}

impl ExtendForm {
    pub fn extend(&self) -> Option<i64> {
        seconds(&self.extend)
    }
}

/// What a grace's confirmation says of one credential: its title, its two
/// sentences, and the label of its field.
pub struct Asking {
    pub title: String,
    pub says: [String; 2],
    pub label: &'static str,
}

/// "Finish now"'s confirmation, posting to `action`, the quiet period
/// `quiet` preselected; "Cancel" goes back to the credential's page.
pub fn finish_confirm(asking: Asking, action: String, back: String, quiet: Option<i64>) -> Confirm {
    let [first, second] = asking.says;
    Confirm::new("confirm-finish-rotation", asking.title, action)
        .says(first)
        .says(second)
        .field(quiet_field(quiet, asking.label))
        .button("End grace now")
        .cancel_to(back)
}

/// The extension's confirmation, posting to `action`.
pub fn extend_confirm(asking: Asking, action: String, back: String) -> Confirm {
    let [first, second] = asking.says;
    Confirm::new("confirm-extend-rotation", asking.title, action)
        .says(first)
        .says(second)
        .field(extend_field(asking.label))
        .button("Extend grace")
        .not_dangerous()
        .cancel_to(back)
}
