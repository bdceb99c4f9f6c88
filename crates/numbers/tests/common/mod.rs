//! Shared test plumbing: the two backends, Kazoo's fixturedb loaded into a store, actors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use docstore::{CouchConfig, CouchStore, DbName, EmbeddedStore, SharedStore};
use numbers::store::NumberStore;
use numbers::AccountId;
use serde_json::Value;

pub const MASTER: &str = "account0000000000000000000000001";
pub const RESELLER: &str = "account0000000000000000000000002";
pub const CHILD: &str = "account0000000000000000000000003";
pub const UNRELATED: &str = "unrelated_account_b113394f16cb71";

/// Serializes the tests that load the fixturedb into the shared server (its number databases
/// have Kazoo's fixed names).
pub static FIXTURE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn embedded() -> SharedStore {
    Arc::new(EmbeddedStore::in_memory().expect("embedded store"))
}

pub fn couch() -> SharedStore {
    let server = testkit::CouchServer::shared();
    let mut config = CouchConfig::from_url(server.url()).expect("server url");
    if let Some((user, password)) = server.credentials() {
        config.user = Some(user);
        config.password = Some(password);
    }
    Arc::new(CouchStore::new(config).expect("couch store"))
}

pub fn fixturedb_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/numbers/fixturedb")
}

pub fn acc(id: &str) -> AccountId {
    AccountId::parse(id).expect("account id")
}

pub fn db(name: &str) -> DbName {
    DbName::new(name).expect("db name")
}

/// Loads Kazoo's fixturedb (`fixtures/numbers/fixturedb`) into `store`, replacing whatever
/// those databases held: every `numbers%2F…` database, `accounts`, `system_config`,
/// `port_requests`, and an (empty) account database for each fixture account so that the
/// account copies of §7.3 have somewhere to go. Stored `_rev`s and attachment stubs are dropped.
pub async fn load_fixturedb(store: &SharedStore) {
    let root = fixturedb_dir();
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let encoded = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let name = docstore::naming::decode_db_name(&encoded).expect("fixture db name");
        let _ = store.delete_db(&name).await;
        store.create_db(&name).await.expect("create fixture db");
        if docstore::naming::is_numbers_db(&name) {
            docstore::deploy(&**store, &name, docstore::DesignKind::Numbers).await.unwrap();
        }
        let mut files: Vec<_> =
            std::fs::read_dir(dir.join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut docs = Vec::new();
        for f in files {
            let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let m = v.as_object_mut().unwrap();
            m.remove("_rev");
            m.remove("_attachments");
            docs.push(v);
        }
        for item in store.bulk_docs(&name, docs).await.unwrap() {
            item.outcome.unwrap_or_else(|e| panic!("fixture {} in {name}: {e}", item.id));
        }
    }
    for a in [MASTER, RESELLER, CHILD, "account0000000000000000000000004"] {
        let adb = db(&acc(a).db_name());
        let _ = store.delete_db(&adb).await;
        store.create_db(&adb).await.unwrap();
    }
}

/// A store layer over `store` with the fixturedb loaded.
pub async fn fixture_store(store: SharedStore) -> NumberStore {
    load_fixturedb(&store).await;
    NumberStore::from_store(store).await.expect("number store")
}

/// The raw stored document.
pub async fn raw(store: &SharedStore, db_name: &str, id: &str) -> Option<Value> {
    match store.get(&db(db_name), id).await {
        Ok(v) => v,
        Err(docstore::Error::DbNotFound { .. }) => None,
        Err(e) => panic!("get {id} from {db_name}: {e}"),
    }
}

/// A fresh 4-digit NANP area (`+1NNN`) per call, so tests on the shared server never share a
/// number database: random within the process, checked unused on the store.
pub async fn fresh_area(store: &SharedStore) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 400;
    loop {
        let n = 200 + (base + NEXT.fetch_add(1, Ordering::SeqCst) * 7) % 700;
        let area = format!("+1{n}");
        if !store.db_exists(&db(&format!("numbers/{area}"))).await.unwrap() {
            return area;
        }
    }
}

/// Runs a test body on both backends: a fresh in-memory embedded store, and the shared
/// CouchDB-compatible server (serialized with [`FIXTURE_LOCK`]).
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                $body($crate::common::embedded()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn couchdb() {
                let _guard = $crate::common::FIXTURE_LOCK.lock().await;
                $body($crate::common::couch()).await;
            }
        }
    };
}
