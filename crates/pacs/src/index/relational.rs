//! Relational queries against the index (PS3.4 C.4.1.2.2.2, C.4.1.3.2), when the peer
//! negotiated them (C-FIND extended negotiation byte 1, PS3.4 C.5.1.1).
//!
//! A relational query at level L may carry keys of the levels below L. An entity at L matches
//! when its own chain (the entity and its parents) passes the keys of L and above, as in a
//! hierarchical query, and when at least one of its descendants at the deepest level with keys
//! ([`QueryPlan::deepest_relational_level`]) passes, with its parents down from L, the keys of
//! every level below L. The index does this in two steps, as for the levels above:
//!
//! * the candidate query gets `EXISTS (…)` over the lower tables joined down to that level,
//!   narrowed by the same [`Constraint`]s a hierarchical query uses for its own levels (a
//!   descendant that is irregular at a level passes that level's narrowing), so that entities
//!   with no possible descendant are never read;
//! * each candidate that passes its own chain is then checked descendant by descendant: the
//!   descendants' rows (narrowed the same way) are read and their records checked with
//!   [`QueryPlan::passes`] until one chain passes.
//!
//! Keys of levels that the information model does not have (a series key in a Patient/Study
//! Only query) are not matched.

use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::query_model::QueryModel;
use dimsum_dataset::scan::ScanLimits;

use crate::hierarchy::{Level, QueryPlan};

use super::IndexError;
use super::query::Narrowing;
use super::schema::{parent_column, table};
use super::sql::{
    Dialect, Param, RecordCache, RowAccess, Sql, level_columns, push_level_narrowing,
};

/// The descendant side of a relational query: which levels below the plan's are searched and
/// how they are narrowed.
pub(crate) struct Descendants {
    /// The plan's level.
    level: Level,
    /// The levels below it, down to the deepest with keys, top down.
    levels: Vec<Level>,
    /// The constraints of those levels.
    narrowing: Narrowing,
    /// The rows of one entity's descendants: each level's id and record columns, top down;
    /// its first parameter is the entity's id.
    rows: Sql,
}

impl Descendants {
    /// The descendant search of `plan`; `None` for a hierarchical query, or a relational one
    /// with no keys below its level that its model has.
    pub(crate) fn of(dialect: Dialect, plan: &QueryPlan) -> Option<Descendants> {
        let level = plan.level();
        let deepest = descendant_level(plan)?;
        let levels: Vec<Level> = Level::ALL
            .into_iter()
            .filter(|l| *l > level && *l <= deepest)
            .collect();
        let narrowing = lower_narrowing(plan, level, deepest);
        let rows = rows_sql(dialect, &levels, &narrowing);
        Some(Descendants {
            level,
            levels,
            narrowing,
            rows,
        })
    }

    /// Appends to a candidate query (whose `WHERE` clause exists when `has_where`) the
    /// condition that its entity has a descendant the narrowing lets through.
    pub(crate) fn push_exists(&self, sql: &mut Sql, has_where: bool) {
        sql.push(if has_where { " AND " } else { " WHERE " });
        sql.push("EXISTS (SELECT 1");
        push_from(sql, &self.levels);
        let (_, parent_alias) = table(self.level);
        push_conditions(
            sql,
            &self.levels,
            &self.narrowing,
            Parent::Column(format!("{parent_alias}.id")),
        );
        sql.push(")");
    }

    /// The query for the descendant rows of the entity `id` at the plan's level: each
    /// level's id and record columns, top down.
    pub(crate) fn rows_of(&self, id: i64) -> Sql {
        let mut rows = self.rows.clone();
        // The entity's id is the first parameter (the link to it comes first in the text).
        if let Some(first) = rows.params.first_mut() {
            *first = Param::Integer(id);
        }
        rows
    }

