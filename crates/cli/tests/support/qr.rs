//! The Query/Retrieve interop harness: real Q/R peers that we did not write, loaded with a known
//! data set, and DCMTK's own Q/R clients to drive them.
//!
//! - [`QrDataSet`]: a small archive (three patients, four studies, six series, eleven CT, MR and
//!   Secondary Capture instances, different dates, names with carets, a study with two
//!   modalities, one file in Implicit VR Little Endian), written once per test binary with
//!   dicom-object into cargo's target tmp dir, and described on the Rust side (patients,
//!   studies, series, instances and their files) so that tests compare what a peer answers with
//!   what was loaded.
//! - [`QrPeer`]: a Q/R SCP we did not write ([`QrPeerKind`]), started on a free port and
//!   loaded with DCMTK `storescu`: DCMTK `dcmqrscp` configured by the test (its AE title, a
//!   storage area, the move destinations in its host table), or pynetdicom's
//!   `python -m pynetdicom qrscp` with a generated config file (SQLite index through
//!   sqlalchemy, storage folder, AE title, port, move destinations).
//! - [`StorescpDestination`]: DCMTK `storescp` as a C-MOVE destination, with what it received.
//! - [`QrClient`]: DCMTK's `findscu`, `getscu` and `movescu` (the tools ours are compared
//!   with), ours and pynetdicom's apps (`python -m pynetdicom <app>`), run alike; C-FIND
//!   responses are extracted into files and read back with dicom-object ([`QrIdentifier`]).
//! - [`assert_received_instances`]: what a retrieve delivered against what was loaded (SOP
//!   Instance UIDs, pixel data bytes, and the whole data sets through `compare_datasets.py`).
//! - [`DimsumQrscp`] (`dimsum qrscp` serving a folder, e.g. a copy of the data set) and what
//!   only our clients do: [`dimsum_findscu`] (its text, `--json` and `-X` outputs read back as
//!   [`Match`]es) and [`dimsum_movescu_to_self`] (`--port`).
//! - [`RefusingStorescp`], a pynetdicom move destination that refuses chosen instances.
//! - [`LargeSeries`]: a series of many small instances (for C-CANCEL and the 10,000-match
//!   stream), written once and reused.
//!
//! Peer quirks the tests must respect (DCMTK 3.6.7, pynetdicom 3.0.4):
//! - dcmqrscp matches strictly hierarchically: a query below STUDY level must carry the unique
//!   keys of every level above (an IMAGE query needs the Study and the Series Instance UID;
//!   with the study key alone it fails with "unable to process"). It returns only the
//!   keys it indexes (e.g. no Modalities in Study).
//! - dcmqrscp crashes (SIGSEGV) after the first association in `--single-process` mode, so it
//!   runs in its default fork mode, in a process group of its own that is killed as a whole.
//! - pynetdicom's qrscp answers a C-FIND with one response per matching *instance* at every
//!   level: a STUDY query returns each study once per instance it holds. It also indexes only
//!   the Patient ID and Name, the study, series and instance UIDs, Study Date and Time,
//!   Accession Number, Study ID, Modality, Series and Instance Number.
//! - DCMTK tools need `TCP_NODELAY=1` (set by [`super::dcmtk`]) or each round trip waits ~40 ms.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use dimsum_net::dataset::dicom_core::header::Header;
use dimsum_net::dataset::dicom_core::value::Value;
use dimsum_net::dataset::dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::{self, FileMetaTableBuilder, InMemDicomObject};

use super::{
    EXPLICIT_VR_LE, Finished, IMPLICIT_VR_LE, LOCALHOST, ProcessGuard, RUN_TIMEOUT,
    STARTUP_TIMEOUT, assert_datasets_equal, dcmtk, files_under, free_port, peer_missing,
    python_script, run, scratch_dir, start_dcmtk_storescp_into,
};

/// CT Image Storage (PS3.4 Annex B).
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// MR Image Storage (PS3.4 Annex B).
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Secondary Capture Image Storage (PS3.4 Annex B).
pub const SECONDARY_CAPTURE_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// The root of every UID in the Q/R test data (pydicom's test root, then a branch of ours).
pub const QR_UID_ROOT: &str = "1.2.826.0.1.3680043.8.498.7007";
/// The STUDY-level keys of the study finds (`-k` values): every one of them is indexed by both
/// peers we did not write.
pub const STUDY_KEYS: &[&str] = &[
    "QueryRetrieveLevel=STUDY",
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
];
/// The calling AE title of the DCMTK clients run by this harness.
pub const DCMTK_CLIENT_AE: &str = "DCMTKSCU";
/// The calling AE title used to load the peers' storage.
pub const LOADER_AE: &str = "QRLOADER";

// ---------------------------------------------------------------------------------------------
// The test data set
// ---------------------------------------------------------------------------------------------

/// A patient of the Q/R test data (PS3.4 C.6.1.1.2, the Patient level).
#[derive(Clone, Debug)]
pub struct QrPatient {
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub studies: Vec<QrStudy>,
}

/// A study of the Q/R test data (PS3.4 C.6.1.1.3, the Study level).
#[derive(Clone, Debug)]
pub struct QrStudy {
    pub study_instance_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub study_id: String,
    pub description: String,
    pub referring_physician: String,
    pub series: Vec<QrSeries>,
}

/// A series of the Q/R test data (PS3.4 C.6.1.1.4, the Series level).
#[derive(Clone, Debug)]
pub struct QrSeries {
    pub series_instance_uid: String,
    pub modality: String,
    pub series_number: u32,
    pub description: String,
    pub instances: Vec<QrInstance>,
}

/// One instance of the Q/R test data (PS3.4 C.6.1.1.5, the Composite Object Instance level)
/// and the file it was written to.
#[derive(Clone, Debug)]
pub struct QrInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub instance_number: u32,
    pub transfer_syntax: String,
    pub rows: u16,
    pub columns: u16,
    pub bits_allocated: u16,
    pub path: PathBuf,
}

/// An instance with the patient, study and series it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct InstanceRef<'a> {
    pub patient: &'a QrPatient,
    pub study: &'a QrStudy,
    pub series: &'a QrSeries,
    pub instance: &'a QrInstance,
}

/// A study with its patient.
#[derive(Clone, Copy, Debug)]
pub struct StudyRef<'a> {
    pub patient: &'a QrPatient,
    pub study: &'a QrStudy,
}

/// The Q/R test archive: what was generated, where, and how it hangs together.
#[derive(Clone, Debug)]
pub struct QrDataSet {
    /// The folder holding every file of the data set.
    pub dir: PathBuf,
    pub patients: Vec<QrPatient>,
}

impl QrStudy {
    /// Every instance of the study, series by series.
    pub fn instances(&self) -> impl Iterator<Item = &QrInstance> {
        self.series
            .iter()
            .flat_map(|series| series.instances.iter())
    }

    /// The distinct modalities of the study's series (Modalities in Study).
    pub fn modalities(&self) -> BTreeSet<&str> {
        self.series
            .iter()
            .map(|series| series.modality.as_str())
            .collect()
    }

    /// The SOP Instance UIDs of the study.
    pub fn sop_instance_uids(&self) -> BTreeSet<String> {
        self.instances()
            .map(|instance| instance.sop_instance_uid.clone())
            .collect()
    }
}

impl QrSeries {
    /// The SOP Instance UIDs of the series.
    pub fn sop_instance_uids(&self) -> BTreeSet<String> {
        self.instances
            .iter()
            .map(|instance| instance.sop_instance_uid.clone())
            .collect()
    }

    /// `SOP Instance UID → Instance Number` of its instances, as an IMAGE-level find returns
    /// them.
    pub fn instance_numbers(&self) -> BTreeMap<String, String> {
        self.instances
            .iter()
            .map(|instance| {
                (
                    instance.sop_instance_uid.clone(),
                    instance.instance_number.to_string(),
                )
            })
            .collect()
    }
}

