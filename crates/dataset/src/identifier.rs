//! Identifiers (PS3.4 Annex C.4, K.4): the data set of a C-FIND, C-GET or C-MOVE request or
//! response. Those that come from the network are decoded by dicom-rs only once the hardened
//! scanner has accepted them; those the services build are encoded by dicom-rs in the transfer
//! syntax of the presentation context they go on (an uncompressed one, as every identifier's
//! context is).

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::charset;
use crate::convert::{self, ConvertError};
use crate::scan::ScanLimits;
use crate::transfer_syntax;

/// Decodes an identifier received in `transfer_syntax_uid` (one of the uncompressed syntaxes,
/// deflated included), after [`crate::scan::scan_bytes`] has accepted it with `limits`. Text in
/// ISO 2022 code extensions (PS3.5 §6.1.2.5) is decoded to Unicode and the identifier then
/// declares `ISO_IR 192` ([`charset::to_unicode`]).
pub fn decode(
    data: &[u8],
    transfer_syntax_uid: &str,
    limits: &ScanLimits,
) -> Result<InMemDicomObject, ConvertError> {
    let mut identifier = convert::decode_checked(data, transfer_syntax_uid, limits, true)?
        .ok_or_else(|| ConvertError::Unsupported {
            from: transfer_syntax_uid.to_owned(),
            to: transfer_syntax_uid.to_owned(),
        })?;
    charset::to_unicode_or_keep(&mut identifier);
    Ok(identifier)
}

/// Encodes an identifier in `transfer_syntax_uid` (one of the uncompressed syntaxes).
pub fn encode(
    identifier: &InMemDicomObject,
    transfer_syntax_uid: &str,
) -> Result<Vec<u8>, ConvertError> {
    if !transfer_syntax::is_uncompressed(transfer_syntax_uid) {
        return Err(ConvertError::Unsupported {
            from: transfer_syntax_uid.to_owned(),
            to: transfer_syntax_uid.to_owned(),
        });
    }
    convert::encode(identifier, transfer_syntax_uid)
}

/// The identifier of a final C-GET or C-MOVE response whose sub-operations failed: Failed SOP
/// Instance UID List (0008,0058) with the UIDs of the instances that were not stored (PS3.4
/// C.4.2.1.4, C.4.3.1.4), in `transfer_syntax_uid` (an uncompressed transfer syntax).
pub fn failed_instances(
    sop_instance_uids: &[String],
    transfer_syntax_uid: &str,
) -> Result<Vec<u8>, ConvertError> {
    let list = DataElement::new(
        tags::FAILED_SOP_INSTANCE_UID_LIST,
        VR::UI,
        PrimitiveValue::Strs(sop_instance_uids.iter().cloned().collect()),
    );
    encode(
        &InMemDicomObject::from_element_iter([list]),
        transfer_syntax_uid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{ScanLimits, scan_bytes};

    #[test]
    fn the_failed_list_is_one_ui_element_in_each_uncompressed_syntax() {
        let uids = vec!["1.2.3.4".to_owned(), "1.2.3.55".to_owned()];
        let explicit = failed_instances(&uids, "1.2.840.10008.1.2.1").expect("encoded");
        // (0008,0058) UI, length 16: "1.2.3.4\\1.2.3.55" padded to even length.
        assert_eq!(&explicit[..8], &[0x08, 0x00, 0x58, 0x00, b'U', b'I', 16, 0]);
        assert_eq!(&explicit[8..], b"1.2.3.4\\1.2.3.55");
        let implicit = failed_instances(&uids, "1.2.840.10008.1.2").expect("encoded");
        assert_eq!(&implicit[..8], &[0x08, 0x00, 0x58, 0x00, 16, 0, 0, 0]);
        for ts in ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"] {
            let encoded = failed_instances(&uids, ts).expect("encoded");
            scan_bytes(&encoded, ts, &ScanLimits::default()).expect("a valid data set");
        }
        assert!(failed_instances(&uids, "1.2.840.10008.1.2.4.50").is_err());
    }

    #[test]
    fn an_identifier_goes_out_and_comes_back_in_every_uncompressed_syntax() {
        let query = InMemDicomObject::from_element_iter([
            DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "DOE*"),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        ]);
        for ts in [
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.1.99",
        ] {
            let bytes = encode(&query, ts).expect("encoded");
            let back = decode(&bytes, ts, &ScanLimits::default()).expect("decoded");
            let name = back.element(tags::PATIENT_NAME).expect("name");
            assert_eq!(name.to_str().expect("text"), "DOE*");
            assert!(back.element(tags::STUDY_INSTANCE_UID).is_ok());
        }
    }

    #[test]
    fn a_lying_identifier_is_refused_before_dicom_rs_sees_it() {
        // (0010,0010) PN claiming 0xFFF0 bytes where 4 remain.
        let lying = [
            0x10, 0x00, 0x10, 0x00, b'P', b'N', 0xF0, 0xFF, b'D', b'O', b'E', b' ',
        ];
        let error =
            decode(&lying, "1.2.840.10008.1.2.1", &ScanLimits::default()).expect_err("refused");
        assert!(matches!(error, ConvertError::Scan(_)), "{error}");
        assert!(decode(b"", "1.2.840.10008.1.2.4.50", &ScanLimits::default()).is_err());
    }
}
