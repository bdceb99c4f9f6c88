//! `/v2/openapi.json`: the OpenAPI 3.0 document of the route table. Each operation is described
//! as the router and its handler answer it: the request body (Crossbar's `{"data": …}` checked
//! against the Kazoo schema the table names, or the bare `offnet_req` of the routing
//! endpoints), the query parameters, and every status it can answer — those the table lists for
//! the handler plus those every request may meet before it:
//!
//! - 400 for a path segment over the id limit and for a body that cannot be read; 414 for an
//!   over-long URI (the request limits);
//! - 408 and 413 for an operation that reads a body (late or oversized);
//! - 401 and 403 unless the operation is public (no, unknown or expired token; an account
//!   the token may not act on).

use serde_json::{json, Map, Value};

use super::routes::{Access, Body, Endpoint, Reply};
use super::schema::Schema;

/// The OpenAPI document of `endpoints`.
pub(crate) fn document(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for e in endpoints {
        let item = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        item[e.method.as_str().to_lowercase()] = operation(e, &mut schemas);
    }
    super::route_forms::document(&mut paths);
    schemas.extend(common_schemas());
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = Map::new();
    for (code, description) in ERRORS {
        let mut response = error.clone();
        response["description"] = json!(description);
        responses.insert(code.to_string(), response);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Switchboard Crossbar-compatible API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Kazoo Crossbar-shaped API: request bodies are {\"data\": {...}} (the routing endpoints read a bare offnet_req, as Kazoo's stepswitch does); every reply is {data, status, request_id, revision, auth_token}; errors add error (the HTTP code) and message. /healthz, /metrics and this document are not envelopes."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"authToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
            "schemas": schemas,
            "responses": responses,
        }
    })
}

/// The error replies, by status: what each means.
const ERRORS: &[(u16, &str)] = &[
    (400, "malformed JSON, a body without data, a validation error, a bad query parameter or id"),
    (401, "no, unknown or expired auth token, or a wrong api key"),
    (402, "the number manager refused the operation for the account's plan or credit"),
    (403, "the token's account may not act here"),
    (404, "no such document, account or number"),
    (408, "the request body did not arrive within api.body_read_timeout"),
    (409, "the document changed (stale revision) or exists already"),
    (413, "the body is larger than api.max_body_size"),
    (414, "the request URI is too long"),
    (500, "a defect: the cause is in the reply and the log"),
    (503, "the store is unreachable or not read yet"),
];

fn operation(e: &Endpoint, schemas: &mut Map<String, Value>) -> Value {
    let mut parameters: Vec<Value> = e
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
        .collect();
    for (name, required, schema, description) in e.query {
        let schema: Value = serde_json::from_str(schema).unwrap_or_else(|_| json!({}));
        parameters.push(json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema}));
    }
    let mut responses = Map::new();
    responses.insert(e.ok.to_string(), success(e));
    let mut errors: Vec<u16> = vec![400, 414];
    if e.body != Body::None {
        errors.extend([408, 413]);
    }
    if e.access != Access::Public {
        errors.extend([401, 403]);
    }
    errors.extend(e.errors);
    for code in errors {
        if code == 503 && e.reply == Reply::Health {
            continue;
        }
        responses
            .entry(code.to_string())
            .or_insert_with(|| json!({"$ref": format!("#/components/responses/{code}")}));
    }
    if e.reply == Reply::Health {
        responses.insert(
            "503".into(),
            json!({"description": "not ready: starting or degraded, and why", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}),
        );
    }
    let mut op = json!({
        "summary": e.summary,
        "tags": [e.tag],
        "operationId": format!("{}{}", e.method.as_str().to_lowercase(), e.path.replace(['/', '{', '}', '.'], "_")),
        "parameters": parameters,
        "responses": responses,
    });
    op["security"] = match e.access {
        Access::Public => json!([]),
        Access::Token | Access::Superduper => json!([{"authToken": []}]),
        Access::Trusted => json!([{}, {"authToken": []}]),
    };
    if let Some(body) = request_body(e.body, schemas) {
        op["requestBody"] = body;
    }
    op
}

/// The success response of `e`.
fn success(e: &Endpoint) -> Value {
    let json_of = |schema: Value| json!({"application/json": {"schema": schema}});
    let envelope = json!({"$ref": "#/components/schemas/Envelope"});
    let (description, content) = match e.reply {
        Reply::Envelope | Reply::Route => ("success", json_of(envelope)),
        Reply::Metrics => (
            "Prometheus text exposition format",
            json!({"text/plain": {"schema": {"type": "string"}}}),
        ),
        Reply::Health => ("ready", json_of(json!({"$ref": "#/components/schemas/Health"}))),
        Reply::OpenApi => ("this document", json_of(json!({"type": "object"}))),
    };
    json!({"description": description, "content": content})
}

