//! Frames decoded by dicom-pixeldata and rendered (PS3.18 8.3.5.1 rendering parameters, 8.7.4
//! rendered media types; PS3.3 C.11.2.1.2 VOI window, C.7.6.3.1.2 MONOCHROME1), and images
//! encoded as JPEG (jpeg-encoder), PNG or GIF (image).

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_pixeldata::image::imageops::{self, FilterType};
use dicom_pixeldata::image::{DynamicImage, GrayImage, ImageBuffer, ImageEncoder, Luma};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutFunction, VoiLutOption, WindowLevel};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{PixelError, PixelSource};
use crate::rendered::{RenderParameters, RenderedKind, Viewport, WindowFunction};
use crate::wado::ImageType;

/// The quality of JPEG images when the request names none (PS3.18 8.3.5.1.2 leaves it to the
/// origin server).
pub const DEFAULT_QUALITY: u8 = 90;
/// The box a thumbnail fits in when the request gives no viewport (PS3.18 10.4.1.3 leaves the
/// size to the origin server).
pub const THUMBNAIL_SIZE: u32 = 128;

/// A rendered frame: 8-bit grey levels or RGB.
pub type RenderedImage = DynamicImage;

/// Whether dicom-pixeldata, as built here, decodes frames in `transfer_syntax`.
pub fn can_decode(transfer_syntax: &str) -> bool {
    TransferSyntaxRegistry
        .get(transfer_syntax.trim_end_matches(['\0', ' ']))
        .is_some_and(|ts| ts.can_decode_all())
}

fn decode_error(frame: u32) -> impl Fn(dicom_pixeldata::Error) -> PixelError {
    move |error| PixelError::Decode {
        frame,
        reason: error.to_string(),
    }
}

/// Checks, before decoding, that the decoder can and that the decoded frame is within the
/// limit.
fn check_decodable(source: &PixelSource, frame: u32) -> Result<(), PixelError> {
    source.check_frame(frame)?;
    if !source.is_decodable() {
        return Err(PixelError::NotDecodable {
            transfer_syntax: source.transfer_syntax().to_owned(),
        });
    }
    let size = source.image().frame_bytes();
    let limit = source.limits().max_frame_bytes;
    if size > limit {
        return Err(PixelError::TooLarge {
            what: format!("frame {frame} decoded"),
            size,
            limit,
            limit_name: "max_frame_bytes",
        });
    }
    Ok(())
}

/// An encapsulated frame decoded to native pixels (little endian; colour interleaved).
pub(super) fn decode_frame(source: &mut PixelSource, frame: u32) -> Result<Vec<u8>, PixelError> {
    check_decodable(source, frame)?;
    let expected = source.image().frame_bytes();
    let object = source.frame_object(frame)?;
    let decoded = object
        .decode_pixel_data_frame(0)
        .map_err(decode_error(frame))?;
    let data = decoded.data();
    if data.len() as u64 != expected {
        return Err(PixelError::Decode {
            frame,
            reason: format!(
                "it decoded to {} bytes, not the {expected} that Rows, Columns, Samples per Pixel and Bits Allocated make",
                data.len()
            ),
        });
    }
    Ok(data.to_vec())
}

