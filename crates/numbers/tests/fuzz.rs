//! Fuzz suite of the number manager's pure core: generated number documents, account documents
//! and `system_config/number_manager` documents — wrong types in every field, deep nesting, odd
//! unicode, JSON text with lone UTF-16 surrogates, huge arrays, odd numbers — through the
//! number document's decoding and migration (`NumberDoc::from_json`), its JSON forms, account
//! parsing, the transition decision (`transition`, `lookup_account`) and E.164 parsing.
//!
//! Properties: nothing panics; every refused input is an error that renders as the knm error
//! JSON (a code and an `error` name); every accepted document re-encodes to a document that
//! decodes again.
//!
//! Each property runs [`testkit::fuzz_config`] cases (defaults sized so the suite stays a few
//! seconds in a debug `cargo test`); `SWITCHBOARD_FUZZ_CASES=1000000 cargo test --release -p
//! numbers --test fuzz` is the long run.

use e164::{Converters, E164};
use numbers::lifecycle::{Create, Move, Update};
use numbers::{
    lookup_account, transition, AccountInfo, AccountMap, AuthBy, Config, Ctx, Error, NumberDoc,
    NumberState, Operation, PublicFields,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use testkit::fuzz_config;

/// Now, in Gregorian seconds (a fixed instant: the properties are deterministic).
const NOW: i64 = 63_900_000_000;

/// Strings a hostile tenant might write: plain words, account ids, numbers, odd unicode
/// (combining marks, right-to-left marks, emoji, NUL, the replacement character), very long.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{0,12}",
        2 => "[0-9a-f]{32}",
        2 => "\\+?[0-9]{0,20}",
        2 => any::<String>(),
        1 => "[\u{0}-\u{20}\u{7f}\u{202e}\u{200d}\u{fffd}\u{1f600}\u{301}]{0,8}",
        1 => (0usize..5000).prop_map(|n| "9".repeat(n)),
    ]
}

/// A number as stored or typed: E.164, national, with separators, non-ASCII digits, junk.
fn odd_number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\+1[2-9][0-9]{9}",
        2 => "\\+[0-9]{1,17}",
        2 => "[0-9 ().+-]{0,20}",
        1 => "[\u{660}-\u{669}\u{ff10}-\u{ff19}+]{0,16}",
        1 => odd_string(),
    ]
}

/// Any JSON value, nesting up to `depth` levels, arrays and objects up to 8 wide.
fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<u64>().prop_map(Value::from),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value nested `n` levels deep (`[[[…]]]` or `{"x": {"x": …}}`).
fn deep(n: usize, objects: bool) -> Value {
    let mut v = Value::from("bottom");
    for _ in 0..n {
        v = if objects { json!({ "x": v }) } else { json!([v]) };
    }
    v
}

/// A field's value: usually a plausible one, else anything (wrong types), a deep nest or a huge
/// array.
fn field(plausible: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => plausible,
        4 => json_value(2),
        1 => (0usize..200, any::<bool>()).prop_map(|(n, o)| deep(n, o)),
        1 => (0usize..1000).prop_map(|n| Value::Array((0..n).map(|i| json!(format!("f{i}"))).collect())),
    ]
}

fn state_name() -> BoxedStrategy<Value> {
    prop::sample::select(vec![
        "discovery",
        "available",
        "reserved",
        "in_service",
        "port_in",
        "port_out",
        "released",
        "aging",
        "deleted",
        "disconnected",
        "bogus",
        "",
    ])
    .prop_map(Value::from)
    .boxed()
}

fn account_value() -> BoxedStrategy<Value> {
    prop_oneof!["[0-9a-f]{32}".prop_map(Value::from), odd_string().prop_map(Value::from)].boxed()
}

fn module_name() -> BoxedStrategy<Value> {
    prop::sample::select(vec![
        "knm_local",
        "knm_mdn",
        "knm_bandwidth",
        "wnm_local",
        "knm_telnyx",
        "knm_other",
        "knm_managed",
        "knm_inum",
        "knm_reserved",
        "knm_pacwest",
        "",
    ])
    .prop_map(Value::from)
    .boxed()
}

fn features_value() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::collection::btree_map(
            prop::sample::select(vec![
                "local",
                "e911",
                "cnam",
                "prepend",
                "failover",
                "force_outbound",
                "carrier_name",
                "port",
                "sms",
                "mms",
                "ringback",
            ]),
            json_value(2),
            0..5
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        prop::collection::vec("[a-z_]{1,10}".prop_map(Value::from), 0..5).prop_map(Value::Array),
    ]
    .boxed()
}

