//! Static checks of a plugin module, run on its bytes before anything compiles it, so that an
//! upload that cannot work is refused in milliseconds with a reason an operator can act on.
//!
//! The checks run in this order and the first failure is the one reported:
//! 1. the bytes are WebAssembly at all ([`CheckReason::NotWasm`]);
//! 2. they are a component, or a core module exporting the functions of a policy world
//!    (an Extism module), and not some other core module ([`CheckReason::WrongWorld`]);
//! 3. the module exports a policy world at a WIT version this server provides
//!    ([`CheckReason::UnsupportedWitVersion`]) that fits the slot
//!    ([`CheckReason::WrongWorld`]); an Extism module declares its version by exporting
//!    a function named `lyceum_policy_v0_1_0` (for 0.1.0);
//! 4. it imports nothing beyond that world ([`CheckReason::ForbiddenImport`]): for an
//!    Extism module, the Extism kernel's functions (but HTTP) and `lyceum_log`/`lyceum_kv`.
//!
//! Names are all these checks look at. Compiling, linking against the host (which finds an
//! export with the right name but the wrong function types) and a smoke call come after.

use sha2::{Digest, Sha256};
use wasmparser::{
    ComponentExternName, ComponentExternalKind, Encoding, ExternalKind, Parser, Payload, Validator,
    WasmFeatures,
};

use crate::types::Slot;

/// The WIT package every policy interface belongs to.
const PACKAGE: &str = "lyceum:policy";

/// Versions of the `lyceum:policy` WIT package this server provides, oldest first (each has
/// its folder `wit/since_vX.Y.Z`). A plugin's world must be at one of them exactly: a
/// plugin built against a newer WIT may call functions this server does not have.
pub(crate) const PROVIDED_VERSIONS: &[&str] = &["0.1.0"];

/// Interfaces the host implements, by full name. A policy world imports those of its own
/// version, so these are also everything a plugin may import besides [`INERT_WASI`].
pub(crate) const PROVIDED: &[&str] = &[
    "lyceum:policy/types@0.1.0",
    "lyceum:policy/log@0.1.0",
    "lyceum:policy/config@0.1.0",
    "lyceum:policy/kv@0.1.0",
];

/// The import module of the Extism kernel (memory, input, output, config, variables, logs).
const EXTISM_KERNEL: &str = "extism:host/env";
/// The kernel functions a plugin is given: all of Extism 1.x's but HTTP (`http_request`,
/// `http_status_code`, `http_headers`), since plugins have no network.
const EXTISM_KERNEL_FUNCTIONS: &[&str] = &[
    "alloc",
    "free",
    "length",
    "length_unsafe",
    "load_u8",
    "load_u64",
    "store_u8",
    "store_u64",
    "input_length",
    "input_offset",
    "input_load_u8",
    "input_load_u64",
    "input_set",
    "output_length",
    "output_offset",
    "output_set",
    "error_set",
    "error_get",
    "reset",
    "memory_bytes",
    "config_get",
    "var_get",
    "var_set",
    "log_trace",
    "log_debug",
    "log_info",
    "log_warn",
    "log_error",
    "get_log_level",
];
/// The import module of host functions, where Lyceum's live.
const EXTISM_USER: &str = "extism:host/user";
/// Lyceum's host functions for Extism modules, the counterparts of the `log` and `kv`
/// interfaces.
pub(crate) const EXTISM_HOST_FUNCTIONS: &[&str] = &["lyceum_log", "lyceum_kv"];
/// The prefix of the export by which an Extism module names the WIT version it mirrors:
/// `lyceum_policy_v0_1_0` for 0.1.0.
pub const EXTISM_VERSION_MARKER: &str = "lyceum_policy_v";

/// WASI interfaces that Rust's `wasm32-wasip2` standard library imports into every component
/// whether or not the plugin uses them (stdio for panic messages, exit, environment). They
/// are linked to functions that trap, so a plugin calling one fails that call; every other
/// WASI interface (filesystem, sockets, clocks, random, http, ...) is refused. Versions are
/// left out: any `0.2.x` is tolerated, see [`is_inert_wasi`].
pub(crate) const INERT_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// Whether `import` (a full name such as `wasi:cli/stdout@0.2.6`) is one of [`INERT_WASI`]
/// at a WASI 0.2 version.
pub(crate) fn is_inert_wasi(import: &str) -> bool {
    let Some((interface, version)) = import.split_once('@') else {
        return false;
    };
    version.starts_with("0.2.") && INERT_WASI.contains(&interface)
}

