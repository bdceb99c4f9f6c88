//! Reading a whole database at once through `_all_docs`, the one pager every read from the start
//! uses (a follower's first read and its re-reads, [`Fleet::read_now`](crate::Fleet::read_now),
//! the routing reactor's one-shot reads).
//!
//! The database's `update_seq` is noted first, then its documents are read in pages of
//! `_all_docs?include_docs=true` (keyed on the last id seen, so a page never re-reads a row).
//! Every document written after the noted sequence may or may not be in the read; a follower that
//! continues from the noted sequence sees those changes again, which is harmless because
//! applying a change twice is (the follower's delivery is at least once). Deleted documents are
//! not in `_all_docs`: a read from the start has nothing to delete.

use serde_json::Value;

use crate::error::Result;
use crate::store::DocStore;
use crate::types::{AllDocsPage, AllDocsQuery, AllDocsRow, Change, DbName, Fields, RowAction, Seq};

/// Reads every current document of `db` (design documents included, as CouchDB lists them), with
/// the database's `update_seq` noted before the first page. Each page is shown to `on_page`
/// before its rows are kept (for its [`RowIssue`](crate::RowIssue)s); rows without a document are
/// dropped. `page_size` rows per request (at least 1).
///
/// # Errors
/// The store's (`DbNotFound` when the database does not exist).
pub async fn read_all_docs(
    store: &dyn DocStore,
    db: &DbName,
    page_size: usize,
    mut on_page: impl FnMut(&AllDocsPage) + Send,
) -> Result<(Vec<AllDocsRow>, Seq)> {
    let last_seq = store.db_info(db).await?.update_seq;
    let page_size = page_size.max(1);
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let query = AllDocsQuery {
            start_key: start.clone(),
            skip: usize::from(start.is_some()),
            limit: Some(page_size),
            include_docs: true,
            ..AllDocsQuery::default()
        };
        let page = store.all_docs(db, &query).await?;
        on_page(&page);
        let skipped = page.issues.iter().filter(|i| i.action == RowAction::Skipped).count();
        let rows = page.rows.len() + skipped;
        start = page
            .rows
            .last()
            .map(|row| row.id.clone())
            .max(page.issues.iter().filter_map(|i| i.id.clone()).max());
        out.extend(page.rows.into_iter().filter(|row| row.doc.is_some()));
        if rows < page_size {
            break;
        }
    }
    Ok((out, last_seq))
}

/// The rows of a [`read_all_docs`] as the changes a follower delivers, all at `last_seq`: only
/// the documents `selector` matches (applied here: `_all_docs` cannot filter), without their
/// documents unless `include_docs`, projected on `fields` if given.
pub(crate) fn as_changes(
    rows: Vec<AllDocsRow>,
    last_seq: &Seq,
    selector: Option<&Value>,
    include_docs: bool,
    fields: Option<&Fields>,
) -> Vec<Change> {
    rows.into_iter()
        .filter_map(|row| {
            let mut doc = row.doc?;
            if !selector.is_none_or(|s| crate::selector::matches(s, &doc)) {
                return None;
            }
            if let Some(fields) = fields {
                fields.apply(&mut doc);
            }
            Some(Change {
                seq: last_seq.clone(),
                id: row.id,
                rev: row.rev,
                deleted: false,
                doc: include_docs.then_some(doc),
            })
        })
        .collect()
}
