//! TLS for DICOM associations: PS3.15 Annex B, the BCP 195 Secure Transport Connection
//! Profiles, over rustls with the `ring` provider.
//!
//! * [`TlsIdentity`]: our private key and certificate chain, read from PEM files.
//! * [`ClientTls`] / [`ServerTls`]: what each side trusts and how it verifies the peer; they
//!   build an `Arc<rustls::ClientConfig>` / `Arc<rustls::ServerConfig>`, or directly a
//!   [`TlsConnector`] / [`TlsAcceptor`].
//! * [`connect`] / [`accept`]: the handshake over an open TCP connection, always with a
//!   deadline, so that a peer that never answers cannot hold a task for ever.
//! * [`server_name`]: the name a client gives the handshake for a host string.
//!
//! # Protocol versions and cipher suites
//!
//! TLS 1.3 and TLS 1.2 only, with rustls' default cipher suites for the `ring` provider: the
//! TLS 1.3 suites (AES-GCM, ChaCha20-Poly1305) and, for TLS 1.2, ECDHE with AES-GCM or
//! ChaCha20-Poly1305. All are AEAD and forward-secret, as BCP 195 (RFC 9325) recommends, and
//! they meet what DCMTK 3.6.7 negotiates by default (its non-downgrading BCP 195 profile,
//! `+py`): with OpenSSL 3 both sides settle on TLS 1.3. Nothing older than TLS 1.2, no static
//! RSA key exchange, no CBC and no NULL cipher is ever offered. (Should a DCMTK peer be limited
//! to TLS 1.2, its profile offers only RSA-authenticated suites there: such a peer needs an RSA
//! certificate on the server side; over TLS 1.3 ECDSA and RSA certificates both work.)
//!
//! # Host names are not checked
//!
//! DICOM peers are configured by IP address (or by a host name picked by whoever set up the
//! peer), and their certificates seldom carry that address or name. DCMTK does not check the
//! host name against the certificate; neither do we, deliberately: a server's certificate chain
//! must lead to a trusted certificate (a CA or the peer's own certificate), be within its
//! validity period and fit its purpose, but the name in it is not compared with the host we
//! dialled. Trust is therefore exactly the set of certificates given (DCMTK's `+cf`): give the
//! peer's own certificate, or a CA that signs only DICOM nodes, rather than a public CA.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::{self, PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::net::TcpStream;

pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
pub use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// How long a handshake may take when the caller has no better figure (DCMTK's and our
/// default connect and ACSE timeouts are 30 s too).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The protocol versions we speak: TLS 1.3 and TLS 1.2 (BCP 195).
static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Which side of the TLS handshake we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSide {
    /// We connected (the association requestor).
    Client,
    /// We accepted (the association acceptor).
    Server,
}

impl fmt::Display for TlsSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSide::Client => f.write_str("we are the TLS client"),
            TlsSide::Server => f.write_str("we are the TLS server"),
        }
    }
}

/// Errors of TLS set-up and handshakes. Each names the file or the peer concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("no private key in {} (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" section{})", path.display(), der_hint(*.looks_like_der))]
    NoPrivateKey { path: PathBuf, looks_like_der: bool },
    #[error("the private key in {} is encrypted; give an unencrypted key (e.g. `openssl pkey -in KEY -out KEY.plain`)", path.display())]
    EncryptedPrivateKey { path: PathBuf },
    #[error("no certificate in {} (expected a PEM \"CERTIFICATE\" section{})", path.display(), der_hint(*.looks_like_der))]
    NoCertificate { path: PathBuf, looks_like_der: bool },
    #[error("invalid PEM in {}: {reason}", path.display())]
    InvalidPem { path: PathBuf, reason: String },
    #[error("invalid private key in {}: {reason}", path.display())]
    InvalidPrivateKey { path: PathBuf, reason: String },
    #[error("invalid certificate in {}: {reason}", path.display())]
    InvalidCertificate { path: PathBuf, reason: String },
    #[error("the private key in {} does not belong to the certificate in {}", key_path.display(), cert_path.display())]
    KeyMismatch {
        key_path: PathBuf,
        cert_path: PathBuf,
    },
    #[error(
        "no trusted certificate to verify the {peer} against: add a CA or the peer's certificate, or turn peer verification off",
        peer = match .side { TlsSide::Client => "server", TlsSide::Server => "client" }
    )]
    NoTrustedCertificates { side: TlsSide },
    #[error("a TLS server needs a private key and certificate of its own")]
    ServerNeedsIdentity,
    #[error("{host:?} is neither an IP address nor a valid DNS name")]
    InvalidServerName { host: String },
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS handshake with {peer} failed ({side}): {source}{}", hint_suffix(.source))]
    Handshake {
        side: TlsSide,
        peer: String,
        source: io::Error,
    },
    #[error("TLS handshake with {peer} timed out after {seconds:.1} s ({side})")]
    HandshakeTimeout {
        side: TlsSide,
        peer: String,
        seconds: f64,
    },
}