impl QrDataSet {
    /// The data set, generated once per test binary into `<target tmp>/qr-data` (rewritten
    /// every run, each file atomically, so concurrent runs see whole files).
    pub fn get() -> &'static QrDataSet {
        static DATA: OnceLock<QrDataSet> = OnceLock::new();
        DATA.get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qr-data");
            QrDataSet::generate(&dir)
        })
    }

    /// Writes the data set into `dir` and returns its description.
    pub fn generate(dir: &Path) -> QrDataSet {
        fs::create_dir_all(dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let data = QrDataSet {
            dir: dir.to_path_buf(),
            patients: catalogue(dir),
        };
        for item in data.instances() {
            write_instance(&item);
        }
        data
    }

    /// Every study, with its patient.
    pub fn studies(&self) -> Vec<StudyRef<'_>> {
        self.patients
            .iter()
            .flat_map(|patient| {
                patient
                    .studies
                    .iter()
                    .map(move |study| StudyRef { patient, study })
            })
            .collect()
    }

    /// Every instance, with its patient, study and series.
    pub fn instances(&self) -> Vec<InstanceRef<'_>> {
        self.studies()
            .into_iter()
            .flat_map(|StudyRef { patient, study }| {
                study.series.iter().flat_map(move |series| {
                    series.instances.iter().map(move |instance| InstanceRef {
                        patient,
                        study,
                        series,
                        instance,
                    })
                })
            })
            .collect()
    }

    /// The Study Instance UIDs of the data set.
    pub fn study_uids(&self) -> BTreeSet<String> {
        self.studies()
            .iter()
            .map(|item| item.study.study_instance_uid.clone())
            .collect()
    }

    /// The SOP Instance UIDs of the data set.
    pub fn sop_instance_uids(&self) -> BTreeSet<String> {
        self.instances()
            .iter()
            .map(|item| item.instance.sop_instance_uid.clone())
            .collect()
    }

    /// The study with this Study Instance UID (panics when there is none).
    pub fn study(&self, study_instance_uid: &str) -> StudyRef<'_> {
        self.studies()
            .into_iter()
            .find(|item| item.study.study_instance_uid == study_instance_uid)
            .unwrap_or_else(|| panic!("no study {study_instance_uid} in the Q/R data set"))
    }

    /// The instance with this SOP Instance UID, if the data set has it.
    pub fn instance(&self, sop_instance_uid: &str) -> Option<InstanceRef<'_>> {
        self.instances()
            .into_iter()
            .find(|item| item.instance.sop_instance_uid == sop_instance_uid)
    }

    /// The study whose series have more than one modality (CT and a secondary capture).
    pub fn two_modality_study(&self) -> StudyRef<'_> {
        self.studies()
            .into_iter()
            .find(|item| item.study.modalities().len() > 1)
            .expect("the Q/R data set has a study with two modalities")
    }

    /// Every file of the data set.
    pub fn files(&self) -> Vec<&Path> {
        self.instances()
            .into_iter()
            .map(|item| item.instance.path.as_path())
            .collect()
    }
}

