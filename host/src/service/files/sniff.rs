//! The host's own reading of what an upload is, from its first bytes: this becomes the file's
//! `mimetype` and `Content-Type`, whatever the client claimed. Plugins decide whether the
//! type is acceptable; the host only describes it.

/// How a detected type is stored: its media type and the extension its generated name gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub mime: String,
    pub extension: String,
}

impl Detected {
    fn new(mime: &str, extension: &str) -> Self {
        Detected {
            mime: mime.to_owned(),
            extension: extension.to_owned(),
        }
    }

    pub fn unknown() -> Self {
        Detected::new("application/octet-stream", "bin")
    }
}

/// The type of content starting with `head`; `name` only refines plain text (a `.csv` is
/// `text/csv`), never overrides what the bytes say.
pub fn detect(head: &[u8], name: &str) -> Detected {
    if let Some(kind) = infer::get(head) {
        let mime = kind.mime_type();
        if mime == "text/xml" && is_svg(head) {
            return Detected::new("image/svg+xml", "svg");
        }
        return Detected::new(mime, kind.extension());
    }
    if is_svg(head) {
        return Detected::new("image/svg+xml", "svg");
    }
    if is_text(head) {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        return match ext.as_str() {
            "csv" => Detected::new("text/csv", "csv"),
            "md" | "markdown" => Detected::new("text/markdown", "md"),
            "json" => Detected::new("application/json", "json"),
            _ => Detected::new("text/plain", "txt"),
        };
    }
    Detected::unknown()
}

/// UTF-8 (a character cut at the end of the head is fine) without NUL or other C0 controls
/// than whitespace.
fn is_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        // Cut inside the last character: at most 3 bytes short of a whole one.
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

/// An XML document whose first element is `<svg`.
fn is_svg(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).to_ascii_lowercase();
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    // Skip the prolog: declarations, comments, processing instructions.
    while let Some(stripped) = rest.strip_prefix('<') {
        if stripped.starts_with("svg") {
            return true;
        }
        if !(stripped.starts_with('?') || stripped.starts_with('!')) {
            return false;
        }
        let Some(end) = rest.find('>') else {
            return false;
        };
        rest = rest[end + 1..].trim_start();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mime(head: &[u8], name: &str) -> String {
        detect(head, name).mime
    }

    #[test]
    fn magic_bytes_win_over_names() {
        assert_eq!(mime(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "a.pdf"), "image/png");
        assert_eq!(mime(b"%PDF-1.7\n", "a.png"), "application/pdf");
        let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
        elf.resize(64, 0);
        assert_eq!(mime(&elf, "a.png"), "application/x-executable");
        assert_eq!(
            mime(b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom", "x"),
            "video/mp4"
        );
    }

    #[test]
    fn text_is_refined_by_extension_only_when_it_is_text() {
        assert_eq!(mime(b"a,b\n1,2\n", "sheet.csv"), "text/csv");
        assert_eq!(mime(b"# Title\n", "notes.md"), "text/markdown");
        assert_eq!(mime("héllo".as_bytes(), "x.png"), "text/plain");
        // A three-byte character cut after its first byte still reads as text.
        assert_eq!(mime(&"€".as_bytes()[..1], "x"), "text/plain");
        assert_eq!(mime(b"a\0b", "x.txt"), "application/octet-stream");
    }

    #[test]
    fn svg_is_recognised_behind_a_prolog_and_html_stays_html() {
        let svg =
            b"<?xml version=\"1.0\"?>\n<!-- drawn -->\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        assert_eq!(detect(svg, "x").extension, "svg");
        assert_eq!(mime(b"<svg><script>1</script></svg>", "x"), "image/svg+xml");
        assert_eq!(mime(b"<!DOCTYPE html><html></html>", "x"), "text/html");
    }
}
