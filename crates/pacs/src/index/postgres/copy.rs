//! Copying an SQLite index into a PostgreSQL database (issue 10, scale out: `dimsum migrate`,
//! and the synthetic loader of the C-FIND benchmark on PostgreSQL).
//!
//! Both backends have the same tables and columns ([`crate::index::schema`], generated from the
//! same lists), so the copy is row for row, ids kept: the SQLite file is opened read-only and
//! read in one snapshot on the blocking pool, in pages of at most [`PAGE_ROWS`] rows or
//! [`PAGE_BYTES`] bytes, [`PAGES_AHEAD`] pages ahead of the writing (memory stays bounded
//! whatever the size of the index); each table goes into PostgreSQL with `COPY … FROM STDIN
//! (FORMAT binary)`, parents before children, all in one transaction that first locks the
//! tables and finds them empty (a database that holds an index is refused) — so a failure
//! leaves nothing behind. The identity sequences are then moved past the copied ids, the
//! planner's statistics gathered, and the index marked unchecked: the per-node clean flags
//! of `archive_state` are not copied, and the first node that starts on the copy makes index
//! and storage agree (see [`super`]).
//!
//! A text value with a NUL character (which SQLite keeps and PostgreSQL text cannot hold) is
//! copied as NULL with its entity marked irregular, as [`super::PostgresIndex`] indexes it; in
//! an identifying column it fails the copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{
    IndexError, Param, SCHEMA_VERSION, UNCHECKED_KEY, connect, parse_url, prepare_database,
    without_password,
};
use crate::index::sql::IDENTITY_COLUMNS;

/// The tables copied, parents before children (`archive_state`, each node's own state, is
/// not).
pub const COPIED_TABLES: [&str; 6] = [
    "patient",
    "study",
    "series",
    "instance",
    "study_sop_class",
    "pending_removal",
];
/// The tables whose `id` is an identity column.
const IDENTITY_TABLES: [&str; 4] = ["patient", "study", "series", "instance"];
/// The most rows of one page read from SQLite.
pub const PAGE_ROWS: usize = 1024;
/// A page is sent once its values hold this many bytes, whatever its number of rows.
pub const PAGE_BYTES: usize = 4 << 20;
/// Pages read ahead of the copy.
pub const PAGES_AHEAD: usize = 4;
/// How long the SQLite reader waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How far a copy is: `copied` of the `total` rows of `table` (reported after each page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyProgress {
    pub table: &'static str,
    pub copied: u64,
    pub total: u64,
}

/// What a copy did: the rows of each table of [`COPIED_TABLES`], in that order, and how long
/// it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
    pub elapsed: Duration,
}

impl CopyReport {
    /// The rows copied into `table` (0 for a table not copied).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, rows)| *rows)
    }

    /// The rows copied into every table.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

/// How [`copy_from_sqlite_with`] leaves the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Mark the copy unchecked, so that the first node that starts on it makes index and
    /// storage agree (the default). Off only for an index that names no files on purpose
    /// (the synthetic index of a benchmark), whose rows that check would remove.
    pub check_on_first_start: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            check_on_first_start: true,
        }
    }
}

/// Copies the SQLite index at `sqlite_path` into the PostgreSQL database at `url` (which must
/// exist; its schema is created or migrated, and it must hold no index yet), calling
/// `progress` as rows go in, and marks the copy unchecked. See the module documentation.
pub async fn copy_from_sqlite(
    sqlite_path: &Path,
    url: &str,
    progress: impl FnMut(CopyProgress) + Send,
) -> Result<CopyReport, IndexError> {
    copy_from_sqlite_with(sqlite_path, url, CopyOptions::default(), progress).await
}

/// [`copy_from_sqlite`] with `options`.
pub async fn copy_from_sqlite_with(
    sqlite_path: &Path,
    url: &str,
    options: CopyOptions,
    mut progress: impl FnMut(CopyProgress) + Send,
) -> Result<CopyReport, IndexError> {
    let started = Instant::now();
    let path = sqlite_path.to_path_buf();
    let source = tokio::task::spawn_blocking(move || Source::open(&path))
        .await
        .map_err(|error| IndexError::Task(error.to_string()))??;
    let database = without_password(url);
    let mut pg = parse_url(url)?;
    pg.application_name("dimsum migrate");
    let mut client = connect(&pg, url).await?;
    prepare_database(&mut client, &database).await?;
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            COPIED_TABLES.join(", ")
        ))
        .await?;
    refuse_an_index(&transaction, &database).await?;
    let mut targets = Vec::with_capacity(source.tables.len());
    for table in &source.tables {
        targets.push(Target::of(&transaction, table).await?);
    }
    let totals: Vec<u64> = source.tables.iter().map(|table| table.rows).collect();
    let (pages, mut received) = mpsc::channel(PAGES_AHEAD);
    let reader = tokio::task::spawn_blocking(move || source.read(&pages));
    let mut report = CopyReport::default();
    for (target, total) in targets.iter().zip(totals) {
        let copied = copy_table(&transaction, target, total, &mut received, &mut progress).await?;
        if copied != total {
            return Err(IndexError::Task(format!(
                "{} rows of table {} were read, {copied} copied",
                total, target.name
            )));
        }
        report.tables.push((target.name, copied));
    }
    reader
        .await
        .map_err(|error| IndexError::Task(format!("the SQLite reader failed: {error}")))?;
    for table in IDENTITY_TABLES {
        transaction
            .batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                    (SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
            ))
            .await?;
    }
    if options.check_on_first_start {
        transaction
            .execute(
                "INSERT INTO archive_state (name, value) VALUES ($1, 1)
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&UNCHECKED_KEY],
            )
            .await?;
    }
    transaction
        .batch_execute(&format!("ANALYZE {}", COPIED_TABLES.join(", ")))
        .await?;
    transaction.commit().await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Fails unless every copied table is empty.
