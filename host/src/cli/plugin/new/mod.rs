//! `lyceum plugin new`: a standalone plugin project, in Rust, JavaScript, Python or Rust
//! for Extism, for one slot. The project needs nothing from this repository: it carries the
//! WIT it is built against, a build script, sample cases with the verdicts expected, and a
//! test that runs them through `lyceum plugin test`.
//!
//! What the projects copy (the WIT, the Rust SDK, the JavaScript and Python helpers, the
//! pinned tool versions) is embedded from where it lives in the repository, so a project is
//! written from the same files the repository builds and tests. The rest is in
//! `templates/`: one policy per slot, the same in every language, and its `cases.json`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use clap::{Args, ValueEnum};
use figment::{
    Figment,
    providers::{Format as _, Toml},
};
use lyceum_plugin_runtime::{Builtin, Slot};
use serde_json::{Map, Value, json};

use super::{SlotName, error::CliError};

/// Write a plugin project to build and test outside this repository.
///
/// Writes PARENT/NAME/ (PARENT defaults to the current folder; an existing folder must be
/// empty): the plugin's source with a small policy for its slot (chat: blocked phrases and
/// a per-user rate limit; files: extensions and size; signaling: a participant cap), the WIT
/// it is built against in `wit/`, a build script, `cases.json` (sample inputs with the
/// verdicts expected), a test that builds the plugin and runs `lyceum plugin test` on it,
/// and a README with the commands to build, test, check and install it.
///
/// rust: a cargo project with the Rust SDK vendored, built for wasm32-wasip2. js:
/// componentize-js (npm). python: componentize-py (in a virtual environment). extism: a Rust
/// crate with extism-pdk, built for wasm32-unknown-unknown.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's name: lowercase letters, digits and `-`, starting with a letter. It
    /// names the folder, the package and the module file.
    pub name: String,
    /// The slot the plugin is for.
    #[arg(long, value_enum)]
    pub slot: SlotName,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the project's folder.
    #[arg(long, value_name = "PARENT", default_value = ".")]
    pub dir: PathBuf,
}

/// The languages a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// A component in Rust, with the Lyceum SDK.
    Rust,
    /// A component in JavaScript, with componentize-js.
    Js,
    /// A component in Python, with componentize-py.
    Python,
    /// An Extism module in Rust, with extism-pdk.
    Extism,
}

impl Lang {
    fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::Extism => "extism",
        }
    }
}

/// `lyceum:policy@0.1.0` as released: what every project is built against (or, for
/// Extism, mirrors).
const WIT: [(&str, &str); 6] = [
    (
        "files.wit",
        include_str!("../../../../../wit/since_v0.1.0/files.wit"),
    ),
    (
        "host.wit",
        include_str!("../../../../../wit/since_v0.1.0/host.wit"),
    ),
    (
        "moderation.wit",
        include_str!("../../../../../wit/since_v0.1.0/moderation.wit"),
    ),
    (
        "signaling.wit",
        include_str!("../../../../../wit/since_v0.1.0/signaling.wit"),
    ),
    (
        "types.wit",
        include_str!("../../../../../wit/since_v0.1.0/types.wit"),
    ),
    (
        "worlds.wit",
        include_str!("../../../../../wit/since_v0.1.0/worlds.wit"),
    ),
];

/// The Rust SDK (`plugins/sdk`), with the copy of the WIT it binds.
const SDK_MANIFEST: &str = include_str!("../../../../../plugins/sdk/Cargo.toml");
const SDK_LIB: &str = include_str!("../../../../../plugins/sdk/src/lib.rs");
const SDK_WIT: [(&str, &str); 6] = [
    (
        "files.wit",
        include_str!("../../../../../plugins/sdk/wit/files.wit"),
    ),
    (
        "host.wit",
        include_str!("../../../../../plugins/sdk/wit/host.wit"),
    ),
    (
        "moderation.wit",
        include_str!("../../../../../plugins/sdk/wit/moderation.wit"),
    ),
    (
        "signaling.wit",
        include_str!("../../../../../plugins/sdk/wit/signaling.wit"),
    ),
    (
        "types.wit",
        include_str!("../../../../../plugins/sdk/wit/types.wit"),
    ),
    (
        "worlds.wit",
        include_str!("../../../../../plugins/sdk/wit/worlds.wit"),
    ),
];
/// The plugins' workspace, whose `[workspace.package]` and `[workspace.dependencies]` the
/// SDK's manifest inherits from.
const PLUGINS_MANIFEST: &str = include_str!("../../../../../plugins/Cargo.toml");

