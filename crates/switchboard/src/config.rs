//! The daemon's settings: one TOML file, environment variables and flags, merged with the
//! precedence flags > environment > file > defaults. Every key and its default is documented in
//! the README's "Configuration" section; [`Settings::resolve`] is the only place that merges them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;

use crate::cli::GlobalArgs;

/// The environment variable naming the configuration file (same as `--config`).
pub(crate) const CONFIG_ENV: &str = "SWITCHBOARD_CONFIG";
/// Default listen address: Crossbar's port, loopback only.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Default trusted networks for the unauthenticated `route` endpoint: loopback only.
pub(crate) const DEFAULT_TRUSTED: &[&str] = &["127.0.0.0/8", "::1/128"];
/// Default auth token lifetime.
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Default change-feed heartbeat.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Default first reconnect backoff.
pub(crate) const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Default reconnect backoff cap.
pub(crate) const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Default log filter of the daemon.
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
/// Default largest accepted request body: 1 MiB.
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default debounce of the routing reactor.
pub(crate) const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);
/// Default database discovery poll of the routing reactor.
pub(crate) const DEFAULT_DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// Default time a connection may take to send a request's headers (also its keep-alive idle
/// time: the clock starts when the server waits for the next request).
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request's body may take to arrive, once its headers did.
pub(crate) const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most connections served at once; more are answered 503 and closed.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default grace period for in-flight requests on shutdown.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The flags of `switchboard serve` (the store flags and `--log-level` are global).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see the README's "Configuration" section).
    #[arg(long, env = CONFIG_ENV)]
    pub(crate) config: Option<PathBuf>,
    /// Address the HTTP API listens on [default: 127.0.0.1:8000].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Networks (CIDR, comma separated) whose clients may call the routing endpoints without a
    /// token [default: 127.0.0.0/8,::1/128].
    #[arg(long, env = "SWITCHBOARD_TRUSTED_NETWORKS", value_delimiter = ',')]
    pub(crate) trusted_networks: Option<Vec<IpNet>>,
    /// Lifetime of an auth token from `PUT /v2/api_auth` [default: 1h].
    #[arg(long, env = "SWITCHBOARD_TOKEN_LIFETIME", value_parser = parse_duration)]
    pub(crate) token_lifetime: Option<Duration>,
    /// Heartbeat asked of the server on live change feeds [default: 10s].
    #[arg(long, env = "SWITCHBOARD_FEED_HEARTBEAT", value_parser = parse_duration)]
    pub(crate) feed_heartbeat: Option<Duration>,
    /// First reconnect or retry backoff of every follower: the change feeds, re-reads and the
    /// database fleets (full jitter, doubling) [default: 100ms].
    #[arg(long, env = "SWITCHBOARD_BACKOFF_BASE", value_parser = parse_duration)]
    pub(crate) backoff_base: Option<Duration>,
    /// Longest reconnect or retry backoff of every follower [default: 5s].
    #[arg(long, env = "SWITCHBOARD_BACKOFF_CAP", value_parser = parse_duration)]
    pub(crate) backoff_cap: Option<Duration>,
    /// Largest accepted request body, in bytes or with a KiB/MiB suffix [default: 1MiB].
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_SIZE", value_parser = parse_size)]
    pub(crate) max_body_size: Option<usize>,
    /// Time a connection may take to send a request's headers; also how long an idle keep-alive
    /// connection is kept [default: 10s].
    #[arg(long, env = "SWITCHBOARD_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    pub(crate) header_read_timeout: Option<Duration>,
    /// Time a request's body may take to arrive once its headers did; slower is a 408
    /// [default: 30s].
    #[arg(long, env = "SWITCHBOARD_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    pub(crate) body_read_timeout: Option<Duration>,
    /// Most connections served at once; a connection beyond them is answered 503 and closed
    /// [default: 1024].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Coalescing of route table builds: a change after a quiet period is built at once; one
    /// arriving less than this after the last build waits until this long after it, with
    /// everything else that arrived [default: 50ms].
    #[arg(long, env = "SWITCHBOARD_DEBOUNCE", value_parser = parse_duration)]
    pub(crate) debounce: Option<Duration>,
    /// Account databases (and number databases) read at once, at start and when many change
    /// together [default: 8].
    #[arg(long, env = "SWITCHBOARD_ACCOUNT_CONCURRENCY")]
    pub(crate) account_concurrency: Option<usize>,
    /// Most requests in flight to CouchDB at once (live feeds aside); the rest wait their turn
    /// [default: 16].
    #[arg(long, env = "SWITCHBOARD_STORE_MAX_REQUESTS")]
    pub(crate) store_max_requests: Option<usize>,
    /// How often the database list is polled for new, changed or deleted account and number
    /// databases when the server has no `_db_updates` feed [default: 5s].
    #[arg(long, env = "SWITCHBOARD_DISCOVER_EVERY", value_parser = parse_duration)]
    pub(crate) discover_every: Option<Duration>,
    /// Do not seed an empty embedded store with the demo documents.
    #[arg(long)]
    pub(crate) no_demo: bool,
}

