//! Helpers of the extraction tests that `squashbox-testkit` does not offer: the names in a
//! directory (canary checks) and patching bytes of an image in place. Trees, tool checks,
//! `mksquashfs` and tree comparison come from the testkit.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Names inside `dir` (non-recursive), for canary checks.
pub fn list_names(dir: &Path) -> BTreeSet<Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect()
}

/// Byte position of the unique occurrence of `needle` in `data` (panics unless exactly one).
pub fn find_unique(data: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = data
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one {:?} in image",
        String::from_utf8_lossy(needle)
    );
    hits[0]
}

/// Replace the unique occurrence of `from` in `image` by `to` (same length).
pub fn patch_unique(image: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut data = fs::read(image).unwrap();
    let at = find_unique(&data, from);
    data[at..at + to.len()].copy_from_slice(to);
    fs::write(image, data).unwrap();
}
