//! A `FolderArchive` and a `WorklistFolder` served by `dimsum_net::Server` over real
//! associations on 127.0.0.1: C-FIND at every level of the three Q/R information models, C-GET
//! (instances on the same association, bytes equal to the files' data sets), C-MOVE to a
//! second server, instances stored later becoming queryable, and a Modality Worklist query
//! matched on its Scheduled Procedure Step Sequence. The SCU side is written by hand with
//! `Association::request`, but for the C-MOVE, which goes through `scu::move_to` (what is
//! checked there is what reaches the destination).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use dimsum_net::dataset::dicom_core::header::Header;
use dimsum_net::dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_net::dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dimsum_net::dataset::identifier;
use dimsum_net::dataset::part10;
use dimsum_net::dataset::query_model::QueryModel;
use dimsum_net::dataset::scan::ScanLimits;
use dimsum_net::dimse::message::{CFindRq, CGetRq, CStoreRsp, Message, Priority};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{Dispatcher, FindScp, GetScp, MoveScp, StoreScp};
use dimsum_net::scu::store::{StoreRequest, store_data_set};
use dimsum_net::scu::{self, QueryRequest, RetrieveOutcome};
use dimsum_net::storage::FileStorage;
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_net::{Association, Response, Responses, Role};
use dimsum_pacs::{FolderArchive, FolderArchiveConfig, WorklistFolder};

mod common;
use common::{
    CT, EXPLICIT, MR, SC, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, TestServer, element,
    explicit, text,
};

const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
const PATIENT_STUDY_ONLY_FIND: &str = "1.2.840.10008.5.1.4.1.2.3.1";
const WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";

const SCU_AE: &str = "QRSCU";
const SCP_AE: &str = "QRSCP";
const DEST_AE: &str = "DEST";
const PATIENCE: Duration = Duration::from_secs(10);

const STUDY_1: &str = "1.2.826.0.1.3680043.9.7.1";
const STUDY_2: &str = "1.2.826.0.1.3680043.9.7.2";
const STUDY_3: &str = "1.2.826.0.1.3680043.9.7.3";

// ------------------------------------------------------------------------------------------
// The folder
// ------------------------------------------------------------------------------------------

/// One instance of the test folder.
struct Instance {
    patient: (&'static str, &'static str),
    study: (&'static str, &'static str, &'static str),
    series: &'static str,
    modality: &'static str,
    sop_class: &'static str,
    number: u32,
}

impl Instance {
    fn series_uid(&self) -> String {
        format!("{}.{}", self.study.0, self.series)
    }

