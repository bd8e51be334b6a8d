//! What to leave out of the image: `--exclude` patterns and, with `--gitignore`, what git
//! would ignore.
//!
//! The oracle for `--gitignore` is git itself: a path is left out exactly when
//! `git ls-files --others --ignored --exclude-standard`, run in the repository that owns the
//! path, lists it (or a directory above it). That means:
//!
//! - Patterns come from `.gitignore` in every directory from the work-tree root down (a deeper
//!   file is consulted first; within a file the last matching line wins; `!` negates), then
//!   `$GIT_DIR/info/exclude`, then `core.excludesFile` (default
//!   `$XDG_CONFIG_HOME/git/ignore` or `~/.config/git/ignore`). The first source with a
//!   matching line decides, so a negation in a `.gitignore` beats `info/exclude`.
//! - A `.gitignore` that is a symbolic link is not read (git refuses to follow them).
//! - An ignored directory is pruned with everything below it, and nothing below it can be
//!   re-included — except files tracked in the git index, which are always kept (with the
//!   directories leading to them).
//! - Only regular files, directories and symlinks are subject to ignore rules: git does not
//!   consider fifos, sockets or devices at all, so they are kept.
//! - `.git` (directory or file) is never ignored, and nothing inside a `.git` directory is
//!   filtered by git rules.
//! - A directory holding its own repository (a submodule or a nested clone) is governed by
//!   that repository's index and ignore files, not by the outer ones (git's outer listing
//!   does not look inside it). This also applies below a source that is not itself inside a
//!   work tree; where no repository owns a path, nothing is excluded.
//! - Config (for `core.excludesFile` and the object format) is read like git does: the system
//!   file (`/etc/gitconfig`, or `$GIT_CONFIG_SYSTEM`, skipped with `$GIT_CONFIG_NOSYSTEM`),
//!   the global files (`$XDG_CONFIG_HOME/git/config` then `~/.gitconfig`, or
//!   `$GIT_CONFIG_GLOBAL`), the repository's `config` and, with `extensions.worktreeConfig`,
//!   `config.worktree`; later files win. `include`/`includeIf` are not followed, and
//!   `$GIT_DIR`/`$GIT_WORK_TREE` are not consulted.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

use crate::gitindex::{self, TrackedPaths};
use crate::BuildError;

/// Largest ignore or config file we read (bounds memory on a hostile tree).
const MAX_RULES_FILE: u64 = 64 << 20;

/// The verdict for one directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Put it in the image.
    Keep,
    /// Leave it (and, for a directory, everything below) out.
    Exclude,
    /// An ignored directory that holds tracked files: keep it, but only tracked entries below.
    KeepTrackedOnly,
}

/// Per-directory state carried down the walk.
#[derive(Clone, Default)]
pub struct DirState {
    /// The repository whose rules apply here (`None`: no git filtering here).
    repo: Option<Arc<Repo>>,
    /// `.gitignore` matchers from the work-tree root down to this directory.
    chain: Vec<Arc<Gitignore>>,
    /// A directory above is ignored: only tracked paths survive.
    inside_ignored: bool,
    /// Inside a `.git` directory: no git rules, no repository discovery.
    opaque: bool,
}

/// One git repository's view: its work tree, index and repository-wide ignore files.
struct Repo {
    worktree: PathBuf,
    tracked: TrackedPaths,
    /// `info/exclude`, then `core.excludesFile`: consulted in this order after `.gitignore`s.
    excludes: Vec<Gitignore>,
}

/// Exclusion rules for one build.
pub struct Filter {
    source: PathBuf,
    excludes: Option<Gitignore>,
    /// Present with `--gitignore`: system and global git config, read once.
    git: Option<Config>,
}

