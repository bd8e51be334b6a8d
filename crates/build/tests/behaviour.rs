//! Builder behaviour: determinism, `--gitignore` against real git, excludes, unreadable files,
//! and never leaving a partial image behind.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use squashbox_build::{build_image, BuildError, BuildOptions};
use squashbox_format::{Archive, FileType};
use squashbox_testkit::{
    content_bytes, require_root, require_tool, run_with_timeout, skip_or_fail, EdgeTree,
    EdgeTreeOptions, MountGuard, DEFAULT_TIMEOUT,
};

/// Every path in an image (relative, `/`-separated) with its type.
fn image_paths(image: &Path) -> BTreeSet<(Vec<u8>, bool)> {
    let archive = Archive::open_path(image).unwrap();
    let mut out = BTreeSet::new();
    let mut stack = vec![(archive.root().unwrap(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in archive.read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&entry.name);
            let is_dir = entry.file_type == FileType::Directory;
            out.insert((path.clone(), is_dir));
            if is_dir {
                stack.push((archive.inode(entry.inode_ref).unwrap(), path));
            }
        }
    }
    out
}

fn files_of(paths: &BTreeSet<(Vec<u8>, bool)>) -> BTreeSet<Vec<u8>> {
    paths
        .iter()
        .filter(|(_, d)| !d)
        .map(|(p, _)| p.clone())
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, data).unwrap();
}

#[test]
fn one_thread_and_many_threads_give_identical_images() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let tree = EdgeTreeOptions {
        big_dir: true,
        big_dir_entries: 3000,
        symlink_hard_link: true,
        ..EdgeTreeOptions::cheap()
    };
    EdgeTree::create(&src, &tree).unwrap();
    // Many small files and tails so fragments fill and close concurrently with data blocks.
    for i in 0..500 {
        write(
            &src.join(format!("many/f{i:04}")),
            &content_bytes(i as u64, 100 + i * 37, i % 3 == 0),
        );
    }
    let mut images = Vec::new();
    for threads in [1, 2, 7] {
        let image = tmp.path().join(format!("t{threads}.sqfs"));
        let opts = BuildOptions {
            block_size: 4096,
            threads: Some(threads),
            ..BuildOptions::default()
        };
        build_image(&src, &image, &opts).unwrap();
        images.push(fs::read(&image).unwrap());
    }
    assert!(images[0] == images[1], "1 vs 2 threads differ");
    assert!(images[0] == images[2], "1 vs 7 threads differ");
}

fn git(repo: &Path, home: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn gitignore_matches_git_ls_files() {
    if !require_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    let repo = tmp.path().join("repo");
    fs::create_dir(&repo).unwrap();
    git(&repo, &home, &["init", "-q"]);
    write(
        &repo.join(".gitignore"),
        b"# comment\n*.log\n!keep.log\nbuild/\n/rootonly\ncache\ndocs/*.html\n!docs/index.html\n",
    );
    write(
        &repo.join("sub/.gitignore"),
        b"*.tmp\n!important.tmp\n/local_only\n",
    );
    write(&repo.join("sub/deeper/.gitignore"), b"!*.log\n");
    write(&repo.join(".git/info/exclude"), b"secret*\n");
    for path in [
        "a.txt",
        "x.log",
        "keep.log",
        "tracked.log",
        "rootonly",
        "sub/rootonly",
        "sub/x.tmp",
        "sub/important.tmp",
        "sub/local_only",
        "sub/deeper/local_only",
        "sub/deeper/y.log",
        "sub/deeper/z.tmp",
        "build/out.o",
        "build/tracked.o",
        "build/nested/more.o",
        "sub/build/out.o",
        "cache/data",
        "sub/cache",
        "docs/page.html",
        "docs/index.html",
        "docs/readme.md",
        "secret.key",
        "sub/secret2",
        ".hidden",
        "build2/only/ignored.log",
    ] {
        write(&repo.join(path), path.as_bytes());
    }
    std::os::unix::fs::symlink("a.txt", repo.join("link.log")).unwrap();
    git(
        &repo,
        &home,
        &["add", "-f", "tracked.log", "build/tracked.o", "a.txt"],
    );

    let ignored_raw = git(
        &repo,
        &home,
        &["ls-files", "-z", "--others", "-i", "--exclude-standard"],
    );
    let ignored: BTreeSet<Vec<u8>> = ignored_raw
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert!(ignored.contains(&b"x.log"[..]), "git sanity: {ignored:?}");
    assert!(!ignored.contains(&b"tracked.log"[..]));

    let all = files_of(&{
        let mut set = BTreeSet::new();
        let mut stack = vec![(repo.clone(), Vec::new())];
        while let Some((dir, rel)) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let mut p: Vec<u8> = rel.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(e.file_name().as_bytes());
                let is_dir = e.file_type().unwrap().is_dir();
                set.insert((p.clone(), is_dir));
                if is_dir {
                    stack.push((e.path(), p));
                }
            }
        }
        set
    });
    let expected: BTreeSet<Vec<u8>> = all.difference(&ignored).cloned().collect();

    let image = tmp.path().join("repo.sqfs");
    let opts = BuildOptions {
        gitignore: true,
        ..BuildOptions::default()
    };
    build_image(&repo, &image, &opts).unwrap();
    let paths = image_paths(&image);
    let got = files_of(&paths);
    let missing: Vec<_> = expected
        .difference(&got)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let extra: Vec<_> = got
        .difference(&expected)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    // Ignored directories are pruned; an ignored directory holding a tracked file is kept;
    // a directory that is not ignored itself stays even when all its files are ignored.
    assert!(paths.contains(&(b"build2/only".to_vec(), true)));
    assert!(!paths.contains(&(b"cache".to_vec(), true)));
    assert!(paths.contains(&(b"build".to_vec(), true)));
    assert!(!paths.contains(&(b"build/nested".to_vec(), true)));

    // A subdirectory of the work tree as the source still obeys the root rules.
    let sub_image = tmp.path().join("sub.sqfs");
    build_image(&repo.join("sub"), &sub_image, &opts).unwrap();
    let sub_got = files_of(&image_paths(&sub_image));
    let sub_expected: BTreeSet<Vec<u8>> = expected
        .iter()
        .filter_map(|p| p.strip_prefix(&b"sub/"[..]).map(<[u8]>::to_vec))
        .collect();
    assert_eq!(sub_got, sub_expected);

    // Outside a work tree --gitignore excludes nothing.
    let plain = tmp.path().join("plain");
    write(&plain.join(".gitignore"), b"*\n");
    write(&plain.join("x.log"), b"x");
    let plain_image = tmp.path().join("plain.sqfs");
    build_image(&plain, &plain_image, &opts).unwrap();
    assert_eq!(
        files_of(&image_paths(&plain_image)),
        [b".gitignore".to_vec(), b"x.log".to_vec()]
            .into_iter()
            .collect()
    );
}

