//! Shared scaffolding for the examples: a scratch project directory. The store, state and
//! cache come from the environment (`SQUASHBOX_STORE`, `SQUASHBOX_STATE_DIR`,
//! `SQUASHBOX_CACHE_DIR`) or squashbox's defaults.
#![allow(dead_code)]

use std::path::Path;

/// A scratch directory holding a small project tree; removed when dropped.
pub fn project() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("squashbox-example-")
        .tempdir()
        .expect("creating a scratch dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("README.md"), "# demo project\n").unwrap();
    std::fs::write(
        root.join("src/main.rs"),
        "fn main() { println!(\"hi\"); }\n",
    )
    .unwrap();
    std::fs::write(root.join("notes.txt"), "important notes\n").unwrap();
    dir
}

/// Sorted list of relative paths with file contents, to compare trees.
pub fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
                out.push((rel + "/", Vec::new()));
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
