//! The SQLite schema of the index and its migrations (the schema version is SQLite's
//! `PRAGMA user_version`). Each level has a table with a typed column per key of
//! [`super::query::COLUMNS`] (an index on each that queries narrow on), its computed keys, an
//! `irregular` flag (see [`super::query`]) and its stored record.
//!
//! A migration is a list of statements run in one transaction with the version bump; an index
//! written by a newer dimsum (a higher version) is refused, never altered.

use rusqlite::Connection;

use crate::hierarchy::Level;

use super::query::{ColumnKind, columns_at};

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// The table of a level and the alias queries give it.
pub fn table(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::Patient => ("patient", "p"),
        Level::Study => ("study", "st"),
        Level::Series => ("series", "se"),
        Level::Image => ("instance", "i"),
    }
}

/// The parent column of a level's table (none for the patient).
pub fn parent_column(level: Level) -> Option<&'static str> {
    match level {
        Level::Patient => None,
        Level::Study => Some("patient"),
        Level::Series => Some("study"),
        Level::Image => Some("series"),
    }
}

/// The SQL type of each typed column, and the `_alpha` column of a PN.
fn typed_columns(level: Level) -> String {
    columns_at(level)
        .map(|column| match column.kind {
            ColumnKind::Number => format!("    {} REAL,\n", column.name),
            ColumnKind::PersonName => format!("    {0} TEXT,\n    {0}_alpha TEXT,\n", column.name),
            ColumnKind::Text | ColumnKind::DateTime => format!("    {} TEXT,\n", column.name),
        })
        .collect()
}

/// An index on each typed column (but the unique keys, which have theirs).
fn column_indexes(level: Level) -> String {
    let (table, _) = table(level);
    columns_at(level)
        .filter(|column| {
            !matches!(
                column.name,
                "patient_id" | "study_instance_uid" | "series_instance_uid" | "sop_instance_uid"
            )
        })
        .map(|column| {
            let mut sql = format!("CREATE INDEX {table}_{0} ON {table} ({0});\n", column.name);
            if column.kind == ColumnKind::PersonName {
                sql.push_str(&format!(
                    "CREATE INDEX {table}_{0}_alpha ON {table} ({0}_alpha);\n",
                    column.name
                ));
            }
            sql
        })
        .collect()
}

/// Version 1: the four levels, the SOP classes of each study, files awaiting removal, and the
/// state kept across runs.
fn version_1() -> String {
    let mut sql = String::new();
    sql.push_str(&format!(
        "CREATE TABLE patient (
    id INTEGER PRIMARY KEY,
{}    irregular INTEGER NOT NULL DEFAULT 0,
    number_of_studies INTEGER NOT NULL DEFAULT 0,
    number_of_series INTEGER NOT NULL DEFAULT 0,
    number_of_instances INTEGER NOT NULL DEFAULT 0,
    attributes BLOB NOT NULL
);
CREATE UNIQUE INDEX patient_identity ON patient (patient_id, issuer_of_patient_id);
",
        typed_columns(Level::Patient)
    ));
    sql.push_str(&format!(
        "CREATE TABLE study (
    id INTEGER PRIMARY KEY,
    patient INTEGER NOT NULL REFERENCES patient (id),
{}    irregular INTEGER NOT NULL DEFAULT 0,
    number_of_series INTEGER NOT NULL DEFAULT 0,
    number_of_instances INTEGER NOT NULL DEFAULT 0,
    modalities_in_study TEXT NOT NULL DEFAULT '',
    sop_classes_in_study TEXT NOT NULL DEFAULT '',
    attributes BLOB NOT NULL
);
CREATE UNIQUE INDEX study_identity ON study (study_instance_uid);
CREATE INDEX study_patient ON study (patient);
",
        typed_columns(Level::Study)
    ));
    sql.push_str(&format!(
        "CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    study INTEGER NOT NULL REFERENCES study (id),
{}    irregular INTEGER NOT NULL DEFAULT 0,
    number_of_instances INTEGER NOT NULL DEFAULT 0,
    attributes BLOB NOT NULL
);
CREATE UNIQUE INDEX series_identity ON series (series_instance_uid);
CREATE INDEX series_study ON series (study, modality);
",
        typed_columns(Level::Series)
    ));
    sql.push_str(&format!(
        "CREATE TABLE instance (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL REFERENCES series (id),
{}    irregular INTEGER NOT NULL DEFAULT 0,
    transfer_syntax_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    data_set_offset INTEGER NOT NULL,
    data_set_length INTEGER NOT NULL,
    file_size INTEGER NOT NULL,
    file_modified_ns INTEGER NOT NULL,
    attributes BLOB NOT NULL
);
CREATE UNIQUE INDEX instance_identity ON instance (sop_instance_uid);
CREATE UNIQUE INDEX instance_path ON instance (path);
CREATE INDEX instance_series ON instance (series);
",
        typed_columns(Level::Image)
    ));
    for level in Level::ALL {
        sql.push_str(&column_indexes(level));
        let (table, _) = table(level);
        sql.push_str(&format!(
            "CREATE INDEX {table}_irregular ON {table} (irregular) WHERE irregular = 1;\n"
        ));
    }
    sql.push_str(
        "CREATE TABLE study_sop_class (
    study INTEGER NOT NULL REFERENCES study (id),
    sop_class_uid TEXT NOT NULL,
    instances INTEGER NOT NULL,
    PRIMARY KEY (study, sop_class_uid)
) WITHOUT ROWID;
CREATE INDEX study_sop_class_uid ON study_sop_class (sop_class_uid);
CREATE TABLE pending_removal (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE archive_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
",
    );
    sql
}

/// The migrations, in order: the statements that take the schema from version `n` to `n + 1`
/// are at index `n`.
fn migrations() -> Vec<String> {
    vec![version_1()]
}

/// Brings the database to [`SCHEMA_VERSION`]; `Err(found)` when it is newer.
pub fn migrate(connection: &mut Connection) -> Result<Result<(), i64>, rusqlite::Error> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Ok(Err(version));
    }
    for (from, statements) in migrations()
        .iter()
        .enumerate()
        .skip(version.max(0) as usize)
    {
        let transaction = connection.transaction()?;
        transaction.execute_batch(statements)?;
        transaction.execute_batch(&format!("PRAGMA user_version = {}", from + 1))?;
        transaction.commit()?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::query::COLUMNS;

    #[test]
    fn the_schema_has_every_typed_column_and_migrates_once() {
        let mut connection = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut connection).expect("migrated"), Ok(()));
        assert_eq!(migrate(&mut connection).expect("again"), Ok(()));
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        for column in COLUMNS {
            let (table, _) = table(column.level);
            let found: i64 = connection
                .query_row(
                    &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?"),
                    [column.name],
                    |row| row.get(0),
                )
                .expect("table info");
            assert_eq!(found, 1, "{table}.{}", column.name);
        }
        connection
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .expect("bump");
        assert_eq!(
            migrate(&mut connection).expect("checked"),
            Err(SCHEMA_VERSION + 1)
        );
    }
}
