//! The computed keys a writer's batch adds to, shared by every backend: Number of Series /
//! Study / Patient Related Instances, Number of Study / Patient Related Series, Number of
//! Patient Related Studies and the SOP classes of each study (PS3.4 §C.3.2, §C.3.3: the keys
//! behind NumberOf… and SOPClassesInStudy). A batch counts what its inserts add per row and
//! writes the sums once, at its end or before an operation that removes rows (which reads and
//! decrements them): one UPDATE per touched row instead of one per instance.

use std::collections::BTreeMap;

use super::sql::{Dialect, Param};
use super::writer::ParentIds;

/// What a batch added, per row.
#[derive(Default)]
pub(crate) struct Counts {
    /// Series id → instances added.
    series: BTreeMap<i64, i64>,
    studies: BTreeMap<i64, StudyCounts>,
    patients: BTreeMap<i64, PatientCounts>,
}

#[derive(Default)]
struct StudyCounts {
    instances: i64,
    series: i64,
    /// SOP Class UID → instances added.
    classes: BTreeMap<String, i64>,
}

#[derive(Default)]
struct PatientCounts {
    instances: i64,
    series: i64,
    studies: i64,
}

/// One write of [`Counts::writes`].
pub(crate) enum CountWrite {
    /// A statement with its parameters (in the backend's dialect).
    Statement(String, Vec<Param>),
    /// Modalities In Study of this study is computed again (it gained a series).
    RefreshModalities(i64),
    /// SOP Classes In Study of this study is computed again (written only when it changed).
    RefreshSopClasses(i64),
}

impl Counts {
    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty() && self.studies.is_empty() && self.patients.is_empty()
    }

    /// One instance of `sop_class` added under `ids`.
    pub(crate) fn instance(&mut self, ids: ParentIds, sop_class: &str) {
        let (series, study) = (i64::from(ids.new_series), i64::from(ids.new_study));
        *self.series.entry(ids.series_id).or_default() += 1;
        let counts = self.studies.entry(ids.study_id).or_default();
        counts.instances += 1;
        counts.series += series;
        match counts.classes.get_mut(sop_class) {
            Some(n) => *n += 1,
            None => {
                counts.classes.insert(sop_class.to_owned(), 1);
            }
        }
        let counts = self.patients.entry(ids.patient_id).or_default();
        counts.instances += 1;
        counts.series += series;
        counts.studies += study;
    }

    /// Adds what an operation counted.
    pub(crate) fn add(&mut self, other: Counts) {
        for (id, n) in other.series {
            *self.series.entry(id).or_default() += n;
        }
        for (id, counts) in other.studies {
            let mine = self.studies.entry(id).or_default();
            mine.instances += counts.instances;
            mine.series += counts.series;
            for (class, n) in counts.classes {
                *mine.classes.entry(class).or_default() += n;
            }
        }
        for (id, counts) in other.patients {
            let mine = self.patients.entry(id).or_default();
            mine.instances += counts.instances;
            mine.series += counts.series;
            mine.studies += counts.studies;
        }
    }

    /// The writes that store the counts (which it forgets), in one lock order: series,
    /// studies (each followed by its SOP classes and, with its row locked, Modalities and SOP
    /// Classes In Study), patients, each by id. None depends on another's answer.
    pub(crate) fn writes(&mut self, dialect: Dialect) -> Vec<CountWrite> {
        let counts = std::mem::take(self);
        let statement = |text: &str, params| CountWrite::Statement(dialect.numbered(text), params);
        let mut writes = Vec::new();
        for (id, n) in counts.series {
            writes.push(statement(
                ADD_TO_SERIES,
                vec![Param::Integer(id), Param::Integer(n)],
            ));
        }
        for (id, study) in counts.studies {
            writes.push(statement(
                ADD_TO_STUDY,
                vec![
                    Param::Integer(id),
                    Param::Integer(study.instances),
                    Param::Integer(study.series),
                ],
            ));
            for (class, n) in study.classes {
                writes.push(statement(
                    ADD_TO_STUDY_SOP_CLASS,
                    vec![Param::Integer(id), Param::Text(class), Param::Integer(n)],
                ));
            }
            if study.series > 0 {
                writes.push(CountWrite::RefreshModalities(id));
            }
            writes.push(CountWrite::RefreshSopClasses(id));
        }
        for (id, patient) in counts.patients {
            writes.push(statement(
                ADD_TO_PATIENT,
                vec![
                    Param::Integer(id),
                    Param::Integer(patient.instances),
                    Param::Integer(patient.series),
                    Param::Integer(patient.studies),
                ],
            ));
        }
        writes
    }
}

/// Series `$1` gained `$2` instances.
const ADD_TO_SERIES: &str =
    "UPDATE series SET number_of_instances = number_of_instances + $2 WHERE id = $1";

/// Study `$1` gained `$2` instances and `$3` series.
const ADD_TO_STUDY: &str = "UPDATE study SET number_of_instances = number_of_instances + $2,
    number_of_series = number_of_series + $3 WHERE id = $1";

/// Study `$1` gained `$3` instances of SOP class `$2`.
const ADD_TO_STUDY_SOP_CLASS: &str = "INSERT INTO study_sop_class (study, sop_class_uid, instances)
    VALUES ($1, $2, $3)
    ON CONFLICT (study, sop_class_uid)
    DO UPDATE SET instances = study_sop_class.instances + excluded.instances";

/// Patient `$1` gained `$2` instances, `$3` series and `$4` studies.
const ADD_TO_PATIENT: &str = "UPDATE patient SET number_of_instances = number_of_instances + $2,
    number_of_series = number_of_series + $3,
    number_of_studies = number_of_studies + $4 WHERE id = $1";
