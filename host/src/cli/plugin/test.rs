//! `lyceum plugin test`: a module run against sample inputs without a server. The module is
//! checked and loaded by the server's own runtime, as an activation would (same checks,
//! same default limits), as the only plugin of its slot; each case is then asked through
//! the slot's chain, so a verdict reads as the server would enforce it (refusal codes
//! tidied, rewrites checked against the host's rules). The cases share one in-memory
//! key-value store, in order, so a rate limit can be tested by repeating a call.
//!
//! The cases file (JSON) holds an optional `config` and the `cases`, each a `call` with its
//! `input` in the JSON encoding of the WIT (`lyceum_plugin_runtime::json`) and an optional
//! `expect`ed verdict.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use clap::Args;
use lyceum_plugin_runtime::{
    ChainSpec, FileVerdict, JoinVerdict, LoadError, ModerationDecision, PluginSource, PluginSpec,
    PluginsConfig, PolicyContext, PolicyEngine, PolicyFailure, SignalVerdict, Slot,
    inspect::{self, CheckError},
    json,
    status::Activation,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use super::{SlotName, error::CliError};

/// Run a module against sample inputs, offline, and compare its verdicts.
///
/// The module is checked and loaded as an activation would load it (same checks, same
/// default limits) as the only plugin of its slot; each case is then asked through the
/// slot's chain. Cases run in order and share one in-memory key-value store, so a rate
/// limit can be tested by repeating a call.
///
/// CASES.json: `{"config": {…}?, "cases": [{"name": "…", "call": "moderate" | "precheck" |
/// "finish" | "check_join" | "check_signal", "input": {…}, "expect": {…}?}]}`. `input` is
/// the function's input in the JSON encoding of the WIT (`{"ctx": …, "message": …}` for
/// `moderate`); its `ctx` may be left out or given in part (defaults: requestId `test-N`,
/// actorId `test-user`, actorRole `student`, atUnixMs now). `expect` is a verdict such as
/// `{"tag": "reject", "val": {"code": "spam"}}`; it matches when every field it gives
/// matches, so `{"tag": "reject"}` matches any rejection.
///
/// Exit 0 when every case passes; 1 when one fails (a wrong verdict, or a failed call:
/// trap, timeout, …) or the module is refused (with the reason `check` gives); 2 when the
/// command line or the cases file is wrong (with the JSON path of the mistake).
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The module: a `.wasm` file.
    pub file: PathBuf,
    /// The slot to run it in.
    #[arg(long, value_enum)]
    pub slot: SlotName,
    /// The cases: a JSON file.
    #[arg(long, value_name = "CASES.json")]
    pub cases: PathBuf,
    /// The plugin's configuration, a JSON object or @FILE holding one; replaces the cases
    /// file's `config`.
    #[arg(long, value_name = "JSON|@FILE")]
    pub config: Option<String>,
}

/// What the run printed, and how many cases failed.
#[derive(Debug)]
pub struct Report {
    pub output: String,
    pub failed: usize,
}

/// Loads the module and runs the cases.
pub async fn run(args: TestArgs, as_json: bool) -> Result<Report, CliError> {
    let config = args.config.as_deref().map(config_arg).transpose()?;
    let slot = args.slot.slot();
    let text = std::fs::read_to_string(&args.cases)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", args.cases.display())))?;
    let file = parse_cases(&text, slot)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.cases.display())))?;
    let config = config.or(file.config).unwrap_or_default();
    let bytes = std::fs::read(&args.file)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", args.file.display())))?;
    let path = args.file;
    // Compilation and the calls take whole cores: off the async workers.
    let results = tokio::task::spawn_blocking(move || {
        let engine = load(&path, &bytes, slot, config)?;
        Ok::<_, CliError>(
            file.cases
                .iter()
                .map(|case| run_case(&engine, case))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(|e| CliError::Internal(format!("the test stopped: {e}")))??;
    let failed = results.iter().filter(|r| !r.passed()).count();
    let output = if as_json {
        let cases: Vec<Value> = results.iter().map(CaseResult::to_json).collect();
        let summary = json!({
            "slot": slot.as_str(),
            "passed": results.len() - failed,
            "failed": failed,
            "cases": cases,
        });
        format!(
            "{}\n",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        )
    } else {
        let mut out = String::new();
        for result in &results {
            let _ = writeln!(out, "{}", result.line());
        }
        let _ = writeln!(out, "{} passed, {failed} failed", results.len() - failed);
        out
    };
    Ok(Report { output, failed })
}

/// `--config`: a JSON object, or `@` and the path of a file holding one.
fn config_arg(text: &str) -> Result<Map<String, Value>, CliError> {
    let (json, origin) = match text.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| CliError::usage(format!("cannot read {path}: {e}")))?,
            path.to_owned(),
        ),
        None => (text.to_owned(), "--config".to_owned()),
    };
    match serde_json::from_str(&json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::usage(format!(
            "{origin}: the configuration must be a JSON object ({{…}})"
        ))),
        Err(e) => Err(CliError::usage(format!("{origin}: not JSON: {e}"))),
    }
}

