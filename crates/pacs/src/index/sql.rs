//! The reading half of the index in SQL, shared by every backend (PS3.4 C.2.2.2 matching, as
//! narrowed by [`super::query`]): the candidate query of a plan (each level's id, record and
//! computed-key columns, joined up to the patient, `WHERE` narrowed), the relational
//! descendants' rows ([`super::relational`]), the instance queries of retrievals, look-ups and
//! records, and the matching run over the rows they return — written once, in the
//! [`Dialect`] of the database, and read through [`RowAccess`] whatever the driver.
//!
//! Only the fixed names of the schema are written into the SQL text; every value from a query
//! or a data set is a bound parameter ([`Param`]). The dialects differ in how they say it:
//!
//! * **SQLite**: `?` parameters; wild card patterns as `GLOB`, which is case-sensitive as
//!   C.2.2.2.4 is and for which `%` and `_` are plain characters (`[` is escaped); UID lists
//!   as one JSON array parameter read with `json_each`.
//! * **PostgreSQL**: `$n` parameters; patterns as `LIKE $n ESCAPE '\'` with `*` → `%`,
//!   `?` → `_` and a literal `%`, `_` or `\` escaped (case-sensitive; the text columns are
//!   `COLLATE "C"`, byte order as in SQLite, so ranges compare alike and btree indexes serve
//!   pattern prefixes); UID lists as `= ANY($n::text[])`. PostgreSQL text cannot hold NUL: a
//!   test on a value with one narrows nothing (the matching engine still decides).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::scan::ScanLimits;

use crate::hierarchy::{Level, QueryPlan};

use super::prepared::{EntityRow, PreparedInstance};
use super::query::ColumnKind;
use super::query::{ColumnValue, Computed, Constraint, Narrowing, Target, Test, put_computed};
use super::record;
use super::relational::Descendants;
use super::schema::{parent_column, table};
use super::{EntityUids, FileLocation, IndexError, IndexedInstance, InstanceRecord};

/// Decoded records kept per level during one query (parents shared by many rows).
const RECORDS_CACHED: usize = 1024;

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The text of bound parameter number `n` (from 1).
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// A statement written with numbered parameters (`$1`, `$2`…, as PostgreSQL takes them) in
    /// this dialect: SQLite numbers them `?1`, `?2`…
    pub(crate) fn numbered(self, text: &str) -> String {
        match self {
            Dialect::Sqlite => text.replace('$', "?"),
            Dialect::Postgres => text.to_owned(),
        }
    }

    fn boolean(self, value: bool) -> &'static str {
        match (self, value) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (Dialect::Postgres, true) => "TRUE",
            (Dialect::Postgres, false) => "FALSE",
        }
    }
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Real(f64),
    Integer(i64),
    /// A list of text (PostgreSQL `text[]`; SQLite gets a JSON array as text instead).
    TextList(Vec<String>),
    Bytes(Vec<u8>),
    Null,
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Param::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::Real(number) => ToSqlOutput::Owned(Value::Real(*number)),
            Param::Integer(number) => ToSqlOutput::Owned(Value::Integer(*number)),
            Param::TextList(list) => ToSqlOutput::Owned(Value::Text(
                serde_json::to_string(list).unwrap_or_else(|_| "[]".into()),
            )),
            Param::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            Param::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// SQL being built, in a dialect, with its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) dialect: Dialect,
    pub(crate) text: String,
    pub(crate) params: Vec<Param>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::new(),
            params: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(crate) fn bind(&mut self, value: Param) {
        self.params.push(value);
        let placeholder = self.dialect.placeholder(self.params.len());
        self.text.push_str(&placeholder);
    }

    /// Writes the dialect's `TRUE` or `FALSE`.
    fn push_boolean(&mut self, value: bool) {
        self.text.push_str(self.dialect.boolean(value));
    }
}

/// A GLOB pattern for a C.2.2.2.4 pattern: `*` and `?` stay, `[` is made literal.
fn glob(pattern: &str) -> String {
    pattern.replace('[', "[[]")
}

