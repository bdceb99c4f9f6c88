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
    let config = CouchConfig::from_url(&server.url_with_credentials()).expect("server url");
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
/// account copies of `knm_phone_number:save/1`'s account-db copy have somewhere to go. Stored `_rev`s and attachment stubs are dropped.
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
        let adb = db(&acc(a).db_name().to_string());
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

/// The number copies in Kazoo's fixturedb account databases (`account%2F…/docs/+*.json`), by
/// account: byte-identical to the number documents, so they are rebuilt from those.
pub const KAZOO_ACCOUNT_COPIES: [(&str, &[&str]); 2] = [
    (
        RESELLER,
        &[
            "+12014370855",
            "+12014370856",
            "+12014370857",
            "+12156774700",
            "+13977031888",
            "+14082141750",
            "+14082141751",
            "+14122065197",
            "+14242424247",
            "+14242424248",
            "+14252151007",
            "+14252151008",
            "+14252151009",
            "+14252151010",
            "+14352154006",
            "+15045551226",
            "+15045551227",
            "+15551233322",
            "+15551233324",
            "+15551233337",
            "+15551255693",
            "+18005551212",
            "+18122154006",
            "+19377038880",
            "+19377038881",
        ],
    ),
    (CHILD, &["+13977031887"]),
];

/// The fixture accounts whose databases the loaders create.
pub const FIXTURE_ACCOUNTS: [&str; 4] =
    [MASTER, RESELLER, CHILD, "account0000000000000000000000004"];

/// The fixturedb document of `number` (`_rev` dropped), if it is one of Kazoo's.
pub fn fixture_number_doc(number: &str) -> Option<Value> {
    let db = numbers::encoded_number_db(number)?;
    let file = fixturedb_dir().join(db).join("docs").join(format!("%2B{}.json", &number[1..]));
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    v.as_object_mut()?.remove("_rev");
    Some(v)
}

/// [`load_fixturedb`] plus what Kazoo's fixturedb keeps in the account databases: the number
/// copies ([`KAZOO_ACCOUNT_COPIES`]) and the `configs_number_manager` account configs of MASTER
/// and CHILD (CHILD's `carrier_modules = [knm_local, knm_bandwidth2]`).
pub async fn load_kazoo_fixturedb(store: &SharedStore) {
    load_fixturedb(store).await;
    for (account, ids) in KAZOO_ACCOUNT_COPIES {
        let docs: Vec<Value> = ids.iter().map(|id| fixture_number_doc(id).unwrap()).collect();
        let adb = db(&acc(account).db_name().to_string());
        for item in store.bulk_docs(&adb, docs).await.unwrap() {
            item.outcome.unwrap_or_else(|e| panic!("copy {} in {adb}: {e}", item.id));
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/kazoo-accounts");
    for account in [MASTER, CHILD] {
        let file = dir.join(format!("{account}.configs_number_manager.json"));
        let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("_rev");
        store.put(&db(&acc(account).db_name().to_string()), v).await.unwrap();
    }
}

/// A store layer over `store` with [`load_kazoo_fixturedb`] loaded.
pub async fn kazoo_store(store: SharedStore) -> NumberStore {
    load_kazoo_fixturedb(&store).await;
    NumberStore::from_store(store).await.expect("number store")
}

/// Deletes `id` from `db_name` if it is there.
pub async fn remove(store: &SharedStore, db_name: &str, id: &str) {
    if let Some(doc) = raw(store, db_name, id).await {
        let rev = doc["_rev"].as_str().unwrap().to_owned();
        store.delete(&db(db_name), id, &docstore::Rev(rev)).await.unwrap();
    }
}

/// Writes `doc` as the current version of its `_id` in `db_name` (over whatever is stored).
pub async fn overwrite(store: &SharedStore, db_name: &str, mut doc: Value) {
    let id = doc["_id"].as_str().unwrap().to_owned();
    match raw(store, db_name, &id).await {
        Some(cur) => doc["_rev"] = cur["_rev"].clone(),
        None => {
            doc.as_object_mut().unwrap().remove("_rev");
        }
    }
    if let Err(docstore::Error::DbNotFound { .. }) = store.put(&db(db_name), doc.clone()).await {
        store.create_db(&db(db_name)).await.unwrap();
        docstore::deploy(&**store, &db(db_name), docstore::DesignKind::Numbers).await.unwrap();
        store.put(&db(db_name), doc).await.unwrap();
    }
}

/// Puts `number` back as [`load_kazoo_fixturedb`] left it: its fixture document (or no document
/// for a number Kazoo's fixturedb does not hold) and exactly the account copies Kazoo has.
pub async fn reset_number(store: &SharedStore, number: &str) {
    let ndb = numbers::number_db(number).unwrap();
    match fixture_number_doc(number) {
        Some(doc) => overwrite(store, &ndb, doc).await,
        None => remove(store, &ndb, number).await,
    }
    for account in FIXTURE_ACCOUNTS {
        let adb = acc(account).db_name().to_string();
        let kazoo_has =
            KAZOO_ACCOUNT_COPIES.iter().any(|(a, ids)| *a == account && ids.contains(&number));
        match fixture_number_doc(number).filter(|_| kazoo_has) {
            Some(doc) => overwrite(store, &adb, doc).await,
            None => remove(store, &adb, number).await,
        }
    }
}
