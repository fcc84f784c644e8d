//! The configuration of `dimsum serve`: a TOML file (`--config FILE`) whose every key has a safe
//! default, and command-line flags that override it.
//!
//! [`ServeConfig::resolve`] reads the file (if any), checks it (an error names the file and the
//! key), applies the flags of [`ServeOptions`] over it (flags win; `--peer` adds or replaces one
//! destination, `--allow-calling` replaces the list), and checks the result.
//! [`ServeConfig::server_config`] turns it into the `dimsum_net` server configuration, and
//! [`ServeConfig::how_to_reach`] is what the server prints when it starts.
//!
//! Relative paths in the file (`data`, the TLS files) are taken from the file's folder; those of
//! flags and the default `./dimsum-data`, from the current folder. docs/tools.md documents the
//! keys and flags for users.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use dimsum_net::server::{DEFAULT_MAX_ASSOCIATIONS, DEFAULT_OPERATIONS_PERFORMED};
use dimsum_net::tls::TlsError;
use dimsum_net::ul::negotiation::{FindOptions, validate_ae_title};
use dimsum_net::{MoveRetry, ServerConfig, Timeouts};

use crate::options::{parse_max_pdu, seconds};
use crate::qr_options::{FindOptionFlags, MoveRetryOptions};
use crate::qr_services::ARCHIVE_FIND_OPTIONS;
use crate::tls_options::TlsOptions;
use dimsum_web::server::{CorsOrigins, WebConfig};

/// The port `dimsum serve` listens on by default (the registered DICOM port, PS3.15 Annex B:
/// 11112 needs no privileges, unlike 104).
pub const DEFAULT_PORT: u16 = 11112;
/// The AE title `dimsum serve` answers to by default.
pub const DEFAULT_AE_TITLE: &str = "DIMSUM";
/// Where `dimsum serve` keeps its files and index by default.
pub const DEFAULT_DATA_DIR: &str = "./dimsum-data";
/// The most matches one C-FIND returns by default: far above what a person reads, low enough
/// that a universal query on a large archive cannot stream it all out.
pub const DEFAULT_RESULT_LIMIT: u32 = dimsum_pacs::archive::DEFAULT_RESULT_LIMIT as u32;

/// The configuration of `dimsum serve`, as read from its TOML file (keys in kebab-case, the
/// spelling of the flags). Every field has a safe default ([`ServeConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeConfig {
    /// Our AE title (`--aet`).
    pub ae_title: String,
    /// The address to listen on (`--bind`).
    pub bind: String,
    /// The TCP port (`--port`).
    pub port: u16,
    /// The folder of the stored files and the index (`--data`).
    pub data: PathBuf,
    /// The index database (`--index`): absent, the embedded SQLite index in the data folder;
    /// a `postgres://` URL, a PostgreSQL database that several nodes may share (with the
    /// storage folder).
    pub index: Option<String>,
    /// This node's name among the nodes of one PostgreSQL index (`--node`): its lock file and
    /// its crash-recovery state are its own. Absent: the host name and the DICOM port.
    pub node: Option<String>,
    /// Make every store durable before it is answered (`--fsync`): each file and its folder
    /// fsync'ed, the index committed to disk (SQLite `synchronous = FULL`, PostgreSQL
    /// `synchronous_commit = on`), so that stored instances survive a power cut. Off: they
    /// survive a crash of the server (and a restart of PostgreSQL), at a fraction of the cost.
    pub fsync: bool,
    /// Associations served at once (`--max-associations`); more are rejected (transient, local
    /// limit exceeded).
    pub max_associations: usize,
    /// Associations at once for one peer IP address; 0: no per-peer limit.
    pub max_associations_per_peer: usize,
    /// Connections still to send their association request; 0: sized from the open-file limit.
    pub max_pending: usize,
    /// Operations a peer may have outstanding on one association (asynchronous operations
    /// window, PS3.7 D.3.3.3).
    pub max_operations: u16,
    /// The maximum PDU length we receive: 0 (no limit) or 4096..=16777216.
    pub max_pdu: u32,
    /// Reject associations whose called AE title is not ours.
    pub require_called_aet: bool,
    /// The calling AE titles accepted (`--allow-calling`); empty: any.
    pub allow_calling: Vec<String>,
    /// Honour DCMTK's private shutdown request, `termscu` (`--allow-shutdown`).
    pub allow_shutdown: bool,
    /// What happens when a SOP Instance UID arrives that is already stored.
    pub duplicates: DuplicatePolicy,
    /// The most matches one C-FIND returns; beyond, the query ends with a failure status that
    /// says so (never a silent truncation). 0: no limit.
    pub result_limit: u32,
    /// Person names match with regard to case (PS3.4 C.2.2.2.1 leaves it to the SCP); by
    /// default `doe^john` finds `DOE^JOHN`, as users of other archives expect.
    pub case_sensitive_names: bool,
    /// The AE titles we connect to: C-MOVE destinations and Storage Commitment report targets
    /// (`--peer AE:HOST:PORT`).
    pub peers: BTreeMap<String, PeerAddress>,
    /// Times a C-MOVE tries its destination again after a refused connection, a transient
    /// rejection or an abort (`--move-retries`); 0: never.
    pub move_retries: u32,
    /// Seconds before each of those attempts (`--move-retry-delay`).
    pub move_retry_delay: u64,
    /// Accept C-FIND relational queries when a peer proposes them (PS3.4 C.5.1.1 byte 1;
    /// `--no-relational` switches it off).
    pub relational_queries: bool,
    /// Accept C-FIND combined date and time range matching when a peer proposes it (PS3.4
    /// C.5.1.1 byte 2; `--no-combined-datetime` switches it off).
    pub combined_datetime: bool,
    /// Accept fuzzy semantic matching of person names when a peer proposes it (PS3.4 C.5.1.1
    /// byte 3; `--no-fuzzy-names` switches it off).
    pub fuzzy_names: bool,
    /// The timers, in seconds.
    pub timeouts: TimeoutsConfig,
    /// TLS on every association (PS3.15 Annex B); absent: plain TCP.
    pub tls: Option<TlsConfig>,
    /// DICOMweb (PS3.18: QIDO-RS, WADO-RS, STOW-RS) on its own HTTP port, over the same
    /// archive (the `[web]` table).
    pub web: WebSettings,
}

/// The HTTP port `dimsum serve` answers DICOMweb on by default (Orthanc's: users and viewer
/// configurations expect it).
pub const DEFAULT_HTTP_PORT: u16 = 8042;

