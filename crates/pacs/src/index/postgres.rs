//! The index on a PostgreSQL server, which several archives ("nodes", `dimsum serve --index
//! postgres://…`) share: each stores into it and each answers from it (issue 10, scale out).
//! It implements [`Index`] with the semantics of [`super::SqliteIndex`], on the same tables
//! ([`super::schema`], in PostgreSQL types) and the same query logic ([`super::sql`], in
//! PostgreSQL's dialect: `$n` bound parameters only).
//!
//! * **Connections**: tokio-postgres, all async on the tokio workers, without TLS (`NoTls`:
//!   meant for a server on loopback or a private network; put the server behind a TLS tunnel
//!   otherwise). Readers take connections from a deadpool pool of
//!   [`PostgresConfig::pool_size`]; the writer has a connection of its own.
//! * **Schema**: the table `dimsum_schema` holds the version; migrations run in one
//!   transaction under `pg_advisory_xact_lock`, so that nodes starting at once migrate once; a
//!   database of a newer version is refused ([`IndexError::NewerSchema`]), never altered.
//! * **Writer**: one task per index gathers operations in batches (group commit: up to
//!   [`PostgresConfig::max_batch`] operations or [`PostgresConfig::max_batch_time`]), each
//!   operation in a SAVEPOINT, every operation's future resolved after the COMMIT. Several
//!   nodes write at once, so each transaction is READ COMMITTED and every row is found or
//!   created with a SELECT, then `INSERT … ON CONFLICT DO NOTHING RETURNING id` (no row: another
//!   node made it meanwhile; the operation is undone and applied again, which finds it). An
//!   instance whose insert finds another node's applies [`OnDuplicate`]. The computed keys are
//!   added up per batch and written at its end, rows locked in one order (series, studies,
//!   patients, each by id) with `UPDATE … SET n = n + …`; Modalities and SOP Classes In Study
//!   are refreshed only once the study row is locked, so concurrent writers of a study end
//!   with the right ones. Nothing about parent rows is kept across transactions (another
//!   node may delete them). A batch that fails with serialization_failure, deadlock_detected
//!   or a lost connection is applied again whole (its operations are kept until the commit),
//!   with backoff; on a lost connection the writer reconnects for up to
//!   [`PostgresConfig::reconnect_for`] before it fails the operations. A connection lost
//!   during COMMIT leaves the outcome unknown: each batch writes its number under the writer's
//!   own key in `archive_state`, which says after reconnecting whether it committed — so a
//!   restart of the server under load loses no acknowledged instance and applies none twice.
//! * **Round trips**: statements that need no answer before the next are pipelined (sent
//!   together, answered in order): BEGIN goes with the first
//!   savepoint, each savepoint (and the release of the one before) with the insert's look-up
//!   of its study, series and instance; an instance's row takes its file off
//!   `pending_removal` in the same statement; the last release, the computed keys and the
//!   batch number go in one round trip before COMMIT. An insert into a known series costs two
//!   round trips, and a batch two more, instead of five and seven.
//! * **Readers** wait for the inserts handed over before them ([`super::hand_over`]), then read
//!   on a pooled connection, retrying once on a lost connection. A query streams its matches
//!   from a server-side cursor: a portal of a READ ONLY transaction read 256 rows at a time,
//!   so memory stays bounded whatever the number of matches, and dropping the stream ends it.
//! * **Per node state**: `begin_session`/`mark_clean` keep `clean:<node>`; files pending
//!   removal are shared (removing a file already removed is harmless). An index copied from
//!   SQLite ([`copy_from_sqlite`], `dimsum migrate`) is marked `unchecked`: the first node that
//!   begins a session on it takes the mark and is told the index was not closed cleanly, so
//!   it makes index and storage agree before it serves.

use std::error::Error as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, NoTls, Row, Statement};
use tracing::{debug, info, warn};

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::scan::ScanLimits;
use dimsum_net::storage::BoxFuture;

use crate::folder::IndexCounts;
use crate::hierarchy::{Level, QueryPlan};

mod copy;
pub use copy::{
    COPIED_TABLES, CopyOptions, CopyProgress, CopyReport, copy_from_sqlite, copy_from_sqlite_with,
};

use super::counts::{CountWrite, Counts};
use super::prepared::{EntityRow, PreparedInstance, path_text};
use super::schema::{SCHEMA_VERSION, migrations};
use super::sql::{
    Dialect, INSTANCE_COLUMNS, INSTANCE_JOINS, Param, QueryRun, RowAccess, indexed_instance,
    insert_row_sql, instance_location_columns, instance_record, instance_records_sql,
    instances_after_sql, retrieval_sql,
};
use super::writer::{Batches, Done, Operation, ParentIds, WriteOp, WriterHandle};
use super::{
    DeleteTarget, Deleted, EntityUids, Index, IndexError, IndexedInstance, Inserted,
    InstanceRecord, OnDuplicate, RecordStream, ResponseStream, SessionStart,
};
/// Matches found ahead of the consumer of a query.
const MATCHES_AHEAD: usize = 16;
/// Instance records read ahead of the consumer of [`Index::instance_records`].
const RECORDS_AHEAD: usize = 32;
/// Rows read from a query's portal at a time.
const PORTAL_ROWS: i32 = 256;
/// Entities whose instances a retrieval asks for at once (pipelined).
const RETRIEVAL_PIPELINE: usize = 64;
/// How often one operation is applied again after finding another node's rows before it fails.
const OPERATION_TRIES: usize = 8;
/// The name in `archive_state` that marks an index no node has checked against the storage
/// yet (one copied in by [`copy_from_sqlite`]).
const UNCHECKED_KEY: &str = "unchecked";
/// The key of the advisory lock that migrations hold (any number, the same for every node).
const MIGRATION_LOCK: i64 = 0x6469_6d73_756d_0001;

/// How a [`PostgresIndex`] is set up.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?options]` (the database must exist:
    /// [`create_database`] makes one).
    pub url: String,
    /// This node's name among those sharing the database: its crash-recovery state is its own.
    pub node: String,
    /// Connections of streaming queries, and as many again for short reads (look-ups,
    /// counts, retrievals); the writer has one more.
    pub pool_size: usize,
    /// The most operations one transaction commits.
    pub max_batch: usize,
    /// The longest the writer gathers operations for one transaction.
    pub max_batch_time: Duration,
    /// Limits for reading stored records back (they pass the hardened scanner).
    pub limits: ScanLimits,
    /// How long the writer tries to reconnect to a server it lost before it fails the
    /// operations it holds.
    pub reconnect_for: Duration,
    /// How long one attempt to connect may take.
    pub connect_timeout: Duration,
    /// Commit with `synchronous_commit = on`: each commit is on the server's disk before it is
    /// answered, so it survives a crash of the database server or its machine. The default,
    /// off (for the writer's connection only), answers once the server has the commit, which
    /// survives a crash of the node and a restart of the server, not a crash of the server's
    /// machine within the last fraction of a second: what the SQLite index's `synchronous =
    /// NORMAL` guarantees.
    pub full_sync: bool,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            node: node.into(),
            pool_size: 16,
            max_batch: 512,
            max_batch_time: Duration::from_millis(50),
            limits: ScanLimits::default(),
            reconnect_for: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            full_sync: false,
        }
    }
}

/// The PostgreSQL index (see the module documentation). Cloning is cheap; the clones share the
/// writer and the pool.
#[derive(Clone)]
pub struct PostgresIndex {
    inner: Arc<Inner>,
}

