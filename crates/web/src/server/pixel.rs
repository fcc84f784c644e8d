//! WADO-RS frames, rendered and thumbnail resources (PS3.18 10.4.1.1.6 Frames, 10.4.1.2
//! Rendered, 10.4.1.3 Thumbnail), from the archive's files through [`crate::pixel`].
//!
//! * `GET …/instances/{instance}/frames/{list}`: `multipart/related`, one part per frame in
//!   the order asked, each only the frame's own bytes read from the file. The media type and
//!   transfer syntax come from `Accept` ([`negotiate_frames`]): native frames by default
//!   (compressed ones decoded), the stored frames for `transfer-syntax=*` or their own
//!   compressed media type (`image/jpeg`…). Frame 0 is 400 (the path is malformed), a frame
//!   past the last 404.
//! * `GET …/rendered` and `…/thumbnail` of an instance or of frames: one image,
//!   `image/jpeg` by default, `image/png` or `image/gif` when asked (`Accept` or the `accept`
//!   query parameter), of the first frame or the one asked; several frames asked for make an
//!   animated GIF or a multipart/related of images. The query parameters (viewport, quality,
//!   window) are those of [`RenderParameters`].
//! * Rendered study and series (PS3.18 8.7.4, multiple instances): `multipart/related` with one
//!   rendered image (the first frame) per instance that has pixel data, at most
//!   [`PixelLimits::max_rendered_instances`].
//! * Thumbnail of a study or series: the rendered first frame of a representative instance (the
//!   middle one of those the index lists, or the nearest that has an image), fit in
//!   128 × 128 unless a viewport is given.
//!
//! Reading, decoding and encoding run on the blocking pool, a frame or an instance at a time
//! as the body is sent; everything that can fail before the first byte (frame numbers, the
//! file's structure, the representation, the first frame) is checked before the response
//! starts, so that it gets its status.

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};

use dimsum_dataset::dicom_core::value::PrimitiveValue;
use dimsum_dataset::dicom_core::{DataElement, VR};
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;
use dimsum_dataset::query_model::{QueryModel, QueryService};
use dimsum_dataset::scan::ScanLimits;
use dimsum_pacs::hierarchy::QueryPlan;
use dimsum_pacs::index::IndexedInstance;

use super::wado::index_error;
use super::{SharedState, WebError, accept_of, resource_of};
use crate::multipart::{Accept, ContentType, Encoder, Part, PartHeaders};
use crate::pixel::media::StoredFrames;
use crate::pixel::{
    FrameMedia, PixelError, PixelLimits, PixelSource, RenderedImage, encode_image,
    negotiate_frames, render_frame,
};
use crate::rendered::{RenderParameters, RenderedKind};
use crate::resource::{Entity, Resource};
use crate::wado::ImageType;

/// How many instances a study or series thumbnail tries, from the middle out, before it gives
/// up finding one with an image.
const THUMBNAIL_CANDIDATES: usize = 16;

/// The routes of this module.
pub(super) fn routes() -> Router<SharedState> {
    const INSTANCE: &str = "/studies/{study}/series/{series}/instances/{instance}";
    Router::new()
        .route("/studies/{study}/rendered", get(rendered))
        .route("/studies/{study}/thumbnail", get(rendered))
        .route("/studies/{study}/series/{series}/rendered", get(rendered))
        .route("/studies/{study}/series/{series}/thumbnail", get(rendered))
        .route(&format!("{INSTANCE}/rendered"), get(rendered))
        .route(&format!("{INSTANCE}/thumbnail"), get(rendered))
        .route(&format!("{INSTANCE}/frames/{{frames}}"), get(frames))
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/rendered"),
            get(rendered),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/thumbnail"),
            get(rendered),
        )
}

/// The answer to a [`PixelError`], by [`PixelError::status`].
pub(super) fn pixel_error(error: PixelError) -> WebError {
    let text = error.to_string();
    match error.status() {
        400 => WebError::BadRequest(text),
        404 => WebError::NotFound(text),
        406 => WebError::NotAcceptable(text),
        422 => WebError::Unprocessable(text),
        _ => WebError::Internal(text),
    }
}

