use super::cache::ReadStart;
use super::*;
use crate::domain::AuditAction;

fn record(id: &str, kind: &str, revoked: bool) -> Arc<Principal> {
    let grant = principal::Grant {
        team_id: Some("team_1".into()),
        team_name: None,
        holder: Some("user_1".into()),
        role: None,
        scopes: Arc::from(Vec::new()),
        allowed: Vec::new(),
        expires_at: None,
        revoked,
        disabled: false,
        plan: ratelimit::PLANS[0],
        shown: Default::default(),
        limit_key: principal::limit_key(Some("team_1"), id),
    };
    Arc::new(if kind == "oauth" {
        Principal::AccessToken {
            id: id.into(),
            client_id: "app_1".into(),
            app: "n".into(),
            user_id: None,
            issued_at: 0,
            grant,
        }
    } else {
        Principal::ApiKey { id: id.into(), name: "n".into(), prefix: "lk_abcdefgh".into(), grant }
    })
}

/// A fresh answer, if the cache holds one.
fn fresh(v: &Verifier, hash: &str) -> Option<Option<Arc<Principal>>> {
    match v.cached(v.index_of(hash)) {
        Hit::Fresh(record) => Some(record),
        _ => None,
    }
}

fn remember(v: &Verifier, hash: &str, record: Option<Arc<Principal>>, tokens: u64) {
    let start = ReadStart { tokens, ..v.read_start() };
    v.remember(v.index_of(hash), record, start);
}

fn verifier(cache_max: usize) -> Verifier {
    let mut v = Verifier::new("lk", "free", Arc::new(AuditGate::default()), Limits::in_process("plan"), [7; 16]);
    // As if the feed had been followed for an hour (tests move entries back in time).
    v.epoch -= Duration::from_secs(3600);
    v.trust_reads_from(v.epoch);
    v.cache = Mutex::new(Lru::new(cache_max));
    v
}

#[test]
fn a_flood_of_unknown_keys_never_empties_the_cache() {
    let v = verifier(100);
    remember(&v, "in-use", Some(record("key_1", "api", false)), 0);
    for i in 0..10_000 {
        // Well-formed unknown keys are cached as "unknown".
        remember(&v, &format!("unknown-{i}"), None, 0);
        if i % 25 == 0 {
            let hit = fresh(&v, "in-use").expect("still cached after the flood");
            assert_eq!(hit.as_deref().map(Principal::id), Some("key_1"));
        }
    }
    assert_eq!(v.cache.lock().unwrap().len(), 100, "bounded, not cleared");
    assert!(fresh(&v, "unknown-0").is_none(), "the least recently used went");
}

#[test]
fn refused_revoked_credentials_are_buffered_and_labelled_by_kind() {
    let v = verifier(10);
    for _ in 0..50 {
        v.audit_refused(&record("key_1", "api", true), None, 100);
        v.audit_refused(&record("tok_1", "oauth", true), None, 100);
    }
    let events = v.audit.take(None);
    let find = |action: AuditAction, repeated: bool| {
        events.iter().filter(|e| e.action == action && e.details.get("repeated").is_some() == repeated).count()
    };
    assert_eq!(find(AuditAction::ApiKeyRefusedRevoked, false), 1);
    assert_eq!(find(AuditAction::ApiKeyRefusedRevoked, true), 1, "one summary of the other 49");
    assert_eq!(find(AuditAction::OauthTokenRefusedRevoked, false), 1);
    let token = events.iter().find(|e| e.action == AuditAction::OauthTokenRefusedRevoked).unwrap();
    assert_eq!(token.object, Some(("oauth_app", "app_1".to_owned())));
    assert_eq!(token.details["token_id"], "tok_1");
    assert_eq!(events.len(), 4);
}

