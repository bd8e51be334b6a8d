//! squashbox-backup (work in progress).