/// The module checked and prepared as an activation would, alone in its slot.
fn load(
    path: &Path,
    bytes: &[u8],
    slot: Slot,
    config: Map<String, Value>,
) -> Result<PolicyEngine, CliError> {
    inspect::inspect(bytes, Some(slot)).map_err(check_refused)?;
    let mut plugins = PluginsConfig::default();
    // Every case is a question of its own: a circuit opened by earlier failing cases would
    // answer later ones without calling the module.
    plugins.engine.breaker_failures = 0;
    for slot in Slot::ALL {
        plugins.slot_mut(slot).plugins = Some(Vec::new());
    }
    let engine = PolicyEngine::builder(plugins)
        .build()
        .map_err(|e| CliError::Internal(e.to_string()))?;
    let plugin = PluginSpec::new(PluginSource::File(path.to_path_buf()))
        .with_name(plugin_name(path))
        .with_config(Value::Object(config));
    let spec = ChainSpec {
        plugins: vec![plugin],
        ..Default::default()
    };
    let prepared = engine.prepare(slot, &spec).map_err(|e| load_refused(&e))?;
    engine.activate(prepared, Activation::unrecorded());
    Ok(engine)
}

/// The file's stem, within the 1 to 64 characters a plugin name may have.
fn plugin_name(path: &Path) -> String {
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().chars().take(64).collect())
        .unwrap_or_default();
    if stem.trim().is_empty() {
        "plugin".into()
    } else {
        stem
    }
}

fn check_refused(error: CheckError) -> CliError {
    CliError::Refused {
        reason: error.reason.as_str().to_owned(),
        message: error.message,
        imports: error.imports,
    }
}

fn load_refused(error: &LoadError) -> CliError {
    CliError::Refused {
        reason: error.reason().to_owned(),
        message: error.to_string(),
        imports: error.imports().to_vec(),
    }
}

/// The five functions a case may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CallName {
    Moderate,
    Precheck,
    Finish,
    CheckJoin,
    CheckSignal,
}

impl CallName {
    fn as_str(self) -> &'static str {
        match self {
            CallName::Moderate => json::MODERATE,
            CallName::Precheck => json::PRECHECK,
            CallName::Finish => json::FINISH,
            CallName::CheckJoin => json::CHECK_JOIN,
            CallName::CheckSignal => json::CHECK_SIGNAL,
        }
    }

    fn slot(self) -> Slot {
        match self {
            CallName::Moderate => Slot::Chat,
            CallName::Precheck | CallName::Finish => Slot::Files,
            CallName::CheckJoin | CallName::CheckSignal => Slot::Signaling,
        }
    }

    /// The cases of the verdict the function returns.
    fn verdicts(self) -> &'static [&'static str] {
        match self {
            CallName::Moderate => &["allow", "reject", "rewrite", "flag"],
            CallName::Precheck | CallName::Finish => &["accept", "reject"],
            CallName::CheckJoin => &["allow", "deny"],
            CallName::CheckSignal => &["relay", "rewrite", "drop"],
        }
    }
}

/// The cases file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    config: Option<Map<String, Value>>,
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    name: Option<String>,
    call: CallName,
    input: Value,
    #[serde(default)]
    expect: Option<Value>,
}

/// The cases file, checked.
#[derive(Debug)]
struct CasesFile {
    config: Option<Map<String, Value>>,
    cases: Vec<Case>,
}

#[derive(Debug)]
struct Case {
    name: String,
    input: Input,
    expect: Option<Value>,
}

/// A call's input, decoded.
#[derive(Debug)]
enum Input {
    Moderate(json::ModerateInput),
    Precheck(json::PrecheckInput),
    Finish(json::FinishInput),
    CheckJoin(json::CheckJoinInput),
    CheckSignal(json::CheckSignalInput),
}

