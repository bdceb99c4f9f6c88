//! The forms of `/v2/stepswitch/route` a switch can use directly: the `GET` query form, the
//! plain-text answer (one SIP URI per line), the 404 when no carrier takes the number, and
//! `?explain=true`. The JSON answer itself is `stepswitch`'s, unchanged.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

/// The query keys of the `GET` form: the `offnet_req` keys routing reads, by their Kazoo names.
const REQUEST_KEYS: [&str; 7] = [
    "To-DID",
    "Flags",
    "Account-ID",
    "Hunt-Account-ID",
    "Outbound-Caller-ID-Number",
    "Outbound-Caller-ID-Name",
    "Bypass-E164",
];

/// How to answer: JSON or text, with or without the explanation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Form {
    /// One SIP URI per line (`?format=text` or `Accept: text/plain`).
    pub(crate) text: bool,
    /// Add the explanation (`?explain=true`).
    pub(crate) explain: bool,
}

/// A parsed query: the answer's form and, for `GET`, the request as an `offnet_req` object.
#[derive(Debug, Default)]
pub(crate) struct RouteQuery {
    pub(crate) form: Form,
    pub(crate) request: Map<String, Value>,
}

/// Reads the query string. `format` (`json` | `text`) and `explain` (`true` | `false`) are read
/// for both methods; the request keys only when `request_keys` (the `GET` form). Values are
/// percent-decoded and a `+` stays a plus sign (a dialled `+1415…` needs no escaping); a key
/// the endpoint does not know is a 400, so a typo is not silently ignored.
pub(crate) fn parse_query(
    query: Option<&str>,
    headers: &HeaderMap,
    request_keys: bool,
) -> Result<RouteQuery, String> {
    let mut parsed = RouteQuery::default();
    let mut format: Option<bool> = None;
    for pair in query.unwrap_or_default().split('&').filter(|it| !it.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        let value = decode(value)?;
        match key.as_str() {
            "format" => match value.as_str() {
                "json" => format = Some(false),
                "text" => format = Some(true),
                _ => return Err(format!("format must be json or text, not {value:?}")),
            },
            "explain" => parsed.form.explain = boolean("explain", &value)?,
            "Flags" if request_keys => {
                let flags =
                    parsed.request.entry("Flags").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = flags {
                    list.extend(value.split(',').filter(|it| !it.is_empty()).map(Value::from));
                }
            }
            "Bypass-E164" if request_keys => {
                parsed.request.insert(key, Value::Bool(boolean("Bypass-E164", &value)?));
            }
            known if request_keys && REQUEST_KEYS.contains(&known) => {
                parsed.request.insert(key, Value::String(value));
            }
            _ => {
                let keys = if request_keys {
                    format!("{}, format, explain", REQUEST_KEYS.join(", "))
                } else {
                    "format, explain (the request is the body)".to_owned()
                };
                return Err(format!("unknown query parameter {key:?}; known: {keys}"));
            }
        }
    }
    parsed.form.text = format.unwrap_or_else(|| prefers_text(headers));
    Ok(parsed)
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|it| it.into_owned())
        .map_err(|_| format!("{text:?} is not percent-encoded UTF-8"))
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key} must be true or false")),
    }
}

/// Whether the client's first choice in `Accept` is `text/plain`.
fn prefers_text(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|it| it.to_str().ok()) else {
        return false;
    };
    let first = accept.split(',').next().unwrap_or_default();
    first.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("text/plain")
}

/// Marks a text answer as meant to be text, so that the layer turning axum's own plain-text
/// errors into Crossbar envelopes leaves its 404 alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextAnswer;

/// A `text/plain` response.
pub(crate) fn text_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.extensions_mut().insert(TextAnswer);
    response
}

/// The plain-text answer: the endpoints' SIP URIs, or a 404 with an empty body when none.
pub(crate) fn text_answer(answer: &stepswitch::RouteAnswer) -> Response {
    let mut body = String::with_capacity(answer.endpoints.len() * 48);
    let lines = stepswitch::write_sip_uris(answer, &mut body);
    let status = if lines == 0 { StatusCode::NOT_FOUND } else { StatusCode::OK };
    text_response(status, body)
}

