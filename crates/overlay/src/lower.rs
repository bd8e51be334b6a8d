//! Read-only lower layers.
//!
//! A lower layer is either a SquashFS image read through [`Archive`] (the normal case), or a
//! plain directory tree (useful to stack on a kernel-mounted image or any read-only tree).
//! Both present the same small interface: look a name up in a directory object, stat an object,
//! list a directory, read file bytes, read a symlink, list xattrs.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use squashbox_format::{Archive, FileType as ImageType, Inode};

use crate::sys;

/// One read-only layer of an overlay. The first layer given to a mount is the topmost.
#[derive(Clone)]
pub enum LowerLayer {
    /// A SquashFS image.
    Image(Arc<Archive>),
    /// A directory tree that is treated as read-only (never modified by the overlay).
    Directory(PathBuf),
}

impl std::fmt::Debug for LowerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LowerLayer::Image(_) => f.write_str("Image(..)"),
            LowerLayer::Directory(p) => write!(f, "Directory({})", p.display()),
        }
    }
}

/// The type of a filesystem object, independent of where it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    pub(crate) fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::Char,
            libc::S_IFBLK => Kind::Block,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        }
    }

    fn from_image(t: ImageType) -> Kind {
        match t {
            ImageType::Directory => Kind::Dir,
            ImageType::Regular => Kind::File,
            ImageType::Symlink => Kind::Symlink,
            ImageType::BlockDevice => Kind::Block,
            ImageType::CharDevice => Kind::Char,
            ImageType::Fifo => Kind::Fifo,
            ImageType::Socket => Kind::Socket,
        }
    }

    pub(crate) fn from_rustix(t: rustix::fs::FileType) -> Kind {
        use rustix::fs::FileType as T;
        match t {
            T::Directory => Kind::Dir,
            T::Symlink => Kind::Symlink,
            T::CharacterDevice => Kind::Char,
            T::BlockDevice => Kind::Block,
            T::Fifo => Kind::Fifo,
            T::Socket => Kind::Socket,
            _ => Kind::File,
        }
    }

    pub(crate) fn to_fuse(self) -> fuser::FileType {
        match self {
            Kind::Dir => fuser::FileType::Directory,
            Kind::File => fuser::FileType::RegularFile,
            Kind::Symlink => fuser::FileType::Symlink,
            Kind::Char => fuser::FileType::CharDevice,
            Kind::Block => fuser::FileType::BlockDevice,
            Kind::Fifo => fuser::FileType::NamedPipe,
            Kind::Socket => fuser::FileType::Socket,
        }
    }
}

/// A handle on one object inside a lower layer.
#[derive(Clone, Debug)]
pub(crate) enum LowerObj {
    /// An image inode.
    Image(Box<Inode>),
    /// A path relative to a directory layer's root ("" is the root).
    Path(Vec<u8>),
}

/// Metadata of a lower object.
#[derive(Clone, Debug)]
pub(crate) struct LowerStat {
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub rdev: u64,
    pub nlink: u32,
    /// The object's inode number inside its layer (image inode number or `st_ino`).
    pub number: u64,
}

impl LowerStat {
    /// A 0/0 character device is an overlayfs whiteout, also when found in a lower layer.
    pub(crate) fn is_whiteout(&self) -> bool {
        self.kind == Kind::Char && self.rdev == 0
    }
}

/// One entry of a lower directory listing.
pub(crate) struct LowerEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub number: u64,
    /// Link count (1 for directories: only needed to spot hard-linked non-directories).
    pub nlink: u32,
}

/// An opened lower layer.
pub(crate) enum Layer {
    Image(Arc<Archive>),
    Dir { root: OwnedFd },
}

pub(crate) fn image_err(e: squashbox_format::Error) -> std::io::Error {
    log::warn!("lower image error: {e}");
    std::io::Error::from_raw_os_error(libc::EIO)
}

