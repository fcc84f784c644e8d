//! The query parameters of the rendered and thumbnail resources (PS3.18 8.3.5.1, Table
//! 8.3.5-1; 10.4.1.2, 10.4.1.3): `quality`, `viewport`, `window`, `annotation` and
//! `iccprofile`, read from a query string within limits and written back, with no HTTP stack.
//!
//! The `accept` and `charset` parameters (PS3.18 8.3.3) are read too: `accept` is the media
//! type a client may give instead of an `Accept` header.

use std::fmt;

use percent_encoding::percent_decode_str;

/// The longest query string read, in bytes.
pub const MAX_QUERY_LENGTH: usize = 4096;
/// The most parameters in a query string.
pub const MAX_PARAMETERS: usize = 16;

/// Why a query string of a rendered or thumbnail resource was refused (400, PS3.18 8.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderParameterError {
    #[error("the query string is {length} bytes long, more than the {limit} accepted")]
    TooLong { length: usize, limit: usize },
    #[error("the query string has more than {limit} parameters")]
    TooManyParameters { limit: usize },
    #[error("the query string is not valid percent-encoded UTF-8")]
    NotUtf8,
    #[error("parameter {name:?} is given more than once")]
    Repeated { name: String },
    #[error("{name:?} is not a query parameter of the {resource} resource (PS3.18 8.3.5.1)")]
    Unknown {
        name: String,
        resource: &'static str,
    },
    #[error("quality {value:?} is not a whole number from 1 to 100 (PS3.18 8.3.5.1.2)")]
    InvalidQuality { value: String },
    #[error("viewport {value:?} is not vw,vh or vw,vh,sx,sy,sw,sh (PS3.18 8.3.5.1.3): {reason}")]
    InvalidViewport { value: String, reason: &'static str },
    #[error(
        "window {value:?} is not center,width,function with function linear, linear-exact or sigmoid (PS3.18 8.3.5.1.4): {reason}"
    )]
    InvalidWindow { value: String, reason: &'static str },
    #[error("annotation {value:?} is not a list of patient and technique (PS3.18 8.3.5.1.1)")]
    InvalidAnnotation { value: String },
    #[error(
        "iccprofile {value:?} is not no, yes, srgb, adobergb or rommrgb (PS3.18 8.3.5.1.5); only no is supported"
    )]
    UnsupportedIccProfile { value: String },
}

/// `viewport=vw,vh[,sx,sy,sw,sh]` (PS3.18 8.3.5.1.3): the size of the rendered image and, for
/// the rendered resource, the region of the source image to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// The width of the viewport in pixels; `None`: derived from the height, preserving the
    /// aspect ratio.
    pub width: Option<u32>,
    /// The height; `None`: derived from the width.
    pub height: Option<u32>,
    /// The region of the source image rendered; `None`: all of it.
    pub source: Option<SourceRegion>,
}

/// The source region of a viewport (PS3.18 8.3.5.1.3): its top left corner, and its width and
/// height, negative to flip the image along that axis; a width or height left out reaches the
/// edge of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRegion {
    pub x: u32,
    pub y: u32,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

/// The VOI LUT function of a window (PS3.18 8.3.5.1.4; PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    /// `linear` (LINEAR).
    Linear,
    /// `linear-exact` (LINEAR_EXACT).
    LinearExact,
    /// `sigmoid` (SIGMOID).
    Sigmoid,
}

impl WindowFunction {
    fn name(self) -> &'static str {
        match self {
            WindowFunction::Linear => "linear",
            WindowFunction::LinearExact => "linear-exact",
            WindowFunction::Sigmoid => "sigmoid",
        }
    }
}

/// `window=center,width,function` (PS3.18 8.3.5.1.4): the VOI window applied instead of the
/// instance's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: WindowFunction,
}

/// What is rendered: the rendered resource takes every parameter, the thumbnail resource only
/// `viewport` (PS3.18 10.4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderedKind {
    Rendered,
    Thumbnail,
}

