//! The Native DICOM Model in XML (PS3.19 A.1): data sets as DICOMweb's `application/dicom+xml`
//! carries them.
//!
//! Both ways go through the DICOM JSON Model code of [`crate::json`], so that values are treated
//! alike in both models: a data set is written as the JSON model gives it (with IS and DS kept as
//! their text) and laid out as PS3.19 A.1.1 asks; a document read is turned into the JSON model
//! and read by [`crate::json::read_json`], with its checks and its errors naming tag paths.
//!
//! - **Writing** ([`to_xml`]): `NativeDicomModel`, one `DicomAttribute` per element (`tag`, `vr`,
//!   `keyword` for standard attributes, `privateCreator` for private ones whose creator the data
//!   set holds), `Value number=` (an empty value of a multi-valued attribute is an empty
//!   `Value`), `PersonName number=` with `Alphabetic`, `Ideographic` and `Phonetic` groups of
//!   `FamilyName`, `GivenName`, `MiddleName`, `NamePrefix` and `NameSuffix`, `Item number=`,
//!   `InlineBinary` (base64, little endian) and `BulkData uri=` where the [`XmlOptions`]' policy
//!   says. Text is escaped by quick-xml.
//! - **Reading** ([`from_xml`], [`read_xml`]): a hostile document gets a typed error and nothing
//!   else: a document type declaration (and with it any entity definition) is refused, only the
//!   predefined entities and character references are expanded, and [`XmlLimits`] bound the
//!   size, the nesting of items and the number of attributes and values. `BulkData` (by `uri`,
//!   or `uuid` as `urn:uuid:…`) becomes a [`BulkDataReference`](crate::json::BulkDataReference).

use std::collections::BTreeMap;

use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;
use quick_xml::Reader;
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use serde_json::{Map, Value};

use crate::json::{
    self, BulkData, JsonError, JsonLimits, ModelWriter, NumberForm, PN_GROUPS, PendingDataSet,
    WriteOptions,
};

/// The namespace of the Native DICOM Model (PS3.19 A.1.6).
pub const NATIVE_DICOM_NAMESPACE: &str = "http://dicom.nema.org/PS3.19/models/NativeDICOM";

/// The components of a person name group, in their order (PS3.19 A.1.1, PS3.5 §6.2.1).
const PN_COMPONENTS: [&str; 5] = [
    "FamilyName",
    "GivenName",
    "MiddleName",
    "NamePrefix",
    "NameSuffix",
];

/// How a data set is written in the Native DICOM Model (PS3.19 A.1).
#[derive(Debug, Default)]
pub struct XmlOptions<'a> {
    write: WriteOptions<'a>,
    indent: bool,
}

impl<'a> XmlOptions<'a> {
    /// Every value inline, one line per element.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks `policy` which elements go to a `BulkData uri=` instead of their value; see
    /// [`WriteOptions::with_bulk_data`].
    pub fn with_bulk_data(
        mut self,
        policy: impl Fn(
            &dicom_core::ops::AttributeSelector,
            &dicom_object::mem::InMemElement,
        ) -> BulkData
        + 'a,
    ) -> Self {
        self.write = self.write.with_bulk_data(policy);
        self
    }

    /// Indents nested elements by two spaces (for people; text values are never touched).
    pub fn indented(mut self) -> Self {
        self.indent = true;
        self
    }
}

/// Limits on what [`from_xml`] and [`read_xml`] accept from outside the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// The longest document, in bytes.
    pub max_bytes: usize,
    /// The deepest nesting of sequences (items within items).
    pub max_depth: usize,
    /// The most attributes and values in the document, those of every item included.
    pub max_elements: usize,
}

impl Default for XmlLimits {
    /// As [`JsonLimits::default`]: 64 MiB, 16 levels of sequences, a million attributes.
    fn default() -> Self {
        let json = JsonLimits::default();
        Self {
            max_bytes: json.max_bytes,
            max_depth: json.max_depth,
            max_elements: json.max_elements,
        }
    }
}

