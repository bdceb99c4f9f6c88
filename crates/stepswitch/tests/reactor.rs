//! The routing reactor against the embedded store and a private couch-peer (`testkit`): live
//! edits without a reload, bad regexes in the status, burst coalescing, only the touched table
//! rebuilt, account database discovery and deletion, config changes, manual reload and flush.
//!
//! No assertion is about timing: every wait is for a condition on the reactor (woken by its
//! generation counter) with a generous upper bound; counts of builds are asserted afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use docstore::{AccountId, CouchConfig, CouchStore, DbName, EmbeddedStore, SharedStore};
use serde_json::{json, Value};
use stepswitch::reactor::{self, ReactorOptions, Routing, RoutingStatus, TableStatus};
use stepswitch::RouteRequest;
use testkit::CouchServer;
use tokio_util::sync::CancellationToken;

/// The upper bound of every wait (the machine is shared).
const WAIT: Duration = Duration::from_secs(60);

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const PARENT: &str = "fedcba9876543210fedcba9876543210";

fn offnet() -> DbName {
    docstore::naming::offnet_db()
}

fn options(debounce_ms: u64) -> ReactorOptions {
    let mut options = ReactorOptions::defaults();
    options.debounce = Duration::from_millis(debounce_ms);
    options.heartbeat = Duration::from_millis(500);
    options.poll_every = Duration::from_millis(200);
    options
}

/// A resource doc routing NANP numbers to `server`.
fn resource(id: &str, server: &str, rules: Value) -> Value {
    json!({
        "_id": id, "pvt_type": "resource", "name": id, "weight_cost": 10,
        "rules": rules, "gateways": [{"server": server, "enabled": true}]
    })
}

struct Running {
    routing: Routing,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start(store: &SharedStore, options: ReactorOptions) -> Running {
    let shutdown = CancellationToken::new();
    let routing = reactor::spawn(store.clone(), options, shutdown.clone());
    Running { routing, shutdown }
}

/// Waits (on the generation counter, never a fixed sleep) until `done` holds.
async fn wait_for(routing: &Routing, what: &str, mut done: impl FnMut(&Routing) -> bool) {
    let mut generations = routing.generations();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if done(routing) {
            return;
        }
        // Status-only changes (caught_up) do not bump the generation: re-check now and then.
        let tick = tokio::time::Instant::now() + Duration::from_millis(100);
        let until = tick.min(deadline);
        let _ = tokio::time::timeout_at(until, generations.changed()).await;
        if tokio::time::Instant::now() >= deadline {
            assert!(done(routing), "timed out waiting for {what}; status {:#?}", routing.status());
            return;
        }
    }
}

