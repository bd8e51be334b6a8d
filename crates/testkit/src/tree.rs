//! The edge-case tree: one directory holding every case SquashFS writers, readers and
//! extractors get wrong.
//!
//! | dir        | what                                                                       |
//! |------------|----------------------------------------------------------------------------|
//! | `types/`   | regular, empty, dir, symlinks (short, 4000-byte, dangling, absolute), char and block devices incl. (4095, 1048575) and 0:0, fifo, socket |
//! | `links/`   | hard links: 3 names across directories, a pair, a pair of empty files, a fifo pair, optionally a symlink pair |
//! | `sparse/`  | all-hole files (block multiple and not), data islands, leading hole, optional >4 GiB file |
//! | `sizes/`   | 0, 1, bs-1, bs, bs+1, 3bs+7 for each block size; several-MiB files, compressible and not |
//! | `dups/`    | identical files (multi-block and fragment-sized), identical block-aligned files that are also another file's first blocks, same-prefix and same-size different files |
//! | `xattrs/`  | user/trusted/security, empty, 3000-byte, repeated values, many names, on dirs and symlinks |
//! | `owners/`  | uid/gid 0, 65534, 65535, 65536, 2^32-2                                      |
//! | `modes/`   | setuid, setgid, sticky, 07777, 0000, a read-only directory with content    |
//! | `mtimes/`  | mtime 0 and 2^32-1 on files, dirs and symlinks                             |
//! | `names/`   | 255-byte names (ASCII and multi-byte UTF-8), non-UTF-8, newline, leading dash, dots |
//! | `big/`     | a directory of 10,001 entries (optional)                                    |
//! | `deep/`    | 60 levels of nesting                                                       |
//!
//! Everything else gets mtime [`DEFAULT_MTIME`]; contents come from a fixed-seed generator, so
//! two trees created with the same options are identical.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, FileExt};
use std::path::{Path, PathBuf};

use crate::sys;

/// mtime of every entry without a special one.
pub const DEFAULT_MTIME: i64 = 1_700_000_000;
/// The largest mtime SquashFS can store.
pub const MAX_MTIME: i64 = u32::MAX as i64;
/// The largest uid/gid usable on Linux (`(uid_t)-1` is reserved).
pub const MAX_ID: u32 = u32::MAX - 1;
/// The largest device major/minor Linux encodes: 12 and 20 bits.
pub const MAX_MAJOR: u32 = 4095;
/// See [`MAX_MAJOR`].
pub const MAX_MINOR: u32 = 1_048_575;
/// Relative path of the optional >4 GiB sparse file.
pub const HUGE_SPARSE_PATH: &str = "sparse/huge_over_4g";
/// Size of the >4 GiB sparse file.
pub const HUGE_SPARSE_SIZE: u64 = (4 << 30) + (1 << 20) + 3;
/// Relative path of the big directory.
pub const BIG_DIR_PATH: &str = "big";

/// Which parts of the tree to create.
#[derive(Clone, Debug)]
pub struct EdgeTreeOptions {
    /// Device nodes (needs root).
    pub devices: bool,
    /// Files owned by other users (needs root).
    pub owners: bool,
    /// `user.*` xattrs (needs a file system with xattr support).
    pub user_xattrs: bool,
    /// `trusted.*` and `security.*` xattrs (needs root).
    pub privileged_xattrs: bool,
    /// The >4 GiB sparse file (cheap on disk, but every reader must walk 4 GiB of holes).
    pub huge_sparse: bool,
    /// The directory of 10,001 entries.
    pub big_dir: bool,
    /// Number of entries in the big directory.
    pub big_dir_entries: usize,
    /// Nesting depth of `deep/`.
    pub depth: usize,
    /// Block sizes whose boundaries `sizes/` covers.
    pub block_sizes: Vec<u64>,
    /// A hard-linked symlink (`links/symlink_one`, `links/b/symlink_two`). Off in [`cheap`]
    /// and [`full`]: mksquashfs 4.5 stores each name of a hard-linked symlink as an inode of
    /// its own, so an image it made cannot give the link back (a tool limit, not a reader
    /// bug). For testing a builder that keeps it.
    ///
    /// [`cheap`]: EdgeTreeOptions::cheap
    /// [`full`]: EdgeTreeOptions::full
    pub symlink_hard_link: bool,
}

