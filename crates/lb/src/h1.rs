//! HTTP/1.1 as the Http proxy speaks it: message heads parsed with `httparse` and rewritten for the
//! other side in one pass, and where bodies end (`Content-Length`, chunked, or the close of the
//! connection). Headers are never copied into maps: a head goes from the read buffer to the write buffer.
//!
//! What a head becomes (RFC 9110 §7.6, RFC 9112):
//! - to a backend: origin-form target (an absolute-form one gives its authority as `Host` when there is
//!   none), HTTP/1.1, hop-by-hop headers gone (`Connection` and what it names, `Keep-Alive`,
//!   `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`), `Expect: 100-continue` answered by the proxy
//!   itself, `X-Forwarded-For` extended with the client's address, `X-Forwarded-Proto: http`;
//! - to a client: HTTP/1.1, hop-by-hop headers gone, `Connection: close` when the proxy will close,
//!   `Connection: keep-alive` for an HTTP/1.0 client it keeps; a chunked body to an HTTP/1.0 client is
//!   de-chunked and ended by the close.
//!
//! It does no I/O (`http.rs` does) and picks nothing.

/// A head larger than this is refused (431 from a client, 502 from a backend).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Header lines in one head, at most.
const MAX_HEADERS: usize = 128;

/// Why a client's request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// 400: not HTTP/1.x, or framing that cannot be trusted.
    Bad,
    /// 431: the head is too large or has too many lines.
    TooLarge,
}

/// Where a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, up to the last chunk and its trailers.
    Chunked,
    /// Everything until the sender closes (responses only).
    Close,
}

/// A client's request, as far as the proxy needs to know it. The head for the backend is in the `out`
/// buffer given to `parse_request`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    /// Bytes of the head in the read buffer; the body (or the next request) follows.
    pub(crate) head_len: usize,
    pub(crate) body: Framing,
    /// The client wants the connection kept after the answer.
    pub(crate) keep_alive: bool,
    pub(crate) http10: bool,
    /// HEAD: the answer has no body, whatever its headers say.
    pub(crate) is_head: bool,
    /// Safe to send again after a failure (RFC 9110 §9.2.2).
    pub(crate) idempotent: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub(crate) expect_continue: bool,
}

/// A backend's response head. The head for the client is in the `out` buffer given to
/// `parse_response`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Response {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    /// 1xx: skip `head_len` bytes and read the final answer (nothing was written to `out`).
    pub(crate) interim: bool,
    pub(crate) body: Framing,
    /// Whether the backend connection can carry another request once the body is read.
    pub(crate) reusable: bool,
    /// The proxy closes the client connection after this answer (it said so in the head).
    pub(crate) close_client: bool,
    /// Chunked to an HTTP/1.0 client: forward only the payload.
    pub(crate) dechunk: bool,
}

/// What the client side wants of an answer, for `parse_response`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    pub(crate) is_head: bool,
    pub(crate) http10: bool,
    /// The proxy may keep the client connection (the client asked, the listener is not stopping, the
    /// request body was read to its end).
    pub(crate) keep_client: bool,
}

/// The "Connection" header's tokens that matter, and the other header names it makes hop-by-hop.
#[derive(Default)]
struct ConnectionTokens<'a> {
    close: bool,
    keep_alive: bool,
    /// Names listed besides close and keep-alive: rare, so a Vec only when there are some.
    others: Vec<&'a [u8]>,
}

impl<'a> ConnectionTokens<'a> {
    fn of(headers: &[httparse::Header<'a>]) -> ConnectionTokens<'a> {
        let mut t = ConnectionTokens::default();
        for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection")) {
            for token in h.value.split(|b| *b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    t.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    t.keep_alive = true;
                } else if !token.is_empty() {
                    t.others.push(token);
                }
            }
        }
        t
    }

