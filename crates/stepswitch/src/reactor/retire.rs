//! Replaced tables are freed off the request path.
//!
//! A lookup holds the current tables (and an answer holds its table) for a moment; when a
//! build swaps in new tables, whichever holder lets go last frees what the swap replaced. If
//! that were a request, the request would pay for freeing the old table's memory (a chunk of
//! resources after an incremental rebuild, a whole table after a full compile). So the
//! reactor keeps every replaced value here until it is the only holder left, then drops it on
//! the blocking pool: no request ever frees a table.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Something replaced, kept until no one else holds it.
type Held = Arc<dyn Any + Send + Sync>;

/// How often the held values are checked while some are still in use.
const SWEEP_EVERY: Duration = Duration::from_millis(5);

/// The replaced values a reactor has not freed yet.
#[derive(Default)]
pub(crate) struct Retired {
    held: Mutex<Vec<Held>>,
    /// A sweeper task is running.
    sweeping: AtomicBool,
}

impl Retired {
    /// Keeps `values` until this is their only holder, then frees them on the blocking pool.
    /// Call from the runtime (it may start the sweeper task).
    pub(crate) fn retire(self: &Arc<Self>, values: impl IntoIterator<Item = Held>) {
        self.held.lock().expect("retired lock").extend(values);
        if self.sweep() && !self.sweeping.swap(true, Ordering::AcqRel) {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    if this.sweep() {
                        continue;
                    }
                    this.sweeping.store(false, Ordering::Release);
                    // A value retired between the sweep and the flag: sweep on unless another
                    // sweeper took over.
                    if !this.sweep() || this.sweeping.swap(true, Ordering::AcqRel) {
                        break;
                    }
                }
            });
        }
    }

    /// Frees (on the blocking pool) every held value no one else holds any more; whether some
    /// are still held. (A value that holds another, old tables their replaced table, releases
    /// it when the pool drops it: the next sweep frees that one.)
    fn sweep(&self) -> bool {
        let (free, remaining) = {
            let mut held = self.held.lock().expect("retired lock");
            let (free, kept): (Vec<Held>, Vec<Held>) =
                held.drain(..).partition(|it| Arc::strong_count(it) == 1);
            *held = kept;
            (free, !held.is_empty())
        };
        if !free.is_empty() {
            tokio::task::spawn_blocking(move || drop(free));
        }
        remaining
    }
}
