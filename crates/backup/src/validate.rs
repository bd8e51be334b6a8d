//! Option validation: each rule broken gives `INVALID_BACKUP_CONFIG` naming the rule.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::error::{BackupError, Result};

/// Default TTL: three days.
pub const DEFAULT_TTL_SECS: u64 = 259_200;

/// Longest accepted backup name, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// Check a directory path's form: absolute, no NUL byte, no `..` segment.
pub fn check_dir_path(dir: &Path) -> Result<()> {
    let bytes = dir.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(BackupError::invalid("dir must not contain a NUL byte").with_dir(dir));
    }
    if !dir.is_absolute() {
        return Err(BackupError::invalid(format!(
            "dir must be an absolute path, got {:?}",
            dir.display().to_string()
        ))
        .with_dir(dir));
    }
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err(BackupError::invalid("dir must not contain a '..' path segment").with_dir(dir));
    }
    Ok(())
}

/// Check the directory to back up: form rules, then it exists and is a directory.
pub fn check_source_dir(dir: &Path) -> Result<()> {
    check_dir_path(dir)?;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(BackupError::invalid("dir must be a directory").with_dir(dir)),
        Err(e) => Err(BackupError::invalid(format!("dir must exist: {e}")).with_dir(dir)),
    }
}

/// Check a backup name: at most 256 characters, no control characters.
pub fn check_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(BackupError::invalid(format!(
            "name must be at most {MAX_NAME_CHARS} characters, got {chars}"
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(BackupError::invalid(format!(
            "name must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// Check a TTL: a positive whole number of seconds.
pub fn check_ttl(ttl: u64) -> Result<()> {
    if ttl == 0 {
        return Err(BackupError::invalid(
            "ttl must be a positive whole number of seconds, got 0",
        ));
    }
    if ttl > i64::MAX as u64 / 2 {
        return Err(BackupError::invalid(format!(
            "ttl must be a positive whole number of seconds of sane size, got {ttl}"
        )));
    }
    Ok(())
}

/// Parse a TTL given as text (CLI, config): positive whole seconds only.
pub fn parse_ttl(text: &str) -> Result<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BackupError::invalid(format!(
            "ttl must be a positive whole number of seconds, got {text:?}"
        )));
    }
    let ttl: u64 = t.parse().map_err(|_| {
        BackupError::invalid(format!(
            "ttl must be a positive whole number of seconds, got {text:?}"
        ))
    })?;
    check_ttl(ttl)?;
    Ok(ttl)
}

/// Parse a duration like `90`, `90s`, `15m`, `12h`, `7d`, `2w` into seconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        BackupError::invalid(format!(
            "duration {text:?} must be a whole number with an optional unit s, m, h, d or w"
        ))
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(BackupError::invalid(format!(
                "duration {text:?} has unknown unit {unit:?} (use s, m, h, d or w)"
            )))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| BackupError::invalid(format!("duration {text:?} is too large")))
}

/// Parse a size given as a whole number of bytes with an optional unit: `1048576`, `64K`,
/// `512M`, `10G`, `1T` (powers of 1024; `KiB`, `MiB`, ... and a trailing `B` are accepted too).
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || {
        BackupError::invalid(format!(
            "size {text:?} must be a whole number of bytes with an optional unit K, M, G or T \
             (powers of 1024), e.g. 10G"
        ))
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| BackupError::invalid(format!("size {text:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_rules() {
        assert!(check_dir_path(Path::new("relative/dir")).is_err());
        let e = check_dir_path(Path::new("/a/../b")).unwrap_err();
        assert!(e.message().contains(".."), "{e}");
        let e = check_dir_path(Path::new(std::ffi::OsStr::from_bytes(b"/a\0b"))).unwrap_err();
        assert!(e.message().contains("NUL"), "{e}");
        assert!(check_dir_path(Path::new("/a/b..c/.d")).is_ok());
        let e = check_source_dir(Path::new("/definitely/not/here/xyz")).unwrap_err();
        assert!(e.message().contains("exist"), "{e}");
        let e = check_source_dir(Path::new("/proc/self/status")).unwrap_err();
        assert!(e.message().contains("directory"), "{e}");
        assert_eq!(e.code(), "INVALID_BACKUP_CONFIG");
    }

    #[test]
    fn name_rules() {
        assert!(check_name(&"é".repeat(256)).is_ok());
        assert!(check_name(&"a".repeat(257)).is_err());
        assert!(check_name("tab\there").is_err());
        assert!(check_name("line\nbreak").is_err());
        assert!(check_name("nice name ✓").is_ok());
    }

    #[test]
    fn ttl_rules() {
        assert_eq!(parse_ttl("60").unwrap(), 60);
        for bad in ["0", "-5", "1.5", "", "abc", "99999999999999999999999"] {
            let e = parse_ttl(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_BACKUP_CONFIG", "{bad}");
            assert!(e.message().contains("ttl"), "{e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("2TB").unwrap(), 2 << 40);
        for bad in ["", "G", "1.5G", "-1", "10X", "99999999999T"] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_BACKUP_CONFIG", "{bad}");
        }
    }
}
