//! multipart/related (RFC 2046 §5.1.1, RFC 2387, PS3.18 8.6.1.2): round trips through the
//! encoder and the streaming decoder with bodies split anywhere, every quirk peers write, every
//! malformation and every limit.

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use dimsum_web::multipart::{
    Boundary, BoundaryError, ContentType, ContentTypeError, DecodeError, DecodeLimits, Decoder,
    Encoder, Event, MultipartError, MultipartReader, Part, PartHeaders,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// A deterministic pseudo-random generator (xorshift64*), for chunk sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `data` cut into chunks of 1 to `max` bytes, chosen by `seed`.
fn split(data: &[u8], seed: u64, max: usize) -> Vec<Bytes> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.next() as usize % max).min(rest.len());
        chunks.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
    }
    chunks
}

type Input = stream::Iter<std::vec::IntoIter<Result<Bytes, io::Error>>>;

fn input(chunks: Vec<Bytes>) -> Input {
    stream::iter(chunks.into_iter().map(Ok).collect::<Vec<_>>())
}

fn content_type(value: &str) -> ContentType {
    ContentType::parse(value).unwrap()
}

fn dicom() -> ContentType {
    content_type("application/dicom")
}

/// Every part of `chunks` (headers and whole body) as the reader gives them.
async fn decode_chunks(
    chunks: Vec<Bytes>,
    decoder: Decoder,
) -> Result<Vec<(PartHeaders, Bytes)>, MultipartError<io::Error>> {
    MultipartReader::new(input(chunks), decoder)
        .into_parts()
        .try_collect()
        .await
}

/// Decodes `body` as one chunk, one byte at a time, cut at every position in two, and in
/// random chunks; all must give the same parts, which are returned.
async fn decode_every_way(
    body: &[u8],
    decoder: &Decoder,
) -> Result<Vec<(PartHeaders, Bytes)>, MultipartError<io::Error>> {
    let whole = decode_chunks(vec![Bytes::copy_from_slice(body)], decoder.clone()).await;
    let mut ways: Vec<Vec<Bytes>> = vec![split(body, 0, 1)];
    for cut in 1..body.len() {
        ways.push(vec![
            Bytes::copy_from_slice(&body[..cut]),
            Bytes::copy_from_slice(&body[cut..]),
        ]);
    }
    for seed in 1..20 {
        ways.push(split(body, seed, 7));
    }
    for chunks in ways {
        let cuts: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        let other = decode_chunks(chunks, decoder.clone()).await;
        match (&whole, &other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "chunks {cuts:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "chunks {cuts:?}"),
            _ => panic!("chunks {cuts:?}: {whole:?} but {other:?}"),
        }
    }
    whole
}

fn decoder(boundary: &str) -> Decoder {
    Decoder::new(&Boundary::new(boundary).unwrap(), DecodeLimits::default())
}

fn bodies(parts: &[(PartHeaders, Bytes)]) -> Vec<&[u8]> {
    parts.iter().map(|(_, body)| body.as_ref()).collect()
}

fn decode_error(
    result: Result<Vec<(PartHeaders, Bytes)>, MultipartError<io::Error>>,
) -> DecodeError {
    match result {
        Err(MultipartError::Decode(error)) => error,
        other => panic!("a decode error expected, got {other:?}"),
    }
}

