//! The C-FIND matching engine: attribute matching (PS3.4 C.2.2.2) and the response identifier
//! (PS3.4 C.4.1.1.3.2), over decoded data sets and independent of any storage.
//!
//! The rules, as implemented:
//!
//! * **Universal matching** (C.2.2.2.3): a zero-length key (or one of spaces only) matches every
//!   candidate, even one without the attribute; a lone `*` is universal for the VRs that allow
//!   wild cards.
//! * **Single value matching** (C.2.2.2.1): exact, after the padding PS3.5 §6.2 calls
//!   insignificant (trailing spaces and NULs; leading spaces too for AE, AS, CS, DA, DS, DT, IS,
//!   LO, SH, TM). PN is compared case-insensitively, with empty trailing components ignored and,
//!   for a key without `=`, against the alphabetic component group too. IS, DS and the binary
//!   numbers compare as numbers.
//! * **Wild card matching** (C.2.2.2.4): `*` (any run) and `?` (one character) for AE, CS, LO,
//!   LT, PN, SH, ST, UC, UR and UT; not for DA, TM, DT, UI or numbers, where they are plain
//!   characters.
//! * **List of UID matching** (C.2.2.2.2): a UI key of several backslash-separated UIDs matches
//!   any of them. A key with several values of another VR that allows several is treated
//!   alike: it matches when any of its values matches.
//! * **Range matching** (C.2.2.2.5): DA, TM and DT keys `a-b`, `a-`, `-b`; a single value is the
//!   range of its own precision (TM `1012` is 10:12:00 to 10:12:59.999999, DT `2024` the whole
//!   year), so TM with fractional parts and partial values compare correctly. The legacy forms
//!   `YYYY.MM.DD` and `HH:MM:SS` are read too. A DT value's UTC offset is taken into account
//!   (the value is moved to UTC); a DT value without one is taken as written.
//! * **Combined date and time matching** (C.2.2.2.5.2), when [`MatchOptions::combined_date_time`]
//!   says so: a date key and its paired time key (the attribute the dictionary names alike with
//!   "Time" for "Date": Study Date/Time, Series Date/Time, Patient's Birth Date/Time, Scheduled
//!   Procedure Step Start Date/Time...) of the same form are one date-time range; a candidate
//!   with a date and no time stands for its whole day.
//! * **Fuzzy matching of person names** (C.2.2.2.1.1, PS3.18 8.3.4.2 `fuzzymatching=true`),
//!   when [`MatchOptions::fuzzy_person_names`] says so: a PN key matches when each of its words
//!   begins a word of the candidate's name, in any order, without regard to case or accents
//!   (see [`FuzzyName`]).
//! * **Empty value matching** (C.2.2.2.1): a key whose one value is `""` (two QUOTATION MARK
//!   characters) matches a candidate whose attribute is missing or has no value.
//! * **Sequence matching** (C.2.2.2.6): a query sequence with no item, or whose item holds only
//!   universal keys, is universal; otherwise the candidate matches when at least one of its
//!   items matches every key of the query item (only the first query item is used; PS3.4 allows
//!   one).
//! * **Multi-valued candidates** (Modalities In Study, SOP Classes In Study, Other Patient
//!   Names…): the candidate matches when any of its values matches.
//!
//! A non-universal key the candidate has no value for does not match.
//!
//! A query is compiled once ([`CompiledQuery`], [`CompiledKey`]): keys decoded, split and
//! trimmed, universality decided, patterns and range bounds prepared, sequence items compiled;
//! matching a candidate decodes only the candidate's values. [`matches()`], [`key_matches`] and
//! [`response_identifier`] compile, then match: there is one matching implementation.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use dimsum_dataset::dicom_core::header::Header;
use dimsum_dataset::dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dimsum_dataset::dicom_core::{DataElement, Tag, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::{InMemDicomObject, mem::InMemElement};

/// Where the matching engine finds a candidate's attributes: a data set, or anything that can
/// look one up by tag (a folder archive's entity and its parents).
pub trait Candidate {
    /// The candidate's element for `tag`, if it has one.
    fn attribute(&self, tag: Tag) -> Option<&InMemElement>;
}

impl Candidate for InMemDicomObject {
    fn attribute(&self, tag: Tag) -> Option<&InMemElement> {
        self.get(tag)
    }
}

/// Keys that take part in no matching: Query/Retrieve Level (0008,0052), Specific Character
/// Set (0008,0005) and group lengths (gggg,0000).
pub fn is_return_only(tag: Tag) -> bool {
    tag == tags::QUERY_RETRIEVE_LEVEL
        || tag == tags::SPECIFIC_CHARACTER_SET
        || tag.element() == 0x0000
}

/// The matching rules PS3.4 leaves to the SCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchOptions {
    /// PN values compare without regard to case (C.2.2.2.1 allows it; what most users expect,
    /// and the default). When false, PN values compare case-sensitively; empty trailing
    /// components are still ignored.
    pub case_insensitive_person_names: bool,
    /// Combined date and time range matching (PS3.4 C.2.2.2.5.2): a date key and its paired
    /// time key (Study Date and Study Time, ...) are one date-time range. Optional; used when
    /// the peer negotiated it (C-FIND extended negotiation, PS3.4 C.5.1.1, byte 2).
    pub combined_date_time: bool,
    /// Fuzzy semantic matching of person names (PS3.4 C.2.2.2.1.1; C-FIND extended
    /// negotiation byte 3, PS3.4 C.5.1.1; QIDO-RS `fuzzymatching=true`, PS3.18 8.3.4.2): PN keys
    /// match word by word, by prefix, without regard to case or accents ([`FuzzyName`]).
    /// Off by default.
    pub fuzzy_person_names: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            case_insensitive_person_names: true,
            combined_date_time: false,
            fuzzy_person_names: false,
        }
    }
}

/// Whether `candidate` matches every key of `keys` (PS3.4 C.2.2.2); return-only keys
/// ([`is_return_only`]) are left out.
pub fn matches<C: Candidate + ?Sized>(keys: &InMemDicomObject, candidate: &C) -> bool {
    matches_with(keys, candidate, MatchOptions::default())
}

/// [`matches()`] with the optional rules of `options`.
pub fn matches_with<C: Candidate + ?Sized>(
    keys: &InMemDicomObject,
    candidate: &C,
    options: MatchOptions,
) -> bool {
    CompiledQuery::new(keys, options).matches(candidate)
}

/// Whether the key would match every candidate (C.2.2.2.3): no value, only spaces, a lone `*`
/// where wild cards are allowed, or a sequence with no item or only universal keys in its item.
pub fn is_universal(key: &InMemElement) -> bool {
    match key.value() {
        Value::Sequence(sequence) => sequence.items().first().is_none_or(item_is_universal),
        Value::PixelSequence(_) => true,
        Value::Primitive(value) => {
            let vr = key.vr();
            values(vr, value)
                .iter()
                .all(|v| v.is_empty() || (allows_wild_cards(vr) && v.chars().all(|c| c == '*')))
        }
    }
}

fn item_is_universal(item: &InMemDicomObject) -> bool {
    item.iter()
        .filter(|key| !is_return_only(key.tag()))
        .all(is_universal)
}

/// Whether the key asks for Empty Value Matching (PS3.4 C.2.2.2.1): its one value is two
/// QUOTATION MARK characters, `""`, which matches a candidate whose attribute is missing or
/// has a zero-length value.
pub fn is_empty_value_key(key: &InMemElement) -> bool {
    let Value::Primitive(value) = key.value() else {
        return false;
    };
    let values = values(key.vr(), value);
    matches!(values.as_slice(), [only] if only.trim() == "\"\"")
}

/// Whether one key matches the candidate's element for its tag (`None`: the candidate has no
/// such attribute).
pub fn key_matches(key: &InMemElement, candidate: Option<&InMemElement>) -> bool {
    key_matches_with(key, candidate, MatchOptions::default())
}

/// [`key_matches`] with the optional rules of `options`.
pub fn key_matches_with(
    key: &InMemElement,
    candidate: Option<&InMemElement>,
    options: MatchOptions,
) -> bool {
    CompiledKey::new(key, options).matches(candidate)
}

