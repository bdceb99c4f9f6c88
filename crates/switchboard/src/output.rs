//! How commands print: one JSON document on stdout with `--json`, readable text otherwise; errors
//! as JSON too under `--json`, always with a non-zero exit.
//!
//! Every error a command prints under `--json` has one shape, the number manager's:
//! `{"code", "error", "message", "cause"}` (`cause` is `null` when there is nothing more to say).
//! Usage errors (an unknown flag, a missing argument) are printed in that shape as well, with
//! clap's exit code 2.

use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use crate::cli::GlobalArgs;

/// Prints a command's result.
pub(crate) fn print(global: &GlobalArgs, value: &Value, human: impl FnOnce() -> String) {
    if global.json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
    } else {
        println!("{}", human());
    }
}

/// Prints an error (JSON on stdout under `--json`, `error: …` on stderr otherwise) and returns
/// the exit code for it.
pub(crate) fn fail(json: bool, err: &anyhow::Error) -> ExitCode {
    if json {
        let body = error_json(err);
        println!("{}", serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string()));
    } else {
        eprintln!("error: {err:#}");
    }
    ExitCode::FAILURE
}

/// A command line clap refused (or help and version, which clap prints itself). Under `--json`
/// the refusal is one error document on stdout; the exit code is clap's (2 for usage errors).
pub(crate) fn usage_error(json: bool, err: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ErrorKind};
    let informational = matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !json || informational {
        let _ = err.print();
        return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
    }
    // clap's text up to its usage lines, on one line: "the following required arguments were
    // not provided: <NUMBER>". A command that needs a subcommand renders its whole help: say so
    // with its usage line.
    let rendered = err.render().to_string();
    let message = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let usage = rendered.lines().find_map(|l| l.strip_prefix("Usage: ")).unwrap_or_default();
        format!("a subcommand is required: {}", usage.trim())
    } else {
        let head = rendered.split("\n\n").next().unwrap_or_default();
        head.trim_start_matches("error: ").split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let cause =
        [ContextKind::InvalidArg, ContextKind::InvalidSubcommand, ContextKind::InvalidValue]
            .into_iter()
            .find_map(|kind| err.get(kind))
            .map(|value| value.to_string());
    let body = CliError::new(400, "invalid_arguments", message, cause).to_json();
    println!("{}", serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string()));
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
}

/// Whether `--json` is among the raw arguments (before a `--`), for errors raised before the
/// command line could be parsed.
pub(crate) fn json_requested(args: &[std::ffi::OsString]) -> bool {
    args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
}

/// A command error as JSON, `{"code", "error", "message", "cause"}`. An error that carries its own
/// ([`CliError`], e.g. a number manager error) is printed as it is; anything else is a 500
/// `unspecified_fault` (`database_error` when the store failed) whose message is the whole chain
/// and whose cause is the innermost error.
pub(crate) fn error_json(err: &anyhow::Error) -> Value {
    if let Some(known) = err.chain().find_map(|e| e.downcast_ref::<CliError>()) {
        return known.to_json();
    }
    let store = err.chain().find_map(|e| e.downcast_ref::<docstore::Error>());
    let root = err.root_cause().to_string();
    let message = format!("{err:#}");
    let cause = (root != message).then_some(root);
    let (code, error) = match store {
        Some(e) => (e.status(), "database_error"),
        None => (500, "unspecified_fault"),
    };
    CliError::new(code, error, message, cause).to_json()
}

/// An error with the number manager's JSON shape: an HTTP-like `code`, a short `error` name, a
/// readable `message` and an optional `cause` (the number, the account, the underlying error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    /// HTTP-like status (400 bad input, 404 not found, 503 store unreachable, …).
    pub(crate) code: u16,
    /// Short machine-readable name (`not_found`, `invalid_arguments`, …).
    pub(crate) error: String,
    /// What went wrong, for people.
    pub(crate) message: String,
    /// What it is about, or the underlying error.
    pub(crate) cause: Option<String>,
    /// The text people see: the message, with the cause when the message needs it.
    human: String,
}

impl CliError {
    /// An error with these parts.
    pub(crate) fn new(
        code: u16,
        error: impl Into<String>,
        message: impl Into<String>,
        cause: Option<String>,
    ) -> CliError {
        let message = message.into();
        CliError { code, error: error.into(), human: message.clone(), message, cause }
    }

    /// A number manager error JSON (`{"code", "error", "cause"?, "message"?}`).
    pub(crate) fn from_knm(value: &Value) -> CliError {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let code = value.get("code").and_then(Value::as_u64).unwrap_or(500);
        let error = text("error").unwrap_or_else(|| "unspecified_fault".to_owned());
        let message = text("message").unwrap_or_default();
        let cause = text("cause");
        // Its messages can be terse ("invalid", "database_error"): the cause says what about.
        let shown = if message.is_empty() { error.clone() } else { message.clone() };
        let human = match &cause {
            Some(cause) if !shown.contains(cause.as_str()) => format!("{shown}: {cause}"),
            _ => shown,
        };
        CliError { code: u16::try_from(code).unwrap_or(500), error, message, cause, human }
    }

