//! The query engine's database side (PS3.4 C.2.2.2): which keys have typed columns, what those
//! columns hold, and how the keys of a [`QueryPlan`] narrow the candidates — as constraints in
//! no SQL dialect, which each backend writes in its own with bound parameters only.
//!
//! Narrowing never decides a match: every candidate that passes it is checked key by key by
//! the matching engine ([`QueryPlan::passes`]) on its stored attributes. So a narrowing may let
//! through more than matches, never less, and it is built to be exactly that:
//!
//! * a column holds the value the engine compares (trimmed as PS3.5 §6.2 says for the VR; PN
//!   without empty trailing components and in lower case, with its alphabetic group apart; DA,
//!   TM and DT as the sortable point the range rules compare; IS as a number);
//! * an entity whose value a column cannot hold faithfully (several values, a VR other than the
//!   dictionary's, a date that is no date) is marked *irregular* and passes every narrowing of
//!   its level;
//! * a key is narrowed only when its VR is the column's (the engine applies the key's VR);
//! * single values and UID lists become equality or set membership, wild cards `*` and `?`
//!   a pattern in which every other character is literal (`%`, `_` and `[` included), DA/TM/DT
//!   keys a range between the normalized ends (open ends left open), PN keys compare in lower
//!   case (the engine then applies the case rule the archive is configured with);
//! * under fuzzy matching of person names (`MatchOptions::fuzzy_person_names`), PN keys do not
//!   narrow: the columns hold names unfolded, and a fuzzy key may match any of their words;
//! * a key the columns cannot express (a pattern longer than [`MAX_PATTERN`], a number that is
//!   no number) is left to the engine alone.

use dimsum_dataset::dicom_core::header::Header;
use dimsum_dataset::dicom_core::value::Value;
use dimsum_dataset::dicom_core::{Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::{InMemDicomObject, mem::InMemElement};

use crate::hierarchy::{Level, QueryPlan};
use crate::matching;

/// Longer wild card patterns are not narrowed (SQLite refuses patterns over 50,000 bytes, and
/// no real key is that long); the engine still matches them.
pub const MAX_PATTERN: usize = 4096;

/// What a typed column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text compared exactly or by pattern: the value trimmed for its VR.
    Text,
    /// PN: normalized, lower case; a second column `<name>_alpha` holds the alphabetic group
    /// when the name has component groups.
    PersonName,
    /// DA, TM or DT: the normalized point of the range rules.
    DateTime,
    /// IS (or DS): the number.
    Number,
}

/// A typed column: the attribute it holds, at which level, under which name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub level: Level,
    pub tag: Tag,
    /// The attribute's VR in the dictionary (PS3.6).
    pub vr: VR,
    /// The column's name in every backend's schema.
    pub name: &'static str,
    pub kind: ColumnKind,
}

const fn column(level: Level, tag: Tag, vr: VR, name: &'static str, kind: ColumnKind) -> Column {
    Column {
        level,
        tag,
        vr,
        name,
        kind,
    }
}

use ColumnKind::{DateTime, Number, PersonName, Text};

