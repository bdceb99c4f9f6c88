//! Bulk writes: pool generation (`knm_managed`/`knm_inum`) and the `knm_inventory` CSV import,
//! through `_bulk_docs`.

use std::collections::BTreeMap;

use docstore::DbName;
use serde_json::{json, Map, Value};

use super::{db_name, now_gregorian, NumberStore};
use crate::account::AccountId;
use crate::carriers::Pool;
use crate::doc::NumberDoc;
use crate::error::Error;
use crate::generate::{self, ImportError};

/// How many documents go into one `_bulk_docs` request of a generation or import.
pub const BULK_CHUNK: usize = 1000;

/// Outcome of writing one document of a bulk generation or import.
#[derive(Debug, Default)]
pub struct BulkReport {
    /// Saved, by number.
    pub saved: Vec<String>,
    /// Refused, by number (or `line N` for rows without a number).
    pub errors: BTreeMap<String, ImportError>,
}

impl BulkReport {
    /// `{success: {n: {}}, errors: {n: {reason, message}}}` (the shape of
    /// `knm_managed:import_numbers/2`).
    pub fn to_json(&self) -> Value {
        let success: Map<String, Value> =
            self.saved.iter().map(|n| (n.clone(), json!({}))).collect();
        let errors: Map<String, Value> = self
            .errors
            .iter()
            .map(|(n, e)| (n.clone(), json!({"reason": e.reason, "message": e.message})))
            .collect();
        json!({"success": success, "errors": errors})
    }
}

impl NumberStore {
    /// Writes new documents into one database with `_bulk_docs`, [`BULK_CHUNK`] at a time,
    /// calling `progress(n)` after each chunk with the number of documents it held. Each document
    /// succeeds or fails on its own (an existing number is a `conflict`).
    ///
    /// # Errors
    /// Only when the database cannot be created; write failures are per document.
    pub async fn bulk_create(
        &self,
        db: &DbName,
        docs: Vec<Value>,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<BulkReport, Error> {
        self.ensure_number_db(db).await?;
        let mut report = BulkReport::default();
        for chunk in docs.chunks(BULK_CHUNK) {
            let items = match self.store.bulk_docs(db, chunk.to_vec()).await {
                Ok(items) => items,
                Err(e) => {
                    for d in chunk {
                        let id = d.get("_id").and_then(Value::as_str).unwrap_or("?").to_owned();
                        report.errors.insert(
                            id,
                            ImportError { reason: "database_error".into(), message: e.to_string() },
                        );
                    }
                    progress(chunk.len());
                    continue;
                }
            };
            for item in items {
                match item.outcome {
                    Ok(_) => report.saved.push(item.id),
                    Err(docstore::Error::Conflict { .. }) => {
                        report.errors.insert(
                            item.id.clone(),
                            ImportError {
                                reason: "number_exists".into(),
                                message: format!("number {} already exists", item.id),
                            },
                        );
                    }
                    Err(e) => {
                        report.errors.insert(
                            item.id,
                            ImportError { reason: "database_error".into(), message: e.to_string() },
                        );
                    }
                }
            }
            progress(chunk.len());
        }
        Ok(report)
    }

    /// `kazoo_number_manager_maintenance:generate_numbers/4` `generate_numbers(managed|inum, Account, Start, Quantity)`: the pool documents,
    /// written with `_bulk_docs`; `progress` as in [`NumberStore::bulk_create`].
    ///
    /// # Errors
    /// `invalid` arguments (see [`generate::generate_numbers`]) or an uncreatable database.
    pub async fn generate(
        &self,
        pool: Pool,
        account: &AccountId,
        start: u64,
        quantity: u64,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<BulkReport, Error> {
        let docs = generate::generate_numbers(pool, account, start, quantity)?;
        self.bulk_create(&db_name(pool.db())?, docs, progress).await
    }

    /// A CSV import for `knm_inventory` (see [`generate::parse_inventory_csv`]): each valid row
    /// becomes a number document in its number database (`_bulk_docs`, grouped by database) and,
    /// when assigned, a copy in the owner's account database (if it exists); refused rows are
    /// reported as `line N` (or by number). `progress` gets the rows handled.
    ///
    /// # Errors
    /// A file that is not CSV or has no `number` column.
    pub async fn import_csv<R: std::io::Read>(
        &self,
        input: R,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<BulkReport, Error> {
        let parsed = generate::parse_inventory_csv(input, &self.converters, now_gregorian())?;
        let mut report = BulkReport::default();
        for e in &parsed.errors {
            let key =
                if e.number.is_empty() { format!("line {}", e.line) } else { e.number.clone() };
            report.errors.insert(
                key,
                ImportError {
                    reason: "invalid".into(),
                    message: format!("line {}: {}", e.line, e.reason),
                },
            );
        }
        progress(parsed.errors.len());
        let mut by_db: BTreeMap<String, Vec<NumberDoc>> = BTreeMap::new();
        for (_, doc) in parsed.docs {
            if let Some(db) = doc.db() {
                by_db.entry(db).or_default().push(doc);
            }
        }
        for (db, docs) in by_db {
            let db = db_name(&db)?;
            let owners: BTreeMap<String, NumberDoc> =
                docs.iter().map(|d| (d.id.as_str().to_owned(), d.clone())).collect();
            let sub = self
                .bulk_create(&db, docs.iter().map(NumberDoc::to_json).collect(), progress)
                .await?;
            for id in &sub.saved {
                if let Some(doc) = owners.get(id).filter(|d| d.assigned_to.is_some()) {
                    let owner = doc
                        .assigned_to
                        .as_ref()
                        .map(|a| a.db_name().to_string())
                        .unwrap_or_default();
                    self.set_copy(&owner, id, Some(doc), true).await?;
                }
            }
            report.saved.extend(sub.saved);
            report.errors.extend(sub.errors);
        }
        Ok(report)
    }
}
