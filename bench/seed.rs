//! Seeds a big team for `bench/pages.sh`: members, 10,000 API keys (some
//! rolled, revoked, revoked by support or expired), 100,000 audit events and a
//! few hundred other teams and people for support's search.
//!
//! ```text
//! cargo bench --bench seed -- <database-url> [--owner EMAIL] [--support EMAIL] [--keys N] [--events N] [--teams N]
//! ```
//!
//! The owner (a team owner) and the support person must exist (`latchkey user
//! create`); the server secret and key prefix come from the same configuration
//! as the server's (`LATCHKEY_DATA_DIR`, `LATCHKEY_SECRET`, …). Prints
//! `name=value` lines for the bench script: a key to open, one key's whole
//! secret, its display prefix, a member's email and the counts.
//!
//! Rules: every row is made by the service function that makes it in
//! production (invites and their acceptance, key creation, rolls, revocations,
//! support's revocation, `audit::record_at`), never by inserting rows; only
//! the time is the seeder's: keys are made over the past year (so some have
//! expired) and the history before them is spread over the same year, in
//! order, as a year of use leaves it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use diesel::prelude::*;
use latchkey::config::{Config, DatabaseUrl};
use latchkey::domain::{AuditAction, Role, TeamId};
use latchkey::service::accounts::{self, TeamRole};
use latchkey::service::audit::{self, Actor, Event, ObjectKind};
use latchkey::service::crypto::Keys;
use latchkey::service::keys::{self, Creator, Expiry, KeyRequest, Settings, codec};
use latchkey::service::{password, support};
use latchkey::store::schema::{api_keys, audit_events};
use latchkey::store::{self, DbConn};

const DAY: i64 = 86_400;
const YEAR: i64 = 365 * DAY;
/// Operations per transaction.
const BATCH: usize = 500;
/// The team's members besides the owner: (email, role).
const MEMBERS: [(&str, Role); 5] = [
    ("admin@bench.test", Role::Admin),
    ("dev1@bench.test", Role::Developer),
    ("dev2@bench.test", Role::Developer),
    ("dev3@bench.test", Role::Developer),
    ("viewer@bench.test", Role::Viewer),
];

struct Args {
    url: String,
    owner: String,
    support: String,
    keys: usize,
    events: usize,
    teams: usize,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut args = Self {
            url: String::new(),
            owner: "bench@example.test".into(),
            support: "support@example.test".into(),
            keys: 10_000,
            events: 100_000,
            teams: 300,
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow!("{a} needs a value"));
            match a.as_str() {
                "--bench" => {} // added by `cargo bench`
                "--owner" => args.owner = value()?,
                "--support" => args.support = value()?,
                "--keys" => args.keys = value()?.parse()?,
                "--events" => args.events = value()?.parse()?,
                "--teams" => args.teams = value()?.parse()?,
                url if !url.starts_with("--") && args.url.is_empty() => args.url = url.to_owned(),
                other => bail!("unknown argument {other}"),
            }
        }
        if args.url.is_empty() {
            bail!("usage: cargo bench --bench seed -- <database-url> [--owner EMAIL] [--keys N] [--events N]");
        }
        Ok(args)
    }
}

