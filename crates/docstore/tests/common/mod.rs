//! The stores the docstore test files run against: the shared test server (`testkit`'s
//! couch-peer, or `COUCHDB_URL`) and an in-memory embedded store.

// Each test file uses some of these.
#![allow(dead_code)]

use std::sync::Arc;

use docstore::{CouchConfig, CouchStore, DbName, EmbeddedStore, SharedStore};
use testkit::CouchServer;

/// A client of `url` (the server itself, or a proxy in front of it) with `server`'s credentials.
pub fn couch_config(url: &str, server: &CouchServer) -> CouchConfig {
    let mut config = CouchConfig::from_url(url).expect("server url");
    if let Some((user, password)) = server.credentials() {
        config.user = Some(user);
        config.password = Some(password);
    }
    config
}

/// A store on the shared test server.
pub fn couch() -> SharedStore {
    let server = CouchServer::shared();
    Arc::new(CouchStore::new(couch_config(server.url(), server)).expect("couch store"))
}

/// A fresh in-memory embedded store.
pub fn embedded() -> SharedStore {
    Arc::new(EmbeddedStore::in_memory().expect("embedded store"))
}

/// A database name no other test uses.
pub fn unique_db(prefix: &str) -> DbName {
    DbName::new(testkit::unique_db(prefix)).expect("unique db name")
}