/// What a plugin module is, as far as can be told without compiling it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Lowercase hex SHA-256 of the bytes: the module's name in the admin API.
    pub sha256: String,
    /// Length of the bytes.
    pub size: u64,
    /// How the module talks to the host.
    pub abi: Abi,
    /// The policy worlds it exports, in the order of its export section. A module may export
    /// several (the test fixtures export all three), and a world at several versions.
    pub exports: Vec<WorldExport>,
    /// Every top-level import by name as written in the module, such as
    /// `lyceum:policy/kv@0.1.0` or `wasi:cli/stdout@0.2.6`.
    pub imports: Vec<String>,
}

/// How a plugin module talks to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Abi {
    /// A WebAssembly component implementing a `lyceum:policy` world.
    Component,
    /// An Extism core module exporting a policy world's functions, which take and return
    /// the JSON encoding of the WIT values ([`crate::json`]).
    Extism,
}

impl Abi {
    /// The name used by the admin API: `component` or `extism`.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::Component => "component",
            Abi::Extism => "extism",
        }
    }
}

/// One policy world a module exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldExport {
    /// The slot whose world this is.
    pub slot: Slot,
    /// The version of the `lyceum:policy` package the module was built against, such as
    /// `0.1.0`; empty when its WIT package had no version.
    pub wit_version: String,
}