impl Filter {
    /// Build the rules for walking `source` (an absolute, canonical path).
    pub fn new(source: &Path, excludes: &[String], gitignore: bool) -> Result<Self, BuildError> {
        let excludes = if excludes.is_empty() {
            None
        } else {
            let mut builder = GitignoreBuilder::new(source);
            for pattern in excludes {
                builder.add_line(None, pattern).map_err(|e| {
                    BuildError::InvalidOptions(format!("exclude pattern {pattern:?}: {e}"))
                })?;
            }
            Some(
                builder
                    .build()
                    .map_err(|e| BuildError::InvalidOptions(format!("exclude patterns: {e}")))?,
            )
        };
        let filter = Filter {
            source: source.to_path_buf(),
            excludes,
            git: None,
        };
        let git = if gitignore {
            Some(Config::user_level().map_err(|e| filter.git_error(e))?)
        } else {
            None
        };
        Ok(Filter { git, ..filter })
    }

    fn git_error(&self, e: std::io::Error) -> BuildError {
        BuildError::Source {
            path: self.source.clone(),
            message: format!("reading git metadata: {e}"),
        }
    }

    /// State for the source directory itself (before its own `.gitignore` is read): the
    /// repository that owns it and the rules of the directories above it.
    pub fn root_state(&self) -> Result<DirState, BuildError> {
        let Some(config) = &self.git else {
            return Ok(DirState::default());
        };
        let Some(worktree) = find_worktree(&self.source) else {
            return Ok(DirState::default());
        };
        let repo = open_repo(&worktree, config).map_err(|e| self.git_error(e))?;
        let rel = self.source.strip_prefix(&worktree).unwrap_or(Path::new(""));
        if rel.components().any(|c| c.as_os_str() == ".git") {
            // Packing (part of) a repository's own metadata: git rules do not apply there.
            return Ok(DirState {
                opaque: true,
                ..DirState::default()
            });
        }
        let mut state = DirState {
            repo: Some(Arc::new(repo)),
            ..DirState::default()
        };
        // Read the rules from the work-tree root down to the source, stopping (like git)
        // at the first ignored directory: everything below it is ignored, tracked or not.
        // (The source's own `.gitignore` is read by `enter_dir`.)
        let mut dir = worktree.clone();
        for component in rel.components() {
            state.load_gitignore(&dir).map_err(|e| self.git_error(e))?;
            dir.push(component);
            if state.is_ignored(&dir, true) {
                state.inside_ignored = true;
                break;
            }
        }
        Ok(state)
    }

    /// State for the children of directory `dir`, given the state it was found in.
    pub fn enter_dir(
        &self,
        parent: &DirState,
        dir: &Path,
        decision: Decision,
    ) -> Result<DirState, BuildError> {
        let Some(config) = &self.git else {
            return Ok(DirState::default());
        };
        if parent.opaque || dir.file_name().is_some_and(|n| n == ".git") {
            // A repository's metadata: git never looks inside, so neither do its rules.
            return Ok(DirState {
                opaque: true,
                ..DirState::default()
            });
        }
        let is_worktree_root = parent.repo.as_ref().is_some_and(|r| r.worktree == dir);
        if !is_worktree_root && dir != self.source && is_repository(dir) {
            // A submodule or nested clone: its own index and rules, not the outer ones.
            let repo = open_repo(dir, config).map_err(|e| self.git_error(e))?;
            let mut state = DirState {
                repo: Some(Arc::new(repo)),
                ..DirState::default()
            };
            state.load_gitignore(dir).map_err(|e| self.git_error(e))?;
            return Ok(state);
        }
        let mut state = parent.clone();
        if decision == Decision::KeepTrackedOnly {
            state.inside_ignored = true;
        }
        // Below an ignored directory git reads no further `.gitignore` files.
        if state.repo.is_some() && !state.inside_ignored {
            state.load_gitignore(dir).map_err(|e| self.git_error(e))?;
        }
        Ok(state)
    }

