//! A table rebuilt from the previous one after each edit (`stepswitch::rebuild`, which compiles
//! only the changed documents when it can) answers and reports exactly as a full compile of the
//! same documents, after any sequence of edits: documents added, changed (their gateways,
//! weight, flags only, their rules only, or wholesale), disabled, enabled and deleted, with
//! invalid rules and hostile rules that lookups quarantine along the way, in the global scope
//! and in an account's (whose resources get the account's proxies). Every one-document edit is
//! built incrementally unless a lookup quarantined a rule of the previous table.
//!
//! Case counts come from `testkit::fuzz_config` (`SWITCHBOARD_FUZZ_CASES` for a long run).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use stepswitch::{
    compile_parsed, rebuild, route, Config, ParsedResource, Proxy, RouteRequest, RouteTable, Scope,
    Tables,
};
use testkit::fuzz_config;

/// Rules: shared carrier shapes, one invalid, one the backtracking engine runs out of its budget
/// on for a long number (it gets quarantined), one with lookahead.
const RULES: &[&str] = &[
    "^\\+1(\\d{10})$",
    "^\\+1(415\\d{7})$",
    "^\\+44(\\d+)$",
    "^(+",
    "^\\+(?=\\d)((\\d+)+)+\\2x$",
    "^\\+1(?!900)(\\d{10})$",
    "^\\+?1?(800\\d{7})$",
];

/// Numbers every table is asked for: NANP, toll-free, UK, a long one (quarantines the
/// catastrophic rule), and one nothing routes.
const NUMBERS: &[&str] =
    &["+14155550100", "+18005550100", "+442071234567", "+1111111111111111111111111111111", "911"];

const IDS: &[&str] = &["a", "b", "c", "d", "e", "f"];

fn doc(
    id: &str,
    rules: &[usize],
    servers: &[usize],
    weight: u8,
    enabled: bool,
    fax: bool,
    classified: bool,
) -> Value {
    let rules: Vec<&str> = rules.iter().map(|it| RULES[*it]).collect();
    let gateways: Vec<Value> =
        servers.iter().map(|it| json!({"server": format!("gw{it}.example.net")})).collect();
    let mut doc = json!({
        "_id": id, "pvt_type": "resource", "name": format!("carrier {id}"), "enabled": enabled,
        "weight_cost": weight, "rules": rules, "gateways": gateways,
        "flags": if fax { vec!["fax"] } else { vec![] },
    });
    if classified {
        doc["classifiers"] = json!({"tollfree_us": {"weight_cost": 2}, "did_us": {}});
    }
    doc
}

#[derive(Debug, Clone)]
enum Edit {
    /// Adds the document, or replaces it wholesale.
    Put(usize, Value),
    /// Changes only the gateways, weight and flags of a document that exists (an edit the
    /// rebuild applies to its slots alone).
    Touch(usize, Vec<usize>, u8, bool),
    /// Changes only the rules of a document that exists.
    Rules(usize, Vec<usize>),
    Disable(usize),
    Enable(usize),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let put = (
        0..IDS.len(),
        prop::collection::vec(0..RULES.len(), 0..4),
        prop::collection::vec(0usize..5, 0..3),
        1u8..4,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(id, rules, servers, weight, enabled, fax, classified)| {
            Edit::Put(id, doc(IDS[id], &rules, &servers, weight, enabled, fax, classified))
        });
    prop_oneof![
        3 => put,
        4 => (0..IDS.len(), prop::collection::vec(0usize..5, 0..3), 1u8..4, any::<bool>())
            .prop_map(|(id, servers, weight, fax)| Edit::Touch(id, servers, weight, fax)),
        2 => (0..IDS.len(), prop::collection::vec(0..RULES.len(), 0..4))
            .prop_map(|(id, rules)| Edit::Rules(id, rules)),
        1 => (0..IDS.len()).prop_map(Edit::Disable),
        1 => (0..IDS.len()).prop_map(Edit::Enable),
        1 => (0..IDS.len()).prop_map(Edit::Delete),
    ]
}

/// The documents as a reactor keeps them: one parse per document, shared until it changes.
struct Docs {
    json: BTreeMap<String, Value>,
    parsed: BTreeMap<String, Arc<ParsedResource>>,
}