async fn refuse_an_index(transaction: &Transaction<'_>, database: &str) -> Result<(), IndexError> {
    for table in COPIED_TABLES {
        let rows: i64 = transaction
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .try_get(0)?;
        if rows > 0 {
            let instances: i64 = transaction
                .query_one("SELECT count(*) FROM instance", &[])
                .await?
                .try_get(0)?;
            return Err(IndexError::Postgres(format!(
                "the database {database} holds an index already ({instances} instances, \
                 table {table} not empty): copy into an empty database"
            )));
        }
    }
    Ok(())
}

/// A table of the SQLite index: its columns, and how many rows it has in the snapshot.
struct SourceTable {
    name: &'static str,
    columns: Vec<String>,
    rows: u64,
}

/// The SQLite index, open read-only inside a read transaction (one snapshot for every table).
struct Source {
    connection: Connection,
    tables: Vec<SourceTable>,
}

/// What the reader sends: a page of rows of the table being copied, or its end.
enum Chunk {
    Rows(Vec<Vec<Value>>),
    End,
}

impl Source {
    /// Opens the index read-only (blocking), checks its schema version, and reads its tables'
    /// columns and sizes.
    fn open(path: &Path) -> Result<Source, IndexError> {
        let open_error = |source| IndexError::Open {
            path: path.to_path_buf(),
            source,
        };
        if !path.is_file() {
            return Err(open_error(rusqlite::Error::InvalidPath(PathBuf::from(
                format!("{}: no such file", path.display()),
            ))));
        }
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        connection.execute_batch("BEGIN").map_err(open_error)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open_error)?;
        if version > SCHEMA_VERSION {
            return Err(IndexError::NewerSchema {
                database: path.display().to_string(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            return Err(IndexError::Corrupt {
                what: path.display().to_string(),
                reason: format!(
                    "schema version {version}, not {SCHEMA_VERSION}: not a dimsum index, or one \
                     to open once with this dimsum (dimsum serve) first"
                ),
            });
        }
        let mut tables = Vec::with_capacity(COPIED_TABLES.len());
        for name in COPIED_TABLES {
            let columns = connection
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{name}') ORDER BY cid"
                ))?
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let rows: i64 =
                connection.query_row(&format!("SELECT count(*) FROM {name}"), [], |row| {
                    row.get(0)
                })?;
            tables.push(SourceTable {
                name,
                columns,
                rows: u64::try_from(rows).unwrap_or(0),
            });
        }
        Ok(Source { connection, tables })
    }

    /// Reads every table in order (blocking), sending its rows in pages and then its end;
    /// stops at the first error (sent) or when the copy is gone.
    fn read(self, pages: &mpsc::Sender<Result<Chunk, IndexError>>) {
        for table in &self.tables {
            match self.read_table(table, pages) {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    let _ = pages.blocking_send(Err(error));
                    return;
                }
            }
        }
    }

    /// Sends the rows of `table`; false when the copy is gone.
    fn read_table(
        &self,
        table: &SourceTable,
        pages: &mpsc::Sender<Result<Chunk, IndexError>>,
    ) -> Result<bool, IndexError> {
        let mut statement = self.connection.prepare(&format!(
            "SELECT {} FROM {}",
            table.columns.join(", "),
            table.name
        ))?;
        let width = table.columns.len();
        let mut rows = statement.query([])?;
        let mut page = Vec::with_capacity(PAGE_ROWS);
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for n in 0..width {
                let value: Value = row.get(n)?;
                bytes += match &value {
                    Value::Text(text) => text.len(),
                    Value::Blob(blob) => blob.len(),
                    _ => 8,
                };
                values.push(value);
            }
            page.push(values);
            if page.len() >= PAGE_ROWS || bytes >= PAGE_BYTES {
                let full = std::mem::replace(&mut page, Vec::with_capacity(PAGE_ROWS));
                bytes = 0;
                if pages.blocking_send(Ok(Chunk::Rows(full))).is_err() {
                    return Ok(false);
                }
            }
        }
        if !page.is_empty() && pages.blocking_send(Ok(Chunk::Rows(page))).is_err() {
            return Ok(false);
        }
        Ok(pages.blocking_send(Ok(Chunk::End)).is_ok())
    }
}

