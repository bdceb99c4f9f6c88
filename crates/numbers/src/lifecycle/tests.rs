//! Tests of `lifecycle`: every case of Kazoo's number vectors group B–group H, group J, group L (and the `knm_number_states`' transition table table,
//! `knm_numbers:save_numbers/1`, `knm_number_options:dry_run`) on the pure state machine, over Kazoo's own fixturedb documents.

use std::path::PathBuf;

use e164::{Converters, E164};
use serde_json::{json, Map, Value};

use super::*;
use crate::account::AccountId;
use crate::auth::tests::fixture_accounts;
use crate::auth::{AccountMap, AuthBy};
use crate::config::Config;
use crate::doc::{NumberDoc, NumberState};

const NOW: i64 = 63_800_000_000;

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

const MASTER: u8 = 1;
const RESELLER: u8 = 2;
const CHILD: u8 = 3;
const UNRELATED: u8 = 9;

fn acc(n: u8) -> AccountId {
    match n {
        UNRELATED => AccountId::parse("unrelated_account_b113394f16cb71").unwrap(),
        n => AccountId::parse(&format!("account000000000000000000000000{n}")).unwrap(),
    }
}

fn acc_s(n: u8) -> Option<AccountId> {
    Some(acc(n))
}

fn e(n: &str) -> E164 {
    E164::new(n).unwrap()
}

/// The stored document of a starting number, read through `NumberDoc::from_json`.
fn stored(number: &str) -> Option<NumberDoc> {
    let db = crate::doc::encoded_number_db(number)?;
    let file = format!("%2B{}.json", &number[1..]);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/numbers/fixturedb")
        .join(db)
        .join("docs")
        .join(file);
    let text = std::fs::read_to_string(path).ok()?;
    Some(NumberDoc::from_json(&serde_json::from_str(&text).unwrap(), NOW).unwrap())
}

struct World {
    config: Config,
    accounts: AccountMap,
}

impl World {
    fn new() -> Self {
        World { config: Config::kazoo_defaults(), accounts: fixture_accounts() }
    }
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    System,
    Acc(u8),
}

#[derive(Clone, Copy, Default)]
struct Opts {
    dry_run: bool,
    mdn_run: bool,
}

const MDN_RUN: Opts = Opts { dry_run: false, mdn_run: true };
const DRY: Opts = Opts { dry_run: true, mdn_run: false };
const PLAIN: Opts = Opts { dry_run: false, mdn_run: false };

fn run_on(
    w: &World,
    number: &str,
    current: Option<&NumberDoc>,
    op: &Operation,
    auth: Auth,
    opts: Opts,
) -> Result<Decision, Error> {
    let auth_by = match auth {
        Auth::None => None,
        Auth::System => Some(AuthBy::System),
        Auth::Acc(n) => Some(AuthBy::Account(acc(n))),
    };
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: auth_by.as_ref(),
        dry_run: opts.dry_run,
        mdn_run: opts.mdn_run,
        now: NOW,
    };
    transition(&e(number), current, op, &ctx)
}

fn run(number: &str, op: &Operation, auth: Auth, opts: Opts) -> Result<Decision, Error> {
    let w = World::new();
    run_on(&w, number, stored(number).as_ref(), op, auth, opts)
}

/// What a case expects of a successful decision; `None` fields are not checked.
#[derive(Default)]
struct Want {
    state: Option<NumberState>,
    assigned: Option<Option<u8>>,
    history: Option<&'static [u8]>,
    module: Option<&'static str>,
    dirty: Option<bool>,
    features: Option<&'static [&'static str]>,
    prev: Option<u8>,
    ported_in: Option<bool>,
}

#[track_caller]
fn check_ok(case: &str, got: Result<Decision, Error>, want: Want) -> Decision {
    let d = got.unwrap_or_else(|err| panic!("{case}: unexpected error {}", err.to_json()));
    let doc = &d.doc;
    if let Some(s) = want.state {
        assert_eq!(doc.state, s, "{case}: state");
    }
    if let Some(a) = want.assigned {
        assert_eq!(doc.assigned_to, a.map(acc), "{case}: assigned_to");
    }
    if let Some(h) = want.history {
        let want_h: Vec<AccountId> = h.iter().map(|n| acc(*n)).collect();
        assert_eq!(doc.reserve_history, want_h, "{case}: reserve history");
    }
    if let Some(m) = want.module {
        assert_eq!(doc.module_name, m, "{case}: module");
    }
    if let Some(dirty) = want.dirty {
        assert_eq!(d.dirty, dirty, "{case}: dirty");
    }
    if let Some(f) = want.features {
        assert_eq!(doc.features_list(), f, "{case}: features");
    }
    if let Some(p) = want.prev {
        assert_eq!(doc.prev_assigned_to, Some(acc(p)), "{case}: prev_assigned_to");
    }
    if let Some(p) = want.ported_in {
        assert_eq!(doc.ported_in, p, "{case}: ported_in");
    }
    d
}

#[track_caller]
fn check_err(
    case: &str,
    got: Result<Decision, Error>,
    code: u16,
    error: &str,
    cause: Option<&str>,
) {
    let err = match got {
        Ok(d) => panic!("{case}: expected {error}, got state {}", d.doc.state),
        Err(err) => err,
    };
    let j = err.to_json();
    assert_eq!(j["code"], code, "{case}: {j}");
    assert_eq!(j["error"], error, "{case}: {j}");
    assert_eq!(j.get("cause").and_then(Value::as_str), cause, "{case}: {j}");
}

fn create(assign_to: Option<AccountId>) -> Create {
    Create { assign_to, ..Create::default() }
}

fn mv(to: u8) -> Operation {
    Operation::Move(Move { assign_to: acc_s(to), ..Move::default() })
}

fn reserve(to: Option<u8>) -> Operation {
    Operation::Reserve { assign_to: to.and_then(acc_s) }
}

