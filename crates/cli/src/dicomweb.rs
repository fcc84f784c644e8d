//! What `dimsum qido`, `dimsum wado` and `dimsum stow` share: the options of the HTTP
//! connection (credentials, headers, timeouts, trusted certificates), the client built from
//! them, progress bars, and DICOMweb errors reported for people with an exit status.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::error;

use dimsum_web::client::{Client, ClientError};

use crate::exit::Code;
use crate::logging::Verbosity;

/// How to reach a DICOMweb server (PS3.18 §10): credentials, headers, timeouts, TLS trust.
#[derive(clap::Args, Debug, Clone)]
pub struct WebOptions {
    /// The service root, e.g. http://localhost:8042/dicom-web.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", conflicts_with = "user")]
    pub token: Option<String>,
    /// HTTP Basic credentials.
    #[arg(short = 'u', long, value_name = "USER[:PASSWORD]")]
    pub user: Option<String>,
    /// An extra header for every request, e.g. -H "X-Tenant: radiology" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Seconds to wait for a connection (TCP and TLS).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
    /// Seconds to wait for the next bytes of a response; 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub read_timeout: u64,
    /// Also trust the CA certificates of this PEM file (repeatable).
    #[arg(long = "cacert", value_name = "PEM")]
    pub ca_certificates: Vec<PathBuf>,
}

impl WebOptions {
    /// The client, or the exit status after the reason was logged.
    pub fn client(&self) -> Result<Client, Code> {
        let mut builder = Client::builder(&self.url)
            .connect_timeout(Duration::from_secs(self.connect_timeout))
            .read_timeout((self.read_timeout > 0).then(|| Duration::from_secs(self.read_timeout)));
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(user) = &self.user {
            builder = match user.split_once(':') {
                Some((user, password)) => builder.basic_auth(user, Some(password.to_owned())),
                None => builder.basic_auth(user, None),
            };
        }
        for header in &self.headers {
            let Some((name, value)) = header.split_once(':') else {
                error!("--header {header:?}: write it as \"Name: value\"");
                return Err(Code::Usage);
            };
            builder = builder.header(name.trim(), value.trim());
        }
        for path in &self.ca_certificates {
            match std::fs::read(path) {
                Ok(pem) => builder = builder.add_root_certificates_pem(pem),
                Err(e) => {
                    error!("cannot read {}: {e}", path.display());
                    return Err(Code::Usage);
                }
            }
        }
        builder.build().map_err(|error| report(&error))
    }
}

/// The exit status for a DICOMweb error (docs/tools.md): 2 for what the command line asked
/// wrongly, 4 when the server could not be reached or the exchange broke off, 1 when the server
/// answered with an error status, 5 when its answer is not what PS3.18 says.
pub fn exit_code(error: &ClientError) -> Code {
    match error {
        ClientError::InvalidUrl { .. }
        | ClientError::Config(_)
        | ClientError::InvalidUid { .. }
        | ClientError::Query(_)
        | ClientError::Representation(_)
        | ClientError::Resource(_) => Code::Usage,
        ClientError::Transport { .. } => Code::Connection,
        ClientError::Status { .. } => Code::DimseFailure,
        ClientError::File { .. } => Code::Internal,
        _ => Code::Aborted,
    }
}

/// Logs `error` for a person, with what to try for the common cases, and returns its exit
/// status.
pub fn report(error: &ClientError) -> Code {
    let hint = match error {
        ClientError::Status {
            status: 401 | 403, ..
        } => " (check the credentials: --token or --user)",
        ClientError::Status { status: 404, .. } => " (check the service root URL and the UIDs)",
        ClientError::Status { status: 406, .. } => {
            " (the server cannot give that representation; try --transfer-syntax '*')"
        }
        ClientError::Transport { .. } => " (is the server running, and is the URL right?)",
        _ => "",
    };
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    error!("{message}{hint}");
    exit_code(error)
}

/// A progress bar on stderr, drawn only on a terminal and only when the log is not verbose or
/// quiet; `total` in bytes, or a spinner when the total is not known.
pub fn progress_bar(total: Option<u64>, verbosity: Verbosity, no_progress: bool) -> ProgressBar {
    let visible = !no_progress
        && !verbosity.verbose
        && !verbosity.debug
        && !verbosity.quiet
        && std::io::stderr().is_terminal();
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} {bytes} ({bytes_per_sec}) {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_draw_target(if visible {
        ProgressDrawTarget::stderr_with_hz(10)
    } else {
        ProgressDrawTarget::hidden()
    });
    bar
}

/// Megabytes for people (as storescu's summary writes them).
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
