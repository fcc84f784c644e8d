//! The Query/Retrieve hierarchy (PS3.4 C.6): the levels, which attribute lives at which level,
//! and a hierarchical query planned against them ([`QueryPlan`]). Shared by every archive, so
//! that a folder in memory and a database answer a query alike.

use dimsum_dataset::dicom_core::header::Header;
use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::{InMemDicomObject, mem::InMemElement};
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_net::dimse::status::Status;
use dimsum_net::scp::{Query, ScpFailure};

use crate::matching::{self, Candidate, CompiledQuery, MatchOptions};

/// A Query/Retrieve level (PS3.4 C.6.1.1, C.6.2.1, C.6.3.1), top down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    /// Every level, top down.
    pub const ALL: [Level; 4] = [Level::Patient, Level::Study, Level::Series, Level::Image];

    /// The level named by a Query/Retrieve Level (0008,0052) value.
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    /// The value of Query/Retrieve Level (0008,0052) for the level.
    pub fn name(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }

    /// 1 for the patient, 4 for the instance.
    pub fn depth(self) -> usize {
        self as usize + 1
    }

    /// The unique key of the level (PS3.4 C.6.1.1).
    pub fn unique_key(self) -> (Tag, &'static str) {
        match self {
            Level::Patient => (tags::PATIENT_ID, "Patient ID (0010,0020)"),
            Level::Study => (tags::STUDY_INSTANCE_UID, "Study Instance UID (0020,000D)"),
            Level::Series => (tags::SERIES_INSTANCE_UID, "Series Instance UID (0020,000E)"),
            Level::Image => (tags::SOP_INSTANCE_UID, "SOP Instance UID (0008,0018)"),
        }
    }
}

/// Patient level attributes: PS3.4 Table C.6-1 (and C.6-5 for Patient/Study Only), with the
/// Patient module attributes (PS3.3 C.7.1.1) that queries ask for.
const PATIENT_ATTRIBUTES: &[Tag] = &[
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID_QUALIFIERS_SEQUENCE,
    tags::TYPE_OF_PATIENT_ID,
    Tag(0x0010, 0x1000), // Other Patient IDs (retired)
    Tag(0x0010, 0x1002), // Other Patient IDs Sequence
    tags::OTHER_PATIENT_NAMES,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_BIRTH_TIME,
    tags::PATIENT_SEX,
    tags::PATIENT_BIRTH_NAME,
    tags::PATIENT_MOTHER_BIRTH_NAME,
    Tag(0x0010, 0x2160), // Ethnic Group (retired)
    tags::PATIENT_COMMENTS,
    tags::REFERENCED_PATIENT_SEQUENCE,
    tags::PATIENT_SPECIES_DESCRIPTION,
    tags::PATIENT_SPECIES_CODE_SEQUENCE,
    tags::PATIENT_BREED_DESCRIPTION,
    tags::PATIENT_BREED_CODE_SEQUENCE,
    tags::RESPONSIBLE_PERSON,
    tags::RESPONSIBLE_PERSON_ROLE,
    tags::RESPONSIBLE_ORGANIZATION,
    tags::PATIENT_IDENTITY_REMOVED,
    tags::DEIDENTIFICATION_METHOD,
    tags::PATIENT_ADDRESS,
    tags::PATIENT_TELEPHONE_NUMBERS,
    tags::MEDICAL_ALERTS,
    tags::ALLERGIES,
    tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
    tags::NUMBER_OF_PATIENT_RELATED_SERIES,
    tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
];