#[tokio::test]
async fn round_trip_with_random_chunking() {
    let boundary = Boundary::new("0123456789abcdef0123456789abcdef").unwrap();
    let encoder = Encoder::with_boundary(dicom(), boundary.clone());
    // Bodies that hold line ends, dashes and pieces of the delimiter.
    let mut tricky = b"\r\n--0123456789abcdef0123456789abcde\r\n-\r\r\n--".to_vec();
    tricky.extend_from_slice(b"--0123456789abcdef0123456789abcdef");
    let mut rng = Rng(42);
    let large: Vec<u8> = (0..100_000).map(|_| rng.next() as u8).collect();
    let expected: Vec<(PartHeaders, Vec<u8>)> = vec![
        (
            PartHeaders::new(dicom())
                .with_content_location("/studies/1.2/series/3.4/instances/5.6")
                .unwrap(),
            large.clone(),
        ),
        (PartHeaders::new(dicom()), Vec::new()),
        (
            PartHeaders::new(content_type("application/octet-stream; transfer-syntax=*"))
                .with_content_id("<frame-1@dimsum>")
                .unwrap(),
            tricky,
        ),
        (
            PartHeaders::new(content_type("application/dicom+json"))
                .with_header("Content-Description", "metadata")
                .unwrap(),
            b"[{}]\r\n".to_vec(),
        ),
        (PartHeaders::new(dicom()), b"\r\n".to_vec()),
    ];
    let parts: Vec<Part<io::Error>> = expected
        .iter()
        .enumerate()
        .map(|(i, (headers, body))| {
            if i % 2 == 0 {
                // Streamed in pieces of varying sizes.
                let pieces = split(body, i as u64, 4096);
                Part::stream(headers.clone(), stream::iter(pieces.into_iter().map(Ok)))
            } else {
                Part::bytes(headers.clone(), body.clone())
            }
        })
        .collect();
    let encoded: Vec<Bytes> = encoder
        .encode(stream::iter(parts))
        .try_collect()
        .await
        .unwrap();
    let encoded: Vec<u8> = encoded.concat();
    assert!(
        encoded.starts_with(
            b"--0123456789abcdef0123456789abcdef\r\nContent-Type: application/dicom\r\n"
        )
    );
    assert!(encoded.ends_with(b"\r\n--0123456789abcdef0123456789abcdef--\r\n"));

    let content_type = encoder.content_type();
    assert_eq!(
        content_type.to_string(),
        "multipart/related; type=\"application/dicom\"; boundary=0123456789abcdef0123456789abcdef"
    );
    for seed in 0..50 {
        let max = [1, 3, 70, 75, 1000, 65536][seed as usize % 6];
        let decoder = Decoder::for_content_type(&content_type, DecodeLimits::default()).unwrap();
        let decoded = decode_chunks(split(&encoded, seed, max), decoder)
            .await
            .unwrap();
        assert_eq!(decoded.len(), expected.len(), "seed {seed}");
        for ((headers, body), (want_headers, want_body)) in decoded.iter().zip(&expected) {
            assert_eq!(headers, want_headers, "seed {seed}");
            assert_eq!(body.as_ref(), want_body.as_slice(), "seed {seed}");
        }
    }
}

#[tokio::test]
async fn no_parts_round_trip() {
    let encoder = Encoder::with_boundary(dicom(), Boundary::new("b").unwrap());
    let encoded: Vec<Bytes> = encoder
        .encode(stream::empty::<Part<Infallible>>())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(encoded.concat(), b"--b--\r\n");
    let parts = decode_every_way(b"--b--\r\n", &decoder("b")).await.unwrap();
    assert!(parts.is_empty());
}

#[tokio::test]
async fn a_failing_part_stream_ends_the_body_with_its_error() {
    let encoder = Encoder::new(dicom());
    let body = stream::iter([
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::other("disk")),
    ]);
    let part = Part::stream(PartHeaders::new(dicom()), body);
    let chunks: Vec<Result<Bytes, io::Error>> =
        encoder.encode(stream::iter([part])).collect().await;
    assert_eq!(
        chunks.len(),
        3,
        "head, abc, the error and no closing delimiter: {chunks:?}"
    );
    assert_eq!(chunks[1].as_ref().unwrap().as_ref(), b"abc");
    assert_eq!(chunks[2].as_ref().unwrap_err().to_string(), "disk");
}

#[test]
fn random_encoders_use_a_fresh_32_character_boundary() {
    let a = Encoder::new(dicom());
    let b = Encoder::new(dicom());
    assert_eq!(a.boundary().as_str().len(), 32);
    assert_ne!(a.boundary(), b.boundary());
    assert_eq!(a.content_type().boundary().unwrap(), *a.boundary());
}

#[tokio::test]
async fn a_leading_crlf_before_the_first_delimiter() {
    let body = b"\r\n--b\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b--\r\n";
    let parts = decode_every_way(body, &decoder("b")).await.unwrap();
    assert_eq!(bodies(&parts), [b"DATA"]);
    assert!(parts[0].0.content_type().is("application", "dicom"));
}

#[tokio::test]
async fn no_crlf_before_the_first_delimiter() {
    let body = b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b--\r\n";
    let parts = decode_every_way(body, &decoder("b")).await.unwrap();
    assert_eq!(bodies(&parts), [b"DATA"]);
}

