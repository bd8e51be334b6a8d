//! squashbox-testkit (work in progress).
