//! Operator commands: `migrate`, `user create`, later `user reset-totp` and
//! `service-key create`. Passwords come from standard input, never arguments.

use std::io::BufRead;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::service::{self, accounts, password, validate};
use crate::store::{self, DbConn};

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Self-hosted developer portal: API keys, OAuth 2.0, TOTP login")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the portal (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage teams.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Manage the operator's service keys.
    #[command(subcommand, name = "service-key")]
    ServiceKey(ServiceKeyCommand),
}

#[derive(Subcommand)]
pub enum TeamCommand {
    /// Set a team's rate-limit plan (free, starter, standard, pro, unlimited).
    SetPlan {
        #[arg(long)]
        team: String,
        #[arg(long)]
        plan: String,
    },
}

#[derive(Subcommand)]
pub enum ServiceKeyCommand {
    /// Create a service key and print it once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated platform scopes: introspect, leaks:report.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        /// Give the platform role `support`.
        #[arg(long)]
        support: bool,
        /// Also create a team with this name, owned by the user.
        #[arg(long)]
        team: Option<String>,
    },
    /// Turn off a user's two-factor authentication (they lost every factor).
    ResetTotp {
        #[arg(long)]
        email: String,
    },
}

/// Runs a one-shot command on one direct connection (no pool, no threads),
/// closed before returning, so the process exits cleanly on every database.
pub fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    let mut conn = store::connect_once(&config.database)?;
    let result = execute(command, config, &mut conn);
    drop(conn);
    result
}

fn execute(command: Command, config: &Config, conn: &mut DbConn) -> anyhow::Result<()> {
    match command {
        Command::Serve => anyhow::bail!("serve is not a one-shot command"),
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create { email, support, team }) => create_user(conn, &email, support, team),
        Command::User(UserCommand::ResetTotp { email }) => {
            let email = email.trim().to_lowercase();
            crate::service::totp::operator_reset(conn, &email).map_err(|e| match e {
                service::Error::NotFound => anyhow::anyhow!("no user with the email {email}"),
                other => anyhow::anyhow!(other),
            })?;
            println!("two-factor authentication is off for {email}; their sessions have ended");
            Ok(())
        }
        Command::Team(TeamCommand::SetPlan { team, plan }) => {
            let changed = accounts::set_plan(conn, &team, &plan).map_err(|e| match e {
                service::Error::Invalid(f) => anyhow::anyhow!(describe(&f)),
                other => anyhow::anyhow!(other),
            })?;
            println!(
                "{changed} team(s) named {team:?} now on the {plan} plan (running servers apply it within a second)"
            );
            Ok(())
        }
        Command::ServiceKey(ServiceKeyCommand::Create { name, scopes }) => {
            let hasher = crate::service::crypto::Keys::derive(config.secret_bytes());
            let prefix = config.api_key_prefix.clone();
            let (key, secret) = crate::service::keys::create_service_key(conn, &hasher, &prefix, &name, &scopes)
                .map_err(|e| match e {
                    service::Error::Invalid(f) => anyhow::anyhow!(describe(&f)),
                    other => anyhow::anyhow!(other),
                })?;
            eprintln!("created service key {} ({}) with scopes {}; it is shown once:", key.name, key.id, key.scopes);
            println!("{}", secret.expose());
            Ok(())
        }
    }
}

fn create_user(conn: &mut DbConn, email: &str, support: bool, team: Option<String>) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']);
    let email = validate::account(email, pw).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let team = team.map(|t| validate::team_name(&t).map_err(|m| anyhow::anyhow!("team: {m}"))).transpose()?;
    let hash = password::hash(pw)?;
    let user = accounts::create_user(conn, &email, hash, support, team.as_deref()).map_err(|e| match e {
        service::Error::Invalid(f) => anyhow::anyhow!(describe(&f)),
        other => anyhow::anyhow!(other),
    })?;
    println!("created user {} ({}){}", user.email, user.id, if support { " with the support role" } else { "" });
    Ok(())
}

fn describe(errors: &service::FieldErrors) -> String {
    errors.0.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ")
}