/// Runs blocking pixel work on the blocking pool; a panic in a decoder is a 500, the server
/// goes on.
async fn blocking<T, F>(work: F) -> Result<T, WebError>
where
    F: FnOnce() -> Result<T, PixelError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| WebError::Internal(format!("the pixel data task failed: {error}")))?
        .map_err(pixel_error)
}

/// The limits a request works within.
struct Limits {
    scan: ScanLimits,
    pixel: PixelLimits,
}

fn limits(state: &SharedState) -> Arc<Limits> {
    Arc::new(Limits {
        scan: state.config.scan_limits,
        pixel: state.config.pixel_limits,
    })
}

fn open(instance: &IndexedInstance, limits: &Limits) -> Result<PixelSource, PixelError> {
    let location = &instance.location;
    PixelSource::open(
        &location.path,
        location.data_set_offset,
        location.data_set_length,
        &instance.transfer_syntax_uid,
        &limits.scan,
        &limits.pixel,
    )
}

/// The instance an instance-level resource names, checked to belong to its study and series.
async fn instance_of(state: &SharedState, entity: &Entity) -> Result<IndexedInstance, WebError> {
    let (Some(series), Some(sop)) = (entity.series(), entity.instance()) else {
        return Err(WebError::NotFound(
            "frames belong to an instance".to_owned(),
        ));
    };
    let found = state
        .archive
        .index()
        .lookup(sop.to_owned())
        .await
        .map_err(index_error)?;
    match found {
        Some(instance)
            if instance.study_instance_uid == entity.study()
                && instance.series_instance_uid == series =>
        {
            Ok(instance)
        }
        _ => Err(WebError::NotFound(format!(
            "no instance {sop} in series {series} of study {}",
            entity.study()
        ))),
    }
}

/// Every instance of a study or series (the Study Root C-MOVE query a retrieval makes),
/// ordered by series and SOP Instance UID.
async fn instances_below(
    state: &SharedState,
    entity: &Entity,
) -> Result<Vec<IndexedInstance>, WebError> {
    let mut keys = InMemDicomObject::new_empty();
    let level = if entity.series().is_some() {
        "SERIES"
    } else {
        "STUDY"
    };
    keys.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    keys.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(entity.study()),
    ));
    if let Some(series) = entity.series() {
        keys.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(series),
        ));
    }
    let plan = QueryPlan::new(QueryModel::StudyRoot, QueryService::Move, keys)
        .map_err(|failure| WebError::BadRequest(failure.comment))?
        .with_options(state.archive.config().matching);
    let mut instances = state
        .archive
        .index()
        .instances(plan)
        .await
        .map_err(index_error)?;
    if instances.is_empty() {
        return Err(WebError::NotFound(format!(
            "no instances in this {}",
            level.to_ascii_lowercase()
        )));
    }
    instances.sort_by(|a, b| {
        (&a.series_instance_uid, &a.sop_instance_uid)
            .cmp(&(&b.series_instance_uid, &b.sop_instance_uid))
    });
    Ok(instances)
}

/// `multipart/related` with the given related type (and transfer syntax) over `parts`.
fn multipart_response<S>(
    related: ContentType,
    transfer_syntax: Option<&str>,
    parts: S,
) -> Result<Response, WebError>
where
    S: Stream<Item = Part<io::Error>> + Send + 'static,
{
    let encoder = Encoder::new(related);
    let mut content_type = encoder.content_type();
    if let Some(uid) = transfer_syntax {
        content_type = content_type
            .with_parameter("transfer-syntax", uid)
            .map_err(|error| WebError::Internal(error.to_string()))?;
    }
    let content_type = HeaderValue::from_str(&content_type.to_string())
        .map_err(|error| WebError::Internal(error.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(encoder.encode(parts)),
    )
        .into_response())
}

/// A part that ends the body with `error` (no closing delimiter follows).
fn failed_part(headers: PartHeaders, error: WebError) -> Part<io::Error> {
    Part::stream(
        headers,
        stream::once(async move { Err(io::Error::other(error.to_string())) }),
    )
}