fn routes(routing: &Routing, number: &str) -> Vec<String> {
    routing
        .route(&RouteRequest::new(number))
        .endpoints_json()
        .iter()
        .map(|ep| ep["Route"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn table<'a>(status: &'a RoutingStatus, account: Option<&str>) -> Option<&'a TableStatus> {
    status.tables.iter().find(|t| t.account_id.as_deref() == account)
}

fn builds(routing: &Routing, account: Option<&str>) -> u64 {
    table(&routing.status(), account).map_or(0, |t| t.builds)
}

async fn put(store: &SharedStore, db: &DbName, doc: Value) -> String {
    store.put(db, doc).await.expect("put").0
}

async fn caught_up(routing: &Routing) {
    wait_for(routing, "caught up", Routing::is_caught_up).await;
}

// ---- bodies, one per behaviour, run on each backend --------------------------------------

async fn live_edit_delete_and_bad_regex(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    let running = start(&store, options(20));
    let routing = &running.routing;
    caught_up(routing).await;
    assert!(routes(routing, "+14155550100").is_empty());

    let rev =
        put(&store, &offnet(), resource("carrier-a", "a.example.com", json!(["^\\+1(\\d{10})$"])))
            .await;
    wait_for(routing, "the new resource", |r| !routes(r, "+14155550100").is_empty()).await;
    assert_eq!(routes(routing, "+14155550100"), ["sip:4155550100@a.example.com"]);
    let first = table(&routing.status(), None).expect("global table").clone();
    assert!(first.last_seq.is_some(), "{first:?}");
    let first_built = first.built_at.clone().expect("built_at set once built");
    assert!(first.build_ms.is_finite() && first.build_ms >= 0.0, "{first:?}");

    // Edit in place: no reload call.
    let mut edited = resource("carrier-a", "b.example.com", json!(["^\\+1(\\d{10})$"]));
    edited["_rev"] = json!(rev);
    let rev = put(&store, &offnet(), edited).await;
    wait_for(routing, "the edit", |r| {
        routes(r, "+14155550100") == ["sip:4155550100@b.example.com"]
    })
    .await;
    // The rebuild records the edit's sequence (opaque: only compared for equality) and a later
    // build time. The rebuild waits out the debounce after the write, which came after the first
    // build, so the two times differ; RFC 3339 UTC with millis in one format orders as text.
    let second = table(&routing.status(), None).expect("global table").clone();
    assert!(second.builds > first.builds, "{first:?} / {second:?}");
    assert!(second.last_seq.is_some() && second.last_seq != first.last_seq, "{second:?}");
    let second_built = second.built_at.clone().expect("built_at set");
    assert_eq!(second_built.len(), first_built.len(), "{first_built} / {second_built}");
    assert!(second_built > first_built, "built_at did not move: {first_built} -> {second_built}");
    assert!(second.build_ms.is_finite() && second.build_ms >= 0.0, "{second:?}");

    // A bad regex: reported with resource, field and index; the other rule still routes.
    let mut bad =
        resource("carrier-a", "b.example.com", json!(["^\\+1(415\\d{7}$", "^\\+1(\\d{10})$"]));
    bad["_rev"] = json!(rev);
    let rev = put(&store, &offnet(), bad).await;
    wait_for(routing, "the bad regex in the status", |r| {
        table(&r.status(), None).is_some_and(|t| !t.errors.is_empty())
    })
    .await;
    let status = routing.status();
    let global = table(&status, None).expect("global table");
    let error = &global.errors[0];
    assert_eq!(
        (error.resource_id.as_str(), error.field.as_str(), error.index),
        ("carrier-a", "rules", Some(0)),
        "{error:?}"
    );
    assert_eq!(global.resources, 1);
    assert_eq!(routes(routing, "+14155550100"), ["sip:4155550100@b.example.com"]);
    let json = serde_json::to_value(&status).expect("status serializes");
    assert_eq!(json["tables"][0]["scope"], "global");
    assert_eq!(json["tables"][0]["errors"][0]["resource_id"], "carrier-a");
    assert!(json["tables"][0]["build_ms"].is_number(), "{json}");
    assert!(json["tables"][0]["built_at"].is_string(), "{json}");
    assert!(!json["tables"][0]["last_seq"].is_null(), "{json}");

    // Delete: gone.
    store.delete(&offnet(), "carrier-a", &docstore::Rev(rev)).await.expect("delete");
    wait_for(routing, "the deletion", |r| routes(r, "+14155550100").is_empty()).await;
    assert_eq!(table(&routing.status(), None).map(|t| t.resources), Some(0));
}

async fn burst_coalesces_into_few_builds(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    // A long debounce: the whole burst lands in one window however slowly the feed delivers.
    let running = start(&store, options(400));
    let routing = &running.routing;
    caught_up(routing).await;
    let before = builds(routing, None);
    let docs: Vec<Value> = (0..50)
        .map(|i| {
            resource(
                &format!("burst-{i:02}"),
                &format!("gw{i}.example.com"),
                json!(["^\\+1(\\d{10})$"]),
            )
        })
        .collect();
    for item in store.bulk_docs(&offnet(), docs).await.expect("bulk") {
        item.outcome.expect("written");
    }
    wait_for(routing, "all 50 resources", |r| {
        table(&r.status(), None).is_some_and(|t| t.resources == 50)
    })
    .await;
    let rebuilds = builds(routing, None) - before;
    assert!((1..=3).contains(&rebuilds), "50 writes took {rebuilds} rebuilds");
    assert_eq!(routes(routing, "+14155550100").len(), 50);
}

async fn accounts_discovered_local_routing_and_only_touched_table(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    put(&store, &offnet(), resource("global-a", "global.example.com", json!(["^\\+1(\\d{10})$"])))
        .await;
    let accounts = docstore::naming::accounts_db();
    store.ensure_db(&accounts).await.expect("accounts");
    put(&store, &accounts, json!({"_id": ACCOUNT, "pvt_type": "account", "pvt_tree": [PARENT]}))
        .await;
    let parent_doc = json!({"_id": PARENT, "pvt_type": "account", "pvt_tree": [], "realm": "parent.example.com"});
    put(&store, &accounts, parent_doc).await;
    let running = start(&store, options(20));
    let routing = &running.routing;
    caught_up(routing).await;
    // The account docs' realms reach the tables (`stepswitch_resources:reverse_lookup/1`'s account owning the realm).
    assert_eq!(routing.tables().accounts.account_by_realm("parent.example.com"), Some(PARENT));
    let global_builds = builds(routing, None);
    assert!(global_builds >= 1);

    // A new account db with a resource: discovered without a restart.
    let parent = AccountId::new(PARENT).expect("id");
    store.create_db(&parent.db_name()).await.expect("account db");
    let rev = put(
        &store,
        &parent.db_name(),
        resource("local-a", "local.example.com", json!(["^\\+1(\\d{10})$"])),
    )
    .await;
    wait_for(routing, "the parent's local table", |r| table(&r.status(), Some(PARENT)).is_some())
        .await;
    let mut request = RouteRequest::new("+14155550100");
    request.account_id = Some(ACCOUNT.into());
    request.hunt_account_id = Some(PARENT.into());
    let answer = routing.route(&request);
    let endpoints = answer.endpoints_json();
    let got: Vec<&str> = endpoints.iter().filter_map(|ep| ep["Route"].as_str()).collect();
    assert_eq!(got, ["sip:4155550100@local.example.com"]);
    // The hunt account must be the account or an ancestor (`stepswitch_resources:maybe_get_endpoints/2`).
    request.account_id = Some(PARENT.into());
    request.hunt_account_id = Some(ACCOUNT.into());
    assert!(routing.route(&request).endpoints.is_empty());

    // Only the touched table is rebuilt.
    let local_builds = builds(routing, Some(PARENT));
    let mut edited = resource("local-a", "local2.example.com", json!(["^\\+1(\\d{10})$"]));
    edited["_rev"] = json!(rev);
    put(&store, &parent.db_name(), edited).await;
    wait_for(routing, "the local edit", |r| builds(r, Some(PARENT)) > local_builds).await;
    assert_eq!(builds(routing, None), global_builds, "the global table was rebuilt");
    assert_eq!(routes(routing, "+14155550100"), ["sip:4155550100@global.example.com"]);

    // A deleted account db drops its table.
    store.delete_db(&parent.db_name()).await.expect("delete db");
    wait_for(routing, "the dropped table", |r| {
        table(&r.status(), Some(PARENT)).is_none() && !r.tables().local.contains_key(PARENT)
    })
    .await;
    request.account_id = Some(ACCOUNT.into());
    request.hunt_account_id = Some(PARENT.into());
    assert!(routing.route(&request).endpoints.is_empty());
}

/// A database named like an account database whose name holds no account id is not followed and
/// is named in the status (until it is deleted); an account's monthly database is skipped quietly.
async fn unparsable_account_db_is_a_status_diagnostic(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    let odd = DbName::new("account/zz/zz/not-an-account").expect("name");
    store.create_db(&odd).await.expect("odd db");
    let account = AccountId::new(ACCOUNT).expect("id");
    let monthly = DbName::new(format!("{}-202401", account.db_name())).expect("name");
    store.create_db(&monthly).await.expect("monthly db");
    let running = start(&store, options(20));
    let routing = &running.routing;
    caught_up(routing).await;
    let status = routing.status();
    assert_eq!(status.db_errors.len(), 1, "{:?}", status.db_errors);
    assert_eq!(status.db_errors[0].resource_id, odd.as_str());
    assert!(status.db_errors[0].message.contains("not an account id"), "{:?}", status.db_errors);
    assert!(status.tables.iter().all(|t| t.account_id.is_none()), "{:?}", status.tables);
    store.delete_db(&odd).await.expect("delete db");
    wait_for(routing, "the diagnostic gone", |r| r.status().db_errors.is_empty()).await;
}

async fn system_config_change_rebuilds(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    // No weight_cost: the weight comes from default_weight (`stepswitch_resources`' weight).
    let mut doc = resource("no-weight", "w.example.com", json!(["^\\+1(\\d{10})$"]));
    doc.as_object_mut().expect("object").remove("weight_cost");
    put(&store, &offnet(), doc).await;
    let running = start(&store, options(20));
    let routing = &running.routing;
    caught_up(routing).await;
    assert_eq!(routing.tables().global.resources()[0].weight, 3);
    let config = docstore::naming::system_config_db();
    store.ensure_db(&config).await.expect("system_config");
    put(&store, &config, json!({"_id": "stepswitch", "default": {"default_weight": 7, "default_progress_timeout": "soon"}})).await;
    wait_for(routing, "the new default weight", |r| {
        r.tables().global.resources().first().is_some_and(|res| res.weight == 7)
    })
    .await;
    let status = routing.status();
    assert_eq!(status.config_errors.len(), 1, "{:?}", status.config_errors);
    assert_eq!(status.config_errors[0].field, "default_progress_timeout");
    assert_eq!(routing.tables().config.default_weight, 7);
}

async fn reload_and_flush(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    put(&store, &offnet(), resource("carrier-r", "r.example.com", json!(["^\\+1(\\d{10})$"])))
        .await;
    let mut opts = options(20);
    // Discovery is slow here, so that a reload is what finds the account.
    opts.poll_every = Duration::from_secs(3600);
    let running = start(&store, opts);
    let routing = &running.routing;
    caught_up(routing).await;

    let before = builds(routing, None);
    let status = routing.reload(None).await.expect("reload/0");
    assert!(table(&status, None).expect("global").builds > before);

    // reload/1 of an account db created after startup: read now, table live on return.
    let account = AccountId::new(ACCOUNT).expect("id");
    let unknown = routing.reload(Some(&account)).await;
    assert!(
        matches!(unknown, Err(stepswitch::Error::Store(docstore::Error::DbNotFound { .. }))),
        "{unknown:?}"
    );
    store.create_db(&account.db_name()).await.expect("account db");
    put(
        &store,
        &account.db_name(),
        resource("local-r", "lr.example.com", json!(["^\\+1(\\d{10})$"])),
    )
    .await;
    let status = routing.reload(Some(&account)).await.expect("reload/1");
    assert_eq!(table(&status, Some(ACCOUNT)).map(|t| t.resources), Some(1));

    let (global, local) = (builds(routing, None), builds(routing, Some(ACCOUNT)));
    routing.flush().await;
    assert!(builds(routing, None) > global);
    assert!(builds(routing, Some(ACCOUNT)) > local);
    assert_eq!(routes(routing, "+14155550100"), ["sip:4155550100@r.example.com"]);
}

async fn local_tables_carry_dedicated_ips(store: SharedStore) {
    // `stepswitch_resources`' local-resource fields: the account's dedicated IPs (db `dedicated_ips`), only the first by default;
    // `stepswitch_maintenance:reload_resources/0`: reload/1 re-reads them (their changes are not followed, `stepswitch_cache` (not flushed on `number_manager` changes)).
    let ips = DbName::new(reactor::DEDICATED_IPS_DB).expect("name");
    store.ensure_db(&ips).await.expect("dedicated_ips");
    let ip = |id: &str, addr: &str, zone: &str| json!({"_id": id, "pvt_type": "dedicated_ip", "ip": addr, "zone": zone, "pvt_assigned_to": PARENT});
    put(&store, &ips, ip("ip-1", "10.0.0.1", "east")).await;
    put(&store, &ips, ip("ip-2", "10.0.0.2", "west")).await;
    put(
        &store,
        &ips,
        json!({"_id": "ip-3", "ip": "10.0.0.3", "zone": "x", "pvt_assigned_to": ACCOUNT}),
    )
    .await;
    let parent = AccountId::new(PARENT).expect("id");
    store.create_db(&parent.db_name()).await.expect("account db");
    put(
        &store,
        &parent.db_name(),
        resource("local-p", "p.example.com", json!(["^\\+1(\\d{10})$"])),
    )
    .await;
    let running = start(&store, options(20));
    let routing = &running.routing;
    wait_for(routing, "the local table", |r| table(&r.status(), Some(PARENT)).is_some()).await;
    let mut request = RouteRequest::new("+14155550100");
    request.account_id = Some(PARENT.into());
    request.hunt_account_id = Some(PARENT.into());
    let proxies = |routing: &Routing| -> Vec<(String, String)> {
        routing
            .route(&request)
            .endpoints_json()
            .iter()
            .map(|ep| {
                let text = |k: &str| ep.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                (text("Proxy-Zone"), text("Proxy-IP"))
            })
            .collect()
    };
    assert_eq!(proxies(routing), [("east".to_owned(), "10.0.0.1".to_owned())]);

    let rev = store.get(&ips, "ip-1").await.expect("get").expect("doc")["_rev"].clone();
    store
        .delete(&ips, "ip-1", &docstore::Rev(rev.as_str().expect("rev").to_owned()))
        .await
        .expect("delete");
    routing.reload(Some(&parent)).await.expect("reload/1");
    assert_eq!(proxies(routing), [("west".to_owned(), "10.0.0.2".to_owned())]);
}

async fn new_account_db_routes_without_a_poll_and_without_a_feed_each(store: SharedStore) {
    store.ensure_db(&offnet()).await.expect("offnet");
    // Many account databases, most without resources.
    let ids: Vec<AccountId> = (0..24u32)
        .map(|i| AccountId::new(&format!("{i:08x}{:024x}", 0xabcu32)).expect("id"))
        .collect();
    for id in &ids {
        store.create_db(&id.db_name()).await.expect("account db");
        put(&store, &id.db_name(), json!({"_id": "user", "pvt_type": "user"})).await;
    }
    let mut opts = options(20);
    // Listing the databases is not how a new one is found: `_db_updates` is.
    opts.poll_every = Duration::from_secs(3600);
    let running = start(&store, opts);
    let routing = &running.routing;
    caught_up(routing).await;
    let status = routing.status();
    assert_eq!(status.phase, reactor::Phase::Ready);
    assert_eq!(status.account_dbs.mode, "feed");
    assert_eq!((status.account_dbs.dbs, status.account_dbs.loaded), (24, 24));
    // One follower per shared database, none per account database.
    let followed: Vec<&str> = status.sources.iter().map(|s| s.db.as_str()).collect();
    assert!(followed.iter().all(|db| !db.starts_with("account/")), "{followed:?}");
    assert!(status.tables.iter().all(|t| t.account_id.is_none()), "no account has a resource");

    let parent = AccountId::new(PARENT).expect("id");
    store.create_db(&parent.db_name()).await.expect("account db");
    put(
        &store,
        &parent.db_name(),
        resource("local-n", "n.example.com", json!(["^\\+1(\\d{10})$"])),
    )
    .await;
    wait_for(routing, "the new account's table", |r| table(&r.status(), Some(PARENT)).is_some())
        .await;
    let mut request = RouteRequest::new("+14155550100");
    request.account_id = Some(PARENT.into());
    request.hunt_account_id = Some(PARENT.into());
    let endpoints = routing.route(&request).endpoints_json();
    let got: Vec<&str> = endpoints.iter().filter_map(|ep| ep["Route"].as_str()).collect();
    assert_eq!(got, ["sip:4155550100@n.example.com"]);

    // A dedicated IP assigned later reaches the table without a reload.
    let ips = DbName::new(reactor::DEDICATED_IPS_DB).expect("name");
    store.ensure_db(&ips).await.expect("dedicated_ips");
    put(
        &store,
        &ips,
        json!({"_id": "ip-9", "ip": "10.9.9.9", "zone": "z", "pvt_assigned_to": PARENT}),
    )
    .await;
    wait_for(routing, "the dedicated IP", |r| {
        r.route(&request)
            .endpoints_json()
            .iter()
            .any(|ep| ep.get("Proxy-IP").and_then(Value::as_str) == Some("10.9.9.9"))
    })
    .await;
}

/// A store whose account databases' changes never arrive (as if the background load had not
/// reached them yet); everything else passes through.
struct SlowAccounts(SharedStore);

#[async_trait::async_trait]
impl docstore::DocStore for SlowAccounts {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    async fn list_dbs(&self) -> docstore::Result<Vec<DbName>> {
        self.0.list_dbs().await
    }
    async fn db_exists(&self, db: &DbName) -> docstore::Result<bool> {
        self.0.db_exists(db).await
    }
    async fn create_db(&self, db: &DbName) -> docstore::Result<()> {
        self.0.create_db(db).await
    }
    async fn delete_db(&self, db: &DbName) -> docstore::Result<()> {
        self.0.delete_db(db).await
    }
    async fn db_info(&self, db: &DbName) -> docstore::Result<docstore::DbInfo> {
        self.0.db_info(db).await
    }
    async fn get(&self, db: &DbName, id: &str) -> docstore::Result<Option<Value>> {
        self.0.get(db, id).await
    }
    async fn put(&self, db: &DbName, doc: Value) -> docstore::Result<docstore::Rev> {
        self.0.put(db, doc).await
    }
    async fn delete(
        &self,
        db: &DbName,
        id: &str,
        rev: &docstore::Rev,
    ) -> docstore::Result<docstore::Rev> {
        self.0.delete(db, id, rev).await
    }
    async fn bulk_docs(
        &self,
        db: &DbName,
        docs: Vec<Value>,
    ) -> docstore::Result<Vec<docstore::BulkItem>> {
        self.0.bulk_docs(db, docs).await
    }
    async fn all_docs(
        &self,
        db: &DbName,
        query: &docstore::AllDocsQuery,
    ) -> docstore::Result<docstore::AllDocsPage> {
        self.0.all_docs(db, query).await
    }
    async fn get_many(&self, db: &DbName, ids: &[String]) -> docstore::Result<Vec<Option<Value>>> {
        self.0.get_many(db, ids).await
    }
    async fn changes(
        &self,
        db: &DbName,
        query: &docstore::ChangesQuery,
    ) -> docstore::Result<docstore::ChangesPage> {
        if db.as_str().starts_with("account/") {
            std::future::pending::<()>().await;
        }
        self.0.changes(db, query).await
    }
    async fn open_feed(
        &self,
        db: &DbName,
        query: &docstore::FeedQuery,
    ) -> docstore::Result<docstore::FeedStream> {
        self.0.open_feed(db, query).await
    }
    async fn db_updates(
        &self,
        since: &docstore::Seq,
    ) -> docstore::Result<Option<docstore::DbUpdateStream>> {
        self.0.db_updates(since).await
    }
    async fn get_local(&self, db: &DbName, name: &str) -> docstore::Result<Option<Value>> {
        self.0.get_local(db, name).await
    }
    async fn put_local(&self, db: &DbName, name: &str, body: Value) -> docstore::Result<()> {
        self.0.put_local(db, name, body).await
    }
    async fn view(
        &self,
        db: &DbName,
        ddoc: &str,
        view: &str,
        query: &docstore::ViewQuery,
    ) -> docstore::Result<Vec<docstore::ViewRow>> {
        self.0.view(db, ddoc, view, query).await
    }
}

/// While the account tables load in the background (phase `offnet_ready`), a route naming an
/// account whose table is not loaded yet loads it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_loads_its_account_table_first() {
    let inner = embedded();
    inner.ensure_db(&offnet()).await.expect("offnet");
    let parent = AccountId::new(PARENT).expect("id");
    inner.create_db(&parent.db_name()).await.expect("account db");
    put(
        &inner,
        &parent.db_name(),
        resource("local-f", "f.example.com", json!(["^\\+1(\\d{10})$"])),
    )
    .await;
    let store: SharedStore = Arc::new(SlowAccounts(inner));
    let running = start(&store, options(20));
    let routing = &running.routing;
    wait_for(routing, "global routing", |r| r.status().phase == reactor::Phase::OffnetReady).await;
    assert!(table(&routing.status(), Some(PARENT)).is_none(), "not loaded in the background");
    let mut request = RouteRequest::new("+14155550100");
    request.account_id = Some(PARENT.into());
    request.hunt_account_id = Some(PARENT.into());
    routing.ensure_loaded(&request).await;
    let endpoints = routing.route(&request).endpoints_json();
    let got: Vec<&str> = endpoints.iter().filter_map(|ep| ep["Route"].as_str()).collect();
    assert_eq!(got, ["sip:4155550100@f.example.com"]);
    assert_eq!(routing.status().phase, reactor::Phase::OffnetReady);
}

