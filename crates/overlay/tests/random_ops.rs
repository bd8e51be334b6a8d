//! Randomized operation sequences (fixed seeds): every operation is applied to our overlay and
//! to a plain directory copy of the lower tree; both must succeed or fail with the same errno,
//! and the trees must be identical after every batch. At the end the upper directory is handed
//! to the kernel's overlayfs, which must show the same tree as the reference directory.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn lower_tree(root: &Path) {
    for d in ["a", "a/b", "a/b/c", "d", "e"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    for (i, f) in ["f1", "a/f2", "a/b/f3", "a/b/c/f4", "d/f5", "d/f6", "e/f7"]
        .iter()
        .enumerate()
    {
        fs::write(root.join(f), vec![b'a' + i as u8; 1000 * (i + 1)]).unwrap();
    }
    std::os::unix::fs::symlink("f1", root.join("s1")).unwrap();
}

/// All paths below `root` (relative), directories marked.
fn entries(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let p = rel.join(e.file_name());
            let is_dir = e.file_type().unwrap().is_dir();
            if is_dir {
                stack.push(p.clone());
            }
            out.push((p, is_dir));
        }
    }
    out.sort();
    out
}

/// One operation with all its random choices made, so it can be replayed on both trees.
#[derive(Debug, Clone)]
enum Op {
    Create(PathBuf, Vec<u8>),
    WriteAt(PathBuf, u64, Vec<u8>),
    Append(PathBuf, Vec<u8>),
    Truncate(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
    Link(PathBuf, PathBuf),
    Mkdir(PathBuf),
    Rmdir(PathBuf),
    Chmod(PathBuf, u32),
    SetXattr(PathBuf, String, Vec<u8>),
    Symlink(PathBuf, String),
}

fn errno_of(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn apply(root: &Path, op: &Op) -> Result<(), i32> {
    let p = |r: &PathBuf| root.join(r);
    errno_of(match op {
        Op::Create(f, data) => fs::File::options()
            .write(true)
            .create_new(true)
            .open(p(f))
            .and_then(|mut h| h.write_all(data)),
        Op::WriteAt(f, off, data) => fs::File::options()
            .write(true)
            .open(p(f))
            .and_then(|h| h.write_all_at(data, *off)),
        Op::Append(f, data) => fs::File::options()
            .append(true)
            .open(p(f))
            .and_then(|mut h| h.write_all(data)),
        Op::Truncate(f, n) => fs::File::options()
            .write(true)
            .open(p(f))
            .and_then(|h| h.set_len(*n)),
        Op::Rename(a, b) => fs::rename(p(a), p(b)),
        Op::Unlink(f) => fs::remove_file(p(f)),
        Op::Link(a, b) => fs::hard_link(p(a), p(b)),
        Op::Mkdir(d) => fs::create_dir(p(d)),
        Op::Rmdir(d) => fs::remove_dir(p(d)),
        Op::Chmod(f, m) => fs::set_permissions(p(f), fs::Permissions::from_mode(*m)),
        Op::SetXattr(f, k, v) => rustix::fs::lsetxattr(
            p(f).as_path(),
            k.as_str(),
            v,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(std::io::Error::from),
        Op::Symlink(l, t) => std::os::unix::fs::symlink(t, p(l)),
    })
}

fn random_op(rng: &mut StdRng, reference: &Path) -> Op {
    let all = entries(reference);
    let dirs: Vec<PathBuf> = std::iter::once(PathBuf::new())
        .chain(all.iter().filter(|(_, d)| *d).map(|(p, _)| p.clone()))
        .collect();
    let any = |rng: &mut StdRng| -> PathBuf {
        if all.is_empty() {
            return PathBuf::from("f1");
        }
        all[rng.random_range(0..all.len())].0.clone()
    };
    let fresh = |rng: &mut StdRng| -> PathBuf {
        let d = &dirs[rng.random_range(0..dirs.len())];
        // Mostly new names, sometimes names the lower tree uses (whited-out or present).
        const LOWER_NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f1", "f2", "s1"];
        if rng.random_bool(0.3) {
            d.join(LOWER_NAMES[rng.random_range(0..LOWER_NAMES.len())])
        } else {
            d.join(format!("n{}", rng.random_range(0..12)))
        }
    };
    let data = |rng: &mut StdRng| -> Vec<u8> {
        let n = rng.random_range(0..5000);
        (0..n).map(|_| rng.random()).collect()
    };
    match rng.random_range(0..100) {
        0..=11 => Op::Create(fresh(rng), data(rng)),
        12..=21 => Op::WriteAt(any(rng), rng.random_range(0..8000), data(rng)),
        22..=27 => Op::Append(any(rng), data(rng)),
        28..=35 => Op::Truncate(any(rng), rng.random_range(0..6000)),
        36..=49 => {
            let target = if rng.random_bool(0.5) {
                any(rng)
            } else {
                fresh(rng)
            };
            Op::Rename(any(rng), target)
        }
        50..=59 => Op::Unlink(any(rng)),
        60..=64 => Op::Link(any(rng), fresh(rng)),
        65..=72 => Op::Mkdir(fresh(rng)),
        73..=79 => Op::Rmdir(any(rng)),
        80..=86 => Op::Chmod(any(rng), 0o600 + rng.random_range(0..0o177)),
        87..=93 => {
            let v = data(rng);
            Op::SetXattr(
                any(rng),
                format!("user.k{}", rng.random_range(0..3)),
                v[..v.len().min(10)].to_vec(),
            )
        }
        _ => Op::Symlink(fresh(rng), format!("t{}", rng.random_range(0..5))),
    }
}

fn run_seed(seed: u64, steps: usize, kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(lower_tree, kind);
    let reference = fx.tmp.path().join("reference");
    let out = Command::new("cp")
        .arg("-a")
        .arg(&fx.lower_src)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut succeeded = 0;
    for step in 0..steps {
        let op = random_op(&mut rng, &reference);
        let want = apply(&reference, &op);
        succeeded += usize::from(want.is_ok());
        let got = apply(&fx.mnt, &op);
        assert_eq!(
            got, want,
            "seed {seed} step {step}: {op:?}: overlay vs plain dir"
        );
        if step % 100 == 99 || step + 1 == steps {
            assert_same(
                &manifest(&reference, ManifestOpts::no_times()),
                &manifest(&fx.mnt, ManifestOpts::no_times()),
                &format!("seed {seed} after step {step}"),
            );
        }
    }
    // The sequence must mostly do something, not fail identically on both sides.
    assert!(
        succeeded * 2 > steps,
        "seed {seed}: only {succeeded}/{steps} operations succeeded"
    );
    eprintln!("seed {seed}: {succeeded}/{steps} operations succeeded");
    // Same tree after a remount, and through the kernel's overlayfs.
    fx.remount_overlay();
    let want = manifest(&reference, ManifestOpts::no_times());
    assert_same(
        &want,
        &manifest(&fx.mnt, ManifestOpts::no_times()),
        &format!("seed {seed} after remount"),
    );
    let k = fx.kernel_manifest();
    assert_same(
        &want,
        &Manifest {
            tree: k.tree,
            opts: ManifestOpts::no_times(),
        },
        &format!("seed {seed}: kernel overlay"),
    );
}

#[test]
fn random_ops_seed_1_image() {
    run_seed(1, 1500, LowerKind::Image);
}

#[test]
fn random_ops_seed_2_image() {
    run_seed(2, 1500, LowerKind::Image);
}

#[test]
fn random_ops_seed_3_kernel_dir() {
    run_seed(3, 1500, LowerKind::KernelDir);
}

/// Soak mode: `SQUASHBOX_OVERLAY_SOAK=N` runs N more seeds (image lowers) on top of the fixed
/// ones; the default test run does only the fixed seeds.
#[test]
fn random_ops_soak_from_env() {
    let n: u64 = std::env::var("SQUASHBOX_OVERLAY_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for seed in 100..100 + n {
        run_seed(seed, 1500, LowerKind::Image);
    }
}
