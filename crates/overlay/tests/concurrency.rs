//! Concurrency: several threads create, write, copy up, rename and list in the same
//! directories at once. The fixture's watchdog turns a deadlock into a failure; afterwards every
//! write must be there (nothing lost, nothing duplicated) and listings must be exact.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;

const THREADS: usize = 4;
const FILES_PER_THREAD: usize = 60;
const LOWER_FILES: usize = 200;

fn tree(root: &Path) {
    fs::create_dir(root.join("d")).unwrap();
    for i in 0..LOWER_FILES {
        fs::write(root.join(format!("d/l{i:03}")), format!("lower {i}\n")).unwrap();
    }
    fs::create_dir_all(root.join("x/inner")).unwrap();
    fs::write(root.join("x/inner/keep"), b"keep").unwrap();
    fs::write(root.join("shared"), vec![0u8; 4 * 65536]).unwrap();
}

fn run(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let fx = Fixture::with_kind(tree, kind);
    let mnt = fx.mnt.clone();
    let stop = Arc::new(AtomicBool::new(false));

    // Listers: read the directory and stat what they see while it changes.
    let mut listers = Vec::new();
    for _ in 0..2 {
        let (mnt, stop) = (mnt.clone(), stop.clone());
        listers.push(std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for e in fs::read_dir(mnt.join("d")).unwrap() {
                    let e = e.unwrap();
                    match fs::symlink_metadata(e.path()) {
                        Ok(_) => {}
                        Err(err) => assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}"),
                    }
                }
                // The renamed directory is always somewhere, with its lower content.
                let x = if mnt.join("x").exists() { "x" } else { "y" };
                let _ = fs::read(mnt.join(x).join("inner/keep"));
                rounds += 1;
            }
            rounds
        }));
    }

    // A renamer moving a merged lower directory back and forth (redirects under load).
    let renamer = {
        let (mnt, stop) = (mnt.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (a, b) = if n % 2 == 0 { ("x", "y") } else { ("y", "x") };
                fs::rename(mnt.join(a), mnt.join(b)).unwrap();
                n += 1;
            }
            n
        })
    };

    // Writers: create/write/rename their own files, append to their share of lower files
    // (copy-up races with listers), and write their stripe of one shared file.
    let mut writers = Vec::new();
    for t in 0..THREADS {
        let mnt = mnt.clone();
        writers.push(std::thread::spawn(move || {
            let shared = fs::File::options()
                .write(true)
                .open(mnt.join("shared"))
                .unwrap();
            for i in 0..FILES_PER_THREAD {
                let tmp = mnt.join(format!("d/t{t}_{i}"));
                let mut f = fs::File::create(&tmp).unwrap();
                writeln!(f, "thread {t} file {i}").unwrap();
                drop(f);
                fs::rename(&tmp, mnt.join(format!("d/r{t}_{i}"))).unwrap();
                let lower = mnt.join(format!("d/l{:03}", i * THREADS + t));
                if i * THREADS + t < LOWER_FILES {
                    let mut f = fs::File::options().append(true).open(&lower).unwrap();
                    writeln!(f, "appended by {t}").unwrap();
                }
                let stripe = vec![(t + 1) as u8; 1024];
                shared
                    .write_all_at(&stripe, ((i * THREADS + t) * 1024) as u64)
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.join().expect("writer panicked");
    }
    stop.store(true, Ordering::Relaxed);
    let renames = renamer.join().expect("renamer panicked");
    for l in listers {
        assert!(l.join().expect("lister panicked") > 0);
    }
    assert!(renames > 0);

    // Nothing lost: exact listing and exact contents.
    let names: BTreeSet<String> = fs::read_dir(mnt.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut want = BTreeSet::new();
    for t in 0..THREADS {
        for i in 0..FILES_PER_THREAD {
            want.insert(format!("r{t}_{i}"));
            assert_eq!(
                fs::read_to_string(mnt.join(format!("d/r{t}_{i}"))).unwrap(),
                format!("thread {t} file {i}\n")
            );
        }
    }
    for i in 0..LOWER_FILES {
        want.insert(format!("l{i:03}"));
        let got = fs::read_to_string(mnt.join(format!("d/l{i:03}"))).unwrap();
        let expect = if i < THREADS * FILES_PER_THREAD {
            format!("lower {i}\nappended by {}\n", i % THREADS)
        } else {
            format!("lower {i}\n")
        };
        assert_eq!(got, expect, "d/l{i:03}");
    }
    assert_eq!(names, want);
    let shared = fs::read(mnt.join("shared")).unwrap();
    for k in 0..THREADS * FILES_PER_THREAD {
        assert!(
            shared[k * 1024..(k + 1) * 1024]
                .iter()
                .all(|b| *b == (k % THREADS + 1) as u8),
            "stripe {k} of the shared file"
        );
    }
    let x = if mnt.join("x").exists() { "x" } else { "y" };
    assert_eq!(fs::read(mnt.join(x).join("inner/keep")).unwrap(), b"keep");
}

#[test]
fn concurrent_writers_renamers_and_listers_image() {
    run(LowerKind::Image);
}

#[test]
fn concurrent_writers_renamers_and_listers_kernel_dir() {
    run(LowerKind::KernelDir);
}