impl ModuleInfo {
    /// The world label for listings: the one world, or the worlds joined by "+" in slot
    /// order whatever the module's order (such as
    /// `chat-moderation+file-validation+signaling-policy`).
    pub fn world(&self) -> String {
        let mut slots: Vec<Slot> = self.exports.iter().map(|export| export.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        slots
            .into_iter()
            .map(Slot::world)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The WIT version of the first exported world; empty when it exports none.
    pub fn wit_version(&self) -> String {
        self.exports
            .first()
            .map(|export| export.wit_version.clone())
            .unwrap_or_default()
    }

    /// Steps 3 and 4 for `slot`: the module exports the slot's world at a WIT version this
    /// server provides, and imports nothing beyond that world.
    ///
    /// When the module exports the slot's world only at versions this server lacks, the
    /// reason is `unsupported_wit_version`; when it does not export the slot's world at all,
    /// `wrong_world`, whatever the versions of the worlds it does export, since rebuilding
    /// against another version would not make it fit.
    pub fn check_slot(&self, slot: Slot) -> Result<(), CheckError> {
        let exports: Vec<&WorldExport> = self
            .exports
            .iter()
            .filter(|export| export.slot == slot)
            .collect();
        if exports.is_empty() {
            return Err(CheckError::world_mismatch(slot, &self.exports, self.abi));
        }
        self.check_imports(&provided_versions(&exports, self.abi)?)
    }

    /// Steps 3 and 4 when no slot is named: some policy world at a provided version, and
    /// imports within the world(s) at those versions.
    fn check_any(&self) -> Result<(), CheckError> {
        if self.exports.is_empty() {
            return Err(CheckError::no_policy_world(None, &[]));
        }
        let exports: Vec<&WorldExport> = self.exports.iter().collect();
        self.check_imports(&provided_versions(&exports, self.abi)?)
    }

    /// Step 4: every import is a host interface of one of `versions` (the provided versions
    /// of the worlds in use) or an inert WASI interface.
    ///
    /// A host interface at a version outside `versions`, such as `lyceum:policy/kv@0.9.0`
    /// beside an export at 0.1.0, is a forbidden import rather than an unsupported version:
    /// the module's world is one this server provides, and what it cannot have is that
    /// particular import.
    fn check_imports(&self, versions: &[&str]) -> Result<(), CheckError> {
        if self.abi == Abi::Extism {
            return self.check_extism_imports();
        }
        let allowed = |import: &str| {
            is_inert_wasi(import) || (PROVIDED.contains(&import) && is_at(import, versions))
        };
        let forbidden: Vec<String> = self
            .imports
            .iter()
            .filter(|import| !allowed(import))
            .cloned()
            .collect();
        if forbidden.is_empty() {
            Ok(())
        } else {
            Err(CheckError::forbidden_imports(forbidden, versions))
        }
    }
}

impl ModuleInfo {
    /// Step 4 for an Extism module: the kernel's functions but HTTP, and Lyceum's host
    /// functions. Imports are named `module/function`, such as `extism:host/user/lyceum_kv`.
    fn check_extism_imports(&self) -> Result<(), CheckError> {
        let allowed = |import: &str| match import.rsplit_once('/') {
            Some((EXTISM_KERNEL, name)) => EXTISM_KERNEL_FUNCTIONS.contains(&name),
            Some((EXTISM_USER, name)) => EXTISM_HOST_FUNCTIONS.contains(&name),
            _ => false,
        };
        let forbidden: Vec<String> = self
            .imports
            .iter()
            .filter(|import| !allowed(import))
            .cloned()
            .collect();
        if forbidden.is_empty() {
            return Ok(());
        }
        let refused: Vec<&str> = forbidden.iter().map(String::as_str).collect();
        Err(CheckError {
            reason: CheckReason::ForbiddenImport,
            message: format!(
                "The Extism module imports {}, which plugins are not given. An Extism plugin \
                 may import the Extism kernel (`{EXTISM_KERNEL}`, without HTTP) and the host \
                 functions `{EXTISM_USER}/lyceum_log` and `{EXTISM_USER}/lyceum_kv`; build \
                 it for `wasm32-unknown-unknown` (WASI is not provided) and remove the code \
                 that needs anything else.",
                quoted_list(&refused)
            ),
            imports: forbidden,
        })
    }
}

/// The functions an Extism module exports for `slot`'s world.
pub fn extism_functions(slot: Slot) -> &'static [&'static str] {
    use crate::json::{CHECK_JOIN, CHECK_SIGNAL, FINISH, MODERATE, PRECHECK};
    match slot {
        Slot::Chat => &[MODERATE],
        Slot::Files => &[PRECHECK, FINISH],
        Slot::Signaling => &[CHECK_JOIN, CHECK_SIGNAL],
    }
}

/// Steps 2 to 4 for a core module: an Extism module is recognised by the functions it
/// exports; the version marker gives the WIT version of each world it implements.
fn inspect_extism(
    bytes: &[u8],
    module: Module,
    slot: Option<Slot>,
) -> Result<ModuleInfo, CheckError> {
    let functions: Vec<&str> = module
        .exports
        .iter()
        .filter(|export| export.is_func)
        .map(|export| export.name.as_str())
        .collect();
    let versions: Vec<String> = functions
        .iter()
        .filter_map(|name| name.strip_prefix(EXTISM_VERSION_MARKER))
        .map(|version| version.replace('_', "."))
        .collect();
    let worlds: Vec<Slot> = Slot::ALL
        .into_iter()
        .filter(|slot| {
            extism_functions(*slot)
                .iter()
                .all(|f| functions.contains(f))
        })
        .collect();
    if worlds.is_empty() {
        return Err(CheckError::core_module(slot, &functions));
    }
    if versions.is_empty() {
        return Err(CheckError::new(
            CheckReason::UnsupportedWitVersion,
            format!(
                "The Extism module does not say which version of `{PACKAGE}` it mirrors: \
                 export a function named `{EXTISM_VERSION_MARKER}{}` (it is never called) \
                 for {}.",
                latest_version().replace('.', "_"),
                package_label(latest_version())
            ),
        ));
    }
    let exports = worlds
        .iter()
        .flat_map(|slot| {
            versions.iter().map(|version| WorldExport {
                slot: *slot,
                wit_version: version.clone(),
            })
        })
        .collect();
    let info = ModuleInfo {
        sha256: hex::encode(Sha256::digest(bytes)),
        size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        abi: Abi::Extism,
        exports,
        imports: module.imports,
    };
    match slot {
        Some(slot) => info.check_slot(slot)?,
        None => info.check_any()?,
    }
    Ok(info)
}

/// Steps 1 and 2 and reading the module; with `Some(slot)` also steps 3 and 4 for that slot
/// (see [`ModuleInfo::check_slot`]). With `None`, step 3 only requires that some policy
/// world at a provided version is exported, and step 4 is checked against the world(s)
/// exported at provided versions.
///
/// Step 1 runs wasmparser's validator over the whole module, function bodies included, so a
/// malformed upload never reaches the compiler. That is most of the time `inspect` takes:
/// about 5 ms for the builtin chat plugin (160 KiB), where compiling it takes about 200 ms.
/// Uploads are rare admin operations, so validating twice (the compiler validates again)
/// costs nothing that matters.
pub fn inspect(bytes: &[u8], slot: Option<Slot>) -> Result<ModuleInfo, CheckError> {
    let module = read(bytes)?;
    match module.encoding {
        Encoding::Component => {}
        Encoding::Module => return inspect_extism(bytes, module, slot),
    }

    let exports: Vec<WorldExport> = module
        .exports
        .iter()
        .filter(|export| export.is_instance)
        .filter_map(|export| policy_export(&export.name))
        .collect();
    if exports.is_empty() {
        let names: Vec<&str> = module.exports.iter().map(|e| e.name.as_str()).collect();
        return Err(CheckError::no_policy_world(slot, &names));
    }

    let info = ModuleInfo {
        sha256: hex::encode(Sha256::digest(bytes)),
        size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        abi: Abi::Component,
        exports,
        imports: module.imports,
    };
    match slot {
        Some(slot) => info.check_slot(slot)?,
        None => info.check_any()?,
    }
    Ok(info)
}

/// Why a module was refused, with the reason the admin API reports as `details.reason`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CheckError {
    /// The machine-readable reason.
    pub reason: CheckReason,
    /// What is wrong and what to do about it, for the operator.
    pub message: String,
    /// The refused imports by full name, for [`CheckReason::ForbiddenImport`]; empty
    /// otherwise.
    pub imports: Vec<String>,
}

