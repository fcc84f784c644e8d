//! The Native DICOM Model in XML (PS3.19 A.1) both ways: a hand-written document of every VR
//! family read and written back identically, bulk data, hostile documents, and DCMTK's
//! `dcm2xml --native-format` output for pydicom's test files compared with ours.

#[path = "data/dcmtk.rs"]
mod dcmtk;

use std::collections::BTreeMap;

use dimsum_dataset::dicom_core::VR;
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::open_file;
use dimsum_dataset::json::{self, BulkData, JsonError};
use dimsum_dataset::xml::{XmlError, XmlLimits, XmlOptions, from_xml, read_xml, to_xml};
use quick_xml::events::Event;

const HEADER: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" xml:space="preserve">"#,
);

fn document(attributes: &[&str]) -> String {
    format!("{HEADER}{}</NativeDicomModel>", attributes.concat())
}

/// Every VR family, written as our writer writes it (attributes in tag order, no indentation).
fn every_vr() -> String {
    document(&[
        r#"<DicomAttribute tag="00080005" vr="CS" keyword="SpecificCharacterSet"><Value number="1">ISO_IR 192</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00080020" vr="DA" keyword="StudyDate"><Value number="1">20240229</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="0008002A" vr="DT" keyword="AcquisitionDateTime"><Value number="1">20240229235959.5+0100</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00080030" vr="TM" keyword="StudyTime"><Value number="1">235959.123456</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00080054" vr="AE" keyword="RetrieveAETitle"><Value number="1">ARCHIVE</Value><Value number="2">BACKUP</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00080061" vr="CS" keyword="ModalitiesInStudy"><Value number="1">CT</Value><Value number="2"/><Value number="3">MR</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00080090" vr="PN" keyword="ReferringPhysicianName"></DicomAttribute>"#,
        r#"<DicomAttribute tag="00081110" vr="SQ" keyword="ReferencedStudySequence"></DicomAttribute>"#,
        r#"<DicomAttribute tag="00081190" vr="UR" keyword="RetrieveURL"><Value number="1">http://example.invalid/studies/1.2.3?a=b&amp;c=&lt;d&gt;</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00082111" vr="ST" keyword="DerivationDescription"><Value number="1">Derived \ with a backslash</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00090010" vr="LO"><Value number="1">ACME 1.0</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00091001" vr="UN" privateCreator="ACME 1.0"><InlineBinary>z0x9</InlineBinary></DicomAttribute>"#,
        r#"<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1"><Alphabetic><FamilyName>Yamada</FamilyName><GivenName>Tarou</GivenName></Alphabetic><Ideographic><FamilyName>山田</FamilyName><GivenName>太郎</GivenName></Ideographic><Phonetic><FamilyName>やまだ</FamilyName><GivenName>たろう</GivenName></Phonetic></PersonName><PersonName number="2"/><PersonName number="3"><Alphabetic><GivenName>Bob</GivenName><NamePrefix>Dr.</NamePrefix></Alphabetic></PersonName></DicomAttribute>"#,
        r#"<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"></DicomAttribute>"#,
        r#"<DicomAttribute tag="00101010" vr="AS" keyword="PatientAge"><Value number="1">042Y</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00101030" vr="DS" keyword="PatientWeight"><Value number="1">72.50</Value><Value number="2">-1E-20</Value><Value number="3">120</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00104000" vr="LT" keyword="PatientComments"><Value number="1">line one
line two "quoted" 'too'</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00189219" vr="SS" keyword="TagAngleSecondAxis"><Value number="1">-32768</Value><Value number="2">32767</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00189220" vr="FD" keyword="FrameAcquisitionDuration"><Value number="1">1.5</Value><Value number="2">-2e+300</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="0020000D" vr="UI" keyword="StudyInstanceUID"><Value number="1">1.2.840.10008.1.2</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00200013" vr="IS" keyword="InstanceNumber"><Value number="1">1</Value><Value number="2">-42</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00280010" vr="US" keyword="Rows"><Value number="1">512</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00400100" vr="SQ" keyword="ScheduledProcedureStepSequence"><Item number="1"><DicomAttribute tag="00080060" vr="CS" keyword="Modality"><Value number="1">CT</Value></DicomAttribute><DicomAttribute tag="0040A730" vr="SQ" keyword="ContentSequence"><Item number="1"><DicomAttribute tag="0040A160" vr="UT" keyword="TextValue"><Value number="1">nested</Value></DicomAttribute></Item></DicomAttribute></Item><Item number="2"></Item></DicomAttribute>"#,
        r#"<DicomAttribute tag="00660023" vr="OF" keyword="TrianglePointIndexList"><InlineBinary>AACAPw==</InlineBinary></DicomAttribute>"#,
        r#"<DicomAttribute tag="00700080" vr="CS" keyword="ContentLabel"><Value number="1">LABEL</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="00720026" vr="AT" keyword="SelectorAttribute"><Value number="1">00100010</Value></DicomAttribute>"#,
        r#"<DicomAttribute tag="7FE00010" vr="OW" keyword="PixelData"><InlineBinary>AQACAw==</InlineBinary></DicomAttribute>"#,
    ])
}

