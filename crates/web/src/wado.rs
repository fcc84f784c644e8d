//! WADO-RS, the Retrieve transaction (PS3.18 §10.4): which media types each resource is
//! retrieved in (Table 10.4.1-1 and 8.7.3), the `Accept` value a client sends for them, and the
//! media type of a response read back, with no HTTP stack.

use std::fmt;

use crate::multipart::{ContentType, ContentTypeError};
use crate::resource::Resource;

/// The `transfer-syntax` parameter of a media type (PS3.18 8.7.3.5.2): a transfer syntax UID,
/// or `*` for the one the origin server holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransferSyntax {
    /// `*`: as stored.
    Any,
    /// A transfer syntax UID.
    Uid(String),
}

impl fmt::Display for TransferSyntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferSyntax::Any => f.write_str("*"),
            TransferSyntax::Uid(uid) => f.write_str(uid),
        }
    }
}

/// A rendered media type (PS3.18 8.7.4, Table 8.7.4-1) this crate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageType {
    Jpeg,
    Png,
    Gif,
}

impl ImageType {
    fn subtype(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpeg",
            ImageType::Png => "png",
            ImageType::Gif => "gif",
        }
    }
}

/// How a WADO-RS resource is represented (PS3.18 8.7.3 and 8.7.4; Table 10.4.1-1 says which
/// resource takes which).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Representation {
    /// `multipart/related; type="application/dicom"` (8.7.3.2), with a transfer syntax when
    /// one is asked for; the default is Explicit VR Little Endian (8.7.3.5.2).
    Dicom(Option<TransferSyntax>),
    /// `application/dicom+json` (8.7.3.3.1): metadata.
    DicomJson,
    /// `multipart/related; type="application/dicom+xml"` (8.7.3.3.2): metadata.
    DicomXml,
    /// `multipart/related; type="application/octet-stream"` (8.7.3.4): frames and bulk data,
    /// uncompressed unless a transfer syntax is asked for.
    OctetStream(Option<TransferSyntax>),
    /// A single rendered image (8.7.4): rendered and thumbnail resources.
    Image(ImageType),
}

/// Why a media type is not a WADO-RS representation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WadoError {
    #[error("the media type cannot be read: {0}")]
    ContentType(#[from] ContentTypeError),
    #[error("{0:?} is not a WADO-RS media type this crate knows")]
    Unsupported(String),
    #[error("transfer-syntax {uid:?} is not a valid UID: {reason}")]
    InvalidTransferSyntax { uid: String, reason: &'static str },
    #[error("{representation} is not a representation of {resource}")]
    NotAcceptable {
        representation: String,
        resource: String,
    },
}

impl WadoError {
    /// 406 for a representation the resource does not have (PS3.18 8.7.5), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            WadoError::NotAcceptable { .. } | WadoError::Unsupported(_) => 406,
            _ => 400,
        }
    }
}

impl Representation {
    /// The media type, as written in `Accept` or `Content-Type` (without a boundary).
    pub fn media_type(&self) -> String {
        let related = |kind: &str, syntax: &Option<TransferSyntax>| match syntax {
            Some(syntax) => {
                format!("multipart/related; type=\"{kind}\"; transfer-syntax={syntax}")
            }
            None => format!("multipart/related; type=\"{kind}\""),
        };
        match self {
            Representation::Dicom(syntax) => related("application/dicom", syntax),
            Representation::DicomJson => "application/dicom+json".to_owned(),
            Representation::DicomXml => related("application/dicom+xml", &None),
            Representation::OctetStream(syntax) => related("application/octet-stream", syntax),
            Representation::Image(image) => format!("image/{}", image.subtype()),
        }
    }

    /// The representation a resource is retrieved in when the client states none (PS3.18
    /// 8.7.5 and Table 10.4.1-1): DICOM for studies, series and instances, DICOM JSON for
    /// metadata, octet streams for frames and bulk data, JPEG for rendered and thumbnail;
    /// `None` for the search resources, which WADO-RS does not retrieve.
    pub fn default_for(resource: &Resource) -> Option<Representation> {
        Some(match resource {
            Resource::Study(_) | Resource::Series(..) | Resource::Instance(..) => {
                Representation::Dicom(None)
            }
            Resource::Metadata(_) => Representation::DicomJson,
            Resource::Frames(..) | Resource::Bulkdata(..) => Representation::OctetStream(None),
            Resource::Rendered(..) | Resource::Thumbnail(..) => {
                Representation::Image(ImageType::Jpeg)
            }
            _ => return None,
        })
    }

