//! The request header: where it ends, whether it is taken, and what it says of the body.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::validate_request_authority;

use super::DoorRefusal;

/// Header fields a request may carry (pingora's own limit).
pub(super) const MAX_HEADERS: usize = 256;
/// The largest `Content-Length` taken (1 TiB): far beyond any body a replica accepts, far from
/// overflowing when the header's length is added.
const MAX_CONTENT_LENGTH: u64 = 1 << 40;

/// How the body of an admitted request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// `Content-Length` bytes (0: no body).
    Length(u64),
    /// Chunked: pingora finds the end itself.
    Chunked,
    /// An upgrade: what follows the header is the new protocol's, never buffered.
    Upgrade,
}

/// What the front door learnt from a complete request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// Bytes of the header as received.
    pub(super) len: usize,
    pub(super) body: Body,
    /// `Expect: 100-continue`: the client may wait for a `100 Continue` before it sends the body.
    pub(super) expect_continue: bool,
    /// A chunked body read whole: its length after the header, framing included.
    pub(super) framed: Option<u64>,
}

/// The state of the header being read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    Partial,
    Complete(Head),
    Refused(DoorRefusal),
}

/// Looks for the end of the request header in `buf` (from `next` on: where the previous look
/// stopped) and, once it is there, checks the header.
pub(super) fn scan_head(buf: &[u8], next: &mut usize, max: usize) -> Scan {
    let too_large = |len: usize| {
        if len > max {
            Scan::Refused(DoorRefusal::HeaderTooLarge)
        } else {
            Scan::Partial
        }
    };
    loop {
        // A blank line ends the header: "\n\n" or "\n\r\n".
        let found = buf
            .get(*next..)
            .and_then(|rest| rest.windows(2).position(|w| w == b"\n\n" || w == b"\n\r"))
            .map(|i| *next + i);
        let Some(i) = found else {
            *next = buf.len().saturating_sub(1);
            return too_large(buf.len());
        };
        let blank_end = if buf[i + 1] == b'\n' {
            i + 2
        } else if i + 2 >= buf.len() {
            // "\n\r" at the very end: wait for what follows.
            *next = i;
            return too_large(buf.len());
        } else if buf[i + 2] == b'\n' {
            i + 3
        } else {
            *next = i + 1;
            continue;
        };
        if blank_end > max {
            return Scan::Refused(DoorRefusal::HeaderTooLarge);
        }
        match check_head(&buf[..blank_end]) {
            // httparse skips blank lines before a request: this was one of them.
            Scan::Partial => *next = i + 1,
            done => return done,
        }
    }
}

/// Parses a complete header (ending in its blank line) and decides whether pingora gets it.
fn check_head(header: &[u8]) -> Scan {
    // Uninitialised slots: httparse fills as many as the header has; initialising all 256
    // (8 KiB) for each request took about a third of the header check's instructions.
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(header, &mut fields) {
        Err(httparse::Error::Token | httparse::Error::Version) => {}
        parsed => return finish_check(&req, parsed, 0),
    }
    // pingora percent-encodes a few illegal bytes in the request target and parses again; accept
    // what it would.
    let Some(fixed) = escape_target(header) else {
        return Scan::Refused(DoorRefusal::BadRequest("the request line is malformed"));
    };
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(&fixed, &mut fields);
    finish_check(&req, parsed, fixed.len() - header.len())
}

