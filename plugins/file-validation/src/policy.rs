//! The file validation rules, free of WebAssembly bindings.
//!
//! Hard rules no configuration can relax: executables and scripts (ELF, PE, Mach-O, Java
//! classes, WebAssembly, `#!` scripts, executable extensions), HTML, SVG carrying scripts or
//! event handlers, double extensions such as `.pdf.exe`, and names using bidirectional
//! overrides to disguise their extension. Then the content's type, sniffed from its magic
//! bytes, must agree with the name's extension and the declared type, and be allowed in the
//! folder, within the folder's size cap.

use std::collections::BTreeMap;

use serde::Deserialize;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// An SVG is only accepted when all of it fits in the bytes `precheck` inspects.
pub const SVG_INSPECTED_BYTES: u64 = 64 * KIB;

/// A folder's rules after the configuration is applied.
#[derive(Clone, Debug)]
pub struct Folder {
    /// Accepted types: exact (`image/png`), a prefix ending in `*` (`image/*`), or `*`.
    pub types: Vec<String>,
    pub max_bytes: u64,
}

/// A folder as written in the configuration; missing keys keep the default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderOverride {
    pub types: Option<Vec<String>>,
    pub max_bytes: Option<u64>,
}

/// The plugin's configuration table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Per folder overrides, merged over the defaults (`documents`, `images`, `videos`,
    /// `misc`); a folder named here that has no default becomes a new folder.
    pub folders: BTreeMap<String, FolderOverride>,
    /// SHA-256 digests (lowercase hex) of files refused whatever their name.
    pub blocked_sha256: Vec<String>,
}

fn default_folders() -> BTreeMap<String, Folder> {
    let folder = |types: &[&str], max_bytes| Folder {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        max_bytes,
    };
    BTreeMap::from([
        (
            "documents".to_owned(),
            folder(
                &[
                    "application/pdf",
                    "text/*",
                    "application/rtf",
                    "application/json",
                    "application/xml",
                    "application/msword",
                    "application/vnd.ms-excel",
                    "application/vnd.ms-powerpoint",
                    "application/vnd.openxmlformats-officedocument.*",
                    "application/vnd.oasis.opendocument.*",
                    "application/epub+zip",
                ],
                50 * MIB,
            ),
        ),
        ("images".to_owned(), folder(&["image/*"], 20 * MIB)),
        (
            "videos".to_owned(),
            folder(&["video/*", "audio/*"], 2 * GIB),
        ),
        ("misc".to_owned(), folder(&["*"], 50 * MIB)),
    ])
}

/// What `precheck` sees.
pub struct Head<'a> {
    pub name: &'a str,
    pub folder: Option<&'a str>,
    pub declared_type: Option<&'a str>,
    pub declared_size: Option<u64>,
    /// The host's guess, used only when the plugin's own sniffing finds nothing.
    pub host_sniffed: Option<&'a str>,
    pub head: &'a [u8],
}

/// What `finish` sees.
pub struct Done<'a> {
    pub name: &'a str,
    pub folder: Option<&'a str>,
    pub size: u64,
    pub sha256: &'a str,
    pub host_sniffed: Option<&'a str>,
    /// Whether `precheck` of the same request found an SVG.
    pub was_svg: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Accept {
        folder: Option<String>,
        name: Option<String>,
    },
    Reject {
        code: &'static str,
        reason: String,
    },
}

fn reject(code: &'static str, reason: impl Into<String>) -> Decision {
    Decision::Reject {
        code,
        reason: reason.into(),
    }
}

/// Compiled rules.
pub struct Validator {
    folders: BTreeMap<String, Folder>,
    blocked: Vec<String>,
}

/// The outcome of `precheck` plus what `finish` must learn from it.
pub struct Prechecked {
    pub decision: Decision,
    pub is_svg: bool,
}

