//! `switchboard route NUMBER`: routes one number against the tables read once from the store
//! (Kazoo's `stepswitch_maintenance:process_number/1,2`, with flags and caller id).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use docstore::{AccountId, SharedStore};
use serde_json::Value;
use stepswitch::reactor::load_once;
use stepswitch::{RouteAnswer, RouteRequest};

use crate::cli::GlobalArgs;
use crate::output::CliError;

/// Options of `switchboard route`.
#[derive(Debug, Args)]
pub(crate) struct RouteArgs {
    /// The dialled number (`To-DID`): digits, optionally after a `+`; normalized to E.164 unless
    /// --bypass-e164.
    pub(crate) number: String,
    /// Request flags, a comma-separated list (`Flags`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) flags: Vec<String>,
    /// The calling account (`Account-ID`).
    #[arg(long)]
    pub(crate) account_id: Option<String>,
    /// Route with this account's local resources (`Hunt-Account-ID`); it must be the account
    /// itself or one of its ancestors.
    #[arg(long)]
    pub(crate) hunt_account_id: Option<String>,
    /// The caller id that `cid_rules` see (`Outbound-Caller-ID-Number`).
    #[arg(long)]
    pub(crate) caller_id_number: Option<String>,
    /// Route the number verbatim (`Bypass-E164`).
    #[arg(long)]
    pub(crate) bypass_e164: bool,
    /// Explain the answer: every resource considered, taken or skipped and why (with the
    /// matching rule and capture), and the final order.
    #[arg(long)]
    pub(crate) explain: bool,
}

/// Whether `number` is something stepswitch can route: digits, optionally after one `+` (Kazoo's
/// converters leave anything else as it is, and nothing routes it). Short codes such as `911`
/// pass: stepswitch classifies them.
fn is_dialable(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn account(flag: &str, value: Option<&str>) -> anyhow::Result<Option<AccountId>> {
    value.map(|v| AccountId::new(v).with_context(|| format!("bad {flag}"))).transpose()
}

/// Reads the tables once and prints the answer.
pub(crate) async fn run(
    args: &RouteArgs,
    global: &GlobalArgs,
    store: SharedStore,
) -> anyhow::Result<ExitCode> {
    if !args.bypass_e164 && !is_dialable(&args.number) {
        return Err(CliError::new(
            400,
            "invalid_number",
            format!(
                "{:?} is not a number: digits, optionally after a + (pass --bypass-e164 to route \
                 it verbatim)",
                args.number
            ),
            Some(args.number.clone()),
        )
        .into());
    }
    let account_id = account("--account-id", args.account_id.as_deref())?;
    let hunt = account("--hunt-account-id", args.hunt_account_id.as_deref())?;
    let (tables, diagnostics) =
        load_once(store.as_ref(), hunt.as_ref()).await.context("cannot read the resources")?;
    for diagnostic in &diagnostics {
        tracing::warn!(%diagnostic, "resource diagnostic");
    }
    let mut request = RouteRequest::new(args.number.clone());
    request.flags = args.flags.iter().filter(|f| !f.is_empty()).cloned().collect();
    request.account_id = account_id.map(|id| id.as_str().to_owned());
    request.hunt_account_id = hunt.as_ref().map(|id| id.as_str().to_owned());
    request.outbound_caller_id_number = args.caller_id_number.clone();
    request.bypass_e164 = args.bypass_e164;
    if args.explain {
        let docs = stepswitch::reactor::read_resource_docs(store.as_ref(), hunt.as_ref())
            .await
            .context("cannot read the resources")?;
        let explanation = stepswitch::explain(&tables, &request, &docs);
        let value = serde_json::to_value(&explanation).context("cannot render the explanation")?;
        crate::output::print(global, &value, || explanation.to_text());
        return Ok(ExitCode::SUCCESS);
    }
    let answer = stepswitch::route(&tables, &request);
    let value = serde_json::to_value(&answer).context("cannot render the answer")?;
    crate::output::print(global, &value, || human(&answer));
    Ok(ExitCode::SUCCESS)
}

/// The answer as a table: one line per endpoint, in final order.
fn human(answer: &RouteAnswer) -> String {
    let mut out = format!(
        "number: {}\nclassification: {}\n",
        answer.number,
        answer.classification.as_deref().unwrap_or("-")
    );
    if answer.endpoints.is_empty() {
        out.push_str("no resources route this number");
        return out;
    }
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    let rows: Vec<[String; 4]> = answer
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let ep = ep.to_json();
            let ccvs = ep.get("Custom-Channel-Vars");
            [
                (i + 1).to_string(),
                text(ccvs.and_then(|c| c.get("Resource-ID"))),
                text(ep.get("Weight")),
                text(ep.get("Route")),
            ]
        })
        .collect();
    let header = ["#", "RESOURCE", "WEIGHT", "ROUTE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 3 {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        l
    };
    out.push_str(&line(header));
    for row in &rows {
        out.push('\n');
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_dialable;

    #[test]
    fn numbers_and_short_codes_are_dialable_words_are_not() {
        for ok in ["+14155550100", "4155550100", "911", "011442079460000"] {
            assert!(is_dialable(ok), "{ok}");
        }
        for bad in ["hello", "", "+", "415x", "++1415", "(415) 555-0100", "sip:alice@example.com"] {
            assert!(!is_dialable(bad), "{bad}");
        }
    }
}