/// A `LIKE … ESCAPE '\'` pattern for a C.2.2.2.4 pattern: `*` → `%`, `?` → `_`, and `%`, `_`
/// and `\` made literal.
fn like(pattern: &str) -> String {
    let mut like = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '*' => like.push('%'),
            '?' => like.push('_'),
            '%' | '_' | '\\' => {
                like.push('\\');
                like.push(c);
            }
            other => like.push(other),
        }
    }
    like
}

fn column_value(value: &ColumnValue) -> Param {
    match value {
        ColumnValue::Text(text) => Param::Text(text.clone()),
        ColumnValue::Number(number) => Param::Real(*number),
    }
}

/// Whether the dialect cannot bind `test`'s values (PostgreSQL text holds no NUL): such a
/// test narrows nothing.
fn unbindable(dialect: Dialect, test: &Test) -> bool {
    let nul = |text: &str| text.contains('\0');
    dialect == Dialect::Postgres
        && match test {
            Test::Equal(ColumnValue::Text(text)) => nul(text),
            Test::Equal(ColumnValue::Number(_)) | Test::Never => false,
            Test::AnyOf(values) => values.iter().any(|v| nul(v)),
            Test::Pattern(pattern) => nul(pattern),
            Test::Range { lower, upper } => {
                lower.as_deref().is_some_and(nul) || upper.as_deref().is_some_and(nul)
            }
            Test::PersonName { value, .. } => nul(value),
        }
}

/// A pattern test on `column`: GLOB or LIKE, by dialect.
fn push_pattern(sql: &mut Sql, column: &str, pattern: &str) {
    match sql.dialect {
        Dialect::Sqlite => {
            sql.push(&format!("{column} GLOB "));
            sql.bind(Param::Text(glob(pattern)));
        }
        Dialect::Postgres => {
            sql.push(&format!("{column} LIKE "));
            sql.bind(Param::Text(like(pattern)));
            sql.push(" ESCAPE '\\'");
        }
    }
}

/// Writes one test on `column` (an SQL expression).
fn push_test(sql: &mut Sql, column: &str, test: &Test) {
    if unbindable(sql.dialect, test) {
        sql.push_boolean(true);
        return;
    }
    match test {
        Test::Equal(value) => {
            sql.push(&format!("{column} = "));
            sql.bind(column_value(value));
        }
        Test::AnyOf(values) => match sql.dialect {
            Dialect::Sqlite => {
                sql.push(&format!("{column} IN (SELECT value FROM json_each("));
                sql.bind(Param::TextList(values.clone()));
                sql.push("))");
            }
            Dialect::Postgres => {
                sql.push(&format!("{column} = ANY("));
                sql.bind(Param::TextList(values.clone()));
                sql.push("::text[])");
            }
        },
        Test::Pattern(pattern) => push_pattern(sql, column, pattern),
        Test::Range { lower, upper } => {
            sql.push("(");
            sql.push(&format!("{column} IS NOT NULL"));
            if let Some(lower) = lower {
                sql.push(&format!(" AND {column} >= "));
                sql.bind(Param::Text(lower.clone()));
            }
            if let Some(upper) = upper {
                sql.push(&format!(" AND {column} <= "));
                sql.bind(Param::Text(upper.clone()));
            }
            sql.push(")");
        }
        Test::PersonName {
            value,
            pattern,
            alphabetic_too,
        } => {
            let alphabetic = format!("{column}_alpha");
            let one = |sql: &mut Sql, column: &str| {
                if *pattern {
                    push_pattern(sql, column, value);
                } else {
                    sql.push(&format!("{column} = "));
                    sql.bind(Param::Text(value.clone()));
                }
            };
            sql.push("(");
            one(sql, column);
            if *alphabetic_too {
                sql.push(" OR ");
                one(sql, &alphabetic);
            }
            sql.push(")");
        }
        Test::Never => sql.push_boolean(false),
    }
}