fn der_hint(looks_like_der: bool) -> &'static str {
    if looks_like_der {
        "; the file looks like DER: convert it to PEM with openssl"
    } else {
        ""
    }
}

fn hint_suffix(error: &io::Error) -> String {
    explain(error).map_or_else(String::new, |hint| format!(" ({hint})"))
}

/// A short explanation, for people, of the usual TLS failures carried by an I/O error — from a
/// handshake, or from the first read after it: with TLS 1.3 a client learns only then that the
/// server refused its certificate (an `InvalidData` error wrapping the received alert).
pub fn explain(error: &io::Error) -> Option<&'static str> {
    use rustls::AlertDescription as Alert;
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())?;
    let hint = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the peer's certificate is not signed by any certificate we trust"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "the peer's certificate is outside its validity period",
        rustls::Error::InvalidCertificate(_) => "the peer's certificate was refused",
        rustls::Error::NoCertificatesPresented => "the peer showed no certificate",
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            "the peer requires a certificate from us"
        }
        rustls::Error::AlertReceived(
            Alert::UnknownCA | Alert::BadCertificate | Alert::CertificateUnknown,
        ) => "the peer refused our certificate",
        rustls::Error::AlertReceived(Alert::CertificateExpired) => {
            "the peer refused our certificate as expired"
        }
        rustls::Error::AlertReceived(Alert::ProtocolVersion | Alert::HandshakeFailure) => {
            "no protocol version or cipher suite in common"
        }
        rustls::Error::InvalidMessage(_) => "the peer does not speak TLS here",
        _ => return None,
    };
    Some(hint)
}

/// Our private key and certificate chain (end-entity certificate first).
pub struct TlsIdentity {
    key: PrivateKeyDer<'static>,
    chain: Vec<CertificateDer<'static>>,
}

impl TlsIdentity {
    /// Reads a private key (PKCS#8, PKCS#1 or SEC1, unencrypted PEM) and a certificate chain
    /// (PEM, end-entity certificate first), and checks that the key belongs to the certificate
    /// — DCMTK's `+tls KEYFILE CERTFILE`.
    pub fn from_pem_files(
        key_path: impl AsRef<Path>,
        cert_path: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let key_path = key_path.as_ref();
        let cert_path = cert_path.as_ref();
        let key = read_private_key(key_path)?;
        let chain = read_certificates(cert_path)?;
        let identity = Self::new(key, chain).map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key_path: key_path.to_path_buf(),
                cert_path: cert_path.to_path_buf(),
            },
            rustls::Error::InvalidCertificate(_) => TlsError::InvalidCertificate {
                path: cert_path.to_path_buf(),
                reason: error.to_string(),
            },
            _ => TlsError::InvalidPrivateKey {
                path: key_path.to_path_buf(),
                reason: error.to_string(),
            },
        })?;
        Ok(identity)
    }

    /// An identity from DER values; the key must be usable by the `ring` provider and belong
    /// to the first certificate of the chain.
    pub fn new(
        key: PrivateKeyDer<'static>,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Self, rustls::Error> {
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())?;
        Ok(Self { key, chain })
    }

    /// The certificate chain, end-entity certificate first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone_key(),
            chain: self.chain.clone(),
        }
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("key", &"<private>")
            .field("certificates", &self.chain.len())
            .finish()
    }
}

/// Reads every certificate of a PEM file, to trust them (DCMTK's `+cf FILE`). A file may hold
/// one certificate (a CA, or a peer's own self-signed certificate) or several.
pub fn read_trusted_certificates(
    path: impl AsRef<Path>,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = path.as_ref();
    let certificates = read_certificates(path)?;
    // Parse each now, so that a bad file is reported with its name and not at the first handshake.
    let mut store = RootCertStore::empty();
    for certificate in &certificates {
        store
            .add(certificate.clone())
            .map_err(|error| TlsError::InvalidCertificate {
                path: path.to_path_buf(),
                reason: error.to_string(),
            })?;
    }
    Ok(certificates)
}

