//! Specific Character Set (0008,0005) with code extensions (PS3.5 §6.1.2.5, PS3.3 C.12.1.1.2):
//! ISO 2022 escape sequences that switch the G0 and G1 character sets inside a value, as
//! Japanese (`\ISO 2022 IR 87`, `ISO 2022 IR 13\ISO 2022 IR 87`), Korean (`\ISO 2022 IR 149`)
//! and Chinese (`\ISO 2022 IR 58`) data sets use them.
//!
//! dicom-rs 0.10 decodes every value with the first value of Specific Character Set only: the
//! escape sequences and the bytes they introduce stay in the string as characters of that first
//! set (ISO 8859-1 for an empty first value, Shift_JIS for `ISO 2022 IR 13`). Those decoders
//! map each of these bytes to a character and back, so nothing is lost yet: [`to_unicode`]
//! encodes each such value back with the decoder dicom-rs used, to the bytes that were read,
//! and decodes those bytes here. Only the switching is written here; the character tables are
//! encoding_rs's (EUC-JP for JIS X 0208 and JIS X 0212, EUC-KR for KS X 1001, GBK for GB 2312,
//! and the single-byte sets).
//!
//! dicom-rs also keeps the character set of a sequence item that declares its own for the
//! elements that follow the sequence; [`to_unicode`] decodes those again with the character
//! set that applies to them.
//!
//! The object that comes out holds Unicode text and declares `ISO_IR 192` (UTF-8) wherever it
//! declared a character set, so that encoding it again writes what it says.

use std::borrow::Cow;

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use dicom_object::InMemDicomObject;
use encoding_rs::Encoding;

const ESC: u8 = 0x1B;

/// Why a value, or a Specific Character Set, could not be decoded (PS3.5 §6.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    #[error("Specific Character Set (0008,0005) {0:?} is not a character set dimsum can decode")]
    UnknownTerm(String),
    #[error("unknown escape sequence {sequence} at byte {offset}")]
    UnknownEscape { offset: usize, sequence: String },
    #[error("bytes {bytes} at byte {offset} are not a character of {set}")]
    InvalidCharacter {
        offset: usize,
        bytes: String,
        set: &'static str,
    },
    #[error("byte {byte:#04x} at byte {offset} is in G1 but no G1 character set is designated")]
    NoG1 { offset: usize, byte: u8 },
    #[error("the value as dicom-rs read it cannot be encoded back in {charset}: {reason}")]
    NotRecoverable { charset: String, reason: String },
    #[error("{tag} {vr:?}: {source}")]
    Element {
        tag: Tag,
        vr: VR,
        #[source]
        source: Box<CharsetError>,
    },
}

/// A graphic character set that an escape sequence designates (PS3.3 Tables C.12-3 and C.12-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Graphic {
    /// ISO-IR 6 (ASCII), G0.
    Ascii,
    /// ISO-IR 14, JIS X 0201 Romaji, G0: ASCII but for YEN SIGN and OVERLINE.
    JisRoman,
    /// ISO-IR 13, JIS X 0201 Katakana, G1.
    Katakana,
    /// ISO-IR 87, JIS X 0208 (94×94), G0.
    Jis0208,
    /// ISO-IR 159, JIS X 0212 (94×94), G0.
    Jis0212,
    /// ISO-IR 149, KS X 1001 (94×94), G1.
    Ksc,
    /// ISO-IR 58, GB 2312 (94×94), G1.
    Gb2312,
    /// A 96-character set in G1: the right half of ISO 8859-n, by ISO-IR number.
    RightHalf(u16),
}

impl Graphic {
    fn name(self) -> &'static str {
        match self {
            Graphic::Ascii => "ISO-IR 6",
            Graphic::JisRoman => "ISO-IR 14 (JIS X 0201 Romaji)",
            Graphic::Katakana => "ISO-IR 13 (JIS X 0201 Katakana)",
            Graphic::Jis0208 => "ISO-IR 87 (JIS X 0208)",
            Graphic::Jis0212 => "ISO-IR 159 (JIS X 0212)",
            Graphic::Ksc => "ISO-IR 149 (KS X 1001)",
            Graphic::Gb2312 => "ISO-IR 58 (GB 2312)",
            Graphic::RightHalf(_) => "a single-byte G1 set",
        }
    }

    /// Whether a character takes one byte (delimiters are recognised only then).
    fn is_single_byte(self) -> bool {
        !matches!(
            self,
            Graphic::Jis0208 | Graphic::Jis0212 | Graphic::Ksc | Graphic::Gb2312
        )
    }
}