/// What the data set holds: the single place the test archive is described.
fn catalogue(dir: &Path) -> Vec<QrPatient> {
    struct SeriesSpec {
        modality: &'static str,
        sop_class: &'static str,
        description: &'static str,
        instances: u32,
        /// Index (0-based) of an instance written in Implicit VR LE; the others are explicit.
        implicit: Option<u32>,
    }
    struct StudySpec {
        date: &'static str,
        time: &'static str,
        accession: &'static str,
        id: &'static str,
        description: &'static str,
        referring: &'static str,
        series: &'static [SeriesSpec],
    }
    struct PatientSpec {
        id: &'static str,
        name: &'static str,
        birth_date: &'static str,
        sex: &'static str,
        studies: &'static [StudySpec],
    }
    const CT: &str = CT_IMAGE_STORAGE;
    const MR: &str = MR_IMAGE_STORAGE;
    const SC: &str = SECONDARY_CAPTURE_IMAGE_STORAGE;
    const PATIENTS: &[PatientSpec] = &[
        PatientSpec {
            id: "QR-0001",
            name: "Doe^Jane",
            birth_date: "19700101",
            sex: "F",
            studies: &[
                StudySpec {
                    date: "20240102",
                    time: "101500",
                    accession: "QRACC0101",
                    id: "101",
                    description: "CT CHEST WITH DOSE REPORT",
                    referring: "House^Gregory",
                    series: &[
                        SeriesSpec {
                            modality: "CT",
                            sop_class: CT,
                            description: "AXIAL 5mm",
                            instances: 3,
                            implicit: None,
                        },
                        SeriesSpec {
                            modality: "OT",
                            sop_class: SC,
                            description: "DOSE REPORT",
                            instances: 1,
                            implicit: None,
                        },
                    ],
                },
                StudySpec {
                    date: "20230515",
                    time: "083000",
                    accession: "QRACC0102",
                    id: "102",
                    description: "MR BRAIN",
                    referring: "Cuddy^Lisa",
                    series: &[SeriesSpec {
                        modality: "MR",
                        sop_class: MR,
                        description: "T1 SAG",
                        instances: 2,
                        implicit: Some(1),
                    }],
                },
            ],
        },
        PatientSpec {
            id: "QR-0002",
            name: "Smith^John^Quincy^Dr^Jr",
            birth_date: "19551231",
            sex: "M",
            studies: &[StudySpec {
                date: "20220301",
                time: "154510",
                accession: "QRACC0201",
                id: "201",
                description: "MR KNEE",
                referring: "Wilson^James",
                series: &[
                    SeriesSpec {
                        modality: "MR",
                        sop_class: MR,
                        description: "PD FS COR",
                        instances: 2,
                        implicit: None,
                    },
                    SeriesSpec {
                        modality: "MR",
                        sop_class: MR,
                        description: "T2 AX",
                        instances: 1,
                        implicit: None,
                    },
                ],
            }],
        },
        PatientSpec {
            id: "QR-0003",
            name: "Garcia Lopez^Maria^Jose",
            birth_date: "19891120",
            sex: "F",
            studies: &[StudySpec {
                date: "20210707",
                time: "070707",
                accession: "QRACC0301",
                id: "301",
                description: "OUTSIDE IMAGES",
                referring: "",
                series: &[SeriesSpec {
                    modality: "OT",
                    sop_class: SC,
                    description: "SCANNED FILMS",
                    instances: 2,
                    implicit: None,
                }],
            }],
        },
    ];

    PATIENTS
        .iter()
        .enumerate()
        .map(|(p, patient)| QrPatient {
            patient_id: patient.id.to_owned(),
            patient_name: patient.name.to_owned(),
            birth_date: patient.birth_date.to_owned(),
            sex: patient.sex.to_owned(),
            studies: patient
                .studies
                .iter()
                .enumerate()
                .map(|(s, study)| QrStudy {
                    study_instance_uid: format!("{QR_UID_ROOT}.1.{}.{}", p + 1, s + 1),
                    study_date: study.date.to_owned(),
                    study_time: study.time.to_owned(),
                    accession_number: study.accession.to_owned(),
                    study_id: study.id.to_owned(),
                    description: study.description.to_owned(),
                    referring_physician: study.referring.to_owned(),
                    series: study
                        .series
                        .iter()
                        .enumerate()
                        .map(|(r, series)| {
                            let series_key = format!("{}.{}.{}", p + 1, s + 1, r + 1);
                            QrSeries {
                                series_instance_uid: format!("{QR_UID_ROOT}.2.{series_key}"),
                                modality: series.modality.to_owned(),
                                series_number: (r + 1) as u32,
                                description: series.description.to_owned(),
                                instances: (0..series.instances)
                                    .map(|i| {
                                        let implicit = series.implicit == Some(i);
                                        let (rows, columns, bits) = match series.sop_class {
                                            SC => (16, 16, 8),
                                            _ => (32, 32, 16),
                                        };
                                        let uid = format!("{QR_UID_ROOT}.3.{series_key}.{}", i + 1);
                                        QrInstance {
                                            sop_class_uid: series.sop_class.to_owned(),
                                            path: dir.join(format!(
                                                "{}_{series_key}.{}.dcm",
                                                series.modality.to_lowercase(),
                                                i + 1
                                            )),
                                            sop_instance_uid: uid,
                                            instance_number: i + 1,
                                            transfer_syntax: if implicit {
                                                IMPLICIT_VR_LE
                                            } else {
                                                EXPLICIT_VR_LE
                                            }
                                            .to_owned(),
                                            rows,
                                            columns,
                                            bits_allocated: bits,
                                        }
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// Deterministic pixel values for an instance: splitmix64 seeded by its SOP Instance UID.
fn pixel_data(instance: &QrInstance) -> Vec<u8> {
    let mut state = instance
        .sop_instance_uid
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let pixels = usize::from(instance.rows) * usize::from(instance.columns);
    if instance.bits_allocated == 8 {
        (0..pixels).map(|_| (next() & 0xff) as u8).collect()
    } else {
        // 12 bits stored in 16 allocated, little endian words
        (0..pixels)
            .flat_map(|_| ((next() & 0x0fff) as u16).to_le_bytes())
            .collect()
    }
}

/// Writes one instance of the data set (atomically: a hidden partial file, then a rename).
fn write_instance(item: &InstanceRef<'_>) {
    let InstanceRef {
        patient,
        study,
        series,
        instance,
    } = *item;
    let text =
        |tag: Tag, vr: VR, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let word = |tag: Tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let mut object = InMemDicomObject::new_empty();
    let mut elements = vec![
        text(tags::SOP_CLASS_UID, VR::UI, &instance.sop_class_uid),
        text(tags::SOP_INSTANCE_UID, VR::UI, &instance.sop_instance_uid),
        text(tags::STUDY_DATE, VR::DA, &study.study_date),
        text(tags::CONTENT_DATE, VR::DA, &study.study_date),
        text(tags::STUDY_TIME, VR::TM, &study.study_time),
        text(tags::CONTENT_TIME, VR::TM, &study.study_time),
        text(tags::ACCESSION_NUMBER, VR::SH, &study.accession_number),
        text(tags::MODALITY, VR::CS, &series.modality),
        text(tags::MANUFACTURER, VR::LO, "dimsum"),
        text(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &study.referring_physician,
        ),
        text(tags::STUDY_DESCRIPTION, VR::LO, &study.description),
        text(tags::SERIES_DESCRIPTION, VR::LO, &series.description),
        text(tags::PATIENT_NAME, VR::PN, &patient.patient_name),
        text(tags::PATIENT_ID, VR::LO, &patient.patient_id),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, &patient.birth_date),
        text(tags::PATIENT_SEX, VR::CS, &patient.sex),
        text(tags::STUDY_INSTANCE_UID, VR::UI, &study.study_instance_uid),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &series.series_instance_uid,
        ),
        text(tags::STUDY_ID, VR::SH, &study.study_id),
        text(
            tags::SERIES_NUMBER,
            VR::IS,
            &series.series_number.to_string(),
        ),
        text(
            tags::INSTANCE_NUMBER,
            VR::IS,
            &instance.instance_number.to_string(),
        ),
        word(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        word(tags::ROWS, instance.rows),
        word(tags::COLUMNS, instance.columns),
        word(tags::BITS_ALLOCATED, instance.bits_allocated),
        word(
            tags::BITS_STORED,
            if instance.bits_allocated == 8 { 8 } else { 12 },
        ),
        word(
            tags::HIGH_BIT,
            if instance.bits_allocated == 8 { 7 } else { 11 },
        ),
        word(tags::PIXEL_REPRESENTATION, 0),
    ];
    if instance.sop_class_uid == SECONDARY_CAPTURE_IMAGE_STORAGE {
        elements.push(text(tags::CONVERSION_TYPE, VR::CS, "WSD"));
    } else {
        let frame_of_reference = series.series_instance_uid.replacen(".2.", ".4.", 1);
        elements.push(text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"));
        elements.push(text(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &frame_of_reference,
        ));
        elements.push(text(tags::SLICE_THICKNESS, VR::DS, "5"));
    }
    let pixels = pixel_data(instance);
    elements.push(if instance.bits_allocated == 8 {
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels))
    } else {
        let words: Vec<u16> = pixels
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(words.into()))
    });
    for element in elements {
        object.put(element);
    }
    let file = object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(instance.transfer_syntax.as_str()))
        .unwrap_or_else(|error| panic!("file meta of {}: {error}", instance.sop_instance_uid));
    let name = instance
        .path
        .file_name()
        .expect("instance paths have a file name")
        .to_string_lossy();
    let partial = instance
        .path
        .with_file_name(format!(".{name}.{}.partial", std::process::id()));
    file.write_to_file(&partial)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", partial.display()));
    fs::rename(&partial, &instance.path)
        .unwrap_or_else(|error| panic!("cannot rename to {}: {error}", instance.path.display()));
}

// ---------------------------------------------------------------------------------------------
// Reading DICOM files back
// ---------------------------------------------------------------------------------------------

/// The top-level elements of a data set read from a file (a C-FIND response extracted by a
/// tool, or a retrieved instance), as trimmed text: strings as they are, numbers in their
/// decimal form, multiple values joined with `\`. Sequences and binary values are left out.
#[derive(Clone, Debug)]
pub struct QrIdentifier {
    pub path: PathBuf,
    pub elements: BTreeMap<Tag, String>,
}

impl QrIdentifier {
    /// Reads `path` (a Part 10 file) with dicom-object.
    pub fn read(path: &Path) -> QrIdentifier {
        let object = dicom_object::open_file(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let elements = object
            .iter()
            .filter(|element| !matches!(element.vr(), VR::OB | VR::OW | VR::UN | VR::SQ))
            .filter_map(|element| match element.value() {
                Value::Primitive(value) => Some((element.tag(), value.to_str().into_owned())),
                _ => None,
            })
            .collect();
        QrIdentifier {
            path: path.to_path_buf(),
            elements,
        }
    }

    /// The value of `tag`, if the data set has it.
    pub fn get(&self, tag: Tag) -> Option<&str> {
        self.elements.get(&tag).map(String::as_str)
    }

    /// The value of `tag`; panics (showing the data set) when it is missing.
    #[track_caller]
    pub fn require(&self, tag: Tag) -> &str {
        self.get(tag)
            .unwrap_or_else(|| panic!("no {tag} in {}: {:#?}", self.path.display(), self.elements))
    }
}

/// The SOP Instance UID of every DICOM file under `dir` (recursively), with its path. Files
/// that are not DICOM (e.g. dcmqrscp's `index.dat`) are skipped.
pub fn sop_instance_uids_in(dir: &Path) -> BTreeMap<String, PathBuf> {
    files_under(dir)
        .into_iter()
        .filter_map(|path| {
            let object = dicom_object::OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(&path)
                .ok()?;
            let uid = object.element(tags::SOP_INSTANCE_UID).ok()?.to_str().ok()?;
            Some((uid.into_owned(), path))
        })
        .collect()
}

/// The Pixel Data of a file as little-endian bytes.
pub fn pixel_data_bytes(path: &Path) -> Vec<u8> {
    let object = dicom_object::open_file(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let element = object
        .element(tags::PIXEL_DATA)
        .unwrap_or_else(|error| panic!("no pixel data in {}: {error}", path.display()));
    element
        .to_bytes()
        .unwrap_or_else(|error| panic!("pixel data of {}: {error}", path.display()))
        .into_owned()
}

/// Asserts that `received_dir` holds exactly the `expected` instances: the same SOP Instance
/// UIDs (no more, no fewer), the same pixel data bytes (read with dicom-object), and data sets
/// equal element by element (`tests/peers/compare_datasets.py`, decoded values, so a transfer
/// syntax change still compares equal). `dir` is the test's scratch folder; `context` is shown
/// on failure (usually the peers' logs).
#[track_caller]
pub fn assert_received_instances(
    dir: &Path,
    expected: &[&QrInstance],
    received_dir: &Path,
    context: &str,
) {
    let received = sop_instance_uids_in(received_dir);
    let expected_uids: BTreeSet<&str> = expected
        .iter()
        .map(|instance| instance.sop_instance_uid.as_str())
        .collect();
    let received_uids: BTreeSet<&str> = received.keys().map(String::as_str).collect();
    assert_eq!(
        received_uids,
        expected_uids,
        "SOP Instance UIDs received in {} differ from the expected ones\n{context}",
        received_dir.display()
    );
    assert_eq!(
        files_under(received_dir).len(),
        expected.len(),
        "files in {} besides the expected instances\n{context}",
        received_dir.display()
    );
    for instance in expected {
        let path = &received[&instance.sop_instance_uid];
        assert!(
            pixel_data_bytes(path) == pixel_data_bytes(&instance.path),
            "pixel data of {} ({}) differs from {}\n{context}",
            instance.sop_instance_uid,
            path.display(),
            instance.path.display()
        );
    }
    // compare_datasets.py matches folders by SOP Instance UID: give it exactly the expected files
    let sent_dir = dir.join(format!(
        "expected-{}",
        received_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    if sent_dir.exists() {
        fs::remove_dir_all(&sent_dir).expect("clear the expected folder");
    }
    fs::create_dir_all(&sent_dir).expect("create the expected folder");
    for instance in expected {
        let name = instance.path.file_name().expect("instance file name");
        fs::copy(&instance.path, sent_dir.join(name)).expect("copy an expected instance");
    }
    assert_datasets_equal(dir, &sent_dir, received_dir, &[], context);
}

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

/// An application entity on the network: AE title, host and port (a Q/R SCP to call, or a move
/// destination to configure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AeAddress {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl AeAddress {
    /// `ae_title` on 127.0.0.1:`port`.
    pub fn local(ae_title: &str, port: u16) -> AeAddress {
        AeAddress {
            ae_title: ae_title.to_owned(),
            host: LOCALHOST.to_owned(),
            port,
        }
    }
}

/// Checks that `ae_title` is a valid AE title (PS3.5 §6.2, AE: 1 to 16 characters of the
/// default repertoire, no backslash, not only spaces) that needs no quoting in a peer's
/// configuration file.
fn check_ae_title(ae_title: &str) {
    assert!(
        !ae_title.is_empty()
            && ae_title.len() <= 16
            && ae_title
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'),
        "AE title {ae_title:?} is not one the Q/R harness writes into a config file"
    );
}

/// Loads `files` into the Storage SCP at `peer` with DCMTK `storescu` (one association),
/// and checks that every file was answered with Success.
fn load_with_storescu(dir: &Path, name: &str, peer: &AeAddress, files: &[&Path]) -> Option<()> {
    if files.is_empty() {
        return Some(());
    }
    let mut command = dcmtk("storescu")?;
    command
        .args(["-v", "-aet", LOADER_AE, "-aec", &peer.ae_title])
        .arg(&peer.host)
        .arg(peer.port.to_string())
        .args(files);
    let finished = run(name, dir, command, RUN_TIMEOUT);
    finished.assert_code(0);
    let successes = finished
        .output()
        .lines()
        .filter(|line| line.contains("Received Store Response (Success)"))
        .count();
    assert_eq!(
        successes,
        files.len(),
        "storescu stored {successes} of {} files into {}\n{}",
        files.len(),
        peer.ae_title,
        finished.describe()
    );
    Some(())
}

/// Asserts that an SCP accepts an association from DCMTK `echoscu` (it is up and knows its AE
/// title), showing `logs` otherwise.
fn assert_accepts_echo(dir: &Path, peer: &AeAddress, logs: impl Fn() -> String) -> Option<()> {
    let mut command = dcmtk("echoscu")?;
    command
        .args(["-aet", DCMTK_CLIENT_AE, "-aec", &peer.ae_title])
        .arg(&peer.host)
        .arg(peer.port.to_string());
    let finished = run("echoscu-ready", dir, command, RUN_TIMEOUT);
    assert_eq!(
        finished.code(),
        Some(0),
        "{} on port {} does not accept a C-ECHO association\n{}\n{}",
        peer.ae_title,
        peer.port,
        finished.describe(),
        logs()
    );
    Some(())
}

/// Which Q/R SCP we did not write a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrPeerKind {
    /// DCMTK `dcmqrscp`.
    Dcmqrscp,
    /// pynetdicom's Q/R SCP application, `python -m pynetdicom qrscp`.
    Pynetdicom,
}

impl QrPeerKind {
    /// The AE title the tests give it.
    pub fn ae_title(self) -> &'static str {
        match self {
            QrPeerKind::Dcmqrscp => "DCMQRSCP",
            QrPeerKind::Pynetdicom => "PYQRSCP",
        }
    }
}

/// A running Q/R SCP we did not write (PS3.4 Annex C), with a configuration file written by the
/// test, loaded through its own Storage SCP; its process group is killed on drop.
pub struct QrPeer {
    kind: QrPeerKind,
    process: ProcessGuard,
    address: AeAddress,
    config: PathBuf,
    storage: PathBuf,
    dir: PathBuf,
}

impl QrPeer {
    /// Writes the configuration of `kind` into `dir` and starts it on a free port, knowing
    /// `destinations` as C-MOVE destinations, then waits until it accepts an association.
    /// `None` (after `SKIP:`) when the peer (or DCMTK `echoscu`) is missing.
    ///
    /// - dcmqrscp: `<dir>/dcmqrscp.cfg` (the AE with the read/write storage area
    ///   `<dir>/dcmqrscp-storage/<AE>` open to any peer, the destinations in the host table);
    ///   `dcmqrscp -d -c <cfg> <port>` with `TCP_NODELAY=1`. It listens on all interfaces
    ///   (DCMTK 3.6.7's dcmqrscp cannot bind one) and is called on 127.0.0.1.
    /// - pynetdicom: `<dir>/qrscp.ini` (AE title, port, bind address 127.0.0.1, the instance
    ///   folder `<dir>/pynetdicom-qrscp/instances` and its SQLite index, one section per
    ///   destination); `python -m pynetdicom qrscp -v -c <ini>`.
    pub fn start(kind: QrPeerKind, dir: &Path, destinations: &[AeAddress]) -> Option<QrPeer> {
        let ae_title = kind.ae_title();
        check_ae_title(ae_title);
        let port = free_port();
        let (name, mut command, config, storage) = match kind {
            QrPeerKind::Dcmqrscp => {
                let storage = dir.join("dcmqrscp-storage").join(ae_title);
                fs::create_dir_all(&storage).expect("create the dcmqrscp storage area");
                let config = dir.join("dcmqrscp.cfg");
                let text = dcmqrscp_config(ae_title, &storage, port, destinations);
                fs::write(&config, text).expect("write dcmqrscp.cfg");
                let mut command = dcmtk("dcmqrscp")?;
                command
                    .arg("-d")
                    .arg("-c")
                    .arg(&config)
                    .arg(port.to_string());
                ("dcmqrscp", command, config, storage)
            }
            QrPeerKind::Pynetdicom => {
                let mut command = qrscp_python()?;
                let home = dir.join("pynetdicom-qrscp");
                let instances = home.join("instances");
                fs::create_dir_all(&instances).expect("create the qrscp instance folder");
                let config = dir.join("qrscp.ini");
                let database = home.join("index.sqlite");
                let text = qrscp_config(ae_title, port, &instances, &database, destinations);
                fs::write(&config, text).expect("write qrscp.ini");
                command
                    .args(["-u", "-m", "pynetdicom", "qrscp", "-v", "-c"])
                    .arg(&config);
                ("pynetdicom-qrscp", command, config, instances)
            }
        };
        // its own process group: the children dcmqrscp forks per association die with it
        command.process_group(0);
        let mut process = ProcessGuard::spawn(name, dir, command);
        process.wait_for_listening(port, STARTUP_TIMEOUT);
        let server = QrPeer {
            kind,
            process,
            address: AeAddress::local(ae_title, port),
            config,
            storage,
            dir: dir.to_path_buf(),
        };
        assert_accepts_echo(dir, &server.address, || server.describe())?;
        Some(server)
    }

    /// [`QrPeer::start`], then loads the whole Q/R data set into it.
    pub fn start_loaded(
        kind: QrPeerKind,
        dir: &Path,
        destinations: &[AeAddress],
    ) -> Option<QrPeer> {
        let peer = QrPeer::start(kind, dir, destinations)?;
        peer.load_data_set(QrDataSet::get());
        Some(peer)
    }

    /// Starts a DCMTK storescp as move destination, then `kind` in `dir` loaded and knowing
    /// it (and `more` destinations). `None` (after `SKIP:`) when either peer is missing.
    pub fn start_loaded_with_storescp(
        kind: QrPeerKind,
        dir: &Path,
        more: &[AeAddress],
    ) -> Option<(StorescpDestination, QrPeer)> {
        let storescp = StorescpDestination::start(dir, StorescpDestination::AE_TITLE, &[])?;
        let mut destinations = vec![storescp.address().clone()];
        destinations.extend_from_slice(more);
        let peer = QrPeer::start_loaded(kind, dir, &destinations)?;
        Some((storescp, peer))
    }

    pub fn kind(&self) -> QrPeerKind {
        self.kind
    }

    /// Where to call it.
    pub fn address(&self) -> &AeAddress {
        &self.address
    }

    /// The configuration file it runs with.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The folder it stores instances into (dcmqrscp's storage area with its `index.dat`,
    /// qrscp's instance folder with one file per SOP Instance UID).
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// Stores `files` into it with DCMTK `storescu` and checks that its storage now holds each
    /// of their SOP instances.
    pub fn load(&self, files: &[&Path]) {
        let name = self.kind.ae_title().to_lowercase();
        let label = format!("storescu-load-{name}");
        let Some(()) = load_with_storescu(&self.dir, &label, &self.address, files) else {
            panic!("storescu disappeared after {name} started");
        };
        assert_stored(files, &self.storage, &self.describe());
    }

    /// Stores the whole Q/R data set into it.
    pub fn load_data_set(&self, data: &QrDataSet) {
        self.load(&data.files());
    }

    /// Its configuration and logs, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- {} ---\n{}\n{}",
            self.config.display(),
            fs::read_to_string(&self.config).unwrap_or_default(),
            self.process.describe()
        )
    }
}

impl Drop for QrPeer {
    fn drop(&mut self) {
        // the whole group: the listener and any child still serving an association
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.process.id())])
            .stderr(Stdio::null())
            .status();
        self.process.kill();
    }
}

/// The text of a dcmqrscp configuration file (DCMTK's dcmqrcnf format: global parameters, then
/// the HostTable, VendorTable and AETable blocks).
pub fn dcmqrscp_config(
    ae_title: &str,
    storage: &Path,
    port: u16,
    destinations: &[AeAddress],
) -> String {
    let storage = storage.to_string_lossy();
    assert!(
        !storage.contains(char::is_whitespace),
        "dcmqrscp storage areas cannot contain spaces: {storage}"
    );
    let mut hosts = String::new();
    for (index, destination) in destinations.iter().enumerate() {
        check_ae_title(&destination.ae_title);
        hosts.push_str(&format!(
            "destination{index} = ({}, {}, {})\n",
            destination.ae_title, destination.host, destination.port
        ));
    }
    format!(
        "# written by the dimsum Q/R interop harness\n\
         NetworkTCPPort  = {port}\n\
         MaxPDUSize      = 16384\n\
         MaxAssociations = 16\n\
         \n\
         HostTable BEGIN\n\
         {hosts}\
         HostTable END\n\
         \n\
         VendorTable BEGIN\n\
         VendorTable END\n\
         \n\
         AETable BEGIN\n\
         {ae_title} {storage} RW (10000, 1024mb) ANY\n\
         AETable END\n"
    )
}

/// Asserts that the SOP instances of `files` are stored under `storage`.
#[track_caller]
fn assert_stored(files: &[&Path], storage: &Path, context: &str) {
    let stored = sop_instance_uids_in(storage);
    for file in files {
        let loaded = QrIdentifier::read(file);
        let loaded = loaded.require(tags::SOP_INSTANCE_UID);
        assert!(
            stored.contains_key(loaded),
            "{} ({loaded}) was sent but is not in the storage area {}\n{context}",
            file.display(),
            storage.display()
        );
    }
}

/// The peer environment's Python, checked once to have what the qrscp app needs (sqlalchemy,
/// installed by `scripts/setup-peers`); `None` after `SKIP:` otherwise.
fn qrscp_python() -> Option<Command> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    // support::python_script finds (and checks) the peer environment's interpreter: reuse it
    let python = python_script("tests/peers/compare_datasets.py")?
        .get_program()
        .to_owned();
    let checked = CHECK.get_or_init(|| {
        let probe = Command::new(&python)
            .args(["-c", "import sqlalchemy, pynetdicom.apps.qrscp.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|error| format!("cannot run {}: {error}", python.to_string_lossy()))?;
        if probe.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pynetdicom's qrscp app cannot load (sqlalchemy missing?): {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ))
        }
    });
    match checked {
        Ok(()) => Some(Command::new(python)),
        Err(why) => peer_missing(why),
    }
}

/// The text of a qrscp configuration file (Python's configparser INI: the application settings
/// in `[DEFAULT]`, then one section per move destination named by its AE title).
fn qrscp_config(
    ae_title: &str,
    port: u16,
    instances: &Path,
    database: &Path,
    destinations: &[AeAddress],
) -> String {
    let mut text = format!(
        "# written by the dimsum Q/R interop harness\n\
         [DEFAULT]\n\
         ae_title: {ae_title}\n\
         port: {port}\n\
         max_pdu: 16382\n\
         acse_timeout: 30\n\
         dimse_timeout: 30\n\
         network_timeout: 30\n\
         bind_address: {LOCALHOST}\n\
         instance_location: {}\n\
         database_location: {}\n\
         log_identifier: True\n",
        instances.display(),
        database.display()
    );
    for destination in destinations {
        check_ae_title(&destination.ae_title);
        text.push_str(&format!(
            "\n[{}]\naddress: {}\nport: {}\n",
            destination.ae_title, destination.host, destination.port
        ));
    }
    text
}

/// DCMTK `storescp` as a C-MOVE destination (PS3.4 Annex B), storing into a folder of its own;
/// killed on drop.
pub struct StorescpDestination {
    process: ProcessGuard,
    address: AeAddress,
    output: PathBuf,
}

impl StorescpDestination {
    /// The AE title tests give it unless they need another.
    pub const AE_TITLE: &'static str = "STORESCP";

    /// Starts `storescp -d -aet <ae_title> -od <dir>/<ae_title>-received <args> <port>` on a
    /// free port (all interfaces: DCMTK 3.6.7's storescp cannot bind one) and waits until it
    /// listens. `None` (after `SKIP:`) when DCMTK is missing.
    pub fn start(dir: &Path, ae_title: &str, args: &[&str]) -> Option<StorescpDestination> {
        check_ae_title(ae_title);
        let port = free_port();
        let output = dir.join(format!("{}-received", ae_title.to_lowercase()));
        let mut all_args = vec!["-aet", ae_title];
        all_args.extend_from_slice(args);
        let process = start_dcmtk_storescp_into(dir, &output, port, &all_args)?;
        Some(StorescpDestination {
            process,
            address: AeAddress::local(ae_title, port),
            output,
        })
    }

    /// Its address, to configure it as a move destination.
    pub fn address(&self) -> &AeAddress {
        &self.address
    }

    /// The folder it stores into.
    pub fn output_dir(&self) -> &Path {
        &self.output
    }

    /// What it received so far: SOP Instance UID and file, read from the files.
    pub fn received(&self) -> BTreeMap<String, PathBuf> {
        sop_instance_uids_in(&self.output)
    }

    /// The SOP Instance UIDs it received so far.
    pub fn received_sop_instance_uids(&self) -> BTreeSet<String> {
        self.received().into_keys().collect()
    }

    /// Asserts that it received exactly the instances of `study`, data sets equal to the
    /// loaded files (see [`assert_received_instances`]).
    #[track_caller]
    pub fn assert_received_study(&self, dir: &Path, study: &QrStudy, context: &str) {
        assert_eq!(
            self.received_sop_instance_uids(),
            study.sop_instance_uids(),
            "instances at {}\n{context}",
            self.address.ae_title
        );
        let expected: Vec<&QrInstance> = study.instances().collect();
        assert_received_instances(dir, &expected, &self.output, context);
    }

    /// Its logs, for failure messages.
    pub fn describe(&self) -> String {
        self.process.describe()
    }
}

// ---------------------------------------------------------------------------------------------
// DCMTK's Q/R clients
// ---------------------------------------------------------------------------------------------

/// The information model options of DCMTK's findscu/getscu/movescu (the same flags for ours
/// and pynetdicom's apps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrModel {
    /// `-P`: Patient Root (PS3.4 C.6.1).
    PatientRoot,
    /// `-S`: Study Root (PS3.4 C.6.2).
    StudyRoot,
    /// `-W`: Modality Worklist (PS3.4 K.6.1), C-FIND only.
    ModalityWorklist,
}

impl QrModel {
    /// The command-line flag that selects the model.
    pub fn flag(self) -> &'static str {
        match self {
            QrModel::PatientRoot => "-P",
            QrModel::StudyRoot => "-S",
            QrModel::ModalityWorklist => "-W",
        }
    }
}