impl Default for EdgeTreeOptions {
    fn default() -> Self {
        Self::cheap()
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl EdgeTreeOptions {
    /// Everything, including the >4 GiB sparse file and the 10,001-entry directory. Root-only
    /// parts are on only when running as root.
    pub fn full() -> Self {
        EdgeTreeOptions {
            huge_sparse: true,
            big_dir: true,
            ..Self::cheap()
        }
    }

    /// Everything but the >4 GiB file and the big directory (fast: well under a second).
    /// Root-only parts are on only when running as root.
    pub fn cheap() -> Self {
        let root = is_root();
        EdgeTreeOptions {
            devices: root,
            owners: root,
            user_xattrs: true,
            privileged_xattrs: root,
            huge_sparse: false,
            big_dir: false,
            big_dir_entries: 10_001,
            depth: 60,
            block_sizes: vec![4096, 128 << 10, 1 << 20],
            symlink_hard_link: false,
        }
    }

    /// Turn off every part that needs root.
    pub fn without_root_parts(mut self) -> Self {
        self.devices = false;
        self.owners = false;
        self.privileged_xattrs = false;
        self
    }

    /// Turn off all xattrs.
    pub fn without_xattrs(mut self) -> Self {
        self.user_xattrs = false;
        self.privileged_xattrs = false;
        self
    }
}

/// A created edge-case tree.
#[derive(Clone, Debug)]
pub struct EdgeTree {
    /// Its root directory.
    pub root: PathBuf,
    /// The options it was created with.
    pub options: EdgeTreeOptions,
}

/// `len` deterministic bytes for `seed`, as the tree's files hold: incompressible (splitmix64
/// output) or, when `compressible`, a repetitive text. For tests that add files of their own.
pub fn content_bytes(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    content(seed, len as u64, compressible, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Deterministic bytes: splitmix64 output, or a repetitive text when `compressible`.
fn content(seed: u64, len: u64, compressible: bool, mut out: impl Write) -> io::Result<()> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    let mut line = 0u64;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        if compressible {
            let mut filled = 0;
            while filled < n {
                let text = format!("line {line} of file {seed}: the quick brown fox\n");
                line += 1;
                let take = text.len().min(n - filled);
                buf[filled..filled + take].copy_from_slice(&text.as_bytes()[..take]);
                filled += take;
            }
        } else {
            for chunk in buf[..n].chunks_mut(8) {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
            }
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Builder state: the root and the special mtimes to apply at the end.
struct Builder {
    root: PathBuf,
    mtimes: HashMap<PathBuf, i64>,
}

impl Builder {
    fn p(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    fn dir(&self, rel: impl AsRef<Path>) -> io::Result<PathBuf> {
        let p = self.p(rel);
        fs::create_dir_all(&p)?;
        Ok(p)
    }

    fn file(
        &self,
        rel: impl AsRef<Path>,
        seed: u64,
        len: u64,
        compressible: bool,
    ) -> io::Result<PathBuf> {
        let p = self.p(rel);
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&p)?);
        content(seed, len, compressible, &mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all().ok();
        Ok(p)
    }

    fn bytes(&self, rel: impl AsRef<Path>, data: &[u8]) -> io::Result<PathBuf> {
        let p = self.p(rel);
        fs::write(&p, data)?;
        Ok(p)
    }

    fn mtime(&mut self, rel: impl AsRef<Path>, t: i64) {
        self.mtimes.insert(self.p(rel), t);
    }
}

impl EdgeTree {
    /// Create the tree at `root` (created if missing; must be empty if it exists).
    pub fn create(root: impl AsRef<Path>, options: &EdgeTreeOptions) -> io::Result<EdgeTree> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root)?;
        if fs::read_dir(&root)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not empty", root.display()),
            ));
        }
        let mut b = Builder {
            root: root.clone(),
            mtimes: HashMap::new(),
        };
        types(&mut b, options)?;
        links(&mut b, options)?;
        sparse(&mut b, options)?;
        sizes(&mut b, options)?;
        dups(&mut b)?;
        xattrs(&mut b, options)?;
        owners(&mut b, options)?;
        modes(&mut b, options)?;
        mtimes(&mut b)?;
        names(&mut b)?;
        if options.big_dir {
            big_dir(&mut b, options.big_dir_entries)?;
        }
        deep(&mut b, options.depth)?;
        b.dir("empty_dir")?;
        apply_mtimes(&b)?;
        Ok(EdgeTree {
            root,
            options: options.clone(),
        })
    }
}

