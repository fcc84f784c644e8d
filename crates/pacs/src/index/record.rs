//! How the index keeps attributes: each instance's complete attribute set without bulk data,
//! and each patient, study and series record (the attributes of its level, PS3.4 C.6.1.1), as
//! compact blobs — the data set encoded in Explicit VR Little Endian (PS3.5 §A.2) and compressed
//! — so that any return key, and later DICOMweb metadata, is answered without opening a file.
//! Blobs are read back through the hardened scanner like any data set.
//!
//! A blob is [`LZ4_RECORD`], the length of the encoded data set (u32, little endian), then one
//! LZ4 block: a few microseconds each way for a record of a few KiB. Indexes written before
//! hold raw deflate streams (RFC 1951), which can never begin with that byte (its block type
//! bits say "reserved"), so both are read.

use std::io::Read;

use flate2::read::DeflateDecoder;

use dimsum_dataset::dicom_core::header::{HasLength, Header};
use dimsum_dataset::dicom_core::value::{DataSetSequence, Value};
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::{InMemDicomObject, mem::InMemElement};
use dimsum_dataset::identifier;
use dimsum_dataset::scan::ScanLimits;

use crate::hierarchy::split_by_level;

/// The transfer syntax of stored attribute sets: Explicit VR Little Endian.
pub const RECORD_TRANSFER_SYNTAX: &str = "1.2.840.10008.1.2.1";

/// Binary values (OB, OD, OF, OL, OV, OW, UN) longer than this many bytes are bulk data, at
/// any depth: not kept in the index (DICOMweb sends them as BulkDataURI; C-FIND never matches
/// on them). Everything before the Pixel Data group that is not bulk data is kept.
pub const BULK_DATA_THRESHOLD: u32 = 1024;

/// The most bytes a stored attribute set inflates to; a blob that claims more is corrupt.
pub const MAX_RECORD_SIZE: u64 = 64 * 1024 * 1024;

/// Whether an element is bulk data ([`BULK_DATA_THRESHOLD`]); encapsulated values always are.
pub fn is_bulk(element: &InMemElement) -> bool {
    match element.value() {
        Value::PixelSequence(_) => true,
        Value::Sequence(_) => false,
        Value::Primitive(_) => {
            matches!(
                element.vr(),
                VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
            ) && element
                .header()
                .length()
                .get()
                .is_none_or(|length| length > BULK_DATA_THRESHOLD)
        }
    }
}

/// The data set without its bulk data, sequence items included.
pub fn without_bulk_data(object: InMemDicomObject) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(object.into_iter().filter(|e| !is_bulk(e)).map(|element| {
        if element.vr() != VR::SQ {
            return element;
        }
        let tag = element.tag();
        match element.into_value() {
            Value::Sequence(sequence) => {
                let items: Vec<InMemDicomObject> = sequence
                    .into_items()
                    .into_iter()
                    .map(without_bulk_data)
                    .collect();
                DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
            }
            other => DataElement::new(tag, VR::SQ, other),
        }
    }))
}

/// The records of one instance: its patient, study and series (the attributes of each level)
/// and the instance's complete attribute set, all without bulk data.
#[derive(Debug, Clone)]
pub struct LevelRecords {
    pub patient: InMemDicomObject,
    pub study: InMemDicomObject,
    pub series: InMemDicomObject,
    /// Every attribute of the instance (all levels), for DICOMweb metadata and IMAGE level
    /// return keys.
    pub instance: InMemDicomObject,
}

impl LevelRecords {
    pub fn of(attributes: InMemDicomObject) -> LevelRecords {
        let instance = without_bulk_data(attributes);
        let [patient, study, series, _] = split_by_level(instance.clone(), |_| true);
        LevelRecords {
            patient,
            study,
            series,
            instance,
        }
    }
}

/// Encodes a record as a blob. A record whose text its own character set cannot encode again
/// is stored in UTF-8 (ISO_IR 192) instead.
pub fn encode(record: &InMemDicomObject) -> Result<Vec<u8>, String> {
    let bytes = match identifier::encode(record, RECORD_TRANSFER_SYNTAX) {
        Ok(bytes) => bytes,
        Err(first) if record.get(tags::SPECIFIC_CHARACTER_SET).is_some() => {
            let mut utf8 = record.clone();
            utf8.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                "ISO_IR 192",
            ));
            identifier::encode(&utf8, RECORD_TRANSFER_SYNTAX)
                .map_err(|error| format!("{first}; in UTF-8: {error}"))?
        }
        Err(error) => return Err(error.to_string()),
    };
    let length = u32::try_from(bytes.len())
        .map_err(|_| format!("a record of {} bytes is too large", bytes.len()))?;
    let mut blob = vec![0; 5 + lz4_flex::block::get_maximum_output_size(bytes.len())];
    blob[0] = LZ4_RECORD;
    blob[1..5].copy_from_slice(&length.to_le_bytes());
    let compressed = lz4_flex::block::compress_into(&bytes, &mut blob[5..])
        .map_err(|error| format!("cannot compress: {error}"))?;
    blob.truncate(5 + compressed);
    Ok(blob)
}

/// The first byte of a record compressed with LZ4: as the first byte of a deflate stream it
/// would announce a block of the reserved type 3 (RFC 1951 §3.2.3), so no deflated record
/// starts with it.
pub const LZ4_RECORD: u8 = 0x06;

