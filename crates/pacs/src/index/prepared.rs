//! Instances prepared for the index: rows and records encoded before they reach the writer.

use std::path::Path;

use dimsum_dataset::dicom_object::InMemDicomObject;

use crate::hierarchy::Level;

use super::query::{Cell, Column, ColumnValue, cells_of};
use super::record::{self, LevelRecords};
use super::{FileLocation, IndexError, NewInstance};

/// An instance ready for the index's writer: its rows for the patient, study, series and
/// instance tables (PS3.4 C.6.1.1 levels), each with its typed key columns and its attribute
/// record encoded ([`super::record`]). Preparing is CPU work done off the writer, by whoever
/// has the instance in hand (the thread that stored its file, or the blocking pool).
#[derive(Debug)]
pub struct PreparedInstance {
    pub(crate) sop_instance_uid: String,
    pub(crate) sop_class_uid: String,
    pub(crate) transfer_syntax_uid: String,
    pub(crate) location: FileLocation,
    /// Patient, study, series, instance.
    pub(crate) rows: [EntityRow; 4],
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
            .and_then(|(_, cell)| match &cell.value {
                Some(ColumnValue::Text(text)) => Some(text.as_str()),
                _ => None,
            })
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
    let records = LevelRecords::of(attributes);
    let bulk_data = records.bulk_data;
    let row = |level: Level, record: InMemDicomObject| -> Result<EntityRow, IndexError> {
        let mut cells = cells_of(level, &record);
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
        // only by the first instance of each: those are encoded by the writer if it needs them.
        let blob = if level == Level::Image {
            let encoded = match received {
                Some(data_set) => record::encode_received(&record, &bulk_data, data_set),
                None => record::encode_with_bulk_data(&record, &bulk_data),
            };
            Blob::Encoded(encoded.map_err(unindexable)?)
        } else {
            Blob::Deferred(Box::new(record))
        };
        Ok(EntityRow {
            irregular: cells.iter().any(|(_, cell)| cell.irregular),
            cells,
            blob,
        })
    };
    let rows = [
        row(Level::Patient, records.patient)?,
        row(Level::Study, records.study)?,
        row(Level::Series, records.series)?,
        row(Level::Image, records.instance)?,
    ];
    for (level, name, what) in [
        (1, "study_instance_uid", "Study Instance UID (0020,000D)"),
        (2, "series_instance_uid", "Series Instance UID (0020,000E)"),
    ] {
        let row: &EntityRow = &rows[level];
        if row.irregular && row.text(name).is_some_and(|uid| uid.contains('\\')) {
            return Err(unindexable(format!("{what} has several values")));
        }
        if row.text(name).is_none() {
            return Err(unindexable(format!("no {what}")));
        }
    }
    path_text(&location.path)
        .map_err(|_| unindexable(format!("the path {} is not UTF-8", location.path.display())))?;
    Ok(PreparedInstance {
        sop_instance_uid,
        sop_class_uid,
        transfer_syntax_uid,
        location,
        rows,
    })
}

/// The path as SQL text: the index keeps UTF-8 paths only.
pub(crate) fn path_text(path: &Path) -> Result<&str, IndexError> {
    path.to_str().ok_or_else(|| IndexError::Unindexable {
        sop_instance_uid: String::new(),
        reason: format!("the path {} is not UTF-8", path.display()),
    })
}