impl Validator {
    pub fn new(config: &Config) -> Self {
        let mut folders = default_folders();
        for (name, o) in &config.folders {
            let entry = folders.entry(name.clone()).or_insert_with(|| Folder {
                types: Vec::new(),
                max_bytes: 50 * MIB,
            });
            if let Some(types) = &o.types {
                entry.types = types
                    .iter()
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect();
            }
            if let Some(max) = o.max_bytes {
                entry.max_bytes = max;
            }
        }
        Self {
            folders,
            blocked: config
                .blocked_sha256
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn precheck(&self, input: &Head<'_>) -> Prechecked {
        let mut is_svg = false;
        let decision = self.precheck_inner(input, &mut is_svg);
        Prechecked { decision, is_svg }
    }

    fn precheck_inner(&self, input: &Head<'_>, is_svg: &mut bool) -> Decision {
        if input.name.chars().any(is_bidi_control) {
            return reject(
                "suspicious_name",
                "The file name contains invisible direction controls.",
            );
        }
        let name = clean_name(input.name);
        let (stem_exts, ext) = extensions(&name);
        if let Some(ext) = &ext
            && HTML_EXTS.contains(&ext.as_str())
        {
            return reject("html_not_allowed", "HTML files are not accepted.");
        }
        if let Some(ext) = &ext
            && EXECUTABLE_EXTS.contains(&ext.as_str())
        {
            if stem_exts.iter().any(|e| ext_type(e).is_some()) {
                return reject(
                    "double_extension",
                    format!(
                        "Files named like \"*.{}.{ext}\" are not accepted.",
                        stem_exts.last().map_or("", String::as_str)
                    ),
                );
            }
            return reject(
                "executable",
                format!("Executable files (.{ext}) are not accepted."),
            );
        }
        if input.head.is_empty() || input.declared_size == Some(0) {
            return reject("empty_file", "The file is empty.");
        }

        let sniffed = match sniff(input.head) {
            Some(Sniffed::Executable(what)) => {
                return reject(
                    "executable",
                    format!("Executable files ({what}) are not accepted."),
                );
            }
            Some(Sniffed::Html) => {
                return reject("html_not_allowed", "HTML files are not accepted.");
            }
            Some(Sniffed::Type(t)) => t,
            None => {
                let host = input.host_sniffed.map(normalize_type).unwrap_or_default();
                if host == "text/html" || host == "application/xhtml+xml" {
                    return reject("html_not_allowed", "HTML files are not accepted.");
                }
                match known_type(&host) {
                    Some(t) => t,
                    None => {
                        return reject("unknown_type", "The file's type could not be recognised.");
                    }
                }
            }
        };
        if sniffed == "image/svg+xml" {
            *is_svg = true;
            if svg_is_active(input.head) {
                return reject(
                    "svg_script",
                    "SVG images with scripts or event handlers are not accepted.",
                );
            }
            let size = input.declared_size.unwrap_or(input.head.len() as u64);
            if size > SVG_INSPECTED_BYTES || input.head.len() as u64 > SVG_INSPECTED_BYTES {
                return reject("svg_too_large", "SVG images over 64 KiB are not accepted.");
            }
        }

        // The effective type is the extension's when it is a more precise reading of the
        // same content (a zip that is a .docx), else the sniffed one.
        let effective = match &ext {
            Some(ext) => match ext_type(ext) {
                Some(by_ext) if compatible(sniffed, by_ext) => by_ext,
                Some(by_ext) => {
                    return reject(
                        "type_mismatch",
                        format!(
                            "The file's content ({}) does not match its extension .{ext} ({}).",
                            describe(sniffed),
                            describe(by_ext)
                        ),
                    );
                }
                None if is_text(sniffed) => sniffed,
                None => {
                    return reject(
                        "type_mismatch",
                        format!(
                            "The file's content ({}) does not match its extension .{ext}.",
                            describe(sniffed)
                        ),
                    );
                }
            },
            None => sniffed,
        };

        if let Some(declared) = input.declared_type.map(normalize_type)
            && !declared.is_empty()
            && declared != "application/octet-stream"
            && declared != effective
            && !compatible(sniffed, &declared)
            && !(is_text(sniffed)
                && (declared.starts_with("text/")
                    || (declared == "application/vnd.ms-excel" && ext.as_deref() == Some("csv"))))
        {
            return reject(
                "type_mismatch",
                format!(
                    "The declared type {declared} does not match the file's content ({}).",
                    describe(sniffed)
                ),
            );
        }

        let folder_name = match input.folder {
            Some(f) => f.to_owned(),
            None => match self.choose_folder(effective) {
                Some(f) => f,
                None => {
                    return reject(
                        "type_not_allowed",
                        format!("{} files are not accepted.", describe(effective)),
                    );
                }
            },
        };
        let Some(folder) = self.folders.get(&folder_name) else {
            return reject(
                "unknown_folder",
                format!("There is no folder named \"{folder_name}\"."),
            );
        };
        if !folder_accepts(folder, effective) {
            return reject(
                "type_not_allowed",
                format!(
                    "{} files are not accepted in {folder_name}.",
                    describe(effective)
                ),
            );
        }
        if let Some(size) = input.declared_size
            && size > folder.max_bytes
        {
            return too_large(&folder_name, folder.max_bytes);
        }

        let name = if ext.is_none() {
            match canonical_ext(effective) {
                Some(e) => format!("{name}.{e}"),
                None => name,
            }
        } else {
            name
        };
        Decision::Accept {
            folder: (input.folder != Some(folder_name.as_str())).then_some(folder_name),
            name: (name != input.name).then_some(name),
        }
    }

    pub fn finish(&self, input: &Done<'_>) -> Decision {
        let digest = input.sha256.to_ascii_lowercase();
        if self.blocked.contains(&digest) {
            return reject("blocked_file", "This file is not accepted.");
        }
        if input.size == 0 {
            return reject("empty_file", "The file is empty.");
        }
        let host = input.host_sniffed.map(normalize_type).unwrap_or_default();
        if host == "text/html" || host == "application/xhtml+xml" {
            return reject("html_not_allowed", "HTML files are not accepted.");
        }
        if matches!(
            host.as_str(),
            "application/x-executable"
                | "application/x-elf"
                | "application/x-msdownload"
                | "application/x-mach-binary"
                | "application/x-sharedlib"
        ) {
            return reject("executable", "Executable files are not accepted.");
        }
        let (_, ext) = extensions(input.name);
        let svg = input.was_svg || host == "image/svg+xml" || ext.as_deref() == Some("svg");
        if svg && input.size > SVG_INSPECTED_BYTES {
            return reject("svg_too_large", "SVG images over 64 KiB are not accepted.");
        }
        if let Some(folder_name) = input.folder
            && let Some(folder) = self.folders.get(folder_name)
            && input.size > folder.max_bytes
        {
            return too_large(folder_name, folder.max_bytes);
        }
        Decision::Accept {
            folder: None,
            name: None,
        }
    }

    fn choose_folder(&self, mime: &str) -> Option<String> {
        let preferred = ["images", "videos", "documents"];
        preferred
            .iter()
            .filter_map(|p| self.folders.get_key_value(*p))
            .chain(
                self.folders
                    .iter()
                    .filter(|(k, _)| !preferred.contains(&k.as_str()) && k.as_str() != "misc"),
            )
            .chain(self.folders.get_key_value("misc"))
            .find(|(_, f)| folder_accepts(f, mime))
            .map(|(k, _)| k.clone())
    }
}

fn too_large(folder: &str, max: u64) -> Decision {
    let (n, unit) = if max >= GIB && max.is_multiple_of(GIB) {
        (max / GIB, "GiB")
    } else if max >= MIB {
        (max / MIB, "MiB")
    } else {
        (max / KIB, "KiB")
    };
    reject(
        "too_large",
        format!("Files in {folder} may be at most {n} {unit}."),
    )
}

fn folder_accepts(folder: &Folder, mime: &str) -> bool {
    folder
        .types
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => mime.starts_with(prefix),
            None => pattern == mime,
        })
}

