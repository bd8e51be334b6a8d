//! Memory stays bounded: a file much larger than the reader's caches is streamed, never held
//! whole. (Its own test binary, so the process high-water mark belongs to this test alone.)

use std::fs;
use std::io::Write;

use squashbox_extract::{extract, ExtractOptions};
use squashbox_format::Archive;
use squashbox_testkit::{mksquashfs, require_tool};

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn large_file_is_streamed_with_bounded_memory() {
    if !require_tool("mksquashfs") {
        return;
    }
    const MIB: usize = 1 << 20;
    const FILE_MIB: usize = 256;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let block: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    {
        let mut f = std::io::BufWriter::new(fs::File::create(src.join("big")).unwrap());
        for i in 0..FILE_MIB {
            // Vary each MiB so no two blocks are equal.
            let mut b = block.clone();
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            f.write_all(&b).unwrap();
        }
    }
    let image = tmp.path().join("image.sqfs");
    mksquashfs(&src, &image, &["-comp", "lz4"]);

    let before = peak_rss_kib();
    let archive = Archive::open_path(&image).unwrap();
    let dest = tmp.path().join("out");
    let summary = extract(&archive, None, &dest, &ExtractOptions::default()).unwrap();
    let after = peak_rss_kib();
    assert_eq!(summary.bytes, (FILE_MIB * MIB) as u64);
    let grown_mib = (after.saturating_sub(before)) / 1024;
    eprintln!("peak RSS growth: {grown_mib} MiB");
    assert!(
        grown_mib < (FILE_MIB / 4) as u64,
        "peak RSS grew by {grown_mib} MiB extracting a {FILE_MIB} MiB file"
    );
    // Content check without loading either file whole.
    let mut a = std::io::BufReader::new(fs::File::open(src.join("big")).unwrap());
    let mut b = std::io::BufReader::new(fs::File::open(dest.join("big")).unwrap());
    let mut ba = vec![0u8; MIB];
    let mut bb = vec![0u8; MIB];
    use std::io::Read;
    for i in 0..FILE_MIB {
        a.read_exact(&mut ba).unwrap();
        b.read_exact(&mut bb).unwrap();
        assert!(ba == bb, "MiB {i} differs");
    }
}