#[tokio::test]
async fn every_credential_of_a_team_counts_against_one_allowance() {
    let v = verifier(10);
    let free = ratelimit::PLANS[0];
    let creds = [record("key_1", "api", false), record("key_2", "api", false), record("tok_1", "oauth", false)];
    let t0 = 1_000 * 3_600_000;
    let mut admitted = 0;
    for i in 0..30usize {
        if v.limiter.hit(&creds[i % 3].grant().limit_key, free, t0 + i as i64).await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted as u64, free.per_minute);
}

#[test]
fn an_unwritten_batch_merges_back_into_what_arrived_meanwhile() {
    let v = verifier(10);
    let day = 20_000 * 86_400;
    for at in [day + 10, day + 20, day + 86_400 + 5] {
        v.record_use("key_1", at);
    }
    v.record_use("key_2", day + 30);
    let unwritten = std::mem::take(&mut *v.usage.lock().unwrap());
    assert_eq!(v.unwritten().requests, 0, "taken by the flush");
    // Meanwhile: key_1 again (later), and a key the batch does not have.
    v.record_use("key_1", day + 86_400 + 50);
    v.record_use("key_3", day + 40);
    v.usage.lock().unwrap().merge(unwritten);
    let usage = v.usage.lock().unwrap().clone();
    assert_eq!(usage.last_used("key_1"), Some(day + 86_400 + 50), "the later time is kept");
    assert_eq!(usage.last_used("key_2"), Some(day + 30));
    assert_eq!(usage.last_used("key_3"), Some(day + 40));
    assert_eq!(usage.day_counts("key_1", 20_000).map(|c| c[0]), Some(2));
    assert_eq!(usage.day_counts("key_1", 20_001).map(|c| c[0]), Some(2), "counts add up");
    assert_eq!(v.unwritten(), Unwritten { requests: 6, keys: 3, audit_events: 0 });
}

#[test]
fn invalidating_tokens_drops_cached_tokens_only() {
    let v = verifier(10);
    remember(&v, "key", Some(record("key_1", "api", false)), 0);
    remember(&v, "token", Some(record("tok_1", "oauth", false)), 0);
    v.invalidate_tokens();
    assert!(fresh(&v, "key").is_some(), "API keys stay cached");
    assert!(fresh(&v, "token").is_none(), "access tokens are read again");
    remember(&v, "token", Some(record("tok_1", "oauth", false)), 1);
    assert!(fresh(&v, "token").is_some());
}

/// Moves an entry's read and caching back by `secs` (instead of waiting).
fn age(v: &Verifier, hash: &str, secs: u64) {
    let mut cache = v.cache.lock().unwrap();
    let c = cache.get_mut(&v.index_of(hash)).unwrap();
    c.read_at -= Duration::from_secs(secs);
    c.cached_at = c.cached_at.map(|at| at - Duration::from_secs(secs));
}

#[test]
fn past_one_second_an_entry_is_served_only_while_a_feed_read_covers_it() {
    let v = verifier(10);
    remember(&v, "key", Some(record("key_1", "api", false)), 0);
    remember(&v, "unknown", None, 0);
    assert!(fresh(&v, "key").is_some(), "young entries need no feed");
    age(&v, "key", 5);
    age(&v, "unknown", 5);
    assert!(
        matches!(v.cached(v.index_of("key")), Hit::Stale(_)),
        "no feed read: read again (or served stale in an outage)"
    );
    assert!(matches!(v.cached(v.index_of("unknown")), Hit::Miss), "unknown answers live one second");
    // A feed read that began after the entry was cached covers it.
    v.synced_from(Instant::now());
    assert!(fresh(&v, "key").is_some());
    // A feed read that began before the entry was cached does not: the
    // read may have raced with a change the feed had already passed on.
    v.cache.lock().unwrap().get_mut(&v.index_of("key")).unwrap().cached_at =
        Some(Instant::now() + Duration::from_secs(1));
    assert!(fresh(&v, "key").is_none());
    // Past the stale window (and with no feed read since) an entry is never served.
    let v2 = verifier(10);
    remember(&v2, "old", Some(record("key_2", "api", false)), 0);
    age(&v2, "old", STALE_WINDOW.as_secs() + 1);
    assert!(matches!(v2.cached(v2.index_of("old")), Hit::Miss));
}

