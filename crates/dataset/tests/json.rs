//! The DICOM JSON Model (PS3.18 F.2) both ways: round trips of hand-written documents covering
//! every VR, bulk data by policy and by reference, values that do not fit their VR, limits, and
//! the output of DCMTK's `dcm2json` for pydicom's test files compared with ours.

#![recursion_limit = "512"]

#[path = "data/dcmtk.rs"]
mod dcmtk;

use std::collections::HashMap;

use dimsum_dataset::dicom_core::ops::AttributeSelector;
use dimsum_dataset::dicom_core::value::{C, PrimitiveValue};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::{InMemDicomObject, open_file};
use dimsum_dataset::json::{
    BulkData, BulkDataReference, JsonError, JsonLimits, ResolveError, WriteOptions, from_json,
    parse_json, read_json, to_json, to_json_with,
};
use serde_json::{Value, json};

/// One attribute of every VR, in the form our writer gives (so that it reads back identically).
fn every_vr() -> Value {
    json!({
        "00080005": { "vr": "CS", "Value": ["ISO_IR 192"] },
        "00080020": { "vr": "DA", "Value": ["20240229"] },
        "00080030": { "vr": "TM", "Value": ["235959.123456"] },
        "00080050": { "vr": "SH", "Value": ["ACC 1"] },
        "00080054": { "vr": "AE", "Value": ["ARCHIVE", "BACKUP"] },
        "00080061": { "vr": "CS", "Value": ["CT", null, "MR"] },
        "00080090": { "vr": "PN" },
        "00081190": { "vr": "UR", "Value": ["http://example.invalid/studies/1.2.3?a=b&c=d"] },
        "0008002A": { "vr": "DT", "Value": ["20240229235959.5+0100"] },
        "00082111": { "vr": "ST", "Value": ["Derived \\ with a backslash"] },
        "00091001": { "vr": "UN", "InlineBinary": "z0x9" },
        "00100010": { "vr": "PN", "Value": [
            { "Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう" },
            null,
            { "Alphabetic": "^Bob^^Dr." }
        ] },
        "00100020": { "vr": "LO" },
        "00101010": { "vr": "AS", "Value": ["042Y"] },
        "00101030": { "vr": "DS", "Value": [72.5, -0.001, 1e-20, 120] },
        "00104000": { "vr": "LT", "Value": ["line one\r\nline two"] },
        "00181060": { "vr": "DS", "Value": [0] },
        "00200013": { "vr": "IS", "Value": [1, -42] },
        "00280010": { "vr": "US", "Value": [512, 0, 65535] },
        "00281052": { "vr": "DS", "Value": [-1024] },
        "00283006": { "vr": "US", "Value": [1, 2] },
        "00189219": { "vr": "SS", "Value": [-32768, 32767] },
        "00189220": { "vr": "FD", "Value": [1.5, -2.0e300] },
        "00189221": { "vr": "FL", "Value": [0.25, -8.0] },
        "00189222": { "vr": "SL", "Value": [-2147483648] },
        "00189223": { "vr": "UL", "Value": [4294967295_u64] },
        "00189224": { "vr": "SV", "Value": [-1099511627776_i64] },
        "00189225": { "vr": "UV", "Value": [5, "18446744073709551615"] },
        "00400100": { "vr": "SQ", "Value": [
            {
                "00080060": { "vr": "CS", "Value": ["CT"] },
                "00400001": { "vr": "AE" },
                "0040A730": { "vr": "SQ", "Value": [{ "0040A160": { "vr": "UT", "Value": ["nested"] } }] }
            },
            {}
        ] },
        "00081110": { "vr": "SQ" },
        "00720026": { "vr": "AT", "Value": ["00100010", "7FE00010"] },
        "00700080": { "vr": "UC", "Value": ["a long unlimited value"] },
        "0020000D": { "vr": "UI", "Value": ["1.2.840.10008.1.2"] },
        "00660023": { "vr": "OF", "InlineBinary": "AACAPw==" },
        "00660040": { "vr": "OL", "InlineBinary": "AQAAAA==" },
        "00660041": { "vr": "OD", "InlineBinary": "AAAAAAAA8D8=" },
        "00660042": { "vr": "OV", "InlineBinary": "AQAAAAAAAAA=" },
        "00420011": { "vr": "OB", "InlineBinary": "JVBERg==" },
        "7FE00010": { "vr": "OW", "InlineBinary": "AQACAw==" },
    })
}

