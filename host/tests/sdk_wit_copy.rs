//! The Rust SDK (`plugins/sdk`) binds the WIT it carries in its own `wit/` folder, so that
//! it builds wherever it is copied. That copy must be the released contract,
//! `wit/since_v0.1.0`, byte for byte: a plugin built with the SDK must implement exactly the
//! worlds the server checks for.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate lives at host/")
        .to_path_buf()
}

/// The `.wit` files of `dir`, by file name.
fn wit_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn the_sdk_carries_an_exact_copy_of_the_released_wit() {
    let released = wit_files(&repository().join("wit/since_v0.1.0"));
    let carried = wit_files(&repository().join("plugins/sdk/wit"));
    assert!(
        released.contains_key("worlds.wit"),
        "wit/since_v0.1.0 holds the worlds: {:?}",
        released.keys()
    );
    assert_eq!(
        carried.keys().collect::<Vec<_>>(),
        released.keys().collect::<Vec<_>>(),
        "plugins/sdk/wit must hold the same files as wit/since_v0.1.0"
    );
    for (name, bytes) in &released {
        assert!(
            carried[name] == *bytes,
            "plugins/sdk/wit/{name} differs from wit/since_v0.1.0/{name}: copy it again"
        );
    }
}
