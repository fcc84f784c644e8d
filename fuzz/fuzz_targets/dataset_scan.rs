//! Fuzzes the data-set scanner (PS3.5 §7), the hardening layer in front of dicom-rs: the first
//! byte picks the transfer syntax, the rest is the data set. Nothing may panic; a data set the
//! scanner accepts goes on to dicom-rs (through `transcode`), which must not panic or allocate
//! without bound either. The walk over top-level elements (`elements::top_level_elements`,
//! which copies an archived record from the data set as received) gets every input, accepted
//! or not: each element it finds must lie inside the data set, in order. So does the short
//! decoder of flat explicit VR LE data sets (`elements::decode_flat`): what it decodes must be
//! what dicom-rs's reader decodes.

#![no_main]

use dimsum_dataset::dicom_core::Tag;
use dimsum_dataset::{ScanLimits, scan_bytes, transcode};
use libfuzzer_sys::fuzz_target;

const PIXEL_DATA_GROUP: Tag = Tag(0x7FE0, 0x0000);

const SYNTAXES: [&str; 5] = [
    "1.2.840.10008.1.2",      // Implicit VR Little Endian
    "1.2.840.10008.1.2.1",    // Explicit VR Little Endian
    "1.2.840.10008.1.2.2",    // Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99", // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50", // JPEG Baseline: explicit LE with encapsulated pixel data
];

fuzz_target!(|input: &[u8]| {
    let Some((selector, data)) = input.split_first() else {
        return;
    };
    let syntax = SYNTAXES[usize::from(*selector) % SYNTAXES.len()];
    let limits = ScanLimits {
        max_elements: 100_000,
        max_inflated_size: 16 * 1024 * 1024,
        ..ScanLimits::default()
    };
    if let Some(elements) = dimsum_dataset::elements::top_level_elements(data) {
        let mut end = 0;
        for (_, range) in elements {
            assert!(range.start == end && range.start < range.end && range.end <= data.len());
            end = range.end;
        }
        assert_eq!(end, data.len());
    }
    // The short path for flat explicit VR LE data sets decodes what it takes as dicom-rs
    // does (compared through Debug, where NaN equals NaN).
    if let Some(flat) = dimsum_dataset::elements::decode_flat(data, PIXEL_DATA_GROUP) {
        let read = dimsum_dataset::elements::collect_up_to(
            std::io::Cursor::new(data),
            SYNTAXES[1],
            PIXEL_DATA_GROUP,
        );
        assert_eq!(Ok(format!("{flat:?}")), read.map(|object| format!("{object:?}")));
    }
    if scan_bytes(data, syntax, &limits).is_ok() {
        // The scan accepted it: the general decoder may read it now.
        let _ = transcode(data, syntax, "1.2.840.10008.1.2.1", &limits);
    }
});