/// Writes a constraint: any of its tests.
fn push_constraint(sql: &mut Sql, constraint: &Constraint) {
    let tests = |sql: &mut Sql, column: &str| {
        sql.push("(");
        for (n, test) in constraint.any_of.iter().enumerate() {
            if n > 0 {
                sql.push(" OR ");
            }
            push_test(sql, column, test);
        }
        if constraint.any_of.is_empty() {
            sql.push_boolean(true);
        }
        sql.push(")");
    };
    match constraint.target {
        Target::Column(column) => {
            let (_, alias) = table(column.level);
            tests(sql, &format!("{alias}.{}", column.name));
        }
        Target::SeriesModality => {
            sql.push(
                "EXISTS (SELECT 1 FROM series m WHERE m.study = st.id AND (m.irregular = 1 OR ",
            );
            tests(sql, "m.modality");
            sql.push("))");
        }
        Target::StudySopClass => {
            sql.push("EXISTS (SELECT 1 FROM study_sop_class c WHERE c.study = st.id AND ");
            tests(sql, "c.sop_class_uid");
            sql.push(")");
        }
    }
}

/// The columns each level's part of a candidate row has, after its id.
pub(crate) fn level_columns(level: Level) -> &'static [&'static str] {
    match level {
        Level::Patient => &[
            "attributes",
            "number_of_studies",
            "number_of_series",
            "number_of_instances",
        ],
        Level::Study => &[
            "attributes",
            "number_of_series",
            "number_of_instances",
            "modalities_in_study",
            "sop_classes_in_study",
        ],
        Level::Series => &["attributes", "number_of_instances"],
        Level::Image => &["attributes"],
    }
}

/// `FROM` the plan's level joined up to the patient, `WHERE` narrowed.
fn from_where(dialect: Dialect, level: Level, narrowing: &Narrowing) -> Sql {
    let mut sql = Sql::new(dialect);
    let (first, alias) = table(level);
    sql.push(&format!(" FROM {first} {alias}"));
    let mut below = level;
    for parent in Level::ALL.into_iter().rev().filter(|l| *l < level) {
        let (parent_table, parent_alias) = table(parent);
        let (_, child_alias) = table(below);
        let link = parent_column(below).unwrap_or("id");
        sql.push(&format!(
            " JOIN {parent_table} {parent_alias} ON {parent_alias}.id = {child_alias}.{link}"
        ));
        below = parent;
    }
    let mut first_condition = true;
    for at in Level::ALL.into_iter().filter(|l| *l <= level) {
        push_level_narrowing(&mut sql, at, narrowing, &mut first_condition);
    }
    sql
}

/// Writes the narrowing of level `at`, if it has constraints: ` WHERE (` (when
/// `first_condition`, which it clears) or ` AND (`, every constraint, or the entity irregular.
pub(crate) fn push_level_narrowing(
    sql: &mut Sql,
    at: Level,
    narrowing: &Narrowing,
    first_condition: &mut bool,
) {
    let constraints: Vec<&Constraint> = narrowing.at(at).collect();
    if constraints.is_empty() {
        return;
    }
    let (_, alias) = table(at);
    sql.push(if *first_condition {
        " WHERE ("
    } else {
        " AND ("
    });
    *first_condition = false;
    sql.push("(");
    for (n, constraint) in constraints.into_iter().enumerate() {
        if n > 0 {
            sql.push(" AND ");
        }
        push_constraint(sql, constraint);
    }
    sql.push(&format!(") OR {alias}.irregular = 1)"));
}

/// The candidate query of a plan: each level's id and record columns, patient first; for a
/// relational query, only entities with a descendant its narrowing lets through.
pub(crate) fn candidates_sql(
    dialect: Dialect,
    level: Level,
    narrowing: &Narrowing,
    descendants: Option<&Descendants>,
) -> Sql {
    let columns: Vec<String> = Level::ALL
        .into_iter()
        .filter(|l| *l <= level)
        .flat_map(|l| {
            let (_, alias) = table(l);
            std::iter::once(format!("{alias}.id"))
                .chain(level_columns(l).iter().map(move |c| format!("{alias}.{c}")))
        })
        .collect();
    let mut rest = from_where(dialect, level, narrowing);
    if let Some(descendants) = descendants {
        descendants.push_exists(&mut rest, !narrowing.constraints.is_empty());
    }
    Sql {
        dialect,
        text: format!("SELECT {}{}", columns.join(", "), rest.text),
        params: rest.params,
    }
}

