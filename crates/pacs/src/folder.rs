//! A Query/Retrieve archive over a folder of Part 10 files (PS3.4 Annex C), like DCMTK's
//! dcmqrscp storage area: the folder is indexed in memory at start (on tokio's blocking pool),
//! instances stored later are added one by one, and C-FIND, C-GET and C-MOVE are served through
//! the `dimsum-net` handler traits.
//!
//! # The index
//!
//! A tree Patient → Study → Series → Instance, each level in key order (Patient ID, then the
//! UIDs). Each entity keeps the attributes of its own level, taken from the first instance that
//! created it (PS3.4 C.6.1.1.2–C.6.1.1.5 say which attribute lives at which level; anything not
//! named there is an instance attribute), with the Specific Character Set of that instance and
//! the computed keys of its level (Number of … Related …, Modalities In Study, SOP Classes In
//! Study). An instance keeps its file, data set offset and length, SOP class, transfer syntax
//! and its own attributes before the Pixel Data; values longer than [`MAX_INDEXED_VALUE`]
//! bytes (other than sequences) are not kept, so the index stays small whatever the files hold.
//!
//! # Queries (PS3.4 C.4.1.3.1, hierarchical)
//!
//! A C-FIND at level L gives one response per entity at L whose own keys, and whose parents'
//! keys (the unique keys above L restrict; other keys of a level above L are matched against
//! that level too), all match with the engine of [`crate::matching`]. The response holds every
//! key of the query with the entity's value from its level, or zero-length; keys of a level
//! below L are neither matched nor filled, and the responses then carry status 0xFF01
//! (optional keys not supported). The responses stream out of the index: each step takes the
//! read lock, walks on from where the previous one stopped until the next match (or a bounded
//! number of entities) and lets go, so memory does not grow with the number of responses and
//! stores go on during a long query.
//!
//! # Relational queries (PS3.4 C.4.1.2.2.2, C.4.1.3.2)
//!
//! When the peer negotiated them (C-FIND extended negotiation byte 1, PS3.4 C.5.1.1), keys of
//! the levels below L are matched too: an entity at L matches when, besides its own chain, one
//! of its descendants at the deepest level with keys passes, with its parents below L, every
//! key of those levels. Unique keys of the levels above L are never required (a hierarchical
//! query does not require them here either). The responses carry the keys of the lower levels
//! zero-length: the entity has no single value for them (a study has many series), and the
//! standard asks for the values of the matching entity only. Combined date and time matching
//! (byte 2) is used when negotiated.
//!
//! # Retrieval (PS3.4 C.4.2, C.4.3)
//!
//! C-GET and C-MOVE match their identifier the same way, and send every instance below the
//! matching entities; the identifier must hold a non-universal unique key of its level.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::ops::{Bound, ControlFlow};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use futures_util::stream;
use tracing::{debug, info, warn};

use dimsum_dataset::dicom_core::header::HasLength;
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::identifier;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{
    FindHandler, FindMatch, InstanceData, MatchStream, MoveDestination, Query, Retrieval,
    RetrieveHandler, RetrieveInstance, ScpFailure,
};
use dimsum_net::storage::{BoxFuture, StoredInstance};

use crate::archive::MoveDestinations;
use crate::file::{self, FileError, Identity, Part10File};
use crate::hierarchy::{Level, QueryPlan as Plan, count_element, set_element, split_by_level};
use crate::index::relational::descendant_level;
use crate::matching::MatchOptions;

/// Values longer than this (in bytes, sequences excepted) are not kept in the index: they are
/// not what queries match on, and a folder of objects with large private blobs or waveforms
/// must not fill the memory.
pub const MAX_INDEXED_VALUE: u32 = 4096;

/// How many entities a C-FIND step examines under the read lock before letting go of it.
const ENTITIES_PER_STEP: usize = 256;

/// How a [`FolderArchive`] is set up.
#[derive(Debug, Clone)]
pub struct FolderArchiveConfig {
    /// The folder of Part 10 files, read recursively.
    pub root: PathBuf,
    /// C-MOVE destinations, and how many associations a C-MOVE may open to one at once (at
    /// least 1).
    pub move_destinations: MoveDestinations,
    /// Limits for the hardened scan of each file.
    pub limits: ScanLimits,
}

impl FolderArchiveConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            move_destinations: MoveDestinations::default(),
            limits: ScanLimits::default(),
        }
    }

    /// Adds a C-MOVE destination: `ae_title` is at `address` ("host:port").
    pub fn with_destination(
        mut self,
        ae_title: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        self.move_destinations.insert(ae_title, address);
        self
    }

    /// How many associations a C-MOVE may open to its destination at once (at least 1).
    pub fn with_move_associations(mut self, associations: usize) -> Self {
        self.move_destinations
            .set_associations(associations, usize::MAX);
        self
    }

    pub fn with_limits(mut self, limits: ScanLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Why the archive could not be opened or an instance not added.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive folder {path}: {source}")]
    Folder { path: PathBuf, source: io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: no {name}, so the instance has no place in the patient/study/series tree")]
    MissingAttribute { path: PathBuf, name: &'static str },
    #[error("the indexing task failed: {0}")]
    Task(String),
}

/// How many entities the index holds, and how many files it skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounts {
    pub patients: usize,
    pub studies: usize,
    pub series: usize,
    pub instances: usize,
    /// Files under the folder that were not indexed (not DICOM, damaged, or without the UIDs
    /// that place them), since the archive was opened.
    pub skipped_files: usize,
}

/// A Query/Retrieve archive serving a folder of Part 10 files (PS3.4 Annex C; Patient Root,
/// Study Root and Patient/Study Only information models, C.6.1–C.6.3). Cloning is cheap: the
/// clones share the index (one for the FindScp, one for the GetScp, one for the MoveScp, one
/// for the storage callback).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use dimsum_pacs::{FolderArchive, FolderArchiveConfig};
/// use dimsum_net::storage::FileStorage;
///
/// let archive = FolderArchive::open(
///     FolderArchiveConfig::new("/srv/dicom").with_destination("WORKSTATION", "10.0.0.7:104"),
/// )
/// .await?;
/// // Instances a StoreScp writes into the same folder become queryable once stored.
/// let storage = FileStorage::new("/srv/dicom")?.on_stored(archive.on_stored());
/// # let _ = storage;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FolderArchive {
    inner: Arc<Inner>,
}