/// The machine-readable reason of a [`CheckError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckReason {
    /// The bytes are not WebAssembly.
    NotWasm,
    /// A core module, or a component that does not export the slot's world.
    WrongWorld,
    /// The world is exported only at WIT versions this server does not provide.
    UnsupportedWitVersion,
    /// The module imports something plugins are not given.
    ForbiddenImport,
    /// The plugin refused its configuration in the smoke call.
    ConfigRejected,
    /// No module is known by that name.
    UnknownModule,
}

impl CheckReason {
    /// The name used by the admin API, such as `not_wasm`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckReason::NotWasm => "not_wasm",
            CheckReason::WrongWorld => "wrong_world",
            CheckReason::UnsupportedWitVersion => "unsupported_wit_version",
            CheckReason::ForbiddenImport => "forbidden_import",
            CheckReason::ConfigRejected => "config_rejected",
            CheckReason::UnknownModule => "unknown_module",
        }
    }
}

impl CheckError {
    /// An error without imports, such as `config_rejected` from the smoke call.
    pub fn new(reason: CheckReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            imports: Vec::new(),
        }
    }

    fn not_wasm(detail: &str) -> Self {
        Self::new(
            CheckReason::NotWasm,
            format!(
                "The file is not WebAssembly: {detail}. Upload the `.wasm` file the plugin's \
                 build produced (for a Rust plugin, \
                 `target/wasm32-wasip2/release/<name>.wasm`)."
            ),
        )
    }

    /// A core module that is not an Extism plugin of any world; `functions` are the
    /// functions it exports.
    fn core_module(slot: Option<Slot>, functions: &[&str]) -> Self {
        let wanted = match slot {
            Some(slot) => format!(
                "an Extism plugin for the {slot} slot exports {}",
                quoted_list(extism_functions(slot))
            ),
            None => "an Extism plugin exports the functions of one policy world (`moderate`; \
                     `precheck` and `finish`; or `check_join` and `check_signal`)"
                .to_owned(),
        };
        let found = if functions.is_empty() {
            "no functions".to_owned()
        } else {
            quoted_list(functions)
        };
        Self::new(
            CheckReason::WrongWorld,
            format!(
                "The file is a core WebAssembly module exporting {found}, but a plugin must \
                 be a WebAssembly component (built for the `wasm32-wasip2` target) or an \
                 Extism module: {wanted}, plus `{EXTISM_VERSION_MARKER}{}`.",
                latest_version().replace('.', "_")
            ),
        )
    }

    /// A component exporting no policy world at all; `exported` names what it does export.
    fn no_policy_world(slot: Option<Slot>, exported: &[&str]) -> Self {
        let found = if exported.is_empty() {
            "it exports nothing".to_owned()
        } else {
            format!("it exports {}", quoted_list(exported))
        };
        let expected = match slot {
            Some(slot) => format!(
                "a plugin for the {slot} slot must implement the `{}` world, which exports \
                 `{}`",
                slot.world(),
                expected_export(slot)
            ),
            None => format!(
                "a plugin must implement the world {} of `{PACKAGE}@{}`",
                or_list(&Slot::ALL.map(|slot| format!("`{}`", slot.world()))),
                latest_version()
            ),
        };
        Self::new(
            CheckReason::WrongWorld,
            format!("The component exports no Lyceum policy world ({found}); {expected}."),
        )
    }

    /// A module exporting policy worlds, none of them `slot`'s.
    fn world_mismatch(slot: Slot, exports: &[WorldExport], abi: Abi) -> Self {
        if exports.is_empty() {
            return Self::no_policy_world(Some(slot), &[]);
        }
        let mut found: Vec<String> = Vec::new();
        for export in exports {
            let label = match abi {
                Abi::Component => {
                    format!("`{}` (`{}`)", export.slot.world(), export_name(export))
                }
                Abi::Extism => format!(
                    "`{}` (it exports {})",
                    export.slot.world(),
                    quoted_list(extism_functions(export.slot))
                ),
            };
            if !found.contains(&label) {
                found.push(label);
            }
        }
        let found: Vec<&str> = found.iter().map(String::as_str).collect();
        let (noun, expected) = match abi {
            Abi::Component => ("component", format!("`{}`", expected_export(slot))),
            Abi::Extism => ("Extism module", quoted_list(extism_functions(slot))),
        };
        Self::new(
            CheckReason::WrongWorld,
            format!(
                "The {noun} implements {}, but the {slot} slot takes plugins of the `{}` \
                 world, which exports {expected}. Put the plugin in the slot it was written \
                 for, or rebuild it for the `{}` world.",
                and_list(&found),
                slot.world(),
                slot.world()
            ),
        )
    }

    /// The world(s) in use are exported only at versions this server does not provide.
    fn unsupported_versions(exports: &[&WorldExport], abi: Abi) -> Self {
        let mut built: Vec<String> = Vec::new();
        for export in exports {
            let label = package_label(&export.wit_version);
            if !built.contains(&label) {
                built.push(label);
            }
        }
        let built: Vec<&str> = built.iter().map(String::as_str).collect();
        let provided: Vec<String> = PROVIDED_VERSIONS.iter().map(|v| package_label(v)).collect();
        let provided: Vec<&str> = provided.iter().map(String::as_str).collect();
        let mut exported: Vec<String> = Vec::new();
        for export in exports {
            let name = match abi {
                Abi::Component => format!("`{}`", export_name(export)),
                Abi::Extism => format!(
                    "`{EXTISM_VERSION_MARKER}{}`",
                    export.wit_version.replace('.', "_")
                ),
            };
            if !exported.contains(&name) {
                exported.push(name);
            }
        }
        let exported: Vec<&str> = exported.iter().map(String::as_str).collect();
        let noun = match abi {
            Abi::Component => "component",
            Abi::Extism => "Extism module",
        };
        Self::new(
            CheckReason::UnsupportedWitVersion,
            format!(
                "The {noun} was built against {} (it exports {}), but this server \
                 provides only {}. Rebuild the plugin against a WIT version this server \
                 provides.",
                and_list(&built),
                and_list(&exported),
                and_list(&provided)
            ),
        )
    }

    fn forbidden_imports(imports: Vec<String>, versions: &[&str]) -> Self {
        let refused: Vec<&str> = imports.iter().map(String::as_str).collect();
        let allowed: Vec<&str> = PROVIDED
            .iter()
            .copied()
            .filter(|name| is_at(name, versions))
            .collect();
        let message = format!(
            "The component imports {}, which plugins are not given. A plugin may import only \
             {} (and the stdio, exit and environment interfaces of WASI 0.2 that Rust's \
             standard library always imports); remove the code that needs anything else, \
             such as file, network, clock or random access.",
            quoted_list(&refused),
            quoted_list(&allowed)
        );
        Self {
            reason: CheckReason::ForbiddenImport,
            message,
            imports,
        }
    }
}