struct Inner {
    config: PostgresConfig,
    /// The URL without its password, for messages.
    database: String,
    /// Connections of short reads (look-ups, counts, retrievals).
    pool: Pool,
    /// Connections of streaming queries, apart: queries whose matches a slow peer takes one by
    /// one never hold up the look-ups of the stores.
    query_pool: Pool,
    /// The writer's queue and the inserts handed over, which reads wait for.
    writer: WriterHandle,
    writer_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresIndex")
            .field("database", &self.inner.database)
            .field("node", &self.inner.config.node)
            .finish_non_exhaustive()
    }
}

/// `url` with its password (if any) as `***`, for messages and logs.
pub fn without_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..start],
                &authority[..colon],
                &url[start + at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The URL of database `database` on the server of `server_url` (a `postgres://` URL; its
/// database, if any, replaced, its options kept).
pub fn database_url(server_url: &str, database: &str) -> String {
    let (base, options) = match server_url.find('?') {
        Some(at) => server_url.split_at(at),
        None => (server_url, ""),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[start..].find('/').map_or(base.len(), |i| start + i);
    format!("{}/{database}{options}", &base[..authority_end])
}

/// Creates the database `name` (letters, digits and `_`, at most 63, not starting with a
/// digit) on the server of `server_url`, UTF-8 with C collation, and returns its URL: how the
/// tests, the CLI and `dimsum migrate` make a fresh index database.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, IndexError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(IndexError::Postgres(format!(
            "{name:?} is no database name (letters, digits and _, at most 63)"
        )));
    }
    let config = parse_url(server_url)?;
    let client = connect(&config, server_url).await?;
    client
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await?;
    Ok(database_url(server_url, name))
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config, IndexError> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|error| IndexError::PostgresConnect {
            url: without_password(url),
            reason: describe(&error),
        })
}

/// A connection of its own (its connection task spawned).
async fn connect(config: &tokio_postgres::Config, url: &str) -> Result<Client, IndexError> {
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|error| IndexError::PostgresConnect {
                url: without_password(url),
                reason: describe(&error),
            })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!("index: a PostgreSQL connection ended: {error}");
        }
    });
    Ok(client)
}

/// The server's message, its SQLSTATE and detail, or the client's error and its cause.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => match error.source() {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

impl From<tokio_postgres::Error> for IndexError {
    fn from(error: tokio_postgres::Error) -> Self {
        IndexError::Postgres(describe(&error))
    }
}

impl From<deadpool_postgres::PoolError> for IndexError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => IndexError::Postgres(format!("no connection from the pool: {other}")),
        }
    }
}

/// Whether `error` says the connection is gone (closed, reset, or the server shutting it).
fn connection_lost(error: &tokio_postgres::Error) -> bool {
    error.is_closed()
        || match error.code() {
            Some(code) => {
                code.code().starts_with("08")
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
            }
            // An error without SQLSTATE that is no query error: the socket.
            None => {
                error.as_db_error().is_none()
                    && error.source().is_some_and(|s| s.is::<std::io::Error>())
            }
        }
}

/// Whether a transaction that failed with `error` may succeed when run again.
fn transient(error: &tokio_postgres::Error) -> bool {
    connection_lost(error)
        || error.code().is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        })
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Text(text) => text.to_sql(ty, out),
            Param::Real(number) if *ty == Type::FLOAT4 => (*number as f32).to_sql(ty, out),
            Param::Real(number) => number.to_sql(ty, out),
            Param::Integer(number) if *ty == Type::INT2 => i16::try_from(*number)?.to_sql(ty, out),
            Param::Integer(number) if *ty == Type::INT4 => i32::try_from(*number)?.to_sql(ty, out),
            Param::Integer(number) => number.to_sql(ty, out),
            Param::TextList(list) => list.to_sql(ty, out),
            Param::Bytes(bytes) => bytes.to_sql(ty, out),
            Param::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <String as ToSql>::accepts(ty)
            || <f64 as ToSql>::accepts(ty)
            || <f32 as ToSql>::accepts(ty)
            || <i64 as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <i16 as ToSql>::accepts(ty)
            || <Vec<String> as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Each kind of value checks the column's type as its Rust type would.
        let accepted = match self {
            Param::Text(_) => <String as ToSql>::accepts(ty),
            Param::Real(_) => <f64 as ToSql>::accepts(ty) || <f32 as ToSql>::accepts(ty),
            Param::Integer(_) => {
                <i64 as ToSql>::accepts(ty)
                    || <i32 as ToSql>::accepts(ty)
                    || <i16 as ToSql>::accepts(ty)
            }
            Param::TextList(_) => <Vec<String> as ToSql>::accepts(ty),
            Param::Bytes(_) => <Vec<u8> as ToSql>::accepts(ty),
            Param::Null => true,
        };
        if !accepted {
            return Err(format!("a {self:?} cannot be bound to a {ty} parameter").into());
        }
        self.to_sql(ty, out)
    }
}

