//! Reading a multipart/related body part by part as it arrives (RFC 2046 §5.1.1, RFC 2387,
//! PS3.18 8.6.1.2).
//!
//! [`Decoder`] is the sans-IO core: it is given chunks ([`Decoder::push`], split anywhere, even
//! inside a delimiter or a header block) and gives events ([`Decoder::poll_event`]): a part's
//! headers, pieces of its body as slices of the chunks given, the end. [`MultipartReader`]
//! drives it from a `Stream` of chunks (an HTTP body).
//!
//! What it holds at any time: the last chunk given, at most `delimiter length - 1` bytes kept
//! back from the previous one (they may start a delimiter), and at most one header block
//! ([`DecodeLimits::max_header_bytes`]). Body bytes are handed out as soon as they cannot be
//! part of a delimiter.
//!
//! Accepted as peers write them: a body that starts with the first delimiter or with a CRLF or
//! a preamble before it; transport padding (spaces, tabs) after a delimiter; an epilogue, or
//! nothing at all, after the closing delimiter (whatever follows it is not read); a part
//! without a Content-Type of its own (it gets the multipart's `type` parameter, or RFC 2045's
//! `text/plain`). Refused with an error that names it: a delimiter followed by anything else,
//! folded header lines, header lines without a colon, duplicated Content-Type,
//! Content-Location or Content-ID, a body that ends before the closing delimiter, and every
//! limit of [`DecodeLimits`].
//!
//! Hand-written rather than built on multer: multer gathers a part's header block and a
//! preamble without bound (only its whole-stream limit applies), has no limit on the number of
//! parts and a fixed one of 32 headers, and its fields share the reader behind a lock.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{Stream, StreamExt};
use memchr::memmem;

use super::content_type::{Boundary, ContentType, ContentTypeError, HeaderLimits};
use super::headers::PartHeaders;

/// The limits of a multipart body being decoded (PS3.18 8.6.1.2). Every one is checked before
/// the bytes that would exceed it are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// All bytes given, preamble and parts together (default 4 GiB).
    pub max_body_bytes: u64,
    /// The body of one part (default 2 GiB); [`MultipartReader::read_body`] gathers up to this
    /// much in memory, so lower it where parts are read whole.
    pub max_part_bytes: u64,
    /// Parts in one body (default 5,000).
    pub max_parts: usize,
    /// One part's header block, transport padding and line ends included (default 16 KiB).
    pub max_header_bytes: usize,
    /// Header lines in one part (default 32).
    pub max_headers: usize,
    /// The limits of a part's Content-Type value.
    pub content_type: HeaderLimits,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 30,
            max_part_bytes: 2 << 30,
            max_parts: 5_000,
            max_header_bytes: 16 << 10,
            max_headers: 32,
            content_type: HeaderLimits::default(),
        }
    }
}

/// Why a multipart body was refused (RFC 2046 §5.1.1, PS3.18 8.6.1.2). `part` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More than [`DecodeLimits::max_body_bytes`].
    #[error("multipart body larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// A part's body larger than [`DecodeLimits::max_part_bytes`].
    #[error("part {part} is larger than the limit of {limit} bytes")]
    PartTooLarge { part: usize, limit: u64 },
    /// More than [`DecodeLimits::max_parts`] parts.
    #[error("more than {limit} parts")]
    TooManyParts { limit: usize },
    /// A header block larger than [`DecodeLimits::max_header_bytes`].
    #[error("header block of part {part} larger than the limit of {limit} bytes")]
    HeaderBlockTooLarge { part: usize, limit: usize },
    /// More than [`DecodeLimits::max_headers`] header lines.
    #[error("part {part} has more than {limit} headers")]
    TooManyHeaders { part: usize, limit: usize },
    /// A header line without `:`.
    #[error("header line {line} of part {part} has no colon")]
    HeaderWithoutColon { part: usize, line: usize },
    /// A header name that is not a token.
    #[error("header line {line} of part {part} has an invalid name")]
    InvalidHeaderName { part: usize, line: usize },
    /// A header line starting with white space (obsolete line folding, RFC 9112 §5.2).
    #[error("header line {line} of part {part} is folded")]
    FoldedHeader { part: usize, line: usize },
    /// A header value with a control character (a bare CR or LF included) or non-ASCII.
    #[error("header line {line} of part {part} has an invalid value")]
    InvalidHeaderValue { part: usize, line: usize },
    /// Content-Type, Content-Location or Content-ID twice.
    #[error("part {part} has header {name} twice")]
    DuplicateHeader { part: usize, name: &'static str },
    /// A part's Content-Type that does not parse.
    #[error("Content-Type of part {part}: {source}")]
    ContentType {
        part: usize,
        #[source]
        source: ContentTypeError,
    },
    /// A delimiter followed by something other than `--`, transport padding or CRLF.
    #[error("delimiter before part {part} is not followed by CRLF or \"--\"")]
    MalformedDelimiter { part: usize },
    /// The body ended before any delimiter.
    #[error("no delimiter in the multipart body")]
    MissingFirstDelimiter,
    /// The body ended inside a part's header block.
    #[error("the body ended inside the headers of part {part}")]
    TruncatedHeaders { part: usize },
    /// The body ended before the closing delimiter.
    #[error("the body ended in part {part}, before the closing delimiter")]
    MissingClosingDelimiter { part: usize },
}