    fn sop_instance_uid(&self) -> String {
        format!("{}.{}", self.series_uid(), self.number)
    }
}

/// 2 patients, 3 studies, 5 series, 8 instances.
fn instances() -> Vec<Instance> {
    let p1 = ("P1", "DOE^JOHN");
    let p2 = ("P2", "ROE^JANE");
    let s1 = (STUDY_1, "20240105", "CT CHEST");
    let s2 = (STUDY_2, "20240320", "MR KNEE");
    let s3 = (STUDY_3, "20231111", "FOLLOW UP");
    let one = |patient, study, series, modality, sop_class, number| Instance {
        patient,
        study,
        series,
        modality,
        sop_class,
        number,
    };
    vec![
        one(p1, s1, "1", "CT", CT, 1),
        one(p1, s1, "1", "CT", CT, 2),
        one(p1, s1, "1", "CT", CT, 3),
        one(p1, s1, "2", "OT", SC, 1),
        one(p1, s2, "1", "MR", MR, 1),
        one(p1, s2, "1", "MR", MR, 2),
        one(p2, s3, "1", "CT", CT, 1),
        one(p2, s3, "2", "MR", MR, 1),
    ]
}

/// Writes `instance` as a Part 10 file (Explicit VR Little Endian, with pixel data) under
/// `root`, in a folder per patient; returns its path.
fn write_instance(root: &Path, instance: &Instance) -> PathBuf {
    let pixels: Vec<u8> = (0..32 * 32 * 2).map(|i| (i * 7 % 251) as u8).collect();
    let object = InMemDicomObject::from_element_iter([
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        element(tags::SOP_CLASS_UID, VR::UI, instance.sop_class),
        element(tags::SOP_INSTANCE_UID, VR::UI, &instance.sop_instance_uid()),
        element(tags::STUDY_DATE, VR::DA, instance.study.1),
        element(tags::ACCESSION_NUMBER, VR::SH, ""),
        element(tags::MODALITY, VR::CS, instance.modality),
        element(tags::STUDY_DESCRIPTION, VR::LO, instance.study.2),
        element(tags::PATIENT_NAME, VR::PN, instance.patient.1),
        element(tags::PATIENT_ID, VR::LO, instance.patient.0),
        element(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        element(tags::STUDY_INSTANCE_UID, VR::UI, instance.study.0),
        element(tags::SERIES_INSTANCE_UID, VR::UI, &instance.series_uid()),
        element(tags::SERIES_NUMBER, VR::IS, instance.series),
        element(tags::INSTANCE_NUMBER, VR::IS, &instance.number.to_string()),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(32_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(32_u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U8(pixels.into())),
    ]);
    let file = object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT)
                .media_storage_sop_class_uid(instance.sop_class)
                .media_storage_sop_instance_uid(instance.sop_instance_uid()),
        )
        .expect("file meta");
    let folder = root.join(instance.patient.0);
    std::fs::create_dir_all(&folder).expect("folder");
    let path = folder.join(format!("{}.dcm", instance.sop_instance_uid()));
    file.write_to_file(&path).expect("write");
    path
}

/// The test folder: every instance, a file that is not DICOM and a hidden partial file.
fn write_folder(root: &Path) {
    for instance in instances() {
        write_instance(root, &instance);
    }
    std::fs::write(root.join("README.txt"), "not a DICOM file").expect("write");
    std::fs::write(root.join(".partial.dcm"), "a store in progress").expect("write");
}

/// The data set of a Part 10 file: the bytes after its meta.
fn data_set_of(path: &Path) -> Bytes {
    let bytes = std::fs::read(path).expect("read");
    let (_, offset) = part10::read_meta(&mut &bytes[..]).expect("meta");
    Bytes::copy_from_slice(&bytes[offset as usize..])
}

// ------------------------------------------------------------------------------------------
// Server and client
// ------------------------------------------------------------------------------------------

/// A served archive and an association to it.
struct Session {
    server: TestServer,
    association: Association,
}

impl Session {
    /// Serves `archive` (and `worklist`) and opens an association with `request`.
    async fn open(
        archive: &FolderArchive,
        worklist: Option<&Path>,
        request: AssociationRequest,
    ) -> Session {
        let server = start_archive(archive, worklist).await;
        let association = server.connect(&request, PATIENCE).await;
        Session {
            server,
            association,
        }
    }