/// The columns that identify an entity or an instance (a value the dialect cannot hold makes
/// the instance unindexable instead of irregular).
pub(crate) const IDENTITY_COLUMNS: [&str; 6] = [
    "patient_id",
    "issuer_of_patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "sop_class_uid",
];

/// The column names and values of an entity row to insert, in the order of its level's
/// columns, then `irregular` and `attributes`. PostgreSQL text cannot hold NUL: such a value
/// is left out and the entity marked irregular (an identifying value makes it unindexable).
pub(crate) fn entity_row_params(
    dialect: Dialect,
    row: &EntityRow,
    sop_instance_uid: &str,
) -> Result<(Vec<String>, Vec<Param>), IndexError> {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut irregular = row.irregular;
    let mut text = |name: &str, text: &str| -> Result<Param, IndexError> {
        if dialect == Dialect::Postgres && text.contains('\0') {
            if IDENTITY_COLUMNS.contains(&name) {
                return Err(IndexError::Unindexable {
                    sop_instance_uid: sop_instance_uid.to_owned(),
                    reason: format!("its {name} holds a NUL character"),
                });
            }
            irregular = true;
            return Ok(Param::Null);
        }
        Ok(Param::Text(text.to_owned()))
    };
    for (column, cell) in &row.cells {
        names.push(column.name.to_owned());
        let identity = matches!(column.name, "patient_id" | "issuer_of_patient_id");
        values.push(match &cell.value {
            Some(ColumnValue::Text(value)) => text(column.name, value)?,
            Some(ColumnValue::Number(number)) => Param::Real(*number),
            None if identity => Param::Text(String::new()),
            None => Param::Null,
        });
        if column.kind == ColumnKind::PersonName {
            let alphabetic = format!("{}_alpha", column.name);
            values.push(match &cell.alphabetic {
                Some(value) => text(&alphabetic, value)?,
                None => Param::Null,
            });
            names.push(alphabetic);
        }
    }
    names.push("irregular".into());
    values.push(Param::Integer(i64::from(irregular)));
    names.push("attributes".into());
    values.push(Param::Bytes(row.blob(sop_instance_uid)?));
    Ok((names, values))
}

/// The `INSERT` of an entity row ([`entity_row_params`]) with its extra columns (parent,
/// location…), and its column names in order: `INSERT INTO table (columns) VALUES (…)`, to
/// which a backend may add a conflict clause.
pub(crate) fn insert_row_sql(
    dialect: Dialect,
    level: Level,
    (row, sop_instance_uid): (&EntityRow, &str),
    extra: Vec<(&str, Param)>,
) -> Result<(Sql, Vec<String>), IndexError> {
    let (table, _) = table(level);
    let (mut names, mut params) = entity_row_params(dialect, row, sop_instance_uid)?;
    for (name, value) in extra {
        names.push(name.to_owned());
        params.push(value);
    }
    let placeholders: Vec<String> = (1..=names.len()).map(|n| dialect.placeholder(n)).collect();
    let text = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    );
    Ok((
        Sql {
            dialect,
            text,
            params,
        },
        names,
    ))
}

/// The columns of an instance row beside its attributes: its series row `series_id`, its
/// transfer syntax, and where its data set is (`path`, the file's path as text).
pub(crate) fn instance_location_columns(
    prepared: &PreparedInstance,
    series_id: i64,
    path: &str,
) -> Result<Vec<(&'static str, Param)>, IndexError> {
    let location = &prepared.location;
    Ok(vec![
        ("series", Param::Integer(series_id)),
        (
            "transfer_syntax_uid",
            Param::Text(prepared.transfer_syntax_uid.clone()),
        ),
        ("path", Param::Text(path.to_owned())),
        (
            "data_set_offset",
            Param::Integer(to_i64(location.data_set_offset)?),
        ),
        (
            "data_set_length",
            Param::Integer(to_i64(location.data_set_length)?),
        ),
        ("file_size", Param::Integer(to_i64(location.file_size)?)),
        ("file_modified_ns", Param::Integer(location.modified_ns)),
    ])
}

