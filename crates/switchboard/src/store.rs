//! Opening the store the global options name: CouchDB when a URL is given, else the embedded store.

use std::sync::Arc;

use anyhow::Context;
use docstore::{CouchConfig, CouchStore, EmbeddedStore, SharedStore};

use crate::cli::GlobalArgs;

/// Opens the store: `--couch-url` (with optional `--couch-user`/`--couch-password`), else the
/// embedded store in `--data-dir` or the default data dir.
pub(crate) async fn open(global: &GlobalArgs) -> anyhow::Result<SharedStore> {
    if let Some(url) = &global.couch_url {
        let mut config = CouchConfig::from_url(url).context("bad --couch-url")?;
        if let Some(user) = &global.couch_user {
            config.user = Some(user.clone());
        }
        if let Some(password) = &global.couch_password {
            config.password = Some(password.clone());
        }
        let store = CouchStore::new(config).context("cannot set up the CouchDB client")?;
        return Ok(Arc::new(store));
    }
    let dir = global.data_dir.clone().unwrap_or_else(EmbeddedStore::default_dir);
    let store = EmbeddedStore::open(&dir)
        .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?;
    Ok(Arc::new(store))
}