/// Study level attributes: PS3.4 Table C.6-2, with the General Study and Patient Study modules
/// (PS3.3 C.7.2.1, C.7.2.2).
const STUDY_ATTRIBUTES: &[Tag] = &[
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE,
    tags::STUDY_ID,
    tags::STUDY_INSTANCE_UID,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::REFERRING_PHYSICIAN_IDENTIFICATION_SEQUENCE,
    tags::CONSULTING_PHYSICIAN_NAME,
    tags::STUDY_DESCRIPTION,
    tags::PROCEDURE_CODE_SEQUENCE,
    tags::PHYSICIANS_OF_RECORD,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::ADMITTING_DIAGNOSES_CODE_SEQUENCE,
    tags::REFERENCED_STUDY_SEQUENCE,
    tags::PATIENT_AGE,
    tags::PATIENT_SIZE,
    tags::PATIENT_WEIGHT,
    tags::OCCUPATION,
    tags::ADDITIONAL_PATIENT_HISTORY,
    Tag(0x0020, 0x1070), // Other Study Numbers (retired)
    tags::ANATOMIC_REGIONS_IN_STUDY_CODE_SEQUENCE,
    tags::REASON_FOR_PERFORMED_PROCEDURE_CODE_SEQUENCE,
    tags::MODALITIES_IN_STUDY,
    tags::SOP_CLASSES_IN_STUDY,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];

/// Series level attributes: PS3.4 Table C.6-3, with the General Series and General Equipment
/// modules (PS3.3 C.7.3.1, C.7.5.1).
const SERIES_ATTRIBUTES: &[Tag] = &[
    tags::MODALITY,
    tags::SERIES_NUMBER,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_DESCRIPTION,
    tags::SERIES_DESCRIPTION_CODE_SEQUENCE,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::PERFORMING_PHYSICIAN_NAME,
    tags::PROTOCOL_NAME,
    tags::OPERATORS_NAME,
    tags::BODY_PART_EXAMINED,
    tags::LATERALITY,
    tags::PATIENT_POSITION,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::PERFORMED_PROCEDURE_STEP_ID,
    tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
    tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
    tags::MANUFACTURER,
    tags::INSTITUTION_NAME,
    tags::STATION_NAME,
    tags::INSTITUTIONAL_DEPARTMENT_NAME,
    tags::MANUFACTURER_MODEL_NAME,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
];

/// Keys of any level that select nothing here and that the index does not hold (PS3.4 C.4.1.1.3:
/// Specific Character Set, Query/Retrieve Level, Retrieve AE Title, Instance Availability,
/// Query/Retrieve View, Timezone Offset From UTC, the Storage Media File-Set keys).
const ANY_LEVEL_ATTRIBUTES: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::QUERY_RETRIEVE_LEVEL,
    tags::RETRIEVE_AE_TITLE,
    tags::INSTANCE_AVAILABILITY,
    tags::QUERY_RETRIEVE_VIEW,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::STORAGE_MEDIA_FILE_SET_ID,
    tags::STORAGE_MEDIA_FILE_SET_UID,
];

/// The level an attribute lives at in the index; `None` for the keys of any level.
pub fn attribute_level(tag: Tag) -> Option<Level> {
    if ANY_LEVEL_ATTRIBUTES.contains(&tag) || tag.element() == 0x0000 {
        None
    } else if PATIENT_ATTRIBUTES.contains(&tag) {
        Some(Level::Patient)
    } else if STUDY_ATTRIBUTES.contains(&tag) {
        Some(Level::Study)
    } else if SERIES_ATTRIBUTES.contains(&tag) {
        Some(Level::Series)
    } else {
        Some(Level::Image)
    }
}

/// The keys the index computes (PS3.4 C.6.1.1.2–C.6.1.1.4, C.6.2.1.2); a file's own values for
/// them are not kept.
pub fn is_computed(tag: Tag) -> bool {
    [
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        tags::MODALITIES_IN_STUDY,
        tags::SOP_CLASSES_IN_STUDY,
    ]
    .contains(&tag)
}

/// Splits an instance's attributes into the records of its four levels ([`attribute_level`]),
/// patient first, leaving out the computed keys ([`is_computed`]), the keys of any level and
/// the elements `keep` refuses; each record gets the instance's Specific Character Set.
pub fn split_by_level(
    attributes: InMemDicomObject,
    keep: impl Fn(&InMemElement) -> bool,
) -> [InMemDicomObject; 4] {
    let charset = attributes.get(tags::SPECIFIC_CHARACTER_SET).cloned();
    records_by_level(attributes.into_iter().filter(keep), charset.as_ref())
}