/// The host's guess as one of the types these rules know; others are refused rather than
/// let through unexamined.
fn known_type(t: &str) -> Option<&'static str> {
    KNOWN_TYPES.iter().find(|k| **k == t).copied()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// The last path component, without control characters or surrounding dots and spaces.
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim_matches(|c: char| c == ' ' || c == '.');
    if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The inner extensions and the last one, lowercase. A leading dot names a hidden file and
/// is not an extension.
fn extensions(name: &str) -> (Vec<String>, Option<String>) {
    let name = name.trim_start_matches('.');
    let mut parts: Vec<String> = name
        .split('.')
        .skip(1)
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    let last = parts.pop().filter(|e| !e.is_empty());
    (parts, last)
}

pub fn normalize_type(t: &str) -> String {
    let base = t
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let aliased = match base.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        "image/x-ms-bmp" | "image/x-bmp" => "image/bmp",
        "image/vnd.microsoft.icon" => "image/x-icon",
        "audio/mp3" | "audio/x-mp3" | "audio/x-mpeg" => "audio/mpeg",
        "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav",
        "audio/x-flac" => "audio/flac",
        "audio/x-m4a" | "audio/m4a" => "audio/mp4",
        "audio/x-midi" | "audio/mid" => "audio/midi",
        "video/x-m4v" => "video/mp4",
        "application/x-zip-compressed" | "application/x-zip" | "multipart/x-zip" => {
            "application/zip"
        }
        "application/x-pdf" => "application/pdf",
        "application/x-gzip" | "application/gzip-compressed" => "application/gzip",
        "application/x-rar-compressed" | "application/x-rar" => "application/vnd.rar",
        "application/x-gtar" => "application/x-tar",
        "text/rtf" => "application/rtf",
        "text/x-markdown" => "text/markdown",
        "text/xml" => "application/xml",
        "text/json" => "application/json",
        other => other,
    };
    aliased.to_owned()
}

