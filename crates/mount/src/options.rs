//! Mount options and cache sizing.

use squashbox_format::OpenOptions;

/// How to mount an image. `MountOptions::default()` is what `squashbox mount` uses.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Number of FUSE worker threads reading kernel requests (each has its own cloned
    /// `/dev/fuse` descriptor). Must be at least 1.
    pub threads: usize,
    /// Let users other than the one who mounted access the file system (`allow_other`).
    pub allow_other: bool,
    /// How many data blocks past a sequential read to decompress ahead of time, in the
    /// background, so the next read finds them cached. 0 disables read-ahead.
    pub read_ahead_blocks: u32,
    /// Number of background threads doing read-ahead.
    pub read_ahead_threads: usize,
    /// The source name shown in `/proc/mounts` (usually the image path).
    pub fs_name: Option<String>,
    /// How long the kernel may cache names and attributes. The image is immutable, so the
    /// default is long (one day).
    pub cache_ttl: std::time::Duration,
}

impl Default for MountOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        MountOptions {
            threads: cpus.clamp(2, 8),
            allow_other: false,
            read_ahead_blocks: 2,
            read_ahead_threads: 1,
            fs_name: None,
            cache_ttl: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// Split a total cache budget (`--cache-size`) between the reader's metadata and data caches.
///
/// A quarter goes to metadata (inodes, directories, tables: small, hot) and the rest to data
/// and fragment blocks, with floors so a tiny budget still lets a block or two stay cached.
pub fn open_options_for_cache_size(total_bytes: usize) -> OpenOptions {
    const MIN_METADATA: usize = 256 << 10;
    const MIN_DATA: usize = 2 << 20;
    let metadata = (total_bytes / 4).max(MIN_METADATA);
    let data = total_bytes.saturating_sub(total_bytes / 4).max(MIN_DATA);
    OpenOptions {
        metadata_cache_bytes: metadata,
        data_cache_bytes: data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_split_keeps_floors_and_sums_for_large_budgets() {
        let o = open_options_for_cache_size(64 << 20);
        assert_eq!(o.metadata_cache_bytes, 16 << 20);
        assert_eq!(o.data_cache_bytes, 48 << 20);
        let tiny = open_options_for_cache_size(0);
        assert_eq!(tiny.metadata_cache_bytes, 256 << 10);
        assert_eq!(tiny.data_cache_bytes, 2 << 20);
    }
}
