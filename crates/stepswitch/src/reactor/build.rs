//! Building and swapping the tables: every build runs under the one build lock and publishes
//! a new [`Tables`] with `arc-swap`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use docstore::naming::AccountId;
use docstore::Seq;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::source::proxies_by_account;
use super::status::Scope2;
use super::{CompileError, Shared, Source, NUMBER_MANAGER_DOC_ID};
use crate::{rebuild, AccountTree, Config, Diagnostic, ParsedResource, Proxy};
use crate::{RouteTable, Scope, Tables};

/// What the build lock guards: the inputs of every table, for config rebuilds.
pub(super) struct BuildState {
    pub(super) inputs: HashMap<Scope, ScopeInputs>,
}

#[derive(Clone)]
pub(super) struct ScopeInputs {
    /// The scope's resource documents, each parsed once when it was read or changed.
    pub(super) docs: Arc<Vec<Arc<ParsedResource>>>,
    pub(super) proxies: Arc<Vec<Proxy>>,
    pub(super) last_seq: Option<Seq>,
}

/// `stepswitch_resources`' local-resource fields: only the first proxy unless `use_first_dedicated_proxy_only` is off.
pub(super) fn reduce(proxies: &[Proxy], config: &Config) -> Vec<Proxy> {
    if config.use_first_dedicated_proxy_only {
        proxies.iter().take(1).cloned().collect()
    } else {
        proxies.to_vec()
    }
}

