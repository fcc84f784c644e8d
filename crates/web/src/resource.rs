//! DICOMweb resources (PS3.18 §10.1, 10.4.1, 10.6.1): the path of a request relative to the
//! service root, typed, parsed strictly and written back.
//!
//! A path is read segment by segment: each segment is percent-decoded (RFC 3986 §2.1) and must
//! be UTF-8; an empty segment, `.` or `..`, or a segment that decodes to a `/` or `\` is refused,
//! so that no segment can ever name something outside the resource it appears to. Every UID is
//! checked with `dimsum_uid` (PS3.5 §9.1). Frame numbers are 1-based (PS3.18 10.4.1.1.6), at
//! most [`ResourceLimits::max_frames`] of them.

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Bounds on what a resource path may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Longest path, in bytes, before decoding.
    pub max_path_length: usize,
    /// Most segments in a path.
    pub max_segments: usize,
    /// Most frame numbers in a frame list.
    pub max_frames: usize,
    /// Most segments after `bulkdata`.
    pub max_bulkdata_segments: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_path_length: 8 * 1024,
            max_segments: 64,
            max_frames: 4096,
            max_bulkdata_segments: 32,
        }
    }
}

/// Why a path is not a DICOMweb resource. [`ResourceError::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("the path is {length} bytes long, more than the {limit} accepted")]
    PathTooLong { length: usize, limit: usize },
    #[error("the path has more than {limit} segments")]
    TooManySegments { limit: usize },
    #[error("segment {index} of the path is empty")]
    EmptySegment { index: usize },
    #[error("segment {index} of the path is a dot segment ({segment:?})")]
    DotSegment { index: usize, segment: String },
    #[error("segment {index} of the path decodes to a path separator")]
    EncodedSeparator { index: usize },
    #[error("segment {index} of the path is not valid percent-encoded UTF-8")]
    NotUtf8 { index: usize },
    #[error("the path contains {found:?}, which a resource path never holds")]
    InvalidCharacter { found: char },
    #[error("{what} {uid:?} is not a valid UID: {reason}")]
    InvalidUid {
        what: &'static str,
        uid: String,
        reason: &'static str,
    },
    #[error("frame number {text:?} is not a number from 1 to {max}", max = u32::MAX)]
    InvalidFrame { text: String },
    #[error("the frame list is empty")]
    NoFrames,
    #[error("the frame list has more than {limit} frame numbers")]
    TooManyFrames { limit: usize },
    #[error(
        "bulkdata segment {segment:?} holds characters other than letters, digits, '.', '_' and '-'"
    )]
    InvalidBulkdataSegment { segment: String },
    #[error("the bulkdata path has more than {limit} segments")]
    TooManyBulkdataSegments { limit: usize },
    #[error("no DICOMweb resource is at {path:?}")]
    Unknown { path: String },
}

impl ResourceError {
    /// The HTTP status for the error: 404 for a path that names no resource, 400 for every
    /// malformed path (PS3.18 8.5: a bad request).
    pub fn status(&self) -> u16 {
        match self {
            ResourceError::Unknown { .. } => 404,
            _ => 400,
        }
    }
}

/// The entity a study, series or instance resource names (PS3.18 10.4.1.1.1–10.4.1.1.3): its
/// Study, Series and SOP Instance UIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    Study {
        study: String,
    },
    Series {
        study: String,
        series: String,
    },
    Instance {
        study: String,
        series: String,
        instance: String,
    },
}

impl Entity {
    /// The Study Instance UID.
    pub fn study(&self) -> &str {
        match self {
            Entity::Study { study }
            | Entity::Series { study, .. }
            | Entity::Instance { study, .. } => study,
        }
    }

    /// The Series Instance UID, for a series or an instance.
    pub fn series(&self) -> Option<&str> {
        match self {
            Entity::Study { .. } => None,
            Entity::Series { series, .. } | Entity::Instance { series, .. } => Some(series),
        }
    }

    /// The SOP Instance UID, for an instance.
    pub fn instance(&self) -> Option<&str> {
        match self {
            Entity::Instance { instance, .. } => Some(instance),
            _ => None,
        }
    }
}

