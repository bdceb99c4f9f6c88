//! A lease: one document that names which of several processes sharing a store does a periodic
//! job, and until when. Taking or renewing it is a compare-and-swap on the document's `_rev`, so
//! of two processes that try at once exactly one gets it; a holder that stops renewing loses it
//! when it expires, and the next process to try takes it over.
//!
//! The document (`{"_id": …, "pvt_type": "switchboard_lease", "holder": …, "expires_at": …}`,
//! `expires_at` in Unix milliseconds) may be written by anyone who can write its database: a
//! value that is not understood, or an expiry further ahead than the lease's length, reads as an
//! expired lease (it is taken over, never obeyed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{DbName, Error, Result, SharedStore};

/// A named lease in one database.
#[derive(Clone)]
pub struct Lease {
    store: SharedStore,
    db: DbName,
    id: String,
    holder: String,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("db", &self.db)
            .field("id", &self.id)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Lease {
    /// The lease document `id` of `db`, tried on behalf of `holder` (unique per process).
    pub fn new(
        store: SharedStore,
        db: DbName,
        id: impl Into<String>,
        holder: impl Into<String>,
    ) -> Lease {
        Lease { store, db, id: id.into(), holder: holder.into() }
    }

    /// A holder name unique to this process: `host-pid-random`.
    pub fn process_holder() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        format!("{host}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
    }

    /// Who this lease is tried for.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease for `ttl` if it is free, expired or already ours (then it is renewed);
    /// whether we hold it now. The database is created when missing.
    ///
    /// # Errors
    /// A storage failure (a lost race is `Ok(false)`, not an error).
    pub async fn try_acquire(&self, ttl: Duration) -> Result<bool> {
        self.store.ensure_db(&self.db).await?;
        let now = now_ms();
        let current = self.store.get(&self.db, &self.id).await?;
        let mut doc = match current {
            Some(doc) if !self.may_take(&doc, now, ttl) => return Ok(false),
            Some(doc) => doc,
            None => json!({"_id": self.id}),
        };
        let expires_at = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let rev = doc.get("_rev").cloned();
        doc = json!({
            "_id": self.id,
            "pvt_type": "switchboard_lease",
            "holder": self.holder,
            "expires_at": expires_at,
        });
        if let Some(rev) = rev {
            doc["_rev"] = rev;
        }
        match self.store.put(&self.db, doc).await {
            Ok(_) => Ok(true),
            Err(Error::Conflict { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Whether a stored lease document may be taken by us at `now`: ours, expired, unreadable,
    /// or running further than `ttl` ahead (no process grants that: a forged or clock-skewed
    /// document must not stop the job for good).
    fn may_take(&self, doc: &Value, now: u64, ttl: Duration) -> bool {
        let holder = doc.get("holder").and_then(Value::as_str);
        let expires_at = doc.get("expires_at").and_then(Value::as_u64);
        let longest = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        holder == Some(self.holder.as_str())
            || expires_at.is_none_or(|at| at <= now || at > longest)
    }
}
