//! The `switchboard` binary: parses the command line, opens the store and hands off to a command.
//! It only wires; the behaviour lives in the library crates.

mod api;
mod cli;
mod cmd_numbers;
mod cmd_route;
mod config;
mod crawl;
mod http;
mod output;
mod serve;
mod store;

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the routing compile and the inbound number table
/// are allocation-heavy, and mimalloc backs its arenas with transparent huge pages where the
/// kernel allows them (`madvise` mode included), which keeps the table's random probes from
/// missing the TLB as well as the cache (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = output::json_requested(&args);
    let cli = match cli::Cli::from_args(&args) {
        Ok(cli) => cli,
        Err(err) => return output::usage_error(json, &err),
    };
    // `serve` sets up logging once its settings (which may come from a file) are resolved.
    if !matches!(cli.command, cli::Command::Serve(_)) {
        init_tracing(cli.global.log_level.as_deref().unwrap_or("warn"));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return output::fail(cli.global.json, &anyhow::Error::new(err)),
    };
    match runtime.block_on(cli::run(cli.command, &cli.global)) {
        Ok(code) => code,
        Err(err) => output::fail(cli.global.json, &err),
    }
}

/// Logs go to stderr so that `--json` output on stdout stays one clean document, coloured only
/// on a terminal and never with `NO_COLOR`. A filter that does not parse falls back to `info`.
pub(crate) fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(output::log_colours_here())
        .with_writer(std::io::stderr)
        .try_init();
}
