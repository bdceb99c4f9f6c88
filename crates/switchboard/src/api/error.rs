//! The one place where errors become Crossbar error envelopes, with the status codes,
//! `message` keys and `data` objects Kazoo's `cb_context:add_system_error/2,3` gives them: the
//! store's, the number manager's (Kazoo's `knm_errors` as Crossbar shapes them), routing's, and
//! the API's own. Handlers return an [`ApiError`]; nothing else builds an error reply.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::envelope::{current_request_id, error_body};

/// Kazoo's field → rule → `{"message": …}` map of validation errors.
pub(crate) type ValidationErrors = Map<String, Value>;

/// Every way an API request fails.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400 `parse_error`: the body is not the JSON we need.
    ParseError(String),
    /// 400 with a message: a bad query parameter, an id that cannot be.
    BadRequest(String),
    /// 400 `validation error` with Kazoo's field → rule → message data.
    Validation(ValidationErrors),
    /// 401 `invalid_credentials`: no, unknown or expired token; wrong api key.
    InvalidCredentials(&'static str),
    /// 403 `forbidden`: the token is fine, the account is not one it may act on.
    Forbidden(String),
    /// 404 `bad_identifier`: no such document (or account).
    BadIdentifier(String),
    /// 404 `not_found`: no such route.
    NotFound,
    /// 405 `invalid_method`.
    InvalidMethod,
    /// 409 `datastore_conflict`: a stale `_rev`, or the document exists already.
    Conflict(String),
    /// 413: the body is larger than `api.max_body_size`.
    PayloadTooLarge,
    /// 414: the request URI (or an id in it) is longer than is served.
    UriTooLong(String),
    /// 408: the request body did not arrive within `api.body_read_timeout`.
    RequestTimeout(String),
    /// 404 `no_carrier`: no carrier routes the number; `data` is the (empty) answer.
    NoCarrier(Value),
    /// 503 `datastore_unreachable`: what is asked for is not readable yet (the routing tables
    /// before their first load) or the store failed under routing.
    Unavailable(String),
    /// 503 `datastore_missing`, `datastore_unreachable`, `datastore_fault`: the store failed.
    Datastore {
        /// The HTTP status.
        status: StatusCode,
        /// Kazoo's error key.
        key: &'static str,
        /// What happened.
        cause: String,
    },
    /// An error whose envelope a spec fixes (the number manager's `cb_phone_numbers_v2`'s knm error reply shape, say).
    Custom {
        /// The HTTP status.
        status: StatusCode,
        /// The envelope's `message`.
        message: String,
        /// The envelope's `data`.
        data: Value,
    },
    /// 500 `unspecified_fault`: a defect; the cause is logged and returned.
    Internal(String),
}

impl ApiError {
    /// A single validation error on `field` (dotted path) for `rule`.
    pub(crate) fn validation(field: &str, rule: &str, message: impl Into<String>) -> ApiError {
        let mut errors = Map::new();
        add_validation(&mut errors, field, rule, message.into(), None);
        ApiError::Validation(errors)
    }

    /// The status, envelope `message` and `data` of this error.
    pub(crate) fn parts(&self) -> (StatusCode, String, Value) {
        match self {
            ApiError::ParseError(detail) => (
                StatusCode::BAD_REQUEST,
                "parse_error".into(),
                json!({"message": "failed to parse request body", "cause": detail}),
            ),
            ApiError::BadRequest(detail) => {
                (StatusCode::BAD_REQUEST, "bad_request".into(), json!({ "message": detail }))
            }
            ApiError::Validation(errors) => {
                (StatusCode::BAD_REQUEST, "validation error".into(), Value::Object(errors.clone()))
            }
            ApiError::InvalidCredentials(why) => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials".into(),
                json!({"message": "invalid credentials", "cause": why}),
            ),
            ApiError::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                "forbidden".into(),
                json!({"message": "forbidden", "cause": why}),
            ),
            ApiError::BadIdentifier(id) => (
                StatusCode::NOT_FOUND,
                "bad_identifier".into(),
                json!({"message": "bad identifier", "cause": id}),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found".into(),
                json!({"message": "not found: no such route"}),
            ),
            ApiError::InvalidMethod => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_method".into(),
                json!({"message": "invalid method"}),
            ),
            ApiError::Conflict(detail) => (
                StatusCode::CONFLICT,
                "datastore_conflict".into(),
                json!({"message": "conflicting documents", "cause": detail}),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large".into(),
                json!({"message": "the request body is larger than api.max_body_size allows"}),
            ),
            ApiError::UriTooLong(detail) => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long".into(),
                json!({"message": "the request URI is too long", "cause": detail}),
            ),
            ApiError::RequestTimeout(detail) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout".into(),
                json!({"message": "the request took too long to arrive", "cause": detail}),
            ),
            ApiError::NoCarrier(data) => (StatusCode::NOT_FOUND, "no_carrier".into(), data.clone()),
            ApiError::Unavailable(detail) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "datastore_unreachable".into(),
                json!({ "message": detail }),
            ),
            ApiError::Datastore { status, key, cause } => {
                (*status, (*key).into(), json!({"message": key.replace('_', " "), "cause": cause}))
            }
            ApiError::Custom { status, message, data } => (*status, message.clone(), data.clone()),
            ApiError::Internal(cause) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "unspecified_fault".into(),
                json!({"message": "unspecified fault", "cause": cause}),
            ),
        }
    }
}