#[test]
fn every_vr_family_round_trips_xml_to_object_to_xml() {
    let original = every_vr();
    let object = from_xml(&original, &XmlLimits::default()).expect("read");
    assert_eq!(to_xml(&object, &XmlOptions::new()), original);

    let name = object.element(tags::PATIENT_NAME).expect("name");
    assert_eq!(
        name.value().to_multi_str().expect("names").as_ref(),
        ["Yamada^Tarou=山田^太郎=やまだ^たろう", "", "^Bob^^Dr."]
    );
    let url = object.element(tags::RETRIEVE_URL).expect("url");
    assert_eq!(
        url.to_str().expect("text"),
        "http://example.invalid/studies/1.2.3?a=b&c=<d>"
    );
    let text = object.element(tags::PATIENT_COMMENTS).expect("comments");
    assert_eq!(
        text.to_str().expect("text"),
        "line one\nline two \"quoted\" 'too'"
    );
    assert_eq!(
        object
            .element(tags::PIXEL_DATA)
            .expect("pixels")
            .value()
            .to_bytes()
            .expect("bytes")
            .as_ref(),
        [1, 0, 2, 3]
    );
    // The same values as the JSON model carries them.
    let model = json::to_json(&object);
    assert_eq!(
        model["00101030"]["Value"],
        serde_json::json!([72.5, -1e-20, 120])
    );
    assert_eq!(
        model["00080061"]["Value"],
        serde_json::json!(["CT", null, "MR"])
    );

    // Indented for people, and read back the same.
    let indented = to_xml(&object, &XmlOptions::new().indented());
    assert!(
        indented.contains("\n  <DicomAttribute tag=\"00080005\""),
        "{indented}"
    );
    let again = from_xml(&indented, &XmlLimits::default()).expect("indented");
    assert_eq!(to_xml(&again, &XmlOptions::new()), original);
}