pub(super) fn config_from(docs: &[Value]) -> (Config, Vec<Diagnostic>) {
    let find = |id: &str| {
        docs.iter()
            .find(|d| d.get("_id").and_then(Value::as_str) == Some(id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    Config::from_docs(&find(crate::STEPSWITCH_DOC_ID), &find(NUMBER_MANAGER_DOC_ID))
}

/// An account database was deleted: drop its table.
pub(super) async fn drop_account(shared: &Arc<Shared>, id: &AccountId) {
    let source = Source::Account(id.clone());
    let scope = source.scope().expect("an account scope");
    let mut state = shared.build.lock().await;
    state.inputs.remove(&scope);
    let removed = {
        let mut book = shared.book.lock().expect("book lock");
        book.sources.remove(&source);
        book.tables.remove(&Scope2::from(&scope)).is_some()
    };
    if removed || shared.current.load().local.contains_key(id.as_str()) {
        shared.publish(|tables| {
            tables.local.remove(id.as_str());
        });
    }
    drop(state);
}

impl Shared {
    /// Swaps in a changed copy of the current tables. Call with the build lock held.
    ///
    /// What the swap replaced (the old tables and each table they held that the new ones do
    /// not) is retired: freed on the blocking pool once no lookup holds it, never by a request.
    pub(super) fn publish(&self, change: impl FnOnce(&mut Tables)) {
        let mut next = Tables::clone(&self.current.load());
        change(&mut next);
        let next = Arc::new(next);
        let old = self.current.swap(Arc::clone(&next));
        self.generation.send_modify(|g| *g += 1);
        self.retired.retire(replaced(old, &next));
    }

    /// Compiles one scope from its inputs with the current config and swaps it in.
    pub(super) async fn build_scope(
        &self,
        scope: Scope,
        inputs: ScopeInputs,
        cancel: &CancellationToken,
    ) {
        let mut config_ready = self.config_ready.subscribe();
        // Tables built before the config is read would be built twice.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = config_ready.wait_for(|ready| *ready) => {}
        }
        let mut state = self.build.lock().await;
        if cancel.is_cancelled() {
            return;
        }
        let key = Scope2::from(&scope);
        if let Scope::Local { account_id } = &scope {
            if inputs.docs.is_empty() {
                // Only accounts with resources have a table.
                state.inputs.remove(&scope);
                let had = self.book.lock().expect("book lock").tables.remove(&key).is_some();
                if had || self.current.load().local.contains_key(account_id) {
                    let account_id = account_id.clone();
                    self.publish(move |tables| {
                        tables.local.remove(&account_id);
                    });
                }
                return;
            }
        }
        state.inputs.insert(scope.clone(), inputs.clone());
        let current = self.current.load();
        let (config, previous) = (current.config.clone(), current.table(&scope).cloned());
        drop(current);
        let (table, diagnostics, took) =
            compile_blocking(previous, scope, inputs.clone(), config).await;
        let table = Arc::new(table);
        self.note_build(key, inputs.last_seq, &diagnostics, took);
        self.publish(|tables| tables.set_table(table));
        drop(state);
    }

    pub(super) fn note_build(
        &self,
        key: Scope2,
        seq: Option<Seq>,
        diagnostics: &[Diagnostic],
        took: Duration,
    ) {
        let mut book = self.book.lock().expect("book lock");
        let entry = book.tables.entry(key).or_default();
        entry.last_seq = seq;
        entry.built_at = Some(SystemTime::now());
        entry.build_ms = took.as_secs_f64() * 1000.0;
        entry.builds += 1;
        entry.errors = diagnostics.iter().map(CompileError::from).collect();
    }

    /// A new config: every table is recompiled with it and swapped in at once.
    pub(super) async fn build_config(&self, docs: &[Value]) {
        let state = self.build.lock().await;
        let (config, diagnostics) = config_from(docs);
        for diagnostic in &diagnostics {
            tracing::warn!(diagnostic = %diagnostic, "system_config");
        }
        let config = Arc::new(config);
        let mut built = Vec::new();
        let scopes: Vec<(Scope, ScopeInputs)> =
            state.inputs.iter().map(|(s, i)| (s.clone(), i.clone())).collect();
        for (scope, inputs) in scopes {
            let seq = inputs.last_seq.clone();
            let (table, diags, took) = compile_blocking(None, scope, inputs, config.clone()).await;
            built.push((Arc::new(table), seq, diags, took));
        }
        let mut tables: Vec<Arc<RouteTable>> = Vec::with_capacity(built.len());
        for (table, seq, diags, took) in built {
            self.note_build(Scope2::from(table.scope()), seq, &diags, took);
            tables.push(table);
        }
        {
            let mut book = self.book.lock().expect("book lock");
            book.config_errors = diagnostics.iter().map(CompileError::from).collect();
            book.config_built = true;
        }
        self.publish(move |current| {
            current.config = config;
            for table in tables {
                current.set_table(table);
            }
        });
        self.config_ready.send_replace(true);
        drop(state);
    }

    /// The current dedicated IPs of `account`.
    pub(super) fn proxies_for(&self, account: &str) -> Arc<Vec<Proxy>> {
        let proxies = self.proxies.lock().expect("proxies lock").clone();
        proxies.get(account).cloned().unwrap_or_default()
    }

    /// New `dedicated_ips` documents: the tables of the accounts whose proxies changed are
    /// rebuilt with them (one read of the database for all accounts, not one per account).
    pub(super) async fn build_proxies(&self, docs: &[Value]) {
        let mut state = self.build.lock().await;
        let next = Arc::new(proxies_by_account(docs));
        let previous =
            std::mem::replace(&mut *self.proxies.lock().expect("proxies lock"), next.clone());
        let changed: Vec<(Scope, ScopeInputs)> = state
            .inputs
            .iter()
            .filter_map(|(scope, inputs)| match scope {
                Scope::Local { account_id } if previous.get(account_id) != next.get(account_id) => {
                    let mut inputs = inputs.clone();
                    inputs.proxies = next.get(account_id).cloned().unwrap_or_default();
                    Some((scope.clone(), inputs))
                }
                _ => None,
            })
            .collect();
        let config = self.current.load().config.clone();
        let mut tables = Vec::with_capacity(changed.len());
        for (scope, inputs) in changed {
            state.inputs.insert(scope.clone(), inputs.clone());
            let seq = inputs.last_seq.clone();
            let (table, diagnostics, took) =
                // the proxies changed: a full compile (no previous table to share)
                compile_blocking(None, scope.clone(), inputs, config.clone()).await;
            self.note_build(Scope2::from(&scope), seq, &diagnostics, took);
            tables.push(Arc::new(table));
        }
        if !tables.is_empty() {
            self.publish(move |current| {
                for table in tables {
                    current.set_table(table);
                }
            });
        }
        self.proxies_ready.send_replace(true);
        drop(state);
    }

    pub(super) async fn build_accounts(&self, docs: &[Value]) {
        let state = self.build.lock().await;
        let (tree, diagnostics) = AccountTree::from_docs(docs);
        for d in &diagnostics {
            tracing::debug!(diagnostic = %d, "accounts db");
        }
        let tree = Arc::new(tree);
        {
            let mut book = self.book.lock().expect("book lock");
            book.accounts = docs.len();
            book.accounts_built = true;
        }
        self.publish(move |tables| tables.accounts = tree);
        drop(state);
    }
}

/// Builds the table of `scope` from `previous` (its current table, if any; see
/// [`crate::rebuild`]: only the changed documents are compiled when that is possible).
pub(super) async fn compile_blocking(
    previous: Option<Arc<RouteTable>>,
    scope: Scope,
    inputs: ScopeInputs,
    config: Arc<Config>,
) -> (RouteTable, Vec<Diagnostic>, Duration) {
    let job = move || {
        let started = Instant::now();
        let proxies = reduce(&inputs.proxies, &config);
        let built = rebuild(previous.as_deref(), scope, &inputs.docs, &proxies, &config);
        (built.table, built.diagnostics, started.elapsed())
    };
    on_blocking_pool(job).await
}

/// Runs CPU work on the blocking pool. A panic in it is resumed here, as if it had run inline;
/// a job the runtime cancelled (it only does so while shutting down) never answers, and the
/// runtime drops the waiting task next, so shutdown is not reported as a panic.
pub(super) async fn on_blocking_pool<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(job).await {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => std::future::pending().await,
    }
}

/// `old` and what it holds that `next` does not share: the tables replaced or removed, the
/// config and the account tree when they changed.
fn replaced(old: Arc<Tables>, next: &Tables) -> Vec<Arc<dyn std::any::Any + Send + Sync>> {
    let mut out: Vec<Arc<dyn std::any::Any + Send + Sync>> = Vec::new();
    if !Arc::ptr_eq(&old.global, &next.global) {
        out.push(old.global.clone());
    }
    for (id, table) in &old.local {
        if next.local.get(id).is_none_or(|it| !Arc::ptr_eq(it, table)) {
            out.push(table.clone());
        }
    }
    if !Arc::ptr_eq(&old.config, &next.config) {
        out.push(old.config.clone());
    }
    if !Arc::ptr_eq(&old.accounts, &next.accounts) {
        out.push(old.accounts.clone());
    }
    out.push(old);
    out
}
