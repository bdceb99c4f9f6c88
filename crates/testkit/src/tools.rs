//! External programs an end-to-end test needs (Kamailio, SIPp, Chromium…): found on `PATH`,
//! or the test is skipped loudly — and under `CI=true` a missing program fails the test, so CI
//! never passes by skipping.

use std::path::PathBuf;
use std::process::{Child, Command};

/// Where `program` is on `PATH`, if anywhere.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        candidate.metadata().is_ok_and(|meta| {
            use std::os::unix::fs::PermissionsExt;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        })
    })
}

/// Whether every one of `requirements` holds: `(what, found)` pairs such as
/// `("kamailio", find_program("kamailio").is_some())`. When one does not, prints a loud
/// `SKIPPED` banner naming `test`, what is missing and how to install it, and returns `false`
/// (the caller returns early and passes).
///
/// # Panics
/// When something is missing and `CI` is `true`: CI must run the test, not skip it.
pub fn require(test: &str, requirements: &[(&str, bool)], install: &str) -> bool {
    let missing: Vec<&str> =
        requirements.iter().filter(|(_, found)| !found).map(|(what, _)| *what).collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: missing {} (install: {install})", missing.join(", "));
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("CI=true and {message}");
    }
    let rule = "*".repeat(78);
    // Written to the process's stderr itself: the test harness captures `eprintln!` of a
    // passing test, and a skip must be seen.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "\n{rule}\n*** SKIPPED {message}\n{rule}\n");
    false
}

/// A process a test started: in its own process group, killed with the test process
/// (`PR_SET_PDEATHSIG`), and on drop asked to stop (`SIGTERM` to the group, so a forking
/// server's children stop too) and then killed if it has not exited within two seconds.
pub struct TestProcess {
    child: Child,
}

impl TestProcess {
    /// Spawns `cmd` tied to the test process, as the leader of a new process group.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(mut cmd: Command) -> TestProcess {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = crate::server::spawn_tied_to_process(cmd)
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        TestProcess { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for it to exit on its own; its exit status, or `None` (still
    /// running).
    pub fn wait_for_exit(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops it: `SIGTERM` to its group, then `SIGKILL` to the group after two seconds.
    pub fn stop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        if self.is_running() {
            // SAFETY: plain kill(2) on the group this handle created.
            unsafe { libc::kill(group, libc::SIGTERM) };
            if self.wait_for_exit(std::time::Duration::from_secs(2)).is_none() {
                // SAFETY: as above.
                unsafe { libc::kill(group, libc::SIGKILL) };
            }
        }
        let _ = self.child.wait();
        // Children of a forking server that outlived their leader.
        // SAFETY: as above; an empty group is ESRCH, ignored.
        unsafe { libc::kill(group, libc::SIGKILL) };
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