#[test]
fn documents_of_other_writers_read() {
    // No namespace, a prefix-less root with other attributes, white space, comments, values
    // out of order with gaps, CDATA, character references, base64 over several lines.
    let text = r#"<?xml version="1.0"?>
<!-- written by hand -->
<NativeDicomModel xml:space="preserve">
  <DicomAttribute keyword="ImageType" vr="CS" tag="00080008">
    <Value number="3">AXIAL</Value>
    <Value number="1">ORIGINAL</Value>
  </DicomAttribute>
  <DicomAttribute tag="00100010" vr="PN"><PersonName number="1"><Alphabetic><FamilyName><![CDATA[O'Neil & <Sons>]]></FamilyName><GivenName>&#x4E01;</GivenName></Alphabetic></PersonName></DicomAttribute>
  <DicomAttribute tag="7fe00010" vr="OB">
    <InlineBinary>
      AQID
      BA==
    </InlineBinary>
  </DicomAttribute>
</NativeDicomModel>
"#;
    let object = from_xml(text, &XmlLimits::default()).expect("read");
    assert_eq!(
        object
            .element(tags::IMAGE_TYPE)
            .expect("type")
            .value()
            .to_multi_str()
            .expect("text")
            .as_ref(),
        ["ORIGINAL", "", "AXIAL"]
    );
    assert_eq!(
        object
            .element(tags::PATIENT_NAME)
            .expect("name")
            .to_str()
            .expect("text"),
        "O'Neil & <Sons>^丁"
    );
    assert_eq!(
        object
            .element(tags::PIXEL_DATA)
            .expect("pixels")
            .value()
            .to_bytes()
            .expect("bytes")
            .as_ref(),
        [1, 2, 3, 4]
    );
}

#[test]
fn bulk_data_is_written_by_policy_and_read_as_references() {
    let original = every_vr();
    let object = from_xml(&original, &XmlLimits::default()).expect("read");
    let options = XmlOptions::new().with_bulk_data(|path, element| {
        if element.vr() == VR::OW {
            BulkData::Uri(format!("https://pacs.invalid/bulk/{path}"))
        } else {
            BulkData::Inline
        }
    });
    let written = to_xml(&object, &options);
    assert!(
        written.contains(r#"<DicomAttribute tag="7FE00010" vr="OW" keyword="PixelData"><BulkData uri="https://pacs.invalid/bulk/(7FE0,0010)"/></DicomAttribute>"#),
        "{written}"
    );
    let pending = read_xml(&written, &XmlLimits::default()).expect("read");
    assert_eq!(pending.bulk_data().len(), 1);
    assert_eq!(
        pending.bulk_data()[0].uri,
        "https://pacs.invalid/bulk/(7FE0,0010)"
    );
    assert_eq!(pending.bulk_data()[0].path.to_string(), "(7FE0,0010)");
    assert!(matches!(
        from_xml(&written, &XmlLimits::default()),
        Err(XmlError::Model(JsonError::BulkDataUri { .. }))
    ));
    let resolved = pending
        .resolve(|_| Ok::<_, std::io::Error>(vec![1, 0, 2, 3]))
        .expect("resolved");
    assert_eq!(to_xml(&resolved, &XmlOptions::new()), original);

    // DCMTK's default: a uuid, kept as a urn.
    let uuid = document(&[
        r#"<DicomAttribute tag="7FE00010" vr="OW"><BulkData uuid="1b2c3d"/></DicomAttribute>"#,
    ]);
    let pending = read_xml(&uuid, &XmlLimits::default()).expect("read");
    assert_eq!(pending.bulk_data()[0].uri, "urn:uuid:1b2c3d");
}

#[test]
fn hostile_and_malformed_documents_are_refused_with_why() {
    type Check = fn(&XmlError) -> bool;
    let limits = XmlLimits {
        max_bytes: 4096,
        max_depth: 2,
        max_elements: 20,
    };
    let nested = |levels: usize| {
        let mut inner = String::new();
        for _ in 0..levels {
            inner = format!(
                r#"<DicomAttribute tag="00400100" vr="SQ"><Item number="1">{inner}</Item></DicomAttribute>"#
            );
        }
        document(&[&inner])
    };
    let values: String = (1..=21)
        .map(|n| format!(r#"<Value number="{n}">CT</Value>"#))
        .collect();
    let many = document(&[&format!(
        r#"<DicomAttribute tag="00080061" vr="CS">{values}</DicomAttribute>"#
    )]);
    let cases: Vec<(String, Check)> = vec![
        (
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><NativeDicomModel><DicomAttribute tag="00100020" vr="LO"><Value number="1">&lol2;</Value></DicomAttribute></NativeDicomModel>"#.to_owned(),
            |e| matches!(e, XmlError::DocumentType),
        ),
        (
            document(&[r#"<DicomAttribute tag="00100020" vr="LO"><Value number="1">&xxe;</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::UnknownEntity { name } if name == "xxe"),
        ),
        ("x".repeat(5000), |e| matches!(e, XmlError::TooLarge { max: 4096, .. })),
        (nested(3), |e| matches!(e, XmlError::TooDeep { max: 2, .. })),
        (many, |e| matches!(e, XmlError::TooManyElements { max: 20 })),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="CS"><Value number="4000000000">CT</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::BadAttribute { path, .. } if path == "00080060"),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="CS"><Value number="0">CT</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::BadAttribute { .. }),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="CS"><Value number="1">CT</Value><Value number="1">MR</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::BadAttribute { reason, .. } if reason.contains("twice")),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="CS"><Value>CT</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::BadAttribute { reason, .. } if reason.contains("number")),
        ),
        (
            document(&[r#"<DicomAttribute vr="CS"><Value number="1">CT</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::MissingAttribute { attribute: "tag", .. }),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060"><Value number="1">CT</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::MissingAttribute { attribute: "vr", .. }),
        ),
        (
            document(&[r#"<DicomAttribute tag="Modality" vr="CS"/>"#]),
            |e| matches!(e, XmlError::BadAttribute { .. }),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="CS"><Value number="1">CT<b>x</b></Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::Unexpected { element, .. } if element == "b"),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="CS"><Values number="1">CT</Values></DicomAttribute>"#]),
            |e| matches!(e, XmlError::Unexpected { element, within: "DicomAttribute", .. } if element == "Values"),
        ),
        (
            document(&[r#"<DicomAttribute tag="00100010" vr="PN"><PersonName number="1"><Alphabetic><Surname>X</Surname></Alphabetic></PersonName></DicomAttribute>"#]),
            |e| matches!(e, XmlError::Unexpected { element, .. } if element == "Surname"),
        ),
        (
            document(&[r#"<DicomAttribute tag="00400100" vr="SQ"><Item number="1"><DicomAttribute tag="00280010" vr="US"><Value number="1">big</Value></DicomAttribute></Item></DicomAttribute>"#]),
            |e| matches!(e, XmlError::Model(JsonError::WrongValue { path, vr: VR::US, .. }) if path == "00400100[0].00280010"),
        ),
        (
            document(&[r#"<DicomAttribute tag="00280010" vr="US"><Value number="1">70000</Value></DicomAttribute>"#]),
            |e| matches!(e, XmlError::Model(JsonError::WrongValue { .. })),
        ),
        (
            document(&[r#"<DicomAttribute tag="00080060" vr="ZZ"/>"#]),
            |e| matches!(e, XmlError::Model(JsonError::UnknownVr { .. })),
        ),
        (
            format!("{HEADER}<DicomAttribute tag=\"00080060\" vr=\"CS\"><Value number=\"1\">CT"),
            |e| matches!(e, XmlError::Truncated { .. } | XmlError::Syntax { .. }),
        ),
        (
            "<Dataset/>".to_owned(),
            |e| matches!(e, XmlError::NotNativeModel { found } if found == "Dataset"),
        ),
        (
            format!("{HEADER}</NativeDicomModel><NativeDicomModel/>"),
            |e| matches!(e, XmlError::Unexpected { .. }),
        ),
        (
            document(&["stray text"]),
            |e| matches!(e, XmlError::Unexpected { .. }),
        ),
        (
            format!("{HEADER}<DicomAttribute tag=\"00080060\" vr=\"CS\"></Item></NativeDicomModel>"),
            |e| matches!(e, XmlError::Syntax { .. }),
        ),
    ];
    for (text, expected) in cases {
        let error = from_xml(&text, &limits).expect_err(&text);
        assert!(expected(&error), "{text}: {error:?}");
        assert!(!error.to_string().is_empty());
    }
    assert!(from_xml(&nested(2), &limits).is_ok());
}

/// Each DicomAttribute of a document: tag path → (vr, keyword, privateCreator).
fn attribute_names(text: &str) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut names = BTreeMap::new();
    // The items entered ("00400100[1]."), and the attributes entered.
    let mut path: Vec<String> = Vec::new();
    let mut attributes: Vec<String> = Vec::new();
    loop {
        let event = reader.read_event().expect("XML");
        let (start, empty) = match &event {
            Event::Start(start) => (Some(start), false),
            Event::Empty(start) => (Some(start), true),
            _ => (None, false),
        };
        if let Some(start) = start {
            let get = |name: &str| {
                start
                    .try_get_attribute(name)
                    .expect("attribute")
                    .map(|a| a.unescape_value().expect("value").into_owned())
            };
            match start.local_name().as_ref() {
                b"DicomAttribute" => {
                    let tag = get("tag").expect("tag");
                    // A private element by its creator and its tag without the block, as DCMTK
                    // writes it (ours keeps the block: gggg10ee and gggg00ee name one element).
                    let named = match get("privateCreator") {
                        Some(creator) => format!("{}00{}@{creator}", &tag[..4], &tag[6..]),
                        None => tag.clone(),
                    };
                    let key = format!("{}{named}", path.concat());
                    names.insert(
                        key,
                        (
                            get("vr").expect("vr"),
                            get("keyword"),
                            get("privateCreator"),
                        ),
                    );
                    if !empty {
                        attributes.push(tag);
                    }
                }
                b"Item" if !empty => {
                    let number = get("number").expect("number");
                    let parent = attributes.last().expect("an item is in an attribute");
                    path.push(format!("{parent}[{number}]."));
                }
                _ => {}
            }
        }
        match &event {
            Event::End(end) if end.local_name().as_ref() == b"DicomAttribute" => {
                attributes.pop();
            }
            Event::End(end) if end.local_name().as_ref() == b"Item" => {
                path.pop();
            }
            Event::Eof => return names,
            _ => {}
        }
    }
}

#[test]
fn dcmtk_dcm2xml_and_ours_agree_on_pydicom_files() {
    if !dcmtk::have_tool("dcm2xml") {
        return;
    }
    for name in dcmtk::FILES {
        let path = dcmtk::data_path(name);
        let file = open_file(&path).expect("open");
        // Native format, binary values inline in base64, every value converted to UTF-8.
        let theirs = dcmtk::run(
            "dcm2xml",
            &[
                "--native-format",
                "+Eb",
                "+U8",
                path.to_str().expect("path"),
            ],
        );
        let ours = to_xml(&file, &XmlOptions::new());

        // DCMTK's document reads, with the values of the file.
        let read = from_xml(&theirs, &XmlLimits::default())
            .unwrap_or_else(|e| panic!("{name}: DCMTK's XML: {e}"));
        let found = dcmtk::differences_with(
            &json::to_json(&read),
            &json::to_json(&file),
            dcmtk::Quirks {
                ow_big_endian: true,
                phonetic_repeats_ideographic: true,
            },
        );
        assert!(
            found.is_empty(),
            "{name}: DCMTK's XML read / the file:\n{}",
            found.join("\n")
        );

        // Ours reads back as the file.
        let back = from_xml(&ours, &XmlLimits::default()).expect("ours reads");
        let found = dcmtk::differences(&json::to_json(&back), &json::to_json(&file));
        assert!(
            found.is_empty(),
            "{name}: our XML read / the file:\n{}",
            found.join("\n")
        );

        // The same attributes with the same VR, keyword and private creator.
        let (ours, mut theirs) = (attribute_names(&ours), attribute_names(&theirs));
        // DCMTK declares the UTF-8 it converted to, in files that declared no character set.
        if !ours.contains_key("00080005") {
            theirs.remove("00080005");
        }
        // DCMTK writes no keyword for attributes its dictionary lists as retired, such as Beam
        // Dose Specification Point (300A,0082), retired in 2014.
        for (path, (_, keyword, _)) in theirs.iter_mut() {
            if keyword.is_none() && path.ends_with("300A0082") {
                *keyword = Some("BeamDoseSpecificationPoint".to_owned());
            }
        }
        assert!(ours.len() > 10, "{name}: a real data set");
        assert_eq!(
            ours, theirs,
            "{name}: DicomAttribute tag, vr, keyword, privateCreator"
        );
    }
}
