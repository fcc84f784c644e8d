//! Options shared by several tools.

use std::time::Duration;

use dimsum_net::tls::{ClientTls, TlsError};
use dimsum_net::ul::negotiation::AssociationRequest;
use dimsum_net::ul::pdu::{UserIdentityRq, UserIdentityType};
use dimsum_net::{Association, Limits, ServerConfig, Timeouts};

use tracing::{error, info};

use crate::exit::{self, Code};
use crate::tls_options::TlsOptions;

/// AE titles and user identity of a requestor.
#[derive(clap::Args, Debug)]
pub struct AssociationOptions {
    /// Calling AE title (ours) [default: the tool's name, e.g. ECHOSCU].
    #[arg(long = "aetitle", value_name = "AE")]
    pub aetitle: Option<String>,
    /// Called AE title (the peer's).
    #[arg(long = "call", value_name = "AE", default_value = "ANY-SCP")]
    pub call: String,
    /// User identity negotiation: username (PS3.7 §D.3.3.7).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// User identity negotiation: passcode (with --username).
    #[arg(long, value_name = "PASSWORD", requires = "username")]
    pub password: Option<String>,
}

impl AssociationOptions {
    /// Our AE title: the one given, or the tool's default.
    pub fn calling<'a>(&'a self, default: &'a str) -> &'a str {
        self.aetitle.as_deref().unwrap_or(default)
    }
}

/// The peer of a client tool and how to reach it.
#[derive(clap::Args, Debug)]
pub struct PeerOptions {
    /// Host name or IP address of the peer.
    pub host: String,
    /// TCP port of the peer.
    pub port: u16,
    #[command(flatten)]
    pub association: AssociationOptions,
    #[command(flatten)]
    pub network: NetworkOptions,
}

impl AssociationOptions {
    pub(crate) fn user_identity(&self) -> Option<UserIdentityRq> {
        let username = self.username.as_ref()?;
        let (identity_type, secondary_field) = match &self.password {
            Some(password) => (
                UserIdentityType::UsernameAndPasscode,
                password.clone().into_bytes(),
            ),
            None => (UserIdentityType::Username, Vec::new()),
        };
        Some(UserIdentityRq {
            identity_type,
            positive_response_requested: false,
            primary_field: username.clone().into_bytes(),
            secondary_field,
        })
    }
}

impl PeerOptions {
    /// Our AE title: the one given, or the tool's default.
    pub fn calling<'a>(&'a self, default: &'a str) -> &'a str {
        self.association.calling(default)
    }

    /// Requests an association as `-aet` (or `default_calling`) with what `build` adds to the
    /// request (contexts, roles, a window) and the max PDU and user identity given, reporting
    /// failures for a person; the exit status on failure.
    pub async fn open<E: std::fmt::Display>(
        &self,
        default_calling: &str,
        build: impl FnOnce(AssociationRequest) -> Result<AssociationRequest, E>,
    ) -> Result<Association, Code> {
        let usage = |error: &dyn std::fmt::Display| {
            error!("{error}");
            Code::Usage
        };
        let request =
            AssociationRequest::new(self.calling(default_calling), &self.association.call);
        let mut request = build(request).map_err(|error| usage(&error))?;
        request.max_pdu_length = self.network.max_pdu;
        request.user_identity = self.association.user_identity();
        request.to_pdu().map_err(|error| usage(&error))?;
        let tls = self.network.tls().map_err(|error| usage(&error))?;
        let address = format!("{}:{}", self.host, self.port);
        info!(
            "Requesting association with {}@{} as {}",
            request.called_ae_title, address, request.calling_ae_title
        );
        let association = Association::connect_with(
            &address,
            &request,
            self.network.timeouts(),
            Limits::default(),
            tls.as_ref(),
        )
        .await
        .map_err(|error| exit::report(&error, &address))?;
        info!(
            "Association accepted: {}",
            association.info().peer_summary()
        );
        Ok(association)
    }
}

/// Network options of a requestor.
#[derive(clap::Args, Debug)]
pub struct NetworkOptions {
    /// Maximum PDU length we receive (0 = unlimited, else 4096..=16777216).
    #[arg(long = "max-pdu", value_name = "BYTES", default_value_t = 16384, value_parser = parse_max_pdu)]
    pub max_pdu: u32,
    /// TCP connect timeout in seconds (0 = none).
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// ACSE timeout in seconds: waiting for association and release answers (0 = none).
    #[arg(long = "acse-timeout", value_name = "SECONDS", default_value_t = 30)]
    pub acse_timeout: u64,
    #[command(flatten)]
    pub message_timeouts: MessageTimeoutOptions,
    #[command(flatten)]
    pub tls: TlsOptions,
}

/// The timers both sides run while messages flow.
#[derive(clap::Args, Debug)]
pub struct MessageTimeoutOptions {
    /// DIMSE timeout in seconds: abort a peer silent in the middle of a message, or while a
    /// response to our request is due (0 = never).
    #[arg(long = "dimse-timeout", value_name = "SECONDS", default_value_t = 60)]
    pub dimse_timeout: u64,
    /// Write timeout in seconds: cut a peer that does not read what we send (0 = never).
    #[arg(long = "write-timeout", value_name = "SECONDS", default_value_t = 60)]
    pub write_timeout: u64,
}

