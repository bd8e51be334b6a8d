//! Hostile images: truncations at many offsets and thousands of deterministic random bit
//! flips of real mksquashfs images. For each damaged image:
//!
//! - `squashbox extract` exits 0 or 1: never by a signal (crash, or abort on a huge allocation
//!   under a 2 GiB address-space limit), never with a Rust panic (101), never past a timeout;
//! - on failure nothing exists at DEST, and nothing outside DEST changed (a canary dir beside
//!   it must stay exactly as it was);
//! - on success the extracted tree equals what the library walk reports for the same image
//!   (when the walk succeeds too; see the note in `check_one`);
//! - a truncation that keeps all `bytes_used` bytes extracts exactly the source; any shorter
//!   one fails;
//! - the library walk (`Archive::walk` + reading every file, link and xattr) in-process returns
//!   `Ok` or `Err`, never panics, and finishes within a timeout.
//!
//! `SQUASHBOX_HOSTILE_FLIPS` sets the number of bit-flip runs per image (default 700).

mod common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use squashbox_format::Archive;
use squashbox_testkit::manifest::diff;
use squashbox_testkit::{
    mksquashfs, require_squashbox_bin, require_tool, run_with_timeout, sys, DiffOptions, Manifest,
};

use common::manifest_of_image;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const ADDRESS_SPACE_LIMIT: u64 = 2 << 30;
const MAX_REPORTED: usize = 25;

/// A small tree touching every table: several blocks per file at 4 KiB, fragments, hard
/// links, symlinks, xattrs, a fifo, sparse blocks, an extended directory index.
fn make_source(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::create_dir_all(root.join("many")).unwrap();
    let mut seed = 1u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 3 == 0 {
                    b'a' + (i % 7) as u8
                } else {
                    (seed >> 56) as u8
                }
            })
            .collect()
    };
    fs::write(root.join("multi_block"), bytes(4096 * 5 + 123)).unwrap();
    fs::write(root.join("dir/small"), bytes(700)).unwrap();
    fs::write(root.join("dir/sub/tail"), bytes(4096 + 1000)).unwrap();
    fs::write(root.join("dir/text"), "hello world\n".repeat(500)).unwrap();
    fs::write(root.join("dup_a"), bytes(9000)).unwrap();
    fs::copy(root.join("dup_a"), root.join("dir/dup_b")).unwrap();
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(4096 * 6).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"island", 4096 * 3).unwrap();
    fs::hard_link(root.join("dir/small"), root.join("dir/sub/small_link")).unwrap();
    std::os::unix::fs::symlink("dir/small", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../../multi_block", root.join("dir/sub/up")).unwrap();
    sys::mkfifo(&root.join("fifo"), 0o644).unwrap();
    for i in 0..300 {
        fs::write(root.join(format!("many/entry_{i:03}")), [i as u8]).unwrap();
    }
    sys::lsetxattr(&root.join("dir/small"), b"user.note", b"value").unwrap();
    sys::lsetxattr(&root.join("dir/text"), b"user.note", b"value").unwrap();
    sys::lsetxattr(&root.join("dir"), b"user.big", &[7u8; 2000]).unwrap();
    // Fixed mtimes, children first, so the image is reproducible byte for byte.
    let m = Manifest::scan(root).unwrap();
    for path in m.entries.keys().rev() {
        let p = if path.is_empty() {
            root.to_path_buf()
        } else {
            root.join(std::str::from_utf8(path).unwrap())
        };
        sys::set_mtime(&p, 1_600_000_000).unwrap();
    }
}

/// Deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// A built base image and what it should extract to.
struct Base {
    name: &'static str,
    image: Vec<u8>,
    bytes_used: u64,
    inode_table: u64,
    /// Table start offsets (for truncations around them).
    tables: Vec<u64>,
    source: Manifest,
}

fn build_base(tmp: &Path, name: &'static str, comp: &str) -> Base {
    let src = tmp.join(format!("src_{name}"));
    make_source(&src);
    let img = tmp.join(format!("{name}.sqsh"));
    mksquashfs(
        &src,
        &img,
        &[
            "-comp",
            comp,
            "-b",
            "4096",
            "-mkfs-time",
            "0",
            "-processors",
            "1",
        ],
    );
    let image = fs::read(&img).unwrap();
    let tables: Vec<u64> = [48, 56, 64, 72, 80, 88]
        .iter()
        .map(|&o| le64(&image, o))
        .filter(|&v| v != u64::MAX)
        .collect();
    Base {
        name,
        bytes_used: le64(&image, 40),
        inode_table: le64(&image, 64),
        tables,
        source: Manifest::scan(&src).unwrap(),
        image,
    }
}

