//! Identifiers the services build themselves (PS3.4 Annex C.4), encoded by dicom-rs in the
//! transfer syntax of the presentation context they go on.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::convert::{self, ConvertError};
use crate::transfer_syntax;

/// The identifier of a final C-GET or C-MOVE response whose sub-operations failed: Failed SOP
/// Instance UID List (0008,0058) with the UIDs of the instances that were not stored (PS3.4
/// C.4.2.1.4, C.4.3.1.4), in `transfer_syntax_uid` (an uncompressed transfer syntax).
pub fn failed_instances(
    sop_instance_uids: &[String],
    transfer_syntax_uid: &str,
) -> Result<Vec<u8>, ConvertError> {
    if !transfer_syntax::is_uncompressed(transfer_syntax_uid) {
        return Err(ConvertError::Unsupported {
            from: transfer_syntax_uid.to_owned(),
            to: transfer_syntax_uid.to_owned(),
        });
    }
    let list = DataElement::new(
        tags::FAILED_SOP_INSTANCE_UID_LIST,
        VR::UI,
        PrimitiveValue::Strs(sop_instance_uids.iter().cloned().collect()),
    );
    convert::encode(
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
}