struct Inner {
    config: FolderArchiveConfig,
    index: RwLock<Index>,
}

impl std::fmt::Debug for FolderArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderArchive")
            .field("root", &self.inner.config.root)
            .field("counts", &self.counts())
            .finish()
    }
}

impl FolderArchive {
    /// Indexes the folder (recursively, on tokio's blocking pool) and returns the archive. Files
    /// that are not DICOM, or that the scanner refuses, are skipped with a warning; a folder
    /// that cannot be read is an error.
    pub async fn open(config: FolderArchiveConfig) -> Result<FolderArchive, ArchiveError> {
        tokio::task::spawn_blocking(move || FolderArchive::open_blocking(config))
            .await
            .map_err(|error| ArchiveError::Task(error.to_string()))?
    }

    /// [`FolderArchive::open`] on the calling thread (which may block).
    pub fn open_blocking(config: FolderArchiveConfig) -> Result<FolderArchive, ArchiveError> {
        let files = file::list_files(&config.root).map_err(|source| ArchiveError::Folder {
            path: config.root.clone(),
            source,
        })?;
        let mut index = Index::default();
        for path in files {
            match read_instance(&path, &config.limits) {
                Ok(instance) => {
                    index.insert(instance);
                }
                Err(error) => {
                    index.skipped_files += 1;
                    match &error {
                        ArchiveError::File(error) if error.is_not_dicom() => {
                            warn!("{}: not a DICOM file, skipped", path.display())
                        }
                        _ => warn!("skipped: {error}"),
                    }
                }
            }
        }
        index.refresh_all();
        info!(
            "indexed {}: {} patients, {} studies, {} instances ({} files skipped)",
            config.root.display(),
            index.patients.len(),
            index.study_owner.len(),
            index.locations.len(),
            index.skipped_files
        );
        Ok(FolderArchive {
            inner: Arc::new(Inner {
                config,
                index: RwLock::new(index),
            }),
        })
    }

    /// The folder served.
    pub fn root(&self) -> &Path {
        &self.inner.config.root
    }

    pub fn config(&self) -> &FolderArchiveConfig {
        &self.inner.config
    }

    pub fn counts(&self) -> IndexCounts {
        let index = self.read();
        IndexCounts {
            patients: index.patients.len(),
            studies: index.study_owner.len(),
            series: index
                .patients
                .values()
                .flat_map(|patient| patient.studies.values())
                .map(|study| study.series.len())
                .sum(),
            instances: index.locations.len(),
            skipped_files: index.skipped_files,
        }
    }

    /// Adds (or replaces, by SOP Instance UID) the instance in the Part 10 file at `path`, read
    /// on tokio's blocking pool.
    pub async fn insert(&self, path: impl Into<PathBuf>) -> Result<(), ArchiveError> {
        let archive = self.clone();
        let path = path.into();
        tokio::task::spawn_blocking(move || archive.insert_blocking(&path))
            .await
            .map_err(|error| ArchiveError::Task(error.to_string()))?
    }

    /// [`FolderArchive::insert`] on the calling thread (which may block): for callers already on
    /// the blocking pool, such as a storage callback.
    pub fn insert_blocking(&self, path: &Path) -> Result<(), ArchiveError> {
        let instance = read_instance(path, &self.inner.config.limits)?;
        let mut index = self.write();
        let touched = index.insert(instance);
        for (patient, study, series) in touched {
            index.refresh_path(&patient, &study, &series);
        }
        Ok(())
    }

