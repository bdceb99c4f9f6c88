//! A Mango selector matcher (CouchDB's `_find` / `filter=_selector` language) over JSON documents.
//!
//! Used by the embedded store's change feeds and by the follower as a client-side filter. The
//! semantics follow CouchDB's `mango_selector.erl`:
//! - a field that is missing matches nothing except `{"$exists": false}`; combinators nested
//!   inside a field condition (`{"a": {"$not": …}}`) apply to the field's condition, so `$not` of
//!   a missing field matches;
//! - comparisons (`$gt`, `$lt`, …) use CouchDB's collation across types:
//!   `null < false < true < numbers < strings < arrays < objects`; strings compare by code point
//!   (CouchDB uses ICU for strings; the two agree on ASCII);
//! - implicit equality (`{"a": 1}`) and `$eq` are exact (an array field does not match one of its
//!   elements; use `$elemMatch` or `$all` for that);
//! - `$in` and `$nin` look into array fields, as Mango does;
//! - an unknown operator or a malformed argument (a non-array `$in`, a broken `$regex`) matches
//!   nothing, where CouchDB would refuse the query with 400.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Whether `doc` matches the Mango `selector`.
///
/// Supported: implicit `$eq`, `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`,
/// `$exists`, `$type`, `$regex`, `$beginsWith`, `$mod`, `$size`, `$all`, `$elemMatch`,
/// `$allMatch`, `$and`, `$or`, `$nor`, `$not`; dotted field paths (`a.b.c`, `\.` for a literal
/// dot, numeric segments index arrays) and nested objects as paths (`{"a": {"b": 1}}` is
/// `{"a.b": 1}`).
pub fn matches(selector: &Value, doc: &Value) -> bool {
    match_cond(selector, Some(doc))
}

/// Matches a condition against a value that may be missing. A condition object's keys are either
/// operators (applying to `value`) or field names (descending into `value`); all must hold.
fn match_cond(cond: &Value, value: Option<&Value>) -> bool {
    match cond {
        Value::Object(map) => map.iter().all(|(key, arg)| match_key(key, arg, value)),
        // A bare value where a condition is expected is an implicit `$eq`.
        other => value.is_some_and(|v| collate(v, other) == Ordering::Equal),
    }
}

fn match_key(key: &str, arg: &Value, value: Option<&Value>) -> bool {
    if !key.starts_with('$') {
        let field = value.and_then(|v| get_path(v, key));
        return match arg {
            Value::Object(_) => match_cond(arg, field),
            other => field.is_some_and(|v| collate(v, other) == Ordering::Equal),
        };
    }
    match key {
        "$and" => as_array(arg).is_some_and(|cs| cs.iter().all(|c| match_cond(c, value))),
        "$or" => as_array(arg).is_some_and(|cs| cs.iter().any(|c| match_cond(c, value))),
        "$nor" => as_array(arg).is_some_and(|cs| !cs.iter().any(|c| match_cond(c, value))),
        "$not" => arg.is_object() && !match_cond(arg, value),
        "$exists" => match arg {
            Value::Bool(want) => value.is_some() == *want,
            _ => false,
        },
        _ => value.is_some_and(|v| match_operator(key, arg, v)),
    }
}

/// The leaf operators, on a value that is present.
fn match_operator(op: &str, arg: &Value, value: &Value) -> bool {
    match op {
        "$eq" => collate(value, arg) == Ordering::Equal,
        "$ne" => collate(value, arg) != Ordering::Equal,
        "$gt" => collate(value, arg) == Ordering::Greater,
        "$gte" => collate(value, arg) != Ordering::Less,
        "$lt" => collate(value, arg) == Ordering::Less,
        "$lte" => collate(value, arg) != Ordering::Greater,
        "$in" => as_array(arg).is_some_and(|args| match value {
            Value::Array(values) => values.iter().any(|v| contains(args, v)),
            v => contains(args, v),
        }),
        "$nin" => as_array(arg).is_some_and(|args| match value {
            Value::Array(values) => !values.iter().any(|v| contains(args, v)),
            v => !contains(args, v),
        }),
        "$type" => arg.as_str().is_some_and(|t| type_name(value) == t),
        "$regex" => match (arg.as_str(), value.as_str()) {
            (Some(pattern), Some(s)) => regex_matches(pattern, s),
            _ => false,
        },
        "$beginsWith" => match (arg.as_str(), value.as_str()) {
            (Some(prefix), Some(s)) => s.starts_with(prefix),
            _ => false,
        },
        "$mod" => match (as_array(arg), value.as_i64()) {
            (Some([divisor, remainder]), Some(n)) => match (divisor.as_i64(), remainder.as_i64()) {
                (Some(d), Some(r)) if d != 0 => n % d == r,
                _ => false,
            },
            _ => false,
        },
        "$size" => match (value, arg.as_u64()) {
            (Value::Array(values), Some(n)) => values.len() as u64 == n,
            _ => false,
        },
        "$all" => match (value, as_array(arg)) {
            (Value::Array(values), Some(args)) => args.iter().all(|a| contains(values, a)),
            _ => false,
        },
        "$elemMatch" => match value {
            Value::Array(values) => values.iter().any(|v| match_cond(arg, Some(v))),
            _ => false,
        },
        "$allMatch" => match value {
            Value::Array(values) => {
                !values.is_empty() && values.iter().all(|v| match_cond(arg, Some(v)))
            }
            _ => false,
        },
        _ => false,
    }
}