    fn names(&self, name: &str) -> bool {
        self.others.iter().any(|o| o.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Hop-by-hop headers of every message (RFC 9110 §7.6.1). `Upgrade` goes too: this proxy does not
/// tunnel protocol switches.
fn hop_by_hop(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// The framing `Transfer-Encoding` values give: chunked when it is the last coding.
fn chunked_last(headers: &[httparse::Header<'_>]) -> Option<bool> {
    let mut last: Option<&[u8]> = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
        if let Some(c) = h.value.rsplit(|b| *b == b',').map(trim).find(|c| !c.is_empty()) {
            last = Some(c);
        }
    }
    last.map(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// `Content-Length`: none, one value (repeated values must agree), or an error.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, ()> {
    let mut found: Option<u64> = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        for v in h.value.split(|b| *b == b',').map(trim) {
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                return Err(());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the proxy knows of the client connection a head came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer<'a> {
    /// The client's address as text, for X-Forwarded-For.
    pub(crate) forwarded_for: &'a [u8],
    /// The address the client connected to, as text: the `Host` of a request that has none (HTTP/1.0),
    /// since the backend is spoken to in HTTP/1.1, which requires one.
    pub(crate) host: &'a [u8],
}

/// Parse a client's request head at the start of `buf` and write the head its backend gets to `out`
/// (cleared first). `Ok(None)`: the head is not complete yet.
pub(crate) fn parse_request(buf: &[u8], peer: Peer<'_>, out: &mut Vec<u8>) -> Result<Option<Request>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(RequestError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooLarge),
        Err(_) => return Err(RequestError::Bad),
    };
    if head_len > MAX_HEAD {
        return Err(RequestError::TooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Bad);
    };
    let headers = req.headers;
    let http10 = minor == 0;
    let conn = ConnectionTokens::of(headers);
    let chunked = chunked_last(headers);
    let length = content_length(headers).map_err(|()| RequestError::Bad)?;
    let body = match (chunked, length) {
        (Some(true), _) => Framing::Chunked,
        // A request body must be chunked last to be delimited (RFC 9112 §6.3).
        (Some(false), _) => return Err(RequestError::Bad),
        (None, Some(0) | None) => Framing::None,
        (None, Some(n)) => Framing::Length(n),
    };
    // Content-Length beside Transfer-Encoding is a smuggling attempt or a broken client: the length is
    // dropped and the connection closed after the answer.
    let conflicting = chunked.is_some() && length.is_some();
    let keep_alive = !conflicting && !conn.close && (!http10 || conn.keep_alive);
    let mut expect_continue = false;

    // The request line: origin-form for the backend.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let mut host_from_target: Option<http::uri::Authority> = None;
    if target.starts_with('/') || target == "*" || method.eq_ignore_ascii_case("CONNECT") {
        out.extend_from_slice(target.as_bytes());
    } else {
        // Absolute-form (a client talking to us as a proxy).
        let uri: http::Uri = target.parse().map_err(|_| RequestError::Bad)?;
        host_from_target = uri.authority().cloned();
        out.extend_from_slice(uri.path_and_query().map_or("/", |pq| pq.as_str()).as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let mut has_host = false;
    let mut xff_seen = false;
    for h in headers.iter() {
        let name = h.name;
        if hop_by_hop(name) || conn.names(name) || name.eq_ignore_ascii_case("x-forwarded-proto") {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            // Joined with ours below, in order.
            xff_seen = true;
            continue;
        }
        if conflicting && name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if name.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                // Answered by the proxy when it is ready for the body; the backend reads it as it comes.
                expect_continue = !http10;
                continue;
            }
        } else if name.eq_ignore_ascii_case("host") {
            has_host = true;
        }
        header_line(out, name.as_bytes(), h.value);
    }
    if !has_host {
        header_line(out, b"host", host_from_target.as_ref().map_or(peer.host, |a| a.as_str().as_bytes()));
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if xff_seen {
        for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")) {
            out.extend_from_slice(trim(h.value));
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer.forwarded_for);
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n\r\n");

    let idempotent = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"].contains(&method);
    Ok(Some(Request {
        head_len,
        body,
        keep_alive,
        http10,
        is_head: method == "HEAD",
        idempotent,
        expect_continue: expect_continue && body != Framing::None,
    }))
}

/// Parse a backend's response head at the start of `buf` and write the head the client gets to `out`
/// (cleared first). `Ok(None)`: not complete yet; `Err`: not an HTTP/1.x answer we can forward.
pub(crate) fn parse_response(buf: &[u8], to: Answering, out: &mut Vec<u8>) -> Result<Option<Response>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        _ => return Err(()),
    };
    let (Some(minor), Some(status)) = (resp.version, resp.code) else { return Err(()) };
    if status == 101 {
        // No Upgrade was sent, so no switch may come back.
        return Err(());
    }
    if (100..200).contains(&status) {
        return Ok(Some(Response {
            head_len,
            status,
            interim: true,
            body: Framing::None,
            reusable: false,
            close_client: false,
            dechunk: false,
        }));
    }
    let headers = resp.headers;
    let conn = ConnectionTokens::of(headers);
    let chunked = chunked_last(headers);
    let length = content_length(headers)?;
    let body = if to.is_head || status == 204 || status == 304 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let backend_keeps = !conn.close && (minor == 1 || conn.keep_alive);
    let reusable = backend_keeps && body != Framing::Close;
    let dechunk = to.http10 && body == Framing::Chunked;
    let close_client = !to.keep_client || body == Framing::Close || dechunk;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers.iter() {
        let name = h.name;
        if hop_by_hop(name) || conn.names(name) {
            continue;
        }
        let te = name.eq_ignore_ascii_case("transfer-encoding");
        if (dechunk && te) || (chunked.is_some() && name.eq_ignore_ascii_case("content-length")) {
            continue;
        }
        header_line(out, name.as_bytes(), h.value);
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    } else if to.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Response { head_len, status, interim: false, body, reusable, close_client, dechunk }))
}

/// The proxy's own short answer (400, 431, 502, 503): head, and body unless for HEAD.
pub(crate) fn own_answer(out: &mut Vec<u8>, status: &str, text: &str, close: bool, is_head: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(text.len().to_string().as_bytes());
    out.extend_from_slice(if close { b"\r\nconnection: close\r\n\r\n" as &[u8] } else { b"\r\n\r\n" });
    if !is_head {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A body that is not well-formed chunked encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadChunk;

/// Where a body stands as its bytes go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Until the sender closes.
    Close,
}

impl Body {
    pub(crate) fn new(framing: Framing) -> Body {
        match framing {
            Framing::None => Body::Length(0),
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunked::default()),
            Framing::Close => Body::Close,
        }
    }

    pub(crate) fn done(&self) -> bool {
        match self {
            Body::Length(n) => *n == 0,
            Body::Chunked(c) => c.state == ChunkState::Done,
            Body::Close => false,
        }
    }

    /// How many bytes at the start of `input` belong to the body (forwarded as they are). With
    /// `payload`, a chunked body's data (without its framing) is appended there instead, for a
    /// de-chunked copy. The body has ended when `done()`.
    pub(crate) fn take(&mut self, input: &[u8], payload: Option<&mut Vec<u8>>) -> Result<usize, BadChunk> {
        match self {
            Body::Length(n) => {
                let k = (*n).min(input.len() as u64) as usize;
                *n -= k as u64;
                if let Some(p) = payload {
                    p.extend_from_slice(&input[..k]);
                }
                Ok(k)
            }
            Body::Close => {
                if let Some(p) = payload {
                    p.extend_from_slice(input);
                }
                Ok(input.len())
            }
            Body::Chunked(c) => c.feed(input, payload),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    /// Hex digits of a chunk size (`digits` of them so far).
    #[default]
    Size,
    /// Whitespace or an extension after the size, up to CR.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// A chunked body's decoder: only finds where chunks and the body end (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
}

impl Chunked {
    fn feed(&mut self, input: &[u8], mut payload: Option<&mut Vec<u8>>) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::Done {
            let b = input[i];
            match self.state {
                ChunkState::Size => match (b as char).to_digit(16) {
                    Some(d) => {
                        // 15 hex digits: far beyond any body, and no overflow.
                        if self.digits >= 15 {
                            return Err(BadChunk);
                        }
                        self.size = self.size * 16 + u64::from(d);
                        self.digits += 1;
                    }
                    None if self.digits == 0 => return Err(BadChunk),
                    None if b == b'\r' => self.state = ChunkState::SizeLf,
                    None if b == b';' || b == b' ' || b == b'\t' => self.state = ChunkState::Ext,
                    None => return Err(BadChunk),
                },
                ChunkState::Ext => {
                    if b == b'\r' {
                        self.state = ChunkState::SizeLf;
                    } else if b == b'\n' {
                        return Err(BadChunk);
                    }
                }
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.digits = 0;
                    self.state = if self.size == 0 { ChunkState::TrailerStart } else { ChunkState::Data };
                }
                ChunkState::Data => {
                    let k = self.size.min((input.len() - i) as u64) as usize;
                    if let Some(p) = payload.as_deref_mut() {
                        p.extend_from_slice(&input[i..i + k]);
                    }
                    self.size -= k as u64;
                    i += k;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(BadChunk);
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::TrailerStart => {
                    self.state = if b == b'\r' { ChunkState::EndLf } else { ChunkState::TrailerLine };
                }
                ChunkState::TrailerLine => {
                    if b == b'\r' {
                        self.state = ChunkState::TrailerLf;
                    }
                }
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = ChunkState::TrailerStart;
                }
                ChunkState::EndLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = ChunkState::Done;
                }
                ChunkState::Done => {}
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(head: &[u8]) -> Vec<(String, String)> {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut h);
        assert!(r.parse(head).unwrap().is_complete());
        r.headers.iter().map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())).collect()
    }

    #[test]
    fn hop_by_hop_headers_go_and_forwarded_headers_come() {
        let raw = b"GET http://example.test/a?b=1 HTTP/1.0\r\nconnection: close, x-private\r\nx-private: 1\r\n\
                    keep-alive: timeout=5\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: https\r\n\
                    accept: */*\r\n\r\nNEXT";
        let mut out = Vec::new();
        let r = parse_request(raw, Peer { forwarded_for: b"127.0.0.1", host: b"lb:80" }, &mut out).unwrap().unwrap();
        assert_eq!(&raw[r.head_len..], b"NEXT");
        assert!(!r.keep_alive && r.http10 && r.idempotent && r.body == Framing::None);
        assert!(out.starts_with(b"GET /a?b=1 HTTP/1.1\r\n"), "{}", String::from_utf8_lossy(&out));
        let h = headers_of(&out);
        let get = |n: &str| h.iter().filter(|(k, _)| k == n).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("host"), ["example.test"]);
        for gone in ["connection", "x-private", "keep-alive"] {
            assert!(get(gone).is_empty(), "{gone}");
        }
        assert_eq!(get("x-forwarded-for"), ["10.0.0.9, 127.0.0.1"]);
        assert_eq!(get("x-forwarded-proto"), ["http"]);
        assert_eq!(get("accept"), ["*/*"]);
    }

