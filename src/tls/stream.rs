//! An accepted connection that is plain, or TLS whose handshake runs on the
//! connection's own task: the accept loop hands the socket over at once, and the
//! first read or write drives the handshake, so a slow client delays only itself.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::PeerState;

/// A handshake that has not finished by then is dropped: it holds a connection
/// permit, and an honest client needs a round trip or two.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain stream, or a TLS one.
pub enum Conn<S> {
    Plain(S),
    Tls(Box<Lazy<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// `stream`, to be secured with `config` on first use; `peer` learns whether the
    /// client presented a verified certificate.
    pub fn tls(stream: S, config: Arc<rustls::ServerConfig>, peer: Arc<PeerState>) -> Self {
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
        Self::Tls(Box::new(Lazy {
            state: State::Handshake {
                accept,
                deadline: Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)),
            },
            peer,
        }))
    }
}

impl<S> Conn<S> {
    /// The slot the handshake fills in; `None` for a plain stream.
    pub fn peer_state(&self) -> Option<Arc<PeerState>> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(lazy) => Some(Arc::clone(&lazy.peer)),
        }
    }
}

/// A TLS stream whose handshake is driven by its first poll.
pub struct Lazy<S> {
    state: State<S>,
    peer: Arc<PeerState>,
}

enum State<S> {
    Handshake {
        accept: tokio_rustls::Accept<S>,
        deadline: Pin<Box<tokio::time::Sleep>>,
    },
    Ready(TlsStream<S>),
    Failed,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lazy<S> {
    /// Drives the handshake until the stream is ready.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TlsStream<S>>> {
        if let State::Handshake { accept, deadline } = &mut self.state {
            let done = match Pin::new(accept).poll(cx) {
                Poll::Ready(done) => done,
                Poll::Pending => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        self.state = State::Failed;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "tls handshake took too long",
                        )));
                    }
                    return Poll::Pending;
                }
            };
            match done {
                Ok(stream) => {
                    // With a client verifier, rustls hands out peer certificates only
                    // after they verified against the CA.
                    if stream.get_ref().1.peer_certificates().is_some() {
                        self.peer.verified();
                    }
                    self.state = State::Ready(stream);
                }
                Err(err) => {
                    self.state = State::Failed;
                    return Poll::Ready(Err(err));
                }
            }
        }
        match &mut self.state {
            State::Ready(stream) => Poll::Ready(Ok(stream)),
            State::Handshake { .. } | State::Failed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "tls handshake failed",
            ))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(lazy) => {
                let stream = ready!(lazy.poll_ready(cx))?;
                Pin::new(stream).poll_read(cx, buf)
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(lazy) => {
                let stream = ready!(lazy.poll_ready(cx))?;
                Pin::new(stream).poll_write(cx, buf)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(lazy) => {
                let stream = ready!(lazy.poll_ready(cx))?;
                Pin::new(stream).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(lazy) => match &lazy.state {
                State::Ready(stream) => stream.is_write_vectored(),
                State::Handshake { .. } | State::Failed => false,
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(lazy) => {
                let stream = ready!(lazy.poll_ready(cx))?;
                Pin::new(stream).poll_flush(cx)
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(lazy) => match &mut lazy.state {
                State::Ready(stream) => Pin::new(stream).poll_shutdown(cx),
                // Nothing was said over TLS yet; dropping the socket is the goodbye.
                State::Handshake { .. } | State::Failed => Poll::Ready(Ok(())),
            },
        }
    }
}