impl Docs {
    fn apply(&mut self, edit: &Edit) {
        let (id, next) = match edit {
            Edit::Put(id, doc) => (IDS[*id], Some(doc.clone())),
            Edit::Touch(id, servers, weight, fax) => {
                let Some(mut doc) = self.json.get(IDS[*id]).cloned() else { return };
                doc["gateways"] = servers
                    .iter()
                    .map(|it| json!({"server": format!("gw{it}.example.net")}))
                    .collect();
                doc["weight_cost"] = json!(weight);
                doc["flags"] = json!(if *fax { vec!["fax"] } else { vec![] });
                (IDS[*id], Some(doc))
            }
            Edit::Rules(id, rules) => {
                let Some(mut doc) = self.json.get(IDS[*id]).cloned() else { return };
                doc["rules"] = rules.iter().map(|it| json!(RULES[*it])).collect();
                (IDS[*id], Some(doc))
            }
            Edit::Disable(id) | Edit::Enable(id) => {
                let Some(mut doc) = self.json.get(IDS[*id]).cloned() else { return };
                doc["enabled"] = json!(matches!(edit, Edit::Enable(_)));
                (IDS[*id], Some(doc))
            }
            Edit::Delete(id) => (IDS[*id], None),
        };
        match next {
            Some(doc) => {
                self.parsed.insert(id.to_owned(), Arc::new(ParsedResource::parse(&doc)));
                self.json.insert(id.to_owned(), doc);
            }
            None => {
                self.parsed.remove(id);
                self.json.remove(id);
            }
        }
    }

    fn list(&self) -> Arc<Vec<Arc<ParsedResource>>> {
        Arc::new(self.parsed.values().cloned().collect())
    }
}

fn tables(config: &Arc<Config>, table: RouteTable) -> Tables {
    let mut tables = Tables::new(Arc::clone(config));
    tables.set_table(Arc::new(table));
    tables
}

/// The account of the local scope the property also runs in.
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// The scopes the property runs in: global, and an account with two proxies.
fn scopes() -> Vec<(Scope, Vec<Proxy>)> {
    let proxy = |ip: &str| Proxy { zone: "z".into(), ip: ip.into() };
    vec![
        (Scope::Global, Vec::new()),
        (Scope::Local { account_id: ACCOUNT.into() }, vec![proxy("10.0.0.1"), proxy("10.0.0.2")]),
    ]
}

/// Every answer of `tables` for the numbers, without and with request flags (in `scope`'s
/// table: a local one is hunted by its own account).
fn answers(tables: &Tables, scope: &Scope) -> Vec<String> {
    let mut out = Vec::new();
    for number in NUMBERS {
        for flags in [vec![], vec!["fax".to_owned()]] {
            let mut request = RouteRequest::new(*number);
            if !scope.is_global() {
                request.account_id = Some(ACCOUNT.into());
                request.hunt_account_id = Some(ACCOUNT.into());
            }
            request.flags = flags;
            out.push(serde_json::to_string(&route(tables, &request)).expect("serialises"));
        }
    }
    out
}

proptest! {
    #![proptest_config(fuzz_config(64))]

    #[test]
    fn answers_after_any_edits_are_those_of_a_full_compile(
        edits in prop::collection::vec(edit(), 1..24),
    ) {
        let config = Arc::new(Config::kazoo_defaults());
        for (scope, proxies) in scopes() {
        let mut docs = Docs { json: BTreeMap::new(), parsed: BTreeMap::new() };
        let mut current: Option<Arc<RouteTable>> = None;
        for edit in &edits {
            docs.apply(edit);
            let list = docs.list();
            let built = rebuild(current.as_deref(), scope.clone(), &list, &proxies, &config);
            // One document changed at most: the previous table is updated, not compiled again,
            // unless a lookup quarantined one of its rules (that rule then gets a fresh try).
            if let Some(previous) = &current {
                prop_assert_eq!(
                    built.incremental,
                    previous.quarantined().is_empty(),
                    "after {:?} in {:?}", edit, scope
                );
            }
            let (full, full_diagnostics) =
                compile_parsed(scope.clone(), list.iter().map(|it| &**it), &proxies, &config);
            prop_assert_eq!(&built.diagnostics, &full_diagnostics, "after {:?}", edit);
            prop_assert_eq!(
                format!("{:?}", built.table.resources()),
                format!("{:?}", full.resources()),
                "after {:?}", edit
            );
            prop_assert_eq!(built.table.len(), full.len());
            // A number whose lookup may run the backtracking engine in a full compile is one
            // the rebuilt table sends off the async workers too (appended rules included).
            for number in NUMBERS {
                if full.may_backtrack_on(number) {
                    prop_assert!(built.table.may_backtrack_on(number), "{} after {:?}", number, edit);
                }
            }
            // The lookups may quarantine a rule in the rebuilt table: the next rebuild must
            // then give it the fresh try a full compile gives it.
            let rebuilt = tables(&config, built.table);
            let expected = answers(&tables(&config, full), &scope);
            prop_assert_eq!(answers(&rebuilt, &scope), expected, "after {:?}", edit);
            current = rebuilt.table(&scope).cloned();
        }
        }
    }
}