impl Input {
    fn call(&self) -> CallName {
        match self {
            Input::Moderate(_) => CallName::Moderate,
            Input::Precheck(_) => CallName::Precheck,
            Input::Finish(_) => CallName::Finish,
            Input::CheckJoin(_) => CallName::CheckJoin,
            Input::CheckSignal(_) => CallName::CheckSignal,
        }
    }
}

/// A mistake in the cases file: where (a JSON path such as `cases[2].input.message`) and
/// what.
#[derive(Debug, PartialEq, Eq)]
struct FileError {
    path: String,
    message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "at {}: {}", self.path, self.message)
        }
    }
}

fn error_at(path: impl Into<String>, message: impl Into<String>) -> FileError {
    FileError {
        path: path.into(),
        message: message.into(),
    }
}

/// Reads a cases file for `slot`, with the defaults of every context filled in.
fn parse_cases(text: &str, slot: Slot) -> Result<CasesFile, FileError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        error_at(path, e.into_inner().to_string())
    })?;
    deserializer
        .end()
        .map_err(|e| error_at("", e.to_string()))?;
    if raw.cases.is_empty() {
        return Err(error_at("cases", "there is no case to run"));
    }
    let mut cases = Vec::with_capacity(raw.cases.len());
    for (index, raw) in raw.cases.into_iter().enumerate() {
        let at = format!("cases[{index}]");
        if raw.call.slot() != slot {
            return Err(error_at(
                format!("{at}.call"),
                format!(
                    "`{}` is a function of the {} slot, not of the {slot} slot",
                    raw.call.as_str(),
                    raw.call.slot()
                ),
            ));
        }
        let input = with_context(raw.input, index + 1, &format!("{at}.input"))?;
        let input = decode_input(raw.call, input, &format!("{at}.input"))?;
        if let Some(expect) = &raw.expect {
            check_expectation(raw.call, expect, &format!("{at}.expect"))?;
        }
        cases.push(Case {
            name: raw.name.unwrap_or_else(|| format!("case {}", index + 1)),
            input,
            expect: raw.expect,
        });
    }
    Ok(CasesFile {
        config: raw.config,
        cases,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The input with its `ctx` completed: what a case leaves out, the test supplies.
fn with_context(mut input: Value, number: usize, at: &str) -> Result<Value, FileError> {
    let Value::Object(fields) = &mut input else {
        return Err(error_at(at, "the input must be a JSON object"));
    };
    let ctx = fields.entry("ctx").or_insert(Value::Null);
    if ctx.is_null() {
        *ctx = Value::Object(Map::new());
    }
    let Value::Object(ctx) = ctx else {
        return Err(error_at(
            format!("{at}.ctx"),
            "the context must be a JSON object",
        ));
    };
    let defaults = [
        ("requestId", json!(format!("test-{number}"))),
        ("actorId", json!("test-user")),
        ("actorRole", json!("student")),
        ("atUnixMs", json!(now_ms())),
    ];
    for (key, value) in defaults {
        ctx.entry(key).or_insert(value);
    }
    Ok(input)
}

fn decode_input(call: CallName, input: Value, at: &str) -> Result<Input, FileError> {
    Ok(match call {
        CallName::Moderate => Input::Moderate(decode(input, at)?),
        CallName::Precheck => Input::Precheck(decode(input, at)?),
        CallName::Finish => Input::Finish(decode(input, at)?),
        CallName::CheckJoin => Input::CheckJoin(decode(input, at)?),
        CallName::CheckSignal => Input::CheckSignal(decode(input, at)?),
    })
}

/// `value` as a `T`, refusing fields `T` does not have: a misspelt field would otherwise
/// be a default value the author did not mean.
fn decode<T: DeserializeOwned + Serialize>(value: Value, at: &str) -> Result<T, FileError> {
    let decoded: T = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        error_at(join_path(at, &path), e.into_inner().to_string())
    })?;
    let known = serde_json::to_value(&decoded).unwrap_or(Value::Null);
    if let Some((path, field)) = unknown_field(&value, &known, at) {
        return Err(error_at(path, format!("unknown field `{field}`")));
    }
    Ok(decoded)
}

fn join_path(at: &str, inner: &str) -> String {
    match inner {
        "" | "." => at.to_owned(),
        inner if inner.starts_with('[') => format!("{at}{inner}"),
        inner => format!("{at}.{inner}"),
    }
}

