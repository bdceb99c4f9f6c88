//! Purchases whose outcome is unknown (an order the carrier took but had not completed when the
//! buy gave up): the crawler asks the carrier again and either lands the number for the account
//! that was buying it or forgets the record.

use e164::E164;
use serde_json::Value;

use super::{db_error, db_name, NumberStore, RunOptions};
use crate::auth::AuthBy;
use crate::carriers::{PendingOutcome, PENDING_ORDER};
use crate::doc::{number_db, NumberState};
use crate::error::Error;
use crate::lifecycle::{Move, Operation};

/// What reconciling a pending purchase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The number carries no pending purchase (any more).
    NotPending,
    /// The carrier completed the order: the number is now `in_service` for the buyer.
    Landed,
    /// The carrier says the order ended without the number: the record is gone (a `discovery`
    /// record is deleted, any other document loses its pending mark), nothing was bought.
    Released(String),
    /// Still unknown (in progress, or the carrier could not be asked): left for a later run.
    StillPending(String),
}

impl NumberStore {
    /// Asks the carrier once about the purchase recorded as pending on `number` and lands or
    /// releases it (see [`Reconciled`]). Landing is the buy the store layer performs for any
    /// caller ([`NumberStore::apply`] of a move to the recorded buyer, with the recorded
    /// `auth_by`), whose carrier step follows the recorded order instead of placing a new one.
    ///
    /// # Errors
    /// A storage failure, the carrier's configuration missing, or the refusal of the move.
    pub async fn reconcile_pending(&self, number: &E164) -> Result<Reconciled, Error> {
        let Some(doc) = self.load(number).await? else { return Ok(Reconciled::NotPending) };
        let Some(pending) = doc.carrier_data.get(PENDING_ORDER).cloned() else {
            return Ok(Reconciled::NotPending);
        };
        let field = |k: &str| pending.get(k).and_then(Value::as_str).map(str::to_owned);
        let auth_by = match field("auth_by") {
            Some(raw) => AuthBy::parse(&raw).unwrap_or(AuthBy::System),
            None => AuthBy::System,
        };
        let index = self.index();
        let ctx = self.carrier_ctx(&index, &auth_by);
        let outcome = match field("module").as_deref() {
            Some("knm_bandwidth2") => crate::carriers::pending_order_outcome(&doc, &ctx).await?,
            other => PendingOutcome::Failed(format!(
                "module {} does not record pending orders",
                other.unwrap_or("(none)")
            )),
        };
        match outcome {
            PendingOutcome::Completed => {
                let Some(buyer) = field("assign_to").and_then(|b| crate::AccountId::parse(&b).ok())
                else {
                    return Ok(Reconciled::StillPending(
                        "the order completed but the record names no buyer".into(),
                    ));
                };
                let op = Operation::Move(Move { assign_to: Some(buyer), ..Move::default() });
                self.apply(number, &op, &RunOptions::by(auth_by)).await?;
                Ok(Reconciled::Landed)
            }
            PendingOutcome::Failed(reason) => {
                self.forget_pending(number, &doc).await?;
                Ok(Reconciled::Released(reason))
            }
            PendingOutcome::Unknown(reason) => Ok(Reconciled::StillPending(reason)),
        }
    }

    /// Deletes the `discovery` record `doc` of a purchase that did not happen, or removes the
    /// pending mark from any other document (compare-and-swap on the revision read: a document
    /// that changed meanwhile is left for the next run).
    async fn forget_pending(
        &self,
        number: &E164,
        doc: &crate::doc::NumberDoc,
    ) -> Result<(), Error> {
        let Some(db) = number_db(number.as_str()) else { return Ok(()) };
        let db = db_name(&db)?;
        let rev = docstore::Rev(doc.rev.clone().unwrap_or_default());
        let result = if doc.state == NumberState::Discovery {
            self.store.delete(&db, number.as_str(), &rev).await.map(drop)
        } else {
            let mut kept = doc.clone();
            kept.carrier_data.remove(PENDING_ORDER);
            self.store.put(&db, kept.to_json()).await.map(drop)
        };
        match result {
            Ok(())
            | Err(docstore::Error::Conflict { .. } | docstore::Error::DocNotFound { .. }) => Ok(()),
            Err(e) => Err(db_error(&e)),
        }
    }
}