    /// Decide about the entry at `path` (absolute).
    /// `file_type` is the entry's own type (symlinks not followed).
    pub fn decide(
        &self,
        state: &DirState,
        path: &Path,
        file_type: std::fs::FileType,
    ) -> Result<Decision, BuildError> {
        let is_dir = file_type.is_dir();
        if let Some(excludes) = &self.excludes {
            if excludes.matched(path, is_dir).is_ignore() {
                return Ok(Decision::Exclude);
            }
        }
        let Some(repo) = &state.repo else {
            return Ok(Decision::Keep);
        };
        // git skips `.git` by name and never considers anything but files, directories and
        // symlinks.
        if path.file_name().is_some_and(|n| n == ".git")
            || !(is_dir || file_type.is_file() || file_type.is_symlink())
        {
            return Ok(Decision::Keep);
        }
        let rel_wt = path
            .strip_prefix(&repo.worktree)
            .map(|p| p.as_os_str().as_bytes())
            .unwrap_or_default();
        // Tracked files and submodules are always kept. (A directory where the index has a
        // file — a type change — is untracked to git, so ignore rules apply to it.)
        let tracked = if is_dir {
            repo.tracked.is_gitlink(rel_wt)
        } else {
            repo.tracked.is_tracked(rel_wt)
        };
        if tracked {
            return Ok(Decision::Keep);
        }
        if !state.inside_ignored && !state.is_ignored(path, is_dir) {
            return Ok(Decision::Keep);
        }
        if let Some(sparse) = repo.tracked.in_sparse_dir(rel_wt) {
            return Err(BuildError::Source {
                path: self.source.clone(),
                message: format!(
                    "{}: ignored by git, but the sparse index of {} does not list which files \
                     below {}/ are tracked; convert it to a full index (`git sparse-checkout \
                     init --no-sparse-index`) or build without --gitignore",
                    path.display(),
                    repo.worktree.display(),
                    String::from_utf8_lossy(sparse)
                ),
            });
        }
        if is_dir && repo.tracked.has_tracked_below(rel_wt) {
            Ok(Decision::KeepTrackedOnly)
        } else {
            Ok(Decision::Exclude)
        }
    }
}

impl DirState {
    /// git's verdict from the patterns alone (deepest `.gitignore` first, then the
    /// repository-wide files; the first source with a matching line decides).
    fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        let Some(repo) = &self.repo else {
            return false;
        };
        let per_dir = self.chain.iter().rev().map(Arc::as_ref);
        for matcher in per_dir.chain(repo.excludes.iter()) {
            match matcher.matched(path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }

    fn load_gitignore(&mut self, dir: &Path) -> std::io::Result<()> {
        // git does not follow a `.gitignore` that is a symlink.
        if let Some(m) = load_rules(&dir.join(".gitignore"), dir, false)? {
            self.chain.push(Arc::new(m));
        }
        Ok(())
    }
}

/// Read an ignore file with patterns relative to `base`. Missing or unreadable files are
/// skipped, as git does (it only warns); a symlink is read only if `follow`.
fn load_rules(file: &Path, base: &Path, follow: bool) -> std::io::Result<Option<Gitignore>> {
    let meta = if follow {
        std::fs::metadata(file)
    } else {
        std::fs::symlink_metadata(file)
    };
    let Ok(meta) = meta else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX_RULES_FILE {
        return Err(std::io::Error::other(format!(
            "{}: ignore file larger than 64 MiB",
            file.display()
        )));
    }
    let Ok(data) = std::fs::read(file) else {
        return Ok(None);
    };
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&data);
    let mut builder = GitignoreBuilder::new(base);
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Like git, skip lines that are not valid patterns instead of failing. (Patterns
        // that are not UTF-8 cannot be expressed to the matcher and are skipped too.)
        if let Ok(line) = std::str::from_utf8(line) {
            for line in git_lines(line) {
                let _ = builder.add_line(Some(file.to_path_buf()), &line);
            }
        }
    }
    Ok(builder.build().ok())
}

