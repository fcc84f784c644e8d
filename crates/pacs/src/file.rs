//! Reading Part 10 files from disk for the archive (PS3.10 §7): the meta through
//! `dimsum_dataset::part10` (bounded), the whole data set through the hardened scanner
//! (`dimsum_dataset::scan`, which seeks over large values), and only then the attributes before
//! the Pixel Data group through dicom-rs. Blocking: call it on tokio's blocking pool.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dimsum_dataset::dicom_core::Tag;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::part10::{self, FileMeta, Part10Error};
use dimsum_dataset::scan::{self, ScanError, ScanLimits, Summary};
use dimsum_dataset::{elements, identifier, transfer_syntax};

/// The attributes kept are those before this tag: the Pixel Data group (7FE0) and what follows
/// it (Float and Double Float Pixel Data included) are never read.
const PIXEL_DATA_GROUP: Tag = Tag(0x7FE0, 0x0000);

/// The largest deflated data set read into memory to be inflated (its inflated size is bounded
/// by [`ScanLimits::max_inflated_size`]).
pub const MAX_DEFLATED_LENGTH: u64 = 64 * 1024 * 1024;

/// A Part 10 file as the archive reads it (PS3.10 §7.1): its meta, where its data set lies, the
/// scanner's summary and the attributes before the Pixel Data.
#[derive(Debug, Clone)]
pub struct Part10File {
    pub path: PathBuf,
    pub meta: FileMeta,
    /// Offset of the data set in the file (after the File Meta Information).
    pub data_set_offset: u64,
    /// Length of the data set in bytes (to the end of the file).
    pub data_set_length: u64,
    pub summary: Summary,
    /// The data set's attributes before the Pixel Data group (7FE0,xxxx).
    pub attributes: InMemDicomObject,
}

/// Where an instance sits in the patient / study / series tree (PS3.4 C.6.1.1), and its SOP
/// Common identity (PS3.3 C.12.1): from the data set, the SOP UIDs falling back on the file
/// meta's Media Storage SOP Class / Instance UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Empty when the data set has none.
    pub patient_id: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
}

impl Identity {
    /// The identity of an instance from the scanner's summary of its data set and its meta;
    /// `Err` names the attribute that is missing (or empty).
    pub fn of(summary: &Summary, meta: &FileMeta) -> Result<Identity, &'static str> {
        Identity::from_summary(
            summary,
            &meta.media_storage_sop_class_uid,
            &meta.media_storage_sop_instance_uid,
        )
    }

    /// The identity from a scanned data set, its SOP Class and Instance UIDs falling back on
    /// `sop_class_uid` and `sop_instance_uid` (those of the file meta, or of the C-STORE
    /// command the file meta was written from).
    pub fn from_summary(
        summary: &Summary,
        sop_class_uid: &str,
        sop_instance_uid: &str,
    ) -> Result<Identity, &'static str> {
        let present = |value: &Option<String>| value.clone().filter(|uid| !uid.is_empty());
        let from_meta = |value: &str| Some(value.to_owned()).filter(|uid| !uid.is_empty());
        Ok(Identity {
            patient_id: summary.patient_id.clone().unwrap_or_default(),
            study_instance_uid: present(&summary.study_instance_uid)
                .ok_or("Study Instance UID (0020,000D)")?,
            series_instance_uid: present(&summary.series_instance_uid)
                .ok_or("Series Instance UID (0020,000E)")?,
            sop_instance_uid: present(&summary.sop_instance_uid)
                .or_else(|| from_meta(sop_instance_uid))
                .ok_or("SOP Instance UID (0008,0018)")?,
            sop_class_uid: present(&summary.sop_class_uid)
                .or_else(|| from_meta(sop_class_uid))
                .ok_or("SOP Class UID (0008,0016)")?,
        })
    }
}

/// Why a file could not be read (PS3.10 §7).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read it: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Part10 { path: PathBuf, source: Part10Error },
    #[error("{path}: the data set was refused: {source}")]
    Refused { path: PathBuf, source: ScanError },
    #[error("{path}: cannot decode the data set: {reason}")]
    Decode { path: PathBuf, reason: String },
}

impl FileError {
    /// Whether the file is simply not a DICOM Part 10 file (no "DICM" prefix): skipped quietly
    /// by a folder walk, unlike a DICOM file that is damaged.
    pub fn is_not_dicom(&self) -> bool {
        matches!(
            self,
            FileError::Part10 {
                source: Part10Error::NotPart10,
                ..
            }
        )
    }
}