// ---- backends ---------------------------------------------------------------------------

fn embedded() -> SharedStore {
    Arc::new(EmbeddedStore::in_memory().expect("embedded store"))
}

/// A private couch-peer (the database names are Kazoo's fixed ones, so tests cannot share a
/// server). `None` when `COUCHDB_URL` points at an external server.
struct Couch {
    _server: CouchServer,
    _dir: tempfile::TempDir,
    store: SharedStore,
}

fn couch() -> Option<Couch> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = PathBuf::from(dir.path());
    let Some(server) = CouchServer::start_persistent(&path) else {
        eprintln!("COUCHDB_URL is set: the reactor's couch tests need a private server; skipped");
        return None;
    };
    let mut config = CouchConfig::from_url(server.url()).expect("url");
    if let Some((user, password)) = server.credentials() {
        config.user = Some(user);
        config.password = Some(password);
    }
    let store: SharedStore = Arc::new(CouchStore::new(config).expect("couch store"));
    Some(Couch { _server: server, _dir: dir, store })
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::embedded()).await;
                }
            )*
        }
        mod couch_peer {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(couch) = super::couch() {
                        super::$name(couch.store.clone()).await;
                    }
                }
            )*
        }
    };
}

on_both!(
    live_edit_delete_and_bad_regex,
    burst_coalesces_into_few_builds,
    accounts_discovered_local_routing_and_only_touched_table,
    unparsable_account_db_is_a_status_diagnostic,
    system_config_change_rebuilds,
    reload_and_flush,
    local_tables_carry_dedicated_ips,
    new_account_db_routes_without_a_poll_and_without_a_feed_each,
);