/// Renders frame `frame` (1-based) of `source` as PS3.18 8.3.5.1 describes: the modality LUT,
/// then the `window` asked for, else the instance's VOI LUT or window, else the range of the
/// frame's values (min-max); MONOCHROME1 inverted; colour as RGB; then the viewport's source
/// region, flips and scaling to fit (a thumbnail without a viewport fits in
/// [`THUMBNAIL_SIZE`] pixels, never enlarged).
pub fn render_frame(
    source: &mut PixelSource,
    frame: u32,
    parameters: &RenderParameters,
    kind: RenderedKind,
) -> Result<RenderedImage, PixelError> {
    check_decodable(source, frame)?;
    let limits = *source.limits();
    let image = source.image().clone();
    if image.pixels() > limits.max_rendered_pixels {
        return Err(PixelError::TooLarge {
            what: format!("frame {frame} ({} × {} pixels)", image.columns, image.rows),
            size: image.pixels(),
            limit: limits.max_rendered_pixels,
            limit_name: "max_rendered_pixels",
        });
    }
    let rendered = match (image.samples_per_pixel, image.bits_allocated) {
        (_, bits) if bits > 16 => {
            return Err(PixelError::NotImplemented(format!(
                "rendering {bits}-bit pixel data"
            )));
        }
        (1, _) if !image.is_monochrome() => {
            return Err(PixelError::NotImplemented(format!(
                "rendering {} images",
                image.photometric_interpretation
            )));
        }
        (1, 1) => render_bitmap(source, frame)?,
        (1 | 3, _) => {
            let options =
                ConvertOptions::new()
                    .force_8bit()
                    .with_voi_lut(match &parameters.window {
                        Some(window) => VoiLutOption::CustomWithFunction(
                            WindowLevel {
                                center: window.center,
                                width: window.width,
                            },
                            match window.function {
                                WindowFunction::Linear => VoiLutFunction::Linear,
                                WindowFunction::LinearExact => VoiLutFunction::LinearExact,
                                WindowFunction::Sigmoid => VoiLutFunction::Sigmoid,
                            },
                        ),
                        None => VoiLutOption::Default,
                    });
            let object = source.frame_object(frame)?;
            let decoded = object
                .decode_pixel_data_frame(0)
                .map_err(decode_error(frame))?;
            let rendered = decoded
                .to_dynamic_image_with_options(0, &options)
                .map_err(decode_error(frame))?;
            if image.samples_per_pixel == 1 {
                DynamicImage::ImageLuma8(rendered.to_luma8())
            } else {
                DynamicImage::ImageRgb8(rendered.to_rgb8())
            }
        }
        (samples, _) => {
            return Err(PixelError::NotImplemented(format!(
                "rendering images of {samples} samples per pixel"
            )));
        }
    };
    let viewport = match (parameters.viewport, kind) {
        (Some(viewport), _) => Some(viewport),
        (None, RenderedKind::Thumbnail) => {
            let (width, height) = (rendered.width(), rendered.height());
            (width > THUMBNAIL_SIZE || height > THUMBNAIL_SIZE).then_some(Viewport {
                width: Some(THUMBNAIL_SIZE),
                height: Some(THUMBNAIL_SIZE),
                source: None,
            })
        }
        (None, RenderedKind::Rendered) => None,
    };
    match viewport {
        Some(viewport) => apply_viewport(rendered, &viewport, limits.max_rendered_pixels),
        None => Ok(rendered),
    }
}

/// A 1-bit frame (PS3.5 §8.1.1) as black and white, MONOCHROME1 inverted.
fn render_bitmap(source: &mut PixelSource, frame: u32) -> Result<RenderedImage, PixelError> {
    let image = source.image().clone();
    let bits = source.read_frame(frame)?;
    let invert = image.photometric_interpretation == "MONOCHROME1";
    let pixels: Vec<u8> = (0..image.pixels() as usize)
        .map(|i| {
            let set = bits
                .get(i / 8)
                .is_some_and(|byte| (byte >> (i % 8)) & 1 == 1);
            if set != invert { 255 } else { 0 }
        })
        .collect();
    let buffer: GrayImage = ImageBuffer::<Luma<u8>, _>::from_raw(
        u32::from(image.columns),
        u32::from(image.rows),
        pixels,
    )
    .ok_or_else(|| PixelError::Encode("the bitmap does not fill its frame".to_owned()))?;
    Ok(DynamicImage::ImageLuma8(buffer))
}

