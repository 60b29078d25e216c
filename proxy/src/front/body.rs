//! The request body: how much of it the front door holds, following chunked framing.

use super::head::Body;

/// The longest chunk-size line (size and extensions) taken.
const MAX_CHUNK_LINE: usize = 4096;

/// How much of a request body the front door holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyScan {
    /// All of it: this many bytes after the header, chunked framing included.
    Complete(u64),
    /// Not all yet.
    Partial,
    /// More than is buffered (or an upgrade): it is streamed.
    Streamed,
    /// The chunked framing is broken.
    Invalid(&'static str),
}

/// Where the scan of a chunked body stopped, so that the next one, with more bytes, resumes there
/// instead of reading the body from its start again: the offset of the first chunk (or trailer
/// line) not yet complete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    at: usize,
    in_trailers: bool,
}

/// How much of a `body` of kind `kind` the bytes `received` after its header hold, buffering at
/// most `max` bytes of it. `progress` carries a chunked scan from one call to the next; `received`
/// only grows between them.
pub(super) fn scan_body(
    kind: Body,
    received: &[u8],
    max: usize,
    progress: &mut Progress,
) -> BodyScan {
    match kind {
        Body::Upgrade => BodyScan::Streamed,
        Body::Length(n) if n > max as u64 => BodyScan::Streamed,
        Body::Length(n) if received.len() as u64 >= n => BodyScan::Complete(n),
        Body::Length(_) => BodyScan::Partial,
        Body::Chunked => scan_chunked(received, max, progress),
    }
}

/// Follows chunked framing (RFC 9112 7.1) through `received`: every chunk-size line, chunk end and
/// trailer line must end in CRLF.
fn scan_chunked(received: &[u8], max: usize, progress: &mut Progress) -> BodyScan {
    const BAD_SIZE: &str = "a chunk-size line is malformed or does not end in CRLF";
    while !progress.in_trailers {
        let at = progress.at;
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
        let data = at + line;
        if size == 0 {
            *progress = Progress {
                at: data,
                in_trailers: true,
            };
            break;
        }
        if size > max.saturating_sub(data) as u64 {
            return BodyScan::Streamed;
        }
        // Bounded by `max` just above, so it fits a usize.
        let end = data + size as usize;
        match received.get(end..end + 2) {
            None => return BodyScan::Partial,
            Some(b"\r\n") => progress.at = end + 2,
            Some(_) => return BodyScan::Invalid("a chunk's data does not end in CRLF"),
        }
    }
    scan_trailers(received, max, progress)
}

/// The trailer section after the last chunk: field lines, then an empty line, each ending in CRLF.
fn scan_trailers(received: &[u8], max: usize, progress: &mut Progress) -> BodyScan {
    loop {
        let rest = &received[progress.at..];
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            return if received.len() > max {
                BodyScan::Streamed
            } else {
                BodyScan::Partial
            };
        };
        if lf == 0 || rest[lf - 1] != b'\r' {
            return BodyScan::Invalid("a chunked body's trailer line does not end in CRLF");
        }
        progress.at += lf + 1;
        if lf == 1 {
            return BodyScan::Complete(progress.at as u64);
        }
        if progress.at > max {
            return BodyScan::Streamed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(kind: Body, received: &[u8], max: usize) -> BodyScan {
        scan_body(kind, received, max, &mut Progress::default())
    }

    #[test]
    fn bodies_are_held_whole_up_to_the_limit_and_streamed_beyond() {
        use BodyScan::*;
        assert_eq!(scan(Body::Length(0), b"", 16), Complete(0));
        assert_eq!(scan(Body::Length(5), b"hell", 16), Partial);
        assert_eq!(scan(Body::Length(5), b"hello", 16), Complete(5));
        assert_eq!(scan(Body::Length(17), b"", 16), Streamed);
        assert_eq!(scan(Body::Upgrade, b"", 16), Streamed);
        let whole = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        let framed = whole.len() as u64;
        assert_eq!(scan(Body::Chunked, whole, 1024), Complete(framed));
        let mut next = whole.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            scan(Body::Chunked, &next, 1024),
            Complete(framed),
            "the framed length, not what follows"
        );
        // Cut at every byte, scanned afresh and resumed, it is incomplete until the end.
        let mut progress = Progress::default();
        for cut in 0..whole.len() {
            let text = String::from_utf8_lossy(&whole[..cut]);
            assert_eq!(
                scan(Body::Chunked, &whole[..cut], 1024),
                Partial,
                "{text:?}"
            );
            assert_eq!(
                scan_body(Body::Chunked, &whole[..cut], 1024, &mut progress),
                Partial,
                "resumed: {text:?}"
            );
        }
        assert_eq!(
            scan_body(Body::Chunked, whole, 1024, &mut progress),
            Complete(framed)
        );
        assert_eq!(scan(Body::Chunked, b"0\r\n\r\n", 16), Complete(5));
        // Larger than the limit, in one chunk or over several.
        assert_eq!(scan(Body::Chunked, b"20\r\n", 16), Streamed);
        let many = b"4\r\nabcd\r\n".repeat(8);
        assert_eq!(scan(Body::Chunked, &many, 16), Streamed);
        for bad in [
            &b"5\nhello\n0\n\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"zz\r\n",
            b"0\r\nx-t: 1\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                matches!(scan(Body::Chunked, bad, 1024), Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
