//! The design documents Switchboard deploys next to Kazoo's, and their idempotent deployment.
//!
//! The documents live in the workspace's `design_docs/` folder, one sub-folder per kind of target
//! database (`offnet/`, `account/`, `numbers/`), and are compiled in with `include_str!`. They
//! carry the views Kazoo's tools query (`resources/listing_by_id`, `numbers/status`, …;
//! kazoo-stepswitch.md §2, kazoo-numbers.md §13) and `validate_doc_update` functions that refuse
//! malformed resource and number documents with a `forbidden` message a Fauxton user sees.
//!
//! As in Kazoo's own `priv/couchdb` files, a function may be written as an array of lines; the
//! lines are joined with `\n` before the document is stored, because CouchDB wants strings.
//!
//! On the embedded backend design documents are stored like any other (its views answer
//! `Unsupported` and validation functions do not run there).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::naming;
use crate::store::DocStore;
use crate::types::DbName;

/// The kind of database a set of design documents is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesignKind {
    /// The global resources database `offnet`.
    Offnet,
    /// An account database `account/ab/cd/…` (local resources, number copies).
    Account,
    /// A number database `numbers/+1415`.
    Numbers,
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

impl DesignKind {
    /// The kind a database name calls for: `offnet`, account databases and number databases;
    /// `None` for any other database.
    pub fn for_db(db: &DbName) -> Option<DesignKind> {
        if db.as_str() == naming::OFFNET {
            Some(DesignKind::Offnet)
        } else if naming::is_account_db(db) {
            Some(DesignKind::Account)
        } else if naming::is_numbers_db(db) {
            Some(DesignKind::Numbers)
        } else {
            None
        }
    }

    fn sources(self) -> &'static [(&'static str, &'static str)] {
        match self {
            DesignKind::Offnet => OFFNET_DOCS,
            DesignKind::Account => ACCOUNT_DOCS,
            DesignKind::Numbers => NUMBERS_DOCS,
        }
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

fn parse_design_doc(file: &str, text: &str) -> Result<Value> {
    let decode = |message: String| Error::Decode { what: format!("design_docs/{file}"), message };
    let mut doc: Value = serde_json::from_str(text).map_err(|e| decode(e.to_string()))?;
    let Some(map) = doc.as_object_mut() else {
        return Err(decode("not a JSON object".into()));
    };
    if !map.get("_id").and_then(Value::as_str).is_some_and(|id| id.starts_with("_design/")) {
        return Err(decode("its _id does not start with _design/".into()));
    }
    join_functions(map);
    Ok(doc)
}

/// Turns every array-of-lines function (`views.*.map`, `views.*.reduce`, `validate_doc_update`,
/// `filters.*`, …) into one string.
fn join_functions(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        match value {
            Value::Array(lines) if key != "_id" && lines.iter().all(Value::is_string) => {
                let joined = lines.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n");
                *value = Value::String(joined);
            }
            Value::Object(inner) => join_functions(inner),
            _ => {}
        }
    }
}

/// What [`deploy`] did, by design document id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployReport {
    /// Written because missing or different.
    pub written: Vec<String>,
    /// Already there with the same content.
    pub unchanged: Vec<String>,
}

/// Writes the design documents of `kind` into `db` where they are missing or differ (compared
/// without `_rev`), so running it again writes nothing. `db` must exist.
///
/// # Errors
/// [`Error::DbNotFound`] if `db` is missing, [`Error::Conflict`] if someone else keeps rewriting
/// the same design document while we try, and whatever the store reports.
pub async fn deploy(store: &dyn DocStore, db: &DbName, kind: DesignKind) -> Result<DeployReport> {
    let mut report = DeployReport::default();
    for wanted in kind.documents()? {
        let id = wanted["_id"].as_str().unwrap_or_default().to_owned();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = store.get(db, &id).await?;
            let current_rev = current.as_ref().and_then(|doc| doc.get("_rev").cloned());
            let same = current.as_ref().is_some_and(|doc| {
                let mut doc = doc.clone();
                if let Some(map) = doc.as_object_mut() {
                    map.remove("_rev");
                }
                doc == wanted
            });
            if same {
                report.unchanged.push(id);
                break;
            }
            let mut doc = wanted.clone();
            if let (Some(rev), Some(map)) = (current_rev, doc.as_object_mut()) {
                map.insert("_rev".into(), rev);
            }
            match store.put(db, doc).await {
                Ok(_) => {
                    report.written.push(id);
                    break;
                }
                // Someone wrote it between our read and our write: look again.
                Err(Error::Conflict { .. }) if attempts < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(report)
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

    /// The views Kazoo's tools query exist with the names they use (kazoo-stepswitch.md §2,
    /// kazoo-numbers.md §13).
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
    }

    #[test]
    fn kinds_follow_database_names() {
        let kind = |name: &str| DesignKind::for_db(&DbName::new(name).unwrap());
        assert_eq!(kind("offnet"), Some(DesignKind::Offnet));
        assert_eq!(kind("account/ef/01/23456789abcdef0123456789abcd"), Some(DesignKind::Account));
        assert_eq!(kind("numbers/+1415"), Some(DesignKind::Numbers));
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

        // An operator's edit is put back on the next deploy, as an update of their revision.
        let mut edited = store.get(&db, "_design/numbers").await.unwrap().unwrap();
        edited["views"]["status"]["map"] = Value::from("function(doc) {}");
        store.put(&db, edited).await.unwrap();
        let third = deploy(&store, &db, DesignKind::Numbers).await.unwrap();
        assert_eq!(third.written, vec!["_design/numbers"]);
        let restored = store.get(&db, "_design/numbers").await.unwrap().unwrap();
        assert!(restored["_rev"].as_str().unwrap().starts_with("3-"));
    }

    #[tokio::test]
    async fn deploy_needs_the_database() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        let err = deploy(&store, &db, DesignKind::Offnet).await.unwrap_err();
        assert!(matches!(err, Error::DbNotFound { .. }), "{err}");
    }
}
