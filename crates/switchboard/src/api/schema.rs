//! Request-body validation against Kazoo's own JSON schemas (`fixtures/schemas/`, compiled in),
//! with Kazoo's defaults filled in and errors in its field → rule → message shape.

use std::sync::OnceLock;

use jsonschema::{Resource, Validator};
use serde_json::{Map, Value};

use super::error::{schema_errors, ApiError};

/// The schemas compiled in, by Kazoo name (the `$ref` target).
const SCHEMAS: &[(&str, &str)] = &[
    ("resources", include_str!("../../../../fixtures/schemas/resources.json")),
    ("formatters", include_str!("../../../../fixtures/schemas/formatters.json")),
    (
        "formatters.format_options",
        include_str!("../../../../fixtures/schemas/formatters.format_options.json"),
    ),
    ("custom_sip_headers", include_str!("../../../../fixtures/schemas/custom_sip_headers.json")),
    ("endpoint.media", include_str!("../../../../fixtures/schemas/endpoint.media.json")),
    ("connectivity", include_str!("../../../../fixtures/schemas/connectivity.json")),
    ("phone_numbers", include_str!("../../../../fixtures/schemas/phone_numbers.json")),
    // The bodies Kazoo checks in code rather than with a schema file, as schemas.
    (
        "api_auth",
        r#"{"type": "object", "required": ["api_key"],
            "properties": {"api_key": {"type": "string", "minLength": 1}}}"#,
    ),
    (
        "number_list",
        r#"{"type": "object", "required": ["numbers"],
            "properties": {"numbers": {"type": "array",
                "description": "at least one number, each a string (checked by the handler)"}}}"#,
    ),
    (
        "phone_numbers_collection",
        r#"{"allOf": [{"$ref": "phone_numbers"}, {"$ref": "number_list"}],
            "description": "numbers, and the public fields given to each of them"}"#,
    ),
];

/// A request-body schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// `resources.json`.
    Resources,
    /// `connectivity.json`.
    Connectivity,
    /// `phone_numbers.json`.
    PhoneNumbers,
    /// `PUT /v2/api_auth`'s `{"api_key": K}`.
    ApiAuth,
    /// `{"numbers": [N, …]}` (that the list is not empty and holds strings, the handler checks).
    NumberList,
    /// A collection request: `numbers` plus the public fields of `phone_numbers.json`.
    PhoneNumbersCollection,
}

/// Every schema, for the tests.
#[cfg(test)]
const ALL: [Schema; 6] = [
    Schema::Resources,
    Schema::Connectivity,
    Schema::PhoneNumbers,
    Schema::ApiAuth,
    Schema::NumberList,
    Schema::PhoneNumbersCollection,
];