/// One ignore-file line as the matcher must see it to agree with git: star runs normalised
/// (see [`normalize_stars`]), braces literal, patterns that can never match dropped and, for
/// one git quirk, split in two or more lines.
///
/// The quirk: git matches a pattern containing a slash by first comparing its literal prefix
/// (up to the first `*?[\\`) and then running wildmatch on the rest, which then *starts* with
/// the star run — so in `a**/*b` or `dir/x**` the `**` counts as a whole component and may
/// match across slashes (`a**/*b` matches `a.b` and `ax/y/zb`). That is "`a` + `*b`" or
/// "`a` + anything + `/` + `*b`", two plain patterns.
fn git_lines(line: &str) -> Vec<String> {
    if line.starts_with('#') {
        return Vec::new();
    }
    let mut lines = git_patterns(line);
    for line in &mut lines {
        // git has no `{a,b}` alternation; the matcher below does.
        *line = escape_braces(line);
    }
    lines
}

fn git_patterns(line: &str) -> Vec<String> {
    let trimmed = line.trim_end_matches(' ');
    // Lines ending in an escaped space (part of the pattern) pass unchanged.
    if trimmed.ends_with('\\') {
        return vec![line.to_string()];
    }
    let (neg, body) = match trimmed.strip_prefix('!') {
        Some(b) => ("!", b),
        None => ("", trimmed),
    };
    let (body, dir) = match body.strip_suffix('/') {
        Some(b) if !b.ends_with('\\') => (b, "/"),
        _ => (body, ""),
    };
    if has_unclosed_class(body) {
        // git's wildmatch gives up on such a pattern: it never matches (the matcher below
        // would read the `[` literally instead).
        return Vec::new();
    }
    let plain = || vec![format!("{neg}{}{dir}", normalize_stars(body))];
    if !body.contains('/') {
        return plain();
    }
    let core = body.strip_prefix('/').unwrap_or(body);
    let p = core.find(['*', '?', '[', '\\']).unwrap_or(core.len());
    let (prefix, rest) = core.split_at(p);
    if prefix.is_empty() || prefix.ends_with('/') {
        return plain();
    }
    let mut out = Vec::new();
    expand_after_prefix(prefix, rest, &mut out);
    out.into_iter()
        .map(|pattern| format!("{neg}/{pattern}{dir}"))
        .collect()
}

/// Patterns (relative, anchored) equivalent to git matching `prefix` literally and then
/// wildmatch on `rest`, where a star run at the start of `rest` counts as a whole component.
fn expand_after_prefix(prefix: &str, rest: &str, out: &mut Vec<String>) {
    let after = rest.trim_start_matches('*');
    let run = rest.len() - after.len();
    if run >= 2 && after.is_empty() {
        // `**` at the end: the prefix followed by anything, across slashes.
        out.push(format!("{prefix}*"));
        out.push(format!("{prefix}*/**"));
    } else if let (true, Some(tail)) = (run >= 2, after.strip_prefix('/')) {
        // `**/`: zero directories (the tail continues the prefix's component, where a star
        // run at its start is again whole-component)...
        expand_after_prefix(prefix, tail, out);
        // ...or anything ending in `/`.
        out.push(format!("{prefix}*/**/{}", normalize_stars(tail)));
    } else {
        // No whole-component run here: plain reading of the joined pattern.
        out.push(normalize_stars(&format!("{prefix}{rest}")).into_owned());
    }
}

/// `{` and `}` made literal, outside escapes and bracket expressions.
fn escape_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = opaque_end(&chars, i) {
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        match chars[i] {
            c @ ('{' | '}') => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// If `chars[i]` starts an escape (`\x`) or a bracket expression, the end (exclusive) of that
/// span, which the pattern rewrites below copy untouched. An unclosed `[` runs to the end.
fn opaque_end(chars: &[char], i: usize) -> Option<usize> {
    match chars[i] {
        '\\' => Some((i + 2).min(chars.len())),
        '[' => Some(class_end(chars, i).unwrap_or(chars.len())),
        _ => None,
    }
}

/// End (exclusive) of the bracket expression opening at `chars[start]` (`[`, optional `!`/`^`,
/// a leading `]` is literal, up to the closing `]`), or `None` if it is never closed.
fn class_end(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    if matches!(chars.get(j), Some('!' | '^')) {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() && chars[j] != ']' {
        j += if chars[j] == '\\' { 2 } else { 1 };
    }
    (j < chars.len()).then_some(j + 1)
}

fn has_unclosed_class(pattern: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' => match class_end(&chars, i) {
                Some(end) => i = end,
                None => return true,
            },
            _ => i += 1,
        }
    }
    false
}