fn types(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    b.dir("types/dir")?;
    b.file("types/regular", 1, 1000, false)?;
    b.bytes("types/empty", b"")?;
    symlink("regular", b.p("types/symlink_short"))?;
    // 4000 bytes: below the kernel's page-size limit, far above one metadata block entry.
    let long: String = (0..4000)
        .map(|i| {
            if i % 100 == 99 {
                '/'
            } else {
                (b'a' + (i % 26) as u8) as char
            }
        })
        .collect();
    symlink(&long, b.p("types/symlink_long"))?;
    symlink("does/not/exist", b.p("types/symlink_dangling"))?;
    symlink("/etc/passwd", b.p("types/symlink_absolute"))?;
    symlink("../types", b.p("types/symlink_to_dir"))?;
    sys::mknod(&b.p("types/fifo"), libc::S_IFIFO | 0o644, 0)?;
    let sock = b.p("types/socket");
    if sock.as_os_str().len() < 100 {
        drop(std::os::unix::net::UnixListener::bind(&sock)?);
    } else {
        // Too long for sun_path: make the node directly.
        sys::mknod(&sock, libc::S_IFSOCK | 0o755, 0)?;
    }
    if o.devices {
        let max = sys::makedev(MAX_MAJOR, MAX_MINOR);
        sys::mknod(&b.p("types/char_max"), libc::S_IFCHR | 0o620, max)?;
        sys::mknod(&b.p("types/block_max"), libc::S_IFBLK | 0o660, max)?;
        sys::mknod(
            &b.p("types/char_null"),
            libc::S_IFCHR | 0o666,
            sys::makedev(1, 3),
        )?;
        sys::mknod(
            &b.p("types/block_loop"),
            libc::S_IFBLK | 0o660,
            sys::makedev(7, 200),
        )?;
        // Overlay whiteouts are 0:0 character devices.
        sys::mknod(&b.p("types/char_whiteout"), libc::S_IFCHR, 0)?;
        // Old-style 8-bit-minor boundary.
        sys::mknod(
            &b.p("types/char_256"),
            libc::S_IFCHR | 0o600,
            sys::makedev(255, 256),
        )?;
    }
    Ok(())
}

fn links(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    b.dir("links/a")?;
    b.dir("links/b/deeper")?;
    // Multi-block (at 128K) plus a tail fragment.
    let first = b.file("links/a/first", 2, 300_000, false)?;
    fs::hard_link(&first, b.p("links/b/deeper/second"))?;
    fs::hard_link(&first, b.p("links/third"))?;
    let pair = b.file("links/pair_one", 3, 77, true)?;
    fs::hard_link(&pair, b.p("links/a/pair_two"))?;
    let empty = b.bytes("links/empty_one", b"")?;
    fs::hard_link(&empty, b.p("links/b/empty_two"))?;
    let fifo = b.p("links/fifo_one");
    sys::mknod(&fifo, libc::S_IFIFO | 0o600, 0)?;
    fs::hard_link(&fifo, b.p("links/b/fifo_two"))?;
    if o.symlink_hard_link {
        // One symlink inode under two names (link() does not follow a symlink).
        let sym = b.p("links/symlink_one");
        symlink("pair_one", &sym)?;
        fs::hard_link(&sym, b.p("links/b/symlink_two"))?;
    }
    Ok(())
}

