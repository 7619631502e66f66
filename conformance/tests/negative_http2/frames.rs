//! A minimal HTTP/2 frame layer for the negative tests: frame splitting (RFC 9113 section 4),
//! the few frame writers the hand-rolled server needs (SETTINGS, PING, WINDOW_UPDATE,
//! padded DATA, HEADERS with an HPACK literal-without-indexing block), and [`Wire`], a tap
//! that watches both directions of a connection served by `h2::server` so the tests can
//! assert what actually went over the socket.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;

/// One HTTP/2 frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The DATA payload without the pad length byte and padding (RFC 9113 6.1).
    pub fn data_without_padding(&self) -> &[u8] {
        if self.kind == DATA && self.flags & PADDED != 0 && !self.payload.is_empty() {
            let pad = self.payload[0] as usize;
            let end = self.payload.len().saturating_sub(pad).max(1);
            &self.payload[1..end]
        } else {
            &self.payload
        }
    }

    /// The 32-bit error code of a RST_STREAM, or of a GOAWAY (after last-stream-id).
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        self.payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Splits a byte stream into frames; feed it bytes as they come.
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    preface_left: usize,
}

impl Splitter {
    /// A splitter for the client-to-server direction (skips the 24-byte preface).
    pub fn client_to_server() -> Self {
        Splitter {
            buf: Vec::new(),
            preface_left: PREFACE.len(),
        }
    }

    /// A splitter for the server-to-client direction.
    pub fn server_to_client() -> Self {
        Splitter::default()
    }

