//! The design documents Switchboard keeps next to Kazoo's, and their idempotent deployment.
//!
//! The documents live in the workspace's `design_docs/` folder, one sub-folder per kind of target
//! database (`offnet/`, `account/`, `numbers/`, `pools/`), and are compiled in with `include_str!`.
//! Two owners share a database:
//!
//! - **Kazoo's** design documents (`_design/resources`, `_design/numbers`, `_design/phone_numbers`,
//!   `_design/numbers_managed`, `_design/numbers_inum`) belong to Kazoo. The files of that name
//!   here are Switchboard's own rendering of them (the names, views and keys Kazoo's tools query,
//!   written from Kazoo's documented behaviour, not copies of Kazoo's files). [`deploy`] creates
//!   one only where it is missing (so a fresh store and the embedded demo have the views Kazoo's
//!   tools query) and never modifies or deletes it: beside a live Kazoo, Kazoo's version (say
//!   with its own `listing_uac_gateways`) stays as it is and no view index is rebuilt. It is
//!   stored the way Kazoo's `kz_datamgr` stores its own: a `kazoo` registration key, if any,
//!   dropped and array-of-lines functions concatenated.
//! - **Switchboard's** (`_design/switchboard_*`) carry the `validate_doc_update` functions that
//!   refuse malformed resource and number documents with a `forbidden` message a Fauxton user
//!   sees. [`deploy`] writes them where they are missing or differ. Their array-of-lines functions
//!   are joined with `\n` (they hold `//` comments). Switchboard's own queries use no view of
//!   Kazoo's documents, so whichever version of those a cluster carries does not matter.
//!
//! On the embedded backend design documents are stored like any other (its views answer
//! `Unsupported` and validation functions do not run there).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::naming;
use crate::store::DocStore;
use crate::types::{AllDocsQuery, DbName};

/// The prefix of the design documents Switchboard owns; every other one is Kazoo's.
pub const OWN_PREFIX: &str = "_design/switchboard_";

/// The kind of database a set of design documents is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesignKind {
    /// The global resources database `offnet`.
    Offnet,
    /// An account database `account/ab/cd/…` (local resources, number copies).
    Account,
    /// A number database `numbers/+1415`.
    Numbers,
    /// The `knm_managed` pool `numbers/managed`: a number database plus its pool view.
    Managed,
    /// The `knm_inum` pool `numbers/inum`: a number database plus its pool view.
    Inum,
}

const OFFNET_DOCS: &[(&str, &str)] = &[
    ("offnet/resources.json", include_str!("../../../design_docs/offnet/resources.json")),
    (
        "offnet/switchboard_resources.json",
        include_str!("../../../design_docs/offnet/switchboard_resources.json"),
    ),
];

const ACCOUNT_DOCS: &[(&str, &str)] = &[
    ("account/numbers.json", include_str!("../../../design_docs/account/numbers.json")),
    ("account/phone_numbers.json", include_str!("../../../design_docs/account/phone_numbers.json")),
    ("account/resources.json", include_str!("../../../design_docs/account/resources.json")),
    (
        "account/switchboard_resources.json",
        include_str!("../../../design_docs/account/switchboard_resources.json"),
    ),
];

const NUMBERS_DOCS: &[(&str, &str)] = &[
    ("numbers/numbers.json", include_str!("../../../design_docs/numbers/numbers.json")),
    (
        "numbers/switchboard_numbers.json",
        include_str!("../../../design_docs/numbers/switchboard_numbers.json"),
    ),
];

const MANAGED_DOCS: &[(&str, &str)] = &[(
    "pools/numbers_managed.json",
    include_str!("../../../design_docs/pools/numbers_managed.json"),
)];

const INUM_DOCS: &[(&str, &str)] =
    &[("pools/numbers_inum.json", include_str!("../../../design_docs/pools/numbers_inum.json"))];

