//! The headers of one body part (RFC 2046 §5.1.1, RFC 2387; PS3.18 8.6.1.2 names
//! Content-Type, Content-Location and Content-ID).

use super::content_type::ContentType;

/// Why a header given for a part to write was refused (RFC 9110 §5.1, §5.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    /// A header name that is not a token (RFC 9110 §5.1).
    #[error("invalid header name {name:?}")]
    InvalidName { name: String },
    /// A value with a control character (CR and LF included) or a non-ASCII byte: writing it
    /// would let the value end the header block.
    #[error("value of header {name} holds byte {byte:#04x}")]
    InvalidValue { name: String, byte: u8 },
}

/// The headers of one body part (RFC 2046 §5.1.1, PS3.18 8.6.1.2): its Content-Type (taken
/// from the multipart's `type` parameter, or RFC 2045's `text/plain`, when the part has
/// none), the optional Content-Location and Content-ID, and any other header in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeaders {
    content_type: ContentType,
    content_location: Option<String>,
    content_id: Option<String>,
    others: Vec<(String, String)>,
}

impl PartHeaders {
    /// Headers with a Content-Type only.
    pub fn new(content_type: ContentType) -> Self {
        Self {
            content_type,
            content_location: None,
            content_id: None,
            others: Vec::new(),
        }
    }

    pub(crate) fn from_parts(
        content_type: ContentType,
        content_location: Option<String>,
        content_id: Option<String>,
        others: Vec<(String, String)>,
    ) -> Self {
        Self {
            content_type,
            content_location,
            content_id,
            others,
        }
    }

    /// With a Content-Location (a URI; PS3.18 8.6.1.2 bulk data and frames).
    pub fn with_content_location(mut self, location: &str) -> Result<Self, HeaderValueError> {
        check_value("Content-Location", location)?;
        self.content_location = Some(location.to_owned());
        Ok(self)
    }

    /// With a Content-ID (RFC 2392, `<id>`).
    pub fn with_content_id(mut self, id: &str) -> Result<Self, HeaderValueError> {
        check_value("Content-ID", id)?;
        self.content_id = Some(id.to_owned());
        Ok(self)
    }

    /// With another header, written after the named ones.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, HeaderValueError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(HeaderValueError::InvalidName {
                name: name.to_owned(),
            });
        }
        check_value(name, value)?;
        self.others.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The part's media type.
    pub fn content_type(&self) -> &ContentType {
        &self.content_type
    }

    /// The Content-Location, if given.
    pub fn content_location(&self) -> Option<&str> {
        self.content_location.as_deref()
    }

    /// The Content-ID, if given.
    pub fn content_id(&self) -> Option<&str> {
        self.content_id.as_deref()
    }

    /// The other headers, names as written, in order.
    pub fn others(&self) -> &[(String, String)] {
        &self.others
    }

    /// The first other header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.others
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The header block as written before the part's body, each line ended by CRLF, the
    /// empty line included.
    pub(crate) fn write_block(&self, out: &mut Vec<u8>) {
        let mut line = |name: &str, value: &str| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line("Content-Type", &self.content_type.to_string());
        if let Some(location) = &self.content_location {
            line("Content-Location", location);
        }
        if let Some(id) = &self.content_id {
            line("Content-ID", id);
        }
        for (name, value) in &self.others {
            line(name, value);
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn check_value(name: &str, value: &str) -> Result<(), HeaderValueError> {
    match value
        .bytes()
        .find(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        Some(byte) => Err(HeaderValueError::InvalidValue {
            name: name.to_owned(),
            byte,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_injection_is_refused() {
        let headers = PartHeaders::new(ContentType::new("application", "dicom").unwrap());
        assert_eq!(
            headers.clone().with_content_location("/a\r\nX: y"),
            Err(HeaderValueError::InvalidValue {
                name: "Content-Location".into(),
                byte: b'\r'
            })
        );
        assert!(headers.clone().with_content_id("<a\n>").is_err());
        assert!(headers.clone().with_header("X: y", "1").is_err());
        assert!(headers.clone().with_header("", "1").is_err());
        assert!(headers.with_header("X-Y", "\u{e9}").is_err());
    }

    #[test]
    fn the_block_lists_every_header() {
        let headers = PartHeaders::new(ContentType::new("application", "dicom").unwrap())
            .with_content_location("/studies/1")
            .unwrap()
            .with_content_id("<1@x>")
            .unwrap()
            .with_header("Content-Description", "a b")
            .unwrap();
        let mut out = Vec::new();
        headers.write_block(&mut out);
        assert_eq!(
            out,
            b"Content-Type: application/dicom\r\nContent-Location: /studies/1\r\n\
              Content-ID: <1@x>\r\nContent-Description: a b\r\n\r\n"
        );
        assert_eq!(headers.header("content-description"), Some("a b"));
    }
}
