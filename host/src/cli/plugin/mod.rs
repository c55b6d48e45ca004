//! `lyceum plugin …`: the operators' commands for the policy plugins. `check` works offline
//! on a module file; the others call the admin API of a running server (`/api/v1/plugins`)
//! with an administrator's access token. Tables by default, the answer's `data` with
//! `--json`.
//!
//! # Layout
//! - [`check`]: the offline check (static checks, compilation, smoke call).
//! - [`test`]: a module run against sample inputs offline.
//! - [`new`]: a plugin project to build outside this repository.
//! - [`api`]: the HTTP client and the contract's envelope.
//! - [`chain`]: `--chain`, `--config` and `--chain-file` into the API's links.
//! - [`render`]: the tables.
//! - [`error`]: what fails, and the exit status it gives.

pub mod api;
pub mod chain;
pub mod check;
pub mod error;
pub mod new;
pub mod render;
pub mod test;

use std::{io::Write, path::PathBuf, process::ExitCode};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use lyceum_plugin_runtime::Slot;
use serde_json::{Map, Value};

use self::{
    api::Api,
    chain::LinkArg,
    error::CliError,
    render::{Decision, Module, Overview, Page, Revision, SlotInfo, decode, page_of},
};
use crate::{
    config::Secret,
    service::plugins::links::{ChainBody, Failure, ShadowBody},
};

/// Shown under `lyceum plugin --help`.
pub const AFTER_HELP: &str = "\
Commands other than `check`, `test` and `new` call a running server: its address comes from \
--url or LYCEUM_URL (default http://127.0.0.1:3000), an administrator's access token from \
LYCEUM_TOKEN (or --token, which other users of the machine can see). The token is never printed.