/// The keys people search on (PS3.4 Tables C.6-1 to C.6-4, the required and unique keys and
/// the usual optional ones), with a column each.
pub const COLUMNS: &[Column] = &[
    column(Level::Patient, tags::PATIENT_ID, VR::LO, "patient_id", Text),
    column(
        Level::Patient,
        tags::ISSUER_OF_PATIENT_ID,
        VR::LO,
        "issuer_of_patient_id",
        Text,
    ),
    column(
        Level::Patient,
        tags::PATIENT_NAME,
        VR::PN,
        "patient_name",
        PersonName,
    ),
    column(
        Level::Patient,
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        "patient_birth_date",
        DateTime,
    ),
    column(
        Level::Patient,
        tags::PATIENT_SEX,
        VR::CS,
        "patient_sex",
        Text,
    ),
    column(
        Level::Study,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        "study_instance_uid",
        Text,
    ),
    column(
        Level::Study,
        tags::STUDY_DATE,
        VR::DA,
        "study_date",
        DateTime,
    ),
    column(
        Level::Study,
        tags::STUDY_TIME,
        VR::TM,
        "study_time",
        DateTime,
    ),
    column(
        Level::Study,
        tags::ACCESSION_NUMBER,
        VR::SH,
        "accession_number",
        Text,
    ),
    column(Level::Study, tags::STUDY_ID, VR::SH, "study_id", Text),
    column(
        Level::Study,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        "study_description",
        Text,
    ),
    column(
        Level::Study,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        "referring_physician_name",
        PersonName,
    ),
    column(
        Level::Series,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        "series_instance_uid",
        Text,
    ),
    column(Level::Series, tags::MODALITY, VR::CS, "modality", Text),
    column(
        Level::Series,
        tags::SERIES_NUMBER,
        VR::IS,
        "series_number",
        Number,
    ),
    column(
        Level::Series,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "series_description",
        Text,
    ),
    column(
        Level::Series,
        tags::SERIES_DATE,
        VR::DA,
        "series_date",
        DateTime,
    ),
    column(
        Level::Image,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        "sop_instance_uid",
        Text,
    ),
    column(
        Level::Image,
        tags::SOP_CLASS_UID,
        VR::UI,
        "sop_class_uid",
        Text,
    ),
    column(
        Level::Image,
        tags::INSTANCE_NUMBER,
        VR::IS,
        "instance_number",
        Number,
    ),
];

/// The typed columns of a level.
pub fn columns_at(level: Level) -> impl Iterator<Item = &'static Column> {
    COLUMNS.iter().filter(move |column| column.level == level)
}

/// A value as a column holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    Text(String),
    Number(f64),
}

/// What a record gives a column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cell {
    /// `None`: no value (the attribute is missing or empty, or the entity is irregular for it).
    pub value: Option<ColumnValue>,
    /// For PN: the alphabetic group, when the name has component groups.
    pub alphabetic: Option<String>,
    /// The column cannot hold the value faithfully: the entity must pass every narrowing.
    pub irregular: bool,
}

/// The cell of `column` for an entity whose record has `element`.
pub fn cell(column: &Column, element: Option<&InMemElement>) -> Cell {
    let Some(element) = element else {
        return Cell::default();
    };
    let irregular = Cell {
        irregular: true,
        ..Cell::default()
    };
    let Value::Primitive(value) = element.value() else {
        return irregular;
    };
    if element.vr() != column.vr {
        return irregular;
    }
    let values: Vec<_> = matching::values(column.vr, value)
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    let one = match values.as_slice() {
        [] => return Cell::default(),
        [one] => one.as_ref(),
        several => {
            // Kept as text for what is derived from it (Modalities In Study), not narrowed.
            return Cell {
                value: (column.kind == Text).then(|| {
                    ColumnValue::Text(
                        several
                            .iter()
                            .map(AsRef::as_ref)
                            .collect::<Vec<&str>>()
                            .join("\\"),
                    )
                }),
                ..irregular
            };
        }
    };
    match column.kind {
        Text => Cell {
            value: Some(ColumnValue::Text(one.to_owned())),
            ..Cell::default()
        },
        PersonName => Cell {
            value: Some(ColumnValue::Text(person_name(one))),
            alphabetic: one
                .contains('=')
                .then(|| person_name(one.split('=').next().unwrap_or_default())),
            irregular: false,
        },
        DateTime => match matching::range_point(column.vr, one) {
            Some(point) => Cell {
                value: Some(ColumnValue::Text(point)),
                ..Cell::default()
            },
            None => irregular,
        },
        Number => match one.trim().parse::<f64>() {
            Ok(number) if number.is_finite() => Cell {
                value: Some(ColumnValue::Number(number)),
                ..Cell::default()
            },
            _ => irregular,
        },
    }
}

/// A PN value as the columns hold it: normalized, lower case.
fn person_name(value: &str) -> String {
    matching::normalize_person_name(value).to_lowercase()
}

/// What a constraint's values are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A typed column of the entity at the constraint's level.
    Column(&'static Column),
    /// Modalities In Study (0008,0061): the study has a series whose Modality column passes.
    SeriesModality,
    /// SOP Classes In Study (0008,0062): the study has an instance of a SOP class that passes.
    StudySopClass,
}