#[test]
fn every_vr_family_round_trips_json_to_object_to_json() {
    let document = every_vr();
    let object = from_json(&document).expect("read");
    assert_eq!(to_json(&object), document);

    // What the values became in the data set.
    let name = object.element(tags::PATIENT_NAME).expect("name");
    assert_eq!(
        name.value().to_multi_str().expect("names").as_ref(),
        ["Yamada^Tarou=山田^太郎=やまだ^たろう", "", "^Bob^^Dr."]
    );
    let weight = object.element(tags::PATIENT_WEIGHT).expect("weight");
    assert_eq!(
        weight.value().to_multi_str().expect("ds").as_ref(),
        ["72.5", "-0.001", "1e-20", "120"]
    );
    let at = object.element(tags::SELECTOR_ATTRIBUTE).expect("AT");
    assert_eq!(
        at.value().primitive(),
        Some(&PrimitiveValue::Tags(
            [tags::PATIENT_NAME, tags::PIXEL_DATA].into_iter().collect()
        ))
    );
    let floats = object.element(Tag(0x0066, 0x0023)).expect("OF");
    assert_eq!(
        floats.value().to_bytes().expect("bytes").as_ref(),
        [0, 0, 0x80, 0x3F]
    );
    let nested = object
        .value_at((
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            0,
            Tag(0x0040, 0xA730),
            0,
            Tag(0x0040, 0xA160),
        ))
        .expect("nested value");
    assert_eq!(nested.to_str().expect("text"), "nested");
}

#[test]
fn strings_for_numbers_are_read_as_dcm4che_and_dcmtk_write_them() {
    let object = from_json(&json!({
        "00101030": { "vr": "DS", "Value": [" 72.50", "1E3", 3.25] },
        "00200013": { "vr": "IS", "Value": ["0012", 7.0] },
        "00280010": { "vr": "US", "Value": ["512"] },
        "00189221": { "vr": "FL", "Value": ["0.5"] },
        "00100010": { "vr": "PN", "Value": ["DOE^JOHN"] },
    }))
    .expect("read");
    assert_eq!(
        object
            .element(tags::PATIENT_WEIGHT)
            .expect("ds")
            .value()
            .to_multi_str()
            .expect("text")
            .as_ref(),
        ["72.50", "1E3", "3.25"]
    );
    assert_eq!(
        to_json(&object),
        json!({
            "00100010": { "vr": "PN", "Value": [{ "Alphabetic": "DOE^JOHN" }] },
            "00101030": { "vr": "DS", "Value": [72.5, 1000.0, 3.25] },
            "00189221": { "vr": "FL", "Value": [0.5] },
            "00200013": { "vr": "IS", "Value": [12, 7] },
            "00280010": { "vr": "US", "Value": [512] },
        })
    );
}

#[test]
fn inline_binary_is_little_endian_whatever_the_machine() {
    let object = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16([0x0102_u16, 0x0304].into_iter().collect()),
        ),
        DataElement::new(
            Tag(0x0066, 0x0023),
            VR::OF,
            PrimitiveValue::F32(C::from_elem(1.0_f32, 1)),
        ),
        DataElement::new(
            Tag(0x0066, 0x0041),
            VR::OD,
            PrimitiveValue::F64(C::from_elem(1.0_f64, 1)),
        ),
    ]);
    assert_eq!(
        to_json(&object),
        json!({
            "00660023": { "vr": "OF", "InlineBinary": "AACAPw==" },
            "00660041": { "vr": "OD", "InlineBinary": "AAAAAAAA8D8=" },
            "7FE00010": { "vr": "OW", "InlineBinary": "AgEEAw==" },
        })
    );
    let read = from_json(&to_json(&object)).expect("read");
    assert_eq!(
        read.element(tags::PIXEL_DATA)
            .expect("pixels")
            .value()
            .to_bytes()
            .expect("bytes")
            .as_ref(),
        [2, 1, 4, 3]
    );
}

