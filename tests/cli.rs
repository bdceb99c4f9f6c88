//! The command line as a user meets it, run as the built binary: errors that say why in one JSON
//! shape under `--json` (usage errors included) with non-zero exits, a data dir that must exist,
//! readable output without `--json`, help without empty environment values, and logs without
//! colour codes when they do not go to a terminal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary with a clean environment: no store settings of the test's own.
fn switchboard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for var in [
        "COUCHDB_URL",
        "COUCHDB_USER",
        "COUCHDB_PASSWORD",
        "SWITCHBOARD_CONFIG",
        "SWITCHBOARD_DATA_DIR",
        "SWITCHBOARD_LOG",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Output {
    switchboard().args(args).output().expect("run switchboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one error document of a `--json` run, checked for the shape every error has.
fn json_error(out: &Output) -> Value {
    assert!(!out.status.success(), "an error exits non-zero: {out:?}");
    let body: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON document on stdout ({e}): {out:?}"));
    let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["code", "error", "message", "cause"], "{body}");
    assert!(body["code"].is_u64() && body["error"].is_string() && body["message"].is_string());
    body
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

#[test]
fn usage_errors_are_json_under_json_and_exit_2() {
    let out = run(&["--json", "route"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let body = json_error(&out);
    assert_eq!(
        (body["code"].as_u64(), body["error"].as_str()),
        (Some(400), Some("invalid_arguments"))
    );
    assert!(body["message"].as_str().unwrap().contains("<NUMBER>"), "{body}");

    let out = run(&["--json", "dbs", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_error(&out)["cause"], "--no-such-flag");

    let out = run(&["--json", "numbers"]);
    assert_eq!(out.status.code(), Some(2));
    let message = json_error(&out)["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("a subcommand is required: switchboard numbers"), "{message}");

    // Without --json, clap's text on stderr and nothing on stdout.
    let out = run(&["route"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(text(&out.stderr).contains("Usage:"), "{out:?}");

    // Help is not an error, --json or not.
    let out = run(&["--json", "--help"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("Usage:"));
}

#[test]
fn help_shows_environment_variables_without_values() {
    let out = run(&["serve", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("[env: COUCHDB_URL]"), "{help}");
    assert!(help.contains("[env: SWITCHBOARD_LISTEN]"), "{help}");
    assert!(!help.contains("=]"), "no empty environment values: {help}");
    // A set variable is not shown either (it may carry a password).
    let out = switchboard()
        .args(["serve", "--help"])
        .env("COUCHDB_URL", "http://admin:s3cret@couch.example:5984")
        .output()
        .expect("run");
    assert!(!text(&out.stdout).contains("s3cret"), "{}", text(&out.stdout));
}

#[test]
fn a_data_dir_that_does_not_exist_is_an_error_unless_asked_to_create_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("mistyped");
    let out = run(&["--json", "--data-dir", dir_arg(&missing), "dbs"]);
    let body = json_error(&out);
    assert_eq!(body["error"], "data_dir_not_found", "{body}");
    assert!(body["message"].as_str().unwrap().contains("--create-data-dir"), "{body}");
    assert!(!missing.exists(), "nothing was created");

    let out = run(&["--data-dir", dir_arg(&missing), "route", "+14155550100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"), "{out:?}");

    // `serve` refuses a named directory that does not exist too.
    let out = run(&["--data-dir", dir_arg(&missing), "serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("does not exist"), "{out:?}");

    let out = run(&["--data-dir", dir_arg(&missing), "--create-data-dir", "--json", "dbs"]);
    assert!(out.status.success(), "{out:?}");
    assert!(missing.is_dir());
}

#[test]
fn an_unparseable_number_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["--json", "--data-dir", dir_arg(dir.path()), "route", "hello"]);
    let body = json_error(&out);
    assert_eq!(
        (body["code"].as_u64(), body["error"].as_str()),
        (Some(400), Some("invalid_number"))
    );
    assert_eq!(body["cause"], "hello");

    let out = run(&["--data-dir", dir_arg(dir.path()), "route", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: \"hello\" is not a number"), "{out:?}");

    // A number is still routed (to nothing, on an empty store), with exit 0.
    let out = run(&["--data-dir", dir_arg(dir.path()), "route", "+14155550100"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("no resources route this number"), "{out:?}");

    // The number manager's errors have the same shape.
    let out = run(&["--json", "--data-dir", dir_arg(dir.path()), "numbers", "get", "hello"]);
    let body = json_error(&out);
    assert_eq!(body["error"], "not_reconcilable", "{body}");
}

#[test]
fn an_unreachable_couchdb_is_named_with_its_cause() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://admin:secret@127.0.0.1:{port}");
    let expected = format!("CouchDB at http://127.0.0.1:{port}: connection refused");

    let out = run(&["--json", "--couch-url", &url, "dbs"]);
    let body = json_error(&out);
    assert_eq!(body["message"], expected, "{body}");
    assert_eq!(
        (body["code"].as_u64(), body["error"].as_str()),
        (Some(503), Some("store_unreachable"))
    );
    assert!(!out.stdout.windows(6).any(|w| w == b"secret"), "no password in the error");

    let out = run(&["--couch-url", &url, "serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("error: {expected}")), "{stderr}");
    assert!(!stderr.contains("%5F"), "readable URLs: {stderr}");
}

#[test]
fn numbers_print_text_unless_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir_arg(dir.path());
    let account = "acc00000000000000000000000000001";
    let out =
        run(&["--data-dir", data, "numbers", "create", "+14155550100", "--account-id", account]);
    assert!(out.status.success(), "{out:?}");
    let human = text(&out.stdout);
    assert!(serde_json::from_str::<Value>(&human).is_err(), "not JSON: {human}");
    let line =
        |key: &str| human.lines().find(|l| l.starts_with(&format!("{key}:"))).map(str::to_owned);
    assert!(line("id").is_some_and(|l| l.ends_with("+14155550100")), "{human}");
    assert!(line("state").is_some_and(|l| l.ends_with("in_service")), "{human}");

    let out = run(&["--json", "--data-dir", data, "numbers", "get", "+14155550100"]);
    assert!(out.status.success(), "{out:?}");
    let number: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(number["state"], "in_service");

    let out = run(&["--data-dir", data, "numbers", "identify", "4155550100"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout)
        .lines()
        .any(|l| l.starts_with("account_id:") && l.ends_with(account)));
}

/// Starts `serve` (after the global options `args`) with its stderr in a pipe, waits for the
/// banner, stops it and returns stderr.
fn serve_log(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut child = switchboard()
        .args(args)
        .args(["--log-level", "info", "serve", "--listen", "127.0.0.1:0"])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stdout = child.stdout.take().expect("stdout");
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("switchboard listening on "));
    assert!(listening, "serve started");
    // SIGTERM: a clean stop, which logs too.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().expect("serve exits");
    assert!(out.status.success(), "{out:?}");
    text(&out.stderr)
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = serve_log(&["--data-dir", dir_arg(dir.path())], &[]);
    assert!(log.contains("INFO"), "the daemon logged: {log}");
    assert!(!log.contains('\u{1b}'), "no escape codes in a redirected log: {log:?}");
}

#[test]
fn serve_creates_the_default_data_dir_on_a_fresh_machine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let xdg = dir.path().join("xdg");
    serve_log(&[], &[("XDG_DATA_HOME", dir_arg(&xdg))]);
    assert!(xdg.join("switchboard").is_dir(), "the README's first command made its store");
    // The other commands never create it: they read an existing store.
    let other = dir.path().join("other");
    let out = switchboard().arg("dbs").env("XDG_DATA_HOME", &other).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!other.exists());
}

/// Runs `serve` on a terminal (util-linux `script` gives it a pseudo-terminal) until it has
/// logged an INFO line, and returns what the terminal showed up to there.
fn serve_on_a_terminal(data: &Path, no_color: Option<&str>) -> String {
    let command = format!(
        "{} --data-dir {} --create-data-dir --log-level info serve --listen 127.0.0.1:0",
        env!("CARGO_BIN_EXE_switchboard"),
        dir_arg(data)
    );
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]).stdin(Stdio::null()).stdout(Stdio::piped());
    script.env_remove("NO_COLOR").env_remove("SWITCHBOARD_LOG");
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let mut child = script.spawn().expect("start script");
    let stdout = child.stdout.take().expect("stdout");
    let mut shown = String::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        shown.push_str(&line);
        shown.push('\n');
        if line.contains("INFO") {
            break;
        }
    }
    // Closing the terminal (script's end) hangs the daemon up.
    let _ = child.kill();
    let _ = child.wait();
    shown
}

#[test]
fn logs_are_coloured_on_a_terminal_unless_no_color() {
    let found = testkit::find_program("script").is_some();
    if !testkit::require("logs_are_coloured_on_a_terminal", &[("script", found)], "util-linux") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let shown = serve_on_a_terminal(&dir.path().join("a"), None);
    assert!(shown.contains("INFO") && shown.contains('\u{1b}'), "colour on a terminal: {shown:?}");
    let shown = serve_on_a_terminal(&dir.path().join("b"), Some("1"));
    assert!(shown.contains("INFO"), "{shown:?}");
    assert!(!shown.contains('\u{1b}'), "NO_COLOR: no escape codes: {shown:?}");
}