impl RenderedKind {
    fn name(self) -> &'static str {
        match self {
            RenderedKind::Rendered => "rendered",
            RenderedKind::Thumbnail => "thumbnail",
        }
    }
}

/// The query parameters of a rendered or thumbnail request (PS3.18 8.3.5.1, Table 8.3.5-1).
/// Annotations are read but not burned in: PS3.18 leaves their content to the origin server,
/// and dimsum renders none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderParameters {
    /// `quality`, 1 to 100, for lossy media types.
    pub quality: Option<u8>,
    pub viewport: Option<Viewport>,
    pub window: Option<Window>,
    /// `annotation`: `patient` and/or `technique`.
    pub annotation: Vec<String>,
    /// `accept` (PS3.18 8.3.3.1): media types given in the query instead of `Accept`.
    pub accept: Option<String>,
}

impl RenderParameters {
    /// Reads a query string (without the `?`) of a `kind` resource.
    pub fn parse(query: &str, kind: RenderedKind) -> Result<Self, RenderParameterError> {
        if query.len() > MAX_QUERY_LENGTH {
            return Err(RenderParameterError::TooLong {
                length: query.len(),
                limit: MAX_QUERY_LENGTH,
            });
        }
        let mut parameters = RenderParameters::default();
        let mut seen: Vec<String> = Vec::new();
        for (index, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            if index == MAX_PARAMETERS {
                return Err(RenderParameterError::TooManyParameters {
                    limit: MAX_PARAMETERS,
                });
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name)?;
            let value = decode(value)?;
            if seen.contains(&name) {
                return Err(RenderParameterError::Repeated { name });
            }
            let allowed = match kind {
                RenderedKind::Rendered => true,
                RenderedKind::Thumbnail => {
                    matches!(name.as_str(), "viewport" | "accept" | "charset")
                }
            };
            if !allowed {
                return Err(RenderParameterError::Unknown {
                    name,
                    resource: kind.name(),
                });
            }
            match name.as_str() {
                "quality" => parameters.quality = Some(parse_quality(&value)?),
                "viewport" => parameters.viewport = Some(parse_viewport(&value, kind)?),
                "window" => parameters.window = Some(parse_window(&value)?),
                "annotation" => parameters.annotation = parse_annotation(&value)?,
                "iccprofile" => {
                    if value != "no" {
                        return Err(RenderParameterError::UnsupportedIccProfile { value });
                    }
                }
                "accept" => parameters.accept = Some(value),
                // The character set of annotations, which dimsum does not render.
                "charset" => {}
                _ => {
                    return Err(RenderParameterError::Unknown {
                        name,
                        resource: kind.name(),
                    });
                }
            }
            seen.push(name);
        }
        Ok(parameters)
    }

    /// The query string (without `?`), parameters in a fixed order, values percent-encoded
    /// where needed.
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(quality) = self.quality {
            query.append_pair("quality", &quality.to_string());
        }
        if let Some(viewport) = &self.viewport {
            query.append_pair("viewport", &viewport.to_string());
        }
        if let Some(window) = &self.window {
            query.append_pair("window", &window.to_string());
        }
        if !self.annotation.is_empty() {
            query.append_pair("annotation", &self.annotation.join(","));
        }
        if let Some(accept) = &self.accept {
            query.append_pair("accept", accept);
        }
        query.finish()
    }
}

impl fmt::Display for Viewport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let optional = |value: Option<u32>| value.map(|v| v.to_string()).unwrap_or_default();
        write!(f, "{},{}", optional(self.width), optional(self.height))?;
        if let Some(source) = &self.source {
            let optional = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
            write!(
                f,
                ",{},{},{},{}",
                source.x,
                source.y,
                optional(source.width),
                optional(source.height)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.center, self.width, self.function.name())
    }
}

/// A query component percent-decoded (`+` is a space, as in form encoding).
fn decode(text: &str) -> Result<String, RenderParameterError> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| RenderParameterError::NotUtf8)
}

