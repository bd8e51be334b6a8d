//! Hostile extended directory indexes and id tables.
//!
//! The images come from mksquashfs with uncompressed metadata (`-noI -noD -noF -noX`), so
//! structures can be patched in place. The rule under test: a lying directory index or id
//! table gives `Error::Corrupt` (or, where the lie is harmless, the right answer), never a
//! wrong answer, a panic or a hang. In particular a lookup must never report "not found" for
//! a name the listing holds because the index sent it to the wrong place.

use squashbox_format::{Archive, Error, InodeKind};
use squashbox_testkit::{mksquashfs, require_tool};

/// Entries in the large directory: fixed-width names (so index names can be swapped in
/// place), enough for several 8 KiB stretches and directory index entries.
const ENTRIES: usize = 3000;

fn name(i: usize) -> String {
    format!("entry{i:05}")
}

/// An uncompressed image of `/big` (ENTRIES empty files) and `/small` (one file with its own
/// uid and gid, so the id table has several entries).
fn build() -> Option<Vec<u8>> {
    // Without mksquashfs the caller skips, except under `CI=true` (scripts/test.sh installs
    // squashfs-tools).
    if !require_tool("mksquashfs") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = src.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::create_dir_all(src.join("small")).unwrap();
    std::fs::write(src.join("small/owned"), b"x").unwrap();
    for i in 0..ENTRIES {
        std::fs::write(big.join(name(i)), b"").unwrap();
    }
    let img = dir.path().join("image.sqfs");
    mksquashfs(
        &src,
        &img,
        &[
            "-quiet",
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-xattrs",
            "-p",
            "small/owned m 644 4242 4343",
        ],
    );
    Some(std::fs::read(&img).unwrap())
}

fn u16_at(image: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(image[at..at + 2].try_into().unwrap())
}

fn u64_at(image: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}

/// The inode table of an uncompressed image as a chain of blocks: (image offset of the
/// payload, payload length), so positions in the decoded chain map to image bytes.
struct Chain {
    blocks: Vec<(usize, usize)>,
    /// Image offset of the table (references count from here).
    start: usize,
}

impl Chain {
    fn inode_table(image: &[u8]) -> Chain {
        let start = u64_at(image, 64) as usize;
        let end = u64_at(image, 72) as usize;
        let mut blocks = Vec::new();
        let mut at = start;
        while at < end {
            let header = u16_at(image, at);
            assert!(header & 0x8000 != 0, "inode table block is compressed");
            let len = usize::from(header & 0x7FFF);
            blocks.push((at + 2, len));
            at += 2 + len;
        }
        Chain { blocks, start }
    }

    /// Position in the decoded chain of the inode at reference (block, offset).
    fn position(&self, block: u64, offset: u16) -> usize {
        let mut pos = 0;
        for &(payload, len) in &self.blocks {
            if payload - 2 == self.start + block as usize {
                return pos + usize::from(offset);
            }
            pos += len;
        }
        panic!("no inode table block at {block}");
    }

    fn image_offset(&self, mut pos: usize) -> usize {
        for &(payload, len) in &self.blocks {
            if pos < len {
                return payload + pos;
            }
            pos -= len;
        }
        panic!("position past the inode table");
    }

    fn read(&self, image: &[u8], pos: usize, len: usize) -> Vec<u8> {
        (pos..pos + len)
            .map(|p| image[self.image_offset(p)])
            .collect()
    }

    fn write(&self, image: &mut [u8], pos: usize, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            image[self.image_offset(pos + i)] = b;
        }
    }
}

/// One directory index entry as stored, with where it sits in the inode chain.
#[derive(Clone, Debug)]
struct IndexEntry {
    at: usize,
    listing_offset: u32,
    block: u32,
    name: Vec<u8>,
}

/// The large directory's inode and index, located in the image.
struct BigDir {
    chain: Chain,
    /// Chain position of the directory inode.
    inode: usize,
    block_start: u32,
    block_offset: u16,
    index: Vec<IndexEntry>,
}

