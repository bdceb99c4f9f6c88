//! Decoding what CouchDB sends, whatever a document holds: the pure core under the CouchDB
//! backend's reads (`_changes` pages and feed lines, `_all_docs` pages, single documents).
//!
//! CouchDB stores some JSON that `serde_json` refuses: a lone UTF-16 surrogate escape (`"\ud800"`,
//! which CouchDB keeps and sends back as written) and values nested deeper than the parser's
//! recursion limit (128). One such document used to fail the whole page that carried it, and so
//! freeze every feed and every start that read it. Here, every response body first goes through
//! [`sanitize`], a stack-safe single pass over the bytes that
//! - replaces invalid UTF-8 with U+FFFD,
//! - replaces every lone surrogate escape with `\ufffd` (a valid pair is kept),
//! - replaces every value nested deeper than [`MAX_DEPTH`] levels of the response with `null`,
//!
//! so the parser never recurses past [`MAX_DEPTH`] (and no `serde_json::Value` deeper than that,
//! whose drop would recurse, is ever built). Then pages are decoded row by row: a row that still
//! cannot be decoded (a wrong type in a field the page shape needs) is skipped, and every skipped
//! or repaired row is reported as a [`RowIssue`] naming the database, the document id and the
//! sequence, for the follower's status and the health report. The other rows of the page decode
//! as usual.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::{AllDocsPage, AllDocsRow, Change, ChangesPage, Fields, Rev, RowIssue, Seq};

/// The deepest nesting kept in a response: a value nested deeper (counting from the response's
/// outermost value, so about 96 levels inside a document of a `_changes` or `_all_docs` page)
/// is replaced by `null`. Below `serde_json`'s recursion limit of 128.
pub const MAX_DEPTH: usize = 100;

/// What [`sanitize`] changed, at a byte offset of its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repair {
    /// Where, in the sanitized text.
    pub at: usize,
    /// What.
    pub kind: RepairKind,
}

/// A kind of [`Repair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairKind {
    /// Bytes that were not UTF-8 became U+FFFD (reported at offset 0).
    InvalidUtf8,
    /// A lone surrogate escape became `\ufffd`.
    LoneSurrogate,
    /// A value nested deeper than [`MAX_DEPTH`] became `null`.
    TooDeep,
}

impl RepairKind {
    fn describe(self) -> &'static str {
        match self {
            RepairKind::InvalidUtf8 => "invalid UTF-8 replaced by U+FFFD",
            RepairKind::LoneSurrogate => "lone UTF-16 surrogate escape replaced by U+FFFD",
            RepairKind::TooDeep => "value nested deeper than 100 levels replaced by null",
        }
    }
}

/// Text that the parser can read without failing on what CouchDB stores; see the module docs.
#[derive(Debug)]
pub struct Sanitized<'a> {
    /// The sanitized text (borrowed when nothing had to change).
    pub text: Cow<'a, str>,
    /// What was changed, in order.
    pub repairs: Vec<Repair>,
}

impl Sanitized<'_> {
    /// A summary of the repairs in `range` of the text, if any.
    fn describe(&self, range: std::ops::Range<usize>) -> Option<String> {
        let mut kinds: Vec<&'static str> = Vec::new();
        let inside = |r: &&Repair| range.contains(&r.at) || r.kind == RepairKind::InvalidUtf8;
        for r in self.repairs.iter().filter(inside) {
            let d = r.kind.describe();
            if !kinds.contains(&d) {
                kinds.push(d);
            }
        }
        (!kinds.is_empty()).then(|| kinds.join("; "))
    }
}

