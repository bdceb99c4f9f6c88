//! Resource `formatters` (`kz_formatters`, `kz_formatters`): rewrite endpoint or route-request values.
//!
//! A formatter map is keyed by field name (matched after normalisation: lower case, `-` → `_`,
//! so `From` matches `from`); its value is one formatter object or a list of them. Top-level
//! keys of the target are formatted, and keys inside its `Custom-SIP-Headers` (e.g.
//! `Diversions`). For `From`, `To` and `Request` only the user part (before `@`) changes.

use e164::{Converters, Pattern};
use serde_json::{Map, Value};

/// Which way a call goes; selects formatters by their `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Calls arriving from a carrier (route requests).
    Inbound,
    /// Calls sent to a carrier (bridge endpoints).
    Outbound,
}

/// Applies `formatters` to `target` for `direction` (`kz_formatters`).
///
/// Per field, the formatters that apply to this direction (`direction` unset, equal, or
/// `"both"` — the Kazoo bug in `kz_formatters:is_formatter_applicable/2` fixed) are tried in list order; inside one, the actions are tried in the
/// order `strip`, `value`, `match_invite_format`, `regex`, and the first that applies ends the
/// field. `match_invite_format` uses the target's `Invite-Format` (`e164`, `npan`, `1npan`).
pub fn apply_formatters(
    target: &mut Map<String, Value>,
    formatters: &Map<String, Value>,
    direction: Direction,
    converters: &Converters,
) {
    let invite_format = target.get("Invite-Format").and_then(Value::as_str).map(str::to_owned);
    for (field, spec) in formatters {
        let wanted = normalize_key(field);
        let list: Vec<&Map<String, Value>> = match spec {
            Value::Object(one) => vec![one],
            Value::Array(many) => many.iter().filter_map(Value::as_object).collect(),
            _ => continue,
        };
        let applicable: Vec<&Map<String, Value>> =
            list.into_iter().filter(|it| applies(it, direction)).collect();
        if applicable.is_empty() {
            continue;
        }
        let ctx = Ctx { invite_format: invite_format.as_deref(), converters };
        if let Some(key) = find_key(target, &wanted) {
            format_field(target, &key, &wanted, &applicable, &ctx);
        } else if let Some(Value::Object(headers)) = target.get_mut("Custom-SIP-Headers") {
            if let Some(key) = find_key(headers, &wanted) {
                format_field(headers, &key, &wanted, &applicable, &ctx);
            }
        }
    }
}

struct Ctx<'a> {
    invite_format: Option<&'a str>,
    converters: &'a Converters,
}

fn applies(formatter: &Map<String, Value>, direction: Direction) -> bool {
    match formatter.get("direction").and_then(Value::as_str) {
        None | Some("both") => true,
        Some("inbound") => direction == Direction::Inbound,
        Some("outbound") => direction == Direction::Outbound,
        Some(_) => false,
    }
}

fn normalize_key(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

fn find_key(map: &Map<String, Value>, wanted: &str) -> Option<String> {
    map.keys().find(|key| normalize_key(key) == wanted).cloned()
}

fn format_field(
    map: &mut Map<String, Value>,
    key: &str,
    normalized: &str,
    formatters: &[&Map<String, Value>],
    ctx: &Ctx<'_>,
) {
    let uri_like = matches!(normalized, "from" | "to" | "request");
    for formatter in formatters {
        if formatter.get("strip").and_then(Value::as_bool) == Some(true) {
            map.remove(key);
            return;
        }
        let Some(current) = map.get(key).cloned() else { return };
        let rewritten = match current {
            Value::String(text) => rewrite(&text, formatter, ctx, uri_like).map(Value::String),
            // Diversions: a list of SIP addresses, formatted entry by entry.
            Value::Array(items) => {
                let mut changed = false;
                let out: Vec<Value> = items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(text) => match rewrite_diversion(&text, formatter, ctx) {
                            Some(new) => {
                                changed = true;
                                Value::String(new)
                            }
                            None => Value::String(text),
                        },
                        other => other,
                    })
                    .collect();
                changed.then_some(Value::Array(out))
            }
            _ => None,
        };
        if let Some(value) = rewritten {
            map.insert(key.to_owned(), value);
            return;
        }
    }
}

/// The actions `value`, `match_invite_format`, `regex` on one string (user part if `uri_like`).
fn rewrite(
    text: &str,
    formatter: &Map<String, Value>,
    ctx: &Ctx<'_>,
    uri_like: bool,
) -> Option<String> {
    let (user, rest) = if uri_like {
        match text.split_once('@') {
            Some((user, realm)) => (user, Some(realm)),
            None => (text, None),
        }
    } else {
        (text, None)
    };
    let new_user = action(user, formatter, ctx)?;
    Some(match rest {
        Some(realm) => format!("{new_user}@{realm}"),
        None => new_user,
    })
}

/// A Diversion entry such as `sip:14158867900@1.2.3.4;counter=1` or `<sip:...>;counter=1`:
/// the user part of its address is formatted, everything else kept.
fn rewrite_diversion(text: &str, formatter: &Map<String, Value>, ctx: &Ctx<'_>) -> Option<String> {
    let start = text.find("sip:").map(|it| it + 4)?;
    let end = start + text[start..].find('@')?;
    let new_user = action(&text[start..end], formatter, ctx)?;
    Some(format!("{}{}{}", &text[..start], new_user, &text[end..]))
}