/// One way a value passes a constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Equal to this value.
    Equal(ColumnValue),
    /// Equal to one of these (a list of UIDs, or several values of another VR).
    AnyOf(Vec<String>),
    /// Matches this pattern: `*` any run of characters, `?` one character, every other
    /// character literal.
    Pattern(String),
    /// Within this range of normalized points, ends included; `None` is an open end.
    Range {
        lower: Option<String>,
        upper: Option<String>,
    },
    /// A PN value: the name column, or (`alphabetic_too`) its alphabetic group column, equals
    /// the value or (`pattern`) matches it as a pattern.
    PersonName {
        value: String,
        pattern: bool,
        alphabetic_too: bool,
    },
    /// Nothing passes (a malformed date range matches nothing).
    Never,
}

/// A constraint on the entities of one level: passes when any of its tests does.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub level: Level,
    pub target: Target,
    pub any_of: Vec<Test>,
}

/// The constraints that narrow a plan's candidates, level by level; an entity that is
/// irregular at a level passes all of that level's constraints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Narrowing {
    pub constraints: Vec<Constraint>,
}

impl Narrowing {
    /// The narrowing for the keys of `plan`, at its level and the levels above.
    pub fn of(plan: &QueryPlan) -> Narrowing {
        let case_sensitive = !plan.options().case_insensitive_person_names;
        let fuzzy_names = plan.options().fuzzy_person_names;
        let constraints = Level::ALL
            .into_iter()
            .filter(|level| *level <= plan.level())
            .flat_map(|level| plan.narrowing_keys(level))
            .filter(|key| !(fuzzy_names && key.vr() == VR::PN))
            .filter_map(|key| constraint(key, case_sensitive))
            .collect();
        Narrowing { constraints }
    }

    /// The constraints at `level`.
    pub fn at(&self, level: Level) -> impl Iterator<Item = &Constraint> {
        self.constraints.iter().filter(move |c| c.level == level)
    }
}

/// The constraint of one (non-universal) key, if its column can express it.
fn constraint(key: &InMemElement, case_sensitive: bool) -> Option<Constraint> {
    let tag = key.tag();
    let (level, target, column) = if tag == tags::MODALITIES_IN_STUDY {
        let modality = COLUMNS.iter().find(|c| c.tag == tags::MODALITY)?;
        (Level::Study, Target::SeriesModality, modality)
    } else if tag == tags::SOP_CLASSES_IN_STUDY {
        let sop_class = COLUMNS.iter().find(|c| c.tag == tags::SOP_CLASS_UID)?;
        (Level::Study, Target::StudySopClass, sop_class)
    } else {
        let column = COLUMNS.iter().find(|c| c.tag == tag)?;
        (column.level, Target::Column(column), column)
    };
    if key.vr() != column.vr {
        return None;
    }
    let Value::Primitive(value) = key.value() else {
        return None;
    };
    let values: Vec<String> = matching::values(column.vr, value)
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|v| v.into_owned())
        .collect();
    if values.is_empty() {
        return None;
    }
    let wild_cards = matching::allows_wild_cards(column.vr);
    let mut any_of = Vec::new();
    let mut equal = Vec::new();
    for value in values {
        let pattern = wild_cards && matching::has_wild_cards(&value);
        if pattern && value.chars().all(|c| c == '*') {
            // This value matches everything: so does the key.
            return None;
        }
        if pattern && value.len() > MAX_PATTERN {
            return None;
        }
        match column.kind {
            Text if pattern => any_of.push(Test::Pattern(value)),
            Text => equal.push(value),
            PersonName => {
                if pattern && case_sensitive && value.contains('?') {
                    // Lower case may change how many characters a name has.
                    return None;
                }
                any_of.push(Test::PersonName {
                    alphabetic_too: !value.contains('='),
                    value: person_name(&value),
                    pattern,
                })
            }
            DateTime => any_of.push(match matching::range_bounds(column.vr, &value) {
                Some(range) => Test::Range {
                    lower: range.lower,
                    upper: range.upper,
                },
                None => Test::Never,
            }),
            Number => match value.trim().parse::<f64>() {
                Ok(number) if number.is_finite() => {
                    any_of.push(Test::Equal(ColumnValue::Number(number)))
                }
                _ => return None,
            },
        }
    }
    match equal.len() {
        0 => {}
        1 => any_of.extend(
            equal
                .pop()
                .map(|value| Test::Equal(ColumnValue::Text(value))),
        ),
        _ => any_of.push(Test::AnyOf(equal)),
    }
    Some(Constraint {
        level,
        target,
        any_of,
    })
}

