//! An injectable clock, so expiry rules can be tested on both sides of their boundaries.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

/// A source of "now". The default is the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    /// The system clock (UTC).
    pub fn system() -> Self {
        Clock(Arc::new(OffsetDateTime::now_utc))
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: OffsetDateTime) -> Self {
        Clock(Arc::new(move || at))
    }

    /// A clock computed by `f` on every call.
    pub fn from_fn(f: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time, truncated to whole seconds (meta stores whole seconds).
    pub fn now(&self) -> OffsetDateTime {
        let t = (self.0)();
        t.replace_nanosecond(0).unwrap_or(t)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