impl BigDir {
    fn find(image: &[u8]) -> BigDir {
        let archive = Archive::open(image.to_vec()).unwrap();
        let big = archive.lookup_path("big").unwrap();
        let InodeKind::Directory {
            index_count,
            block_start,
            block_offset,
            ..
        } = big.kind
        else {
            panic!("big is not a directory");
        };
        let chain = Chain::inode_table(image);
        let inode = chain.position(big.inode_ref.block(), big.inode_ref.offset());
        assert_eq!(
            u16::from_le_bytes(chain.read(image, inode, 2).try_into().unwrap()),
            8,
            "big is an extended directory (type 8)"
        );
        let mut index = Vec::new();
        let mut at = inode + 40;
        for _ in 0..index_count {
            let fixed = chain.read(image, at, 12);
            let field = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().unwrap());
            let len = field(8) as usize + 1;
            index.push(IndexEntry {
                at,
                listing_offset: field(0),
                block: field(4),
                name: chain.read(image, at + 12, len),
            });
            at += 12 + len;
        }
        BigDir {
            chain,
            inode,
            block_start,
            block_offset,
            index,
        }
    }

    fn set_offset(&self, image: &mut [u8], i: usize, offset: u32) {
        self.chain
            .write(image, self.index[i].at, &offset.to_le_bytes());
    }

    fn set_block(&self, image: &mut [u8], i: usize, block: u32) {
        self.chain
            .write(image, self.index[i].at + 4, &block.to_le_bytes());
    }

    /// Replace entry `i`'s name with one of the same length.
    fn set_name(&self, image: &mut [u8], i: usize, name: &[u8]) {
        assert_eq!(name.len(), self.index[i].name.len());
        self.chain.write(image, self.index[i].at + 12, name);
    }

    fn set_index_count(&self, image: &mut [u8], count: u16) {
        self.chain
            .write(image, self.inode + 32, &count.to_le_bytes());
    }

    /// Index of `name` among the (sorted, fixed-width) entry names.
    fn entry_number(name: &[u8]) -> usize {
        std::str::from_utf8(&name[5..]).unwrap().parse().unwrap()
    }

    /// The 8 KiB stretch of the listing an index entry's header falls in.
    fn stretch(&self, i: usize) -> u64 {
        (u64::from(self.block_offset) + u64::from(self.index[i].listing_offset)) / 8192
    }
}

fn image_and_dir() -> Option<(Vec<u8>, BigDir)> {
    let image = build()?;
    let dir = BigDir::find(&image);
    assert!(
        dir.index.len() >= 4,
        "mksquashfs wrote {} index entries; the tests need at least 4",
        dir.index.len()
    );
    Some((image, dir))
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) -> String {
    match result {
        Err(Error::Corrupt { what, .. }) => what,
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
}

/// Look `i` up in /big: Ok(true) if found with the right name, Ok(false) if reported missing.
fn lookup(archive: &Archive, i: usize) -> Result<bool, Error> {
    let big = archive.lookup_path("big")?;
    let wanted = name(i);
    match archive.lookup(&big, wanted.as_bytes())? {
        Some(entry) => {
            assert_eq!(
                entry.name,
                wanted.as_bytes(),
                "lookup returned another entry"
            );
            Ok(true)
        }
        None => Ok(false),
    }
}

#[test]
fn intact_index_names_the_first_entry_of_each_header() {
    let Some((image, dir)) = image_and_dir() else {
        return;
    };
    // What the reader's checks rely on, as mksquashfs writes it.
    let archive = Archive::open(image).unwrap();
    let big = archive.lookup_path("big").unwrap();
    let entries: Vec<_> = archive
        .read_dir(&big)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(entries.len(), ENTRIES);
    for (i, entry) in dir.index.iter().enumerate() {
        let first = BigDir::entry_number(&entry.name);
        assert_eq!(entries[first].name, entry.name);
        // The entry before the header ends exactly where the header starts.
        assert_eq!(
            entries[first - 1].next_position - 3,
            u64::from(entry.listing_offset),
            "index entry {i}"
        );
        assert!(entry.block >= dir.block_start);
    }
    for i in 0..ENTRIES {
        assert!(lookup(&archive, i).unwrap(), "{}", name(i));
    }
}

#[test]
fn index_name_moved_back_is_corrupt_not_a_miss() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    // Entry 2's name becomes the name of the entry just before its header: still sorted
    // within the index, but a lookup of that entry now jumps past it. Trusting the index
    // would answer "not found" for an entry the listing holds.
    let first = BigDir::entry_number(&dir.index[2].name);
    let moved = name(first - 1);
    dir.set_name(&mut image, 2, moved.as_bytes());
    let archive = Archive::open(image).unwrap();
    let what = expect_corrupt(lookup(&archive, first - 1), "lookup through a lying index");
    assert!(what.contains("directory index names"), "{what}");
    // Names the lie does not touch still resolve.
    assert!(lookup(&archive, 0).unwrap());
    assert!(lookup(&archive, ENTRIES - 1).unwrap());
}