fn parse_quality(value: &str) -> Result<u8, RenderParameterError> {
    let invalid = || RenderParameterError::InvalidQuality {
        value: value.chars().take(32).collect(),
    };
    if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let quality: u8 = value.parse().map_err(|_| invalid())?;
    if !(1..=100).contains(&quality) {
        return Err(invalid());
    }
    Ok(quality)
}

fn parse_viewport(value: &str, kind: RenderedKind) -> Result<Viewport, RenderParameterError> {
    let invalid = |reason| RenderParameterError::InvalidViewport {
        value: value.chars().take(64).collect(),
        reason,
    };
    let fields: Vec<&str> = value.split(',').collect();
    let size = |text: &str| -> Result<Option<u32>, RenderParameterError> {
        if text.is_empty() {
            return Ok(None);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 9 {
            return Err(invalid("a size is not a whole number of pixels"));
        }
        match text.parse::<u32>() {
            Ok(0) | Err(_) => Err(invalid("a size is not a whole number of pixels")),
            Ok(size) => Ok(Some(size)),
        }
    };
    let (width, height, source) = match fields.as_slice() {
        [vw, vh] => (size(vw)?, size(vh)?, None),
        [vw, vh, sx, sy, sw, sh] if kind == RenderedKind::Rendered => {
            let offset = |text: &str| -> Result<u32, RenderParameterError> {
                if text.is_empty() {
                    return Ok(0);
                }
                if !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 9 {
                    return Err(invalid("sx and sy are whole numbers of pixels"));
                }
                text.parse()
                    .map_err(|_| invalid("sx and sy are whole numbers of pixels"))
            };
            let extent = |text: &str| -> Result<Option<i64>, RenderParameterError> {
                if text.is_empty() {
                    return Ok(None);
                }
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty()
                    || digits.len() > 9
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(invalid(
                        "sw and sh are whole numbers of pixels, maybe negative",
                    ));
                }
                match text.parse::<i64>() {
                    Ok(0) | Err(_) => Err(invalid("sw and sh may not be 0")),
                    Ok(extent) => Ok(Some(extent)),
                }
            };
            let source = SourceRegion {
                x: offset(sx)?,
                y: offset(sy)?,
                width: extent(sw)?,
                height: extent(sh)?,
            };
            (size(vw)?, size(vh)?, Some(source))
        }
        [_, _, _, _, _, _] => return Err(invalid("a thumbnail viewport has no source region")),
        _ => return Err(invalid("it needs 2 or 6 fields")),
    };
    if width.is_none() && height.is_none() {
        return Err(invalid("vw or vh must be given"));
    }
    Ok(Viewport {
        width,
        height,
        source,
    })
}

fn parse_window(value: &str) -> Result<Window, RenderParameterError> {
    let invalid = |reason| RenderParameterError::InvalidWindow {
        value: value.chars().take(64).collect(),
        reason,
    };
    let fields: Vec<&str> = value.split(',').collect();
    let [center, width, function] = fields.as_slice() else {
        return Err(invalid("it needs 3 fields"));
    };
    let number = |text: &str| -> Result<f64, RenderParameterError> {
        if text.is_empty() || text.len() > 32 {
            return Err(invalid("center and width are decimal numbers"));
        }
        match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(number),
            _ => Err(invalid("center and width are decimal numbers")),
        }
    };
    let center = number(center)?;
    let width = number(width)?;
    let function = match *function {
        "linear" => WindowFunction::Linear,
        "linear-exact" => WindowFunction::LinearExact,
        "sigmoid" => WindowFunction::Sigmoid,
        _ => return Err(invalid("unknown function")),
    };
    // PS3.3 C.11.2.1.2: the width is at least 1 for LINEAR, above 0 otherwise.
    let minimum_ok = match function {
        WindowFunction::Linear => width >= 1.0,
        WindowFunction::LinearExact | WindowFunction::Sigmoid => width > 0.0,
    };
    if !minimum_ok {
        return Err(invalid("the width is too small for the function"));
    }
    Ok(Window {
        center,
        width,
        function,
    })
}