/// Rewrite runs of `*` the way git's wildmatch reads them: a run of two or more that fills a
/// whole path component (`**`, `***`, …) means "any number of directories"; any other run
/// (`a**`, `**b`) is a plain `*`. The matcher underneath only knows `*` and exact `**`.
/// Escaped characters and bracket expressions are copied untouched.
fn normalize_stars(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains("**") {
        return line.into();
    }
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = opaque_end(&chars, i) {
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        match chars[i] {
            '*' => {
                let start = i;
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
                // A leading `!` or `/` is syntax, not part of the path component.
                let before = start.checked_sub(1).map(|b| chars[b]);
                let bounded_before = match before {
                    None | Some('/') => true,
                    Some('!') => start == 1,
                    _ => false,
                };
                let bounded_after = matches!(chars.get(i), None | Some('/'));
                if i - start >= 2 && bounded_before && bounded_after {
                    out.push_str("**");
                } else {
                    out.push('*');
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.into()
}

/// The nearest directory at or above `source` that is a git work tree.
fn find_worktree(source: &Path) -> Option<PathBuf> {
    source
        .ancestors()
        .find(|dir| is_repository(dir))
        .map(Path::to_path_buf)
}

/// `dir/.git` is a git directory, or a file pointing at one (worktrees, submodules).
fn is_repository(dir: &Path) -> bool {
    git_dir_of(dir).is_some_and(|g| is_git_dir(&g))
}

/// Where `worktree/.git` leads: the directory itself or the target of a `gitdir:` file.
fn git_dir_of(worktree: &Path) -> Option<PathBuf> {
    let dot_git = worktree.join(".git");
    let meta = std::fs::metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return None;
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    Some(worktree.join(target))
}

/// git's own test (roughly): a `HEAD`, and `objects` and `refs` in the common directory.
fn is_git_dir(git_dir: &Path) -> bool {
    let common = common_dir(git_dir);
    git_dir.join("HEAD").is_file()
        && common.join("objects").is_dir()
        && common.join("refs").is_dir()
}

/// A linked worktree's git directory names the shared one in `commondir`.
fn common_dir(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim_end_matches(['\n', '\r'])),
        Err(_) => git_dir.to_path_buf(),
    }
}

fn open_repo(worktree: &Path, user: &Config) -> std::io::Result<Repo> {
    let git_dir = git_dir_of(worktree)
        .ok_or_else(|| std::io::Error::other(format!("{}/.git: unreadable", worktree.display())))?;
    let common = common_dir(&git_dir);
    let mut config = user.clone();
    config.read_file(&common.join("config"))?;
    if config.get_bool("extensions", "worktreeconfig") {
        config.read_file(&git_dir.join("config.worktree"))?;
    }
    let hash_len = match config.get("extensions", "objectformat") {
        None => 20,
        Some(f) if f.eq_ignore_ascii_case("sha1") => 20,
        Some(f) if f.eq_ignore_ascii_case("sha256") => 32,
        Some(f) => {
            return Err(std::io::Error::other(format!(
                "{}: unknown object format {f:?}",
                common.display()
            )))
        }
    };
    let tracked = gitindex::load(&git_dir.join("index"), hash_len)?;
    let mut excludes = Vec::new();
    // git follows symlinks for these two (they are not part of the tree).
    if let Some(m) = load_rules(&common.join("info").join("exclude"), worktree, true)? {
        excludes.push(m);
    }
    if let Some(file) = config.excludes_file(worktree)? {
        if let Some(m) = load_rules(&file, worktree, true)? {
            excludes.push(m);
        }
    }
    Ok(Repo {
        worktree: worktree.to_path_buf(),
        tracked,
        excludes,
    })
}

/// The few git config values we need, collected from a stack of files (later files win).
#[derive(Clone, Default)]
struct Config {
    /// `(section, key, value)`, lower-cased section and key; `None` for a bare boolean key.
    entries: Vec<(String, String, Option<String>)>,
}

impl Config {
    /// System and global config, honouring git's environment overrides.
    fn user_level() -> std::io::Result<Config> {
        let mut config = Config::default();
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let no_system = std::env::var("GIT_CONFIG_NOSYSTEM")
            .ok()
            .is_some_and(|v| parse_bool(Some(&v)));
        if !no_system {
            let system = env("GIT_CONFIG_SYSTEM").unwrap_or_else(|| "/etc/gitconfig".into());
            config.read_file(Path::new(&system))?;
        }
        if let Some(global) = env("GIT_CONFIG_GLOBAL") {
            config.read_file(Path::new(&global))?;
        } else {
            if let Some(xdg) = xdg_config_dir() {
                config.read_file(&xdg.join("git").join("config"))?;
            }
            if let Some(home) = env("HOME") {
                config.read_file(&Path::new(&home).join(".gitconfig"))?;
            }
        }
        Ok(config)
    }

    fn read_file(&mut self, path: &Path) -> std::io::Result<()> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() > MAX_RULES_FILE => {
                return Err(std::io::Error::other(format!(
                    "{}: config file larger than 64 MiB",
                    path.display()
                )))
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
        let Ok(data) = std::fs::read(path) else {
            return Ok(());
        };
        parse_config(&data, &mut self.entries);
        Ok(())
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_deref().unwrap_or("true"))
    }

    fn get_bool(&self, section: &str, key: &str) -> bool {
        self.get(section, key).is_some_and(|v| parse_bool(Some(v)))
    }

    /// `core.excludesFile` (with `~/` expanded, relative to the work tree), defaulting to
    /// `$XDG_CONFIG_HOME/git/ignore` or `~/.config/git/ignore`; an empty value means none.
    fn excludes_file(&self, worktree: &Path) -> std::io::Result<Option<PathBuf>> {
        let Some(value) = self.get("core", "excludesfile") else {
            return Ok(xdg_config_dir().map(|d| d.join("git").join("ignore")));
        };
        if value.is_empty() {
            return Ok(None);
        }
        let path = if value == "~" || value.starts_with("~/") {
            let Some(home) = std::env::var_os("HOME") else {
                return Ok(None);
            };
            PathBuf::from(home).join(value[1..].trim_start_matches('/'))
        } else if value.starts_with('~') {
            // `~user/`: git would look the user up; we do not, and must not guess.
            return Err(std::io::Error::other(format!(
                "core.excludesFile {value:?}: ~user paths are not supported"
            )));
        } else {
            worktree.join(value)
        };
        Ok(Some(path))
    }
}

/// `$XDG_CONFIG_HOME`, or `~/.config`.
fn xdg_config_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config"))
}