fn sparse(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    b.dir("sparse")?;
    File::create(b.p("sparse/all_hole"))?.set_len(3 << 20)?;
    // All zeros with a short tail at every block size: a zero fragment, not only zero blocks.
    File::create(b.p("sparse/all_hole_odd"))?.set_len((3 << 20) + 9)?;
    let islands = File::create(b.p("sparse/islands"))?;
    islands.set_len(8 << 20)?;
    islands.write_all_at(b"start", 0)?;
    islands.write_all_at(&[0xAB; 70_000], (3 << 20) + 5)?;
    islands.write_all_at(b"end", (8 << 20) - 3)?;
    let lead = File::create(b.p("sparse/leading_hole"))?;
    lead.set_len((2 << 20) + 1)?;
    lead.write_all_at(b"tail", 2 << 20)?;
    let trail = File::create(b.p("sparse/trailing_hole"))?;
    trail.write_all_at(&[7u8; 5000], 0)?;
    trail.set_len(5 << 20)?;
    if o.huge_sparse {
        let huge = File::create(b.p(HUGE_SPARSE_PATH))?;
        huge.set_len(HUGE_SPARSE_SIZE)?;
        huge.write_all_at(b"first bytes", 0)?;
        huge.write_all_at(&[0x5A; 200_000], 2 << 30)?;
        // Straddles the 4 GiB boundary (32-bit offset overflow).
        huge.write_all_at(&[0xC3; 9_000], (4 << 30) - 4_000)?;
        huge.write_all_at(b"last", HUGE_SPARSE_SIZE - 4)?;
    }
    Ok(())
}

fn sizes(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    b.dir("sizes")?;
    let mut seed = 100;
    for &bs in &o.block_sizes {
        for (label, len) in [
            ("0", 0),
            ("1", 1),
            ("bs-1", bs - 1),
            ("bs", bs),
            ("bs+1", bs + 1),
            ("2bs", 2 * bs),
            ("3bs+7", 3 * bs + 7),
        ] {
            seed += 1;
            let name = format!("sizes/b{}k_{label}", bs / 1024);
            // Alternate so both compressed and stored-raw blocks appear.
            b.file(&name, seed, len, seed % 2 == 0)?;
        }
    }
    b.file("sizes/several_mib_random", 150, (5 << 20) + 3, false)?;
    b.file("sizes/several_mib_text", 151, (3 << 20) + 11, true)?;
    Ok(())
}

fn dups(b: &mut Builder) -> io::Result<()> {
    b.dir("dups/sub")?;
    for name in ["dups/big_1", "dups/big_2", "dups/sub/big_3"] {
        b.file(name, 200, 300_000, false)?;
    }
    for name in ["dups/small_1", "dups/small_2", "dups/sub/small_3"] {
        b.file(name, 201, 1000, true)?;
    }
    // Identical files of whole blocks, no tail, at 4 KiB and 128 KiB (256 KiB), whose blocks
    // are also the first blocks of big_*: block runs shared by files of different lengths.
    let mut big = Vec::new();
    content(200, 300_000, false, &mut big)?;
    b.bytes("dups/aligned_1", &big[..256 << 10])?;
    b.bytes("dups/sub/aligned_2", &big[..256 << 10])?;
    // Same first blocks, different last byte: dedup must compare whole files.
    let mut data = Vec::new();
    content(202, 400_000, false, &mut data)?;
    b.bytes("dups/prefix_a", &data)?;
    *data.last_mut().expect("non-empty") ^= 1;
    b.bytes("dups/prefix_b", &data)?;
    // Same size, different content.
    b.file("dups/samesize_a", 203, 4096, false)?;
    b.file("dups/samesize_b", 204, 4096, false)?;
    Ok(())
}