/// Sanitizes `bytes` (see the module docs). Iterative: no input can overflow the stack, and the
/// work is linear in the input.
pub fn sanitize(bytes: &[u8]) -> Sanitized<'_> {
    let mut repairs = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    if let Cow::Owned(_) = text {
        repairs.push(Repair { at: 0, kind: RepairKind::InvalidUtf8 });
    }
    if !needs_rewrite(text.as_bytes()) {
        return Sanitized { text, repairs };
    }
    let s: &str = &text;
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push('"');
                i = copy_string(s, i + 1, &mut out, &mut repairs);
            }
            b'[' | b'{' if depth >= MAX_DEPTH => {
                repairs.push(Repair { at: out.len(), kind: RepairKind::TooDeep });
                out.push_str("null");
                i = skip_value(b, i);
            }
            open @ (b'[' | b'{') => {
                depth += 1;
                out.push(char::from(open));
                i += 1;
            }
            close @ (b']' | b'}') => {
                depth = depth.saturating_sub(1);
                out.push(char::from(close));
                i += 1;
            }
            _ => {
                // Copy the run up to the next byte that matters (all ASCII: char boundaries).
                let end = b[i..]
                    .iter()
                    .position(|c| matches!(c, b'"' | b'[' | b'{' | b']' | b'}'))
                    .map_or(b.len(), |p| i + p);
                out.push_str(&s[i..end]);
                i = end;
            }
        }
    }
    Sanitized { text: Cow::Owned(out), repairs }
}

/// Whether the text holds anything [`sanitize`] could change: a `\u` escape of a surrogate or
/// nesting deeper than [`MAX_DEPTH`] (counted without regard to strings: a cheap upper bound).
fn needs_rewrite(b: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\\'
                if b.get(i + 1) == Some(&b'u')
                    && hex4(b, i + 2).is_some_and(|u| (0xD800..=0xDFFF).contains(&u)) =>
            {
                return true;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// The value of four hex digits at `at`, if there are four.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = b.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

/// Copies a string's body from `i` (after its opening quote) through its closing quote,
/// replacing lone surrogate escapes. Returns the index after the closing quote (or the end).
fn copy_string(s: &str, mut i: usize, out: &mut String, repairs: &mut Vec<Repair>) -> usize {
    let b = s.as_bytes();
    loop {
        let run = b[i..].iter().position(|c| matches!(c, b'"' | b'\\')).map_or(b.len(), |p| i + p);
        out.push_str(&s[i..run]);
        i = run;
        match b.get(i) {
            None => return i,
            Some(b'"') => {
                out.push('"');
                return i + 1;
            }
            Some(_) => {
                // A backslash.
                match (b.get(i + 1), hex4(b, i + 2)) {
                    (Some(b'u'), Some(0xD800..=0xDBFF)) => {
                        let pair = b.get(i + 6) == Some(&b'\\')
                            && b.get(i + 7) == Some(&b'u')
                            && hex4(b, i + 8).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo));
                        if pair {
                            out.push_str(&s[i..i + 12]);
                            i += 12;
                        } else {
                            repairs.push(Repair { at: out.len(), kind: RepairKind::LoneSurrogate });
                            out.push_str("\\ufffd");
                            i += 6;
                        }
                    }
                    (Some(b'u'), Some(0xDC00..=0xDFFF)) => {
                        repairs.push(Repair { at: out.len(), kind: RepairKind::LoneSurrogate });
                        out.push_str("\\ufffd");
                        i += 6;
                    }
                    (Some(_), _) => {
                        // Any other escape is copied as it is (the parser judges it); its second
                        // byte may be a quote that must not end the string. Both bytes are
                        // ASCII unless the escape is malformed, so copy up to a char boundary.
                        let mut end = i + 2;
                        while !s.is_char_boundary(end) {
                            end += 1;
                        }
                        out.push_str(&s[i..end]);
                        i = end;
                    }
                    (None, _) => {
                        out.push('\\');
                        return i + 1;
                    }
                }
            }
        }
    }
}

/// The index after the value (an array or object) opening at `i`, found by counting brackets
/// outside strings; the end of the input if it never closes.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    let mut open = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => open += 1,
            b']' | b'}' => {
                open -= 1;
                if open == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn decode_err(what: impl Into<String>, message: impl std::fmt::Display) -> Error {
    Error::Decode { what: what.into(), message: message.to_string() }
}

/// Decodes one JSON value (a document, a server answer) from a response body, sanitized first.
/// Returns the value and a description of what was repaired, if anything.
///
/// # Errors
/// [`Error::Decode`] naming `what` when the body is not JSON even after sanitizing.
pub fn decode_value(bytes: &[u8], what: &str) -> Result<(Value, Option<String>)> {
    let clean = sanitize(bytes);
    let value = serde_json::from_str(&clean.text).map_err(|e| decode_err(what, e))?;
    Ok((value, clean.describe(0..clean.text.len())))
}

/// The rows of a page, each kept as its (sanitized) text, with its offset in the page.
#[derive(Deserialize)]
struct RawChangesPage<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
    #[serde(default)]
    last_seq: Option<Value>,
    #[serde(default)]
    pending: Option<Value>,
}

