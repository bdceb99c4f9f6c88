//! Kazoo's number vectors group A (DB naming as the store shows it), group B–group J, group L and group M end-to-end:
//! every case through [`NumberStore`] over Kazoo's fixturedb (number databases, accounts,
//! `system_config`, `port_requests`, and the account databases with their number copies and
//! account configs), on the embedded store and on the CouchDB-compatible server.
//!
//! One fixture load per group; before each case the numbers it touches are put back as the
//! fixturedb has them ([`reset_number`]). Each case names its vector and checks what the vector
//! asserts, then reads the stored documents back (`knm_numbers:save_numbers/1`): the number database holds
//! exactly the returned document, the owner's account copy is the same JSON with its own `_rev`,
//! no other account keeps a copy, an unchanged or refused operation leaves the same `_rev`, a
//! hard delete removes the documents. The pure-core counterparts are in `src/lifecycle_tests.rs`
//! and `src/doc.rs`; the coverage table is `docs/numbers-vectors-coverage.md`.

mod common;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::lifecycle::{Create, Move, Update};
use numbers::store::{NumberStore, RunOptions};
use numbers::{AuthBy, Decision, Error, NumberState, Operation, PublicFields};
use serde_json::{json, Map, Value};

// The starting documents of vectors Kazoo's number manager (`knm`) (master fixturedb).
const AVAIL: &str = "+15551239876";
const INSVC: &str = "+15551233322";
const MDN: &str = "+15551233324";
const BADCARRIER: &str = "+15551233337";
const HIST: &str = "+15551255693";
const RESV: &str = "+14252151010";
const TOLL: &str = "+18005551212";
const TELNYX: &str = "+14352154006";
const VITELITY: &str = "+18122154006";
const PORTIN: &str = "+14252151007";
const PORTIN2: &str = "+14252151008";
const PORTIN3: &str = "+14252151009";
const BW: &str = "+14122065197";
const NONLOCAL: &str = "+19162154006";
const NEW: &str = "+15559871234";
const NEWPORT: &str = "+19042471591";
const NOTNUM: &str = "NOT a number";
const STARTING: [&str; 14] = [
    AVAIL, INSVC, MDN, BADCARRIER, HIST, RESV, TOLL, TELNYX, VITELITY, PORTIN, PORTIN2, PORTIN3,
    BW, NONLOCAL,
];

fn n(s: &str) -> E164 {
    E164::new(s).unwrap()
}

fn sys() -> RunOptions {
    RunOptions::default()
}

fn by(a: &str) -> RunOptions {
    RunOptions::by(AuthBy::parse(a).unwrap())
}

fn mdn_run(mut o: RunOptions) -> RunOptions {
    o.mdn_run = true;
    o
}

fn create(to: &str) -> Create {
    Create { assign_to: Some(acc(to)), ..Create::default() }
}

fn mv(to: &str) -> Operation {
    Operation::Move(Move { assign_to: Some(acc(to)), ..Move::default() })
}

fn reserve(to: Option<&str>) -> Operation {
    Operation::Reserve { assign_to: to.map(acc) }
}

fn app(u: Option<&str>) -> Operation {
    Operation::AssignToApp { used_by: u.map(str::to_owned) }
}

