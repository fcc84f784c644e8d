//! The `Archive`: stores through its `Storage` (duplicate policies, refused data sets, nothing
//! visible before its commit), deletes, scans of an existing folder, the check after a crash
//! (simulated by hand, and a real kill -9 of a process ingesting), and C-STORE, C-FIND, C-GET
//! and C-MOVE through a real `dimsum_net::Server` over it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use dimsum_net::dataset::dicom_core::value::PrimitiveValue;
use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::dicom_object::mem::InMemElement;
use dimsum_net::dataset::identifier;
use dimsum_net::dataset::part10::{self, FileMeta, encode_header};
use dimsum_net::dataset::query_model::QueryModel;
use dimsum_net::dimse::message::Priority;
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{Dispatcher, FindScp, GetScp, MoveScp, StoreScp};
use dimsum_net::scu::store::{StoreRequest, store_data_set};
use dimsum_net::scu::{self, QueryRequest};
use dimsum_net::storage::{
    FileStorage, InstanceDescription, Origin, Storage, StoreFailure, StoreSuccess,
};
use dimsum_net::ul::negotiation::{AssociationRequest, ProposedContext};
use dimsum_pacs::archive::{self, Archive, ArchiveConfig, DuplicatePolicy};
use dimsum_pacs::index::DeleteTarget;

mod common;
use common::{
    CT, EXPLICIT, MR, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, TestServer, element,
    explicit,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// A test instance: patient, study, series, number, description, pixel bytes.
#[derive(Clone)]
struct Spec {
    patient: String,
    study: String,
    series: String,
    sop: String,
    class: &'static str,
    description: String,
    pixels: usize,
}

fn spec(patient: &str, study: &str, series: &str, number: u32) -> Spec {
    Spec {
        patient: patient.into(),
        study: study.into(),
        series: format!("{study}.{series}"),
        sop: format!("{study}.{series}.{number}"),
        class: CT,
        description: "FIRST".into(),
        pixels: 64,
    }
}

impl Spec {
    fn object(&self) -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            element(tags::SOP_CLASS_UID, VR::UI, self.class),
            element(tags::SOP_INSTANCE_UID, VR::UI, &self.sop),
            element(tags::STUDY_DATE, VR::DA, "20240105"),
            element(
                tags::MODALITY,
                VR::CS,
                if self.class == MR { "MR" } else { "CT" },
            ),
            element(tags::STUDY_DESCRIPTION, VR::LO, &self.description),
            element(tags::PATIENT_NAME, VR::PN, "DOE^JOHN"),
            element(tags::PATIENT_ID, VR::LO, &self.patient),
            element(tags::STUDY_INSTANCE_UID, VR::UI, &self.study),
            element(tags::SERIES_INSTANCE_UID, VR::UI, &self.series),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8((0..self.pixels).map(|i| (i % 251) as u8).collect()),
            ),
        ])
    }

    fn data_set(&self) -> Vec<u8> {
        identifier::encode(&self.object(), EXPLICIT).expect("data set")
    }

    fn write_file(&self, path: &Path) {
        let mut bytes = encode_header(&FileMeta::new(
            self.class, &self.sop, EXPLICIT, "1.2.3", "TEST",
        ))
        .expect("header");
        bytes.extend(self.data_set());
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("folder");
        }
        std::fs::write(path, bytes).expect("write");
    }

    fn description(&self) -> InstanceDescription {
        InstanceDescription {
            sop_class_uid: self.class.into(),
            sop_instance_uid: self.sop.clone(),
            transfer_syntax_uid: EXPLICIT.into(),
            origin: Origin::Web { peer_address: None },
        }
    }
}

/// Stores one instance through the archive's `Storage`, as a StoreScp would.
async fn store(archive: &Archive, spec: &Spec) -> Result<StoreSuccess, StoreFailure> {
    store_bytes(archive, &spec.description(), spec.data_set()).await
}

async fn store_bytes(
    archive: &Archive,
    description: &InstanceDescription,
    data_set: Vec<u8>,
) -> Result<StoreSuccess, StoreFailure> {
    let mut writer = archive.begin(description).await?;
    for piece in data_set.chunks(64 * 1024) {
        writer.write(Bytes::copy_from_slice(piece)).await?;
    }
    writer.finish().await
}

fn stored_path(data: &Path, spec: &Spec) -> PathBuf {
    data.join(archive::STORAGE_FOLDER)
        .join(&spec.study)
        .join(&spec.series)
        .join(format!("{}.dcm", spec.sop))
}

/// The data set of a Part 10 file.
fn data_set_of(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read");
    let (_, offset) = part10::read_meta(&mut &bytes[..]).expect("meta");
    bytes[offset as usize..].to_vec()
}

