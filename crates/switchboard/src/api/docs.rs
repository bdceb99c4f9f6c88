//! Crossbar's document CRUD over the docstore, shared by the resources and connectivity routes:
//! PUT creates (32-hex id), POST replaces the public fields, PATCH merges them, DELETE removes;
//! every write is a `_rev` compare-and-swap (a stale `If-Match` or a concurrent edit is a 409),
//! validated against the Kazoo schema before anything is written, with `pvt_type`,
//! `pvt_created` and `pvt_modified` (Gregorian seconds, as Kazoo stores them) kept by us.

use axum::http::HeaderMap;
use docstore::{AllDocsQuery, DbName, DesignKind, Rev, SharedStore};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::schema::Schema;

/// Seconds from 0000-01-01 to 1970-01-01 (Erlang's `calendar:datetime_to_gregorian_seconds`).
const UNIX_EPOCH_GREGORIAN: u64 = 62_167_219_200;

/// Now, in Gregorian seconds.
pub(crate) fn gregorian_now() -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    unix + UNIX_EPOCH_GREGORIAN
}

/// A new Kazoo document id: 32 lowercase hex characters.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether a key is one the client may not set (`_id`, `_rev`, `pvt_*`, `id`).
fn is_private(key: &str) -> bool {
    key.starts_with('_') || key.starts_with("pvt_") || key == "id"
}

/// The public view of a stored document: private keys dropped, `id` set.
pub(crate) fn public(doc: &Value) -> Value {
    let mut out = Map::new();
    if let Some(map) = doc.as_object() {
        for (k, v) in map {
            if !is_private(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        if let Some(id) = map.get("_id") {
            out.insert("id".into(), id.clone());
        }
    }
    Value::Object(out)
}

/// The public fields of a request body.
fn public_fields(mut body: Map<String, Value>) -> Map<String, Value> {
    body.retain(|k, _| !is_private(k));
    body
}

/// A kind of document the API manages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// Its `pvt_type`.
    pub(crate) pvt_type: &'static str,
    /// Its schema.
    pub(crate) schema: Schema,
    /// The design documents of its database.
    pub(crate) design: DesignKind,
}

/// Where the documents are, and who owns them.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The database.
    pub(crate) db: DbName,
    /// The owning account (local documents), stamped as `pvt_account_id`/`pvt_account_db`.
    pub(crate) account: Option<docstore::AccountId>,
}

/// Every document of `kind` in the database, public views sorted by id; none if the database
/// does not exist.
pub(crate) async fn list(
    store: &SharedStore,
    place: &Place,
    kind: Kind,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let query = AllDocsQuery {
            start_key: start.clone(),
            limit: Some(1000),
            skip: usize::from(start.is_some()),
            include_docs: true,
            ..AllDocsQuery::default()
        };
        let page = match store.all_docs(&place.db, &query).await {
            Ok(page) => page,
            Err(docstore::Error::DbNotFound { .. }) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let n = page.rows.len();
        for row in &page.rows {
            if let Some(doc) = &row.doc {
                if doc.get("pvt_type").and_then(Value::as_str) == Some(kind.pvt_type) {
                    out.push(public(doc));
                }
            }
        }
        if n < 1000 {
            return Ok(out);
        }
        start = page.rows.last().map(|r| r.id.clone());
    }
}

/// The stored document `id` of `kind`.
///
/// # Errors
/// 404 `bad_identifier` when missing, deleted, or of another type.
pub(crate) async fn read(
    store: &SharedStore,
    place: &Place,
    kind: Kind,
    id: &str,
) -> Result<Value, ApiError> {
    let doc = match store.get(&place.db, id).await {
        Ok(doc) => doc,
        Err(docstore::Error::DbNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    match doc {
        Some(doc) if doc.get("pvt_type").and_then(Value::as_str) == Some(kind.pvt_type) => Ok(doc),
        _ => Err(ApiError::BadIdentifier(id.to_owned())),
    }
}

/// The revision a request is made against: its `If-Match` header (quotes and a weak `W/` prefix
/// optional; `*` pins nothing) and the `_rev` of its body, if any. When both are given and
/// differ, one of them is stale: a 409 before anything is read.
///
/// # Errors
/// 400 when `If-Match` is not readable text, repeated or a list, or when `_rev` is not a
/// string: a pin that cannot be read is refused, never ignored (ignoring it would let a stale
/// write through). 409 when the two pins disagree.
pub(crate) fn pinned_rev(
    headers: &HeaderMap,
    body: Option<&Map<String, Value>>,
) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(axum::http::header::IF_MATCH).iter();
    let header = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("If-Match is given more than once".into()))
        }
        (Some(value), None) => {
            let text = value.to_str().map_err(|_| {
                ApiError::BadRequest("If-Match is not readable text (visible ASCII)".into())
            })?;
            let text = text.trim();
            let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
            if text.contains(',') || text.contains('"') {
                return Err(ApiError::BadRequest(
                    "If-Match must name one revision (a list is not supported)".into(),
                ));
            }
            (!text.is_empty() && text != "*").then(|| text.to_owned())
        }
    };
    let in_body = match body.and_then(|b| b.get("_rev")) {
        None | Some(Value::Null) => None,
        Some(Value::String(rev)) if rev.is_empty() => None,
        Some(Value::String(rev)) => Some(rev.clone()),
        Some(_) => return Err(ApiError::validation("_rev", "type", "Value is not of type string")),
    };
    match (header, in_body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::Conflict(format!(
            "If-Match names revision {h} and the body's _rev names {b}"
        ))),
        (h, b) => Ok(h.or(b)),
    }
}

