//! UIDs that the Upper Layer and DIMSE need by name (PS3.6 Annex A).

/// The DICOM Application Context Name (PS3.7 Annex A.2.1).
pub const APPLICATION_CONTEXT_NAME: &str = "1.2.840.10008.3.1.1.1";
/// Verification SOP Class (PS3.4 Annex A).
pub const VERIFICATION_SOP_CLASS: &str = "1.2.840.10008.1.1";
/// Implicit VR Little Endian, the default transfer syntax (PS3.5 §10.1).
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian (PS3.5 §A.2).
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Deflated Explicit VR Little Endian (PS3.5 §A.5).
pub const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
/// Explicit VR Big Endian, retired (PS3.5 §A.3).
pub const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// The implementation class UID dimsum announces (PS3.7 §D.3.3.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1394.1";
/// The implementation version name dimsum announces (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("DIMSUM_", env!("CARGO_PKG_VERSION"));
