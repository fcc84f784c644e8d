//! QIDO-RS over a real archive (PS3.18 10.6): studies, series and instances stored by STOW-RS
//! into a temporary archive are searched over HTTP at every level and in every scoped form, with
//! each kind of matching (single value, wild cards, ranges, UID lists, keys by keyword and by
//! tag, keys of lower levels), includefield (lists and `all`), paging and the server's maximum,
//! fuzzy matching of person names, JSON and XML, and the errors; the Retrieve URLs are fetched.

// The helpers of every server test; not all of them are used here.
#[allow(unused_imports)]
mod common;

use common::*;
use dimsum_dataset::dicom_core::Tag;
use serde_json::Value;

const ROOT: &str = "1.2.826.0.1.3680043.2.1125.9";

/// A study of the test archive: its patient and its series.
struct StudySpec {
    study: &'static str,
    patient_name: &'static str,
    patient_id: &'static str,
    date: &'static str,
    description: &'static str,
    accession: &'static str,
    /// (series suffix, modality, description, instances)
    series: &'static [(&'static str, &'static str, &'static str, u32)],
}

const A: &str = "1.2.826.0.1.3680043.2.1125.9.1";
const B: &str = "1.2.826.0.1.3680043.2.1125.9.2";
const C: &str = "1.2.826.0.1.3680043.2.1125.9.3";
const D: &str = "1.2.826.0.1.3680043.2.1125.9.4";

const STUDIES: &[StudySpec] = &[
    StudySpec {
        study: A,
        patient_name: "Jöhn^DOE",
        patient_id: "P1",
        date: "20240105",
        description: "Chest CT",
        accession: "ACC1",
        series: &[("1", "CT", "Axial", 3), ("2", "MR", "Scout", 1)],
    },
    StudySpec {
        study: B,
        patient_name: "Smith^John",
        patient_id: "P2",
        date: "20230610",
        description: "Head MR",
        accession: "ACC2",
        series: &[("1", "MR", "T1", 2)],
    },
    StudySpec {
        study: C,
        patient_name: "Müller^Hans",
        patient_id: "P3",
        date: "19991231",
        description: "Knee",
        accession: "ACC3",
        series: &[("1", "CR", "Lateral", 1)],
    },
    StudySpec {
        study: D,
        patient_name: "Doe^Jane",
        patient_id: "P4",
        date: "20250101",
        description: "Abdomen",
        accession: "X-9",
        series: &[("1", "CT", "Portal", 1)],
    },
];

fn series_uid(study: &str, suffix: &str) -> String {
    format!("{study}.{suffix}")
}

fn sop_uid(study: &str, suffix: &str, number: u32) -> String {
    format!("{study}.{suffix}.{number}")
}

/// The Part 10 file of one instance of the test archive.
fn file(spec: &StudySpec, series: &(&str, &str, &str, u32), number: u32) -> Vec<u8> {
    let (suffix, modality, description, _) = *series;
    let sop = sop_uid(spec.study, suffix, number);
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let object = InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
        text(tags::SOP_CLASS_UID, VR::UI, CT),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::STUDY_DATE, VR::DA, spec.date),
        text(tags::STUDY_TIME, VR::TM, "101500"),
        text(tags::ACCESSION_NUMBER, VR::SH, spec.accession),
        text(tags::MODALITY, VR::CS, modality),
        text(tags::INSTITUTION_NAME, VR::LO, "Dimsum Hospital"),
        text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Smith^Ann"),
        text(tags::STUDY_DESCRIPTION, VR::LO, spec.description),
        text(tags::SERIES_DESCRIPTION, VR::LO, description),
        text(tags::PATIENT_NAME, VR::PN, spec.patient_name),
        text(tags::PATIENT_ID, VR::LO, spec.patient_id),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        text(tags::PATIENT_SEX, VR::CS, "O"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, spec.study),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &series_uid(spec.study, suffix),
        ),
        text(tags::STUDY_ID, VR::SH, "1"),
        text(tags::SERIES_NUMBER, VR::IS, suffix),
        text(tags::INSTANCE_NUMBER, VR::IS, &number.to_string()),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(4_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(4_u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8((0..2000).map(|i| (i % 251) as u8).collect()),
        ),
    ]);
    let mut bytes =
        encode_header(&FileMeta::new(CT, &sop, EXPLICIT, "1.2.3", "TEST")).expect("meta");
    bytes.extend_from_slice(&identifier::encode(&object, EXPLICIT).expect("data set"));
    bytes
}

