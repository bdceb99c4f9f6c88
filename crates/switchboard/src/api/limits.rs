//! The limits every request meets before a handler sees it: a URI longer than
//! [`MAX_URI_BYTES`] is a 414 and a path segment (an id, a number) longer than [`MAX_ID_BYTES`]
//! a 400, so that no over-long id ever reaches the store; a body whose declared length
//! (`Content-Length`) is above `api.max_body_size` is a 413 before any of it is read; a body
//! that has not fully arrived `api.body_read_timeout` after the headers is a 408. The body is
//! read here, once, under that deadline, and handed on in memory. Replies that leave a body
//! unread close the connection.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// The longest request URI (path and query) served; longer is a 414.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;

/// The longest path segment (as sent, percent-encoded) served; longer is a 400. Kazoo's ids are
/// 32 characters and numbers at most 16 digits: no document the API addresses is near this.
pub(crate) const MAX_ID_BYTES: usize = 512;

/// Applies the limits of the module docs, then runs the handler.
pub(crate) async fn limit_request(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(err) = check_uri(req.uri()) {
        return err.into_response();
    }
    let max = state.settings.max_body_size;
    let declared = match declared_length(req.headers()) {
        Ok(declared) => declared,
        Err(err) => return closing(err),
    };
    if declared.is_some_and(|n| n > max as u64) {
        return closing(ApiError::PayloadTooLarge);
    }
    let has_body =
        declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(state.settings.body_read_timeout, super::body::read(body, max));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => return closing(err),
        Err(_) => {
            return closing(ApiError::RequestTimeout(format!(
                "the request body did not arrive within {:?}",
                state.settings.body_read_timeout
            )))
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// 414 for a URI over [`MAX_URI_BYTES`], 400 for a path segment over [`MAX_ID_BYTES`].
fn check_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let length = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong(format!(
            "the request URI is {length} bytes long; at most {MAX_URI_BYTES} are served"
        )));
    }
    match uri.path().split('/').map(str::len).max() {
        Some(longest) if longest > MAX_ID_BYTES => Err(ApiError::BadRequest(format!(
            "an identifier in the path is {longest} bytes long; at most {MAX_ID_BYTES} are accepted"
        ))),
        _ => Ok(()),
    }
}

/// The `Content-Length` the client declared (400 when it cannot be read).
fn declared_length(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest("Content-Length is not a number".into())),
    }
}

/// The error reply, closing the connection (the client's body, if any, stays unread).
fn closing(err: ApiError) -> Response {
    let mut response = err.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_uris_and_ids_are_refused_before_the_store() {
        let ok: axum::http::Uri = "/v2/accounts/a/resources/r?x=1".parse().unwrap();
        assert!(check_uri(&ok).is_ok());
        let id = "x".repeat(MAX_ID_BYTES + 1);
        let long_id: axum::http::Uri = format!("/v2/resources/{id}").parse().unwrap();
        assert!(matches!(check_uri(&long_id), Err(ApiError::BadRequest(_))));
        let fits: axum::http::Uri = format!("/v2/resources/{}", &id[1..]).parse().unwrap();
        assert!(check_uri(&fits).is_ok());
        let long_uri: axum::http::Uri =
            format!("/v2/resources?q={}", "y".repeat(MAX_URI_BYTES)).parse().unwrap();
        assert!(matches!(check_uri(&long_uri), Err(ApiError::UriTooLong(_))));
    }

    #[test]
    fn content_length_must_be_a_number() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(declared_length(&headers).unwrap(), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2147483648"));
        assert_eq!(declared_length(&headers).unwrap(), Some(2_147_483_648));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("lots"));
        assert!(matches!(declared_length(&headers), Err(ApiError::BadRequest(_))));
    }
}
