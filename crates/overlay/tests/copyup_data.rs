//! Copy-up of large lower files: blocks an image stores verbatim are copied inside the kernel
//! from the image file, the rest in chunks through a read-ahead thread, so the data must
//! arrive complete and in order, holes must stay holes, and a failure must not leave a
//! partial file. Checked for both lower kinds (our reader, and a kernel squashfs mount used
//! as a directory layer).

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};

use common::{append, can_run, Fixture, LowerKind};
use squashbox_overlay::OverlayOptions;

const MIB: u64 = 1 << 20;

/// Deterministic incompressible bytes (so blocks are stored as they are).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    squashbox_testkit::tree::content_bytes(seed, len, false)
}

/// `data`: 9 MiB + 77 bytes with a 3 MiB hole in the middle and data on both sides and in
/// the fragment tail; `small`: under one chunk.
fn populate(root: &std::path::Path) {
    let f = fs::File::create(root.join("data")).unwrap();
    f.write_all_at(&pattern((2 * MIB) as usize + 5, 1), 0)
        .unwrap();
    f.write_all_at(&pattern((4 * MIB) as usize, 2), 5 * MIB)
        .unwrap();
    f.write_all_at(&pattern(77, 3), 9 * MIB).unwrap();
    fs::write(root.join("small"), pattern(1000, 4)).unwrap();
}

fn expected(root: &std::path::Path, name: &str) -> Vec<u8> {
    fs::read(root.join(name)).unwrap()
}

fn check(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let fx = Fixture::with_options(populate, OverlayOptions::default(), kind);
    for name in ["data", "small"] {
        let mut want = expected(&fx.lower_src, name);
        append(&fx.m(name), b"!");
        want.push(b'!');
        let upper = fs::read(fx.u(name)).unwrap();
        assert_eq!(upper.len(), want.len(), "{name}: size of the copy");
        assert!(upper == want, "{name}: copied data differs ({kind:?})");
        assert!(
            fs::read(fx.m(name)).unwrap() == want,
            "{name}: through the mount"
        );
    }
    // The 3 MiB hole (at 128 KiB granularity, at least 2.5 MiB of it) is not allocated.
    let m = fs::metadata(fx.u("data")).unwrap();
    let allocated = m.blocks() * 512;
    assert!(
        allocated <= m.len() - 5 * MIB / 2,
        "holes were filled: {allocated} bytes allocated for {} ({kind:?})",
        m.len()
    );
    // Nothing is left behind in the work directory.
    let leftovers: Vec<_> = fs::read_dir(&fx.work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("#sqb."))
        .collect();
    assert!(leftovers.is_empty(), "work dir leftovers: {leftovers:?}");
}

#[test]
fn large_copy_up_from_image_is_complete_and_sparse() {
    check(LowerKind::Image);
}

#[test]
fn large_copy_up_from_directory_layer_is_complete_and_sparse() {
    check(LowerKind::KernelDir);
}