#[tokio::test]
async fn preamble_and_epilogue_are_ignored() {
    let body = b"This is a preamble.\r\n--c is not a delimiter--\r\n\r\n--b\r\n\r\nONE\r\n--b\r\n\r\nTWO\r\n--b--\r\nAn epilogue\r\n--b\r\n\r\nNOT A PART\r\n";
    let parts = decode_every_way(body, &decoder("b")).await.unwrap();
    assert_eq!(bodies(&parts), [b"ONE", b"TWO"]);
}

#[tokio::test]
async fn no_crlf_after_the_closing_delimiter() {
    let body = b"--b\r\n\r\nONE\r\n--b--";
    let parts = decode_every_way(body, &decoder("b")).await.unwrap();
    assert_eq!(bodies(&parts), [b"ONE"]);
}

#[tokio::test]
async fn parts_without_content_type_take_the_type_parameter() {
    let body = b"--b\r\n\r\nONE\r\n--b\r\nContent-Location: /x\r\n\r\nTWO\r\n--b\r\ncontent-type: Application/DICOM+XML\r\n\r\nTHREE\r\n--b--\r\n";
    let ct = content_type("multipart/related; type=\"application/dicom\"; boundary=b");
    let decoder = Decoder::for_content_type(&ct, DecodeLimits::default()).unwrap();
    let parts = decode_every_way(body, &decoder).await.unwrap();
    let types: Vec<String> = parts
        .iter()
        .map(|(h, _)| h.content_type().essence())
        .collect();
    assert_eq!(
        types,
        [
            "application/dicom",
            "application/dicom",
            "application/dicom+xml"
        ]
    );
    assert_eq!(parts[1].0.content_location(), Some("/x"));

    // Unquoted type parameter, and no type parameter at all: RFC 2045's text/plain.
    let ct = content_type("multipart/related; type=application/octet-stream; boundary=b");
    let decoder = Decoder::for_content_type(&ct, DecodeLimits::default()).unwrap();
    let parts = decode_every_way(body, &decoder).await.unwrap();
    assert_eq!(
        parts[0].0.content_type().essence(),
        "application/octet-stream"
    );
    let parts = decode_every_way(body, &self::decoder("b")).await.unwrap();
    assert_eq!(parts[0].0.content_type().essence(), "text/plain");
}

#[tokio::test]
async fn transport_padding_after_delimiters() {
    let body = b"--b  \t \r\nContent-Type: application/dicom\r\n\r\nONE\r\n--b\t\r\n\r\nTWO\r\n--b--  \r\n";
    let parts = decode_every_way(body, &decoder("b")).await.unwrap();
    assert_eq!(bodies(&parts), [b"ONE", b"TWO"]);
}

#[tokio::test]
async fn a_quoted_boundary_with_spaces_and_headers_of_any_case() {
    let ct = content_type("multipart/related; type=\"application/dicom\"; boundary=\"a b'c\"");
    let body = b"--a b'c\r\nCONTENT-ID:<1@x>\r\ncontent-location:   /y  \r\nX-Other: 1\r\n\r\nONE\r\n--a b'c--";
    let decoder = Decoder::for_content_type(&ct, DecodeLimits::default()).unwrap();
    let parts = decode_every_way(body, &decoder).await.unwrap();
    let headers = &parts[0].0;
    assert_eq!(headers.content_id(), Some("<1@x>"));
    assert_eq!(headers.content_location(), Some("/y"));
    assert_eq!(headers.header("x-other"), Some("1"));
    assert_eq!(bodies(&parts), [b"ONE"]);
}