Exit status: 0 done (for `check`: the module passed; for `test`: every case passed); 1 \
refused, by the check or by the server (the error's code, details.reason and message are \
printed), a case of `test` failed, or no answer; 2 the command line (or the cases file of \
`test`) is wrong.";

#[derive(Debug, Args)]
pub struct PluginArgs {
    /// Print the answer as JSON (the `data` of the API's envelope; for `check`, the module)
    /// instead of tables; errors as their JSON object.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The running server to talk to.
#[derive(Debug, Args)]
pub struct Server {
    /// The server's address.
    #[arg(long, env = "LYCEUM_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// An administrator's access token; prefer LYCEUM_TOKEN.
    #[arg(long, env = "LYCEUM_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<Secret>,
}

fn secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check a module offline, as an install and an activation would.
    ///
    /// The module must be WebAssembly, a component exporting a policy world at a WIT version
    /// this server provides, and import nothing beyond that world; it is then compiled and
    /// smoke-called with its configuration. Exit 0 when it passes, 1 with the reason
    /// (not_wasm, wrong_world, unsupported_wit_version, forbidden_import, config_rejected, …)
    /// when it is refused.
    Check {
        /// The module: a `.wasm` component.
        file: PathBuf,
        /// The slot to check it for; every slot it exports when left out.
        #[arg(long, value_enum)]
        slot: Option<SlotName>,
        /// The plugin's configuration for the smoke call: a JSON object.
        #[arg(long, value_name = "JSON", value_parser = chain::json_object)]
        config: Option<Map<String, Value>>,
    },
    New(new::NewArgs),
    Test(test::TestArgs),
    /// Show each slot's active chain and its counters.
    ///
    /// Per slot: its revision and failure mode; its plugins with their module's SHA-256
    /// prefix, ABI, WIT version, failure mode, calls, p99 latency and circuit breaker; its
    /// shadow candidate. Then whether the plugins file was refused.
    List {
        /// Only this slot.
        #[arg(value_enum)]
        slot: Option<SlotName>,
        #[command(flatten)]
        server: Server,
    },
    /// Upload a module.
    ///
    /// The server checks it without compiling and names it by the SHA-256 of its bytes,
    /// which `activate` and `shadow` take. Uploading the same bytes again is harmless.
    Install {
        /// The module: a `.wasm` component.
        file: PathBuf,
        /// A name for listings (default: `module-` and the hash's first 12 digits).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// List the uploaded modules, newest first.
    Modules {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        server: Server,
    },
    /// Make a chain the slot's active one, as a new revision.
    ///
    /// The server compiles and smoke-calls every plugin first; a refused chain changes
    /// nothing. Example:
    ///
    ///   lyceum plugin activate chat --chain builtin:chat-moderation 3f1c2a9b:filter
    ///     --config 'filter={"blocked":["buy followers"]}'
    #[command(group(ArgGroup::new("given").required(true).args(["chain", "chain_file"])))]
    Activate {
        #[arg(value_enum)]
        slot: SlotName,
        #[command(flatten)]
        chain: ChainArgs,
        /// What a failing plugin means for the slot: refuse the request (fail-closed, the
        /// default) or pass over the plugin (fail-open).
        #[arg(long, value_enum)]
        failure: Option<FailureName>,
        #[command(flatten)]
        server: Server,
    },
    /// Activate the chain before the active one again, as a new revision.
    ///
    /// Rolling back again goes one revision further back.
    Rollback {
        #[arg(value_enum)]
        slot: SlotName,
        #[command(flatten)]
        server: Server,
    },
    /// Run a candidate chain in shadow, stop it (--off) or promote it (--promote).
    ///
    /// A shadow chain is asked the same questions as the active chain; its verdicts are
    /// compared and recorded, never enforced. Shadows end when the server restarts.
    #[command(group(ArgGroup::new("given").required(true).args(["chain", "chain_file", "off", "promote"])))]
    Shadow {
        #[arg(value_enum)]
        slot: SlotName,
        #[command(flatten)]
        chain: ChainArgs,
        /// Stop the shadow candidate.
        #[arg(long, conflicts_with_all = ["chain", "chain_file", "promote"])]
        off: bool,
        /// Make the candidate the active chain, as a new revision.
        #[arg(long, conflicts_with_all = ["chain", "chain_file"])]
        promote: bool,
        #[command(flatten)]
        server: Server,
    },
    /// List the decision audit, newest first.
    ///
    /// Every verdict other than allow/accept/relay, every plugin failure and every shadow
    /// disagreement, with the plugin, actor and request id (never the content).
    Decisions {
        #[arg(long, value_enum)]
        slot: Option<SlotName>,
        /// reject, flag, rewrite, deny, drop, or a failure kind (timeout, trap, …).
        #[arg(long)]
        verdict: Option<String>,
        /// The plugin's module SHA-256.
        #[arg(long, value_name = "SHA256")]
        plugin: Option<String>,
        /// Only shadow disagreements (`--shadow`), or only enforced decisions
        /// (`--shadow false`).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        shadow: Option<bool>,
        /// From this time: RFC 3339 (2025-03-01T10:00:00Z) or a duration ago (15m, 2h, 7d).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Until this time (exclusive), written like --since.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        server: Server,
    },
    /// List the slot's revisions, newest first.
    ///
    /// When, by whom, from where (api, file, rollback, promote) and with which chain.
    Revisions {
        #[arg(value_enum)]
        slot: SlotName,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        server: Server,
    },
}

/// A chain given on the command line or in a file.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The plugins in the order they are asked, each MODULE[:NAME]: MODULE is a module's
    /// SHA-256 (or its first 8 or more hex digits) or builtin:chat-moderation,
    /// builtin:file-validation, builtin:signaling-policy; NAME is the plugin's name in logs,
    /// metrics and the key-value store (default: the module's name).
    #[arg(long, num_args = 1.., value_name = "MODULE[:NAME]", value_parser = chain::parse_link,
          conflicts_with = "chain_file")]
    pub chain: Vec<LinkArg>,
    /// The configuration of the plugin called NAME (its NAME in --chain, else its MODULE):
    /// a JSON object. Repeat for each plugin to configure.
    #[arg(long = "config", value_name = "NAME=JSON", value_parser = chain::parse_config,
          requires = "chain")]
    pub configs: Vec<(String, Map<String, Value>)>,
    /// A JSON file holding the request body instead, `{"chain": [link], "failure"?}`, with
    /// links as the API takes them (module, name, config, failure, limits).
    #[arg(long, value_name = "FILE.json")]
    pub chain_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// How many to show, 1 to 100 (default 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// Where to go on from: the `more: --cursor …` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl PageArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        query
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SlotName {
    Chat,
    Files,
    Signaling,
}