impl Schema {
    /// Its name (Kazoo's, for the schema files).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Schema::Resources => "resources",
            Schema::Connectivity => "connectivity",
            Schema::PhoneNumbers => "phone_numbers",
            Schema::ApiAuth => "api_auth",
            Schema::NumberList => "number_list",
            Schema::PhoneNumbersCollection => "phone_numbers_collection",
        }
    }

    fn compiled(self) -> &'static Compiled {
        static CACHE: [OnceLock<Compiled>; 6] = [const { OnceLock::new() }; 6];
        CACHE[self as usize].get_or_init(|| compile(self.name()))
    }

    /// This schema and every schema it refers to, by name, as JSON.
    pub(crate) fn with_references(self) -> Vec<(&'static str, Value)> {
        let mut found: Vec<(&'static str, Value)> = Vec::new();
        let mut queue = vec![self.name()];
        while let Some(name) = queue.pop() {
            if found.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let Some((name, _)) = SCHEMAS.iter().find(|(n, _)| *n == name) else { continue };
            let value = raw(name);
            collect_refs(&value, &mut queue);
            found.push((name, value));
        }
        found
    }

    /// Validates `body` as it is (no defaults filled in: the number manager keeps its own).
    ///
    /// # Errors
    /// [`ApiError::Validation`] with every violation.
    pub(crate) fn check(self, body: &Map<String, Value>) -> Result<(), ApiError> {
        let instance = Value::Object(body.clone());
        let errors = schema_errors(self.compiled().validator.iter_errors(&instance));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// Validates `body` and fills in the schema's defaults (as Kazoo's
    /// `cb_context:validate_request_data/2` does) where the body leaves a property out.
    ///
    /// # Errors
    /// [`ApiError::Validation`] with every violation.
    pub(crate) fn validate(self, body: &mut Map<String, Value>) -> Result<(), ApiError> {
        let compiled = self.compiled();
        let instance = Value::Object(std::mem::take(body));
        let errors = schema_errors(compiled.validator.iter_errors(&instance));
        let Value::Object(mut map) = instance else { unreachable!("built from a map above") };
        if !errors.is_empty() {
            *body = map;
            return Err(ApiError::Validation(errors));
        }
        fill_defaults(&compiled.raw, &mut map);
        *body = map;
        Ok(())
    }
}

struct Compiled {
    validator: Validator,
    raw: Value,
}

fn raw(name: &str) -> Value {
    let text = SCHEMAS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .expect("every schema name used is compiled in");
    serde_json::from_str(text).expect("the compiled-in schemas are JSON (checked by a test)")
}

fn compile(name: &str) -> Compiled {
    let mut options = jsonschema::options().with_draft(jsonschema::Draft::Draft4);
    for (other, _) in SCHEMAS {
        let resource = Resource::from_contents(raw(other))
            .expect("the compiled-in schemas are valid resources (checked by a test)");
        options = options.with_resource(format!("json-schema:///{other}"), resource);
    }
    let raw = raw(name);
    let validator =
        options.build(&raw).expect("the compiled-in schemas compile (checked by a test)");
    Compiled { validator, raw }
}

/// The names of the schemas `value` refers to.
fn collect_refs(value: &Value, out: &mut Vec<&'static str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                if let Some((name, _)) = SCHEMAS.iter().find(|(n, _)| n == target) {
                    out.push(name);
                }
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Sets `default`s of the schema's `properties` that `doc` leaves out, recursing into objects
/// the document has. Arrays and `$ref`s are left alone (Kazoo fills those lazily too).
fn fill_defaults(schema: &Value, doc: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    for (key, sub) in props {
        match doc.get_mut(key) {
            None => {
                if let Some(default) = sub.get("default") {
                    doc.insert(key.clone(), default.clone());
                }
            }
            Some(Value::Object(inner)) => fill_defaults(sub, inner),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_schema_compiles() {
        for schema in ALL {
            let _ = schema.compiled();
            assert_eq!(schema.with_references()[0].0, schema.name());
        }
    }

    #[test]
    fn a_valid_resource_gets_its_defaults() {
        let mut doc = body(json!({"name": "carrier", "gateways": [{"server": "gw.example.com"}]}));
        Schema::Resources.validate(&mut doc).unwrap();
        assert_eq!(doc["weight_cost"], 50);
        assert_eq!(doc["rules"], json!([]));
    }

    #[test]
    fn violations_come_as_field_rule_message() {
        let mut doc = body(json!({"gateways": "x", "weight_cost": 101, "name": ""}));
        let Err(ApiError::Validation(errors)) = Schema::Resources.validate(&mut doc) else {
            panic!("should fail")
        };
        assert_eq!(errors["name"]["minLength"]["message"], "Value must be at least 1 characters");
        assert!(errors["gateways"]["type"]["message"].is_string(), "{errors:?}");
        assert!(errors["weight_cost"]["maximum"]["message"].is_string(), "{errors:?}");

        let mut doc = body(json!({"gateways": [{}]}));
        let Err(ApiError::Validation(errors)) = Schema::Resources.validate(&mut doc) else {
            panic!("should fail")
        };
        assert_eq!(errors["name"]["required"]["message"], "Field is required but missing");
        assert_eq!(
            errors["gateways.0.server"]["required"]["message"],
            "Field is required but missing"
        );
    }

    #[test]
    fn refs_resolve_to_the_compiled_in_schemas() {
        // formatters.json refers to formatters.format_options: a wrong type deep inside is found.
        let mut doc = body(json!({"name": "c", "gateways": [{"server": "s"}],
                                  "formatters": {"from": [{"regex": 5}]}}));
        let result = Schema::Resources.validate(&mut doc);
        assert!(matches!(result, Err(ApiError::Validation(_))), "{result:?}");
    }

    #[test]
    fn connectivity_needs_server_auth() {
        let mut doc = body(json!({"name": "pbx", "servers": [{"name": "a"}]}));
        let Err(ApiError::Validation(errors)) = Schema::Connectivity.validate(&mut doc) else {
            panic!("should fail")
        };
        assert!(errors.contains_key("servers.0.auth"), "{errors:?}");
        let mut ok = body(
            json!({"name": "pbx", "servers": [{"auth": {"auth_method": "IP", "ip": "192.0.2.1"}}]}),
        );
        Schema::Connectivity.validate(&mut ok).unwrap();
    }

    #[test]
    fn the_bodies_kazoo_checks_in_code_have_schemas_too() {
        assert!(Schema::ApiAuth.check(&body(json!({"api_key": "k"}))).is_ok());
        let Err(ApiError::Validation(errors)) =
            Schema::ApiAuth.check(&body(json!({"api_key": ""})))
        else {
            panic!("an empty key is refused")
        };
        assert_eq!(
            errors["api_key"]["minLength"]["message"],
            "Value must be at least 1 characters"
        );
        let ok = body(json!({"numbers": ["+14155550100"], "carrier_name": "c"}));
        assert!(Schema::PhoneNumbersCollection.check(&ok).is_ok());
        let Err(ApiError::Validation(errors)) =
            Schema::PhoneNumbersCollection.check(&body(json!({"carrier_name": ""})))
        else {
            panic!("a collection needs numbers and valid public fields")
        };
        assert!(errors.contains_key("numbers"), "{errors:?}");
        assert!(errors.contains_key("carrier_name"), "{errors:?}");
        assert!(Schema::NumberList.check(&body(json!({"numbers": "+1"}))).is_err());
    }
}