fn reconcile(to: Option<&str>, module: Option<&str>) -> Operation {
    Operation::Reconcile {
        assign_to: to.map(acc),
        module_name: module.map(str::to_owned),
        public_fields: None,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn history(d: &Decision) -> Vec<&str> {
    d.doc.reserve_history.iter().map(|a| a.as_str()).collect()
}

fn owner(d: &Decision) -> Option<&str> {
    d.doc.assigned_to.as_ref().map(|a| a.as_str())
}

#[track_caller]
fn ok(case: &str, got: Result<Decision, Error>) -> Decision {
    got.unwrap_or_else(|e| panic!("{case}: unexpected error {}", e.to_json()))
}

#[track_caller]
fn err(case: &str, got: Result<Decision, Error>, code: u16, error: &str, cause: Option<&str>) {
    let e = match got {
        Ok(d) => panic!("{case}: expected {error}, got state {}", d.doc.state),
        Err(e) => e,
    };
    let j = e.to_json();
    assert_eq!(j["code"], code, "{case}: {j}");
    assert_eq!(j["error"], error, "{case}: {j}");
    assert_eq!(j.get("cause").and_then(Value::as_str), cause, "{case}: {j}");
}

/// The store under test plus the raw document store, to read what was written.
struct V {
    store: SharedStore,
    ns: NumberStore,
}

impl V {
    async fn new(store: SharedStore) -> V {
        let ns = kazoo_store(store.clone()).await;
        V { store, ns }
    }

    async fn reset(&self, numbers: &[&str]) {
        for number in numbers {
            reset_number(&self.store, number).await;
        }
    }

    async fn run(
        &self,
        number: &str,
        op: &Operation,
        opts: &RunOptions,
    ) -> Result<Decision, Error> {
        self.ns.apply(&n(number), op, opts).await
    }

    /// The stored number document.
    async fn stored(&self, number: &str) -> Option<Value> {
        raw(&self.store, &numbers::number_db(number).unwrap(), number).await
    }

    async fn rev(&self, number: &str) -> Option<Value> {
        self.stored(number).await.map(|d| d["_rev"].clone())
    }

    async fn copy(&self, account: &str, number: &str) -> Option<Value> {
        raw(&self.store, &acc(account).db_name().to_string(), number).await
    }

    /// `knm_numbers:save_numbers/1`/`knm_phone_number:save/1`'s account-db copy: the number database holds exactly `d.doc`; the owner's account copy (when its
    /// database exists) is the same JSON with its own `_rev`; no other account keeps a copy.
    async fn persisted(&self, case: &str, d: &Decision) {
        let number = d.doc.id.as_str();
        let stored = self.stored(number).await.unwrap_or_else(|| panic!("{case}: not saved"));
        assert_eq!(stored, d.doc.to_json(), "{case}: number database");
        assert!(d.doc.rev.as_deref().is_some_and(|r| !r.is_empty()), "{case}: new _rev");
        for account in FIXTURE_ACCOUNTS.iter().copied().chain([UNRELATED]) {
            let copy = self.copy(account, number).await;
            let adb = db(&acc(account).db_name().to_string());
            if owner(d) == Some(account) && self.store.db_exists(&adb).await.unwrap() {
                let copy = copy.unwrap_or_else(|| panic!("{case}: no copy in {account}"));
                let want = d.doc.to_account_copy_json(copy["_rev"].as_str());
                assert_eq!(copy, want, "{case}: account copy in {account}");
            } else {
                assert!(copy.is_none(), "{case}: stale copy in {account}");
            }
        }
    }

    /// A refused or unchanged operation wrote nothing: same `_rev` as before.
    async fn unchanged(&self, case: &str, number: &str, before: &Option<Value>) {
        assert_eq!(&self.rev(number).await, before, "{case}: _rev changed");
    }

    /// `knm_numbers:delete/2` / `knm_numbers:release/2` step 8: the number document and every account copy are gone.
    async fn gone(&self, case: &str, number: &str) {
        assert!(self.stored(number).await.is_none(), "{case}: number doc still stored");
        for account in FIXTURE_ACCOUNTS {
            assert!(self.copy(account, number).await.is_none(), "{case}: copy left in {account}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// group A normalization and DB names, as the store writes them

/// Vectors A1, A3, A4, A5 (`knm_converters:normalize/1`, `knm_converters:is_reconcilable/1` and `knm_phone_number:save/1` (doc id = the E.164 number)): every input form of a number
/// becomes one document, `_id` = the normalized number, in `numbers/<first 5 bytes>` with
/// `pvt_db_name` URL-encoded; converters apply in key order; a number without a database name is
/// refused before any write.
async fn a_naming(store: SharedStore) {
    let v = V::new(store).await;
    let cases: [(&[&str], &str, &str); 6] = [
        // A1: the three forms collapse to one number.
        (&["+12234567890", "12234567890", "2234567890"], "+12234567890", "numbers%2F%2B1223"),
        // A3: 11 digits 1NPAN → "+" ++ s; 10 digits → "+1" ++ s.
        (&["14158867900"], "+14158867900", "numbers%2F%2B1415"),
        (&["3125550100"], "+13125550100", "numbers%2F%2B1312"),
        // A3 caveat: 4th digit 0 is not NANP, converter 3 applies.
        (&["2010000000"], "+2010000000", "numbers%2F%2B2010"),
        // A5: converter 2 (011 / 00 stripped), then converter 3 for other 8+ digit strings.
        (&["011441632960001", "00441632960001"], "+441632960001", "numbers%2F%2B4416"),
        (&["33123456789"], "+33123456789", "numbers%2F%2B3312"),
    ];
    for (inputs, want, encoded) in cases {
        v.reset(&[want]).await;
        assert_eq!(v.ns.normalize(inputs[0]).unwrap().as_str(), want, "A1/A3/A5");
        let out = v.ns.apply_many(inputs, &Operation::Create(create(RESELLER)), &by(MASTER)).await;
        assert!(out.ko.is_empty(), "{want}: {}", out.to_json());
        assert_eq!(out.ok.keys().collect::<Vec<_>>(), [want], "A1: one document per number");
        let d = &out.ok[want];
        v.persisted(want, d).await;
        let stored = v.stored(want).await.unwrap();
        assert_eq!(
            stored["_id"], want,
            "`knm_phone_number:save/1` (doc id = the E.164 number) _id"
        );
        assert_eq!(stored["pvt_db_name"], encoded, "A4");
        let dbn = format!("numbers/{}", &want[..5]);
        assert!(
            raw(&v.store, &dbn, "_design/numbers").await.is_some(),
            "`knm_phone_number:save/1` (doc id = the E.164 number) views deployed"
        );
        v.reset(&[want]).await;
    }
    // A4: `1234` has no number database ("undefined"): refused, nothing written.
    let e = v.ns.normalize("1234").unwrap_err();
    assert_eq!(e.to_json()["error"], "not_reconcilable");
    let out = v.ns.apply_many(&["1234"], &Operation::Create(create(RESELLER)), &by(MASTER)).await;
    assert!(out.ok.is_empty());
    assert_eq!(out.to_json()["error"]["1234"], "not_reconcilable", "A4 undefined");
}
both_backends!(a_db_naming, super::a_naming);

// ---------------------------------------------------------------------------------------------
// group B get

/// Vectors B1–B8 (`knm_numbers:get/2`, `knm_phone_number:handle_fetch/2`, `knm_converters:is_reconcilable/1`, `knm_numbers`' bulk result shape bulk form, `knm_phone_number`'s dirty tracking: a read never writes).
async fn b_get(store: SharedStore) {
    let v = V::new(store).await;
    // B1
    let before = v.rev(AVAIL).await;
    let out = v.ns.apply_many(&[AVAIL], &Operation::Get, &sys()).await;
    assert!(out.ko.is_empty(), "B1: ko {{}}");
    let d = &out.ok[AVAIL];
    assert!(!d.dirty && d.is_noop(), "B1: not dirty");
    assert_eq!((d.doc.state, d.doc.module_name.as_str()), (NumberState::Available, "knm_local"));
    assert_eq!(d.doc.rev.as_ref().map(|r| Value::from(r.as_str())), before, "B1: stored _rev");
    v.unchanged("B1", AVAIL, &before).await;
    // B2: available numbers are readable by anyone.
    for a in [RESELLER, MASTER, "0123456789abcdef0123456789abcdef"] {
        let d = ok("B2", v.run(AVAIL, &Operation::Get, &by(a)).await);
        assert_eq!(d.doc.state, NumberState::Available, "B2 {a}");
    }
    v.unchanged("B2", AVAIL, &before).await;
    // B3
    let out = v.ns.apply_many(&[NOTNUM], &Operation::Get, &sys()).await;
    assert!(out.ok.is_empty());
    assert_eq!(out.to_json(), json!({"error": {NOTNUM: "not_reconcilable"}}), "B3");
    // B4
    v.reset(&[NEW]).await;
    let out = v.ns.apply_many(&[NEW], &Operation::Get, &sys()).await;
    assert_eq!(out.to_json(), json!({"error": {NEW: "not_found"}}), "B4");
    // B5: duplicates collapse.
    let out = v.ns.apply_many(&[AVAIL, NOTNUM, AVAIL, NOTNUM, NEW], &Operation::Get, &sys()).await;
    assert_eq!(out.ok.len(), 1, "B5");
    let j = out.to_json();
    assert_eq!(j["error"], json!({NOTNUM: "not_reconcilable", NEW: "not_found"}), "B5");
    assert_eq!(j["success"][AVAIL]["state"], "available");
    // B6
    assert_eq!(v.ns.normalize("1000").unwrap_err().to_json()["error"], "not_reconcilable", "B6");
    let out = v.ns.apply_many(&["1000"], &Operation::Get, &sys()).await;
    assert_eq!(out.to_json(), json!({"error": {"1000": "not_reconcilable"}}), "B6");
    // B7
    let number = v.ns.normalize("4156301234").unwrap();
    v.reset(&[number.as_str()]).await;
    let e = v.ns.apply(&number, &Operation::Get, &sys()).await.unwrap_err();
    assert_eq!((e.code(), e.to_json()["error"].clone()), (404, json!("not_found")), "B7");
    // B8: every starting document reads clean, with the fields to_json must carry.
    for number in STARTING {
        let before = v.rev(number).await;
        let d = ok("B8", v.run(number, &Operation::Get, &sys()).await);
        assert!(!d.dirty, "B8: {number} dirty on load");
        let j = d.doc.to_json();
        assert_eq!(j["_id"], number);
        assert!(j["pvt_db_name"].is_string(), "B8 {number}");
        assert!(j["pvt_state"].as_str().unwrap().parse::<NumberState>().is_ok());
        assert!(j["pvt_ported_in"].is_boolean(), "B8 {number}");
        assert!(j["pvt_modified"].is_i64() && j["pvt_created"].is_i64(), "B8 {number}");
        assert_eq!(j["pvt_type"], "number");
        assert_eq!(Some(j["_rev"].clone()), before, "B8 {number}: the stored _rev");
        assert!(!j["_rev"].as_str().unwrap().is_empty());
        let known = numbers::CarrierKind::from_module(&d.doc.module_name).is_some();
        assert!(known || d.doc.module_name == "knm_pacwest", "B8 {number}");
        v.unchanged("B8", number, &before).await;
    }
}
both_backends!(b_get_vectors, super::b_get);

// ---------------------------------------------------------------------------------------------
// group C create

/// Vectors C1–C18 except C12 (`knm_numbers:create/2`, `knm_numbers:save_numbers/1`, `knm_number_options:dry_run`, `knm_number_options:mdn_run`). C12 (no `auth_by` at all) cannot be
/// expressed through the store: [`RunOptions::auth_by`] is not optional. C19–C21 are features
/// (carrier_name), tested with the feature providers.
async fn c_create(store: SharedStore) {
    let v = V::new(store).await;
    let create_op = |c: Create| Operation::Create(c);
    // C1
    v.reset(&[NEW]).await;
    let d = ok("C1", v.run(NEW, &create_op(create(RESELLER)), &by(MASTER)).await);
    assert!(d.dirty, "C1 dirty");
    assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(RESELLER)), "C1");
    assert!(history(&d).is_empty(), "C1 history");
    assert_eq!(d.doc.module_name, "knm_local", "C1");
    assert_eq!(d.doc.features_list(), ["local"], "C1");
    assert_eq!(d.doc.to_json()["pvt_db_name"], "numbers%2F%2B1555", "C1");
    assert!(d.to_public_json()["_read_only"]["created"].is_i64(), "C1 created");
    v.persisted("C1", &d).await;
    // C2
    v.reset(&[NEW]).await;
    let c = Create { module_name: Some("blipblop".into()), ..create(RESELLER) };
    let d = ok("C2", v.run(NEW, &create_op(c), &by(MASTER)).await);
    assert_eq!(d.doc.module_name, "blipblop", "C2");
    assert!(d.doc.features_list().is_empty(), "C2: no local feature");
    assert_eq!(d.doc.state, NumberState::InService);
    v.persisted("C2", &d).await;
    // C3
    v.reset(&[NEW]).await;
    let d = ok("C3", v.run(NEW, &create_op(create(RESELLER)), &by(RESELLER)).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(RESELLER)), "C3");
    v.persisted("C3", &d).await;
    // C4 / C13: CHILD has no pvt_wnm_allow_additions (RESELLER has them in the fixture).
    v.reset(&[NEW]).await;
    err(
        "C4",
        v.run(NEW, &create_op(create(CHILD)), &by(CHILD)).await,
        403,
        "forbidden",
        Some("state_for_create"),
    );
    let c = Create { state: Some(NumberState::Reserved), ..create(CHILD) };
    err(
        "C13",
        v.run(NEW, &create_op(c), &by(CHILD)).await,
        403,
        "forbidden",
        Some("state_for_create"),
    );
    assert!(v.stored(NEW).await.is_none(), "C4/C13: nothing written");
    assert!(v.copy(CHILD, NEW).await.is_none());
    // C5
    let c = Create { state: Some(NumberState::Available), ..create(MASTER) };
    let d = ok("C5", v.run(NEW, &create_op(c), &by(MASTER)).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::Available, None), "C5");
    assert!(history(&d).is_empty() && d.doc.module_name == "knm_local", "C5");
    v.persisted("C5", &d).await;
    // C6: an existing available number is bought.
    v.reset(&[AVAIL]).await;
    let d = ok("C6", v.run(AVAIL, &create_op(create(RESELLER)), &by(MASTER)).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(RESELLER)), "C6");
    assert!(history(&d).is_empty() && d.doc.module_name == "knm_local", "C6");
    v.persisted("C6", &d).await;
    // C7: port_in needs no additions.
    v.reset(&[NEW]).await;
    let c = Create {
        state: Some(NumberState::PortIn),
        module_name: Some("knm_local".into()),
        ..create(CHILD)
    };
    let d = ok("C7", v.run(NEW, &create_op(c), &by(CHILD)).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::PortIn, Some(CHILD)), "C7");
    assert!(history(&d).is_empty() && d.doc.module_name == "knm_local" && !d.doc.ported_in);
    assert!(!numbers::carriers::is_number_billable(&d.doc), "C7 not billable");
    v.persisted("C7", &d).await;
    // C8
    let before = v.rev(INSVC).await;
    err(
        "C8",
        v.run(INSVC, &create_op(create(RESELLER)), &sys()).await,
        409,
        "number_exists",
        Some(INSVC),
    );
    v.unchanged("C8", INSVC, &before).await;
    // C9: a dry run writes nothing.
    v.reset(&[NEW]).await;
    let opts = RunOptions { dry_run: true, ..by(MASTER) };
    let d = ok("C9", v.run(NEW, &create_op(create(RESELLER)), &opts).await);
    assert!(d.dry_run && d.is_noop() && d.doc.state == NumberState::InService, "C9");
    assert!(v.stored(NEW).await.is_none() && v.copy(RESELLER, NEW).await.is_none(), "C9");
    // C10: an MDN number keeps its public `mobile` verbatim.
    let mobile = json!({"provider": "tower-of-hanoi", "authorizing": "abc", "device-id": "x"});
    let c = Create {
        module_name: Some("knm_mdn".into()),
        public_fields: Some(obj(json!({"mobile": mobile}))),
        ..create(RESELLER)
    };
    let d = ok("C10", v.run(NEW, &create_op(c), &mdn_run(by(MASTER))).await);
    assert_eq!((d.doc.state, d.doc.module_name.as_str()), (NumberState::InService, "knm_mdn"));
    assert_eq!(d.doc.public["mobile"], mobile, "C10");
    v.persisted("C10", &d).await;
    assert_eq!(v.stored(NEW).await.unwrap()["mobile"], mobile, "C10 stored");
    // C11: AVAIL stored in each state, then created.
    for state in NumberState::ALL {
        let mut doc = fixture_number_doc(AVAIL).unwrap();
        doc["pvt_state"] = json!(state.as_str());
        v.reset(&[AVAIL]).await;
        overwrite(&v.store, "numbers/+1555", doc).await;
        let before = v.rev(AVAIL).await;
        let got = v.run(AVAIL, &create_op(create(RESELLER)), &by(MASTER)).await;
        match state {
            // Discovery: a search's record is created the way it is bought (a deviation from
            // Kazoo's `number_exists`, docs/kazoo-compat.md).
            NumberState::Available
            | NumberState::PortIn
            | NumberState::Aging
            | NumberState::Discovery => {
                let d = ok("C11", got);
                assert_eq!(d.doc.state, NumberState::InService, "C11 {state}");
                v.persisted("C11", &d).await;
            }
            _ => {
                err("C11", got, 409, "number_exists", Some(AVAIL));
                v.unchanged("C11", AVAIL, &before).await;
            }
        }
    }
    v.reset(&[AVAIL]).await;
    // C14: a number in an open port request (fixture port_requests).
    v.reset(&[NEWPORT]).await;
    let porting = v.ns.is_porting(&n(NEWPORT)).await.unwrap();
    assert!(porting, "C14: the fixture port request holds it");
    let c = Create { number_is_porting: porting, ..create(RESELLER) };
    err(
        "C14",
        v.run(NEWPORT, &create_op(c.clone()), &by(RESELLER)).await,
        400,
        "number_is_porting",
        Some(NEWPORT),
    );
    assert!(v.stored(NEWPORT).await.is_none(), "C14: nothing written");
    let d = ok(
        "C14 ported_in",
        v.run(NEWPORT, &create_op(Create { ported_in: true, ..c }), &by(RESELLER)).await,
    );
    v.persisted("C14 ported_in", &d).await;
    v.reset(&[NEWPORT]).await;
    // C15: bulk create.
    v.reset(&[TELNYX, NEW]).await;
    let out =
        v.ns.apply_many(&[TELNYX, NOTNUM, NEW], &create_op(create(RESELLER)), &by(MASTER)).await;
    assert_eq!(out.ko.len(), 1, "C15");
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "C15");
    assert_eq!(out.ok.len(), 2, "C15");
    for d in out.ok.values() {
        assert_eq!((d.doc.state, owner(d)), (NumberState::InService, Some(RESELLER)), "C15");
        assert!(d.dirty, "C15");
        v.persisted("C15", d).await;
    }
    v.reset(&[TELNYX]).await;
    // C16: a port_in number completes as ported_in.
    v.reset(&[PORTIN]).await;
    let c = Create { ported_in: true, ..create(RESELLER) };
    let d = ok("C16", v.run(PORTIN, &create_op(c), &by(MASTER)).await);
    assert_eq!(d.doc.state, NumberState::InService, "C16");
    assert_eq!(history(&d), [RESELLER], "C16");
    assert_eq!(d.doc.module_name, "knm_local", "C16: port_in_module_name");
    assert!(d.doc.ported_in && !numbers::carriers::is_number_billable(&d.doc), "C16");
    v.persisted("C16", &d).await;
    // C17
    for auth in [by(MASTER), sys()] {
        v.reset(&[AVAIL]).await;
        let d = ok("C17", v.run(AVAIL, &create_op(create(RESELLER)), &auth).await);
        assert_eq!((d.doc.state, d.doc.ported_in), (NumberState::InService, false), "C17");
        v.persisted("C17", &d).await;
    }
    // C18 (master's number +19042471592): a new ported-in number.
    let ported = "+19042471592";
    v.reset(&[ported]).await;
    let c = Create { ported_in: true, ..create(RESELLER) };
    let d = ok("C18", v.run(ported, &create_op(c), &by(MASTER)).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(RESELLER)), "C18");
    assert!(history(&d).is_empty() && d.doc.ported_in, "C18");
    assert_eq!(d.doc.module_name, "knm_local", "C18: port_in_module_name (system_config)");
    v.persisted("C18", &d).await;
    v.reset(&[ported, NEW, AVAIL, PORTIN]).await;
}
both_backends!(c_create_vectors, super::c_create);