/// The records of an instance's patient, study and series, as [`split_by_level`] makes them,
/// from its attributes left as they are: only the elements of those levels are copied.
pub fn parent_records(attributes: &InMemDicomObject) -> [InMemDicomObject; 3] {
    let of_a_parent = |element: &&InMemElement| {
        attribute_level(element.tag()).is_some_and(|level| level != Level::Image)
    };
    records_by_level(
        attributes.iter().filter(of_a_parent).cloned(),
        attributes.get(tags::SPECIFIC_CHARACTER_SET),
    )
}

/// The first `N` levels' records of `elements` (each in its level's record, the computed keys
/// left out), each with `charset`.
fn records_by_level<const N: usize>(
    elements: impl Iterator<Item = InMemElement>,
    charset: Option<&InMemElement>,
) -> [InMemDicomObject; N] {
    let mut records: [InMemDicomObject; N] = std::array::from_fn(|_| InMemDicomObject::new_empty());
    for element in elements {
        if is_computed(element.tag()) {
            continue;
        }
        let level = attribute_level(element.tag());
        if let Some(record) = level.and_then(|level| records.get_mut(level.depth() - 1)) {
            record.put(element);
        }
    }
    if let Some(charset) = charset {
        for record in &mut records {
            record.put(charset.clone());
        }
    }
    records
}

/// A computed count (Number of … Related …, PS3.4 C.6.1.1.2–C.6.1.1.4) as its IS element.
pub fn count_element(tag: Tag, count: usize) -> InMemElement {
    DataElement::new(tag, VR::IS, PrimitiveValue::from(count.to_string()))
}

/// A computed set (Modalities In Study, SOP Classes In Study, C.6.1.1.3) as a multi-valued
/// element; zero-length when empty.
pub fn set_element(tag: Tag, vr: VR, values: impl IntoIterator<Item = String>) -> InMemElement {
    let values: Vec<String> = values.into_iter().collect();
    if values.is_empty() {
        DataElement::empty(tag, vr)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::Strs(values.into()))
    }
}

/// A hierarchical query (PS3.4 C.4.1.3.1; C.4.2.2.1 and C.4.3.2.1 for C-GET and C-MOVE)
/// planned against the levels: its information model and level, and its non-universal keys by
/// the level they match at. Whatever holds the entities (a folder in memory, a database) walks
/// its entities at the plan's level and asks [`QueryPlan::passes`] of each level of their chain,
/// then [`QueryPlan::response`] for the identifier to send. The keys are compiled once, when the
/// plan is made ([`CompiledQuery`]): matching a candidate decodes only the candidate's values.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    model: QueryModel,
    service: QueryService,
    level: Level,
    /// Keys to match at depth 1 (patient) to 4 (instance), universal ones left out; those of
    /// levels below the query's are matched only by a relational query.
    keys: [Vec<InMemElement>; 4],
    /// The query's identifier, for the responses.
    identifier: InMemDicomObject,
    /// Whether the query has keys of a level below its own (universal ones included).
    has_keys_below: bool,
    /// Relational query (PS3.4 C.4.1.2.2.2, negotiated by C-FIND extended negotiation byte 1):
    /// keys of levels below the query's match when some descendant matches them.
    relational: bool,
    options: MatchOptions,
    /// Responses carry every attribute of the records of the chain, not only the keys asked
    /// (QIDO-RS `includefield=all`, PS3.18 8.3.4.3).
    all_attributes: bool,
    /// `keys` compiled, level by level.
    compiled: [CompiledQuery; 4],
    /// The whole identifier compiled, for choosing the sequence items of responses.
    compiled_identifier: CompiledQuery,
}

impl QueryPlan {
    /// The plan for a C-FIND, C-GET or C-MOVE request on a Q/R information model (PS3.4 C.6):
    /// 0x0122 for another SOP class, 0xA900 for a level that is not one of the model's.
    pub fn from_query(query: &Query, service: QueryService) -> Result<QueryPlan, ScpFailure> {
        let model = match QueryModel::of_sop_class(&query.sop_class_uid) {
            Some((model, asked)) if asked == service && !model.levels().is_empty() => model,
            _ => {
                return Err(ScpFailure::new(
                    Status::SOP_CLASS_NOT_SUPPORTED,
                    format!(
                        "this archive does not serve SOP class {}",
                        query.sop_class_uid
                    ),
                ));
            }
        };
        QueryPlan::new(model, service, query.keys.clone())
    }

