//! File names: the generated one a file is stored under, and the original one kept as data.

use crate::domain::FileId;

/// Longest original name kept, in characters.
pub const MAX_ORIGINAL_NAME: usize = 255;

/// The stored name: the file id and the detected type's extension. Nothing of it comes
/// from the client, so it can never traverse, collide or masquerade.
pub fn stored_name(id: FileId, extension: &str) -> String {
    let ext: String = extension
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect::<String>()
        .to_ascii_lowercase();
    let ext = if ext.is_empty() { "bin".into() } else { ext };
    format!("{}.{ext}", id.0.simple())
}

/// The client's name as we keep it: its last path component (either separator), without
/// control characters, trimmed, at most [`MAX_ORIGINAL_NAME`] characters with the extension
/// kept. Only ever shown, never used as a path.
pub fn original_name(given: &str) -> String {
    let base = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return "file".into();
    }
    let count = cleaned.chars().count();
    if count <= MAX_ORIGINAL_NAME {
        return cleaned.to_owned();
    }
    match cleaned.rsplit_once('.') {
        Some((stem, ext)) if !ext.is_empty() && ext.chars().count() <= 16 => {
            let keep = MAX_ORIGINAL_NAME - ext.chars().count() - 1;
            let stem: String = stem.chars().take(keep).collect();
            format!("{stem}.{ext}")
        }
        _ => cleaned.chars().take(MAX_ORIGINAL_NAME).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_controls_are_stripped_from_original_names() {
        assert_eq!(original_name("../../etc/passwd.png"), "passwd.png");
        assert_eq!(original_name("C:\\Users\\me\\cat.png"), "cat.png");
        assert_eq!(original_name("ca\0t\n.png"), "cat.png");
        assert_eq!(original_name("/"), "file");
        assert_eq!(original_name(" .. "), "file");
        assert_eq!(original_name("résumé ü.pdf"), "résumé ü.pdf");
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.pdf", "é".repeat(1000));
        let kept = original_name(&long);
        assert_eq!(kept.chars().count(), MAX_ORIGINAL_NAME);
        assert!(kept.ends_with(".pdf"));
    }

    #[test]
    fn stored_names_are_the_id_and_a_clean_extension() {
        let id = FileId::new();
        assert_eq!(stored_name(id, "png"), format!("{}.png", id.0.simple()));
        assert_eq!(stored_name(id, "../x"), format!("{}.x", id.0.simple()));
        assert_eq!(stored_name(id, ""), format!("{}.bin", id.0.simple()));
    }
}
