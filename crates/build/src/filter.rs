//! What to leave out of the image: `--exclude` patterns and, with `--gitignore`, what git
//! would ignore.
//!
//! Git semantics implemented here: `.gitignore` files in every directory from the work-tree
//! root down (deeper files take precedence, the last matching line of a file wins, `!` negates),
//! then `$GIT_DIR/info/exclude`; an ignored directory is pruned with everything below it, and
//! files tracked in the git index are kept even when a pattern matches them (together with the
//! directories leading to them). Outside a git work tree `--gitignore` excludes nothing.
//! Not read: `core.excludesFile` (a per-user setting, so builds stay reproducible across users).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

use crate::gitindex::{self, TrackedPaths};
use crate::BuildError;

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
    chain: Vec<Arc<Gitignore>>,
    inside_ignored: bool,
}

struct GitContext {
    info_exclude: Option<Gitignore>,
    tracked: TrackedPaths,
    /// The source directory relative to the work tree root (empty if it is the root).
    source_rel: Vec<u8>,
    /// `.gitignore` files of the directories above the source, up to the work tree root.
    ancestors: Vec<Arc<Gitignore>>,
}

/// Exclusion rules for one build.
pub struct Filter {
    excludes: Option<Gitignore>,
    git: Option<GitContext>,
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
        let git = if gitignore {
            git_context(source).map_err(|e| BuildError::Source {
                path: source.to_path_buf(),
                message: format!("reading git metadata: {e}"),
            })?
        } else {
            None
        };
        Ok(Filter { excludes, git })
    }

    /// State for the source directory itself (before its own `.gitignore` is read).
    pub fn root_state(&self) -> DirState {
        DirState {
            chain: self
                .git
                .as_ref()
                .map(|g| g.ancestors.clone())
                .unwrap_or_default(),
            inside_ignored: false,
        }
    }

    /// State for the children of directory `dir`, given the state it was found in.
    pub fn enter_dir(&self, parent: &DirState, dir: &Path, decision: Decision) -> DirState {
        let mut state = parent.clone();
        if decision == Decision::KeepTrackedOnly {
            state.inside_ignored = true;
        }
        if self.git.is_some() {
            if let Some(matcher) = load_gitignore(dir) {
                state.chain.push(Arc::new(matcher));
            }
        }
        state
    }

    /// Decide about the entry at `path` (absolute), `rel` bytes below the source.
    pub fn decide(&self, state: &DirState, path: &Path, rel: &[u8], is_dir: bool) -> Decision {
        if let Some(excludes) = &self.excludes {
            if excludes.matched(path, is_dir).is_ignore() {
                return Decision::Exclude;
            }
        }
        let Some(git) = &self.git else {
            return Decision::Keep;
        };
        let mut rel_wt = git.source_rel.clone();
        if !rel_wt.is_empty() {
            rel_wt.push(b'/');
        }
        rel_wt.extend_from_slice(rel);
        if !is_dir && git.tracked.is_tracked(&rel_wt) {
            return Decision::Keep;
        }
        let ignored = state.inside_ignored || git_ignored(state, git, path, is_dir);
        if !ignored {
            Decision::Keep
        } else if is_dir && git.tracked.has_tracked_below(&rel_wt) {
            Decision::KeepTrackedOnly
        } else {
            Decision::Exclude
        }
    }
}

fn git_ignored(state: &DirState, git: &GitContext, path: &Path, is_dir: bool) -> bool {
    for matcher in state.chain.iter().rev() {
        match matcher.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    git.info_exclude
        .as_ref()
        .is_some_and(|m| m.matched(path, is_dir).is_ignore())
}

fn load_gitignore(dir: &Path) -> Option<Gitignore> {
    let file = dir.join(".gitignore");
    if !file.is_file() {
        return None;
    }
    let mut builder = GitignoreBuilder::new(dir);
    // Like git, skip lines that are not valid patterns instead of failing.
    let _ = builder.add(&file);
    builder.build().ok()
}

fn git_context(source: &Path) -> std::io::Result<Option<GitContext>> {
    let Some(worktree) = source.ancestors().find(|a| a.join(".git").exists()) else {
        return Ok(None);
    };
    let dot_git = worktree.join(".git");
    let git_dir = if dot_git.is_dir() {
        dot_git
    } else {
        let text = std::fs::read_to_string(&dot_git)?;
        let target = text
            .lines()
            .find_map(|l| l.strip_prefix("gitdir:"))
            .map(|t| PathBuf::from(t.trim()))
            .ok_or_else(|| std::io::Error::other(".git file without a gitdir line"))?;
        worktree.join(target)
    };
    let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.clone(),
    };
    let hash_len = match std::fs::read_to_string(common_dir.join("config")) {
        Ok(config)
            if config
                .to_ascii_lowercase()
                .contains("objectformat = sha256") =>
        {
            32
        }
        _ => 20,
    };
    let tracked = gitindex::load(&git_dir.join("index"), hash_len)?;
    let info_exclude = {
        let file = common_dir.join("info").join("exclude");
        if file.is_file() {
            let mut builder = GitignoreBuilder::new(worktree);
            let _ = builder.add(&file);
            builder.build().ok()
        } else {
            None
        }
    };
    let source_rel = source
        .strip_prefix(worktree)
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_default();
    let mut ancestors = Vec::new();
    let mut dirs: Vec<&Path> = source
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(worktree))
        .collect();
    dirs.reverse();
    for dir in dirs {
        if let Some(m) = load_gitignore(dir) {
            ancestors.push(Arc::new(m));
        }
    }
    Ok(Some(GitContext {
        info_exclude,
        tracked,
        source_rel,
        ancestors,
    }))
}