/// What one pass over the bytes found at the top level.
struct Module {
    encoding: Encoding,
    imports: Vec<String>,
    exports: Vec<Export>,
}

struct Export {
    name: String,
    /// Interfaces are exported as instances; a function or type of the same name is not one.
    is_instance: bool,
    /// A core module's function export (Extism plugins are recognised by these).
    is_func: bool,
}

/// Steps 1 and 2: validates `bytes`, then reads the top-level import and export names in a
/// second pass (tens of microseconds: sections are skipped over, not decoded).
///
/// Validation allows every proposal wasmparser knows: whether the engine supports the
/// features a module uses is for the compiler to say, this step only refuses what is not
/// WebAssembly at all.
fn read(bytes: &[u8]) -> Result<Module, CheckError> {
    if bytes.is_empty() {
        return Err(CheckError::not_wasm("it is empty"));
    }
    if bytes.starts_with(b"\x7fELF") {
        // A `.cwasm` from `wasmtime compile` or `Component::serialize` is an ELF file of
        // machine code; loading one would run whatever it holds, unchecked.
        return Err(CheckError::not_wasm(
            "it is native code (an ELF file, such as a `.cwasm` precompiled by wasmtime), and \
             precompiled code is never loaded: the server compiles every plugin itself",
        ));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(CheckError::not_wasm(
            "it does not start with the WebAssembly header `\\0asm`",
        ));
    }

    let invalid = |e: wasmparser::BinaryReaderError| CheckError::not_wasm(&e.to_string());
    let features = WasmFeatures::all();
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map_err(invalid)?;

    let mut parser = Parser::new(0);
    parser.set_features(features);
    let mut encoding = None;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components are yielded inline between their own `Version` and
    // `End`; only sections at depth 1 belong to the top-level component.
    let mut depth = 0usize;
    for payload in parser.parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version {
                encoding: found, ..
            } => {
                depth += 1;
                encoding.get_or_insert(found);
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(full_name(&import.map_err(invalid)?.name));
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(invalid)?;
                    exports.push(Export {
                        name: full_name(&export.name),
                        is_instance: export.kind == ComponentExternalKind::Instance,
                        is_func: false,
                    });
                }
            }
            Payload::ImportSection(section) if depth == 1 => {
                for import in section.into_imports() {
                    let import = import.map_err(invalid)?;
                    imports.push(format!("{}/{}", import.module, import.name));
                }
            }
            Payload::ExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(invalid)?;
                    exports.push(Export {
                        name: export.name.to_owned(),
                        is_instance: false,
                        is_func: matches!(
                            export.kind,
                            ExternalKind::Func | ExternalKind::FuncExact
                        ),
                    });
                }
            }
            _ => {}
        }
    }

    let encoding = encoding.ok_or_else(|| CheckError::not_wasm("it has no header"))?;
    Ok(Module {
        encoding,
        imports,
        exports,
    })
}