/// Reads a Part 10 file: meta, scan of the whole data set with `limits`, then the attributes
/// before the Pixel Data.
pub fn read_part10(path: &Path, limits: &ScanLimits) -> Result<Part10File, FileError> {
    let io_error = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let file_length = file.metadata().map_err(io_error)?.len();
    let (meta, data_set_offset) =
        part10::read_meta(&mut BufReader::new(&mut file)).map_err(|source| FileError::Part10 {
            path: path.to_path_buf(),
            source,
        })?;
    let data_set_length = file_length.saturating_sub(data_set_offset);
    let ts = meta.transfer_syntax_uid.clone();

    file.seek(SeekFrom::Start(data_set_offset))
        .map_err(io_error)?;
    let summary =
        scan::scan(BufReader::new(&mut file), data_set_length, &ts, limits).map_err(|source| {
            FileError::Refused {
                path: path.to_path_buf(),
                source,
            }
        })?;

    file.seek(SeekFrom::Start(data_set_offset))
        .map_err(io_error)?;
    let attributes =
        decode_attributes(file, data_set_length, &ts, limits).map_err(|error| error.at(path))?;
    Ok(Part10File {
        path: path.to_path_buf(),
        meta,
        data_set_offset,
        data_set_length,
        summary,
        attributes,
    })
}

/// The files under a folder, recursively, sorted, hidden entries left out and each folder
/// listed once however many links lead to it: the one folder walk, shared with the Storage
/// SCU's batches.
pub use dimsum_net::scu::store::{list_files, list_files_and_hidden};

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;
    use dimsum_dataset::dicom_core::{DataElement, VR};
    use dimsum_dataset::dicom_dictionary_std::tags;
    use dimsum_dataset::part10::encode_header;
    use std::fs;

    const EXPLICIT: &str = "1.2.840.10008.1.2.1";
    const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

    fn write_file(path: &Path, ts: &str, with_pixels: bool) -> Vec<u8> {
        let mut object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4"),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "DOE^JOHN"),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
        ]);
        if with_pixels {
            object.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8(vec![7u8; 4096].into()),
            ));
        }
        let data_set = identifier::encode(&object, ts).expect("encoded");
        let meta = FileMeta::new(SECONDARY_CAPTURE, "1.2.3.4", ts, "1.2.3.999", "TEST");
        let mut bytes = encode_header(&meta).expect("header");
        bytes.extend_from_slice(&data_set);
        fs::write(path, &bytes).expect("write");
        data_set
    }

    #[test]
    fn a_part10_file_is_read_up_to_its_pixel_data() {
        let folder = tempfile::tempdir().expect("tempdir");
        let path = folder.path().join("a.dcm");
        let data_set = write_file(&path, EXPLICIT, true);
        let file = read_part10(&path, &ScanLimits::default()).expect("read");
        assert_eq!(file.data_set_length, data_set.len() as u64);
        let bytes = fs::read(&path).expect("read back");
        assert_eq!(&bytes[file.data_set_offset as usize..], &data_set[..]);
        assert_eq!(file.summary.sop_instance_uid.as_deref(), Some("1.2.3.4"));
        assert!(file.summary.has_pixel_data);
        assert_eq!(
            file.attributes
                .get(tags::PATIENT_NAME)
                .expect("name")
                .to_str()
                .expect("text"),
            "DOE^JOHN"
        );
        assert!(file.attributes.get(tags::PIXEL_DATA).is_none());
        assert_eq!(file.meta.transfer_syntax_uid, EXPLICIT);
    }

    #[test]
    fn deflated_and_implicit_files_are_read_too() {
        let folder = tempfile::tempdir().expect("tempdir");
        for (name, ts) in [
            ("deflated.dcm", "1.2.840.10008.1.2.1.99"),
            ("implicit.dcm", "1.2.840.10008.1.2"),
            ("big.dcm", "1.2.840.10008.1.2.2"),
        ] {
            let path = folder.path().join(name);
            write_file(&path, ts, true);
            let file = read_part10(&path, &ScanLimits::default()).expect(name);
            assert!(file.attributes.get(tags::PATIENT_NAME).is_some(), "{name}");
            assert!(file.attributes.get(tags::PIXEL_DATA).is_none(), "{name}");
        }
    }

    #[test]
    fn a_file_that_is_not_dicom_or_lies_is_refused_with_a_reason() {
        let folder = tempfile::tempdir().expect("tempdir");
        let text = folder.path().join("notes.txt");
        fs::write(&text, b"not a DICOM file at all").expect("write");
        let error = read_part10(&text, &ScanLimits::default()).expect_err("refused");
        assert!(error.is_not_dicom(), "{error}");

        // A data set whose last element claims more bytes than the file has.
        let lying = folder.path().join("lying.dcm");
        write_file(&lying, EXPLICIT, false);
        let mut bytes = fs::read(&lying).expect("read");
        bytes.extend_from_slice(&[0x10, 0x00, 0x20, 0x00, b'L', b'O', 0xF0, 0xFF, b'P']);
        fs::write(&lying, &bytes).expect("write");
        let error = read_part10(&lying, &ScanLimits::default()).expect_err("refused");
        assert!(matches!(error, FileError::Refused { .. }), "{error}");
        assert!(!error.is_not_dicom());
        assert!(error.to_string().contains("lying.dcm"), "{error}");
    }
}

