//! Media types in `Content-Type` and `Accept` headers (RFC 9110 §8.3.1, §12.5.1), as DICOMweb
//! peers write them (PS3.18 8.7.3 DICOM media types, 8.7.5 Acceptable Media Types).
//!
//! The parser is strict about structure (tokens, quoted strings, one value per parameter name)
//! and lenient where real clients are known to differ from the grammar: an unquoted parameter
//! value may contain `/` (OHIF sends `type=application/octet-stream` unquoted), white space
//! may surround `=`, and an empty parameter (`a/b;`) is skipped. Every input is bounded by
//! [`HeaderLimits`].

use std::fmt;

/// Bounds on a `Content-Type` or `Accept` header value (RFC 9110 §8.3, §12.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// The longest header value, in bytes.
    pub max_length: usize,
    /// The most parameters on one media type (q included).
    pub max_parameters: usize,
    /// The most media ranges in one `Accept` value.
    pub max_ranges: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self {
            max_length: 4096,
            max_parameters: 16,
            max_ranges: 32,
        }
    }
}

/// Why a media type (RFC 9110 §8.3.1), an `Accept` value (§12.5.1) or a boundary (RFC 2046
/// §5.1.1) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentTypeError {
    /// Longer than [`HeaderLimits::max_length`].
    #[error("header value of {length} bytes is longer than the limit of {limit}")]
    TooLong { length: usize, limit: usize },
    /// More parameters than [`HeaderLimits::max_parameters`].
    #[error("more than {limit} parameters on one media type")]
    TooManyParameters { limit: usize },
    /// More media ranges than [`HeaderLimits::max_ranges`].
    #[error("more than {limit} media ranges in one Accept value")]
    TooManyRanges { limit: usize },
    /// Nothing but white space.
    #[error("empty media type")]
    Empty,
    /// The type or subtype is missing or not a token.
    #[error("malformed type/subtype at byte {at}")]
    MalformedType { at: usize },
    /// A parameter is not `name=value`.
    #[error("malformed parameter at byte {at}")]
    MalformedParameter { at: usize },
    /// A quoted string has no closing quote.
    #[error("unterminated quoted string at byte {at}")]
    UnterminatedQuote { at: usize },
    /// A byte that no header value may hold (a control character or non-ASCII).
    #[error("invalid byte {byte:#04x} at byte {at}")]
    InvalidByte { byte: u8, at: usize },
    /// Unexpected text after a media type.
    #[error("unexpected {found:?} at byte {at}")]
    Unexpected { found: char, at: usize },
    /// The same parameter twice (an ambiguous boundary is a classic smuggling vector).
    #[error("parameter {name:?} given twice")]
    DuplicateParameter { name: String },
    /// A `q` value that is not `0`…`1` with at most three decimals (RFC 9110 §12.4.2).
    #[error("invalid quality value {value:?}")]
    InvalidQuality { value: String },
    /// A multipart media type without its boundary parameter.
    #[error("{media_type} has no boundary parameter")]
    MissingBoundary { media_type: String },
    /// A boundary that RFC 2046 §5.1.1 does not allow.
    #[error(transparent)]
    Boundary(#[from] BoundaryError),
}

/// Why a multipart boundary was refused (RFC 2046 §5.1.1: 1 to 70 `bchars`, not ending with a
/// space).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundaryError {
    /// The empty string.
    #[error("empty boundary")]
    Empty,
    /// More than 70 characters.
    #[error("boundary of {length} characters is longer than 70")]
    TooLong { length: usize },
    /// A character outside `bchars`.
    #[error("boundary holds {byte:#04x}, which RFC 2046 does not allow")]
    InvalidCharacter { byte: u8 },
    /// A space as last character.
    #[error("boundary ends with a space")]
    TrailingSpace,
}

/// A multipart boundary (RFC 2046 §5.1.1, PS3.18 8.6.1.2): 1 to 70 characters from `bchars`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Boundary(String);

/// The longest boundary RFC 2046 §5.1.1 allows.
pub const MAX_BOUNDARY_LENGTH: usize = 70;