fn xattrs(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    if !(o.user_xattrs || o.privileged_xattrs) {
        return Ok(());
    }
    let dir = b.dir("xattrs")?;
    let f = b.file("xattrs/file", 300, 5000, true)?;
    let g = b.file("xattrs/second", 301, 10, true)?;
    let h = b.bytes("xattrs/third", b"")?;
    let big: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let set = |p: &Path, n: &str, v: &[u8]| sys::lsetxattr(p, n.as_bytes(), v);
    if o.user_xattrs {
        set(&f, "user.empty", b"")?;
        set(&f, "user.big", &big)?;
        set(&f, "user.repeated", b"the same value everywhere")?;
        set(&g, "user.repeated", b"the same value everywhere")?;
        set(&g, "user.big_again", &big)?;
        set(&h, "user.repeated", b"the same value everywhere")?;
        set(&h, "user.binary", &[0, 1, 2, 0xff, 0])?;
        set(&dir, "user.on_dir", b"directory value")?;
        for i in 0..20 {
            set(&h, &format!("user.many_{i:02}"), format!("v{i}").as_bytes())?;
        }
    }
    if o.privileged_xattrs {
        set(&f, "trusted.squashbox", b"trusted value")?;
        set(&f, "security.squashbox", b"security value")?;
        set(&g, "trusted.repeated", b"the same value everywhere")?;
        set(&dir, "trusted.overlay.opaque", b"y")?;
        let link = b.p("xattrs/symlink");
        symlink("file", &link)?;
        set(&link, "trusted.on_symlink", b"link value")?;
    }
    Ok(())
}

fn owners(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    if !o.owners {
        return Ok(());
    }
    let d = b.dir("owners")?;
    sys::lchown(&d, 1000, 1000)?;
    for (name, uid, gid) in [
        ("root", 0, 0),
        ("nobody", 65534, 65534),
        ("u65535", 65535, 65535),
        ("u65536", 65536, 65536),
        ("mixed", MAX_ID, 0),
        ("max_id", MAX_ID, MAX_ID),
    ] {
        let p = b.file(format!("owners/{name}"), 400, 10, true)?;
        sys::lchown(&p, uid, gid)?;
    }
    let link = b.p("owners/symlink_max_id");
    symlink("max_id", &link)?;
    sys::lchown(&link, MAX_ID, 12345)?;
    Ok(())
}

fn modes(b: &mut Builder, o: &EdgeTreeOptions) -> io::Result<()> {
    b.dir("modes")?;
    // chmod after any chown: chown clears setuid/setgid.
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("all_bits", 0o7777),
        ("read_only", 0o444),
        ("exec_only", 0o111),
    ] {
        let p = b.file(format!("modes/{name}"), 500, 10, true)?;
        sys::chmod(&p, mode)?;
    }
    if o.owners {
        // Root reads anything; as a user an unreadable file could not be compared.
        let p = b.file("modes/no_access", 501, 10, true)?;
        sys::chmod(&p, 0)?;
        // A read-only directory with content: an extractor must fill it before locking it.
        // Root only, like the above: a user could not delete its content afterwards.
        let ro = b.dir("modes/read_only_dir")?;
        b.file("modes/read_only_dir/inside", 503, 10, true)?;
        sys::chmod(&ro, 0o555)?;
    }
    let sticky = b.dir("modes/sticky_dir")?;
    b.file("modes/sticky_dir/inside", 502, 10, true)?;
    sys::chmod(&sticky, 0o1777)?;
    let setgid_dir = b.dir("modes/setgid_dir")?;
    sys::chmod(&setgid_dir, 0o2750)?;
    let private = b.dir("modes/private_dir")?;
    sys::chmod(&private, 0o700)?;
    Ok(())
}