/// How many compiled `$regex` patterns each thread keeps: a feed applies the same selector to
/// every row, so compiling once per pattern matters.
const REGEX_CACHE_SIZE: usize = 64;

thread_local! {
    static REGEX_CACHE: std::cell::RefCell<Vec<(String, Option<regex::Regex>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn regex_matches(pattern: &str, s: &str) -> bool {
    REGEX_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, compiled)) = cache.iter().find(|(p, _)| p == pattern) {
            return compiled.as_ref().is_some_and(|re| re.is_match(s));
        }
        let compiled = regex::Regex::new(pattern).ok();
        let result = compiled.as_ref().is_some_and(|re| re.is_match(s));
        if cache.len() >= REGEX_CACHE_SIZE {
            cache.remove(0);
        }
        cache.push((pattern.to_owned(), compiled));
        result
    })
}

fn as_array(v: &Value) -> Option<&[Value]> {
    v.as_array().map(Vec::as_slice)
}

fn contains(haystack: &[Value], needle: &Value) -> bool {
    haystack.iter().any(|h| collate(h, needle) == Ordering::Equal)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Follows a dotted path (`a.b.0.c`; `\.` is a literal dot) into `value`.
fn get_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for segment in split_path(path) {
        current = match current {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn split_path(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => current.push(escaped),
                None => current.push('\\'),
            },
            '.' => segments.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    segments.push(current);
    segments
}

/// CouchDB's view collation across JSON types (strings by code point).
pub(crate) fn collate(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(false) => 1,
            Value::Bool(true) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i.cmp(&j),
                _ => {
                    let (fx, fy) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                    fx.partial_cmp(&fy).unwrap_or(Ordering::Equal)
                }
            },
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                let o = collate(i, j);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => collate_objects(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Objects compare key by key, then value by value, in their own order, then by size (CouchDB's
/// rule for view keys).
fn collate_objects(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
        let o = kx.cmp(ky).then_with(|| collate(vx, vy));
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "_id": "+14155550100",
            "pvt_type": "number",
            "pvt_state": "in_service",
            "weight": 7,
            "ratio": 0.5,
            "enabled": true,
            "nothing": null,
            "tags": ["a", "b", "c"],
            "scores": [1, 5, 9],
            "gateways": [{"server": "10.0.0.1", "port": 5060}, {"server": "10.0.0.2"}],
            "carrier": {"name": "telnyx", "data": {"order.id": "o-1"}},
        })
    }

    fn check(selector: Value, expected: bool) {
        assert_eq!(matches(&selector, &doc()), expected, "selector {selector}");
    }

    #[test]
    fn implicit_and_explicit_equality() {
        check(json!({"pvt_type": "number"}), true);
        check(json!({"pvt_type": "resource"}), false);
        check(json!({"pvt_type": "number", "weight": 7}), true);
        check(json!({"pvt_type": "number", "weight": 8}), false);
        check(json!({"weight": {"$eq": 7.0}}), true);
        check(json!({"weight": {"$ne": 7}}), false);
        check(json!({"tags": ["a", "b", "c"]}), true);
        check(json!({"tags": "a"}), false);
        check(json!({"nothing": null}), true);
        check(json!({}), true);
    }

    #[test]
    fn missing_fields_match_only_exists_false() {
        check(json!({"missing": {"$ne": 1}}), false);
        check(json!({"missing": {"$exists": false}}), true);
        check(json!({"missing": {"$exists": true}}), false);
        check(json!({"weight": {"$exists": true}}), true);
        check(json!({"nothing": {"$exists": true}}), true);
        check(json!({"missing": {"$not": {"$eq": 1}}}), true);
        check(json!({"missing": {"$gt": null}}), false);
    }

    #[test]
    fn comparisons_use_couchdb_collation() {
        check(json!({"weight": {"$gt": 6, "$lte": 7}}), true);
        check(json!({"weight": {"$gte": 8}}), false);
        check(json!({"weight": {"$lt": "0"}}), true); // numbers sort before strings
        check(json!({"ratio": {"$gt": 0.25, "$lt": 1}}), true);
        check(json!({"pvt_state": {"$gt": "available"}}), true);
        check(json!({"enabled": {"$gt": false}}), true);
        check(json!({"nothing": {"$lt": false}}), true);
        check(json!({"tags": {"$gt": "zzz"}}), true); // arrays sort after strings
    }

    #[test]
    fn membership_operators() {
        check(json!({"pvt_state": {"$in": ["reserved", "in_service"]}}), true);
        check(json!({"pvt_state": {"$nin": ["reserved", "in_service"]}}), false);
        check(json!({"tags": {"$in": ["z", "b"]}}), true);
        check(json!({"tags": {"$nin": ["z", "b"]}}), false);
        check(json!({"tags": {"$nin": ["z"]}}), true);
        check(json!({"tags": {"$all": ["c", "a"]}}), true);
        check(json!({"tags": {"$all": ["c", "z"]}}), false);
        check(json!({"tags": {"$size": 3}}), true);
        check(json!({"tags": {"$size": 2}}), false);
        check(json!({"pvt_state": {"$in": "in_service"}}), false); // malformed: not an array
    }

    #[test]
    fn types_regex_and_mod() {
        check(json!({"weight": {"$type": "number"}}), true);
        check(json!({"tags": {"$type": "array"}}), true);
        check(json!({"carrier": {"$type": "object"}}), true);
        check(json!({"nothing": {"$type": "null"}}), true);
        check(json!({"enabled": {"$type": "string"}}), false);
        check(json!({"_id": {"$regex": "^\\+1415"}}), true);
        check(json!({"_id": {"$regex": "^\\+44"}}), false);
        check(json!({"weight": {"$regex": "7"}}), false); // only strings
        check(json!({"_id": {"$regex": "("}}), false); // broken pattern
        check(json!({"_id": {"$beginsWith": "+1415"}}), true);
        check(json!({"_id": {"$beginsWith": "+44"}}), false);
        check(json!({"weight": {"$mod": [4, 3]}}), true);
        check(json!({"weight": {"$mod": [0, 3]}}), false);
    }

    #[test]
    fn combinators() {
        check(json!({"$or": [{"weight": 1}, {"pvt_state": "in_service"}]}), true);
        check(json!({"$and": [{"weight": 7}, {"pvt_state": "available"}]}), false);
        check(json!({"$nor": [{"weight": 1}, {"pvt_state": "available"}]}), true);
        check(json!({"$not": {"weight": 7}}), false);
        check(json!({"weight": {"$not": {"$gt": 10}}}), true);
        check(json!({"weight": {"$or": [{"$lt": 0}, {"$gt": 5}]}}), true);
        check(json!({"$or": "nope"}), false);
    }

    #[test]
    fn element_matching() {
        check(json!({"scores": {"$elemMatch": {"$gt": 8}}}), true);
        check(json!({"scores": {"$elemMatch": {"$gt": 9}}}), false);
        check(json!({"gateways": {"$elemMatch": {"server": "10.0.0.2"}}}), true);
        check(json!({"gateways": {"$elemMatch": {"server": "10.0.0.3"}}}), false);
        check(json!({"gateways": {"$allMatch": {"server": {"$regex": "^10\\."}}}}), true);
        check(json!({"gateways": {"$allMatch": {"port": 5060}}}), false);
        check(json!({"weight": {"$elemMatch": {"$gt": 0}}}), false);
    }

    #[test]
    fn field_paths() {
        check(json!({"carrier.name": "telnyx"}), true);
        check(json!({"carrier": {"name": "telnyx"}}), true);
        check(json!({"carrier": {"name": {"$ne": "telnyx"}}}), false);
        check(json!({"carrier.data.order\\.id": "o-1"}), true);
        check(json!({"gateways.0.server": "10.0.0.1"}), true);
        check(json!({"gateways.1.port": {"$exists": false}}), true);
        check(json!({"weight.x": {"$exists": false}}), true);
    }

    #[test]
    fn deleted_tombstones_can_be_selected() {
        let tombstone = json!({"_id": "x", "_rev": "2-ab", "_deleted": true});
        assert!(matches(&json!({"_deleted": true}), &tombstone));
        assert!(!matches(&json!({"pvt_type": "resource"}), &tombstone));
    }
}