    /// The plan for `keys` (an identifier with its Query/Retrieve Level) on `model`.
    pub fn new(
        model: QueryModel,
        service: QueryService,
        keys: InMemDicomObject,
    ) -> Result<QueryPlan, ScpFailure> {
        let level_text = keys
            .get(tags::QUERY_RETRIEVE_LEVEL)
            .and_then(|element| element.to_str().ok())
            .map(|text| text.trim().to_owned())
            .unwrap_or_default();
        let level = Level::parse(&level_text)
            .filter(|_| model.levels().contains(&level_text.as_str()))
            .ok_or_else(|| {
                ScpFailure::new(
                    Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                    format!(
                        "Query/Retrieve Level {level_text:?} is not one of {}",
                        model.levels().join(", ")
                    ),
                )
            })?;
        let mut by_level: [Vec<InMemElement>; 4] = Default::default();
        let mut has_keys_below = false;
        for key in keys.iter() {
            let Some(key_level) = attribute_level(key.tag()) else {
                continue;
            };
            has_keys_below |= key_level > level;
            if !matching::is_universal(key) {
                by_level[key_level.depth() - 1].push(key.clone());
            }
        }
        let options = MatchOptions::default();
        Ok(QueryPlan {
            model,
            service,
            level,
            compiled: compile_levels(&by_level, options),
            compiled_identifier: CompiledQuery::new(&keys, options),
            keys: by_level,
            identifier: keys,
            has_keys_below,
            relational: false,
            options,
            all_attributes: false,
        })
    }

    /// The same plan, matching with `options`.
    pub fn with_options(mut self, options: MatchOptions) -> Self {
        if options != self.options {
            self.options = options;
            self.compiled = compile_levels(&self.keys, options);
            self.compiled_identifier = CompiledQuery::new(&self.identifier, options);
        }
        self
    }

    pub fn model(&self) -> QueryModel {
        self.model
    }

    pub fn service(&self) -> QueryService {
        self.service
    }

    /// The Query/Retrieve Level asked.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The identifier as asked (every key, return keys included).
    pub fn identifier(&self) -> &InMemDicomObject {
        &self.identifier
    }

    /// The same plan as a relational query (PS3.4 C.4.1.2.2.2) when `relational`: keys of
    /// levels below its own then match against the entity's descendants.
    pub fn with_relational(mut self, relational: bool) -> Self {
        self.relational = relational;
        self
    }

    /// Whether keys of levels below the query's are matched against descendants.
    pub fn is_relational(&self) -> bool {
        self.relational
    }

    /// The same plan answering, when `all`, with every attribute the index keeps for the entity
    /// and its parents (each record's attributes of its own level, [`attribute_level`], computed
    /// keys included) besides the keys asked (QIDO-RS `includefield=all`, PS3.18 8.3.4.3).
    pub fn with_all_attributes(mut self, all: bool) -> Self {
        self.all_attributes = all;
        self
    }

    /// The non-universal keys that match at `level`; for a level below the plan's, none unless
    /// the query is relational.
    pub fn keys_at(&self, level: Level) -> &[InMemElement] {
        if level > self.level && !self.relational {
            return &[];
        }
        &self.keys[level.depth() - 1]
    }

    /// The deepest level below the plan's with keys to match (relational queries only): an
    /// entity matches when one of its descendants at that level passes the keys of every level
    /// down to it.
    pub fn deepest_relational_level(&self) -> Option<Level> {
        if !self.relational {
            return None;
        }
        Level::ALL
            .into_iter()
            .rfind(|level| *level > self.level && !self.keys[level.depth() - 1].is_empty())
    }

    /// Whether the query has keys of a level below its own that a hierarchical query neither
    /// matches nor fills: the matches go out with status 0xFF01.
    pub fn has_unsupported_keys(&self) -> bool {
        self.has_keys_below && !self.relational
    }

    pub fn options(&self) -> MatchOptions {
        self.options
    }