async fn open(data: &Path, policy: DuplicatePolicy) -> Archive {
    Archive::open(ArchiveConfig::new(data).with_duplicates(policy))
        .await
        .expect("archive")
}

/// [`open`] after an archive of the same folder was dropped without being closed: its writer
/// may still be committing what it was handed (for up to its linger), holding the folder's
/// lock meanwhile, where a killed process would have let go at once. Waits for the lock, at
/// most 10 s.
async fn open_after_drop(data: &Path, policy: DuplicatePolicy) -> Archive {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Archive::open(ArchiveConfig::new(data).with_duplicates(policy)).await {
            Err(archive::Error::Locked(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            opened => return opened.expect("archive"),
        }
    }
}

/// The description of the study of `uid`, as C-FIND finds it through the archive's index.
async fn study_description(archive: &Archive, uid: &str) -> Option<String> {
    let found = archive
        .lookup(uid)
        .await
        .expect("lookup")
        .map(|instance| instance.location.path);
    found.map(|path| {
        let object = identifier::decode(
            &data_set_of(&path),
            EXPLICIT,
            &dimsum_net::dataset::scan::ScanLimits::default(),
        )
        .expect("decoded");
        object
            .get(tags::STUDY_DESCRIPTION)
            .expect("description")
            .to_str()
            .expect("text")
            .into_owned()
    })
}

// ------------------------------------------------------------------------------------------
// Storing
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stored_instance_is_filed_by_study_and_series_and_indexed() {
    let data = tempfile::tempdir().expect("tempdir");
    let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
    let one = spec("P1", "1.2.3", "1", 1);
    let success = store(&archive, &one).await.expect("stored");
    assert_eq!(success.status, Status::SUCCESS);
    let path = stored_path(data.path(), &one);
    assert_eq!(data_set_of(&path), one.data_set());
    let found = archive
        .lookup(&one.sop)
        .await
        .expect("lookup")
        .expect("indexed");
    assert_eq!(found.location.path, path);
    assert_eq!(found.sop_class_uid, CT);
    assert!(
        archive
            .contains(&format!("{}\0", one.sop))
            .await
            .expect("lookup")
    );
    assert!(!archive.contains("1.2.3.9").await.expect("lookup"));
    let statistics = archive.statistics();
    assert_eq!(statistics.stored, 1);
    assert_eq!(statistics.stored_bytes, one.data_set().len() as u64);

    // A second archive on the same directory is refused while this one is open.
    let second = Archive::open(ArchiveConfig::new(data.path())).await;
    assert!(
        matches!(second, Err(archive::Error::Locked(_))),
        "{second:?}"
    );
    archive.close().await.expect("closed");
}

#[tokio::test]
async fn duplicates_are_kept_replaced_or_refused_as_configured() {
    let data = tempfile::tempdir().expect("tempdir");
    let first = spec("P1", "1.2.3", "1", 1);
    let again = Spec {
        description: "SECOND".into(),
        ..first.clone()
    };

    let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
    store(&archive, &first).await.expect("stored");
    let kept = store(&archive, &again).await.expect("success");
    assert_eq!(kept.status, Status::SUCCESS);
    assert_eq!(
        study_description(&archive, &first.sop).await.as_deref(),
        Some("FIRST")
    );
    assert_eq!(archive.statistics().duplicates_kept, 1);
    // A large one (streamed to disk when new): the stored file stays as it was, and nothing
    // of the second is left behind.
    let large = Spec {
        pixels: 600 * 1024,
        ..spec("P1", "1.2.3", "5", 2)
    };
    store(&archive, &large).await.expect("stored");
    let large_file = std::fs::read(stored_path(data.path(), &large)).expect("stored file");
    let large_again = Spec {
        description: "SECOND".into(),
        ..large.clone()
    };
    let kept = store(&archive, &large_again).await.expect("success");
    assert_eq!(kept.status, Status::SUCCESS);
    assert_eq!(
        std::fs::read(stored_path(data.path(), &large)).expect("stored file"),
        large_file
    );
    assert_eq!(archive.statistics().duplicates_kept, 2);
    let storage = data.path().join(archive::STORAGE_FOLDER);
    let leftovers: Vec<_> = std::fs::read_dir(&storage)
        .expect("storage")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    archive.close().await.expect("closed");
    drop(archive);

    let archive = open(data.path(), DuplicatePolicy::Reject).await;
    let refused = store(&archive, &again).await.expect_err("refused");
    assert_eq!(refused.status, Status::OUT_OF_RESOURCES);
    assert!(
        refused.comment.contains("stored already"),
        "{}",
        refused.comment
    );
    assert_eq!(
        study_description(&archive, &first.sop).await.as_deref(),
        Some("FIRST")
    );
    archive.close().await.expect("closed");
    drop(archive);

    let archive = open(data.path(), DuplicatePolicy::Replace).await;
    store(&archive, &again).await.expect("replaced");
    assert_eq!(
        study_description(&archive, &first.sop).await.as_deref(),
        Some("SECOND")
    );
    // Replaced by one filed in another series: the old file goes.
    let moved = Spec {
        series: "1.2.3.7".into(),
        description: "THIRD".into(),
        ..first.clone()
    };
    store(&archive, &moved).await.expect("replaced");
    // The old file is removed once the replacement is committed, after the store is answered.
    archive.settle().await;
    assert!(!stored_path(data.path(), &first).exists());
    assert!(
        !stored_path(data.path(), &first)
            .parent()
            .expect("folder")
            .exists(),
        "the empty series folder goes too"
    );
    assert_eq!(
        study_description(&archive, &first.sop).await.as_deref(),
        Some("THIRD")
    );
    let counts = archive.counts().await.expect("counts");
    assert_eq!((counts.series, counts.instances), (2, 2));
    assert_eq!(archive.statistics().replaced, 2);
    archive.close().await.expect("closed");
}

#[tokio::test]
async fn a_data_set_the_index_cannot_place_is_refused_and_nothing_of_it_stays() {
    let data = tempfile::tempdir().expect("tempdir");
    let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
    // The command names another instance than the data set.
    let one = spec("P1", "1.2.3", "1", 1);
    let mut description = one.description();
    description.sop_instance_uid = "1.2.3.1.99".into();
    let refused = store_bytes(&archive, &description, one.data_set())
        .await
        .expect_err("refused");
    assert_eq!(refused.status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
    // No Series Instance UID.
    let mut object = one.object();
    object.remove_element(tags::SERIES_INSTANCE_UID);
    let refused = store_bytes(
        &archive,
        &one.description(),
        identifier::encode(&object, EXPLICIT).expect("encoded"),
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
    assert!(
        refused.comment.contains("Series Instance UID"),
        "{}",
        refused.comment
    );
    // A UID that would be a path.
    let mut description = one.description();
    description.sop_instance_uid = "../../etc/passwd".into();
    let refused = store_bytes(&archive, &description, one.data_set())
        .await
        .expect_err("refused");
    assert_eq!(refused.status, Status::CANNOT_UNDERSTAND);

    let counts = archive.counts().await.expect("counts");
    assert_eq!(counts.instances, 0);
    let files =
        dimsum_pacs::file::list_files(&data.path().join(archive::STORAGE_FOLDER)).expect("listed");
    assert!(files.is_empty(), "{files:?}");
    assert_eq!(archive.statistics().store_failures, 3);
    archive.close().await.expect("closed");
}

#[tokio::test]
async fn deleting_removes_rows_and_files_together() {
    let data = tempfile::tempdir().expect("tempdir");
    let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
    let specs = [
        spec("P1", "1.2.3", "1", 1),
        spec("P1", "1.2.3", "1", 2),
        spec("P1", "1.2.3", "2", 1),
        spec("P1", "1.2.4", "1", 1),
    ];
    for one in &specs {
        store(&archive, one).await.expect("stored");
    }
    let deleted = archive
        .delete(DeleteTarget::Instance(specs[0].sop.clone()))
        .await
        .expect("deleted");
    assert_eq!(deleted.files, [stored_path(data.path(), &specs[0])]);
    assert!(!stored_path(data.path(), &specs[0]).exists());
    assert!(stored_path(data.path(), &specs[1]).exists());
    let deleted = archive
        .delete(DeleteTarget::Study("1.2.3".into()))
        .await
        .expect("deleted");
    assert_eq!(deleted.instances, 2);
    assert!(
        !data
            .path()
            .join(archive::STORAGE_FOLDER)
            .join("1.2.3")
            .exists()
    );
    let counts = archive.counts().await.expect("counts");
    assert_eq!(
        (counts.patients, counts.studies, counts.instances),
        (1, 1, 1)
    );
    assert!(archive.contains(&specs[3].sop).await.expect("lookup"));
    archive.close().await.expect("closed");
}

#[tokio::test]
async fn an_existing_folder_is_indexed_in_place_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let folder = tempfile::tempdir().expect("tempdir");
    for n in 1..=5 {
        spec("P9", "9.1", "1", n).write_file(&folder.path().join(format!("sub/{n}.dcm")));
    }
    std::fs::write(folder.path().join("notes.txt"), "not DICOM").expect("write");
    let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
    let mut seen = Vec::new();
    let progress = std::sync::Mutex::new(&mut seen);
    let report = archive
        .scan(folder.path(), |p| {
            progress.lock().expect("lock").push((p.done, p.total))
        })
        .await
        .expect("scanned");
    assert_eq!((report.files, report.indexed, report.skipped), (6, 5, 1));
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.last(), Some(&(6, 6)));
    let found = archive
        .lookup("9.1.1.3")
        .await
        .expect("lookup")
        .expect("indexed");
    assert_eq!(found.location.path, folder.path().join("sub/3.dcm"));
    let again = archive.scan(folder.path(), |_| {}).await.expect("scanned");
    assert_eq!((again.indexed, again.already_indexed), (0, 5));
    assert_eq!(archive.counts().await.expect("counts").instances, 5);
    archive.close().await.expect("closed");
}

// ------------------------------------------------------------------------------------------
// Crash safety
// ------------------------------------------------------------------------------------------

/// Checks that index and storage agree: every row's file is there and complete, every file of
/// the storage has its row, no temporary file is left.
async fn assert_consistent(archive: &Archive, data: &Path) -> usize {
    let storage = data.join(archive::STORAGE_FOLDER);
    let files = dimsum_pacs::file::list_files(&storage).expect("listed");
    let hidden: Vec<_> = dimsum_pacs::file::list_files_and_hidden(&storage, |_| true)
        .expect("listed")
        .into_iter()
        .filter(|path| !files.contains(path))
        .collect();
    assert!(hidden.is_empty(), "temporary files left: {hidden:?}");
    let mut rows = 0;
    let mut after = None;
    loop {
        let page = archive
            .index()
            .instances_after(after.clone(), 100)
            .await
            .expect("rows");
        let Some(last) = page.last() else { break };
        after = Some(last.sop_instance_uid.clone());
        for instance in page {
            rows += 1;
            let file = dimsum_pacs::file::read_part10(
                &instance.location.path,
                &dimsum_net::dataset::scan::ScanLimits::default(),
            )
            .unwrap_or_else(|error| panic!("row without a complete file: {error}"));
            assert_eq!(file.data_set_length, instance.location.data_set_length);
        }
    }
    for file in &files {
        let uid = file
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let found = archive.lookup(&uid).await.expect("lookup");
        assert_eq!(
            found.map(|f| f.location.path).as_ref(),
            Some(file),
            "file without its row"
        );
    }
    assert_eq!(rows, files.len());
    rows
}

#[tokio::test]
async fn reopening_after_a_crash_makes_index_and_storage_agree() {
    let data = tempfile::tempdir().expect("tempdir");
    let specs: Vec<Spec> = (1..=4).map(|n| spec("P1", "1.2.3", "1", n)).collect();
    {
        let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
        for one in &specs {
            store(&archive, one).await.expect("stored");
        }
        // Dropped without close: as after a kill.
    }
    let storage = data.path().join(archive::STORAGE_FOLDER);
    // A row without its file.
    std::fs::remove_file(stored_path(data.path(), &specs[0])).expect("remove");
    // A file without its row (its store was cut off between the rename and the commit).
    let orphan = spec("P2", "5.6", "1", 1);
    orphan.write_file(&stored_path(data.path(), &orphan));
    // A file that changed under its row.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Spec {
        description: "CHANGED".into(),
        pixels: 200,
        ..specs[1].clone()
    }
    .write_file(&stored_path(data.path(), &specs[1]));
    // Temporary files (in the root, and in a series folder, where a small store writes its
    // own), and a second file of an indexed instance.
    std::fs::write(storage.join(".1.2.3.1.9.123-0.part"), b"half").expect("write");
    let series_folder = stored_path(data.path(), &specs[1])
        .parent()
        .expect("series folder")
        .to_path_buf();
    std::fs::write(series_folder.join(".1.2.3.1.9.123-1.part"), b"half").expect("write");
    specs[2].write_file(
        &storage
            .join("elsewhere")
            .join(format!("{}.dcm", specs[2].sop)),
    );

    let archive = open_after_drop(data.path(), DuplicatePolicy::KeepFirst).await;
    let rows = assert_consistent(&archive, data.path()).await;
    assert_eq!(rows, 4, "specs 2–4 and the orphan");
    assert!(!archive.contains(&specs[0].sop).await.expect("lookup"));
    assert!(archive.contains(&orphan.sop).await.expect("lookup"));
    assert_eq!(
        study_description(&archive, &specs[1].sop).await.as_deref(),
        Some("CHANGED")
    );
    let counts = archive.counts().await.expect("counts");
    assert_eq!((counts.patients, counts.studies), (2, 2));
    archive.close().await.expect("closed");
    drop(archive);

    // Closed cleanly: the next open finds it so and changes nothing.
    let archive = open(data.path(), DuplicatePolicy::KeepFirst).await;
    assert_eq!(assert_consistent(&archive, data.path()).await, 4);
    archive.close().await.expect("closed");
}

