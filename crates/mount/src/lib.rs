//! squashbox-mount (work in progress).
