//! `switchboard serve`: the daemon. Opens the store, starts the routing reactor and serves the
//! HTTP API until SIGTERM or ctrl-c.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use docstore::SharedStore;
use stepswitch::reactor::{self, ReactorOptions};
use tokio_util::sync::CancellationToken;

/// Options of `switchboard serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port; the line
    /// `switchboard listening on http://ADDR` on stdout names it).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) listen: String,
    /// How long the first change of a burst waits for more before its table is rebuilt.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub(crate) debounce: Duration,
    /// How often the database list is polled for new or deleted account databases (when the
    /// server has no `_db_updates` feed).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) discover_every: Duration,
}

/// Runs the daemon until SIGTERM or ctrl-c; in-flight requests finish first.
pub(crate) async fn run(args: &ServeArgs, store: SharedStore) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let mut options = ReactorOptions::defaults();
    options.debounce = args.debounce;
    options.discover_every = args.discover_every;
    let routing = reactor::spawn(store, options, shutdown.clone());
    let app = crate::api::router(routing);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    println!("switchboard listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminated().await;
            stop.cancel();
        })
        .await
        .context("the HTTP server failed")?;
    shutdown.cancel();
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM (Unix) or ctrl-c.
async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("Shutting down.");
}
