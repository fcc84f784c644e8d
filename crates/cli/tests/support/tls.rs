//! TLS test material for the interop tests: a small PKI written as PEM files with rcgen.
//!
//! - a CA (`ca.pem`), self-signed, that signs
//! - a server key and certificate (`server-key.pem`, `server.pem`; names `localhost` and
//!   `127.0.0.1`, extended key usage serverAuth) and
//! - a client key and certificate (`client-key.pem`, `client.pem`; clientAuth);
//! - an unrelated self-signed key and certificate (`wrong-key.pem`, `wrong.pem`; names
//!   `localhost` and `127.0.0.1`, serverAuth and clientAuth) that nobody trusts.
//!
//! Keys are ECDSA P-256 in unencrypted PKCS#8 PEM ("PRIVATE KEY"), certificates X.509 v3 PEM
//! signed with ECDSA-SHA256, valid from 2020 to 2049: DCMTK 3.6.7 with OpenSSL 3 reads them with
//! `+tls KEY CERT` and `+cf ca.pem`, pynetdicom through Python's `ssl`, rustls directly.
//! With OpenSSL 3 the handshakes are TLS 1.3.
#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// The PEM files written by [`generate_tls_files`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate that signed the server and client certificates (`+cf` this).
    pub ca_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The server's certificate (localhost, 127.0.0.1), signed by the CA.
    pub server_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
    /// The client's certificate, signed by the CA.
    pub client_cert: PathBuf,
    /// The private key of the untrusted self-signed certificate.
    pub wrong_key: PathBuf,
    /// A self-signed certificate (localhost, 127.0.0.1) that no test trusts.
    pub wrong_cert: PathBuf,
}

/// Writes a fresh CA, server, client and "wrong" key and certificate into `dir` (which must
/// exist) and returns their paths.
pub fn generate_tls_files(dir: &Path) -> TlsFiles {
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        server_key: dir.join("server-key.pem"),
        server_cert: dir.join("server.pem"),
        client_key: dir.join("client-key.pem"),
        client_cert: dir.join("client.pem"),
        wrong_key: dir.join("wrong-key.pem"),
        wrong_cert: dir.join("wrong.pem"),
    };

    let mut ca_params = params("dimsum test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = key();
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .expect("sign the CA certificate");
    write(&files.ca_cert, &ca_cert.pem());
    let ca = Issuer::new(ca_params, ca_key);

    let server_params = leaf(
        "dimsum test server",
        true,
        &[ExtendedKeyUsagePurpose::ServerAuth],
    );
    let server_key = key();
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .expect("sign the server certificate");
    write(&files.server_key, &server_key.serialize_pem());
    write(&files.server_cert, &server_cert.pem());

    let client_params = leaf(
        "dimsum test client",
        false,
        &[ExtendedKeyUsagePurpose::ClientAuth],
    );
    let client_key = key();
    let client_cert = client_params
        .signed_by(&client_key, &ca)
        .expect("sign the client certificate");
    write(&files.client_key, &client_key.serialize_pem());
    write(&files.client_cert, &client_cert.pem());

    let wrong_params = leaf(
        "dimsum untrusted",
        true,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
    let wrong_key = key();
    let wrong_cert = wrong_params
        .self_signed(&wrong_key)
        .expect("sign the wrong certificate");
    write(&files.wrong_key, &wrong_key.serialize_pem());
    write(&files.wrong_cert, &wrong_cert.pem());

    files
}

fn key() -> KeyPair {
    // ECDSA P-256 with SHA-256: what rcgen generates with ring, and accepted by every peer.
    KeyPair::generate().expect("generate a key")
}

fn params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "dimsum tests");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2049, 12, 31);
    params
}

fn leaf(
    common_name: &str,
    local_names: bool,
    purposes: &[ExtendedKeyUsagePurpose],
) -> CertificateParams {
    let mut params = params(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    if local_names {
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().expect("a DNS name")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = purposes.to_vec();
    params
}

fn write(path: &Path, pem: &str) {
    fs::write(path, pem).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}