/// A query, or the item of a query sequence, compiled once (PS3.4 C.2.2.2): every key's values
/// decoded, split and trimmed, its universality decided, its wild card patterns and range
/// bounds prepared, its sequence items compiled in turn; and, under combined date and time
/// matching (C.2.2.2.5.2), each date key paired with its time key into one date-time range.
/// Matching a candidate then only decodes the candidate's values. Universal keys are left out:
/// they match every candidate.
#[derive(Debug, Clone, Default)]
pub struct CompiledQuery {
    tests: Vec<QueryTest>,
}

#[derive(Debug, Clone)]
enum QueryTest {
    Key(CompiledKey),
    DateTime(CombinedDateTime),
}

impl CompiledQuery {
    /// The query of `keys` (return-only keys, [`is_return_only`], left out).
    pub fn new(keys: &InMemDicomObject, options: MatchOptions) -> CompiledQuery {
        CompiledQuery::from_keys(keys.iter(), options)
    }

    /// The query of the keys `keys` (return-only keys left out), matched together: a date key
    /// and its time key among them are paired when `options` asks for combined date and time
    /// matching.
    pub fn from_keys<'a>(
        keys: impl IntoIterator<Item = &'a InMemElement>,
        options: MatchOptions,
    ) -> CompiledQuery {
        let keys: Vec<&InMemElement> = keys
            .into_iter()
            .filter(|key| !is_return_only(key.tag()) && !is_universal(key))
            .collect();
        let mut paired_times = Vec::new();
        let mut tests = Vec::with_capacity(keys.len());
        for key in &keys {
            if options.combined_date_time
                && let Some(time_key) = time_key_of(key, &keys)
                && let Some(combined) = CombinedDateTime::new(key, time_key)
            {
                paired_times.push(time_key.tag());
                tests.push(QueryTest::DateTime(combined));
                continue;
            }
            tests.push(QueryTest::Key(CompiledKey::new(key, options)));
        }
        tests.retain(|test| match test {
            QueryTest::Key(key) => !paired_times.contains(&key.tag),
            QueryTest::DateTime(_) => true,
        });
        CompiledQuery { tests }
    }

    /// Whether `candidate` matches every key.
    pub fn matches<C: Candidate + ?Sized>(&self, candidate: &C) -> bool {
        self.tests.iter().all(|test| match test {
            QueryTest::Key(key) => key.matches(candidate.attribute(key.tag)),
            QueryTest::DateTime(pair) => pair.matches(
                candidate.attribute(pair.date_tag),
                candidate.attribute(pair.time_tag),
            ),
        })
    }

    /// Whether the query matches every candidate (it has no non-universal key).
    pub fn is_universal(&self) -> bool {
        self.tests.is_empty()
    }

    /// The tags of the time keys matched together with their date key (C.2.2.2.5.2): they do
    /// not select on their own.
    pub fn paired_time_tags(&self) -> impl Iterator<Item = Tag> + '_ {
        self.tests.iter().filter_map(|test| match test {
            QueryTest::DateTime(pair) => Some(pair.time_tag),
            QueryTest::Key(_) => None,
        })
    }

    /// The compiled query item of the sequence key `tag`, if the query has one that is not
    /// universal.
    fn sequence(&self, tag: Tag) -> Option<&CompiledQuery> {
        self.tests.iter().find_map(|test| match test {
            QueryTest::Key(CompiledKey {
                tag: key_tag,
                test: KeyTest::Sequence(item),
            }) if *key_tag == tag => Some(item.as_ref()),
            _ => None,
        })
    }
}

/// The TM key paired with the DA key `date` (C.2.2.2.5.2), if `keys` has it: the attribute the
/// dictionary names like the date one with "Date" for "Time" (Study Date and Study Time,
/// Patient's Birth Date and Time, Scheduled Procedure Step Start Date and Time...), as DCMTK and
/// dcm4che pair them.
fn time_key_of<'a>(date: &InMemElement, keys: &[&'a InMemElement]) -> Option<&'a InMemElement> {
    if date.vr() != VR::DA {
        return None;
    }
    let time_tag = paired_time_tag(date.tag())?;
    keys.iter()
        .find(|key| key.tag() == time_tag && key.vr() == VR::TM)
        .copied()
}

/// The tag of the time attribute paired with the date attribute `date_tag` in the standard
/// dictionary (PS3.6), if any.
pub fn paired_time_tag(date_tag: Tag) -> Option<Tag> {
    use dimsum_dataset::dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    use dimsum_dataset::dicom_dictionary_std::StandardDataDictionary;
    let dictionary = StandardDataDictionary;
    let date = dictionary.by_tag(date_tag)?;
    if date.vr() != VirtualVr::Exact(VR::DA) || !date.alias().contains("Date") {
        return None;
    }
    let time = dictionary.by_name(&date.alias().replace("Date", "Time"))?;
    (time.vr() == VirtualVr::Exact(VR::TM)).then(|| time.tag())
}

/// One query key compiled once (PS3.4 C.2.2.2): see [`CompiledQuery`].
#[derive(Debug, Clone)]
pub struct CompiledKey {
    tag: Tag,
    test: KeyTest,
}

#[derive(Debug, Clone)]
enum KeyTest {
    /// Matches every candidate (C.2.2.2.3).
    Universal,
    /// `""`: matches a missing or zero-length attribute (C.2.2.2.1).
    EmptyValue,
    /// The key's values, of the key's VR.
    Values(ValuesTest),
    /// A key of unknown VR (a private attribute in implicit VR, or a long text value that
    /// DCMTK and pydicom send as UN): it takes each candidate's VR. It is compiled for the VR
    /// of the first candidate and kept; a candidate of another VR compiles it for itself.
    UnknownVr {
        value: PrimitiveValue,
        options: MatchOptions,
        first: OnceLock<ValuesTest>,
    },
    /// A query sequence item: some item of the candidate's sequence matches all its keys.
    Sequence(Box<CompiledQuery>),
}

/// One value of a key, prepared for the matching its VR calls for.
#[derive(Debug, Clone)]
enum KeyValue {
    /// Single value matching (C.2.2.2.1).
    Exact(String),
    /// Wild card matching (C.2.2.2.4).
    Pattern(Pattern),
    /// IS, DS and the binary numbers: compared as numbers, as text when either is not one.
    Number { number: Option<f64>, text: String },
    /// DA, TM, DT range (C.2.2.2.5); `None`: malformed, matches nothing.
    Range(Option<RangeBounds>),
    /// PN: the key normalized (and in lower case when names compare without regard to case).
    PersonName {
        name: String,
        pattern: Option<Pattern>,
        /// The key has no component groups: it is also tried against the candidate's
        /// alphabetic group.
        alphabetic_too: bool,
        case_insensitive: bool,
    },
    /// PN under fuzzy matching (C.2.2.2.1.1).
    FuzzyName(FuzzyName),
}

impl CompiledKey {
    /// The key compiled for matching with `options`.
    pub fn new(key: &InMemElement, options: MatchOptions) -> CompiledKey {
        let tag = key.tag();
        let test = if is_universal(key) {
            KeyTest::Universal
        } else if is_empty_value_key(key) {
            KeyTest::EmptyValue
        } else {
            match key.value() {
                Value::Sequence(sequence) => match sequence.items().first() {
                    Some(item) => KeyTest::Sequence(Box::new(CompiledQuery::new(item, options))),
                    None => KeyTest::Universal,
                },
                // Encapsulated values are not matched (is_universal said so).
                Value::PixelSequence(_) => KeyTest::Universal,
                Value::Primitive(value) if key.vr() == VR::UN => KeyTest::UnknownVr {
                    value: value.clone(),
                    options,
                    first: OnceLock::new(),
                },
                Value::Primitive(value) => {
                    KeyTest::Values(ValuesTest::new(key.vr(), value, options))
                }
            }
        };
        CompiledKey { tag, test }
    }

    /// The key's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// Whether the key matches the candidate's element for its tag (`None`: the candidate has
    /// no such attribute). A non-universal key the candidate has no value for does not match.
    pub fn matches(&self, candidate: Option<&InMemElement>) -> bool {
        match &self.test {
            KeyTest::Universal => true,
            KeyTest::EmptyValue => candidate.is_none_or(is_empty_element),
            KeyTest::Sequence(item) => candidate
                .and_then(|element| element.value().items())
                .is_some_and(|items| items.iter().any(|candidate| item.matches(candidate))),
            KeyTest::Values(test) => candidate.is_some_and(|candidate| test.matches(candidate)),
            KeyTest::UnknownVr {
                value,
                options,
                first,
            } => candidate.is_some_and(|candidate| {
                let vr = candidate.vr();
                let test = first.get_or_init(|| ValuesTest::new(vr, value, *options));
                if test.vr == vr {
                    test.matches(candidate)
                } else {
                    ValuesTest::new(vr, value, *options).matches(candidate)
                }
            }),
        }
    }
}