/// A data set with bulk data at the top and in an item.
fn with_bulk_data() -> InMemDicomObject {
    let item = InMemDicomObject::from_element_iter([
        DataElement::new(tags::MODALITY, VR::CS, "CT"),
        DataElement::new(
            tags::ICON_IMAGE_SEQUENCE,
            VR::OB,
            PrimitiveValue::from(vec![9_u8; 10]),
        ),
    ]);
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::PATIENT_ID, VR::LO, "P1"),
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::SQ,
            dimsum_dataset::dicom_core::value::DataSetSequence::from(vec![
                InMemDicomObject::new_empty(),
                item,
            ]),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![1_u8, 2, 3, 4]),
        ),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2_u16)),
    ])
}

/// The policy of a WADO-RS metadata response: binary values at a URI named by the tag path.
fn binary_at_uri(
    path: &AttributeSelector,
    element: &dimsum_dataset::dicom_object::mem::InMemElement,
) -> BulkData {
    if matches!(element.vr(), VR::OB | VR::OW) {
        let path: Vec<String> = path.iter().map(|step| step.to_string()).collect();
        BulkData::Uri(format!("https://pacs.invalid/bulk/{}", path.join("/")))
    } else {
        BulkData::Inline
    }
}

#[test]
fn a_policy_sends_values_to_bulk_data_uris_by_tag_path() {
    let object = with_bulk_data();
    let options = WriteOptions::new().with_bulk_data(binary_at_uri);
    let written = to_json_with(&object, &options);
    assert_eq!(
        written,
        json!({
            "00100020": { "vr": "LO", "Value": ["P1"] },
            "00280010": { "vr": "US", "Value": [2] },
            "00400100": { "vr": "SQ", "Value": [
                {},
                {
                    "00080060": { "vr": "CS", "Value": ["CT"] },
                    "00880200": { "vr": "OB", "BulkDataURI": "https://pacs.invalid/bulk/(0040,0100)[1]/(0088,0200)" }
                }
            ] },
            "7FE00010": { "vr": "OW", "BulkDataURI": "https://pacs.invalid/bulk/(7FE0,0010)" },
        })
    );

    // Read back: references in place of the values, and the rest as it was.
    let pending = read_json(&written, &JsonLimits::default()).expect("read");
    let references: Vec<(String, VR, &str)> = pending
        .bulk_data()
        .iter()
        .map(|r| (r.path.to_string(), r.vr, r.uri.as_str()))
        .collect();
    assert_eq!(
        references,
        [
            (
                "(0040,0100)[1].(0088,0200)".to_owned(),
                VR::OB,
                "https://pacs.invalid/bulk/(0040,0100)[1]/(0088,0200)"
            ),
            (
                "(7FE0,0010)".to_owned(),
                VR::OW,
                "https://pacs.invalid/bulk/(7FE0,0010)"
            ),
        ]
    );
    let placeholder = pending
        .object()
        .element(tags::PIXEL_DATA)
        .expect("placeholder");
    assert_eq!(placeholder.vr(), VR::OW);
    assert!(
        placeholder
            .value()
            .primitive()
            .is_some_and(|v| matches!(v, PrimitiveValue::Empty))
    );
    match pending.clone().into_complete() {
        Err(JsonError::BulkDataUri { path, uri }) => {
            assert_eq!(path, "00400100[1].00880200");
            assert!(uri.ends_with("(0088,0200)"));
        }
        other => panic!("expected a BulkDataUri error, got {other:?}"),
    }
    assert!(matches!(
        from_json(&written),
        Err(JsonError::BulkDataUri { .. })
    ));

    // Resolved from what the URIs serve, it is the data set written.
    let served: HashMap<String, Vec<u8>> = HashMap::from([
        (
            "https://pacs.invalid/bulk/(7FE0,0010)".to_owned(),
            vec![1, 2, 3, 4],
        ),
        (
            "https://pacs.invalid/bulk/(0040,0100)[1]/(0088,0200)".to_owned(),
            vec![9; 10],
        ),
    ]);
    let resolved = pending
        .clone()
        .resolve(|reference: &BulkDataReference| {
            served
                .get(&reference.uri)
                .cloned()
                .ok_or_else(|| std::io::Error::other("not served"))
        })
        .expect("resolved");
    assert_eq!(to_json(&resolved), to_json(&object));

    // A fetch that fails names the element and the URI.
    let failed = pending
        .resolve(|_| Err(std::io::Error::other("connection refused")))
        .expect_err("fetch fails");
    assert!(matches!(&failed, ResolveError::Fetch { path, .. } if path == "00400100[1].00880200"));
    assert!(
        failed.to_string().contains("connection refused"),
        "{failed}"
    );
}

