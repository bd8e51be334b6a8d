//! Where squashbox keeps its local data: the default store, the archive cache, and state
//! (locks, active restores, overlay upper dirs).

use std::path::PathBuf;

use crate::error::{BackupError, Result};

fn home() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => Err(BackupError::invalid(
            "cannot find a home directory: set HOME, or SQUASHBOX_STORE / --store",
        )),
    }
}

fn xdg(var: &str, fallback: &str) -> Result<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if PathBuf::from(&v).is_absolute() => Ok(PathBuf::from(v).join("squashbox")),
        _ => Ok(home()?.join(fallback).join("squashbox")),
    }
}

/// `$XDG_DATA_HOME/squashbox` or `~/.local/share/squashbox` (the default store lives here).
pub fn data_dir() -> Result<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// `$SQUASHBOX_STATE_DIR`, else `$XDG_STATE_HOME/squashbox` or `~/.local/state/squashbox`.
pub fn state_dir() -> Result<PathBuf> {
    match std::env::var_os("SQUASHBOX_STATE_DIR") {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => xdg("XDG_STATE_HOME", ".local/state"),
    }
}

/// `$SQUASHBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/squashbox` or `~/.cache/squashbox`.
pub fn cache_dir() -> Result<PathBuf> {
    match std::env::var_os("SQUASHBOX_CACHE_DIR") {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => xdg("XDG_CACHE_HOME", ".cache"),
    }
}
