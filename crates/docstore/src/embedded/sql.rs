//! The embedded store's SQLite layer: synchronous, one call per [`DocStore`](crate::DocStore)
//! operation, always run on a blocking thread with the connection lock held.
//!
//! Tables: `dbs` (one row per database: a random instance tag and the update sequence), `docs` (the
//! winning revision of each document, tombstones included, keyed by database and id, indexed by
//! sequence) and `local_docs` (`_local/…` documents, outside feeds and `_all_docs`). Only the
//! winning revision is kept: every write is compare-and-swap, so no conflicting branches can form.

use md5::{Digest, Md5};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::selector;
use crate::types::{
    AllDocsPage, AllDocsQuery, AllDocsRow, BulkItem, Change, DbInfo, DbName, DbUpdateKind, Fields,
    Rev, Seq,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dbs (
    db_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    instance TEXT NOT NULL,
    update_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS docs (
    db_id INTEGER NOT NULL REFERENCES dbs(db_id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    rev TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (db_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_by_seq ON docs(db_id, seq);
CREATE TABLE IF NOT EXISTS local_docs (
    db_id INTEGER NOT NULL REFERENCES dbs(db_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    rev INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (db_id, name)
) WITHOUT ROWID;
";

pub(super) fn sql_error(e: rusqlite::Error) -> Error {
    Error::Embedded(Box::new(e))
}

/// Prepares a fresh or existing connection: pragmas and schema.
pub(super) fn init(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql_error)?;
    // In-memory databases answer "memory" and keep it; files switch to write-ahead logging.
    let _mode: String =
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(sql_error)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql_error)?;
    conn.execute_batch(SCHEMA).map_err(sql_error)
}

/// Writes take the database's write lock up front (`BEGIN IMMEDIATE`), so a second process on the
/// same file waits for it (busy timeout) instead of failing its compare-and-swap half way.
fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)
}

/// A database's row.
pub(super) struct DbRow {
    pub id: i64,
    pub instance: String,
    pub update_seq: i64,
}

impl DbRow {
    pub fn seq(&self, n: i64) -> Seq {
        make_seq(n, &self.instance)
    }
}

/// Our sequences are `"N-instance"`: `N` counts the database's updates, `instance` is random per
/// database incarnation, so a `since` taken from a deleted-and-recreated database is recognised
/// and replayed from the start (as CouchDB does for sequences of an unknown epoch).
pub(super) fn make_seq(n: i64, instance: &str) -> Seq {
    Seq::from_json(Value::from(format!("{n}-{instance}")))
}

/// Where a feed starts for `since` in the database `row`.
pub(super) fn resolve_since(row: &DbRow, since: &Seq) -> Result<i64> {
    let malformed =
        || Error::BadRequest { reason: "Malformed sequence supplied in 'since' parameter.".into() };
    match since.as_json() {
        Value::Number(n) => n.as_i64().filter(|n| *n >= 0).ok_or_else(malformed),
        Value::String(s) if s == "now" => Ok(row.update_seq),
        Value::String(s) => match s.split_once('-') {
            None => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(malformed),
            Some((n, instance)) => {
                let n = n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(malformed)?;
                Ok(if instance == row.instance { n } else { 0 })
            }
        },
        _ => Err(malformed()),
    }
}

/// The update sequence of every database, and SQLite's `data_version` when it was taken.
pub(super) struct Snapshot {
    pub data_version: i64,
    dbs: std::collections::BTreeMap<String, (i64, i64)>,
}

impl Snapshot {
    /// The database events that lead from `old` to `new`.
    pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<(DbName, DbUpdateKind)> {
        let mut events = Vec::new();
        let mut push = |name: &str, kind| {
            if let Ok(db) = DbName::new(name) {
                events.push((db, kind));
            }
        };
        for (name, (id, _)) in &old.dbs {
            if new.dbs.get(name).is_none_or(|(new_id, _)| new_id != id) {
                push(name, DbUpdateKind::Deleted);
            }
        }
        for (name, (id, seq)) in &new.dbs {
            match old.dbs.get(name) {
                Some((old_id, old_seq)) if old_id == id => {
                    if old_seq != seq {
                        push(name, DbUpdateKind::Updated);
                    }
                }
                _ => {
                    push(name, DbUpdateKind::Created);
                    if *seq > 0 {
                        push(name, DbUpdateKind::Updated);
                    }
                }
            }
        }
        events
    }
}

/// SQLite's counter of commits by other connections.
pub(super) fn data_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(sql_error)
}

pub(super) fn snapshot(conn: &mut Connection) -> Result<Snapshot> {
    let data_version = data_version(conn)?;
    let mut stmt = conn.prepare("SELECT name, db_id, update_seq FROM dbs").map_err(sql_error)?;
    let dbs = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))))
        .map_err(sql_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_error)?;
    Ok(Snapshot { data_version, dbs })
}

