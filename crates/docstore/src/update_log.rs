//! The embedded store's `_db_updates` history: each database's latest event with an opaque
//! sequence, so a reader can resume after `since` as it does on CouchDB.
//!
//! Sequences are strings `N-INSTANCE` (`INSTANCE` is new for every store opened): a `since`
//! from another instance, or one this instance never gave, replays every database, as a feed
//! resumed against a rewound server would.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::types::{DbName, DbUpdate, DbUpdateKind, Seq};

/// Each database once, with its latest event, in event order.
#[derive(Debug)]
pub(crate) struct UpdateLog {
    instance: String,
    counter: u64,
    /// Database → (its latest event, that event's number).
    latest: HashMap<DbName, (DbUpdateKind, u64)>,
    /// Event number → database: the event order.
    order: BTreeMap<u64, DbName>,
}

impl UpdateLog {
    /// An empty history with a fresh instance id.
    pub(crate) fn new() -> UpdateLog {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let instance = format!("{:x}", nanos ^ u128::from(std::process::id()));
        UpdateLog { instance, counter: 0, latest: HashMap::new(), order: BTreeMap::new() }
    }

    fn seq_of(&self, n: u64) -> Seq {
        Seq::from_json(Value::from(format!("{n}-{}", self.instance)))
    }

    /// Notes an event and returns it with its sequence.
    pub(crate) fn record(&mut self, db: &DbName, kind: DbUpdateKind) -> DbUpdate {
        self.counter += 1;
        let n = self.counter;
        if let Some((_, old)) = self.latest.insert(db.clone(), (kind, n)) {
            self.order.remove(&old);
        }
        self.order.insert(n, db.clone());
        DbUpdate { db: db.clone(), kind, seq: Some(self.seq_of(n)) }
    }

    /// The event number a `since` stands for: `now` is the latest event, `0` (or a sequence of
    /// another instance, or a malformed one) the beginning.
    pub(crate) fn position(&self, since: &Seq) -> u64 {
        if since.as_json() == &Value::from("now") {
            return self.counter;
        }
        let text = since.to_query();
        match text.split_once('-') {
            Some((n, instance)) if instance == self.instance => {
                n.parse::<u64>().map_or(0, |n| n.min(self.counter))
            }
            _ => 0,
        }
    }

    /// Each database whose latest event is after `position`, in event order.
    pub(crate) fn after(&self, position: u64) -> Vec<DbUpdate> {
        self.order
            .range(position + 1..)
            .filter_map(|(n, db)| {
                let (kind, _) = self.latest.get(db)?;
                Some(DbUpdate { db: db.clone(), kind: *kind, seq: Some(self.seq_of(*n)) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> DbName {
        DbName::new(name).expect("a valid name")
    }

    #[test]
    fn each_database_appears_once_with_its_latest_event_in_event_order() {
        let mut log = UpdateLog::new();
        log.record(&db("a"), DbUpdateKind::Created);
        let mid = log.record(&db("b"), DbUpdateKind::Created);
        log.record(&db("a"), DbUpdateKind::Updated);
        let all: Vec<(String, DbUpdateKind)> =
            log.after(0).into_iter().map(|u| (u.db.to_string(), u.kind)).collect();
        assert_eq!(
            all,
            vec![("b".to_owned(), DbUpdateKind::Created), ("a".to_owned(), DbUpdateKind::Updated)]
        );
        let since = log.position(mid.seq.as_ref().expect("a seq"));
        let later: Vec<String> = log.after(since).into_iter().map(|u| u.db.to_string()).collect();
        assert_eq!(later, vec!["a".to_owned()]);
        assert!(log.after(log.position(&Seq::now())).is_empty());
    }

    #[test]
    fn a_foreign_or_malformed_since_replays_everything() {
        let mut log = UpdateLog::new();
        log.record(&db("a"), DbUpdateKind::Created);
        for since in ["3-otherinstance", "garbage", "0"] {
            let since = Seq::from_json(Value::from(since));
            assert_eq!(log.after(log.position(&since)).len(), 1, "{since}");
        }
        assert_eq!(log.after(log.position(&Seq::zero())).len(), 1);
    }
}
