//! The DICOM file format header: a 128-byte preamble, the "DICM" prefix and the File Meta
//! Information group (0002,xxxx) in Explicit VR Little Endian (PS3.10 §7.1).
//!
//! The group's values are decoded and encoded by dicom-object's [`FileMetaTable`] and
//! [`FileMetaTableBuilder`]. What they do not do for bytes from a disk or a peer stays here:
//!
//! - **Bounds.** `FileMetaTable::from_reader` reserves whatever length an element header claims
//!   (up to 4 GiB for a UID) before it reads the value, and follows no overall limit. So the
//!   group is read here first: its length (0002,0000) may not claim more than
//!   [`MAX_META_GROUP_LENGTH`], and every element header is checked (group 0002, a known VR, a
//!   defined length that ends inside the group) before its value is read. Only the bytes that
//!   passed go on to dicom-rs.
//! - **A missing group length.** dicom-rs requires (0002,0000); files without it exist, so their
//!   group 0002 elements are read here one by one, with the same checks, until another group
//!   begins.
//! - **Required elements.** dicom-rs fills in an empty Media Storage SOP Class or Instance UID and
//!   its own Implementation Class UID when they are missing; here a missing one is an error.
//! - **UID syntax.** dicom-rs checks only the characters of a UID. Here each UID is checked
//!   against PS3.5 §9.1 by [`dimsum_uid`], the validator the Upper Layer uses too, when reading
//!   and when writing; the SH and AE values are checked against their 16 characters when writing.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::{self, FileMetaTable, FileMetaTableBuilder};
use dimsum_uid::UidError;

use crate::trim_uid;

/// Length of the File Preamble (PS3.10 §7.1).
pub const PREAMBLE_LENGTH: usize = 128;
/// The DICOM Prefix that follows the preamble (PS3.10 §7.1).
pub const DICM_PREFIX: &[u8; 4] = b"DICM";
/// The largest File Meta Information group we accept. Real groups are a few hundred bytes.
pub const MAX_META_GROUP_LENGTH: u32 = 64 * 1024;

const GROUP_LENGTH: Tag = tags::FILE_META_INFORMATION_GROUP_LENGTH;
#[cfg(test)]
const INFORMATION_VERSION: Tag = tags::FILE_META_INFORMATION_VERSION;
const MEDIA_STORAGE_SOP_CLASS_UID: Tag = tags::MEDIA_STORAGE_SOP_CLASS_UID;
const MEDIA_STORAGE_SOP_INSTANCE_UID: Tag = tags::MEDIA_STORAGE_SOP_INSTANCE_UID;
const TRANSFER_SYNTAX_UID: Tag = tags::TRANSFER_SYNTAX_UID;
const IMPLEMENTATION_CLASS_UID: Tag = tags::IMPLEMENTATION_CLASS_UID;
const IMPLEMENTATION_VERSION_NAME: Tag = tags::IMPLEMENTATION_VERSION_NAME;
const SOURCE_APPLICATION_ENTITY_TITLE: Tag = tags::SOURCE_APPLICATION_ENTITY_TITLE;

/// The UID elements a File Meta Information must have (PS3.10 Table 7.1-1, type 1), in the
/// order they are checked.
const REQUIRED_UIDS: [(Tag, &str); 4] = [
    (MEDIA_STORAGE_SOP_CLASS_UID, "Media Storage SOP Class UID"),
    (
        MEDIA_STORAGE_SOP_INSTANCE_UID,
        "Media Storage SOP Instance UID",
    ),
    (TRANSFER_SYNTAX_UID, "Transfer Syntax UID"),
    (IMPLEMENTATION_CLASS_UID, "Implementation Class UID"),
];

/// The File Meta Information Version we write: version 1 (PS3.10 §7.1).
const INFORMATION_VERSION_1: [u8; 2] = [0x00, 0x01];
/// Longest SH and AE values (PS3.5 §6.2).
const MAX_SHORT_STRING_LENGTH: usize = 16;