/// Who the seeded team is made of: (actor, role) by member, owner first.
struct Team {
    id: String,
    people: Vec<(Actor, Role)>,
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    let mut config = Config::load()?;
    config.database = DatabaseUrl::parse(&args.url).map_err(|m| anyhow!(m))?;
    let hasher = Keys::derive(config.secret_bytes());
    let mut conn = store::connect_once(&config.database)?;
    let started = std::time::Instant::now();
    let pw_hash = password::hash(&mut password::Memory::default(), "bench member password")?;
    let team = members(&mut conn, &hasher, &args.owner, &pw_hash)?;
    let now = store::now();
    // Key creations, revocations and rolls add about 1.1 events per key; the members 11.
    let history = args.events.saturating_sub(args.keys * 11 / 10 + 11);
    seed_history(&mut conn, &team, history, now)?;
    others(&mut conn, &pw_hash, args.teams)?;
    let settings = Settings { prefix: &config.api_key_prefix, catalog: &config.scopes };
    let support = accounts::user_by_email(&mut conn, &args.support)?.context("the support person does not exist")?;
    let support = Actor { user_id: Some(support.id), label: support.email, ..Actor::default() };
    let shown = seed_keys(&mut conn, &hasher, settings, &team, &support, args.keys, now)?;
    let count = |conn: &mut DbConn| -> Result<(i64, i64)> {
        let k = api_keys::table.filter(api_keys::team_id.eq(&team.id)).count().get_result(conn)?;
        let e = audit_events::table.filter(audit_events::team_id.eq(&team.id)).count().get_result(conn)?;
        Ok((k, e))
    };
    let (k, e) = count(&mut conn)?;
    for (name, value) in shown {
        println!("{name}={value}");
    }
    println!("team_id={}", team.id);
    println!("member_email={}", MEMBERS[1].0);
    println!("team_keys={k}");
    println!("team_events={e}");
    println!("seconds={:.1}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The owner's team, with the other members invited and accepted.
fn members(conn: &mut DbConn, hasher: &Keys, owner: &str, pw_hash: &str) -> Result<Team> {
    let ctx = accounts::user_by_email(conn, owner)?
        .map(|u| accounts::context(conn, &u.id))
        .transpose()?
        .flatten()
        .context("the owner does not exist (latchkey user create --email … --team …)")?;
    let (t, role) = ctx.team.context("the owner has no team")?;
    let owner = Actor { user_id: Some(ctx.user.id.clone()), label: ctx.user.email.clone(), ..Actor::default() };
    let member = TeamRole { team_id: TeamId::from(t.id.as_str()), role };
    let mut people = vec![(owner.clone(), role)];
    for (email, role) in MEMBERS {
        let at = store::now();
        let (_, token) = accounts::invite(conn, hasher, &owner, &member, email, role, at)?;
        let user = accounts::accept_invite(conn, hasher, &Actor::default(), token.expose(), pw_hash.to_owned(), at)?;
        people.push((Actor { user_id: Some(user.id), label: user.email, ..Actor::default() }, role));
    }
    Ok(Team { id: t.id, people })
}

/// What the team's members did over the past year before the keys were
/// made: sign-ins (and failures), sign-outs, OAuth tokens, refused keys.
fn seed_history(conn: &mut DbConn, team: &Team, n: usize, now: i64) -> Result<()> {
    let start = now - YEAR;
    let step = (YEAR - DAY) as f64 / n.max(1) as f64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        store::transaction(conn, |conn| {
            for &i in chunk {
                let at = start + (i as f64 * step) as i64;
                past_event(conn, team, i, at)?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
    }
    Ok(())
}

fn past_event(conn: &mut DbConn, team: &Team, i: usize, at: i64) -> Result<()> {
    let (person, _) = &team.people[i * 7 % team.people.len()];
    let user_id = person.user_id.clone().unwrap_or_default();
    let actor = Actor {
        ip: Some(format!("203.0.113.{}", i % 250 + 1)),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".into()),
        ..person.clone()
    };
    let event = |action| Event::new(action).team(&team.id);
    let (actor, event) = match i % 20 {
        0..=8 => (actor, event(AuditAction::LoginSucceeded).object(ObjectKind::User, &user_id)),
        9 | 10 => {
            (Actor { user_id: None, ..actor }, event(AuditAction::LoginFailed).object(ObjectKind::User, &user_id))
        }
        11..=13 => (actor, event(AuditAction::Logout).object(ObjectKind::User, &user_id)),
        14..=17 => (
            Actor { user_id: None, label: "OAuth app Reporting".into(), ..actor },
            event(AuditAction::OauthTokenIssued),
        ),
        18 => (Actor { user_id: None, label: "API client".into(), ..actor }, event(AuditAction::ApiKeyRefusedRevoked)),
        _ => (actor, event(AuditAction::SessionRevoked).object(ObjectKind::User, &user_id)),
    };
    let details = match event.action {
        AuditAction::LoginSucceeded => serde_json::json!({"method": "password"}),
        AuditAction::LoginFailed => serde_json::json!({"email": person.label}),
        _ => serde_json::json!({}),
    };
    audit::record_at(conn, &actor, event.details(details), at)?;
    Ok(())
}

/// Other teams and people, for support's search to look through.
fn others(conn: &mut DbConn, pw_hash: &str, teams: usize) -> Result<()> {
    for i in 0..teams {
        let name = format!("Customer {i:04}");
        accounts::create_user(conn, &format!("owner{i}@customer{i}.test"), pw_hash.to_owned(), false, Some(&name))?;
    }
    Ok(())
}

/// Keys made over the past year by the members who may make them; every
/// tenth revoked, every twentieth rolled, a few revoked by support. Returns
/// what the bench script opens: a rolled key, its successor's secret and
/// prefix, and the list's cursor after an old key.
fn seed_keys(
    conn: &mut DbConn,
    hasher: &Keys,
    settings: Settings<'_>,
    team: &Team,
    support: &Actor,
    n: usize,
    now: i64,
) -> Result<BTreeMap<&'static str, String>> {
    let makers: Vec<&(Actor, Role)> = team.people.iter().filter(|(_, r)| *r != Role::Viewer).collect();
    let owner = &team.people[0];
    let start = now - YEAR;
    let step = (YEAR - DAY) / n.max(1) as i64;
    let (mut made, mut i) = (0, 0);
    let mut shown = BTreeMap::new();
    while made < n {
        store::transaction(conn, |conn| {
            for _ in 0..BATCH {
                if made >= n {
                    break;
                }
                let at = start + made as i64 * step;
                let (actor, role) = makers[i % makers.len()];
                let creator = creator(actor, *role, &team.id);
                let expiry = match i % 3 {
                    0 => Expiry::Never,
                    1 => Expiry::InDays(90),
                    _ => Expiry::InDays(365),
                };
                let req = KeyRequest {
                    name: format!("service {i:05}"),
                    description: format!("Bench key {i}"),
                    scopes: vec!["templates:read".into(), "messages:send".into()],
                    expiry,
                    allowed_ips: Vec::new(),
                };
                let (key, _) = keys::create(conn, hasher, &creator, settings, &req, at)?;
                made += 1;
                if made == n / 10 {
                    // A page of the list far back: 90% of the keys are newer.
                    shown.insert("deep_cursor", format!("{}.{}", key.created_at, key.id));
                }
                let owner = creator_of(owner, &team.id);
                match i % 20 {
                    3 | 13 => {
                        keys::revoke(conn, &owner, &key.id, at + DAY)?;
                    }
                    7 if key.status(at + 3600).is_usable() => {
                        let (new, secret) = keys::roll(conn, hasher, &owner, settings, &key.id, 3600, at + 3600)?;
                        made += 1;
                        shown.insert("key_id", key.id.clone());
                        shown.insert("key_secret", secret.expose().to_owned());
                        shown.insert("key_prefix", codec::display(settings.prefix, &new.key_prefix));
                    }
                    11 if i % 100 == 11 => {
                        support::revoke_with_reason(conn, support, &key.id, "Found in a public repository", at + DAY)?;
                    }
                    _ => {}
                }
                i += 1;
            }
            Ok::<_, anyhow::Error>(())
        })?;
    }
    Ok(shown)
}

fn creator<'a>(actor: &'a Actor, role: Role, team_id: &'a str) -> Creator<'a> {
    Creator { actor, team_id, role, ceiling: None, ip_ceiling: None, not_after: None }
}

fn creator_of<'a>(person: &'a (Actor, Role), team_id: &'a str) -> Creator<'a> {
    creator(&person.0, person.1, team_id)
}