pub(super) fn db_row(conn: &Connection, db: &DbName) -> Result<Option<DbRow>> {
    conn.query_row(
        "SELECT db_id, instance, update_seq FROM dbs WHERE name = ?1",
        [db.as_str()],
        |r| Ok(DbRow { id: r.get(0)?, instance: r.get(1)?, update_seq: r.get(2)? }),
    )
    .optional()
    .map_err(sql_error)
}

pub(super) fn require_db(conn: &Connection, db: &DbName) -> Result<DbRow> {
    db_row(conn, db)?.ok_or_else(|| Error::DbNotFound { db: db.to_string() })
}

pub(super) fn list_dbs(conn: &Connection) -> Result<Vec<DbName>> {
    let mut stmt = conn.prepare("SELECT name FROM dbs ORDER BY name").map_err(sql_error)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_error)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql_error)?;
    names.into_iter().map(DbName::new).collect()
}

pub(super) fn create_db(conn: &Connection, db: &DbName) -> Result<()> {
    let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let inserted = conn
        .execute(
            "INSERT INTO dbs (name, instance) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![db.as_str(), instance],
        )
        .map_err(sql_error)?;
    if inserted == 0 {
        return Err(Error::DbExists { db: db.to_string() });
    }
    Ok(())
}

pub(super) fn delete_db(conn: &Connection, db: &DbName) -> Result<()> {
    let deleted =
        conn.execute("DELETE FROM dbs WHERE name = ?1", [db.as_str()]).map_err(sql_error)?;
    if deleted == 0 {
        return Err(Error::DbNotFound { db: db.to_string() });
    }
    Ok(())
}

pub(super) fn db_info(conn: &Connection, db: &DbName) -> Result<DbInfo> {
    let row = require_db(conn, db)?;
    let (live, deleted): (i64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted = 1), 0) \
             FROM docs WHERE db_id = ?1",
            [row.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql_error)?;
    Ok(DbInfo {
        db: db.clone(),
        doc_count: live as u64,
        doc_del_count: deleted as u64,
        update_seq: row.seq(row.update_seq),
    })
}

/// Rebuilds the document as CouchDB returns it: `_id`, `_rev`, (`_deleted`), then the body.
fn assemble(id: &str, rev: &str, deleted: bool, body: &str) -> Result<Value> {
    assemble_fields(id, rev, deleted, body, None)
}

/// [`assemble`], parsing only the `fields` of the body when given.
fn assemble_fields(
    id: &str,
    rev: &str,
    deleted: bool,
    body: &str,
    fields: Option<&Fields>,
) -> Result<Value> {
    let decode_err = |e: serde_json::Error| Error::Decode {
        what: format!("stored document {id}"),
        message: e.to_string(),
    };
    // Sized up front: growing a map re-allocates (a projection holds its few fields at most).
    let mut doc = Map::with_capacity(fields.map_or(16, |f| f.names().len().min(24)));
    doc.insert("_id".into(), Value::from(id));
    doc.insert("_rev".into(), Value::from(rev));
    if deleted {
        doc.insert("_deleted".into(), Value::Bool(true));
    }
    let doc = match fields {
        // Parsed straight into the document, skipping what is not kept.
        Some(fields) => fields.parse_into(body, doc).map_err(decode_err)?,
        None => {
            let stored: Map<String, Value> = serde_json::from_str(body).map_err(decode_err)?;
            doc.extend(stored);
            doc
        }
    };
    Ok(Value::Object(doc))
}

