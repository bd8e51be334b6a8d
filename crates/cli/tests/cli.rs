//! End-to-end tests of the `squashbox` binary: info/ls/cat/extract against mksquashfs images,
//! with `unsquashfs -s` / `unsquashfs -lln` and the source tree as oracles, plus the error
//! convention (one line `squashbox: ...`, exit 1; usage errors exit 2).

#[path = "../../extract/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::list_names;
use squashbox_testkit::{assert_trees_equal, is_root, mksquashfs, require_tool, DiffOptions};

const BIN: &str = env!("CARGO_BIN_EXE_squashbox");

fn squashbox(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run squashbox")
}

fn sb<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let v: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    squashbox(&v)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// The error convention: exactly one line on stderr, prefixed `squashbox: `.
fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("squashbox: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

fn tools_ok() -> bool {
    require_tool("mksquashfs") && require_tool("unsquashfs")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    src: PathBuf,
    image: PathBuf,
}

/// A simple tree (names without spaces so `unsquashfs -lln` output can be split on spaces).
fn fixture(extra: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let src = dir.join("src");
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::write(src.join("small"), b"hello\n").unwrap();
    rustix::fs::lsetxattr(
        src.join("small"),
        "user.note",
        b"xattr value",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(src.join("dir/big"), &big).unwrap();
    fs::write(src.join("dir/sub/leaf"), b"leaf").unwrap();
    fs::hard_link(src.join("small"), src.join("dir/small_link")).unwrap();
    std::os::unix::fs::symlink("../small", src.join("dir/up_link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::write(src.join("suid"), b"x").unwrap();
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4711)).unwrap();
    fs::create_dir(src.join("tmpdir")).unwrap();
    fs::set_permissions(src.join("tmpdir"), fs::Permissions::from_mode(0o1777)).unwrap();
    if is_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        std::os::unix::fs::lchown(src.join("dir/sub/leaf"), Some(1001), Some(2002)).unwrap();
    }
    let image = dir.join("image.sqfs");
    mksquashfs(&src, &image, extra);
    Fixture {
        _tmp: tmp,
        dir,
        src,
        image,
    }
}

/// `unsquashfs -s` "Key value" lines of interest.
fn unsquashfs_stats(image: &Path) -> BTreeMap<String, u64> {
    let out = Command::new("unsquashfs")
        .arg("-s")
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut m = BTreeMap::new();
    for line in text.lines() {
        for key in [
            "Filesystem size",
            "Block size",
            "Number of fragments",
            "Number of inodes",
            "Number of ids",
        ] {
            if let Some(rest) = line.strip_prefix(key) {
                let n: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
                m.insert(key.to_string(), n);
            }
        }
    }
    m
}

#[test]
fn info_json_matches_unsquashfs_and_tables_tile_the_image() {
    if !tools_ok() {
        return;
    }
    for comp in ["gzip", "xz", "zstd", "lz4"] {
        let f = fixture(&["-comp", comp, "-b", "65536"]);
        let o = sb(&[
            BIN.as_ref(),
            "info".as_ref(),
            f.image.as_os_str(),
            "--json".as_ref(),
        ][1..]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let stats = unsquashfs_stats(&f.image);
        assert_eq!(v["compressor"], comp);
        assert_eq!(v["version"], "4.0");
        assert_eq!(v["block_size"].as_u64(), Some(stats["Block size"]));
        assert_eq!(v["block_size"].as_u64(), Some(65536));
        assert_eq!(v["block_log"].as_u64(), Some(16));
        assert_eq!(v["bytes_used"].as_u64(), Some(stats["Filesystem size"]));
        assert_eq!(v["inode_count"].as_u64(), Some(stats["Number of inodes"]));
        assert_eq!(
            v["fragment_count"].as_u64(),
            Some(stats["Number of fragments"])
        );
        assert_eq!(v["id_count"].as_u64(), Some(stats["Number of ids"]));
        if comp == "lz4" {
            assert!(
                v["compressor_options"].is_object(),
                "lz4 always stores options"
            );
            assert!(v["flag_names"]
                .as_array()
                .unwrap()
                .contains(&"compressor-options".into()));
        }
        // mksquashfs writes the tables back to back, in order, up to bytes_used.
        let tables = v["tables"].as_array().unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["inode", "directory", "fragment", "export", "id", "xattr"]
        );
        assert_eq!(v["xattr_id_count"].as_u64(), Some(1));
        assert_eq!(v["table_starts"]["inode_table"], tables[0]["start"]);
        for pair in tables.windows(2) {
            let end = pair[0]["start"].as_u64().unwrap() + pair[0]["size"].as_u64().unwrap();
            assert_eq!(end, pair[1]["start"].as_u64().unwrap(), "{comp}: {pair:?}");
        }
        let last = tables.last().unwrap();
        assert_eq!(
            last["start"].as_u64().unwrap() + last["size"].as_u64().unwrap(),
            stats["Filesystem size"],
            "{comp}"
        );
        // The text form carries the same facts.
        let text = stdout(&sb(&["info".as_ref(), f.image.as_os_str()]));
        assert!(
            text.contains(&format!("Compressor:         {comp}")),
            "{text}"
        );
        assert!(text.contains(&format!("Bytes used:         {}", stats["Filesystem size"])));
    }
}

/// Parsed `-l` fields: mode, uid, gid, size-or-device, target.
type LongEntry = (String, u32, u32, String, Option<String>);

fn parse_unsquashfs_lln(image: &Path) -> BTreeMap<String, LongEntry> {
    let out = Command::new("unsquashfs")
        .env("TZ", "UTC")
        .arg("-lln")
        .arg(image)
        .output()
        .unwrap();
    let mut m = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (ids, rest) = (f[1], &f[2..]);
        let (uid, gid) = ids.split_once('/').unwrap();
        let (size, rest) = if f[0].starts_with(['c', 'b']) {
            (format!("{} {}", rest[0], rest[1]), &rest[2..])
        } else {
            (rest[0].to_string(), &rest[1..])
        };
        let path = rest[2].strip_prefix("squashfs-root").unwrap().to_string();
        let target = (rest.len() > 4).then(|| rest[4].to_string());
        m.insert(
            if path.is_empty() { "/".into() } else { path },
            (
                f[0].to_string(),
                uid.parse().unwrap(),
                gid.parse().unwrap(),
                size,
                target,
            ),
        );
    }
    m
}