/// Whose Q/R client a test runs: DCMTK's tools, ours or pynetdicom's apps
/// (`python -u -m pynetdicom <app>`). All three take `-v -aet <calling AE> -aec <peer> <model>
/// -k <key>...`, their options, then the host and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrClient {
    Dcmtk,
    Dimsum,
    Pynetdicom,
}

impl QrClient {
    /// Names its runs (`<name>-<tool>-<label>`).
    fn name(self) -> &'static str {
        match self {
            QrClient::Dcmtk => "dcmtk",
            QrClient::Dimsum => "dimsum",
            QrClient::Pynetdicom => "pynetdicom",
        }
    }

    /// The calling AE title it runs with.
    fn ae_title(self) -> &'static str {
        match self {
            QrClient::Dcmtk => DCMTK_CLIENT_AE,
            QrClient::Dimsum => DIMSUM_CLIENT_AE,
            QrClient::Pynetdicom => PYNETDICOM_CLIENT_AE,
        }
    }

    /// `<tool> -v -aet <calling AE> -aec <peer> <model> -k <key>... <options> HOST PORT`, where
    /// `options` adds the options. `None` (after `SKIP:`) when the client is missing.
    fn command(
        self,
        tool: &str,
        peer: &AeAddress,
        model: QrModel,
        keys: &[&str],
        options: impl FnOnce(&mut Command),
    ) -> Option<Command> {
        let mut command = match self {
            QrClient::Dcmtk => dcmtk(tool)?,
            QrClient::Dimsum => {
                let mut command = super::dimsum();
                command.arg(tool);
                command
            }
            QrClient::Pynetdicom => pynetdicom_app(tool)?,
        };
        command.args([
            "-v",
            "-aet",
            self.ae_title(),
            "-aec",
            &peer.ae_title,
            model.flag(),
        ]);
        for key in keys {
            // pynetdicom's apps take a return key as `Keyword=` (an empty value), not a bare
            // keyword
            if self == QrClient::Pynetdicom && !key.contains('=') {
                command.arg("-k").arg(format!("{key}="));
            } else {
                command.arg("-k").arg(key);
            }
        }
        options(&mut command);
        command.arg(&peer.host).arg(peer.port.to_string());
        Some(command)
    }

    /// Runs [`QrClient::command`] in `dir` as `<name>-<tool>-<label>`; the exit status is the
    /// caller's to check. `None` (after `SKIP:`) when the client is missing.
    #[allow(clippy::too_many_arguments)]
    fn run(
        self,
        tool: &str,
        dir: &Path,
        label: &str,
        peer: &AeAddress,
        model: QrModel,
        keys: &[&str],
        options: impl FnOnce(&mut Command),
    ) -> Option<Finished> {
        let command = self.command(tool, peer, model, keys, options)?;
        let name = format!("{}-{tool}-{label}", self.name());
        Some(run(&name, dir, command, RUN_TIMEOUT))
    }

    /// Runs `findscu` with `keys` against `peer` and `args` (e.g. `--cancel 5`) before the
    /// host and port, each response written as a file into `<dir>/<label>` (DCMTK's and ours:
    /// `-X -od <folder>`; pynetdicom's: `-w`, run in that folder), and reads the responses back
    /// in arrival order. The exit status is the caller's to check. `None` (after `SKIP:`) when
    /// the client is missing.
    pub fn find(
        self,
        dir: &Path,
        label: &str,
        peer: &AeAddress,
        model: QrModel,
        keys: &[&str],
        args: &[&str],
    ) -> Option<FindRun> {
        let output = dir.join(label);
        fs::create_dir_all(&output).expect("create the findscu output folder");
        let finished = self.run("findscu", dir, label, peer, model, keys, |command| {
            match self {
                QrClient::Pynetdicom => command.arg("-w").current_dir(&output),
                QrClient::Dcmtk | QrClient::Dimsum => command.arg("-X").arg("-od").arg(&output),
            };
            command.args(args);
        })?;
        Some(FindRun {
            finished,
            identifiers: read_identifiers(&output),
        })
    }

    /// Runs `getscu -od <dir>/<label> <args>` with `keys` against `peer`; its run and the
    /// folder the instances went to. `None` (after `SKIP:`) when the client is missing.
    pub fn get(
        self,
        dir: &Path,
        label: &str,
        peer: &AeAddress,
        model: QrModel,
        keys: &[&str],
        args: &[&str],
    ) -> Option<(Finished, PathBuf)> {
        let output = dir.join(label);
        fs::create_dir_all(&output).expect("create the getscu output folder");
        let finished = self.run("getscu", dir, label, peer, model, keys, |command| {
            command.arg("-od").arg(&output).args(args);
        })?;
        Some((finished, output))
    }

    /// Runs `movescu -aem <destination> <args>` (e.g. DCMTK's `-d`, which dumps each
    /// response's counts) with `keys` against `peer`. `None` (after `SKIP:`) when the client is
    /// missing.
    #[allow(clippy::too_many_arguments)]
    pub fn move_to(
        self,
        dir: &Path,
        label: &str,
        peer: &AeAddress,
        model: QrModel,
        destination: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Option<Finished> {
        self.run("movescu", dir, label, peer, model, keys, |command| {
            command.args(["-aem", destination]).args(args);
        })
    }
}

