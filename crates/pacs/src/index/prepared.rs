//! Instances prepared for the index: rows and records encoded before they reach the writer.

use std::path::Path;
use std::sync::OnceLock;

use dimsum_dataset::dicom_object::InMemDicomObject;

use crate::hierarchy::{Level, parent_records};

use super::query::{Cell, Column, ColumnValue, cell, cells_of, columns_at};
use super::record;
use super::{FileLocation, IndexError, NewInstance};

/// An instance ready for the index's writer: its row for the instance table (PS3.4 C.6.1.1
/// IMAGE level) with its typed key columns and its attribute record encoded
/// ([`super::record`]), and what its patient, study and series rows are made of. Preparing is
/// CPU work done off the writer, by whoever has the instance in hand (the thread that stored
/// its file, or the blocking pool). The parents' rows are made only by a writer that needs them
/// ([`PreparedInstance::parent_rows`]): most instances come into a series the index has.
#[derive(Debug)]
pub struct PreparedInstance {
    pub(crate) sop_instance_uid: String,
    pub(crate) sop_class_uid: String,
    pub(crate) transfer_syntax_uid: String,
    pub(crate) location: FileLocation,
    /// The Study and Series Instance UIDs it is filed under (single values, checked).
    pub(crate) study_instance_uid: String,
    pub(crate) series_instance_uid: String,
    pub(crate) instance: EntityRow,
    /// Its attributes without bulk data, which the parents' rows are made from.
    attributes: InMemDicomObject,
    parents: OnceLock<[EntityRow; 3]>,
}

#[derive(Debug)]
pub(crate) struct EntityRow {
    pub(crate) cells: Vec<(&'static Column, Cell)>,
    pub(crate) irregular: bool,
    blob: Blob,
}

/// An entity's attribute record, encoded ([`record::encode`]) or still to be.
#[derive(Debug)]
enum Blob {
    Encoded(Vec<u8>),
    Deferred(Box<InMemDicomObject>),
}

impl EntityRow {
    /// A row of `cells` (irregular if one of them is) and its record.
    fn new(cells: Vec<(&'static Column, Cell)>, blob: Blob) -> EntityRow {
        EntityRow {
            irregular: cells.iter().any(|(_, cell)| cell.irregular),
            cells,
            blob,
        }
    }

    /// The row of `record` at `level`, its record encoded when asked for ([`EntityRow::blob`]).
    fn of(level: Level, record: InMemDicomObject) -> EntityRow {
        EntityRow::new(cells_of(level, &record), Blob::Deferred(Box::new(record)))
    }

    /// The encoded attribute record (encoding it now if that was deferred).
    pub(crate) fn blob(&self, sop_instance_uid: &str) -> Result<Vec<u8>, IndexError> {
        match &self.blob {
            Blob::Encoded(blob) => Ok(blob.clone()),
            Blob::Deferred(record) => {
                record::encode(record).map_err(|reason| IndexError::Unindexable {
                    sop_instance_uid: sop_instance_uid.to_owned(),
                    reason,
                })
            }
        }
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.cells
            .iter()
            .find(|(column, _)| column.name == name)
            .and_then(|(_, cell)| cell_text(cell))
    }
}

fn cell_text(cell: &Cell) -> Option<&str> {
    match &cell.value {
        Some(ColumnValue::Text(text)) => Some(text.as_str()),
        _ => None,
    }
}

impl PreparedInstance {
    /// Encodes the rows of `instance` (blocking: call it off the async workers).
    pub fn new(instance: NewInstance) -> Result<PreparedInstance, IndexError> {
        prepare(instance, None)
    }

    /// [`PreparedInstance::new`] for an instance whose data set is at hand as received, in
    /// explicit VR little endian, its attributes' text as read from it: its record is copied
    /// from those bytes where it can be ([`record::encode_received`]) instead of encoded again.
    pub fn received(
        instance: NewInstance,
        data_set: &[u8],
    ) -> Result<PreparedInstance, IndexError> {
        prepare(instance, Some(data_set))
    }