/// An import or export name as written: the name, plus its version suffix when the newer
/// name encoding splits the version in two.
fn full_name(name: &ComponentExternName<'_>) -> String {
    format!("{}{}", name.name, name.version_suffix.unwrap_or(""))
}

/// Whether the full interface name `name` is at one of `versions`.
fn is_at(name: &str, versions: &[&str]) -> bool {
    name.rsplit_once('@')
        .is_some_and(|(_, version)| versions.contains(&version))
}

/// The interface a slot's world exports, without package or version.
fn policy_interface(slot: Slot) -> &'static str {
    match slot {
        Slot::Chat => "moderation",
        Slot::Files => "files",
        Slot::Signaling => "signaling",
    }
}

/// The world export `name` stands for, if it is `lyceum:policy/<interface>@<version>` with
/// the interface of some slot's world.
fn policy_export(name: &str) -> Option<WorldExport> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
    let slot = Slot::ALL
        .into_iter()
        .find(|slot| policy_interface(*slot) == interface)?;
    Some(WorldExport {
        slot,
        wit_version: version.to_owned(),
    })
}

/// The export name of `export`, as the module wrote it.
fn export_name(export: &WorldExport) -> String {
    let interface = policy_interface(export.slot);
    match export.wit_version.as_str() {
        "" => format!("{PACKAGE}/{interface}"),
        version => format!("{PACKAGE}/{interface}@{version}"),
    }
}

/// The versions of `exports` that this server provides, or the error naming them all when
/// there is none.
fn provided_versions<'a>(
    exports: &[&'a WorldExport],
    abi: Abi,
) -> Result<Vec<&'a str>, CheckError> {
    let provided: Vec<&str> = exports
        .iter()
        .map(|export| export.wit_version.as_str())
        .filter(|version| PROVIDED_VERSIONS.contains(version))
        .collect();
    if provided.is_empty() {
        Err(CheckError::unsupported_versions(exports, abi))
    } else {
        Ok(provided)
    }
}

fn latest_version() -> &'static str {
    PROVIDED_VERSIONS.last().copied().unwrap_or_default()
}

/// What a plugin for `slot` built against the newest provided WIT exports.
fn expected_export(slot: Slot) -> String {
    format!("{PACKAGE}/{}@{}", policy_interface(slot), latest_version())
}

fn package_label(version: &str) -> String {
    if version.is_empty() {
        format!("`{PACKAGE}` without a version")
    } else {
        format!("`{PACKAGE}@{version}`")
    }
}

/// `a`, `b`, `c`
fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// a, b and c
fn and_list(items: &[&str]) -> String {
    joined(items, "and")
}

/// a, b or c
fn or_list(items: &[String]) -> String {
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    joined(&items, "or")
}

