use clap::Parser;
use lyceum::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (outer, command) = Cli::parse().into_command();
    if let Command::Plugin(args) = command {
        return lyceum::cli::plugin::run(args).await;
    }
    let config = match command.config_file(&outer).load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("lyceum: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    lyceum::telemetry::init_tracing(config.log_format);
    let result = match command {
        Command::Serve { .. } => serve(config).await,
        command => lyceum::cli::run_command(config, command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lyceum: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: lyceum::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.bind))?;
    let app = lyceum::build(config).await?;
    // Announced once the database is ready; the policy plugins may still be compiling
    // ("policy plugins ready" follows, and `/ready` answers 503 until then).
    tracing::info!(addr = %listener.local_addr()?, "lyceum listening");
    let loading = app.plugins_loading();
    tokio::select! {
        served = lyceum::run(app, listener, shutdown_signal()) => served,
        Err(error) = loading.finished() => Err(error),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