    /// Whether an entity at `level` passes the keys of its level, `record` holding its
    /// attributes (those of its level, [`attribute_level`]).
    pub fn passes(&self, level: Level, record: &InMemDicomObject) -> bool {
        if level > self.level && !self.relational {
            return true;
        }
        self.compiled[level.depth() - 1].matches(record)
    }

    /// The keys at `level` that an index may narrow its candidates on, each alone, and still
    /// keep every match ([`QueryPlan::passes`] decides): those of [`QueryPlan::keys_at`] less
    /// the Empty Value Matching keys (`""` selects a missing value, PS3.4 C.2.2.2.1) and, under
    /// combined date and time matching (C.2.2.2.5.2), the time keys matched together with their
    /// date key (the date key alone still bounds the day).
    pub fn narrowing_keys(&self, level: Level) -> impl Iterator<Item = &InMemElement> {
        let paired: Vec<Tag> = self.compiled[level.depth() - 1]
            .paired_time_tags()
            .collect();
        self.keys_at(level)
            .iter()
            .filter(move |key| !paired.contains(&key.tag()) && !matching::is_empty_value_key(key))
    }

    /// The response identifier for the entity whose chain of records (patient first, down to
    /// the plan's level) is `records` (PS3.4 C.4.1.1.3.2).
    pub fn response(&self, records: &[&InMemDicomObject]) -> InMemDicomObject {
        let asked = self
            .compiled_identifier
            .response(&self.identifier, &Chain { records });
        if !self.all_attributes {
            return asked;
        }
        let mut all = InMemDicomObject::new_empty();
        for (record, level) in records.iter().zip(Level::ALL) {
            for element in record.iter() {
                if attribute_level(element.tag()) == Some(level) {
                    all.put(element.clone());
                }
            }
        }
        // The keys the records do not hold (Query/Retrieve Level, Specific Character Set, the
        // keys of any level) as asked; a record's own sequences stay whole.
        for element in asked {
            if all.get(element.tag()).is_none() {
                all.put(element);
            }
        }
        all
    }

    /// A C-GET or C-MOVE needs a non-universal value for the unique key of its level (PS3.4
    /// C.4.2.2.1, C.4.3.2.1); 0xA900 otherwise.
    pub fn check_retrieval_keys(&self) -> Result<(), ScpFailure> {
        let (unique, name) = self.level.unique_key();
        if self
            .identifier
            .get(unique)
            .is_none_or(matching::is_universal)
        {
            return Err(ScpFailure::new(
                Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                format!(
                    "a retrieval at {:?} level needs a value for its unique key {name}",
                    self.level
                ),
            ));
        }
        Ok(())
    }
}

/// The keys of each level compiled on their own, so that a date key and its time key pair up
/// within their level.
fn compile_levels(keys: &[Vec<InMemElement>; 4], options: MatchOptions) -> [CompiledQuery; 4] {
    std::array::from_fn(|depth| CompiledQuery::from_keys(&keys[depth], options))
}

/// The attributes of an entity and of its parents, each read at its own level
/// ([`attribute_level`]); the Specific Character Set is that of the deepest record.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    /// Patient first; as long as the query level is deep.
    pub records: &'a [&'a InMemDicomObject],
}

impl Candidate for Chain<'_> {
    fn attribute(&self, tag: Tag) -> Option<&InMemElement> {
        if tag == tags::SPECIFIC_CHARACTER_SET {
            return self.records.last().and_then(|record| record.get(tag));
        }
        let level = attribute_level(tag)?;
        self.records.get(level.depth() - 1)?.get(tag)
    }
}

/// The C-MOVE destination `ae_title` names in `table` (AE title → "host:port"), if any (PS3.4
/// C.4.2.2.1: an unknown one is answered 0xA801).
pub fn move_destination(
    table: &std::collections::BTreeMap<String, String>,
    ae_title: &str,
) -> Option<dimsum_net::scp::MoveDestination> {
    let ae_title = ae_title.trim();
    table
        .get(ae_title)
        .map(|address| dimsum_net::scp::MoveDestination {
            ae_title: ae_title.to_owned(),
            address: address.clone(),
        })
}