/// The JavaScript and Python templates' helpers and pinned tools.
const JS_HELPERS: &str = include_str!("../../../../../plugins/template-js/src/lyceum.js");
const JS_PACKAGE: &str = include_str!("../../../../../plugins/template-js/package.json");
const PY_HELPERS: &str = include_str!("../../../../../plugins/template-python/lyceum.py");
const PY_REQUIREMENTS: &str =
    include_str!("../../../../../plugins/template-python/requirements.txt");

/// The part of every README after the build: testing, then checking and installing.
const README_TEST: &str = include_str!("templates/common/readme-test.md");
const README_INSTALL: &str = include_str!("templates/common/readme-install.md");
const TEST_SH: &str = include_str!("templates/common/test.sh");
const CARGO_BUILD_SH: &str = include_str!("templates/cargo/build.sh");

/// A slot's policy, described for the README, and its sample cases.
fn slot_texts(slot: Slot) -> (&'static str, &'static str) {
    match slot {
        Slot::Chat => (
            include_str!("templates/policy/chat.md"),
            include_str!("templates/cases/chat.json"),
        ),
        Slot::Files => (
            include_str!("templates/policy/files.md"),
            include_str!("templates/cases/files.json"),
        ),
        Slot::Signaling => (
            include_str!("templates/policy/signaling.md"),
            include_str!("templates/cases/signaling.json"),
        ),
    }
}

/// The policy's source in `lang` for `slot`.
fn policy_source(lang: Lang, slot: Slot) -> &'static str {
    match (lang, slot) {
        (Lang::Rust, Slot::Chat) => include_str!("templates/rust/chat.rs"),
        (Lang::Rust, Slot::Files) => include_str!("templates/rust/files.rs"),
        (Lang::Rust, Slot::Signaling) => include_str!("templates/rust/signaling.rs"),
        (Lang::Extism, Slot::Chat) => include_str!("templates/extism/chat.rs"),
        (Lang::Extism, Slot::Files) => include_str!("templates/extism/files.rs"),
        (Lang::Extism, Slot::Signaling) => include_str!("templates/extism/signaling.rs"),
        (Lang::Js, Slot::Chat) => include_str!("templates/js/chat.js"),
        (Lang::Js, Slot::Files) => include_str!("templates/js/files.js"),
        (Lang::Js, Slot::Signaling) => include_str!("templates/js/signaling.js"),
        (Lang::Python, Slot::Chat) => include_str!("templates/python/chat.py"),
        (Lang::Python, Slot::Files) => include_str!("templates/python/files.py"),
        (Lang::Python, Slot::Signaling) => include_str!("templates/python/signaling.py"),
    }
}

/// Names cargo refuses for a package, and the one the vendored SDK takes.
const RESERVED: &[&str] = &[
    "lyceum-plugin-sdk",
    "test",
    "core",
    "std",
    "alloc",
    "proc-macro",
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
];