/// The configuration file, as written. Every key is optional; unknown keys are refused so that
/// a typo is an error, not a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    couchdb: FileCouch,
    #[serde(default)]
    embedded: FileEmbedded,
    #[serde(default)]
    api: FileApi,
    #[serde(default)]
    feed: FileFeed,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCouch {
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEmbedded {
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    listen: Option<String>,
    trusted_networks: Option<Vec<String>>,
    token_lifetime: Option<DurationValue>,
    max_body_size: Option<SizeValue>,
    header_read_timeout: Option<DurationValue>,
    body_read_timeout: Option<DurationValue>,
    max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFeed {
    heartbeat: Option<DurationValue>,
    backoff_base: Option<DurationValue>,
    backoff_cap: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
}

/// A duration in the file: whole seconds (`3600`) or humantime text (`"1h"`, `"250ms"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl DurationValue {
    fn get(&self, key: &str) -> anyhow::Result<Duration> {
        match self {
            DurationValue::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationValue::Text(t) => parse_duration(t).map_err(|e| anyhow::anyhow!("{key}: {e}")),
        }
    }
}

/// A size in the file: bytes (`1048576`) or text with a unit (`"1MiB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(usize),
    Text(String),
}

impl SizeValue {
    fn get(&self, key: &str) -> anyhow::Result<usize> {
        match self {
            SizeValue::Bytes(b) => Ok(*b),
            SizeValue::Text(t) => parse_size(t).map_err(|e| anyhow::anyhow!("{key}: {e}")),
        }
    }
}

/// Where the documents are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreSettings {
    /// A CouchDB server.
    Couch {
        /// The server URL (may embed credentials).
        url: String,
        /// User name, overriding one in the URL.
        user: Option<String>,
        /// Password, overriding one in the URL.
        password: Option<String>,
    },
    /// The embedded store in this directory.
    Embedded {
        /// The data directory.
        data_dir: PathBuf,
    },
}

/// The resolved settings of the daemon.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The store.
    pub(crate) store: StoreSettings,
    /// HTTP listen address.
    pub(crate) listen: SocketAddr,
    /// Clients from these networks may call the routing endpoints without a token.
    pub(crate) trusted_networks: Vec<IpNet>,
    /// Auth token lifetime.
    pub(crate) token_lifetime: Duration,
    /// Live feed heartbeat.
    pub(crate) feed_heartbeat: Duration,
    /// First reconnect backoff.
    pub(crate) backoff_base: Duration,
    /// Reconnect backoff cap.
    pub(crate) backoff_cap: Duration,
    /// Log filter (tracing env-filter syntax).
    pub(crate) log_level: String,
    /// Largest accepted request body in bytes.
    pub(crate) max_body_size: usize,
    /// Time a connection may take to send a request's headers (and may stay idle).
    pub(crate) header_read_timeout: Duration,
    /// Time a request body may take to arrive.
    pub(crate) body_read_timeout: Duration,
    /// Most connections served at once.
    pub(crate) max_connections: usize,
    /// Routing reactor debounce.
    pub(crate) debounce: Duration,
    /// Routing reactor database discovery poll.
    pub(crate) discover_every: Duration,
    /// Account databases read at once.
    pub(crate) account_concurrency: usize,
    /// Most requests in flight to CouchDB.
    pub(crate) store_max_requests: usize,
    /// Seed an empty embedded store with the demo documents.
    pub(crate) seed_demo: bool,
}