pub(super) fn get(conn: &Connection, db: &DbName, id: &str) -> Result<Option<Value>> {
    if let Some(name) = id.strip_prefix("_local/") {
        return get_local(conn, db, name);
    }
    let row = require_db(conn, db)?;
    get_in(conn, row.id, id)
}

fn get_in(conn: &Connection, db_id: i64, id: &str) -> Result<Option<Value>> {
    let found = conn
        .query_row(
            "SELECT rev, body FROM docs WHERE db_id = ?1 AND id = ?2 AND deleted = 0",
            params![db_id, id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(sql_error)?;
    found.map(|(rev, body)| assemble(id, &rev, false, &body)).transpose()
}

pub(super) fn get_many(
    conn: &Connection,
    db: &DbName,
    ids: &[String],
) -> Result<Vec<Option<Value>>> {
    let row = require_db(conn, db)?;
    ids.iter().map(|id| get_in(conn, row.id, id)).collect()
}

/// A document write as `_bulk_docs` sees it. Returns the id and the per-document outcome; `Err`
/// only for storage failures, which abort the whole call.
pub(super) fn write_docs(
    conn: &mut Connection,
    db: &DbName,
    docs: Vec<Value>,
) -> Result<Vec<BulkItem>> {
    let tx = write_transaction(conn)?;
    let row = require_db(&tx, db)?;
    let mut seq = row.update_seq;
    let mut items = Vec::with_capacity(docs.len());
    for doc in docs {
        items.push(write_one(&tx, db, row.id, &mut seq, doc)?);
    }
    if seq != row.update_seq {
        tx.execute("UPDATE dbs SET update_seq = ?1 WHERE db_id = ?2", params![seq, row.id])
            .map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)?;
    Ok(items)
}

/// The special members CouchDB accepts at the top of a document; we keep `_attachments` as data.
const SPECIAL_MEMBERS: [&str; 4] = ["_id", "_rev", "_deleted", "_attachments"];

fn bad(reason: impl Into<String>) -> Error {
    Error::BadRequest { reason: reason.into() }
}

/// Checks a document id the way CouchDB does for normal writes.
pub(super) fn check_doc_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(bad("Document id must not be empty"));
    }
    if id.starts_with('_') && !id.starts_with("_design/") {
        return Err(bad("Only reserved document ids may start with underscore."));
    }
    Ok(())
}

fn parse_rev(v: Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => match s.split_once('-') {
            Some((n, hash)) if n.parse::<u64>().is_ok() && !hash.is_empty() => Ok(Some(s)),
            _ => Err(bad("Invalid rev format")),
        },
        _ => Err(bad("Invalid rev format")),
    }
}

fn write_one(
    tx: &Transaction<'_>,
    db: &DbName,
    db_id: i64,
    seq: &mut i64,
    doc: Value,
) -> Result<BulkItem> {
    let Value::Object(mut body) = doc else {
        return Ok(BulkItem {
            id: String::new(),
            outcome: Err(bad("Document must be a JSON object")),
        });
    };
    let id = match body.remove("_id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().simple().to_string(),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Ok(BulkItem {
                id: String::new(),
                outcome: Err(bad("Document id must be a string")),
            })
        }
    };
    let outcome = write_checked(tx, db, db_id, seq, &id, body);
    match outcome {
        Ok(rev) => Ok(BulkItem { id, outcome: Ok(rev) }),
        Err(Error::Embedded(e)) => Err(Error::Embedded(e)),
        Err(e) => Ok(BulkItem { id, outcome: Err(e) }),
    }
}

