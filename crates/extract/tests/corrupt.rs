//! Randomly corrupted images: extraction returns Ok or a typed error — never a panic or a hang
//! — and never writes outside the destination; a failed extraction leaves no destination.

mod common;

use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use common::list_names;
use squashbox_extract::{extract, ExtractOptions};
use squashbox_format::Archive;
use squashbox_testkit::{mksquashfs, require_tool, EdgeTree, EdgeTreeOptions};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn corrupted_images_fail_cleanly_inside_the_destination() {
    if !require_tool("mksquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let tree = EdgeTreeOptions {
        block_sizes: vec![4096],
        ..EdgeTreeOptions::cheap()
    };
    EdgeTree::create(&src, &tree).unwrap();
    let image = tmp.path().join("image.sqfs");
    // Uncompressed structures so flipped bytes reach the parsers instead of a codec check.
    mksquashfs(
        &src,
        &image,
        &["-b", "4096", "-noI", "-noD", "-noF", "-noX"],
    );
    let pristine = fs::read(&image).unwrap();
    let u64_at = |p: usize| u64::from_le_bytes(pristine[p..p + 8].try_into().unwrap()) as usize;
    let (tables_start, tables_end) = (u64_at(64), u64_at(40));
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();

    let mut rng = Rng(0x5EED_CAFE_F00D_u64);
    let (mut ok, mut failed) = (0, 0);
    for round in 0..200 {
        let mut data = pristine.clone();
        // Flip 1-4 bits, mostly in the metadata tables (inode table start to bytes_used),
        // sometimes anywhere (superblock, data).
        for _ in 0..1 + rng.next() % 4 {
            let pos = if rng.next() % 4 == 0 {
                (rng.next() % data.len() as u64) as usize
            } else {
                tables_start + (rng.next() % (tables_end - tables_start) as u64) as usize
            };
            data[pos] ^= 1 << (rng.next() % 8);
        }
        let boxdir = work.join(format!("box{round}"));
        fs::create_dir(&boxdir).unwrap();
        let dest = boxdir.join("dest");
        let (tx, rx) = mpsc::channel();
        let dest2 = dest.clone();
        std::thread::spawn(move || {
            let result = Archive::open(data).map(|archive| {
                let options = ExtractOptions {
                    threads: 2,
                    ..ExtractOptions::default()
                };
                extract(&archive, None, &dest2, &options).map(|_| ())
            });
            let _ = tx.send(match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            });
        });
        let outcome = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("round {round}: extraction hung or panicked: {e}"));
        let names = list_names(&boxdir);
        match outcome {
            Ok(()) => {
                ok += 1;
                assert_eq!(
                    names,
                    [b"dest".to_vec()].into_iter().collect(),
                    "round {round}"
                );
            }
            Err(message) => {
                failed += 1;
                assert!(!message.is_empty());
                assert!(
                    names.is_empty(),
                    "round {round}: left {names:?} after: {message}"
                );
            }
        }
        // Best effort: tempdir cleanup removes whatever remains.
        let _ = fs::remove_dir_all(&boxdir);
    }
    eprintln!("{ok} corrupted images extracted, {failed} refused");
    assert!(failed > 0, "no corruption was ever detected");
}
