//! Configuration (TOML, docs/behaviour.md §7).
//!
//! The file is read in two steps: serde into "raw" structs that keep each
//! value's position (`toml::Spanned`), then a check that turns every value
//! into its typed form. Keeping positions lets every complaint, including
//! ones found after deserialisation (a bad address, an out-of-range code),
//! name the file, line and key, which is what an operator needs at 3 a.m.
//! Every key has a default (examples/cidgate.toml shows them all; see
//! docs/behaviour.md §7), so an empty file is the example configuration.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::callerid::{DynamicFormat, PaiForm};
use crate::inventory::{Inventory, InventoryError, Region};
use crate::proxy::dialog::SealKey;
use crate::proxy::{Peer, Settings, TrustList};
use crate::sip::Transport;
use crate::stir::{check_x5u, Attest, KeyError, Signer};

mod limits;
pub use limits::LimitsConfig;
mod health;
pub use crate::proxy::HealthSettings;

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub trust: TrustList,
    /// Next hops, tried in order.
    pub carrier: Vec<CarrierConfig>,
    pub callerid: CallerIdConfig,
    pub reject: RejectConfig,
    pub inventory: InventoryConfig,
    /// STIR/SHAKEN signing; `None` when the section is absent (no signing).
    pub stir: Option<StirConfig>,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    /// `[health]`: carrier probing and the no-provisional timer.
    pub health: HealthSettings,
    /// The file the configuration came from (relative paths are resolved
    /// against its directory); not a TOML key.
    pub source: PathBuf,
}

/// A socket the gateway listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: Vec<ListenAddr>,
    /// Host written into rewritten URIs and Record-Route.
    pub domain: String,
    /// Admin HTTP address; `None` when configured as `""` (disabled).
    pub admin: Option<SocketAddr>,
    pub log: LogFormat,
    /// Keys the AEAD that seals dialog state into Record-Route. Shared by a
    /// restarted (or a second) gateway, it keeps routing dialogs set up before;
    /// `None` means a random key per process.
    pub dialog_secret: Option<String>,
    /// The secret before the last rotation: route state it sealed is still
    /// opened (calls set up before the rotation keep working), never sealed.
    pub dialog_secret_previous: Option<String>,
    /// Proxy cores as configured; 0 means one per available core (see
    /// [`ServerConfig::worker_count`]).
    pub workers: usize,
}

impl ServerConfig {
    /// The number of proxy cores to run: `workers`, or one per core the
    /// process may use when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierConfig {
    /// As written in the configuration, for logs.
    pub uri: String,
    /// The URI host as written: the identity a TLS carrier's certificate must
    /// carry (RFC 5922 §7.2).
    pub host: String,
    pub transport: Transport,
    /// Resolved when the configuration is loaded.
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdConfig {
    pub queue_header: String,
    pub dynamic_header: String,
    pub dynamic_format: DynamicFormat,
    pub default_region: Region,
    pub pai: PaiForm,
    /// Header names removed from forwarded INVITEs.
    pub strip: Vec<String>,
    /// Present the CNAM-shaped name for CNAM-eligible numbers (docs/behaviour.md).
    pub cnam_names: bool,
}

/// `[stir]`: how forwarded INVITEs are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StirConfig {
    /// PEM file of the P-256 private key; read by [`Config::load_signer`].
    pub key: PathBuf,
    /// https URL of the certificate, written into the PASSporT and `info`.
    pub x5u: String,
    /// Attestation for numbers whose numbers.csv row names none.
    pub attest: Attest,
    /// Sign the display name as Rich Call Data.
    pub rcd: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectConfig {
    /// 400..=699.
    pub code: u16,
    pub phrase: String,
    /// Reason header value; empty: no Reason header.
    pub reason: String,
    /// Warning header value; empty: no Warning header.
    pub warning: String,
    /// Extra header lines (`Name: value`), without CRLF.
    pub headers: Vec<String>,
}

/// `[tls]`: files and checks for SIP over TLS. Paths are resolved against the
/// configuration file's directory; `None` when not configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// Certificate chain (PEM) the gateway presents, to the PBX and, as a
    /// client certificate, to carriers that ask for one.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// Trust anchors (PEM) for carrier certificates and PBX client certificates.
    pub ca: Option<PathBuf>,
    /// A carrier's certificate must chain to `ca` and name the URI host.
    pub verify_carrier: bool,
    /// PBX connections must present a certificate chaining to `ca`.
    pub require_client_cert: bool,
}

impl TlsConfig {
    /// Whether any TLS is configured at all (a listener or a carrier needs it).
    pub fn has_identity(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    /// The two files; not read when `redis` is set.
    pub queues: PathBuf,
    pub numbers: PathBuf,
    /// Set when the inventory is shared by several instances through Redis
    /// instead of read from the two files.
    pub redis: Option<RedisInventoryConfig>,
}

/// `[inventory] redis`, `key_prefix`, `snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisInventoryConfig {
    /// `redis://[user:password@]host:port/db` (also `redis+unix:///path`).
    pub url: String,
    /// Prepended to every key, so several gateway groups can share one Redis.
    pub key_prefix: String,
    /// Last-good copy written after every change and served at start when
    /// Redis cannot be reached; without it such a start is refused.
    pub snapshot: Option<PathBuf>,
}