    /// Whether a row of [`Descendants::rows_of`] has a chain below the plan's level that
    /// passes every key of those levels.
    pub(crate) fn row_passes(
        &self,
        plan: &QueryPlan,
        row: &impl RowAccess,
        cache: &mut RecordCache,
        limits: &ScanLimits,
    ) -> Result<bool, IndexError> {
        let mut start = 0;
        for level in &self.levels {
            let (_, record) = cache.record(*level, row, start, limits)?;
            if !plan.passes(*level, &record) {
                return Ok(false);
            }
            start += 1 + level_columns(*level).len();
        }
        Ok(true)
    }
}

/// The level down to which a relational query searches descendants (PS3.4 C.4.1.3.2): the
/// deepest below the plan's with keys that its information model has; `None` for a
/// hierarchical query or when there is none. Shared by every archive.
pub(crate) fn descendant_level(plan: &QueryPlan) -> Option<Level> {
    let model_deepest = plan
        .model()
        .levels()
        .last()
        .and_then(|name| Level::parse(name))?;
    let deepest = plan.deepest_relational_level()?.min(model_deepest);
    (deepest > plan.level()).then_some(deepest)
}

/// The constraints of the levels below `level` down to `deepest`: those the same keys give a
/// query at `deepest` (whose own and upper levels are all narrowed), of the lower levels only.
fn lower_narrowing(plan: &QueryPlan, level: Level, deepest: Level) -> Narrowing {
    let mut keys = plan.identifier().clone();
    keys.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        deepest.name(),
    ));
    // Patient Root has every level: the plan is only made to narrow, never to answer.
    let Ok(deepest_plan) = QueryPlan::new(QueryModel::PatientRoot, plan.service(), keys) else {
        return Narrowing::default();
    };
    let mut narrowing = Narrowing::of(&deepest_plan.with_options(plan.options()));
    narrowing.constraints.retain(|c| c.level > level);
    narrowing
}

/// `FROM` the deepest of `levels` joined up to the first.
fn push_from(sql: &mut Sql, levels: &[Level]) {
    let mut below: Option<Level> = None;
    for level in levels.iter().rev() {
        let (name, alias) = table(*level);
        match below {
            None => sql.push(&format!(" FROM {name} {alias}")),
            Some(child) => {
                let (_, child_alias) = table(child);
                let link = parent_column(child).unwrap_or("id");
                sql.push(&format!(
                    " JOIN {name} {alias} ON {alias}.id = {child_alias}.{link}"
                ));
            }
        }
        below = Some(*level);
    }
}

/// What the first of the descendant levels links to.
enum Parent {
    /// A column of the candidate query.
    Column(String),
    /// The first parameter, the entity's id.
    Bound,
}

/// The link from the first of `levels` to `parent` and each level's narrowing, as a `WHERE`
/// clause.
fn push_conditions(sql: &mut Sql, levels: &[Level], narrowing: &Narrowing, parent: Parent) {
    let Some(first) = levels.first() else {
        return;
    };
    let (_, alias) = table(*first);
    let link = parent_column(*first).unwrap_or("id");
    sql.push(&format!(" WHERE {alias}.{link} = "));
    match parent {
        Parent::Column(column) => sql.push(&column),
        Parent::Bound => sql.bind(Param::Integer(0)),
    }
    let mut first_condition = false;
    for level in levels {
        push_level_narrowing(sql, *level, narrowing, &mut first_condition);
    }
}

/// The query for one entity's descendant rows: each level's id and record columns, top down;
/// its first parameter is the entity's id.
fn rows_sql(dialect: Dialect, levels: &[Level], narrowing: &Narrowing) -> Sql {
    let columns: Vec<String> = levels
        .iter()
        .flat_map(|l| {
            let (_, alias) = table(*l);
            std::iter::once(format!("{alias}.id")).chain(
                level_columns(*l)
                    .iter()
                    .map(move |c| format!("{alias}.{c}")),
            )
        })
        .collect();
    let mut sql = Sql::new(dialect);
    sql.push(&format!("SELECT {}", columns.join(", ")));
    push_from(&mut sql, levels);
    push_conditions(&mut sql, levels, narrowing, Parent::Bound);
    sql
}
