//! `--gitignore` against real git, edge by edge: nested and odd patterns, sources below the
//! work-tree root (also inside ignored directories), `core.excludesFile` from every config
//! level, index versions 2/3/4, SHA-256, split and sparse indexes, linked worktrees,
//! submodules and nested clones, and corrupt indexes.
//!
//! The oracle is always git itself: what a build keeps must be every file below the source
//! minus what `git ls-files --others --ignored --exclude-standard` lists (run in the
//! repository owning each path), or exactly `git ls-files` when everything untracked is
//! ignored. git and the builder both run with `HOME` and `XDG_CONFIG_HOME` pointing into one
//! temporary directory and without system config, so the machine's own git setup plays no
//! part.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use squashbox_build::{build_image, BuildError, BuildOptions};
use squashbox_format::{Archive, FileType};

/// The per-user directories git and the builder share in this test binary.
struct UserDirs {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    xdg: PathBuf,
}

/// Point `HOME`/`XDG_CONFIG_HOME` at fresh directories once, before any test reads them (every
/// test calls this first, so no thread reads the environment while it is being changed).
fn user_dirs() -> &'static UserDirs {
    static DIRS: OnceLock<UserDirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let xdg = tmp.path().join("xdg");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&xdg).unwrap();
        std::env::set_var("HOME", &home);
        std::env::set_var("XDG_CONFIG_HOME", &xdg);
        std::env::set_var("GIT_CONFIG_NOSYSTEM", "1");
        for var in [
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_SYSTEM",
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_COMMON_DIR",
        ] {
            std::env::remove_var(var);
        }
        UserDirs {
            _tmp: tmp,
            home,
            xdg,
        }
    })
}

fn setup() -> bool {
    if !squashbox_testkit::require_tool("git") {
        return false;
    }
    user_dirs();
    true
}

/// Run git in `dir` (environment inherited from [`user_dirs`]); returns stdout.
fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "advice.sparseIndexExpanded=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn nul_list(raw: &[u8]) -> BTreeSet<Vec<u8>> {
    raw.split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut p = a.to_vec();
    p.push(b'/');
    p.extend_from_slice(b);
    p
}

fn show(set: &BTreeSet<Vec<u8>>) -> Vec<String> {
    set.iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Every non-directory entry below `root` (relative paths), and every directory.
fn disk_entries(root: &Path) -> Listing {
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = join(&rel, e.file_name().as_bytes());
            if e.file_type().unwrap().is_dir() {
                dirs.insert(p.clone());
                stack.push((e.path(), p));
            } else {
                files.insert(p);
            }
        }
    }
    (files, dirs)
}

/// Every non-directory entry in an image, and every directory.
fn image_entries(image: &Path) -> Listing {
    let archive = Archive::open_path(image).unwrap();
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    let mut stack = vec![(archive.root().unwrap(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in archive.read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let p = join(&rel, &entry.name);
            if entry.file_type == FileType::Directory {
                dirs.insert(p.clone());
                stack.push((archive.inode(entry.inode_ref).unwrap(), p));
            } else {
                files.insert(p);
            }
        }
    }
    (files, dirs)
}

/// Relative paths of non-directories and of directories.
type Listing = (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>);

fn build(source: &Path) -> Result<Listing, BuildError> {
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("img.sqfs");
    let opts = BuildOptions {
        gitignore: true,
        threads: Some(2),
        ..BuildOptions::default()
    };
    build_image(source, &image, &opts)?;
    Ok(image_entries(&image))
}

/// What git says to leave out below `source`: each of `repos` (work-tree roots at or below
/// `source`, or `source` itself when it lies inside a work tree) lists its ignored paths; a
/// listed directory (trailing `/`, e.g. an ignored nested clone) covers everything below.
fn git_ignored(source: &Path, repos: &[&Path]) -> (BTreeSet<Vec<u8>>, Vec<Vec<u8>>) {
    let mut files = BTreeSet::new();
    let mut dirs = Vec::new();
    for repo in repos {
        let prefix = repo
            .strip_prefix(source)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let raw = git(
            repo,
            &[
                "ls-files",
                "-z",
                "--others",
                "--ignored",
                "--exclude-standard",
            ],
        );
        for p in nul_list(&raw) {
            match p.strip_suffix(b"/") {
                Some(d) => dirs.push(join(&prefix, d)),
                None => {
                    files.insert(join(&prefix, &p));
                }
            }
        }
    }
    (files, dirs)
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && path.get(dir.len()) == Some(&b'/')
}

/// Build `source` and compare its files with git's verdict from `repos`.
#[track_caller]
fn assert_matches_git(source: &Path, repos: &[&Path]) -> BTreeSet<Vec<u8>> {
    let (ignored, ignored_dirs) = git_ignored(source, repos);
    let (all, _) = disk_entries(source);
    let expected: BTreeSet<Vec<u8>> = all
        .iter()
        .filter(|p| !ignored.contains(*p) && !ignored_dirs.iter().any(|d| under(p, d)))
        .cloned()
        .collect();
    let (got, got_dirs) = build(source).unwrap();
    let missing: BTreeSet<_> = expected.difference(&got).cloned().collect();
    let extra: BTreeSet<_> = got.difference(&expected).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: kept by git but missing {:?}; ignored by git but packed {:?}",
        source.display(),
        show(&missing),
        show(&extra)
    );
    for d in &ignored_dirs {
        assert!(!got_dirs.contains(d), "ignored directory {d:?} was packed");
    }
    got_dirs
}