/// DICOMweb of `dimsum serve` (the `[web]` table; `--http-port`, `--no-http`, `--cors-origin`,
/// `--viewer`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebSettings {
    /// Serve DICOMweb at all (`--no-http` switches it off).
    pub enabled: bool,
    /// The HTTP port (`--http-port`).
    pub port: u16,
    /// The address to listen on; absent: the `bind` of the DICOM port.
    pub bind: Option<String>,
    /// The path of the DICOMweb services.
    pub root: String,
    /// The origin written in Retrieve URLs and BulkDataURIs (`https://pacs.example.org`) when
    /// the server is behind a proxy; absent: from each request's Host.
    pub base_url: Option<String>,
    /// Origins allowed to call the services from a browser (CORS; `--cors-origin`); `"*"`:
    /// any. Empty: none (a viewer served by `dimsum serve` itself needs none).
    pub cors_origins: Vec<String>,
    /// A static web viewer build (OHIF Viewer) served at `/viewer` (`--viewer DIR`).
    pub viewer: Option<PathBuf>,
    /// The largest request body (a STOW-RS upload), in MiB.
    pub max_body_mib: u64,
}

impl Default for WebSettings {
    fn default() -> Self {
        let defaults = WebConfig::default();
        Self {
            enabled: true,
            port: DEFAULT_HTTP_PORT,
            bind: None,
            root: defaults.root().to_owned(),
            base_url: None,
            cors_origins: Vec::new(),
            viewer: None,
            max_body_mib: defaults.max_body_bytes >> 20,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        let server = ServerConfig::new(DEFAULT_AE_TITLE);
        Self {
            ae_title: DEFAULT_AE_TITLE.to_owned(),
            bind: "0.0.0.0".to_owned(),
            port: DEFAULT_PORT,
            data: PathBuf::from(DEFAULT_DATA_DIR),
            index: None,
            node: None,
            fsync: false,
            max_associations: DEFAULT_MAX_ASSOCIATIONS,
            max_associations_per_peer: 0,
            max_pending: 0,
            max_operations: DEFAULT_OPERATIONS_PERFORMED,
            max_pdu: server.max_pdu_length,
            require_called_aet: false,
            allow_calling: Vec::new(),
            allow_shutdown: false,
            duplicates: DuplicatePolicy::default(),
            result_limit: DEFAULT_RESULT_LIMIT,
            case_sensitive_names: false,
            peers: BTreeMap::new(),
            move_retries: MoveRetry::default().retries,
            move_retry_delay: MoveRetry::default().delay.as_secs(),
            relational_queries: ARCHIVE_FIND_OPTIONS.relational_queries,
            combined_datetime: ARCHIVE_FIND_OPTIONS.combined_date_time,
            fuzzy_names: ARCHIVE_FIND_OPTIONS.fuzzy_person_names,
            timeouts: TimeoutsConfig::default(),
            tls: None,
            web: WebSettings::default(),
        }
    }
}

pub use dimsum_pacs::archive::DuplicatePolicy;

/// The timers of `dimsum serve`, in seconds; 0 switches a timer off (except ARTIM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeoutsConfig {
    /// Waiting for A-ASSOCIATE and A-RELEASE answers.
    pub acse: u64,
    /// Waiting for the association request after a connection opens, and for a peer to close
    /// (at least 1).
    pub artim: u64,
    /// A peer silent in the middle of a message.
    pub dimse: u64,
    /// An association with nothing in flight (`--idle-timeout`).
    pub idle: u64,
    /// A peer that does not read what we send.
    pub write: u64,
    /// On SIGINT/SIGTERM, how long running associations may go on before they are cut.
    pub shutdown_grace: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        let timeouts = Timeouts::default();
        let whole = |timeout: Option<Duration>| timeout.map_or(0, |t| t.as_secs());
        Self {
            acse: whole(timeouts.acse),
            artim: timeouts.artim.as_secs(),
            dimse: whole(timeouts.dimse),
            idle: whole(timeouts.idle),
            write: whole(timeouts.write),
            shutdown_grace: ServerConfig::new(DEFAULT_AE_TITLE).shutdown_grace.as_secs(),
        }
    }
}

/// TLS of `dimsum serve` (PS3.15 Annex B): our key and certificate, the certificates we trust
/// for client certificates, and how client certificates are treated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// Our private key (PEM).
    pub private_key: PathBuf,
    /// Our certificate (PEM, the chain if any).
    pub certificate: PathBuf,
    /// CAs or clients' own certificates (PEM) that client certificates are verified against.
    #[serde(default)]
    pub trusted: Vec<PathBuf>,
    #[serde(default)]
    pub client_certificates: ClientCertificates,
}

/// How `dimsum serve` treats client certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertificates {
    /// Verify a certificate the client shows; accept a client without one.
    #[default]
    VerifyIfPresent,
    /// Refuse clients without a trusted certificate.
    Require,
    /// Ask for none.
    Ignore,
}

impl TlsConfig {
    /// The same settings as the TLS flags of the server tools, whose reading of the files this
    /// reuses.
    fn as_options(&self) -> TlsOptions {
        TlsOptions {
            tls: Some(vec![self.private_key.clone(), self.certificate.clone()]),
            add_cert_file: self.trusted.clone(),
            ignore_peer_cert: self.client_certificates == ClientCertificates::Ignore,
            require_peer_cert: self.client_certificates == ClientCertificates::Require,
            ..TlsOptions::default()
        }
    }

    /// The TLS settings of the flags, when they turn TLS on.
    fn from_options(options: &TlsOptions) -> Option<TlsConfig> {
        let [private_key, certificate] = options.tls.as_deref()? else {
            return None;
        };
        Some(TlsConfig {
            private_key: private_key.clone(),
            certificate: certificate.clone(),
            trusted: options.add_cert_file.clone(),
            client_certificates: if options.ignore_peer_cert {
                ClientCertificates::Ignore
            } else if options.require_peer_cert {
                ClientCertificates::Require
            } else {
                ClientCertificates::VerifyIfPresent
            },
        })
    }
}

/// Where a peer AE listens: `host:port`, an IPv6 address in brackets (`[::1]:104`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerAddress {
    pub host: String,
    pub port: u16,
}

impl FromStr for PeerAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not HOST:PORT"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("`{text}` has no valid host before the port"));
        }
        if host.contains(':') && !text.starts_with('[') {
            return Err(format!(
                "`{text}`: write an IPv6 address in brackets, e.g. [{host}]:{port}"
            ));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| format!("`{port}` in `{text}` is not a TCP port (1..65535)"))?;
        Ok(PeerAddress {
            host: host.to_owned(),
            port,
        })
    }
}