#[test]
fn index_name_moved_forward_is_detected_when_the_scan_crosses_the_header() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    // Entry 2 now names the second entry of its header: a lookup of the real first entry
    // starts at entry 1's header and scans into entry 2's, where the index is checked.
    let first = BigDir::entry_number(&dir.index[2].name);
    dir.set_name(&mut image, 2, name(first + 1).as_bytes());
    let archive = Archive::open(image).unwrap();
    let what = expect_corrupt(lookup(&archive, first), "scan across a lying index entry");
    assert!(what.contains("directory index names"), "{what}");
}

#[test]
fn index_names_out_of_order_are_corrupt() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    dir.set_name(&mut image, 1, &dir.index[2].name.clone());
    dir.set_name(&mut image, 2, &dir.index[1].name.clone());
    let archive = Archive::open(image).unwrap();
    let what = expect_corrupt(lookup(&archive, ENTRIES - 1), "unsorted index names");
    assert!(what.contains("does not sort after"), "{what}");
}

#[test]
fn index_offsets_not_increasing_are_corrupt() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    dir.set_offset(&mut image, 2, dir.index[1].listing_offset);
    let archive = Archive::open(image).unwrap();
    let what = expect_corrupt(lookup(&archive, ENTRIES - 1), "repeated index offset");
    assert!(what.contains("does not follow"), "{what}");
}

#[test]
fn index_offset_past_the_listing_is_corrupt() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    let last = dir.index.len() - 1;
    dir.set_offset(&mut image, last, u32::MAX - 1);
    let archive = Archive::open(image).unwrap();
    let what = expect_corrupt(lookup(&archive, ENTRIES - 1), "index offset past listing");
    assert!(what.contains("past the listing"), "{what}");
}

#[test]
fn index_offset_inside_a_header_is_corrupt() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    // Four bytes into the header: the jump lands on the header's inode block field. Whatever
    // it parses as, the header the index promised is not there.
    let first = BigDir::entry_number(&dir.index[2].name);
    dir.set_offset(&mut image, 2, dir.index[2].listing_offset + 4);
    let archive = Archive::open(image).unwrap();
    expect_corrupt(lookup(&archive, first), "jump into the middle of a header");
    expect_corrupt(
        lookup(&archive, first + 5),
        "jump into the middle of a header",
    );
}

#[test]
fn index_block_inconsistent_with_its_offset_is_corrupt() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    let i = (1..dir.index.len())
        .find(|&i| dir.stretch(i) > 0)
        .expect("an index entry past the listing's first block");
    // Past the first 8 KiB of the listing, the header cannot be in the listing's first block.
    dir.set_block(&mut image, i, dir.block_start);
    let archive = Archive::open(image.clone()).unwrap();
    let what = expect_corrupt(
        lookup(&archive, ENTRIES - 1),
        "index block at listing start",
    );
    assert!(what.contains("inconsistent"), "{what}");

    // A block a few bytes off is consistent with the offsets but is not a block start: the
    // read fails instead of parsing some other listing.
    let first = BigDir::entry_number(&dir.index[i].name);
    dir.set_block(&mut image, i, dir.index[i].block + 8);
    let archive = Archive::open(image).unwrap();
    let _ = expect_corrupt(lookup(&archive, first), "index block off by 8");
}

