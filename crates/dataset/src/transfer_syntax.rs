//! Transfer syntaxes (PS3.5 §10 and Annex A), as the dicom-rs transfer syntax registry knows
//! them.
//!
//! UIDs given to these functions may carry the NUL or space padding of a UI value.

use std::cmp::Ordering;
use std::sync::OnceLock;

use dicom_dictionary_std::uids::{
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntax};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use crate::trim_uid;

/// Explicit VR Big Endian (PS3.5 §A.3). Retired, so deprecated in dicom-dictionary-std, but still
/// one that a Storage SCP must read and convert.
#[allow(deprecated)]
const EXPLICIT_VR_BIG_ENDIAN: &str = dicom_dictionary_std::uids::EXPLICIT_VR_BIG_ENDIAN;

/// The uncompressed transfer syntaxes every implementation can convert between (PS3.5 §A.1,
/// §A.2, §A.3 and §A.5), in the order of preference used by [`known_transfer_syntaxes`].
pub const UNCOMPRESSED: [&str; 4] = [
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
];

/// How the elements of a data set are laid out on the wire (PS3.5 §7.1): whether each header
/// carries its VR, and the byte order of numbers. Deflated syntaxes (PS3.5 §A.5) inflate to
/// [`Encoding::ExplicitLittle`].
///
/// PS3.5 §7.1.1 – §7.1.3 (explicit VR), §7.1.4 – §7.1.5 (implicit VR), §7.3 (byte ordering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Implicit VR Little Endian (PS3.5 §A.1).
    ImplicitLittle,
    /// Explicit VR Little Endian, also the encoding of every encapsulated syntax (PS3.5 §A.2,
    /// §A.4).
    ExplicitLittle,
    /// Explicit VR Big Endian, retired (PS3.5 §A.3).
    ExplicitBig,
}

fn lookup(uid: &str) -> Option<&'static TransferSyntax> {
    TransferSyntaxRegistry.get(trim_uid(uid))
}

/// True if the registry knows this transfer syntax.
pub fn is_known(uid: &str) -> bool {
    lookup(uid).is_some()
}

/// True for the four uncompressed transfer syntaxes: Implicit VR Little Endian, Explicit VR
/// Little Endian, Explicit VR Big Endian and Deflated Explicit VR Little Endian.
pub fn is_uncompressed(uid: &str) -> bool {
    UNCOMPRESSED.contains(&trim_uid(uid))
}

/// True for transfer syntaxes whose whole data set is deflated (PS3.5 §A.5; the JPIP Referenced
/// Deflate syntaxes too).
pub fn is_deflated(uid: &str) -> bool {
    lookup(uid).is_some_and(|ts| matches!(ts.codec(), Codec::Dataset(_)))
}

/// True for transfer syntaxes with encapsulated pixel data (PS3.5 §A.4): the JPEG family, JPEG-LS,
/// JPEG 2000, HTJ2K, JPEG XL, RLE, MPEG-2/4 and HEVC, and the other syntaxes the registry lists
/// as encapsulated.
pub fn is_encapsulated(uid: &str) -> bool {
    lookup(uid).is_some_and(|ts| ts.is_encapsulated_pixel_data())
}

/// The element encoding of a known transfer syntax (for deflated ones, the encoding of the
/// inflated data set); `None` for an unknown one.
pub fn encoding(uid: &str) -> Option<Encoding> {
    let ts = lookup(uid)?;
    Some(if trim_uid(uid) == IMPLICIT_VR_LITTLE_ENDIAN {
        Encoding::ImplicitLittle
    } else if ts.endianness() == Endianness::Big {
        Encoding::ExplicitBig
    } else {
        Encoding::ExplicitLittle
    })
}

/// The human-readable name of a known transfer syntax, e.g. "JPEG Baseline (Process 1)".
pub fn name(uid: &str) -> Option<&'static str> {
    lookup(uid).map(|ts| ts.name())
}

/// A name for messages: the registry's name and the UID, or only the UID when unknown.
pub(crate) fn describe(uid: &str) -> String {
    let uid = trim_uid(uid);
    match name(uid) {
        Some(name) => format!("{name} ({uid})"),
        None => format!("unknown transfer syntax {uid}"),
    }
}