/// The request body of `body`; the Kazoo schemas it names are added to `schemas`.
fn request_body(body: Body, schemas: &mut Map<String, Value>) -> Option<Value> {
    let json_body = |schema: Value, required: bool| json!({"required": required, "content": {"application/json": {"schema": schema}}});
    let envelope =
        |data: Value| json!({"type": "object", "required": ["data"], "properties": {"data": data}});
    match body {
        Body::None => None,
        Body::Data(schema) => {
            add_schema(schema, schemas);
            let mut body = json_body(envelope(reference(schema.name())), true);
            if let Some(example) = example(schema) {
                body["content"]["application/json"]["example"] = json!({ "data": example });
            }
            Some(body)
        }
        Body::Merge(schema) => {
            add_schema(schema, schemas);
            let data = json!({"type": "object", "description": format!("fields merged into the stored document, which must then be a valid {} (see that schema)", schema.name())});
            Some(json_body(envelope(data), true))
        }
        Body::OffnetReq => Some(json_body(reference("offnet_req"), true)),
        Body::Outbound => Some(json_body(reference("outbound_req"), true)),
        Body::Reload => {
            let account_id: Value =
                serde_json::from_str(super::routes::ACCOUNT_ID).unwrap_or_default();
            Some(json_body(
                json!({"type": "object", "properties": {"account_id": account_id}}),
                false,
            ))
        }
    }
}

/// An example `data` of a request body.
fn example(schema: Schema) -> Option<Value> {
    match schema {
        Schema::ApiAuth => Some(json!({"api_key": "an account's pvt_api_key"})),
        Schema::Resources => Some(json!({
            "name": "carrier",
            "rules": ["^\\+1(\\d{10})$"],
            "gateways": [{"server": "gw.example.com"}]
        })),
        Schema::PhoneNumbersCollection => Some(json!({"numbers": ["+14155550100"]})),
        _ => None,
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Adds `schema` and every schema it refers to, as OpenAPI schema objects.
fn add_schema(schema: Schema, schemas: &mut Map<String, Value>) {
    for (name, raw) in schema.with_references() {
        if !schemas.contains_key(name) {
            schemas.insert(name.to_owned(), openapi_schema(raw));
        }
    }
}

/// A Kazoo (draft 4) schema as an OpenAPI 3.0 schema object: no `$schema`/`_id`/`id`
/// bookkeeping, references by name turned into component references, Kazoo's `format`
/// extensions dropped.
fn openapi_schema(mut value: Value) -> Value {
    fn walk(value: &mut Value, top: bool) {
        match value {
            Value::Object(map) => {
                if top {
                    map.remove("$schema");
                    map.remove("_id");
                    map.remove("id");
                }
                if let Some(Value::String(target)) = map.get("$ref").cloned() {
                    if !target.starts_with('#') {
                        // A reference replaces the whole object in OpenAPI: keep only it.
                        map.clear();
                        map.insert("$ref".into(), json!(format!("#/components/schemas/{target}")));
                        return;
                    }
                }
                for (key, child) in map.iter_mut() {
                    // Property names are data here, not keywords.
                    let holds_names = key == "properties" || key == "patternProperties";
                    if holds_names {
                        if let Value::Object(props) = child {
                            for sub in props.values_mut() {
                                walk(sub, false);
                            }
                        }
                    } else {
                        walk(child, false);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, false)),
            _ => {}
        }
    }
    walk(&mut value, true);
    value
}

/// The schemas of the document itself: the envelopes, `/healthz`'s reply, the `offnet_req`.
fn common_schemas() -> Map<String, Value> {
    let text = json!({"type": "string"});
    // The keys of an offnet_req routing reads may also be null (as if absent).
    let key = json!({"type": "string", "nullable": true});
    let flag = json!({"nullable": true, "oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]});
    let offnet_req = json!({
        "type": "object",
        "description": "Kazoo's offnet_req, bare (not wrapped in data); keys routing does not read are ignored",
        "required": ["To-DID"],
        "properties": {
            "To-DID": {"type": "string", "pattern": "\\S", "description": "the dialled number"},
            "Flags": {"type": "array", "items": text, "nullable": true},
            "Account-ID": key,
            "Hunt-Account-ID": key,
            "Outbound-Caller-ID-Number": key,
            "Bypass-E164": flag
        },
        "example": {"To-DID": "+14155550100", "Flags": []}
    });
    let mut outbound_req = offnet_req.clone();
    outbound_req["properties"]["Force-Outbound"] = flag.clone();
    outbound_req["description"] =
        json!("an offnet_req with Force-Outbound: send an on-net number to the carriers too");
    let value = json!({
        "Envelope": {"type": "object", "required": ["data", "status", "request_id", "revision"], "properties": {
            "data": {}, "status": {"type": "string", "enum": ["success"]}, "request_id": text,
            "revision": text, "auth_token": text}},
        "Error": {"type": "object", "required": ["data", "status", "error", "message"], "properties": {
            "data": {"description": "details; for validation errors {field: {rule: {message}}}"},
            "status": {"type": "string", "enum": ["error"]}, "error": text,
            "message": text, "request_id": text}},
        "Health": {"type": "object", "required": ["status", "checks"], "properties": {
            "status": {"type": "string", "enum": ["ready", "starting", "degraded"]},
            "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "backend": text,
            "warnings": {"type": "array", "items": text},
            "reason": text,
            "degraded": {"type": "array", "items": {"type": "object"}}}},
        "offnet_req": offnet_req,
        "outbound_req": outbound_req,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kazoo_schemas_become_component_schemas() {
        let mut schemas = Map::new();
        add_schema(Schema::Resources, &mut schemas);
        assert!(schemas.contains_key("resources"), "{schemas:?}");
        assert!(schemas.contains_key("formatters.format_options"), "{schemas:?}");
        let text = Value::Object(schemas).to_string();
        assert!(!text.contains("\"$schema\""), "{text}");
        assert!(!text.contains("\"$ref\":\"formatters\""), "{text}");
        assert!(text.contains("\"$ref\":\"#/components/schemas/formatters\""), "{text}");
    }
}
