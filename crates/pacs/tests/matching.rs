//! The C-FIND matching engine rule by rule (PS3.4 C.2.2.2), through the public API the archive
//! uses: a [`QueryPlan`] made once per query, asked whether each level's record passes, and
//! the response it builds; the worklist's sequence matching through `matching::matches`. The
//! Specific Character Set tests read the character-set files shipped with pydicom (copied into
//! tests/data/charset, see its README).

use std::path::{Path, PathBuf};
use std::time::Instant;

use dimsum_dataset::ScanLimits;
use dimsum_dataset::dicom_core::value::{DataSetSequence, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::dicom_object::mem::InMemElement;
use dimsum_dataset::identifier;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_pacs::hierarchy::{Level, QueryPlan, split_by_level};
use dimsum_pacs::index::query::{Narrowing, Target, Test};
use dimsum_pacs::matching::{self, MatchOptions};

mod common;
use common::{EXPLICIT, element, text};

fn object(elements: Vec<InMemElement>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

fn multi(tag: Tag, vr: VR, values: &[&str]) -> InMemElement {
    DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect()),
    )
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A Study Root C-FIND plan at `level` for `keys`, matching with `options`.
fn plan_with(level: &str, keys: Vec<InMemElement>, options: MatchOptions) -> QueryPlan {
    let mut identifier = object(keys);
    identifier.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
    let model = if level == "PATIENT" {
        QueryModel::PatientRoot
    } else {
        QueryModel::StudyRoot
    };
    QueryPlan::new(model, QueryService::Find, identifier)
        .expect("plan")
        .with_options(options)
}

fn plan(level: &str, keys: Vec<InMemElement>) -> QueryPlan {
    plan_with(level, keys, MatchOptions::default())
}

/// Whether a record of `level` holding `candidate` passes a plan with the one key `key`.
fn passes(level: Level, key: InMemElement, candidate: Vec<InMemElement>) -> bool {
    let name = level.name();
    plan(name, vec![key]).passes(level, &object(candidate))
}

/// Whether a record of `level` whose `tag` is `candidate` (absent when empty) passes the one
/// key `tag` = `key` of `vr`.
fn one_key_passes(level: Level, tag: Tag, vr: VR, key: &str, candidate: &str) -> bool {
    let candidate = if candidate.is_empty() {
        vec![]
    } else {
        vec![element(tag, vr, candidate)]
    };
    passes(level, element(tag, vr, key), candidate)
}

/// Whether a study whose record holds `candidate` passes the one key `tag` = `key` of `vr`.
fn study(tag: Tag, vr: VR, key: &str, candidate: &str) -> bool {
    one_key_passes(Level::Study, tag, vr, key, candidate)
}

#[test]
fn single_value_matching_is_exact_but_for_insignificant_padding() {
    let id = |key: &str, candidate: &str| {
        one_key_passes(Level::Patient, tags::PATIENT_ID, VR::LO, key, candidate)
    };
    assert!(id("PID1", "PID1"));
    assert!(id("PID1", " PID1 "));
    assert!(!id("PID1", "PID10"));
    assert!(!id("pid1", "PID1"), "LO is case-sensitive");
    assert!(study(tags::ACCESSION_NUMBER, VR::SH, "A1", "A1"));
    assert!(!study(tags::ACCESSION_NUMBER, VR::SH, "A1", "A2"));
    assert!(
        !study(tags::ACCESSION_NUMBER, VR::SH, "A1", ""),
        "no value: no match"
    );
    assert!(study(tags::STUDY_ID, VR::SH, "7", "7"));
}

#[test]
fn list_of_uid_matching_matches_any_uid_of_the_list() {
    let key = multi(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &["1.2.3", "1.2.4", "1.2.5"],
    );
    for (candidate, expected) in [("1.2.4", true), ("1.2.5\0", true), ("1.2.6", false)] {
        assert_eq!(
            passes(
                Level::Study,
                key.clone(),
                vec![element(tags::STUDY_INSTANCE_UID, VR::UI, candidate)]
            ),
            expected,
            "{candidate}"
        );
    }
}

#[test]
fn universal_matching_matches_every_record_even_without_the_attribute() {
    for key in [
        element(tags::PATIENT_NAME, VR::PN, ""),
        element(tags::PATIENT_NAME, VR::PN, "*"),
        element(tags::PATIENT_NAME, VR::PN, "  "),
    ] {
        let plan = plan("PATIENT", vec![key]);
        assert!(plan.keys_at(Level::Patient).is_empty(), "nothing to match");
        assert!(plan.passes(Level::Patient, &object(vec![])));
        assert!(plan.passes(
            Level::Patient,
            &object(vec![element(tags::PATIENT_NAME, VR::PN, "Doe^J")])
        ));
    }
    // `*` is no wild card in a date: it is a value that matches no date.
    assert!(!study(tags::STUDY_DATE, VR::DA, "*", "20240101"));
}

#[test]
fn wild_cards_star_and_question_mark_and_nothing_else() {
    let description =
        |key: &str, candidate: &str| study(tags::STUDY_DESCRIPTION, VR::LO, key, candidate);
    assert!(description("CT*", "CT HEAD"));
    assert!(description("*HEAD", "CT HEAD"));
    assert!(description("C? H*D", "CT HEAD"));
    assert!(description("*", ""), "a lone * is universal");
    assert!(!description("C?", "CT HEAD"));
    assert!(!description("ct*", "CT HEAD"), "LO wild cards keep case");
    // SQL's wild cards and bracket expressions are plain characters.
    assert!(description("A%1_", "A%1_"));
    assert!(!description("A%1_", "AB1C"));
    assert!(!description("A%*", "AB1C"));
    assert!(description("A%*", "A%B"));
    assert!(!description("A_*", "AB"));
    assert!(description("[AB]*", "[AB] chest"));
    assert!(!description("[AB]*", "A chest"));
    // Several values: any of them.
    assert!(description("MR*\\CT*", "CT HEAD"));
    assert!(!description("MR*\\US*", "CT HEAD"));
    // Wild cards count characters, not bytes.
    assert!(description("?RICH", "ÜRICH"));
    // UIDs and numbers take `*` and `?` as characters.
    assert!(!study(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.*", "1.2.3"));
}

#[test]
fn date_ranges_are_inclusive_and_may_be_open() {
    let date = |key: &str, candidate: &str| study(tags::STUDY_DATE, VR::DA, key, candidate);
    assert!(date("20240101-20241231", "20240101"));
    assert!(date("20240101-20241231", "20241231"));
    assert!(!date("20240101-20241231", "20250101"));
    assert!(date("20240101-", "20990101"));
    assert!(!date("20240101-", "20231231"));
    assert!(date("-20240101", "19000101"));
    assert!(!date("-20240101", "20240102"));
    assert!(date("20240615", "20240615"));
    assert!(!date("20240615", "20240616"));
    assert!(
        !date("20240101-20241231", "June"),
        "a malformed value matches nothing"
    );
}

#[test]
fn time_ranges_are_as_precise_as_written() {
    let time = |key: &str, candidate: &str| study(tags::STUDY_TIME, VR::TM, key, candidate);
    assert!(time("1000-1200", "1000"));
    assert!(
        time("1000-1200", "120059.999999"),
        "1200 runs to 12:00:59.999999"
    );
    assert!(!time("1000-1200", "1201"));
    assert!(!time("1000-1200", "095959"));
    assert!(time("-08", "085959.5"));
    assert!(time("17-", "235959.999999"));
    assert!(!time("17-", "165959"));
    assert!(
        time("1012", "101230"),
        "a single value is the range of its precision"
    );
    assert!(!time("1012", "101300"));
}

#[test]
fn datetime_ranges_take_utc_offsets_into_account() {
    let dt = |key: &str, candidate: &str| {
        one_key_passes(
            Level::Image,
            tags::ACQUISITION_DATE_TIME,
            VR::DT,
            key,
            candidate,
        )
    };
    assert!(dt("2024", "20240615103000"));
    assert!(!dt("2024", "20250101"));
    assert!(dt("202401-202403", "20240331235959.999999"));
    assert!(!dt("202401-202403", "20240401"));
    assert!(dt("20240101120000-", "20240101120000"));
    assert!(!dt("20240101120000-", "20240101115959"));
    assert!(dt("-20240101120000", "20231231"));
    // The same moment written in two time zones.
    assert!(dt("20240101120000+0100", "20240101060000-0500"));
    assert!(dt(
        "20240101110000+0000-20240101113000+0000",
        "20240101120000+0100"
    ));
    assert!(!dt(
        "20240101110000+0000-20240101113000+0000",
        "20240101120000+0000"
    ));
    // An offset that moves the moment across midnight, and a year's end.
    assert!(dt("20240101-20240101", "20231231230000-0100"));
    assert!(!dt("20240101-20240101", "20240101230000-0100"));
    assert!(dt("2025", "20241231233000-0100"));
    // A `-HHMM` after a full date is an offset, not the range separator.
    assert!(dt("20240101-0500-20240102", "20240101230000-0500"));
    assert!(
        !dt("20240101000000+1500", "20240101"),
        "an offset past +14:00 is malformed"
    );
}

fn study_at(date: &str, time: &str) -> InMemDicomObject {
    let mut record = vec![element(tags::STUDY_DATE, VR::DA, date)];
    if !time.is_empty() {
        record.push(element(tags::STUDY_TIME, VR::TM, time));
    }
    object(record)
}

const COMBINED: MatchOptions = MatchOptions {
    case_insensitive_person_names: true,
    combined_date_time: true,
    fuzzy_person_names: false,
};

#[test]
fn combined_date_time_matching_makes_one_range_of_a_date_and_its_time() {
    let keys = |date: &str, time: &str| {
        vec![
            element(tags::STUDY_DATE, VR::DA, date),
            element(tags::STUDY_TIME, VR::TM, time),
        ]
    };
    let combined = plan_with("STUDY", keys("20200101-20200103", "1000-1200"), COMBINED);
    let separate = plan("STUDY", keys("20200101-20200103", "1000-1200"));
    let cases = [
        // (date, time, combined, separate)
        ("20200101", "0959", false, false),
        ("20200101", "1000", true, true),
        ("20200101", "1300", true, false),
        ("20200102", "0300", true, false),
        ("20200103", "0300", true, false),
        ("20200103", "120059", true, true),
        ("20200103", "1201", false, false),
        ("20200104", "1100", false, false),
        ("20191231", "1100", false, false),
    ];
    for (date, time, in_combined, in_separate) in cases {
        let record = study_at(date, time);
        assert_eq!(
            combined.passes(Level::Study, &record),
            in_combined,
            "{date} {time}"
        );
        assert_eq!(
            separate.passes(Level::Study, &record),
            in_separate,
            "{date} {time}"
        );
    }

    // Open ranges: from 2020-01-02 10:00 on; up to 2020-01-02 12:00.
    let from = plan_with("STUDY", keys("20200102-", "1000-"), COMBINED);
    assert!(from.passes(Level::Study, &study_at("20200103", "0100")));
    assert!(!from.passes(Level::Study, &study_at("20200102", "0959")));
    let until = plan_with("STUDY", keys("-20200102", "-1200"), COMBINED);
    assert!(until.passes(Level::Study, &study_at("20200101", "2300")));
    assert!(!until.passes(Level::Study, &study_at("20200102", "1201")));

    // Single values: the minute 2020-01-02 10:15.
    let single = plan_with("STUDY", keys("20200102", "1015"), COMBINED);
    assert!(single.passes(Level::Study, &study_at("20200102", "101530")));
    assert!(!single.passes(Level::Study, &study_at("20200102", "1016")));

    // Keys of different forms match independently.
    let mixed = plan_with("STUDY", keys("20200101-20200103", "1000-"), COMBINED);
    assert!(!mixed.passes(Level::Study, &study_at("20200102", "0300")));
    assert!(mixed.passes(Level::Study, &study_at("20200102", "1300")));

    // A time key alone, or with a universal date key, is a time range on every day.
    let time_only = plan_with("STUDY", keys("", "1000-1200"), COMBINED);
    assert!(!time_only.passes(Level::Study, &study_at("20200102", "0300")));
    assert!(time_only.passes(Level::Study, &study_at("20200102", "1100")));
}

#[test]
fn a_candidate_without_a_time_stands_for_its_whole_day() {
    let keys = vec![
        element(tags::STUDY_DATE, VR::DA, "20200101-20200103"),
        element(tags::STUDY_TIME, VR::TM, "1000-1200"),
    ];
    let combined = plan_with("STUDY", keys.clone(), COMBINED);
    for (date, expected) in [
        ("20200101", true),
        ("20200102", true),
        ("20200103", true),
        ("20191231", false),
        ("20200104", false),
    ] {
        assert_eq!(
            combined.passes(Level::Study, &study_at(date, "")),
            expected,
            "{date}"
        );
    }
    let with_empty_time = object(vec![
        element(tags::STUDY_DATE, VR::DA, "20200102"),
        DataElement::empty(tags::STUDY_TIME, VR::TM),
    ]);
    assert!(combined.passes(Level::Study, &with_empty_time));
    // No date: no match; a malformed time: no match.
    assert!(!combined.passes(
        Level::Study,
        &object(vec![element(tags::STUDY_TIME, VR::TM, "1100")])
    ));
    assert!(!combined.passes(Level::Study, &study_at("20200102", "noon")));
    // Without combined matching the time key needs a time.
    assert!(!plan("STUDY", keys).passes(Level::Study, &study_at("20200102", "")));
}

#[test]
fn combined_date_time_pairs_the_attributes_the_dictionary_pairs() {
    for (date, time) in [
        (tags::STUDY_DATE, tags::STUDY_TIME),
        (tags::SERIES_DATE, tags::SERIES_TIME),
        (tags::ACQUISITION_DATE, tags::ACQUISITION_TIME),
        (tags::CONTENT_DATE, tags::CONTENT_TIME),
        (tags::PATIENT_BIRTH_DATE, tags::PATIENT_BIRTH_TIME),
        (tags::INSTANCE_CREATION_DATE, tags::INSTANCE_CREATION_TIME),
        (
            tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
            tags::SCHEDULED_PROCEDURE_STEP_START_TIME,
        ),
        (
            tags::PERFORMED_PROCEDURE_STEP_START_DATE,
            tags::PERFORMED_PROCEDURE_STEP_START_TIME,
        ),
    ] {
        assert_eq!(matching::paired_time_tag(date), Some(time), "{date}");
    }
    assert_eq!(matching::paired_time_tag(tags::STUDY_TIME), None);
    assert_eq!(matching::paired_time_tag(tags::PATIENT_NAME), None);

    // Inside the worklist's Scheduled Procedure Step Sequence.
    let sps = tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE;
    let step = |date: &str, time: &str| {
        object(vec![
            element(tags::MODALITY, VR::CS, "MR"),
            element(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, date),
            element(tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM, time),
        ])
    };
    let keys = object(vec![sequence(
        sps,
        vec![step("20200101-20200102", "2200-0600")],
    )]);
    let item = object(vec![sequence(sps, vec![step("20200101", "2330")])]);
    assert!(matching::matches_with(&keys, &item, COMBINED));
    // 23:30 is not between 22:00 and 06:00 on one day: separately, no match.
    assert!(!matching::matches(&keys, &item));
}

#[test]
fn under_combined_matching_the_time_key_does_not_narrow_the_index() {
    let keys = || {
        vec![
            element(tags::STUDY_DATE, VR::DA, "20200101-20200103"),
            element(tags::STUDY_TIME, VR::TM, "1000-1200"),
            element(tags::PATIENT_ID, VR::LO, "\"\""),
        ]
    };
    let targets = |plan: &QueryPlan| -> Vec<Tag> {
        Narrowing::of(plan)
            .constraints
            .iter()
            .filter_map(|constraint| match constraint.target {
                Target::Column(column) => Some(column.tag),
                _ => None,
            })
            .collect()
    };
    let separate = plan("STUDY", keys());
    assert_eq!(targets(&separate), vec![tags::STUDY_DATE, tags::STUDY_TIME]);
    let combined = plan_with("STUDY", keys(), COMBINED);
    assert_eq!(targets(&combined), vec![tags::STUDY_DATE]);
    assert_eq!(
        Narrowing::of(&combined).constraints[0].any_of,
        vec![Test::Range {
            lower: Some("20200101".into()),
            upper: Some("20200103".into())
        }],
        "the date range still narrows"
    );
    // Every key is still matched by the engine.
    assert_eq!(combined.keys_at(Level::Study).len(), 2);
    assert_eq!(combined.narrowing_keys(Level::Study).count(), 1);
    assert_eq!(
        combined.narrowing_keys(Level::Patient).count(),
        0,
        "\"\" never narrows"
    );
}

#[test]
fn empty_value_matching_finds_records_without_a_value() {
    let key = || element(tags::PATIENT_BIRTH_DATE, VR::DA, "\"\"");
    let patient = |birth: Option<&str>| {
        let mut record = vec![element(tags::PATIENT_ID, VR::LO, "P")];
        match birth {
            Some("") => record.push(DataElement::empty(tags::PATIENT_BIRTH_DATE, VR::DA)),
            Some(date) => record.push(element(tags::PATIENT_BIRTH_DATE, VR::DA, date)),
            None => {}
        }
        record
    };
    assert!(passes(Level::Patient, key(), patient(None)));
    assert!(passes(Level::Patient, key(), patient(Some(""))));
    assert!(!passes(Level::Patient, key(), patient(Some("19700101"))));
    let name = || element(tags::PATIENT_NAME, VR::PN, "\"\"");
    assert!(passes(Level::Patient, name(), vec![]));
    assert!(!passes(
        Level::Patient,
        name(),
        vec![element(tags::PATIENT_NAME, VR::PN, "Doe")]
    ));
    // `""` among other values, or inside a value, is no empty value key.
    assert!(!matching::is_empty_value_key(&multi(
        tags::PATIENT_NAME,
        VR::PN,
        &["\"\"", "Doe"]
    )));
    assert!(!matching::is_empty_value_key(&element(
        tags::PATIENT_NAME,
        VR::PN,
        "\"\"Doe"
    )));
}

#[test]
fn sequence_matching_needs_one_item_matching_every_key_and_answers_with_it() {
    let sps = tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE;
    let step = |modality: &str, station: &str, date: &str| {
        object(vec![
            element(tags::MODALITY, VR::CS, modality),
            element(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, station),
            element(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, date),
        ])
    };
    let worklist_item = object(vec![
        element(tags::PATIENT_ID, VR::LO, "P1"),
        sequence(
            sps,
            vec![step("CT", "CT1", "20240101"), step("MR", "MR1", "20240615")],
        ),
    ]);
    let query = |modality: &str, date: &str| {
        object(vec![
            element(tags::PATIENT_ID, VR::LO, ""),
            sequence(sps, vec![step(modality, "", date)]),
        ])
    };
    assert!(matching::matches(
        &query("MR", "20240601-20240630"),
        &worklist_item
    ));
    assert!(matching::matches(&query("C*", ""), &worklist_item));
    assert!(
        !matching::matches(&query("CT", "20240601-20240630"), &worklist_item),
        "both keys must hold in one item"
    );
    assert!(
        matching::matches(&query("", ""), &object(vec![])),
        "universal item"
    );
    assert!(!matching::matches(&query("CT", ""), &object(vec![])));

    let response = matching::response_identifier(&query("MR", "2024-"), &worklist_item);
    let items = response
        .get(sps)
        .and_then(|e| e.value().items())
        .expect("items");
    assert_eq!(items.len(), 1, "only the matching item");
    assert_eq!(text(&items[0], tags::SCHEDULED_STATION_AE_TITLE), "MR1");
    assert_eq!(text(&response, tags::PATIENT_ID), "P1");
}

#[test]
fn person_names_match_case_insensitively_or_sensitively_as_configured() {
    let candidate = || vec![element(tags::PATIENT_NAME, VR::PN, "Doe^John^^")];
    let sensitive = MatchOptions {
        case_insensitive_person_names: false,
        ..MatchOptions::default()
    };
    let with = |key: &str, options| {
        plan_with(
            "PATIENT",
            vec![element(tags::PATIENT_NAME, VR::PN, key)],
            options,
        )
        .passes(Level::Patient, &object(candidate()))
    };
    let insensitive = MatchOptions::default();
    for key in ["DOE^JOHN", "doe^john", "Doe^John", "DOE*", "d?e^j*"] {
        assert!(with(key, insensitive), "{key}");
    }
    for (key, expected) in [
        ("Doe^John", true),
        ("Doe*", true),
        ("D?e^J*", true),
        ("DOE^JOHN", false),
        ("doe*", false),
    ] {
        assert_eq!(with(key, sensitive), expected, "{key}");
    }
    assert!(!with("Doe^Jane", insensitive));
    assert!(!with("Doe", insensitive), "components are not prefixes");
}

const FUZZY: MatchOptions = MatchOptions {
    case_insensitive_person_names: true,
    combined_date_time: false,
    fuzzy_person_names: true,
};

/// Whether a patient named `candidate` passes the one Patient's Name key `key` under `options`.
fn name_passes(key: &str, candidate: &str, options: MatchOptions) -> bool {
    plan_with(
        "PATIENT",
        vec![element(tags::PATIENT_NAME, VR::PN, key)],
        options,
    )
    .passes(
        Level::Patient,
        &object(vec![element(tags::PATIENT_NAME, VR::PN, candidate)]),
    )
}

#[test]
fn fuzzy_person_names_match_word_prefixes_in_any_order_without_case_or_accents() {
    for (key, candidate) in [
        ("jo", "Jöhn^DOE"),
        ("jo", "Smith^John"),
        ("JO", "smith^john"),
        ("doe", "Jöhn^DOE"),
        ("doe jo", "John^Doe"),
        ("DOE^J", "John^Doe"),
        ("j^d", "Doe^John"),
        ("john doe", "DOE^JOHN^^^"),
        ("muller", "Müller^Hans"),
        ("MÜLLER", "Muller^Hans"),
        ("francois", "Dupont^François"),
        ("zoe", "Zoë^Anne"),
        ("strass", "Straße^Max"),
        ("soren", "Kierkegaard^Søren"),
        ("lodz", "Łódź^City"),
        ("obrien", "O'Brien^Pat"),
        ("jones", "Smith-Jones^Ann"),
        ("ann", "Smith-Jones^Ann"),
        // Every component group takes part.
        ("山", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("yam", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        // Wild cards within a word: the pattern matches the beginning of a word.
        ("*oe", "Doe^Jane"),
        ("*oe", "Smith^Joel"),
        ("j?n", "Doe^Jane"),
        ("*doe*", "Jane^Mcdoenald"),
    ] {
        assert!(
            name_passes(key, candidate, FUZZY),
            "{key} should match {candidate}"
        );
    }
    for (key, candidate) in [
        ("ohn", "John^Doe"),
        ("jo", "Doe^Bojo"),
        ("john smith", "John^Doe"),
        ("jon", "John^Doe"),
        ("j?n", "John^Doe"),
        ("muller", "Mueller^Hans"),
        ("jo", ""),
    ] {
        assert!(
            !name_passes(key, candidate, FUZZY),
            "{key} should not match {candidate}"
        );
    }
}

#[test]
fn without_fuzzy_matching_the_same_keys_match_as_single_values() {
    assert!(!name_passes("jo", "Jöhn^DOE", MatchOptions::default()));
    assert!(!name_passes("doe jo", "John^Doe", MatchOptions::default()));
    assert!(!name_passes(
        "muller^hans",
        "Müller^Hans",
        MatchOptions::default()
    ));
    assert!(name_passes(
        "müller^hans",
        "Müller^Hans",
        MatchOptions::default()
    ));
    // A fuzzy key of several values matches when one of them does.
    let key = multi(tags::PATIENT_NAME, VR::PN, &["zed", "jo"]);
    let candidate = object(vec![element(tags::PATIENT_NAME, VR::PN, "Doe^John")]);
    assert!(plan_with("PATIENT", vec![key.clone()], FUZZY).passes(Level::Patient, &candidate));
    assert!(!plan("PATIENT", vec![key]).passes(Level::Patient, &candidate));
    // A key without a word matches as without fuzzy matching; the rules of other VRs stay.
    assert!(name_passes("^", "", FUZZY) == name_passes("^", "", MatchOptions::default()));
    let lo = |options| {
        plan_with(
            "PATIENT",
            vec![element(tags::PATIENT_ID, VR::LO, "p-1")],
            options,
        )
        .passes(
            Level::Patient,
            &object(vec![element(tags::PATIENT_ID, VR::LO, "P-1")]),
        )
    };
    assert!(!lo(FUZZY), "fuzzy matching is for person names only");
}

#[test]
fn fuzzy_person_name_keys_never_narrow_the_index() {
    let keys = || {
        vec![
            element(tags::PATIENT_NAME, VR::PN, "jo"),
            element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "smi*"),
            element(tags::STUDY_DATE, VR::DA, "20240101-"),
        ]
    };
    let targets = |plan: &QueryPlan| -> Vec<Tag> {
        Narrowing::of(plan)
            .constraints
            .iter()
            .filter_map(|constraint| match constraint.target {
                Target::Column(column) => Some(column.tag),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        targets(&plan("STUDY", keys())),
        vec![
            tags::PATIENT_NAME,
            tags::STUDY_DATE,
            tags::REFERRING_PHYSICIAN_NAME
        ]
    );
    let fuzzy = plan_with("STUDY", keys(), FUZZY);
    assert_eq!(targets(&fuzzy), vec![tags::STUDY_DATE]);
    // The engine still matches the names.
    assert_eq!(fuzzy.keys_at(Level::Patient).len(), 1);
    let patient = object(vec![element(tags::PATIENT_NAME, VR::PN, "Doe^Jöhn")]);
    assert!(fuzzy.passes(Level::Patient, &patient));
    assert!(!fuzzy.passes(
        Level::Patient,
        &object(vec![element(tags::PATIENT_NAME, VR::PN, "Doe^Ann")])
    ));
}

#[test]
fn names_fold_to_lower_case_without_accents() {
    assert_eq!(matching::fold_name("Jöhn^DOE"), "john^doe");
    assert_eq!(matching::fold_name("ﬁnn Ｊｏｅ"), "finn joe");
    assert_eq!(matching::fold_name("Ærø^Œuvre"), "aero^oeuvre");
    assert_eq!(matching::fold_name("O’Brien"), "obrien");
    assert_eq!(matching::fold_name("Çelik^Ğ"), "celik^g");
}

#[test]
fn numbers_match_by_value() {
    let series = |key: &str, candidate: &str| {
        one_key_passes(Level::Series, tags::SERIES_NUMBER, VR::IS, key, candidate)
    };
    assert!(series("5", "005"));
    assert!(!series("5", "6"));
}

/// One of pydicom's character-set files (tests/data/charset): its Patient's Name as it should
/// read, its bytes in the file, and its Specific Character Set when it uses ISO 2022 code
/// extensions.
struct CharsetFile {
    file: &'static str,
    name: &'static str,
    bytes: &'static [u8],
    /// Specific Character Set as written in the file when it uses code extensions (PS3.5
    /// §6.1.2.5), which dimsum decodes after dicom-rs; `None` for the single-byte and UTF-8
    /// sets and GB18030, which dicom-rs decodes alone.
    extensions: Option<&'static str>,
}

const CHARSET_FILES: &[CharsetFile] = &[
    CharsetFile {
        file: "chrArab.dcm",
        name: "قباني^لنزار",
        bytes: b"\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1",
        extensions: None,
    },
    CharsetFile {
        file: "chrFren.dcm",
        name: "Buc^Jérôme",
        bytes: b"Buc^J\xe9r\xf4me",
        extensions: None,
    },
    CharsetFile {
        file: "chrGerm.dcm",
        name: "Äneas^Rüdiger",
        bytes: b"\xc4neas^R\xfcdiger",
        extensions: None,
    },
    CharsetFile {
        file: "chrGreek.dcm",
        name: "Διονυσιος",
        bytes: b"\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2",
        extensions: None,
    },
    CharsetFile {
        file: "chrHbrw.dcm",
        name: "שרון^דבורה",
        bytes: b"\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4",
        extensions: None,
    },
    CharsetFile {
        file: "chrRuss.dcm",
        name: "Люкceмбypг",
        bytes: b"\xbb\xee\xdace\xdc\xd1yp\xd3",
        extensions: None,
    },
    CharsetFile {
        file: "chrX1.dcm",
        name: "Wang^XiaoDong=王^小東=",
        bytes: b"Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=",
        extensions: None,
    },
    CharsetFile {
        file: "chrX2.dcm",
        name: "Wang^XiaoDong=王^小东=",
        bytes: b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
        extensions: None,
    },
    CharsetFile {
        file: "chrH31.dcm",
        name: "Yamada^Tarou=山田^太郎=やまだ^たろう",
        bytes: b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        extensions: Some("\\ISO 2022 IR 87"),
    },
    CharsetFile {
        file: "chrH32.dcm",
        name: "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
        bytes: b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
        extensions: Some("ISO 2022 IR 13\\ISO 2022 IR 87"),
    },
    CharsetFile {
        file: "chrI2.dcm",
        name: "Hong^Gildong=洪^吉洞=홍^길동",
        bytes: b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
        extensions: Some("\\ISO 2022 IR 149"),
    },
    CharsetFile {
        file: "chrJapMulti.dcm",
        name: "やまだ^たろう",
        bytes: b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        extensions: Some("\\ISO 2022 IR 87"),
    },
    CharsetFile {
        file: "chrKoreanMulti.dcm",
        name: "김희중",
        bytes: b"\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf",
        extensions: Some("\\ISO 2022 IR 149"),
    },
];

fn charset_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/charset")
        .join(file)
}

/// The patient record of a character-set file, as the archive indexes it.
fn patient_record(file: &str) -> InMemDicomObject {
    let part10 = dimsum_pacs::file::read_part10(&charset_path(file), &ScanLimits::default())
        .unwrap_or_else(|error| panic!("{file}: {error}"));
    let [patient, ..] = split_by_level(part10.attributes, |_| true);
    patient
}

/// A PATIENT level identifier with Patient's Name `name`, sent encoded in the character set
/// `charset` (the bytes on the wire), and decoded as an SCP decodes it.
fn received_key(name: &str, charset: &InMemElement) -> InMemDicomObject {
    let keys = object(vec![
        charset.clone(),
        element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
        element(tags::PATIENT_NAME, VR::PN, name),
        element(tags::PATIENT_ID, VR::LO, ""),
    ]);
    let bytes = identifier::encode(&keys, EXPLICIT).expect("encoded");
    identifier::decode(&bytes, EXPLICIT, &ScanLimits::default()).expect("decoded")
}

fn finds(keys: InMemDicomObject, record: &InMemDicomObject) -> bool {
    QueryPlan::new(QueryModel::PatientRoot, QueryService::Find, keys)
        .expect("plan")
        .passes(Level::Patient, record)
}

fn utf8() -> InMemElement {
    element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192")
}

/// The start of `name`: its first `n` characters, then `*`.
fn prefix(name: &str, n: usize) -> String {
    format!("{}*", name.chars().take(n).collect::<String>())
}

#[test]
fn names_in_single_byte_and_unicode_character_sets_are_found_by_utf8_and_by_their_own_set() {
    for file in CHARSET_FILES.iter().filter(|f| f.extensions.is_none()) {
        let record = patient_record(file.file);
        let own = record
            .get(tags::SPECIFIC_CHARACTER_SET)
            .expect("the file's character set")
            .clone();
        for charset in [utf8(), own.clone()] {
            let set = format!("{:?} in {}", charset.value(), file.file);
            assert!(finds(received_key(file.name, &charset), &record), "{set}");
            assert!(
                finds(received_key(&prefix(file.name, 3), &charset), &record),
                "{set}"
            );
            let mut one_unknown = file.name.chars().collect::<Vec<_>>();
            one_unknown[1] = '?';
            let one_unknown: String = one_unknown.into_iter().collect();
            assert!(
                finds(received_key(&one_unknown, &charset), &record),
                "{set}"
            );
            assert!(
                !finds(received_key(&prefix("Zz", 2), &charset), &record),
                "{set}"
            );
        }

        // The response carries the file's character set and its name in that set's bytes,
        // which decode to the name.
        let plan = QueryPlan::new(
            QueryModel::PatientRoot,
            QueryService::Find,
            received_key(&prefix(file.name, 2), &utf8()),
        )
        .expect("plan");
        let response = plan.response(&[&record]);
        assert_eq!(response.get(tags::SPECIFIC_CHARACTER_SET), Some(&own));
        let bytes = identifier::encode(&response, EXPLICIT).expect("encoded");
        assert!(
            bytes.windows(file.bytes.len()).any(|w| w == file.bytes),
            "{}: the name's bytes in the response",
            file.file
        );
        let back = identifier::decode(&bytes, EXPLICIT, &ScanLimits::default()).expect("decoded");
        assert_eq!(
            text(&back, tags::PATIENT_NAME).trim_end(),
            file.name,
            "{}",
            file.file
        );
    }
}

/// A PATIENT level identifier as a peer sends it in explicit VR little endian, with Specific
/// Character Set `charset` and Patient's Name `name` written as these bytes, decoded as an SCP
/// decodes it.
fn received_raw_key(charset: &str, name: &[u8]) -> InMemDicomObject {
    let mut bytes = Vec::new();
    for (tag, vr, value) in [
        (tags::SPECIFIC_CHARACTER_SET, b"CS", charset.as_bytes()),
        (tags::QUERY_RETRIEVE_LEVEL, b"CS", b"PATIENT".as_slice()),
        (tags::PATIENT_NAME, b"PN", name),
        (tags::PATIENT_ID, b"LO", b""),
    ] {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(b' ');
        }
        bytes.extend_from_slice(&tag.group().to_le_bytes());
        bytes.extend_from_slice(&tag.element().to_le_bytes());
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&u16::try_from(value.len()).expect("short").to_le_bytes());
        bytes.extend_from_slice(&value);
    }
    identifier::decode(&bytes, EXPLICIT, &ScanLimits::default()).expect("decoded")
}

#[test]
fn names_in_iso_2022_code_extensions_are_found_by_utf8_and_by_their_own_encoding() {
    // dicom-rs 0.10 decodes these files with the first value of Specific Character Set only;
    // dimsum decodes the escape sequences after it (dimsum_dataset::charset), so the stored
    // name is Unicode text and the record declares UTF-8.
    for file in CHARSET_FILES.iter().filter(|f| f.extensions.is_some()) {
        let own = file.extensions.expect("code extensions");
        let record = patient_record(file.file);
        assert_eq!(
            text(&record, tags::PATIENT_NAME).trim_end(),
            file.name,
            "{}",
            file.file
        );
        assert_eq!(
            text(&record, tags::SPECIFIC_CHARACTER_SET),
            "ISO_IR 192",
            "{}",
            file.file
        );

        // UTF-8 keys: the whole name, its start, one character unknown, a group inside.
        assert!(
            finds(received_key(file.name, &utf8()), &record),
            "{}",
            file.file
        );
        assert!(
            finds(received_key(&prefix(file.name, 2), &utf8()), &record),
            "{}",
            file.file
        );
        let mut one_unknown = file.name.chars().collect::<Vec<_>>();
        one_unknown[1] = '?';
        let one_unknown: String = one_unknown.into_iter().collect();
        assert!(
            finds(received_key(&one_unknown, &utf8()), &record),
            "{}",
            file.file
        );
        let ideographic = file.name.split('=').nth(1).unwrap_or(file.name);
        let inside = format!("*{}*", ideographic.chars().take(2).collect::<String>());
        assert!(
            finds(received_key(&inside, &utf8()), &record),
            "{}",
            file.file
        );
        // Other names are not found: another ideograph, the name with a character too many.
        assert!(
            !finds(received_key("*鈴木*", &utf8()), &record),
            "{}",
            file.file
        );
        let longer = format!("{}山", file.name.trim_end_matches('='));
        assert!(
            !finds(received_key(&longer, &utf8()), &record),
            "{}",
            file.file
        );

        // Keys in the file's own encoding, as a peer using that character set sends them:
        // the file's bytes, and a wild card around its first encoded group.
        assert!(
            finds(received_raw_key(own, file.bytes), &record),
            "{}",
            file.file
        );
        let start = file
            .bytes
            .iter()
            .position(|&b| b == 0x1B)
            .expect("an escape");
        // The group ends where G0 returns to a one-byte set (in JIS X 0208, `^` and `=` are
        // halves of characters), or at the next delimiter after a G1 set.
        let rest = &file.bytes[start..];
        let end = rest
            .windows(2)
            .position(|w| w == b"\x1b(")
            .map(|n| n + 3)
            .or_else(|| rest.iter().position(|&b| b == b'^' || b == b'='))
            .map_or(file.bytes.len(), |n| start + n);
        let wild = [b"*".as_slice(), &file.bytes[start..end], b"*"].concat();
        let key = received_raw_key(own, &wild);
        assert_eq!(
            text(&key, tags::SPECIFIC_CHARACTER_SET),
            "ISO_IR 192",
            "{}: the key is decoded too",
            file.file
        );
        assert!(finds(key, &record), "{}", file.file);
        let other = received_raw_key(own, b"\x1b$B$?$m$&\x1b(B^\x1b$B$d$^$@\x1b(B");
        assert!(!finds(other, &record), "{}: たろう^やまだ", file.file);

        // A plain ASCII alphabetic group matches as usual.
        if let Some(alphabetic) = file.name.split('=').next().filter(|g| g.is_ascii())
            && file.name.contains('=')
        {
            assert!(
                finds(received_key(alphabetic, &utf8()), &record),
                "{}",
                file.file
            );
        }

        // The response declares UTF-8, holds the name in UTF-8, and reads back as the name.
        let plan = QueryPlan::new(
            QueryModel::PatientRoot,
            QueryService::Find,
            received_raw_key(own, file.bytes),
        )
        .expect("plan");
        let response = plan.response(&[&record]);
        let bytes = identifier::encode(&response, EXPLICIT).expect("encoded");
        let back = identifier::decode(&bytes, EXPLICIT, &ScanLimits::default()).expect("decoded");
        assert_eq!(text(&back, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        let utf8_name = file.name.trim_end_matches('=').as_bytes();
        assert!(
            bytes.windows(utf8_name.len()).any(|w| w == utf8_name),
            "{}: the name's UTF-8 bytes in the response",
            file.file
        );
        assert!(!bytes.contains(&0x1B), "{}: no escape left", file.file);
        assert_eq!(
            text(&back, tags::PATIENT_NAME).trim_end(),
            file.name,
            "{}",
            file.file
        );
    }
}

#[test]
fn a_sequence_item_with_its_own_character_set_is_decoded_with_it() {
    // chrSQEncoding: a UTF-8 data set whose sequence item declares ISO 2022 IR 13 / IR 87.
    let part10 =
        dimsum_pacs::file::read_part10(&charset_path("chrSQEncoding.dcm"), &ScanLimits::default())
            .expect("read");
    let code = tags::REQUESTED_PROCEDURE_CODE_SEQUENCE;
    let item_key = |name: &str| {
        object(vec![sequence(
            code,
            vec![object(vec![element(tags::PATIENT_NAME, VR::PN, name)])],
        )])
    };
    let item = part10
        .attributes
        .get(code)
        .and_then(|e| e.value().items())
        .and_then(|items| items.first())
        .expect("the item");
    assert_eq!(
        text(item, tags::PATIENT_NAME).trim_end(),
        "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
    );
    assert_eq!(text(item, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    assert_eq!(
        text(&part10.attributes, tags::SPECIFIC_CHARACTER_SET),
        "ISO_IR 192"
    );
    assert!(matching::matches(&item_key("ﾔﾏﾀﾞ*"), &part10.attributes));
    assert!(matching::matches(&item_key("*山田*"), &part10.attributes));
    assert!(matching::matches(
        &item_key("ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
        &part10.attributes
    ));
    assert!(!matching::matches(&item_key("ﾀﾛｳ*"), &part10.attributes));
    assert!(!matching::matches(&item_key("*鈴木*"), &part10.attributes));
    assert!(matching::matches(&item_key("*"), &part10.attributes));
}

/// Not a benchmark that can fail: it shows (with `--nocapture`) what compiling the plan once
/// saves when a peer sends a 1 MB key, and checks the answers are the same either way.
#[test]
fn a_plan_with_a_1_mb_key_matches_10_000_candidates_without_decoding_it_again() {
    let uids: Vec<String> = (0..60_000)
        .map(|i| format!("1.2.826.0.1.3680043.{i}"))
        .collect();
    let key = multi(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &uids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let key_length: usize = uids.iter().map(|u| u.len() + 1).sum();
    assert!(key_length > 1_000_000);
    let candidates: Vec<InMemDicomObject> = (0..10_000)
        .map(|i| {
            object(vec![element(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                &format!("1.2.826.0.1.3680043.{}", i * 7),
            )])
        })
        .collect();

    let start = Instant::now();
    let plan = plan("STUDY", vec![key.clone()]);
    let compiled = candidates
        .iter()
        .filter(|record| plan.passes(Level::Study, record))
        .count();
    let compiled_time = start.elapsed();

    // What every candidate cost before: the key decoded for each one.
    let sample = 50;
    let start = Instant::now();
    let per_candidate = candidates[..sample]
        .iter()
        .filter(|record| matching::key_matches(&key, record.get(tags::STUDY_INSTANCE_UID)))
        .count();
    let per_candidate_time = start.elapsed() * (candidates.len() / sample) as u32;

    assert_eq!(compiled, (0..10_000).filter(|i| i * 7 < 60_000).count());
    assert_eq!(per_candidate, sample);
    eprintln!(
        "1 MB UID list key, 10,000 candidates: plan compiled once {compiled_time:?}; \
         decoded per candidate about {per_candidate_time:?} (extrapolated from {sample})"
    );
}

#[test]
fn a_key_of_unknown_vr_takes_the_candidate_vr() {
    // DCMTK and pydicom send text values over 64 KiB as UN in explicit VR.
    let un = |tag: Tag, text: &str| {
        DataElement::new(
            tag,
            VR::UN,
            PrimitiveValue::U8(text.as_bytes().to_vec().into()),
        )
    };
    let uids = un(tags::STUDY_INSTANCE_UID, "1.2.3\\1.2.4");
    assert!(passes(
        Level::Study,
        uids.clone(),
        vec![element(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.4")]
    ));
    assert!(!passes(
        Level::Study,
        uids,
        vec![element(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.5")]
    ));
    // Compiled for the first candidate's VR, then for another's: the same answers.
    let plan = plan("STUDY", vec![un(tags::STUDY_DESCRIPTION, "head*")]);
    let lo = object(vec![element(tags::STUDY_DESCRIPTION, VR::LO, "head CT")]);
    let st = object(vec![element(tags::STUDY_DESCRIPTION, VR::ST, "head CT")]);
    let date = object(vec![element(tags::STUDY_DESCRIPTION, VR::DA, "20240101")]);
    assert!(plan.passes(Level::Study, &lo));
    assert!(plan.passes(Level::Study, &st));
    assert!(!plan.passes(Level::Study, &date));
    assert!(plan.passes(Level::Study, &lo));
    // A PN key of unknown VR follows the configured case rule.
    let sensitive = MatchOptions {
        case_insensitive_person_names: false,
        ..MatchOptions::default()
    };
    let name = object(vec![element(tags::PATIENT_NAME, VR::PN, "Doe^John")]);
    let key = || vec![un(tags::PATIENT_NAME, "DOE*")];
    assert!(plan_with("PATIENT", key(), MatchOptions::default()).passes(Level::Patient, &name));
    assert!(!plan_with("PATIENT", key(), sensitive).passes(Level::Patient, &name));
}
