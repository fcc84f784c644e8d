//! `dimsum delete`: removes patients, studies, series or instances from the data folder of
//! `dimsum serve` (issue 8: "deleting a study/series/instance removes files and index rows
//! together"), through `Archive::delete`, which updates the derived counts above what it
//! removes. The archive is opened as `dimsum serve` opens it, lock included: while a server
//! runs on the folder, the lock is held and nothing is touched.
//!
//! Every target is looked up before anything is deleted; when one is not in the archive, none
//! is deleted. `--dry-run` lists what would go and deletes nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tracing::error;

use dimsum_net::dataset::dicom_core::{DataElement, VR};
use dimsum_net::dataset::dicom_dictionary_std::tags;
use dimsum_net::dataset::dicom_object::InMemDicomObject;
use dimsum_net::dataset::{QueryModel, QueryService};
use dimsum_pacs::archive::{Archive, INDEX_FILE, STORAGE_FOLDER};
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::{DeleteTarget, IndexedInstance};

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::serve_archive;
use crate::serve_config::ServeConfig;

/// Options of `dimsum delete`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// The archive's data folder (what `dimsum serve --data` was given).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The archive's index on PostgreSQL (what `dimsum serve --index` was given) [default:
    /// SQLite in the data folder].
    #[arg(long, value_name = "URL")]
    pub index: Option<String>,
    /// The node name this tool uses among those of a PostgreSQL index.
    #[arg(long, value_name = "NAME", default_value = "dimsum-delete")]
    pub node: String,
    /// Delete this study, by Study Instance UID (repeatable).
    #[arg(long = "study", value_name = "UID")]
    pub studies: Vec<String>,
    /// Delete this series, by Series Instance UID (repeatable).
    #[arg(long = "series", value_name = "UID")]
    pub series: Vec<String>,
    /// Delete this instance, by SOP Instance UID (repeatable).
    #[arg(long = "instance", value_name = "UID")]
    pub instances: Vec<String>,
    /// Delete every study of the patients with this Patient ID, whatever its issuer
    /// (repeatable).
    #[arg(long = "patient", value_name = "ID")]
    pub patients: Vec<String>,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// What one `--patient`, `--study`, `--series` or `--instance` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Patient(String),
    Study(String),
    Series(String),
    Instance(String),
}