    const PEER: Peer<'static> = Peer { forwarded_for: b"1", host: b"lb:80" };

    #[test]
    fn request_framing_and_keep_alive() {
        let mut out = Vec::new();
        let r = parse_request(b"POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello", PEER, &mut out);
        let r = r.unwrap().unwrap();
        assert_eq!((r.body, r.keep_alive, r.idempotent), (Framing::Length(5), true, false));
        let r =
            parse_request(b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n", PEER, &mut out)
                .unwrap()
                .unwrap();
        assert_eq!((r.body, r.keep_alive), (Framing::Chunked, false), "conflicting framing closes");
        assert!(!String::from_utf8_lossy(&out).contains("content-length"));
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nhost: x\r\n", PEER, &mut out).unwrap().map(|r| r.head_len), None);
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\ncontent-length: 1, 2\r\n\r\n", PEER, &mut out).unwrap_err(),
            RequestError::Bad
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", PEER, &mut out).unwrap_err(),
            RequestError::Bad
        );
        assert_eq!(parse_request(b"GARBAGE\r\n\r\n", PEER, &mut out).unwrap_err(), RequestError::Bad);
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_request(big.as_bytes(), PEER, &mut out).unwrap_err(), RequestError::TooLarge);
        let r = parse_request(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n", PEER, &mut out).unwrap().unwrap();
        assert!(r.keep_alive && r.http10);
        assert!(out.windows(12).any(|w| w == b"host: lb:80\r"), "a Host for the HTTP/1.1 backend");
        let r = parse_request(b"PUT / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n", PEER, &mut out)
            .unwrap()
            .unwrap();
        assert!(r.expect_continue && !String::from_utf8_lossy(&out).contains("expect"));
    }