fn to_i64(value: u64) -> Result<i64, IndexError> {
    i64::try_from(value).map_err(|_| IndexError::Task(format!("{value} is too large to index")))
}

/// A row of a database's answer, read by column number (from 0) whatever the driver.
pub(crate) trait RowAccess {
    /// An integer column (of any width).
    fn integer(&self, n: usize) -> Result<i64, IndexError>;
    fn text(&self, n: usize) -> Result<String, IndexError>;
    fn bytes(&self, n: usize) -> Result<&[u8], IndexError>;
}

impl RowAccess for rusqlite::Row<'_> {
    fn integer(&self, n: usize) -> Result<i64, IndexError> {
        Ok(self.get(n)?)
    }

    fn text(&self, n: usize) -> Result<String, IndexError> {
        Ok(self.get(n)?)
    }

    fn bytes(&self, n: usize) -> Result<&[u8], IndexError> {
        Ok(self.get_ref(n)?.as_blob().map_err(rusqlite::Error::from)?)
    }
}

/// The id of an entity that matches, and its chain of records (patient first).
pub(crate) type MatchingChain = (i64, Vec<Arc<InMemDicomObject>>);

/// Decoded records of one query, by level and id.
pub(crate) struct RecordCache {
    levels: [HashMap<i64, Arc<InMemDicomObject>>; 4],
}

impl RecordCache {
    pub(crate) fn new() -> Self {
        Self {
            levels: Default::default(),
        }
    }

    /// The record of the entity of `level` whose columns start at `start` in `row` (its id
    /// first), with its computed keys.
    pub(crate) fn record(
        &mut self,
        level: Level,
        row: &impl RowAccess,
        start: usize,
        limits: &ScanLimits,
    ) -> Result<(i64, Arc<InMemDicomObject>), IndexError> {
        let id = row.integer(start)?;
        let cache = &mut self.levels[level.depth() - 1];
        if let Some(record) = cache.get(&id) {
            return Ok((id, record.clone()));
        }
        let mut record = record::decode(row.bytes(start + 1)?, limits).map_err(|reason| {
            IndexError::Corrupt {
                what: format!("{} {id}", table(level).0),
                reason,
            }
        })?;
        let count = |n: usize| -> Result<usize, IndexError> {
            Ok(usize::try_from(row.integer(start + n)?).unwrap_or(0))
        };
        let list = |n: usize| -> Result<Vec<String>, IndexError> {
            Ok(row
                .text(start + n)?
                .split('\\')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect())
        };
        let computed = match level {
            Level::Patient => Computed {
                patient_studies: count(2)?,
                patient_series: count(3)?,
                patient_instances: count(4)?,
                ..Computed::default()
            },
            Level::Study => Computed {
                study_series: count(2)?,
                study_instances: count(3)?,
                modalities_in_study: list(4)?,
                sop_classes_in_study: list(5)?,
                ..Computed::default()
            },
            Level::Series => Computed {
                series_instances: count(2)?,
                ..Computed::default()
            },
            Level::Image => Computed::default(),
        };
        put_computed(level, &mut record, &computed);
        let record = Arc::new(record);
        if cache.len() >= RECORDS_CACHED {
            cache.clear();
        }
        cache.insert(id, record.clone());
        Ok((id, record))
    }
}

/// One run of a query over its candidate rows, whatever the database: the backend runs
/// [`QueryRun::candidates`] (and for each candidate that passes [`QueryRun::candidate`] the
/// rows of [`QueryRun::descendant_rows`], each checked with [`QueryRun::descendant_passes`]),
/// and [`QueryRun::answer`]s the entities that pass.
pub(crate) struct QueryRun<'a> {
    plan: &'a QueryPlan,
    limits: &'a ScanLimits,
    limit: Option<usize>,
    descendants: Option<Descendants>,
    cache: RecordCache,
    sent: usize,
}