/// Decodes a blob made by [`encode`], through the hardened scanner with `limits`.
pub fn decode(blob: &[u8], limits: &ScanLimits) -> Result<InMemDicomObject, String> {
    let bytes = match blob {
        [LZ4_RECORD, a, b, c, d, compressed @ ..] => {
            let length = u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
            if length > MAX_RECORD_SIZE {
                return Err(format!(
                    "it claims {length} bytes, more than {MAX_RECORD_SIZE}"
                ));
            }
            let mut bytes = vec![0; usize::try_from(length).unwrap_or(0)];
            let written = lz4_flex::block::decompress_into(compressed, &mut bytes)
                .map_err(|error| format!("cannot decompress: {error}"))?;
            if written != bytes.len() {
                return Err(format!("it holds {written} of its {length} bytes"));
            }
            bytes
        }
        deflated => {
            let mut bytes = Vec::new();
            DeflateDecoder::new(deflated)
                .take(MAX_RECORD_SIZE + 1)
                .read_to_end(&mut bytes)
                .map_err(|error| format!("cannot inflate: {error}"))?;
            if bytes.len() as u64 > MAX_RECORD_SIZE {
                return Err(format!("it inflates to more than {MAX_RECORD_SIZE} bytes"));
            }
            bytes
        }
    };
    identifier::decode(&bytes, RECORD_TRANSFER_SYNTAX, limits).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::Tag;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;

    fn text(object: &InMemDicomObject, tag: Tag) -> String {
        object
            .get(tag)
            .expect("present")
            .to_str()
            .expect("text")
            .into_owned()
    }

    #[test]
    fn records_split_by_level_without_bulk_data_and_round_trip() {
        let small = DataElement::new(
            Tag(0x0009, 0x1001),
            VR::OB,
            PrimitiveValue::U8(vec![1u8; 16].into()),
        );
        let large = DataElement::new(
            Tag(0x0009, 0x1002),
            VR::OB,
            PrimitiveValue::U8(vec![2u8; 4096].into()),
        );
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, "T-D3000"),
            large.clone(),
        ]);
        let attributes = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "MÜLLER^JÜRGEN"),
            DataElement::new(tags::STUDY_DATE, VR::DA, "20240105"),
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3"),
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            small,
            large,
        ]);
        let records = LevelRecords::of(attributes);
        assert_eq!(text(&records.patient, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");
        assert!(records.patient.get(tags::STUDY_DATE).is_none());
        assert_eq!(text(&records.study, tags::STUDY_DATE), "20240105");
        assert_eq!(text(&records.series, tags::MODALITY), "CT");
        for record in [&records.patient, &records.study, &records.series] {
            assert_eq!(text(record, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
        }
        let instance = &records.instance;
        assert!(
            instance.get(Tag(0x0009, 0x1001)).is_some(),
            "small binary kept"
        );
        assert!(
            instance.get(Tag(0x0009, 0x1002)).is_none(),
            "bulk data left out"
        );
        let items = instance
            .get(tags::ANATOMIC_REGION_SEQUENCE)
            .and_then(|e| e.value().items())
            .expect("sequence");
        assert!(
            items[0].get(Tag(0x0009, 0x1002)).is_none(),
            "inside items too"
        );
        assert!(items[0].get(tags::CODE_VALUE).is_some());

        let blob = encode(instance).expect("encoded");
        let back = decode(&blob, &ScanLimits::default()).expect("decoded");
        assert_eq!(text(&back, tags::PATIENT_NAME), "MÜLLER^JÜRGEN");
        assert_eq!(text(&back, tags::SOP_INSTANCE_UID), "1.2.3");
        assert_eq!(back.iter().count(), instance.iter().count());
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_a_panic() {
        assert!(decode(b"not deflate at all", &ScanLimits::default()).is_err());
        let record =
            InMemDicomObject::from_element_iter([DataElement::new(tags::MODALITY, VR::CS, "CT")]);
        let mut blob = encode(&record).expect("encoded");
        assert_eq!(blob[0], LZ4_RECORD);
        blob.truncate(blob.len() / 2);
        assert!(decode(&blob, &ScanLimits::default()).is_err());
        // A length beyond the bound is refused before anything is allocated for it.
        let mut huge = vec![LZ4_RECORD];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 16]);
        let refused = decode(&huge, &ScanLimits::default()).expect_err("refused");
        assert!(refused.contains("claims"), "{refused}");
        // A length that the block does not fill.
        let mut short = encode(&record).expect("encoded");
        let claimed = u32::from_le_bytes(short[1..5].try_into().expect("4 bytes")) + 10;
        short[1..5].copy_from_slice(&claimed.to_le_bytes());
        assert!(decode(&short, &ScanLimits::default()).is_err());
    }

    #[test]
    fn records_deflated_by_earlier_versions_are_still_read() {
        use std::io::Write;
        let record = InMemDicomObject::from_element_iter([
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^John"),
        ]);
        let encoded =
            identifier::encode(&record, RECORD_TRANSFER_SYNTAX).expect("encoded data set");
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        deflater.write_all(&encoded).expect("deflated");
        let deflated = deflater.finish().expect("deflated");
        assert_ne!(deflated[0], LZ4_RECORD);
        let decoded = decode(&deflated, &ScanLimits::default()).expect("read");
        assert_eq!(text(&decoded, tags::PATIENT_NAME), "Doe^John");
        assert_eq!(text(&decoded, tags::MODALITY), "CT");
        // Every first byte a deflate stream can have differs from the LZ4 marker: its block
        // type bits (1 and 2) would be 3, which RFC 1951 reserves.
        assert_eq!(LZ4_RECORD & 0b110, 0b110);
    }
}