impl Boundary {
    /// Checks `value` against RFC 2046 §5.1.1.
    pub fn new(value: &str) -> Result<Self, BoundaryError> {
        if value.is_empty() {
            return Err(BoundaryError::Empty);
        }
        if value.len() > MAX_BOUNDARY_LENGTH {
            return Err(BoundaryError::TooLong {
                length: value.len(),
            });
        }
        if let Some(&byte) = value.as_bytes().iter().find(|&&b| !is_bchar(b)) {
            return Err(BoundaryError::InvalidCharacter { byte });
        }
        if value.ends_with(' ') {
            return Err(BoundaryError::TrailingSpace);
        }
        Ok(Self(value.to_owned()))
    }

    /// A fresh boundary of 32 hexadecimal digits (128 random bits), as every DICOMweb
    /// implementation does: a part's content is not searched for it, the chance of a collision
    /// with content is 2^-128 per position. The bits come from the standard library's
    /// randomly keyed SipHash (`RandomState`, seeded from the operating system), so a peer
    /// cannot predict the boundary of a response and plant it in stored data.
    pub fn random() -> Self {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let high = RandomState::new().hash_one(count);
        let low = RandomState::new().hash_one(count ^ high);
        Self(format!("{high:016x}{low:016x}"))
    }

    /// The boundary's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 2046 §5.1.1 `bchars`.
fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b)
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A media type with its parameters, as in a `Content-Type` header (RFC 9110 §8.3.1; PS3.18
/// 8.7.3 for the DICOMweb media types, 8.6.1.2 for `multipart/related`). Type, subtype and
/// parameter names are kept in lower case; values as given (a boundary is case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    main: String,
    sub: String,
    parameters: Vec<(String, String)>,
}

impl ContentType {
    /// `type/subtype` without parameters; both must be tokens.
    pub fn new(main: &str, sub: &str) -> Result<Self, ContentTypeError> {
        Self::parse(&format!("{main}/{sub}"))
    }

    /// `multipart/related; type="<related_type>"; boundary=<boundary>` (PS3.18 8.6.1.2).
    pub fn multipart_related(related_type: &ContentType, boundary: &Boundary) -> Self {
        Self {
            main: "multipart".to_owned(),
            sub: "related".to_owned(),
            parameters: vec![
                ("type".to_owned(), related_type.essence()),
                ("boundary".to_owned(), boundary.as_str().to_owned()),
            ],
        }
    }

    /// `text/plain`, the media type of a part without Content-Type when the multipart has no
    /// `type` parameter (RFC 2045 §5.2).
    pub fn text_plain() -> Self {
        Self {
            main: "text".to_owned(),
            sub: "plain".to_owned(),
            parameters: Vec::new(),
        }
    }

    /// Parses a `Content-Type` value with the default [`HeaderLimits`].
    pub fn parse(value: &str) -> Result<Self, ContentTypeError> {
        Self::parse_with(value, &HeaderLimits::default())
    }

    /// Parses a `Content-Type` value: exactly one media type.
    pub fn parse_with(value: &str, limits: &HeaderLimits) -> Result<Self, ContentTypeError> {
        let mut cursor = Cursor::new(value, limits)?;
        cursor.skip_ows();
        if cursor.at_end() {
            return Err(ContentTypeError::Empty);
        }
        let media_type = cursor.media_type(limits)?;
        cursor.skip_ows();
        match cursor.peek() {
            None => Ok(media_type),
            Some(b) => Err(ContentTypeError::Unexpected {
                found: char::from(b),
                at: cursor.pos,
            }),
        }
    }

    /// The type, in lower case (`multipart`).
    pub fn main_type(&self) -> &str {
        &self.main
    }

    /// The subtype, in lower case (`related`).
    pub fn sub_type(&self) -> &str {
        &self.sub
    }