fn write_checked(
    tx: &Transaction<'_>,
    db: &DbName,
    db_id: i64,
    seq: &mut i64,
    id: &str,
    mut body: Map<String, Value>,
) -> Result<Rev> {
    check_doc_id(id)?;
    let rev = parse_rev(body.remove("_rev").unwrap_or(Value::Null))?;
    let deleted = match body.remove("_deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(bad("_deleted must be a boolean")),
    };
    if let Some(key) =
        body.keys().find(|k| k.starts_with('_') && !SPECIAL_MEMBERS.contains(&k.as_str()))
    {
        return Err(bad(format!("Bad special document member: {key}")));
    }
    let existing = tx
        .query_row(
            "SELECT rev, deleted FROM docs WHERE db_id = ?1 AND id = ?2",
            params![db_id, id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
        )
        .optional()
        .map_err(sql_error)?;
    let conflict = || Error::Conflict { db: db.to_string(), id: id.to_owned() };
    let previous = match (existing, rev) {
        (Some((current, _)), Some(given)) if current == given => Some(current),
        (Some((_, false)), _) => return Err(conflict()),
        // A tombstone is re-created without a rev and continues its generation.
        (Some((tombstone, true)), None) => Some(tombstone),
        (Some((_, true)), Some(_)) | (None, Some(_)) => return Err(conflict()),
        (None, None) => None,
    };
    let body_json = serde_json::to_string(&Value::Object(body))
        .map_err(|e| Error::Decode { what: format!("document {id}"), message: e.to_string() })?;
    let new_rev = next_rev(previous.as_deref(), deleted, &body_json);
    *seq += 1;
    tx.execute(
        "INSERT INTO docs (db_id, id, rev, deleted, seq, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT(db_id, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted, \
         seq = excluded.seq, body = excluded.body",
        params![db_id, id, new_rev, deleted, *seq, body_json],
    )
    .map_err(sql_error)?;
    Ok(Rev(new_rev))
}

/// `N-md5`: the generation after `previous`, hashed over the previous rev, the deletion flag and
/// the body, so the same edit of the same revision gives the same rev (CouchDB's revs are
/// deterministic too).
fn next_rev(previous: Option<&str>, deleted: bool, body_json: &str) -> String {
    let generation = previous.and_then(|p| Rev(p.to_owned()).generation()).unwrap_or(0) + 1;
    let mut hasher = Md5::new();
    hasher.update(previous.unwrap_or("").as_bytes());
    hasher.update([0, u8::from(deleted), 0]);
    hasher.update(body_json.as_bytes());
    format!("{generation}-{}", hex::encode(hasher.finalize()))
}

/// Deletes at `rev`: a tombstone with an empty body.
pub(super) fn delete(conn: &mut Connection, db: &DbName, id: &str, rev: &Rev) -> Result<Rev> {
    let tx = write_transaction(conn)?;
    let row = require_db(&tx, db)?;
    let current = tx
        .query_row(
            "SELECT rev FROM docs WHERE db_id = ?1 AND id = ?2 AND deleted = 0",
            params![row.id, id],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql_error)?;
    match current {
        None => return Err(Error::DocNotFound { db: db.to_string(), id: id.to_owned() }),
        Some(current) if current != rev.as_str() => {
            return Err(Error::Conflict { db: db.to_string(), id: id.to_owned() })
        }
        Some(_) => {}
    }
    let mut seq = row.update_seq;
    let mut body = Map::new();
    body.insert("_rev".into(), Value::from(rev.as_str()));
    body.insert("_deleted".into(), Value::Bool(true));
    let new_rev = write_checked(&tx, db, row.id, &mut seq, id, body)?;
    tx.execute("UPDATE dbs SET update_seq = ?1 WHERE db_id = ?2", params![seq, row.id])
        .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(new_rev)
}

pub(super) fn all_docs(conn: &Connection, db: &DbName, q: &AllDocsQuery) -> Result<AllDocsPage> {
    let row = require_db(conn, db)?;
    let total_rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM docs WHERE db_id = ?1 AND deleted = 0", [row.id], |r| {
            r.get(0)
        })
        .map_err(sql_error)?;
    // In descending order the start key is the high end, as in CouchDB.
    let (start_op, end_op, before_op) = if q.descending {
        (">=", if q.exclusive_end { ">" } else { ">=" }, ">")
    } else {
        ("<=", if q.exclusive_end { "<" } else { "<=" }, "<")
    };
    let limit = q.limit.map_or(-1, |l| l as i64);
    let skip = q.skip as i64;
    let mut sql = String::from("SELECT id, rev, body FROM docs WHERE db_id = ?1 AND deleted = 0");
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&row.id];
    if let Some(start) = &q.start_key {
        // `start <= id` ascending, `start >= id` descending.
        args.push(start);
        sql.push_str(&format!(" AND ?{} {start_op} id", args.len()));
    }
    if let Some(end) = &q.end_key {
        args.push(end);
        sql.push_str(&format!(" AND id {end_op} ?{}", args.len()));
    }
    sql.push_str(if q.descending { " ORDER BY id DESC" } else { " ORDER BY id" });
    args.push(&limit);
    sql.push_str(&format!(" LIMIT ?{}", args.len()));
    args.push(&skip);
    sql.push_str(&format!(" OFFSET ?{}", args.len()));

    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
    let raw = stmt
        .query_map(args.as_slice(), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .map_err(sql_error)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql_error)?;
    let rows = raw
        .into_iter()
        .map(|(id, rev, body)| {
            let doc = if q.include_docs { Some(assemble(&id, &rev, false, &body)?) } else { None };
            Ok(AllDocsRow { id, rev: Rev(rev), doc })
        })
        .collect::<Result<Vec<_>>>()?;

    let before: i64 = match &q.start_key {
        Some(start) => conn
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM docs \
                     WHERE db_id = ?1 AND deleted = 0 AND id {before_op} ?2"
                ),
                params![row.id, start],
                |r| r.get(0),
            )
            .map_err(sql_error)?,
        None => 0,
    };
    Ok(AllDocsPage {
        total_rows: total_rows as u64,
        offset: (before + skip).min(total_rows) as u64,
        rows,
        // Stored documents passed serde_json on the way in: every row decodes.
        issues: Vec::new(),
    })
}