impl Target {
    /// The targets of the options, in the order patient, study, series, instance; a value that
    /// would match more than itself (empty, a wildcard, a list) is refused.
    fn all(options: &Options) -> Result<Vec<Target>, String> {
        let named = |values: &[String], make: fn(String) -> Target, flag: &str| {
            values
                .iter()
                .map(|value| {
                    let value = value.trim();
                    if value.is_empty() || value.contains(['*', '?', '\\']) {
                        return Err(format!(
                            "--{flag} `{value}`: give one exact value (no wildcard, list or empty value)"
                        ));
                    }
                    Ok(make(value.to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut targets = named(&options.patients, Target::Patient, "patient")?;
        targets.extend(named(&options.studies, Target::Study, "study")?);
        targets.extend(named(&options.series, Target::Series, "series")?);
        targets.extend(named(&options.instances, Target::Instance, "instance")?);
        if targets.is_empty() {
            return Err(
                "nothing to delete: give --patient ID, --study UID, --series UID or --instance UID"
                    .to_owned(),
            );
        }
        Ok(targets)
    }

    fn describe(&self) -> String {
        match self {
            Target::Patient(id) => format!("patient {id}"),
            Target::Study(uid) => format!("study {uid}"),
            Target::Series(uid) => format!("series {uid}"),
            Target::Instance(uid) => format!("instance {uid}"),
        }
    }

    /// The retrieval (PS3.4 C.4.2.2.1: the unique key of its level) of everything the target
    /// covers.
    fn plan(&self) -> Result<QueryPlan, String> {
        let (model, level, tag, vr, value) = match self {
            // At STUDY level of Study Root (which takes patient keys there): every study of
            // the patient.
            Target::Patient(id) => (QueryModel::StudyRoot, "STUDY", tags::PATIENT_ID, VR::LO, id),
            Target::Study(uid) => (
                QueryModel::StudyRoot,
                "STUDY",
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                uid,
            ),
            Target::Series(uid) => (
                QueryModel::StudyRoot,
                "SERIES",
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                uid,
            ),
            Target::Instance(uid) => (
                QueryModel::StudyRoot,
                "IMAGE",
                tags::SOP_INSTANCE_UID,
                VR::UI,
                uid,
            ),
        };
        let keys = InMemDicomObject::from_element_iter([
            DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level),
            DataElement::new(tag, vr, value.as_str()),
        ]);
        QueryPlan::new(model, QueryService::Move, keys).map_err(|failure| failure.comment)
    }

    /// What to ask the archive to delete, given the instances the target covers: the entity
    /// itself, or, for a patient, each of its studies.
    fn deletes(&self, instances: &[IndexedInstance]) -> Vec<DeleteTarget> {
        match self {
            Target::Patient(_) => instances
                .iter()
                .map(|instance| instance.study_instance_uid.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(DeleteTarget::Study)
                .collect(),
            Target::Study(uid) => vec![DeleteTarget::Study(uid.clone())],
            Target::Series(uid) => vec![DeleteTarget::Series(uid.clone())],
            Target::Instance(uid) => vec![DeleteTarget::Instance(uid.clone())],
        }
    }
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let targets = match Target::all(&options) {
        Ok(targets) => targets,
        Err(message) => {
            error!("{message}");
            return Code::Usage;
        }
    };
    // Opening would create an archive where there is none: a mistyped folder must not.
    let (marker, what) = match options.index {
        None => (options.data.join(INDEX_FILE), INDEX_FILE),
        Some(_) => (options.data.join(STORAGE_FOLDER), STORAGE_FOLDER),
    };
    if !marker.exists() {
        error!(
            "{} is not the data folder of a dimsum archive (it has no {what})",
            options.data.display()
        );
        return Code::Usage;
    }
    let config = ServeConfig {
        data: options.data.clone(),
        index: options.index.clone(),
        node: Some(options.node.clone()),
        ..ServeConfig::default()
    };
    let archive = match serve_archive::open_archive(&config).await {
        Ok(archive) => archive,
        Err(code) => return code,
    };
    let code = delete(&archive, &targets, options.dry_run).await;
    serve_archive::close(&archive).await;
    code
}

/// Looks every target up, then (unless `dry_run`) deletes them, printing what goes.
async fn delete(archive: &Archive, targets: &[Target], dry_run: bool) -> Code {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for target in targets {
        let plan = match target.plan() {
            Ok(plan) => plan,
            Err(message) => {
                error!("{}: {message}", target.describe());
                return Code::Usage;
            }
        };
        match archive.index().instances(plan).await {
            Ok(instances) if instances.is_empty() => missing.push(target.describe()),
            Ok(instances) => found.push((target, instances)),
            Err(error) => {
                error!("cannot look up {}: {error}", target.describe());
                return Code::Internal;
            }
        }
    }
    if !missing.is_empty() {
        error!(
            "not in the archive: {}; nothing was deleted",
            missing.join(", ")
        );
        return Code::DimseFailure;
    }
    for (target, instances) in found {
        if dry_run {
            println!(
                "would delete {}: {} instances",
                target.describe(),
                instances.len()
            );
            for instance in &instances {
                println!(
                    "  {} {}",
                    instance.sop_instance_uid,
                    instance.location.path.display()
                );
            }
            continue;
        }
        let (mut removed, mut files) = (0, 0);
        for delete in target.deletes(&instances) {
            match archive.delete(delete).await {
                Ok(deleted) => {
                    removed += deleted.instances;
                    files += deleted.files.len();
                }
                Err(error) => {
                    error!("cannot delete {}: {error}", target.describe());
                    return Code::Internal;
                }
            }
        }
        println!(
            "deleted {}: {removed} instances, {files} files",
            target.describe()
        );
    }
    Code::Success
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Delete {
        #[command(flatten)]
        options: Options,
    }

    fn targets(args: &[&str]) -> Result<Vec<Target>, String> {
        let parsed = Delete::try_parse_from(["delete", "--data", "d"].iter().chain(args))
            .map_err(|error| error.to_string())?;
        Target::all(&parsed.options)
    }

    #[test]
    fn targets_come_from_repeatable_flags() {
        assert_eq!(
            targets(&[
                "--study",
                "1.2",
                "--instance",
                "1.2.3.4",
                "--study",
                "1.3",
                "--patient",
                "P 1",
                "--series",
                " 1.2.3 ",
            ]),
            Ok(vec![
                Target::Patient("P 1".into()),
                Target::Study("1.2".into()),
                Target::Study("1.3".into()),
                Target::Series("1.2.3".into()),
                Target::Instance("1.2.3.4".into()),
            ])
        );
    }

    #[test]
    fn values_that_would_match_more_than_one_entity_are_refused() {
        for args in [
            &["--patient", "*"][..],
            &["--patient", "DOE?"],
            &["--study", "1.2\\1.3"],
            &["--series", " "],
            &[],
        ] {
            assert!(targets(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn each_target_retrieves_by_the_unique_key_of_its_level() {
        let plan = Target::Series("1.2.3".into()).plan().expect("plan");
        assert_eq!(plan.level().name(), "SERIES");
        plan.check_retrieval_keys().expect("a unique key");
        let plan = Target::Patient("P1".into()).plan().expect("plan");
        assert_eq!(plan.level().name(), "STUDY");
        assert_eq!(plan.keys_at(plan.level()).len(), 0, "no study key");
    }
}