    /// A callback for [`dimsum_net::storage::FileStorage::on_stored`] that indexes each stored
    /// instance, so that it is found by the next query. The storage calls it on its blocking
    /// task before it answers the C-STORE; an instance that cannot be indexed is reported and
    /// left out of the index (it stays stored).
    pub fn on_stored(&self) -> impl Fn(&StoredInstance) + Send + Sync + 'static {
        let archive = self.clone();
        move |stored: &StoredInstance| {
            if let Err(error) = archive.insert_blocking(&stored.path) {
                warn!("stored but not indexed: {error}");
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        // A panic while the lock was held leaves an index that is still consistent enough to
        // read: each insert completes its tree changes before the counts are refreshed.
        self.inner
            .index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.inner
            .index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads one file into the pieces the index keeps.
fn read_instance(path: &Path, limits: &ScanLimits) -> Result<NewInstance, ArchiveError> {
    let Part10File {
        path,
        meta,
        data_set_offset,
        data_set_length,
        summary,
        attributes,
    } = file::read_part10(path, limits)?;
    let identity =
        Identity::of(&summary, &meta).map_err(|name| ArchiveError::MissingAttribute {
            path: path.clone(),
            name,
        })?;
    let Identity {
        patient_id: patient,
        study_instance_uid: study,
        series_instance_uid: series,
        sop_instance_uid,
        sop_class_uid,
    } = identity;
    let records = split_by_level(attributes, |element| {
        element.vr() == VR::SQ
            || element
                .header()
                .length()
                .get()
                .is_none_or(|length| length <= MAX_INDEXED_VALUE)
    });
    let [patient_record, study_record, series_record, instance_record] = records;
    Ok(NewInstance {
        patient,
        study,
        series,
        records: [patient_record, study_record, series_record],
        instance: InstanceNode {
            record: instance_record,
            path,
            offset: data_set_offset,
            length: data_set_length,
            sop_class_uid,
            sop_instance_uid,
            transfer_syntax_uid: meta.transfer_syntax_uid,
        },
    })
}

// ------------------------------------------------------------------------------------------
// The index
// ------------------------------------------------------------------------------------------

/// One instance read from a file, before it is placed in the tree.
struct NewInstance {
    patient: String,
    study: String,
    series: String,
    /// Patient, study and series attributes.
    records: [InMemDicomObject; 3],
    instance: InstanceNode,
}

#[derive(Default)]
struct Index {
    patients: BTreeMap<String, PatientNode>,
    /// Study Instance UID → the Patient ID it is filed under.
    study_owner: HashMap<String, String>,
    /// SOP Instance UID → (Patient ID, Study Instance UID, Series Instance UID).
    locations: HashMap<String, (String, String, String)>,
    skipped_files: usize,
}

struct PatientNode {
    record: InMemDicomObject,
    studies: BTreeMap<String, StudyNode>,
}

struct StudyNode {
    record: InMemDicomObject,
    series: BTreeMap<String, SeriesNode>,
}

struct SeriesNode {
    record: InMemDicomObject,
    instances: BTreeMap<String, InstanceNode>,
}

struct InstanceNode {
    record: InMemDicomObject,
    path: PathBuf,
    offset: u64,
    length: u64,
    sop_class_uid: String,
    sop_instance_uid: String,
    transfer_syntax_uid: String,
}

impl InstanceNode {
    fn to_retrieve(&self) -> RetrieveInstance {
        RetrieveInstance {
            sop_class_uid: self.sop_class_uid.clone(),
            sop_instance_uid: self.sop_instance_uid.clone(),
            transfer_syntax_uid: self.transfer_syntax_uid.clone(),
            data: InstanceData::File {
                path: self.path.clone(),
                offset: self.offset,
                length: self.length,
            },
        }
    }
}

/// (Patient ID, Study Instance UID, Series Instance UID) of a series whose counts changed.
type SeriesPath = (String, String, String);

impl Index {
    /// Places an instance in the tree (replacing one with the same SOP Instance UID); returns
    /// the series whose computed keys must be refreshed.
    fn insert(&mut self, new: NewInstance) -> Vec<SeriesPath> {
        let NewInstance {
            patient,
            study,
            series,
            records: [patient_record, study_record, series_record],
            instance,
        } = new;
        let mut touched = Vec::new();
        if let Some(previous) = self.locations.remove(&instance.sop_instance_uid) {
            self.remove(&previous, &instance.sop_instance_uid);
            touched.push(previous);
        }
        let patient = match self.study_owner.get(&study) {
            Some(owner) => {
                if owner != &patient {
                    warn!(
                        "{}: study {study} is filed under patient {owner:?}, not {patient:?}",
                        instance.path.display()
                    );
                }
                owner.clone()
            }
            None => {
                self.study_owner.insert(study.clone(), patient.clone());
                patient
            }
        };
        let sop_instance_uid = instance.sop_instance_uid.clone();
        self.patients
            .entry(patient.clone())
            .or_insert_with(|| PatientNode {
                record: patient_record,
                studies: BTreeMap::new(),
            })
            .studies
            .entry(study.clone())
            .or_insert_with(|| StudyNode {
                record: study_record,
                series: BTreeMap::new(),
            })
            .series
            .entry(series.clone())
            .or_insert_with(|| SeriesNode {
                record: series_record,
                instances: BTreeMap::new(),
            })
            .instances
            .insert(sop_instance_uid.clone(), instance);
        let path = (patient, study, series);
        self.locations.insert(sop_instance_uid, path.clone());
        touched.push(path);
        touched
    }

    /// Takes an instance out of the tree, and the entities it leaves empty.
    fn remove(&mut self, (patient, study, series): &SeriesPath, sop_instance_uid: &str) {
        let Some(patient_node) = self.patients.get_mut(patient) else {
            return;
        };
        if let Some(study_node) = patient_node.studies.get_mut(study) {
            if let Some(series_node) = study_node.series.get_mut(series) {
                series_node.instances.remove(sop_instance_uid);
                if series_node.instances.is_empty() {
                    study_node.series.remove(series);
                }
            }
            if study_node.series.is_empty() {
                patient_node.studies.remove(study);
                self.study_owner.remove(study);
            }
        }
        if patient_node.studies.is_empty() {
            self.patients.remove(patient);
        }
    }

    /// Refreshes the computed keys of a series and of its study and patient.
    fn refresh_path(&mut self, patient: &str, study: &str, series: &str) {
        let Some(patient_node) = self.patients.get_mut(patient) else {
            return;
        };
        if let Some(study_node) = patient_node.studies.get_mut(study) {
            if let Some(series_node) = study_node.series.get_mut(series) {
                series_node.refresh();
            }
            study_node.refresh();
        }
        patient_node.refresh();
    }

    /// Refreshes every computed key, bottom up.
    fn refresh_all(&mut self) {
        for patient in self.patients.values_mut() {
            for study in patient.studies.values_mut() {
                for series in study.series.values_mut() {
                    series.refresh();
                }
                study.refresh();
            }
            patient.refresh();
        }
    }
}

impl SeriesNode {
    fn refresh(&mut self) {
        self.record.put(count_element(
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
            self.instances.len(),
        ));
    }
}

impl StudyNode {
    fn refresh(&mut self) {
        let instances = self.series.values().map(|s| s.instances.len()).sum();
        let modalities: BTreeSet<String> = self
            .series
            .values()
            .filter_map(|series| series.record.get(tags::MODALITY))
            .filter_map(|modality| modality.to_str().ok())
            .map(|modality| modality.trim().to_owned())
            .filter(|modality| !modality.is_empty())
            .collect();
        let sop_classes: BTreeSet<String> = self
            .series
            .values()
            .flat_map(|series| series.instances.values())
            .map(|instance| instance.sop_class_uid.clone())
            .collect();
        self.record.put(count_element(
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            self.series.len(),
        ));
        self.record.put(count_element(
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            instances,
        ));
        self.record
            .put(set_element(tags::MODALITIES_IN_STUDY, VR::CS, modalities));
        self.record
            .put(set_element(tags::SOP_CLASSES_IN_STUDY, VR::UI, sop_classes));
    }
}

impl PatientNode {
    fn refresh(&mut self) {
        let series = self.studies.values().map(|s| s.series.len()).sum();
        let instances = self
            .studies
            .values()
            .flat_map(|study| study.series.values())
            .map(|series| series.instances.len())
            .sum();
        self.record.put(count_element(
            tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
            self.studies.len(),
        ));
        self.record.put(count_element(
            tags::NUMBER_OF_PATIENT_RELATED_SERIES,
            series,
        ));
        self.record.put(count_element(
            tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
            instances,
        ));
    }
}

// ------------------------------------------------------------------------------------------
// Walking the tree
// ------------------------------------------------------------------------------------------

/// An entity of the tree, whatever its level.
#[derive(Clone, Copy)]
enum Entity<'a> {
    Patient(&'a PatientNode),
    Study(&'a StudyNode),
    Series(&'a SeriesNode),
    Instance(&'a InstanceNode),
}

impl<'a> Entity<'a> {
    /// Every instance at or below the entity, in key order.
    fn instances(self) -> Box<dyn Iterator<Item = &'a InstanceNode> + 'a> {
        match self {
            Entity::Patient(patient) => Box::new(
                patient
                    .studies
                    .values()
                    .flat_map(|study| Entity::Study(study).instances()),
            ),
            Entity::Study(study) => Box::new(
                study
                    .series
                    .values()
                    .flat_map(|series| series.instances.values()),
            ),
            Entity::Series(series) => Box::new(series.instances.values()),
            Entity::Instance(instance) => Box::new(std::iter::once(instance)),
        }
    }
}

/// A level of the tree, for the generic walk.
trait Node {
    type Child: Node;
    fn record(&self) -> &InMemDicomObject;
    fn children(&self) -> Option<&BTreeMap<String, Self::Child>>;
    fn entity(&self) -> Entity<'_>;
}

/// A level with children: its record, its child map and its entity.
macro_rules! parent_node {
    ($node:ty, $child:ty, $children:ident, $entity:ident) => {
        impl Node for $node {
            type Child = $child;
            fn record(&self) -> &InMemDicomObject {
                &self.record
            }
            fn children(&self) -> Option<&BTreeMap<String, $child>> {
                Some(&self.$children)
            }
            fn entity(&self) -> Entity<'_> {
                Entity::$entity(self)
            }
        }
    };
}

parent_node!(PatientNode, StudyNode, studies, Patient);
parent_node!(StudyNode, SeriesNode, series, Study);
parent_node!(SeriesNode, InstanceNode, instances, Series);

impl Node for InstanceNode {
    type Child = InstanceNode;
    fn record(&self) -> &InMemDicomObject {
        &self.record
    }
    fn children(&self) -> Option<&BTreeMap<String, InstanceNode>> {
        None
    }
    fn entity(&self) -> Entity<'_> {
        Entity::Instance(self)
    }
}

/// Why a walk stopped before the end.
enum Stop {
    /// The visitor is done (it found what it looked for).
    Visited(Vec<String>),
    /// The step's budget is spent; resume after this path.
    Paused(Vec<String>),
}

/// A walk through the tree for one plan: where it is, and what it does with each entity at the
/// plan's level that passes.
struct Walker<'a, 'p, V> {
    plan: &'p Plan,
    /// Keys from the patient down to the entity being examined.
    path: Vec<&'a str>,
    /// Records from the patient down to the entity being examined.
    chain: Vec<&'a InMemDicomObject>,
    /// Entities at the plan's level still to examine in this step.
    budget: usize,
    /// For a relational query: the level down to which descendants are searched.
    deepest: Option<Level>,
    visit: V,
}

/// Whether a child of `node` (at `depth`) passes its level's keys and, down to `deepest`, has
/// such a child itself.
fn any_descendant_passes<N: Node>(plan: &Plan, node: &N, depth: usize, deepest: usize) -> bool {
    if depth >= deepest {
        return true;
    }
    node.children().is_some_and(|children| {
        children.values().any(|child| {
            plan.passes(Level::ALL[depth], child.record())
                && any_descendant_passes(plan, child, depth + 1, deepest)
        })
    })
}

impl<'a, V> Walker<'a, '_, V>
where
    V: FnMut(&[&'a InMemDicomObject], Entity<'a>) -> ControlFlow<()>,
{
    /// Walks `map` (entities at `depth`) and below, in key order, resuming strictly after
    /// `cursor` (the path of the last entity examined at the plan's level, from this depth
    /// down). Entities that fail their level's keys are not descended into; each entity at the
    /// plan's level that passes is given to `visit` with the records of its chain.
    fn walk<N: Node>(
        &mut self,
        map: &'a BTreeMap<String, N>,
        depth: usize,
        cursor: &[String],
    ) -> ControlFlow<Stop> {
        let target = depth == self.plan.level().depth();
        let start = match cursor.first() {
            Some(key) if target => Bound::Excluded(key.as_str()),
            Some(key) => Bound::Included(key.as_str()),
            None => Bound::Unbounded,
        };
        for (key, node) in map.range::<str, _>((start, Bound::Unbounded)) {
            self.path.push(key);
            let flow = if !self.plan.passes(Level::ALL[depth - 1], node.record())
                || (target && !self.descendant_passes(node, depth))
            {
                if target {
                    self.spend(false)
                } else {
                    ControlFlow::Continue(())
                }
            } else if target {
                self.chain.push(node.record());
                let visited = (self.visit)(&self.chain, node.entity());
                self.chain.pop();
                self.spend(visited.is_break())
            } else {
                let below = match cursor.first() {
                    Some(first) if first == key => &cursor[1..],
                    _ => &[],
                };
                self.chain.push(node.record());
                let flow = match node.children() {
                    Some(children) => self.walk(children, depth + 1, below),
                    None => ControlFlow::Continue(()),
                };
                self.chain.pop();
                flow
            };
            self.path.pop();
            flow?;
        }
        ControlFlow::Continue(())
    }

    /// Whether `node` (at `depth`, the plan's level) has, for a relational query, a descendant
    /// at the deepest level with keys whose chain down from `node` passes every key below the
    /// plan's level (PS3.4 C.4.1.3.2); always for a hierarchical query.
    fn descendant_passes<N: Node>(&self, node: &N, depth: usize) -> bool {
        match self.deepest {
            Some(deepest) => any_descendant_passes(self.plan, node, depth, deepest.depth()),
            None => true,
        }
    }

    /// Counts one entity at the plan's level as examined (the one at the end of `path`): stops
    /// when the visitor is done or the step's budget is spent.
    fn spend(&mut self, visited: bool) -> ControlFlow<Stop> {
        self.budget = self.budget.saturating_sub(1);
        if visited {
            ControlFlow::Break(Stop::Visited(owned(&self.path)))
        } else if self.budget == 0 {
            ControlFlow::Break(Stop::Paused(owned(&self.path)))
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn owned(path: &[&str]) -> Vec<String> {
    path.iter().map(|key| (*key).to_owned()).collect()
}

/// One step of a C-FIND through the index.
enum Step {
    Found {
        path: Vec<String>,
        identifier: InMemDicomObject,
    },
    Paused(Vec<String>),
    Done,
}

impl Index {
    /// The next entity after `cursor` that matches `plan`, examining at most `budget`.
    fn next_match(&self, plan: &Plan, cursor: &[String], budget: usize) -> Step {
        let mut found = None;
        let flow = Walker {
            plan,
            path: Vec::new(),
            chain: Vec::new(),
            budget: budget.max(1),
            deepest: descendant_level(plan),
            visit: |chain: &[&InMemDicomObject], _: Entity<'_>| {
                found = Some(plan.response(chain));
                ControlFlow::Break(())
            },
        }
        .walk(&self.patients, 1, cursor);
        match (flow, found) {
            (ControlFlow::Break(Stop::Visited(path)), Some(identifier)) => {
                Step::Found { path, identifier }
            }
            (ControlFlow::Break(Stop::Paused(path) | Stop::Visited(path)), _) => Step::Paused(path),
            (ControlFlow::Continue(()), _) => Step::Done,
        }
    }

    /// Every instance below the entities that match `plan`.
    fn instances(&self, plan: &Plan) -> Vec<RetrieveInstance> {
        let mut instances = Vec::new();
        let _ = Walker {
            plan,
            path: Vec::new(),
            chain: Vec::new(),
            budget: usize::MAX,
            deepest: descendant_level(plan),
            visit: |_: &[&InMemDicomObject], entity: Entity<'_>| {
                instances.extend(entity.instances().map(InstanceNode::to_retrieve));
                ControlFlow::Continue(())
            },
        }
        .walk(&self.patients, 1, &[]);
        instances
    }
}

// ------------------------------------------------------------------------------------------
// The handlers
// ------------------------------------------------------------------------------------------

/// Where a C-FIND stream is.
struct FindState {
    archive: FolderArchive,
    plan: Plan,
    transfer_syntax_uid: String,
    cursor: Vec<String>,
    done: bool,
}

impl FindState {
    /// The next match, encoded; `None` at the end.
    async fn next(&mut self) -> Option<Result<FindMatch, ScpFailure>> {
        if self.done {
            return None;
        }
        loop {
            let step = self
                .archive
                .read()
                .next_match(&self.plan, &self.cursor, ENTITIES_PER_STEP);
            match step {
                Step::Found { path, identifier } => {
                    self.cursor = path;
                    return Some(self.encode(&identifier));
                }
                Step::Paused(path) => {
                    self.cursor = path;
                    // Let the runtime (and writers waiting for the lock) have a turn.
                    tokio::task::yield_now().await;
                }
                Step::Done => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    fn encode(&mut self, identifier: &InMemDicomObject) -> Result<FindMatch, ScpFailure> {
        let status = if self.plan.has_unsupported_keys() {
            Status::PENDING_WARNING
        } else {
            Status::PENDING
        };
        match encode_identifier(identifier, &self.transfer_syntax_uid) {
            Ok(bytes) => Ok(FindMatch {
                identifier: bytes,
                status,
            }),
            Err(failure) => {
                self.done = true;
                Err(failure)
            }
        }
    }
}

/// Encodes a response identifier; one whose text the character set of its source cannot
/// encode goes out in UTF-8 (ISO_IR 192) instead.
pub(crate) fn encode_identifier(
    identifier: &InMemDicomObject,
    transfer_syntax_uid: &str,
) -> Result<Bytes, ScpFailure> {
    match identifier::encode(identifier, transfer_syntax_uid) {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        Err(first) if identifier.get(tags::SPECIFIC_CHARACTER_SET).is_some() => {
            debug!("encoding a match in its own character set failed ({first}); trying UTF-8");
            let mut utf8 = identifier.clone();
            utf8.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                "ISO_IR 192",
            ));
            identifier::encode(&utf8, transfer_syntax_uid)
                .map(Bytes::from)
                .map_err(|error| ScpFailure::processing(format!("cannot encode a match: {error}")))
        }
        Err(error) => Err(ScpFailure::processing(format!(
            "cannot encode a match: {error}"
        ))),
    }
}

impl FindHandler for FolderArchive {
    /// C-FIND (PS3.4 C.4.1): the matches stream out of the index as the framework sends them.
    fn find(&self, query: Query) -> BoxFuture<'_, Result<MatchStream, ScpFailure>> {
        Box::pin(async move {
            let options = MatchOptions {
                combined_date_time: query.find_options.combined_date_time,
                fuzzy_person_names: query.find_options.fuzzy_person_names,
                ..MatchOptions::default()
            };
            let plan = Plan::from_query(&query, QueryService::Find)?
                .with_options(options)
                .with_relational(query.find_options.relational_queries);
            let state = FindState {
                archive: self.clone(),
                plan,
                transfer_syntax_uid: query.transfer_syntax_uid,
                cursor: Vec::new(),
                done: false,
            };
            let matches = stream::unfold(state, |mut state| async move {
                state.next().await.map(|item| (item, state))
            });
            Ok(Box::pin(matches) as MatchStream)
        })
    }
}

impl RetrieveHandler for FolderArchive {
    /// C-GET and C-MOVE (PS3.4 C.4.2, C.4.3): every instance below the matching entities.
    fn retrieve(&self, query: Query) -> BoxFuture<'_, Result<Retrieval, ScpFailure>> {
        Box::pin(async move {
            let service = match QueryModel::of_sop_class(&query.sop_class_uid) {
                Some((_, QueryService::Get)) => QueryService::Get,
                _ => QueryService::Move,
            };
            let plan = Plan::from_query(&query, service)?;
            plan.check_retrieval_keys()?;
            let instances = self.read().instances(&plan);
            debug!("{} instances to retrieve", instances.len());
            Ok(Retrieval::from_instances(instances))
        })
    }

    fn destination(&self, ae_title: &str) -> Option<MoveDestination> {
        self.inner.config.move_destinations.get(ae_title)
    }

    fn move_associations(&self, _destination: &MoveDestination) -> usize {
        self.inner.config.move_destinations.associations()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::Tag;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;
    use dimsum_dataset::dicom_object::mem::InMemElement;
    use dimsum_dataset::part10::{FileMeta, encode_header};
    use futures_util::StreamExt;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
    const EXPLICIT: &str = "1.2.840.10008.1.2.1";
    const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
    const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
    const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";

    /// (patient id, name, study, series, modality, sop class, instance)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
    );

    fn write(root: &Path, row: Row<'_>) -> PathBuf {
        let (pid, name, study, series, modality, sop_class, sop) = row;
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, sop_class),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, sop),
            DataElement::new(tags::MODALITY, VR::CS, modality),
            DataElement::new(tags::PATIENT_NAME, VR::PN, name),
            DataElement::new(tags::PATIENT_ID, VR::LO, pid),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, study),
            DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, series),
            DataElement::new(
                Tag(0x0009, 0x1010),
                VR::OB,
                PrimitiveValue::U8(vec![0u8; 10_000].into()),
            ),
        ]);
        let mut bytes =
            encode_header(&FileMeta::new(sop_class, sop, EXPLICIT, "1.2.3", "T")).expect("header");
        bytes.extend(identifier::encode(&object, EXPLICIT).expect("data set"));
        let path = root.join(format!("{sop}.dcm"));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn query(sop_class: &str, elements: Vec<InMemElement>) -> Query {
        Query {
            sop_class_uid: sop_class.into(),
            priority: dimsum_net::dimse::message::Priority::Medium,
            transfer_syntax_uid: EXPLICIT.into(),
            identifier: Bytes::new(),
            keys: InMemDicomObject::from_element_iter(elements),
            calling_ae_title: "SCU".into(),
            peer_address: "127.0.0.1:1".parse().expect("address"),
            find_options: Default::default(),
        }
    }