/// A DICOMweb resource of the Studies Service (PS3.18 §10.1.1, Table 10.4.1-1 for retrieval,
/// Table 10.6.1-1 for search, 10.5.1 for store), as a path relative to the service root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `studies`: search for studies (QIDO-RS), store (STOW-RS).
    Studies,
    /// `series`: search for series of any study.
    AllSeries,
    /// `instances`: search for instances of any study.
    AllInstances,
    /// `studies/{study}`: retrieve a study, store into it.
    Study(String),
    /// `studies/{study}/series`: search for the series of a study.
    StudySeries(String),
    /// `studies/{study}/instances`: search for the instances of a study.
    StudyInstances(String),
    /// `studies/{study}/series/{series}`: retrieve a series.
    Series(String, String),
    /// `studies/{study}/series/{series}/instances`: search for the instances of a series.
    SeriesInstances(String, String),
    /// `studies/{study}/series/{series}/instances/{instance}`: retrieve an instance.
    Instance(String, String, String),
    /// `…/instances/{instance}/frames/{frames}`: frames of an instance, 1-based.
    Frames(Entity, Vec<u32>),
    /// `…/metadata` of a study, series or instance.
    Metadata(Entity),
    /// `…/rendered` of a study, series or instance, or of frames (`…/frames/{f}/rendered`).
    Rendered(Entity, Option<Vec<u32>>),
    /// `…/thumbnail` of a study, series or instance, or of frames.
    Thumbnail(Entity, Option<Vec<u32>>),
    /// `…/instances/{instance}/bulkdata/{path}`: bulk data of an instance; `path` is the
    /// server's own (for dimsum, a tag path), segments of letters, digits, `.`, `_` and `-`.
    Bulkdata(Entity, Vec<String>),
}

/// Characters written percent-encoded in a path segment: controls, space and every delimiter
/// of RFC 3986 that could change the meaning of a path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'^')
    .add(b'|');

impl Resource {
    /// Parses a path relative to the service root (a leading `/` is allowed) with the default
    /// [`ResourceLimits`].
    pub fn parse(path: &str) -> Result<Resource, ResourceError> {
        Self::parse_with(path, &ResourceLimits::default())
    }

    /// Parses a path relative to the service root within `limits`.
    pub fn parse_with(path: &str, limits: &ResourceLimits) -> Result<Resource, ResourceError> {
        if path.len() > limits.max_path_length {
            return Err(ResourceError::PathTooLong {
                length: path.len(),
                limit: limits.max_path_length,
            });
        }
        if let Some(found) = path
            .chars()
            .find(|c| matches!(c, '?' | '#') || c.is_control())
        {
            return Err(ResourceError::InvalidCharacter { found });
        }
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        if trimmed.is_empty() {
            // The service root itself is no resource of the Studies Service.
            return Err(ResourceError::Unknown {
                path: path.to_owned(),
            });
        }
        let mut segments = Vec::new();
        for (index, raw) in trimmed.split('/').enumerate() {
            if index == limits.max_segments {
                return Err(ResourceError::TooManySegments {
                    limit: limits.max_segments,
                });
            }
            segments.push(decode_segment(index, raw)?);
        }
        let unknown = || ResourceError::Unknown {
            path: path.to_owned(),
        };
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        Ok(match s.as_slice() {
            ["studies"] => Resource::Studies,
            ["series"] => Resource::AllSeries,
            ["instances"] => Resource::AllInstances,
            ["studies", study, rest @ ..] => {
                let study = uid("Study Instance UID", study)?;
                match rest {
                    [] => Resource::Study(study),
                    ["series"] => Resource::StudySeries(study),
                    ["instances"] => Resource::StudyInstances(study),
                    ["metadata"] => Resource::Metadata(Entity::Study { study }),
                    ["rendered"] => Resource::Rendered(Entity::Study { study }, None),
                    ["thumbnail"] => Resource::Thumbnail(Entity::Study { study }, None),
                    ["series", series, rest @ ..] => {
                        let series = uid("Series Instance UID", series)?;
                        series_resource(study, series, rest, limits).ok_or_else(unknown)??
                    }
                    _ => return Err(unknown()),
                }
            }
            _ => return Err(unknown()),
        })
    }