/// Why a document is not a Native DICOM Model data set (PS3.19 A.1). `path` names the attribute
/// as `0040A730[2].0040A160` (items numbered from 0).
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("the XML document is {size} bytes, more than the {max} accepted")]
    TooLarge { size: usize, max: usize },
    #[error("malformed XML at byte {position}: {source}")]
    Syntax {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    #[error("a document type declaration is not accepted (no DTD or entity definitions)")]
    DocumentType,
    #[error("the entity reference &{name}; is not one of XML's predefined entities")]
    UnknownEntity { name: String },
    #[error("the document's root is <{found}>, not <NativeDicomModel>")]
    NotNativeModel { found: String },
    #[error("{}: <{element}> is not expected within <{within}>", describe_path(.path))]
    Unexpected {
        path: String,
        element: String,
        within: &'static str,
    },
    #[error("{}: <{element}> has no {attribute:?} attribute", describe_path(.path))]
    MissingAttribute {
        path: String,
        element: &'static str,
        attribute: &'static str,
    },
    #[error("{}: {reason}", describe_path(.path))]
    BadAttribute { path: String, reason: String },
    #[error("{path}: sequences nest deeper than {max} levels")]
    TooDeep { path: String, max: usize },
    #[error("the document has more than {max} attributes and values")]
    TooManyElements { max: usize },
    #[error("the document ends before </{within}>")]
    Truncated { within: String },
    #[error(transparent)]
    Model(#[from] JsonError),
}

fn describe_path(path: &str) -> &str {
    if path.is_empty() {
        "the data set"
    } else {
        path
    }
}

/// `object` in the Native DICOM Model (PS3.19 A.1), as a UTF-8 XML document.
pub fn to_xml(object: &InMemDicomObject, options: &XmlOptions<'_>) -> String {
    let model = ModelWriter::new(&options.write, NumberForm::Text).object(object);
    let mut writer = if options.indent {
        quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2)
    } else {
        quick_xml::Writer::new(Vec::new())
    };
    // Writing to memory does not fail; an error could only be a bug of ours, and then the
    // document is left out rather than cut short.
    match write_document(&mut writer, &model) {
        Ok(()) => String::from_utf8(writer.into_inner()).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

type XmlWriter = quick_xml::Writer<Vec<u8>>;

fn write_document(writer: &mut XmlWriter, model: &Map<String, Value>) -> std::io::Result<()> {
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let root = BytesStart::new("NativeDicomModel")
        .with_attributes([("xmlns", NATIVE_DICOM_NAMESPACE), ("xml:space", "preserve")]);
    writer.write_event(Event::Start(root.borrow()))?;
    write_attributes(writer, model)?;
    writer.write_event(Event::End(root.to_end()))?;
    Ok(())
}

fn write_attributes(writer: &mut XmlWriter, model: &Map<String, Value>) -> std::io::Result<()> {
    for (key, attribute) in model {
        let Some(tag) = json::parse_tag(key) else {
            continue;
        };
        let Value::Object(attribute) = attribute else {
            continue;
        };
        let vr = attribute.get("vr").and_then(Value::as_str).unwrap_or("UN");
        let mut start = BytesStart::new("DicomAttribute");
        start.push_attribute(("tag", key.as_str()));
        start.push_attribute(("vr", vr));
        let creator = private_creator(model, tag);
        if tag.group().is_multiple_of(2) {
            if let Some(entry) = StandardDataDictionary.by_tag(tag) {
                start.push_attribute(("keyword", entry.alias()));
            }
        } else if let Some(creator) = &creator {
            start.push_attribute(("privateCreator", creator.as_str()));
        }
        writer.write_event(Event::Start(start.borrow()))?;
        if let Some(Value::String(binary)) = attribute.get("InlineBinary") {
            text_element(writer, BytesStart::new("InlineBinary"), binary)?;
        }
        if let Some(Value::String(uri)) = attribute.get("BulkDataURI") {
            let bulk = BytesStart::new("BulkData").with_attributes([("uri", uri.as_str())]);
            writer.write_event(Event::Empty(bulk))?;
        }
        if let Some(Value::Array(values)) = attribute.get("Value") {
            for (index, value) in values.iter().enumerate() {
                let number = (index + 1).to_string();
                match (vr, value) {
                    ("SQ", Value::Object(item)) => {
                        let start = numbered("Item", &number);
                        writer.write_event(Event::Start(start.borrow()))?;
                        write_attributes(writer, item)?;
                        writer.write_event(Event::End(start.to_end()))?;
                    }
                    ("PN", value) => write_person_name(writer, &number, value)?,
                    (_, Value::String(text)) => {
                        text_element(writer, numbered("Value", &number), text)?;
                    }
                    (_, Value::Number(n)) => {
                        text_element(writer, numbered("Value", &number), &n.to_string())?;
                    }
                    (_, _) => {
                        writer.write_event(Event::Empty(numbered("Value", &number)))?;
                    }
                }
            }
        }
        writer.write_event(Event::End(start.to_end()))?;
    }
    Ok(())
}

fn numbered<'a>(name: &'a str, number: &'a str) -> BytesStart<'a> {
    BytesStart::new(name).with_attributes([("number", number)])
}

fn text_element(writer: &mut XmlWriter, start: BytesStart<'_>, text: &str) -> std::io::Result<()> {
    writer.write_event(Event::Start(start.borrow()))?;
    // Only what must be escaped in content (<, >, &): quotes stay as they are.
    let escaped = quick_xml::escape::partial_escape(text);
    writer.write_event(Event::Text(BytesText::from_escaped(escaped)))?;
    writer.write_event(Event::End(start.to_end()))?;
    Ok(())
}

/// A PN value of the JSON model (component groups) as `PersonName` (PS3.19 A.1.1).
fn write_person_name(writer: &mut XmlWriter, number: &str, value: &Value) -> std::io::Result<()> {
    let Value::Object(groups) = value else {
        return writer.write_event(Event::Empty(numbered("PersonName", number)));
    };
    let start = numbered("PersonName", number);
    writer.write_event(Event::Start(start.borrow()))?;
    for group_name in PN_GROUPS {
        let Some(Value::String(group)) = groups.get(group_name) else {
            continue;
        };
        let group_start = BytesStart::new(group_name);
        writer.write_event(Event::Start(group_start.borrow()))?;
        for (component, text) in PN_COMPONENTS.iter().zip(group.split('^')) {
            if !text.is_empty() {
                text_element(writer, BytesStart::new(*component), text)?;
            }
        }
        writer.write_event(Event::End(group_start.to_end()))?;
    }
    writer.write_event(Event::End(start.to_end()))
}

/// The Private Creator of a private data element (PS3.5 §7.8.1), when the same data set holds it.
fn private_creator(model: &Map<String, Value>, tag: Tag) -> Option<String> {
    if tag.group().is_multiple_of(2) || tag.element() < 0x1000 {
        return None;
    }
    let key = json::tag_key(Tag(tag.group(), tag.element() >> 8));
    let creator = model.get(&key)?.get("Value")?.get(0)?.as_str()?;
    Some(creator.to_owned())
}

/// Reads a Native DICOM Model document (PS3.19 A.1) whose values are all inline; a `BulkData`
/// element is an error here ([`read_xml`] keeps it as a reference).
pub fn from_xml(text: &str, limits: &XmlLimits) -> Result<InMemDicomObject, XmlError> {
    Ok(read_xml(text, limits)?.into_complete()?)
}

/// Reads a Native DICOM Model document (PS3.19 A.1), keeping bulk data references; see the
/// [module documentation](self) for what is checked.
pub fn read_xml(text: &str, limits: &XmlLimits) -> Result<PendingDataSet, XmlError> {
    if text.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: text.len(),
            max: limits.max_bytes,
        });
    }
    let mut parser = Parser {
        reader: Reader::from_str(text),
        limits: *limits,
        counted: 0,
        path: Vec::new(),
    };
    let model = parser.document()?;
    let json_limits = JsonLimits {
        max_bytes: usize::MAX,
        max_depth: limits.max_depth,
        max_elements: limits.max_elements,
    };
    Ok(json::read_json(&Value::Object(model), &json_limits)?)
}