impl MessageTimeoutOptions {
    /// `timeouts` with these DIMSE and write timers.
    fn apply(&self, timeouts: Timeouts) -> Timeouts {
        Timeouts {
            dimse: seconds(self.dimse_timeout),
            write: seconds(self.write_timeout),
            ..timeouts
        }
    }
}

impl NetworkOptions {
    pub fn timeouts(&self) -> Timeouts {
        self.message_timeouts.apply(Timeouts {
            connect: seconds(self.timeout),
            acse: seconds(self.acse_timeout),
            // A client ends its own associations; it has no reason to abort an idle one.
            idle: None,
            ..Timeouts::default()
        })
    }

    /// The TLS configuration, read from the files given, or `None` for plain TCP.
    pub fn tls(&self) -> Result<Option<ClientTls>, TlsError> {
        self.tls.client_tls()
    }
}

/// Options of every server tool (echoscp, storescp, dcmrecv).
#[derive(clap::Args, Debug)]
pub struct ServerOptions {
    /// Our AE title [default: the tool's name, e.g. STORESCP].
    #[arg(long = "aetitle", value_name = "AE")]
    pub aetitle: Option<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: String,
    /// Maximum PDU length we receive (0 = unlimited, else 4096..=16777216).
    #[arg(long = "max-pdu", value_name = "BYTES", default_value_t = 16384, value_parser = parse_max_pdu)]
    pub max_pdu: u32,
    /// Reject associations whose called AE title is not ours.
    #[arg(long)]
    pub require_called_aet: bool,
    /// Accept only this calling AE title (repeat for several).
    #[arg(long = "allow-calling", value_name = "AE")]
    pub allow_calling: Vec<String>,
    /// Associations served at once; more are rejected (transient, local limit exceeded).
    #[arg(long, value_name = "N", default_value_t = dimsum_net::server::DEFAULT_MAX_ASSOCIATIONS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_associations: u32,
    /// Associations served at once for one peer IP address (0 = no per-peer limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_associations_per_peer: u32,
    /// Connections whose association request is still awaited (they take no association
    /// slot until they send one); beyond this, new connections are closed at once (0 = sized
    /// from the open-file limit, which is raised to its maximum).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_pending: u32,
    /// Operations a peer may have outstanding on one association, when it proposes an
    /// asynchronous operations window (PS3.7 D.3.3.3).
    #[arg(long, value_name = "N", default_value_t = dimsum_net::server::DEFAULT_OPERATIONS_PERFORMED, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_operations: u16,
    /// ACSE timeout in seconds (0 = none).
    #[arg(long = "acse-timeout", value_name = "SECONDS", default_value_t = 30)]
    pub acse_timeout: u64,
    /// ARTIM timeout in seconds: wait for the association request, and for the peer to close.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub artim_timeout: u64,
    /// Abort an association idle for this many seconds (0 = never).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub idle_timeout: u64,
    /// Honour DCMTK's private shutdown request (`termscu`): refuse that association as DCMTK's
    /// servers do, then stop gracefully (DCMTK dcmqrscp: --allow-shutdown).
    #[arg(long)]
    pub allow_shutdown: bool,
    #[command(flatten)]
    pub message_timeouts: MessageTimeoutOptions,
    #[command(flatten)]
    pub tls: TlsOptions,
}

impl ServerOptions {
    /// The server configuration these options describe, for a tool whose default AE title is
    /// `default_ae_title`.
    pub fn config(&self, default_ae_title: &str) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::new(self.aetitle.as_deref().unwrap_or(default_ae_title));
        config.max_pdu_length = self.max_pdu;
        config.require_called_ae_title = self.require_called_aet;
        config.allowed_calling_ae_titles =
            (!self.allow_calling.is_empty()).then(|| self.allow_calling.clone());
        config.max_associations = self.max_associations as usize;
        config.max_associations_per_peer =
            (self.max_associations_per_peer > 0).then_some(self.max_associations_per_peer as usize);
        config.max_pending_associations =
            (self.max_pending > 0).then_some(self.max_pending as usize);
        config.max_operations_performed = self.max_operations;
        config.allow_shutdown_request = self.allow_shutdown;
        config.timeouts = self.message_timeouts.apply(Timeouts {
            acse: seconds(self.acse_timeout),
            artim: Duration::from_secs(self.artim_timeout),
            idle: seconds(self.idle_timeout),
            ..Timeouts::default()
        });
        config.tls = self.tls.server_tls()?;
        Ok(config)
    }
}

/// A number of seconds as a timeout; 0 means none.
pub(crate) fn seconds(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Parses a maximum PDU length: 0 (no limit) or 4096..=16 MiB, as DCMTK allows and more.
pub fn parse_max_pdu(value: &str) -> Result<u32, String> {
    let n: u32 = value
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if n == 0 || (4096..=16 * 1024 * 1024).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is out of range: use 0 (unlimited) or 4096..=16777216"
        ))
    }
}