/// Adds `{field: {rule: {"message": message[, "target": target]}}}` to `errors`.
pub(crate) fn add_validation(
    errors: &mut ValidationErrors,
    field: &str,
    rule: &str,
    message: String,
    target: Option<Value>,
) {
    let entry = errors.entry(field.to_owned()).or_insert_with(|| json!({}));
    let mut detail = Map::new();
    detail.insert("message".into(), Value::String(message));
    if let Some(target) = target {
        detail.insert("target".into(), target);
    }
    if let Some(rules) = entry.as_object_mut() {
        rules.insert(rule.to_owned(), Value::Object(detail));
    }
}

/// The error envelope, echoing the request's id (the `X-Request-ID` header is set by the
/// request layer, `ops::request_layer`).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let (status, message, data) = self.parts();
        if status.is_server_error() {
            tracing::error!(%status, %message, %data, request_id, "request failed");
        }
        metrics::counter!("switchboard_api_errors_total", "status" => status.as_u16().to_string())
            .increment(1);
        (status, axum::Json(error_body(status, &message, data, &request_id))).into_response()
    }
}

/// A number-manager error as Crossbar shapes it (Kazoo's `cb_phone_numbers_v2` replies): an
/// unknown number is a 404 `bad_identifier`, a stale revision a 409, a number that is not in
/// service or whose account is disabled a 400 `client error` naming the cause; anything else
/// keeps the status and body `knm_errors` gives it.
pub(crate) fn knm_error(err: numbers::Error) -> ApiError {
    match &err {
        numbers::Error::NotFound { .. } => ApiError::Custom {
            status: StatusCode::NOT_FOUND,
            message: "bad_identifier".into(),
            data: json!({"message": "bad identifier", "not_found": "The number could not be found"}),
        },
        numbers::Error::Conflict { cause, .. } => ApiError::Conflict(cause.clone()),
        numbers::Error::NotInService { number, account }
        | numbers::Error::AccountDisabled { number, account } => {
            let cause = if matches!(err, numbers::Error::NotInService { .. }) {
                "not_in_service"
            } else {
                "account_disabled"
            };
            ApiError::Custom {
                status: StatusCode::BAD_REQUEST,
                message: "client error".into(),
                data: json!({"cause": cause, "account_id": account, "number": number}),
            }
        }
        _ => {
            let body = err.to_json();
            let status =
                StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = body.get("error").and_then(Value::as_str).unwrap_or("error").to_owned();
            ApiError::Custom { status, message, data: body }
        }
    }
}

/// A routing reload that failed: an account without a database is a 404 `bad_identifier`,
/// anything else (the store failing) a 503.
impl From<::stepswitch::Error> for ApiError {
    fn from(err: ::stepswitch::Error) -> ApiError {
        match err {
            ::stepswitch::Error::Store(docstore::Error::DbNotFound { db }) => ApiError::Custom {
                status: StatusCode::NOT_FOUND,
                message: "bad_identifier".into(),
                data: json!({ "message": format!("database {db} does not exist") }),
            },
            err => ApiError::Unavailable(err.to_string()),
        }
    }
}