impl SlotName {
    pub fn slot(self) -> Slot {
        match self {
            SlotName::Chat => Slot::Chat,
            SlotName::Files => Slot::Files,
            SlotName::Signaling => Slot::Signaling,
        }
    }

    fn as_str(self) -> &'static str {
        self.slot().as_str()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailureName {
    FailClosed,
    FailOpen,
}

impl From<FailureName> for Failure {
    fn from(name: FailureName) -> Self {
        match name {
            FailureName::FailClosed => Failure::FailClosed,
            FailureName::FailOpen => Failure::FailOpen,
        }
    }
}

/// RFC 3339, or a duration before now.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time nor a duration such as 15m, 2h or 7d")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| Utc::now().checked_sub_signed(ago))
        .ok_or_else(|| format!("`{text}` reaches back too far"))
}

/// Runs the command and prints its answer, or its error: the sentence on standard error
/// and, with `--json`, the error's JSON on standard output.
pub async fn run(args: PluginArgs) -> ExitCode {
    let json = args.json;
    // `test` prints its report whether cases pass or fail; a failed case exits 1.
    let (result, failed) = match args.command {
        PluginCommand::Test(test) => match test::run(test, json).await {
            Ok(report) => (Ok(report.output), report.failed > 0),
            Err(error) => (Err(error), false),
        },
        command => (execute(command, json).await, false),
    };
    // Written, not `print!`ed: a reader that stops early (`| head`) is no reason to panic.
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(output) => {
            let _ = stdout.write_all(output.as_bytes());
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            if json {
                let _ = writeln!(stdout, "{}", pretty(&error.to_json()));
            }
            eprintln!("lyceum: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The answer as printed: `data` as JSON, or `human` of it.
fn answer(
    data: &Value,
    json: bool,
    human: impl FnOnce(&Value) -> Result<String, CliError>,
) -> Result<String, CliError> {
    if json {
        Ok(format!("{}\n", pretty(data)))
    } else {
        human(data)
    }
}

fn slot_answer(data: &Value, json: bool) -> Result<String, CliError> {
    answer(data, json, |d| Ok(render::slot(&decode::<SlotInfo>(d)?)))
}

async fn execute(command: PluginCommand, json: bool) -> Result<String, CliError> {
    match command {
        PluginCommand::Check { file, slot, config } => {
            let checked =
                check::check(file, slot.map(SlotName::slot), config.unwrap_or_default()).await?;
            Ok(if json {
                format!("{}\n", pretty(&checked.to_json()))
            } else {
                format!("{}\n", checked.sentence())
            })
        }
        PluginCommand::New(args) => new::run(args, json),
        PluginCommand::Test(_) => unreachable!("`test` is run by `run`, which reports its cases"),
        PluginCommand::List { slot, server } => {
            let api = connect(server)?;
            match slot {
                Some(slot) => slot_answer(&api.get(&slot_path(slot, ""), &[]).await?, json),
                None => {
                    let data = api.get("/plugins", &[]).await?;
                    answer(&data, json, |d| {
                        Ok(render::overview(&decode::<Overview>(d)?))
                    })
                }
            }
        }
        PluginCommand::Install { file, name, server } => {
            let bytes = tokio::fs::read(&file)
                .await
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?;
            let api = connect(server)?;
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "module.wasm".into());
            let (data, created) = api.upload(file_name, bytes, name).await?;
            answer(&data, json, |d| {
                Ok(render::installed(&decode::<Module>(d)?, created))
            })
        }
        PluginCommand::Modules { page, server } => {
            let data = connect(server)?
                .get("/plugins/modules", &page.query())
                .await?;
            answer(&data, json, |d| Ok(render::modules(&page_of::<Module>(d)?)))
        }
        PluginCommand::Activate {
            slot,
            chain,
            failure,
            server,
        } => {
            let mut body = chain_body(chain)?;
            if let Some(failure) = failure {
                body.failure = Some(failure.into());
            }
            let api = connect(server)?;
            chain::resolve_prefixes(&api, &mut body.chain).await?;
            slot_answer(&api.put(&slot_path(slot, ""), &body).await?, json)
        }
        PluginCommand::Rollback { slot, server } => {
            let api = connect(server)?;
            slot_answer(&api.post(&slot_path(slot, "/rollback")).await?, json)
        }
        PluginCommand::Shadow {
            slot,
            chain,
            off,
            promote,
            server,
        } => {
            let data = if off {
                connect(server)?.delete(&slot_path(slot, "/shadow")).await?
            } else if promote {
                connect(server)?
                    .post(&slot_path(slot, "/shadow/promote"))
                    .await?
            } else {
                let body = chain_body(chain)?;
                if body.failure.is_some() {
                    return Err(CliError::usage(
                        "a shadow chain takes no `failure`: its verdicts are never enforced",
                    ));
                }
                let api = connect(server)?;
                let mut body = ShadowBody { chain: body.chain };
                chain::resolve_prefixes(&api, &mut body.chain).await?;
                api.put(&slot_path(slot, "/shadow"), &body).await?
            };
            slot_answer(&data, json)
        }
        PluginCommand::Decisions {
            slot,
            verdict,
            plugin,
            shadow,
            since,
            until,
            page,
            server,
        } => {
            let mut query = page.query();
            let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Millis, true);
            query.extend(slot.map(|s| ("slot", s.as_str().to_owned())));
            query.extend(verdict.map(|v| ("verdict", v)));
            query.extend(plugin.map(|p| ("plugin", p.to_ascii_lowercase())));
            query.extend(shadow.map(|s| ("shadow", s.to_string())));
            query.extend(since.map(|t| ("since", time(t))));
            query.extend(until.map(|t| ("until", time(t))));
            let data = connect(server)?.get("/plugins/decisions", &query).await?;
            answer(&data, json, |d| {
                Ok(render::decisions(&decode::<Page<Decision>>(d)?))
            })
        }
        PluginCommand::Revisions { slot, page, server } => {
            let data = connect(server)?
                .get(&slot_path(slot, "/revisions"), &page.query())
                .await?;
            answer(&data, json, |d| {
                Ok(render::revisions(&decode::<Page<Revision>>(d)?))
            })
        }
    }
}

fn connect(server: Server) -> Result<Api, CliError> {
    Api::new(&server.url, server.token)
}

fn slot_path(slot: SlotName, rest: &str) -> String {
    format!("/plugins/{}{rest}", slot.as_str())
}

/// The body given by `--chain …` or `--chain-file`.
fn chain_body(args: ChainArgs) -> Result<ChainBody, CliError> {
    match args.chain_file {
        Some(path) => chain::read_file(&path),
        None => Ok(ChainBody {
            chain: chain::links(&args.chain, args.configs)?,
            failure: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_a_duration_ago() {
        assert_eq!(
            parse_time("2025-03-01T10:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2025-03-01T09:00:00+00:00"
        );
        let hour_ago = parse_time("1h").unwrap();
        let expected = Utc::now() - chrono::Duration::hours(1);
        assert!((hour_ago - expected).num_seconds().abs() < 5);
        assert!(parse_time("yesterday").is_err());
    }
}
