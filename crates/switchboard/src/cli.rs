//! The command line: the options every command shares, and the commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Carrier routing and number management beside a Kazoo CouchDB cluster.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Parses a command line. Help lists each option's environment variable without its value
    /// (`[env: COUCHDB_URL]`): an unset variable would show as an empty value, and a set one may
    /// hold a password.
    pub(crate) fn from_args(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
        let mut command = hide_env_values(Cli::command());
        let matches = command.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }
}

/// `command` with `hide_env_values` on every argument of every subcommand.
fn hide_env_values(command: clap::Command) -> clap::Command {
    let subcommands: Vec<String> =
        command.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    let mut command = command.mut_args(|arg| arg.hide_env_values(true));
    for name in subcommands {
        command = command.mut_subcommand(name, hide_env_values);
    }
    command
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// CouchDB server URL (credentials may be embedded: http://user:pass@host:5984).
    /// Without it (and without --data-dir) the embedded store in the default data dir is used.
    #[arg(long, global = true, env = "COUCHDB_URL", conflicts_with = "data_dir")]
    pub(crate) couch_url: Option<String>,
    /// CouchDB user name (overrides one in the URL).
    #[arg(long, global = true, env = "COUCHDB_USER", hide_env_values = true)]
    pub(crate) couch_user: Option<String>,
    /// CouchDB password (overrides one in the URL).
    #[arg(long, global = true, env = "COUCHDB_PASSWORD", hide_env_values = true)]
    pub(crate) couch_password: Option<String>,
    /// Directory of the embedded store [default: $XDG_DATA_HOME/switchboard, else
    /// ~/.local/share/switchboard]. It must exist, except that `serve` creates the default one;
    /// see --create-data-dir.
    #[arg(long, global = true, env = "SWITCHBOARD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Create the embedded store's directory when it does not exist (a new, empty store) instead
    /// of refusing: a mistyped --data-dir is an error, not a silently empty store [default: off].
    #[arg(long, global = true)]
    pub(crate) create_data_dir: bool,
    /// Print one JSON document on stdout (errors too, with a non-zero exit).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Log filter for stderr (tracing's env-filter syntax) [default: warn; `serve`: the
    /// configuration file's `log.level`, else info].
    #[arg(long, global = true, env = "SWITCHBOARD_LOG")]
    pub(crate) log_level: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the databases of the store.
    Dbs,
    /// Route one number against the resources, read once from the store.
    Route(crate::cmd_route::RouteArgs),
    /// Run the daemon: live routing tables and the HTTP API.
    Serve(crate::config::ServeArgs),
    /// Phone numbers: get, create, reserve, activate, release, delete, identify, generate,
    /// import, search (Kazoo's number manager).
    Numbers(crate::cmd_numbers::NumbersArgs),
}

/// Runs one command.
pub(crate) async fn run(command: Command, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // The daemon resolves its own settings (a configuration file may name the store).
    let command = match command {
        Command::Serve(args) => return crate::serve::run(&args, global).await,
        other => other,
    };
    let store = crate::store::open(global).await?;
    match command {
        Command::Dbs => {
            let dbs = store.list_dbs().await?;
            let names: Vec<&str> = dbs.iter().map(|d| d.as_str()).collect();
            crate::output::print(global, &serde_json::json!({ "dbs": names }), || names.join("\n"));
        }
        Command::Route(args) => return crate::cmd_route::run(&args, global, store).await,
        Command::Numbers(args) => return crate::cmd_numbers::run(&args, global, store).await,
        Command::Serve(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