/// Whether `name` may name a project: it becomes a folder, a cargo or npm package and a
/// file name, so only lowercase letters, digits and single `-` between them.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "`{name}` cannot name a project: use lowercase letters, digits and `-`, starting \
             with a letter, at most 64 characters (such as `chat-filter`)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` cannot name a project: cargo reserves it; choose another name"
        ));
    }
    Ok(())
}

/// One file of a project.
#[derive(Debug)]
pub struct File {
    /// Relative to the project's folder, `/`-separated.
    pub path: String,
    pub contents: String,
    pub executable: bool,
}

impl File {
    fn new(path: impl Into<String>, contents: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
            executable: false,
        }
    }

    fn script(path: impl Into<String>, contents: impl Into<String>) -> Self {
        Self {
            executable: true,
            ..Self::new(path, contents)
        }
    }
}

/// What a project is: its name, slot and language.
#[derive(Debug, Clone, Copy)]
pub struct Project<'a> {
    pub name: &'a str,
    pub slot: Slot,
    pub lang: Lang,
}

impl Project<'_> {
    /// The functions of the slot's world.
    fn calls(&self) -> &'static [&'static str] {
        match self.slot {
            Slot::Chat => &["moderate"],
            Slot::Files => &["precheck", "finish"],
            Slot::Signaling => &["check_join", "check_signal"],
        }
    }

    /// Every file of the project, placeholders filled in.
    pub fn files(&self) -> Result<Vec<File>, String> {
        let (policy, cases) = slot_texts(self.slot);
        let config = serde_json::from_str::<Value>(cases)
            .ok()
            .and_then(|cases| cases.get("config").map(Value::to_string))
            .ok_or("a sample cases file has no `config`")?;
        let crate_file = self.name.replace('-', "_");
        let calls = self
            .calls()
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(" and ");
        let (export, test_command, target) = match self.lang {
            Lang::Rust => ("", "./test.sh", "wasm32-wasip2"),
            Lang::Extism => ("", "./test.sh", "wasm32-unknown-unknown"),
            Lang::Js => (
                match self.slot {
                    Slot::Chat => "moderation",
                    Slot::Files => "files",
                    Slot::Signaling => "signaling",
                },
                "npm test",
                "",
            ),
            Lang::Python => (
                match self.slot {
                    Slot::Chat => "Moderation",
                    Slot::Files => "Files",
                    Slot::Signaling => "Signaling",
                },
                "./test.sh",
                "",
            ),
        };
        let parameter = match self.slot {
            Slot::Chat => "message",
            Slot::Files => "upload",
            Slot::Signaling => "request",
        };
        let sections = [
            ("{{policy}}", policy.trim_end()),
            ("{{test_section}}", README_TEST.trim_end()),
            ("{{install_section}}", README_INSTALL.trim_end()),
        ];
        let vars = [
            ("{{name}}", self.name),
            ("{{crate_file}}", &crate_file),
            ("{{slot}}", self.slot.as_str()),
            ("{{world}}", self.slot.world()),
            ("{{builtin}}", Builtin::for_slot(self.slot).as_str()),
            ("{{calls}}", &calls),
            ("{{parameter}}", parameter),
            ("{{export}}", export),
            ("{{test_command}}", test_command),
            ("{{target}}", target),
            ("{{config}}", &config),
        ];
        let fill = |template: &str| -> Result<String, String> {
            let mut text = template.to_owned();
            for (key, value) in sections.iter().chain(vars.iter()) {
                text = text.replace(key, value);
            }
            match text.find("{{") {
                Some(at) => Err(format!(
                    "a template keeps a placeholder: {}",
                    &text[at..text.len().min(at + 40)]
                )),
                None => Ok(text),
            }
        };

        let mut files = vec![
            File::new("cases.json", cases),
            File::new("README.md", fill(readme(self.lang))?),
        ];
        files.extend(
            WIT.iter()
                .map(|(name, text)| File::new(format!("wit/{name}"), *text)),
        );
        let source = fill(policy_source(self.lang, self.slot))?;
        match self.lang {
            Lang::Rust => {
                files.push(File::new(
                    "Cargo.toml",
                    fill(include_str!("templates/rust/Cargo.toml"))?,
                ));
                files.push(File::new("src/lib.rs", source));
                files.push(File::new(
                    "lyceum-plugin-sdk/Cargo.toml",
                    standalone_sdk_manifest()?,
                ));
                files.push(File::new("lyceum-plugin-sdk/src/lib.rs", SDK_LIB));
                files.extend(
                    SDK_WIT.iter().map(|(name, text)| {
                        File::new(format!("lyceum-plugin-sdk/wit/{name}"), *text)
                    }),
                );
                files.push(File::script("build.sh", fill(CARGO_BUILD_SH)?));
                files.push(File::script("test.sh", fill(TEST_SH)?));
                files.push(File::new(
                    ".gitignore",
                    include_str!("templates/rust/gitignore"),
                ));
            }
            Lang::Extism => {
                files.push(File::new(
                    "Cargo.toml",
                    fill(include_str!("templates/extism/Cargo.toml"))?,
                ));
                files.push(File::new("src/lib.rs", source));
                files.push(File::new(
                    "src/lyceum.rs",
                    include_str!("templates/extism/lyceum.rs"),
                ));
                files.push(File::script("build.sh", fill(CARGO_BUILD_SH)?));
                files.push(File::script("test.sh", fill(TEST_SH)?));
                files.push(File::new(
                    ".gitignore",
                    include_str!("templates/extism/gitignore"),
                ));
            }
            Lang::Js => {
                files.push(File::new("package.json", self.package_json()?));
                files.push(File::new(
                    "build.mjs",
                    fill(include_str!("templates/js/build.mjs"))?,
                ));
                files.push(File::new(
                    "test.mjs",
                    fill(include_str!("templates/js/test.mjs"))?,
                ));
                files.push(File::new("src/plugin.js", source));
                files.push(File::new("src/lyceum.js", JS_HELPERS));
                files.push(File::new(
                    ".gitignore",
                    include_str!("templates/js/gitignore"),
                ));
            }
            Lang::Python => {
                files.push(File::new("app.py", source));
                files.push(File::new("lyceum.py", PY_HELPERS));
                files.push(File::new("requirements.txt", PY_REQUIREMENTS));
                files.push(File::script(
                    "build.sh",
                    fill(include_str!("templates/python/build.sh"))?,
                ));
                files.push(File::script("test.sh", fill(TEST_SH)?));
                files.push(File::new(
                    ".gitignore",
                    include_str!("templates/python/gitignore"),
                ));
            }
        }
        Ok(files)
    }

    /// The JavaScript template's `package.json`, for this project: its pinned
    /// componentize-js and Node.js version, and scripts that build to `dist/` and test.
    fn package_json(&self) -> Result<String, String> {
        let template: Value = serde_json::from_str(JS_PACKAGE)
            .map_err(|e| format!("the JavaScript template's package.json: {e}"))?;
        let package = json!({
            "name": self.name,
            "version": "0.1.0",
            "description": format!("A Lyceum {} policy plugin, built into a WebAssembly component", self.slot),
            "private": true,
            "type": "module",
            "scripts": {
                "build": "node build.mjs",
                "test": "node build.mjs && node test.mjs"
            },
            "devDependencies": template.get("devDependencies").cloned().unwrap_or(json!({})),
            "engines": template.get("engines").cloned().unwrap_or(json!({})),
        });
        serde_json::to_string_pretty(&package)
            .map(|text| text + "\n")
            .map_err(|e| e.to_string())
    }

    /// What to run next, from the project's folder.
    fn next_steps(&self) -> Vec<(String, &'static str)> {
        let wasm = format!("dist/{}.wasm", self.name);
        let mut steps: Vec<(String, &'static str)> = match self.lang {
            Lang::Rust => vec![
                ("rustup target add wasm32-wasip2".into(), "once"),
                ("./build.sh".into(), "builds the component"),
            ],
            Lang::Extism => vec![
                ("rustup target add wasm32-unknown-unknown".into(), "once"),
                ("./build.sh".into(), "builds the module"),
            ],
            Lang::Js => vec![
                ("npm install".into(), "once"),
                ("npm run build".into(), "builds the component"),
            ],
            Lang::Python => vec![(
                "./build.sh".into(),
                "builds the component (the first time, a .venv)",
            )],
        };
        let test = if self.lang == Lang::Js {
            "npm test"
        } else {
            "./test.sh"
        };
        steps.push((
            test.into(),
            "builds, then runs cases.json through `lyceum plugin test`",
        ));
        steps.push((
            format!("lyceum plugin check {wasm} --slot {}", self.slot),
            "what the server would decide",
        ));
        steps.push((
            format!("lyceum plugin install {wasm} --name {}", self.name),
            "uploads it (LYCEUM_URL, LYCEUM_TOKEN)",
        ));
        steps
    }
}

fn readme(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => include_str!("templates/rust/README.md"),
        Lang::Extism => include_str!("templates/extism/README.md"),
        Lang::Js => include_str!("templates/js/README.md"),
        Lang::Python => include_str!("templates/python/README.md"),
    }
}

/// The SDK's manifest with what it inherits from the plugins' workspace written out, so
/// the SDK builds as a package of its own.
fn standalone_sdk_manifest() -> Result<String, String> {
    let parse = |text: &str, what: &str| -> Result<Map<String, Value>, String> {
        Figment::from(Toml::string(text))
            .extract::<Map<String, Value>>()
            .map_err(|e| format!("{what}: {e}"))
    };
    let mut sdk = parse(SDK_MANIFEST, "plugins/sdk/Cargo.toml")?;
    let workspace = parse(PLUGINS_MANIFEST, "plugins/Cargo.toml")?;
    let inherited = |section: &str| -> Map<String, Value> {
        workspace
            .get("workspace")
            .and_then(|w| w.get(section))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (package_values, dependency_specs) = (inherited("package"), inherited("dependencies"));
    let inherits = |value: &Value| value.get("workspace") == Some(&Value::Bool(true));

    if let Some(Value::Object(package)) = sdk.get_mut("package") {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = package_values
                    .get(key)
                    .cloned()
                    .ok_or_else(|| format!("the plugins' workspace has no package.{key}"))?;
            }
        }
    }
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(Value::Object(dependencies)) = sdk.get_mut(section) else {
            continue;
        };
        for (name, spec) in dependencies.iter_mut() {
            if !inherits(spec) {
                continue;
            }
            let mut resolved = match dependency_specs.get(name) {
                Some(Value::String(version)) => {
                    Map::from_iter([("version".to_owned(), json!(version))])
                }
                Some(Value::Object(table)) => table.clone(),
                _ => return Err(format!("the plugins' workspace has no dependency `{name}`")),
            };
            for (key, value) in spec.as_object().into_iter().flatten() {
                match (key.as_str(), resolved.get_mut(key)) {
                    ("workspace", _) => {}
                    ("features", Some(Value::Array(features))) => {
                        features.extend(value.as_array().into_iter().flatten().cloned());
                    }
                    _ => {
                        resolved.insert(key.clone(), value.clone());
                    }
                }
            }
            *spec = Value::Object(resolved);
        }
    }

    let mut out = String::from(
        "# The Lyceum Rust SDK (bindings and helpers for policy plugins), vendored with the WIT\n\
         # it binds in wit/.\n",
    );
    // The package first, as cargo writes it; the other tables in alphabetical order.
    if let Some(package) = sdk.remove("package") {
        write_table(
            &mut out,
            "package",
            &package,
            &["name", "description", "version"],
        );
    }
    for (section, table) in &sdk {
        write_table(&mut out, section, table, &[]);
    }
    Ok(out)
}

/// `[section]` with one `key = value` line per entry, `first` keys first. A JSON string,
/// number, boolean or array is written as TOML writes it; an object becomes an inline table.
fn write_table(out: &mut String, section: &str, table: &Value, first: &[&str]) {
    let Value::Object(table) = table else {
        return;
    };
    let _ = writeln!(out, "\n[{section}]");
    let ordered = first
        .iter()
        .filter_map(|key| table.get_key_value(*key))
        .chain(
            table
                .iter()
                .filter(|(key, _)| !first.contains(&key.as_str())),
        );
    for (key, value) in ordered {
        let _ = writeln!(out, "{} = {}", toml_key(key), toml_value(value));
    }
}

fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn toml_value(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(table) => {
            let entries: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{} = {}", toml_key(key), toml_value(value)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        // JSON's strings, numbers and booleans are TOML's too.
        other => other.to_string(),
    }
}

/// Writes the project and says what to do next.
pub fn run(args: NewArgs, as_json: bool) -> Result<String, CliError> {
    check_name(&args.name).map_err(CliError::usage)?;
    let project = Project {
        name: &args.name,
        slot: args.slot.slot(),
        lang: args.lang,
    };
    let root = args.dir.join(&args.name);
    if root.exists() {
        let empty = std::fs::read_dir(&root)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(CliError::usage(format!(
                "{} exists and is not an empty folder: choose another NAME or --dir",
                root.display()
            )));
        }
    }
    let files = project.files().map_err(CliError::Internal)?;
    for file in &files {
        write(&root, file).map_err(|e| {
            CliError::usage(format!(
                "cannot write {}: {e}",
                root.join(&file.path).display()
            ))
        })?;
    }

    if as_json {
        let listed: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let created = json!({
            "path": root,
            "name": project.name,
            "slot": project.slot.as_str(),
            "lang": project.lang.as_str(),
            "files": listed,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&created).unwrap_or_default()
        ));
    }
    let mut out = format!(
        "created {}: a {} plugin for the {} slot, {} files\n\nnext, in {}:\n",
        root.display(),
        project.lang.as_str(),
        project.slot,
        files.len(),
        root.display()
    );
    let steps = project.next_steps();
    let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, what) in steps {
        let _ = writeln!(out, "  {command:width$}   # {what}");
    }
    out.push_str(
        "\nThe tests need `lyceum` on PATH, or LYCEUM_BIN naming it. README.md says more.\n",
    );
    Ok(out)
}

fn write(root: &Path, file: &File) -> std::io::Result<()> {
    let path = root.join(&file.path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, &file.contents)?;
    #[cfg(unix)]
    if file.executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_project() -> impl Iterator<Item = Project<'static>> {
        [Lang::Rust, Lang::Js, Lang::Python, Lang::Extism]
            .into_iter()
            .flat_map(|lang| {
                Slot::ALL.into_iter().map(move |slot| Project {
                    name: "my-plugin",
                    slot,
                    lang,
                })
            })
    }

    #[test]
    fn every_placeholder_of_every_project_is_filled() {
        for project in every_project() {
            let files = project
                .files()
                .unwrap_or_else(|e| panic!("{project:?}: {e}"));
            for file in &files {
                assert!(
                    !file.contents.contains("{{name}}") && !file.contents.contains("{{slot}}"),
                    "{project:?}: {} keeps a placeholder",
                    file.path
                );
            }
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            for needed in ["wit/worlds.wit", "cases.json", "README.md", ".gitignore"] {
                assert!(
                    paths.contains(&needed),
                    "{project:?} lacks {needed}: {paths:?}"
                );
            }
        }
    }

    #[test]
    fn names_are_package_names() {
        for good in ["chat-filter", "a", "upload-guard-2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Chat",
            "2fast",
            "chat_filter",
            "chat-",
            "chat--filter",
            "chat filter",
            "../up",
            "test",
            "lyceum-plugin-sdk",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_vendored_sdk_manifest_inherits_nothing() {
        let manifest = standalone_sdk_manifest().unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        let parsed: Map<String, Value> = Figment::from(Toml::string(&manifest))
            .extract()
            .unwrap_or_else(|e| panic!("not TOML ({e}):\n{manifest}"));
        assert_eq!(parsed["package"]["name"], "lyceum-plugin-sdk");
        assert!(parsed["package"]["version"].is_string(), "{manifest}");
        assert!(parsed["package"]["edition"].is_string(), "{manifest}");
        let bindgen = &parsed["dependencies"]["wit-bindgen"];
        assert!(bindgen["version"].is_string(), "{manifest}");
        assert_eq!(
            parsed["dependencies"]["serde"]["optional"], true,
            "{manifest}"
        );
    }

    #[test]
    fn the_js_package_pins_the_templates_componentize_js() {
        let project = Project {
            name: "chat-filter",
            slot: Slot::Chat,
            lang: Lang::Js,
        };
        let package: Value = serde_json::from_str(&project.package_json().unwrap()).unwrap();
        let template: Value = serde_json::from_str(JS_PACKAGE).unwrap();
        assert_eq!(package["name"], "chat-filter");
        assert_eq!(
            package["devDependencies"]["@bytecodealliance/componentize-js"],
            template["devDependencies"]["@bytecodealliance/componentize-js"]
        );
    }
}