/// Where a run happens: WORK/{img, canary/, dest}.
struct Arena {
    work: PathBuf,
    canary: Manifest,
}

impl Arena {
    fn new(tmp: &Path) -> Arena {
        let work = tmp.join("arena");
        fs::create_dir_all(work.join("canary/inner")).unwrap();
        fs::write(work.join("canary/file"), b"must not change").unwrap();
        fs::write(work.join("canary/inner/file"), b"must not change either").unwrap();
        let canary = Manifest::scan(work.join("canary")).unwrap();
        Arena { work, canary }
    }

    fn img(&self) -> PathBuf {
        self.work.join("img")
    }

    fn dest(&self) -> PathBuf {
        self.work.join("dest")
    }

    /// Check nothing outside DEST changed; then remove DEST.
    fn check_and_reset(&self) -> Result<(), String> {
        let mut names: Vec<_> = fs::read_dir(&self.work)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap_or_default())
            .collect();
        names.sort();
        names.retain(|n| n != "dest");
        let mut problems = Vec::new();
        if names != ["canary", "img"] {
            problems.push(format!("entries appeared beside DEST: {names:?}"));
        }
        match Manifest::scan(self.work.join("canary")) {
            Ok(now) => {
                let d = diff(&self.canary, &now, &DiffOptions::default());
                if !d.is_empty() {
                    problems.push(format!("canary changed: {}", d[0]));
                }
            }
            Err(e) => problems.push(format!("canary unreadable: {e}")),
        }
        let dest = self.dest();
        if fs::symlink_metadata(&dest).is_ok() {
            // Extraction sets odd modes (0000 dirs); make it removable.
            let _ = Command::new("chmod")
                .args(["-R", "u+rwx"])
                .arg(&dest)
                .status();
            if fs::remove_dir_all(&dest).is_err() {
                let _ = fs::remove_file(&dest);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The library walk of `image` in a worker thread: `Ok(Ok(manifest))`, `Ok(Err(reader
/// error))`, or `Err(problem)` for a panic or a timeout.
fn library_walk(image: Vec<u8>) -> Result<Result<Manifest, String>, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| {
            Archive::open(image)
                .and_then(|a| manifest_of_image(&a))
                .map_err(|e| e.to_string())
        }));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(p)) => Err(format!(
            "library walk panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
        Err(_) => Err(format!("library walk hung (> {RUN_TIMEOUT:?})")),
    }
}

