//! Fuzzing the decoding of what CouchDB sends (`docstore::decode`): `_changes` pages, `_all_docs`
//! pages, feed lines and documents as raw bytes, with wrong types in every field, deep nesting
//! (up to 100,000 levels), lone and paired surrogate escapes, invalid UTF-8 and huge arrays.
//! Properties: no panic, no stack overflow, every row either decoded or named in an issue, and
//! every row that `serde_json` decodes as it is comes out the same.
//!
//! `SWITCHBOARD_FUZZ_CASES=N cargo test -p docstore --test fuzz` runs N cases per property.

use docstore::decode::{
    decode_all_docs_page, decode_changes_page, decode_feed_line, decode_value, FeedLine, MAX_DEPTH,
};
use docstore::{RowAction, Seq};
use proptest::prelude::*;
use serde_json::{json, Value};
use testkit::fuzz_config;

/// A JSON scalar or small structure, any type: what a hostile field may hold.
fn any_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f).to_string()),
        "[a-z0-9 ]{0,8}".prop_map(|s| json!(s).to_string()),
        string_with_escapes(),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4).prop_map(|kv| {
                let fields: Vec<String> =
                    kv.into_iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A JSON string literal with escapes: lone high or low surrogates, valid pairs, escaped
/// backslashes before `u`, quotes.
fn string_with_escapes() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z]{0,3}".prop_map(String::from),
        (0xD800u16..=0xDBFF).prop_map(|u| format!("\\u{u:04x}")),
        (0xDC00u16..=0xDFFF).prop_map(|u| format!("\\u{u:04X}")),
        ((0xD800u16..=0xDBFF), (0xDC00u16..=0xDFFF))
            .prop_map(|(h, l)| format!("\\u{h:04x}\\u{l:04x}")),
        Just("\\\\ud800".to_string()),
        Just("\\\"".to_string()),
        Just("\\n".to_string()),
        Just("é".to_string()),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// A value nested `depth` levels deep, arrays or objects.
fn nested(depth: usize, objects: bool) -> String {
    let (open, close) = if objects { ("{\"k\":", "}") } else { ("[", "]") };
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

/// A document field value: ordinary, hostile, or nested up to 100,000 levels.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any_json(),
        1 => (1usize..100_000, any::<bool>()).prop_map(|(d, o)| nested(d, o)),
        1 => (100usize..300, any::<bool>()).prop_map(|(d, o)| nested(d, o)),
        1 => (0usize..5_000).prop_map(|n| format!("[{}]", vec!["0"; n].join(","))),
    ]
}

/// A change row: well formed (with a hostile document) or with wrong types in its fields.
#[derive(Debug, Clone)]
struct Row {
    text: String,
    /// The id, when the row's shape is right (then it must be decoded).
    good_id: Option<String>,
}

fn change_row() -> impl Strategy<Value = Row> {
    let good = ("[a-z0-9]{1,8}", 1u64..1000, field_value()).prop_map(|(id, seq, value)| Row {
        text: format!(
            r#"{{"seq":{seq},"id":{},"changes":[{{"rev":"1-a"}}],"doc":{{"_id":{},"x":{value}}}}}"#,
            json!(id),
            json!(id)
        ),
        good_id: Some(id),
    });
    let bad = (any_json(), any_json(), any_json(), any_json(), any_json()).prop_map(
        |(seq, id, changes, deleted, doc)| Row {
            text: format!(
                r#"{{"seq":{seq},"id":{id},"changes":{changes},"deleted":{deleted},"doc":{doc}}}"#
            ),
            good_id: None,
        },
    );
    prop_oneof![3 => good, 2 => bad, 1 => any_json().prop_map(|text| Row { text, good_id: None })]
}

