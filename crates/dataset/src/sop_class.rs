//! Storage SOP classes (PS3.4 Annex B), taken from the SOP class dictionary of
//! dicom-dictionary-std (PS3.6 Annex A).

use std::sync::OnceLock;

use dicom_core::dictionary::{UidDictionary, UidDictionaryEntryRef};
use dicom_dictionary_std::sop_class;

use crate::transfer_syntax::compare_uids;
use crate::trim_uid;

fn entry(uid: &str) -> Option<&'static UidDictionaryEntryRef<'static>> {
    sop_class::registry().by_uid(trim_uid(uid))
}

/// The human-readable name of a standard SOP class, e.g. "CT Image Storage".
pub fn name(uid: &str) -> Option<&'static str> {
    entry(uid).map(|entry| entry.name)
}

/// True if `name` names a SOP class of the Storage Service Class (PS3.4 Annex B): "… Storage",
/// "… Storage - For Presentation", "… Storage - For Processing", the retired "… Storage - Trial"
/// and "… Storage SOP Class" ones; not Storage Commitment (PS3.4 Annex J), and not the
/// Query/Retrieve information models whose names mention no storage.
fn is_storage_name(name: &str) -> bool {
    name.contains("Storage") && !name.contains("Storage Commitment")
}

/// True if the UID is one of [`storage_sop_classes`].
pub fn is_storage_sop_class(uid: &str) -> bool {
    entry(uid).is_some_and(|entry| is_storage_name(entry.name))
}

/// Every Storage SOP class of the standard (PS3.4 Annex B.5, retired ones included), in UID
/// order, as the SOP class dictionary of dicom-dictionary-std lists them.
///
/// dicom-dictionary-std 0.10 answers look-ups by UID but offers no way to list its entries. Its
/// registry's `Debug` output does name every entry, so the candidate UIDs are gathered from it
/// once, and each is then confirmed through the dictionary's own look-up; the tests check that
/// this keeps finding the classes of the standard.
pub fn storage_sop_classes() -> Vec<&'static str> {
    static STORAGE: OnceLock<Vec<&'static str>> = OnceLock::new();
    STORAGE
        .get_or_init(|| {
            let listing = format!("{:?}", sop_class::registry());
            let mut uids: Vec<&'static str> = listing
                .split("uid: \"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .filter_map(entry)
                .filter(|entry| is_storage_name(entry.name))
                .map(|entry| entry.uid)
                .collect();
            uids.sort_by(|a, b| compare_uids(a, b));
            uids.dedup();
            uids
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
    const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
    const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
    const ENHANCED_CT: &str = "1.2.840.10008.5.1.4.1.1.2.1";
    const STORAGE_COMMITMENT_PUSH: &str = "1.2.840.10008.1.20.1";

    #[test]
    fn well_known_storage_classes_are_listed() {
        let all = storage_sop_classes();
        for uid in [
            CT_IMAGE_STORAGE,
            MR_IMAGE_STORAGE,
            SECONDARY_CAPTURE,
            ENHANCED_CT,
            "1.2.840.10008.5.1.4.1.1.1.1", // Digital X-Ray - For Presentation
            "1.2.840.10008.5.1.4.1.1.1.1.1", // Digital X-Ray - For Processing
            "1.2.840.10008.5.1.4.1.1.88.11", // Basic Text SR
            "1.2.840.10008.5.1.4.1.1.104.1", // Encapsulated PDF
            "1.2.840.10008.5.1.4.1.1.481.1", // RT Image
        ] {
            assert!(all.contains(&uid), "{uid} missing");
            assert!(is_storage_sop_class(uid), "{uid}");
        }
        // The standard has some 200 of them; a broken listing would find few or none.
        assert!(all.len() > 150, "only {} found", all.len());
    }

    #[test]
    fn non_storage_classes_are_not_listed() {
        let all = storage_sop_classes();
        for uid in [
            STORAGE_COMMITMENT_PUSH,
            "1.2.840.10008.1.20.2",        // Storage Commitment Pull (retired)
            "1.2.840.10008.1.1",           // Verification
            "1.2.840.10008.5.1.4.1.2.2.1", // Study Root Q/R FIND
            "1.2.840.10008.5.1.4.1.2.2.2", // Study Root Q/R MOVE
        ] {
            assert!(!all.contains(&uid), "{uid} listed");
            assert!(!is_storage_sop_class(uid), "{uid}");
        }
        assert!(all.iter().all(|uid| {
            let name = name(uid).unwrap_or_default();
            name.contains("Storage") && !name.contains("Commitment")
        }));
    }

    #[test]
    fn listing_is_sorted_without_duplicates() {
        let all = storage_sop_classes();
        assert!(all.windows(2).all(|w| compare_uids(w[0], w[1]).is_lt()));
    }

    #[test]
    fn names() {
        assert_eq!(name(CT_IMAGE_STORAGE), Some("CT Image Storage"));
        assert_eq!(
            name("1.2.840.10008.5.1.4.1.1.2\0"),
            Some("CT Image Storage")
        );
        assert_eq!(name("1.2.3.4"), None);
    }
}
