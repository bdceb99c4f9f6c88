//! The CouchDB wire details the backend's calls share: database names and document ids encoded
//! for the path, an HTTP status mapped to this crate's [`Error`] (a missing database kept apart
//! from a missing document), revisions and sequences read from answers, and a streamed body cut
//! into the lines of a continuous feed.

use std::fmt;

use futures::{Stream, StreamExt};
use percent_encoding::utf8_percent_encode;
use serde_json::Value;

use super::{Ctx, DB_NAME_SET, DOC_ID_SET};
use crate::decode::{self, FeedLine};
use crate::error::{Error, Result};
use crate::types::{DbName, FeedEvent, Fields, Rev, Seq};

pub(super) fn map_status(status: u16, error: String, reason: String, ctx: Ctx<'_>) -> Error {
    let db_missing = |r: &str| r.contains("Database does not exist") || r == "no_db_file";
    match (status, ctx) {
        (400, Ctx::Db(db)) if error == "illegal_database_name" => {
            Error::IllegalDbName { name: db.as_str().to_owned(), reason }
        }
        (400, _) => Error::BadRequest { reason },
        (401, _) => Error::Unauthorized { reason },
        (403, _) => Error::Forbidden { reason },
        (404, Ctx::Doc(db, id)) if !db_missing(&reason) => {
            Error::DocNotFound { db: db.as_str().to_owned(), id: id.to_owned() }
        }
        (404, Ctx::Doc(db, _) | Ctx::Db(db)) => Error::DbNotFound { db: db.as_str().to_owned() },
        (409, Ctx::Doc(db, id)) => {
            Error::Conflict { db: db.as_str().to_owned(), id: id.to_owned() }
        }
        (412, Ctx::Db(db)) if error == "file_exists" => {
            Error::DbExists { db: db.as_str().to_owned() }
        }
        _ => Error::Http { status, error, reason },
    }
}

pub(super) fn encode_db(db: &DbName) -> String {
    utf8_percent_encode(db.as_str(), DB_NAME_SET).to_string()
}

/// `_design/` and `_local/` stay literal (CouchDB routes on them); the rest is encoded.
pub(super) fn encode_doc_id(id: &str) -> String {
    for prefix in ["_design/", "_local/"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            return format!("{prefix}{}", utf8_percent_encode(rest, DOC_ID_SET));
        }
    }
    utf8_percent_encode(id, DOC_ID_SET).to_string()
}

pub(super) fn seq_of(v: &Value) -> Seq {
    Seq::from_json(v.clone())
}

pub(super) fn decode_err(what: impl Into<String>, message: impl fmt::Display) -> Error {
    Error::Decode { what: what.into(), message: message.to_string() }
}

pub(super) fn rev_from_write(v: &Value, what: &str) -> Result<Rev> {
    v.get("rev")
        .and_then(Value::as_str)
        .map(|r| Rev(r.to_owned()))
        .ok_or_else(|| decode_err(what, format!("no rev in {v}")))
}

/// Splits a streamed body into lines (without the `\n`); a last unterminated line is yielded too.
pub(super) fn body_lines<S, B>(
    body: S,
) -> impl Stream<Item = std::result::Result<Vec<u8>, reqwest::Error>>
where
    S: Stream<Item = std::result::Result<B, reqwest::Error>> + Send + 'static,
    B: AsRef<[u8]>,
{
    let state = (Box::pin(body), Vec::<u8>::new(), false);
    futures::stream::unfold(state, |(mut body, mut buf, mut eof)| async move {
        loop {
            if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).take(pos).collect();
                return Some((Ok(line), (body, buf, eof)));
            }
            if eof {
                if buf.is_empty() {
                    return None;
                }
                let line = std::mem::take(&mut buf);
                return Some((Ok(line), (body, buf, eof)));
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(chunk.as_ref()),
                Some(Err(e)) => {
                    eof = true;
                    buf.clear();
                    return Some((Err(e), (body, buf, eof)));
                }
                None => eof = true,
            }
        }
    })
}

/// Parses one line of a continuous `_changes` feed ([`decode::decode_feed_line`]): the events it
/// makes (a repaired row is its issue, then its change). An error row ends the connection: the
/// follower retries it like a 5xx.
pub(super) fn parse_feed_line(
    line: &[u8],
    db: &DbName,
    fields: Option<&Fields>,
) -> Result<Vec<FeedEvent>> {
    match decode::decode_feed_line(db.as_str(), line, fields) {
        FeedLine::Heartbeat => Ok(vec![FeedEvent::Heartbeat]),
        FeedLine::Change(change, None) => Ok(vec![FeedEvent::Change(change)]),
        FeedLine::Change(change, Some(issue)) => {
            Ok(vec![FeedEvent::Issue(issue), FeedEvent::Change(change)])
        }
        FeedLine::Skipped(issue) => Ok(vec![FeedEvent::Issue(issue)]),
        FeedLine::End(last_seq) => Ok(vec![FeedEvent::End { last_seq }]),
        FeedLine::Error { error, reason } => Err(Error::Http { status: 500, error, reason }),
    }
}