/// The chain of records of a candidate with the computed keys of each level put in (they are
/// kept in columns, not in the stored records): what [`QueryPlan::passes`] and
/// [`QueryPlan::response`] see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Computed {
    pub patient_studies: usize,
    pub patient_series: usize,
    pub patient_instances: usize,
    pub study_series: usize,
    pub study_instances: usize,
    pub modalities_in_study: Vec<String>,
    pub sop_classes_in_study: Vec<String>,
    pub series_instances: usize,
}

/// Puts the computed keys of `level` (PS3.4 C.6.1.1.2–C.6.1.1.4) into its record.
pub fn put_computed(level: Level, record: &mut InMemDicomObject, computed: &Computed) {
    use crate::hierarchy::{count_element, set_element};
    match level {
        Level::Patient => {
            record.put(count_element(
                tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
                computed.patient_studies,
            ));
            record.put(count_element(
                tags::NUMBER_OF_PATIENT_RELATED_SERIES,
                computed.patient_series,
            ));
            record.put(count_element(
                tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
                computed.patient_instances,
            ));
        }
        Level::Study => {
            record.put(count_element(
                tags::NUMBER_OF_STUDY_RELATED_SERIES,
                computed.study_series,
            ));
            record.put(count_element(
                tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                computed.study_instances,
            ));
            record.put(set_element(
                tags::MODALITIES_IN_STUDY,
                VR::CS,
                computed.modalities_in_study.iter().cloned(),
            ));
            record.put(set_element(
                tags::SOP_CLASSES_IN_STUDY,
                VR::UI,
                computed.sop_classes_in_study.iter().cloned(),
            ));
        }
        Level::Series => {
            record.put(count_element(
                tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
                computed.series_instances,
            ));
        }
        Level::Image => {}
    }
}