/// How a client verifies the server's certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerVerification {
    /// The chain must lead to a trusted certificate; the host name is not checked (see the
    /// module documentation).
    #[default]
    Verify,
    /// Accept any certificate (DCMTK's `-ic`). The handshake signatures are still checked, so
    /// the connection is encrypted, but the server is not authenticated.
    AcceptAny,
}

/// How a server treats client certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientVerification {
    /// Ask for a certificate and verify one if the client shows it; a client without one is
    /// accepted (DCMTK's `-vc`). With no trusted certificates at all, no certificate is asked
    /// for, since none could be verified.
    #[default]
    IfPresent,
    /// A client must show a certificate that leads to a trusted certificate (DCMTK's `-rc`).
    Required,
    /// Ask for no certificate (DCMTK's `-ic`).
    None,
}

/// The TLS configuration of an association requestor.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// Our certificate, shown when the server asks for one; `None` for anonymous TLS
    /// (DCMTK's `+tla`).
    pub identity: Option<TlsIdentity>,
    /// Certificates we trust: CAs or servers' own certificates (DCMTK's `+cf`).
    pub trusted: Vec<CertificateDer<'static>>,
    /// How the server's certificate is verified.
    pub verification: ServerVerification,
}

impl ClientTls {
    /// Adds the certificates of a PEM file to those we trust (DCMTK's `+cf FILE`).
    pub fn trust_pem_file(&mut self, path: impl AsRef<Path>) -> Result<(), TlsError> {
        self.trusted.extend(read_trusted_certificates(path)?);
        Ok(())
    }

    /// The rustls configuration: TLS 1.3 and 1.2, `ring`, verification as configured.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        self.config_with_versions(PROTOCOL_VERSIONS)
    }

    fn config_with_versions(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.verification {
            ServerVerification::Verify => {
                if self.trusted.is_empty() {
                    return Err(TlsError::NoTrustedCertificates {
                        side: TlsSide::Client,
                    });
                }
                let inner =
                    WebPkiServerVerifier::builder_with_provider(self.roots()?, provider.clone())
                        .build()
                        .map_err(|error| rustls::Error::General(error.to_string()))?;
                Arc::new(IgnoreHostName { inner })
            }
            ServerVerification::AcceptAny => Arc::new(AcceptAnyServerCertificate {
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.identity {
            Some(identity) => {
                builder.with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// A connector for [`connect`].
    pub fn connector(&self) -> Result<TlsConnector, TlsError> {
        Ok(TlsConnector::from(self.config()?))
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        roots(&self.trusted)
    }
}

/// The TLS configuration of an association acceptor.
#[derive(Clone)]
pub struct ServerTls {
    /// Our key and certificate (required: a TLS server always shows a certificate).
    pub identity: TlsIdentity,
    /// Certificates we trust for client certificates: CAs or clients' own certificates
    /// (DCMTK's `+cf`).
    pub trusted: Vec<CertificateDer<'static>>,
    /// How client certificates are treated.
    pub verification: ClientVerification,
}

impl ServerTls {
    /// A server showing `identity`, trusting nothing yet, verifying client certificates if
    /// present.
    pub fn new(identity: TlsIdentity) -> Self {
        Self {
            identity,
            trusted: Vec::new(),
            verification: ClientVerification::default(),
        }
    }

    /// Adds the certificates of a PEM file to those we trust (DCMTK's `+cf FILE`).
    pub fn trust_pem_file(&mut self, path: impl AsRef<Path>) -> Result<(), TlsError> {
        self.trusted.extend(read_trusted_certificates(path)?);
        Ok(())
    }

    /// The rustls configuration: TLS 1.3 and 1.2, `ring`, client verification as configured.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(provider());
        let verifier: Arc<dyn ClientCertVerifier> = match self.verification {
            ClientVerification::None => WebPkiClientVerifier::no_client_auth(),
            ClientVerification::IfPresent if self.trusted.is_empty() => {
                WebPkiClientVerifier::no_client_auth()
            }
            ClientVerification::IfPresent | ClientVerification::Required => {
                if self.trusted.is_empty() {
                    return Err(TlsError::NoTrustedCertificates {
                        side: TlsSide::Server,
                    });
                }
                let builder = WebPkiClientVerifier::builder_with_provider(
                    roots(&self.trusted)?,
                    provider.clone(),
                );
                let builder = if self.verification == ClientVerification::IfPresent {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder
                    .build()
                    .map_err(|error| rustls::Error::General(error.to_string()))?
            }
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.identity.chain.clone(), self.identity.key.clone_key())?;
        Ok(Arc::new(config))
    }

    /// An acceptor for [`accept`].
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.config()?))
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity)
            .field("trusted_certificates", &self.trusted.len())
            .field("verification", &self.verification)
            .finish()
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("identity", &self.identity)
            .field("trusted_certificates", &self.trusted.len())
            .field("verification", &self.verification)
            .finish()
    }
}

/// The server name a client gives the handshake for `host`: an IP address (`127.0.0.1`,
/// `::1`, `[::1]`) or a DNS name. Only DNS names are sent (SNI); neither is checked against
/// the certificate (see the module documentation).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(address) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(address.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName {
        host: host.to_owned(),
    })
}