/// The encoding_rs encoding holding the right half (0xA0..=0xFF) of the ISO 8859 set with this
/// ISO-IR number; where encoding_rs names the Windows superset, its right half is the same.
fn right_half(ir: u16) -> Option<&'static Encoding> {
    Some(match ir {
        100 => encoding_rs::WINDOWS_1252,
        101 => encoding_rs::ISO_8859_2,
        109 => encoding_rs::ISO_8859_3,
        110 => encoding_rs::ISO_8859_4,
        126 => encoding_rs::ISO_8859_7,
        127 => encoding_rs::ISO_8859_6,
        138 => encoding_rs::ISO_8859_8,
        144 => encoding_rs::ISO_8859_5,
        148 => encoding_rs::WINDOWS_1254,
        166 => encoding_rs::WINDOWS_874,
        203 => encoding_rs::ISO_8859_15,
        _ => return None,
    })
}

/// The escape sequences of PS3.3 Tables C.12-3 and C.12-4: which set each designates, into G0
/// (`false`) or G1 (`true`).
const ESCAPES: &[(&[u8], bool, Graphic)] = &[
    (b"\x1b(B", false, Graphic::Ascii),
    (b"\x1b(J", false, Graphic::JisRoman),
    (b"\x1b)I", true, Graphic::Katakana),
    (b"\x1b$B", false, Graphic::Jis0208),
    (b"\x1b$(D", false, Graphic::Jis0212),
    (b"\x1b$)C", true, Graphic::Ksc),
    (b"\x1b$)A", true, Graphic::Gb2312),
    (b"\x1b-A", true, Graphic::RightHalf(100)),
    (b"\x1b-B", true, Graphic::RightHalf(101)),
    (b"\x1b-C", true, Graphic::RightHalf(109)),
    (b"\x1b-D", true, Graphic::RightHalf(110)),
    (b"\x1b-F", true, Graphic::RightHalf(126)),
    (b"\x1b-G", true, Graphic::RightHalf(127)),
    (b"\x1b-H", true, Graphic::RightHalf(138)),
    (b"\x1b-L", true, Graphic::RightHalf(144)),
    (b"\x1b-M", true, Graphic::RightHalf(148)),
    (b"\x1b-T", true, Graphic::RightHalf(166)),
    (b"\x1b-b", true, Graphic::RightHalf(203)),
];

/// The G0 and G1 sets a defined term of Specific Character Set designates (PS3.3 C.12.1.1.2);
/// an empty value is the default repertoire.
fn term(name: &str) -> Option<(Option<Graphic>, Option<Graphic>)> {
    let name = name.trim_matches([' ', '\0']);
    if name.is_empty() {
        return Some((Some(Graphic::Ascii), None));
    }
    let number = name
        .strip_prefix("ISO 2022 IR ")
        .or_else(|| name.strip_prefix("ISO_IR "))?;
    let ir: u16 = number.parse().ok()?;
    Some(match ir {
        6 => (Some(Graphic::Ascii), None),
        13 => (Some(Graphic::JisRoman), Some(Graphic::Katakana)),
        87 => (Some(Graphic::Jis0208), None),
        159 => (Some(Graphic::Jis0212), None),
        149 => (None, Some(Graphic::Ksc)),
        58 => (None, Some(Graphic::Gb2312)),
        ir => {
            right_half(ir)?;
            (Some(Graphic::Ascii), Some(Graphic::RightHalf(ir)))
        }
    })
}

/// A Specific Character Set read by the rules of code extension (PS3.5 §6.1.2.5, PS3.3
/// C.12.1.1.2): the sets in G0 and G1 at the start of each value, component group and line (the
/// first value's, ISO-IR 6 when it is empty), which escape sequences replace as they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeExtensions {
    initial_g0: Graphic,
    initial_g1: Option<Graphic>,
}

impl CodeExtensions {
    /// The code extensions of the values of Specific Character Set, e.g. `["", "ISO 2022 IR
    /// 87"]`. Every value must be a defined term this module decodes.
    pub fn from_terms<S: AsRef<str>>(terms: &[S]) -> Result<CodeExtensions, CharsetError> {
        let mut first = None;
        for value in terms {
            let sets = term(value.as_ref())
                .ok_or_else(|| CharsetError::UnknownTerm(value.as_ref().to_owned()))?;
            first.get_or_insert(sets);
        }
        let (g0, g1) = first.unwrap_or((Some(Graphic::Ascii), None));
        Ok(CodeExtensions {
            // A two-byte set named first (against C.12.1.1.2) is reached by its escape
            // sequence; the value starts in ASCII.
            initial_g0: g0
                .filter(|g0| g0.is_single_byte())
                .unwrap_or(Graphic::Ascii),
            initial_g1: g1,
        })
    }