// ---------------------------------------------------------------------------------------------
// group D move

/// Vectors D1–D11 (`knm_numbers:move/3`, `knm_number_states`' transition table, `knm_numbers:save_numbers/1`: the new owner's copy is written, the previous owner's
/// removed).
async fn d_move(store: SharedStore) {
    let v = V::new(store).await;
    // D1
    v.reset(&[AVAIL]).await;
    let d = ok("D1", v.run(AVAIL, &mv(CHILD), &sys()).await);
    assert!(d.dirty && d.doc.state == NumberState::InService && owner(&d) == Some(CHILD), "D1");
    v.persisted("D1", &d).await;
    // D2 / D3: a subaccount (or the system) takes the parent's reservation.
    for (case, auth) in [("D2", by(CHILD)), ("D3", sys())] {
        v.reset(&[RESV]).await;
        let d = ok(case, v.run(RESV, &mv(CHILD), &auth).await);
        assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(CHILD)), "{case}");
        v.persisted(case, &d).await;
    }
    // D4
    v.reset(&[RESV]).await;
    let before = v.rev(RESV).await;
    err("D4", v.run(RESV, &mv(UNRELATED), &by(UNRELATED)).await, 403, "forbidden", None);
    v.unchanged("D4", RESV, &before).await;
    assert!(v.copy(RESELLER, RESV).await.is_some(), "D4: the owner's copy stays");
    // D5: UNRELATED has no account database: its copy is skipped (`knm_numbers:save_numbers/1`).
    let d = ok("D5", v.run(RESV, &mv(UNRELATED), &sys()).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(UNRELATED)), "D5");
    v.persisted("D5", &d).await;
    // D6
    v.reset(&[AVAIL]).await;
    let op = Operation::Move(Move {
        assign_to: Some(acc(RESELLER)),
        public_fields: Some(PublicFields::Replace(obj(json!({"a": "bla", "my_key": 42})))),
        ..Move::default()
    });
    let d = ok("D6", v.run(AVAIL, &op, &sys()).await);
    assert_eq!(
        (d.doc.public["my_key"].clone(), d.doc.public["a"].clone()),
        (json!(42), json!("bla"))
    );
    v.persisted("D6", &d).await;
    let stored = v.stored(AVAIL).await.unwrap();
    assert_eq!((stored["my_key"].clone(), stored["a"].clone()), (json!(42), json!("bla")), "D6");
    // D7 / D8: anyone buys an available number, for anyone; no carrier is contacted.
    for (case, number, module, features) in
        [("D7", AVAIL, "knm_local", &["local"][..]), ("D8", NONLOCAL, "knm_telnyx", &[][..])]
    {
        for to in [CHILD, RESELLER, MASTER] {
            for who in [CHILD, RESELLER, MASTER] {
                v.reset(&[number]).await;
                let d = ok(case, v.run(number, &mv(to), &by(who)).await);
                assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(to)), "{case}");
                assert_eq!(d.doc.prev_assigned_to.as_ref().unwrap().as_str(), RESELLER, "{case}");
                assert!(history(&d).is_empty(), "{case}");
                assert_eq!(d.doc.module_name, module, "{case}");
                assert_eq!(d.doc.features_list(), features, "{case}");
                assert!(d.carrier_call.is_none(), "{case}: no carrier call");
                v.persisted(case, &d).await;
            }
        }
        v.reset(&[number]).await;
    }
    // D9: not in the database (and no search cache): not_found, nothing written.
    v.reset(&[NEW]).await;
    let op = Operation::Move(Move {
        assign_to: Some(acc(RESELLER)),
        module_name: Some("knm_mdn".into()),
        public_fields: Some(PublicFields::Replace(obj(json!({"mobile": {"provider": "p"}})))),
        ..Move::default()
    });
    err("D9", v.run(NEW, &op, &mdn_run(by(MASTER))).await, 404, "not_found", Some(NEW));
    assert!(v.stored(NEW).await.is_none(), "D9");
    // D10
    v.reset(&[AVAIL]).await;
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &mv(CHILD), &sys()).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "D10");
    let d = &out.ok[AVAIL];
    assert_eq!((d.doc.state, owner(d)), (NumberState::InService, Some(CHILD)), "D10");
    v.persisted("D10", d).await;
    // D11: MDN reassigned in an mdn_run.
    v.reset(&[MDN]).await;
    let d = ok("D11", v.run(MDN, &mv(MASTER), &mdn_run(sys())).await);
    assert!(d.dirty && d.doc.state == NumberState::InService && owner(&d) == Some(MASTER), "D11");
    v.persisted("D11", &d).await;
    v.reset(&[AVAIL, RESV, MDN]).await;
}
both_backends!(d_move_vectors, super::d_move);

