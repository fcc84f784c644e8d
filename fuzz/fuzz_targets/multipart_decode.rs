//! Fuzzes what a DICOMweb server does with a peer's multipart/related body (RFC 2046 §5.1.1,
//! RFC 2387, PS3.18 8.6.1.2) and its headers: the bytes are decoded whole and cut into chunks
//! whose sizes the first byte picks, and both must give the same parts or the same error; the
//! decoder must never hold more than the latest chunk, a delimiter and one header block. The same
//! bytes are parsed as a Content-Type and as an Accept value. Nothing may panic or allocate
//! without bound.

#![no_main]

use bytes::Bytes;
use dimsum_web::multipart::{
    Accept, Boundary, ContentType, DecodeError, DecodeLimits, Decoder, Event, PartHeaders,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_body_bytes: 1 << 20,
    max_part_bytes: 64 << 10,
    max_parts: 64,
    max_header_bytes: 512,
    max_headers: 16,
    content_type: dimsum_web::multipart::HeaderLimits {
        max_length: 256,
        max_parameters: 8,
        max_ranges: 8,
    },
};

type Parts = Vec<(PartHeaders, Vec<u8>)>;

fn decode(data: &[u8], chunk: usize, boundary: &Boundary) -> Result<Parts, DecodeError> {
    let mut decoder = Decoder::new(boundary, LIMITS);
    let mut parts: Parts = Vec::new();
    let bound = chunk + 80 + LIMITS.max_header_bytes;
    let mut chunks = data.chunks(chunk.max(1));
    loop {
        match chunks.next() {
            Some(piece) => decoder.push(Bytes::copy_from_slice(piece))?,
            None => decoder.finish(),
        }
        loop {
            assert!(decoder.buffered() <= bound, "{} bytes held", decoder.buffered());
            match decoder.poll_event()? {
                Some(Event::Part(headers)) => parts.push((headers, Vec::new())),
                Some(Event::Body(body)) => {
                    assert!(!body.is_empty());
                    match parts.last_mut() {
                        Some((_, whole)) => whole.extend_from_slice(&body),
                        None => panic!("a body before any part"),
                    }
                }
                Some(Event::End) => return Ok(parts),
                None => break,
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        if let Ok(content_type) = ContentType::parse(text) {
            let _ = content_type.boundary();
            let _ = content_type.related_type();
            // What is written parses back to the same value.
            assert_eq!(ContentType::parse(&content_type.to_string()), Ok(content_type));
        }
        let _ = Accept::parse(text).map(|accept| accept.preferred().len());
    }
    let Some((selector, data)) = input.split_first() else {
        return;
    };
    let boundary = match Boundary::new(if selector & 0x80 == 0 { "b" } else { "boundary" }) {
        Ok(boundary) => boundary,
        Err(error) => panic!("{error}"),
    };
    let chunk = usize::from(selector & 0x7f) + 1;
    let whole = decode(data, data.len(), &boundary);
    let split = decode(data, chunk, &boundary);
    assert_eq!(whole, split, "chunks of {chunk}");
});