/// `GET …/instances/{instance}/frames/{list}` (PS3.18 10.4.1.1.6).
async fn frames(
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let resource = resource_of(&uri)?;
    let Resource::Frames(entity, list) = resource else {
        return Err(WebError::NotFound(format!(
            "{resource} is not a frames resource"
        )));
    };
    let accept = accept_of(&headers, &state, None)?;
    let instance = instance_of(&state, &entity).await?;
    let limits = limits(&state);
    let (media, first, source, list) = blocking(move || {
        let mut source = open(&instance, &limits)?;
        for &frame in &list {
            source.check_frame(frame)?;
        }
        let stored = StoredFrames {
            transfer_syntax: source.transfer_syntax(),
            encapsulated: source.is_encapsulated(),
            decodable: source.is_decodable(),
        };
        let media = negotiate_frames(accept.as_ref(), &stored).map_err(|reason| {
            PixelError::NotImplemented(format!("sending these frames as asked ({reason})"))
        })?;
        let first = read_frame(&mut source, &media, list.first().copied().unwrap_or(1))?;
        Ok((media, first, source, list))
    })
    .await?;
    let part_headers = PartHeaders::new(media.part_content_type());
    let first = Part::bytes(part_headers.clone(), first);
    let rest: Vec<u32> = list.into_iter().skip(1).collect();
    let media = Arc::new(media);
    let related = media.media_type.clone();
    let transfer_syntax = media.transfer_syntax.clone();
    let rest = stream::unfold(
        (Some(source), rest.into_iter()),
        move |(source, mut rest)| {
            let media = Arc::clone(&media);
            let part_headers = part_headers.clone();
            async move {
                let mut source = source?;
                let frame = rest.next()?;
                let read = blocking(move || {
                    let bytes = read_frame(&mut source, &media, frame);
                    Ok((source, bytes))
                })
                .await;
                match read {
                    Ok((source, Ok(bytes))) => {
                        Some((Part::bytes(part_headers, bytes), (Some(source), rest)))
                    }
                    Ok((_, Err(error))) => {
                        Some((failed_part(part_headers, pixel_error(error)), (None, rest)))
                    }
                    Err(error) => Some((failed_part(part_headers, error), (None, rest))),
                }
            }
        },
    );
    multipart_response(
        related,
        Some(&transfer_syntax),
        stream::once(async move { first }).chain(rest),
    )
}

fn read_frame(
    source: &mut PixelSource,
    media: &FrameMedia,
    frame: u32,
) -> Result<Bytes, PixelError> {
    let bytes = if media.decode {
        source.decode_frame(frame)?
    } else {
        source.read_frame(frame)?
    };
    Ok(Bytes::from(bytes))
}

/// How rendered images are sent: their media type, and whether as parts of a multipart/related
/// body (PS3.18 8.7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImageMedia {
    image: ImageType,
    multipart: bool,
}

impl ImageMedia {
    fn content_type(self) -> Result<ContentType, WebError> {
        let sub = match self.image {
            ImageType::Jpeg => "jpeg",
            ImageType::Png => "png",
            ImageType::Gif => "gif",
        };
        ContentType::new("image", sub).map_err(|error| WebError::Internal(error.to_string()))
    }
}

