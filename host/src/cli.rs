//! The `lyceum` command line. Every command reads the same configuration as `serve`, so
//! `lyceum user create` with the same `LYCEUM_DATA_DIR` writes to the database the server
//! uses, even while it runs.

use std::{io::Read, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{config::Config, domain::Role};

#[derive(Debug, Parser)]
#[command(
    name = "lyceum",
    version,
    about = "Real-time backend of the Lyceum e-learning platform"
)]
pub struct Cli {
    /// Configuration file; read when it exists (required when given explicitly).
    #[arg(long, short, global = true, env = "LYCEUM_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP and Socket.IO server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the effective configuration, secrets masked.
    Config,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from a prompt, or from standard input when it
    /// is not a terminal; it is never an argument (arguments are visible to other users).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// student, instructor or admin.
        #[arg(long, default_value = "student", value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}` is not one of student, instructor, admin"))
}

impl Cli {
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let (path, required) = match &self.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from("lyceum.toml"), false),
        };
        Ok(Config::load(&path, required)?)
    }
}

/// Runs a non-serving command; `serve` is handled by `main`, which owns signals.
pub async fn run_command(config: Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => unreachable!("serve is handled by main"),
        Command::Config => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Migrate => {
            let url = config.effective_database_url();
            crate::store::connect(&url, 1)
                .await
                .context("migrating the database")?;
            println!("migrations applied to {}", crate::config::mask_url(&url));
            Ok(())
        }
        Command::User {
            command: UserCommand::Create { email, name, role },
        } => {
            let password = read_password()?;
            let app = crate::build(config).await?;
            let user = app
                .state
                .auth
                .create_user(&email, &password, &name, role)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code().as_str()))?;
            println!("created {} {} ({})", user.role, user.email, user.id);
            Ok(())
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        anyhow::ensure!(first == second, "the passwords do not match");
        Ok(first)
    } else {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input)?;
        let password = input.lines().next().unwrap_or("").to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok(password)
    }
}
