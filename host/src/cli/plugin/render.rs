//! The human side of the admin API's answers: aligned tables of slots, modules, revisions and
//! decisions. Only what the tables show is read; `--json` prints the answers whole.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use super::error::CliError;
use crate::service::plugins::links::Link;

/// Digits of a SHA-256 shown in tables: enough to name a module on the command line.
pub const SHA_PREFIX: usize = 12;

/// Reads an answer's `data` as `T`; a shape the tables cannot read is the server's fault.
pub fn decode<T: DeserializeOwned>(data: &Value) -> Result<T, CliError> {
    T::deserialize(data)
        .map_err(|e| CliError::Transport(format!("unexpected answer from the server: {e}")))
}

/// A list answer as a page: `{items, nextCursor}`, or a bare array (a list the server sends
/// whole, as the module list was before it was paged).
pub fn page_of<T: DeserializeOwned>(data: &Value) -> Result<Page<T>, CliError> {
    match data {
        Value::Array(_) => Ok(Page {
            items: decode(data)?,
            next_cursor: None,
        }),
        _ => decode(data),
    }
}

#[derive(Debug, Deserialize)]
pub struct Overview {
    pub slots: Vec<SlotInfo>,
    #[serde(default)]
    pub file: Option<FileInfo>,
}

#[derive(Debug, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotInfo {
    pub slot: String,
    pub revision: u64,
    pub activated_at: DateTime<Utc>,
    pub activated_by: Option<String>,
    pub failure: String,
    pub chain: Vec<PluginInfo>,
    pub shadow: Option<ShadowInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    pub name: String,
    pub sha256: String,
    pub abi: String,
    pub wit_version: String,
    pub failure: String,
    pub stats: Stats,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub calls: u64,
    pub p99_us: u64,
    #[serde(default)]
    pub circuit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowInfo {
    pub chain: Vec<PluginInfo>,
    pub since: DateTime<Utc>,
    pub calls: u64,
    pub agree: u64,
    pub disagree: u64,
    #[serde(default)]
    pub dropped: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    pub sha256: String,
    pub name: String,
    pub abi: String,
    pub world: String,
    pub wit_version: String,
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: i64,
    pub activated_at: DateTime<Utc>,
    pub activated_by: Option<String>,
    pub source: String,
    #[serde(default)]
    pub failure: Option<String>,
    pub chain: Vec<Link>,
    #[serde(default)]
    pub restored_from: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub at: DateTime<Utc>,
    pub slot: String,
    pub plugin: DecisionPlugin,
    pub verdict: String,
    pub reason: Option<String>,
    pub shadow: bool,
    pub actor_id: Option<String>,
    pub request_id: String,
}

#[derive(Debug, Deserialize)]
pub struct DecisionPlugin {
    pub name: String,
    pub sha256: String,
}

/// Columns padded to their widest cell, two spaces apart.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut String, indent: &str) {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = indent.to_owned();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn short(sha256: &str) -> String {
    sha256.chars().take(SHA_PREFIX).collect()
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Microseconds as an operator reads them: `850µs`, `1.2ms`, `3.40s`.
fn duration_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn who(by: &Option<String>) -> &str {
    by.as_deref().unwrap_or("plugins file")
}

pub fn overview(overview: &Overview) -> String {
    let mut out = String::new();
    for (i, slot) in overview.slots.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_slot(&mut out, slot);
    }
    if let Some(FileInfo {
        path,
        error: Some(error),
    }) = &overview.file
    {
        let _ = writeln!(
            out,
            "\nplugins file {path} was refused (the active chains keep serving): {error}"
        );
    }
    out
}

pub fn slot(slot: &SlotInfo) -> String {
    let mut out = String::new();
    write_slot(&mut out, slot);
    out
}

fn write_slot(out: &mut String, slot: &SlotInfo) {
    let _ = writeln!(
        out,
        "{}: revision {}, {}, activated {} by {}",
        slot.slot,
        slot.revision,
        slot.failure,
        time(&slot.activated_at),
        who(&slot.activated_by)
    );
    if slot.chain.is_empty() {
        out.push_str("  no plugins: everything is allowed\n");
    } else {
        plugins_table(&slot.chain).write(out, "  ");
    }
    if let Some(shadow) = &slot.shadow {
        let names: Vec<&str> = shadow.chain.iter().map(|p| p.name.as_str()).collect();
        let _ = writeln!(
            out,
            "  shadow since {}: {} — {} calls, {} agree, {} disagree, {} dropped",
            time(&shadow.since),
            names.join(", "),
            shadow.calls,
            shadow.agree,
            shadow.disagree,
            shadow.dropped
        );
    }
}

