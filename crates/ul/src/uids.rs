//! UIDs that the Upper Layer and DIMSE need by name (PS3.6 Annex A).
//!
//! The standard ones are aliases of the constants of `dicom_dictionary_std::uids`, so that their
//! values come from the dictionary dicom-rs generates from PS3.6; only dimsum's own
//! implementation class UID and version name are defined here.

use dicom_dictionary_std::uids;

/// The DICOM Application Context Name (PS3.7 Annex A.2.1).
pub const APPLICATION_CONTEXT_NAME: &str = uids::DICOM_APPLICATION_CONTEXT;
/// Verification SOP Class (PS3.4 Annex A).
pub const VERIFICATION_SOP_CLASS: &str = uids::VERIFICATION;
/// Implicit VR Little Endian, the default transfer syntax (PS3.5 §10.1).
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = uids::IMPLICIT_VR_LITTLE_ENDIAN;
/// Explicit VR Little Endian (PS3.5 §A.2).
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;
/// Deflated Explicit VR Little Endian (PS3.5 §A.5).
pub const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
/// Explicit VR Big Endian, retired (PS3.5 §A.3). dicom-dictionary-std marks retired UIDs
/// deprecated; this alias is not, as a Storage SCP still has to accept it.
#[allow(deprecated)]
pub const EXPLICIT_VR_BIG_ENDIAN: &str = uids::EXPLICIT_VR_BIG_ENDIAN;

/// The implementation class UID dimsum announces (PS3.7 §D.3.3.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1394.1";
/// The implementation version name dimsum announces (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("DIMSUM_", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    /// The aliases against the values of PS3.6 Annex A, so that a wrong alias is caught.
    #[test]
    fn aliases_have_the_standard_values() {
        assert_eq!(APPLICATION_CONTEXT_NAME, "1.2.840.10008.3.1.1.1");
        assert_eq!(VERIFICATION_SOP_CLASS, "1.2.840.10008.1.1");
        assert_eq!(IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2");
        assert_eq!(EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1");
        assert_eq!(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1.99");
        assert_eq!(EXPLICIT_VR_BIG_ENDIAN, "1.2.840.10008.1.2.2");
    }

    #[test]
    fn own_identity_is_well_formed() {
        assert!(crate::uid::is_valid(IMPLEMENTATION_CLASS_UID));
        assert!((1..=16).contains(&IMPLEMENTATION_VERSION_NAME.len()));
    }
}