    /// `{"code", "error", "message", "cause"}` in that order.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "error": self.error,
            "message": self.message,
            "cause": self.cause,
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.human)
    }
}

impl std::error::Error for CliError {}

/// Whether log lines may carry colour codes: only on a terminal, and never when `NO_COLOR` is
/// set to anything but the empty string (no-color.org).
pub(crate) fn log_colours(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// [`log_colours`] for this process.
pub(crate) fn log_colours_here() -> bool {
    log_colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"))
}

/// A JSON value as readable text: an object is one `key: value` line per field (nested objects
/// as `outer.inner`, lists of scalars joined by commas, empty values left out), a list of objects
/// is a table with one column per key.
pub(crate) fn human(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut lines = Vec::new();
            fields(map, "", &mut lines);
            let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            let text: Vec<String> = lines
                .iter()
                .map(|(k, v)| format!("{:<w$}  {v}", format!("{k}:"), w = width + 1))
                .collect();
            text.join("\n")
        }
        Value::Array(rows) if rows.iter().all(Value::is_object) => table(rows),
        other => scalar(other),
    }
}

fn fields(map: &Map<String, Value>, prefix: &str, out: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            Value::Object(inner) => fields(inner, &key, out),
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::Array(items) if items.is_empty() => {}
            other => out.push((key, scalar(other))),
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "(none)".to_owned();
    }
    let mut columns: Vec<String> = Vec::new();
    for row in rows.iter().filter_map(Value::as_object) {
        for key in row.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| row.get(c).map_or("-".to_owned(), scalar)).collect())
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> =
            row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(&header)];
    out.extend(cells.iter().map(|row| line(row)));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(log_colours(true, None));
        assert!(log_colours(true, Some("".into())));
        assert!(!log_colours(true, Some("1".into())));
        assert!(!log_colours(false, None));
    }

    #[test]
    fn every_error_has_the_four_keys() {
        let knm = json!({"code": 404, "error": "not_found", "cause": "+14155550100",
                         "message": "number +14155550100 not found"});
        let err = anyhow::Error::new(CliError::from_knm(&knm));
        let body = error_json(&err);
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["code", "error", "message", "cause"]);
        assert_eq!(body["cause"], "+14155550100");
        assert_eq!(err.to_string(), "number +14155550100 not found");

        let plain = anyhow::anyhow!("low level").context("high level");
        let body = error_json(&plain);
        assert_eq!(body["code"], 500);
        assert_eq!(body["error"], "unspecified_fault");
        assert_eq!(body["message"], "high level: low level");
        assert_eq!(body["cause"], "low level");

        let store = anyhow::Error::new(docstore::Error::DbNotFound { db: "offnet".into() })
            .context("cannot read the resources");
        let body = error_json(&store);
        assert_eq!(
            (body["code"].as_u64(), body["error"].as_str()),
            (Some(404), Some("database_error"))
        );
        assert_eq!(body["cause"], "database offnet does not exist");
    }

    #[test]
    fn people_see_the_cause_of_a_terse_message_once() {
        let knm = |v: Value| CliError::from_knm(&v).to_string();
        let terse = json!({"code": 500, "error": "unspecified_fault", "cause": "boom",
                           "message": "database_error"});
        assert_eq!(knm(terse), "database_error: boom");
        let full = json!({"code": 404, "error": "not_found", "cause": "+1",
                          "message": "number +1 not found"});
        assert_eq!(knm(full), "number +1 not found");
        // Our own messages say it all; the cause is for the JSON.
        let e =
            CliError::new(503, "store_unreachable", "CouchDB at X: refused", Some("detail".into()));
        assert_eq!(e.to_string(), "CouchDB at X: refused");
    }

    #[test]
    fn human_text_of_objects_and_lists() {
        let number = json!({"id": "+14158867903", "state": "in_service", "used_by": "",
                            "features": ["local"], "_read_only": {"created": 1, "state": "in_service"}});
        assert_eq!(
            human(&number),
            "id:                  +14158867903\nstate:               in_service\n\
             features:            local\n_read_only.created:  1\n_read_only.state:    in_service"
        );
        let rows = json!([{"number": "+14158867903", "state": "available"}, {"number": "+1415", "state": "x"}]);
        assert_eq!(human(&rows), "NUMBER        STATE\n+14158867903  available\n+1415         x");
        assert_eq!(human(&json!([])), "(none)");
    }
}
