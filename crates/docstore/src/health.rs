//! Feed health for status pages and health checks: a [`FeedBoard`] that a consumer's followers
//! register with ([`FollowOptions::board`](crate::FollowOptions::board)) and that its one-shot
//! reads report to, so that one place tells whether the consumer's view of the store is current.
//!
//! Two kinds of news, kept apart:
//! - **trouble** ([`Trouble`]): a follower that is reconnecting (its connection failed, or was
//!   silent for its missed heartbeats), or a one-shot read that failed; it lasts until the
//!   follower has caught up again (or the read succeeds), and carries the reason and since when.
//!   A consumer in trouble is *degraded*: its data may be stale.
//! - **row issues** ([`RowIssue`]): documents that were skipped or repaired because they could not
//!   be decoded as they were. The feed moved on; the rest is current. An issue is kept (the latest
//!   [`MAX_ISSUES`], one per document) until a later revision of the same document decodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::follow::StatusHandle;
use crate::types::{AllDocsPage, DbName, RowIssue};

/// How many row issues a board keeps (the most recent, one per document).
pub const MAX_ISSUES: usize = 100;

/// Why a consumer's view of a database may be stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trouble {
    /// The database.
    pub db: String,
    /// What failed (the last error).
    pub reason: String,
    /// Since when (RFC 3339, UTC).
    pub since: String,
}

/// What a [`FeedBoard`] knows, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BoardReport {
    /// Databases in trouble, by name.
    pub trouble: Vec<Trouble>,
    /// Documents skipped or repaired, most recent last.
    pub issues: Vec<RowIssue>,
    /// Rows skipped since start.
    pub skipped_rows: u64,
    /// Rows repaired since start.
    pub repaired_rows: u64,
}

impl BoardReport {
    /// Whether some database is in trouble.
    pub fn degraded(&self) -> bool {
        !self.trouble.is_empty()
    }
}

#[derive(Default)]
struct Board {
    feeds: BTreeMap<u64, (DbName, StatusHandle)>,
    next: u64,
    /// Failed one-shot reads by database.
    reads: BTreeMap<String, (String, SystemTime)>,
    /// Issues by (db, id or seq), with an ordinal for "most recent".
    issues: BTreeMap<(String, String), (u64, RowIssue)>,
    ordinal: u64,
}

/// Gathers the health of one consumer's followers and reads; cheap to clone. See the module docs.
#[derive(Clone, Default)]
pub struct FeedBoard {
    board: Arc<Mutex<Board>>,
    skipped: Arc<AtomicU64>,
    repaired: Arc<AtomicU64>,
}

impl std::fmt::Debug for FeedBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedBoard").finish_non_exhaustive()
    }
}

/// A follower's place on a board; dropping it takes the follower off.
pub(crate) struct Registration {
    board: FeedBoard,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.board.lock().feeds.remove(&self.key);
    }
}

fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    // Seconds and milliseconds since the epoch, rendered as a UTC date.
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (y, mo, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since.subsec_millis())
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl FeedBoard {
    /// An empty board.
    pub fn new() -> FeedBoard {
        FeedBoard::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register(&self, db: DbName, status: StatusHandle) -> Registration {
        let mut board = self.lock();
        board.next += 1;
        let key = board.next;
        board.feeds.insert(key, (db, status));
        Registration { board: self.clone(), key }
    }

    /// Records a skipped or repaired row (logged at warn level).
    pub fn note_issue(&self, issue: &RowIssue) {
        tracing::warn!(issue = %issue, "A document could not be decoded as it is.");
        let counter = match issue.action {
            crate::types::RowAction::Skipped => &self.skipped,
            crate::types::RowAction::Repaired => &self.repaired,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let key = (
            issue.db.clone(),
            issue
                .id
                .clone()
                .or_else(|| issue.seq.as_ref().map(|s| format!("seq {s}")))
                .unwrap_or_default(),
        );
        let mut board = self.lock();
        board.ordinal += 1;
        let ordinal = board.ordinal;
        board.issues.insert(key, (ordinal, issue.clone()));
        if board.issues.len() > MAX_ISSUES {
            let oldest = board.issues.iter().min_by_key(|(_, (n, _))| *n).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                board.issues.remove(&oldest);
            }
        }
    }

    /// A document of `db` decoded cleanly: forget its issue, if any.
    pub fn clear_issue(&self, db: &str, id: &str) {
        let mut board = self.lock();
        if !board.issues.is_empty() {
            board.issues.remove(&(db.to_owned(), id.to_owned()));
        }
    }

    /// Records a one-shot `_all_docs` page of `db`: its issues, and its clean rows' recoveries.
    pub fn note_page(&self, db: &str, page: &AllDocsPage) {
        let issue_ids: Vec<&str> = page.issues.iter().filter_map(|i| i.id.as_deref()).collect();
        for row in &page.rows {
            if !issue_ids.contains(&row.id.as_str()) {
                self.clear_issue(db, &row.id);
            }
        }
        for issue in &page.issues {
            self.note_issue(issue);
        }
    }

    /// A one-shot read of `db` failed: the consumer is in trouble until [`FeedBoard::read_ok`].
    pub fn read_failed(&self, db: &str, error: impl std::fmt::Display) {
        let mut board = self.lock();
        let since = board.reads.get(db).map_or_else(SystemTime::now, |(_, since)| *since);
        board.reads.insert(db.to_owned(), (error.to_string(), since));
    }

    /// A one-shot read of `db` succeeded.
    pub fn read_ok(&self, db: &str) {
        self.lock().reads.remove(db);
    }

    /// What the board knows now.
    pub fn report(&self) -> BoardReport {
        let board = self.lock();
        let mut trouble: BTreeMap<String, Trouble> = BTreeMap::new();
        for (db, status) in board.feeds.values() {
            let s = status.get();
            if let Some(since) = s.error_since {
                let reason = s.last_error.unwrap_or_else(|| "reconnecting".into());
                trouble.insert(
                    db.to_string(),
                    Trouble { db: db.to_string(), reason, since: rfc3339(since) },
                );
            }
        }
        for (db, (reason, since)) in &board.reads {
            trouble.entry(db.clone()).or_insert_with(|| Trouble {
                db: db.clone(),
                reason: reason.clone(),
                since: rfc3339(*since),
            });
        }
        let mut issues: Vec<&(u64, RowIssue)> = board.issues.values().collect();
        issues.sort_by_key(|(n, _)| *n);
        BoardReport {
            trouble: trouble.into_values().collect(),
            issues: issues.into_iter().map(|(_, i)| i.clone()).collect(),
            skipped_rows: self.skipped.load(Ordering::Relaxed),
            repaired_rows: self.repaired.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Seq;

    #[test]
    fn dates_render_in_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_650_000_123);
        assert_eq!(rfc3339(t), "2026-12-07T13:26:40.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn issues_are_kept_per_document_until_it_decodes() {
        let board = FeedBoard::new();
        let issue = |id: &str| {
            RowIssue::skipped("offnet", Some(id.into()), Some(Seq::zero()), "bad".into())
        };
        board.note_issue(&issue("a"));
        board.note_issue(&issue("a"));
        board.note_issue(&issue("b"));
        let report = board.report();
        assert_eq!(report.issues.len(), 2);
        assert_eq!(report.skipped_rows, 3);
        board.clear_issue("offnet", "a");
        assert_eq!(board.report().issues, [issue("b")]);
        for n in 0..MAX_ISSUES + 5 {
            board.note_issue(&issue(&n.to_string()));
        }
        let report = board.report();
        assert_eq!(report.issues.len(), MAX_ISSUES);
        assert_eq!(report.issues.last().unwrap().id.as_deref(), Some("104"));
        assert!(!report.degraded());
        board.read_failed("offnet", crate::Error::Timeout { url: "x".into() });
        assert!(board.report().degraded());
        board.read_ok("offnet");
        assert!(!board.report().degraded());
    }
}