fn parse_annotation(value: &str) -> Result<Vec<String>, RenderParameterError> {
    let mut annotation = Vec::new();
    for item in value.split(',') {
        if !matches!(item, "patient" | "technique") || annotation.iter().any(|a| a == item) {
            return Err(RenderParameterError::InvalidAnnotation {
                value: value.chars().take(64).collect(),
            });
        }
        annotation.push(item.to_owned());
    }
    Ok(annotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_read_and_written_back() {
        let query = "quality=80&viewport=512,256,10,20,-100,200&window=40,400,linear&annotation=patient,technique";
        let parameters = RenderParameters::parse(query, RenderedKind::Rendered).expect("parse");
        assert_eq!(parameters.quality, Some(80));
        assert_eq!(
            parameters.viewport,
            Some(Viewport {
                width: Some(512),
                height: Some(256),
                source: Some(SourceRegion {
                    x: 10,
                    y: 20,
                    width: Some(-100),
                    height: Some(200)
                })
            })
        );
        assert_eq!(
            parameters.window,
            Some(Window {
                center: 40.0,
                width: 400.0,
                function: WindowFunction::Linear
            })
        );
        assert_eq!(parameters.annotation, ["patient", "technique"]);
        let written = parameters.to_query();
        assert_eq!(
            RenderParameters::parse(&written, RenderedKind::Rendered).expect("again"),
            parameters
        );
    }

    #[test]
    fn a_viewport_may_leave_out_one_size() {
        let parameters =
            RenderParameters::parse("viewport=,128", RenderedKind::Thumbnail).expect("parse");
        assert_eq!(
            parameters.viewport,
            Some(Viewport {
                width: None,
                height: Some(128),
                source: None
            })
        );
    }

    #[test]
    fn bad_values_are_refused_with_why() {
        for (query, kind) in [
            ("quality=0", RenderedKind::Rendered),
            ("quality=101", RenderedKind::Rendered),
            ("quality=abc", RenderedKind::Rendered),
            ("viewport=0,10", RenderedKind::Rendered),
            ("viewport=,", RenderedKind::Rendered),
            ("viewport=10", RenderedKind::Rendered),
            ("viewport=10,10,0,0,0,5", RenderedKind::Rendered),
            ("viewport=10,10,0,0,5,5", RenderedKind::Thumbnail),
            ("viewport=99999999999,1", RenderedKind::Rendered),
            ("window=40,400", RenderedKind::Rendered),
            ("window=40,0,linear", RenderedKind::Rendered),
            ("window=40,NaN,linear", RenderedKind::Rendered),
            ("window=40,400,cubic", RenderedKind::Rendered),
            ("annotation=everything", RenderedKind::Rendered),
            ("iccprofile=srgb", RenderedKind::Rendered),
            ("quality=50", RenderedKind::Thumbnail),
            ("frobnicate=1", RenderedKind::Rendered),
            ("quality=50&quality=60", RenderedKind::Rendered),
            ("window=%FF", RenderedKind::Rendered),
        ] {
            assert!(
                RenderParameters::parse(query, kind).is_err(),
                "{query} was accepted"
            );
        }
        let long = "a".repeat(MAX_QUERY_LENGTH + 1);
        assert!(matches!(
            RenderParameters::parse(&long, RenderedKind::Rendered),
            Err(RenderParameterError::TooLong { .. })
        ));
    }

    #[test]
    fn accept_and_charset_are_taken() {
        let parameters = RenderParameters::parse(
            "accept=image%2Fpng&charset=utf-8&iccprofile=no",
            RenderedKind::Rendered,
        )
        .expect("parse");
        assert_eq!(parameters.accept.as_deref(), Some("image/png"));
    }
}