impl DesignKind {
    /// The kind a database name calls for: `offnet`, account databases, the two pools and the
    /// other number databases; `None` for any other database.
    pub fn for_db(db: &DbName) -> Option<DesignKind> {
        match db.as_str() {
            naming::OFFNET => Some(DesignKind::Offnet),
            naming::NUMBERS_MANAGED => Some(DesignKind::Managed),
            naming::NUMBERS_INUM => Some(DesignKind::Inum),
            _ if naming::is_account_db(db) => Some(DesignKind::Account),
            _ if naming::is_numbers_db(db) => Some(DesignKind::Numbers),
            _ => None,
        }
    }

    fn sources(self) -> Vec<(&'static str, &'static str)> {
        let parts: &[&[(&str, &str)]] = match self {
            DesignKind::Offnet => &[OFFNET_DOCS],
            DesignKind::Account => &[ACCOUNT_DOCS],
            DesignKind::Numbers => &[NUMBERS_DOCS],
            DesignKind::Managed => &[NUMBERS_DOCS, MANAGED_DOCS],
            DesignKind::Inum => &[NUMBERS_DOCS, INUM_DOCS],
        };
        parts.iter().flat_map(|part| part.iter().copied()).collect()
    }

    /// The design documents of this kind, ready to store (functions joined into strings, no
    /// `_rev`).
    ///
    /// # Errors
    /// [`Error::Decode`] if an embedded file is not a JSON object with a `_design/` id (a build
    /// defect the crate's tests catch).
    pub fn documents(self) -> Result<Vec<Value>> {
        self.sources().iter().map(|(file, text)| parse_design_doc(file, text)).collect()
    }
}

/// Whether Switchboard owns the design document `id` (and may rewrite it).
pub fn is_own(id: &str) -> bool {
    id.starts_with(OWN_PREFIX)
}

fn parse_design_doc(file: &str, text: &str) -> Result<Value> {
    let decode = |message: String| Error::Decode { what: format!("design_docs/{file}"), message };
    let mut doc: Value = serde_json::from_str(text).map_err(|e| decode(e.to_string()))?;
    let Some(map) = doc.as_object_mut() else {
        return Err(decode("not a JSON object".into()));
    };
    let Some(id) = map.get("_id").and_then(Value::as_str).map(str::to_owned) else {
        return Err(decode("it has no _id".into()));
    };
    if !id.starts_with("_design/") {
        return Err(decode("its _id does not start with _design/".into()));
    }
    if is_own(&id) {
        join_functions(map, "\n");
    } else {
        // As Kazoo's kz_datamgr stores it: registration metadata out, lines concatenated.
        map.remove("kazoo");
        join_functions(map, "");
    }
    Ok(doc)
}

/// Turns every array-of-lines function (`views.*.map`, `views.*.reduce`, `validate_doc_update`,
/// `filters.*`, …) into one string.
fn join_functions(map: &mut Map<String, Value>, separator: &str) {
    for (key, value) in map.iter_mut() {
        match value {
            Value::Array(lines) if key != "_id" && lines.iter().all(Value::is_string) => {
                let joined =
                    lines.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(separator);
                *value = Value::String(joined);
            }
            Value::Object(inner) => join_functions(inner, separator),
            _ => {}
        }
    }
}

/// What [`deploy`] did, by design document id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployReport {
    /// Written because missing (Kazoo's or ours) or different (ours only).
    pub written: Vec<String>,
    /// Already there: ours with the same content, Kazoo's in whatever version.
    pub unchanged: Vec<String>,
}

/// What is known of one design document of a database: [`Seen::Live`] with its content (`None`
/// when it was not read), or [`Seen::Deleted`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// It exists, with this content if it was read.
    Live(Option<Value>),
    /// It was deleted.
    Deleted,
}