/// Every transfer syntax the registry knows: explicit VR LE, implicit VR LE, explicit VR BE,
/// deflated explicit VR LE, then the others (the encapsulated ones) in UID order.
pub fn known_transfer_syntaxes() -> Vec<&'static str> {
    static KNOWN: OnceLock<Vec<&'static str>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let mut others: Vec<&'static str> = TransferSyntaxRegistry
                .iter()
                .map(|ts| ts.uid())
                .filter(|uid| !UNCOMPRESSED.contains(uid))
                .collect();
            others.sort_by(|a, b| compare_uids(a, b));
            UNCOMPRESSED.iter().copied().chain(others).collect()
        })
        .clone()
}

/// Orders UIDs by their numeric components, so that "1.2.4.100" follows "1.2.4.91".
pub(crate) fn compare_uids(a: &str, b: &str) -> Ordering {
    fn key(uid: &str) -> impl Iterator<Item = (usize, &str)> {
        uid.split('.').map(|component| (component.len(), component))
    }
    key(a).cmp(key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

    #[test]
    fn uncompressed_syntaxes_are_known_and_not_encapsulated() {
        for uid in UNCOMPRESSED {
            assert!(is_known(uid), "{uid}");
            assert!(is_uncompressed(uid), "{uid}");
            assert!(!is_encapsulated(uid), "{uid}");
        }
        assert!(is_deflated(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN));
        assert!(!is_deflated(EXPLICIT_VR_LITTLE_ENDIAN));
    }

    #[test]
    fn padding_is_ignored() {
        assert!(is_uncompressed("1.2.840.10008.1.2\0"));
        assert!(is_known("1.2.840.10008.1.2.1 "));
        assert_eq!(
            name("1.2.840.10008.1.2\0"),
            Some("Implicit VR Little Endian")
        );
    }

    #[test]
    fn compressed_families_are_encapsulated() {
        for uid in [
            JPEG_BASELINE,
            "1.2.840.10008.1.2.4.70",  // JPEG lossless SV1
            "1.2.840.10008.1.2.4.80",  // JPEG-LS
            "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless
            "1.2.840.10008.1.2.4.201", // HTJ2K lossless
            "1.2.840.10008.1.2.5",     // RLE
            "1.2.840.10008.1.2.4.100", // MPEG-2
            "1.2.840.10008.1.2.4.107", // HEVC
        ] {
            assert!(is_encapsulated(uid), "{uid}");
            assert!(!is_uncompressed(uid), "{uid}");
            assert_eq!(encoding(uid), Some(Encoding::ExplicitLittle), "{uid}");
        }
        assert_eq!(name(JPEG_BASELINE), Some("JPEG Baseline (Process 1)"));
    }

    #[test]
    fn unknown_syntax() {
        assert!(!is_known("1.2.3.4"));
        assert!(!is_encapsulated("1.2.3.4"));
        assert_eq!(encoding("1.2.3.4"), None);
        assert_eq!(name("1.2.3.4"), None);
        assert_eq!(describe("1.2.3.4"), "unknown transfer syntax 1.2.3.4");
    }

    #[test]
    fn encodings() {
        assert_eq!(
            encoding(IMPLICIT_VR_LITTLE_ENDIAN),
            Some(Encoding::ImplicitLittle)
        );
        assert_eq!(
            encoding(EXPLICIT_VR_LITTLE_ENDIAN),
            Some(Encoding::ExplicitLittle)
        );
        assert_eq!(
            encoding(EXPLICIT_VR_BIG_ENDIAN),
            Some(Encoding::ExplicitBig)
        );
        assert_eq!(
            encoding(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
            Some(Encoding::ExplicitLittle)
        );
    }

    #[test]
    fn known_list_order() {
        let known = known_transfer_syntaxes();
        assert_eq!(&known[..4], &UNCOMPRESSED);
        assert!(known.contains(&JPEG_BASELINE));
        let rest = &known[4..];
        assert!(rest.windows(2).all(|w| compare_uids(w[0], w[1]).is_lt()));
        let jpeg2000 = rest.iter().position(|u| *u == "1.2.840.10008.1.2.4.91");
        let mpeg2 = rest.iter().position(|u| *u == "1.2.840.10008.1.2.4.100");
        assert!(jpeg2000 < mpeg2, "numeric, not lexical, order");
        assert!(known.iter().all(|uid| is_known(uid)));
    }
}
