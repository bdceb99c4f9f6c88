//! End-to-end tests of `switchboard numbers …` with the real binary against the
//! CouchDB-compatible test server loaded with Kazoo's fixturedb documents
//! (`fixtures/numbers/fixturedb`): each subcommand, `--json` output (the public JSON of `knm_phone_number:to_public_json/1`),
//! an error case's exact `knm_errors` JSON and exit code, dry run, generation, CSV import and search.
//!
//! One test function runs the steps in order: the fixture databases have Kazoo's fixed names.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use docstore::{CouchConfig, CouchStore, DbName, SharedStore};
use serde_json::{json, Value};
use testkit::CouchServer;

const MASTER: &str = "account0000000000000000000000001";
const RESELLER: &str = "account0000000000000000000000002";
const CHILD: &str = "account0000000000000000000000003";

struct Cli {
    url: String,
    creds: Option<(String, String)>,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_remove("COUCHDB_URL")
            .env_remove("COUCHDB_USER")
            .env_remove("COUCHDB_PASSWORD")
            .env_remove("SWITCHBOARD_DATA_DIR")
            .env("SWITCHBOARD_LOG", "warn")
            .arg("--couch-url")
            .arg(&self.url)
            .arg("--json")
            .arg("numbers")
            .args(args);
        if let Some((u, p)) = &self.creds {
            cmd.env("COUCHDB_USER", u).env("COUCHDB_PASSWORD", p);
        }
        cmd.output().expect("run switchboard")
    }

    /// Runs, expects exit 0, returns stdout's JSON.
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
    }

    /// Runs, expects exit 1, returns stdout's JSON.
    fn fails(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
    }
}

fn store(server: &CouchServer) -> SharedStore {
    let mut config = CouchConfig::from_url(server.url()).unwrap();
    if let Some((u, p)) = server.credentials() {
        config.user = Some(u);
        config.password = Some(p);
    }
    Arc::new(CouchStore::new(config).unwrap())
}

/// Kazoo's fixturedb into the server (stored `_rev`s and attachment stubs dropped), plus empty
/// account databases for the account copies.
async fn load_fixtures(store: &SharedStore) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/numbers/fixturedb");
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name =
            docstore::naming::decode_db_name(dir.file_name().unwrap().to_str().unwrap()).unwrap();
        let _ = store.delete_db(&name).await;
        store.create_db(&name).await.unwrap();
        let mut docs = Vec::new();
        for f in std::fs::read_dir(dir.join("docs")).unwrap() {
            let mut v: Value =
                serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
            v.as_object_mut().unwrap().remove("_rev");
            v.as_object_mut().unwrap().remove("_attachments");
            docs.push(v);
        }
        for item in store.bulk_docs(&name, docs).await.unwrap() {
            item.outcome.unwrap();
        }
    }
    for a in [MASTER, RESELLER, CHILD] {
        let db = DbName::new(numbers::AccountId::parse(a).unwrap().db_name()).unwrap();
        let _ = store.delete_db(&db).await;
        store.create_db(&db).await.unwrap();
    }
}

