//! The request body: how much of it the front door holds, following chunked framing.

use super::head::Body;

/// The longest chunk-size line (size and extensions) taken.
const MAX_CHUNK_LINE: usize = 4096;
/// How much of a request body the front door holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyScan {
    /// All of it.
    Complete,
    /// Not all yet.
    Partial,
    /// More than is buffered (or an upgrade): it is streamed.
    Streamed,
    /// The chunked framing is broken.
    Invalid(&'static str),
}

/// How much of a `body` of kind `kind` the bytes `received` after its header hold, buffering at
/// most `max` bytes of it.
pub(super) fn scan_body(kind: Body, received: &[u8], max: usize) -> BodyScan {
    match kind {
        Body::Upgrade => BodyScan::Streamed,
        Body::Length(n) if n > max as u64 => BodyScan::Streamed,
        Body::Length(n) if received.len() as u64 >= n => BodyScan::Complete,
        Body::Length(_) => BodyScan::Partial,
        Body::Chunked => scan_chunked(received, max),
    }
}

/// Follows chunked framing (RFC 9112 7.1) through `received`: every chunk-size line, chunk end and
/// trailer line must end in CRLF.
fn scan_chunked(received: &[u8], max: usize) -> BodyScan {
    const BAD_SIZE: &str = "a chunk-size line is malformed or does not end in CRLF";
    let mut at = 0usize;
    loop {
        if at > max {
            return BodyScan::Streamed;
        }
        let rest = &received[at..];
        let (line, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                return BodyScan::Invalid(BAD_SIZE)
            }
            Ok(httparse::Status::Partial) => return BodyScan::Partial,
            Err(_) => return BodyScan::Invalid(BAD_SIZE),
        };
        at += line;
        if size == 0 {
            return scan_trailers(&received[at..], max.saturating_sub(at));
        }
        if size > (max - at.min(max)) as u64 {
            return BodyScan::Streamed;
        }
        // Bounded by `max` just above, so it fits a usize.
        let end = at + size as usize;
        match received.get(end..end + 2) {
            None => return BodyScan::Partial,
            Some(b"\r\n") => at = end + 2,
            Some(_) => return BodyScan::Invalid("a chunk's data does not end in CRLF"),
        }
    }
}

/// The trailer section after the last chunk: field lines, then an empty line, each ending in CRLF.
fn scan_trailers(received: &[u8], max: usize) -> BodyScan {
    let mut at = 0;
    loop {
        let rest = &received[at..];
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            return if rest.len() > max {
                BodyScan::Streamed
            } else {
                BodyScan::Partial
            };
        };
        if lf == 0 || rest[lf - 1] != b'\r' {
            return BodyScan::Invalid("a chunked body's trailer line does not end in CRLF");
        }
        if lf == 1 {
            return BodyScan::Complete;
        }
        at += lf + 1;
        if at > max {
            return BodyScan::Streamed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_held_whole_up_to_the_limit_and_streamed_beyond() {
        use BodyScan::*;
        assert_eq!(scan_body(Body::Length(0), b"", 16), Complete);
        assert_eq!(scan_body(Body::Length(5), b"hell", 16), Partial);
        assert_eq!(scan_body(Body::Length(5), b"hello", 16), Complete);
        assert_eq!(scan_body(Body::Length(17), b"", 16), Streamed);
        assert_eq!(scan_body(Body::Upgrade, b"", 16), Streamed);
        let whole = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(scan_body(Body::Chunked, whole, 1024), Complete);
        for cut in 0..whole.len() {
            assert_eq!(
                scan_body(Body::Chunked, &whole[..cut], 1024),
                Partial,
                "{:?}",
                String::from_utf8_lossy(&whole[..cut])
            );
        }
        assert_eq!(scan_body(Body::Chunked, b"0\r\n\r\n", 16), Complete);
        // Larger than the limit, in one chunk or over several.
        assert_eq!(scan_body(Body::Chunked, b"20\r\n", 16), Streamed);
        let many = b"4\r\nabcd\r\n".repeat(8);
        assert_eq!(scan_body(Body::Chunked, &many, 16), Streamed);
        for bad in [
            &b"5\nhello\n0\n\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"zz\r\n",
            b"0\r\nx-t: 1\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                matches!(scan_body(Body::Chunked, bad, 1024), Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