/// The design documents of `kind` that must be written, given what is known of the database's
/// design documents (`seen`, by id): Kazoo's where deleted, ours where deleted or different
/// (compared without `_rev`; one whose content was not read counts as different, and
/// [`write_all`] reads it before writing). A wanted document that is not in `seen` is written
/// only when `seen` is the whole set (`complete`); otherwise nothing is known of it.
///
/// # Errors
/// As [`DesignKind::documents`].
pub(crate) fn to_write(
    kind: DesignKind,
    seen: &BTreeMap<String, Seen>,
    complete: bool,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for wanted in kind.documents()? {
        let id = wanted["_id"].as_str().unwrap_or_default();
        let write = match seen.get(id) {
            None => complete,
            Some(Seen::Deleted) => true,
            Some(Seen::Live(_)) if !is_own(id) => false,
            Some(Seen::Live(doc)) => doc.as_ref().is_none_or(|doc| !same_content(doc, &wanted)),
        };
        if write {
            out.push(wanted);
        }
    }
    Ok(out)
}

/// Whether `doc` holds `wanted`, `_rev` aside.
fn same_content(doc: &Value, wanted: &Value) -> bool {
    let mut doc = doc.clone();
    if let Some(map) = doc.as_object_mut() {
        map.remove("_rev");
    }
    doc == *wanted
}

/// Writes the design documents of `kind` into `db`: Kazoo's where missing, ours where missing or
/// different (compared without `_rev`), so running it again writes nothing. `db` must exist. One
/// request (a listing of the design documents) when nothing needs doing.
///
/// # Errors
/// [`Error::DbNotFound`] if `db` is missing, [`Error::Conflict`] if someone else keeps rewriting
/// the same design document while we try, and whatever the store reports.
pub async fn deploy(store: &dyn DocStore, db: &DbName, kind: DesignKind) -> Result<DeployReport> {
    let query = AllDocsQuery {
        start_key: Some("_design/".into()),
        end_key: Some("_design0".into()),
        exclusive_end: true,
        include_docs: true,
        ..AllDocsQuery::default()
    };
    let seen: BTreeMap<String, Seen> = store
        .all_docs(db, &query)
        .await?
        .rows
        .into_iter()
        .map(|row| (row.id, Seen::Live(row.doc)))
        .collect();
    let wanted = kind.documents()?;
    let mut report = write_all(store, db, to_write(kind, &seen, true)?).await?;
    report.unchanged = wanted
        .iter()
        .filter_map(|doc| doc["_id"].as_str())
        .filter(|id| !report.written.iter().any(|w| w == id))
        .map(str::to_owned)
        .collect();
    Ok(report)
}

/// Writes `docs` (from [`to_write`]) into `db`: each of Kazoo's only if it is still missing,
/// each of ours made equal to the one given (read first: unchanged if it already is). The
/// report's `unchanged` lists those that needed no write after all.
///
/// # Errors
/// As [`deploy`].
pub(crate) async fn write_all(
    store: &dyn DocStore,
    db: &DbName,
    docs: Vec<Value>,
) -> Result<DeployReport> {
    let mut report = DeployReport::default();
    for wanted in docs {
        let id = wanted["_id"].as_str().unwrap_or_default().to_owned();
        let written = if is_own(&id) {
            put_own(store, db, &id, wanted).await?
        } else {
            create_missing(store, db, wanted).await?
        };
        if written {
            report.written.push(id);
        } else {
            report.unchanged.push(id);
        }
    }
    Ok(report)
}