fn mtimes(b: &mut Builder) -> io::Result<()> {
    b.dir("mtimes/dir_zero")?;
    b.dir("mtimes/dir_max")?;
    b.file("mtimes/zero", 600, 10, true)?;
    b.file("mtimes/max", 601, 10, true)?;
    b.file("mtimes/one", 602, 10, true)?;
    symlink("max", b.p("mtimes/symlink_max"))?;
    symlink("zero", b.p("mtimes/symlink_zero"))?;
    for (p, t) in [
        ("mtimes/dir_zero", 0),
        ("mtimes/dir_max", MAX_MTIME),
        ("mtimes/zero", 0),
        ("mtimes/max", MAX_MTIME),
        ("mtimes/one", 1),
        ("mtimes/symlink_max", MAX_MTIME),
        ("mtimes/symlink_zero", 0),
    ] {
        b.mtime(p, t);
    }
    Ok(())
}

fn names(b: &mut Builder) -> io::Result<()> {
    let dir = b.dir("names")?;
    let make = |name: Vec<u8>| -> io::Result<()> {
        let p = dir.join(std::ffi::OsString::from_vec(name.clone()));
        fs::write(p, &name)
    };
    make(vec![b'n'; 255])?;
    // 127 two-byte characters + 1 byte = 255 bytes of valid UTF-8.
    let mut utf8 = "é".repeat(127).into_bytes();
    utf8.push(b'x');
    make(utf8)?;
    make(b"\xff\xfe\x80 not utf-8".to_vec())?;
    make(b"caf\xe9 latin-1".to_vec())?;
    make(b"line\nbreak".to_vec())?;
    make(b"tab\there".to_vec())?;
    make(b"-leading-dash".to_vec())?;
    make(b"...".to_vec())?;
    make(b".hidden".to_vec())?;
    make(b" space ".to_vec())?;
    make(b"back\\slash".to_vec())?;
    make("emoji \u{1F980}".as_bytes().to_vec())?;
    make(b"\x01control".to_vec())?;
    // Names that sort differently bytewise and by locale.
    make(b"B".to_vec())?;
    make(b"a".to_vec())?;
    make(b"_".to_vec())?;
    let long_dir = dir.join("d".repeat(255));
    fs::create_dir(&long_dir)?;
    fs::write(long_dir.join("f".repeat(255)), b"inside a 255-byte dir")?;
    Ok(())
}

fn big_dir(b: &mut Builder, entries: usize) -> io::Result<()> {
    let dir = b.dir(BIG_DIR_PATH)?;
    for i in 0..entries {
        let p = dir.join(format!("entry_{i:05}"));
        match i % 500 {
            0 => fs::create_dir(&p)?,
            1 => symlink(format!("entry_{:05}", i + 1), &p)?,
            2..=9 => fs::write(&p, i.to_string())?,
            _ => drop(File::create(&p)?),
        }
    }
    Ok(())
}

fn deep(b: &mut Builder, depth: usize) -> io::Result<()> {
    let mut rel = PathBuf::from("deep");
    for level in 1..=depth {
        rel.push(format!("level{level:02}"));
    }
    b.dir(&rel)?;
    b.bytes(rel.join("leaf"), b"at the bottom")?;
    symlink(
        "../".repeat(depth) + "types/regular",
        b.p(rel.join("up_to_root")),
    )?;
    Ok(())
}

/// Set every mtime, children before parents so creating entries cannot disturb a directory's.
fn apply_mtimes(b: &Builder) -> io::Result<()> {
    // Iterative post-order: collect in pre-order, apply in reverse.
    let mut order = Vec::new();
    let mut stack = vec![b.root.clone()];
    while let Some(p) = stack.pop() {
        if fs::symlink_metadata(&p)?.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
        order.push(p);
    }
    for p in order.iter().rev() {
        let t = b.mtimes.get(p).copied().unwrap_or(DEFAULT_MTIME);
        sys::set_mtime(p, t)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    }
    let _ = b.root.as_os_str().as_bytes();
    Ok(())
}