/// Runs the client handshake over `tcp`, failing after `timeout`.
pub async fn connect(
    tcp: TcpStream,
    connector: &TlsConnector,
    server_name: ServerName<'static>,
    timeout: Duration,
) -> Result<client::TlsStream<TcpStream>, TlsError> {
    let peer = peer_of(&tcp);
    match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(TlsError::Handshake {
            side: TlsSide::Client,
            peer,
            source,
        }),
        Err(_) => Err(TlsError::HandshakeTimeout {
            side: TlsSide::Client,
            peer,
            seconds: timeout.as_secs_f64(),
        }),
    }
}

/// Runs the server handshake over `tcp`, failing after `timeout`.
pub async fn accept(
    tcp: TcpStream,
    acceptor: &TlsAcceptor,
    timeout: Duration,
) -> Result<server::TlsStream<TcpStream>, TlsError> {
    let peer = peer_of(&tcp);
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(TlsError::Handshake {
            side: TlsSide::Server,
            peer,
            source,
        }),
        Err(_) => Err(TlsError::HandshakeTimeout {
            side: TlsSide::Server,
            peer,
            seconds: timeout.as_secs_f64(),
        }),
    }
}

fn peer_of(tcp: &TcpStream) -> String {
    tcp.peer_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|_| "the peer".to_owned())
}

/// The crypto provider: `ring`, with its default (AEAD, forward-secret) cipher suites.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn roots(trusted: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in trusted {
        store.add(certificate.clone())?;
    }
    Ok(Arc::new(store))
}

/// Verifies a server's chain with rustls' WebPKI verifier and accepts a certificate whose
/// names do not include the host we dialled, as DCMTK does (see the module documentation).
///
/// rustls checks the chain (issuer, signatures, validity, purpose) before the name, so a
/// `NotValidForName` error means the chain itself verified.
#[derive(Debug)]
struct IgnoreHostName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate (DCMTK's `-ic`) but still checks the handshake signatures
/// with the provider's algorithms, so that the server proves it holds the key of the
/// certificate it showed.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// DER files start with a SEQUENCE tag; PEM files with text.
fn looks_like_der(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) if is_encrypted_pem(&bytes) => {
            Err(TlsError::EncryptedPrivateKey {
                path: path.to_path_buf(),
            })
        }
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey {
            path: path.to_path_buf(),
            looks_like_der: looks_like_der(&bytes),
        }),
        Err(error) => Err(invalid_pem(path, error)),
    }
}

fn is_encrypted_pem(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid_pem(path, error))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            looks_like_der: looks_like_der(&bytes),
        });
    }
    Ok(certificates)
}

