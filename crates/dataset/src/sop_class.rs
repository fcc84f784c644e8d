//! Storage SOP classes (PS3.4 Annex B), taken from the SOP class dictionary of
//! dicom-dictionary-std (PS3.6 Annex A).
//!
//! dicom-dictionary-std 0.10 answers look-ups by UID but offers no way to list its entries, so
//! the list of Storage SOP classes is a generated file (`sop_class/storage_list.rs`), written by
//! `scripts/gen-storage-sop-classes` from the source of the pinned dicom-dictionary-std. The
//! tests below check it against the dictionary's own look-up.

mod storage_list;

use dicom_core::dictionary::{UidDictionary, UidDictionaryEntryRef};
use dicom_dictionary_std::sop_class;

use crate::transfer_syntax::compare_uids;
use crate::trim_uid;

use storage_list::STORAGE_SOP_CLASSES;

fn entry(uid: &str) -> Option<&'static UidDictionaryEntryRef<'static>> {
    sop_class::registry().by_uid(trim_uid(uid))
}

/// The human-readable name of a standard SOP class, e.g. "CT Image Storage".
pub fn name(uid: &str) -> Option<&'static str> {
    entry(uid).map(|entry| entry.name)
}

/// True if the UID is one of [`storage_sop_classes`].
pub fn is_storage_sop_class(uid: &str) -> bool {
    let uid = trim_uid(uid);
    STORAGE_SOP_CLASSES
        .binary_search_by(|listed| compare_uids(listed, uid))
        .is_ok()
}

/// Every Storage SOP class of the standard (PS3.4 Annex B.5, retired ones included), in UID
/// order, as the SOP class dictionary of dicom-dictionary-std lists them: the SOP classes named
/// "… Storage", "… Storage - For Presentation", "… Storage - For Processing", the retired
/// "… Storage - Trial" and "… Storage SOP Class" ones; not Storage Commitment (PS3.4 Annex J),
/// and not the Query/Retrieve information models whose names mention no storage.
pub fn storage_sop_classes() -> Vec<&'static str> {
    STORAGE_SOP_CLASSES.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule scripts/gen-storage-sop-classes applies to the dictionary's names.
    fn is_storage_name(name: &str) -> bool {
        name.contains("Storage") && !name.contains("Storage Commitment")
    }

    #[test]
    fn every_listed_class_is_a_storage_class_of_the_dictionary() {
        for uid in STORAGE_SOP_CLASSES {
            let entry = entry(uid).unwrap_or_else(|| panic!("{uid} unknown to the dictionary"));
            assert_eq!(entry.uid, *uid);
            assert!(is_storage_name(entry.name), "{uid}: {}", entry.name);
            assert!(is_storage_sop_class(uid), "{uid}");
        }
    }

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
            // Known to the dictionary, but not a storage class.
            assert!(name(uid).is_some(), "{uid}");
            assert!(!all.contains(&uid), "{uid} listed");
            assert!(!is_storage_sop_class(uid), "{uid}");
        }
    }

    #[test]
    fn listing_is_sorted_without_duplicates() {
        let all = storage_sop_classes();
        // is_storage_sop_class searches it by halves: it must be in this order.
        assert!(all.windows(2).all(|w| compare_uids(w[0], w[1]).is_lt()));
    }

    #[test]
    fn padding_is_ignored() {
        assert!(is_storage_sop_class("1.2.840.10008.5.1.4.1.1.2\0"));
        assert!(is_storage_sop_class("1.2.840.10008.5.1.4.1.1.2 "));
        assert!(!is_storage_sop_class(""));
        assert!(!is_storage_sop_class("1.2.3.4"));
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
