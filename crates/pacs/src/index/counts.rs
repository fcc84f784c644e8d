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
        let p = |n| dialect.placeholder(n);
        let mut writes = Vec::new();
        for (id, n) in counts.series {
            writes.push(CountWrite::Statement(
                format!(
                    "UPDATE series SET number_of_instances = number_of_instances + {} WHERE id = {}",
                    p(1),
                    p(2)
                ),
                vec![Param::Integer(n), Param::Integer(id)],
            ));
        }
        for (id, study) in counts.studies {
            writes.push(CountWrite::Statement(
                format!(
                    "UPDATE study SET number_of_instances = number_of_instances + {},
                        number_of_series = number_of_series + {} WHERE id = {}",
                    p(1),
                    p(2),
                    p(3)
                ),
                vec![
                    Param::Integer(study.instances),
                    Param::Integer(study.series),
                    Param::Integer(id),
                ],
            ));
            for (class, n) in study.classes {
                writes.push(CountWrite::Statement(
                    format!(
                        "INSERT INTO study_sop_class (study, sop_class_uid, instances)
                         VALUES ({}, {}, {})
                         ON CONFLICT (study, sop_class_uid)
                         DO UPDATE SET instances = study_sop_class.instances + excluded.instances",
                        p(1),
                        p(2),
                        p(3)
                    ),
                    vec![Param::Integer(id), Param::Text(class), Param::Integer(n)],
                ));
            }
            if study.series > 0 {
                writes.push(CountWrite::RefreshModalities(id));
            }
            writes.push(CountWrite::RefreshSopClasses(id));
        }
        for (id, patient) in counts.patients {
            writes.push(CountWrite::Statement(
                format!(
                    "UPDATE patient SET number_of_instances = number_of_instances + {},
                        number_of_series = number_of_series + {},
                        number_of_studies = number_of_studies + {} WHERE id = {}",
                    p(1),
                    p(2),
                    p(3),
                    p(4)
                ),
                vec![
                    Param::Integer(patient.instances),
                    Param::Integer(patient.series),
                    Param::Integer(patient.studies),
                    Param::Integer(id),
                ],
            ));
        }
        writes
    }
}