/// The rendered media type for `accept` (PS3.18 8.7.4, Table 8.7.4-1): `image/jpeg` by default
/// and for `image/*` or `*/*`, `image/png` and `image/gif` when named; `several` images (frames
/// or instances) go as an animated GIF when GIF is asked for, else as
/// `multipart/related; type="image/…"`.
fn negotiate_image(accept: Option<&Accept>, several: bool) -> Result<ImageMedia, WebError> {
    let media = |image: ImageType| ImageMedia {
        image,
        multipart: several && image != ImageType::Gif,
    };
    let Some(accept) = accept.filter(|accept| !accept.ranges().is_empty()) else {
        return Ok(media(ImageType::Jpeg));
    };
    let named = |range: &ContentType| {
        [
            ("jpeg", ImageType::Jpeg),
            ("png", ImageType::Png),
            ("gif", ImageType::Gif),
        ]
        .into_iter()
        .find(|(sub, _)| range.is("image", sub))
        .map(|(_, image)| image)
        .or_else(|| (range.is("image", "*") || range.is("*", "*")).then_some(ImageType::Jpeg))
    };
    for range in accept.preferred() {
        let media_type = &range.media_type;
        if media_type.is("multipart", "related") || media_type.is("multipart", "*") {
            let related = match media_type.parameter("type") {
                None => Some(ImageType::Jpeg),
                Some(text) => ContentType::parse(text).ok().and_then(|t| named(&t)),
            };
            if let Some(image) = related {
                return Ok(ImageMedia {
                    image,
                    multipart: true,
                });
            }
            continue;
        }
        if let Some(image) = named(media_type) {
            return Ok(media(image));
        }
    }
    Err(WebError::NotAcceptable(
        "rendered images are sent as image/jpeg, image/png or image/gif (PS3.18 8.7.4), which \
         the request does not accept"
            .to_owned(),
    ))
}

/// `GET …/rendered` and `…/thumbnail` of a study, series, instance or frames (PS3.18
/// 10.4.1.2, 10.4.1.3).
async fn rendered(
    State(state): State<SharedState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let resource = resource_of(&uri)?;
    let (entity, frames, kind) = match resource {
        Resource::Rendered(entity, frames) => (entity, frames, RenderedKind::Rendered),
        Resource::Thumbnail(entity, frames) => (entity, frames, RenderedKind::Thumbnail),
        other => {
            return Err(WebError::NotFound(format!(
                "{other} is not a rendered or thumbnail resource"
            )));
        }
    };
    let parameters = RenderParameters::parse(uri.query().unwrap_or(""), kind)
        .map_err(|error| WebError::BadRequest(error.to_string()))?;
    let accept = accept_of(&headers, &state, parameters.accept.as_deref())?;
    let limits = limits(&state);
    let parameters = Arc::new(parameters);

    if entity.instance().is_some() {
        let instance = instance_of(&state, &entity).await?;
        let frames = match (frames, kind) {
            (None, _) => vec![1],
            // A thumbnail is one image: the first frame asked for.
            (Some(list), RenderedKind::Thumbnail) => list.into_iter().take(1).collect(),
            (Some(list), RenderedKind::Rendered) => list,
        };
        let media = negotiate_image(accept.as_ref(), frames.len() > 1)?;
        let images = blocking({
            let parameters = Arc::clone(&parameters);
            move || {
                let mut source = open(&instance, &limits)?;
                for &frame in &frames {
                    source.check_frame(frame)?;
                }
                frames
                    .iter()
                    .map(|&frame| render_frame(&mut source, frame, &parameters, kind))
                    .collect::<Result<Vec<_>, _>>()
            }
        })
        .await?;
        return images_response(images, media, parameters.quality).await;
    }

    let instances = instances_below(&state, &entity).await?;
    match kind {
        RenderedKind::Thumbnail => {
            let media = negotiate_image(accept.as_ref(), false)?;
            let image = blocking(move || representative(&instances, &limits, &parameters)).await?;
            images_response(vec![image], media, None).await
        }
        RenderedKind::Rendered => {
            if instances.len() > limits.pixel.max_rendered_instances {
                return Err(WebError::Unprocessable(format!(
                    "rendering {} instances in one response is more than the limit of {} \
                     (max_rendered_instances): ask for each series or instance",
                    instances.len(),
                    limits.pixel.max_rendered_instances
                )));
            }
            let media = ImageMedia {
                multipart: true,
                ..negotiate_image(accept.as_ref(), true)?
            };
            if media.image == ImageType::Gif && !media.multipart {
                return Err(WebError::NotAcceptable(
                    "several instances are rendered as multipart/related".to_owned(),
                ));
            }
            rendered_instances(instances, media, limits, parameters).await
        }
    }
}