impl TryFrom<String> for PeerAddress {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One `--peer AE:HOST:PORT` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFlag {
    pub ae_title: String,
    pub address: PeerAddress,
}

/// Parses `AE:HOST:PORT` (the AE title up to the first colon).
fn parse_peer_flag(text: &str) -> Result<PeerFlag, String> {
    let (ae_title, address) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not AE:HOST:PORT"))?;
    Ok(PeerFlag {
        ae_title: check_ae_title("peer", ae_title)?,
        address: address.parse()?,
    })
}

/// An AE title checked as the association layer checks it, without its padding; `which` is
/// its role in messages ("local", "calling", "peer").
fn check_ae_title(which: &'static str, title: &str) -> Result<String, String> {
    validate_ae_title(which, title)
        .map(str::to_owned)
        .map_err(|error| error.to_string())
}

/// `--aet`.
fn parse_local_ae_title(text: &str) -> Result<String, String> {
    check_ae_title("local", text)
}

/// `--allow-calling`.
fn parse_calling_ae_title(text: &str) -> Result<String, String> {
    check_ae_title("calling", text)
}

/// The flags of `dimsum serve`; each one given overrides the configuration file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeOptions {
    /// Configuration file (TOML); the flags below override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Our AE title [default: DIMSUM].
    #[arg(long = "aet", visible_alias = "aetitle", value_name = "AE", value_parser = parse_local_ae_title)]
    pub aet: Option<String>,
    /// TCP port to listen on [default: 11112].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0, every interface].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Folder of the stored files and the index [default: ./dimsum-data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Index database: a postgres://USER@HOST:PORT/DATABASE URL (nodes sharing it share --data
    /// too) [default: SQLite in the data folder].
    #[arg(long, value_name = "URL")]
    pub index: Option<String>,
    /// This node's name among the nodes of one PostgreSQL index [default: HOSTNAME-PORT].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Make every store durable before it is answered (files fsync'ed, the index committed to
    /// disk): stored instances survive a power cut, at a cost in speed.
    #[arg(long)]
    pub fsync: bool,
    /// A peer we connect to, for C-MOVE and Storage Commitment reports (repeatable; adds to or
    /// replaces the file's entry for that AE title).
    #[arg(long = "peer", value_name = "AE:HOST:PORT", value_parser = parse_peer_flag)]
    pub peers: Vec<PeerFlag>,
    /// Associations served at once [default: 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_associations: Option<u32>,
    /// Abort an association idle this many seconds (0 = never) [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Maximum PDU length we receive (0 = unlimited, else 4096..=16777216) [default: 65536].
    #[arg(long = "max-pdu", value_name = "BYTES", value_parser = parse_max_pdu)]
    pub max_pdu: Option<u32>,
    /// Accept only this calling AE title (repeatable; replaces the file's list) [default: any].
    #[arg(long = "allow-calling", value_name = "AE", value_parser = parse_calling_ae_title)]
    pub allow_calling: Vec<String>,
    /// Honour DCMTK's private shutdown request (`termscu`).
    #[arg(long)]
    pub allow_shutdown: bool,
    /// Index the DICOM files of this folder at start (repeatable).
    #[arg(long = "scan", value_name = "DIR")]
    pub scan: Vec<PathBuf>,
    /// Index the --scan folders, then exit without serving.
    #[arg(long, requires = "scan")]
    pub scan_only: bool,
    /// HTTP port of DICOMweb (QIDO-RS, WADO-RS, STOW-RS) [default: 8042].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub http_port: Option<u16>,
    /// Do not serve DICOMweb.
    #[arg(long, conflicts_with_all = ["http_port", "viewer", "cors_origins"])]
    pub no_http: bool,
    /// An origin allowed to call DICOMweb from a browser (CORS; repeatable; `*` for any;
    /// replaces the file's list) [default: none].
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Serve this web viewer build (OHIF Viewer) at /viewer, using our DICOMweb.
    #[arg(long, value_name = "DIR")]
    pub viewer: Option<PathBuf>,
    /// The origin written in DICOMweb Retrieve URLs and BulkDataURIs
    /// (`https://pacs.example.org`), e.g. behind a proxy [default: each request's Host].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    #[command(flatten)]
    pub move_retry: MoveRetryOptions,
    #[command(flatten)]
    pub find_options: FindOptionFlags,
    #[command(flatten)]
    pub tls: TlsOptions,
}

/// `host:port`, with an IPv6 address in brackets.
fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Why the configuration of `dimsum serve` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML parser's message names the key, line and column.
    #[error("configuration file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: `{key}`: {problem}")]
    Invalid {
        /// The configuration file, or the command line.
        origin: String,
        key: String,
        problem: String,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// A key of the configuration and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    key: String,
    problem: String,
}

impl Problem {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn from(self, origin: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.into(),
            key: self.key,
            problem: self.problem,
        }
    }
}

/// A TOML error on one line: where (line, and the line itself, which shows the key) and what,
/// e.g. "line 3 (`port = \"eleven\"`): invalid type: string \"eleven\", expected u16".
fn one_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', " ");
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let number = before.matches('\n').count() + 1;
    let line = text.lines().nth(number - 1).unwrap_or_default().trim();
    const SHOWN: usize = 80;
    if line.is_empty() || line.chars().count() > SHOWN {
        format!("line {number}: {message}")
    } else {
        format!("line {number} (`{line}`): {message}")
    }
}

impl ServeConfig {
    /// The configuration `options` describe: the file of `--config` (or the defaults), checked,
    /// with the flags applied over it and checked again.
    pub fn resolve(options: &ServeOptions) -> Result<ServeConfig, ConfigError> {
        let mut config = match &options.config {
            Some(path) => ServeConfig::read(path)?,
            None => ServeConfig::default(),
        };
        config.apply(options);
        config
            .check()
            .map_err(|problem| problem.from("command line"))?;
        Ok(config)
    }

    /// Reads and checks a configuration file; relative paths in it are taken from its folder.
    pub fn read(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let folder = path.parent().unwrap_or(Path::new(""));
        ServeConfig::from_toml(&text, path, folder)
    }