fn public(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

// ---------------------------------------------------------------------------------------------
// group B get

/// Vectors B1, B2: available numbers are readable by anyone; a read writes nothing.
#[test]
fn b1_b2_get_available() {
    for auth in [Auth::System, Auth::Acc(RESELLER), Auth::Acc(MASTER), Auth::Acc(UNRELATED)] {
        let d = check_ok(
            "B1/B2",
            run(AVAIL, &Operation::Get, auth, PLAIN),
            Want {
                state: Some(NumberState::Available),
                module: Some("knm_local"),
                dirty: Some(false),
                ..Want::default()
            },
        );
        assert!(d.is_noop());
    }
}

/// `knm_phone_number:handle_fetch/2` read gate: an in-service number is not readable by an unrelated account.
#[test]
fn s3_6_read_gate() {
    check_err(
        "gate",
        run(INSVC, &Operation::Get, Auth::Acc(UNRELATED), PLAIN),
        403,
        "forbidden",
        None,
    );
    check_err("gate", run(INSVC, &Operation::Get, Auth::None, PLAIN), 403, "forbidden", None);
    check_ok("gate", run(INSVC, &Operation::Get, Auth::Acc(MASTER), PLAIN), Want::default());
    check_ok("gate", run(RESV, &Operation::Get, Auth::Acc(CHILD), PLAIN), Want::default());
}

/// Vectors B3–B7: reconcilable split (duplicates collapse), not found.
#[test]
fn b3_b7_bulk_get() {
    let conv = Converters::kazoo_defaults();
    let inputs = [AVAIL, NOTNUM, AVAIL, NOTNUM, NEW, "1000", "4156301234"];
    let split = split_reconcilable(&inputs, &conv);
    let nums: Vec<&str> = split.numbers.iter().map(E164::as_str).collect();
    assert_eq!(nums, [AVAIL, NEW, "+14156301234"]);
    assert_eq!(split.ko.len(), 2);
    assert!(matches!(split.ko[NOTNUM], Error::NotReconcilable { .. }));
    assert!(matches!(split.ko["1000"], Error::NotReconcilable { .. }));
    let w = World::new();
    let docs: Vec<(E164, Option<NumberDoc>)> =
        split.numbers.iter().map(|n| (n.clone(), stored(n.as_str()))).collect();
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: Some(&AuthBy::System),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let mut out =
        transition_many(docs.iter().map(|(n, d)| (n.clone(), d.as_ref())), &Operation::Get, &ctx);
    out.ko.extend(split.ko);
    assert_eq!(out.ok.len(), 1);
    let j = out.to_json();
    assert_eq!(j["error"][NOTNUM], "not_reconcilable");
    assert_eq!(j["error"][NEW], "not_found");
    assert_eq!(j["error"]["+14156301234"], "not_found");
    assert_eq!(j["success"][AVAIL]["state"], "available");
}

/// Vector B8: every starting document loads clean, with the fields `to_json` must carry.
#[test]
fn b8_starting_docs_load_clean() {
    for n in STARTING {
        let d = stored(n).unwrap_or_else(|| panic!("{n} fixture"));
        assert!(!d.migrated(), "{n} dirty on load");
        let j = d.to_json();
        assert_eq!(j["_id"], n);
        assert!(j["pvt_db_name"].is_string());
        assert!(j["pvt_state"].as_str().unwrap().parse::<NumberState>().is_ok());
        assert!(j["pvt_ported_in"].is_boolean());
        assert!(j["pvt_modified"].is_i64() && j["pvt_created"].is_i64());
        assert_eq!(j["pvt_type"], "number");
        assert!(!j["_rev"].as_str().unwrap().is_empty());
        let known = crate::carriers::CarrierKind::from_module(&d.module_name).is_some();
        assert!(known || d.module_name == "knm_pacwest", "{n}: {}", d.module_name);
    }
}

// ---------------------------------------------------------------------------------------------
// group C create

/// Vectors C1–C3, C5, C7, C10, C18, J5: new numbers.
#[test]
fn c_create_new_numbers() {
    let d = check_ok(
        "C1",
        run(NEW, &Operation::Create(create(acc_s(RESELLER))), Auth::Acc(MASTER), PLAIN),
        Want {
            state: Some(NumberState::InService),
            assigned: Some(Some(RESELLER)),
            history: Some(&[]),
            module: Some("knm_local"),
            dirty: Some(true),
            features: Some(&["local"]),
            ..Want::default()
        },
    );
    assert_eq!(d.doc.to_json()["pvt_db_name"], "numbers%2F%2B1555");
    assert!(d.to_public_json()["_read_only"]["created"].is_i64());
    assert_eq!(
        d.writes,
        vec![
            Write::SaveNumber { db: "numbers/+1555".into() },
            Write::SaveAccountCopy { account: acc(RESELLER), db: acc(RESELLER).db_name().into() },
        ]
    );
    let op = Create { module_name: Some("blipblop".into()), ..create(acc_s(RESELLER)) };
    check_ok(
        "C2",
        run(NEW, &Operation::Create(op), Auth::Acc(MASTER), PLAIN),
        Want { module: Some("blipblop"), features: Some(&[]), ..Want::default() },
    );
    check_ok(
        "C3",
        run(NEW, &Operation::Create(create(acc_s(RESELLER))), Auth::Acc(RESELLER), PLAIN),
        Want {
            state: Some(NumberState::InService),
            assigned: Some(Some(RESELLER)),
            ..Want::default()
        },
    );
    let op = Create { state: Some(NumberState::Available), ..create(acc_s(MASTER)) };
    check_ok(
        "C5",
        run(NEW, &Operation::Create(op), Auth::Acc(MASTER), PLAIN),
        Want {
            state: Some(NumberState::Available),
            assigned: Some(None),
            history: Some(&[]),
            module: Some("knm_local"),
            ..Want::default()
        },
    );
    // C7: an account without additions may still create a port_in number.
    let op = Create {
        state: Some(NumberState::PortIn),
        module_name: Some("knm_local".into()),
        ..create(acc_s(CHILD))
    };
    let d = check_ok(
        "C7",
        run(NEW, &Operation::Create(op), Auth::Acc(CHILD), PLAIN),
        Want {
            state: Some(NumberState::PortIn),
            assigned: Some(Some(CHILD)),
            history: Some(&[]),
            module: Some("knm_local"),
            ported_in: Some(false),
            ..Want::default()
        },
    );
    assert!(!crate::carriers::is_number_billable(&d.doc));
    let op = Create {
        module_name: Some("knm_mdn".into()),
        public_fields: Some(public(
            json!({"mobile": {"provider": "tower-of-hanoi", "authorizing": "abc", "device-id": "x"}}),
        )),
        ..create(acc_s(RESELLER))
    };
    let d = check_ok(
        "C10/J5",
        run(NEW, &Operation::Create(op), Auth::Acc(MASTER), MDN_RUN),
        Want {
            state: Some(NumberState::InService),
            module: Some("knm_mdn"),
            features: Some(&["local"]),
            ..Want::default()
        },
    );
    assert_eq!(d.doc.public["mobile"]["device-id"], "x");
    let op = Create { ported_in: true, ..create(acc_s(RESELLER)) };
    check_ok(
        "C18",
        run(NEW, &Operation::Create(op), Auth::Acc(MASTER), PLAIN),
        Want {
            state: Some(NumberState::InService),
            assigned: Some(Some(RESELLER)),
            history: Some(&[]),
            module: Some("knm_local"),
            ported_in: Some(true),
            ..Want::default()
        },
    );
}

/// Vectors C4, C12, C13, C14, `knm_numbers:create/2` b: refusals of new numbers.
#[test]
fn c_create_refusals() {
    check_err(
        "C4",
        run(NEW, &Operation::Create(create(acc_s(CHILD))), Auth::Acc(CHILD), PLAIN),
        403,
        "forbidden",
        Some("state_for_create"),
    );
    check_err(
        "C12",
        run(NEW, &Operation::Create(create(acc_s(RESELLER))), Auth::None, PLAIN),
        403,
        "forbidden",
        Some("state_for_create"),
    );
    // C13: ensure_can_create itself (state port_in passes state_for_create, reserved by an
    // account without additions does not get that far; an admin-less, addition-less account
    // asking for a state it may not create is refused before).
    let op = Create { state: Some(NumberState::Reserved), ..create(acc_s(CHILD)) };
    check_err(
        "C13",
        run(NEW, &Operation::Create(op), Auth::Acc(CHILD), PLAIN),
        403,
        "forbidden",
        Some("state_for_create"),
    );
    let op = Create { number_is_porting: true, ..create(acc_s(RESELLER)) };
    check_err(
        "C14",
        run(NEW, &Operation::Create(op), Auth::Acc(RESELLER), PLAIN),
        400,
        "number_is_porting",
        Some(NEW),
    );
    let op = Create { number_is_porting: true, ported_in: true, ..create(acc_s(RESELLER)) };
    check_ok(
        "C14 ported_in",
        run(NEW, &Operation::Create(op), Auth::Acc(RESELLER), PLAIN),
        Want::default(),
    );
    check_err(
        "`knm_numbers:create/2` b",
        run(NEW, &Operation::Create(create(None)), Auth::Acc(MASTER), PLAIN),
        400,
        "assign_failure",
        Some("field_undefined"),
    );
    // A value that is not an account id never reaches the decision: it is refused where it is
    // read, with the same 400 `assign_failure`, naming the value.
    for bad in ["system", "nope", "ACCOUNT0000000000000000000000001"] {
        let err = crate::lifecycle::operation_for_command("create", Some(bad), None).unwrap_err();
        let j = err.to_json();
        assert_eq!((j["code"].as_u64(), j["error"].as_str()), (Some(400), Some("assign_failure")));
        assert_eq!(j["cause"], bad, "{j}");
    }
}

/// Vectors C6, C8, C16, C17: existing numbers.
#[test]
fn c_create_existing_numbers() {
    check_ok(
        "C6",
        run(AVAIL, &Operation::Create(create(acc_s(RESELLER))), Auth::Acc(MASTER), PLAIN),
        Want {
            state: Some(NumberState::InService),
            assigned: Some(Some(RESELLER)),
            history: Some(&[]),
            module: Some("knm_local"),
            ..Want::default()
        },
    );
    check_err(
        "C8",
        run(INSVC, &Operation::Create(create(acc_s(RESELLER))), Auth::System, PLAIN),
        409,
        "number_exists",
        Some(INSVC),
    );
    let op = Create { ported_in: true, ..create(acc_s(RESELLER)) };
    let d = check_ok(
        "C16",
        run(PORTIN, &Operation::Create(op), Auth::Acc(MASTER), PLAIN),
        Want {
            state: Some(NumberState::InService),
            history: Some(&[RESELLER]),
            module: Some("knm_local"),
            ported_in: Some(true),
            ..Want::default()
        },
    );
    assert!(!crate::carriers::is_number_billable(&d.doc));
    for auth in [Auth::Acc(MASTER), Auth::System] {
        check_ok(
            "C17",
            run(AVAIL, &Operation::Create(create(acc_s(RESELLER))), auth, PLAIN),
            Want { state: Some(NumberState::InService), ported_in: Some(false), ..Want::default() },
        );
    }
}

/// Vector C9, `knm_number_options:dry_run`: a dry run decides but writes nothing.
#[test]
fn c9_create_dry_run() {
    let d = check_ok(
        "C9",
        run(NEW, &Operation::Create(create(acc_s(RESELLER))), Auth::Acc(MASTER), DRY),
        Want { state: Some(NumberState::InService), ..Want::default() },
    );
    assert!(d.dry_run && d.is_noop());
}

/// Vector C11: `ensure_can_load_to_create` over every state.
#[test]
fn c11_load_to_create_by_state() {
    let w = World::new();
    for state in NumberState::ALL {
        let mut doc = stored(AVAIL).unwrap();
        doc.state = state;
        let got = run_on(
            &w,
            AVAIL,
            Some(&doc),
            &Operation::Create(create(acc_s(RESELLER))),
            Auth::Acc(MASTER),
            PLAIN,
        );
        match state {
            NumberState::Available | NumberState::PortIn | NumberState::Aging => {
                check_ok(
                    "C11",
                    got,
                    Want { state: Some(NumberState::InService), ..Want::default() },
                );
            }
            // Deviation (docs/kazoo-compat.md): a search's `discovery` record is created the way
            // it is bought, acquired from its carrier (Kazoo: `number_exists`).
            NumberState::Discovery => {
                let d = check_ok(
                    "C11 discovery",
                    got,
                    Want { state: Some(NumberState::InService), ..Want::default() },
                );
                assert!(matches!(d.carrier_call, Some(CarrierCall::Acquire { .. })), "{d:?}");
            }
            _ => check_err("C11", got, 409, "number_exists", Some(AVAIL)),
        }
    }
}

/// Vector C15: bulk create.
#[test]
fn c15_bulk_create() {
    let w = World::new();
    let conv = Converters::kazoo_defaults();
    let split = split_reconcilable(&[TELNYX, NOTNUM, NEW], &conv);
    let docs: Vec<(E164, Option<NumberDoc>)> =
        split.numbers.iter().map(|n| (n.clone(), stored(n.as_str()))).collect();
    let master = AuthBy::Account(acc(MASTER));
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: Some(&master),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let mut out = transition_many(
        docs.iter().map(|(n, d)| (n.clone(), d.as_ref())),
        &Operation::Create(create(acc_s(RESELLER))),
        &ctx,
    );
    out.ko.extend(split.ko);
    assert_eq!(out.ko.len(), 1);
    assert!(matches!(out.ko[NOTNUM], Error::NotReconcilable { .. }));
    assert_eq!(out.ok.len(), 2);
    for d in out.ok.values() {
        assert_eq!(d.doc.state, NumberState::InService);
        assert_eq!(d.doc.assigned_to, Some(acc(RESELLER)));
        assert!(d.dirty);
    }
}

// ---------------------------------------------------------------------------------------------
// group D move

/// Vectors D1–D5, D11, J1.
#[test]
fn d_move() {
    let in_service_to = |n: u8| Want {
        state: Some(NumberState::InService),
        assigned: Some(Some(n)),
        ..Want::default()
    };
    check_ok(
        "D1",
        run(AVAIL, &mv(CHILD), Auth::System, PLAIN),
        Want { dirty: Some(true), ..in_service_to(CHILD) },
    );
    check_ok("D2", run(RESV, &mv(CHILD), Auth::Acc(CHILD), PLAIN), in_service_to(CHILD));
    check_ok("D3", run(RESV, &mv(CHILD), Auth::System, PLAIN), in_service_to(CHILD));
    check_err("D4", run(RESV, &mv(UNRELATED), Auth::Acc(UNRELATED), PLAIN), 403, "forbidden", None);
    check_ok("D5", run(RESV, &mv(UNRELATED), Auth::System, PLAIN), in_service_to(UNRELATED));
    check_ok(
        "D11/J1",
        run(MDN, &mv(MASTER), Auth::System, MDN_RUN),
        Want { dirty: Some(true), ..in_service_to(MASTER) },
    );
}

/// Vector D6: public fields given with the move replace the number's.
#[test]
fn d6_move_with_public_fields() {
    let op = Operation::Move(Move {
        assign_to: acc_s(RESELLER),
        public_fields: Some(PublicFields::Replace(public(json!({"a": "bla", "my_key": 42})))),
        ..Move::default()
    });
    let d = check_ok("D6", run(AVAIL, &op, Auth::System, PLAIN), Want::default());
    assert_eq!(d.doc.public["my_key"], 42);
    assert_eq!(d.doc.public["a"], "bla");
}

/// Vectors D7, D8: anyone can buy an available number, for anyone.
#[test]
fn d7_d8_buy_available() {
    for (number, module, features) in
        [(AVAIL, "knm_local", &["local"][..]), (NONLOCAL, "knm_telnyx", &[][..])]
    {
        for to in [CHILD, RESELLER, MASTER] {
            for by in [CHILD, RESELLER, MASTER] {
                let d = check_ok(
                    "D7/D8",
                    run(number, &mv(to), Auth::Acc(by), PLAIN),
                    Want {
                        state: Some(NumberState::InService),
                        assigned: Some(Some(to)),
                        prev: Some(RESELLER),
                        history: Some(&[]),
                        module: Some(module),
                        features: Some(features),
                        ..Want::default()
                    },
                );
                assert!(d.carrier_call.is_none(), "no carrier call buying available");
            }
        }
    }
}

/// Vectors D9, D10.
#[test]
fn d9_d10_move_not_found_and_bulk() {
    check_err("D9", run(NEW, &mv(RESELLER), Auth::Acc(MASTER), PLAIN), 404, "not_found", Some(NEW));
    let w = World::new();
    let conv = Converters::kazoo_defaults();
    let split = split_reconcilable(&[NOTNUM, AVAIL], &conv);
    let docs: Vec<_> = split.numbers.iter().map(|n| (n.clone(), stored(n.as_str()))).collect();
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: Some(&AuthBy::System),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let out = transition_many(docs.iter().map(|(n, d)| (n.clone(), d.as_ref())), &mv(CHILD), &ctx);
    assert_eq!(out.ok[AVAIL].doc.assigned_to, Some(acc(CHILD)));
    assert_eq!(split.ko.len(), 1);
}

/// `knm_carriers:acquire/1`, `knm_number_options:dry_run`: buying a discovered number acquires it from its carrier, except in a dry run.
#[test]
fn s4_4_discovery_acquires() {
    let d = check_ok(
        "BW",
        run(BW, &mv(RESELLER), Auth::System, PLAIN),
        Want { state: Some(NumberState::InService), ..Want::default() },
    );
    assert_eq!(d.carrier_call, Some(CarrierCall::Acquire { module: "knm_bandwidth2".into() }));
    let d = check_ok("BW dry", run(BW, &mv(RESELLER), Auth::System, DRY), Want::default());
    assert!(d.is_noop());
    // A search hit that is not in the database yet (`knm_search:discovery/1`) is written as a creation.
    let hit = crate::carriers::FoundNumber {
        number: e(NEW),
        module: crate::carriers::CarrierKind::Managed,
        state: NumberState::Discovery,
        carrier_data: Map::new(),
    };
    let w = World::new();
    let disc = hit.to_discovery_doc(NOW);
    let d = run_on(&w, NEW, Some(&disc), &mv(RESELLER), Auth::System, PLAIN).unwrap();
    assert!(d.dirty);
    assert_eq!(d.carrier_call, Some(CarrierCall::Acquire { module: "knm_managed".into() }));
    assert_eq!(d.writes[0], Write::SaveNumber { db: "numbers/+1555".into() });
}

/// `knm_numbers:save_numbers/1`, `knm_phone_number`'s dirty tracking: re-assignment removes the previous owner's copy; an unchanged move writes nothing.
#[test]
fn s7_writes_and_dirty_tracking() {
    let d = run(INSVC, &mv(CHILD), Auth::System, PLAIN).unwrap();
    assert_eq!(
        d.writes,
        vec![
            Write::SaveNumber { db: "numbers/+1555".into() },
            Write::SaveAccountCopy { account: acc(CHILD), db: acc(CHILD).db_name().into() },
            Write::DeleteAccountCopy {
                account: acc(RESELLER),
                db: acc(RESELLER).db_name().into(),
                ignore_missing_db: true
            },
        ]
    );
    assert_eq!(d.doc.modified, NOW);
    assert!(
        d.doc.used_by.is_none(),
        "changing owner clears used_by (`knm_number_states:move_phone_number_to_state`)"
    );
    let same = run(INSVC, &mv(RESELLER), Auth::System, PLAIN).unwrap();
    assert!(!same.dirty && same.is_noop());
    assert_eq!(same.doc, stored(INSVC).unwrap());
}

/// A migrated document is written back on its next decision even when nothing else changes
/// (`knm_phone_number`'s dirty tracking, `knm_phone_number:from_json/1`).
#[test]
fn s7_2_migrated_docs_are_dirty() {
    let w = World::new();
    let raw = json!({"_id": INSVC, "_rev": "1-a", "pvt_module_name": "wnm_local", "pvt_state": "in_service",
        "pvt_assigned_to": acc(RESELLER).as_str(), "pvt_created": 1, "pvt_modified": 2});
    let doc = NumberDoc::from_json(&raw, NOW).unwrap();
    let d = run_on(&w, INSVC, Some(&doc), &mv(RESELLER), Auth::System, PLAIN).unwrap();
    assert!(d.dirty);
    assert_eq!(d.writes.len(), 2);
    assert_eq!(d.doc.module_name, "knm_local");
}

/// Two instances race for AVAIL: after A's write wins, B re-reads and re-decides against the new
/// state and gets a clean error (the store's CAS retry loop relies on this).
#[test]
fn s4_race_redecision_gives_a_clean_error() {
    let w = World::new();
    let start = stored(AVAIL).unwrap();
    let a = run_on(&w, AVAIL, Some(&start), &mv(CHILD), Auth::Acc(CHILD), PLAIN).unwrap();
    let b = run_on(&w, AVAIL, Some(&start), &mv(UNRELATED), Auth::Acc(UNRELATED), PLAIN).unwrap();
    assert!(!a.writes.is_empty() && !b.writes.is_empty(), "both decide from the same rev");
    let mut after_a = a.doc.clone();
    after_a.rev = Some("11-new".into());
    check_err(
        "race",
        run_on(&w, AVAIL, Some(&after_a), &mv(UNRELATED), Auth::Acc(UNRELATED), PLAIN),
        403,
        "forbidden",
        None,
    );
    // Re-deciding A's own operation against A's result is a no-op, so a retry after an
    // ambiguous write is safe.
    let again = run_on(&w, AVAIL, Some(&after_a), &mv(CHILD), Auth::Acc(CHILD), PLAIN).unwrap();
    assert!(again.is_noop());
}

// ---------------------------------------------------------------------------------------------
// group E reserve

/// Vectors E1–E5, J4.
#[test]
fn e_reserve() {
    check_ok(
        "E1",
        run(AVAIL, &reserve(Some(RESELLER)), Auth::Acc(MASTER), PLAIN),
        Want {
            state: Some(NumberState::Reserved),
            assigned: Some(Some(RESELLER)),
            history: Some(&[RESELLER]),
            ..Want::default()
        },
    );
    let err = run(INSVC, &reserve(None), Auth::System, PLAIN).unwrap_err();
    assert_eq!(
        err.to_json(),
        json!({"code": 400, "error": "assign_failure", "cause": "field_undefined", "message": "invalid account to assign to"}),
        "E2"
    );
    check_ok(
        "E3",
        run(INSVC, &reserve(Some(RESELLER)), Auth::System, PLAIN),
        Want {
            state: Some(NumberState::Reserved),
            assigned: Some(Some(RESELLER)),
            history: Some(&[RESELLER]),
            dirty: Some(true),
            ..Want::default()
        },
    );
    check_ok(
        "E4",
        run(INSVC, &reserve(Some(CHILD)), Auth::System, PLAIN),
        Want {
            state: Some(NumberState::Reserved),
            assigned: Some(Some(CHILD)),
            history: Some(&[CHILD, RESELLER]),
            ..Want::default()
        },
    );
    check_err(
        "E5/J4",
        run(MDN, &reserve(Some(RESELLER)), Auth::System, PLAIN),
        400,
        "invalid_state_transition",
        Some("from 'MDN' to reserved"),
    );
}

// ---------------------------------------------------------------------------------------------
// group F update, assign_to_app

fn update_public(v: Value) -> Operation {
    Operation::Update(Update {
        public_fields: Some(PublicFields::Replace(public(v))),
        ..Update::default()
    })
}

/// Vectors F1–F7.
#[test]
fn f_update_and_mdn_guard() {
    check_ok(
        "F1",
        run(AVAIL, &Operation::Update(Update::default()), Auth::System, PLAIN),
        Want { dirty: Some(false), ported_in: Some(false), ..Want::default() },
    );
    let op = Operation::Update(Update { ported_in: Some(true), ..Update::default() });
    check_ok(
        "F2",
        run(AVAIL, &op, Auth::System, PLAIN),
        Want { dirty: Some(true), ported_in: Some(true), ..Want::default() },
    );
    let star = update_public(json!({"*": 42}));
    check_ok("F3", run(MDN, &star, Auth::Acc(MASTER), MDN_RUN), Want::default());
    check_err("F4", run(INSVC, &star, Auth::Acc(MASTER), MDN_RUN), 403, "forbidden", None);
    check_err("F5", run(MDN, &star, Auth::Acc(MASTER), PLAIN), 403, "forbidden", None);
    check_ok("F6", run(INSVC, &star, Auth::Acc(MASTER), PLAIN), Want::default());
    for n in [MDN, INSVC] {
        for opts in [PLAIN, MDN_RUN] {
            check_ok("F7", run(n, &star, Auth::System, opts), Want::default());
        }
    }
}

/// Vectors F8–F11: `assign_to_app`, dirty only on change.
#[test]
fn f_assign_to_app() {
    let w = World::new();
    let app = |u: Option<&str>| Operation::AssignToApp { used_by: u.map(str::to_owned) };
    let start = stored(INSVC).unwrap();
    assert_eq!(start.used_by.as_deref(), Some("callflow"));
    let d = check_ok(
        "F8",
        run(INSVC, &app(Some("my_app")), Auth::System, PLAIN),
        Want { dirty: Some(true), ..Want::default() },
    );
    assert_eq!(d.doc.used_by.as_deref(), Some("my_app"));
    // F9: undefined → dirty; then my_app → dirty; then undefined → dirty.
    let mut doc = start;
    for (u, want) in [(None, None), (Some("my_app"), Some("my_app")), (None, None)] {
        let d = run_on(&w, INSVC, Some(&doc), &app(u), Auth::System, PLAIN).unwrap();
        assert!(d.dirty, "F9");
        assert_eq!(d.doc.used_by.as_deref(), want);
        doc = d.doc;
    }
    let d = check_ok(
        "F10",
        run(MDN, &app(None), Auth::System, PLAIN),
        Want { dirty: Some(false), ..Want::default() },
    );
    assert!(d.doc.used_by.is_none() && d.is_noop());
    check_ok(
        "F10",
        run(MDN, &app(Some("my_app")), Auth::System, PLAIN),
        Want { dirty: Some(true), ..Want::default() },
    );
    let d = check_ok(
        "F11",
        run(AVAIL, &app(Some("my_app")), Auth::System, PLAIN),
        Want { dirty: Some(true), ..Want::default() },
    );
    assert_eq!(d.doc.used_by.as_deref(), Some("my_app"));
}

// ---------------------------------------------------------------------------------------------
// group G release

/// Vectors G1–G10, J2 (defaults: released_state available, no aging, no permanent delete).
#[test]
fn g_release() {
    let rel = Operation::Release;
    check_err("G1", run(NEW, &rel, Auth::System, PLAIN), 404, "not_found", Some(NEW));
    let d = check_ok(
        "G2",
        run(AVAIL, &rel, Auth::System, PLAIN),
        Want {
            state: Some(NumberState::Deleted),
            assigned: Some(None),
            dirty: Some(true),
            ..Want::default()
        },
    );
    assert_eq!(d.carrier_call, Some(CarrierCall::Disconnect { module: "knm_local".into() }));
    assert_eq!(
        d.writes,
        vec![
            Write::DeleteNumber { db: "numbers/+1555".into() },
            Write::DeleteAccountCopy {
                account: acc(RESELLER),
                db: acc(RESELLER).db_name().into(),
                ignore_missing_db: true
            },
        ]
    );
    check_err(
        "G3",
        run(TELNYX, &rel, Auth::System, PLAIN),
        400,
        "invalid_state_transition",
        Some("from available to available"),
    );
    let d = check_ok(
        "G4/G10",
        run(BADCARRIER, &rel, Auth::System, PLAIN),
        Want {
            state: Some(NumberState::Available),
            assigned: Some(None),
            history: Some(&[]),
            ..Want::default()
        },
    );
    assert_eq!(d.carrier_call, Some(CarrierCall::Disconnect { module: "knm_pacwest".into() }));
    assert_eq!(d.writes[0], Write::SaveNumber { db: "numbers/+1555".into() });
    for (auth, opts) in
        [(Auth::System, PLAIN), (Auth::Acc(MASTER), MDN_RUN), (Auth::Acc(RESELLER), MDN_RUN)]
    {
        check_ok(
            "G5/G8/J2",
            run(MDN, &rel, auth, opts),
            Want {
                state: Some(NumberState::Deleted),
                assigned: Some(None),
                history: Some(&[]),
                module: Some("knm_mdn"),
                ..Want::default()
            },
        );
    }
    for auth in [Auth::System, Auth::Acc(MASTER), Auth::Acc(RESELLER)] {
        check_ok(
            "G6",
            run(INSVC, &rel, auth, PLAIN),
            Want {
                state: Some(NumberState::Deleted),
                assigned: Some(None),
                history: Some(&[]),
                features: Some(&["local"]),
                ..Want::default()
            },
        );
        let d = check_ok(
            "G7/G9",
            run(HIST, &rel, auth, PLAIN),
            Want {
                state: Some(NumberState::Reserved),
                assigned: Some(Some(MASTER)),
                history: Some(&[MASTER]),
                features: Some(&["local"]),
                ..Want::default()
            },
        );
        assert!(d.carrier_call.is_none(), "still assigned: no disconnect");
    }
    check_err(
        "`knm_numbers:release/2` step 3",
        run(INSVC, &rel, Auth::Acc(CHILD), PLAIN),
        403,
        "forbidden",
        None,
    );
}

/// `knm_numbers:release/2` steps 4 and 8 with non-default config: aging, released state, permanent delete.
#[test]
fn s6_1_release_config() {
    let mut w = World::new();
    w.config.should_age = true;
    let d = run_on(
        &w,
        BADCARRIER,
        stored(BADCARRIER).as_ref(),
        &Operation::Release,
        Auth::System,
        PLAIN,
    )
    .unwrap();
    assert_eq!(d.doc.state, NumberState::Aging);
    w.config.should_age = false;
    w.config.released_state = NumberState::Released;
    let d = run_on(
        &w,
        BADCARRIER,
        stored(BADCARRIER).as_ref(),
        &Operation::Release,
        Auth::System,
        PLAIN,
    )
    .unwrap();
    assert_eq!(d.doc.state, NumberState::Released);
    check_err(
        "`knm_numbers:release/2` quirk",
        run_on(&w, TELNYX, stored(TELNYX).as_ref(), &Operation::Release, Auth::System, PLAIN),
        400,
        "invalid_state_transition",
        Some("from available to released"),
    );
    w.config.should_permanently_delete = true;
    let d = run_on(
        &w,
        BADCARRIER,
        stored(BADCARRIER).as_ref(),
        &Operation::Release,
        Auth::System,
        PLAIN,
    )
    .unwrap();
    assert_eq!(d.doc.state, NumberState::Deleted);
    // Release clears public fields and non-local features (step 4).
    let w = World::new();
    let d =
        run_on(&w, VITELITY, stored(VITELITY).as_ref(), &Operation::Release, Auth::System, PLAIN)
            .unwrap();
    assert!(d.doc.public.is_empty() && d.doc.features.is_empty());
    assert_eq!(d.doc.state, NumberState::Available);
}

// ---------------------------------------------------------------------------------------------
// group H hard delete

/// Vectors H1–H3.
#[test]
fn h_hard_delete() {
    for n in [INSVC, HIST, MDN] {
        for (auth, opts) in [(Auth::System, PLAIN), (Auth::Acc(MASTER), MDN_RUN)] {
            let d = check_ok(
                "H1",
                run(n, &Operation::Delete, auth, opts),
                Want {
                    state: Some(NumberState::Deleted),
                    features: Some(&["local"]),
                    ..Want::default()
                },
            );
            assert_eq!(
                d.writes[0],
                Write::DeleteAccountCopy {
                    account: acc(RESELLER),
                    db: acc(RESELLER).db_name().into(),
                    ignore_missing_db: false
                }
            );
            assert_eq!(d.writes[1], Write::DeleteNumber { db: "numbers/+1555".into() });
            assert!(d.carrier_call.is_none());
        }
    }
    check_ok(
        "H2",
        run(AVAIL, &Operation::Delete, Auth::System, PLAIN),
        Want { state: Some(NumberState::Deleted), dirty: Some(true), ..Want::default() },
    );
    let d = run(AVAIL, &Operation::Delete, Auth::System, DRY).unwrap();
    assert!(d.is_noop(), "`knm_number_options:dry_run`: a dry-run delete deletes nothing");
    for auth in [Auth::Acc(RESELLER), Auth::Acc(CHILD), Auth::None] {
        check_err("H3", run(INSVC, &Operation::Delete, auth, PLAIN), 403, "forbidden", None);
    }
}

// ---------------------------------------------------------------------------------------------
// `knm_number_states`' transition table the transition table

/// `knm_number_states`' transition table: every (current, target) cell, for a non-MDN and an MDN number, with system auth,
/// assign_to CHILD and the number owned by RESELLER.
#[test]
fn s4_5_transition_table() {
    use NumberState as S;
    let w = World::new();
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: Some(&AuthBy::System),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let child = acc(CHILD);
    for mdn in [false, true] {
        for current in S::ALL {
            for target in S::ALL {
                let mut doc = stored(INSVC).unwrap();
                if mdn {
                    doc.set_module_name("knm_mdn");
                }
                doc.state = current;
                let got = apply_transition(&mut doc, target, Some(&child), &ctx);
                let allowed: &[S] = match target {
                    S::Reserved => &[S::Reserved, S::Discovery, S::Available, S::InService],
                    S::InService => &[
                        S::Reserved,
                        S::Discovery,
                        S::Available,
                        S::InService,
                        S::Aging,
                        S::PortIn,
                    ],
                    S::Available => &[S::Available],
                    S::Aging => &[S::Available, S::Aging, S::Released],
                    S::PortIn => &[S::PortIn],
                    _ => &[],
                };
                let case = format!("{current} -> {target} (mdn {mdn})");
                let mdn_column =
                    matches!(target, S::Reserved | S::Available | S::Aging | S::PortIn);
                let want_cause = if !matches!(
                    target,
                    S::Reserved | S::InService | S::Available | S::Aging | S::PortIn
                ) {
                    None
                } else if mdn && mdn_column {
                    Some(format!("from 'MDN' to {target}"))
                } else {
                    Some(format!("from {current} to {target}"))
                };
                let mdn_blocks =
                    mdn && (mdn_column || (target == S::InService && current != S::InService));
                if allowed.contains(&current) && !mdn_blocks {
                    let acquire = got.unwrap_or_else(|e| panic!("{case}: {}", e.to_json()));
                    assert_eq!(doc.state, target, "{case}");
                    let want_acquire = matches!(
                        (current, target),
                        (S::Reserved | S::Discovery, S::Reserved) | (S::Discovery, S::InService)
                    );
                    assert_eq!(acquire, want_acquire, "{case}: acquire");
                    if target != S::Available {
                        assert_eq!(doc.assigned_to, Some(child.clone()), "{case}: owner");
                    } else {
                        assert_eq!(doc.assigned_to, Some(acc(RESELLER)), "{case}: state only");
                    }
                    if target == S::Reserved {
                        assert_eq!(doc.reserve_history.first(), Some(&child), "{case}: history");
                    }
                } else {
                    let err = got.err().unwrap_or_else(|| panic!("{case}: expected an error"));
                    let j = err.to_json();
                    assert_eq!(j["error"], "invalid_state_transition", "{case}: {j}");
                    assert_eq!(
                        j.get("cause").and_then(Value::as_str),
                        want_cause.as_deref(),
                        "{case}: {j}"
                    );
                }
            }
        }
    }
}

/// `knm_number_states`' transition table reserved → reserved: no assign_to is 403; same owner is `no_change_required`.
#[test]
fn s4_5_reserved_to_reserved() {
    let w = World::new();
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: Some(&AuthBy::System),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let mut doc = stored(RESV).unwrap();
    let err = apply_transition(&mut doc, NumberState::Reserved, None, &ctx).unwrap_err();
    assert_eq!(err.to_json()["error"], "forbidden");
    let err =
        apply_transition(&mut doc, NumberState::Reserved, Some(&acc(RESELLER)), &ctx).unwrap_err();
    assert_eq!(
        err.to_json(),
        json!({"code": 400, "error": "no_change_required", "message": "no change required"})
    );
    check_err(
        "UNRELATED",
        run(RESV, &reserve(Some(CHILD)), Auth::Acc(UNRELATED), PLAIN),
        403,
        "forbidden",
        None,
    );
}

/// `ChangeState`: the raw table for the crawler (aging → available is not in it; available →
/// aging is).
#[test]
fn s4_5_change_state() {
    let op = Operation::ChangeState { target: NumberState::Aging, assign_to: None };
    check_err(
        "in_service→aging",
        run(BADCARRIER, &op, Auth::System, PLAIN),
        400,
        "invalid_state_transition",
        Some("from in_service to aging"),
    );
    check_ok(
        "avail→aging",
        run(AVAIL, &op, Auth::System, PLAIN),
        Want { state: Some(NumberState::Aging), ..Want::default() },
    );
    let op = Operation::ChangeState { target: NumberState::Released, assign_to: None };
    check_err(
        "released",
        run(AVAIL, &op, Auth::System, PLAIN),
        400,
        "invalid_state_transition",
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// group L lookup_account

/// Vectors L1–L8.
#[test]
fn l_lookup_account() {
    let w = World::new();
    let ctx = Ctx {
        config: &w.config,
        accounts: &w.accounts,
        auth_by: Some(&AuthBy::System),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let look = |n: &str| lookup_account(&e(n), stored(n).as_ref(), None, true, &ctx);
    let ok = |n: &str| look(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    let l1 = ok(PORTIN);
    assert_eq!(
        (l1.account_id.clone(), l1.force_outbound, l1.pending_port),
        (acc(RESELLER), true, true)
    );
    let l2 = look(TELNYX).unwrap_err();
    assert!(
        matches!(&l2, Error::NotInService { account, .. } if account == acc(RESELLER).as_str()),
        "{l2}"
    );
    assert!(!ok(VITELITY).force_outbound, "L3");
    assert!(ok(INSVC).force_outbound, "L4");
    assert!(ok(MDN).force_outbound, "L5");
    assert!(!ok(BADCARRIER).force_outbound, "L6");
    let l7 = lookup_account(&e(NEWPORT), None, Some(&acc(RESELLER)), true, &ctx).unwrap();
    assert_eq!(
        (l7.account_id.clone(), l7.force_outbound, l7.pending_port),
        (acc(RESELLER), true, true)
    );
    assert!(ok(PORTIN3).force_outbound, "L8");
    assert!(matches!(lookup_account(&e(NEW), None, None, true, &ctx), Err(Error::NotFound { .. })));
    assert!(matches!(look(AVAIL), Err(Error::Unassigned { .. })));
    assert_eq!(ok(INSVC).to_json()["account_id"], acc(RESELLER).as_str());
}

/// The CLI's commands map onto the operations.
#[test]
fn cli_commands() {
    let a = acc(RESELLER);
    assert_eq!(operation_for_command("get", None, None).unwrap(), Operation::Get);
    assert_eq!(operation_for_command("activate", Some(a.as_str()), None).unwrap(), mv(RESELLER));
    assert_eq!(
        operation_for_command("create", Some(a.as_str()), Some(NumberState::Reserved)).unwrap(),
        Operation::Create(Create { state: Some(NumberState::Reserved), ..create(acc_s(RESELLER)) })
    );
    assert_eq!(
        operation_for_command("reserve", Some(a.as_str()), None).unwrap(),
        reserve(Some(RESELLER))
    );
    assert_eq!(operation_for_command("release", None, None).unwrap(), Operation::Release);
    assert_eq!(operation_for_command("delete", None, None).unwrap(), Operation::Delete);
    assert!(operation_for_command("identify", None, None).is_err());
    assert!(operation_for_command("reserve", None, Some(NumberState::Reserved)).is_err());
}

// ---------------------------------------------------------------------------------------------
// group I reconcile (4.3 only)

fn reconcile(to: Option<u8>, module: Option<&str>) -> Operation {
    Operation::Reconcile {
        assign_to: to.and_then(acc_s),
        module_name: module.map(str::to_owned),
        public_fields: None,
    }
}

/// Vectors I2–I6, `knm_numbers:reconcile/2` quirk (unknown numbers are not saved).
#[test]
fn i_reconcile() {
    check_err(
        "I2",
        run(AVAIL, &reconcile(None, None), Auth::System, PLAIN),
        400,
        "assign_failure",
        Some("field_undefined"),
    );
    check_ok(
        "I3",
        run(AVAIL, &reconcile(Some(RESELLER), None), Auth::Acc(CHILD), PLAIN),
        Want {
            state: Some(NumberState::InService),
            assigned: Some(Some(RESELLER)),
            dirty: Some(true),
            ..Want::default()
        },
    );
    check_ok(
        "I4",
        run(BW, &reconcile(Some(RESELLER), None), Auth::System, PLAIN),
        Want { module: Some("knm_bandwidth2"), ..Want::default() },
    );
    check_ok(
        "I5",
        run(BW, &reconcile(Some(RESELLER), Some("knm_mdn")), Auth::System, PLAIN),
        Want { module: Some("knm_mdn"), features: Some(&["local"]), ..Want::default() },
    );
    check_ok(
        "I6",
        run(MDN, &reconcile(Some(MASTER), None), Auth::System, MDN_RUN),
        Want { state: Some(NumberState::InService), dirty: Some(true), ..Want::default() },
    );
    let d = check_ok(
        "`knm_numbers:reconcile/2` quirk",
        run(NEW, &reconcile(Some(RESELLER), None), Auth::System, PLAIN),
        Want {
            state: Some(NumberState::InService),
            assigned: Some(Some(RESELLER)),
            ..Want::default()
        },
    );
    assert!(d.is_noop(), "an unknown number is returned but not saved");
}