    fn key(tag: Tag, vr: VR, value: &str) -> InMemElement {
        if value.is_empty() {
            DataElement::empty(tag, vr)
        } else {
            DataElement::new(tag, vr, value)
        }
    }

    async fn find_all(archive: &FolderArchive, query: Query) -> Vec<(Status, InMemDicomObject)> {
        let ts = query.transfer_syntax_uid.clone();
        let mut stream = archive.find(query).await.expect("find");
        let mut out = Vec::new();
        while let Some(found) = stream.next().await {
            let found = found.expect("match");
            let object =
                identifier::decode(&found.identifier, &ts, &ScanLimits::default()).expect("decode");
            out.push((found.status, object));
        }
        out
    }

    fn text(object: &InMemDicomObject, tag: Tag) -> String {
        object
            .get(tag)
            .map(|e| e.to_str().expect("text").into_owned())
            .unwrap_or_else(|| panic!("no {tag}"))
    }

    /// The sample folder (kept alive by the returned guard) and its archive.
    async fn sample_archive() -> (tempfile::TempDir, FolderArchive) {
        let folder = tempfile::tempdir().expect("tempdir");
        sample(folder.path());
        let archive = FolderArchive::open(FolderArchiveConfig::new(folder.path()))
            .await
            .expect("open");
        (folder, archive)
    }

