//! The client connection as pingora sees it, and the pingora traits it carries through.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::head::{Body, Head};
use crate::sockets::Hangup;

/// One read from a client socket, on the stack: an idle connection keeps no buffer.
const READ_CHUNK: usize = 4096;
/// A client connection as pingora sees it: the socket, plus the bytes the front door read ahead.
///
/// pingora may read the admitted request only (`allowance`); once it has, further bytes are
/// kept for the front door (the next pipelined request) and pingora's reads wait, except that the
/// client closing the connection still reaches it as end of stream, so a request whose client left
/// is abandoned.
pub struct ClientConn {
    pub(super) io: Stream,
    /// Read from the client, not yet given to pingora: the current request's header and what came
    /// with it, then the start of the next request.
    pub(super) buf: BytesMut,
    /// Bytes of the current request pingora may still read; `None` while unbounded.
    pub(super) allowance: Option<u64>,
    /// The client closed its side; what is in `buf` is all there is.
    pub(super) eof: bool,
    /// Most bytes read ahead of pingora.
    keep: usize,
    /// Ends an upgraded connection from the proxy's side (a drain that ran out): see
    /// [`crate::sockets`].
    hangup: Arc<Hangup>,
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("io", &self.io)
            .field("buffered", &self.buf.len())
            .field("allowance", &self.allowance)
            .field("eof", &self.eof)
            .finish()
    }
}

impl ClientConn {
    pub(super) fn new(io: Stream, max_header_bytes: usize) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            allowance: Some(0),
            eof: false,
            // A full header of the next request plus its line ends.
            keep: max_header_bytes + 4,
            hangup: Arc::default(),
        }
    }

    /// The switch that hangs this connection up once it is an open socket.
    pub fn hangup(&self) -> &Arc<Hangup> {
        &self.hangup
    }

    /// Whether the proxy hung this connection up: it is not served again.
    pub(super) fn is_hung_up(&self) -> bool {
        self.hangup.is_hung_up()
    }

    /// Lets pingora read this request.
    pub(super) fn admit(&mut self, head: Head) {
        self.allowance = match (head.body, head.framed) {
            (Body::Length(n), _) | (Body::Chunked, Some(n)) => {
                Some((head.len as u64).saturating_add(n))
            }
            (Body::Chunked, None) | (Body::Upgrade, _) => None,
        };
    }

    /// Reads once from the client into `buf`; `Ok(0)` at end of stream.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        // Left uninitialised: a read fills only what arrived, and most polls find nothing to
        // read. Zeroing 4 KiB on each poll (4-5 per request) was most of the front door's
        // instructions.
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            self.eof = true;
        } else {
            self.buf.extend_from_slice(read.filled());
        }
        Poll::Ready(Ok(n))
    }

    fn consumed(&mut self, n: usize) {
        if let Some(left) = self.allowance.as_mut() {
            *left = left.saturating_sub(n as u64);
        }
    }

    /// pingora reads past the end of the admitted request (to notice a client leaving): keep
    /// what arrives for the next request and report only the end of the stream.
    fn poll_past_request(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.eof {
                // With a request waiting, that one is served first; pingora's read just waits
                // (it is always raced against the upstream's answer).
                return if self.buf.is_empty() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            if self.buf.len() >= self.keep {
                return Poll::Pending;
            }
            ready!(self.poll_fill(cx))?;
        }
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let allowed = match this.allowance {
            Some(0) => return this.poll_past_request(cx),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            // Unbounded: a streamed body or an open socket, which a hang-up ends.
            None if this.hangup.poll_hung_up(cx) => return Poll::Ready(Ok(())),
            None => usize::MAX,
        };
        let want = allowed.min(dst.remaining());
        if !this.buf.is_empty() {
            let n = want.min(this.buf.len());
            dst.put_slice(&this.buf[..n]);
            this.buf.advance(n);
            if this.buf.is_empty() {
                // Give the memory back: an idle connection holds no buffer.
                this.buf = BytesMut::new();
            }
            this.consumed(n);
            return Poll::Ready(Ok(()));
        }
        if this.eof {
            return Poll::Ready(Ok(()));
        }
        let n = if want == dst.remaining() {
            let before = dst.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, dst))?;
            dst.filled().len() - before
        } else {
            let mut limited = ReadBuf::new(dst.initialize_unfilled_to(want));
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            dst.advance(n);
            n
        };
        this.consumed(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.allowance.is_none() && this.hangup.poll_hung_up(cx) {
            return Poll::Ready(Err(hung_up()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A write to a client that reads nothing waits here, in the flush of the write buffer.
        let this = self.get_mut();
        if this.allowance.is_none() && this.hangup.poll_hung_up(cx) {
            return Poll::Ready(Err(hung_up()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.allowance.is_none() && this.hangup.poll_hung_up(cx) {
            return Poll::Ready(Err(hung_up()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What a write or flush to a hung-up connection fails with: a write blocked on a client that
/// reads nothing ends too, not only a read.
fn hung_up() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the proxy hung this socket up",
    )
}

#[async_trait]
impl Shutdown for ClientConn {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.io).await;
    }
}

impl UniqueID for ClientConn {
    fn id(&self) -> UniqueIDType {
        self.io.id()
    }
}

impl Ssl for ClientConn {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.io.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.io.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.io.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.io.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.io.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.io.set_socket_digest(socket_digest);
    }
}

/// The bytes pingora reads are the front door's, already taken from the socket: no peeking.
#[async_trait]
impl Peek for ClientConn {}