    /// Parses and checks the text of a configuration file `path`, taking relative paths from
    /// `folder`.
    pub fn from_toml(text: &str, path: &Path, folder: &Path) -> Result<ServeConfig, ConfigError> {
        let parse_error = |error: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: one_line(text, &error),
        };
        let mut config: ServeConfig = toml::from_str(text).map_err(parse_error)?;
        config
            .check()
            .map_err(|problem| problem.from(format!("configuration file {}", path.display())))?;
        // Only the paths written in the file are relative to it; the default data folder is
        // relative to the current one. The text parsed without error just above.
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        if table.contains_key("data") {
            config.data = folder.join(&config.data);
        }
        if let Some(viewer) = &mut config.web.viewer {
            *viewer = folder.join(&*viewer);
        }
        if let Some(tls) = &mut config.tls {
            tls.private_key = folder.join(&tls.private_key);
            tls.certificate = folder.join(&tls.certificate);
            for trusted in &mut tls.trusted {
                *trusted = folder.join(&*trusted);
            }
        }
        Ok(config)
    }

    /// Applies the flags given over this configuration.
    pub fn apply(&mut self, options: &ServeOptions) {
        if let Some(aet) = &options.aet {
            self.ae_title.clone_from(aet);
        }
        if let Some(port) = options.port {
            self.port = port;
        }
        if let Some(bind) = &options.bind {
            self.bind.clone_from(bind);
        }
        if let Some(data) = &options.data {
            self.data.clone_from(data);
        }
        if let Some(index) = &options.index {
            self.index = Some(index.clone());
        }
        if let Some(node) = &options.node {
            self.node = Some(node.clone());
        }
        if options.fsync {
            self.fsync = true;
        }
        for peer in &options.peers {
            self.peers
                .insert(peer.ae_title.clone(), peer.address.clone());
        }
        if let Some(max) = options.max_associations {
            self.max_associations = max as usize;
        }
        if let Some(idle) = options.idle_timeout {
            self.timeouts.idle = idle;
        }
        if let Some(max_pdu) = options.max_pdu {
            self.max_pdu = max_pdu;
        }
        let retry = options.move_retry.over(self.move_retry());
        self.move_retries = retry.retries;
        self.move_retry_delay = retry.delay.as_secs();
        let find_options = options.find_options.over(self.find_options());
        self.relational_queries = find_options.relational_queries;
        self.combined_datetime = find_options.combined_date_time;
        self.fuzzy_names = find_options.fuzzy_person_names;
        if !options.allow_calling.is_empty() {
            self.allow_calling.clone_from(&options.allow_calling);
        }
        self.allow_shutdown |= options.allow_shutdown;
        if options.tls.disable_tls {
            self.tls = None;
        }
        if let Some(tls) = TlsConfig::from_options(&options.tls) {
            self.tls = Some(tls);
        }
        if let Some(port) = options.http_port {
            self.web.port = port;
            self.web.enabled = true;
        }
        if options.no_http {
            self.web.enabled = false;
        }
        if !options.cors_origins.is_empty() {
            self.web.cors_origins.clone_from(&options.cors_origins);
        }
        if let Some(viewer) = &options.viewer {
            self.web.viewer = Some(viewer.clone());
        }
        if let Some(base_url) = &options.base_url {
            self.web.base_url = Some(base_url.clone());
        }
    }

    /// Checks every value; the first problem found names its key.
    fn check(&self) -> Result<(), Problem> {
        check_ae_title("local", &self.ae_title)
            .map_err(|problem| Problem::new("ae-title", problem))?;
        if self.bind.trim().is_empty() || self.bind.contains(char::is_whitespace) {
            return Err(Problem::new(
                "bind",
                format!("`{}` is not an address to listen on", self.bind),
            ));
        }
        if self.port == 0 {
            return Err(Problem::new("port", "0 is not a TCP port (1..65535)"));
        }
        if self.data.as_os_str().is_empty() {
            return Err(Problem::new("data", "no folder given"));
        }
        if let Some(index) = &self.index
            && !(index.starts_with("postgres://") || index.starts_with("postgresql://"))
        {
            return Err(Problem::new(
                "index",
                "give a postgres://USER@HOST:PORT/DATABASE URL (leave it out for the embedded SQLite index)",
            ));
        }
        if let Some(node) = &self.node
            && !dimsum_pacs::archive::ArchiveConfig::is_valid_node(node)
        {
            return Err(Problem::new(
                "node",
                format!(
                    "`{node}` is not a node name: 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`"
                ),
            ));
        }
        if self.max_associations == 0 {
            return Err(Problem::new(
                "max-associations",
                "0 would refuse every association; give at least 1",
            ));
        }
        if self.max_operations == 0 {
            return Err(Problem::new("max-operations", "give at least 1"));
        }
        parse_max_pdu(&self.max_pdu.to_string())
            .map_err(|problem| Problem::new("max-pdu", problem))?;
        for title in &self.allow_calling {
            check_ae_title("calling", title)
                .map_err(|problem| Problem::new("allow-calling", problem))?;
        }
        for ae_title in self.peers.keys() {
            check_ae_title("peer", ae_title)
                .map_err(|problem| Problem::new(format!("peers.{ae_title}"), problem))?;
        }
        if self.web.enabled {
            self.web_config()?;
            if self.web.port == 0 {
                return Err(Problem::new("web.port", "0 is not a TCP port (1..65535)"));
            }
            if self.web.enabled && self.web.port == self.port && self.web.bind.is_none() {
                return Err(Problem::new(
                    "web.port",
                    format!("{} is the DICOM port too; give DICOMweb its own", self.port),
                ));
            }
        }
        if self.timeouts.artim == 0 {
            return Err(Problem::new(
                "timeouts.artim",
                "ARTIM cannot be switched off; give at least 1 second",
            ));
        }
        Ok(())
    }

    /// This node's name: the configured one, or the host name and the DICOM port (made safe
    /// as a file name).
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        let host = if host.is_empty() { "node" } else { &host };
        format!("{host}-{}", self.port)
    }

    /// The index URL with its password, if any, left out: what may be printed.
    pub fn index_for_display(&self) -> Option<String> {
        self.index
            .as_deref()
            .map(dimsum_pacs::index::postgres::without_password)
    }

    /// How a C-MOVE retries its destination.
    pub fn move_retry(&self) -> MoveRetry {
        MoveRetry {
            retries: self.move_retries,
            delay: Duration::from_secs(self.move_retry_delay),
        }
    }

    /// The C-FIND extended negotiation options accepted when a peer proposes them (PS3.4
    /// C.5.1.1): those of the archive that are switched on.
    pub fn find_options(&self) -> FindOptions {
        FindOptions {
            relational_queries: self.relational_queries,
            combined_date_time: self.combined_datetime,
            fuzzy_person_names: self.fuzzy_names,
            ..ARCHIVE_FIND_OPTIONS
        }
    }

    /// The server configuration for `dimsum_net`, TLS files read and checked.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let mut config = ServerConfig::new(&self.ae_title);
        config.max_associations = self.max_associations;
        config.max_associations_per_peer =
            (self.max_associations_per_peer > 0).then_some(self.max_associations_per_peer);
        config.max_pending_associations = (self.max_pending > 0).then_some(self.max_pending);
        config.max_operations_performed = self.max_operations;
        config.max_pdu_length = self.max_pdu;
        config.require_called_ae_title = self.require_called_aet;
        config.allowed_calling_ae_titles =
            (!self.allow_calling.is_empty()).then(|| self.allow_calling.clone());
        config.allow_shutdown_request = self.allow_shutdown;
        let timers = &self.timeouts;
        config.timeouts = Timeouts {
            acse: seconds(timers.acse),
            artim: Duration::from_secs(timers.artim),
            dimse: seconds(timers.dimse),
            idle: seconds(timers.idle),
            write: seconds(timers.write),
            ..Timeouts::default()
        };
        config.shutdown_grace = Duration::from_secs(timers.shutdown_grace);
        config.tls = match &self.tls {
            Some(tls) => tls.as_options().server_tls()?,
            None => None,
        };
        Ok(config)
    }

    /// The address to bind: `bind:port`.
    pub fn listen_address(&self) -> String {
        socket_address(&self.bind, self.port)
    }

    /// The address DICOMweb binds: `bind:port` of the `[web]` table.
    pub fn web_listen_address(&self) -> String {
        socket_address(
            self.web.bind.as_deref().unwrap_or(&self.bind),
            self.web.port,
        )
    }

    /// The DICOMweb server's configuration: its root, limits, CORS and viewer.
    fn web_config(&self) -> Result<WebConfig, Problem> {
        let web = &self.web;
        let mut config = WebConfig::default()
            .with_root(&web.root)
            .map_err(|error| Problem::new("web.root", error.to_string()))?;
        if let Some(base_url) = &web.base_url {
            let origin = base_url
                .strip_prefix("http://")
                .or_else(|| base_url.strip_prefix("https://"));
            if origin.is_none_or(|rest| {
                rest.is_empty()
                    || rest.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
            }) {
                return Err(Problem::new(
                    "web.base-url",
                    format!("{base_url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        config.base_url = web
            .base_url
            .as_ref()
            .map(|url| url.trim_end_matches('/').to_owned());
        config.max_body_bytes = web.max_body_mib.saturating_mul(1 << 20);
        if web.max_body_mib == 0 {
            return Err(Problem::new("web.max-body-mib", "give at least 1"));
        }
        config.cors = if web.cors_origins.iter().any(|origin| origin == "*") {
            CorsOrigins::Any
        } else if web.cors_origins.is_empty() {
            CorsOrigins::None
        } else {
            CorsOrigins::list(&web.cors_origins)
                .map_err(|error| Problem::new("web.cors-origins", error.to_string()))?
        };
        config.viewer.clone_from(&web.viewer);
        Ok(config)
    }

    /// The DICOMweb server's configuration, when DICOMweb is served.
    pub fn dicomweb(&self) -> Result<Option<WebConfig>, ConfigError> {
        if !self.web.enabled {
            return Ok(None);
        }
        self.web_config()
            .map(Some)
            .map_err(|problem| problem.from("configuration"))
    }

    /// What the server prints about DICOMweb once it listens on `listening`.
    pub fn how_to_reach_web(&self, listening: SocketAddr) -> String {
        let host = if listening.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            listening.ip().to_string()
        };
        let origin = match listening {
            SocketAddr::V6(_) if !listening.ip().is_unspecified() => {
                format!("http://[{host}]:{}", listening.port())
            }
            _ => format!("http://{host}:{}", listening.port()),
        };
        let mut text = format!(
            "DICOMweb (QIDO-RS, WADO-RS, STOW-RS) at {origin}{}, e.g.:\n  curl '{origin}{}/studies?limit=10'\n",
            self.web.root.trim_end_matches('/'),
            self.web.root.trim_end_matches('/'),
        );
        if self.web.viewer.is_some() {
            text += &format!("Viewer at {origin}/viewer/\n");
        }
        text
    }

    /// What the server prints when it starts listening on `listening`: its AE title and
    /// address, and commands that reach it.
    pub fn how_to_reach(&self, listening: SocketAddr) -> String {
        let everywhere = listening.ip().is_unspecified();
        let host = if everywhere {
            "localhost".to_owned()
        } else {
            listening.ip().to_string()
        };
        let port = listening.port();
        let mut text = format!(
            "dimsum serve: {} listening on {listening}, data in {}\n",
            self.ae_title,
            self.data.display()
        );
        if let Some(index) = self.index_for_display() {
            text += &format!(
                "Index: {index}, shared with the other nodes of it (this one: {})\n",
                self.node_name()
            );
        }
        text += &format!("Reach it as AE title {} at {host}:{port}", self.ae_title);
        if everywhere {
            text += " (from other machines, at this machine's name or address)";
        }
        text += ", e.g.:\n";
        let mut options = String::new();
        if let Some(tls) = &self.tls {
            options += &match tls.client_certificates {
                ClientCertificates::Require => "+tls YOUR_KEY YOUR_CERT".to_owned(),
                _ => "+tla".to_owned(),
            };
            options += &format!(" +cf {} ", tls.certificate.display());
        }
        if let Some(calling) = self.allow_calling.first() {
            options += &format!("-aet {calling} ");
        }
        options += &format!("-aec {}", self.ae_title);
        let target = format!("{host} {port}");
        text += &format!("  dimsum echoscu {options} {target}\n");
        text += &format!("  dimsum storescu {options} {target} FILES_OR_FOLDERS...\n");
        text += &format!(
            "  dimsum findscu -S {options} -k QueryRetrieveLevel=STUDY -k PatientName= {target}\n"
        );
        text += "(DCMTK's echoscu and findscu take the same arguments; its storescu takes folders \
                 with +sd.)\n";
        if !self.allow_calling.is_empty() {
            text += &format!(
                "Only these calling AE titles are accepted: {}\n",
                self.allow_calling.join(", ")
            );
        }
        if self.peers.is_empty() {
            text +=
                "No C-MOVE destination configured: add --peer AE:HOST:PORT or a [peers] table.\n";
        } else {
            let peers: Vec<String> = self
                .peers
                .iter()
                .map(|(ae_title, address)| format!("{ae_title} ({address})"))
                .collect();
            text += &format!("C-MOVE destinations: {}\n", peers.join(", "));
        }
        if self.allow_shutdown {
            text += &format!("Shutdown request honoured: dimsum termscu {options} {target}\n");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::Parser;

    use super::*;
    use crate::args::expand_dcmtk_options;

    #[derive(Parser, Debug)]
    struct Serve {
        #[command(flatten)]
        options: ServeOptions,
    }

    fn flags(args: &[&str]) -> Result<ServeOptions, clap::Error> {
        let args = std::iter::once("serve").chain(args.iter().copied());
        Serve::try_parse_from(expand_dcmtk_options(args.map(OsString::from)))
            .map(|serve| serve.options)
    }

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_toml(
            text,
            Path::new("/etc/dimsum/serve.toml"),
            Path::new("/etc/dimsum"),
        )
    }

    fn error_text(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("accepted {text:?} as {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// The example file of docs/tools.md, read from there so that the two cannot drift apart.
    fn documented_example() -> &'static str {
        const TOOLS: &str = include_str!("../../../docs/tools.md");
        let section = TOOLS
            .split("## dimsum serve")
            .nth(1)
            .expect("docs/tools.md has a dimsum serve section");
        let start = section.find("```toml\n").expect("a TOML example") + "```toml\n".len();
        let length = section[start..]
            .find("```")
            .expect("the end of the example");
        &section[start..start + length]
    }

    #[test]
    fn the_index_is_sqlite_unless_a_postgres_url_is_given() {
        let config = parse("").expect("defaults");
        assert_eq!(config.index, None);
        let config =
            parse("index = \"postgres://dimsum:secret@db.example:5432/pacs\"\nnode = \"a-1\"")
                .expect("postgres");
        assert_eq!(
            config.index_for_display().as_deref(),
            Some("postgres://dimsum:***@db.example:5432/pacs")
        );
        assert_eq!(config.node_name(), "a-1");
        let refused = parse("index = \"mysql://x\"").expect_err("not postgres");
        assert!(refused.to_string().contains("postgres://"), "{refused}");
        let refused = parse("node = \"../etc\"").expect_err("not a name");
        assert!(refused.to_string().contains("node"), "{refused}");
        let options =
            flags(&["--index", "postgres://u@127.0.0.1:5/d", "--node", "b"]).expect("flags");
        let config = ServeConfig::resolve(&options).expect("resolved");
        assert_eq!(config.index.as_deref(), Some("postgres://u@127.0.0.1:5/d"));
        assert_eq!(
            config.index_for_display().as_deref(),
            Some("postgres://u@127.0.0.1:5/d")
        );
        assert_eq!(config.node_name(), "b");
        let unnamed = ServeConfig::default().node_name();
        assert!(unnamed.ends_with("-11112"), "{unnamed}");
    }

    #[test]
    fn with_no_file_and_no_flag_every_value_is_the_safe_default() {
        let config = ServeConfig::resolve(&flags(&[]).expect("no flags")).expect("defaults");
        assert_eq!(config, ServeConfig::default());
        assert_eq!(
            (config.ae_title.as_str(), config.port, config.data.as_path()),
            ("DIMSUM", 11112, Path::new("./dimsum-data"))
        );
        assert_eq!(config.listen_address(), "0.0.0.0:11112");
        assert!(config.allow_calling.is_empty() && config.peers.is_empty());
        assert_eq!(config.duplicates, DuplicatePolicy::KeepFirst);
        assert_eq!(config.result_limit, DEFAULT_RESULT_LIMIT);
        assert!(!config.allow_shutdown && config.tls.is_none());
        let server = config.server_config().expect("server configuration");
        assert_eq!(server.ae_title, "DIMSUM");
        assert_eq!(server.max_associations, DEFAULT_MAX_ASSOCIATIONS);
        assert_eq!(server.allowed_calling_ae_titles, None);
        assert!(!server.allow_shutdown_request);
        assert_eq!(server.timeouts.idle, Some(Duration::from_secs(300)));
        assert_eq!(server.timeouts, Timeouts::default());
        assert_eq!(server.shutdown_grace, ServerConfig::new("X").shutdown_grace);
        assert_eq!(config.move_retry(), MoveRetry::default());
        assert_eq!(
            config.find_options(),
            ARCHIVE_FIND_OPTIONS,
            "relational queries and combined date-time matching are accepted by default"
        );
        assert!(
            config.find_options().relational_queries && config.find_options().combined_date_time
        );
    }

    #[test]
    fn dicomweb_is_served_on_8042_unless_switched_off() {
        let config = ServeConfig::resolve(&flags(&[]).expect("no flags")).expect("defaults");
        assert_eq!(config.web_listen_address(), "0.0.0.0:8042");
        let web = config
            .dicomweb()
            .expect("valid")
            .expect("served by default");
        assert_eq!(
            (web.root(), web.cors.clone()),
            ("/dicom-web", CorsOrigins::None)
        );
        assert_eq!(web.viewer, None);

        let options = flags(&[
            "--http-port",
            "9000",
            "--cors-origin",
            "*",
            "--viewer",
            "ohif",
            "--base-url",
            "http://pacs:9000/",
        ]);
        let config = ServeConfig::resolve(&options.expect("flags")).expect("config");
        assert_eq!(config.web_listen_address(), "0.0.0.0:9000");
        let web = config.dicomweb().expect("valid").expect("served");
        assert_eq!(web.cors, CorsOrigins::Any);
        assert_eq!(web.viewer, Some(PathBuf::from("ohif")));
        assert_eq!(web.base_url.as_deref(), Some("http://pacs:9000"));
        assert!(
            config
                .how_to_reach_web("127.0.0.1:9000".parse().expect("address"))
                .contains("http://127.0.0.1:9000/dicom-web")
        );

        let off = ServeConfig::resolve(&flags(&["--no-http"]).expect("flags")).expect("config");
        assert!(off.dicomweb().expect("valid").is_none());
        assert!(flags(&["--no-http", "--http-port", "9000"]).is_err());
        let off = parse("[web]\nenabled = false\n").expect("file");
        assert!(off.dicomweb().expect("valid").is_none());

        for (text, key) in [
            ("[web]\nport = 0\n", "web.port"),
            ("port = 8042\n", "web.port"),
            ("[web]\nroot = \"/a b\"\n", "web.root"),
            (
                "[web]\ncors-origins = [\"bad\\norigin\"]\n",
                "web.cors-origins",
            ),
            ("[web]\nmax-body-mib = 0\n", "web.max-body-mib"),
            ("[web]\nbase-url = \"pacs.example.org\"\n", "web.base-url"),
        ] {
            let error = error_text(text);
            assert!(error.contains(key), "{text:?}: {error}");
        }
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").expect("empty file"), ServeConfig::default());
    }

    #[test]
    fn the_documented_example_reads_as_written() {
        let config = parse(documented_example()).expect("the example parses");
        assert_eq!(config.ae_title, "ARCHIVE");
        assert_eq!(config.listen_address(), "10.0.0.2:104");
        assert_eq!(config.data, PathBuf::from("/srv/dimsum"));
        assert_eq!(
            (
                config.max_associations,
                config.max_associations_per_peer,
                config.max_pdu
            ),
            (64, 8, 65536)
        );
        assert_eq!(config.allow_calling, ["CT1", "WORKSTATION"]);
        assert!(config.allow_shutdown);
        assert_eq!(config.duplicates, DuplicatePolicy::Reject);
        assert_eq!(config.result_limit, 5000);
        assert!(config.case_sensitive_names);
        assert_eq!(config.web_listen_address(), "127.0.0.1:8080");
        assert_eq!(config.web.viewer, Some(PathBuf::from("/opt/ohif")));
        let web = config.dicomweb().expect("valid").expect("served");
        assert_eq!(web.root(), "/dicomweb");
        assert_eq!(web.base_url.as_deref(), Some("https://pacs.example.org"));
        assert_eq!(web.max_body_bytes, 2048 << 20);
        assert_eq!(
            web.cors,
            CorsOrigins::list(["https://viewer.example.org"]).expect("origin")
        );
        assert_eq!(
            config.peers["WORKSTATION"],
            PeerAddress {
                host: "10.0.0.7".into(),
                port: 11112
            }
        );
        assert_eq!(config.peers["VIEWER"].to_string(), "[fd00::7]:104");
        assert_eq!(
            config.move_retry(),
            MoveRetry {
                retries: 5,
                delay: Duration::from_secs(3)
            }
        );
        assert_eq!(
            config.timeouts,
            TimeoutsConfig {
                idle: 600,
                shutdown_grace: 30,
                ..TimeoutsConfig::default()
            }
        );
        assert_eq!((config.max_pending, config.max_operations), (0, 16));
        assert!(!config.require_called_aet);
        assert_eq!(
            config.find_options(),
            FindOptions {
                relational_queries: true,
                combined_date_time: false,
                fuzzy_person_names: false,
                ..FindOptions::NONE
            }
        );
        let tls = config.tls.as_ref().expect("TLS");
        assert_eq!(tls.private_key, Path::new("/etc/dimsum/server-key.pem"));
        assert_eq!(tls.certificate, Path::new("/etc/dimsum/server.pem"));
        assert_eq!(tls.trusted, [PathBuf::from("/etc/dimsum/ca.pem")]);
        assert_eq!(tls.client_certificates, ClientCertificates::Require);
    }

    #[test]
    fn relative_paths_of_the_file_are_taken_from_its_folder() {
        let config = parse("data = \"archive\"").expect("parses");
        assert_eq!(config.data, Path::new("/etc/dimsum/archive"));
        let config = parse("port = 4242").expect("parses");
        assert_eq!(
            config.data,
            Path::new(DEFAULT_DATA_DIR),
            "the default stays as it is"
        );
    }

    #[test]
    fn a_file_is_read_from_disk_and_a_missing_one_is_named() {
        let folder =
            std::env::temp_dir().join(format!("dimsum-serve-config-{}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("folder");
        let path = folder.join("serve.toml");
        std::fs::write(&path, "ae-title = \"FROMFILE\"\ndata = \"d\"\n").expect("write");
        let options = flags(&["--config", path.to_str().expect("utf-8")]).expect("flags");
        let config = ServeConfig::resolve(&options).expect("resolves");
        assert_eq!(config.ae_title, "FROMFILE");
        assert_eq!(config.data, folder.join("d"));
        let missing = folder.join("missing.toml");
        let error = ServeConfig::read(&missing).expect_err("no such file");
        assert!(
            matches!(&error, ConfigError::Read { path, .. } if *path == missing),
            "{error}"
        );
        assert!(error.to_string().contains("missing.toml"), "{error}");
        std::fs::remove_dir_all(&folder).expect("clean up");
    }

    #[test]
    fn flags_win_over_the_file() {
        let mut config = parse(documented_example()).expect("parses");
        let options = flags(&[
            "-aet",
            "OTHER",
            "--port",
            "11113",
            "--data",
            "here",
            "--max-associations",
            "9",
            "--idle-timeout",
            "0",
            "--max-pdu",
            "131072",
            "--allow-calling",
            "ONLYME",
            "--peer",
            "VIEWER:viewer:4006",
            "--peer",
            "NEW:10.1.1.1:104",
            "--move-retries",
            "0",
            "--disable-tls",
        ])
        .expect("flags");
        config.apply(&options);
        assert_eq!(config.ae_title, "OTHER");
        assert_eq!(config.port, 11113);
        assert_eq!(config.data, Path::new("here"));
        assert_eq!(config.max_associations, 9);
        assert_eq!(config.timeouts.idle, 0);
        assert_eq!(
            config.move_retry(),
            MoveRetry {
                retries: 0,
                delay: Duration::from_secs(3)
            },
            "--move-retries replaces the file's count and leaves its delay"
        );
        assert_eq!(
            config.allow_calling,
            ["ONLYME"],
            "the flags replace the list"
        );
        assert_eq!(config.peers.len(), 3, "the flags add to the peers");
        assert_eq!(config.peers["VIEWER"].to_string(), "viewer:4006");
        assert_eq!(config.peers["NEW"].to_string(), "10.1.1.1:104");
        assert_eq!(config.peers["WORKSTATION"].to_string(), "10.0.0.7:11112");
        assert!(
            config.tls.is_none(),
            "--disable-tls turns the file's TLS off"
        );
        assert!(
            config.allow_shutdown,
            "a flag that is not given changes nothing"
        );
        let server = config.server_config().expect("no TLS files to read");
        assert_eq!(server.timeouts.idle, None);
        assert_eq!(
            server.allowed_calling_ae_titles,
            Some(vec!["ONLYME".to_owned()])
        );
        assert_eq!(
            server.max_pdu_length, 131072,
            "--max-pdu wins over the file's 65536"
        );
    }

    #[test]
    fn find_options_switch_off_in_the_file_or_with_flags() {
        let config = parse("relational-queries = false").expect("parses");
        assert_eq!(
            config.find_options(),
            FindOptions {
                combined_date_time: true,
                fuzzy_person_names: true,
                ..FindOptions::NONE
            }
        );
        let error = error_text("relational-queries = \"no\"");
        assert!(
            error.contains("relational-queries") && error.contains("bool"),
            "{error}"
        );

        let mut config = ServeConfig::default();
        config.apply(&flags(&["--no-relational"]).expect("flags"));
        assert_eq!(
            (config.relational_queries, config.combined_datetime),
            (false, true)
        );
        config.apply(&flags(&["--no-combined-datetime"]).expect("flags"));
        assert!(config.find_options().fuzzy_person_names);
        config.apply(&flags(&["--no-fuzzy-names"]).expect("flags"));
        assert_eq!(config.find_options(), FindOptions::NONE);
        let config = parse("fuzzy-names = false").expect("parses");
        assert!(!config.find_options().fuzzy_person_names);

        let mut config = parse("combined-datetime = false").expect("parses");
        config.apply(&flags(&[]).expect("no flags"));
        assert_eq!(
            (config.relational_queries, config.combined_datetime),
            (true, false),
            "no flag leaves the file's values"
        );
        assert!(
            flags(&["--no-relational=true"]).is_err(),
            "a switch takes no value"
        );
    }

    #[test]
    fn tls_flags_replace_the_file_settings() {
        let mut config = parse(documented_example()).expect("parses");
        config.apply(&flags(&["+tls", "k.pem", "c.pem", "-ic"]).expect("flags"));
        assert_eq!(
            config.tls,
            Some(TlsConfig {
                private_key: "k.pem".into(),
                certificate: "c.pem".into(),
                trusted: Vec::new(),
                client_certificates: ClientCertificates::Ignore,
            })
        );
        let error = config.server_config().expect_err("no such key file");
        assert!(matches!(error, ConfigError::Tls(_)), "{error}");
        assert!(error.to_string().contains("k.pem"), "{error}");
    }

    #[test]
    fn bad_flags_are_refused_when_parsed() {
        for args in [
            &["--port", "0"][..],
            &["--port", "70000"],
            &["--aet", "WAY_TOO_LONG_AE_TITLE"],
            &["--allow-calling", "BACK\\SLASH"],
            &["--peer", "NOPORT:host"],
            &["--peer", "A:host:0"],
            &["--peer", "A:fd00::1:104"],
            &["--peer", ":host:104"],
            &["--max-associations", "0"],
            &["--scan-only"],
        ] {
            assert!(flags(args).is_err(), "{args:?} accepted");
        }
        let options = flags(&["--peer", "V6:[::1]:104", "--scan", "old", "--scan-only"])
            .expect("valid flags");
        assert_eq!(
            options.peers,
            [PeerFlag {
                ae_title: "V6".into(),
                address: PeerAddress {
                    host: "::1".into(),
                    port: 104
                }
            }]
        );
        assert!(options.scan_only && options.scan == [PathBuf::from("old")]);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let unknown = error_text("prot = 104");
        assert!(
            unknown.contains("/etc/dimsum/serve.toml") && unknown.contains("prot"),
            "{unknown}"
        );
        let wrong_type = error_text("port = \"eleven\"");
        assert!(
            wrong_type.contains("/etc/dimsum/serve.toml") && wrong_type.contains("port"),
            "{wrong_type}"
        );
        let bad_policy = error_text("duplicates = \"overwrite\"");
        assert!(
            bad_policy.contains("keep-first") && bad_policy.contains("reject"),
            "the choices are listed: {bad_policy}"
        );
        let bad_peer = error_text("[peers]\nPACS = \"pacs\"");
        assert!(
            bad_peer.contains("PACS") && bad_peer.contains("HOST:PORT"),
            "{bad_peer}"
        );
        for (text, key) in [
            ("ae-title = \"\"", "`ae-title`"),
            ("ae-title = \"SEVENTEEN_CHARS_X\"", "`ae-title`"),
            ("port = 0", "`port`"),
            ("bind = \"\"", "`bind`"),
            ("data = \"\"", "`data`"),
            ("max-associations = 0", "`max-associations`"),
            ("max-pdu = 100", "`max-pdu`"),
            ("allow-calling = [\"A\\\\B\"]", "`allow-calling`"),
            ("[timeouts]\nartim = 0", "`timeouts.artim`"),
            ("[timeouts]\nidel = 5", "idel"),
            ("[tls]\ncertificate = \"c.pem\"", "private-key"),
        ] {
            let message = error_text(text);
            assert!(
                message.contains("/etc/dimsum/serve.toml") && message.contains(key),
                "{text:?} gave {message:?}, which does not name {key}"
            );
        }
    }

    #[test]
    fn how_to_reach_it_names_the_ae_title_the_address_and_commands() {
        let config = ServeConfig::default();
        let listening: SocketAddr = "0.0.0.0:11112".parse().expect("address");
        let text = config.how_to_reach(listening);
        assert!(
            text.starts_with(
                "dimsum serve: DIMSUM listening on 0.0.0.0:11112, data in ./dimsum-data\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Reach it as AE title DIMSUM at localhost:11112 (from other machines"),
            "{text}"
        );
        assert!(
            text.contains("  dimsum echoscu -aec DIMSUM localhost 11112\n"),
            "{text}"
        );
        assert!(
            text.contains("  dimsum findscu -S -aec DIMSUM -k QueryRetrieveLevel=STUDY -k PatientName= localhost 11112\n"),
            "{text}"
        );
        assert!(text.contains("No C-MOVE destination configured"), "{text}");
        assert!(!text.contains("termscu"), "{text}");

        let config = parse(documented_example()).expect("parses");
        let text = config.how_to_reach("10.0.0.2:104".parse().expect("address"));
        assert!(
            text.contains("  dimsum echoscu +tls YOUR_KEY YOUR_CERT +cf /etc/dimsum/server.pem -aet CT1 -aec ARCHIVE 10.0.0.2 104\n"),
            "{text}"
        );
        assert!(!text.contains("other machines"), "{text}");
        assert!(
            text.contains("Only these calling AE titles are accepted: CT1, WORKSTATION"),
            "{text}"
        );
        assert!(
            text.contains(
                "C-MOVE destinations: VIEWER ([fd00::7]:104), WORKSTATION (10.0.0.7:11112)"
            ),
            "{text}"
        );
        assert!(text.contains("dimsum termscu +tls YOUR_KEY YOUR_CERT +cf /etc/dimsum/server.pem -aet CT1 -aec ARCHIVE 10.0.0.2 104"), "{text}");
    }
}