/// DCMTK `findscu` with `keys` against `peer`: the identifiers, after asserting that it exited
/// 0 with a final Success.
#[track_caller]
pub fn dcmtk_find(
    dir: &Path,
    label: &str,
    peer: &AeAddress,
    model: QrModel,
    keys: &[&str],
) -> Vec<QrIdentifier> {
    let found = QrClient::Dcmtk
        .find(dir, label, peer, model, keys, &[])
        .expect("DCMTK findscu");
    assert!(
        found.finished.code() == Some(0)
            && found
                .finished
                .output()
                .contains("Received Final Find Response (Success)"),
        "findscu {label} did not end with Success\n{}",
        found.finished.describe()
    );
    found.identifiers
}

/// The DICOM files a client wrote into `folder`, read back in name order.
fn read_identifiers(folder: &Path) -> Vec<QrIdentifier> {
    let mut files = files_under(folder);
    files.sort();
    files.iter().map(|path| QrIdentifier::read(path)).collect()
}

/// What a `findscu` run gave ([`QrClient::find`]): its exit and output, and the identifiers of
/// its pending responses in arrival order.
pub struct FindRun {
    pub finished: Finished,
    pub identifiers: Vec<QrIdentifier>,
}

// ---------------------------------------------------------------------------------------------
// Our own Q/R SCP and clients
// ---------------------------------------------------------------------------------------------

