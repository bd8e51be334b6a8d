//! A 10,000-entry directory: the extended directory index must make lookups and resumed
//! listings cheap, and resumable positions must behave like the kernel's f_pos.

mod reader_common;

use std::time::Instant;

use reader_common::*;
use squashbox_format::{Archive, InodeKind};

const ENTRIES: usize = 10_000;

fn name(i: usize) -> String {
    // Varying lengths so headers and block boundaries fall at irregular places.
    format!("entry_{i:05}_{}", "x".repeat(i % 37))
}

fn build() -> Option<(tempfile::TempDir, Archive)> {
    if !require_tool("mksquashfs") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = src.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..ENTRIES {
        let path = big.join(name(i));
        if i % 1000 == 7 {
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, i.to_string()).unwrap();
        }
    }
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &[]);
    let archive = Archive::open_path(&img).unwrap();
    Some((dir, archive))
}

#[test]
fn listing_is_complete_sorted_and_positions_resume() {
    let Some((_dir, archive)) = build() else {
        return;
    };
    let big = archive.lookup_path("big").unwrap();
    let InodeKind::Directory {
        index_count,
        file_size,
        ..
    } = big.kind
    else {
        panic!("not a directory");
    };
    assert!(
        index_count > 5,
        "mksquashfs writes a directory index ({index_count})"
    );

    let entries: Vec<_> = archive
        .read_dir(&big)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut expected: Vec<String> = (0..ENTRIES).map(name).collect();
    expected.sort();
    let got: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(entries.last().unwrap().next_position, u64::from(file_size));
    assert!(entries
        .windows(2)
        .all(|w| w[0].next_position < w[1].next_position));
    assert!(entries[0].next_position > 3);

    // Resume after every 97th entry and near the ends.
    let mut resume_points: Vec<usize> = (0..ENTRIES).step_by(97).collect();
    resume_points.extend([1, ENTRIES - 2, ENTRIES - 1]);
    for i in resume_points {
        let rest: Vec<_> = archive
            .read_dir_from(&big, entries[i].next_position)
            .unwrap()
            .take(3)
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<_> = entries[i + 1..].iter().take(3).cloned().collect();
        assert_eq!(rest, want, "resume after entry {i}");
    }
    // Positions 0..=3 mean the start; past the end means nothing.
    for start in 0..=3 {
        let first = archive
            .read_dir_from(&big, start)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(first, entries[0]);
    }
    assert!(archive
        .read_dir_from(&big, u64::from(file_size))
        .unwrap()
        .next()
        .is_none());
    assert!(archive
        .read_dir_from(&big, u64::MAX)
        .unwrap()
        .next()
        .is_none());

    // Resuming near the end jumps through the index instead of re-reading the listing.
    let before = archive.stats().metadata_fetches;
    let tail: Vec<_> = archive
        .read_dir_from(&big, entries[ENTRIES - 10].next_position)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let resume_fetches = archive.stats().metadata_fetches - before;
    assert_eq!(tail.len(), 9);
    let before = archive.stats().metadata_fetches;
    assert_eq!(archive.read_dir(&big).unwrap().count(), ENTRIES);
    let scan_fetches = archive.stats().metadata_fetches - before;
    assert!(
        resume_fetches * 4 < scan_fetches,
        "resume used {resume_fetches} block fetches, a full scan {scan_fetches}"
    );
}

#[test]
fn lookup_uses_the_directory_index() {
    let Some((_dir, archive)) = build() else {
        return;
    };
    let big = archive.lookup_path("big").unwrap();
    let before = archive.stats().metadata_fetches;
    assert_eq!(archive.read_dir(&big).unwrap().count(), ENTRIES);
    let scan_fetches = archive.stats().metadata_fetches - before;
    assert!(
        scan_fetches > 20,
        "listing spans many blocks ({scan_fetches})"
    );

    let mut sorted: Vec<String> = (0..ENTRIES).map(name).collect();
    sorted.sort();
    let mut worst = 0;
    for probe in [
        sorted[0].clone(),
        sorted[ENTRIES / 2].clone(),
        sorted[ENTRIES - 1].clone(),
        "entry_09999_zzz".to_string(),
        "zzzz".to_string(),
        "a".to_string(),
    ] {
        let before = archive.stats().metadata_fetches;
        let found = archive.lookup(&big, probe.as_bytes()).unwrap();
        worst = worst.max(archive.stats().metadata_fetches - before);
        assert_eq!(found.is_some(), sorted.contains(&probe), "{probe}");
        if let Some(entry) = found {
            assert_eq!(entry.name, probe.as_bytes());
            let inode = archive.entry_inode(&big, &entry).unwrap();
            assert_eq!(inode.number, entry.inode_number);
        }
    }
    assert!(
        worst <= 8 && worst * 4 < scan_fetches,
        "a lookup fetched {worst} metadata blocks; a full scan fetches {scan_fetches}"
    );

    // Every name resolves to the right content.
    for i in (0..ENTRIES).step_by(331) {
        let inode = archive.lookup_path(format!("big/{}", name(i))).unwrap();
        if !inode.is_dir() {
            assert_eq!(read_all(&archive, &inode, 64), i.to_string().as_bytes());
        }
    }

    let start = Instant::now();
    let rounds = 2000;
    for i in 0..rounds {
        let probe = &sorted[(i * 7919) % ENTRIES];
        assert!(archive.lookup(&big, probe.as_bytes()).unwrap().is_some());
    }
    let per_lookup = start.elapsed() / rounds as u32;
    eprintln!("lookup in a {ENTRIES}-entry directory: {per_lookup:?} per lookup (cached)");
}
