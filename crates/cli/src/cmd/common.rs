//! Helpers shared by the read-only subcommands.

use std::path::Path;

use squashbox_format::Archive;

use crate::error::{CliError, CliResult};

/// Open an image, naming it in the error.
pub fn open_image(path: &Path) -> CliResult<Archive> {
    let shown = path.display().to_string();
    Archive::open_path(path).map_err(|e| {
        let message = e.to_string();
        if message.contains(&shown) {
            CliError::msg(message)
        } else {
            CliError::msg(format!("{shown}: {message}"))
        }
    })
}

/// Image paths as raw bytes (non-UTF-8 allowed).
pub fn path_bytes(path: &std::ffi::OsStr) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_bytes()
}

/// `ls -l` style mode string, e.g. `drwxr-xr-x`, `-rwsr-xr-x`, `drwxrwxrwt`.
pub fn mode_string(file_type: squashbox_format::FileType, permissions: u16) -> String {
    use squashbox_format::FileType as T;
    let type_char = match file_type {
        T::Directory => 'd',
        T::Regular => '-',
        T::Symlink => 'l',
        T::BlockDevice => 'b',
        T::CharDevice => 'c',
        T::Fifo => 'p',
        T::Socket => 's',
    };
    let p = permissions;
    let bit = |mask: u16, c: char| if p & mask != 0 { c } else { '-' };
    let special =
        |exec: u16, special: u16, set: char, unset: char| match (p & exec != 0, p & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    [
        type_char,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` in UTC.
pub fn format_utc(secs: u32) -> String {
    let secs = i64::from(secs);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Proleptic Gregorian date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use squashbox_format::FileType;

    #[test]
    fn mode_strings_match_ls() {
        assert_eq!(mode_string(FileType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(FileType::Regular, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(FileType::Regular, 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(FileType::Directory, 0o2775), "drwxrwsr-x");
        assert_eq!(mode_string(FileType::Directory, 0o2765), "drwxrwSr-x");
        assert_eq!(mode_string(FileType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(FileType::Directory, 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(FileType::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(FileType::CharDevice, 0o600), "crw-------");
        assert_eq!(mode_string(FileType::BlockDevice, 0o660), "brw-rw----");
        assert_eq!(mode_string(FileType::Fifo, 0o644), "prw-r--r--");
        assert_eq!(mode_string(FileType::Socket, 0o755), "srwxr-xr-x");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(format_utc(u32::MAX), "2106-02-07 06:28");
    }
}
