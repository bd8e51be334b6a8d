//! Entry-name validation and safe display.

/// Why a name is refused, if it is.
pub fn is_safe_name(name: &[u8]) -> bool {
    !(name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0))
}

/// Render raw name or path bytes for humans: invalid UTF-8 is replaced lossily, and control
/// characters and backslashes are escaped (`\n`, `\t`, `\x1b`, `\\`), so a hostile name cannot
/// inject terminal escape sequences or fake extra lines.
pub fn escape(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                for unit in c.to_string().bytes() {
                    out.push_str(&format!("\\x{unit:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Join a display path and a child name (`""` is the extraction root).
pub(crate) fn join(parent: &str, name: &[u8]) -> String {
    if parent.is_empty() {
        escape(name)
    } else {
        format!("{parent}/{}", escape(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b""[..], b".", b"..", b"../x", b"a/b", b"/", b"a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?} accepted");
        }
        for good in [&b"a"[..], b"...", b".hidden", b"x..", b"\xff\xfe", b" "] {
            assert!(is_safe_name(good), "{good:?} refused");
        }
    }

    #[test]
    fn escape_neutralises_control_characters() {
        assert_eq!(escape(b"plain"), "plain");
        assert_eq!(escape(b"a\nb"), "a\\nb");
        assert_eq!(escape(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(b"\xffz"), "\u{fffd}z");
        assert_eq!(escape("\u{85}".as_bytes()), "\\xc2\\x85");
    }
}