fn init(dir: &Path, extra: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    let mut args = vec!["init", "-q"];
    args.extend_from_slice(extra);
    git(dir, &args);
}

fn index_version(repo: &Path) -> u32 {
    let data = fs::read(repo.join(".git/index")).unwrap();
    u32::from_be_bytes(data[4..8].try_into().unwrap())
}

#[test]
fn nested_and_unusual_patterns_match_git_from_every_directory() {
    if !setup() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    // BOM, CRLF line ends, escaped and trailing spaces, escaped `#`/`!`, character classes,
    // `**` in all positions, anchored and directory-only patterns, and names that also occur
    // inside `.git` (which git never looks into).
    write(
        &repo.join(".gitignore"),
        b"\xef\xbb\xbf# comment\r\n*.log\r\n!keep.log\nbuild/\n/rootonly\ncache\n\
          docs/*.html\n!docs/index.html\n**/gen/**\na/**/z.txt\n*.[oa]\n!lib.a\n\
          trailing\\ \nspaced   \n\\#hash\n\\!bang\nname?.q\ndoc/**/*.pdf\n\
          objects\nHEAD\n*.sample\n!secret-ok\nsymdir/\ntypechg\n",
    );
    write(
        &repo.join("sub/.gitignore"),
        b"*.tmp\n!important.tmp\n/local_only\n!*.log\n",
    );
    // The classic "ignore everything but directories and *.keep".
    write(&repo.join("sub/deeper/.gitignore"), b"*\n!*/\n!*.keep\n");
    write(&repo.join(".git/info/exclude"), b"secret*\n");
    // A symlinked .gitignore is not read by git.
    write(&repo.join("real-ignore"), b"*.pack\n");
    fs::create_dir_all(repo.join("linked")).unwrap();
    std::os::unix::fs::symlink("../real-ignore", repo.join("linked/.gitignore")).unwrap();
    for path in [
        "a.txt",
        "x.log",
        "keep.log",
        "FOO.LOG",
        "tracked.log",
        "rootonly",
        "sub/rootonly",
        "sub/x.tmp",
        "sub/important.tmp",
        "sub/local_only",
        "sub/again.log",
        "sub/deeper/local_only",
        "sub/deeper/y.log",
        "sub/deeper/z.keep",
        "sub/deeper/tracked.txt",
        "sub/deeper/more/w.keep",
        "sub/deeper/more/w.txt",
        "build/out.o",
        "build/tracked.o",
        "build/nested/more.o",
        "build/nested/deep/tracked.c",
        "sub/build/out.o",
        "cache/data",
        "cache/inner/tracked",
        "cache/inner/untracked",
        "sub/cache",
        "docs/page.html",
        "docs/index.html",
        "docs/sub/page.html",
        "x/gen/y/z.c",
        "gen/top.c",
        "a/z.txt",
        "a/b/c/z.txt",
        "lib.a",
        "other.a",
        "obj.o",
        "trailing ",
        "trailing",
        "spaced",
        "#hash",
        "!bang",
        "name1.q",
        "name12.q",
        "doc/x/y/f.pdf",
        "doc/f.pdf",
        "secret.key",
        "secret-ok",
        "sub/secret2",
        "linked/x.pack",
        "objects/o",
        "real/symdir/f",
        ".hidden",
        "build2/only/ignored.log",
    ] {
        write(&repo.join(path), path.as_bytes());
    }
    write(
        &repo.join(std::ffi::OsStr::from_bytes(b"caf\xe9.log")),
        b"x",
    );
    std::os::unix::fs::symlink("a.txt", repo.join("link.log")).unwrap();
    // A symlink to a directory is not a directory for `dir/` patterns.
    std::os::unix::fs::symlink("real/symdir", repo.join("symdir")).unwrap();
    // git never considers fifos or sockets, so it never ignores them.
    let fifo = std::ffi::CString::new(repo.join("pipe.log").as_os_str().as_bytes()).unwrap();
    // SAFETY: `fifo` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    drop(std::os::unix::net::UnixListener::bind(repo.join("sock.log")).unwrap());
    // A tracked file replaced on disk by a directory: untracked to git, so `typechg` ignores
    // the directory and everything in it.
    write(&repo.join("typechg"), b"f");
    git(&repo, &["add", "-f", "typechg"]);
    fs::remove_file(repo.join("typechg")).unwrap();
    write(&repo.join("typechg/inside"), b"x");
    git(
        &repo,
        &[
            "add",
            "-f",
            "tracked.log",
            "build/tracked.o",
            "build/nested/deep/tracked.c",
            "cache/inner/tracked",
            "sub/deeper/tracked.txt",
            "a.txt",
        ],
    );
    // Sanity: the fixture exercises what it claims.
    let (ignored, _) = git_ignored(&repo, &[&repo]);
    for p in [
        "x.log",
        "build/nested/more.o",
        "sub/deeper/more/w.txt",
        "typechg/inside",
        "trailing ",
    ] {
        assert!(ignored.contains(p.as_bytes()), "git does not ignore {p}");
    }
    for p in [
        "linked/x.pack",
        "pipe.log",
        "tracked.log",
        "secret-ok",
        "symdir",
    ] {
        assert!(!ignored.contains(p.as_bytes()), "git ignores {p}");
    }

    let dirs = assert_matches_git(&repo, &[&repo]);
    // Ignored directories are pruned; ignored ones holding tracked files are kept (only
    // down to the tracked files); `.git` is packed whole.
    assert!(dirs.contains(&b"cache/inner"[..]));
    assert!(dirs.contains(&b"build/nested/deep"[..]));
    assert!(!dirs.contains(&b"sub/build"[..]));
    assert!(!dirs.contains(&b"objects"[..]));
    assert!(dirs.contains(&b".git/objects"[..]));
    // From subdirectories, including ones inside ignored directories, git's view from there.
    for sub in [
        "sub",
        "sub/deeper",
        "docs",
        "build",
        "build/nested",
        "cache/inner",
    ] {
        assert_matches_git(&repo.join(sub), &[&repo.join(sub)]);
    }
}

