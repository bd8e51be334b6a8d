//! squashbox-extract (work in progress).