/// Parameters as tokio-postgres takes them.
fn bound(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl RowAccess for Row {
    fn integer(&self, n: usize) -> Result<i64, IndexError> {
        let column = self
            .columns()
            .get(n)
            .ok_or_else(|| IndexError::Postgres(format!("no column {n} in a row")))?;
        Ok(match *column.type_() {
            Type::INT2 => i64::from(self.try_get::<_, i16>(n)?),
            Type::INT4 => i64::from(self.try_get::<_, i32>(n)?),
            _ => self.try_get::<_, i64>(n)?,
        })
    }

    fn text(&self, n: usize) -> Result<String, IndexError> {
        Ok(self.try_get(n)?)
    }

    fn bytes(&self, n: usize) -> Result<&[u8], IndexError> {
        Ok(self.try_get(n)?)
    }
}

impl PostgresIndex {
    /// Connects (the database must exist), creates or migrates the schema, and starts the
    /// writer.
    pub async fn open(config: PostgresConfig) -> Result<PostgresIndex, IndexError> {
        let database = without_password(&config.url);
        let mut pg = parse_url(&config.url)?;
        pg.connect_timeout(config.connect_timeout);
        pg.application_name(format!("dimsum {}", config.node));
        let mut client = connect(&pg, &config.url).await?;
        prepare_database(&mut client, &database).await?;
        // This connection becomes the writer's: as the writer's reconnections are set up below.
        let synchronous_commit = if config.full_sync { "on" } else { "off" };
        client
            .batch_execute(&format!(
                "SET synchronous_commit = {synchronous_commit}; SET application_name = 'dimsum {} writer'",
                config.node.replace('\'', "")
            ))
            .await?;
        let pool = || {
            let manager = Manager::from_config(
                pg.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(config.pool_size.max(1))
                .build()
                .map_err(|error| IndexError::Postgres(format!("cannot make the pool: {error}")))
        };
        let (pool, query_pool) = (pool()?, pool()?);
        let (writer, operations) = WriterHandle::new();
        // The writer's connections are told apart from the readers' (pg_stat_activity).
        let mut writer_pg = pg.clone();
        writer_pg.application_name(format!("dimsum {} writer", config.node));
        if !config.full_sync {
            writer_pg.options("-c synchronous_commit=off");
        }
        let link = WriterLink {
            pg: writer_pg,
            url: config.url.clone(),
            client: Some(client),
            statements: Default::default(),
            key: writer_key(&config.node),
            batch: 0,
        };
        let writer_task = tokio::spawn(run_writer(link, operations, config.clone()));
        info!("index: PostgreSQL {database}, node {}", config.node);
        Ok(PostgresIndex {
            inner: Arc::new(Inner {
                config,
                database,
                pool,
                query_pool,
                writer,
                writer_task: Mutex::new(Some(writer_task)),
            }),
        })
    }

    /// The database, its URL without the password.
    pub fn database(&self) -> &str {
        &self.inner.database
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// Stops the writer once what it was given is committed, and waits for it. Later writes
    /// fail with [`IndexError::WriterGone`]; reads go on.
    pub async fn close(&self) -> Result<(), IndexError> {
        self.inner.writer.stop().await;
        let task = self
            .inner
            .writer_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            task.await
                .map_err(|error| IndexError::Task(format!("the index writer failed: {error}")))?;
        }
        Ok(())
    }

    /// A pooled connection for a short read.
    async fn connection(&self) -> Result<deadpool_postgres::Client, IndexError> {
        Ok(self.inner.pool.get().await?)
    }

    /// A pooled connection for a streaming query.
    async fn query_connection(&self) -> Result<deadpool_postgres::Client, IndexError> {
        Ok(self.inner.query_pool.get().await?)
    }

    /// Runs `read` on a pooled connection, once the inserts handed over before it are
    /// committed; once more on another connection if the first was lost.
    async fn read<T, F>(&self, read: F) -> Result<T, IndexError>
    where
        F: for<'c> Fn(&'c mut deadpool_postgres::Client) -> BoxFuture<'c, Result<T, IndexError>>,
    {
        self.inner.writer.settle().await;
        self.read_committed(read).await
    }

    /// [`PostgresIndex::read`] of what is committed now. A read whose connection is lost, or
    /// that cannot get one (the server restarting), runs again on a new one, with growing
    /// pauses, for up to [`PostgresConfig::reconnect_for`], as the writer reconnects: a store's
    /// duplicate look-up waits for the server rather than failing its store.
    async fn read_committed<T, F>(&self, read: F) -> Result<T, IndexError>
    where
        F: for<'c> Fn(&'c mut deadpool_postgres::Client) -> BoxFuture<'c, Result<T, IndexError>>,
    {
        let deadline = Instant::now() + self.inner.config.reconnect_for;
        let mut pause = Duration::from_millis(25);
        loop {
            let (outcome, lost) = match self.connection().await {
                Ok(mut client) => {
                    let outcome = read(&mut client).await;
                    let lost = outcome.is_err() && client.is_closed();
                    (outcome, lost)
                }
                Err(error) => (Err(error), true),
            };
            match outcome {
                Err(error) if lost && Instant::now() + pause < deadline => {
                    debug!("index: a read lost its connection ({error}); again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs `read` on a pooled connection, once the inserts handed over before it are
    /// committed, as a stream: `read` sends each item (and stops when the stream is dropped),
    /// at most `ahead` items ahead of the consumer; an error of `read` ends the stream. A
    /// connection lost before the first item is sent is retried once.
    async fn stream_read<T, F>(
        &self,
        ahead: usize,
        read: F,
    ) -> Result<impl futures_util::Stream<Item = Result<T, IndexError>> + Send + 'static, IndexError>
    where
        T: Send + 'static,
        F: for<'c> Fn(
                &'c mut deadpool_postgres::Client,
                &'c mpsc::Sender<Result<T, IndexError>>,
            ) -> BoxFuture<'c, Result<(), IndexError>>
            + Send
            + Sync
            + 'static,
    {
        self.inner.writer.settle().await;
        let mut client = self.query_connection().await?;
        let (sender, receiver) = mpsc::channel(ahead);
        let index = self.clone();
        tokio::spawn(async move {
            let mut outcome = read(&mut client, &sender).await;
            let nothing_sent = sender.capacity() == sender.max_capacity();
            if outcome.is_err() && client.is_closed() && nothing_sent {
                drop(client);
                outcome = match index.query_connection().await {
                    Ok(mut client) => read(&mut client, &sender).await,
                    Err(error) => Err(error),
                };
            }
            if let Err(error) = outcome {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        ))
    }
}

/// A unique key for one writer's batch numbers in `archive_state`.
fn writer_key(node: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("writer:{node}:{}:{nanos}", std::process::id())
}

/// Checks that the database is in UTF-8 and brings it to [`SCHEMA_VERSION`]: what
/// [`PostgresIndex::open`] and [`copy_from_sqlite`] do first.
async fn prepare_database(client: &mut Client, database: &str) -> Result<(), IndexError> {
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await?
        .try_get(0)?;
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(IndexError::Postgres(format!(
            "the database {database} is in {encoding}: the index needs UTF8"
        )));
    }
    migrate(client, database).await
}

/// Brings the database to [`SCHEMA_VERSION`] under the migration lock.
async fn migrate(client: &mut Client, database: &str) -> Result<(), IndexError> {
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS dimsum_schema (version BIGINT NOT NULL);"
        ))
        .await?;
    let version: i64 = match transaction
        .query_opt("SELECT max(version) FROM dimsum_schema", &[])
        .await?
    {
        Some(row) => row.try_get::<_, Option<i64>>(0)?.unwrap_or(0),
        None => 0,
    };
    if version > SCHEMA_VERSION {
        return Err(IndexError::NewerSchema {
            database: database.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        for statements in migrations(Dialect::Postgres)
            .iter()
            .skip(usize::try_from(version.max(0)).unwrap_or(usize::MAX))
        {
            transaction.batch_execute(statements).await?;
        }
        transaction
            .execute("DELETE FROM dimsum_schema", &[])
            .await?;
        transaction
            .execute(
                "INSERT INTO dimsum_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await?;
        info!("index: {database} migrated from version {version} to {SCHEMA_VERSION}");
    }
    transaction.commit().await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The writer
// ------------------------------------------------------------------------------------------

/// The writer's connection (made again when lost) and what goes with it.
struct WriterLink {
    pg: tokio_postgres::Config,
    url: String,
    client: Option<Client>,
    /// Statements prepared on `client` (a fixed set of texts).
    statements: std::collections::HashMap<String, Statement>,
    /// Its key in `archive_state`, whose value is the number of the last batch committed.
    key: String,
    batch: i64,
}

impl WriterLink {
    /// Connects again if the connection is gone, retrying until `deadline`.
    async fn ensure_connected(&mut self, deadline: Instant) -> Result<(), IndexError> {
        let mut pause = Duration::from_millis(50);
        loop {
            if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
                return Ok(());
            }
            self.client = None;
            self.statements.clear();
            match connect(&self.pg, &self.url).await {
                Ok(client) => {
                    info!("index: the writer reconnected to PostgreSQL");
                    self.client = Some(client);
                    return Ok(());
                }
                Err(error) if Instant::now() + pause < deadline => {
                    debug!("index: the writer cannot reconnect yet: {error}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The batch number last committed under this writer's key.
    async fn committed_batch(&mut self) -> Result<Option<i64>, tokio_postgres::Error> {
        let Some(client) = &self.client else {
            return Ok(None);
        };
        let row = client
            .query_opt(
                "SELECT value FROM archive_state WHERE name = $1",
                &[&self.key],
            )
            .await?;
        row.map(|row| row.try_get(0)).transpose()
    }
}

/// The writer task: gathers a batch, applies it, answers.
async fn run_writer(
    mut link: WriterLink,
    operations: mpsc::Receiver<WriteOp>,
    config: PostgresConfig,
) {
    let mut batches = Batches::new(operations, config.max_batch, config.max_batch_time);
    while let Some(batch) = batches.next().await {
        let count = batch.len();
        commit_batch(&mut link, batch, &config).await;
        debug!("index: committed {count} operations");
    }
    drop(batches);
    if let Some(client) = &link.client {
        let _ = client
            .execute("DELETE FROM archive_state WHERE name = $1", &[&link.key])
            .await;
    }
}

/// Why a batch's transaction failed.
struct BatchFailure {
    error: tokio_postgres::Error,
    /// It failed at COMMIT (whether it committed is not known when the connection was lost).
    at_commit: bool,
    /// The answers of the operations, had it committed.
    results: Vec<Result<Done, IndexError>>,
}

/// Applies a batch (again, after transient failures, until the reconnect time is over) and
/// answers its operations.
async fn commit_batch(link: &mut WriterLink, batch: Vec<WriteOp>, config: &PostgresConfig) {
    let mut operations = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    // Held until the batch is answered (dropped at the end of this function).
    let mut marks = Vec::new();
    for WriteOp {
        operation,
        reply,
        mark,
    } in batch
    {
        operations.push(operation);
        replies.push(reply);
        marks.extend(mark);
    }
    let deadline = Instant::now() + config.reconnect_for;
    let mut pause = Duration::from_millis(20);
    let outcome = loop {
        if let Err(error) = link.ensure_connected(deadline).await {
            break Err(error);
        }
        link.batch += 1;
        let number = link.batch;
        let attempt = {
            let WriterLink {
                client,
                statements,
                key,
                ..
            } = &mut *link;
            match client.as_mut() {
                Some(client) => {
                    try_batch(client, statements, &operations, (key, &config.node), number).await
                }
                None => continue,
            }
        };
        let failure = match attempt {
            Ok(results) => break Ok(results),
            Err(failure) => failure,
        };
        let lost =
            connection_lost(&failure.error) || link.client.as_ref().is_none_or(|c| c.is_closed());
        if lost && failure.at_commit {
            // Whether it committed: the batch number under this writer's key says.
            if link.ensure_connected(deadline).await.is_ok()
                && matches!(link.committed_batch().await, Ok(Some(n)) if n == number)
            {
                break Ok(failure.results);
            }
        }
        if !(lost || transient(&failure.error)) || Instant::now() + pause >= deadline {
            break Err(failure.error.into());
        }
        warn!(
            "index: a batch of {} operations failed ({}); applying it again",
            operations.len(),
            describe(&failure.error)
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    };
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                reply.send(result);
            }
        }
        Err(error) => {
            warn!("index: a transaction failed: {error}");
            let message = error.to_string();
            for reply in replies {
                reply.send(Err(IndexError::Postgres(format!(
                    "the index transaction failed: {message}"
                ))));
            }
        }
    }
    drop(marks);
}

/// What one attempt at an operation came to.
enum Step {
    /// Done: keep what it wrote.
    Keep(Done),
    /// Done, but undo what it wrote (another node's instance was kept).
    Undo(Result<Done, IndexError>),
    /// Undo and apply it again (it met rows another node made meanwhile); `flush` first: the
    /// batch's computed keys are written before it removes rows.
    Again { flush: bool },
}

/// Why an operation failed.
enum OperationError {
    /// A statement failed.
    Database(tokio_postgres::Error),
    /// The operation cannot be done (its answer).
    Refused(IndexError),
}

impl From<tokio_postgres::Error> for OperationError {
    fn from(error: tokio_postgres::Error) -> Self {
        OperationError::Database(error)
    }
}

impl From<IndexError> for OperationError {
    fn from(error: IndexError) -> Self {
        OperationError::Refused(error)
    }
}

/// The writer's transaction: its statements are prepared once per connection. It is begun
/// with its first savepoint (in the same round trip) and ended by [`try_batch`].
struct Writing<'t> {
    /// The writer's connection, in the batch's transaction once `begun`.
    transaction: &'t Client,
    statements: &'t mut std::collections::HashMap<String, Statement>,
    node: &'t str,
    /// Whether BEGIN went out.
    begun: bool,
    /// An operation's savepoint is over but not released yet: the release goes out with the
    /// next statements (pipelined), not in a round trip of its own.
    release_pending: bool,
}

/// Statements sent at once ([`Writing::pipeline`]): their text and parameters.
type Pipeline = Vec<(String, Vec<Param>)>;

impl Writing<'_> {
    /// The text that opens an operation's savepoint (beginning the transaction, or releasing
    /// the previous savepoint, first).
    fn savepoint(&mut self) -> &'static str {
        if !std::mem::replace(&mut self.begun, true) {
            "BEGIN ISOLATION LEVEL READ COMMITTED; SAVEPOINT operation"
        } else if std::mem::take(&mut self.release_pending) {
            "RELEASE SAVEPOINT operation; SAVEPOINT operation"
        } else {
            "SAVEPOINT operation"
        }
    }

    /// Sends the pending release (if any) and `statements` without waiting for one answer
    /// before sending the next (tokio-postgres pipelines requests polled together; the server
    /// runs them in the order sent), then waits for every answer: one round trip for all.
    async fn pipeline(&mut self, statements: Pipeline) -> Result<(), tokio_postgres::Error> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (text, params) in &statements {
            prepared.push((self.statement(text).await?, params));
        }
        let first = match (
            std::mem::replace(&mut self.begun, true),
            std::mem::take(&mut self.release_pending),
        ) {
            (false, _) => Some("BEGIN ISOLATION LEVEL READ COMMITTED"),
            (true, true) => Some("RELEASE SAVEPOINT operation"),
            (true, false) => None,
        };
        let transaction = self.transaction;
        let released = async move {
            if let Some(first) = first {
                transaction.batch_execute(first).await?;
            }
            Ok(0)
        };
        let params: Vec<_> = prepared.iter().map(|(_, params)| bound(params)).collect();
        let executed = prepared
            .iter()
            .zip(&params)
            .map(|((statement, _), params)| transaction.execute(statement, params));
        let mut all: Vec<BoxFuture<'_, Result<u64, tokio_postgres::Error>>> =
            vec![Box::pin(released)];
        all.extend(executed.map(|future| Box::pin(future) as BoxFuture<'_, _>));
        futures_util::future::try_join_all(all).await?;
        Ok(())
    }

    async fn statement(&mut self, text: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(text) {
            return Ok(statement.clone());
        }
        let statement = self.transaction.prepare(text).await?;
        self.statements.insert(text.to_owned(), statement.clone());
        Ok(statement)
    }

    async fn execute(
        &mut self,
        text: &str,
        params: &[Param],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(text).await?;
        self.transaction.execute(&statement, &bound(params)).await
    }

    async fn query_opt(
        &mut self,
        text: &str,
        params: &[Param],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statement(text).await?;
        self.transaction.query_opt(&statement, &bound(params)).await
    }

    async fn query(
        &mut self,
        text: &str,
        params: &[Param],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(text).await?;
        self.transaction.query(&statement, &bound(params)).await
    }
}

/// One attempt at a batch in a READ COMMITTED transaction: every operation in a savepoint,
/// the computed keys, the batch number, COMMIT (or ROLLBACK after a failure).
async fn try_batch(
    client: &mut Client,
    statements: &mut std::collections::HashMap<String, Statement>,
    operations: &[Operation],
    (key, node): (&str, &str),
    number: i64,
) -> Result<Vec<Result<Done, IndexError>>, BatchFailure> {
    let applied = async {
        let mut writing = Writing {
            transaction: client,
            statements,
            node,
            begun: false,
            release_pending: false,
        };
        let mut results = Vec::with_capacity(operations.len());
        let mut counts = Counts::default();
        for operation in operations {
            results.push(apply_with_retries(&mut writing, &mut counts, operation).await?);
        }
        // The last release, the computed keys and the batch number: one round trip.
        let mut finish = count_statements(&mut counts);
        finish.push((
            STATE_UPSERT.to_owned(),
            vec![Param::Text(key.to_owned()), Param::Integer(number)],
        ));
        writing.pipeline(finish).await?;
        Ok::<_, tokio_postgres::Error>(results)
    };
    let results = match applied.await {
        Ok(results) => results,
        Err(error) => {
            // Whatever went out is undone (harmless when nothing did, or the connection is
            // gone).
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(BatchFailure {
                error,
                at_commit: false,
                results: Vec::new(),
            });
        }
    };
    // Every statement's answer was read above: COMMIT ends a transaction that has not failed.
    match client.batch_execute("COMMIT").await {
        Ok(()) => Ok(results),
        Err(error) => Err(BatchFailure {
            error,
            at_commit: true,
            results,
        }),
    }
}

/// Applies one operation in a savepoint (again when it meets another node's rows); a
/// transient database error fails the batch.
async fn apply_with_retries(
    writing: &mut Writing<'_>,
    counts: &mut Counts,
    operation: &Operation,
) -> Result<Result<Done, IndexError>, tokio_postgres::Error> {
    let mut flush = false;
    for _ in 0..OPERATION_TRIES {
        if flush {
            writing.pipeline(count_statements(counts)).await?;
        }
        // The savepoint and an insert's look-up go out together.
        let savepoint = writing.savepoint();
        let found = match operation {
            Operation::Insert(prepared, _) => {
                let statement = writing.statement(INSERT_LOOKUP).await?;
                let params = insert_lookup_params(prepared);
                let (saved, found) = futures_util::future::join(
                    writing.transaction.batch_execute(savepoint),
                    writing.transaction.query_opt(&statement, &bound(&params)),
                )
                .await;
                saved?;
                Some(found)
            }
            _ => {
                writing.transaction.batch_execute(savepoint).await?;
                None
            }
        };
        let mut own = Counts::default();
        let step = apply(writing, &mut own, !counts.is_empty(), operation, found).await;
        let (undo, answer) = match step {
            Ok(Step::Keep(done)) => {
                counts.add(own);
                (false, Some(Ok(done)))
            }
            Ok(Step::Undo(answer)) => (true, Some(answer)),
            Ok(Step::Again { flush: first }) => {
                flush = first;
                (true, None)
            }
            Err(OperationError::Refused(error)) => (true, Some(Err(error))),
            Err(OperationError::Database(error)) if transient(&error) => return Err(error),
            Err(OperationError::Database(error)) => (true, Some(Err(error.into()))),
        };
        if undo {
            writing
                .transaction
                .batch_execute("ROLLBACK TO SAVEPOINT operation")
                .await?;
        }
        // Released with the next statements.
        writing.release_pending = true;
        if let Some(answer) = answer {
            return Ok(answer);
        }
    }
    Ok(Err(IndexError::Task(format!(
        "the operation met other nodes' changes {OPERATION_TRIES} times in a row"
    ))))
}

/// Applies one operation; `found` is the answer of an insert's look-up, sent with its
/// savepoint.
async fn apply(
    writing: &mut Writing<'_>,
    counts: &mut Counts,
    pending_counts: bool,
    operation: &Operation,
    found: Option<Result<Option<Row>, tokio_postgres::Error>>,
) -> Result<Step, OperationError> {
    match operation {
        Operation::Insert(prepared, on_duplicate) => {
            let found = found.transpose()?.flatten();
            insert(
                writing,
                counts,
                pending_counts,
                prepared,
                *on_duplicate,
                found,
            )
            .await
        }
        Operation::Delete(_) if pending_counts => Ok(Step::Again { flush: true }),
        Operation::Delete(target) => Ok(Step::Keep(Done::Deleted(delete(writing, target).await?))),
        Operation::FilesRemoved(files) => {
            let paths = files
                .iter()
                .map(|file| path_text(file).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            writing
                .execute(
                    "DELETE FROM pending_removal WHERE path = ANY($1::text[])",
                    &[Param::TextList(paths)],
                )
                .await?;
            Ok(Step::Keep(Done::Nothing))
        }
        Operation::BeginSession => {
            // An index copied in ([`copy_from_sqlite`]) is checked by the first node that
            // starts on it: that node takes the mark away.
            let unchecked = writing
                .query_opt(
                    "DELETE FROM archive_state WHERE name = $1 RETURNING value",
                    &[Param::Text(UNCHECKED_KEY.to_owned())],
                )
                .await?
                .is_some();
            let name = Param::Text(clean_key(writing));
            let was_clean = writing
                .query_opt(
                    "SELECT value FROM archive_state WHERE name = $1",
                    std::slice::from_ref(&name),
                )
                .await?
                .map(|row| row.try_get::<_, i64>(0))
                .transpose()?;
            set_state(writing, name, 0).await?;
            let pending_removals = writing
                .query("SELECT path FROM pending_removal ORDER BY path", &[])
                .await?
                .into_iter()
                .map(|row| row.try_get::<_, String>(0).map(PathBuf::from))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Step::Keep(Done::Session(SessionStart {
                was_clean: !unchecked && was_clean.is_none_or(|clean| clean != 0),
                pending_removals,
            })))
        }
        Operation::MarkClean => {
            let name = Param::Text(clean_key(writing));
            set_state(writing, name, 1).await?;
            Ok(Step::Keep(Done::Nothing))
        }
        Operation::Close => Ok(Step::Keep(Done::Nothing)),
    }
}

/// The key of this node's clean flag.
fn clean_key(writing: &Writing<'_>) -> String {
    format!("clean:{}", writing.node)
}

async fn set_state(
    writing: &mut Writing<'_>,
    name: Param,
    value: i64,
) -> Result<(), tokio_postgres::Error> {
    writing
        .execute(STATE_UPSERT, &[name, Param::Integer(value)])
        .await?;
    Ok(())
}

/// Sets a value of `archive_state` (`$1` its name, `$2` the value).
const STATE_UPSERT: &str = "INSERT INTO archive_state (name, value) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";

/// The statements that write a batch's counts (which it forgets), in [`Counts::writes`]
/// lock order; none depends on another's answer: they are sent at once
/// ([`Writing::pipeline`]).
fn count_statements(counts: &mut Counts) -> Pipeline {
    counts
        .writes(Dialect::Postgres)
        .into_iter()
        .map(|write| match write {
            CountWrite::Statement(text, params) => (text, params),
            CountWrite::RefreshModalities(id) => {
                (REFRESH_MODALITIES.to_owned(), vec![Param::Integer(id)])
            }
            CountWrite::RefreshSopClasses(id) => {
                (REFRESH_SOP_CLASSES.to_owned(), vec![Param::Integer(id)])
            }
        })
        .collect()
}

/// Modalities In Study of study `$1`: the distinct modalities of its series (run once the study
/// row is locked, so that it sees every series committed before).
const REFRESH_MODALITIES: &str = "UPDATE study SET modalities_in_study = COALESCE((
        SELECT string_agg(DISTINCT m, '\\' ORDER BY m) FROM (
            SELECT btrim(unnest(string_to_array(modality, '\\'))) COLLATE \"C\" AS m
            FROM series WHERE study = $1 AND modality IS NOT NULL) parts
        WHERE m <> ''), '') WHERE id = $1";

/// SOP Classes In Study of study `$1`: the SOP classes of its instances, written only when
/// they changed (run once the study row is locked).
const REFRESH_SOP_CLASSES: &str = "UPDATE study SET sop_classes_in_study = classes.list
    FROM (SELECT COALESCE(string_agg(sop_class_uid, '\\' ORDER BY sop_class_uid), '') AS list
          FROM study_sop_class WHERE study = $1) classes
    WHERE id = $1 AND sop_classes_in_study <> classes.list";

/// Runs [`REFRESH_MODALITIES`] or [`REFRESH_SOP_CLASSES`] for one study.
async fn refresh(
    writing: &mut Writing<'_>,
    statement: &str,
    study_id: i64,
) -> Result<(), tokio_postgres::Error> {
    writing
        .execute(statement, &[Param::Integer(study_id)])
        .await?;
    Ok(())
}

/// Inserts an entity row with its extra columns (parent, location…) unless a row with its
/// identity is there (another node's, committed or not: then it waits for that one's end);
/// returns the new row's id. A row with a `path` (an instance) takes its file off
/// `pending_removal` in the same statement.
async fn insert_row(
    writing: &mut Writing<'_>,
    level: Level,
    (row, sop_instance_uid): (&EntityRow, &str),
    extra: Vec<(&str, Param)>,
) -> Result<Option<i64>, OperationError> {
    let (insert, names) = insert_row_sql(Dialect::Postgres, level, (row, sop_instance_uid), extra)?;
    let identity = match level {
        Level::Patient => "patient_id, issuer_of_patient_id",
        Level::Study => "study_instance_uid",
        Level::Series => "series_instance_uid",
        Level::Image => "sop_instance_uid",
    };
    let mut sql = format!(
        "{} ON CONFLICT ({identity}) DO NOTHING RETURNING id",
        insert.text
    );
    // An instance's file is no longer pending removal once its row is in: in the same
    // statement (no round trip of its own).
    if let Some(path) = names.iter().position(|name| name == "path") {
        sql = format!(
            "WITH inserted AS ({sql}), cleared AS (
                DELETE FROM pending_removal WHERE path = ${} AND EXISTS (SELECT 1 FROM inserted))
             SELECT id FROM inserted",
            path + 1
        );
    }
    let row = writing.query_opt(&sql, &insert.params).await?;
    Ok(row.map(|row| row.try_get::<_, i64>(0)).transpose()?)
}

/// The instance, study and series of an insert, those that are there (one round trip).
const INSERT_LOOKUP: &str = "SELECT i.id, st.id, st.patient, se.id, se.study
    FROM (SELECT 1) one
    LEFT JOIN instance i ON i.sop_instance_uid = $1
    LEFT JOIN study st ON st.study_instance_uid = $2
    LEFT JOIN series se ON se.series_instance_uid = $3";

/// The parameters of [`INSERT_LOOKUP`] for `prepared`.
fn insert_lookup_params(prepared: &PreparedInstance) -> [Param; 3] {
    [
        Param::Text(prepared.sop_instance_uid.clone()),
        Param::Text(prepared.study_instance_uid.clone()),
        Param::Text(prepared.series_instance_uid.clone()),
    ]
}

/// Inserts an instance (with the rows above it that are missing); `found` is the answer of
/// its [`INSERT_LOOKUP`] if it was sent already.
async fn insert(
    writing: &mut Writing<'_>,
    counts: &mut Counts,
    pending_counts: bool,
    prepared: &PreparedInstance,
    on_duplicate: OnDuplicate,
    mut found: Option<Row>,
) -> Result<Step, OperationError> {
    let uid = prepared.sop_instance_uid.as_str();
    let new_path = path_text(&prepared.location.path)?;
    let study_uid = prepared.study_instance_uid.as_str();
    let series_uid = prepared.series_instance_uid.as_str();
    let lookup = insert_lookup_params(prepared);
    let mut replaced = None;
    let found = loop {
        let found = match found.take() {
            Some(found) => found,
            None => writing
                .query_opt(INSERT_LOOKUP, &lookup)
                .await?
                .ok_or_else(|| IndexError::Task("the insert look-up returned no row".into()))?,
        };
        let Some(existing) = found.try_get::<_, Option<i64>>(0)? else {
            break found;
        };
        match on_duplicate {
            OnDuplicate::Keep => return Ok(Step::Keep(Done::Inserted(Inserted::AlreadyPresent))),
            OnDuplicate::Fail => return Err(IndexError::Duplicate(uid.to_owned()).into()),
            // The batch's counts first: the removal may empty rows they add to.
            OnDuplicate::Replace if pending_counts => return Ok(Step::Again { flush: true }),
            OnDuplicate::Replace if replaced.is_some() => return Ok(Step::Again { flush: false }),
            OnDuplicate::Replace => {
                let old = remove_instance(writing, existing).await?;
                replaced = Some((old != new_path).then(|| PathBuf::from(old)));
                // Its series, study and patient may have gone with it: look again.
            }
        }
    };
    let parent = |n: usize| found.try_get::<_, Option<i64>>(n);
    let (mut patient_id, mut study_id, new_study) = match (parent(1)?, parent(2)?) {
        (Some(study_id), Some(patient_id)) => (patient_id, study_id, false),
        _ => {
            let [patient, study, _] = prepared.parent_rows();
            let patient_key = [
                Param::Text(patient.text("patient_id").unwrap_or_default().to_owned()),
                Param::Text(
                    patient
                        .text("issuer_of_patient_id")
                        .unwrap_or_default()
                        .to_owned(),
                ),
            ];
            let found_patient = writing
                .query_opt(
                    "SELECT id FROM patient WHERE patient_id = $1 AND issuer_of_patient_id = $2",
                    &patient_key,
                )
                .await?;
            let patient_id = match found_patient {
                Some(row) => row.try_get::<_, i64>(0)?,
                None => {
                    match insert_row(writing, Level::Patient, (patient, uid), Vec::new()).await? {
                        Some(id) => id,
                        None => return Ok(Step::Again { flush: false }),
                    }
                }
            };
            let study_row = (study, uid);
            let created = insert_row(
                writing,
                Level::Study,
                study_row,
                vec![("patient", Param::Integer(patient_id))],
            )
            .await?;
            match created {
                Some(study_id) => (patient_id, study_id, true),
                None => return Ok(Step::Again { flush: false }),
            }
        }
    };
    let (series_id, new_series) = match (parent(3)?, parent(4)?) {
        (Some(series_id), Some(owner)) => {
            if owner != study_id {
                warn!(
                    "instance {uid}: series {series_uid} belongs to another study than {study_uid}; filed under that one"
                );
                study_id = owner;
                let row = writing
                    .query_opt(
                        "SELECT patient FROM study WHERE id = $1",
                        &[Param::Integer(owner)],
                    )
                    .await?;
                match row {
                    Some(row) => patient_id = row.try_get(0)?,
                    None => return Ok(Step::Again { flush: false }),
                }
            }
            (series_id, false)
        }
        _ => match insert_row(
            writing,
            Level::Series,
            (&prepared.parent_rows()[2], uid),
            vec![("study", Param::Integer(study_id))],
        )
        .await?
        {
            Some(series_id) => (series_id, true),
            None => return Ok(Step::Again { flush: false }),
        },
    };
    let inserted = insert_row(
        writing,
        Level::Image,
        (&prepared.instance, uid),
        instance_location_columns(prepared, series_id, new_path)?,
    )
    .await?;
    if inserted.is_none() {
        // Another node indexed it meanwhile.
        return Ok(match on_duplicate {
            OnDuplicate::Keep => Step::Undo(Ok(Done::Inserted(Inserted::AlreadyPresent))),
            OnDuplicate::Fail => Step::Undo(Err(IndexError::Duplicate(uid.to_owned()))),
            OnDuplicate::Replace => Step::Again { flush: false },
        });
    }
    counts.instance(
        ParentIds {
            patient_id,
            study_id,
            series_id,
            new_study,
            new_series,
        },
        &prepared.sop_class_uid,
    );
    Ok(Step::Keep(Done::Inserted(match replaced {
        None => Inserted::New,
        Some(old_file) => {
            if let Some(old) = &old_file {
                pending_removal(writing, path_text(old)?).await?;
            }
            Inserted::Replaced { old_file }
        }
    })))
}

async fn pending_removal(
    writing: &mut Writing<'_>,
    path: &str,
) -> Result<(), tokio_postgres::Error> {
    writing
        .execute(
            "INSERT INTO pending_removal (path) VALUES ($1) ON CONFLICT DO NOTHING",
            &[Param::Text(path.to_owned())],
        )
        .await?;
    Ok(())
}

/// Removes one instance row and maintains everything above it (entities left empty go too);
/// returns its file. Rows are locked in the order of [`Counts::writes`].
async fn remove_instance(writing: &mut Writing<'_>, id: i64) -> Result<String, OperationError> {
    let row = writing
        .query_opt(
            "SELECT i.path, i.series, i.sop_class_uid, se.study, st.patient
             FROM instance i JOIN series se ON se.id = i.series
             JOIN study st ON st.id = se.study WHERE i.id = $1",
            &[Param::Integer(id)],
        )
        .await?
        .ok_or_else(|| IndexError::Task(format!("instance row {id} went away")))?;
    let path: String = row.try_get(0)?;
    let series_id: i64 = row.try_get(1)?;
    let sop_class: String = row.try_get(2)?;
    let study_id: i64 = row.try_get(3)?;
    let patient_id: i64 = row.try_get(4)?;
    let id_param = |id: i64| [Param::Integer(id)];
    writing
        .execute("DELETE FROM instance WHERE id = $1", &id_param(id))
        .await?;
    let number = |row: Option<Row>| -> Result<i64, tokio_postgres::Error> {
        Ok(row
            .map(|row| row.try_get::<_, i32>(0))
            .transpose()?
            .map_or(0, i64::from))
    };
    let series_left = number(
        writing
            .query_opt(
                "UPDATE series SET number_of_instances = number_of_instances - 1 WHERE id = $1
                 RETURNING number_of_instances",
                &id_param(series_id),
            )
            .await?,
    )?;
    let series_gone = series_left <= 0;
    if series_gone {
        writing
            .execute("DELETE FROM series WHERE id = $1", &id_param(series_id))
            .await?;
    }
    let study_series = number(
        writing
            .query_opt(
                "UPDATE study SET number_of_instances = number_of_instances - 1,
                    number_of_series = number_of_series - $2 WHERE id = $1
                 RETURNING number_of_series",
                &[
                    Param::Integer(study_id),
                    Param::Integer(i64::from(series_gone)),
                ],
            )
            .await?,
    )?;
    let class_left = number(
        writing
            .query_opt(
                "UPDATE study_sop_class SET instances = instances - 1
                 WHERE study = $1 AND sop_class_uid = $2 RETURNING instances",
                &[Param::Integer(study_id), Param::Text(sop_class.clone())],
            )
            .await?,
    )?;
    let study_gone = study_series <= 0;
    if study_gone {
        writing
            .execute(
                "DELETE FROM study_sop_class WHERE study = $1",
                &id_param(study_id),
            )
            .await?;
        writing
            .execute("DELETE FROM study WHERE id = $1", &id_param(study_id))
            .await?;
    } else {
        if class_left <= 0 {
            writing
                .execute(
                    "DELETE FROM study_sop_class WHERE study = $1 AND sop_class_uid = $2",
                    &[Param::Integer(study_id), Param::Text(sop_class)],
                )
                .await?;
            refresh(writing, REFRESH_SOP_CLASSES, study_id).await?;
        }
        if series_gone {
            refresh(writing, REFRESH_MODALITIES, study_id).await?;
        }
    }
    let patient_studies = number(
        writing
            .query_opt(
                "UPDATE patient SET number_of_instances = number_of_instances - 1,
                    number_of_series = number_of_series - $2,
                    number_of_studies = number_of_studies - $3 WHERE id = $1
                 RETURNING number_of_studies",
                &[
                    Param::Integer(patient_id),
                    Param::Integer(i64::from(series_gone)),
                    Param::Integer(i64::from(study_gone)),
                ],
            )
            .await?,
    )?;
    if patient_studies <= 0 {
        writing
            .execute("DELETE FROM patient WHERE id = $1", &id_param(patient_id))
            .await?;
    }
    Ok(path)
}

async fn delete(
    writing: &mut Writing<'_>,
    target: &DeleteTarget,
) -> Result<Deleted, OperationError> {
    let (condition, uid) = match target {
        DeleteTarget::Study(uid) => ("st.study_instance_uid = $1", uid),
        DeleteTarget::Series(uid) => ("se.series_instance_uid = $1", uid),
        DeleteTarget::Instance(uid) => ("i.sop_instance_uid = $1", uid),
    };
    let ids = writing
        .query(
            &format!(
                "SELECT i.id FROM instance i JOIN series se ON se.id = i.series
                 JOIN study st ON st.id = se.study WHERE {condition} ORDER BY i.id"
            ),
            &[Param::Text(uid.clone())],
        )
        .await?;
    let mut deleted = Deleted::default();
    for row in ids {
        let path = remove_instance(writing, row.try_get(0)?).await?;
        pending_removal(writing, &path).await?;
        deleted.files.push(PathBuf::from(path));
        deleted.instances += 1;
    }
    Ok(deleted)
}

// ------------------------------------------------------------------------------------------
// Reading (the SQL and the matching are shared with the other backends: super::sql)
// ------------------------------------------------------------------------------------------

/// Starts a READ ONLY transaction on `client`.
async fn read_only(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// Whether the entity `id` of a candidate has a descendant that passes the keys below the
/// plan's level (always, for a hierarchical query); `statement` is the descendants' query,
/// prepared on first use.
async fn descendant_passes(
    transaction: &tokio_postgres::Transaction<'_>,
    run: &mut QueryRun<'_>,
    statement: &mut Option<Statement>,
    id: i64,
) -> Result<bool, IndexError> {
    let Some(sql) = run.descendant_rows(id) else {
        return Ok(true);
    };
    let prepared = match statement {
        Some(prepared) => prepared.clone(),
        None => statement
            .insert(transaction.prepare(&sql.text).await?)
            .clone(),
    };
    let rows = transaction.query_raw(&prepared, bound(&sql.params)).await?;
    futures_util::pin_mut!(rows);
    // Read until one passes (dropping the rest).
    while let Some(row) = rows.try_next().await? {
        if run.descendant_passes(&row)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs a query from a portal of a READ ONLY transaction, sending each response.
async fn run_query(
    client: &mut deadpool_postgres::Client,
    plan: &QueryPlan,
    limit: Option<usize>,
    limits: &ScanLimits,
    send: &mpsc::Sender<Result<InMemDicomObject, IndexError>>,
) -> Result<(), IndexError> {
    let (mut run, sql) = QueryRun::new(Dialect::Postgres, plan, limit, limits);
    debug!("index query: {}", sql.text);
    let transaction = read_only(client).await?;
    let statement = transaction.prepare(&sql.text).await?;
    let portal = transaction.bind(&statement, &bound(&sql.params)).await?;
    let mut descendants = None;
    loop {
        let rows = transaction.query_portal(&portal, PORTAL_ROWS).await?;
        for row in &rows {
            let Some(chain) = run.candidate(row)? else {
                continue;
            };
            if !descendant_passes(&transaction, &mut run, &mut descendants, chain.0).await? {
                continue;
            }
            let answer = run.answer(&chain);
            let last = answer.is_err();
            if send.send(answer).await.is_err() || last {
                return Ok(());
            }
        }
        if rows.len() < PORTAL_ROWS as usize {
            return Ok(());
        }
    }
}

/// The instances a retrieval sends: those under every entity that matches, each entity's in
/// the order they were indexed.
async fn retrieval_instances(
    client: &mut deadpool_postgres::Client,
    plan: &QueryPlan,
    limits: &ScanLimits,
) -> Result<Vec<IndexedInstance>, IndexError> {
    let transaction = read_only(client).await?;
    let mut entities = Vec::new();
    {
        let (mut run, sql) = QueryRun::new(Dialect::Postgres, plan, None, limits);
        let statement = transaction.prepare(&sql.text).await?;
        let portal = transaction.bind(&statement, &bound(&sql.params)).await?;
        let mut descendants = None;
        loop {
            let rows = transaction.query_portal(&portal, PORTAL_ROWS).await?;
            for row in &rows {
                if let Some((id, _)) = run.candidate(row)?
                    && descendant_passes(&transaction, &mut run, &mut descendants, id).await?
                {
                    entities.push(id);
                }
            }
            if rows.len() < PORTAL_ROWS as usize {
                break;
            }
        }
    }
    let statement = transaction
        .prepare_cached(&retrieval_sql(Dialect::Postgres, plan.level()))
        .await?;
    let mut instances = Vec::new();
    for chunk in entities.chunks(RETRIEVAL_PIPELINE) {
        // Pipelined: every entity's query is sent before the first answer is read.
        let answers = futures_util::future::try_join_all(chunk.iter().map(|id| {
            let (transaction, statement) = (&transaction, &statement);
            async move { transaction.query(statement, &[id]).await }
        }))
        .await?;
        for row in answers.iter().flatten() {
            instances.push(indexed_instance(row)?);
        }
    }
    Ok(instances)
}

/// Reads the instances of `entity` with their records from a portal, sending each.
async fn read_instance_records(
    client: &mut deadpool_postgres::Client,
    entity: &EntityUids,
    limits: &ScanLimits,
    send: &mpsc::Sender<Result<InstanceRecord, IndexError>>,
) -> Result<(), IndexError> {
    let sql = instance_records_sql(Dialect::Postgres, entity);
    let transaction = read_only(client).await?;
    let statement = transaction.prepare_cached(&sql.text).await?;
    let portal = transaction.bind(&statement, &bound(&sql.params)).await?;
    loop {
        let rows = transaction.query_portal(&portal, PORTAL_ROWS).await?;
        for row in &rows {
            let record = instance_record(row, limits);
            let failed = record.is_err();
            if send.send(record).await.is_err() || failed {
                return Ok(());
            }
        }
        if rows.len() < PORTAL_ROWS as usize {
            return Ok(());
        }
    }
}

impl Index for PostgresIndex {
    fn hand_over(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'static, Result<Inserted, IndexError>> {
        self.inner.writer.hand_over(instance, on_duplicate)
    }

    fn query(
        &self,
        plan: QueryPlan,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<ResponseStream, IndexError>> {
        let limits = self.inner.config.limits;
        let plan = Arc::new(plan);
        Box::pin(async move {
            let stream = self
                .stream_read(MATCHES_AHEAD, move |client, send| {
                    let (plan, limits) = (plan.clone(), limits);
                    Box::pin(async move { run_query(client, &plan, limit, &limits, send).await })
                })
                .await?;
            Ok(Box::pin(stream) as ResponseStream)
        })
    }

    fn instances(
        &self,
        plan: QueryPlan,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>> {
        let limits = self.inner.config.limits;
        let plan = Arc::new(plan);
        Box::pin(async move {
            self.read(|client| {
                let (plan, limits) = (plan.clone(), limits);
                Box::pin(async move { retrieval_instances(client, &plan, &limits).await })
            })
            .await
        })
    }

    fn instance_records(
        &self,
        entity: EntityUids,
    ) -> BoxFuture<'_, Result<RecordStream, IndexError>> {
        let limits = self.inner.config.limits;
        let entity = Arc::new(entity);
        Box::pin(async move {
            let stream = self
                .stream_read(RECORDS_AHEAD, move |client, send| {
                    let (entity, limits) = (entity.clone(), limits);
                    Box::pin(
                        async move { read_instance_records(client, &entity, &limits, send).await },
                    )
                })
                .await?;
            Ok(Box::pin(stream) as RecordStream)
        })
    }

    fn lookup(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>> {
        Box::pin(async move {
            self.inner.writer.settle().await;
            self.lookup_committed(sop_instance_uid).await
        })
    }

    fn lookup_committed(
        &self,
        sop_instance_uid: String,
    ) -> BoxFuture<'_, Result<Option<IndexedInstance>, IndexError>> {
        Box::pin(async move {
            self.read_committed(|client| {
                let uid = sop_instance_uid.clone();
                Box::pin(async move {
                    let statement = client
                        .prepare_cached(&format!(
                            "SELECT {INSTANCE_COLUMNS} {INSTANCE_JOINS} WHERE i.sop_instance_uid = $1"
                        ))
                        .await?;
                    client
                        .query_opt(&statement, &[&uid])
                        .await?
                        .map(|row| indexed_instance(&row))
                        .transpose()
                })
            })
            .await
        })
    }

    fn delete(&self, target: DeleteTarget) -> BoxFuture<'_, Result<Deleted, IndexError>> {
        Box::pin(self.inner.writer.delete(target))
    }

    fn files_removed(&self, files: Vec<PathBuf>) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(self.inner.writer.files_removed(files))
    }

    fn counts(&self) -> BoxFuture<'_, Result<IndexCounts, IndexError>> {
        Box::pin(self.read(|client| {
            Box::pin(async move {
                let row = client
                    .query_one(
                        "SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study),
                            (SELECT count(*) FROM series), (SELECT count(*) FROM instance)",
                        &[],
                    )
                    .await?;
                let count = |n: usize| -> Result<usize, IndexError> {
                    Ok(usize::try_from(row.integer(n)?).unwrap_or(0))
                };
                Ok(IndexCounts {
                    patients: count(0)?,
                    studies: count(1)?,
                    series: count(2)?,
                    instances: count(3)?,
                    skipped_files: 0,
                })
            })
        }))
    }

    fn instances_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<IndexedInstance>, IndexError>> {
        let after = after.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            self.read(|client| {
                let after = after.clone();
                Box::pin(async move {
                    let statement = client
                        .prepare_cached(&instances_after_sql(Dialect::Postgres))
                        .await?;
                    client
                        .query(&statement, &[&after, &limit])
                        .await?
                        .iter()
                        .map(indexed_instance)
                        .collect()
                })
            })
            .await
        })
    }

    fn begin_session(&self) -> BoxFuture<'_, Result<SessionStart, IndexError>> {
        Box::pin(self.inner.writer.begin_session())
    }

    fn mark_clean(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(self.inner.writer.mark_clean())
    }

    fn close(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(PostgresIndex::close(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_change_their_database() {
        assert_eq!(
            without_password("postgres://dimsum:secret@db:5432/pacs?sslmode=disable"),
            "postgres://dimsum:***@db:5432/pacs?sslmode=disable"
        );
        assert_eq!(
            without_password("postgres://dimsum@db/pacs"),
            "postgres://dimsum@db/pacs"
        );
        assert_eq!(
            database_url("postgres://u@127.0.0.1:5/postgres", "t_1"),
            "postgres://u@127.0.0.1:5/t_1"
        );
        assert_eq!(
            database_url("postgres://u@h:5?connect_timeout=3", "x"),
            "postgres://u@h:5/x?connect_timeout=3"
        );
    }
}