#[derive(Deserialize)]
struct RawAllDocsPage<'a> {
    #[serde(borrow)]
    rows: Vec<&'a RawValue>,
    #[serde(default)]
    total_rows: Option<Value>,
    #[serde(default)]
    offset: Option<Value>,
}

/// The byte range of `raw` within `text` (a row borrowed from the page text).
fn range_in(text: &str, raw: &RawValue) -> std::ops::Range<usize> {
    let start = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    start..start + raw.get().len()
}

/// The id and seq of a row, as far as they can be read.
fn row_identity(row: &Value) -> (Option<String>, Option<Seq>) {
    let id = row.get("id").and_then(Value::as_str).map(str::to_owned);
    let seq =
        row.get("seq").filter(|s| s.is_string() || s.is_number()).cloned().map(Seq::from_json);
    (id, seq)
}

/// Decodes one change row (already sanitized and parsed). CouchDB cannot project `_changes`
/// documents: `fields` trims them here.
///
/// # Errors
/// What is wrong with the row's shape.
pub fn change_from_value(
    mut row: Value,
    fields: Option<&Fields>,
) -> std::result::Result<Change, String> {
    if let (Some(fields), Some(doc)) = (fields, row.get_mut("doc")) {
        fields.apply(doc);
    }
    let event: couch_rs::types::changes::ChangeEvent =
        serde_json::from_value(row).map_err(|e| e.to_string())?;
    let rev = event
        .changes
        .first()
        .map(|c| Rev(c.rev.clone()))
        .ok_or_else(|| format!("change row of {} without a rev", event.id))?;
    if event.doc.as_ref().is_some_and(|d| !d.is_object() && !d.is_null()) {
        return Err("the row's doc is not an object".into());
    }
    Ok(Change {
        seq: Seq::from_json(event.seq),
        id: event.id,
        rev,
        deleted: event.deleted,
        doc: event.doc.filter(|d| !d.is_null()),
    })
}

/// What one row came to: the decoded value and, if it was skipped or repaired, why.
pub enum RowOutcome<T> {
    /// Decoded as it was.
    Clean(T),
    /// Decoded after a repair.
    Repaired(T, RowIssue),
    /// Not decodable: skipped.
    Skipped(RowIssue),
}

fn decode_row<T>(
    db: &str,
    row_text: &str,
    repaired: Option<String>,
    decode: impl FnOnce(Value) -> std::result::Result<T, String>,
) -> RowOutcome<T> {
    let row: Value = match serde_json::from_str(row_text) {
        Ok(row) => row,
        Err(e) => return RowOutcome::Skipped(RowIssue::skipped(db, None, None, e.to_string())),
    };
    let (id, seq) = row_identity(&row);
    match decode(row) {
        Ok(value) => match repaired {
            None => RowOutcome::Clean(value),
            Some(reason) => RowOutcome::Repaired(value, RowIssue::repaired(db, id, seq, reason)),
        },
        Err(reason) => RowOutcome::Skipped(RowIssue::skipped(db, id, seq, reason)),
    }
}