/// What the decoder found (RFC 2046 §5.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new part starts: its headers.
    Part(PartHeaders),
    /// A piece of the current part's body (never empty).
    Body(Bytes),
    /// The closing delimiter: nothing follows.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Looking for the first delimiter (discarding a preamble).
    Preamble,
    /// Just after a delimiter: `--`, or transport padding and CRLF.
    AfterDelimiter,
    /// Reading a header block; `header_buf` holds what straddled chunks.
    Headers,
    /// Reading a part's body.
    Body,
    /// After the closing delimiter.
    End,
    /// After an error, which is given again.
    Failed(DecodeError),
}

/// The sans-IO multipart/related decoder (RFC 2046 §5.1.1, RFC 2387, PS3.18 8.6.1.2).
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: DecodeLimits,
    default_type: ContentType,
    /// `CRLF "--" boundary`.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    /// Input not yet looked at (a CRLF is put before the first chunk so that the first
    /// delimiter is found the same way as the others).
    pending: Bytes,
    state: State,
    /// A header block that straddles chunks, from the CRLF that ends the delimiter line.
    header_buf: BytesMut,
    /// Transport padding after the current delimiter.
    padding: usize,
    total: u64,
    parts: usize,
    part_bytes: u64,
    input_ended: bool,
}

const CRLF_CRLF: &[u8] = b"\r\n\r\n";

