//! HTTP/1.1 on the wire, for the generator's one-request-at-a-time connections: writing a
//! request, and finding in the bytes read so far a complete answer (head parsed by `httparse`,
//! the parser hyper uses; body by `Content-Length`, chunked coding, or the connection's end).
//!
//! Pure functions over byte slices, so every split of an answer across reads can be tested.

use bytes::Bytes;

/// Most header lines an answer may carry.
const MAX_HEADERS: usize = 48;
/// Largest answer head accepted; anything bigger is not an answer from the lab.
pub const MAX_HEAD: usize = 64 * 1024;

/// The bytes are not an answer the generator can read: a bad head, length or chunk. The
/// protocol layer says only that; the client decides how such a failure is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The optional header fields of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields<'a> {
    pub cookie: Option<&'a [u8]>,
    /// The admin API's bearer token; the services' requests carry none.
    pub authorization: Option<&'a [u8]>,
    /// The body's media type; JSON when `None`.
    pub content_type: Option<&'a [u8]>,
}

/// Appends a request to `out`. `body` is sent as `fields.content_type` says, JSON by default; a POST without a body says
/// `Content-Length: 0` so the server need not wait for one.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    prefix: &str,
    path: &str,
    host: &[u8],
    fields: Fields<'_>,
    body: Option<&[u8]>,
) {
    let Fields {
        cookie,
        authorization,
        content_type,
    } = fields;
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    // Lets the proxy's dashboard show when a load run is going.
    out.extend_from_slice(b"\r\nx-statelab-load: 1");
    if let Some(cookie) = cookie {
        out.extend_from_slice(b"\r\ncookie: ");
        out.extend_from_slice(cookie);
    }
    if let Some(authorization) = authorization {
        out.extend_from_slice(b"\r\nauthorization: ");
        out.extend_from_slice(authorization);
    }
    match body {
        Some(body) => {
            out.extend_from_slice(b"\r\ncontent-type: ");
            out.extend_from_slice(content_type.unwrap_or(b"application/json"));
            out.extend_from_slice(b"\r\ncontent-length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(body);
        }
        None if method != "GET" => out.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n"),
        None => out.extend_from_slice(b"\r\n\r\n"),
    }
}

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    Length(usize),
    Chunked,
    /// No length: the body runs to the end of the connection.
    Close,
}

/// A parsed answer head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub replica: Option<Bytes>,
    pub set_cookies: Vec<Bytes>,
    /// Bytes the head took, up to and including the blank line.
    pub len: usize,
    pub body: BodyEnd,
    /// The connection cannot carry another request (`Connection: close`, HTTP/1.0, or a body
    /// that ends with the connection).
    pub close: bool,
}

/// Parses the head at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        _ => return Err(Malformed),
    };
    let status = response.code.ok_or(Malformed)?;
    // An interim answer (100 Continue and the like) is not the answer: the caller skips it.
    let mut head = Head {
        status,
        replica: None,
        set_cookies: Vec::new(),
        len,
        body: BodyEnd::Close,
        close: response.version == Some(0),
    };
    let mut length = None;
    let mut chunked = false;
    for h in response.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| Malformed)?;
            length = Some(text.trim().parse::<usize>().map_err(|_| Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|b| *b == b',')
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"close") {
                head.close = true;
            }
        } else if name.eq_ignore_ascii_case("x-replica") {
            head.replica = Some(Bytes::copy_from_slice(h.value));
        } else if name.eq_ignore_ascii_case("set-cookie") {
            head.set_cookies.push(Bytes::copy_from_slice(h.value));
        }
    }
    head.body = if status == 204 || status == 304 || (100..200).contains(&status) {
        BodyEnd::Length(0)
    } else if chunked {
        BodyEnd::Chunked
    } else if let Some(n) = length {
        BodyEnd::Length(n)
    } else {
        head.close = true;
        BodyEnd::Close
    };
    Ok(Some(head))
}

/// Finds the complete body in `rest` (the bytes after the head): `Ok(Some((body, used)))`, or
/// `Ok(None)` when more bytes are needed. A body that ends with the connection is never complete
/// here; the caller takes what it has at the end of the stream.
pub fn take_body(rest: &[u8], end: BodyEnd) -> Result<Option<(Bytes, usize)>, Malformed> {
    match end {
        BodyEnd::Length(n) => {
            Ok((rest.len() >= n).then(|| (Bytes::copy_from_slice(&rest[..n]), n)))
        }
        BodyEnd::Close => Ok(None),
        BodyEnd::Chunked => take_chunked(rest),
    }
}