/// Creates one of Kazoo's design documents; `false` if someone created it first.
async fn create_missing(store: &dyn DocStore, db: &DbName, doc: Value) -> Result<bool> {
    match store.put(db, doc).await {
        Ok(_) => Ok(true),
        Err(Error::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes one of our design documents equal to `wanted`; `true` if it had to be written.
async fn put_own(store: &dyn DocStore, db: &DbName, id: &str, wanted: Value) -> Result<bool> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = store.get(db, id).await?;
        if current.as_ref().is_some_and(|doc| same_content(doc, &wanted)) {
            return Ok(false);
        }
        let mut doc = wanted.clone();
        let current_rev = current.as_ref().and_then(|doc| doc.get("_rev").cloned());
        if let (Some(rev), Some(map)) = (current_rev, doc.as_object_mut()) {
            map.insert("_rev".into(), rev);
        }
        match store.put(db, doc).await {
            Ok(_) => return Ok(true),
            // Someone wrote it between our read and our write: look again.
            Err(Error::Conflict { .. }) if attempts < 3 => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[test]
    fn every_embedded_document_parses_with_string_functions() {
        for kind in [DesignKind::Offnet, DesignKind::Account, DesignKind::Numbers] {
            let docs = kind.documents().unwrap();
            assert!(!docs.is_empty());
            for doc in docs {
                let id = doc["_id"].as_str().unwrap();
                for (name, view) in
                    doc.get("views").and_then(Value::as_object).into_iter().flatten()
                {
                    assert!(view["map"].is_string(), "{id} view {name}");
                }
                if let Some(validate) = doc.get("validate_doc_update") {
                    let text = validate.as_str().unwrap();
                    assert!(text.starts_with("function(newDoc"), "{id}");
                    assert!(text.contains("throw({forbidden"), "{id}");
                }
            }
        }
    }

    /// The views Kazoo's tools query exist with the names they use (stepswitch's resource
    /// listings, knm's number views and the pools' `status`).
    #[test]
    fn kazoo_view_names_are_present() {
        let has_view = |kind: DesignKind, ddoc: &str, view: &str| {
            kind.documents()
                .unwrap()
                .iter()
                .any(|d| d["_id"] == format!("_design/{ddoc}") && d["views"].get(view).is_some())
        };
        assert!(has_view(DesignKind::Offnet, "resources", "listing_by_id"));
        assert!(has_view(DesignKind::Account, "resources", "listing_by_id"));
        assert!(has_view(DesignKind::Numbers, "numbers", "status"));
        assert!(has_view(DesignKind::Numbers, "numbers", "assigned_to"));
        assert!(has_view(DesignKind::Account, "phone_numbers", "crossbar_listing"));
        assert!(has_view(DesignKind::Offnet, "resources", "listing_uac_gateways"));
        assert!(has_view(DesignKind::Managed, "numbers_managed", "status"));
        assert!(has_view(DesignKind::Inum, "numbers_inum", "status"));
        assert!(has_view(DesignKind::Inum, "numbers", "status"));
    }

    #[test]
    fn kinds_follow_database_names() {
        let kind = |name: &str| DesignKind::for_db(&DbName::new(name).unwrap());
        assert_eq!(kind("offnet"), Some(DesignKind::Offnet));
        assert_eq!(kind("account/ef/01/23456789abcdef0123456789abcd"), Some(DesignKind::Account));
        assert_eq!(kind("numbers/+1415"), Some(DesignKind::Numbers));
        assert_eq!(kind("numbers/managed"), Some(DesignKind::Managed));
        assert_eq!(kind("numbers/inum"), Some(DesignKind::Inum));
        assert_eq!(kind("system_config"), None);
    }

    #[tokio::test]
    async fn deploy_twice_writes_nothing_the_second_time() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("numbers/+1415").unwrap();
        store.create_db(&db).await.unwrap();
        let first = deploy(&store, &db, DesignKind::Numbers).await.unwrap();
        assert_eq!(first.written, vec!["_design/numbers", "_design/switchboard_numbers"]);
        assert!(first.unchanged.is_empty());
        let second = deploy(&store, &db, DesignKind::Numbers).await.unwrap();
        assert!(second.written.is_empty(), "{second:?}");
        assert_eq!(second.unchanged.len(), 2);

        // An edit of ours is put back on the next deploy, as an update of their revision.
        let mut edited = store.get(&db, "_design/switchboard_numbers").await.unwrap().unwrap();
        edited["validate_doc_update"] = Value::from("function(newDoc) {}");
        store.put(&db, edited).await.unwrap();
        let third = deploy(&store, &db, DesignKind::Numbers).await.unwrap();
        assert_eq!(third.written, vec!["_design/switchboard_numbers"]);
        let restored = store.get(&db, "_design/switchboard_numbers").await.unwrap().unwrap();
        assert!(restored["_rev"].as_str().unwrap().starts_with("3-"));

        // Kazoo's is never touched once there, whatever it holds; deleted, it is created again.
        let mut theirs = store.get(&db, "_design/numbers").await.unwrap().unwrap();
        theirs["views"]["extra"] = serde_json::json!({"map": "function(doc) {}"});
        let rev = store.put(&db, theirs).await.unwrap();
        let fourth = deploy(&store, &db, DesignKind::Numbers).await.unwrap();
        assert!(fourth.written.is_empty(), "{fourth:?}");
        let kept = store.get(&db, "_design/numbers").await.unwrap().unwrap();
        assert_eq!(kept["_rev"], rev.as_str());
        store.delete(&db, "_design/numbers", &rev).await.unwrap();
        let fifth = deploy(&store, &db, DesignKind::Numbers).await.unwrap();
        assert_eq!(fifth.written, vec!["_design/numbers"]);
    }

    #[test]
    fn what_to_write_follows_what_was_seen() {
        let kind = DesignKind::Managed;
        let wanted = kind.documents().unwrap();
        let doc = |id: &str| wanted.iter().find(|d| d["_id"] == id).unwrap().clone();
        let ids = |docs: Vec<Value>| {
            docs.iter().map(|d| d["_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        // Nothing seen of a whole database: everything is written.
        let none = BTreeMap::new();
        assert_eq!(ids(to_write(kind, &none, true).unwrap()).len(), wanted.len());
        // Nothing seen in a partial view (changes of other documents): nothing is written.
        assert!(to_write(kind, &none, false).unwrap().is_empty());

        // All in place, ours with a `_rev`: nothing.
        let mut seen: BTreeMap<String, Seen> = wanted
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d["_rev"] = Value::from("1-a");
                (d["_id"].as_str().unwrap().to_owned(), Seen::Live(Some(d)))
            })
            .collect();
        assert!(to_write(kind, &seen, true).unwrap().is_empty());

        // Kazoo's edited: kept as it is. Ours edited or unread: written.
        let mut theirs = doc("_design/numbers");
        theirs["views"]["extra"] = serde_json::json!({"map": "function(doc) {}"});
        seen.insert("_design/numbers".into(), Seen::Live(Some(theirs)));
        let mut ours = doc("_design/switchboard_numbers");
        ours["validate_doc_update"] = Value::from("function(newDoc) {}");
        seen.insert("_design/switchboard_numbers".into(), Seen::Live(Some(ours)));
        assert_eq!(ids(to_write(kind, &seen, true).unwrap()), ["_design/switchboard_numbers"]);
        seen.insert("_design/switchboard_numbers".into(), Seen::Live(None));
        assert_eq!(ids(to_write(kind, &seen, false).unwrap()), ["_design/switchboard_numbers"]);

        // Deleted, Kazoo's or ours: written again.
        let partial: BTreeMap<String, Seen> =
            [("_design/numbers_managed".to_owned(), Seen::Deleted)].into();
        assert_eq!(ids(to_write(kind, &partial, false).unwrap()), ["_design/numbers_managed"]);
    }

    #[test]
    fn kazoo_documents_are_stored_as_kazoo_stores_them() {
        let docs = DesignKind::Offnet.documents().unwrap();
        let resources = docs.iter().find(|d| d["_id"] == "_design/resources").unwrap();
        assert!(resources.get("kazoo").is_none());
        let map = resources["views"]["listing_by_id"]["map"].as_str().unwrap();
        assert_eq!(
            map,
            "function(doc) {  if (doc.pvt_type !== 'resource' || doc.pvt_deleted) return;  \
             emit(doc._id, doc.name);}"
        );
        let ours = docs.iter().find(|d| d["_id"] == "_design/switchboard_resources").unwrap();
        assert!(ours["validate_doc_update"].as_str().unwrap().contains("\n"));
    }

    #[tokio::test]
    async fn deploy_needs_the_database() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        let err = deploy(&store, &db, DesignKind::Offnet).await.unwrap_err();
        assert!(matches!(err, Error::DbNotFound { .. }), "{err}");
    }
}
