//! What tests/json.rs and tests/xml.rs share to compare our DICOM JSON and XML with DCMTK's:
//! running its tools (or skipping when they are missing and DIMSUM_REQUIRE_PEERS is not set),
//! the test files, and a semantic comparison of two DICOM JSON Model data sets.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

/// The pydicom test files compared with DCMTK (tests/data/README.md).
pub const FILES: [&str; 4] = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "chrX1.dcm"];

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// Whether DCMTK's `tool` can be run: `false` (after printing `SKIP:`) when it is missing and
/// DIMSUM_REQUIRE_PEERS is not set; a failure when it is missing and DIMSUM_REQUIRE_PEERS is set.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("DIMSUM_REQUIRE_PEERS").is_none(),
            "DIMSUM_REQUIRE_PEERS is set but DCMTK's {tool} cannot be run (Debian package dcmtk)"
        );
        println!("SKIP: DCMTK's {tool} is not installed (Debian package dcmtk)");
    }
    found
}

/// The standard output of a DCMTK tool, which must succeed.
pub fn run(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The differences between two DICOM JSON Model data sets (PS3.18 F.2), attribute by attribute,
/// value by value: the same attributes with the same VRs; numbers equal to 7 significant
/// digits (DCMTK writes FL values with 9 digits of the float, dicom-json with every digit of the
/// double it widens them to); text, person name groups and items equal; binary values equal
/// byte for byte.
///
/// The quirks allowed: Specific Character Set (0008,0005) is not compared, since DCMTK converts
/// every value to UTF-8 and declares ISO_IR 192 where the file declares another set or none
/// (our values are Unicode strings either way, so the values compared are the same text); and
/// what [`Quirks`] says.
pub fn differences(ours: &Value, theirs: &Value) -> Vec<String> {
    differences_with(ours, theirs, Quirks::default())
}

/// What DCMTK does that PS3.18 and PS3.19 do not, and that a comparison allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// `dcm2xml --native-format +Eb` writes OW values as big-endian words, where PS3.19 A.1.5
    /// asks for little endian (the byte order of Explicit VR Little Endian); `dcm2json` does not.
    pub ow_big_endian: bool,
    /// `dcm2xml` 3.6.7 writes a person name's empty Phonetic group as a copy of its Ideographic
    /// group (`Wang^XiaoDong=王^小東=` gets a Phonetic 王^小東).
    pub phonetic_repeats_ideographic: bool,
}

/// [`differences`], with what `quirks` allows.
pub fn differences_with(ours: &Value, theirs: &Value, quirks: Quirks) -> Vec<String> {
    let mut found = Vec::new();
    compare_data_sets(
        ours.as_object().expect("our data set"),
        theirs.as_object().expect("their data set"),
        "",
        quirks,
        &mut found,
    );
    found
}

fn compare_data_sets(
    ours: &Map<String, Value>,
    theirs: &Map<String, Value>,
    path: &str,
    quirks: Quirks,
    found: &mut Vec<String>,
) {
    let mut keys: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let here = format!("{path}{key}");
        if key == "00080005" {
            continue;
        }
        match (ours.get(key), theirs.get(key)) {
            (Some(a), Some(b)) => compare_attributes(a, b, &here, quirks, found),
            (Some(_), None) => found.push(format!("{here}: only ours")),
            (None, Some(_)) => found.push(format!("{here}: only DCMTK's")),
            (None, None) => {}
        }
    }
}

fn compare_attributes(
    ours: &Value,
    theirs: &Value,
    path: &str,
    quirks: Quirks,
    found: &mut Vec<String>,
) {
    if ours["vr"] != theirs["vr"] {
        found.push(format!("{path}: VR {} / {}", ours["vr"], theirs["vr"]));
        return;
    }
    match (ours.get("InlineBinary"), theirs.get("InlineBinary")) {
        (None, None) => {}
        (Some(Value::String(a)), Some(Value::String(b))) => {
            let a = BASE64.decode(a).expect("our base64");
            let b = BASE64.decode(b).expect("their base64");
            let swapped = |bytes: &[u8]| -> Vec<u8> {
                bytes
                    .chunks(2)
                    .flat_map(|w| w.iter().rev().copied())
                    .collect()
            };
            let allowed = quirks.ow_big_endian && ours["vr"] == "OW" && swapped(&a) == b;
            if a != b && !allowed {
                found.push(format!(
                    "{path}: binary values differ ({} / {} bytes)",
                    a.len(),
                    b.len()
                ));
            }
            return;
        }
        (a, b) => {
            found.push(format!("{path}: InlineBinary {a:?} / {b:?}"));
            return;
        }
    }
    let none = Vec::new();
    let a = ours.get("Value").and_then(Value::as_array).unwrap_or(&none);
    let b = theirs
        .get("Value")
        .and_then(Value::as_array)
        .unwrap_or(&none);
    if a.len() != b.len() {
        found.push(format!(
            "{path}: {} values / {}: {a:?} / {b:?}",
            a.len(),
            b.len()
        ));
        return;
    }
    for (index, (x, y)) in a.iter().zip(b).enumerate() {
        let here = format!("{path}[{index}]");
        match (x, y) {
            (Value::Object(x), Value::Object(y)) if ours["vr"] == "SQ" => {
                compare_data_sets(x, y, &format!("{here}."), quirks, found);
            }
            (Value::Object(x), Value::Object(y))
                if ours["vr"] == "PN" && quirks.phonetic_repeats_ideographic =>
            {
                let without_copy = |name: &Map<String, Value>, other: &Map<String, Value>| {
                    let mut name = name.clone();
                    if !other.contains_key("Phonetic")
                        && name.get("Phonetic") == name.get("Ideographic")
                    {
                        name.remove("Phonetic");
                    }
                    name
                };
                if without_copy(x, y) != without_copy(y, x) {
                    found.push(format!("{here}: {x:?} / {y:?}"));
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().expect("f64"), y.as_f64().expect("f64"));
                if (x - y).abs() > 1e-7 * x.abs().max(y.abs()) {
                    found.push(format!("{here}: {x} / {y}"));
                }
            }
            (x, y) if x != y => found.push(format!("{here}: {x} / {y}")),
            _ => {}
        }
    }
}
