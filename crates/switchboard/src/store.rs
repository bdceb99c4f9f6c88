//! Opening the store the global options name: CouchDB when a URL is given, else the embedded store.

use std::sync::Arc;

use anyhow::Context;
use docstore::{CouchConfig, CouchStore, EmbeddedStore, SharedStore};

use crate::cli::GlobalArgs;

/// Opens the store: `--couch-url` (with optional `--couch-user`/`--couch-password`), else the
/// embedded store in `--data-dir` or the default data dir.
pub(crate) async fn open(global: &GlobalArgs) -> anyhow::Result<SharedStore> {
    match &global.couch_url {
        Some(url) => {
            let (user, password) = (global.couch_user.as_deref(), global.couch_password.as_deref());
            open_couch(url, user, password, docstore::DEFAULT_MAX_REQUESTS)
        }
        None => {
            let dir = global.data_dir.clone().unwrap_or_else(EmbeddedStore::default_dir);
            open_embedded(&dir)
        }
    }
}

/// A CouchDB store; `user`/`password` override credentials in the URL; at most `max_requests`
/// requests in flight.
pub(crate) fn open_couch(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
    max_requests: usize,
) -> anyhow::Result<SharedStore> {
    let mut config = CouchConfig::from_url(url).context("bad CouchDB URL")?;
    config.max_requests = max_requests;
    if let Some(user) = user {
        config.user = Some(user.to_owned());
    }
    if let Some(password) = password {
        config.password = Some(password.to_owned());
    }
    let store = CouchStore::new(config).context("cannot set up the CouchDB client")?;
    Ok(Arc::new(store))
}

/// The embedded store in `dir`.
pub(crate) fn open_embedded(dir: &std::path::Path) -> anyhow::Result<SharedStore> {
    let store = EmbeddedStore::open(dir)
        .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?;
    Ok(Arc::new(store))
}