/// The calling AE title of the dimsum clients run by this harness (also the move destination
/// of `movescu --port`, so peers must know it at the port the test gives).
pub const DIMSUM_CLIENT_AE: &str = "DIMSUMSCU";

/// `dimsum qrscp` (our SCP library serving a folder, PS3.4 Annex C and K); killed on drop.
pub struct DimsumQrscp {
    process: ProcessGuard,
    address: AeAddress,
    folder: PathBuf,
}

impl DimsumQrscp {
    /// The AE title tests give it unless they need another.
    pub const AE_TITLE: &'static str = "DIMSUMQR";

    /// Starts `dimsum qrscp -v --bind 127.0.0.1 -aet <ae_title> -od <folder> <args> <port>` on
    /// a free port and waits for its "I: Listening on" line (the folder is indexed by then).
    pub fn start(dir: &Path, ae_title: &str, folder: &Path, args: &[&str]) -> DimsumQrscp {
        check_ae_title(ae_title);
        let port = free_port();
        let mut command = super::dimsum();
        command
            .args(["qrscp", "-v", "--bind", LOCALHOST, "-aet", ae_title, "-od"])
            .arg(folder)
            .args(args)
            .arg(port.to_string());
        let mut process = ProcessGuard::spawn("dimsum-qrscp", dir, command);
        process.wait_for_text("I: Listening on", STARTUP_TIMEOUT);
        DimsumQrscp {
            process,
            address: AeAddress::local(ae_title, port),
            folder: folder.to_path_buf(),
        }
    }

    /// Copies every file of the Q/R data set into `<dir>/dimsum-qrscp-folder` (it stores into
    /// the folder it serves, so it must not serve the shared data set folder itself) and starts
    /// serving that folder.
    pub fn serving_data_set(dir: &Path, data: &QrDataSet, args: &[&str]) -> DimsumQrscp {
        let folder = dir.join("dimsum-qrscp-folder");
        fs::create_dir_all(&folder).expect("create the qrscp folder");
        for file in data.files() {
            let name = file.file_name().expect("data set files have a name");
            fs::copy(file, folder.join(name)).expect("copy a data set file");
        }
        DimsumQrscp::start(dir, Self::AE_TITLE, &folder, args)
    }

    /// Where to call it.
    pub fn address(&self) -> &AeAddress {
        &self.address
    }

    /// The folder it serves.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The process, to measure it or wait for its log lines.
    pub fn process(&mut self) -> &mut ProcessGuard {
        &mut self.process
    }

    /// Its logs, for failure messages.
    pub fn describe(&self) -> String {
        self.process.describe()
    }
}

/// `--move-destination` for `dimsum qrscp`: `AE=HOST:PORT` of `destination`.
pub fn move_destination_arg(destination: &AeAddress) -> String {
    format!(
        "{}={}:{}",
        destination.ae_title, destination.host, destination.port
    )
}

/// The output of `dimsum findscu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindOutput {
    /// The default text: a `# Match N` header and one line per element.
    Text,
    /// `--json`: one DICOM JSON array on stdout.
    Json,
    /// `-X -od DIR`: one file per match.
    Extract,
}

/// A match as the tests compare it: each top-level element as trimmed text (see
/// [`QrIdentifier`]), whatever output it was read from.
pub type Match = BTreeMap<Tag, String>;

/// What a `dimsum findscu` run gave: its exit and output, the matches in arrival order, and
/// with `--json` the DICOM JSON objects themselves (for nested sequences).
pub struct DimsumFindRun {
    pub finished: Finished,
    pub matches: Vec<Match>,
    pub json: Vec<serde_json::Value>,
}

/// `dimsum findscu -v -aet DIMSUMSCU -aec <peer> <model> -k <key>... <args> HOST PORT`.
pub fn dimsum_findscu_command(
    peer: &AeAddress,
    model: QrModel,
    keys: &[&str],
    args: &[&str],
) -> Command {
    QrClient::Dimsum
        .command("findscu", peer, model, keys, |command| {
            command.args(args);
        })
        .expect("our own client needs no peer")
}

