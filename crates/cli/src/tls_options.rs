//! TLS options of the network tools (PS3.15 Annex B secure transport), spelled as DCMTK spells
//! them: `+tls KEY CERT`, `+tla`, `+cf CERT`, `-ic`, `-rc`, `-vc`, `-tls` (the single-dash and
//! plus forms are rewritten to the long ones by [`crate::args`]).
//!
//! As in DCMTK, TLS is on exactly when `--tls KEYFILE CERTFILE` (or, for a client,
//! `--anonymous-tls`) is given, and the other TLS options need one of them.

use std::path::PathBuf;

use dimsum_net::tls::{
    CertificateDer, ClientTls, ClientVerification, ServerTls, ServerVerification, TlsError,
    TlsIdentity, read_trusted_certificates,
};

/// TLS options, to be flattened into a tool's options.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(next_help_heading = "TLS options")]
#[command(group = clap::ArgGroup::new("tls_on").args(["tls", "anonymous_tls"]).multiple(false))]
pub struct TlsOptions {
    /// Use TLS, showing this private key and certificate, both PEM (DCMTK: +tls).
    #[arg(
        long = "tls",
        num_args = 2,
        value_names = ["KEYFILE", "CERTFILE"],
        overrides_with = "disable_tls"
    )]
    pub tls: Option<Vec<PathBuf>>,
    /// Client: use TLS without a certificate of our own (DCMTK: +tla).
    #[arg(long = "anonymous-tls", overrides_with = "disable_tls")]
    pub anonymous_tls: bool,
    /// Plain TCP, no TLS: the default (DCMTK: -tls).
    #[arg(long = "disable-tls", overrides_with_all = ["tls", "anonymous_tls"])]
    pub disable_tls: bool,
    /// Trust this certificate (PEM): a CA, or the peer's own certificate; repeatable
    /// (DCMTK: +cf).
    #[arg(long = "add-cert-file", value_name = "CERTFILE", requires = "tls_on")]
    pub add_cert_file: Vec<PathBuf>,
    /// Do not verify the peer's certificate: encrypted, but the peer is not authenticated
    /// (DCMTK: -ic).
    #[arg(
        long = "ignore-peer-cert",
        requires = "tls_on",
        conflicts_with_all = ["require_peer_cert", "verify_peer_cert"]
    )]
    pub ignore_peer_cert: bool,
    /// Server: refuse clients that show no certificate (DCMTK: -rc).
    #[arg(
        long = "require-peer-cert",
        requires = "tls_on",
        conflicts_with = "verify_peer_cert"
    )]
    pub require_peer_cert: bool,
    /// Server: verify a client's certificate if it shows one, the default here
    /// (DCMTK: -vc; DCMTK's own default is -rc).
    #[arg(long = "verify-peer-cert", requires = "tls_on")]
    pub verify_peer_cert: bool,
}

impl TlsOptions {
    /// Whether TLS is on (`--tls` or `--anonymous-tls`).
    pub fn enabled(&self) -> bool {
        self.tls.is_some() || self.anonymous_tls
    }