fn is_text(mime: &str) -> bool {
    mime.starts_with("text/") || mime == "application/json" || mime == "application/xml"
}

/// Whether a file whose content sniffs as `sniffed` may carry the type `other` (from its
/// extension or declaration).
fn compatible(sniffed: &str, other: &str) -> bool {
    if sniffed == other {
        return true;
    }
    let family: &[&str] = match sniffed {
        "application/zip" => &[
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
            "application/vnd.oasis.opendocument.presentation",
            "application/epub+zip",
        ],
        "application/x-ole-storage" => &[
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
        ],
        "video/mp4" => &["audio/mp4", "video/quicktime", "video/3gpp"],
        "audio/mp4" => &["video/mp4"],
        "video/quicktime" => &["video/mp4"],
        "video/webm" => &["video/x-matroska", "audio/webm"],
        "video/x-matroska" => &["video/webm"],
        "audio/ogg" => &["video/ogg", "audio/opus"],
        "video/ogg" => &["audio/ogg"],
        "image/heic" => &["image/heif"],
        "text/plain" => &[
            "text/markdown",
            "text/csv",
            "text/tab-separated-values",
            "application/json",
            "text/yaml",
            "text/x-python",
            "text/x-c",
            "text/x-java",
        ],
        "application/xml" => &["text/plain"],
        _ => &[],
    };
    family.contains(&other)
}

fn describe(mime: &str) -> &str {
    match mime {
        "application/pdf" => "PDF",
        "image/png" => "PNG image",
        "image/jpeg" => "JPEG image",
        "image/gif" => "GIF image",
        "image/webp" => "WebP image",
        "image/svg+xml" => "SVG image",
        "text/plain" => "plain text",
        "application/zip" => "ZIP archive",
        "application/x-ole-storage" => "legacy Office document",
        "video/mp4" => "MP4 video",
        "audio/mpeg" => "MP3 audio",
        other => other,
    }
}

/// Extensions refused whatever the content: they run code when opened.
const EXECUTABLE_EXTS: &[&str] = &[
    "exe", "com", "scr", "pif", "msi", "msp", "dll", "sys", "cpl", "bat", "cmd", "ps1", "psm1",
    "vbs", "vbe", "vb", "js", "jse", "ws", "wsf", "wsh", "hta", "lnk", "reg", "gadget", "jar",
    "apk", "app", "dmg", "pkg", "deb", "rpm", "sh", "bash", "zsh", "csh", "ksh", "command", "run",
    "bin", "elf", "so", "dylib", "appimage",
];

/// Extensions of web pages, which a browser would run scripts from.
const HTML_EXTS: &[&str] = &["html", "htm", "xhtml", "shtml", "mht", "mhtml"];

/// Type by extension, for the extensions Lyceum knows.
fn ext_type(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" | "jpe" | "jfif" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "ico" => "image/x-icon",
        "heic" | "heif" => "image/heic",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        "mp4" | "m4v" => "video/mp4",
        "mov" | "qt" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "avi" => "video/x-msvideo",
        "3gp" => "video/3gpp",
        "ogv" => "video/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "flac" => "audio/flac",
        "mid" | "midi" => "audio/midi",
        "zip" => "application/zip",
        "7z" => "application/x-7z-compressed",
        "rar" => "application/vnd.rar",
        "gz" | "tgz" => "application/gzip",
        "bz2" => "application/x-bzip2",
        "xz" => "application/x-xz",
        "tar" => "application/x-tar",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "odp" => "application/vnd.oasis.opendocument.presentation",
        "epub" => "application/epub+zip",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "rtf" => "application/rtf",
        "txt" | "text" | "log" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "json" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "text/yaml",
        _ => return None,
    })
}