impl Settings {
    /// The one set of feed settings every follower runs on (the shared documents, routing's
    /// sources and account databases, the inbound number table): `feed.*`, `--debounce`,
    /// `--discover-every` (a fleet's poll) and `--account-concurrency` (a fleet's reads at once).
    pub(crate) fn feed_options(&self) -> docstore::FeedOptions {
        docstore::FeedOptions {
            heartbeat: self.feed_heartbeat,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            debounce: self.debounce,
            poll_every: self.discover_every,
            concurrency: self.account_concurrency,
        }
    }

    /// Merges flags and environment (already merged by clap in `global` and `args`: a flag wins
    /// over its variable), the configuration file (`--config` / `SWITCHBOARD_CONFIG`) and the
    /// defaults.
    ///
    /// # Errors
    /// An unreadable or malformed file, an unknown key, a value that does not parse.
    pub(crate) fn resolve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        Settings::merge(global, args, file)
    }

    fn merge(global: &GlobalArgs, args: &ServeArgs, file: FileConfig) -> anyhow::Result<Settings> {
        // A URL or data dir from flags/env beats anything in the file; within one layer clap
        // already refuses both at once.
        let store = if let Some(url) = &global.couch_url {
            StoreSettings::Couch {
                url: url.clone(),
                user: global.couch_user.clone().or(file.couchdb.user),
                password: global.couch_password.clone().or(file.couchdb.password),
            }
        } else if let Some(dir) = &global.data_dir {
            StoreSettings::Embedded { data_dir: dir.clone() }
        } else if let Some(url) = file.couchdb.url {
            if file.embedded.data_dir.is_some() {
                bail!(
                    "the configuration file sets both couchdb.url and embedded.data_dir: pick one"
                );
            }
            StoreSettings::Couch {
                url,
                user: global.couch_user.clone().or(file.couchdb.user),
                password: global.couch_password.clone().or(file.couchdb.password),
            }
        } else {
            let data_dir =
                file.embedded.data_dir.unwrap_or_else(docstore::EmbeddedStore::default_dir);
            StoreSettings::Embedded { data_dir }
        };

        let listen = match (args.listen, &file.api.listen) {
            (Some(addr), _) => addr,
            (None, Some(text)) => {
                text.parse().with_context(|| format!("api.listen: {text:?} is not ip:port"))?
            }
            (None, None) => DEFAULT_LISTEN.parse().expect("the default listen address parses"),
        };
        let trusted_networks = match (&args.trusted_networks, &file.api.trusted_networks) {
            (Some(nets), _) => nets.clone(),
            (None, Some(texts)) => texts
                .iter()
                .map(|t| parse_net(t).map_err(|e| anyhow::anyhow!("api.trusted_networks: {e}")))
                .collect::<anyhow::Result<_>>()?,
            (None, None) => DEFAULT_TRUSTED
                .iter()
                .map(|t| t.parse().expect("the default networks parse"))
                .collect(),
        };
        let duration = |flag: Option<Duration>,
                        file: &Option<DurationValue>,
                        key: &str,
                        default: Duration|
         -> anyhow::Result<Duration> {
            match (flag, file) {
                (Some(d), _) => Ok(d),
                (None, Some(v)) => v.get(key),
                (None, None) => Ok(default),
            }
        };
        let token_lifetime = duration(
            args.token_lifetime,
            &file.api.token_lifetime,
            "api.token_lifetime",
            DEFAULT_TOKEN_LIFETIME,
        )?;
        let feed_heartbeat = duration(
            args.feed_heartbeat,
            &file.feed.heartbeat,
            "feed.heartbeat",
            DEFAULT_HEARTBEAT,
        )?;
        let backoff_base = duration(
            args.backoff_base,
            &file.feed.backoff_base,
            "feed.backoff_base",
            DEFAULT_BACKOFF_BASE,
        )?;
        let backoff_cap = duration(
            args.backoff_cap,
            &file.feed.backoff_cap,
            "feed.backoff_cap",
            DEFAULT_BACKOFF_CAP,
        )?;
        let max_body_size = match (args.max_body_size, &file.api.max_body_size) {
            (Some(n), _) => n,
            (None, Some(v)) => v.get("api.max_body_size")?,
            (None, None) => DEFAULT_MAX_BODY,
        };
        let header_read_timeout = duration(
            args.header_read_timeout,
            &file.api.header_read_timeout,
            "api.header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
        )?;
        let body_read_timeout = duration(
            args.body_read_timeout,
            &file.api.body_read_timeout,
            "api.body_read_timeout",
            DEFAULT_BODY_READ_TIMEOUT,
        )?;
        let max_connections =
            args.max_connections.or(file.api.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let log_level = global
            .log_level
            .clone()
            .or(file.log.level)
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());

        if token_lifetime.is_zero() {
            bail!("token_lifetime must be longer than 0 s");
        }
        if feed_heartbeat.is_zero() {
            bail!("feed heartbeat must be longer than 0 s");
        }
        if backoff_base > backoff_cap {
            bail!(
                "feed backoff_base ({backoff_base:?}) is longer than backoff_cap ({backoff_cap:?})"
            );
        }
        if max_body_size == 0 {
            bail!("max_body_size must be at least 1 byte");
        }
        if header_read_timeout.is_zero() || body_read_timeout.is_zero() {
            bail!("api.header_read_timeout and api.body_read_timeout must be longer than 0 s");
        }
        if max_connections == 0 {
            bail!("api.max_connections must be at least 1");
        }
        Ok(Settings {
            store,
            listen,
            trusted_networks,
            token_lifetime,
            feed_heartbeat,
            backoff_base,
            backoff_cap,
            log_level,
            max_body_size,
            header_read_timeout,
            body_read_timeout,
            max_connections,
            debounce: args.debounce.unwrap_or(DEFAULT_DEBOUNCE),
            discover_every: args.discover_every.unwrap_or(DEFAULT_DISCOVER_EVERY),
            account_concurrency: args
                .account_concurrency
                .unwrap_or(docstore::DEFAULT_CONCURRENCY)
                .max(1),
            store_max_requests: args
                .store_max_requests
                .unwrap_or(docstore::DEFAULT_MAX_REQUESTS)
                .max(1),
            seed_demo: !args.no_demo,
        })
    }

    /// Whether `ip` is in a trusted network.
    pub(crate) fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_networks.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack socket reports) as IPv4.