#[tokio::test]
async fn malformations_are_named() {
    let cases: [(&[u8], DecodeError); 9] = [
        (
            b"--b\r\nContent-Type application/dicom\r\n\r\nX\r\n--b--",
            DecodeError::HeaderWithoutColon { part: 1, line: 1 },
        ),
        (
            b"--b\r\nContent-Type: application/dicom\r\n  ; x=1\r\n\r\nX\r\n--b--",
            DecodeError::FoldedHeader { part: 1, line: 2 },
        ),
        (
            b"--b\r\n\r\nX\r\n--b\r\nBad Name: 1\r\n\r\nX\r\n--b--",
            DecodeError::InvalidHeaderName { part: 2, line: 1 },
        ),
        (
            b"--b\r\nX-A: 1\nX-B: 2\r\n\r\nX\r\n--b--",
            DecodeError::InvalidHeaderValue { part: 1, line: 1 },
        ),
        (
            b"--b\r\nContent-Type: a/b\r\ncontent-type: a/b\r\n\r\nX\r\n--b--",
            DecodeError::DuplicateHeader {
                part: 1,
                name: "Content-Type",
            },
        ),
        (
            b"--b\r\nContent-Type: application\r\n\r\nX\r\n--b--",
            DecodeError::ContentType {
                part: 1,
                source: ContentTypeError::MalformedType { at: 0 },
            },
        ),
        (
            b"--b\r\n\r\nX\r\n--bX\r\n\r\nY\r\n--b--",
            DecodeError::MalformedDelimiter { part: 2 },
        ),
        (
            b"--b\r\n\r\nX\r\n--b -- \r\n",
            DecodeError::MalformedDelimiter { part: 2 },
        ),
        (
            b"no delimiter at all\r\n--c\r\n",
            DecodeError::MissingFirstDelimiter,
        ),
    ];
    for (body, error) in cases {
        let got = decode_error(decode_every_way(body, &decoder("b")).await);
        assert_eq!(got, error, "{}", String::from_utf8_lossy(body));
    }
}

#[tokio::test]
async fn bodies_that_end_too_soon() {
    let cases: [(&[u8], DecodeError); 6] = [
        (b"", DecodeError::MissingFirstDelimiter),
        (b"--b", DecodeError::MissingClosingDelimiter { part: 0 }),
        (
            b"--b\r\nContent-Type: a/b\r\n",
            DecodeError::TruncatedHeaders { part: 1 },
        ),
        (
            b"--b\r\n\r\nDATA",
            DecodeError::MissingClosingDelimiter { part: 1 },
        ),
        (
            b"--b\r\n\r\nDATA\r\n--b",
            DecodeError::MissingClosingDelimiter { part: 1 },
        ),
        (
            b"--b\r\n\r\nDATA\r\n--b-",
            DecodeError::MissingClosingDelimiter { part: 1 },
        ),
    ];
    for (body, error) in cases {
        let got = decode_error(decode_every_way(body, &decoder("b")).await);
        assert_eq!(got, error, "{}", String::from_utf8_lossy(body));
    }
}

#[tokio::test]
async fn a_body_that_never_closes_streams_its_part_then_fails() {
    // A part whose body goes on and on, in 8 KiB chunks, then the input ends.
    let mut chunks = vec![Bytes::from_static(
        b"--b\r\nContent-Type: application/dicom\r\n\r\n",
    )];
    chunks.extend(std::iter::repeat_n(Bytes::from(vec![b'-'; 8192]), 100));
    let mut reader = MultipartReader::new(input(chunks), decoder("b"));
    assert!(reader.next_part().await.unwrap().is_some());
    let mut received = 0;
    let error = loop {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("the part cannot end without a delimiter"),
            Err(error) => break error,
        }
    };
    // Everything but the few bytes that might have started a delimiter came out first.
    assert!(received >= 100 * 8192 - 5, "{received}");
    assert!(matches!(
        error,
        MultipartError::Decode(DecodeError::MissingClosingDelimiter { part: 1 })
    ));
}

#[test]
fn boundaries_longer_than_70_are_refused() {
    let ct = content_type(&format!("multipart/related; boundary={}", "x".repeat(71)));
    assert_eq!(
        Decoder::for_content_type(&ct, DecodeLimits::default()).err(),
        Some(ContentTypeError::Boundary(BoundaryError::TooLong {
            length: 71
        }))
    );
    let ct = content_type("multipart/related; type=application/dicom");
    assert!(matches!(
        Decoder::for_content_type(&ct, DecodeLimits::default()),
        Err(ContentTypeError::MissingBoundary { .. })
    ));
}

#[tokio::test]
async fn the_stream_is_not_read_after_the_closing_delimiter() {
    let chunks = stream::iter([
        Ok(Bytes::from_static(b"--b\r\n\r\nONE\r\n--b--\r\n")),
        Err(io::Error::other("must not be read")),
    ]);
    let mut reader = MultipartReader::new(chunks, decoder("b"));
    assert!(reader.next_part().await.unwrap().is_some());
    assert_eq!(
        reader.read_body().await.unwrap(),
        Bytes::from_static(b"ONE")
    );
    assert!(reader.next_part().await.unwrap().is_none());
    assert!(reader.next_part().await.unwrap().is_none());
}

