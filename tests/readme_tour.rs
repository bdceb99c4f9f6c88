//! The README's tour, run as printed: every `curl` command of its "A tour of the demo" section is
//! extracted from README.md and run with bash and curl, in order, against a fresh demo daemon
//! (only the address `http://127.0.0.1:8000` is replaced by the test daemon's). Each command's
//! HTTP status and key fields are checked, so the README cannot drift from the product: a step
//! added, removed or reordered in the README fails here until this list says the same.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::Daemon;

/// The address the README's commands use: the daemon's default.
const README_BASE: &str = "http://127.0.0.1:8000";
/// The heading of the tour.
const TOUR_HEADING: &str = "## A tour of the demo";
/// How long a step that waits for the daemon (ready, a new carrier live) may keep failing.
const WAIT: Duration = Duration::from_secs(30);

const ADMIN: &str = "acc00000000000000000000000000001";
const CARRIER_A: &str = "5e5000000000000000000000000000a1";
const CARRIER_B: &str = "5e5000000000000000000000000000a2";
const AVAILABLE: &str = "+14158867903";

/// What one tour command must answer.
struct Step {
    /// A piece of the command that identifies it (its method and path, say).
    command: &'static str,
    /// The HTTP status.
    status: u16,
    /// Retry (the daemon catching up) until the check passes or [`WAIT`] is over.
    eventually: bool,
    /// Checks the body (and the shell's `TOKEN`, for the login step).
    check: fn(&Outcome) -> Result<(), String>,
}

/// What running one command gave.
struct Outcome {
    status: u16,
    body: String,
    token: String,
}

impl Outcome {
    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("not JSON ({e}): {}", self.body))
    }
}

fn ensure(ok: bool, what: &str, outcome: &Outcome) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}; body: {}", outcome.body))
    }
}

/// The endpoints' resource ids of a route answer, in order.
fn resources(answer: &Value) -> Vec<String> {
    answer["data"]["endpoints"]
        .as_array()
        .map(|eps| {
            eps.iter()
                .filter_map(|ep| ep["Custom-Channel-Vars"]["Resource-ID"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A step checked once.
fn step(command: &'static str, status: u16, check: fn(&Outcome) -> Result<(), String>) -> Step {
    Step { command, status, eventually: false, check }
}

/// A step retried while the daemon catches up (ready at start, a new carrier live).
fn eventually(
    command: &'static str,
    status: u16,
    check: fn(&Outcome) -> Result<(), String>,
) -> Step {
    Step { command, status, eventually: true, check }
}

/// The `key` of every item of an answer's `data` list.
fn listed<'a>(answer: &'a Value, key: &str) -> Vec<&'a str> {
    answer["data"]
        .as_array()
        .map(|items| items.iter().filter_map(|item| item[key].as_str()).collect())
        .unwrap_or_default()
}

fn steps() -> Vec<Step> {
    vec![
        eventually("/healthz", 200, |o| {
            ensure(o.json()?["status"] == "ready", "healthz is ready", o)
        }),
        step("/metrics", 200, |o| ensure(o.body.contains("switchboard_"), "Prometheus text", o)),
        step("/v2/openapi.json", 200, |o| {
            let doc = o.json()?;
            ensure(doc["openapi"].is_string(), "an OpenAPI document", o)?;
            ensure(doc["paths"]["/v2/stepswitch/route"].is_object(), "it has /route", o)
        }),
        eventually(r#"route -d '{"To-DID": "+14155550100"}'"#, 200, |o| {
            let answer = o.json()?;
            ensure(answer["data"]["classification"] == "did_us", "a US DID", o)?;
            ensure(resources(&answer) == [CARRIER_B], "demo carrier B routes a US DID", o)
        }),
        step(r#"route -d '{"To-DID": "+18005550100"}'"#, 200, |o| {
            let answer = o.json()?;
            ensure(answer["data"]["classification"] == "tollfree_us", "toll-free", o)?;
            // A classifier's copy of a resource is named `{id}-{classifier}`.
            let by_a = resources(&answer) == [format!("{CARRIER_A}-tollfree_us")];
            ensure(by_a, "demo carrier A routes toll-free", o)
        }),
        step("To-DID=%2B18005550100&explain=true&format=text", 200, |o| {
            ensure(o.body.contains(CARRIER_A), "the report names carrier A", o)?;
            let skipped = format!("skipped {CARRIER_B} (weight 20): classifier bucket");
            ensure(o.body.contains(&skipped), "and why B is skipped", o)
        }),
        step("To-DID=%2B14155550100&format=text", 200, |o| {
            let line = o.body.lines().next().unwrap_or_default();
            ensure(
                line.starts_with("sip:") && line.contains("carrier-b.demo.switchboard.local"),
                "a SIP URI of carrier B's gateway",
                o,
            )
        }),
        step("TOKEN=$(curl -s -X PUT http://127.0.0.1:8000/v2/api_auth", 201, |o| {
            ensure(o.token.len() >= 32, "TOKEN holds the auth token", o)
        }),
        step("http://127.0.0.1:8000/v2/resources\n", 200, |o| {
            let list = o.json()?;
            let ids = listed(&list, "id");
            ensure(ids.contains(&CARRIER_A) && ids.contains(&CARRIER_B), "both carriers", o)
        }),
        step(r#"route -d '{"To-DID": "+442079460000"}'"#, 404, |o| {
            ensure(o.json()?["message"] == "no_carrier", "no carrier yet", o)
        }),
        step(r#"/v2/resources -d '{"data": {"name": "UK carrier""#, 201, |o| {
            ensure(o.json()?["data"]["name"] == "UK carrier", "created", o)
        }),
        eventually(r#"route -d '{"To-DID": "+442079460000"}'"#, 200, |o| {
            let answer = o.json()?;
            let route = answer["data"]["endpoints"][0]["Route"].as_str().unwrap_or_default();
            ensure(route.contains("uk.carrier.example.com"), "the new carrier routes it", o)
        }),
        step("/phone_numbers?prefix=415", 200, |o| {
            let found = o.json()?;
            let numbers = listed(&found, "number");
            ensure(numbers.contains(&AVAILABLE), "the demo's available number is found", o)
        }),
        step("/phone_numbers/%2B14158867903/activate", 200, |o| {
            let number = o.json()?;
            ensure(number["data"]["id"] == AVAILABLE, "the number", o)?;
            ensure(number["data"]["state"] == "in_service", "bought: in service", o)
        }),
        step("/phone_numbers/%2B14158867903/identify", 200, |o| {
            ensure(o.json()?["data"]["account_id"] == ADMIN, "it is the account's", o)
        }),
        step("create_with_state", 201, |o| {
            let number = o.json()?;
            ensure(number["data"]["id"] == "+14155550123", "the number", o)?;
            ensure(number["data"]["state"] == "reserved", "created reserved", o)
        }),
    ]
}

