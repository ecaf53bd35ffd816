//! What [`super::serve`] accepts connections from: a TCP listener, or a Unix domain
//! socket (`--listen unix:/path`) for a gateway in the same pod or host, either of
//! them optionally wrapped in TLS by [`Secured`] (`--tls-cert`).
//!
//! A Unix socket file is created with mode 0660 (the gateway's group may connect,
//! others may not), replaces a stale file only when nothing answers on it, and is
//! removed when the listener is dropped at shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::either::Either;

/// A source of connections for [`super::serve`].
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection, with the peer's address when it has one (TCP).
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Option<SocketAddr>)>> + Send;

    /// The bound TCP address; `None` for a Unix socket.
    fn tcp_addr(&self) -> Option<SocketAddr>;

    /// Where this listens, for logs.
    fn describe(&self) -> String;

    /// The TLS facts of an accepted connection, final once its handshake is done;
    /// `None` for a plain one.
    fn tls_peer(_io: &Self::Io) -> Option<Arc<crate::tls::PeerState>> {
        None
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Option<SocketAddr>)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, Some(peer)))
    }

    fn tcp_addr(&self) -> Option<SocketAddr> {
        self.local_addr().ok()
    }

    fn describe(&self) -> String {
        self.local_addr()
            .map_or_else(|_| "tcp".to_owned(), |a| a.to_string())
    }
}

/// The mode of a socket file elevate creates.
pub const SOCKET_MODE: u32 = 0o660;

/// A Unix domain socket listener that owns its socket file.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixSocket {
    /// Binds `path`. An existing socket file is replaced only when connecting to it
    /// is refused (its server is gone); anything else at `path` is left alone.
    ///
    /// # Errors
    /// Something listens on `path`, `path` is not a socket, or binding fails.
    pub async fn bind(path: &Path) -> io::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path).await {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use: a server answers on it", path.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            },
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        // Owned from here on: a failed chmod removes the file with `Self`'s drop.
        let socket = Self {
            listener,
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
        Ok(socket)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener for UnixSocket {
    type Io = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Option<SocketAddr>)> {
        let (stream, _) = self.listener.accept().await?;
        Ok((stream, None))
    }

    fn tcp_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn describe(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

/// Either kind of listener, as `--listen` chose.
#[derive(Debug)]
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

impl Bound {
    /// Binds what `listen` names.
    ///
    /// # Errors
    /// As [`TcpListener::bind`] or [`UnixSocket::bind`].
    pub async fn bind(listen: &crate::config::Listen) -> io::Result<Self> {
        match listen {
            crate::config::Listen::Tcp(addr) => TcpListener::bind(addr).await.map(Self::Tcp),
            crate::config::Listen::Unix(path) => UnixSocket::bind(path).await.map(Self::Unix),
        }
    }
}

impl Listener for Bound {
    type Io = Either<TcpStream, UnixStream>;

    async fn accept(&self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        match self {
            Self::Tcp(l) => Listener::accept(l)
                .await
                .map(|(s, peer)| (Either::Left(s), peer)),
            Self::Unix(l) => Listener::accept(l)
                .await
                .map(|(s, peer)| (Either::Right(s), peer)),
        }
    }

    fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.tcp_addr(),
            Self::Unix(l) => l.tcp_addr(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l.describe(),
            Self::Unix(l) => l.describe(),
        }
    }
}

/// A listener whose connections are TLS when `tls` is set, plain otherwise. The
/// handshake runs on the connection's task, not in the accept loop.
#[derive(Debug)]
pub struct Secured<L> {
    inner: L,
    tls: Option<Arc<crate::tls::ServerTls>>,
}

impl<L: Listener> Secured<L> {
    pub fn new(inner: L, tls: Option<Arc<crate::tls::ServerTls>>) -> Self {
        Self { inner, tls }
    }
}

impl<L: Listener> Listener for Secured<L> {
    type Io = crate::tls::Conn<L::Io>;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Option<SocketAddr>)>> + Send {
        // Not borrowing `self` across the await: `L` need not be `Sync`.
        let accepted = self.inner.accept();
        let tls = self.tls.clone();
        async move {
            let (stream, peer) = accepted.await?;
            let io = match tls {
                Some(tls) => crate::tls::Conn::tls(stream, tls.current(), tls.peer_state()),
                None => crate::tls::Conn::Plain(stream),
            };
            Ok((io, peer))
        }
    }

    fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr()
    }

    fn describe(&self) -> String {
        match self.tls {
            Some(_) => format!("{} (tls)", self.inner.describe()),
            None => self.inner.describe(),
        }
    }

    fn tls_peer(io: &Self::Io) -> Option<Arc<crate::tls::PeerState>> {
        io.peer_state()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_socket_file_is_private_replaced_when_stale_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let socket = UnixSocket::bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        // Live: refused, and the file stays.
        let err = UnixSocket::bind(&path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists());
        drop(socket);
        assert!(!path.exists(), "the socket file outlived its listener");

        // Stale (its server died without cleaning up): replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let socket = UnixSocket::bind(&path).await.unwrap();
        assert_eq!(socket.describe(), format!("unix:{}", path.display()));
        drop(socket);

        // Not a socket: never removed.
        std::fs::write(&path, "data").unwrap();
        let err = UnixSocket::bind(&path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }
}
