//! Finding `node` and installing `tools/couch-peer`'s npm packages once, across processes.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

/// `<repo>/tools/couch-peer`. Found first from the running test's `CARGO_MANIFEST_DIR` (cargo
/// sets it at run time to the package under test, somewhere below the repo root), then from
/// this crate's manifest directory at build time. The run-time lookup matters when a target
/// directory is shared by two checkouts: cargo may reuse a testkit built in the other one, whose
/// build-time path then names the wrong (or a deleted) repo.
pub(crate) fn couch_peer_dir() -> PathBuf {
    let at_run_time = std::env::var_os("CARGO_MANIFEST_DIR").and_then(|dir| {
        Path::new(&dir)
            .ancestors()
            .map(|a| a.join("tools/couch-peer"))
            .find(|d| d.join("couch-peer.js").is_file())
    });
    let dir = at_run_time
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/couch-peer"));
    dir.canonicalize().unwrap_or(dir)
}

/// Makes sure `node` runs and couch-peer's `node_modules` is current; panics with a clear
/// message otherwise. Runs the check once per process.
pub(crate) fn ensure_ready() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = couch_peer_dir();
        assert!(
            dir.join("couch-peer.js").is_file(),
            "testkit: {} not found (expected tools/couch-peer/couch-peer.js in the repo)",
            dir.join("couch-peer.js").display()
        );
        check_node();
        if !installed(&dir) {
            install(&dir);
        }
        dir
    })
}

fn check_node() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "testkit: `node --version` failed ({}): {}. couch-peer needs Node.js >= 18 on PATH \
             (or set COUCHDB_URL to use an existing CouchDB)",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "testkit: cannot run `node` ({e}). The test CouchDB (tools/couch-peer) needs Node.js \
             >= 18 and npm on PATH; install them (e.g. `apt-get install nodejs npm`), or set \
             COUCHDB_URL to use an existing CouchDB"
        ),
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `node_modules` is current when npm's own record of it (`node_modules/.package-lock.json`)
/// is not older than `package-lock.json`.
fn installed(dir: &Path) -> bool {
    match (
        mtime(&dir.join("node_modules/.package-lock.json")),
        mtime(&dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    }
}

/// Runs `npm ci` under an exclusive `flock` shared by every test process on the machine, then
/// re-checks: whoever got the lock first installs, the others find it done.
fn install(dir: &Path) {
    let key: String =
        dir.to_string_lossy().chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect();
    let lock_path = std::env::temp_dir().join(format!("testkit-npm-{key}.lock"));
    let lock = File::create(&lock_path).unwrap_or_else(|e| {
        panic!("testkit: cannot create lock file {}: {e}", lock_path.display())
    });
    // SAFETY: flock on a file descriptor we own; it is released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert!(rc == 0, "testkit: flock {}: {}", lock_path.display(), std::io::Error::last_os_error());
    if installed(dir) {
        return;
    }
    eprintln!("testkit: installing couch-peer's npm packages (npm ci) in {}", dir.display());
    let out = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "testkit: cannot run `npm` ({e}). tools/couch-peer needs its npm packages: install \
                 npm, or run `npm ci --ignore-scripts` in {} yourself, or set COUCHDB_URL",
                dir.display()
            )
        });
    assert!(
        out.status.success(),
        "testkit: `npm ci --ignore-scripts` in {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Mark the install as current even if npm wrote its record before the lock file's mtime.
    let record = dir.join("node_modules/.package-lock.json");
    if let Ok(f) = File::options().append(true).open(&record) {
        let _ = f.set_modified(SystemTime::now());
    }
    assert!(installed(dir), "testkit: npm ci finished but {} is missing", record.display());
    drop(lock);
}
