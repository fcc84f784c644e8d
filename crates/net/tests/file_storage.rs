//! FileStorage on a root that several servers share: files linked into place never replace
//! another (the next free name is taken, a bounded number of times), and each storage's
//! temporary files carry its prefix, so that it removes only its own leftovers.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;

use common::*;
use dimsum_net::dataset::part10;
use dimsum_net::dimse::status::Status;
use dimsum_net::storage::{
    BUFFER_BELOW, FileStorage, InstanceDescription, Origin, Storage, StoreFailure, StoreSuccess,
    UNIQUE_NAME_TRIES,
};
use dimsum_net::ul::uids::EXPLICIT_VR_LITTLE_ENDIAN;

fn description(sop_instance_uid: &str) -> InstanceDescription {
    InstanceDescription {
        sop_class_uid: SECONDARY_CAPTURE.into(),
        sop_instance_uid: sop_instance_uid.into(),
        transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.into(),
        origin: Origin::Web { peer_address: None },
    }
}

/// Stores `data_set` through `storage` in pieces of 16 KiB, as a network would bring it.
async fn store(
    storage: &FileStorage,
    sop_instance_uid: &str,
    data_set: &[u8],
) -> Result<StoreSuccess, StoreFailure> {
    let mut writer = storage.begin(&description(sop_instance_uid)).await?;
    for piece in data_set.chunks(16 * 1024) {
        writer.write(Bytes::copy_from_slice(piece)).await?;
    }
    writer.finish().await
}

/// The data set of the Part 10 file at `path`.
fn data_set_of(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("stored file");
    let (_, offset) = part10::read_meta(&mut std::io::Cursor::new(&bytes)).expect("file meta");
    bytes[offset as usize..].to_vec()
}

fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .expect("folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn with_unique_names_a_second_file_of_an_instance_takes_the_next_free_name() {
    let root = tempfile::tempdir().expect("tempdir");
    // Two servers on one root.
    let first = FileStorage::new(root.path())
        .expect("storage")
        .with_unique_names(true)
        .with_temporary_prefix("node-a");
    let second = FileStorage::new(root.path())
        .expect("storage")
        .with_unique_names(true)
        .with_temporary_prefix("node-b");
    let small = data_set("1.2.3.1", 100);
    let large = data_set("1.2.3.1", BUFFER_BELOW + 50_000);
    let other = data_set("1.2.3.1", 200);
    for (storage, data) in [(&first, &small), (&second, &large), (&first, &other)] {
        let success = store(storage, "1.2.3.1", data).await.expect("stored");
        assert_eq!(success.status, Status::SUCCESS);
    }
    assert_eq!(
        names_in(root.path()),
        ["1.2.3.1.2.dcm", "1.2.3.1.3.dcm", "1.2.3.1.dcm"]
    );
    // Each file is the one its store wrote: none replaced another.
    assert_eq!(data_set_of(&root.path().join("1.2.3.1.dcm")), small);
    assert_eq!(data_set_of(&root.path().join("1.2.3.1.2.dcm")), large);
    assert_eq!(data_set_of(&root.path().join("1.2.3.1.3.dcm")), other);

    // Without unique names a second store replaces the file in place, as DCMTK's storescp does.
    let plain = FileStorage::new(root.path()).expect("storage");
    store(&plain, "1.2.3.1", &other).await.expect("stored");
    assert_eq!(data_set_of(&root.path().join("1.2.3.1.dcm")), other);
    assert_eq!(names_in(root.path()).len(), 3);
}