    /// `type/subtype`, in lower case, without parameters.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.main, self.sub)
    }

    /// Whether this is `main/sub`, compared case-insensitively.
    pub fn is(&self, main: &str, sub: &str) -> bool {
        self.main.eq_ignore_ascii_case(main) && self.sub.eq_ignore_ascii_case(sub)
    }

    /// The parameters in order, names in lower case.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    /// The value of the parameter `name` (compared case-insensitively).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// This media type with the parameter `name` set to `value` (replacing a previous value).
    /// The name must be a token; the value is quoted on output when it has to be.
    pub fn with_parameter(mut self, name: &str, value: &str) -> Result<Self, ContentTypeError> {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(ContentTypeError::MalformedParameter { at: 0 });
        }
        if let Some((at, byte)) = value
            .bytes()
            .enumerate()
            .find(|&(_, b)| !(b == b'\t' || (0x20..0x7f).contains(&b)))
        {
            return Err(ContentTypeError::InvalidByte { byte, at });
        }
        let name = name.to_ascii_lowercase();
        self.parameters.retain(|(n, _)| *n != name);
        self.parameters.push((name, value.to_owned()));
        Ok(self)
    }

    /// The `type` parameter of a `multipart/related` media type (RFC 2387 §3.1), parsed: the
    /// media type of the parts that have no Content-Type of their own.
    pub fn related_type(&self) -> Result<Option<ContentType>, ContentTypeError> {
        self.parameter("type").map(ContentType::parse).transpose()
    }

    /// The checked `boundary` parameter of a multipart media type (RFC 2046 §5.1.1).
    pub fn boundary(&self) -> Result<Boundary, ContentTypeError> {
        let value =
            self.parameter("boundary")
                .ok_or_else(|| ContentTypeError::MissingBoundary {
                    media_type: self.essence(),
                })?;
        Ok(Boundary::new(value)?)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.main, self.sub)?;
        for (name, value) in &self.parameters {
            if !value.is_empty() && value.bytes().all(is_tchar) {
                write!(f, "; {name}={value}")?;
            } else {
                write!(f, "; {name}=\"")?;
                for c in value.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

/// One media range of an `Accept` header with its weight (RFC 9110 §12.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    /// The range (`*/*`, `image/*` or a media type) and its parameters, `q` excluded.
    pub media_type: ContentType,
    /// The weight in thousandths: `q=0.5` is 500; 1000 when not given.
    pub quality: u16,
}

impl MediaRange {
    /// Whether `candidate` falls in this range: type and subtype equal or `*`, and every
    /// parameter of the range present in the candidate with the same value (names and the
    /// `type` value compared case-insensitively).
    pub fn matches(&self, candidate: &ContentType) -> bool {
        let range = &self.media_type;
        let main = range.main == "*" || range.main == candidate.main;
        let sub = range.sub == "*" || range.sub == candidate.sub;
        main && sub
            && range.parameters.iter().all(|(name, value)| {
                candidate.parameter(name).is_some_and(|v| {
                    if name == "type" {
                        v.eq_ignore_ascii_case(value)
                    } else {
                        v == value
                    }
                })
            })
    }
}

/// The media ranges of an `Accept` header (RFC 9110 §12.5.1; PS3.18 8.7.5 Acceptable Media
/// Types, 8.7.3.7 for the `transfer-syntax` parameter DICOMweb adds). Parameters written after `q` (RFC 9110's
/// accept extensions) are kept as parameters of the range: DICOMweb clients put
/// `transfer-syntax` on either side of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    ranges: Vec<MediaRange>,
}

/// The ranges written back as an `Accept` value (`q` given when it is not 1).
impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, range) in self.ranges.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", range.media_type)?;
            if range.quality != 1000 {
                let quality = format!("{:.3}", f64::from(range.quality) / 1000.0);
                write!(
                    f,
                    ";q={}",
                    quality.trim_end_matches('0').trim_end_matches('.')
                )?;
            }
        }
        Ok(())
    }
}

impl Accept {
    /// Parses an `Accept` value with the default [`HeaderLimits`].
    pub fn parse(value: &str) -> Result<Self, ContentTypeError> {
        Self::parse_with(value, &HeaderLimits::default())
    }