/// One scan of the changes after `since`.
pub(super) struct Scan {
    /// Matching rows (each document once, at its latest change).
    pub rows: Vec<Change>,
    /// The sequence of the last change looked at (matching or not): resume from here.
    pub last_scanned: i64,
    /// Whether the scan stopped at `limit` rather than at the end of the feed.
    pub hit_limit: bool,
}

/// The changes of database `row` after `since`, filtered by `selector`, at most `limit` rows.
pub(super) fn scan_changes(
    conn: &Connection,
    row: &DbRow,
    since: i64,
    limit: Option<usize>,
    include_docs: bool,
    selector: Option<&Value>,
    fields: Option<&Fields>,
) -> Result<Scan> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, id, rev, deleted, body FROM docs \
             WHERE db_id = ?1 AND seq > ?2 ORDER BY seq",
        )
        .map_err(sql_error)?;
    let mut cursor = stmt.query(params![row.id, since]).map_err(sql_error)?;
    let mut scan = Scan { rows: Vec::new(), last_scanned: since, hit_limit: false };
    if limit == Some(0) {
        scan.hit_limit = true;
        return Ok(scan);
    }
    while let Some(r) = cursor.next().map_err(sql_error)? {
        let seq: i64 = r.get(0).map_err(sql_error)?;
        let id: String = r.get(1).map_err(sql_error)?;
        let rev: String = r.get(2).map_err(sql_error)?;
        let deleted: bool = r.get(3).map_err(sql_error)?;
        let body: String = r.get(4).map_err(sql_error)?;
        scan.last_scanned = seq;
        let needs_doc = include_docs || selector.is_some();
        let mut doc = if needs_doc { Some(assemble(&id, &rev, deleted, &body)?) } else { None };
        if let (Some(selector), Some(doc)) = (selector, &doc) {
            if !selector::matches(selector, doc) {
                continue;
            }
        }
        if let (Some(fields), Some(doc)) = (fields, doc.as_mut()) {
            fields.apply(doc);
        }
        scan.rows.push(Change {
            seq: row.seq(seq),
            id,
            rev: Rev(rev),
            deleted,
            doc: if include_docs { doc } else { None },
        });
        if limit.is_some_and(|l| scan.rows.len() >= l) {
            scan.hit_limit = true;
            break;
        }
    }
    Ok(scan)
}