impl Decoder {
    /// A decoder for parts delimited by `boundary`. Parts without a Content-Type get
    /// `text/plain` (RFC 2045 §5.2) unless [`Decoder::with_default_type`] says otherwise.
    pub fn new(boundary: &Boundary, limits: DecodeLimits) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_str().as_bytes());
        let finder = memmem::Finder::new(&delimiter).into_owned();
        Self {
            limits,
            default_type: ContentType::text_plain(),
            delimiter,
            finder,
            pending: Bytes::from_static(b"\r\n"),
            state: State::Preamble,
            header_buf: BytesMut::new(),
            padding: 0,
            total: 0,
            parts: 0,
            part_bytes: 0,
            input_ended: false,
        }
    }

    /// A decoder for the body whose Content-Type is `content_type`: its boundary, and its
    /// `type` parameter (RFC 2387 §3.1) as the type of parts without a Content-Type.
    pub fn for_content_type(
        content_type: &ContentType,
        limits: DecodeLimits,
    ) -> Result<Self, ContentTypeError> {
        let boundary = content_type.boundary()?;
        let decoder = Self::new(&boundary, limits);
        Ok(match content_type.related_type()? {
            Some(related) => decoder.with_default_type(related),
            None => decoder,
        })
    }

    /// Parts without a Content-Type get `content_type`.
    pub fn with_default_type(mut self, content_type: ContentType) -> Self {
        self.default_type = content_type;
        self
    }

    /// Gives the next chunk of the body. Refused when it takes the body past
    /// [`DecodeLimits::max_body_bytes`]; ignored after the closing delimiter.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), DecodeError> {
        match &self.state {
            State::Failed(error) => return Err(error.clone()),
            State::End => return Ok(()),
            _ => {}
        }
        self.total = self.total.saturating_add(chunk.len() as u64);
        if self.total > self.limits.max_body_bytes {
            return Err(self.fail(DecodeError::BodyTooLarge {
                limit: self.limits.max_body_bytes,
            }));
        }
        if self.pending.is_empty() {
            self.pending = chunk;
        } else if !chunk.is_empty() {
            let mut joined = BytesMut::with_capacity(self.pending.len() + chunk.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&chunk);
            self.pending = joined.freeze();
        }
        Ok(())
    }

    /// Says that the body has ended: what is missing becomes an error.
    pub fn finish(&mut self) {
        self.input_ended = true;
    }

    /// Whether the closing delimiter was found.
    pub fn is_finished(&self) -> bool {
        self.state == State::End
    }

    /// Bytes held (kept back or gathered header block), for tests and metrics.
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.header_buf.len()
    }

    /// The next event, or `None` when more input is needed (or after [`Event::End`]). Once
    /// [`Decoder::finish`] was called, `None` only comes after the end.
    pub fn poll_event(&mut self) -> Result<Option<Event>, DecodeError> {
        let result = self.step();
        if let Err(error) = &result {
            self.state = State::Failed(error.clone());
        }
        result
    }

    fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.state = State::Failed(error.clone());
        error
    }

    fn step(&mut self) -> Result<Option<Event>, DecodeError> {
        loop {
            match &self.state {
                State::Failed(error) => return Err(error.clone()),
                State::End => return Ok(None),
                State::Preamble => {
                    if let Some(at) = self.finder.find(&self.pending) {
                        self.pending.advance(at + self.delimiter.len());
                        self.enter_after_delimiter();
                        continue;
                    }
                    let keep = self.keep_from();
                    self.pending.advance(keep);
                    if self.input_ended {
                        return Err(DecodeError::MissingFirstDelimiter);
                    }
                    return Ok(None);
                }
                State::Body => {
                    let (body_end, found) = match self.finder.find(&self.pending) {
                        Some(at) => (at, true),
                        None => (self.keep_from(), false),
                    };
                    if body_end > 0 {
                        let body = self.pending.split_to(body_end);
                        self.part_bytes += body.len() as u64;
                        if self.part_bytes > self.limits.max_part_bytes {
                            return Err(DecodeError::PartTooLarge {
                                part: self.parts,
                                limit: self.limits.max_part_bytes,
                            });
                        }
                        return Ok(Some(Event::Body(body)));
                    }
                    if found {
                        self.pending.advance(self.delimiter.len());
                        self.enter_after_delimiter();
                        continue;
                    }
                    if self.input_ended {
                        return Err(DecodeError::MissingClosingDelimiter { part: self.parts });
                    }
                    return Ok(None);
                }
                State::AfterDelimiter => {
                    let padding = self
                        .pending
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    self.padding += padding;
                    self.pending.advance(padding);
                    if self.padding > self.limits.max_header_bytes {
                        return Err(DecodeError::HeaderBlockTooLarge {
                            part: self.parts + 1,
                            limit: self.limits.max_header_bytes,
                        });
                    }
                    match (self.pending.first(), self.pending.get(1)) {
                        (Some(b'-'), Some(b'-')) if self.padding == 0 => {
                            self.pending = Bytes::new();
                            self.state = State::End;
                            return Ok(Some(Event::End));
                        }
                        (Some(b'\r'), Some(b'\n')) => {
                            if self.parts == self.limits.max_parts {
                                return Err(DecodeError::TooManyParts {
                                    limit: self.limits.max_parts,
                                });
                            }
                            self.parts += 1;
                            self.part_bytes = 0;
                            self.header_buf.clear();
                            self.state = State::Headers;
                            continue;
                        }
                        (None, _) | (Some(b'-' | b'\r'), None) => {
                            if self.input_ended {
                                return Err(DecodeError::MissingClosingDelimiter {
                                    part: self.parts,
                                });
                            }
                            return Ok(None);
                        }
                        _ => {
                            return Err(DecodeError::MalformedDelimiter {
                                part: self.parts + 1,
                            });
                        }
                    }
                }
                State::Headers => return self.headers(),
            }
        }
    }

    fn enter_after_delimiter(&mut self) {
        self.padding = 0;
        self.state = State::AfterDelimiter;
    }

    /// Where the bytes that may start a delimiter begin at the end of `pending` (its length
    /// when none may).
    fn keep_from(&self) -> usize {
        let len = self.pending.len();
        let start = len.saturating_sub(self.delimiter.len() - 1);
        memchr::memchr_iter(b'\r', &self.pending[start..])
            .map(|i| start + i)
            .find(|&i| self.delimiter.starts_with(&self.pending[i..]))
            .unwrap_or(len)
    }

    /// The header block: from the CRLF that ends the delimiter line to the empty line.
    fn headers(&mut self) -> Result<Option<Event>, DecodeError> {
        let part = self.parts;
        let limit = self.limits.max_header_bytes;
        // The CRLF that ends the delimiter line, the header lines and the empty line, after
        // the transport padding.
        let cap = limit.saturating_sub(self.padding);
        if self.header_buf.is_empty()
            && let Some(at) = memmem::find(&self.pending[..self.pending.len().min(cap)], CRLF_CRLF)
        {
            self.check_block_size(at + 4)?;
            let block = self.pending.slice(2.min(at)..at);
            let headers = self.parse_block(&block)?;
            self.pending.advance(at + 4);
            self.state = State::Body;
            return Ok(Some(Event::Part(headers)));
        }
        let searched = self.header_buf.len().saturating_sub(3);
        let take = self.pending.len().min(cap - self.header_buf.len().min(cap));
        self.header_buf.extend_from_slice(&self.pending[..take]);
        self.pending.advance(take);
        if let Some(at) =
            memmem::find(&self.header_buf[searched..], CRLF_CRLF).map(|i| searched + i)
        {
            self.check_block_size(at + 4)?;
            let rest = self.header_buf.split_off(at + 4);
            let block = self.header_buf.split_to(at).freeze().slice(2.min(at)..);
            self.header_buf.clear();
            let headers = self.parse_block(&block)?;
            if !rest.is_empty() {
                let mut joined = rest;
                joined.extend_from_slice(&self.pending);
                self.pending = joined.freeze();
            }
            self.state = State::Body;
            return Ok(Some(Event::Part(headers)));
        }
        if self.header_buf.len() >= cap {
            return Err(DecodeError::HeaderBlockTooLarge { part, limit });
        }
        if self.input_ended {
            return Err(DecodeError::TruncatedHeaders { part });
        }
        Ok(None)
    }

    /// Checks the size of a header block of `bytes` (from the CRLF that ends the delimiter line
    /// to the end of the empty line) and of the padding before it.
    fn check_block_size(&self, bytes: usize) -> Result<(), DecodeError> {
        if bytes + self.padding > self.limits.max_header_bytes {
            return Err(DecodeError::HeaderBlockTooLarge {
                part: self.parts,
                limit: self.limits.max_header_bytes,
            });
        }
        Ok(())
    }

    fn parse_block(&self, block: &[u8]) -> Result<PartHeaders, DecodeError> {
        let part = self.parts;
        let mut content_type = None;
        let mut content_location = None;
        let mut content_id = None;
        let mut others = Vec::new();
        if block.is_empty() {
            return Ok(PartHeaders::new(self.default_type.clone()));
        }
        for (index, line) in memmem::find_iter(block, b"\r\n")
            .chain(std::iter::once(block.len()))
            .scan(0, |start, end| {
                let line = &block[*start..end];
                *start = end + 2;
                Some(line)
            })
            .enumerate()
        {
            let line_number = index + 1;
            if index == self.limits.max_headers {
                return Err(DecodeError::TooManyHeaders {
                    part,
                    limit: self.limits.max_headers,
                });
            }
            if matches!(line.first(), Some(b' ' | b'\t')) {
                return Err(DecodeError::FoldedHeader {
                    part,
                    line: line_number,
                });
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                return Err(DecodeError::HeaderWithoutColon {
                    part,
                    line: line_number,
                });
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.is_empty()
                || !name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(DecodeError::InvalidHeaderName {
                    part,
                    line: line_number,
                });
            }
            if !value
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return Err(DecodeError::InvalidHeaderValue {
                    part,
                    line: line_number,
                });
            }
            // Only ASCII is left: both convert.
            let name = String::from_utf8_lossy(name);
            let value = String::from_utf8_lossy(value)
                .trim_matches([' ', '\t'])
                .to_owned();
            let duplicate = |name| DecodeError::DuplicateHeader { part, name };
            if name.eq_ignore_ascii_case("content-type") {
                let parsed = ContentType::parse_with(&value, &self.limits.content_type)
                    .map_err(|source| DecodeError::ContentType { part, source })?;
                if content_type.replace(parsed).is_some() {
                    return Err(duplicate("Content-Type"));
                }
            } else if name.eq_ignore_ascii_case("content-location") {
                if content_location.replace(value).is_some() {
                    return Err(duplicate("Content-Location"));
                }
            } else if name.eq_ignore_ascii_case("content-id") {
                if content_id.replace(value).is_some() {
                    return Err(duplicate("Content-ID"));
                }
            } else {
                others.push((name.into_owned(), value));
            }
        }
        Ok(PartHeaders::from_parts(
            content_type.unwrap_or_else(|| self.default_type.clone()),
            content_location,
            content_id,
            others,
        ))
    }
}