/// Runs `dimsum findscu` with `keys` against `peer`, its matches written as `output` says
/// (files into `<dir>/<label>`), and reads the matches back. The exit status is the caller's
/// to check.
pub fn dimsum_findscu(
    dir: &Path,
    label: &str,
    peer: &AeAddress,
    model: QrModel,
    keys: &[&str],
    output: FindOutput,
    args: &[&str],
) -> DimsumFindRun {
    let folder = dir.join(label);
    let folder_text = folder.to_string_lossy().into_owned();
    let mut all_args: Vec<&str> = match output {
        FindOutput::Text => Vec::new(),
        FindOutput::Json => vec!["--json"],
        FindOutput::Extract => {
            fs::create_dir_all(&folder).expect("create the findscu output folder");
            vec!["-X", "-od", &folder_text]
        }
    };
    all_args.extend_from_slice(args);
    let command = dimsum_findscu_command(peer, model, keys, &all_args);
    let finished = run(
        &format!("dimsum-findscu-{label}"),
        dir,
        command,
        RUN_TIMEOUT,
    );
    let (matches, json) = match output {
        FindOutput::Text => (parse_find_text(&finished.stdout), Vec::new()),
        FindOutput::Json => {
            let json = if finished.stdout.trim().is_empty() {
                Vec::new()
            } else {
                match serde_json::from_str::<serde_json::Value>(&finished.stdout) {
                    Ok(serde_json::Value::Array(items)) => items,
                    other => panic!(
                        "dimsum findscu --json did not print one JSON array ({other:?})\n{}",
                        finished.describe()
                    ),
                }
            };
            (json.iter().map(json_match).collect(), json)
        }
        FindOutput::Extract => {
            let matches = read_identifiers(&folder)
                .into_iter()
                .map(|identifier| identifier.elements)
                .collect();
            (matches, Vec::new())
        }
    };
    DimsumFindRun {
        finished,
        matches,
        json,
    }
}

/// The matches of `dimsum findscu`'s text output: after each `# Match N` line, one line per
/// top-level element, `(gggg,eeee) VR value  Keyword`, the value `[text]`, a plain number or
/// `(no value)`. Nested lines (indented), sequences and binary values are left out.
pub fn parse_find_text(stdout: &str) -> Vec<Match> {
    let mut matches: Vec<Match> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("# Match ") {
            matches.push(Match::new());
            continue;
        }
        if !line.starts_with('(') {
            continue;
        }
        let current = matches
            .last_mut()
            .unwrap_or_else(|| panic!("an element line before any `# Match`: {line}"));
        let parse_hex = |range: std::ops::Range<usize>| {
            line.get(range)
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| panic!("not an element line: {line}"))
        };
        let tag = Tag(parse_hex(1..5), parse_hex(6..10));
        let vr = line.get(12..14).unwrap_or_default();
        let rest = line.get(15..).unwrap_or_default();
        let value = if let Some(text) = rest.strip_prefix('[') {
            let end = text
                .rfind(']')
                .unwrap_or_else(|| panic!("unterminated value: {line}"));
            text[..end].to_owned()
        } else if rest.starts_with("(no value)") {
            String::new()
        } else if vr == "SQ" || rest.starts_with("binary") || rest.starts_with("encapsulated") {
            continue;
        } else {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        current.insert(tag, value);
    }
    matches
}

/// The top-level elements of one DICOM JSON object (PS3.18 F.2) as text: strings as they are,
/// person names by their alphabetic group, numbers in decimal, multiple values joined with
/// `\`. Sequences and binary values are left out.
pub fn json_match(object: &serde_json::Value) -> Match {
    let object = object
        .as_object()
        .unwrap_or_else(|| panic!("a DICOM JSON match is not an object: {object}"));
    object
        .iter()
        .filter_map(|(key, attribute)| {
            let tag = json_tag(key);
            if attribute["vr"] == "SQ" || attribute.get("InlineBinary").is_some() {
                return None;
            }
            let value = attribute
                .get("Value")
                .and_then(serde_json::Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .map(json_text)
                        .collect::<Vec<String>>()
                        .join("\\")
                })
                .unwrap_or_default();
            Some((tag, value))
        })
        .collect()
}

/// A DICOM JSON attribute key (`"0020000D"`) as a tag.
pub fn json_tag(key: &str) -> Tag {
    let number = u32::from_str_radix(key, 16)
        .unwrap_or_else(|error| panic!("DICOM JSON key {key:?}: {error}"));
    Tag((number >> 16) as u16, (number & 0xffff) as u16)
}

/// One value of a DICOM JSON attribute as text.
pub fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number
            .as_i64()
            .map(|integer| integer.to_string())
            .unwrap_or_else(|| number.to_string()),
        serde_json::Value::Object(name) => name
            .get("Alphabetic")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        serde_json::Value::Null => String::new(),
        other => panic!("unexpected DICOM JSON value {other}"),
    }
}

/// Runs `dimsum movescu -aem DIMSUMSCU --port <port> --bind 127.0.0.1 -od <dir>/<label>`: the
/// peer sends the instances to the tool itself (it must know DIMSUMSCU at `port`). Its exit and
/// output and the folder the instances went to.
pub fn dimsum_movescu_to_self(
    dir: &Path,
    label: &str,
    peer: &AeAddress,
    model: QrModel,
    port: u16,
    keys: &[&str],
) -> (Finished, PathBuf) {
    let output = dir.join(label);
    let output_text = output.to_string_lossy().into_owned();
    let port_text = port.to_string();
    let finished = QrClient::Dimsum
        .move_to(
            dir,
            label,
            peer,
            model,
            DIMSUM_CLIENT_AE,
            keys,
            &[
                "--port",
                &port_text,
                "--bind",
                LOCALHOST,
                "-od",
                &output_text,
            ],
        )
        .expect("our own client needs no peer");
    (finished, output)
}

// ---------------------------------------------------------------------------------------------
// pynetdicom's Q/R clients and a refusing Storage SCP
// ---------------------------------------------------------------------------------------------

/// The calling AE title of the pynetdicom apps run by this harness.
pub const PYNETDICOM_CLIENT_AE: &str = "PYNETSCU";

/// One of pynetdicom's apps (`python -u -m pynetdicom <app>`) with the peer environment's
/// interpreter; `None` (after `SKIP:`) when that environment is missing.
pub fn pynetdicom_app(app: &str) -> Option<Command> {
    let python = python_script("tests/peers/compare_datasets.py")?
        .get_program()
        .to_owned();
    let mut command = Command::new(python);
    command.args(["-u", "-m", "pynetdicom", app]);
    Some(command)
}

/// `tests/peers/pynetdicom_refusing_storescp.py`: a Storage SCP (a C-MOVE destination) that
/// answers the C-STOREs of chosen SOP instances with a failure status; killed on drop.
pub struct RefusingStorescp {
    process: ProcessGuard,
    address: AeAddress,
    output: PathBuf,
    record: PathBuf,
}

impl RefusingStorescp {
    /// Starts it as `ae_title` on a free port of 127.0.0.1, refusing `refuse` with 0xA700 (Out
    /// of Resources), and waits for its "READY" line. `None` (after `SKIP:`) when pynetdicom is
    /// missing.
    pub fn start(dir: &Path, ae_title: &str, refuse: &[&str]) -> Option<RefusingStorescp> {
        check_ae_title(ae_title);
        let mut command = super::pynetdicom("pynetdicom_refusing_storescp.py")?;
        let port = free_port();
        let output = dir.join(format!("{}-received", ae_title.to_lowercase()));
        let record = dir.join(format!("{}-stores.jsonl", ae_title.to_lowercase()));
        command
            .args(["--port", &port.to_string(), "--bind", LOCALHOST])
            .args(["--ae-title", ae_title, "--output"])
            .arg(&output)
            .arg("--record")
            .arg(&record);
        for uid in refuse {
            command.args(["--refuse", uid]);
        }
        let mut process = ProcessGuard::spawn("pynetdicom-refusing-storescp", dir, command);
        process.wait_for_text("READY", STARTUP_TIMEOUT);
        Some(RefusingStorescp {
            process,
            address: AeAddress::local(ae_title, port),
            output,
            record,
        })
    }

    /// Its address, to configure it as a move destination.
    pub fn address(&self) -> &AeAddress {
        &self.address
    }

    /// The folder it stores into.
    pub fn output_dir(&self) -> &Path {
        &self.output
    }

    /// The SOP Instance UIDs it stored, read from the files.
    pub fn received_sop_instance_uids(&self) -> BTreeSet<String> {
        sop_instance_uids_in(&self.output).into_keys().collect()
    }