/// The attributes of the File Meta Information (PS3.10 §7.1, Table 7.1-1) that dimsum uses.
/// Strings hold the values without their padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// (0002,0002) Media Storage SOP Class UID.
    pub media_storage_sop_class_uid: String,
    /// (0002,0003) Media Storage SOP Instance UID.
    pub media_storage_sop_instance_uid: String,
    /// (0002,0010) Transfer Syntax UID of the data set that follows.
    pub transfer_syntax_uid: String,
    /// (0002,0012) Implementation Class UID of the writer.
    pub implementation_class_uid: String,
    /// (0002,0013) Implementation Version Name of the writer.
    pub implementation_version_name: Option<String>,
    /// (0002,0016) Source Application Entity Title: the AE that wrote or sent the object.
    pub source_application_entity_title: Option<String>,
}

impl FileMeta {
    /// Meta information for an object written by the implementation that `implementation_class_uid`
    /// and `implementation_version_name` identify (dimsum's are `dimsum_ul::uids`), with no
    /// source AE title.
    pub fn new(
        sop_class_uid: impl Into<String>,
        sop_instance_uid: impl Into<String>,
        transfer_syntax_uid: impl Into<String>,
        implementation_class_uid: impl Into<String>,
        implementation_version_name: impl Into<String>,
    ) -> Self {
        FileMeta {
            media_storage_sop_class_uid: sop_class_uid.into(),
            media_storage_sop_instance_uid: sop_instance_uid.into(),
            transfer_syntax_uid: transfer_syntax_uid.into(),
            implementation_class_uid: implementation_class_uid.into(),
            implementation_version_name: Some(implementation_version_name.into()),
            source_application_entity_title: None,
        }
    }
}