fn canonical_ext(mime: &str) -> Option<&'static str> {
    Some(match mime {
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "image/heic" => "heic",
        "image/avif" => "avif",
        "image/svg+xml" => "svg",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        "video/x-matroska" => "mkv",
        "video/x-msvideo" => "avi",
        "audio/mpeg" => "mp3",
        "audio/wav" => "wav",
        "audio/ogg" => "ogg",
        "audio/flac" => "flac",
        "application/zip" => "zip",
        "application/x-7z-compressed" => "7z",
        "application/vnd.rar" => "rar",
        "application/gzip" => "gz",
        "application/x-tar" => "tar",
        "application/rtf" => "rtf",
        "text/plain" => "txt",
        _ => return None,
    })
}

/// Every type [`sniff`] or [`ext_type`] can produce.
const KNOWN_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/x-icon",
    "image/heic",
    "image/avif",
    "image/svg+xml",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
    "video/3gpp",
    "video/ogg",
    "audio/mpeg",
    "audio/mp4",
    "audio/wav",
    "audio/ogg",
    "audio/opus",
    "audio/flac",
    "audio/midi",
    "application/zip",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-tar",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/epub+zip",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/rtf",
    "text/plain",
    "text/markdown",
    "text/csv",
    "text/tab-separated-values",
    "application/json",
    "application/xml",
    "text/yaml",
];

pub enum Sniffed {
    Type(&'static str),
    Executable(&'static str),
    Html,
}

/// The type of a file from its first bytes.
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    use Sniffed::{Executable, Type};
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);

    if starts(b"\x7fELF") {
        return Some(Executable("ELF"));
    }
    if starts(b"MZ") {
        return Some(Executable("Windows PE"));
    }
    if starts(&[0xFE, 0xED, 0xFA, 0xCE])
        || starts(&[0xFE, 0xED, 0xFA, 0xCF])
        || starts(&[0xCE, 0xFA, 0xED, 0xFE])
        || starts(&[0xCF, 0xFA, 0xED, 0xFE])
    {
        return Some(Executable("Mach-O"));
    }
    if starts(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        return Some(Executable("Mach-O or Java class"));
    }
    if starts(b"\0asm") {
        return Some(Executable("WebAssembly"));
    }
    if starts(b"#!") {
        return Some(Executable("script"));
    }

    let found = if starts(b"%PDF-") {
        "application/pdf"
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        "image/gif"
    } else if starts(b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if starts(b"RIFF") && at(8, b"WAVE") {
        "audio/wav"
    } else if starts(b"RIFF") && at(8, b"AVI ") {
        "video/x-msvideo"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "image/tiff"
    } else if starts(b"BM") && head.len() > 14 && at(6, &[0, 0, 0, 0]) {
        "image/bmp"
    } else if starts(&[0, 0, 1, 0]) && head.len() > 6 && head[4] > 0 {
        "image/x-icon"
    } else if at(4, b"ftyp") {
        match head.get(8..12).unwrap_or_default() {
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => "image/heic",
            b"avif" | b"avis" => "image/avif",
            b"M4A " | b"M4B " => "audio/mp4",
            b"qt  " => "video/quicktime",
            b"3gp4" | b"3gp5" | b"3gp6" | b"3g2a" => "video/3gpp",
            _ => "video/mp4",
        }
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        if contains(&head[..head.len().min(64)], b"webm") {
            "video/webm"
        } else {
            "video/x-matroska"
        }
    } else if starts(b"OggS") {
        if contains(head, b"theora") {
            "video/ogg"
        } else {
            "audio/ogg"
        }
    } else if starts(b"fLaC") {
        "audio/flac"
    } else if starts(b"ID3") || (head.len() > 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
        "audio/mpeg"
    } else if starts(b"MThd") {
        "audio/midi"
    } else if starts(b"PK\x03\x04") {
        sniff_zip(head)
    } else if starts(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) {
        "application/x-7z-compressed"
    } else if starts(b"Rar!\x1a\x07") {
        "application/vnd.rar"
    } else if starts(&[0x1F, 0x8B]) {
        "application/gzip"
    } else if starts(b"BZh") {
        "application/x-bzip2"
    } else if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        "application/x-xz"
    } else if at(257, b"ustar") {
        "application/x-tar"
    } else if starts(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        "application/x-ole-storage"
    } else if starts(b"{\\rtf") {
        "application/rtf"
    } else {
        return sniff_text(head);
    };
    Some(Type(found))
}