// ---------------------------------------------------------------------------------------------
// group E reserve

/// Vectors E1–E5 (`knm_numbers:reserve/2`, `knm_number_states`' transition table reserved column, reserve history, `cb_phone_numbers_v2`'s success replies bulk errors).
async fn e_reserve(store: SharedStore) {
    let v = V::new(store).await;
    // E1
    v.reset(&[AVAIL]).await;
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &reserve(Some(RESELLER)), &by(MASTER)).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "E1");
    let d = &out.ok[AVAIL];
    assert_eq!((d.doc.state, owner(d)), (NumberState::Reserved, Some(RESELLER)), "E1");
    assert_eq!(history(d), [RESELLER], "E1");
    v.persisted("E1", d).await;
    // E2: no assign_to.
    v.reset(&[INSVC]).await;
    let before = v.rev(INSVC).await;
    let out = v.ns.apply_many(&[NOTNUM, INSVC], &reserve(None), &sys()).await;
    assert!(out.ok.is_empty(), "E2: ok []");
    assert_eq!(
        out.to_json(),
        json!({"error": {NOTNUM: "not_reconcilable",
                         INSVC: {"code": 400, "error": "assign_failure", "cause": "field_undefined",
                                 "message": "invalid account to assign to"}}}),
        "E2"
    );
    v.unchanged("E2", INSVC, &before).await;
    // E3: same owner, history head not duplicated.
    let out = v.ns.apply_many(&[NOTNUM, INSVC], &reserve(Some(RESELLER)), &sys()).await;
    let d = &out.ok[INSVC];
    assert_eq!((d.doc.state, owner(d)), (NumberState::Reserved, Some(RESELLER)), "E3");
    assert_eq!(history(d), [RESELLER], "E3");
    assert!(d.dirty, "E3");
    v.persisted("E3", d).await;
    // E4
    v.reset(&[INSVC]).await;
    let out = v.ns.apply_many(&[NOTNUM, INSVC], &reserve(Some(CHILD)), &sys()).await;
    let d = &out.ok[INSVC];
    assert_eq!((d.doc.state, owner(d)), (NumberState::Reserved, Some(CHILD)), "E4");
    assert_eq!(history(d), [CHILD, RESELLER], "E4");
    v.persisted("E4", d).await;
    // E5: MDN numbers cannot be reserved.
    v.reset(&[MDN]).await;
    let before = v.rev(MDN).await;
    err(
        "E5",
        v.run(MDN, &reserve(Some(RESELLER)), &sys()).await,
        400,
        "invalid_state_transition",
        Some("from 'MDN' to reserved"),
    );
    v.unchanged("E5", MDN, &before).await;
    v.reset(&[AVAIL, INSVC]).await;
}
both_backends!(e_reserve_vectors, super::e_reserve);