#[test]
fn excludes_file_from_every_config_level() {
    if !setup() {
        return;
    }
    let dirs = user_dirs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    // Names unique to this test: other tests share the user-level files.
    for path in [
        "cfg-xdg.x1",
        "cfg-home.x2",
        "cfg-repo.x3",
        "cfg-neg.x1",
        "cfg-info.x4",
        "sub/cfg-xdg.x1",
        "cfg-tracked.x1",
    ] {
        write(&repo.join(path), b"x");
    }
    git(&repo, &["add", "-f", "cfg-tracked.x1"]);
    // 1. The default: $XDG_CONFIG_HOME/git/ignore (also shows negation order: info/exclude
    // is consulted first, and a .gitignore before that).
    write(&dirs.xdg.join("git/ignore"), b"*.x1\n*.x4\n");
    write(&repo.join(".git/info/exclude"), b"!cfg-info.x4\n");
    write(&repo.join(".gitignore"), b"!cfg-neg.x1\n");
    assert_matches_git(&repo, &[&repo]);
    let (ignored, _) = git_ignored(&repo, &[&repo]);
    assert!(ignored.contains(&b"cfg-xdg.x1"[..]) && !ignored.contains(&b"cfg-info.x4"[..]));

    // 2. A global core.excludesFile with `~/` replaces the default.
    write(&dirs.home.join("cfg-global-ignore"), b"*.x2\n");
    write(
        &dirs.xdg.join("git/config"),
        b"[core]\n\texcludesFile = ~/cfg-global-ignore\n",
    );
    assert_matches_git(&repo, &[&repo]);
    let (ignored, _) = git_ignored(&repo, &[&repo]);
    assert!(ignored.contains(&b"cfg-home.x2"[..]) && !ignored.contains(&b"cfg-xdg.x1"[..]));

    // 3. ~/.gitconfig wins over the XDG config file; quoted value.
    write(&dirs.home.join("cfg-global2"), b"*.x1\n");
    write(
        &dirs.home.join(".gitconfig"),
        b"[core]\n\texcludesfile = \"~/cfg-global2\"\n",
    );
    assert_matches_git(&repo, &[&repo]);

    // 4. The repository's config wins over both; a relative path is relative to the work
    // tree root, also when building a subdirectory.
    write(&repo.join("cfg-repo-ignore"), b"*.x3\n");
    git(&repo, &["config", "core.excludesFile", "cfg-repo-ignore"]);
    assert_matches_git(&repo, &[&repo]);
    assert_matches_git(&repo.join("sub"), &[&repo.join("sub")]);
    let (ignored, _) = git_ignored(&repo, &[&repo]);
    assert!(ignored.contains(&b"cfg-repo.x3"[..]));

    fs::remove_file(dirs.home.join(".gitconfig")).unwrap();
    fs::remove_file(dirs.xdg.join("git/config")).unwrap();
    fs::remove_file(dirs.xdg.join("git/ignore")).unwrap();
}