fn invalid_pem(path: &Path, error: pem::Error) -> TlsError {
    let reason = match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section does not end (missing {:?})",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed section start {:?}",
            String::from_utf8_lossy(&line)
        ),
        pem::Error::Base64Decode(reason) => format!("bad base64: {reason}"),
        other => other.to_string(),
    };
    TlsError::InvalidPem {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A CA and the certificates it signs, plus an unrelated self-signed one.
    struct Pki {
        ca: CertificateDer<'static>,
        ca_pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params
                .distinguished_name
                .push(DnType::CommonName, "dimsum test CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().expect("CA key");
            let ca = params.self_signed(&key).expect("CA certificate");
            Self {
                ca: ca.der().clone(),
                ca_pem: ca.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        fn leaf(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> TlsIdentity {
            let (params, key) = leaf_params(name, purpose);
            let cert = params
                .signed_by(&key, &self.issuer)
                .expect("leaf certificate");
            identity(&key, cert.der())
        }

        fn server(&self) -> TlsIdentity {
            self.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth)
        }

        fn client(&self) -> TlsIdentity {
            self.leaf("dimsum test client", ExtendedKeyUsagePurpose::ClientAuth)
        }
    }

    fn leaf_params(name: &str, purpose: ExtendedKeyUsagePurpose) -> (CertificateParams, KeyPair) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        if name == "localhost" {
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        params.extended_key_usages = vec![purpose];
        (params, KeyPair::generate().expect("leaf key"))
    }

    fn identity(key: &KeyPair, cert: &CertificateDer<'static>) -> TlsIdentity {
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key DER");
        TlsIdentity::new(key, vec![cert.clone()]).expect("identity")
    }

    /// A self-signed certificate nobody trusts.
    fn self_signed(name: &str, purpose: ExtendedKeyUsagePurpose) -> TlsIdentity {
        let (params, key) = leaf_params(name, purpose);
        let cert = params.self_signed(&key).expect("self-signed certificate");
        identity(&key, cert.der())
    }

    fn client_tls(
        identity: Option<TlsIdentity>,
        trusted: &[&CertificateDer<'static>],
    ) -> ClientTls {
        ClientTls {
            identity,
            trusted: trusted.iter().map(|c| (*c).clone()).collect(),
            verification: ServerVerification::Verify,
        }
    }

    fn server_tls(
        identity: TlsIdentity,
        trusted: &[&CertificateDer<'static>],
        verification: ClientVerification,
    ) -> ServerTls {
        ServerTls {
            identity,
            trusted: trusted.iter().map(|c| (*c).clone()).collect(),
            verification,
        }
    }

    struct Outcome {
        client: Result<client::TlsStream<TcpStream>, TlsError>,
        server: Result<server::TlsStream<TcpStream>, TlsError>,
    }

    /// Runs both handshakes over 127.0.0.1, the client dialling `host`.
    async fn handshake(client: &ClientTls, server: &ServerTls, host: &str) -> Outcome {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let acceptor = server.acceptor().expect("acceptor");
        let connector = client.connector().expect("connector");
        let name = server_name(host).expect("server name");
        let server_side = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            accept(tcp, &acceptor, TIMEOUT).await
        };
        let client_side = async {
            let tcp = TcpStream::connect(address).await.expect("connect");
            connect(tcp, &connector, name, TIMEOUT).await
        };
        let (client, server) = tokio::join!(client_side, server_side);
        Outcome { client, server }
    }

    /// The client's result after it read from the stream: with TLS 1.3 a client learns only
    /// at its first read that the server refused its certificate.
    async fn client_after_read(
        client: Result<client::TlsStream<TcpStream>, TlsError>,
    ) -> Result<(), io::Error> {
        let mut stream = match client {
            Ok(stream) => stream,
            Err(error) => return Err(io::Error::other(error.to_string())),
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(TIMEOUT, stream.read(&mut byte)).await {
            Ok(Ok(0)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => panic!("the client hung after the server refused it"),
        }
    }

    fn tls_error_of(error: &TlsError) -> Option<&rustls::Error> {
        match error {
            TlsError::Handshake { source, .. } => source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn mutual_authentication_succeeds_and_bytes_flow_both_ways() {
        let pki = Pki::new();
        let client = client_tls(Some(pki.client()), &[&pki.ca]);
        let server = server_tls(pki.server(), &[&pki.ca], ClientVerification::Required);
        let outcome = handshake(&client, &server, "127.0.0.1").await;
        let mut client = outcome.client.expect("client handshake");
        let mut server = outcome.server.expect("server handshake");

        let (_, connection) = server.get_ref();
        assert!(
            connection
                .peer_certificates()
                .is_some_and(|c| !c.is_empty())
        );
        let (_, connection) = client.get_ref();
        assert!(matches!(
            connection.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        ));

        client.write_all(b"A-ASSOCIATE-RQ").await.expect("write");
        client.flush().await.expect("flush");
        let mut buffer = [0u8; 14];
        server.read_exact(&mut buffer).await.expect("server read");
        assert_eq!(&buffer, b"A-ASSOCIATE-RQ");
        server.write_all(b"A-ASSOCIATE-AC").await.expect("write");
        server.flush().await.expect("flush");
        client.read_exact(&mut buffer).await.expect("client read");
        assert_eq!(&buffer, b"A-ASSOCIATE-AC");
    }

    #[tokio::test]
    async fn a_tls_1_2_client_gets_through() {
        let pki = Pki::new();
        let client = client_tls(None, &[&pki.ca])
            .config_with_versions(&[&rustls::version::TLS12])
            .expect("config");
        let server = server_tls(pki.server(), &[], ClientVerification::IfPresent);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let acceptor = server.acceptor().expect("acceptor");
        let connector = TlsConnector::from(client);
        let server_side = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            accept(tcp, &acceptor, TIMEOUT).await
        };
        let client_side = async {
            let tcp = TcpStream::connect(address).await.expect("connect");
            connect(
                tcp,
                &connector,
                server_name("127.0.0.1").expect("name"),
                TIMEOUT,
            )
            .await
        };
        let (client, server) = tokio::join!(client_side, server_side);
        let client = client.expect("client handshake");
        server.expect("server handshake");
        assert_eq!(
            client.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
    }

    #[tokio::test]
    async fn the_client_refuses_a_server_it_does_not_trust() {
        let pki = Pki::new();
        let client = client_tls(None, &[&pki.ca]);
        let wrong = self_signed("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        let server = server_tls(wrong, &[], ClientVerification::IfPresent);
        let outcome = handshake(&client, &server, "127.0.0.1").await;
        let error = outcome
            .client
            .expect_err("an untrusted server must be refused");
        assert!(
            matches!(
                tls_error_of(&error),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("127.0.0.1"), "{message}");
        assert!(message.contains("we are the TLS client"), "{message}");
        assert!(
            message.contains("not signed by any certificate we trust"),
            "{message}"
        );
        // The server hears of it through the client's alert rather than waiting for ever.
        let server_error = outcome.server.expect_err("the server sees the refusal");
        assert!(matches!(
            server_error,
            TlsError::Handshake {
                side: TlsSide::Server,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_server_with_required_client_certificates_refuses_an_anonymous_client() {
        let pki = Pki::new();
        let client = client_tls(None, &[&pki.ca]);
        let server = server_tls(pki.server(), &[&pki.ca], ClientVerification::Required);
        let outcome = handshake(&client, &server, "127.0.0.1").await;
        let error = outcome
            .server
            .expect_err("a client without certificate must be refused");
        assert!(
            matches!(
                tls_error_of(&error),
                Some(rustls::Error::NoCertificatesPresented)
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("showed no certificate"),
            "{error}"
        );
        let client_error = client_after_read(outcome.client)
            .await
            .expect_err("refused");
        assert!(
            client_error.to_string().contains("CertificateRequired"),
            "{client_error}"
        );
    }

    #[tokio::test]
    async fn the_server_refuses_a_client_certificate_it_does_not_trust() {
        let pki = Pki::new();
        let wrong = self_signed("intruder", ExtendedKeyUsagePurpose::ClientAuth);
        let client = client_tls(Some(wrong), &[&pki.ca]);
        for verification in [ClientVerification::IfPresent, ClientVerification::Required] {
            let server = server_tls(pki.server(), &[&pki.ca], verification);
            let outcome = handshake(&client, &server, "127.0.0.1").await;
            let error = outcome
                .server
                .expect_err("an untrusted client must be refused");
            assert!(
                matches!(
                    tls_error_of(&error),
                    Some(rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer
                    ))
                ),
                "{verification:?}: {error:?}"
            );
            client_after_read(outcome.client)
                .await
                .expect_err("refused");
        }
    }

    #[tokio::test]
    async fn a_server_verifying_if_present_accepts_an_anonymous_client() {
        let pki = Pki::new();
        let client = client_tls(None, &[&pki.ca]);
        let server = server_tls(pki.server(), &[&pki.ca], ClientVerification::IfPresent);
        let outcome = handshake(&client, &server, "localhost").await;
        let server = outcome.server.expect("server handshake");
        assert!(server.get_ref().1.peer_certificates().is_none());
        outcome.client.expect("client handshake");
    }

    #[tokio::test]
    async fn a_server_ignoring_client_certificates_asks_for_none() {
        let pki = Pki::new();
        let wrong = self_signed("intruder", ExtendedKeyUsagePurpose::ClientAuth);
        let client = client_tls(Some(wrong), &[&pki.ca]);
        let server = server_tls(pki.server(), &[&pki.ca], ClientVerification::None);
        let outcome = handshake(&client, &server, "127.0.0.1").await;
        let server = outcome.server.expect("server handshake");
        assert!(server.get_ref().1.peer_certificates().is_none());
        let mut client = outcome.client.expect("client handshake");
        client.write_all(b"x").await.expect("write");
    }

    #[tokio::test]
    async fn ignore_peer_cert_accepts_an_untrusted_server() {
        let wrong = self_signed("somewhere.else", ExtendedKeyUsagePurpose::ServerAuth);
        let client = ClientTls {
            verification: ServerVerification::AcceptAny,
            ..ClientTls::default()
        };
        let server = server_tls(wrong, &[], ClientVerification::IfPresent);
        let outcome = handshake(&client, &server, "127.0.0.1").await;
        let mut client = outcome.client.expect("client handshake");
        let mut server = outcome.server.expect("server handshake");
        client.write_all(b"ping").await.expect("write");
        client.flush().await.expect("flush");
        let mut buffer = [0u8; 4];
        server.read_exact(&mut buffer).await.expect("read");
        assert_eq!(&buffer, b"ping");
    }

    #[tokio::test]
    async fn a_host_name_mismatch_is_accepted_when_the_chain_is_trusted() {
        let pki = Pki::new();
        // Neither the address nor the name dialled is in this certificate.
        let server_identity = pki.leaf("pacs.example", ExtendedKeyUsagePurpose::ServerAuth);
        let client = client_tls(None, &[&pki.ca]);
        let server = server_tls(server_identity, &[], ClientVerification::IfPresent);
        for host in ["127.0.0.1", "localhost", "modality.hospital.example"] {
            let outcome = handshake(&client, &server, host).await;
            outcome.client.unwrap_or_else(|e| panic!("{host}: {e}"));
            outcome.server.unwrap_or_else(|e| panic!("{host}: {e}"));
        }
    }

    #[tokio::test]
    async fn a_peer_s_own_self_signed_certificate_can_be_trusted_directly() {
        let server_identity = self_signed("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        let client_identity = self_signed("modality", ExtendedKeyUsagePurpose::ClientAuth);
        let client = client_tls(
            Some(client_identity.clone()),
            &[&server_identity.chain()[0]],
        );
        let server = server_tls(
            server_identity.clone(),
            &[&client_identity.chain()[0]],
            ClientVerification::Required,
        );
        let outcome = handshake(&client, &server, "127.0.0.1").await;
        outcome.client.expect("client handshake");
        outcome.server.expect("server handshake");
    }

    #[tokio::test]
    async fn the_client_handshake_times_out_against_a_silent_server() {
        let pki = Pki::new();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let connector = client_tls(None, &[&pki.ca]).connector().expect("connector");
        let silent = tokio::spawn(async move {
            // Accept and say nothing, keeping the connection open.
            let (tcp, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tcp);
        });
        let tcp = TcpStream::connect(address).await.expect("connect");
        let started = std::time::Instant::now();
        let name = server_name("127.0.0.1").expect("name");
        let error = connect(tcp, &connector, name, Duration::from_millis(300))
            .await
            .expect_err("must time out");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(
                error,
                TlsError::HandshakeTimeout {
                    side: TlsSide::Client,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("timed out after 0.3 s"),
            "{error}"
        );
        silent.abort();
    }

    #[tokio::test]
    async fn the_server_handshake_times_out_against_a_silent_client() {
        let pki = Pki::new();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let acceptor = server_tls(pki.server(), &[], ClientVerification::IfPresent)
            .acceptor()
            .expect("acceptor");
        let _silent = TcpStream::connect(address).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let error = accept(tcp, &acceptor, Duration::from_millis(300))
            .await
            .expect_err("must time out");
        assert!(
            matches!(
                error,
                TlsError::HandshakeTimeout {
                    side: TlsSide::Server,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn verification_without_trusted_certificates_is_a_configuration_error() {
        let error = ClientTls::default()
            .config()
            .expect_err("nothing to verify against");
        assert!(matches!(
            error,
            TlsError::NoTrustedCertificates {
                side: TlsSide::Client
            }
        ));
        assert!(error.to_string().contains("verify the server"), "{error}");

        let pki = Pki::new();
        let required = server_tls(pki.server(), &[], ClientVerification::Required);
        let error = required.config().expect_err("nothing to verify against");
        assert!(error.to_string().contains("verify the client"), "{error}");
        // Verifying "if present" with nothing to verify against asks for no certificate.
        server_tls(pki.server(), &[], ClientVerification::IfPresent)
            .config()
            .expect("if-present without trust");
    }

    #[test]
    fn server_names_are_ip_addresses_or_dns_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("pacs.example"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        let error = server_name("not a host").expect_err("invalid");
        assert!(error.to_string().contains("not a host"), "{error}");
    }

    mod files {
        use super::*;

        struct Files {
            dir: tempfile::TempDir,
        }

        impl Files {
            fn new() -> Self {
                Self {
                    dir: tempfile::tempdir().expect("temp dir"),
                }
            }

            fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
                let path = self.dir.path().join(name);
                std::fs::write(&path, contents).expect("write");
                path
            }
        }

        fn key_and_cert() -> (KeyPair, rcgen::Certificate) {
            let (params, key) = leaf_params("localhost", ExtendedKeyUsagePurpose::ServerAuth);
            let cert = params.self_signed(&key).expect("certificate");
            (key, cert)
        }

        #[test]
        fn an_identity_and_trusted_certificates_load_from_pem_files() {
            let files = Files::new();
            let (key, cert) = key_and_cert();
            let key_path = files.write("key.pem", key.serialize_pem());
            // A key file may hold the certificate too; a certificate file may hold a chain.
            let both = files.write("both.pem", format!("{}{}", cert.pem(), key.serialize_pem()));
            let cert_path = files.write("cert.pem", cert.pem());
            let chain = files.write("chain.pem", format!("{}{}", cert.pem(), Pki::new().ca_pem));

            let identity = TlsIdentity::from_pem_files(&key_path, &cert_path).expect("identity");
            assert_eq!(identity.chain(), &[cert.der().clone()]);
            TlsIdentity::from_pem_files(&both, &both).expect("key and certificate in one file");
            let identity = TlsIdentity::from_pem_files(&key_path, &chain).expect("chain");
            assert_eq!(identity.chain().len(), 2);
            assert!(!format!("{identity:?}").contains("BEGIN"));

            let mut client = ClientTls::default();
            client.trust_pem_file(&chain).expect("trust");
            assert_eq!(client.trusted.len(), 2);
            client.config().expect("client config");
        }

        #[test]
        fn file_errors_name_the_file_and_the_problem() {
            let files = Files::new();
            let (key, cert) = key_and_cert();
            let key_path = files.write("key.pem", key.serialize_pem());
            let cert_path = files.write("cert.pem", cert.pem());
            let missing = files.dir.path().join("missing.pem");

            let error = TlsIdentity::from_pem_files(&missing, &cert_path).expect_err("missing");
            assert!(matches!(error, TlsError::ReadFile { .. }));
            assert!(error.to_string().contains("missing.pem"), "{error}");

            let error = TlsIdentity::from_pem_files(&cert_path, &cert_path).expect_err("no key");
            assert!(matches!(
                error,
                TlsError::NoPrivateKey {
                    looks_like_der: false,
                    ..
                }
            ));
            assert!(error.to_string().contains("cert.pem"), "{error}");

            let der_key = files.write("key.der", key.serialize_der());
            let error = TlsIdentity::from_pem_files(&der_key, &cert_path).expect_err("DER");
            assert!(error.to_string().contains("looks like DER"), "{error}");

            let error = TlsIdentity::from_pem_files(&key_path, &key_path).expect_err("no cert");
            assert!(matches!(error, TlsError::NoCertificate { .. }));
            assert!(error.to_string().contains("key.pem"), "{error}");
            let error = read_trusted_certificates(&key_path).expect_err("no cert");
            assert!(matches!(error, TlsError::NoCertificate { .. }));

            let (other_key, _) = key_and_cert();
            let other_key_path = files.write("other.pem", other_key.serialize_pem());
            let error =
                TlsIdentity::from_pem_files(&other_key_path, &cert_path).expect_err("mismatch");
            assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
            assert!(error.to_string().contains("does not belong"), "{error}");

            let encrypted = files.write(
                "encrypted.pem",
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            );
            let error = TlsIdentity::from_pem_files(&encrypted, &cert_path).expect_err("encrypted");
            assert!(
                matches!(error, TlsError::EncryptedPrivateKey { .. }),
                "{error:?}"
            );

            let truncated = files.write("truncated.pem", &cert.pem()[..100]);
            let error = read_trusted_certificates(&truncated).expect_err("truncated");
            assert!(matches!(error, TlsError::InvalidPem { .. }), "{error:?}");
            assert!(error.to_string().contains("truncated.pem"), "{error}");

            let garbage = files.write(
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            );
            let error = read_trusted_certificates(&garbage).expect_err("garbage");
            assert!(
                matches!(error, TlsError::InvalidCertificate { .. }),
                "{error:?}"
            );
        }
    }
}
