//! Request bodies in Crossbar's shape, `{"data": {...}}`: read and checked once by the router
//! ([`super::guard`], against the schema the route table declares) and handed to the handler as
//! a [`CrossbarBody`]. Malformed JSON, a body without `data`, or a `data` that is not an
//! object is a 400 `parse_error`; a body over `api.max_body_size` a 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// The `data` object of a request body.
#[derive(Debug, Clone)]
pub(crate) struct CrossbarBody(pub(crate) Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for CrossbarBody {
    type Rejection = ApiError;

    /// The body the router already read and checked, else (a handler called without the
    /// router) the body read now.
    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(body) = req.extensions_mut().remove::<CrossbarBody>() {
            return Ok(body);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
            }
        })?;
        parse_body(&bytes).map(CrossbarBody)
    }
}

/// The bytes of a request body, at most `max` (413 beyond).
pub(crate) async fn read(body: axum::body::Body, max: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|err| {
        let too_large = std::error::Error::source(&err)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {err}"))
        }
    })
}

/// The `data` object of a request body (see the module docs).
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::ParseError(
            "the request body is empty: send {\"data\": {...}}".into(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::ParseError(format!("malformed JSON: {e}")))?;
    let Value::Object(mut envelope) = value else {
        return Err(ApiError::ParseError("the request body is not a JSON object".into()));
    };
    match envelope.remove("data") {
        Some(Value::Object(data)) => Ok(data),
        Some(_) => Err(ApiError::ParseError("\"data\" is not a JSON object".into())),
        None => Err(ApiError::ParseError(
            "the request body has no \"data\": send {\"data\": {...}}".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unwrapped_and_malformed_ones_refused() {
        assert_eq!(parse_body(br#"{"data": {"a": 1}}"#).unwrap()["a"], 1);
        for bad in [&b""[..], b"  ", b"{", b"[1]", br#"{"data": 3}"#, b"nul", br#"{"a": 1}"#, b"{}"]
        {
            assert!(matches!(parse_body(bad), Err(ApiError::ParseError(_))), "{bad:?}");
        }
    }
}
