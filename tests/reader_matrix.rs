//! The reader against Debian's mksquashfs: the edge tree is packed with every compressor, the
//! three block sizes and the layout-changing options; each image is then
//! (1) extracted with `squashbox extract` and compared field by field with the source tree, and
//! (2) walked through the library API (`Archive::walk`, `read_at`, `read_link`, `xattrs`) into a
//! manifest compared with the source the same way.
//!
//! Every compressor gets one case with the full tree, including the >4 GiB sparse file.

mod common;

use std::time::{Duration, Instant};

use squashbox_format::Archive;
use squashbox_testkit::manifest::assert_manifests_equal;
use squashbox_testkit::{
    is_root, mksquashfs, require_squashbox_bin, require_tool, DiffOptions, Manifest,
};

use common::{base_tree, cli_extract, full_tree, manifest_of_image, SourceTree};

/// One image to build and check.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    full: bool,
    xattrs: bool,
}

fn run_case(case: Case) {
    if !require_tool("mksquashfs") {
        return;
    }
    let Some(bin) = require_squashbox_bin() else {
        return;
    };
    let tree: &SourceTree = if case.full { full_tree() } else { base_tree() };
    let tmp = squashbox_testkit::tempfile::tempdir().unwrap();
    let img = tmp.path().join(format!("{}.sqsh", case.name));
    let t = Instant::now();
    mksquashfs(&tree.root, &img, case.args);
    eprintln!("{}: mksquashfs {:.1?}", case.name, t.elapsed());

    let mut opts = DiffOptions {
        // As a user, extraction cannot restore other owners.
        ignore_owners: !is_root(),
        ignore_xattrs: !case.xattrs,
        ..DiffOptions::default()
    };
    if !is_root() {
        // Only root may read trusted.* xattrs back.
        opts.ignore_xattr_prefixes.push(b"trusted.".to_vec());
    }

    // (2) The library walk.
    let t = Instant::now();
    let archive = Archive::open_path(&img).unwrap_or_else(|e| panic!("{}: open: {e}", case.name));
    let walked = manifest_of_image(&archive).unwrap_or_else(|e| panic!("{}: walk: {e}", case.name));
    assert_manifests_equal(
        &tree.manifest,
        &walked,
        &opts,
        &format!("{}: source vs library walk", case.name),
    );
    if !case.xattrs {
        assert!(
            !walked.has_xattrs(),
            "{}: image built without xattrs has some",
            case.name
        );
    }
    eprintln!("{}: library walk {:.1?}", case.name, t.elapsed());

    // (1) The CLI extraction.
    let t = Instant::now();
    let dest = tmp.path().join("out");
    let out = cli_extract(&bin, &img, &dest, Duration::from_secs(600));
    assert!(
        out.success(),
        "{}: squashbox extract: {}",
        case.name,
        out.describe()
    );
    let extracted = Manifest::scan(&dest).unwrap();
    assert_manifests_equal(
        &tree.manifest,
        &extracted,
        &opts,
        &format!("{}: source vs squashbox extract", case.name),
    );
    if !case.xattrs {
        assert!(
            !extracted.has_xattrs(),
            "{}: extraction created xattrs",
            case.name
        );
    }
    eprintln!("{}: extract + compare {:.1?}", case.name, t.elapsed());
}

macro_rules! case {
    ($test:ident, [$($arg:expr),*], full = $full:expr, xattrs = $x:expr) => {
        #[test]
        fn $test() {
            run_case(Case {
                name: stringify!($test),
                args: &[$($arg),*],
                full: $full,
                xattrs: $x,
            });
        }
    };
}

// Every compressor, default layout (128 KiB blocks), full tree with the >4 GiB sparse file.
case!(gzip_full, ["-comp", "gzip"], full = true, xattrs = true);
case!(xz_full, ["-comp", "xz"], full = true, xattrs = true);
case!(lzo_full, ["-comp", "lzo"], full = true, xattrs = true);
case!(lz4_full, ["-comp", "lz4"], full = true, xattrs = true);
case!(zstd_full, ["-comp", "zstd"], full = true, xattrs = true);

// Block sizes at both ends, with varied compressors and compressor options.
case!(
    gzip_block_4k,
    ["-comp", "gzip", "-b", "4096"],
    full = false,
    xattrs = true
);
case!(
    zstd_block_4k,
    ["-comp", "zstd", "-b", "4K", "-Xcompression-level", "19"],
    full = false,
    xattrs = true
);
case!(
    xz_block_1m,
    ["-comp", "xz", "-b", "1M", "-Xbcj", "x86"],
    full = false,
    xattrs = true
);
case!(
    lz4_block_1m_hc,
    ["-comp", "lz4", "-b", "1M", "-Xhc"],
    full = false,
    xattrs = true
);
case!(
    lzo_block_4k,
    ["-comp", "lzo", "-b", "4K"],
    full = false,
    xattrs = true
);

// Layout options.
case!(
    no_fragments,
    ["-comp", "zstd", "-no-fragments"],
    full = false,
    xattrs = true
);
case!(
    always_use_fragments,
    ["-comp", "gzip", "-always-use-fragments"],
    full = false,
    xattrs = true
);
case!(
    no_duplicates,
    ["-comp", "lz4", "-no-duplicates"],
    full = false,
    xattrs = true
);
case!(
    no_xattrs,
    ["-comp", "xz", "-no-xattrs"],
    full = false,
    xattrs = false
);
case!(
    uncompressed,
    ["-comp", "gzip", "-noI", "-noD", "-noF", "-noX"],
    full = false,
    xattrs = true
);
case!(
    no_exports_no_sparse,
    ["-comp", "gzip", "-no-exports", "-no-sparse"],
    full = false,
    xattrs = true
);