#[test]
fn values_that_do_not_fit_their_vr_are_errors_naming_the_tag() {
    type Check = fn(&JsonError) -> bool;
    let cases: Vec<(Value, Check)> = vec![
        (
            json!({ "00100020": { "vr": "LO", "Value": [5] } }),
            |e| matches!(e, JsonError::WrongValue { path, vr: VR::LO, .. } if path == "00100020"),
        ),
        (json!({ "00100010": { "vr": "PN", "Value": [5] } }), |e| {
            matches!(e, JsonError::WrongValue { vr: VR::PN, .. })
        }),
        (
            json!({ "00100010": { "vr": "PN", "Value": [{ "Alphabetic": 1 }] } }),
            |e| matches!(e, JsonError::WrongValue { vr: VR::PN, .. }),
        ),
        (
            json!({ "00280010": { "vr": "US", "Value": [70000] } }),
            |e| matches!(e, JsonError::WrongValue { vr: VR::US, .. }),
        ),
        (json!({ "00280010": { "vr": "US", "Value": [-1] } }), |e| {
            matches!(e, JsonError::WrongValue { vr: VR::US, .. })
        }),
        (json!({ "00280010": { "vr": "US", "Value": [1.5] } }), |e| {
            matches!(e, JsonError::WrongValue { vr: VR::US, .. })
        }),
        (
            json!({ "00189219": { "vr": "SS", "Value": [-40000] } }),
            |e| matches!(e, JsonError::WrongValue { vr: VR::SS, .. }),
        ),
        (
            json!({ "00189221": { "vr": "FL", "Value": ["abc"] } }),
            |e| matches!(e, JsonError::WrongValue { vr: VR::FL, .. }),
        ),
        (
            json!({ "00189221": { "vr": "FL", "Value": [true] } }),
            |e| matches!(e, JsonError::WrongValue { vr: VR::FL, .. }),
        ),
        (json!({ "00200013": { "vr": "IS", "Value": [1.5] } }), |e| {
            matches!(e, JsonError::WrongValue { vr: VR::IS, .. })
        }),
        (json!({ "00200013": { "vr": "IS", "Value": [[1]] } }), |e| {
            matches!(e, JsonError::WrongValue { vr: VR::IS, .. })
        }),
        (
            json!({ "00720026": { "vr": "AT", "Value": [1048592] } }),
            |e| matches!(e, JsonError::WrongValue { vr: VR::AT, .. }),
        ),
        (
            json!({ "00400100": { "vr": "SQ", "Value": ["item"] } }),
            |e| matches!(e, JsonError::NotAnObject { path, .. } if path == "00400100[0]"),
        ),
        (
            json!({ "00400100": { "vr": "SQ", "InlineBinary": "AAAA" } }),
            |e| matches!(e, JsonError::BadAttribute { path, .. } if path == "00400100"),
        ),
        (
            json!({ "00100020": { "vr": "LO", "InlineBinary": "AAAA" } }),
            |e| matches!(e, JsonError::BadAttribute { .. }),
        ),
        (
            json!({ "7FE00010": { "vr": "OW", "Value": [1, 2] } }),
            |e| matches!(e, JsonError::BadAttribute { .. }),
        ),
        (
            json!({ "7FE00010": { "vr": "OW", "InlineBinary": "not base64!" } }),
            |e| matches!(e, JsonError::BadAttribute { reason, .. } if reason.contains("base64")),
        ),
        (
            json!({ "00280010": { "vr": "US", "InlineBinary": "AQID" } }),
            |e| matches!(e, JsonError::BadAttribute { reason, .. } if reason.contains("InlineBinary is for")),
        ),
        (
            json!({ "7FE00010": { "vr": "OW", "InlineBinary": "AAAA", "BulkDataURI": "x" } }),
            |e| matches!(e, JsonError::BadAttribute { .. }),
        ),
        (
            json!({ "7FE00010": { "vr": "OW", "BulkDataURI": 5 } }),
            |e| matches!(e, JsonError::BadAttribute { .. }),
        ),
        (
            json!({ "00100020": { "vr": "LO", "Value": ["1"], "InlineBinary": "AAAA" } }),
            |e| matches!(e, JsonError::BadAttribute { .. }),
        ),
    ];
    for (value, expected) in cases {
        let error = from_json(&value).expect_err(&value.to_string());
        assert!(expected(&error), "{value}: {error:?}");
        assert!(!error.to_string().is_empty());
    }
    // Bulk data of a numeric VR is little-endian numbers, a whole number of them.
    let rows = json!({ "00280010": { "vr": "US", "BulkDataURI": "https://pacs.invalid/rows" } });
    let pending = read_json(&rows, &JsonLimits::default()).expect("read");
    let resolved = pending
        .clone()
        .resolve(|_| Ok::<_, std::io::Error>(vec![1, 2, 3, 4]))
        .expect("resolved");
    assert_eq!(
        resolved
            .element(tags::ROWS)
            .expect("rows")
            .value()
            .primitive(),
        Some(&PrimitiveValue::U16([0x0201, 0x0403].into_iter().collect()))
    );
    let odd = pending
        .resolve(|_| Ok::<_, std::io::Error>(vec![1, 2, 3]))
        .expect_err("odd length");
    assert!(
        matches!(&odd, ResolveError::Value(JsonError::BadAttribute { reason, .. }) if reason.contains("whole number")),
        "{odd:?}"
    );
}