    /// The SOP Instance UID it is indexed under.
    pub fn sop_instance_uid(&self) -> &str {
        &self.sop_instance_uid
    }

    /// The rows of its patient, study and series (their records encoded when written), made
    /// the first time they are asked for.
    pub(crate) fn parent_rows(&self) -> &[EntityRow; 3] {
        self.parents.get_or_init(|| {
            let [patient, study, series] = parent_records(&self.attributes);
            [
                EntityRow::of(Level::Patient, patient),
                EntityRow::of(Level::Study, study),
                EntityRow::of(Level::Series, series),
            ]
        })
    }
}

fn prepare(instance: NewInstance, received: Option<&[u8]>) -> Result<PreparedInstance, IndexError> {
    let NewInstance {
        sop_class_uid,
        sop_instance_uid,
        transfer_syntax_uid,
        location,
        attributes,
    } = instance;
    let unindexable = |reason: String| IndexError::Unindexable {
        sop_instance_uid: sop_instance_uid.clone(),
        reason,
    };
    let (attributes, bulk_data) = record::split_bulk_data(attributes);
    let mut cells = cells_of(Level::Image, &attributes);
    for (column, cell) in &mut cells {
        // The identity of the instance is the one it is stored under.
        let given = match column.name {
            "sop_instance_uid" => Some(&sop_instance_uid),
            "sop_class_uid" => Some(&sop_class_uid),
            _ => None,
        };
        if let Some(given) = given {
            *cell = Cell {
                value: Some(ColumnValue::Text(given.clone())),
                ..Cell::default()
            };
        }
    }
    // The instance's record (with where its bulk data was) is always written; its parents'
    // only by the first instance of each, encoded by the writer then.
    let encoded = match received {
        Some(data_set) => record::encode_received(&attributes, &bulk_data, data_set),
        None => record::encode_with_bulk_data(&attributes, &bulk_data),
    };
    let instance_row = EntityRow::new(cells, Blob::Encoded(encoded.map_err(unindexable)?));
    let [study_instance_uid, series_instance_uid] = [
        (
            Level::Study,
            "study_instance_uid",
            "Study Instance UID (0020,000D)",
        ),
        (
            Level::Series,
            "series_instance_uid",
            "Series Instance UID (0020,000E)",
        ),
    ]
    .map(|(level, name, what)| {
        let cell = identity_cell(level, name, &attributes);
        match cell_text(&cell) {
            Some(uid) if cell.irregular && uid.contains('\\') => {
                Err(unindexable(format!("{what} has several values")))
            }
            Some(uid) => Ok(uid.to_owned()),
            None => Err(unindexable(format!("no {what}"))),
        }
    });
    let (study_instance_uid, series_instance_uid) = (study_instance_uid?, series_instance_uid?);
    path_text(&location.path)
        .map_err(|_| unindexable(format!("the path {} is not UTF-8", location.path.display())))?;
    Ok(PreparedInstance {
        sop_instance_uid,
        sop_class_uid,
        transfer_syntax_uid,
        location,
        study_instance_uid,
        series_instance_uid,
        instance: instance_row,
        attributes,
        parents: OnceLock::new(),
    })
}

/// The cell of the identifying column `name` of `level` in `attributes` (as its row would
/// hold it).
fn identity_cell(level: Level, name: &str, attributes: &InMemDicomObject) -> Cell {
    columns_at(level)
        .find(|column| column.name == name)
        .map(|column| cell(column, attributes.get(column.tag)))
        .unwrap_or_default()
}

/// The path as SQL text: the index keeps UTF-8 paths only.
pub(crate) fn path_text(path: &Path) -> Result<&str, IndexError> {
    path.to_str().ok_or_else(|| IndexError::Unindexable {
        sop_instance_uid: String::new(),
        reason: format!("the path {} is not UTF-8", path.display()),
    })
}