    fn answering(http10: bool) -> Answering {
        Answering { is_head: false, http10, keep_client: true }
    }

    #[test]
    fn responses_are_framed_for_the_client() {
        let mut out = Vec::new();
        let raw = b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\ncontent-length: 2\r\n\r\nhi";
        let r = parse_response(raw, answering(false), &mut out).unwrap().unwrap();
        assert_eq!((r.status, r.body, r.reusable, r.close_client), (200, Framing::Length(2), true, false));
        assert_eq!(&raw[r.head_len..], b"hi");
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n");

        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let r = parse_response(raw, answering(true), &mut out).unwrap().unwrap();
        assert!(r.dechunk && r.close_client && r.reusable);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");

        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\n", answering(false), &mut out).unwrap().unwrap();
        assert_eq!((r.body, r.reusable, r.close_client), (Framing::Close, false, true));
        let r = parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", answering(false), &mut out).unwrap().unwrap();
        assert!(r.interim);
        let head = Answering { is_head: true, http10: true, keep_client: true };
        let r =
            parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\n", head, &mut out).unwrap().unwrap();
        assert_eq!((r.body, r.close_client), (Framing::None, false));
        assert!(out.ends_with(b"connection: keep-alive\r\n\r\n"));
        assert!(parse_response(b"HTTP/1.1 101 Switching\r\n\r\n", answering(false), &mut out).is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n", answering(false), &mut out).is_err());
    }

    #[test]
    fn chunked_bodies_end_where_they_end_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut b = Body::new(Framing::Chunked);
            let mut payload = Vec::new();
            let first = b.take(&body[..split], Some(&mut payload)).unwrap();
            assert_eq!(first, split.min(end));
            let second = b.take(&body[first..], Some(&mut payload)).unwrap();
            assert_eq!(first + second, end, "split at {split}");
            assert!(b.done());
            assert_eq!(payload, b"hello");
        }
        let mut b = Body::new(Framing::Chunked);
        assert_eq!(b.take(b"zz\r\n", None), Err(BadChunk));
        let mut b = Body::new(Framing::Length(3));
        assert_eq!((b.take(b"abcdef", None), b.done()), (Ok(3), true));
    }
}
