//! The `latchkey` binary: parse the command line, load configuration, run.

use std::process::ExitCode;

use clap::Parser;
use latchkey::cli::{Cli, Command};
use latchkey::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latchkey: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Errors a driver built from a URL may repeat its password: never print it.
    let mut secrets = latchkey::cli::configured_secrets(&config);
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::CopyData { to } = &command {
        secrets.extend(latchkey::cli::secrets_in_url(to));
    }
    let result = match command {
        Command::Serve => serve(config),
        other => latchkey::cli::run(other, &config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {}", latchkey::cli::without_secrets(&format!("{e:#}"), &secrets));
            ExitCode::from(latchkey::cli::exit_code(&e))
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = latchkey::startup::Application::build(config).await?;
        tracing::info!(port = app.port(), "serving");
        app.run_until_stopped().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}