    /// The resource as a path relative to the service root, without a leading `/`
    /// (`studies/1.2/series/3.4/metadata`); the same as its `Display`.
    pub fn to_path(&self) -> String {
        self.to_string()
    }

    /// The entity (study, series or instance) a retrieval resource is about; `None` for the
    /// search resources and `studies`.
    pub fn entity(&self) -> Option<Entity> {
        Some(match self {
            Resource::Study(study) => Entity::Study {
                study: study.clone(),
            },
            Resource::Series(study, series) => Entity::Series {
                study: study.clone(),
                series: series.clone(),
            },
            Resource::Instance(study, series, instance) => Entity::Instance {
                study: study.clone(),
                series: series.clone(),
                instance: instance.clone(),
            },
            Resource::Frames(entity, _)
            | Resource::Metadata(entity)
            | Resource::Rendered(entity, _)
            | Resource::Thumbnail(entity, _)
            | Resource::Bulkdata(entity, _) => entity.clone(),
            _ => return None,
        })
    }
}

/// The resources under `studies/{study}/series/{series}`; `None` when the rest names none.
fn series_resource(
    study: String,
    series: String,
    rest: &[&str],
    limits: &ResourceLimits,
) -> Option<Result<Resource, ResourceError>> {
    let entity = || Entity::Series {
        study: study.clone(),
        series: series.clone(),
    };
    Some(Ok(match rest {
        [] => Resource::Series(study, series),
        ["instances"] => Resource::SeriesInstances(study, series),
        ["metadata"] => Resource::Metadata(entity()),
        ["rendered"] => Resource::Rendered(entity(), None),
        ["thumbnail"] => Resource::Thumbnail(entity(), None),
        ["instances", instance, rest @ ..] => {
            let instance = match uid("SOP Instance UID", instance) {
                Ok(instance) => instance,
                Err(error) => return Some(Err(error)),
            };
            let entity = Entity::Instance {
                study,
                series,
                instance,
            };
            return instance_resource(entity, rest, limits);
        }
        _ => return None,
    }))
}

/// The resources under `…/instances/{instance}`.
fn instance_resource(
    entity: Entity,
    rest: &[&str],
    limits: &ResourceLimits,
) -> Option<Result<Resource, ResourceError>> {
    Some(match rest {
        [] => match entity {
            Entity::Instance {
                study,
                series,
                instance,
            } => Ok(Resource::Instance(study, series, instance)),
            _ => return None,
        },
        ["metadata"] => Ok(Resource::Metadata(entity)),
        ["rendered"] => Ok(Resource::Rendered(entity, None)),
        ["thumbnail"] => Ok(Resource::Thumbnail(entity, None)),
        ["frames", list] => parse_frames(list, limits).map(|f| Resource::Frames(entity, f)),
        ["frames", list, "rendered"] => {
            parse_frames(list, limits).map(|f| Resource::Rendered(entity, Some(f)))
        }
        ["frames", list, "thumbnail"] => {
            parse_frames(list, limits).map(|f| Resource::Thumbnail(entity, Some(f)))
        }
        ["bulkdata", path @ ..] if !path.is_empty() => {
            if path.len() > limits.max_bulkdata_segments {
                return Some(Err(ResourceError::TooManyBulkdataSegments {
                    limit: limits.max_bulkdata_segments,
                }));
            }
            let mut segments = Vec::with_capacity(path.len());
            for segment in path {
                let valid = segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if !valid {
                    return Some(Err(ResourceError::InvalidBulkdataSegment {
                        segment: (*segment).to_owned(),
                    }));
                }
                segments.push((*segment).to_owned());
            }
            Ok(Resource::Bulkdata(entity, segments))
        }
        _ => return None,
    })
}