// ---------------------------------------------------------------------------------------------
// group F update, assign_to_app

/// Vectors F1–F11 (`knm_numbers:update/3`, `knm_numbers:assign_to_app/3`, `knm_number_options:mdn_run` MDN guard, `knm_phone_number`'s dirty tracking dirty tracking: an unchanged write keeps
/// the `_rev`).
async fn f_update(store: SharedStore) {
    let v = V::new(store).await;
    // F1: no setters, no write.
    v.reset(&[AVAIL]).await;
    let before = v.rev(AVAIL).await;
    let out =
        v.ns.apply_many(&[NOTNUM, AVAIL], &Operation::Update(Update::default()), &sys()).await;
    let d = &out.ok[AVAIL];
    assert!(!d.dirty && !d.doc.ported_in, "F1");
    v.unchanged("F1", AVAIL, &before).await;
    // F2
    let op = Operation::Update(Update { ported_in: Some(true), ..Update::default() });
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &op, &sys()).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "F2");
    let d = &out.ok[AVAIL];
    assert!(d.dirty && d.doc.ported_in, "F2");
    v.persisted("F2", d).await;
    assert_eq!(v.stored(AVAIL).await.unwrap()["pvt_ported_in"], true, "F2");
    // F3–F6: the MDN guard.
    let star = Operation::Update(Update {
        public_fields: Some(PublicFields::Replace(obj(json!({"*": 42})))),
        ..Update::default()
    });
    v.reset(&[MDN, INSVC]).await;
    let d = ok("F3", v.run(MDN, &star, &mdn_run(by(MASTER))).await);
    v.persisted("F3", &d).await;
    let before = v.rev(INSVC).await;
    err("F4", v.run(INSVC, &star, &mdn_run(by(MASTER))).await, 403, "forbidden", None);
    v.unchanged("F4", INSVC, &before).await;
    v.reset(&[MDN]).await;
    let before = v.rev(MDN).await;
    err("F5", v.run(MDN, &star, &by(MASTER)).await, 403, "forbidden", None);
    v.unchanged("F5", MDN, &before).await;
    let d = ok("F6", v.run(INSVC, &star, &by(MASTER)).await);
    v.persisted("F6", &d).await;
    assert_eq!(v.stored(INSVC).await.unwrap()["*"], 42, "F6");
    // F7: system skips the guard.
    for number in [MDN, INSVC] {
        for opts in [sys(), mdn_run(sys())] {
            v.reset(&[number]).await;
            let d = ok("F7", v.run(number, &star, &opts).await);
            v.persisted("F7", &d).await;
        }
    }
    // F8
    v.reset(&[INSVC]).await;
    let before = v.rev(INSVC).await;
    let d = ok("F8 before", v.run(INSVC, &Operation::Get, &sys()).await);
    assert!(!d.dirty && d.doc.used_by.as_deref() == Some("callflow"), "F8 before");
    v.unchanged("F8", INSVC, &before).await;
    let d = ok("F8", v.run(INSVC, &app(Some("my_app")), &sys()).await);
    assert!(d.dirty && d.doc.used_by.as_deref() == Some("my_app"), "F8");
    v.persisted("F8", &d).await;
    assert_eq!(v.copy(RESELLER, INSVC).await.unwrap()["pvt_used_by"], "my_app", "F8 copy");
    // F9: undefined → my_app → undefined, each a write.
    v.reset(&[INSVC]).await;
    for (u, want) in [(None, None), (Some("my_app"), Some("my_app")), (None, None)] {
        let before = v.rev(INSVC).await;
        let d = ok("F9", v.run(INSVC, &app(u), &sys()).await);
        assert!(d.dirty && d.doc.used_by.as_deref() == want, "F9");
        v.persisted("F9", &d).await;
        assert_ne!(v.rev(INSVC).await, before, "F9: written");
        assert_eq!(v.stored(INSVC).await.unwrap().get("pvt_used_by").and_then(Value::as_str), want);
    }
    // F10: MDN has no used_by: clearing it is no write.
    v.reset(&[MDN]).await;
    let before = v.rev(MDN).await;
    let d = ok("F10", v.run(MDN, &app(None), &sys()).await);
    assert!(!d.dirty && d.doc.used_by.is_none() && d.is_noop(), "F10");
    v.unchanged("F10", MDN, &before).await;
    let d = ok("F10", v.run(MDN, &app(Some("my_app")), &sys()).await);
    assert!(d.dirty, "F10");
    v.persisted("F10", &d).await;
    // F11
    v.reset(&[AVAIL]).await;
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &app(Some("my_app")), &sys()).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "F11");
    let d = &out.ok[AVAIL];
    assert!(d.dirty && d.doc.used_by.as_deref() == Some("my_app"), "F11");
    v.persisted("F11", d).await;
    v.reset(&[AVAIL, INSVC, MDN]).await;
}
both_backends!(f_update_vectors, super::f_update);

// ---------------------------------------------------------------------------------------------
// group G release