    /// Parses an `Accept` value: media ranges separated by commas (empty elements skipped).
    /// An empty value has no ranges (the caller decides what that means).
    pub fn parse_with(value: &str, limits: &HeaderLimits) -> Result<Self, ContentTypeError> {
        let mut cursor = Cursor::new(value, limits)?;
        let mut ranges = Vec::new();
        loop {
            cursor.skip_ows();
            match cursor.peek() {
                None => break,
                Some(b',') => {
                    cursor.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            if ranges.len() == limits.max_ranges {
                return Err(ContentTypeError::TooManyRanges {
                    limit: limits.max_ranges,
                });
            }
            let mut media_type = cursor.media_type(limits)?;
            let mut quality = 1000;
            if let Some(index) = media_type.parameters.iter().position(|(n, _)| n == "q") {
                let (_, value) = media_type.parameters.remove(index);
                quality = parse_quality(&value)?;
            }
            ranges.push(MediaRange {
                media_type,
                quality,
            });
            cursor.skip_ows();
            match cursor.peek() {
                None => break,
                Some(b',') => cursor.pos += 1,
                Some(b) => {
                    return Err(ContentTypeError::Unexpected {
                        found: char::from(b),
                        at: cursor.pos,
                    });
                }
            }
        }
        Ok(Self { ranges })
    }

    /// The ranges in the order given.
    pub fn ranges(&self) -> &[MediaRange] {
        &self.ranges
    }

    /// The ranges with a non-zero weight, most preferred first (equal weights keep their order).
    pub fn preferred(&self) -> Vec<&MediaRange> {
        let mut ranges: Vec<&MediaRange> = self.ranges.iter().filter(|r| r.quality > 0).collect();
        ranges.sort_by_key(|range| std::cmp::Reverse(range.quality));
        ranges
    }
}

/// RFC 9110 §12.4.2 `qvalue`, in thousandths.
fn parse_quality(value: &str) -> Result<u16, ContentTypeError> {
    let invalid = || ContentTypeError::InvalidQuality {
        value: value.to_owned(),
    };
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let mut thousandths: u16 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Ok(thousandths),
        "1" if thousandths == 0 => Ok(1000),
        _ => Err(invalid()),
    }
}

/// A position in a header value being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(value: &'a str, limits: &HeaderLimits) -> Result<Self, ContentTypeError> {
        if value.len() > limits.max_length {
            return Err(ContentTypeError::TooLong {
                length: value.len(),
                limit: limits.max_length,
            });
        }
        if let Some((at, &byte)) = value
            .as_bytes()
            .iter()
            .enumerate()
            .find(|&(_, &b)| !(b == b'\t' || (0x20..0x7f).contains(&b)))
        {
            return Err(ContentTypeError::InvalidByte { byte, at });
        }
        Ok(Self {
            bytes: value.as_bytes(),
            pos: 0,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The longest run of bytes satisfying `accept`, lower-cased when `lower`.
    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        // Only ASCII was let through `new`, so any slice is a str.
        std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default()
    }

    /// `type "/" subtype *( OWS ";" OWS [ parameter ] )`, stopping before `,` or the end.
    fn media_type(&mut self, limits: &HeaderLimits) -> Result<ContentType, ContentTypeError> {
        let start = self.pos;
        let main = self.take_while(is_tchar);
        if main.is_empty() || self.peek() != Some(b'/') {
            return Err(ContentTypeError::MalformedType { at: start });
        }
        self.pos += 1;
        let sub = self.take_while(is_tchar);
        if sub.is_empty() {
            return Err(ContentTypeError::MalformedType { at: start });
        }
        let mut media_type = ContentType {
            main: main.to_ascii_lowercase(),
            sub: sub.to_ascii_lowercase(),
            parameters: Vec::new(),
        };
        loop {
            self.skip_ows();
            if self.peek() != Some(b';') {
                return Ok(media_type);
            }
            self.pos += 1;
            self.skip_ows();
            if matches!(self.peek(), None | Some(b';' | b',')) {
                continue;
            }
            let at = self.pos;
            let name = self.take_while(is_tchar).to_ascii_lowercase();
            self.skip_ows();
            if name.is_empty() || self.peek() != Some(b'=') {
                return Err(ContentTypeError::MalformedParameter { at });
            }
            self.pos += 1;
            self.skip_ows();
            let value = if self.peek() == Some(b'"') {
                self.quoted_string()?
            } else {
                let value = self.take_while(|b| is_tchar(b) || b == b'/');
                if value.is_empty() {
                    return Err(ContentTypeError::MalformedParameter { at });
                }
                value.to_owned()
            };
            if media_type.parameters.iter().any(|(n, _)| *n == name) {
                return Err(ContentTypeError::DuplicateParameter { name });
            }
            if media_type.parameters.len() == limits.max_parameters {
                return Err(ContentTypeError::TooManyParameters {
                    limit: limits.max_parameters,
                });
            }
            media_type.parameters.push((name, value));
        }
    }

    /// RFC 9110 §5.6.4 `quoted-string`, the cursor on its opening quote.
    fn quoted_string(&mut self) -> Result<String, ContentTypeError> {
        let at = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(ContentTypeError::UnterminatedQuote { at }),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(ContentTypeError::UnterminatedQuote { at }),
                        Some(b) => value.push(char::from(b)),
                    }
                    self.pos += 1;
                }
                Some(b) => {
                    value.push(char::from(b));
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stow_content_type_quoted_and_unquoted() {
        for value in [
            "multipart/related; type=\"application/dicom\"; boundary=\"abc def\"",
            "Multipart/Related;Type=application/dicom;BOUNDARY=\"abc def\"",
            "multipart/related ; type = \"application/dicom\" ; boundary = \"abc def\" ",
        ] {
            let ct = ContentType::parse(value).unwrap();
            assert!(ct.is("multipart", "related"), "{value}");
            assert_eq!(ct.parameter("type"), Some("application/dicom"), "{value}");
            assert_eq!(ct.boundary().unwrap().as_str(), "abc def", "{value}");
            let related = ct.related_type().unwrap().unwrap();
            assert!(related.is("application", "dicom"));
        }
        let ct = ContentType::parse("multipart/related; boundary=XyZ-123").unwrap();
        assert_eq!(ct.boundary().unwrap().as_str(), "XyZ-123");
        assert_eq!(ct.related_type().unwrap(), None);
    }

    #[test]
    fn quoted_pairs_are_unescaped_and_written_back() {
        let ct = ContentType::parse(r#"a/b; x="q\"uo\\te""#).unwrap();
        assert_eq!(ct.parameter("x"), Some(r#"q"uo\te"#));
        assert_eq!(ct.to_string(), r#"a/b; x="q\"uo\\te""#);
        assert_eq!(ContentType::parse(&ct.to_string()).unwrap(), ct);
    }

    #[test]
    fn multipart_related_is_written_with_a_quoted_type() {
        let boundary = Boundary::new("b1").unwrap();
        let dicom = ContentType::new("application", "dicom").unwrap();
        let ct = ContentType::multipart_related(&dicom, &boundary);
        assert_eq!(
            ct.to_string(),
            "multipart/related; type=\"application/dicom\"; boundary=b1"
        );
    }

    #[test]
    fn malformed_content_types_are_refused() {
        use ContentTypeError as E;
        let cases: [(&str, ContentTypeError); 10] = [
            ("", E::Empty),
            ("  ", E::Empty),
            ("multipart", E::MalformedType { at: 0 }),
            ("multipart/", E::MalformedType { at: 0 }),
            ("/related", E::MalformedType { at: 0 }),
            ("a/b; x", E::MalformedParameter { at: 5 }),
            ("a/b; =1", E::MalformedParameter { at: 5 }),
            ("a/b; x=\"1", E::UnterminatedQuote { at: 7 }),
            ("a/b c", E::Unexpected { found: 'c', at: 4 }),
            (
                "a/b; boundary=1; Boundary=2",
                E::DuplicateParameter {
                    name: "boundary".into(),
                },
            ),
        ];
        for (value, error) in cases {
            assert_eq!(ContentType::parse(value), Err(error), "{value:?}");
        }
        assert_eq!(
            ContentType::parse("a/b; x=\"\u{e9}\""),
            Err(E::InvalidByte { byte: 0xc3, at: 8 })
        );
        assert_eq!(
            ContentType::parse("a/b\r\nX: y"),
            Err(E::InvalidByte { byte: b'\r', at: 3 })
        );
        // Two media types where one is expected.
        assert_eq!(
            ContentType::parse("a/b, c/d"),
            Err(E::Unexpected { found: ',', at: 3 })
        );
    }

    #[test]
    fn an_empty_parameter_is_skipped() {
        let ct = ContentType::parse("application/dicom;;").unwrap();
        assert!(ct.parameters().is_empty());
    }

    #[test]
    fn limits_are_enforced() {
        let limits = HeaderLimits {
            max_length: 40,
            max_parameters: 2,
            max_ranges: 2,
        };
        assert_eq!(
            ContentType::parse_with(&format!("a/b; x=\"{}\"", "y".repeat(40)), &limits),
            Err(ContentTypeError::TooLong {
                length: 49,
                limit: 40
            })
        );
        assert_eq!(
            ContentType::parse_with("a/b; x=1; y=2; z=3", &limits),
            Err(ContentTypeError::TooManyParameters { limit: 2 })
        );
        assert!(ContentType::parse_with("a/b; x=1; y=2", &limits).is_ok());
        assert_eq!(
            Accept::parse_with("a/b, c/d, e/f", &limits),
            Err(ContentTypeError::TooManyRanges { limit: 2 })
        );
        assert_eq!(
            Accept::parse_with("a/b, c/d", &limits)
                .unwrap()
                .ranges()
                .len(),
            2
        );
    }

    #[test]
    fn boundaries_follow_rfc_2046() {
        assert_eq!(Boundary::new(""), Err(BoundaryError::Empty));
        assert_eq!(
            Boundary::new(&"a".repeat(71)),
            Err(BoundaryError::TooLong { length: 71 })
        );
        assert!(Boundary::new(&"a".repeat(70)).is_ok());
        assert_eq!(
            Boundary::new("a;b"),
            Err(BoundaryError::InvalidCharacter { byte: b';' })
        );
        assert_eq!(Boundary::new("ab "), Err(BoundaryError::TrailingSpace));
        assert!(Boundary::new("'()+_,-./:=? x").is_ok());
        let ct =
            ContentType::parse(&format!("multipart/related; boundary={}", "b".repeat(71))).unwrap();
        assert_eq!(
            ct.boundary(),
            Err(ContentTypeError::Boundary(BoundaryError::TooLong {
                length: 71
            }))
        );
        assert_eq!(
            ContentType::parse("multipart/related").unwrap().boundary(),
            Err(ContentTypeError::MissingBoundary {
                media_type: "multipart/related".into()
            })
        );
    }

    #[test]
    fn random_boundaries_are_valid_and_differ() {
        let a = Boundary::random();
        let b = Boundary::random();
        assert_eq!(a.as_str().len(), 32);
        assert!(Boundary::new(a.as_str()).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn accept_forms_of_ohif_and_dicomweb_client() {
        // OHIF, unquoted; dicomweb-client, quoted; several ranges with weights.
        let accept =
            Accept::parse("multipart/related; type=application/octet-stream; transfer-syntax=*")
                .unwrap();
        let [range] = accept.ranges() else {
            panic!("one range expected: {accept:?}")
        };
        assert_eq!(range.quality, 1000);
        assert!(range.media_type.is("multipart", "related"));
        assert_eq!(
            range.media_type.parameter("type"),
            Some("application/octet-stream")
        );
        assert_eq!(range.media_type.parameter("transfer-syntax"), Some("*"));

        let accept = Accept::parse(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1, \
             Application/DICOM+JSON;q=0.9 , */*; q=0.1,image/jpeg;q=0",
        )
        .unwrap();
        let qualities: Vec<_> = accept.ranges().iter().map(|r| r.quality).collect();
        assert_eq!(qualities, [1000, 900, 100, 0]);
        assert_eq!(
            accept.ranges()[0].media_type.parameter("transfer-syntax"),
            Some("1.2.840.10008.1.2.1")
        );
        assert_eq!(
            accept.ranges()[1].media_type.essence(),
            "application/dicom+json"
        );
        let preferred: Vec<_> = accept
            .preferred()
            .iter()
            .map(|r| r.media_type.essence())
            .collect();
        assert_eq!(
            preferred,
            ["multipart/related", "application/dicom+json", "*/*"]
        );

        // transfer-syntax after q stays a parameter of the range.
        let accept =
            Accept::parse("multipart/related; type=\"image/jpeg\"; q=0.5; transfer-syntax=*")
                .unwrap();
        assert_eq!(accept.ranges()[0].quality, 500);
        assert_eq!(
            accept.ranges()[0].media_type.parameter("transfer-syntax"),
            Some("*")
        );

        // A comma inside a quoted string does not split ranges.
        let accept = Accept::parse("a/b; x=\"1,2\", c/d").unwrap();
        assert_eq!(accept.ranges().len(), 2);
        assert_eq!(accept.ranges()[0].media_type.parameter("x"), Some("1,2"));
        assert!(Accept::parse("").unwrap().ranges().is_empty());

        // The transfer syntax inside the quoted type parameter, as some clients write it.
        let accept = Accept::parse(
            "multipart/related; type=\"application/dicom; transfer-syntax=1.2.840.10008.1.2.4.70\"",
        )
        .unwrap();
        let related = accept.ranges()[0]
            .media_type
            .related_type()
            .unwrap()
            .unwrap();
        assert!(related.is("application", "dicom"));
        assert_eq!(
            related.parameter("transfer-syntax"),
            Some("1.2.840.10008.1.2.4.70")
        );
    }

    #[test]
    fn quality_values_are_checked() {
        for (q, expected) in [
            ("0", 0),
            ("0.", 0),
            ("0.25", 250),
            ("0.001", 1),
            ("1", 1000),
            ("1.000", 1000),
        ] {
            let accept = Accept::parse(&format!("a/b;q={q}")).unwrap();
            assert_eq!(accept.ranges()[0].quality, expected, "{q}");
        }
        for q in ["1.5", "2", "0.1234", "-1", "x", "1.01"] {
            assert!(
                matches!(
                    Accept::parse(&format!("a/b;q={q}")),
                    Err(ContentTypeError::InvalidQuality { .. })
                ),
                "{q}"
            );
        }
        assert!(matches!(
            Accept::parse("a/b;q=1;q=0"),
            Err(ContentTypeError::DuplicateParameter { .. })
        ));
    }

    #[test]
    fn ranges_match_candidates() {
        let accept =
            Accept::parse("multipart/related; type=\"Application/Octet-Stream\", image/*, */*")
                .unwrap();
        let frames =
            ContentType::parse("multipart/related; type=\"application/octet-stream\"; boundary=x")
                .unwrap();
        let dicom = ContentType::parse("multipart/related; type=\"application/dicom\"").unwrap();
        let jpeg = ContentType::new("image", "jpeg").unwrap();
        let ranges = accept.ranges();
        assert!(ranges[0].matches(&frames));
        assert!(!ranges[0].matches(&dicom));
        assert!(!ranges[0].matches(&jpeg));
        assert!(ranges[1].matches(&jpeg));
        assert!(!ranges[1].matches(&dicom));
        assert!(ranges[2].matches(&dicom));
    }

    #[test]
    fn with_parameter_replaces_and_checks() {
        let ct = ContentType::new("application", "dicom")
            .unwrap()
            .with_parameter("Transfer-Syntax", "1.2.840.10008.1.2.1")
            .unwrap()
            .with_parameter("transfer-syntax", "*")
            .unwrap();
        assert_eq!(ct.to_string(), "application/dicom; transfer-syntax=*");
        assert!(ct.clone().with_parameter("a b", "1").is_err());
        assert!(ct.with_parameter("x", "1\r\n").is_err());
    }
}