/// Adds what the generic OpenAPI operation of the route table cannot know to both operations of
/// `/v2/stepswitch/route`: the query parameters, the text form and the 404.
pub(crate) fn document(paths: &mut Map<String, Value>) {
    let Some(Value::Object(item)) = paths.get_mut("/v2/stepswitch/route") else { return };
    let param = |name: &str, description: &str, schema: Value, required: bool| json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema});
    let string = json!({"type": "string"});
    let flag =
        json!({"type": "string", "enum": ["true", "false", ""], "description": "empty is true"});
    let form = [
        param("format", "json (default) or text: one SIP URI per line in failover order; also chosen by Accept: text/plain", json!({"type": "string", "enum": ["json", "text"]}), false),
        param("explain", "add the explanation: every resource considered, taken or skipped and why, and the final order (data.explain)", flag.clone(), false),
    ];
    // The text bodies: one full SIP URI per line (sip:user@host[:port]), first to try first;
    // empty for the 404.
    let text = json!({"text/plain": {}});
    for (method, op) in item.iter_mut() {
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else { continue };
        if method == "get" {
            params.push(param(
                "To-DID",
                "the dialled number; a + needs no escaping",
                json!({"type": "string", "pattern": "\\S"}),
                true,
            ));
            params.push(param(
                "Flags",
                "request flags, comma-separated (repeatable)",
                string.clone(),
                false,
            ));
            for key in [
                "Account-ID",
                "Hunt-Account-ID",
                "Outbound-Caller-ID-Number",
                "Outbound-Caller-ID-Name",
            ] {
                params.push(param(key, "as in an offnet_req", string.clone(), false));
            }
            params.push(param("Bypass-E164", "route To-DID verbatim", flag.clone(), false));
        }
        params.extend(form.iter().cloned());
        if let Some(Value::Object(content)) = op.pointer_mut("/responses/200/content") {
            content.extend(text.as_object().cloned().unwrap_or_default());
        }
        let mut not_found = text.clone();
        not_found["application/json"] = json!({"schema": {"$ref": "#/components/schemas/Error"}});
        op["responses"]["404"] = json!({"description": "no carrier takes the number (message no_carrier; data: the empty answer)", "content": not_found});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
        headers
    }

    #[test]
    fn the_get_form_reads_kazoo_keys_and_keeps_the_plus() {
        let query = "To-DID=+14155550100&Flags=fax,a&Flags=b&Bypass-E164=true&Account-ID=a%2Fb";
        let parsed = parse_query(Some(query), &HeaderMap::new(), true).unwrap();
        assert_eq!(parsed.request["To-DID"], "+14155550100");
        assert_eq!(parsed.request["Flags"], serde_json::json!(["fax", "a", "b"]));
        assert_eq!(parsed.request["Bypass-E164"], true);
        assert_eq!(parsed.request["Account-ID"], "a/b");
        assert_eq!(parsed.form, Form { text: false, explain: false });
        let parsed = parse_query(Some("To-DID=%2B1"), &HeaderMap::new(), true).unwrap();
        assert_eq!(parsed.request["To-DID"], "+1");
    }

    #[test]
    fn format_explain_and_accept() {
        let text = parse_query(None, &headers("text/plain"), false).unwrap();
        assert!(text.form.text);
        let json = parse_query(Some("format=json"), &headers("text/plain"), false).unwrap();
        assert!(!json.form.text);
        let both = parse_query(None, &headers("application/json, text/plain"), false).unwrap();
        assert!(!both.form.text);
        let explain = parse_query(Some("explain=true&format=text"), &HeaderMap::new(), false);
        assert_eq!(explain.unwrap().form, Form { text: true, explain: true });
    }

    #[test]
    fn the_openapi_operations_document_both_forms() {
        let mut paths = Map::new();
        let op =
            json!({"parameters": [], "responses": {"200": {"content": {"application/json": {}}}}});
        paths.insert("/v2/stepswitch/route".into(), json!({"get": op, "post": op}));
        document(&mut paths);
        let item = &paths["/v2/stepswitch/route"];
        let names = |method: &str| -> Vec<String> {
            item[method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert!(names("get").contains(&"To-DID".to_owned()));
        assert!(!names("post").contains(&"To-DID".to_owned()));
        for method in ["get", "post"] {
            assert!(names(method).contains(&"format".to_owned()));
            assert!(item[method]["responses"]["200"]["content"].get("text/plain").is_some());
            assert!(item[method]["responses"]["404"]["content"].get("text/plain").is_some());
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        for (query, get) in [
            ("to_did=1", true),
            ("To-DID=1", false),
            ("format=xml", true),
            ("explain=yes", false),
            ("Bypass-E164=1", true),
            ("To-DID=%FF", true),
        ] {
            assert!(parse_query(Some(query), &HeaderMap::new(), get).is_err(), "{query}");
        }
    }
}