impl From<docstore::Error> for ApiError {
    fn from(err: docstore::Error) -> ApiError {
        use docstore::Error as E;
        match err {
            E::Conflict { db, id } => ApiError::Conflict(format!("document {id} in {db} changed")),
            E::DocNotFound { id, .. } => ApiError::BadIdentifier(id),
            E::DbNotFound { db } => ApiError::Datastore {
                status: StatusCode::SERVICE_UNAVAILABLE,
                key: "datastore_missing",
                cause: format!("database {db} does not exist"),
            },
            E::BadRequest { reason } => ApiError::BadRequest(reason),
            e @ E::InvalidAccountId { .. } => ApiError::BadRequest(e.to_string()),
            E::IllegalDbName { name, reason } => {
                ApiError::BadRequest(format!("illegal database name {name:?}: {reason}"))
            }
            E::Forbidden { reason } => ApiError::Custom {
                status: StatusCode::BAD_REQUEST,
                message: "validation error".into(),
                data: json!({"document": {"validate_doc_update": {"message": reason}}}),
            },
            // The server refused the request line or headers our call made from the client's
            // input (an over-long id): the client's error, not a store fault.
            E::Http { status: 414 | 431, reason, .. } => {
                ApiError::UriTooLong(format!("the store refused an identifier this long: {reason}"))
            }
            e @ (E::Transport { .. } | E::Timeout { .. }) => ApiError::Datastore {
                status: StatusCode::SERVICE_UNAVAILABLE,
                key: "datastore_unreachable",
                cause: e.to_string(),
            },
            e => ApiError::Datastore {
                status: StatusCode::SERVICE_UNAVAILABLE,
                key: "datastore_fault",
                cause: e.to_string(),
            },
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        match err.downcast::<docstore::Error>() {
            Ok(store) => ApiError::from(store),
            Err(err) => ApiError::Internal(format!("{err:#}")),
        }
    }
}

/// Maps JSON-schema validation errors to Kazoo's field → rule → message shape
/// (`kz_json_schema:validation_error/3`): the field is the dotted instance path (the missing
/// property itself for `required`), the rule is the schema keyword.
pub(crate) fn schema_errors<'a>(
    errors: impl Iterator<Item = jsonschema::ValidationError<'a>>,
) -> ValidationErrors {
    use jsonschema::error::ValidationErrorKind as K;
    let mut out = Map::new();
    for error in errors {
        let path: Vec<String> = (&error.instance_path)
            .into_iter()
            .map(|chunk| match chunk {
                jsonschema::paths::LocationSegment::Property(p) => {
                    p.replace("~1", "/").replace("~0", "~")
                }
                jsonschema::paths::LocationSegment::Index(i) => i.to_string(),
            })
            .collect();
        let mut field = path.join(".");
        let (rule, message, target): (&str, String, Option<Value>) = match &error.kind {
            K::Required { property } => {
                let name =
                    property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
                field = if field.is_empty() { name } else { format!("{field}.{name}") };
                ("required", "Field is required but missing".into(), None)
            }
            K::Type { kind } => {
                let wanted = match kind {
                    jsonschema::error::TypeKind::Single(t) => t.to_string(),
                    jsonschema::error::TypeKind::Multiple(ts) => {
                        ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or ")
                    }
                };
                ("type", format!("Value is not of type {wanted}"), Some(Value::String(wanted)))
            }
            K::Enum { options } => (
                "enum",
                "Value not found in enumerated list of values".into(),
                Some(options.clone()),
            ),
            K::Minimum { limit } => {
                ("minimum", format!("Value must be at least {limit}"), Some(limit.clone()))
            }
            K::Maximum { limit } => {
                ("maximum", format!("Value must be at most {limit}"), Some(limit.clone()))
            }
            K::MinLength { limit } => (
                "minLength",
                format!("Value must be at least {limit} characters"),
                Some(json!(limit)),
            ),
            K::MaxLength { limit } => (
                "maxLength",
                format!("String must not be more than {limit} characters"),
                Some(json!(limit)),
            ),
            K::MinItems { limit } => (
                "minItems",
                format!("The list must have at least {limit} items"),
                Some(json!(limit)),
            ),
            K::MaxItems { limit } => {
                ("maxItems", format!("The list is more than {limit} items"), Some(json!(limit)))
            }
            K::UniqueItems => ("uniqueItems", "List of items is not unique".into(), None),
            K::Pattern { pattern } => (
                "pattern",
                format!("Failed to match pattern '{pattern}'"),
                Some(Value::String(pattern.clone())),
            ),
            K::AdditionalProperties { unexpected } => (
                "additionalProperties",
                format!("Unexpected properties: {}", unexpected.join(", ")),
                None,
            ),
            other => (keyword_of(other), error.to_string(), None),
        };
        let field = if field.is_empty() { "document".to_owned() } else { field };
        add_validation(&mut out, &field, rule, message, target);
    }
    out
}

/// The schema keyword of the remaining error kinds.
fn keyword_of(kind: &jsonschema::error::ValidationErrorKind) -> &'static str {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::AnyOf => "anyOf",
        K::OneOfNotValid | K::OneOfMultipleValid => "oneOf",
        K::Not { .. } => "not",
        K::Constant { .. } => "const",
        K::Format { .. } => "format",
        K::MultipleOf { .. } => "multipleOf",
        K::ExclusiveMinimum { .. } => "exclusiveMinimum",
        K::ExclusiveMaximum { .. } => "exclusiveMaximum",
        K::MinProperties { .. } => "minProperties",
        K::MaxProperties { .. } => "maxProperties",
        K::Contains => "contains",
        K::PropertyNames { .. } => "propertyNames",
        K::FalseSchema => "false",
        _ => "schema",
    }
}