impl RedisInventoryConfig {
    /// The URL without its password, for logs and messages.
    pub fn display_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &self.url[..scheme], &self.url[at + 1..])
            }
            _ => self.url.clone(),
        }
    }
}

/// One thing wrong with a configuration file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: String,
    /// 1-based; 0 when the position is unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem found, one per line when displayed.
    #[error("{}", issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { issues: Vec<ConfigIssue> },
}

impl ConfigError {
    /// The problems found, empty for an I/O error.
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { issues } => issues,
        }
    }
}

const DEFAULT_LISTEN: &[&str] = &["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"];
const DEFAULT_DOMAIN: &str = "gw.example.net";
const DEFAULT_ADMIN: &str = "127.0.0.1:8080";
const DEFAULT_PBX: &[&str] = &["127.0.0.1/32"];
const DEFAULT_CARRIER: &str = "sip:127.0.0.1:5080;transport=udp";
const DEFAULT_QUEUE_HEADER: &str = "X-Queue-Id";
const DEFAULT_DYNAMIC_HEADER: &str = "X-Caller-Id";
const DEFAULT_STRIP: &[&str] = &[
    "X-Queue-Id",
    "X-Caller-Id",
    "P-Preferred-Identity",
    "Remote-Party-ID",
];
const DEFAULT_REJECT_CODE: u16 = 403;
const DEFAULT_REJECT_REASON: &str = "Q.850;cause=21;text=\"no outbound caller ID\"";
/// One proxy core by default: it outruns what a PBX sends on most sites and
/// keeps the path without a dispatcher hop; `workers = 0` uses every core.
const DEFAULT_WORKERS: usize = 1;
const MAX_WORKERS: usize = 256;
const DEFAULT_QUEUES: &str = "queues.csv";
const DEFAULT_NUMBERS: &str = "numbers.csv";
const DEFAULT_KEY_PREFIX: &str = "cidgate:";