#[tokio::test]
async fn an_input_error_is_passed_on() {
    let chunks = stream::iter([
        Ok(Bytes::from_static(b"--b\r\n\r\nON")),
        Err(io::Error::other("connection reset")),
    ]);
    let mut reader = MultipartReader::new(chunks, decoder("b"));
    assert!(reader.next_part().await.unwrap().is_some());
    match reader.read_body().await {
        Err(MultipartError::Input(error)) => assert_eq!(error.to_string(), "connection reset"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unread_bodies_are_skipped_and_body_streams() {
    let body = b"--b\r\n\r\nONE\r\n--b\r\n\r\nTWO TWO\r\n--b\r\n\r\nTHREE\r\n--b--";
    let mut reader = MultipartReader::new(input(split(body, 3, 2)), decoder("b"));
    assert!(reader.next_part().await.unwrap().is_some());
    assert!(reader.next_part().await.unwrap().is_some());
    let two: Vec<Bytes> = reader.body().try_collect().await.unwrap();
    assert_eq!(two.concat(), b"TWO TWO");
    assert!(reader.next_part().await.unwrap().is_some());
    assert!(reader.next_part().await.unwrap().is_none());
}

/// Drives a decoder over `chunks` (an endless source is fine), checking after every step that
/// it holds at most `bound` bytes, until it fails; the error is returned.
fn drive_until_error(
    mut decoder: Decoder,
    chunks: impl Iterator<Item = Bytes>,
    bound: usize,
) -> DecodeError {
    for chunk in chunks {
        if let Err(error) = decoder.push(chunk) {
            return error;
        }
        loop {
            assert!(
                decoder.buffered() <= bound,
                "{} > {bound}",
                decoder.buffered()
            );
            match decoder.poll_event() {
                Ok(Some(Event::End)) => panic!("no end expected"),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return error,
            }
        }
    }
    panic!("the source ended before any error")
}

fn with_limits(limits: DecodeLimits) -> Decoder {
    Decoder::new(&Boundary::new("b").unwrap(), limits)
}

#[test]
fn total_body_limit() {
    let limits = DecodeLimits {
        max_body_bytes: 100_000,
        max_parts: 100_000,
        ..DecodeLimits::default()
    };
    // An endless preamble.
    let error = drive_until_error(
        with_limits(limits),
        std::iter::repeat(Bytes::from_static(b"preamble \r\n-")),
        64,
    );
    assert_eq!(error, DecodeError::BodyTooLarge { limit: 100_000 });
    // Endless parts.
    let error = drive_until_error(
        with_limits(limits),
        std::iter::repeat(Bytes::from_static(b"\r\n--b\r\n\r\nXYZ")),
        64,
    );
    assert_eq!(error, DecodeError::BodyTooLarge { limit: 100_000 });
}

#[test]
fn part_limit() {
    let limits = DecodeLimits {
        max_part_bytes: 10_000,
        ..DecodeLimits::default()
    };
    let head = std::iter::once(Bytes::from_static(b"--b\r\n\r\n"));
    let error = drive_until_error(
        with_limits(limits),
        head.chain(std::iter::repeat(Bytes::from(vec![b'\r'; 1000]))),
        1000 + 8,
    );
    assert_eq!(
        error,
        DecodeError::PartTooLarge {
            part: 1,
            limit: 10_000
        }
    );
}

#[tokio::test]
async fn part_limit_applies_to_bodies_read_whole() {
    let limits = DecodeLimits {
        max_part_bytes: 4,
        ..DecodeLimits::default()
    };
    let body = b"--b\r\n\r\n1234\r\n--b\r\n\r\n12345\r\n--b--";
    let result = decode_chunks(vec![Bytes::from_static(body)], with_limits(limits)).await;
    assert_eq!(
        decode_error(result),
        DecodeError::PartTooLarge { part: 2, limit: 4 }
    );
}

#[test]
fn header_block_limit() {
    let limits = DecodeLimits {
        max_header_bytes: 1000,
        ..DecodeLimits::default()
    };
    // An endless header line, in small chunks and in one large chunk.
    let head = std::iter::once(Bytes::from_static(b"--b\r\nX-Long: "));
    let error = drive_until_error(
        with_limits(limits),
        head.clone()
            .chain(std::iter::repeat(Bytes::from_static(b"aaaaaaa"))),
        1000 + 16,
    );
    assert_eq!(
        error,
        DecodeError::HeaderBlockTooLarge {
            part: 1,
            limit: 1000
        }
    );
    let error = drive_until_error(
        with_limits(limits),
        head.chain(std::iter::once(Bytes::from(vec![b'a'; 100_000]))),
        100_000 + 16,
    );
    assert_eq!(
        error,
        DecodeError::HeaderBlockTooLarge {
            part: 1,
            limit: 1000
        }
    );
    // Endless transport padding.
    let error = drive_until_error(
        with_limits(limits),
        std::iter::once(Bytes::from_static(b"--b"))
            .chain(std::iter::repeat(Bytes::from_static(b"  \t  "))),
        16,
    );
    assert_eq!(
        error,
        DecodeError::HeaderBlockTooLarge {
            part: 1,
            limit: 1000
        }
    );
}

#[tokio::test]
async fn header_block_limit_is_exact() {
    let limits = DecodeLimits {
        max_header_bytes: 30,
        ..DecodeLimits::default()
    };
    // CRLF + "X-A: 0123456789012345678" (24) + CRLF CRLF = 30 bytes.
    let fits = b"--b\r\nX-A: 0123456789012345678\r\n\r\nX\r\n--b--";
    let parts = decode_every_way(fits, &with_limits(limits)).await.unwrap();
    assert_eq!(parts[0].0.header("x-a"), Some("0123456789012345678"));
    let over = b"--b\r\nX-A: 01234567890123456789\r\n\r\nX\r\n--b--";
    let error = decode_error(decode_every_way(over, &with_limits(limits)).await);
    assert_eq!(
        error,
        DecodeError::HeaderBlockTooLarge { part: 1, limit: 30 }
    );
}

#[tokio::test]
async fn header_count_limit() {
    let limits = DecodeLimits {
        max_headers: 3,
        ..DecodeLimits::default()
    };
    let fits = b"--b\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\nX\r\n--b--";
    assert!(decode_every_way(fits, &with_limits(limits)).await.is_ok());
    let over = b"--b\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\nX\r\n--b--";
    let error = decode_error(decode_every_way(over, &with_limits(limits)).await);
    assert_eq!(error, DecodeError::TooManyHeaders { part: 1, limit: 3 });
}

fn empty_parts(count: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..count {
        body.extend_from_slice(b"--b\r\n\r\n\r\n");
    }
    body.extend_from_slice(b"--b--\r\n");
    body
}

#[tokio::test]
async fn ten_thousand_empty_parts_are_refused_by_default() {
    let body = empty_parts(10_000);
    let result = decode_chunks(split(&body, 7, 4096), decoder("b")).await;
    assert_eq!(
        decode_error(result),
        DecodeError::TooManyParts {
            limit: DecodeLimits::default().max_parts
        }
    );
    let limits = DecodeLimits {
        max_parts: 10_000,
        ..DecodeLimits::default()
    };
    let parts = decode_chunks(split(&body, 7, 4096), with_limits(limits))
        .await
        .unwrap();
    assert_eq!(parts.len(), 10_000);
    assert!(parts.iter().all(|(_, body)| body.is_empty()));
}

#[tokio::test]
async fn part_count_limit_is_exact() {
    let limits = DecodeLimits {
        max_parts: 3,
        ..DecodeLimits::default()
    };
    assert_eq!(
        decode_every_way(&empty_parts(3), &with_limits(limits))
            .await
            .unwrap()
            .len(),
        3
    );
    let error = decode_error(decode_every_way(&empty_parts(4), &with_limits(limits)).await);
    assert_eq!(error, DecodeError::TooManyParts { limit: 3 });
}

#[test]
fn errors_are_sticky_and_push_after_the_end_is_ignored() {
    let mut decoder = decoder("b");
    decoder.push(Bytes::from_static(b"--bX")).unwrap();
    let error = decoder.poll_event().unwrap_err();
    assert_eq!(error, DecodeError::MalformedDelimiter { part: 1 });
    assert_eq!(decoder.poll_event().unwrap_err(), error);
    assert_eq!(
        decoder.push(Bytes::from_static(b"\r\n")).unwrap_err(),
        error
    );

    let mut decoder = self::decoder("b");
    decoder.push(Bytes::from_static(b"--b--")).unwrap();
    assert_eq!(decoder.poll_event().unwrap(), Some(Event::End));
    assert!(decoder.is_finished());
    decoder.push(Bytes::from_static(b"epilogue")).unwrap();
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.poll_event().unwrap(), None);
}