fn action(user: &str, formatter: &Map<String, Value>, ctx: &Ctx<'_>) -> Option<String> {
    if let Some(value) = formatter.get("value").and_then(Value::as_str) {
        return Some(value.to_owned());
    }
    if formatter.get("match_invite_format").and_then(Value::as_bool) == Some(true) {
        let converters = ctx.converters;
        let formatted = match ctx.invite_format {
            Some("e164") => Some(converters.normalize(user)),
            Some("npan") => Some(converters.to_npan(&converters.normalize(user))),
            Some("1npan") => Some(converters.to_1npan(&converters.normalize(user))),
            _ => None,
        };
        if formatted.is_some() {
            return formatted;
        }
    }
    if let Some(regex) = formatter.get("regex").and_then(Value::as_str) {
        let pattern = Pattern::new(regex).ok()?;
        let list = pattern.captures(user)?;
        let range = list.get(1).cloned().flatten().or_else(|| list[0].clone())?;
        let text = |key: &str| formatter.get(key).and_then(Value::as_str).unwrap_or("");
        return Some(format!("{}{}{}", text("prefix"), &user[range], text("suffix")));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn route_req() -> Map<String, Value> {
        json!({"To": "12345556789@2600Hz.com", "From": "4158867900@2600Hz.com",
            "Request": "+12345556789@2600Hz.com", "Caller-ID-Number": "+14158867900"})
        .as_object()
        .unwrap()
        .clone()
    }

    fn offnet_req() -> Map<String, Value> {
        json!({"Invite-Format": "npan",
            "Custom-SIP-Headers": {"Diversions": ["sip:14158867900@1.2.3.4;counter=1"]}})
        .as_object()
        .unwrap()
        .clone()
    }

    fn apply(
        mut target: Map<String, Value>,
        formatters: Value,
        direction: Direction,
    ) -> Map<String, Value> {
        apply_formatters(
            &mut target,
            formatters.as_object().unwrap(),
            direction,
            &Converters::kazoo_defaults(),
        );
        target
    }

    const TEN: &str = r"^\+?1?(\d{10})$";

    #[test]
    fn a5_value_on_from_keeps_realm() {
        let out = apply(route_req(), json!({"From": {"value": "1234567890"}}), Direction::Outbound);
        assert_eq!(out["From"], json!("1234567890@2600Hz.com"));
    }

    #[test]
    fn a5_inbound_regex_prefix() {
        let with_prefix = json!({"regex": TEN, "prefix": "+1", "direction": "inbound"});
        let formatters = json!({"to": with_prefix, "from": with_prefix, "request": with_prefix,
            "caller_id_number": {"regex": TEN, "direction": "inbound"}});
        let out = apply(route_req(), formatters, Direction::Inbound);
        assert_eq!(out["To"], json!("+12345556789@2600Hz.com"));
        assert_eq!(out["Request"], json!("+12345556789@2600Hz.com"));
        assert_eq!(out["From"], json!("+14158867900@2600Hz.com"));
        assert_eq!(out["Caller-ID-Number"], json!("4158867900"));
    }

    #[test]
    fn a5_inbound_strip() {
        let strip = json!({"regex": TEN, "strip": true, "direction": "inbound"});
        let out =
            apply(route_req(), json!({"to": strip, "caller_id_number": strip}), Direction::Inbound);
        assert!(!out.contains_key("To") && !out.contains_key("Caller-ID-Number"));
        assert!(out.contains_key("From"));
    }

    #[test]
    fn a5_diversions_match_invite_format_and_strip() {
        let out = apply(
            offnet_req(),
            json!({"diversions": [{"match_invite_format": true}]}),
            Direction::Outbound,
        );
        let diversion = out["Custom-SIP-Headers"]["Diversions"][0].as_str().unwrap();
        assert!(diversion.starts_with("sip:4158867900@1.2.3.4"), "{diversion}");
        let out =
            apply(offnet_req(), json!({"diversions": [{"strip": true}]}), Direction::Outbound);
        assert!(out["Custom-SIP-Headers"].get("Diversions").is_none());
    }

    #[test]
    fn a5_value_lists() {
        let out = apply(
            route_req(),
            json!({"from": [{"value": "X"}], "caller_id_number": [{"value": "X"}]}),
            Direction::Outbound,
        );
        assert_eq!(out["From"], json!("X@2600Hz.com"));
        assert_eq!(out["Caller-ID-Number"], json!("X"));
    }

    #[test]
    fn a5_direction_selects_formatter() {
        let from = json!({"from": [
            {"direction": "inbound", "prefix": "+1", "regex": TEN},
            {"direction": "outbound", "regex": r"\+?1?(\d{10})$"}]});
        assert_eq!(
            apply(route_req(), from.clone(), Direction::Inbound)["From"],
            json!("+14158867900@2600Hz.com")
        );
        assert_eq!(
            apply(route_req(), from, Direction::Outbound)["From"],
            json!("4158867900@2600Hz.com")
        );
    }

    #[test]
    fn a5_no_direction_applies_both_ways_and_merges() {
        let cid = json!({"caller_id_number": {"value": "0099887766"}});
        assert_eq!(
            apply(route_req(), cid.clone(), Direction::Outbound)["Caller-ID-Number"],
            json!("0099887766")
        );
        let merged = json!({"caller_id_number": {"value": "0099887766"},
            "from": [{"direction": "inbound", "prefix": "+1", "regex": TEN}]});
        let out = apply(route_req(), merged, Direction::Inbound);
        assert_eq!(out["Caller-ID-Number"], json!("0099887766"));
        assert_eq!(out["From"], json!("+14158867900@2600Hz.com"));
    }

    #[test]
    fn bug_71_direction_both_applies() {
        let both = json!({"caller_id_number": {"value": "1", "direction": "both"}});
        assert_eq!(
            apply(route_req(), both.clone(), Direction::Inbound)["Caller-ID-Number"],
            json!("1")
        );
        assert_eq!(apply(route_req(), both, Direction::Outbound)["Caller-ID-Number"], json!("1"));
    }
}
