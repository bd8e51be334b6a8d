//! squashbox-overlay (work in progress).