/// Decodes a `_changes` page of `db` (`feed=normal`), row by row. `since` is the position the
/// page was asked from (the resume point when the page names none).
///
/// # Errors
/// [`Error::Decode`] when the page itself (not one of its rows) is not a `_changes` answer.
pub fn decode_changes_page(
    db: &str,
    bytes: &[u8],
    since: &Seq,
    fields: Option<&Fields>,
) -> Result<ChangesPage> {
    let what = format!("_changes of {db}");
    let clean = sanitize(bytes);
    let page: RawChangesPage<'_> =
        serde_json::from_str(&clean.text).map_err(|e| decode_err(&what, e))?;
    let mut results = Vec::with_capacity(page.results.len());
    let mut issues = Vec::new();
    // The last position of a row, delivered or skipped.
    let mut last_row_seq = None;
    for raw in &page.results {
        let repaired = clean.describe(range_in(&clean.text, raw));
        match decode_row(db, raw.get(), repaired, |row| change_from_value(row, fields)) {
            RowOutcome::Clean(change) => {
                last_row_seq = Some(change.seq.clone());
                results.push(change);
            }
            RowOutcome::Repaired(change, issue) => {
                last_row_seq = Some(change.seq.clone());
                results.push(change);
                issues.push(issue);
            }
            RowOutcome::Skipped(issue) => {
                last_row_seq = issue.seq.clone().or(last_row_seq);
                issues.push(issue);
            }
        }
    }
    let last_seq = page
        .last_seq
        .filter(|s| s.is_string() || s.is_number())
        .map(Seq::from_json)
        .or(last_row_seq)
        .unwrap_or_else(|| since.clone());
    Ok(ChangesPage {
        results,
        last_seq,
        pending: page.pending.as_ref().and_then(Value::as_u64),
        issues,
    })
}

/// Decodes an `_all_docs` page of `db`, row by row.
///
/// # Errors
/// [`Error::Decode`] when the page itself (not one of its rows) is not an `_all_docs` answer.
pub fn decode_all_docs_page(db: &str, bytes: &[u8]) -> Result<AllDocsPage> {
    let what = format!("_all_docs of {db}");
    let clean = sanitize(bytes);
    let page: RawAllDocsPage<'_> =
        serde_json::from_str(&clean.text).map_err(|e| decode_err(&what, e))?;
    let mut rows = Vec::with_capacity(page.rows.len());
    let mut issues = Vec::new();
    for raw in &page.rows {
        let repaired = clean.describe(range_in(&clean.text, raw));
        match decode_row(db, raw.get(), repaired, all_docs_row) {
            RowOutcome::Clean(row) => rows.push(row),
            RowOutcome::Repaired(row, issue) => {
                rows.push(row);
                issues.push(issue);
            }
            RowOutcome::Skipped(issue) => issues.push(issue),
        }
    }
    Ok(AllDocsPage {
        total_rows: page.total_rows.as_ref().and_then(Value::as_u64).unwrap_or(0),
        offset: page.offset.as_ref().and_then(Value::as_u64).unwrap_or(0),
        rows,
        issues,
    })
}

/// One `_all_docs` row.
fn all_docs_row(mut row: Value) -> std::result::Result<AllDocsRow, String> {
    let id = match row.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => return Err("row without a string id".into()),
    };
    let rev = row
        .pointer("/value/rev")
        .and_then(Value::as_str)
        .map(|r| Rev(r.to_owned()))
        .ok_or("row without a rev")?;
    let doc = match row.get_mut("doc").map(Value::take) {
        None | Some(Value::Null) => None,
        Some(doc @ Value::Object(_)) => Some(doc),
        Some(_) => return Err("the row's doc is not an object".into()),
    };
    Ok(AllDocsRow { id, rev, doc })
}

/// What one line of a continuous `_changes` feed says.
#[derive(Debug)]
pub enum FeedLine {
    /// A blank line: the server's heartbeat.
    Heartbeat,
    /// A change row, with the issue if it was repaired.
    Change(Change, Option<RowIssue>),
    /// A row that cannot be decoded: skip it (its `seq`, if readable, is passed).
    Skipped(RowIssue),
    /// The closing `last_seq` line.
    End(Seq),
    /// An error row (`{"error": …}`): the server reports trouble mid-feed.
    Error {
        /// CouchDB's `error`.
        error: String,
        /// CouchDB's `reason`.
        reason: String,
    },
}