/// Whether an element has no value (zero length, or only padding; a sequence with no item).
fn is_empty_element(element: &InMemElement) -> bool {
    match element.value() {
        Value::Primitive(value) => values(element.vr(), value).iter().all(|v| v.is_empty()),
        Value::Sequence(sequence) => sequence.items().is_empty(),
        Value::PixelSequence(_) => false,
    }
}

/// The non-empty values of a key, prepared for `vr`.
fn compile_values(vr: VR, value: &PrimitiveValue, options: MatchOptions) -> Vec<KeyValue> {
    values(vr, value)
        .iter()
        .filter(|value| !value.is_empty())
        .map(|value| compile_value(vr, value, options))
        .collect()
}

fn compile_value(vr: VR, value: &str, options: MatchOptions) -> KeyValue {
    match vr {
        VR::DA | VR::TM | VR::DT => KeyValue::Range(range_bounds(vr, value)),
        VR::PN => {
            // A key with no word (`^`, `=`) is matched as without fuzzy matching.
            if options.fuzzy_person_names
                && let Some(fuzzy) = FuzzyName::new(value)
            {
                return KeyValue::FuzzyName(fuzzy);
            }
            let case_insensitive = options.case_insensitive_person_names;
            let name = person_name_key(value, case_insensitive);
            KeyValue::PersonName {
                case_insensitive,
                pattern: has_wild_cards(&name).then(|| Pattern::new(&name)),
                alphabetic_too: !name.contains('='),
                name,
            }
        }
        VR::IS | VR::DS | VR::US | VR::SS | VR::UL | VR::SL | VR::FL | VR::FD | VR::SV | VR::UV => {
            KeyValue::Number {
                number: value.trim().parse::<f64>().ok(),
                text: value.to_owned(),
            }
        }
        vr if allows_wild_cards(vr) && has_wild_cards(value) => {
            KeyValue::Pattern(Pattern::new(value))
        }
        _ => KeyValue::Exact(value.to_owned()),
    }
}

/// The non-empty values of a primitive key, compiled for one VR: the candidate matches when
/// one of its values matches one of them. Those matched exactly are in a set (a list of UIDs
/// may hold thousands).
#[derive(Debug, Clone)]
struct ValuesTest {
    vr: VR,
    exact: HashSet<String>,
    values: Vec<KeyValue>,
}

impl ValuesTest {
    fn new(vr: VR, value: &PrimitiveValue, options: MatchOptions) -> ValuesTest {
        let mut exact = HashSet::new();
        let mut values = Vec::new();
        for value in compile_values(vr, value, options) {
            match value {
                KeyValue::Exact(text) => {
                    exact.insert(text);
                }
                other => values.push(other),
            }
        }
        ValuesTest { vr, exact, values }
    }

    /// Whether one of the candidate's values (decoded here, as [`values`] gives them) matches.
    fn matches(&self, candidate: &InMemElement) -> bool {
        let Value::Primitive(candidate_value) = candidate.value() else {
            return false;
        };
        values(self.vr, candidate_value).iter().any(|candidate| {
            self.exact.contains(candidate.as_ref())
                || self
                    .values
                    .iter()
                    .any(|key| key.matches(self.vr, candidate))
        })
    }
}

impl KeyValue {
    /// Whether one candidate value matches this key value.
    fn matches(&self, vr: VR, candidate: &str) -> bool {
        match self {
            KeyValue::Exact(key) => key == candidate,
            KeyValue::Pattern(pattern) => pattern.matches(candidate),
            KeyValue::Number { number, text } => match (number, candidate.trim().parse::<f64>()) {
                (Some(key), Ok(candidate)) => *key == candidate,
                _ => text == candidate,
            },
            KeyValue::Range(None) => false,
            KeyValue::Range(Some(range)) => {
                range_point(vr, candidate).is_some_and(|point| range.contains(&point))
            }
            KeyValue::PersonName {
                name,
                pattern,
                alphabetic_too,
                case_insensitive,
            } => person_name_matches(
                name,
                pattern.as_ref(),
                *alphabetic_too,
                *case_insensitive,
                candidate,
            ),
            KeyValue::FuzzyName(fuzzy) => fuzzy.matches(candidate),
        }
    }
}

/// The response identifier for a matching candidate (PS3.4 C.4.1.1.3.2): for each key of the
/// query, the candidate's element (zero-length when it has none), recursively inside sequences;
/// Query/Retrieve Level as the query asked; Specific Character Set of the candidate when it has
/// one.
pub fn response_identifier<C: Candidate + ?Sized>(
    keys: &InMemDicomObject,
    candidate: &C,
) -> InMemDicomObject {
    response_identifier_with(keys, candidate, MatchOptions::default())
}

/// [`response_identifier`], sequence items chosen with the optional rules of `options`.
pub fn response_identifier_with<C: Candidate + ?Sized>(
    keys: &InMemDicomObject,
    candidate: &C,
    options: MatchOptions,
) -> InMemDicomObject {
    CompiledQuery::new(keys, options).response(keys, candidate)
}

impl CompiledQuery {
    /// [`response_identifier`] for the query this was compiled from, `keys`: sequence items
    /// are chosen with the compiled query items.
    pub fn response<C: Candidate + ?Sized>(
        &self,
        keys: &InMemDicomObject,
        candidate: &C,
    ) -> InMemDicomObject {
        let mut response = self.response_item(keys, candidate);
        if let Some(level) = keys.get(tags::QUERY_RETRIEVE_LEVEL) {
            response.put(level.clone());
        }
        if let Some(charset) = candidate.attribute(tags::SPECIFIC_CHARACTER_SET) {
            response.put(charset.clone());
        }
        response
    }

    /// The elements of a response (or of a response item) for `keys`.
    fn response_item<C: Candidate + ?Sized>(
        &self,
        keys: &InMemDicomObject,
        candidate: &C,
    ) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(
            keys.iter()
                .filter(|key| !is_return_only(key.tag()))
                .map(|key| self.response_element(key, candidate.attribute(key.tag()))),
        )
    }

    /// The response element for one key: for a sequence, the candidate's items that match the
    /// query item, each reduced to the item's keys (all of them, whole, for a query sequence
    /// with no item); otherwise the candidate's element.
    fn response_element(
        &self,
        key: &InMemElement,
        candidate: Option<&InMemElement>,
    ) -> InMemElement {
        let tag = key.tag();
        let Value::Sequence(sequence) = key.value() else {
            return match candidate {
                Some(element) => element.clone(),
                None => DataElement::empty(tag, key.vr()),
            };
        };
        let candidate_items = candidate.and_then(|element| element.value().items());
        let universal = CompiledQuery::default();
        let compiled = self.sequence(tag).unwrap_or(&universal);
        let items: Vec<InMemDicomObject> = match (candidate_items, sequence.items().first()) {
            (None, _) => Vec::new(),
            (Some(items), None) => items.to_vec(),
            (Some(items), Some(query_item)) => items
                .iter()
                .filter(|item| compiled.matches(*item))
                .map(|item| compiled.response_item(query_item, item))
                .collect(),
        };
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    }
}

/// The values of a primitive value as text, without the padding that is insignificant for `vr`
/// (PS3.5 §6.2). VRs whose value is one text (LT, ST, UT, UR) give one value whatever it holds.
pub(crate) fn values(vr: VR, value: &PrimitiveValue) -> Vec<Cow<'_, str>> {
    match value {
        PrimitiveValue::Empty => Vec::new(),
        PrimitiveValue::Str(text) => split(vr, text),
        PrimitiveValue::Strs(texts) => texts.iter().flat_map(|text| split(vr, text)).collect(),
        // Bytes of a key whose VR was unknown, or sent as UN (as DCMTK and pydicom send text
        // values over 64 KiB in explicit VR): their text. Only OB stays bytes — never one
        // string per byte, which a 10 MB key would turn into ten million strings.
        PrimitiveValue::U8(bytes) if vr != VR::OB => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            split(vr, &text)
                .into_iter()
                .map(|v| Cow::Owned(v.into_owned()))
                .collect()
        }
        other => other
            .to_multi_str()
            .iter()
            .map(|v| Cow::Owned(trim(vr, v).to_owned()))
            .collect(),
    }
}