fn take_chunked(rest: &[u8]) -> Result<Option<(Bytes, usize)>, Malformed> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (line, size) = match httparse::parse_chunk_size(&rest[at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Malformed),
        };
        let size = usize::try_from(size).map_err(|_| Malformed)?;
        at += line;
        if size == 0 {
            // Optional trailer lines, then the blank line.
            let tail = &rest[at..];
            if tail.starts_with(b"\r\n") {
                return Ok(Some((Bytes::from(body), at + 2)));
            }
            return Ok(tail
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| (Bytes::from(std::mem::take(&mut body)), at + i + 4)));
        }
        let Some(chunk) = rest.get(at..at + size) else {
            return Ok(None);
        };
        let after = &rest[at + size..];
        if !b"\r\n".starts_with(&after[..after.len().min(2)]) {
            return Err(Malformed);
        }
        if after.len() < 2 {
            return Ok(None);
        }
        body.extend_from_slice(chunk);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_with_host_cookie_and_length() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "POST",
            "/stateful",
            "/cart/items",
            b"h:1",
            Fields {
                cookie: Some(b"a=b"),
                ..Fields::default()
            },
            Some(b"{}"),
        );
        assert_eq!(
            out,
            b"POST /stateful/cart/items HTTP/1.1\r\nhost: h:1\r\nx-statelab-load: 1\r\ncookie: a=b\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        out.clear();
        write_request(
            &mut out,
            "POST",
            "",
            "/logout",
            b"h:1",
            Fields::default(),
            None,
        );
        assert_eq!(
            out,
            b"POST /logout HTTP/1.1\r\nhost: h:1\r\nx-statelab-load: 1\r\ncontent-length: 0\r\n\r\n"
        );
        out.clear();
        write_request(&mut out, "GET", "", "/me", b"h:1", Fields::default(), None);
        assert_eq!(
            out,
            b"GET /me HTTP/1.1\r\nhost: h:1\r\nx-statelab-load: 1\r\n\r\n"
        );
        out.clear();
        let auth = Fields {
            authorization: Some(b"Bearer t"),
            ..Fields::default()
        };
        write_request(&mut out, "GET", "", "/admin/status", b"h:1", auth, None);
        assert_eq!(
            out,
            b"GET /admin/status HTTP/1.1\r\nhost: h:1\r\nx-statelab-load: 1\r\nauthorization: Bearer t\r\n\r\n"
        );
        out.clear();
        let image = Fields {
            content_type: Some(b"image/png"),
            ..Fields::default()
        };
        write_request(
            &mut out,
            "PUT",
            "",
            "/avatar",
            b"h:1",
            image,
            Some(b"\x89PNG"),
        );
        assert_eq!(
            out,
            b"PUT /avatar HTTP/1.1\r\nhost: h:1\r\nx-statelab-load: 1\r\ncontent-type: image/png\r\ncontent-length: 4\r\n\r\n\x89PNG"
        );
    }

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nx-replica: stateful-2\r\nSet-Cookie: a=1; Path=/\r\nset-cookie: b=2\r\ncontent-length: 5\r\n\r\nhello";

    #[test]
    fn an_answer_split_anywhere_is_found_once_complete() {
        for cut in 0..ANSWER.len() {
            let part = &ANSWER[..cut];
            let complete = match parse_head(part).expect("valid so far") {
                None => false,
                Some(head) => take_body(&part[head.len..], head.body)
                    .expect("valid body")
                    .is_some(),
            };
            assert!(!complete, "complete after only {cut} bytes");
        }
        let head = parse_head(ANSWER).expect("valid").expect("complete");
        assert_eq!(head.status, 200);
        assert_eq!(head.replica.as_deref(), Some(&b"stateful-2"[..]));
        assert_eq!(head.set_cookies.len(), 2);
        assert!(!head.close);
        let (body, used) = take_body(&ANSWER[head.len..], head.body)
            .expect("ok")
            .expect("all");
        assert_eq!((&body[..], used), (&b"hello"[..], 5));
    }

    #[test]
    fn chunked_bodies_with_and_without_trailers() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.body, BodyEnd::Chunked);
        let wire = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\nNEXT";
        for cut in 0..wire.len() - 4 {
            assert_eq!(
                take_body(&wire[..cut], BodyEnd::Chunked).expect("valid so far"),
                None
            );
        }
        let (body, used) = take_body(wire, BodyEnd::Chunked)
            .expect("ok")
            .expect("complete");
        assert_eq!((&body[..], used), (&b"abcde"[..], wire.len() - 4));
        let trailers = b"1\r\nx\r\n0\r\nx-t: 1\r\n\r\n";
        let (body, used) = take_body(trailers, BodyEnd::Chunked)
            .expect("ok")
            .expect("complete");
        assert_eq!((&body[..], used), (&b"x"[..], trailers.len()));
        assert!(take_body(b"zz\r\n", BodyEnd::Chunked).is_err());
        assert!(take_body(b"1\r\nxy", BodyEnd::Chunked).is_err());
    }

    #[test]
    fn closing_answers_and_bodiless_statuses() {
        let head = parse_head(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!((head.body, head.close), (BodyEnd::Length(0), true));
        let head = parse_head(b"HTTP/1.0 200 OK\r\n\r\nrest")
            .expect("valid")
            .expect("complete");
        assert_eq!((head.body, head.close), (BodyEnd::Close, true));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