// Raw shapes: what serde reads. Every value is optional (absent means the
// default) and spanned (so later checks can point at it).

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    trust: RawTrust,
    carrier: Option<Vec<RawCarrier>>,
    #[serde(default)]
    callerid: RawCallerId,
    #[serde(default)]
    reject: RawReject,
    #[serde(default)]
    inventory: RawInventory,
    stir: Option<RawStir>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default)]
    health: health::RawHealth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStir {
    key: Spanned<String>,
    x5u: Spanned<String>,
    attest: S<String>,
    rcd: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: S<Vec<Spanned<String>>>,
    domain: S<String>,
    admin: S<String>,
    log: Option<LogFormat>,
    dialog_secret: S<String>,
    dialog_secret_previous: S<String>,
    workers: S<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: S<String>,
    key: S<String>,
    ca: S<String>,
    verify_carrier: Option<bool>,
    require_client_cert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    pbx: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarrier {
    uri: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallerId {
    queue_header: S<String>,
    dynamic_header: S<String>,
    dynamic_format: Option<DynamicFormat>,
    default_region: S<String>,
    pai: Option<PaiForm>,
    strip: Option<Vec<Spanned<String>>>,
    cnam_names: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReject {
    code: S<i64>,
    phrase: S<String>,
    reason: S<String>,
    warning: S<String>,
    headers: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    queues: S<String>,
    numbers: S<String>,
    redis: S<String>,
    key_prefix: S<String>,
    snapshot: S<String>,
}

impl Default for Config {
    /// The example configuration (every default, docs/behaviour.md §7), as if
    /// read from `cidgate.toml` in the current directory.
    fn default() -> Config {
        Config::from_toml_str("", Path::new("cidgate.toml"))
            .expect("the built-in defaults are a valid configuration")
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Parses and checks `text`; `source` names the file in errors and is the
    /// base of relative inventory paths.
    pub fn from_toml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        Config::check_toml_str(text, source).result
    }

    /// Like [`from_file`](Self::from_file), but also says where the inventory
    /// is when other keys are wrong, so `check-config` can check both in one run.
    pub fn check_file(path: &Path) -> ConfigCheck {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::check_toml_str(&text, path),
            Err(source) => ConfigCheck {
                result: Err(ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                }),
                inventory: None,
            },
        }
    }

    /// Every problem of `text` in one pass: a key serde refuses (unknown, or a
    /// value of the wrong type) is reported and blanked out, and reading starts
    /// again, so one unknown key does not hide the next.
    pub fn check_toml_str(text: &str, source: &Path) -> ConfigCheck {
        let mut ck = Checker {
            text,
            file: source.display().to_string(),
            issues: Vec::new(),
            default_region: None,
        };
        let mut readable = text.to_string();
        let mut raw: Option<RawConfig> = None;
        // Each round blanks at least one statement, so this ends; the bound is
        // a guard against a span that blanks nothing new.
        for _ in 0..MAX_TOML_ROUNDS {
            match toml::from_str::<RawConfig>(&readable) {
                Ok(r) => {
                    raw = Some(r);
                    break;
                }
                Err(e) => {
                    let message = ck.describe_toml_error(&e);
                    ck.issue(e.span(), message);
                    let blanked = e
                        .span()
                        .is_some_and(|span| blank_statement(&mut readable, span.start));
                    if !blanked {
                        break;
                    }
                }
            }
        }
        let Some(raw) = raw else {
            return ConfigCheck {
                result: Err(ConfigError::Invalid { issues: ck.issues }),
                inventory: None,
            };
        };
        let base = source.parent().unwrap_or(Path::new(""));
        let config = ck.check(raw, source, base);
        let inventory = ck
            .default_region
            .zip(config.inventory.clone())
            .map(|(region, files)| InventorySource {
                files,
                default_region: region,
            });
        let result = match config.config {
            Some(c) if ck.issues.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid { issues: ck.issues }),
        };
        ConfigCheck { result, inventory }
    }

    /// What the proxy core needs, in its own types: the core never sees the
    /// configuration (nor the DNS lookups and file reads behind it).
    pub fn proxy_settings(&self) -> Settings {
        let mut reject_headers = String::new();
        if !self.reject.reason.is_empty() {
            reject_headers.push_str(&format!("Reason: {}\r\n", self.reject.reason));
        }
        if !self.reject.warning.is_empty() {
            reject_headers.push_str(&format!("Warning: {}\r\n", self.reject.warning));
        }
        for h in &self.reject.headers {
            reject_headers.push_str(h);
            reject_headers.push_str("\r\n");
        }
        Settings {
            domain: self.server.domain.clone(),
            listen: self
                .server
                .listen
                .iter()
                .map(|l| Peer {
                    transport: l.transport,
                    addr: l.addr,
                })
                .collect(),
            trust: self.trust.clone(),
            carriers: self
                .carrier
                .iter()
                .map(|c| Peer {
                    transport: c.transport,
                    addr: c.addr,
                })
                .collect(),
            health: self.health.clone(),
            queue_header: self.callerid.queue_header.clone(),
            dynamic_header: self.callerid.dynamic_header.clone(),
            dynamic_format: self.callerid.dynamic_format,
            pai: self.callerid.pai,
            strip: self.callerid.strip.clone(),
            reject_code: self.reject.code,
            reject_phrase: self.reject.phrase.clone(),
            reject_headers,
            key: {
                let key = match &self.server.dialog_secret {
                    Some(secret) => SealKey::from_secret(secret.as_bytes()),
                    None => SealKey::random(),
                };
                match &self.server.dialog_secret_previous {
                    Some(previous) => key.with_previous(previous.as_bytes()),
                    None => key,
                }
            },
            cnam_names: self.callerid.cnam_names,
            stir: self.stir.as_ref().map(|s| crate::proxy::StirSigning {
                attest: s.attest,
                rcd: s.rcd,
            }),
        }
    }

    /// Reads the `[stir]` key; `None` without `[stir]`. The error names the
    /// key file and what is wrong with it.
    pub fn load_signer(&self) -> Result<Option<Signer>, KeyError> {
        self.stir
            .as_ref()
            .map(|s| Signer::from_pem_file(&s.key, &s.x5u))
            .transpose()
    }

    /// Loads the inventory this configuration names: the two files, or the
    /// shared store's current version (blocking; not from within a runtime).
    pub fn load_inventory(&self) -> Result<Inventory, InventoryError> {
        InventorySource {
            files: self.inventory.clone(),
            default_region: self.callerid.default_region,
        }
        .load()
    }
}

/// Rounds of "report, blank, read again" before giving up on a file.
const MAX_TOML_ROUNDS: usize = 256;

/// The verdict on a configuration file, and its inventory files when the keys
/// that locate and read them are fine (even if other keys are not).
#[derive(Debug)]
pub struct ConfigCheck {
    pub result: Result<Config, ConfigError>,
    pub inventory: Option<InventorySource>,
}

/// What loading an inventory needs from the configuration.
#[derive(Debug, Clone)]
pub struct InventorySource {
    pub files: InventoryConfig,
    pub default_region: Region,
}

impl InventorySource {
    /// The files, or with `[inventory] redis` the store's current version
    /// read once (blocking; an unreachable store is an error naming it).
    pub fn load(&self) -> Result<Inventory, InventoryError> {
        match &self.files.redis {
            Some(redis) => crate::store::load_blocking(redis, self.default_region),
            None => Inventory::load(&self.files.queues, &self.files.numbers, self.default_region),
        }
    }
}

/// Replaces the key/value (or the whole table, when `at` is in its header)
/// that contains byte `at` with spaces, keeping line breaks so that every
/// position reported later still points at the original text. Whether
/// anything was blanked.
fn blank_statement(text: &mut String, at: usize) -> bool {
    let Ok(doc) = toml_edit::ImDocument::parse(text.as_str()) else {
        return false;
    };
    let Some(range) = statement_at(doc.as_table(), at) else {
        return false;
    };
    drop(doc);
    let range = range.start.min(text.len())..range.end.min(text.len());
    let blanked: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' || c == '\r' { c } else { ' ' })
        .collect();
    if blanked == text[range.clone()] {
        return false;
    }
    text.replace_range(range, &blanked);
    true
}