/// One change row as stored: decoded by [`RawScan::decode`] after the connection lock is released.
pub(super) struct RawChange {
    seq: i64,
    id: String,
    rev: String,
    deleted: bool,
    body: Option<String>,
}

/// The rows of an unfiltered change scan, not yet decoded.
pub(super) struct RawScan {
    pub rows: Vec<RawChange>,
    pub last_scanned: i64,
    pub hit_limit: bool,
}

/// The changes of database `row` after `since`, at most `limit`, without a selector: only the
/// SQLite reads, so that the caller can decode (the CPU part) without holding the connection.
pub(super) fn scan_changes_raw(
    conn: &Connection,
    row: &DbRow,
    since: i64,
    limit: Option<usize>,
    include_docs: bool,
) -> Result<RawScan> {
    let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut scan = RawScan { rows: Vec::new(), last_scanned: since, hit_limit: false };
    if limit == 0 {
        scan.hit_limit = true;
        return Ok(scan);
    }
    let sql = if include_docs {
        "SELECT seq, id, rev, deleted, body FROM docs \
         WHERE db_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    } else {
        "SELECT seq, id, rev, deleted, NULL FROM docs \
         WHERE db_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    };
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let mut cursor = stmt.query(params![row.id, since, limit]).map_err(sql_error)?;
    while let Some(r) = cursor.next().map_err(sql_error)? {
        scan.rows.push(RawChange {
            seq: r.get(0).map_err(sql_error)?,
            id: r.get(1).map_err(sql_error)?,
            rev: r.get(2).map_err(sql_error)?,
            deleted: r.get(3).map_err(sql_error)?,
            body: r.get(4).map_err(sql_error)?,
        });
    }
    if let Some(last) = scan.rows.last() {
        scan.last_scanned = last.seq;
    }
    scan.hit_limit = i64::try_from(scan.rows.len()).is_ok_and(|n| n >= limit);
    Ok(scan)
}

impl RawScan {
    /// Decodes the rows (their `fields` only, when given) into a [`Scan`].
    pub(super) fn decode(self, instance: &str, fields: Option<&Fields>) -> Result<Scan> {
        let rows = self
            .rows
            .into_iter()
            .map(|raw| {
                let doc = match &raw.body {
                    Some(body) => {
                        Some(assemble_fields(&raw.id, &raw.rev, raw.deleted, body, fields)?)
                    }
                    None => None,
                };
                Ok(Change {
                    seq: make_seq(raw.seq, instance),
                    id: raw.id,
                    rev: Rev(raw.rev),
                    deleted: raw.deleted,
                    doc,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Scan { rows, last_scanned: self.last_scanned, hit_limit: self.hit_limit })
    }
}

/// How many changes come after `seq`.
pub(super) fn count_after(conn: &Connection, row: &DbRow, seq: i64) -> Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM docs WHERE db_id = ?1 AND seq > ?2",
        params![row.id, seq],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(sql_error)
}

pub(super) fn get_local(conn: &Connection, db: &DbName, name: &str) -> Result<Option<Value>> {
    let row = require_db(conn, db)?;
    let found = conn
        .query_row(
            "SELECT rev, body FROM local_docs WHERE db_id = ?1 AND name = ?2",
            params![row.id, name],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(sql_error)?;
    found
        .map(|(rev, body)| assemble(&format!("_local/{name}"), &format!("0-{rev}"), false, &body))
        .transpose()
}

pub(super) fn put_local(conn: &mut Connection, db: &DbName, name: &str, body: Value) -> Result<()> {
    let Value::Object(mut body) = body else {
        return Err(bad("Document must be a JSON object"));
    };
    if name.is_empty() {
        return Err(bad("_local document name must not be empty"));
    }
    body.remove("_id");
    body.remove("_rev");
    let body_json = serde_json::to_string(&Value::Object(body)).map_err(|e| Error::Decode {
        what: format!("document _local/{name}"),
        message: e.to_string(),
    })?;
    let tx = write_transaction(conn)?;
    let row = require_db(&tx, db)?;
    tx.execute(
        "INSERT INTO local_docs (db_id, name, rev, body) VALUES (?1, ?2, 1, ?3) \
         ON CONFLICT(db_id, name) DO UPDATE SET rev = rev + 1, body = excluded.body",
        params![row.id, name, body_json],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(dbs: &[(&str, i64, i64)]) -> Snapshot {
        let dbs = dbs.iter().map(|(name, id, seq)| (name.to_string(), (*id, *seq))).collect();
        Snapshot { data_version: 0, dbs }
    }

    #[test]
    fn snapshot_diff_names_every_event() {
        let old = snap(&[("offnet", 1, 5), ("gone", 2, 1), ("same", 3, 7), ("recreated", 4, 9)]);
        let new = snap(&[("offnet", 1, 6), ("same", 3, 7), ("recreated", 5, 0), ("new", 6, 2)]);
        let events: Vec<(String, DbUpdateKind)> = Snapshot::diff(&old, &new)
            .into_iter()
            .map(|(db, kind)| (db.to_string(), kind))
            .collect();
        let expected = [
            ("gone", DbUpdateKind::Deleted),
            ("recreated", DbUpdateKind::Deleted),
            ("new", DbUpdateKind::Created),
            ("new", DbUpdateKind::Updated),
            ("offnet", DbUpdateKind::Updated),
            ("recreated", DbUpdateKind::Created),
        ];
        let expected: Vec<(String, DbUpdateKind)> =
            expected.iter().map(|(db, kind)| (db.to_string(), *kind)).collect();
        assert_eq!(events, expected);
    }

    #[test]
    fn since_parsing() {
        let row = DbRow { id: 1, instance: "abc".into(), update_seq: 9 };
        let since = |v: Value| resolve_since(&row, &Seq::from_json(v));
        assert_eq!(since(Value::from(0)).unwrap(), 0);
        assert_eq!(since(Value::from("0")).unwrap(), 0);
        assert_eq!(since(Value::from("now")).unwrap(), 9);
        assert_eq!(since(Value::from("4-abc")).unwrap(), 4);
        assert_eq!(since(Value::from("4-other")).unwrap(), 0);
        assert_eq!(since(Value::from(4)).unwrap(), 4);
        for bad in [Value::from("x-abc"), Value::from(-1), Value::Null, Value::from("abc")] {
            assert_eq!(since(bad.clone()).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn revs_are_deterministic_and_count_generations() {
        let first = next_rev(None, false, r#"{"a":1}"#);
        assert!(first.starts_with("1-") && first.len() == 34, "{first}");
        assert_eq!(first, next_rev(None, false, r#"{"a":1}"#));
        assert_ne!(first, next_rev(None, true, r#"{"a":1}"#));
        let second = next_rev(Some(&first), false, r#"{"a":2}"#);
        assert!(second.starts_with("2-"), "{second}");
    }
}