fn rel_path(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(base.len() + 1 + name.len());
    p.extend_from_slice(base);
    if !base.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn dot_if_empty(p: &[u8]) -> &[u8] {
    if p.is_empty() {
        b"."
    } else {
        p
    }
}

impl Layer {
    /// Open a layer. Directory layers are opened once; later accesses resolve beneath it.
    pub(crate) fn open(layer: &LowerLayer) -> std::io::Result<Layer> {
        match layer {
            LowerLayer::Image(a) => Ok(Layer::Image(a.clone())),
            LowerLayer::Directory(p) => Ok(Layer::Dir {
                root: rustix::fs::open(
                    p.as_path(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?,
            }),
        }
    }

    fn open_beneath(&self, root: &OwnedFd, path: &[u8], flags: OFlags) -> std::io::Result<OwnedFd> {
        Ok(rustix::fs::openat2(
            root,
            sys::os(dot_if_empty(path)),
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS,
        )?)
    }

    /// The layer's root directory.
    pub(crate) fn root(&self) -> std::io::Result<LowerObj> {
        match self {
            Layer::Image(a) => Ok(LowerObj::Image(Box::new(a.root().map_err(image_err)?))),
            Layer::Dir { .. } => Ok(LowerObj::Path(Vec::new())),
        }
    }

    /// Look `name` up in directory `dir`.
    pub(crate) fn lookup(&self, dir: &LowerObj, name: &[u8]) -> std::io::Result<Option<LowerObj>> {
        match (self, dir) {
            (Layer::Image(a), LowerObj::Image(inode)) => {
                match a.lookup(inode, name).map_err(image_err)? {
                    None => Ok(None),
                    Some(e) => Ok(Some(LowerObj::Image(Box::new(
                        a.entry_inode(inode, &e).map_err(image_err)?,
                    )))),
                }
            }
            (Layer::Dir { root }, LowerObj::Path(p)) => {
                let dirfd = self.open_beneath(root, p, OFlags::PATH | OFlags::DIRECTORY)?;
                match rustix::fs::statat(
                    &dirfd,
                    sys::os(name),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(_) => Ok(Some(LowerObj::Path(rel_path(p, name)))),
                    Err(rustix::io::Errno::NOENT) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    /// Resolve a `/`-separated path from this layer's root, without following symlinks.
    pub(crate) fn lookup_path(&self, path: &[u8]) -> std::io::Result<Option<LowerObj>> {
        let mut cur = self.root()?;
        for comp in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            if self.stat(&cur)?.kind != Kind::Dir {
                return Ok(None);
            }
            match self.lookup(&cur, comp)? {
                Some(o) => cur = o,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Metadata of `obj`.
    pub(crate) fn stat(&self, obj: &LowerObj) -> std::io::Result<LowerStat> {
        match (self, obj) {
            (Layer::Image(a), LowerObj::Image(i)) => {
                let kind = Kind::from_image(i.file_type);
                let blocks = if kind == Kind::File {
                    a.allocated_bytes(i).map_err(image_err)?.div_ceil(512)
                } else {
                    0
                };
                let t = (i64::from(i.mtime), 0);
                Ok(LowerStat {
                    kind,
                    perm: u32::from(i.permissions),
                    uid: i.uid,
                    gid: i.gid,
                    size: i.size(),
                    blocks,
                    atime: t,
                    mtime: t,
                    ctime: t,
                    rdev: u64::from(i.rdev()),
                    nlink: i.nlink,
                    number: u64::from(i.number),
                })
            }
            (Layer::Dir { root }, LowerObj::Path(p)) => {
                let st = rustix::fs::statat(
                    root,
                    sys::os(dot_if_empty(p)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?;
                Ok(sys::lower_stat_from(&st))
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    /// All entries of directory `dir` (without "." and ".."), passed to `f` one at a time.
    pub(crate) fn for_each_entry(
        &self,
        dir: &LowerObj,
        f: &mut dyn FnMut(LowerEntry) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        match (self, dir) {
            (Layer::Image(a), LowerObj::Image(inode)) => {
                for e in a.read_dir(inode).map_err(image_err)? {
                    let e = e.map_err(image_err)?;
                    let kind = Kind::from_image(e.file_type);
                    let nlink = if kind == Kind::Dir {
                        1
                    } else {
                        a.inode(e.inode_ref).map_err(image_err)?.nlink
                    };
                    f(LowerEntry {
                        name: e.name,
                        kind,
                        number: u64::from(e.inode_number),
                        nlink,
                    })?;
                }
                Ok(())
            }
            (Layer::Dir { root }, LowerObj::Path(p)) => {
                let fd = self.open_beneath(root, p, OFlags::RDONLY | OFlags::DIRECTORY)?;
                let dirfd = self.open_beneath(root, p, OFlags::PATH | OFlags::DIRECTORY)?;
                sys::for_each_dirent(fd, &mut |name, kind, ino| {
                    let nlink = if kind == Kind::Dir {
                        1
                    } else {
                        rustix::fs::statat(
                            &dirfd,
                            sys::os(name),
                            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                        )?
                        .st_nlink as u32
                    };
                    f(LowerEntry {
                        name: name.to_vec(),
                        kind,
                        number: ino,
                        nlink,
                    })
                })
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    /// Whether `dir` carries an overlayfs opaque marker (images built from an upper layer can).
    pub(crate) fn is_opaque(&self, dir: &LowerObj) -> std::io::Result<bool> {
        for (name, value) in self.xattrs(dir)? {
            if (name == b"trusted.overlay.opaque" || name == b"user.overlay.opaque")
                && value == b"y"
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Open a reader for a lower regular file; reading many chunks through it avoids a path
    /// resolution per chunk for directory layers.
    pub(crate) fn open_file(&self, obj: &LowerObj) -> std::io::Result<LowerFile> {
        match (self, obj) {
            (Layer::Image(a), LowerObj::Image(i)) => Ok(LowerFile::Image(a.clone(), i.clone())),
            (Layer::Dir { root }, LowerObj::Path(p)) => {
                Ok(LowerFile::Fd(self.open_beneath(root, p, OFlags::RDONLY)?))
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    /// The target of a symlink.
    pub(crate) fn read_link(&self, obj: &LowerObj) -> std::io::Result<Vec<u8>> {
        match (self, obj) {
            (Layer::Image(a), LowerObj::Image(i)) => a.read_link(i).map_err(image_err),
            (Layer::Dir { root }, LowerObj::Path(p)) => {
                Ok(rustix::fs::readlinkat(root, sys::os(p), Vec::new())?.into_bytes())
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    /// All xattrs of `obj` as (name, value) pairs.
    pub(crate) fn xattrs(&self, obj: &LowerObj) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match (self, obj) {
            (Layer::Image(a), LowerObj::Image(i)) => {
                if i.xattr_index.is_none() {
                    return Ok(Vec::new());
                }
                Ok(a.xattrs(i)
                    .map_err(image_err)?
                    .into_iter()
                    .map(|x| (x.name, x.value))
                    .collect())
            }
            (Layer::Dir { root }, LowerObj::Path(p)) => {
                let parent = match p.iter().rposition(|b| *b == b'/') {
                    Some(i) => &p[..i],
                    None => &b""[..],
                };
                let name = match p.iter().rposition(|b| *b == b'/') {
                    Some(i) => &p[i + 1..],
                    None => dot_if_empty(p),
                };
                let dirfd = self.open_beneath(root, parent, OFlags::PATH | OFlags::DIRECTORY)?;
                sys::all_xattrs(dirfd.as_fd(), name)
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }
}

/// An open lower regular file.
pub(crate) enum LowerFile {
    Image(Arc<Archive>, Box<Inode>),
    Fd(OwnedFd),
}

impl LowerFile {
    /// Read at `offset`; returns bytes read (short only at end of file).
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            LowerFile::Image(a, i) => a.read_at(i, offset, buf).map_err(image_err),
            LowerFile::Fd(fd) => sys::pread_full(fd, buf, offset),
        }
    }
}
