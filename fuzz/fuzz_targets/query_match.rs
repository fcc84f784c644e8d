//! Fuzzes what a C-FIND SCP does with a peer's identifier (PS3.4 C.4.1.1.3): decoding it behind
//! the hardened scanner, then matching it (PS3.4 C.2.2.2: wildcards, ranges, UID lists, sequence
//! matching) against a fixed candidate and building the response identifier, and writing the
//! result as DICOM JSON (PS3.18 F.2) and text. The first byte picks the transfer syntax. The
//! same bytes are also decoded as one text value in ISO 2022 code extensions (PS3.5 §6.1.2.5),
//! the set and the VR picked by the first byte too, as identifier decoding does for text in
//! such a character set. Nothing may panic or allocate without bound.

#![no_main]

use dimsum_dataset::charset::CodeExtensions;
use dimsum_dataset::dicom_core::{DataElement, PrimitiveValue, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::{ScanLimits, dump, identifier, json};
use dimsum_pacs::matching;
use libfuzzer_sys::fuzz_target;

const SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2",   // Implicit VR Little Endian
    "1.2.840.10008.1.2.1", // Explicit VR Little Endian
    "1.2.840.10008.1.2.2", // Explicit VR Big Endian
];

fn candidate() -> InMemDicomObject {
    let item = InMemDicomObject::from_element_iter([
        DataElement::new(tags::MODALITY, VR::CS, "CT"),
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
            VR::DA,
            "20261207",
        ),
    ]);
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^Jane^^Dr"),
        DataElement::new(tags::PATIENT_ID, VR::LO, "PID-1"),
        DataElement::new(tags::STUDY_DATE, VR::DA, "20261207"),
        DataElement::new(tags::STUDY_TIME, VR::TM, "101530.25"),
        DataElement::new(tags::ACQUISITION_DATE_TIME, VR::DT, "20261207101530+0100"),
        DataElement::new(
            tags::MODALITIES_IN_STUDY,
            VR::CS,
            PrimitiveValue::Strs(["CT".to_owned(), "OT".to_owned()].into_iter().collect()),
        ),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4"),
        DataElement::new(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, "12"),
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::SQ,
            dimsum_dataset::dicom_core::value::DataSetSequence::from(vec![item]),
        ),
    ])
}

fuzz_target!(|input: &[u8]| {
    let Some((selector, data)) = input.split_first() else {
        return;
    };
    let syntax = SYNTAXES[usize::from(*selector) % SYNTAXES.len()];
    let code_extensions: [&[&str]; 4] = [
        &["", "ISO 2022 IR 87", "ISO 2022 IR 159"],
        &["ISO 2022 IR 13", "ISO 2022 IR 87"],
        &["", "ISO 2022 IR 149"],
        &["ISO 2022 IR 100", "ISO 2022 IR 58"],
    ];
    if let Ok(sets) = CodeExtensions::from_terms(code_extensions[usize::from(*selector >> 2) % 4]) {
        let vr = [VR::PN, VR::LO, VR::LT][usize::from(*selector >> 4) % 3];
        let _ = sets.decode(data, vr);
    }
    let limits = ScanLimits {
        max_elements: 10_000,
        ..ScanLimits::default()
    };
    let Ok(keys) = identifier::decode(data, syntax, &limits) else {
        return;
    };
    let candidate = candidate();
    let _ = matching::matches(&keys, &candidate);
    let response = matching::response_identifier(&keys, &candidate);
    let _ = identifier::encode(&response, syntax);
    let _ = json::to_json(&keys);
    let _ = dump::dump(&keys);
});
