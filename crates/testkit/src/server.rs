//! The test CouchDB: an external `COUCHDB_URL`, or `tools/couch-peer` processes we start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use crate::http::{self, percent_encode};
use crate::install;

/// How long a starting server gets to answer `GET /_up`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const READY_LINE: &str = "couch-peer listening on http://127.0.0.1:";

/// Where a test's CouchDB is.
///
/// Honors `COUCHDB_URL` (plus `COUCHDB_USER` / `COUCHDB_PASSWORD`, or credentials in the URL):
/// then no process is started and every test talks to that server. Otherwise the harness runs
/// `tools/couch-peer` (see the crate docs), bound to 127.0.0.1.
///
/// Dropping a server started by [`CouchServer::start_persistent`] kills its process. The
/// [`shared`](CouchServer::shared) server lives until the test process exits.
pub struct CouchServer {
    url: String,
    credentials: Option<(String, String)>,
    process: Option<Process>,
}

enum Store {
    Memory,
    Dir(PathBuf),
}

struct Process {
    store: Store,
    port: u16,
    child: Option<Child>,
    /// Read side of the (already unlinked) file that receives the server's stdout and stderr.
    log: File,
}

impl CouchServer {
    /// One in-memory couch-peer shared by every test of this test binary, or the external
    /// `COUCHDB_URL` server.
    ///
    /// Started lazily on first use, on a free loopback port; the process is killed when the
    /// test process exits (it runs with `PR_SET_PDEATHSIG`). Tests share it, so each test
    /// creates its own databases with [`unique_db`](crate::unique_db).
    ///
    /// # Panics
    ///
    /// When `node` (or, on first use, `npm`) is missing, the install fails, or the server does
    /// not answer `GET /_up` within 30 s; the message includes the server's log.
    pub fn shared() -> &'static CouchServer {
        static SHARED: OnceLock<CouchServer> = OnceLock::new();
        SHARED.get_or_init(|| Self::external().unwrap_or_else(|| Self::launch(Store::Memory, 0)))
    }

    /// A private couch-peer storing its databases with leveldb in `dir` (created if missing),
    /// for kill/restart tests. A `config.json` already in `dir` is used, e.g.
    /// `{"admins":{"admin":"secret"}}` to require authentication.
    ///
    /// Returns `None` when `COUCHDB_URL` is set: an external server cannot be killed. Callers
    /// then print a note and return.
    ///
    /// # Panics
    ///
    /// As [`shared`](CouchServer::shared).
    pub fn start_persistent(dir: &Path) -> Option<CouchServer> {
        if Self::external().is_some() {
            return None;
        }
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().expect("testkit: current dir").join(dir)
        };
        Some(Self::launch(Store::Dir(dir), 0))
    }

    /// The server's base URL, e.g. `http://127.0.0.1:40123`: no trailing slash, no credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `(user, password)` to use with [`url`](CouchServer::url); `None` for an admin-party
    /// couch-peer or an external server given without credentials.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// [`url`](CouchServer::url) with the [`credentials`](CouchServer::credentials) (if any) in it,
    /// percent-encoded: what a client that takes one URL (the daemon, raw HTTP writes) needs.
    pub fn url_with_credentials(&self) -> String {
        match &self.credentials {
            Some((user, password)) => self.url.replacen(
                "://",
                &format!("://{}:{}@", percent_encode(user), percent_encode(password)),
                1,
            ),
            None => self.url.clone(),
        }
    }

    /// Whether this is the external `COUCHDB_URL` server (which the harness cannot kill).
    pub fn is_external(&self) -> bool {
        self.process.is_none()
    }

    /// SIGKILLs the server process and waits for it to exit. Does nothing if it is already
    /// killed.
    ///
    /// # Panics
    ///
    /// On an external server.
    pub fn kill(&mut self) {
        let process =
            self.process.as_mut().expect("testkit: cannot kill the external COUCHDB_URL server");
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data directory (killing it
    /// first if it still runs) and returns once `GET /_up` answers.
    ///
    /// # Panics
    ///
    /// On an external server, or when the restart fails (for example, another process took
    /// the port meanwhile); the message includes the server's log.
    pub fn restart(&mut self) {
        assert!(!self.is_external(), "testkit: cannot restart the external COUCHDB_URL server");
        self.kill();
        let old = self.process.take().expect("a process");
        let fresh = Self::launch(old.store, old.port);
        *self = fresh;
    }

    /// What the server process printed so far (stdout and stderr of the current run); empty
    /// for an external server. Handy in assertion messages.
    pub fn server_log(&self) -> String {
        self.process.as_ref().map(|p| read_log(&p.log)).unwrap_or_default()
    }

    fn external() -> Option<CouchServer> {
        let raw = std::env::var("COUCHDB_URL").ok().filter(|s| !s.trim().is_empty())?;
        let user = std::env::var("COUCHDB_USER").ok();
        let password = std::env::var("COUCHDB_PASSWORD").ok();
        let (url, credentials) = parse_external(&raw, user, password);
        Some(CouchServer { url, credentials, process: None })
    }

    fn launch(store: Store, port: u16) -> CouchServer {
        let dir = install::ensure_ready();
        let (log_write, log) = log_file();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("couch-peer.js")).arg(port.to_string());
        match &store {
            Store::Memory => cmd.arg("--in-memory"),
            Store::Dir(data) => cmd.arg(data),
        };
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_write.try_clone().expect("testkit: dup log fd"))
            .stderr(log_write);
        die_with_parent(&mut cmd);
        let mut child = spawn_long_lived(cmd)
            .unwrap_or_else(|e| panic!("testkit: cannot start `node couch-peer.js`: {e}"));

        let deadline = Instant::now() + START_TIMEOUT;
        let mut bound: Option<u16> = None;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "testkit: couch-peer exited ({status}) before it was ready. Its log:\n{}",
                    read_log(&log)
                );
            }
            if bound.is_none() {
                bound = read_log(&log)
                    .lines()
                    .find_map(|l| l.strip_prefix(READY_LINE)?.trim().parse().ok());
            }
            if let Some(port) = bound {
                let up = format!("http://127.0.0.1:{port}/_up");
                if matches!(http::request("GET", &up, None, Duration::from_secs(2)), Ok((200, _))) {
                    let url = format!("http://127.0.0.1:{port}");
                    let process = Process { store, port, child: Some(child), log };
                    return CouchServer { url, credentials: None, process: Some(process) };
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "testkit: couch-peer did not answer GET /_up within {START_TIMEOUT:?}. Its log:\n{}",
                    read_log(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for CouchServer {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl std::fmt::Debug for CouchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchServer")
            .field("url", &self.url)
            .field("external", &self.is_external())
            .field("has_credentials", &self.credentials.is_some())
            .finish()
    }
}

/// `COUCHDB_URL` (+ `COUCHDB_USER` / `COUCHDB_PASSWORD`, which win over credentials in the
/// URL) → (URL without credentials or trailing slash, credentials).
fn parse_external(
    raw: &str,
    user: Option<String>,
    password: Option<String>,
) -> (String, Option<(String, String)>) {
    let mut parsed = url::Url::parse(raw.trim())
        .unwrap_or_else(|e| panic!("testkit: COUCHDB_URL={raw:?} is not a URL: {e}"));
    let decode = |s: &str| {
        percent_decode(s).unwrap_or_else(|| panic!("testkit: bad percent-encoding in COUCHDB_URL"))
    };
    let mut credentials = None;
    if !parsed.username().is_empty() {
        credentials = Some((decode(parsed.username()), decode(parsed.password().unwrap_or(""))));
    }
    if let Some(user) = user {
        credentials = Some((user, password.unwrap_or_default()));
    }
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    (parsed.as_str().trim_end_matches('/').to_string(), credentials)
}

/// A log file the child writes to and we read from; its name is unlinked at once, so nothing
/// is left on disk.
fn log_file() -> (File, File) {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "testkit-couch-peer-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let write =
        File::create(&path).unwrap_or_else(|e| panic!("testkit: create {}: {e}", path.display()));
    let read =
        File::open(&path).unwrap_or_else(|e| panic!("testkit: open {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    (write, read)
}

fn read_log(log: &File) -> String {
    let mut text = String::new();
    let mut reader = log;
    if reader.seek(SeekFrom::Start(0)).is_ok() {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// The child gets SIGKILL when the thread that forked it exits (Linux `PR_SET_PDEATHSIG`).
/// Children are forked by [`spawn_long_lived`]'s thread, which lives as long as the process,
/// so in effect they die with the test process, even when it is killed.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1); // the test process already died
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that the child dies with the test process (see [`die_with_parent`]).
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    die_with_parent(&mut cmd);
    spawn_long_lived(cmd)
}

/// Spawns `cmd` from one thread that never exits: `PR_SET_PDEATHSIG` fires when the *forking
/// thread* ends, and test threads end after every test.
fn spawn_long_lived(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("testkit: spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).expect("testkit: spawner thread is gone");
    reply_rx.recv().expect("testkit: spawner thread is gone")
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_external;

    #[test]
    fn external_urls_lose_credentials_and_trailing_slash() {
        assert_eq!(
            parse_external("http://127.0.0.1:5984/", None, None),
            ("http://127.0.0.1:5984".to_string(), None)
        );
        assert_eq!(
            parse_external(" https://ad%40min:p%3Ass@couch.example:6984/couch/ ", None, None),
            (
                "https://couch.example:6984/couch".to_string(),
                Some(("ad@min".to_string(), "p:ss".to_string()))
            )
        );
        assert_eq!(
            parse_external("http://u:p@h:1", Some("admin".into()), Some("pw".into())),
            ("http://h:1".to_string(), Some(("admin".to_string(), "pw".to_string())))
        );
    }
}
