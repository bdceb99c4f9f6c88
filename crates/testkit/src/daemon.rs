//! A real `switchboard serve` process for end-to-end tests: started with the arguments a test
//! chooses, its HTTP base URL read from the banner it prints, killed when the handle drops (and
//! with the test process, even on a panic).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a daemon may take to print its address.
const START_WAIT: Duration = Duration::from_secs(120);

/// A running daemon. Dropping it kills the process.
pub struct Daemon {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts `binary` (the test's `env!("CARGO_BIN_EXE_switchboard")`) with `args` (global
    /// options, then `serve` and its options; add `--listen 127.0.0.1:0` for a free port) and
    /// waits for its `switchboard listening on URL` line. The store variables of the test's own
    /// environment (`COUCHDB_*`, `SWITCHBOARD_CONFIG`, `SWITCHBOARD_DATA_DIR`) are removed, the
    /// log filter is `warn` unless `envs` sets `SWITCHBOARD_LOG`, and stderr is inherited so the
    /// daemon's log shows in a failing test's output.
    ///
    /// # Panics
    /// When the process cannot start or prints no address within two minutes.
    pub fn start(binary: impl AsRef<Path>, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(binary.as_ref());
        cmd.env_remove("COUCHDB_URL")
            .env_remove("COUCHDB_USER")
            .env_remove("COUCHDB_PASSWORD")
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("SWITCHBOARD_DATA_DIR")
            .env("SWITCHBOARD_LOG", "warn")
            .envs(envs.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = crate::server::spawn_tied_to_process(cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.as_ref().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Keep draining after the banner so the daemon never blocks on stdout.
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_WAIT;
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("switchboard listening on ") {
                        break base.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("switchboard serve printed no address (exit: {status:?})");
                }
            }
        };
        Daemon { child, base, lines }
    }

    /// The daemon's base URL, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The process id (for signals: `SIGTERM`, `SIGSTOP`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines the daemon printed on stdout since the banner (or since the last call).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