/// The tour's commands: the lines of its `sh` blocks, in order.
fn tour_commands(readme: &str) -> Vec<String> {
    let start = readme.find(TOUR_HEADING).expect("README.md has the tour");
    let rest = &readme[start + TOUR_HEADING.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            "" => {}
            command if in_block => commands.push(command.to_owned()),
            _ => {}
        }
    }
    commands
}

/// Runs one command with bash the way a user's shell would, with `TOKEN` from the earlier steps;
/// curl reports each answer's status on stderr.
fn run(command: &str, base: &str, token: &str) -> Outcome {
    let script = format!(
        "curl() {{ command curl --write-out '%{{stderr}}@@status %{{http_code}}\\n' \"$@\"; }}\n\
         {}\nprintf '@@token %s\\n' \"${{TOKEN:-}}\" >&2\n",
        command.replace(README_BASE, base)
    );
    let out =
        Command::new("bash").arg("-c").arg(&script).env("TOKEN", token).output().expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |tag: &str| {
        stderr.lines().rev().find_map(|l| l.strip_prefix(tag)).unwrap_or_default().to_owned()
    };
    Outcome {
        status: field("@@status ").parse().unwrap_or(0),
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
        token: field("@@token "),
    }
}

#[test]
fn the_readme_tour_works_as_printed() {
    let found = |p: &str| testkit::find_program(p).is_some();
    if !testkit::require(
        "the_readme_tour_works_as_printed",
        &[("bash", found("bash")), ("curl", found("curl"))],
        "apt-get install bash curl",
    ) {
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let commands = tour_commands(&readme);
    let steps = steps();
    let listed: Vec<&str> = steps.iter().map(|s| s.command).collect();
    assert_eq!(
        commands.len(),
        steps.len(),
        "the README's tour {commands:#?}\nthe test's {listed:#?}"
    );
    for (command, step) in commands.iter().zip(&steps) {
        assert!(
            format!("{command}\n").contains(step.command),
            "the README's command {command:?} is not the step the test expects ({:?})",
            step.command
        );
    }

    let dir = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["serve", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    );
    // The README's api key and account are the ones the daemon prints at start.
    let mut banner = String::new();
    let deadline = Instant::now() + WAIT;
    while !banner.contains("try: ") && Instant::now() < deadline {
        for line in daemon.stdout_lines() {
            banner.push_str(&line);
            banner.push('\n');
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let key = banner
        .split("api key ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the banner prints the demo api key: {banner}"));
    assert!(readme.contains(&format!("\"api_key\": \"{key}\"")), "the README's key is {key}");
    assert!(banner.contains(ADMIN), "{banner}");

    let mut token = String::new();
    for (n, (command, step)) in commands.iter().zip(&steps).enumerate() {
        let deadline = Instant::now() + WAIT;
        let outcome = loop {
            let outcome = run(command, daemon.base(), &token);
            let verdict = if outcome.status == step.status {
                (step.check)(&outcome)
            } else {
                Err(format!(
                    "status {} (expected {}): {}",
                    outcome.status, step.status, outcome.body
                ))
            };
            match verdict {
                Ok(()) => break outcome,
                Err(why) if !step.eventually || Instant::now() >= deadline => {
                    panic!("tour step {} `{command}`: {why}", n + 1)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        token = outcome.token;
    }
}