/// Vectors G1–G10 (`knm_numbers:release/2`, `knm_numbers:release/2` with the fixture's defaults: released_state available, no aging,
/// no permanent delete; local/MDN numbers left unassigned are deleted).
async fn g_release(store: SharedStore) {
    let v = V::new(store).await;
    let rel = Operation::Release;
    // G1
    v.reset(&[NEW]).await;
    err("G1", v.run(NEW, &rel, &sys()).await, 404, "not_found", Some(NEW));
    // G2
    v.reset(&[AVAIL]).await;
    let d = ok("G2", v.run(AVAIL, &rel, &sys()).await);
    assert!(d.dirty && d.doc.state == NumberState::Deleted && owner(&d).is_none(), "G2");
    v.gone("G2", AVAIL).await;
    // G3
    v.reset(&[TELNYX]).await;
    let before = v.rev(TELNYX).await;
    err(
        "G3",
        v.run(TELNYX, &rel, &sys()).await,
        400,
        "invalid_state_transition",
        Some("from available to available"),
    );
    v.unchanged("G3", TELNYX, &before).await;
    // G4 / G10: a missing carrier module is tolerated on disconnect.
    v.reset(&[BADCARRIER]).await;
    let d = ok("G4", v.run(BADCARRIER, &rel, &sys()).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::Available, None), "G4");
    assert!(history(&d).is_empty(), "G4");
    v.persisted("G4", &d).await;
    v.reset(&[BADCARRIER]).await;
    let out = v.ns.apply_many(&[NOTNUM, BADCARRIER], &rel, &sys()).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "G10");
    assert_eq!(out.ok[BADCARRIER].doc.state, NumberState::Available, "G10");
    v.persisted("G10", &out.ok[BADCARRIER]).await;
    // G5 / G8
    for (case, opts) in [
        ("G5", mdn_run(by(MASTER))),
        ("G8", sys()),
        ("G8", mdn_run(by(MASTER))),
        ("G8", mdn_run(by(RESELLER))),
    ] {
        v.reset(&[MDN]).await;
        let d = ok(case, v.run(MDN, &rel, &opts).await);
        assert_eq!((d.doc.state, owner(&d)), (NumberState::Deleted, None), "{case}");
        assert!(history(&d).is_empty() && d.doc.module_name == "knm_mdn", "{case}");
        v.gone(case, MDN).await;
    }
    // G6 / G7
    for auth in [sys(), by(MASTER), by(RESELLER)] {
        v.reset(&[INSVC, HIST]).await;
        let d = ok("G6", v.run(INSVC, &rel, &auth).await);
        assert_eq!((d.doc.state, owner(&d)), (NumberState::Deleted, None), "G6");
        assert!(history(&d).is_empty(), "G6");
        assert_eq!(d.doc.features_list(), ["local"], "G6");
        v.gone("G6", INSVC).await;
        let d = ok("G7", v.run(HIST, &rel, &auth).await);
        assert_eq!((d.doc.state, owner(&d)), (NumberState::Reserved, Some(MASTER)), "G7");
        assert_eq!(history(&d), [MASTER], "G7");
        assert_eq!(d.doc.features_list(), ["local"], "G7");
        v.persisted("G7", &d).await;
    }
    // G9
    v.reset(&[HIST]).await;
    let out = v.ns.apply_many(&[NOTNUM, HIST], &rel, &sys()).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "G9");
    let d = &out.ok[HIST];
    assert_eq!((d.doc.state, owner(d)), (NumberState::Reserved, Some(MASTER)), "G9");
    v.persisted("G9", d).await;
    v.reset(&[AVAIL, BADCARRIER, MDN, INSVC, HIST]).await;
}
both_backends!(g_release_vectors, super::g_release);

// ---------------------------------------------------------------------------------------------
// group H hard delete

/// Vectors H1–H3 (`knm_numbers:delete/2`: superduper admins only; the number document and the owner's copy are
/// deleted; the returned record keeps its features).
async fn h_delete(store: SharedStore) {
    let v = V::new(store).await;
    // H1
    for number in [INSVC, HIST, MDN] {
        for opts in [sys(), RunOptions { mdn_run: number == MDN, ..by(MASTER) }] {
            v.reset(&[number]).await;
            let d = ok("H1", v.run(number, &Operation::Delete, &opts).await);
            assert_eq!(d.doc.state, NumberState::Deleted, "H1 {number}");
            assert_eq!(d.doc.features_list(), ["local"], "H1 {number}");
            v.gone("H1", number).await;
        }
    }
    // H2
    v.reset(&[AVAIL]).await;
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &Operation::Delete, &sys()).await;
    assert_eq!(out.to_json()["error"], json!({NOTNUM: "not_reconcilable"}), "H2");
    let d = &out.ok[AVAIL];
    assert!(d.dirty && d.doc.state == NumberState::Deleted, "H2");
    v.gone("H2", AVAIL).await;
    // H3: every number refused for a non-admin.
    v.reset(&[INSVC, HIST, AVAIL]).await;
    for who in [RESELLER, CHILD] {
        let revs = [v.rev(INSVC).await, v.rev(HIST).await, v.rev(AVAIL).await];
        let out = v.ns.apply_many(&[INSVC, HIST, AVAIL], &Operation::Delete, &by(who)).await;
        assert!(out.ok.is_empty(), "H3");
        for number in [INSVC, HIST, AVAIL] {
            assert_eq!(out.ko[number].code(), 403, "H3 {number}");
            assert_eq!(out.to_json()["error"][number]["error"], "forbidden", "H3 {number}");
        }
        for (number, before) in [INSVC, HIST, AVAIL].iter().zip(revs) {
            v.unchanged("H3", number, &before).await;
        }
    }
    assert!(v.copy(RESELLER, INSVC).await.is_some(), "H3: copies untouched");
    v.reset(&[INSVC, HIST, MDN, AVAIL]).await;
}
both_backends!(h_delete_vectors, super::h_delete);

// ---------------------------------------------------------------------------------------------
// group I reconcile (4.3)