/// Every file of the test archive: 4 studies, 5 series, 8 instances.
fn files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for spec in STUDIES {
        for series in spec.series {
            for number in 1..=series.3 {
                files.push((
                    sop_uid(spec.study, series.0, number),
                    file(spec, series, number),
                ));
            }
        }
    }
    files
}

/// The archive with the test studies stored through STOW-RS.
async fn archive(config: WebConfig) -> Served {
    let served = Served::start(config).await;
    let bodies: Vec<Vec<u8>> = files().into_iter().map(|(_, file)| file).collect();
    let response = served
        .stow("/studies", DICOM_MULTIPART, multipart(&bodies))
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(served.instances().await, 8);
    served
}

async fn get(served: &Served, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = served.client.get(served.url(path));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.expect("QIDO-RS request")
}

/// The results of a JSON search: its status and the data sets (none for 204).
async fn search(served: &Served, path: &str) -> (u16, Vec<Value>) {
    let response = get(served, path, None).await;
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    match status {
        200 => match json(&body) {
            Value::Array(results) => (status, results),
            other => panic!("{path}: not an array: {other}"),
        },
        204 => {
            assert!(body.is_empty(), "{path}: 204 with a body {body:?}");
            (status, Vec::new())
        }
        _ => panic!("{path}: {status} {body}"),
    }
}

/// The first value of `tag` (eight hex digits) in each result, sorted.
fn values(results: &[Value], tag: &str) -> Vec<String> {
    let mut values: Vec<String> = results
        .iter()
        .map(|result| text(result, tag).unwrap_or_default())
        .collect();
    values.sort();
    values
}

