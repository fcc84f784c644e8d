//! Writing a multipart/related body as a stream (RFC 2046 §5.1.1, RFC 2387, PS3.18 8.6.1.2).

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};

use super::content_type::{Boundary, ContentType};
use super::headers::PartHeaders;

/// The body of a part to write (RFC 2046 §5.1.1 `body-part`): bytes at hand, or a stream of chunks read as they are sent
/// (a file read piece by piece).
pub enum PartBody<E> {
    /// The whole body.
    Bytes(Bytes),
    /// The body as chunks; an error ends the multipart stream with it (no closing delimiter
    /// follows).
    Stream(BoxStream<'static, Result<Bytes, E>>),
}

/// One body part to write (RFC 2046 §5.1.1): its headers and its body.
pub struct Part<E> {
    /// Content-Type, Content-Location, Content-ID.
    pub headers: PartHeaders,
    /// The body.
    pub body: PartBody<E>,
}

impl<E> Part<E> {
    /// A part whose body is at hand.
    pub fn bytes(headers: PartHeaders, body: impl Into<Bytes>) -> Self {
        Self {
            headers,
            body: PartBody::Bytes(body.into()),
        }
    }

    /// A part whose body is streamed.
    pub fn stream(
        headers: PartHeaders,
        body: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> Self {
        Self {
            headers,
            body: PartBody::Stream(body.boxed()),
        }
    }
}

/// Writes multipart/related bodies (RFC 2387, PS3.18 8.6.1.2) with one boundary.
///
/// The boundary is not checked against the parts' content (that would mean reading every part
/// before sending the first): [`Boundary::random`] gives 128 random bits, as every DICOMweb
/// implementation does, and a collision is not a practical concern.
#[derive(Debug, Clone)]
pub struct Encoder {
    boundary: Boundary,
    related_type: ContentType,
}

impl Encoder {
    /// An encoder with a fresh random boundary whose `type` parameter is `related_type` (the
    /// media type of the root part; PS3.18 8.6.1.2 `application/dicom`, `application/octet-stream`…).
    pub fn new(related_type: ContentType) -> Self {
        Self::with_boundary(related_type, Boundary::random())
    }

    /// An encoder with the given boundary.
    pub fn with_boundary(related_type: ContentType, boundary: Boundary) -> Self {
        Self {
            boundary,
            related_type,
        }
    }

    /// The boundary.
    pub fn boundary(&self) -> &Boundary {
        &self.boundary
    }

    /// The Content-Type of the body: `multipart/related; type="…"; boundary=…`.
    pub fn content_type(&self) -> ContentType {
        ContentType::multipart_related(&self.related_type, &self.boundary)
    }

    /// The body for `parts`, as a stream of chunks: each part's delimiter and headers as one
    /// chunk, then its body as given (never copied), then the closing delimiter followed by
    /// CRLF. Parts are taken from `parts` only as the body is read. No part gives
    /// `--boundary--` alone.
    pub fn encode<S, E>(&self, parts: S) -> impl Stream<Item = Result<Bytes, E>> + use<S, E>
    where
        S: Stream<Item = Part<E>>,
    {
        let boundary = self.boundary.as_str().to_owned();
        let closing = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        let mut first = true;
        let body = parts
            .map(move |part| {
                let mut head = Vec::with_capacity(128 + boundary.len());
                if !first {
                    head.extend_from_slice(b"\r\n");
                }
                first = false;
                head.extend_from_slice(b"--");
                head.extend_from_slice(boundary.as_bytes());
                head.extend_from_slice(b"\r\n");
                part.headers.write_block(&mut head);
                let head = stream::once(async move { Ok(Bytes::from(head)) });
                let body = match part.body {
                    PartBody::Bytes(bytes) => stream::once(async move { Ok(bytes) }).left_stream(),
                    PartBody::Stream(body) => body.right_stream(),
                };
                head.chain(body.filter(|chunk| {
                    let keep = !matches!(chunk, Ok(bytes) if bytes.is_empty());
                    async move { keep }
                }))
            })
            .flatten();
        // With no part, `--boundary--` starts the body: no CRLF before it. A part's first chunk
        // starts with `--`, so only the closing delimiter can come first with a CRLF.
        // After an error nothing more is given: a closing delimiter would make a truncated
        // part look complete.
        body.chain(stream::once(async move { Ok::<Bytes, E>(closing) }))
            .scan((false, false), |(started, failed), chunk| {
                let chunk = match chunk {
                    _ if *failed => return futures_util::future::ready(None),
                    Ok(bytes) if !*started && bytes.starts_with(b"\r\n--") => Ok(bytes.slice(2..)),
                    Err(error) => {
                        *failed = true;
                        Err(error)
                    }
                    other => other,
                };
                *started = true;
                futures_util::future::ready(Some(chunk))
            })
    }
}