    /// Decodes the bytes of one element of VR `vr` into its values. A BACKSLASH separates
    /// values (not in ST, LT and UT, which have one); it, CR, LF, FF and TAB, and for PN `^` and
    /// `=`, return G0 and G1 to the initial sets (PS3.5 §6.1.2.5.3). A delimiter is one only
    /// while G0 holds a one-byte set: inside a two-byte set its byte is half of a character.
    pub fn decode(&self, bytes: &[u8], vr: VR) -> Result<Vec<String>, CharsetError> {
        let multi_valued = !matches!(vr, VR::ST | VR::LT | VR::UT);
        let mut values = Vec::new();
        let mut text = String::with_capacity(bytes.len());
        let (mut g0, mut g1) = (self.initial_g0, self.initial_g1);
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            if byte == ESC {
                let (length, into_g1, set) = ESCAPES
                    .iter()
                    .find(|(sequence, _, _)| bytes[at..].starts_with(sequence))
                    .map(|(sequence, into_g1, set)| (sequence.len(), *into_g1, *set))
                    .ok_or_else(|| CharsetError::UnknownEscape {
                        offset: at,
                        sequence: describe_escape(&bytes[at..]),
                    })?;
                if into_g1 {
                    g1 = Some(set);
                } else {
                    g0 = set;
                }
                at += length;
                continue;
            }
            let control = matches!(byte, b'\r' | b'\n' | 0x0C | b'\t');
            let delimiter = control
                || (g0.is_single_byte()
                    && (byte == b'\\' && multi_valued
                        || vr == VR::PN && matches!(byte, b'^' | b'=')));
            if delimiter {
                if byte == b'\\' && multi_valued {
                    values.push(std::mem::take(&mut text));
                } else {
                    text.push(char::from(byte));
                }
                (g0, g1) = (self.initial_g0, self.initial_g1);
                at += 1;
                continue;
            }
            at += if byte < 0x80 {
                decode_g0(g0, bytes, at, &mut text)?
            } else {
                let g1 = g1.ok_or(CharsetError::NoG1 { offset: at, byte })?;
                decode_g1(g1, bytes, at, &mut text)?
            };
        }
        values.push(text);
        Ok(values)
    }
}

