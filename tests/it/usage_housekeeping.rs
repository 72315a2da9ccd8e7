//! Housekeeping of usage rows: sightings beyond the last ten of each subject
//! and kind, and hours older than the kept window, are pruned in one pass.

use latchkey::store::StoreError;
use latchkey::store::models::{SightingRow, UsageHour};

use crate::both;
use crate::helpers::TestApp;

async fn prune_keeps_the_last_ten_sightings_of_each_subject_and_kind(app: TestApp) {
    let db = app.db();
    db.run_sync(|c| {
        for i in 0..15i64 {
            let row = |kind: &str| SightingRow {
                kind: kind.into(),
                value: format!("10.0.0.{i}"),
                first_seen: i,
                last_seen: 100 + i,
                requests: 1,
            };
            SightingRow::merge(c, "key_a", &row("address"))?;
            if i < 3 {
                SightingRow::merge(c, "key_b", &row("address"))?;
                SightingRow::merge(c, "key_a", &row("agent"))?;
            }
        }
        // Merging the same value again moves its times and adds its requests.
        let again = SightingRow {
            kind: "address".into(),
            value: "10.0.0.0".into(),
            first_seen: 0,
            last_seen: 500,
            requests: 2,
        };
        SightingRow::merge(c, "key_a", &again)?;
        UsageHour::add(c, "key_a", 10, 4)?;
        UsageHour::add(c, "key_a", 10, 1)?;
        UsageHour::add(c, "key_a", 20, 1)?;
        Ok::<_, StoreError>(())
    })
    .unwrap();
    let removed = latchkey::service::usage::prune(&db, 15).await.unwrap();
    assert_eq!(removed, 5 + 1, "five addresses of key_a and one hour");
    let (a, b, agents, hours) = db
        .run_sync(|c| {
            Ok::<_, StoreError>((
                SightingRow::latest(c, "key_a", "address", 100)?,
                SightingRow::latest(c, "key_b", "address", 100)?,
                SightingRow::latest(c, "key_a", "agent", 100)?,
                UsageHour::between(c, "key_a", 0, 100)?,
            ))
        })
        .unwrap();
    assert_eq!(a.len(), 10);
    assert_eq!((a[0].value.as_str(), a[0].first_seen, a[0].last_seen, a[0].requests), ("10.0.0.0", 0, 500, 3));
    assert!(a.iter().skip(1).all(|s| s.last_seen >= 106), "the latest kept: {a:?}");
    assert_eq!((b.len(), agents.len()), (3, 3), "other subjects and kinds untouched");
    assert_eq!(hours, vec![(20, 1)]);
}
both!(prune_keeps_the_last_ten_sightings_of_each_subject_and_kind);