    fn sample(root: &Path) {
        for row in [
            ("P1", "DOE^JOHN", "1.1", "1.1.1", "CT", CT, "1.1.1.1"),
            ("P1", "DOE^JOHN", "1.1", "1.1.1", "CT", CT, "1.1.1.2"),
            ("P1", "DOE^JOHN", "1.1", "1.1.2", "MR", MR, "1.1.2.1"),
            ("P2", "ROE^JANE", "2.1", "2.1.1", "MR", MR, "2.1.1.1"),
        ] {
            write(root, row);
        }
    }

    #[tokio::test]
    async fn large_values_are_not_kept_and_computed_keys_are_filled() {
        let (_folder, archive) = sample_archive().await;
        let counts = archive.counts();
        assert_eq!(
            (
                counts.patients,
                counts.studies,
                counts.series,
                counts.instances
            ),
            (2, 2, 3, 4)
        );
        let index = archive.read();
        let study = &index.patients["P1"].studies["1.1"];
        assert_eq!(text(&study.record, tags::MODALITIES_IN_STUDY), "CT\\MR");
        assert_eq!(
            text(&study.record, tags::SOP_CLASSES_IN_STUDY),
            format!("{CT}\\{MR}")
        );
        assert_eq!(
            text(&study.record, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
            "3"
        );
        let instance = &study.series["1.1.1"].instances["1.1.1.1"];
        assert!(instance.record.get(Tag(0x0009, 0x1010)).is_none());
        assert!(instance.record.get(tags::SOP_INSTANCE_UID).is_some());
        assert!(
            instance.record.get(tags::PATIENT_NAME).is_none(),
            "kept at its level"
        );
    }

    #[tokio::test]
    async fn a_find_pauses_and_resumes_across_steps() {
        let (_folder, archive) = sample_archive().await;
        let q = query(
            STUDY_ROOT_FIND,
            vec![
                key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"),
                key(tags::SOP_INSTANCE_UID, VR::UI, ""),
                key(tags::SERIES_INSTANCE_UID, VR::UI, "1.1.2\\2.1.1"),
            ],
        );
        let plan = Plan::from_query(&q, QueryService::Find).expect("plan");
        // A budget of one entity per step: every non-match pauses, and nothing is skipped.
        let index = archive.read();
        let mut cursor = Vec::new();
        let mut found = Vec::new();
        let mut steps = 0;
        loop {
            steps += 1;
            match index.next_match(&plan, &cursor, 1) {
                Step::Found { path, identifier } => {
                    found.push(text(&identifier, tags::SOP_INSTANCE_UID));
                    cursor = path;
                }
                Step::Paused(path) => cursor = path,
                Step::Done => break,
            }
        }
        assert_eq!(found, vec!["1.1.2.1", "2.1.1.1"]);
        assert!(steps >= 2, "{steps}");
    }

    fn relational(mut query: Query) -> Query {
        query.find_options.relational_queries = true;
        query
    }

    #[tokio::test]
    async fn a_relational_query_matches_keys_below_its_level_on_some_descendant() {
        let (_folder, archive) = sample_archive().await;
        let patients = |modality: &str, sop_class: &str| {
            relational(query(
                PATIENT_ROOT_FIND,
                vec![
                    key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
                    key(tags::PATIENT_ID, VR::LO, ""),
                    key(tags::MODALITY, VR::CS, modality),
                    key(tags::SOP_CLASS_UID, VR::UI, sop_class),
                ],
            ))
        };
        let ids = |found: Vec<(Status, InMemDicomObject)>| -> Vec<(Status, String, String)> {
            found
                .into_iter()
                .map(|(status, object)| {
                    let modality = object
                        .get(tags::MODALITY)
                        .map(|e| e.to_str().expect("text").into_owned())
                        .expect("the lower key comes back");
                    (status, text(&object, tags::PATIENT_ID), modality)
                })
                .collect()
        };
        // Both patients have an MR series; only P1 a CT one. The lower key comes back empty.
        assert_eq!(
            ids(find_all(&archive, patients("MR", "")).await),
            [
                (Status::PENDING, "P1".into(), String::new()),
                (Status::PENDING, "P2".into(), String::new())
            ]
        );
        assert_eq!(
            ids(find_all(&archive, patients("CT", "")).await),
            [(Status::PENDING, "P1".into(), String::new())]
        );
        // Series and instance keys hold on the same chain: no CT series has an MR instance.
        assert_eq!(ids(find_all(&archive, patients("CT", MR)).await), []);
        assert_eq!(ids(find_all(&archive, patients("M?", MR)).await).len(), 2);
    }

    #[tokio::test]
    async fn a_relational_image_query_needs_no_upper_unique_keys() {
        let (_folder, archive) = sample_archive().await;
        let found = find_all(
            &archive,
            relational(query(
                STUDY_ROOT_FIND,
                vec![
                    key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"),
                    key(tags::PATIENT_NAME, VR::PN, "doe^*"),
                    key(tags::SOP_INSTANCE_UID, VR::UI, ""),
                ],
            )),
        )
        .await;
        let sops: Vec<String> = found
            .iter()
            .map(|(_, object)| text(object, tags::SOP_INSTANCE_UID))
            .collect();
        assert_eq!(sops, ["1.1.1.1", "1.1.1.2", "1.1.2.1"]);
        assert!(found.iter().all(|(status, _)| *status == Status::PENDING));
    }

    #[tokio::test]
    async fn keys_below_the_level_are_not_matched_and_warn() {
        let (_folder, archive) = sample_archive().await;
        let q = query(
            PATIENT_ROOT_FIND,
            vec![
                key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
                key(tags::PATIENT_ID, VR::LO, "P1"),
                key(tags::MODALITY, VR::CS, "XA"),
            ],
        );
        let found = find_all(&archive, q).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, Status::PENDING_WARNING);
        assert!(
            found[0]
                .1
                .get(tags::MODALITY)
                .is_some_and(|e| e.to_str().expect("t").is_empty())
        );
    }