impl<'a> QueryRun<'a> {
    /// The run of `plan` (at most `limit` answers), and its candidate query.
    pub(crate) fn new(
        dialect: Dialect,
        plan: &'a QueryPlan,
        limit: Option<usize>,
        limits: &'a ScanLimits,
    ) -> (QueryRun<'a>, Sql) {
        let narrowing = Narrowing::of(plan);
        let descendants = Descendants::of(dialect, plan);
        let candidates = candidates_sql(dialect, plan.level(), &narrowing, descendants.as_ref());
        let run = QueryRun {
            plan,
            limits,
            limit,
            descendants,
            cache: RecordCache::new(),
            sent: 0,
        };
        (run, candidates)
    }

    /// The chain of a candidate row if every level passes the plan: (the id at the plan's
    /// level, the records patient first).
    pub(crate) fn candidate(
        &mut self,
        row: &impl RowAccess,
    ) -> Result<Option<MatchingChain>, IndexError> {
        let mut records = Vec::with_capacity(4);
        let mut start = 0;
        let mut id = 0;
        for level in Level::ALL.into_iter().filter(|l| *l <= self.plan.level()) {
            let (level_id, record) = self.cache.record(level, row, start, self.limits)?;
            if !self.plan.passes(level, &record) {
                return Ok(None);
            }
            id = level_id;
            records.push(record);
            start += 1 + level_columns(level).len();
        }
        Ok(Some((id, records)))
    }

    /// For a relational query, the rows of the descendants of entity `id` (one of which must
    /// pass [`QueryRun::descendant_passes`]); `None` for a hierarchical one.
    pub(crate) fn descendant_rows(&self, id: i64) -> Option<Sql> {
        self.descendants.as_ref().map(|d| d.rows_of(id))
    }

    /// Whether a row of [`QueryRun::descendant_rows`] passes every key below the plan's level.
    pub(crate) fn descendant_passes(&mut self, row: &impl RowAccess) -> Result<bool, IndexError> {
        match &self.descendants {
            Some(descendants) => {
                descendants.row_passes(self.plan, row, &mut self.cache, self.limits)
            }
            None => Ok(true),
        }
    }

    /// The response for a chain that passed, or, past the result limit, the error that ends
    /// the stream.
    pub(crate) fn answer(&mut self, chain: &MatchingChain) -> Result<InMemDicomObject, IndexError> {
        if let Some(limit) = self.limit
            && self.sent >= limit
        {
            return Err(IndexError::TooManyMatches { limit });
        }
        self.sent += 1;
        let records: Vec<&InMemDicomObject> = chain.1.iter().map(|r| r.as_ref()).collect();
        Ok(self.plan.response(&records))
    }
}

/// The columns of an [`IndexedInstance`] ([`indexed_instance`]), from [`INSTANCE_JOINS`].
pub(crate) const INSTANCE_COLUMNS: &str = "i.sop_class_uid, i.sop_instance_uid,
    i.transfer_syntax_uid, st.study_instance_uid, se.series_instance_uid, i.path,
    i.data_set_offset, i.data_set_length, i.file_size, i.file_modified_ns";
pub(crate) const INSTANCE_JOINS: &str =
    "FROM instance i JOIN series se ON se.id = i.series JOIN study st ON st.id = se.study";

/// The instance of a row of [`INSTANCE_COLUMNS`].
pub(crate) fn indexed_instance(row: &impl RowAccess) -> Result<IndexedInstance, IndexError> {
    let unsigned =
        |n: usize| -> Result<u64, IndexError> { Ok(u64::try_from(row.integer(n)?).unwrap_or(0)) };
    Ok(IndexedInstance {
        sop_class_uid: row.text(0)?,
        sop_instance_uid: row.text(1)?,
        transfer_syntax_uid: row.text(2)?,
        study_instance_uid: row.text(3)?,
        series_instance_uid: row.text(4)?,
        location: FileLocation {
            path: PathBuf::from(row.text(5)?),
            data_set_offset: unsigned(6)?,
            data_set_length: unsigned(7)?,
            file_size: unsigned(8)?,
            modified_ns: row.integer(9)?,
        },
    })
}

