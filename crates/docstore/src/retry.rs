//! Compare-and-swap retries: how often a writer that lost a `_rev` race re-reads and tries
//! again, and the pause between tries. The pause is a full-jitter exponential backoff, so that
//! writers that collided once spread out instead of colliding again in lock step.

use std::time::Duration;

use rand::Rng;

/// How many times a compare-and-swap writer reads, decides and writes before it gives up on a
/// contended document (and answers a conflict).
pub const CAS_ATTEMPTS: u32 = 12;

/// The longest pause before the first retry (full jitter: the pause is uniform below it).
pub const CAS_BACKOFF_BASE: Duration = Duration::from_millis(4);

/// The longest pause before any retry.
pub const CAS_BACKOFF_CAP: Duration = Duration::from_millis(250);

/// The pause before retry `retry` (1 for the first retry): uniform in
/// `[0, min(CAS_BACKOFF_CAP, CAS_BACKOFF_BASE · 2^(retry-1))]`.
pub fn cas_backoff(retry: u32) -> Duration {
    let exp = retry.saturating_sub(1).min(16);
    let ceiling = CAS_BACKOFF_BASE.saturating_mul(1u32 << exp).min(CAS_BACKOFF_CAP);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}

/// Sleeps [`cas_backoff`]`(retry)`; nothing for `retry` 0 (the first attempt).
pub async fn cas_pause(retry: u32) {
    if retry > 0 {
        tokio::time::sleep(cas_backoff(retry)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling_and_the_cap() {
        for retry in 1..=CAS_ATTEMPTS {
            let ceiling = CAS_BACKOFF_BASE.saturating_mul(1 << (retry - 1)).min(CAS_BACKOFF_CAP);
            for _ in 0..50 {
                assert!(cas_backoff(retry) <= ceiling, "retry {retry}");
            }
        }
        assert!(cas_backoff(u32::MAX) <= CAS_BACKOFF_CAP);
        // Jitter: 200 draws below a 250 ms ceiling are not all equal.
        let draws: std::collections::BTreeSet<_> = (0..200).map(|_| cas_backoff(10)).collect();
        assert!(draws.len() > 1);
    }
}