    #[tokio::test]
    async fn a_re_stored_instance_replaces_the_old_one_and_empty_entities_go() {
        let (folder, archive) = sample_archive().await;
        // The same SOP instance, now in a new series of patient P2's study.
        let moved = write(
            folder.path(),
            ("P2", "ROE^JANE", "2.1", "2.1.9", "CT", CT, "1.1.2.1"),
        );
        archive.insert(&moved).await.expect("insert");
        let counts = archive.counts();
        assert_eq!((counts.series, counts.instances), (3, 4), "{counts:?}");
        let index = archive.read();
        assert!(
            !index.patients["P1"].studies["1.1"]
                .series
                .contains_key("1.1.2")
        );
        let study = &index.patients["P2"].studies["2.1"];
        assert_eq!(text(&study.record, tags::MODALITIES_IN_STUDY), "CT\\MR");
        assert_eq!(
            text(
                &index.patients["P1"].record,
                tags::NUMBER_OF_PATIENT_RELATED_INSTANCES
            ),
            "2"
        );
    }

    #[tokio::test]
    async fn a_retrieval_needs_its_unique_key_and_a_q_r_model() {
        let folder = tempfile::tempdir().expect("tempdir");
        sample(folder.path());
        let archive = FolderArchive::open(
            FolderArchiveConfig::new(folder.path())
                .with_destination("DEST", "127.0.0.1:11112")
                .with_move_associations(0),
        )
        .await
        .expect("open");
        let q = query(
            STUDY_ROOT_MOVE,
            vec![
                key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
                key(tags::SERIES_INSTANCE_UID, VR::UI, ""),
            ],
        );
        let error = archive.retrieve(q).await.expect_err("refused");
        assert_eq!(error.status, Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
        assert!(
            error.comment.contains("Series Instance UID"),
            "{}",
            error.comment
        );

        let q = query(
            STUDY_ROOT_MOVE,
            vec![
                key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
                key(tags::SERIES_INSTANCE_UID, VR::UI, "1.1.1"),
            ],
        );
        let retrieval = archive.retrieve(q).await.expect("retrieval");
        assert_eq!(retrieval.count, 2);
        assert_eq!(
            retrieval.contexts,
            BTreeSet::from([(CT.to_owned(), EXPLICIT.to_owned())])
        );

        let worklist = query(
            "1.2.840.10008.5.1.4.31",
            vec![key(tags::PATIENT_ID, VR::LO, "")],
        );
        let error = archive.find(worklist).await.err().expect("refused");
        assert_eq!(error.status, Status::SOP_CLASS_NOT_SUPPORTED);

        let destination = archive.destination("DEST").expect("known");
        assert_eq!(destination.address, "127.0.0.1:11112");
        assert!(archive.destination("OTHER").is_none());
        assert_eq!(archive.move_associations(&destination), 1);
    }
}
