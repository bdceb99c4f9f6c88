//! Opening the store the global options name: CouchDB when a URL is given, else the embedded store.
//!
//! Both refuse early and say why: a CouchDB that cannot be reached is named with the root cause
//! ("CouchDB at http://host:5984: connection refused"), and an embedded store directory that does
//! not exist is an error unless the caller may create it (`--create-data-dir`, or `serve` with the
//! default directory), so a mistyped `--data-dir` never reads as an empty store.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use docstore::{CouchConfig, CouchStore, DocStore, EmbeddedStore, SharedStore};

use crate::cli::GlobalArgs;
use crate::output::CliError;

/// Opens the store of a one-shot command: `--couch-url` (with optional
/// `--couch-user`/`--couch-password`), else the embedded store in `--data-dir` or the default
/// data dir, which must exist unless `--create-data-dir`.
pub(crate) async fn open(global: &GlobalArgs) -> anyhow::Result<SharedStore> {
    match &global.couch_url {
        Some(url) => {
            let (user, password) = (global.couch_user.as_deref(), global.couch_password.as_deref());
            open_couch(url, user, password, docstore::DEFAULT_MAX_REQUESTS).await
        }
        None => {
            let dir = global.data_dir.clone().unwrap_or_else(EmbeddedStore::default_dir);
            open_embedded(&dir, global.create_data_dir)
        }
    }
}

/// A CouchDB store; `user`/`password` override credentials in the URL; at most `max_requests`
/// requests in flight. One request is made to check that the server answers and accepts the
/// credentials.
pub(crate) async fn open_couch(
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
    let shown = store.url().trim_end_matches('/').to_owned();
    if let Err(err) = store.db_exists(&docstore::naming::accounts_db()).await {
        return Err(unreachable(&shown, &err).into());
    }
    Ok(Arc::new(store))
}

/// "CouchDB at URL: root cause", the error of a server that did not answer the first request.
fn unreachable(url: &str, err: &docstore::Error) -> CliError {
    let (code, error, why) = match err {
        docstore::Error::Transport { message, .. } => (503, "store_unreachable", root(message)),
        docstore::Error::Timeout { .. } => (504, "store_unreachable", "no answer in time".into()),
        docstore::Error::Unauthorized { reason } => {
            (401, "store_unauthorized", format!("credentials refused ({reason})"))
        }
        other => (other.status(), "database_error", other.to_string()),
    };
    CliError::new(code, error, format!("CouchDB at {url}: {why}"), Some(err.to_string()))
}

/// The innermost part of a transport error's `outer: inner: innermost` chain, as a phrase:
/// `Connection refused (os error 111)` becomes `connection refused`.
fn root(message: &str) -> String {
    let last = message.rsplit(": ").next().unwrap_or(message).trim();
    let last = match last.rfind(" (os error ") {
        Some(i) if last.ends_with(')') => &last[..i],
        _ => last,
    };
    let mut chars = last.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => message.to_owned(),
    }
}

/// The embedded store in `dir`; a directory that does not exist is created only when `create`.
pub(crate) fn open_embedded(dir: &Path, create: bool) -> anyhow::Result<SharedStore> {
    if !create && !dir.exists() {
        return Err(CliError::new(
            404,
            "data_dir_not_found",
            format!(
                "no embedded store in {}: the directory does not exist (pass --create-data-dir \
                 to start a new, empty store there)",
                dir.display()
            ),
            Some(dir.display().to_string()),
        )
        .into());
    }
    let store = EmbeddedStore::open(dir)
        .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::root;

    #[test]
    fn the_root_of_a_transport_error_reads_as_a_phrase() {
        assert_eq!(
            root(
                "error sending request for url (http://127.0.0.1:1/accounts): client error \
                  (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "connection refused"
        );
        assert_eq!(root("dns error: failed to lookup address"), "failed to lookup address");
        assert_eq!(root(""), "");
    }
}
