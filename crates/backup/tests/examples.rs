//! Runs every example binary against a fresh store (local, and the real S3 server when
//! configured). Examples assert their own outcomes, so a wrong result fails the run.

mod common;

use std::path::PathBuf;
use std::process::Command;

const EXAMPLES: &[&str] = &[
    "create",
    "restore",
    "gitignore",
    "checkpoint_rollback",
    "handle_json",
    "named_backups",
    "ttl",
    "replace_latest",
    "list_delete_old",
    "error_codes",
];

/// `target/<profile>/examples/<name>`, next to this test's `deps` dir.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

/// Build the examples when this test was run alone (`cargo test --test examples` does not
/// build them; a plain `cargo test` does).
fn ensure_built() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        if EXAMPLES.iter().all(|n| example_path(n).exists()) {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let target_dir = exe.ancestors().nth(3).unwrap().to_path_buf();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "squashbox-backup", "--examples"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the examples failed");
    });
}

fn run_all(store_url: &str, env: &common::Env) {
    ensure_built();
    for name in EXAMPLES {
        let path = example_path(name);
        assert!(
            path.exists(),
            "{} not built (cargo test builds examples)",
            path.display()
        );
        let out = Command::new(&path)
            .env("SQUASHBOX_STORE", store_url)
            .env("SQUASHBOX_STATE_DIR", &env.state)
            .env("SQUASHBOX_CACHE_DIR", &env.cache)
            .env("TMPDIR", env.path("tmp"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "example {name} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Examples clean up their scratch dirs.
    let left: Vec<_> = std::fs::read_dir(env.path("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "examples left files behind: {left:?}");
}

#[test]
fn examples_run_against_local_store() {
    let env = common::local_env();
    let url = format!("file://{}", env.path("example-store").display());
    run_all(&url, &env);
}

#[test]
fn examples_run_against_s3() {
    let Some(env) = common::s3_env() else {
        return;
    };
    let url = env.store.url().to_string();
    run_all(&url, &env);
}