#[test]
fn numbers_subcommands() {
    let server = CouchServer::shared();
    let store = store(server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(load_fixtures(&store));
    let cli = Cli { url: server.url().to_owned(), creds: server.credentials() };
    let get =
        |db: &str, id: &str| rt.block_on(store.get(&DbName::new(db).unwrap(), id)).unwrap_or(None);

    // get (B1): the public JSON.
    let v = cli.ok(&["get", "+15551239876"]);
    assert_eq!(v["id"], "+15551239876");
    assert_eq!(v["state"], "available");
    assert_eq!(v["_read_only"]["state"], "available");

    // `knm_errors` error JSON, exactly, and a non-zero exit: not_found (B7, normalized input).
    let e = cli.fails(&["get", "5559871234"]);
    assert_eq!(
        e,
        json!({"code": 404, "error": "not_found", "message": "number +15559871234 not found",
               "cause": "+15559871234"})
    );
    // not_reconcilable (B6).
    let e = cli.fails(&["get", "1000"]);
    assert_eq!(
        e,
        json!({"code": 404, "error": "not_reconcilable",
               "message": "number 1000 is not reconcilable", "cause": "1000"})
    );

    // create --dry-run (C9): the would-be number, nothing written.
    let v = cli.ok(&[
        "create",
        "+15559871234",
        "--account-id",
        RESELLER,
        "--auth-account-id",
        MASTER,
        "--dry-run",
    ]);
    assert_eq!(v["state"], "in_service");
    assert!(get("numbers/+1555", "+15559871234").is_none());

    // create (C1): written to the number db and the owner's account db.
    let v =
        cli.ok(&["create", "+15559871234", "--account-id", RESELLER, "--auth-account-id", MASTER]);
    assert_eq!(v["state"], "in_service");
    assert_eq!(get("numbers/+1555", "+15559871234").unwrap()["pvt_assigned_to"], RESELLER);
    assert!(get("account/ac/co/unt0000000000000000000000002", "+15559871234").is_some());

    // create again (C8): 409 number_exists.
    let e = cli.fails(&["create", "+15559871234", "--account-id", RESELLER]);
    assert_eq!(e["code"], 409);
    assert_eq!(e["error"], "number_exists");

    // reserve (E1) then activate (D1-like).
    let v =
        cli.ok(&["reserve", "+15551239876", "--account-id", RESELLER, "--auth-account-id", MASTER]);
    assert_eq!(v["state"], "reserved");
    let v = cli.ok(&["activate", "+15551239876", "--account-id", CHILD]);
    assert_eq!(v["state"], "in_service");
    assert_eq!(get("numbers/+1555", "+15551239876").unwrap()["pvt_assigned_to"], CHILD);

    // release (G7): back to the previous reserver.
    let v = cli.ok(&["release", "+15551255693"]);
    assert_eq!(v["state"], "reserved");

    // delete by a non-admin: exact 403 JSON; by MASTER: deleted.
    let e = cli.fails(&["delete", "+15551233322", "--auth-account-id", RESELLER]);
    assert_eq!(
        e,
        json!({"code": 403, "error": "forbidden",
               "message": "requestor is unauthorized to perform operation", "cause": null})
    );
    let v = cli.ok(&["delete", "+15551233322", "--auth-account-id", MASTER]);
    assert_eq!(v["state"], "deleted");
    assert!(get("numbers/+1555", "+15551233322").is_none());

    // identify (L1, L7).
    let v = cli.ok(&["identify", "+14252151007"]);
    assert_eq!(v["account_id"], RESELLER);
    assert_eq!(v["force_outbound"], true);
    let v = cli.ok(&["identify", "+19042471591"]);
    assert_eq!(v["pending_port"], true);
    let e = cli.fails(&["identify", "+14352154006"]);
    assert_eq!(e["error"], "not_in_service");

    // --state is only for create.
    let e = cli.fails(&["reserve", "+15551239876", "--state", "available"]);
    assert_eq!(e["error"], "invalid");

    // generate managed (`kazoo_number_manager_maintenance:generate_numbers/4`): 250 pool docs through _bulk_docs; again: each one refused.
    let v = cli.ok(&["generate", "managed", RESELLER, "14158000000", "250"]);
    assert_eq!(v["success"].as_object().unwrap().len(), 250);
    assert_eq!(get("numbers/managed", "+14158000249").unwrap()["pvt_account_id"], RESELLER);
    let v = cli.fails(&["generate", "managed", RESELLER, "14158000000", "2"]);
    assert_eq!(v["errors"]["+14158000000"]["reason"], "number_exists");
    let e = cli.fails(&["generate", "inum", RESELLER, "14158000000", "2"]);
    assert_eq!(e["error"], "invalid");

    // import: good rows written (with the owner's copy), bad rows reported per line.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("inventory.csv");
    std::fs::write(
        &csv,
        format!(
            "number,state,account_id,city\n+16505550001,available,,Palo Alto\n\
             6505550002,in_service,{RESELLER},\nnot a number,available,,\n"
        ),
    )
    .unwrap();
    let v = cli.fails(&["import", csv.to_str().unwrap()]);
    let success = v["success"].as_object().unwrap();
    assert!(success.contains_key("+16505550001") && success.contains_key("+16505550002"), "{v}");
    assert_eq!(v["errors"].as_object().unwrap().len(), 1, "{v}");
    let stored = get("numbers/+1650", "+16505550001").unwrap();
    assert_eq!(stored["pvt_module_name"], "knm_inventory");
    assert!(get("account/ac/co/unt0000000000000000000000002", "+16505550002").is_some());

    // search: an available knm_local number under the prefix is offered.
    cli.ok(&["create", "+15550001234", "--account-id", MASTER, "--state", "available"]);
    let v = cli.ok(&["search", "555", "--quantity", "50", "--account-id", MASTER]);
    let found: Vec<&str> =
        v.as_array().unwrap().iter().filter_map(|r| r["number"].as_str()).collect();
    assert!(found.contains(&"+15550001234"), "{v}");

    // Search then buy from a pool: the account's generated knm_managed numbers are found by its
    // search (kept as `discovery` records), and `activate` or `create` of one buys it.
    let sys = DbName::new("system_config").unwrap();
    let original = get("system_config", "number_manager")
        .unwrap_or_else(|| json!({"_id": "number_manager", "default": {}}));
    let mut manager = original.clone();
    manager["default"]["carrier_modules"] = json!(["knm_managed"]);
    rt.block_on(store.put(&sys, manager)).unwrap();
    cli.ok(&["generate", "managed", CHILD, "14152220001", "3"]);
    let v = cli.ok(&["search", "415222", "--quantity", "2", "--account-id", CHILD]);
    assert_eq!(
        v,
        json!([{"number": "+14152220001", "state": "discovery"},
                         {"number": "+14152220002", "state": "discovery"}])
    );
    let v = cli.ok(&["search", "415222", "--offset", "2", "--account-id", CHILD]);
    assert_eq!(v, json!([{"number": "+14152220003", "state": "discovery"}]), "offset");
    let record = get("numbers/+1415", "+14152220001").expect("the discovery record");
    assert_eq!(record["pvt_state"], "discovery", "{record}");
    let v = cli.ok(&["activate", "+14152220001", "--account-id", CHILD]);
    assert_eq!(v["_read_only"]["state"], "in_service", "{v}");
    let v = cli.ok(&["create", "+14152220002", "--account-id", CHILD]);
    assert_eq!(v["_read_only"]["state"], "in_service", "{v}");
    for number in ["+14152220001", "+14152220002"] {
        let doc = get("numbers/+1415", number).unwrap();
        assert_eq!(doc["pvt_module_name"], "knm_managed", "{doc}");
        assert_eq!(doc["pvt_assigned_to"], CHILD, "{doc}");
        let pooled = get("numbers/managed", number).unwrap();
        assert_eq!(pooled["pvt_state"], "in_service", "the pool number is taken: {pooled}");
        let v = cli.ok(&["identify", number]);
        assert_eq!(v["account_id"], CHILD, "{v}");
    }
    // A number nobody found is not bought by activate.
    let e = cli.fails(&["activate", "+14152229999", "--account-id", CHILD]);
    assert_eq!(e["error"], "not_found", "{e}");
    // The fixture's number_manager again, for whoever reads the server next.
    let mut restored = original;
    restored["_rev"] = get("system_config", "number_manager").unwrap()["_rev"].clone();
    rt.block_on(store.put(&sys, restored)).unwrap();
}