fn text(result: &Value, tag: &str) -> Option<String> {
    let value = &result[tag]["Value"][0];
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Object(name) => name["Alphabetic"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// The Study Instance UIDs a study search finds, sorted.
async fn studies_found(served: &Served, query: impl AsRef<str>) -> Vec<String> {
    let (_, results) = search(served, &format!("/studies?{}", query.as_ref())).await;
    values(&results, "0020000D")
}

fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studies_come_with_the_required_attributes_and_retrieve_urls_that_resolve() {
    let served = archive(WebConfig::default()).await;
    let response = get(&served, "/studies", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/dicom+json");
    let results = match json(&response.text().await.expect("body")) {
        Value::Array(results) => results,
        other => panic!("{other}"),
    };
    assert_eq!(values(&results, "0020000D"), [A, B, C, D]);
    let a = results
        .iter()
        .find(|r| text(r, "0020000D").as_deref() == Some(A))
        .expect("study A");
    // PS3.18 Table 10.6.3-3.
    for tag in [
        "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00100010",
        "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208",
        "00081190",
    ] {
        assert!(a.get(tag).is_some(), "{tag} missing from {a}");
    }
    assert_eq!(text(a, "00080020").as_deref(), Some("20240105"));
    assert_eq!(text(a, "00100010").as_deref(), Some("Jöhn^DOE"));
    assert_eq!(text(a, "00080056").as_deref(), Some("ONLINE"));
    assert_eq!(text(a, "00201206").as_deref(), Some("2"));
    assert_eq!(text(a, "00201208").as_deref(), Some("4"));
    let mut modalities: Vec<&str> = a["00080061"]["Value"]
        .as_array()
        .expect("Modalities in Study")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    modalities.sort();
    assert_eq!(modalities, ["CT", "MR"]);
    assert_eq!(text(a, "00080005").as_deref(), Some("ISO_IR 192"));
    assert!(a.get("00080052").is_none(), "no Query/Retrieve Level: {a}");
    assert!(a.get("00081030").is_none(), "not asked for: {a}");
    assert_eq!(
        text(a, "00081190"),
        Some(served.url(&format!("/studies/{A}")))
    );

    // The study's Retrieve URL gives its four instances back.
    let response = served
        .client
        .get(text(a, "00081190").expect("url"))
        .header("Accept", ANY_SYNTAX)
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(response.status(), 200);
    assert_eq!(parts_of(response).await.len(), 4);

    // An instance's Retrieve URL gives the instance back as stored.
    let (status, instances) =
        search(&served, &format!("/studies/{A}/instances?InstanceNumber=2")).await;
    assert_eq!(status, 200);
    assert_eq!(instances.len(), 1);
    let url = text(&instances[0], "00081190").expect("Retrieve URL");
    let sop = sop_uid(A, "1", 2);
    assert_eq!(
        url,
        served.url(&format!("/studies/{A}/series/{A}.1/instances/{sop}"))
    );
    let response = served
        .client
        .get(url)
        .header("Accept", ANY_SYNTAX)
        .send()
        .await
        .expect("WADO-RS");
    assert_eq!(response.status(), 200);
    let parts = parts_of(response).await;
    assert_eq!(parts.len(), 1);
    let stored = files()
        .into_iter()
        .find(|(uid, _)| *uid == sop)
        .expect("file")
        .1;
    let (meta, data_set) = split(&parts[0].1);
    assert_eq!(meta.media_storage_sop_instance_uid, sop);
    assert!(
        data_set == split(&stored).1,
        "the instance's data set comes back as stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_and_scoped_form_is_searched() {
    let served = archive(WebConfig::default()).await;

    let (_, series) = search(&served, "/series").await;
    assert_eq!(series.len(), 5);
    let a1 = series
        .iter()
        .find(|r| text(r, "0020000E").as_deref() == Some(&series_uid(A, "1")))
        .expect("series A.1");
    // PS3.18 Table 10.6.3-4, with the study's attributes (10.6.3.3: not scoped by the path).
    for tag in [
        "00080060", "0020000E", "00200011", "00201209", "00081190", "0020000D", "00100010",
    ] {
        assert!(a1.get(tag).is_some(), "{tag} missing from {a1}");
    }
    assert_eq!(text(a1, "00201209").as_deref(), Some("3"));
    assert_eq!(text(a1, "00080060").as_deref(), Some("CT"));
    assert_eq!(
        text(a1, "00081190"),
        Some(served.url(&format!("/studies/{A}/series/{A}.1")))
    );

    let (_, scoped) = search(&served, &format!("/studies/{A}/series")).await;
    assert_eq!(
        values(&scoped, "0020000E"),
        [series_uid(A, "1"), series_uid(A, "2")]
    );
    assert!(
        scoped[0].get("00100010").is_none(),
        "the study's attributes are left out when the path names it: {}",
        scoped[0]
    );

    let (_, instances) = search(&served, "/instances").await;
    assert_eq!(instances.len(), 8);
    let one = &instances[0];
    // PS3.18 Table 10.6.3-5, with the study's and the series' attributes.
    for tag in [
        "00080016", "00080018", "00080056", "00200013", "00280010", "00280011", "00280100",
        "00081190", "0020000E", "0020000D",
    ] {
        assert!(one.get(tag).is_some(), "{tag} missing from {one}");
    }
    assert_eq!(text(one, "00280010").as_deref(), Some("4"));

    let (_, in_study) = search(&served, &format!("/studies/{A}/instances")).await;
    assert_eq!(in_study.len(), 4);
    assert!(in_study[0].get("0020000E").is_some(), "series keys kept");
    assert!(in_study[0].get("00100010").is_none(), "study keys left out");

    let (_, in_series) = search(&served, &format!("/studies/{A}/series/{A}.1/instances")).await;
    assert_eq!(
        values(&in_series, "00080018"),
        [1, 2, 3].map(|n| sop_uid(A, "1", n))
    );
    assert!(in_series[0].get("0020000E").is_some());

    // A study or series that does not exist: nothing found.
    let (status, _) = search(&served, &format!("/studies/{ROOT}.99/series")).await;
    assert_eq!(status, 204);
    let (status, _) = search(&served, &format!("/studies/{B}/series/{A}.1/instances")).await;
    assert_eq!(status, 204, "a series of another study");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_match_as_c_find_matches_them() {
    let served = archive(WebConfig::default()).await;
    let found = |query: &'static str| studies_found(&served, query);

    // Single values, by keyword and by tag.
    assert_eq!(found("PatientID=P2").await, [B]);
    assert_eq!(found("00100020=P2").await, [B]);
    assert_eq!(found("AccessionNumber=X-9").await, [D]);
    // Wild cards; person names without regard to case.
    assert_eq!(found("PatientName=*doe*").await, [A, D]);
    assert_eq!(found("PatientName=DOE*").await, [D]);
    assert_eq!(found("AccessionNumber=ACC%3F").await, [A, B, C]);
    assert_eq!(found("StudyDescription=*e*").await, [A, B, C, D]);
    assert_eq!(found("StudyDescription=*MR").await, [B]);
    // Ranges.
    assert_eq!(found("StudyDate=20230101-20241231").await, [A, B]);
    assert_eq!(found("StudyDate=20240101-").await, [A, D]);
    assert_eq!(found("StudyDate=-19991231").await, [C]);
    assert_eq!(found("StudyDate=20240105").await, [A]);
    assert_eq!(found("StudyDate=20240105&StudyTime=1000-1100").await, [A]);
    assert!(found("StudyTime=1100-").await.is_empty());
    // UID lists, with commas or backslashes.
    assert_eq!(
        studies_found(&served, &format!("StudyInstanceUID={A},{C}")).await,
        [A, C]
    );
    assert_eq!(
        studies_found(&served, &format!("StudyInstanceUID={B}%5C{D}")).await,
        [B, D]
    );
    // Computed keys and keys of lower levels (an entity matches when a descendant does).
    assert_eq!(found("ModalitiesInStudy=MR").await, [A, B]);
    assert_eq!(found("Modality=CT").await, [A, D]);
    assert_eq!(found("SeriesDescription=Scout").await, [A]);
    assert_eq!(
        found("PatientID=P1&Modality=CR").await,
        Vec::<String>::new()
    );
    // Several keys together.
    assert_eq!(found("PatientName=*o*&StudyDate=-20241231").await, [A, B]);

    // Series and instances.
    let (_, series) = search(&served, "/series?Modality=CT").await;
    assert_eq!(
        values(&series, "0020000E"),
        [series_uid(A, "1"), series_uid(D, "1")]
    );
    let (_, series) = search(&served, "/series?SeriesNumber=2").await;
    assert_eq!(values(&series, "0020000E"), [series_uid(A, "2")]);
    let (_, instances) = search(&served, "/instances?PatientID=P2&InstanceNumber=2").await;
    assert_eq!(values(&instances, "00080018"), [sop_uid(B, "1", 2)]);
    let (_, instances) = search(
        &served,
        &format!(
            "/instances?SOPInstanceUID={},{}",
            sop_uid(A, "1", 3),
            sop_uid(C, "1", 1)
        ),
    )
    .await;
    assert_eq!(
        values(&instances, "00080018"),
        [sop_uid(A, "1", 3), sop_uid(C, "1", 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ohif_study_and_series_lists_work() {
    let served = archive(WebConfig::default()).await;
    let (status, results) = search(
        &served,
        "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060&StudyDate=19520101-20251231",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(values(&results, "0020000D"), [A, B, C, D]);
    assert_eq!(
        values(&results, "00081030"),
        ["Abdomen", "Chest CT", "Head MR", "Knee"]
    );
    for result in &results {
        assert!(result.get("00080060").is_some(), "asked for: {result}");
        assert!(result.get("00080061").is_some(), "{result}");
    }
    let (status, series) = search(
        &served,
        &format!("/studies/{A}/series?includefield=0008103E,00080021,00200011,00080060"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(values(&series, "0008103E"), ["Axial", "Scout"]);
    assert_eq!(values(&series, "00080060"), ["CT", "MR"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn includefield_adds_listed_attributes_or_all_the_index_keeps() {
    let served = archive(WebConfig::default()).await;
    // A list, comma-separated and repeated, by keyword and by tag.
    let (_, results) = search(
        &served,
        &format!(
            "/studies?StudyInstanceUID={A}&includefield=StudyDescription,00200010&includefield=InstitutionName"
        ),
    )
    .await;
    assert_eq!(results.len(), 1);
    assert_eq!(text(&results[0], "00081030").as_deref(), Some("Chest CT"));
    assert!(results[0].get("00080080").is_some(), "{}", results[0]);
    assert!(results[0].get("00081040").is_none());

    // all: every attribute of the study and its patient, not the series' nor the instances'.
    let (_, results) = search(
        &served,
        &format!("/studies?StudyInstanceUID={A}&includefield=all"),
    )
    .await;
    let study = &results[0];
    assert_eq!(text(study, "00081030").as_deref(), Some("Chest CT"));
    assert_eq!(text(study, "00100040").as_deref(), Some("O"));
    assert_eq!(text(study, "00201208").as_deref(), Some("4"));
    assert!(study.get("00081190").is_some());
    assert!(
        study.get("0008103E").is_none(),
        "a series attribute: {study}"
    );
    assert!(
        study.get("00080008").is_none(),
        "an instance attribute: {study}"
    );

    // all at the series level: the series' own attributes too.
    let (_, results) = search(
        &served,
        &format!("/studies/{A}/series?includefield=all&Modality=CT"),
    )
    .await;
    assert_eq!(results.len(), 1);
    assert_eq!(
        text(&results[0], "00080080").as_deref(),
        Some("Dimsum Hospital")
    );
    assert_eq!(text(&results[0], "0008103E").as_deref(), Some("Axial"));

    // all at the instance level: every attribute kept, bulk data never.
    let (_, results) = search(
        &served,
        &format!("/studies/{A}/series/{A}.1/instances?InstanceNumber=1&includefield=all"),
    )
    .await;
    assert_eq!(results.len(), 1);
    let instance = &results[0];
    assert_eq!(
        instance["00080008"]["Value"],
        serde_json::json!(["ORIGINAL", "PRIMARY", "AXIAL"])
    );
    assert!(
        instance.get(tag_key(tags::PIXEL_DATA)).is_none(),
        "{instance}"
    );
    assert!(instance.get("00081190").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_offset_and_the_server_maximum() {
    let mut config = WebConfig::default();
    config.max_search_results = 3;
    let served = archive(config).await;
    let all: Vec<String> = {
        let mut all: Vec<String> = files().into_iter().map(|(uid, _)| uid).collect();
        all.sort();
        all
    };

    // No limit: the server's maximum, and a Warning that more can be asked for.
    let response = get(&served, "/instances", None).await;
    assert_eq!(response.status(), 200);
    let warning = response.headers()["warning"]
        .to_str()
        .expect("warning")
        .to_owned();
    assert_eq!(
        warning,
        format!(
            "299 {}: The number of results exceeded the maximum supported by the server. Additional results can be requested.",
            served.url("")
        )
    );
    let results = json(&response.text().await.expect("body"));
    assert_eq!(results.as_array().map(Vec::len), Some(3));

    // A limit above the maximum is cut to it, with the Warning.
    let response = get(&served, "/instances?limit=5", None).await;
    assert!(response.headers().get("warning").is_some());
    let results = json(&response.text().await.expect("body"));
    assert_eq!(results.as_array().map(Vec::len), Some(3));

    // The client's own limit: no Warning.
    let response = get(&served, "/instances?limit=2", None).await;
    assert!(response.headers().get("warning").is_none());
    let results = json(&response.text().await.expect("body"));
    assert_eq!(results.as_array().map(Vec::len), Some(2));

    // Pages of three cover every instance once, in the same order each time.
    let mut paged = Vec::new();
    for offset in [0, 3, 6] {
        let path = format!("/instances?offset={offset}");
        let response = get(&served, &path, None).await;
        assert_eq!(
            response.headers().get("warning").is_some(),
            offset < 6,
            "{path}: only the last page has nothing left"
        );
        let page = match json(&response.text().await.expect("body")) {
            Value::Array(page) => page,
            other => panic!("{other}"),
        };
        let (_, again) = search(&served, &path).await;
        assert_eq!(page, again, "{path}: the same page twice");
        paged.extend(page.iter().map(|r| text(r, "00080018").expect("uid")));
    }
    assert_eq!(paged.len(), 8);
    paged.sort();
    assert_eq!(paged, all);
    let (_, page) = search(&served, "/instances?offset=2&limit=2").await;
    assert_eq!(page.len(), 2);

    // Past the last match: no content.
    let (status, _) = search(&served, "/instances?offset=8").await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzy_matching_finds_names_by_word_prefix_without_case_or_accents() {
    let served = archive(WebConfig::default()).await;
    let fuzzy = |name: &'static str| {
        studies_found(&served, format!("PatientName={name}&fuzzymatching=true"))
    };
    assert_eq!(fuzzy("jo").await, [A, B], "Jöhn^DOE and Smith^John");
    assert_eq!(fuzzy("JOHN").await, [A, B]);
    assert_eq!(fuzzy("doe%20jo").await, [A]);
    assert_eq!(fuzzy("DOE%5EJ").await, [A, D]);
    assert_eq!(fuzzy("muller").await, [C]);
    assert_eq!(fuzzy("M%C3%9CLL").await, [C]);
    assert_eq!(fuzzy("ohn").await, Vec::<String>::new());
    assert_eq!(fuzzy("*ane").await, [D]);
    // Series and instance searches use the patient's name alike.
    let (_, series) = search(&served, "/series?PatientName=han&fuzzymatching=true").await;
    assert_eq!(values(&series, "0020000E"), [series_uid(C, "1")]);

    // Without it, the same keys are single values.
    let literal = |name: &'static str, flag: &'static str| {
        studies_found(&served, format!("PatientName={name}{flag}"))
    };
    assert_eq!(literal("jo", "").await, Vec::<String>::new());
    assert_eq!(
        literal("jo", "&fuzzymatching=false").await,
        Vec::<String>::new()
    );
    assert_eq!(literal("muller%5Ehans", "").await, Vec::<String>::new());
    assert_eq!(literal("m%C3%BCller%5Ehans", "").await, [C]);
    // Other VRs are not fuzzy.
    assert_eq!(
        studies_found(&served, "StudyDescription=chest*&fuzzymatching=true").await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_results_come_one_part_each() {
    let served = archive(WebConfig::default()).await;
    for (path, accept) in [
        (
            format!("/studies/{A}/series"),
            Some("multipart/related; type=\"application/dicom+xml\""),
        ),
        (
            format!("/studies/{A}/series"),
            Some("multipart/related; type=application/dicom+xml, application/dicom+json;q=0.5"),
        ),
        (
            format!(
                "/studies/{A}/series?accept=multipart%2Frelated%3B%20type%3D%22application%2Fdicom%2Bxml%22"
            ),
            Some("application/dicom+json"),
        ),
    ] {
        let response = get(&served, &path, accept).await;
        assert_eq!(response.status(), 200, "{path} {accept:?}");
        let parts = parts_of(response).await;
        assert_eq!(parts.len(), 2, "{path}");
        let mut found = Vec::new();
        for (content_type, body) in parts {
            assert!(
                content_type.is("application", "dicom+xml"),
                "{content_type}"
            );
            let text = std::str::from_utf8(&body).expect("UTF-8");
            let object = dimsum_dataset::xml::from_xml(text, &Default::default()).expect("XML");
            let value = |tag| {
                object
                    .get(tag)
                    .and_then(|e| e.to_str().ok())
                    .map(|t| t.trim_end_matches('\0').to_owned())
            };
            assert!(value(tags::MODALITY).is_some());
            let series = value(tags::SERIES_INSTANCE_UID).expect("series");
            assert_eq!(
                value(tags::RETRIEVE_URL),
                Some(served.url(&format!("/studies/{A}/series/{series}")))
            );
            found.push(series);
        }
        found.sort();
        assert_eq!(found, [series_uid(A, "1"), series_uid(A, "2")]);
    }
    // JSON for whatever accepts it, and by default.
    for accept in [
        "application/json",
        "*/*",
        "application/*",
        "application/dicom+json",
    ] {
        let response = get(&served, "/studies", Some(accept)).await;
        assert_eq!(response.status(), 200, "{accept}");
        assert_eq!(response.headers()["content-type"], "application/dicom+json");
    }
    // No other representation.
    for accept in [
        "image/png",
        "application/dicom+xml",
        "multipart/related; type=application/dicom",
    ] {
        let response = get(&served, "/studies", Some(accept)).await;
        assert_eq!(response.status(), 406, "{accept}");
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("application/dicom+json")
        );
    }
    // No result in XML either: no content.
    let response = get(
        &served,
        "/studies?PatientID=nobody",
        Some("multipart/related; type=\"application/dicom+xml\""),
    )
    .await;
    assert_eq!(response.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_is_no_content_and_bad_parameters_are_bad_requests() {
    let served = archive(WebConfig::default()).await;
    let response = get(&served, "/studies?PatientID=nobody", None).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.expect("body").is_empty());

    for (query, says) in [
        ("Foo=bar", "\"Foo\""),
        ("includefield=NoSuchKeyword", "NoSuchKeyword"),
        ("0010001=x", "0010001"),
        ("StudyDate=2024-06-15", "StudyDate"),
        ("StudyDate=June", "StudyDate"),
        ("StudyDate=-", "StudyDate"),
        ("StudyTime=10h", "StudyTime"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("limit=1&limit=2", "limit"),
        ("fuzzymatching=maybe", "fuzzymatching"),
        ("PatientID=1&PatientID=2", "PatientID"),
        ("QueryRetrieveLevel=IMAGE", "QueryRetrieveLevel"),
        ("Rows=many", "Rows"),
    ] {
        let response = get(&served, &format!("/studies?{query}"), None).await;
        assert_eq!(response.status(), 400, "{query}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("type")
                .starts_with("text/plain"),
            "{query}"
        );
        let body = response.text().await.expect("body");
        assert!(body.contains(says), "{query}: {body}");
    }
    // A study-scoped search cannot name another study.
    let response = get(
        &served,
        &format!("/studies/{A}/series?StudyInstanceUID={B}"),
        None,
    )
    .await;
    assert_eq!(response.status(), 400);
    // A bad UID in the path.
    let response = get(&served, "/studies/1.2.abc/series", None).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_are_on_search_results_and_errors() {
    let mut config = WebConfig::default();
    config.cors = CorsOrigins::Any;
    let served = archive(config).await;
    for (path, status) in [
        ("/studies", 200),
        ("/studies?PatientID=nobody", 204),
        ("/studies?Foo=bar", 400),
        ("/studies?limit=0", 400),
    ] {
        let response = served
            .client
            .get(served.url(path))
            .header("Origin", "http://viewer.example")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
    }
    let response = served
        .client
        .get(served.url("/studies"))
        .header("Origin", "http://viewer.example")
        .header("Accept", "image/png")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 406);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_urls_use_the_configured_base_url() {
    let mut config = WebConfig::default();
    config.base_url = Some("https://pacs.example.org/".to_owned());
    let served = archive(config).await;
    let (_, results) = search(&served, &format!("/studies/{D}/series")).await;
    assert_eq!(
        text(&results[0], "00081190"),
        Some(format!(
            "https://pacs.example.org/dicom-web/studies/{D}/series/{D}.1"
        ))
    );
}