/// The innermost key/value holding `at`, or the table whose header holds it.
fn statement_at(table: &toml_edit::Table, at: usize) -> Option<Range<usize>> {
    let holds = |r: &Range<usize>| r.start <= at && at < r.end.max(r.start + 1);
    for (name, item) in table.iter() {
        let key_start = table.key(name).and_then(|k| k.span()).map(|s| s.start);
        let found = match item {
            toml_edit::Item::Value(v) => key_start
                .zip(v.span())
                .map(|(start, value)| start..value.end)
                .filter(holds),
            toml_edit::Item::Table(t) => table_statement(t, at),
            toml_edit::Item::ArrayOfTables(a) => a.iter().find_map(|t| table_statement(t, at)),
            toml_edit::Item::None => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn table_statement(t: &toml_edit::Table, at: usize) -> Option<Range<usize>> {
    statement_at(t, at).or_else(|| {
        t.span()
            .filter(|r| !t.is_dotted() && r.start <= at && at < r.end.max(r.start + 1))
    })
}

/// What [`Checker::check`] made of the raw values: the configuration if all
/// were good, and the inventory files in any case.
struct Checked {
    config: Option<Config>,
    inventory: Option<InventoryConfig>,
}

/// Collects issues while turning raw values into checked ones.
struct Checker<'a> {
    text: &'a str,
    file: String,
    issues: Vec<ConfigIssue>,
    /// `[callerid] default_region` once checked, for reading the inventory
    /// even when other keys are wrong.
    default_region: Option<Region>,
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn issue(&mut self, span: Option<Range<usize>>, message: String) {
        let (line, column) = span.map_or((0, 0), |s| self.position(s.start));
        self.issues.push(ConfigIssue {
            file: self.file.clone(),
            line,
            column,
            message,
        });
    }

    /// The header (`[table]` or `[[array]]`) of the table whose body
    /// starts before `line_start`, as written; `None` at top level.
    fn section_before(&self, line_start: usize) -> Option<&str> {
        let before = self.text.get(..line_start)?;
        before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(header_of)
    }

    /// toml/serde messages name neither section nor key; add both, and put
    /// unknown keys in the words an operator uses.
    fn describe_toml_error(&self, e: &toml::de::Error) -> String {
        let message = e.message().trim().replace('\n', "; ");
        let Some(span) = e.span() else {
            return message;
        };
        let offset = span.start.min(self.text.len());
        let line_start = self
            .text
            .get(..offset)
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("").trim();
        let header = line.starts_with('[').then(|| header_of(line));
        let section = self.section_before(line_start);

        if let Some(rest) = message.strip_prefix("unknown field ") {
            return describe_unknown_field(rest, header, section);
        }
        // Only serde's type and value complaints are about a key; anything
        // else is TOML syntax and is reported as the parser words it.
        const ABOUT_A_VALUE: &[&str] = &[
            "invalid type",
            "invalid value",
            "unknown variant",
            "invalid length",
            "missing field",
        ];
        if !ABOUT_A_VALUE.iter().any(|p| message.starts_with(p)) {
            return message;
        }
        match (header, line.split_once('=')) {
            (Some(header), _) if message.contains("expected a sequence") => {
                format!(
                    "{header}: {message} (write {} once per entry)",
                    header.replace('[', "[[").replace(']', "]]")
                )
            }
            (Some(header), _) => format!("{header}: {message}"),
            (None, Some((key, _))) => {
                format!(
                    "{} {}: {message}",
                    section.unwrap_or("top level"),
                    key.trim()
                )
            }
            (None, None) => format!("{}: {message}", section.unwrap_or("top level")),
        }
    }

    /// Reports `what` at the value's position; `None` lets checking go on so
    /// that all problems are reported in one run.
    fn fail<T>(&mut self, value: &Spanned<impl fmt::Debug>, what: String) -> Option<T> {
        let message = format!("{what} (found {:?})", value.get_ref());
        self.issue(Some(value.span()), message);
        None
    }

    fn check(&mut self, raw: RawConfig, source: &Path, base: &Path) -> Checked {
        let server = self.server(raw.server);
        let trust = self.trust(raw.trust);
        let carrier = self.carriers(raw.carrier);
        let callerid = self.callerid(raw.callerid);
        // The default Warning names the domain; check it even if [server] failed.
        let domain = server
            .as_ref()
            .map_or(DEFAULT_DOMAIN, |s| s.domain.as_str());
        let reject = self.reject(raw.reject, domain);
        let limits = self.limits(raw.limits);
        let health = self.health(raw.health);
        let inventory = self.inventory(raw.inventory, base);
        let stir = match raw.stir {
            None => Some(None),
            Some(raw) => self.stir(raw, base).map(Some),
        };
        let tls = self.tls(raw.tls, base, server.as_ref(), carrier.as_deref());
        let config = (|| {
            Some(Config {
                tls: tls?,
                server: server?,
                trust: trust?,
                carrier: carrier?,
                callerid: callerid?,
                reject: reject?,
                inventory: inventory.clone()?,
                stir: stir?,
                limits: limits?,
                health: health?,
                source: source.to_path_buf(),
            })
        })();
        Checked { config, inventory }
    }

    /// Exactly one source: the two files (the default) or Redis.
    fn inventory(&mut self, raw: RawInventory, base: &Path) -> Option<InventoryConfig> {
        let redis = match (raw.redis, raw.queues.as_ref().or(raw.numbers.as_ref())) {
            (Some(url), Some(file)) => {
                let (line, _) = self.position(file.span().start);
                self.fail(
                    &url,
                    format!(
                        "[inventory] redis: two sources; the inventory comes either from Redis or from \
                         `queues`/`numbers` (line {line}), not both: remove one"
                    ),
                )
            }
            (Some(url), None) => self
                .redis(url, raw.key_prefix, raw.snapshot, base)
                .map(Some),
            (None, _) => {
                // Redis settings without `redis`: neither source is what was meant.
                for (key, value) in [("key_prefix", &raw.key_prefix), ("snapshot", &raw.snapshot)] {
                    if let Some(v) = value {
                        self.fail::<()>(
                            v,
                            format!(
                                "[inventory] {key}: only used with `redis`, which is not set; \
                                 set `redis = \"redis://host:port/db\"` (then leave out queues and numbers) or remove {key}"
                            ),
                        );
                    }
                }
                if raw.key_prefix.is_some() || raw.snapshot.is_some() {
                    return None;
                }
                Some(None)
            }
        };
        Some(InventoryConfig {
            queues: resolve_path(base, raw.queues, DEFAULT_QUEUES),
            numbers: resolve_path(base, raw.numbers, DEFAULT_NUMBERS),
            redis: redis?,
        })
    }

    fn redis(
        &mut self,
        url: Spanned<String>,
        key_prefix: S<String>,
        snapshot: S<String>,
        base: &Path,
    ) -> Option<RedisInventoryConfig> {
        let checked_url = match redis::Client::open(url.get_ref().trim()) {
            Ok(_) => Some(url.get_ref().trim().to_string()),
            Err(e) => self.fail(
                &url,
                format!("[inventory] redis: not a usable Redis URL, expected redis://host:port/db ({e})"),
            ),
        };
        let key_prefix = match key_prefix {
            None => Some(DEFAULT_KEY_PREFIX.to_string()),
            Some(p)
                if !p.get_ref().is_empty()
                    && !p
                        .get_ref()
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace()) =>
            {
                Some(p.into_inner())
            }
            Some(p) => self.fail(
                &p,
                "[inventory] key_prefix: must not be empty or contain spaces or control characters"
                    .into(),
            ),
        };
        let snapshot = match snapshot {
            Some(s) if s.get_ref().trim().is_empty() => {
                self.fail::<()>(&s, "[inventory] snapshot: empty path".into());
                return None;
            }
            s => s.map(|s| resolve_path(base, Some(s), "")),
        };
        Some(RedisInventoryConfig {
            url: checked_url?,
            key_prefix: key_prefix?,
            snapshot,
        })
    }

    fn server(&mut self, raw: RawServer) -> Option<ServerConfig> {
        let listen = self.listen(raw.listen);
        let domain = match raw.domain {
            None => Some(DEFAULT_DOMAIN.to_string()),
            Some(d) if is_host(d.get_ref()) => Some(d.into_inner()),
            Some(d) => self.fail(&d, "[server] domain: not a host name or IP address".into()),
        };
        let admin = self.admin(raw.admin);
        let dialog_secret = self.secret(raw.dialog_secret, "dialog_secret");
        let dialog_secret_previous =
            self.secret(raw.dialog_secret_previous, "dialog_secret_previous");
        if let (Some(None), Some(Some(_))) = (&dialog_secret, &dialog_secret_previous) {
            self.issue(
                None,
                "[server] dialog_secret_previous: only meaningful with dialog_secret (the current secret)".into(),
            );
        }
        let workers = match raw.workers {
            None => Some(DEFAULT_WORKERS),
            Some(w) if (0..=MAX_WORKERS as i64).contains(w.get_ref()) => {
                Some(*w.get_ref() as usize)
            }
            Some(w) => self.fail(
                &w,
                format!("[server] workers: 0 (one per core) to {MAX_WORKERS}"),
            ),
        };
        Some(ServerConfig {
            workers: workers?,
            listen: listen?,
            domain: domain?,
            admin: admin?,
            log: raw.log.unwrap_or_default(),
            dialog_secret: dialog_secret?,
            dialog_secret_previous: dialog_secret_previous?,
        })
    }

    /// `[server] listen`: every entry is checked, so that all bad ones are
    /// reported at once.
    fn listen(&mut self, raw: S<Vec<Spanned<String>>>) -> Option<Vec<ListenAddr>> {
        match raw {
            None => DEFAULT_LISTEN
                .iter()
                .map(|s| parse_listen(s))
                .collect::<Option<Vec<_>>>(),
            Some(list) if list.get_ref().is_empty() => self.fail(
                &list,
                "[server] listen: at least one address is needed".into(),
            ),
            Some(list) => {
                let parsed: Vec<_> = list
                    .into_inner()
                    .into_iter()
                    .map(|entry| {
                        parse_listen(entry.get_ref()).or_else(|| {
                            self.fail(
                                &entry,
                                "[server] listen: not a listen address; expected udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT".into(),
                            )
                        })
                    })
                    .collect();
                parsed.into_iter().collect()
            }
        }
    }

    /// `[server] admin`: an address, or `""` for no admin server (`Some(None)`).
    fn admin(&mut self, raw: S<String>) -> Option<Option<SocketAddr>> {
        match raw {
            None => Some(Some(
                DEFAULT_ADMIN.parse().expect("default admin address parses"),
            )),
            Some(a) if a.get_ref().trim().is_empty() => Some(None),
            Some(a) => match a.get_ref().trim().parse::<SocketAddr>() {
                Ok(addr) => Some(Some(addr)),
                Err(_) => self.fail(
                    &a,
                    "[server] admin: expected IP:PORT, or \"\" to disable".into(),
                ),
            },
        }
    }

    fn secret(&mut self, raw: S<String>, key: &str) -> Option<Option<String>> {
        match raw {
            None => Some(None),
            Some(k) if k.get_ref().len() >= 16 => Some(Some(k.into_inner())),
            Some(k) => self.fail(
                &k,
                format!("[server] {key}: at least 16 characters (it keys the route state)"),
            ),
        }
    }

    /// `[tls]`: what the listeners and carriers need must be there, and the
    /// files must load (a certificate and key that do not match, a CA file
    /// without certificates), each reported at its key.
    fn tls(
        &mut self,
        raw: RawTls,
        base: &Path,
        server: Option<&ServerConfig>,
        carriers: Option<&[CarrierConfig]>,
    ) -> Option<TlsConfig> {
        let spans = [&raw.cert, &raw.key, &raw.ca].map(|v| v.as_ref().map(Spanned::span));
        let path = |v: S<String>| v.map(|p| resolve_path(base, Some(p), ""));
        let tls = TlsConfig {
            cert: path(raw.cert),
            key: path(raw.key),
            ca: path(raw.ca),
            verify_carrier: raw.verify_carrier.unwrap_or(true),
            require_client_cert: raw.require_client_cert.unwrap_or(false),
        };
        let before = self.issues.len();
        self.tls_requirements(&tls, &spans, server, carriers);
        if self.issues.len() > before {
            return None;
        }
        if tls.has_identity() || tls.ca.is_some() {
            if let Err(e) = crate::transport::tls::TlsContext::load(&tls) {
                let span = match e.key() {
                    "cert" => spans[0].clone(),
                    "key" => spans[1].clone(),
                    _ => spans[2].clone(),
                };
                self.issue(span, format!("[tls] {}: {e}", e.key()));
                return None;
            }
        }
        Some(tls)
    }

    /// Reports what `[tls]` lacks for the listeners and carriers that use
    /// it; `spans`: where cert, key and ca are written.
    fn tls_requirements(
        &mut self,
        tls: &TlsConfig,
        spans: &[Option<Range<usize>>; 3],
        server: Option<&ServerConfig>,
        carriers: Option<&[CarrierConfig]>,
    ) {
        let listens_tls =
            server.is_some_and(|s| s.listen.iter().any(|l| l.transport == Transport::Tls));
        let tls_carrier = carriers
            .and_then(|cs| cs.iter().find(|c| c.transport == Transport::Tls))
            .map(|c| c.uri.clone());
        if listens_tls && !tls.has_identity() {
            self.issue(
                spans[0].clone().or(spans[1].clone()),
                "[tls] cert and key: needed by the tls:// listen address".into(),
            );
        }
        if tls.cert.is_some() != tls.key.is_some() {
            let missing = if tls.cert.is_none() { "cert" } else { "key" };
            self.issue(
                spans[0].clone().or(spans[1].clone()),
                format!("[tls] {missing}: cert and key go together"),
            );
        }
        if tls.require_client_cert && tls.ca.is_none() {
            self.issue(
                None,
                "[tls] ca: needed by require_client_cert = true (client certificates chain to it)"
                    .into(),
            );
        }
        if let (Some(uri), true, None) = (&tls_carrier, tls.verify_carrier, &tls.ca) {
            self.issue(
                None,
                format!("[tls] ca: needed to verify the TLS carrier {uri} (or set verify_carrier = false)"),
            );
        }
    }

    fn trust(&mut self, raw: RawTrust) -> Option<TrustList> {
        let pbx: Option<Vec<IpNet>> = match raw.pbx {
            None => DEFAULT_PBX.iter().map(|s| parse_net(s)).collect(),
            Some(list) => {
                let parsed: Vec<_> = list
                    .into_iter()
                    .map(|entry| {
                        parse_net(entry.get_ref()).or_else(|| {
                            self.fail(
                                &entry,
                                "[trust] pbx: expected an IP address or CIDR network".into(),
                            )
                        })
                    })
                    .collect();
                parsed.into_iter().collect()
            }
        };
        Some(TrustList::new(pbx?))
    }

    fn carriers(&mut self, raw: Option<Vec<RawCarrier>>) -> Option<Vec<CarrierConfig>> {
        let Some(list) = raw else {
            return Some(vec![
                parse_carrier(DEFAULT_CARRIER).expect("default carrier parses")
            ]);
        };
        if list.is_empty() {
            self.issue(None, "[[carrier]]: at least one carrier is needed".into());
            return None;
        }
        let parsed: Vec<_> = list
            .into_iter()
            .map(|c| match parse_carrier(c.uri.get_ref()) {
                Ok(carrier) => Some(carrier),
                Err(why) => self.fail(&c.uri, format!("[[carrier]] uri: {why}")),
            })
            .collect();
        parsed.into_iter().collect()
    }

    fn callerid(&mut self, raw: RawCallerId) -> Option<CallerIdConfig> {
        let queue_header = self.header_name(raw.queue_header, DEFAULT_QUEUE_HEADER, "queue_header");
        let dynamic_header =
            self.header_name(raw.dynamic_header, DEFAULT_DYNAMIC_HEADER, "dynamic_header");
        let default_region = match raw.default_region {
            None => Some(Region::US),
            Some(r) => Region::parse(r.get_ref()).or_else(|| {
                self.fail(
                    &r,
                    "[callerid] default_region: expected an ISO 3166 alpha-2 code with numbering-plan data, like \"US\""
                        .into(),
                )
            }),
        };
        self.default_region = default_region;
        let strip = match raw.strip {
            None => Some(DEFAULT_STRIP.iter().map(|s| s.to_string()).collect()),
            Some(list) => {
                let parsed: Vec<_> = list
                    .into_iter()
                    .map(|h| self.header_name(Some(h), "", "strip"))
                    .collect();
                parsed.into_iter().collect()
            }
        };
        Some(CallerIdConfig {
            queue_header: queue_header?,
            dynamic_header: dynamic_header?,
            dynamic_format: raw.dynamic_format.unwrap_or_default(),
            default_region: default_region?,
            pai: raw.pai.unwrap_or_default(),
            strip: strip?,
            cnam_names: raw.cnam_names.unwrap_or(false),
        })
    }

    fn stir(&mut self, raw: RawStir, base: &Path) -> Option<StirConfig> {
        let key = if raw.key.get_ref().trim().is_empty() {
            self.fail(
                &raw.key,
                "[stir] key: empty; the path of the P-256 private key (PEM)".into(),
            )
        } else {
            Some(resolve_path(base, Some(raw.key), ""))
        };
        let x5u = match check_x5u(raw.x5u.get_ref()) {
            Ok(()) => Some(raw.x5u.into_inner()),
            Err(why) => self.fail(&raw.x5u, format!("[stir] {why}")),
        };
        let attest = match raw.attest {
            None => Some(Attest::A),
            Some(a) => Attest::parse(a.get_ref())
                .or_else(|| self.fail(&a, "[stir] attest: expected \"A\", \"B\" or \"C\"".into())),
        };
        Some(StirConfig {
            key: key?,
            x5u: x5u?,
            attest: attest?,
            rcd: raw.rcd.unwrap_or(false),
        })
    }

    fn header_name(&mut self, raw: S<String>, default: &str, key: &str) -> Option<String> {
        match raw {
            None => Some(default.to_string()),
            Some(h) if is_token(h.get_ref()) => Some(h.into_inner()),
            Some(h) => self.fail(&h, format!("[callerid] {key}: not a SIP header name")),
        }
    }

    fn reject(&mut self, raw: RawReject, domain: &str) -> Option<RejectConfig> {
        let code = match raw.code {
            None => Some(DEFAULT_REJECT_CODE),
            Some(c) => match u16::try_from(*c.get_ref()) {
                Ok(code) if (400..=699).contains(&code) => Some(code),
                _ => self.fail(
                    &c,
                    "[reject] code: must be a final error status, 400 to 699".into(),
                ),
            },
        };
        // Without a configured phrase, the standard one for the code (480 gets
        // "Temporarily Unavailable", not "Forbidden").
        let default_phrase =
            crate::sip::reply::standard_phrase(code.unwrap_or(DEFAULT_REJECT_CODE));
        let phrase = self.header_text(raw.phrase, default_phrase, "phrase");
        let reason = self.header_text(raw.reason, DEFAULT_REJECT_REASON, "reason");
        let warning = self.header_text(
            raw.warning,
            &format!("399 {domain} \"no outbound caller ID\""),
            "warning",
        );
        let headers = match raw.headers {
            None => Some(Vec::new()),
            Some(list) => {
                let parsed: Vec<_> = list
                    .into_iter()
                    .map(|h| {
                        if is_header_line(h.get_ref()) {
                            Some(h.into_inner())
                        } else {
                            self.fail(
                                &h,
                                "[reject] headers: expected `Name: value` on one line, without control characters"
                                    .into(),
                            )
                        }
                    })
                    .collect();
                parsed.into_iter().collect()
            }
        };
        Some(RejectConfig {
            code: code?,
            phrase: phrase?,
            reason: reason?,
            warning: warning?,
            headers: headers?,
        })
    }

    /// A value written verbatim into a response: CR/LF or other control
    /// characters would let configuration inject headers.
    fn header_text(&mut self, raw: S<String>, default: &str, key: &str) -> Option<String> {
        match raw {
            None => Some(default.to_string()),
            Some(v) if !has_control(v.get_ref()) => Some(v.into_inner()),
            Some(v) => self.fail(
                &v,
                format!("[reject] {key}: must not contain CR, LF or control characters"),
            ),
        }
    }
}

fn resolve_path(base: &Path, raw: S<String>, default: &str) -> PathBuf {
    let path = PathBuf::from(raw.map_or_else(|| default.to_string(), Spanned::into_inner));
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// `udp://127.0.0.1:5060`, `tcp://[::1]:5060`, `tls://127.0.0.1:5061`; the
/// scheme is case-insensitive.
fn parse_listen(s: &str) -> Option<ListenAddr> {
    let (scheme, addr) = s.trim().split_once("://")?;
    Some(ListenAddr {
        transport: Transport::from_token(scheme.as_bytes())?,
        addr: addr.parse().ok()?,
    })
}

/// A CIDR network, or a bare address meaning just that host.
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `sip:HOST[:PORT][;transport=udp|tcp|tls][;lr]` or `sips:HOST[:PORT]` (TLS,
/// port 5061 by default). A host name is resolved now, once: the proxy core
/// routes by address and must not block on DNS per call.
fn parse_carrier(uri: &str) -> Result<CarrierConfig, String> {
    let trimmed = uri.trim();
    let (rest, sips) = match trimmed.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => (rest, false),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sips") => (rest, true),
        _ => {
            return Err(
                "expected sip:HOST[:PORT][;transport=udp|tcp|tls] or sips:HOST[:PORT]".into(),
            )
        }
    };
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or("");
    if hostport.contains('@') {
        return Err("a carrier URI names a next hop: no user part".into());
    }
    let mut transport = if sips { Transport::Tls } else { Transport::Udp };
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.eq_ignore_ascii_case("transport") {
            transport = Transport::from_token(value.as_bytes())
                .ok_or_else(|| format!("transport={value}: only udp, tcp and tls are supported"))?;
            if sips && transport != Transport::Tls {
                return Err(format!(
                    "sips: means TLS; transport={value} would send it in the clear"
                ));
            }
        } else if !name.eq_ignore_ascii_case("lr") {
            return Err(format!(
                "unknown URI parameter `{name}` (supported: transport, lr)"
            ));
        }
    }
    let default_port = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    let (host, port) = split_host_port(hostport, default_port)?;
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) if is_host(host) => (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| format!("host `{host}` does not resolve"))?,
        Err(_) => return Err(format!("`{host}` is not a host name or IP address")),
    };
    Ok(CarrierConfig {
        uri: trimmed.to_string(),
        host: host.to_string(),
        transport,
        addr,
    })
}