const CRASH_DIR: &str = "DIMSUM_ARCHIVE_CRASH_DIR";

/// The child of `a_kill_during_ingest_leaves_index_and_storage_in_agreement`: stores instances
/// into the archive at `$DIMSUM_ARCHIVE_CRASH_DIR` until it is killed.
#[test]
#[ignore = "run as a child process by a_kill_during_ingest_leaves_index_and_storage_in_agreement"]
fn ingest_until_killed() {
    let data = PathBuf::from(std::env::var(CRASH_DIR).expect("the data directory"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let archive = open(&data, DuplicatePolicy::Replace).await;
        let mut tasks = Vec::new();
        for worker in 0..4u32 {
            let archive = archive.clone();
            tasks.push(tokio::spawn(async move {
                for n in 1.. {
                    let mut one = spec("P1", &format!("7.{worker}"), &format!("{}", n % 7), n);
                    // Every third instance is large enough to stream to its file.
                    one.pixels = if n % 3 == 0 { 600 * 1024 } else { 512 };
                    store(&archive, &one).await.expect("stored");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    });
}

#[tokio::test]
async fn a_kill_during_ingest_leaves_index_and_storage_in_agreement() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["ingest_until_killed", "--exact", "--ignored", "--nocapture"])
        .env(CRASH_DIR, data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child");
    let storage = data.path().join(archive::STORAGE_FOLDER);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let stored = dimsum_pacs::file::list_files(&storage).map_or(0, |files| files.len());
        if stored >= 60 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child stored only {stored} files"
        );
        assert!(child.try_wait().expect("wait").is_none(), "the child ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let archive = open(data.path(), DuplicatePolicy::Replace).await;
    let rows = assert_consistent(&archive, data.path()).await;
    assert!(rows >= 50, "{rows} instances survived");
    archive.close().await.expect("closed");
}

// ------------------------------------------------------------------------------------------
// Over the network
// ------------------------------------------------------------------------------------------

async fn serve(archive: &Archive) -> TestServer {
    let dispatcher = Dispatcher::new()
        .with(StoreScp::new(
            archive.clone(),
            vec![CT.into(), MR.into()],
            explicit(),
        ))
        .with(FindScp::new(
            archive.clone(),
            vec![STUDY_ROOT_FIND.into()],
            explicit(),
        ))
        .with(
            GetScp::new(archive.clone(), vec![STUDY_ROOT_GET.into()], explicit())
                .with_storage(vec![CT.into(), MR.into()], explicit()),
        )
        .with(MoveScp::new(
            archive.clone(),
            vec![STUDY_ROOT_MOVE.into()],
            explicit(),
        ));
    TestServer::start("ARCHIVE", dispatcher).await
}

fn keys(level: &str, elements: Vec<InMemElement>) -> InMemDicomObject {
    let mut object = InMemDicomObject::from_element_iter(elements);
    object.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
    object
}

#[tokio::test]
async fn c_store_c_find_c_get_and_c_move_through_a_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let destination_folder = tempfile::tempdir().expect("tempdir");
    let destination = TestServer::start(
        "DEST",
        Dispatcher::new().with(StoreScp::new(
            FileStorage::new(destination_folder.path()).expect("storage"),
            vec![CT.into(), MR.into()],
            explicit(),
        )),
    )
    .await;
    let archive = Archive::open(
        ArchiveConfig::new(data.path())
            .with_result_limit(Some(2))
            .with_move_associations(2)
            .with_destination("DEST", destination.address.to_string()),
    )
    .await
    .expect("archive");
    let server = serve(&archive).await;

    // C-STORE: three studies of one patient, one of them with two series.
    let specs = [
        spec("P1", "1.2.3", "1", 1),
        spec("P1", "1.2.3", "1", 2),
        Spec {
            class: MR,
            ..spec("P1", "1.2.3", "2", 1)
        },
        spec("P1", "1.2.4", "1", 1),
        spec("P1", "1.2.5", "1", 1),
    ];
    let request = AssociationRequest::new("SCU", "ARCHIVE").with_contexts(
        [CT, MR, STUDY_ROOT_FIND, STUDY_ROOT_MOVE]
            .into_iter()
            .map(|sop_class| ProposedContext::new(sop_class, [EXPLICIT])),
    );
    let association = server.connect(&request, PATIENCE).await;
    for one in &specs {
        let context = association.context_for(one.class).expect("context");
        let response = store_data_set(
            &association,
            context,
            &StoreRequest {
                sop_class_uid: one.class.into(),
                sop_instance_uid: one.sop.clone(),
                priority: Priority::Medium,
                move_originator: None,
            },
            &one.data_set(),
        )
        .await
        .expect("stored");
        assert_eq!(response.status, Status::SUCCESS);
    }

    // C-FIND: series of one study, with computed keys.
    let found = scu::find(
        &association,
        &QueryRequest::new(
            QueryModel::StudyRoot,
            keys(
                "SERIES",
                vec![
                    element(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
                    element(tags::SERIES_INSTANCE_UID, VR::UI, ""),
                    element(tags::MODALITY, VR::CS, ""),
                    element(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
                ],
            ),
        ),
    )
    .await
    .expect("found");
    assert_eq!(found.status, Status::SUCCESS);
    let mut series: Vec<(String, String, String)> = found
        .matches
        .iter()
        .map(|m| {
            let text = |tag| {
                m.identifier
                    .get(tag)
                    .expect("key")
                    .to_str()
                    .expect("t")
                    .into_owned()
            };
            (
                text(tags::SERIES_INSTANCE_UID),
                text(tags::MODALITY),
                text(tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
            )
        })
        .collect();
    series.sort();
    assert_eq!(
        series,
        [
            ("1.2.3.1".into(), "CT".into(), "2".into()),
            ("1.2.3.2".into(), "MR".into(), "1".into())
        ]
    );
    // C-FIND past the result limit: two matches, then 0xA700 with a comment.
    let limited = scu::find(
        &association,
        &QueryRequest::new(
            QueryModel::StudyRoot,
            keys("STUDY", vec![element(tags::STUDY_INSTANCE_UID, VR::UI, "")]),
        ),
    )
    .await
    .expect("answered");
    assert_eq!(limited.matches.len(), 2);
    assert_eq!(limited.status, Status::OUT_OF_RESOURCES);
    assert!(
        limited
            .error_comment
            .as_deref()
            .is_some_and(|c| c.contains("more than 2 matches")),
        "{limited:?}"
    );

    // C-MOVE of a study to DEST, over two associations.
    let moved = scu::move_to(
        &association,
        "DEST",
        &QueryRequest::new(
            QueryModel::StudyRoot,
            keys(
                "STUDY",
                vec![element(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3")],
            ),
        ),
        |_| {},
    )
    .await
    .expect("moved");
    assert_eq!(moved.status, Status::SUCCESS, "{moved:?}");
    assert_eq!(moved.sub_operations.completed, Some(3));
    for one in &specs[..3] {
        let received = destination_folder.path().join(format!("{}.dcm", one.sop));
        assert_eq!(data_set_of(&received), one.data_set(), "{}", one.sop);
    }
    tokio::time::timeout(PATIENCE, association.release())
        .await
        .expect("in time")
        .expect("released");

    // C-GET of one instance on an association of its own.
    let get_request = scu::propose_get(
        AssociationRequest::new("SCU", "ARCHIVE"),
        QueryModel::StudyRoot,
        &scu::storage_contexts(&[CT, MR], &[EXPLICIT]),
    )
    .expect("request");
    let association = server.connect(&get_request, PATIENCE).await;
    let received = tempfile::tempdir().expect("tempdir");
    let got = scu::get(
        &association,
        &QueryRequest::new(
            QueryModel::StudyRoot,
            keys(
                "IMAGE",
                vec![element(tags::SOP_INSTANCE_UID, VR::UI, &specs[4].sop)],
            ),
        ),
        FileStorage::new(received.path()).expect("storage"),
        |_| {},
    )
    .await
    .expect("got");
    assert_eq!(got.status, Status::SUCCESS, "{got:?}");
    assert_eq!(
        data_set_of(&received.path().join(format!("{}.dcm", specs[4].sop))),
        specs[4].data_set()
    );
    tokio::time::timeout(PATIENCE, association.release())
        .await
        .expect("in time")
        .expect("released");

    server.stop(PATIENCE).await;
    destination.stop(PATIENCE).await;
    let statistics = archive.statistics();
    assert_eq!(statistics.stored, 5);
    assert_eq!(statistics.queries, 2);
    assert_eq!(statistics.retrievals, 2);
    archive.close().await.expect("closed");
}

// ------------------------------------------------------------------------------------------
// Answering after the commit (archives sharing an index)
// ------------------------------------------------------------------------------------------

/// The SQLite index as another archive sharing it would leave it for this one: look-ups do not
/// see the instances it was told to hide (another node indexes them after this store's
/// look-up), an insert can be made to fail, and the commit's answer can be held back.
struct SharedIndex {
    inner: dimsum_pacs::index::SqliteIndex,
    hidden: std::sync::Mutex<Vec<String>>,
    fail_inserts: std::sync::atomic::AtomicBool,
    /// While set, each commit's answer waits for it to be cleared.
    hold_answers: tokio::sync::watch::Sender<bool>,
}

impl SharedIndex {
    async fn open(data: &Path) -> Arc<SharedIndex> {
        let config = dimsum_pacs::index::SqliteConfig::new(data.join(archive::INDEX_FILE));
        Arc::new(SharedIndex {
            inner: dimsum_pacs::index::SqliteIndex::open(config)
                .await
                .expect("index"),
            hidden: Default::default(),
            fail_inserts: Default::default(),
            hold_answers: tokio::sync::watch::Sender::new(false),
        })
    }

    fn is_hidden(&self, uid: &str) -> bool {
        self.hidden
            .lock()
            .unwrap()
            .iter()
            .any(|hidden| hidden == uid)
    }
}

use dimsum_net::storage::BoxFuture;
use dimsum_pacs::index::{
    Deleted, EntityUids, Index, IndexError, IndexedInstance, Inserted, OnDuplicate,
    PreparedInstance, RecordStream, ResponseStream, SessionStart,
};
use std::sync::Arc;

impl Index for SharedIndex {
    fn hand_over(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'static, Result<Inserted, IndexError>> {
        if self.fail_inserts.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(IndexError::Task("the database is gone".into())) });
        }
        let committed = self.inner.hand_over(instance, on_duplicate);
        let mut held = self.hold_answers.subscribe();
        Box::pin(async move {
            let outcome = committed.await;
            let _ = held.wait_for(|held| !*held).await;
            outcome
        })
    }

    fn query(
        &self,
        plan: dimsum_pacs::hierarchy::QueryPlan,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<ResponseStream, IndexError>> {
        self.inner.query(plan, limit)
    }

    fn instances(
        &self,
        plan: dimsum_pacs::hierarchy::QueryPlan,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>> {
        self.inner.instances(plan)
    }

    fn instance_records(
        &self,
        entity: EntityUids,
    ) -> BoxFuture<'_, Result<RecordStream, IndexError>> {
        self.inner.instance_records(entity)
    }

    fn lookup(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>> {
        self.inner.lookup(sop_instance_uid)
    }

    fn lookup_committed(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>> {
        Box::pin(async move {
            if self.is_hidden(&sop_instance_uid) {
                return Ok(None);
            }
            self.inner.lookup_committed(sop_instance_uid).await
        })
    }

    fn delete(&self, target: DeleteTarget) -> BoxFuture<'_, Result<Deleted, IndexError>> {
        self.inner.delete(target)
    }

    fn files_removed(&self, files: Vec<PathBuf>) -> BoxFuture<'_, Result<(), IndexError>> {
        self.inner.files_removed(files)
    }

    fn counts(&self) -> BoxFuture<'_, Result<dimsum_pacs::folder::IndexCounts, IndexError>> {
        self.inner.counts()
    }

    fn instances_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>> {
        self.inner.instances_after(after, limit)
    }

    fn begin_session(&self) -> BoxFuture<'_, Result<SessionStart, IndexError>> {
        self.inner.begin_session()
    }

    fn mark_clean(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        self.inner.mark_clean()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(async move { self.inner.close().await })
    }
}

/// An archive over `index` that answers each store once committed.
async fn open_shared(
    data: &Path,
    index: &Arc<SharedIndex>,
    policy: DuplicatePolicy,
    answer_after_commit: bool,
) -> Archive {
    let lock = std::fs::File::create(data.join("lock.test")).expect("lock file");
    let config = ArchiveConfig::new(data)
        .with_duplicates(policy)
        .with_answer_after_commit(answer_after_commit);
    Archive::with_index(config, index.clone(), lock)
        .await
        .expect("archive")
}

/// Every file under the archive's storage folder, sorted.
fn storage_files(data: &Path) -> Vec<PathBuf> {
    let mut files =
        dimsum_pacs::file::list_files(&data.join(archive::STORAGE_FOLDER)).expect("listed");
    files.sort();
    files
}

/// `spec` indexed by "another node" (its file indexed where it is, outside this archive's
/// storage folder), and hidden from this archive's duplicate look-up: as if the other node
/// committed it after this archive looked.
async fn stored_by_another_node(
    data: &Path,
    archive: &Archive,
    index: &SharedIndex,
    spec: &Spec,
) -> PathBuf {
    let folder = data.join("other-node");
    let path = folder.join(format!("{}.dcm", spec.sop));
    spec.write_file(&path);
    let report = archive.scan(&folder, |_| {}).await.expect("scanned");
    assert_eq!(report.indexed, 1);
    index.hidden.lock().unwrap().push(spec.sop.clone());
    path
}

#[tokio::test]
async fn answered_after_the_commit_a_store_waits_for_it() {
    for answer_after_commit in [false, true] {
        let data = tempfile::tempdir().expect("tempdir");
        let index = SharedIndex::open(data.path()).await;
        let archive = open_shared(
            data.path(),
            &index,
            DuplicatePolicy::KeepFirst,
            answer_after_commit,
        )
        .await;
        index.hold_answers.send_replace(true);
        let one = spec("P1", "1.2.3", "1", 1);
        let storing = tokio::spawn({
            let (archive, one) = (archive.clone(), one.clone());
            async move { store(&archive, &one).await }
        });
        let early = tokio::time::timeout(Duration::from_millis(300), async {
            while !storing.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok();
        // By default the answer comes once handed over; after the commit only when asked.
        assert_eq!(
            early, !answer_after_commit,
            "answer_after_commit {answer_after_commit}"
        );
        index.hold_answers.send_replace(false);
        let success = tokio::time::timeout(PATIENCE, storing)
            .await
            .expect("answered")
            .expect("task")
            .expect("stored");
        assert_eq!(success.status, Status::SUCCESS);
        assert!(archive.contains(&one.sop).await.expect("lookup"));
        assert_eq!(storage_files(data.path()), [stored_path(data.path(), &one)]);
        archive.close().await.expect("closed");
    }
}

#[tokio::test]
async fn an_instance_another_node_committed_meanwhile_is_answered_by_the_duplicate_policy() {
    for policy in [
        DuplicatePolicy::KeepFirst,
        DuplicatePolicy::Reject,
        DuplicatePolicy::Replace,
    ] {
        let data = tempfile::tempdir().expect("tempdir");
        let index = SharedIndex::open(data.path()).await;
        let archive = open_shared(data.path(), &index, policy, true).await;
        let first = spec("P1", "1.2.3", "1", 1);
        let again = Spec {
            description: "SECOND".into(),
            ..first.clone()
        };
        // Small (written in one go) and large (streamed to disk).
        let large = Spec {
            pixels: 600 * 1024,
            ..spec("P1", "1.2.3", "1", 2)
        };
        let large_again = Spec {
            description: "SECOND".into(),
            ..large.clone()
        };
        for (first, again) in [(&first, &again), (&large, &large_again)] {
            let theirs = stored_by_another_node(data.path(), &archive, &index, first).await;
            let answer = store(&archive, again).await;
            let found = study_description(&archive, &first.sop).await;
            match policy {
                DuplicatePolicy::KeepFirst => {
                    assert_eq!(answer.expect("success").status, Status::SUCCESS);
                    assert_eq!(found.as_deref(), Some("FIRST"), "{policy:?}");
                    assert!(theirs.exists());
                }
                DuplicatePolicy::Reject => {
                    let refused = answer.expect_err("refused");
                    assert_eq!(refused.status, Status::OUT_OF_RESOURCES);
                    assert!(
                        refused.comment.contains("stored already"),
                        "{}",
                        refused.comment
                    );
                    assert_eq!(found.as_deref(), Some("FIRST"), "{policy:?}");
                    assert!(theirs.exists());
                }
                DuplicatePolicy::Replace => {
                    assert_eq!(answer.expect("success").status, Status::SUCCESS);
                    assert_eq!(found.as_deref(), Some("SECOND"), "{policy:?}");
                    // The replaced file is gone by the time the store is answered.
                    assert!(!theirs.exists());
                }
            }
        }
        // Nothing of this archive's refused or dropped stores stays in its storage.
        let expected = match policy {
            DuplicatePolicy::Replace => {
                vec![
                    stored_path(data.path(), &first),
                    stored_path(data.path(), &large),
                ]
            }
            _ => Vec::new(),
        };
        assert_eq!(storage_files(data.path()), expected, "{policy:?}");
        let counts = archive.counts().await.expect("counts");
        assert_eq!(counts.instances, 2);
        let statistics = archive.statistics();
        match policy {
            DuplicatePolicy::KeepFirst => assert_eq!(statistics.duplicates_kept, 2),
            DuplicatePolicy::Reject => assert_eq!(statistics.duplicates_refused, 2),
            DuplicatePolicy::Replace => assert_eq!(statistics.replaced, 2),
        }
        archive.close().await.expect("closed");
    }
}

#[tokio::test]
async fn answered_after_the_commit_an_index_failure_is_0x0110_and_the_file_goes() {
    let data = tempfile::tempdir().expect("tempdir");
    let index = SharedIndex::open(data.path()).await;
    let archive = open_shared(data.path(), &index, DuplicatePolicy::KeepFirst, true).await;
    index
        .fail_inserts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let one = spec("P1", "1.2.3", "1", 1);
    let failed = store(&archive, &one).await.expect_err("failed");
    assert_eq!(failed.status, Status::PROCESSING_FAILURE);
    assert!(
        failed.comment.contains("the database is gone"),
        "{}",
        failed.comment
    );
    assert!(storage_files(data.path()).is_empty());
    assert!(!archive.contains(&one.sop).await.expect("lookup"));
    assert_eq!(archive.statistics().store_failures, 1);
    // The index is back: the same instance is stored.
    index
        .fail_inserts
        .store(false, std::sync::atomic::Ordering::SeqCst);
    store(&archive, &one).await.expect("stored");
    assert_eq!(storage_files(data.path()), [stored_path(data.path(), &one)]);
    archive.close().await.expect("closed");
}