/// Creates the database (and its design documents) if it is missing.
async fn ensure_db(store: &SharedStore, place: &Place, kind: Kind) -> Result<(), ApiError> {
    if store.ensure_db(&place.db).await? {
        docstore::deploy(store.as_ref(), &place.db, kind.design).await?;
    }
    Ok(())
}

/// Validates a new document and stores it with a fresh id. Returns the stored document.
pub(crate) async fn create(
    store: &SharedStore,
    place: &Place,
    kind: Kind,
    body: Map<String, Value>,
) -> Result<Value, ApiError> {
    let mut fields = public_fields(body);
    kind.schema.validate(&mut fields)?;
    let now = gregorian_now();
    let mut doc = fields;
    doc.insert("_id".into(), Value::String(new_id()));
    stamp(&mut doc, place, kind, now, now);
    ensure_db(store, place, kind).await?;
    let rev = store.put(&place.db, Value::Object(doc.clone())).await?;
    doc.insert("_rev".into(), Value::String(rev.0));
    Ok(Value::Object(doc))
}

fn stamp(doc: &mut Map<String, Value>, place: &Place, kind: Kind, created: u64, now: u64) {
    doc.insert("pvt_type".into(), Value::String(kind.pvt_type.into()));
    doc.insert("pvt_created".into(), json!(created));
    doc.insert("pvt_modified".into(), json!(now));
    doc.insert("pvt_vsn".into(), Value::String("1".into()));
    if let Some(account) = &place.account {
        doc.insert("pvt_account_id".into(), Value::String(account.as_str().into()));
        doc.insert("pvt_account_db".into(), Value::String(account.encoded()));
    }
}

/// How an update treats the stored public fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMode {
    /// POST: the body is the new set of public fields.
    Replace,
    /// PATCH: the body is merged (recursively) into the stored public fields.
    Merge,
}

/// The document an update would write, validated, from the `current` one. Private fields of
/// `current` are kept.
pub(crate) fn updated(
    current: &Value,
    place: &Place,
    kind: Kind,
    body: Map<String, Value>,
    mode: UpdateMode,
) -> Result<Map<String, Value>, ApiError> {
    let current = current.as_object().cloned().unwrap_or_default();
    let mut fields = match mode {
        UpdateMode::Replace => public_fields(body),
        UpdateMode::Merge => {
            let mut base = public_fields(current.clone());
            merge(&mut base, public_fields(body));
            base
        }
    };
    kind.schema.validate(&mut fields)?;
    let mut doc = fields;
    for (k, v) in &current {
        if is_private(k) && k != "id" {
            doc.insert(k.clone(), v.clone());
        }
    }
    let created = current.get("pvt_created").and_then(Value::as_u64).unwrap_or_else(gregorian_now);
    stamp(&mut doc, place, kind, created, gregorian_now());
    Ok(doc)
}

/// Writes `doc` (which carries the `_rev` it was based on); returns it with its new `_rev`.
pub(crate) async fn write(
    store: &SharedStore,
    place: &Place,
    mut doc: Map<String, Value>,
) -> Result<Value, ApiError> {
    let rev = store.put(&place.db, Value::Object(doc.clone())).await?;
    doc.insert("_rev".into(), Value::String(rev.0));
    Ok(Value::Object(doc))
}

/// Checks a client's pinned revision against the stored one.
pub(crate) fn check_rev(current: &Value, pinned: Option<&str>) -> Result<(), ApiError> {
    let stored = current.get("_rev").and_then(Value::as_str).unwrap_or_default();
    match pinned {
        Some(rev) if rev != stored => Err(ApiError::Conflict(format!(
            "the document is at revision {stored}, the request was made against {rev}"
        ))),
        _ => Ok(()),
    }
}

/// Deletes `current` at its revision.
pub(crate) async fn remove(
    store: &SharedStore,
    place: &Place,
    current: &Value,
) -> Result<(), ApiError> {
    let id = current.get("_id").and_then(Value::as_str).unwrap_or_default();
    let rev = current.get("_rev").and_then(Value::as_str).unwrap_or_default();
    store.delete(&place.db, id, &Rev(rev.to_owned())).await?;
    Ok(())
}