/// `*` in info/exclude leaves only tracked files: the image must hold exactly `git ls-files`.
#[track_caller]
fn assert_exactly_tracked(repo: &Path) {
    let tracked = nul_list(&git(repo, &["ls-files", "-z"]));
    let (got, _) = build(repo).unwrap();
    let got: BTreeSet<Vec<u8>> = got
        .into_iter()
        .filter(|p| !p.starts_with(b".git/"))
        .collect();
    assert_eq!(show(&got), show(&tracked), "{}", repo.display());
}

fn many_files(repo: &Path, n: usize) {
    for i in 0..n {
        write(
            &repo.join(format!("dir{}/sub/a-long-common-prefix-{i:03}.dat", i % 3)),
            format!("{i}").as_bytes(),
        );
    }
    write(&repo.join(".git/info/exclude"), b"*\n");
}

#[test]
fn index_versions_2_3_4_and_sha256() {
    if !setup() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (name, format) in [("sha1", "sha1"), ("sha256", "sha256")] {
        let repo = tmp.path().join(name);
        init(&repo, &[&format!("--object-format={format}")]);
        many_files(&repo, 60);
        git(&repo, &["add", "-f", "dir0", "dir1"]);
        write(&repo.join("untracked.dat"), b"u");
        git(&repo, &["update-index", "--index-version", "2"]);
        assert_eq!(index_version(&repo), 2);
        assert_exactly_tracked(&repo);
        // Intent-to-add and skip-worktree entries carry extended flags: version 3.
        write(&repo.join("dir2/ita.dat"), b"i");
        git(&repo, &["add", "-f", "-N", "dir2/ita.dat"]);
        git(
            &repo,
            &[
                "update-index",
                "--skip-worktree",
                "dir0/sub/a-long-common-prefix-000.dat",
            ],
        );
        assert_eq!(index_version(&repo), 3);
        assert_exactly_tracked(&repo);
        // Version 4: path prefix compression.
        git(&repo, &["update-index", "--index-version", "4"]);
        assert_eq!(index_version(&repo), 4);
        assert_exactly_tracked(&repo);
        git(
            &repo,
            &[
                "rm",
                "-q",
                "--cached",
                "dir1/sub/a-long-common-prefix-010.dat",
            ],
        );
        assert_exactly_tracked(&repo);
    }
}