/// A failure while reading a multipart body (PS3.18 8.6.1.2) from a stream: the body is
/// malformed or over a limit, or the stream itself failed.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError<E> {
    /// The body (PS3.18 8.6.1.2).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream that carries it.
    #[error("reading the multipart body: {0}")]
    Input(#[source] E),
}

/// Reads a multipart/related body (RFC 2387, PS3.18 8.6.1.2) from a stream of chunks, part by
/// part: [`next_part`](Self::next_part) gives a part's headers, then its body is read with
/// [`next_chunk`](Self::next_chunk), [`body`](Self::body) or [`read_body`](Self::read_body),
/// or skipped by asking for the next part. Nothing is read from the stream after the closing
/// delimiter.
pub struct MultipartReader<S> {
    input: S,
    decoder: Decoder,
    peeked: Option<Event>,
    ended: bool,
}

impl<S, E> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    /// A reader of `input` with `decoder` (from [`Decoder::new`] or
    /// [`Decoder::for_content_type`]).
    pub fn new(input: S, decoder: Decoder) -> Self {
        Self {
            input,
            decoder,
            peeked: None,
            ended: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecodeLimits {
        &self.decoder.limits
    }

    async fn next_event(&mut self) -> Result<Event, MultipartError<E>> {
        if let Some(event) = self.peeked.take() {
            return Ok(event);
        }
        if self.ended {
            return Ok(Event::End);
        }
        loop {
            if let Some(event) = self.decoder.poll_event()? {
                if event == Event::End {
                    self.ended = true;
                }
                return Ok(event);
            }
            if self.decoder.input_ended {
                // The decoder gives an error or an event once the input has ended.
                return Err(DecodeError::MissingClosingDelimiter {
                    part: self.decoder.parts,
                }
                .into());
            }
            match self.input.next().await {
                Some(Ok(chunk)) => self.decoder.push(chunk)?,
                Some(Err(error)) => return Err(MultipartError::Input(error)),
                None => self.decoder.finish(),
            }
        }
    }

    /// The headers of the next part (what is left of the current part's body is skipped,
    /// still within the limits), or `None` after the closing delimiter.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError<E>> {
        loop {
            match self.next_event().await? {
                Event::Part(headers) => return Ok(Some(headers)),
                Event::Body(_) => {}
                Event::End => return Ok(None),
            }
        }
    }

    /// The next piece of the current part's body, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, MultipartError<E>> {
        match self.next_event().await? {
            Event::Body(chunk) => Ok(Some(chunk)),
            other => {
                self.peeked = Some(other);
                Ok(None)
            }
        }
    }

    /// The rest of the current part's body as a stream of pieces; it ends after an error.
    pub fn body(&mut self) -> impl Stream<Item = Result<Bytes, MultipartError<E>>> + '_ {
        futures_util::stream::unfold(Some(self), |reader| async move {
            let reader = reader?;
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
    }

    /// The rest of the current part's body in memory, at most
    /// [`DecodeLimits::max_part_bytes`].
    pub async fn read_body(&mut self) -> Result<Bytes, MultipartError<E>> {
        let Some(first) = self.next_chunk().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.next_chunk().await? else {
            return Ok(first);
        };
        let mut body = BytesMut::from(first);
        body.extend_from_slice(&second);
        while let Some(chunk) = self.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Every part with its body in memory (each at most [`DecodeLimits::max_part_bytes`]); the
    /// stream ends after an error.
    pub fn into_parts(self) -> impl Stream<Item = Result<(PartHeaders, Bytes), MultipartError<E>>> {
        futures_util::stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            let part = async {
                let Some(headers) = reader.next_part().await? else {
                    return Ok(None);
                };
                let body = reader.read_body().await?;
                Ok(Some((headers, body)))
            }
            .await;
            match part {
                Ok(Some(part)) => Some((Ok(part), Some(reader))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
    }
}