/// Decodes one line of a continuous `_changes` feed of `db`. Never fails: a line that cannot
/// be read is [`FeedLine::Skipped`].
pub fn decode_feed_line(db: &str, line: &[u8], fields: Option<&Fields>) -> FeedLine {
    if line.iter().all(u8::is_ascii_whitespace) {
        return FeedLine::Heartbeat;
    }
    let clean = sanitize(line);
    let repaired = clean.describe(0..clean.text.len());
    let row: Value = match serde_json::from_str(&clean.text) {
        Ok(row) => row,
        Err(e) => return FeedLine::Skipped(RowIssue::skipped(db, None, None, e.to_string())),
    };
    if let Some(error) = row.get("error").and_then(Value::as_str) {
        let reason = row.get("reason").and_then(Value::as_str).unwrap_or(error);
        return FeedLine::Error { error: error.to_owned(), reason: reason.to_owned() };
    }
    if row.get("id").is_none() {
        if let Some(last_seq) = row.get("last_seq") {
            return FeedLine::End(Seq::from_json(last_seq.clone()));
        }
    }
    let (id, seq) = row_identity(&row);
    match change_from_value(row, fields) {
        Ok(change) => {
            let issue = repaired.map(|reason| RowIssue::repaired(db, id, seq, reason));
            FeedLine::Change(change, issue)
        }
        Err(reason) => FeedLine::Skipped(RowIssue::skipped(db, id, seq, reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RowAction;

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let clean = sanitize(br#"{"a":"x\ud800","b":"\udc00y","c":"\ud83d\ude00","d":"\\ud800"}"#);
        let v: Value = serde_json::from_str(&clean.text).unwrap();
        assert_eq!(v["a"], "x\u{fffd}");
        assert_eq!(v["b"], "\u{fffd}y");
        assert_eq!(v["c"], "\u{1f600}", "a valid pair is kept");
        assert_eq!(v["d"], "\\ud800", "an escaped backslash is not an escape");
        assert_eq!(clean.repairs.len(), 2);
    }

    #[test]
    fn deep_values_are_cut_without_recursion() {
        let deep = 100_000;
        let doc = format!(r#"{{"keep":1,"x":{}{}}}"#, "[".repeat(deep), "]".repeat(deep));
        let clean = sanitize(doc.as_bytes());
        let v: Value = serde_json::from_str(&clean.text).unwrap();
        assert_eq!(v["keep"], 1);
        assert!(clean.repairs.iter().all(|r| r.kind == RepairKind::TooDeep));
        let mut depth = 0;
        let mut at = &v["x"];
        while let Some(inner) = at.get(0) {
            depth += 1;
            at = inner;
        }
        assert_eq!(depth, MAX_DEPTH - 1, "x's arrays are levels 2 to 100; level 101 became null");
        assert!(at.is_null());
    }

    #[test]
    fn a_bad_row_is_skipped_and_the_page_decodes() {
        let page = br#"{"results":[
            {"seq":1,"id":"a","changes":[{"rev":"1-a"}],"doc":{"_id":"a","n":"\ud800"}},
            {"seq":2,"id":"b","changes":"nope"},
            {"seq":3,"id":"c","changes":[{"rev":"1-c"}],"doc":{"_id":"c"}}
        ],"last_seq":3,"pending":0}"#;
        let p = decode_changes_page("offnet", page, &Seq::zero(), None).unwrap();
        assert_eq!(p.results.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(p.issues.len(), 2);
        assert_eq!(p.issues[0].action, RowAction::Repaired);
        assert_eq!(p.issues[0].id.as_deref(), Some("a"));
        assert_eq!(p.issues[1].action, RowAction::Skipped);
        assert_eq!(p.issues[1].seq, Some(Seq::from_json(2.into())));
        assert_eq!(p.last_seq, Seq::from_json(3.into()));
    }

    #[test]
    fn feed_lines_never_fail() {
        assert!(matches!(decode_feed_line("d", b"", None), FeedLine::Heartbeat));
        assert!(matches!(decode_feed_line("d", b"{not json", None), FeedLine::Skipped(_)));
        let line =
            br#"{"seq":"9-x","id":"r","changes":[{"rev":"2-b"}],"doc":{"_id":"r","n":"\udfff"}}"#;
        match decode_feed_line("d", line, None) {
            FeedLine::Change(c, Some(issue)) => {
                assert_eq!(c.doc.unwrap()["n"], "\u{fffd}");
                assert_eq!(issue.seq, Some(Seq::from_json("9-x".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode_feed_line("d", br#"{"last_seq":5}"#, None), FeedLine::End(_)));
        assert!(matches!(
            decode_feed_line("d", br#"{"error":"x","reason":"y"}"#, None),
            FeedLine::Error { .. }
        ));
    }
}