#[test]
fn split_index_is_read_with_its_shared_index() {
    if !setup() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    many_files(&repo, 150);
    git(&repo, &["add", "-f", "."]);
    git(&repo, &["update-index", "--split-index"]);
    let shared = || {
        fs::read_dir(repo.join(".git"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .as_bytes()
                    .starts_with(b"sharedindex.")
            })
            .count()
    };
    assert_eq!(shared(), 1, "git did not split the index");
    assert_exactly_tracked(&repo);
    // Deletions (bitmap), replacements (nameless entries) and additions in the split part.
    git(
        &repo,
        &[
            "rm",
            "-q",
            "--cached",
            "dir0/sub/a-long-common-prefix-003.dat",
        ],
    );
    git(
        &repo,
        &[
            "rm",
            "-q",
            "--cached",
            "dir2/sub/a-long-common-prefix-101.dat",
        ],
    );
    write(
        &repo.join("dir1/sub/a-long-common-prefix-004.dat"),
        b"changed",
    );
    git(
        &repo,
        &["add", "-f", "dir1/sub/a-long-common-prefix-004.dat"],
    );
    write(&repo.join("new/file.dat"), b"n");
    git(&repo, &["add", "-f", "new/file.dat"]);
    assert_eq!(
        shared(),
        1,
        "git rewrote the shared index; the test lost its point"
    );
    let tracked = nul_list(&git(&repo, &["ls-files", "-z"]));
    assert!(!tracked.contains(&b"dir0/sub/a-long-common-prefix-003.dat"[..]));
    assert_exactly_tracked(&repo);
}