    /// Adds bytes and returns the frames they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Frame> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 9 {
                break;
            }
            let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
            if self.buf.len() < 9 + len {
                break;
            }
            let rest = self.buf.split_off(9 + len);
            let head = std::mem::replace(&mut self.buf, rest);
            out.push(Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload: head[9..].to_vec(),
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Writers.

/// Appends one frame to `out`.
pub fn put_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    assert!(len < (1 << 24));
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// SETTINGS with the given (id, value) pairs.
pub fn put_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    let mut p = Vec::new();
    for (id, v) in settings {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    put_frame(out, SETTINGS, 0, 0, &p);
}

/// WINDOW_UPDATE for `stream` (0 = the connection).
pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_frame(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// DATA on `stream`; with `pad = Some(n)` the frame is PADDED with n zero bytes, so it
/// carries `data.len() + 1 + n` flow-controlled bytes. Returns that flow-controlled length.
pub fn put_data(
    out: &mut Vec<u8>,
    stream: u32,
    data: &[u8],
    pad: Option<u8>,
    end_stream: bool,
) -> usize {
    let end = if end_stream { END_STREAM } else { 0 };
    match pad {
        None => {
            put_frame(out, DATA, end, stream, data);
            data.len()
        }
        Some(n) => {
            let mut p = Vec::with_capacity(1 + data.len() + n as usize);
            p.push(n);
            p.extend_from_slice(data);
            p.resize(1 + data.len() + n as usize, 0);
            put_frame(out, DATA, end | PADDED, stream, &p);
            p.len()
        }
    }
}

/// HPACK integer with an `prefix`-bit prefix (RFC 7541 5.1); `first` holds the high bits.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block: `:status` from the static table when it is 200, every other field as
/// "literal header field without indexing, new name" with plain (non-Huffman) strings.
pub fn hpack_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        if *name == ":status" && *value == "200" {
            out.push(0x88); // indexed field 8 = ":status: 200"
            continue;
        }
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// One HEADERS frame (END_HEADERS set) carrying `fields`.
pub fn put_headers(out: &mut Vec<u8>, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    put_frame(out, HEADERS, flags, stream, &hpack_block(fields));
}

// ---------------------------------------------------------------------------------------
// The wire tap.

/// What one stream did on the wire.
#[derive(Debug, Default, Clone)]
pub struct StreamWire {
    /// The client sent END_STREAM.
    pub client_ended: bool,
    /// The server sent END_STREAM.
    pub server_ended: bool,
    /// HEADERS frames written by the server on this stream.
    pub server_headers: usize,
    /// DATA bytes (padding excluded) written by the server.
    pub server_data: usize,
    /// Error code of a RST_STREAM written by the server.
    pub server_rst: Option<u32>,
    /// Error code of a RST_STREAM sent by the client.
    pub client_rst: Option<u32>,
}

/// Frames seen on one connection, both directions.
#[derive(Debug, Default)]
pub struct Wire {
    pub streams: BTreeMap<u32, StreamWire>,
    /// Streams opened by the client and not yet closed in both directions nor reset.
    pub open: std::collections::BTreeSet<u32>,
    /// The most streams open at the same time.
    pub max_open: usize,
    /// GOAWAY frames written by the server: (last-stream-id, error code).
    pub server_goaways: Vec<(u32, u32)>,
    /// RST_STREAM(REFUSED_STREAM) written by the server.
    pub refused: usize,
    /// The client closed its side (EOF on read).
    pub client_eof: bool,
    /// For each write of the server, the streams it ended (END_STREAM) in that write.
    pub server_writes: Vec<Vec<u32>>,
}

impl Wire {
    fn close_if_done(&mut self, id: u32) {
        if let Some(s) = self.streams.get(&id) {
            if (s.client_ended && s.server_ended)
                || s.server_rst.is_some()
                || s.client_rst.is_some()
            {
                self.open.remove(&id);
            }
        }
    }

    fn on_client_frame(&mut self, f: &Frame) {
        match f.kind {
            HEADERS if f.stream != 0 => {
                let new = !self.streams.contains_key(&f.stream);
                let s = self.streams.entry(f.stream).or_default();
                if f.flags & END_STREAM != 0 {
                    s.client_ended = true;
                }
                if new {
                    self.open.insert(f.stream);
                    self.max_open = self.max_open.max(self.open.len());
                }
            }
            DATA if f.flags & END_STREAM != 0 => {
                self.streams.entry(f.stream).or_default().client_ended = true;
            }
            RST_STREAM => {
                self.streams.entry(f.stream).or_default().client_rst = f.error_code();
            }
            _ => return,
        }
        self.close_if_done(f.stream);
    }

    fn on_server_frame(&mut self, f: &Frame) {
        match f.kind {
            HEADERS => {
                let s = self.streams.entry(f.stream).or_default();
                s.server_headers += 1;
                s.server_ended |= f.flags & END_STREAM != 0;
            }
            DATA => {
                let s = self.streams.entry(f.stream).or_default();
                s.server_data += f.data_without_padding().len();
                s.server_ended |= f.flags & END_STREAM != 0;
            }
            RST_STREAM => {
                let code = f.error_code();
                if code == Some(0x7) {
                    self.refused += 1;
                }
                self.streams.entry(f.stream).or_default().server_rst = code;
            }
            GOAWAY => {
                let last = f
                    .payload
                    .get(0..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                self.server_goaways
                    .push((last.unwrap_or(0), f.error_code().unwrap_or(0)));
                return;
            }
            _ => return,
        }
        self.close_if_done(f.stream);
    }
}

/// Polls `cond` on the wire every 2 ms until it holds; panics after 10 s.
pub async fn wait_for(wire: &Mutex<Wire>, what: &str, cond: impl Fn(&Wire) -> bool) {
    let t0 = tokio::time::Instant::now();
    loop {
        if cond(&wire.lock().unwrap()) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server side: timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A socket whose bytes are split into frames (both ways) and recorded in a [`Wire`].
pub struct Tapped<T> {
    io: T,
    wire: Arc<Mutex<Wire>>,
    from_client: Splitter,
    to_client: Splitter,
}

impl<T> Tapped<T> {
    /// Wraps the server side of a connection.
    pub fn new(io: T, wire: Arc<Mutex<Wire>>) -> Self {
        Tapped {
            io,
            wire,
            from_client: Splitter::client_to_server(),
            to_client: Splitter::server_to_client(),
        }
    }

    /// Records one write of the server: its frames, and the streams it ended.
    fn record_write(&mut self, bytes: &[u8]) {
        let frames = self.to_client.feed(bytes);
        let mut wire = self.wire.lock().unwrap();
        let ended = frames
            .iter()
            .filter(|f| matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0);
        let ended = ended.map(|f| f.stream).collect();
        wire.server_writes.push(ended);
        for f in &frames {
            wire.on_server_frame(f);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tapped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            let mut wire = this.wire.lock().unwrap();
            if new.is_empty() {
                wire.client_eof = true;
            }
            for f in this.from_client.feed(new) {
                wire.on_client_frame(&f);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tapped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.record_write(&buf[..*n]);
        }
        r
    }

    // Vectored like the socket it wraps, so the server writes as it would untapped.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            let mut left = *n;
            let mut written = Vec::with_capacity(left);
            for b in bufs {
                let take = left.min(b.len());
                written.extend_from_slice(&b[..take]);
                left -= take;
            }
            this.record_write(&written);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