struct Parser<'t> {
    reader: Reader<&'t [u8]>,
    limits: XmlLimits,
    /// Attributes and values read so far.
    counted: usize,
    /// Where we are, as error paths name it.
    path: Vec<String>,
}

/// What a start tag was: `<x>` (with content to read) or `<x/>`.
enum Opened<'t> {
    Start(BytesStart<'t>),
    Empty(BytesStart<'t>),
}

impl<'t> Opened<'t> {
    fn start(&self) -> &BytesStart<'t> {
        match self {
            Opened::Start(start) | Opened::Empty(start) => start,
        }
    }
}

impl<'t> Parser<'t> {
    fn here(&self) -> String {
        self.path.join(".")
    }

    fn count(&mut self, n: usize) -> Result<(), XmlError> {
        self.counted = self.counted.saturating_add(n);
        if self.counted > self.limits.max_elements {
            return Err(XmlError::TooManyElements {
                max: self.limits.max_elements,
            });
        }
        Ok(())
    }

    fn event(&mut self) -> Result<Event<'t>, XmlError> {
        let event = self
            .reader
            .read_event()
            .map_err(|source| XmlError::Syntax {
                position: self.reader.error_position(),
                source,
            })?;
        if let Event::DocType(_) = event {
            return Err(XmlError::DocumentType);
        }
        Ok(event)
    }

    /// The next start tag within `within`, or `None` at its end; text between elements must be
    /// white space.
    fn next_child(&mut self, within: &'static str) -> Result<Option<Opened<'t>>, XmlError> {
        loop {
            match self.event()? {
                Event::Start(start) => return Ok(Some(Opened::Start(start))),
                Event::Empty(start) => return Ok(Some(Opened::Empty(start))),
                Event::End(_) => return Ok(None),
                Event::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
                Event::Eof => {
                    return Err(XmlError::Truncated {
                        within: within.to_owned(),
                    });
                }
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::Unexpected {
                        path: self.here(),
                        element: "text".to_owned(),
                        within,
                    });
                }
                Event::DocType(_) => return Err(XmlError::DocumentType),
            }
        }
    }

    fn document(&mut self) -> Result<Map<String, Value>, XmlError> {
        let root = loop {
            match self.event()? {
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                Event::Start(start) => break Opened::Start(start),
                Event::Empty(start) => break Opened::Empty(start),
                Event::Eof => {
                    return Err(XmlError::Truncated {
                        within: "NativeDicomModel".to_owned(),
                    });
                }
                _ => {
                    return Err(XmlError::NotNativeModel {
                        found: "text".to_owned(),
                    });
                }
            }
        };
        let name = local_name(root.start());
        if name != "NativeDicomModel" {
            return Err(XmlError::NotNativeModel { found: name });
        }
        let model = match root {
            Opened::Start(_) => self.data_set("NativeDicomModel", 0)?,
            Opened::Empty(_) => Map::new(),
        };
        loop {
            match self.event()? {
                Event::Eof => return Ok(model),
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                _ => {
                    return Err(XmlError::Unexpected {
                        path: String::new(),
                        element: "content".to_owned(),
                        within: "the document after </NativeDicomModel>",
                    });
                }
            }
        }
    }

    /// The `DicomAttribute` elements of the root or of an item, as a JSON model object.
    fn data_set(
        &mut self,
        within: &'static str,
        depth: usize,
    ) -> Result<Map<String, Value>, XmlError> {
        let mut model = Map::new();
        // Private attributes named without their block (gggg00ee), to place once the creators
        // of this data set are known.
        let mut unplaced = Vec::new();
        while let Some(child) = self.next_child(within)? {
            let name = local_name(child.start());
            if name != "DicomAttribute" {
                return Err(XmlError::Unexpected {
                    path: self.here(),
                    element: name,
                    within,
                });
            }
            self.count(1)?;
            let (tag, creator, attribute) = self.attribute(child, depth)?;
            match creator {
                Some(creator) if tag.group() % 2 == 1 && tag.element() < 0x0100 => {
                    unplaced.push((tag, creator, attribute));
                }
                _ => self.insert(&mut model, tag, attribute)?,
            }
        }
        for (tag, creator, attribute) in unplaced {
            let block = (0x10..=0xFF_u16).find(|block| {
                model
                    .get(&json::tag_key(Tag(tag.group(), *block)))
                    .and_then(|c| c.get("Value")?.get(0)?.as_str())
                    .is_some_and(|value| value.trim_end() == creator.trim_end())
            });
            let Some(block) = block else {
                return Err(XmlError::BadAttribute {
                    path: self.here(),
                    reason: format!(
                        "{} names the private creator {creator:?}, which no (gggg,00xx) element of the data set reserves",
                        json::tag_key(tag)
                    ),
                });
            };
            self.insert(
                &mut model,
                Tag(tag.group(), block << 8 | tag.element()),
                attribute,
            )?;
        }
        Ok(model)
    }

    fn insert(
        &self,
        model: &mut Map<String, Value>,
        tag: Tag,
        attribute: Value,
    ) -> Result<(), XmlError> {
        let key = json::tag_key(tag);
        if model.insert(key.clone(), attribute).is_some() {
            return Err(XmlError::BadAttribute {
                path: self.here(),
                reason: format!("the attribute {key} is given twice"),
            });
        }
        Ok(())
    }

    /// A `DicomAttribute`: its tag as written, its private creator if it names one, and the
    /// attribute in the JSON model.
    fn attribute(
        &mut self,
        opened: Opened<'t>,
        depth: usize,
    ) -> Result<(Tag, Option<String>, Value), XmlError> {
        let start = opened.start();
        let tag =
            self.attribute_value(start, "tag")?
                .ok_or_else(|| XmlError::MissingAttribute {
                    path: self.here(),
                    element: "DicomAttribute",
                    attribute: "tag",
                })?;
        let Some(parsed) = json::parse_tag(&tag) else {
            return Err(XmlError::BadAttribute {
                path: self.here(),
                reason: format!("{tag:?} is not a tag of eight hex digits"),
            });
        };
        let key = json::tag_key(parsed);
        let vr = self
            .attribute_value(start, "vr")?
            .ok_or_else(|| XmlError::MissingAttribute {
                path: self.here(),
                element: "DicomAttribute",
                attribute: "vr",
            })?;
        let creator = self.attribute_value(start, "privateCreator")?;
        self.path.push(key.clone());
        let mut attribute = Map::new();
        attribute.insert("vr".to_owned(), Value::String(vr.clone()));
        if let Opened::Start(_) = opened {
            let mut values: BTreeMap<usize, Value> = BTreeMap::new();
            while let Some(child) = self.next_child("DicomAttribute")? {
                let name = local_name(child.start());
                match name.as_str() {
                    "Value" | "PersonName" | "Item" => {
                        let number = self.number(child.start(), &name)?;
                        self.count(1)?;
                        let value = match (name.as_str(), child) {
                            ("Value", Opened::Start(_)) => Value::String(self.text("Value")?),
                            ("Value", Opened::Empty(_)) => Value::String(String::new()),
                            ("PersonName", Opened::Start(_)) => self.person_name()?,
                            ("PersonName", Opened::Empty(_)) => Value::Null,
                            (_, Opened::Start(_)) => {
                                if depth >= self.limits.max_depth {
                                    return Err(XmlError::TooDeep {
                                        path: self.here(),
                                        max: self.limits.max_depth,
                                    });
                                }
                                let last = self.path.len() - 1;
                                self.path[last] = format!("{key}[{}]", number - 1);
                                let item = self.data_set("Item", depth + 1)?;
                                self.path[last] = key.clone();
                                Value::Object(item)
                            }
                            (_, Opened::Empty(_)) => Value::Object(Map::new()),
                        };
                        if values.insert(number, value).is_some() {
                            return Err(XmlError::BadAttribute {
                                path: self.here(),
                                reason: format!("<{name} number=\"{number}\"> is given twice"),
                            });
                        }
                    }
                    "InlineBinary" => {
                        let text = match child {
                            Opened::Start(_) => self.text("InlineBinary")?,
                            Opened::Empty(_) => String::new(),
                        };
                        let compact: String =
                            text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                        self.set_once(&mut attribute, "InlineBinary", Value::String(compact))?;
                    }
                    "BulkData" => {
                        let uri = match self.attribute_value(child.start(), "uri")? {
                            Some(uri) => uri,
                            None => match self.attribute_value(child.start(), "uuid")? {
                                Some(uuid) => format!("urn:uuid:{uuid}"),
                                None => {
                                    return Err(XmlError::MissingAttribute {
                                        path: self.here(),
                                        element: "BulkData",
                                        attribute: "uri",
                                    });
                                }
                            },
                        };
                        if let Opened::Start(_) = child {
                            self.skip_empty("BulkData")?;
                        }
                        self.set_once(&mut attribute, "BulkDataURI", Value::String(uri))?;
                    }
                    _ => {
                        return Err(XmlError::Unexpected {
                            path: self.here(),
                            element: name,
                            within: "DicomAttribute",
                        });
                    }
                }
            }
            if let Some((&last, _)) = values.last_key_value() {
                // Numbers left out are empty values.
                self.count(last - values.len())?;
                let array = (1..=last)
                    .map(|n| values.remove(&n).unwrap_or(Value::Null))
                    .collect();
                self.set_once(&mut attribute, "Value", Value::Array(array))?;
            }
        }
        self.path.pop();
        Ok((parsed, creator, Value::Object(attribute)))
    }

    fn set_once(
        &self,
        attribute: &mut Map<String, Value>,
        member: &str,
        value: Value,
    ) -> Result<(), XmlError> {
        if attribute.insert(member.to_owned(), value).is_some() {
            return Err(XmlError::BadAttribute {
                path: self.here(),
                reason: format!("<{member}> is given twice"),
            });
        }
        Ok(())
    }

    /// The `number` attribute (1-based) of a `Value`, `PersonName` or `Item`.
    fn number(&self, start: &BytesStart<'_>, name: &str) -> Result<usize, XmlError> {
        let Some(text) = self.attribute_value(start, "number")? else {
            return Err(XmlError::BadAttribute {
                path: self.here(),
                reason: format!("<{name}> has no \"number\" attribute"),
            });
        };
        match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 && n <= self.limits.max_elements => Ok(n),
            _ => Err(XmlError::BadAttribute {
                path: self.here(),
                reason: format!(
                    "<{name} number={text:?}>: a number from 1 to {}",
                    self.limits.max_elements
                ),
            }),
        }
    }

    /// The value of an attribute of a start tag, by its local name; the predefined entities and
    /// character references expanded.
    fn attribute_value(
        &self,
        start: &BytesStart<'_>,
        name: &str,
    ) -> Result<Option<String>, XmlError> {
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| XmlError::Syntax {
                position: self.reader.buffer_position(),
                source: e.into(),
            })?;
            if attribute.key.local_name().as_ref() == name.as_bytes() {
                let value = attribute
                    .unescape_value()
                    .map_err(|source| XmlError::Syntax {
                        position: self.reader.buffer_position(),
                        source,
                    })?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    }

    /// The text content of an element whose start tag was just read, up to its end tag.
    fn text(&mut self, within: &'static str) -> Result<String, XmlError> {
        let mut text = String::new();
        loop {
            match self.event()? {
                Event::Text(part) => text.push_str(&self.decoded(part.xml_content())?),
                Event::CData(part) => text.push_str(&self.decoded(part.xml_content())?),
                Event::GeneralRef(reference) => {
                    let character =
                        reference
                            .resolve_char_ref()
                            .map_err(|source| XmlError::Syntax {
                                position: self.reader.buffer_position(),
                                source,
                            })?;
                    match character {
                        Some(c) => text.push(c),
                        None => {
                            let name = self.decoded(reference.decode())?;
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(resolved) => text.push_str(resolved),
                                None => return Err(XmlError::UnknownEntity { name }),
                            }
                        }
                    }
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::End(_) => return Ok(text),
                Event::Eof => {
                    return Err(XmlError::Truncated {
                        within: within.to_owned(),
                    });
                }
                Event::Start(start) | Event::Empty(start) => {
                    return Err(XmlError::Unexpected {
                        path: self.here(),
                        element: local_name(&start),
                        within,
                    });
                }
                Event::Decl(_) | Event::DocType(_) => return Err(XmlError::DocumentType),
            }
        }
    }

    fn decoded(
        &self,
        text: Result<std::borrow::Cow<'_, str>, quick_xml::encoding::EncodingError>,
    ) -> Result<String, XmlError> {
        text.map(|t| t.into_owned()).map_err(|e| XmlError::Syntax {
            position: self.reader.buffer_position(),
            source: e.into(),
        })
    }

    /// Up to the end of an element that has no content of ours (white space, comments).
    fn skip_empty(&mut self, within: &'static str) -> Result<(), XmlError> {
        match self.next_child(within)? {
            None => Ok(()),
            Some(child) => Err(XmlError::Unexpected {
                path: self.here(),
                element: local_name(child.start()),
                within,
            }),
        }
    }

    /// A `PersonName` (PS3.19 A.1.1) as the JSON model's object of component groups.
    fn person_name(&mut self) -> Result<Value, XmlError> {
        let mut groups = Map::new();
        while let Some(group) = self.next_child("PersonName")? {
            let name = local_name(group.start());
            let Some(group_name) = PN_GROUPS.iter().find(|g| **g == name) else {
                return Err(XmlError::Unexpected {
                    path: self.here(),
                    element: name,
                    within: "PersonName",
                });
            };
            let mut components: [String; 5] = Default::default();
            if let Opened::Start(_) = group {
                while let Some(component) = self.next_child("a person name group")? {
                    let name = local_name(component.start());
                    let Some(index) = PN_COMPONENTS.iter().position(|c| *c == name) else {
                        return Err(XmlError::Unexpected {
                            path: self.here(),
                            element: name,
                            within: "a person name group",
                        });
                    };
                    if let Opened::Start(_) = component {
                        components[index] = self.text("a person name component")?;
                    }
                }
            }
            let used = components
                .iter()
                .rposition(|c| !c.is_empty())
                .map_or(0, |i| i + 1);
            let text = components[..used].join("^");
            if groups
                .insert((*group_name).to_owned(), Value::String(text))
                .is_some()
            {
                return Err(XmlError::BadAttribute {
                    path: self.here(),
                    reason: format!("<{group_name}> is given twice in one PersonName"),
                });
            }
        }
        Ok(Value::Object(groups))
    }
}

fn local_name(start: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(start.local_name().as_ref()).into_owned()
}