fn all_docs_row() -> impl Strategy<Value = Row> {
    let good = ("[a-z0-9]{1,8}", field_value()).prop_map(|(id, value)| Row {
        text: format!(
            r#"{{"id":{},"key":{},"value":{{"rev":"1-a"}},"doc":{{"_id":{},"x":{value}}}}}"#,
            json!(id),
            json!(id),
            json!(id)
        ),
        good_id: Some(id),
    });
    let bad = (any_json(), any_json(), any_json()).prop_map(|(id, value, doc)| Row {
        text: format!(r#"{{"id":{id},"value":{value},"doc":{doc}}}"#),
        good_id: None,
    });
    prop_oneof![3 => good, 2 => bad]
}

/// How many arrays and objects are nested in a value, at most (without recursion).
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                max = max.max(d);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// What `serde_json` makes of a row as it is, when it can (its own limits: depth 128).
fn plain(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

proptest! {
    #![proptest_config(fuzz_config(1000))]

    #[test]
    fn fuzz_changes_pages(rows in prop::collection::vec(change_row(), 0..6), pending in any_json()) {
        let page = format!(
            r#"{{"results":[{}],"last_seq":"9-z","pending":{pending}}}"#,
            rows.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(",")
        );
        let decoded = decode_changes_page("offnet", page.as_bytes(), &Seq::zero(), None)
            .expect("a page of rows decodes, whatever the rows hold");
        prop_assert_eq!(decoded.last_seq, Seq::from_json(json!("9-z")));
        let skipped = decoded.issues.iter().filter(|i| i.action == RowAction::Skipped).count();
        prop_assert_eq!(decoded.results.len() + skipped, rows.len(), "every row decoded or named");
        for row in &rows {
            let Some(id) = &row.good_id else { continue };
            if rows.iter().filter(|r| r.text.contains(&format!("\"id\":{}", json!(id)))).count() > 1 {
                // Another row has the same id: which one `find` picks is not this row.
                continue;
            }
            let change = decoded.results.iter().find(|c| &c.id == id);
            prop_assert!(change.is_some(), "a well-formed row is decoded: {}", id);
            let doc = change.unwrap().doc.as_ref().expect("with its document");
            prop_assert!(depth(doc) <= MAX_DEPTH);
            // Unchanged unless the page named the row as repaired (the cut depth counts from the
            // page, so a row may be repaired in a page and not alone).
            let repaired = decoded.issues.iter().any(|i| i.id.as_deref() == Some(id.as_str()));
            if let (Some(original), false) = (plain(&row.text), repaired) {
                prop_assert_eq!(Some(doc), original.get("doc"), "unchanged when not repaired");
            }
        }
    }

    #[test]
    fn fuzz_all_docs_pages(rows in prop::collection::vec(all_docs_row(), 0..6)) {
        let page = format!(
            r#"{{"total_rows":{},"offset":0,"rows":[{}]}}"#,
            rows.len(),
            rows.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(",")
        );
        let decoded = decode_all_docs_page("accounts", page.as_bytes()).expect("the page decodes");
        let skipped = decoded.issues.iter().filter(|i| i.action == RowAction::Skipped).count();
        prop_assert_eq!(decoded.rows.len() + skipped, rows.len());
        for row in &rows {
            let Some(id) = &row.good_id else { continue };
            prop_assert!(decoded.rows.iter().any(|r| &r.id == id), "{} decoded", id);
        }
        for issue in &decoded.issues {
            prop_assert_eq!(&issue.db, "accounts");
        }
    }

    #[test]
    fn fuzz_feed_lines(row in change_row(), garbage in prop::collection::vec(any::<u8>(), 0..64)) {
        match decode_feed_line("offnet", row.text.as_bytes(), None) {
            FeedLine::Change(change, _) => {
                if let Some(doc) = &change.doc {
                    prop_assert!(depth(doc) <= MAX_DEPTH);
                }
            }
            FeedLine::Skipped(issue) => {
                prop_assert!(row.good_id.is_none(), "a good row is never skipped: {}", issue);
            }
            FeedLine::Heartbeat | FeedLine::End(_) | FeedLine::Error { .. } => {
                prop_assert!(row.good_id.is_none());
            }
        }
        // Arbitrary bytes (invalid UTF-8 included): an answer, never a panic.
        let _ = decode_feed_line("offnet", &garbage, None);
        let mut spliced = row.text.clone().into_bytes();
        spliced.extend_from_slice(&garbage);
        let _ = decode_feed_line("offnet", &spliced, None);
    }

    #[test]
    fn fuzz_documents(value in field_value(), junk in prop::collection::vec(any::<u8>(), 0..16)) {
        let doc = format!(r#"{{"_id":"d","x":{value}}}"#);
        let (decoded, repaired) = decode_value(doc.as_bytes(), "doc").expect("a document decodes");
        prop_assert!(depth(&decoded) <= MAX_DEPTH);
        match plain(&doc) {
            Some(original) if repaired.is_none() => prop_assert_eq!(&decoded, &original),
            _ => {}
        }
        let mut bytes = doc.into_bytes();
        bytes.splice(1..1, junk);
        let _ = decode_value(&bytes, "doc");
    }
}