/// The first field of `given` that its decoded form `known` does not have, with the path
/// of the object holding it.
fn unknown_field(given: &Value, known: &Value, at: &str) -> Option<(String, String)> {
    let (Value::Object(given), Value::Object(known)) = (given, known) else {
        return None;
    };
    for (key, value) in given {
        match known.get(key) {
            None => return Some((at.to_owned(), key.clone())),
            Some(inner) => {
                if let Some(found) = unknown_field(value, inner, &format!("{at}.{key}")) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// An expectation must name one of the verdict's cases; its other fields are compared as
/// given.
fn check_expectation(call: CallName, expect: &Value, at: &str) -> Result<(), FileError> {
    let cases = call.verdicts();
    let listed = cases
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let Value::Object(fields) = expect else {
        return Err(error_at(
            at,
            format!(
                "an expected verdict is an object such as {{\"tag\": \"{}\"}}",
                cases[0]
            ),
        ));
    };
    match fields.get("tag") {
        Some(Value::String(tag)) if cases.contains(&tag.as_str()) => {}
        Some(Value::String(tag)) => {
            return Err(error_at(
                format!("{at}.tag"),
                format!("`{tag}` is not a verdict of `{}` ({listed})", call.as_str()),
            ));
        }
        _ => {
            return Err(error_at(
                format!("{at}.tag"),
                format!("the verdict's case is required: one of {listed}"),
            ));
        }
    }
    if let Some(key) = fields.keys().find(|k| *k != "tag" && *k != "val") {
        return Err(error_at(
            at,
            format!("unknown field `{key}`: a verdict has `tag` and `val`"),
        ));
    }
    Ok(())
}

/// Whether `got` has everything `expected` gives: objects match field by field (fields
/// left out match anything), anything else must be equal.
fn matches(expected: &Value, got: &Value) -> bool {
    match (expected, got) {
        (Value::Object(expected), Value::Object(got)) => expected
            .iter()
            .all(|(key, value)| got.get(key).is_some_and(|g| matches(value, g))),
        (expected, got) => expected == got,
    }
}

/// What one case gave.
#[derive(Debug)]
struct CaseResult {
    name: String,
    call: CallName,
    expect: Option<Value>,
    got: Result<Value, PolicyFailure>,
}

impl CaseResult {
    fn passed(&self) -> bool {
        match (&self.got, &self.expect) {
            (Err(_), _) => false,
            (Ok(_), None) => true,
            (Ok(got), Some(expected)) => matches(expected, got),
        }
    }

    fn line(&self) -> String {
        let name = &self.name;
        let call = self.call.as_str();
        match &self.got {
            Ok(got) if self.passed() => format!("ok      {name} ({call}): {got}"),
            Ok(got) => format!(
                "FAILED  {name} ({call}): expected {}, got {got}",
                self.expect.as_ref().unwrap_or(&Value::Null)
            ),
            Err(failure) => format!(
                "FAILED  {name} ({call}): the call failed: {} ({})",
                failure.kind.as_str(),
                failure.kind
            ),
        }
    }

    fn to_json(&self) -> Value {
        let (got, failure) = match &self.got {
            Ok(got) => (got.clone(), Value::Null),
            Err(failure) => (
                Value::Null,
                json!({"kind": failure.kind.as_str(), "message": failure.kind.to_string()}),
            ),
        };
        json!({
            "name": self.name,
            "call": self.call.as_str(),
            "passed": self.passed(),
            "expected": self.expect,
            "got": got,
            "failure": failure,
        })
    }
}

fn run_case(engine: &PolicyEngine, case: &Case) -> CaseResult {
    let got = match &case.input {
        Input::Moderate(input) => engine
            .moderate_blocking(&context(&input.ctx), &input.message.clone().into())
            .map(|decision| to_value(&moderation_verdict(decision))),
        Input::Precheck(input) => engine
            .precheck_file_blocking(&context(&input.ctx), &input.upload.clone().into())
            .map(|verdict| to_value(&json::FileVerdict::from(&verdict))),
        Input::Finish(input) => engine
            .finish_file_blocking(&context(&input.ctx), &input.upload.clone().into())
            .map(|verdict: FileVerdict| to_value(&json::FileVerdict::from(&verdict))),
        Input::CheckJoin(input) => engine
            .check_join_blocking(&context(&input.ctx), &input.request.clone().into())
            .map(|verdict: JoinVerdict| to_value(&json::JoinVerdict::from(&verdict))),
        Input::CheckSignal(input) => engine
            .check_signal_blocking(&context(&input.ctx), &input.signal.clone().into())
            .map(|verdict: SignalVerdict| to_value(&json::SignalVerdict::from(&verdict))),
    };
    CaseResult {
        name: case.name.clone(),
        call: case.input.call(),
        expect: case.expect.clone(),
        got,
    }
}

fn context(ctx: &json::Context) -> PolicyContext {
    ctx.clone().into()
}

fn to_value(verdict: &impl Serialize) -> Value {
    serde_json::to_value(verdict).unwrap_or(Value::Null)
}

/// The chain's decision read back as the one plugin's verdict: with a single plugin, a
/// rewritten content is its rewrite and a flag its flag.
fn moderation_verdict(decision: ModerationDecision) -> json::Verdict {
    match decision {
        ModerationDecision::Reject(refusal) => json::Verdict::Reject((&refusal).into()),
        ModerationDecision::Allow { flags, .. } if !flags.is_empty() => {
            json::Verdict::Flag(flags.join("; "))
        }
        ModerationDecision::Allow {
            content: Some(content),
            ..
        } => json::Verdict::Rewrite(content),
        ModerationDecision::Allow { content: None, .. } => json::Verdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_context_is_completed_and_kept_where_given() {
        let file = parse_cases(
            r#"{"cases": [{"call": "moderate", "input": {
                "ctx": {"actorId": "u7", "atUnixMs": 5},
                "message": {"roomId": "r", "event": "send", "content": "hi"}}}]}"#,
            Slot::Chat,
        )
        .unwrap();
        let Input::Moderate(input) = &file.cases[0].input else {
            panic!("a moderate input: {:?}", file.cases[0].input);
        };
        assert_eq!(input.ctx.actor_id, "u7");
        assert_eq!(input.ctx.at_unix_ms, 5);
        assert_eq!(input.ctx.request_id, "test-1");
        assert_eq!(input.ctx.actor_role, json::Role::Student);
        assert_eq!(file.cases[0].name, "case 1");
    }

    #[test]
    fn mistakes_are_located_by_their_json_path() {
        let at = |text: &str, slot| parse_cases(text, slot).unwrap_err().path;
        assert_eq!(
            at(
                r#"{"cases": [{"call": "moderate", "input": {"message": {"roomId": "r", "event": "shout", "content": "x"}}}]}"#,
                Slot::Chat
            ),
            "cases[0].input.message.event"
        );
        assert_eq!(
            at(
                r#"{"cases": [{"call": "moderate", "input": {"message": {"roomId": "r", "event": "send", "content": "x", "contnet": "y"}}}]}"#,
                Slot::Chat
            ),
            "cases[0].input.message"
        );
        assert_eq!(
            at(
                r#"{"cases": [{"call": "check_join", "input": {}}]}"#,
                Slot::Chat
            ),
            "cases[0].call"
        );
        assert_eq!(
            at(
                r#"{"cases": [{"call": "check_join", "input": {"request": {"sessionId": "s", "state": "live", "participantCount": 1}}, "expect": {"tag": "reject"}}]}"#,
                Slot::Signaling
            ),
            "cases[0].expect.tag"
        );
        assert_eq!(
            at(r#"{"cases": [{"call": "moderate"}]}"#, Slot::Chat),
            "cases[0]"
        );
    }

    #[test]
    fn an_expectation_matches_on_the_fields_it_gives() {
        let got = json!({"tag": "reject", "val": {"code": "spam", "reason": "No spam."}});
        assert!(matches(&json!({"tag": "reject"}), &got));
        assert!(matches(
            &json!({"tag": "reject", "val": {"code": "spam"}}),
            &got
        ));
        assert!(!matches(
            &json!({"tag": "reject", "val": {"code": "abuse"}}),
            &got
        ));
        assert!(!matches(&json!({"tag": "allow"}), &got));
        assert!(!matches(
            &json!({"tag": "reject", "val": {"cod": "spam"}}),
            &got
        ));
    }

    #[test]
    fn a_single_plugins_flag_and_rewrite_read_back_as_its_verdict() {
        let flagged = ModerationDecision::Allow {
            content: None,
            flags: vec!["links".into()],
        };
        assert_eq!(
            moderation_verdict(flagged),
            json::Verdict::Flag("links".into())
        );
        let rewritten = ModerationDecision::Allow {
            content: Some("***".into()),
            flags: vec![],
        };
        assert_eq!(
            moderation_verdict(rewritten),
            json::Verdict::Rewrite("***".into())
        );
        assert_eq!(
            moderation_verdict(ModerationDecision::allow()),
            json::Verdict::Allow
        );
    }
}
