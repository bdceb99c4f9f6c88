//! How commands print: one JSON document on stdout with `--json`, readable text otherwise; errors
//! as JSON too under `--json`, always with a non-zero exit.

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cli::GlobalArgs;

/// Prints a command's result.
pub(crate) fn print(global: &GlobalArgs, value: &Value, human: impl FnOnce() -> String) {
    if global.json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
    } else {
        println!("{}", human());
    }
}

/// Prints an error (JSON under `--json`, `error: …` with its causes otherwise) and returns the exit
/// code for it.
pub(crate) fn fail(global: &GlobalArgs, err: &anyhow::Error) -> ExitCode {
    if global.json {
        let body = error_json(err);
        println!("{}", serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string()));
    } else {
        eprintln!("error: {err:#}");
    }
    ExitCode::FAILURE
}

/// A command error as JSON. An error that already carries a JSON body (a §9 number error, say) is
/// printed as it is; anything else becomes `{"error": kind, "message": text}`.
pub(crate) fn error_json(err: &anyhow::Error) -> Value {
    if let Some(body) = err.downcast_ref::<JsonError>() {
        return body.0.clone();
    }
    json!({ "error": "switchboard_error", "message": format!("{err:#}") })
}

/// An error whose JSON rendering is fixed by a spec (the number manager's §9 shape, say).
#[derive(Debug)]
pub(crate) struct JsonError(pub Value);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get("message").and_then(Value::as_str) {
            Some(message) => f.write_str(message),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for JsonError {}
