//! The crate's public API is blocking; object-store I/O runs on one shared tokio runtime.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("squashbox-backup-io")
            .enable_all()
            .build()
            .expect("creating the backup I/O runtime")
    })
}

/// Run `fut` to completion. Safe to call from inside another tokio runtime (the future then
/// runs from a helper thread, because a runtime cannot be blocked on from its own workers).
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(fut))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        runtime().block_on(fut)
    }
}