fn joined(items: &[&str], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{CHAT_MODERATION, FILE_VALIDATION, SIGNALING_POLICY};
    use crate::fixtures;

    const BUILTINS: [(Slot, &[u8]); 3] = [
        (Slot::Chat, CHAT_MODERATION),
        (Slot::Files, FILE_VALIDATION),
        (Slot::Signaling, SIGNALING_POLICY),
    ];

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
    }

    fn refused(bytes: &[u8], slot: Option<Slot>) -> CheckError {
        match inspect(bytes, slot) {
            Ok(info) => panic!("accepted a module that should be refused: {info:?}"),
            Err(e) => e,
        }
    }

    /// `bytes` with every occurrence of `from` replaced by `to`, which has the same length
    /// so that every size prefix in the binary stays right.
    fn patched(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let (from, to) = (from.as_bytes(), to.as_bytes());
        let mut out = bytes.to_vec();
        let mut found = 0;
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
                found += 1;
                i += from.len();
            } else {
                i += 1;
            }
        }
        assert!(found > 0, "{} not found", String::from_utf8_lossy(from));
        out
    }

    #[test]
    fn each_builtin_fits_its_own_slot() {
        for (slot, bytes) in BUILTINS {
            let info = inspect(bytes, Some(slot)).expect("a builtin fits its slot");
            assert_eq!(info.abi, Abi::Component);
            assert_eq!(
                info.exports,
                [WorldExport {
                    slot,
                    wit_version: "0.1.0".into()
                }]
            );
            assert_eq!(info.world(), slot.world());
            assert_eq!(info.wit_version(), "0.1.0");
            assert_eq!(info.size, bytes.len() as u64);
            assert_eq!(info.sha256, hex::encode(Sha256::digest(bytes)));
            assert!(
                info.imports
                    .iter()
                    .any(|i| i == "lyceum:policy/types@0.1.0"),
                "{:?}",
                info.imports
            );
            for import in &info.imports {
                assert!(PROVIDED.contains(&import.as_str()) || is_inert_wasi(import));
            }
            assert_eq!(inspect(bytes, None), Ok(info));
        }
    }

    #[test]
    fn each_builtin_is_the_wrong_world_in_the_other_slots() {
        for (own, bytes) in BUILTINS {
            for slot in Slot::ALL.into_iter().filter(|s| *s != own) {
                let e = refused(bytes, Some(slot));
                assert_eq!(e.reason, CheckReason::WrongWorld, "{own} in {slot}: {e}");
                assert!(e.message.contains(own.world()), "{e}");
                assert!(e.message.contains(slot.world()), "{e}");
                assert!(e.imports.is_empty());
            }
        }
    }

    #[test]
    fn empty_files_and_garbage_are_not_wasm() {
        let truncated = &CHAT_MODERATION[..CHAT_MODERATION.len() / 2];
        for bytes in [&b""[..], b"hello, world", b"\0asm", truncated] {
            let e = refused(bytes, Some(Slot::Chat));
            assert_eq!(e.reason, CheckReason::NotWasm, "{e}");
            assert!(e.message.contains(".wasm"), "{e}");
        }
    }

    #[test]
    fn a_core_module_that_is_no_extism_plugin_is_refused_with_what_a_plugin_is() {
        let e = refused(b"\0asm\x01\0\0\0", Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::WrongWorld);
        assert!(e.message.contains("core WebAssembly module"), "{e}");
        assert!(e.message.contains("wasm32-wasip2"), "{e}");
        assert!(e.message.contains("`moderate`"), "{e}");
        assert!(e.message.contains("`lyceum_policy_v0_1_0`"), "{e}");
    }

    #[test]
    fn the_extism_sample_is_an_extism_plugin_for_the_chat_slot_only() {
        let sample = fixture(fixtures::EXTISM_SAMPLE);
        let info = inspect(&sample, Some(Slot::Chat)).expect("the sample fits the chat slot");
        assert_eq!(info.abi, Abi::Extism);
        assert_eq!(info.world(), "chat-moderation");
        assert_eq!(info.wit_version(), "0.1.0");
        assert!(
            info.imports
                .iter()
                .any(|i| i == "extism:host/user/lyceum_kv"),
            "{:?}",
            info.imports
        );
        let e = refused(&sample, Some(Slot::Files));
        assert_eq!(e.reason, CheckReason::WrongWorld);
        assert!(e.message.contains("`precheck`, `finish`"), "{e}");
    }

    #[test]
    fn an_extism_module_exporting_every_world_fits_every_slot() {
        let hostile = fixture(fixtures::EXTISM_HOSTILE);
        for slot in Slot::ALL {
            let info = inspect(&hostile, Some(slot)).expect("fits");
            assert_eq!(info.abi, Abi::Extism);
        }
    }

    #[test]
    fn an_extism_module_names_its_wit_version_by_its_marker_export() {
        let sample = fixture(fixtures::EXTISM_SAMPLE);
        let newer = patched(&sample, "lyceum_policy_v0_1_0", "lyceum_policy_v0_2_0");
        let e = refused(&newer, Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::UnsupportedWitVersion);
        assert!(e.message.contains("`lyceum:policy@0.2.0`"), "{e}");
        assert!(
            e.message.contains("provides only `lyceum:policy@0.1.0`"),
            "{e}"
        );

        let unmarked = patched(&sample, "lyceum_policy_v0_1_0", "lyceum_policy_x0_1_0");
        let e = refused(&unmarked, Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::UnsupportedWitVersion);
        assert!(
            e.message
                .contains("export a function named `lyceum_policy_v0_1_0`"),
            "{e}"
        );
    }

    #[test]
    fn an_extism_module_may_import_only_the_kernel_and_lyceum_host_functions() {
        let sample = fixture(fixtures::EXTISM_SAMPLE);
        let stranger = patched(&sample, "lyceum_kv", "lyceum_kw");
        let e = refused(&stranger, Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::ForbiddenImport);
        assert_eq!(e.imports, ["extism:host/user/lyceum_kw"]);
        let network = patched(&sample, "input_length", "http_request");
        let e = refused(&network, Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::ForbiddenImport);
        assert_eq!(e.imports, ["extism:host/env/http_request"]);
        assert!(e.message.contains("without HTTP"), "{e}");
    }

    #[test]
    fn a_component_of_another_world_is_refused_naming_what_it_exports() {
        let bytes = fixture(fixtures::WRONG_WORLD);
        for slot in [Some(Slot::Chat), None] {
            let e = refused(&bytes, slot);
            assert_eq!(e.reason, CheckReason::WrongWorld, "{e}");
            assert!(e.message.contains("fixture:other/greeter@0.1.0"), "{e}");
            assert!(e.message.contains("chat-moderation"), "{e}");
        }
    }

    #[test]
    fn wasi_filesystem_imports_are_forbidden_and_listed() {
        let e = refused(&fixture(fixtures::WASI_FILESYSTEM), Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::ForbiddenImport, "{e}");
        for interface in ["wasi:filesystem/types@", "wasi:filesystem/preopens@"] {
            assert!(
                e.imports.iter().any(|i| i.starts_with(interface)),
                "{interface} missing from {:?}",
                e.imports
            );
        }
        for import in &e.imports {
            assert!(!is_inert_wasi(import) && !PROVIDED.contains(&import.as_str()));
            assert!(
                e.message.contains(import.as_str()),
                "{import} missing from: {e}"
            );
        }
    }

    #[test]
    fn a_fixture_exporting_all_three_worlds_fits_every_slot() {
        let bytes = fixture(fixtures::INFINITE_LOOP);
        for slot in Slot::ALL {
            inspect(&bytes, Some(slot)).expect("fits every slot");
        }
        let info = inspect(&bytes, None).expect("fits");
        assert_eq!(
            info.world(),
            "chat-moderation+file-validation+signaling-policy"
        );
        assert_eq!(info.wit_version(), "0.1.0");
    }

    #[test]
    fn a_world_at_a_version_this_server_lacks_is_unsupported() {
        let bytes = patched(
            CHAT_MODERATION,
            "lyceum:policy/moderation@0.1.0",
            "lyceum:policy/moderation@0.9.0",
        );
        for slot in [Some(Slot::Chat), None] {
            let e = refused(&bytes, slot);
            assert_eq!(e.reason, CheckReason::UnsupportedWitVersion, "{e}");
            assert!(e.message.contains("lyceum:policy@0.9.0"), "{e}");
            assert!(e.message.contains("lyceum:policy@0.1.0"), "{e}");
        }
    }

    #[test]
    fn the_wrong_world_at_an_unprovided_version_is_still_the_wrong_world() {
        let bytes = patched(
            SIGNALING_POLICY,
            "lyceum:policy/signaling@0.1.0",
            "lyceum:policy/signaling@0.9.0",
        );
        let e = refused(&bytes, Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::WrongWorld, "{e}");
    }

    #[test]
    fn a_host_interface_at_an_unprovided_version_is_a_forbidden_import() {
        let bytes = patched(
            CHAT_MODERATION,
            "lyceum:policy/kv@0.1.0",
            "lyceum:policy/kv@0.9.0",
        );
        let e = refused(&bytes, Some(Slot::Chat));
        assert_eq!(e.reason, CheckReason::ForbiddenImport, "{e}");
        assert_eq!(e.imports, ["lyceum:policy/kv@0.9.0"]);
        assert!(e.message.contains("`lyceum:policy/kv@0.1.0`"), "{e}");
    }

    #[test]
    fn only_the_stdio_exit_and_environment_interfaces_of_wasi_0_2_are_tolerated() {
        assert!(is_inert_wasi("wasi:cli/stdout@0.2.6"));
        assert!(is_inert_wasi("wasi:io/streams@0.2.0"));
        assert!(!is_inert_wasi("wasi:cli/stdout@0.3.0"));
        assert!(!is_inert_wasi("wasi:cli/stdout"));
        assert!(!is_inert_wasi("wasi:filesystem/types@0.2.6"));
        assert!(!is_inert_wasi("wasi:random/random@0.2.6"));
    }

    #[test]
    fn reasons_are_named_as_in_the_admin_api() {
        let names = [
            CheckReason::NotWasm,
            CheckReason::WrongWorld,
            CheckReason::UnsupportedWitVersion,
            CheckReason::ForbiddenImport,
            CheckReason::ConfigRejected,
            CheckReason::UnknownModule,
        ]
        .map(CheckReason::as_str);
        assert_eq!(
            names,
            [
                "not_wasm",
                "wrong_world",
                "unsupported_wit_version",
                "forbidden_import",
                "config_rejected",
                "unknown_module"
            ]
        );
        assert_eq!(Abi::Component.as_str(), "component");
        assert_eq!(Abi::Extism.as_str(), "extism");
    }
}
