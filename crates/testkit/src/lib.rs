//! Test-only harness: a real CouchDB-compatible server for integration tests, and a TCP proxy
//! that injects network faults.
//!
//! # Brief overview
//!
//! - [`CouchServer::shared`] starts one in-memory `tools/couch-peer` server per test binary
//!   (lazily, on a free loopback port) and hands every test the same `&'static` handle. When
//!   `COUCHDB_URL` is set (optionally with `COUCHDB_USER` / `COUCHDB_PASSWORD`, or credentials
//!   in the URL) no process is started and tests run against that server instead.
//! - [`CouchServer::start_persistent`] starts a private leveldb-backed server that a test may
//!   [`kill`](CouchServer::kill) and [`restart`](CouchServer::restart).
//! - [`unique_db`] names a database no other test (or test binary) uses.
//! - [`TcpProxy`] sits between a client and a server and can stall, cut or refuse connections.
//! - [`Daemon`] runs the real `switchboard serve` binary for end-to-end tests.
//! - [`require`], [`find_program`] and [`TestProcess`]: the external programs an end-to-end
//!   test drives (Kamailio, SIPp, Chromium), skipped loudly when missing (a failure under
//!   `CI=true`), each stopped with its process group.
//! - [`fuzz_config`] is the proptest configuration every fuzz suite uses, so that one variable
//!   (`SWITCHBOARD_FUZZ_CASES`) scales all of them for a long run.
//!
//! Before the first start, the harness runs `npm ci --ignore-scripts` in `tools/couch-peer`
//! when its `node_modules` is missing or older than `package-lock.json`, under a cross-process
//! file lock, so a plain `cargo test --workspace` works on a fresh machine that has Node.js
//! and npm. Every server process is started with `PR_SET_PDEATHSIG` (on Linux), so it dies
//! with the test process: no `node` is ever left behind.
//!
//! This crate is not for production code: it panics with a clear message instead of
//! returning errors, because its callers are tests.

#![deny(missing_docs)]

mod daemon;
mod fuzz;
mod http;
mod install;
pub mod kazoo;
mod proxy;
mod server;
mod tools;

pub use daemon::Daemon;
pub use fuzz::{fuzz_config, FUZZ_CASES_VAR};
pub use http::{http_request, percent_encode};
pub use proxy::TcpProxy;
pub use server::CouchServer;
pub use tools::{find_program, require, TestProcess};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A database name unique to this test run: `{prefix}-{pid}-{counter}-{random}`, lowercased.
///
/// The result is a valid CouchDB database name (`^[a-z][a-z0-9_$()+/-]*$`): characters of
/// `prefix` that CouchDB does not allow become `_`, and a prefix that does not start with a
/// letter gets a leading `t`. The random part keeps names distinct across test processes that
/// happen to reuse a pid, and across runs against the same external server.
pub fn unique_db(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(n);
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    let random = hasher.finish() & 0xffff_ffff;
    let prefix: String = prefix
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+-/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{prefix}-{}-{n}-{random:08x}", std::process::id());
    if name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name
    } else {
        format!("t{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::unique_db;

    #[test]
    fn unique_db_names_are_valid_and_distinct() {
        let a = unique_db("Follow");
        let b = unique_db("Follow");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("follow-{}-", std::process::id())), "{a}");
        for name in [a, b, unique_db("9lives"), unique_db("sp ace/Ok"), unique_db("")] {
            let mut chars = name.chars();
            assert!(chars.next().is_some_and(|c| c.is_ascii_lowercase()), "{name}");
            assert!(
                chars
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+-/".contains(c)),
                "{name}"
            );
        }
        assert!(unique_db("sp ace/Ok").starts_with("sp_ace/ok-"));
    }
}