/// Kazoo's `kz_json:merge/2` for PATCH: objects merge recursively, anything else replaces.
fn merge(base: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(p)) => merge(b, p),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_view_hides_private_keys() {
        let doc = json!({"_id": "x", "_rev": "1-a", "pvt_type": "resource", "name": "n"});
        assert_eq!(public(&doc), json!({"id": "x", "name": "n"}));
    }

    #[test]
    fn patch_merges_deeply_and_post_replaces() {
        let place = Place { db: DbName::new("offnet").unwrap(), account: None };
        let kind =
            Kind { pvt_type: "resource", schema: Schema::Resources, design: DesignKind::Offnet };
        let current = json!({"_id": "x", "_rev": "1-a", "pvt_type": "resource", "pvt_created": 5,
                             "name": "n", "gateways": [{"server": "a"}], "media": {"audio": {"codecs": ["PCMU"]}}, "flags": ["f"]});
        let patch =
            json!({"name": "m", "media": {"bypass_media": true}}).as_object().unwrap().clone();
        let merged = updated(&current, &place, kind, patch, UpdateMode::Merge).unwrap();
        assert_eq!(merged["name"], "m");
        assert_eq!(merged["flags"], json!(["f"]));
        assert_eq!(merged["media"]["audio"]["codecs"], json!(["PCMU"]));
        assert_eq!(merged["media"]["bypass_media"], true);
        assert_eq!(merged["_rev"], "1-a");
        assert_eq!(merged["pvt_created"], 5);

        let body = json!({"name": "r", "gateways": [{"server": "b"}], "pvt_type": "hack"})
            .as_object()
            .unwrap()
            .clone();
        let replaced = updated(&current, &place, kind, body, UpdateMode::Replace).unwrap();
        assert_eq!(
            replaced["flags"],
            json!([]),
            "POST drops the old flags (the schema default remains)"
        );
        assert_eq!(replaced["pvt_type"], "resource");

        let bad = json!({"gateways": "nope"}).as_object().unwrap().clone();
        assert!(matches!(
            updated(&current, &place, kind, bad, UpdateMode::Merge),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn pins_come_from_if_match_and_the_body_and_unreadable_ones_are_refused() {
        use axum::http::HeaderValue;
        let with = |value: HeaderValue| {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::IF_MATCH, value);
            headers
        };
        let body = |v: Value| v.as_object().cloned().unwrap();
        let none = HeaderMap::new();
        assert_eq!(pinned_rev(&none, None).unwrap(), None);
        for given in ["2-b", "\"2-b\"", "W/\"2-b\"", " 2-b "] {
            let pinned = pinned_rev(&with(HeaderValue::from_str(given).unwrap()), None).unwrap();
            assert_eq!(pinned.as_deref(), Some("2-b"), "{given}");
        }
        assert_eq!(pinned_rev(&with(HeaderValue::from_static("*")), None).unwrap(), None);
        let unreadable = HeaderValue::from_bytes(b"\xff2-b").unwrap();
        assert!(matches!(pinned_rev(&with(unreadable), None), Err(ApiError::BadRequest(_))));
        let list = HeaderValue::from_static("\"1-a\", \"2-b\"");
        assert!(matches!(pinned_rev(&with(list), None), Err(ApiError::BadRequest(_))));
        let mut twice = with(HeaderValue::from_static("1-a"));
        twice.append(axum::http::header::IF_MATCH, HeaderValue::from_static("1-a"));
        assert!(matches!(pinned_rev(&twice, None), Err(ApiError::BadRequest(_))));

        let b = body(json!({"_rev": "1-a", "name": "x"}));
        assert_eq!(pinned_rev(&none, Some(&b)).unwrap().as_deref(), Some("1-a"));
        let same = with(HeaderValue::from_static("1-a"));
        assert_eq!(pinned_rev(&same, Some(&b)).unwrap().as_deref(), Some("1-a"));
        let other = with(HeaderValue::from_static("2-b"));
        assert!(matches!(pinned_rev(&other, Some(&b)), Err(ApiError::Conflict(_))));
        let bad = body(json!({"_rev": 3}));
        assert!(matches!(pinned_rev(&none, Some(&bad)), Err(ApiError::Validation(_))));
        assert_eq!(pinned_rev(&none, Some(&body(json!({"_rev": null})))).unwrap(), None);
    }

    #[test]
    fn pinned_revisions_must_match() {
        let current = json!({"_rev": "2-b"});
        assert!(check_rev(&current, None).is_ok());
        assert!(check_rev(&current, Some("2-b")).is_ok());
        assert!(matches!(check_rev(&current, Some("1-a")), Err(ApiError::Conflict(_))));
    }

    #[test]
    fn ids_are_32_hex() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(gregorian_now() > 63_800_000_000);
    }
}