#[test]
fn an_answer_read_while_a_change_was_applied_is_held_by_the_one_second_bound_only() {
    use crate::store::models::Change;
    let v = verifier(10);
    // A read begins; meanwhile the feed applies a revoke (nothing cached
    // yet to drop); then the read's (older) answer arrives.
    let start = v.read_start();
    v.forget_changes(&[Change { seq: 1, kind: "key".into(), object_id: "key_1".into(), at: 0 }]);
    v.remember(v.index_of("key"), Some(record("key_1", "api", false)), start);
    assert!(fresh(&v, "key").is_some(), "young: within the one-second bound");
    age(&v, "key", 2);
    v.synced_from(Instant::now());
    assert!(fresh(&v, "key").is_none(), "a later feed read does not vouch for it: read again");
    // The same for a change made here.
    let start = v.read_start();
    v.invalidate("key_2");
    v.remember(v.index_of("key2"), Some(record("key_2", "api", false)), start);
    age(&v, "key2", 2);
    v.synced_from(Instant::now());
    assert!(fresh(&v, "key2").is_none());
    // A read with no change in between is vouched for by a later feed read.
    let start = v.read_start();
    v.remember(v.index_of("key3"), Some(record("key_3", "api", false)), start);
    age(&v, "key3", 2);
    v.synced_from(Instant::now());
    assert!(fresh(&v, "key3").is_some());
}

#[test]
fn before_the_feed_is_trusted_entries_live_one_second() {
    let mut v = Verifier::new("lk", "free", Arc::new(AuditGate::default()), Limits::in_process("plan"), [7; 16]);
    v.epoch -= Duration::from_secs(3600);
    remember(&v, "early", Some(record("key_1", "api", false)), 0);
    age(&v, "early", 5);
    remember(&v, "later", Some(record("key_2", "api", false)), 0);
    age(&v, "later", 2);
    v.synced_from(Instant::now());
    assert!(fresh(&v, "early").is_none() && fresh(&v, "later").is_none(), "nothing vouched for yet");
    // Trusted from 3 s ago: the entry read before stays on the one-second bound.
    v.trust_reads_from(Instant::now() - Duration::from_secs(3));
    v.synced_from(Instant::now());
    assert!(fresh(&v, "early").is_none(), "read before the feed could vouch for it");
    assert!(fresh(&v, "later").is_some());
}

#[test]
fn a_change_in_the_feed_drops_every_entry_it_names() {
    use crate::store::models::Change;
    let change = |kind: &str, id: &str| Change { seq: 1, kind: kind.into(), object_id: id.into(), at: 0 };
    let fill = |v: &Verifier| {
        remember(v, "key", Some(record("key_1", "api", false)), 0);
        remember(v, "token", Some(record("tok_1", "oauth", false)), 0);
    };
    let v = verifier(10);
    fill(&v);
    v.forget_changes(&[change("key", "key_9"), change("team", "team_9"), change("user", "user_9")]);
    assert!(fresh(&v, "key").is_some() && fresh(&v, "token").is_some(), "others' changes drop nothing");
    for (kind, id, key_gone, token_gone) in [
        ("key", "key_1", true, false),
        ("token", "tok_1", false, true),
        ("client", "app_1", false, true),
        ("team", "team_1", true, true),
        ("user", "user_1", true, true),
    ] {
        let v = verifier(10);
        fill(&v);
        v.forget_changes(&[change(kind, id)]);
        assert_eq!(fresh(&v, "key").is_none(), key_gone, "{kind}");
        assert_eq!(fresh(&v, "token").is_none(), token_gone, "{kind}");
    }
}