/// What a damaged image must satisfy; `expect_exact` = it must extract to exactly `source`.
fn check_one(bin: &Path, arena: &Arena, image: &[u8], expect: Expect<'_>) -> Result<(), String> {
    fs::write(arena.img(), image).unwrap();
    let walked = library_walk(image.to_vec())?;
    let mut cmd = Command::new(bin);
    cmd.arg("extract").arg(arena.img()).arg(arena.dest());
    sys::limit_address_space(&mut cmd, ADDRESS_SPACE_LIMIT);
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap();
    let mut problems = Vec::new();
    if out.timed_out() {
        problems.push(format!("squashbox extract hung (> {RUN_TIMEOUT:?})"));
    } else if let Some(sig) = out.signal() {
        problems.push(format!(
            "squashbox extract died by signal {sig}: {}",
            out.stderr_text().lines().last().unwrap_or("")
        ));
    } else {
        let code = out.status.and_then(|s| s.code()).unwrap_or(-1);
        match code {
            0 => {
                let extracted = Manifest::scan(arena.dest());
                match (&expect, extracted) {
                    (_, Err(e)) => problems.push(format!("extracted tree unreadable: {e}")),
                    (Expect::Fail, Ok(_)) => {
                        problems.push("extraction of a truncated image succeeded".into())
                    }
                    (Expect::Exact(source), Ok(m)) => {
                        let d = diff(source, &m, &DiffOptions::default());
                        if let Some(first) = d.first() {
                            problems.push(format!(
                                "intact image extracted wrongly ({} differences, first: {first})",
                                d.len()
                            ));
                        }
                    }
                    (Expect::Consistent, Ok(m)) => match &walked {
                        Ok(lib) => {
                            let d = diff(lib, &m, &DiffOptions::default());
                            if let Some(first) = d.first() {
                                problems.push(format!(
                                    "extraction differs from the library walk ({} \
                                     differences, first: {first})",
                                    d.len()
                                ));
                            }
                        }
                        // The extractor checks every link as the walk does (entry_inode),
                        // so it must not accept an image the walk rejects.
                        Err(e) => problems.push(format!(
                            "extraction succeeded but the library walk failed: {e}"
                        )),
                    },
                }
            }
            1 => {
                if fs::symlink_metadata(arena.dest()).is_ok() {
                    problems.push("failed extraction left DEST behind".into());
                }
                if !out.stderr_text().starts_with("squashbox: ") {
                    problems.push(format!(
                        "error message is not one `squashbox: ...` line: {:?}",
                        out.stderr_text()
                    ));
                }
                if let Expect::Exact(_) = expect {
                    problems.push(format!(
                        "intact image failed to extract: {}",
                        out.stderr_text().trim()
                    ));
                }
            }
            other => problems.push(format!(
                "squashbox extract exited {other} (101 = panic): {}",
                out.stderr_text().trim()
            )),
        }
    }
    if let Err(e) = arena.check_and_reset() {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

enum Expect<'a> {
    /// Must extract to exactly this tree.
    Exact(&'a Manifest),
    /// Must fail.
    Fail,
    /// Either fails, or extracts what the library walk reports.
    Consistent,
}

fn prerequisites() -> Option<PathBuf> {
    if !require_tool("mksquashfs") {
        return None;
    }
    let bin = require_squashbox_bin()?;
    Some(bin)
}

fn report(base: &str, failures: Vec<String>, runs: usize) {
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(MAX_REPORTED).collect();
        panic!(
            "{base}: {} of {runs} damaged images mishandled:\n  {}",
            failures.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    eprintln!("{base}: {runs} damaged images handled");
}

fn truncations(comp: &str, name: &'static str) {
    let Some(bin) = prerequisites() else { return };
    let tmp = squashbox_testkit::tempfile::tempdir().unwrap();
    let base = build_base(tmp.path(), name, comp);
    let arena = Arena::new(tmp.path());
    let len = base.image.len() as u64;
    let mut offsets: Vec<u64> = (0..100).map(|i| len * i / 100).collect();
    offsets.extend([1, 4, 95, 96, 97, 100, base.bytes_used - 1, base.bytes_used]);
    offsets.extend([base.bytes_used + 1, len - 1, len]);
    for &t in &base.tables {
        offsets.extend([t.saturating_sub(1), t, t + 1, t + 2, t + 8]);
    }
    offsets.retain(|&o| o <= len);
    offsets.sort();
    offsets.dedup();
    let mut failures = Vec::new();
    for &cut in &offsets {
        let expect = if cut >= base.bytes_used {
            Expect::Exact(&base.source)
        } else {
            Expect::Fail
        };
        if let Err(e) = check_one(&bin, &arena, &base.image[..cut as usize], expect) {
            failures.push(format!("truncated to {cut} of {len} bytes: {e}"));
        }
    }
    report(base.name, failures, offsets.len());
}

fn bit_flips(comp: &str, name: &'static str, seed: u64) {
    let Some(bin) = prerequisites() else { return };
    let runs: usize = std::env::var("SQUASHBOX_HOSTILE_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(700);
    let tmp = squashbox_testkit::tempfile::tempdir().unwrap();
    let base = build_base(tmp.path(), name, comp);
    let arena = Arena::new(tmp.path());
    // The intact image is the reference: it must extract exactly.
    check_one(&bin, &arena, &base.image, Expect::Exact(&base.source))
        .unwrap_or_else(|e| panic!("{name}: intact image: {e}"));
    let used = base.bytes_used;
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    for run in 0..runs {
        let mut image = base.image.clone();
        let flips = 1 + rng.below(3);
        let mut what = Vec::new();
        for _ in 0..flips {
            // Bias towards the superblock and the metadata tables, where structure lives.
            let pos = match rng.below(10) {
                0 => rng.below(96),
                1..=5 => base.inode_table + rng.below(used - base.inode_table),
                _ => rng.below(used),
            } as usize;
            let bit = rng.below(8) as u8;
            image[pos] ^= 1 << bit;
            what.push(format!("{pos}.{bit}"));
        }
        if let Err(e) = check_one(&bin, &arena, &image, Expect::Consistent) {
            failures.push(format!(
                "run {run} (seed {seed}), flipped byte.bit {}: {e}",
                what.join(",")
            ));
        }
    }
    report(base.name, failures, runs);
}

#[test]
fn truncated_gzip_images() {
    truncations("gzip", "gzip");
}

#[test]
fn truncated_zstd_images() {
    truncations("zstd", "zstd");
}

#[test]
fn bit_flipped_gzip_images() {
    bit_flips("gzip", "gzip", 0x5eed_0001);
}

#[test]
fn bit_flipped_zstd_images() {
    bit_flips("zstd", "zstd", 0x5eed_0002);
}

#[test]
fn bit_flipped_xz_images() {
    bit_flips("xz", "xz", 0x5eed_0003);
}
