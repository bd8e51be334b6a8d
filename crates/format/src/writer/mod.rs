//! The low-level, kernel-compatible image writer.
//!
//! Being designed by the writer work; see `docs/format.md` for the rules it follows.
