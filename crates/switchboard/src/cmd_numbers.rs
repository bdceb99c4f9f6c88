//! `switchboard numbers …`: one number operation against the store (Kazoo's `knm_numbers`
//! operations), number generation and CSV import, and search (`knm_search`; the carrier numbers found are bought with
//! `activate` or `create`). Readable text by
//! default (one `field: value` line per field of the number, a table of search results); with
//! `--json`, stdout holds the number's public JSON (`knm_phone_number:to_public_json/1`) or the
//! error JSON (`{code, error, message, cause}`) with a non-zero exit.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use docstore::SharedStore;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use numbers::carriers::Pool;
use numbers::store::{NumberSearch, NumberStore, RunOptions};
use numbers::{operation_for_command, AccountId, AuthBy, NumberState};
use serde_json::Value;

use crate::cli::GlobalArgs;
use crate::output::{self, CliError};

/// `switchboard numbers`.
#[derive(Debug, Args)]
pub(crate) struct NumbersArgs {
    #[command(subcommand)]
    command: NumbersCommand,
}

/// The number subcommands.
#[derive(Debug, Subcommand)]
enum NumbersCommand {
    /// Show a number (`knm_numbers:get/2`).
    Get(OpArgs),
    /// Create a number for --account-id (`knm_numbers:create/2`; --state, default in_service).
    Create(OpArgs),
    /// Reserve a number for --account-id (`knm_numbers:reserve/2`).
    Reserve(OpArgs),
    /// Put a number in service for --account-id (move/buy, `knm_numbers:move/3`).
    Activate(OpArgs),
    /// Release a number (`knm_numbers:release/2`).
    Release(OpArgs),
    /// Hard-delete a number (`knm_numbers:delete/2`; superduper admins and `system` only).
    Delete(OpArgs),
    /// Which account a number routes to (`knm_number:lookup_account/1`).
    Identify(OpArgs),
    /// Generate QUANTITY consecutive pool numbers from START for ACCOUNT_ID (`kazoo_number_manager_maintenance:generate_numbers/4`). Exits
    /// non-zero when any number could not be written (the report names each).
    Generate(GenerateArgs),
    /// Import a knm_inventory CSV (header `number`, optional `state`, `account_id`,
    /// `module_name`, other columns become public fields). Exits non-zero when any row failed.
    Import(ImportArgs),
    /// Search the configured carriers for numbers under PREFIX (`knm_search`). The carriers' numbers
    /// found are kept as `discovery` records for `discovery_expiry_d` days: `activate` (or
    /// `create`) of one buys it from its carrier.
    Search(SearchArgs),
}

