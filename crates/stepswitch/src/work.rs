//! Per-document work of a table build: on rayon's pool when there is much of it, and with a
//! panic in one item turned into that item's error.

use rayon::prelude::*;

/// Runs `f`, turning a panic into an error message (`internal error: …`), so that one
/// document or rule can never take a whole table build down.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|it| (*it).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("internal error: {detail}")
    })
}

/// Inputs at least this long are processed on rayon's pool (smaller ones are not worth the
/// hand-off).
pub(crate) const PARALLEL_MIN: usize = 256;

/// `items.map(f)` in order: on rayon's pool when there are many items, inline otherwise.
pub(crate) fn map_ordered<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    if items.len() < PARALLEL_MIN {
        items.iter().map(f).collect()
    } else {
        items.par_iter().map(f).collect()
    }
}