/// The viewport (PS3.18 8.3.5.1.3): the source region cut out (and flipped where its width or
/// height is negative), then scaled to fit `vw` × `vh` keeping its aspect ratio; a size left
/// out follows from the other.
fn apply_viewport(
    mut image: RenderedImage,
    viewport: &Viewport,
    max_pixels: u64,
) -> Result<RenderedImage, PixelError> {
    if let Some(region) = &viewport.source {
        let (width, height) = (image.width(), image.height());
        if region.x >= width || region.y >= height {
            return Err(PixelError::OutsideImage(format!(
                "the viewport's source region starts at {},{}, outside the {width} × {height} image",
                region.x, region.y
            )));
        }
        let extent = |size: Option<i64>, start: u32, whole: u32| -> u32 {
            let room = whole - start;
            size.map_or(room, |s| {
                u32::try_from(s.unsigned_abs()).map_or(room, |s| s.min(room))
            })
        };
        let crop_width = extent(region.width, region.x, width);
        let crop_height = extent(region.height, region.y, height);
        image = image.crop_imm(region.x, region.y, crop_width, crop_height);
        if region.width.is_some_and(|w| w < 0) {
            image = image.fliph();
        }
        if region.height.is_some_and(|h| h < 0) {
            image = image.flipv();
        }
    }
    let (width, height) = (f64::from(image.width()), f64::from(image.height()));
    let scale = match (viewport.width, viewport.height) {
        (Some(w), Some(h)) => (f64::from(w) / width).min(f64::from(h) / height),
        (Some(w), None) => f64::from(w) / width,
        (None, Some(h)) => f64::from(h) / height,
        (None, None) => 1.0,
    };
    let target_width = (width * scale).round().max(1.0);
    let target_height = (height * scale).round().max(1.0);
    if target_width * target_height > max_pixels as f64
        || target_width.max(target_height) > 65_535.0
    {
        return Err(PixelError::TooLarge {
            what: format!("the viewport's image ({target_width} × {target_height} pixels)"),
            size: (target_width * target_height) as u64,
            limit: max_pixels,
            limit_name: "max_rendered_pixels",
        });
    }
    let (target_width, target_height) = (target_width as u32, target_height as u32);
    if (target_width, target_height) == (image.width(), image.height()) {
        return Ok(image);
    }
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => DynamicImage::ImageRgb8(imageops::resize(
            &rgb,
            target_width,
            target_height,
            FilterType::Triangle,
        )),
        other => DynamicImage::ImageLuma8(imageops::resize(
            &other.to_luma8(),
            target_width,
            target_height,
            FilterType::Triangle,
        )),
    })
}

/// Encodes rendered images in a rendered media type (PS3.18 8.7.4): JPEG at `quality` (1 to
/// 100, [`DEFAULT_QUALITY`] when `None`) with jpeg-encoder, PNG or GIF with image. Several
/// images make an animated GIF; JPEG and PNG take one.
pub fn encode_image(
    images: &[RenderedImage],
    media: ImageType,
    quality: Option<u8>,
) -> Result<Vec<u8>, PixelError> {
    let encode_error = |error: &dyn std::fmt::Display| PixelError::Encode(error.to_string());
    let mut out = Vec::new();
    let single = || match images {
        [image] => Ok(image),
        _ => Err(PixelError::NotImplemented(format!(
            "{} images of {} frames",
            match media {
                ImageType::Jpeg => "JPEG",
                ImageType::Png => "PNG",
                ImageType::Gif => "GIF",
            },
            images.len()
        ))),
    };
    match media {
        ImageType::Jpeg => {
            let image = single()?;
            let (width, height) = dimensions_u16(image)?;
            let quality = quality.unwrap_or(DEFAULT_QUALITY).clamp(1, 100);
            let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            match image {
                DynamicImage::ImageLuma8(grey) => {
                    encoder.encode(grey.as_raw(), width, height, jpeg_encoder::ColorType::Luma)
                }
                other => encoder.encode(
                    other.to_rgb8().as_raw(),
                    width,
                    height,
                    jpeg_encoder::ColorType::Rgb,
                ),
            }
            .map_err(|error| encode_error(&error))?;
        }
        ImageType::Png => {
            let image = single()?;
            let encoder = dicom_pixeldata::image::codecs::png::PngEncoder::new(&mut out);
            match image {
                DynamicImage::ImageLuma8(grey) => encoder.write_image(
                    grey.as_raw(),
                    grey.width(),
                    grey.height(),
                    dicom_pixeldata::image::ExtendedColorType::L8,
                ),
                other => {
                    let rgb = other.to_rgb8();
                    encoder.write_image(
                        rgb.as_raw(),
                        rgb.width(),
                        rgb.height(),
                        dicom_pixeldata::image::ExtendedColorType::Rgb8,
                    )
                }
            }
            .map_err(|error| encode_error(&error))?;
        }
        ImageType::Gif => {
            let mut encoder = dicom_pixeldata::image::codecs::gif::GifEncoder::new(&mut out);
            for image in images {
                encoder
                    .encode_frame(dicom_pixeldata::image::Frame::new(image.to_rgba8()))
                    .map_err(|error| encode_error(&error))?;
            }
        }
    }
    Ok(out)
}

fn dimensions_u16(image: &RenderedImage) -> Result<(u16, u16), PixelError> {
    match (u16::try_from(image.width()), u16::try_from(image.height())) {
        (Ok(width), Ok(height)) => Ok((width, height)),
        _ => Err(PixelError::Encode(format!(
            "{} × {} pixels is more than JPEG holds",
            image.width(),
            image.height()
        ))),
    }
}