/// The instances under entity `$1` at `level` (a patient's through its studies), by the
/// column that holds its id, in the order they were indexed.
pub(crate) fn retrieval_sql(dialect: Dialect, level: Level) -> String {
    let entity_id = match level {
        Level::Patient => "st.patient",
        Level::Study => "st.id",
        Level::Series => "se.id",
        Level::Image => "i.id",
    };
    format!(
        "SELECT {INSTANCE_COLUMNS} {INSTANCE_JOINS} WHERE {entity_id} = {} ORDER BY i.id",
        dialect.placeholder(1)
    )
}

/// Up to `$2` instances whose SOP Instance UID sorts after `$1`, in that order.
pub(crate) fn instances_after_sql(dialect: Dialect) -> String {
    format!(
        "SELECT {INSTANCE_COLUMNS} {INSTANCE_JOINS}
         WHERE i.sop_instance_uid > {} ORDER BY i.sop_instance_uid LIMIT {}",
        dialect.placeholder(1),
        dialect.placeholder(2)
    )
}

/// The instances of `entity` with their records (column 10), in the order of
/// [`super::Index::instance_records`].
pub(crate) fn instance_records_sql(dialect: Dialect, entity: &EntityUids) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(&format!(
        "SELECT {INSTANCE_COLUMNS}, i.attributes {INSTANCE_JOINS} WHERE st.study_instance_uid = "
    ));
    sql.bind(Param::Text(entity.study.clone()));
    if let Some(series) = &entity.series {
        sql.push(" AND se.series_instance_uid = ");
        sql.bind(Param::Text(series.clone()));
        if let Some(instance) = &entity.instance {
            sql.push(" AND i.sop_instance_uid = ");
            sql.bind(Param::Text(instance.clone()));
        }
    }
    sql.push(
        " ORDER BY se.series_number IS NULL, se.series_number, se.id,
             i.instance_number IS NULL, i.instance_number, i.id",
    );
    sql
}

/// The record of a row of [`instance_records_sql`].
pub(crate) fn instance_record(
    row: &impl RowAccess,
    limits: &ScanLimits,
) -> Result<InstanceRecord, IndexError> {
    let instance = indexed_instance(row)?;
    let (attributes, bulk_data) =
        record::decode_with_bulk_data(row.bytes(10)?, limits).map_err(|reason| {
            IndexError::Corrupt {
                what: format!("the record of instance {}", instance.sop_instance_uid),
                reason,
            }
        })?;
    Ok(InstanceRecord {
        instance,
        attributes,
        bulk_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_keep_only_the_dicom_wild_cards() {
        assert_eq!(like("A%1_*"), "A\\%1\\_%");
        assert_eq!(like("R?E\\x*"), "R_E\\\\x%");
        assert_eq!(like("[US]*"), "[US]%");
        assert_eq!(glob("[US]*"), "[[]US]*");
    }

    #[test]
    fn numbered_parameters_keep_their_numbers_in_either_dialect() {
        let text = "UPDATE t SET a = a + $2 WHERE id = $1";
        assert_eq!(Dialect::Postgres.numbered(text), text);
        assert_eq!(
            Dialect::Sqlite.numbered(text),
            "UPDATE t SET a = a + ?2 WHERE id = ?1"
        );
    }

    #[test]
    fn postgres_parameters_are_numbered_and_nul_values_narrow_nothing() {
        let mut sql = Sql::new(Dialect::Postgres);
        push_test(&mut sql, "x", &Test::Pattern("a*".into()));
        sql.push(" AND ");
        push_test(&mut sql, "y", &Test::AnyOf(vec!["1".into(), "2".into()]));
        sql.push(" AND ");
        push_test(
            &mut sql,
            "z",
            &Test::Equal(ColumnValue::Text("a\0b".into())),
        );
        assert_eq!(
            sql.text,
            "x LIKE $1 ESCAPE '\\' AND y = ANY($2::text[]) AND TRUE"
        );
        assert_eq!(
            sql.params,
            [
                Param::Text("a%".into()),
                Param::TextList(vec!["1".into(), "2".into()])
            ]
        );
    }
}