#[test]
fn exclude_patterns_use_gitignore_syntax() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for path in [
        "keep.c",
        "drop.o",
        "sub/drop.o",
        "sub/keep.c",
        "top_only",
        "sub/top_only",
        "logs/a",
        "sub/logs/b",
        "important.o",
    ] {
        write(&src.join(path), b"x");
    }
    let image = tmp.path().join("img.sqfs");
    let opts = BuildOptions {
        excludes: vec![
            "*.o".into(),
            "!important.o".into(),
            "/top_only".into(),
            "logs/".into(),
        ],
        ..BuildOptions::default()
    };
    build_image(&src, &image, &opts).unwrap();
    let expected: BTreeSet<Vec<u8>> = ["keep.c", "sub/keep.c", "sub/top_only", "important.o"]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    assert_eq!(files_of(&image_paths(&image)), expected);

    let bad = BuildOptions {
        excludes: vec!["[z-a]".into()],
        ..BuildOptions::default()
    };
    assert!(matches!(
        build_image(&src, &tmp.path().join("bad.sqfs"), &bad),
        Err(BuildError::InvalidOptions(_))
    ));
    assert!(!tmp.path().join("bad.sqfs").exists());
}

/// No temporary or partial file may remain in `dir` (besides the listed names).
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "contents of {}", dir.display());
}

/// Root bypasses permission checks, so unreadable files are made real by building from a
/// thread whose file-system uid is an unprivileged user: `setfsuid` is per thread on Linux and
/// clears CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH for that thread; the build's worker threads are
/// created by it and inherit the same credentials.
fn build_as_nobody(
    source: PathBuf,
    dest: PathBuf,
    options: BuildOptions,
) -> Result<squashbox_build::BuildSummary, BuildError> {
    std::thread::spawn(move || {
        // SAFETY: setfsuid/setfsgid only change this thread's file-system credentials.
        unsafe {
            libc::setfsgid(65534);
            libc::setfsuid(65534);
        }
        build_image(&source, &dest, &options)
    })
    .join()
    .unwrap()
}