/// Splits `host[:port]` / `[v6][:port]`; the port defaults to `default_port`.
fn split_host_port(s: &str, default_port: u16) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed `[` in host")?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("`{p}` is not a port"))?,
    };
    Ok((host, port))
}

/// A host as it may appear in a SIP URI: RFC 3261 hostname, IPv4, or a
/// bracketed IPv6 reference.
fn is_host(s: &str) -> bool {
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').enumerate().all(|(i, label)| {
            // A single trailing dot is allowed (fully qualified).
            (label.is_empty() && i > 0 && s.ends_with('.') && i == s.split('.').count() - 1)
                || (!label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        })
}

/// RFC 3261 `token`, the grammar of header names.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}

fn is_header_line(s: &str) -> bool {
    match s.split_once(':') {
        Some((name, _)) => is_token(name.trim_end()) && !has_control(s),
        None => false,
    }
}

/// An unknown key or section, in the words an operator uses; `rest`: what
/// follows serde's "unknown field ", with the names it expected.
fn describe_unknown_field(rest: &str, header: Option<&str>, section: Option<&str>) -> String {
    let (name, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    let what = match (header, section) {
        // A table header naming something unknown.
        (Some(_), _) => format!("unknown section {name}"),
        (None, Some(section)) => format!("unknown key {name} in {section}"),
        (None, None) => format!("unknown key {name} at top level"),
    };
    if expected.is_empty() {
        what
    } else {
        format!("{what} (expected one of {expected})")
    }
}

/// `[server]` from a header line with trailing comments or spaces.
fn header_of(line: &str) -> &str {
    let close = if line.starts_with("[[") { "]]" } else { "]" };
    match line.find(close) {
        Some(i) => &line[..i + close.len()],
        None => line,
    }
}