/// What is wrong with a Part 10 header (PS3.10 §7.1).
#[derive(Debug, thiserror::Error)]
pub enum Part10Error {
    #[error("could not read the file meta information: {0}")]
    Io(#[from] io::Error),
    #[error("the file ends at offset {offset}, inside its file meta information")]
    Truncated { offset: u64 },
    #[error("not a DICOM Part 10 file (no DICM prefix at offset 128)")]
    NotPart10,
    #[error("the file meta information group claims {length} bytes, more than the {max} accepted")]
    GroupTooLong { length: u32, max: u32 },
    #[error(
        "element {tag} at offset {offset} claims {length} bytes, only {remaining} remain in the file meta information"
    )]
    ElementTooLong {
        tag: Tag,
        offset: u64,
        length: u32,
        remaining: u64,
    },
    #[error(
        "the element header at offset {offset} reaches past the end of the file meta information group"
    )]
    HeaderPastGroupEnd { offset: u64 },
    #[error(
        "element {tag} at offset {offset} has an undefined length, not allowed in the file meta information"
    )]
    UndefinedLength { tag: Tag, offset: u64 },
    #[error("element {tag} at offset {offset} has an unknown VR code {code:?}")]
    UnknownVr {
        tag: Tag,
        offset: u64,
        code: [u8; 2],
    },
    #[error(
        "element {tag} at offset {offset} is not of group 0002 but lies inside the file meta information group length"
    )]
    OutsideGroup { tag: Tag, offset: u64 },
    #[error("the file meta information group length (0002,0000) at offset {offset} is malformed")]
    BadGroupLength { offset: u64 },
    #[error("the file meta information lacks {name} {tag}")]
    MissingElement { tag: Tag, name: &'static str },
    #[error("{name} {tag} is not a valid UID ({reason}): {value:?}")]
    InvalidUid {
        tag: Tag,
        name: &'static str,
        value: String,
        reason: UidError,
    },
    #[error("{name} {tag} is {length} bytes long, more than the {max} allowed")]
    ValueTooLong {
        tag: Tag,
        name: &'static str,
        length: usize,
        max: usize,
    },
    #[error("invalid file meta information: {0}")]
    Decode(#[source] Box<meta::Error>),
    #[error("could not encode the file meta information: {0}")]
    Encode(#[source] Box<meta::Error>),
}

/// Reads the preamble, the "DICM" prefix and the File Meta Information group, and returns the
/// meta information with the offset (from the start of the file) at which the data set begins.
///
/// When the group length (0002,0000) is present, the reader is left exactly at that offset. When
/// it is missing, group 0002 elements are read until an element of another group appears, whose
/// tag has then been consumed: the reader is 4 bytes past the returned offset, so seek to it.
pub fn read_meta<R: Read>(reader: &mut R) -> Result<(FileMeta, u64), Part10Error> {
    let mut source = CountingReader { reader, offset: 0 };
    let mut header = [0u8; PREAMBLE_LENGTH + 4];
    // A file too short to hold the preamble and prefix is not a Part 10 file either.
    match source.read_exact(&mut header) {
        Err(Part10Error::Truncated { .. }) => return Err(Part10Error::NotPart10),
        other => other?,
    }
    if header.get(PREAMBLE_LENGTH..) != Some(DICM_PREFIX.as_slice()) {
        return Err(Part10Error::NotPart10);
    }

    let mut group = Group::default();
    let first = source.read_tag()?;
    let data_set_offset = if first == GROUP_LENGTH {
        let offset = source.offset - 4;
        let group_length = read_group_length(&mut source, offset)?;
        if group_length > MAX_META_GROUP_LENGTH {
            return Err(Part10Error::GroupTooLong {
                length: group_length,
                max: MAX_META_GROUP_LENGTH,
            });
        }
        let end = source.offset + u64::from(group_length);
        while source.offset < end {
            let offset = source.offset;
            let tag = source.read_tag()?;
            if tag.group() != 0x0002 {
                return Err(Part10Error::OutsideGroup { tag, offset });
            }
            group.read_element(&mut source, tag, offset, end)?;
        }
        end
    } else {
        // No group length: read group 0002 elements until another group begins.
        let end = source.offset - 4 + u64::from(MAX_META_GROUP_LENGTH);
        let mut tag = first;
        let mut offset = source.offset - 4;
        while tag.group() == 0x0002 {
            group.read_element(&mut source, tag, offset, end)?;
            offset = source.offset;
            tag = source.read_tag()?;
        }
        offset
    };
    Ok((group.into_meta()?, data_set_offset))
}

/// Encodes the preamble (128 zero bytes), "DICM" and the File Meta Information group in Explicit
/// VR Little Endian with its group length (0002,0000) and version (0002,0001) = 00 01; UIDs are
/// padded to even length with NUL, the version name and AE title with a space (PS3.5 §6.2).
/// The group is written by dicom-object's [`FileMetaTable::write`], once the values have been
/// checked here.
pub fn encode_header(meta: &FileMeta) -> Result<Vec<u8>, Part10Error> {
    let uid = |tag: Tag, name: &'static str, value: &str| {
        validate_uid(tag, name, trim_uid(value)).map(str::to_owned)
    };
    let text = |tag: Tag, name: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .map(|value| {
                let value = value.trim_end_matches(' ');
                if value.len() > MAX_SHORT_STRING_LENGTH {
                    return Err(Part10Error::ValueTooLong {
                        tag,
                        name,
                        length: value.len(),
                        max: MAX_SHORT_STRING_LENGTH,
                    });
                }
                Ok(value.to_owned())
            })
            .transpose()
    };
    let [class, instance, transfer_syntax, implementation] = REQUIRED_UIDS;
    let mut builder = FileMetaTableBuilder::new()
        .information_version(INFORMATION_VERSION_1)
        .media_storage_sop_class_uid(uid(class.0, class.1, &meta.media_storage_sop_class_uid)?)
        .media_storage_sop_instance_uid(uid(
            instance.0,
            instance.1,
            &meta.media_storage_sop_instance_uid,
        )?)
        .transfer_syntax(uid(
            transfer_syntax.0,
            transfer_syntax.1,
            &meta.transfer_syntax_uid,
        )?)
        .implementation_class_uid(uid(
            implementation.0,
            implementation.1,
            &meta.implementation_class_uid,
        )?);
    if let Some(name) = text(
        IMPLEMENTATION_VERSION_NAME,
        "Implementation Version Name",
        &meta.implementation_version_name,
    )? {
        builder = builder.implementation_version_name(name);
    }
    if let Some(title) = text(
        SOURCE_APPLICATION_ENTITY_TITLE,
        "Source Application Entity Title",
        &meta.source_application_entity_title,
    )? {
        builder = builder.source_application_entity_title(title);
    }
    let table = builder
        .build()
        .map_err(|error| Part10Error::Encode(Box::new(error)))?;

    let group_length = usize::try_from(table.information_group_length).unwrap_or(0);
    let mut out = Vec::with_capacity(PREAMBLE_LENGTH + DICM_PREFIX.len() + 12 + group_length);
    out.resize(PREAMBLE_LENGTH, 0);
    out.extend_from_slice(DICM_PREFIX);
    table
        .write(&mut out)
        .map_err(|error| Part10Error::Encode(Box::new(error)))?;
    Ok(out)
}

