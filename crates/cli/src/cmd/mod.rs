//! One module per subcommand; each has `Args` and `run`.

pub mod cat;
pub mod extract;
pub mod info;
pub mod ls;
pub mod mkfs;
pub mod mount;
pub mod overlay;
pub mod umount;

mod common;