/// The rendered first frame of a representative instance: the middle one, or the nearest to it
/// that has an image.
fn representative(
    instances: &[IndexedInstance],
    limits: &Limits,
    parameters: &RenderParameters,
) -> Result<RenderedImage, PixelError> {
    let middle = instances.len() / 2;
    let order = (0..instances.len())
        .map(|step| {
            if step % 2 == 0 {
                middle + step / 2
            } else {
                middle.wrapping_sub(step / 2 + 1)
            }
        })
        .filter(|&index| index < instances.len())
        .take(THUMBNAIL_CANDIDATES);
    let mut last = PixelError::NoPixelData;
    for index in order {
        let Some(instance) = instances.get(index) else {
            continue;
        };
        let rendered = open(instance, limits).and_then(|mut source| {
            render_frame(&mut source, 1, parameters, RenderedKind::Thumbnail)
        });
        match rendered {
            Ok(image) => return Ok(image),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Multi-instance rendered (PS3.18 8.7.4): one image part per instance with pixel data, each
/// rendered as the body is sent; instances without pixel data are left out. The first image is
/// rendered before the response starts.
async fn rendered_instances(
    instances: Vec<IndexedInstance>,
    media: ImageMedia,
    limits: Arc<Limits>,
    parameters: Arc<RenderParameters>,
) -> Result<Response, WebError> {
    let quality = parameters.quality;
    // Renders the next instance that has an image; `None` when none is left.
    let next = move |mut remaining: std::vec::IntoIter<IndexedInstance>,
                     limits: Arc<Limits>,
                     parameters: Arc<RenderParameters>| async move {
        blocking(move || {
            for instance in remaining.by_ref() {
                let rendered = open(&instance, &limits).and_then(|mut source| {
                    render_frame(&mut source, 1, &parameters, RenderedKind::Rendered)
                });
                match rendered {
                    Ok(image) => {
                        let bytes = encode_image(&[image], media.image, quality)?;
                        return Ok((Some(Bytes::from(bytes)), remaining));
                    }
                    Err(PixelError::NoPixelData) => continue,
                    Err(error) => return Err(error),
                }
            }
            Ok((None, remaining))
        })
        .await
    };
    let (first, remaining) = next(
        instances.into_iter(),
        Arc::clone(&limits),
        Arc::clone(&parameters),
    )
    .await?;
    let Some(first) = first else {
        return Err(WebError::NotFound(
            "none of these instances has pixel data to render".to_owned(),
        ));
    };
    let related = media.content_type()?;
    let part_headers = PartHeaders::new(related.clone());
    let first = Part::bytes(part_headers.clone(), first);
    let rest = stream::unfold(Some(remaining), move |remaining| {
        let limits = Arc::clone(&limits);
        let parameters = Arc::clone(&parameters);
        let part_headers = part_headers.clone();
        async move {
            match next(remaining?, limits, parameters).await {
                Ok((Some(bytes), remaining)) => {
                    Some((Part::bytes(part_headers, bytes), Some(remaining)))
                }
                Ok((None, _)) => None,
                Err(error) => Some((failed_part(part_headers, error), None)),
            }
        }
    });
    multipart_response(
        related,
        None,
        stream::once(async move { first }).chain(rest),
    )
}

/// Rendered images as one image (an animated GIF for several), or as multipart/related.
async fn images_response(
    images: Vec<RenderedImage>,
    media: ImageMedia,
    quality: Option<u8>,
) -> Result<Response, WebError> {
    let content_type = media.content_type()?;
    if media.multipart {
        let encoded = blocking(move || {
            images
                .iter()
                .map(|image| {
                    encode_image(std::slice::from_ref(image), media.image, quality).map(Bytes::from)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let part_headers = PartHeaders::new(content_type.clone());
        let parts = encoded
            .into_iter()
            .map(move |bytes| Part::bytes(part_headers.clone(), bytes));
        return multipart_response(content_type, None, stream::iter(parts));
    }
    let encoded = blocking(move || encode_image(&images, media.image, quality)).await?;
    let content_type = HeaderValue::from_str(&content_type.to_string())
        .map_err(|error| WebError::Internal(error.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from(encoded),
    )
        .into_response())
}