#[test]
fn unreadable_paths_are_all_listed_or_skipped() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = tmp.path().join("src");
    write(&src.join("ok.txt"), b"fine");
    write(&src.join("secret1"), b"no");
    write(&src.join("dir/secret2"), b"no");
    write(&src.join("closed/inside"), b"hidden");
    write(&src.join("dir/ok2"), b"fine");
    for p in ["secret1", "dir/secret2"] {
        fs::set_permissions(src.join(p), fs::Permissions::from_mode(0o000)).unwrap();
    }
    fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();

    let image = out.join("img.sqfs");
    let err = build_as_nobody(src.clone(), image.clone(), BuildOptions::default()).unwrap_err();
    let BuildError::Unreadable { paths } = &err else {
        panic!("expected Unreadable, got {err}");
    };
    let listed: BTreeSet<PathBuf> = paths.iter().map(|(p, _)| p.clone()).collect();
    let src = src.canonicalize().unwrap();
    let want: BTreeSet<PathBuf> = [
        src.join("secret1"),
        src.join("dir/secret2"),
        src.join("closed"),
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, want, "{err}");
    assert!(err.to_string().contains("secret2"));
    assert_only(&out, &[]);

    let opts = BuildOptions {
        skip_unreadable: true,
        ..BuildOptions::default()
    };
    let summary = build_as_nobody(src.clone(), image.clone(), opts).unwrap();
    let skipped: BTreeSet<PathBuf> = summary.skipped.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(skipped, want);
    let got = files_of(&image_paths(&image));
    let expected: BTreeSet<Vec<u8>> = ["ok.txt", "dir/ok2"]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    assert_eq!(got, expected);
    assert!(!image_paths(&image).contains(&(b"closed".to_vec(), true)));
}

/// Run `mount ARGS.. DIR` and guard the new mount on `dir` (unmounted on drop).
fn mount(args: &[&OsStr], dir: &Path) -> MountGuard {
    let mut cmd = Command::new("mount");
    cmd.args(args).arg(dir);
    let out = run_with_timeout(&mut cmd, DEFAULT_TIMEOUT).unwrap();
    assert!(out.success(), "mount {args:?}: {}", out.describe());
    MountGuard::kernel(dir)
}

#[test]
fn read_only_destination_fails_cleanly() {
    if !require_root() || !require_tool("mount") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("f"), b"data");
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let _guard = mount(
        &[
            OsStr::new("-t"),
            OsStr::new("tmpfs"),
            OsStr::new("-o"),
            OsStr::new("ro,size=1m"),
            OsStr::new("tmpfs"),
        ],
        &ro,
    );
    let err = build_image(&src, &ro.join("img.sqfs"), &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, BuildError::Output { .. }), "{err}");
    assert_only(&ro, &[]);
}

#[test]
fn file_shrinking_mid_build_fails_and_keeps_old_image() {
    if !require_root() || !require_tool("mount") {
        return;
    }
    // A sysfs attribute claims 4096 bytes but reads far fewer: bind-mounted into the source it
    // behaves like a file truncated after the walk, failing the build in the data phase.
    let Some(shrinking) = [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/profiling",
        "/sys/power/state",
    ]
    .iter()
    .map(Path::new)
    .find(|p| {
        fs::metadata(p).is_ok_and(|m| m.len() == 4096) && fs::read(p).is_ok_and(|d| d.len() < 4096)
    }) else {
        skip_or_fail("a sysfs file whose read is shorter than its size");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a_first"), &content_bytes(1, 300_000, false));
    write(&src.join("shrinks"), b"");
    write(&src.join("z_last"), b"after");
    let _guard = mount(
        &[OsStr::new("--bind"), shrinking.as_os_str()],
        &src.join("shrinks"),
    );
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let image = out.join("img.sqfs");
    fs::write(&image, b"previous image").unwrap();
    let err = build_image(&src, &image, &BuildOptions::default()).unwrap_err();
    let BuildError::Unreadable { paths } = &err else {
        panic!("expected Unreadable, got {err}");
    };
    assert_eq!(paths.len(), 1, "{err}");
    assert!(paths[0].0.ends_with("shrinks"));
    assert!(paths[0].1.contains("shrank"), "{err}");
    assert_eq!(fs::read(&image).unwrap(), b"previous image");
    assert_only(&out, &["img.sqfs"]);
}

#[test]
fn bad_options_and_sources_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("img.sqfs");
    let bad_block = BuildOptions {
        block_size: 3000,
        ..BuildOptions::default()
    };
    assert!(matches!(
        build_image(tmp.path(), &image, &bad_block),
        Err(BuildError::InvalidOptions(_))
    ));
    assert!(matches!(
        build_image(
            &tmp.path().join("missing"),
            &image,
            &BuildOptions::default()
        ),
        Err(BuildError::Source { .. })
    ));
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        build_image(&file, &image, &BuildOptions::default()),
        Err(BuildError::Source { .. })
    ));
    assert!(!image.exists());
}

#[test]
fn image_inside_the_source_is_not_packed_into_itself() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("data"), b"payload");
    let image = tmp.path().join("self.sqfs");
    build_image(tmp.path(), &image, &BuildOptions::default()).unwrap();
    assert_eq!(
        files_of(&image_paths(&image)),
        [b"data".to_vec()].into_iter().collect()
    );
}
