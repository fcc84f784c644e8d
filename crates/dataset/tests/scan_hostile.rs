//! scan on hostile and broken data: every refusal names what and where, nothing panics.

mod common;

use std::io::Write;

use common::build::*;
use common::*;
use dicom_core::Tag;
use dimsum_dataset::{ScanError, ScanLimits, scan_bytes, scan_deflated};
use flate2::Compression;
use flate2::write::DeflateEncoder;

fn limits() -> ScanLimits {
    ScanLimits::default()
}

/// The offset of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn huge_length_on_a_top_level_element() {
    let (_, _, mut data) = data_set("ct_implicit_le.dcm");
    // Patient Name (0010,0010): tag, then its 4-byte length.
    let at = find(&data, &[0x10, 0x00, 0x10, 0x00]);
    data[at + 4..at + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    let remaining = (data.len() - at - 8) as u64;
    assert!(
        matches!(error, ScanError::LengthPastEnd { tag: Tag(0x0010, 0x0010), length: 0xFFFF_FFF0, offset, remaining: r } if offset == at as u64 && r == remaining),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "element (0010,0010) at offset {at} claims 4294967280 bytes, only {remaining} remain"
        )
    );
}

#[test]
fn huge_length_on_pixel_data_and_items() {
    // Explicit LE pixel data (OW, 4-byte length after 2 reserved bytes).
    let (_, _, mut data) = data_set("ct_explicit_le.dcm");
    let at = find(&data, &[0xE0, 0x7F, 0x10, 0x00, b'O', b'W']);
    data[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::LengthPastEnd {
                tag: Tag(0x7FE0, 0x0010),
                ..
            }
        ),
        "{error}"
    );

    // Explicit BE: the defined-length item of the nested code sequence.
    let (_, _, mut data) = data_set("ct_explicit_be.dcm");
    let sequence = find(&data, &[0x00, 0x40, 0xA1, 0x70, b'S', b'Q']);
    let item = sequence + 12;
    assert_eq!(&data[item..item + 4], &[0xFF, 0xFE, 0xE0, 0x00]);
    data[item + 4..item + 8].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    let error = scan_bytes(&data, EXPLICIT_BE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::LengthPastEnd {
                tag: Tag(0xFFFE, 0xE000),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn every_length_field_set_to_huge_is_refused() {
    // Write 0xFFFFFFF0 at every even offset of the implicit fixture: wherever that lands on a
    // length field, the scan must refuse; it must never panic.
    let (_, _, data) = data_set("ct_implicit_le.dcm");
    let mut refused = 0;
    for at in (0..data.len() - 4).step_by(2) {
        let mut mutated = data.clone();
        mutated[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        if scan_bytes(&mutated, IMPLICIT_LE, &limits()).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 40, "only {refused} refusals");
}

#[test]
fn length_past_the_end_of_its_item() {
    // A defined-length item of 16 bytes holding an element that claims 20: the data set has
    // room for it, the item does not.
    let mut data = header_le(0x0008, 0x1140, 8 + 16);
    data.extend(item_start(16));
    data.extend(header_le(0x0008, 0x1150, 20));
    data.extend([b'1'; 8]);
    data.extend(implicit_le(0x0010, 0x0020, &[b'x'; 40]));
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::LengthPastEnd {
                tag: Tag(0x0008, 0x1150),
                length: 20,
                remaining: 8,
                offset: 16
            }
        ),
        "{error}"
    );
}

#[test]
fn item_longer_than_its_sequence() {
    let mut data = header_explicit_le(0x0008, 0x1140, b"SQ", 8 + 4, true);
    data.extend(item_start(40));
    data.extend([0u8; 4]);
    data.extend([0u8; 60]);
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::LengthPastEnd {
                tag: Tag(0xFFFE, 0xE000),
                length: 40,
                remaining: 4,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn too_deep_nesting() {
    let limits = limits();
    let data = nested_sequences(limits.max_depth + 1);
    let error = scan_bytes(&data, EXPLICIT_LE, &limits).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::TooDeep {
                tag: Tag(0x0008, 0x1140),
                max_depth: 16,
                ..
            }
        ),
        "{error}"
    );
    // Far deeper than any stack would take if the scanner recursed.
    let data = nested_sequences(200_000);
    let error = scan_bytes(&data, EXPLICIT_LE, &limits).unwrap_err();
    assert!(matches!(error, ScanError::TooDeep { .. }), "{error}");
    let relaxed = ScanLimits {
        max_depth: 200_000,
        ..limits
    };
    assert!(scan_bytes(&data, EXPLICIT_LE, &relaxed).is_ok());
}

#[test]
fn undefined_length_sequence_that_never_ends() {
    let mut data = header_explicit_le(0x0008, 0x1140, b"SQ", UNDEFINED, true);
    data.extend(item_start(UNDEFINED));
    data.extend(explicit_le(0x0010, 0x0020, b"LO", b"ID"));
    // Neither delimiter follows.
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(matches!(error, ScanError::Unterminated { .. }), "{error}");
    assert!(error.to_string().contains("never ends"), "{error}");

    // Inside a defined-length item, the undefined-length sequence must end before the item.
    let mut inner = header_le(0x0008, 0x1140, UNDEFINED);
    inner.extend(item_start(0));
    let mut data = header_le(0x0040, 0xA170, 8 + inner.len() as u32);
    data.extend(item_start(inner.len() as u32));
    data.extend(&inner);
    data.extend(sequence_end());
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::Unterminated {
                tag: Tag(0x0008, 0x1140),
                offset: 16,
                end: 32,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn encapsulated_pixel_data_that_never_ends() {
    let mut data = header_explicit_le(0x7FE0, 0x0010, b"OB", UNDEFINED, true);
    data.extend(item_start(0));
    data.extend(item_start(4));
    data.extend([1, 2, 3, 4]);
    let error = scan_bytes(&data, JPEG_BASELINE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::Unterminated {
                tag: Tag(0x7FE0, 0x0010),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn truncated_data_is_always_refused() {
    // The caller announces the full length, but the data stops short: at every cut point the
    // scan must fail.
    for (name, ts) in CT_FIXTURES {
        if ts == DEFLATED {
            continue;
        }
        let (_, _, data) = data_set(name);
        for cut in 0..data.len() {
            let reader = std::io::Cursor::new(&data[..cut]);
            let result = dimsum_dataset::scan(reader, data.len() as u64, ts, &limits());
            assert!(result.is_err(), "{name} cut at {cut} accepted");
        }
    }
}

#[test]
fn truncated_deflated_stream_is_refused() {
    let (_, _, data) = data_set("ct_deflated.dcm");
    for cut in (0..data.len() - 1).step_by(7) {
        assert!(
            scan_deflated(&data[..cut], &limits()).is_err() || cut == 0,
            "cut at {cut} accepted"
        );
    }
}

#[test]
fn unknown_vr_code() {
    let mut data = explicit_le(0x0008, 0x0060, b"CS", b"CT");
    data.extend(explicit_le(0x0010, 0x0020, b"ZZ", b"ID"));
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::UnknownVr {
                tag: Tag(0x0010, 0x0020),
                offset: 10,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("\"ZZ\""), "{error}");
}

#[test]
fn undefined_length_where_not_allowed() {
    // Explicit: OB outside pixel data.
    let data = header_explicit_le(0x0009, 0x1010, b"OB", UNDEFINED, true);
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(error, ScanError::UndefinedLengthNotAllowed { .. }),
        "{error}"
    );
    // Implicit: a standard element that is not a sequence.
    let data = header_le(0x0010, 0x0010, UNDEFINED);
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::UndefinedLengthNotAllowed {
                tag: Tag(0x0010, 0x0010),
                ..
            }
        ),
        "{error}"
    );
    // A pixel data fragment.
    let mut data = header_explicit_le(0x7FE0, 0x0010, b"OB", UNDEFINED, true);
    data.extend(item_start(UNDEFINED));
    let error = scan_bytes(&data, JPEG_BASELINE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::UndefinedLengthNotAllowed {
                tag: Tag(0xFFFE, 0xE000),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn misplaced_item_and_delimiter_tags() {
    for stray in [item_start(0), item_end(), sequence_end()] {
        let error = scan_bytes(&stray, EXPLICIT_LE, &limits()).unwrap_err();
        assert!(
            matches!(error, ScanError::UnexpectedTag { offset: 0, .. }),
            "{error}"
        );
    }
    // A data element directly inside a sequence, where an item belongs.
    let mut data = header_le(0x0008, 0x1140, UNDEFINED);
    data.extend(implicit_le(0x0010, 0x0020, b"ID"));
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::UnexpectedTag {
                tag: Tag(0x0010, 0x0020),
                offset: 8,
                ..
            }
        ),
        "{error}"
    );
    // A delimiter with a length.
    let mut data = header_le(0x0008, 0x1140, UNDEFINED);
    data.extend(header_le(0xFFFE, 0xE0DD, 4));
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(error, ScanError::DelimiterLength { length: 4, .. }),
        "{error}"
    );
}

#[test]
fn too_many_elements() {
    let mut data = Vec::new();
    for _ in 0..100 {
        data.extend(implicit_le(0x0009, 0x1010, b"ab"));
    }
    let tight = ScanLimits {
        max_elements: 99,
        ..limits()
    };
    let error = scan_bytes(&data, IMPLICIT_LE, &tight).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::TooManyElements {
                max: 99,
                offset: 990
            }
        ),
        "{error}"
    );
    let enough = ScanLimits {
        max_elements: 100,
        ..limits()
    };
    assert_eq!(
        scan_bytes(&data, IMPLICIT_LE, &enough).unwrap().elements,
        100
    );
}

#[test]
fn summary_value_too_long() {
    let data = implicit_le(0x0010, 0x0020, &[b'x'; 2000]);
    let tight = ScanLimits {
        max_value_read: 1000,
        ..limits()
    };
    let error = scan_bytes(&data, IMPLICIT_LE, &tight).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::ValueTooLong {
                length: 2000,
                max: 1000,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn header_cut_by_its_container() {
    // 6 bytes left in the data set: not enough for a header.
    let mut data = implicit_le(0x0008, 0x0060, b"CT");
    data.extend([0x10, 0x00, 0x20, 0x00, 0x00, 0x00]);
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::HeaderPastEnd {
                offset: 10,
                needed: 8,
                remaining: 6,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn lengths_that_are_not_whole_values() {
    // Found by the fuzzer: in implicit VR, (0000,0000) is UL by the dictionary; dicom-rs reads
    // 6 values of a 25-byte length and then reads the rest of the stream one byte off.
    let mut data = implicit_le(0x2801, 0x0000, &[]);
    data.extend(implicit_le(0x0000, 0x0000, &[0; 25]));
    let error = scan_bytes(&data, IMPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::LengthNotMultiple {
                tag: Tag(0x0000, 0x0000),
                offset: 8,
                vr: "UL",
                length: 25,
                unit: 4
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "element (0000,0000) at offset 8 has VR UL and length 25, not a whole number of 4-byte values"
    );
    // Explicit VR: FD of 12 bytes, OW of 3.
    let data = explicit_le(0x0018, 0x9087, b"FD", &[0; 12]);
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(error, ScanError::LengthNotMultiple { unit: 8, .. }),
        "{error}"
    );
    let data = explicit_le(0x7FE0, 0x0010, b"OW", &[0; 3]);
    let error = scan_bytes(&data, EXPLICIT_LE, &limits()).unwrap_err();
    assert!(
        matches!(error, ScanError::LengthNotMultiple { unit: 2, .. }),
        "{error}"
    );
    // The Basic Offset Table holds 32-bit offsets.
    let mut data = header_explicit_le(0x7FE0, 0x0010, b"OB", UNDEFINED, true);
    data.extend(item_start(6));
    data.extend([0; 6]);
    data.extend(sequence_end());
    let error = scan_bytes(&data, JPEG_BASELINE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            ScanError::LengthNotMultiple {
                tag: Tag(0xFFFE, 0xE000),
                offset: 12,
                ..
            }
        ),
        "{error}"
    );
    // Later fragments may have any even length.
    let mut data = header_explicit_le(0x7FE0, 0x0010, b"OB", UNDEFINED, true);
    data.extend(item_start(4));
    data.extend([0; 4]);
    data.extend(item_start(6));
    data.extend([0; 6]);
    data.extend(sequence_end());
    assert!(scan_bytes(&data, JPEG_BASELINE, &limits()).is_ok());
}

#[test]
fn unknown_transfer_syntax() {
    let error = scan_bytes(&[], "1.2.3.4", &limits()).unwrap_err();
    assert!(
        matches!(error, ScanError::UnknownTransferSyntax(_)),
        "{error}"
    );
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn deflate_bomb_is_capped() {
    // 64 MiB of zeros inside an OB value compress to a few tens of KB.
    let mut data = header_explicit_le(0x0009, 0x1010, b"OB", 64 << 20, true);
    data.resize(data.len() + (64 << 20), 0);
    let compressed = deflate(&data);
    assert!(compressed.len() < 200 * 1024);
    let capped = ScanLimits {
        max_inflated_size: 1 << 20,
        ..limits()
    };
    let error = scan_deflated(compressed.as_slice(), &capped).unwrap_err();
    assert!(
        matches!(error, ScanError::InflatedTooLarge { max: 1048576 }),
        "{error}"
    );
    // Within the cap it is accepted.
    assert_eq!(
        scan_deflated(compressed.as_slice(), &limits())
            .unwrap()
            .elements,
        1
    );
}

#[test]
fn deflated_garbage_is_refused() {
    let error = scan_deflated(&[0xFFu8; 64][..], &limits()).unwrap_err();
    assert!(matches!(error, ScanError::Io { .. }), "{error}");
}

/// xorshift64*: a small deterministic generator, so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.len() < 8 {
            break;
        }
        let at = rng.below(out.len() - 4);
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => {
                let value: u32 =
                    [0xFFFF_FFFF, 0xFFFF_FFF0, 0, 1, 0x7FFF_FFFF, 0x8000][rng.below(6)];
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            3 => out[at..at + 4].copy_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]),
            4 => out.truncate(at),
            _ => {
                let end = (at + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
        }
    }
    out
}

#[test]
fn mutated_fixtures_never_panic_the_scanner_nor_dicom_rs_after_it() {
    let mut inputs: Vec<(Vec<u8>, &str)> = CT_FIXTURES
        .iter()
        .map(|(name, ts)| (data_set(name).2, *ts))
        .collect();
    let jpeg = fixture("jpeg_baseline.dcm");
    let (_, offset) = dimsum_dataset::read_meta(&mut jpeg.as_slice()).unwrap();
    inputs.push((jpeg[offset as usize..].to_vec(), JPEG_BASELINE));

    let mut rng = Rng(0x5EED_D1C0_DA7A_5E75);
    let mut accepted = 0;
    let mut refused = 0;
    for (data, ts) in &inputs {
        for _ in 0..600 {
            let mutated = mutate(&mut rng, data);
            match scan_bytes(&mutated, ts, &limits()) {
                Ok(_) => {
                    accepted += 1;
                    if *ts != DEFLATED {
                        // What the scan accepts, dicom-rs may read without unbounded
                        // allocation or a panic; it may still refuse it.
                        let registry = dicom_transfer_syntax_registry::TransferSyntaxRegistry;
                        let syntax =
                            dicom_encoding::TransferSyntaxIndex::get(&registry, ts).unwrap();
                        let _ = dicom_object::InMemDicomObject::read_dataset_with_ts(
                            mutated.as_slice(),
                            syntax,
                        );
                    }
                }
                Err(_) => refused += 1,
            }
        }
    }
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    assert!(
        accepted > 100 && refused > 100,
        "accepted {accepted}, refused {refused}"
    );
}

/// Encapsulated pixel data written with VR OW instead of OB is read as fragments, as DCMTK and
/// pynetdicom read it; its fragments are still checked.
#[test]
fn encapsulated_pixel_data_with_vr_ow_is_scanned_as_fragments() {
    let jpeg_baseline = "1.2.840.10008.1.2.4.50";
    let mut data = vec![
        0x08, 0x00, 0x18, 0x00, b'U', b'I', 4, 0, b'1', b'.', b'2', 0,
    ];
    data.extend_from_slice(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
    data.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    let summary = dimsum_dataset::scan::scan_bytes(&data, jpeg_baseline, &Default::default())
        .expect("accepted");
    assert!(summary.has_pixel_data);
    assert_eq!(summary.sop_instance_uid.as_deref(), Some("1.2"));
    // A fragment that claims more than remains is still refused.
    let mut lying = data.clone();
    let at = lying.len() - 16;
    lying[at..at + 4].copy_from_slice(&0xFFF0u32.to_le_bytes());
    assert!(dimsum_dataset::scan::scan_bytes(&lying, jpeg_baseline, &Default::default()).is_err());
}