fn parse_bool(value: Option<&str>) -> bool {
    match value {
        None => true,
        Some(v) => {
            matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on")
                || v.parse::<i64>().is_ok_and(|n| n != 0)
        }
    }
}

/// Parse git config text into `(section, key, value)` triples. Subsections are folded into
/// the section name as `section.subsection` (we only look up plain sections). Malformed lines
/// are skipped: the values we need are simple, and git itself would refuse such a file.
fn parse_config(data: &[u8], out: &mut Vec<(String, String, Option<String>)>) {
    let text = String::from_utf8_lossy(data);
    let mut chars = text.chars().peekable();
    let mut section = String::new();
    loop {
        // Start of a line (or of what follows a section header).
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&c) = chars.peek() else { break };
        if c == '#' || c == ';' {
            while chars.next_if(|&c| c != '\n').is_some() {}
            continue;
        }
        if c == '[' {
            chars.next();
            let mut header = String::new();
            for c in chars.by_ref() {
                if c == ']' || c == '\n' {
                    break;
                }
                header.push(c);
            }
            section = match header.split_once(char::is_whitespace) {
                Some((name, sub)) => format!(
                    "{}.{}",
                    name.to_ascii_lowercase(),
                    sub.trim().trim_matches('"')
                ),
                None => header.trim().to_ascii_lowercase(),
            };
            continue;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '-') {
            key.push(c.to_ascii_lowercase());
        }
        while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
        let value = if chars.next_if_eq(&'=').is_some() {
            Some(parse_value(&mut chars))
        } else {
            while chars.next_if(|&c| c != '\n').is_some() {}
            None
        };
        if !key.is_empty() {
            out.push((section.clone(), key, value));
        }
    }
}

