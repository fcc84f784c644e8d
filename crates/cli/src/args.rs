//! DCMTK's tools take multi-letter options after a single dash (`-aet`, `-aec`, `-pdu`, `-to`)
//! or a plus (`+tls`, `+cf`); they are rewritten to their long forms before parsing.

use std::ffi::OsString;

/// DCMTK option spellings and the long option each stands for.
const DCMTK_ALIASES: &[(&str, &str)] = &[
    ("-aet", "--aetitle"),
    ("-aec", "--call"),
    ("-pdu", "--max-pdu"),
    ("-to", "--timeout"),
    ("-ta", "--acse-timeout"),
    ("-td", "--dimse-timeout"),
    ("-od", "--output-directory"),
    ("-aem", "--move"),
    ("+P", "--port"),
    ("-xcr", "--exec-on-reception"),
    ("-xi", "--propose-implicit"),
    ("-xe", "--propose-explicit"),
    ("-xb", "--propose-big-endian"),
    ("-xd", "--propose-deflated"),
    // TLS (PS3.15 Annex B)
    ("+tls", "--tls"),
    ("-tls", "--disable-tls"),
    ("+tla", "--anonymous-tls"),
    ("+cf", "--add-cert-file"),
    ("-ic", "--ignore-peer-cert"),
    ("-rc", "--require-peer-cert"),
    ("-vc", "--verify-peer-cert"),
];

/// Replaces DCMTK-style single-dash long options with their double-dash forms.
pub fn expand_dcmtk_options(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            match arg
                .to_str()
                .and_then(|s| DCMTK_ALIASES.iter().find(|(alias, _)| *alias == s))
            {
                Some((_, long)) => OsString::from(long),
                None => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcmtk_tls_aliases_become_long_options() {
        let args = [
            "dimsum", "echoscu", "+tls", "key.pem", "cert.pem", "+cf", "ca.pem", "-ic", "-rc",
            "-vc", "+tla", "-tls", "host",
        ];
        let expanded = expand_dcmtk_options(args.iter().map(OsString::from));
        let expected = [
            "dimsum",
            "echoscu",
            "--tls",
            "key.pem",
            "cert.pem",
            "--add-cert-file",
            "ca.pem",
            "--ignore-peer-cert",
            "--require-peer-cert",
            "--verify-peer-cert",
            "--anonymous-tls",
            "--disable-tls",
            "host",
        ];
        assert_eq!(
            expanded,
            expected.iter().map(OsString::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn dcmtk_aliases_become_long_options_and_the_rest_is_untouched() {
        let args = [
            "dimsum", "echoscu", "-aet", "ME", "-aec", "YOU", "-v", "host", "-pdu",
        ];
        let expanded = expand_dcmtk_options(args.iter().map(OsString::from));
        let expected = [
            "dimsum",
            "echoscu",
            "--aetitle",
            "ME",
            "--call",
            "YOU",
            "-v",
            "host",
            "--max-pdu",
        ];
        assert_eq!(
            expanded,
            expected.iter().map(OsString::from).collect::<Vec<_>>()
        );
    }
}