/// Why [`decode_attributes`] failed.
#[derive(Debug)]
pub enum AttributesError {
    Io(io::Error),
    Decode(String),
}

impl AttributesError {
    /// The error for the data set of the file at `path`.
    pub fn at(self, path: &Path) -> FileError {
        let path = path.to_path_buf();
        match self {
            AttributesError::Io(source) => FileError::Io { path, source },
            AttributesError::Decode(reason) => FileError::Decode { path, reason },
        }
    }
}

impl std::fmt::Display for AttributesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttributesError::Io(error) => write!(f, "cannot read the data set: {error}"),
            AttributesError::Decode(reason) => write!(f, "cannot decode the data set: {reason}"),
        }
    }
}

/// The attributes before the Pixel Data group (7FE0,xxxx) of a data set of `length` bytes in
/// transfer syntax `ts`, read from `data` (a file after its meta, or the data set in memory).
/// The data set has passed the hardened scan: lengths and depth are bounded.
pub fn decode_attributes(
    data: impl Read + Seek,
    length: u64,
    ts: &str,
    limits: &ScanLimits,
) -> Result<InMemDicomObject, AttributesError> {
    decode_attributes_as_read(data, length, ts, limits).map(|(attributes, _)| attributes)
}

/// [`decode_attributes`], and whether their text is as the data set's bytes hold it (no
/// character set decoded again: [`dimsum_dataset::charset::to_unicode`]; never for a deflated
/// data set, whose bytes are not the attributes').
pub fn decode_attributes_as_read(
    data: impl Read + Seek,
    length: u64,
    ts: &str,
    limits: &ScanLimits,
) -> Result<(InMemDicomObject, bool), AttributesError> {
    let decode_error = |error: &dyn std::fmt::Display| AttributesError::Decode(error.to_string());
    if transfer_syntax::is_deflated(ts) {
        // dicom-rs's incremental reader does not inflate: inflate in memory, bounded.
        if length > MAX_DEFLATED_LENGTH {
            return Err(AttributesError::Decode(format!(
                "a deflated data set of {length} bytes is larger than the {MAX_DEFLATED_LENGTH} read into memory"
            )));
        }
        let mut bytes = Vec::new();
        data.take(length)
            .read_to_end(&mut bytes)
            .map_err(AttributesError::Io)?;
        let mut object =
            identifier::decode(&bytes, ts, limits).map_err(|error| decode_error(&error))?;
        object.retain(|element| element.header().tag < PIXEL_DATA_GROUP);
        Ok((object, false))
    } else {
        let object = elements::collect_up_to(data, ts, PIXEL_DATA_GROUP)
            .map_err(|error| decode_error(&error))?;
        Ok(as_read_in_unicode(object))
    }
}

/// [`decode_attributes_as_read`] for a data set held in memory: a flat one in explicit VR
/// little endian is decoded without dicom-rs's reader ([`elements::decode_up_to`]).
pub fn decode_attributes_in_memory(
    data: &[u8],
    ts: &str,
    limits: &ScanLimits,
) -> Result<(InMemDicomObject, bool), AttributesError> {
    if transfer_syntax::is_deflated(ts) {
        return decode_attributes_as_read(io::Cursor::new(data), data.len() as u64, ts, limits);
    }
    let object =
        elements::decode_up_to(data, ts, PIXEL_DATA_GROUP).map_err(AttributesError::Decode)?;
    Ok(as_read_in_unicode(object))
}

/// The attributes with their text in Unicode, and whether that text is as it was read (no
/// character set decoded again).
fn as_read_in_unicode(mut object: InMemDicomObject) -> (InMemDicomObject, bool) {
    let redecoded = dimsum_dataset::charset::to_unicode_or_keep(&mut object);
    (object, !redecoded)
}