/// A table of the PostgreSQL database as the copy writes it: the SQLite table's columns, in
/// its order, with their types there.
struct Target {
    name: &'static str,
    columns: Vec<String>,
    types: Vec<Type>,
    /// Whether each column is NOT NULL.
    not_null: Vec<bool>,
    /// The `irregular` column, if the table has one.
    irregular: Option<usize>,
}

impl Target {
    /// The target of `source`: the same columns, or an error naming the difference.
    async fn of(transaction: &Transaction<'_>, source: &SourceTable) -> Result<Target, IndexError> {
        let columns: Vec<(String, bool)> = transaction
            .query(
                "SELECT attname::text, attnotnull FROM pg_attribute
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum",
                &[&source.name],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let mut theirs: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
        let mut ours: Vec<&str> = source.columns.iter().map(String::as_str).collect();
        theirs.sort_unstable();
        ours.sort_unstable();
        if theirs != ours {
            return Err(IndexError::Corrupt {
                what: format!("table {}", source.name),
                reason: format!(
                    "its columns in SQLite ({}) are not those in PostgreSQL ({})",
                    ours.join(", "),
                    theirs.join(", ")
                ),
            });
        }
        // The names are the schema's own (checked above): the statement only reads types.
        let statement = transaction
            .prepare(&format!(
                "SELECT {} FROM {} LIMIT 0",
                source.columns.join(", "),
                source.name
            ))
            .await?;
        let types = statement
            .columns()
            .iter()
            .map(|column| column.type_().clone())
            .collect();
        let not_null = source
            .columns
            .iter()
            .map(|name| columns.iter().any(|(n, not_null)| n == name && *not_null))
            .collect();
        Ok(Target {
            name: source.name,
            irregular: source.columns.iter().position(|name| name == "irregular"),
            columns: source.columns.clone(),
            types,
            not_null,
        })
    }

    /// A row read from SQLite as the parameters of the copy.
    fn row(&self, values: Vec<Value>) -> Result<Vec<Param>, IndexError> {
        let mut params = Vec::with_capacity(values.len());
        let mut irregular = false;
        for (n, value) in values.into_iter().enumerate() {
            params.push(match value {
                Value::Null => Param::Null,
                Value::Integer(number) if self.types[n] == Type::FLOAT8 => {
                    Param::Real(number as f64)
                }
                Value::Integer(number) => Param::Integer(number),
                Value::Real(number) => Param::Real(number),
                Value::Text(text) if text.contains('\0') => {
                    let column = &self.columns[n];
                    if IDENTITY_COLUMNS.contains(&column.as_str())
                        || self.not_null[n]
                        || self.irregular.is_none()
                    {
                        return Err(IndexError::Unindexable {
                            sop_instance_uid: String::new(),
                            reason: format!(
                                "a value of {}.{column} holds a NUL character, which \
                                 PostgreSQL text cannot",
                                self.name
                            ),
                        });
                    }
                    irregular = true;
                    Param::Null
                }
                Value::Text(text) => Param::Text(text),
                Value::Blob(bytes) => Param::Bytes(bytes),
            });
        }
        if irregular && let Some(at) = self.irregular {
            params[at] = Param::Integer(1);
        }
        Ok(params)
    }
}

/// Copies the rows the reader sends for `target` (until its end) with a binary COPY; returns
/// how many went in.
async fn copy_table(
    transaction: &Transaction<'_>,
    target: &Target,
    total: u64,
    received: &mut mpsc::Receiver<Result<Chunk, IndexError>>,
    progress: &mut (impl FnMut(CopyProgress) + Send),
) -> Result<u64, IndexError> {
    let sink = transaction
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            target.name,
            target.columns.join(", ")
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &target.types);
    futures_util::pin_mut!(writer);
    let mut copied = 0;
    progress(CopyProgress {
        table: target.name,
        copied,
        total,
    });
    loop {
        let chunk = received.recv().await.ok_or_else(|| {
            IndexError::Task("the SQLite reader stopped before the end of the index".into())
        })??;
        let rows = match chunk {
            Chunk::Rows(rows) => rows,
            Chunk::End => break,
        };
        for values in rows {
            let params = target.row(values)?;
            writer
                .as_mut()
                .write_raw(params.iter().map(|param| param as &(dyn ToSql + Sync)))
                .await
                .map_err(|error| copy_failed(target, error))?;
            copied += 1;
        }
        progress(CopyProgress {
            table: target.name,
            copied,
            total,
        });
    }
    writer
        .as_mut()
        .finish()
        .await
        .map_err(|error| copy_failed(target, error))
}

fn copy_failed(target: &Target, error: tokio_postgres::Error) -> IndexError {
    IndexError::Postgres(format!(
        "copying table {}: {}",
        target.name,
        super::describe(&error)
    ))
}