/// True if the file has "DICM" at offset 128 (PS3.10 §7.1); reads those 4 bytes only.
pub fn is_part10_file(path: impl AsRef<Path>) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    if length < (PREAMBLE_LENGTH + DICM_PREFIX.len()) as u64 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(PREAMBLE_LENGTH as u64))?;
    let mut prefix = [0u8; 4];
    file.read_exact(&mut prefix)?;
    Ok(&prefix == DICM_PREFIX)
}

/// Explicit VR Little Endian VRs with a 4-byte length field (PS3.5 §7.1.2, Table 7.1-1).
pub(crate) fn has_long_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV
    )
}

struct CountingReader<'r, R> {
    reader: &'r mut R,
    offset: u64,
}

impl<R: Read> CountingReader<'_, R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Part10Error> {
        match self.reader.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                Err(Part10Error::Truncated {
                    offset: self.offset,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Part10Error> {
        let mut bytes = [0u8; N];
        self.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn read_tag(&mut self) -> Result<Tag, Part10Error> {
        let [g0, g1, e0, e1] = self.read_array::<4>()?;
        Ok(Tag(
            u16::from_le_bytes([g0, g1]),
            u16::from_le_bytes([e0, e1]),
        ))
    }
}

fn read_group_length<R: Read>(
    source: &mut CountingReader<'_, R>,
    offset: u64,
) -> Result<u32, Part10Error> {
    let [v0, v1, l0, l1] = source.read_array::<4>()?;
    if &[v0, v1] != b"UL" || u16::from_le_bytes([l0, l1]) != 4 {
        return Err(Part10Error::BadGroupLength { offset });
    }
    Ok(u32::from_le_bytes(source.read_array::<4>()?))
}

/// The elements of group 0002 that passed the checks, as they were encoded (Explicit VR Little
/// Endian), for dicom-rs to decode.
#[derive(Default)]
struct Group {
    bytes: Vec<u8>,
    /// Where the value of each element lies in `bytes`.
    values: Vec<(Tag, Range<usize>)>,
}

impl Group {
    /// Reads the VR, length and value of one group 0002 element whose tag has been read, refusing
    /// a header or value that would reach past `end`.
    fn read_element<R: Read>(
        &mut self,
        source: &mut CountingReader<'_, R>,
        tag: Tag,
        offset: u64,
        end: u64,
    ) -> Result<(), Part10Error> {
        let code = source.read_array::<2>()?;
        let vr = VR::from_binary(code).ok_or(Part10Error::UnknownVr { tag, offset, code })?;
        self.bytes.extend_from_slice(&tag.group().to_le_bytes());
        self.bytes.extend_from_slice(&tag.element().to_le_bytes());
        self.bytes.extend_from_slice(&code);
        let length = if has_long_length(vr) {
            let field = source.read_array::<6>()?;
            self.bytes.extend_from_slice(&field);
            let [_, _, l0, l1, l2, l3] = field;
            u32::from_le_bytes([l0, l1, l2, l3])
        } else {
            let field = source.read_array::<2>()?;
            self.bytes.extend_from_slice(&field);
            u32::from(u16::from_le_bytes(field))
        };
        if source.offset > end {
            return Err(Part10Error::HeaderPastGroupEnd { offset });
        }
        if length == u32::MAX {
            return Err(Part10Error::UndefinedLength { tag, offset });
        }
        let remaining = end - source.offset;
        if u64::from(length) > remaining {
            return Err(Part10Error::ElementTooLong {
                tag,
                offset,
                length,
                remaining,
            });
        }
        // Bounded by MAX_META_GROUP_LENGTH through the check above.
        let start = self.bytes.len();
        self.bytes.resize(start + length as usize, 0);
        let value = start..self.bytes.len();
        source.read_exact(&mut self.bytes[value.clone()])?;
        self.values.push((tag, value));
        Ok(())
    }

    fn value(&self, tag: Tag) -> Option<&[u8]> {
        self.values
            .iter()
            .find(|(t, _)| *t == tag)
            .and_then(|(_, range)| self.bytes.get(range.clone()))
    }

    /// Has dicom-rs decode the group, then checks what it does not.
    fn into_meta(self) -> Result<FileMeta, Part10Error> {
        for (tag, name) in REQUIRED_UIDS {
            if self.value(tag).is_none() {
                return Err(Part10Error::MissingElement { tag, name });
            }
        }
        let group_length =
            u32::try_from(self.bytes.len()).map_err(|_| Part10Error::GroupTooLong {
                length: u32::MAX,
                max: MAX_META_GROUP_LENGTH,
            })?;
        // dicom-rs reads from the "DICM" prefix on and requires the group length element.
        let mut encoded = Vec::with_capacity(DICM_PREFIX.len() + 12 + self.bytes.len());
        encoded.extend_from_slice(DICM_PREFIX);
        encoded.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00]);
        encoded.extend_from_slice(&group_length.to_le_bytes());
        encoded.extend_from_slice(&self.bytes);
        let table = FileMetaTable::from_reader(encoded.as_slice()).map_err(|error| {
            // dicom-rs does not say which UID has a character other than digits and dots.
            if matches!(error, meta::Error::InvalidUid { .. })
                && let Some(invalid) = self.first_invalid_uid()
            {
                return invalid;
            }
            Part10Error::Decode(Box::new(error))
        })?;

        let [class, instance, transfer_syntax, implementation] = REQUIRED_UIDS;
        let uid = |(tag, name): (Tag, &'static str), value: &str| {
            validate_uid(tag, name, value).map(str::to_owned)
        };
        let text =
            |value: Option<&str>| value.map(|value| value.trim_matches([' ', '\0']).to_owned());
        Ok(FileMeta {
            media_storage_sop_class_uid: uid(class, table.media_storage_sop_class_uid())?,
            media_storage_sop_instance_uid: uid(instance, table.media_storage_sop_instance_uid())?,
            transfer_syntax_uid: uid(transfer_syntax, table.transfer_syntax())?,
            implementation_class_uid: uid(implementation, table.implementation_class_uid())?,
            implementation_version_name: text(table.implementation_version_name()),
            source_application_entity_title: text(table.source_application_entity_title()),
        })
    }

    /// The first required UID whose raw value is not a valid UID.
    fn first_invalid_uid(&self) -> Option<Part10Error> {
        REQUIRED_UIDS.iter().find_map(|&(tag, name)| {
            let text = String::from_utf8_lossy(self.value(tag)?);
            validate_uid(tag, name, trim_uid(&text)).err()
        })
    }
}