#[test]
fn sparse_index_is_exact_or_a_typed_error() {
    if !setup() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    for p in ["in/1", "in/2.log", "out/3", "out/4.log", "out/deep/5"] {
        write(&repo.join(p), b"x");
    }
    write(&repo.join(".gitignore"), b"*.log\n");
    git(&repo, &["add", "-f", "."]);
    git(&repo, &["commit", "-q", "-m", "c"]);
    git(
        &repo,
        &["sparse-checkout", "init", "--cone", "--sparse-index"],
    );
    git(&repo, &["sparse-checkout", "set", "in"]);
    let listing = nul_list(&git(&repo, &["ls-files", "-z", "--sparse"]));
    assert!(
        listing.contains(&b"out/"[..]),
        "not a sparse index: {listing:?}"
    );
    assert!(!repo.join("out").exists());
    write(&repo.join("in/new.log"), b"x");
    // Nothing ignored lies in a sparse directory: exact answer.
    assert_matches_git(&repo, &[&repo]);
    // An ignored file appears in a sparse directory: we cannot tell whether it is tracked
    // without reading tree objects, so we refuse rather than guess.
    write(&repo.join("out/4.log"), b"x");
    write(&repo.join("out/new.log"), b"x");
    match build(&repo) {
        Err(BuildError::Source { message, .. }) => {
            assert!(message.contains("sparse"), "{message}")
        }
        other => panic!("expected a sparse-index error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn linked_worktree_submodule_and_nested_clones() {
    if !setup() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A linked worktree: `.git` is a file, the index is per worktree, info/exclude shared.
    let main = tmp.path().join("main");
    init(&main, &[]);
    write(&main.join(".gitignore"), b"*.log\n");
    write(&main.join("a.txt"), b"a");
    git(&main, &["add", "."]);
    git(&main, &["commit", "-q", "-m", "c"]);
    write(&main.join(".git/info/exclude"), b"*.shared\n");
    let wt = tmp.path().join("wt");
    git(&main, &["worktree", "add", "-q", wt.to_str().unwrap()]);
    assert!(wt.join(".git").is_file());
    for p in [
        "wt-tracked.log",
        "x.log",
        "y.shared",
        "sub/z.log",
        "sub/k.txt",
    ] {
        write(&wt.join(p), b"x");
    }
    git(&wt, &["add", "-f", "wt-tracked.log"]);
    assert_matches_git(&wt, &[&wt]);
    assert_matches_git(&wt.join("sub"), &[&wt.join("sub")]);

    // A submodule: its own index and rules apply inside it, not the superproject's.
    let lib = tmp.path().join("lib");
    init(&lib, &[]);
    write(&lib.join(".gitignore"), b"*.o\n");
    write(&lib.join("tracked.o"), b"o");
    write(&lib.join("src.c"), b"c");
    git(&lib, &["add", "-f", "."]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    let sup = tmp.path().join("super");
    init(&sup, &[]);
    write(&sup.join(".gitignore"), b"*.log\n*.c\nignored-clone/\n");
    git(
        &sup,
        &["submodule", "add", "-q", lib.to_str().unwrap(), "mod"],
    );
    git(&sup, &["commit", "-q", "-m", "sub"]);
    let module = sup.join("mod");
    assert!(module.join(".git").is_file());
    for p in ["mod/x.o", "mod/y.log", "mod/d/z.o", "top.log", "top.txt"] {
        write(&sup.join(p), b"x");
    }
    // Nested clones (untracked repositories): one with its own rules, one ignored whole.
    let clone = sup.join("clone");
    init(&clone, &[]);
    write(&clone.join(".gitignore"), b"*.tmp\n");
    for p in ["clone/a.tmp", "clone/b.log", "ignored-clone/c.txt"] {
        write(&sup.join(p), b"x");
    }
    init(&sup.join("ignored-clone"), &[]);
    let got = assert_matches_git(&sup, &[&sup, &module, &clone]);
    assert!(!got.contains(&b"ignored-clone"[..]));
    // The submodule as the source.
    assert_matches_git(&module, &[&module]);

    // Below a source that is not in any work tree, each repository still governs its own.
    let plain = tmp.path().join("plain");
    write(&plain.join("x.tmp"), b"x");
    let inner = plain.join("inner");
    init(&inner, &[]);
    write(&inner.join(".gitignore"), b"*.tmp\n");
    write(&inner.join("y.tmp"), b"y");
    write(&inner.join("y.txt"), b"y");
    let (got, _) = build(&plain).unwrap();
    assert!(got.contains(&b"x.tmp"[..]) && got.contains(&b"inner/y.txt"[..]));
    assert!(!got.contains(&b"inner/y.tmp"[..]));
    assert_matches_git(&inner, &[&inner]);
}

#[test]
fn corrupt_or_truncated_index_is_a_typed_error() {
    if !setup() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    many_files(&repo, 20);
    git(&repo, &["add", "-f", "."]);
    let index = repo.join(".git/index");
    let good = fs::read(&index).unwrap();
    let mut bad_inputs: Vec<Vec<u8>> = [0, 3, 8, 12, 50, good.len() / 2, good.len() - 21]
        .iter()
        .map(|&n| good[..n].to_vec())
        .collect();
    let mut wrong_version = good.clone();
    wrong_version[7] = 9;
    bad_inputs.push(wrong_version);
    let mut huge_count = good.clone();
    huge_count[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    bad_inputs.push(huge_count);
    for data in bad_inputs {
        fs::write(&index, &data).unwrap();
        match build(&repo) {
            Err(BuildError::Source { message, .. }) => {
                assert!(message.contains(".git/index"), "{message}")
            }
            other => panic!(
                "{}-byte index: expected a typed error, got {:?}",
                data.len(),
                other.map(|_| ())
            ),
        }
    }
    fs::write(&index, &good).unwrap();
    assert_exactly_tracked(&repo);
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random trees and random pattern files (wildcards, classes incl. unclosed ones, `**` in odd
/// places, escapes, braces, anchors, negation, directory-only) in several directories and
/// info/exclude, compared with git case by case. (Run with more cases while developing: 1100
/// seeds, then 600 with braces, agreed with git 2.47.)
#[test]
fn random_patterns_match_git() {
    if !setup() {
        return;
    }
    let names = [
        "a", "b", "ab", "ba", "a.b", "b.a", "aa", "x-y", "a*", "[a", "]", "a ", " a", "{a,b}",
        "c,d",
    ];
    let parts = [
        "a",
        "b",
        "ab",
        "*",
        "?",
        "**",
        "[ab]",
        "[!a]",
        "a*",
        "*b",
        "?b",
        "*.a",
        "a.*",
        "[a-b]?",
        "x-y",
        "*a*",
        "**a",
        "a**",
        "***",
        "\\a",
        "a\\*",
        "[]a]",
        "[a",
        "[[:alpha:]]",
        "[^a]",
        "{a,b}",
        "{a,b}*",
        " a",
        "a ",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let (mut total_ignored, mut total_files) = (0, 0);
    for case in 0..60u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (case + 1).wrapping_mul(0x1000_0001));
        let repo = tmp.path().join(format!("case{case}"));
        init(&repo, &[]);
        let mut dirs = vec![String::new()];
        for _ in 0..30 {
            let depth = 1 + rng.below(4);
            let path: Vec<&str> = (0..depth).map(|_| rng.pick(&names)).collect();
            let path = path.join("/");
            let full = repo.join(&path);
            if full.exists() || full.ancestors().skip(1).any(|a| a.is_file()) {
                continue;
            }
            write(&full, b"x");
            if let Some((parent, _)) = path.rsplit_once('/') {
                dirs.push(parent.to_string());
            }
        }
        // Pattern files in up to four directories, plus info/exclude (the last "directory").
        let mut targets: Vec<PathBuf> = dirs
            .iter()
            .take(4)
            .map(|d| repo.join(d).join(".gitignore"))
            .collect();
        targets.push(repo.join(".git/info/exclude"));
        for target in targets {
            let mut text = String::new();
            for _ in 0..1 + rng.below(5) {
                if rng.below(4) == 0 {
                    text.push('!');
                }
                if rng.below(4) == 0 {
                    text.push('/');
                }
                let n = 1 + rng.below(3);
                let pattern: Vec<&str> = (0..n).map(|_| rng.pick(&parts)).collect();
                text.push_str(&pattern.join("/"));
                if rng.below(4) == 0 {
                    text.push('/');
                }
                text.push('\n');
            }
            // Shown only if the case fails (test output is captured).
            eprintln!("case{case} {}: {text:?}", target.display());
            write(&target, text.as_bytes());
        }
        // A subdirectory to build on its own. It gets a tracked file, so its image is never
        // empty whatever the patterns say (the reader currently rejects an image whose root
        // is empty: a format-crate bug, reported separately).
        let sub = dirs[rng.below(dirs.len() as u64) as usize].clone();
        if !sub.is_empty() {
            write(&repo.join(&sub).join("zz-tracked"), b"t");
            git(&repo, &["add", "-f", "--", &format!("{sub}/zz-tracked")]);
        }
        // Track a few files so tracked-but-ignored paths occur too.
        let (files, _) = disk_entries(&repo);
        let tracked: Vec<String> = files
            .iter()
            .filter(|p| !p.starts_with(b".git/") && rng.below(6) == 0)
            .map(|p| String::from_utf8(p.clone()).unwrap())
            .collect();
        if !tracked.is_empty() {
            let mut args = vec!["add", "-f", "--"];
            args.extend(tracked.iter().map(String::as_str));
            git(&repo, &args);
        }
        let (ignored, _) = git_ignored(&repo, &[&repo]);
        total_ignored += ignored.len();
        let (files, _) = disk_entries(&repo);
        total_files += files.iter().filter(|p| !p.starts_with(b".git/")).count();
        assert_matches_git(&repo, &[&repo]);
        // And from the random subdirectory (its ancestors' rules, or an ignored ancestor,
        // apply).
        if !sub.is_empty() {
            assert_matches_git(&repo.join(&sub), &[&repo.join(&sub)]);
        }
    }
    // The generator must produce real work: plenty ignored, plenty kept.
    eprintln!("random patterns: {total_ignored} of {total_files} files ignored");
    assert!(total_ignored * 5 > total_files && total_ignored * 5 < total_files * 4);
}