/// A config value after `=`: quotes, backslash escapes and line continuations, a comment
/// ends it, unquoted surrounding whitespace is dropped.
fn parse_value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut value = String::new();
    let mut quoted = false;
    // Length of `value` up to its last character that must be kept (trailing unquoted
    // whitespace is trimmed).
    let mut keep = 0;
    while let Some(c) = chars.next() {
        match c {
            '\n' => break,
            '"' => {
                quoted = !quoted;
                keep = value.len();
            }
            '#' | ';' if !quoted => while chars.next_if(|&c| c != '\n').is_some() {},
            '\\' => {
                match chars.next() {
                    Some('\n') => {}
                    Some('\r') if chars.peek() == Some(&'\n') => {
                        chars.next();
                    }
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('b') => {
                        value.pop();
                    }
                    Some(other) => value.push(other),
                    None => {}
                }
                keep = value.len();
            }
            c if c.is_whitespace() && !quoted => {
                if !value.is_empty() {
                    value.push(c);
                }
            }
            c => {
                value.push(c);
                keep = value.len();
            }
        }
    }
    value.truncate(keep);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        parse_config(text.as_bytes(), &mut out);
        out
    }

    #[test]
    fn literal_prefix_quirk() {
        for (from, to) in [
            ("a**/*b", &["/a*b", "/a*/**/*b"][..]),
            ("!/d/x**/", &["!/d/x*/", "!/d/x*/**/"]),
            ("d/x**", &["/d/x*", "/d/x*/**"]),
            ("a**", &["a*"]),
            ("d/**/x", &["d/**/x"]),
            ("d/***b", &["d/*b"]),
            ("/a**/**/**a/", &["/a*a/", "/a*/**/*a/", "/a*/**/**/*a/"]),
            ("# a**/b", &[]),
            ("{a,b}/[{]}", &["\\{a,b\\}/[{]\\}"]),
            ("/**/[a", &[]),
            ("x[]a]/[!]]", &["/x[]a]/[!]]"]),
        ] {
            assert_eq!(git_lines(from), to, "{from}");
        }
    }

    #[test]
    fn star_runs() {
        for (from, to) in [
            ("***/a", "**/a"),
            ("!***/a", "!**/a"),
            ("/a/***", "/a/**"),
            ("a**", "a*"),
            ("**b/c", "*b/c"),
            ("a/**/b", "a/**/b"),
            ("\\**/x", "\\**/x"),
            ("[**]**", "[**]*"),
            ("[]**]/**", "[]**]/**"),
        ] {
            assert_eq!(normalize_stars(from), to, "{from}");
        }
    }

    #[test]
    fn config_values() {
        let got = parse(
            "# c\n[core]\n\texcludesFile = ~/my ignore # note\n  bare\n[Core \"x\"]\n\
             key = \"quoted # not a comment \" \n[extensions]objectFormat=sha256\n\
             k = a\\\n b\n",
        );
        let want = [
            ("core", "excludesfile", Some("~/my ignore")),
            ("core", "bare", None),
            ("core.x", "key", Some("quoted # not a comment ")),
            ("extensions", "objectformat", Some("sha256")),
            ("extensions", "k", Some("a b")),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(s, k, v)| (s.to_string(), k.to_string(), v.map(str::to_string)))
            .collect();
        assert_eq!(got, want);
    }
}
