//! Options shared by several tools.

/// AE titles and user identity of a requestor.
#[derive(clap::Args, Debug)]
pub struct AssociationOptions {
    /// Calling AE title (ours).
    #[arg(long = "aetitle", value_name = "AE", default_value = "ECHOSCU")]
    pub aetitle: String,
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
    /// DIMSE timeout in seconds: waiting for each response (default: none).
    #[arg(long = "dimse-timeout", value_name = "SECONDS")]
    pub dimse_timeout: Option<u64>,
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