#[test]
fn index_count_beyond_the_index_is_an_error() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    // One more entry than stored: the reader decodes whatever follows the inode as an index
    // entry, which cannot describe this listing.
    dir.set_index_count(&mut image, dir.index.len() as u16 + 1);
    let archive = Archive::open(image).unwrap();
    assert!(lookup(&archive, ENTRIES - 1).is_err());
    // Lookups that stop before the bogus entry are unaffected.
    assert!(lookup(&archive, 0).unwrap());
}

#[test]
fn dropping_the_index_falls_back_to_a_full_scan() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    // An index is an optimisation: without it every answer must still be right.
    dir.set_index_count(&mut image, 0);
    let archive = Archive::open(image).unwrap();
    for i in (0..ENTRIES).step_by(7).chain([ENTRIES - 1]) {
        assert!(lookup(&archive, i).unwrap(), "{}", name(i));
    }
    let big = archive.lookup_path("big").unwrap();
    assert!(archive.lookup(&big, b"entry99999").unwrap().is_none());
}

#[test]
fn resuming_through_a_lying_index_is_corrupt() {
    let Some((mut image, dir)) = image_and_dir() else {
        return;
    };
    let first = BigDir::entry_number(&dir.index[2].name);
    dir.set_name(&mut image, 2, name(first - 1).as_bytes());
    let archive = Archive::open(image.clone()).unwrap();
    let big = archive.lookup_path("big").unwrap();
    // A position inside entry 2's header: the read jumps there through the index.
    let position = u64::from(dir.index[2].listing_offset) + 3 + 40;
    let mut entries = archive.read_dir_from(&big, position).unwrap();
    let what = expect_corrupt(entries.next().unwrap(), "resume through a lying index");
    assert!(what.contains("directory index names"), "{what}");
}

/// Names whose lookups exercise each index entry: the first entry of every header, the one
/// before it, the one after it, and the ends.
fn probe_names(dir: &BigDir) -> Vec<usize> {
    let mut probes = vec![0, 1, ENTRIES - 1];
    for entry in &dir.index {
        let first = BigDir::entry_number(&entry.name);
        probes.extend([first - 1, first, first + 1]);
    }
    probes.sort_unstable();
    probes.dedup();
    probes
}