/// Vectors I1–I6 and the `knm_numbers:reconcile/2` quirk (an unknown number is returned, not saved).
async fn i_reconcile(store: SharedStore) {
    let v = V::new(store).await;
    // I1
    let out = v.ns.apply_many(&[NOTNUM], &reconcile(None, None), &sys()).await;
    assert!(out.ok.is_empty(), "I1");
    assert_eq!(out.to_json(), json!({"error": {NOTNUM: "not_reconcilable"}}), "I1");
    // I2
    v.reset(&[AVAIL]).await;
    let before = v.rev(AVAIL).await;
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &reconcile(None, None), &sys()).await;
    assert!(out.ok.is_empty(), "I2");
    assert_eq!(
        out.to_json()["error"],
        json!({NOTNUM: "not_reconcilable",
               AVAIL: {"code": 400, "error": "assign_failure", "cause": "field_undefined",
                       "message": "invalid account to assign to"}}),
        "I2"
    );
    v.unchanged("I2", AVAIL, &before).await;
    // I3
    let out = v.ns.apply_many(&[NOTNUM, AVAIL], &reconcile(Some(RESELLER), None), &sys()).await;
    let d = &out.ok[AVAIL];
    assert!(d.dirty && d.doc.state == NumberState::InService && owner(d) == Some(RESELLER), "I3");
    v.persisted("I3", d).await;
    // I4: the module stays; reconcile forces the state without the carrier.
    v.reset(&[BW]).await;
    let d = ok("I4", v.run(BW, &reconcile(Some(RESELLER), None), &sys()).await);
    assert_eq!(
        (d.doc.module_name.as_str(), d.doc.state),
        ("knm_bandwidth2", NumberState::InService)
    );
    assert!(d.carrier_call.is_none(), "I4: no acquisition");
    v.persisted("I4", &d).await;
    // I5
    v.reset(&[BW]).await;
    let d = ok("I5", v.run(BW, &reconcile(Some(RESELLER), Some("knm_mdn")), &sys()).await);
    assert_eq!(d.doc.module_name, "knm_mdn", "I5");
    assert_eq!(d.doc.features_list(), ["local"], "I5");
    v.persisted("I5", &d).await;
    // I6
    v.reset(&[MDN]).await;
    let d = ok("I6", v.run(MDN, &reconcile(Some(MASTER), None), &mdn_run(by(MASTER))).await);
    assert!(d.dirty && d.doc.state == NumberState::InService && owner(&d) == Some(MASTER), "I6");
    v.persisted("I6", &d).await;
    // `knm_numbers:reconcile/2` quirk kept: a number not in the database comes back in_service and is not saved.
    v.reset(&[NEW]).await;
    let d =
        ok("`knm_numbers:reconcile/2`", v.run(NEW, &reconcile(Some(RESELLER), None), &sys()).await);
    assert_eq!(
        (d.doc.state, owner(&d)),
        (NumberState::InService, Some(RESELLER)),
        "`knm_numbers:reconcile/2`"
    );
    assert!(
        v.stored(NEW).await.is_none() && v.copy(RESELLER, NEW).await.is_none(),
        "`knm_numbers:reconcile/2`"
    );
    v.reset(&[AVAIL, BW, MDN]).await;
}
both_backends!(i_reconcile_vectors, super::i_reconcile);

// ---------------------------------------------------------------------------------------------
// group J MDN rules

/// Vectors J1–J5 (`knm_number_options:mdn_run`, `knm_number_states`' transition table MDN rows, `knm_numbers:create/2` c: an MDN number is always created in_service).
async fn j_mdn(store: SharedStore) {
    let v = V::new(store).await;
    v.reset(&[MDN]).await;
    let d = ok("J1", v.run(MDN, &mv(MASTER), &mdn_run(sys())).await);
    assert_eq!((d.doc.state, owner(&d)), (NumberState::InService, Some(MASTER)), "J1");
    v.persisted("J1", &d).await;
    v.reset(&[MDN]).await;
    let d = ok("J2", v.run(MDN, &Operation::Release, &mdn_run(sys())).await);
    assert_eq!(d.doc.state, NumberState::Deleted, "J2");
    v.gone("J2", MDN).await;
    v.reset(&[MDN]).await;
    let d = ok("J3", v.run(MDN, &reconcile(Some(MASTER), None), &mdn_run(sys())).await);
    assert_eq!(d.doc.state, NumberState::InService, "J3");
    v.persisted("J3", &d).await;
    v.reset(&[MDN]).await;
    let before = v.rev(MDN).await;
    let e = v.run(MDN, &reserve(Some(MASTER)), &mdn_run(sys())).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "invalid_state_transition", "J4");
    v.unchanged("J4", MDN, &before).await;
    v.reset(&[NEW]).await;
    let c = Create {
        state: Some(NumberState::Available),
        module_name: Some("knm_mdn".into()),
        ..create(MASTER)
    };
    let d = ok("J5", v.run(NEW, &Operation::Create(c), &mdn_run(by(MASTER))).await);
    assert_eq!(d.doc.state, NumberState::InService, "J5: forced in_service");
    assert_eq!(d.doc.features_list(), ["local"], "J5");
    v.persisted("J5", &d).await;
    v.reset(&[MDN, NEW]).await;
}
both_backends!(j_mdn_vectors, super::j_mdn);

// ---------------------------------------------------------------------------------------------
// group L lookup_account

/// Vectors L1–L8 (`knm_number:lookup_account/1`, `knm_number:is_force_outbound/3` force_outbound, port requests from the `port_requests` db).
async fn l_lookup(store: SharedStore) {
    let v = V::new(store).await;
    let look = |number: &'static str| {
        let ns = v.ns.clone();
        async move { ns.lookup_account(&n(number)).await }
    };
    let l = look(PORTIN).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, true), "L1");
    let e = look(TELNYX).await.unwrap_err();
    assert!(matches!(&e, Error::NotInService { account, .. } if account == RESELLER), "L2 {e}");
    assert_eq!(e.to_json()["cause"], RESELLER, "L2");
    let l = look(VITELITY).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, false), "L3");
    let l = look(INSVC).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, true), "L4");
    let l = look(MDN).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, true), "L5");
    let l = look(BADCARRIER).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, false), "L6");
    v.reset(&[NEWPORT]).await;
    let l = look(NEWPORT).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, true), "L7");
    assert!(l.pending_port, "L7");
    let l = look(PORTIN3).await.unwrap();
    assert_eq!((l.account_id.as_str(), l.force_outbound), (RESELLER, true), "L8");
}
both_backends!(l_lookup_vectors, super::l_lookup);

// ---------------------------------------------------------------------------------------------
// group M load-time migration of legacy documents