fn split(vr: VR, text: &str) -> Vec<Cow<'_, str>> {
    if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR) {
        vec![Cow::Borrowed(trim(vr, text))]
    } else {
        text.split('\\')
            .map(|value| Cow::Borrowed(trim(vr, value)))
            .collect()
    }
}

/// Strips the padding PS3.5 §6.2 calls insignificant for `vr`.
pub(crate) fn trim(vr: VR, value: &str) -> &str {
    let value = value.trim_end_matches([' ', '\0']);
    match vr {
        VR::AE | VR::AS | VR::CS | VR::DA | VR::DS | VR::DT | VR::IS | VR::LO | VR::SH | VR::TM => {
            value.trim_start_matches(' ')
        }
        _ => value,
    }
}

/// The VRs for which PS3.4 C.2.2.2.4 allows wild cards.
pub(crate) fn allows_wild_cards(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UR | VR::UT
    )
}

pub(crate) fn has_wild_cards(value: &str) -> bool {
    value.contains(['*', '?'])
}

/// A PN value as it is compared: normalized ([`normalize_person_name`]), in lower case when
/// names compare without regard to case — except a component group holding an escape sequence
/// (ISO 2022 text that dicom-rs left encoded, PS3.5 §6.1.2.5): its letters are code bytes of
/// another repertoire, where `E` and `e` are different characters, so it keeps its case.
fn person_name_key(name: &str, case_insensitive: bool) -> String {
    let name = normalize_person_name(name);
    if !case_insensitive {
        return name;
    }
    if !name.contains('\u{1b}') {
        return name.to_lowercase();
    }
    name.split('=')
        .map(|group| {
            if group.contains('\u{1b}') {
                group.to_owned()
            } else {
                group.to_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join("=")
}

/// PN: the compiled key `key` (see [`person_name_key`]) against a candidate value, empty
/// trailing components ignored; a key without component groups (`=`) is also tried against the
/// candidate's alphabetic group.
fn person_name_matches(
    key: &str,
    pattern: Option<&Pattern>,
    alphabetic_too: bool,
    case_insensitive: bool,
    candidate: &str,
) -> bool {
    let one = |candidate: &str| match pattern {
        Some(pattern) => pattern.matches(candidate),
        None => key == candidate,
    };
    let whole = person_name_key(candidate, case_insensitive);
    one(&whole)
        || (alphabetic_too
            && candidate.contains('=')
            && one(&person_name_key(
                candidate.split('=').next().unwrap_or_default(),
                case_insensitive,
            )))
}

/// A PN key under fuzzy semantic matching of person names (PS3.4 C.2.2.2.1.1, which leaves the
/// rules to the implementation; PS3.18 8.3.4.2 for QIDO-RS). dimsum's rules, as DICOMweb servers
/// commonly define them (a word prefix of any name part, as Microsoft's and Google's do):
///
/// * Key and candidate are **folded**: compatibility decomposition (Unicode NFKD), combining
///   marks (canonical combining class other than 0: accents, cedillas, dakuten…) removed, lower
///   case; a few letters that do not decompose are spelt out (`ß` → `ss`, `æ` → `ae`, `œ` → `oe`,
///   `ø` → `o`, `ł` → `l`, `đ`/`ð` → `d`, `þ` → `th`, `ı` → `i`). Apostrophes are removed
///   (`O'Brien` is `obrien`).
/// * Both are split into **words**: runs of letters and digits (and, in the key, the wild cards
///   `*` and `?`); everything else — the component separator `^`, the group separator `=`,
///   spaces, hyphens, commas, periods — separates words. Every component and every component
///   group of the candidate takes part.
/// * The key matches when **each of its words begins some word of the candidate**, in any order:
///   `jo` matches `Jöhn^DOE` and `Smith^John`; `doe jo` and `DOE^J` match `John^Doe`; `ohn` does
///   not match `John`. A key word with wild cards matches when the pattern matches the beginning
///   of a candidate word (`*oe` matches `Doe` and `Joel`; `j?n` matches `Jane`); `?` stands for
///   one character of the folded word.
///
/// A key without any word (`^`, `=`) is matched as without fuzzy matching. Narrowing in the index
/// never uses a fuzzy key (the columns hold names unfolded), so no fuzzy match is ever lost.
#[derive(Debug, Clone)]
pub struct FuzzyName {
    words: Vec<FuzzyWord>,
}

#[derive(Debug, Clone)]
enum FuzzyWord {
    /// A word without wild cards: the candidate word starts with it.
    Prefix(String),
    /// A word with wild cards: the pattern (with a `*` added) matches the candidate word.
    Pattern(Pattern),
}

impl FuzzyName {
    /// The fuzzy key of the PN value `key`; `None` when it has no word.
    pub fn new(key: &str) -> Option<FuzzyName> {
        let folded = fold_name(key);
        let words: Vec<FuzzyWord> = split_words(&folded, true)
            .map(|word| {
                if has_wild_cards(word) {
                    FuzzyWord::Pattern(Pattern::new(&format!("{word}*")))
                } else {
                    FuzzyWord::Prefix(word.to_owned())
                }
            })
            .collect();
        (!words.is_empty()).then_some(FuzzyName { words })
    }

    /// Whether the PN value `candidate` (every component group of it) matches.
    pub fn matches(&self, candidate: &str) -> bool {
        let folded = fold_name(candidate);
        let words: Vec<&str> = split_words(&folded, false).collect();
        self.words.iter().all(|key| {
            words.iter().any(|word| match key {
                FuzzyWord::Prefix(prefix) => word.starts_with(prefix.as_str()),
                FuzzyWord::Pattern(pattern) => pattern.matches(word),
            })
        })
    }
}

/// A name folded for fuzzy matching ([`FuzzyName`]): NFKD, combining marks removed, lower case,
/// the letters that do not decompose spelt out, apostrophes removed.
pub fn fold_name(name: &str) -> String {
    use icu_normalizer::DecomposingNormalizerBorrowed;
    use icu_normalizer::properties::CanonicalCombiningClassMapBorrowed;
    let decompose = DecomposingNormalizerBorrowed::new_nfkd();
    let combining = CanonicalCombiningClassMapBorrowed::new();
    let mut folded = String::with_capacity(name.len());
    for c in decompose.normalize_iter(name.chars()) {
        if combining.get_u8(c) != 0 {
            continue;
        }
        match c {
            '\'' | '\u{2019}' | '\u{02bc}' => {}
            'ß' | 'ẞ' => folded.push_str("ss"),
            'æ' | 'Æ' => folded.push_str("ae"),
            'œ' | 'Œ' => folded.push_str("oe"),
            'ø' | 'Ø' => folded.push('o'),
            'ł' | 'Ł' => folded.push('l'),
            'đ' | 'Đ' | 'ð' | 'Ð' => folded.push('d'),
            'þ' | 'Þ' => folded.push_str("th"),
            'ı' => folded.push('i'),
            other => folded.extend(other.to_lowercase()),
        }
    }
    folded
}

/// The words of a folded name: runs of letters and digits (and of wild cards in a key).
fn split_words(folded: &str, key: bool) -> impl Iterator<Item = &str> {
    folded
        .split(move |c: char| !(c.is_alphanumeric() || (key && (c == '*' || c == '?'))))
        .filter(|word| !word.is_empty())
}

/// Without empty trailing components in each group, nor empty trailing groups (case kept).
pub(crate) fn normalize_person_name(name: &str) -> String {
    let groups: Vec<&str> = name
        .split('=')
        .map(|group| group.trim_end_matches([' ', '^']))
        .collect();
    let kept = groups
        .iter()
        .rposition(|group| !group.is_empty())
        .map_or(0, |last| last + 1);
    groups[..kept].join("=")
}

/// A wild card pattern (C.2.2.2.4), prepared once: `*` matches any run of characters (none
/// included), `?` any one character, every other character itself.
#[derive(Debug, Clone)]
struct Pattern {
    chars: Vec<char>,
    /// How many characters a value needs at least (those that are not `*`).
    min_chars: usize,
}

impl Pattern {
    fn new(pattern: &str) -> Pattern {
        let chars: Vec<char> = pattern.chars().collect();
        let min_chars = chars.iter().filter(|&&c| c != '*').count();
        Pattern { chars, min_chars }
    }

    fn matches(&self, value: &str) -> bool {
        // A value too short for the pattern is settled without walking it (a 1 MB pattern
        // against a short name).
        if value.len() < self.min_chars {
            return false;
        }
        let value: Vec<char> = value.chars().collect();
        if value.len() < self.min_chars {
            return false;
        }
        let pattern = &self.chars;
        let (mut p, mut v) = (0, 0);
        // Where the last `*` was, and the value position it was tried against.
        let mut star: Option<(usize, usize)> = None;
        while v < value.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, v));
                    p += 1;
                }
                Some(&c) if c == '?' || c == value[v] => {
                    p += 1;
                    v += 1;
                }
                _ => match star {
                    Some((star_p, star_v)) => {
                        p = star_p + 1;
                        v = star_v + 1;
                        star = Some((star_p, star_v + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

/// A date key and its time key matched as one date-time range (PS3.4 C.2.2.2.5.2, combined
/// date and time matching): `StudyDate=20200101-20200103, StudyTime=1000-1200` is 2020-01-01
/// 10:00 to 2020-01-03 12:00, not 10:00 to 12:00 on each of three days.
///
/// Both keys must be one value and take the same form: both `a-b`, both `a-`, both `-b`, or
/// both single values (each the range of its precision); otherwise they match independently,
/// as without combined matching. A candidate with a date and no time stands for its whole day:
/// it matches when that day overlaps the range.
#[derive(Debug, Clone)]
struct CombinedDateTime {
    date_tag: Tag,
    time_tag: Tag,
    /// The ends as normalized DT points (`YYYYMMDDHHMMSSffffff`); `None` is an open end.
    range: RangeBounds,
}

impl CombinedDateTime {
    /// The pair, if the keys can be combined.
    fn new(date: &InMemElement, time: &InMemElement) -> Option<CombinedDateTime> {
        let one = |key: &InMemElement| -> Option<String> {
            let Value::Primitive(value) = key.value() else {
                return None;
            };
            let values = values(key.vr(), value);
            match values.as_slice() {
                [only] if !only.is_empty() && only.as_ref() != "\"\"" => Some(only.to_string()),
                _ => None,
            }
        };
        let (date_value, time_value) = (one(date)?, one(time)?);
        let ends = |vr: VR, value: &str| -> (Option<String>, Option<String>) {
            match split_range(vr, value) {
                Some((lower, upper)) => (lower.map(str::to_owned), upper.map(str::to_owned)),
                None => (Some(value.to_owned()), Some(value.to_owned())),
            }
        };
        let (date_lower, date_upper) = ends(VR::DA, &date_value);
        let (time_lower, time_upper) = ends(VR::TM, &time_value);
        if date_lower.is_some() != time_lower.is_some()
            || date_upper.is_some() != time_upper.is_some()
        {
            return None;
        }
        let join = |date: Option<String>, time: Option<String>, end: End| match (date, time) {
            (Some(date), Some(time)) => Some(Some(
                normalize(VR::DA, &date, end)? + &normalize(VR::TM, &time, end)?,
            )),
            _ => Some(None),
        };
        Some(CombinedDateTime {
            date_tag: date.tag(),
            time_tag: time.tag(),
            range: RangeBounds {
                lower: join(date_lower, time_lower, End::Lower)?,
                upper: join(date_upper, time_upper, End::Upper)?,
            },
        })
    }

    /// Whether a candidate with these date and time elements matches.
    fn matches(&self, date: Option<&InMemElement>, time: Option<&InMemElement>) -> bool {
        let first = |element: Option<&InMemElement>, vr: VR| -> Option<Option<String>> {
            let Some(element) = element else {
                return Some(None);
            };
            let Value::Primitive(value) = element.value() else {
                return None;
            };
            match values(vr, value).iter().find(|v| !v.is_empty()) {
                Some(value) => Some(Some(range_point(vr, value)?)),
                None => Some(None),
            }
        };
        let Some(Some(day)) = first(date, VR::DA) else {
            return false;
        };
        match first(time, VR::TM) {
            Some(Some(time)) => self.range.contains(&format!("{day}{time}")),
            // No time: the whole day, which must overlap the range.
            Some(None) => {
                let (start, end) = (format!("{day}000000000000"), format!("{day}235959999999"));
                self.range
                    .upper
                    .as_deref()
                    .is_none_or(|upper| start.as_str() <= upper)
                    && self
                        .range
                        .lower
                        .as_deref()
                        .is_none_or(|lower| end.as_str() >= lower)
            }
            None => false,
        }
    }
}

/// Which end of a range a partial value stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Lower,
    Upper,
}

/// Whether `value` is a DA, TM or DT key value the range rules can read (C.2.2.2.5): one value,
/// or `a-b`, `a-`, `-b` of them, in the forms [`matches()`] accepts. A malformed one matches
/// nothing; a service that checks its keys first (QIDO-RS, PS3.18 8.3.4.1) refuses it instead.
pub fn is_valid_range_key(vr: VR, value: &str) -> bool {
    matches!(vr, VR::DA | VR::TM | VR::DT)
        && split_range(vr, value) != Some((None, None))
        && range_bounds(vr, value).is_some()
}

/// The ends of a DA, TM or DT range key, normalized to sort in time order (see [`normalize`]);
/// `None` at an open end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeBounds {
    pub lower: Option<String>,
    pub upper: Option<String>,
}

impl RangeBounds {
    /// Whether a normalized point ([`range_point`]) lies in the range, ends included.
    pub fn contains(&self, point: &str) -> bool {
        self.lower.as_deref().is_none_or(|lower| point >= lower)
            && self.upper.as_deref().is_none_or(|upper| point <= upper)
    }
}

/// A candidate DA, TM or DT value as the point that range matching compares; `None` when it is
/// not a date or time (it matches no range).
pub(crate) fn range_point(vr: VR, candidate: &str) -> Option<String> {
    normalize(vr, candidate, End::Lower)
}

/// The range a (non-empty) DA, TM or DT key stands for: `a-b`, `a-`, `-b`, or a single value as
/// the range of its own precision; `None` when an end is malformed (the key matches nothing).
pub(crate) fn range_bounds(vr: VR, key: &str) -> Option<RangeBounds> {
    let (lower, upper) = match split_range(vr, key) {
        Some((lower, upper)) => (lower, upper),
        None => (Some(key), Some(key)),
    };
    let lower = match lower {
        Some(lower) => Some(normalize(vr, lower, End::Lower)?),
        None => None,
    };
    let upper = match upper {
        Some(upper) => Some(normalize(vr, upper, End::Upper)?),
        None => None,
    };
    Some(RangeBounds { lower, upper })
}

/// The two ends of a range key (`None` for an open end), or `None` when the key is a single
/// value. In DT, a `-` followed by four digits that ends the value or the range's lower end
/// and follows a date of at least YYYYMMDD is a UTC offset, not the range separator.
fn split_range(vr: VR, key: &str) -> Option<(Option<&str>, Option<&str>)> {
    let separator = if vr == VR::DT {
        key.char_indices()
            .filter(|&(_, c)| c == '-')
            .map(|(i, _)| i)
            .find(|&i| !is_utc_offset(key, i))?
    } else {
        key.find('-')?
    };
    let lower = key[..separator].trim();
    let upper = key[separator + 1..].trim();
    Some((
        (!lower.is_empty()).then_some(lower),
        (!upper.is_empty()).then_some(upper),
    ))
}

/// Whether the `-` at `index` of a DT value starts a UTC offset (`-HHMM`).
fn is_utc_offset(value: &str, index: usize) -> bool {
    let before = &value[..index];
    let digits_before = before.rsplit(['-', ' ']).next().unwrap_or_default();
    let after = &value[index + 1..];
    let offset = after.split('-').next().unwrap_or_default();
    digits_before.split('.').next().unwrap_or_default().len() >= 8
        && offset.len() == 4
        && offset.bytes().all(|b| b.is_ascii_digit())
}

/// A DA, TM or DT value as a fixed-width string of digits that sorts in time order: DA
/// `YYYYMMDD`, TM `HHMMSSffffff`, DT `YYYYMMDDHHMMSSffffff`; components left out are filled
/// with their least (`End::Lower`) or greatest (`End::Upper`) value. `None` if it is not one.
fn normalize(vr: VR, value: &str, end: End) -> Option<String> {
    let value = value.trim();
    // Dates and times are ASCII digits and separators; anything else (a peer's stray bytes)
    // matches nothing, and the byte offsets below stay on character boundaries.
    if !value.is_ascii() {
        return None;
    }
    match vr {
        VR::DA => {
            let digits: String = if value.len() == 10 && value.as_bytes().get(4) == Some(&b'.') {
                value.chars().filter(|&c| c != '.').collect()
            } else {
                value.to_owned()
            };
            fill_date(&digits, end)
        }
        VR::TM if value.is_empty() => None,
        VR::TM => {
            let value: String = value.chars().filter(|&c| c != ':').collect();
            fill_time(&value, end)
        }
        VR::DT => {
            let (value, offset) = match value.rfind(['+', '-']) {
                Some(sign) if sign >= 4 => {
                    (&value[..sign], Some(utc_offset_minutes(&value[sign..])?))
                }
                _ => (value, None),
            };
            let (date, time) = value.split_at(value.len().min(8));
            let mut out = fill_date(date, end)?;
            out.push_str(&fill_time(time, end)?);
            match offset {
                // C.2.2.2.5: the offset, when the value has one, is taken into account: the
                // point is moved to UTC. A value without one is taken as written.
                Some(minutes) => to_utc(&out, minutes),
                None => Some(out),
            }
        }
        _ => None,
    }
}

/// A DT value's UTC offset (`+HHMM` or `-HHMM`, PS3.5 Table 6.2-1) in minutes east of UTC.
fn utc_offset_minutes(offset: &str) -> Option<i64> {
    let (sign, digits) = offset.split_at(1);
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    let magnitude = hours * 60 + minutes;
    Some(if sign == "-" { -magnitude } else { magnitude })
}

/// A normalized DT point (`YYYYMMDDHHMMSSffffff`) at UTC offset `offset` minutes, as the same
/// moment in UTC. A day past the month's end (the upper fill of `YYYYMM`) counts as its last day.
fn to_utc(point: &str, offset: i64) -> Option<String> {
    let number = |range: std::ops::Range<usize>| point.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute) = (number(8..10)?, number(10..12)?);
    if !(1..=12).contains(&month) || day < 1 {
        return None;
    }
    let day = day.min(days_in_month(year, month));
    let minutes = days_from_civil(year, month, day) * 1440 + hour * 60 + minute - offset;
    let (days, minute_of_day) = (minutes.div_euclid(1440), minutes.rem_euclid(1440));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{}",
        minute_of_day / 60,
        minute_of_day % 60,
        point.get(12..)?
    ))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY`, `YYYYMM` or `YYYYMMDD`, filled to eight digits.
fn fill_date(date: &str, end: End) -> Option<String> {
    if !date.bytes().all(|b| b.is_ascii_digit()) || !matches!(date.len(), 4 | 6 | 8) {
        return None;
    }
    let fill = match end {
        End::Lower => "0101",
        End::Upper => "1231",
    };
    Some(format!("{date}{}", &fill[date.len() - 4..]))
}

/// `HH[MM[SS[.F{1,6}]]]` (or nothing, after the date of a DT), filled to twelve digits.
fn fill_time(time: &str, end: End) -> Option<String> {
    let (main, fraction) = match time.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (time, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(main) || !matches!(main.len(), 0 | 2 | 4 | 6) {
        return None;
    }
    if let Some(fraction) = fraction
        && (main.len() != 6 || fraction.is_empty() || fraction.len() > 6 || !digits(fraction))
    {
        return None;
    }
    let (fill, fraction_fill) = match end {
        End::Lower => ("000000", '0'),
        End::Upper => ("235959", '9'),
    };
    let mut out = format!("{main}{}", &fill[main.len()..]);
    let fraction = fraction.unwrap_or_default();
    out.push_str(fraction);
    out.extend(std::iter::repeat_n(fraction_fill, 6 - fraction.len()));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;

    fn element(tag: Tag, vr: VR, value: &str) -> InMemElement {
        if value.is_empty() {
            DataElement::empty(tag, vr)
        } else {
            DataElement::new(tag, vr, PrimitiveValue::from(value))
        }
    }

    fn multi(tag: Tag, vr: VR, values: &[&str]) -> InMemElement {
        DataElement::new(
            tag,
            vr,
            PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect()),
        )
    }

    fn object(elements: Vec<InMemElement>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    }

    /// Whether a key of `vr` with value `key` matches a candidate with value `candidate`.
    fn one(vr: VR, key: &str, candidate: &str) -> bool {
        let tag = Tag(0x0011, 0x1000);
        let candidate = (!candidate.is_empty()).then(|| element(tag, vr, candidate));
        key_matches(&element(tag, vr, key), candidate.as_ref())
    }

    #[test]
    fn a_non_ascii_date_time_matches_nothing_and_does_not_panic() {
        for (vr, key) in [
            (VR::DT, "20Q\u{ff}\u{ff}\u{ff}0261"),
            (VR::DA, "2026\u{e9}101"),
            (VR::TM, "10\u{ff}30-11"),
        ] {
            let key = element(tags::ACQUISITION_DATE_TIME, vr, key);
            let candidate = element(tags::ACQUISITION_DATE_TIME, vr, "20261207101530");
            assert!(!key_matches(&key, Some(&candidate)));
        }
    }

    #[test]
    fn universal_matching_matches_everything_even_a_missing_attribute() {
        assert!(one(VR::LO, "", "anything"));
        assert!(one(VR::LO, "", ""));
        assert!(one(VR::LO, "   ", "anything"));
        assert!(one(VR::DA, "", "20240101"));
        assert!(one(VR::UI, "", "1.2.3"));
        // A lone `*` is universal where wild cards are allowed, even with no value.
        assert!(one(VR::PN, "*", ""));
        assert!(one(VR::CS, "*", "CT"));
        // …but not for a date, where `*` is no wild card.
        assert!(!one(VR::DA, "*", "20240101"));
    }

    #[test]
    fn a_key_with_a_value_does_not_match_a_candidate_without_one() {
        assert!(!one(VR::LO, "PID1", ""));
        assert!(!one(VR::DA, "20240101-", ""));
        assert!(!one(VR::PN, "DOE*", ""));
    }

    #[test]
    fn single_value_matching_is_exact_except_for_padding() {
        assert!(one(VR::LO, "PID1", "PID1"));
        assert!(one(VR::LO, "PID1", "PID1 "));
        assert!(one(VR::LO, " PID1", "PID1"));
        assert!(one(VR::SH, "ACC1", " ACC1 "));
        assert!(!one(VR::LO, "PID1", "PID10"));
        assert!(!one(VR::LO, "pid1", "PID1"), "LO is case-sensitive");
        assert!(!one(VR::CS, "ct", "CT"), "CS is case-sensitive");
        // UI padding is a NUL.
        assert!(one(VR::UI, "1.2.3", "1.2.3\0"));
        assert!(!one(VR::UI, "1.2.3", "1.2.3.4"));
        // LT keeps its leading spaces.
        assert!(!one(VR::LT, "text", " text"));
    }

    #[test]
    fn person_names_match_case_insensitively_without_empty_trailing_components() {
        assert!(one(VR::PN, "DOE^JOHN", "Doe^John"));
        assert!(one(VR::PN, "doe^john", "DOE^JOHN^^^"));
        assert!(one(VR::PN, "DOE^JOHN^^^", "DOE^JOHN"));
        assert!(!one(VR::PN, "DOE^JOHN", "DOE^JANE"));
        assert!(!one(VR::PN, "DOE", "DOE^JOHN"));
        // A key without component groups is also tried against the alphabetic group.
        assert!(one(
            VR::PN,
            "Yamada^Tarou",
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        ));
        assert!(one(VR::PN, "YAMADA*", "Yamada^Tarou=山田^太郎"));
        assert!(!one(VR::PN, "山田^太郎", "Yamada^Tarou=山田^太郎"));
    }

    #[test]
    fn person_names_match_case_sensitively_when_asked() {
        let tag = tags::PATIENT_NAME;
        let sensitive = MatchOptions {
            case_insensitive_person_names: false,
            ..MatchOptions::default()
        };
        let candidate = element(tag, VR::PN, "Doe^John^^");
        let key = |value| element(tag, VR::PN, value);
        assert!(key_matches_with(
            &key("Doe^John"),
            Some(&candidate),
            sensitive
        ));
        assert!(key_matches_with(&key("Doe*"), Some(&candidate), sensitive));
        assert!(!key_matches_with(
            &key("DOE^JOHN"),
            Some(&candidate),
            sensitive
        ));
        assert!(!key_matches_with(&key("doe*"), Some(&candidate), sensitive));
        assert!(key_matches_with(
            &key("DOE^JOHN"),
            Some(&candidate),
            MatchOptions::default()
        ));
    }

    #[test]
    fn numbers_match_by_value() {
        assert!(one(VR::IS, "5", "05"));
        assert!(one(VR::DS, "1.5", "1.50"));
        assert!(!one(VR::IS, "5", "6"));
        let tag = tags::ROWS;
        let rows = DataElement::new(tag, VR::US, PrimitiveValue::from(512_u16));
        assert!(key_matches(&element(tag, VR::US, "512"), Some(&rows)));
        assert!(!key_matches(&element(tag, VR::US, "256"), Some(&rows)));
    }

    #[test]
    fn wild_cards_match_runs_and_single_characters() {
        assert!(one(VR::PN, "DOE*", "DOE^JOHN"));
        assert!(one(VR::PN, "doe*", "DOE^JOHN"), "PN wild cards ignore case");
        assert!(one(VR::PN, "*JOHN", "DOE^JOHN"));
        assert!(one(VR::PN, "D?E^*", "DOE^JOHN"));
        assert!(!one(VR::PN, "D?E", "DOE^JOHN"));
        assert!(one(VR::LO, "A*B*C", "AxxBxxC"));
        assert!(one(VR::LO, "A*B*C", "ABC"));
        assert!(one(VR::LO, "A**C", "AC"));
        assert!(!one(VR::LO, "A*B*C", "AxxBxx"));
        assert!(!one(VR::LO, "a*", "ABC"), "LO wild cards keep case");
        assert!(one(VR::CS, "C?", "CT"));
        assert!(one(VR::SH, "??", "AB"));
        assert!(!one(VR::SH, "??", "ABC"));
        assert!(
            one(VR::LO, "*ÜR*", "ZÜRICH"),
            "wild cards count characters, not bytes"
        );
        assert!(one(VR::LO, "?RICH", "ÜRICH"));
    }

    #[test]
    fn wild_cards_are_plain_characters_in_dates_times_uids_and_numbers() {
        assert!(!one(VR::UI, "1.2.*", "1.2.3"));
        assert!(one(VR::UI, "1.2.*", "1.2.*"));
        assert!(!one(VR::DA, "2024*", "20240101"));
        assert!(!one(VR::TM, "10*", "101500"));
        assert!(!one(VR::IS, "1?", "12"));
        assert!(!one(VR::AS, "04?Y", "045Y"));
    }

    #[test]
    fn list_of_uid_matching_matches_any_uid_of_the_list() {
        let tag = tags::SOP_INSTANCE_UID;
        let key = multi(tag, VR::UI, &["1.2.3", "1.2.4", "1.2.5"]);
        assert!(key_matches(&key, Some(&element(tag, VR::UI, "1.2.4"))));
        assert!(key_matches(&key, Some(&element(tag, VR::UI, "1.2.5\0"))));
        assert!(!key_matches(&key, Some(&element(tag, VR::UI, "1.2.6"))));
        // The same list in one string, as a peer may have encoded it.
        let joined = element(tag, VR::UI, "1.2.3\\1.2.4");
        assert!(key_matches(&joined, Some(&element(tag, VR::UI, "1.2.4"))));
        assert!(!key_matches(
            &joined,
            Some(&element(tag, VR::UI, "1.2.3.4"))
        ));
    }

    #[test]
    fn a_multi_valued_candidate_matches_when_any_value_matches() {
        let tag = tags::MODALITIES_IN_STUDY;
        let candidate = multi(tag, VR::CS, &["CT", "MR", "SR"]);
        assert!(key_matches(&element(tag, VR::CS, "MR"), Some(&candidate)));
        assert!(key_matches(&element(tag, VR::CS, "S?"), Some(&candidate)));
        assert!(!key_matches(&element(tag, VR::CS, "US"), Some(&candidate)));
        // A key with several values: any against any.
        let key = multi(tag, VR::CS, &["US", "SR"]);
        assert!(key_matches(&key, Some(&candidate)));
        let key = multi(tag, VR::CS, &["US", "XA"]);
        assert!(!key_matches(&key, Some(&candidate)));
    }

    #[test]
    fn date_ranges_bound_inclusively_and_open_ended() {
        assert!(one(VR::DA, "20240101-20241231", "20240615"));
        assert!(one(VR::DA, "20240101-20241231", "20240101"));
        assert!(one(VR::DA, "20240101-20241231", "20241231"));
        assert!(!one(VR::DA, "20240101-20241231", "20250101"));
        assert!(!one(VR::DA, "20240101-20241231", "20231231"));
        assert!(one(VR::DA, "20240101-", "20990101"));
        assert!(!one(VR::DA, "20240101-", "20231231"));
        assert!(one(VR::DA, "-20240101", "19000101"));
        assert!(!one(VR::DA, "-20240101", "20240102"));
        // A single value, and the legacy YYYY.MM.DD form on either side.
        assert!(one(VR::DA, "20240615", "20240615"));
        assert!(!one(VR::DA, "20240615", "20240616"));
        assert!(one(VR::DA, "2024.06.15", "20240615"));
        assert!(one(VR::DA, "20240601-20240630", "2024.06.15"));
        // Malformed values match nothing.
        assert!(!one(VR::DA, "2024-06-15", "20240615"));
        assert!(!one(VR::DA, "20240101-20241231", "June"));
    }

    #[test]
    fn time_ranges_honour_precision_and_fractions() {
        assert!(one(VR::TM, "1000-1200", "1100"));
        assert!(
            one(VR::TM, "1000-1200", "120059.999999"),
            "1200 runs to 12:00:59.999999"
        );
        assert!(!one(VR::TM, "1000-1200", "120100"));
        assert!(!one(VR::TM, "1000-1200", "095959.999999"));
        assert!(one(VR::TM, "101500.25-101500.5", "101500.3"));
        assert!(!one(VR::TM, "101500.25-101500.5", "101500.2"));
        assert!(one(VR::TM, "101500.25-101500.5", "101500.5"));
        // The upper end is as precise as it is written: .5 runs to .599999.
        assert!(one(VR::TM, "101500.25-101500.5", "101500.599999"));
        assert!(!one(VR::TM, "101500.25-101500.5", "101500.6"));
        assert!(!one(VR::TM, "101500.25-101500.500000", "101500.500001"));
        assert!(one(VR::TM, "-08", "080000"));
        assert!(one(VR::TM, "-08", "085959.123"));
        assert!(!one(VR::TM, "-08", "09"));
        assert!(one(VR::TM, "17-", "235959.999999"));
        // A single value is the range of its precision.
        assert!(one(VR::TM, "1012", "101230"));
        assert!(!one(VR::TM, "1012", "101300"));
        assert!(one(VR::TM, "101230.5", "101230.5"));
        assert!(one(VR::TM, "10:12:30", "101230"));
        assert!(!one(VR::TM, "1O12", "101230"));
    }

    #[test]
    fn datetime_ranges_fill_partial_values_and_apply_utc_offsets() {
        assert!(one(VR::DT, "2024", "20240615103000"));
        assert!(!one(VR::DT, "2024", "20250101"));
        assert!(one(VR::DT, "202401-202403", "20240331235959.999999"));
        assert!(!one(VR::DT, "202401-202403", "20240401"));
        assert!(one(VR::DT, "20240101120000-", "20240101120000"));
        assert!(!one(VR::DT, "20240101120000-", "20240101115959"));
        // A UTC offset is not the range separator.
        assert!(one(VR::DT, "20240101120000-0500", "20240101120000-0500"));
        assert!(one(VR::DT, "20240101-0500-20240102", "20240101230000"));
        assert!(one(
            VR::DT,
            "20240101000000+0100-20240101235959+0100",
            "20240101120000+0100"
        ));
        assert!(!one(
            VR::DT,
            "20240101000000+0100-20240101235959+0100",
            "20240102"
        ));
        assert!(one(VR::DT, "2024-2025", "20251231"));
    }

    #[test]
    fn sequence_matching_needs_one_candidate_item_matching_every_key() {
        let sps = tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE;
        let item = |modality: &str, date: &str| {
            object(vec![
                element(tags::MODALITY, VR::CS, modality),
                element(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, date),
            ])
        };
        let candidate = sequence(sps, vec![item("MR", "20240101"), item("CT", "20240615")]);
        let key = |modality: &str, dates: &str| sequence(sps, vec![item(modality, dates)]);
        assert!(key_matches(
            &key("CT", "20240601-20240630"),
            Some(&candidate)
        ));
        assert!(key_matches(&key("MR", "20240101"), Some(&candidate)));
        // Both keys must hold in the same item.
        assert!(!key_matches(
            &key("MR", "20240601-20240630"),
            Some(&candidate)
        ));
        assert!(!key_matches(&key("US", ""), Some(&candidate)));
        // No item, or an item of universal keys: universal, even with no candidate sequence.
        assert!(key_matches(&sequence(sps, vec![]), None));
        assert!(key_matches(&key("", ""), None));
        assert!(!key_matches(&key("CT", ""), None));
        // A candidate that is no sequence does not match a sequence key.
        assert!(!key_matches(
            &key("CT", ""),
            Some(&element(sps, VR::LO, "CT"))
        ));
    }

    #[test]
    fn nested_sequences_match_recursively() {
        let code = |value: &str| {
            object(vec![
                element(tags::CODE_VALUE, VR::SH, value),
                element(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
            ])
        };
        let step = |value: &str| {
            object(vec![sequence(
                tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE,
                vec![code(value)],
            )])
        };
        let sps = tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE;
        let candidate = sequence(sps, vec![step("113091")]);
        let key = |value: &str| {
            sequence(
                sps,
                vec![object(vec![sequence(
                    tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE,
                    vec![object(vec![element(tags::CODE_VALUE, VR::SH, value)])],
                )])],
            )
        };
        assert!(key_matches(&key("113091"), Some(&candidate)));
        assert!(key_matches(&key("1130*"), Some(&candidate)));
        assert!(!key_matches(&key("113092"), Some(&candidate)));
    }

    #[test]
    fn matches_applies_every_key_but_the_return_only_ones() {
        let candidate = object(vec![
            element(tags::PATIENT_NAME, VR::PN, "DOE^JOHN"),
            element(tags::PATIENT_ID, VR::LO, "PID1"),
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        ]);
        let keys = |name: &str, id: &str| {
            object(vec![
                element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
                element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
                element(tags::PATIENT_NAME, VR::PN, name),
                element(tags::PATIENT_ID, VR::LO, id),
                element(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
            ])
        };
        assert!(matches(&keys("DOE*", "PID1"), &candidate));
        assert!(matches(&keys("", ""), &candidate));
        assert!(!matches(&keys("DOE*", "PID2"), &candidate));
        assert!(!matches(&keys("ROE*", "PID1"), &candidate));
        assert!(matches(&InMemDicomObject::new_empty(), &candidate));
    }

    #[test]
    fn the_response_has_each_key_with_the_candidate_value_or_empty() {
        let candidate = object(vec![
            element(tags::PATIENT_NAME, VR::PN, "DOE^JOHN"),
            element(tags::PATIENT_ID, VR::LO, "PID1"),
            element(tags::PATIENT_SEX, VR::CS, "M"),
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        ]);
        let keys = object(vec![
            element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
            element(tags::PATIENT_NAME, VR::PN, "DOE*"),
            element(tags::PATIENT_ID, VR::LO, ""),
            element(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
        ]);
        let response = response_identifier(&keys, &candidate);
        let text = |tag| {
            response
                .get(tag)
                .map(|e: &InMemElement| e.to_str().expect("text").into_owned())
        };
        assert_eq!(text(tags::QUERY_RETRIEVE_LEVEL).as_deref(), Some("PATIENT"));
        assert_eq!(text(tags::PATIENT_NAME).as_deref(), Some("DOE^JOHN"));
        assert_eq!(text(tags::PATIENT_ID).as_deref(), Some("PID1"));
        // Asked for, missing in the candidate: zero-length, with the key's VR.
        let birth = response.get(tags::PATIENT_BIRTH_DATE).expect("birth date");
        assert_eq!(birth.vr(), VR::DA);
        assert!(matches!(
            birth.value(),
            Value::Primitive(PrimitiveValue::Empty)
        ));
        // Not asked for: not returned; the candidate's character set is.
        assert!(response.get(tags::PATIENT_SEX).is_none());
        assert_eq!(
            text(tags::SPECIFIC_CHARACTER_SET).as_deref(),
            Some("ISO_IR 100")
        );
        assert_eq!(response.iter().count(), 5);
    }

    #[test]
    fn the_response_has_no_character_set_when_the_candidate_has_none() {
        let candidate = object(vec![element(tags::PATIENT_ID, VR::LO, "PID1")]);
        let keys = object(vec![
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            element(tags::PATIENT_ID, VR::LO, ""),
        ]);
        let response = response_identifier(&keys, &candidate);
        assert!(response.get(tags::SPECIFIC_CHARACTER_SET).is_none());
        assert!(response.get(tags::QUERY_RETRIEVE_LEVEL).is_none());
        assert!(response.get(tags::PATIENT_ID).is_some());
    }

    #[test]
    fn the_response_reduces_matching_sequence_items_to_the_item_keys() {
        let sps = tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE;
        let step = |modality: &str, station: &str| {
            object(vec![
                element(tags::MODALITY, VR::CS, modality),
                element(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, station),
                element(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, "SPS1"),
            ])
        };
        let candidate = object(vec![
            element(tags::PATIENT_ID, VR::LO, "PID1"),
            sequence(sps, vec![step("CT", "CT1"), step("MR", "MR1")]),
        ]);
        let keys = object(vec![sequence(
            sps,
            vec![object(vec![
                element(tags::MODALITY, VR::CS, "MR"),
                element(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, ""),
                element(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, ""),
            ])],
        )]);
        let response = response_identifier(&keys, &candidate);
        let items = response
            .get(sps)
            .and_then(|e| e.value().items())
            .expect("a sequence");
        assert_eq!(items.len(), 1, "only the matching item");
        let item = &items[0];
        assert_eq!(item.iter().count(), 3);
        assert_eq!(
            item.get(tags::SCHEDULED_STATION_AE_TITLE)
                .expect("station")
                .to_str()
                .expect("text"),
            "MR1"
        );
        assert!(
            item.get(tags::SCHEDULED_PROCEDURE_STEP_START_DATE)
                .is_some()
        );
        assert!(item.get(tags::SCHEDULED_PROCEDURE_STEP_ID).is_none());
        assert!(response.get(tags::PATIENT_ID).is_none());

        // An empty query sequence returns the candidate's items whole; a missing candidate
        // sequence returns an empty one.
        let keys = object(vec![
            sequence(sps, vec![]),
            sequence(tags::REFERENCED_STUDY_SEQUENCE, vec![]),
        ]);
        let response = response_identifier(&keys, &candidate);
        let items = response
            .get(sps)
            .and_then(|e| e.value().items())
            .expect("sequence");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].iter().count(), 3);
        let referenced = response
            .get(tags::REFERENCED_STUDY_SEQUENCE)
            .and_then(|e| e.value().items())
            .expect("an empty sequence");
        assert!(referenced.is_empty());
    }

    #[test]
    fn the_response_round_trips_through_the_identifier_encoder() {
        let candidate = object(vec![
            element(tags::PATIENT_NAME, VR::PN, "MÜLLER^JÜRGEN"),
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        ]);
        let keys = object(vec![
            element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
            element(tags::PATIENT_NAME, VR::PN, "m?ller*"),
        ]);
        assert!(matches(&keys, &candidate));
        let response = response_identifier(&keys, &candidate);
        let ts = "1.2.840.10008.1.2.1";
        let bytes = dimsum_dataset::identifier::encode(&response, ts).expect("encoded");
        // Latin-1 on the wire, as the character set says.
        assert!(bytes.windows(2).any(|w| w == [b'M', 0xDC]));
        let back = dimsum_dataset::identifier::decode(
            &bytes,
            ts,
            &dimsum_dataset::scan::ScanLimits::default(),
        )
        .expect("decoded");
        assert_eq!(
            back.get(tags::PATIENT_NAME)
                .expect("name")
                .to_str()
                .expect("text"),
            "MÜLLER^JÜRGEN"
        );
    }
}