/// A number document: every key Kazoo's number documents carry (4.3, older versions, obsolete
/// keys), each present or not, each value plausible or hostile, plus public fields.
fn number_doc() -> impl Strategy<Value = Value> {
    let keys: Vec<(&'static str, BoxedStrategy<Value>)> = vec![
        ("_id", odd_number().prop_map(Value::from).boxed()),
        ("_rev", "[1-9]-[0-9a-f]{8}".prop_map(Value::from).boxed()),
        ("pvt_type", Just(Value::from("number")).boxed()),
        ("pvt_state", state_name()),
        ("pvt_number_state", state_name()),
        ("pvt_assigned_to", account_value()),
        ("pvt_previously_assigned_to", account_value()),
        ("pvt_authorizing_account", account_value()),
        (
            "pvt_reserve_history",
            prop::collection::vec(account_value(), 0..4).prop_map(Value::Array).boxed(),
        ),
        ("pvt_module_name", module_name()),
        ("pvt_features", features_value()),
        (
            "pvt_features_allowed",
            prop::collection::vec("[a-z]{1,8}".prop_map(Value::from), 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
        (
            "pvt_features_denied",
            prop::collection::vec("[a-z]{1,8}".prop_map(Value::from), 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
        ("pvt_ported_in", any::<bool>().prop_map(Value::Bool).boxed()),
        (
            "pvt_used_by",
            prop::sample::select(vec!["callflow", "trunkstore", ""]).prop_map(Value::from).boxed(),
        ),
        ("pvt_created", any::<i64>().prop_map(Value::from).boxed()),
        ("pvt_modified", any::<i64>().prop_map(Value::from).boxed()),
        ("pvt_carrier_data", json_value(2).boxed()),
        ("pvt_region", odd_string().prop_map(Value::from).boxed()),
        ("pvt_db_name", odd_string().prop_map(Value::from).boxed()),
        ("features", features_value()),
        ("e911", json_value(2).boxed()),
        ("cnam", json_value(2).boxed()),
        ("dash_e911", json_value(2).boxed()),
        ("prepend", json_value(2).boxed()),
        ("force_outbound", any::<bool>().prop_map(Value::Bool).boxed()),
        ("used_by", odd_string().prop_map(Value::from).boxed()),
        ("id", odd_string().prop_map(Value::from).boxed()),
    ];
    let fields: Vec<_> = keys
        .into_iter()
        .map(|(k, plausible)| {
            prop::option::weighted(0.7, field(plausible)).prop_map(move |v| (k, v))
        })
        .collect();
    (fields, prop::collection::btree_map("[a-z_]{1,10}", json_value(2), 0..4)).prop_map(
        |(fields, public)| {
            let mut doc = Map::new();
            for (k, v) in public {
                doc.insert(k, v);
            }
            for (k, v) in fields {
                if let Some(v) = v {
                    doc.insert(k.to_owned(), v);
                }
            }
            Value::Object(doc)
        },
    )
}

/// An account document, plausible or hostile in every field.
fn account_doc() -> impl Strategy<Value = Value> {
    (
        prop::option::of(field(account_value())),
        prop::option::of(field(
            prop::collection::vec(account_value(), 0..4).prop_map(Value::Array).boxed(),
        )),
        prop::option::of(field(any::<bool>().prop_map(Value::Bool).boxed())),
        prop::option::of(field(any::<bool>().prop_map(Value::Bool).boxed())),
        prop::option::of(field(any::<bool>().prop_map(Value::Bool).boxed())),
        prop::option::of(field(account_value())),
    )
        .prop_map(|(id, tree, superduper, additions, enabled, reseller)| {
            let mut doc = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    doc.insert(k.to_owned(), v);
                }
            };
            put("_id", id);
            put("pvt_tree", tree);
            put("pvt_superduper_admin", superduper);
            put("pvt_wnm_allow_additions", additions);
            put("pvt_enabled", enabled);
            put("pvt_reseller_id", reseller);
            Value::Object(doc)
        })
}

fn public_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{0,10}", json_value(2), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

/// Any operation, with hostile arguments.
fn operation() -> impl Strategy<Value = Operation> {
    // Account ids are parsed at the edge (refused ones never reach an operation).
    let assign = prop::option::of(prop_oneof!["[0-9a-f]{32}", odd_string()])
        .prop_map(|raw| raw.and_then(|r| numbers::AccountId::parse(&r).ok()));
    let state = prop::option::of(
        state_name().prop_map(|v| v.as_str().and_then(|s| s.parse::<NumberState>().ok())),
    )
    .prop_map(Option::flatten);
    prop_oneof![
        Just(Operation::Get),
        (
            assign.clone(),
            state.clone(),
            prop::option::of(module_name()),
            any::<bool>(),
            prop::option::of(public_fields()),
            any::<bool>()
        )
            .prop_map(|(assign_to, state, module, ported_in, public_fields, porting)| {
                Operation::Create(Create {
                    assign_to,
                    state,
                    module_name: module.and_then(|m| m.as_str().map(str::to_owned)),
                    ported_in,
                    public_fields,
                    number_is_porting: porting,
                })
            }),
        (assign.clone(), prop::option::of(public_fields()), any::<bool>()).prop_map(
            |(assign_to, fields, merge)| {
                Operation::Move(Move {
                    assign_to,
                    public_fields: fields.map(|f| {
                        if merge {
                            PublicFields::Merge(f)
                        } else {
                            PublicFields::Replace(f)
                        }
                    }),
                    ..Move::default()
                })
            }
        ),
        assign.clone().prop_map(|assign_to| Operation::Reserve { assign_to }),
        (
            prop::option::of(public_fields()),
            any::<bool>(),
            prop::option::of("[a-z]{0,10}"),
            any::<bool>()
        )
            .prop_map(|(fields, merge, used_by, strip)| {
                Operation::Update(Update {
                    public_fields: fields.map(|f| {
                        if merge {
                            PublicFields::Merge(f)
                        } else {
                            PublicFields::Replace(f)
                        }
                    }),
                    used_by,
                    remove_denied_features: strip,
                    ..Update::default()
                })
            }),
        prop::option::of("[a-z]{0,10}").prop_map(|used_by| Operation::AssignToApp { used_by }),
        Just(Operation::Release),
        Just(Operation::Delete),
        (assign.clone(), prop::option::of(public_fields())).prop_map(
            |(assign_to, public_fields)| Operation::Reconcile {
                assign_to,
                module_name: None,
                public_fields
            }
        ),
        (state_name(), assign).prop_filter_map("a state", |(s, assign_to)| {
            let target = s.as_str()?.parse::<NumberState>().ok()?;
            Some(Operation::ChangeState { target, assign_to })
        }),
    ]
}

/// Who asks: the system, an account id, or junk.
fn auth_by() -> impl Strategy<Value = Option<AuthBy>> {
    prop_oneof![Just("system".to_owned()), "[0-9a-f]{32}", odd_string()]
        .prop_map(|raw| AuthBy::parse(&raw).ok())
}

/// A refusal renders as the knm error JSON.
fn assert_renders(err: &Error) {
    let body = err.to_json();
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{err:?} → {body}");
    assert!((400..600).contains(&err.code()), "{err:?}");
    assert!(!err.to_string().is_empty());
}

/// A number document decodes or is refused with an error naming it; a decoded one renders its
/// JSON forms and re-encodes to a document that decodes again.
fn check_number_doc(doc: &Value) -> Option<NumberDoc> {
    match NumberDoc::from_json(doc, NOW) {
        Ok(decoded) => {
            let stored = decoded.to_json();
            let _ = decoded.to_public_json();
            let _ = decoded.to_public_json_with_features(&["e911".to_owned()]);
            let _ = decoded.to_account_copy_json(Some("1-a"));
            let _ = decoded.features_list();
            let again = NumberDoc::from_json(&stored, NOW)
                .unwrap_or_else(|e| panic!("re-encoded document refused: {e}\n{stored}"));
            assert_eq!(again.id, decoded.id);
            Some(decoded)
        }
        Err(err) => {
            assert_renders(&err);
            None
        }
    }
}

fn accounts_of(docs: &[Value]) -> AccountMap {
    docs.iter().filter_map(|d| AccountInfo::from_json(d).ok()).collect()
}

proptest! {
    #![proptest_config(fuzz_config(1000))]

    /// Number documents: decode, migrate, render, re-encode; never a panic.
    #[test]
    fn fuzz_number_documents_decode_or_name_the_problem(doc in number_doc()) {
        check_number_doc(&doc);
    }

    /// Account documents and account ids: parsed or refused, never a panic.
    #[test]
    fn fuzz_account_documents_parse_or_are_refused(doc in account_doc(), raw in odd_string()) {
        match AccountInfo::from_json(&doc) {
            Ok(info) => prop_assert_eq!(info.id.as_str().len(), 32),
            Err(err) => assert_renders(&err),
        }
        match numbers::AccountId::parse(&raw) {
            Ok(id) => prop_assert_eq!(id.as_str(), raw.as_str()),
            Err(err) => assert_renders(&err.into()),
        }
        let _ = AuthBy::parse(&raw);
    }

    /// E.164 parsing and Kazoo's converters and classifiers over odd input.
    #[test]
    fn fuzz_numbers_parse_normalize_and_classify(raw in odd_number()) {
        static CONVERTERS: std::sync::OnceLock<Converters> = std::sync::OnceLock::new();
        let converters = CONVERTERS.get_or_init(Converters::kazoo_defaults);
        if let Ok(n) = E164::new(raw.clone()) {
            prop_assert!(n.as_str().starts_with('+'));
            prop_assert!(n.digits().bytes().all(|b| b.is_ascii_digit()));
        }
        let _ = converters.normalize(&raw);
        if let Some(n) = converters.to_e164(&raw) {
            prop_assert!(E164::new(n.as_str()).is_ok());
        }
        let _ = converters.classify(&raw);
    }

    /// JSON text as a tenant can store it: lone UTF-16 surrogates, deep brackets, huge numbers.
    /// What the parser accepts goes through the number and account decoders.
    #[test]
    fn fuzz_json_text_with_surrogates_and_nesting(
        pieces in prop::collection::vec(prop_oneof![
            Just("\\ud800".to_owned()), Just("\\udfff".to_owned()), Just("\\ud83d\\ude00".to_owned()),
            Just("\\u0000".to_owned()), "[a-z0-9 ]{0,6}",
        ], 0..6),
        depth in 0usize..200,
        big in "[0-9]{0,400}",
    ) {
        let text = pieces.concat();
        let doc = format!(
            r#"{{"_id": "+14155550100", "pvt_state": "in_service", "pvt_assigned_to": "0123456789abcdef0123456789abcdef", "name": "{text}", "x": {open}1{close}, "n": 1{big}}}"#,
            open = "[".repeat(depth),
            close = "]".repeat(depth),
        );
        match serde_json::from_str::<Value>(&doc) {
            Ok(value) => {
                check_number_doc(&value);
                let _ = AccountInfo::from_json(&value);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }
}

proptest! {
    // Each case decides every operation twice (with and without the document) over freshly
    // generated accounts and configuration: fewer cases, the same long-run knob.
    #![proptest_config(fuzz_config(300))]

    /// The transition decision and `lookup_account` over hostile documents, accounts, configs
    /// and operations: a decision or a knm error, never a panic.
    #[test]
    fn fuzz_transitions_decide_or_refuse(
        doc in number_doc(),
        accounts in prop::collection::vec(account_doc(), 0..4),
        config in prop::option::of(prop_oneof![json_value(3), number_manager_config()]),
        op in operation(),
        by in auth_by(),
        number in odd_number(),
        dry_run in any::<bool>(),
        mdn_run in any::<bool>(),
    ) {
        static DEFAULTS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        let defaults = DEFAULTS.get_or_init(Config::kazoo_defaults);
        let parsed;
        let config = match config.as_ref().map(Config::from_system_config) {
            None => defaults,
            Some(Ok(config)) => {
                parsed = config;
                &parsed
            }
            Some(Err(err)) => {
                assert_renders(&err);
                defaults
            }
        };
        let accounts = accounts_of(&accounts);
        let current = check_number_doc(&doc);
        let number = current
            .as_ref()
            .map(|d| d.id.clone())
            .or_else(|| E164::new(number.clone()).ok())
            .unwrap_or_else(|| E164::new("+14155550100").unwrap());
        let ctx = Ctx { config, accounts: &accounts, auth_by: by.as_ref(), dry_run, mdn_run, now: NOW };
        for current in [current.as_ref(), None] {
            match transition(&number, current, &op, &ctx) {
                Ok(decision) => {
                    let _ = decision.doc.to_json();
                    let _ = decision.is_noop();
                }
                Err(err) => assert_renders(&err),
            }
            let owner = numbers::AccountId::parse("0123456789abcdef0123456789abcdef").ok();
            match lookup_account(&number, current, owner.as_ref(), true, &ctx) {
                Ok(found) => prop_assert_eq!(found.number.as_str(), number.as_str()),
                Err(err) => assert_renders(&err),
            }
        }
    }
}

/// A `system_config/number_manager` document with plausible keys and hostile values.
fn number_manager_config() -> impl Strategy<Value = Value> {
    (
        prop::option::of(field(
            prop::collection::vec(module_name(), 0..3).prop_map(Value::Array).boxed(),
        )),
        prop::option::of(field(state_name())),
        prop::option::of(field(odd_string().prop_map(Value::from).boxed())),
        prop::option::of(field(json_value(3).boxed())),
        prop::option::of(field(any::<bool>().prop_map(Value::Bool).boxed())),
    )
        .prop_map(|(carriers, released, regex, classifiers, flag)| {
            let mut doc = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    doc.insert(k.to_owned(), v);
                }
            };
            put("carrier_modules", carriers);
            put("released_state", released);
            put("reconcile_regex", regex);
            put("classifiers", classifiers);
            put("should_age", flag);
            json!({"_id": "number_manager", "default": Value::Object(doc)})
        })
}
