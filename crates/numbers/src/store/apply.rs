//! Transitions: [`NumberStore::apply`] (read, decide, carrier and provider calls, CAS write of
//! the number database, then the account copies and their convergence), and the record of a
//! purchase whose outcome is unknown.

use std::collections::BTreeSet;

use docstore::DbName;
use e164::E164;
use serde_json::{json, Value};

use super::{db_error, db_name, now_gregorian, NumberStore, RunOptions};
use crate::account::AccountId;
use crate::auth::AuthBy;
use crate::carriers::CarrierKind;
use crate::doc::{number_db, NumberDoc};
use crate::error::Error;
use crate::lifecycle::{
    split_reconcilable, transition, BulkOutcome, CarrierCall, Ctx, Decision, Operation, Write,
    MAX_ATTEMPTS,
};
use crate::providers::ProviderCall;

impl NumberStore {
    /// Performs `op` on `number` (`knm_number_states` and `knm_numbers`): read, decide, carrier call, CAS write; on a conflict
    /// re-read and decide again, at most [`MAX_ATTEMPTS`] times (see the module docs). Returns the
    /// decision as performed (its `doc` carries the new `_rev`).
    ///
    /// # Errors
    /// The knm error of the decision, a carrier refusal, a storage failure, or
    /// [`Error::Conflict`] after [`MAX_ATTEMPTS`] lost races or on a stale
    /// [`RunOptions::expected_rev`].
    pub async fn apply(
        &self,
        number: &E164,
        op: &Operation,
        opts: &RunOptions,
    ) -> Result<Decision, Error> {
        let mut acquired: Option<(String, NumberDoc)> = None;
        let mut disconnected: Option<String> = None;
        let mut provided: Vec<(ProviderCall, NumberDoc)> = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            docstore::cas_pause(attempt).await;
            let current = self.load(number).await?;
            if let Some(expected) = &opts.expected_rev {
                let stored = current.as_ref().and_then(|d| d.rev.as_deref());
                if stored != Some(expected.as_str()) {
                    return Err(Error::Conflict {
                        id: number.as_str().to_owned(),
                        cause: format!(
                            "the number is at revision {}, the request was made against {expected}",
                            stored.unwrap_or("(none)")
                        ),
                    });
                }
            }
            // The context borrows `dyn Accounts` (not `Sync`): keep it out of the awaits.
            let mut decision = {
                let ctx = Ctx {
                    config: &self.config,
                    accounts: &*self.accounts,
                    auth_by: Some(&opts.auth_by),
                    dry_run: opts.dry_run,
                    mdn_run: opts.mdn_run,
                    now: opts.now.unwrap_or_else(now_gregorian),
                };
                transition(number, current.as_ref(), op, &ctx)?
            };
            if decision.dry_run || decision.is_noop() {
                return Ok(decision);
            }
            let called =
                self.carrier_call(&mut decision, &opts.auth_by, &mut acquired, &mut disconnected);
            if let Err(err) = called.await {
                if let Error::PurchasePending { module, order_id, .. } = &err {
                    let buyer = decision.doc.assigned_to.as_ref();
                    let pending = PendingOrder { module, order_id, buyer, auth_by: &opts.auth_by };
                    self.record_pending_order(number, &pending).await;
                }
                return Err(err);
            }
            self.provider_calls(&mut decision, &opts.auth_by, &mut provided).await?;
            match self.perform(&mut decision).await? {
                Performed::Done => return Ok(decision),
                Performed::Conflict => {
                    tracing::debug!(number = %number, op = op.name(), "conflict; re-deciding");
                }
            }
        }
        Err(Error::Conflict {
            id: number.as_str().to_owned(),
            cause: format!(
                "{number} kept changing under {} attempts of {}; nothing was written by the last",
                MAX_ATTEMPTS,
                op.name()
            ),
        })
    }

    /// [`NumberStore::apply`] for many inputs (`knm_numbers`' bulk result shape): inputs that are not reconcilable fail as
    /// `not_reconcilable` keyed as given, the others are performed one by one, each failure kept
    /// per number.
    pub async fn apply_many<S: AsRef<str>>(
        &self,
        inputs: &[S],
        op: &Operation,
        opts: &RunOptions,
    ) -> BulkOutcome {
        let split = split_reconcilable(inputs, &self.converters);
        let mut out = BulkOutcome { ko: split.ko, ..BulkOutcome::default() };
        for number in split.numbers {
            match self.apply(&number, op, opts).await {
                Ok(d) => {
                    out.ok.insert(number.into_string(), d);
                }
                Err(e) => {
                    out.ko.insert(number.into_string(), e);
                }
            }
        }
        out
    }

    /// Records a purchase whose outcome is unknown on the stored number document
    /// (`pvt_carrier_data.pending_order`, see [`PendingOrder`]), so the next acquire of the number
    /// follows that order and the crawler can finish it. Best effort: a failure is logged, the caller reports the
    /// pending purchase either way.
    async fn record_pending_order(&self, number: &E164, pending: &PendingOrder<'_>) {
        let order_id = pending.order_id;
        let Some(db) = number_db(number.as_str()).and_then(|db| db_name(&db).ok()) else { return };
        for _ in 0..MAX_ATTEMPTS {
            let mut doc = match self.store.get(&db, number.as_str()).await {
                Ok(Some(doc)) => doc,
                Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {
                    tracing::warn!(number = %number, order_id, "pending purchase not recorded: no number document");
                    return;
                }
                Err(err) => {
                    tracing::warn!(number = %number, order_id, error = %err, "pending purchase not recorded");
                    return;
                }
            };
            let Some(map) = doc.as_object_mut() else { return };
            let data = map.entry("pvt_carrier_data").or_insert_with(|| json!({}));
            let Some(data) = data.as_object_mut() else { return };
            data.insert(crate::carriers::PENDING_ORDER.into(), pending.to_json(now_gregorian()));
            match self.store.put(&db, doc).await {
                Ok(_) => return,
                Err(docstore::Error::Conflict { .. }) => continue,
                Err(err) => {
                    tracing::warn!(number = %number, order_id, error = %err, "pending purchase not recorded");
                    return;
                }
            }
        }
    }

    async fn carrier_call(
        &self,
        decision: &mut Decision,
        auth_by: &AuthBy,
        acquired: &mut Option<(String, NumberDoc)>,
        disconnected: &mut Option<String>,
    ) -> Result<(), Error> {
        let index = self.index();
        let ctx = self.carrier_ctx(&index, auth_by);
        match decision.carrier_call.clone() {
            Some(CarrierCall::Acquire { module }) => {
                let Some(kind) = CarrierKind::from_module(&module) else {
                    tracing::warn!(module, "carrier module not known; acquire skipped (as Kazoo)");
                    return Ok(());
                };
                if let Some((m, got)) = acquired.as_ref().filter(|(m, _)| *m == module) {
                    tracing::debug!(module = m, "reusing the acquisition of an earlier attempt");
                    decision.doc.carrier_data = got.carrier_data.clone();
                    return Ok(());
                }
                let rev = decision.doc.rev.clone();
                let mut doc = kind.acquire(decision.doc.clone(), &ctx).await?;
                doc.rev = rev;
                *acquired = Some((module, doc.clone()));
                decision.doc = doc;
            }
            Some(CarrierCall::Disconnect { module }) => {
                let Some(kind) = CarrierKind::from_module(&module) else {
                    tracing::warn!(
                        module,
                        "carrier module not known; disconnect ignored (as Kazoo)"
                    );
                    return Ok(());
                };
                if disconnected.as_deref() == Some(module.as_str()) {
                    return Ok(());
                }
                let rev = decision.doc.rev.clone();
                let state = decision.doc.state;
                let mut doc = kind.disconnect(decision.doc.clone(), &ctx).await?;
                doc.rev = rev;
                doc.state = state;
                *disconnected = Some(module);
                decision.doc = doc;
            }
            None => {}
        }
        Ok(())
    }

    /// The feature providers' external calls (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)), in order, after the carrier call; a call
    /// already made by an earlier attempt is not made again, its outcome is reapplied.
    async fn provider_calls(
        &self,
        decision: &mut Decision,
        auth_by: &AuthBy,
        provided: &mut Vec<(ProviderCall, NumberDoc)>,
    ) -> Result<(), Error> {
        let index = self.index();
        let ctx = self.carrier_ctx(&index, auth_by);
        for call in decision.provider_calls.clone() {
            let rev = decision.doc.rev.clone();
            let mut doc = match provided.iter().find(|(c, _)| *c == call) {
                Some((_, earlier)) => call.reapply(earlier, decision.doc.clone()),
                None => {
                    let done = call.perform(decision.doc.clone(), &ctx).await?;
                    provided.push((call, done.clone()));
                    done
                }
            };
            doc.rev = rev;
            decision.doc = doc;
        }
        Ok(())
    }

    /// Performs the writes of a decision: the number database first (the CAS point), then the
    /// account copies, then their convergence check.
    async fn perform(&self, decision: &mut Decision) -> Result<Performed, Error> {
        let id = decision.doc.id.as_str().to_owned();
        let mut touched: BTreeSet<(AccountId, String)> = BTreeSet::new();
        // The CAS point.
        for write in &decision.writes {
            match write {
                Write::SaveNumber { db } => {
                    let db = db_name(db)?;
                    match self.put_number(&db, decision.doc.to_json()).await? {
                        Some(rev) => decision.doc.rev = Some(rev),
                        None => return Ok(Performed::Conflict),
                    }
                }
                Write::DeleteNumber { db } => {
                    let db = db_name(db)?;
                    let Some(rev) = decision.doc.rev.clone() else { continue };
                    match self.store.delete(&db, &id, &docstore::Rev(rev)).await {
                        Ok(_) => decision.doc.rev = None,
                        Err(docstore::Error::Conflict { .. }) => return Ok(Performed::Conflict),
                        Err(
                            docstore::Error::DocNotFound { .. }
                            | docstore::Error::DbNotFound { .. },
                        ) => return Ok(Performed::Conflict),
                        Err(e) => return Err(db_error(&e)),
                    }
                }
                _ => {}
            }
        }
        for write in &decision.writes {
            match write {
                Write::SaveAccountCopy { account, db } => {
                    touched.insert((account.clone(), db.clone()));
                    self.set_copy(db, &id, Some(&decision.doc), true).await?;
                }
                Write::DeleteAccountCopy { account, db, ignore_missing_db } => {
                    touched.insert((account.clone(), db.clone()));
                    self.set_copy(db, &id, None, *ignore_missing_db).await?;
                }
                _ => {}
            }
        }
        if !touched.is_empty() {
            self.converge_copies(&decision.doc, &touched).await?;
        }
        Ok(Performed::Done)
    }

    /// Writes a number document; `None` on a conflict. A missing database is created (`knm_phone_number:save/1` (doc id = the E.164 number)).
    async fn put_number(&self, db: &DbName, doc: Value) -> Result<Option<String>, Error> {
        for _ in 0..2 {
            match self.store.put(db, doc.clone()).await {
                Ok(rev) => return Ok(Some(rev.0)),
                Err(docstore::Error::Conflict { .. }) => return Ok(None),
                Err(docstore::Error::DbNotFound { .. }) => self.ensure_number_db(db).await?,
                Err(e) => return Err(db_error(&e)),
            }
        }
        Err(Error::Unspecified {
            reason: "database_error".into(),
            cause: Some(format!("database {db} vanished while saving")),
        })
    }

    /// Makes the account copy of `id` in `db` equal to `doc` (or absent), retrying its own
    /// conflicts (copies never re-decide, `knm_phone_number:save/1`'s account-db copy). A missing database: skipped for a save (`knm_numbers:save_numbers/1`),
    /// an error for a deletion unless `ignore_missing_db`.
    pub(super) async fn set_copy(
        &self,
        db: &str,
        id: &str,
        doc: Option<&NumberDoc>,
        ignore_missing_db: bool,
    ) -> Result<(), Error> {
        let db = db_name(db)?;
        for attempt in 0..MAX_ATTEMPTS * 2 {
            docstore::cas_pause(attempt).await;
            let existing = match self.store.get(&db, id).await {
                Ok(e) => e,
                Err(docstore::Error::DbNotFound { .. }) => {
                    return if doc.is_some() || ignore_missing_db {
                        Ok(())
                    } else {
                        Err(Error::Unspecified {
                            reason: "database_error".into(),
                            cause: Some(format!("account database {db} not found")),
                        })
                    };
                }
                Err(e) => return Err(db_error(&e)),
            };
            let rev = existing.as_ref().and_then(|e| e.get("_rev")).and_then(Value::as_str);
            let result = match (doc, rev) {
                (Some(d), rev) => {
                    let body = d.to_account_copy_json(rev);
                    if existing.as_ref().is_some_and(|e| same_without_rev(e, &body)) {
                        return Ok(());
                    }
                    self.store.put(&db, body).await.map(drop)
                }
                (None, Some(rev)) => {
                    self.store.delete(&db, id, &docstore::Rev(rev.to_owned())).await.map(drop)
                }
                (None, None) => return Ok(()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(docstore::Error::Conflict { .. } | docstore::Error::DocNotFound { .. }) => {}
                Err(docstore::Error::DbNotFound { .. }) => return Ok(()),
                Err(e) => {
                    return Err(match doc {
                        Some(_) => Error::AssignFailure { cause: e.to_string() },
                        None => db_error(&e),
                    })
                }
            }
        }
        Err(Error::Conflict {
            id: id.to_owned(),
            cause: format!("the copy of {id} in {db} kept changing"),
        })
    }

    /// After the copies were written: if the number document moved on meanwhile, make the copies
    /// this writer touched match the current document, until it holds still.
    async fn converge_copies(
        &self,
        written: &NumberDoc,
        touched: &BTreeSet<(AccountId, String)>,
    ) -> Result<(), Error> {
        let mut expected = written.rev.clone();
        for _ in 0..MAX_ATTEMPTS * 2 {
            let current = self.load(&written.id).await?;
            let current_rev = current.as_ref().and_then(|d| d.rev.clone());
            if current_rev == expected {
                return Ok(());
            }
            for (account, db) in touched {
                let keep = current.as_ref().filter(|d| d.assigned_to.as_ref() == Some(account));
                self.set_copy(db, written.id.as_str(), keep, true).await?;
            }
            expected = current_rev;
        }
        Ok(())
    }
}

/// A purchase whose outcome is unknown, as recorded on the number (`pvt_carrier_data.
/// pending_order`): the carrier's order, who was buying the number for which account, and since
/// when, so the crawler can finish the purchase for that account once the carrier answers.
struct PendingOrder<'a> {
    module: &'a str,
    order_id: &'a str,
    buyer: Option<&'a AccountId>,
    auth_by: &'a AuthBy,
}

impl PendingOrder<'_> {
    fn to_json(&self, now: i64) -> Value {
        json!({"order_id": self.order_id, "module": self.module, "since": now,
               "assign_to": self.buyer.map(AccountId::as_str), "auth_by": self.auth_by.as_str()})
    }
}

enum Performed {
    Done,
    Conflict,
}

fn same_without_rev(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("_rev");
        }
        v
    };
    strip(a) == strip(b)
}