/// A segment percent-decoded: UTF-8, not empty, not a dot segment, no separator inside.
fn decode_segment(index: usize, raw: &str) -> Result<String, ResourceError> {
    if raw.is_empty() {
        return Err(ResourceError::EmptySegment { index });
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ResourceError::NotUtf8 { index })?;
    if decoded.contains(['/', '\\']) {
        return Err(ResourceError::EncodedSeparator { index });
    }
    if decoded.is_empty() {
        return Err(ResourceError::EmptySegment { index });
    }
    if decoded == "." || decoded == ".." {
        return Err(ResourceError::DotSegment {
            index,
            segment: decoded.into_owned(),
        });
    }
    if let Some(found) = decoded.chars().find(|c| c.is_control()) {
        return Err(ResourceError::InvalidCharacter { found });
    }
    Ok(decoded.into_owned())
}

/// A UID segment checked with `dimsum_uid` (PS3.5 §9.1).
fn uid(what: &'static str, text: &str) -> Result<String, ResourceError> {
    dimsum_uid::validate(text).map_err(|error| ResourceError::InvalidUid {
        what,
        uid: text.chars().take(80).collect(),
        reason: error.reason(),
    })?;
    Ok(text.to_owned())
}

/// A frame list (PS3.18 10.4.1.1.6): 1-based frame numbers separated by commas.
pub fn parse_frames(text: &str, limits: &ResourceLimits) -> Result<Vec<u32>, ResourceError> {
    let mut frames = Vec::new();
    for part in text.split(',') {
        if frames.len() == limits.max_frames {
            return Err(ResourceError::TooManyFrames {
                limit: limits.max_frames,
            });
        }
        let invalid = || ResourceError::InvalidFrame {
            text: part.chars().take(32).collect(),
        };
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let frame: u32 = part.parse().map_err(|_| invalid())?;
        if frame == 0 {
            return Err(invalid());
        }
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(ResourceError::NoFrames);
    }
    Ok(frames)
}

fn write_segment(f: &mut fmt::Formatter<'_>, segment: &str) -> fmt::Result {
    write!(f, "/{}", utf8_percent_encode(segment, SEGMENT))
}

fn write_entity(f: &mut fmt::Formatter<'_>, entity: &Entity) -> fmt::Result {
    f.write_str("studies")?;
    write_segment(f, entity.study())?;
    if let Some(series) = entity.series() {
        f.write_str("/series")?;
        write_segment(f, series)?;
    }
    if let Some(instance) = entity.instance() {
        f.write_str("/instances")?;
        write_segment(f, instance)?;
    }
    Ok(())
}

fn write_frames(f: &mut fmt::Formatter<'_>, frames: &[u32]) -> fmt::Result {
    f.write_str("/frames/")?;
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{frame}")?;
    }
    Ok(())
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Studies => f.write_str("studies"),
            Resource::AllSeries => f.write_str("series"),
            Resource::AllInstances => f.write_str("instances"),
            Resource::StudySeries(study) => {
                f.write_str("studies")?;
                write_segment(f, study)?;
                f.write_str("/series")
            }
            Resource::StudyInstances(study) => {
                f.write_str("studies")?;
                write_segment(f, study)?;
                f.write_str("/instances")
            }
            Resource::SeriesInstances(study, series) => {
                f.write_str("studies")?;
                write_segment(f, study)?;
                f.write_str("/series")?;
                write_segment(f, series)?;
                f.write_str("/instances")
            }
            Resource::Study(_) | Resource::Series(..) | Resource::Instance(..) => {
                match self.entity() {
                    Some(entity) => write_entity(f, &entity),
                    None => Ok(()),
                }
            }
            Resource::Frames(entity, frames) => {
                write_entity(f, entity)?;
                write_frames(f, frames)
            }
            Resource::Metadata(entity) => {
                write_entity(f, entity)?;
                f.write_str("/metadata")
            }
            Resource::Rendered(entity, frames) | Resource::Thumbnail(entity, frames) => {
                write_entity(f, entity)?;
                if let Some(frames) = frames {
                    write_frames(f, frames)?;
                }
                f.write_str(if matches!(self, Resource::Rendered(..)) {
                    "/rendered"
                } else {
                    "/thumbnail"
                })
            }
            Resource::Bulkdata(entity, path) => {
                write_entity(f, entity)?;
                f.write_str("/bulkdata")?;
                for segment in path {
                    write_segment(f, segment)?;
                }
                Ok(())
            }
        }
    }
}
