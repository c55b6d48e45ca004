//! The `lyceum` command line. The server's commands (`serve`, `migrate`, `user create`,
//! `config`) read the same configuration as `serve`, so `lyceum user create` with the same
//! `LYCEUM_DATA_DIR` writes to the database the server uses, even while it runs. The
//! plugin commands (`lyceum plugin …`, [`plugin`]) read none of it: they write, check and
//! test modules offline or talk to a running server over its admin API.

pub mod plugin;

use std::{io::Read, path::PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::{config::Config, domain::Role};

#[derive(Debug, Parser)]
#[command(
    name = "lyceum",
    version,
    about = "Real-time backend of the Lyceum e-learning platform"
)]
pub struct Cli {
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The server's configuration file. Not a global flag: `lyceum plugin` commands read no
/// server configuration, and their own `--config` is a plugin's configuration.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigFile {
    /// Configuration file; read when it exists (required when given explicitly).
    #[arg(long, short, env = "LYCEUM_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP and Socket.IO server (the default).
    Serve {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the effective configuration, secrets masked.
    Config {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Write, check and test policy plugins; install, activate, roll back, shadow and audit
    /// them on a running server.
    ///
    /// `new`, `check` and `test` work offline; the other commands call the admin API of a
    /// running server as an administrator.
    #[command(after_help = plugin::AFTER_HELP)]
    Plugin(plugin::PluginArgs),
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
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Give an account another role. Running servers drop the user's sockets and refuse
    /// their access tokens with the old role within a second; a refresh gets the new role.
    SetRole {
        #[arg(long)]
        email: String,
        /// student, instructor or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Delete an account with its logins, enrollments, files and messages. Refused while the
    /// user teaches a course. Running servers drop the user's sockets and refuse their
    /// tokens within a second.
    Delete {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        file: ConfigFile,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}` is not one of student, instructor, admin"))
}

impl Cli {
    /// The command to run: `serve` when none is named.
    pub fn into_command(self) -> (ConfigFile, Command) {
        let command = self.command.unwrap_or(Command::Serve {
            file: ConfigFile::default(),
        });
        (self.file, command)
    }
}

impl Command {
    /// The configuration file named after the command, else the one named before it.
    pub fn config_file(&self, outer: &ConfigFile) -> ConfigFile {
        let inner = match self {
            Command::Serve { file }
            | Command::Migrate { file }
            | Command::Config { file }
            | Command::User {
                command:
                    UserCommand::Create { file, .. }
                    | UserCommand::SetRole { file, .. }
                    | UserCommand::Delete { file, .. },
            } => file.config.clone(),
            Command::Plugin(_) => None,
        };
        ConfigFile {
            config: inner.or_else(|| outer.config.clone()),
        }
    }
}

impl ConfigFile {
    pub fn load(&self) -> anyhow::Result<Config> {
        let (path, required) = match &self.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from("lyceum.toml"), false),
        };
        Ok(Config::load(&path, required)?)
    }
}

/// Runs a non-serving command of the server; `serve` is handled by `main`, which owns
/// signals, and `plugin` by [`plugin::run`], which needs no configuration.
pub async fn run_command(config: Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => unreachable!("serve is handled by main"),
        Command::Plugin(_) => unreachable!("plugin commands are handled by main"),
        Command::Config { .. } => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Migrate { .. } => {
            let url = config.effective_database_url();
            crate::store::connect(&url, 1)
                .await
                .context("migrating the database")?;
            println!("migrations applied to {}", crate::config::mask_url(&url));
            Ok(())
        }
        Command::User {
            command: UserCommand::Create {
                email, name, role, ..
            },
        } => {
            let password = read_password()?;
            let accounts = crate::accounts(&config).await?;
            let user = accounts
                .create_user(&email, &password, &name, role)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code().as_str()))?;
            println!("created {} {} ({})", user.role, user.email, user.id);
            Ok(())
        }
        Command::User {
            command: UserCommand::SetRole { email, role, .. },
        } => {
            let accounts = crate::accounts(&config).await?;
            let user = accounts
                .set_role(&email, role)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code().as_str()))?;
            println!("{} {} is now {}", user.email, user.id, user.role);
            Ok(())
        }
        Command::User {
            command: UserCommand::Delete { email, .. },
        } => {
            let accounts = crate::accounts(&config).await?;
            let user = accounts
                .delete_user(&email)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code().as_str()))?;
            println!("deleted {} {} ({})", user.role, user.email, user.id);
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_configuration_file_may_be_named_before_or_after_the_command() {
        let after = Cli::parse_from(["lyceum", "migrate", "--config", "after.toml"]);
        let (outer, command) = after.into_command();
        assert_eq!(
            command.config_file(&outer).config,
            Some(PathBuf::from("after.toml"))
        );
        let before = Cli::parse_from([
            "lyceum",
            "-c",
            "before.toml",
            "user",
            "create",
            "--email",
            "a@b.c",
            "--name",
            "A",
        ]);
        let (outer, command) = before.into_command();
        assert_eq!(
            command.config_file(&outer).config,
            Some(PathBuf::from("before.toml"))
        );
        let (_, command) = Cli::parse_from(["lyceum"]).into_command();
        assert!(matches!(command, Command::Serve { .. }));
    }

    #[test]
    fn a_plugin_command_s_config_is_the_plugin_s_not_a_file() {
        let cli = Cli::parse_from([
            "lyceum",
            "plugin",
            "check",
            "p.wasm",
            "--config",
            r#"{"blocked": []}"#,
        ]);
        let (outer, command) = cli.into_command();
        assert_eq!(outer.config, None);
        assert!(matches!(command, Command::Plugin(_)));
    }
}