    /// Releases the association and stops the server.
    async fn end(self) {
        within("release", self.association.release())
            .await
            .expect("released");
        self.server.stop(PATIENCE).await;
    }
}

/// The test folder (see [`write_folder`]) in a temporary directory, served as an archive, with
/// an association to it opened with `request`.
async fn serve_test_folder(
    request: AssociationRequest,
) -> (tempfile::TempDir, FolderArchive, Session) {
    let folder = tempfile::tempdir().expect("tempdir");
    write_folder(folder.path());
    let archive = open_archive(folder.path()).await;
    let session = Session::open(&archive, None, request).await;
    (folder, archive, session)
}

/// The archive served with every Q/R model, storage into its folder, and the worklist.
async fn start_archive(archive: &FolderArchive, worklist: Option<&Path>) -> TestServer {
    let find = FindScp::new(
        archive.clone(),
        vec![
            PATIENT_ROOT_FIND.into(),
            STUDY_ROOT_FIND.into(),
            PATIENT_STUDY_ONLY_FIND.into(),
        ],
        explicit(),
    );
    let get = GetScp::new(archive.clone(), vec![STUDY_ROOT_GET.into()], explicit())
        .with_storage(vec![CT.into(), MR.into(), SC.into()], explicit());
    let r#move = MoveScp::new(archive.clone(), vec![STUDY_ROOT_MOVE.into()], explicit());
    let storage = FileStorage::new(archive.root())
        .expect("storage")
        .on_stored(archive.on_stored());
    let store = StoreScp::new(storage, vec![CT.into(), MR.into(), SC.into()], explicit());
    let mut dispatcher = Dispatcher::new()
        .with(find)
        .with(get)
        .with(r#move)
        .with(store);
    if let Some(worklist) = worklist {
        dispatcher = dispatcher.with(FindScp::new(
            WorklistFolder::new(worklist),
            vec![WORKLIST_FIND.into()],
            explicit(),
        ));
    }
    TestServer::start(SCP_AE, dispatcher).await
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

fn request(sop_classes: &[&str]) -> AssociationRequest {
    AssociationRequest::new(SCU_AE, SCP_AE).with_contexts(
        sop_classes
            .iter()
            .map(|sop_class| ProposedContext::new(*sop_class, [EXPLICIT])),
    )
}

fn encode(keys: &[InMemElement]) -> Bytes {
    let object = InMemDicomObject::from_element_iter(keys.iter().cloned());
    Bytes::from(identifier::encode(&object, EXPLICIT).expect("identifier"))
}

fn decode(bytes: &[u8]) -> InMemDicomObject {
    identifier::decode(bytes, EXPLICIT, &ScanLimits::default()).expect("identifier")
}

/// Sends `request` on the context of `sop_class` with `keys` as its identifier.
async fn send(
    association: &Association,
    sop_class: &str,
    request: Message,
    keys: &[InMemElement],
) -> Responses {
    let context = association.context_for(sop_class).expect("a context");
    within(
        "request sent",
        association.request(context, request, Some(encode(keys))),
    )
    .await
    .expect("request sent")
}

/// The next response, within PATIENCE.
async fn next_response(responses: &mut Responses) -> Response {
    within("response", responses.next())
        .await
        .expect("a response")
        .expect("a response, not an error")
}

/// A C-FIND: the pending matches with their statuses, and the final status.
async fn find(
    association: &Association,
    sop_class: &str,
    keys: &[InMemElement],
) -> (Vec<(Status, InMemDicomObject)>, Status) {
    let rq = Message::CFindRq(CFindRq {
        message_id: association.next_message_id(),
        affected_sop_class_uid: sop_class.into(),
        priority: Priority::Medium,
        data_set_present: true,
    });
    let mut responses = send(association, sop_class, rq, keys).await;
    let mut matches = Vec::new();
    loop {
        let response = next_response(&mut responses).await;
        let Message::CFindRsp(rsp) = &response.message else {
            panic!("expected a C-FIND-RSP, got {:?}", response.message);
        };
        if response.is_final {
            assert!(response.data_set.is_none());
            return (matches, rsp.status);
        }
        let data = within(
            "identifier",
            response.data_set.expect("an identifier").collect(1 << 20),
        )
        .await
        .expect("identifier");
        matches.push((rsp.status, decode(&data)));
    }
}

fn level(value: &str) -> InMemElement {
    element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, value)
}

/// The value of `tag` in each match.
fn column(matches: &[(Status, InMemDicomObject)], tag: Tag) -> Vec<String> {
    matches.iter().map(|(_, m)| text(m, tag)).collect()
}

async fn open_archive(root: &Path) -> FolderArchive {
    FolderArchive::open(FolderArchiveConfig::new(root))
        .await
        .expect("archive")
}

// ------------------------------------------------------------------------------------------
// C-FIND
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_folder_is_indexed_skipping_what_is_not_dicom() {
    let folder = tempfile::tempdir().expect("tempdir");
    write_folder(folder.path());
    let counts = open_archive(folder.path()).await.counts();
    assert_eq!(
        (
            counts.patients,
            counts.studies,
            counts.series,
            counts.instances
        ),
        (2, 3, 5, 8)
    );
    // README.txt; the hidden partial file is not even looked at.
    assert_eq!(counts.skipped_files, 1);
    assert!(
        FolderArchive::open(FolderArchiveConfig::new(folder.path().join("missing")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn patient_root_finds_patients_studies_series_and_images_with_computed_keys() {
    let (_folder, _archive, session) = serve_test_folder(request(&[PATIENT_ROOT_FIND])).await;
    let association = &session.association;

    // PATIENT: every patient, with the patient counts.
    let (patients, status) = find(
        association,
        PATIENT_ROOT_FIND,
        &[
            level("PATIENT"),
            element(tags::PATIENT_NAME, VR::PN, ""),
            element(tags::PATIENT_ID, VR::LO, ""),
            element(tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, ""),
            element(tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS, ""),
            element(tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(status, Status::SUCCESS);
    assert_eq!(column(&patients, tags::PATIENT_ID), ["P1", "P2"]);
    assert_eq!(
        column(&patients, tags::PATIENT_NAME),
        ["DOE^JOHN", "ROE^JANE"]
    );
    assert_eq!(
        column(&patients, tags::NUMBER_OF_PATIENT_RELATED_STUDIES),
        ["2", "1"]
    );
    assert_eq!(
        column(&patients, tags::NUMBER_OF_PATIENT_RELATED_SERIES),
        ["3", "2"]
    );
    assert_eq!(
        column(&patients, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES),
        ["6", "2"]
    );
    for (status, identifier) in &patients {
        assert_eq!(*status, Status::PENDING);
        assert_eq!(text(identifier, tags::QUERY_RETRIEVE_LEVEL), "PATIENT");
        assert_eq!(text(identifier, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
        assert_eq!(identifier.iter().count(), 7, "{identifier:?}");
    }

    // STUDY, under patient P1 (the unique key above the level restricts).
    let (studies, _) = find(
        association,
        PATIENT_ROOT_FIND,
        &[
            level("STUDY"),
            element(tags::PATIENT_ID, VR::LO, "P1"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            element(tags::STUDY_DATE, VR::DA, ""),
            element(tags::STUDY_DESCRIPTION, VR::LO, ""),
            element(tags::MODALITIES_IN_STUDY, VR::CS, ""),
            element(tags::SOP_CLASSES_IN_STUDY, VR::UI, ""),
            element(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, ""),
            element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(
        column(&studies, tags::STUDY_INSTANCE_UID),
        [STUDY_1, STUDY_2]
    );
    assert_eq!(column(&studies, tags::PATIENT_ID), ["P1", "P1"]);
    assert_eq!(column(&studies, tags::STUDY_DATE), ["20240105", "20240320"]);
    assert_eq!(
        column(&studies, tags::STUDY_DESCRIPTION),
        ["CT CHEST", "MR KNEE"]
    );
    assert_eq!(
        column(&studies, tags::MODALITIES_IN_STUDY),
        ["CT\\OT", "MR"]
    );
    assert_eq!(
        column(&studies, tags::SOP_CLASSES_IN_STUDY),
        [format!("{CT}\\{SC}"), MR.to_owned()]
    );
    assert_eq!(
        column(&studies, tags::NUMBER_OF_STUDY_RELATED_SERIES),
        ["2", "1"]
    );
    assert_eq!(
        column(&studies, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        ["4", "2"]
    );

    // SERIES of one study of patient P2.
    let (series, _) = find(
        association,
        PATIENT_ROOT_FIND,
        &[
            level("SERIES"),
            element(tags::PATIENT_ID, VR::LO, "P2"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_3),
            element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
            element(tags::MODALITY, VR::CS, ""),
            element(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(column(&series, tags::MODALITY), ["CT", "MR"]);
    assert_eq!(
        column(&series, tags::SERIES_INSTANCE_UID),
        [format!("{STUDY_3}.1"), format!("{STUDY_3}.2")]
    );
    assert_eq!(
        column(&series, tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        ["1", "1"]
    );

    // IMAGE: the instances of one series, with an instance attribute.
    let (images, _) = find(
        association,
        PATIENT_ROOT_FIND,
        &[
            level("IMAGE"),
            element(tags::PATIENT_ID, VR::LO, "P1"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_1),
            element(tags::SERIES_INSTANCE_UID, VR::UI, &format!("{STUDY_1}.1")),
            element(tags::SOP_INSTANCE_UID, VR::UI, ""),
            element(tags::SOP_CLASS_UID, VR::UI, ""),
            element(tags::INSTANCE_NUMBER, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(
        column(&images, tags::SOP_INSTANCE_UID),
        (1..=3)
            .map(|n| format!("{STUDY_1}.1.{n}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(column(&images, tags::SOP_CLASS_UID), [CT, CT, CT]);
    assert_eq!(column(&images, tags::INSTANCE_NUMBER), ["1", "2", "3"]);

    // A patient that is not there.
    let (none, status) = find(
        association,
        PATIENT_ROOT_FIND,
        &[level("STUDY"), element(tags::PATIENT_ID, VR::LO, "P9")],
    )
    .await;
    assert!(none.is_empty());
    assert_eq!(status, Status::SUCCESS);

    session.end().await;
}

#[tokio::test]
async fn study_root_matches_wild_cards_ranges_and_computed_keys() {
    let (_folder, _archive, session) =
        serve_test_folder(request(&[STUDY_ROOT_FIND, PATIENT_STUDY_ONLY_FIND])).await;
    let association = &session.association;
    let study_keys = |name: &str, date: &str, modalities: &str| {
        vec![
            level("STUDY"),
            element(tags::PATIENT_NAME, VR::PN, name),
            element(tags::STUDY_DATE, VR::DA, date),
            element(tags::MODALITIES_IN_STUDY, VR::CS, modalities),
            element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        ]
    };

    let (all, _) = find(association, STUDY_ROOT_FIND, &study_keys("", "", "")).await;
    assert_eq!(
        column(&all, tags::STUDY_INSTANCE_UID),
        [STUDY_1, STUDY_2, STUDY_3]
    );
    let (does, _) = find(association, STUDY_ROOT_FIND, &study_keys("doe*", "", "")).await;
    assert_eq!(column(&does, tags::STUDY_INSTANCE_UID), [STUDY_1, STUDY_2]);
    let (in_2024, _) = find(
        association,
        STUDY_ROOT_FIND,
        &study_keys("", "20240101-", ""),
    )
    .await;
    assert_eq!(
        column(&in_2024, tags::STUDY_INSTANCE_UID),
        [STUDY_1, STUDY_2]
    );
    let (early, _) = find(
        association,
        STUDY_ROOT_FIND,
        &study_keys("", "-20240201", ""),
    )
    .await;
    assert_eq!(column(&early, tags::STUDY_INSTANCE_UID), [STUDY_1, STUDY_3]);
    let (with_mr, _) = find(association, STUDY_ROOT_FIND, &study_keys("", "", "MR")).await;
    assert_eq!(
        column(&with_mr, tags::STUDY_INSTANCE_UID),
        [STUDY_2, STUDY_3]
    );
    assert_eq!(
        column(&with_mr, tags::MODALITIES_IN_STUDY),
        ["MR", "CT\\MR"]
    );
    let (both, _) = find(
        association,
        STUDY_ROOT_FIND,
        &study_keys("ROE^JANE", "2023", "CT"),
    )
    .await;
    assert_eq!(column(&both, tags::STUDY_INSTANCE_UID), [STUDY_3]);

    // SERIES of a list of studies.
    let (series, _) = find(
        association,
        STUDY_ROOT_FIND,
        &[
            level("SERIES"),
            DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::Strs([STUDY_2.to_owned(), STUDY_3.to_owned()].into()),
            ),
            element(tags::MODALITY, VR::CS, "MR"),
            element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
        ],
    )
    .await;
    assert_eq!(
        column(&series, tags::SERIES_INSTANCE_UID),
        [format!("{STUDY_2}.1"), format!("{STUDY_3}.2")]
    );

    // IMAGE by SOP Instance UID alone, across the whole archive.
    let wanted = format!("{STUDY_1}.2.1");
    let (images, _) = find(
        association,
        STUDY_ROOT_FIND,
        &[
            level("IMAGE"),
            element(tags::SOP_INSTANCE_UID, VR::UI, &wanted),
            element(tags::SOP_CLASS_UID, VR::UI, ""),
        ],
    )
    .await;
    assert_eq!(column(&images, tags::SOP_CLASS_UID), [SC]);

    // A key below the query level is not supported: returned empty, with status FF01.
    let (warned, status) = find(
        association,
        STUDY_ROOT_FIND,
        &[
            level("STUDY"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_1),
            element(tags::SERIES_DESCRIPTION, VR::LO, "NOT MATCHED"),
        ],
    )
    .await;
    assert_eq!(status, Status::SUCCESS);
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].0, Status::PENDING_WARNING);
    assert_eq!(text(&warned[0].1, tags::SERIES_DESCRIPTION), "");

    // Patient/Study Only: patients, then studies.
    let (patients, _) = find(
        association,
        PATIENT_STUDY_ONLY_FIND,
        &[
            level("PATIENT"),
            element(tags::PATIENT_ID, VR::LO, ""),
            element(tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(column(&patients, tags::PATIENT_ID), ["P1", "P2"]);
    let (studies, _) = find(
        association,
        PATIENT_STUDY_ONLY_FIND,
        &[
            level("STUDY"),
            element(tags::PATIENT_ID, VR::LO, "P2"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
            element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(column(&studies, tags::STUDY_INSTANCE_UID), [STUDY_3]);
    assert_eq!(
        column(&studies, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        ["2"]
    );

    // A level the model does not have is refused before the archive sees it.
    let (none, status) = find(
        association,
        PATIENT_STUDY_ONLY_FIND,
        &[level("SERIES"), element(tags::PATIENT_ID, VR::LO, "")],
    )
    .await;
    assert!(none.is_empty());
    assert_eq!(status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);

    session.end().await;
}

#[tokio::test]
async fn an_instance_stored_into_the_folder_is_found_by_the_next_query() {
    let (_folder, archive, session) = serve_test_folder(request(&[STUDY_ROOT_FIND, MR])).await;
    let association = &session.association;

    // A new instance in a new series of study 2, sent by C-STORE.
    let source = tempfile::tempdir().expect("tempdir");
    let new = Instance {
        patient: ("P1", "DOE^JOHN"),
        study: (STUDY_2, "20240320", "MR KNEE"),
        series: "7",
        modality: "MR",
        sop_class: MR,
        number: 1,
    };
    let path = write_instance(source.path(), &new);
    let context = association.context_for(MR).expect("MR context");
    let request = StoreRequest {
        sop_class_uid: MR.into(),
        sop_instance_uid: new.sop_instance_uid(),
        priority: Priority::Medium,
        move_originator: None,
    };
    let response: CStoreRsp = within(
        "C-STORE",
        store_data_set(association, context, &request, &data_set_of(&path)),
    )
    .await
    .expect("stored");
    assert_eq!(response.status, Status::SUCCESS);

    let (series, _) = find(
        association,
        STUDY_ROOT_FIND,
        &[
            level("SERIES"),
            element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_2),
            element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
            element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(
        column(&series, tags::SERIES_INSTANCE_UID),
        [format!("{STUDY_2}.1"), format!("{STUDY_2}.7")]
    );
    assert_eq!(
        column(&series, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        ["3", "3"]
    );
    assert_eq!(archive.counts().instances, 9);

    session.end().await;
}

// ------------------------------------------------------------------------------------------
// C-GET and C-MOVE
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_c_get_of_a_study_sends_its_instances_as_they_are_in_the_files() {
    // The storage contexts with the SCP role, for the sub-operations.
    let request = [CT, MR, SC].into_iter().fold(
        request(&[STUDY_ROOT_GET, CT, MR, SC]),
        |request, sop_class| request.with_role(sop_class, true, true),
    );
    let (folder, _archive, session) = serve_test_folder(request).await;
    let association = &session.association;
    for sop_class in [CT, SC] {
        association
            .context_for_role(sop_class, Role::Scp)
            .expect("the SCP role for the sub-operations");
    }
    let rq = Message::CGetRq(CGetRq {
        message_id: association.next_message_id(),
        affected_sop_class_uid: STUDY_ROOT_GET.into(),
        priority: Priority::Medium,
        data_set_present: true,
    });
    let keys = [
        level("STUDY"),
        element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_1),
    ];
    let mut responses = send(association, STUDY_ROOT_GET, rq, &keys).await;

    let mut received = Vec::new();
    let last = loop {
        tokio::select! {
            incoming = association.next_request() => {
                let mut incoming = incoming.expect("a C-STORE-RQ");
                let Message::CStoreRq(store) = incoming.message.clone() else {
                    panic!("expected a C-STORE-RQ, got {:?}", incoming.message);
                };
                let data = within(
                    "data set",
                    incoming.data_set.take().expect("data").collect(1 << 24),
                )
                .await
                .expect("data set");
                received.push((store.affected_sop_instance_uid.clone(), data));
                let rsp = CStoreRsp {
                    affected_sop_class_uid: Some(store.affected_sop_class_uid),
                    affected_sop_instance_uid: Some(store.affected_sop_instance_uid),
                    ..CStoreRsp::new(store.message_id, Status::SUCCESS)
                };
                within(
                    "C-STORE-RSP",
                    association.respond(incoming.presentation_context_id, rsp.into(), None),
                )
                .await
                .expect("answered");
            }
            response = responses.next() => {
                let response = response.expect("a C-GET-RSP").expect("a C-GET-RSP");
                let Message::CGetRsp(rsp) = response.message else {
                    panic!("expected a C-GET-RSP, got {:?}", response.message);
                };
                if response.is_final {
                    break rsp;
                }
            }
            _ = tokio::time::sleep(PATIENCE) => panic!("no final C-GET-RSP"),
        }
    };
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(last.number_of_completed_suboperations, Some(4));
    assert_eq!(last.number_of_failed_suboperations, Some(0));
    let mut expected: Vec<(String, Bytes)> = instances()
        .iter()
        .filter(|instance| instance.study.0 == STUDY_1)
        .map(|instance| {
            let path = folder
                .path()
                .join(instance.patient.0)
                .join(format!("{}.dcm", instance.sop_instance_uid()));
            (instance.sop_instance_uid(), data_set_of(&path))
        })
        .collect();
    expected.sort();
    received.sort();
    assert_eq!(received.len(), 4);
    assert_eq!(received, expected);

    session.end().await;
}

/// A C-MOVE of series `series` of study 1 to `destination`, through the Move SCU: how it ended.
async fn move_series(
    association: &Association,
    destination: &str,
    series: String,
) -> RetrieveOutcome {
    let keys = InMemDicomObject::from_element_iter([
        level("SERIES"),
        element(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_1),
        element(tags::SERIES_INSTANCE_UID, VR::UI, &series),
    ]);
    let query = QueryRequest::new(QueryModel::StudyRoot, keys);
    within(
        "C-MOVE",
        scu::move_to(association, destination, &query, |_| {}),
    )
    .await
    .expect("a final C-MOVE-RSP")
}

#[tokio::test]
async fn a_c_move_of_a_series_stores_it_at_the_configured_destination() {
    let folder = tempfile::tempdir().expect("tempdir");
    write_folder(folder.path());

    // The destination: a storage SCP writing into its own folder.
    let destination_folder = tempfile::tempdir().expect("tempdir");
    let arrivals: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let storage = FileStorage::new(destination_folder.path())
        .expect("storage")
        .on_stored(move |stored| seen.lock().unwrap().push(stored.path.clone()));
    let destination = TestServer::start(
        DEST_AE,
        Dispatcher::new().with(StoreScp::new(
            storage,
            vec![CT.into(), MR.into(), SC.into()],
            explicit(),
        )),
    )
    .await;

    let archive = FolderArchive::open(
        FolderArchiveConfig::new(folder.path())
            .with_destination(DEST_AE, destination.address.to_string()),
    )
    .await
    .expect("archive");
    let session = Session::open(&archive, None, request(&[STUDY_ROOT_MOVE])).await;
    let association = &session.association;
    let last = move_series(association, DEST_AE, format!("{STUDY_1}.1")).await;
    assert_eq!(last.status, Status::SUCCESS, "{:?}", last.error_comment);
    assert_eq!(last.sub_operations.completed, Some(3));

    let mut arrived = arrivals.lock().unwrap().clone();
    arrived.sort();
    let expected: Vec<String> = (1..=3).map(|n| format!("{STUDY_1}.1.{n}")).collect();
    assert_eq!(arrived.len(), 3, "{arrived:?}");
    for (path, uid) in arrived.iter().zip(&expected) {
        let original = folder.path().join("P1").join(format!("{uid}.dcm"));
        assert_eq!(data_set_of(path), data_set_of(&original), "{uid}");
    }

    // An AE title that is not configured: 0xA801, nothing sent.
    let last = move_series(association, "NOWHERE", format!("{STUDY_1}.2")).await;
    assert_eq!(last.status, Status::MOVE_DESTINATION_UNKNOWN);
    assert_eq!(arrivals.lock().unwrap().len(), 3);

    session.end().await;
    destination.stop(PATIENCE).await;
}

// ------------------------------------------------------------------------------------------
// Modality Worklist
// ------------------------------------------------------------------------------------------

/// A worklist item: one Scheduled Procedure Step.
fn write_worklist_item(root: &Path, name: &str, patient: &str, modality: &str, date: &str) {
    let step = InMemDicomObject::from_element_iter([
        element(tags::MODALITY, VR::CS, modality),
        element(
            tags::SCHEDULED_STATION_AE_TITLE,
            VR::AE,
            &format!("{modality}1"),
        ),
        element(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, date),
        element(tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM, "093000"),
        element(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, name),
    ]);
    let item = InMemDicomObject::from_element_iter([
        element(tags::ACCESSION_NUMBER, VR::SH, &format!("ACC-{name}")),
        element(tags::PATIENT_NAME, VR::PN, patient),
        element(tags::PATIENT_ID, VR::LO, name),
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![step]),
        ),
        element(tags::REQUESTED_PROCEDURE_ID, VR::SH, name),
    ]);
    let file = item
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT)
                .media_storage_sop_class_uid(WORKLIST_FIND)
                .media_storage_sop_instance_uid(format!("1.2.826.0.1.3680043.9.7.99.{name}")),
        )
        .expect("meta");
    file.write_to_file(root.join(format!("{name}.wl")))
        .expect("write");
}

#[tokio::test]
async fn a_worklist_query_matches_on_modality_and_date_range_in_the_step_sequence() {
    let archive_folder = tempfile::tempdir().expect("tempdir");
    let archive = open_archive(archive_folder.path()).await;
    let worklist = tempfile::tempdir().expect("tempdir");
    write_worklist_item(worklist.path(), "1", "DOE^JOHN", "CT", "20240610");
    write_worklist_item(worklist.path(), "2", "ROE^JANE", "MR", "20240612");
    write_worklist_item(worklist.path(), "3", "POE^EDGAR", "CT", "20240620");
    std::fs::write(worklist.path().join("notes.txt"), "not an item").expect("write");
    let session = Session::open(&archive, Some(worklist.path()), request(&[WORKLIST_FIND])).await;
    let association = &session.association;

    let step_keys = |modality: &str, dates: &str| {
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![InMemDicomObject::from_element_iter([
                element(tags::MODALITY, VR::CS, modality),
                element(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, dates),
                element(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, ""),
                element(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, ""),
            ])]),
        )
    };
    let keys = |modality: &str, dates: &str| {
        [
            element(tags::PATIENT_NAME, VR::PN, ""),
            element(tags::PATIENT_ID, VR::LO, ""),
            element(tags::ACCESSION_NUMBER, VR::SH, ""),
            step_keys(modality, dates),
        ]
    };

    let (matches, status) =
        find(association, WORKLIST_FIND, &keys("CT", "20240601-20240615")).await;
    assert_eq!(status, Status::SUCCESS);
    assert_eq!(matches.len(), 1, "{matches:?}");
    let item = &matches[0].1;
    assert_eq!(text(item, tags::PATIENT_NAME), "DOE^JOHN");
    assert_eq!(text(item, tags::ACCESSION_NUMBER), "ACC-1");
    assert!(item.get(tags::REQUESTED_PROCEDURE_ID).is_none());
    assert!(item.get(tags::QUERY_RETRIEVE_LEVEL).is_none());
    let steps = item
        .get(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
        .and_then(|e| e.value().items())
        .expect("the step sequence");
    assert_eq!(steps.len(), 1);
    assert_eq!(text(&steps[0], tags::SCHEDULED_STATION_AE_TITLE), "CT1");
    assert_eq!(
        text(&steps[0], tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
        "20240610"
    );
    assert_eq!(
        steps[0].iter().map(|e| e.tag()).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            tags::MODALITY,
            tags::SCHEDULED_STATION_AE_TITLE,
            tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
            tags::SCHEDULED_PROCEDURE_STEP_ID,
        ])
    );

    let (all_ct, _) = find(association, WORKLIST_FIND, &keys("CT", "")).await;
    assert_eq!(column(&all_ct, tags::PATIENT_ID), ["1", "3"]);
    let (june_12_on, _) = find(association, WORKLIST_FIND, &keys("", "20240611-")).await;
    assert_eq!(column(&june_12_on, tags::PATIENT_ID), ["2", "3"]);
    let (none, _) = find(association, WORKLIST_FIND, &keys("MR", "-20240611")).await;
    assert!(none.is_empty());

    // Items change during the day: a new file is seen by the next query.
    write_worklist_item(worklist.path(), "4", "NEW^ITEM", "MR", "20240601");
    let (now, _) = find(association, WORKLIST_FIND, &keys("MR", "-20240611")).await;
    assert_eq!(column(&now, tags::PATIENT_ID), ["4"]);

    session.end().await;
}