/// The record of each level of an instance's chain, as the index keeps them.
pub fn cells_of(level: Level, record: &InMemDicomObject) -> Vec<(&'static Column, Cell)> {
    columns_at(level)
        .map(|column| (column, cell(column, record.get(column.tag))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::DataElement;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;
    use dimsum_dataset::query_model::{QueryModel, QueryService};

    fn element(tag: Tag, vr: VR, value: &str) -> InMemElement {
        if value.is_empty() {
            DataElement::empty(tag, vr)
        } else {
            DataElement::new(tag, vr, PrimitiveValue::from(value))
        }
    }

    fn plan(level: &str, keys: Vec<InMemElement>) -> QueryPlan {
        let mut object = InMemDicomObject::from_element_iter(keys);
        object.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
        QueryPlan::new(QueryModel::StudyRoot, QueryService::Find, object).expect("plan")
    }

    fn column_of(tag: Tag) -> &'static Column {
        COLUMNS.iter().find(|c| c.tag == tag).expect("column")
    }

    #[test]
    fn keys_become_constraints_of_their_level() {
        let narrowing = Narrowing::of(&plan(
            "SERIES",
            vec![
                element(tags::PATIENT_NAME, VR::PN, "Doe^J*"),
                element(tags::STUDY_DATE, VR::DA, "20240101-"),
                element(tags::ACCESSION_NUMBER, VR::SH, "A%1_"),
                element(tags::STUDY_INSTANCE_UID, VR::UI, "1.2\\1.3"),
                element(tags::MODALITY, VR::CS, "C?"),
                element(tags::SERIES_NUMBER, VR::IS, "3"),
                element(tags::SERIES_DESCRIPTION, VR::LO, ""),
                element(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3"),
            ],
        ));
        let find = |tag| {
            narrowing
                .constraints
                .iter()
                .find(|c| c.target == Target::Column(column_of(tag)))
                .map(|c| c.any_of.clone())
        };
        assert_eq!(
            find(tags::PATIENT_NAME),
            Some(vec![Test::PersonName {
                value: "doe^j*".into(),
                pattern: true,
                alphabetic_too: true
            }])
        );
        assert_eq!(
            find(tags::STUDY_DATE),
            Some(vec![Test::Range {
                lower: Some("20240101".into()),
                upper: None
            }])
        );
        assert_eq!(
            find(tags::ACCESSION_NUMBER),
            Some(vec![Test::Equal(ColumnValue::Text("A%1_".into()))]),
            "% and _ are no wild cards"
        );
        assert_eq!(
            find(tags::STUDY_INSTANCE_UID),
            Some(vec![Test::AnyOf(vec!["1.2".into(), "1.3".into()])])
        );
        assert_eq!(find(tags::MODALITY), Some(vec![Test::Pattern("C?".into())]));
        assert_eq!(
            find(tags::SERIES_NUMBER),
            Some(vec![Test::Equal(ColumnValue::Number(3.0))])
        );
        assert_eq!(find(tags::SERIES_DESCRIPTION), None, "universal");
        assert_eq!(find(tags::SOP_INSTANCE_UID), None, "below the level");
        assert_eq!(narrowing.at(Level::Study).count(), 3);
    }

    #[test]
    fn keys_the_columns_cannot_express_are_left_to_the_engine() {
        let narrowing = Narrowing::of(&plan(
            "STUDY",
            vec![
                // Another VR than the dictionary's: the engine applies the key's.
                element(tags::PATIENT_NAME, VR::DA, "20240101-"),
                element(
                    tags::STUDY_DESCRIPTION,
                    VR::LO,
                    &format!("{}*", "x".repeat(5000)),
                ),
                element(tags::ACCESSION_NUMBER, VR::SH, "A1\\*"),
                element(tags::STUDY_DATE, VR::DA, "2024-06-15"),
            ],
        ));
        assert_eq!(narrowing.constraints.len(), 1, "{narrowing:?}");
        assert_eq!(narrowing.constraints[0].any_of, vec![Test::Never]);
    }

    #[test]
    fn cells_hold_what_the_engine_compares_or_mark_the_entity_irregular() {
        let name = column_of(tags::PATIENT_NAME);
        let cell_of = |column, vr, value| cell(column, Some(&element(column.tag, vr, value)));
        let c = cell_of(name, VR::PN, "Yamada^Tarou^^=山田^太郎");
        assert_eq!(
            c.value,
            Some(ColumnValue::Text("yamada^tarou=山田^太郎".into()))
        );
        assert_eq!(c.alphabetic.as_deref(), Some("yamada^tarou"));
        assert!(!c.irregular);
        let date = column_of(tags::STUDY_DATE);
        assert_eq!(
            cell_of(date, VR::DA, "2024.06.15").value,
            Some(ColumnValue::Text("20240615".into()))
        );
        assert!(cell_of(date, VR::DA, "June").irregular);
        let modality = column_of(tags::MODALITY);
        let c = cell_of(modality, VR::CS, " CT ");
        assert_eq!(c.value, Some(ColumnValue::Text("CT".into())));
        let c = cell_of(modality, VR::CS, "CT\\MR");
        assert!(c.irregular);
        assert_eq!(c.value, Some(ColumnValue::Text("CT\\MR".into())));
        assert!(cell_of(modality, VR::LO, "CT").irregular);
        assert_eq!(cell(modality, None), Cell::default());
        assert_eq!(cell_of(modality, VR::CS, ""), Cell::default());
        let number = column_of(tags::SERIES_NUMBER);
        assert_eq!(
            cell_of(number, VR::IS, " 007").value,
            Some(ColumnValue::Number(7.0))
        );
        assert!(cell_of(number, VR::IS, "seven").irregular);
    }
}