/// ESC and the bytes after it that could belong to its sequence, for an error message.
fn describe_escape(bytes: &[u8]) -> String {
    let mut text = String::from("ESC");
    for &byte in bytes
        .iter()
        .skip(1)
        .take(3)
        .take_while(|b| (0x20..0x7F).contains(*b))
    {
        text.push(' ');
        text.push(char::from(byte));
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes `bytes` (one character) with `encoding`, or says which set they do not belong to.
fn decode_with(
    encoding: &'static Encoding,
    bytes: &[u8],
    original: &[u8],
    offset: usize,
    set: Graphic,
    text: &mut String,
) -> Result<(), CharsetError> {
    match encoding.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(decoded) if !decoded.is_empty() => {
            text.push_str(&decoded);
            Ok(())
        }
        _ => Err(CharsetError::InvalidCharacter {
            offset,
            bytes: hex(original),
            set: set.name(),
        }),
    }
}

/// The two bytes of a 94×94 character at `at`, each in `range`.
fn pair(
    bytes: &[u8],
    at: usize,
    range: std::ops::RangeInclusive<u8>,
    set: Graphic,
) -> Result<[u8; 2], CharsetError> {
    match bytes.get(at..at + 2) {
        Some(&[first, second]) if range.contains(&first) && range.contains(&second) => {
            Ok([first, second])
        }
        _ => Err(CharsetError::InvalidCharacter {
            offset: at,
            bytes: hex(bytes.get(at..(at + 2).min(bytes.len())).unwrap_or_default()),
            set: set.name(),
        }),
    }
}

/// Decodes the character at `at`, a byte below 0x80 (GL, where G0 is invoked); returns how
/// many bytes it took.
fn decode_g0(
    g0: Graphic,
    bytes: &[u8],
    at: usize,
    text: &mut String,
) -> Result<usize, CharsetError> {
    let byte = bytes[at];
    match g0 {
        Graphic::JisRoman if byte == 0x5C => text.push('\u{A5}'),
        Graphic::JisRoman if byte == 0x7E => text.push('\u{203E}'),
        // SPACE and the control characters are the same in every set.
        _ if g0.is_single_byte() || byte <= 0x20 || byte == 0x7F => text.push(char::from(byte)),
        Graphic::Jis0208 | Graphic::Jis0212 => {
            let [first, second] = pair(bytes, at, 0x21..=0x7E, g0)?;
            let euc_jp = [0x8F, first | 0x80, second | 0x80];
            let euc_jp = if g0 == Graphic::Jis0212 {
                &euc_jp[..]
            } else {
                &euc_jp[1..]
            };
            decode_with(encoding_rs::EUC_JP, euc_jp, &[first, second], at, g0, text)?;
            return Ok(2);
        }
        // Only the one-byte sets and the two above are ever designated into G0.
        Graphic::Ascii
        | Graphic::JisRoman
        | Graphic::Katakana
        | Graphic::Ksc
        | Graphic::Gb2312
        | Graphic::RightHalf(_) => text.push(char::from(byte)),
    }
    Ok(1)
}

/// Decodes the character at `at`, a byte from 0x80 (GR, where G1 is invoked); returns how
/// many bytes it took.
fn decode_g1(
    g1: Graphic,
    bytes: &[u8],
    at: usize,
    text: &mut String,
) -> Result<usize, CharsetError> {
    let byte = bytes[at];
    let invalid = || CharsetError::InvalidCharacter {
        offset: at,
        bytes: hex(&[byte]),
        set: g1.name(),
    };
    match g1 {
        Graphic::Katakana => {
            // JIS X 0201 Katakana is the run U+FF61..=U+FF9F of half-width forms.
            let character = (0xA1..=0xDF)
                .contains(&byte)
                .then(|| char::from_u32(0xFF61 + u32::from(byte - 0xA1)))
                .flatten()
                .ok_or_else(invalid)?;
            text.push(character);
            Ok(1)
        }
        Graphic::RightHalf(ir) => {
            let encoding = right_half(ir)
                .filter(|_| byte >= 0xA0)
                .ok_or_else(invalid)?;
            decode_with(encoding, &[byte], &[byte], at, g1, text)?;
            Ok(1)
        }
        Graphic::Ksc | Graphic::Gb2312 => {
            let two = pair(bytes, at, 0xA1..=0xFE, g1)?;
            let encoding = if g1 == Graphic::Ksc {
                encoding_rs::EUC_KR
            } else {
                encoding_rs::GBK
            };
            decode_with(encoding, &two, &two, at, g1, text)?;
            Ok(2)
        }
        // A G0 set designated into G1 is not defined by PS3.3 C.12.
        Graphic::Ascii | Graphic::JisRoman | Graphic::Jis0208 | Graphic::Jis0212 => Err(invalid()),
    }
}

/// The character set that applies to the text of an item (PS3.5 §6.1.2.5): one dicom-rs
/// decodes as it is, or code extensions.
#[derive(Debug, Clone)]
enum Declared {
    Plain(SpecificCharacterSet),
    Extensions(CodeExtensions),
}

impl Declared {
    fn of(values: &[String]) -> Result<Declared, CharsetError> {
        let extended = values.len() > 1 || values.iter().any(|v| v.trim().starts_with("ISO 2022"));
        if !extended
            && let Some(plain) = values
                .first()
                .and_then(|value| SpecificCharacterSet::from_code(value.trim()))
        {
            return Ok(Declared::Plain(plain));
        }
        // An empty or absent value is the default repertoire; a set dicom-rs does not know
        // (ISO_IR 148, ISO_IR 203) is its G1 half without escape sequences.
        if values.iter().all(|value| value.trim().is_empty()) {
            return Ok(Declared::Plain(SpecificCharacterSet::default()));
        }
        CodeExtensions::from_terms(values).map(Declared::Extensions)
    }
}

/// The text VRs whose values Specific Character Set applies to (PS3.5 §6.1.2.5).
fn is_sensitive(vr: VR) -> bool {
    matches!(
        vr,
        VR::SH | VR::LO | VR::ST | VR::LT | VR::UT | VR::PN | VR::UC
    )
}

/// What the walk over an object found: whether it must change, and what dicom-rs was decoding
/// with at each point (its state runs through sequence items into what follows them).
struct Walk {
    used: SpecificCharacterSet,
    change: bool,
}

/// The values of Specific Character Set as dicom-rs read them.
fn charset_values(element: &DataElement<InMemDicomObject>) -> Vec<String> {
    match element.value() {
        Value::Primitive(PrimitiveValue::Strs(values)) => values.iter().cloned().collect(),
        Value::Primitive(PrimitiveValue::Str(value)) => {
            value.split('\\').map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

/// `item` with its text decoded, declared `ISO_IR 192`; `declared` applies where the item
/// declares nothing.
fn convert_item(
    item: &InMemDicomObject,
    inherited: &Declared,
    walk: &mut Walk,
) -> Result<InMemDicomObject, CharsetError> {
    let own = item
        .get(tags::SPECIFIC_CHARACTER_SET)
        .map(|element| Declared::of(&charset_values(element)))
        .transpose()?;
    let declared = own.as_ref().unwrap_or(inherited);
    if matches!(declared, Declared::Extensions(_)) {
        walk.change = true;
    }
    let mut elements = Vec::new();
    for element in item.iter() {
        let tag = element.tag();
        let vr = element.vr();
        let converted = match element.value() {
            Value::Sequence(sequence) => {
                let items = sequence
                    .items()
                    .iter()
                    .map(|nested| convert_item(nested, declared, walk))
                    .collect::<Result<Vec<_>, _>>()?;
                DataElement::new(tag, vr, DataSetSequence::from(items))
            }
            Value::Primitive(_) if tag == tags::SPECIFIC_CHARACTER_SET => {
                // dicom-rs switches on the first value it knows and keeps the set otherwise.
                if let Some(used) = charset_values(element)
                    .first()
                    .and_then(|first| SpecificCharacterSet::from_code(first.trim()))
                {
                    walk.used = used;
                }
                DataElement::new(tag, VR::CS, "ISO_IR 192")
            }
            Value::Primitive(value @ (PrimitiveValue::Strs(_) | PrimitiveValue::Str(_)))
                if is_sensitive(vr) =>
            {
                let decoded = redecode(value, vr, declared, &walk.used).map_err(|source| {
                    CharsetError::Element {
                        tag,
                        vr,
                        source: Box::new(source),
                    }
                })?;
                match decoded {
                    Some(decoded) => {
                        walk.change = true;
                        DataElement::new(tag, vr, decoded)
                    }
                    None => element.clone(),
                }
            }
            _ => element.clone(),
        };
        elements.push(converted);
    }
    Ok(InMemDicomObject::from_element_iter(elements))
}

/// One text value as it should read under `declared`, from what dicom-rs made of it with
/// `used`; `None` when that is already right.
fn redecode(
    value: &PrimitiveValue,
    vr: VR,
    declared: &Declared,
    used: &SpecificCharacterSet,
) -> Result<Option<PrimitiveValue>, CharsetError> {
    if let Declared::Plain(plain) = declared
        && plain == used
    {
        return Ok(None);
    }
    let strings: Vec<Cow<'_, str>> = match value {
        PrimitiveValue::Strs(values) => values.iter().map(|v| Cow::Borrowed(v.as_str())).collect(),
        PrimitiveValue::Str(value) => vec![Cow::Borrowed(value.as_str())],
        _ => return Ok(None),
    };
    // The bytes that were read: each value encoded back as dicom-rs decoded it, joined by the
    // BACKSLASH it split them at.
    let mut bytes = Vec::new();
    for (index, string) in strings.iter().enumerate() {
        if index > 0 {
            bytes.push(b'\\');
        }
        let encoded = used
            .encode(string)
            .map_err(|error| CharsetError::NotRecoverable {
                charset: used.name().into_owned(),
                reason: error.to_string(),
            })?;
        bytes.extend_from_slice(&encoded);
    }
    let values = match declared {
        Declared::Extensions(extensions) => extensions.decode(&bytes, vr)?,
        Declared::Plain(plain) => plain
            .decode(&bytes)
            .map_err(|error| CharsetError::NotRecoverable {
                charset: plain.name().into_owned(),
                reason: error.to_string(),
            })?
            .split('\\')
            .map(str::to_owned)
            .collect(),
    };
    Ok(Some(match value {
        PrimitiveValue::Str(_) => PrimitiveValue::Str(values.join("\\")),
        _ => PrimitiveValue::Strs(values.into_iter().collect()),
    }))
}

/// Decodes the text of a data set read by dicom-rs whose Specific Character Set uses code
/// extensions (PS3.5 §6.1.2.5), or whose sequence items declare character sets of their own,
/// into Unicode, and declares `ISO_IR 192` wherever it declared a set. Returns whether it
/// changed anything. On error the object is left exactly as dicom-rs read it (which encodes
/// back to the bytes it was read from).
pub fn to_unicode(object: &mut InMemDicomObject) -> Result<bool, CharsetError> {
    if !may_need_redecoding(object, true) {
        return Ok(false);
    }
    let mut walk = Walk {
        used: SpecificCharacterSet::default(),
        change: false,
    };
    let converted = convert_item(
        object,
        &Declared::Plain(SpecificCharacterSet::default()),
        &mut walk,
    )?;
    if walk.change {
        *object = converted;
    }
    Ok(walk.change)
}

/// Whether dicom-rs may have decoded some text of `object` with another character set than
/// the one that applies: code extensions are declared, or an item declares a character set of
/// its own (dicom-rs keeps it in force after the item). Most data sets — one single-byte or
/// UTF-8 set at the top — are left as read without being copied.
fn may_need_redecoding(object: &InMemDicomObject, top: bool) -> bool {
    object.iter().any(|element| match element.value() {
        Value::Sequence(sequence) => sequence
            .items()
            .iter()
            .any(|item| may_need_redecoding(item, false)),
        Value::Primitive(_) if element.tag() == tags::SPECIFIC_CHARACTER_SET => {
            !top || !matches!(
                Declared::of(&charset_values(element)),
                Ok(Declared::Plain(_))
            )
        }
        _ => false,
    })
}

/// [`to_unicode`], keeping the object as dicom-rs read it (and saying why in the log) when its
/// text cannot be decoded: nothing is lost, and what dicom-rs could not decode stays as it is.
/// Returns whether it changed anything.
pub fn to_unicode_or_keep(object: &mut InMemDicomObject) -> bool {
    to_unicode(object).unwrap_or_else(|error| {
        tracing::warn!("text kept as read: {error}");
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier;
    use crate::scan::ScanLimits;

    const EXPLICIT: &str = "1.2.840.10008.1.2.1";

    fn sets(terms: &[&str]) -> CodeExtensions {
        CodeExtensions::from_terms(terms).expect("known terms")
    }

    fn decode(terms: &[&str], bytes: &[u8], vr: VR) -> Result<Vec<String>, CharsetError> {
        sets(terms).decode(bytes, vr)
    }

    #[test]
    fn japanese_kanji_and_kana_switch_per_component_group() {
        let h31 =
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
        assert_eq!(
            decode(&["", "ISO 2022 IR 87"], h31, VR::PN).expect("decoded"),
            ["Yamada^Tarou=山田^太郎=やまだ^たろう"]
        );
        // ISO 2022 IR 13 first: G1 holds half-width katakana and G0 JIS X 0201 Romaji, which
        // ESC ( J designates back.
        let h32 = b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J";
        assert_eq!(
            decode(&["ISO 2022 IR 13", "ISO 2022 IR 87"], h32, VR::PN).expect("decoded"),
            ["ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"]
        );
        // JIS X 0212 (ISO-IR 159) through its own escape sequence.
        assert_eq!(
            decode(&["", "ISO 2022 IR 159"], b"\x1b$(D0!\x1b(B", VR::LO).expect("decoded"),
            ["丂"]
        );
    }

    #[test]
    fn korean_and_chinese_sets_are_invoked_in_g1() {
        let i2 = b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
        assert_eq!(
            decode(&["", "ISO 2022 IR 149"], i2, VR::PN).expect("decoded"),
            ["Hong^Gildong=洪^吉洞=홍^길동"]
        );
        let chinese = b"Wang^XiaoDong=\x1b$)A\xcd\xf5^\x1b$)A\xd0\xa1\xb6\xab=";
        assert_eq!(
            decode(&["", "ISO 2022 IR 58"], chinese, VR::PN).expect("decoded"),
            ["Wang^XiaoDong=王^小东="]
        );
        // Latin-1 in G1 by its escape sequence, next to Japanese.
        assert_eq!(
            decode(
                &["", "ISO 2022 IR 100", "ISO 2022 IR 87"],
                b"\x1b-AJ\xe9r\xf4me",
                VR::LO
            )
            .expect("decoded"),
            ["Jérôme"]
        );
    }

    #[test]
    fn delimiters_return_to_the_initial_sets() {
        let korean = ["", "ISO 2022 IR 149"];
        // After `^`, `=` or `\`, G1 is empty again: KS X 1001 needs its escape sequence anew.
        for delimiter in [b'^', b'='] {
            let bytes = [b"\x1b$)C\xb1\xe8".as_slice(), &[delimiter], b"\xc8\xf1"].concat();
            assert_eq!(
                decode(&korean, &bytes, VR::PN),
                Err(CharsetError::NoG1 {
                    offset: 7,
                    byte: 0xC8
                }),
                "{}",
                char::from(delimiter)
            );
        }
        assert_eq!(
            decode(&korean, b"\x1b$)C\xb1\xe8\\\x1b$)C\xc8\xf1", VR::LO).expect("decoded"),
            ["김", "희"]
        );
        assert!(decode(&korean, b"\x1b$)C\xb1\xe8\\\xc8\xf1", VR::LO).is_err());
        // `^` is not a delimiter outside PN.
        assert_eq!(
            decode(&korean, b"\x1b$)C\xb1\xe8^\xc8\xf1", VR::LO).expect("decoded"),
            ["김^희"]
        );
        // A line ends in the initial set (ST, LT, UT), where `\` is a character.
        assert_eq!(
            decode(&korean, b"\x1b$)C\xb1\xe8\r\n\\", VR::LT).expect("decoded"),
            ["김\r\n\\"]
        );
        assert!(decode(&korean, b"\x1b$)C\xb1\xe8\r\n\xc8\xf1", VR::LT).is_err());
        // In JIS X 0208 the bytes of `\` and `^` are halves of characters (須 is 3F 5C).
        assert_eq!(
            decode(&["", "ISO 2022 IR 87"], b"\x1b$B?\\\x1b(B\\A", VR::LO).expect("decoded"),
            ["須", "A"]
        );
        // JIS X 0201 Romaji: YEN SIGN and OVERLINE where ASCII has `\` and `~`; its `\` byte
        // still separates values.
        assert_eq!(
            decode(&["ISO 2022 IR 13", "ISO 2022 IR 87"], b"~\\A", VR::LO).expect("decoded"),
            ["\u{203E}", "A"]
        );
        assert_eq!(
            decode(&["ISO 2022 IR 13", "ISO 2022 IR 87"], b"\\", VR::ST).expect("decoded"),
            ["\u{A5}"]
        );
    }

    #[test]
    fn bad_escapes_and_characters_are_clear_errors() {
        let japanese = ["", "ISO 2022 IR 87"];
        assert_eq!(
            decode(&japanese, b"AB\x1b$Z12", VR::PN),
            Err(CharsetError::UnknownEscape {
                offset: 2,
                sequence: "ESC $ Z 1".to_owned()
            })
        );
        let error = decode(&japanese, b"\x1b$", VR::PN).expect_err("cut short");
        assert_eq!(error.to_string(), "unknown escape sequence ESC $ at byte 0");
        // Half a character at the end, a byte outside 21..7E inside a two-byte set.
        assert!(matches!(
            decode(&japanese, b"\x1b$B;", VR::PN),
            Err(CharsetError::InvalidCharacter { offset: 3, .. })
        ));
        assert!(matches!(
            decode(&japanese, b"\x1b$B;\x80", VR::PN),
            Err(CharsetError::InvalidCharacter { offset: 3, .. })
        ));
        // A G1 byte with nothing in G1, and a C1 control where a G1 set is.
        assert_eq!(
            decode(&japanese, b"J\xe9", VR::PN),
            Err(CharsetError::NoG1 {
                offset: 1,
                byte: 0xE9
            })
        );
        assert!(decode(&["ISO 2022 IR 100"], b"\x85", VR::LO).is_err());
        assert_eq!(
            CodeExtensions::from_terms(&["", "ISO 2022 IR 999"]),
            Err(CharsetError::UnknownTerm("ISO 2022 IR 999".to_owned()))
        );
        assert!(CodeExtensions::from_terms(&["ISO_IR 192", "ISO 2022 IR 87"]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let alphabet = b"\x1b$()-BJIDCA^=\\\r\x00\x21\x5c\x7e\x7f\x80\xa1\xb0\xdf\xe0\xfe\xff;3E";
        for _ in 0..20_000 {
            let length = (state % 12) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            for terms in [
                &["", "ISO 2022 IR 87"][..],
                &["ISO 2022 IR 13", "ISO 2022 IR 87", "ISO 2022 IR 159"],
                &["", "ISO 2022 IR 149"],
                &["ISO 2022 IR 100", "ISO 2022 IR 58"],
            ] {
                for vr in [VR::PN, VR::LO, VR::UT] {
                    if let Ok(values) = decode(terms, &bytes, vr) {
                        assert!(!values.is_empty());
                    }
                }
            }
        }
    }

    /// An identifier with Specific Character Set `charset` and Patient's Name holding `name`'s
    /// bytes, as it comes from the network: encoded, then decoded by [`identifier::decode`].
    fn received(charset: &[&str], name: &[u8]) -> InMemDicomObject {
        // dicom-rs encodes with the first value's set: ISO 8859-1 for an empty one, where each
        // character stands for its byte.
        let latin1: String = name.iter().map(|&b| char::from(b)).collect();
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::Strs(charset.iter().map(|s| s.to_string()).collect()),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, latin1.as_str()),
            DataElement::new(tags::PATIENT_ID, VR::LO, "ID\\2"),
        ]);
        let bytes = identifier::encode(&object, EXPLICIT).expect("encoded");
        assert!(
            bytes.windows(name.len()).any(|w| w == name),
            "the bytes on the wire"
        );
        identifier::decode(&bytes, EXPLICIT, &ScanLimits::default()).expect("decoded")
    }

    fn text(object: &InMemDicomObject, tag: Tag) -> String {
        object
            .get(tag)
            .expect("present")
            .to_str()
            .expect("text")
            .into_owned()
    }

    #[test]
    fn an_identifier_in_code_extensions_is_decoded_and_declares_utf8() {
        let name = b"\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B";
        let decoded = received(&["", "ISO 2022 IR 87"], name);
        assert_eq!(text(&decoded, tags::PATIENT_NAME), "山田^太郎");
        assert_eq!(text(&decoded, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        assert_eq!(
            decoded
                .get(tags::PATIENT_ID)
                .expect("id")
                .value()
                .multiplicity(),
            2
        );
        // Encoded again it is UTF-8, and reads the same.
        let bytes = identifier::encode(&decoded, EXPLICIT).expect("encoded");
        assert!(bytes.windows(3).any(|w| w == "山".as_bytes()));
        let again = identifier::decode(&bytes, EXPLICIT, &ScanLimits::default()).expect("decoded");
        assert_eq!(text(&again, tags::PATIENT_NAME), "山田^太郎");

        // A set dicom-rs decodes alone is left as it is.
        let latin1 = received(&["ISO_IR 100"], b"J\xe9r\xf4me");
        assert_eq!(text(&latin1, tags::PATIENT_NAME), "Jérôme");
        assert_eq!(text(&latin1, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
    }

    #[test]
    fn an_identifier_that_cannot_be_decoded_is_kept_as_read() {
        let name = b"\x1b$Z;3ED\x1b(B";
        let mut kept = received(&["", "ISO 2022 IR 87"], name);
        let latin1: String = name.iter().map(|&b| char::from(b)).collect();
        assert_eq!(text(&kept, tags::PATIENT_NAME), latin1);
        assert_eq!(
            kept.get(tags::SPECIFIC_CHARACTER_SET)
                .expect("charset")
                .value()
                .multiplicity(),
            2
        );
        let error = to_unicode(&mut kept).expect_err("unknown escape");
        assert_eq!(
            error.to_string(),
            "(0010,0010) PN: unknown escape sequence ESC $ Z ; at byte 0"
        );
        assert_eq!(text(&kept, tags::PATIENT_NAME), latin1, "left as it was");
    }

    #[test]
    fn an_item_uses_its_own_set_and_what_follows_it_the_enclosing_one() {
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::Strs(["".to_owned(), "ISO 2022 IR 149".to_owned()].into()),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "\u{1b}$)C\u{b1}\u{e8}"),
        ]);
        // As dicom-rs reads it: the top level in ISO 8859-1, the item too (its first value is
        // empty), and so the elements after the item.
        let mut object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            DataElement::new(
                tags::REFERENCED_PATIENT_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, "Jérôme"),
        ]);
        assert!(to_unicode(&mut object).expect("decoded"));
        let item = &object
            .get(tags::REFERENCED_PATIENT_SEQUENCE)
            .and_then(|e| e.value().items())
            .expect("items")[0];
        assert_eq!(text(item, tags::PATIENT_NAME), "김");
        assert_eq!(text(item, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        assert_eq!(text(&object, tags::PATIENT_NAME), "Jérôme");
        assert_eq!(text(&object, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        // Once decoded, there is nothing more to do.
        assert!(!to_unicode(&mut object).expect("decoded"));
    }
}