#[test]
fn limits_bound_size_attributes_and_depth() {
    let limits = JsonLimits {
        max_bytes: 100,
        max_depth: 2,
        max_elements: 3,
    };
    let long = format!(
        "{{\"00100020\":{{\"vr\":\"LO\",\"Value\":[\"{}\"]}}}}",
        "x".repeat(100)
    );
    assert!(matches!(
        parse_json(long.as_bytes(), &limits),
        Err(JsonError::TooLarge { max: 100, .. })
    ));
    assert!(matches!(
        parse_json(b"{\"00100020\":", &limits),
        Err(JsonError::Invalid(_))
    ));
    let parsed = parse_json(br#"{"00100020":{"vr":"LO","Value":["1"]}}"#, &limits).expect("parsed");
    assert!(read_json(&parsed, &limits).is_ok());

    let four = json!({
        "00100020": { "vr": "LO" },
        "00400100": { "vr": "SQ", "Value": [{ "00080060": { "vr": "CS" }, "00080070": { "vr": "LO" } }] }
    });
    assert!(matches!(
        read_json(&four, &limits),
        Err(JsonError::TooManyElements { max: 3 })
    ));
    let deep = json!({ "00400100": { "vr": "SQ", "Value": [
        { "00400100": { "vr": "SQ", "Value": [
            { "00400100": { "vr": "SQ", "Value": [{}] } }
        ] } }
    ] } });
    match read_json(&deep, &limits) {
        Err(JsonError::TooDeep { path, max: 2 }) => {
            assert_eq!(path, "00400100[0].00400100[0].00400100")
        }
        other => panic!("expected TooDeep, got {other:?}"),
    }
    assert!(read_json(&deep, &JsonLimits::default()).is_ok());
}

#[test]
fn dcmtk_dcm2json_and_ours_agree_on_pydicom_files() {
    if !dcmtk::have_tool("dcm2json") {
        return;
    }
    for name in dcmtk::FILES {
        let path = dcmtk::data_path(name);
        let file = open_file(&path).expect("open");
        let ours = to_json(&file);
        let theirs: Value =
            serde_json::from_str(&dcmtk::run("dcm2json", &[path.to_str().expect("path")]))
                .expect("DCMTK's JSON");
        let found = dcmtk::differences(&ours, &theirs);
        assert!(
            found.is_empty(),
            "{name}: ours / DCMTK's:\n{}",
            found.join("\n")
        );

        // DCMTK's document reads, and reads as ours does.
        let read = from_json(&theirs).unwrap_or_else(|e| panic!("{name}: DCMTK's JSON: {e}"));
        let found = dcmtk::differences(&to_json(&read), &ours);
        assert!(
            found.is_empty(),
            "{name}: DCMTK's read / ours:\n{}",
            found.join("\n")
        );
        assert!(
            ours.as_object().expect("object").len() > 10,
            "{name}: a real data set"
        );
    }
}