    /// Each C-STORE it was sent, as recorded: SOP Instance UID → the status it answered.
    pub fn answered(&self) -> BTreeMap<String, u64> {
        super::read_json_lines(&self.record)
            .iter()
            .map(|record| {
                (
                    record["sop_instance_uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    record["status"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect()
    }

    /// Its logs and records, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\n--- records ---\n{}",
            self.process.describe(),
            fs::read_to_string(&self.record).unwrap_or_default()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Many instances in one series
// ---------------------------------------------------------------------------------------------

/// A series of many small Secondary Capture instances (one patient, one study, one series),
/// for the tests that need many matches: C-CANCEL before the last one, and a 10,000-match
/// stream. Each instance carries an Image Comments value of `comment_len` characters, so that
/// the responses of an IMAGE query that asks for it have a known size.
#[derive(Clone, Debug)]
pub struct LargeSeries {
    /// The folder holding the files (nothing else).
    pub dir: PathBuf,
    pub patient_id: String,
    pub patient_name: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub count: usize,
    pub comment_len: usize,
}

impl LargeSeries {
    /// The series of `count` instances with `comment_len`-character comments, written once into
    /// `<target tmp>/qr-series-<count>-<comment_len>` and reused by later runs (a marker file
    /// beside the folder says it is complete; the content is deterministic).
    pub fn get(count: usize, comment_len: usize) -> LargeSeries {
        use std::sync::Mutex;
        static WRITTEN: Mutex<BTreeSet<(usize, usize)>> = Mutex::new(BTreeSet::new());
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let name = format!("qr-series-{count}-{comment_len}");
        let series = LargeSeries {
            dir: root.join(&name),
            patient_id: format!("QR-MANY-{count}"),
            patient_name: "Many^Instances".to_owned(),
            study_instance_uid: format!("{QR_UID_ROOT}.5.{count}.{comment_len}"),
            series_instance_uid: format!("{QR_UID_ROOT}.6.{count}.{comment_len}"),
            count,
            comment_len,
        };
        let mut written = WRITTEN.lock().unwrap_or_else(|poison| poison.into_inner());
        if written.contains(&(count, comment_len)) {
            return series;
        }
        let marker = root.join(format!("{name}.complete"));
        if !marker.is_file() || files_under(&series.dir).len() != count {
            if series.dir.exists() {
                fs::remove_dir_all(&series.dir).expect("clear an incomplete series folder");
            }
            fs::create_dir_all(&series.dir).expect("create the series folder");
            series.write_all();
            fs::write(&marker, b"").expect("write the series marker");
        }
        written.insert((count, comment_len));
        series
    }

    /// The SOP Instance UID of the instance at `index` (0-based; its Instance Number is
    /// `index + 1`).
    pub fn sop_instance_uid(&self, index: usize) -> String {
        format!(
            "{QR_UID_ROOT}.7.{}.{}.{}",
            self.count,
            self.comment_len,
            index + 1
        )
    }

    /// Every SOP Instance UID of the series.
    pub fn sop_instance_uids(&self) -> BTreeSet<String> {
        (0..self.count)
            .map(|index| self.sop_instance_uid(index))
            .collect()
    }

    /// The Image Comments of the instance at `index`: `comment_len` characters that start with
    /// the instance number.
    pub fn image_comments(&self, index: usize) -> String {
        let mut text = format!("instance {} ", index + 1);
        while text.len() < self.comment_len {
            text.push_str("lorem ipsum ");
        }
        text.truncate(self.comment_len);
        text.trim_end().to_owned()
    }

    /// The files of the series (sorted by name).
    pub fn files(&self) -> Vec<PathBuf> {
        files_under(&self.dir)
    }

    fn write_all(&self) {
        let mut template = InMemDicomObject::new_empty();
        let identity = SecondaryCaptureIdentity {
            patient_name: &self.patient_name,
            patient_id: &self.patient_id,
            patient_birth_date: "20000101",
            study_instance_uid: &self.study_instance_uid,
            study_date: "20200202",
            study_id: "MANY",
            accession_number: "QRMANY",
            series_instance_uid: &self.series_instance_uid,
            series_number: 1,
        };
        for element in identity.elements(2, 2, vec![0_u8, 64, 128, 255]) {
            template.put(element);
        }
        for index in 0..self.count {
            let uid = self.sop_instance_uid(index);
            let mut object = template.clone();
            object.put(text_element(tags::SOP_INSTANCE_UID, VR::UI, &uid));
            object.put(text_element(
                tags::INSTANCE_NUMBER,
                VR::IS,
                &(index + 1).to_string(),
            ));
            if self.comment_len > 0 {
                object.put(text_element(
                    tags::IMAGE_COMMENTS,
                    VR::LT,
                    &self.image_comments(index),
                ));
            }
            let file = object
                .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_VR_LE))
                .unwrap_or_else(|error| panic!("file meta of {uid}: {error}"));
            let path = self.dir.join(format!("sc_{:05}.dcm", index + 1));
            file.write_to_file(&path)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        }
    }
}

/// `value` as the one value of `tag`, of the text VR `vr`.
pub fn text_element(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// `value` as the one value of `tag`, of VR US.
pub fn us_element(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// What tells apart the Secondary Capture instances (PS3.3 A.8.1) the tests write, above the
/// instance: its patient, study and series.
pub struct SecondaryCaptureIdentity<'a> {
    pub patient_name: &'a str,
    pub patient_id: &'a str,
    pub patient_birth_date: &'a str,
    pub study_instance_uid: &'a str,
    pub study_date: &'a str,
    pub study_id: &'a str,
    pub accession_number: &'a str,
    pub series_instance_uid: &'a str,
    pub series_number: u32,
}

impl SecondaryCaptureIdentity<'_> {
    /// The elements of a Secondary Capture instance (PS3.3 A.8.1) of this patient, study and
    /// series, with an 8-bit monochrome image of `rows` x `columns` `pixels`: all but the SOP
    /// Instance UID and Instance Number (and Specific Character Set: the default).
    pub fn elements(
        &self,
        rows: u16,
        columns: u16,
        pixels: Vec<u8>,
    ) -> Vec<DataElement<InMemDicomObject>> {
        vec![
            text_element(tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE_IMAGE_STORAGE),
            text_element(tags::STUDY_DATE, VR::DA, self.study_date),
            text_element(tags::STUDY_TIME, VR::TM, "120000"),
            text_element(tags::ACCESSION_NUMBER, VR::SH, self.accession_number),
            text_element(tags::MODALITY, VR::CS, "OT"),
            text_element(tags::CONVERSION_TYPE, VR::CS, "WSD"),
            text_element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
            text_element(tags::PATIENT_NAME, VR::PN, self.patient_name),
            text_element(tags::PATIENT_ID, VR::LO, self.patient_id),
            text_element(tags::PATIENT_BIRTH_DATE, VR::DA, self.patient_birth_date),
            text_element(tags::PATIENT_SEX, VR::CS, "O"),
            text_element(tags::STUDY_INSTANCE_UID, VR::UI, self.study_instance_uid),
            text_element(tags::SERIES_INSTANCE_UID, VR::UI, self.series_instance_uid),
            text_element(tags::STUDY_ID, VR::SH, self.study_id),
            text_element(tags::SERIES_NUMBER, VR::IS, &self.series_number.to_string()),
            us_element(tags::SAMPLES_PER_PIXEL, 1),
            text_element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            us_element(tags::ROWS, rows),
            us_element(tags::COLUMNS, columns),
            us_element(tags::BITS_ALLOCATED, 8),
            us_element(tags::BITS_STORED, 8),
            us_element(tags::HIGH_BIT, 7),
            us_element(tags::PIXEL_REPRESENTATION, 0),
            DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels)),
        ]
    }
}

/// Two tests of `$check(kind: QrPeerKind, label: &str)`, one against each Q/R SCP we did not
/// write, each with a scratch folder named after the test.
#[macro_export]
macro_rules! test_against_both_peers {
    ($check:ident: $dcmqrscp:ident, $pynetdicom:ident) => {
        #[test]
        fn $dcmqrscp() {
            $check(
                $crate::support::qr::QrPeerKind::Dcmqrscp,
                concat!("qr-", stringify!($dcmqrscp)),
            );
        }

        #[test]
        fn $pynetdicom() {
            $check(
                $crate::support::qr::QrPeerKind::Pynetdicom,
                concat!("qr-", stringify!($pynetdicom)),
            );
        }
    };
}

/// The scratch folder `label` of a test that compares retrieved data sets; `None` (after
/// `SKIP:`) when the Python environment that compares them is missing.
pub fn retrieve_scratch_dir(label: &str) -> Option<PathBuf> {
    let dir = scratch_dir(label);
    python_script("tests/peers/compare_datasets.py")?;
    Some(dir)
}
