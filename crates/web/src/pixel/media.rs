//! Which media type and transfer syntax the frames of an instance are sent in (PS3.18 8.7.3.4
//! bulk data and pixel data media types, 8.7.3.5.2 transfer syntaxes of pixel data, 8.7.5
//! acceptable media types), chosen from an `Accept` value without HTTP.

use crate::multipart::{Accept, ContentType, MediaRange};

use super::source::EXPLICIT_VR_LITTLE_ENDIAN;

/// The compressed pixel data media types and the transfer syntaxes each may carry, the default
/// first (PS3.18 8.7.3.5.2, the table of pixel data media types). `image/x-dicom-rle` and
/// `image/x-jls` are the names of older editions, still sent by some clients.
const PIXEL_MEDIA_TYPES: &[(&str, &str, &[&str])] = &[
    (
        "image",
        "jpeg",
        &[
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.51",
            "1.2.840.10008.1.2.4.57",
        ],
    ),
    (
        "image",
        "jls",
        &["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"],
    ),
    (
        "image",
        "x-jls",
        &["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"],
    ),
    (
        "image",
        "jp2",
        &["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"],
    ),
    (
        "image",
        "jpx",
        &["1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"],
    ),
    (
        "image",
        "jphc",
        &[
            "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.4.202",
            "1.2.840.10008.1.2.4.203",
        ],
    ),
    (
        "image",
        "jxl",
        &[
            "1.2.840.10008.1.2.4.110",
            "1.2.840.10008.1.2.4.111",
            "1.2.840.10008.1.2.4.112",
        ],
    ),
    ("image", "dicom-rle", &["1.2.840.10008.1.2.5"]),
    ("image", "x-dicom-rle", &["1.2.840.10008.1.2.5"]),
    (
        "video",
        "mpeg",
        &["1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"],
    ),
    (
        "video",
        "mp4",
        &[
            "1.2.840.10008.1.2.4.102",
            "1.2.840.10008.1.2.4.103",
            "1.2.840.10008.1.2.4.104",
            "1.2.840.10008.1.2.4.105",
            "1.2.840.10008.1.2.4.106",
        ],
    ),
    (
        "video",
        "H265",
        &["1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"],
    ),
];

/// What the stored frames of an instance are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFrames<'a> {
    /// The stored transfer syntax.
    pub transfer_syntax: &'a str,
    /// Whether the Pixel Data is encapsulated (PS3.5 §A.4).
    pub encapsulated: bool,
    /// Whether this server can decode them to native pixels.
    pub decodable: bool,
}

/// How each frame of a frames response is sent (PS3.18 8.7.3.4, 8.7.3.5): the part's media type
/// and transfer syntax, and whether stored compressed frames are decoded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMedia {
    /// `application/octet-stream`, or a compressed pixel data media type (`image/jpeg`…).
    pub media_type: ContentType,
    /// The transfer syntax of the frames: Explicit VR Little Endian for native pixels.
    pub transfer_syntax: String,
    /// Whether the frames are decoded from their stored compressed form.
    pub decode: bool,
}

impl FrameMedia {
    /// The Content-Type of each part: the media type with its `transfer-syntax` parameter.
    pub fn part_content_type(&self) -> ContentType {
        self.media_type
            .clone()
            .with_parameter("transfer-syntax", &self.transfer_syntax)
            .unwrap_or_else(|_| self.media_type.clone())
    }

    fn octet_stream(transfer_syntax: &str, decode: bool) -> Option<FrameMedia> {
        Some(FrameMedia {
            media_type: ContentType::new("application", "octet-stream").ok()?,
            transfer_syntax: transfer_syntax.to_owned(),
            decode,
        })
    }
}

/// The compressed pixel data media type of a transfer syntax (`image/jpeg` for the JPEG
/// family…), if it has one.
pub fn media_type_of(transfer_syntax: &str) -> Option<ContentType> {
    PIXEL_MEDIA_TYPES
        .iter()
        .find(|(_, _, syntaxes)| syntaxes.contains(&transfer_syntax))
        .and_then(|(main, sub, _)| ContentType::new(main, sub).ok())
}