    /// The TLS configuration of a client, or `None` for plain TCP. Reads the files and builds
    /// the configuration once, so that a bad file or setting is reported before any
    /// connection.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, TlsError> {
        if !self.enabled() {
            return Ok(None);
        }
        let client = ClientTls {
            identity: self.identity()?,
            trusted: self.trusted()?,
            verification: if self.ignore_peer_cert {
                ServerVerification::AcceptAny
            } else {
                ServerVerification::Verify
            },
        };
        client.config()?;
        Ok(Some(client))
    }

    /// The TLS configuration of a server, or `None` for plain TCP. A server needs `--tls`
    /// (its own key and certificate); the configuration is built once to report errors early.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, TlsError> {
        if !self.enabled() {
            return Ok(None);
        }
        let identity = self.identity()?.ok_or(TlsError::ServerNeedsIdentity)?;
        let server = ServerTls {
            identity,
            trusted: self.trusted()?,
            verification: if self.ignore_peer_cert {
                ClientVerification::None
            } else if self.require_peer_cert {
                ClientVerification::Required
            } else {
                ClientVerification::IfPresent
            },
        };
        server.config()?;
        Ok(Some(server))
    }

    fn identity(&self) -> Result<Option<TlsIdentity>, TlsError> {
        match self.tls.as_deref() {
            Some([key, cert]) => TlsIdentity::from_pem_files(key, cert).map(Some),
            // clap takes exactly two values; anything else means no identity.
            _ => Ok(None),
        }
    }

    fn trusted(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let mut trusted = Vec::new();
        for path in &self.add_cert_file {
            trusted.extend(read_trusted_certificates(path)?);
        }
        Ok(trusted)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::Parser;

    use super::*;
    use crate::args::expand_dcmtk_options;

    #[derive(Parser, Debug)]
    struct Tool {
        #[command(flatten)]
        tls: TlsOptions,
        #[arg(long = "aetitle")]
        aetitle: Option<String>,
        peer: Option<String>,
    }

    fn parse(args: &[&str]) -> Result<Tool, clap::Error> {
        let args = std::iter::once("tool").chain(args.iter().copied());
        Tool::try_parse_from(expand_dcmtk_options(args.map(OsString::from)))
    }

    fn tls(args: &[&str]) -> TlsOptions {
        parse(args)
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
            .tls
    }

    #[test]
    fn no_option_means_plain_tcp() {
        let options = tls(&["host"]);
        assert_eq!(options, TlsOptions::default());
        assert!(!options.enabled());
        assert!(matches!(options.client_tls(), Ok(None)));
        assert!(matches!(options.server_tls(), Ok(None)));
    }

    #[test]
    fn long_options_parse() {
        let options = tls(&[
            "--tls",
            "key.pem",
            "cert.pem",
            "--add-cert-file",
            "ca.pem",
            "--add-cert-file",
            "peer.pem",
            "--require-peer-cert",
            "host",
        ]);
        assert_eq!(
            options.tls,
            Some(vec![PathBuf::from("key.pem"), PathBuf::from("cert.pem")])
        );
        assert_eq!(
            options.add_cert_file,
            vec![PathBuf::from("ca.pem"), PathBuf::from("peer.pem")]
        );
        assert!(options.require_peer_cert && !options.ignore_peer_cert);
        assert!(options.enabled());
    }

    #[test]
    fn dcmtk_spellings_parse() {
        let parsed = parse(&[
            "+tls", "k.pem", "c.pem", "+cf", "ca.pem", "-ic", "-aet", "ME", "host",
        ])
        .expect("parse");
        assert_eq!(
            parsed.tls.tls,
            Some(vec![PathBuf::from("k.pem"), PathBuf::from("c.pem")])
        );
        assert_eq!(parsed.tls.add_cert_file, vec![PathBuf::from("ca.pem")]);
        assert!(parsed.tls.ignore_peer_cert);
        assert_eq!(parsed.aetitle.as_deref(), Some("ME"));
        assert_eq!(parsed.peer.as_deref(), Some("host"));

        let options = tls(&["+tla", "+cf", "ca.pem", "host"]);
        assert!(options.anonymous_tls && options.tls.is_none());
        let options = tls(&["+tls", "k.pem", "c.pem", "-rc"]);
        assert!(options.require_peer_cert);
        let options = tls(&["+tls", "k.pem", "c.pem", "-vc"]);
        assert!(options.verify_peer_cert);
    }

    #[test]
    fn the_last_of_tls_and_disable_tls_wins() {
        assert!(!tls(&["+tls", "k.pem", "c.pem", "-tls"]).enabled());
        assert!(tls(&["-tls", "+tls", "k.pem", "c.pem"]).enabled());
        assert!(!tls(&["+tla", "-tls"]).enabled());
    }

    #[test]
    fn invalid_combinations_are_refused() {
        for args in [
            &["--tls", "key.pem"][..],                  // one value
            &["--add-cert-file", "ca.pem", "host"][..], // +cf without TLS
            &["-ic", "host"][..],                       // -ic without TLS
            &["-rc", "host"][..],                       // -rc without TLS
            &["+tls", "k", "c", "+tla"][..],            // two kinds of TLS
            &["+tls", "k", "c", "-ic", "-rc"][..],      // ignore and require
            &["+tls", "k", "c", "-rc", "-vc"][..],      // require and verify
        ] {
            assert!(parse(args).is_err(), "{args:?} must be refused");
        }
    }

    #[test]
    fn errors_name_the_file() {
        let options = tls(&["+tls", "/nonexistent/key.pem", "/nonexistent/cert.pem"]);
        let error = options.client_tls().expect_err("missing files");
        assert!(matches!(error, TlsError::ReadFile { .. }));
        assert!(
            error.to_string().contains("/nonexistent/key.pem"),
            "{error}"
        );

        let options = tls(&["+tla", "+cf", "/nonexistent/ca.pem"]);
        let error = options.client_tls().expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn files_become_client_and_server_configurations() {
        let dir = std::env::temp_dir().join(format!("dimsum-tls-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        let key_path = dir.join("key.pem");
        let cert_path = dir.join("cert.pem");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        let (key_arg, cert_arg) = (
            key_path.to_str().expect("UTF-8 path"),
            cert_path.to_str().expect("UTF-8 path"),
        );

        let options = tls(&["+tls", key_arg, cert_arg, "+cf", cert_arg, "+cf", cert_arg]);
        let client = options.client_tls().expect("client").expect("TLS on");
        assert!(client.identity.is_some());
        assert_eq!(client.trusted.len(), 2);
        assert_eq!(client.verification, ServerVerification::Verify);
        let server = options.server_tls().expect("server").expect("TLS on");
        assert_eq!(server.verification, ClientVerification::IfPresent);

        let options = tls(&["+tls", key_arg, cert_arg, "+cf", cert_arg, "-rc"]);
        let server = options.server_tls().expect("server").expect("TLS on");
        assert_eq!(server.verification, ClientVerification::Required);
        let options = tls(&["+tls", key_arg, cert_arg, "-ic"]);
        let server = options.server_tls().expect("server").expect("TLS on");
        assert_eq!(server.verification, ClientVerification::None);
        // Requiring client certificates with nothing to verify them against is an error.
        let error = tls(&["+tls", key_arg, cert_arg, "-rc"])
            .server_tls()
            .expect_err("nothing to trust");
        assert!(matches!(error, TlsError::NoTrustedCertificates { .. }));

        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn an_anonymous_server_is_refused() {
        let error = tls(&["+tla"]).server_tls().expect_err("no identity");
        assert!(matches!(error, TlsError::ServerNeedsIdentity));
    }

    #[test]
    fn a_verifying_anonymous_client_needs_a_trusted_certificate() {
        let error = tls(&["+tla"]).client_tls().expect_err("nothing to trust");
        assert!(matches!(error, TlsError::NoTrustedCertificates { .. }));
        let client = tls(&["+tla", "-ic"])
            .client_tls()
            .expect("-ic needs no trusted certificate")
            .expect("TLS on");
        assert_eq!(client.verification, ServerVerification::AcceptAny);
        assert!(client.identity.is_none());
    }
}
