//! One module per subcommand; each has `Args` and `run`.

pub mod backup;
pub mod cat;
pub mod delete;
pub mod extract;
pub mod info;
pub mod list;
pub mod ls;
pub mod mkfs;
pub mod mount;
pub mod overlay;
pub mod prune;
pub mod restore;
pub mod status;
pub mod umount;
pub mod verify;

mod common;