    /// Whether `resource` can be retrieved in this representation (Table 10.4.1-1).
    pub fn is_valid_for(&self, resource: &Resource) -> bool {
        match self {
            Representation::Dicom(_) => matches!(
                resource,
                Resource::Study(_) | Resource::Series(..) | Resource::Instance(..)
            ),
            Representation::DicomJson | Representation::DicomXml => {
                matches!(resource, Resource::Metadata(_))
            }
            Representation::OctetStream(_) => matches!(
                resource,
                Resource::Study(_)
                    | Resource::Series(..)
                    | Resource::Instance(..)
                    | Resource::Frames(..)
                    | Resource::Bulkdata(..)
            ),
            Representation::Image(_) => {
                matches!(resource, Resource::Rendered(..) | Resource::Thumbnail(..))
            }
        }
    }

    /// Checks [`Representation::is_valid_for`], with the error a server answers 406 with.
    pub fn check_for(&self, resource: &Resource) -> Result<(), WadoError> {
        if self.is_valid_for(resource) {
            Ok(())
        } else {
            Err(WadoError::NotAcceptable {
                representation: self.media_type(),
                resource: resource.to_path(),
            })
        }
    }

    /// The representation of a `Content-Type` (a response's, or one range of an `Accept`):
    /// the `type` and `transfer-syntax` parameters of multipart/related are read, the
    /// transfer syntax checked as a UID.
    pub fn from_content_type(content_type: &ContentType) -> Result<Representation, WadoError> {
        if content_type.is("application", "dicom+json") || content_type.is("application", "json") {
            return Ok(Representation::DicomJson);
        }
        for image in [ImageType::Jpeg, ImageType::Png, ImageType::Gif] {
            if content_type.is("image", image.subtype()) {
                return Ok(Representation::Image(image));
            }
        }
        let unsupported = || WadoError::Unsupported(content_type.to_string());
        if !content_type.is("multipart", "related") {
            return Err(unsupported());
        }
        let syntax = match content_type.parameter("transfer-syntax") {
            None => None,
            Some("*") => Some(TransferSyntax::Any),
            Some(uid) => {
                dimsum_uid::validate(uid).map_err(|e| WadoError::InvalidTransferSyntax {
                    uid: uid.chars().take(80).collect(),
                    reason: e.reason(),
                })?;
                Some(TransferSyntax::Uid(uid.to_owned()))
            }
        };
        let related = content_type.related_type()?.ok_or_else(unsupported)?;
        if related.is("application", "dicom") {
            Ok(Representation::Dicom(syntax))
        } else if related.is("application", "dicom+xml") {
            Ok(Representation::DicomXml)
        } else if related.is("application", "octet-stream") {
            Ok(Representation::OctetStream(syntax))
        } else {
            Err(unsupported())
        }
    }
}

impl fmt::Display for Representation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.media_type())
    }
}

/// A WADO-RS request (PS3.18 10.4.1): the resource and the representations accepted, most
/// preferred first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WadoRequest {
    pub resource: Resource,
    pub accept: Vec<Representation>,
}

impl WadoRequest {
    /// A request for `resource` in its default representation
    /// ([`Representation::default_for`]); `None` for a resource WADO-RS does not retrieve.
    pub fn new(resource: Resource) -> Option<WadoRequest> {
        let default = Representation::default_for(&resource)?;
        Some(WadoRequest {
            resource,
            accept: vec![default],
        })
    }

    /// A request for `resource` in the given representations, each checked against the
    /// resource (406 for one it does not have).
    pub fn with_accept(
        resource: Resource,
        accept: Vec<Representation>,
    ) -> Result<WadoRequest, WadoError> {
        for representation in &accept {
            representation.check_for(&resource)?;
        }
        Ok(WadoRequest { resource, accept })
    }

    /// The `Accept` header value: the representations in order, separated by commas.
    pub fn accept_header(&self) -> String {
        self.accept
            .iter()
            .map(Representation::media_type)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The request target relative to the service root.
    pub fn path(&self) -> String {
        self.resource.to_path()
    }
}