/// An edit of a document's gateways is applied to its slots alone, and so is an added document
/// (appended slots); a new config compiles the whole table.
#[test]
fn a_gateway_edit_and_an_added_document_are_incremental_and_a_new_config_is_not() {
    let config = Arc::new(Config::kazoo_defaults());
    let mut docs = Docs { json: BTreeMap::new(), parsed: BTreeMap::new() };
    docs.apply(&Edit::Put(0, doc("a", &[0, 1], &[0], 3, true, false, false)));
    docs.apply(&Edit::Put(2, doc("c", &[0], &[1], 2, true, false, false)));
    let first = rebuild(None, Scope::Global, &docs.list(), &[], &config);
    assert!(!first.incremental);
    docs.apply(&Edit::Touch(2, vec![2, 3], 1, true));
    let touched = rebuild(Some(&first.table), Scope::Global, &docs.list(), &[], &config);
    assert!(touched.incremental);
    let dial = |table: &RouteTable| -> Vec<String> {
        let answer = route(&tables(&config, table.clone()), &RouteRequest::new("+14155550100"));
        answer.endpoints.iter().map(|ep| ep.dial_string()).collect()
    };
    assert_eq!(
        dial(&touched.table),
        [
            "sip:4155550100@gw2.example.net",
            "sip:4155550100@gw3.example.net",
            "sip:4155550100@gw0.example.net"
        ]
    );
    // `b` sorts between `a` and `c` and ties with `c` on weight: it answers before `c`, as in
    // a full compile's view order (its slot comes after `c`'s).
    docs.apply(&Edit::Put(1, doc("b", &[0], &[4], 1, true, false, false)));
    let added = rebuild(Some(&touched.table), Scope::Global, &docs.list(), &[], &config);
    assert!(added.incremental);
    let ids: Vec<&str> = added.table.resources().iter().map(|it| it.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(
        dial(&added.table),
        [
            "sip:4155550100@gw4.example.net",
            "sip:4155550100@gw2.example.net",
            "sip:4155550100@gw3.example.net",
            "sip:4155550100@gw0.example.net"
        ]
    );
    let other = Arc::new(Config::kazoo_defaults());
    let reconfigured = rebuild(Some(&added.table), Scope::Global, &docs.list(), &[], &other);
    assert!(!reconfigured.incremental);
    assert_eq!(reconfigured.table.len(), 3);
}

/// Documents added one at a time are appended until the appended slots and tombstones pass the
/// compaction threshold; that rebuild is a full compile, and the next ones are incremental again.
/// The table answers as a full compile throughout.
#[test]
fn many_added_documents_are_compacted_by_a_full_compile() {
    let config = Arc::new(Config::kazoo_defaults());
    let mut docs = Docs { json: BTreeMap::new(), parsed: BTreeMap::new() };
    let mut current = rebuild(None, Scope::Global, &docs.list(), &[], &config).table;
    let mut full_compiles = Vec::new();
    for n in 0..1_200usize {
        // Ids spread over the key space, so that documents land between earlier ones.
        let id = format!("{:08x}", (n as u32).wrapping_mul(2_654_435_761));
        let added = doc(&id, &[n % 3], &[n % 5], (n % 4) as u8 + 1, true, n % 2 == 0, false);
        docs.parsed.insert(id.clone(), Arc::new(ParsedResource::parse(&added)));
        docs.json.insert(id, added);
        let built = rebuild(Some(&current), Scope::Global, &docs.list(), &[], &config);
        if !built.incremental {
            full_compiles.push(n);
        }
        current = built.table;
        if n % 150 == 0 || n == 1_199 {
            let list = docs.list();
            let (full, _) =
                compile_parsed(Scope::Global, list.iter().map(|it| &**it), &[], &config);
            assert_eq!(format!("{:?}", current.resources()), format!("{:?}", full.resources()));
            let expected = answers(&tables(&config, full), &Scope::Global);
            assert_eq!(answers(&tables(&config, current.clone()), &Scope::Global), expected);
        }
    }
    assert_eq!(full_compiles.len(), 1, "one compaction: {full_compiles:?}");
}