fn sniff_zip(head: &[u8]) -> &'static str {
    // OpenDocument and EPUB store an uncompressed `mimetype` entry first.
    if head.get(30..38) == Some(b"mimetype") {
        let rest = &head[38..head.len().min(38 + 80)];
        for (needle, mime) in [
            (&b"application/epub+zip"[..], "application/epub+zip"),
            (
                b"application/vnd.oasis.opendocument.text",
                "application/vnd.oasis.opendocument.text",
            ),
            (
                b"application/vnd.oasis.opendocument.spreadsheet",
                "application/vnd.oasis.opendocument.spreadsheet",
            ),
            (
                b"application/vnd.oasis.opendocument.presentation",
                "application/vnd.oasis.opendocument.presentation",
            ),
        ] {
            if rest.starts_with(needle) {
                return mime;
            }
        }
    }
    if contains(head, b"[Content_Types].xml") {
        if contains(head, b"word/") {
            return "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        }
        if contains(head, b"xl/") {
            return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
        }
        if contains(head, b"ppt/") {
            return "application/vnd.openxmlformats-officedocument.presentationml.presentation";
        }
    }
    "application/zip"
}

/// Text formats: HTML (refused), SVG, XML, or plain UTF-8 text.
fn sniff_text(head: &[u8]) -> Option<Sniffed> {
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    // A multi-byte character cut at the end of the inspected bytes is still text.
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() && body.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&body[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    if text
        .chars()
        .any(|c| c == '\0' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c')))
    {
        return None;
    }
    let mut start = text.trim_start();
    // Skip XML declarations, comments and doctypes that may precede the root element.
    loop {
        let lower = start
            .get(..start.len().min(16))
            .unwrap_or_default()
            .to_ascii_lowercase();
        if lower.starts_with("<!doctype html")
            || lower.starts_with("<html")
            || lower.starts_with("<head")
            || lower.starts_with("<body")
            || lower.starts_with("<script")
            || lower.starts_with("<iframe")
        {
            return Some(Sniffed::Html);
        }
        let skip_to = if start.starts_with("<?") {
            start.find("?>").map(|i| i + 2)
        } else if start.starts_with("<!--") {
            start.find("-->").map(|i| i + 3)
        } else if start.starts_with("<!") {
            start.find('>').map(|i| i + 1)
        } else {
            None
        };
        match skip_to {
            Some(i) => start = start[i..].trim_start(),
            None => break,
        }
    }
    let lower = start
        .get(..start.len().min(8))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if lower.starts_with("<svg") {
        return Some(Sniffed::Type("image/svg+xml"));
    }
    if text.trim_start().starts_with("<?xml") {
        if contains_ignore_case(text.as_bytes(), b"<svg") {
            return Some(Sniffed::Type("image/svg+xml"));
        }
        if contains_ignore_case(text.as_bytes(), b"<html") {
            return Some(Sniffed::Html);
        }
        return Some(Sniffed::Type("application/xml"));
    }
    Some(Sniffed::Type("text/plain"))
}

/// Scripts, event handler attributes, `javascript:` URLs and embedded foreign content.
fn svg_is_active(head: &[u8]) -> bool {
    for needle in [
        &b"<script"[..],
        b"javascript:",
        b"<foreignobject",
        b"<iframe",
        b"<embed",
        b"<object",
        b"data:text/html",
        b"vbscript:",
    ] {
        if contains_ignore_case(head, needle) {
            return true;
        }
    }
    // `on...=` attributes: a whitespace or slash, `on`, letters, optional spaces, `=`.
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut i = 0;
    while let Some(pos) = find(&lower[i..], b"on") {
        let at = i + pos;
        let before_ok = at > 0
            && (lower[at - 1].is_ascii_whitespace()
                || lower[at - 1] == b'/'
                || lower[at - 1] == b'"'
                || lower[at - 1] == b'\'');
        let mut j = at + 2;
        while j < lower.len() && lower[j].is_ascii_alphabetic() {
            j += 1;
        }
        let letters = j - at - 2;
        while j < lower.len() && lower[j].is_ascii_whitespace() {
            j += 1;
        }
        if before_ok && letters > 0 && lower.get(j) == Some(&b'=') {
            return true;
        }
        i = at + 2;
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
