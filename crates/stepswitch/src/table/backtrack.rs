//! Whether a lookup may run the backtracking engine, so that an async caller knows when to
//! leave its workers for a blocking thread: per table, and per number (the rules the prefix
//! indexes offer for it).

use super::{PatternId, RouteTable, HITS};

impl RouteTable {
    /// Whether a lookup in this table may run a backtracking engine (bounded by its step
    /// budget, yet far slower than the usual microseconds): an async caller should then look up
    /// on a blocking thread so that it never holds up the workers serving other requests.
    pub fn may_backtrack(&self) -> bool {
        self.backtracking
    }

    /// Whether looking `number` up in this table may run the backtracking engine: some rule
    /// the prefix indexes (the shared one, and the appended resources' one after an incremental
    /// rebuild) offer for `number` (its own prefixes, or none) is on that engine, or so is a
    /// `cid_rules` entry of a resource offered. A superset of what a lookup evaluates (the
    /// flags and the classification may rule those resources out): a `false` means the lookup
    /// runs only the linear-time matchers, so an async caller may run it in place.
    pub fn may_backtrack_on(&self, number: &str) -> bool {
        if !self.backtracking {
            return false;
        }
        let backtracks = |pattern: PatternId| {
            let pattern = self.pattern(pattern);
            pattern.needs_backtracking() && !pattern.is_quarantined()
        };
        HITS.with(|cell| {
            let mut hits = cell.take();
            hits.clear();
            self.index.collect(number.as_bytes(), &mut hits);
            if let Some(delta) = &self.delta {
                delta.index.collect(number.as_bytes(), &mut hits);
            }
            let found = hits.iter().any(|&(entry, pattern)| {
                let slot = (entry >> 32) as usize;
                let hot = &self.hot[slot];
                !hot.dead
                    && (backtracks(pattern)
                        || (hot.has_cid_rules
                            && self
                                .resources
                                .slot(slot)
                                .cid_rules
                                .iter()
                                .any(|rule| backtracks(rule.pattern))))
            });
            cell.set(hits);
            found
        })
    }
}