fn plugins_table(plugins: &[PluginInfo]) -> Table {
    let mut table = Table::new(&[
        "PLUGIN", "SHA256", "ABI", "WIT", "FAILURE", "CALLS", "P99", "CIRCUIT",
    ]);
    for p in plugins {
        table.row(vec![
            p.name.clone(),
            short(&p.sha256),
            p.abi.clone(),
            p.wit_version.clone(),
            p.failure.clone(),
            p.stats.calls.to_string(),
            duration_us(p.stats.p99_us),
            p.stats.circuit.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table
}

/// The answer to an upload, in one sentence ending with the module's SHA-256.
pub fn installed(module: &Module, created: bool) -> String {
    let worlds = if module.world.contains('+') {
        "worlds"
    } else {
        "world"
    };
    format!(
        "{} {} ({}, {worlds} {} at WIT {}, {} bytes): {}\n",
        if created {
            "installed module"
        } else {
            "already installed: module"
        },
        module.name,
        module.abi,
        module.world,
        module.wit_version,
        module.size,
        module.sha256
    )
}

pub fn modules(page: &Page<Module>) -> String {
    if page.items.is_empty() {
        return "no modules uploaded\n".into();
    }
    let mut table = Table::new(&["SHA256", "NAME", "ABI", "WORLD", "WIT", "SIZE", "CREATED"]);
    for m in &page.items {
        table.row(vec![
            m.sha256.clone(),
            m.name.clone(),
            m.abi.clone(),
            m.world.clone(),
            m.wit_version.clone(),
            m.size.to_string(),
            time(&m.created_at),
        ]);
    }
    paged(table, page.next_cursor.as_deref())
}

pub fn revisions(page: &Page<Revision>) -> String {
    let mut table = Table::new(&["REVISION", "ACTIVATED", "BY", "SOURCE", "FAILURE", "CHAIN"]);
    for r in &page.items {
        let source = match r.restored_from {
            Some(from) => format!("{} of {from}", r.source),
            None => r.source.clone(),
        };
        let chain: Vec<String> = r.chain.iter().map(link_label).collect();
        table.row(vec![
            r.revision.to_string(),
            time(&r.activated_at),
            who(&r.activated_by).to_owned(),
            source,
            r.failure.clone().unwrap_or_else(|| "-".into()),
            if chain.is_empty() {
                "(none)".into()
            } else {
                chain.join(", ")
            },
        ]);
    }
    paged(table, page.next_cursor.as_deref())
}

fn link_label(link: &Link) -> String {
    let module = if link.module.starts_with("builtin:") {
        link.module.clone()
    } else {
        short(&link.module)
    };
    match &link.name {
        Some(name) => format!("{module}:{name}"),
        None => module,
    }
}

pub fn decisions(page: &Page<Decision>) -> String {
    if page.items.is_empty() {
        return "no decisions\n".into();
    }
    let mut table = Table::new(&[
        "AT", "SLOT", "PLUGIN", "SHA256", "VERDICT", "REASON", "SHADOW", "ACTOR", "REQUEST",
    ]);
    for d in &page.items {
        table.row(vec![
            time(&d.at),
            d.slot.clone(),
            d.plugin.name.clone(),
            short(&d.plugin.sha256),
            d.verdict.clone(),
            d.reason.clone().unwrap_or_else(|| "-".into()),
            if d.shadow { "yes" } else { "no" }.into(),
            d.actor_id.clone().unwrap_or_else(|| "-".into()),
            d.request_id.clone(),
        ]);
    }
    paged(table, page.next_cursor.as_deref())
}

fn paged(table: Table, next: Option<&str>) -> String {
    let mut out = String::new();
    table.write(&mut out, "");
    if let Some(cursor) = next {
        let _ = writeln!(out, "more: --cursor {cursor}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "3f1c2a9b7e0d44aa3f1c2a9b7e0d44aa3f1c2a9b7e0d44aa3f1c2a9b7e0d44aa";

    fn plugin(name: &str, calls: u64, p99: u64) -> Value {
        json!({
            "name": name, "sha256": SHA, "abi": "component", "witVersion": "0.1.0",
            "config": {}, "failure": "fail-closed",
            "limits": {"deadlineMs": 50, "memoryMib": 16, "fuel": null},
            "stats": {"calls": calls, "errors": 0, "timeouts": 0, "verdicts": {},
                      "p50Us": 10, "p99Us": p99, "circuit": "closed"}
        })
    }

    #[test]
    fn a_slot_is_a_header_line_and_an_aligned_table_of_its_plugins() {
        let data = json!({
            "slots": [{
                "slot": "chat", "revision": 4, "activatedAt": "2025-03-01T10:00:00Z",
                "activatedBy": "0195", "failure": "fail-closed",
                "chain": [plugin("chat-moderation", 1204, 850), plugin("filter", 7, 12_500)],
                "shadow": {"chain": [plugin("candidate", 0, 0)], "since": "2025-03-01T11:00:00Z",
                           "calls": 20, "agree": 18, "disagree": 2, "dropped": 0, "samples": []}
            }],
            "file": {"path": "plugins.toml", "checkedAt": null, "error": "chat: bad"}
        });
        let text = overview(&decode(&data).unwrap());
        let expected = "\
chat: revision 4, fail-closed, activated 2025-03-01 10:00:00 by 0195
  PLUGIN           SHA256        ABI        WIT    FAILURE      CALLS  P99     CIRCUIT
  chat-moderation  3f1c2a9b7e0d  component  0.1.0  fail-closed  1204   850µs   closed
  filter           3f1c2a9b7e0d  component  0.1.0  fail-closed  7      12.5ms  closed
  shadow since 2025-03-01 11:00:00: candidate — 20 calls, 18 agree, 2 disagree, 0 dropped

plugins file plugins.toml was refused (the active chains keep serving): chat: bad
";
        assert_eq!(text, expected);
    }

    #[test]
    fn revisions_show_what_each_restored_and_where_the_next_page_starts() {
        let data = json!({
            "items": [
                {"revision": 3, "activatedAt": "2025-03-01T10:00:00Z", "activatedBy": "0195",
                 "source": "rollback", "failure": "fail-closed", "restoredFrom": 1,
                 "chain": [{"module": "builtin:chat-moderation"}]},
                {"revision": 2, "activatedAt": "2025-03-01T09:00:00Z", "activatedBy": null,
                 "source": "file", "failure": "fail-open", "restoredFrom": null,
                 "chain": [{"module": SHA, "name": "filter"}]}
            ],
            "nextCursor": "2"
        });
        let text = revisions(&decode(&data).unwrap());
        assert!(text.contains("rollback of 1"), "{text}");
        assert!(text.contains("plugins file"), "{text}");
        assert!(text.contains("3f1c2a9b7e0d:filter"), "{text}");
        assert!(text.ends_with("more: --cursor 2\n"), "{text}");
    }

    #[test]
    fn a_list_is_read_as_a_page_or_as_a_bare_array() {
        let module = json!({"sha256": SHA, "name": "filter", "abi": "component",
            "world": "chat-moderation", "witVersion": "0.1.0", "size": 1024,
            "createdAt": "2025-03-01T10:00:00Z"});
        let bare: Page<Module> = page_of(&json!([module])).unwrap();
        assert_eq!(bare.items.len(), 1);
        assert_eq!(bare.next_cursor, None);
        let paged: Page<Module> = page_of(&json!({"items": [module], "nextCursor": SHA})).unwrap();
        assert_eq!(paged.next_cursor.as_deref(), Some(SHA));
        assert!(modules(&paged).ends_with(&format!("more: --cursor {SHA}\n")));
    }

    #[test]
    fn an_answer_of_another_shape_is_reported_not_guessed() {
        let error = decode::<Overview>(&json!({"slots": "chat"})).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(error.to_string().contains("unexpected answer"), "{error}");
    }

    #[test]
    fn durations_are_in_the_unit_that_reads_best() {
        assert_eq!(duration_us(999), "999µs");
        assert_eq!(duration_us(1_240), "1.2ms");
        assert_eq!(duration_us(3_400_000), "3.40s");
    }
}