/// The representation of the frames for `accept` (the `Accept` ranges, most preferred first;
/// `None` when the request has none), or why none can be given (406, PS3.18 8.7.5):
///
/// * `multipart/related; type="application/octet-stream"` without a transfer syntax, or with
///   Explicit VR Little Endian: native frames, compressed ones decoded when they can be;
/// * `transfer-syntax=*`: the frames as stored (native ones as Explicit VR Little Endian);
/// * a named transfer syntax: the stored one only (no transcoding between compressed syntaxes);
/// * `type="image/jpeg"`, `image/jls`, `image/jp2`… : stored frames whose transfer syntax that
///   media type carries (any of them when none is named);
/// * `*/*`: native frames, or the stored ones when they cannot be decoded.
///
/// No `Accept` is the default representation: native frames (PS3.18 8.7.3.5.2).
pub fn negotiate_frames(
    accept: Option<&Accept>,
    stored: &StoredFrames<'_>,
) -> Result<FrameMedia, String> {
    let native = || FrameMedia::octet_stream(EXPLICIT_VR_LITTLE_ENDIAN, stored.encapsulated);
    let as_stored = || {
        if stored.encapsulated {
            FrameMedia::octet_stream(stored.transfer_syntax, false)
        } else {
            FrameMedia::octet_stream(EXPLICIT_VR_LITTLE_ENDIAN, false)
        }
    };
    let uncompressed = || {
        if !stored.encapsulated || stored.decodable {
            native()
        } else {
            None
        }
    };
    let Some(accept) = accept.filter(|accept| !accept.ranges().is_empty()) else {
        return uncompressed().ok_or_else(|| cannot_decode(stored));
    };
    for range in accept.preferred() {
        if let Some(media) = choose(range, stored, &uncompressed, &as_stored) {
            return Ok(media);
        }
    }
    let mut reason = format!(
        "the frames are stored in transfer syntax {}; ask for multipart/related; \
         type=\"application/octet-stream\"; transfer-syntax=*",
        stored.transfer_syntax
    );
    if stored.encapsulated {
        if let Some(media) = media_type_of(stored.transfer_syntax) {
            reason.push_str(&format!(" or type=\"{}\"", media.essence()));
        }
        if !stored.decodable {
            reason.push_str(" (this server cannot decode them to native pixels)");
        }
    } else {
        reason.push_str(" (they are native: compressing them is not implemented)");
    }
    Err(reason)
}

fn cannot_decode(stored: &StoredFrames<'_>) -> String {
    format!(
        "the frames are stored in transfer syntax {}, which this server cannot decode to native \
         pixels; ask for transfer-syntax=* to receive them as stored",
        stored.transfer_syntax
    )
}

