//! Records of active restores, one JSON file per restored directory under
//! `{state}/restores/`, so `status` can list them and a later restore or unmount can find them.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lock::hex;

/// One active restore mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRecord {
    /// The restored (mounted) directory.
    pub dir: PathBuf,
    /// The backup id.
    pub id: String,
    /// The overlay's upper (writable) directory.
    pub upper: PathBuf,
    /// The overlay's work directory.
    pub work: PathBuf,
    /// The cached archive used as the read-only lower layer.
    pub archive: PathBuf,
    /// The process serving the mount.
    pub pid: u32,
    /// When the restore was mounted (RFC 3339).
    pub mounted_at: String,
}

/// Key of a directory in the state dir: the first 16 bytes of SHA-256 of its path, in hex.
pub fn dir_key(dir: &Path) -> String {
    hex(&Sha256::digest(dir.as_os_str().as_bytes())[..16])
}

fn record_path(state_dir: &Path, dir: &Path) -> PathBuf {
    state_dir
        .join("restores")
        .join(format!("{}.json", dir_key(dir)))
}

/// Write (atomically) the record for its directory.
pub fn write_record(state_dir: &Path, record: &RestoreRecord) -> std::io::Result<()> {
    let path = record_path(state_dir, &record.dir);
    let parent = path.parent().expect("record path has a parent");
    std::fs::create_dir_all(parent)?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)?;
    serde_json::to_writer_pretty(&mut temp, record)?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

/// The record for `dir`, if any.
pub fn read_record(state_dir: &Path, dir: &Path) -> Option<RestoreRecord> {
    let bytes = std::fs::read(record_path(state_dir, dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Remove the record for `dir` (missing is fine).
pub fn remove_record(state_dir: &Path, dir: &Path) {
    let _ = std::fs::remove_file(record_path(state_dir, dir));
}

/// True when process `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Every record whose serving process is alive.
pub fn active_restores(state_dir: &Path) -> Vec<RestoreRecord> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("restores")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // Records of dead servers stay: the next restore or unmount of that directory uses
        // them to detach the dead mount and remove the upper dir.
        if let Ok(r) = serde_json::from_slice::<RestoreRecord>(&bytes) {
            if pid_alive(r.pid) {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}