#[tokio::test]
async fn unique_names_are_tried_a_bounded_number_of_times() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = FileStorage::new(root.path())
        .expect("storage")
        .with_unique_names(true);
    let taken: Vec<PathBuf> = (1..=UNIQUE_NAME_TRIES)
        .map(|n| match n {
            1 => root.path().join("1.2.3.2.dcm"),
            n => root.path().join(format!("1.2.3.2.{n}.dcm")),
        })
        .collect();
    for path in &taken {
        std::fs::write(path, b"someone else's").expect("written");
    }
    for data in [
        data_set("1.2.3.2", 10),
        data_set("1.2.3.2", BUFFER_BELOW + 10),
    ] {
        let failure = store(&storage, "1.2.3.2", &data)
            .await
            .expect_err("no free name");
        assert_eq!(failure.status, Status::PROCESSING_FAILURE);
        assert!(
            failure.comment.contains("16 files of this instance"),
            "{}",
            failure.comment
        );
    }
    // Nothing replaced, nothing left behind.
    for path in &taken {
        assert_eq!(std::fs::read(path).expect("kept"), b"someone else's");
    }
    assert_eq!(names_in(root.path()).len(), taken.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_racing_for_one_name_on_a_shared_root_each_keep_their_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let storages: Vec<FileStorage> = ["a", "b"]
        .into_iter()
        .map(|node| {
            FileStorage::new(root.path())
                .expect("storage")
                .with_unique_names(true)
                .with_temporary_prefix(node)
        })
        .collect();
    // Twelve stores of one instance at once, each with a data set of its own size.
    let racing: Vec<_> = (0..12usize)
        .map(|i| {
            let storage = storages[i % 2].clone();
            tokio::spawn(async move {
                let data = data_set("1.2.3.3", 100 + i * 2);
                store(&storage, "1.2.3.3", &data).await.expect("stored");
                data
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in racing {
        sent.push(task.await.expect("task"));
    }
    let mut found: Vec<Vec<u8>> = names_in(root.path())
        .iter()
        .map(|name| data_set_of(&root.path().join(name)))
        .collect();
    sent.sort();
    found.sort();
    assert_eq!(found, sent, "every store's file is there, whole");
}

#[tokio::test]
async fn each_storage_removes_only_its_own_temporary_files() {
    let root = tempfile::tempdir().expect("tempdir");
    let node_a = FileStorage::new(root.path())
        .expect("storage")
        .with_temporary_prefix("node-a");
    let node_b = FileStorage::new(root.path())
        .expect("storage")
        .with_temporary_prefix("node/b");
    let unprefixed = FileStorage::new(root.path()).expect("storage");
    store(&node_a, "1.2.3.4", &data_set("1.2.3.4", 10))
        .await
        .expect("stored");

    // The temporary file of a large instance in flight on each node, copied as if a crash had
    // left it.
    let mut leftovers = Vec::new();
    for storage in [&node_a, &node_b, &unprefixed] {
        let mut writer = storage.begin(&description("1.2.3.5")).await.expect("begun");
        writer
            .write(Bytes::from(data_set("1.2.3.5", BUFFER_BELOW + 10)))
            .await
            .expect("written");
        // The blocking writer creates it as it starts.
        let in_flight = within("the temporary file", async {
            loop {
                let found = names_in(root.path())
                    .into_iter()
                    .find(|name| name.starts_with('.') && !leftovers.contains(name));
                match found {
                    Some(name) => break name,
                    None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                }
            }
        })
        .await;
        assert!(storage.is_own_temporary(&in_flight), "{in_flight}");
        let leftover = in_flight.replace(".part", "0.part");
        std::fs::copy(root.path().join(&in_flight), root.path().join(&leftover)).expect("copied");
        // Dropped, the writer removes its own (the copy stays).
        drop(writer);
        let gone = root.path().join(&in_flight);
        within("the writer's cleanup", async {
            while gone.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        leftovers.push(in_flight);
        leftovers.push(leftover);
    }
    let [a, b, plain] = [1, 3, 5].map(|i| leftovers[i].clone());
    assert!(a.starts_with(".node-a~1.2.3.5."), "{a}");
    // The prefix is made safe as a file name.
    assert!(b.starts_with(".node_b~1.2.3.5."), "{b}");
    assert!(plain.starts_with(".1.2.3.5."), "{plain}");
    assert!(!node_a.is_own_temporary(&b) && !node_b.is_own_temporary(&a));
    assert!(!node_a.is_own_temporary("1.2.3.4.dcm"));

    let removed = node_a.remove_temporary_files().expect("removed");
    assert_eq!(removed, vec![root.path().join(&a)]);
    assert_eq!(
        names_in(root.path()),
        [plain.clone(), b.clone(), "1.2.3.4.dcm".into()]
    );
    // A storage without a prefix takes every temporary file for its own.
    let removed = unprefixed.remove_temporary_files().expect("removed");
    assert_eq!(removed.len(), 2);
    assert_eq!(names_in(root.path()), ["1.2.3.4.dcm"]);
}