fn priv_fixture(name: &str) -> Value {
    let path = fixturedb_dir().join("../priv-fixtures").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Public fields of a stored document: keys that are neither `_…` nor `pvt_…`.
fn public_of(doc: &Value) -> Map<String, Value> {
    doc.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && !k.starts_with("pvt_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Vectors M1–M12, M13 (load part) and M14 (`knm_phone_number:from_json/1` migration on load, `knm_phone_number`'s dirty tracking: a migrated document
/// is dirty and its next save writes the current form; a current one is not written at all).
/// M13's "fix" and M15 need the feature providers and are tested with them.
async fn m_migration(store: SharedStore) {
    let v = V::new(store).await;
    let noop = Operation::Update(Update::default());
    // Loads `number` (dirty as `dirty`) and returns (stored before, migrated form, the load
    // decision). With `save`, the migrated form is what an empty update then stores (a migrated
    // document is written once and then holds still; a clean one keeps its `_rev`); without,
    // the loaded document's `to_json` (nothing is written).
    let vr = &v;
    let roundtrip = move |case: &'static str, number: &'static str, dirty: bool, save: bool| {
        let v = vr;
        let noop = noop.clone();
        async move {
            v.reset(&[number]).await;
            let before = v.stored(number).await.unwrap();
            let got = ok(case, v.run(number, &Operation::Get, &sys()).await);
            assert_eq!(got.dirty, dirty, "{case}: dirty on load");
            v.unchanged(case, number, &Some(before["_rev"].clone())).await;
            if !save {
                return (before, got.doc.to_json(), got);
            }
            let d = ok(case, v.run(number, &noop, &sys()).await);
            assert_eq!(d.dirty, dirty, "{case}: dirty on save");
            if dirty {
                v.persisted(case, &d).await;
                let rev = v.rev(number).await;
                let again = ok(case, v.run(number, &noop, &sys()).await);
                assert!(!again.dirty, "{case}: migrated once");
                v.unchanged(case, number, &rev).await;
            } else {
                v.unchanged(case, number, &Some(before["_rev"].clone())).await;
            }
            (before, v.stored(number).await.unwrap(), got)
        }
    };
    // M1
    let (before, after, _) = roundtrip("M1", "+15045551226", true, true).await;
    let out = priv_fixture("old_vsn_1_out.json");
    for key in
        ["_id", "pvt_assigned_to", "pvt_db_name", "pvt_module_name", "pvt_ported_in", "pvt_state"]
    {
        assert_eq!(after[key], before[key], "M1 {key} unchanged");
        assert_eq!(after[key], out[key], "M1 {key} as _out");
    }
    assert_eq!(after["pvt_module_name"], "knm_local");
    assert!(after.get("pvt_reserve_history").is_none(), "M1 history []");
    assert_eq!(before["pvt_created"], "undefined");
    assert!(after["pvt_created"].is_i64() && after["pvt_modified"].is_i64(), "M1 integers");
    assert_eq!(after["pvt_features"], json!({"local": {}}), "M1");
    assert!(after.get("pvt_used_by").is_none(), "M1");
    // M2
    let (_, after, _) = roundtrip("M2", "+15045551227", false, false).await;
    assert_eq!(
        (after["pvt_created"].clone(), after["pvt_modified"].clone()),
        (json!(63648122255i64), json!(63648133355i64)),
        "M2"
    );
    // M3
    let (before, after, _) = roundtrip("M3", "+12014370855", true, true).await;
    assert!(before.get("pvt_number_state").is_some());
    assert!(after.get("pvt_number_state").is_none(), "M3 legacy key removed");
    assert_eq!(after["pvt_state"], "in_service", "M3");
    assert_eq!(after["pvt_module_name"], "knm_pacwest", "M3");
    assert_eq!(after["pvt_ported_in"], false, "M3");
    assert_eq!(after["pvt_created"], 63637990840i64, "M3");
    assert_ne!(after["pvt_modified"], before["pvt_modified"], "M3 modified rewritten");
    assert!(after.get("pvt_features").is_none(), "M3: [] → absent");
    assert!(after.get("pvt_used_by").is_none() && after.get("used_by").is_none(), "M3 used_by");
    // M4
    let (_, after, _) = roundtrip("M4", "+12014370856", false, false).await;
    assert_eq!(after["pvt_modified"], 63637990853i64, "M4");
    assert_eq!(
        (after["pvt_state"].clone(), after["pvt_module_name"].clone()),
        (json!("in_service"), json!("knm_pacwest")),
        "M4"
    );
    // M5
    let (before, after, _) = roundtrip("M5", "+12014370857", true, true).await;
    assert_eq!(before["pvt_module_name"], "wnm_pacwest");
    assert_eq!(after["pvt_module_name"], "knm_pacwest", "M5");
    assert_eq!(after["pvt_state"], "in_service", "M5");
    assert!(after.get("pvt_number_state").is_none(), "M5");
    // M6
    let (before, after, _) = roundtrip("M6", "+14082141750", true, true).await;
    assert_eq!(after["pvt_module_name"], "knm_bandwidth2", "M6");
    assert!(after.get("pvt_reserve_history").is_none(), "M6 history []");
    assert_eq!(after["pvt_ported_in"], false, "M6");
    assert_eq!(after["pvt_created"], 63646110391i64, "M6");
    assert_eq!(after["pvt_features"], before["pvt_features"], "M6 features unchanged");
    assert_eq!(after["pvt_used_by"], "callflow", "M6");
    // M7
    let (_, after, _) = roundtrip("M7", "+14082141751", false, false).await;
    assert_eq!(
        (after["pvt_module_name"].clone(), after["pvt_state"].clone()),
        (json!("knm_bandwidth2"), json!("in_service")),
        "M7"
    );
    // M8: the migrated document carries a public `e911` (from `dash_e911`) on a local number,
    // which the feature providers refuse to save (`knm_providers:list_available_features/1`, as in vectors K1 and M13's "fix"); the
    // migrated form is checked on the loaded document.
    let (before, after, _) = roundtrip("M8", "+14242424247", true, false).await;
    assert_eq!(before["pvt_module_name"], "wnm_local");
    assert_eq!(after["pvt_module_name"], "knm_local", "M8");
    assert_eq!(after["pvt_state"], "reserved", "M8");
    assert_eq!(after["pvt_features"], json!({"local": {}}), "M8");
    assert!(after.get("pvt_used_by").is_none() && after.get("used_by").is_none(), "M8");
    assert_eq!(public_of(&after), public_of(&priv_fixture("old_vsn_4_out.json")), "M8 public");
    // M9
    let (before, after, _) = roundtrip("M9", "+14242424248", false, false).await;
    assert_eq!(after["pvt_features"], before["pvt_features"], "M9");
    // M10
    let (before, after, _) = roundtrip("M10", "+19377038880", true, true).await;
    assert!(before["pvt_features"].get("dash_e911").is_some());
    assert!(after["pvt_features"].get("e911").is_some(), "M10 feature renamed");
    assert!(after["pvt_features"].get("dash_e911").is_none(), "M10");
    assert_eq!(after["e911"], before["dash_e911"], "M10 public e911 copied");
    assert_eq!(after["dash_e911"], before["dash_e911"], "M10 legacy key kept");
    assert!(after["pvt_created"].is_i64() && after["pvt_modified"].is_i64(), "M10");
    assert!(after.get("pvt_used_by").is_none() && after.get("used_by").is_none(), "M10");
    // M11
    let (_, after, got) = roundtrip("M11", "+19377038881", false, false).await;
    assert_eq!(after["pvt_module_name"], "knm_bandwidth2", "M11");
    assert_eq!(after["pvt_state"], "in_service", "M11");
    assert_eq!(after["pvt_assigned_to"], RESELLER, "M11");
    for key in ["cnam", "e911", "dash_e911"] {
        assert!(got.doc.public.contains_key(key), "M11 public {key}");
    }
    let features = got.doc.features_list();
    for f in ["inbound_cnam", "outbound_cnam", "e911"] {
        assert!(features.contains(&f.to_owned()), "M11 {f}");
    }
    assert!(!features.contains(&"dash_e911".to_owned()) && !features.contains(&"local".to_owned()));
    assert_eq!(got.doc.features["e911"], got.doc.public["e911"], "M11");
    assert_eq!(got.doc.public["e911"], got.doc.public["dash_e911"], "M11");
    assert!(got.doc.used_by.is_none(), "M11");
    // M12
    let (_, after, _) = roundtrip("M12", "+12156774700", false, false).await;
    assert_eq!(after["pvt_module_name"], "knm_local", "M12");
    assert_eq!(after["pvt_state"], "in_service", "M12");
    assert_eq!(after["pvt_used_by"], "trunkstore", "M12");
    // M13 (load part): assigned CHILD, whose account database has the copy.
    let (_, after, got) = roundtrip("M13", "+13977031887", false, false).await;
    assert_eq!(after["pvt_assigned_to"], CHILD, "M13");
    assert_eq!(
        (got.doc.module_name.as_str(), got.doc.state),
        ("knm_local", NumberState::InService)
    );
    assert_eq!(got.doc.features_list(), ["inbound_cnam", "local", "outbound_cnam"], "M13");
    assert_eq!(got.doc.used_by.as_deref(), Some("callflow"), "M13");
    assert!(v.copy(CHILD, "+13977031887").await.is_some(), "M13 copy untouched");
    // M14: a current document round-trips equal as JSON.
    let (before, _, got) = roundtrip("M14", "+13977031888", false, false).await;
    assert_eq!(got.doc.to_json(), before, "M14");
}
both_backends!(m_migration_vectors, super::m_migration);