pub(crate) fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad configuration file {}", path.display()))
}

/// A CIDR (`10.0.0.0/8`) or a single address (`192.0.2.7`, taken as /32 or /128).
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is neither a CIDR network nor an IP address"))
}

/// `3600` (seconds) or humantime text (`1h`, `250ms`, `1h 30m`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (seconds, or like 1h, 30s, 250ms): {e}"))
}

/// Bytes, or a number with a `B`, `KiB`, `MiB` (also `K`, `M`, `KB`, `MB`, all 1024-based) suffix.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, or like 512KiB, 1MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("{text:?}: unknown size unit {unit:?} (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> GlobalArgs {
        GlobalArgs {
            couch_url: None,
            couch_user: None,
            couch_password: None,
            data_dir: None,
            json: false,
            create_data_dir: false,
            log_level: None,
        }
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::merge(&global(), &ServeArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(s.token_lifetime, Duration::from_secs(3600));
        assert_eq!(s.feed_heartbeat, Duration::from_secs(10));
        assert_eq!(s.backoff_base, Duration::from_millis(100));
        assert_eq!(s.backoff_cap, Duration::from_secs(5));
        assert_eq!(s.max_body_size, 1024 * 1024);
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.body_read_timeout, Duration::from_secs(30));
        assert_eq!(s.max_connections, 1024);
        assert_eq!(s.log_level, "info");
        assert!(matches!(s.store, StoreSettings::Embedded { .. }));
        assert!(s.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(s.is_trusted("127.9.9.9".parse().unwrap()));
        assert!(s.is_trusted("::1".parse().unwrap()));
        assert!(s.is_trusted("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!s.is_trusted("192.0.2.1".parse().unwrap()));
        assert!(s.seed_demo);
    }

    #[test]
    fn the_file_fills_what_flags_and_env_leave_open() {
        let f = file(
            r#"
            [couchdb]
            url = "http://db:5984"
            user = "admin"
            password = "pw"
            [api]
            listen = "0.0.0.0:9000"
            trusted_networks = ["10.0.0.0/8", "192.0.2.7"]
            token_lifetime = "2h"
            max_body_size = "64KiB"
            header_read_timeout = "2s"
            body_read_timeout = 7
            max_connections = 16
            [feed]
            heartbeat = 5
            backoff_base = "50ms"
            backoff_cap = "10s"
            [log]
            level = "debug"
            "#,
        );
        let s = Settings::merge(&global(), &ServeArgs::default(), f).unwrap();
        assert_eq!(
            s.store,
            StoreSettings::Couch {
                url: "http://db:5984".into(),
                user: Some("admin".into()),
                password: Some("pw".into())
            }
        );
        assert_eq!(s.listen, "0.0.0.0:9000".parse().unwrap());
        assert!(s.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(s.is_trusted("192.0.2.7".parse().unwrap()));
        assert!(!s.is_trusted("127.0.0.1".parse().unwrap()));
        assert_eq!(s.token_lifetime, Duration::from_secs(7200));
        assert_eq!(s.max_body_size, 64 * 1024);
        assert_eq!(s.header_read_timeout, Duration::from_secs(2));
        assert_eq!(s.body_read_timeout, Duration::from_secs(7));
        assert_eq!(s.max_connections, 16);
        assert_eq!(s.feed_heartbeat, Duration::from_secs(5));
        assert_eq!(s.backoff_base, Duration::from_millis(50));
        assert_eq!(s.backoff_cap, Duration::from_secs(10));
        assert_eq!(s.log_level, "debug");
    }

    #[test]
    fn flags_and_env_beat_the_file() {
        let f = file(
            "[couchdb]\nurl = \"http://db:5984\"\nuser = \"fileuser\"\n[api]\nlisten = \"0.0.0.0:9000\"\ntoken_lifetime = 60\n[log]\nlevel = \"debug\"\n",
        );
        let mut g = global();
        g.data_dir = Some("/tmp/x".into());
        g.log_level = Some("warn".into());
        let args = ServeArgs {
            listen: Some("127.0.0.1:1234".parse().unwrap()),
            token_lifetime: Some(Duration::from_secs(5)),
            ..ServeArgs::default()
        };
        let s = Settings::merge(&g, &args, f).unwrap();
        assert_eq!(s.store, StoreSettings::Embedded { data_dir: "/tmp/x".into() });
        assert_eq!(s.listen, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(s.token_lifetime, Duration::from_secs(5));
        assert_eq!(s.log_level, "warn");

        let mut g = global();
        g.couch_url = Some("http://other:5984".into());
        let f = file("[couchdb]\nurl = \"http://db:5984\"\nuser = \"fileuser\"\n");
        let s = Settings::merge(&g, &ServeArgs::default(), f).unwrap();
        assert_eq!(
            s.store,
            StoreSettings::Couch {
                url: "http://other:5984".into(),
                user: Some("fileuser".into()),
                password: None
            }
        );
    }

    #[test]
    fn bad_files_and_values_are_refused_with_the_key() {
        assert!(toml::from_str::<FileConfig>("[api]\nlisen = \"x\"\n").is_err());
        let err = Settings::merge(
            &global(),
            &ServeArgs::default(),
            file("[api]\ntoken_lifetime = \"soon\"\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("api.token_lifetime"), "{err}");
        let err = Settings::merge(
            &global(),
            &ServeArgs::default(),
            file("[api]\ntrusted_networks = [\"nope\"]\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let both = file("[couchdb]\nurl = \"http://db\"\n[embedded]\ndata_dir = \"/x\"\n");
        assert!(Settings::merge(&global(), &ServeArgs::default(), both).is_err());
        let err = Settings::merge(
            &global(),
            &ServeArgs::default(),
            file("[feed]\nbackoff_base = \"2m\"\nbackoff_cap = \"1m\"\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("backoff_cap"), "{err}");
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1 parsec").is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("later").is_err());
    }
}
