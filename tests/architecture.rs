//! The layering of ARCHITECTURE.md, checked: `node -> storage -> federation -> crypto`, nothing
//! points up, and the sans-IO crates name no socket, clock, file or random source.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ sits in the workspace root")
        .to_path_buf()
}

fn dependencies(krate: &str) -> Vec<String> {
    let path = root().join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("read Cargo.toml");
    let manifest: toml::Table = text.parse().expect("parse Cargo.toml");
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default()
}

/// Crates that do I/O or own threads of their own; only `node` (and `storage` for RocksDB) may
/// depend on them.
const IO_CRATES: [&str; 8] = [
    "tokio", "quinn", "rocksdb", "raft", "rustls", "socket2", "mio", "tempfile",
];

fn check_layer(krate: &str, allowed_internal: &[&str], forbidden: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for dependency in dependencies(krate) {
        if dependency.starts_with("tiermesh") && !allowed_internal.contains(&dependency.as_str()) {
            problems.push(format!(
                "{krate} depends on {dependency}, which is not below it"
            ));
        }
        if forbidden.contains(&dependency.as_str()) {
            problems.push(format!("{krate} depends on {dependency}, an I/O crate"));
        }
    }
    problems
}

#[test]
fn dependencies_point_down() {
    let mut problems = Vec::new();
    problems.extend(check_layer("crypto", &[], &IO_CRATES));
    problems.extend(check_layer("federation", &["tiermesh-crypto"], &IO_CRATES));
    let storage_forbidden: Vec<&str> = IO_CRATES
        .iter()
        .copied()
        .filter(|name| !["rocksdb", "raft"].contains(name))
        .collect();
    problems.extend(check_layer(
        "storage",
        &["tiermesh-federation", "tiermesh-crypto"],
        &storage_forbidden,
    ));
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// Text that means a socket, a clock, a file or ambient randomness.
const FORBIDDEN_TEXT: [&str; 9] = [
    "std::net",
    "std::fs",
    "std::time::SystemTime",
    "SystemTime::now",
    "Instant::now",
    "SystemRandom",
    "thread_rng",
    "std::thread",
    "std::env",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn sans_io_crates_touch_no_io() {
    let mut problems = Vec::new();
    for krate in ["crypto", "federation"] {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has no sources?");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read source");
            // Unit tests may use real randomness; the library code may not.
            let library = text.split("#[cfg(test)]").next().unwrap_or("");
            for needle in FORBIDDEN_TEXT {
                if library.contains(needle) {
                    problems.push(format!("{} uses {needle}", file.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "sans-IO broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn rocksdb_is_named_in_one_storage_module() {
    let mut files = Vec::new();
    rust_files(&root().join("storage").join("src"), &mut files);
    let naming: Vec<String> = files
        .iter()
        .filter(|file| {
            std::fs::read_to_string(file)
                .expect("read")
                .contains("rocksdb::")
        })
        .map(|file| {
            file.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // error.rs converts rocksdb::Error into the crate's error; store.rs is the one module that
    // drives RocksDB.
    assert!(
        naming
            .iter()
            .all(|name| name == "store.rs" || name == "error.rs"),
        "RocksDB named outside store.rs: {naming:?}"
    );
}