/// Parse `squashbox ls -l -R` output into path -> fields, plus path -> nlink.
fn parse_ours(text: &str) -> (BTreeMap<String, LongEntry>, BTreeMap<String, u32>) {
    let mut m = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut dir = String::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_suffix(':') {
            if !line.starts_with(['-', 'd', 'l', 'c', 'b', 'p', 's']) || h.starts_with('/') {
                dir = h.trim_end_matches('/').to_string();
                continue;
            }
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (size, rest) = if f[0].starts_with(['c', 'b']) {
            (format!("{} {}", f[4], f[5]), &f[6..])
        } else {
            (f[4].to_string(), &f[5..])
        };
        let path = format!("{dir}/{}", rest[2]);
        let target = (rest.len() > 4).then(|| rest[4].to_string());
        links.insert(path.clone(), f[1].parse().unwrap());
        m.insert(
            path,
            (
                f[0].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                size,
                target,
            ),
        );
    }
    (m, links)
}

#[test]
fn ls_long_recursive_matches_unsquashfs_lln_and_source_nlink() {
    if !tools_ok() {
        return;
    }
    let f = fixture(&[]);
    let o = sb(&[
        "ls".as_ref(),
        "-l".as_ref(),
        "-R".as_ref(),
        f.image.as_os_str(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (ours, nlinks) = parse_ours(&stdout(&o));
    let mut theirs = parse_unsquashfs_lln(&f.image);
    theirs.remove("/"); // the root itself is not an entry of any listing
    assert_eq!(ours, theirs);
    assert!(ours.contains_key("/dir/sub/leaf"));
    assert_eq!(ours["/suid"].0, "-rws--x--x");
    assert_eq!(ours["/tmpdir"].0, "drwxrwxrwt");
    assert_eq!(ours["/dir/up_link"].4.as_deref(), Some("../small"));
    for (path, n) in nlinks {
        let md = fs::symlink_metadata(f.src.join(path.trim_start_matches('/'))).unwrap();
        if !md.is_dir() {
            assert_eq!(u64::from(n), md.nlink(), "{path}");
        }
    }
}

#[test]
fn ls_short_lists_names_and_single_entries() {
    if !tools_ok() {
        return;
    }
    let f = fixture(&[]);
    let o = sb(&["ls".as_ref(), f.image.as_os_str(), "dir".as_ref()]);
    assert_eq!(stdout(&o), "big\nsmall_link\nsub\nup_link\n");
    let o = sb(&[
        "ls".as_ref(),
        "-l".as_ref(),
        f.image.as_os_str(),
        "/dir/big".as_ref(),
    ]);
    let line = stdout(&o);
    assert!(line.starts_with("-rw-r--r--"), "{line}");
    assert!(line.contains(" 300000 "), "{line}");
    let o = sb(&["ls".as_ref(), f.image.as_os_str(), "nope".as_ref()]);
    assert_one_line_error(&o, 1, "nope");
}

#[test]
fn ls_escapes_control_characters_and_bad_utf8() {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    use std::os::unix::ffi::OsStrExt;
    fs::write(
        src.join(std::ffi::OsStr::from_bytes(b"evil\x1b[2J\nname")),
        b"",
    )
    .unwrap();
    fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xffutf8")), b"").unwrap();
    let image = tmp.path().join("i.sqfs");
    mksquashfs(&src, &image, &[]);
    let o = sb(&["ls".as_ref(), image.as_os_str()]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    assert_eq!(text, "bad\u{fffd}utf8\nevil\\x1b[2J\\nname\n");
}

#[test]
fn cat_streams_files_and_rejects_non_files() {
    if !tools_ok() {
        return;
    }
    let f = fixture(&["-b", "4096"]);
    for p in ["dir/big", "small", "/dir/sub/leaf"] {
        let o = sb(&["cat".as_ref(), f.image.as_os_str(), p.as_ref()]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(
            o.stdout,
            fs::read(f.src.join(p.trim_start_matches('/'))).unwrap(),
            "{p}"
        );
    }
    let o = sb(&["cat".as_ref(), f.image.as_os_str(), "dir".as_ref()]);
    assert_one_line_error(&o, 1, "dir: not a regular file");
    let o = sb(&["cat".as_ref(), f.image.as_os_str(), "dir/up_link".as_ref()]);
    assert_one_line_error(&o, 1, "not a regular file");
    let o = sb(&["cat".as_ref(), f.image.as_os_str(), "missing".as_ref()]);
    assert_one_line_error(&o, 1, "missing");
}

#[test]
fn cat_into_closed_pipe_exits_quietly() {
    if !tools_ok() {
        return;
    }
    let f = fixture(&[]);
    let mut child = Command::new(BIN)
        .arg("cat")
        .arg(&f.image)
        .arg("dir/big")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn extract_command_restores_tree_and_follows_error_convention() {
    if !tools_ok() {
        return;
    }
    let f = fixture(&[]);
    let dest = f.dir.join("out");
    let o = sb(&[
        "extract".as_ref(),
        f.image.as_os_str(),
        dest.as_os_str(),
        "--threads".as_ref(),
        "3".as_ref(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Every field, symlink permission bits included; owners only as root.
    let opts = DiffOptions {
        ignore_owners: !is_root(),
        check_symlink_mode: true,
        ..DiffOptions::default()
    };
    assert_trees_equal(&f.src, &dest, &opts);

    // Again into the now non-empty destination: refused, one line, names --force.
    let o = sb(&["extract".as_ref(), f.image.as_os_str(), dest.as_os_str()]);
    assert_one_line_error(&o, 1, "--force");
    // With --force it succeeds and replaces.
    fs::write(dest.join("small"), b"changed").unwrap();
    let o = sb(&[
        "extract".as_ref(),
        f.image.as_os_str(),
        dest.as_os_str(),
        "--force".as_ref(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fs::read(dest.join("small")).unwrap(), b"hello\n");

    // --path extracts a subtree.
    let sub = f.dir.join("sub_out");
    let o = sb(&[
        "extract".as_ref(),
        f.image.as_os_str(),
        sub.as_os_str(),
        "--path".as_ref(),
        "dir/sub".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(list_names(&sub), [b"leaf".to_vec()].into_iter().collect());

    // Usage errors exit 2 with one line.
    let o = sb(&[
        "extract".as_ref(),
        f.image.as_os_str(),
        dest.as_os_str(),
        "--threads".as_ref(),
        "0".as_ref(),
    ]);
    assert_one_line_error(&o, 2, "--threads");
}

#[test]
fn usage_and_io_errors_are_one_line() {
    let o = sb::<&str>(&[]);
    assert_one_line_error(&o, 2, "subcommand");
    let o = sb(&["ls", "--bogus"]);
    assert_one_line_error(&o, 2, "--bogus");
    let o = sb(&["frobnicate"]);
    assert_one_line_error(&o, 2, "frobnicate");
    let o = sb(&["info", "/nonexistent/image.sqfs"]);
    assert_one_line_error(&o, 1, "/nonexistent/image.sqfs");
    // Not an image.
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk");
    fs::write(&junk, vec![7u8; 8192]).unwrap();
    let o = sb(&["ls".as_ref(), junk.as_os_str()]);
    assert_one_line_error(&o, 1, "junk");
    // Help goes to stdout with status 0 and lists the subcommands.
    let o = sb(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for cmd in ["info", "ls", "cat", "extract"] {
        assert!(stdout(&o).contains(cmd), "{cmd}");
    }
}