/// Checks a UID with the shared validator (PS3.5 §9.1).
fn validate_uid<'a>(tag: Tag, name: &'static str, uid: &'a str) -> Result<&'a str, Part10Error> {
    dimsum_uid::validate(uid)
        .map(|()| uid)
        .map_err(|reason| Part10Error::InvalidUid {
            tag,
            name,
            value: uid.to_owned(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends one explicit VR little endian element.
    fn put_element(out: &mut Vec<u8>, tag: Tag, vr: VR, value: &[u8]) {
        out.extend_from_slice(&tag.group().to_le_bytes());
        out.extend_from_slice(&tag.element().to_le_bytes());
        out.extend_from_slice(&vr.to_bytes());
        if has_long_length(vr) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    }

    fn sample() -> FileMeta {
        FileMeta {
            media_storage_sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            media_storage_sop_instance_uid: "1.2.3.4.5".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            implementation_class_uid: "1.2.3".into(),
            implementation_version_name: Some("DIMSUM_1".into()),
            source_application_entity_title: Some("STORESCU".into()),
        }
    }

    #[test]
    fn round_trip() {
        let meta = sample();
        let bytes = encode_header(&meta).unwrap();
        let (read, offset) = read_meta(&mut bytes.as_slice()).unwrap();
        assert_eq!(read, meta);
        assert_eq!(offset, bytes.len() as u64);
        assert_eq!(&bytes[128..132], b"DICM");
        assert!(bytes[..128].iter().all(|b| *b == 0));
        // (0002,0001) OB 00 01 follows the group length element.
        assert_eq!(
            &bytes[144..158],
            &[2, 0, 1, 0, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]
        );
        let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
        assert_eq!(group_length as usize, bytes.len() - 144);
    }

    #[test]
    fn uids_are_padded_with_nul() {
        let meta = sample();
        let bytes = encode_header(&meta).unwrap();
        // "1.2.3.4.5" is 9 characters: written as 10 with a trailing NUL.
        let needle = b"1.2.3.4.5\0";
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn rejects_bad_uids_and_long_titles() {
        let mut meta = sample();
        meta.media_storage_sop_instance_uid = "1.2.x".into();
        assert!(matches!(
            encode_header(&meta),
            Err(Part10Error::InvalidUid { .. })
        ));
        let mut meta = sample();
        meta.source_application_entity_title = Some("A".repeat(17));
        assert!(matches!(
            encode_header(&meta),
            Err(Part10Error::ValueTooLong { .. })
        ));
    }

    #[test]
    fn new_takes_the_writer_identity() {
        let meta = FileMeta::new("1.2.3", "4.5.6", "1.2.840.10008.1.2", "1.2.3.9", "WRITER_1");
        assert_eq!(meta.implementation_class_uid, "1.2.3.9");
        assert_eq!(
            meta.implementation_version_name.as_deref(),
            Some("WRITER_1")
        );
        assert_eq!(meta.source_application_entity_title, None);
        let (read, _) = read_meta(&mut encode_header(&meta).unwrap().as_slice()).unwrap();
        assert_eq!(read, meta);
    }

    #[test]
    fn rejects_missing_prefix() {
        let bytes = vec![0u8; 200];
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(matches!(error, Part10Error::NotPart10), "{error}");
        assert_eq!(
            error.to_string(),
            "not a DICOM Part 10 file (no DICM prefix at offset 128)"
        );
    }

    /// `encode_header(&sample())` with `from` replaced by `to` (of the same length).
    fn sample_with(from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut bytes = encode_header(&sample()).unwrap();
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("in the sample");
        bytes[at..at + to.len()].copy_from_slice(to);
        bytes
    }

    #[test]
    fn invalid_uids_are_named() {
        // A letter: dicom-rs refuses it without naming the element; the error names it.
        let bytes = sample_with(b"1.2.3.4.5\0", b"1.2.x.4.5\0");
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(
            matches!(
                error,
                Part10Error::InvalidUid { tag, reason: UidError::NotDigit, .. }
                    if tag == MEDIA_STORAGE_SOP_INSTANCE_UID
            ),
            "{error}"
        );
        // A leading zero passes dicom-rs and is refused by the PS3.5 §9.1 check after it.
        let bytes = sample_with(b"1.2.3.4.5\0", b"1.2.03.4.5");
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(
            matches!(
                error,
                Part10Error::InvalidUid { tag, reason: UidError::LeadingZero, ref value, .. }
                    if tag == MEDIA_STORAGE_SOP_INSTANCE_UID && value == "1.2.03.4.5"
            ),
            "{error}"
        );
        // An empty one.
        let mut meta = sample();
        meta.transfer_syntax_uid = "\0".into();
        assert!(matches!(
            encode_header(&meta),
            Err(Part10Error::InvalidUid {
                reason: UidError::Empty,
                ..
            })
        ));
    }

    #[test]
    fn header_past_group_end() {
        let mut bytes = encode_header(&sample()).unwrap();
        // The group ends 4 bytes into the header of its last element, the 8-byte AE title.
        let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
        bytes[140..144].copy_from_slice(&(group_length - 12).to_le_bytes());
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(
            matches!(error, Part10Error::HeaderPastGroupEnd { offset } if offset == bytes.len() as u64 - 16),
            "{error}"
        );
    }

    #[test]
    fn lying_length_without_group_length() {
        let with_length = encode_header(&sample()).unwrap();
        let mut bytes = with_length[..132].to_vec();
        bytes.extend_from_slice(&with_length[144..]);
        // (0002,0102) Private Information, OB, claiming 4 GB.
        bytes.extend_from_slice(&[2, 0, 2, 1, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF]);
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(
            matches!(
                error,
                Part10Error::ElementTooLong {
                    length: 0xFFFF_FFF0,
                    ..
                }
            ),
            "{error}"
        );
    }

    /// dicom-rs decodes the values: the version (0002,0001) must have its 2 bytes.
    #[test]
    fn malformed_values_are_refused_by_dicom_rs() {
        let mut group = Vec::new();
        put_element(&mut group, INFORMATION_VERSION, VR::OB, &[0, 1, 0, 0]);
        put_element(&mut group, MEDIA_STORAGE_SOP_CLASS_UID, VR::UI, b"1.2\0");
        put_element(&mut group, MEDIA_STORAGE_SOP_INSTANCE_UID, VR::UI, b"1.3\0");
        put_element(
            &mut group,
            TRANSFER_SYNTAX_UID,
            VR::UI,
            b"1.2.840.10008.1.2\0",
        );
        put_element(&mut group, IMPLEMENTATION_CLASS_UID, VR::UI, b"1.4\0");
        let mut bytes = vec![0; 128];
        bytes.extend_from_slice(b"DICM");
        put_element(
            &mut bytes,
            GROUP_LENGTH,
            VR::UL,
            &(group.len() as u32).to_le_bytes(),
        );
        bytes.extend_from_slice(&group);
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(matches!(error, Part10Error::Decode(_)), "{error}");
    }

    #[test]
    fn rejects_huge_group_length() {
        let mut bytes = encode_header(&sample()).unwrap();
        bytes[140..144].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
        assert!(matches!(
            read_meta(&mut bytes.as_slice()),
            Err(Part10Error::GroupTooLong { .. })
        ));
    }

    #[test]
    fn rejects_element_longer_than_group() {
        let mut bytes = encode_header(&sample()).unwrap();
        // The Media Storage SOP Class UID length field, after the version element.
        let class_length_at = 158 + 6;
        bytes[class_length_at..class_length_at + 2].copy_from_slice(&0xFFF0u16.to_le_bytes());
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(
            matches!(error, Part10Error::ElementTooLong { tag, length: 0xFFF0, .. } if tag == MEDIA_STORAGE_SOP_CLASS_UID),
            "{error}"
        );
    }

    #[test]
    fn truncated_meta() {
        let bytes = encode_header(&sample()).unwrap();
        for cut in [140, 150, bytes.len() - 1] {
            let error = read_meta(&mut &bytes[..cut]).unwrap_err();
            assert!(
                matches!(error, Part10Error::Truncated { .. }),
                "{cut}: {error}"
            );
        }
        // Too short for the preamble and prefix: not a Part 10 file at all.
        for cut in [0, 100, 131] {
            let error = read_meta(&mut &bytes[..cut]).unwrap_err();
            assert!(matches!(error, Part10Error::NotPart10), "{cut}: {error}");
        }
    }

    #[test]
    fn missing_group_length_is_tolerated() {
        let meta = sample();
        let with_length = encode_header(&meta).unwrap();
        let mut bytes = with_length[..132].to_vec();
        bytes.extend_from_slice(&with_length[144..]);
        let data_set_start = bytes.len() as u64;
        // The data set begins with (0008,0005).
        bytes.extend_from_slice(&[8, 0, 5, 0, b'C', b'S', 0, 0]);
        let (read, offset) = read_meta(&mut bytes.as_slice()).unwrap();
        assert_eq!(read, meta);
        assert_eq!(offset, data_set_start);
    }

    #[test]
    fn missing_required_element() {
        let meta = sample();
        let with_length = encode_header(&meta).unwrap();
        // Drop the transfer syntax element by rebuilding without it: easier to build by hand.
        let mut group = Vec::new();
        put_element(
            &mut group,
            INFORMATION_VERSION,
            VR::OB,
            &INFORMATION_VERSION_1,
        );
        put_element(&mut group, MEDIA_STORAGE_SOP_CLASS_UID, VR::UI, b"1.2\0");
        put_element(&mut group, MEDIA_STORAGE_SOP_INSTANCE_UID, VR::UI, b"1.3\0");
        let mut bytes = with_length[..132].to_vec();
        put_element(
            &mut bytes,
            GROUP_LENGTH,
            VR::UL,
            &(group.len() as u32).to_le_bytes(),
        );
        bytes.extend_from_slice(&group);
        let error = read_meta(&mut bytes.as_slice()).unwrap_err();
        assert!(
            matches!(error, Part10Error::MissingElement { tag, .. } if tag == TRANSFER_SYNTAX_UID),
            "{error}"
        );
    }

    #[test]
    fn part10_file_detection() {
        let dir = std::env::temp_dir().join(format!("dimsum-part10-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.dcm");
        std::fs::write(&good, encode_header(&sample()).unwrap()).unwrap();
        let short = dir.join("short.dcm");
        std::fs::write(&short, b"DICM").unwrap();
        let other = dir.join("other.dcm");
        std::fs::write(&other, vec![b'x'; 300]).unwrap();
        assert!(is_part10_file(&good).unwrap());
        assert!(!is_part10_file(&short).unwrap());
        assert!(!is_part10_file(&other).unwrap());
        assert!(is_part10_file(dir.join("absent.dcm")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