fn finish_check(
    req: &httparse::Request<'_, '_>,
    parsed: httparse::Result<usize>,
    grown: usize,
) -> Scan {
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n - grown,
        Ok(httparse::Status::Partial) => return Scan::Partial,
        Err(httparse::Error::TooManyHeaders) => return Scan::Refused(DoorRefusal::HeaderTooLarge),
        Err(_) => {
            return Scan::Refused(DoorRefusal::BadRequest(
                "the request header could not be parsed",
            ))
        }
    };
    let http11 = req.version == Some(1);
    if req.method == Some("CONNECT") {
        return Scan::Refused(DoorRefusal::Connect);
    }
    let named = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let hosts = named("host").count();
    if hosts > 1 || (http11 && hosts == 0) {
        return Scan::Refused(DoorRefusal::BadRequest(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if named("host").any(|h| h.value.contains(&b'@')) {
        return Scan::Refused(DoorRefusal::BadRequest(
            "the Host header must be host[:port], without userinfo",
        ));
    }
    if authority_refused(req) {
        return Scan::Refused(DoorRefusal::BadRequest(
            "the request target's authority is ambiguous or differs from Host",
        ));
    }
    let chunked = named("transfer-encoding").next().is_some();
    if chunked && !http11 {
        return Scan::Refused(DoorRefusal::BadRequest(
            "Transfer-Encoding is not allowed in an HTTP/1.0 request",
        ));
    }
    // The body's length is known only when chunked is the last coding (RFC 9112 6.3), which is
    // also what pingora takes.
    let last_coding = named("transfer-encoding")
        .next_back()
        .and_then(|h| h.value.rsplit(|b| *b == b',').next())
        .map(<[u8]>::trim_ascii);
    if chunked && !last_coding.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
        return Scan::Refused(DoorRefusal::BadRequest(
            "Transfer-Encoding must end in chunked",
        ));
    }
    let upgrade = named("upgrade").next().is_some();
    let mut length: Option<u64> = None;
    for h in named("content-length") {
        // Identical repeats, also comma-separated on one line, are one length (RFC 9110 8.6).
        for part in h.value.split(|b| *b == b',') {
            let n = std::str::from_utf8(part)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (n, length) {
                (None, _) => {
                    return Scan::Refused(DoorRefusal::BadRequest("Content-Length is not a number"))
                }
                // No body that large can be meant; refused so that the allowance arithmetic
                // (header length plus body length) stays far from overflowing.
                (Some(n), _) if n > MAX_CONTENT_LENGTH => {
                    return Scan::Refused(DoorRefusal::BadRequest("Content-Length is too large"))
                }
                (Some(n), Some(prev)) if n != prev => {
                    return Scan::Refused(DoorRefusal::BadRequest(
                        "Content-Length is given twice with different values",
                    ))
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    let body = if upgrade {
        Body::Upgrade
    } else if chunked {
        Body::Chunked
    } else {
        Body::Length(length.unwrap_or(0))
    };
    // An interim answer goes to HTTP/1.1 clients only (RFC 9110 15.2), and never before an upgrade.
    let expect_continue = http11
        && !upgrade
        && named("expect").any(|h| h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    Scan::Complete(Head {
        len,
        body,
        expect_continue,
        framed: None,
    })
}

/// Whether pingora would refuse the request for its authority: an absolute-form target with
/// userinfo, or whose authority differs from `Host`, or that is ambiguous. pingora answers those
/// with an empty `400` of its own; running its own check here lets the front door answer in JSON.
/// An origin-form target (`/...`), nearly every request, has no authority and is not checked.
fn authority_refused(req: &httparse::Request<'_, '_>) -> bool {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return false;
    };
    if target.starts_with('/') {
        return false;
    }
    let Ok(mut header) = RequestHeader::build_no_case(method, target.as_bytes(), Some(2)) else {
        return true;
    };
    for host in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
    {
        let Ok(value) = http::HeaderValue::from_bytes(host.value) else {
            return true;
        };
        if header.append_header(http::header::HOST, value).is_err() {
            return true;
        }
    }
    validate_request_authority(&header).is_err()
}

/// Takes the `Expect` field lines out of the header that fills the first `len` bytes of `buf`;
/// the header's new length. A request line cannot start with `expect:` (a method is followed by a
/// space), so every line that does is a field line.
pub(super) fn strip_expect(buf: &mut BytesMut, len: usize) -> usize {
    let mut kept = BytesMut::with_capacity(buf.len());
    for line in buf[..len].split_inclusive(|b| *b == b'\n') {
        let expect = line
            .get(..7)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"expect:"));
        if !expect {
            kept.extend_from_slice(line);
        }
    }
    let new_len = kept.len();
    kept.extend_from_slice(&buf[len..]);
    *buf = kept;
    new_len
}

/// The header with the bytes pingora would escape in the request target percent-encoded, or
/// `None` when its first line is not `METHOD SP target SP HTTP/d[.d]` or nothing needs escaping.
fn escape_target(header: &[u8]) -> Option<Vec<u8>> {
    let line_end = header.iter().position(|b| *b == b'\n')?;
    let line = header[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&header[..line_end]);
    let method_end = line.iter().position(|b| *b == b' ')?;
    if method_end == 0
        || !line[..method_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        return None;
    }
    let version_at = line.windows(6).rposition(|w| w == b" HTTP/")?;
    if version_at <= method_end + 1 {
        return None;
    }
    let version = &line[version_at + 6..];
    let version_ok = matches!(version, [d] | [d, b'.', _] if d.is_ascii_digit())
        && version.iter().all(|b| b.is_ascii_digit() || *b == b'.');
    if !version_ok {
        return None;
    }
    let target = &line[method_end + 1..version_at];
    let mut out = Vec::with_capacity(header.len() + 32);
    out.extend_from_slice(&header[..method_end + 1]);
    let mut changed = false;
    for &b in target {
        if b.is_ascii_control() || b >= 0x80 || matches!(b, b' ' | b'<' | b'>' | b'"') {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
            changed = true;
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&header[version_at..]);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &[u8]) -> Scan {
        scan_head(text, &mut 0, 32 * 1024)
    }

    fn complete(text: &[u8]) -> Head {
        match scan(text) {
            Scan::Complete(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    fn refused(text: &[u8]) -> DoorRefusal {
        match scan(text) {
            Scan::Refused(r) => r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn a_header_is_complete_at_its_blank_line() {
        let get = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            complete(get),
            Head {
                len: get.len(),
                body: Body::Length(0),
                expect_continue: false,
                framed: None,
            }
        );
        let mut two = get.to_vec();
        two.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(complete(&two).len, get.len(), "only the first request");
        let post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete(post).body, Body::Length(5));
        let chunked = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(complete(chunked).body, Body::Chunked);
        assert_eq!(complete(b"GET / HTTP/1.1\nHost: x\n\n").len, 24);
        // Blank lines before a request are skipped, as httparse does.
        let lead = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(complete(lead).len, lead.len());
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").body, Body::Length(0));
        let same = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n";
        assert_eq!(complete(same).body, Body::Length(3));
    }

    #[test]
    fn a_partial_header_waits_and_resumes_where_it_stopped() {
        let full = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut scanned = 0;
        for cut in 1..full.len() {
            assert_eq!(
                scan_head(&full[..cut], &mut scanned, 1024),
                Scan::Partial,
                "{cut}"
            );
        }
        assert!(matches!(
            scan_head(full, &mut scanned, 1024),
            Scan::Complete(_)
        ));
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        assert!(matches!(
            refused(b"GET / HTTP/1.1\r\n\r\n"),
            DoorRefusal::BadRequest(m) if m.contains("Host")
        ));
        assert!(matches!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            DoorRefusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(b"HELLO\r\n\r\n"),
            DoorRefusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
            ),
            DoorRefusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            DoorRefusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            DoorRefusal::BadRequest(_)
        ));
        for coding in ["identity", "gzip", "chunked, gzip"] {
            let head = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert!(
                matches!(refused(head.as_bytes()), DoorRefusal::BadRequest(m) if m.contains("chunked")),
                "{coding}"
            );
        }
        let gzip_chunked =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(complete(gzip_chunked).body, Body::Chunked);
        assert!(matches!(
            refused(b"GET / HTTP/1.1\r\nHost: user:pw@x\r\n\r\n"),
            DoorRefusal::BadRequest(m) if m.contains("userinfo")
        ));
        for target in ["http://other/a", "http://u@x/a", "http:/\\x/a"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(
                matches!(
                    refused(head.as_bytes()),
                    DoorRefusal::BadRequest(m) if m.contains("authority")
                ),
                "{target}"
            );
        }
        // The same authority in both places is an absolute-form request like any other.
        complete(b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n");
        complete(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        // A length that would overflow the header's length added to it.
        assert!(matches!(
            refused(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"
            ),
            DoorRefusal::BadRequest(m) if m.contains("too large")
        ));
        assert_eq!(
            refused(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"),
            DoorRefusal::Connect
        );
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(2000)
        );
        assert_eq!(
            scan_head(long.as_bytes(), &mut 0, 1024),
            Scan::Refused(DoorRefusal::HeaderTooLarge)
        );
        assert_eq!(
            scan_head(&[b'a'; 2000], &mut 0, 1024),
            Scan::Refused(DoorRefusal::HeaderTooLarge),
            "no blank line within the limit"
        );
    }

    #[test]
    fn expect_lines_are_taken_out_of_a_buffered_header() {
        let header =
            b"POST /a HTTP/1.1\r\nHost: x\r\nEXPECT: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert!(complete(header).expect_continue);
        let mut buf = BytesMut::from(&header[..]);
        buf.extend_from_slice(b"hiGET / HTTP/1.1\r\n");
        let len = strip_expect(&mut buf, header.len());
        assert_eq!(
            &buf[..len],
            &b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"[..]
        );
        assert_eq!(&buf[len..], &b"hiGET / HTTP/1.1\r\n"[..]);
        assert!(!complete(b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: other\r\n\r\n").expect_continue);
        assert!(
            !complete(b"POST /a HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue,
            "no interim answer to HTTP/1.0"
        );
    }

    #[test]
    fn targets_pingora_would_escape_are_accepted() {
        let raw = b"GET /a b|\"c\" HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(complete(raw).len, raw.len());
        assert_eq!(
            escape_target(raw).as_deref(),
            Some(&b"GET /a%20b|%22c%22 HTTP/1.1\r\nHost: x\r\n\r\n"[..])
        );
    }
}