fn choose(
    range: &MediaRange,
    stored: &StoredFrames<'_>,
    uncompressed: &dyn Fn() -> Option<FrameMedia>,
    as_stored: &dyn Fn() -> Option<FrameMedia>,
) -> Option<FrameMedia> {
    let media = &range.media_type;
    if media.is("*", "*") {
        return uncompressed().or_else(as_stored);
    }
    if !(media.is("multipart", "related") || media.is("multipart", "*")) {
        return None;
    }
    let syntax = media.parameter("transfer-syntax");
    let related = match media.parameter("type") {
        None => ContentType::new("application", "octet-stream").ok()?,
        Some(text) => ContentType::parse(text).ok()?,
    };
    if related.is("application", "octet-stream") {
        return match syntax {
            None => uncompressed(),
            Some("*") => as_stored(),
            Some(EXPLICIT_VR_LITTLE_ENDIAN) => uncompressed(),
            Some(uid) if stored.encapsulated && uid == stored.transfer_syntax => as_stored(),
            Some(_) => None,
        };
    }
    if related.is("*", "*") {
        return match syntax {
            None | Some("*") => uncompressed().or_else(as_stored),
            Some(uid) if uid == EXPLICIT_VR_LITTLE_ENDIAN => uncompressed(),
            Some(uid) if stored.encapsulated && uid == stored.transfer_syntax => as_stored(),
            Some(_) => None,
        };
    }
    if !stored.encapsulated {
        return None;
    }
    let stored_type = media_type_of(stored.transfer_syntax)?;
    let carries = PIXEL_MEDIA_TYPES.iter().any(|(main, sub, syntaxes)| {
        (related.is(main, sub) || (related.sub_type() == "*" && related.main_type() == *main))
            && syntaxes.contains(&stored.transfer_syntax)
    });
    let syntax_fits = match syntax {
        None | Some("*") => true,
        Some(uid) => uid == stored.transfer_syntax,
    };
    (carries && syntax_fits).then(|| FrameMedia {
        media_type: if related.sub_type() == "*" {
            stored_type
        } else {
            ContentType::new(related.main_type(), related.sub_type()).unwrap_or(stored_type)
        },
        transfer_syntax: stored.transfer_syntax.to_owned(),
        decode: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
    const RLE: &str = "1.2.840.10008.1.2.5";

    fn jpeg(decodable: bool) -> StoredFrames<'static> {
        StoredFrames {
            transfer_syntax: JPEG_BASELINE,
            encapsulated: true,
            decodable,
        }
    }

    const NATIVE: StoredFrames<'static> = StoredFrames {
        transfer_syntax: "1.2.840.10008.1.2",
        encapsulated: false,
        decodable: true,
    };

    fn negotiate(accept: &str, stored: &StoredFrames<'_>) -> Result<FrameMedia, String> {
        let accept = Accept::parse(accept).expect("accept");
        negotiate_frames(Some(&accept), stored)
    }

    fn part(accept: &str, stored: &StoredFrames<'_>) -> String {
        negotiate(accept, stored)
            .expect("acceptable")
            .part_content_type()
            .to_string()
    }

    #[test]
    fn ohif_quoted_and_unquoted_get_the_frames_as_stored() {
        for accept in [
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
        ] {
            let media = negotiate(accept, &jpeg(false)).expect("stored");
            assert!(!media.decode);
            assert_eq!(media.transfer_syntax, JPEG_BASELINE);
            let media = negotiate(accept, &NATIVE).expect("native");
            assert_eq!(media.transfer_syntax, EXPLICIT_VR_LITTLE_ENDIAN);
            assert!(!media.decode);
        }
    }

    #[test]
    fn without_a_transfer_syntax_frames_are_native() {
        let media = negotiate_frames(None, &jpeg(true)).expect("decoded");
        assert!(media.decode);
        assert_eq!(media.transfer_syntax, EXPLICIT_VR_LITTLE_ENDIAN);
        assert!(negotiate_frames(None, &jpeg(false)).is_err());
        let media = negotiate(
            "multipart/related; type=\"application/octet-stream\"",
            &jpeg(true),
        )
        .expect("decoded");
        assert!(media.decode);
        assert!(
            negotiate(
                "multipart/related; type=\"application/octet-stream\"",
                &jpeg(false)
            )
            .is_err()
        );
    }

    #[test]
    fn compressed_media_types_carry_their_own_syntaxes() {
        assert_eq!(
            part("multipart/related; type=\"image/jpeg\"", &jpeg(false)),
            format!("image/jpeg; transfer-syntax={JPEG_BASELINE}")
        );
        assert_eq!(
            part(
                &format!("multipart/related; type=\"image/jpeg\"; transfer-syntax={JPEG_BASELINE}"),
                &jpeg(false)
            ),
            format!("image/jpeg; transfer-syntax={JPEG_BASELINE}")
        );
        assert!(negotiate("multipart/related; type=\"image/jls\"", &jpeg(true)).is_err());
        assert!(negotiate("multipart/related; type=\"image/jpeg\"", &NATIVE).is_err());
        let rle = StoredFrames {
            transfer_syntax: RLE,
            encapsulated: true,
            decodable: true,
        };
        assert_eq!(
            part("multipart/related; type=\"image/dicom-rle\"", &rle),
            format!("image/dicom-rle; transfer-syntax={RLE}")
        );
        assert!(
            negotiate(
                "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.70",
                &jpeg(true)
            )
            .is_err()
        );
    }

    #[test]
    fn preference_order_and_wildcards() {
        // The preferred range cannot be served (no decoder): the next one is.
        let media = negotiate(
            "multipart/related; type=\"application/octet-stream\", multipart/related; type=\"image/jpeg\"; q=0.5",
            &jpeg(false),
        )
        .expect("second range");
        assert!(media.media_type.is("image", "jpeg"));
        let media = negotiate("*/*", &jpeg(false)).expect("as stored");
        assert_eq!(media.transfer_syntax, JPEG_BASELINE);
        let media = negotiate("*/*", &jpeg(true)).expect("decoded");
        assert!(media.decode);
        assert!(negotiate("application/dicom", &NATIVE).is_err());
        assert!(
            negotiate(
                "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.50",
                &NATIVE
            )
            .is_err()
        );
    }
}