/// Options of one number operation.
#[derive(Debug, Args)]
struct OpArgs {
    /// The number (normalized per `knm_converters:normalize/1`: 4158867900, 14158867900 and +14158867900 are the same).
    number: String,
    /// The account to assign the number to (create, reserve, activate).
    #[arg(long)]
    account_id: Option<String>,
    /// The account performing the operation [default: system].
    #[arg(long)]
    auth_account_id: Option<String>,
    /// The state to create the number in (create only).
    #[arg(long)]
    state: Option<String>,
    /// Decide and show the result, but write nothing and call no carrier (`knm_number_options:dry_run`).
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PoolArg {
    /// `numbers%2Fmanaged` (knm_managed).
    Managed,
    /// `numbers%2Finum` (knm_inum; START is 15 digits beginning 8835100).
    Inum,
}

/// `numbers generate`.
#[derive(Debug, Args)]
struct GenerateArgs {
    /// Which pool.
    #[arg(value_enum)]
    pool: PoolArg,
    /// The owning account.
    account_id: String,
    /// The first number, digits without `+`.
    start: u64,
    /// How many numbers.
    quantity: u64,
}

/// `numbers import`.
#[derive(Debug, Args)]
struct ImportArgs {
    /// The CSV file.
    file: PathBuf,
}

/// `numbers search`.
#[derive(Debug, Args)]
struct SearchArgs {
    /// The prefix (`415`, `+1415`).
    prefix: String,
    /// How many numbers at most.
    #[arg(long, default_value_t = 10)]
    quantity: usize,
    /// How many of the numbers found to skip (paging).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// The two-letter country whose dialling code goes before PREFIX.
    #[arg(long, default_value = "US")]
    country: String,
    /// Search on behalf of this account (the internal carriers such as knm_local only answer
    /// searches made for an account, as in Kazoo).
    #[arg(long)]
    account_id: Option<String>,
}

/// A number manager error as the command's error, in its own JSON shape under `--json` (a
/// refused account id is the number manager's `invalid account id` error).
fn knm_error(e: impl Into<numbers::Error>) -> anyhow::Error {
    anyhow::Error::new(CliError::from_knm(&e.into().to_json()))
}

/// A progress bar on stderr, hidden under `--json` or when stderr is not a terminal.
fn progress(global: &GlobalArgs, total: u64) -> ProgressBar {
    let target = if global.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} numbers ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// Runs `switchboard numbers …`.
pub(crate) async fn run(
    args: &NumbersArgs,
    global: &GlobalArgs,
    store: SharedStore,
) -> anyhow::Result<ExitCode> {
    let numbers = NumberStore::from_store(store).await.map_err(knm_error)?;
    let (name, op) = match &args.command {
        NumbersCommand::Get(a) => ("get", a),
        NumbersCommand::Create(a) => ("create", a),
        NumbersCommand::Reserve(a) => ("reserve", a),
        NumbersCommand::Activate(a) => ("activate", a),
        NumbersCommand::Release(a) => ("release", a),
        NumbersCommand::Delete(a) => ("delete", a),
        NumbersCommand::Identify(a) => ("identify", a),
        NumbersCommand::Generate(g) => return generate(&numbers, g, global).await,
        NumbersCommand::Import(i) => return import(&numbers, i, global).await,
        NumbersCommand::Search(s) => {
            let account = s.account_id.as_deref().map(AccountId::parse).transpose();
            let account = account.map_err(knm_error)?;
            let request = NumberSearch {
                prefix: &s.prefix,
                quantity: s.quantity,
                offset: s.offset,
                country: &s.country,
                account: account.as_ref(),
            };
            let hits = numbers.find_for(&request).await.map_err(knm_error)?;
            numbers.keep_discovery(&hits).await.map_err(knm_error)?;
            let value = Value::Array(hits.iter().map(numbers::store::search_row).collect());
            output::print(global, &value, || output::human(&value));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let number = numbers.normalize(&op.number).map_err(knm_error)?;
    let value = if name == "identify" {
        numbers.lookup_account(&number).await.map_err(knm_error)?.to_json()
    } else {
        let state = match &op.state {
            Some(s) => Some(s.parse::<NumberState>().map_err(knm_error)?),
            None => None,
        };
        let mut operation =
            operation_for_command(name, op.account_id.as_deref(), state).map_err(knm_error)?;
        if let numbers::Operation::Create(c) = &mut operation {
            c.number_is_porting = numbers.is_porting(&number).await.map_err(knm_error)?;
        }
        let auth_by = match &op.auth_account_id {
            Some(a) => AuthBy::parse(a).map_err(knm_error)?,
            None => AuthBy::System,
        };
        let opts = RunOptions { dry_run: op.dry_run, ..RunOptions::by(auth_by.clone()) };
        let decision = numbers.apply(&number, &operation, &opts).await.map_err(knm_error)?;
        numbers.public_json(&decision.doc, &auth_by)
    };
    output::print(global, &value, || output::human(&value));
    Ok(ExitCode::SUCCESS)
}

async fn generate(
    numbers: &NumberStore,
    args: &GenerateArgs,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let account = AccountId::parse(&args.account_id).map_err(knm_error)?;
    let pool = match args.pool {
        PoolArg::Managed => Pool::Managed,
        PoolArg::Inum => Pool::Inum,
    };
    let bar = progress(global, args.quantity);
    let tick = |n: usize| bar.inc(n as u64);
    let report = numbers
        .generate(pool, &account, args.start, args.quantity, &tick)
        .await
        .map_err(knm_error)?;
    bar.finish_and_clear();
    finish_report(global, &report.to_json(), report.errors.is_empty())
}

async fn import(
    numbers: &NumberStore,
    args: &ImportArgs,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let rows = bytes.iter().filter(|b| **b == b'\n').count().saturating_sub(1);
    let bar = progress(global, rows as u64);
    let tick = |n: usize| bar.inc(n as u64);
    let report = numbers.import_csv(&bytes[..], &tick).await.map_err(knm_error)?;
    bar.finish_and_clear();
    finish_report(global, &report.to_json(), report.errors.is_empty())
}

fn finish_report(global: &GlobalArgs, value: &Value, ok: bool) -> anyhow::Result<ExitCode> {
    output::print(global, value, || {
        let saved = value["success"].as_object().map_or(0, |m| m.len());
        let mut text = format!("{saved} numbers written");
        if let Some(errors) = value["errors"].as_object().filter(|e| !e.is_empty()) {
            text.push_str(&format!(", {} refused:", errors.len()));
            for (n, e) in errors {
                text.push_str(&format!("\n  {n}: {}", e["message"].as_str().unwrap_or("")));
            }
        }
        text
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