#[test]
fn every_index_byte_flip_gives_the_right_answer_or_an_error() {
    let Some((image, dir)) = image_and_dir() else {
        return;
    };
    let probes = probe_names(&dir);
    let reference = Archive::open(image.clone()).unwrap();
    let big = reference.lookup_path("big").unwrap();
    let listing: Vec<_> = reference
        .read_dir(&big)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let resume_points: Vec<usize> = dir
        .index
        .iter()
        .map(|e| BigDir::entry_number(&e.name))
        .collect();

    // The index count (2 bytes at inode + 32) and every byte of every index entry.
    let last = dir.index.last().unwrap();
    let end = last.at + 12 + last.name.len();
    let positions: Vec<usize> = (dir.inode + 32..dir.inode + 34)
        .chain(dir.index[0].at..end)
        .collect();
    let mut errors = 0usize;
    let mut cases = 0usize;
    for &pos in &positions {
        for flip in [0x01u8, 0x10, 0x80, 0xFF] {
            let mut patched = image.clone();
            let at = dir.chain.image_offset(pos);
            patched[at] ^= flip;
            cases += 1;
            let archive = Archive::open(patched).unwrap();
            let Ok(big) = archive.lookup_path("big") else {
                errors += 1;
                continue;
            };
            for &i in &probes {
                match lookup(&archive, i) {
                    Ok(true) => {}
                    Ok(false) => panic!(
                        "byte {pos} ^ {flip:#x}: lookup of {} says not found",
                        name(i)
                    ),
                    Err(_) => errors += 1,
                }
            }
            // Resumed listings: the exact remainder of the listing, or an error.
            for &first in &resume_points {
                let position = listing[first].next_position;
                let Ok(read) = archive.read_dir_from(&big, position) else {
                    errors += 1;
                    continue;
                };
                for (k, item) in read.enumerate() {
                    match item {
                        Ok(entry) => assert_eq!(
                            entry,
                            listing[first + 1 + k],
                            "byte {pos} ^ {flip:#x}: resume after {}",
                            name(first)
                        ),
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
            }
        }
    }
    // The sweep must actually hit the checks, not just harmless bytes.
    assert!(
        errors > cases,
        "only {errors} errors over {cases} patched images"
    );
}

// ---- id table ----

fn id_count(image: &[u8]) -> u16 {
    u16_at(image, 26)
}

fn set_id_count(image: &mut [u8], count: u16) {
    image[26..28].copy_from_slice(&count.to_le_bytes());
}

#[test]
fn id_count_below_the_table_is_corrupt() {
    let Some(mut image) = build() else {
        return;
    };
    let count = id_count(&image);
    assert!(count >= 2, "the image has {count} ids");
    // One id fewer than the block holds: the table and the count disagree. Accepting it
    // would silently drop an owner.
    set_id_count(&mut image, count - 1);
    let what = expect_corrupt(Archive::open(image), "id count one short");
    assert!(what.contains("id table"), "{what}");
}

#[test]
fn id_count_above_the_table_is_corrupt() {
    let Some(mut image) = build() else {
        return;
    };
    let count = id_count(&image);
    set_id_count(&mut image, count + 1);
    let what = expect_corrupt(Archive::open(image), "id count one too many");
    assert!(what.contains("id table"), "{what}");
}

#[test]
fn id_count_needing_a_second_block_is_corrupt() {
    let Some(mut image) = build() else {
        return;
    };
    // 2049 ids need two metadata blocks, so two index pointers, which the image lacks.
    set_id_count(&mut image, 2049);
    expect_corrupt(Archive::open(image), "id count needing two blocks");
}

#[test]
fn id_table_index_must_point_at_the_table_block() {
    let Some(mut image) = build() else {
        return;
    };
    let index = u64_at(&image, 48) as usize;
    let block = u64_at(&image, index);
    // Two bytes into the block: the "block" now starts inside the payload.
    image[index..index + 8].copy_from_slice(&(block + 2).to_le_bytes());
    assert!(Archive::open(image).is_err());
}

/// Chain position of `path`'s inode.
fn inode_position(image: &[u8], path: &str) -> (Chain, usize) {
    let archive = Archive::open(image.to_vec()).unwrap();
    let inode = archive.lookup_path(path).unwrap();
    let chain = Chain::inode_table(image);
    let pos = chain.position(inode.inode_ref.block(), inode.inode_ref.offset());
    (chain, pos)
}

#[test]
fn uid_and_gid_indexes_out_of_range_are_corrupt() {
    let Some(image) = build() else {
        return;
    };
    let count = id_count(&image);
    let (chain, pos) = inode_position(&image, "small/owned");
    {
        let archive = Archive::open(image.clone()).unwrap();
        let owned = archive.lookup_path("small/owned").unwrap();
        assert_eq!((owned.uid, owned.gid), (4242, 4343));
    }
    // uid index at inode + 4, gid index at inode + 6.
    for (field, label) in [(4usize, "uid"), (6, "gid")] {
        for bad in [count, count + 1, u16::MAX] {
            let mut patched = image.clone();
            chain.write(&mut patched, pos + field, &bad.to_le_bytes());
            let archive = Archive::open(patched).unwrap();
            let what = expect_corrupt(archive.lookup_path("small/owned"), label);
            assert!(what.contains("id index"), "{label} {bad}: {what}");
            // The rest of the tree is unaffected.
            archive.lookup_path("big/entry00000").unwrap();
        }
    }
}
